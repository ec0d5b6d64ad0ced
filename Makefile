# The two commands of the README: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,demo]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/tfopt demo --out tfopt-demo

# ruff, then the Keras 3 tests, then the tf_keras tests (TF_USE_LEGACY_KERAS=1) in their own process; one summary.
test: install lint
	$(PY) tools/run_tests.py

# The same without the slow end-to-end tests, for quick local runs.
test-fast: install lint
	$(PY) tools/run_tests.py -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

bench: install
	$(PY) benchmarks/distill.py
	$(PY) benchmarks/gradient_monitor.py
	$(PY) benchmarks/lr_callbacks.py
	$(PY) benchmarks/optimizer_accuracy.py
	$(PY) benchmarks/optimizers.py
	$(PY) benchmarks/pruning.py
	$(PY) benchmarks/quantization.py
	$(PY) benchmarks/scaling.py

clean:
	rm -rf $(VENV) tfopt-demo .test-results

import sys

import pytest

from tfopt import cli
from tfopt.demo import run


@pytest.mark.slow
def test_demo_trains_digits_to_95_percent_and_prunes_to_a_third_of_the_size(tmp_path):
    lines = []
    results = run(tmp_path, quick=False, log=lines.append)
    assert results["test_accuracy"] >= 0.95  # at the rate the LR range test suggested
    assert 1e-5 < results["suggested_lr"] < 1.0
    assert results["pruned_accuracy"] >= results["test_accuracy"] - 0.015
    assert results["pruned_gzipped_bytes"] <= results["dense_gzipped_bytes"] / 3
    for name in ("lr_find.png", "schedule.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert any("Test accuracy" in line for line in lines)


@pytest.mark.slow
def test_cli_demo_quick(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "out"), "--quick"]) == 0
    assert "Test accuracy" in capsys.readouterr().out


def test_cli_rejects_an_unknown_command(capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["train"])
    assert raised.value.code == 2
    assert "invalid choice: 'train'" in capsys.readouterr().err


def test_demo_data_without_scikit_learn_names_the_extra(monkeypatch):
    from tfopt.demo.data import load_digits_split

    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install tfopt\[demo\]"):
        load_digits_split()

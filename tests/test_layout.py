"""The package's layering, read from the source with `ast`: areas talk through public modules, nothing imports in a
circle, and Keras/TensorFlow private attributes are read only in `tfopt/_compat.py` (and in the two modules of
`tfopt.distribute` that patch Keras, listed in KERAS_PRIVATE_READERS).

An area is a subpackage (`tfopt/prune`, `tfopt/quantize`, ...). Its private modules (`tfopt/prune/_layers.py`) and
private names are for the area itself; the top-level private modules (`tfopt/_checks.py`, `_compat.py`,
`_surgery.py`, `_files.py`, `_plotting.py`) are the shared core every area may use.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tfopt"
# Keras/TensorFlow private attributes tfopt reads; only _compat.py may name them.
KERAS_PRIVATE = ("_var_key", "_trainable_variables", "_get_ops_details", "_flatten_layers", "_learning_rate",
                 "_hyper", "_built", "_distribution_strategy", "_tracker", "_maybe_symbolic_build",
                 "_collective_all_reduce_multi_worker", "_distribute_strategy", "_save_model")
# The modules that may name them: _compat.py, and the two modules of tfopt.distribute that patch Keras 3.15 for
# multi-worker training (the patches are Keras internals by nature; each is gated on the Keras version and guarded
# by a test in tests/distributed showing plain Keras still fails without it).
KERAS_PRIVATE_READERS = ("tfopt._compat", "tfopt.distribute._trainer", "tfopt.distribute._callbacks")
# Private hooks that subclasses of Keras classes override (named in the class body, not read from an object);
# tests/optimizers guards the optimizer hooks against Keras upgrades.
OVERRIDDEN_HOOKS = ("_apply_weight_decay", "_distributed_tf_update_step", "_reduce_optimizer_lr")


def module_name(path, root=PACKAGE):
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root=PACKAGE):
    """{module name: parsed tree} of every module under `root`."""
    return {module_name(path, root): ast.parse(path.read_text()) for path in sorted(root.rglob("*.py"))}


def imports(name, tree, known):
    """(imported module, imported name or None) for every import in the module, at any depth."""
    package = name if any(other.startswith(name + ".") for other in known) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: `from . import x` is the package itself, each more dot a parent
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parents + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                yield (full, None) if full in known else (base, alias.name)


def area(name):
    """'prune' for tfopt.prune.anything; None for the package itself and its top-level modules."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and not parts[1].startswith("_")) else None


def private_crossings(tree_of):
    """'importer -> imported' for each import of another area's private module or private name."""
    found = []
    for name, tree in tree_of.items():
        for target, imported in imports(name, tree, tree_of):
            if not target.startswith("tfopt.") or area(target) is None or area(target) == area(name):
                continue
            private_module = any(part.startswith("_") for part in target.split(".")[2:])
            if private_module or (imported or "").startswith("_"):
                found.append(f"{name} -> {target}{'.' + imported if imported else ''}")
    return found


def cycles(tree_of):
    """Each strongly connected group of more than one module in the import graph (imports at any depth)."""
    graph = {name: {target for target, _ in imports(name, tree, tree_of) if target in tree_of and target != name}
             for name, tree in tree_of.items()}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def keras_private_reads(tree_of):
    """'module: attribute' for each Keras/TF private attribute named outside tfopt._compat."""
    found = []
    for name, tree in tree_of.items():
        if name in KERAS_PRIVATE_READERS:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in KERAS_PRIVATE:
                found.append(f"{name}: {node.attr}")
    return found


def test_no_area_imports_another_areas_private_module_or_name():
    assert private_crossings(modules()) == []


def test_no_import_cycle():
    assert cycles(modules()) == []


def test_keras_private_attributes_are_read_only_in_compat():
    assert keras_private_reads(modules()) == []


def overridden_keras_hooks(tree_of):
    """The private methods and attributes of Keras 3 base classes that tfopt classes define again."""
    import keras

    bases = (keras.optimizers.Optimizer, keras.callbacks.ReduceLROnPlateau, keras.layers.Layer, keras.Model)
    hooks = set()
    for tree in tree_of.values():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                targets = getattr(item, "targets", [])
                names = [item.name] if isinstance(item, ast.FunctionDef) else [t.id for t in targets
                                                                                if isinstance(t, ast.Name)]
                hooks.update(name for name in names if name.startswith("_") and not name.startswith("__")
                             and any(hasattr(base, name) for base in bases))
    return hooks


def test_overridden_private_keras_hooks_are_the_listed_ones():
    """A new override of a private Keras hook must be listed here and guarded by a test against Keras upgrades."""
    hooks = overridden_keras_hooks(modules())
    assert "_apply_weight_decay" in hooks  # the check sees the overrides it is meant to see
    assert hooks <= set(OVERRIDDEN_HOOKS), sorted(hooks - set(OVERRIDDEN_HOOKS))


@pytest.fixture
def fake_package(tmp_path):
    """A package `tfopt` with two areas, to show the checks find what they look for."""

    def make(files):
        for relative, source in files.items():
            path = tmp_path / "tfopt" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source)
        return modules(tmp_path / "tfopt")

    return make


def test_the_checks_find_a_private_crossing_a_cycle_and_a_private_read(fake_package):
    tree_of = fake_package({
        "__init__.py": "",
        "_core.py": "",
        "a/__init__.py": "",
        "a/_inner.py": "from tfopt.b import user\n",
        "a/public.py": "def _helper(): pass\n",
        "b/__init__.py": "",
        "b/user.py": ("from tfopt import _core\nfrom tfopt.a import _inner\nfrom tfopt.a.public import _helper\n"
                      "def f(model):\n    return model._flatten_layers()\n"),
    })
    assert private_crossings(tree_of) == ["tfopt.b.user -> tfopt.a._inner", "tfopt.b.user -> tfopt.a.public._helper"]
    assert cycles(tree_of) == [["tfopt.a._inner", "tfopt.b.user"]]
    assert keras_private_reads(tree_of) == ["tfopt.b.user: _flatten_layers"]

"""The package's shape: layers import only downwards, every module imports on its own, doctests run,
``import compress`` loads nothing from models/ or examples/."""
from __future__ import annotations

import ast
import doctest
import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import compress

PACKAGE = os.path.dirname(compress.__file__)

# Lower layers never import higher ones; a module may import its own package's modules.
RANK = {
    "errors": 0, "options": 1, "registry": 1, "kernels": 1, "distributed": 1.5, "context": 2, "sparsity": 2, "io": 2,
    "modules": 3, "structured": 3.5, "pruning": 4, "quantization": 4, "scheduling": 5, "optim": 6, "reports": 6,
    "analysis": 6, "search": 7, "export": 7, "distiller": 8, "cli": 9, "__main__": 10,
}


def compress_modules():
    names = ["compress"]
    for info in pkgutil.walk_packages(compress.__path__, "compress."):
        if not info.name.endswith("__main__"):  # ``python -m compress``: importing it runs the command line
            names.append(info.name)
    return sorted(names)


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def runtime_imports(path: str):
    """Modules imported at run time (``if TYPE_CHECKING:`` blocks excluded), as absolute names."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test):
            skip.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "compress":
                yield from (f"compress.{a.name}" for a in node.names)
            elif node.module.startswith("compress."):
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("compress."))


@pytest.mark.parametrize("module", [m for m in compress_modules() if m != "compress"])
def test_layers_import_only_downwards(module):
    me = top(module)
    assert me in RANK, f"{module}: the package {me!r} has no layer in RANK (add it, and to the README's layout)"
    spec = importlib.util.find_spec(module)
    for imported in runtime_imports(spec.origin):
        other = top(imported)
        if other in ("__init__", me):
            continue
        assert RANK.get(other, 99) < RANK[me], f"{module} imports {imported}: {other!r} is not below {me!r}"


def test_no_module_uses_relative_imports():
    for module in compress_modules():
        tree = ast.parse(open(importlib.util.find_spec(module).origin, encoding="utf-8").read())
        assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), module


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to start fresh interpreters cheaply")
def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    """One interpreter imports torch once; each module is then imported in a forked child that has never
    loaded any part of compress, so every module's own imports (and the package inits above it) must work."""
    script = (
        "import os, sys, importlib, torch, yaml, numpy, scipy, tabulate\n"
        f"names = {compress_modules()!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "        except BaseException as exc:\n"
        "            print(name, type(exc).__name__, exc, flush=True)\n"
        "            os._exit(1)\n"
        "        bad = [m for m in sys.modules if m.startswith(('compress_models', 'examples', 'models'))]\n"
        "        if bad:\n"
        "            print(name, 'imports', bad, flush=True)\n"
        "            os._exit(1)\n"
        "        os._exit(0)\n"
        "    _, status = os.waitpid(pid, 0)\n"
        "    if status:\n"
        "        failed.append(name)\n"
        "print('FAILED', failed)\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=os.path.dirname(PACKAGE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_top_level_surface_is_small_and_every_sub_package_declares_its_own():
    assert len(compress.__all__) <= 30
    for name in compress.__all__:
        assert hasattr(compress, name), name
    for module in compress_modules():
        mod = importlib.import_module(module)
        if hasattr(mod, "__path__"):  # a package
            assert isinstance(getattr(mod, "__all__", None), list), f"{module} has no __all__"


def test_a_name_that_moved_still_resolves_with_a_warning_naming_its_home():
    with pytest.warns(DeprecationWarning, match="compress.sparsity.MaskStore"):
        assert compress.MaskStore is importlib.import_module("compress.sparsity").MaskStore
    with pytest.raises(AttributeError):
        compress.no_such_name  # noqa: B018


@pytest.mark.parametrize("module", compress_modules() + ["compress_models.training"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{module}: {result.failed} of {result.attempted} doctest examples failed"

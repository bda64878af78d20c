import functools
import importlib.util
import os
import sys
from types import ModuleType

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DISTILLER_SCHEDULES = os.path.join(ROOT, "..", "shared", "docs", "distiller-schedules")


def shared_data_root() -> str:
    return os.environ.get("COMPRESS_DATA", os.path.join(ROOT, "..", "shared", "data"))


@functools.cache
def load_example(path: str) -> ModuleType:
    """The example script ``examples/<path>`` as a module, loaded from its file (scripts import only the installed
    ``compress`` and ``compress_models``, so nothing else needs to be on ``sys.path``)."""
    name = "example_" + os.path.splitext(path)[0].replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # dataclasses and pickling look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_lm():
    """A tied 2-layer LSTM word LM with the parameter names of PyTorch's example."""
    from compress_models import RNNModel

    torch.manual_seed(0)
    return RNNModel("LSTM", 50, 16, 16, 2, dropout=0.0, tie_weights=True)


@pytest.fixture(autouse=True)
def one_thread():
    """Run every test on one intra-op thread.

    The tensors in the tests are tiny: with a second OpenMP thread on a busy 2-core machine each small op waits
    for the hand-off (measured: 0.25 ms with one thread, 85 ms with two per LSTM call)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

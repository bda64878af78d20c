"""Every file the library writes goes through atomic_write: a killed save leaves only a hidden temporary file, the
next save of the same file removes it, and a save still in progress elsewhere is left alone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import compress
from compress.export import save_sparse
from compress.io.files import atomic_write, temporary_prefix
from compress.quantization import export_model, save_quantized, save_stats
from compress_models import RNNModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lm():
    torch.manual_seed(0)
    return RNNModel("LSTM", 20, 8, 8, 1, dropout=0.0, tie_weights=True).eval()


STATS = {"decoder": {"inputs": {0: {"min": -1.0, "max": 1.0}}, "output": {"min": -2.0, "max": 2.0}}}
WRITERS = {
    "checkpoint": lambda path: compress.save_checkpoint(path, lm()),
    "int8 export": lambda path: save_quantized(export_model(lm(), "int8"), path),
    "sparse export": lambda path: save_sparse(export_model(lm(), "int8"), path),
    "statistics": lambda path: save_stats(STATS, path),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_writer_removes_the_temporary_file_a_killed_save_left(tmp_path, writer):
    path = tmp_path / "out.file"
    stale = tmp_path / (temporary_prefix(path) + "abc123.tmp")
    stale.write_bytes(b"\0" * 1000)  # what a process killed between writing and renaming leaves
    other = tmp_path / (temporary_prefix(tmp_path / "other.file") + "abc123.tmp")
    other.write_bytes(b"\0")  # another file's: not this save's business
    WRITERS[writer](path)
    assert sorted(os.listdir(tmp_path)) == sorted([other.name, path.name])


def test_a_save_killed_while_writing_leaves_a_temporary_file_that_the_next_save_removes(tmp_path):
    path = tmp_path / "c.pt"
    compress.save_checkpoint(path, lm())
    good = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, torch
        from compress.io.files import atomic_write
        with atomic_write({str(path)!r}) as f:
            f.write(b"half a checkpoint")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()
    left = sorted(os.listdir(tmp_path))
    assert len(left) == 2 and left[0].startswith(temporary_prefix(path)) and path.read_bytes() == good
    compress.save_checkpoint(path, lm())
    assert os.listdir(tmp_path) == ["c.pt"]


@pytest.mark.skipif(sys.platform == "win32", reason="the lock is POSIX flock; elsewhere any temporary is stale")
def test_a_temporary_file_another_save_is_still_writing_is_left_alone(tmp_path):
    path = tmp_path / "c.pt"
    with atomic_write(path) as slow:  # a save in progress (the lock is per open file, so one process shows it)
        slow.write(b"the slow save")
        compress.save_checkpoint(path, lm())  # a second save of the same file meanwhile
        assert len(os.listdir(tmp_path)) == 2
    assert path.read_bytes() == b"the slow save" and os.listdir(tmp_path) == ["c.pt"]

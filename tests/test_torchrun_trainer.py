"""``examples/word_lm.py``'s trainer under ``torchrun``: each rank trains on its own shard of the training tokens.

With dropout 0 two ranks of batch B compute the updates one process computes with batch 2B (DDP averages the
gradients of the two halves of the global batch), so the run's final row must equal the single-process one;
rank 0 alone prints the tables and appends the result.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from compress_models import batchify
from compress_models.builders import parse_args
from compress_models.distributed import init_from_environment, shard_tokens
from compress_models.trainer import train

FLAGS = ["--schedule", "schedules/agp_lstm.yaml", "--emsize", "32", "--nhid", "32", "--epochs", "2",
         "--max-train-batches", "6", "--synthetic-tokens", "8000", "--dropout", "0", "--no-progress"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_shards_of_the_ranks_are_the_columns_of_the_global_batch():
    tokens = torch.arange(1003)
    whole = batchify(tokens, 8)
    parts = [batchify(shard_tokens(tokens, rank, 2, 4), 4) for rank in range(2)]
    assert torch.equal(torch.cat(parts, dim=1), whole)


def test_too_few_tokens_for_the_ranks_and_the_batch_is_an_error_naming_both():
    with pytest.raises(ValueError, match="fewer than 4 ranks x batch 3"):
        shard_tokens(torch.arange(11), 0, 4, 3)


def test_without_torchrun_variables_nothing_is_initialised():
    assert init_from_environment(cuda=False, environ={"WORLD_SIZE": "1"})[:2] == (0, 1)
    assert not torch.distributed.is_initialized()
    with pytest.raises(ValueError, match="must be integers"):
        init_from_environment(cuda=False, environ={"WORLD_SIZE": "two"})


def test_two_ranks_under_torchrun_end_where_one_process_with_the_global_batch_ends(tmp_path):
    results = tmp_path / "rows.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "compress_models.trainer", *FLAGS, "--batch-size", "10", "--results", str(results),
               "--save", str(tmp_path / "ddp.pt")]
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("| end of epoch   1 |") == 1  # rank 0 alone prints
    assert "2 ranks (global batch 20)" in run.stdout
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 1  # rank 0 alone writes

    single = train(parse_args([*FLAGS, "--batch-size", "20"]))
    assert rows[0]["nnz"] == single["nnz"]
    assert rows[0]["val_ppl"] == pytest.approx(single["val_ppl"], rel=1e-4)
    assert rows[0]["test_ppl"] == pytest.approx(single["test_ppl"], rel=1e-4)
    assert os.path.exists(tmp_path / "ddp.pt") and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]

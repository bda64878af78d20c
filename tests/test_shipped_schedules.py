"""Every file in schedules/ runs as shipped through the word-LM example (tiny model, few minibatches)."""
import glob
import os
import shlex

import pytest
import yaml
from conftest import ROOT, load_example

FILES = sorted(glob.glob(os.path.join(ROOT, "schedules", "*.yaml")))
TINY = ["--emsize", "16", "--nhid", "16", "--synthetic-tokens", "3000", "--max-train-batches", "2",
        "--bptt", "10", "--no-progress"]


def example_args(path):
    """Flags a schedule needs, from its ``# example-args: ...`` header lines."""
    args = []
    with open(path) as f:
        for line in f:
            if line.startswith("# example-args:"):
                args += shlex.split(line.split(":", 1)[1])
    return args


def epochs_needed(path):
    """Epochs that reach every policy's last action, or the file's ``# test-epochs: N`` header.

    The header is for schedules whose policies span the whole published run (hundreds of epochs), where a
    couple of epochs already exercise every hook."""
    with open(path) as f:
        text = f.read()
    for line in text.splitlines():
        if line.startswith("# test-epochs:"):
            return int(line.split(":", 1)[1])
    data = yaml.safe_load(text)
    ends = [max(p["epochs"]) + 1 if "epochs" in p else p["ending_epoch"] for p in data.get("policies", [])]
    return max(ends + [1])


def test_there_are_shipped_schedules():
    assert len(FILES) >= 2


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f) for f in FILES])
def test_shipped_schedule_runs(path, capsys):
    word_lm = load_example("word_lm.py")

    args = TINY + example_args(path)   # a schedule's own flags come last and win
    result = word_lm.main(["--schedule", path, "--epochs", str(epochs_needed(path))] + args)
    assert result["val_ppl"] > 0 and result["test_ppl"] > 0


def test_agp_example_reaches_final_sparsity_and_perplexity_falls(capsys):
    word_lm = load_example("word_lm.py")

    result = word_lm.main(["--schedule", os.path.join(ROOT, "schedules", "agp_lstm.yaml"), "--tied",
                           "--emsize", "32", "--nhid", "32", "--epochs", "8", "--synthetic-tokens", "20000",
                           "--no-progress"])
    # recurrent weights at 80%, the tied embedding at 85%: 65,536*0.2 + 32,000*0.15 nonzeros of 40,192
    assert result["nnz"] == pytest.approx(4 * 4096 * 0.2 + 32000 * 0.15, abs=8)
    assert result["test_ppl"] < 150   # an untrained model scores about 1000, the vocabulary size
    out = capsys.readouterr().out
    assert "Total" in out and "Test PPL" in out

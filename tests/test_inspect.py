"""The inspection report: parameter, pruned and sparsity counts, metrics, and ``python -m compress inspect``."""
from __future__ import annotations

import pytest
import torch
from conftest import load_example
from torch import nn

import compress
from compress.cli import main
from compress.errors import CheckpointError, CompressError
from compress.reports.inspection import (
    ModelReport,
    count_parameters,
    inspect_checkpoints,
    inspect_model,
    inspection_table,
    load_task,
)
from compress_models.tasks import make_task


def test_tied_weights_count_once_and_zeros_are_pruned(tiny_lm):
    with torch.no_grad():
        tiny_lm.encoder.weight[:10].zero_()  # 10 rows x 16 = 160 zeros, shared with the decoder
        tiny_lm.decoder.bias.zero_()  # 50 more
    total, zeros = count_parameters(tiny_lm)
    # encoder 50x16 (= decoder) + 2 layers of 4*16*(16+16) + 2*4*16 biases + decoder bias 50
    assert total == 800 + 2 * (2048 + 128) + 50
    assert zeros == 160 + 50


def test_the_table_puts_models_side_by_side_with_counts_and_metrics():
    original = ModelReport("original", 4_653_200, 0, {"valid ppl": 120.408, "test acc (%)": 23.0038})
    pruned = ModelReport("pruned", 4_653_200, 4_499_874, {"valid ppl": 133.718, "test acc (%)": 23.2889})
    lines = inspection_table([original, pruned], tablefmt="plain").splitlines()
    cells = [line.split() for line in lines]
    assert cells[0] == ["original", "pruned"]
    assert cells[1] == ["total", "parameters", "4,653,200", "4,653,200"]
    assert cells[2] == ["pruned", "0", "4,499,874"]
    assert cells[3] == ["sparsity", "(%)", "0.00", "96.70"]
    assert cells[4] == ["valid", "ppl", "120.41", "133.72"]
    assert cells[5] == ["test", "acc", "(%)", "23.00", "23.29"]


def test_inspect_model_reports_what_evaluate_returns():
    model = nn.Linear(3, 2)
    report = inspect_model("m", model, lambda m: {"loss": 1.5})
    assert (report.total, report.pruned, report.metrics) == (8, 0, {"loss": 1.5})


@pytest.fixture
def word_lm_checkpoints(tmp_path, monkeypatch):
    """A tiny examples/word_lm.py checkpoint and a copy with 3/4 of its embedding zeroed."""
    word_lm = load_example("word_lm.py")

    monkeypatch.chdir(tmp_path)
    original = str(tmp_path / "original.pt")
    word_lm.main(["--epochs", "1", "--max-train-batches", "2", "--emsize", "8", "--nhid", "8",
                  "--synthetic-tokens", "2000", "--no-progress", "--save", original])
    state = compress.io.read_checkpoint(original)
    model = make_task(None, torch.device("cpu")).build_model(state)
    model.load_state_dict(state["model"])
    with torch.no_grad():
        model.encoder.weight[:, 2:].zero_()
    pruned = str(tmp_path / "pruned.pt")
    compress.save_checkpoint(pruned, model, **state["extra"])
    return original, pruned, model


def test_inspect_command_prints_both_checkpoints_counts_and_metrics(word_lm_checkpoints):
    original, pruned, model = word_lm_checkpoints
    total, zeros = count_parameters(model)
    out = []
    assert main(["inspect", original, pruned], out=out.append) == 0
    lines = out[0].splitlines()
    assert "original" in lines[1] and "pruned" in lines[1]
    counts = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]] for line in lines[3:-1]}
    assert counts["total parameters"] == [f"{total:,}", f"{total:,}"]
    assert counts["pruned"] == ["0", f"{zeros:,}"] and zeros == 1000 * 6
    assert counts["sparsity (%)"][1] == f"{100 * zeros / total:.2f}"
    assert set(counts) >= {"valid ppl", "test ppl", "valid acc (%)", "test acc (%)"}
    assert float(counts["valid ppl"][1]) > 0 and 0 <= float(counts["test acc (%)"][0]) <= 100


def test_a_checkpoint_without_model_flags_is_a_clear_error(tmp_path, word_lm_checkpoints):

    _, _, model = word_lm_checkpoints
    bare = str(tmp_path / "bare.pt")
    compress.save_checkpoint(bare, model)
    with pytest.raises(CheckpointError, match=r"no word_lm flags \(extra\['args'\]\)"):
        inspect_checkpoints([bare, bare], make_task(None, torch.device("cpu")))


def test_a_bad_task_name_is_reported_with_exit_status_2(capsys, word_lm_checkpoints):
    original, pruned, _ = word_lm_checkpoints
    with pytest.raises(CompressError, match="module:function"):
        load_task("no_colon")
    assert main(["inspect", original, pruned, "--task", "no_such_module_xyz:make"]) == 2
    assert "cannot import task module 'no_such_module_xyz'" in capsys.readouterr().err

"""The PTQ and quantization-benchmark examples run end to end on a tiny model (CPU, seconds)."""
import os

import pytest
from conftest import ROOT, load_example

TINY = ["--emsize", "16", "--nhid", "16", "--synthetic-tokens", "3000", "--bptt", "10", "--no-progress"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    word_lm = load_example("word_lm.py")

    path = str(tmp_path_factory.mktemp("ptq") / "lm.pt")
    word_lm.main(TINY + ["--epochs", "1", "--max-train-batches", "3", "--tied", "--save", path])
    return path


def test_ptq_example_prints_distillers_table_from_a_word_lm_checkpoint(checkpoint, tmp_path, capsys):
    ptq_word_lm = load_example("ptq_word_lm.py")

    stats = str(tmp_path / "stats.yaml")
    rows = ptq_word_lm.main(["--checkpoint", checkpoint, "--synthetic-tokens", "3000", "--bptt", "10",
                             "--rows", "fp32,fp16,int8_asym_pc_avg,int8_laplace_logits,mixed,real_int8",
                             "--calib-batches", "3",
                             "--stats-out", stats, "--schedule", os.path.join(ROOT, "schedules", "ptq_int8_lstm.yaml")])
    out = capsys.readouterr().out
    assert "INT8: Clipping" in out and "vs FP32" in out and "Real INT8 export" in out
    assert os.path.exists(stats)
    fp32 = rows[0]["ppl"]
    assert rows[0]["precision"] == "FP32" and len(rows) == 7
    assert any(r.get("clipping") == "Laplace (ACIQ), logits not" for r in rows)
    assert all(abs(r["ppl"] / fp32 - 1) < 0.1 for r in rows)


def test_ptq_example_collects_per_unit_statistics_for_rows_and_schedules_that_need_them(checkpoint, tmp_path, capsys):
    ptq_word_lm = load_example("ptq_word_lm.py")

    from compress.quantization import load_stats

    stats = str(tmp_path / "stats.yaml")
    schedule = os.path.join(ROOT, "schedules", "ptq_int8_cell_per_unit_lstm.yaml")
    rows = ptq_word_lm.main(["--checkpoint", checkpoint, "--synthetic-tokens", "3000", "--bptt", "10",
                             "--rows", "fp32,int8_laplace_cell_per_unit", "--calib-batches", "3",
                             "--stats-out", stats, "--schedule", schedule])
    assert [r["precision"] for r in rows[1:]] == ["Full INT8, per-unit cell scales",
                                                   "ptq_int8_cell_per_unit_lstm.yaml:int8_cell_per_unit"]
    saved = load_stats(stats)
    with_channels = sorted(n for n, e in saved.items() if "channels" in e["output"])
    assert with_channels == [f"rnn.cells.{i}.{m}" for i in (0, 1)
                             for m in ("eltwiseadd_cell", "eltwisemult_cell_forget", "eltwisemult_cell_input")]


def test_ptq_example_rejects_flags_that_disagree_with_the_checkpoint(checkpoint):
    ptq_word_lm = load_example("ptq_word_lm.py")

    with pytest.raises(SystemExit, match="--nhid 32 disagrees"):
        ptq_word_lm.main(["--checkpoint", checkpoint, "--synthetic-tokens", "3000", "--nhid", "32"])


def test_benchmark_example_reports_speed_and_size_against_fp32(capsys):
    bench_quant = load_example("bench_quant.py")

    result = bench_quant.main(["--vocab", "200", "--emsize", "16", "--nhid", "16", "--batch-sizes", "1", "2",
                               "--bptt", "5", "--repeats", "2", "--warmup", "0", "--python-loop"])
    out = capsys.readouterr().out
    assert "tokens/s" in out and "smaller by" in out
    assert result["sizes"]["int8"] < result["sizes"]["fp32"] / 2
    assert (1, "int8") in result["speed"] and (2, "int8 (python loop)") in result["speed"]

"""examples/sipo_ptb.py runs every stage end to end on a tiny model (embedded corpus, CPU) and resumes."""
import os
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "examples"))

TINY = ["--emsize", "16", "--nhid", "16", "--epochs", "2", "--max-train-batches", "5", "--synthetic-tokens", "5000",
        "--ncs-generations", "3", "--max-evaluations", "30", "--retrain-epochs", "1", "--finetune-epochs", "1",
        "--max-iterative-epochs", "3"]


def test_sipo_example_prints_every_row_and_a_second_run_repeats_nothing(tmp_path, capsys):
    import sipo_ptb

    out = str(tmp_path / "sipo")
    results = sipo_ptb.main(["--out", out] + TINY)
    printed = capsys.readouterr().out
    for row in ("dense", "all-in-one one-shot", "layer-wise one-shot", "stage-wise one-shot",
                "iterative stage-wise"):
        assert f"| {row} " in printed
    dense = results["dense"]
    assert all(r["sparsity"] > 0 for name, r in results.items() if name != "dense")
    assert results["iterative stage-wise"]["sparsity"] <= 0.967
    # the constraint of the one-shot rows holds on the data the search was given (validation)
    for name in ("all-in-one one-shot", "layer-wise one-shot", "stage-wise one-shot"):
        assert results[name]["val_ppl"] <= dense["val_ppl"] * 1.05 * 1.001
    again = sipo_ptb.main(["--out", out] + TINY)
    assert again == results

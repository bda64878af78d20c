"""examples/papers/iss_ptb.py at toy size: dense and ISS runs, thinning, the table, and resuming after a stop."""
import importlib.util
import json
import os

import pytest
from conftest import ROOT

TINY = ["--emsize", "16", "--nhid", "16", "--epochs", "2", "--max-train-batches", "3", "--synthetic-tokens", "3000",
        "--from-dense", "--iss-epochs", "3", "--bench-repeats", "1", "--bench-batches", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def iss_ptb():
    spec = importlib.util.spec_from_file_location("iss_ptb", os.path.join(ROOT, "examples", "papers", "iss_ptb.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dense_and_iss_runs_end_in_one_table_of_thinned_models(iss_ptb, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)
    result = iss_ptb.main(TINY + ["--out", str(tmp_path), "--targets", "0.5,0.75", "--tied"])
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["dense"]["hidden"] == [16, 16]
    assert rows["iss 0.5"]["hidden"] == [8, 8] and rows["iss 0.75"]["hidden"] == [4, 4]
    assert rows["iss 0.75"]["params"] < rows["iss 0.5"]["params"] < rows["dense"]["params"]
    assert all(r["int8_test_ppl"] > 1 and r["bytes_int8"] < r["bytes_fp32"] for r in rows.values())
    out = capsys.readouterr().out
    assert "thinned to [8, 8] units" in out and "| iss 0.75 | 4/4 | 75.0 |" in out
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["table"] == result["table"]


def test_runs_stopped_after_every_epoch_continue_to_the_same_result(iss_ptb, tmp_path, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)
    args = TINY + ["--targets", "0.5", "--no-int8-ppl"]
    straight = iss_ptb.main(args + ["--out", str(tmp_path / "a")])
    stops = 0
    while True:  # a budget too short for a second epoch: every command trains one epoch and stops
        resumed = iss_ptb.main(args + ["--out", str(tmp_path / "b"), "--time-budget", "1e-6"])
        if resumed != {"unfinished": True}:
            break
        stops += 1
    assert stops == 2 + 3 + 3 - 1   # one epoch per command: dense (2), dense +3 epochs, ISS (masked, thinned)
    for a, b in zip(straight["rows"], resumed["rows"]):
        assert (a["name"], a["hidden"], a["val_ppl"], a["test_ppl"]) == (b["name"], b["hidden"], b["val_ppl"],
                                                                          b["test_ppl"])

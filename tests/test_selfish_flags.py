"""examples/word_lm.py accepts the Selfish-RNN script's flags, as a schedule it can print."""
import os
import shlex
import sys

import pytest
import yaml
from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "examples"))
TINY = ["--emsize", "16", "--nhid", "16", "--synthetic-tokens", "3000", "--max-train-batches", "3", "--bptt", "8",
        "--no-progress"]
SEED_FLAGS = ["--sparse", "--optimizer", "sgd", "--growth", "random", "--death", "magnitude", "--redistribution",
              "none", "--nonmono", "1", "--lr", "20", "--clip", "0.25", "--seed", "7", "--death-rate", "0.8",
              "--density", "0.33", "--epochs", "3", "--wdecay", "1.2e-6"]


def test_seed_flags_print_as_a_selfish_schedule(capsys):
    import word_lm

    text = word_lm.main(SEED_FLAGS + ["--print-schedule"])["schedule"]
    assert capsys.readouterr().out == text
    schedule = yaml.safe_load(text)
    assert schedule["pruners"]["selfish"] == {
        "class": "DynamicSparsityPruner", "density": 0.33, "sparse_init": "uniform", "death": "magnitude",
        "growth": "random", "redistribution": "none", "death_rate": 0.8, "death_rate_decay": "cosine",
        "death_rate_floor": 0.005, "update_frequency": "epoch", "seed": 7}
    assert schedule["extensions"]["nt_asgd"] == {"class": "NTASGDSwitch", "nonmono": 1}
    assert [p.get("ending_epoch") for p in schedule["policies"]] == [3, 3]
    assert "# example-args: --optimizer sgd" in text


def test_printed_schedule_trains_exactly_like_the_flags(tmp_path, capsys):
    import word_lm

    from_flags = word_lm.main(SEED_FLAGS + TINY)
    text = word_lm.main(SEED_FLAGS + ["--print-schedule"])["schedule"]
    path = tmp_path / "selfish.yaml"
    path.write_text(text)
    header = next(line for line in text.splitlines() if line.startswith("# example-args:"))
    rest = [a for a in SEED_FLAGS if a not in ("--sparse",)]
    from_yaml = word_lm.main(["--schedule", str(path)] + rest + TINY + shlex.split(header.split(":", 1)[1]))
    assert from_flags["val_ppl"] == from_yaml["val_ppl"] and from_flags["test_ppl"] == from_yaml["test_ppl"]
    # every non-bias weight at density 0.33; regrown weights of the last event may still be exactly zero
    assert from_flags["sparsity"] >= 0.67


@pytest.mark.parametrize("flags", [["--model", "AWD", "--tied", "--nlayers", "2"],
                                   ["--model", "RHN", "--tied", "--couple", "--nlayers", "1", "--depth", "2"],
                                   ["--model", "ONLSTM", "--tied", "--nlayers", "2"]],
                         ids=["AWD", "RHN", "ONLSTM"])
def test_example_trains_the_selfish_models(flags, capsys):
    import word_lm

    result = word_lm.main(flags + TINY + ["--sparse", "--optimizer", "sgd", "--epochs", "1", "--density", "0.5"])
    assert result["sparsity"] >= 0.5
    assert 0 < result["test_ppl"] < 2000


def test_sparse_and_a_schedule_file_together_are_refused():
    import word_lm

    with pytest.raises(SystemExit, match="not both"):
        word_lm.main(["--sparse", "--schedule", os.path.join(ROOT, "schedules", "selfish_lstm.yaml")] + TINY)

"""examples/papers/selfish_rnn.py accepts the Selfish-RNN script's flags, as a schedule it can print that
examples/word_lm.py runs."""
import os
import shlex

import pytest
import yaml
from conftest import ROOT, load_example

TINY = ["--emsize", "16", "--nhid", "16", "--synthetic-tokens", "3000", "--max-train-batches", "3", "--bptt", "8",
        "--no-progress"]
# Selfish-RNN's own flags, and the ones examples/word_lm.py shares with it
SELFISH_FLAGS = ["--sparse", "--growth", "random", "--death", "magnitude", "--redistribution", "none",
                 "--death-rate", "0.8", "--density", "0.33"]
TRAINER_FLAGS = ["--optimizer", "sgd", "--nonmono", "1", "--lr", "20", "--clip", "0.25", "--seed", "7",
                 "--epochs", "3", "--wdecay", "1.2e-6"]
SEED_FLAGS = SELFISH_FLAGS + TRAINER_FLAGS


def test_seed_flags_print_as_a_selfish_schedule(capsys):
    selfish_rnn = load_example("papers/selfish_rnn.py")

    text = selfish_rnn.main(SEED_FLAGS + ["--print-schedule"])["schedule"]
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
    selfish_rnn, word_lm = load_example("papers/selfish_rnn.py"), load_example("word_lm.py")

    from_flags = selfish_rnn.main(SEED_FLAGS + TINY)
    text = selfish_rnn.main(SEED_FLAGS + ["--print-schedule"])["schedule"]
    path = tmp_path / "selfish.yaml"
    path.write_text(text)
    header = next(line for line in text.splitlines() if line.startswith("# example-args:"))
    from_yaml = word_lm.main(["--schedule", str(path)] + TRAINER_FLAGS + TINY + shlex.split(header.split(":", 1)[1]))
    assert from_flags["val_ppl"] == from_yaml["val_ppl"] and from_flags["test_ppl"] == from_yaml["test_ppl"]
    # every non-bias weight at density 0.33; regrown weights of the last event may still be exactly zero
    assert from_flags["sparsity"] >= 0.67


@pytest.mark.parametrize("flags", [["--model", "AWD", "--tied", "--nlayers", "2"],
                                   ["--model", "RHN", "--tied", "--couple", "--nlayers", "1", "--depth", "2"],
                                   ["--model", "ONLSTM", "--tied", "--nlayers", "2"]],
                         ids=["AWD", "RHN", "ONLSTM"])
def test_example_trains_the_selfish_models(flags, capsys):
    selfish_rnn = load_example("papers/selfish_rnn.py")

    result = selfish_rnn.main(flags + TINY + ["--sparse", "--optimizer", "sgd", "--epochs", "1", "--density", "0.5"])
    assert result["sparsity"] >= 0.5
    assert 0 < result["test_ppl"] < 2000


def test_sparse_and_a_schedule_file_together_are_refused():
    selfish_rnn = load_example("papers/selfish_rnn.py")

    with pytest.raises(SystemExit, match="not both"):
        selfish_rnn.main(["--sparse", "--schedule", os.path.join(ROOT, "schedules", "selfish_lstm.yaml")] + TINY)

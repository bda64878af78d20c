"""schedules/published/: the runs of issue 17's tables, each a word_lm.py command with flags it accepts."""
import glob
import os
import re
import shlex

import pytest
import torch
from conftest import DISTILLER_SCHEDULES, ROOT, load_example
from test_shipped_schedules import TINY, epochs_needed, example_args

import compress
from compress_models import RNNModel

FOLDER = os.path.join(ROOT, "schedules", "published")
FILES = sorted(glob.glob(os.path.join(FOLDER, "*.yaml")))


def header_command(path):
    """The ``#   python examples/word_lm.py ...`` command of a schedule's header, joined across its lines."""
    lines, keep = [], False
    with open(path) as f:
        for line in f:
            text = line.lstrip("#").strip()
            keep = keep or text.startswith("python examples/word_lm.py")
            if keep:
                lines.append(text.rstrip("\\").strip())
                if not text.endswith("\\"):
                    break
    return shlex.split(" ".join(lines))


def readme_commands():
    with open(os.path.join(FOLDER, "README.md")) as f:
        return [shlex.split(m) for m in re.findall(r"^    (python examples/word_lm\.py .*)$", f.read(), re.M)]


def test_five_schedules_for_table_2_and_seven_commands_for_table_1():
    assert [os.path.basename(f) for f in FILES] == [f"selfish_ptb_{n}.yaml" for n in
                                                     ("agp", "dense", "dense_small", "selfish", "static")]
    commands = readme_commands()
    assert len(commands) == 12 and sum("wikitext-2" in " ".join(c) for c in commands) == 7


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f) for f in FILES])
def test_header_command_is_the_readme_command_and_word_lm_accepts_it(path):
    word_lm = load_example("word_lm.py")

    command = header_command(path)
    assert command in readme_commands()
    args = word_lm.parse_args(command[2:])
    assert os.path.join(ROOT, args.schedule) == path
    assert (args.lr, args.clip, args.dropout, args.wd, args.epochs, args.optimizer, args.tied) == \
        (40.0, 0.25, 0.65, 1.2e-6, 100, "sgd", False)
    assert args.nhid == args.emsize == (699 if "dense_small" in path else 1500)


def test_distiller_commands_use_distillers_recipe_and_files():
    word_lm = load_example("word_lm.py")

    for command in readme_commands():
        args = word_lm.parse_args(command[2:])
        if "wikitext-2" not in args.data:
            continue
        assert (args.lr, args.anneal, args.clip, args.wd, args.epochs, args.tied, args.eval_batch_size) == \
            (20.0, 2.0, 0.25, 1e-6, 40, True, 10)
        assert args.dropout == (0.65 if args.nhid == 1500 else 0.5)
        if args.schedule:
            name = os.path.basename(args.schedule)
            assert re.fullmatch(r"word_lang_model\.LARGE_(70|80|90|95)\.schedule_agp\.yaml", name)
            if os.path.isdir(DISTILLER_SCHEDULES):
                assert os.path.isfile(os.path.join(DISTILLER_SCHEDULES, name))


@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(f) for f in FILES])
def test_published_schedule_runs_on_a_tiny_model(path, capsys):
    word_lm = load_example("word_lm.py")

    result = word_lm.main(["--schedule", path, "--epochs", str(epochs_needed(path))] + TINY + example_args(path))
    assert result["val_ppl"] > 0
    capsys.readouterr()


def test_static_baseline_starts_from_the_selfish_runs_mask_and_keeps_it():
    def initial_masks(name):
        torch.manual_seed(0)
        model = RNNModel("LSTM", 40, 12, 12, 2)
        optimizer = compress.optim.SparseNTASGD(model.parameters(), lr=1.0)
        scheduler = compress.file_config(model, optimizer, os.path.join(FOLDER, f"selfish_ptb_{name}.yaml"))
        scheduler.on_epoch_begin(0, optimizer)
        return {n: m.clone() for n, m in scheduler.masks.items()}, scheduler.components["pruners"][name]

    selfish, _ = initial_masks("selfish")
    static, pruner = initial_masks("static")
    assert selfish.keys() == static.keys() and all(torch.equal(selfish[n], static[n]) for n in selfish)
    assert pruner.update_frequency == "never"


def test_equal_weights_dense_model_has_the_sparse_models_nonzeros():
    with torch.device("meta"):
        small = sum(p.numel() for p in RNNModel("LSTM", 10000, 699, 699, 2).parameters())
        wide = RNNModel("LSTM", 10000, 1500, 1500, 2)
    matrices = sum(p.numel() for n, p in wide.named_parameters() if "bias" not in n)
    biases = sum(p.numel() for n, p in wide.named_parameters() if "bias" in n)
    sparse = round(0.33 * matrices) + biases
    assert (small, sparse) == (21_818_800, 21_814_000)
    with torch.device("meta"):
        closer = [sum(p.numel() for p in RNNModel("LSTM", 10000, h, h, 2).parameters()) for h in (698, 700)]
    assert all(abs(c - sparse) > abs(small - sparse) for c in closer)

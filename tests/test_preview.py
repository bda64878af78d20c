"""python -m compress preview: what a schedule will do, epoch by epoch, equals what training with it does."""
import pytest
import torch
import yaml
from loops import run_epochs

import compress
from compress.cli import main
from compress.context import HookContext
from compress.scheduling.preview import plot_preview, preview_schedule, preview_table
from compress_models import RNNModel

EPOCHS = 6
SCHEDULE = {
    "pruners": {
        "agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.7,
                "weights": ["rnn.weight_hh_*"]},
        "level": {"class": "SparsityLevelParameterPruner",
                  "levels": {"rnn.weight_ih_l0[gate=f]": 0.8, "rnn.weight_ih_l1": 0.3}},
        "dst": {"class": "SETPruner", "density": 0.4, "weights": ["encoder.weight"], "seed": 1},
    },
    "lr_schedulers": {"decay": {"class": "StepLR", "step_size": 2, "gamma": 0.5}},
    "policies": [
        {"pruner": {"instance_name": "agp"}, "starting_epoch": 1, "ending_epoch": 5, "frequency": 1},
        {"pruner": {"instance_name": "level"}, "epochs": [2, 4]},
        {"pruner": {"instance_name": "dst"}, "starting_epoch": 0, "ending_epoch": 4},
        {"lr_scheduler": {"instance_name": "decay"}, "starting_epoch": 0, "ending_epoch": EPOCHS},
    ],
}


def tiny_model(nhid=12):
    torch.manual_seed(0)
    return RNNModel("LSTM", 40, nhid, nhid, 2, dropout=0.0, tie_weights=True)


def pruned_count(store, key):
    mask = store.get(key)
    return 0 if mask is None else int((~mask).sum())


def test_preview_numbers_are_what_training_sets():
    model = tiny_model()
    plan = preview_schedule(model, SCHEDULE, lr=0.5)
    assert list(plan.epochs) == list(range(EPOCHS))

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = compress.dict_config(model, optimizer, SCHEDULE)
    seen, lrs = [], []

    def record(epoch):
        seen.append({key: pruned_count(scheduler.masks, key[1]) for key in plan.targets})

    original = scheduler.on_epoch_begin

    def on_epoch_begin(epoch, optimizer=None, **kwargs):
        lrs.append(tuple(g["lr"] for g in scheduler.optimizer.param_groups))
        original(epoch, optimizer, **kwargs)
        record(epoch)

    scheduler.on_epoch_begin = on_epoch_begin
    data = [(d, d.view(-1)) for d in torch.randint(0, 40, (2, 5, 4), generator=torch.Generator().manual_seed(2))]
    run_epochs(model, scheduler, optimizer, data, EPOCHS)

    assert plan.lr == lrs
    for (label, key), targets in plan.targets.items():
        numel = scheduler.masks.get(key).numel()
        for epoch, target in enumerate(targets):
            # level pruning prunes int(s * numel) (Distiller), a dynamic pruner an exact count
            count = round if label == "dst" else int
            expected = 0 if target is None else count(target.value * numel)
            assert seen[epoch][(label, key)] == expected, (label, key, epoch)
    assert [round(s, 4) if s else s for s in plan.sparsity("agp", "rnn.weight_hh_l0")] == \
        [None, 0.1, 0.5222, 0.6778, 0.7, 0.7]
    assert plan.sparsity("level", "rnn.weight_ih_l0[gate=f]") == [None, None, 0.8, 0.8, 0.8, 0.8]
    assert plan.sparsity("dst", "encoder.weight") == [pytest.approx(0.6)] * EPOCHS
    assert plan.active["level"] == [False, False, True, False, True, False]


def test_preview_leaves_the_model_as_it_was():
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    plan = preview_schedule(model, SCHEDULE)
    assert plan.targets
    assert list(model.parameters()) == params
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not model._forward_pre_hooks and all(p.grad is None and not p._backward_hooks for p in params)


def test_preview_notes_a_policy_that_outlasts_the_run_and_a_minibatch_ramp():
    schedule = {"pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.0,
                                    "final_sparsity": 0.8, "weights": ["rnn.weight_hh_l0"], "ramp": "minibatch"}},
                "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 10}]}
    plan = preview_schedule(tiny_model(), schedule, epochs=4)
    assert any("acts until epoch 9, after the last epoch previewed (3)" in n for n in plan.notes)
    assert any("first minibatch" in n for n in plan.notes)
    at_start = plan.sparsity("agp", "rnn.weight_hh_l0")
    at_end = preview_schedule(tiny_model(), schedule, epochs=4, minibatches=10).sparsity("agp", "rnn.weight_hh_l0")
    assert at_start[0] == 0.0 and all(e > s for s, e in zip(at_start, at_end))


def write(tmp_path, schedule, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(schedule, sort_keys=False))
    return str(path)


def test_cli_prints_the_table(tmp_path):
    lines = []
    code = main(["preview", write(tmp_path, SCHEDULE), "--model", "test_preview:tiny_model", "--model-option",
                 "nhid=8", "--lr", "2"], out=lines.append)
    assert code == 0
    text = lines[0]
    assert "level: SparsityLevelParameterPruner on rnn.weight_ih_l0[gate=f], rnn.weight_ih_l1" not in text
    assert "rnn.weight_ih_l0[gate=f]" in text and "agp: AutomatedGradualPruner on rnn.weight_hh_l0, " \
        "rnn.weight_hh_l1" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line[:7].strip().isdigit()}
    assert rows["2"][-4:] == ["52.22", "80.00", "30.00", "60.00"] and "1" in rows["2"]   # lr 2 * 0.5
    assert "dst: prune-and-regrow at the end of epochs 0..2 (3 events" in text


def test_cli_errors_are_the_loaders(tmp_path, capsys):
    bad = dict(SCHEDULE, policies=SCHEDULE["policies"] + [{"pruner": {"instance_name": "agp"}, "ending_epoch": 3}])
    assert main(["preview", write(tmp_path, bad), "--model", "test_preview:tiny_model"]) == 2
    assert "s.yaml:" in capsys.readouterr().err
    path = write(tmp_path, {"pruners": {"p": {"class": "SparsityLevelParameterPruner",
                                              "levels": {"rnn.weight_hh_l0[gate=q]": 0.5}}},
                            "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]})
    assert main(["preview", path, "--model", "test_preview:tiny_model"]) == 2
    err = capsys.readouterr().err
    assert "pruners.p.levels" in err and "its gates are i, f, g, o" in err
    assert main(["preview", path, "--model", "no_such_module_xyz:f"]) == 2
    assert "cannot import model module 'no_such_module_xyz'" in capsys.readouterr().err


def test_plot_needs_the_plot_extra(tmp_path, monkeypatch):
    modules = __import__("sys").modules
    for name in [m for m in modules if m.startswith("matplotlib.")]:  # an earlier test may have imported them
        monkeypatch.delitem(modules, name)
    monkeypatch.setitem(modules, "matplotlib", None)
    with pytest.raises(compress.CompressError, match=r"compress\[plot\]"):
        plot_preview(preview_schedule(tiny_model(), SCHEDULE), tmp_path / "p.png")


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra draws the preview")
    plan = preview_schedule(tiny_model(), SCHEDULE)
    path = plot_preview(plan, tmp_path / "p.png", title="s.yaml")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "agp" in preview_table(plan)


def test_thresholds_are_previewed_where_known_and_data_dependent_targets_said_so():
    schedule = {"pruners": {"baidu": {"class": "BaiduRNNPruner", "q": 0.2, "ramp_epoch_offset": 1,
                                      "ramp_slope_mult": 2, "weights": ["rnn.weight_ih_l0"]},
                            "splice": {"class": "SplicingPruner", "sensitivities": {"rnn.weight_hh_l0": 0.3},
                                       "low_thresh_mult": 0.9, "hi_thresh_mult": 1.1}},
                "policies": [{"pruner": {"instance_name": "baidu"}, "starting_epoch": 0, "ending_epoch": 3},
                             {"pruner": {"instance_name": "splice"}, "starting_epoch": 1, "ending_epoch": 3}]}
    model = tiny_model()
    plan = preview_schedule(model, schedule)
    scheduler = compress.dict_config(model, None, schedule)
    pruner = scheduler.components["pruners"]["baidu"]
    timing = scheduler.policies[0][2].timing
    expected = [pruner.threshold(HookContext(epoch=e, timing=timing)) for e in range(3)]
    assert [t.kind for t in plan.targets[("baidu", "rnn.weight_ih_l0")]] == ["threshold"] * 3
    assert [t.value for t in plan.targets[("baidu", "rnn.weight_ih_l0")]] == expected
    for epoch in range(3):  # what the pruner then does with it: nothing at or below the threshold survives
        scheduler.on_epoch_begin(epoch)
        kept = model.rnn.weight_ih_l0[scheduler.masks["rnn.weight_ih_l0"]]
        assert (kept.abs() > expected[epoch]).all()
    table = preview_table(plan)
    assert f"|w|<={expected[2]:.4g}" in table and "data-dep." in table
    assert plan.targets[("splice", "rnn.weight_hh_l0")][0] is None


def test_cli_plot_writes_the_png_it_names(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra draws the preview")
    lines = []
    out = tmp_path / "preview.png"
    assert main(["preview", write(tmp_path, SCHEDULE), "--model", "test_preview:tiny_model", "--plot", str(out)],
                out=lines.append) == 0
    assert lines[0].endswith(f"plot written to {out}") and out.read_bytes()[:4] == b"\x89PNG"

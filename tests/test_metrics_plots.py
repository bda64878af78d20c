"""The scheduler's metrics hook, its CSV/TensorBoard writers, the sparsity plot, progress logging, and the traps
of a dynamic-sparsity run that stops early (mask vs value sparsity, checkpoints that say so)."""
from __future__ import annotations

import builtins
import io
import logging
import sys

import pytest
import torch
from loops import run_epochs
from torch import nn

import compress
from compress.errors import CompressError
from compress.progress import ProgressLog
from compress.reports import CSVMetricsWriter, read_metrics_csv
from compress.reports.tables import sparsity_summary


def _dst(epochs, ending_epoch, callback=None):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    schedule = {"pruners": {"p": {"class": "SelfishRNNPruner", "density": 0.5, "death_rate": 0.5}},
                "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": ending_epoch}]}
    scheduler = compress.dict_config(model, optimizer, schedule)
    if callback is not None:
        scheduler.add_metrics_callback(callback)
    x = torch.randn(8, 6)
    run_epochs(model, scheduler, optimizer, [x, x], epochs, metrics=lambda epoch: {"min": 1.0 + epoch},
               loss=lambda m, batch, i: m(batch).square().mean())
    return model, optimizer, scheduler


def test_metrics_callback_gets_sparsity_prune_regrow_counts_and_lr_each_epoch():
    records = []
    _dst(3, 10, records.append)
    assert [r["epoch"] for r in records] == [0, 1, 2]
    assert all(r["lr"] == 0.5 and r["metric/min"] == 1.0 + r["epoch"] for r in records)
    assert records[0]["mask_sparsity/total"] == pytest.approx(50.0, abs=1.0)
    later = records[1]
    assert later["pruned/total"] > 0 and later["regrown/total"] == later["pruned/total"]  # density is kept
    # after an event the regrown weights are still zero: values sparser than masks
    assert later["sparsity/total"] > later["mask_sparsity/total"]


def test_csv_writer_keeps_earlier_epochs_when_a_run_resumes(tmp_path):
    path = tmp_path / "m.csv"
    _dst(2, 10, CSVMetricsWriter(path))
    first = read_metrics_csv(path)
    writer = CSVMetricsWriter(path)                   # a resumed run starting at epoch 1 again
    writer({"epoch": 1, "lr": 0.25})
    rows = read_metrics_csv(path)
    assert [r["epoch"] for r in rows] == [0, 1] and rows[0] == first[0] and rows[1] == {"epoch": 1, "lr": 0.25}


def test_tensorboard_writer_writes_events(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra (pip install 'compress[tensorboard]')")
    writer = compress.reports.TensorBoardWriter(tmp_path / "tb")
    _dst(2, 10, writer)
    writer.close()
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "tb").iterdir())


def _refuse(prefix, monkeypatch):
    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith(prefix):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m.startswith(prefix)]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", fake)


def test_tensorboard_writer_without_the_extra_names_it(tmp_path, monkeypatch):
    _refuse("torch.utils.tensorboard", monkeypatch)
    with pytest.raises(CompressError, match=r"compress\[tensorboard\]"):
        compress.reports.TensorBoardWriter(tmp_path / "tb")


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    _refuse("matplotlib", monkeypatch)
    with pytest.raises(CompressError, match=r"compress\[plot\]"):
        compress.plot_sparsity_history([{"epoch": 0, "sparsity/w": 1.0}], tmp_path / "p.png")


def test_plot_sparsity_history_of_dynamic_sparsity_has_three_panels(tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra (pip install 'compress[plot]')")
    records = []
    _dst(3, 10, records.append)
    path = compress.plot_sparsity_history(records, tmp_path / "s.png", title="selfish")
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    assert width == 1500       # sparsity; perplexity (the records carry a loss); prune/regrow counts (weights regrew)
    del records[0]["metric/min"]
    for record in records:
        record["regrown/total"] = 0
    path = compress.plot_sparsity_history(records[:1], tmp_path / "one.png")
    assert int.from_bytes(open(path, "rb").read()[16:20], "big") == 500


def test_plot_of_a_history_without_sparsity_is_an_error(tmp_path):
    with pytest.raises(CompressError, match="no 'sparsity/<weight>'"):
        compress.plot_sparsity_history([{"epoch": 0, "lr": 1.0}], tmp_path / "p.png")


def test_progress_log_is_rate_limited_but_always_says_the_end(caplog):
    logger = logging.getLogger("test.progress")
    progress = ProgressLog(logger, "work", total=100, interval=3600.0)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for i in range(1, 101):
            progress.update(i, "best %d", i)
    assert [r.getMessage() for r in caplog.records] == ["work: 100/100 (100%), " +
                                                        caplog.records[0].getMessage().split(", ", 1)[1]]
    assert caplog.records[0].getMessage().endswith("best 100")


def test_sparsity_table_shows_mask_sparsity_beside_value_sparsity_after_an_early_stop():
    model, _, scheduler = _dst(2, 10)
    rows = {r.name: r for r in sparsity_summary(model, masks=scheduler)}
    assert rows["0.weight"].fine > rows["0.weight"].mask_sparsity     # regrown weights still at zero
    table = compress.sparsity_table(model, masks=scheduler)
    assert "Mask (%)" in table.splitlines()[1]
    assert "Mask (%)" not in compress.sparsity_table(model)


def test_checkpoint_of_an_early_stop_records_untrained_regrowth_and_summary_warns(tmp_path, caplog):
    model, optimizer, scheduler = _dst(2, 10)
    compress.save_checkpoint(tmp_path / "c.pt", model, optimizer, scheduler, epoch=1)
    from compress.cli import main

    with caplog.at_level(logging.WARNING):
        assert main(["summary", str(tmp_path / "c.pt")], out=lambda s: None) == 0
    assert any("never trained" in r.getMessage() for r in caplog.records)
    model, optimizer, scheduler = _dst(2, 2)   # the policy ends with the run: nothing to say
    compress.save_checkpoint(tmp_path / "d.pt", model, optimizer, scheduler, epoch=1)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        main(["summary", str(tmp_path / "d.pt")], out=lambda s: None)
    assert not any("never trained" in r.getMessage() for r in caplog.records)


def test_trainer_progress_writes_no_carriage_return_off_a_terminal(monkeypatch):
    from compress_models.trainer import _Progress

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    progress = _Progress("epoch 0", torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0), True, interval=0.0)
    progress(1, 2, 3.0)
    progress(2, 2, 2.5)
    progress.close()
    assert "\r" not in stream.getvalue() and stream.getvalue().count("\n") == 2


def test_trainer_keeps_schedule_epochs_only_when_asked_and_then_warns(capsys):
    from compress_models.builders import parse_args
    from compress_models.trainer import train

    flags = ["--schedule", "schedules/selfish_lstm.yaml", "--optimizer", "sgd", "--emsize", "8", "--nhid", "8",
             "--epochs", "2", "--max-train-batches", "2", "--synthetic-tokens", "2000", "--no-progress"]
    train(parse_args(flags + ["--keep-schedule-epochs"]))
    out = capsys.readouterr().out
    assert "regrown weights that never trained" in out and "Mask (%)" in out


def test_a_resumed_run_counts_pruned_and_regrown_positions_against_the_masks_it_resumed_with(tmp_path):
    model, optimizer, scheduler = _dst(2, 10)
    compress.save_checkpoint(str(tmp_path / "c.pt"), model, optimizer, scheduler)
    model, optimizer, scheduler = _dst(0, 10)
    resumed = []
    scheduler.add_metrics_callback(resumed.append)
    compress.load_checkpoint(str(tmp_path / "c.pt"), model, optimizer, scheduler)
    x = torch.randn(8, 6)
    run_epochs(model, scheduler, optimizer, [x, x], 1, start=2, loss=lambda m, batch, i: m(batch).square().mean())
    first = resumed[0]
    pruned_positions = sum(int((~m).sum()) for _, m in scheduler.masks.items())
    # counted against the dense model, every pruned position would count; against the resumed masks only the
    # epoch's prune-and-regrow event does, which keeps the density
    assert first["epoch"] == 2 and 0 < first["pruned/total"] == first["regrown/total"] < pruned_positions

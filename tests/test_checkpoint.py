"""Checkpoints are written atomically and read safely; bad files leave the model untouched."""
import os
import pickle

import pytest
import torch

import compress
from compress.io.checkpoint import read_checkpoint
from compress_models import RNNModel


def model(seed=0, nhid=8):
    torch.manual_seed(seed)
    return RNNModel("LSTM", 30, nhid, nhid, 1, tie_weights=True)


def state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trip_with_extra(tmp_path):
    m = model()
    compress.save_checkpoint(tmp_path / "c.pt", m, epoch=3, best_val=1.5, args={"lr": 20.0, "tied": True})
    m2 = model(seed=1)
    extra = compress.load_checkpoint(tmp_path / "c.pt", m2)
    assert extra == {"epoch": 3, "best_val": 1.5, "args": {"lr": 20.0, "tied": True}}
    assert same(state(m), m2.state_dict())


def test_file_loads_with_weights_only(tmp_path):
    m = model()
    opt = torch.optim.Adam(m.parameters())
    compress.save_checkpoint(tmp_path / "c.pt", m, opt, compress.CompressionScheduler(m, opt))
    torch.load(tmp_path / "c.pt", weights_only=True)


def test_unsafe_extra_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="hook"):
        compress.save_checkpoint(tmp_path / "c.pt", model(), hook=lambda: None)
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    compress.save_checkpoint(path, model(), epoch=1)
    good = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        compress.save_checkpoint(path, model(seed=2), epoch=2)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["c.pt"]   # no temporary file left behind


def test_truncated_file_is_a_clear_error_and_model_untouched(tmp_path):
    path = tmp_path / "c.pt"
    compress.save_checkpoint(path, model(), epoch=1)
    path.write_bytes(path.read_bytes()[: 200])
    m = model(seed=5)
    before = state(m)
    with pytest.raises(compress.CheckpointError, match="truncated"):
        compress.load_checkpoint(path, m)
    assert same(before, m.state_dict())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the foreign file is pickled on purpose
def test_foreign_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": object()}, f)
    with pytest.raises(compress.CheckpointError):
        read_checkpoint(path)


def test_foreign_format_is_refused(tmp_path):
    torch.save({"weights": torch.ones(3)}, tmp_path / "other.pt")
    with pytest.raises(compress.CheckpointError, match="not a compress checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


def test_missing_file(tmp_path):
    with pytest.raises(compress.CheckpointError, match="no such"):
        compress.load_checkpoint(tmp_path / "nope.pt", model())


def test_shape_mismatch_leaves_model_untouched(tmp_path):
    compress.save_checkpoint(tmp_path / "c.pt", model(nhid=8))
    m = model(seed=3, nhid=6)
    before = state(m)
    with pytest.raises(compress.CheckpointError, match="shape"):
        compress.load_checkpoint(tmp_path / "c.pt", m)
    assert same(before, m.state_dict())


def test_distiller_checkpoint_layout_loads(tmp_path):
    m = model()
    mask = torch.ones(32, 8)
    mask[0] = 0
    torch.save({"epoch": 4, "arch": "RNNModel", "state_dict": m.state_dict(),
                "compression_sched": {"masks_dict": {"rnn.weight_hh_l0": mask}}}, tmp_path / "d.pth.tar")
    m2 = model(seed=9)
    scheduler = compress.CompressionScheduler(m2)
    extra = compress.load_checkpoint(tmp_path / "d.pth.tar", m2, scheduler=scheduler)
    assert extra["epoch"] == 4
    assert (m2.rnn.weight_hh_l0[0] == 0).all()


def distiller_checkpoint(path, m, optimizer, **more):
    """A file written as Distiller's ``apputils.save_checkpoint`` writes it (it pickles ``type(optimizer)``)."""
    mask = torch.ones(32, 8)
    mask[0] = 0
    torch.save({"epoch": 4, "state_dict": m.state_dict(), "arch": "RNNModel",
                "optimizer_state_dict": optimizer.state_dict(), "optimizer_type": type(optimizer),
                "compression_sched": {"masks_dict": {"rnn.weight_hh_l0": mask}},
                "extras": {"best_val_loss": 4.5}, **more}, path)


def test_distiller_checkpoint_with_its_optimizer_class_loads(tmp_path):
    m = model()
    optimizer = torch.optim.SGD(m.parameters(), lr=20, momentum=0.9)
    m(torch.zeros(3, 2, dtype=torch.long), m.init_hidden(2))[0].sum().backward()
    optimizer.step()
    distiller_checkpoint(tmp_path / "d.pth.tar", m, optimizer)
    m2 = model(seed=9)
    optimizer2 = torch.optim.SGD(m2.parameters(), lr=1, momentum=0.9)
    extra = compress.load_checkpoint(tmp_path / "d.pth.tar", m2, optimizer2, compress.CompressionScheduler(m2))
    assert extra["optimizer_type"] == "torch.optim.sgd.SGD" and extra["extras"] == {"best_val_loss": 4.5}
    assert optimizer2.param_groups[0]["lr"] == 20 and len(optimizer2.state) == len(optimizer.state)
    assert (m2.rnn.weight_hh_l0[0] == 0).all()


def test_a_class_outside_torch_optim_in_a_distiller_checkpoint_is_refused(tmp_path):
    import subprocess
    m = model()
    optimizer = torch.optim.SGD(m.parameters(), lr=20)
    distiller_checkpoint(tmp_path / "d.pth.tar", m, optimizer, thinning_recipes=[subprocess.Popen])
    before = state(m)
    with pytest.raises(compress.CheckpointError, match="Popen"):
        compress.load_checkpoint(tmp_path / "d.pth.tar", m)
    assert same(before, m.state_dict())


def test_cli_summary_prints_the_table(tmp_path, capsys):
    from compress.cli import main

    m = model()
    with torch.no_grad():
        m.rnn.weight_hh_l0[:16] = 0
    compress.save_checkpoint(tmp_path / "c.pt", m)
    lines = []
    assert main(["summary", str(tmp_path / "c.pt")], out=lines.append) == 0
    table = lines[0]
    assert "rnn.weight_hh_l0" in table and "50.00" in table and "encoder.weight (= decoder.weight)" in table


def test_cli_summary_bad_file_exits_2(tmp_path, capsys):
    from compress.cli import main

    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["summary", str(tmp_path / "bad.pt")]) == 2
    assert "bad.pt" in capsys.readouterr().err


def test_an_optimizer_built_with_an_integer_lr_resumes_an_annealed_float_one(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=20)   # Distiller's main.py: lr=args.lr, an int
    optimizer.param_groups[0]["lr"] = 1.25                    # annealed
    compress.save_checkpoint(str(tmp_path / "c.pt"), model, optimizer)
    fresh = torch.optim.SGD(model.parameters(), lr=20)
    compress.load_checkpoint(str(tmp_path / "c.pt"), model, fresh)
    assert fresh.param_groups[0]["lr"] == 1.25
    optimizer.param_groups[0]["lr"] = "fast"
    compress.save_checkpoint(str(tmp_path / "bad.pt"), model, optimizer)
    with pytest.raises(compress.CheckpointError, match=r"param_groups\[0\]\.lr"):
        compress.load_checkpoint(str(tmp_path / "bad.pt"), model, torch.optim.SGD(model.parameters(), lr=20))

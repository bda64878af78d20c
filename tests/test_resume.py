"""Stopping at any epoch and resuming from a checkpoint gives bit-identical weights, masks and optimizer state."""
import pytest
import torch
from loops import run_epochs

import compress
from compress_models import RNNModel

SCHEDULES = {
    "agp": {"pruners": {"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.6,
                              "weights": ["rnn.weight_*", "encoder.weight"]}},
            "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 4}]},
    "sensitivity": {"pruners": {"p": {"class": "SensitivityPruner", "sensitivities": {"rnn.weight_*": 0.6}}},
                    "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 1, "ending_epoch": 5}]},
    "splicing": {"pruners": {"p": {"class": "SplicingPruner", "sensitivities": {"rnn.weight_hh_*": 0.3},
                                   "low_thresh_mult": 0.9, "hi_thresh_mult": 1.1, "sensitivity_multiplier": 0.1}},
                 "policies": [{"pruner": {"instance_name": "p", "args": {"mask_on_forward_only": True,
                                                                         "use_double_copies": True,
                                                                         "keep_mask": True}},
                               "starting_epoch": 0, "ending_epoch": 4}]},
    "baidu": {"pruners": {"p": {"class": "BaiduRNNPruner", "q": 0.2, "ramp_epoch_offset": 1,
                                "ramp_slope_mult": 2, "weights": ["rnn.weight_ih_l0"]}},
              "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 5}]},
}
LR = {"lr_schedulers": {"decay": {"class": "StepLR", "step_size": 2, "gamma": 0.5}}}
EPOCHS = 5


def make(schedule):
    torch.manual_seed(0)
    model = RNNModel("LSTM", 40, 12, 12, 2, dropout=0.3, tie_weights=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0, momentum=0.9, weight_decay=1e-4)
    full = dict(schedule, **LR)
    full["policies"] = schedule["policies"] + [{"lr_scheduler": {"instance_name": "decay"},
                                                 "starting_epoch": 0, "ending_epoch": EPOCHS}]
    return model, optimizer, compress.dict_config(model, optimizer, full)


def train(model, optimizer, scheduler, epochs, data):
    # the model has dropout, which draws from the global RNG
    run_epochs(model, scheduler, optimizer, [(d, d.view(-1)) for d in data], len(epochs), epochs.start, clip=0.5)


def snapshot(model, optimizer, scheduler):
    return {"model": {k: v.clone() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


def assert_identical(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_identical(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_identical(x, y)
    elif torch.is_tensor(a):
        assert a.dtype == b.dtype and torch.equal(a, b)
    else:
        assert a == b


@pytest.mark.parametrize("family", sorted(SCHEDULES))
@pytest.mark.parametrize("stop", [1, 3])
def test_resume_is_bit_identical(tmp_path, family, stop):
    data = torch.randint(0, 40, (3, 5, 4), generator=torch.Generator().manual_seed(3))
    model, optimizer, scheduler = make(SCHEDULES[family])
    torch.manual_seed(7)
    train(model, optimizer, scheduler, range(EPOCHS), data)
    straight = snapshot(model, optimizer, scheduler)

    model, optimizer, scheduler = make(SCHEDULES[family])
    torch.manual_seed(7)
    train(model, optimizer, scheduler, range(stop), data)
    path = tmp_path / "ckpt.pt"
    compress.save_checkpoint(path, model, optimizer, scheduler, epoch=stop - 1)
    torch.manual_seed(12345)  # the resumed process starts with another RNG state

    model, optimizer, scheduler = make(SCHEDULES[family])
    extra = compress.load_checkpoint(path, model, optimizer, scheduler)
    train(model, optimizer, scheduler, range(extra["epoch"] + 1, EPOCHS), data)
    resumed = snapshot(model, optimizer, scheduler)
    assert_identical(straight, resumed)
    assert len(straight["scheduler"]["masks"]["masks"]) > 0


def test_distiller_masks_dict_loads(tiny_lm):
    scheduler = compress.CompressionScheduler(tiny_lm)
    mask = torch.ones(64, 16)
    mask[:, :4] = 0
    scheduler.load_state_dict({"masks_dict": {"rnn.weight_hh_l0": mask, "rnn.weight_ih_l0": None,
                                              "decoder.weight": torch.zeros(50, 16)}})
    assert scheduler.masks["rnn.weight_hh_l0"].dtype == torch.bool
    assert (tiny_lm.rnn.weight_hh_l0[:, :4] == 0).all()
    assert (tiny_lm.encoder.weight == 0).all()   # decoder.weight is the tied embedding


def test_resume_with_another_schedule_is_refused(tmp_path):
    model, optimizer, scheduler = make(SCHEDULES["agp"])
    compress.save_checkpoint(tmp_path / "c.pt", model, optimizer, scheduler, epoch=0)
    model2, optimizer2, scheduler2 = make(SCHEDULES["baidu"])
    before = {k: v.clone() for k, v in model2.state_dict().items()}
    with pytest.raises(compress.CheckpointError, match="policies"):
        compress.load_checkpoint(tmp_path / "c.pt", model2, optimizer2, scheduler2)
    assert_identical(before, model2.state_dict())

"""Distiller's MultiStepMultiGammaLR: cumulative factors at the milestones, stepped once per epoch, resumable."""
import pytest
import torch
from loops import run_epochs

import compress
from compress import ScheduleError
from compress.scheduling.lr_schedulers import MultiStepMultiGammaLR

# base LR 1; x0.5 from epoch 2 on, then x0.1 on top of it from epoch 4 on
MILESTONES, GAMMAS = [2, 4], [0.5, 0.1]
EXPECTED = [1.0, 1.0, 0.5, 0.5, 0.05, 0.05]


def schedule(epochs=6, **args):
    spec = {"class": "MultiStepMultiGammaLR", "milestones": MILESTONES, "gammas": GAMMAS}
    spec.update(args)
    return {"lr_schedulers": {"decay": spec},
            "policies": [{"lr_scheduler": {"instance_name": "decay"}, "starting_epoch": 0, "ending_epoch": epochs}]}


def optimizer_of(model):
    return torch.optim.SGD(model.parameters(), lr=1.0)


def lr_per_epoch(model, scheduler, optimizer, epochs, start=0):
    data = torch.randint(0, 50, (4, 2), generator=torch.Generator().manual_seed(0))
    seen = []
    run_epochs(model, scheduler, optimizer, [(data, data.view(-1))], epochs, start,
               after_step=lambda epoch, i: seen.append(optimizer.param_groups[0]["lr"]))
    return seen


def test_factors_accumulate_at_each_milestone():
    optimizer = optimizer_of(torch.nn.Linear(2, 2))
    lr = MultiStepMultiGammaLR(optimizer, MILESTONES, GAMMAS)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        lr.step()
    assert seen == pytest.approx(EXPECTED)


def test_the_policy_steps_it_at_the_end_of_each_epoch(tiny_lm):
    optimizer = optimizer_of(tiny_lm)
    scheduler = compress.dict_config(tiny_lm, optimizer, schedule())
    assert lr_per_epoch(tiny_lm, scheduler, optimizer, 6) == pytest.approx(EXPECTED)


@pytest.mark.parametrize("stop", [1, 2, 3, 4])
def test_resume_from_a_checkpoint_continues_the_schedule(tmp_path, tiny_lm, stop):
    optimizer = optimizer_of(tiny_lm)
    scheduler = compress.dict_config(tiny_lm, optimizer, schedule())
    before = lr_per_epoch(tiny_lm, scheduler, optimizer, stop)
    compress.save_checkpoint(tmp_path / "c.pt", tiny_lm, optimizer, scheduler, epoch=stop - 1)

    optimizer = optimizer_of(tiny_lm)
    scheduler = compress.dict_config(tiny_lm, optimizer, schedule())
    extra = compress.load_checkpoint(tmp_path / "c.pt", tiny_lm, optimizer, scheduler)
    after = lr_per_epoch(tiny_lm, scheduler, optimizer, 6 - stop, start=extra["epoch"] + 1)
    assert before + after == pytest.approx(EXPECTED)


def test_resumed_epoch_builds_it_at_that_epoch_the_distiller_way(tiny_lm):
    # file_config(..., resumed_epoch=2): epochs 0..2 are done, so the next epoch (3) runs at 0.5
    optimizer = optimizer_of(tiny_lm)
    scheduler = compress.dict_config(tiny_lm, optimizer, schedule(), resumed_epoch=2)
    assert lr_per_epoch(tiny_lm, scheduler, optimizer, 3, start=3) == pytest.approx(EXPECTED[3:])


@pytest.mark.parametrize("change,key", [
    ({"milestones": [4, 2]}, "lr_schedulers.decay.milestones"),
    ({"gammas": [0.5]}, "lr_schedulers.decay.gammas"),
    ({"gammas": [0.5, float("nan")]}, "lr_schedulers.decay.gammas[1]"),
    ({"gammas": [-0.5, 0.1]}, "lr_schedulers.decay.gammas[0]"),
    ({"milestones": [1.5, 4]}, "lr_schedulers.decay.milestones[0]"),
    ({"milestones": [True, 4]}, "lr_schedulers.decay.milestones[0]"),
    ({"milestones": 3}, "lr_schedulers.decay.milestones"),
])
def test_bad_milestones_or_gammas_raise_a_schedule_error_naming_the_key(tiny_lm, change, key):
    optimizer = optimizer_of(tiny_lm)
    with pytest.raises(ScheduleError) as info:
        compress.dict_config(tiny_lm, optimizer, schedule(**change))
    assert info.value.key == key, str(info.value)
    assert optimizer.param_groups[0]["lr"] == 1.0

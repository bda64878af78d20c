"""AGP follows Distiller's formula exactly, plus the opt-in per-minibatch ramp and global budget."""
import pytest
import torch
from loops import run_epochs

import compress
from compress.pruning.ramps import Timing, agp_sparsity, agp_sparsity_per_step


def run_hooks(scheduler, epochs, start=0, steps=2):
    """The scheduler's hooks for ``epochs`` epochs of ``steps`` minibatches, no training: AGP's masks depend
    only on the epoch."""
    run_epochs(None, scheduler, None, steps, epochs, start)


def sparsity(mask):
    return 1 - mask.float().mean().item()


@pytest.mark.parametrize("epoch,expected", [(2, 0.05), (3, 0.158), (4, 0.254), (6, 0.409), (10, 0.604),
                                            (14, 0.684), (19, 0.700)])
def test_large_70_rnn_trajectory_matches_distiller(epoch, expected):
    # Distiller's formula on word_lang_model.LARGE_70's schedule, rounded to 3 places (docs/distiller-compat.md)
    assert agp_sparsity(0.05, 0.70, epoch, Timing(starting_epoch=2, ending_epoch=20, frequency=1)) == \
        pytest.approx(expected, abs=6e-4)


@pytest.mark.parametrize("start,end,values", [
    (1, 25, [0.05, 0.3055, 0.4885, 0.6113, 0.6857, 0.7239, 0.738, 0.74]),
])
def test_large_80_l0_trajectory_matches_distiller(start, end, values):
    timing = Timing(starting_epoch=start, ending_epoch=end, frequency=3)
    got = [agp_sparsity(0.05, 0.74, e, timing) for e in timing.active_epochs]
    assert got == pytest.approx(values, abs=6e-4)


def test_large_80_embedding_trajectory_matches_distiller():
    timing = Timing(starting_epoch=3, ending_epoch=26, frequency=3)
    got = [agp_sparsity(0.05, 0.85, e, timing) for e in timing.active_epochs]
    assert got == pytest.approx([0.05, 0.346, 0.559, 0.701, 0.787, 0.831, 0.848, 0.85], abs=6e-4)


def test_span_is_distance_to_last_scheduled_epoch():
    # range(1, 25, 3) ends at 22: span = ((25 - 1 - 1) // 3) * 3 = 21
    timing = Timing(starting_epoch=1, ending_epoch=25, frequency=3)
    assert timing.last - timing.first == ((25 - 1 - 1) // 3) * 3 == 21


def test_epochs_list_form_ramps_from_first_to_last_listed_epoch():
    timing = Timing(epochs=(2, 4, 8))
    assert agp_sparsity(0.0, 0.6, 2, timing) == 0.0
    assert agp_sparsity(0.0, 0.6, 8, timing) == pytest.approx(0.6)
    assert agp_sparsity(0.0, 0.6, 4, timing) == pytest.approx(0.6 - 0.6 * (1 - 2 / 6) ** 3)


def test_per_minibatch_ramp_agrees_with_per_epoch_at_epoch_starts():
    timing = Timing(starting_epoch=1, ending_epoch=6, frequency=1)
    for epoch in timing.active_epochs:
        assert agp_sparsity_per_step(0.1, 0.8, epoch, 0, 50, timing) == pytest.approx(
            agp_sparsity(0.1, 0.8, epoch, timing))
    inside = agp_sparsity_per_step(0.1, 0.8, 2, 25, 50, timing)
    assert agp_sparsity(0.1, 0.8, 2, timing) < inside < agp_sparsity(0.1, 0.8, 3, timing)


def schedule(initial, final, weights, *, epochs=None, start=0, end=4, freq=1, **extra):
    policy = {"pruner": {"instance_name": "agp"}}
    policy.update({"epochs": epochs} if epochs else {"starting_epoch": start, "ending_epoch": end, "frequency": freq})
    return {"pruners": {"agp": dict(class_="x", initial_sparsity=initial, final_sparsity=final, weights=weights,
                                    **extra)},
            "policies": [policy]}


def build(model, initial, final, weights, **kw):
    sched = schedule(initial, final, weights, **kw)
    spec = sched["pruners"]["agp"]
    spec["class"] = "AutomatedGradualPruner"
    del spec["class_"]
    return compress.dict_config(model, None, sched)


def test_agp_reaches_final_sparsity_on_last_scheduled_epoch(tiny_lm):
    scheduler = build(tiny_lm, 0.05, 0.7, ["rnn.weight_ih_l0", "rnn.weight_hh_l0"], start=1, end=6, freq=2)
    run_hooks(scheduler, 5)   # epochs 1 and 3 prune; 5 is the last scheduled epoch
    assert sparsity(scheduler.masks["rnn.weight_ih_l0"]) < 0.7
    run_hooks(scheduler, 1, start=5)
    for name in ("rnn.weight_ih_l0", "rnn.weight_hh_l0"):
        assert sparsity(scheduler.masks[name]) == pytest.approx(0.7, abs=1 / 1024)
        assert (tiny_lm.get_parameter(name)[~scheduler.masks[name]] == 0).all()


def test_initial_sparsity_zero_works(tiny_lm):
    scheduler = build(tiny_lm, 0.0, 0.5, ["rnn.weight_hh_l1"], start=0, end=3)
    scheduler.on_epoch_begin(0)
    assert sparsity(scheduler.masks["rnn.weight_hh_l1"]) == 0.0
    run_hooks(scheduler, 2, start=1)
    assert sparsity(scheduler.masks["rnn.weight_hh_l1"]) == pytest.approx(0.5)


def test_epochs_list_policy_works(tiny_lm):
    scheduler = build(tiny_lm, 0.1, 0.6, ["rnn.weight_hh_l1"], epochs=[0, 2, 5])
    run_hooks(scheduler, 6)
    assert (~scheduler.masks["rnn.weight_hh_l1"]).sum().item() == int(0.6 * 64 * 16)


def test_each_listed_tensor_reaches_the_target_on_its_own(tiny_lm):
    scheduler = build(tiny_lm, 0.5, 0.5, ["encoder.weight", "rnn.weight_hh_l0"], epochs=[0])
    scheduler.on_epoch_begin(0)
    assert sparsity(scheduler.masks["encoder.weight"]) == pytest.approx(0.5)
    assert sparsity(scheduler.masks["rnn.weight_hh_l0"]) == pytest.approx(0.5)


def test_global_budget_prunes_the_listed_weights_together(tiny_lm):
    with torch.no_grad():
        tiny_lm.encoder.weight.mul_(100)  # the embedding is much larger: a global threshold spares it
    scheduler = build(tiny_lm, 0.5, 0.5, ["encoder.weight", "rnn.weight_hh_l0"], epochs=[0], budget="global")
    scheduler.on_epoch_begin(0)
    enc, hh = scheduler.masks["encoder.weight"], scheduler.masks["rnn.weight_hh_l0"]
    total = (enc.numel() + hh.numel())
    assert (total - enc.sum().item() - hh.sum().item()) == int(0.5 * total)
    assert sparsity(enc) < 0.05 and sparsity(hh) > 0.85


def test_minibatch_ramp_prunes_inside_an_epoch(tiny_lm):
    scheduler = build(tiny_lm, 0.0, 0.8, ["rnn.weight_hh_l0"], start=0, end=3, ramp="minibatch")
    levels = []
    run_epochs(None, scheduler, None, 10, 1,
               after_step=lambda epoch, i: levels.append(sparsity(scheduler.masks["rnn.weight_hh_l0"])))
    assert levels == sorted(levels) and levels[0] == 0 and levels[-1] > 0.3


def test_decreasing_schedule_is_rejected(tiny_lm):
    with pytest.raises(compress.ScheduleError, match="final_sparsity"):
        build(tiny_lm, 0.5, 0.2, ["rnn.weight_hh_l0"])


def test_tied_decoder_name_prunes_the_shared_tensor_once(tiny_lm):
    scheduler = build(tiny_lm, 0.5, 0.5, ["decoder.weight", "encoder.weight"], epochs=[0])
    scheduler.on_epoch_begin(0)
    assert list(scheduler.masks.state_dict()["masks"]) == ["encoder.weight"]
    assert (tiny_lm.decoder.weight == 0).float().mean().item() == pytest.approx(0.5)

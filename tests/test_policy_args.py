"""Distiller's pruning-policy ``args``, one behaviour each: keep_mask, mini_batch_pruning_frequency,
mask_on_forward_only, use_double_copies, mask_gradients, discard_masks_at_minibatch_end, skip_first_minibatch,
levels, fold_batchnorm; each scoped to its pruner's own weights."""
import pytest
import torch
from loops import run_epochs

import compress
from compress import ScheduleError

HH = "rnn.weight_hh_l0"
LR = 0.5


def level_schedule(epochs=(0,), pruner_levels=None, **args):
    policy = {"pruner": {"instance_name": "p"}, "epochs": list(epochs)}
    if args:
        policy["pruner"]["args"] = args
    return {"pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": pruner_levels or {HH: 0.5}}},
            "policies": [policy]}


def batches(n=2):
    gen = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 50, (4, 2), generator=gen), torch.randint(0, 50, (8,), generator=gen))
            for _ in range(n)]


def build(model, schedule):
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)   # plain SGD: a step is exactly w - LR * grad
    return optimizer, compress.dict_config(model, optimizer, schedule)


def record_prunings(scheduler):
    """Where the pruner computed masks: ``(epoch, 'begin')`` at an epoch's start, else ``(epoch, minibatch)``."""
    pruner, calls = scheduler.components["pruners"]["p"], []
    compute = pruner.compute_masks

    def spy(params, current, step):
        calls.append((step.epoch, "begin" if step.minibatches_per_epoch is None else step.minibatch_id))
        return compute(params, current, step)

    pruner.compute_masks = spy
    return calls


def weights_seen_by_forward(model):
    """The recurrent weight each forward pass ran with (a forward pre-hook on the LSTM)."""
    seen = []
    model.rnn.register_forward_pre_hook(lambda module, args: seen.append(module.weight_hh_l0.detach().clone()))
    return seen


def gradients_of_each_step(model, scheduler, optimizer):
    grads = []
    run_epochs(model, scheduler, optimizer, batches(), 1,
               after_step=lambda epoch, i: grads.append(model.rnn.weight_hh_l0.grad.clone()))
    return grads


# -- levels, fold_batchnorm -----------------------------------------------------------------------------------
def test_levels_override_the_level_pruners_own_levels(tiny_lm):
    _, scheduler = build(tiny_lm, level_schedule(pruner_levels={HH: 0.2}, levels={HH: 0.75}))
    scheduler.on_epoch_begin(0)
    assert (~scheduler.masks[HH]).sum().item() == 0.75 * 64 * 16


def test_levels_for_a_pruner_without_levels_is_refused_naming_the_key(tiny_lm):
    schedule = {"pruners": {"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1,
                                  "final_sparsity": 0.5, "weights": [HH]}},
                "policies": [{"pruner": {"instance_name": "p", "args": {"levels": {HH: 0.5}}}, "epochs": [0]}]}
    with pytest.raises(ScheduleError, match="only level pruners") as info:
        compress.dict_config(tiny_lm, None, schedule)
    assert info.value.key == "policies[0].pruner.args.levels"


def test_fold_batchnorm_true_is_refused_and_false_accepted(tiny_lm):
    with pytest.raises(ScheduleError, match="BatchNorm") as info:
        compress.dict_config(tiny_lm, None, level_schedule(fold_batchnorm=True))
    assert info.value.key == "policies[0].pruner.args.fold_batchnorm"
    compress.dict_config(tiny_lm, None, level_schedule(fold_batchnorm=False))


# -- when masks are computed ----------------------------------------------------------------------------------
def test_by_default_masks_are_computed_once_at_the_start_of_each_active_epoch(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule(epochs=(0, 1)))
    calls = record_prunings(scheduler)
    run_epochs(tiny_lm, scheduler, optimizer, batches(5), 3)
    assert calls == [(0, "begin"), (1, "begin")]


def test_mini_batch_pruning_frequency_recomputes_masks_every_k_minibatches_of_an_epoch(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule(epochs=(0, 1), mini_batch_pruning_frequency=2))
    calls = record_prunings(scheduler)
    run_epochs(tiny_lm, scheduler, optimizer, batches(5), 3)
    # counted from the epoch's start, where the masks are computed anyway; none in epoch 2 (not active)
    assert calls == [(0, "begin"), (0, 2), (0, 4), (1, "begin"), (1, 2), (1, 4)]


def test_skip_first_minibatch_computes_the_masks_at_minibatch_1_of_every_active_epoch(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule(epochs=(0, 1), skip_first_minibatch=True))
    calls = record_prunings(scheduler)
    masked = []
    run_epochs(tiny_lm, scheduler, optimizer, batches(3), 2,
               after_step=lambda epoch, i: masked.append(HH in scheduler.masks))
    assert calls == [(0, 1), (1, 1)]
    assert masked == [False, True, True, True, True, True]   # minibatch 0 of epoch 0 trains dense


# -- how masks are applied --------------------------------------------------------------------------------------
def test_masks_zero_the_pruned_weights_for_the_forward_pass_and_after_every_step(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule())
    seen = weights_seen_by_forward(tiny_lm)
    after = []
    run_epochs(tiny_lm, scheduler, optimizer, batches(), 2,
               after_step=lambda epoch, i: after.append(tiny_lm.rnn.weight_hh_l0.detach().clone()))
    pruned = ~scheduler.masks[HH]
    assert all(not w[pruned].any() for w in seen + after)


def test_mask_on_forward_only_masks_the_forward_pass_and_lets_the_step_write_the_pruned_weights(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule(mask_on_forward_only=True))
    weight = tiny_lm.rnn.weight_hh_l0
    seen = weights_seen_by_forward(tiny_lm)
    after = []

    def step_result(epoch, i):
        if epoch == 0:
            after.append((weight.detach().clone(), weight.grad.clone()))

    run_epochs(tiny_lm, scheduler, optimizer, batches(), 1, after_step=step_result)
    pruned = ~scheduler.masks[HH]
    assert all(not w[pruned].any() for w in seen)
    for w, grad in after:   # the step started from the masked weight (0): it leaves -LR * grad there
        assert torch.allclose(w[pruned], -LR * grad[pruned])
        assert w[pruned].any()


def test_use_double_copies_applies_the_step_to_the_unmasked_weights(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule(mask_on_forward_only=True, use_double_copies=True))
    weight = tiny_lm.rnn.weight_hh_l0
    dense = weight.detach().clone()
    seen = weights_seen_by_forward(tiny_lm)
    after = []
    run_epochs(tiny_lm, scheduler, optimizer, batches(1), 1,
               after_step=lambda epoch, i: after.append((weight.detach().clone(), weight.grad.clone())))
    pruned = ~scheduler.masks[HH]
    assert not seen[0][pruned].any()
    w, grad = after[0]
    assert torch.allclose(w, dense - LR * grad)   # pruned weights included: they keep learning


def test_keep_mask_makes_forward_only_masks_permanent_after_the_last_epoch(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule(mask_on_forward_only=True, keep_mask=True))
    run_epochs(tiny_lm, scheduler, optimizer, batches(), 2)   # the policy runs in epoch 0 only
    pruned = ~scheduler.masks[HH]
    assert not tiny_lm.rnn.weight_hh_l0[pruned].any()
    assert HH not in scheduler.masks.forward_only


def test_without_keep_mask_forward_only_masks_leave_the_weights_dense_after_the_policy(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule(mask_on_forward_only=True))
    run_epochs(tiny_lm, scheduler, optimizer, batches(), 2)
    pruned = ~scheduler.masks[HH]
    assert tiny_lm.rnn.weight_hh_l0[pruned].any()


def test_mask_gradients_zeroes_the_gradients_of_pruned_weights(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule(mask_gradients=True))
    grads = gradients_of_each_step(tiny_lm, scheduler, optimizer)
    mask = scheduler.masks[HH]
    assert all(not g[~mask].any() and g[mask].any() for g in grads)


def test_without_mask_gradients_pruned_weights_get_their_gradients(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule())
    grads = gradients_of_each_step(tiny_lm, scheduler, optimizer)
    mask = scheduler.masks[HH]
    assert all(g[~mask].any() for g in grads)   # masked after the step instead


def test_discard_masks_at_minibatch_end_makes_each_mask_one_shot(tiny_lm):
    optimizer, scheduler = build(tiny_lm, level_schedule(discard_masks_at_minibatch_end=True))
    weight = tiny_lm.rnn.weight_hh_l0
    zeros, masked = [], []

    def observe(epoch, i):
        zeros.append(int((weight == 0).sum()))
        masked.append(HH in scheduler.masks)

    run_epochs(tiny_lm, scheduler, optimizer, batches(3), 1, after_step=observe)
    assert masked == [False, False, False]
    assert zeros[0] == 0.5 * 64 * 16          # zeroed once, after the first step...
    assert zeros[1] < zeros[0] and zeros[2] < zeros[0]   # ...then the pruned weights train again


# -- scope ------------------------------------------------------------------------------------------------------
def test_args_apply_to_the_pruners_own_weights_only(tiny_lm):
    schedule = level_schedule(mask_on_forward_only=True)
    schedule["pruners"]["q"] = {"class": "SparsityLevelParameterPruner", "levels": {"rnn.weight_hh_l1": 0.5}}
    schedule["policies"].append({"pruner": {"instance_name": "q"}, "epochs": [0]})
    optimizer, scheduler = build(tiny_lm, schedule)
    run_epochs(tiny_lm, scheduler, optimizer, batches(), 1)
    assert tiny_lm.rnn.weight_hh_l0[~scheduler.masks[HH]].any()                        # forward-only
    assert not tiny_lm.rnn.weight_hh_l1[~scheduler.masks["rnn.weight_hh_l1"]].any()    # masked after steps

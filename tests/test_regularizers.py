"""L1 and group-lasso regularizers (loss values and threshold masks worked out by hand on small tensors), and the
policy that adds their loss and thresholds the weights."""
import pytest
import torch
from loops import run_epochs
from torch import nn

import compress
from compress import ScheduleError
from compress.pruning.regularizers import GroupLassoRegularizer, L1Regularizer
from compress.sparsity.names import ParameterIndex


class Weights(nn.Module):
    """A module holding the given tensors as parameters."""

    def __init__(self, **tensors):
        super().__init__()
        for name, values in tensors.items():
            self.register_parameter(name, nn.Parameter(torch.tensor(values)))


def bound(cls, model, reg_regims, threshold_criteria=None):
    regularizer = cls("r", model, reg_regims, threshold_criteria)
    regularizer.bind(ParameterIndex(model))
    return regularizer, dict(model.named_parameters())


# rows have L2 norms 5 and 1; columns 3, 4 and 1
W = [[3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]
# rows: max |w| 0.9 and 0.4, mean |w| 0.3 and 0.4; columns: max 0.9, 0.4, 0.4, mean 0.65, 0.2, 0.2
T = [[0.9, 0.0, 0.0], [0.4, 0.4, 0.4]]


# -- L1 ---------------------------------------------------------------------------------------------------------
def test_l1_loss_is_strength_times_the_sum_of_magnitudes_per_weight():
    model = Weights(a=[[1.0, -2.0], [0.5, 0.0]], b=[-4.0, 4.0])
    regularizer, params = bound(L1Regularizer, model, {"a": 0.1, "b": 0.01})
    assert regularizer.loss(params).item() == pytest.approx(0.1 * 3.5 + 0.01 * 8.0)


def test_l1_loss_has_the_gradient_strength_times_the_sign():
    model = Weights(a=[[1.0, -2.0], [0.5, 0.0]])
    regularizer, params = bound(L1Regularizer, model, {"a": 0.1})
    regularizer.loss(params).backward()
    assert torch.allclose(model.a.grad, torch.tensor([[0.1, -0.1], [0.1, 0.0]]))


def test_l1_threshold_keeps_magnitudes_above_the_strength_only():
    model = Weights(a=[[0.3, -0.05], [0.1, -0.2]])
    regularizer, params = bound(L1Regularizer, model, {"a": 0.1}, "Max")
    assert regularizer.threshold_masks(params)["a"].tolist() == [[True, False], [False, True]]  # 0.1 <= 0.1 goes


# -- group lasso: loss ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("group_type,norms", [("Rows", 5 + 1), ("Cols", 3 + 4 + 1), ("Rows+Cols", 6 + 8)])
def test_group_lasso_loss_is_strength_times_the_sum_of_group_norms(group_type, norms):
    model = Weights(w=W)
    regularizer, params = bound(GroupLassoRegularizer, model, {"w": [0.5, group_type]})
    assert regularizer.loss(params).item() == pytest.approx(0.5 * norms)


def test_group_lasso_loss_sums_over_weights_each_with_its_strength_and_groups():
    model = Weights(v=W, w=W)
    regularizer, params = bound(GroupLassoRegularizer, model, {"v": [0.5, "Rows"], "w": [0.1, "Cols"]})
    assert regularizer.loss(params).item() == pytest.approx(0.5 * 6 + 0.1 * 8)


def test_group_lasso_rows_gradient_is_strength_times_each_row_over_its_norm():
    model = Weights(w=W)
    regularizer, params = bound(GroupLassoRegularizer, model, {"w": [0.5, "Rows"]})
    regularizer.loss(params).backward()
    assert torch.allclose(model.w.grad, torch.tensor([[0.5 * 3 / 5, 0.5 * 4 / 5, 0.0], [0.0, 0.0, 0.5]]))


# -- group lasso: thresholds ------------------------------------------------------------------------------------
@pytest.mark.parametrize("group_type,criteria,strength,kept", [
    ("Rows", "Max", 0.35, [[1, 1, 1], [1, 1, 1]]),        # row maxima 0.9, 0.4 > 0.35
    ("Rows", "Mean_Abs", 0.35, [[0, 0, 0], [1, 1, 1]]),   # row 0's mean 0.3 <= 0.35
    ("Cols", "Max", 0.35, [[1, 1, 1], [1, 1, 1]]),        # column maxima 0.9, 0.4, 0.4
    ("Cols", "Mean_Abs", 0.35, [[1, 0, 0], [1, 0, 0]]),   # column means 0.65, 0.2, 0.2
    ("Rows+Cols", "Mean_Abs", 0.35, [[0, 0, 0], [1, 0, 0]]),
    ("Rows+Cols", "Max", 0.5, [[1, 0, 0], [0, 0, 0]]),   # row 1 (max 0.4) and columns 1, 2 (max 0.4) go
    ("Rows", "Max", 0.4, [[1, 1, 1], [0, 0, 0]]),         # a group exactly at the strength goes
])
def test_group_lasso_threshold_keeps_groups_whose_criterion_exceeds_the_strength(group_type, criteria, strength, kept):
    model = Weights(w=T)
    regularizer, params = bound(GroupLassoRegularizer, model, {"w": [strength, group_type]}, criteria)
    assert regularizer.threshold_masks(params)["w"].int().tolist() == kept


@pytest.mark.parametrize("spec,key", [
    ({"threshold_criteria": "L2"}, "regularizers.r.threshold_criteria"),
    ({"reg_regims": {"rnn.weight_hh_l0": [0.1, "Channels"]}}, "regularizers.r.reg_regims.rnn.weight_hh_l0"),
    ({"reg_regims": {"rnn.weight_hh_l0": 0.1}}, "regularizers.r.reg_regims.rnn.weight_hh_l0"),
    ({"reg_regims": {"rnn.weight_hh_l0": [-0.1, "Rows"]}}, "regularizers.r.reg_regims.rnn.weight_hh_l0[0]"),
    ({"reg_regims": {"rnn.weight_hh_l9": [0.1, "Rows"]}}, "regularizers.r.reg_regims.rnn.weight_hh_l9"),
])
def test_bad_group_lasso_arguments_raise_a_schedule_error_naming_the_key(tiny_lm, spec, key):
    args = {"class": "GroupLassoRegularizer", "reg_regims": {"rnn.weight_hh_l0": [0.1, "Rows"]}}
    args.update(spec)
    with pytest.raises(ScheduleError) as info:
        compress.dict_config(tiny_lm, None, {"regularizers": {"r": args},
                                             "policies": [{"regularizer": {"instance_name": "r"}, "epochs": [0]}]})
    assert info.value.key == key, str(info.value)


# -- the policy -------------------------------------------------------------------------------------------------
HH = "rnn.weight_hh_l0"


def l1_schedule(strength, epochs, threshold_criteria=None, **policy_args):
    spec = {"class": "L1Regularizer", "reg_regims": {HH: strength}}
    if threshold_criteria:
        spec["threshold_criteria"] = threshold_criteria
    policy = {"regularizer": {"instance_name": "l1"}, "epochs": epochs}
    if policy_args:
        policy["regularizer"]["args"] = policy_args
    return {"regularizers": {"l1": spec}, "policies": [policy]}


def lm_batches(n):
    gen = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 50, (4, 2), generator=gen), torch.randint(0, 50, (8,), generator=gen))
            for _ in range(n)]


def test_the_loss_is_added_only_in_the_policys_epochs(tiny_lm):
    optimizer = torch.optim.SGD(tiny_lm.parameters(), lr=0.0)   # the weights, and so the term, stay as they are
    scheduler = compress.dict_config(tiny_lm, optimizer, l1_schedule(0.01, [1]))
    term = 0.01 * tiny_lm.rnn.weight_hh_l0.detach().abs().sum().item()
    steps = run_epochs(tiny_lm, scheduler, optimizer, lm_batches(2), 3)
    for step in steps:
        added = step.scheduled_loss - step.loss
        assert added == pytest.approx(term if step.epoch == 1 else 0.0, abs=1e-6), step


def test_the_loss_component_is_named_for_the_regularizer_and_the_incoming_loss_is_not_changed(tiny_lm):
    scheduler = compress.dict_config(tiny_lm, None, l1_schedule(0.01, [0]))
    loss = torch.tensor(2.0)
    out = scheduler.before_backward_pass(0, 0, 1, loss, return_loss_components=True)
    term = 0.01 * tiny_lm.rnn.weight_hh_l0.detach().abs().sum().item()
    assert [c.name for c in out.loss_components] == ["L1Regularizer_loss"]
    assert out.loss_components[0].value.item() == pytest.approx(term)
    assert out.overall_loss.item() == pytest.approx(2.0 + term) and loss.item() == 2.0


def test_without_keep_mask_thresholding_zeroes_weights_after_each_step_but_keeps_no_mask(tiny_lm):
    optimizer = torch.optim.SGD(tiny_lm.parameters(), lr=0.5)
    scheduler = compress.dict_config(tiny_lm, optimizer, l1_schedule(0.05, [0], "Max"))
    weight = tiny_lm.rnn.weight_hh_l0

    def thresholded(epoch, i):
        if epoch == 0:
            assert ((weight == 0) | (weight.abs() > 0.05)).all()
        assert HH not in scheduler.masks

    zero_after_policy = []
    run_epochs(tiny_lm, scheduler, optimizer, lm_batches(2), 2, after_step=thresholded,
               after_epoch=lambda epoch: zero_after_policy.append(int((weight == 0).sum())))
    assert zero_after_policy[0] > 0 and zero_after_policy[1] < zero_after_policy[0]   # the zeros train again


def test_group_lasso_thresholding_zeroes_whole_rows_after_each_step(tiny_lm):
    optimizer = torch.optim.SGD(tiny_lm.parameters(), lr=0.01)
    scheduler = compress.dict_config(tiny_lm, optimizer, {
        "regularizers": {"gl": {"class": "GroupLassoRegularizer", "reg_regims": {HH: [0.2, "Rows"]},
                                "threshold_criteria": "Max"}},
        "policies": [{"regularizer": {"instance_name": "gl"}, "epochs": [0]}]})
    weight = tiny_lm.rnn.weight_hh_l0
    zero_rows = []

    def rows_zeroed_or_above_the_strength(epoch, i):
        row_max = weight.detach().abs().amax(dim=1)
        assert ((row_max == 0) | (row_max > 0.2)).all()
        zero_rows.append(int((row_max == 0).sum()))

    run_epochs(tiny_lm, scheduler, optimizer, lm_batches(2), 1, after_step=rows_zeroed_or_above_the_strength)
    assert 0 < zero_rows[-1] < weight.shape[0]


def test_keep_mask_keeps_the_threshold_masks_of_the_last_minibatch_of_the_last_epoch(tiny_lm):
    optimizer = torch.optim.SGD(tiny_lm.parameters(), lr=0.5, momentum=0.9)
    scheduler = compress.dict_config(tiny_lm, optimizer, l1_schedule(0.05, [0, 1], "Max", keep_mask=True))
    weight = tiny_lm.rnn.weight_hh_l0
    masked_at = []

    def observe(epoch, i):
        if HH in scheduler.masks:
            masked_at.append((epoch, i))
            mask = scheduler.masks[HH]
            assert not weight[~mask].any()
            assert not optimizer.state[weight]["momentum_buffer"][~mask].any()

    run_epochs(tiny_lm, scheduler, optimizer, lm_batches(3), 3, after_step=observe)
    # kept from the last minibatch (2) of the last active epoch (1) on, and re-applied after every later step
    assert masked_at == [(1, 2), (2, 0), (2, 1), (2, 2)]
    assert 0 < (~scheduler.masks[HH]).sum() < weight.numel()

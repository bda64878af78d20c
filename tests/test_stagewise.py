"""Stage-wise grouped pruning (SiPO): groups, group masks, the fitness, the searches and the iterative policy."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from loops import run_epochs
from torch import nn

import compress
from compress.errors import ArgumentError, ScheduleError
from compress.pruning.criteria.groups import count_pruned, group_masks, group_parameters
from compress.pruning.rate_search.ncs import (
    NegativelyCorrelatedSearch,
    bhattacharyya_distance,
)
from compress.pruning.rate_search.search import (
    Constraint,
    GreedyRateSearch,
    NCSRateSearch,
    fitness,
    prune_to_constraint,
    search_group_rates,
)
from compress.scheduling.policies import IterativePruningPolicy
from compress.sparsity.names import ParameterIndex
from compress_models import RNNModel


def untied_lm():
    torch.manual_seed(0)
    return RNNModel("LSTM", 30, 8, 8, 2, dropout=0.0)


def names_by_group(groups):
    return {g.name: list(g.params) for g in groups}


# -- groups ----------------------------------------------------------------------------------------------------
def test_stage_wise_groups_embedding_all_ih_all_hh_and_decoder():
    groups = group_parameters(ParameterIndex(untied_lm()), "stage_wise")
    assert names_by_group(groups) == {
        "encoder": ["encoder.weight"],
        "ih": ["rnn.weight_ih_l0", "rnn.bias_ih_l0", "rnn.weight_ih_l1", "rnn.bias_ih_l1"],
        "hh": ["rnn.weight_hh_l0", "rnn.bias_hh_l0", "rnn.weight_hh_l1", "rnn.bias_hh_l1"],
        "decoder": ["decoder.weight", "decoder.bias"],
    }
    assert [g.name for g in groups] == ["encoder", "ih", "hh", "decoder"]


def test_tied_embedding_and_decoder_are_one_tensor_in_one_group(tiny_lm):
    groups = group_parameters(ParameterIndex(tiny_lm), "stage_wise")
    all_names = [n for g in groups for n in g.params]
    assert names_by_group(groups)["encoder"] == ["encoder.weight"]
    assert names_by_group(groups)["decoder"] == ["decoder.bias"]
    assert len(all_names) == len(set(all_names)) == len(list(tiny_lm.parameters()))


def test_layer_wise_gives_each_weight_tensor_its_own_group_with_its_bias():
    groups = group_parameters(ParameterIndex(untied_lm()), "layer_wise")
    assert names_by_group(groups) == {
        "encoder.weight": ["encoder.weight"],
        "rnn.weight_ih_l0": ["rnn.weight_ih_l0", "rnn.bias_ih_l0"],
        "rnn.weight_hh_l0": ["rnn.weight_hh_l0", "rnn.bias_hh_l0"],
        "rnn.weight_ih_l1": ["rnn.weight_ih_l1", "rnn.bias_ih_l1"],
        "rnn.weight_hh_l1": ["rnn.weight_hh_l1", "rnn.bias_hh_l1"],
        "decoder.weight": ["decoder.weight", "decoder.bias"],
    }


def test_all_in_one_is_one_group_and_weights_restrict_it():
    index = ParameterIndex(untied_lm())
    assert [len(g.params) for g in group_parameters(index, "all_in_one")] == [11]
    only_weights = group_parameters(index, "all_in_one", weights=["*weight*"])
    assert all("bias" not in n for n in only_weights[0].params) and len(only_weights[0].params) == 6


def test_custom_groups_resolve_globs_and_regexes():
    groups = group_parameters(ParameterIndex(untied_lm()), "custom",
                              groups={"rnn": ["re:rnn\\.weight_.._l\\d"], "ends": ["encoder.weight", "decoder.*"]})
    assert names_by_group(groups) == {
        "ends": ["encoder.weight", "decoder.weight", "decoder.bias"],
        "rnn": ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1"],
    }


def test_a_tensor_in_two_custom_groups_is_an_error_naming_the_pattern():
    with pytest.raises(ArgumentError, match=r"groups\.b\[0\].*rnn.weight_ih_l0.*already in group 'a'"):
        group_parameters(ParameterIndex(untied_lm()), "custom", groups={"a": ["rnn.*"], "b": ["rnn.weight_ih_l0"]})


def test_a_pattern_that_matches_nothing_is_a_schedule_error_with_the_key_path():
    sched = {"pruners": {"sipo": {"class": "StageWisePruner", "max_degradation": 0.1, "grouping": "custom",
                                  "groups": {"ih": ["rnn.weight_xx_*"]}}},
             "policies": [{"pruner": {"instance_name": "sipo"}, "epochs": [0]}]}
    with pytest.raises(ScheduleError, match=r"pruners\.sipo\.groups.*rnn.weight_xx_"):
        compress.dict_config(untied_lm(), None, sched)


def test_an_ncs_option_with_greedy_search_is_a_schedule_error():
    sched = {"pruners": {"sipo": {"class": "StageWisePruner", "max_degradation": 0.1, "population": 8}},
             "policies": [{"pruner": {"instance_name": "sipo"}, "epochs": [0]}]}
    with pytest.raises(ScheduleError, match=r"pruners\.sipo\.population: applies to search: ncs"):
        compress.dict_config(untied_lm(), None, sched)


# -- rates -> thresholds -> exact per-group sparsity ----------------------------------------------------------------
def test_one_threshold_per_group_prunes_the_smallest_magnitudes_across_its_tensors():
    params = {"a": torch.tensor([1.0, -2.0, 3.0, 4.0]), "b": torch.tensor([5.0, 6.0, -0.5, 7.0]),
              "c": torch.tensor([0.1, 0.2])}
    groups = [compress.pruning.criteria.ParameterGroup("ab", ("a", "b")),
              compress.pruning.criteria.ParameterGroup("c", ("c",))]
    masks = group_masks(groups, params, {"ab": 0.25, "c": 0.0})
    # int(0.25 * 8) = 2 smallest of the group: -0.5 (in b) and 1.0 (in a); rate 0 prunes nothing
    assert masks["a"].tolist() == [False, True, True, True]
    assert masks["b"].tolist() == [True, True, False, True]
    assert masks["c"].tolist() == [True, True]


@pytest.mark.parametrize("rate", [0.1, 0.37, 0.5, 0.9])
def test_each_group_is_pruned_to_exactly_int_rate_times_size(rate):
    model = untied_lm()
    nn.init.uniform_(model.decoder.bias, -0.1, 0.1)  # the zero-initialised bias would tie at the threshold
    groups = group_parameters(ParameterIndex(model), "stage_wise")
    params = dict(model.named_parameters())
    rates = {g.name: rate for g in groups}
    rates["hh"] = rate / 2
    masks = group_masks(groups, params, rates)
    for g in groups:
        pruned, total = count_pruned({n: masks[n] for n in g.params})
        assert pruned == int(rates[g.name] * total)


def test_previously_pruned_weights_stay_pruned():
    params = {"w": torch.tensor([0.0, 0.0, 3.0, 1.0])}
    groups = [compress.pruning.criteria.ParameterGroup("g", ("w",))]
    current = {"w": torch.tensor([True, False, True, True])}
    masks = group_masks(groups, params, {"g": 0.0}, current)
    assert masks["w"].tolist() == [True, False, True, True]


# -- the fitness ------------------------------------------------------------------------------------------------
def test_fitness_is_minus_sparsity_when_feasible_and_degradation_over_c_otherwise():
    assert fitness(0.8, 0.005, 0.01) == -0.8
    assert fitness(0.8, 0.01, 0.01) == -0.8  # the bound itself is feasible
    assert fitness(0.95, 0.02, 0.01) == pytest.approx(2.0)
    assert fitness(0.95, 0.0101, 0.01) > 1 > 0 > fitness(0.01, 0.0, 0.01)


def test_degradation_follows_the_metric_direction():
    ppl = Constraint(0.05, mode="min", relative=True)
    assert ppl.degradation(126.0, 120.0) == pytest.approx(0.05)
    assert ppl.satisfied(126.0, 120.0) and not ppl.satisfied(126.1, 120.0)
    acc = Constraint(0.01, mode="max")
    assert acc.degradation(0.225, 0.235) == pytest.approx(0.01)
    assert acc.degradation(0.24, 0.235) < 0
    assert ppl.degradation(float("nan"), 120.0) == math.inf


def test_a_non_positive_constraint_is_an_error():
    with pytest.raises(ArgumentError, match="max_degradation"):
        Constraint(0.0)
    with pytest.raises(ArgumentError, match="mode"):
        Constraint(0.1, mode="lower")


# -- the searches -----------------------------------------------------------------------------------------------
class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Linear(12, 12, bias=False)
        self.b = nn.Linear(12, 12, bias=False)
        with torch.no_grad():
            self.a.weight.copy_(torch.randn(12, 12, generator=g))
            self.b.weight.copy_(torch.randn(12, 12, generator=g) * 0.1)


def distortion(reference):
    """Squared distance of the weights from the reference: grows with every weight pruned."""
    def evaluate(model):
        return sum(float(((p.detach() - reference[n]) ** 2).sum()) for n, p in model.named_parameters())
    return evaluate


def erratic(model):
    """A metric that jumps around with the pruned count: no monotonicity for the search to rely on."""
    zeros = sum(int((p == 0).sum()) for p in model.parameters())
    return float((zeros * 7919) % 101) / 10.0


@pytest.mark.parametrize("search", [GreedyRateSearch(), NCSRateSearch(population=4, generations=15, sigma=0.2)])
@pytest.mark.parametrize("metric", ["distortion", "erratic"])
def test_the_search_never_returns_a_solution_violating_the_constraint(search, metric):
    model = TwoLayer()
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    evaluate = distortion(reference) if metric == "distortion" else erratic
    groups = group_parameters(ParameterIndex(model), "layer_wise")
    constraint = Constraint(3.0, mode="min")
    result = search_group_rates(model, groups, evaluate, constraint, search)
    assert result.best is not None and result.best.feasible
    assert result.best.degradation <= 3.0
    assert evaluate(model) == pytest.approx(result.best.value)  # the model is left at the returned solution
    assert constraint.satisfied(evaluate(model), result.baseline)
    assert all(c.sparsity <= result.best.sparsity for c in result.history if c.feasible)


def test_greedy_search_uses_the_slack_on_the_cheaper_group():
    model = TwoLayer()
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    groups = group_parameters(ParameterIndex(model), "layer_wise")
    result = search_group_rates(model, groups, distortion(reference), Constraint(3.0), "greedy")
    # b's weights are 10x smaller: pruning them costs 1/100 as much, so b is pruned much further
    assert result.best.group_sparsity["b.weight"] > 0.9 > result.best.group_sparsity["a.weight"]


def test_when_nothing_is_feasible_the_model_is_left_as_it_was():
    model = TwoLayer()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    groups = group_parameters(ParameterIndex(model), "all_in_one")
    evaluate = distortion(before)
    # the baseline claims a better value than the model has: not even the unpruned model meets it
    result = search_group_rates(model, groups, lambda m: evaluate(m) + 10.0, Constraint(1.0), "greedy",
                                baseline=0.0)
    assert result.best is None and result.masks is None and not result.improved
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_ctrl_c_keeps_the_best_result_found_so_far():
    model = TwoLayer()
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    evaluate = distortion(reference)
    calls = []

    def interrupted_at_the_sixth_call(m):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return evaluate(m)

    groups = group_parameters(ParameterIndex(model), "layer_wise")
    result = search_group_rates(model, groups, interrupted_at_the_sixth_call, Constraint(3.0), "greedy")
    assert result.interrupted and result.evaluations == 5
    assert result.best is not None and result.best.feasible and result.improved
    assert evaluate(model) == pytest.approx(result.best.value)


def test_the_evaluation_budget_and_the_callback_stop_the_search():
    model = TwoLayer()
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    groups = group_parameters(ParameterIndex(model), "layer_wise")
    result = search_group_rates(model, groups, distortion(reference), Constraint(3.0), "greedy", max_evaluations=4)
    assert result.evaluations == 4
    seen = []
    model = TwoLayer()
    result = search_group_rates(model, groups, distortion(reference), Constraint(3.0), "ncs",
                                callback=lambda progress: seen.append(progress.evaluations) or len(seen) == 7)
    assert result.evaluations == 7 and seen == list(range(1, 8))


def test_masks_go_through_the_given_mask_store_and_are_kept_after_training_steps():
    model = TwoLayer()
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    scheduler = compress.CompressionScheduler(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = prune_to_constraint(model, distortion(reference), 3.0, grouping="layer_wise", masks=scheduler.masks,
                                 optimizer=optimizer)
    for _ in range(3):
        optimizer.zero_grad()
        model.b(model.a(torch.randn(4, 12))).pow(2).sum().backward()
        optimizer.step()
        scheduler.on_minibatch_end(0, 0, 1, optimizer)
    for name, mask in result.masks.items():
        assert torch.equal(scheduler.masks[name], mask)
        assert not dict(model.named_parameters())[name][~mask].any()


# -- NCS --------------------------------------------------------------------------------------------------------
def test_bhattacharyya_distance_matches_the_closed_form():
    one = np.ones(1)
    assert bhattacharyya_distance(np.zeros(1), one, np.zeros(1), one) == 0.0
    # equal unit variances, means 2 apart: (1/8) * 2^2 / 1 = 0.5
    assert bhattacharyya_distance(np.zeros(1), one, 2 * one, one) == pytest.approx(0.5)
    # equal means, variances 1 and 4: C = 2.5, 1/2 (ln 2.5 - (ln 1 + ln 4) / 2) = 1/2 ln(1.25)
    assert bhattacharyya_distance(np.zeros(1), one, np.zeros(1), 2 * one) == pytest.approx(0.5 * math.log(1.25))


def test_ncs_minimises_and_resumes_exactly_from_its_state():
    def run(ncs, generations):
        for _ in range(generations):
            kids = ncs.ask()
            ncs.tell([-(k.sum()) if k.sum() < 1.2 else 5.0 for k in kids])  # feasible: sum < 1.2

    a = NegativelyCorrelatedSearch([0.1, 0.1], 0.05, 0.0, 1.0, population=4, generations=40, initial_fitness=0.2)
    run(a, 20)
    b = NegativelyCorrelatedSearch([0.1, 0.1], 0.05, 0.0, 1.0, population=4, generations=40, initial_fitness=0.2)
    b.load_state_dict(a.state_dict())
    run(a, 20)
    run(b, 20)
    assert np.array_equal(a.best_x, b.best_x) and a.best_fitness == b.best_fitness
    assert a.best_x.sum() < 1.2 and a.best_fitness < -0.8  # got near the boundary from 0.2


# -- the iterative policy ---------------------------------------------------------------------------------------
class Student(nn.Module):
    """A factorised linear map, wider than it needs to be: after pruning, training moves the work to the weights
    that are left, so pruning and retraining can go on for a while."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 32, bias=False)
        self.b = nn.Linear(32, 8, bias=False)

    def forward(self, x):
        return self.b(self.a(x))


def teacher_problem():
    """A trained student, its training inputs, the teacher, and the validation loss (noise floor about 0.09)."""
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(8, 8, generator=g)
    x_train, x_val = torch.randn(256, 8, generator=g), torch.randn(256, 8, generator=g)
    y_val = x_val @ teacher.T + 0.3 * torch.randn(256, 8, generator=g)
    torch.manual_seed(0)
    student = Student()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
    for _ in range(300):
        loss = ((student(x_train) - x_train @ teacher.T) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def val_loss(model):
        with torch.no_grad():
            return float(((model(x_val) - y_val) ** 2).mean())

    return student, x_train, teacher, val_loss


def iterative_schedule(**overrides):
    spec = {"class": "StageWisePruner", "max_degradation": 0.3, "relative": True, "grouping": "all_in_one",
            "retrain_epochs": 3, "recovery_tolerance": 0.05}
    spec.update(overrides)
    return {"pruners": {"sipo": spec}, "policies": [{"pruner": {"instance_name": "sipo"}, "starting_epoch": 0,
                                                     "ending_epoch": 40}]}


def train(model, scheduler, optimizer, x, teacher, epochs, start=0, steps=20):
    policy = scheduler.policies[0][2]
    # stops once the best recovered model is in place, instead of fine-tuning it
    run_epochs(model, scheduler, optimizer, [x] * steps, epochs, start,
               loss=lambda model, x, i: ((model(x) - x @ teacher.T) ** 2).mean(), until=lambda: policy.finished)
    return policy


def test_the_schedule_builds_the_pruners_own_policy_and_needs_evaluate_when_it_loads():
    model = Student()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ScheduleError, match=r"pruners\.sipo: .*evaluate=fn"):
        compress.dict_config(model, None, iterative_schedule())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    scheduler = compress.dict_config(model, None, iterative_schedule(), evaluate=lambda m: 1.0)
    assert isinstance(scheduler.policies[0][2], IterativePruningPolicy)
    assert scheduler.components["pruners"]["sipo"].evaluate(model) == 1.0


def test_iterative_pruning_recovers_prunes_further_than_one_shot_and_keeps_the_best():
    model, x, teacher, val_loss = teacher_problem()
    one_shot = prune_to_constraint(teacher_problem()[0], val_loss, 0.3, relative=True, grouping="all_in_one")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = compress.dict_config(model, optimizer, iterative_schedule(), evaluate=val_loss)
    policy = train(model, scheduler, optimizer, x, teacher, 40)
    assert policy.finished and policy.stop_reason == "sparsity stopped improving" and policy.iteration >= 5
    assert policy.best["sparsity"] > 1.5 * one_shot.sparsity
    assert val_loss(model) == pytest.approx(policy.best["value"])
    assert val_loss(model) <= 1.05 * policy.baseline  # recovered: within the 5% tolerance
    pruned = sum(int((~scheduler.masks[n]).sum()) for n in ("a.weight", "b.weight"))
    assert pruned / 512 == pytest.approx(policy.best["sparsity"])
    assert not model.a.weight[~scheduler.masks["a.weight"]].any()


def test_an_iteration_that_does_not_recover_stops_and_restores_the_last_recovered_model():
    model, x, teacher, val_loss = teacher_problem()
    before = model.a.weight.detach().clone()
    scheduler = compress.dict_config(model, None, iterative_schedule(recovery_tolerance=0.0), evaluate=val_loss)
    for epoch in range(4):  # no training at all: nothing can recover
        scheduler.on_epoch_begin(epoch)
        scheduler.on_epoch_end(epoch)
    policy = scheduler.policies[0][2]
    assert policy.finished and policy.stop_reason == "not recovered" and policy.iteration == 0
    assert torch.equal(model.a.weight, before) and "a.weight" not in scheduler.masks


def scripted_epochs(scheduler, val_loss):
    """``epoch(n, value_at_end)``: epoch ``n`` without training, searching on ``val_loss`` and ending with the
    validation value ``value_at_end(baseline)``, so a test scripts when an iteration recovers."""
    pruner, policy = scheduler.components["pruners"]["sipo"], scheduler.policies[0][2]

    def epoch(n, value_at_end):
        pruner.evaluate = val_loss
        scheduler.on_epoch_begin(n)
        pruner.evaluate = lambda m: value_at_end(policy.baseline)
        scheduler.on_epoch_end(n)

    return epoch


def test_a_retry_halves_the_headroom_above_the_recovered_model_and_a_recovery_restores_it():
    model, x, teacher, val_loss = teacher_problem()
    scheduler = compress.dict_config(model, None, iterative_schedule(retrain_epochs=1, recovery_tolerance=0.2,
                                                                     retries=2), evaluate=val_loss)
    pruner, policy = scheduler.components["pruners"]["sipo"], scheduler.policies[0][2]
    allowed = []
    search = pruner.search
    pruner.search = lambda *a, **kw: allowed.append(kw["max_degradation"]) or search(*a, **kw)
    epoch = scripted_epochs(scheduler, val_loss)

    epoch(0, lambda base: math.inf)               # not recovered: retry from the unpruned model (degradation 0)
    epoch(1, lambda base: 1.1 * base)             # recovered at +10%
    assert policy.iteration == 1 and policy.retries_left == 2 and policy.scale == 1.0
    epoch(2, lambda base: math.inf)               # not recovered: half the headroom above +10%
    epoch(3, lambda base: math.inf)
    epoch(4, lambda base: math.inf)
    assert allowed == pytest.approx([0.3, 0.15, 0.3, 0.2, 0.15])
    # the last retry's search (up to +15%) finds nothing sparser than the recovered model: the run ends there,
    # with the recovered model back in place
    assert policy.finished and policy.stop_reason == "sparsity stopped improving"
    assert policy.best["value"] == pytest.approx(1.1 * policy.baseline)


def test_a_loop_that_ends_mid_retraining_keeps_the_iteration_if_it_has_recovered():
    model, x, teacher, val_loss = teacher_problem()
    scheduler = compress.dict_config(model, None, iterative_schedule(retrain_epochs=3, stop_at_recovery=False),
                                     evaluate=val_loss)
    policy = scheduler.policies[0][2]
    epoch = scripted_epochs(scheduler, val_loss)

    epoch(0, lambda base: 1.04 * base)      # recovered in its first epoch; full retraining goes on
    searched = policy.history[-1]["sparsity"]
    assert policy.iteration == 0 and policy.best["sparsity"] == 0.0 and searched > 0
    policy.restore_best()                   # the loop's epoch limit: the recovered iteration is the best
    assert policy.iteration == 1 and policy.best["sparsity"] == pytest.approx(searched)
    assert policy.best["value"] == pytest.approx(1.04 * policy.baseline)
    kept = sum(int(scheduler.masks[n].sum()) for n in ("a.weight", "b.weight"))
    assert 1 - kept / 512 == pytest.approx(searched)


def test_one_shot_policy_searches_once_and_keeps_the_result():
    model, x, teacher, val_loss = teacher_problem()
    scheduler = compress.dict_config(model, None, iterative_schedule(retrain_epochs=0), evaluate=val_loss)
    scheduler.on_epoch_begin(0)
    policy = scheduler.policies[0][2]
    assert policy.finished and policy.stop_reason == "one-shot"
    kept = sum(int(scheduler.masks[n].sum()) for n in ("a.weight", "b.weight"))
    assert 0 < policy.best["sparsity"] == pytest.approx(1 - kept / 512)
    assert val_loss(model) <= 1.3 * policy.baseline


def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one():
    model, x, teacher, val_loss = teacher_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = compress.dict_config(model, optimizer, iterative_schedule(), evaluate=val_loss)
    train(model, scheduler, optimizer, x, teacher, 5)
    saved_model, saved_sched = {k: v.clone() for k, v in model.state_dict().items()}, scheduler.state_dict()
    full = train(model, scheduler, optimizer, x, teacher, 35, start=5)

    resumed_model = Student()
    resumed_model.load_state_dict(saved_model)
    resumed_opt = torch.optim.SGD(resumed_model.parameters(), lr=0.05)
    resumed = compress.dict_config(resumed_model, resumed_opt, iterative_schedule(), evaluate=val_loss)
    resumed.load_state_dict(saved_sched)
    policy = train(resumed_model, resumed, resumed_opt, x, teacher, 35, start=5)
    assert policy.iteration == full.iteration >= 3 and policy.stop_reason == full.stop_reason
    assert torch.equal(resumed_model.a.weight, model.a.weight) and torch.equal(resumed_model.b.weight, model.b.weight)
    assert policy.best["sparsity"] == full.best["sparsity"]

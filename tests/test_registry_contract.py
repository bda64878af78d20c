"""Every class a schedule can name is built from YAML and trained for two epochs on a tiny LSTM LM, and then keeps
what its family promises: pruned weights exactly zero, the sparsity the schedule asks for, the LR the LR scheduler
gives, the loss the regularizer adds.

``CASES`` gives each registered class its arguments and its check (``POST_TRAINING`` the arguments of
post-training quantizers, which a training policy refuses). A class registered without an entry fails here: add
one to ``CASES[section]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

import pytest
import torch
import yaml
from loops import Step, run_epochs

import compress
from compress.errors import ScheduleError
from compress.optim import SparseNTASGD
from compress.registry import SECTIONS
from compress.structured.geometry import lstm_block_structure
from compress_models import RNNModel

VOCAB, WIDTH, BATCH, EPOCHS, MINIBATCHES, LR = 50, 16, 3, 2, 2, 1.0
POLICY_KIND = {"pruners": "pruner", "regularizers": "regularizer", "quantizers": "quantizer",
               "extensions": "extension", "lr_schedulers": "lr_scheduler"}


@dataclass
class Run:
    """What a check is given: the trained model and everything around it."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: compress.CompressionScheduler
    component: Any
    steps: List[Step]
    lrs: List[float]                      # the LR of each epoch's minibatches, then the LR after training
    prunings: List[Dict[str, Any]]        # each compute_masks call: the weights it saw, the masks it returned


@dataclass
class Case:
    """How to build and check one registered class.

    Args:
        args: the class's arguments in the schedule (``class`` excluded), for ``RNNModel('LSTM', 50, 16, 16, 2)``
            tied; the component is named ``c``.
        check: ``check(run)`` asserts what the class promises after the two epochs.
        policy_args: the policy's ``args``.
        optimizer: builds the optimizer from the model's parameters.
        in_code: ``in_code(optimizer) -> args`` for classes whose arguments no YAML can hold (functions,
            scheduler objects): they are built with ``dict_config`` from these instead.
    """

    args: Mapping[str, Any]
    check: Callable[[Run], None]
    policy_args: Mapping[str, Any] = field(default_factory=dict)
    optimizer: Callable[[Any], torch.optim.Optimizer] = lambda params: torch.optim.SGD(params, lr=LR)
    in_code: Optional[Callable[[torch.optim.Optimizer], Mapping[str, Any]]] = None


# -- checks ---------------------------------------------------------------------------------------------------
def sparsity(mask: torch.Tensor) -> float:
    return 1 - mask.float().mean().item()


def pruned_weights_are_zero(run: Run) -> None:
    assert len(run.scheduler.masks) > 0, "no weight was masked"
    for name, mask in run.scheduler.masks.items():
        weight = run.scheduler.masks.parameter(name)
        assert not weight[~mask].any(), f"{name}: pruned weights are not exactly zero after the last step"


def sparsities(expected: Mapping[str, float]) -> Callable[[Run], None]:
    """Pruned weights are zero and each listed weight is pruned to its sparsity (to one weight)."""

    def check(run: Run) -> None:
        pruned_weights_are_zero(run)
        got = {n: sparsity(run.scheduler.masks[n]) for n in expected}
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, abs=1 / run.scheduler.masks[name].numel()), got

    return check


def masks_of_last_pruning(keep: Callable[[str, torch.Tensor, Dict[str, Any], Run], torch.Tensor]):
    """Pruned weights are zero and each mask is ``keep(name, weight, pruning, run)`` of the weight the pruner saw
    at its last pruning (the criterion worked out by hand); something is pruned."""

    def check(run: Run) -> None:
        pruned_weights_are_zero(run)
        last = run.prunings[-1]
        for name, weight in last["params"].items():
            mask = run.scheduler.masks[name]
            assert torch.equal(mask, keep(name, weight, last, run)), name
            assert 0 < sparsity(mask) < 1, name

    return check


def same_structure(structures: Mapping[str, torch.Tensor]) -> Callable[[Run], None]:
    """Pruned weights are zero and each mask is the predefined structure."""

    def check(run: Run) -> None:
        pruned_weights_are_zero(run)
        for name, mask in structures.items():
            assert torch.equal(run.scheduler.masks[name], mask), name
            assert torch.equal(run.scheduler.masks.parameter(name) != 0, mask), name

    return check


def exact_density(density: float) -> Callable[[Run], None]:
    """Pruned weights are zero and exactly ``round(density * n)`` of the pruner's weights are kept."""

    def check(run: Run) -> None:
        pruned_weights_are_zero(run)
        weights = run.component.weights
        total = sum(run.scheduler.masks.parameter(n).numel() for n in weights)
        assert sum(int(run.scheduler.masks[n].sum()) for n in weights) == round(density * total)
        assert run.component.events >= 1   # prune-and-regrow ran (after epoch 0; main runs none after the last step)

    return check


def searched_and_pruned(run: Run) -> None:
    pruned_weights_are_zero(run)
    policy = run.scheduler.policies[0][2]
    assert policy.iteration >= 1 and policy.history, "no rate search ran"
    assert any(sparsity(m) > 0 for _, m in run.scheduler.masks.items())


def lrs(*expected: float) -> Callable[[Run], None]:
    """The LR in epoch 0, in epoch 1 and after training (the policy steps the scheduler at each epoch's end)."""

    def check(run: Run) -> None:
        assert run.lrs == pytest.approx(list(expected), rel=1e-9, abs=1e-12)
        assert len(set(run.lrs)) > 1, "the LR never changed"

    return check


def regularized(run: Run) -> None:
    """Every minibatch's scheduled loss is the model's loss plus the regularizer's (positive) term."""
    params = {n: run.scheduler.masks.parameter(n) for n in run.component.weights}
    assert run.component.loss(params).item() > 0
    for step in run.steps:
        assert step.scheduled_loss > step.loss, step


def regularized_and_thresholded(run: Run) -> None:
    """As :func:`regularized`, and with ``keep_mask`` the threshold masks of the last minibatch are kept: the
    weights under the threshold are exactly zero, and stay masked."""
    regularized(run)
    pruned_weights_are_zero(run)
    assert set(dict(run.scheduler.masks.items())) == set(run.component.weights)
    got = {n: sparsity(m) for n, m in run.scheduler.masks.items()}
    assert all(0 < s < 1 for s in got.values()), got


def switched_to_averaging(run: Run) -> None:
    # the validation loss passed to on_epoch_end worsens at epoch 1: with nonmono 0 the switch fires there
    assert run.optimizer.averaging and run.component.switched_at == 1


def sensitivity_keep(name, weight, pruning, run):
    return weight.abs() > run.component.targets[name] * run.component.stds[name]


def splicing_keep(name, weight, pruning, run):
    mean, std = run.component.stats[name]
    keep = pruning["current"][name].clone()
    keep[weight.abs() < (mean + 0.5 * std) * 0.9] = False
    keep[weight.abs() >= (mean + 0.5 * std) * 1.1] = True
    return keep


def baidu_keep(name, weight, pruning, run):
    # epochs 0..1, ramp at epoch 1: start slope 2 q / (2 * 1 + 3 * 1) = 0.02 for q = 0.05; the last pruning is at
    # epoch 1: 0.02 * 2 + 0.02 * 2 (ramp_slope_mult) * 1 = 0.08
    return weight.abs() > 0.08


def hh(layer):
    return f"rnn.weight_hh_l{layer}"


# the tied LM's LSTM output is read by the decoder, whose columns are the embedding's, read by layer 0's inputs
UNIT_CONSUMERS = {"rnn": ["decoder.weight"], "encoder": ["rnn.weight_ih_l0"]}


def units_removed(count: int) -> Callable[[Run], None]:
    """Every layer has exactly ``count`` of its hidden units removed whole: all four gate rows of the unit in
    ``weight_hh`` are zero (and pruned weights are exactly zero)."""

    def check(run: Run) -> None:
        pruned_weights_are_zero(run)
        params = dict(run.model.named_parameters())
        for layer in (0, 1):
            rows = params[hh(layer)].detach().reshape(4, WIDTH, WIDTH)
            removed = int((rows.abs().sum(dim=(0, 2)) == 0).sum())
            assert removed == count, (layer, removed)

    return check


def all_of(*checks: Callable[[Run], None]) -> Callable[[Run], None]:
    def check(run: Run) -> None:
        for c in checks:
            c(run)

    return check


BLOCK_LSTM = dict(zip(("rnn.weight_ih_l1", "rnn.weight_hh_l1"), lstm_block_structure(WIDTH, WIDTH, blocks=4,
                                                                                       density=0.5).masks()))


def block_embedding_mask():
    # 2 column blocks of 8 at density 0.75 of 50 x 16: block 0 keeps all 50 ids (400 weights), block 1 the other
    # 200 weights, i.e. the 25 ids from 25 on
    keep = torch.ones(VOCAB, WIDTH, dtype=torch.bool)
    keep[:25, 8:] = False
    return keep

# -- the table: every registered class ------------------------------------------------------------------------
CASES: Dict[str, Dict[str, Case]] = {
    "pruners": {
        "AutomatedGradualPruner": Case(
            dict(initial_sparsity=0.1, final_sparsity=0.5, weights=["rnn.weight_hh_*"]),
            sparsities({hh(0): 0.5, hh(1): 0.5})),   # the last policy epoch reaches final_sparsity
        "SparsityLevelParameterPruner": Case(
            dict(levels={"rnn.weight_ih_l0": 0.3, "encoder.weight": 0.6}),
            sparsities({"rnn.weight_ih_l0": 0.3, "encoder.weight": 0.6})),
        "MagnitudeParameterPruner": Case(
            dict(thresholds={hh(0): 0.1}),
            masks_of_last_pruning(lambda name, w, pruning, run: w.abs() > 0.1)),
        "SensitivityPruner": Case(
            dict(sensitivities={hh(1): 0.5}), masks_of_last_pruning(sensitivity_keep)),
        "SplicingPruner": Case(
            dict(sensitivities={hh(0): 0.5}, low_thresh_mult=0.9, hi_thresh_mult=1.1),
            masks_of_last_pruning(splicing_keep),
            policy_args=dict(mask_on_forward_only=True, use_double_copies=True, keep_mask=True)),
        "BaiduRNNPruner": Case(
            dict(q=0.05, ramp_epoch_offset=1, ramp_slope_mult=2, weights=[hh(0)]), masks_of_last_pruning(baidu_keep)),
        # per gate, 4 components of 4 units: block-diagonal recurrent weights (1/4 kept), input windows of width 8
        "BlockSparseLSTMPruner": Case(
            dict(weights=["rnn.weight_*_l1"], blocks=4, density=0.5),
            all_of(same_structure(BLOCK_LSTM), sparsities({"rnn.weight_ih_l1": 0.5, "rnn.weight_hh_l1": 0.75}))),
        "BlockEmbeddingPruner": Case(
            dict(weights=["encoder.weight"], blocks=2, density=0.75),
            same_structure({"encoder.weight": block_embedding_mask()})),
        "DynamicSparsityPruner": Case(dict(density=0.4, weights=["rnn.weight_*"]), exact_density(0.4)),
        "SelfishRNNPruner": Case(dict(density=0.3), exact_density(0.3)),
        "SETPruner": Case(dict(sparsity=0.6, weights=["rnn.weight_hh_*"]), exact_density(0.4)),
        "RigLPruner": Case(dict(density=0.5, update_frequency="epoch"), exact_density(0.5)),
        "StageWisePruner": Case(
            dict(max_degradation=0.5, relative=True, grouping="layer_wise", weights=["rnn.weight_*"],
                 retrain_epochs=1, max_evaluations=8),
            searched_and_pruned),
        # an AGP ramp of the unit count over the two epochs: half of each layer's 16 units at the last one
        "UnitPruner": Case(dict(layers=["rnn"], consumers=UNIT_CONSUMERS, final_sparsity=0.5), units_removed(8)),
    },
    "regularizers": {
        "L1Regularizer": Case(dict(reg_regims={hh(0): 1e-3}), regularized),
        "UnitGroupLassoRegularizer": Case(dict(layers=["rnn"], consumers=UNIT_CONSUMERS, strength=1e-3), regularized),
        # rows (16 weights) and columns (64) drawn from U(-1/4, 1/4) have a mean |w| near 0.125: a threshold of
        # 0.11 zeroes some of them; a small LR keeps the penalty from shrinking them all below it in two epochs
        "GroupLassoRegularizer": Case(
            dict(reg_regims={hh(0): [0.11, "Rows"], hh(1): [0.11, "Cols"]}, threshold_criteria="Mean_Abs"),
            regularized_and_thresholded, policy_args=dict(keep_mask=True),
            optimizer=lambda params: torch.optim.SGD(params, lr=0.01)),
    },
    "extensions": {
        "NTASGDSwitch": Case(dict(nonmono=0), switched_to_averaging,
                             optimizer=lambda params: SparseNTASGD(params, lr=LR)),
    },
    "lr_schedulers": {
        "StepLR": Case(dict(step_size=1, gamma=0.5), lrs(1.0, 0.5, 0.25)),
        "MultiStepLR": Case(dict(milestones=[1], gamma=0.1), lrs(1.0, 0.1, 0.1)),
        "MultiStepMultiGammaLR": Case(dict(milestones=[1, 2], gammas=[0.5, 0.1]), lrs(1.0, 0.5, 0.05)),
        "ExponentialLR": Case(dict(gamma=0.5), lrs(1.0, 0.5, 0.25)),
        "ConstantLR": Case(dict(factor=0.5, total_iters=2), lrs(0.5, 0.5, 1.0)),
        "LinearLR": Case(dict(start_factor=0.5, total_iters=2), lrs(0.5, 0.75, 1.0)),
        "PolynomialLR": Case(dict(total_iters=2, power=1.0), lrs(1.0, 0.5, 0.0)),
        "CosineAnnealingLR": Case(dict(T_max=2), lrs(1.0, 0.5, 0.0)),
        "CosineAnnealingWarmRestarts": Case(dict(T_0=2), lrs(1.0, 0.5, 1.0)),
        # triangular: base_lr at steps 0 and 2, max_lr at step 1
        "CyclicLR": Case(dict(base_lr=0.1, max_lr=1.0, step_size_up=1, cycle_momentum=False), lrs(0.1, 1.0, 0.1)),
        # 4 steps, peak after 0.3 * 4 - 1 = 0.2 steps, then linear down to max_lr / 25 / 1e4 at step 3
        "OneCycleLR": Case(dict(max_lr=1.0, total_steps=4, anneal_strategy="linear"),
                           lrs(0.04, 1.0 + (4e-6 - 1.0) * 0.8 / 2.8, 1.0 + (4e-6 - 1.0) * 1.8 / 2.8)),
        # patience 0: the validation loss worsens at epoch 1, so the LR drops at its end
        "ReduceLROnPlateau": Case(dict(factor=0.5, patience=0), lrs(1.0, 1.0, 0.5)),
        "LambdaLR": Case({}, lrs(1.0, 0.5, 0.25), in_code=lambda opt: {"lr_lambda": lambda epoch: 0.5 ** epoch}),
        "MultiplicativeLR": Case({}, lrs(1.0, 0.5, 0.25), in_code=lambda opt: {"lr_lambda": lambda epoch: 0.5}),
        # ConstantLR for epoch 0, then ExponentialLR from its milestone on
        "SequentialLR": Case({}, lrs(0.5, 1.0, 0.5), in_code=lambda opt: {
            "schedulers": [torch.optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=1),
                           torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)],
            "milestones": [1]}),
        # both step at each epoch's end: ConstantLR's factor ends after one step (1.0), ExponentialLR halves it
        "ChainedScheduler": Case({}, lrs(0.5, 0.5, 0.25), in_code=lambda opt: {
            "schedulers": [torch.optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=1),
                           torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)]}),
    },
    "quantizers": {},   # quantization-aware ones go here; post-training ones in POST_TRAINING
}
#: Post-training quantizers (a training policy refuses them) and their arguments.
POST_TRAINING: Dict[str, Mapping[str, Any]] = {
    "PostTrainLinearQuantizer": dict(bits_activations=8, bits_parameters=8, mode="ASYMMETRIC_UNSIGNED"),
}


def library_classes():
    """Every (section, class name) the library registers (classes tests register for themselves left out)."""
    return [(section, name) for section, registry in SECTIONS.items() for name in registry.names()
            if registry.get(name).__module__.split(".")[0] in ("compress", "torch")]


REGISTERED = library_classes()


def case_of(section: str, name: str) -> Case:
    case = CASES.get(section, {}).get(name)
    if case is None:
        pytest.fail(f"{section}.{name} is registered but tests/test_registry_contract.py has no entry for it: add "
                    f"CASES[{section!r}][{name!r}] = Case(args={{...}}, check=...) with small arguments for "
                    f"RNNModel('LSTM', {VOCAB}, {WIDTH}, {WIDTH}, 2, tie_weights=True) and a check of what the "
                    f"class promises after {EPOCHS} epochs (e.g. sparsities({{'rnn.weight_hh_l0': 0.5}}), "
                    f"pruned_weights_are_zero, regularized, lrs(...)); a post-training quantizer goes in "
                    f"POST_TRAINING[{name!r}] = {{its arguments}} instead", pytrace=False)
    return case


def record_prunings(pruner) -> List[Dict[str, Any]]:
    """Wrap ``pruner.compute_masks`` to record the weights and current masks of each call."""
    calls: List[Dict[str, Any]] = []
    compute = getattr(pruner, "compute_masks", None)
    if compute is None:
        return calls

    def spy(params, current, step):
        calls.append({"params": {n: p.detach().clone() for n, p in params.items()},
                      "current": {n: None if m is None else m.clone() for n, m in current.items()}})
        return compute(params, current, step)

    pruner.compute_masks = spy
    return calls


def write_schedule(tmp_path, section: str, name: str, args: Mapping[str, Any], policy_args: Mapping[str, Any]):
    ref = {"instance_name": "c"}
    if policy_args:
        ref["args"] = dict(policy_args)
    schedule = {"version": 1, section: {"c": {"class": name, **args}},
                "policies": [{POLICY_KIND[section]: ref, "starting_epoch": 0, "ending_epoch": EPOCHS}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(schedule, sort_keys=False))
    return path, schedule


def tiny_lm():
    torch.manual_seed(0)
    return RNNModel("LSTM", VOCAB, WIDTH, WIDTH, 2, dropout=0.0, tie_weights=True)


def batches():
    gen = torch.Generator().manual_seed(1)
    return [(torch.randint(0, VOCAB, (5, BATCH), generator=gen), torch.randint(0, VOCAB, (5 * BATCH,), generator=gen))
            for _ in range(MINIBATCHES)]


def validation_loss(model, data=batches()[0]) -> float:
    with torch.no_grad():
        out, _ = model(data[0], model.init_hidden(BATCH))
        return float(torch.nn.functional.cross_entropy(out.view(-1, VOCAB), data[1]))


@pytest.mark.parametrize("section,name", [c for c in REGISTERED if c[1] not in POST_TRAINING],
                         ids=[f"{s}.{n}" for s, n in REGISTERED if n not in POST_TRAINING])
def test_registered_class_builds_from_yaml_and_trains_two_epochs(tmp_path, section, name):
    case = case_of(section, name)
    model = tiny_lm()
    optimizer = case.optimizer(model.parameters())
    path, schedule = write_schedule(tmp_path, section, name, case.args, case.policy_args)
    if case.in_code is None:
        scheduler = compress.file_config(model, optimizer, path, evaluate=validation_loss)
    else:  # its arguments are Python objects
        schedule[section]["c"].update(case.in_code(optimizer))
        scheduler = compress.dict_config(model, optimizer, schedule)
    component = scheduler.components[section]["c"]
    assert type(component) is SECTIONS[section].get(name)
    prunings = record_prunings(component) if section == "pruners" else []
    seen: List[float] = []

    def lr_of_epoch(epoch, i):
        if i == 0:
            seen.append(optimizer.param_groups[0]["lr"])

    steps = run_epochs(model, scheduler, optimizer, batches(), EPOCHS, metrics=lambda epoch: {"min": 1.0 + epoch},
                       after_step=lr_of_epoch)
    assert len(steps) == EPOCHS * MINIBATCHES and all(math.isfinite(s.scheduled_loss) for s in steps)
    case.check(Run(model, optimizer, scheduler, component, steps, seen + [optimizer.param_groups[0]["lr"]],
                   prunings))


@pytest.mark.parametrize("name", [n for s, n in REGISTERED if s == "lr_schedulers"
                                  and CASES["lr_schedulers"].get(n) and CASES["lr_schedulers"][n].in_code])
def test_lr_scheduler_that_needs_python_objects_is_refused_from_yaml_naming_the_component(tmp_path, name):
    case = CASES["lr_schedulers"][name]
    model = tiny_lm()
    optimizer = case.optimizer(model.parameters())
    spare = torch.optim.SGD(tiny_lm().parameters(), lr=LR)   # building the real arguments may set its LR
    placeholders = dict.fromkeys(case.in_code(spare), "not a function")
    path, _ = write_schedule(tmp_path, "lr_schedulers", name, placeholders, {})
    with pytest.raises(ScheduleError) as info:
        compress.file_config(model, optimizer, path)
    assert info.value.key == "lr_schedulers.c" and info.value.line is not None
    assert optimizer.param_groups[0]["lr"] == LR


@pytest.mark.parametrize("name", sorted(POST_TRAINING))
def test_post_training_quantizer_in_a_training_policy_is_refused_pointing_to_components_from_file(tmp_path, name):
    model = tiny_lm()
    modules = [type(m) for m in model.modules()]
    path, _ = write_schedule(tmp_path, "quantizers", name, POST_TRAINING[name], {})
    with pytest.raises(ScheduleError, match="components_from_file") as info:
        compress.file_config(model, None, path)
    assert info.value.key.startswith("policies[0].quantizer")
    assert [type(m) for m in model.modules()] == modules   # nothing was prepared


@pytest.mark.parametrize("name", sorted(POST_TRAINING))
def test_post_training_quantizer_builds_with_components_from_file_and_prepares_the_model(tmp_path, name):
    model = tiny_lm()
    path, _ = write_schedule(tmp_path, "quantizers", name, POST_TRAINING[name], {})
    quantizer = compress.components_from_file(model, path)["quantizers"]["c"]
    assert type(quantizer) is SECTIONS["quantizers"].get(name)
    data = batches()

    def calibrate(m):
        for x, _ in data:
            m(x, m.init_hidden(BATCH))

    prepared = quantizer.prepare_model(calibration=calibrate)
    assert not isinstance(prepared.rnn, torch.nn.LSTM)      # the LSTM became quantizable modules
    with torch.no_grad():
        out, _ = prepared(data[0][0], prepared.init_hidden(BATCH))
    assert out.shape == (5, BATCH, VOCAB) and torch.isfinite(out).all()


def test_every_table_entry_names_a_registered_class():
    registered = set(REGISTERED)
    stale = [(s, n) for s, cases in CASES.items() for n in cases if (s, n) not in registered]
    stale += [("quantizers", n) for n in POST_TRAINING if ("quantizers", n) not in registered]
    assert not stale, f"CASES has entries for classes that are not registered: {stale}"

"""Dynamic sparse training (Selfish-RNN / SET / RigL): exact density, paper semantics, resume, errors."""
import itertools
import math

import pytest
import torch
from loops import LMLoss, run_epochs
from torch import nn

import compress
from compress import ScheduleError
from compress.optim import SparseNTASGD
from compress.pruning.criteria import prune_regrow as pr
from compress.pruning.pruners.dynamic import DynamicSparsityPruner
from compress.pruning.ramps import cosine_decay
from compress_models import RNNModel

VOCAB = 40


def tiny_model(tied=False):
    torch.manual_seed(0)
    return RNNModel("LSTM", VOCAB, 12, 12, 2, dropout=0.0, tie_weights=tied)


def dst_schedule(epochs=4, **pruner):
    spec = {"class": "DynamicSparsityPruner", "density": 0.3}
    spec.update(pruner)
    return {"pruners": {"p": spec},
            "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": epochs}]}


def random_batches(gen, minibatches):
    """``batches(epoch)`` for :func:`run_epochs`: fresh random tokens and targets every epoch, drawn from ``gen``."""
    def draw():
        return torch.randint(0, VOCAB, (5, 3), generator=gen), torch.randint(0, VOCAB, (15,), generator=gen)

    return lambda epoch: [draw() for _ in range(minibatches)]


def run(model, optimizer, scheduler, epochs, minibatches=4, seed=1, after_step=None, after_epoch=None):
    gen = torch.Generator().manual_seed(seed)
    run_epochs(model, scheduler, optimizer, random_batches(gen, minibatches), len(epochs), epochs.start,
               metrics=lambda epoch: {"min": 4.0 - 0.1 * epoch}, loss=LMLoss(carry_hidden=True),
               after_step=after_step, after_epoch=after_epoch)


def pruner_of(scheduler):
    return scheduler.components["pruners"]["p"]


# -- exact density --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("death,growth,redistribution",
                         list(itertools.product(pr.DEATH_MODES, pr.GROWTH_MODES, pr.REDISTRIBUTION_MODES)))
def test_density_is_exact_after_every_update(death, growth, redistribution):
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
    scheduler = compress.dict_config(model, optimizer, dst_schedule(
        death=death, growth=growth, redistribution=redistribution, death_rate=0.6, update_frequency=2,
        sparse_init="ER"))
    pruner = pruner_of(scheduler)
    sizes = {n: model.state_dict()[n].numel() for n in pruner.weights}
    target = round(0.3 * sum(sizes.values()))
    checked = []

    def check(epoch, b):
        masks = {n: scheduler.masks[n] for n in pruner.weights}
        assert sum(int(m.sum()) for m in masks.values()) == target
        if redistribution == "none":
            assert [int(masks[n].sum()) for n in pruner.weights] == pruner.targets
        for n, m in masks.items():
            assert not scheduler.masks.parameter(n)[~m].any()
        checked.append(pruner.events)

    run(model, optimizer, scheduler, range(2), after_step=check)
    assert pruner.events == 4 and checked[-1] == 4


def test_default_weights_are_every_non_bias_matrix_embedding_and_softmax_included():
    model = tiny_model()
    scheduler = compress.dict_config(model, None, dst_schedule())
    assert pruner_of(scheduler).weights == ["encoder.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0",
                                            "rnn.weight_ih_l1", "rnn.weight_hh_l1", "decoder.weight"]


def test_tied_embedding_and_softmax_share_one_mask():
    model = tiny_model(tied=True)
    scheduler = compress.dict_config(model, None, dst_schedule())
    scheduler.on_epoch_begin(0)
    assert "decoder.weight" not in pruner_of(scheduler).weights
    assert torch.equal(model.decoder.weight != 0, scheduler.masks["encoder.weight"])


# -- how many: initialisation and redistribution ------------------------------------------------------------
def test_er_densities_follow_the_formula():
    # eps (rows + cols) / (rows cols): (10,10) -> 0.2 eps, (2,50) -> 0.52 eps; 0.5 * 200 = eps (20 + 52)
    eps = 100 / 72
    assert pr.erdos_renyi_densities([(10, 10), (2, 50)], 0.5) == pytest.approx([0.2 * eps, 0.52 * eps])


def test_er_caps_a_layer_at_density_one_and_gives_the_excess_to_the_others():
    # 0.9 * 200 = 180: eps = 2.5 would make (2,50) 1.3 dense; capped at 1 (100 weights), the other gets 80/100
    assert pr.erdos_renyi_densities([(10, 10), (2, 50)], 0.9) == pytest.approx([0.8, 1.0])


@pytest.mark.parametrize("mode", pr.INIT_MODES)
def test_initial_counts_hit_the_global_density_exactly(mode):
    shapes = [(40, 12), (48, 12), (48, 12), (40, 12), (7, 3)]
    counts = pr.initial_counts(shapes, 0.33, mode)
    assert sum(counts) == round(0.33 * sum(r * c for r, c in shapes))
    assert all(0 <= n <= r * c for n, (r, c) in zip(counts, shapes))


def test_apportion_fills_capped_layers_and_splits_the_rest_by_largest_remainder():
    # ideal 2.5/2.5/5 -> layer 2 capped at 3; 7 left over two equal shares -> 3.5/3.5 -> 4/3
    assert pr.apportion(10, [1, 1, 2], [10, 10, 3]) == [4, 3, 3]


def test_apportion_splits_equally_when_every_share_is_zero():
    assert pr.apportion(5, [0, 0, 0], [9, 9, 9]) == [2, 2, 1]


# -- how much, when: the death rate ---------------------------------------------------------------------------
def test_cosine_death_rate_values():
    assert cosine_decay(0.8, 0, 100, 0.005) == pytest.approx(0.8)
    assert cosine_decay(0.8, 25, 100, 0.005) == pytest.approx(0.005 + 0.795 * (1 + math.sqrt(0.5)) / 2)
    assert cosine_decay(0.8, 50, 100, 0.005) == pytest.approx(0.4025)
    assert cosine_decay(0.8, 100, 100, 0.005) == pytest.approx(0.005)


def test_death_rate_is_stepped_per_minibatch_over_the_policy_epochs():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = compress.dict_config(model, optimizer, dst_schedule(epochs=5, death_rate=0.5))
    rates = []
    run(model, optimizer, scheduler, range(2), minibatches=4,
        after_epoch=lambda e: rates.append(pruner_of(scheduler).current_death_rate()))
    # 5 epochs x 4 minibatches = 20 steps; after epochs 0 and 1: 4 and 8 steps
    assert rates == pytest.approx([0.005 + 0.495 * (1 + math.cos(math.pi * 4 / 20)) / 2,
                                   0.005 + 0.495 * (1 + math.cos(math.pi * 8 / 20)) / 2])


def test_update_events_use_the_annealed_death_rate():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = compress.dict_config(model, optimizer, dst_schedule(epochs=2, death_rate=0.5, death="magnitude"))
    pruner = pruner_of(scheduler)
    removed = []
    original = pruner.prune_and_regrow

    def spy(*a, **k):
        update = original(*a, **k)
        removed.append((update.death_rate, update.removed))
        return update

    pruner.prune_and_regrow = spy
    run(model, optimizer, scheduler, range(1), minibatches=4)
    rate, per_layer = removed[0]
    assert rate == pytest.approx(0.005 + 0.495 * (1 + math.cos(math.pi * 4 / 8)) / 2)
    assert per_layer == {n: math.ceil(rate * t) for n, t in zip(pruner.weights, pruner.targets)}


# -- which: death and growth criteria --------------------------------------------------------------------------
def test_magnitude_death_removes_the_smallest_active_weights():
    w = torch.tensor([0.5, -0.1, 0.0, 0.3, -0.2])
    mask = torch.tensor([True, True, False, True, True])
    assert pr.magnitude_death(w, mask, 2).tolist() == [True, False, False, True, False]


def test_set_death_removes_small_positives_and_negatives_closest_to_zero():
    w = torch.tensor([0.5, 0.1, 0.3, -0.2, -0.9, -0.05])
    mask = torch.ones(6, dtype=torch.bool)
    assert pr.set_death(w, mask, 4).tolist() == [True, False, False, False, True, False]


def test_set_death_can_reproduce_the_reference_code_removing_the_most_negative():
    w = torch.tensor([0.5, 0.1, 0.3, -0.2, -0.9, -0.05])
    mask = torch.ones(6, dtype=torch.bool)
    assert pr.set_death(w, mask, 4, "most_negative").tolist() == [True, False, False, False, False, True]


def test_set_death_takes_the_shortfall_from_the_other_sign():
    w = torch.tensor([0.5, 0.1, 0.3, -0.2])
    mask = torch.ones(4, dtype=torch.bool)
    assert int((~pr.set_death(w, mask, 3)).sum()) == 3   # 2 positives + the only negative


def test_global_magnitude_death_removes_exactly_k_even_with_ties():
    a = torch.tensor([0.1, 0.2, 0.2, 0.9])
    b = torch.tensor([0.2, 0.05, 0.7])
    masks = [torch.ones(4, dtype=torch.bool), torch.ones(3, dtype=torch.bool)]
    survivors, tau = pr.global_magnitude_death([a, b], masks, 3)
    assert tau == pytest.approx(0.2)
    assert survivors[0].tolist() == [False, False, True, True]   # 0.1 and the first tied 0.2 die
    assert survivors[1].tolist() == [True, False, True]


def test_threshold_death_doubles_the_threshold_when_too_few_weights_die():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = compress.dict_config(model, optimizer, dst_schedule(death="threshold", threshold=1e-9))
    run(model, optimizer, scheduler, range(1))
    assert pruner_of(scheduler).threshold == pytest.approx(2e-9)


def test_gradient_growth_grows_the_largest_gradients_among_inactive_positions():
    mask = torch.tensor([True, False, False, False, True])
    grad = torch.tensor([9.0, 0.1, -3.0, 2.0, 8.0])
    assert pr.score_growth(mask, 2, grad).tolist() == [True, False, True, True, True]


def test_random_growth_is_a_function_of_the_seed():
    mask = torch.zeros(100, dtype=torch.bool)
    draw = [pr.random_growth(mask, 30, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], draw[2])
    assert int(draw[0].sum()) == 30


def test_update_frequency_never_keeps_the_initial_random_mask_a_static_baseline():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
    scheduler = compress.dict_config(model, optimizer, dst_schedule(update_frequency="never"))
    pruner = pruner_of(scheduler)
    initial = {}

    def keep(epoch):
        masks = {n: scheduler.masks[n].clone() for n in pruner.weights}
        initial.setdefault("masks", masks)
        for n, m in masks.items():
            assert torch.equal(m, initial["masks"][n]), (epoch, n)
            assert not scheduler.masks.parameter(n)[~m].any()

    run(model, optimizer, scheduler, range(3), after_epoch=keep)
    assert pruner.events == 0 and pruner.steps == 12
    assert [int(initial["masks"][n].sum()) for n in pruner.weights] == pruner.targets


# -- mask mechanics: regrown weights and optimizer state -------------------------------------------------------
def test_regrown_weights_start_at_zero_with_reset_momentum():
    model = tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    scheduler = compress.dict_config(model, optimizer, dst_schedule(death_rate=0.9, update_frequency=3))
    pruner = pruner_of(scheduler)
    seen = []
    original = pruner.prune_and_regrow

    def spy(*a, **k):
        update = original(*a, **k)
        seen.append(update)
        return update

    pruner.prune_and_regrow = spy

    def check(epoch, b):
        if not seen:
            return
        update = seen.pop()
        for name in pruner.weights:
            grown = update.masks[name] & ~update.survivors[name]   # includes weights pruned and regrown now
            param = scheduler.masks.parameter(name)
            assert grown.any()
            assert not param[grown].any()
            assert not optimizer.state[param]["momentum_buffer"][grown].any()
            assert not optimizer.state[param]["momentum_buffer"][~update.masks[name]].any()

    run(model, optimizer, scheduler, range(2), after_step=check)
    assert pruner.events == 2


def test_momentum_growth_works_with_momentum_free_sgd():
    # the reference code crashes here: SGD without momentum has no buffer to grow by
    model = tiny_model()
    optimizer = SparseNTASGD(model.parameters(), lr=1.0)
    scheduler = compress.dict_config(model, optimizer, dst_schedule(growth="momentum", redistribution="momentum"))
    run(model, optimizer, scheduler, range(2))
    pruner = pruner_of(scheduler)
    assert pruner.events == 2 and set(pruner.momentum) == set(pruner.weights)


# -- state --------------------------------------------------------------------------------------------------
RESUME = {
    "pruners": {"p": {"class": "DynamicSparsityPruner", "density": 0.35, "death_rate": 0.7, "growth": "momentum",
                      "redistribution": "magnitude", "death": "SET"},
                "q": {"class": "SelfishRNNPruner", "density": 0.5, "weights": ["decoder.weight"]}},
    "extensions": {"sw": {"class": "NTASGDSwitch", "nonmono": 1}},
    "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 5},
                 {"pruner": {"instance_name": "q"}, "starting_epoch": 1, "ending_epoch": 5},
                 {"extension": {"instance_name": "sw"}, "starting_epoch": 0, "ending_epoch": 5}],
}
RESUME["pruners"]["p"]["weights"] = ["encoder.weight", "rnn.weight_*"]


def resume_setup():
    torch.manual_seed(0)
    model = RNNModel("LSTM", VOCAB, 12, 12, 2, dropout=0.3)
    optimizer = SparseNTASGD(model.parameters(), lr=1.0, weight_decay=1e-4)
    return model, optimizer, compress.dict_config(model, optimizer, RESUME)


def train_epochs(model, optimizer, scheduler, epochs, gen):
    losses = {0: 4.0, 1: 3.0, 2: 3.5, 3: 3.4, 4: 3.3}   # epoch 2 is worse than epoch 0: NT-ASGD switches there
    # the model has dropout, which draws from the global RNG; the checkpoint keeps it
    run_epochs(model, scheduler, optimizer, random_batches(gen, 3), len(epochs), epochs.start,
               metrics=lambda epoch: {"min": losses[epoch]}, loss=LMLoss(carry_hidden=True))


def test_resume_from_a_checkpoint_is_bit_exact(tmp_path):
    model_a, opt_a, sched_a = resume_setup()
    train_epochs(model_a, opt_a, sched_a, range(5), torch.Generator().manual_seed(3))

    data = torch.Generator().manual_seed(3)
    model_b, opt_b, sched_b = resume_setup()
    train_epochs(model_b, opt_b, sched_b, range(3), data)
    compress.save_checkpoint(tmp_path / "ckpt.pt", model_b, opt_b, sched_b, epoch=2)
    model_c, opt_c, sched_c = resume_setup()
    compress.load_checkpoint(tmp_path / "ckpt.pt", model_c, opt_c, sched_c)
    train_epochs(model_c, opt_c, sched_c, range(3, 5), data)

    assert opt_a.averaging and opt_c.averaging
    for (name, a), (_, c) in zip(model_a.state_dict().items(), model_c.state_dict().items()):
        assert torch.equal(a, c), name
    for name, mask in sched_a.masks.items():
        assert torch.equal(mask, sched_c.masks[name]), name
    for pa, pc in zip(model_a.parameters(), model_c.parameters()):
        for key, value in opt_a.state[pa].items():
            other = opt_c.state[pc][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, key
    dst_a, dst_c = sched_a.components["pruners"]["p"], sched_c.components["pruners"]["p"]
    # five epochs, no event after the last one (its regrown weights could not train)
    assert dst_a.events == dst_c.events == 4 and dst_a.steps == dst_c.steps == 15
    for name, m in dst_a.momentum.items():
        assert torch.equal(m, dst_c.momentum[name])


# -- errors ---------------------------------------------------------------------------------------------------
BAD = [
    ({"death": "smallest"}, "pruners.p.death"),
    ({"growth": "random_rnn"}, "pruners.p.growth"),
    ({"redistribution": "gates"}, "pruners.p.redistribution"),
    ({"sparse_init": "enforce_density_per_layer"}, "pruners.p.sparse_init"),
    ({"density": 1.5}, "pruners.p.density"),
    ({"density": 0}, "pruners.p.density"),
    ({"density": None, "sparsity": 1.0}, "pruners.p.sparsity"),
    ({"sparsity": 0.5}, "pruners.p.sparsity"),
    ({"death_rate": 1.2}, "pruners.p.death_rate"),
    ({"death_rate_decay": "linear"}, "pruners.p.death_rate_decay"),
    ({"update_frequency": 0}, "pruners.p.update_frequency"),
    ({"weights": ["rnn.weight_hh_l7"]}, "pruners.p.weights[0]"),
]


@pytest.mark.parametrize("change,key", BAD, ids=[k + "=" + str(list(c.values())[-1]) for c, k in BAD])
def test_bad_options_raise_a_schedule_error_naming_the_key(tmp_path, change, key):
    import yaml

    schedule = dst_schedule()
    schedule["pruners"]["p"].update(change)
    schedule["pruners"]["p"] = {k: v for k, v in schedule["pruners"]["p"].items() if v is not None}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(schedule))
    with pytest.raises(ScheduleError) as info:
        compress.file_config(tiny_model(), None, str(path))
    assert info.value.key == key, str(info.value)
    assert info.value.line is not None


def test_policy_args_are_rejected_naming_the_key():
    schedule = dst_schedule()
    schedule["policies"][0]["pruner"]["args"] = {"mask_on_forward_only": True}
    with pytest.raises(ScheduleError) as info:
        compress.dict_config(tiny_model(), None, schedule)
    assert info.value.key == "policies[0].pruner.args.mask_on_forward_only"


def test_presets_fix_their_papers_modes():
    model = tiny_model()
    schedule = {"pruners": {"s": {"class": "SelfishRNNPruner", "density": 0.3},
                            "e": {"class": "SETPruner", "sparsity": 0.7},
                            "r": {"class": "RigLPruner", "density": 0.3}}}
    built = compress.dict_config(model, None, schedule).components["pruners"]
    modes = {k: (p.sparse_init, p.death, p.growth, p.redistribution, p.death_rate_decay, p.update_frequency)
             for k, p in built.items()}
    assert modes == {"s": ("uniform", "magnitude", "random", "none", "cosine", "epoch"),
                     "e": ("ER", "SET", "random", "none", "constant", "epoch"),
                     "r": ("ER", "magnitude", "gradient", "none", "cosine", 100)}
    with pytest.raises(ScheduleError, match="unknown argument"):
        compress.dict_config(model, None, {"pruners": {"s": {"class": "SelfishRNNPruner", "density": 0.3,
                                                              "growth": "gradient"}}})


def test_pruner_is_usable_from_code_without_a_schedule():
    model = tiny_model()
    pruner = DynamicSparsityPruner("dst", density=0.25, death_rate=0.5)
    scheduler = compress.CompressionScheduler(model)
    scheduler.add_policy(pruner, starting_epoch=0, ending_epoch=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    run(model, optimizer, scheduler, range(2))
    assert pruner.events == 1  # after epoch 0; none after the policy's last epoch
    assert sum(int(scheduler.masks[n].sum()) for n in pruner.weights) == sum(pruner.targets)


def _dst_run(epochs, ending_epoch, update_frequency="epoch"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    schedule = {"pruners": {"p": {"class": "SelfishRNNPruner", "density": 0.5, "death_rate": 0.5,
                                  "update_frequency": update_frequency}},
                "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": ending_epoch}]}
    scheduler = compress.dict_config(model, optimizer, schedule)
    x = torch.randn(8, 6)
    for epoch in range(epochs):
        scheduler.on_epoch_begin(epoch, optimizer)
        for i in range(2):
            scheduler.on_minibatch_begin(epoch, i, 2, optimizer)
            loss = model(x).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.on_minibatch_end(epoch, i, 2, optimizer)
        scheduler.on_epoch_end(epoch, optimizer)
    return model, scheduler


@pytest.mark.parametrize("update_frequency", ["epoch", 2])
def test_no_prune_and_regrow_happens_after_the_policys_last_step(update_frequency):
    model, scheduler = _dst_run(3, 3, update_frequency)
    policy = scheduler.policies[0][2]
    assert policy.untrained_regrowth == 0
    for name, mask in scheduler.masks.items():  # every active weight has trained: none is stuck at zero
        weight = dict(model.named_parameters())[name]
        assert int((weight != 0).sum()) == int(mask.sum()), name


def test_evaluating_with_untrained_regrown_weights_warns_once_with_the_count(caplog):
    model, scheduler = _dst_run(2, 10)  # the loop stops long before the policy's ending_epoch
    policy = scheduler.policies[0][2]
    assert policy.untrained_regrowth > 0
    model.eval()
    with caplog.at_level("WARNING"):
        model(torch.randn(1, 6))
        model(torch.randn(1, 6))
    warnings = [r for r in caplog.records if "still at zero" in r.getMessage()]
    assert len(warnings) == 1 and str(policy.untrained_regrowth) in warnings[0].getMessage()

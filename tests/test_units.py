"""Hidden-unit groups (ISS), their group lasso, the unit pruner, and thinning to a smaller model."""
import pytest
import torch
import torch.nn.functional as F
from test_resume import assert_identical, make, snapshot, train
from torch import nn

import compress
from compress import ArgumentError, CheckpointError, ScheduleError
from compress.context import HookContext, Timing
from compress.modules import ModularGRU, ModularLSTM, convert_to_modular
from compress.pruning import UnitGroupLassoRegularizer, UnitPruner
from compress.quantization import export_model
from compress.reports.inspection import inspect_checkpoints
from compress.reports.tables import sparsity_summary
from compress.structured import (
    ThinnedRNN,
    hidden_sizes,
    thin,
    thin_optimizer,
    thinned_skeleton,
    thinning_plan,
    unit_groups,
)
from compress_models import RNNModel

TIED = {"rnn": ["decoder.weight"], "encoder": ["rnn.weight_ih_l0"]}


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same random weights."""
    torch.manual_seed(0)


class LM(nn.Module):
    """An embedding, a recurrent module and a decoder: the smallest model with every kind of consumer."""

    def __init__(self, rnn: nn.Module, vocab: int = 7, tied: bool = False):
        super().__init__()
        width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
        self.encoder = nn.Embedding(vocab, rnn.input_size)
        self.rnn = rnn
        self.decoder = nn.Linear(width, vocab)
        if tied:
            self.decoder.weight = self.encoder.weight

    def forward(self, x, hidden=None):
        out, hidden = self.rnn(self.encoder(x), hidden)
        return self.decoder(out), hidden


# -- group membership, hand-checked ------------------------------------------------------------------------------
def test_lstm_unit_owns_four_gate_rows_its_recurrent_column_and_its_consumer_columns():
    first, last = unit_groups(LM(nn.LSTM(3, 2, num_layers=2)), ["rnn"], {"rnn": ["decoder.weight"]})
    # H = 2: unit 1's rows are 1, 3, 5, 7 (i, f, g, o); its column is 1 in W_hh and in the next layer's W_ih
    assert first.members(1) == {
        ("rnn.weight_ih_l0", 0): [1, 3, 5, 7], ("rnn.weight_hh_l0", 0): [1, 3, 5, 7], ("rnn.weight_hh_l0", 1): [1],
        ("rnn.bias_ih_l0", 0): [1, 3, 5, 7], ("rnn.bias_hh_l0", 0): [1, 3, 5, 7], ("rnn.weight_ih_l1", 1): [1]}
    assert last.members(0) == {
        ("rnn.weight_ih_l1", 0): [0, 2, 4, 6], ("rnn.weight_hh_l1", 0): [0, 2, 4, 6], ("rnn.weight_hh_l1", 1): [0],
        ("rnn.bias_ih_l1", 0): [0, 2, 4, 6], ("rnn.bias_hh_l1", 0): [0, 2, 4, 6], ("decoder.weight", 1): [0]}
    assert (first.mode, first.hidden_size, last.key) == ("LSTM", 2, "rnn[1]")


def test_gru_unit_owns_three_gate_rows():
    (layer,) = unit_groups(LM(nn.GRU(3, 4, bias=False)), ["rnn"], {"rnn": ["decoder.weight"]})
    assert layer.members(2) == {("rnn.weight_ih_l0", 0): [2, 6, 10], ("rnn.weight_hh_l0", 0): [2, 6, 10],
                                 ("rnn.weight_hh_l0", 1): [2], ("decoder.weight", 1): [2]}


@pytest.mark.parametrize("kind", [nn.LSTM, nn.GRU])
def test_modular_layer_has_the_same_groups_under_its_own_names(kind):
    torch_groups = unit_groups(LM(kind(3, 4, num_layers=2)), ["rnn"], {"rnn": ["decoder.weight"]})
    modular = convert_to_modular(LM(kind(3, 4, num_layers=2)))
    assert isinstance(modular.rnn, (ModularLSTM, ModularGRU))
    modular_groups = unit_groups(modular, ["rnn"], {"rnn": ["decoder.weight"]})
    rename = {"weight_ih_l": "cells.{}.fc_gate_x.weight", "weight_hh_l": "cells.{}.fc_gate_h.weight",
              "bias_ih_l": "cells.{}.fc_gate_x.bias", "bias_hh_l": "cells.{}.fc_gate_h.bias"}

    def renamed(name):
        for old, new in rename.items():
            if name.startswith("rnn." + old):
                return "rnn." + new.format(name[len("rnn." + old):])
        return name

    for t, m in zip(torch_groups, modular_groups):
        for unit in range(4):
            assert {(renamed(n), d): v for (n, d), v in t.members(unit).items()} == m.members(unit)


def test_bidirectional_unit_is_one_group_over_both_directions():
    first, last = unit_groups(LM(nn.LSTM(3, 2, num_layers=2, bidirectional=True)), ["rnn"],
                              {"rnn": ["decoder.weight"]})
    got = first.members(1)
    for sfx in ("", "_reverse"):
        assert got[(f"rnn.weight_ih_l0{sfx}", 0)] == [1, 3, 5, 7]
        assert got[(f"rnn.weight_hh_l0{sfx}", 1)] == [1]
        assert got[(f"rnn.weight_ih_l1{sfx}", 1)] == [1, 3]   # forward output j, reverse output H + j
    assert last.members(0)[("decoder.weight", 1)] == [0, 2]
    assert first.directions == 2


def test_tied_decoder_couples_the_last_layer_to_the_embedding_and_the_first_layer_inputs():
    model = LM(nn.LSTM(2, 2, num_layers=2), tied=True)
    first, last = unit_groups(model, ["rnn"], TIED)
    # decoder.weight is the embedding's weight: column 1 of it is feature 1 of every word, read by W_ih_l0[:, 1]
    assert last.members(1)[("encoder.weight", 1)] == [1]
    assert last.members(1)[("rnn.weight_ih_l0", 1)] == [1]
    assert {p.role for p in last.parts if p.name == "rnn.weight_ih_l0"} == {"coupled"}
    assert ("rnn.weight_ih_l0", 1) not in first.members(1)


def test_tied_decoder_without_the_embeddings_readers_is_refused_with_the_reason():
    with pytest.raises(ArgumentError, match="tied decoder.*encoder.*weight_ih_l0") as info:
        unit_groups(LM(nn.LSTM(2, 2), tied=True), ["rnn"], {"rnn": ["decoder.weight"]})
    assert info.value.path == ("consumers", "rnn")


def test_empty_consumer_list_leaves_the_last_layer_ungrouped():
    groups = unit_groups(LM(nn.GRU(3, 4, num_layers=3)), ["rnn"], {"rnn": []})
    assert [g.key for g in groups] == ["rnn[0]", "rnn[1]"]


@pytest.mark.parametrize("layers, consumers, path, message", [
    (["decoder"], {}, ("layers", 0), "Linear; unit groups are defined for nn.LSTM"),
    (["nothing"], {}, ("layers", 0), "not a module"),
    (["rnn"], {}, ("consumers",), "names no weights that read 'rnn'"),
    (["rnn"], {"rnn": ["encoder.weight"]}, ("consumers", "rnn"), "needs 4 columns"),
    (["rnn"], {"rnn": ["decoder.wieght"]}, ("consumers", "rnn", 0), "closest names: decoder.weight"),
    (["rnn"], {"decoder": ["decoder.weight"]}, ("consumers", "decoder"), "a producer is a recurrent module"),
])
def test_bad_layers_and_consumers_name_their_key(layers, consumers, path, message):
    with pytest.raises(ArgumentError, match=message) as info:
        unit_groups(LM(nn.LSTM(3, 4)), layers, consumers)
    assert info.value.path == path


def test_projected_lstm_is_refused():
    with pytest.raises(ArgumentError, match="proj_size"):
        unit_groups(LM(nn.LSTM(3, 4, proj_size=2)), ["rnn"], {"rnn": []})


def test_squared_norm_counts_every_weight_of_a_group_once():
    model = LM(nn.LSTM(3, 2, num_layers=2))
    for p in model.parameters():
        nn.init.ones_(p)
    first, last = unit_groups(model, ["rnn"], {"rnn": ["decoder.weight"]})
    params = dict(model.named_parameters())
    # layer 0: 4 rows x 3 of W_ih + 4 rows x 2 of W_hh + W_hh's column (2 more weights off those rows: 8 - 4)
    # + 8 weights of W_ih_l1's column; biases left out
    assert first.squared_norms(params).tolist() == [12 + 8 + 4 + 8] * 2
    assert last.squared_norms(params).tolist() == [8 + 8 + 4 + 7] * 2


# -- the regularizer -----------------------------------------------------------------------------------------------
def test_group_lasso_is_the_strength_times_the_sum_of_group_norms():
    model = LM(nn.GRU(3, 2))
    lasso = UnitGroupLassoRegularizer("iss", model, ["rnn"], {"rnn": ["decoder.weight"]}, strength=0.5)
    params = dict(model.named_parameters())
    w_ih, w_hh, dec = params["rnn.weight_ih_l0"], params["rnn.weight_hh_l0"], params["decoder.weight"]
    expected = 0.0
    for j in range(2):
        rows = [j, 2 + j, 4 + j]
        group = torch.cat([w_ih[rows].flatten(), w_hh[rows].flatten(), w_hh[[r for r in range(6) if r not in rows], j],
                           dec[:, j]])
        expected += torch.sqrt((group ** 2).sum() + 1e-8)
    assert lasso.loss(params).item() == pytest.approx(0.5 * expected.item(), rel=1e-6)


def test_group_lasso_strength_per_layer_and_iss_default():
    model = LM(nn.LSTM(3, 2, num_layers=2))
    lasso = UnitGroupLassoRegularizer("iss", model, ["rnn"], {"rnn": ["decoder.weight"]},
                                      strength={"rnn": [0.0, 0.3]})
    assert lasso.strengths == [0.0, 0.3]
    default = UnitGroupLassoRegularizer("iss", model, ["rnn"], {"rnn": ["decoder.weight"]})
    assert default.strengths == [pytest.approx(0.00245 / 35)] * 2


def test_zero_threshold_zeroes_small_weights_of_the_groups_after_each_step():
    model = LM(nn.LSTM(3, 2))
    with torch.no_grad():
        model.rnn.weight_hh_l0[0, 0] = 5e-5
        model.decoder.weight[3, 1] = -9e-5
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    schedule = {"regularizers": {"iss": {"class": "UnitGroupLassoRegularizer", "layers": ["rnn"],
                                         "consumers": {"rnn": ["decoder.weight"]}}},
                "policies": [{"regularizer": {"instance_name": "iss"}, "epochs": [0]}]}
    scheduler = compress.dict_config(model, opt, schedule)
    scheduler.on_minibatch_end(0, 0, 1, opt)
    assert model.rnn.weight_hh_l0[0, 0] == 0 and model.decoder.weight[3, 1] == 0
    assert (model.encoder.weight != 0).all()          # not in any group


# -- the unit pruner -------------------------------------------------------------------------------------------------
def step(epoch, timing):
    return HookContext(epoch=epoch).with_timing(timing)


def test_unit_count_follows_agp_cubic_and_reaches_final_units():
    model = LM(nn.LSTM(3, 8, num_layers=2))
    pruner = UnitPruner("u", model, ["rnn"], {"rnn": ["decoder.weight"]}, final_units={"rnn": [2, 4]})
    timing = Timing(starting_epoch=0, ending_epoch=4, frequency=1)
    # removes 6 and 4 units: n_t = n_f (1 - (1 - t/3)^3) rounded down: 0, 4, 5, 6 and 0, 2, 3, 4
    assert [pruner.count(0, step(e, timing)) for e in range(4)] == [0, 4, 5, 6]
    assert [pruner.count(1, step(e, timing)) for e in range(4)] == [0, 2, 3, 4]


def test_pruner_removes_the_weakest_units_whole_and_they_stay_removed():
    model = LM(nn.LSTM(3, 4))
    with torch.no_grad():
        for p in model.parameters():
            nn.init.ones_(p)
        for j, scale in enumerate([1.0, 0.01, 0.5, 0.02]):   # units 1 and 3 are the weakest
            for p in (model.rnn.weight_ih_l0, model.rnn.weight_hh_l0):
                p[[j, 4 + j, 8 + j, 12 + j]] *= scale
            model.rnn.weight_hh_l0[:, j] *= scale
            model.decoder.weight[:, j] *= scale
    pruner = UnitPruner("u", model, ["rnn"], {"rnn": ["decoder.weight"]}, final_sparsity=0.5)
    params = dict(model.named_parameters())
    masks = pruner.compute_masks(params, {}, step(0, Timing(epochs=(0,))))
    w = masks["rnn.weight_hh_l0"]
    assert not w[[1, 3, 5, 7, 9, 11, 13, 15]].any()        # units 1 and 3: every gate row ...
    assert not w[:, [1, 3]].any() and not masks["decoder.weight"][:, [1, 3]].any()   # ... and their columns
    assert not masks["rnn.bias_ih_l0"][[1, 5, 9, 13]].any()
    assert masks["rnn.weight_ih_l0"][[0, 2]].all()
    assert pruner.hidden_sizes(masks) == {"rnn[0]": 2}
    with torch.no_grad():
        model.rnn.weight_ih_l0[1] = 10.0                      # a removed unit's weights grow back elsewhere...
    again = pruner.compute_masks(params, masks, step(0, Timing(epochs=(0,))))
    assert torch.equal(again["rnn.weight_hh_l0"], w)        # ...but it stays removed


def test_threshold_removes_every_emptied_unit_but_keeps_one():
    model = LM(nn.GRU(3, 4))
    group = unit_groups(model, ["rnn"], {"rnn": ["decoder.weight"]})[0]
    params = dict(model.named_parameters())
    with torch.no_grad():
        for p in group.parts:
            if p.role != "bias":
                index = p.index[[0, 2]].flatten()
                if p.dim == 0:
                    params[p.name][index] = 5e-5
                else:
                    params[p.name][:, index] = 5e-5
    pruner = UnitPruner("u", model, ["rnn"], {"rnn": ["decoder.weight"]}, threshold=1e-4)
    masks = pruner.compute_masks(params, {}, step(0, Timing(epochs=(0,))))
    assert pruner.hidden_sizes(masks) == {"rnn[0]": 2}
    everything = UnitPruner("u", model, ["rnn"], {"rnn": ["decoder.weight"]}, threshold=1e3)
    assert everything.hidden_sizes(everything.compute_masks(params, {}, step(0, Timing(epochs=(0,))))) == \
        {"rnn[0]": 1}


def test_unit_pruner_at_zero_units_is_an_error():
    model = LM(nn.LSTM(3, 4, num_layers=2))
    with pytest.raises(ArgumentError, match="0 units would empty the layer") as info:
        UnitPruner("u", model, ["rnn"], {"rnn": ["decoder.weight"]}, final_units={"rnn": [2, 0]})
    assert info.value.path == ("final_units", "rnn", 1)


@pytest.mark.parametrize("kwargs, path, message", [
    ({}, ("final_sparsity",), "would never remove a unit"),
    ({"final_sparsity": 0.0}, ("final_sparsity",), "would never remove a unit"),
    ({"final_sparsity": 1.0}, ("final_sparsity",), "in \\[0, 1\\)"),
    ({"final_units": 9}, ("final_units", "rnn"), "has 4 units; cannot keep 9"),
    ({"final_units": 2, "final_sparsity": 0.5}, ("final_units",), "not both"),
    ({"final_sparsity": {"rnn": [0.5]}}, ("final_sparsity", "rnn"), "lists 1 values; rnn has 2 layers"),
    ({"final_sparsity": {"lstm": 0.5}}, ("final_sparsity", "lstm"), "not a grouped module"),
    ({"final_sparsity": 0.2, "initial_sparsity": 0.5}, ("initial_sparsity",), "more than the final"),
    ({"threshold": -1.0}, ("threshold",), "must be in"),
    ({"final_sparsity": 0.5, "ramp": "step"}, ("ramp",), "expected one of epoch, minibatch"),
])
def test_unit_pruner_arguments_are_checked(kwargs, path, message):
    with pytest.raises(ArgumentError, match=message) as info:
        UnitPruner("u", LM(nn.LSTM(3, 4, num_layers=2)), ["rnn"], {"rnn": ["decoder.weight"]}, **kwargs)
    assert info.value.path == path


def test_schedule_errors_name_the_key_and_line(tmp_path):
    path = tmp_path / "iss.yaml"
    path.write_text("pruners:\n  units:\n    class: UnitPruner\n    layers: [rnn]\n"
                    "    consumers: {rnn: [decoder.weight]}\n    final_units: {rnn: [3, 0]}\n"
                    "regularizers:\n  lasso:\n    class: UnitGroupLassoRegularizer\n    layers: [rnn]\n"
                    "    consumers: {rnn: [decoder.wait]}\n"
                    "policies:\n  - pruner: {instance_name: units}\n    epochs: [0]\n")
    model = RNNModel("LSTM", 20, 8, 8, 2, dropout=0.0)
    with pytest.raises(ScheduleError) as info:
        compress.file_config(model, None, path)
    assert f"{path}:6: pruners.units.final_units.rnn[1]: a unit pruner at 0 units" in str(info.value)
    path.write_text(path.read_text().replace("[3, 0]", "[3, 2]"))
    with pytest.raises(ScheduleError) as info:
        compress.file_config(model, None, path)
    assert "regularizers.lasso.consumers.rnn[0]: 'decoder.wait' matches no parameter" in str(info.value)


def iss_schedule(tied=True, epochs=4):
    consumers = TIED if tied else {"rnn": ["decoder.weight"]}
    return {"regularizers": {"iss": {"class": "UnitGroupLassoRegularizer", "layers": ["rnn"],
                                     "consumers": consumers, "strength": 0.01}},
            "pruners": {"units": {"class": "UnitPruner", "layers": ["rnn"], "consumers": consumers,
                                  "final_units": {"rnn": [5, 3]}, "threshold": 1e-4}},
            "policies": [{"regularizer": {"instance_name": "iss"}, "starting_epoch": 0, "ending_epoch": epochs},
                         {"pruner": {"instance_name": "units"}, "starting_epoch": 1, "ending_epoch": epochs}]}


@pytest.mark.parametrize("stop", [1, 3])
def test_resume_is_bit_identical_with_the_lasso_and_the_unit_pruner(tmp_path, stop):
    data = torch.randint(0, 40, (3, 5, 4), generator=torch.Generator().manual_seed(3))
    model, optimizer, scheduler = make(iss_schedule())
    torch.manual_seed(7)
    train(model, optimizer, scheduler, range(5), data)
    straight = snapshot(model, optimizer, scheduler)
    model, optimizer, scheduler = make(iss_schedule())
    torch.manual_seed(7)
    train(model, optimizer, scheduler, range(stop), data)
    compress.save_checkpoint(tmp_path / "c.pt", model, optimizer, scheduler, epoch=stop - 1)
    torch.manual_seed(12345)
    model, optimizer, scheduler = make(iss_schedule())
    extra = compress.load_checkpoint(tmp_path / "c.pt", model, optimizer, scheduler)
    train(model, optimizer, scheduler, range(extra["epoch"] + 1, 5), data)
    assert_identical(straight, snapshot(model, optimizer, scheduler))
    units = scheduler.components["pruners"]["units"]
    assert units.hidden_sizes(dict(scheduler.masks.items())) == {"rnn[0]": 5, "rnn[1]": 3}


# -- thinning ------------------------------------------------------------------------------------------------------
def pruned(model, consumers, sparsity=0.5):
    """The scheduler that removed ``sparsity`` of every layer's units of ``model`` (masks applied)."""
    schedule = {"pruners": {"u": {"class": "UnitPruner", "layers": ["rnn"], "consumers": consumers,
                                  "final_sparsity": sparsity}},
                "policies": [{"pruner": {"instance_name": "u"}, "epochs": [0]}]}
    scheduler = compress.dict_config(model, None, schedule)
    scheduler.on_epoch_begin(0)
    return scheduler


CASES = {
    "lstm tied": (lambda: RNNModel("LSTM", 30, 8, 8, 2, dropout=0.0, tie_weights=True), TIED),
    "gru": (lambda: RNNModel("GRU", 30, 6, 8, 3, dropout=0.0), {"rnn": ["decoder.weight"]}),
    "lstm bidirectional": (lambda: LM(nn.LSTM(5, 4, num_layers=2, bidirectional=True), vocab=30),
                           {"rnn": ["decoder.weight"]}),
    "modular gru tied": (lambda: convert_to_modular(RNNModel("GRU", 30, 8, 8, 2, dropout=0.0, tie_weights=True)),
                         {"rnn": ["decoder.weight"], "encoder": ["rnn.cells.0.fc_gate_x.weight"]}),
    "batch-first lstm": (lambda: LM(nn.LSTM(5, 6, num_layers=2, batch_first=True), vocab=30),
                         {"rnn": ["decoder.weight"]}),
}


def state(model, batch):
    return model.init_hidden(batch) if hasattr(model, "init_hidden") else None


@pytest.mark.parametrize("case", sorted(CASES))
def test_thinned_model_computes_what_the_masked_model_computes(case):
    build, consumers = CASES[case]
    model = build()
    scheduler = pruned(model, consumers)
    small = thin(model, scheduler)
    model.eval(), small.eval()
    x = torch.randint(0, 30, (6, 3))
    logits, hidden = model(x, state(model, 3))
    small_logits, small_hidden = small(x, state(model, 3))
    assert torch.allclose(logits, small_logits, atol=1e-5)
    # the state keeps the original width; removed units are 0, as in the masked model from a zero state
    for a, b in zip(hidden if isinstance(hidden, tuple) else (hidden,),
                    small_hidden if isinstance(small_hidden, tuple) else (small_hidden,)):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    groups = scheduler.components["pruners"]["u"].groups
    assert isinstance(small.rnn, ThinnedRNN)
    assert hidden_sizes(small)["rnn"] == [g.hidden_size // 2 for g in groups]
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
    if "tied" in case:
        assert small.decoder.weight is small.encoder.weight
        assert small.encoder.embedding_dim == small.rnn.layers[0].input_size


def test_thinned_model_trains_exactly_like_the_masked_one():
    model = RNNModel("LSTM", 30, 8, 8, 2, dropout=0.0, tie_weights=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    x = torch.randint(0, 30, (6, 3))

    def one_step(m, opt, masks=None):
        loss = F.cross_entropy(m(x, m.init_hidden(3))[0].view(-1, 30), x.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if masks is not None:
            masks.after_step(opt)

    scheduler = pruned(model, TIED)
    one_step(model, optimizer, scheduler.masks)                  # momentum to carry over
    plan = thinning_plan(model, scheduler)
    small = thin(model, scheduler)
    small_optimizer = thin_optimizer(optimizer, model, small, plan)
    one_step(model, optimizer, scheduler.masks)
    one_step(small, small_optimizer)
    for name, p in model.named_parameters():
        q = dict(small.named_parameters())[plan.new_name(name)]
        assert torch.allclose(plan.slice(name, p.detach()), q.detach(), atol=1e-6), name


def test_thinned_model_saves_loads_and_inspects(tmp_path):
    model = RNNModel("LSTM", 30, 8, 8, 2, dropout=0.0, tie_weights=True)
    small = thin(model, pruned(model, TIED))
    compress.save_checkpoint(tmp_path / "small.pt", small, epoch=3)
    dense = RNNModel("LSTM", 30, 8, 8, 2, dropout=0.0, tie_weights=True)
    with pytest.raises(CheckpointError, match="thinned model.*thinned_skeleton"):
        compress.load_checkpoint(tmp_path / "small.pt", dense)
    loaded = thinned_skeleton(dense, tmp_path / "small.pt")
    assert compress.load_checkpoint(tmp_path / "small.pt", loaded) == {"epoch": 3}
    x = torch.randint(0, 30, (5, 2))
    small.eval(), loaded.eval()
    assert torch.equal(small(x, small.init_hidden(2))[0], loaded(x, loaded.init_hidden(2))[0])
    assert loaded.decoder.weight is loaded.encoder.weight

    class Task:
        def build_model(self, checkpoint):
            return RNNModel("LSTM", 30, 8, 8, 2, dropout=0.0, tie_weights=True)

        def evaluate(self, model):
            return {}

    (report,) = inspect_checkpoints([str(tmp_path / "small.pt")], Task(), names=["thinned"])
    assert report.total == sum(p.numel() for p in small.parameters())
    rows = {r.name: r for r in sparsity_summary(small)}
    assert rows["rnn.layers.1.weight_hh_l0"].shape == (16, 4) and rows["encoder.weight"].shape == (30, 4)


def test_thinned_model_exports_to_int8():
    model = RNNModel("LSTM", 30, 16, 16, 2, dropout=0.0)
    small = thin(model, pruned(model, {"rnn": ["decoder.weight"]}, sparsity=0.25)).eval()
    real = export_model(small, "int8")
    x = torch.randint(0, 30, (5, 2))
    ref = small(x, small.init_hidden(2))[0]
    out = real(x, small.init_hidden(2))[0]
    assert not any(isinstance(m, nn.LSTM) for m in real.modules())
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()


def test_thin_needs_unit_groups():
    with pytest.raises(ArgumentError, match="expected unit groups"):
        thin(RNNModel("LSTM", 30, 8, 8, 2), "rnn")

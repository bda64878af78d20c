"""Gate selectors (``rnn.weight_hh_l0[gate=f]``): pruners target the rows of single LSTM/GRU gates, one mask per
tensor, combined across pruners; errors name the valid gates."""
import pytest
import torch
from loops import run_epochs
from torch import nn

import compress
from compress.modules import ModularGRU, ModularLSTM
from compress.sparsity import MaskStore, ParameterIndex
from compress_models import RNNModel

H = 12  # hidden units of the models below


def lm():
    torch.manual_seed(0)
    return RNNModel("LSTM", 40, H, H, 2, dropout=0.0, tie_weights=True)


def gate_sparsity(tensor, k, hidden=H):
    rows = tensor[k * hidden:(k + 1) * hidden]
    return int((rows == 0).sum()) / rows.numel()


def level_schedule(levels, epochs=(0,)):
    return {"pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": levels}},
            "policies": [{"pruner": {"instance_name": "p"}, "epochs": list(epochs)}]}


@pytest.mark.parametrize("gate, k", [("i", 0), ("f", 1), ("g", 2), ("o", 3)])
def test_lstm_gate_rows_are_pytorchs_packed_blocks(gate, k):
    index = ParameterIndex(nn.LSTM(3, 5, num_layers=2, bidirectional=True))
    for name in ("weight_ih_l1_reverse", "weight_hh_l0", "bias_ih_l0", "bias_hh_l1"):
        key = index.resolve(f"{name}[gate={gate}]", gates=True)[0]
        assert index.selection(key).rows().tolist() == list(range(5 * k, 5 * k + 5))


@pytest.mark.parametrize("gate, k", [("r", 0), ("z", 1), ("n", 2)])
def test_gru_gate_rows_are_pytorchs_packed_blocks(gate, k):
    index = ParameterIndex(nn.GRU(3, 4))
    key = index.resolve(f"weight_hh_l0[gate={gate}]", gates=True)[0]
    assert key == f"weight_hh_l0[gate={gate}]"
    assert index.selection(key).rows().tolist() == list(range(4 * k, 4 * k + 4))


def test_several_gates_resolve_in_row_order_and_all_gates_is_the_tensor():
    index = ParameterIndex(nn.GRU(3, 2))
    assert index.resolve("weight_hh_l0[gate=n,r]", gates=True) == ["weight_hh_l0[gate=r,n]"]
    assert index.selection("weight_hh_l0[gate=r,n]").rows().tolist() == [0, 1, 4, 5]
    assert index.resolve("weight_hh_l0[gate=r,z,n]", gates=True) == ["weight_hh_l0"]
    assert index.resolve("weight_*[gate=z]", gates=True) == ["weight_ih_l0[gate=z]", "weight_hh_l0[gate=z]"]


@pytest.mark.parametrize("layer, gates", [(ModularLSTM(3, 4), "ifgo"), (ModularGRU(3, 4), "rzn")])
def test_modular_cells_declare_their_gates(layer, gates):
    index = ParameterIndex(layer)
    for name in ("cells.0.fc_gate_x.weight", "cells.0.fc_gate_h.weight", "cells.0.fc_gate_h.bias"):
        assert index.gates[name].gates == tuple(gates)
        assert index.selection(f"{name}[gate={gates[1]}]").rows().tolist() == [4, 5, 6, 7]


def test_two_gates_at_different_levels_reach_them_exactly_and_leave_the_others_dense():
    model = lm()
    schedule = level_schedule({"rnn.weight_hh_l0[gate=f]": 0.75, "rnn.weight_hh_l0[gate=o]": 0.25})
    compress.dict_config(model, None, schedule).on_epoch_begin(0)
    w = model.rnn.weight_hh_l0
    assert [gate_sparsity(w, k) for k in range(4)] == [0.0, 0.75, 0.0, 0.25]


def test_whole_tensor_level_goes_to_the_gates_no_selector_names():
    model = lm()
    schedule = level_schedule({"rnn.weight_hh_l0": 0.5, "rnn.weight_hh_l0[gate=f]": 0.875})
    compress.dict_config(model, None, schedule).on_epoch_begin(0)
    w = model.rnn.weight_hh_l0
    assert gate_sparsity(w, 1) == 0.875
    rest = torch.cat([w[:H], w[2 * H:]])
    assert (rest == 0).float().mean().item() == 0.5


def test_pruners_on_different_gates_of_one_tensor_combine_into_one_mask():
    model = lm()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    schedule = {"pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.25,
                                    "final_sparsity": 0.75, "weights": ["rnn.weight_hh_l0[gate=f]"]},
                            "level": {"class": "SparsityLevelParameterPruner",
                                      "levels": {"rnn.weight_hh_l0[gate=i]": 0.5}},
                            "mag": {"class": "MagnitudeParameterPruner",
                                    "thresholds": {"rnn.weight_hh_l0[gate=g]": 0.1}}},
                "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 3},
                             {"pruner": {"instance_name": "level"}, "epochs": [1]},
                             {"pruner": {"instance_name": "mag"}, "epochs": [2]}]}
    scheduler = compress.dict_config(model, optimizer, schedule)
    data = torch.randint(0, 40, (2, 5, 4), generator=torch.Generator().manual_seed(1))
    run_epochs(model, scheduler, optimizer, [(d, d.view(-1)) for d in data], 3)
    w, mask = model.rnn.weight_hh_l0, scheduler.masks["rnn.weight_hh_l0"]
    assert len(scheduler.masks) == 1 and mask.shape == w.shape
    assert gate_sparsity(w, 1) == 0.75              # AGP's final level on the forget gate
    assert gate_sparsity(w, 0) == 0.5               # the level pruner's input gate, kept by the later epochs
    assert (w[2 * H:3 * H].abs() > 0.1).all() or (~mask[2 * H:3 * H]).any()
    assert (w[2 * H:3 * H][~mask[2 * H:3 * H]] == 0).all()
    assert mask[3 * H:].all()                       # nobody pruned the output gate
    assert torch.equal(~mask, w == 0)


def test_gate_selectors_in_a_tied_lm_under_the_scheduler_keep_other_rows_masks():
    model = lm()
    store = MaskStore(model)
    store.set_mask("rnn.weight_hh_l0", torch.rand(4 * H, H, generator=torch.Generator().manual_seed(0)) > 0.5)
    before = store["rnn.weight_hh_l0"].clone()
    store.set_mask("rnn.weight_hh_l0[gate=g]", torch.zeros(H, H, dtype=torch.bool))
    after = store["rnn.weight_hh_l0"]
    assert not after[2 * H:3 * H].any()
    assert torch.equal(torch.cat([after[:2 * H], after[3 * H:]]), torch.cat([before[:2 * H], before[3 * H:]]))
    assert torch.equal(store.get("rnn.weight_hh_l0[gate=g]"), after[2 * H:3 * H])


SCHEDULE = {"pruners": {"agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.2, "final_sparsity": 0.8,
                                "weights": ["rnn.weight_hh_*[gate=f]", "rnn.weight_ih_l0[gate=i,o]"]},
                        "level": {"class": "SparsityLevelParameterPruner", "levels": {"rnn.weight_hh_*[gate=g]": 0.3}}},
            "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 4},
                         {"pruner": {"instance_name": "level"}, "epochs": [1, 3]}]}


def make():
    model = lm()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    return model, optimizer, compress.dict_config(model, optimizer, SCHEDULE)


def test_resume_with_gate_selectors_is_bit_identical(tmp_path):
    data = [(d, d.view(-1)) for d in torch.randint(0, 40, (2, 5, 4), generator=torch.Generator().manual_seed(3))]
    model, optimizer, scheduler = make()
    run_epochs(model, scheduler, optimizer, data, 5)
    straight = {k: v.clone() for k, v in model.state_dict().items()}
    masks = {k: v.clone() for k, v in scheduler.masks.items()}

    model, optimizer, scheduler = make()
    run_epochs(model, scheduler, optimizer, data, 2)
    compress.save_checkpoint(tmp_path / "c.pt", model, optimizer, scheduler, epoch=1)
    model, optimizer, scheduler = make()
    extra = compress.load_checkpoint(tmp_path / "c.pt", model, optimizer, scheduler)
    run_epochs(model, scheduler, optimizer, data, 5 - extra["epoch"] - 1, start=extra["epoch"] + 1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, straight[k]), k
    assert masks.keys() == dict(scheduler.masks.items()).keys()
    assert all(torch.equal(m, scheduler.masks[k]) for k, m in masks.items())
    n = H * H  # Distiller's level: int(level * numel) of a gate's weights pruned
    assert gate_sparsity(model.rnn.weight_hh_l1, 1) == int(0.8 * n) / n
    assert gate_sparsity(model.rnn.weight_hh_l1, 2) == int(0.3 * n) / n


@pytest.mark.parametrize("levels, message", [
    ({"rnn.weight_hh_l0[gate=x]": 0.5}, r"no gate 'x'; its gates are i, f, g, o"),
    ({"rnn.weight_hh_l0[gate=]": 0.5}, r"needs at least one gate; its gates are i, f, g, o"),
    ({"encoder.weight[gate=f]": 0.5}, r"encoder.weight is not a gated tensor.*LSTM \(gates i, f, g, o\)"),
    ({"rnn.weight_hh_l0[gate=i,f]": 0.5, "rnn.weight_hh_l0[gate=f]": 0.2}, r"both select gate 'f'"),
])
def test_bad_gate_selectors_are_schedule_errors_naming_the_valid_gates(levels, message):
    model = lm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(compress.ScheduleError, match=message) as info:
        compress.dict_config(model, None, level_schedule(levels))
    assert "pruners.p.levels" in str(info.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_gru_gate_names_are_offered_for_a_gru():
    with pytest.raises(compress.ScheduleError, match=r"its gates are r, z, n"):
        compress.dict_config(nn.GRU(3, 4), None, level_schedule({"weight_hh_l0[gate=f]": 0.5}))


def test_components_that_take_whole_tensors_refuse_gate_selectors():
    schedule = {"pruners": {"dst": {"class": "DynamicSparsityPruner", "density": 0.5,
                                    "weights": ["rnn.weight_hh_l0[gate=f]"]}},
                "policies": [{"pruner": {"instance_name": "dst"}, "starting_epoch": 0, "ending_epoch": 2}]}
    with pytest.raises(compress.ScheduleError, match=r"pruners.dst.weights\[0\].*not accepted here"):
        compress.dict_config(lm(), None, schedule)


def test_sparsity_table_breaks_a_weight_down_by_gate():
    model = lm()
    compress.dict_config(model, None, level_schedule({"rnn.weight_hh_l0[gate=o]": 0.5})).on_epoch_begin(0)
    table = compress.sparsity_table(model, tablefmt="plain", by_gate=True)
    lines = {line.split()[0]: line.split() for line in table.splitlines()[1:]}
    gate_o = lines["rnn.weight_hh_l0[gate=o]"]
    assert gate_o[1:4] == ["12", "x", "12"] and gate_o[6] == "50.00"
    assert lines["rnn.weight_hh_l0[gate=f]"][6] == "0.00"
    assert "encoder.weight[gate=i]" not in lines
    assert table.splitlines()[-1] == compress.sparsity_table(model, tablefmt="plain").splitlines()[-1]
    with pytest.raises(TypeError, match="needs the model"):
        compress.sparsity_table(model.state_dict(), by_gate=True)

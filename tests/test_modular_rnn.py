"""Modular LSTM/GRU: equivalence with nn.LSTM/nn.GRU, Distiller's names, conversion both ways."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from compress.modules import (
    ModularGRU,
    ModularLSTM,
    ModularLSTMCell,
    convert_from_modular,
    convert_to_modular,
    converted_module_names,
)

TOL = dict(rtol=1e-5, atol=1e-6)


def _states(h):
    return h if isinstance(h, tuple) else (h,)


def _assert_same(ref, ours):
    (y1, h1), (y2, h2) = ref, ours
    torch.testing.assert_close(y2, y1, **TOL)
    for a, b in zip(_states(h1), _states(h2)):
        torch.testing.assert_close(b, a, **TOL)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_converted_layer_computes_what_the_pytorch_layer_computes(cls, layers, bidirectional):
    torch.manual_seed(0)
    ref = cls(6, 5, layers, bidirectional=bidirectional).eval()
    ours = convert_to_modular(copy.deepcopy(ref)).eval()
    x = torch.randn(7, 3, 6)
    h0 = torch.randn(layers * (2 if bidirectional else 1), 3, 5)
    hx = (h0, torch.randn_like(h0)) if cls is nn.LSTM else h0
    _assert_same(ref(x), ours(x))
    _assert_same(ref(x, hx), ours(x, hx))


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_batch_first_and_unbatched_inputs_match(cls):
    torch.manual_seed(1)
    ref = cls(4, 3, 2, batch_first=True).eval()
    ours = convert_to_modular(copy.deepcopy(ref))
    batched, unbatched = torch.randn(2, 5, 4), torch.randn(5, 4)
    _assert_same(ref(batched), ours(batched))
    _assert_same(ref(unbatched), ours(unbatched))


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_variable_length_sequences_match(cls, bidirectional):
    torch.manual_seed(2)
    ref = cls(4, 3, 2, bidirectional=bidirectional).eval()
    ours = convert_to_modular(copy.deepcopy(ref))
    x = torch.randn(6, 4, 4)
    packed = pack_padded_sequence(x, torch.tensor([6, 2, 4, 1]), enforce_sorted=False)
    (y1, h1), (y2, h2) = ref(packed), ours(packed)
    torch.testing.assert_close(y2.data, y1.data, **TOL)
    assert torch.equal(y2.batch_sizes, y1.batch_sizes) and torch.equal(y2.sorted_indices, y1.sorted_indices)
    for a, b in zip(_states(h1), _states(h2)):
        torch.testing.assert_close(b, a, **TOL)


def test_lstm_cell_matches_nn_lstmcell():
    torch.manual_seed(3)
    ref = nn.LSTMCell(4, 3)
    ours = convert_to_modular(copy.deepcopy(ref))
    assert isinstance(ours, ModularLSTMCell)
    x, h, c = torch.randn(2, 4), torch.randn(2, 3), torch.randn(2, 3)
    for a, b in zip(ref(x, (h, c)), ours(x, (h, c))):
        torch.testing.assert_close(b, a, **TOL)


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_round_trip_back_to_pytorch_is_exact(cls):
    torch.manual_seed(4)
    ref = cls(4, 3, 2, bidirectional=True).eval()
    back = convert_from_modular(convert_to_modular(copy.deepcopy(ref)))
    assert type(back) is cls
    x = torch.randn(5, 2, 4)
    assert torch.equal(back(x)[0], ref(x)[0])


def test_lstm_submodules_carry_distillers_names_in_gate_order_ifgo():
    lstm = ModularLSTM(4, 3, 2, bidirectional=True)
    names = {n for n, _ in lstm.named_modules()}
    for prefix in ("cells.0", "cells.1", "cells_reverse.1"):
        for sub in ("fc_gate_x", "fc_gate_h", "eltwiseadd_gate", "act_i", "act_f", "act_g", "act_o", "act_h",
                    "eltwisemult_cell_forget", "eltwisemult_cell_input", "eltwisemult_hidden", "eltwiseadd_cell"):
            assert f"{prefix}.{sub}" in names
    assert "dropout" in names
    # i, f, g, o: a huge bias on the g block only makes tanh(g) = 1, so c' = sigmoid(i_pre) * 1
    cell = ModularLSTMCell(1, 1)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        cell.fc_gate_x.bias.copy_(torch.tensor([0.0, -50.0, 50.0, 0.0]))
    h, c = cell(torch.zeros(1, 1), (torch.zeros(1, 1), torch.ones(1, 1)))
    assert c.item() == pytest.approx(0.5)        # sigmoid(0)*tanh(50) + sigmoid(-50)*1
    assert h.item() == pytest.approx(0.5 * torch.tanh(torch.tensor(0.5)).item())


def test_conversion_shares_parameters_with_the_original():
    lstm = nn.LSTM(4, 3)
    modular = convert_to_modular(lstm)
    assert modular.cells[0].fc_gate_x.weight is lstm.weight_ih_l0
    assert modular.cells[0].fc_gate_h.bias is lstm.bias_hh_l0


def test_converter_swaps_every_recurrent_layer_of_a_model_and_a_shared_one_once():
    shared = nn.GRU(3, 3)
    model = nn.ModuleDict({"a": nn.LSTM(3, 3), "b": nn.Sequential(nn.Linear(3, 3), shared), "c": shared})
    convert_to_modular(model)
    assert isinstance(model["a"], ModularLSTM) and isinstance(model["b"][1], ModularGRU)
    assert model["c"] is model["b"][1]
    assert isinstance(model["b"][0], nn.Linear)


def test_converted_module_names_predicts_names_without_converting(tiny_lm):
    predicted = converted_module_names(tiny_lm)
    assert isinstance(tiny_lm.rnn, nn.LSTM)  # untouched
    actual = [n for n, _ in convert_to_modular(copy.deepcopy(tiny_lm)).named_modules()]
    assert predicted == actual


def test_input_projection_runs_once_per_layer_not_per_step():
    lstm = ModularLSTM(4, 3, 2)
    calls = {"x": 0, "h": 0}
    lstm.cells[0].fc_gate_x.register_forward_hook(lambda *a: calls.__setitem__("x", calls["x"] + 1))
    lstm.cells[0].fc_gate_h.register_forward_hook(lambda *a: calls.__setitem__("h", calls["h"] + 1))
    lstm(torch.randn(9, 2, 4))
    assert calls == {"x": 1, "h": 9}


def test_word_lm_runs_with_a_modular_lstm(tiny_lm):
    x = torch.randint(0, 50, (5, 2))
    tiny_lm.eval()
    ref = tiny_lm(x, tiny_lm.init_hidden(2))[0]
    convert_to_modular(tiny_lm)
    torch.testing.assert_close(tiny_lm(x, tiny_lm.init_hidden(2))[0], ref, **TOL)


def test_projected_lstm_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="proj_size"):
        convert_to_modular(nn.LSTM(4, 3, proj_size=2))

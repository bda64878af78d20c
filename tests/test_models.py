"""RNNModel: Distiller-compatible parameter names, weight tying, initialisation and shapes."""
import warnings

import pytest
import torch

from compress_models import RNNModel

NTOKEN, NINP, NHID, NLAYERS, SEQ, BATCH = 50, 16, 16, 2, 7, 3
RNN_TYPES = ["LSTM", "GRU", "RNN_TANH", "RNN_RELU"]


def test_parameter_names_match_distiller_schedules():
    names = [n for n, _ in RNNModel("LSTM", NTOKEN, NINP, NHID, NLAYERS).named_parameters()]
    assert names == [
        "encoder.weight",
        *(f"rnn.{kind}_l{layer}" for layer in range(NLAYERS) for kind in
          ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
        "decoder.weight",
        "decoder.bias",
    ]


def test_tied_decoder_weight_is_the_encoder_parameter_and_listed_once():
    model = RNNModel("LSTM", NTOKEN, NHID, NHID, NLAYERS, tie_weights=True)
    assert model.decoder.weight is model.encoder.weight
    names = [n for n, _ in model.named_parameters()]
    assert "encoder.weight" in names and "decoder.weight" not in names
    assert len(list(model.parameters())) == len(names)


def test_tying_with_different_sizes_names_both():
    with pytest.raises(ValueError, match=r"nhid=32 and ninp=16"):
        RNNModel("LSTM", NTOKEN, 16, 32, NLAYERS, tie_weights=True)


def test_unknown_rnn_type_is_rejected():
    with pytest.raises(ValueError, match="LSTM, GRU, RNN_TANH, RNN_RELU"):
        RNNModel("lstm", NTOKEN, NINP, NHID, NLAYERS)


def test_init_is_uniform_0_1_with_zero_decoder_bias():
    torch.manual_seed(0)
    model = RNNModel("LSTM", NTOKEN, NINP, NHID, NLAYERS)
    for weight in (model.encoder.weight, model.decoder.weight):
        assert weight.abs().max() <= 0.1
        assert weight.abs().max() > 0.09  # spread over the whole interval, not a narrower default
    assert torch.equal(model.decoder.bias, torch.zeros(NTOKEN))


@pytest.mark.parametrize("rnn_type", RNN_TYPES)
def test_forward_gives_logits_per_position_and_state_of_init_hidden_shape(rnn_type):
    model = RNNModel(rnn_type, NTOKEN, NINP, NHID, NLAYERS).eval()
    hidden = model.init_hidden(BATCH)
    logits, new_hidden = model(torch.randint(NTOKEN, (SEQ, BATCH)), hidden)
    assert logits.shape == (SEQ, BATCH, NTOKEN)
    states = new_hidden if rnn_type == "LSTM" else (new_hidden,)
    assert len(states) == (2 if rnn_type == "LSTM" else 1)
    for state in states:
        assert state.shape == (NLAYERS, BATCH, NHID)


@pytest.mark.parametrize("rnn_type", ["GRU", "RNN_TANH", "RNN_RELU"])
def test_non_lstm_hidden_is_a_single_zero_tensor(rnn_type):
    hidden = RNNModel(rnn_type, NTOKEN, NINP, NHID, NLAYERS).init_hidden(BATCH)
    assert isinstance(hidden, torch.Tensor)
    assert torch.equal(hidden, torch.zeros(NLAYERS, BATCH, NHID))


@pytest.mark.parametrize("rnn_type, nonlinearity", [("RNN_TANH", "tanh"), ("RNN_RELU", "relu")])
def test_plain_rnn_uses_the_named_nonlinearity(rnn_type, nonlinearity):
    assert RNNModel(rnn_type, NTOKEN, NINP, NHID, NLAYERS).rnn.nonlinearity == nonlinearity


def test_lstm_hidden_states_are_distinct_tensors():
    h, c = RNNModel("LSTM", NTOKEN, NINP, NHID, NLAYERS).init_hidden(BATCH)
    assert h.data_ptr() != c.data_ptr()


def test_single_layer_model_does_not_warn_about_inter_layer_dropout():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RNNModel("LSTM", NTOKEN, NINP, NHID, 1, dropout=0.5)

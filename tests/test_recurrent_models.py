"""RHN, ON-LSTM and AWD-LSTM reference models, their dropouts, and masking them by name."""
import pytest
import torch
import torch.nn.functional as F

import compress
from compress_models import (
    AWDLSTMModel,
    ONLSTMModel,
    RHNModel,
    ar_tar_loss,
    embedding_dropout,
    locked_dropout,
)
from compress_models.onlstm import ONLSTMCell, cumax
from compress_models.rhn import RHNLayer


# -- RHN ------------------------------------------------------------------------------------------------------
def test_rhn_coupled_micro_step_carries_with_one_minus_transform_gate():
    torch.manual_seed(0)
    layer = RHNLayer(3, 4, depth=1, couple=True)
    x, s = torch.randn(1, 2, 3), torch.randn(2, 4)
    out, new = layer(x, s)
    pre = layer.W(x[0]) + layer.R[0](s)
    h, t = torch.tanh(pre[:, :4]), torch.sigmoid(pre[:, 4:])
    torch.testing.assert_close(new, h * t + s * (1 - t))
    torch.testing.assert_close(out[0], new)


def test_rhn_only_the_first_micro_step_sees_the_input():
    torch.manual_seed(0)
    layer = RHNLayer(3, 4, depth=2, couple=False)
    x, s = torch.randn(1, 2, 3), torch.randn(2, 4)
    _, new = layer(x, s)
    pre = layer.W(x[0]) + layer.R[0](s)
    h, t, c = pre.chunk(3, dim=-1)
    s1 = torch.tanh(h) * torch.sigmoid(t) + s * torch.sigmoid(c)
    h, t, c = layer.R[1](s1).chunk(3, dim=-1)
    torch.testing.assert_close(new, torch.tanh(h) * torch.sigmoid(t) + s1 * torch.sigmoid(c))


def test_rhn_model_ties_decoder_to_embedding_and_has_one_recurrent_transform_per_depth():
    model = RHNModel(50, 8, 12, nlayers=1, depth=3, tie_weights=True, couple=True)
    assert model.decoder.weight is model.encoder.weight
    names = [n for n, _ in model.named_parameters()]
    assert names == ["encoder.weight", "rnns.0.W.weight"] + [f"rnns.0.R.{d}.{k}" for d in range(3)
                                                             for k in ("weight", "bias")] + ["decoder.bias"]
    assert model.rnns[0].R[0].weight.shape == (16, 8)   # 2 gates of the tied width 8


# -- ON-LSTM --------------------------------------------------------------------------------------------------
def test_cumax_rises_monotonically_to_one():
    y = cumax(torch.randn(3, 7))
    assert (y[:, 1:] >= y[:, :-1]).all()
    torch.testing.assert_close(y[:, -1], torch.ones(3))


def test_onlstm_with_a_single_chunk_never_writes_its_cell():
    # one chunk: master forget = cumax(one logit) = 1, master input = 0, so f = 1 and i = 0
    torch.manual_seed(0)
    cell = ONLSTMCell(3, 4, chunk_size=4)
    c0 = torch.randn(2, 1, 4)
    out, (h, c) = cell(torch.randn(5, 2, 3), (torch.randn(2, 4), c0))
    torch.testing.assert_close(c, c0)
    assert out.shape == (5, 2, 4)


def test_onlstm_dropconnect_zeroes_weights_in_training_and_scales_in_evaluation():
    torch.manual_seed(0)
    cell = ONLSTMCell(3, 8, chunk_size=4, wdrop=0.5)
    dropped = cell.recurrent_weight()
    assert (dropped == 0).float().mean() == pytest.approx(0.5, abs=0.15)
    assert torch.equal(dropped[dropped != 0], cell.hh.weight[dropped != 0])
    cell.eval()
    torch.testing.assert_close(cell.recurrent_weight(), cell.hh.weight * 0.5)


def test_onlstm_rejects_a_chunk_size_that_does_not_divide_the_layer():
    with pytest.raises(ValueError, match="multiple of chunk_size"):
        ONLSTMModel(50, 16, 16, chunk_size=10)


# -- AWD-LSTM -------------------------------------------------------------------------------------------------
def test_awd_lstm_trains_the_raw_recurrent_weight_and_schedules_find_it_by_the_lstm_name():
    model = AWDLSTMModel(50, 8, 12, nlayers=3)
    names = [n for n, _ in model.named_parameters()]
    assert "rnns.0.weight_hh_l0_raw" in names and "rnns.0.weight_hh_l0" not in names
    assert compress.sparsity.ParameterIndex(model).resolve("rnns.*.weight_hh_l0") == [
        "rnns.0.weight_hh_l0_raw", "rnns.1.weight_hh_l0_raw", "rnns.2.weight_hh_l0_raw"]


def test_awd_lstm_layer_in_evaluation_is_nn_lstm_with_the_raw_weights():
    torch.manual_seed(0)
    model = AWDLSTMModel(50, 8, 12, nlayers=1, tie_weights=False).eval()
    layer = model.rnns[0]
    reference = torch.nn.LSTM(8, 12)
    with torch.no_grad():
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(reference, name).copy_(getattr(layer, name))
        reference.weight_hh_l0.copy_(layer.weight_hh_l0_raw)
    x, state = torch.randn(4, 2, 8), (torch.randn(1, 2, 12), torch.randn(1, 2, 12))
    torch.testing.assert_close(layer(x, state)[0], reference(x, state)[0])


def test_masking_the_raw_weight_makes_every_weight_dropped_copy_sparse():
    torch.manual_seed(0)
    model = AWDLSTMModel(50, 8, 12, nlayers=2, wdrop=0.5)
    scheduler = compress.dict_config(model, None, {
        "pruners": {"p": {"class": "SelfishRNNPruner", "density": 0.3, "weights": ["rnns.*.weight_hh_l0"]}},
        "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 1}]})
    scheduler.on_epoch_begin(0)
    raw = model.rnns[0].weight_hh_l0_raw
    mask = scheduler.masks["rnns.0.weight_hh_l0_raw"]
    assert int(mask.sum()) == round(0.3 * raw.numel()) and not raw[~mask].any()
    dropped = F.dropout(raw, 0.5, True)
    assert not dropped[~mask].any()


# -- dropouts and AR/TAR ----------------------------------------------------------------------------------------
def test_locked_dropout_uses_one_mask_for_every_time_step():
    x = torch.ones(6, 3, 5)
    y = locked_dropout(x, 0.5, training=True)
    assert torch.equal(y, y[:1].expand_as(y))
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(locked_dropout(x, 0.5, training=False), x)


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(1)
    emb = torch.nn.Embedding(20, 4)
    words = torch.arange(20).repeat(2, 1)
    out = embedding_dropout(emb, words, 0.5, training=True)
    dropped = (out == 0).all(-1)
    assert torch.equal(dropped[0], dropped[1]) and dropped.any() and not dropped.all()
    torch.testing.assert_close(out[0][~dropped[0]], 2 * emb.weight[~dropped[0]])


def test_ar_tar_loss_by_hand():
    raw = torch.tensor([[[1.0]], [[3.0]], [[2.0]]])        # (T=3, batch 1, 1 feature)
    dropped = torch.tensor([[[2.0]], [[0.0]], [[4.0]]])
    # AR: 2 * mean(4, 0, 16) = 40/3; TAR: 1 * mean((3-1)^2, (2-3)^2) = 2.5
    assert float(ar_tar_loss(raw, dropped, 2.0, 1.0)) == pytest.approx(40 / 3 + 2.5)


NO_DROPOUT = dict(dropout=0.0, dropouth=0.0, dropouti=0.0, dropoute=0.0)


@pytest.mark.parametrize("make", [lambda: RHNModel(30, 8, 8, nlayers=1, depth=2, **NO_DROPOUT),
                                  lambda: ONLSTMModel(30, 8, 8, nlayers=2, chunk_size=4, wdrop=0.0, **NO_DROPOUT),
                                  lambda: AWDLSTMModel(30, 8, 8, nlayers=2, wdrop=0.0, **NO_DROPOUT)],
                         ids=["RHN", "ONLSTM", "AWD"])
def test_models_learn_and_return_outputs_for_ar_tar(make):
    torch.manual_seed(0)
    model = make()
    optimizer = torch.optim.SGD(model.parameters(), lr=3.0)
    data = torch.randint(0, 30, (6, 4))
    target = torch.roll(data, 1, 0)
    losses = []
    for _ in range(15):
        logits, _, raw, dropped = model(data, model.init_hidden(4), return_outputs=True)
        loss = F.cross_entropy(logits.view(-1, 30), target.view(-1))
        losses.append(loss.item())
        optimizer.zero_grad()
        (loss + ar_tar_loss(raw, dropped, 2.0, 1.0)).backward()
        optimizer.step()
    assert raw.shape == dropped.shape == (6, 4, 8)
    assert losses[-1] < losses[0] - 0.25

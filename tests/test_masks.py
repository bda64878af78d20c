"""Pruned weights stay exactly zero after every optimizer step; masks are 1 byte per weight."""
import math

import pytest
import torch
import torch.nn.functional as F
from loops import run_epochs
from torch import nn
from torch.nn.utils import parametrize

import compress

PRUNE_HALF = {
    "pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": {"rnn.weight_*": 0.5, "encoder.weight": 0.5}}},
    "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}],
}

OPTIMIZERS = {
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-1),
}


def train(model, scheduler, optimizer, epochs=3, steps=4, clip=0.25, check=None):
    torch.manual_seed(1)
    data = torch.randint(0, 50, (6, 3))
    run_epochs(model, scheduler, optimizer, [(data, data.view(-1))] * steps, epochs, clip=clip,
               after_step=check and (lambda epoch, i: check()))


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero_after_every_step(tiny_lm, opt):
    optimizer = OPTIMIZERS[opt](tiny_lm.parameters())
    scheduler = compress.dict_config(tiny_lm, optimizer, PRUNE_HALF)

    def check():
        for name, mask in scheduler.masks.items():
            param = scheduler.masks.parameter(name)
            assert torch.equal(param[~mask], torch.zeros_like(param[~mask])), name
            for key, value in optimizer.state[param].items():
                if torch.is_tensor(value) and value.shape == mask.shape:
                    assert (value[~mask] == 0).all(), (name, key)

    train(tiny_lm, scheduler, optimizer, check=check)
    assert len(scheduler.masks) == 5


def test_fill_kernel_zeroes_exactly_the_pruned_positions():
    from compress.sparsity.masks import _fill_pruned_

    torch.manual_seed(0)
    weights = torch.randn(1000)
    weights[:3] = float("inf")  # mul_ would leave nan at a pruned inf; the fill leaves 0
    keep = torch.rand(1000) > 0.7
    keep[0], keep[1] = False, True
    filled = weights.clone()
    _fill_pruned_(filled, keep)
    assert torch.equal(filled[~keep], torch.zeros(int((~keep).sum())))
    assert torch.equal(filled[keep], weights[keep])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the masked_fill_ path is taken on CUDA tensors only")
@pytest.mark.parametrize("fill_from", [0, math.inf])
def test_pruned_weights_stay_zero_on_cuda_with_either_kernel(tiny_lm, fill_from):
    model = tiny_lm.cuda()
    optimizer = OPTIMIZERS["sgd_momentum_wd"](model.parameters())
    scheduler = compress.dict_config(model, optimizer, PRUNE_HALF)
    scheduler.masks.fill_from_numel = fill_from
    scheduler.on_epoch_begin(0)
    data = torch.randint(0, 50, (6, 3), device="cuda")
    for i in range(3):
        out, _ = model(data, model.init_hidden(3))
        optimizer.zero_grad()
        F.cross_entropy(out.view(-1, 50), data.view(-1)).backward()
        optimizer.step()
        scheduler.on_minibatch_end(0, i, 3, optimizer)
        for name, mask in scheduler.masks.items():
            param = scheduler.masks.parameter(name)
            assert (param[~mask] == 0).all(), name
            assert (optimizer.state[param]["momentum_buffer"][~mask] == 0).all(), name


def test_masking_after_steps_works_without_the_optimizer_known(tiny_lm):
    optimizer = OPTIMIZERS["sgd_momentum_wd"](tiny_lm.parameters())
    scheduler = compress.dict_config(tiny_lm, None, PRUNE_HALF)
    torch.manual_seed(0)
    data = torch.randint(0, 50, (6, 3))
    scheduler.on_epoch_begin(0)
    for epoch in range(2):
        for i in range(3):
            out, _ = tiny_lm(data, tiny_lm.init_hidden(3))
            optimizer.zero_grad()
            F.cross_entropy(out.view(-1, 50), data.view(-1)).backward()
            optimizer.step()
            scheduler.on_minibatch_end(epoch, i, 3)  # a Distiller loop passes no optimizer
            for name, mask in scheduler.masks.items():
                assert (scheduler.masks.parameter(name)[~mask] == 0).all()


def test_masks_are_one_byte_per_weight(tiny_lm):
    scheduler = compress.dict_config(tiny_lm, None, PRUNE_HALF)
    scheduler.on_epoch_begin(0)
    for _, mask in scheduler.masks.items():
        assert mask.dtype == torch.bool and mask.element_size() == 1


def test_masking_is_in_place_so_the_lstm_flat_buffer_is_kept(tiny_lm):
    ptrs = [p.data_ptr() for p in tiny_lm.rnn._flat_weights]
    optimizer = OPTIMIZERS["sgd_momentum_wd"](tiny_lm.parameters())
    scheduler = compress.dict_config(tiny_lm, optimizer, PRUNE_HALF)
    train(tiny_lm, scheduler, optimizer, epochs=1, steps=2)
    assert [p.data_ptr() for p in tiny_lm.rnn._flat_weights] == ptrs
    assert all(a is b for a, b in zip(tiny_lm.rnn._flat_weights, [getattr(tiny_lm.rnn, n) for n in
                                                                  tiny_lm.rnn._flat_weights_names]))


def test_regrown_positions_get_fresh_optimizer_state(tiny_lm):
    optimizer = torch.optim.Adam(tiny_lm.parameters(), lr=1e-2)
    store = compress.sparsity.MaskStore(tiny_lm, optimizer)
    name = "rnn.weight_hh_l0"
    param = store.parameter(name)
    out, _ = tiny_lm(torch.randint(0, 50, (4, 2)), tiny_lm.init_hidden(2))
    out.sum().backward()
    optimizer.step()
    first = torch.zeros_like(param, dtype=torch.bool)
    first[:, :8] = True
    store.set_mask(name, first)
    state = optimizer.state[param]
    assert (state["exp_avg"][:, 8:] == 0).all() and (state["exp_avg"][:, :8] != 0).any()
    state["exp_avg"].fill_(1.0)  # pretend momentum accumulated everywhere since
    second = torch.zeros_like(first)
    second[:, 4:12] = True   # 4..7 kept, 8..11 regrown, 0..3 pruned
    store.set_mask(name, second)
    assert (state["exp_avg"][:, 8:12] == 0).all()
    assert (state["exp_avg"][:, 4:8] == 1).all()
    assert (state["exp_avg"][:, :4] == 0).all()


class WeightDropLSTM(nn.Module):
    """AWD-LSTM-style weight drop: the trained parameter is weight_hh_l0_raw."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 4)
        raw = self.lstm.weight_hh_l0
        del self.lstm._parameters["weight_hh_l0"]
        self.lstm.weight_hh_l0_raw = nn.Parameter(raw.detach().clone())

    def forward(self, x):
        self.lstm.weight_hh_l0 = F.dropout(self.lstm.weight_hh_l0_raw, 0.5, self.training)
        self.lstm._flat_weights = [getattr(self.lstm, n) for n in self.lstm._flat_weights_names]
        return self.lstm(x)[0]


def test_weight_drop_is_pruned_on_the_raw_parameter():
    model = WeightDropLSTM()
    scheduler = compress.dict_config(model, None, {
        "pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": {"lstm.weight_hh_l0": 0.5}}},
        "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]})
    scheduler.on_epoch_begin(0)
    assert list(scheduler.masks.state_dict()["masks"]) == ["lstm.weight_hh_l0_raw"]
    assert (model.lstm.weight_hh_l0_raw == 0).sum().item() == 32


def test_parametrized_weight_is_pruned_on_the_original():
    class Scale(nn.Module):
        def forward(self, w):
            return 2 * w

    model = nn.Sequential(nn.Linear(8, 8))
    parametrize.register_parametrization(model[0], "weight", Scale())
    scheduler = compress.dict_config(model, None, {
        "pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": {"0.weight": 0.25}}},
        "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]})
    scheduler.on_epoch_begin(0)
    assert list(scheduler.masks.state_dict()["masks"]) == ["0.parametrizations.weight.original"]
    assert (model[0].weight == 0).sum().item() == 16


def test_forward_only_masks_keep_dense_weights_learning(tiny_lm):
    optimizer = torch.optim.SGD(tiny_lm.parameters(), lr=0.5)
    scheduler = compress.dict_config(tiny_lm, optimizer, {
        "pruners": {"p": {"class": "SparsityLevelParameterPruner", "levels": {"rnn.weight_hh_l0": 0.5}}},
        "policies": [{"pruner": {"instance_name": "p", "args": {"mask_on_forward_only": True,
                                                                  "use_double_copies": True}},
                      "starting_epoch": 0, "ending_epoch": 2}]})
    seen = []

    def check():
        seen.append((tiny_lm.rnn.weight_hh_l0 == 0).sum().item())

    train(tiny_lm, scheduler, optimizer, epochs=2, steps=2, check=check)
    assert all(n < 512 for n in seen)   # the dense copy was restored and updated

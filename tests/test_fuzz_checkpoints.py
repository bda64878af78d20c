"""Property-based tests of the files the library reads back: checkpoints of every policy family, the INT8 export
and statistics files, damaged byte by byte or field by field.

The properties: only a CheckpointError escapes, naming the file; a failed load changes nothing (model, optimizer,
scheduler, RNG); a load that succeeds can train on. ``COMPRESS_FUZZ_EXAMPLES=N`` runs N examples per property.
"""
from __future__ import annotations

import copy
import io
import os
import tempfile

import pytest
import torch
from fuzzing import (
    NTOKEN,
    _paths,
    assert_unchanged,
    data,
    evaluator,
    junk,
    make_model,
    make_optimizer,
    outcome,
    profile,
    refused_at,
    snapshot,
    train,
)
from hypothesis import given
from hypothesis import strategies as st

import compress
from compress import CheckpointError
from compress.export import load_sparse, save_sparse
from compress.export.sparse import _checksum as sparse_checksum
from compress.quantization import export_model, load_quantized, load_stats, save_quantized, save_stats
from compress.structured import thinned_skeleton

FOLDER = tempfile.mkdtemp(prefix="compress-fuzz-ckpt-")

LR = {"step": {"class": "StepLR", "step_size": 1, "gamma": 0.5},
      "plateau": {"class": "ReduceLROnPlateau", "patience": 0},
      "milestones": {"class": "MultiStepLR", "milestones": [1, 3]}}
FAMILIES = {
    "agp": ({"p": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.1, "final_sparsity": 0.6,
                   "weights": ["rnn.weight_*"]}}, {"mask_gradients": True}, "momentum", "step"),
    "sensitivity": ({"p": {"class": "SensitivityPruner", "sensitivities": {"rnn.weight_*": 0.5}}}, None, "adam",
                    "plateau"),
    "splicing": ({"p": {"class": "SplicingPruner", "sensitivities": {"rnn.weight_hh_*": 0.3},
                        "low_thresh_mult": 0.9, "hi_thresh_mult": 1.1}},
                 {"mask_on_forward_only": True, "use_double_copies": True, "keep_mask": True}, "sgd", "milestones"),
    "baidu": ({"p": {"class": "BaiduRNNPruner", "q": 0.2, "ramp_epoch_offset": 1, "ramp_slope_mult": 2,
                     "weights": ["rnn.weight_ih_l0"]}}, None, "momentum", None),
    "selfish": ({"p": {"class": "SelfishRNNPruner", "density": 0.5}}, None, "sparse_ntasgd", None),
    "rigl": ({"p": {"class": "RigLPruner", "density": 0.5, "update_frequency": 2}}, None, "adam", "step"),
    "stagewise": ({"p": {"class": "StageWisePruner", "max_degradation": 1.0, "retrain_epochs": 2,
                         "grouping": "layer_wise", "weights": ["rnn.weight_hh_*"]}}, None, "sgd", None),
}


def schedule(family):
    pruners, args, _, lr = FAMILIES[family]
    policy = {"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 4}
    if args:
        policy["pruner"]["args"] = args
    out = {"pruners": pruners, "policies": [policy]}
    if lr:
        out["lr_schedulers"] = {"lr": LR[lr]}
        out["policies"].append({"lr_scheduler": {"instance_name": "lr"}, "starting_epoch": 0, "ending_epoch": 4})
    if family == "selfish":
        out["extensions"] = {"nt": {"class": "NTASGDSwitch", "nonmono": 1}}
        out["policies"].append({"extension": {"instance_name": "nt"}, "starting_epoch": 0, "ending_epoch": 4})
    return out


def build(family):
    model = make_model("lstm")
    optimizer = make_optimizer(FAMILIES[family][2], model)
    scheduler = compress.dict_config(model, optimizer, schedule(family), evaluate=evaluator(data()[1]))
    return model, optimizer, scheduler


_SAVED = {}


def saved(family) -> bytes:
    """The bytes of a checkpoint of ``family`` after one epoch of training (made once)."""
    if family not in _SAVED:
        model, optimizer, scheduler = build(family)
        train(model, optimizer, scheduler, range(1))
        path = os.path.join(FOLDER, f"{family}.pt")
        compress.save_checkpoint(path, model, optimizer, scheduler, epoch=0, args={"lr": 1.0})
        with open(path, "rb") as f:
            _SAVED[family] = f.read()
    return _SAVED[family]


def state_of(family):
    return torch.load(io.BytesIO(saved(family)), weights_only=True)


# -- damage -------------------------------------------------------------------------------------------------
@st.composite
def damaged_bytes(draw, raw: bytes) -> bytes:
    kind = draw(st.sampled_from(["empty", "truncate", "flip", "flip", "append", "garbage"]))
    if kind == "empty":
        return b""
    if kind == "truncate":
        return raw[:draw(st.integers(0, len(raw) - 1))]
    if kind == "append":
        return raw + draw(st.binary(min_size=1, max_size=64))
    if kind == "garbage":
        return draw(st.binary(max_size=256))
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= draw(st.integers(1, 255))
    return bytes(data)


tensors = st.one_of(st.just(torch.zeros(())), st.just(torch.ones(3)), st.just(torch.zeros(2, 2, dtype=torch.uint8)),
                    st.just(torch.full((4,), float("nan"))), st.just(torch.zeros(5, dtype=torch.complex64)))


@st.composite
def damaged_fields(draw, state):
    """``state`` with one to three fields deleted, replaced (by junk, a tensor of another shape or kind, a tensor
    cut or grown) or swapped for another family's same field."""
    state = copy.deepcopy(state)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(state) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = state
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        value = parent[last]
        op = draw(st.sampled_from(["delete", "junk", "tensor", "reshape", "other", "type"]))
        if op == "delete":
            del parent[last]
        elif op == "junk":
            parent[last] = draw(junk)
        elif op == "tensor":
            parent[last] = draw(tensors)
        elif op == "reshape" and torch.is_tensor(value) and value.numel() > 1:
            parent[last] = value.flatten()[: value.numel() - 1] if draw(st.booleans()) else value.reshape(-1)
        elif op == "other":
            other = state_of(draw(st.sampled_from(sorted(FAMILIES))))
            try:
                for part in path:
                    other = other[part]
                parent[last] = other
            except (KeyError, IndexError, TypeError):
                parent[last] = draw(junk)
        elif op == "type":
            parent[last] = [value] if not isinstance(value, list) else {"x": value}
    return state


def load_or_refuse_then_train(family: str, raw: bytes) -> None:
    path = os.path.join(FOLDER, "damaged.pt")
    with open(path, "wb") as f:
        f.write(raw)
    model, optimizer, scheduler = build(family)
    before = snapshot(model, optimizer, scheduler)
    try:
        extra = compress.load_checkpoint(path, model, optimizer, scheduler)
    except CheckpointError as err:
        assert path in str(err), str(err)
        assert_unchanged(before, snapshot(model, optimizer, scheduler))
        outcome(refused_at(err, path))
        return
    assert isinstance(extra, dict)
    train(model, optimizer, scheduler, range(1, 3))
    outcome("loaded and trained on")


@profile(ci_examples=40)
@given(family=st.sampled_from(sorted(FAMILIES)), data=st.data())
def test_a_checkpoint_with_damaged_bytes_is_refused_cleanly_or_trains_on(family, data):
    load_or_refuse_then_train(family, data.draw(damaged_bytes(saved(family))))


@profile(ci_examples=80)
@given(family=st.sampled_from(sorted(FAMILIES)), data=st.data())
def test_a_checkpoint_with_damaged_fields_is_refused_cleanly_or_trains_on(family, data):
    damaged = data.draw(damaged_fields(state_of(family)))
    buffer = io.BytesIO()
    torch.save(damaged, buffer)
    load_or_refuse_then_train(family, buffer.getvalue())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_resumes_from_its_own_undamaged_checkpoint(tmp_path, family):
    path = tmp_path / "c.pt"
    path.write_bytes(saved(family))
    model, optimizer, scheduler = build(family)
    assert compress.load_checkpoint(path, model, optimizer, scheduler) == {"epoch": 0, "args": {"lr": 1.0}}
    train(model, optimizer, scheduler, range(1, 3))


@pytest.mark.parametrize("where, value, message", [
    (("model",), None, "model"),
    (("optimizer", "state"), None, "optimizer.state"),
    (("scheduler",), [1, 2], "scheduler"),
    (("scheduler", "position"), {"epoch": "x"}, "position.epoch"),
    (("rng", "torch"), torch.zeros(3, dtype=torch.uint8), "rng.torch"),
    (("extra",), 5, "extra"),
    (("scheduler", "policies", 0, "state", "pruner"), [1], "policies[0].state.pruner"),
    (("scheduler", "masks"), [1], "scheduler.masks: "),
    (("scheduler", "policies"), [], "scheduler.policies: "),
])
def test_a_malformed_field_is_a_checkpoint_error_naming_it_and_changes_nothing(tmp_path, where, value, message):
    state = state_of("agp")
    parent = state
    for part in where[:-1]:
        parent = parent[part]
    if value is None:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    path = tmp_path / "c.pt"
    torch.save(state, path)
    model, optimizer, scheduler = build("agp")
    before = snapshot(model, optimizer, scheduler)
    with pytest.raises(CheckpointError) as info:
        compress.load_checkpoint(path, model, optimizer, scheduler)
    assert str(path) in str(info.value) and message in str(info.value), str(info.value)
    assert_unchanged(before, snapshot(model, optimizer, scheduler))


@pytest.mark.parametrize("field", ["value", "epoch", "sparsity", "rates", "weights", "masks"])
def test_a_search_snapshot_without_a_field_is_refused_naming_it(tmp_path, field):
    state = state_of("stagewise")
    del state["scheduler"]["policies"][0]["state"]["best"][field]  # read back when the best model is restored
    path = tmp_path / "c.pt"
    torch.save(state, path)
    model, optimizer, scheduler = build("stagewise")
    with pytest.raises(CheckpointError, match=rf"policies\[0\]\.state\.best\.{field} \(pruner p\): missing"):
        compress.load_checkpoint(path, model, optimizer, scheduler)


def test_an_adam_state_is_refused_by_sgd(tmp_path):
    state = state_of("agp")
    state["optimizer"] = state_of("sensitivity")["optimizer"]  # Adam's, same parameters
    path = tmp_path / "c.pt"
    torch.save(state, path)
    model, optimizer, scheduler = build("agp")
    with pytest.raises(CheckpointError, match=r"optimizer\.param_groups\[0\]: is another optimizer's: it has .*betas"):
        compress.load_checkpoint(path, model, optimizer, scheduler)


# -- the INT8 export, the sparse file and statistics files ----------------------------------------------------------
def pruned_lm() -> torch.nn.Module:
    """The tiny LM with most of each weight matrix zero, so the sparse file uses all three encodings."""
    model = make_model("lstm").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p[torch.rand(p.shape, generator=torch.Generator().manual_seed(len(name))) < 0.9] = 0
    return model


EXPORTS = {"int8": (save_quantized, load_quantized), "sparse": (save_sparse, load_sparse)}


def exported_bytes(kind: str = "int8") -> bytes:
    if kind not in _SAVED:
        path = os.path.join(FOLDER, f"{kind}.pt")
        EXPORTS[kind][0](export_model(pruned_lm(), "int8"), path)
        with open(path, "rb") as f:
            _SAVED[kind] = f.read()
    return _SAVED[kind]


def load_export_or_refuse_then_run(kind: str, raw: bytes) -> None:
    path = os.path.join(FOLDER, f"damaged-{kind}.pt")
    with open(path, "wb") as f:
        f.write(raw)
    model = make_model("lstm").eval()
    before = snapshot(model)
    try:
        loaded = EXPORTS[kind][1](path, model)
    except CheckpointError as err:
        assert path in str(err)
        assert_unchanged(before, snapshot(model))
        outcome(refused_at(err, path))
        return
    tokens = torch.randint(0, NTOKEN, (4, 2))
    with torch.no_grad():
        loaded(tokens, loaded.init_hidden(2))
    outcome("loaded and ran")


def damaged_export(data, kind: str) -> bytes:
    if data.draw(st.booleans()):
        return data.draw(damaged_bytes(exported_bytes(kind)))
    state = data.draw(damaged_fields(torch.load(io.BytesIO(exported_bytes(kind)), weights_only=True)))
    if kind == "sparse" and isinstance(state, dict) and isinstance(state.get("tensors"), dict) \
            and data.draw(st.booleans()):  # consistent damage, as a writer's bug would make: the checksum fits
        state["sha256"] = sparse_checksum(state["tensors"])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@profile(ci_examples=30)
@given(data=st.data())
def test_a_damaged_int8_export_is_refused_cleanly_or_runs(data):
    load_export_or_refuse_then_run("int8", damaged_export(data, "int8"))


@profile(ci_examples=30)
@given(data=st.data())
def test_a_damaged_sparse_export_is_refused_cleanly_or_runs(data):
    load_export_or_refuse_then_run("sparse", damaged_export(data, "sparse"))


@pytest.mark.parametrize("shape, message", [([10 ** 6, 10 ** 6], "more than the model's"),
                                            ([True, 30], "bad shape"), ([-1, 30], "bad shape")])
def test_a_sparse_file_with_a_consistent_but_impossible_shape_is_refused_before_allocating(tmp_path, shape, message):
    state = torch.load(io.BytesIO(exported_bytes("sparse")), weights_only=True)
    entry = next(e for e in state["tensors"].values() if e["encoding"] == "indices")
    entry["shape"] = shape  # 10**12 int8 elements would be a terabyte
    state["sha256"] = sparse_checksum(state["tensors"])
    path = tmp_path / "s.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=rf"s\.pt: damaged tensor .*{message}"):
        load_sparse(path, make_model("lstm"))


def thinned_bytes() -> bytes:
    """A checkpoint of the tiny LM with half of each recurrent layer's hidden units removed (compress.thin)."""
    if "thinned" not in _SAVED:
        model = make_model("lstm")
        scheduler = compress.dict_config(model, None, {
            "pruners": {"u": {"class": "UnitPruner", "layers": ["rnn"], "final_sparsity": 0.5,
                              "consumers": {"rnn": ["decoder.weight"], "encoder": ["rnn.weight_ih_l0"]}}},
            "policies": [{"pruner": {"instance_name": "u"}, "epochs": [0]}]})
        scheduler.on_epoch_begin(0)
        path = os.path.join(FOLDER, "thinned.pt")
        compress.save_checkpoint(path, compress.thin(model, scheduler), epoch=0)
        with open(path, "rb") as f:
            _SAVED["thinned"] = f.read()
    return _SAVED["thinned"]


@profile(ci_examples=30)
@given(data=st.data())
def test_a_damaged_thinned_checkpoint_is_refused_cleanly_or_runs(data):
    """thinned_skeleton builds the structure from the file, then load_checkpoint fills it."""
    if data.draw(st.booleans()):
        raw = data.draw(damaged_bytes(thinned_bytes()))
    else:
        buffer = io.BytesIO()
        torch.save(data.draw(damaged_fields(torch.load(io.BytesIO(thinned_bytes()), weights_only=True))), buffer)
        raw = buffer.getvalue()
    path = os.path.join(FOLDER, "damaged-thinned.pt")
    with open(path, "wb") as f:
        f.write(raw)
    dense = make_model("lstm")
    before = snapshot(dense)
    try:
        model = thinned_skeleton(dense, path)
        compress.load_checkpoint(path, model)
    except CheckpointError as err:
        assert path in str(err), str(err)
        assert_unchanged(before, snapshot(dense))
        outcome(refused_at(err, path))
        return
    del before["rng"]  # a load that succeeds restores the checkpoint's RNG state
    assert_unchanged(before, snapshot(dense))  # the dense model is not changed
    tokens = torch.randint(0, NTOKEN, (4, 2))
    model(tokens, model.init_hidden(2))
    outcome("loaded and ran")


@pytest.mark.parametrize("units, message", [(torch.tensor([0, 99]), r"distinct unit indices in \[0, 8\)"),
                                            (torch.tensor([1, 1]), "distinct"), (torch.tensor([0.5]), "1-d tensor"),
                                            (torch.tensor([0, 1, 2]), "takes 4 inputs; the layer below keeps 3")])
def test_a_thinned_checkpoint_with_impossible_units_is_refused_naming_the_file_and_keeps_the_rng(tmp_path, units,
                                                                                               message):
    state = torch.load(io.BytesIO(thinned_bytes()), weights_only=True)
    state["model"]["rnn.units_l0"] = units
    path = tmp_path / "t.pt"
    torch.save(state, path)
    dense = make_model("lstm")
    rng = torch.get_rng_state()
    with pytest.raises(CheckpointError, match=rf"t\.pt: model: .*{message}"):
        thinned_skeleton(dense, path)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_thinned_checkpoint_whose_decoder_fits_no_layer_is_refused_naming_it(tmp_path):
    state = torch.load(io.BytesIO(thinned_bytes()), weights_only=True)
    for key in [k for k, v in state["model"].items() if k.startswith(("decoder", "encoder")) and v.dim() == 2]:
        state["model"][key] = state["model"][key][:, :-1].clone()   # one column fewer than any layer keeps
    path = tmp_path / "t.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"t\.pt: model: '(de|en)coder\.weight' keeps \d+ columns, which fits no"):
        thinned_skeleton(make_model("lstm"), path)
    torch.save(torch.load(io.BytesIO(thinned_bytes()), weights_only=True), path)
    assert thinned_skeleton(make_model("lstm"), path) is not None   # the undamaged file still builds


STATS = {"rnn.cells.0.fc_gate_x": {"inputs": {0: {"min": -1.0, "max": 1.0, "avg_min": -0.5, "avg_max": 0.5,
                                                  "mean": 0.0, "std": 0.3, "shape": "(4, 8)"}},
                                   "output": {"min": -2.0, "max": 2.0, "mean": 0.1, "std": 0.5}}}


@profile(ci_examples=30)
@given(data=st.data())
def test_a_damaged_statistics_file_is_refused_cleanly(data):
    path = os.path.join(FOLDER, "stats.yaml")
    save_stats(STATS, path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.sampled_from(["&a ", "*a", "!!int ", "[", "{", ": ", "-", ".nan", "x",
                                                      "\n  ", "1e999", "!!python/object:os.system "])) + text[at:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    try:
        stats = load_stats(path)
    except CheckpointError as err:
        assert path in str(err)
        outcome(refused_at(err, path))
        return
    for entry in stats.values():
        for side in list((entry.get("inputs") or {}).values()) + [entry.get("output")]:
            if side is not None:
                assert side["min"] <= side["max"]
    outcome("loaded")


def test_an_empty_file_and_a_flipped_byte_in_the_pickle_are_checkpoint_errors_that_change_nothing(tmp_path):
    import zipfile

    raw = saved("agp")
    info = next(i for i in zipfile.ZipFile(io.BytesIO(raw)).infolist() if i.filename.endswith("data.pkl"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    damaged = bytearray(raw)
    damaged[start + info.compress_size // 2] ^= 0xFF
    model, optimizer, scheduler = build("agp")
    before = snapshot(model, optimizer, scheduler)
    path = tmp_path / "c.pt"
    for content, message in ((b"", "empty file"), (bytes(damaged), "")):
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=rf"c\.pt: .*{message}"):
            compress.load_checkpoint(path, model, optimizer, scheduler)
        assert_unchanged(before, snapshot(model, optimizer, scheduler))


"""The sparse model file: bit-identical to the dense export, smallest encoding per tensor, damage detected."""
import os

import pytest
import torch

from compress.errors import ArgumentError, CheckpointError
from compress.export import decode_tensor, encode_tensor, encoded_sizes, encoding_table, load_sparse, save_sparse
from compress.export.sparse import MAX_GAP, _checksum
from compress.pruning.criteria.magnitude import level_mask
from compress.quantization import WeightFormat, export_model, load_quantized, save_quantized
from compress.quantization.linear import LinearQuantMode
from compress_models import RNNModel

PRECISIONS = {
    "fp32": "fp32",
    "fp16": "fp16",
    "int8": "int8",
    "int8 asymmetric": WeightFormat("int8", mode=LinearQuantMode.ASYMMETRIC_SIGNED),
}


def pruned_lm(sparsity, vocab=50, size=16, tied=True, seed=0):
    torch.manual_seed(seed)
    model = RNNModel("LSTM", vocab, size, size, 2, 0.0, tie_weights=tied).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(level_mask(p, sparsity))
    return model


def same_bits(a, b):
    """Equal in every bit, but for the sign of float zeros (pruning by a multiply leaves -0.0; it loads as 0.0)."""
    if a.dtype.is_floating_point:
        a, b = (torch.where(t == 0, torch.zeros_like(t), t) for t in (a, b))
    return (a.dtype == b.dtype and a.shape == b.shape
            and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.8, 0.97])
def test_a_sparse_file_loads_bit_identical_to_the_dense_export(tmp_path, precision, sparsity):
    model = pruned_lm(sparsity)
    exported = export_model(model, PRECISIONS[precision])
    save_quantized(exported, tmp_path / "dense.pt")
    save_sparse(exported, tmp_path / "sparse.pt")
    dense = load_quantized(tmp_path / "dense.pt", pruned_lm(0.0, seed=5))
    sparse = load_sparse(tmp_path / "sparse.pt", pruned_lm(0.0, seed=5))  # any weights: the file provides them
    a, b = dense.state_dict(), sparse.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert same_bits(a[key], b[key]), key
    x = torch.randint(0, 50, (7, 3), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(dense(x, dense.init_hidden(3))[0], sparse(x, sparse.init_hidden(3))[0])
    weight = "encoder.qweight" if precision != "fp32" else "encoder.weight"
    tied = "decoder.qweight" if precision != "fp32" else "decoder.weight"
    assert b[weight].data_ptr() == b[tied].data_ptr()  # the tied weight is still one tensor


def test_negative_zeros_are_pruned_weights_and_nans_survive_bit_for_bit():
    t = torch.zeros(64)
    t[3], t[40], t[41] = -0.0, float("nan"), 2.5
    entry = encode_tensor(t)
    assert entry["encoding"] != "dense" and entry["values"].numel() == 2  # -0.0 is not stored
    back = decode_tensor(entry)
    t[3] = 0.0
    assert torch.equal(back.view(torch.int32), t.view(torch.int32))


def test_a_model_pruned_by_masks_multiplication_stores_only_its_nonzeros(tmp_path):
    model = pruned_lm(0.9)  # p.mul_(mask): the negative pruned weights become -0.0
    assert (torch.signbit(model.encoder.weight) & (model.encoder.weight == 0)).any()
    records = save_sparse(model, tmp_path / "fp32.pt")
    record = next(r for r in records if r.name == "encoder.weight")
    assert record.nonzeros == int((model.encoder.weight != 0).sum()) and record.density == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("density, expected", [(0.9, "dense"), (0.2, "bitmask"), (0.03, "indices")])
def test_each_tensor_gets_the_smallest_encoding_for_its_density(density, expected):
    t = torch.zeros(200, 100, dtype=torch.int8)
    keep = torch.randperm(t.numel(), generator=torch.Generator().manual_seed(0))[:int(density * t.numel())]
    t.view(-1)[keep] = 5
    entries = {e: encode_tensor(t, encoding=e) for e in ("dense", "bitmask", "indices")}
    stored = {e: sum(v.numel() for v in entry.values() if torch.is_tensor(v)) for e, entry in entries.items()}
    assert stored == encoded_sizes(t.numel(), keep.numel(), 1, entries["indices"]["steps"].numel())
    assert encode_tensor(t)["encoding"] == expected == min(stored, key=stored.get)
    for entry in entries.values():
        assert torch.equal(decode_tensor(entry), t)


def test_gaps_longer_than_a_byte_take_filler_entries():
    t = torch.zeros(3 * MAX_GAP + 10)
    t[0], t[-1] = 1.0, 2.0  # a gap of 3 * 256 + 9 between them
    entry = encode_tensor(t, encoding="indices")
    assert entry["steps"].numel() == 1 + 4  # the first nonzero, three fillers, the last nonzero
    assert entry["values"].tolist() == [1.0, 0.0, 0.0, 0.0, 2.0]
    assert torch.equal(decode_tensor(entry), t)


def test_asymmetric_int8_stores_pruned_weights_as_their_rows_zero_point(tmp_path):
    model = pruned_lm(0.8)
    records = save_sparse(export_model(model, PRECISIONS["int8 asymmetric"]), tmp_path / "lm.pt")
    record = next(r for r in records if r.name == "encoder.qweight")
    assert record.encoding == "bitmask"
    assert record.nonzeros == int((model.encoder.weight != 0).sum())


def test_an_80_percent_sparse_int8_lm_is_at_most_a_tenth_of_its_dense_fp32_file(tmp_path):
    model = pruned_lm(0.8, vocab=1000, size=128)
    torch.save(model.state_dict(), tmp_path / "fp32.pt")
    records = save_sparse(export_model(model, "int8"), tmp_path / "int8.sparse.pt")
    ratio = os.path.getsize(tmp_path / "int8.sparse.pt") / os.path.getsize(tmp_path / "fp32.pt")
    assert ratio <= 0.1
    assert "bitmask" in encoding_table(records)


def test_the_file_is_plain_data_that_loads_with_weights_only(tmp_path):
    save_sparse(export_model(pruned_lm(0.8), "int8"), tmp_path / "lm.pt")
    state = torch.load(tmp_path / "lm.pt", weights_only=True)
    assert state["format"] == "compress.sparse" and state["tensors"]["encoder.qweight"]["encoding"] == "bitmask"


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "lm.pt"
    save_sparse(export_model(pruned_lm(0.8), "int8"), path)
    return path


def test_a_truncated_file_is_a_checkpoint_error_naming_it(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{saved}: truncated"):
        load_sparse(saved, pruned_lm(0.0))


def test_changed_values_fail_the_checksum(saved):
    state = torch.load(saved, weights_only=True)
    state["tensors"]["encoder.qweight"]["values"][0] += 1
    torch.save(state, saved)
    with pytest.raises(CheckpointError, match="do not match the file's SHA-256"):
        load_sparse(saved, pruned_lm(0.0))


def test_a_mask_that_disagrees_with_its_values_names_the_tensor(saved):
    state = torch.load(saved, weights_only=True)
    entry = state["tensors"]["encoder.qweight"]
    entry["values"] = entry["values"][:-1]
    state["sha256"] = _checksum(state["tensors"])  # consistent checksum, inconsistent tensor
    torch.save(state, saved)
    with pytest.raises(CheckpointError, match=r"damaged tensor 'encoder.qweight': the mask marks \d+ nonzeros"):
        load_sparse(saved, pruned_lm(0.0))


def test_an_index_past_the_end_is_caught(tmp_path):
    entry = encode_tensor(torch.tensor([0.0, 0.0, 1.0]), encoding="indices")
    entry["steps"] = torch.tensor([5], dtype=torch.uint8)
    with pytest.raises(ValueError, match="past the end"):
        decode_tensor(entry)


def test_foreign_and_mismatched_files_are_checkpoint_errors(tmp_path, saved):
    dense = tmp_path / "dense.pt"
    save_quantized(export_model(pruned_lm(0.0), "int8"), dense)
    with pytest.raises(CheckpointError, match="not a compress sparse model file"):
        load_sparse(dense, pruned_lm(0.0))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_sparse(saved, RNNModel("LSTM", 50, 16, 16, 3, 0.0, tie_weights=True))
    with pytest.raises(CheckpointError, match="no such compressed model"):
        load_sparse(tmp_path / "missing.pt", pruned_lm(0.0))


def test_a_background_that_does_not_fit_is_an_argument_error():
    with pytest.raises(ArgumentError, match="background"):
        encode_tensor(torch.zeros(4, 3, dtype=torch.int8), background=torch.zeros(3, dtype=torch.int8))

"""Real INT8/FP16 export: same integers as the simulation, close outputs, fast paths agree, safe files."""
import copy

import pytest
import torch
from torch import nn

from compress.errors import CheckpointError
from compress.quantization import (
    PostTrainLinearQuantizer,
    QuantizedEmbedding,
    QuantizedLinear,
    QuantizedLSTM,
    WeightFormat,
    export_model,
    kernels_available,
    load_quantized,
    save_quantized,
)
from compress.quantization import export as export_module
from compress.quantization.linear import LinearQuantMode
from compress_models import RNNModel

needs_fbgemm = pytest.mark.skipif(not all(kernels_available().values()),
                                  reason="this PyTorch has no fbgemm dynamic int8/fp16 kernels")


def lm(rnn_type="LSTM", tied=True, seed=0):
    torch.manual_seed(seed)
    return RNNModel(rnn_type, 50, 16, 16, 2, 0.0, tie_weights=tied).eval()


def tokens(seq=8, bsz=2, seed=1):
    return torch.randint(0, 50, (seq, bsz), generator=torch.Generator().manual_seed(seed))


def calibration(model):
    hidden = model.init_hidden(2)
    for k in range(4):
        _, hidden = model(tokens(6, 2, seed=10 + k), hidden)


def logits(model, x):
    with torch.no_grad():
        return model(x, model.init_hidden(x.size(1)))[0]


def test_exported_int8_weights_are_the_simulations_integers():
    q = PostTrainLinearQuantizer(lm(), mode="asym_s", per_channel_wts=True)
    q.prepare_model(calibration=calibration)
    real = q.export()
    sim = q.model
    assert real.rnn.cells[1].fc_gate_h.qweight.dtype == torch.int8
    for ours, theirs in ((real.rnn.cells[1].fc_gate_h, sim.rnn.cells[1].fc_gate_h),
                         (real.encoder, sim.encoder), (real.decoder, sim.decoder)):
        torch.testing.assert_close(ours.weight, theirs.weight_q, rtol=0, atol=1e-6)


@needs_fbgemm
def test_exported_model_outputs_are_close_to_the_simulated_int8_models():
    model = lm()
    x = tokens()
    ref = logits(model, x)
    q = PostTrainLinearQuantizer(copy.deepcopy(model), mode="asym_s", per_channel_wts=True)
    q.prepare_model(calibration=calibration)
    real = q.export()
    simulated, exported = logits(q.model, x), logits(real, x)
    spread = ref.abs().max().item()
    assert (exported - simulated).abs().max().item() < 0.05 * spread
    assert (exported - ref).abs().max().item() < 0.05 * spread
    assert not torch.equal(exported, ref)                 # it really is quantized


@needs_fbgemm
@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU"])
@pytest.mark.parametrize("kind", ["int8", "fp16"])
def test_atens_recurrent_loop_and_the_python_loop_agree(rnn_type, kind):
    real = export_model(lm(rnn_type, tied=False), kind)
    x = tokens()
    fast = logits(real, x)
    real.rnn.use_aten_loop = False
    torch.testing.assert_close(logits(real, x), fast, rtol=1e-5, atol=1e-6)


@needs_fbgemm
def test_bidirectional_export_matches_float_closely():
    torch.manual_seed(0)
    rnn = nn.LSTM(8, 6, 2, bidirectional=True).eval()
    real = export_model(rnn, "int8")
    assert isinstance(real, QuantizedLSTM)
    x = torch.randn(5, 3, 8)
    with torch.no_grad():
        (y_real, (h_real, _)), (y_ref, (h_ref, _)) = real(x), rnn(x)
    assert y_real.shape == y_ref.shape and h_real.shape == h_ref.shape
    assert (y_real - y_ref).abs().max().item() < 0.05


def test_fp16_export_is_within_half_precision_of_fp32():
    model = lm()
    real = export_model(model, "fp16")
    assert real.decoder.qweight.dtype == torch.float16 and real.encoder.qweight.dtype == torch.float16
    x = tokens()
    torch.testing.assert_close(logits(real, x), logits(model, x), rtol=1e-2, atol=2e-4)


def test_portable_path_without_kernels_gives_the_same_model(monkeypatch):
    model = lm(tied=False)
    x = tokens()
    fast = logits(export_model(model, WeightFormat("int8", mode=LinearQuantMode.ASYMMETRIC_UNSIGNED)), x)
    monkeypatch.setattr(export_module, "kernels_available", lambda: {"int8": False, "fp16": False, "rnn": False})
    portable = logits(export_model(model, WeightFormat("int8", mode=LinearQuantMode.ASYMMETRIC_UNSIGNED)), x)
    # same integer weights; the portable path keeps activations in float, the kernel quantizes them
    assert (portable - fast).abs().max().item() < 0.05 * portable.abs().max().item()


def test_save_and_load_round_trip_is_exact_and_needs_no_code_from_the_file(tmp_path):
    model = lm()
    real = export_model(model, "int8")
    path = tmp_path / "lm.int8.pt"
    save_quantized(real, path)
    torch.load(path, weights_only=True)                   # plain tensors and data only
    back = load_quantized(path, lm(seed=7))                # any weights: the file provides them
    x = tokens()
    assert torch.equal(logits(back, x), logits(real, x))
    assert isinstance(back.encoder, QuantizedEmbedding) and isinstance(back.decoder, QuantizedLinear)


def test_a_tied_embedding_and_decoder_are_stored_once(tmp_path):
    tied_path, untied_path = tmp_path / "tied.pt", tmp_path / "untied.pt"
    save_quantized(export_model(lm(tied=True), "int8"), tied_path)
    save_quantized(export_model(lm(tied=False), "int8"), untied_path)
    back = load_quantized(tied_path, lm(tied=True))
    assert back.encoder.qweight.untyped_storage().data_ptr() == back.decoder.qweight.untyped_storage().data_ptr()
    assert tied_path.stat().st_size < untied_path.stat().st_size - 50 * 16 * 0.9


def test_int8_file_is_about_a_quarter_of_the_fp32_one(tmp_path):
    torch.manual_seed(0)
    model = RNNModel("LSTM", 2000, 64, 64, 2, 0.0).eval()
    fp32, int8 = tmp_path / "fp32.pt", tmp_path / "int8.pt"
    torch.save(model.state_dict(), fp32)
    save_quantized(export_model(model, "int8"), int8)
    ratio = fp32.stat().st_size / int8.stat().st_size
    assert 3.5 < ratio < 4.0                              # int8 values, an fp32 scale per row, fp32 biases


def test_mixed_precision_export_follows_the_quantizers_overrides():
    q = PostTrainLinearQuantizer(lm(tied=False), overrides={"decoder": {"fpq_module": 16},
                                                            r"rnn\.cells\.1\.fc_gate_h": {"bits_weights": None}})
    q.prepare_model(calibration=calibration)
    real = q.export()
    assert real.decoder.fmt.kind == "fp16" and real.encoder.fmt.kind == "int8"
    assert real.rnn.cells[1].fc_gate_h.fmt.kind == "fp32" and real.rnn.cells[0].fc_gate_h.fmt.kind == "int8"
    logits(real, tokens())                               # a mixed layer runs through the Python loop


def test_loading_a_foreign_or_mismatched_file_is_a_checkpoint_error(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a compress quantized model"):
        load_quantized(foreign, lm())
    path = tmp_path / "lm.pt"
    save_quantized(export_model(lm(), "int8"), path)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_quantized(path, RNNModel("LSTM", 50, 16, 16, 3, 0.0, tie_weights=True))


def test_exporting_leaves_the_float_model_unchanged():
    model = lm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_model(model, "int8")
    assert isinstance(model.rnn, nn.LSTM)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

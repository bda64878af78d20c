"""ONNX export: fp32 matches PyTorch, INT8 really runs the LSTMs as DynamicQuantizeLSTM, and the dynamo pitfall
(LSTM weights computed inside the graph) is folded away or refused."""
import io
import warnings

import pytest
import torch

onnx = pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' extra (pip install compress[onnx])")
ort = pytest.importorskip("onnxruntime", reason="ONNX export needs the 'onnx' extra (pip install compress[onnx])")

from compress.errors import CheckpointError, CompressError  # noqa: E402
from compress.export.onnx import (  # noqa: E402
    OnnxLM,
    _check_quantized,
    _quantize,
    export_onnx,
    fold_constants,
    op_counts,
)
from compress_models import RNNModel, batchify, evaluate_lm, synthetic_corpus  # noqa: E402

#: fp32 ONNX Runtime against PyTorch: the same float arithmetic in another order
FP32_TOLERANCE = dict(rtol=1e-4, atol=1e-5)
#: INT8 (weights per channel, activations per call) against fp32, relative to the largest |logit|
INT8_RELATIVE_TOLERANCE = 0.05


def lm(rnn_type="LSTM", vocab=50, emsize=16, nhid=16, nlayers=2, tied=True, seed=0):
    torch.manual_seed(seed)
    return RNNModel(rnn_type, vocab, emsize, nhid, nlayers, 0.0, tie_weights=tied).eval()


def tokens(seq, batch, vocab=50, seed=1):
    return torch.randint(0, vocab, (seq, batch), generator=torch.Generator().manual_seed(seed))


def run_both(model, path, seq=9, batch=4):
    x = tokens(seq, batch, model.encoder.num_embeddings)
    runner = OnnxLM(path, threads=1)
    ours, hidden = runner(x, runner.init_hidden(batch))
    with torch.no_grad():
        ref, ref_hidden = model(x, model.init_hidden(batch))
    return ours, hidden, ref, ref_hidden


@pytest.mark.parametrize("rnn_type", ["LSTM", "GRU"])
def test_fp32_onnx_matches_pytorch_at_other_lengths_and_batch_sizes(tmp_path, rnn_type):
    model = lm(rnn_type)
    export_onnx(model, tmp_path / "lm.onnx")
    ours, hidden, ref, ref_hidden = run_both(model, tmp_path / "lm.onnx")
    torch.testing.assert_close(ours, ref, **FP32_TOLERANCE)
    if rnn_type == "LSTM":
        for a, b in zip(hidden, ref_hidden):
            torch.testing.assert_close(a, b, **FP32_TOLERANCE)
    else:
        torch.testing.assert_close(hidden, ref_hidden, **FP32_TOLERANCE)


def test_a_tied_weight_is_stored_once_in_the_fp32_file(tmp_path):
    tied = export_onnx(lm(vocab=500, tied=True), tmp_path / "tied.onnx")
    untied = export_onnx(lm(vocab=500, tied=False), tmp_path / "untied.onnx")
    table = 500 * 16 * 4
    assert untied.nbytes - tied.nbytes > 0.9 * table


def test_int8_graph_runs_every_lstm_layer_as_dynamic_quantize_lstm(tmp_path):
    model = lm()
    result = export_onnx(model, tmp_path / "lm.int8.onnx", "int8")
    ops = op_counts(tmp_path / "lm.int8.onnx")
    assert ops == result.ops
    assert ops["com.microsoft.DynamicQuantizeLSTM"] == 2 and "LSTM" not in ops
    assert ops["MatMulInteger"] == 1  # the decoder
    ours, _, ref, _ = run_both(model, tmp_path / "lm.int8.onnx")
    error = (ours - ref).abs().max().item()
    assert 0 < error <= INT8_RELATIVE_TOLERANCE * ref.abs().max().item()


def test_a_thinned_untied_single_layer_lstm_exports_as_well(tmp_path):
    model = lm(emsize=12, nhid=10, nlayers=1, tied=False)
    result = export_onnx(model, tmp_path / "thin.onnx", "int8")
    assert result.ops["com.microsoft.DynamicQuantizeLSTM"] == 1
    ours, hidden, ref, _ = run_both(model, tmp_path / "thin.onnx")
    assert hidden[0].shape == (1, 4, 10)
    assert (ours - ref).abs().max().item() <= INT8_RELATIVE_TOLERANCE * ref.abs().max().item()


def unfolded_graph(model):
    """The graph as an exporter that does not fold constants writes it: LSTM weights computed at run time."""
    x, hidden = tokens(3, 2), model.init_hidden(2)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x, hidden), buffer, dynamo=False, opset_version=17, do_constant_folding=False)
    return onnx.load_from_string(buffer.getvalue())


def test_quantization_silently_skips_computed_lstm_weights_and_folding_fixes_it():
    graph = unfolded_graph(lm())
    skipped = _quantize(graph, per_channel=True, reduce_range=True)
    assert op_counts(skipped).get("com.microsoft.DynamicQuantizeLSTM", 0) == 0 and op_counts(skipped)["LSTM"] == 2
    with pytest.raises(CompressError, match=r"left 2 LSTM node\(s\) in fp32"):
        _check_quantized(skipped, 2, lm())
    quantized = _quantize(fold_constants(graph), per_channel=True, reduce_range=True)
    assert op_counts(quantized)["com.microsoft.DynamicQuantizeLSTM"] == 2
    _check_quantized(quantized, 2, lm())


def test_the_onnx_int8_models_perplexity_is_measured_like_pytorchs(tmp_path):
    corpus = synthetic_corpus(seed=0, vocab_size=50, train_tokens=100, valid_tokens=400, test_tokens=100)
    valid = batchify(corpus.valid, 4)
    model = lm()
    export_onnx(model, tmp_path / "lm.onnx", "int8")
    ours, _ = evaluate_lm(OnnxLM(tmp_path / "lm.onnx", threads=1), valid, 35, 4)
    ref, _ = evaluate_lm(model, valid, 35, 4)
    assert ours == pytest.approx(ref, rel=0.02)


def test_bad_precision_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(CompressError, match="precision: expected one of fp32, int8"):
        export_onnx(lm(), tmp_path / "lm.onnx", "fp16")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="ONNX Runtime cannot load it"):
        OnnxLM(junk)
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(unfolded_graph(lm()).SerializeToString())
    with pytest.raises(CheckpointError, match="not written by"):
        OnnxLM(foreign)


def test_the_benchmark_puts_the_four_deployments_side_by_side(tmp_path, capsys):
    from examples import bench_export

    result = bench_export.main(["--emsize", "16", "--nhid", "16", "--epochs", "1", "--max-train-batches", "3",
                                "--repeats", "1", "--warmup", "0", "--threads", "1", "--eval-tokens", "400",
                                "--cache", str(tmp_path / "lm.pt")])
    names = ["fp32 PyTorch", "compress INT8", "ONNX Runtime fp32", "ONNX Runtime INT8"]
    printed = capsys.readouterr().out
    assert list(result["sizes"]) == names and all(name in printed for name in names)
    assert result["sparsity"] == pytest.approx(0.8, abs=0.01)
    assert result["sizes"]["compress INT8"] < result["sizes"]["ONNX Runtime INT8"] < result["sizes"]["fp32 PyTorch"]
    assert result["max_logit_diff"]["ONNX Runtime fp32"] < 1e-4 < result["max_logit_diff"]["ONNX Runtime INT8"]
    assert max(result["val_ppl"].values()) < 1.05 * min(result["val_ppl"].values())


def test_a_thinned_model_exports_to_both_formats(tmp_path):
    thinning = pytest.importorskip("compress.structured.thinning",
                                   reason="compress.thin comes from another branch; this runs once it is merged")
    from compress.export import load_sparse, save_sparse
    from compress.quantization import export_model
    from compress.structured.units import unit_groups

    model = lm(tied=False)
    with torch.no_grad():  # unit 1 of layer 0 and unit 2 of layer 1 reach nothing
        model.rnn.weight_hh_l0[:, 1] = 0
        model.rnn.weight_ih_l1[:, 1] = 0
        model.rnn.weight_hh_l1[:, 2] = 0
        model.decoder.weight[:, 2] = 0
    small = thinning.thin(model, unit_groups(model, ["rnn"], {"rnn": ["decoder.weight"]}))
    assert small.rnn.hidden_sizes == [15, 15]
    exported = export_model(small, "int8")
    save_sparse(exported, tmp_path / "thin.pt")
    back = load_sparse(tmp_path / "thin.pt", small)
    x = tokens(6, 3)
    with torch.no_grad():
        assert torch.equal(back(x, back.init_hidden(3))[0], exported(x, exported.init_hidden(3))[0])
    export_onnx(small, tmp_path / "thin.onnx")
    ours, _, ref, _ = run_both(small, tmp_path / "thin.onnx")
    torch.testing.assert_close(ours, ref, **FP32_TOLERANCE)
    assert export_onnx(small, tmp_path / "thin8.onnx", "int8").ops["com.microsoft.DynamicQuantizeLSTM"] == 2

"""Predefined structured sparseness: SparseLSTM / SparseEmbedding modules and their mask forms."""
import json
import os

import pytest
import torch
from conftest import ROOT, load_example
from loops import run_epochs
from torch import nn

import compress
from compress import ArgumentError, ScheduleError
from compress.io.checkpoint import read_checkpoint
from compress.pruning.pruners import BlockEmbeddingPruner, BlockSparseLSTMPruner
from compress.reports.tables import sparsity_summary
from compress.sparsity.names import ParameterIndex
from compress.structured import SparseEmbedding, SparseLSTM, dense_equivalent
from compress.structured.geometry import embedding_block_structure, lstm_block_structure
from compress_models import RNNModel, SparseRNNModel, builders, load_corpus
from compress_models.sparse_lm import layer_reductions

F = 0.66666  # the seed's --sparse_fract


def lstm_params(i, h):
    """Parameters of a dense one-layer LSTM: 4 (i h + h^2 + 2 h)."""
    return 4 * (i * h + h * h + 2 * h)


def masks_of(pruner, model):
    pruner.bind(ParameterIndex(model))
    params = dict(model.named_parameters())
    return pruner.compute_masks(params, {}, None)


# -- parameter counts -------------------------------------------------------------------------------------------
def test_middle_layer_of_the_seed_model_has_exactly_the_budget_of_the_dense_1150_layer():
    s = lstm_block_structure(1725, 1725, reduce_in=F, reduce_out=F)
    assert s.blocks == 3
    assert s.input_windows == ((0, 957), (383, 1341), (767, 1725))
    assert s.hidden_blocks == ((0, 575), (575, 1150), (1150, 1725))
    # 4 * (575 * (957 + 958 + 958) + 3 * 575^2 + 2 * 1725)
    assert s.num_parameters == 4 * (575 * 2873 + 3 * 575 ** 2 + 2 * 1725) == 10_589_200
    assert s.num_parameters == lstm_params(1150, 1150)


def test_first_layer_of_the_seed_model_clips_density_to_one_and_stays_under_budget():
    s = lstm_block_structure(400, 1725, reduce_in=1.0, reduce_out=F)
    assert (s.blocks, s.density) == (3, 1.0)
    assert s.num_parameters == 4 * (400 * 1725 + 3 * 575 ** 2 + 2 * 1725) == 6_741_300
    assert s.num_parameters < lstm_params(400, 1150) == 7_139_200


def test_module_stores_exactly_the_parameters_the_formula_counts():
    layer = SparseLSTM(20, 30, blocks=3, density=0.5)
    # windows of width 10 with overlap 5: [0,10) [5,15) [10,20); hidden blocks of 10
    assert layer.structure.input_windows == ((0, 10), (5, 15), (10, 20))
    assert sum(p.numel() for p in layer.parameters()) == 4 * (3 * 10 * 10 + 3 * 10 * 10 + 2 * 30) == 2640
    assert layer.structure.num_parameters == 2640


def test_blocks_without_density_gives_disjoint_input_windows():
    s = lstm_block_structure(9, 6, blocks=3)
    assert s.input_windows == ((0, 3), (3, 6), (6, 9))
    assert s.hidden_blocks == ((0, 2), (2, 4), (4, 6))


def test_pruner_reports_the_kept_count_of_every_layer():
    model = RNNModel("LSTM", 50, 16, 16, 2)
    pruner = BlockSparseLSTMPruner("p", ["rnn.weight_*"], blocks=2, density=0.5)
    masks = masks_of(pruner, model)
    kept_weights = sum(int(m.sum()) for m in masks.values())
    assert kept_weights == 2 * 4 * (2 * 8 * 8 + 2 * 8 * 8)
    assert pruner.num_parameters == kept_weights + 2 * 2 * 4 * 16  # plus the dense biases


# -- mask structure -----------------------------------------------------------------------------------------------
def test_recurrent_mask_is_block_diagonal_in_every_gate():
    _, hh = lstm_block_structure(4, 4, blocks=2).masks()
    block = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(hh, block.repeat(4, 1))


def test_input_mask_is_banded_with_overlapping_windows_in_every_gate():
    s = lstm_block_structure(6, 4, blocks=2, density=2 / 3)
    assert s.input_windows == ((0, 4), (2, 6))
    ih, _ = s.masks()
    band = torch.tensor([[1, 1, 1, 1, 0, 0]] * 2 + [[0, 0, 1, 1, 1, 1]] * 2, dtype=torch.bool)
    assert torch.equal(ih, band.repeat(4, 1))


def test_gru_weights_get_the_structure_in_each_of_their_three_gates():
    gru = nn.GRU(4, 4)
    pruner = BlockSparseLSTMPruner("p", ["weight_*"], blocks=2)
    masks = masks_of(pruner, gru)
    block = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(masks["weight_hh_l0"], block.repeat(3, 1))
    assert torch.equal(masks["weight_ih_l0"], block.repeat(3, 1))


def test_schedule_fixes_the_structure_of_each_layer_and_keeps_it_after_steps():
    torch.manual_seed(0)
    model = RNNModel("LSTM", 50, 16, 16, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    scheduler = compress.dict_config(model, optimizer, {
        "pruners": {"l0": {"class": "BlockSparseLSTMPruner", "reduce_in": 1.0, "reduce_out": 0.5,
                           "weights": ["rnn.weight_*_l0"]},
                    "l1": {"class": "BlockSparseLSTMPruner", "blocks": 4, "density": 0.5,
                           "weights": ["rnn.weight_*_l1"]}},
        "policies": [{"pruner": {"instance_name": "l0"}, "epochs": [0]},
                     {"pruner": {"instance_name": "l1"}, "epochs": [0]}]})
    data = torch.randint(50, (5, 3))
    run_epochs(model, scheduler, optimizer, [data], 2, loss=lambda model, x, i: model(x, model.init_hidden(3))[0].sum())
    expected = {}
    for layer, kwargs in ((0, dict(reduce_in=1.0, reduce_out=0.5)), (1, dict(blocks=4, density=0.5))):
        ih, hh = lstm_block_structure(16, 16, **kwargs).masks()
        expected[f"rnn.weight_ih_l{layer}"], expected[f"rnn.weight_hh_l{layer}"] = ih, hh
    for name, mask in expected.items():
        weight = dict(model.named_parameters())[name]
        assert torch.equal(weight != 0, mask), name


# -- module form == mask form -----------------------------------------------------------------------------------
def test_module_and_mask_form_compute_the_same_function_on_the_same_weights():
    torch.manual_seed(0)
    dense = nn.LSTM(12, 9)
    pruner = BlockSparseLSTMPruner("p", ["weight_*"], reduce_in=0.5, reduce_out=0.5)
    with torch.no_grad():
        for name, mask in masks_of(pruner, dense).items():
            getattr(dense, name).mul_(mask)
    layer = SparseLSTM(12, 9, reduce_in=0.5, reduce_out=0.5)
    layer.load_dense_weights(dict(dense.named_parameters()))
    x, h0, c0 = torch.randn(7, 3, 12), torch.randn(1, 3, 9), torch.randn(1, 3, 9)
    out_dense, (h_dense, c_dense) = dense(x, (h0, c0))
    out_sparse, (h_sparse, c_sparse) = layer(x, (h0, c0))
    torch.testing.assert_close(out_sparse, out_dense)
    torch.testing.assert_close(h_sparse, h_dense)
    torch.testing.assert_close(c_sparse, c_dense)


def test_dense_weights_of_the_module_are_zero_exactly_off_the_pruner_mask():
    torch.manual_seed(0)
    layer = SparseLSTM(10, 8, blocks=4, density=0.4)
    dense = nn.LSTM(10, 8)
    masks = masks_of(BlockSparseLSTMPruner("p", ["weight_*"], blocks=4, density=0.4), dense)
    weights = layer.dense_weights()
    for name in ("weight_ih_l0", "weight_hh_l0"):
        assert torch.equal(weights[name] != 0, masks[name])
    with torch.no_grad():
        for name, value in weights.items():
            getattr(dense, name).copy_(value)
    x = torch.randn(5, 2, 10)
    torch.testing.assert_close(layer(x)[0], dense(x)[0])


def test_gradients_of_the_module_equal_the_masked_gradients_of_the_dense_layer():
    torch.manual_seed(0)
    layer = SparseLSTM(6, 6, blocks=3, density=0.5)
    dense = nn.LSTM(6, 6)
    with torch.no_grad():
        for name, value in layer.dense_weights().items():
            getattr(dense, name).copy_(value)
    x = torch.randn(4, 2, 6)
    layer(x)[0].pow(2).sum().backward()
    dense(x)[0].pow(2).sum().backward()
    ih, hh = layer.structure.masks()
    grads = {n: p.grad for n, p in dense.named_parameters()}
    for lstm, (ws, we), (bs, be) in zip(layer.components, layer.structure.input_windows,
                                        layer.structure.hidden_blocks):
        for g in range(4):
            rows = slice(g * 6 + bs, g * 6 + be)
            own = slice(g * (be - bs), (g + 1) * (be - bs))
            torch.testing.assert_close(lstm.weight_ih_l0.grad[own], grads["weight_ih_l0"][rows, ws:we])
            torch.testing.assert_close(lstm.weight_hh_l0.grad[own], grads["weight_hh_l0"][rows, bs:be])


def test_embedding_module_and_mask_form_give_the_same_vectors():
    torch.manual_seed(0)
    dense = nn.Embedding(30, 8)
    masks = masks_of(BlockEmbeddingPruner("p", ["weight"], blocks=4, density=0.5), dense)
    with torch.no_grad():
        dense.weight.mul_(masks["weight"])
    layer = SparseEmbedding(30, 8, blocks=4, density=0.5)
    layer.load_dense_weight(dense.weight)
    assert torch.equal(layer.weight, dense.weight)
    ids = torch.randint(30, (5, 3))
    assert torch.equal(layer(ids), dense(ids))
    assert sum(p.numel() for p in layer.parameters()) == int(masks["weight"].sum()) == layer.structure.num_parameters


def test_sparsity_table_of_the_module_form_shows_the_same_structure_as_the_mask_form():
    torch.manual_seed(0)
    module_form = SparseRNNModel(40, 8, 12, 2, tie_weights=True, sparse_mode="sparse_hidden", sparse_fract=0.5)
    mask_form = SparseRNNModel(40, 8, 12, 2, tie_weights=True)
    scheduler = compress.dict_config(mask_form, None, {
        "pruners": {f"l{i}": {"class": "BlockSparseLSTMPruner", "reduce_in": r[0], "reduce_out": r[1],
                              "weights": [f"rnns.{i}.weight_*"]}
                    for i, r in enumerate(layer_reductions("sparse_hidden", 2, 0.5, True))},
        "policies": [{"pruner": {"instance_name": f"l{i}"}, "epochs": [0]} for i in range(2)]})
    scheduler.on_epoch_begin(0)
    rows_module = [(r.name, r.shape, r.nnz_sparse) for r in sparsity_summary(dense_equivalent(module_form))]
    rows_mask = [(r.name, r.shape, r.nnz_sparse) for r in sparsity_summary(dense_equivalent(mask_form))]
    assert rows_module == rows_mask
    assert sum(p.numel() for p in module_form.rnns.parameters()) == sum(
        int(p.ne(0).sum()) for p in mask_form.rnns.parameters())


# -- embedding geometry and vocabulary order ------------------------------------------------------------------------
def test_embedding_geometry_matches_the_seed_example():
    s = embedding_block_structure(10_000, 400, blocks=10, density=0.5)
    assert s.starts == (0, 1684, 3084, 4249, 5217, 6022, 6691, 7248, 7711, 8094)
    assert s.widths == (40,) * 10
    assert s.num_parameters == 2_000_000


def test_embedding_with_two_blocks_gives_the_leftover_budget_to_the_last_block():
    # widths 2 + 2; block 0 holds 4 * 2 = 8 of floor(16 * 0.75) = 12, the last block (12 - 8) / 2 = 2 rows
    s = embedding_block_structure(4, 4, blocks=2, density=0.75)
    assert s.starts == (0, 2)
    assert s.row_lengths().tolist() == [2, 2, 4, 4]


@pytest.mark.parametrize("order, lengths", [
    ("up", {"rare": 2, "<eos>": 2, "mid": 4, "common": 4}),      # rarest first: rare words are short
    ("down", {"common": 2, "mid": 2, "<eos>": 4, "rare": 4}),    # the paper's ablation
    ("none", {"common": 2, "mid": 2, "rare": 4, "<eos>": 4}),    # first occurrence
])
def test_embedding_row_length_of_each_word_under_each_vocabulary_order(tmp_path, order, lengths):
    # train counts: common 6, mid 3, <eos> 2, rare 1
    (tmp_path / "train.txt").write_text("common common common mid rare\ncommon common common mid mid\n")
    (tmp_path / "valid.txt").write_text("common rare\n")
    (tmp_path / "test.txt").write_text("mid\n")
    corpus = load_corpus(tmp_path, sort_vocab=order)
    layer = SparseEmbedding(len(corpus.dictionary), 4, blocks=2, density=0.75)
    row_length = layer.structure.row_lengths()
    assert {w: int(row_length[corpus.dictionary.word2idx[w]]) for w in lengths} == lengths
    vectors = layer(torch.tensor([corpus.dictionary.word2idx[w] for w in lengths]))
    assert [int(v.ne(0).sum()) for v in vectors] == list(lengths.values())


# -- bad arguments ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, key", [
    (dict(blocks=2, density=0.0), "density"),
    (dict(blocks=2, density=1.5), "density"),
    (dict(blocks=0), "blocks"),
    (dict(blocks=1.5), "blocks"),
    (dict(blocks=4, density=0.2), "density"),       # below 1/blocks: inputs left unread
    (dict(blocks=1, density=0.5), "density"),
    (dict(density=0.5), "blocks"),
    (dict(reduce_in=0.0, reduce_out=0.5), "reduce_in"),
    (dict(reduce_out=1.2), "reduce_out"),
    (dict(blocks=2, reduce_in=0.5), "reduce_in"),
    (dict(), "blocks"),
    (dict(reduce_in=0.01, reduce_out=0.01), "reduce_out"),  # no budget left
])
def test_bad_lstm_arguments_raise_an_error_naming_the_argument(kwargs, key):
    with pytest.raises(ArgumentError) as info:
        SparseLSTM(16, 16, **kwargs)
    assert info.value.key == key


@pytest.mark.parametrize("blocks, density, key", [(4, 0.0, "density"), (4, 1.01, "density"), (0, 0.5, "blocks"),
                                                  (4, 0.2, "density"), (1, 0.5, "density")])
def test_bad_embedding_arguments_raise_an_error_naming_the_argument(blocks, density, key):
    with pytest.raises(ArgumentError) as info:
        SparseEmbedding(100, 16, blocks, density)
    assert info.value.key == key


@pytest.mark.parametrize("spec, key", [
    ({"class": "BlockSparseLSTMPruner", "blocks": 2, "density": 0, "weights": ["rnn.weight_*"]}, "density"),
    ({"class": "BlockSparseLSTMPruner", "blocks": 0, "weights": ["rnn.weight_*"]}, "blocks"),
    ({"class": "BlockEmbeddingPruner", "blocks": 4, "density": 2, "weights": ["encoder.weight"]}, "density"),
    ({"class": "BlockEmbeddingPruner", "blocks": 0, "density": 0.5, "weights": ["encoder.weight"]}, "blocks"),
])
def test_bad_arguments_in_a_yaml_schedule_are_schedule_errors_with_file_line_and_key(tmp_path, spec, key):
    lines = [f"    {k}: {v}" for k, v in spec.items()]
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\npruners:\n  p:\n" + "\n".join(lines) + "\npolicies:\n"
                    "  - pruner: {instance_name: p}\n    epochs: [0]\n")
    line = 4 + list(spec).index(key)
    with pytest.raises(ScheduleError) as info:
        compress.file_config(RNNModel("LSTM", 50, 16, 16, 2), None, path)
    assert info.value.key == f"pruners.p.{key}"
    assert info.value.line == line
    assert str(path) in str(info.value)


def test_listing_one_weight_of_a_layer_is_a_schedule_error_naming_the_other():
    with pytest.raises(ScheduleError, match="rnn.weight_ih_l1") as info:
        compress.dict_config(RNNModel("LSTM", 50, 16, 16, 2), None, {
            "pruners": {"p": {"class": "BlockSparseLSTMPruner", "blocks": 2, "weights": ["rnn.weight_hh_l1"]}},
            "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]})
    assert info.value.key == "pruners.p.weights"


def test_structure_infeasible_for_the_weight_shapes_is_a_schedule_error():
    with pytest.raises(ScheduleError, match="hidden size 16") as info:
        compress.dict_config(RNNModel("LSTM", 50, 16, 16, 2), None, {
            "pruners": {"p": {"class": "BlockSparseLSTMPruner", "blocks": 17, "weights": ["rnn.weight_*"]}},
            "policies": [{"pruner": {"instance_name": "p"}, "epochs": [0]}]})
    assert info.value.key == "pruners.p.blocks"


# -- model and example wiring -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, expected", [
    ("direct", [(1, 1), (1, 1), (1, 1)]),
    ("sparse_hidden", [(1, F), (F, F), (F, 1)]),
    ("sparse_emb", [(F, 1), (1, 1), (1, F)]),
    ("sparse_all", [(F, F), (F, F), (F, F)]),
])
def test_sparse_modes_reduce_the_widened_sizes_of_a_tied_three_layer_model(mode, expected):
    assert layer_reductions(mode, 3, F, tie_weights=True) == expected


def test_seed_flags_build_the_papers_wide_sparse_model_and_sorted_block_embedding():
    args = builders.parse_args(["--sparse_mode", "sparse_hidden", "--sparse_fract", "0.66666", "--nhid", "1725",
                               "--emsize", "400", "--nlayers", "3", "--tied", "--emblocks", "10",
                               "--emdensity", "0.5"])
    model = builders.build_model(args, 10_000)
    assert [rnn.structure.blocks for rnn in model.rnns] == [3, 3, 2]
    assert model.rnns[1].structure.input_windows == ((0, 957), (383, 1341), (767, 1725))
    assert sum(p.numel() for p in model.rnns[1].parameters()) == lstm_params(1150, 1150)
    assert model.encoder.structure.starts == (0, 1684, 3084, 4249, 5217, 6022, 6691, 7248, 7711, 8094)
    assert builders.vocab_order(args) == "up"


def test_vocabulary_is_sorted_rarest_first_only_for_block_embeddings(tmp_path):
    assert builders.vocab_order(builders.parse_args([])) == "none"
    assert builders.vocab_order(builders.parse_args(["--schedule", os.path.join(
        ROOT, "schedules", "predefined_sparse_embedding.yaml")])) == "up"
    assert builders.vocab_order(builders.parse_args(["--emblocks", "4", "--emdensity", "0.5",
                                                   "--vocab-order", "down"])) == "down"


def test_tied_sparse_embedding_decodes_with_its_full_matrix():
    torch.manual_seed(0)
    model = SparseRNNModel(30, 8, 10, 2, dropout=0.0, tie_weights=True, emblocks=4, emdensity=0.5).eval()
    hidden = model.init_hidden(2)
    logits, _ = model(torch.randint(30, (3, 2)), hidden)
    assert logits.shape == (3, 2, 30)
    assert "decoder.weight" not in dict(model.named_parameters())
    model.zero_grad()
    logits.sum().backward()
    assert all(block.grad is not None for block in model.encoder.blocks)


def test_results_script_gives_all_wide_runs_the_predefined_recurrent_count(tmp_path, capsys):
    predefined_sparse_ptb = load_example("papers/predefined_sparse_ptb.py")

    out = tmp_path / "runs"
    predefined_sparse_ptb.main(["--jobs", "1", "--epochs", "2", "--max-train-batches", "2", "--bptt", "50",
                                "--emsize", "8", "--nhid", "12", "--fract", "0.5", "--synthetic-tokens", "3000",
                                "--out", str(out)])
    rows = {run: json.loads((out / f"{run}.json").read_text()) for run in ("dense", "sparse", "mask", "agp")}
    # dense: 8 -> 12 and 12 -> 8 (tied): 4 (8*12 + 144 + 24) + 4 (12*8 + 64 + 16)
    assert rows["dense"]["nnz"] == 1760
    structured = (lstm_block_structure(8, 24, reduce_in=1.0, reduce_out=0.5).num_parameters
                  + lstm_block_structure(24, 8, reduce_in=0.5, reduce_out=1.0).num_parameters)
    assert rows["sparse"]["nnz"] == rows["mask"]["nnz"] == rows["agp"]["nnz"] == structured
    assert "AGP to the same count" in (out / "results.md").read_text()
    masks = read_checkpoint(str(out / "selfish.pt"))["scheduler"]["masks"]["masks"]
    kept = sum(int(m.sum()) for m in masks.values())
    biases = sum(t.numel() for n, t in read_checkpoint(str(out / "selfish.pt"))["model"].items()
                 if n.startswith("rnns.") and "bias" in n)
    assert kept + biases == structured   # dynamic sparsity keeps exactly the predefined count per layer
    assert "Selfish-RNN at the same count" in (out / "results.md").read_text()

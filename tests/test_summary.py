"""Tests for compress.reports.tables, checked against numbers computed by hand."""
from __future__ import annotations

import dataclasses
import io
import math
from typing import List

import pytest
import torch
from torch import nn

from compress.reports.tables import (
    SPARSITY_HEADERS,
    SparsityRow,
    SparsityTotal,
    format_count,
    perplexity_table,
    sparsity_summary,
    sparsity_table,
    sparsity_total,
)

# W (3 x 4): rows 0 and 2 are all zero (2 of 3 rows), column 2 is all zero (1 of 4 columns).
W = [
    [0.0, 0.0, 0.0, 0.0],
    [1.0, -2.0, 0.0, 3.0],
    [0.0, 0.0, 0.0, 0.0],
]
# nnz = 3 of 12 -> fine = 75 %; mean = (1 - 2 + 3) / 12 = 1/6; abs-mean = 6 / 12 = 0.5;
# unbiased variance = (sum x^2 - n * mean^2) / (n - 1) = (14 - 12/36) / 11 = 41/33.
W_STD = math.sqrt(41 / 33)  # 1.114640...

# E (2 x 3), tied between an embedding and a decoder: no zero row, columns 0 and 2 zero (2 of 3).
E = [
    [0.0, 2.0, 0.0],
    [0.0, -2.0, 0.0],
]
# nnz = 2 of 6; mean = 0; abs-mean = 4/6; unbiased variance = 8 / 5.
E_STD = math.sqrt(8 / 5)  # 1.264911...


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(W))
        self.b = nn.Parameter(torch.tensor([1.0, 0.0, 2.0]))  # 1-D: excluded by param_dims
        self.enc = nn.Embedding(2, 3)
        self.dec = nn.Linear(3, 2, bias=False)
        self.dec.weight = self.enc.weight  # tied: one tensor under two names
        with torch.no_grad():
            self.enc.weight.copy_(torch.tensor(E))


def _check_tiny_rows(rows: List[SparsityRow]) -> None:
    assert [r.name for r in rows] == ["w", "enc.weight"]
    w, e = rows

    assert w.shape == (3, 4)
    assert (w.nnz_dense, w.nnz_sparse) == (12, 3)
    assert w.fine == pytest.approx(75.0)
    assert w.rows == pytest.approx(200 / 3)  # 2 of 3 rows (dim 0) entirely zero
    assert w.cols == pytest.approx(25.0)  # 1 of 4 columns (dim 1) entirely zero
    assert w.mean == pytest.approx(1 / 6)
    assert w.abs_mean == pytest.approx(0.5)
    assert w.std == pytest.approx(W_STD)
    assert w.aliases == ()

    assert e.shape == (2, 3)
    assert (e.nnz_dense, e.nnz_sparse) == (6, 2)
    assert e.fine == pytest.approx(200 / 3)
    assert e.rows == pytest.approx(0.0)
    assert e.cols == pytest.approx(200 / 3)
    assert e.mean == pytest.approx(0.0)
    assert e.abs_mean == pytest.approx(2 / 3)
    assert e.std == pytest.approx(E_STD)
    assert e.aliases == ("dec.weight",)


def _parse_psql(table: str) -> List[List[str]]:
    """Cells of every data/header line of a psql table (border lines dropped)."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()
            if line.startswith("|") and not line.startswith("|-")]


# ----------------------------------------------------------------------------------------------------------
# sparsity_summary
# ----------------------------------------------------------------------------------------------------------


def test_module_rows_hand_computed() -> None:
    _check_tiny_rows(sparsity_summary(Tiny()))


def test_rows_and_cols_are_not_swapped_on_a_non_square_matrix() -> None:
    # 2 x 5: row 1 zero (50 % rows), columns 1, 3, 4 zero (60 % cols). Distiller would have swapped these.
    t = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    (r,) = sparsity_summary({"x": t})
    assert r.rows == pytest.approx(50.0)
    assert r.cols == pytest.approx(60.0)


def test_four_dim_rows_are_filters_and_cols_are_input_channels() -> None:
    t = torch.ones(2, 3, 2, 2)
    t[0] = 0  # filter 0 zero: 1 of 2 rows
    t[:, 1] = 0  # input channel 1 zero: 1 of 3 cols
    (r,) = sparsity_summary({"conv.weight": t})
    assert r.shape == (2, 3, 2, 2)
    assert (r.nnz_dense, r.nnz_sparse) == (24, 8)
    assert r.rows == pytest.approx(50.0)
    assert r.cols == pytest.approx(100 / 3)


def test_param_dims_filter_and_one_dim_rows_cols_undefined() -> None:
    m = Tiny()
    names = [r.name for r in sparsity_summary(m, param_dims=(1,))]
    assert names == ["b"]
    (b,) = sparsity_summary(m, param_dims=[1])
    assert (b.nnz_dense, b.nnz_sparse) == (3, 2)
    assert b.rows is None and b.cols is None
    assert [r.name for r in sparsity_summary(m, param_dims=(1, 2))] == ["w", "b", "enc.weight"]
    assert sparsity_summary(m, param_dims=(4,)) == []
    with pytest.raises(ValueError):
        sparsity_summary(m, param_dims=(2.5,))  # type: ignore[arg-type]


def test_state_dict_dedupes_tied_storage() -> None:
    sd = Tiny().state_dict()
    assert list(sd) == ["w", "b", "enc.weight", "dec.weight"]  # the tied tensor appears twice
    _check_tiny_rows(sparsity_summary(sd))


def test_state_dict_dedupes_after_save_load_round_trip() -> None:
    buf = io.BytesIO()
    torch.save(Tiny().state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert loaded["enc.weight"].untyped_storage().data_ptr() == loaded["dec.weight"].untyped_storage().data_ptr()
    _check_tiny_rows(sparsity_summary(loaded))


def test_copies_and_disjoint_views_are_not_merged() -> None:
    e = torch.tensor(E)
    rows = sparsity_summary({"enc.weight": e, "dec.weight": e.clone()})
    assert [(r.name, r.aliases) for r in rows] == [("enc.weight", ()), ("dec.weight", ())]
    assert sparsity_total(rows) == (12, 4, pytest.approx(100 * (1 - 4 / 12)))

    flat = torch.arange(8.0)
    rows = sparsity_summary({"a": flat[:4].view(2, 2), "b": flat[4:].view(2, 2), "a2": flat[:4].view(2, 2)})
    assert [(r.name, r.aliases) for r in rows] == [("a", ("a2",)), ("b", ())]
    assert rows[0].nnz_sparse == 3  # 0, 1, 2, 3
    assert rows[1].nnz_sparse == 4


def test_mapping_skips_non_float_and_extra_state_and_rejects_other_objects() -> None:
    sd = {
        "w": torch.tensor(W),
        "w_mask": torch.tensor(W) != 0,  # a boolean mask: not a weight
        "counter": torch.zeros(2, 2, dtype=torch.long),
        "quant._extra_state": {"anything": 1},
    }
    assert [r.name for r in sparsity_summary(sd)] == ["w"]
    with pytest.raises(TypeError, match="epoch"):
        sparsity_summary({"epoch": 3, "w": torch.tensor(W)})
    with pytest.raises(TypeError):
        sparsity_summary([torch.tensor(W)])  # type: ignore[arg-type]


def test_half_precision_statistics() -> None:
    (r,) = sparsity_summary({"w": torch.tensor(W, dtype=torch.float16)})
    assert r.std == pytest.approx(W_STD, rel=1e-3)
    assert r.nnz_sparse == 3


def test_rows_are_frozen() -> None:
    (r,) = sparsity_summary({"w": torch.tensor(W)})
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "other"  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------------------
# totals and tables
# ----------------------------------------------------------------------------------------------------------


def test_total_counts_tied_weight_once() -> None:
    total = sparsity_total(sparsity_summary(Tiny()))
    assert isinstance(total, SparsityTotal)
    numel, nnz, sparsity = total
    assert (numel, nnz) == (12 + 6, 3 + 2)  # not 24 / 7 as a double count would give
    assert sparsity == pytest.approx(100 * (1 - 5 / 18))  # 72.22 %
    assert sparsity_total([]) == (0, 0, 0.0)


def test_sparsity_table_contents() -> None:
    table = sparsity_table(Tiny())
    cells = _parse_psql(table)
    assert cells[0] == list(SPARSITY_HEADERS)
    assert cells[1] == ["w", "3 x 4", "12", "3", "75.00", "66.67", "25.00", "1.11464", "0.16667", "0.50000"]
    assert cells[2] == [
        "enc.weight (= dec.weight)", "2 x 3", "6", "2", "66.67", "0.00", "66.67", "1.26491", "0.00000", "0.66667",
    ]
    assert cells[3] == ["Total", "-", "18", "5", "72.22", "-", "-", "-", "-", "-"]
    assert len(cells) == 4
    # the state_dict gives the same table
    assert sparsity_table(Tiny().state_dict()) == table


def test_sparsity_table_one_dim_cells_and_other_format() -> None:
    cells = _parse_psql(sparsity_table(Tiny(), param_dims=(1,)))
    assert cells[1][:7] == ["b", "3", "3", "2", "33.33", "-", "-"]
    github = sparsity_table(Tiny(), tablefmt="github")
    assert "| enc.weight (= dec.weight)" in github


def test_sparsity_table_from_precomputed_rows_prints_thousands_and_shape() -> None:
    row = SparsityRow(
        name="encoder.weight", shape=(33278, 1500), nnz_dense=49_917_000, nnz_sparse=9_983_400,
        fine=80.0, rows=0.0, cols=1.5, std=0.1234567, mean=-0.0000012, abs_mean=0.05, aliases=("decoder.weight",),
    )
    cells = _parse_psql(sparsity_table([row]))
    assert cells[1] == [
        "encoder.weight (= decoder.weight)", "33278 x 1500", "49,917,000", "9,983,400", "80.00", "0.00", "1.50",
        "0.12346", "-0.00000", "0.05000",
    ]
    assert cells[2][:5] == ["Total", "-", "49,917,000", "9,983,400", "80.00"]


def test_format_count() -> None:
    assert format_count(0) == "0"
    assert format_count(1234567) == "1,234,567"
    assert format_count(1.5e6) == "1,500,000"
    with pytest.raises(ValueError):
        format_count(2.5)
    with pytest.raises(TypeError):
        format_count("12")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------
# perplexity_table
# ----------------------------------------------------------------------------------------------------------


def test_perplexity_table_contents_without_accuracy() -> None:
    table = perplexity_table(
        [
            {"name": "dense", "sparsity": 0.0, "nnz": 85_962_000, "val_ppl": 87.456, "test_ppl": 84.121},
            {"name": "agp-80", "sparsity": 0.8, "nnz": 17_192_400, "val_ppl": 85.1, "test_ppl": 82.0},
            {"name": "no-eval-yet", "sparsity": 0.9},
        ]
    )
    cells = _parse_psql(table)
    assert cells[0] == ["Name", "Sparsity (%)", "NNZ", "Val PPL", "Test PPL"]
    assert cells[1] == ["dense", "0.00", "85,962,000", "87.46", "84.12"]
    assert cells[2] == ["agp-80", "80.00", "17,192,400", "85.10", "82.00"]
    assert cells[3] == ["no-eval-yet", "90.00", "-", "-", "-"]
    assert "Accuracy" not in table


def test_perplexity_table_accuracy_and_extra_columns() -> None:
    cells = _parse_psql(
        perplexity_table(
            [
                {"name": "a", "val_ppl": 90.0, "epochs": 40, "schedule": "agp.yaml"},
                {"name": "b", "accuracy": 0.3125, "lr": 0.001, "epochs": 20},
            ]
        )
    )
    assert cells[0] == ["Name", "Sparsity (%)", "NNZ", "Val PPL", "Test PPL", "Accuracy (%)", "epochs", "schedule",
                        "lr"]
    assert cells[1] == ["a", "-", "-", "90.00", "-", "-", "40", "agp.yaml", "-"]
    assert cells[2] == ["b", "-", "-", "-", "-", "31.25", "20", "-", "0.001"]


def test_perplexity_table_errors() -> None:
    with pytest.raises(ValueError, match="row 1"):
        perplexity_table([{"name": "ok"}, {"val_ppl": 80.0}])
    with pytest.raises(ValueError, match="row 0"):
        perplexity_table([{"name": None}])
    with pytest.raises(ValueError, match="fraction"):
        perplexity_table([{"name": "x", "sparsity": 80}])  # a percent passed where a fraction is expected
    with pytest.raises(TypeError, match="row 0"):
        perplexity_table([("x", 1.0)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="val_ppl"):
        perplexity_table([{"name": "x", "val_ppl": "87"}])


def test_perplexity_table_empty_gives_headers_only() -> None:
    cells = _parse_psql(perplexity_table([]))
    assert cells == [["Name", "Sparsity (%)", "NNZ", "Val PPL", "Test PPL"]]

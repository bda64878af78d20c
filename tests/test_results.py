"""compress_models.results: one JSON file per finished run, and the tables assembled from them."""
import doctest
import json
import os

import pytest
from conftest import load_example

import compress_models.results as results
from compress.errors import ArgumentError
from compress_models.results import ResultsFileError, read_results, study_table, write_result

RUN = dict(study="selfish_ptb", name="selfish", command="python examples/word_lm.py --schedule s.yaml --epochs 100",
           epochs=100, sparsity=0.67, nnz=21_780_000, val_ppl=74.0, test_ppl=72.12, seconds_per_epoch=9.5)


def test_module_examples_run():
    assert doctest.testmod(results).failed == 0


def test_written_result_reads_back_with_what_was_filled_in(tmp_path):
    path = write_result(tmp_path, **RUN)
    assert path == os.path.join(tmp_path, "selfish_ptb", "selfish.json")
    (row,) = read_results(tmp_path)
    assert {k: row[k] for k in RUN} == RUN
    assert row["git_revision"] and row["torch"] and row["device"] and row["date"].endswith("+00:00")
    assert os.listdir(tmp_path / "selfish_ptb") == ["selfish.json"]   # no temporary file left


def test_given_device_and_revision_are_kept(tmp_path):
    (tmp_path / "s").mkdir()
    write_result(tmp_path / "s" / "x.json", device="NVIDIA H200", git_revision="abc123", **RUN)
    assert json.loads((tmp_path / "s" / "x.json").read_text())["device"] == "NVIDIA H200"
    assert read_results(tmp_path)[0]["git_revision"] == "abc123"


@pytest.mark.parametrize("change,key", [({"test_ppl": float("nan")}, "test_ppl"), ({"sparsity": 1.5}, "sparsity"),
                                        ({"name": "../up"}, "name"), ({"epochs": 0}, "epochs"),
                                        ({"published": {"source": "paper"}}, "published"),
                                        ({"notes": {1, 2}}, "notes")])
def test_bad_fields_are_refused_by_name_and_nothing_is_written(tmp_path, change, key):
    with pytest.raises(ArgumentError) as info:
        write_result(tmp_path, **dict(RUN, **change))
    assert info.value.key == key
    assert not list(tmp_path.iterdir())


def test_missing_field_is_named(tmp_path):
    fields = dict(RUN)
    del fields["nnz"]
    with pytest.raises(ArgumentError, match="nnz: missing"):
        write_result(tmp_path, **fields)


def test_a_damaged_file_is_named_when_reading(tmp_path):
    write_result(tmp_path, **RUN)
    bad = tmp_path / "selfish_ptb" / "static.json"
    bad.write_text(json.dumps(dict(RUN, name="static", nnz=-1, git_revision="a", device="d", torch="t", date="x")))
    with pytest.raises(ResultsFileError, match=r"static\.json: nnz"):
        read_results(tmp_path)
    bad.write_text("{")
    with pytest.raises(ResultsFileError, match=r"static\.json: not a readable JSON"):
        read_results(tmp_path)


def test_table_puts_published_figures_beside_ours_and_orders_rows(tmp_path):
    write_result(tmp_path, **dict(RUN, order=0, published={"val_ppl": 73.79, "test_ppl": 71.72}))
    write_result(tmp_path, **dict(RUN, name="dense", label="dense 2x1500", nnz=66_000_000, sparsity=0.0,
                                  test_ppl=70.0, order=1))
    write_result(tmp_path, **dict(RUN, study="agp_wt2", name="large_80"))
    rows = read_results(tmp_path)
    assert [(r["study"], r["name"]) for r in rows] == [("agp_wt2", "large_80"), ("selfish_ptb", "selfish"),
                                                        ("selfish_ptb", "dense")]
    lines = study_table(rows, "selfish_ptb", commands=True).splitlines()
    assert "published test" in lines[0]
    assert "71.72" in lines[2] and "+0.56%" in lines[2] and "21,780,000" in lines[2]
    assert lines[3].startswith("| dense 2x1500") and "66,000,000" in lines[3]
    assert RUN["command"] in "\n".join(lines[4:])
    assert "published" not in study_table(rows, "agp_wt2")


def test_record_script_turns_a_word_lm_run_into_a_result_file(tmp_path):
    record_result = load_example("record_result.py")

    row = tmp_path / "rows.jsonl"
    row.write_text(json.dumps({"name": "other", "sparsity": 0.0, "nnz": 1, "val_ppl": 9.0, "test_ppl": 9.0}) + "\n"
                   + json.dumps({"name": "selfish_ptb_selfish.yaml", "sparsity": 0.67, "nnz": 21_780_000,
                                 "val_ppl": 74.0, "test_ppl": 72.12}) + "\n")
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text("| end of epoch   0 |   9.4s | lr 40 | valid ppl  300.00 | sparsity 67.00%\n")
    second.write_text("resumed from x at epoch 1\n| end of epoch   1 |   9.6s | lr 40 | valid ppl  200.00 |\n"
                      "| end of epoch   2 |  12.0s | lr 40 | valid ppl  190.00 |\n")
    path = record_result.main(["--study", "selfish_ptb", "--name", "selfish", "--row", str(row), "--log", str(first),
                               str(second), "--command", RUN["command"], "--published-test", "71.72",
                               "--device", "NVIDIA H200", "--out", str(tmp_path / "results")])
    (result,) = read_results(tmp_path / "results")
    assert path.endswith(os.path.join("selfish_ptb", "selfish.json"))
    assert (result["epochs"], result["seconds_per_epoch"], result["test_ppl"]) == (3, 9.6, 72.12)
    assert result["published"] == {"test_ppl": 71.72} and result["device"] == "NVIDIA H200"


def test_table_script_prints_one_table_per_study_and_names_unknown_studies(tmp_path, capsys):
    results_table = load_example("results_table.py")

    write_result(tmp_path, **RUN)
    write_result(tmp_path, **dict(RUN, study="agp_wt2"))
    text = results_table.main(["--results", str(tmp_path)])
    assert text.count("## ") == 2 and text.index("## agp_wt2") < text.index("## selfish_ptb")
    with pytest.raises(SystemExit, match="no results for iss_ptb"):
        results_table.main(["--results", str(tmp_path), "--study", "iss_ptb"])
    capsys.readouterr()


def test_only_study_folders_hold_run_records_other_records_are_left_alone(tmp_path):
    write_result(tmp_path, **RUN)
    (tmp_path / "selfish_ptb" / "search").mkdir()
    (tmp_path / "selfish_ptb" / "search" / "summary.json").write_text('{"not": "a run"}')
    (tmp_path / "claim.json").write_text('{"table": []}')
    assert [r["name"] for r in read_results(tmp_path)] == ["selfish"]

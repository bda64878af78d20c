"""examples/papers/selfish_results.py: five configurations at equal epochs and density, one table."""
import yaml
from conftest import load_example


def test_small_dense_model_has_the_sparse_models_weight_count():
    sr = load_example("papers/selfish_results.py")

    # PTB, 2x650: 2*10000*650 + 16*650^2 = 19,760,000 weights; 33% of it is 6,520,800
    h = sr.equal_weights_size(10000, 650, 2, 0.33)
    assert h == 268
    assert abs(sr.lstm_lm_weights(10000, h, 2) - 6_520_800) < sr.lstm_lm_weights(10000, h + 1, 2) - 6_520_800


def test_configurations_share_the_optimizer_switch_and_reach_the_same_density():
    sr = load_example("papers/selfish_results.py")

    built = sr.schedules(0.33, 8, 5)
    assert all(s["extensions"]["nt_asgd"]["class"] == "NTASGDSwitch" for s in built.values())
    assert built["static"]["pruners"]["static"]["levels"] == dict.fromkeys(sr.SPARSE_WEIGHTS, 0.67)
    assert built["agp"]["pruners"]["agp"]["final_sparsity"] == 0.67
    assert built["agp"]["policies"][0]["ending_epoch"] == 6
    assert built["selfish"]["pruners"]["selfish"]["density"] == 0.33


def test_results_script_prints_one_table_and_resumes_only_what_is_unfinished(tmp_path, capsys):
    sr = load_example("papers/selfish_results.py")

    argv = ["--size", "16", "--epochs", "1", "--out", str(tmp_path), "--jobs", "1", "--extra",
            "--max-train-batches", "2", "--bptt", "8", "--synthetic-tokens", "3000"]
    text = sr.main(argv)
    lines = [line for line in text.splitlines() if line.startswith("| ") and "model" not in line]
    assert len(lines) == 5 and "unfinished" not in text
    assert yaml.safe_load((tmp_path / "agp.yaml").read_text())["pruners"]["agp"]["final_sparsity"] == 0.67
    capsys.readouterr()
    sr.main(argv)   # everything finished: nothing runs again
    assert "== " not in capsys.readouterr().out

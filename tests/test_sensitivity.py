"""Sensitivity analysis: each group pruned alone, levels never accumulate, outputs, and the starting schedule."""
from __future__ import annotations

import csv
import importlib.util

import pytest
import torch
from torch import nn

import compress
from compress.errors import ArgumentError
from compress.pruning.criteria.groups import ParameterGroup
from compress.pruning.sensitivity import SensitivityResult, sensitivity_analysis

LEVELS = [0.0, 0.25, 0.5, 0.75, 0.9]


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.first = nn.Linear(10, 10)
        self.second = nn.Linear(10, 4, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))


def distortion_from(model):
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    return lambda m: sum(float(((p.detach() - reference[n]) ** 2).sum()) for n, p in m.named_parameters())


def test_one_value_per_group_and_level_in_table_and_csv(tmp_path):
    model = Toy()
    result = sensitivity_analysis(model, distortion_from(model), LEVELS)
    assert [g.name for g in result.groups] == ["first.weight", "second.weight"]
    assert {k: len(v) for k, v in result.values.items()} == {"first.weight": 5, "second.weight": 5}
    assert result.sizes == {"first.weight": 110, "second.weight": 40}
    table = result.table()
    assert "first.weight" in table and "90%" in table and "110" in table
    result.to_csv(tmp_path / "s.csv")
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 10 and rows[0]["group"] == "first.weight" and rows[0]["tensors"] == "first.weight first.bias"
    assert float(rows[6]["sparsity"]) == 0.25 and rows[6]["group"] == "second.weight"


def test_metric_grows_with_sparsity_and_starts_at_the_baseline():
    model = Toy()
    result = sensitivity_analysis(model, distortion_from(model), LEVELS)
    assert result.baseline == 0.0
    for values in result.values.values():
        assert values[0] == 0.0
        assert all(a < b for a, b in zip(values, values[1:]))


def test_levels_do_not_accumulate_and_the_model_is_untouched():
    model = Toy()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    zeros_seen = []

    def count_second_zeros(m):
        zeros_seen.append(int((m.second.weight == 0).sum()))
        return 0.0

    sensitivity_analysis(model, count_second_zeros, [0.5, 0.25], grouping="custom",
                         groups={"second": ["second.weight"]})
    assert zeros_seen == [0, 20, 10]  # baseline, then int(0.5 * 40) and int(0.25 * 40): not 20 + 10
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_accuracy_mode_measures_degradation_as_a_drop():
    result = SensitivityResult(0.5, "max", [ParameterGroup("g", ("w",))], [0.5], {"g": [0.4]}, {"g": 10})
    assert result.degradation("g", 0) == pytest.approx(0.1)
    assert result.degradation("g", 0, relative=True) == pytest.approx(0.2)


def test_bad_levels_are_rejected_naming_the_entry():
    with pytest.raises(ArgumentError, match=r"sparsities\[1\]"):
        sensitivity_analysis(Toy(), lambda m: 0.0, [0.5, 1.5])


def budget_example():
    # A (100 elements): +0.01 at 50%, +0.05 at 90%; B (10 elements): +0.001 at 50%, +0.002 at 90%.
    groups = [ParameterGroup("A", ("a",)), ParameterGroup("B", ("b",))]
    return SensitivityResult(1.0, "min", groups, [0.5, 0.9], {"A": [1.01, 1.05], "B": [1.001, 1.002]},
                             {"A": 100, "B": 10})


def test_budget_goes_to_the_most_elements_per_unit_of_degradation():
    # Elements per unit: A->50%: 50/0.01 = 5000 (ties B->50% 5/0.001, more elements wins), then B->50% (5000),
    # then B->90% (4/0.001 = 4000); A->90% would add 0.04 and break the 0.02 budget.
    assert budget_example().levels_for_budget(0.02) == {"A": 0.5, "B": 0.9}
    assert budget_example().levels_for_budget(0.06) == {"A": 0.9, "B": 0.9}
    assert budget_example().levels_for_budget(0.0) == {"A": 0.0, "B": 0.0}


def test_the_starting_schedule_loads_and_prunes_each_group_to_its_level_within_the_budget(tmp_path):
    model = Toy()
    result = sensitivity_analysis(model, distortion_from(model), LEVELS)
    budget = result.degradation("second.weight", 2)
    levels = result.to_schedule(tmp_path / "start.yaml", budget, starting_epoch=0, ending_epoch=1)
    spent = sum(result.degradation(g, LEVELS.index(s)) for g, s in levels.items())
    assert 0 < spent <= budget and all(s > 0 for s in levels.values())
    scheduler = compress.file_config(model, None, tmp_path / "start.yaml")
    scheduler.on_epoch_begin(0)
    for group in result.groups:
        zeros = sum(int((dict(model.named_parameters())[n] == 0).sum()) for n in group.params)
        assert zeros == int(levels[group.name] * result.sizes[group.name])
    assert open(tmp_path / "start.yaml").read().startswith("# Starting schedule from a sensitivity analysis")


def test_plot_needs_matplotlib_and_degrades_without_it(tmp_path, caplog):
    model = Toy()
    result = sensitivity_analysis(model, distortion_from(model), LEVELS)
    written = result.plot(tmp_path / "s.png")
    if importlib.util.find_spec("matplotlib") is None:
        assert written is None and "matplotlib is not installed" in caplog.text
    else:
        assert written == str(tmp_path / "s.png") and (tmp_path / "s.png").stat().st_size > 0

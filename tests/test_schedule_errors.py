"""Every schedule problem is a ScheduleError naming the file, line and key path."""
import random

import pytest
import torch
import yaml

import compress
from compress import ScheduleError

GOOD = """\
version: 1
pruners:
  l0_rnn_pruner:
    class: AutomatedGradualPruner
    initial_sparsity: 0.05
    final_sparsity: 0.7
    weights: [rnn.weight_ih_l0, rnn.weight_hh_l0]
lr_schedulers:
  decay:
    class: ExponentialLR
    gamma: 0.9
policies:
  - pruner:
      instance_name: l0_rnn_pruner
    starting_epoch: 0
    ending_epoch: 4
    frequency: 1
  - lr_scheduler:
      instance_name: decay
    starting_epoch: 0
    ending_epoch: 10
"""


def load(tmp_path, text, model, optimizer=None):
    path = tmp_path / "schedule.yaml"
    path.write_text(text)
    return compress.file_config(model, optimizer, str(path)), str(path)


def expect_error(tmp_path, text, model, key=None, line=None, match=None, optimizer=None):
    path = tmp_path / "schedule.yaml"
    path.write_text(text)
    with pytest.raises(ScheduleError) as info:
        compress.file_config(model, optimizer, str(path))
    err = info.value
    assert err.file == str(path)
    assert str(path) in str(err)
    if key is not None:
        assert err.key == key, str(err)
    if line is not None:
        assert err.line == line, str(err)
    if match is not None:
        assert match in str(err), str(err)
    return err


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=1.0)


def test_good_schedule_loads(tmp_path, tiny_lm):
    scheduler, _ = load(tmp_path, GOOD, tiny_lm, sgd(tiny_lm))
    assert [(k, n) for k, n, _ in scheduler.policies] == [("pruner", "l0_rnn_pruner"), ("lr_scheduler", "decay")]


def test_malformed_yaml_names_line(tmp_path, tiny_lm):
    expect_error(tmp_path, "pruners:\n  p: {class: AutomatedGradualPruner\n", tiny_lm, match="invalid YAML")


def test_python_tags_are_refused(tmp_path, tiny_lm):
    expect_error(tmp_path, "pruners: !!python/object/apply:os.system ['true']\n", tiny_lm, match="invalid YAML")


def test_unknown_class_names_key_and_suggests(tmp_path, tiny_lm):
    err = expect_error(tmp_path, GOOD.replace("class: AutomatedGradualPruner", "class: AutomatedGradualPrunr"),
                       tiny_lm, key="pruners.l0_rnn_pruner.class", line=4, optimizer=sgd(tiny_lm))
    assert "AutomatedGradualPruner" in str(err)


def test_distiller_cnn_class_is_named_unsupported(tmp_path, tiny_lm):
    text = "extensions:\n  thinner: {class: FilterRemover, thinning_func_str: remove_filters}\n"
    expect_error(tmp_path, text, tiny_lm, key="extensions.thinner.class", match="does not support")


def test_unknown_argument_is_an_error(tmp_path, tiny_lm):
    text = GOOD.replace("    final_sparsity: 0.7\n", "    final_sparsity: 0.7\n    finl_sparsity: 0.8\n")
    expect_error(tmp_path, text, tiny_lm, key="pruners.l0_rnn_pruner.finl_sparsity", line=7,
                 optimizer=sgd(tiny_lm), match="accepted")


def test_missing_argument_is_an_error(tmp_path, tiny_lm):
    text = GOOD.replace("    final_sparsity: 0.7\n", "")
    expect_error(tmp_path, text, tiny_lm, key="pruners.l0_rnn_pruner", match="final_sparsity",
                 optimizer=sgd(tiny_lm))


@pytest.mark.parametrize("value", ["1.0", "1.5", "-0.1", "'a lot'"])
def test_sparsity_outside_unit_interval(tmp_path, tiny_lm, value):
    text = GOOD.replace("final_sparsity: 0.7", f"final_sparsity: {value}")
    expect_error(tmp_path, text, tiny_lm, key="pruners.l0_rnn_pruner.final_sparsity", line=6,
                 optimizer=sgd(tiny_lm))


def test_policy_naming_undefined_instance(tmp_path, tiny_lm):
    text = GOOD.replace("instance_name: l0_rnn_pruner", "instance_name: l1_rnn_pruner")
    expect_error(tmp_path, text, tiny_lm, key="policies[0].pruner.instance_name", line=14,
                 optimizer=sgd(tiny_lm), match="not defined")


@pytest.mark.parametrize("old,new,key", [
    ("ending_epoch: 4", "ending_epoch: 0", "policies[0].ending_epoch"),
    ("ending_epoch: 4", "ending_epoch: 4.5", "policies[0].ending_epoch"),
    ("frequency: 1", "frequency: 0", "policies[0].frequency"),
    ("starting_epoch: 0\n    ending_epoch: 4", "starting_epoch: -2\n    ending_epoch: 4", "policies[0].starting_epoch"),
])
def test_bad_timing(tmp_path, tiny_lm, old, new, key):
    expect_error(tmp_path, GOOD.replace(old, new, 1), tiny_lm, key=key, optimizer=sgd(tiny_lm))


def test_epochs_and_range_together_is_an_error(tmp_path, tiny_lm):
    text = GOOD.replace("    frequency: 1\n", "    frequency: 1\n    epochs: [1, 2]\n", 1)
    expect_error(tmp_path, text, tiny_lm, optimizer=sgd(tiny_lm), match="either")


def test_unknown_top_level_key(tmp_path, tiny_lm):
    expect_error(tmp_path, GOOD + "prunners: {}\n", tiny_lm, key="prunners", optimizer=sgd(tiny_lm))


def test_unknown_policy_key(tmp_path, tiny_lm):
    text = GOOD.replace("    frequency: 1\n", "    frequncy: 1\n", 1)
    expect_error(tmp_path, text, tiny_lm, key="policies[0].frequncy", line=17, optimizer=sgd(tiny_lm))


def test_unknown_policy_arg(tmp_path, tiny_lm):
    text = GOOD.replace("      instance_name: l0_rnn_pruner\n",
                        "      instance_name: l0_rnn_pruner\n      args: {keep_masks: true}\n")
    expect_error(tmp_path, text, tiny_lm, key="policies[0].pruner.args.keep_masks", optimizer=sgd(tiny_lm))


def test_duplicate_key(tmp_path, tiny_lm):
    text = GOOD.replace("    final_sparsity: 0.7\n", "    final_sparsity: 0.7\n    final_sparsity: 0.8\n")
    expect_error(tmp_path, text, tiny_lm, line=7, match="duplicate key")


def test_weight_name_matching_nothing_suggests_real_names(tmp_path, tiny_lm):
    text = GOOD.replace("rnn.weight_hh_l0]", "rnn.weight_hh_l2]")
    err = expect_error(tmp_path, text, tiny_lm, key="pruners.l0_rnn_pruner.weights[1]", line=7,
                       optimizer=sgd(tiny_lm))
    assert "rnn.weight_hh_l2" in str(err) and "rnn.weight_hh_l1" in str(err)


def test_pattern_matching_nothing_is_an_error(tmp_path, tiny_lm):
    text = GOOD.replace("[rnn.weight_ih_l0, rnn.weight_hh_l0]", "['re:lstm\\.weight.*']")
    expect_error(tmp_path, text, tiny_lm, key="pruners.l0_rnn_pruner.weights[0]", optimizer=sgd(tiny_lm))


def test_lr_scheduler_without_optimizer(tmp_path, tiny_lm):
    expect_error(tmp_path, GOOD, tiny_lm, key="lr_schedulers.decay", match="optimizer")


def test_empty_and_non_mapping_files(tmp_path, tiny_lm):
    expect_error(tmp_path, "", tiny_lm, match="empty")
    expect_error(tmp_path, "- just\n- a list\n", tiny_lm, match="mapping")


def test_missing_file(tmp_path, tiny_lm):
    with pytest.raises(ScheduleError, match="cannot read"):
        compress.file_config(tiny_lm, None, str(tmp_path / "nope.yaml"))


def test_failed_load_leaves_optimizer_untouched(tmp_path, tiny_lm):
    optimizer = sgd(tiny_lm)
    before = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    bad = GOOD.replace("class: ExponentialLR\n    gamma: 0.9", "class: LinearLR\n    start_factor: 0.5") \
              .replace("instance_name: l0_rnn_pruner", "instance_name: nobody")
    expect_error(tmp_path, bad, tiny_lm, optimizer=optimizer)
    after = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    assert after == before


def _mutations(data, rng):
    """Random edits of a schedule dict: drop, retype or rename keys, shuffle values."""
    values = [None, -1, 0, 1, 2.5, "x", "*", [], {}, ["rnn.weight_ih_l0"], {"a": 1}, True, 10 ** 9, "re:(", 1.0]
    doc = yaml.safe_load(yaml.safe_dump(data))
    for _ in range(rng.randint(1, 3)):
        node, parent, key = doc, None, None
        for _ in range(rng.randint(0, 4)):
            if isinstance(node, dict) and node:
                parent, key = node, rng.choice(list(node))
            elif isinstance(node, list) and node:
                parent, key = node, rng.randrange(len(node))
            else:
                break
            node = parent[key]
        if parent is None:
            continue
        action = rng.random()
        if action < 0.4:
            parent[key] = rng.choice(values)
        elif action < 0.6 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.8 and isinstance(parent, dict):
            parent[str(key) + "_"] = parent.pop(key)
        else:
            parent[key] = rng.choice(values)
    return doc


def test_fuzzed_schedules_raise_only_schedule_errors(tiny_lm):
    rng = random.Random(0)
    base = yaml.safe_load(GOOD)
    outcomes = {"ok": 0, "error": 0}
    for _ in range(400):
        doc = _mutations(base, rng)
        try:
            compress.dict_config(tiny_lm, sgd(tiny_lm), doc)
            outcomes["ok"] += 1
        except ScheduleError as exc:
            assert exc.message
            outcomes["error"] += 1
    assert outcomes["error"] > 100 and outcomes["ok"] > 10

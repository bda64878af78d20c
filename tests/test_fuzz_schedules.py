"""Property-based tests of schedule loading: any schedule is either refused with a ScheduleError naming the file and
the key or line, changing nothing, or it loads and trains two epochs of the documented loop.

The schedules come from the registry's classes and their declared arguments, from structural mutations of the
shipped schedules and Distiller's, and from mutations of their YAML text. ``COMPRESS_FUZZ_EXAMPLES=N`` runs N
examples per property (see tests/fuzzing.py).
"""
from __future__ import annotations

import os
import sys
import tempfile

import pytest
import yaml
from fuzzing import (
    DISTILLER,
    MODELS,
    OPTIMIZERS,
    assert_unchanged,
    check_schedule_error,
    data,
    load_quietly,
    make_model,
    make_optimizer,
    model_for,
    mutated,
    outcome,
    profile,
    real_schedules,
    refused_at,
    schedules,
    snapshot,
    train,
)
from hypothesis import given
from hypothesis import strategies as st

from compress import ScheduleError
from compress.io.yamldoc import MAX_DEPTH
from compress.scheduling import read_schedule

FOLDER = tempfile.mkdtemp(prefix="compress-fuzz-")


def load_or_refuse_then_train(model_kind: str, optimizer_kind: str, text: str) -> None:
    """The property: refused cleanly and nothing changed, or loaded and two epochs train."""
    model = make_model(model_kind)
    optimizer = make_optimizer(optimizer_kind, model)
    path = os.path.join(FOLDER, "schedule.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    _, valid = data()
    before = snapshot(model, optimizer)
    try:
        scheduler = load_quietly(model, optimizer, path, valid)
    except ScheduleError as err:
        check_schedule_error(err, path)
        assert_unchanged(before, snapshot(model, optimizer))
        outcome(refused_at(err, path))
        return
    train(model, optimizer, scheduler)
    outcome("loaded and trained two epochs")


@profile(ci_examples=60)
@given(model_kind=st.sampled_from(MODELS), optimizer_kind=st.sampled_from(OPTIMIZERS), data=st.data())
def test_a_schedule_from_the_registry_is_refused_cleanly_or_trains(model_kind, optimizer_kind, data):
    schedule = data.draw(schedules(make_model(model_kind)))
    load_or_refuse_then_train(model_kind, optimizer_kind, yaml.safe_dump(schedule))


def test_there_are_real_schedules_to_mutate():
    assert real_schedules()
    if not DISTILLER:
        pytest.skip("Distiller's schedules (../shared/docs/distiller-schedules) are absent; only the shipped ones "
                    "are mutated")


@profile(ci_examples=60)
@given(path=st.sampled_from(real_schedules()), optimizer_kind=st.sampled_from(OPTIMIZERS), data=st.data())
def test_a_mutated_real_schedule_is_refused_cleanly_or_trains(path, optimizer_kind, data):
    model_kind = data.draw(st.sampled_from([model_for(path), "lstm_frozen", "lstm_weight_norm", "lstm_odd"]))
    schedule, _ = read_schedule(path)
    load_or_refuse_then_train(model_kind, optimizer_kind,
                              yaml.safe_dump(data.draw(mutated(schedule, make_model(model_kind)))))


YAML_SNIPPETS = ["&a ", "*a", "<<: *a", "<<: [*a, *a]", "!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!str ",
                 "!!null ", "!!binary ", "!!set ", "!!omap ", "!!python/object:os.system ", "!foo ", "? ", ": ",
                 "- ", "[", "]", "{", "}", ",", "\n", "  ", "#", "'", '"', "\\", "---\n", "...\n", "%YAML 1.1\n",
                 "abc", "2001-13-45", "maybe", "0x1f", "1e400", ".nan", "~", "\t", "\x00", "\ufeff", "é"]


@st.composite
def text_mutations(draw):
    path = draw(st.sampled_from(real_schedules()))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "insert", "delete", "truncate"]))
        if op == "insert":
            text = text[:at] + draw(st.one_of(st.sampled_from(YAML_SNIPPETS), st.text(max_size=3))) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 8)):]
        else:
            text = text[:at]
    return path, text


@profile(ci_examples=80)
@given(mutation=text_mutations(), optimizer_kind=st.sampled_from(OPTIMIZERS))
def test_a_schedule_with_mutated_yaml_text_is_refused_cleanly_or_trains(mutation, optimizer_kind):
    path, text = mutation
    load_or_refuse_then_train(model_for(path), optimizer_kind, text)


# -- YAML structure ------------------------------------------------------------------------------------------
def alias_tree(levels: int, width: int) -> str:
    lines = [f"a0: &a0 [{', '.join(['rnn.weight_hh_l0'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines + [f"policies: *a{levels - 1}", ""])


def merge_chain(length: int) -> str:
    lines = ["m0: &m0 {k0: 0}"] + [f"m{i}: &m{i} {{<<: *m{i - 1}, k{i}: {i}}}" for i in range(1, length)]
    return "\n".join(lines + [""])


def nested(depth: int) -> str:
    return "policies: " + "[" * depth + "]" * depth + "\n"


def flat(items: int) -> str:
    """``items`` level pruners, each with its policy: a valid schedule that grows with the file."""
    pruners = "".join(f"  p{i}: {{class: SparsityLevelParameterPruner, levels: {{rnn.weight_hh_l0: 0.5}}}}\n"
                      for i in range(items))
    policies = "".join(f"  - {{pruner: {{instance_name: p{i}}}, epochs: [{i}]}}\n" for i in range(items))
    return f"pruners:\n{pruners}policies:\n{policies}"


def shared_policies(items: int) -> str:
    """One policy and ``items`` aliases of it (each builds a policy of its own)."""
    return ("pruners:\n  p: {class: SparsityLevelParameterPruner, levels: {rnn.weight_hh_l0: 0.5}}\n"
            "policies:\n  - &p {pruner: {instance_name: p}, epochs: [0]}\n" + "  - *p\n" * items)


DOCUMENTS = {"alias tree": lambda n: alias_tree(n, 10), "merge chain": merge_chain, "nesting": nested, "flat": flat,
             "shared policies": shared_policies}


def load_calls(text: str) -> int:
    """Python function calls made by loading ``text`` as a schedule for a tiny model (file_config, error or not): a
    measure of the work that does not depend on the machine's load (tests do not time things)."""
    path = os.path.join(FOLDER, "work.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    model = make_model("lstm")
    calls = 0

    def count(frame, what, arg):
        nonlocal calls
        if what in ("call", "c_call"):
            calls += 1

    sys.setprofile(count)
    try:
        try:
            load_quietly(model, None, path, None)
        except ScheduleError:
            pass
    finally:
        sys.setprofile(None)
    return calls


@profile(ci_examples=12, long_share=0.1)
@given(kind=st.sampled_from(sorted(DOCUMENTS)), size=st.integers(2, 9))
def test_loading_work_grows_linearly_with_the_file_size(kind, size):
    """Making a repetitive document four times larger (an alias tree: three levels more, each ten times the last)
    scales the work of loading it by at most the growth of the text, plus a constant."""
    small, large = DOCUMENTS[kind](size), DOCUMENTS[kind](size * 4)
    ratio = load_calls(large) / max(load_calls(small), 1)
    assert ratio <= 1.5 * len(large) / len(small) + 1, (kind, size, ratio, len(large) / len(small))
    outcome(f"{kind}: work within the bound")


@pytest.mark.parametrize("text, line, message", [
    ("policies: &r [*r]\n", 1, "recursive alias"),
    ("a: &r {b: [*r]}\n", 1, "recursive alias"),
    (nested(MAX_DEPTH + 1), 1, f"nested deeper than {MAX_DEPTH}"),
    ("version: !!int abc\n", 1, "'abc' is not a valid !!int"),
    ("pruners:\n  p: {class: X}\nversion: !!timestamp 2001-13-45\n", 3, "!!timestamp"),
    ("version: !!bool maybe\n", 1, "!!bool"),
    ("pruners:\n  p: {class: A}\n  p: {class: B}\n", 3, "duplicate key 'p'"),
    ("pruners: {p: {class: A, class: B}}\n", 1, "duplicate key 'class'"),
])
def test_a_bad_yaml_structure_is_a_schedule_error_at_its_line(tmp_path, tiny_lm, text, line, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScheduleError) as info:
        load_quietly(tiny_lm, None, str(path), None)
    assert info.value.file == str(path) and info.value.line == line and message in str(info.value)


def test_a_merge_key_with_an_override_loads_and_the_override_wins(tmp_path, tiny_lm):
    path = tmp_path / "s.yaml"
    path.write_text("base: &base {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: 0.5,\n"
                    "              weights: [rnn.weight_hh_l0]}\n"
                    "pruners:\n  p: {<<: *base, final_sparsity: 0.6}\n"
                    "policies:\n  - {pruner: {instance_name: p}, starting_epoch: 0, ending_epoch: 2}\n")
    data, lines = read_schedule(path)
    del data["base"]
    assert data["pruners"]["p"]["final_sparsity"] == 0.6 and lines[("pruners", "p", "final_sparsity")] == 4
    with pytest.raises(ScheduleError, match=r"s\.yaml:1: .*unknown top-level key"):  # 'base' is not a section
        load_quietly(tiny_lm, None, str(path), None)


def inline_alias_tree(levels: int, width: int = 10) -> str:
    """A flow sequence whose anchors are defined inside it: ``width ** levels`` leaves once expanded."""
    if levels == 1:
        return f"&a1 [{', '.join(['rnn.weight_hh_l0'] * width)}]"
    return f"&a{levels} [{inline_alias_tree(levels - 1, width)}, {', '.join([f'*a{levels - 1}'] * (width - 1))}]"


def test_a_value_of_a_billion_leaves_through_aliases_is_refused_at_once_with_a_short_message(tmp_path, tiny_lm):
    path = tmp_path / "s.yaml"
    path.write_text("pruners:\n  p: {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: 0.5,\n"
                    f"      weights: {inline_alias_tree(9)}}}\n")
    with pytest.raises(ScheduleError) as info:
        load_quietly(tiny_lm, None, str(path), None)
    assert info.value.key == "pruners.p.weights[0]" and info.value.line == 3 and len(str(info.value)) < 400


def test_a_bad_lr_scheduler_argument_is_refused_at_load_naming_it(tmp_path, tiny_lm):
    path = tmp_path / "s.yaml"
    path.write_text("lr_schedulers:\n  decay: {class: StepLR, step_size: 0}\n"
                    "policies:\n  - {lr_scheduler: {instance_name: decay}, starting_epoch: 0, ending_epoch: 3}\n")
    optimizer = make_optimizer("sgd", tiny_lm)
    before = snapshot(tiny_lm, optimizer)
    with pytest.raises(ScheduleError, match=r"s\.yaml:2: lr_schedulers\.decay: StepLR .*ZeroDivision.*step_size=0"):
        load_quietly(tiny_lm, optimizer, str(path), None)
    assert_unchanged(before, snapshot(tiny_lm, optimizer))


@pytest.mark.parametrize("fragment, key", [
    ("policies:\n  - {pruner: {instance_name: [p]}, epochs: [0]}\n", "policies[0].pruner.instance_name"),
    ("pruners:\n  p: {class: [X]}\n", "pruners.p.class"),
    ("pruners:\n  p: {class: SparsityLevelParameterPruner, levels: {null: 0.5}}\n", "pruners.p.levels.None"),
    ("pruners:\n  ? [a]\n  : {class: X}\n", None),
])
def test_a_non_string_where_a_name_belongs_is_a_schedule_error_naming_the_key(tmp_path, tiny_lm, fragment, key):
    path = tmp_path / "s.yaml"
    path.write_text(fragment)
    with pytest.raises(ScheduleError) as info:
        load_quietly(tiny_lm, None, str(path), None)
    assert info.value.line is not None and "TypeError" not in str(info.value)
    if key:
        assert info.value.key == key, str(info.value)


LEVEL = "pruners:\n  p: {class: SparsityLevelParameterPruner, levels: {rnn.weight_hh_l0: 0.5}}\n"
ON_LEVEL = "policies:\n  - {pruner: {instance_name: p, args: {levels: {rnn.weight_hh_l0: %s}}}, epochs: [0]}\n"
USES_P = "policies:\n  - {pruner: {instance_name: p}, epochs: [0]}\n"


@pytest.mark.parametrize("text, key", [
    ("pruners:\n  p: {class: SparsityLevelParameterPruner, levels: {rnn.weight_hh_l0: .nan}}\n" + USES_P,
     "pruners.p.levels.rnn.weight_hh_l0"),   # a NaN level pruned 100% of the weight
    ("pruners:\n  p: {class: MagnitudeParameterPruner, thresholds: {rnn.weight_hh_l0: .inf}}\n" + USES_P,
     "pruners.p.thresholds.rnn.weight_hh_l0"),
    ("pruners:\n  p: {class: AutomatedGradualPruner, initial_sparsity: 0.1, final_sparsity: .nan,\n"
     "      weights: [rnn.weight_hh_l0]}\n" + USES_P, "pruners.p.final_sparsity"),
    ("regularizers:\n  r: {class: L1Regularizer, reg_regims: {rnn.weight_hh_l0: .nan}}\n"
     "policies:\n  - {regularizer: {instance_name: r}, epochs: [0]}\n", "regularizers.r.reg_regims.rnn.weight_hh_l0"),
    (LEVEL + ON_LEVEL % "1.5", "policies[0].pruner.args.levels.rnn.weight_hh_l0"),   # loaded, crashed in training
    (LEVEL + ON_LEVEL % "1.0", "policies[0].pruner.args.levels.rnn.weight_hh_l0"),   # pruned everything
    (LEVEL + ON_LEVEL % "-1", "policies[0].pruner.args.levels.rnn.weight_hh_l0"),    # was ignored
    (LEVEL + ON_LEVEL % ".nan", "policies[0].pruner.args.levels.rnn.weight_hh_l0"),
])
def test_a_value_out_of_its_range_or_not_finite_is_refused_at_load_naming_its_key(tmp_path, tiny_lm, text, key):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScheduleError) as info:
        load_quietly(tiny_lm, make_optimizer("sgd", tiny_lm), str(path), None)
    assert info.value.key == key and info.value.line is not None, str(info.value)

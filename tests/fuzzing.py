"""What the property-based tests share: tiny models, the documented loop, snapshots, and Hypothesis strategies
for schedules (from the registry's classes and their declared arguments, and mutations of real schedules).

Profiles: a bounded one by default (CI); ``COMPRESS_FUZZ_EXAMPLES=N`` runs ``N`` examples per property
(not derandomized) for the long run.
"""
from __future__ import annotations

import atexit
import glob
import inspect
import json
import os
import pkgutil
import re
import shlex
import warnings
from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
from conftest import DISTILLER_SCHEDULES, ROOT

hypothesis = pytest.importorskip("hypothesis", reason="the property-based tests need hypothesis "
                                                      "(pip install -e '.[test]')")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import compress  # noqa: E402
from compress.registry import SECTIONS, Modes  # noqa: E402
from compress.scheduling.config import INJECTED, POLICY_KINDS, TOP_LEVEL_KEYS  # noqa: E402
from compress.scheduling.policies.pruning import PRUNING_POLICY_ARGS  # noqa: E402
from compress_models import ONLSTMModel, RHNModel, RNNModel, batchify, evaluate, train_epoch  # noqa: E402

LONG = int(os.environ.get("COMPRESS_FUZZ_EXAMPLES", "0") or 0)
SHIPPED = sorted(glob.glob(os.path.join(ROOT, "schedules", "*.yaml")))
DISTILLER = sorted(glob.glob(os.path.join(DISTILLER_SCHEDULES, "*.yaml")))


def profile(ci_examples: int, long_share: float = 1.0) -> settings:
    """``ci_examples`` derandomized examples, or ``long_share`` of ``COMPRESS_FUZZ_EXAMPLES`` random ones."""
    examples = max(ci_examples, int(LONG * long_share)) if LONG else ci_examples
    return settings(max_examples=examples, deadline=None, derandomize=not LONG, database=None,
                    print_blob=True, suppress_health_check=list(HealthCheck))


OUTCOMES: Dict[str, Dict[str, int]] = {}


def outcome(what: str) -> None:
    """Count an example's outcome under its test (and tell Hypothesis's statistics); with
    ``COMPRESS_FUZZ_REPORT=path`` the counts are written there as JSON when the run ends."""
    hypothesis.event(what)
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
    counts = OUTCOMES.setdefault(test, {})
    counts[what] = counts.get(what, 0) + 1


def refused_at(err: Exception, path: str) -> str:
    """Where a refusal points, for the counts: the schedule's top-level section or the file's field that the
    error names (``pruners``, ``optimizer``), or the text itself (YAML, bytes) when it names none."""
    key = getattr(err, "key", None)
    if isinstance(err, compress.ScheduleError):
        if not key:
            return "ScheduleError at a line (YAML)"
        top = re.split(r"[.\[]", key)[0]
        return f"ScheduleError in {top}" if top in TOP_LEVEL_KEYS else "ScheduleError: unknown top-level key"
    rest = str(err).split(path, 1)[-1]
    if re.match(r":\d+: invalid YAML", rest):
        return "CheckpointError at a line (YAML)"
    rest = rest.lstrip(": ")
    field = re.match(r"(\w+)[.\[:]", rest)
    if field and field.group(1) in ("model", "optimizer", "scheduler", "rng", "extra", "version", "formats",
                                    "reduce_range", "state_dict", "format", "masks", "policies", "position"):
        return f"CheckpointError in {field.group(1)}"
    if rest.startswith("damaged tensor"):
        return "CheckpointError in tensors"
    if "SHA-256" in rest:
        return "CheckpointError: checksum"
    if re.match(r"[\w\[\]]+(\.[\w\[\]]+)+: ", rest):  # a statistics file's module and key
        return "CheckpointError in a module's key"
    return "CheckpointError: the file (bytes, kind)"


def _write_outcomes(path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"examples_per_property": LONG or "ci", "outcomes": OUTCOMES,
                   "total": sum(sum(c.values()) for c in OUTCOMES.values())}, f, indent=1, sort_keys=True)


if os.environ.get("COMPRESS_FUZZ_REPORT"):
    atexit.register(_write_outcomes, os.environ["COMPRESS_FUZZ_REPORT"])


# -- models and the loop ---------------------------------------------------------------------------------------
NTOKEN, BPTT, BATCH = 30, 4, 3
MODELS = ("lstm", "lstm_frozen", "lstm_weight_norm", "lstm_odd", "gru", "rhn", "onlstm")


def make_model(kind: str) -> torch.nn.Module:
    """A tiny word LM; the variants hold what the schedule must resolve with care: a frozen weight, a weight-norm
    parametrization, zero-size and 0-dim parameters that the forward pass never uses."""
    torch.manual_seed(0)
    if kind == "rhn":
        return RHNModel(NTOKEN, 8, 8, 1, 2, 0.0, 0.0, 0.0, 0.0, True, True)
    if kind == "onlstm":
        return ONLSTMModel(NTOKEN, 8, 8, 2, 4, 0.0, 0.0, 0.0, 0.0, 0.0, True)
    model = RNNModel("GRU" if kind == "gru" else "LSTM", NTOKEN, 8, 8, 2, dropout=0.0,
                     tie_weights=kind != "lstm_weight_norm")
    if kind == "lstm_frozen":
        model.rnn.weight_ih_l0.requires_grad_(False)
    elif kind == "lstm_weight_norm":
        torch.nn.utils.parametrizations.weight_norm(model.decoder)
    elif kind == "lstm_odd":
        model.register_parameter("empty", torch.nn.Parameter(torch.zeros(0, 4)))
        model.register_parameter("scale", torch.nn.Parameter(torch.tensor(1.0)))
    return model


def model_for(path: str) -> str:
    """The tiny model a schedule file's ``# example-args:`` ask for."""
    args: List[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("# example-args:"):
                args += shlex.split(line.split(":", 1)[1])
    if "--model" in args:
        return {"RHN": "rhn", "ONLSTM": "onlstm", "GRU": "gru"}.get(args[args.index("--model") + 1], "lstm")
    return "lstm"


OPTIMIZERS = ("sgd", "momentum", "adam", "sparse_ntasgd")


def make_optimizer(kind: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if kind == "momentum":
        return torch.optim.SGD(params, lr=0.5, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(params, lr=0.01)
    if kind == "sparse_ntasgd":
        return compress.optim.SparseNTASGD(params, lr=1.0)
    return torch.optim.SGD(params, lr=1.0)


def data():
    g = torch.Generator().manual_seed(1)
    train = batchify(torch.randint(0, NTOKEN, (BATCH * (BPTT * 3 + 1),), generator=g), BATCH)
    valid = batchify(torch.randint(0, NTOKEN, (BATCH * (BPTT + 1),), generator=g), BATCH)
    return train, valid


def evaluator(valid):
    return lambda m: evaluate(m, valid, BPTT, BATCH)


def train(model, optimizer, scheduler, epochs=range(2)) -> None:
    """The documented loop (README "Your own training loop"): ``train_epoch`` between the epoch hooks."""
    train_data, valid = data()
    for epoch in epochs:
        scheduler.on_epoch_begin(epoch, optimizer)
        train_epoch(model, train_data, optimizer, scheduler, epoch, bptt=BPTT, max_batches=3)
        scheduler.on_epoch_end(epoch, optimizer, metrics={"min": evaluate(model, valid, BPTT, BATCH)})


# -- snapshots: a failed load changes nothing ------------------------------------------------------------------
def _hooks(model):
    out = []
    for name, m in model.named_modules():
        out.append((name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)))
    for name, p in model.named_parameters():
        out.append((name, len(p._backward_hooks or {})))
    return out


def _plain(value):
    if torch.is_tensor(value):
        return ("tensor", value.detach().clone())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(a, b) -> bool:
    if isinstance(a, tuple) and len(a) == 2 and a[0] == "tensor":
        return (isinstance(b, tuple) and len(b) == 2 and b[0] == "tensor" and a[1].shape == b[1].shape
                and a[1].dtype == b[1].dtype and torch.equal(a[1], b[1]))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN equals NaN here


def snapshot(model, optimizer=None, scheduler=None) -> Dict[str, Any]:
    """Everything a load may not change when it fails: modules, weights and buffers, hooks, optimizer, RNG, and
    the scheduler's state (masks, policies, position)."""
    shot = {"modules": [(n, type(m).__name__) for n, m in model.named_modules()],
            "state": _plain(dict(model.state_dict())), "hooks": _hooks(model),
            "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
            "rng": ("tensor", torch.get_rng_state())}
    if optimizer is not None:
        shot["optimizer"] = _plain(optimizer.state_dict())
        shot["optimizer_step"] = "step" in optimizer.__dict__
    if scheduler is not None:
        shot["scheduler"] = _plain(scheduler.state_dict())
        shot["policies"] = [(k, n, type(p).__name__) for k, n, p in scheduler.policies]
    return shot


def assert_unchanged(before, after) -> None:
    for key in before:
        assert _same(before[key], after[key]), f"a failed load changed the {key}"


# -- strategies: values ----------------------------------------------------------------------------------------
def _vocabulary() -> List[str]:
    """Every option word the package declares: registered modes, module-level tuples of strings, class names."""
    words = set()
    for info in pkgutil.walk_packages(compress.__path__, "compress."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = __import__(info.name, fromlist=["_"])
        except Exception:  # a module with an optional dependency
            continue
        for value in vars(module).values():
            if isinstance(value, Modes):
                words.update(value)
            elif isinstance(value, (tuple, list)) and value and all(isinstance(v, str) for v in value):
                words.update(v for v in value if re.fullmatch(r"[A-Za-z_][\w+.-]{0,30}", v))
    for registry in SECTIONS.values():
        words.update(registry.names())
    return sorted(words)


VOCABULARY = _vocabulary()

finite_numbers = st.one_of(st.sampled_from([0, 1, 2, 0.0, 0.5, 0.9, 0.99, 1.0, -1, -0.5, 1e-9, 3, 10]),
                           st.floats(0, 1), st.integers(-5, 40), st.floats(-1e3, 1e3))
numbers = st.one_of(finite_numbers, st.sampled_from([float("nan"), float("inf"), -float("inf"), 10 ** 30, 1e300,
                                                     2 ** 63, -(2 ** 63)]))
words = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=6))
scalars = st.one_of(st.none(), st.booleans(), numbers, words)
junk = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.one_of(words, st.integers(0, 3)), inner,
                                                                     max_size=3)), max_leaves=6)


def weight_names(model) -> List[str]:
    index = compress.CompressionScheduler(model).masks.index
    return index.names()


def weight_patterns(model):
    names = weight_names(model)
    return st.one_of(st.sampled_from(names), st.sampled_from(["*", "*.weight", "rnn.weight_*", "rnn.*_l1", "*bias*",
                                                              "re:rnn\\.weight_hh_l\\d", "encoder.weight",
                                                              "decoder.weight", "nothing", "re:(", "[", ""]))


def weight_spec(model):
    return st.one_of(st.lists(weight_patterns(model), min_size=1, max_size=4), weight_patterns(model))


def per_weight(model, value):
    return st.dictionaries(st.one_of(weight_patterns(model), st.just("*")), value, min_size=1, max_size=4)


def value_for(model, cls, name: str, param: inspect.Parameter, sloppiness: int = 1):
    """A strategy for argument ``name`` of ``cls``: what its annotation, name and default suggest. At sloppiness 0
    the values stay in the ranges such arguments usually take (most load); above it, edge and out-of-range values
    come too, and one time in ``10 / sloppiness`` anything at all."""
    annotation = str(param.annotation)
    careful = sloppiness == 0
    fraction_like = st.floats(0, 0.9) if careful else st.one_of(
        st.floats(0, 1), st.sampled_from([0.0, 0.5, 0.8, 0.999, 1.0, 1.5, -0.1]))
    if name == "weights" or "WeightSpec" in annotation:
        valid = weight_spec(model)
    elif name == "reg_regims" and cls.__name__ == "GroupLassoRegularizer":
        valid = per_weight(model, st.tuples(st.floats(0, 0.1), st.sampled_from(
            ["Rows", "Cols", "Rows+Cols"] + ([] if careful else ["Chans"]))).map(list))
    elif name == "reg_regims":
        valid = per_weight(model, st.floats(0, 0.1))
    elif "Mapping[str, float]" in annotation or name in ("levels", "sensitivities", "thresholds"):
        valid = per_weight(model, fraction_like)
    elif name == "groups":
        valid = st.dictionaries(words, weight_spec(model), min_size=1, max_size=3)
    elif name == "milestones":
        valid = st.lists(st.integers(0, 6), max_size=4).map(sorted) if careful else st.lists(finite_numbers,
                                                                                             max_size=4)
    elif name == "gammas":
        valid = st.lists(st.floats(0.1, 1) if careful else finite_numbers, max_size=4)
    elif "bool" in annotation:
        valid = st.booleans()
    elif "int" in annotation and "float" not in annotation:
        valid = st.integers(1, 5) if careful else st.one_of(st.integers(-2, 30), st.sampled_from([0, 1, 2, 5]))
    elif "float" in annotation:
        valid = st.floats(0.01, 0.9) if careful else st.one_of(fraction_like, finite_numbers)
    elif "str" in annotation:
        valid = words
    else:
        valid = scalars
    if param.default is not inspect.Parameter.empty:
        valid = st.one_of(st.just(param.default), st.just(param.default), valid)
        if careful and isinstance(param.default, str):
            valid = st.one_of(*[st.just(param.default)] * 3, valid)
    if "Optional" in annotation or param.default is None:
        valid = st.one_of(st.none(), valid)
    if not sloppiness:
        return valid
    return st.integers(0, 9).flatmap(lambda roll: junk if roll < sloppiness else valid)


def arguments(cls) -> List[Tuple[str, inspect.Parameter]]:
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return []
    return [(n, p) for n, p in list(params.items())[1:]
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in INJECTED]


@st.composite
def component(draw, model, section: str, sloppiness: int = 1):
    """``{class: <a registered class>, <its declared arguments>...}``: required ones usually given, optional ones
    sometimes, each valid or not; now and then an unknown argument or a class name that is not registered."""
    registry = SECTIONS[section]
    name = draw(st.sampled_from(list(registry.names())))
    if sloppiness and draw(st.integers(0, 29)) == 0:
        name = draw(st.sampled_from(["NoSuchClass", "", "FilterRemover"]))
    spec: Dict[str, Any] = {"class": name}
    if name in registry:
        for arg, param in arguments(registry.get(name)):
            required = param.default is inspect.Parameter.empty
            if draw(st.integers(0, 9)) < (9 if required else 5):
                spec[arg] = draw(value_for(model, registry.get(name), arg, param, sloppiness))
    if sloppiness and draw(st.integers(0, 29)) == 0:
        spec[draw(words)] = draw(junk)
    return spec


valid_timings = st.one_of(
    st.fixed_dictionaries({"starting_epoch": st.integers(0, 2), "ending_epoch": st.integers(1, 6)},
                          optional={"frequency": st.integers(1, 3)}),
    st.fixed_dictionaries({"epochs": st.lists(st.integers(0, 4), min_size=1, max_size=4)}),
)
timings = st.one_of(valid_timings, st.dictionaries(st.sampled_from(["epochs", "starting_epoch", "ending_epoch",
                                                                    "frequency"]), junk, max_size=3))


@st.composite
def policy_args(draw, model, kind: str, sloppiness: int = 1):
    if draw(st.integers(0, 2)) > 0:
        return None
    if kind == "pruner":
        keys = draw(st.lists(st.sampled_from(PRUNING_POLICY_ARGS), max_size=3, unique=True))
        args = {k: draw(per_weight(model, st.floats(0, 1)) if k == "levels" else
                        st.integers(0, 3) if k == "mini_batch_pruning_frequency" else st.booleans())
                for k in keys}
    elif kind == "regularizer":
        args = {"keep_mask": draw(st.booleans())}
    else:
        args = {}
    if sloppiness and draw(st.integers(0, 9)) == 0:
        args[draw(words)] = draw(junk)
    return args


@st.composite
def schedules(draw, model):
    """A schedule built from the registry: a few components of any section, and policies that use them."""
    schedule: Dict[str, Any] = {}
    sloppiness = draw(st.sampled_from([0, 0, 1, 3]))  # how often a value is anything at all, in tenths
    if draw(st.booleans()):
        schedule["version"] = draw(junk) if sloppiness and draw(st.integers(0, 9)) == 0 else 1
    sections = ["pruners"] * 4 + ["regularizers", "lr_schedulers", "lr_schedulers", "extensions", "quantizers"]
    for section in draw(st.lists(st.sampled_from(sections), min_size=1, max_size=2)):
        names = ["a"] if draw(st.booleans()) else draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1,
                                                                max_size=2, unique=True))
        schedule.setdefault(section, {}).update({n: draw(component(model, section, sloppiness)) for n in names})
    kinds = {s: k for k, s in POLICY_KINDS.items()}
    policies = []
    for section, items in schedule.items():
        if section not in kinds:
            continue
        for name in items:
            if draw(st.integers(0, 9)) == 0:
                continue  # defined, unused
            policy = {kinds[section]: {"instance_name": name}}
            args = draw(policy_args(model, kinds[section], sloppiness))
            if args is not None:
                policy[kinds[section]]["args"] = args
            policy.update(draw(timings if sloppiness else valid_timings))
            policies.append(policy)
    if sloppiness and draw(st.integers(0, 19)) == 0:
        policies.append(draw(junk))
    if policies or draw(st.booleans()):
        schedule["policies"] = policies
    return schedule


# -- strategies: mutations of real schedules -------------------------------------------------------------------
def _paths(data, prefix=()) -> List[Tuple]:
    out = [prefix]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _paths(v, prefix + (i,))
    return out


def _get(data, path):
    for part in path:
        data = data[part]
    return data


@st.composite
def mutated(draw, data, model):
    """``data`` with one to three structural changes: a value replaced (by another valid-looking one or anything),
    a key or item removed, duplicated, renamed or added, a value wrapped in a list or a class swapped."""
    import copy

    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "duplicate", "rename", "add", "wrap", "class"]))
        if not path:
            if op == "replace":
                data = draw(junk)
            continue
        parent, last = _get(data, path[:-1]), path[-1]
        value = parent[last]
        if op == "replace":
            parent[last] = draw(st.one_of(junk, numbers, words, weight_spec(model), timings))
        elif op == "delete":
            del parent[last]
        elif op == "duplicate":
            if isinstance(parent, list):
                parent.insert(last, copy.deepcopy(value))
            else:
                parent[draw(words)] = copy.deepcopy(value)
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.one_of(words, st.sampled_from(list(PRUNING_POLICY_ARGS) + list(POLICY_KINDS))))] = \
                parent.pop(last)
        elif op == "add" and isinstance(value, dict):
            value[draw(st.one_of(words, st.sampled_from(["args", "levels", "weights", "class", "epochs"])))] = \
                draw(junk)
        elif op == "wrap":
            parent[last] = [value]
        elif op == "class" and isinstance(value, dict) and "class" in value:
            section = path[0] if path[0] in SECTIONS else "pruners"
            value["class"] = draw(st.sampled_from(list(SECTIONS[section].names())))
    return data


def real_schedules() -> List[str]:
    return SHIPPED + DISTILLER


def load_quietly(model, optimizer, path, valid):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compress.file_config(model, optimizer, path, evaluate=evaluator(valid))


def check_schedule_error(err: compress.ScheduleError, path: str) -> None:
    """A ScheduleError names the file, and the key or the line."""
    assert err.file == path and path in str(err), str(err)
    assert err.key or err.line or "the schedule is empty" in err.message, f"names neither key nor line: {err}"
    assert "Traceback" not in str(err)
    internal = re.search(r"(\w+) rejected its arguments: (TypeError|AttributeError|KeyError|IndexError|"
                         r"ZeroDivisionError)", err.message)
    if internal:  # the library's own classes check their arguments; torch's speak for themselves
        owners = [r.get(internal.group(1)) for r in SECTIONS.values() if internal.group(1) in r]
        assert not any(c.__module__.startswith("compress") for c in owners), f"an internal error text: {err}"
    assert not err.message.startswith(("TypeError", "AttributeError", "KeyError", "IndexError")), str(err)


def find(text: str, *needles: str) -> Optional[str]:
    return next((n for n in needles if n in text), None)

"""Results of long runs: one small JSON file per finished run under ``results/``, and the tables made from them.

Runs of published scale take more than one session's device time, so each finished run is committed as a file
``results/<study>/<name>.json`` and the tables are assembled from whatever files exist
(``examples/results_table.py``). A file holds what makes the row checkable: the exact command, the git
revision, the device, the date, the epochs, and the figures; a row that reproduces a paper carries the paper's
figures in ``published``.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = write_result(folder, study="selfish_ptb", name="dense", command="python examples/word_lm.py ...",
    ...                     epochs=100, sparsity=0.0, nnz=66_000_000, val_ppl=80.1, test_ppl=77.2,
    ...                     seconds_per_epoch=9.5, device="NVIDIA H200", git_revision="0123abc",
    ...                     published={"test_ppl": 78.0, "source": "Selfish-RNN, Table 2"})
    >>> os.path.relpath(path, folder)
    'selfish_ptb/dense.json'
    >>> [(r["name"], r["test_ppl"], r["published"]["test_ppl"]) for r in read_results(folder)]
    [('dense', 77.2, 78.0)]
    >>> table = study_table(read_results(folder), "selfish_ptb")
    >>> "published test" in table.splitlines()[0], "-1.03%" in table
    (True, True)
"""
from __future__ import annotations

import datetime
import glob
import json
import os
import platform
import re
import subprocess
from typing import Any, Callable, Dict, List, Mapping

import torch
from tabulate import tabulate

from compress.errors import ArgumentError, CompressError
from compress.io.files import atomic_write
from compress.options import fraction, integer, mapping, number

__all__ = ["REQUIRED", "ResultsFileError", "check_result", "write_result", "read_results", "study_table",
           "study_tables", "epoch_seconds_from_log"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _file_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ArgumentError(key, f"expected a name of letters, digits and . _ + - (it names a file), got {value!r}")
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ArgumentError(key, f"expected a non-empty string, got {value!r}")
    return value


def _perplexity(key: str, value: Any) -> float:
    return number(key, value, minimum=1.0)


#: The fields every result file must have, and how each is checked.
REQUIRED: Dict[str, Callable[[str, Any], Any]] = {
    "study": _file_name,
    "name": _file_name,
    "command": _text,
    "epochs": lambda k, v: integer(k, v, minimum=1),
    "sparsity": lambda k, v: fraction(k, v),
    "nnz": lambda k, v: integer(k, v, minimum=0),
    "val_ppl": _perplexity,
    "test_ppl": _perplexity,
    "seconds_per_epoch": lambda k, v: number(k, v, minimum=0.0),
    "git_revision": _text,
    "device": _text,
    "torch": _text,
    "date": _text,
}
#: Optional fields with a fixed meaning (any other JSON value may be added, e.g. ``notes``).
OPTIONAL: Dict[str, Callable[[str, Any], Any]] = {
    "label": _text,                                   # the row's text in the table (default: name)
    "order": lambda k, v: integer(k, v),              # rows sort by (order, name)
    "published": lambda k, v: _published(k, v),       # the paper's figures for this row
}


def _published(key: str, value: Any) -> Dict[str, Any]:
    value = dict(mapping(key, value))
    for figure in ("val_ppl", "test_ppl"):
        if figure in value:
            value[figure] = _perplexity(f"{key}.{figure}", value[figure])
    if not {"val_ppl", "test_ppl"} & set(value):
        raise ArgumentError(key, "expected val_ppl and/or test_ppl (the paper's figures), and optionally source")
    return value


class ResultsFileError(CompressError, ValueError):
    """A results file is not valid JSON or misses or mangles a field; the message names the file."""


def _git_revision() -> str:
    """The checkout's commit, with ``+dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                 text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if changed else "")


def _device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()})"


def check_result(fields: Mapping[str, Any]) -> Dict[str, Any]:
    """The fields of one result, checked and in canonical types (required ones first).

    Raises:
        ArgumentError: a required field is missing, or a field of fixed meaning has a wrong value, or a value is
            not plain JSON data (NaN and infinity included).
    """
    missing = [k for k in REQUIRED if k not in fields]
    if missing:
        raise ArgumentError(missing[0], f"missing (a result needs {', '.join(REQUIRED)})")
    out = {k: check(k, fields[k]) for k, check in REQUIRED.items()}
    for key, value in fields.items():
        if key in out:
            continue
        out[key] = OPTIONAL[key](key, value) if key in OPTIONAL else value
        try:
            json.dumps(out[key], allow_nan=False)
        except (TypeError, ValueError):
            raise ArgumentError(key, f"expected plain JSON data (no NaN or infinity), got {value!r}") from None
    return out


def write_result(path_or_dir: str, **fields: Any) -> str:
    """Check ``fields`` and write them as one JSON file, atomically; returns the file's path.

    ``git_revision`` (of the current directory's checkout), ``device`` (this machine's GPU, else its CPU),
    ``torch`` (the version) and ``date`` (UTC) are filled in when not given; give ``device`` and
    ``git_revision`` when the run was made elsewhere.

    Args:
        path_or_dir: a ``.json`` file, or a folder: the file is then ``<folder>/<study>/<name>.json``.
        fields: the result (see :data:`REQUIRED`; ``published``, ``label``, ``order`` and any other JSON
            fields may be added).

    Raises:
        ArgumentError: as :func:`check_result`; nothing is written.
    """
    fields.setdefault("git_revision", _git_revision())
    fields.setdefault("device", _device_name())
    fields.setdefault("torch", torch.__version__)
    fields.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    result = check_result(fields)
    path = os.fspath(path_or_dir)
    if not path.endswith(".json"):
        path = os.path.join(path, result["study"], result["name"] + ".json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, "w") as f:
        f.write(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return path


def read_results(folder: str) -> List[Dict[str, Any]]:
    """Every run record ``folder/<study>/<name>.json``, checked; sorted by study, order and name.

    Files deeper down (``folder/<study>/search/...``, ``.../records/...``) or at the top are other records (a
    search's study, a claim's table) and are not read here.

    Raises:
        ResultsFileError: a file is not JSON, or not a valid result (the message names the file and the field).
    """
    rows = []
    for path in sorted(glob.glob(os.path.join(glob.escape(os.fspath(folder)), "*", "*.json"))):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ResultsFileError(f"{path}: not a readable JSON file ({exc})") from None
        if not isinstance(data, dict):
            raise ResultsFileError(f"{path}: expected a JSON object, got {type(data).__name__}")
        try:
            rows.append(check_result(data))
        except ArgumentError as exc:
            raise ResultsFileError(f"{path}: {exc}") from None
    return sorted(rows, key=lambda r: (r["study"], r.get("order", 0), r["name"]))


def _signed_percent(ours: float, theirs: float) -> str:
    return f"{100 * (ours - theirs) / theirs:+.2f}%"


def study_table(rows: List[Mapping[str, Any]], study: str, tablefmt: str = "github",
                commands: bool = False) -> str:
    """The table of one study's rows; published figures beside ours where a row has them.

    Args:
        rows: results, as :func:`read_results` returns them (other studies' rows are left out).
        study: the study to print.
        tablefmt: a ``tabulate`` format (``github`` for the README, ``psql`` for a terminal).
        commands: add each row's command below the table.
    """
    rows = [r for r in rows if r["study"] == study]
    published = any("published" in r for r in rows)
    headers = ["run", "nonzeros", "sparsity (%)", "val ppl", "test ppl"]
    if published:
        headers += ["published val", "published test", "test vs published"]
    headers += ["s/epoch", "epochs", "device", "revision"]
    body = []
    for r in rows:
        line = [r.get("label", r["name"]), f"{r['nnz']:,}", f"{100 * r['sparsity']:.2f}", f"{r['val_ppl']:.2f}",
                f"{r['test_ppl']:.2f}"]
        if published:
            paper = r.get("published", {})
            line += [f"{paper['val_ppl']:.2f}" if "val_ppl" in paper else "",
                     f"{paper['test_ppl']:.2f}" if "test_ppl" in paper else "",
                     _signed_percent(r["test_ppl"], paper["test_ppl"]) if "test_ppl" in paper else ""]
        line += [f"{r['seconds_per_epoch']:.1f}", r["epochs"], r["device"], r["git_revision"][:10]]
        body.append(line)
    text = tabulate(body, headers=headers, tablefmt=tablefmt, disable_numparse=True)
    if commands:
        text += "\n\n" + "\n".join(f"{r.get('label', r['name'])}:\n    {r['command']}" for r in rows)
    return text


def study_tables(rows: List[Mapping[str, Any]], tablefmt: str = "github", commands: bool = False) -> Dict[str, str]:
    """One :func:`study_table` per study, in the studies' sorted order."""
    return {s: study_table(rows, s, tablefmt, commands) for s in sorted({r["study"] for r in rows})}


_EPOCH_LINE = re.compile(r"^\| end of epoch\s+(\d+) \|\s*([0-9.]+)s \|", re.MULTILINE)


def epoch_seconds_from_log(text: str) -> Dict[int, float]:
    """``{epoch: seconds}`` from the ``| end of epoch   N |  9.5s |`` lines of ``examples/word_lm.py``'s output.

    A resumed run repeats no epoch; when a log holds one twice (a run restarted without ``--resume``) the last
    line counts.

    Example:
        >>> epoch_seconds_from_log("| end of epoch   0 |   9.4s | lr 40 |\\n| end of epoch   1 |   9.6s | lr 40 |")
        {0: 9.4, 1: 9.6}
    """
    return {int(epoch): float(seconds) for epoch, seconds in _EPOCH_LINE.findall(text)}


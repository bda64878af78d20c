"""Every command of the README's fenced ``bash`` blocks, run as written (shrunk by appended flags where it is long).

Each command is classified by :data:`PLAN`: run (with the flags appended to shrink it; argparse keeps the last
value of a flag, so the command's own flags are still parsed and checked; a synopsis' optional ``[...]`` parts
are left out), or skipped with the reason (a GPU, the
real corpora, an install). A README command that no entry matches fails :func:`test_every_readme_command_is_planned`,
so a new command cannot go untested by accident. Commands run in this process (``main(argv)`` of the script, or
``compress.cli.main``), in a temporary folder holding ``schedules`` so relative paths resolve as in the
repository.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from typing import List, Optional, Tuple

import pytest
import torch
from conftest import ROOT, load_example

from compress.reports import read_metrics_csv

README = os.path.join(ROOT, "README.md")
TINY = ["--epochs", "1", "--max-train-batches", "2", "--synthetic-tokens", "2000", "--no-progress"]


def readme_commands() -> List[str]:
    """Commands of the README's fenced bash blocks: continuation lines joined, comments dropped, ``&&`` split."""
    text = open(README, encoding="utf-8").read()
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            commands.extend(part.strip() for part in line.split("&&") if part.strip())
    return commands


# (pattern the command matches, flags appended to shrink it, or the reason it is skipped)
PLAN: List[Tuple[str, Optional[List[str]], str]] = [
    (r"^pip install", None, "installs into the environment"),
    (r"^python -m pytest", None, "the test suite itself"),
    (r"--cuda", None, "needs a GPU"),
    (r"--data data/", None, "needs the real corpora (examples/fetch_data.py)"),
    (r"--task mypkg|--model mypkg", None, "a placeholder for the user's own code"),
    (r"^python -m compress preview schedules/", ["--epochs", "3"], ""),
    (r"^python examples/word_lm.py --schedule schedules/agp_lstm.yaml --tied$",
     ["--max-train-batches", "2", "--synthetic-tokens", "3000", "--no-progress"], ""),
    (r"--plot agp.png --metrics-csv agp.csv", ["--emsize", "16", "--nhid", "16", "--epochs", "3",
                                                "--max-train-batches", "2", "--synthetic-tokens", "2000",
                                                "--no-progress"], ""),
    (r"--sparse_mode sparse_hidden", ["--nhid", "30", "--emsize", "30"] + TINY, ""),
    (r"--emblocks 10", ["--emsize", "20", "--nhid", "20"] + TINY, ""),
    (r"predefined_sparse_lstm.yaml", ["--nhid", "24", "--emsize", "16"] + TINY, ""),
    (r"selfish_rnn.py .*--print-schedule", [], ""),
    (r"selfish_rhn.yaml", ["--emsize", "16", "--nhid", "16", "--depth", "2", "--epochs", "2",
                           "--max-train-batches", "2", "--synthetic-tokens", "2000", "--no-progress"], ""),
    (r"^python -m compress export runs/lm.pt --format compress", [], ""),
    (r"^python -m compress export runs/lm.pt --format onnx", [], ""),
]


def plan_for(command: str) -> Tuple[Optional[List[str]], str]:
    for pattern, flags, reason in PLAN:
        if re.search(pattern, command):
            return flags, reason
    raise LookupError(command)


COMMANDS = readme_commands()
SLOW = ("agp_lstm.yaml --tied", "sparse_hidden")  # several seconds each


def _case(command: str):
    try:
        flags, reason = plan_for(command)
    except LookupError:
        return pytest.param(command, marks=pytest.mark.xfail(reason="not planned", strict=True))
    marks = [pytest.mark.skip(reason=reason)] if flags is None else []
    if any(s in command for s in SLOW):
        marks.append(pytest.mark.slow)
    return pytest.param(command, marks=marks)


def test_every_readme_command_is_planned():
    assert len(COMMANDS) >= 10
    unplanned = []
    for command in COMMANDS:
        try:
            plan_for(command)
        except LookupError:
            unplanned.append(command)
    assert not unplanned, f"README commands without an entry in PLAN: {unplanned}"


def _run(argv: List[str], cwd: str) -> str:
    """Run one command line (``python SCRIPT ...`` or ``python -m compress ...``) here; returns its stdout."""
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out):
            if argv[:3] == ["python", "-m", "compress"]:
                from compress.cli import main

                assert main(argv[3:]) == 0
            else:
                assert argv[0] == "python" and argv[1].startswith("examples/"), argv
                load_example(argv[1][len("examples/"):]).main(argv[2:])
    finally:
        os.chdir(old)
    return out.getvalue()


@pytest.fixture
def workdir(tmp_path):
    os.symlink(os.path.join(ROOT, "schedules"), tmp_path / "schedules")
    return tmp_path


def _readme_total_row() -> List[str]:
    text = open(README, encoding="utf-8").read()
    line = next(row for row in text.split("## Reports", 1)[1].splitlines() if row.startswith("| Total"))
    return [cell.strip() for cell in line.strip("|").split("|")][2:5]


@pytest.mark.parametrize("command", [_case(c) for c in COMMANDS])
def test_readme_command_runs(command, workdir):
    flags, _ = plan_for(command)
    argv = shlex.split(re.sub(r"\s*\[[^\]]*\]", "", command))   # a synopsis' optional [--flag value] parts left out
    redirect = None
    if ">" in argv:
        at = argv.index(">")
        argv, redirect = argv[:at], argv[at + 1]
    if "export" in argv:  # the README exports a checkpoint of examples/word_lm.py --save
        if "onnx" in argv:
            pytest.importorskip("onnx", reason="the onnx extra (pip install 'compress[onnx]')")
            pytest.importorskip("onnxruntime", reason="the onnx extra")
        os.makedirs(workdir / "runs")
        _run(["python", "examples/word_lm.py", "--emsize", "16", "--nhid", "16", "--save", "runs/lm.pt"] + TINY,
             str(workdir))
    if "--plot" in argv:
        pytest.importorskip("matplotlib", reason="the plot extra (pip install 'compress[plot]')")
    out = _run(argv + flags, str(workdir))
    if redirect:
        (workdir / redirect).write_text(out)
    if command.endswith("agp_lstm.yaml --tied"):
        # the mask counts depend only on the shapes and the schedule: the README's table must hold them exactly
        total = next(line for line in out.splitlines() if line.startswith("| Total"))
        assert [c.strip() for c in total.strip("|").split("|")][2:5] == _readme_total_row()
    elif " preview " in command:
        assert out.strip()
    elif "--plot agp.png" in command:
        assert (workdir / "agp.png").stat().st_size > 0
        assert [row["epoch"] for row in read_metrics_csv(workdir / "agp.csv")] == [0, 1, 2]
    elif "--print-schedule" in command:
        assert "# run it: python examples/word_lm.py --schedule THIS_FILE --optimizer sgd" in out
        assert "class: DynamicSparsityPruner" in out
    elif "selfish_rhn" in command:
        assert "ending_epoch 500 -> 2" in out            # fitted to --epochs: no untrained regrowth at the end
        assert "Mask (%)" in out and "WARNING" not in out
    elif "export" in command:
        assert os.path.exists(workdir / argv[argv.index("--out") + 1])
    else:
        assert "| Total" in out and "Test PPL" in out


def test_bench_threshold_takes_cuda_like_every_other_example(capsys):
    bench = load_example("bench_threshold.py")
    assert bench.parse_args(["--device", "cpu"]).device == "cpu"
    if torch.cuda.is_available():
        assert bench.parse_args(["--cuda"]).device == "cuda"
    else:
        with pytest.raises(SystemExit):
            bench.parse_args(["--cuda"])
        assert "CUDA is not available" in capsys.readouterr().err   # understood, not "unrecognized arguments"


@pytest.mark.parametrize("script", ["word_lm.py", "papers/sipo_ptb.py", "papers/selfish_results.py",
                                    "ptq_word_lm.py", "papers/iss_ptb.py"])
def test_help_says_each_default_once(script, capsys):
    with pytest.raises(SystemExit):
        load_example(script).main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    assert not re.search(r"default[^()]*\) \(default:", text)   # a default the help text gives, said again

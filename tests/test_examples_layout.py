"""Examples are scripts over the installed packages: the README's loop runs as is, scripts import no other script,
nothing edits ``sys.path``, and ``compress`` imports none of them."""
import ast
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, load_example

import compress

EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.py"), recursive=True))
SCRIPT_NAMES = {os.path.splitext(os.path.basename(path))[0] for path in EXAMPLES} | {"examples", "papers"}


def readme_loop() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## Your own training loop"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_minimal_example_holds_the_readmes_loop_character_for_character():
    with open(os.path.join(ROOT, "examples", "minimal.py"), encoding="utf-8") as f:
        assert readme_loop() in f.read()


def test_minimal_example_runs_as_is_and_prints_the_sparsity_table(tmp_path):
    (tmp_path / "schedules").mkdir()
    shutil.copy(os.path.join(ROOT, "schedules", "agp_lstm.yaml"), tmp_path / "schedules")
    # the child imports the compress this test imports (a checkout's, or the installed one)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.path.dirname(os.path.dirname(compress.__file__)))
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "minimal.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    total = next(line for line in done.stdout.splitlines() if line.startswith("| Total"))
    assert float(total.split("|")[5]) > 80          # 80% of the recurrent weights, 85% of the tied embedding
    assert (tmp_path / "ckpt.pt").exists()


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.relpath(p, os.path.join(ROOT, "examples")) for p in EXAMPLES])
def test_example_imports_no_other_example_script(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." if node.level else node.module.split(".")[0])
    assert not imported & (SCRIPT_NAMES | {"."}), f"{path} imports another example script"


def test_no_example_or_test_edits_sys_path():
    offenders = []
    for path in EXAMPLES + sorted(glob.glob(os.path.join(ROOT, "tests", "*.py"))):
        with open(path, encoding="utf-8") as f:
            if re.search(r"sys\.path\.(insert|append|extend)|sys\.path\s*=|sys\.path\s*\+=", f.read()):
                offenders.append(os.path.relpath(path, ROOT))
    assert offenders == []


def test_importing_compress_imports_no_model_and_no_example():
    code = ("import compress, compress.cli, sys; "
            "print([m for m in sys.modules if m.startswith(('compress_models', 'examples'))])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_inspect_defaults_to_the_installed_word_lm_task():
    from compress.reports.inspection import DEFAULT_TASK, load_task
    from compress_models.tasks import make_task

    assert load_task(DEFAULT_TASK) is make_task


def test_reproduce_agp_trains_its_schedule_in_a_child_trainer_and_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # tiny tensors: a second thread only waits
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split, lines in (("train", 300), ("valid", 40), ("test", 40)):
        (corpus / f"{split}.txt").write_text("".join(f"w{i % 7} w{i % 5} w{i % 3}\n" for i in range(lines)))
    out = tmp_path / "runs"
    status = load_example("papers/reproduce_agp.py").main(
        ["--data", str(corpus), "--size", "small", "--epochs", "1", "--out", str(out), "--only", "agp_80", "--extra",
         "--emsize", "8", "--nhid", "8", "--max-train-batches", "2", "--bptt", "5"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "agp_80 (small)" in printed and "dense" not in printed   # the shipped schedule, found from papers/
    assert (out / "agp_80.pt").exists()

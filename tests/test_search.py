"""The Hyperpruning search: space checks, the pipeline, resume, several workers, failures and storages."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna", reason="the recipe search needs Optuna (pip install 'compress[search]')")

from conftest import ROOT  # noqa: E402
from hyperprune_fake_task import FakeTask, space_yaml  # noqa: E402

import compress  # noqa: E402
from compress import CompressError, ScheduleError  # noqa: E402
from compress.cli import main  # noqa: E402
from compress.search import Hyperpruning, SearchSpace, TrainControl, TrainingPaused  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(ROOT, "schedules", "search", "selfish_lstm_base.yaml")


def write_space(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def sqlite(tmp_path, name="study.db"):
    return f"sqlite:///{tmp_path / name}"


def memory():
    """A storage in this process: the in-process tests share one between a run and its continuation."""
    return optuna.storages.InMemoryStorage()


def search(tmp_path, task, text=None, storage=None, **kwargs):
    space = SearchSpace.from_file(write_space(tmp_path, text or space_yaml()))
    return Hyperpruning(space, task, storage=storage or memory(), study_name="s", poll_seconds=0.05, **kwargs)


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def worker_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_TASK_")}
    return dict(env, PYTHONPATH=os.pathsep.join([ROOT, TESTS]), **extra)


# --- the space ---------------------------------------------------------------------------------------------------

BAD_SPACES = [
    ("space: {}", "space", "names no key"),
    ("space:\n  pruners.p.death: [magnitude]", "space.pruners.p.death", "not a key of the base schedule"),
    ("space:\n  pruners.p.death_rate: []", "space.pruners.p.death_rate", "empty choice list"),
    ("space:\n  pruners.p.death_rate: {low: 0.9, high: 0.4}", "space.pruners.p.death_rate", "low (0.9) > high (0.4)"),
    ("space:\n  pruners.p.death_rate: {low: 0.4, high: 0.9, step: 0.3}", "space.pruners.p.death_rate.step",
     "not a multiple of step"),
    ("objective: accuracy\nspace:\n  pruners.p.death_rate: [0.5]", "objective", "unknown objective"),
    ("pool: 0\nspace:\n  pruners.p.death_rate: [0.5]", "pool", "expected an integer >= 1"),
]


@pytest.mark.parametrize("tail, key, message", BAD_SPACES, ids=[b[2] for b in BAD_SPACES])
def test_a_bad_space_is_a_schedule_error_naming_the_file_line_and_key(tmp_path, tail, key, message):
    head = ("schedule:\n  pruners:\n    p: {class: SelfishRNNPruner, density: 0.5, death_rate: 0.5}\n"
            "  policies:\n    - {pruner: {instance_name: p}, starting_epoch: 0, ending_epoch: 10}\n")
    path = write_space(tmp_path, head + tail)
    with pytest.raises(ScheduleError) as info:
        SearchSpace.from_file(path)
    assert info.value.key == key and message in str(info.value)
    assert info.value.file == path and info.value.line is not None


def test_a_value_the_class_refuses_is_an_error_naming_the_key_before_anything_trains(tmp_path):
    from compress_models.search_tasks import word_lm_task

    task = word_lm_task(None, "cpu", emsize=8, nhid=8, synthetic_tokens=2000)
    text = f"schedule: {BASE}\nspace:\n  pruners.dst.death: [magnitude, dying]\n"
    space = SearchSpace.from_file(write_space(tmp_path, text))
    trained = []
    task.train = lambda *args: trained.append(args)
    with pytest.raises(ScheduleError) as info:
        Hyperpruning(space, task, storage=sqlite(tmp_path)).run()
    assert info.value.key == "space.pruners.dst.death" and info.value.line == 3
    assert not (tmp_path / "study.db").exists()
    assert "value 'dying' is refused" in str(info.value) and "magnitude" in str(info.value)
    assert trained == []


def test_a_candidate_is_the_base_schedule_with_the_sampled_values():
    space = SearchSpace.from_file(os.path.join(ROOT, "schedules", "search", "hyperpruning_selfish_lstm.yaml"))
    candidate = space.candidate({"pruners.dst.death": "global_magnitude", "pruners.dst.death_rate": 0.7})
    assert candidate["pruners"]["dst"]["death"] == "global_magnitude"
    assert candidate["pruners"]["dst"]["death_rate"] == 0.7
    assert candidate["policies"] == space.schedule["policies"] and space.grid_size == 144
    assert space.reference["policies"] == [p for p in space.schedule["policies"] if "pruner" not in p]


# --- the pipeline -------------------------------------------------------------------------------------------------


def test_the_pipeline_halves_the_pool_and_trains_the_finalists(tmp_path):
    task = FakeTask()
    result = search(tmp_path, task, space_yaml(pool=6, rates=(0.2, 0.4, 0.6, 0.8, 0.9))).run()
    pool = result.rounds[0]
    assert result.complete and sum(r.evaluations for r in pool.records) == 6
    sizes = [len(r.records) for r in result.rounds]
    unique = len(pool.records)
    assert sizes[1:-1] == compress.search.halving_sizes(unique)[1:] and sizes[-1] == 2
    assert [r.epochs for r in result.rounds] == [1 + i for i in range(len(result.rounds) - 1)] + [3]
    # duplicates are merged, not retrained: every (rate, epochs) trained once; the dense reference once, as long
    # as the rounds of a pool of 6 distinct candidates would need
    assert len(task.calls) == len(set(task.calls)) and task.calls[0] == (0.0, 4)
    lowest = min(r.values["pruners.p.death_rate"] for r in pool.records)
    assert result.winner.values == {"pruners.p.death_rate": lowest}
    assert result.schedule["pruners"]["p"]["death_rate"] == lowest
    assert result.epochs_trained == sum(e for _, e in task.calls)


def test_a_failing_candidate_is_recorded_with_its_error_and_the_search_goes_on(tmp_path):
    result = search(tmp_path, FakeTask(fail_rate=0.4)).run()   # 0.4: the pool's first candidate
    pool = result.rounds[0]
    failed = [r for r in pool.records if r.status == "failed"]
    assert result.complete and [r.values["pruners.p.death_rate"] for r in failed] == [0.4]
    assert failed[0].error == "RuntimeError: cannot train at death rate 0.4" and pool.records[-1] is failed[0]
    assert result.winner.values["pruners.p.death_rate"] != 0.4
    assert "failed: RuntimeError: cannot train at death rate 0.4" in result.tables(
        SearchSpace.from_file(str(tmp_path / "space.yaml")))


def test_ctrl_c_keeps_the_finished_candidates_and_the_rerun_trains_the_interrupted_one_again(tmp_path):
    first, storage = FakeTask(interrupt_at=3), memory()   # the dense reference, two pool candidates, then Ctrl-C
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, first, storage=storage).run()
    interrupted = first.calls[-1]
    again = FakeTask()
    result = search(tmp_path, again, storage=storage).run()
    assert result.complete and again.calls[0] == interrupted
    assert not set(first.calls[:2]) & set(again.calls)   # nothing finished is trained again


def test_a_study_made_from_another_space_is_refused(tmp_path):
    storage = sqlite(tmp_path)   # a file: what a study remembers outlives the process
    search(tmp_path, FakeTask(), space_yaml(pool=2), storage=storage).run()
    with pytest.raises(CompressError, match="made from another search: pool is 2 there and 3 here"):
        search(tmp_path, FakeTask(), space_yaml(pool=3), storage=storage).run()


def test_an_unreachable_storage_is_a_clear_error_that_hides_the_password(tmp_path):
    with pytest.raises(CompressError, match=r"cannot open the study storage postgresql://u:\*\*\*@127.0.0.1:1/db") \
            as info:
        search(tmp_path, FakeTask(), storage="postgresql://u:secret@127.0.0.1:1/db").run()
    assert "secret" not in str(info.value)
    with pytest.raises(CompressError, match="does not exist"):
        search(tmp_path, FakeTask(), storage=f"sqlite:///{tmp_path}/missing/study.db").run()


def test_a_time_budget_stops_cleanly_and_the_next_run_finishes(tmp_path):
    storage = memory()
    stopped = search(tmp_path, FakeTask(), time_budget=0, storage=storage).run()
    assert not stopped.complete and stopped.winner is None and "unfinished" in stopped.summary()
    assert search(tmp_path, FakeTask(), storage=storage).run().complete


def test_the_word_lm_task_pauses_at_an_epoch_end_and_resumes_from_its_checkpoint(tmp_path):
    from compress_models.search_tasks import word_lm_task

    task = word_lm_task(None, "cpu", emsize=8, nhid=8, synthetic_tokens=3000, max_batches=3, test=False)
    schedule = SearchSpace.from_dict({"schedule": BASE, "space": {"pruners.dst.death": ["SET"]}},
                                     file=os.path.join(ROOT, "x.yaml")).candidate({"pruners.dst.death": "SET"})
    whole = task.train(schedule, 2, TrainControl())
    checkpoint = str(tmp_path / "run.pt")
    with pytest.raises(TrainingPaused):
        task.train(schedule, 2, TrainControl(checkpoint=checkpoint, deadline=time.monotonic()))
    resumed = task.train(schedule, 2, TrainControl(checkpoint=checkpoint))
    assert resumed.val_loss == whole.val_loss
    assert task.spectrum(resumed.model).shape == (16,)


def test_a_tiny_real_search_runs_from_the_command_line_and_writes_a_runnable_winner(tmp_path):
    text = (f"schedule: {BASE}\npool: 3\npool_epochs: 1\nround_epochs: 1\nfinal_epochs: 1\nstartup_trials: 2\n"
            f"space:\n  pruners.dst.death: [magnitude, SET]\n  pruners.dst.death_rate: [0.5, 0.7]\n")
    out = tmp_path / "winner.yaml"
    options = ["emsize=8", "nhid=8", "synthetic_tokens=2000", "max_batches=2", "test=false"]
    printed = []
    code = main(["hyperprune", write_space(tmp_path, text), "--storage", sqlite(tmp_path), "--out", str(out),
                 "--quiet", *[a for o in options for a in ("--task-option", o)]], out=printed.append)
    assert code == 0 and "winner #" in printed[0] and f"winner written to {out}" in printed[0]
    from compress_models import RNNModel

    model = RNNModel("LSTM", 1000, 8, 8, 2)
    optimizer = compress.optim.SparseNTASGD(model.parameters(), lr=1.0)
    scheduler = compress.file_config(model, optimizer, str(out))
    assert scheduler.components["pruners"]["dst"].death in ("magnitude", "SET")


# --- several processes --------------------------------------------------------------------------------------------


def cli_command(space, storage, log):
    return [sys.executable, "-m", "compress", "hyperprune", space, "--task", "hyperprune_fake_task:make",
            "--storage", storage, "--quiet", "--poll", "0.1", "--task-option", f"log={log}",
            "--out", os.path.join(os.path.dirname(space), "winner.yaml")]


def test_a_killed_search_continues_where_it_stopped_when_the_same_command_runs_again(tmp_path):
    space, log, storage = write_space(tmp_path, space_yaml()), str(tmp_path / "calls.jsonl"), sqlite(tmp_path)
    command = cli_command(space, storage, log)
    killed = subprocess.run(command, env=worker_env(FAKE_TASK_KILL_AT="4"), cwd=tmp_path, capture_output=True)
    assert killed.returncode != 0
    before = rows(log)   # three trainings, and the one killed mid-training
    assert len(before) == 4
    import hyperprune_fake_task

    code = main(command[3:], out=lambda text: None)
    after = rows(log)[4:]
    assert code == 0
    assert (before[3]["rate"], before[3]["epochs"]) == (after[0]["rate"], after[0]["epochs"])
    trained_before = {(r["rate"], r["epochs"]) for r in before[:3]}
    assert not trained_before & {(r["rate"], r["epochs"]) for r in after}
    # an uninterrupted search draws the same pool
    reference = hyperprune_fake_task.FakeTask()
    search(tmp_path / "..", reference, text=open(space).read()).run()
    assert [(r["rate"], r["epochs"]) for r in before[:3] + after] == reference.calls


def test_several_worker_processes_share_one_search_through_a_journal_file(tmp_path):
    space = write_space(tmp_path, space_yaml(objective="val_loss"))
    log, storage = str(tmp_path / "calls.jsonl"), f"journal:///{tmp_path / 'study.log'}"
    (tmp_path / "barrier").mkdir()
    env = worker_env(FAKE_TASK_BARRIER=f"{tmp_path / 'barrier'}:2")
    command = cli_command(space, storage, log) + ["--task-option", "sleep=0.25"]
    workers = [subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    calls = rows(log)
    assert len({c["pid"] for c in calls}) == 2                      # both workers trained candidates
    later = [(c["rate"], c["epochs"]) for c in calls if c["epochs"] > 1]
    assert len(later) == len(set(later))                           # and no round's candidate twice
    winners = [next(line for line in out.splitlines() if line.startswith("winner #")) for out, _ in outputs]
    assert winners[0] == winners[1]


# --- PostgreSQL (a real server, started here) ---------------------------------------------------------------------


def postgres_binaries():
    found = shutil.which("initdb") and shutil.which("pg_ctl")
    if found:
        return os.path.dirname(shutil.which("initdb"))
    for version in sorted(os.listdir("/usr/lib/postgresql"), reverse=True) if os.path.isdir("/usr/lib/postgresql") \
            else []:
        folder = os.path.join("/usr/lib/postgresql", version, "bin")
        if os.path.exists(os.path.join(folder, "initdb")):
            return folder
    return None


@pytest.mark.skipif(os.environ.get("COMPRESS_TEST_POSTGRES") != "1",
                    reason="starts a PostgreSQL server (needs its binaries and psycopg2); set "
                           "COMPRESS_TEST_POSTGRES=1 to run it")
def test_a_search_runs_and_continues_on_a_real_postgresql_server(tmp_path):
    import importlib.util

    driver = next((d for d in ("psycopg", "psycopg2") if importlib.util.find_spec(d)), None)
    if driver is None:
        pytest.skip("PostgreSQL storage needs a driver: pip install psycopg (or psycopg2-binary)")
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (apt-get install postgresql)")
    import pathlib
    import tempfile

    home = pathlib.Path(tempfile.mkdtemp(prefix="compress-pg-"))   # pytest's folders are private to their user
    data = home / "pg"
    data.mkdir()
    as_user = []
    if os.geteuid() == 0:   # the server refuses to run as root
        shutil.chown(home, "postgres")
        shutil.chown(data, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        subprocess.run(as_user + [os.path.join(binaries, "initdb"), "-D", str(data), "-U", "postgres",
                                  "--auth=trust"], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"initdb failed: {exc.stderr.decode(errors='replace')}")
    pg_ctl = as_user + [os.path.join(binaries, "pg_ctl"), "-D", str(data)]
    subprocess.run(pg_ctl + ["-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "-w", "start",
                             "-l", str(data / "log")], check=True, capture_output=True)
    try:
        url = f"postgresql+{driver}://postgres@127.0.0.1:{port}/postgres"
        first = FakeTask(interrupt_at=3)
        with pytest.raises(KeyboardInterrupt):
            search(tmp_path, first, storage=url).run()
        result = search(tmp_path, FakeTask(), storage=url).run()
        assert result.complete and sum(r.evaluations for r in result.rounds[0].records) == 4
    finally:
        subprocess.run(pg_ctl + ["-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)

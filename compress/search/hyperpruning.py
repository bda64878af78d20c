"""Hyperpruning (Zheng & Shlizerman): pick a compression recipe by how close each candidate's Lyapunov spectrum is
to the dense network's after a few epochs, halving the pool in rounds, then training the finalists fully.

The pipeline, over a :class:`~compress.search.space.SearchSpace` and a user's task (:mod:`compress.search.task`):

1. **Dense reference** (objective ``ls_distance`` only): the base schedule without pruners, trained once for the
   longest round's epochs; its spectrum is recorded at the end of every round's epoch budget.
2. **Pool** (round 0): Optuna's TPE sampler (seeded) draws ``pool`` candidates, each trained ``pool_epochs``
   epochs from scratch and scored by the objective: the LS distance to the dense spectrum at the same epochs, or
   the validation loss. A candidate drawn again is not trained again: it counts as an evaluation with the first
   one's score (Hyperpruning's duplicates, merged).
3. **Halving rounds**: the best ``floor(n/2) + 1`` candidates are retrained from scratch with ``round_epochs``
   more epochs than the previous round and scored again, until ``finalists`` remain.
4. **Finalists**: trained ``final_epochs`` epochs; the lowest validation loss wins.

Everything lives in an Optuna storage (:mod:`compress.search.storage`): one study per stage (``NAME`` for the pool,
``NAME.dense``, ``NAME.round1``, ..., ``NAME.final``), each trial one training run with its sampled values, scores,
spectrum, time, worker and error as attributes. So a search that was killed continues where it stopped when run
again with the same arguments; several worker processes (or machines) running the same search share the work, each
claiming the next untrained candidate; a run whose worker died (its process is gone, or on another machine its
heartbeat is older than ``stale_seconds``) is trained again. A candidate whose training raises is recorded as failed
with its error, and the search goes on. Ctrl-C marks the running candidate interrupted (it runs again next time)
and keeps every finished one. ``time_budget`` stops the search cleanly before a candidate that would not finish;
with a ``checkpoint_dir`` a long run pauses at an epoch's end and resumes there next time.

Example:
    >>> import os, tempfile, torch
    >>> from compress.search import Hyperpruning, SearchSpace, TaskResult
    >>> space = SearchSpace.from_dict({
    ...     "schedule": {"pruners": {"p": {"class": "SelfishRNNPruner", "density": 0.5, "death_rate": 0.5}},
    ...                  "policies": [{"pruner": {"instance_name": "p"}, "starting_epoch": 0, "ending_epoch": 9}]},
    ...     "space": {"pruners.p.death_rate": [0.3, 0.5, 0.7]},
    ...     "objective": "val_loss", "pool": 3, "pool_epochs": 1, "round_epochs": 1, "final_epochs": 2,
    ...     "startup_trials": 3})
    >>> def train(schedule, epochs, control):     # a stand-in for real training: loss grows with the death rate
    ...     rate = schedule["pruners"]["p"]["death_rate"] if schedule else 0.0
    ...     return TaskResult(torch.nn.Linear(1, 1), 1.0 + rate / epochs)
    >>> url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "study.db")
    >>> result = Hyperpruning(space, train, storage=url, study_name="doc").run()
    >>> result.winner.values, result.complete
    ({'pruners.p.death_rate': 0.3}, True)
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Dict, List, Optional

import torch

from compress.analysis.lyapunov import ls_distance
from compress.errors import CompressError
from compress.options import function, number, optional
from compress.search.space import SearchSpace, halving_sizes
from compress.search.storage import describe_url, open_storage, require_optuna
from compress.search.task import TrainControl, TrainingPaused, as_result, task_metrics

__all__ = ["Hyperpruning", "SearchResult", "Round", "CandidateRecord", "round_table"]

log = logging.getLogger(__name__)

_HOST = socket.gethostname()
_SETTINGS_ATTR = "compress.hyperpruning"
_UNCLAIMED_SECONDS = 600.0   # a trial asked for but never claimed by a worker is abandoned after this


class _OutOfTime(Exception):
    """The time budget ends before the next piece of work could."""


@dataclass
class CandidateRecord:
    """One candidate's training in one stage, as the storage holds it.

    Attributes:
        id: ``#n``, the number of the pool evaluation that first drew it (``dense`` for the reference).
        values: the sampled values (schedule key → value).
        epochs: epochs it was trained for in this stage.
        status: ``done`` or ``failed``.
        value: the stage's objective (LS distance, or validation loss; the final stage: validation loss).
        val_loss: validation loss after ``epochs``.
        ls_distance: LS distance to the dense reference at the same epochs (``ls_distance`` objective).
        metrics: the task's other figures (e.g. ``test_loss``).
        seconds: training time.
        error: why it failed.
        evaluations: how many pool evaluations drew it (duplicates merged).
        spectrum: its Lyapunov spectrum (pool stage), when kept.
    """

    id: str
    values: Dict[str, Any]
    epochs: int
    status: str
    value: Optional[float] = None
    val_loss: Optional[float] = None
    ls_distance: Optional[float] = None
    metrics: Dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: Optional[str] = None
    evaluations: int = 1
    spectrum: Optional[List[float]] = None

    @property
    def val_ppl(self) -> Optional[float]:
        return _ppl(self.val_loss)


@dataclass
class Round:
    """A stage's candidates, ranked (finished by objective, then failed), and which of them went on."""

    name: str
    epochs: int
    records: List[CandidateRecord]
    kept: List[str]
    objective: str


@dataclass
class SearchResult:
    """What a search found, or how far it got.

    Attributes:
        rounds: the finished stages, in order (pool, round 1, ..., final).
        winner: the finalist with the lowest validation loss (``None`` while unfinished).
        schedule: the winner's schedule, runnable as is.
        complete: whether the search reached its end (``False`` when the time budget stopped it).
        epochs_trained: epochs trained over every run of every stage, the dense reference's included.
        seconds: training time of those runs.
        pool_size: distinct candidates of the pool.
        full_search_epochs: epochs a search that trains every pool candidate fully would take.
        dense: the dense reference's validation loss by epoch (``ls_distance``).
        dense_spectra: the dense reference's spectrum by epoch.
    """

    rounds: List[Round]
    winner: Optional[CandidateRecord]
    schedule: Optional[Dict[str, Any]]
    complete: bool
    epochs_trained: int
    seconds: float
    pool_size: int
    full_search_epochs: int
    dense: Dict[int, float] = field(default_factory=dict)
    dense_spectra: Dict[int, List[float]] = field(default_factory=dict)

    def tables(self, space: SearchSpace) -> str:
        """One table per finished stage, and a summary line."""
        parts = [round_table(r, space) for r in self.rounds]
        parts.append(self.summary())
        return "\n\n".join(parts)

    def summary(self) -> str:
        line = (f"{self.epochs_trained} epochs trained in {self.seconds / 3600:.2f} h of training "
                f"(a full-training search of the same {self.pool_size} candidates: {self.full_search_epochs} "
                f"epochs)")
        if self.winner is not None:
            metrics = "".join(f", {_metric_label(k)} {_metric_value(k, v):.2f}" for k, v in self.winner.metrics.items())
            line = (f"winner {self.winner.id}: {_values_text(self.winner.values)}; validation ppl "
                    f"{self.winner.val_ppl:.2f}{metrics}\n" + line)
        elif not self.complete:
            line = "unfinished: run the same command again to continue\n" + line
        return line


class Hyperpruning:
    """The Hyperpruning search of a space with a task, kept in an Optuna storage.

    Args:
        space: the search space and settings.
        task: the training code (see :mod:`compress.search.task`): an object with ``train`` (and ``spectrum`` for
            the ``ls_distance`` objective, ``check`` to validate values), or a ``train`` function.
        storage: an Optuna storage URL (``sqlite:///file.db``, ``journal:///file.log``, ``postgresql://...``), or an
            Optuna storage object.
        study_name: the study's name (default: the space file's name, or ``hyperpruning``).
        checkpoint_dir: where runs save their progress so that a paused or killed run resumes (default: none).
        time_budget: seconds this call may run (default: no limit).
        poll_seconds: how often a worker waiting for others looks at the storage again.
        stale_seconds: a run on another machine whose heartbeat is older than this is taken for dead.
        task_id: what identifies the task's configuration (the CLI gives ``--task`` and its options); a study
            made with another is refused, like one made from another space.
        keep_spectra: store every pool candidate's spectrum (for plots).
        on_round: called with each :class:`Round` as it finishes (the CLI prints its table).

    Raises:
        CompressError: on :meth:`run`: the storage cannot be opened, the study was made from another space or
            task, the dense reference cannot be trained, or every candidate failed.
        ScheduleError: on :meth:`run`, before anything trains: a searched value the task's ``check`` refuses.
    """

    def __init__(self, space: SearchSpace, task: Any, *, storage: str, study_name: Optional[str] = None,
                 checkpoint_dir: Optional[str] = None, time_budget: Optional[float] = None,
                 poll_seconds: float = 5.0, stale_seconds: float = 900.0, task_id: Optional[str] = None,
                 keep_spectra: bool = True, on_round: Optional[Callable[[Round], None]] = None):
        if not isinstance(space, SearchSpace):
            raise CompressError(f"expected a SearchSpace, got {type(space).__name__}")
        self.space = space
        self.task = task
        self._train = function("task", getattr(task, "train", task), "a task with train(schedule, epochs, control)")
        self.url = storage
        default_name = os.path.splitext(os.path.basename(space.file))[0] if space.file else "hyperpruning"
        self.study_name = study_name or default_name
        self.checkpoint_dir = checkpoint_dir
        self.time_budget = optional(number, "time_budget", time_budget, minimum=0.0)
        self.poll_seconds = number("poll_seconds", poll_seconds, minimum=0.0)
        self.stale_seconds = number("stale_seconds", stale_seconds, minimum=0.0)
        self.task_id = task_id
        self.keep_spectra = keep_spectra
        self.on_round = on_round
        self._worker = f"{_HOST}:{os.getpid()}"
        self._mine: set = set()
        self._dense_cache: Dict[int, List[float]] = {}
        self._ids: Dict[str, str] = {}
        self._deadline: Optional[float] = None
        self._epoch_seconds: Optional[float] = None
        self._waiting_for: Optional[str] = None

    # --- the pipeline ----------------------------------------------------------------------------------------

    def run(self) -> SearchResult:
        """Run (or continue, or help) the search until it ends or the time budget does; see the module docstring.

        Returns:
            The :class:`SearchResult`; ``complete`` is ``False`` when the time budget stopped it.
        """
        self._optuna = require_optuna()
        self.space.validate(getattr(self.task, "check", None))   # before anything trains or is stored
        self._storage = open_storage(self.url)
        self._deadline = None if self.time_budget is None else time.monotonic() + self.time_budget
        self._check_study()
        self._epoch_seconds = self._measured_epoch_seconds()
        rounds: List[Round] = []
        try:
            if self.space.objective == "ls_distance":
                self._dense_spectrum(self.space.pool_epochs)
            rounds.append(self._finish_round("pool", self.space.pool_epochs, self._pool_stage()))
            number_ = 1
            while True:
                survivors = [r for r in rounds[-1].records if r.status == "done"]
                if len(survivors) <= self.space.finalists:
                    rounds[-1].kept = [r.id for r in survivors]
                    self._announce(rounds[-1])
                    break
                keep = survivors[:max(self.space.finalists, len(survivors) // 2 + 1)]
                rounds[-1].kept = [r.id for r in keep]
                self._announce(rounds[-1])
                epochs = self.space.pool_epochs + number_ * self.space.round_epochs
                rounds.append(self._finish_round(f"round {number_}", epochs, self._stage(f"round{number_}", keep,
                                                                                          epochs)))
                number_ += 1
            finals = self._stage("final", survivors, self.space.final_epochs, final=True)
            rounds.append(self._finish_round("final", self.space.final_epochs, finals, final=True))
            self._announce(rounds[-1])
        except _OutOfTime:
            log.info("time budget reached: stopping; run the same command again to continue")
            return self._result(rounds, complete=False)
        return self._result(rounds, complete=True)

    def _finish_round(self, name: str, epochs: int, records: List[CandidateRecord], final: bool = False) -> Round:
        records = _ranked(records)
        done = [r for r in records if r.status == "done"]
        if not done:
            first = next((r.error for r in records if r.error), "no candidate finished")
            raise CompressError(f"{name}: every candidate failed; the first error: {first}")
        return Round(name, epochs, records, [done[0].id] if final else [],
                     "val_loss" if final else self.space.objective)

    def _measured_epoch_seconds(self) -> Optional[float]:
        """Seconds per epoch of the runs the storage holds (what the time budget plans with)."""
        rates = [float(_result(t)["seconds"]) / int(_result(t)["trained_epochs"])
                 for stage in ("pool", "dense") for t in self._trials(stage)
                 if _result(t).get("status") == "done" and int(_result(t).get("trained_epochs", 0)) > 0]
        return max(rates[-5:]) if rates else None

    def _announce(self, round_: Round) -> None:
        log.info("%s finished:\n%s", round_.name, round_table(round_, self.space))
        if self.on_round is not None:
            self.on_round(round_)

    def _result(self, rounds: List[Round], complete: bool) -> SearchResult:
        winner = rounds[-1].records[0] if complete else None
        epochs = 0
        seconds = 0.0
        pool_size = 0
        for stage in self._stage_names():
            for t in self._trials(stage):
                if _result(t).get("status") in ("duplicate", "surplus"):
                    continue
                epochs += int(_result(t).get("trained_epochs", 0))
                seconds += float(_result(t).get("seconds", 0.0))
        if rounds:
            pool_size = len(rounds[0].records)
        dense, spectra = {}, {}
        for t in self._trials("dense"):
            for key, value in t.user_attrs.items():
                if key.startswith("reference@"):
                    dense.setdefault(int(key.split("@")[1]), float(value["val_loss"]))
                    spectra.setdefault(int(key.split("@")[1]), list(value["spectrum"]))
        return SearchResult(rounds, winner, self.space.candidate(winner.values) if winner else None, complete,
                            epochs, seconds, pool_size, pool_size * self.space.final_epochs, dense, spectra)

    # --- stages ------------------------------------------------------------------------------------------------

    def _pool_stage(self) -> List[CandidateRecord]:
        optuna = self._optuna
        study = self._study("pool")
        while True:
            trials = self._reaped(study, requeue=True)
            counted = [t for t in trials if _kind(t) in ("done", "failed")]
            running = [t for t in trials if _kind(t) == "running"]
            if len(counted) >= self.space.pool:
                return self._records(trials, self.space.pool_epochs, pool=True)
            if len(counted) + len(running) >= self.space.pool:
                self._wait(f"the last {len(running)} pool evaluation(s) running on other workers")
                continue
            self._check_time(self.space.pool_epochs)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # Re-seeded per evaluation from the number of evaluations so far: a resumed search draws what an
                # uninterrupted one would have.
                study.sampler = optuna.samplers.TPESampler(seed=self.space.seed + len(counted) + len(running),
                                                           n_startup_trials=self.space.startup_trials)
                trial = study.ask()
                values = self.space.suggest(trial)
            self._claim(trial, self.space.label(values), values, self.space.pool_epochs, "pool")
            ahead = [t for t in study.get_trials(deepcopy=False)
                     if t.number < trial.number and (_kind(t) in ("done", "failed") or
                                                     (_kind(t) == "running" and self._alive(t, study.study_name)))]
            if len(ahead) >= self.space.pool:   # another worker took the last evaluation meanwhile
                self._close(study, trial, None, {"status": "surplus"},
                            requeue="fixed_params" in trial.system_attrs)
                continue
            label = self.space.label(values)
            first = self._twin(study, trial, label)
            if first is not None:
                attrs = {k: _result(first)[k] for k in ("val_loss", "ls_distance", "metrics")
                         if k in _result(first)}
                self._close(study, trial, first.value, {**attrs, "status": "duplicate",
                                                        "duplicate_of": first.number})
                log.info("pool evaluation %d/%d: #%d drew %s again (merged)", len(counted) + 1, self.space.pool,
                         first.number, self.space.short(values))
                continue
            log.info("pool evaluation %d/%d: candidate #%d (%s), %d epochs", len(counted) + 1, self.space.pool,
                     trial.number, self.space.short(values), self.space.pool_epochs)
            self._execute(study, trial, "pool", label, values, self.space.pool_epochs, requeue=True)

    def _twin(self, study, trial, label: str):
        """The earlier pool run of the same candidate once it is done, or ``None`` if there is none (or it failed
        or was lost): a run of it still going on another worker is waited for rather than repeated."""
        while True:
            twins = [t for t in study.get_trials(deepcopy=False)
                     if t.number < trial.number and t.user_attrs.get("candidate") == label]
            done = next((t for t in twins if _kind(t) == "done"), None)
            if done is not None or not any(_kind(t) == "running" and self._alive(t, study.study_name)
                                           for t in twins):
                return done
            trial.set_user_attr("heartbeat", time.time())
            self._wait(f"run #{twins[0].number} of the same candidate on another worker")

    def _stage(self, stage: str, candidates: List[CandidateRecord], epochs: int,
               final: bool = False) -> List[CandidateRecord]:
        """Train every candidate once for ``epochs``, sharing the work with any other worker of the search."""
        study = self._study(stage)
        jobs = [(self.space.label(c.values), c) for c in candidates]
        while True:
            trials = self._reaped(study, requeue=False)
            resolved = self._records(trials, epochs)
            done_labels = {self.space.label(r.values) for r in resolved}
            if all(label in done_labels for label, _ in jobs):
                wanted = {label for label, _ in jobs}
                return [r for r in resolved if self.space.label(r.values) in wanted]
            claimed = {t.user_attrs.get("candidate") for t in trials if _kind(t) == "running"}
            free = [(label, c) for label, c in jobs if label not in done_labels and label not in claimed]
            if not free:
                self._wait(f"{stage}: the last candidates running on other workers")
                continue
            self._check_time(epochs)
            trial = study.ask()
            trials = study.get_trials(deepcopy=False)
            pending = [t for t in trials if t.number < trial.number and _kind(t) == "running"
                       and "candidate" not in t.user_attrs and self._alive(t, study.study_name)]
            claimed = {t.user_attrs.get("candidate") for t in trials if _kind(t) == "running"}
            done_labels |= {t.user_attrs.get("candidate") for t in trials if _kind(t) in ("done", "failed")}
            free = [(label, c) for label, c in jobs if label not in done_labels and label not in claimed]
            if len(pending) >= len(free):
                self._close(study, trial, None, {"status": "surplus"})
                self._wait(f"{stage}: every candidate is claimed")
                continue
            label, candidate = free[len(pending)]
            index = [lab for lab, _ in jobs].index(label) + 1
            log.info("%s: candidate %d/%d, %s (%s), %d epochs", stage, index, len(jobs), candidate.id,
                     self.space.short(candidate.values), epochs)
            self._claim(trial, label, candidate.values, epochs, stage)
            self._execute(study, trial, stage, label, candidate.values, epochs, requeue=False, final=final)

    def _dense_spectrum(self, epochs: int) -> List[float]:
        """The dense reference's spectrum after ``epochs`` epochs, training the reference if no worker has."""
        if epochs in self._dense_cache:
            return self._dense_cache[epochs]
        budgets = sorted(set(self.space.round_epochs_list()))
        if epochs not in budgets:
            raise CompressError(f"no dense reference is recorded after {epochs} epochs (only after "
                                f"{', '.join(map(str, budgets))})")
        study = self._study("dense")
        while True:
            trials = self._reaped(study, requeue=False)
            for t in trials:
                for budget in budgets:
                    value = t.user_attrs.get(f"reference@{budget}")
                    if value is not None:
                        self._dense_cache.setdefault(budget, list(value["spectrum"]))
            if epochs in self._dense_cache:
                return self._dense_cache[epochs]
            if any(_kind(t) == "running" for t in trials):
                self._wait("the dense reference, trained by another worker")
                continue
            if any(_kind(t) == "done" for t in trials):
                raise CompressError(f"the dense reference in {study.study_name!r} finished without its spectrum "
                                    f"after {epochs} epochs")
            self._check_time(max(budgets))
            trial = study.ask()
            if any(_kind(t) == "running" and t.number < trial.number and self._alive(t, study.study_name)
                   for t in study.get_trials(deepcopy=False)):
                self._close(study, trial, None, {"status": "surplus"})
                continue
            log.info("dense reference: %d epochs, spectrum after %s", max(budgets),
                     ", ".join(map(str, budgets)))
            self._claim(trial, "dense", {}, max(budgets), "dense")
            self._execute(study, trial, "dense", "dense", None, max(budgets), requeue=False, budgets=budgets)

    # --- one training run --------------------------------------------------------------------------------------

    def _claim(self, trial, label: str, values: Optional[Dict[str, Any]], epochs: int, stage: str) -> None:
        self._mine.add((trial.study.study_name, trial.number))
        trial.set_user_attr("claim", {"worker": self._worker, "heartbeat": time.time(), "values": values,
                                      "epochs": epochs, "stage": stage})
        trial.set_user_attr("candidate", label)

    def _execute(self, study, trial, stage: str, label: str, values: Optional[Dict[str, Any]], epochs: int,
                 requeue: bool, final: bool = False, budgets: Optional[List[int]] = None) -> None:
        schedule = self.space.reference if values is None else self.space.candidate(values)
        checkpoint = self._checkpoint(stage, label)
        started = time.time()
        attrs: Dict[str, Any] = {}
        references: Dict[str, Any] = {}

        def beat():
            try:
                trial.set_user_attr("heartbeat", time.time())
            except Exception:  # taken for dead by another worker: the result is still recorded at the end
                pass

        def epoch_done(epoch: int, model, val_loss: float) -> None:
            log.info("  %s %s: epoch %d/%d, validation ppl %.2f, %.1f s", stage, self._ids.get(label, label),
                     epoch + 1, epochs, _ppl(val_loss) or float("nan"), time.time() - started)
            if budgets and epoch + 1 in budgets:
                reference = {"spectrum": _as_list(self._spectrum(model)), "val_loss": val_loss}
                try:
                    trial.set_user_attr(f"reference@{epoch + 1}", reference)
                except Exception:  # taken for dead meanwhile: the spectra go in with the result at the end
                    references[f"reference@{epoch + 1}"] = reference

        control = TrainControl(checkpoint=checkpoint, deadline=self._deadline, on_epoch=epoch_done,
                               on_heartbeat=beat, seed=self.space.seed)
        try:
            result = as_result(self._train(schedule, epochs, control))
            attrs.update(val_loss=result.val_loss, metrics=task_metrics(result))
            value = result.val_loss
            if stage == "pool" or (stage.startswith("round") and self.space.objective == "ls_distance"):
                if self.space.objective == "ls_distance":
                    spectrum = result.spectrum if result.spectrum is not None else self._spectrum(result.model)
                    value = ls_distance(self._dense_spectrum(epochs), spectrum)
                    attrs["ls_distance"] = value
                    if stage == "pool" and self.keep_spectra:
                        attrs["spectrum"] = _as_list(spectrum)
        except TrainingPaused:
            self._close(study, trial, None, {"status": "paused", **self._times(started, control)}, requeue=requeue)
            raise _OutOfTime() from None
        except KeyboardInterrupt:
            self._close(study, trial, None, {"status": "interrupted", **self._times(started, control)},
                        requeue=requeue)
            log.warning("interrupted: %s %s will run again when the search continues", stage, label)
            raise
        except _OutOfTime:
            self._close(study, trial, None, {"status": "paused", **self._times(started, control)}, requeue=requeue)
            raise
        except _TaskConfigurationError:
            self._close(study, trial, None, {"status": "lost"}, requeue=requeue)
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("%s %s failed: %s\n%s", stage, self._ids.get(label, label), error, traceback.format_exc())
            self._close(study, trial, None, {"status": "failed", "error": error[:4000],
                                             **self._times(started, control)})
            if stage == "dense":
                raise CompressError(f"the dense reference could not be trained: {error}") from None
            return
        attrs.update(status="done", **self._times(started, control, epochs))
        self._epoch_seconds = attrs["seconds"] / max(1, attrs["trained_epochs"])
        self._close(study, trial, value, attrs, references=references)
        if not final and checkpoint and os.path.exists(checkpoint):
            os.remove(checkpoint)
        shown = f"LS distance {attrs['ls_distance']:.3f}, " if "ls_distance" in attrs else ""
        log.info("%s %s done in %.1f s: %svalidation ppl %.2f", stage, self._ids.get(label, label), attrs["seconds"],
                 shown, _ppl(attrs["val_loss"]))

    def _spectrum(self, model) -> torch.Tensor:
        spectrum = getattr(self.task, "spectrum", None)
        if spectrum is None:
            raise _TaskConfigurationError("objective ls_distance needs the task's spectrum(model), or a spectrum "
                                          "in the TaskResult its train() returns")
        return spectrum(model)

    @staticmethod
    def _times(started: float, control: TrainControl, epochs: Optional[int] = None) -> Dict[str, Any]:
        """This run's time and the epochs it trained (those before a resume were counted by the paused run; a
        task that reports no epochs is taken to have trained all of them once it returns)."""
        trained = control.epochs_run if control.epochs_run or epochs is None else epochs
        return {"seconds": time.time() - started, "trained_epochs": trained}

    def _close(self, study, trial, value: Optional[float], attrs: Dict[str, Any], requeue: bool = False,
               references: Optional[Dict[str, Any]] = None) -> None:
        """Record a run's end: set its attributes and tell Optuna; if another worker took the trial for dead and
        closed it meanwhile, record the finished run as a new trial instead."""
        optuna = self._optuna
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
        try:
            trial.set_user_attr("result", attrs)
            study.tell(trial, value, state=state)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
            if value is not None:
                user_attrs = {**study.get_trials(deepcopy=False)[trial.number].user_attrs, "result": attrs,
                              **(references or {})}
                study.add_trial(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                                          value=value, user_attrs=user_attrs))
        finally:
            self._mine.discard((study.study_name, trial.number))
        if requeue and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})

    # --- coordination --------------------------------------------------------------------------------------------

    def _study(self, stage: str):
        name = self.study_name if stage == "pool" else f"{self.study_name}.{stage}"
        try:
            return self._optuna.create_study(study_name=name, storage=self._storage, direction="minimize",
                                             load_if_exists=True)
        except Exception as exc:
            raise CompressError(f"cannot open study {name!r} in {describe_url(self.url)}: {type(exc).__name__}: "
                                f"{exc}") from None

    def _stage_names(self) -> List[str]:
        rounds = len(halving_sizes(self.space.pool, self.space.finalists)) - 1
        return ["pool", "dense"] + [f"round{r}" for r in range(1, rounds + 1)] + ["final"]

    def _trials(self, stage: str):
        name = self.study_name if stage == "pool" else f"{self.study_name}.{stage}"
        try:
            study = self._optuna.load_study(study_name=name, storage=self._storage)
        except KeyError:
            return []
        return study.get_trials(deepcopy=False)

    def _check_study(self) -> None:
        """Record the space's settings in a new study; refuse a study made from other settings."""
        study = self._study("pool")
        wanted = {"settings": self.space.settings(), "task": self.task_id}
        stored = study.user_attrs.get(_SETTINGS_ATTR)
        if stored is None:
            if study.get_trials(deepcopy=False):
                raise CompressError(f"study {self.study_name!r} in {describe_url(self.url)} holds trials of "
                                    f"another program; use another study name")
            study.set_user_attr(_SETTINGS_ATTR, wanted)
            return
        differences = []
        for key in sorted(set(stored["settings"]) | set(wanted["settings"])):
            there, here = stored["settings"].get(key), wanted["settings"].get(key)
            if there != here:
                if key in ("schedule", "reference", "space"):
                    differences.append(f"the {'searched keys' if key == 'space' else key} differ")
                else:
                    differences.append(f"{key} is {there!r} there and {here!r} here")
        if stored.get("task") != wanted["task"] and None not in (stored.get("task"), wanted["task"]):
            differences.append(f"the task is {stored.get('task')!r} there and {wanted['task']!r} here")
        if differences:
            raise CompressError(f"study {self.study_name!r} in {describe_url(self.url)} was made from another "
                                f"search: {'; '.join(differences)}. Continue it with its own space file, or start "
                                f"a new one with another study name or storage")

    def _alive(self, trial, study_name: str) -> bool:
        if (study_name, trial.number) in self._mine:
            return True
        claim = trial.user_attrs.get("claim") or {}
        worker = claim.get("worker")
        if worker is None:
            start = trial.datetime_start
            return start is None or (datetime.now() - start).total_seconds() < _UNCLAIMED_SECONDS
        host, _, pid = str(worker).rpartition(":")
        if host == _HOST and pid.isdigit():
            return _pid_alive(int(pid))
        beat = max(float(claim.get("heartbeat", 0.0)), float(trial.user_attrs.get("heartbeat", 0.0)))
        return time.time() - beat < self.stale_seconds

    def _reaped(self, study, requeue: bool):
        """The study's trials, after closing runs whose worker is gone (their candidates run again)."""
        optuna = self._optuna
        trials = study.get_trials(deepcopy=False)
        changed = False
        for t in trials:
            if t.state == optuna.trial.TrialState.RUNNING and not self._alive(t, study.study_name):
                try:
                    study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                    continue  # another worker closed it first
                log.warning("%s: run %d of worker %s was abandoned; its candidate runs again", study.study_name,
                            t.number, (t.user_attrs.get("claim") or {}).get("worker", "?"))
                if requeue and t.params:
                    study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number})
                changed = True
        return study.get_trials(deepcopy=False) if changed else trials

    def _records(self, trials, epochs: int, pool: bool = False) -> List[CandidateRecord]:
        """One record per candidate: its first finished run (done or failed), with its number of evaluations.
        A candidate is named after the number of the pool run that first finished it, as every worker sees."""
        out: Dict[str, CandidateRecord] = {}
        for t in sorted(trials, key=lambda t: t.number):
            kind = _kind(t)
            label = t.user_attrs.get("candidate")
            if kind not in ("done", "failed") or label is None:
                continue
            if label in out:
                out[label].evaluations += 1
                continue
            attrs = {**(t.user_attrs.get("claim") or {}), **_result(t)}
            if pool:
                self._ids[label] = f"#{t.number}"
            out[label] = CandidateRecord(
                id=self._ids.get(label, f"#{t.number}"), values=dict(attrs.get("values") or {}),
                epochs=int(attrs.get("epochs", epochs)),
                status=kind, value=t.value if kind == "done" else None, val_loss=attrs.get("val_loss"),
                ls_distance=attrs.get("ls_distance"), metrics=dict(attrs.get("metrics") or {}),
                seconds=float(attrs.get("seconds", 0.0)), error=attrs.get("error"), spectrum=attrs.get("spectrum"))
        return list(out.values())

    def _wait(self, what: str) -> None:
        self._check_time(0)
        if self._waiting_for != what:
            log.info("waiting for %s", what)
            self._waiting_for = what
        time.sleep(self.poll_seconds)

    def _check_time(self, epochs: int) -> None:
        """Stop before work that would run past the deadline: a whole run, or (with checkpoints, where a run can
        pause at an epoch's end) its first epoch."""
        if self._deadline is None:
            return
        self._waiting_for = None
        per_epoch = self._epoch_seconds or 0.0
        need = per_epoch * (1 if self.checkpoint_dir else epochs)
        if time.monotonic() + need > self._deadline:
            raise _OutOfTime()

    def _checkpoint(self, stage: str, label: str) -> Optional[str]:
        if not self.checkpoint_dir:
            return None
        folder = os.path.join(self.checkpoint_dir, self.study_name)
        os.makedirs(folder, exist_ok=True)
        digest = hashlib.sha1(label.encode()).hexdigest()[:12]
        return os.path.join(folder, f"{stage}-{digest}.pt")


class _TaskConfigurationError(CompressError):
    """The task cannot serve this search (e.g. no spectrum for the ls_distance objective): stop the search."""


def round_table(round_: Round, space: SearchSpace, tablefmt: str = "psql") -> str:
    """A stage's candidates as a table: values, epochs, LS distance, validation perplexity, the task's other
    metrics, and whether each was kept, dropped or failed."""
    from tabulate import tabulate

    metric_keys: List[str] = []
    for r in round_.records:
        for k in r.metrics:
            if k not in metric_keys:
                metric_keys.append(k)
    show_ls = any(r.ls_distance is not None for r in round_.records)
    headers = ["candidate", *[p.path[-1] for p in space.parameters], "epochs"]
    headers += ["LS distance"] if show_ls else []
    headers += ["val ppl", *[_metric_label(k) for k in metric_keys], "evals" if round_.name == "pool" else None,
                "result"]
    headers = [h for h in headers if h is not None]
    rows = []
    for r in round_.records:
        row = [r.id, *[_cell(r.values.get(p.key)) for p in space.parameters], r.epochs]
        if show_ls:
            row.append(r.ls_distance)
        row.append(r.val_ppl)
        row += [_metric_value(k, r.metrics.get(k)) for k in metric_keys]
        if round_.name == "pool":
            row.append(r.evaluations)
        if r.status == "failed":
            row.append(f"failed: {(r.error or '')[:60]}")
        elif round_.name == "final":
            row.append("winner" if r.id in round_.kept else "finalist")
        else:
            row.append("kept" if r.id in round_.kept else ("dropped" if round_.kept else ""))
        rows.append(row)
    ranking = "LS distance" if round_.objective == "ls_distance" else "validation loss"
    title = f"{round_.name}: {len(round_.records)} candidates, {round_.epochs} epochs, ranked by {ranking}"
    return title + "\n" + tabulate(rows, headers=headers, tablefmt=tablefmt, floatfmt=".2f", missingval="-")


# --- helpers ---------------------------------------------------------------------------------------------------


def _kind(trial) -> str:
    state = trial.state.name
    if state == "COMPLETE":
        return "done"
    if state == "FAIL":
        status = _result(trial).get("status")
        return status if status in ("failed", "surplus") else "lost"
    if state == "RUNNING":
        return "running"
    return "waiting" if state == "WAITING" else "lost"


def _result(trial) -> Dict[str, Any]:
    return trial.user_attrs.get("result") or {}


def _ranked(records: List[CandidateRecord]) -> List[CandidateRecord]:
    done = sorted((r for r in records if r.status == "done"), key=lambda r: (r.value, _number(r.id)))
    return done + [r for r in records if r.status != "done"]


def _number(candidate_id: str) -> int:
    return int(candidate_id[1:]) if candidate_id[1:].isdigit() else 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ppl(loss: Optional[float]) -> Optional[float]:
    if loss is None:
        return None
    return math.exp(loss) if loss < 700 else math.inf


def _metric_label(key: str) -> str:
    return key[:-5] + " ppl" if key.endswith("_loss") else key


def _metric_value(key: str, value: Optional[float]) -> Optional[float]:
    return _ppl(value) if key.endswith("_loss") and value is not None else value


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) or value is None else json.dumps(value)


def _values_text(values: Dict[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in values.items())


def _as_list(spectrum) -> List[float]:
    values = torch.as_tensor(spectrum).detach().cpu().double().flatten().tolist()
    return [float(f"{v:.7g}") for v in values]


"""Searching compression recipes: Hyperpruning over any schedule's keys, on Optuna (optional extra ``search``).

* :mod:`.space`: the search space, a YAML file over the keys of a base schedule (:class:`SearchSpace`);
* :mod:`.task`: what the search asks of the user's training code (:class:`TaskResult`, :class:`TrainControl`);
* :mod:`.hyperpruning`: the pool, the halving rounds and the finalists (:class:`Hyperpruning`), resumable and
  shared by several workers through an Optuna storage (:mod:`.storage`);
* :mod:`.plots`: the candidates' spectra against the dense one, and rank by LS distance against final
  perplexity (optional extra ``plot``).

Optuna is imported only when a search runs, so ``compress`` works without it.
"""
from compress.search.hyperpruning import CandidateRecord, Hyperpruning, Round, SearchResult, round_table
from compress.search.space import Choice, Range, SearchSpace, halving_sizes
from compress.search.storage import open_storage
from compress.search.task import TaskResult, TrainControl, TrainingPaused

__all__ = ["Hyperpruning", "SearchResult", "Round", "CandidateRecord", "round_table", "SearchSpace", "Choice",
           "Range", "halving_sizes", "open_storage", "TaskResult", "TrainControl", "TrainingPaused"]

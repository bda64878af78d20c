"""Negatively Correlated Search (Tang, Yang and Yao, 2016) as SiPO uses it to choose group pruning rates.

NCS runs a population of (1+1) evolution strategies, one Gaussian search distribution per individual, and makes
them search *different* regions: a child replaces its parent when it is good enough relative to how much it
moves the individual away from the others (Bhattacharyya distance between the search distributions). This is
the variant of SiPO's ``ncs.py``:

* all parents start at the same point ``x0``, each with step sizes ``sigma`` per coordinate;
* ask: ``child_i = clip(parent_i + sigma_i * N(0, I), lower, upper)``;
* tell: with ``f_min`` the best fitness seen, ``nF'_i = (f(child_i) - f_min) / ((f(parent_i) - f_min) +
  (f(child_i) - f_min))`` and ``nd'_i = d'_i / (d_i + d'_i)``, where ``d_i`` (``d'_i``) is the smallest
  Bhattacharyya distance from parent (child) ``i`` to the other parents; the child replaces the parent when
  ``lambda_i * nd'_i > nF'_i`` with ``lambda_i ~ N(1, lambda_sigma_t)``, ``lambda_sigma_t`` falling linearly
  from ``lambda_sigma`` to 0 over the run, and (SiPO) only when the child's fitness is negative, i.e. feasible;
* every ``epoch`` generations each individual's step grows (``sigma / r``) if more than 1/5 of its children
  replaced it, and shrinks (``sigma * r``) if fewer did.

The optimizer minimises. It only proposes points and digests their fitness (``ask``/``tell``); evaluating them is
the caller's business, so it can be stopped between generations and resumed from :meth:`state_dict`.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np

from compress import options

__all__ = ["NegativelyCorrelatedSearch", "bhattacharyya_distance"]

ArrayLike = Union[float, Sequence[float], np.ndarray]


def bhattacharyya_distance(mean_p: np.ndarray, sigma_p: np.ndarray, mean_q: np.ndarray,
                           sigma_q: np.ndarray) -> float:
    """Bhattacharyya distance between two Gaussians with diagonal covariances ``diag(sigma**2)``.

    ``D = 1/8 (mu_p - mu_q)^T C^-1 (mu_p - mu_q) + 1/2 sum_k [ln C_kk - (ln s2_pk + ln s2_qk) / 2]``, ``C = (s2_p +
    s2_q) / 2``.
    """
    var_p, var_q = np.square(sigma_p), np.square(sigma_q)
    cov = (var_p + var_q) / 2
    diff = np.asarray(mean_p) - np.asarray(mean_q)
    return float(np.sum(diff * diff / cov) / 8 + 0.5 * np.sum(np.log(cov) - 0.5 * (np.log(var_p) + np.log(var_q))))


def _ratio(a: float, b: float) -> float:
    """``a / (a + b)``, and 1/2 (no preference) when both are zero."""
    return a / (a + b) if a + b > 0 else 0.5


class NegativelyCorrelatedSearch:
    """SiPO's NCS minimiser over a box.

    Args:
        x0: the starting point of every individual (one value per coordinate).
        sigma: initial step size, a scalar or one per coordinate.
        lower: lower bound, scalar or per coordinate.
        upper: upper bound, scalar or per coordinate.
        population: number of individuals ``N`` (SiPO: 6 one-shot, 8 iterative).
        generations: generations in the run (SiPO: 100); sets the ``lambda_sigma`` decay.
        initial_fitness: the fitness the parents start with (SiPO: ``+sparsity(x0)``, worse than any feasible point).
        epoch: generations between step-size adaptations (default: ``population``, as in SiPO).
        r: step-size adaptation factor of the 1/5 success rule.
        lambda_sigma: initial standard deviation of the ``lambda`` multiplier.
        feasible_only: replace a parent only by a child with negative fitness (SiPO's fitness is negative exactly
            when the constraint holds).
        seed: seed of the private random generator.

    Raises:
        ValueError: a lower bound above its upper bound, or a step size ``<= 0``.
        ArgumentError: ``population < 2`` or ``generations < 1``.

    Example:
        >>> ncs = NegativelyCorrelatedSearch(x0=[0.9], sigma=0.1, lower=0.0, upper=1.0, population=4,
        ...                                  generations=30, seed=0)
        >>> while not ncs.done:                          # minimise (x - 0.3)^2 - 1 (negative: feasible)
        ...     ncs.tell([float((child[0] - 0.3) ** 2) - 1.0 for child in ncs.ask()])
        >>> round(float(ncs.best_x[0]), 2), ncs.generation
        (0.29, 30)
    """

    def __init__(self, x0: ArrayLike, sigma: ArrayLike, lower: ArrayLike, upper: ArrayLike, population: int = 6,
                 generations: int = 100, initial_fitness: float = float("inf"), epoch: Optional[int] = None,
                 r: float = 0.99, lambda_sigma: float = 0.1, feasible_only: bool = True, seed: int = 0):
        x0 = np.atleast_1d(np.asarray(x0, dtype=np.float64))
        dim = x0.shape[0]
        self.lower = np.broadcast_to(np.asarray(lower, dtype=np.float64), (dim,)).copy()
        self.upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), (dim,)).copy()
        if np.any(self.lower > self.upper):
            raise ValueError(f"lower bound {self.lower} exceeds upper bound {self.upper}")
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (dim,))
        if np.any(sigma <= 0):
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.population = options.integer("population", population, minimum=2)  # diversity needs others
        self.generations = options.integer("generations", generations, minimum=1)
        self.epoch = int(epoch or population)
        self.r = float(r)
        self.lambda_sigma = float(lambda_sigma)
        self.feasible_only = bool(feasible_only)
        self.rng = np.random.default_rng(seed)
        start = np.clip(x0, self.lower, self.upper)
        self.parents = np.tile(start, (self.population, 1))
        self.parent_fitness = np.full(self.population, float(initial_fitness))
        self.sigmas = np.tile(sigma, (self.population, 1))
        self.successes = np.zeros(self.population, dtype=np.int64)
        self.generation = 0
        self.best_x = start.copy()
        self.best_fitness = float("inf")
        self._children: Optional[np.ndarray] = None

    @property
    def done(self) -> bool:
        """True once ``generations`` generations have been told."""
        return self.generation >= self.generations

    def ask(self) -> np.ndarray:
        """This generation's children, one row per individual (the same rows until :meth:`tell`)."""
        if self._children is None:
            noise = self.rng.standard_normal(self.parents.shape)
            self._children = np.clip(self.parents + self.sigmas * noise, self.lower, self.upper)
        return self._children.copy()

    def tell(self, fitness: Sequence[float]) -> None:
        """Digest the fitness of the children from :meth:`ask` (lower is better; ``inf``/NaN are worst)."""
        if self._children is None:
            raise RuntimeError("tell() before ask()")
        children = self._children
        fit = np.asarray(fitness, dtype=np.float64)
        if fit.shape != (self.population,):
            raise ValueError(f"expected {self.population} fitness values, got shape {fit.shape}")
        fit = np.where(np.isnan(fit), np.inf, fit)
        i_best = int(np.argmin(fit))
        if fit[i_best] < self.best_fitness:
            self.best_fitness, self.best_x = float(fit[i_best]), children[i_best].copy()
        f_min = min(self.best_fitness, float(np.min(self.parent_fitness)))
        lam_sd = self.lambda_sigma * max(0.0, 1.0 - self.generation / self.generations)
        lambdas = self.rng.normal(1.0, lam_sd, self.population) if lam_sd > 0 else np.ones(self.population)
        replace = np.zeros(self.population, dtype=bool)
        for i in range(self.population):
            if not np.isfinite(fit[i]) or (self.feasible_only and not fit[i] < 0):
                continue
            parent_gap = self.parent_fitness[i] - f_min
            norm_f = _ratio(fit[i] - f_min, parent_gap) if np.isfinite(parent_gap) else 0.0
            others = [j for j in range(self.population) if j != i]
            d_parent = min(bhattacharyya_distance(self.parents[i], self.sigmas[i], self.parents[j], self.sigmas[j])
                           for j in others)
            d_child = min(bhattacharyya_distance(children[i], self.sigmas[i], self.parents[j], self.sigmas[j])
                          for j in others)
            replace[i] = lambdas[i] * _ratio(d_child, d_parent) > norm_f
        self.parents[replace] = children[replace]
        self.parent_fitness[replace] = fit[replace]
        self.successes += replace
        self.generation += 1
        self._children = None
        if self.generation % self.epoch == 0:
            rate = self.successes / self.epoch
            self.sigmas[rate > 0.2] /= self.r
            self.sigmas[rate < 0.2] *= self.r
            self.successes[:] = 0

    def state_dict(self) -> Dict[str, Any]:
        """Everything a resume between generations needs, random generator included."""
        return {"parents": self.parents.copy(), "parent_fitness": self.parent_fitness.copy(),
                "sigmas": self.sigmas.copy(), "successes": self.successes.copy(), "generation": self.generation,
                "best_x": self.best_x.copy(), "best_fitness": self.best_fitness,
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.parents = np.array(state["parents"], dtype=np.float64)
        self.parent_fitness = np.array(state["parent_fitness"], dtype=np.float64)
        self.sigmas = np.array(state["sigmas"], dtype=np.float64)
        self.successes = np.array(state["successes"], dtype=np.int64)
        self.generation = int(state["generation"])
        self.best_x = np.array(state["best_x"], dtype=np.float64)
        self.best_fitness = float(state["best_fitness"])
        self.rng.bit_generator.state = state["rng"]
        self._children = None

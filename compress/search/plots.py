"""Plots of a Hyperpruning search (optional extra ``plot``: matplotlib).

* :func:`plot_spectra`: every pool candidate's Lyapunov spectrum against the dense reference's, at the pool's
  epochs (the closer, the better by Hyperpruning's criterion);
* :func:`plot_rank`: each candidate's rank by an early score (LS distance, or early perplexity) against its
  perplexity after full training;
* :func:`search_plots`: both, for a :class:`~compress.search.SearchResult`.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

from compress.errors import CompressError

__all__ = ["plot_spectra", "plot_rank", "search_plots"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CompressError("plots need matplotlib: pip install 'compress[plot]'") from None
    return plt


def plot_spectra(dense: Sequence[float], spectra: Dict[str, Sequence[float]], path: str, title: str = "") -> str:
    """Draw the candidates' spectra (one thin line each, darker = closer to the dense one) and the dense spectrum
    (thick, black); save to ``path`` and return it."""
    from compress.analysis import ls_distance

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    order = sorted(spectra, key=lambda k: ls_distance(dense, spectra[k]))
    cmap = plt.get_cmap("viridis")
    for i, name in enumerate(order):
        ax.plot(range(1, len(spectra[name]) + 1), spectra[name], lw=0.8,
                color=cmap(i / max(1, len(order) - 1)), label=name if i < 3 else None)
    ax.plot(range(1, len(dense) + 1), list(dense), lw=2.2, color="black", label="dense")
    ax.set_xlabel("exponent (QR order)")
    ax.set_ylabel("Lyapunov exponent (bits per step)")
    ax.set_title(title or "Lyapunov spectra: candidates (closest darkest) and the dense reference")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_rank(scores: Dict[str, float], final: Dict[str, float], path: str, score_label: str = "LS distance",
              final_label: str = "validation perplexity after full training",
              groups: Optional[Dict[str, str]] = None) -> str:
    """Scatter each candidate's rank by ``scores`` (lowest first) against ``final``; ``groups`` colours points
    (e.g. by the stage a candidate reached). Saves to ``path`` and returns it."""
    plt = _pyplot()
    ranked = sorted(scores, key=lambda k: scores[k])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    names = [k for k in ranked if k in final]
    colours: Dict[str, List[int]] = {}
    for k in names:
        colours.setdefault((groups or {}).get(k, ""), []).append(ranked.index(k) + 1)
    for group, ranks in colours.items():
        ax.scatter(ranks, [final[ranked[r - 1]] for r in ranks], label=group or None, s=25)
    for k in names:
        ax.annotate(k, (ranked.index(k) + 1, final[k]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"rank by {score_label}")
    ax.set_ylabel(final_label)
    if groups:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def search_plots(result, folder: str) -> List[str]:
    """Both plots for a search: ``spectra.png`` (pool spectra, when kept, against the dense reference) and
    ``rank.png`` (rank by the pool's score against the validation perplexity of the last stage each candidate
    reached, coloured by that stage)."""
    os.makedirs(folder, exist_ok=True)
    written = []
    if not result.rounds:
        return written
    pool = result.rounds[0]
    epochs = pool.epochs
    spectra = {r.id: r.spectrum for r in pool.records if r.spectrum}
    if spectra and epochs in result.dense_spectra:
        written.append(plot_spectra(result.dense_spectra[epochs], spectra, os.path.join(folder, "spectra.png"),
                                    f"Lyapunov spectra after {epochs} epochs"))
    scores = {r.id: r.value for r in pool.records if r.status == "done"}
    last: Dict[str, float] = {}
    stage: Dict[str, str] = {}
    for round_ in result.rounds:
        for r in round_.records:
            if r.status == "done" and r.val_ppl is not None:
                last[r.id] = r.val_ppl
                stage[r.id] = f"{round_.name} ({round_.epochs} epochs)"
    label = "LS distance" if pool.objective == "ls_distance" else "validation loss"
    written.append(plot_rank(scores, last, os.path.join(folder, "rank.png"), f"{label} after {epochs} epochs",
                             "validation perplexity at the last stage reached", stage))
    return written

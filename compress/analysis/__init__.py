"""Analyses of trained recurrent networks: the Lyapunov spectrum and Hyperpruning's distance between spectra
(:mod:`.lyapunov`)."""
from compress.analysis.lyapunov import ls_distance, lyapunov_spectrum, recurrent_step

__all__ = ["lyapunov_spectrum", "ls_distance", "recurrent_step"]

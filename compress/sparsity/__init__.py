"""Mask mechanics: finding a model's weights by name and keeping their boolean masks.

* :class:`ParameterIndex` (:mod:`.names`): canonical names, aliases (tied, re-parametrised, ``module.``) and
  patterns;
* :mod:`.gates`: which rows of a packed LSTM/GRU tensor belong to which gate (``rnn.weight_hh_l0[gate=f]``);
* :class:`MaskStore` (:mod:`.masks`): the one place where masks are stored and applied to weights, gradients and
  optimizer state; :class:`ParameterMaskers` is its read-only view in the shape of Distiller's ``zeros_mask_dict``.
"""
from compress.sparsity.masks import MaskStore, ParameterMasker, ParameterMaskers
from compress.sparsity.names import ParameterIndex

__all__ = ["MaskStore", "ParameterIndex", "ParameterMasker", "ParameterMaskers"]

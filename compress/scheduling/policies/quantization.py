"""The quantization policy: quantization-aware training with a quantizer that supports it."""
from __future__ import annotations

from typing import Any, Dict, Mapping

from compress import options
from compress.context import HookContext
from compress.errors import ArgumentError
from compress.scheduling.policies.base import ScheduledTrainingPolicy
from compress.sparsity.masks import MaskStore


class QuantizationPolicy(ScheduledTrainingPolicy):
    """Quantization-aware training: prepare the model once, then re-quantize parameters after every step of the
    active epochs.

    The model is prepared in :meth:`attach`, i.e. only once the whole schedule has loaded. A post-training
    quantizer (one whose ``training_aware`` is false, such as
    :class:`~compress.quantization.PostTrainLinearQuantizer`) is refused: build it with
    :func:`~compress.scheduling.components_from_file` and prepare the trained model with it instead.

    Args:
        quantizer: an object with ``prepare_model()`` and ``quantize_params()`` and ``training_aware = True``.

    Raises:
        ArgumentError: the quantizer is a post-training one.

    Example:
        >>> import torch
        >>> from compress.quantization import PostTrainLinearQuantizer
        >>> QuantizationPolicy(PostTrainLinearQuantizer(torch.nn.Linear(2, 2)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        compress.errors.ArgumentError: instance_name: PostTrainLinearQuantizer is a post-training quantizer, ...
    """

    def __init__(self, quantizer: Any):
        if not getattr(quantizer, "training_aware", False):
            raise ArgumentError("instance_name", f"{type(quantizer).__name__} is a post-training quantizer, which "
                                                 f"cannot run in a training policy: build it with "
                                                 f"compress.components_from_file(model, path) and call its "
                                                 f"prepare_model() on the trained model")
        self.quantizer = quantizer

    def attach(self, masks: MaskStore) -> None:
        self.quantizer.prepare_model()
        self.quantizer.quantize_params()

    def on_minibatch_end(self, ctx: HookContext) -> None:
        self.quantizer.quantize_params()

    def state_dict(self) -> Dict[str, Any]:
        return {"quantizer": self.quantizer.state_dict()} if hasattr(self.quantizer, "state_dict") else {}

    def check_state(self, state: Any) -> None:
        options.fields((), state, self.state_dict())
        if "quantizer" in state:
            with options.under("quantizer"):
                check = getattr(self.quantizer, "check_state", None)
                if check is not None:
                    check(state["quantizer"])
                else:
                    options.like((), state["quantizer"], self.quantizer.state_dict())

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.check_state(state)
        if "quantizer" in state and hasattr(self.quantizer, "load_state_dict"):
            self.quantizer.load_state_dict(state["quantizer"])



"""The quantization policy: quantization-aware training with a quantizer that supports it."""
from __future__ import annotations

from typing import Any, Dict, Mapping

from compress.context import HookContext
from compress.scheduling.policies.base import ScheduledTrainingPolicy


class QuantizationPolicy(ScheduledTrainingPolicy):
    """Run a quantizer: prepare the model once, then re-quantize parameters after every step of active epochs.

    Args:
        quantizer: an object with ``prepare_model()`` and ``quantize_params()``.
    """

    def __init__(self, quantizer: Any):
        self.quantizer = quantizer
        self.quantizer.prepare_model()
        self.quantizer.quantize_params()

    def on_minibatch_end(self, ctx: HookContext) -> None:
        self.quantizer.quantize_params()

    def state_dict(self) -> Dict[str, Any]:
        return {"quantizer": self.quantizer.state_dict()} if hasattr(self.quantizer, "state_dict") else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "quantizer" in state and hasattr(self.quantizer, "load_state_dict"):
            self.quantizer.load_state_dict(state["quantizer"])



"""Low-level tensor kernels: the exact k-th smallest magnitude over one or many tensors (:mod:`.magnitude`)."""
from compress.kernels.magnitude import kth_smallest_magnitude, magnitude_threshold

__all__ = ["kth_smallest_magnitude", "magnitude_threshold"]

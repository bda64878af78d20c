"""Files: checkpoints written atomically and read safely (:mod:`.checkpoint`)."""
from compress.io.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint"]

"""Files: one atomic write and one safe load (:mod:`.files`) under every file the library writes or reads, and
checkpoints (:mod:`.checkpoint`)."""
from compress.io.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from compress.io.files import atomic_write, safe_torch_load

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "atomic_write", "safe_torch_load"]

"""Where the scheduler's per-epoch metrics go: a CSV file (built in) or TensorBoard (optional extra).

Both are callbacks for :meth:`compress.CompressionScheduler.add_metrics_callback`; each takes the flat record of
:func:`compress.scheduling.metrics.epoch_metrics` (``epoch``, ``lr``, ``sparsity/<weight>``, ``pruned/<weight>``,
...)::

    scheduler.add_metrics_callback(compress.reports.CSVMetricsWriter("runs/metrics.csv"))
    scheduler.add_metrics_callback(compress.reports.TensorBoardWriter("runs/tb"))  # extra: tensorboard
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Dict, List, Mapping, Union

from compress.distributed import world
from compress.errors import CompressError
from compress.io.files import atomic_write

__all__ = ["CSVMetricsWriter", "TensorBoardWriter", "read_metrics_csv"]


def read_metrics_csv(path: Union[str, os.PathLike]) -> List[Dict[str, float]]:
    """The records a :class:`CSVMetricsWriter` wrote (empty cells left out), as numbers.

    Example:
        >>> import tempfile, os.path
        >>> path = os.path.join(tempfile.mkdtemp(), "m.csv")
        >>> writer = CSVMetricsWriter(path)
        >>> writer({"epoch": 0, "lr": 20.0}); writer({"epoch": 1, "lr": 5.0, "sparsity/total": 50.0})
        >>> read_metrics_csv(path)
        [{'epoch': 0.0, 'lr': 20.0}, {'epoch': 1.0, 'lr': 5.0, 'sparsity/total': 50.0}]
    """
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


class CSVMetricsWriter:
    """Append each record to a CSV file, one row per epoch; columns are the union of the records' keys.

    Under ``torch.distributed`` only rank 0 writes (the records are the same on every rank: masks are). The file
    is rewritten whole (atomically) at each record, so a column that appears later (a policy that
    starts at epoch 5) gets a header, and a killed run never leaves a half-written row. An existing file is
    continued (a resumed run): rows of epochs at or after the first new record's are replaced.

    Args:
        path: the CSV file.

    Example:
        >>> import tempfile, os.path
        >>> path = os.path.join(tempfile.mkdtemp(), "metrics.csv")
        >>> writer = CSVMetricsWriter(path)
        >>> writer({"epoch": 0, "lr": 20.0, "sparsity/total": 10.0})
        >>> print(open(path).read().strip())
        epoch,lr,sparsity/total
        0,20.0,10.0
    """

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = os.fspath(path)
        self._rows: List[Dict[str, Any]] = []
        self._resumed = os.path.exists(self.path)

    def __call__(self, record: Mapping[str, Any]) -> None:
        if world()[0] != 0:  # under torch.distributed every rank has the same record; rank 0 writes it
            return
        if self._resumed:  # keep what an earlier run wrote, up to this epoch
            self._resumed = False
            epoch = float(record.get("epoch", float("inf")))
            self._rows = [row for row in read_metrics_csv(self.path) if row.get("epoch", -1) < epoch]
            for row in self._rows:
                if "epoch" in row and float(row["epoch"]).is_integer():
                    row["epoch"] = int(row["epoch"])
        self._rows.append(dict(record))
        columns: List[str] = []
        for row in self._rows:
            columns.extend(key for key in row if key not in columns)
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._rows)
        with atomic_write(self.path, mode="w") as f:
            f.write(text.getvalue())


class TensorBoardWriter:
    """Write each record as TensorBoard scalars (tag = key, step = ``epoch``).

    Args:
        logdir: the event folder.

    Raises:
        CompressError: TensorBoard is not installed (the optional extra ``tensorboard``).
    """

    def __init__(self, logdir: Union[str, os.PathLike]):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise CompressError("TensorBoard logging needs the tensorboard package: pip install "
                                "'compress[tensorboard]' (or pip install tensorboard)") from None
        self.writer = SummaryWriter(os.fspath(logdir)) if world()[0] == 0 else None  # one event file, rank 0's

    def __call__(self, record: Mapping[str, Any]) -> None:
        if self.writer is None:
            return
        step = int(record.get("epoch", 0))
        for key, value in record.items():
            if key != "epoch":
                self.writer.add_scalar(key, float(value), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

"""Reports: sparsity and perplexity tables (:mod:`.tables`), checkpoint inspection (:mod:`.inspection`), the
scheduler's metrics as CSV or TensorBoard (:mod:`.metrics_log`) and plots (:mod:`.plots`, extra ``plot``)."""
from compress.reports.metrics_log import CSVMetricsWriter, TensorBoardWriter, read_metrics_csv
from compress.reports.plots import plot_sparsity_history
from compress.reports.tables import (
    perplexity_table,
    sparsity_summary,
    sparsity_table,
    sparsity_total,
)

__all__ = ["sparsity_summary", "sparsity_table", "sparsity_total", "perplexity_table", "CSVMetricsWriter",
           "TensorBoardWriter", "read_metrics_csv", "plot_sparsity_history"]

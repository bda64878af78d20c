"""Reports: sparsity and perplexity tables (:mod:`.tables`) and checkpoint inspection (:mod:`.inspection`)."""
from compress.reports.tables import (
    perplexity_table,
    sparsity_summary,
    sparsity_table,
    sparsity_total,
)

__all__ = ["sparsity_summary", "sparsity_table", "sparsity_total", "perplexity_table"]

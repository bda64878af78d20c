"""Searching per-group pruning rates under a quality constraint (SiPO): greedy search and NCS."""
from compress.pruning.rate_search.ncs import NegativelyCorrelatedSearch
from compress.pruning.rate_search.search import (
                                                 Constraint,
                                                 GreedyRateSearch,
                                                 NCSRateSearch,
                                                 SearchResult,
                                                 prune_to_constraint,
                                                 search_group_rates,
)

__all__ = ["Constraint", "SearchResult", "GreedyRateSearch", "NCSRateSearch", "NegativelyCorrelatedSearch",
           "search_group_rates", "prune_to_constraint"]

"""Reference recurrent language models and the corpora they are trained on."""
from .corpus import (
    Corpus,
    Dictionary,
    SyntheticCorpus,
    batchify,
    get_batch,
    load_corpus,
    repackage_hidden,
    synthetic_corpus,
    verify_checksums,
)
from .word_lm import RNNModel

__all__ = [
    "Corpus",
    "Dictionary",
    "RNNModel",
    "SyntheticCorpus",
    "batchify",
    "get_batch",
    "load_corpus",
    "repackage_hidden",
    "synthetic_corpus",
    "verify_checksums",
]

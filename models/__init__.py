"""Reference recurrent language models and the corpora they are trained on."""
from .awd_lstm import AWDLSTMModel, WeightDropLSTM
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
from .dropout import ar_tar_loss, embedding_dropout, locked_dropout
from .onlstm import ONLSTMModel
from .rhn import RHNModel
from .sparse_lm import SparseRNNModel
from .training import evaluate, evaluate_lm, plain_forward, train_epoch
from .word_lm import RNNModel, rnn_model_from_state

__all__ = [
    "AWDLSTMModel",
    "ONLSTMModel",
    "RHNModel",
    "WeightDropLSTM",
    "ar_tar_loss",
    "embedding_dropout",
    "locked_dropout",
    "Corpus",
    "Dictionary",
    "RNNModel",
    "rnn_model_from_state",
    "SparseRNNModel",
    "SyntheticCorpus",
    "batchify",
    "get_batch",
    "load_corpus",
    "repackage_hidden",
    "synthetic_corpus",
    "verify_checksums",
    "evaluate",
    "evaluate_lm",
    "plain_forward",
    "train_epoch",
]

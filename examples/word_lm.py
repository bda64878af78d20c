"""Train and evaluate a word-level recurrent language model under a compression schedule.

The general trainer: any schedule of ``schedules/`` (or Distiller's LM schedules) drives pruning of the model.
The models are PyTorch's word-LM example (``--model LSTM|GRU|RNN_TANH|RNN_RELU``), the zoo of RHN, ON-LSTM and
AWD-LSTM (``--model RHN|ONLSTM|AWD``, with AR/TAR) and SparseSeqModels' predefined-sparse LSTM (``--sparse-mode``,
``--emblocks``); the optimizer is torch's SGD, sparse NT-ASGD (``--optimizer sgd``) or Adam (``--optimizer
adam``). ``--save``/``--resume`` checkpoint every epoch, ``--time-budget`` stops before an epoch that would not
fit. With no ``--data`` it trains on an embedded synthetic corpus whose best achievable perplexity is known and
printed beside the model's. ``--help`` lists every flag.

    python examples/word_lm.py --schedule schedules/agp_lstm.yaml
    python examples/word_lm.py --schedule schedules/agp_lstm.yaml --data ../shared/data/ptb --cuda \\
        --emsize 650 --nhid 650 --dropout 0.5 --epochs 40
    python examples/word_lm.py --schedule schedules/selfish_rhn.yaml --model RHN --tied --couple --optimizer sgd

The flags, the builders and the loop are in the installed package (``compress_models.builders`` and
``compress_models.trainer``), where the paper scripts of ``examples/papers/`` and ``python -m compress inspect``
use them too; ``examples/minimal.py`` is the loop written out.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from compress_models.builders import parse_args
from compress_models.trainer import train


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Train with the flags of ``argv`` (default: the command line) and return the final model's row."""
    return train(parse_args(argv))


if __name__ == "__main__":
    main()

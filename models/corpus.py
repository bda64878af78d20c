"""Word-level language-modelling corpora, a synthetic Markov source with a known entropy rate, and batching.

Tokenisation follows PyTorch's ``word_language_model`` example: every line becomes ``line.split() + ['<eos>']``,
blank lines included, so token counts match the published PTB and WikiText-2 figures.
"""
from __future__ import annotations

import bisect
import hashlib
import logging
import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch

from .word_lm import Hidden

logger = logging.getLogger(__name__)

EOS = "<eos>"
SPLITS = ("train", "valid", "test")
SORT_VOCAB = ("none", "up", "down")
PathLike = Union[str, os.PathLike]

# Parameters of the synthetic source; see synthetic_corpus.
_MIN_SUCCESSORS, _MAX_SUCCESSORS = 10, 30
_EOS_PROB = 1 / 20  # lines of about 20 tokens, like PTB's 22


class Dictionary:
    """A word <-> id map; a word's id is its position in ``idx2word``.

    Args:
        words: the initial words, in id order.
    """

    def __init__(self, words: Iterable[str] = ()):
        self.word2idx: dict[str, int] = {}
        self.idx2word: List[str] = []
        for word in words:
            self.add_word(word)

    def add_word(self, word: str) -> int:
        """Return the id of ``word``, appending it to the vocabulary if it is new.

        Args:
            word: the word to look up or add.
        """
        idx = self.word2idx.get(word)
        if idx is None:
            idx = self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return idx

    def __len__(self) -> int:
        return len(self.idx2word)


class Corpus:
    """The train, valid and test token streams of a corpus, as ids into one dictionary.

    Args:
        dictionary: the vocabulary shared by the three splits.
        train: 1-D LongTensor of training token ids.
        valid: 1-D LongTensor of validation token ids.
        test: 1-D LongTensor of test token ids.
    """

    def __init__(self, dictionary: Dictionary, train: torch.Tensor, valid: torch.Tensor, test: torch.Tensor):
        self.dictionary = dictionary
        self.train = train
        self.valid = valid
        self.test = test

    def split(self, name: str) -> torch.Tensor:
        """Return the token ids of one split.

        Args:
            name: ``'train'``, ``'valid'`` or ``'test'``.
        """
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {name!r}")
        return getattr(self, name)


class SyntheticCorpus(Corpus):
    """A corpus sampled from a known first-order Markov source, so the best achievable perplexity is known.

    Each split is sampled as if a line had just ended (the state before its first token is ``<eos>``), which is
    also what a model evaluated from a zero hidden state sees.

    Attributes:
        transition: ``(V, V)`` float64 tensor, ``transition[i, j] = P(next id = j | current id = i)``, indexed by
            dictionary ids.
        stationary: ``(V,)`` float64 tensor, the stationary distribution π with ``π P = π`` and ``Σ π = 1``.
            It is solved exactly from ``(Pᵀ - I) π = 0`` with one equation replaced by ``Σ π = 1`` (not by power
            iteration, which would fail to converge on a periodic chain). The source has one closed class (every
            word can end a line), so π is unique; unreachable words get π = 0.
        entropy_rate: ``H = -Σ_i π_i Σ_j P_ij log P_ij`` in nats per token: the lowest expected cross-entropy any
            model can reach on a long sample.

    Args:
        dictionary: the vocabulary.
        train: 1-D LongTensor of training token ids.
        valid: 1-D LongTensor of validation token ids.
        test: 1-D LongTensor of test token ids.
        transition: the source's transition matrix in dictionary ids (rows sum to 1).
    """

    def __init__(
        self,
        dictionary: Dictionary,
        train: torch.Tensor,
        valid: torch.Tensor,
        test: torch.Tensor,
        transition: torch.Tensor,
    ):
        super().__init__(dictionary, train, valid, test)
        self.transition = transition
        self.stationary = _stationary_distribution(transition)
        self.entropy_rate = -float(self.stationary @ torch.special.xlogy(transition, transition).sum(1))

    @property
    def entropy_perplexity(self) -> float:
        """``exp(entropy_rate)``: the limit of :meth:`best_perplexity` as a split grows long."""
        return math.exp(self.entropy_rate)

    def best_perplexity(self, split: str = "test") -> float:
        """Perplexity of the true source on one split: the best any model can do on it in expectation.

        Args:
            split: ``'train'``, ``'valid'`` or ``'test'``.

        Returns:
            ``exp`` of the source's mean negative log-likelihood per token of that split.
        """
        ids = self.split(split)
        previous = torch.cat([ids.new_tensor([self.dictionary.word2idx[EOS]]), ids[:-1]])
        nll = -self.transition[previous, ids].log().mean()
        return math.exp(float(nll))


def load_corpus(path: PathLike, sort_vocab: str = "none") -> Corpus:
    """Read a corpus folder holding ``train.txt``, ``valid.txt`` and ``test.txt`` (UTF-8).

    Args:
        path: the folder, e.g. ``data/ptb`` or ``data/wikitext-2``.
        sort_vocab: id order of the vocabulary: ``'none'`` (order of first occurrence), ``'up'`` (increasing
            train frequency, rarest first) or ``'down'`` (most frequent first). Ties keep first-occurrence order,
            and words absent from train follow the train words in order of first occurrence in valid, then test.

    Raises:
        FileNotFoundError: the folder or one of the three files is missing.
        ValueError: ``sort_vocab`` is unknown, a file is not UTF-8, or ``train.txt`` holds no tokens.
    """
    _check_sort_vocab(sort_vocab)
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"corpus folder {root} does not exist")
    files = [root / f"{name}.txt" for name in SPLITS]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(
            f"corpus folder {root} lacks {', '.join(missing)}; it needs train.txt, valid.txt and test.txt"
        )
    tokens = [_read_tokens(f) for f in files]
    if not tokens[0]:
        raise ValueError(f"{files[0]} holds no tokens")
    dictionary = _build_dictionary(tokens[0], tokens[1:], sort_vocab)
    corpus = Corpus(dictionary, *(_encode(t, dictionary) for t in tokens))
    logger.info(
        "loaded %s: vocabulary %d, tokens train %d, valid %d, test %d",
        root, len(dictionary), len(corpus.train), len(corpus.valid), len(corpus.test),
    )
    return corpus


def synthetic_corpus(
    seed: int = 0,
    vocab_size: int = 1000,
    train_tokens: int = 100_000,
    valid_tokens: int = 10_000,
    test_tokens: int = 10_000,
    sort_vocab: str = "none",
) -> SyntheticCorpus:
    """Sample a corpus from a random, sparse, first-order Markov source built from ``seed`` alone.

    The words are ``<eos>`` and ``w0 .. w{vocab_size-2}``. Word ``w_k`` has popularity ``1/(k+1)``. Every word
    and ``<eos>`` gets 10 to 30 successors (all words if there are fewer), drawn without replacement in proportion
    to popularity, with probabilities proportional to ``1/rank`` in draw order: sparse, Zipf-like rows that
    make unigram frequencies Zipf-like too. Every word also ends the line (goes to ``<eos>``) with probability
    1/20; ``<eos>`` is never followed by ``<eos>``, so there are no blank lines. The defaults train a 2-layer,
    128-unit LSTM for an epoch in seconds on two CPU cores, with a best test perplexity of about 13.

    Args:
        seed: seed of the ``torch.Generator`` that draws the source and the samples; equal seeds give equal
            corpora on the same torch version.
        vocab_size: number of distinct tokens of the source, ``<eos>`` included (at least 2). The dictionary
            always holds all of them, even those that no split happens to contain.
        train_tokens: length of the training split.
        valid_tokens: length of the validation split.
        test_tokens: length of the test split.
        sort_vocab: id order of the dictionary, as for :func:`load_corpus`.

    Raises:
        ValueError: ``vocab_size < 2``, a split length below 1, or an unknown ``sort_vocab``.
    """
    _check_sort_vocab(sort_vocab)
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2 (<eos> and one word); got {vocab_size}")
    lengths = (train_tokens, valid_tokens, test_tokens)
    if min(lengths) < 1:
        raise ValueError(f"split lengths must be at least 1; got train/valid/test = {lengths}")
    generator = torch.Generator().manual_seed(seed)
    transition = _random_source(vocab_size, generator)
    # State 0 is <eos>; state k + 1 is word w_k.
    names = [EOS] + [f"w{k}" for k in range(vocab_size - 1)]
    states = _sample_chains(transition, lengths, generator)
    words = [[names[s] for s in chain] for chain in states]
    dictionary = _build_dictionary(words[0], [*words[1:], names], sort_vocab)
    state_to_id = torch.tensor([dictionary.word2idx[name] for name in names])
    id_to_state = torch.argsort(state_to_id)
    return SyntheticCorpus(
        dictionary,
        *(state_to_id[torch.tensor(chain)] for chain in states),
        transition=transition[id_to_state][:, id_to_state],
    )


def verify_checksums(path: PathLike) -> None:
    """Check a folder's files against the ``SHA256SUMS`` in that folder or, failing that, in its parent.

    The parent is searched because a data root usually keeps one ``SHA256SUMS`` listing ``ptb/train.txt``,
    ``wikitext-2/train.txt``, ...; only the entries naming files inside ``path`` are checked. Without a
    ``SHA256SUMS`` the check is skipped with a warning.

    Args:
        path: the folder to check, e.g. ``data/ptb``.

    Raises:
        FileNotFoundError: a listed file is missing.
        ValueError: a file's sha256 differs from the listed one, or a line of ``SHA256SUMS`` is malformed.
    """
    root = Path(path).resolve()
    sums = next((d / "SHA256SUMS" for d in (root, root.parent) if (d / "SHA256SUMS").is_file()), None)
    if sums is None:
        logger.warning("no SHA256SUMS in %s or its parent; checksums not verified", root)
        return
    checked = 0
    for lineno, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        # sha256sum writes "<hex>  <name>" in text mode and "<hex> *<name>" in binary mode.
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line)
        if match is None:
            raise ValueError(f"{sums}, line {lineno}: expected '<sha256>  <file>', got {line!r}")
        expected, name = match[1].lower(), match[2]
        file = (sums.parent / name).resolve()
        if not file.is_relative_to(root):
            continue
        if not file.is_file():
            raise FileNotFoundError(f"{file} is listed in {sums} but missing")
        with open(file, "rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
        if actual != expected:
            raise ValueError(f"{file}: sha256 is {actual}, but {sums} lists {expected}")
        checked += 1
    if checked:
        logger.info("verified %d file(s) under %s against %s", checked, root, sums)
    else:
        logger.warning("%s lists no file under %s; checksums not verified", sums, root)


def batchify(data: torch.Tensor, bsz: int, device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """Cut a token stream into ``bsz`` parallel streams, one per column.

    Args:
        data: 1-D tensor of token ids.
        bsz: number of streams (the batch size).
        device: where to put the result; ``None`` keeps ``data``'s device.

    Returns:
        A contiguous ``(len(data) // bsz, bsz)`` tensor; the last ``len(data) % bsz`` tokens are dropped.
    """
    if bsz < 1:
        raise ValueError(f"bsz must be at least 1; got {bsz}")
    nbatch = data.size(0) // bsz
    if nbatch == 0:
        raise ValueError(f"{data.size(0)} tokens are fewer than the batch size {bsz}")
    return data[: nbatch * bsz].view(bsz, nbatch).t().contiguous().to(device)


def get_batch(source: torch.Tensor, i: int, bptt: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Take the ``bptt`` rows of a batchified stream starting at row ``i``, and their next-token targets.

    Args:
        source: output of :func:`batchify`, shape ``(nbatch, bsz)``.
        i: first row; ``i < nbatch - 1``.
        bptt: rows per chunk; fewer are returned at the end of ``source``.

    Returns:
        ``(data, target)``: ``data`` of shape ``(seq_len, bsz)`` and ``target`` **flattened** to
        ``(seq_len * bsz,)``, matching ``logits.view(-1, ntoken)`` for ``cross_entropy``.
    """
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i : i + seq_len], source[i + 1 : i + 1 + seq_len].reshape(-1)


def repackage_hidden(h: Hidden) -> Hidden:
    """Detach a recurrent state from its history, so backpropagation stops at the chunk boundary.

    Args:
        h: a tensor or a (nested) tuple of tensors.
    """
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def _check_sort_vocab(sort_vocab: str) -> None:
    if sort_vocab not in SORT_VOCAB:
        raise ValueError(f"sort_vocab must be one of {', '.join(SORT_VOCAB)}; got {sort_vocab!r}")


def _read_tokens(file: Path) -> List[str]:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{file} is not UTF-8 text: {e}") from e
    if text and not text.endswith("\n"):
        text += "\n"
    # Equivalent to `line.split() + [EOS]` for every line (read_text also translates \r\n and \r), but one
    # str.split over the whole text is several times faster than a Python loop over WikiText-2's lines.
    return text.replace("\n", f" {EOS} ").split()


def _build_dictionary(train: Sequence[str], others: Iterable[Sequence[str]], sort_vocab: str) -> Dictionary:
    counts = Counter(train)  # keys in order of first occurrence
    words = list(counts)
    if sort_vocab != "none":
        # list.sort is stable, also with reverse=True, so ties keep first-occurrence order.
        words.sort(key=counts.__getitem__, reverse=sort_vocab == "down")
    dictionary = Dictionary(words)
    for tokens in others:
        for word in dict.fromkeys(tokens):
            dictionary.add_word(word)
    return dictionary


def _encode(tokens: Sequence[str], dictionary: Dictionary) -> torch.Tensor:
    return torch.tensor(list(map(dictionary.word2idx.__getitem__, tokens)), dtype=torch.long)


def _random_source(vocab_size: int, generator: torch.Generator) -> torch.Tensor:
    nwords = vocab_size - 1
    popularity = 1.0 / torch.arange(1, nwords + 1, dtype=torch.float64)
    transition = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    low, high = min(_MIN_SUCCESSORS, nwords), min(_MAX_SUCCESSORS, nwords)
    for state in range(vocab_size):
        k = int(torch.randint(low, high + 1, (), generator=generator))
        successors = torch.multinomial(popularity, k, replacement=False, generator=generator) + 1
        weights = 1.0 / torch.arange(1, k + 1, dtype=torch.float64)
        stay_in_line = 1.0 if state == 0 else 1.0 - _EOS_PROB
        transition[state, successors] = stay_in_line * weights / weights.sum()
        if state:
            transition[state, 0] = _EOS_PROB
    return transition


def _sample_chains(transition: torch.Tensor, lengths: Iterable[int], generator: torch.Generator) -> List[List[int]]:
    # A Python loop with bisect over per-state cumulative lists is much faster than a torch call per token.
    successors = [row.nonzero().flatten().tolist() for row in transition]
    cdfs = [row[s].cumsum(0).tolist() for row, s in zip(transition, successors)]
    for cdf in cdfs:
        cdf[-1] = 1.0  # rounding must not let a uniform draw fall past the last successor
    chains = []
    for length in lengths:
        state, chain = 0, []  # each split starts as if a line had just ended
        for u in torch.rand(length, generator=generator, dtype=torch.float64).tolist():
            state = successors[state][bisect.bisect_right(cdfs[state], u)]
            chain.append(state)
        chains.append(chain)
    return chains


def _stationary_distribution(transition: torch.Tensor) -> torch.Tensor:
    n = transition.shape[0]
    system = transition.T - torch.eye(n, dtype=transition.dtype)
    # The rows of Pᵀ - I sum to zero, so any one of them is redundant; replacing it by Σ π = 1 pins the scale.
    system[-1] = 1.0
    rhs = torch.zeros(n, dtype=transition.dtype)
    rhs[-1] = 1.0
    return torch.linalg.solve(system, rhs).clamp_(min=0.0)

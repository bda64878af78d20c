"""Corpora: tokenisation, vocabulary order, the synthetic Markov source, checksums and batching."""
import hashlib
import itertools
import logging
import math
import os
from pathlib import Path

import pytest
import torch
from conftest import load_example, shared_data_root

from compress_models import (
    batchify,
    get_batch,
    load_corpus,
    repackage_hidden,
    synthetic_corpus,
    verify_checksums,
)

DATA = Path(shared_data_root())

# train: "a b a", a blank line, "c a b"; valid adds "d"; test adds "e" and has no final newline.
TINY = {"train.txt": "a b a\n\nc a b\n", "valid.txt": "b d\n", "test.txt": "e c"}


@pytest.fixture
def tiny(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    for name, text in TINY.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_every_line_gets_eos_including_blank_and_unterminated_lines(tiny):
    corpus = load_corpus(tiny)
    assert corpus.dictionary.idx2word == ["a", "b", "<eos>", "c", "d", "e"]
    assert corpus.train.tolist() == [0, 1, 0, 2, 2, 3, 0, 1, 2]
    assert corpus.valid.tolist() == [1, 4, 2]
    assert corpus.test.tolist() == [5, 3, 2]
    assert corpus.train.dtype == torch.long


@pytest.mark.parametrize(
    "sort_vocab, order",
    [
        ("none", ["a", "b", "<eos>", "c"]),  # first occurrence
        ("up", ["c", "b", "a", "<eos>"]),  # counts c 1, b 2, a 3, <eos> 3; a occurs first
        ("down", ["a", "<eos>", "b", "c"]),
    ],
)
def test_sort_vocab_orders_train_words_by_count_then_appends_unseen(tiny, sort_vocab, order):
    corpus = load_corpus(tiny, sort_vocab=sort_vocab)
    assert corpus.dictionary.idx2word == order + ["d", "e"]
    words = [corpus.dictionary.idx2word[i] for i in corpus.train.tolist()]
    assert words == ["a", "b", "a", "<eos>", "<eos>", "c", "a", "b", "<eos>"]


def test_missing_split_file_is_named(tiny):
    (tiny / "valid.txt").unlink()
    with pytest.raises(FileNotFoundError, match="valid.txt"):
        load_corpus(tiny)


def test_unknown_sort_vocab_is_rejected(tiny):
    with pytest.raises(ValueError, match="none, up, down"):
        load_corpus(tiny, sort_vocab="freq")


def test_synthetic_corpus_is_determined_by_its_seed():
    kwargs = dict(vocab_size=50, train_tokens=2000, valid_tokens=200, test_tokens=200)
    a, b, c = synthetic_corpus(seed=1, **kwargs), synthetic_corpus(seed=1, **kwargs), synthetic_corpus(seed=2, **kwargs)
    assert a.dictionary.idx2word == b.dictionary.idx2word
    for split in ("train", "valid", "test"):
        assert torch.equal(a.split(split), b.split(split))
    assert torch.equal(a.transition, b.transition)
    assert not torch.equal(a.train, c.train)


def test_synthetic_source_is_sparse_with_lines_and_full_vocabulary():
    corpus = synthetic_corpus(seed=0, vocab_size=300, train_tokens=5000, valid_tokens=100, test_tokens=100)
    assert len(corpus.dictionary) == 300
    assert set(corpus.dictionary.idx2word) == {"<eos>", *(f"w{k}" for k in range(299))}
    assert torch.allclose(corpus.transition.sum(1), torch.ones(300, dtype=torch.float64))
    successors = (corpus.transition > 0).sum(1)
    assert successors.min() >= 10 and successors.max() <= 31  # 10-30 words, plus <eos>
    assert (corpus.train == corpus.dictionary.word2idx["<eos>"]).any()


def test_entropy_rate_equals_brute_force_block_entropy_difference():
    # For a stationary Markov chain H(X1..Xn) - H(X1..Xn-1) = H(Xn | Xn-1), the entropy rate. π comes from a
    # high matrix power here, independently of the library's linear solve.
    corpus = synthetic_corpus(seed=3, vocab_size=5, train_tokens=10, valid_tokens=10, test_tokens=10)
    P = corpus.transition
    pi = torch.linalg.matrix_power(P, 4096)[0]

    def block_entropy(n):
        total = 0.0
        for seq in itertools.product(range(5), repeat=n):
            p = pi[seq[0]] * math.prod(P[i, j] for i, j in zip(seq, seq[1:]))
            total -= float(p * p.log()) if p > 0 else 0.0
        return total

    assert corpus.entropy_rate == pytest.approx(block_entropy(4) - block_entropy(3), rel=1e-9)


def test_best_perplexity_is_the_source_likelihood_starting_after_eos():
    corpus = synthetic_corpus(seed=4, vocab_size=8, train_tokens=10, valid_tokens=10, test_tokens=3)
    eos = corpus.dictionary.word2idx["<eos>"]
    x = [eos] + corpus.test.tolist()
    log_likelihood = sum(math.log(corpus.transition[i, j]) for i, j in zip(x, x[1:]))
    assert corpus.best_perplexity("test") == pytest.approx(math.exp(-log_likelihood / 3))


def test_best_perplexity_approaches_exp_entropy_rate_on_a_long_sample():
    corpus = synthetic_corpus(seed=0, vocab_size=200, train_tokens=200_000, valid_tokens=10, test_tokens=10)
    assert corpus.best_perplexity("train") >= 1.0
    assert corpus.best_perplexity("train") == pytest.approx(corpus.entropy_perplexity, rel=0.02)


def test_synthetic_sort_vocab_relabels_without_changing_the_source():
    kwargs = dict(seed=5, vocab_size=100, train_tokens=3000, valid_tokens=300, test_tokens=300)
    plain, down = synthetic_corpus(**kwargs), synthetic_corpus(sort_vocab="down", **kwargs)
    counts = torch.bincount(down.train, minlength=100)
    assert (counts[:-1] >= counts[1:]).all()
    assert down.entropy_rate == pytest.approx(plain.entropy_rate, rel=1e-12)
    assert down.best_perplexity("valid") == pytest.approx(plain.best_perplexity("valid"), rel=1e-12)
    relabel = [plain.dictionary.word2idx[w] for w in down.dictionary.idx2word]
    assert torch.equal(torch.tensor(relabel)[down.test], plain.test)


def _write_sums(root, lines):
    (root / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for digest, name in lines))


def test_verify_checksums_accepts_files_listed_in_parent_sums(tiny, caplog):
    _write_sums(tiny.parent, [(hashlib.sha256(TINY[n].encode()).hexdigest(), f"tiny/{n}") for n in TINY])
    with caplog.at_level(logging.INFO, logger="compress_models.corpus"):
        verify_checksums(tiny)
    assert "verified 3 file(s)" in caplog.text


def test_verify_checksums_names_the_altered_file(tiny):
    _write_sums(tiny.parent, [(hashlib.sha256(TINY[n].encode()).hexdigest(), f"tiny/{n}") for n in TINY])
    (tiny / "valid.txt").write_text("b d changed\n")
    with pytest.raises(ValueError, match=r"valid\.txt: sha256 is"):
        verify_checksums(tiny)


def test_fetch_data_installs_a_file_whose_checksum_matches(tiny, tmp_path):
    fetch_data = load_example("fetch_data.py")
    dest = tmp_path / "out" / "ptb" / "valid.txt"
    fetch_data.install_file(tiny / "valid.txt", dest, hashlib.sha256(b"b d\n").hexdigest())
    assert dest.read_text() == "b d\n"
    assert os.listdir(dest.parent) == ["valid.txt"]


def test_fetch_data_rejects_a_wrong_checksum_and_leaves_nothing_behind(tmp_path):
    fetch_data = load_example("fetch_data.py")
    dest = tmp_path / "ptb" / "train.txt"
    with pytest.raises(ValueError, match="train.txt"):
        fetch_data.install_file(b"not ptb\n", dest, fetch_data.SOURCES["ptb"]["train"][1])
    assert os.listdir(dest.parent) == []


def test_batchify_trims_and_lays_streams_in_columns():
    batched = batchify(torch.arange(10), 3)
    assert batched.tolist() == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]


def test_get_batch_returns_flat_next_token_targets_and_shortens_at_the_end():
    source = batchify(torch.arange(10), 2)  # columns 0..4 and 5..9
    data, target = get_batch(source, 0, 3)
    assert data.tolist() == [[0, 5], [1, 6], [2, 7]]
    assert target.tolist() == [1, 6, 2, 7, 3, 8]
    data, target = get_batch(source, 3, 3)
    assert data.tolist() == [[3, 8]] and target.tolist() == [4, 9]


def test_repackage_hidden_detaches_nested_tuples():
    h = torch.ones(2, requires_grad=True) * 2
    detached = repackage_hidden((h, (h, h)))
    assert not detached[0].requires_grad and not detached[1][1].requires_grad
    assert torch.equal(detached[1][0], h.detach())


@pytest.mark.parametrize(
    "name, label, vocab, sizes",
    [
        ("ptb", "PTB", 10_000, (929_589, 73_760, 82_430)),
        ("wikitext-2", "WikiText-2", 33_278, (2_088_628, 217_646, 245_569)),
    ],
)
def test_real_corpus_matches_published_counts(name, label, vocab, sizes):
    folder = DATA / name
    if not (folder / "train.txt").is_file():
        pytest.skip(f"{label} not found at {folder}; set COMPRESS_DATA to the folder holding {name}/ to run this test")
    verify_checksums(folder)
    corpus = load_corpus(folder)
    assert len(corpus.dictionary) == vocab
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == sizes

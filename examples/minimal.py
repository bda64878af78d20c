"""The README's "Your own training loop", runnable as is on the embedded synthetic corpus (no download).

The first part builds what the README's loop takes as given (a model, an optimizer, batches, a loss, an
evaluation and a number of epochs); the second part is the README's snippet, character for character (a test
checks it). Run it from the repository root, which holds ``schedules/agp_lstm.yaml``; it writes ``ckpt.pt`` there
and prints the sparsity table (recurrent weights at 80%, the tied embedding at 85%). Seconds on one CPU core.

    python examples/minimal.py
"""
# ruff: noqa: E402  (the README's snippet, below, starts with its own import)
import math

import torch
from torch import nn

from compress_models import batchify, get_batch, synthetic_corpus

torch.manual_seed(0)
corpus = synthetic_corpus(seed=0, train_tokens=10_000, valid_tokens=2_000, test_tokens=2_000)
vocab = len(corpus.dictionary)


class LanguageModel(nn.Module):
    """Embedding, 2-layer LSTM and a decoder tied to the embedding: the parameter names the schedule prunes."""

    def __init__(self, vocab: int, size: int = 32):
        super().__init__()
        self.encoder = nn.Embedding(vocab, size)
        self.rnn = nn.LSTM(size, size, num_layers=2)
        self.decoder = nn.Linear(size, vocab)
        self.decoder.weight = self.encoder.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(self.encoder(x))            # each chunk from a zero state: the loop passes none
        return self.decoder(output).view(-1, self.decoder.out_features)


def chunks(tokens: torch.Tensor, batch_size: int = 20, bptt: int = 35):
    """``(x, y)`` pairs: ``bptt`` x ``batch_size`` token ids and their next tokens, flattened."""
    source = batchify(tokens, batch_size)
    return [get_batch(source, i, bptt) for i in range(0, source.size(0) - 1, bptt)]


model = LanguageModel(vocab)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
criterion = nn.CrossEntropyLoss()
batches = chunks(corpus.train)
validation = chunks(corpus.valid, batch_size=10)
epochs = 8  # the schedule's last pruning step is in epoch 6


def evaluate(model: nn.Module) -> float:
    """Mean validation loss (the loop passes it to the scheduler, as ReduceLROnPlateau would want it)."""
    model.eval()
    with torch.no_grad():
        loss = sum(criterion(model(x), y).item() for x, y in validation) / len(validation)
    model.train()
    print(f"validation perplexity {math.exp(loss):.2f}")
    return loss


# ---- the README's snippet ----
import compress

scheduler = compress.file_config(model, optimizer, "schedules/agp_lstm.yaml")
for epoch in range(epochs):
    scheduler.on_epoch_begin(epoch, optimizer)
    for i, (x, y) in enumerate(batches):
        scheduler.on_minibatch_begin(epoch, i, len(batches), optimizer)
        loss = criterion(model(x), y)
        loss = scheduler.before_backward_pass(epoch, i, len(batches), loss, optimizer)
        optimizer.zero_grad()
        loss.backward()
        scheduler.before_parameter_optimization(epoch, i, len(batches), optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, i, len(batches), optimizer)   # pruned weights back to exactly 0
    val_loss = evaluate(model)
    scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val_loss})
    compress.save_checkpoint("ckpt.pt", model, optimizer, scheduler, epoch=epoch)

print(compress.sparsity_table(model))
# resume: compress.load_checkpoint("ckpt.pt", model, optimizer, scheduler) -> {"epoch": ...}

"""The geometry of predefined structured sparseness, as pure functions of sizes and arguments.

:class:`LSTMBlockStructure` and :class:`EmbeddingBlockStructure` say which weights exist; their ``masks()`` /
``mask()`` give them as boolean keep-masks of the dense weights. Nothing here holds or changes a weight.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch

from compress import options
from compress.errors import ArgumentError

Segment = Tuple[int, int]

# Slack for the float window ends: ``c * (I*density - overlap)`` lands a hair below an integer it equals.
_EPS = 1e-7


# -- argument checks --------------------------------------------------------------------------------------------
def check_density(key: str, value: Any) -> float:
    """``value`` as a float in (0, 1]; ``ArgumentError`` naming ``key`` otherwise."""
    return options.fraction(key, value, allow_zero=False, allow_one=True)


def check_blocks(key: str, value: Any) -> int:
    """``value`` as an int >= 1; ``ArgumentError`` naming ``key`` otherwise."""
    return options.integer(key, value, minimum=1)


def check_lstm_arguments(blocks: Optional[int] = None, density: Optional[float] = None,
                         reduce_in: Optional[float] = None, reduce_out: Optional[float] = None) -> None:
    """Check that exactly one of the two ways to specify a block-sparse layer is used, with valid values.

    Raises:
        ArgumentError: naming the offending argument.
    """
    if blocks is not None:
        check_blocks("blocks", blocks)
    if density is not None:
        check_density("density", density)
    if reduce_in is not None:
        check_density("reduce_in", reduce_in)
    if reduce_out is not None:
        check_density("reduce_out", reduce_out)
    given_blocks = blocks is not None or density is not None
    given_reduction = reduce_in is not None or reduce_out is not None
    if given_blocks and given_reduction:
        key = "reduce_in" if reduce_in is not None else "reduce_out"
        raise ArgumentError(key, "give either blocks (and density) or reduce_in/reduce_out, not both")
    if not given_blocks and not given_reduction:
        raise ArgumentError("blocks", "give blocks (and optionally density) or reduce_in/reduce_out")
    if density is not None and blocks is None:
        raise ArgumentError("blocks", f"density {density} is the width of each of `blocks` input windows; "
                                      f"give blocks too")


# -- block-sparse recurrent layers ------------------------------------------------------------------------------
def window_segments(size: int, blocks: int, density: float) -> Tuple[Segment, ...]:
    """``blocks`` windows over ``range(size)``, each of relative width ``density``, evenly overlapping.

    With overlap ``o = size * (blocks * density - 1) / (blocks - 1)``, window ``c`` is
    ``[floor(c * (size * density - o)), floor(c * (size * density - o) + size * density))``; the last window
    ends at ``size``. ``density = 1 / blocks`` gives a disjoint partition.

    Raises:
        ArgumentError: a window would be empty, or an index would be left out (``density < 1 / blocks``).
    """
    blocks = check_blocks("blocks", blocks)
    density = check_density("density", density)
    if blocks == 1:
        if density != 1.0:
            raise ArgumentError("density", f"one block must cover the whole input (density 1), got {density}")
        return ((0, size),)
    if density * blocks < 1.0 - 1e-12:
        raise ArgumentError("density", f"must be >= 1/blocks = {1 / blocks:.6g} so that {blocks} windows cover "
                                       f"all {size} inputs, got {density:.6g}")
    width = size * density
    stride = width - size * (blocks * density - 1.0) / (blocks - 1)
    starts = [int(math.floor(c * stride + _EPS)) for c in range(blocks)]
    ends = [int(math.floor(c * stride + width + _EPS)) for c in range(blocks)]
    ends[-1] = size
    segments = tuple(zip(starts, ends))
    if any(e <= s for s, e in segments):
        raise ArgumentError("blocks", f"{blocks} windows of width {width:.3g} over {size} inputs leave some empty")
    if any(segments[c + 1][0] > segments[c][1] for c in range(blocks - 1)) or starts[0] != 0:
        raise ArgumentError("density", f"{blocks} windows of width {width:.3g} leave gaps in {size} inputs")
    return segments


def hidden_partition(size: int, blocks: int) -> Tuple[Segment, ...]:
    """``range(size)`` cut into ``blocks`` contiguous, disjoint, nearly equal blocks (exact integer arithmetic).

    Raises:
        ArgumentError: more blocks than units.
    """
    blocks = check_blocks("blocks", blocks)
    if blocks > size:
        raise ArgumentError("blocks", f"must be <= the hidden size {size}, got {blocks}")
    bounds = [(c * size) // blocks for c in range(blocks + 1)]
    return tuple((bounds[c], bounds[c + 1]) for c in range(blocks))


def minimal_blocks(input_size: int, hidden_size: int, reduce_in: float, reduce_out: float) -> int:
    """The fewest components ``k`` for which a block-sparse layer can have the budget of the reduced dense layer.

    A layer of ``k`` components with input windows of relative width ``d`` has (per gate)
    ``d*I*H + H**2/k + 2H`` parameters; the dense layer of ``a_i*I`` inputs and ``a_o*H`` units has
    ``a_i*a_o*I*H + a_o**2*H**2 + 2*a_o*H``. Solving for ``d`` and requiring ``d >= 1/k`` gives
    ``k >= (I + H) / (a_i*a_o*I + a_o**2*H + 2*a_o - 2)``.

    Raises:
        ArgumentError: the reductions leave no feasible ``k`` (denominator <= 0, or ``k`` above the hidden size).
    """
    denominator = reduce_in * reduce_out * input_size + reduce_out ** 2 * hidden_size + 2 * reduce_out - 2
    if denominator <= 0:
        raise ArgumentError("reduce_out", f"reduce_in={reduce_in}, reduce_out={reduce_out} leave no parameter "
                                          f"budget for a {input_size}->{hidden_size} layer")
    blocks = math.ceil((input_size + hidden_size) / denominator - 1e-9)
    if blocks > hidden_size:
        raise ArgumentError("reduce_out", f"reduce_in={reduce_in}, reduce_out={reduce_out} would need {blocks} "
                                          f"components, more than the {hidden_size} hidden units")
    return max(blocks, 1)


def input_density(input_size: int, hidden_size: int, blocks: int, reduce_in: float, reduce_out: float) -> float:
    """The input-window density that gives ``blocks`` components the reduced dense layer's budget (capped at 1).

    ``d = (a_i*a_o*I + a_o**2*H + 2*a_o - H/k - 2) / I``. When ``d > 1`` it is set to 1, and the layer then has
    *fewer* parameters than the dense layer it stands for.
    """
    density = (reduce_in * reduce_out * input_size + reduce_out ** 2 * hidden_size + 2 * reduce_out
               - hidden_size / blocks - 2) / input_size
    return min(1.0, density)


@dataclass(frozen=True)
class LSTMBlockStructure:
    """The fixed structure of one block-sparse recurrent layer.

    Attributes:
        input_size: inputs of the layer.
        hidden_size: hidden units of the layer.
        blocks: number of components ``k``.
        density: relative width of each input window.
        input_windows: per component, the ``[start, end)`` input columns it reads (they may overlap).
        hidden_blocks: per component, the ``[start, end)`` hidden units it owns (a partition of the units).
        gates: gate blocks stacked in the weight rows (4 for an LSTM, 3 for a GRU, 1 for a plain RNN).

    Example:
        >>> s = LSTMBlockStructure(4, 4, blocks=2, density=0.5, input_windows=((0, 2), (2, 4)),
        ...                        hidden_blocks=((0, 2), (2, 4)), gates=1)
        >>> weight_ih, weight_hh = s.masks()
        >>> weight_hh.int().tolist()
        [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
        >>> s.num_weights, s.dense_parameters
        (16, 40)
    """

    input_size: int
    hidden_size: int
    blocks: int
    density: float
    input_windows: Tuple[Segment, ...]
    hidden_blocks: Tuple[Segment, ...]
    gates: int = 4

    @property
    def num_weights(self) -> int:
        """Weights kept (input and recurrent matrices, biases excluded)."""
        return self.gates * sum((wi[1] - wi[0]) * (hb[1] - hb[0]) + (hb[1] - hb[0]) ** 2
                                for wi, hb in zip(self.input_windows, self.hidden_blocks))

    @property
    def num_parameters(self) -> int:
        """Trainable parameters: kept weights plus the two dense bias vectors."""
        return self.num_weights + 2 * self.gates * self.hidden_size

    @property
    def dense_parameters(self) -> int:
        """Parameters of a dense layer of the same sizes."""
        return self.gates * (self.input_size * self.hidden_size + self.hidden_size ** 2 + 2 * self.hidden_size)

    def masks(self, device: Optional[torch.device] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Keep-masks ``(weight_ih, weight_hh)`` of shapes ``(gates*H, I)`` and ``(gates*H, H)``.

        In every gate's row block, the rows of hidden block ``c`` keep the columns of input window ``c``
        (banded) and the recurrent columns of hidden block ``c`` (block-diagonal).
        """
        unit_block = torch.empty(self.hidden_size, dtype=torch.long, device=device)
        in_window = torch.zeros(self.blocks, self.input_size, dtype=torch.bool, device=device)
        for c, ((hs, he), (ws, we)) in enumerate(zip(self.hidden_blocks, self.input_windows)):
            unit_block[hs:he] = c
            in_window[c, ws:we] = True
        row_block = unit_block.repeat(self.gates)
        return in_window[row_block], row_block[:, None] == unit_block[None, :]


def lstm_block_structure(input_size: int, hidden_size: int, *, blocks: Optional[int] = None,
                         density: Optional[float] = None, reduce_in: Optional[float] = None,
                         reduce_out: Optional[float] = None, gates: int = 4) -> LSTMBlockStructure:
    """The structure of a block-sparse layer, given ``blocks`` (and ``density``) or ``reduce_in``/``reduce_out``.

    Args:
        input_size: inputs of the layer.
        hidden_size: hidden units of the layer.
        blocks: components ``k``; with it, ``density`` (default ``1/blocks``: disjoint input windows).
        density: relative width of each input window, in [1/blocks, 1].
        reduce_in: with ``reduce_out`` (a missing one is 1): match the parameter count of a dense layer with
            ``reduce_in * input_size`` inputs and ``reduce_out * hidden_size`` units, using the fewest
            components that can.
        reduce_out: see ``reduce_in``.
        gates: gate blocks in the weight rows (4 for an LSTM).

    Returns:
        The structure: which input columns and hidden units each component has.

    Raises:
        ArgumentError: naming the argument that is missing, out of range or infeasible for these sizes.

    Example:
        >>> s = lstm_block_structure(6, 4, blocks=2, density=2 / 3)   # windows of 4 of the 6 inputs, overlapping
        >>> s.input_windows, s.hidden_blocks
        (((0, 4), (2, 6)), ((0, 2), (2, 4)))
        >>> r = lstm_block_structure(100, 100, reduce_out=0.5)  # the budget of a dense 100 -> 50 layer: 30,400
        >>> r.blocks, r.num_parameters
        (3, 30404)
    """
    check_lstm_arguments(blocks, density, reduce_in, reduce_out)
    if blocks is not None:
        density = 1.0 / blocks if density is None else float(density)
        hidden_blocks = hidden_partition(hidden_size, blocks)
        return LSTMBlockStructure(input_size, hidden_size, blocks, density,
                                  window_segments(input_size, blocks, density), hidden_blocks, gates)
    reduce_in = 1.0 if reduce_in is None else float(reduce_in)
    reduce_out = 1.0 if reduce_out is None else float(reduce_out)
    blocks = minimal_blocks(input_size, hidden_size, reduce_in, reduce_out)
    density = input_density(input_size, hidden_size, blocks, reduce_in, reduce_out)
    infeasible = (f"reduce_in={reduce_in}, reduce_out={reduce_out} are too small for a {input_size}->{hidden_size} "
                  f"layer")
    if density * blocks < 1.0 - 1e-12:
        raise ArgumentError("reduce_in", f"{infeasible}: {blocks} components would need input windows of "
                                         f"density {density:.4g} < 1/{blocks}")
    density = max(density, 1.0 / blocks)  # absorbs float error at exactly 1/blocks
    try:
        hidden_blocks = hidden_partition(hidden_size, blocks)
        windows = window_segments(input_size, blocks, density)
    except ArgumentError as exc:
        raise ArgumentError("reduce_in", f"{infeasible}: {blocks} components: {exc.message}") from None
    return LSTMBlockStructure(input_size, hidden_size, blocks, density, windows, hidden_blocks, gates)


# -- block embeddings ---------------------------------------------------------------------------------------------
def geometric_coverage(density: float, blocks: int) -> float:
    """The ``alpha`` in [0, 1] with ``(1/blocks) * sum(alpha**j for j in range(blocks)) == density``.

    Block ``j`` of an embedding with geometrically decaying coverage keeps ``alpha**j`` of the rows; this is the
    decay that spends exactly ``density`` of the budget. Solved by bisection (the sum increases with alpha).
    """
    if density >= 1.0:
        return 1.0
    if density * blocks <= 1.0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if sum(mid ** j for j in range(blocks)) / blocks < density:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class EmbeddingBlockStructure:
    """The fixed structure of a block embedding.

    Attributes:
        num_embeddings: vocabulary size ``V``.
        embedding_dim: full embedding size ``E``.
        starts: per column block, the first id that has a row in it (ids below it are fixed zeros there).
        widths: per column block, its number of columns (they sum to ``E``).

    Example:
        >>> s = EmbeddingBlockStructure(4, 3, starts=(0, 2), widths=(2, 1))
        >>> s.mask().int().tolist(), s.num_parameters
        ([[1, 1, 0], [1, 1, 0], [1, 1, 1], [1, 1, 1]], 10)
    """

    num_embeddings: int
    embedding_dim: int
    starts: Tuple[int, ...]
    widths: Tuple[int, ...]

    @property
    def blocks(self) -> int:
        return len(self.widths)

    @property
    def num_parameters(self) -> int:
        """Trainable parameters: ``sum_j (V - start_j) * width_j``."""
        return sum((self.num_embeddings - s) * w for s, w in zip(self.starts, self.widths))

    @property
    def density(self) -> float:
        """Trainable share of the dense ``V x E`` matrix."""
        return self.num_parameters / (self.num_embeddings * self.embedding_dim)

    def column_bounds(self) -> Tuple[Segment, ...]:
        """Per block, its ``[start, end)`` columns."""
        edges = [0]
        for w in self.widths:
            edges.append(edges[-1] + w)
        return tuple(zip(edges[:-1], edges[1:]))

    def row_lengths(self) -> torch.Tensor:
        """Per id, how many embedding dimensions it has (non-increasing in rarity for an ``up`` vocabulary)."""
        ids = torch.arange(self.num_embeddings)
        lengths = torch.zeros(self.num_embeddings, dtype=torch.long)
        for start, width in zip(self.starts, self.widths):
            lengths += (ids >= start).long() * width
        return lengths

    def mask(self, device: Optional[torch.device] = None) -> torch.Tensor:
        """Keep-mask of shape ``(V, E)``: column block ``j`` keeps rows ``start_j`` and above."""
        column_start = torch.repeat_interleave(torch.tensor(self.starts, device=device),
                                               torch.tensor(self.widths, device=device))
        return torch.arange(self.num_embeddings, device=device)[:, None] >= column_start[None, :]


def embedding_block_structure(num_embeddings: int, embedding_dim: int, blocks: int,
                              density: float) -> EmbeddingBlockStructure:
    """Block geometry of an embedding with ``blocks`` column blocks holding ``density`` of the dense weights.

    As SparseSeqModels computes it: ``blocks`` is capped at ``embedding_dim``; block widths are
    ``E // blocks`` (the last takes the remainder); block 0 covers every id; each middle block keeps a share
    ``alpha`` of the ids the previous one kept (the rarest are dropped), with ``alpha`` from
    :func:`geometric_coverage` for the budget still left over the blocks still left; the last block gets
    exactly the leftover of ``floor(V * E * density)``. A middle block is counted in the budget also when the
    budget runs out at it, so the last block never overspends (``docs/distiller-compat.md``).

    Args:
        num_embeddings: vocabulary size ``V``.
        embedding_dim: full embedding size ``E``.
        blocks: column blocks (capped at ``E``).
        density: share of the ``V x E`` weights that exist, in [1/blocks, 1].

    Returns:
        The structure: per column block, its width and the first id with a row in it.

    Raises:
        ArgumentError: ``blocks < 1``, ``density`` outside (0, 1] or below ``1/blocks``, or ``blocks == 1``
            with ``density < 1``.

    Example:
        >>> s = embedding_block_structure(10, 4, blocks=2, density=0.75)
        >>> s.widths, s.starts, s.num_parameters
        ((2, 2), (0, 5), 30)
    """
    blocks = check_blocks("blocks", blocks)
    density = check_density("density", density)
    vocab, dim = num_embeddings, embedding_dim
    blocks = min(blocks, dim)
    if blocks == 1 and density != 1.0:
        raise ArgumentError("density", f"one block is the dense embedding; density must be 1, got {density}")
    if density * blocks < 1.0 - 1e-12:
        raise ArgumentError("density", f"must be >= 1/blocks = {1 / blocks:.6g} (block 0 always covers every id), "
                                       f"got {density}")
    width = dim // blocks
    widths = [width] * (blocks - 1) + [dim - width * (blocks - 1)]
    budget = vocab * dim * density
    starts = [0]
    used = vocab * width
    vocab_left, dim_left, blocks_left, density_left = vocab, dim, blocks, density
    for _ in range(1, blocks - 1):
        if density_left <= 0:
            starts.append(vocab)
            continue
        alpha = geometric_coverage(density_left, blocks_left)
        cut = math.ceil(vocab_left * (1 - alpha) - 1e-9)
        vocab_left -= cut
        dim_left -= width
        blocks_left -= 1
        starts.append(starts[-1] + cut)
        if vocab_left * dim_left > 0 and budget - used > 0:
            density_left = min(1.0, (budget - used) / (vocab_left * dim_left))
        else:
            density_left = 0.0
        used += vocab_left * width
    if blocks > 1:
        rows = int(round(max(0.0, math.floor(budget) - used) / widths[-1]))
        starts.append(vocab - min(rows, vocab))
    return EmbeddingBlockStructure(vocab, dim, tuple(starts), tuple(widths))

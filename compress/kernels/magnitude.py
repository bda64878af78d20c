"""Exact, fast magnitude-threshold selection over one or many tensors.

Magnitude pruners need, at every pruning event (possibly every minibatch), the
k-th smallest ``|x|`` over one tensor ("level" pruning) or over many tensors
("global" pruning).  ``torch.kthvalue`` on a concatenation is exact but slow on
CUDA (a single thread block per slice), needs a full copy of the inputs, and
``torch.quantile`` refuses inputs above 16M elements.

This module selects the exact k-th smallest magnitude with a sampling-based
selection in the spirit of Floyd and Rivest:

1. Draw a small stratified random sample (``sample_size`` elements, in
   proportion to each chunk's size) with a private, deterministically seeded
   ``torch.Generator``; the global RNG state is never touched.
2. Take two order statistics of the sample, ``lo <= hi``, that bracket the
   target rank with a safety margin of ``margin_sigmas`` binomial standard
   deviations (the miss probability at the default of 5 is below 1e-6).
3. One streaming pass over the data, chunk by chunk, counts the elements
   ``< lo`` and ``<= hi`` and gathers the few candidates ``lo <= |x| <= hi``.
   When the sample shows repeated values at ``lo`` or ``hi`` (heavy ties, e.g.
   half of the weights already pruned to zero), or the gather overflows, the
   pass instead counts ``< lo``, ``<= lo``, ``< hi``, ``<= hi`` and gathers
   only the strict interior, so ties are counted, never gathered.
   On CUDA this pass is one fused Triton kernel per chunk when Triton is
   available (one read of the data, no full-size temporaries; the first call
   compiles it), else a handful of torch ops per chunk.
4. The answer is ``lo``, ``hi`` or an order statistic of the candidates, decided
   from the exact counts, so the result is always exact.  When the bracket
   misses the rank (or would gather too many candidates), an exact radix
   select over the IEEE-754 bit patterns of ``|x|`` takes over (two further
   passes for float32/mixed inputs, one for float16/bfloat16).

Memory: inputs are never concatenated as a whole.  Large tensors are processed
as 1-D views in chunks of ``chunk_size`` elements; small tensors are grouped and
concatenated into buffers of at most ``chunk_size`` elements, so the
temporaries stay bounded (one working-dtype chunk plus two or three bool
chunks, or none with the Triton kernel, plus the candidates) at any input size.

Speed: ``examples/bench_threshold.py`` times it beside ``torch.kthvalue``; the
figures measured so far are in ``examples/README.md``.

Semantics (matching ``torch.kthvalue`` on the float32 magnitudes):

* values are compared as float32 magnitudes: float16/bfloat16 convert exactly,
  float64 is rounded to float32 first, exactly as the reference
  ``torch.cat([t.abs().flatten() for t in ts]).float().kthvalue(k)`` does;
* ``-0.0`` is ``0.0``;
* NaN is treated as larger than every number, including ``inf`` (as
  ``torch.sort``/``torch.kthvalue`` do), so the k-th smallest magnitude is NaN
  only when ``k`` exceeds the number of non-NaN elements;
* masks keep ``|x| > threshold``; a NaN element is never kept (the comparison is
  false), and a NaN threshold keeps nothing.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "kth_smallest_magnitude",
    "magnitude_threshold",
]

logger = logging.getLogger(__name__)

# Inputs with at most this many elements in total are selected directly
# (concatenate, then kthvalue on CPU / sort on CUDA): cheaper than sampling.
_DEFAULT_SMALL_CUTOFF_CUDA = 1 << 20
_DEFAULT_SMALL_CUTOFF_CPU = 1 << 17
# Chunk sizes (elements) bounding the temporaries of one streaming step.
_DEFAULT_CHUNK_CUDA = 1 << 27
_DEFAULT_CHUNK_CPU = 1 << 22
_NATIVE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_METHODS = ("auto", "sample", "radix", "sort")


@dataclass
class _Segment:
    """A piece of the input: a 1-D view (no copy) or tensors to flatten and concatenate."""

    numel: int
    view: torch.Tensor | None = None
    parts: list[torch.Tensor] | None = None
    cache: torch.Tensor | None = None  # a materialized copy kept between passes

    def materialize(self) -> tuple[torch.Tensor, bool]:
        """Return (1-D tensor, owned) where ``owned`` means it is a private copy."""
        if self.view is not None:
            return self.view, False
        if self.cache is not None:
            return self.cache, False
        assert self.parts is not None
        if len(self.parts) == 1:
            part = self.parts[0]
            flat = part.reshape(-1)
            # reshape may return a view; only a fresh copy may be modified in place
            owned = flat.untyped_storage().data_ptr() != part.untyped_storage().data_ptr()
            return flat, owned
        return torch.cat([p if p.dim() == 1 else p.reshape(-1) for p in self.parts]), True


def _flat_view(t: torch.Tensor) -> torch.Tensor | None:
    """A 1-D view over all elements of ``t`` (any order), or None if a copy is needed."""
    if t.is_contiguous():
        return t.view(-1)
    # Dense but permuted layouts (transposes, channels_last) can be viewed flat
    # after permuting the dimensions into stride order.
    order = sorted(range(t.dim()), key=lambda d: t.stride(d), reverse=True)
    p = t.permute(order)
    if p.is_contiguous():
        return p.view(-1)
    return None


def _plan(tensors: Sequence[torch.Tensor], chunk_size: int) -> list[_Segment]:
    """Split big tensors into chunk views and group small tensors into buffers."""
    segs: list[_Segment] = []
    group: list[torch.Tensor] = []
    group_numel = 0
    big = max(1, chunk_size // 4)

    def flush() -> None:
        nonlocal group, group_numel
        if len(group) == 1 and group[0].dim() == 1 and group[0].is_contiguous():
            segs.append(_Segment(group_numel, view=group[0]))
        elif group:
            segs.append(_Segment(group_numel, parts=group))
        group, group_numel = [], 0

    for t in tensors:
        n = t.numel()
        if n == 0:
            continue
        flat = _flat_view(t)
        if n >= big:
            if flat is not None:
                for s in range(0, n, chunk_size):
                    v = flat[s : s + chunk_size]
                    segs.append(_Segment(v.numel(), view=v))
            else:  # rare: overlapping/strided storage; copy slices along dim 0
                row = max(1, n // t.shape[0])
                rows = max(1, chunk_size // row)
                for s in range(0, t.shape[0], rows):
                    part = t[s : s + rows]
                    segs.append(_Segment(part.numel(), parts=[part]))
        else:
            if group_numel + n > chunk_size:
                flush()
            group.append(flat if flat is not None else t)
            group_numel += n
    flush()
    return segs


def _validate(tensors: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.device]:
    if isinstance(tensors, torch.Tensor):
        raise TypeError("expected a sequence of tensors, got a single tensor; wrap it in a list")
    tensors = list(tensors)
    if not tensors:
        raise ValueError("expected at least one tensor, got an empty sequence")
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensors[{i}] is {type(t).__name__}, not a torch.Tensor")
        if not (t.is_floating_point()):
            raise TypeError(f"tensors[{i}] has dtype {t.dtype}; only floating-point tensors are supported")
    device = tensors[0].device
    others = sorted({str(t.device) for t in tensors if t.device != device})
    if others:
        raise ValueError(f"all tensors must be on the same device; got {device} and {', '.join(others)}")
    return tensors, device


def _order_stat(x: torch.Tensor, rank: int) -> torch.Tensor:
    """The ``rank``-th smallest (1-based) of a 1-D float32 tensor, as a 0-d tensor."""
    if x.is_cuda:  # CUDA kthvalue is single-block per slice and slow on large inputs
        return torch.sort(x).values[rank - 1].clone()
    return x.kthvalue(rank).values


def _abs_work(x: torch.Tensor, owned: bool, work_dtype: torch.dtype) -> torch.Tensor:
    """``|x|`` in ``work_dtype``, in place when ``x`` is a private copy."""
    if x.dtype != work_dtype:
        return x.to(work_dtype).abs_()
    return x.abs_() if owned else x.abs()


def _select_sort(segs: list[_Segment], k: int) -> torch.Tensor:
    vals = []
    for seg in segs:
        x, owned = seg.materialize()
        vals.append(_abs_work(x, owned, torch.float32))
    return _order_stat(torch.cat(vals) if len(vals) > 1 else vals[0], k)


def _f32_keys(x: torch.Tensor) -> torch.Tensor:
    """int32 bit patterns of ``|float32(x)|``; monotone in the magnitude, NaN largest."""
    if x.dtype != torch.float32:
        x = x.float()
    return x.view(torch.int32) & 0x7FFFFFFF


def _find_bin(hist: torch.Tensor, k: int) -> tuple[int, int]:
    """Bin holding the k-th element (1-based) and the count in the bins before it."""
    cum = hist.cumsum(0)
    b = int(torch.searchsorted(cum, torch.tensor([k], dtype=cum.dtype, device=cum.device)).item())
    before = int(cum[b - 1].item()) if b > 0 else 0
    return b, before


def _select_radix(segs: list[_Segment], k: int, device: torch.device, work_dtype: torch.dtype) -> torch.Tensor:
    """Exact histogram (radix) select over the bit patterns of the magnitudes."""
    if work_dtype in (torch.float16, torch.bfloat16):
        # 16-bit inputs: a single pass over 2**15 bins is exact.
        hist = torch.zeros(1 << 15, dtype=torch.int64, device=device)
        for seg in segs:
            x, _ = seg.materialize()
            keys = x.view(torch.int16) & 0x7FFF
            hist += torch.bincount(keys, minlength=1 << 15)
        b, _ = _find_bin(hist, k)
        return torch.tensor(b, dtype=torch.int16, device=device).view(work_dtype).float()

    hist = torch.zeros(1 << 15, dtype=torch.int64, device=device)
    for seg in segs:
        x, _ = seg.materialize()
        hist += torch.bincount(_f32_keys(x) >> 16, minlength=1 << 15)
    high, before = _find_bin(hist, k)
    hist2 = torch.zeros((1 << 16) + 1, dtype=torch.int64, device=device)
    for seg in segs:
        x, _ = seg.materialize()
        keys = _f32_keys(x)
        low = torch.where((keys >> 16) == high, keys & 0xFFFF, 1 << 16)
        hist2 += torch.bincount(low, minlength=(1 << 16) + 1)
    low_bits, _ = _find_bin(hist2[: 1 << 16], k - before)
    bits = (high << 16) | low_bits
    return torch.tensor(bits, dtype=torch.int32, device=device).view(torch.float32)


def _candidate_cap(expected: float, n: int) -> int:
    """Most candidates gathered before giving up on the bracket (8x the expectation)."""
    return int(min(max(8 * expected, 1 << 16), n / 2))


def _default_sample_size(n: int) -> int:
    return int(min(1 << 20, max(1 << 14, 32 * math.isqrt(n))))


def _sample(
    segs: list[_Segment],
    n: int,
    m: int,
    gen: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Stratified uniform sample (with replacement) of ``m`` float32 magnitudes."""
    quotas = [m * s.numel / n for s in segs]
    counts = [int(q) for q in quotas]
    short = m - sum(counts)
    if short > 0:  # largest remainders get the leftover samples
        order = sorted(range(len(segs)), key=lambda i: quotas[i] - counts[i], reverse=True)
        for i in order[:short]:
            counts[i] += 1
    parts = []
    budget = max(s.numel for s in segs)  # keep at most one chunk's worth of copies
    for seg, c in zip(segs, counts):
        if c == 0:
            continue
        idx = torch.randint(0, seg.numel, (c,), generator=gen, device=device)
        x, owned = seg.materialize()
        if owned and seg.numel <= budget:  # spare the pass a second concatenation
            seg.cache = x
            budget -= seg.numel
        parts.append(x[idx].float().abs_())
    return torch.cat(parts) if len(parts) > 1 else parts[0]


def _select_sample(
    segs: list[_Segment],
    n: int,
    k: int,
    device: torch.device,
    work_dtype: torch.dtype,
    sample_size: int,
    margin_sigmas: float,
    seed: int,
    use_triton: bool | None,
) -> torch.Tensor | None:
    """Sampling-based exact select; None when the bracket misses (caller falls back)."""
    m = max(1, sample_size)
    # Expected (0-based) position of the target in the sorted sample, with a
    # binomial margin; the z**2/2 term covers the Poisson regime near k=1/k=N.
    p = min(max((k - 0.5) / n, 0.0), 1.0)
    centre = m * p
    margin = margin_sigmas * math.sqrt(m * p * (1.0 - p)) + 0.5 * margin_sigmas * margin_sigmas
    r_lo = math.floor(centre - margin)
    r_hi = math.ceil(centre + margin)
    expected = n * max(r_hi - r_lo, 1) / m  # candidates the bracket should hold
    if expected > n / 4:
        logger.debug("threshold: sample of %d too small for a useful bracket; using radix select", m)
        return None

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    sample = _sample(segs, n, m, gen, device)
    ranks = [r for r in (r_lo, r_hi) if 0 <= r < m]  # non-empty: expected <= n / 4
    if device.type == "cuda":
        picked = torch.sort(sample).values[ranks]
    else:  # two O(m) selections beat an O(m log m) sort on CPU
        picked = torch.stack([sample.kthvalue(r + 1).values for r in ranks])
    # How often each bracket end occurs in the sample: repeats announce heavy ties.
    repeats = (sample.unsqueeze(1) == picked.unsqueeze(0)).sum(0)
    info = torch.cat([picked, repeats.float()]).tolist()  # the one host sync before the pass
    del sample, picked, repeats
    vals = dict(zip(ranks, info[: len(ranks)]))
    heavy_ties = max(info[len(ranks) :]) > 1
    # Bounds are Python floats holding values taken from the inputs, hence exact
    # in the working dtype; -1 means "no lower bound". A NaN bound means the
    # target lies at +inf or among the NaNs: +inf handles both cases below.
    lo = vals.get(r_lo, -1.0)
    hi = vals.get(r_hi, math.inf)
    lo = math.inf if math.isnan(lo) else lo
    hi = math.inf if math.isnan(hi) else hi
    cap = _candidate_cap(expected, n)
    bracket_pass = _pass_function(device, work_dtype, use_triton)

    if not heavy_ties and lo < hi:
        # Common case: gather the closed interval [lo, hi] (2 comparisons per element).
        found = bracket_pass(segs, lo, hi, cap, count_ties=False)
        if found is not None:
            (c_lt_lo, c_le_hi), cand = found
            if c_lt_lo < k <= c_le_hi:
                return _order_stat(cand.float(), k - c_lt_lo)
            if k > c_le_hi and hi == math.inf:
                # Every non-NaN element is <= hi, so the k-th smallest is a NaN.
                return torch.tensor(math.nan, dtype=torch.float32, device=device)
            logger.debug("threshold: sample bracket [%r, %r] missed rank %d (counts %d/%d); using radix select",
                         lo, hi, k, c_lt_lo, c_le_hi)
            return None
        # Too many candidates: most likely ties at lo or hi. Count ties instead.

    found = bracket_pass(segs, lo, hi, cap, count_ties=True)
    if found is None:
        return None
    (c_lt_lo, c_le_hi, c_le_lo, c_lt_hi), cand = found
    if c_lt_lo < k <= c_le_lo:
        return torch.tensor(lo, dtype=torch.float32, device=device)
    if c_le_lo < k <= c_lt_hi:
        return _order_stat(cand.float(), k - c_le_lo)
    if c_lt_hi < k <= c_le_hi:
        return torch.tensor(hi, dtype=torch.float32, device=device)
    if k > c_le_hi and hi == math.inf:
        return torch.tensor(math.nan, dtype=torch.float32, device=device)
    logger.debug(
        "threshold: sample bracket [%r, %r] missed rank %d (counts %d/%d/%d/%d); using radix select",
        lo, hi, k, c_lt_lo, c_le_lo, c_lt_hi, c_le_hi,
    )
    return None


_TRITON: dict[str, Any] = {}
_TRITON_BLOCK = 4096
_TRITON_WARPS = 8


def _triton_kernel() -> Any:
    """The fused Triton bracket kernel, or None where Triton is unavailable or failed."""
    if "kernel" in _TRITON:
        return _TRITON["kernel"]
    _TRITON["kernel"] = None
    try:
        import triton
        import triton.language as tl
    except Exception:  # not installed (CPU builds) or broken install
        logger.debug("threshold: Triton unavailable; CUDA inputs use the torch bracket pass")
        return None

    @triton.jit
    def bracket_kernel(x_ptr, n, lo, hi, counts_ptr, out_ptr, cap, BLOCK: tl.constexpr, TIES: tl.constexpr):
        # One read of x: counts around [lo, hi] (block sums, one atomic each)
        # and compaction of the few candidates through an atomic cursor.
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        valid = offs < n
        a = tl.abs(tl.load(x_ptr + offs, mask=valid, other=0.0).to(tl.float32))
        lt_lo = valid & (a < lo)
        le_hi = valid & (a <= hi)
        tl.atomic_add(counts_ptr + 0, tl.sum(lt_lo.to(tl.int64), axis=0))
        tl.atomic_add(counts_ptr + 1, tl.sum(le_hi.to(tl.int64), axis=0))
        if TIES:
            le_lo = valid & (a <= lo)
            lt_hi = valid & (a < hi)
            tl.atomic_add(counts_ptr + 2, tl.sum(le_lo.to(tl.int64), axis=0))
            tl.atomic_add(counts_ptr + 3, tl.sum(lt_hi.to(tl.int64), axis=0))
            inside = lt_hi & (a > lo)
        else:
            inside = le_hi & (a >= lo)
        flags = inside.to(tl.int32)
        n_in = tl.sum(flags, axis=0)
        if n_in > 0:
            base = tl.atomic_add(counts_ptr + 4, n_in.to(tl.int64))
            pos = base + tl.cumsum(flags, axis=0) - 1
            tl.store(out_ptr + pos, a, mask=inside & (pos < cap))

    _TRITON["kernel"] = bracket_kernel
    return bracket_kernel


def _bracket_pass_triton(
    kernel: Any,
    segs: list[_Segment],
    lo: float,
    hi: float,
    device: torch.device,
    cap: int,
    count_ties: bool,
) -> tuple[list[int], torch.Tensor] | None:
    """:func:`_bracket_pass` as one fused Triton kernel per segment (CUDA only)."""
    counts = torch.zeros(5, dtype=torch.int64, device=device)
    out = torch.empty(max(cap, 1), dtype=torch.float32, device=device)
    with torch.cuda.device(device):  # Triton launches on the current device
        for seg in segs:
            x, _ = seg.materialize()
            size = x.numel()
            grid = ((size + _TRITON_BLOCK - 1) // _TRITON_BLOCK,)
            kernel[grid](
                x, size, lo, hi, counts, out, cap, BLOCK=_TRITON_BLOCK, TIES=count_ties, num_warps=_TRITON_WARPS
            )
    totals = counts.tolist()
    n_cand = totals[4]
    if n_cand > cap:
        logger.debug("threshold: %d candidates exceed the cap %d (count_ties=%s)", n_cand, cap, count_ties)
        return None
    return totals[: 4 if count_ties else 2], out[:n_cand]


def _count(mask: torch.Tensor) -> torch.Tensor:
    """Number of True entries of a bool tensor, as a 0-d integer tensor (no host sync)."""
    if mask.is_cuda:
        # A byte sum with a 32-bit accumulator is about twice as fast as
        # count_nonzero, which casts the mask to int64 first.
        acc = torch.int32 if mask.numel() < 2**31 else torch.int64
        return mask.view(torch.uint8).sum(dtype=acc)
    return torch.count_nonzero(mask)


def _pass_function(device: torch.device, work_dtype: torch.dtype, use_triton: bool | None) -> Any:
    """The bracket pass to use: fused Triton kernel on CUDA where available, else torch ops."""

    def torch_pass(segs: list[_Segment], lo: float, hi: float, cap: int, count_ties: bool) -> Any:
        return _bracket_pass(segs, lo, hi, work_dtype, device, cap, count_ties)

    if device.type != "cuda" or use_triton is False:
        return torch_pass
    kernel = _triton_kernel()
    if kernel is None:
        if use_triton:
            raise RuntimeError("use_triton=True but Triton is not available")
        return torch_pass

    def triton_pass(segs: list[_Segment], lo: float, hi: float, cap: int, count_ties: bool) -> Any:
        try:
            return _bracket_pass_triton(kernel, segs, lo, hi, device, cap, count_ties)
        except Exception as exc:  # e.g. a Triton/driver mismatch at first compile
            if use_triton:
                raise
            logger.warning("threshold: Triton kernel failed (%s); falling back to torch ops", exc)
            _TRITON["kernel"] = None
            return torch_pass(segs, lo, hi, cap, count_ties)

    return triton_pass


def _bracket_pass(
    segs: list[_Segment],
    lo: float,
    hi: float,
    work_dtype: torch.dtype,
    device: torch.device,
    cap: int,
    count_ties: bool,
) -> tuple[list[int], torch.Tensor] | None:
    """One streaming pass: exact counts around ``[lo, hi]`` and the candidates inside.

    Without ``count_ties`` returns counts ``[#(a < lo), #(a <= hi)]`` and the
    elements of the closed interval ``lo <= a <= hi``; with it, counts
    ``[#(a < lo), #(a <= hi), #(a <= lo), #(a < hi)]`` and the elements of the
    open interval ``lo < a < hi``.  None when more than ``cap`` candidates turn up.
    """
    width = max(s.numel for s in segs)
    buf = torch.empty(width, dtype=work_dtype, device=device)
    masks = torch.empty((3 if count_ties else 2, width), dtype=torch.bool, device=device)
    counts: list[torch.Tensor] = []
    cands: list[torch.Tensor] = []
    n_cand = 0
    for seg in segs:
        x, _ = seg.materialize()
        size = x.numel()
        a = buf[:size]
        if x.dtype == work_dtype:
            torch.abs(x, out=a)
        else:
            a.copy_(x).abs_()
        del x
        m0, m1 = masks[0, :size], masks[1, :size]
        torch.lt(a, lo, out=m0)
        counts.append(_count(m0))
        torch.le(a, hi, out=m1)
        counts.append(_count(m1))
        if count_ties:
            m2 = masks[2, :size]
            torch.le(a, lo, out=m0)
            counts.append(_count(m0))
            torch.lt(a, hi, out=m2)
            counts.append(_count(m2))
            torch.gt(m2, m0, out=m1)  # lo < a < hi
            inside = m1
        else:
            torch.gt(m1, m0, out=m0)  # lo <= a <= hi
            inside = m0
        c = a[inside]
        n_cand += c.numel()
        if n_cand > cap:
            logger.debug(
                "threshold: %d candidates exceed the cap %d (count_ties=%s)", n_cand, cap, count_ties
            )
            return None
        cands.append(c)
    per = 4 if count_ties else 2
    totals = [int(v) for v in torch.stack(counts).long().view(-1, per).sum(0).tolist()]
    return totals, (torch.cat(cands) if len(cands) > 1 else cands[0])


@torch.no_grad()
def kth_smallest_magnitude(
    tensors: Sequence[torch.Tensor],
    k: int,
    *,
    method: str = "auto",
    sample_size: int | None = None,
    margin_sigmas: float = 5.0,
    chunk_size: int | None = None,
    small_cutoff: int | None = None,
    seed: int = 0,
    use_triton: bool | None = None,
) -> torch.Tensor:
    """Exact k-th smallest absolute value over all elements of all ``tensors``.

    The result equals
    ``torch.cat([t.abs().flatten() for t in tensors]).float().kthvalue(k).values``
    but the inputs are never concatenated as a whole and the selection is much
    faster on large inputs (see the module docstring for the algorithm, the
    memory bound and the NaN / -0.0 / float64 semantics).  The result does not
    depend on ``method``, ``sample_size``, ``margin_sigmas``, ``chunk_size`` or
    ``seed``; they only trade speed.  The global RNG state is not used.

    Args:
        tensors: One or more floating-point tensors (float16, bfloat16, float32
            or float64, dtypes may be mixed) on one device; shapes are ignored.
        k: 1-based rank, ``1 <= k <= total number of elements``.
        method: ``"auto"`` (direct select for small inputs, else sampling with a
            radix fallback), ``"sample"`` (sampling, radix fallback on a miss),
            ``"radix"`` (histogram select over float bit patterns) or ``"sort"``
            (concatenate and select; small inputs only).
        sample_size: Number of sampled elements; default ``32 * sqrt(N)``
            clamped to ``[2**14, 2**20]``.
        margin_sigmas: Half-width of the sample bracket in binomial standard
            deviations; smaller values gather fewer candidates but miss more
            often (a miss costs a radix fallback, never exactness).
        chunk_size: Elements processed per streaming step (bounds temporary
            memory); default ``2**27`` on CUDA, ``2**22`` elsewhere.
        small_cutoff: With ``method="auto"``, inputs of at most this many
            elements are selected directly; default ``2**20`` on CUDA,
            ``2**17`` elsewhere.
        seed: Seed of the private generator used for sampling.
        use_triton: On CUDA, run the counting/gathering pass as one fused
            Triton kernel (one read of the data, no temporaries). ``None``
            (default) uses it when Triton imports and falls back to torch ops
            on failure; ``False`` always uses torch ops; ``True`` requires it.

    Returns:
        A 0-d float32 tensor on the tensors' device holding the k-th smallest
        magnitude (NaN if ``k`` exceeds the number of non-NaN elements).

    Raises:
        ValueError: Empty ``tensors``, tensors on different devices, ``k`` out
            of range, or an unknown ``method``.
        TypeError: A non-tensor, a non-floating-point tensor, or a non-integer ``k``.
        RuntimeError: ``use_triton=True`` on CUDA where Triton is unavailable.

    Example:
        >>> import torch
        >>> a, b = torch.tensor([3.0, -1.0, 4.0]), torch.tensor([[-1.5], [9.0]])
        >>> kth_smallest_magnitude([a, b], 2)
        tensor(1.5000)
        >>> kth_smallest_magnitude([a, b], 2, method="radix")
        tensor(1.5000)
    """
    tensors, device = _validate(tensors)
    if isinstance(k, bool):
        raise TypeError("k must be an integer, not bool")
    k = operator.index(k)
    n = sum(t.numel() for t in tensors)
    if not 1 <= k <= n:
        raise ValueError(f"k must satisfy 1 <= k <= {n} (total number of elements), got k={k}")
    return _kth_smallest(
        tensors, device, n, k, method=method, sample_size=sample_size, margin_sigmas=margin_sigmas,
        chunk_size=chunk_size, small_cutoff=small_cutoff, seed=seed, use_triton=use_triton,
    )


@torch.no_grad()
def _kth_smallest(
    tensors: list[torch.Tensor],
    device: torch.device,
    n: int,
    k: int,
    *,
    method: str = "auto",
    sample_size: int | None = None,
    margin_sigmas: float = 5.0,
    chunk_size: int | None = None,
    small_cutoff: int | None = None,
    seed: int = 0,
    use_triton: bool | None = None,
) -> torch.Tensor:
    """:func:`kth_smallest_magnitude` on validated inputs (``n`` elements, ``1 <= k <= n``)."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if chunk_size is None:
        chunk_size = _DEFAULT_CHUNK_CUDA if device.type == "cuda" else _DEFAULT_CHUNK_CPU
    if small_cutoff is None:
        small_cutoff = _DEFAULT_SMALL_CUTOFF_CUDA if device.type == "cuda" else _DEFAULT_SMALL_CUTOFF_CPU
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")

    dtypes = {t.dtype for t in tensors if t.numel() > 0}
    work_dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    if work_dtype not in _NATIVE_DTYPES:
        work_dtype = torch.float32
    segs = _plan(tensors, chunk_size)

    if method == "sort" or (method == "auto" and n <= small_cutoff):
        return _select_sort(segs, k)
    if method in ("auto", "sample"):
        m = sample_size if sample_size is not None else _default_sample_size(n)
        result = _select_sample(segs, n, k, device, work_dtype, m, margin_sigmas, seed, use_triton)
        if result is not None:
            return result
    return _select_radix(segs, k, device, work_dtype)


def _as_list(tensors: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)


def _check_sparsity(sparsity: float) -> float:
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise ValueError(f"sparsity must be a number in [0, 1], got {sparsity!r}") from None
    if not 0.0 <= s <= 1.0:  # also rejects NaN
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity!r}")
    return s


def magnitude_threshold(
    tensors: torch.Tensor | Sequence[torch.Tensor],
    sparsity: float,
    **select_options: Any,
) -> torch.Tensor | None:
    """The level-pruning threshold over one or many tensors (Distiller's criterion).

    With ``N`` the total number of elements and ``k = int(sparsity * N)``, the
    threshold is the k-th smallest ``|x|``; masking ``|x| > threshold`` prunes
    at least ``k`` elements (ties at the threshold are pruned, as in Distiller,
    so the realised sparsity can overshoot).

    Args:
        tensors: A tensor or a sequence of floating-point tensors on one device.
        sparsity: Fraction of elements to prune, in ``[0, 1]``.
        **select_options: Keyword options forwarded to
            :func:`kth_smallest_magnitude` (``method``, ``sample_size``, ...).

    Returns:
        A 0-d float32 tensor on the tensors' device, or None when ``k == 0``
        (nothing to prune).

    Raises:
        ValueError: ``sparsity`` outside ``[0, 1]`` (or NaN), empty ``tensors``,
            or tensors on different devices.

    Example:
        >>> import torch
        >>> w = torch.tensor([0.5, -0.1, 0.3, -0.2])
        >>> t = magnitude_threshold(w, 0.5)
        >>> t, (w.abs() > t).tolist()
        (tensor(0.2000), [True, False, True, False])
        >>> magnitude_threshold(w, 0.2) is None  # int(0.2 * 4) == 0: nothing to prune
        True
    """
    s = _check_sparsity(sparsity)
    tensors, device = _validate(_as_list(tensors))
    n = sum(t.numel() for t in tensors)
    k = int(s * n)
    if k == 0:
        return None
    return _kth_smallest(tensors, device, n, k, **select_options)



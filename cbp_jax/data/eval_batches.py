"""Fixed-shape evaluation batches: one pass over a test set compiles at most 2 programs.

Examples are sorted by length and cut into batches of one row count (`batch_rows`: at most
the requested batch size, dividing the set as evenly as it can); every batch is left-padded
to one of at most two widths (`bucket_widths`: the longest example's, rounded up to a
multiple of `pad_to`, and the split below it that leaves the fewest padded tokens). A short
last batch is filled with copies of its own first row, whose scores are dropped. So a pass
has one row count and at most two widths, whatever the set's size: at most 2 compiled
shapes, where per-batch widths compiled one program per batch. Padding changes no
prediction: the model's positions and attention follow the mask, and a copied row is
scored like its original.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from cbp_jax.data.batching import left_pad


def _round_up(n: int, multiple: int) -> int:
    return -(-int(n) // multiple) * multiple


def batch_rows(n: int, batch_size: int) -> int:
    """Rows of every batch for `n` examples: the fewest batches of at most `batch_size`,
    filled as evenly as possible (200 examples at 32: 7 batches of 29, 3 copied rows)."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    return -(-n // -(-n // batch_size))


def bucket_widths(
    lengths: Sequence[int], rows: int, pad_to: int = 8, max_buckets: int = 2
) -> tuple[int, ...]:
    """The padded widths (ascending, 1 or `max_buckets` = 2 of them) of the batches of
    `rows` length-sorted examples: the longest example's width, and the split at a batch
    boundary that minimises the padded tokens (a tie keeps one width)."""
    if max_buckets not in (1, 2):
        raise ValueError(f"max_buckets must be 1 or 2, got {max_buckets}")
    if rows < 1 or pad_to < 1:
        raise ValueError(f"rows and pad_to must be >= 1, got {rows}, {pad_to}")
    srt = np.sort(np.asarray(lengths, np.int64))
    if srt.ndim != 1 or not len(srt) or srt[0] < 1:
        raise ValueError("lengths must be a non-empty list of positive token counts")
    top = _round_up(srt[-1], pad_to)
    n_batches = -(-len(srt) // rows)
    best, widths = n_batches * top, (top,)
    for k in range(1, n_batches if max_buckets == 2 else 1):
        low = _round_up(srt[k * rows - 1], pad_to)
        cost = k * low + (n_batches - k) * top
        if cost < best:
            best, widths = cost, (low, top)
    return widths


def fixed_batches(
    seqs: Sequence[Sequence[int]],
    batch_size: int,
    pad_id: int,
    pad_to: int = 8,
    max_buckets: int = 2,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (indices, tokens_RxW, mask_RxW) over the length-sorted examples: R =
    `batch_rows(len(seqs), batch_size)` rows in every batch and W one of `bucket_widths`;
    `indices` (into `seqs`) name the real rows, which come first (the rest are copies)."""
    if not seqs or min(len(s) for s in seqs) < 1:
        raise ValueError("need a non-empty list of non-empty token sequences")
    lengths = [len(s) for s in seqs]
    rows = batch_rows(len(seqs), batch_size)
    widths = bucket_widths(lengths, rows, pad_to, max_buckets)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), rows):
        idx = order[start : start + rows]
        longest = max(lengths[i] for i in idx)
        width = next(w for w in widths if w >= longest)
        picked = [seqs[i] for i in idx] + [seqs[idx[0]]] * (rows - len(idx))
        tokens, mask = left_pad(picked, pad_id, pad_to=width)
        yield idx, tokens, mask

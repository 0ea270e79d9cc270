"""Seeded k-shot sampling: k train and k dev examples per class, plus a disjoint test set.

Two class-proportion protocols, both with k x (classes) train and as many dev examples:
"balanced" (the default; BBT's and LM-BFF's protocol) takes k of every class; "natural"
splits the same total over the classes in proportion to the train pool's class counts
(largest remainder, at least one per class), so the k-shot sets carry the task's class
prior, as its test set does.

Train and dev are drawn from the task's train pool, the test set from its test pool; the
pools are fixed and disjoint by content (see pools.py), so no seed can make them overlap.
Randomness comes from numpy's PCG64 seeded with SeedSequence([seed, stream]): stream 0
draws train/dev, stream 1 the optional test subsample, so the test subsample for a seed
does not depend on shots_per_class.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cbp_jax.data.tasks import get_task, load_examples


@dataclasses.dataclass(frozen=True)
class TaskSplits:
    train: list[dict]  # k per class, shuffled
    dev: list[dict]  # k per class, shuffled, disjoint from train
    test: list[dict]  # the test pool or a seeded subsample of it, in pool order


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def train_pool(name: str, data_dir=None, *, cache_dir=None) -> list[dict]:
    """Every example that may be used for training; disjoint from the test pool."""
    return load_examples(name, "train", data_dir, cache_dir=cache_dir)


def test_pool(name: str, data_dir=None, *, cache_dir=None) -> list[dict]:
    """The fixed, seed-independent evaluation pool."""
    return load_examples(name, "test", data_dir, cache_dir=cache_dir)


test_pool.__test__ = False  # not a pytest test when imported into a test module


PROPORTIONS = ("balanced", "natural")


def check_proportions(proportions: str) -> str:
    """`proportions` if it names a protocol, else a ValueError listing the known ones."""
    if proportions not in PROPORTIONS:
        raise ValueError(f"unknown k-shot proportions {proportions!r}; known: {PROPORTIONS}")
    return proportions


def class_allocation(counts: list[int], shots_per_class: int, proportions: str) -> list[int]:
    """Examples per class in each of train and dev: k each ("balanced"), or k x classes split
    in proportion to `counts` by largest remainder with at least one per class ("natural")."""
    check_proportions(proportions)
    num_classes = len(counts)
    if proportions == "balanced":
        return [shots_per_class] * num_classes
    if min(counts) < 1:
        raise ValueError(f"natural proportions need every class in the train pool: {counts}")
    total = shots_per_class * num_classes
    share = np.asarray(counts, np.float64) / sum(counts) * total
    alloc = np.floor(share).astype(int)
    order = np.argsort(-(share - alloc), kind="stable")  # largest remainders, ties by class id
    alloc[order[: total - alloc.sum()]] += 1
    while alloc.min() < 1:  # a class too rare for one shot still gets one, from the largest
        alloc[np.argmax(alloc)] -= 1
        alloc[np.argmin(alloc)] += 1
    return [int(n) for n in alloc]


def kshot_splits(
    name: str,
    shots_per_class: int,
    seed: int,
    test_size: int | None = None,
    data_dir=None,
    *,
    proportions: str = "balanced",
    cache_dir=None,
) -> TaskSplits:
    """k-shot train and dev sets (k per class each, or the same total in the train pool's
    class proportions) and a test set that overlaps neither."""
    if not _is_int(shots_per_class) or shots_per_class < 1:
        raise ValueError(f"shots_per_class must be an integer >= 1, got {shots_per_class!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if test_size is not None and (not _is_int(test_size) or test_size < 1):
        raise ValueError(f"test_size must be a positive integer or None, got {test_size!r}")
    task = get_task(name)
    pool = train_pool(name, data_dir, cache_dir=cache_dir)
    by_class = [[ex for ex in pool if ex["label"] == c] for c in range(task.num_classes)]
    alloc = class_allocation([len(m) for m in by_class], shots_per_class, proportions)
    rng = _rng(int(seed), 0)
    train, dev = [], []
    for c, (members, n) in enumerate(zip(by_class, alloc, strict=True)):
        if len(members) < 2 * n:
            raise ValueError(
                f"task {task.name}: class {c} {task.label_words[c]} has {len(members)} examples "
                f"in the train pool; {n} train + {n} dev shots ({proportions}) need twice that"
            )
        picked = rng.permutation(len(members))[: 2 * n]
        train += [members[i] for i in picked[:n]]
        dev += [members[i] for i in picked[n:]]
    train = [train[i] for i in rng.permutation(len(train))]
    dev = [dev[i] for i in rng.permutation(len(dev))]
    test = test_subset(name, seed, test_size, data_dir, cache_dir=cache_dir)
    return TaskSplits(train=train, dev=dev, test=test)


def test_subset(name: str, seed: int, test_size: int | None, data_dir=None, *, cache_dir=None):
    """The test set of `kshot_splits` for this seed and size (it depends on nothing else):
    the test pool, or a seeded subsample of it in pool order."""
    test = test_pool(name, data_dir, cache_dir=cache_dir)
    if test_size is not None:
        if test_size > len(test):
            raise ValueError(
                f"task {get_task(name).name}: test_size {test_size} exceeds its test pool "
                f"({len(test)})"
            )
        keep = np.sort(_rng(int(seed), 1).choice(len(test), size=test_size, replace=False))
        test = [test[i] for i in keep]
    return test


test_subset.__test__ = False  # not a pytest test when imported into a test module

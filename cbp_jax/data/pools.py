"""Train and test pools: deduplicated, disjoint by content, and independent of any seed.

Every task's examples are divided once into a train pool (k-shot train/dev samples and
stage-1 domain training draw from it) and a test pool (evaluation). Rules, in order:

1. Ids must be unique within a task.
2. Within a pool (or within the single file before splitting), examples with the same
   content (the task's key fields, whitespace-collapsed and case-folded) are reduced to the
   first one; if such copies disagree on the label, all of them are dropped.
3. With explicit files per pool, train examples whose content also occurs in the test pool
   are dropped (MMLU shares 19 test questions with its dev/val files, for instance).
4. With a single file, each class is ordered by sha256("<task>/<id>") and its first
   floor(n * test_fraction) examples form the test pool: stratified, reproducible across
   machines and library versions, and independent of the sampling seed.

Each example gets an "order" (its position in the source files) so pools keep file order.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Pools:
    train: list[dict]
    test: list[dict]
    dropped: dict[str, int]  # reason -> number of examples removed


def content_key(example: dict, fields: Sequence[str]) -> tuple[str, ...]:
    return tuple(" ".join(str(example[f]).split()).casefold() for f in fields)


def dedupe(examples: list[dict], fields: Sequence[str]) -> tuple[list[dict], int, int]:
    """(kept, copies dropped, examples dropped for conflicting labels); first copy wins."""
    groups: dict[tuple, list[dict]] = collections.defaultdict(list)
    for ex in examples:
        groups[content_key(ex, fields)].append(ex)
    kept, copies, conflicts = [], 0, 0
    for group in groups.values():
        if len({ex["label"] for ex in group}) > 1:
            conflicts += len(group)
        else:
            kept.append(group[0])
            copies += len(group) - 1
    kept.sort(key=lambda ex: ex["order"])
    return kept, copies, conflicts


def hash_split(
    examples: list[dict], test_fraction: float, salt: str
) -> tuple[list[dict], list[dict]]:
    """Stratified (train, test) split by a fixed hash of each id; no randomness involved."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    by_class: dict[int, list[dict]] = collections.defaultdict(list)
    for ex in examples:
        by_class[ex["label"]].append(ex)
    train, test = [], []
    for group in by_class.values():
        group = sorted(group, key=lambda ex: hashlib.sha256(f"{salt}/{ex['id']}".encode()).digest())
        n_test = math.floor(len(group) * test_fraction)
        test += group[:n_test]
        train += group[n_test:]
    return sorted(train, key=lambda ex: ex["order"]), sorted(test, key=lambda ex: ex["order"])


def make_pools(
    name: str,
    key_fields: Sequence[str],
    *,
    single: list[dict] | None = None,
    train: list[dict] | None = None,
    test: list[dict] | None = None,
    test_fraction: float = 0.5,
) -> Pools:
    """Pools from one file (`single`, hash-split) or from explicit `train` and `test` lists."""
    if (single is None) == (train is None or test is None):
        raise ValueError(f"{name}: give either `single` or both `train` and `test`")
    parts = [single] if single is not None else [train, test]
    order = 0
    seen_ids: set[str] = set()
    for part in parts:
        for ex in part:
            if ex["id"] in seen_ids:
                raise ValueError(f"{name}: duplicate example id {ex['id']!r}")
            seen_ids.add(ex["id"])
            ex["order"] = order
            order += 1
    dropped = {}
    if single is not None:
        kept, dropped["duplicate"], dropped["conflicting_labels"] = dedupe(single, key_fields)
        train, test = hash_split(kept, test_fraction, name)
    else:
        test, dup_te, conf_te = dedupe(test, key_fields)
        train, dup_tr, conf_tr = dedupe(train, key_fields)
        dropped["duplicate"] = dup_te + dup_tr
        dropped["conflicting_labels"] = conf_te + conf_tr
        test_keys = {content_key(ex, key_fields) for ex in test}
        n_train = len(train)
        train = [ex for ex in train if content_key(ex, key_fields) not in test_keys]
        dropped["train_in_test"] = n_train - len(train)
    for pool_name, pool in (("train", train), ("test", test)):
        if not pool:
            raise ValueError(f"{name}: the {pool_name} pool is empty (too few examples?)")
    return Pools(train=train, test=test, dropped=dropped)

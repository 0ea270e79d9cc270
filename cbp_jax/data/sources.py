"""Which shipped files form each task's train pool and test pool (see pools.py for the rules).

Only evaluation splits are shipped, so the pools are carved out of them once, the same way
on every machine and for every seed:

Single files, hash-split half/half per class (pools.py rule 4), train / test:
  sst2 (GLUE dev, 872) 436 / 436; ag_news (test.csv, 7,600) 3,800 / 3,800;
  boolq (val, 3,270) 1,636 / 1,634; piqa (valid, 1,838) 919 / 919; copa (val, 100) 51 / 49;
  arc_challenge (Challenge test, 1,165 of 1,172 with 4 options) 584 / 581;
  medqa_usmle (test, 1,273) 638 / 635;
  financial_phrasebank (Sentences_50Agree, 4,846 less 6 repeats and 4 copies with
  conflicting labels = 4,836) 2,419 / 2,417.
Separate files, train / test:
  arc_easy: ARC-Easy-Dev (567 of 570 with 4 options) / ARC-Easy-Test (2,365 of 2,376);
  pubmedqa: the 500 PQA-L ids outside the official test list / the official 500 test ids;
  mmlu_medical: dev + val (153 less 2 repeats and 19 questions that recur in test = 132) /
  test (1,089 less 78 questions repeated across subjects = 1,011).

The counts are asserted in tests/test_tasks.py. `load_examples(name, "all")` gives both pools
together; "dev" (sst2) and "validation" (boolq, piqa, copa) are accepted as names of the
whole shipped split, so `--split dev` keeps meaning all 872 SST-2 dev sentences.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable

from cbp_jax.data import readers
from cbp_jax.data.pools import Pools, make_pools

READER_VERSION = "1"  # bump when a reader or a pool rule changes what gets built
TEST_FRACTION = 0.5  # single-file tasks: share of each class that goes to the test pool
MC4 = ("question", "A", "B", "C", "D")


@dataclasses.dataclass(frozen=True)
class Source:
    """How to build one task's pools from files.

    files: every file read (relative to the data dir; absolute for custom tasks). Their
        checksums key the TFDS cache, so editing a file rebuilds the task.
    text_fields: the example's text (also the key for duplicate detection).
    extra_fields: other string fields kept with each example (e.g. MMLU's "subject").
    build: data dir (None for custom tasks) -> Pools.
    aliases: extra split names, e.g. {"dev": "all"}.
    params: anything else that changes the built data; part of the cache key.
    """

    name: str
    files: tuple[str, ...]
    text_fields: tuple[str, ...]
    num_classes: int
    build: Callable[[pathlib.Path | None], Pools]
    extra_fields: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    params: str = ""

    @property
    def string_fields(self) -> tuple[str, ...]:
        return ("id", *self.text_fields, *self.extra_fields)


def _single(name, reader, fields):
    return lambda root: make_pools(name, fields, single=reader(root), test_fraction=TEST_FRACTION)


def _arc_easy(root):
    train = readers.arc(root, "ARC-Easy-Dev.jsonl")
    return make_pools("arc_easy", MC4, train=train, test=readers.arc(root, "ARC-Easy-Test.jsonl"))


def _pubmedqa(root):
    examples, test_ids = readers.pubmedqa(root)
    train = [ex for ex in examples if ex["id"] not in test_ids]
    test = [ex for ex in examples if ex["id"] in test_ids]
    return make_pools("pubmedqa", ("context", "question"), train=train, test=test)


def _mmlu_medical(root):
    train = readers.mmlu_medical(root, "dev") + readers.mmlu_medical(root, "val")
    return make_pools("mmlu_medical", MC4, train=train, test=readers.mmlu_medical(root, "test"))


_MMLU_FILES = tuple(
    f"mmlu_medical/{split}/{subject}_{split}.csv"
    for split in ("dev", "val", "test")
    for subject in readers.MMLU_SUBJECTS
)
_SINGLE = f"test_fraction={TEST_FRACTION}"

SOURCES: dict[str, Source] = {
    s.name: s
    for s in [
        Source(
            "sst2",
            ("sst2/dev.jsonl",),
            ("sentence",),
            2,
            _single("sst2", readers.sst2, ("sentence",)),
            aliases=(("dev", "all"),),
            params=_SINGLE,
        ),
        Source(
            "ag_news",
            ("ag_news/test.csv", "ag_news/classes.txt"),
            ("title", "description"),
            4,
            _single("ag_news", readers.ag_news, ("title", "description")),
            params=_SINGLE,
        ),
        Source(
            "boolq",
            ("boolq/val.jsonl",),
            ("passage", "question"),
            2,
            _single("boolq", readers.boolq, ("passage", "question")),
            aliases=(("validation", "all"),),
            params=_SINGLE,
        ),
        Source(
            "piqa",
            ("piqa/valid.jsonl", "piqa/valid-labels.lst"),
            ("goal", "A", "B"),
            2,
            _single("piqa", readers.piqa, ("goal", "A", "B")),
            aliases=(("validation", "all"),),
            params=_SINGLE,
        ),
        Source(
            "copa",
            ("copa/val.jsonl",),
            ("premise", "question", "A", "B"),
            2,
            _single("copa", readers.copa, ("premise", "question", "A", "B")),
            aliases=(("validation", "all"),),
            params=_SINGLE,
        ),
        Source(
            "arc_easy",
            ("arc/ARC-Easy-Dev.jsonl", "arc/ARC-Easy-Test.jsonl"),
            MC4,
            4,
            _arc_easy,
        ),
        Source(
            "arc_challenge",
            ("arc/ARC-Challenge-Test.jsonl",),
            MC4,
            4,
            _single("arc_challenge", lambda r: readers.arc(r, "ARC-Challenge-Test.jsonl"), MC4),
            params=_SINGLE,
        ),
        Source(
            "pubmedqa",
            ("pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json"),
            ("context", "question"),
            3,
            _pubmedqa,
        ),
        Source(
            "medqa_usmle",
            ("medqa_usmle/test.jsonl",),
            MC4,
            4,
            _single("medqa_usmle", readers.medqa_usmle, MC4),
            params=_SINGLE,
        ),
        Source("mmlu_medical", _MMLU_FILES, MC4, 4, _mmlu_medical, extra_fields=("subject",)),
        Source(
            "financial_phrasebank",
            ("financial_phrasebank/Sentences_50Agree.txt",),
            ("sentence",),
            3,
            _single("financial_phrasebank", readers.financial_phrasebank, ("sentence",)),
            params=_SINGLE,
        ),
    ]
}

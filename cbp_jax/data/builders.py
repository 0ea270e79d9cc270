"""TFDS builder for every task: array_record files built offline from the local data copy.

One `GeneratorBasedBuilder` class serves all tasks; an instance gets a `Source` (which files,
which fields, how to form the pools) and generates the "train" and "test" pool splits from
the plain-Python readers. It works without TensorFlow: array_record output, read back with
`as_data_source()` (tfrecord, `as_dataset` and `tfds.load` need TensorFlow).

Cache layout: `<cache>/<task>/<key>/cbp_task/1.0.0/`, where <cache> comes from
`paths.cache_dir` and <key> hashes the build format, the reader version, the task's
parameters and the SHA-256 of every source file, so edited data or code rebuilds, and a
missing cache (fresh clone) is rebuilt on first use in well under a second per task.
Files listed in the data dir's SHA256SUMS are checked against it before building.
Concurrent processes serialize the build with a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from cbp_jax.data import paths
from cbp_jax.data.sources import READER_VERSION, Source

BUILD_FORMAT = "1"
POOLS = ("train", "test")
log = logging.getLogger(__name__)


class TaskBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """The train/test pools of one task (its `Source`) as an array_record TFDS dataset."""

    name = "cbp_task"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Train and test pools built from the local evaluation files."}

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        # No URL checksums file to find. TFDS's default lookup for a builder defined in a
        # package touches `importlib_resources`, which tensorflow-datasets does not install.
        return None

    def __init__(self, source: Source, root: pathlib.Path | None, data_dir: pathlib.Path):
        self._source = source
        self._root = root
        super().__init__(data_dir=str(data_dir), file_format="array_record")

    def _info(self) -> tfds.core.DatasetInfo:
        features = {k: tfds.features.Text() for k in self._source.string_fields}
        features["label"] = tfds.features.ClassLabel(num_classes=self._source.num_classes)
        features["order"] = tfds.features.Scalar(dtype=np.int64)
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"cbp_jax task {self._source.name}: train and test pools.",
            features=tfds.features.FeaturesDict(features),
        )

    def _split_generators(self, dl_manager):
        pools = self._source.build(self._root)
        return {
            "train": self._generate_examples(pools.train),
            "test": self._generate_examples(pools.test),
        }

    def _generate_examples(self, examples):
        keys = (*self._source.string_fields, "label", "order")
        for ex in examples:
            yield ex["id"], {k: ex[k] for k in keys}


_SHA_MEMO: dict[tuple, str] = {}
_LOADED: dict[tuple, dict[str, tuple[dict, ...]]] = {}


def file_sha256(path: pathlib.Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _SHA_MEMO[key]


def _listed_sums(root: pathlib.Path) -> dict[str, str]:
    sums = root / "SHA256SUMS"
    if not sums.is_file():
        return {}
    out = {}
    for line in sums.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            out[os.path.normpath(name.strip())] = digest
    return out


def source_files(source: Source, data_dir=None) -> tuple[pathlib.Path | None, list[pathlib.Path]]:
    """(data root or None for custom tasks, existing source files), or a clear error."""
    if all(pathlib.Path(f).is_absolute() for f in source.files):
        root, files = None, [pathlib.Path(f) for f in source.files]
    else:
        root = paths.data_dir(data_dir)
        files = [root / f for f in source.files]
    for f in files:
        if not f.is_file():
            where = f"data dir {root}; set {paths.ENV_VAR} or pass data_dir" if root else "custom"
            raise FileNotFoundError(f"task {source.name}: missing data file {f} ({where})")
    return root, files


def cache_key(source: Source, root: pathlib.Path | None, files: list[pathlib.Path]) -> str:
    listed = _listed_sums(root) if root else {}
    digests = []
    for f in files:
        digest = file_sha256(f)
        name = os.path.relpath(f, root) if root else f.name
        if name in listed and listed[name] != digest:
            raise ValueError(
                f"task {source.name}: {f} does not match its SHA256SUMS entry "
                "(edited or corrupted copy of the data)"
            )
        digests.append((name, digest))
    spec = [BUILD_FORMAT, READER_VERSION, source.name, source.params, source.string_fields]
    spec += [source.num_classes, digests]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _quiet():
    """Silence TFDS's progress bars, prints and absl warnings about a not-yet-built folder."""
    previous_bar = getattr(tqdm_utils, "_active", True)
    absl_logger = logging.getLogger("absl")
    previous_level = absl_logger.level
    tfds.display_progress_bar(False)
    absl_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(previous_bar)
        absl_logger.setLevel(previous_level)


@contextlib.contextmanager
def _locked(lock_path: pathlib.Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def prepared_builder(source: Source, data_dir=None, cache_dir=None) -> TaskBuilder:
    """The task's builder, built into the cache first if needed."""
    root, files = source_files(source, data_dir)
    key = cache_key(source, root, files)
    base = paths.cache_dir(cache_dir) / source.name
    with _quiet():
        builder = TaskBuilder(source, root, base / key)
        if builder.is_prepared():
            return builder
        with _locked(base / f"{key}.lock"):
            builder = TaskBuilder(source, root, base / key)  # another process may have built it
            if not builder.is_prepared():
                log.info("building TFDS pools of %s into %s", source.name, builder.data_dir)
                builder.download_and_prepare(
                    download_dir=str(paths.cache_dir(cache_dir) / "downloads"),
                    download_config=tfds.download.DownloadConfig(try_download_gcs=False),
                )
    return builder


def _decode(row: dict) -> dict:
    return {k: v.decode("utf-8") if isinstance(v, bytes) else int(v) for k, v in row.items()}


def load_pools(source: Source, data_dir=None, cache_dir=None) -> dict[str, tuple[dict, ...]]:
    """{"train": ..., "test": ...} read back through TFDS, in source order (memoized)."""
    root, files = source_files(source, data_dir)
    memo_key = (source.name, cache_key(source, root, files), str(paths.cache_dir(cache_dir)))
    if memo_key not in _LOADED:
        data = prepared_builder(source, data_dir, cache_dir).as_data_source()
        pools = {}
        for pool in POOLS:
            rows = data[pool].__getitems__(list(range(len(data[pool]))))
            pools[pool] = tuple(sorted((_decode(r) for r in rows), key=lambda ex: ex["order"]))
        _LOADED[memo_key] = pools
    return _LOADED[memo_key]


def load_split(source: Source, split: str, data_dir=None, cache_dir=None) -> list[dict]:
    """Examples of split "train", "test" or "all" (or a task alias), as fresh dicts."""
    split = dict(source.aliases).get(split, split)
    if split not in (*POOLS, "all"):
        names = sorted({*POOLS, "all", *dict(source.aliases)})
        raise ValueError(f"task {source.name}: unknown split {split!r}; use one of {names}")
    pools = load_pools(source, data_dir, cache_dir)
    if split == "all":
        rows = sorted(pools["train"] + pools["test"], key=lambda ex: ex["order"])
    else:
        rows = pools[split]
    return [{k: v for k, v in ex.items() if k != "order"} for ex in rows]

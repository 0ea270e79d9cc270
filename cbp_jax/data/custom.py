"""Bring your own task without code: a JSONL or CSV file plus a small JSON config.

Working examples: examples/tasks/ (a classification JSONL, a multiple-choice CSV). Keys
(paths are relative to the config file):

    {
      "name": "tickets",
      "file": "tickets.jsonl",
      "text_fields": ["subject", "body"],
      "label_field": "queue",
      "label_words": {"billing": ["billing", "payment"], "tech": ["technical"]},
      "template": "Subject: {subject}\\nBody: {body}\\nQueue (billing or technical):"
    }

Required: name (letters, digits, _ . -), file (.jsonl, one object per line, or .csv),
text_fields (fields the template may use), label_field, template, and exactly one of
label_words (label value -> word or list of words) or options (multiple choice: a list of
option letters such as ["A", "B", "C", "D"]; the label field holds the letter).
Optional: test_fraction (share of each class held out as the test pool, default 0.5) or
test_file (a separate test-pool file); id_field (default: row position); domain (custom,
sentiment, commonsense, medical or financial; a CBP generator of another domain needs
--allow-cross-domain); truncate_fields and max_chars; delimiter (CSV, default ",");
columns (CSV without a header line: the names of its columns, in order).

Classes follow the order of `label_words` (or `options`). The data is checked when the
task is loaded: a missing file, a row without a listed field, a template field that is not
a text field, or a label value outside the verbalizer each raise an error naming it. The
pools then go through the same TFDS builder and pool rules as the shipped tasks
(see pools.py); the cache key covers the config and the files' contents.

A custom task is named by its config's path, in every process (`get_task("my/task.json")`,
the CLI's --task); its "name" alone is not a task name. Run directories use
`run_key()`: the name plus a hash of the config and data, never the path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import re

from cbp_jax.data import readers
from cbp_jax.data.pools import make_pools
from cbp_jax.data.sources import SOURCES, Source
from cbp_jax.data.spec import DEFAULT_MAX_CHARS, TaskSpec

REQUIRED = ("name", "file", "text_fields", "label_field", "template")
OPTIONAL = (
    "label_words",
    "options",
    "test_fraction",
    "test_file",
    "id_field",
    "domain",
    "truncate_fields",
    "max_chars",
    "delimiter",
    "columns",
)


class TaskConfigError(ValueError):
    """A custom task's config or data file is unusable; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class CustomTask:
    spec: TaskSpec
    source: Source
    config_path: pathlib.Path
    config_hash: str  # of the config and its data files: names its run directories

    def run_key(self) -> str:
        """Directory name for this task's runs: its name plus the config's hash."""
        return f"{self.spec.name}-{self.config_hash}"


_MEMO: dict[tuple, CustomTask] = {}  # parse each (path, mtime) once per process


def is_config_path(name: str) -> bool:
    return str(name).endswith(".json")


def _fail(path, msg) -> TaskConfigError:
    return TaskConfigError(f"task config {path}: {msg}")


def _read_config(path: pathlib.Path) -> dict:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise _fail(path, f"not valid JSON ({e.msg}, line {e.lineno})") from e
    if not isinstance(cfg, dict):
        raise _fail(path, "must be a JSON object")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise _fail(path, f"missing required key(s) {missing}")
    unknown = sorted(set(cfg) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise _fail(path, f"unknown key(s) {unknown}; allowed: {[*REQUIRED, *OPTIONAL]}")
    if ("label_words" in cfg) == ("options" in cfg):
        raise _fail(path, "give exactly one of 'label_words' (verbalizer) or 'options'")
    if not isinstance(cfg["name"], str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", cfg["name"]):
        raise _fail(path, f"name {cfg['name']!r} must use only letters, digits, _ . -")
    if cfg["name"] in SOURCES:
        raise _fail(path, f"name {cfg['name']!r} is a shipped task; choose another")
    fields = cfg["text_fields"]
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise _fail(path, "'text_fields' must be a non-empty list of field names")
    if "test_file" in cfg and "test_fraction" in cfg:
        raise _fail(path, "give at most one of 'test_file' and 'test_fraction'")
    cols = cfg.get("columns")
    if cols is not None and (
        not isinstance(cols, list)
        or not cols
        or not all(isinstance(c, str) and c for c in cols)
        or len(set(cols)) != len(cols)
    ):
        raise _fail(path, "'columns' must be a list of distinct column names, in file order")
    return cfg


def _label_values(path, cfg) -> tuple[list[str], tuple[tuple[str, ...], ...]]:
    """(label value per class, label words per class), in class order."""
    if "options" in cfg:
        opts = cfg["options"]
        if not isinstance(opts, list) or not all(isinstance(o, str) and o for o in opts):
            raise _fail(path, "'options' must be a list of option letters, e.g. ['A', 'B']")
        return list(opts), tuple((o,) for o in opts)
    lw = cfg["label_words"]
    if not isinstance(lw, dict) or not lw:
        raise _fail(path, "'label_words' must map each label value to a word or list of words")
    words = []
    for value, ws in lw.items():
        ws = [ws] if isinstance(ws, str) else ws
        if not isinstance(ws, list) or not ws or not all(isinstance(w, str) for w in ws):
            raise _fail(path, f"label_words[{value!r}] must be a word or a list of words")
        words.append(tuple(ws))
    return list(lw), tuple(words)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v).strip()


def _rows(path: pathlib.Path, cfg: dict) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"custom task data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl" and "columns" not in cfg:
        return readers.read_jsonl(path)
    if suffix == ".csv":
        return readers.read_csv_dicts(path, cfg.get("delimiter", ","), cfg.get("columns"))
    if suffix == ".jsonl":
        raise TaskConfigError(f"custom task data file {path}: 'columns' applies to CSV files")
    raise TaskConfigError(f"custom task data file {path}: use a .jsonl or .csv file")


def _header_hint(data_path: pathlib.Path, cfg: dict) -> str:
    """For a CSV read with its first line as header: how to say it has none."""
    if data_path.suffix.lower() != ".csv" or "columns" in cfg:
        return ""
    return (
        "; the first line was read as the CSV header: if the file has no header line, "
        "list its column names in the config's 'columns'"
    )


def _examples(cfg_path, cfg, data_path, values, tag) -> list[dict]:
    """Validated example dicts of one data file."""
    fields, label_field = cfg["text_fields"], cfg["label_field"]
    id_field = cfg.get("id_field")
    classes = {v: c for c, v in enumerate(values)}
    out = []
    for i, row in enumerate(_rows(data_path, cfg)):
        where = f"{data_path.name} row {i + 1}"
        missing = [f for f in (*fields, label_field, id_field) if f and row.get(f) is None]
        if missing:
            have = sorted(k for k in row if k is not None)
            raise _fail(
                cfg_path,
                f"{where} lacks field(s) {missing} (it has {have}){_header_hint(data_path, cfg)}",
            )
        label = _value(row[label_field])
        if label not in classes:
            raise _fail(
                cfg_path,
                f"{where}: label {row[label_field]!r} of field {label_field!r} is not in the "
                f"verbalizer {values}",
            )
        ex = {"id": _value(row[id_field]) if id_field else f"{cfg['name']}-{tag}-{i}"}
        ex.update({f: _value(row[f]) for f in fields})
        ex["label"] = classes[label]
        out.append(ex)
    if not out:
        raise _fail(cfg_path, f"{data_path} holds no examples")
    return out


def load_custom_task(config_path) -> CustomTask:
    """Parse and check a task config and its data (memoized per path and mtime)."""
    path = pathlib.Path(config_path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"task config {path} does not exist")
    memo = (str(path), path.stat().st_mtime_ns)
    if memo in _MEMO:
        return _MEMO[memo]
    cfg = _read_config(path)
    values, words = _label_values(path, cfg)
    fields = tuple(cfg["text_fields"])
    try:
        spec = TaskSpec(
            cfg["name"],
            cfg["template"],
            words,
            domain=cfg.get("domain", "custom"),
            truncate_fields=tuple(cfg.get("truncate_fields", ())),
            max_chars=cfg.get("max_chars", DEFAULT_MAX_CHARS),
        )
    except ValueError as e:
        raise _fail(path, str(e)) from e
    not_text = [f for f in spec.fields if f not in fields]
    if not_text:
        raise _fail(path, f"template field(s) {not_text} are not in text_fields {list(fields)}")
    data_file = (path.parent / cfg["file"]).resolve()
    test_file = (path.parent / cfg["test_file"]).resolve() if "test_file" in cfg else None
    fraction = cfg.get("test_fraction", 0.5)
    if not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise _fail(path, f"test_fraction must be a number in (0, 1), got {fraction!r}")

    def build(_root=None):
        main = _examples(path, cfg, data_file, values, "train" if test_file else "row")
        try:
            if test_file is None:
                return make_pools(spec.name, fields, single=main, test_fraction=fraction)
            test = _examples(path, cfg, test_file, values, "test")
            return make_pools(spec.name, fields, train=main, test=test)
        except ValueError as e:
            raise _fail(path, str(e)) from e

    build()  # check the data now, so errors surface here and name the config
    files = (str(data_file),) + ((str(test_file),) if test_file else ())
    params = json.dumps({k: v for k, v in cfg.items() if k != "template"}, sort_keys=True)
    source = Source(spec.name, files, fields, spec.num_classes, build, params=params)
    h = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode())
    for f in files:
        h.update(pathlib.Path(f).read_bytes())
    digest = h.hexdigest()[:8]  # config and data: an edit gives runs a new directory
    task = CustomTask(spec, source, path, digest)
    _MEMO[memo] = task
    return task

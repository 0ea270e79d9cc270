"""Bring your own task without code: a JSONL or CSV file plus a small JSON config.

Config keys (paths are relative to the config file):

    {
      "name": "tickets",                      # letters, digits, _ . -
      "file": "tickets.jsonl",                # .jsonl (one object per line) or .csv (header)
      "text_fields": ["subject", "body"],     # fields the template may use
      "label_field": "queue",
      "label_words": {"billing": ["billing", "payment"], "tech": ["technical"]},
      "template": "Subject: {subject}\\nBody: {body}\\nQueue (billing or technical):",
      # optional:
      "options": ["A", "B", "C", "D"],        # instead of label_words: multiple choice, the
                                              # label field holds the letter
      "test_fraction": 0.5,                   # share of each class held out as the test pool
      "test_file": "tickets_test.jsonl",      # instead: a separate test-pool file
      "id_field": "ticket_id",                # default: row position
      "domain": "custom",                     # or sentiment/commonsense/medical/financial
      "truncate_fields": ["body"], "max_chars": 1200,
      "delimiter": ","                        # CSV only
    }

Classes follow the order of `label_words` (or `options`). The data is checked when the
task is loaded: a missing file, a row without a listed field, a template field that is not
a text field, or a label value outside the verbalizer each raise an error naming it. The
pools then go through the same TFDS builder and pool rules as the shipped tasks
(see pools.py); the cache key covers the config and the files' contents.

Use the config's path wherever a task name is expected (`get_task("my/task.json")`, the
CLI's --task); once loaded, its "name" works too.
"""

from __future__ import annotations

import dataclasses
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
)


class TaskConfigError(ValueError):
    """A custom task's config or data file is unusable; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class CustomTask:
    spec: TaskSpec
    source: Source
    config_path: pathlib.Path


_BY_PATH: dict[tuple, CustomTask] = {}
_BY_NAME: dict[str, CustomTask] = {}


def is_config_path(name: str) -> bool:
    return str(name).endswith(".json")


def _fail(path, msg) -> TaskConfigError:
    return TaskConfigError(f"task config {path}: {msg}")


def _read_config(path: pathlib.Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"task config {path} does not exist")
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
    fields = cfg["text_fields"]
    if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
        raise _fail(path, "'text_fields' must be a non-empty list of field names")
    if "test_file" in cfg and "test_fraction" in cfg:
        raise _fail(path, "give at most one of 'test_file' and 'test_fraction'")
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


def _rows(path: pathlib.Path, delimiter: str) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"custom task data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return readers.read_jsonl(path)
    if suffix == ".csv":
        return readers.read_csv_dicts(path, delimiter)
    raise TaskConfigError(f"custom task data file {path}: use a .jsonl or .csv file")


def _examples(cfg_path, cfg, data_path, values, tag) -> list[dict]:
    """Validated example dicts of one data file."""
    fields, label_field = cfg["text_fields"], cfg["label_field"]
    id_field = cfg.get("id_field")
    classes = {v: c for c, v in enumerate(values)}
    out = []
    for i, row in enumerate(_rows(data_path, cfg.get("delimiter", ","))):
        where = f"{data_path.name} row {i + 1}"
        missing = [f for f in (*fields, label_field, id_field) if f and row.get(f) is None]
        if missing:
            raise _fail(cfg_path, f"{where} lacks field(s) {missing} (it has {sorted(row)})")
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
    """Parse and check a task config and its data; register the task under its name."""
    path = pathlib.Path(config_path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"task config {path} does not exist")
    memo = (str(path), path.stat().st_mtime_ns)
    if memo in _BY_PATH:
        return _BY_PATH[memo]
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
    task = CustomTask(spec, source, path)
    _register(task)
    _BY_PATH[memo] = task
    return task


def _register(task: CustomTask) -> None:
    name = task.spec.name
    if name in SOURCES:
        raise _fail(task.config_path, f"name {name!r} is a shipped task; choose another")
    other = _BY_NAME.get(name)
    if other is not None and other.config_path != task.config_path:
        raise _fail(task.config_path, f"name {name!r} is already used by {other.config_path}")
    _BY_NAME[name] = task


def registered(name: str) -> CustomTask | None:
    return _BY_NAME.get(name)

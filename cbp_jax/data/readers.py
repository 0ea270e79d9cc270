"""Plain-Python parsers of the shipped raw files: one function per dataset.

Each returns a list of example dicts: an "id" (unique within the task), string text
fields, and an integer "label" (0-based class index, in the order of the task's label
words). Multiple-choice datasets use the fields "question" (or "goal"/"premise") and the
option texts "A", "B", ... and the label is the index of the correct option.

Normalization kept deliberately small:
- every text field is stripped; AG News also gets its HTML remnants ("#39;" -> "'",
  "#36;" -> "$") decoded, its "\\" line-break marks replaced and its whitespace collapsed;
- ARC keeps only questions with exactly four options, keys renamed to A-D by position
  ("1".."4" keys occur); 3- and 5-option questions are dropped (Easy dev 3 of 570,
  Easy test 11 of 2376, Challenge test 7 of 1172).
Long contexts (BoolQ passages, PubMedQA abstracts) are kept whole here and truncated at
render time (see `TaskSpec.max_chars`).
"""

from __future__ import annotations

import csv
import html
import json
import pathlib
import re

LETTERS = "ABCDE"


def read_jsonl(path: pathlib.Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object per line")
            rows.append(row)
    return rows


def read_csv_dicts(path: pathlib.Path, delimiter: str = ",", columns=None) -> list[dict]:
    """Rows of a CSV file as dicts of strings: keyed by its header line, or by `columns`
    (the column names in order) for a file without one."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(
            f, fieldnames=list(columns) if columns else None, delimiter=delimiter
        )
        if not reader.fieldnames:
            raise ValueError(f"{path}: empty CSV file (a header line is required)")
        return list(reader)


def _label(value, mapping: dict, where: str) -> int:
    key = str(value).strip()
    if key not in mapping:
        raise ValueError(f"{where}: label {value!r} not one of {sorted(mapping)}")
    return mapping[key]


def _example(ex_id, where: str, label, labels: dict, **fields) -> dict:
    """{"id", the stripped text fields in order, "label": the class index of `label`}."""
    return {
        "id": ex_id,
        **{k: v.strip() for k, v in fields.items()},
        "label": _label(label, labels, where),
    }


def _mc(ex_id, where: str, question: str, options, answer, keys="ABCD", **extra) -> dict:
    """A multiple-choice example: options renamed A, B, ... by position; `answer` is the key
    (one of `keys`, in option order) of the correct one."""
    ex = {"id": ex_id, **extra, "question": question.strip()}
    ex.update({LETTERS[j]: o.strip() for j, o in enumerate(options)})
    ex["label"] = _label(answer, {k: j for j, k in enumerate(keys)}, where)
    return ex


def _jsonl(path: pathlib.Path):
    """(row number from 0, row, "path:line") of every row of a JSONL file."""
    return [(i, r, f"{path}:{i + 1}") for i, r in enumerate(read_jsonl(path))]


BINARY = {"0": 0, "1": 1}


def sst2(root: pathlib.Path) -> list[dict]:
    """SST-2 GLUE dev (872): label 0 negative, 1 positive."""
    return [
        _example(f"sst2-dev-{i}", where, r["label"], BINARY, sentence=r["sentence"])
        for i, r, where in _jsonl(root / "sst2" / "dev.jsonl")
    ]


def _clean_news(text: str) -> str:
    text = re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text)
    return " ".join(html.unescape(text).replace("\\", " ").split())


def ag_news(root: pathlib.Path) -> list[dict]:
    """AG News test (7,600; 1,900 per class). Class index 1-4 in the file -> label 0-3."""
    classes = (root / "ag_news" / "classes.txt").read_text(encoding="utf-8")
    if "1-World, 2-Sports, 3-Business, 4-Science/Tech" not in classes:
        raise ValueError(f"ag_news/classes.txt has an unexpected class order: {classes!r}")
    path = root / "ag_news" / "test.csv"
    labels = {"1": 0, "2": 1, "3": 2, "4": 3}
    return [
        _example(f"ag_news-test-{i}", f"{path}:{i + 2}", r["Class Index"], labels,
                 title=_clean_news(r["Title"]), description=_clean_news(r["Description"]))
        for i, r in enumerate(read_csv_dicts(path))
    ]  # fmt: skip


def boolq(root: pathlib.Path) -> list[dict]:
    """BoolQ dev (3,270): label 0 false (answer "no"), 1 true ("yes")."""
    return [
        _example(f"boolq-val-{r['idx']}", where, r["label"], {"false": 0, "true": 1},
                 passage=r["passage"], question=r["question"])
        for _, r, where in _jsonl(root / "boolq" / "val.jsonl")
    ]  # fmt: skip


def piqa(root: pathlib.Path) -> list[dict]:
    """PIQA validation (1,838): goal + two solutions A/B; labels from the aligned .lst file."""
    rows = read_jsonl(root / "piqa" / "valid.jsonl")
    labels = (root / "piqa" / "valid-labels.lst").read_text(encoding="utf-8").split()
    if len(labels) != len(rows):
        raise ValueError(f"piqa: {len(rows)} questions but {len(labels)} labels")
    return [
        _example(f"piqa-valid-{i}", f"piqa/valid-labels.lst:{i + 1}", lab, BINARY,
                 goal=r["goal"], A=r["sol1"], B=r["sol2"])
        for i, (r, lab) in enumerate(zip(rows, labels, strict=True))
    ]  # fmt: skip


def copa(root: pathlib.Path) -> list[dict]:
    """COPA validation (100): premise, question "cause"/"effect", choices A/B."""
    out = []
    for _, r, where in _jsonl(root / "copa" / "val.jsonl"):
        if r["question"] not in ("cause", "effect"):
            raise ValueError(f"{where}: question {r['question']!r} not cause/effect")
        out.append(_example(f"copa-val-{r['idx']}", where, r["label"], BINARY,
                            premise=r["premise"], question=r["question"], A=r["choice1"],
                            B=r["choice2"]))  # fmt: skip
    return out


def arc(root: pathlib.Path, filename: str) -> list[dict]:
    """ARC questions with exactly four options, keys normalized to A-D by position."""
    out = []
    for _, r, where in _jsonl(root / "arc" / filename):
        choices = r["question"]["choices"]
        if len(choices) != 4:
            continue
        keys = [c["label"] for c in choices]
        if keys not in (list("ABCD"), list("1234")):
            raise ValueError(f"{where}: unexpected option keys {keys}")
        options = [c["text"] for c in choices]
        out.append(_mc(r["id"], where, r["question"]["stem"], options, r["answerKey"], keys))
    return out


def medqa_usmle(root: pathlib.Path) -> list[dict]:
    """MedQA-USMLE 4-option test (1,273): options A-D, answer_idx the correct letter."""
    out = []
    for _, r, where in _jsonl(root / "medqa_usmle" / "test.jsonl"):
        if sorted(r["options"]) != list("ABCD"):
            raise ValueError(f"{where}: expected options A-D, got {sorted(r['options'])}")
        options = [r["options"][k] for k in "ABCD"]
        out.append(_mc(f"medqa-{r['realidx']}", where, r["question"], options, r["answer_idx"]))
    return out


MMLU_SUBJECTS = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)


def mmlu_medical(root: pathlib.Path, split: str) -> list[dict]:
    """MMLU's six medical subjects, one split (dev 30, val 123, test 1,089); no header."""
    out = []
    for subject in MMLU_SUBJECTS:
        path = root / "mmlu_medical" / split / f"{subject}_{split}.csv"
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        for i, r in enumerate(rows):
            if len(r) != 6:
                raise ValueError(f"{path}: row {i + 1} has {len(r)} columns, expected 6")
            ex_id = f"mmlu-{subject}-{split}-{i}"
            out.append(_mc(ex_id, f"{path}:{i + 1}", r[0], r[1:5], r[5], subject=subject))
    return out


PUBMEDQA_ANSWERS = ("yes", "no", "maybe")


def pubmedqa(root: pathlib.Path) -> tuple[list[dict], set[str]]:
    """PubMedQA PQA-L (1,000) and the ids of its official 500-question test set.

    The context is the abstract's sections joined by spaces; the label is final_decision
    (yes 0, no 1, maybe 2).
    """
    path = root / "pubmedqa" / "ori_pqal.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    test_ids = set(json.loads((root / "pubmedqa" / "test_ground_truth.json").read_text()))
    missing = test_ids - set(data)
    if missing:
        raise ValueError(f"pubmedqa: {len(missing)} test ids not in {path.name}")
    answers = {a: j for j, a in enumerate(PUBMEDQA_ANSWERS)}
    out = [
        _example(pmid, f"{path} [{pmid}]", r["final_decision"], answers,
                 context=" ".join(c.strip() for c in r["CONTEXTS"]), question=r["QUESTION"])
        for pmid, r in data.items()
    ]  # fmt: skip
    return out, test_ids


FPB_LABELS = ("negative", "neutral", "positive")


def financial_phrasebank(root: pathlib.Path) -> list[dict]:
    """Financial PhraseBank, >= 50% agreement (4,846): latin-1, CRLF, `sentence@label`."""
    path = root / "financial_phrasebank" / "Sentences_50Agree.txt"
    labels = {name: j for j, name in enumerate(FPB_LABELS)}
    out = []
    lines = path.read_bytes().decode("latin-1").split("\r\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        sentence, sep, label = line.rpartition("@")
        if not sep:
            raise ValueError(f"{path}:{i + 1}: no '@' separating sentence and label")
        out.append(
            _example(f"fpb-50agree-{i}", f"{path}:{i + 1}", label, labels, sentence=sentence)
        )
    return out

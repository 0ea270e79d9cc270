"""A user's own task from a JSONL or CSV file and a JSON config, and its error messages."""

import csv
import json

import pytest

from cbp_jax.data.custom import TaskConfigError
from cbp_jax.data.splits import kshot_splits
from cbp_jax.data.tasks import get_task, load_examples


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CBP_JAX_TFDS_DIR", str(tmp_path / "tfds_cache"))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def tickets(n=40):
    return [
        {
            "subject": f"ticket {i}",
            "body": f"{'my card was charged twice' if i % 2 else 'the app crashes'} #{i}",
            "queue": "billing" if i % 2 else "tech",
        }
        for i in range(n)
    ]


def ticket_config(tmp_path, **changes):
    write_jsonl(tmp_path / "tickets.jsonl", tickets())
    cfg = {
        "name": "tickets",
        "file": "tickets.jsonl",
        "text_fields": ["subject", "body"],
        "label_field": "queue",
        "label_words": {"billing": ["billing", "payment"], "tech": "technical"},
        "template": "Subject: {subject}\nBody: {body}\nQueue (billing or technical):",
        "test_fraction": 0.25,
    }
    cfg.update(changes)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    path = tmp_path / f"{cfg['name'] if isinstance(cfg.get('name'), str) else 'x'}.json"
    path.write_text(json.dumps(cfg))
    return path


def test_custom_jsonl_task_end_to_end(tmp_path):
    path = ticket_config(tmp_path)
    task = get_task(str(path))
    assert task.name == "tickets" and task.domain == "custom"
    assert task.label_words == (("billing", "payment"), ("technical",))
    train, test = load_examples(str(path), "train"), load_examples(str(path), "test")
    assert (len(train), len(test)) == (30, 10)  # 25% of each class (20 + 20) held out
    assert not {e["id"] for e in train} & {e["id"] for e in test}
    assert task.render(test[0]).endswith("\nQueue (billing or technical):")
    assert {e["label"] for e in test} == {0, 1}
    with pytest.raises(KeyError, match="named by the path of its config"):
        get_task("tickets")  # the name alone is no task name, in this process or another
    splits = kshot_splits(str(path), shots_per_class=4, seed=0)
    assert len(splits.train) == len(splits.dev) == 8 and len(splits.test) == 10
    again = kshot_splits(str(path), shots_per_class=4, seed=0)
    assert [e["id"] for e in again.train] == [e["id"] for e in splits.train]


def test_custom_csv_multiple_choice_with_test_file(tmp_path):
    def write(name, n, start=0):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["qid", "question", "A", "B", "C", "answer"])
            for i in range(start, start + n):
                w.writerow(
                    [f"{name}-{i - start}", f"What is {i} + 1?", i + 1, i + 2, i, "ABC"[i % 3]]
                )

    write("quiz_train.csv", 12)
    write("quiz_test.csv", 9, start=100)
    cfg = {
        "name": "quiz",
        "file": "quiz_train.csv",
        "test_file": "quiz_test.csv",
        "id_field": "qid",
        "text_fields": ["question", "A", "B", "C"],
        "label_field": "answer",
        "options": ["A", "B", "C"],
        "template": "Question: {question}\nA. {A}\nB. {B}\nC. {C}\nAnswer:",
        "domain": "commonsense",
    }
    (tmp_path / "quiz.json").write_text(json.dumps(cfg))
    task = get_task(str(tmp_path / "quiz.json"))
    assert task.label_words == (("A",), ("B",), ("C",))
    test = load_examples(str(tmp_path / "quiz.json"), "test")
    assert [e["id"] for e in test][:2] == ["quiz_test.csv-0", "quiz_test.csv-1"]
    assert task.render(test[1]) == "Question: What is 101 + 1?\nA. 102\nB. 103\nC. 101\nAnswer:"
    assert test[1]["label"] == 2  # row 101 answers "ABC"[101 % 3]
    assert len(load_examples(str(tmp_path / "quiz.json"), "train")) == 12


def test_editing_the_data_rebuilds_the_task(tmp_path):
    path = ticket_config(tmp_path, name="tickets2")
    assert len(load_examples(str(path), "all")) == 40
    write_jsonl(tmp_path / "tickets.jsonl", tickets(20))
    assert len(load_examples(str(path), "all")) == 20


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"file": "nope.jsonl"}, FileNotFoundError, "nope.jsonl does not exist"),
        ({"template": None}, TaskConfigError, r"missing required key\(s\) \['template'\]"),
        ({"labels": {"a": "b"}}, TaskConfigError, r"unknown key\(s\) \['labels'\]"),
        ({"options": ["A", "B"]}, TaskConfigError, "exactly one of 'label_words'"),
        ({"template": "Title: {title}\nQueue:"}, TaskConfigError, r"\['title'\] are not in"),
        (
            {"text_fields": ["subject", "body", "sender"]},
            TaskConfigError,
            r"row 1 lacks .*'sender'",
        ),
        (
            {"label_words": {"billing": "billing", "spam": "spam"}},
            TaskConfigError,
            "label 'tech' of field",
        ),
        ({"label_field": "queu"}, TaskConfigError, r"lacks field\(s\) \['queu'\]"),
        ({"name": "sst2"}, TaskConfigError, "'sst2' is a shipped task"),
        ({"name": "bad name"}, TaskConfigError, "must use only letters"),
        ({"test_fraction": 1.5}, TaskConfigError, "test_fraction must be"),
        ({"template": "Body: {body}\nQueue: "}, TaskConfigError, "not with whitespace"),
        ({"label_words": {"billing": "x", "tech": "x"}}, TaskConfigError, "used twice"),
    ],
)
def test_bad_configs_raise_errors_naming_the_problem(tmp_path, changes, error, message):
    path = ticket_config(tmp_path, **changes)
    with pytest.raises(error, match=message):
        get_task(str(path))


def test_unreadable_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json does not exist"):
        get_task(str(tmp_path / "missing.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(TaskConfigError, match="not valid JSON"):
        get_task(str(tmp_path / "broken.json"))
    path = ticket_config(tmp_path, name="tickets3")
    (tmp_path / "tickets.jsonl").write_text('{"subject": "a"\n')
    with pytest.raises(ValueError, match=r"tickets.jsonl:1: not valid JSON"):
        get_task(str(path))


def test_csv_without_header_via_columns(tmp_path):
    """Defect 7: a CSV needed a header row, and the error quoted the first row as names."""
    rows = [[f"q{i}", f"Is {i} even?", "yes", "no", "AB"[i % 2]] for i in range(16)]
    with open(tmp_path / "even.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    cfg = {
        "name": "even",
        "file": "even.csv",
        "id_field": "qid",
        "text_fields": ["question", "A", "B"],
        "label_field": "answer",
        "options": ["A", "B"],
        "template": "Question: {question}\nA. {A}\nB. {B}\nAnswer:",
    }
    (tmp_path / "no_columns.json").write_text(json.dumps(cfg))
    with pytest.raises(TaskConfigError, match="no header line, list its column names"):
        get_task(str(tmp_path / "no_columns.json"))
    (tmp_path / "even.json").write_text(
        json.dumps({**cfg, "columns": ["qid", "question", "A", "B", "answer"]})
    )
    every = load_examples(str(tmp_path / "even.json"), "all")
    assert len(every) == 16  # the first line is data, not a header
    first = next(e for e in every if e["id"] == "q0")
    assert (first["question"], first["label"]) == ("Is 0 even?", 0)
    (tmp_path / "dup.json").write_text(json.dumps({**cfg, "columns": ["qid", "qid"]}))
    with pytest.raises(TaskConfigError, match="distinct column names"):
        get_task(str(tmp_path / "dup.json"))

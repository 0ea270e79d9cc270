"""Shipped tasks: every one builds offline through TFDS with the documented counts and labels.

Raw counts come from data/README.md; pool counts follow the rules documented in
cbp_jax/data/sources.py and pools.py (4-option filter, duplicates, hash split).
"""

import collections
import json
import shutil
import socket

import gguf
import pytest

from cbp_jax.data import builders, readers
from cbp_jax.data.paths import REPO_DATA
from cbp_jax.data.pools import content_key
from cbp_jax.data.sources import SOURCES
from cbp_jax.data.spec import TaskSpec
from cbp_jax.data.tasks import check_first_tokens, get_task, load_examples, task_names
from cbp_jax.model.gguf_loader import tokenizer_from_gguf
from cbp_jax.model.registry import packaged_gguf

# task: (train pool, test pool, number of classes)
POOLS = {
    "sst2": (436, 436, 2),
    "ag_news": (3800, 3800, 4),
    "boolq": (1636, 1634, 2),
    "piqa": (919, 919, 2),
    "copa": (51, 49, 2),
    "arc_easy": (567, 2365, 4),
    "arc_challenge": (584, 581, 4),
    "pubmedqa": (500, 500, 3),
    "medqa_usmle": (638, 635, 4),
    "mmlu_medical": (132, 1011, 4),
    "financial_phrasebank": (2419, 2417, 3),
}


@pytest.fixture(scope="module", autouse=True)
def offline_fresh_cache(tmp_path_factory):
    """A fresh TFDS cache (as on a new clone) and no network at all."""

    def no_network(*args, **kwargs):
        raise AssertionError("task loading tried to use the network")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CBP_JAX_TFDS_DIR", str(tmp_path_factory.getbasetemp() / "tfds_cache"))
        mp.delenv("CBP_JAX_DATA_DIR", raising=False)
        mp.setattr(socket.socket, "connect", no_network)
        yield


@pytest.fixture(scope="module")
def tokenizer():
    return tokenizer_from_gguf(gguf.GGUFReader(packaged_gguf("smollm2-135m")))


def test_registry_lists_the_eleven_tasks():
    assert sorted(task_names()) == sorted(POOLS)


def test_raw_files_match_readme_counts():
    root = REPO_DATA
    assert len(readers.sst2(root)) == 872
    assert len(readers.ag_news(root)) == 7600
    assert len(readers.boolq(root)) == 3270
    assert len(readers.piqa(root)) == 1838
    assert len(readers.copa(root)) == 100
    assert len(readers.medqa_usmle(root)) == 1273
    assert len(readers.mmlu_medical(root, "test")) == 1089
    assert len(readers.financial_phrasebank(root)) == 4846
    examples, test_ids = readers.pubmedqa(root)
    assert (len(examples), len(test_ids)) == (1000, 500)
    # ARC: raw lines per README, minus the documented non-4-option questions.
    for name, raw, kept in [
        ("ARC-Easy-Test.jsonl", 2376, 2365),
        ("ARC-Easy-Dev.jsonl", 570, 567),
        ("ARC-Challenge-Test.jsonl", 1172, 1165),
    ]:
        assert len(readers.read_jsonl(root / "arc" / name)) == raw
        rows = readers.arc(root, name)
        assert len(rows) == kept
        assert all(set("ABCD") <= set(r) and 0 <= r["label"] < 4 for r in rows)


@pytest.mark.parametrize("name", sorted(POOLS))
def test_task_loads_with_counts_labels_and_disjoint_pools(name):
    n_train, n_test, n_classes = POOLS[name]
    task = get_task(name)
    train = load_examples(name, "train")
    test = load_examples(name, "test")
    assert (len(train), len(test), task.num_classes) == (n_train, n_test, n_classes)
    for pool in (train, test):
        assert {ex["label"] for ex in pool} == set(range(n_classes))
        assert len({ex["id"] for ex in pool}) == len(pool)
    assert not {ex["id"] for ex in train} & {ex["id"] for ex in test}
    keys = SOURCES[name].text_fields
    assert not {content_key(ex, keys) for ex in train} & {content_key(ex, keys) for ex in test}
    assert len(load_examples(name, "all")) == n_train + n_test
    for ex in train[:50] + test[:50]:
        prompt = task.render(ex)
        assert prompt == prompt.rstrip() and prompt.endswith(task.template.rsplit("\n")[-1])


def test_known_class_balances():
    ag = collections.Counter(ex["label"] for ex in load_examples("ag_news", "test"))
    assert ag == {0: 950, 1: 950, 2: 950, 3: 950}
    pubmed = collections.Counter(ex["label"] for ex in load_examples("pubmedqa", "test"))
    assert pubmed == {0: 276, 1: 169, 2: 55}  # the official test set: yes / no / maybe
    official = json.loads((REPO_DATA / "pubmedqa" / "test_ground_truth.json").read_text())
    assert {ex["id"] for ex in load_examples("pubmedqa", "test")} == set(official)


def test_legacy_split_names_mean_the_whole_shipped_split():
    assert len(load_examples("sst2", "dev")) == 872  # `make demo` uses --split dev
    assert len(load_examples("copa", "validation")) == 100


def test_label_words_have_distinct_first_tokens(tokenizer):
    for name in task_names():
        check_first_tokens(get_task(name), tokenizer)
    clash = TaskSpec("clash", "City: {x}\nAnswer:", (("New York",), ("New Jersey",)))
    with pytest.raises(ValueError, match="share their first token"):
        check_first_tokens(clash, tokenizer)


def test_long_contexts_are_truncated_at_render_time():
    task = get_task("boolq")
    ex = max(load_examples("boolq", "test"), key=lambda e: len(e["passage"]))
    assert len(ex["passage"]) > 2500
    passage = task.render(ex).split("\nQuestion:")[0].removeprefix("Passage: ")
    assert len(passage) <= task.max_chars and passage.endswith(" ...")
    longer = get_task("boolq", max_chars=2000).render(ex)
    assert 2000 - 100 < len(longer.split("\nQuestion:")[0]) <= 2000 + len("Passage: ")


def test_multiple_choice_prompt_layout():
    ex = load_examples("arc_easy", "train")[0]
    prompt = get_task("arc_easy").render(ex)
    assert prompt == (
        f"Question: {ex['question']}\nA. {ex['A']}\nB. {ex['B']}\nC. {ex['C']}\n"
        f"D. {ex['D']}\nAnswer:"
    )
    copa = load_examples("copa", "all")[0]
    assert "What was the effect?" in get_task("copa").render(copa)


def test_cache_is_rebuilt_from_scratch_and_follows_data_edits(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(REPO_DATA / "copa", data / "copa")
    cache = tmp_path / "cache"
    assert len(load_examples("copa", "all", data, cache_dir=cache)) == 100
    assert list(cache.glob("copa/*/cbp_task/1.0.0/*.array_record-*"))  # array_record files
    lines = (data / "copa" / "val.jsonl").read_text().splitlines(keepends=True)
    (data / "copa" / "val.jsonl").write_text("".join(lines[:60]))
    assert len(load_examples("copa", "all", data, cache_dir=cache)) == 60
    assert len(list(cache.glob("copa/*/cbp_task"))) == 2  # one build per content


def test_edited_file_fails_its_checksum(tmp_path):
    shutil.copytree(REPO_DATA / "copa", tmp_path / "copa")
    sums = [line for line in (REPO_DATA / "SHA256SUMS").read_text().splitlines() if "copa" in line]
    (tmp_path / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    assert len(load_examples("copa", "test", tmp_path, cache_dir=tmp_path / "c")) == 49
    with open(tmp_path / "copa" / "val.jsonl", "a") as f:
        f.write("\n")
    with pytest.raises(ValueError, match="SHA256SUMS"):
        load_examples("copa", "test", tmp_path, cache_dir=tmp_path / "c")


def test_bad_names_and_missing_files_raise_clear_errors(tmp_path):
    with pytest.raises(KeyError, match="unknown task 'sst3'.*sst2"):
        get_task("sst3")
    with pytest.raises(KeyError, match="unknown task"):
        load_examples("nope", "test")
    with pytest.raises(ValueError, match="unknown split 'validaton'"):
        load_examples("sst2", "validaton")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_examples("sst2", "test", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"task sst2: missing data file .*dev\.jsonl"):
        load_examples("sst2", "test", tmp_path)


def test_builder_reads_back_through_tfds_data_source():
    source = SOURCES["piqa"]
    builder = builders.prepared_builder(source)
    data = builder.as_data_source()
    assert set(data) == {"train", "test"}
    assert len(data["test"]) == POOLS["piqa"][1]
    assert builder.info.features["label"].num_classes == 2

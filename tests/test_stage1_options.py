"""Stage-1 option shuffling: the right answer's text follows the label, letters even out."""

import dataclasses
from collections import Counter

import numpy as np
import pytest

from cbp_jax.data.spec import TaskSpec
from cbp_jax.data.tasks import get_task
from cbp_jax.methods.cbp_train import Stage1Config
from cbp_jax.methods.stage1_data import TrainTask, make_batch, permute_options

MC = TaskSpec("mc", "Text: {text}\nA. {A}\nB. {B}\nC. {C}\nLabel:", ("A", "B", "C"))
OPTS = ("good", "bad", "w1")


class WordTokenizer:
    words = ["<pad>", "Text:", "Label:", "A.", "B.", "C.", *OPTS, "w0"]
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.words.index(w) for w in text.split()]}


def _examples(n, label=0):
    return [{"text": "w0", "A": OPTS[0], "B": OPTS[1], "C": OPTS[2], "label": label}] * n


def test_option_fields_name_the_letter_tasks_only():
    assert get_task("arc_challenge").option_fields == ("A", "B", "C", "D")
    assert get_task("copa").option_fields == ("A", "B")
    for name in ("boolq", "pubmedqa", "sst2", "ag_news", "financial_phrasebank"):
        assert get_task(name).option_fields is None, name
    # letters that are not template fields are label words, not options
    assert TaskSpec("t", "Q: {q}\nAnswer:", ("A", "B")).option_fields is None


@pytest.mark.parametrize("label", [0, 1, 2])
def test_the_label_follows_the_right_option(label):
    out = permute_options(MC, _examples(300, label), np.random.default_rng(0))
    right = OPTS[label]
    for ex in out:
        assert ex[MC.option_fields[ex["label"]]] == right
        assert sorted(ex[f] for f in ("A", "B", "C")) == sorted(OPTS)
        assert ex["text"] == "w0"
    letters = Counter(ex["label"] for ex in out)
    assert set(letters) == {0, 1, 2} and min(letters.values()) > 60  # ~100 each


def test_inputs_are_not_mutated_and_other_tasks_pass_through():
    examples = _examples(3)
    permute_options(MC, examples, np.random.default_rng(0))
    assert examples == _examples(3)
    sst2 = [{"sentence": "x", "label": 1}]
    assert permute_options(get_task("sst2"), sst2, np.random.default_rng(0)) == sst2


def test_shuffled_batches_are_a_function_of_seed_and_step():
    tok = WordTokenizer()
    tasks = [TrainTask(MC, _examples(40))]
    cfg = Stage1Config(tasks=("mc",), steps=10, warmup=0, batch_size=16, permute_options=True)
    plain = make_batch(dataclasses.replace(cfg, permute_options=False), tok, tasks, 3)
    a, b = make_batch(cfg, tok, tasks, 3), make_batch(cfg, tok, tasks, 3)
    for x, y in zip(a[1:], b[1:], strict=True):
        np.testing.assert_array_equal(x, y)
    assert set(plain[3]) == {0} and len(set(a[3])) > 1  # every example's answer was A
    assert not np.array_equal(a[1], plain[1])
    other = make_batch(cfg, tok, tasks, 4)
    assert not np.array_equal(a[3], other[3])

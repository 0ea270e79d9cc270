"""Fixed-shape evaluation batches: at most 2 shapes per pass, and the same predictions."""

import jax
import numpy as np
import pytest

from cbp_jax.contract import ScoreRequest
from cbp_jax.data.batching import candidate_ids, encode
from cbp_jax.data.eval_batches import batch_rows, bucket_widths, fixed_batches
from cbp_jax.data.spec import TaskSpec
from cbp_jax.methods.evaluate import predict
from cbp_jax.methods.losses import class_scores
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.model.registry import LoadedModel
from cbp_jax.service import ScoringService
from cbp_jax.service.oracle import NoPrompt

CFG = LlamaConfig(101, 48, 80, 2, 6, 2, 8)
WORDS = ["<pad>", "Text:", "Label:", "neg", "pos"] + [f"w{i}" for i in range(60)]
TOY = TaskSpec("toy", "Text: {text}\nLabel:", (("neg",), ("pos",)))


class WordTokenizer:
    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [WORDS.index(w) for w in text.split()]}


class ShapeRecorder:
    """A scoring service that remembers the shape of every request it scores."""

    def __init__(self, inner):
        self.inner, self.shapes = inner, []

    def score(self, request):
        self.shapes.append(np.shape(request.tokens_BxS))
        return self.inner.score(request)


def _examples(n, seed=0):
    """Texts of 1 to 37 filler words (five lengths), so a pass spans widths 8 to 40."""
    r = np.random.default_rng(seed)
    sizes = r.choice([1, 4, 9, 17, 37], n)
    words = [[f"w{j}" for j in r.integers(0, 60, int(k))] for k in sizes]
    return [{"text": " ".join(w), "label": int(r.integers(2))} for w in words]


@pytest.fixture(scope="module")
def service():
    model = LoadedModel(CFG, init_params(CFG, jax.random.key(0), std=0.2), None, "tiny")
    return ScoringService(model, (NoPrompt(),))


def test_batch_rows_fill_batches_evenly():
    assert batch_rows(200, 32) == 29  # 7 batches, 203 rows
    assert batch_rows(64, 32) == 32 and batch_rows(5, 32) == 5 and batch_rows(33, 32) == 17
    with pytest.raises(ValueError, match="batch_size"):
        batch_rows(10, 0)


def test_bucket_widths_split_where_padding_is_least():
    assert bucket_widths([5] * 30 + [60] * 2, rows=8) == (8, 64)
    assert bucket_widths([5] * 30 + [60] * 2, rows=8, max_buckets=1) == (64,)
    assert bucket_widths([12] * 20, rows=8) == (16,)  # one length: one width
    with pytest.raises(ValueError, match="max_buckets"):
        bucket_widths([3, 4], rows=2, max_buckets=3)
    with pytest.raises(ValueError, match="positive"):
        bucket_widths([], rows=2)


def test_fixed_batches_cover_every_example_once_in_two_shapes():
    seqs = encode(WordTokenizer(), [TOY.render(ex) for ex in _examples(37)])
    batches = list(fixed_batches(seqs, 8, pad_id=0))
    assert len({t.shape for _, t, _ in batches}) <= 2
    assert {t.shape[0] for _, t, _ in batches} == {batch_rows(37, 8)}
    seen = np.concatenate([idx for idx, _, _ in batches])
    assert sorted(seen.tolist()) == list(range(37))
    for idx, tokens, mask in batches:
        for row, i in enumerate(idx):  # real rows first, each its sequence left-padded
            assert tokens[row, mask[row] == 1].tolist() == seqs[i]
        for row in range(len(idx), tokens.shape[0]):  # copies of the batch's first row
            assert (tokens[row] == tokens[0]).all() and (mask[row] == mask[0]).all()


def test_bucketed_predictions_equal_unpadded_ones(service):
    examples, tok = _examples(37, seed=1), WordTokenizer()
    recorder = ShapeRecorder(service)
    preds = predict(recorder, tok, TOY, examples, batch_size=8)
    assert len(set(recorder.shapes)) <= 2 and len(recorder.shapes) == 5
    cands = candidate_ids(tok, TOY.label_words)
    seqs = encode(tok, [TOY.render(ex) for ex in examples])
    single = np.zeros((len(seqs), 2))
    for n in sorted({len(s) for s in seqs}):  # the examples of one length: no padding at all
        idx = [i for i, s in enumerate(seqs) if len(s) == n]
        tokens = np.array([seqs[i] for i in idx], np.int32)
        resp = service.score(ScoreRequest("none", None, tokens, np.ones_like(tokens), cands))
        single[idx] = np.asarray(class_scores(resp.logprobs_PxBxCxW[0], "logsumexp"))
    assert (np.abs(single[:, 0] - single[:, 1]) > 1e-3).all()  # no near-ties to flip
    np.testing.assert_array_equal(preds, single.argmax(-1))
    for idx, tokens, mask in fixed_batches(seqs, 8, pad_id=0):
        resp = service.score(ScoreRequest("none", None, tokens, mask, cands))
        scores = np.asarray(class_scores(resp.logprobs_PxBxCxW[0], "logsumexp"))
        np.testing.assert_allclose(scores[: len(idx)], single[idx], atol=1e-4)

"""CBP-Tuning on a tiny random model: generator, serving boundary, stage 1, stage 2, I/O."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from cbp_jax.contract import GeneratorMismatchError
from cbp_jax.data.batching import make_inputs
from cbp_jax.data.spec import TaskSpec
from cbp_jax.methods.blackbox import BlackBoxConfig
from cbp_jax.methods.cbp import customize, load_task_vector, save_task_vector, task_vector_accuracy
from cbp_jax.methods.cbp_train import Stage1Config, train_generator
from cbp_jax.methods.stage1_data import TrainTask, load_train_tasks, make_batch
from cbp_jax.model import LlamaConfig, forward, init_params, mean_pooled_embeddings
from cbp_jax.model.fingerprint import params_digest
from cbp_jax.model.registry import LoadedModel
from cbp_jax.prompts.artifact import load_generator, save_generator
from cbp_jax.prompts.generator import GeneratorConfig, PromptGenerator, generator_apply
from cbp_jax.service import MalformedRequestError, ScoreRequest, ScoreResponse
from cbp_jax.service.oracle import CBPGenerator
from cbp_jax.service.provider import cbp_service
from tests.helpers import KilledService

CFG = LlamaConfig(101, 48, 80, 3, 6, 2, 8)
GEN = GeneratorConfig(hidden_size=48, task_dims=16, bottleneck=12, prompt_len=3, init_vocab=100)
WORDS = ["<pad>", "Text:", "Label:", "neg", "pos", "good", "bad"] + [f"w{i}" for i in range(40)]


class WordTokenizer:
    """Whitespace tokenizer over a fixed word list (ids < 101), enough for the task code."""

    pad_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [WORDS.index(w) for w in text.split()]}


TOY = TaskSpec("toy", "Text: {text}\nLabel:", (("neg",), ("pos",)))
TOY2 = TaskSpec("toy2", "Text: {text}\nLabel:", (("pos",), ("neg",)))  # labels swapped


def _examples(seed, n, swap=False):
    """The label is whether "good" (1) or "bad" (0) occurs among filler words."""
    r = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = int(r.integers(2))
        words = [f"w{j}" for j in r.integers(0, 40, int(r.integers(3, 8)))]
        words.insert(int(r.integers(len(words) + 1)), "good" if label else "bad")
        out.append({"id": f"{seed}-{i}", "text": " ".join(words), "label": label ^ swap})
    return out


TASKS = (TrainTask(TOY, _examples(0, 64)), TrainTask(TOY2, _examples(1, 32, swap=True)))


def _model(seed=0):
    return LoadedModel(
        CFG, init_params(CFG, jax.random.key(seed), std=0.2), WordTokenizer(), "tiny"
    )


def _stage1(**kw):
    base = dict(
        tasks=("toy", "toy2"),
        steps=60,
        batch_size=8,
        warmup=5,
        learning_rate=1e-2,
        z0_learning_rate=3e-2,
        checkpoint_every=10,
        max_len=32,
    )
    return Stage1Config(**{**base, **kw})


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def trained(model):
    return train_generator(model, _stage1(), GEN, tasks=TASKS, progress=False)


def test_generator_module_shapes_and_init_scale(model):
    gen = PromptGenerator(GEN, rngs=nnx.Rngs(0), embed_VxD=model.params["embed"])
    state = gen.state()
    assert state["A_DxR"].shape == (48, 16)
    assert jax.tree.map(jnp.shape, state["params"]) == jax.tree.map(
        tuple, GEN.param_shapes(), is_leaf=lambda x: isinstance(x, tuple)
    )
    assert "A_DxR" not in gen.params()  # A is fixed, not a trainable nnx.Param
    pooled = mean_pooled_embeddings(model.params, jnp.array([[1, 5, 7], [2, 3, 0]]))
    z = jax.random.normal(jax.random.key(1), (16,))
    prompt = gen(pooled, z)
    assert prompt.shape == (2, GEN.prompt_len, 48)
    np.testing.assert_array_equal(prompt, generator_apply(gen.params(), state["A_DxR"], pooled, z))
    emb_std = float(jnp.std(model.params["embed"]))
    az = jax.random.normal(jax.random.key(2), (16, 200)).T @ state["A_DxR"].T
    assert 0.7 < float(jnp.std(az)) / emb_std < 1.3  # A z is on the embedding scale
    # at init the prompt is close to token embeddings (L_U bias), with an input-dependent part
    bias = state["params"]["up"]["bias"].reshape(GEN.prompt_len, 48)
    assert float(jnp.abs(prompt[0] - bias).max()) < 0.5 * emb_std
    assert not np.allclose(prompt[0], prompt[1])


def test_service_scores_equal_forward_with_generator_prompt(model, trained):
    art = trained.artifact
    service = cbp_service(model, art)
    tokens = np.array([[0, 0, 1, 5, 9, 2], [1, 6, 8, 9, 10, 2]])
    mask = (np.arange(6) >= np.array([[2], [0]])).astype(np.int32)
    cands = np.array([[3], [4]])
    z_PxR = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    resp = service.score(ScoreRequest("task_vector", z_PxR, tokens, mask, cands))
    assert resp.logprobs_PxBxCxW.shape == (3, 2, 2, 1) and resp.calls == 3
    assert (resp.examples, resp.tokens) == (6, 3 * int(mask.sum()))
    pooled = mean_pooled_embeddings(model.params, jnp.asarray(tokens), jnp.asarray(mask))
    for p in range(3):
        prompt = generator_apply(art.params, art.A_DxR, pooled, jnp.asarray(z_PxR[p]))
        logits = forward(
            model.params, CFG, jnp.asarray(tokens), jnp.asarray(mask), prompt_BxTxD=prompt
        ).logits
        want = jax.nn.log_softmax(logits, -1)[:, cands.reshape(-1)].reshape(2, 2, 1)
        np.testing.assert_allclose(resp.logprobs_PxBxCxW[p], want, atol=2e-5)
    assert not np.allclose(resp.logprobs_PxBxCxW[0], resp.logprobs_PxBxCxW[1])
    with pytest.raises(MalformedRequestError, match="must have shape"):
        service.score(ScoreRequest("task_vector", z_PxR[:, :5], tokens, mask, cands))


def test_user_side_receives_only_log_probs(model, trained):
    service = cbp_service(model, trained.artifact)
    info = service.public_info()
    assert "task_vector" in info.accepted_kinds
    assert [v for v in vars(info).values() if isinstance(v, np.ndarray | jax.Array)] == []
    assert {f.name for f in dataclasses.fields(ScoreResponse)} == {
        "logprobs_PxBxCxW",
        "calls",
        "examples",
        "tokens",
    }
    assert {f.name for f in dataclasses.fields(CBPGenerator)} == {"task_dims"}
    release = trained.artifact.release()
    arrays = {k: v for k, v in vars(release).items() if isinstance(v, np.ndarray | jax.Array)}
    assert list(arrays) == ["z0_R"] and arrays["z0_R"].shape == (16,)  # z0 only, no weights


def test_stage1_lowers_training_loss(trained):
    h = trained.history
    assert len(h) == 60 and {r["task"] for r in h} == {"toy", "toy2"}
    first = np.mean([r["loss"] for r in h[:10]])
    last = np.mean([r["loss"] for r in h[-10:]])
    assert last < 0.6 * first, (first, last)
    assert np.mean([r["acc"] for r in h[-10:]]) > 0.75  # read from the input: classes balance
    assert np.abs(trained.artifact.z0_R).max() > 0  # z0 was trained too


def _strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def _whole_and_resumed(model, cfg, run_dir, kill_at):
    """Stage 1 uninterrupted, and the same run killed after step `kill_at` then resumed."""
    whole = train_generator(model, cfg, GEN, tasks=TASKS, progress=False)

    def kill(step, _):
        if step == kill_at:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_generator(model, cfg, GEN, tasks=TASKS, run_dir=run_dir, on_step=kill, progress=False)
    resumed = train_generator(model, cfg, GEN, tasks=TASKS, run_dir=run_dir, progress=False)
    return whole, resumed


def test_stage1_resume_after_kill_equals_uninterrupted(model, tmp_path):
    cfg = _stage1(steps=9, checkpoint_every=4)
    whole, resumed = _whole_and_resumed(model, cfg, tmp_path, kill_at=7)
    for a, b in zip(
        jax.tree.leaves(whole.artifact.params),
        jax.tree.leaves(resumed.artifact.params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole.artifact.z0_R, resumed.artifact.z0_R)
    assert _strip(resumed.history) == _strip(whole.history)
    logged = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert _strip(logged) == _strip(whole.history)
    saved = load_generator(tmp_path / "generator", expected_model=model)
    assert saved.generator_id == whole.artifact.generator_id
    with pytest.raises(ValueError, match="another config"):
        train_generator(
            model,
            _stage1(steps=10, checkpoint_every=4),
            GEN,
            tasks=TASKS,
            run_dir=tmp_path,
            progress=False,
        )


def test_batches_are_a_function_of_seed_and_step():
    tok, cfg = WordTokenizer(), _stage1()
    a = make_batch(cfg, tok, TASKS, 5)
    b = make_batch(cfg, tok, TASKS, 5)
    c = make_batch(dataclasses.replace(cfg, seed=1), tok, TASKS, 5)
    assert all(np.array_equal(x, y) for x, y in zip(a[1:], b[1:], strict=True)) and a[0] == b[0]
    assert a[1].shape[1] % cfg.pad_to == 0
    assert not all(np.array_equal(x, y) for x, y in zip(a[1:], c[1:], strict=True))


def test_generator_and_task_vector_reload_bit_for_bit(model, trained, tmp_path):
    art = trained.artifact
    save_generator(tmp_path / "gen", art)
    back = load_generator(tmp_path / "gen", expected_model=model)
    for a, b in zip(jax.tree.leaves(art.params), jax.tree.leaves(back.params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(art.A_DxR, back.A_DxR)
    np.testing.assert_array_equal(art.z0_R, back.z0_R)
    assert back.cfg == GEN and back.generator_id == art.generator_id
    release = art.release()
    z = np.random.default_rng(3).normal(size=16).astype(np.float32)
    save_task_vector(tmp_path / "z", z, task="toy", release=release, extra={"dev_acc": 0.5})
    tv = load_task_vector(tmp_path / "z", release=release, task="toy")
    np.testing.assert_array_equal(tv.z_R, z)
    assert tv.z_R.dtype == np.float32 and tv.meta["dev_acc"] == 0.5


def test_generator_for_another_model_is_refused(trained, tmp_path):
    save_generator(tmp_path / "gen", trained.artifact)
    other = _model(seed=1)  # same shapes, other weights
    with pytest.raises(GeneratorMismatchError, match="different embedding weights"):
        load_generator(tmp_path / "gen", expected_model=other)
    with pytest.raises(GeneratorMismatchError):
        cbp_service(other, trained.artifact)
    wider = LoadedModel(CFG.replace(hidden_size=64, num_heads=8, num_kv_heads=2), {}, None, "w")
    wider = dataclasses.replace(wider, params={"embed": jnp.zeros((101, 64))})
    with pytest.raises(GeneratorMismatchError, match="hidden_size=48"):
        load_generator(tmp_path / "gen", expected_model=wider)


def test_stage2_resumes_and_saved_vector_reproduces_accuracy(model, trained, tmp_path):
    tok, art = model.tokenizer, trained.artifact
    release = art.release()
    train_ex, dev_ex = _examples(10, 8), _examples(11, 8)
    train, dev = make_inputs(tok, TOY, train_ex), make_inputs(tok, TOY, dev_ex)
    bb = BlackBoxConfig(population=4, budget=40, chunk=2, sigma0=0.5, buckets=1)

    def run(service, run_dir=None):
        return customize(service, release, train, dev, bb, run_dir=run_dir, progress=False)

    whole = run(cbp_service(model, art, budget=40))
    assert whole.generations >= 6 and whole.calls_used <= 40
    assert whole.calls_used == whole.generations * 4 + whole.dev_calls
    with pytest.raises(KeyboardInterrupt):
        run(KilledService(cbp_service(model, art, budget=40), die_at=2), tmp_path / "es")
    resumed = run(cbp_service(model, art, budget=40), tmp_path / "es")
    np.testing.assert_array_equal(resumed.best_z, whole.best_z)
    assert resumed.history == whole.history

    save_task_vector(tmp_path / "z", whole.best_z, task="toy", release=release)
    z = load_task_vector(tmp_path / "z", release=release, task="toy").z_R
    evaluator = cbp_service(model, art)
    acc = task_vector_accuracy(evaluator, tok, TOY, dev_ex, z, release.task_dims)
    assert acc == task_vector_accuracy(evaluator, tok, TOY, dev_ex, whole.best_z, 16)
    assert acc == pytest.approx(whole.best_dev_acc)


def test_bad_inputs_raise(model, trained, tmp_path, monkeypatch):
    release = trained.artifact.release()
    service = cbp_service(model, trained.artifact)
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        task_vector_accuracy(service, model.tokenizer, TOY, _examples(0, 4), np.zeros(15), 16)
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        save_task_vector(tmp_path / "z", np.zeros((1, 16)), task="toy", release=release)
    save_task_vector(tmp_path / "z", np.zeros(16, np.float32), task="toy", release=release)
    with pytest.raises(ValueError, match="not 'toy2'"):
        load_task_vector(tmp_path / "z", task="toy2")
    other = dataclasses.replace(release, generator_id="0" * 16)
    with pytest.raises(GeneratorMismatchError, match="tuned for generator"):
        load_task_vector(tmp_path / "z", release=other)
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "nothing")
    with pytest.raises(KeyError, match="unknown task 'no_such_task'"):
        load_train_tasks(("no_such_task",))
    with pytest.raises(ValueError, match="do not match"):
        train_generator(model, _stage1(tasks=("toy",)), GEN, tasks=TASKS, progress=False)
    with pytest.raises(ValueError, match="hidden_size"):
        train_generator(model, _stage1(), dataclasses.replace(GEN, hidden_size=32), tasks=TASKS)
    for bad in (dict(steps=0), dict(warmup=60), dict(sampling="x"), dict(tasks=())):
        with pytest.raises(ValueError):
            _stage1(**bad)
    with pytest.raises(ValueError):
        GeneratorConfig(hidden_size=48, task_dims=0)
    with pytest.raises(ValueError):
        CBPGenerator(task_dims=-1)
    with pytest.raises(ValueError, match="task_vector"):
        from cbp_jax.service import ScoringService

        customize(
            ScoringService(model),
            release,
            *[make_inputs(model.tokenizer, TOY, _examples(0, 4))] * 2,
            BlackBoxConfig(population=4),
            progress=False,
        )


def test_stage1_reads_train_pools_only(monkeypatch):
    import cbp_jax.data.splits as splits

    calls = []

    def fake_load(name, split, *a, **k):
        calls.append((name, split))
        return [{"id": "1", "sentence": "fine", "label": 1}]

    monkeypatch.setattr(splits, "load_examples", fake_load)
    tasks = load_train_tasks(("sst2", "financial_phrasebank"))
    assert calls == [("sst2", "train"), ("financial_phrasebank", "train")]
    assert [t.spec.name for t in tasks] == ["sst2", "financial_phrasebank"]


def test_per_task_vectors_fit_tasks_that_one_shared_z0_cannot(model):
    """Two tasks with the same examples and template but opposite labels: nothing in the
    input tells them apart, so one shared z0 stays at chance on their mix, while each task's
    own vector can flip the answer. The release's z0 is the vectors' mean."""
    flipped = TaskSpec("toy_flipped", TOY.template, TOY.label_words)
    examples = _examples(0, 64)
    opposite = [{**ex, "label": 1 - ex["label"]} for ex in examples]
    tasks = (TrainTask(TOY, examples), TrainTask(flipped, opposite))
    kw = dict(tasks=("toy", "toy_flipped"), steps=80, sampling="round_robin")
    shared = train_generator(model, _stage1(**kw), GEN, tasks=tasks, progress=False)
    per_task = train_generator(
        model, _stage1(**kw, task_vectors=True), GEN, tasks=tasks, progress=False
    )
    acc = {
        name: np.mean([r["acc"] for r in res.history[-20:]])
        for name, res in (("shared", shared), ("per_task", per_task))
    }
    assert acc["per_task"] > 0.8 and acc["shared"] < 0.6, acc
    vectors = per_task.artifact.info["task_vectors"]
    z_TxR = np.array([vectors["toy"], vectors["toy_flipped"]], np.float32)
    assert np.abs(z_TxR[0] - z_TxR[1]).max() > 0
    np.testing.assert_allclose(per_task.artifact.z0_R, z_TxR.mean(axis=0), rtol=1e-6)
    assert per_task.artifact.release().z0_R.shape == (GEN.task_dims,)


def test_per_task_vectors_resume_after_kill(model, tmp_path):
    cfg = _stage1(steps=9, checkpoint_every=4, task_vectors=True)
    whole, resumed = _whole_and_resumed(model, cfg, tmp_path, kill_at=6)
    np.testing.assert_array_equal(whole.artifact.z0_R, resumed.artifact.z0_R)
    assert whole.artifact.info["task_vectors"] == resumed.artifact.info["task_vectors"]


def test_params_digest_is_exact_content_and_shape():
    a = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    assert params_digest(a) == params_digest(jax.tree.map(np.copy, a))
    # values, not storage: the same numbers held in bf16 hash alike
    assert params_digest(a) == params_digest(jax.tree.map(lambda x: x.astype(jnp.bfloat16), a))
    nudged = jax.tree.map(np.copy, a)
    nudged["w"][0, 0] += 1e-6
    assert params_digest(nudged) != params_digest(a)
    assert params_digest({"w": a["w"].reshape(3, 2), "b": a["b"]}) != params_digest(a)

"""RAPT: d_chi privatizer (Gamma noise norms, isotropy, chunked NN), reconstruction, attacks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from cbp_jax.data.tasks import get_task
from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.privacy import (
    count_attack,
    encode_private,
    fit_count_attack,
    identity_attack,
    nearest_ids,
    nearest_public_attack,
    privatize_ids,
    privatize_text,
    recovery_rate,
    sample_noise,
)
from cbp_jax.privacy.peft import PeftConfig, head_targets, init_head, plain_hidden
from cbp_jax.privacy.rapt import RAPTConfig, train_step

D, ETA, N = 48, 10.0, 20000
PC = PeftConfig("prompt", length=3)


@pytest.fixture(scope="module")
def small():
    cfg = LlamaConfig(101, 48, 80, 3, 6, 2, 8)
    return cfg, init_params(cfg, jax.random.key(0), std=0.2)


@pytest.fixture(scope="module")
def noise_NxD():
    return np.asarray(sample_noise(jax.random.key(1), N, D, ETA), np.float64)


def test_noise_norms_follow_gamma(noise_NxD):
    norms = np.linalg.norm(noise_NxD, axis=1)
    right = stats.kstest(norms, stats.gamma(a=D, scale=1 / ETA).cdf)
    assert right.pvalue > 1e-3, right
    # the same test rejects a wrong Gamma shape or scale, so it has power
    for wrong in (stats.gamma(a=D + 5, scale=1 / ETA), stats.gamma(a=D, scale=1.2 / ETA)):
        assert stats.kstest(norms, wrong.cdf).pvalue < 1e-6


def test_noise_directions_isotropic(noise_NxD):
    u = noise_NxD / np.linalg.norm(noise_NxD, axis=1, keepdims=True)
    assert np.abs(u.mean(0)).max() < 6 / np.sqrt(D * N)
    cov = u.T @ u / N
    assert np.abs(cov - np.eye(D) / D).max() < 10 / (D * np.sqrt(N))
    # a non-isotropic sampler (unit cube directions) fails the covariance check on the diagonal
    cube = np.random.default_rng(0).uniform(0, 1, (N, D))
    cube /= np.linalg.norm(cube, axis=1, keepdims=True)
    assert np.abs(cube.T @ cube / N - np.eye(D) / D).max() > 10 / (D * np.sqrt(N))


def _ids(small, b=20, s=50, seed=3):
    cfg, _ = small
    return np.random.default_rng(seed).integers(0, cfg.vocab_size, (b, s)).astype(np.int32)


def test_keys_determinism_and_identity_at_inf(small):
    _, params = small
    ids, emb = _ids(small), params["embed"]
    a = privatize_ids(jax.random.key(5), emb, ids, eta=20.0)
    b = privatize_ids(jax.random.key(5), emb, ids, eta=20.0)
    c = privatize_ids(jax.random.key(6), emb, ids, eta=20.0)
    np.testing.assert_array_equal(a, b)
    assert (np.asarray(a) != np.asarray(c)).mean() > 0.1
    assert (np.asarray(a) != ids).mean() > 0.1  # eta=20: the noise really changes tokens
    np.testing.assert_array_equal(privatize_ids(jax.random.key(5), emb, ids, eta=jnp.inf), ids)


def test_unchanged_fraction_rises_with_eta(small):
    _, params = small
    ids = _ids(small)
    fracs = [
        float(
            (
                np.asarray(privatize_ids(jax.random.key(7), params["embed"], ids, eta=e)) == ids
            ).mean()
        )
        for e in (5.0, 10.0, 15.0, 20.0, 1000.0)
    ]
    assert all(x < y for x, y in zip(fracs, fracs[1:], strict=False)), fracs
    assert fracs[0] < 0.2 and fracs[-1] == 1.0, fracs


def test_padding_and_protected_untouched(small):
    _, params = small
    ids = _ids(small)
    mask = np.ones_like(ids)
    mask[:, :10] = 0
    protected = (0, 1, 2)
    ids[:, 20] = 1
    out = np.asarray(
        privatize_ids(jax.random.key(8), params["embed"], ids, mask, 2.0, protected_ids=protected)
    )
    blocked = np.asarray(  # 20 rows in blocks of 2 rows: same guarantees
        privatize_ids(
            jax.random.key(8), params["embed"], ids, mask, 2.0, protected_ids=protected,
            max_tokens=100,
        )
    )  # fmt: skip
    assert (blocked != out).any()  # blocks draw their own noise
    for res in (out, blocked):
        np.testing.assert_array_equal(res[:, :10], ids[:, :10])
        np.testing.assert_array_equal(res[:, 20], ids[:, 20])
        free = (mask > 0) & ~np.isin(ids, protected)
        assert (res[free] != ids[free]).mean() > 0.5  # strong noise changes the rest
        assert not np.isin(res[free], protected).any()  # and never produces special tokens


@pytest.mark.parametrize("chunk", [1, 7, 32, 101, 4096])
def test_chunked_nearest_equals_brute_force(chunk):
    rng = np.random.default_rng(chunk)
    e_VxD = rng.normal(size=(101, 16)).astype(np.float32)
    y_NxD = rng.normal(size=(300, 16)).astype(np.float32)
    banned = np.zeros(101, bool)
    banned[[3, 50]] = True
    d = ((y_NxD[:, None, :].astype(np.float64) - e_VxD[None]) ** 2).sum(-1)
    d[:, banned] = np.inf
    got = nearest_ids(jnp.asarray(y_NxD), jnp.asarray(e_VxD), jnp.asarray(banned), chunk=chunk)
    np.testing.assert_array_equal(np.asarray(got), d.argmin(1))


def test_reconstruction_loss_falls(small):
    cfg, params = small
    b, s, m = 8, 12, 4
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(3, cfg.vocab_size, (b, s)), jnp.int32)
    mask_np = np.ones((b, s), np.int32)
    mask_np[:2, :3] = 0  # two left-padded rows: plain tokens start later there
    mask = jnp.asarray(mask_np)
    plain = np.array([10, 11, 12, 10], np.int32)
    tokens = tokens.at[:, :m].set(plain)
    tokens = tokens.at[:2, 3 : 3 + m].set(plain)
    np.testing.assert_array_equal(
        plain_hidden(tokens[..., None], mask, m)[..., 0], np.broadcast_to(plain, (b, m))
    )
    targets, k = head_targets(plain, "plain", cfg.vocab_size)
    assert k == 3 and targets.tolist() == [0, 1, 2, 0]
    train = {
        "peft": {"prompt_TxD": params["embed"][:3].astype(jnp.float32)},
        "head": init_head(jax.random.key(1), cfg.hidden_size, 8, k),
    }
    opt = optax.adam(1e-2)
    state = opt.init(train)
    cands, labels = jnp.asarray([[4], [5]], jnp.int32), jnp.asarray([0, 1] * 4, jnp.int32)
    recs = []
    for _ in range(15):
        batch = (tokens, mask, cands, labels, tokens, mask, jnp.asarray(targets))
        train, state, (_, rec) = train_step(
            train, state, params, cfg, opt, PC, "plain_before", True, batch, 1.0
        )
        recs.append(float(rec))
    assert recs[-1] < 0.5 * recs[0], recs


def test_attacks_and_recovery_rate(small):
    _, params = small
    emb = params["embed"]
    rng = np.random.default_rng(1)
    common = rng.choice(101, 10, replace=False)  # skewed text: 10 frequent tokens
    public, private = (rng.choice(common, (20, 50)).astype(np.int32) for _ in range(2))
    mask = np.ones_like(private)
    assert recovery_rate(private, identity_attack(private), mask) == 1.0
    priv = np.asarray(privatize_ids(jax.random.key(9), emb, private, mask, 10.0))
    ident = recovery_rate(private, identity_attack(priv), mask)
    np.testing.assert_allclose(ident, (priv == private).mean())
    assert ident < 0.5  # eta=10 hides most tokens from the naive attacker
    near = nearest_public_attack(emb, priv, np.unique(public))
    assert np.isin(near, common).all()
    seen = np.isin(priv, public)
    np.testing.assert_array_equal(near[seen], priv[seen])  # distance 0 to itself
    guess_V = fit_count_attack(jax.random.key(10), emb, public, np.ones_like(public), 10.0)
    assert np.isin(guess_V[np.unique(priv)], common).mean() > 0.5
    learned = recovery_rate(private, count_attack(guess_V, priv), mask)
    assert learned > ident + 0.05, (learned, ident)  # the public prior is learned
    with pytest.raises(ValueError, match="empty"):
        recovery_rate(private, priv, np.zeros_like(mask))


@pytest.mark.parametrize("eta", [0.0, -1.0, float("nan")])
def test_bad_eta(small, eta):
    _, params = small
    with pytest.raises(ValueError, match="eta"):
        privatize_ids(jax.random.key(0), params["embed"], _ids(small), eta=eta)
    with pytest.raises(ValueError, match="eta"):
        sample_noise(jax.random.key(0), 4, D, eta)
    with pytest.raises(ValueError, match="eta"):
        RAPTConfig(eta=eta)


def test_bad_ids_and_config(small):
    _, params = small
    with pytest.raises(ValueError, match=r"\[0, 101\)"):
        privatize_ids(jax.random.key(0), params["embed"], np.array([[1, 101]]), eta=1.0)
    with pytest.raises(ValueError, match=r"\[0, 101\)"):
        privatize_ids(jax.random.key(0), params["embed"], np.array([[-1, 3]]), eta=1.0)
    with pytest.raises(ValueError, match="num_plain_tokens"):
        RAPTConfig(num_plain_tokens=0, placement="plain_before")
    with pytest.raises(ValueError, match="placement"):
        RAPTConfig(placement="after")
    with pytest.raises(ValueError, match="PEFT kind"):
        RAPTConfig(peft="adapters")
    with pytest.raises(ValueError, match="head_vocab"):
        RAPTConfig(head_vocab="some")


def test_privatize_text_real_tokenizer(real_model):
    tok, emb = real_model.tokenizer, real_model.params["embed"]
    texts = ["a truly wonderful film<|endoftext|>", "the worst plot"]
    key = jax.random.key(0)
    assert privatize_text(key, tok, emb, texts, jnp.inf) == texts
    noisy = privatize_text(key, tok, emb, texts, 1.0)
    assert noisy[0].endswith("<|endoftext|>") and noisy != texts
    for bad in ([""], [], ["ok", "  "]):
        with pytest.raises(ValueError, match="empty"):
            privatize_text(key, tok, emb, bad, 1.0)
    # only the user's field tokens are private: the template stays plain
    task = get_task("sst2")
    tokens, mask, private = encode_private(tok, task, [{"sentence": "great", "label": 1}], [5, 6])
    real = tokens[mask > 0]
    text = tok.decode(real[private[mask > 0] == 0])
    assert text == "Review:\nSentiment (positive or negative):", text
    assert real[:2].tolist() == [5, 6] and tok.decode(real[private[mask > 0] > 0][2:]) == " great"

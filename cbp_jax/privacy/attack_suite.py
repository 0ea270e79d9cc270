"""Every attack on d_chi-privatized text at one noise level, fitted on public text only.

RAPT's privacy evaluation (docs/methods.md, RAPT; issue 27): the user privatizes the private test
text at `eta`, and the adversary, who holds PUBLIC text of another task privatized at the
same eta, tries to recover or infer what was private:
- token inversion of the privatized ids x'_t: `identity_attack` (x'_t itself: the token
  nearest to e(x_t) + z is most often x_t when eta is large); `nearest_public_attack`
  (argmin_{w in P} ||e(w) - e(x'_t)|| over the tokens P seen in public text: rare privatized
  tokens map back to common ones); `fit_count_attack` (counts n(x', x) of public pairs
  privatized at the same eta, guess argmax_x n(x', x), the MAP classifier under the public
  token prior; unseen x' fall back to the identity);
- on the service's view, the final hidden states h(x')_t (RAPT, section 5): embedding
  inversion (`fit_inversion` / `invert`, after Song & Raghunathan 2020: a softmax-regression
  head h_t -> x_t over the tokens seen in public text, trained on (h(x')_t, x_t) pairs), and
  attribute inference (`fit_attribute` / `attribute_auc`: a logistic regression on the mean
  hidden state over a text's private positions predicts whether the ORIGINAL text contains a
  digit, `has_digit`).
Token recovery rates (`recovery_rate`) are over private positions only (padding, template and
special tokens excluded); the attribute score is a ROC AUC.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cbp_jax.loop import optax_step
from cbp_jax.model.decoder import forward
from cbp_jax.post.audit import auc_lower_is_member
from cbp_jax.privacy.dchi import nearest_ids, privatize_ids
from cbp_jax.privacy.inputs import encode_private

TOKEN_ATTACKS = ("identity", "nearest_public", "learned", "representation inversion")


def recovery_rate(orig_ids, guess_ids, mask) -> float:
    """Fraction of masked (private) tokens whose guess equals the original."""
    mask = np.asarray(mask) > 0
    if not mask.any():
        raise ValueError("recovery rate of no tokens: the mask is empty")
    return float((np.asarray(orig_ids) == np.asarray(guess_ids))[mask].mean())


def identity_attack(priv_ids):
    """Guess that each privatized token is the original."""
    return np.asarray(priv_ids)


def public_vocab(public_ids, public_mask) -> np.ndarray:
    """Sorted distinct ids at masked positions of public text."""
    return np.unique(np.asarray(public_ids)[np.asarray(public_mask) > 0]).astype(np.int32)


def nearest_public_attack(
    embed_VxD, priv_ids, public_ids_P, chunk: int = 4096, max_tokens: int = 8192
):
    """Guess the public token whose embedding is nearest to the privatized token's."""
    priv = np.asarray(priv_ids)
    public = jnp.asarray(public_ids_P, jnp.int32)
    if public.size == 0:
        raise ValueError("nearest_public_attack needs a non-empty public vocabulary")
    e_PxD = jnp.take(embed_VxD, public, axis=0)
    flat_N, banned_P = priv.reshape(-1), jnp.zeros((public.size,), bool)
    out_N = np.empty_like(flat_N)
    for s in range(0, flat_N.size, max_tokens):  # bounded N x chunk distance blocks
        y_NxD = jnp.take(embed_VxD, jnp.asarray(flat_N[s : s + max_tokens]), axis=0)
        out_N[s : s + max_tokens] = public[nearest_ids(y_NxD, e_PxD, banned_P, chunk=chunk)]
    return out_N.reshape(priv.shape)


def fit_count_attack(
    key,
    embed_VxD,
    public_ids,
    public_mask,
    eta,
    *,
    draws: int = 4,
    protected_ids=(),
    chunk: int = 4096,
) -> np.ndarray:
    """Guess table guess_V (privatized id -> guessed original) from public (x, x') pairs.

    `draws` independent privatizations of the public text give the pairs.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    v = embed_VxD.shape[0]
    mask = np.asarray(public_mask) > 0
    orig = np.asarray(public_ids)
    pairs = []
    for k in jax.random.split(key, draws):
        priv = np.asarray(
            privatize_ids(k, embed_VxD, orig, mask, eta, protected_ids=protected_ids, chunk=chunk)
        )
        pairs.append(priv[mask].astype(np.int64) * v + orig[mask])
    codes, counts = np.unique(np.concatenate(pairs), return_counts=True)
    priv_c, orig_c = codes // v, codes % v
    order = np.lexsort((orig_c, -counts, priv_c))  # per x': most counts, then smallest x
    priv_c, orig_c = priv_c[order], orig_c[order]
    first = np.r_[True, priv_c[1:] != priv_c[:-1]]
    guess_V = np.arange(v, dtype=np.int32)
    guess_V[priv_c[first]] = orig_c[first]
    return guess_V


def count_attack(guess_V, priv_ids):
    """Apply a fitted guess table to privatized ids."""
    return np.asarray(guess_V)[np.asarray(priv_ids)]


@functools.partial(jax.jit, static_argnames="cfg")
def _hidden(params, cfg, tokens, mask):
    return forward(params, cfg, tokens, mask, return_hidden=True).hidden_BxSxD


def service_hidden(params, cfg, tokens_BxS, mask_BxS, batch_size: int = 16) -> np.ndarray:
    """Final hidden states B x S x D the service computes from the (privatized) tokens."""
    out = []
    for s in range(0, len(tokens_BxS), batch_size):
        t = jnp.asarray(tokens_BxS[s : s + batch_size], jnp.int32)
        out.append(np.asarray(_hidden(params, cfg, t, jnp.asarray(mask_BxS[s : s + batch_size]))))
    return np.concatenate(out)


def _logits(model, x_NxF):
    return ((jnp.asarray(x_NxF, jnp.float32) - model["mu"]) / model["sd"]) @ model["w"] + model["b"]


def _fit(x_NxF, y_N, k, steps, lr, batch, seed):
    """Softmax regression F -> k classes (standardized features) with Adam; a `_logits` model."""
    x = jnp.asarray(x_NxF, jnp.float32)
    y = jnp.asarray(y_N, jnp.int32)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    theta = {"w": jnp.zeros((x.shape[1], k)), "b": jnp.zeros((k,))}
    opt = optax.adam(lr)

    def loss(th, xb, yb):
        logp = jax.nn.log_softmax(_logits({**th, "mu": mu, "sd": sd}, xb))
        return -jnp.take_along_axis(logp, yb[:, None], 1).mean()

    step = jax.jit(lambda theta, state, xb, yb: optax_step(loss, opt)(theta, state, xb, yb)[:2])
    state, rng = opt.init(theta), np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, x.shape[0], min(batch, x.shape[0]))
        theta, state = step(theta, state, x[idx], y[idx])
    return {**theta, "mu": mu, "sd": sd}


def fit_inversion(hidden_BxSxD, orig_BxS, private_BxS, steps=300, lr=1e-2, batch=1024, seed=0):
    """Inversion head fitted on public (h(x')_t, x_t) at private positions."""
    m = np.asarray(private_BxS) > 0
    if not m.any():
        raise ValueError("no private positions to fit the inversion on")
    vocab, y = np.unique(np.asarray(orig_BxS)[m], return_inverse=True)
    model = _fit(np.asarray(hidden_BxSxD)[m], y, len(vocab), steps, lr, batch, seed)
    return {**model, "vocab": jnp.asarray(vocab, jnp.int32)}


def invert(model, hidden_BxSxD) -> np.ndarray:
    """Guessed original token ids B x S."""
    h = np.asarray(hidden_BxSxD)
    guess = np.asarray(model["vocab"])[
        np.asarray(_logits(model, h.reshape(-1, h.shape[-1])).argmax(-1))
    ]
    return guess.reshape(h.shape[:2])


def has_digit(texts) -> np.ndarray:
    """The attribute: 1 if the original text contains a digit."""
    return np.array([any(c.isdigit() for c in t) for t in texts], np.int32)


def pooled(hidden_BxSxD, private_BxS) -> np.ndarray:
    """Mean hidden state over each row's private positions, B x D."""
    w = (np.asarray(private_BxS) > 0).astype(np.float32)[..., None]
    return (np.asarray(hidden_BxSxD) * w).sum(1) / np.maximum(w.sum(1), 1.0)


def fit_attribute(features_BxD, attr_B, steps=300, lr=1e-2, seed=0):
    """Logistic regression (2-class softmax) on public features."""
    attr = np.asarray(attr_B)
    if len(np.unique(attr)) < 2:
        raise ValueError("the attribute takes one value on the public text: nothing to learn")
    return _fit(features_BxD, attr, 2, steps, lr, 256, seed)


def attribute_auc(model, features_BxD, attr_B) -> float:
    """AUC of the attacker's P(attribute = 1) on the private texts (ties 1/2)."""
    attr = np.asarray(attr_B) > 0
    if attr.all() or not attr.any():
        raise ValueError("AUC needs private texts with and without the attribute")
    logits = np.asarray(_logits(model, features_BxD))
    s = logits[:, 1] - logits[:, 0]
    return auc_lower_is_member(-s[attr], -s[~attr])


def example_text(task, example) -> str:
    """An example's input fields joined: the text whose attributes the adversary infers."""
    return " ".join(str(example[f]) for f in task.fields)


@dataclasses.dataclass(frozen=True)
class PublicText:
    """The adversary's public text, encoded as the user encodes private text (N x S)."""

    ids_NxS: np.ndarray
    mask_NxS: np.ndarray
    private_NxS: np.ndarray
    texts: tuple[str, ...]


def public_text(tokenizer, task_name: str, size: int, seed: int = 0) -> PublicText:
    """`size` examples of `task_name`'s train pool, drawn without replacement by `seed`."""
    from cbp_jax.data.splits import train_pool
    from cbp_jax.data.tasks import get_task

    task, pool = get_task(task_name), train_pool(task_name)
    if not 0 < size <= len(pool):
        raise ValueError(f"public size {size} must be in 1..{len(pool)} ({task_name} train pool)")
    pick = np.random.default_rng(seed).choice(len(pool), size, replace=False)
    examples = [pool[i] for i in pick]
    ids, mask, private = encode_private(tokenizer, task, examples)
    return PublicText(ids, mask, private, tuple(example_text(task, ex) for ex in examples))


def attack_rates(model, task, test, public: PublicText, eta: float, key, draws: int) -> dict:
    """Each attack's success on `test` privatized at `eta`: token recovery rates (keys
    TOKEN_ATTACKS) and "attribute AUC" (None when every test text has, or lacks, a digit).
    draws: privatizations of the public text the count table is fitted on."""
    k_priv, k_fit, k_pub = jax.random.split(key, 3)
    params, mcfg, tok = model.params, model.cfg, model.tokenizer
    emb, special = params["embed"], tuple(tok.all_special_ids)
    ids, mask, private = encode_private(tok, task, test)
    priv = np.asarray(privatize_ids(k_priv, emb, ids, private, eta, protected_ids=special))
    pub_ids, pub_private = public.ids_NxS, public.private_NxS
    guess_v = fit_count_attack(
        k_fit, emb, pub_ids, pub_private, eta, draws=draws, protected_ids=special
    )
    guesses = {
        "identity": identity_attack(priv),
        "nearest_public": nearest_public_attack(emb, priv, public_vocab(pub_ids, pub_private)),
        "learned": count_attack(guess_v, priv),
    }
    pub_priv = np.asarray(
        privatize_ids(k_pub, emb, pub_ids, pub_private, eta, protected_ids=special)
    )
    h_pub = service_hidden(params, mcfg, pub_priv, public.mask_NxS)
    h_test = service_hidden(params, mcfg, priv, mask)
    inv = fit_inversion(h_pub, pub_ids, pub_private)
    guesses["representation inversion"] = invert(inv, h_test)
    out = {a: recovery_rate(ids, g, private) for a, g in guesses.items()}
    model_attr = fit_attribute(pooled(h_pub, pub_private), has_digit(list(public.texts)))
    test_attr = has_digit([example_text(task, ex) for ex in test])
    feats = pooled(h_test, private)
    ok = 0 < test_attr.sum() < len(test_attr)
    out["attribute AUC"] = attribute_auc(model_attr, feats, test_attr) if ok else None
    return out

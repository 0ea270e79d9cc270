"""Every attack on d_chi-privatized text at one noise level, fitted on public text only.

RAPT's privacy evaluation (docs/methods.md, RAPT; issue 27): the user privatizes the private test
text at `eta`, and the adversary, who holds PUBLIC text of another task privatized at the
same eta, tries to recover or infer what was private:
- token inversion of the privatized ids: identity (the noisy token is the original), the
  nearest public token, and a count table learned from public (noisy -> original) pairs;
- embedding inversion of the hidden states the service computes on the privatized text;
- attribute inference from those hidden states (does the original text contain a digit?).
Token recovery rates are over private positions only; the attribute score is a ROC AUC.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from cbp_jax.data.splits import train_pool
from cbp_jax.data.tasks import get_task
from cbp_jax.privacy import attacks, rep_attacks
from cbp_jax.privacy.dchi import privatize_ids
from cbp_jax.privacy.inputs import encode_private

TOKEN_ATTACKS = ("identity", "nearest_public", "learned", "representation inversion")


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
    guess_v = attacks.fit_count_attack(
        k_fit, emb, pub_ids, pub_private, eta, draws=draws, protected_ids=special
    )
    guesses = {
        "identity": attacks.identity_attack(priv),
        "nearest_public": attacks.nearest_public_attack(
            emb, priv, attacks.public_vocab(pub_ids, pub_private)
        ),
        "learned": attacks.count_attack(guess_v, priv),
    }
    pub_priv = np.asarray(
        privatize_ids(k_pub, emb, pub_ids, pub_private, eta, protected_ids=special)
    )
    h_pub = rep_attacks.service_hidden(params, mcfg, pub_priv, public.mask_NxS)
    h_test = rep_attacks.service_hidden(params, mcfg, priv, mask)
    inv = rep_attacks.fit_inversion(h_pub, pub_ids, pub_private)
    guesses["representation inversion"] = rep_attacks.invert(inv, h_test)
    out = {a: attacks.recovery_rate(ids, g, private) for a, g in guesses.items()}
    model_attr = rep_attacks.fit_attribute(
        rep_attacks.pooled(h_pub, pub_private), rep_attacks.has_digit(list(public.texts))
    )
    test_attr = rep_attacks.has_digit([example_text(task, ex) for ex in test])
    feats = rep_attacks.pooled(h_test, private)
    ok = 0 < test_attr.sum() < len(test_attr)
    out["attribute AUC"] = rep_attacks.attribute_auc(model_attr, feats, test_attr) if ok else None
    return out

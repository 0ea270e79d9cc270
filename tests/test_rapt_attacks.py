"""RAPT's attacks on the service's representation: embedding inversion of hidden states and
attribute inference recover much with no noise and little under strong noise."""

import jax
import numpy as np
import pytest

from cbp_jax.model import LlamaConfig, init_params
from cbp_jax.privacy import attack_suite as ra
from cbp_jax.privacy import privatize_ids, recovery_rate

CFG = LlamaConfig(101, 48, 80, 2, 6, 2, 8)


@pytest.fixture(scope="module")
def model():
    return init_params(CFG, jax.random.key(0), std=0.2)


def _text(seed, n=96, s=10):
    """Token ids 1..60; the attribute: does the text hold token 7."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 61, (n, s)).astype(np.int32)
    ids[rng.random(n) < 0.5, 0] = 7
    return ids, np.ones_like(ids), (ids == 7).any(1).astype(np.int32)


def _attacks(model, eta, key):
    pub, mask, pub_attr = _text(1)
    test, _, test_attr = _text(2, n=48)
    k1, k2 = jax.random.split(key)
    pub_p = np.asarray(privatize_ids(k1, model["embed"], pub, mask, eta))
    test_p = np.asarray(privatize_ids(k2, model["embed"], test, np.ones_like(test), eta))
    h_pub = ra.service_hidden(model, CFG, pub_p, mask)
    h_test = ra.service_hidden(model, CFG, test_p, np.ones_like(test))
    inv = ra.fit_inversion(h_pub, pub, mask, steps=200)
    rec = recovery_rate(test, ra.invert(inv, h_test), np.ones_like(test))
    attr = ra.fit_attribute(ra.pooled(h_pub, mask), pub_attr, steps=200)
    return rec, ra.attribute_auc(attr, ra.pooled(h_test, np.ones_like(test)), test_attr)


def test_representation_attacks_weaken_with_noise(model):
    rec_clear, auc_clear = _attacks(model, np.inf, jax.random.key(0))
    rec_noisy, auc_noisy = _attacks(model, 0.5, jax.random.key(0))
    # chance is 1/60: a linear read-out of 960 public tokens recovers a third of clear text
    assert rec_clear > 0.2 and rec_clear > rec_noisy + 0.15, (rec_clear, rec_noisy)
    assert auc_clear > 0.7 and auc_clear > auc_noisy + 0.2, (auc_clear, auc_noisy)


def test_attribute_helpers_and_bad_input():
    assert ra.has_digit(["no digits", "EUR 3 mn", ""]).tolist() == [0, 1, 0]
    h = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    np.testing.assert_allclose(ra.pooled(h, np.array([[0, 1, 1]])), [[6.0, 7.0, 8.0, 9.0]])
    with pytest.raises(ValueError, match="one value"):
        ra.fit_attribute(np.zeros((4, 3)), np.ones(4))
    with pytest.raises(ValueError, match="no private positions"):
        ra.fit_inversion(np.zeros((1, 2, 3)), np.zeros((1, 2), int), np.zeros((1, 2)))

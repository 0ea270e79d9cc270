"""k-shot sampling: k per class, seeded, and never overlapping the test set."""

import collections

import pytest

from cbp_jax.data.pools import content_key
from cbp_jax.data.sources import SOURCES
from cbp_jax.data.splits import class_allocation, kshot_splits, test_pool, train_pool
from cbp_jax.data.tasks import get_task, task_names


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CBP_JAX_TFDS_DIR", str(tmp_path_factory.getbasetemp() / "tfds_cache"))
        mp.delenv("CBP_JAX_DATA_DIR", raising=False)
        yield


def ids(examples):
    return [ex["id"] for ex in examples]


@pytest.mark.parametrize("name", task_names())
def test_kshot_train_dev_test_never_overlap(name):
    k = 8
    splits = kshot_splits(name, shots_per_class=k, seed=3, test_size=40)
    n = get_task(name).num_classes
    for part in (splits.train, splits.dev):
        assert collections.Counter(ex["label"] for ex in part) == {c: k for c in range(n)}
    assert len(splits.test) == 40
    train, dev, test = set(ids(splits.train)), set(ids(splits.dev)), set(ids(splits.test))
    assert len(train) == len(dev) == n * k
    assert not train & dev and not train & test and not dev & test
    keys = SOURCES[name].text_fields
    test_content = {content_key(ex, keys) for ex in test_pool(name)}
    assert not any(content_key(ex, keys) in test_content for ex in splits.train + splits.dev)
    assert test <= set(ids(test_pool(name)))


def test_same_seed_same_split_other_seed_differs():
    a = kshot_splits("sst2", 16, seed=0, test_size=100)
    b = kshot_splits("sst2", 16, seed=0, test_size=100)
    c = kshot_splits("sst2", 16, seed=1, test_size=100)
    assert (ids(a.train), ids(a.dev), ids(a.test)) == (ids(b.train), ids(b.dev), ids(b.test))
    assert set(ids(a.train)) != set(ids(c.train))
    assert set(ids(a.dev)) != set(ids(c.dev))
    assert set(ids(a.test)) != set(ids(c.test))


def test_test_pool_is_fixed_and_test_subsample_ignores_shots():
    full = [kshot_splits("copa", 4, seed=s).test for s in (0, 1, 2)]
    assert ids(full[0]) == ids(full[1]) == ids(full[2]) == ids(test_pool("copa"))
    assert ids(kshot_splits("copa", 2, 5, test_size=20).test) == ids(
        kshot_splits("copa", 8, 5, test_size=20).test
    )


def test_train_pool_excludes_the_test_pool():
    for name in ("mmlu_medical", "financial_phrasebank", "pubmedqa"):
        keys = SOURCES[name].text_fields
        test = {content_key(ex, keys) for ex in test_pool(name)}
        pool = train_pool(name)
        assert pool and not any(content_key(ex, keys) in test for ex in pool)


def test_class_allocation_follows_counts_and_keeps_the_total():
    assert class_allocation([300, 1425, 676], 8, "balanced") == [8, 8, 8]
    # financial_phrasebank's train pool: 12.5 / 59.4 / 28.2 % of 24 -> 3 / 14 / 7
    assert class_allocation([302, 1437, 681], 8, "natural") == [3, 14, 7]
    assert class_allocation([50, 50], 8, "natural") == [8, 8]
    assert class_allocation([1, 999], 4, "natural") == [1, 7]  # never zero of a class
    for counts in ([5, 7, 11, 13], [1, 1, 98], [40, 60]):
        alloc = class_allocation(counts, 6, "natural")
        assert sum(alloc) == 6 * len(counts) and min(alloc) >= 1
        assert alloc == sorted(alloc) or counts != sorted(counts)  # more pool, no fewer shots
    with pytest.raises(ValueError, match="unknown k-shot proportions 'stratified'"):
        class_allocation([5, 5], 2, "stratified")


def test_natural_proportions_carry_the_pool_prior_and_stay_disjoint():
    k, name = 8, "financial_phrasebank"
    nat = kshot_splits(name, k, seed=0, test_size=50, proportions="natural")
    pool = collections.Counter(ex["label"] for ex in train_pool(name))
    alloc = class_allocation([pool[c] for c in range(3)], k, "natural")
    for part in (nat.train, nat.dev):
        assert collections.Counter(ex["label"] for ex in part) == dict(enumerate(alloc))
    assert not set(ids(nat.train)) & set(ids(nat.dev))
    bal = kshot_splits(name, k, seed=0, test_size=50)
    assert ids(nat.test) == ids(bal.test)  # the test subsample does not depend on the protocol
    assert set(ids(nat.train)) != set(ids(bal.train))
    # piqa's pool is about 50/50: natural proportions give k per class, the same draw
    a, b = (kshot_splits("piqa", k, 1, proportions=p) for p in ("balanced", "natural"))
    assert (ids(a.train), ids(a.dev)) == (ids(b.train), ids(b.dev))


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match=r"class 1 \('B',\) has 23 examples"):
        kshot_splits("copa", shots_per_class=12, seed=0)
    with pytest.raises(ValueError, match="test_size 50 exceeds its test pool \\(49\\)"):
        kshot_splits("copa", 2, 0, test_size=50)
    with pytest.raises(ValueError, match="shots_per_class"):
        kshot_splits("copa", 0, 0)
    with pytest.raises(ValueError, match="seed"):
        kshot_splits("copa", 2, -1)
    with pytest.raises(ValueError, match="unknown k-shot proportions 'uniform'"):
        kshot_splits("copa", 2, 0, proportions="uniform")
    with pytest.raises(KeyError, match="unknown task"):
        kshot_splits("copa2", 2, 0)

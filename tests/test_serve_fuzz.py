"""Property-based fuzzing of the scoring service over its OpenAPI schema (schemathesis).

Schemathesis generates requests for every operation of /openapi.json; the msgpack body
of `POST /v1/score` comes from the hypothesis strategy `score_bodies` (registered for the
media type): well-formed requests of every kind, the same with one field broken (NaN,
inf, 1e300, huge or overflowing shapes, wrong axes, ids out of range, wrong dtypes, byte
counts that disagree with shapes), random msgpack maps and raw bytes. Request ids come
from the schema, so replays and conflicting reuses happen too. Properties: no answer is a
5xx, no 4xx charges anything, and afterwards the ledger's used calls equal the sum of the
calls charged in the answers. Bounded: MAX_EXAMPLES (FUZZ_EXAMPLES) per round, one round
(about a minute on 2 cores) unless FUZZ_SECONDS asks for rounds (seeds FUZZ_SEED + k) until
that long (experiments/service_fuzz.sh: the >= 10 minute run); the hypothesis seed (FUZZ_SEED,
else random), rounds and example count are printed.
The same bodies also go straight through decoding and admission (no server, thousands of
examples in seconds): only `MalformedRequestError` may come out, never another exception
(the server would answer that with a 500), and its message names the field.
"""

import math
import os
import random
import time

import hypothesis
import msgpack
import numpy as np
import pytest
import schemathesis
from hypothesis import strategies as st

from cbp_jax.contract import MalformedRequestError
from cbp_jax.serve.limits import GuardConfig, ServeLimits
from cbp_jax.serve.wire import decode_request
from cbp_jax.service.core import ProviderCore
from cbp_jax.service.oracle import DeepPrompt, NoPrompt, SoftPrompt
from tests.serve_live import KEYS, LiveServer
from tests.serve_tiny import tiny_model

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
SEED = int(os.environ.get("FUZZ_SEED", random.randrange(2**31)))
SECONDS = float(os.environ.get("FUZZ_SECONDS", "0"))  # > 0: more rounds until this long
STATS = {"examples": 0, "charged": 0, "by_status": {}}
WIDE_OPEN = GuardConfig(auth_failures=10**9)  # fuzzing sends many bad keys on purpose

# Valid shapes come from small menus so that the compiled shape buckets stay few.
KINDS = {"task_vector": lambda p: (p, 16), "prompt": lambda p: (p, 2, 48), "none": None}


def _array(a) -> dict:
    a = np.asarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


@st.composite
def valid_request(draw) -> dict:
    kind = draw(st.sampled_from(sorted(KINDS)))
    p, b = draw(st.sampled_from((1, 3))), draw(st.sampled_from((1, 2)))
    s = draw(st.sampled_from((4, 8)))
    r = np.random.default_rng(draw(st.integers(0, 2**16)))
    tokens = r.integers(0, 101, (b, s)).astype(draw(st.sampled_from(("<i4", "<i8"))))
    payload = None
    if KINDS[kind] is not None:
        dtype = draw(st.sampled_from(("<f2", "<f4", "<f8")))
        payload = _array((0.5 * r.normal(size=KINDS[kind](p))).astype(dtype))
    mask = _array(np.ones((b, s), np.int32))
    return {"kind": kind, "payload": payload, "tokens": _array(tokens), "mask": mask,
            "candidates": _array([[3], [4]])}  # fmt: skip


# msgpack encodes ints of at most 64 bits; a client cannot send a larger one at all
MSGPACK_INTS = st.integers(-(2**63), 2**64 - 1)
BAD_VALUES = st.sampled_from([np.nan, np.inf, -np.inf, 1e300, 3e38, -3e38, 65504.0])
BAD_SHAPES = st.sampled_from([[2**32, 2**32], [2**62, 4], [0], [], [1, 1, 1, 1, 1, 1, 1],
                              [2**31 - 1], [-1, 2], [3], [1, 2, 3, 48],
                              # empty arrays with a huge axis: their data is b"" (issue 43)
                              [2**64 - 1, 0], [2**63, 0], [2**40, 2**40, 0], [0, 2**63],
                              [0, 2**20], [2**20, 0, 2**20]])  # fmt: skip


@st.composite
def broken_request(draw) -> dict:
    body = draw(valid_request())
    field = draw(st.sampled_from(("kind", "payload", "tokens", "mask", "candidates", "extra")))
    how = draw(st.sampled_from(("value", "shape", "bytes", "dtype", "type", "drop")))
    if field == "extra":
        body[draw(st.text(max_size=8))] = draw(MSGPACK_INTS)
    elif field == "kind" or how == "type":
        body[field] = draw(st.one_of(st.text(max_size=12), MSGPACK_INTS, st.none(), st.binary()))
    elif how == "drop":
        body.pop(field)
    elif body[field] is None:
        shape = draw(st.sampled_from(([2, 16], [1, 2, 48], [3, 1, 2, 48])))
        body[field] = _array(np.zeros(shape, np.float32))
    elif how == "value":
        a = np.frombuffer(body[field]["data"], body[field]["dtype"]).copy()
        bad = BAD_VALUES if a.dtype.kind == "f" else st.sampled_from([-1, 101, 2**31 - 1, 2])
        if a.size:
            with np.errstate(over="ignore"):  # 1e300 into a float16/32 payload: inf, on purpose
                a[draw(st.integers(0, a.size - 1))] = draw(bad)
        body[field]["data"] = a.tobytes()
    elif how == "shape":
        shape = draw(BAD_SHAPES)
        body[field]["shape"] = shape
        if math.prod(shape) == 0:  # the byte count agrees: only the shape itself is wrong
            body[field]["data"] = b""
    elif how == "bytes":
        body[field]["data"] = body[field]["data"][: draw(st.integers(0, 8))]
    else:
        body[field]["dtype"] = draw(st.sampled_from(("<c8", "|b1", ">f4", "<u4", "x", 7)))
    return body


def _pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


score_bodies = st.one_of(
    valid_request().map(_pack),
    broken_request().map(_pack),
    st.dictionaries(st.text(max_size=10), st.none() | MSGPACK_INTS | st.binary(max_size=16),
                    max_size=6).map(_pack),
    st.binary(max_size=64),
)  # fmt: skip
schemathesis.openapi.media_type("application/msgpack", score_bodies)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    db = tmp_path_factory.mktemp("fuzz") / "l.sqlite"
    srv = LiveServer(db, {"alice": 10**9}, guard=WIDE_OPEN)
    yield srv
    srv.stop()


def _check(case, live) -> None:
    headers = dict(case.headers or {})
    if len(headers.get("X-API-Key", "")) % 4 != 1:  # most cases authenticate, a few keep a bad key
        headers["X-API-Key"] = KEYS["alice"]
    used = live.used("alice")
    response = case.call(base_url=live.url, headers=headers, timeout=120)
    STATS["examples"] += 1
    status = STATS["by_status"]
    status[response.status_code] = status.get(response.status_code, 0) + 1
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    charged = int((response.headers.get("x-charged") or ["0"])[0])
    if response.status_code >= 400:
        assert live.used("alice") == used, f"{response.status_code} charged"
        assert charged == 0
    STATS["charged"] += charged
    assert live.used("alice") == used + charged


def test_fuzz_no_server_error_no_charge_on_refusals_and_the_ledger_adds_up(live, capsys):
    # schemathesis' pytest plugin does not load under pytest 9: drive its case strategy
    # (every operation of the served schema) with hypothesis directly
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    settings = hypothesis.settings(
        max_examples=MAX_EXAMPLES, deadline=None, database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )  # fmt: skip

    def fuzz(seed):
        @hypothesis.seed(seed)
        @settings
        @hypothesis.given(case=schema.as_strategy())
        def run(case):
            _check(case, live)

        run()

    end, rounds = time.monotonic() + SECONDS, 0
    try:
        while rounds == 0 or time.monotonic() < end:  # FUZZ_SECONDS: rounds of seeds SEED + k
            fuzz(SEED + rounds)
            rounds += 1
    finally:
        statuses = dict(sorted(STATS["by_status"].items()))
        with capsys.disabled():  # shown in `make test`'s quiet output, so a failure can be replayed
            print(f"\nfuzz: hypothesis seed {SEED} (FUZZ_SEED), {rounds} round(s), "
                  f"{STATS['examples']} examples, "
                  f"statuses {statuses}, {STATS['charged']} calls charged")  # fmt: skip
    # afterwards (in the same test: it used to be a second test, skipped whenever it ran
    # without this one), the ledger holds exactly the calls the answers said they charged
    assert STATS["examples"] > 0
    assert live.used("alice") == STATS["charged"]


def test_decoding_and_admission_raise_only_malformed_request_errors():
    core = ProviderCore(
        tiny_model(), [NoPrompt(), SoftPrompt(), DeepPrompt()], limits=ServeLimits()
    )
    bodies = st.one_of(valid_request().map(_pack), broken_request().map(_pack))
    settings = hypothesis.settings(
        max_examples=20 * MAX_EXAMPLES // 3, deadline=None, database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )  # fmt: skip

    @hypothesis.seed(SEED)
    @settings
    @hypothesis.given(body=bodies)
    def admit(body):
        try:
            core.admit(decode_request(body))
        except MalformedRequestError as e:
            assert str(e), "a refusal must say why"

    admit()

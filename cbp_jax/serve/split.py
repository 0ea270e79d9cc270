"""Splitting a score request over the server's work caps (user side of the HTTP service).

The server refuses (413, naming the cap) a request whose work P x B x (S + prompt) is over
`limits.max_work_tokens`, or whose one call B x (S + prompt) is over `max_call_tokens`
(both published in /v1/info). `split_request` cuts such a request into parts that fit:
population first (each part keeps the whole batch, so a candidate is still scored on one
batch and costs one call), then, only if one candidate on the batch is over a cap, the
batch rows (each batch slice is then charged as a batch: P calls per slice).
`join_scores` puts the parts' P x B x C x W log-probs back in order.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cbp_jax.contract import PAYLOAD_AXES, ScoreRequest, payload_dims


def split_request(req: ScoreRequest, max_work: int, max_call: int) -> list[list[ScoreRequest]]:
    """Parts as [batch slice][population slice]: the request itself ([[req]]) if it fits,
    else batch slices (only if one candidate on the whole batch is over a cap), each cut
    into population slices, every part within both caps."""
    (p, t), (b, s) = payload_dims(req.kind, req.payload), np.shape(req.tokens_BxS)
    width, p_axis = s + t, PAYLOAD_AXES.get(req.kind, (0, None))[1]
    if p * b * width <= max_work and b * width <= max_call:
        return [[req]]
    rows = min(b, max(1, min(max_work, max_call) // width))  # batch rows one call may cover
    tokens, mask = np.asarray(req.tokens_BxS), np.asarray(req.mask_BxS)
    out = []
    for i in range(0, b, rows):
        part = dataclasses.replace(
            req, tokens_BxS=tokens[i : i + rows], mask_BxS=mask[i : i + rows]
        )
        per = max(1, max_work // (part.num_examples * width))  # candidates per part
        if p_axis is None or per >= p:
            out.append([part])
            continue
        payload = np.asarray(req.payload)
        out.append([
            dataclasses.replace(part, payload=np.take(payload, range(j, min(j + per, p)), p_axis))
            for j in range(0, p, per)
        ])  # fmt: skip
    return out


def join_scores(parts: list[list[np.ndarray]]) -> np.ndarray:
    """The log-probs of `split_request`'s parts, in its layout, as one P x B x C x W array."""
    rows = [np.concatenate(row, axis=0) for row in parts]  # population slices
    return np.concatenate(rows, axis=1)  # batch slices

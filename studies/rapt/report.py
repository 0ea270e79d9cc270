"""The RAPT table's new section from `study.run_seed`'s results: utility (accuracy and
balanced accuracy) per arm and eta, what reconstruction adds (paired per seed), and the
attacks on the private test text."""

from __future__ import annotations

import numpy as np

from cbp_jax.privacy.attack_suite import TOKEN_ATTACKS
from studies.common import header, row
from studies.rapt.study import ARMS, ORACLE_LABEL, PEFTS, RECS, TableConfig, arm_label


def _ms(xs) -> str:
    """mean ± std over the seeds that ran, with "(k/n seeds)" when some have not."""
    planned = len(xs)
    xs = np.asarray([x for x in xs if x is not None], float)
    if not len(xs):
        return "n/a"
    part = f" ({len(xs)}/{planned} seeds)" if len(xs) < planned else ""
    return f"{xs.mean():.3f} ± {xs.std(ddof=1) if len(xs) > 1 else 0.0:.3f}{part}"


def measure(row: dict, key: str) -> dict:
    """A seed's utility cells reduced to one number: `key` of each `prediction_summary`; a
    float (a record from before summaries) counts as accuracy, else None."""
    out = dict(row)
    for k, v in row.items():
        if isinstance(v, dict):
            out[k] = v.get(key)
        elif v is not None and key != "accuracy" and (k in UTILITY or k[0] in ARMS):
            out[k] = None
    return out


UTILITY = ("zero-shot", "prompt tuning (non-private)")
MEASURES = (("accuracy", "test accuracy"), ("balanced_acc", "balanced accuracy"))


def report(cfg: TableConfig, res: dict, command: str) -> str:
    """The table's new section (markdown) from `run_seed`'s results per task."""
    etas = [f"eta={e:g}" for e in cfg.etas]
    lines = [
        "# RAPT: privacy-utility of prompt tuning, prefix tuning and LoRA (smollm2-135m)",
        "",
        f"Command: `{command}`",
        "",
        "Cells marked n/a have not run yet: the command above runs them (each finished "
        "cell is a record, so it resumes where it stopped).",
        "",
        f"{cfg.shots} shots per class (train and dev), {cfg.test_size} test examples, seeds "
        f"{list(cfg.seeds)}; prompt / prefix length {cfg.prompt_len}, LoRA rank "
        f"{cfg.lora_rank} (alpha {2 * cfg.lora_rank}), {cfg.epochs} epochs, Adam lr "
        f"{cfg.learning_rate}. RAPT '+rec (fixed plain)' / '+rec (random plain)': "
        f"reconstruction head (c={cfg.head_dim}, over the vocabulary) recovering "
        f"{cfg.num_plain_tokens} public plain tokens privatized with the input and placed after "
        f"it (the fixed sequence, or random public tokens drawn per example); 'plain before': "
        f"the fixed plain tokens before the text (an ablation). '{ORACLE_LABEL.strip(' +')}': "
        f"a head predicting the user's ORIGINAL token at each private position; its gradient "
        f"carries the private text into the trained parameters, outside the local-DP "
        f"guarantee, so it is an upper bound, not RAPT. Larger eta = less noise. Attacks "
        f"fitted on {cfg.public_size} public "
        f"{cfg.public_task} texts privatized at the same eta. Runs: `runs.jsonl`.",
        "",
        "What the measured rows say: [reading.md](reading.md) (written by hand).",
    ]
    for name in cfg.tasks:
        for key, title in MEASURES:
            rows = [measure(r, key) for r in res[name]]
            if key != "accuracy" and all(r[u] is None for r in rows for u in UTILITY):
                continue  # no run of this task recorded its predictions yet
            lines += ["", f"## {name}: {title} (mean ± std over seeds)", ""]
            if key != "accuracy":
                lines += ["Mean recall per class; runs recorded before predictions were "
                          "kept count as not run here.", ""]  # fmt: skip
            lines += header("method", *etas)
            for m in UTILITY:
                lines.append(row(m, *[_ms([r[m] for r in rows])] * len(cfg.etas)))
            for arm in ARMS:
                lines.append(
                    row(arm_label(arm), *(_ms([r[(arm, e)] for r in rows]) for e in cfg.etas))
                )
        rows = [measure(r, "accuracy") for r in res[name]]
        lines += reconstruction_effect(cfg, name, rows)
        lines += ["", f"## {name}: attacks on the private test text", ""]
        lines += ["Token recovery rate (inversion attacks) and Attribute inference AUC "
                  "(does the text contain a digit; 0.5 = nothing learned).", ""]  # fmt: skip
        lines += header("attack", *etas)
        for a in (*TOKEN_ATTACKS, "attribute AUC"):
            lines.append(row(a, *(_ms([r[(a, e)] for r in rows]) for e in cfg.etas)))
    return "\n".join(lines) + "\n"


def reconstruction_effect(cfg: TableConfig, name: str, rows: list[dict]) -> list[str]:
    """Where reconstruction helps: each +rec arm minus the same PEFT without it, in points,
    paired per seed (the arms of one seed and eta share the privatized text)."""
    etas = [f"eta={e:g}" for e in cfg.etas]
    lines = ["", f"## {name}: what reconstruction adds (points, +rec minus without)", ""]
    lines += [
        "Mean over the seeds where both ran, with the per-seed differences; the last row is "
        "RAPT's fixed plain tokens after the text minus the same tokens before it.",
        "",
    ]
    lines += header("method", *etas)
    pairs = [(arm_label(p + r), p + r, p) for p in PEFTS for r in RECS[1:]]
    pairs.append(("placement: plain after - plain before", "prompt+rec (fixed plain)",
                  "prompt+rec (plain before)"))  # fmt: skip
    for label, a, b in pairs:
        cells = []
        for e in cfg.etas:
            d = [100 * (r[(a, e)] - r[(b, e)]) for r in rows
                 if r.get((a, e)) is not None and r.get((b, e)) is not None]  # fmt: skip
            per_seed = ", ".join(f"{x:+.1f}" for x in d)
            cells.append(f"{np.mean(d):+.1f} ({per_seed})" if d else "n/a")
        lines.append(row(label, *cells))
    return lines

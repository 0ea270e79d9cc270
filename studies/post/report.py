"""The POST table's markdown, from the records only: the protocol, then every task run so far.

`new_section(cfg, records, command)` is the part of studies/post/table.md above the
legacy table: the title, what the protocol (issue 27) changes against the legacy table and
why, written from the config, and for each task with at least one recorded seed the
Table-1 analogue (mean ± std over the seeds that ran, and which of the planned ones they
are), the privacy accounting (N, delta < 1/N, spent epsilon, noise multiplier) and the
membership-inference audits (loss threshold, offline LiRA AUC and TPR at 1% FPR).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from studies.post.plan import LABELS, PUBLIC_SETS, REDUCED, ROWS, PostTableConfig

FULL_SCALE = (
    "At the published scale (the whole train pool, N = 2419 on financial_phrasebank, 20 "
    "epochs of a 100-token prompt) a prompt costs about 48k per-example backward passes: "
    "on the order of 10 h per student prompt on the 2-core CPU (x (1 + shadows) with the "
    "LiRA shadows, x 2 with and without DP) and over a day for full prompt tuning of the "
    "30-layer teacher, per task and seed. That scale needs a GPU (minutes per prompt on an "
    "H200); the CPU runs the reduced preset (`--reduced`)."
)


def fmt(xs) -> str:
    """Fractions as percent: mean ± std over seeds (the value alone for one seed)."""
    xs = 100 * np.asarray(xs, float)
    return f"{xs.mean():.2f}" + (f" ± {xs.std(ddof=1):.2f}" if len(xs) > 1 else "")


def protocol(cfg: PostTableConfig) -> list[str]:
    """What this table's protocol changes against the legacy table, and why."""
    t, d = cfg.tune, cfg.distill
    size = cfg.private_size or "the whole train pool (sst2 436, financial_phrasebank 2419)"
    return [
        "What differs from the previous (legacy) table below, and why:",
        "",
        f"- Optimiser: {t.optimizer} at lr {t.learning_rate} for {t.epochs} epochs, the "
        "paper's (the legacy table used Adam at 3e-3 for 10 epochs).",
        f"- Private set: {size} examples (legacy: 16 shots per class, N = 32) and delta = "
        f"{cfg.delta_factor}/N, below 1/N (legacy: delta = 1/N).",
        "- No private data outside the accountant: the last DP prompt is released (no dev "
        "selection) and the transfer weight alpha comes from public inputs only (the "
        "teacher's zero-shot agreement with the prompted student on the public set, "
        "`cbp_jax/post/public_alpha.py`); the legacy table measured both on the private dev "
        "set, outside the budget.",
        f"- Membership inference: offline LiRA with {cfg.shadows} shadow prompts on the "
        "student (same algorithm, with and without DP, on test-pool examples that are not "
        "audit targets), reported as AUC and TPR at 1% FPR beside the loss-threshold "
        f"attack's AUC; {cfg.audit_size} members and as many non-members per task and seed.",
        f"- Distillation: {d.steps} steps (the paper's 2000; the legacy table ran 300).",
        "",
        FULL_SCALE,
        "",
    ]


def task_section(cfg: PostTableConfig, task: str, by_seed: dict) -> list[str]:
    """One task's table, accounting and audits over its recorded seeds."""
    seeds = [s for s in cfg.seeds if s in by_seed]
    rs = [by_seed[s] for s in seeds]
    eps = ", ".join(f"{r['epsilon_spent']:.3f}" for r in rs)
    lines = [
        f"## {task} (seeds run: {seeds} of {list(cfg.seeds)})",
        "",
        f"| method | no DP | DP (epsilon = {cfg.epsilon}) |",
        "|---|---|---|",
    ]
    for row in ROWS:
        dp = "-" if row == "zero_shot" else fmt([r[row + "_dp"] for r in rs])
        lines.append(f"| {LABELS[row]} | {fmt([r[row] for r in rs])} | {dp} |")
    alphas = "; ".join(
        f"{p}: "
        + ", ".join(
            f"{r['alpha_' + p]['alpha']:.2f}/{r['alpha_' + p + '_dp']['alpha']:.2f}" for r in rs
        )
        for p in PUBLIC_SETS
    )
    lines += [
        "",
        f"Private set N = {rs[0]['N']}, delta = {rs[0]['delta']:.2e} (< 1/N = "
        f"{1 / rs[0]['N']:.2e}). Spent epsilon per seed (RDP accountant): {eps}; noise "
        f"multiplier {rs[0]['sigma']:.3f}, {rs[0]['dp_steps']} steps. alpha per seed "
        f"(no DP / DP), from public inputs: {alphas}.",
        "",
    ]
    return lines + audit_lines(rs, cfg.epsilon) + ["", student_line(seeds, rs), ""]


def audit_lines(rs: list[dict], epsilon: float) -> list[str]:
    """The membership-inference table of the student prompt, without and with DP."""
    lines = [
        "Membership inference on the student prompt (AUC 50 = no leakage; offline LiRA "
        f"with {rs[0]['lira']['shadows']} shadow prompts; TPR at 1% FPR):",
        "",
        "| | loss-threshold AUC | LiRA AUC | LiRA TPR @ 1% FPR |",
        "|---|---|---|---|",
    ]
    for tag, name in (("", "no DP"), ("_dp", f"DP, epsilon = {epsilon}")):
        lines.append(
            f"| {name} | {fmt([r['mia' + tag]['auc'] for r in rs])} | "
            f"{fmt([r['lira' + tag]['auc'] for r in rs])} | "
            f"{fmt([r['lira' + tag]['tpr_at_fpr'] for r in rs])} |"
        )
    return lines


def student_line(seeds: list[int], rs: list[dict]) -> str:
    """Which distilled student each seed's prompts were tuned on (its params digest)."""
    ids = [r.get("student_id", "not recorded") for r in rs]
    line = "Student weights per seed (params digest): " + ", ".join(
        f"seed {s}: {i}" for s, i in zip(seeds, ids, strict=True)
    )
    if len(set(ids)) > 1:
        line += (
            ". **The seeds did not all use the same student** (it was distilled again on "
            "another machine, or the digest was not recorded): the student rows compare "
            "different students across seeds"
        )
    return line + "."


def header(cfg: PostTableConfig, command: str) -> list[str]:
    d, t = cfg.distill, cfg.tune
    return [
        f"Command: `{command}`",
        "",
        f"Student: teacher blocks {d.layers or 'first+last'}, distilled {d.steps} steps x "
        f"{d.batch_size} windows of {d.seq_len} ag_news tokens (loss 5 KL(T=2) + 2 LM + 1 cos). "
        f"Prompts: {t.prompt_len} tokens, {t.epochs} epochs, {t.optimizer} lr "
        f"{t.learning_rate}, expected batch {t.expected_batch_size}, clip {t.clip_norm}; DP "
        f"at epsilon = {cfg.epsilon}, delta = {cfg.delta_factor}/N. Private set: "
        f"{cfg.private_size or 'the whole train pool'} examples, no dev set; "
        f"{cfg.test_size} test examples; transfer {cfg.transfer.steps} steps on "
        f"{cfg.public_size} public texts, alpha from public inputs only. Test accuracy (%), "
        "mean ± std over the seeds that ran.",
        "",
    ]


def new_section(cfg: PostTableConfig, records: list[dict], command: str) -> str:
    """Title, protocol, and the tables of the tasks with at least one recorded seed."""
    results: dict[str, dict] = {}
    for rec in records:
        results.setdefault(rec["config"]["task"], {})[rec["config"]["seed"]] = rec["result"]
    done = [t for t in cfg.tasks if any(s in results.get(t, {}) for s in cfg.seeds)]
    lines = ["# POST on smollm2-135m (teacher) and its first+last-block student", ""]
    lines += protocol(cfg)
    if done:
        lines += ["What the measured rows say: [reading.md](reading.md).", ""]
        lines += header(cfg, command)
        for task in done:
            lines += task_section(cfg, task, results[task])
    else:
        reduced = dataclasses.asdict(REDUCED) == dataclasses.asdict(cfg)
        lines += [
            "No run of this protocol has a record yet"
            + (" (this is the reduced preset's table)." if reduced else "."),
            "",
        ]
    left = [t for t in cfg.tasks if t not in done]
    if left:
        lines += [f"Not run yet: {', '.join(left)}.", ""]
    return "\n".join(lines)

"""table_published.md, from the records only: the POST table as the public code runs it
(published.py).

`section(cfg, records, command)`: the title, the protocol written from the config, then for
each task with at least one recorded seed its table (mean ± std over the seeds that ran, and
which of the planned ones they are): zero-shot, full prompt tuning, the student, Direct
transfer and POST at each alpha mode with its last prompt and its best step (selected on the
private validation split), with and without DP; the alpha values; the DP accounting; the
membership-inference audits (loss threshold, LiRA AUC and TPR at 1% FPR). Tasks and seeds
with no record are named as not run.
"""

from __future__ import annotations

from cbp_jax.post.transfer_loss import ALPHA_MODES
from studies.post.published import PUBLIC, ROWS, PublishedConfig
from studies.post.report import audit_lines, fmt, student_line

LABELS = {
    "zero_shot": "Zero-shot (teacher)",
    "full": "Full prompt tuning (teacher)",
    "student": "Student + prompt (on student)",
    "direct": "Direct transfer (teacher, student's prompt)",
    "post_paper": "POST, alpha paper: min((ZS - RG) / (C - RG), 1)",
    "post_code": "POST, alpha 0.5 (the code's)",
    "post_public": "POST, alpha public proxy (public_alpha)",
}
BEST = "best (selected on private validation data)"
OUTSIDE = (
    'alpha "paper" (its ZS and C) and the best-step selection use the private validation '
    "split, outside the DP accountant: in the DP column the guarantee covers the tuned prompts, "
    'Direct transfer and the Last prompts of alpha "code" and "public", not alpha "paper" '
    "nor the Best column."
)


def protocol(cfg: PublishedConfig, command: str) -> list[str]:
    t = cfg.transfer
    pool = f"{cfg.private_size} examples" if cfg.private_size else "the whole train pool"
    return [
        f"Command: `{command}`",
        "",
        f"Student: the shipped `{cfg.student}` (loaded by name). Private data: {pool}, split "
        f"(seeded) into the private train set and {cfg.val_size} private validation examples; "
        f"{cfg.test_size} test examples. Prompts as the public code tunes them: "
        f"{cfg.prompt_len} tokens from the task's init text, several label words per class "
        f"(mean logit), lr {cfg.learning_rate} for {cfg.epochs} epochs, Adam without DP and "
        f"SGD with DP, expected batch {cfg.expected_batch_size}; DP at epsilon = "
        f"{cfg.epsilon}, delta = 1/N. Transfer: {t.steps} steps x {t.batch_size} of "
        f"{cfg.public_size} {PUBLIC} texts, lr {t.learning_rate}, KL(S || T), tau "
        f"{t.temperature}; the teacher's accuracy on the private validation split every "
        f"{cfg.eval_every} steps. Test accuracy (%), mean ± std over the seeds that ran.",
        "",
        OUTSIDE,
        "",
    ]


def _row(rs: list[dict], row: str) -> list[str]:
    """The four cells (no DP last, best; DP last, best) of one row."""
    cells = []
    for tag in ("", "_dp"):
        if row == "zero_shot":
            cells += [fmt([r[row] for r in rs]) if not tag else "-", "-"]
        elif row.startswith("post_"):
            cells += [fmt([r[row + tag][k] for r in rs]) for k in ("last", "best")]
        else:
            cells += [fmt([r[row + tag] for r in rs]), "-"]
    return cells


def task_section(cfg: PublishedConfig, task: str, by_seed: dict) -> list[str]:
    seeds = [s for s in cfg.seeds if s in by_seed]
    rs = [by_seed[s] for s in seeds]
    dp = f"DP (epsilon = {cfg.epsilon})"
    lines = [
        f"## {task} (seeds run: {seeds} of {list(cfg.seeds)}: {len(seeds)} seeds)",
        "",
        f"| method | no DP: Last | no DP: Best, {BEST} | {dp}: Last | {dp}: Best, {BEST} |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {LABELS[row]} | " + " | ".join(_row(rs, row)) + " |" for row in ROWS]
    alphas = "; ".join(
        f'"{m}": '
        + ", ".join(
            f"{r['post_' + m]['alpha']:.2f}/{r['post_' + m + '_dp']['alpha']:.2f}" for r in rs
        )
        for m in ALPHA_MODES
    )
    eps = ", ".join(f"{r['epsilon_spent']:.3f}" for r in rs)
    r0 = rs[0]
    lines += [
        "",
        f"alpha per seed (no DP / DP): {alphas}. Zero-shot on the private validation split "
        f"(ZS): {fmt([r['zero_shot_val'] for r in rs])}; the student with its prompt there "
        f"(C): {fmt([r['student_val'] for r in rs])} / {fmt([r['student_val_dp'] for r in rs])}.",
        "",
        f"Private train set N = {r0['N']}, validation {r0['val_size']}, delta = "
        f"{r0['delta']:.2e} (= 1/N). Spent epsilon per seed (RDP accountant): {eps}; noise "
        f"multiplier {r0['sigma']:.3f}, {r0['dp_steps']} steps.",
        "",
    ]
    return lines + audit_lines(rs, cfg.epsilon) + ["", student_line(seeds, rs), ""]


def section(cfg: PublishedConfig, records: list[dict], command: str) -> str:
    """Title, protocol, the tables of the tasks with a recorded seed, and what has not run."""
    results: dict[str, dict] = {}
    for rec in records:
        results.setdefault(rec["config"]["task"], {})[rec["config"]["seed"]] = rec["result"]
    done = [t for t in cfg.tasks if any(s in results.get(t, {}) for s in cfg.seeds)]
    lines = ["# POST as the public code runs it (smollm2-135m teacher, shipped student)", ""]
    lines += protocol(cfg, command)
    if not done:
        lines += ["No run of this plan has a record yet.", ""]
    for task in done:
        lines += task_section(cfg, task, results[task])
    left = [f"{t} seed {s}" for t in cfg.tasks for s in cfg.seeds if s not in results.get(t, {})]
    if left:
        lines += [f"Not run yet: {', '.join(left)}.", ""]
    return "\n".join(lines)

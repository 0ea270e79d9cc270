"""The paper-budget report: tables, paired comparisons and budget curves, from records only.

Deterministic in its records (no clock, no paths outside the repository), so a fresh clone
writes the same markdown byte for byte.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from cbp_jax.experiment.records import RecordStore
from cbp_jax.model.registry import DEFAULT_MODEL
from cbp_jax.stats import paired_summary
from studies.common import header, row
from studies.paper_budget.curves import balanced, curve_plot, majority_balanced
from studies.paper_budget.plan import COMPARISONS, LABELS, column_parts


def _by_cell(cfg, cells, store: RecordStore) -> dict:
    """(task, column, seed) -> record, for the cells that have one."""
    out = {}
    for cell in cells:
        rec = store.get(cell)
        if rec is not None:
            task, col, seed = cell_key(cell.name)
            out[(task, col, seed)] = rec
    return out


def cell_key(name: str) -> tuple[str, str, int]:
    """(task, column, seed) of a cell name `<task>/<column>/seed<n>` (columns may hold '/')."""
    task, *col, seed = name.split("/")
    return task, "/".join(col), int(seed.removeprefix("seed"))


def _mean_std(xs) -> str:
    if not xs:
        return "-"
    m = 100 * float(np.mean(xs))
    return f"{m:.1f} ± {100 * float(np.std(xs)):.1f}" if len(xs) > 1 else f"{m:.1f}"


def _test_acc(result: dict) -> float:
    return result["test_acc"]


def _paired(recs, task, a, b, seeds, metric=_test_acc) -> str:
    pairs = [(metric(recs[(task, a, s)]["result"]), metric(recs[(task, b, s)]["result"]))
             for s in seeds if (task, a, s) in recs and (task, b, s) in recs]  # fmt: skip
    diffs = [x - y for x, y in pairs if x is not None and y is not None]
    if not diffs:
        return "not yet run"
    return paired_summary({task: diffs}).describe()


def task_section(cfg, task: str, recs: dict) -> list[str]:
    seeds = cfg.seeds
    n = len(seeds)
    lines = [f"### {task} ({dict(cfg.shots)[task]} shots per class, {cfg.test_size} test)", ""]
    lines += header("method", "test acc. % (mean ± std over seeds)", "balanced acc. %",
                    "start dev acc. %", "seeds finished", "calls")  # fmt: skip
    zs = [recs[(task, "zero_shot", s)]["result"] for s in seeds if (task, "zero_shot", s) in recs]
    majority = [r["prediction"]["majority_acc"] for r in zs]
    majority_bal = [majority_balanced(r) for r in zs]
    lines.append(row("majority class", _mean_std(majority), _mean_std(majority_bal), "-",
                     f"{len(majority)}/{n}", 0))  # fmt: skip
    for col in cfg.columns(task):
        got = [recs[(task, col, s)]["result"] for s in seeds if (task, col, s) in recs]
        calls = sorted({r.get("calls", 0) for r in got})
        calls_txt = "/".join(str(c) for c in calls) if got else "-"
        accs = [r["test_acc"] for r in got]
        bal = [b for b in map(balanced, got) if b is not None]
        start = [r["start_dev_acc"] for r in got if r.get("start_dev_acc") is not None]
        lines.append(row(LABELS[col], _mean_std(accs), _mean_std(bal), _mean_std(start),
                         f"{len(got)}/{n}", calls_txt))  # fmt: skip
    lines += ["", "Balanced accuracy is the mean per-class recall (`methods.evaluate."
              "balanced_accuracy`, from each record's confusion matrix): the k-shot sets are "
              "balanced by class unless the row says natural (drawn in the task's class "
              "proportions), the test subsets keep the task's class prior (the same subset "
              "for both). Start dev acc.: the dev accuracy of the search's start (BBT: p0 "
              "alone, z = 0; CBP: z0), scored before the first generation.", ""]  # fmt: skip
    have = set(cfg.columns(task))
    comparisons = [c for c in COMPARISONS if c[0] in have and c[1] in have]
    for metric, name in ((_test_acc, "test accuracy"), (balanced, "balanced accuracy")):
        lines += [f"Paired over seeds ({name}, points):", ""]
        for a, b, what in comparisons:
            lines.append(f"- {what}: {_paired(recs, task, a, b, seeds, metric)}")
        lines.append("")
    lines.pop()
    lines += ["", "Predicted-class counts on the test subset (per finished run):", ""]
    for col in cfg.columns(task):
        for s in seeds:
            if (task, col, s) in recs:
                pred = recs[(task, col, s)]["result"]["prediction"]
                lines.append(f"- {LABELS[col]}, seed {s}: {pred['predicted_counts']}")
    gens = _generator_ids(cfg, task, recs)
    if gens:
        lines += [
            "",
            "Stage-1 generator of each CBP column (id; every seed must see the same):",
            "",
        ]
        for col, ids in gens.items():
            mixed = " **MIXED: the seeds saw different generators**" if len(ids) > 1 else ""
            lines.append(f"- {LABELS[col]}: {', '.join(ids)}{mixed}")
    return lines + [""]


def _generator_ids(cfg, task: str, recs: dict) -> dict[str, list[str]]:
    """CBP column -> the sorted generator ids its finished runs used."""
    out = {}
    for col in cfg.columns(task):
        ids = {recs[(task, col, s)]["result"].get("generator", {}).get("id")
               for s in cfg.seeds if (task, col, s) in recs}  # fmt: skip
        if ids - {None}:
            out[col] = sorted(ids - {None})
    return out


def beside_default(cfg, recs: dict, results: pathlib.Path, defaults: dict) -> list[str]:
    """For another model: each column's mean beside the default model's, read from the
    default model's committed records in `results` (nothing for the default model)."""
    base = dataclasses.replace(cfg, model=DEFAULT_MODEL)
    path = results / base.records_file
    if cfg.is_default_model or not path.exists():
        return []
    other = _by_cell(base, base.cells(), RecordStore(path, defaults=defaults))
    lines = [f"## Beside the default model ({DEFAULT_MODEL})", "",
             "Test accuracy %, mean ± std over the finished seeds (how many in brackets); "
             f"the same protocol, k-shot sets and test subsets; `{base.table_file}` has "
             "the default model's runs.", "",
             *header("task", "method", DEFAULT_MODEL, cfg.model)]  # fmt: skip

    def cell(by: dict, task: str, col: str) -> str:
        src = "zero_shot" if col == "majority" else col  # majority: from zero-shot's record
        runs = [by[(task, src, s)]["result"] for s in cfg.seeds if (task, src, s) in by]
        vals = [r["prediction"]["majority_acc"] if col == "majority" else r["test_acc"]
                for r in runs]  # fmt: skip
        return f"{_mean_std(vals)} ({len(vals)})" if vals else "-"

    for task in cfg.tasks:
        for col in ("majority", *cfg.columns(task)):
            label = "majority class" if col == "majority" else LABELS[col]
            lines.append(row(task, label, cell(other, task, col), cell(recs, task, col)))
    return lines + [""]


def _model_flags(cfg) -> str:
    """The command-line flags that select `cfg`'s model and columns ("" for the default)."""
    if cfg.is_default_model:
        return ""
    return f" --model {cfg.model}" + (
        f" --columns {','.join(cfg.only_columns)}" if cfg.only_columns else ""
    )


def _timed_seconds(recs: list[dict]) -> list[float]:
    """Whole-run seconds per run. A run resumed at generation g timed only its last
    process, generations g..G, so its seconds are scaled by G / (G - g). Records from
    before resumes were noted lack the field; they count only when no record has it."""
    noted = [r["result"] for r in recs if "resumed_at_generation" in r["result"]]
    out = []
    for res in noted or [r["result"] for r in recs]:
        start, gens = res.get("resumed_at_generation", 0), res.get("generations") or 0
        scale = gens / (gens - start) if 0 < start < gens else 1.0
        out.append(res.get("seconds", 0.0) * scale)
    return out


def remaining_cpu_hours(left: list[str], cpu: dict) -> tuple[float, list[str]]:
    """(hours, columns timed by proxy) for the cells `left`, from `cpu`: column -> seconds."""
    total, proxied = 0.0, []
    for name in left:
        col = cell_key(name)[1]
        if col not in cpu:
            method = column_parts(col)[0]
            proxy = "bbt" if method == "bbtv2" else method
            if col not in proxied:
                proxied.append(col)
            col = proxy
        total += float(np.mean(cpu[col])) if col in cpu else 0.0
    return total / 3600, proxied


def _groups(recs: dict) -> dict[tuple[str, str], list[dict]]:
    """(column, device) -> its records."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for (_, col, _), rec in sorted(recs.items()):
        groups.setdefault((col, rec["result"].get("device", "cpu")), []).append(rec)
    return groups


def status(cfg, cells, store: RecordStore) -> list[str]:
    """Runs done / planned per task and column, and the CPU core-hours what is left needs."""
    recs = _by_cell(cfg, cells, store)
    planned: dict[tuple[str, str], list[bool]] = {}
    for c in cells:
        task, col, _ = cell_key(c.name)
        if cfg.runnable(c) or store.get(c) is not None:
            planned.setdefault((task, col), []).append(store.get(c) is not None)
    lines = [f"{task:22s} {LABELS[col]:45s} {sum(d)}/{len(d)}"
             for (task, col), d in planned.items()]  # fmt: skip
    cpu = {col: _timed_seconds(g) for (col, dev), g in _groups(recs).items() if dev == "cpu"}
    left = [c.name for c in cells if store.get(c) is None and cfg.runnable(c)]
    hours, _ = remaining_cpu_hours(left, cpu)
    return lines + [f"{len(left)} runs left, about {hours:.0f} CPU core-hours"]


def write_report(cfg, cells, store: RecordStore, results: pathlib.Path):
    """Write `cfg.table_file` (and the curve PNGs) into `results`; returns the markdown path."""
    recs = _by_cell(cfg, cells, store)
    gens = cfg.budget // cfg.population
    cmd, flags = "cbp-jax study paper_budget", _model_flags(cfg)
    done, total = len(recs), len(cells)
    lines = [
        "# Paper-budget tables: BBT, BBTv2 and CBP at 8000 calls"
        + ("" if cfg.is_default_model else f", {cfg.model}"),
        "",
        f"Model `{cfg.model}`. Budget {cfg.budget} API calls in the papers' unit (one "
        f"candidate prompt scored on the whole k-shot batch; dev evaluations counted in the "
        f"same budget): {gens} "
        f"CMA-ES generations at population {cfg.population} before dev evaluations. "
        f"Seeds {list(cfg.seeds)}; {done} of {total} planned runs finished. Generated from "
        f"`studies/paper_budget/{cfg.records_file}` by `{cmd} table{flags}`; runs resume "
        f"with `{cmd} run{flags}`.",
        "",
    ]
    for task in cfg.tasks:
        lines += task_section(cfg, task, recs)
        png = results / f"curve{cfg.suffix}_{task}.png"
        if curve_plot(cfg, task, recs, png):
            lines += [f"![test accuracy vs calls, {task}]({png.name})", ""]
    lines += beside_default(cfg, recs, results, store.defaults)
    lines += ["## Run times and what remains", ""]
    groups = _groups(recs)
    secs = {k: _timed_seconds(g) for k, g in groups.items()}
    for (col, dev), mine in sorted(groups.items()):
        ss = secs[col, dev]
        dtypes = sorted({r["dtype"] for r in mine})
        comp = [r["result"]["compile"] for r in mine if "compile" in r["result"]]
        comp_txt = (
            f"; {np.mean([c['compilations'] for c in comp]):.0f} compilations and "
            f"{np.mean([c['compile_seconds'] for c in comp]):.0f} s compiling per run "
            f"({sum(c['cache_hits'] for c in comp)} persistent-cache hits in all)"
            if comp
            else ""
        )
        resumed = sum(r["result"].get("resumed_at_generation", 0) > 0 for r in mine)
        resumed_txt = (
            f"; {resumed} resumed, timed from their resume and scaled to the whole run by "
            "generations"
            if resumed
            else ""
        )
        timed = f" (timed from {len(ss)})" if len(ss) < len(mine) else ""
        cpus = sorted({r["result"]["cpu_model"] for r in mine if "cpu_model" in r["result"]})
        cpu_txt = f"; finished on {' / '.join(cpus)}" if cpus else ""
        lines.append(f"- {LABELS[col]}: {len(mine)} runs on {dev}, {np.mean(ss) / 60:.1f} min per "
                     f"run{timed} (dtype {', '.join(dtypes)}){comp_txt}{resumed_txt}"
                     + cpu_txt)  # fmt: skip
    left = [c.name for c in cells if store.get(c) is None and cfg.runnable(c)]
    lines += ["", f"Not yet run ({len(left)}): " + (", ".join(left) if left else "none"), ""]
    dropped = [c.name for c in cells if store.get(c) is None and not cfg.runnable(c)]
    if dropped:
        lines += [f"First-protocol cells not run further (superseded by the published protocol; "
                  f"{len(dropped)}): " + ", ".join(dropped), ""]  # fmt: skip
    cpu = {col: ss for (col, dev), ss in secs.items() if dev == "cpu"}
    if left:
        hours, proxied = remaining_cpu_hours(left, cpu)
        lines += [
            f"Estimate for what remains on one CPU core: {hours:.1f} h for {len(left)} runs, "
            "from each column's measured mean seconds on the CPU, or, for a column with no "
            f"finished CPU run yet ({', '.join(proxied) or 'none'}), its first-protocol "
            "column of the same method (BBTv2 timed as BBT; an 8000-call run scores 395 "
            "generations x 20 candidates on the k-shot batch). Two runs pinned one per core "
            "do 1.3-1.4x the work per hour of one (results/precision.md).",
            "",
        ]
    lines += [
        f"Commands: `{cmd} run{flags}` (all missing cells, resumable; "
        f"`--only financial_phrasebank/bbt` for a subset), then `{cmd} table{flags}`. "
        "The reading: `reading.md`.",
        "",
    ]
    out = results / cfg.table_file
    out.write_text("\n".join(lines).rstrip() + "\n")
    return out

"""What `python -m cbp_jax.run` prints after a run: the accuracy, what the model predicts,
and the baselines that accuracy must be read against (majority class, chance)."""

from __future__ import annotations

from cbp_jax.methods.evaluate import prediction_summary


def class_names(task) -> list[str]:
    """Each class's first label word (the option letter for multiple choice)."""
    return [ws[0] for ws in task.label_words]


def label_summary(labels, num_classes: int) -> dict:
    """The label-only part of a `prediction_summary`: class counts, majority, chance."""
    labels = list(labels)
    full = prediction_summary(labels, labels, num_classes)
    return {k: full[k] for k in ("label_counts", "majority_class", "majority_acc", "chance")}


def summary_lines(summary: dict, names: list[str]) -> list[str]:
    """Baselines, predicted-class counts and the confusion matrix of a `prediction_summary`."""
    n = sum(summary["label_counts"])
    maj = summary["majority_class"]
    lines = [
        f"  majority-class baseline {summary['majority_acc']:.4f} (always {names[maj]!r}: "
        f"{summary['label_counts'][maj]} of {n} test examples); chance {summary['chance']:.4f}",
    ]
    if "predicted_counts" in summary:
        counts = ", ".join(
            f"{w} {c}" for w, c in zip(names, summary["predicted_counts"], strict=True)
        )
        lines.append(f"  predicted classes: {counts}")
        width = max(len(w) for w in names)
        lines.append("  confusion (rows: true class, columns: predicted):")
        lines.append("    " + " " * width + " " + " ".join(f"{w:>6}" for w in names))
        for w, row in zip(names, summary["confusion"], strict=True):
            lines.append(f"    {w:>{width}} " + " ".join(f"{c:>6}" for c in row))
    return lines


def result_lines(cfg, result: dict, task, test_labels) -> list[str]:
    """The printed result of run `cfg`: accuracy, then `summary_lines`. `test_labels`: the
    labels of the run's test subset (for the majority baseline when the result has no
    recorded predictions)."""
    extras = []
    if result.get("dev_acc") is not None:
        extras.append(f"dev {result['dev_acc']:.4f}")
    if result.get("calls") is not None:
        extras.append(f"{result['calls']} API calls")
    if result.get("generations") is not None:
        extras.append(f"{result['generations']} generations")
    extras.append(f"{result.get('seconds', 0.0):.0f}s")
    lines = [
        f"{cfg.method} on {task.name} seed {cfg.seed}: test accuracy {result['test_acc']:.4f}"
        f" ({', '.join(extras)})"
    ]
    summary = result.get("prediction") or label_summary(test_labels, task.num_classes)
    lines += summary_lines(summary, class_names(task))
    lines.append(f"  run directory: {cfg.run_dir}")
    return lines


def kshot_lines(splits, task, proportions: str) -> list[str]:
    """The k-shot train and dev sets' class counts, by class name, and how they were drawn."""
    names = class_names(task)
    how = {
        "balanced": "the same number of every class",
        "natural": "in the train pool's class proportions",
    }[proportions]
    lines = [f"  k-shot sets ({proportions}: {how}):"]
    for what, examples in (("train", splits.train), ("dev", splits.dev)):
        counts = label_summary([ex["label"] for ex in examples], task.num_classes)
        per_class = ", ".join(
            f"{w} {c}" for w, c in zip(names, counts["label_counts"], strict=True)
        )
        lines.append(f"    {what:<5} {len(examples):>3} examples: {per_class}")
    return lines


def verdict(stage2_acc: float, z0_acc: float, majority_acc: float) -> str:
    """One plain line: did CBP stage 2 beat z0 (the provider's vector, no stage 2) and the
    majority class on the test set? Accuracies in [0, 1]; a tie is not a win."""
    for acc in (stage2_acc, z0_acc, majority_acc):
        if not 0.0 <= acc <= 1.0:
            raise ValueError(f"accuracies must lie in [0, 1], got {acc}")
    beat = []
    for name, base in (("z0", z0_acc), ("the majority class", majority_acc)):
        points = 100.0 * (stage2_acc - base)
        beat.append((points > 1e-9, f"{name} ({points:+.1f} points)"))
    (z0_won, z0_text), (maj_won, maj_text) = beat
    if z0_won and maj_won:
        return f"verdict: stage 2 beat {z0_text} and {maj_text}"
    if not z0_won and not maj_won:
        return f"verdict: stage 2 beat neither {z0_text} nor {maj_text}"
    won, lost = (z0_text, maj_text) if z0_won else (maj_text, z0_text)
    return f"verdict: stage 2 beat {won} but not {lost}"

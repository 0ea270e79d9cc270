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

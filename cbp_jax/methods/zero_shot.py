"""Zero-shot baseline: the template alone, scored through the service (no prompt)."""

from __future__ import annotations

from cbp_jax.methods.evaluate import evaluate as service_evaluate
from cbp_jax.service import ScoringService
from cbp_jax.service.oracle import NoPrompt


def evaluate(model, task, examples, batch_size: int = 32, progress: bool = True) -> dict:
    """Zero-shot `prediction_summary` (accuracy, balanced accuracy, predicted-class counts)
    of a loaded model on examples of a task."""
    service = ScoringService(model, adapters=(NoPrompt(),))
    return service_evaluate(
        service,
        model.tokenizer,
        task,
        examples,
        kind="none",
        batch_size=batch_size,
        progress=progress,
    )


def accuracy(model, task, examples, batch_size: int = 32, progress: bool = True) -> float:
    """Zero-shot accuracy of a loaded model on examples of a task."""
    return evaluate(model, task, examples, batch_size, progress)["accuracy"]

"""Whether a CBP generator's domain fits a task's (stage 1 trains on one domain's tasks;
its z0 and prompts are meant for tasks of that domain)."""

from __future__ import annotations


class CrossDomainError(ValueError):
    """A generator of one domain was about to customize a task of another."""


def domain_mismatch(generator_domain: str | None, task) -> str | None:
    """A sentence saying how the generator's domain and the task's differ, or None."""
    if generator_domain == task.domain:
        return None
    known = generator_domain or "an unrecorded domain"
    return (
        f"the generator was trained on {known} tasks, but task {task.name!r} has domain "
        f'{task.domain!r}: its z0 and prompts were not made for this task (set "domain" '
        "in your task config if it belongs to the generator's domain)"
    )


def check_domain(generator_domain: str | None, task, allow_cross_domain: bool) -> str | None:
    """Raise `CrossDomainError` on a mismatch unless allowed; return the warning if allowed."""
    problem = domain_mismatch(generator_domain, task)
    if problem and not allow_cross_domain:
        raise CrossDomainError(problem + "; pass --allow-cross-domain to run it anyway")
    return problem

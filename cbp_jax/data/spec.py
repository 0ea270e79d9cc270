"""TaskSpec: how a task's examples become a prompt and a set of candidate answers.

A task is a format-string template over an example's fields plus, per class, one or more
label words (a verbalizer) or one option letter (multiple choice). Class scores are read at
the next-token position after the rendered prompt, over the first token of " " + word (see
`batching.candidate_ids`); so a template ends right before the answer word (e.g. with
"Answer:"), never with whitespace, and label words should have distinct first tokens
(`tasks.check_first_tokens` checks that with a real tokenizer).

Long fields listed in `truncate_fields` are cut at render time to `max_chars` characters
(default 1200, about 300 tokens, so prompts stay cheap on a CPU), at a word boundary, with
" ..." appended.
"""

from __future__ import annotations

import dataclasses
import string

DOMAINS = ("sentiment", "commonsense", "medical", "financial", "custom")
DEFAULT_MAX_CHARS = 1200


def template_fields(template: str) -> tuple[str, ...]:
    """The named fields of a format string, in order of first use; rejects other forms."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"template {template!r} is not a valid format string ({e})") from e
    fields: list[str] = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(
                f"template field {{{field}}} must be a plain name like {{sentence}} "
                "(no positional, attribute or index fields; write {{ and }} for braces)"
            )
        if field not in fields:
            fields.append(field)
    return tuple(fields)


def truncate(text: str, max_chars: int) -> str:
    """`text` cut to at most `max_chars` characters at a word boundary, marked with " ..."."""
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 4]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + " ..."


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A classification or multiple-choice task as text: template + label words.

    name: registry name. template: format string over example fields, e.g.
    "Review: {sentence}\\nSentiment (positive or negative):". label_words: per class, the
    words that name it (for multiple choice the option letters, (("A",), ("B",), ...)).
    domain: one of DOMAINS. truncate_fields / max_chars: see the module docstring.
    """

    name: str
    template: str
    label_words: tuple[tuple[str, ...], ...]
    domain: str = "custom"
    truncate_fields: tuple[str, ...] = ()
    max_chars: int = DEFAULT_MAX_CHARS

    def __post_init__(self):
        words = tuple((ws,) if isinstance(ws, str) else tuple(ws) for ws in self.label_words)
        object.__setattr__(self, "label_words", tuple(tuple(w.strip() for w in ws) for ws in words))
        object.__setattr__(self, "truncate_fields", tuple(self.truncate_fields))
        self._validate()

    def _validate(self) -> None:
        where = f"task {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("task name must be a non-empty string")
        fields = template_fields(self.template)
        if not fields:
            raise ValueError(f"{where}: template has no {{field}} to fill in")
        if self.template != self.template.rstrip():
            raise ValueError(
                f"{where}: template must end right before the answer word (e.g. with "
                "'Answer:'), not with whitespace"
            )
        if len(self.label_words) < 2 or any(not ws for ws in self.label_words):
            raise ValueError(f"{where}: needs >= 2 classes, each with >= 1 label word")
        seen: dict[str, int] = {}
        for c, ws in enumerate(self.label_words):
            for w in ws:
                if not w:
                    raise ValueError(f"{where}: class {c} has an empty label word")
                if w in seen:
                    raise ValueError(
                        f"{where}: label word {w!r} is used twice (classes {seen[w]} and {c})"
                    )
                seen[w] = c
        if self.domain not in DOMAINS:
            raise ValueError(f"{where}: domain {self.domain!r} not one of {DOMAINS}")
        unknown = [f for f in self.truncate_fields if f not in fields]
        if unknown:
            raise ValueError(f"{where}: truncate_fields {unknown} are not template fields")
        if not isinstance(self.max_chars, int) or self.max_chars < 16:
            raise ValueError(f"{where}: max_chars must be an integer >= 16, got {self.max_chars}")

    @property
    def fields(self) -> tuple[str, ...]:
        """The example fields the template uses."""
        return template_fields(self.template)

    @property
    def num_classes(self) -> int:
        return len(self.label_words)

    @property
    def option_fields(self) -> tuple[str, ...] | None:
        """For multiple choice whose class c is named by the one letter of the template
        field holding option c (A, B, ...): those fields in class order; else None."""
        names = tuple(ws[0] for ws in self.label_words)
        if all(len(ws) == 1 for ws in self.label_words) and set(names) <= set(self.fields):
            return names
        return None

    def render(self, example: dict) -> str:
        missing = [f for f in self.fields if f not in example]
        if missing:
            raise KeyError(
                f"task {self.name}: template field(s) {missing} missing from example "
                f"(it has {sorted(example)})"
            )
        values = {f: example[f] for f in self.fields}
        for f in self.truncate_fields:
            values[f] = truncate(str(values[f]), self.max_chars)
        return self.template.format(**values)

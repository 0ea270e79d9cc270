"""What the bench_*.py scripts share: their flags, the transformers reference on the same GGUF
weights, k-shot inputs, and the JSON record with the RESULT lines that end their output."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys


def parser(doc: str, **flags) -> argparse.ArgumentParser:
    """--NAME flags (underscores spelled as dashes), each a default or (default, help); a False
    default makes a switch, a None default a string."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for name, spec in flags.items():
        default, text = spec if isinstance(spec, tuple) else (spec, None)
        flag = "--" + name.replace("_", "-")
        if default is False:
            p.add_argument(flag, action="store_true", help=text)
        else:
            p.add_argument(flag, type=str if default is None else type(default), default=default,
                           help=text)  # fmt: skip
    return p


def torch_model(source: str, dtype: str):
    """(torch, transformers' causal LM on the GGUF file `source` in `dtype`, eval mode), torch
    on every core."""
    import torch
    from transformers import AutoModelForCausalLM, logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    torch.set_num_threads(os.cpu_count())
    path = pathlib.Path(source)
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype)
    )
    return torch, model.eval()


def kshot_inputs(tokenizer, task_name: str, per_class: int, n: int | None = None):
    """`Inputs` of the first n (all: None) train examples of the seed-0 k-shot split."""
    from cbp_jax.data.batching import make_inputs
    from cbp_jax.data.splits import kshot_splits
    from cbp_jax.data.tasks import get_task

    train = kshot_splits(task_name, per_class, seed=0).train
    return make_inputs(tokenizer, get_task(task_name), train[:n])


def stamp() -> dict:
    """The command line and the UTC time of this run, for its record."""
    return {
        "command": " ".join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_record(path: pathlib.Path, record: dict, indent: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=indent) + "\n")


def print_results(figures: dict) -> None:
    """One `RESULT name value` line per figure (floats to 4 significant digits)."""
    for name, value in figures.items():
        print(
            f"RESULT {name} {value:.4g}" if isinstance(value, float) else f"RESULT {name} {value}"
        )

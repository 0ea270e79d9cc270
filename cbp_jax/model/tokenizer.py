"""Tokenizers for both checkpoint kinds, built offline and without torch.

GGUF: the `tokenizer.ggml.*` metadata goes through transformers' GGUF tokenizer converter
into a `tokenizers.Tokenizer`, wrapped as `PreTrainedTokenizerFast`.
Hugging Face folders: their own tokenizer files via `AutoTokenizer` (local only).
"""

from __future__ import annotations

import pathlib

import gguf
from transformers import AutoTokenizer, PreTrainedTokenizerFast

try:  # transformers >= 5.2x; earlier 5.x releases keep it in integrations.ggml
    from transformers.integrations.gguf import convert_gguf_tokenizer
except ImportError:  # pragma: no cover - depends on the installed transformers
    from transformers.integrations.ggml import convert_gguf_tokenizer

_GGUF_TOKENIZER_KEYS = {  # tokenizer.ggml.<key> -> converter's name
    "model": "tokenizer_type",
    "pre": "pre_tokenizer_type",
    "tokens": "tokens",
    "scores": "scores",
    "token_type": "token_type",
    "merges": "merges",
    "bos_token_id": "bos_token_id",
    "eos_token_id": "eos_token_id",
    "unknown_token_id": "unk_token_id",
    "padding_token_id": "pad_token_id",
    "add_space_prefix": "add_prefix_space",
}


def tokenizer_from_gguf(reader: gguf.GGUFReader) -> PreTrainedTokenizerFast:
    info = {}
    for key, name in _GGUF_TOKENIZER_KEYS.items():
        field = reader.fields.get(f"tokenizer.ggml.{key}")
        if field is not None:
            info[name] = field.contents()
    if "tokens" not in info:
        raise ValueError("GGUF file has no tokenizer.ggml.tokens metadata")
    arch = reader.fields["general.architecture"].contents()
    backend, _ = convert_gguf_tokenizer(arch, info)
    tokens = info["tokens"]

    def special(key):
        return tokens[info[key]] if key in info else None

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=special("bos_token_id"),
        eos_token=special("eos_token_id"),
        unk_token=special("unk_token_id"),
        pad_token=special("pad_token_id"),
    )


def tokenizer_from_folder(folder: str | pathlib.Path):
    folder = pathlib.Path(folder)
    if not any((folder / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise FileNotFoundError(f"no tokenizer files (tokenizer.json) in {folder}")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)

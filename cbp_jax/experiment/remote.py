"""The user's side of a run against a served model (`cbp-jax serve`) over HTTP.

`--url` / `--api-key` (`add_remote_options`) on `cbp-jax run` and `customize` name the
served model; `remote_of` turns them into a `Remote`, which `experiment.runner.run` uses in
place of loaded weights: the tokenizer alone on this side (`UserSide`), the search and the
test set scored through `serve.client.RemoteService`, every call charged to the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class UserSide:
    """What a user of a served model holds in place of a loaded model: the tokenizer."""

    tokenizer: object
    source: str


@dataclasses.dataclass(frozen=True)
class Remote:
    """A served model (`cbp-jax serve`) to run the user's side against over HTTP: the model
    stays with the provider; every call, the test set's too, is charged to this key."""

    url: str
    api_key: str

    def service(self, cfg, tokenizer, part: str):
        """A `RemoteService` whose run id names this run and the part (search or test)."""
        from cbp_jax.serve.client import RemoteService

        run_id = f"{cfg.method}-{cfg.task}-seed{cfg.seed}-{cfg.identity()[:8]}-{part}"
        return RemoteService(self.url, self.api_key, run_id=run_id, tokenizer=tokenizer)

    def release(self):
        """The served generator's `contract.CBPRelease` (r, z0, names), from /v1/info."""
        from cbp_jax.contract import CBPRelease
        from cbp_jax.serve.client import RemoteService

        info = RemoteService(self.url, self.api_key, run_id="release").server_info()
        if (release := info.get("cbp_release")) is None:
            raise ValueError(f"{self.url} serves no CBP generator (no cbp_release in /v1/info)")
        return CBPRelease(**release)

    def user_side(self, model_name: str) -> UserSide:
        """The served model's tokenizer, read without its weights."""
        from cbp_jax.model.registry import load_tokenizer

        return UserSide(load_tokenizer(model_name), self.url)


def add_remote_options(p) -> None:
    """--url and --api-key: run the user's side against a served model (`remote_of`)."""
    p.add_argument("--url", default="", help="run against this served model (`cbp-jax serve`)")
    p.add_argument("--api-key", default="", help="the --url key (else $CBP_API_KEY)")


def remote_of(args: argparse.Namespace):
    """The `Remote` that --url names, or None."""
    if not args.url:
        return None
    key = args.api_key or os.environ.get("CBP_API_KEY", "")
    if not key:
        raise SystemExit("--url needs an API key: give --api-key or set CBP_API_KEY")
    return Remote(args.url, key)

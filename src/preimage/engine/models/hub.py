"""Find files in the local Hugging Face cache without ever touching the network.

The loaders resolve a Hub id to a snapshot folder here and then load it as a local directory, so
whether `HF_HUB_OFFLINE` is set or not, nothing is downloaded behind the user's back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

COPY_CACHE_HINT = (
    "then copy the Hugging Face cache folder (HF_HUB_CACHE, default ~/.cache/huggingface/hub) to this "
    "machine and point HF_HUB_CACHE (or HF_HOME) at it, or pass a local folder/weight file instead."
)


def hub_cache_dir() -> Path:
    """The Hub cache as huggingface_hub would pick it, read at call time so late env changes count."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HUGGINGFACE_HUB_CACHE"]))
    default_home = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(os.path.expanduser(os.environ.get("HF_HOME", default_home))) / "hub"


def split_revision(hub_id: str) -> tuple[str, str | None]:
    """Split "org/name@revision" (the timm and open_clip convention) into repo id and revision."""
    repo_id, _, revision = hub_id.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"Hub id {hub_id!r}: expected 'org/name' or 'org/name@revision'")
    return repo_id, revision or None


def cached_file(hub_id: str, filename: str) -> Path | None:
    """Path of `filename` in the cached snapshot of `hub_id`, or None when it is not cached."""
    repo_id, revision = split_revision(hub_id)
    found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir(), revision=revision)
    return Path(found) if isinstance(found, str) else None


def snapshot_path(hub_id: str, filename: str) -> str:
    """Where `filename` of `hub_id` would sit in the cache, for error messages."""
    repo_id, revision = split_revision(hub_id)
    folder = "models--" + repo_id.replace("/", "--")
    return str(hub_cache_dir() / folder / "snapshots" / f"<{revision or 'main'}>" / filename)


def cached_snapshot(hub_id: str, config: str, weights: Sequence[str]) -> Path | None:
    """The cached snapshot folder holding `config` and at least one of `weights`, or None."""
    config_file = cached_file(hub_id, config)
    if config_file is None:
        return None
    folder = config_file.parent
    return folder if any((folder / name).is_file() for name in weights) else None


def download_command(hub_id: str) -> str:
    """The shell command that puts `hub_id` into the Hub cache on a machine with internet."""
    repo_id, revision = split_revision(hub_id)
    return f"hf download {repo_id}" + (f" --revision {revision}" if revision else "")

"""The errors every loader raises when weights are not on disk or cannot be read, so users learn how to get them."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class MissingWeightsError(FileNotFoundError):
    """Weights for a model were found nowhere this machine can read; loading never downloads.

    The message names the model, every place that was searched and the command that fetches the
    weights on a machine with internet, because on a cluster node or offline box that is all the
    user needs to fix it.
    """

    def __init__(self, model: str, looked_in: Sequence[str], fetch: str, hint: str = "") -> None:
        self.model = model
        self.looked_in = list(looked_in)
        self.fetch = fetch
        places = "\n".join(f"  - {place}" for place in self.looked_in) or "  (nowhere)"
        message = f"no weights for {model!r}. Looked in:\n{places}\nGet them (on a machine with internet for downloads) with:\n  {fetch}"
        super().__init__(message + (f"\n{hint}" if hint else ""))


@dataclass(frozen=True)
class FolderLayout:
    """The file that says how to build a saved model, which a model folder must hold: checked by the loader, and by
    the pipeline while it plans a run, before any job starts (the check imports nothing heavy)."""

    config_file: str
    expected: str
    """What a good folder is, for the message."""

    def check(self, folder: Path, what: str) -> None:
        """Raise ValueError naming `what` (e.g. "classifier source 'x'") when `folder` lacks the config file."""
        if not (Path(folder) / self.config_file).is_file():
            raise ValueError(f"{what}: {folder} has no {self.config_file}; expected {self.expected}")


TIMM_FOLDER = FolderLayout("config.json", "a folder written by timm.models.save_for_hf(model, folder, "
                                          "safe_serialization=True)")
OPEN_CLIP_FOLDER = FolderLayout("open_clip_config.json", "an open_clip folder")


class CorruptWeightsError(ValueError):
    """A weights file is there but cannot be read: truncated (an interrupted download or copy, a full disk) or
    otherwise corrupt. The message names the file, what is wrong with it and how to get a good copy."""

    def __init__(self, path: str | Path, problem: str, fix: str) -> None:
        self.path = str(path)
        super().__init__(f"weights file {self.path} is truncated or corrupt: {problem.rstrip('. ')}. {fix}")


def redownload_hint(path: str | Path, fetch: str | None = None, trainable: bool = True) -> str:
    """How to replace a bad weights file: download it again (with `fetch`, or the Hub download of the cache
    snapshot `path` lies in) or, for a `trainable` model, retrain it."""
    fetch = fetch or _cache_fetch(Path(path))
    again = (f"Delete it and download it again ({fetch}) on a machine with internet" if fetch
             else "Replace it with a good copy (download or copy it again)")
    if not trainable:
        return again + "."
    return again + ("; for a model this pipeline trains (the shortcut world's), delete it and rerun snakemake, "
                    "which retrains it.")


def _cache_fetch(path: Path) -> str | None:
    """`hf download org/name` for a file in a Hugging Face cache snapshot (models--org--name/snapshots/...)."""
    from preimage.engine.models.hub import download_command

    for part in path.parts:
        if part.startswith("models--") and part.count("--") >= 2:
            return download_command(part.removeprefix("models--").replace("--", "/", 1))
    return None


def safetensors_problem(path: str | Path) -> str | None:
    """What is wrong with a .safetensors file's layout, read from its header alone (an 8-byte header size,
    the JSON header, then the tensors' bytes): None when the header is readable and its tensors fill the file
    exactly, as the safetensors library requires."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return f"it has {size} bytes, fewer than the 8 that give its header size"
        header_size = struct.unpack("<Q", head)[0]
        if 8 + header_size > size:
            return f"its header should have {header_size} bytes but the file has only {size}"
        try:
            header = json.loads(handle.read(header_size))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "its header is not valid JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    try:
        end = max((int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"),
                  default=0)
    except (TypeError, KeyError, IndexError, ValueError):
        return "its header lists a tensor without valid data_offsets"
    expected = 8 + header_size + end
    if expected != size:
        return f"its header describes {expected} bytes but the file has {size}"
    return None


def _torch_file_problem(path: Path, error: BaseException) -> str | None:
    """A torch.save file (a zip archive) the loader failed on, when it is not a readable zip archive."""
    if isinstance(error, (RuntimeError, pickle.UnpicklingError, EOFError)) and not zipfile.is_zipfile(path):
        return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else 'unreadable'}"
    return None


def weights_problem(path: str | Path, error: BaseException | None = None) -> str | None:
    """What is wrong with a weights file, as far as its format can tell: a .safetensors file's layout, or (given
    the loader's `error`) a torch file that is no readable archive; None when nothing is found."""
    path = Path(path)
    if not path.is_file():
        return None
    if path.name.endswith(".safetensors"):
        return safetensors_problem(path)
    return _torch_file_problem(path, error) if error is not None else None


@contextmanager
def reading_weights(files: Iterable[str | Path], fetch: str | None = None, trainable: bool = True) -> Iterator[None]:
    """Around a library call that reads `files` (the weight files it may open): an error it raises because one
    of them is truncated or corrupt (safetensors' 'incomplete metadata', diffusers' 'Unable to load weights',
    torch's 'failed finding central directory', none naming the file) becomes a CorruptWeightsError naming the
    file, what is wrong and how to replace it (`fetch`: the command that downloads it, where known;
    `trainable`: whether the pipeline may have trained it). Any other error passes unchanged."""
    files = list(files)
    try:
        yield
    except MissingWeightsError:
        raise
    except Exception as error:
        for path in files:
            problem = weights_problem(path, error)
            if problem:
                raise CorruptWeightsError(path, problem, redownload_hint(path, fetch, trainable)) from error
        raise


def weight_files(folder: str | Path, suffixes: Sequence[str]) -> list[Path]:
    """The files in `folder` whose names end with one of `suffixes` (none when it is no folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.is_file() and path.name.endswith(tuple(suffixes)))

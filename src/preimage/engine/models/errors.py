"""The one error every loader raises when weights are not on disk, so users learn how to get them."""

from __future__ import annotations

from collections.abc import Sequence


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

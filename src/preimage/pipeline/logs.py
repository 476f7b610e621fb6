"""Each Snakemake job's log: what a script wraps its step in. Kept apart from the rest of the pipeline glue, which
imports torch, so that jobs which need no model (figures, report, tables) do not pay for importing it."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

EXPECTED_ERRORS = (ValueError, FileNotFoundError)  # bad input or a missing file, not a bug


@contextmanager
def redirect_output(log_path: str | Path) -> Iterator[None]:
    """Send a rule's stdout, stderr and logging to its log file, so every rule keeps a log.

    An error raised inside is written to the log too (the file Snakemake points the user to) and then shown:
    an expected one (bad input: a ValueError, a missing file) as its message alone, ending the job with exit
    code 1; any other with its traceback, as a bug.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log:
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        handler = logging.StreamHandler(log)
        logging.getLogger().addHandler(handler)
        try:
            yield
        except EXPECTED_ERRORS as error:
            for stream in (log, old_err):
                print(f"error: {error}", file=stream, flush=True)
            raise SystemExit(1) from None
        except Exception:
            print(traceback.format_exc().rstrip(), file=log, flush=True)  # Python shows it on the terminal as well
            raise
        finally:
            logging.getLogger().removeHandler(handler)
            sys.stdout, sys.stderr = old_out, old_err


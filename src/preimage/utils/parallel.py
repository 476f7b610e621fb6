"""Independent tasks on worker processes that import their libraries once: one job of many small analyses pays
for the imports once per worker instead of once per process, and uses every core it was given."""

from __future__ import annotations

import importlib
import io
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stdout
from typing import TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")


def map_in_processes(function: Callable[[Task], Result], tasks: Sequence[Task], workers: int,
                     preload: Sequence[str] = ()) -> list[tuple[Result, str]]:
    """`function` on every task, in order, with what each printed: on up to `workers` processes, each with one
    BLAS/OpenMP thread, or in this process when one worker (or one task) is enough or the platform cannot fork.

    The workers are forked from this process once it has imported the `preload` modules, so they start without
    importing them again (a spawned worker would also run the calling script again, which a Snakemake script
    cannot survive). Call it before this process computes anything, so that no BLAS, OpenMP or Arrow thread exists
    at the fork. An exception raised by a task is raised here.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if workers == 1 or len(tasks) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_printed(function, task) for task in tasks]
    for module in preload:
        importlib.import_module(module)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context, initializer=_one_thread) as pool:
        return list(pool.map(_printed, [function] * len(tasks), tasks))


def _printed(function: Callable[[Task], Result], task: Task) -> tuple[Result, str]:
    """The task's result and what it printed."""
    with redirect_stdout(io.StringIO()) as printed:
        result = function(task)
    return result, printed.getvalue()


def _one_thread() -> None:
    """Limit a worker's BLAS and OpenMP pools to one thread for its lifetime: the workers already fill the job's
    cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # applied on construction; kept until the process ends

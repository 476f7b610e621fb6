"""preimage.utils.parallel: tasks on forked worker processes, in order, with what each printed."""

from __future__ import annotations

import os

import pytest

from preimage.utils.parallel import map_in_processes


def _square_and_say_where(value: int) -> tuple[int, int]:
    print(f"task {value}")
    return value * value, os.getpid()


def _refuse_three(value: int) -> int:
    if value == 3:
        raise ValueError("three is not allowed")
    return value


def test_results_and_what_each_task_printed_come_back_in_order_from_other_processes():
    results = map_in_processes(_square_and_say_where, list(range(6)), workers=2)
    assert [result[0] for result, _ in results] == [0, 1, 4, 9, 16, 25]
    assert [printed for _, printed in results] == [f"task {value}\n" for value in range(6)]
    workers = {pid for (_, pid), _ in results}
    assert os.getpid() not in workers and 1 <= len(workers) <= 2


def test_one_worker_or_one_task_runs_in_this_process():
    for workers, tasks in ((1, [1, 2, 3]), (4, [5])):
        results = map_in_processes(_square_and_say_where, tasks, workers=workers)
        assert {pid for (_, pid), _ in results} == {os.getpid()}
        assert [printed for _, printed in results] == [f"task {value}\n" for value in tasks]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_tasks_error_is_raised_here_with_its_type_and_message(workers):
    with pytest.raises(ValueError, match="three is not allowed"):
        map_in_processes(_refuse_three, [1, 2, 3, 4], workers=workers)


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        map_in_processes(_refuse_three, [1], workers=0)

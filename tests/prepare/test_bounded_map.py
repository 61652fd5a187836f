"""The bounded task window that keeps prepare's memory flat, and survival of a dying worker."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, ProcessPoolExecutor, ThreadPoolExecutor

import pytest

from ichscan.prepare.run import InlineExecutor, bounded_map


def _slow_square(value: int) -> int:
    time.sleep(0.002)
    return value * value


def _exit_on_two(value: int) -> int:
    if value == 2:
        os._exit(1)  # a decoder segfault, as far as the pool can tell
    return value


@pytest.mark.parametrize("in_flight", [1, 3])
def test_never_more_than_in_flight_tasks_ahead_of_the_consumer(in_flight: int) -> None:
    lock = threading.Lock()
    submitted = 0
    consumed = 0
    most_ahead = 0

    def tasks() -> Iterator[int]:
        nonlocal submitted, most_ahead
        for value in range(20):
            with lock:
                submitted += 1
                most_ahead = max(most_ahead, submitted - consumed)
            yield value

    results = []
    for task, future in bounded_map(lambda: ThreadPoolExecutor(2), _slow_square, tasks(), in_flight):
        with lock:
            consumed += 1
        results.append((task, future.result()))
    assert most_ahead <= in_flight
    assert sorted(results) == [(value, value * value) for value in range(20)]


def test_inline_executor_delivers_errors_through_the_future() -> None:
    outcomes = dict(bounded_map(InlineExecutor, lambda value: 10 // value, [5, 0, 2], 1))
    assert outcomes[5].result() == 2 and outcomes[2].result() == 5
    assert isinstance(outcomes[0].exception(), ZeroDivisionError)


def test_in_flight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="in_flight"):
        list(bounded_map(InlineExecutor, abs, [1], 0))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_a_dying_worker_fails_only_its_task_and_a_new_pool_takes_the_rest() -> None:
    def pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))

    outcomes = dict(bounded_map(pool, _exit_on_two, [1, 2, 3, 4], 1))
    assert isinstance(outcomes[2].exception(), BrokenExecutor)
    assert [outcomes[value].result() for value in (1, 3, 4)] == [1, 3, 4]

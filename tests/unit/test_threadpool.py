"""``ordered_map``: results in input order, a bounded number of items in flight, errors
raised where their item's result is taken."""

from __future__ import annotations

import threading
import time

import pytest

from imganalyzer.threadpool import LOOKAHEAD_PER_THREAD, ordered_map


def test_results_come_in_input_order_although_they_finish_out_of_order() -> None:
    def slow_for_small(n: int) -> int:
        time.sleep(0.002 * (10 - n % 10))
        return n * n

    assert list(ordered_map(slow_for_small, range(40), threads=4)) == [n * n for n in range(40)]
    assert list(ordered_map(str, [], threads=2)) == []
    assert list(ordered_map(str, [1, 2], threads=0)) == ["1", "2"]  # at least one thread


def test_no_more_items_are_taken_than_the_lookahead_allows() -> None:
    threads, taken, lock = 2, [0], threading.Lock()

    def items():
        for n in range(100):
            with lock:
                taken[0] += 1
            yield n

    results = ordered_map(lambda n: n, items(), threads)
    assert next(results) == 0
    assert taken[0] <= threads * LOOKAHEAD_PER_THREAD + 1  # a whole library is never queued
    assert list(results) == list(range(1, 100))


def test_an_error_is_raised_when_its_result_is_taken_after_the_ones_before() -> None:
    def fails_on_three(n: int) -> int:
        if n == 3:
            raise OSError("unreadable file 3")
        return n

    got = []
    with pytest.raises(OSError, match="unreadable file 3"):
        for value in ordered_map(fails_on_three, range(10), threads=2):
            got.append(value)
    assert got == [0, 1, 2]

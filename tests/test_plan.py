"""Barrier placement between stages (plan._barriers): meet only where rows or shared arrays cross
workers, and always where they do."""

from __future__ import annotations

from ecs.plan import Task, _barriers


def task(system: int, table: int, start: int, stop: int) -> Task:
    return Task(system, table, start, stop, (), None, ())


def test_consecutive_split_stages_over_the_same_rows_need_no_barrier() -> None:
    per_worker = [[[task(0, 0, 0, 512)], [task(1, 0, 0, 512)]],
                  [[task(0, 0, 512, 900)], [task(1, 0, 512, 900)]]]
    assert _barriers(per_worker, 2, [True, True]) == (False, True)   # frame end always meets


def test_rows_that_change_worker_need_a_barrier() -> None:
    per_worker = [[[task(0, 0, 0, 100)], []],
                  [[], [task(1, 0, 0, 100)]]]
    assert _barriers(per_worker, 2, [True, True]) == (True, True)


def test_a_task_taking_a_resource_array_is_fenced_on_both_sides() -> None:
    split = [[task(0, 0, 0, 512)], [task(0, 0, 512, 900)]]
    per_worker = [[split[0], [task(1, 0, 0, 900)], [task(2, 0, 0, 512)]],
                  [split[1], [], [task(2, 0, 512, 900)]]]
    assert _barriers(per_worker, 2, [True, False, True]) == (True, True, True)


def test_an_overlap_with_another_workers_rows_two_stages_back_still_meets() -> None:
    per_worker = [[[task(0, 0, 0, 100)], [task(1, 1, 0, 512)], []],
                  [[], [task(1, 1, 512, 900)], [task(2, 0, 0, 100)]]]
    assert _barriers(per_worker, 2, [True, True, True]) == (False, True, True)


def test_one_worker_never_waits() -> None:
    per_worker = [[[task(0, 0, 0, 10)], [task(1, -1, 0, 0)], [task(2, 0, 0, 10)]]]
    assert _barriers(per_worker, 1, [True, False, True]) == (False, False, False)

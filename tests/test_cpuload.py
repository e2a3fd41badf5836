"""ecs/cpuload.py and the pool's use of it: workers are unpinned while another process keeps a
core busy (a pinned worker on that core would set everybody's pace)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import ecs
from ecs.cpuload import OtherLoad, busy_jiffies, jiffies_of, others_busy_now
from tests import introspect
from tests.benchmarks.common import die_with_parent
from tests.memory_systems import Counter, count_up

CORES = len(os.sched_getaffinity(0))


def busy_process() -> subprocess.Popen:
    """A CPU-bound process that also dies with this one (a killed test run left it spinning)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=die_with_parent)  # noqa: PLW1509


def test_a_busy_process_shows_as_other_load_and_our_own_work_does_not() -> None:
    meter = OtherLoad(interval_s=0.3)
    assert meter.sample([os.getpid()]) is None          # the first sample only sets the start
    assert meter.sample([os.getpid()]) is None          # and the next comes after interval_s
    busy = busy_process()
    try:
        time.sleep(0.8)
        other = meter.sample([os.getpid()])                 # the busy process is someone else's
        time.sleep(0.8)
        owned = meter.sample([os.getpid(), busy.pid])       # now it counts as ours
    finally:
        busy.kill()
        busy.wait()
    assert other is not None and other > 0.5
    assert owned is not None and owned < other - 0.5
    assert busy_jiffies() > 0 and jiffies_of([os.getpid()]) > 0 and jiffies_of([2 ** 22 + 17]) == 0


def test_a_busy_process_is_runnable_at_both_looks() -> None:
    busy = busy_process()
    try:
        time.sleep(0.3)
        assert others_busy_now()
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.skipif(CORES < 2, reason="pinning needs two cores")
def test_workers_are_unpinned_while_another_process_keeps_a_core_busy() -> None:
    with ecs.World(workers=CORES) as world:
        world.spawn_batch(200_000, Counter(value=0))      # enough rows to share: the pool starts
        world.add_system(count_up)
        world.step()
        busy = busy_process()
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                world.step()
                if all(os.sched_getaffinity(pid) == set(os.sched_getaffinity(0))
                       for pid in introspect.worker_pids(world)):
                    break
                time.sleep(0.1)
            affinities = [os.sched_getaffinity(pid) for pid in introspect.worker_pids(world)]
        finally:
            busy.kill()
            busy.wait()
        assert all(a == set(os.sched_getaffinity(0)) for a in affinities), affinities

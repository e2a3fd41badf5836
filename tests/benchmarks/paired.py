"""Timing helpers of the system, worker, persistence and scaling scenarios (beside common.py).

`bench_paired`: our figure and its baseline timed in alternation, call by call (or in short
blocks). These 2-core VMs are shared: another process's burst slows whatever runs at that moment,
and memory bandwidth taken by neighbours comes and goes. Timed one after the other
(common.bench), ours and the baseline can meet different weather; alternated, they meet the
same. Each repetition keeps the median of its per-call times, so a call that was preempted does
not count.

`TreeLoadMeter`: common.LoadMeter's "other load" without this process's own workers.

`time_to_marker`: wall seconds from starting a fresh Python process to a line it prints.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from ecs.cpuload import busy_jiffies

from .common import MIN_REP_S, REPS, Stats

ROOT = pathlib.Path(__file__).resolve().parents[2]


def bench_paired(fns: Sequence[Callable[[], object]], reps: int = REPS, min_rep_s: float = MIN_REP_S,
                 warmup: int = 1, blocks: bool = False) -> list[Stats]:
    """Seconds per call of each fn, measured in alternation: a repetition runs k rounds of one
    call of each fn (k so that it lasts `min_rep_s`) and records the median call of each.

    `blocks=True`: a repetition runs k calls of fn0, then k of fn1, ... (still the median call
    of each). For memory-bound fns over separate data of a few MB: called in turn, each evicts
    the other's data from the caches (the move kernel over 1M rows took ~450 us alternated with
    another 16 MB world, ~250 us when called repeatedly, as a world stepping alone is)."""
    clock = time.perf_counter
    for fn in fns:
        for _ in range(warmup):
            fn()
    t0 = clock()
    for fn in fns:
        fn()
    k = max(3, int(min_rep_s / max(clock() - t0, 1e-9)))
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        times: list[list[float]] = [[] for _ in fns]
        if blocks:
            for i, fn in enumerate(fns):
                for _ in range(k):
                    t0 = clock()
                    fn()
                    times[i].append(clock() - t0)
        else:
            for _ in range(k):
                for i, fn in enumerate(fns):
                    t0 = clock()
                    fn()
                    times[i].append(clock() - t0)
        for i, t in enumerate(times):
            samples[i].append(statistics.median(t))
    return [Stats(s) for s in samples]


def _tree_jiffies() -> int:
    """CPU jiffies of this process, its reaped children, and every live descendant (worker
    processes are grandchildren, through the forkserver)."""
    stats: dict[int, tuple[int, int]] = {}   # pid -> (ppid, jiffies)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        stats[int(entry)] = (int(fields[1]), sum(int(v) for v in fields[11:13]))
    me = os.getpid()
    total = 0
    for pid, (_, jiffies) in stats.items():
        p = pid
        while p in stats and p != me and p > 1:
            p = stats[p][0]
        if p == me:
            total += jiffies
    with open("/proc/self/stat") as f:
        text = f.read()
    total += sum(int(v) for v in text[text.rindex(")") + 2:].split()[13:15])   # cutime, cstime
    return total


class TreeLoadMeter:
    """common.LoadMeter for scenarios with worker processes: CPUs used by processes outside this
    process's tree (LoadMeter counts live workers as other load)."""

    def __enter__(self) -> TreeLoadMeter:
        self._t0, self._busy0, self._own0 = time.perf_counter(), busy_jiffies(), _tree_jiffies()
        self.load = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        other = (busy_jiffies() - self._busy0) - (_tree_jiffies() - self._own0)
        self.load = max(0.0, other / os.sysconf("SC_CLK_TCK") / max(wall, 1e-9))


def time_to_marker(code: str, marker: str = "READY", timeout: float = 60.0) -> float:
    """Wall seconds from starting `python -c code` (cwd and sys.path: the repository root) to the
    line `marker` on its stdout; the process is then waited for (untimed)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    elapsed = None
    for line in proc.stdout:
        if line.strip() == marker:
            elapsed = time.perf_counter() - t0
            break
    _, err = proc.communicate(timeout=timeout)
    if elapsed is None or proc.returncode != 0:
        raise RuntimeError(f"start-up child failed (exit {proc.returncode}):\n{err}")
    return elapsed

"""Timing helpers of the system, worker, persistence and scaling scenarios (beside common.py).

`bench_paired`: our figure and its baseline timed in alternation, call by call. These 2-core VMs
are shared: another process's burst slows whatever runs at that moment, and memory bandwidth
taken by neighbours comes and goes. Timed one after the other (common.bench), ours and the
baseline can meet different weather; alternated, they meet the same. Each repetition keeps the
median of its per-call times, so a call that was preempted does not count.

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

from .common import MIN_REP_S, REPS, Stats

ROOT = pathlib.Path(__file__).resolve().parents[2]


def bench_paired(fns: Sequence[Callable[[], object]], reps: int = REPS, min_rep_s: float = MIN_REP_S,
                 warmup: int = 1) -> list[Stats]:
    """Seconds per call of each fn, measured in alternation: a repetition runs k rounds of one
    call of each fn (k so that it lasts `min_rep_s`) and records the median call of each."""
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
        for _ in range(k):
            for i, fn in enumerate(fns):
                t0 = clock()
                fn()
                times[i].append(clock() - t0)
        for i, t in enumerate(times):
            samples[i].append(statistics.median(t))
    return [Stats(s) for s in samples]


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

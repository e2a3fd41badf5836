"""Timing, target verdicts and tables shared by the benchmark scenarios.

Timing rule (the anchors' rule, ../../../shared/anchors/common.py): one warm-up call, then REPS
(>= 7) repetitions; a repetition of a cheap operation runs it k times (k chosen so that the
repetition lasts at least MIN_REP_S) and records time/k. We report the median, with min and max as
the spread. Operations that need a fresh state per repetition (spawning into an empty world, a
query after new writes) use `timed_fresh`: setup and teardown are untimed, one call is timed.

Every scenario measures our figure and its baseline in the same process and run, so ratios do
not depend on which machine or which minute they were taken; "other load" reports the CPU time
used meanwhile by processes outside this one (in CPUs), which these shared VMs do see.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import ecs

REPS = max(7, int(os.environ.get("ECS_BENCH_REPS", "7")))
MIN_REP_S = float(os.environ.get("ECS_BENCH_MIN_REP_S", "0.05"))
QUIET_MAX_S = float(os.environ.get("ECS_BENCH_QUIET_MAX_S", "15"))


class Stats:
    """Median / min / max of per-call seconds."""

    def __init__(self, samples: list[float]) -> None:
        self.samples = sorted(samples)
        self.median = statistics.median(self.samples)
        self.min = self.samples[0]
        self.max = self.samples[-1]

    def scaled(self, factor: float) -> Stats:
        return Stats([s * factor for s in self.samples])


def bench(fn: Callable[[], object], reps: int = REPS, min_rep_s: float = MIN_REP_S, warmup: int = 1) -> Stats:
    """Seconds per call of a repeatable fn(): median of `reps` repetitions of k calls each."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    k = max(1, int(min_rep_s / max(once, 1e-9)))
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        samples.append((time.perf_counter() - t0) / k)
    return Stats(samples)


def timed_fresh(setup: Callable[[], Any], fn: Callable[[Any], Any], teardown: Callable[[Any, Any], None],
                reps: int = REPS, warmup: int = 1) -> Stats:
    """Seconds of one fn(state) per repetition; setup() and teardown(state, out) are untimed."""
    samples = []
    for i in range(warmup + reps):
        state = setup()
        t0 = time.perf_counter()
        out = fn(state)
        elapsed = time.perf_counter() - t0
        teardown(state, out)
        if i >= warmup:
            samples.append(elapsed)
    return Stats(samples)


# ---------------------------------------------------------------- other load
def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        cpu = f.readline().split()[1:]
    values = [int(v) for v in cpu]
    return sum(values) - values[3] - values[4]   # all but idle and iowait


def _own_jiffies() -> int:
    with open("/proc/self/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return sum(int(v) for v in fields[11:15])   # utime stime cutime cstime


class LoadMeter:
    """CPUs used by other processes while a measurement ran (0.00 = a quiet machine)."""

    def __enter__(self) -> LoadMeter:
        self._t0, self._busy0, self._own0 = time.perf_counter(), _busy_jiffies(), _own_jiffies()
        self.load = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t0
        other = (_busy_jiffies() - self._busy0) - (_own_jiffies() - self._own0)
        self.load = max(0.0, other / os.sysconf("SC_CLK_TCK") / max(wall, 1e-9))


def other_load(window_s: float = 0.5) -> float:
    """CPUs used by other processes over the next `window_s` seconds."""
    with LoadMeter() as meter:
        time.sleep(window_s)
    return meter.load


def wait_quiet(max_s: float = QUIET_MAX_S, threshold: float = 0.1) -> float:
    """Wait (at most `max_s`) until other processes use < `threshold` CPUs for two windows in a
    row; returns the seconds waited. On a busy shared VM it gives up: the "other load" column
    then says how much the figures were disturbed."""
    t0, calm = time.perf_counter(), 0
    while calm < 2 and time.perf_counter() - t0 < max_s:
        calm = calm + 1 if other_load() < threshold else 0
    return time.perf_counter() - t0


# ---------------------------------------------------------------- results
@dataclass
class Row:
    """One target: our figure against its baseline, both measured in this run."""

    scenario: str
    workload: str
    ours: str
    baseline: str
    ratio: float            # as defined by `ratio_label`
    ratio_label: str        # e.g. "ours/shm" or "esper/ours"
    target: str
    passed: bool | None     # None: informational row, no target
    load: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else ("PASS" if self.passed else "MISS")


def fmt_s(sec: float) -> str:
    """Human time with 3 significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(sec) >= scale or unit == "ns":
            return f"{sec / scale:.3g} {unit}"
    return f"{sec} s"


def fmt_stats(st: Stats, per: float = 1.0) -> str:
    """'median [min-max]' of a Stats, each divided by `per`."""
    return f"{fmt_s(st.median / per)} [{fmt_s(st.min / per)}-{fmt_s(st.max / per)}]"


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def results_table(rows: list[Row]) -> str:
    headers = ["scenario", "workload", "ours: median [min-max]", "baseline: median [min-max]",
               "ratio", "target", "verdict", "other load"]
    cells = [[r.scenario, r.workload, r.ours, r.baseline, f"{r.ratio:.3g} {r.ratio_label}", r.target,
              r.verdict, f"{r.load:.2f}"] for r in rows]
    return format_table(headers, cells)


def machine() -> str:
    """One line naming the machine and the software versions."""
    import numba
    import numpy

    cpu: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                cpu.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break   # the first processor is enough
        with open("/proc/meminfo") as f:
            mem_gib = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        mem_gib = float("nan")
    model = (f"{cpu.get('model name', 'unknown CPU')} (family {cpu.get('cpu family', '?')}, model "
             f"{cpu.get('model', '?')}, L2 {cpu.get('cache size', '?')}, "
             f"{'AVX-512' if 'avx512f' in cpu.get('flags', '') else 'no AVX-512'}), {mem_gib:.0f} GiB RAM")
    try:
        import esper
        esper_version = esper.__version__
    except Exception:
        esper_version = "n/a"
    return (f"nproc={len(os.sched_getaffinity(0))}, CPU {model}, kernel {platform.release()}; "
            f"python {platform.python_version()}, numpy {numpy.__version__}, numba {numba.__version__}, "
            f"esper {esper_version}")


# ---------------------------------------------------------------- the workload's components
# Ours: two 2-field f32 components. esper's: plain dataclasses holding Python floats, exactly as
# the anchors' workload.py declares them.


@ecs.component
class Position:
    x: ecs.f32
    y: ecs.f32


@ecs.component
class Velocity:
    x: ecs.f32
    y: ecs.f32


@dataclass
class EsperPosition:
    x: float = 0.0
    y: float = 0.0


@dataclass
class EsperVelocity:
    x: float = 0.0
    y: float = 0.0


def source_arrays(n: int, seed: int = 3) -> np.ndarray:
    """(4, n) float32 values: Position x, y and Velocity x, y (the anchors' spawn.py data)."""
    return np.random.default_rng(seed).uniform(-1, 1, (4, n)).astype(np.float32)


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child before exec: SIGKILL when the benchmark process ends, however it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def busy_process(settle_s: float = 0.5) -> Iterator[int]:
    """One CPU-bound process beside the measurement (its pid), ended by its pid on exit; it also
    dies with this process (PR_SET_PDEATHSIG): a benchmark killed mid-run left its busy process
    spinning for the next runs, which then measured a loaded machine as idle."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=die_with_parent)  # noqa: PLW1509
    try:
        time.sleep(settle_s)                  # let the scheduler see it
        yield busy.pid
    finally:
        os.kill(busy.pid, signal.SIGKILL)
        busy.wait()

"""Other load: how many CPUs processes other than this one and its workers keep busy.

Read from /proc (Linux): the machine's busy jiffies (all but idle and iowait) minus those of
this process and the given worker processes, over the time since the last sample. The worker
pool uses it to pin its workers only while nothing else competes for the cores. Cost of one
sample: a read of /proc/stat and of one stat file per process, ~50 us; samples are taken at most
every `interval_s` seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

TICKS_PER_S = os.sysconf("SC_CLK_TCK") if "SC_CLK_TCK" in os.sysconf_names else 100


def busy_jiffies() -> int:
    """Jiffies every CPU spent on anything but idle and iowait since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4]


def jiffies_of(pids: Iterable[int]) -> int:
    """User and system jiffies of these processes (those that have ended count 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total


class OtherLoad:
    """Samples of the CPUs used by other processes; `sample` returns None between intervals."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s = interval_s
        self._last: tuple[float, int, int] | None = None

    def sample(self, own_pids: Iterable[int]) -> float | None:
        """CPUs other processes kept busy since the last sample, or None before `interval_s` passed
        (or where /proc cannot be read)."""
        now = time.monotonic()
        if self._last is not None and now - self._last[0] < self.interval_s:
            return None
        try:
            busy, own = busy_jiffies(), jiffies_of(own_pids)
        except (OSError, ValueError, IndexError):
            return None
        previous, self._last = self._last, (now, busy, own)
        if previous is None:
            return None
        elapsed = max(now - previous[0], 1e-9)
        return max(0.0, ((busy - previous[1]) - (own - previous[2])) / TICKS_PER_S / elapsed)


def runnable_others() -> int:
    """Processes (threads) runnable right now besides the calling one, from /proc/stat's
    procs_running: a moment's look, for a decision that cannot wait for two samples. 0 where
    /proc cannot be read."""
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("procs_running"):
                    return max(0, int(line.split()[1]) - 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def others_busy_now(gap_s: float = 0.002) -> bool:
    """Whether another process is runnable at two looks `gap_s` apart: a busy process always is,
    a kernel thread's moment of work is not. For a decision that cannot wait for two samples;
    costs the gap."""
    if runnable_others() == 0:
        return False
    time.sleep(gap_s)
    return runnable_others() > 0

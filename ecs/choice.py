"""Here or on the workers: the way a run goes, chosen by what runs like it cost each way lately.

A run handed to the workers pays a fixed cost in this process (announcing it, watching it,
reading its end: ~20 us of Python) and in the workers (waking, claiming, rows that another
core's cache holds), which a large stage earns back and a mid-sized one does not: move over
100k rows took 19 us a step here and 52 us on 2 workers of this 2-core VM, over 3M rows 1.4 ms
here and 0.8 ms on the workers. Where the line lies depends on the machine, the kernels and
what else runs, so it is measured, not guessed: a PathChoice keeps the seconds a frame took
each way (a low envelope: see _averaged), per *kind* of run (one frame or several; total rows within a
factor of sqrt(2)), and sends a run the cheaper way. It learns the workers' cost first (a run
goes to them until it knows it), then this process's with one run, and keeps probing the
dearer way with one run in every PROBE_EVERY (PROBE_EVERY_FAR where it costs twice the other
or more), so a world that grows, or a machine that gets busy, is followed within a few dozen
runs. Results never depend on the way (every row is
written by the same kernel in either), only speed does.

Cost: a dict lookup and a few comparisons a run.
"""

from __future__ import annotations

import math

PROBE_EVERY = 32         # one run in this many goes the dearer way, to see whether it still is
PROBE_EVERY_FAR = 256    # ... where it costs more than twice the other (heavy over 1M rows: 70 ms
                         # here, 39 ms on 2 workers; a probe every 32 runs cost 3% of the time)
SHARED_FIRST = 3         # runs measured on the workers before this process is tried
SMOOTHING = 0.25         # weight of the newest run in a kind's moving average
MAX_KINDS = 256          # kinds remembered (a world whose size keeps changing makes new ones)


class _Costs:
    __slots__ = ("here", "shared", "shared_runs", "runs")

    def __init__(self) -> None:
        self.here: float | None = None      # seconds a frame, moving average, runs done here
        self.shared: float | None = None    # ... runs done on the workers
        self.shared_runs = 0
        self.runs = 0                       # decisions made for this kind


class PathChoice:
    """Per kind of run, which way is cheaper (`here_is_cheaper`), from the runs it is told of
    (`note`)."""

    def __init__(self) -> None:
        self._kinds: dict[tuple[bool, int], _Costs] = {}

    @staticmethod
    def _kind(frames: int, rows: int) -> tuple[bool, int]:
        return frames > 1, round(2 * math.log2(max(rows, 1)))

    def here_is_cheaper(self, frames: int, rows: int) -> bool:
        """Whether the next run of `frames` frames over `rows` rows should stay in this process."""
        costs = self._kinds.get(self._kind(frames, rows))
        if costs is None or costs.shared is None:
            return False
        costs.runs += 1
        if costs.here is None:
            return costs.shared_runs >= SHARED_FIRST
        here_wins = costs.here < costs.shared
        far = max(costs.here, costs.shared) > 2 * min(costs.here, costs.shared)
        probe = costs.runs % (PROBE_EVERY_FAR if far else PROBE_EVERY) == 0
        return here_wins != probe

    def note(self, frames: int, rows: int, shared: bool, seconds: float) -> None:
        """A run of `frames` frames over `rows` rows took `seconds`, on the workers or here."""
        if frames < 1:
            return
        kind = self._kind(frames, rows)
        costs = self._kinds.get(kind)
        if costs is None:
            if len(self._kinds) >= MAX_KINDS:
                self._kinds.clear()
            costs = self._kinds[kind] = _Costs()
        per_frame = seconds / frames
        if shared:
            costs.shared_runs += 1
            costs.shared = _averaged(costs.shared, per_frame)
        else:
            costs.here = _averaged(costs.here, per_frame)


def _averaged(average: float | None, sample: float) -> float:
    """The cost of a kind with a new `sample`: down to it at once (a run is slowed by what else
    happens, never sped up: the first run on new workers included their start), up by a moving
    average of samples taken as at most twice the cost (one run that the scheduler interrupted
    for milliseconds must not send the next hundreds the dearer way)."""
    if average is None or sample <= average:
        return sample
    return average + SMOOTHING * (min(sample, 2 * average) - average)

"""RunChoice: whether a run goes to the workers or stays in this process, by measured time.

The pool's rules (pool.WorkerPool.helps) keep a run here while the machine is loaded and its
stages are short, or while the workers sleep and the run is short; plans whose stages are all
under plan.SPLIT_MIN_ROWS rows are not shared at all. Past that, rows do not tell what sharing
gains: move costs ~0.25 ns a row, the heavy kernel ~90 ns, and sharing costs waking the
workers and a barrier per stage. Move over 100,000 rows takes 25 us a step() here and 67 us
shared on 2 workers; over 1,000,000 rows 237 us here and 197 us shared (this 2-core VM).

So both ways are measured and the faster taken, per kind of run: one frame (step()) and several
(run(frames=n)), whose costs differ (a step wakes the workers, a long run pays only the
barriers).
- A choice compares estimates from the latest SAMPLES sampled runs of each way, in seconds a
  frame: their median here (one run preempted by another program does not turn it), their
  least on the workers, whose slow runs are their waking and warming up after runs here: in
  the demo's grid world, 6-17 ms for the first shared runs after a stretch here, 1.3 ms once
  warm; 1M rows of move: 0.6, then 0.4 ms a step, ~0.2 ms after ~10 shared runs.
- Only a run that follows one of the same way is a sample (the first run on the workers after
  runs here also pays waking them).
- The workers keep runs unless this process ran them SHARE_MARGIN times faster.
- A look at a way drops its older samples and runs it LOOK_RUNS times in a row (twice here, six
  times on the workers, to get past their warming up): each way at the start, then the other
  way after EXPLORE_EVERY choices of a kind, so that a change of load or of work is noticed;
  each look that keeps the choice doubles the interval, up to EXPLORE_MAX (a look over 1M rows
  of move costs ~2 ms), and the chosen way getting CHANGED times slower brings the next look
  forward.
- All samples are dropped when the rows of the largest stage move by more than RESCALE.
Results do not depend on the choice: a run is bit-identical on any number of processes.
Cost: ~0.5 us a choice, ~1 us a sample.
"""

from __future__ import annotations

EXPLORE_EVERY = 32       # choices of one kind before the first look the other way ...
EXPLORE_MAX = 4096       # ... doubled after each look that kept the choice, up to this
CHANGED = 1.5            # the chosen way's estimate this much above the one at the last look: look now
SAMPLES = 5              # latest sampled runs of each way and kind the estimates are taken from
SHARE_MARGIN = 1.5       # the workers keep runs until this process ran them this much faster
LOOK_RUNS = {False: 2, True: 6}   # runs of a look here / on the workers (its first is no sample)
RESCALE = 1.25           # a change of the largest stage's rows by more than this starts afresh


class RunChoice:
    """The measured choice between the workers and this process of one pool."""

    def __init__(self) -> None:
        self._kinds = {False: _Kind(), True: _Kind()}    # by "several frames"
        self._last_shared: bool | None = None            # the way of the latest run noted
        self._scale = 0.0

    def share(self, frames: int, scale: int) -> bool:
        """Whether a run of `frames` frames whose largest stage has `scale` rows should go to the
        workers: a look at each way until both were measured (this process first), then the
        faster (the workers unless this process was SHARE_MARGIN times faster), with a look the
        other way after EXPLORE_EVERY choices, then after twice as many while that keeps the
        choice (up to EXPLORE_MAX; at once when the chosen way got CHANGED times slower)."""
        if not self._scale / RESCALE <= scale <= self._scale * RESCALE:
            self._kinds = {False: _Kind(), True: _Kind()}
            self._scale = float(scale)
        kind = self._kinds[frames > 1]
        if kind.look_left:
            kind.look_left -= 1
            return kind.look_way
        here, there = kind.estimate(False), kind.estimate(True)
        if here is None or there is None:
            return kind.look(here is not None)
        faster = there <= SHARE_MARGIN * here
        chosen = there if faster else here
        if faster is not kind.faster:
            kind.faster, kind.interval, kind.reference = faster, EXPLORE_EVERY, chosen
        kind.since += 1
        if kind.since >= kind.interval or chosen > CHANGED * kind.reference:
            kind.since, kind.reference = 0, chosen
            kind.interval = min(2 * kind.interval, EXPLORE_MAX)
            return kind.look(not faster)
        return faster

    def note(self, frames: int, shared: bool, seconds: float) -> None:
        """A run of `frames` frames, on the workers (`shared`) or here, took `seconds`: a sample
        if the run before it went the same way."""
        switched, self._last_shared = shared is not self._last_shared, shared
        if switched:
            return
        samples = self._kinds[frames > 1].samples[shared]
        samples.append(seconds / max(frames, 1))
        del samples[:-SAMPLES]


class _Kind:
    """RunChoice's state for one kind of run: the latest samples by way (shared or not), the
    faster way, choices since the last look and the interval between looks, the way and runs
    left of a look under way, and the chosen way's estimate at the last look."""

    __slots__ = ("samples", "faster", "since", "interval", "look_way", "look_left", "reference")

    def __init__(self) -> None:
        self.samples: dict[bool, list[float]] = {False: [], True: []}
        self.faster: bool | None = None
        self.since = self.look_left = 0
        self.interval = EXPLORE_EVERY
        self.look_way = False
        self.reference = 0.0

    def estimate(self, shared: bool) -> float | None:
        """Seconds a frame of the way: the median of its samples here, their least on the
        workers (whose slow runs are their waking and warming up, not their steady cost)."""
        samples = self.samples[shared]
        if not samples:
            return None
        return min(samples) if shared else sorted(samples)[len(samples) // 2]

    def look(self, shared: bool) -> bool:
        """Start a look at a way (its older samples dropped); returns the way of its first run."""
        self.samples[shared].clear()
        self.look_way, self.look_left = shared, LOOK_RUNS[shared] - 1
        return shared

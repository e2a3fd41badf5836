"""RunChoice: whether a run goes to the workers or stays in this process, by measured time.

The pool's rules (pool.WorkerPool.helps) keep a run here while the machine is loaded and its
stages are short, or while the workers sleep and the run is short. Past them, a stage's rows
were the only guide (plan.SPLIT_MIN_ROWS), and rows do not tell what sharing gains: move costs
~0.25 ns a row, the heavy kernel ~90 ns. Sharing costs waking the workers and a barrier per
stage, so move over 100,000 rows took 25 us a step() here and 67 us on 2 workers, and over
1,000,000 rows 237 us here and 197 us on 2 workers (this 2-core VM).

So both ways are measured and the faster taken, per kind of run: one frame (step()) and several
(run(frames=n)), whose costs differ (a step wakes the workers, a long run pays only the
barriers).
- A choice compares the medians of the latest SAMPLES seconds per frame of each way: one run
  preempted by another program does not turn it.
- Only a run that follows one of the same way is a sample: the first run on the workers after
  runs here finds them asleep and pays their waking, which a run among shared runs does not
  (they spin between runs).
- The workers keep runs unless this process ran them SHARE_MARGIN times faster: their samples
  after runs here overstate their cost (1M rows of move: 0.6, then 0.4 ms a step, ~0.2 ms after
  ~10 shared runs, as their caches refill), and the pool's rules already keep here the runs
  that sharing loses most on.
- After EXPLORE_EVERY choices of a kind the other way runs twice (its older samples dropped),
  so that a change of load or of work is noticed; each look that keeps the choice doubles the
  interval, up to EXPLORE_MAX (a look over 1M rows of move costs ~2 ms), and the chosen way
  getting CHANGED times slower brings the next look forward.
- All samples are dropped when the rows of the largest stage move by more than RESCALE.
Results do not depend on the choice: a run is bit-identical on any number of processes.
Cost: ~0.5 us a choice, ~1 us a sample.
"""

from __future__ import annotations

EXPLORE_EVERY = 32       # choices of one kind before the first runs the other way ...
EXPLORE_MAX = 4096       # ... doubled after each look that kept the choice, up to this
CHANGED = 1.5            # the chosen way's median this much above the one of the last look: look again now
SAMPLES = 5              # latest runs of each way and kind whose median decides
SHARE_MARGIN = 1.5       # the workers keep runs until this process ran them this much faster
RESCALE = 1.25           # a change of the largest stage's rows by more than this starts afresh


class RunChoice:
    """The measured choice between the workers and this process of one pool."""

    def __init__(self) -> None:
        self._kinds = {False: _Kind(), True: _Kind()}    # by "several frames"
        self._last_shared: bool | None = None            # the way of the latest run noted
        self._scale = 0.0

    def share(self, frames: int, scale: int) -> bool:
        """Whether a run of `frames` frames whose largest stage has `scale` rows should go to the
        workers: each way twice until both were measured (this process first), then the faster
        (the workers unless this process was SHARE_MARGIN times faster),
        the other way for two runs after EXPLORE_EVERY choices, then after twice as many while
        that keeps the choice (up to EXPLORE_MAX; at once when the chosen way got CHANGED times
        slower)."""
        if not self._scale / RESCALE <= scale <= self._scale * RESCALE:
            self._kinds = {False: _Kind(), True: _Kind()}
            self._scale = float(scale)
        kind = self._kinds[frames > 1]
        there, here = kind.medians.get(True), kind.medians.get(False)
        if there is None or here is None:
            return here is not None
        faster = there <= SHARE_MARGIN * here
        chosen = there if faster else here
        if faster is not kind.faster:
            kind.faster, kind.interval, kind.reference = faster, EXPLORE_EVERY, chosen
        if kind.exploring:
            kind.exploring -= 1
            return not faster
        kind.since += 1
        if kind.since >= kind.interval or chosen > CHANGED * kind.reference:
            kind.since, kind.exploring, kind.reference = 0, 1, chosen
            kind.interval = min(2 * kind.interval, EXPLORE_MAX)
            kind.samples[not faster].clear()     # the look's own run decides, not older ones
            return not faster
        return faster

    def note(self, frames: int, shared: bool, seconds: float) -> None:
        """A run of `frames` frames, on the workers (`shared`) or here, took `seconds`: a sample
        if the run before it went the same way."""
        switched, self._last_shared = shared is not self._last_shared, shared
        if switched:
            return
        kind = self._kinds[frames > 1]
        samples = kind.samples[shared]
        samples.append(seconds / max(frames, 1))
        del samples[:-SAMPLES]
        kind.medians[shared] = sorted(samples)[len(samples) // 2]


class _Kind:
    """RunChoice's state for one kind of run: samples and their medians by way (shared or not),
    the faster way, choices since the last look the other way and the interval between looks,
    runs of that look still due, and the chosen way's median at the last look."""

    __slots__ = ("samples", "medians", "faster", "since", "interval", "exploring", "reference")

    def __init__(self) -> None:
        self.samples: dict[bool, list[float]] = {False: [], True: []}
        self.medians: dict[bool, float] = {}
        self.faster: bool | None = None
        self.since = self.exploring = 0
        self.interval = EXPLORE_EVERY
        self.reference = 0.0

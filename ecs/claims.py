"""Claims: the units of a run, taken one at a time by every process of it, near home first.

Work sharing instead of a fixed split: a process slowed by another program on its core runs
fewer units instead of holding everybody up, and the main process takes units too.

Tickets: each (frame, stage) of a run that has due units is an *epoch*; its due units get
consecutive ticket numbers, epoch after epoch, so every process computes the same ticket of
every unit from the plan and the run's values (`Epochs`). An epoch's units are cut into one
contiguous *home range* per process, balanced by rows (plan.home_cuts): with the same units every
frame, a process meets the same rows frame after frame, which keeps them in its caches (move over
1M rows on this VM's 2 cores: 0.10 ms a frame with one range per process, 0.21 ms when the chunks
went to whoever came first).

Counters: range p has a counter (mailbox `counter_of(p)`) holding the run id and a ticket; the
next unclaimed unit of range p in epoch k is max(ticket, first ticket of range p in k). A
process claims it by a compare-and-swap from the value it read to (run, claimed + 1), and only
in an open epoch: once every unit of the epochs before it is done (DONE >= the epoch's first
ticket). So a process that is late (its run ended, or it read stale values) cannot claim
anything, a unit once claimed is run at once, and no process waits for a particular other one:
a stage waits only for units that are running. A process takes its home range first, then
steals from the others' fronts.

Before claiming, a worker sets its HOLDING word to the run id and clears it after the unit (and
DONE) is done: the main process, after closing the counters, knows which workers are still
inside a kernel of the run.

Costs, from Python: a claim is one compiled call (sync.claim_ticket) and a finished unit an
atomic add (~0.2 us each); an epoch ends after one failed claim per range; a unit's tasks run
through the Executor (~5 us a task).
A process waiting for an epoch to open polls DONE for up to `spin_ns`, yielding its core at
each poll, then sleeps on it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ecs.kernels import sync

from .mailbox import DONE, DONE_SLEEPERS, SLEEP, counter_of, is_open, unit_done
from .plan import Plan, SystemValues, Unit, due_frames, home_cuts


class Epochs:
    """A run's epochs in ticket order, computed as far as they are asked for."""

    def __init__(self, plan: Plan, values: list[SystemValues], first_frame: int, frames: int) -> None:
        self.plan, self.values = plan, values
        self.first_frame, self.stop_frame = first_frame, first_frame + frames
        self.frame, self.stage = first_frame, -1
        self.base = self.end = 0               # tickets [base, end) are this epoch's units
        self.units: tuple[Unit, ...] = ()
        self.cuts: tuple[int, ...] = ()

    def advance(self) -> bool:
        """Move to the next epoch; False past the run's last (then `end` is its ticket count)."""
        plan = self.plan
        stages = len(plan.units)
        while True:
            self.stage += 1
            if self.stage >= stages:
                self.stage = 0
                self.frame += 1
            if self.frame >= self.stop_frame or not stages:
                self.frame, self.stage = self.stop_frame, 0
                self.base = self.end
                return False
            if plan.always_due[self.stage] and plan.claim_seed is None:
                units, cuts = plan.units[self.stage], plan.cuts[self.stage]
            else:
                units = plan.due_units(self.stage, self.frame, self.values)
                cuts = home_cuts(units, plan.processes)
            if units:
                self.units, self.cuts = units, cuts
                self.base, self.end = self.end, self.end + len(self.units)
                return True

    def seek(self, ticket: int) -> bool:
        """Move to the epoch holding `ticket`; False when the run has fewer tickets."""
        while ticket >= self.end:
            if not self.advance():
                return False
        return True

    def total(self) -> int:
        """The run's ticket count, counted per unit (plan.due_frames), not by walking epochs."""
        plan, frames = self.plan, self.stop_frame - self.first_frame
        if all(plan.always_due):        # every unit every frame (the common case: no every=, no removed=)
            return frames * sum(len(stage) for stage in plan.units)
        return sum(due_frames(plan, unit[0], self.first_frame, frames, self.values[unit[0].system])
                   for stage in plan.units for unit in stage)

    def frames_done(self, done: int) -> int:
        """Frames of the run finished when `done` units are: those before the epoch of unit `done`."""
        return (self.frame if self.seek(done) else self.stop_frame) - self.first_frame


def take_part(epochs: Epochs, control: np.ndarray, control32: np.ndarray, run: int, total: int, home: int,
              run_unit: Callable[[Unit, int], bool], spin_ns: int, holding: int,
              keep_waiting: Callable[[], bool]) -> bool:
    """Claim and run units of run `run` (of `total` units), home range `home` first, until none is left or the run
    is closed; False when a unit failed, i.e. `run_unit(unit, frame)` returned False (the caller
    then closes the run). `holding`: the control word to set while holding a unit (-1: none,
    the main process); `keep_waiting()` is asked after each wait for an epoch that came back
    without it opening (False: stop)."""
    processes = epochs.plan.processes
    order = [(home + k) % processes for k in range(processes)]
    done = 0
    while epochs.advance():
        base = epochs.base
        if done < epochs.end:
            done = int(sync.load(control32, 2 * DONE))
        if done >= epochs.end:
            continue                               # a late process: this epoch is over
        while done < base:
            done = int(sync.await_change(control32, 2 * DONE, done, 2 * DONE_SLEEPERS, spin_ns, SLEEP))
            if done < base and (not is_open(control, run) or not keep_waiting()):
                return True
        cuts = epochs.cuts
        for p in order:
            first, stop, word = base + cuts[p], base + cuts[p + 1], counter_of(p)
            while first < stop:
                ticket = int(sync.claim_ticket(control, word, run, first, stop, holding))
                if ticket < 0:
                    if ticket == -2:                 # closed, or a newer run
                        return True
                    break
                ok = run_unit(epochs.units[ticket - base], epochs.frame)
                if ok:           # a failed unit is not done: its frame is the run's failed one
                    unit_done(control32, total)
                if holding >= 0:
                    sync.store(control, holding, 0)
                if not ok:
                    return False
    return True

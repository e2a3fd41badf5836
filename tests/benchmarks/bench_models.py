"""Scenario "models": the agent-model examples, timed as a user runs them.

- WolfSheep (examples/wolf_sheep.py, the large variant of ABMFrameworksComparison: 1000 sheep,
  500 wolves, 100 x 100 grass, 100 steps; births and deaths by kernel commands) on 0 and 2
  workers: the step loop's wall time, median of REPS seeds; the two must give the same world.
- WolfSheep by kernel commands against the same model hand-batched
  (tests/benchmarks/wolf_sheep_batched.py: the kernels fill buffers, Python applies them with
  despawn_batch / spawn_batch between frames), 0 workers, median of REPS seeds each, the two
  run seed by seed in alternating order; target
  <= 1.3x (issue 11). Their trajectories differ (newborns' ids key their random draws): the row
  says how many agent-steps each ran.
- Flocking (examples/flocking.py) at 400 birds x 100 steps and 100,000 birds x 10 steps, on 0
  and 2 workers.
The other ratios are workers=2 / workers=0 speed; no target holds them yet (the issue asks for
the timings). Each run builds its world first (untimed: Result.seconds is the step loop only).
"""

from __future__ import annotations

import statistics

from examples import flocking, wolf_sheep

from . import wolf_sheep_batched as batched_world
from .common import REPS, Row, Stats, fmt_stats

SCENARIO = "models"


def _wolf_sheep(workers: int) -> tuple[Stats, list]:
    results = [wolf_sheep.simulate(wolf_sheep.Config(seed=seed, workers=workers)) for seed in range(REPS)]
    return Stats([r.seconds for r in results]), results


def _commands_and_hand_batched() -> tuple[list, list]:
    """Both WolfSheep versions on 0 workers, seed by seed, in alternating order (so a spell of
    other load on this shared VM meets both alike): (results by commands, results hand-batched)."""
    commands, hand = [], []
    for seed in range(REPS):
        runs = [(commands, wolf_sheep.simulate), (hand, batched_world.simulate)]
        for results, simulate in runs if seed % 2 else runs[::-1]:
            results.append(simulate(wolf_sheep.Config(seed=seed)))
    return commands, hand


def _flocking(workers: int, birds: int, steps: int) -> Stats:
    return Stats([flocking.simulate(flocking.Config(birds=birds, steps=steps, seed=seed, workers=workers)).seconds
                  for seed in range(3)])


def run() -> list[Row]:
    rows = []
    wolf_sheep.simulate(wolf_sheep.Config(steps=2))            # compile, untimed
    batched_world.simulate(wolf_sheep.Config(steps=2))
    results_here, batched = _commands_and_hand_batched()
    here = Stats([r.seconds for r in results_here])
    there, results_there = _wolf_sheep(2)
    same = all(wolf_sheep.same_result(a, b) for a, b in zip(results_here, results_there, strict=True))
    rows.append(Row(SCENARIO, f"WolfSheep 1000+500, 100 steps, median of {REPS} seeds (same on 0/2 workers: {same})",
                    f"2 workers: {fmt_stats(there)}", f"0 workers: {fmt_stats(here)}",
                    here.median / there.median, "x (speed 2w/0w)", "timed (no target)", None))
    hand = Stats([r.seconds for r in batched])
    ratio = here.median / hand.median
    steps_cmd = sum(int(r.populations[:, :2].sum()) for r in results_here)
    steps_hand = sum(int(r.populations[:, :2].sum()) for r in batched)
    rows.append(Row(SCENARIO, f"WolfSheep by kernel commands vs hand-batched, 0 workers ({steps_cmd:,} vs "
                              f"{steps_hand:,} agent-steps)", f"commands: {fmt_stats(here)}",
                    f"despawn_batch/spawn_batch from Python: {fmt_stats(hand)}", ratio, "x hand-batched",
                    "<= 1.3x", ratio <= 1.3))
    for birds, steps in ((400, 100), (100_000, 10)):
        flocking.simulate(flocking.Config(birds=birds, steps=1))
        here = _flocking(0, birds, steps)
        there = _flocking(2, birds, steps)
        rows.append(Row(SCENARIO, f"Flocking {birds:,} birds x {steps} steps", f"2 workers: {fmt_stats(there)}",
                        f"0 workers: {fmt_stats(here)}", here.median / there.median, "x (speed 2w/0w)",
                        "timed (no target)", None))
    for row in rows:
        print(f"  {row.workload}: {row.ours} vs {row.baseline} -> {row.ratio:.3g} {row.ratio_label}", flush=True)
    per_step = statistics.median(r.seconds for r in results_here) / 100
    print(f"  (WolfSheep per step on 0 workers: {per_step * 1e3:.2f} ms)")
    return rows

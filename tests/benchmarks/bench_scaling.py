"""Scenario "scaling" (issue 5): move throughput against entity count.

Throughput = entity-updates per second of `move` (pos += vel * dt, two f32 fields each; see
bench_systems_defs.py) at 10^3, 10^4, 10^5 and 10^6 entities, for:
- ours, in this process: `world.step(dt=...)` with workers=0;
- ours, 2 workers: the same world with workers=2 (`step`, one dispatch per frame);
- bare numba: the same loop (`move_bare`) over private numpy arrays;
- esper: the anchors' idiomatic esper system (plain Python floats, ../../../shared/anchors/
  move.py), up to 10^5 entities only (about 70 ns per entity).
At each size the first three are timed in blocks of calls in alternation (paired.bench_paired),
esper after them on its own (common.bench: its Python objects evict ours from the caches).
The table is printed and plotted (log-log) to tests/benchmarks/scaling.png.
No target: the rows give ours/bare at each size as context.
"""

from __future__ import annotations

import pathlib

import numpy as np

import ecs

from . import bench_systems_defs as defs
from .common import EsperPosition, EsperVelocity, Position, Row, Velocity, bench, format_table, source_arrays
from .paired import TreeLoadMeter, bench_paired

SCENARIO = "scaling"
SIZES = (1_000, 10_000, 100_000, 1_000_000)
ESPER_MAX = 100_000
DT = 0.01
PLOT = pathlib.Path(__file__).with_name("scaling.png")
LABELS = ("ours, in-process", "ours, 2 workers", "bare numba loop", "esper")


def esper_move(esper: object, dt: float) -> None:
    for _, (p, v) in esper.get_components(EsperPosition, EsperVelocity):  # type: ignore[attr-defined]
        p.x += v.x * dt
        p.y += v.y * dt


def measure(n: int) -> tuple[list[float | None], float]:
    """Entity-updates per second of each implementation at n entities, and the other load."""
    import esper

    arrs = source_arrays(n)
    worlds = []
    for workers in (0, 2):
        world = ecs.World(workers=workers)
        world.spawn_batch(n, Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]))
        world.add_system(defs.move)
        worlds.append(world)
    block = np.empty(4 * n, np.float32)
    bare = [block[k * n:(k + 1) * n] for k in range(4)]
    for column, values in zip(bare, arrs, strict=True):
        column[:] = values
    fns = [lambda: worlds[0].step(dt=DT), lambda: worlds[1].step(dt=DT), lambda: defs.move_bare(*bare, DT)]
    try:
        with TreeLoadMeter() as load:
            stats = bench_paired(fns, blocks=True)
    finally:
        for world in worlds:
            world.close()
    if n <= ESPER_MAX:   # on its own: after an esper call, the next ~20 steps of ours ran up to 5x slower
        esper.switch_world("bench-scaling")
        for a, b, c, d in zip(*arrs.tolist(), strict=True):
            esper.create_entity(EsperPosition(a, b), EsperVelocity(c, d))
        try:
            stats.append(bench(lambda: esper_move(esper, DT)))
        finally:
            esper.switch_world("default")
            esper.delete_world("bench-scaling")
    rates: list[float | None] = [n / s.median for s in stats]
    rates += [None] * (len(LABELS) - len(rates))
    return rates, load.load


def plot(rates: dict[int, list[float | None]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    styles = (("o-", "tab:blue"), ("s-", "tab:orange"), ("^--", "tab:gray"), ("d-", "tab:red"))
    for k, (label, (marker, color)) in enumerate(zip(LABELS, styles, strict=True)):
        xs = [n for n in SIZES if rates[n][k] is not None]
        ax.plot(xs, [rates[n][k] for n in xs], marker, color=color, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("entities")
    ax.set_ylabel("entity updates per second (higher is better)")
    ax.set_title("move (pos += vel * dt), one step() a frame: throughput against entity count", fontsize=10)
    ax.grid(True, which="major", alpha=0.4)
    ax.grid(True, which="minor", alpha=0.1)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(PLOT)
    plt.close(fig)


def run() -> list[Row]:
    rates: dict[int, list[float | None]] = {}
    loads: dict[int, float] = {}
    for n in SIZES:
        rates[n], loads[n] = measure(n)
    cells = [[f"{n:,}", *("-" if r is None else f"{r:.3g}" for r in rates[n]), f"{loads[n]:.2f}"]
             for n in SIZES]
    print(f"## {SCENARIO}: move, entity updates per second (median of blocks of calls)")
    print(format_table(["entities", *LABELS, "other load"], cells))
    plot(rates)
    print(f"wrote {PLOT}")
    rows = []
    for n in SIZES:
        ours, two, bare, esper_rate = rates[n]
        assert ours is not None and two is not None and bare is not None
        esper_note = f"; esper {esper_rate:.3g}/s" if esper_rate is not None else ""
        rows.append(Row(SCENARIO, f"move @{n:,}: updates/s in-process (2 workers {two:.3g}/s{esper_note})",
                        f"{ours:.3g}/s", f"bare numba loop: {bare:.3g}/s", ours / bare, "x bare",
                        "(context, no target)", None, loads[n]))
    return rows

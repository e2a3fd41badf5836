"""Scenario "access": one entity's component read and written from Python.

Targets (issue 2): `world.get(e, Position)` and `world.set(e, Position(x=.., y=..))` cost under
2 us each; `set` is measured with the value built once outside the timed loop and with the value
built inside it. The baseline is esper on the same entity count: `component_for_entity` for get,
`add_component(e, value)` (replace the component) for set.
Each call visits a different entity, in random order, of a world of N_WORLD entities (so the
lookups are not all served from one cache line); the loop itself is inside both timings.
"""

from __future__ import annotations

import numpy as np

import ecs

from .common import (
    EsperPosition,
    EsperVelocity,
    LoadMeter,
    Position,
    Row,
    Velocity,
    bench,
    fmt_stats,
    source_arrays,
)

N_WORLD = 100_000
N_CALLS = 10_000
SCENARIO = "access"
LIMIT_S = 2e-6


def run() -> list[Row]:
    import esper

    arrs = source_arrays(N_WORLD)
    world = ecs.World()
    ids = world.spawn_batch(N_WORLD, Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]))
    rng = np.random.default_rng(11)
    pick = rng.choice(N_WORLD, N_CALLS, replace=False)
    ours_ids = ids[pick].tolist()
    xs, ys = rng.uniform(-1, 1, (2, N_CALLS)).tolist()

    esper.switch_world("bench-access")
    src = arrs.tolist()
    esper_all = [esper.create_entity(EsperPosition(a, b), EsperVelocity(c, d))
                 for a, b, c, d in zip(*src, strict=True)]
    esper_ids = [esper_all[k] for k in pick.tolist()]

    get, set_, cfe, add = world.get, world.set, esper.component_for_entity, esper.add_component
    value, esper_value = Position(x=0.5, y=0.25), EsperPosition(0.5, 0.25)

    def ours_get() -> None:
        for e in ours_ids:
            get(e, Position)

    def esper_get() -> None:
        for e in esper_ids:
            cfe(e, EsperPosition)

    def ours_set() -> None:
        for e in ours_ids:
            set_(e, value)

    def esper_set() -> None:
        for e in esper_ids:
            add(e, esper_value)

    def ours_set_build() -> None:
        for e, x, y in zip(ours_ids, xs, ys, strict=True):
            set_(e, Position(x=x, y=y))

    def esper_set_build() -> None:
        for e, x, y in zip(esper_ids, xs, ys, strict=True):
            add(e, EsperPosition(x=x, y=y))

    # correctness, untimed
    e = ours_ids[0]
    assert world.get(e, Position) == Position(x=arrs[0, pick[0]], y=arrs[1, pick[0]])
    ours_set_build()
    assert world.get(e, Position) == Position(x=xs[0], y=ys[0])

    cases = [("get(e, Position)", ours_get, esper_get, "component_for_entity"),
             ("set(e, value), value prebuilt", ours_set, esper_set, "add_component"),
             ("set(e, Position(x=.., y=..)), built in loop", ours_set_build, esper_set_build,
              "add_component(e, Position(..))")]
    rows = []
    for label, ours_fn, esper_fn, esper_label in cases:
        with LoadMeter() as load:
            ours = bench(ours_fn).scaled(1 / N_CALLS)
            base = bench(esper_fn).scaled(1 / N_CALLS)
        rows.append(Row(SCENARIO, f"{label}, {N_WORLD // 1000}k world", fmt_stats(ours),
                        f"esper {esper_label}: {fmt_stats(base)}", ours.median / base.median, "x esper",
                        "< 2 us per call", ours.median < LIMIT_S, load.load))
    world.close()
    esper.switch_world("default")
    esper.delete_world("bench-access")
    return rows

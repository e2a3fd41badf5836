"""Scenario "spatial": kernels/spatial.py's grid against the demo's own grid, on 1 core and 2.

Workload: the physics demo's first frame at 100,000 discs: positions uniform in the 1.6 x 1.0
box, velocities normal, radius from the demo's packing (0.08), so a grid of 2-radius cells
(~980k cells, as the demo's). One call = build the index, then for every disc find the
overlapping disc that approaches it fastest (the demo's collision query).
Baseline: the demo's grid (examples/physics_systems.py) in one process: physics.cell_ids,
spatial.count_shared, spatial.starts_from_counts, spatial.claim_slots, physics.snapshot (the
parallel build's steps, run as one chunk), then `physics.fastest_approach` for every slot.
Ours: `spatial.build_2d`, `spatial.gather` of the same four columns into slot order (the same
snapshot), then the same fastest-approach loop written on `spatial.neighbour_ranges_2d`.
Both find the same partner for every disc (checked, untimed). Timed in alternation
(paired.bench_paired), one process, no workers. Informational: the reusable one-call index
should cost about what the demo's build does.
On 2 cores: the demo's grid systems (clear_grid, count_cells, grid_starts, fill_grid) as a
world's step() over the same discs, World(workers=1) (one worker beside this process) against
workers=0; target >= 1.7x.
"""

from __future__ import annotations

import math

import numpy as np

from ecs.kernels import physics, spatial
from ecs.kernels._jit import jit

from .common import LoadMeter, Row, fmt_stats
from .paired import bench_paired

SCENARIO = "spatial"
N = 100_000
WIDTH, HEIGHT = 1.6, 1.0
RADIUS = math.sqrt(0.08 * WIDTH * HEIGHT / (math.pi * N))     # the demo's Scene.radius


@jit
def demo_fastest_all(diameter2, cell_size, ncx, ncy, cell_start, slot_state, slot_keys, best):
    """physics.fastest_approach for every slot of the demo's grid."""
    for k in range(best.shape[0]):
        best[k] = physics.fastest_approach(k, diameter2, cell_size, ncx, ncy, cell_start, slot_state, slot_keys)


@jit
def spatial_fastest_all(xs, ys, vxs, vys, geometry, cell_start, diameter2, best):
    """The same query on the spatial index: the slot approaching slot k fastest, -1 if none."""
    spatial.check_grid(geometry, cell_start)     # once a call: the per-query ranges trust it
    ranges = np.empty((spatial.MAX_RANGES_2D, 2), np.int64)
    for me in range(xs.shape[0]):
        xa, ya, vxa, vya = xs[me], ys[me], vxs[me], vys[me]
        m = spatial.neighbour_ranges_2d(xa, ya, geometry, cell_start, ranges)
        found = -1
        best_vn = 0.0
        for j in range(m):
            for k in range(ranges[j, 0], ranges[j, 1]):
                dx = xs[k] - xa
                dy = ys[k] - ya
                d2 = dx * dx + dy * dy
                if d2 >= diameter2 or d2 == 0.0:
                    continue
                d = math.sqrt(d2)
                vn = (vxs[k] - vxa) * (dx / d) + (vys[k] - vya) * (dy / d)
                if vn < best_vn:
                    found = k
                    best_vn = vn
        best[me] = found


def run() -> list[Row]:
    rng = np.random.default_rng(7)
    x = rng.uniform(RADIUS, WIDTH - RADIUS, N)
    y = rng.uniform(RADIUS, HEIGHT - RADIUS, N)
    vx, vy = rng.normal(0.0, 1.0, (2, N))
    diameter2 = 4.0 * RADIUS * RADIUS

    cell_size = 2.0 * RADIUS
    ncx, ncy = math.ceil(WIDTH / cell_size), math.ceil(HEIGHT / cell_size)
    demo_start = np.zeros(ncx * ncy + 1, np.int32)
    slot_state = np.empty((N, 4))
    slot_keys = np.empty(N, np.int64)
    demo_cells = np.empty(N, np.int32)
    demo_slots = np.empty(N, np.int32)
    cursor = np.empty(ncx * ncy, np.int32)
    ids = np.arange(N, dtype=np.int64)
    demo_best = np.empty(N, np.int64)

    geometry = spatial.make_grid([0.0, 0.0], [WIDTH, HEIGHT], 2.0 * RADIUS)
    cells = np.empty(N, np.int32)
    cell_start = np.empty(spatial.cell_count(geometry) + 1, np.int32)
    order = np.empty(N, np.int32)
    xs, ys, vxs, vys = (np.empty(N) for _ in range(4))
    best = np.empty(N, np.int64)

    def demo_build() -> None:
        spatial.clear_counts(demo_start)
        physics.cell_ids(x, y, cell_size, ncx, ncy, demo_cells)
        spatial.count_shared(demo_cells, demo_start)
        spatial.starts_from_counts(demo_start, cursor)
        spatial.claim_slots(demo_cells, cursor, demo_slots)
        physics.snapshot(demo_slots, x, y, vx, vy, ids, slot_state, slot_keys)

    def demo() -> None:
        demo_build()
        demo_fastest_all(diameter2, cell_size, ncx, ncy, demo_start, slot_state, slot_keys, demo_best)

    def ours() -> None:
        spatial.build_2d(x, y, geometry, cells, cell_start, order)
        for column, out in ((x, xs), (y, ys), (vx, vxs), (vy, vys)):
            spatial.gather(order, column, out)
        spatial_fastest_all(xs, ys, vxs, vys, geometry, cell_start, diameter2, best)

    def ours_build() -> None:
        spatial.build_2d(x, y, geometry, cells, cell_start, order)
        for column, out in ((x, xs), (y, ys), (vx, vxs), (vy, vys)):
            spatial.gather(order, column, out)

    # correctness, untimed: the same partner row for every disc
    demo()
    ours()
    demo_partner = np.full(N, -1, np.int64)
    hit = demo_best >= 0
    demo_partner[slot_keys[hit]] = slot_keys[demo_best[hit]]
    partner = np.full(N, -1, np.int64)
    hit = best >= 0
    partner[order[hit]] = order[best[hit]]
    assert np.array_equal(partner, demo_partner), "spatial and demo grids disagree on the partners"

    with LoadMeter() as load:
        mine, base = bench_paired([ours, demo])
        mine_build, base_build = bench_paired([ours_build, demo_build])
    shared, alone, shared_load = demo_grid_on_two_cores(x, y, vx, vy)
    cells_note = f"{spatial.cell_count(geometry) // 1000}k cells"
    return [
        Row(SCENARIO, f"build + fastest approach, {N // 1000}k discs, {cells_note}, 1 core", fmt_stats(mine),
            f"demo grid + fastest_approach: {fmt_stats(base)}", mine.median / base.median, "x demo",
            "(context, no target)", None, load.load),
        Row(SCENARIO, "build + snapshot in slot order only", fmt_stats(mine_build),
            f"demo grid build: {fmt_stats(base_build)}", mine_build.median / base_build.median, "x demo",
            "(context, no target)", None, load.load),
        Row(SCENARIO, f"demo grid systems, {N // 1000}k discs: step(), workers=1 (+ this process) vs workers=0",
            fmt_stats(shared), f"workers=0: {fmt_stats(alone)}", alone.median / shared.median, "x faster",
            ">= 1.7x", alone.median / shared.median >= 1.7, shared_load),
    ]


def demo_grid_on_two_cores(x, y, vx, vy):
    """step() of a world holding only the demo's grid systems over these discs, workers=1 and 0."""
    import ecs
    from examples import physics_systems as demo

    def world_of(workers: int) -> ecs.World:
        world = ecs.World(workers=workers)
        cell_size = 2.0 * RADIUS
        ncx, ncy = math.ceil(WIDTH / cell_size), math.ceil(HEIGHT / cell_size)
        res = world.resources
        res["cell_size"], res["ncx"], res["ncy"] = cell_size, ncx, ncy
        for name, array in demo.grid_arrays(ncx, ncy, N).items():
            res[name] = array
        for s in (demo.clear_grid, demo.count_cells, demo.grid_starts, demo.fill_grid):
            world.add_system(s)
        world.spawn_batch(N, demo.Position(x=x, y=y), demo.Velocity(x=vx, y=vy), demo.GridSlot(cell=0, slot=0))
        world.step()
        return world

    here, there = world_of(0), world_of(1)
    try:
        with LoadMeter() as load:
            alone, shared = bench_paired([here.step, there.step], blocks=True)
        assert np.array_equal(here.resources["cell_start"], there.resources["cell_start"])
    finally:
        here.close()
        there.close()
    return shared, alone, load.load


if __name__ == "__main__":
    from .common import results_table

    print(results_table(run()))

"""Scenario "spatial": kernels/spatial.py's grid against the demo's own (kernels/physics.py), 1 core.

Workload: the physics demo's first frame at 100,000 discs: positions uniform in the 1.6 x 1.0
box, velocities normal, radius from the demo's packing (0.08), so a grid of 2-radius cells
(~980k cells, as the demo's). One call = build the index, then for every disc find the
overlapping disc that approaches it fastest (the demo's collision query).
Baseline: `physics.build_grid` (counting sort plus a snapshot of x, y, vx, vy in grid order),
then `physics.fastest_approach` for every grid slot.
Ours: `spatial.build_2d`, `spatial.gather` of the same four columns into slot order (the same
snapshot), then the same fastest-approach loop written on `spatial.neighbour_ranges_2d`.
Both find the same partner for every disc (checked, untimed). Timed in alternation
(paired.bench_paired), one process, no workers. Informational: the reusable index (any
dimension, periodic axes, chunked builds) should cost about what the hand-fitted one does.
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
def demo_fastest_all(diameter2, cell_size, ncx, ncy, cell_start, cell_state, best):
    """physics.fastest_approach for every slot of the demo's grid."""
    for k in range(best.shape[0]):
        best[k] = physics.fastest_approach(k, diameter2, cell_size, ncx, ncy, cell_start, cell_state)


@jit
def spatial_fastest_all(xs, ys, vxs, vys, geometry, cell_start, diameter2, best):
    """The same query on the spatial index: the slot approaching slot k fastest, -1 if none."""
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
    demo_start = np.zeros(ncx * ncy + 2, np.int32)
    cell_state = np.empty((N, 4))
    cell_items = np.empty(N, np.int32)
    table_row = np.empty(N, np.int32)
    demo_best = np.empty(N, np.int64)

    geometry = spatial.make_grid([0.0, 0.0], [WIDTH, HEIGHT], 2.0 * RADIUS)
    cells = np.empty(N, np.int32)
    cell_start = np.empty(spatial.cell_count(geometry) + 1, np.int32)
    order = np.empty(N, np.int32)
    xs, ys, vxs, vys = (np.empty(N) for _ in range(4))
    best = np.empty(N, np.int64)

    def demo() -> None:
        physics.build_grid(x, y, vx, vy, table_row, cell_size, ncx, ncy, demo_start, cell_state, cell_items)
        demo_fastest_all(diameter2, cell_size, ncx, ncy, demo_start, cell_state, demo_best)

    def ours() -> None:
        spatial.build_2d(x, y, geometry, cells, cell_start, order)
        for column, out in ((x, xs), (y, ys), (vx, vxs), (vy, vys)):
            spatial.gather(order, column, out)
        spatial_fastest_all(xs, ys, vxs, vys, geometry, cell_start, diameter2, best)

    def demo_build() -> None:
        physics.build_grid(x, y, vx, vy, table_row, cell_size, ncx, ncy, demo_start, cell_state, cell_items)

    def ours_build() -> None:
        spatial.build_2d(x, y, geometry, cells, cell_start, order)
        for column, out in ((x, xs), (y, ys), (vx, vxs), (vy, vys)):
            spatial.gather(order, column, out)

    # correctness, untimed: the same partner row for every disc
    demo()
    ours()
    demo_partner = np.full(N, -1, np.int64)
    hit = demo_best >= 0
    demo_partner[cell_items[hit]] = cell_items[demo_best[hit]]
    partner = np.full(N, -1, np.int64)
    hit = best >= 0
    partner[order[hit]] = order[best[hit]]
    assert np.array_equal(partner, demo_partner), "spatial and demo grids disagree on the partners"

    with LoadMeter() as load:
        mine, base = bench_paired([ours, demo])
        mine_build, base_build = bench_paired([ours_build, demo_build])
    cells_note = f"{spatial.cell_count(geometry) // 1000}k cells"
    return [
        Row(SCENARIO, f"build + fastest approach, {N // 1000}k discs, {cells_note}, 1 core", fmt_stats(mine),
            f"demo build_grid + fastest_approach: {fmt_stats(base)}", mine.median / base.median, "x demo",
            "(context, no target)", None, load.load),
        Row(SCENARIO, "build + snapshot in slot order only", fmt_stats(mine_build),
            f"demo build_grid: {fmt_stats(base_build)}", mine_build.median / base_build.median, "x demo",
            "(context, no target)", None, load.load),
    ]


if __name__ == "__main__":
    from .common import results_table

    print(results_table(run()))

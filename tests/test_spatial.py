"""kernels/spatial.py against numpy twins and a brute-force O(n^2) neighbour search.

Sizes 0, 1, 63, 64, 65 and 5,000 points, 2-D and 3-D, bounded, periodic and mixed axes. The
point sets hold, besides random points, points exactly on cell borders, on both edges of the
box, pairs exactly one radius apart, points outside the box (far outside on periodic axes) and
NaN. The twins are whole-array numpy (np.argsort for the sort, every pair for the neighbours)
and share no code with the kernels; distances are computed with the same operations in the
same order, so "within" agrees to the last bit, boundary pairs included.
The chunked build (what workers do) must equal the one-call build bit for bit, for any
chunking and any order the chunks run in.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

import numpy as np
import pytest

from ecs.kernels import spatial

SIZES = [0, 1, 63, 64, 65, 5_000]
LO = np.array([-1.0, 0.5, 2.0])
LENGTH = np.array([2.0, 1.3, 1.7])
RADIUS = 0.11
LAYOUTS = {                       # name -> (dimensions, periodic flags)
    "2d-bounded": (2, (False, False)),
    "2d-periodic": (2, (True, True)),
    "2d-mixed": (2, (True, False)),
    "3d-bounded": (3, (False, False, False)),
    "3d-periodic": (3, (True, True, True)),
    "3d-mixed": (3, (False, True, True)),
}


# ---------------------------------------------------------------- numpy twins
def cells_of(points: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    cell = np.zeros(len(points), np.int64)
    for axis in reversed(range(geometry.shape[0])):
        lo, _, n, scale, periodic = geometry[axis]
        n = int(n)
        t = (points[:, axis].astype(np.float64) - lo) * scale
        if periodic:
            t = t - n * np.floor(t / n)
        with np.errstate(invalid="ignore"):
            c = np.where(t >= 0.0, np.where(t < n, np.floor(np.where(t < n, t, 0.0)), n - 1), 0).astype(np.int64)
        cell = cell * n + c
    return cell


def build(points: np.ndarray, geometry: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cells = cells_of(points, geometry)
    order = np.argsort(cells, kind="stable")
    counts = np.bincount(cells, minlength=spatial.cell_count(geometry))
    return cells, np.concatenate([[0], np.cumsum(counts)]), order


def distance2(q: np.ndarray, p: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    """(len(q), len(p)) squared distances, each axis's term added in order, as the kernels do."""
    total = np.zeros((len(q), len(p)))
    for axis in range(geometry.shape[0]):
        d = p[None, :, axis].astype(np.float64) - q[:, None, axis].astype(np.float64)
        if geometry[axis, spatial.PERIODIC]:
            length = geometry[axis, spatial.LENGTH]
            d = d - length * np.floor(d / length + 0.5)
        total = total + d * d
    return total


def brute_within(q: np.ndarray, p: np.ndarray, geometry: np.ndarray, radius: float) -> list[np.ndarray]:
    """For each query, the indices of the points within radius, ascending."""
    out = []
    for start in range(0, len(q), 256):
        with np.errstate(invalid="ignore"):
            near = distance2(q[start:start + 256], p, geometry) <= radius * radius
        out += [np.flatnonzero(row) for row in near]
    return out


def around(cell: int, geometry: np.ndarray) -> set[int]:
    """The cells whose coordinates are each within 1 of cell's (wrapped or clipped)."""
    ns = geometry[:, spatial.NCELLS].astype(int)
    coords, c = [], cell
    for n in ns:
        coords.append(c % n)
        c //= n
    axes = []
    for axis, (c, n) in enumerate(zip(coords, ns, strict=True)):
        if geometry[axis, spatial.PERIODIC]:
            axes.append({(c + o) % n for o in (-1, 0, 1)})
        else:
            axes.append({c + o for o in (-1, 0, 1) if 0 <= c + o < n})
    out = set()
    for combo in itertools.product(*axes):
        cell_id = 0
        for c, n in zip(reversed(combo), reversed(ns), strict=True):
            cell_id = cell_id * n + c
        out.add(cell_id)
    return out


# ---------------------------------------------------------------- data
def grid_of(layout: str, radius: float = RADIUS) -> np.ndarray:
    d, periodic = LAYOUTS[layout]
    return spatial.make_grid(LO[:d], LO[:d] + LENGTH[:d], radius, periodic)


def points_of(layout: str, n: int, seed: int = 0) -> np.ndarray:
    """n points (n, d): border, edge, outside, one-radius pairs and NaN points first, then random."""
    geometry = grid_of(layout)
    d = geometry.shape[0]
    rng = np.random.default_rng(seed)
    lo, length = geometry[:, spatial.LO], geometry[:, spatial.LENGTH]
    width = length / geometry[:, spatial.NCELLS]
    special = [lo.copy(), lo + length, lo + width, lo + 3 * width, lo + length - width]   # borders, edges
    base = lo + rng.random(d) * length
    special += [base, base + np.r_[RADIUS, np.zeros(d - 1)], base + np.r_[np.zeros(d - 1), RADIUS]]   # one apart
    special += [lo + length * np.r_[1.0, rng.random(d - 1)], lo + width * np.r_[5.0, 2.0, 1.0][:d]]
    far = np.where(geometry[:, spatial.PERIODIC] != 0, 3.0 * length, 0.4)
    special += [lo - far * 0.5, lo + length + far, lo + rng.random(d) * length - far]       # outside
    special += [np.r_[np.nan, base[1:]]]
    rand = lo + rng.random((max(n, 0), d)) * length
    pts = np.concatenate([np.array(special), rand])[:n]
    return pts[rng.permutation(n)] if n else pts.reshape(0, d)


def columns(points: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(points[:, a]) for a in range(points.shape[1])]


def build_kernel(points: np.ndarray, geometry: np.ndarray):
    n = len(points)
    cells = np.empty(n, np.int64)
    cell_start = np.empty(spatial.cell_count(geometry) + 1, np.int64)
    order = np.empty(n, np.int64)
    build = spatial.build_2d if geometry.shape[0] == 2 else spatial.build_3d
    build(*columns(points), geometry, cells, cell_start, order)
    return cells, cell_start, order


def sorted_columns(points: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    outs = []
    for col in columns(points):
        out = np.empty_like(col)
        spatial.gather(order, col, out)
        outs.append(out)
    return outs


# ---------------------------------------------------------------- build
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", SIZES)
def test_build_matches_numpy_twin(layout: str, n: int) -> None:
    geometry = grid_of(layout)
    points = points_of(layout, n)
    cells, cell_start, order = build_kernel(points, geometry)
    want_cells, want_start, want_order = build(points, geometry)
    np.testing.assert_array_equal(cells, want_cells)
    np.testing.assert_array_equal(cell_start, want_start)
    np.testing.assert_array_equal(order, want_order)
    cell_of = spatial.cell_of_2d if geometry.shape[0] == 2 else spatial.cell_of_3d
    for i in range(min(n, 70)):
        assert cell_of(*points[i], geometry) == cells[i]


@pytest.mark.parametrize("layout", ["2d-bounded", "2d-periodic", "3d-mixed"])
@pytest.mark.parametrize("n", SIZES)
def test_chunked_build_equals_one_call_build_bit_for_bit(layout: str, n: int) -> None:
    geometry = grid_of(layout)
    points = points_of(layout, n, seed=3)
    cols = columns(points)
    want_cells, want_start, want_order = build_kernel(points, geometry)
    ncells = spatial.cell_count(geometry)
    rng = np.random.default_rng(n)
    cell_ids = spatial.cell_ids_2d if geometry.shape[0] == 2 else spatial.cell_ids_3d
    for nchunks in (1, 2, 3, 8):
        cuts = np.sort(rng.integers(0, n + 1, nchunks - 1))                  # empty chunks too
        bounds = list(zip(np.r_[0, cuts], np.r_[cuts, n], strict=True))
        cells = np.full(n, -1, np.int64)
        counts = np.full((nchunks, ncells), -7, np.int64)                    # garbage: overwritten
        run_order = rng.permutation(nchunks)                                 # workers in any order
        for k in run_order:
            a, b = bounds[k]
            cell_ids(*[c[a:b] for c in cols], geometry, cells[a:b])
            spatial.count_cells(cells[a:b], counts[k])
        cell_start = np.empty(ncells + 1, np.int64)
        chunk_start = np.empty_like(counts)
        spatial.prefix_counts(counts, cell_start, chunk_start)
        order = np.full(n, -1, np.int64)
        for k in run_order:
            a, b = bounds[k]
            spatial.scatter_rows(cells[a:b], a, chunk_start[k], order)
        np.testing.assert_array_equal(cells, want_cells)
        np.testing.assert_array_equal(cell_start, want_start)
        np.testing.assert_array_equal(order, want_order)


def test_int32_index_arrays_and_float32_columns_give_the_same_index() -> None:
    geometry = grid_of("2d-periodic")
    points = points_of("2d-periodic", 5_000).astype(np.float32)
    cells = np.empty(5_000, np.int32)
    cell_start = np.empty(spatial.cell_count(geometry) + 1, np.int32)
    order = np.empty(5_000, np.int32)
    spatial.build_2d(*columns(points), geometry, cells, cell_start, order)
    want_cells, want_start, want_order = build(points, geometry)
    np.testing.assert_array_equal(cells, want_cells)
    np.testing.assert_array_equal(cell_start, want_start)
    np.testing.assert_array_equal(order, want_order)


def test_points_on_borders_and_edges_go_to_the_upper_cell_or_wrap() -> None:
    bounded = spatial.make_grid([0.0, 0.0], [1.0, 1.0], 0.25)                 # 3 x 3 cells of 1/3
    periodic = spatial.make_grid([0.0, 0.0], [1.0, 1.0], 0.25, periodic=True)
    assert spatial.cell_of_2d(0.0, 0.0, bounded) == 0
    assert spatial.cell_of_2d(1.0, 1.0, bounded) == 8                       # upper edge: last cell
    assert spatial.cell_of_2d(1.0, 1.0, periodic) == 0                      # upper edge is the lower
    assert spatial.cell_of_2d(0.5, 0.0, bounded) == 1
    assert spatial.cell_of_2d(-5.0, 7.0, bounded) == 6                      # outside: clamped
    assert spatial.cell_of_2d(-0.1, 2.5, periodic) == spatial.cell_of_2d(0.9, 0.5, periodic)
    assert spatial.cell_of_2d(np.nan, 0.5, bounded) == 3
    quarter = spatial.make_grid([0.0, 0.0], [1.0, 1.0], 0.2)                # 4 x 4 cells of 1/4: exact
    assert spatial.cell_of_2d(0.25, 0.75, quarter) == 3 * 4 + 1


def test_gather_puts_a_column_in_slot_order() -> None:
    values = np.arange(65, dtype=np.float64) * 1.5
    order = np.random.default_rng(1).permutation(65)
    out = np.empty(65)
    spatial.gather(order, values, out)
    np.testing.assert_array_equal(out, values[order])


# ---------------------------------------------------------------- neighbours
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("n", SIZES)
def test_count_and_list_within_match_brute_force(layout: str, n: int) -> None:
    geometry = grid_of(layout)
    points = points_of(layout, n)
    _, cell_start, order = build_kernel(points, geometry)
    sorted_cols = sorted_columns(points, order)
    queries = np.concatenate([points, points_of(layout, 40, seed=9)])       # the points and others
    qcols = columns(queries)
    count = spatial.count_within_2d if geometry.shape[0] == 2 else spatial.count_within_3d
    listing = spatial.list_within_2d if geometry.shape[0] == 2 else spatial.list_within_3d
    for radius in (RADIUS, RADIUS / 3):
        want = brute_within(queries, points, geometry, radius)
        counts = np.full(len(queries), -1, np.int64)
        total = count(*qcols, *sorted_cols, geometry, cell_start, radius, counts)
        np.testing.assert_array_equal(counts, [len(w) for w in want])
        assert total == counts.sum()
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        slots = np.full(total, -1, np.int64)
        assert listing(*qcols, *sorted_cols, geometry, cell_start, radius, starts, slots) == total
        for i, w in enumerate(want):
            np.testing.assert_array_equal(np.sort(order[slots[starts[i]:starts[i] + counts[i]]]), w)


def test_a_pair_exactly_one_radius_apart_is_within() -> None:
    geometry = spatial.make_grid([0.0, 0.0], [1.0, 1.0], 0.25)
    xs, ys = np.array([0.25, 0.5]), np.array([0.5, 0.5])                     # cells 0 and 1, 0.25 apart
    assert xs[1] - xs[0] == 0.25
    cells, cell_start, order = np.empty(2, np.int64), np.empty(10, np.int64), np.empty(2, np.int64)
    spatial.build_2d(xs, ys, geometry, cells, cell_start, order)
    counts = np.empty(2, np.int64)
    spatial.count_within_2d(xs, ys, xs[order], ys[order], geometry, cell_start, 0.25, counts)
    np.testing.assert_array_equal(counts, [2, 2])


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (2, 1), (3, 2), (4, 5), (2, 3, 4), (5, 1, 4), (4, 4, 4)])
def test_neighbour_cells_and_ranges_cover_the_cells_around_once(shape: tuple[int, ...], periodic: bool) -> None:
    d = len(shape)
    # width-1 cells, by hand: make_grid keeps 2 * radius <= the length of a periodic axis
    geometry = np.array([(0.0, n, n, 1.0, float(periodic)) for n in shape])
    ncells = spatial.cell_count(geometry)
    cell_start = np.arange(ncells + 1, dtype=np.int64) * 2                   # two slots per cell
    cell_start[ncells // 2 + 1:] -= 2                                        # and one empty cell
    cells_out = np.empty(spatial.MAX_CELLS_3D, np.int64)
    ranges = np.empty((spatial.MAX_RANGES_3D, 2), np.int64)
    for cell in range(ncells):
        coords, c = [], cell
        for n in shape:
            coords.append(c % n + 0.5)                                      # the cell's centre
            c //= n
        if d == 2:
            m = spatial.neighbour_cells_2d(*coords, geometry, cells_out)
            r = spatial.neighbour_ranges_2d(*coords, geometry, cell_start, ranges)
            assert r <= spatial.MAX_RANGES_2D
        else:
            m = spatial.neighbour_cells_3d(*coords, geometry, cells_out)
            r = spatial.neighbour_ranges_3d(*coords, geometry, cell_start, ranges)
        want = around(cell, geometry)
        assert sorted(cells_out[:m].tolist()) == sorted(want)                # distinct cells, no repeats
        slots = np.concatenate([np.arange(a, b) for a, b in ranges[:r]]) if r else np.zeros(0, np.int64)
        want_slots = np.concatenate([np.arange(cell_start[c], cell_start[c + 1]) for c in sorted(want)])
        np.testing.assert_array_equal(np.sort(slots), want_slots)           # every slot once
        assert np.all(ranges[:r, 1] >= ranges[:r, 0])
        x_wraps = periodic and shape[0] > 3 and cell % shape[0] in (0, shape[0] - 1)
        assert r == len({c // shape[0] for c in want}) * (2 if x_wraps else 1)   # a range per row, 2 if wrapped


# ---------------------------------------------------------------- geometry and errors
@pytest.mark.parametrize("radius", [0.1, 0.11, 1 / 3, 0.25, 0.5, 0.99, 2.0])
def test_make_grid_picks_the_most_cells_at_least_a_radius_wide(radius: float) -> None:
    geometry = spatial.make_grid([0.0, -1.0, 5.0], [1.0, 1.0, 5.3], radius)
    for _lo, length, n, scale, periodic in geometry:
        assert n >= 1 and periodic == 0.0
        assert n == 1 or length / n >= radius * (1 + spatial.MARGIN)
        assert length / (n + 1) < radius * (1 + spatial.MARGIN)
        assert scale == n / length
    assert spatial.cell_count(geometry) == int(np.prod(geometry[:, spatial.NCELLS]))


def test_make_grid_rejects_boxes_and_radii_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="2 or 3 coordinates"):
        spatial.make_grid([0.0], [1.0], 0.1)
    with pytest.raises(ValueError, match="axis 1 .* hi must exceed lo"):
        spatial.make_grid([0.0, 1.0], [1.0, 1.0], 0.1)
    with pytest.raises(ValueError, match="positive finite"):
        spatial.make_grid([0.0, 0.0], [1.0, 1.0], 0.0)
    with pytest.raises(ValueError, match="half the periodic axis 0"):
        spatial.make_grid([0.0, 0.0], [1.0, 3.0], 0.6, periodic=[True, False])
    with pytest.raises(ValueError, match="one flag or 2 flags"):
        spatial.make_grid([0.0, 0.0], [1.0, 1.0], 0.1, periodic=[True])
    with pytest.raises(ValueError, match="more than"):
        spatial.make_grid([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 1e-4)
    for radius in (1e-12, 1e-300):    # counts past int64 on one axis, named as they are
        with pytest.raises(ValueError, match=r"makes (\d+|1e\+300) cells on axis 0 alone, more than 2147483646"):
            spatial.make_grid([0.0, 0.0], [1.0, 1.0], radius)
    with pytest.raises(ValueError, match=r"makes 4294967296 cells on axis 0 alone"):
        spatial.make_grid([0.0, 0.0], [2.0**32 * (1 + spatial.MARGIN), 1.0], 1.0)


@pytest.mark.parametrize("periodic", [False, True])
def test_a_radius_wider_than_the_box_gives_one_cell_that_the_kernels_take(periodic: bool) -> None:
    """make_grid's single cell (its neighbour cells are every cell) serves any radius it allows."""
    extent = 3.0 if periodic else 1.0
    radius = 1.4 if periodic else 2.0
    geometry = spatial.make_grid([0.0, 0.0], [extent, extent], radius, periodic=periodic)
    assert (geometry[:, spatial.NCELLS] <= (3 if periodic else 1)).all()
    points = np.random.default_rng(3).uniform(0.0, extent, (50, 2))
    _, cell_start, order = build_kernel(points, geometry)
    counts = np.empty(50, np.int64)
    spatial.count_within_2d(*columns(points), *sorted_columns(points, order), geometry, cell_start, radius, counts)
    np.testing.assert_array_equal(counts, [len(w) for w in brute_within(points, points, geometry, radius)])


def test_kernels_reject_a_radius_wider_than_a_cell_and_indexes_that_do_not_fit() -> None:
    geometry = spatial.make_grid([0.0, 0.0], [1.0, 1.0], 0.25)               # cells 1/3 wide
    xs = np.array([0.1, 0.2])
    cells, cell_start, order = np.empty(2, np.int64), np.empty(10, np.int64), np.empty(2, np.int64)
    spatial.build_2d(xs, xs, geometry, cells, cell_start, order)
    counts = np.empty(2, np.int64)
    with pytest.raises(ValueError, match="exceeds the cell width"):
        spatial.count_within_2d(xs, xs, xs, xs, geometry, cell_start, 1 / 3, counts)
    with pytest.raises(ValueError, match="slots is too small"):
        spatial.list_within_2d(xs, xs, xs, xs, geometry, cell_start, 0.25, np.zeros(2, np.int64),
                               np.empty(1, np.int64))
    with pytest.raises(ValueError, match="ncells \\+ 1 entries"):
        spatial.build_2d(xs, xs, geometry, cells, np.empty(9, np.int64), order)
    with pytest.raises(ValueError, match="outside the grid"):
        spatial.sort_by_cell(np.array([0, 9]), cell_start, order)
    with pytest.raises(ValueError, match="outside the grid"):
        spatial.count_cells(np.array([-1]), np.empty(9, np.int64))
    with pytest.raises(ValueError, match="dimensions"):
        spatial.build_3d(xs, xs, xs, geometry, cells, cell_start, order)
    periodic = spatial.make_grid([0.0, 0.0], [1.0, 3.0], 0.5, periodic=True)    # 1 x 5 cells
    assert periodic[0, spatial.NCELLS] == 1
    with pytest.raises(ValueError, match="half the length of periodic axis 0 .*0.55, 1.0"):
        spatial.count_within_2d(xs, xs, xs, xs, periodic, np.zeros(6, np.int64), 0.55, counts)
    for radius in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="the radius must be a positive number"):
            spatial.count_within_2d(xs, xs, xs, xs, geometry, cell_start, radius, counts)


@pytest.mark.parametrize("layout", ["2d-bounded", "3d-mixed"])
@pytest.mark.parametrize("n", SIZES)
def test_shared_build_gives_each_cell_its_points_in_any_chunking_and_order(layout: str, n: int) -> None:
    """count_shared / starts_from_counts / claim_slots / place, chunk by chunk in a random order:
    the same cell_start as the one-call build, and each cell's slots hold exactly its points."""
    geometry = grid_of(layout)
    points = points_of(layout, n, seed=5)
    cols = columns(points)
    _, want_start, want_order = build_kernel(points, geometry)
    ncells = spatial.cell_count(geometry)
    rng = np.random.default_rng(n + 1)
    cell_ids = spatial.cell_ids_2d if geometry.shape[0] == 2 else spatial.cell_ids_3d
    for nchunks in (1, 3, 8):
        cuts = np.sort(rng.integers(0, n + 1, nchunks - 1))
        bounds = list(zip(np.r_[0, cuts], np.r_[cuts, n], strict=True))
        cells = np.full(n, -1, np.int32)
        cell_start = np.full(ncells + 1, 99, np.int32)
        cursor = np.empty(ncells, np.int32)
        slots = np.full(n, -1, np.int32)
        ids = np.arange(n, dtype=np.int64)
        slot_ids = np.full(n, -1, np.int64)
        spatial.clear_counts(cell_start)
        for k in rng.permutation(nchunks):
            a, b = bounds[k]
            cell_ids(*[c[a:b] for c in cols], geometry, cells[a:b])
            spatial.count_shared(cells[a:b], cell_start)
        spatial.starts_from_counts(cell_start, cursor)
        for k in rng.permutation(nchunks):
            a, b = bounds[k]
            spatial.claim_slots(cells[a:b], cursor, slots[a:b])
            spatial.place(slots[a:b], ids[a:b], slot_ids)
        np.testing.assert_array_equal(cell_start, want_start)
        np.testing.assert_array_equal(cursor, want_start[1:])              # every slot taken
        assert sorted(slots.tolist()) == list(range(n))
        for c in np.flatnonzero(np.diff(want_start))[:200]:
            a, b = want_start[c], want_start[c + 1]
            assert sorted(slot_ids[a:b].tolist()) == sorted(want_order[a:b].tolist())


def at_once(callers: int, kernel: Any, *args: Any) -> None:
    """Call `kernel(*args)` from `callers` threads released together (the kernels release the
    GIL, so the calls overlap)."""
    go = threading.Barrier(callers)

    def call() -> None:
        go.wait()
        kernel(*args)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("ncells", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5, 100_003])
def test_the_running_sum_shared_by_block_claims_equals_the_serial_one(ncells: int) -> None:
    """count_shared_blocks per chunk, then starts_from_blocks called by one caller, by several
    in turn (the later ones find nothing left) and by four threads at once (the kernels release
    the GIL): the cell_start and cursor of count_shared + starts_from_counts, whoever ran which
    block; block_counts hold each block's points."""
    rng = np.random.default_rng(ncells)
    n = 3 * ncells + 7 if ncells else 0
    cells = rng.integers(0, max(ncells, 1), n).astype(np.int32)
    want = np.zeros(ncells + 1, np.int32)
    spatial.count_shared(cells, want)
    want_cursor = np.empty(ncells, np.int32)
    spatial.starts_from_counts(want, want_cursor)
    nblocks = spatial.blocks_of(ncells)
    for callers, threaded in ((1, False), (3, False), (4, True)):
        cell_start = np.zeros(ncells + 1, np.int32)
        block_counts = np.zeros(nblocks, np.int64)
        for a, b in ((0, n // 3), (n // 3, n)):
            spatial.count_shared_blocks(cells[a:b], cell_start, block_counts)
        np.testing.assert_array_equal(block_counts, np.bincount(cells >> spatial.BLOCK_SHIFT, minlength=nblocks))
        cursor = np.full(ncells, -1, np.int32)
        claim = np.zeros(1, np.int64)
        if threaded:
            at_once(callers, spatial.starts_from_blocks, cell_start, cursor, block_counts, claim)
        else:
            for _ in range(callers):
                spatial.starts_from_blocks(cell_start, cursor, block_counts, claim)
        np.testing.assert_array_equal(cell_start, want)
        np.testing.assert_array_equal(cursor, want_cursor)
        assert claim[0] == nblocks + callers             # each caller's last claim found nothing


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 5, 100_003])
def test_clear_shared_zeroes_everything_once_a_round_whoever_claims(size: int) -> None:
    """clear_shared called by one caller, by several in turn and by four threads at once zeroes
    every entry (twin: values[:] = 0); another call with the round's tag finds nothing left;
    a new tag starts a new round, also after a round cut short."""
    nblocks = spatial.blocks_of(size)
    claim = np.zeros(1, np.int64)
    for tag, (callers, threaded) in enumerate(((1, False), (3, False), (4, True)), start=1):
        values = np.full(size, 7, np.int32)
        if threaded:
            at_once(callers, spatial.clear_shared, values, claim, tag)
        else:
            for _ in range(callers):
                spatial.clear_shared(values, claim, tag)
        assert not values.any()
        assert claim[0] == ((tag << 32) | nblocks if nblocks else 0)   # nothing to claim: untouched
        values[:] = 7
        spatial.clear_shared(values, claim, tag)          # the round is done: nothing is cleared
        assert (values == 7).all()
    claim[0] = (9 << 32) | min(1, nblocks)                # round 9 cut short after its first block
    spatial.clear_shared(values, claim, 2**40 + 10)       # tags keep their low 31 bits
    assert not values.any()
    assert claim[0] == ((10 << 32) | nblocks if nblocks else 9 << 32)


def test_the_block_kernels_refuse_short_arrays_and_outside_cells() -> None:
    cell_start = np.zeros(4097 + 1, np.int32)
    with pytest.raises(ValueError, match="count_shared_blocks: block_counts needs an entry per block of cells"):
        spatial.count_shared_blocks(np.zeros(3, np.int32), cell_start, np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="count_shared_blocks: a cell id is outside the grid"):
        spatial.count_shared_blocks(np.array([4097], np.int32), cell_start, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="starts_from_blocks: cursor needs an entry per cell"):
        spatial.starts_from_blocks(cell_start, np.zeros(4096, np.int32), np.zeros(2, np.int64), np.zeros(1, np.int64))
    with pytest.raises(ValueError, match="starts_from_blocks: block_counts needs an entry per block of cells"):
        spatial.starts_from_blocks(cell_start, np.zeros(4097, np.int32), np.zeros(1, np.int64), np.zeros(1, np.int64))


def test_count_shared_refuses_a_cell_outside_the_grid() -> None:
    cell_start = np.zeros(5, np.int64)
    with pytest.raises(ValueError, match="count_shared: a cell id is outside the grid"):
        spatial.count_shared(np.array([0, 4], np.int64), cell_start)
    with pytest.raises(ValueError, match="starts_from_counts: cursor needs an entry per cell"):
        spatial.starts_from_counts(cell_start, np.zeros(3, np.int64))


def test_kernels_refuse_outputs_indexes_and_geometries_that_would_reach_past_an_array() -> None:
    """numba checks no bounds: every kernel compares the lengths and indices it writes or reads
    by, so a short output, a cell_start of another grid or a geometry make_grid would not build
    is a ValueError, never a write past an array's end (the entries after each view given as
    an output stay zero; one raised mid-way leaves the output's earlier entries written)."""
    geometry = spatial.make_grid([0.0, 0.0], [100.0, 100.0], 1.0)            # 99 x 99 cells
    ncells = spatial.cell_count(geometry)
    xs = np.array([1.5, 50.5, 99.5])
    cells, cell_start, order = np.empty(3, np.int64), np.empty(ncells + 1, np.int64), np.empty(3, np.int64)
    spatial.build_2d(xs, xs, geometry, cells, cell_start, order)
    backing = np.zeros(8, np.int64)
    with pytest.raises(ValueError, match=r"count_within/list_within \(out, starts\): an output array has 1 entries"):
        spatial.count_within_2d(xs, xs, xs, xs, geometry, cell_start, 1.0, backing[:1])
    with pytest.raises(ValueError, match="gather: an output array has 1 entries, 3 are needed"):
        spatial.gather(order, xs, np.zeros(8)[:1])
    with pytest.raises(ValueError, match="gather: an index in order is outside values"):
        spatial.gather(np.array([0, 3]), xs, np.zeros(2))
    with pytest.raises(ValueError, match="place: a slot is outside out"):
        spatial.place(np.array([0, 5]), xs[:2], backing[:3])
    with pytest.raises(ValueError, match="scatter_rows: a slot is outside order"):
        spatial.scatter_rows(np.array([0]), 0, np.array([7]), backing[:2])
    with pytest.raises(ValueError, match="scatter_rows: a cell id is outside the grid"):
        spatial.scatter_rows(np.array([1]), 0, np.array([0]), backing[:2])
    with pytest.raises(ValueError, match="claim_slots: a cell id is outside the grid"):
        spatial.claim_slots(np.array([4]), np.zeros(2, np.int64), backing[:1])
    with pytest.raises(ValueError, match="neighbour_cells_2d: out must have 9 entries or more"):
        spatial.neighbour_cells_2d(50.0, 50.0, geometry, backing[:2])
    assert not backing[3:].any()
    ranges = np.zeros((spatial.MAX_RANGES_2D, 2), np.int64)
    with pytest.raises(ValueError, match="cell_start has 17 entries, the grid 9801 cells"):
        spatial.neighbour_ranges_2d(50.0, 50.0, geometry, np.zeros(17, np.int64), ranges)
    with pytest.raises(ValueError, match=r"neighbour_ranges_2d: out must have 6 rows of 2 entries or more"):
        spatial.neighbour_ranges_2d(50.0, 50.0, geometry, cell_start, ranges[:2])
    for bad in (0.0, -3.0, float("nan"), 2.0**40):
        edited = geometry.copy()
        edited[1, spatial.NCELLS] = bad
        with pytest.raises(ValueError, match="axis 1"):
            spatial.neighbour_ranges_2d(50.0, 50.0, edited, cell_start, ranges)
        with pytest.raises(ValueError, match="axis 1"):
            spatial.cell_ids_2d(xs, xs, edited, cells)
    with pytest.raises(ValueError, match="cannot hold values up to 9800"):
        spatial.cell_ids_2d(xs, xs, geometry, np.zeros(3, np.int8))
    with pytest.raises(ValueError, match="an entry per indexed point"):
        spatial.count_within_2d(xs, xs, xs[:2], xs[:2], geometry, cell_start, 1.0, np.zeros(3, np.int64))


def test_counting_kernels_refuse_counts_their_dtypes_cannot_hold_and_grids_past_the_cell_limit() -> None:
    cells = np.zeros(128, np.int64)                      # 128 points in cell 0: an int8 count wraps
    backing = np.full(130, 7, np.int64)
    with pytest.raises(ValueError, match="sort_by_cell: an output array's dtype cannot hold values up to 128"):
        spatial.sort_by_cell(cells, np.zeros(3, np.int8), backing[1:129])
    with pytest.raises(ValueError, match="sort_by_cell: an output array's dtype cannot hold values up to 299"):
        spatial.sort_by_cell(np.zeros(300, np.int64), np.zeros(3, np.int64), np.zeros(300, np.int8))
    with pytest.raises(ValueError, match="count_cells: an output array's dtype cannot hold values up to 128"):
        spatial.count_cells(cells, np.zeros(3, np.int8))
    with pytest.raises(ValueError, match="prefix_counts: an output array's dtype cannot hold values up to 200"):
        spatial.prefix_counts(np.full((2, 2), 50, np.int64), np.zeros(3, np.int8), np.zeros((2, 2), np.int64))
    assert (backing == 7).all()
    geometry = spatial.make_grid([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], 0.3)
    geometry[:, spatial.NCELLS] = [2.0**21, 2.0**21, 2.0**22]      # each axis fits; the product wraps int64 to 0
    one = np.zeros(1)
    with pytest.raises(ValueError, match="more than MAX_GRID_CELLS cells"):
        spatial.neighbour_ranges_3d(0.5, 0.5, 0.5, geometry, np.zeros(1, np.int64),
                                    np.zeros((spatial.MAX_RANGES_3D, 2), np.int64))
    with pytest.raises(ValueError, match="more than MAX_GRID_CELLS cells"):
        spatial.count_within_3d(one, one, one, one, one, one, geometry, np.zeros(1, np.int64), 0.1,
                                np.zeros(1, np.int64))


def test_within_radius_outputs_must_hold_the_counts_and_slots() -> None:
    geometry = spatial.make_grid([0.0, 0.0], [10.0, 10.0], 1.0)
    n = 300
    xs = np.full(n, 5.5)
    cells, cell_start, order = np.empty(n, np.int64), np.empty(spatial.cell_count(geometry) + 1, np.int64), \
        np.empty(n, np.int64)
    spatial.build_2d(xs, xs, geometry, cells, cell_start, order)
    with pytest.raises(ValueError, match=r"count_within \(out\): an output array's dtype cannot hold values up "
                                         r"to 300"):
        spatial.count_within_2d(xs[:1], xs[:1], xs, xs, geometry, cell_start, 1.0, np.zeros(1, np.int8))
    with pytest.raises(ValueError, match=r"list_within \(slots\): an output array's dtype cannot hold values up "
                                         r"to 299"):
        spatial.list_within_2d(xs[:1], xs[:1], xs, xs, geometry, cell_start, 1.0, np.zeros(1, np.int64),
                               np.zeros(n, np.int8))
    counts = np.zeros(1, np.int16)
    assert spatial.count_within_2d(xs[:1], xs[:1], xs, xs, geometry, cell_start, 1.0, counts) == n

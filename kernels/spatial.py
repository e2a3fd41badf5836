"""A uniform-grid spatial index (cell list) for kernels, 2-D and 3-D, periodic or bounded per axis.

A grid divides a box [lo, lo + length) per axis into `ncells` equal cells; cells are numbered
row-major with x fastest: cell = cx + ncx * (cy + ncy * cz). The index of n points is three
arrays: `cells[i]`, the cell of point i; `order`, the point indices sorted by cell (points of
one cell in index order); and `cell_start` (ncells + 1 entries), where the points of cell c are
order[cell_start[c]:cell_start[c + 1]]. A position in `order` is a slot. Queries read points in
slot order (`gather` copies a column into it), so the points of neighbouring cells are
neighbours in memory whatever the table order.

The geometry is one float64 array of shape (d, 5), one row per axis: lo, length, ncells,
ncells / length, periodic (1.0 or 0.0). `make_grid` builds it; kernels check its shape and
cell counts (an edited one raises ValueError, naming the axis), never write past an array's end
(lengths and the indices they are given are compared: numba checks no bounds), and trust
cell_start's entries other than its last, which a build writes. The per-query functions
(neighbour_cells_*, neighbour_ranges_*) check their arguments when called from Python and trust
them in compiled code, where a kernel calls `check_grid` once (see below).
Bounded axes clamp: a point outside the box belongs to the nearest edge cell, and queries stay
exact (clamping never moves two points more than one cell apart). A point on the border of two
cells belongs to the upper one, a point on the upper edge of the box to the last cell (bounded)
or to cell 0 (periodic: it is the lower edge). Periodic axes wrap any coordinate, inside the box
or not, and measure distances by the minimum image. A NaN coordinate goes to cell 0 and is
never within any radius.

Building is a counting sort, in separate kernels so that row chunks can run on different
workers: `cell_ids_2d`/`_3d` and `count_cells` per chunk (each writes only its own chunk's
cells and its own row of counts), `prefix_counts` once over all chunks' counts, then
`scatter_rows` per chunk (chunks write disjoint slots of `order`). The result is bit-identical
to the one-call `build_2d`/`build_3d` for any chunking, provided chunk k holds rows that come
before chunk k + 1's; the chunks may run in any order.

Building from systems that may run in any process at once, each over any chunk of rows, with
no chunk numbers: kernels/spatial_shared.py (re-exported here).

Queries: `neighbour_cells_*` lists the up-to-9 (2-D) / 27 (3-D) distinct cells around a
position, `neighbour_ranges_*` the same as slot ranges (cells adjacent along x merged: 3 / 9
ranges, at most 6 / 18 where a periodic x wraps), and `count_within_*` / `list_within_*`
visit every point within a radius, each query writing only its own row (queries split across
workers freely). A query radius must not exceed the cell width / (1 + MARGIN) on any axis,
nor half the length of a periodic axis: then the cells around a point hold every point within
the radius, even after the rounding of the cell arithmetic (kernels raise ValueError
otherwise; `make_grid` picks such cells).

Cost: build O(n + ncells) (chunked: O(n + nchunks * ncells)); memory ncells + 1 starts, and
nchunks * ncells counts and starts when chunked. A query visits the points of 9 / 27 cells:
O(points in the cells around). Measured (tests/benchmarks/bench_spatial.py, 100k points in
981k cells, 1 core): build_2d plus four gathers 0.85 ms, neighbour_ranges_2d ~16 ns a query;
build and a fastest-approach query over every point 0.93x the demo's physics.build_grid +
fastest_approach. Every kernel here has a numpy twin in tests/test_spatial.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba.extending import overload

from ._jit import OPTIONS, jit
from .checks import check_holds, check_length
from .grid import (  # noqa: F401 - re-exported: the geometry is spatial's API
    LENGTH,
    LO,
    MARGIN,
    MAX_CELLS_2D,
    MAX_CELLS_3D,
    MAX_GRID_CELLS,
    MAX_RANGES_2D,
    MAX_RANGES_3D,
    NCELLS,
    PERIODIC,
    SCALE,
    axis_cell,
    axis_delta,
    axis_span,
    cell_count,
    check_cell_start,
    check_geometry,
    check_grid,
    check_radius,
    grid_cells,
    make_grid,
    ncells_of,
    wrap,
)
from .spatial_shared import (  # noqa: F401 - re-exported: the building steps are spatial's API
    BLOCK_SHIFT,
    blocks_of,
    claim_slots,
    clear_counts,
    clear_shared,
    count_shared,
    count_shared_blocks,
    starts_from_blocks,
    starts_from_counts,
)


# ---------------------------------------------------------------- cells of points
@jit
def cell_of_2d(x, y, geometry):
    """The cell of point (x, y)."""
    nx = int(geometry[0, NCELLS])
    cx = axis_cell(x, geometry[0, LO], geometry[0, SCALE], nx, geometry[0, PERIODIC] != 0.0)
    cy = axis_cell(y, geometry[1, LO], geometry[1, SCALE], int(geometry[1, NCELLS]), geometry[1, PERIODIC] != 0.0)
    return cy * nx + cx


@jit
def cell_of_3d(x, y, z, geometry):
    """The cell of point (x, y, z)."""
    nx = int(geometry[0, NCELLS])
    ny = int(geometry[1, NCELLS])
    cx = axis_cell(x, geometry[0, LO], geometry[0, SCALE], nx, geometry[0, PERIODIC] != 0.0)
    cy = axis_cell(y, geometry[1, LO], geometry[1, SCALE], ny, geometry[1, PERIODIC] != 0.0)
    cz = axis_cell(z, geometry[2, LO], geometry[2, SCALE], int(geometry[2, NCELLS]), geometry[2, PERIODIC] != 0.0)
    return (cz * ny + cy) * nx + cx


@jit
def cell_ids_2d(x, y, geometry, cells):
    """cells[i] = the cell of point i. Per point: run it on any row chunk. Cost O(n)."""
    check_geometry(geometry, 2)
    n = x.shape[0]
    if y.shape[0] != n or cells.shape[0] != n:
        raise ValueError("cell_ids_2d: x, y and cells must have one entry per point")
    check_holds("cell_ids_2d", cells, ncells_of(geometry) - 1)
    lo_x, s_x, n_x, p_x = geometry[0, LO], geometry[0, SCALE], int(geometry[0, NCELLS]), geometry[0, PERIODIC] != 0.0
    lo_y, s_y, n_y, p_y = geometry[1, LO], geometry[1, SCALE], int(geometry[1, NCELLS]), geometry[1, PERIODIC] != 0.0
    for i in range(n):
        cells[i] = axis_cell(y[i], lo_y, s_y, n_y, p_y) * n_x + axis_cell(x[i], lo_x, s_x, n_x, p_x)


@jit
def cell_ids_3d(x, y, z, geometry, cells):
    """cells[i] = the cell of point i. Per point: run it on any row chunk. Cost O(n)."""
    check_geometry(geometry, 3)
    n = x.shape[0]
    if y.shape[0] != n or z.shape[0] != n or cells.shape[0] != n:
        raise ValueError("cell_ids_3d: x, y, z and cells must have one entry per point")
    check_holds("cell_ids_3d", cells, ncells_of(geometry) - 1)
    lo_x, s_x, n_x, p_x = geometry[0, LO], geometry[0, SCALE], int(geometry[0, NCELLS]), geometry[0, PERIODIC] != 0.0
    lo_y, s_y, n_y, p_y = geometry[1, LO], geometry[1, SCALE], int(geometry[1, NCELLS]), geometry[1, PERIODIC] != 0.0
    lo_z, s_z, n_z, p_z = geometry[2, LO], geometry[2, SCALE], int(geometry[2, NCELLS]), geometry[2, PERIODIC] != 0.0
    for i in range(n):
        cz = axis_cell(z[i], lo_z, s_z, n_z, p_z)
        cy = axis_cell(y[i], lo_y, s_y, n_y, p_y)
        cells[i] = (cz * n_y + cy) * n_x + axis_cell(x[i], lo_x, s_x, n_x, p_x)


# ---------------------------------------------------------------- counting sort
@jit
def sort_by_cell(cells, cell_start, order):
    """One-call counting sort: cell_start (ncells + 1 entries) and order (n entries) from cells.
    Points of one cell keep their index order. Raises ValueError for a cell id outside
    0..ncells-1. Cost O(n + ncells), no scratch memory."""
    # Counts go to cell_start[c], their running sum makes it the end of cell c, and a scatter
    # from the last point down moves it to the start: no shift pass, no cursor array.
    n = cells.shape[0]
    ncells = cell_start.shape[0] - 1
    if order.shape[0] != n:
        raise ValueError("sort_by_cell: order must have one entry per point")
    check_holds("sort_by_cell", cell_start, n)     # counts and starts reach n
    check_holds("sort_by_cell", order, n - 1)
    for c in range(ncells + 1):
        cell_start[c] = 0
    for i in range(n):
        c = cells[i]
        if c < 0 or c >= ncells:
            raise ValueError("sort_by_cell: a cell id is outside the grid (cells from another geometry?)")
        cell_start[c] += 1
    running = 0
    for c in range(ncells):
        running += cell_start[c]
        cell_start[c] = running
    cell_start[ncells] = n
    for i in range(n - 1, -1, -1):
        c = cells[i]
        k = cell_start[c] - 1
        cell_start[c] = k
        order[k] = i


@jit
def build_2d(x, y, geometry, cells, cell_start, order):
    """The whole index in one call: cell_ids_2d, then sort_by_cell. Cost O(n + ncells)."""
    if cell_start.shape[0] != ncells_of(geometry) + 1:
        raise ValueError("build_2d: cell_start must have ncells + 1 entries")
    cell_ids_2d(x, y, geometry, cells)
    sort_by_cell(cells, cell_start, order)


@jit
def build_3d(x, y, z, geometry, cells, cell_start, order):
    """The whole index in one call: cell_ids_3d, then sort_by_cell. Cost O(n + ncells)."""
    if cell_start.shape[0] != ncells_of(geometry) + 1:
        raise ValueError("build_3d: cell_start must have ncells + 1 entries")
    cell_ids_3d(x, y, z, geometry, cells)
    sort_by_cell(cells, cell_start, order)


@jit
def count_cells(cells, counts):
    """counts[c] = how many of this chunk's points lie in cell c (counts is this chunk's row of
    the (nchunks, ncells) counts; it is overwritten). Raises ValueError for a cell id outside
    the grid. Cost O(n + ncells)."""
    ncells = counts.shape[0]
    check_holds("count_cells", counts, cells.shape[0])
    for c in range(ncells):
        counts[c] = 0
    for i in range(cells.shape[0]):
        c = cells[i]
        if c < 0 or c >= ncells:
            raise ValueError("count_cells: a cell id is outside the grid (cells from another geometry?)")
        counts[c] += 1


@jit
def prefix_counts(counts, cell_start, chunk_start):
    """Merge the chunks' counts (nchunks, ncells): cell_start[c] = the first slot of cell c
    (cell_start[ncells] = every point) and chunk_start[k, c] = the first slot of chunk k's
    points in cell c (chunk k's points follow chunk k - 1's in each cell). chunk_start has
    counts' shape and must not be counts. Cost O(nchunks * ncells), rows read in order."""
    nchunks, ncells = counts.shape
    if cell_start.shape[0] != ncells + 1 or chunk_start.shape[0] != nchunks or chunk_start.shape[1] != ncells:
        raise ValueError("prefix_counts: cell_start needs ncells + 1 entries, chunk_start the shape of counts")
    total = 0
    for k in range(nchunks):
        for c in range(ncells):
            total += np.int64(counts[k, c])
    check_holds("prefix_counts", cell_start, total)      # starts reach every point
    check_holds("prefix_counts", chunk_start, total)
    for c in range(ncells + 1):
        cell_start[c] = 0
    for k in range(nchunks):                     # cell_start[c + 1] = points in cell c
        for c in range(ncells):
            cell_start[c + 1] += counts[k, c]
    for c in range(1, ncells + 1):               # cell_start[c] = points in cells before c
        cell_start[c] += cell_start[c - 1]
    for k in range(nchunks):
        for c in range(ncells):
            chunk_start[k, c] = cell_start[c] if k == 0 else chunk_start[k - 1, c] + counts[k - 1, c]


@jit
def scatter_rows(cells, first_row, cursor, order):
    """Write this chunk's points into `order`: the chunk's point i (row first_row + i) goes to
    slot cursor[cells[i]], which then moves on. `cursor` is the chunk's row of prefix_counts'
    chunk_start and is used up (it ends at the chunk's last slot + 1 in each cell). Chunks write
    disjoint slots, so they may run concurrently, in any order. Raises ValueError for a cell id
    outside the cursor or a slot outside `order`. Cost O(n)."""
    for i in range(cells.shape[0]):
        c = cells[i]
        if c < 0 or c >= cursor.shape[0]:
            raise ValueError("scatter_rows: a cell id is outside the grid:", c)
        k = cursor[c]
        if k < 0 or k >= order.shape[0]:
            raise ValueError("scatter_rows: a slot is outside order (a cursor of another build?):", k)
        cursor[c] = k + 1
        order[k] = first_row + i


@jit
def place(slots, values, out):
    """out[slots[i]] = values[i]: this chunk's column into slot order (after claim_slots).
    Raises ValueError for a slot outside `out`."""
    if values.shape[0] != slots.shape[0]:
        raise ValueError("place: slots and values must have one entry per point")
    for i in range(slots.shape[0]):
        k = slots[i]
        if k < 0 or k >= out.shape[0]:
            raise ValueError("place: a slot is outside out:", k)
        out[k] = values[i]


@jit
def gather(order, values, out):
    """out[k] = values[order[k]]: a column in slot order (run on any slice of order and out).
    Raises ValueError for an out shorter than order or an index outside values."""
    check_length("gather", out, order.shape[0])
    for k in range(order.shape[0]):
        j = order[k]
        if j < 0 or j >= values.shape[0]:
            raise ValueError("gather: an index in order is outside values:", j)
        out[k] = values[j]


# ---------------------------------------------------------------- neighbour cells
# The overloads compile the bodies' own Python functions, with the kernels' error model, inside
# each caller, whose cache holds them. Never cached themselves: an overload compiled from a jit
# function's py_func shares its cache entry's name (qualname and line), and a cached overload
# then overwrote the dispatcher's entry, which segfaulted when called from Python (seen here).
_OVERLOAD_OPTIONS: Any = {"error_model": OPTIONS["error_model"]}
# The per-query functions (neighbour_cells_*, neighbour_ranges_*) are called once per query
# inside kernels (~16 ns for a 2-D range query), where a test of their arguments cost ~18 ns
# more (measured: the fastest-approach loop of bench_spatial over 100k discs, 4.6 -> 6.0 ms).
# So each is two things: called from Python, a function that checks its arguments (check_grid)
# and raises ValueError rather than read or write past an array; called from compiled code, the
# unchecked body (the overload below each), which trusts them as numba trusts any index: a
# kernel calls check_grid(geometry, cell_start) once per call (count_within and list_within
# check the same once per call themselves, with their coordinates' lengths: _check_within).
@jit
def _check_out(name, d, geometry, out, most, pairs):
    """ValueError unless `geometry` has `d` axes of valid cell counts and `out` room for `most`
    entries (rows of 2 with `pairs`); returns the grid's cells."""
    if geometry.shape[0] != d or geometry.shape[1] != 5:
        raise ValueError(name + ": the geometry does not have the kernel's dimensions (make_grid)")
    ncells = grid_cells(geometry, d)
    if out.shape[0] < most or (pairs and (out.ndim != 2 or out.shape[out.ndim - 1] != 2)):
        raise ValueError(name + ": out must have " + str(most) + (" rows of 2 entries" if pairs else " entries")
                         + " or more")
    return ncells


@jit
def _cells_2d(qx, qy, geometry, out):
    nx, ny = int(geometry[0, NCELLS]), int(geometry[1, NCELLS])
    px, py = geometry[0, PERIODIC] != 0.0, geometry[1, PERIODIC] != 0.0
    x0, xc = axis_span(axis_cell(qx, geometry[0, LO], geometry[0, SCALE], nx, px), nx, px)
    y0, yc = axis_span(axis_cell(qy, geometry[1, LO], geometry[1, SCALE], ny, py), ny, py)
    m = 0
    for b in range(yc):
        row = wrap(y0 + b, ny) * nx
        for a in range(xc):
            out[m] = row + wrap(x0 + a, nx)
            m += 1
    return m


def neighbour_cells_2d(qx, qy, geometry, out):
    """Write the distinct cells around position (qx, qy) (its own and the adjacent ones, wrapped
    or clipped) into out (>= MAX_CELLS_2D entries); returns how many, 1 to 9. From Python its
    arguments are checked (ValueError); in compiled code they are trusted."""
    _check_out("neighbour_cells_2d", 2, geometry, out, MAX_CELLS_2D, False)
    return _cells_2d(qx, qy, geometry, out)


@overload(neighbour_cells_2d, jit_options=_OVERLOAD_OPTIONS)
def _neighbour_cells_2d_compiled(qx, qy, geometry, out):
    return _cells_2d.py_func


@jit
def _cells_3d(qx, qy, qz, geometry, out):
    nx, ny, nz = int(geometry[0, NCELLS]), int(geometry[1, NCELLS]), int(geometry[2, NCELLS])
    px, py, pz = geometry[0, PERIODIC] != 0.0, geometry[1, PERIODIC] != 0.0, geometry[2, PERIODIC] != 0.0
    x0, xc = axis_span(axis_cell(qx, geometry[0, LO], geometry[0, SCALE], nx, px), nx, px)
    y0, yc = axis_span(axis_cell(qy, geometry[1, LO], geometry[1, SCALE], ny, py), ny, py)
    z0, zc = axis_span(axis_cell(qz, geometry[2, LO], geometry[2, SCALE], nz, pz), nz, pz)
    m = 0
    for e in range(zc):
        plane = wrap(z0 + e, nz) * ny
        for b in range(yc):
            row = (plane + wrap(y0 + b, ny)) * nx
            for a in range(xc):
                out[m] = row + wrap(x0 + a, nx)
                m += 1
    return m


def neighbour_cells_3d(qx, qy, qz, geometry, out):
    """Write the distinct cells around position (qx, qy, qz) into out (>= MAX_CELLS_3D entries);
    returns how many, 1 to 27. Checked from Python, trusted in compiled code."""
    _check_out("neighbour_cells_3d", 3, geometry, out, MAX_CELLS_3D, False)
    return _cells_3d(qx, qy, qz, geometry, out)


@overload(neighbour_cells_3d, jit_options=_OVERLOAD_OPTIONS)
def _neighbour_cells_3d_compiled(qx, qy, qz, geometry, out):
    return _cells_3d.py_func


@jit
def _row_ranges(row, x0, xc, nx, cell_start, out, m):
    """Append the slot ranges of cells row + x0 .. row + x0 + xc - 1 (x modulo nx) to out from
    entry m; returns the new count. Consecutive cells make one range; a wrap, two."""
    # Empty ranges are kept: skipping them is a branch on whether a cell row is empty, which a
    # sparse grid makes unpredictable (measured at 100k points in 981k cells: 64 ns per query
    # with the skip, 18 ns without).
    last = x0 + xc - 1
    if x0 < 0:                                   # wraps below: cell nx - 1, then 0 .. last
        out[m, 0] = cell_start[row + nx - 1]
        out[m, 1] = cell_start[row + nx]
        m += 1
        x0 = 0
    elif last >= nx:                             # wraps above: x0 .. nx - 1, then 0 .. last - nx
        out[m, 0] = cell_start[row + x0]
        out[m, 1] = cell_start[row + nx]
        m += 1
        x0, last = 0, last - nx
    out[m, 0] = cell_start[row + x0]
    out[m, 1] = cell_start[row + last + 1]
    return m + 1


@jit
def _ranges_2d(qx, qy, geometry, cell_start, out):
    nx, ny = int(geometry[0, NCELLS]), int(geometry[1, NCELLS])
    px, py = geometry[0, PERIODIC] != 0.0, geometry[1, PERIODIC] != 0.0
    x0, xc = axis_span(axis_cell(qx, geometry[0, LO], geometry[0, SCALE], nx, px), nx, px)
    y0, yc = axis_span(axis_cell(qy, geometry[1, LO], geometry[1, SCALE], ny, py), ny, py)
    m = 0
    for b in range(yc):
        m = _row_ranges(wrap(y0 + b, ny) * nx, x0, xc, nx, cell_start, out, m)
    return m


def neighbour_ranges_2d(qx, qy, geometry, cell_start, out):
    """The slots of the points in the cells around (qx, qy), as ranges out[j, 0] <= slot < out[j, 1]
    (out has shape (>= MAX_RANGES_2D, 2)); returns how many (3 for an inner cell; some may be
    empty). Every slot appears once. Checked from Python (ValueError for a cell_start of another
    grid or an out too small); in compiled code trusted (check_grid once per kernel call).
    Cost O(1), ~16 ns in compiled code."""
    check_cell_start(cell_start, _check_out("neighbour_ranges_2d", 2, geometry, out, MAX_RANGES_2D, True))
    return _ranges_2d(qx, qy, geometry, cell_start, out)


@overload(neighbour_ranges_2d, jit_options=_OVERLOAD_OPTIONS)
def _neighbour_ranges_2d_compiled(qx, qy, geometry, cell_start, out):
    return _ranges_2d.py_func


@jit
def _ranges_3d(qx, qy, qz, geometry, cell_start, out):
    nx, ny, nz = int(geometry[0, NCELLS]), int(geometry[1, NCELLS]), int(geometry[2, NCELLS])
    px, py, pz = geometry[0, PERIODIC] != 0.0, geometry[1, PERIODIC] != 0.0, geometry[2, PERIODIC] != 0.0
    x0, xc = axis_span(axis_cell(qx, geometry[0, LO], geometry[0, SCALE], nx, px), nx, px)
    y0, yc = axis_span(axis_cell(qy, geometry[1, LO], geometry[1, SCALE], ny, py), ny, py)
    z0, zc = axis_span(axis_cell(qz, geometry[2, LO], geometry[2, SCALE], nz, pz), nz, pz)
    m = 0
    for e in range(zc):
        plane = wrap(z0 + e, nz) * ny
        for b in range(yc):
            m = _row_ranges((plane + wrap(y0 + b, ny)) * nx, x0, xc, nx, cell_start, out, m)
    return m


def neighbour_ranges_3d(qx, qy, qz, geometry, cell_start, out):
    """The slots of the points in the cells around (qx, qy, qz) as ranges (out has shape
    (>= MAX_RANGES_3D, 2)); returns how many (9 for an inner cell; some may be empty). Checked
    from Python, trusted in compiled code, as neighbour_ranges_2d. Cost O(1)."""
    check_cell_start(cell_start, _check_out("neighbour_ranges_3d", 3, geometry, out, MAX_RANGES_3D, True))
    return _ranges_3d(qx, qy, qz, geometry, cell_start, out)


@overload(neighbour_ranges_3d, jit_options=_OVERLOAD_OPTIONS)
def _neighbour_ranges_3d_compiled(qx, qy, qz, geometry, cell_start, out):
    return _ranges_3d.py_func


@jit
def distance2_2d(ax, ay, bx, by, geometry):
    """Squared distance from a to b (minimum image on periodic axes)."""
    dx = axis_delta(ax, bx, geometry[0, LENGTH], geometry[0, PERIODIC] != 0.0)
    dy = axis_delta(ay, by, geometry[1, LENGTH], geometry[1, PERIODIC] != 0.0)
    return dx * dx + dy * dy


@jit
def distance2_3d(ax, ay, az, bx, by, bz, geometry):
    """Squared distance from a to b (minimum image on periodic axes)."""
    dx = axis_delta(ax, bx, geometry[0, LENGTH], geometry[0, PERIODIC] != 0.0)
    dy = axis_delta(ay, by, geometry[1, LENGTH], geometry[1, PERIODIC] != 0.0)
    dz = axis_delta(az, bz, geometry[2, LENGTH], geometry[2, PERIODIC] != 0.0)
    return dx * dx + dy * dy + dz * dz


# ---------------------------------------------------------------- points within a radius
@jit
def _check_within(cell_start, ncells, nqx, nqy, nqz, nx, ny, nz, starts):
    """The lengths the within-radius kernels index by: a cell_start of this grid whose last entry,
    the number of indexed points, the coordinates cover, and a start per query. (The kernels
    trust cell_start's other entries, which a build writes: checking them is O(ncells).)"""
    if cell_start.shape[0] != ncells + 1:
        raise ValueError("spatial: cell_start must have ncells + 1 entries")
    if nqy != nqx or nqz != nqx:
        raise ValueError("spatial: the query coordinates must have one entry per query")
    if ny != nx or nz != nx or not 0 <= cell_start[ncells] <= nx:
        raise ValueError("spatial: the points' coordinates must have an entry per indexed point "
                         "(cell_start[ncells]); got " + str(nx) + " for " + str(cell_start[ncells]))
    check_length("count_within/list_within (out, starts)", starts, nqx)


@jit
def _check_counts_fit(cell_start, starts, slots, listing):
    """A counting output holds counts up to every indexed point; a listing's slots hold slot numbers."""
    points = cell_start[cell_start.shape[0] - 1]
    if listing:
        check_holds("list_within (slots)", slots, points - 1)
    else:
        check_holds("count_within (out)", starts, points)


@jit
def _within_2d(qx, qy, xs, ys, geometry, cell_start, radius, starts, slots, listing):
    check_geometry(geometry, 2)
    check_radius(geometry, radius)
    _check_within(cell_start, ncells_of(geometry), qx.shape[0], qy.shape[0], qy.shape[0], xs.shape[0], ys.shape[0],
                  ys.shape[0], starts)
    _check_counts_fit(cell_start, starts, slots, listing)
    len_x, p_x = geometry[0, LENGTH], geometry[0, PERIODIC] != 0.0
    len_y, p_y = geometry[1, LENGTH], geometry[1, PERIODIC] != 0.0
    r2 = radius * radius
    ranges = np.empty((MAX_RANGES_2D, 2), np.int64)
    total = 0
    for i in range(qx.shape[0]):
        ax, ay = qx[i], qy[i]
        m = neighbour_ranges_2d(ax, ay, geometry, cell_start, ranges)
        found = 0
        at = starts[i] if listing else 0
        for j in range(m):
            for k in range(ranges[j, 0], ranges[j, 1]):
                dx = axis_delta(ax, xs[k], len_x, p_x)
                dy = axis_delta(ay, ys[k], len_y, p_y)
                if dx * dx + dy * dy <= r2:
                    if listing:
                        if at < 0 or at + found >= slots.shape[0]:
                            raise ValueError("list_within: slots is too small for the neighbours found")
                        slots[at + found] = k
                    found += 1
        if not listing:
            starts[i] = found
        total += found
    return total


@jit
def _within_3d(qx, qy, qz, xs, ys, zs, geometry, cell_start, radius, starts, slots, listing):
    check_geometry(geometry, 3)
    check_radius(geometry, radius)
    _check_within(cell_start, ncells_of(geometry), qx.shape[0], qy.shape[0], qz.shape[0], xs.shape[0], ys.shape[0],
                  zs.shape[0], starts)
    _check_counts_fit(cell_start, starts, slots, listing)
    len_x, p_x = geometry[0, LENGTH], geometry[0, PERIODIC] != 0.0
    len_y, p_y = geometry[1, LENGTH], geometry[1, PERIODIC] != 0.0
    len_z, p_z = geometry[2, LENGTH], geometry[2, PERIODIC] != 0.0
    r2 = radius * radius
    ranges = np.empty((MAX_RANGES_3D, 2), np.int64)
    total = 0
    for i in range(qx.shape[0]):
        ax, ay, az = qx[i], qy[i], qz[i]
        m = neighbour_ranges_3d(ax, ay, az, geometry, cell_start, ranges)
        found = 0
        at = starts[i] if listing else 0
        for j in range(m):
            for k in range(ranges[j, 0], ranges[j, 1]):
                dx = axis_delta(ax, xs[k], len_x, p_x)
                dy = axis_delta(ay, ys[k], len_y, p_y)
                dz = axis_delta(az, zs[k], len_z, p_z)
                if dx * dx + dy * dy + dz * dz <= r2:
                    if listing:
                        if at < 0 or at + found >= slots.shape[0]:
                            raise ValueError("list_within: slots is too small for the neighbours found")
                        slots[at + found] = k
                    found += 1
        if not listing:
            starts[i] = found
        total += found
    return total


@jit
def count_within_2d(qx, qy, xs, ys, geometry, cell_start, radius, out):
    """out[i] = how many indexed points lie within `radius` (distance <= radius) of query
    (qx[i], qy[i]); xs, ys are the points' coordinates in slot order (gather). A query at an
    indexed point counts that point. Returns the sum. Raises ValueError for a radius the grid
    cannot serve. Cost O(points in the 9 cells around each query)."""
    return _within_2d(qx, qy, xs, ys, geometry, cell_start, radius, out, out, False)


@jit
def count_within_3d(qx, qy, qz, xs, ys, zs, geometry, cell_start, radius, out):
    """count_within_2d in 3-D (27 cells around each query)."""
    return _within_3d(qx, qy, qz, xs, ys, zs, geometry, cell_start, radius, out, out, False)


@jit
def list_within_2d(qx, qy, xs, ys, geometry, cell_start, radius, starts, slots):
    """The slots within `radius` of each query: query i's go to slots[starts[i]:] (in range
    order: rows of cells, then slots), as many as count_within_2d counted with the same
    arguments; starts is usually the exclusive running sum of those counts. Returns how many
    were written. Raises ValueError when they do not fit in slots. Cost as count_within_2d."""
    return _within_2d(qx, qy, xs, ys, geometry, cell_start, radius, starts, slots, True)


@jit
def list_within_3d(qx, qy, qz, xs, ys, zs, geometry, cell_start, radius, starts, slots):
    """list_within_2d in 3-D."""
    return _within_3d(qx, qy, qz, xs, ys, zs, geometry, cell_start, radius, starts, slots, True)

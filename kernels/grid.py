"""The geometry of a uniform grid (kernels/spatial.py re-exports every name here): `make_grid`
builds it in Python; the per-axis arithmetic and the checks of a geometry and a radius are
compiled into the spatial kernels.

The geometry is one float64 array of shape (d, 5), one row per axis: lo, length, ncells,
ncells / length, periodic (1.0 or 0.0); its columns are named LO, LENGTH, NCELLS, SCALE and
PERIODIC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._jit import jit

MARGIN = 2.0**-20          # cell width >= radius * (1 + MARGIN): covers the cell arithmetic's rounding
MAX_CELLS_2D = 9
MAX_CELLS_3D = 27
MAX_RANGES_2D = 6          # 3 rows of cells, each split in two where it wraps around a periodic x
MAX_RANGES_3D = 18
LO, LENGTH, NCELLS, SCALE, PERIODIC = range(5)   # the geometry's columns
MAX_GRID_CELLS = 2**31 - 2                        # cell_start entries stay int32-addressable


# ---------------------------------------------------------------- geometry (Python)
def make_grid(lo: Sequence[float], hi: Sequence[float], radius: float,
              periodic: bool | Sequence[bool] = False) -> np.ndarray:
    """The geometry of a grid over the box [lo, hi) (2 or 3 axes) whose cells suit queries of
    radius up to `radius`: on each axis the most cells whose width is >= radius * (1 + MARGIN),
    at least one. `periodic` is one flag for every axis or one per axis. Raises ValueError for
    a box or radius that cannot work, naming the axis."""
    lo_a = np.asarray(lo, dtype=np.float64).ravel()
    hi_a = np.asarray(hi, dtype=np.float64).ravel()
    if lo_a.shape != hi_a.shape or lo_a.shape[0] not in (2, 3):
        raise ValueError(f"make_grid: lo and hi must both have 2 or 3 coordinates, got {lo_a.size} and {hi_a.size}")
    d = lo_a.shape[0]
    flags = [bool(periodic)] * d if isinstance(periodic, (bool, np.bool_)) else [bool(p) for p in periodic]
    if len(flags) != d:
        raise ValueError(f"make_grid: periodic must be one flag or {d} flags, got {len(flags)}")
    if isinstance(radius, (bool, np.bool_)) or not isinstance(radius, (int, float, np.integer, np.floating)) \
            or not (math.isfinite(radius) and radius > 0.0):
        raise ValueError(f"make_grid: radius must be a positive finite number, got {radius!r}")
    geometry = np.zeros((d, 5), np.float64)
    for axis in range(d):
        length = hi_a[axis] - lo_a[axis]
        if not (math.isfinite(length) and length > 0.0):
            raise ValueError(f"make_grid: axis {axis} has lo {lo_a[axis]!r} and hi {hi_a[axis]!r}; hi must exceed lo")
        if flags[axis] and 2.0 * radius > length:
            raise ValueError(f"make_grid: radius {radius!r} exceeds half the periodic axis {axis} "
                             f"(length {length!r}): a point would meet another through two images")
        cells = length / (radius * (1.0 + MARGIN))
        if not cells <= MAX_GRID_CELLS:   # a Python int past it could not be held in the geometry exactly
            shown = math.floor(cells) if cells < 1e15 else format(cells, ".3g")
            raise ValueError(f"make_grid: radius {radius!r} makes {shown} cells on axis {axis} alone, "
                             f"more than {MAX_GRID_CELLS}; use a larger radius (cells need memory for their starts)")
        ncells = max(1, int(cells))
        while ncells > 1 and length / ncells < radius * (1.0 + MARGIN):   # the division rounded up
            ncells -= 1
        geometry[axis] = (lo_a[axis], length, ncells, ncells / length, 1.0 if flags[axis] else 0.0)
    if cell_count(geometry) > MAX_GRID_CELLS:
        raise ValueError(f"make_grid: radius {radius!r} makes {cell_count(geometry)} cells, more than "
                         f"{MAX_GRID_CELLS}; use a larger radius (cells need memory for their starts)")
    return geometry


def cell_count(geometry: np.ndarray) -> int:
    """Cells of the grid (the product of cells per axis); cell_start needs one more entry."""
    return math.prod(int(n) for n in geometry[:, NCELLS])


# ---------------------------------------------------------------- per-axis arithmetic
@jit
def axis_cell(v, lo, scale, n, periodic):
    """The cell coordinate (0..n-1) of coordinate v on one axis."""
    t = (v - lo) * scale
    if periodic:
        t = t - n * np.floor(t / n)    # np.floor stays a float: no overflow for far points
    if t >= 0.0:                      # NaN fails both comparisons: cell 0
        if t < n:
            return int(t)
        return n - 1
    return 0


@jit
def axis_span(c, n, periodic):
    """(first, count): the neighbour coordinates of cell coordinate c are first .. first + count - 1,
    taken modulo n on a periodic axis; distinct, 1 to 3 of them."""
    if periodic:
        if n <= 3:
            return 0, n
        return c - 1, 3
    first = max(c - 1, 0)
    return first, min(c + 1, n - 1) - first + 1


@jit
def wrap(c, n):
    """c modulo n for c in -n .. 2n - 1 (a neighbour coordinate): a compare, not a division."""
    if c < 0:
        return c + n
    if c >= n:
        return c - n
    return c


@jit
def axis_delta(a, b, length, periodic):
    """b - a on one axis, in float64 whatever the columns' dtype; the minimum image on a periodic axis."""
    d = np.float64(b) - np.float64(a)
    if periodic:
        d -= length * np.floor(d / length + 0.5)
    return d


@jit
def check_geometry(geometry, d):
    """ValueError unless `geometry` has d axes of a grid make_grid could build: a positive
    finite length and a whole number of cells in 1 .. MAX_GRID_CELLS on each (the kernels index
    cell_start with cell numbers derived from them)."""
    if geometry.shape[0] != d or geometry.shape[1] != 5:
        raise ValueError("spatial: the geometry does not have the kernel's dimensions (make_grid)")
    for axis in range(d):
        n, length = geometry[axis, NCELLS], geometry[axis, LENGTH]
        if not (1.0 <= n <= MAX_GRID_CELLS and n == np.floor(n) and 0.0 < length < np.inf):
            raise ValueError("spatial: the geometry's axis " + str(axis) + " is not one make_grid builds "
                             "(cells, length):", n, length)
    grid_cells(geometry, d)


@jit
def grid_cells(geometry, d):
    """The cells of a `d`-axis grid whose cell counts, and their product, are all in 1 ..
    MAX_GRID_CELLS (else ValueError; checked as the product grows, so it cannot overflow): what
    the per-query kernels check, in a few ns, before indexing by cell."""
    total = 1
    for axis in range(d):
        n = geometry[axis, NCELLS]
        if not 1.0 <= n <= MAX_GRID_CELLS:
            raise ValueError("spatial: the geometry's axis " + str(axis) + " has a cell count outside "
                             "1 .. MAX_GRID_CELLS:", n)
        total *= int(n)
        if total > MAX_GRID_CELLS:
            raise ValueError("spatial: the geometry has more than MAX_GRID_CELLS cells (through axis "
                             + str(axis) + ")")
    return total


@jit
def check_grid(geometry, cell_start):
    """ValueError unless `geometry` has 2 or 3 axes of cell counts in 1 .. MAX_GRID_CELLS (their
    product too) and `cell_start` has its cells + 1 entries. O(1): call it once per kernel call
    before per-query neighbour functions, which trust their arguments in compiled code."""
    ncells = grid_cells(geometry, geometry.shape[0])
    if geometry.shape[0] not in (2, 3) or geometry.shape[1] != 5:
        raise ValueError("spatial: the geometry does not have the shape (2 or 3, 5) make_grid gives")
    check_cell_start(cell_start, ncells)


@jit
def check_cell_start(cell_start, ncells):
    """ValueError unless `cell_start` has an entry per cell of a grid of `ncells`, plus one."""
    if cell_start.shape[0] != ncells + 1:
        raise ValueError("spatial: cell_start has " + str(cell_start.shape[0]) + " entries, the grid "
                         + str(ncells) + " cells (a cell_start of another grid?)")


@jit
def ncells_of(geometry):
    """The geometry's cell count (grid_cells over all its axes: checked)."""
    return grid_cells(geometry, geometry.shape[0])


@jit
def check_radius(geometry, radius):
    """A positive radius that the grid's cells serve: at most a cell width / (1 + MARGIN), except
    on an axis whose neighbour cells are all of its cells (2 bounded, 3 periodic: make_grid's one
    cell for a radius wider than the axis)."""
    if not radius > 0.0:   # NaN too
        raise ValueError("spatial: the radius must be a positive number, got", radius)
    for axis in range(geometry.shape[0]):
        width = geometry[axis, LENGTH] / geometry[axis, NCELLS]
        every_cell = geometry[axis, NCELLS] <= (3.0 if geometry[axis, PERIODIC] != 0.0 else 2.0)
        if not (every_cell or radius * (1.0 + MARGIN) <= width):
            raise ValueError("spatial: the radius exceeds the cell width / (1 + MARGIN) on axis " + str(axis)
                             + "; build a grid for it (radius, cell width):", radius, width)
        if geometry[axis, PERIODIC] != 0.0 and 2.0 * radius > geometry[axis, LENGTH]:
            raise ValueError("spatial: the radius exceeds half the length of periodic axis " + str(axis)
                             + " (radius, length):", radius, geometry[axis, LENGTH])

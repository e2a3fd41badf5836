"""kernels/physics.py against its numpy twins in tests/reference.py, at sizes 0, 1, 63, 64, 65 and large.

The grid twin sorts with np.argsort, the collision twin compares every pair of discs (no grid).
Beyond the twins: collide gives the same rows whatever slices it is called on (the property that
makes the demo identical for any worker count), and an elastic collision frame conserves
momentum and energy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecs.kernels import physics
from tests import reference

SIZES = [0, 1, 63, 64, 65, 3_001]
WIDTH, HEIGHT = 1.6, 1.0


# ---------------------------------------------------------------- inputs
def gas(n: int, seed: int, packing: float = 0.3):
    """n discs in the box at a packing dense enough for many contacts; rows in random order."""
    rng = np.random.default_rng(seed)
    radius = math.sqrt(packing * WIDTH * HEIGHT / (math.pi * max(n, 1)))
    cell_size = 2 * radius
    ncx, ncy = math.ceil(WIDTH / cell_size), math.ceil(HEIGHT / cell_size)
    x = rng.uniform(0, WIDTH, n)
    y = rng.uniform(0, HEIGHT, n)
    vx, vy = rng.normal(0, 1, n), rng.normal(0, 1, n)
    return x, y, vx, vy, radius, cell_size, ncx, ncy


def grid_arrays(n, ncx, ncy):
    """cell_start, cell_state, cell_items, and the table_row column build_grid fills."""
    return np.zeros(ncx * ncy + 2, np.int32), np.zeros((n, 4)), np.zeros(n, np.int32), np.zeros(n, np.int32)


# ---------------------------------------------------------------- twins
@pytest.mark.parametrize("n", SIZES)
def test_motion_kernels_match_twins(n: int) -> None:
    rng = np.random.default_rng(n)
    x, y = rng.uniform(-0.1, WIDTH + 0.1, n), rng.uniform(-0.1, HEIGHT + 0.1, n)
    vx, vy = rng.normal(0, 1, n), rng.normal(0, 1, n)
    got_vy = vy.copy()
    physics.apply_gravity(got_vy, -9.81, 0.01)
    np.testing.assert_array_equal(got_vy, reference.apply_gravity(vy, -9.81, 0.01))

    got_x, got_y = x.copy(), y.copy()
    physics.integrate(got_x, got_y, vx, vy, 0.01)
    for got, want in zip((got_x, got_y), reference.integrate(x, y, vx, vy, 0.01), strict=True):
        np.testing.assert_array_equal(got, want)

    got = [x.copy(), y.copy(), vx.copy(), vy.copy()]
    bounced = physics.bounce_walls(*got, WIDTH, HEIGHT, 0.01, 0.9)
    *want, want_bounced = reference.bounce_walls(x, y, vx, vy, WIDTH, HEIGHT, 0.01, 0.9)
    assert bounced == want_bounced
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)

    left = rng.uniform(-1, 1, n).astype(np.float32)
    got_left = left.copy()
    physics.age(got_left, 0.25)
    np.testing.assert_array_equal(got_left, left - np.float32(0.25))


@pytest.mark.parametrize("n", SIZES)
def test_build_grid_sorts_rows_into_cells_in_row_order(n: int) -> None:
    x, y, vx, vy, _, cell_size, ncx, ncy = gas(n, seed=n)
    cell_start, state, items, table_row = grid_arrays(n + 5, ncx, ncy)   # spare slots are allowed
    physics.build_grid(x, y, vx, vy, table_row[:n], cell_size, ncx, ncy, cell_start, state, items)
    want_start, want_state, want_items = reference.build_grid(x, y, vx, vy, cell_size, ncx, ncy)
    np.testing.assert_array_equal(cell_start, want_start)
    np.testing.assert_array_equal(state[:n], want_state)
    np.testing.assert_array_equal(items[:n], want_items)
    np.testing.assert_array_equal(table_row[:n], np.arange(n))


def test_build_grid_refuses_arrays_too_small() -> None:
    x, y, vx, vy, _, cell_size, ncx, ncy = gas(100, seed=1)
    cell_start, state, items, table_row = grid_arrays(99, ncx, ncy)
    table_row = np.zeros(100, np.int32)
    with pytest.raises(ValueError, match="fewer slots than there are rows"):
        physics.build_grid(x, y, vx, vy, table_row, cell_size, ncx, ncy, cell_start, state, items)
    with pytest.raises(ValueError, match="ncx \\* ncy \\+ 2"):
        physics.build_grid(x, y, vx, vy, table_row, cell_size, ncx, ncy, cell_start[:-1], state, items)


def gridded(n: int, seed: int):
    x, y, vx, vy, radius, cell_size, ncx, ncy = gas(n, seed)
    cell_start, state, items, table_row = grid_arrays(n, ncx, ncy)
    physics.build_grid(x, y, vx, vy, table_row, cell_size, ncx, ncy, cell_start, state, items)
    return (x, y, vx, vy, radius, cell_size, ncx, ncy), table_row, (cell_start, state, items)


def run_collide(vx, vy, table_row, restitution, radius, cell_size, ncx, ncy, grid, bounds, hits=None):
    """collide over the row slices between `bounds` (multiples of 64, as the scheduler cuts)."""
    n = vx.shape[0]
    vx, vy = vx.copy(), vy.copy()
    hits = np.zeros(n, np.uint32) if hits is None else hits.copy()
    impulse = np.zeros(n, np.float32)
    words = np.zeros((2, (n + 63) // 64), np.uint64)
    collided = 0
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        s = slice(start, stop)
        collided += physics.collide(table_row[s], vx[s], vy[s], hits[s], impulse[s], words[0, start // 64:],
                                    words[1, start // 64:], radius, restitution, cell_size, ncx, ncy, *grid)
    return collided, (vx, vy, hits, impulse, words)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("restitution", [1.0, 0.5])
def test_collide_matches_all_pairs_twin(n: int, restitution: float) -> None:
    (x, y, vx, vy, radius, cell_size, ncx, ncy), table_row, grid = gridded(n, seed=100 + n)
    hits = np.random.default_rng(n).integers(0, 5, n).astype(np.uint32)
    collided, (got_vx, got_vy, got_hits, got_impulse, words) = run_collide(
        vx, vy, table_row, restitution, radius, cell_size, ncx, ncy, grid, [0, n], hits)
    want_vx, want_vy, want_hits, want_impulse, changed = reference.collide(
        x, y, vx, vy, hits, np.zeros(n, np.float32), radius, restitution, cell_size, ncx, ncy)
    assert collided == int(changed.sum())
    if n > 1000:
        assert collided > n // 20      # the dense gas does collide
    np.testing.assert_array_equal(got_vx, want_vx)
    np.testing.assert_array_equal(got_vy, want_vy)
    np.testing.assert_array_equal(got_hits, want_hits)
    np.testing.assert_array_equal(got_impulse, want_impulse)
    packed = reference.pack(np.concatenate([changed, np.zeros(-n % 64, bool)]))
    np.testing.assert_array_equal(words[0], packed)
    np.testing.assert_array_equal(words[1], packed)


def test_collide_gives_the_same_rows_whatever_slices_it_runs_on() -> None:
    n = 20_000
    (_, _, vx, vy, radius, cell_size, ncx, ncy), table_row, grid = gridded(n, seed=7)
    args = (vx, vy, table_row, 1.0, radius, cell_size, ncx, ncy, grid)
    collided, whole = run_collide(*args, [0, n])
    assert collided > 1000
    for bounds in ([0, 512, n], [0, 10_240, n], [0, 4096, 8192, 12_288, 16_384, n]):
        got_collided, got = run_collide(*args, bounds)
        assert got_collided == collided
        for g, w in zip(got, whole, strict=True):
            np.testing.assert_array_equal(g, w)


def test_elastic_collisions_conserve_momentum_and_energy() -> None:
    n = 20_000
    (_, _, vx, vy, radius, cell_size, ncx, ncy), table_row, grid = gridded(n, seed=8)
    collided, (out_vx, out_vy, *_) = run_collide(vx, vy, table_row, 1.0, radius, cell_size, ncx, ncy, grid,
                                                 [0, n])
    assert collided > 1000 and collided % 2 == 0        # pairs: both discs of each collision
    assert not np.array_equal(out_vx, vx)
    assert math.isclose(out_vx.sum(), vx.sum(), abs_tol=1e-9)
    assert math.isclose(out_vy.sum(), vy.sum(), abs_tol=1e-9)
    energy = (vx * vx + vy * vy).sum()
    assert math.isclose((out_vx * out_vx + out_vy * out_vy).sum(), energy, rel_tol=1e-12)


@pytest.mark.parametrize("n", SIZES)
def test_tally_and_bookkeeping_kernels_match_twins(n: int) -> None:
    rng = np.random.default_rng(n)
    hits = rng.integers(0, 3, n).astype(np.uint32)
    impulse = rng.uniform(0, 2, n).astype(np.float32)
    rows = np.flatnonzero(rng.random(n) < 0.3).astype(np.int64)
    tally = np.array([5.0, 1.5])
    want = reference.tally_contacts(rows, hits, impulse, tally)
    physics.tally_contacts(rows, hits, impulse, tally)
    assert tally[0] == want[0]
    assert math.isclose(tally[1], want[1], rel_tol=1e-12)

    left = rng.uniform(-1, 1, n).astype(np.float32)
    out = np.full(n, -1, np.int64)
    count = physics.expired_rows(left, out)
    np.testing.assert_array_equal(out[:count], np.flatnonzero(left <= 0))

    y, vx, vy = rng.uniform(0, 1, n), rng.normal(0, 1, n), rng.normal(0, 1, n)
    want_energy = (0.5 * (vx * vx + vy * vy) + 9.81 * y).sum()
    assert math.isclose(physics.energy(y, vx, vy, -9.81), want_energy, rel_tol=1e-12, abs_tol=1e-12)

    x = rng.uniform(-0.1, WIDTH + 0.1, n)
    y = rng.uniform(-0.1, HEIGHT + 0.1, n)
    if n:
        x[0] = np.nan
    outside = ~((x >= 0) & (x <= WIDTH) & (y >= 0) & (y <= HEIGHT))
    assert physics.count_outside(x, y, WIDTH, HEIGHT) == int(outside.sum())

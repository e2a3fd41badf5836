"""kernels/physics.py against its numpy twins in tests/reference.py, at sizes 0, 1, 63, 64, 65 and large.

The grid twin sorts with np.argsort, the collision twin compares every pair of discs (no grid).
Beyond the twins: collide gives the same rows however many callers share out its slots,
whatever row slices the results are applied to and whatever slots the grid build gave the
discs of a cell (the properties that make the demo identical for any
worker count), and an elastic collision frame conserves momentum and energy.
"""

from __future__ import annotations

import concurrent.futures
import math

import numpy as np
import pytest

from ecs.kernels import physics, spatial
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


def shared_grid(x, y, vx, vy, cell_size, ncx, ncy, bounds, seed: int = 0):
    """The demo's grid built as its systems do: per chunk between `bounds`, chunks in a random
    order (the order processes take them); keys are the row numbers. Returns each row's slot
    and (cell_start, slot_state, slot_keys)."""
    n = x.shape[0]
    chunks = list(zip(bounds[:-1], bounds[1:], strict=True))
    rng = np.random.default_rng(seed)
    cells, slots = np.full(n, -1, np.int32), np.full(n, -1, np.int32)
    cell_start, cursor = np.full(ncx * ncy + 1, 7, np.int32), np.zeros(ncx * ncy, np.int32)
    state, keys = np.zeros((n, 4)), np.full(n, -1, np.int64)
    spatial.clear_counts(cell_start)
    for k in rng.permutation(len(chunks)):
        a, b = chunks[k]
        physics.cell_ids(x[a:b], y[a:b], cell_size, ncx, ncy, cells[a:b])
        spatial.count_shared(cells[a:b], cell_start)
    spatial.starts_from_counts(cell_start, cursor)
    for k in rng.permutation(len(chunks)):
        a, b = chunks[k]
        spatial.claim_slots(cells[a:b], cursor, slots[a:b])
        physics.snapshot(slots[a:b], x[a:b], y[a:b], vx[a:b], vy[a:b], np.arange(a, b, dtype=np.int64), state, keys)
    return slots, (cell_start, state, keys)


@pytest.mark.parametrize("n", SIZES)
def test_the_grid_holds_each_cells_rows_and_their_state(n: int) -> None:
    x, y, vx, vy, _, cell_size, ncx, ncy = gas(n, seed=n)
    want_start, _, want_items = reference.build_grid(x, y, vx, vy, cell_size, ncx, ncy)
    for bounds in ([0, n], [0, n // 3, n // 2, n]):
        slots, (cell_start, state, keys) = shared_grid(x, y, vx, vy, cell_size, ncx, ncy, bounds, seed=n)
        np.testing.assert_array_equal(cell_start, want_start[:-1])
        np.testing.assert_array_equal(keys[slots], np.arange(n))
        np.testing.assert_array_equal(state[slots], np.stack([x, y, vx, vy], axis=1))
        for c in np.flatnonzero(np.diff(want_start[:-1]))[:300]:
            a, b = want_start[c], want_start[c + 1]
            assert sorted(keys[a:b].tolist()) == sorted(want_items[a:b].tolist())


def gridded(n: int, seed: int):
    x, y, vx, vy, radius, cell_size, ncx, ncy = gas(n, seed)
    slots, grid = shared_grid(x, y, vx, vy, cell_size, ncx, ncy, [0, n // 2, n], seed)
    return (x, y, vx, vy, radius, cell_size, ncx, ncy), slots, grid


def run_collide(vx, vy, slots, restitution, radius, cell_size, ncx, ncy, grid, bounds, hits=None, callers=1):
    """collide_slots from `callers` threads at once (they share out the blocks of slots, as the
    demo's processes do), then apply_collisions over the row slices between `bounds`
    (multiples of 64, as the scheduler cuts)."""
    n = vx.shape[0]
    vx, vy = vx.copy(), vy.copy()
    hits = np.zeros(n, np.uint32) if hits is None else hits.copy()
    impulse = np.zeros(n, np.float32)
    words = np.zeros((2, (n + 63) // 64), np.uint64)
    claim, slot_hit, slot_kick = np.zeros(1, np.int64), np.full(n, 7, np.int8), np.zeros((n, 3))
    with concurrent.futures.ThreadPoolExecutor(callers) as pool:
        found = sum(pool.map(lambda _: physics.collide_slots(claim, slot_hit, slot_kick, radius, restitution,
                                                             cell_size, ncx, ncy, *grid), range(callers)))
    assert claim[0] == -(-n // physics.COLLIDE_BLOCK) + callers   # every block once, one miss per caller
    collided = 0
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        s = slice(start, stop)
        collided += physics.apply_collisions(slots[s], slot_hit, slot_kick, vx[s], vy[s], hits[s], impulse[s],
                                             words[0, start // 64:], words[1, start // 64:])
    assert found == collided
    return collided, (vx, vy, hits, impulse, words)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("restitution", [1.0, 0.5])
def test_collide_matches_all_pairs_twin(n: int, restitution: float) -> None:
    (x, y, vx, vy, radius, cell_size, ncx, ncy), slots, grid = gridded(n, seed=100 + n)
    hits = np.random.default_rng(n).integers(0, 5, n).astype(np.uint32)
    collided, (got_vx, got_vy, got_hits, got_impulse, words) = run_collide(
        vx, vy, slots, restitution, radius, cell_size, ncx, ncy, grid, [0, n], hits)
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


def test_collide_gives_the_same_rows_whatever_slices_and_slot_order() -> None:
    n = 20_000
    (x, y, vx, vy, radius, cell_size, ncx, ncy), slots, grid = gridded(n, seed=7)
    collided, whole = run_collide(vx, vy, slots, 1.0, radius, cell_size, ncx, ncy, grid, [0, n])
    assert collided > 1000
    for seed, bounds in enumerate(([0, 512, n], [0, 10_240, n], [0, 4096, 8192, 12_288, 16_384, n])):
        # another build: other chunks taken in another order give the discs of a cell other slots
        other_slots, other_grid = shared_grid(x, y, vx, vy, cell_size, ncx, ncy, bounds, seed=seed + 50)
        got_collided, got = run_collide(vx, vy, other_slots, 1.0, radius, cell_size, ncx, ncy, other_grid, bounds,
                                        callers=1 + seed)
        assert got_collided == collided
        for g, w in zip(got, whole, strict=True):
            np.testing.assert_array_equal(g, w)


def test_collide_refuses_arrays_that_do_not_fit_the_grid() -> None:
    n = 3_001
    (_, _, vx, vy, radius, cell_size, ncx, ncy), slots, grid = gridded(n, seed=3)
    claim = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match=r"collide_slots: an output array has 3000 entries, 3001 are needed"):
        physics.collide_slots(claim, np.zeros(n - 1, np.int8), np.zeros((n, 3)), radius, 1.0, cell_size, ncx, ncy,
                              *grid)
    with pytest.raises(ValueError, match=r"collide_slots: cell_start needs ncx \* ncy \+ 1 entries"):
        physics.collide_slots(claim, np.zeros(n, np.int8), np.zeros((n, 3)), radius, 1.0, cell_size, ncx + 1, ncy,
                              *grid)
    assert claim[0] == 0                      # refused before it claimed anything
    with pytest.raises(ValueError, match=r"collide_slots: an output array has 0 entries, 1 are needed"):
        physics.collide_slots(np.zeros(0, np.int64), np.zeros(n, np.int8), np.zeros((n, 3)), radius, 1.0, cell_size,
                              ncx, ncy, *grid)
    slot_hit = np.full(n, 7, np.int8)
    with pytest.raises(ValueError, match=r"collide_slots: claim\[0\] is negative \(zero it before"):
        physics.collide_slots(np.full(1, -5, np.int64), slot_hit, np.zeros((n, 3)), radius, 1.0, cell_size, ncx,
                              ncy, *grid)
    assert (slot_hit == 7).all()
    cell_start, state, keys = grid
    scrambled = cell_start.copy()             # entries pointing anywhere: the slots read stay in the grid's
    scrambled[1:-1] = np.random.default_rng(1).integers(-(2**30), 2**30, scrambled.shape[0] - 2)
    physics.collide_slots(np.zeros(1, np.int64), slot_hit, np.zeros((n, 3)), radius, 1.0, cell_size, ncx, ncy,
                          scrambled, state, keys)
    with pytest.raises(ValueError, match=r"snapshot: a row's slot is outside the grid's slots"):
        physics.snapshot(np.array([0, n], np.int32), vx[:2], vy[:2], vx[:2], vy[:2], np.arange(2), state.copy(),
                         keys.copy())
    bad = slots.copy()
    bad[5] = n
    words = np.zeros((n + 63) // 64, np.uint64)
    hits, impulse = np.zeros(n, np.uint32), np.zeros(n, np.float32)
    hit_all, out_vx = np.ones(n, np.int8), vx.copy()
    with pytest.raises(ValueError, match=r"apply_collisions: a row's slot is outside the grid's slots"):
        physics.apply_collisions(bad, hit_all, np.zeros((n, 3)), out_vx, vy.copy(), hits, impulse, words, words)
    np.testing.assert_array_equal(out_vx, vx)   # nothing written
    assert not hits.any() and not words.any()
    with pytest.raises(ValueError, match=r"apply_collisions: slot_kick needs 3 columns"):
        physics.apply_collisions(slots, hit_all, np.zeros((n, 2)), out_vx, vy.copy(), hits, impulse, words, words)
    with pytest.raises(ValueError, match=r"apply_collisions: an output array has 3000 entries, 3001 are needed"):
        physics.apply_collisions(slots, np.zeros(n, np.int8), np.zeros((n, 3)), vx[1:].copy(), vy.copy(), hits,
                                 impulse, words, words)


def test_a_tie_goes_to_the_lower_key_whatever_the_slots() -> None:
    """Two discs approach a third equally fast: the partner is the one with the lower key."""
    x = np.array([0.50, 0.49, 0.51])
    y = np.array([0.50, 0.50, 0.50])
    vx = np.array([0.0, 1.0, -1.0])
    vy = np.zeros(3)
    cell_size, ncx, ncy = 0.1, 16, 10
    for order in ([0, 1, 2], [0, 2, 1]):          # which of the two sits first in their cells' slots
        slots = np.array(order, np.int32)
        state = np.zeros((3, 4))
        keys = np.zeros(3, np.int64)
        physics.snapshot(slots, x, y, vx, vy, np.array([10, 20, 30], np.int64), state, keys)
        cells = np.zeros(3, np.int32)
        physics.cell_ids(state[:, 0].copy(), state[:, 1].copy(), cell_size, ncx, ncy, cells)
        cell_start = np.zeros(ncx * ncy + 1, np.int32)
        spatial.count_shared(cells, cell_start)
        spatial.starts_from_counts(cell_start, np.zeros(ncx * ncy, np.int32))
        partner = physics.fastest_approach(int(slots[0]), 4 * 0.02 ** 2, cell_size, ncx, ncy, cell_start, state, keys)
        assert keys[partner] == 20


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

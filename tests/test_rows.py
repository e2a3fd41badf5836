"""kernels/rows.py against its numpy twins in tests/reference.py, at sizes 0, 1, 63, 64, 65, large."""

from __future__ import annotations

import numpy as np
import pytest

from ecs.kernels import rows
from tests import reference

SIZES = [0, 1, 63, 64, 65, 100_003]


def slot_arrays(rng: np.random.Generator, slots: int, table_rows: int):
    generation = rng.integers(0, 2**31 - 1, slots, dtype=np.uint32)
    table_of = rng.integers(-1, 50, slots, dtype=np.int32)
    row_of = rng.integers(0, 1 << 30, slots, dtype=np.int32)
    entity_col = rng.integers(0, 1 << 62, table_rows, dtype=np.int64)
    return generation, table_of, row_of, entity_col


@pytest.mark.parametrize("count", SIZES)
def test_place_range_writes_ids_and_locations_of_consecutive_indices(count: int) -> None:
    rng = np.random.default_rng(20)
    first_index, first_row, table_id = 7, 13, 3
    generation, table_of, row_of, entity_col = slot_arrays(rng, first_index + count + 9,
                                                           first_row + count + 4)
    want = reference.place_range(first_index, count, table_id, first_row, generation, table_of, row_of,
                                 entity_col)
    got = (table_of.copy(), row_of.copy(), entity_col.copy())
    rows.place_range(first_index, count, table_id, first_row, generation, *got)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("count", SIZES)
def test_place_indices_writes_ids_and_locations_of_listed_indices(count: int) -> None:
    rng = np.random.default_rng(21)
    slots = 2 * count + 10
    indices = rng.permutation(np.arange(1, slots))[:count].astype(np.int64)
    first_row, table_id = 5, 11
    generation, table_of, row_of, entity_col = slot_arrays(rng, slots, first_row + count + 3)
    want = reference.place_indices(indices, table_id, first_row, generation, table_of, row_of, entity_col)
    got = (table_of.copy(), row_of.copy(), entity_col.copy())
    rows.place_indices(indices, table_id, first_row, generation, *got)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_placed_ids_carry_the_generation_in_the_high_bits() -> None:
    generation = np.array([0, 0, 2**31 - 1, 5], np.uint32)
    table_of = np.full(4, -1, np.int32)
    row_of = np.zeros(4, np.int32)
    entity_col = np.zeros(3, np.int64)
    rows.place_indices(np.array([2, 3, 1], np.int64), 0, 0, generation, table_of, row_of, entity_col)
    assert entity_col.tolist() == [((2**31 - 1) << 32) | 2, (5 << 32) | 3, 1]
    assert table_of.tolist() == [-1, 0, 0, 0]
    assert row_of.tolist() == [0, 2, 0, 1]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize(("dtype", "width"), [(np.uint8, 1), (np.uint32, 1), (np.uint32, 3), (np.uint64, 4)])
def test_restore_column_copies_rows_and_marks_those_that_differed(n: int, dtype, width: int) -> None:
    rng = np.random.default_rng(22)
    extra = 5 * width   # elements past row n must be left alone
    src = rng.integers(0, 4, n * width + extra).astype(dtype)
    dst = src.copy()
    changed = rng.random(n * width) < 0.1
    dst[: n * width][changed] ^= dtype(1)
    dst[n * width:] = rng.integers(0, 4, extra).astype(dtype)
    words = rng.integers(0, 2, (n + 63) // 64 + 1, dtype=np.uint64) << np.uint64(63)   # some marks already
    want_dst, want_words = reference.restore_column(dst, src, n, width, words)
    got_dst, got_words = dst.copy(), words.copy()
    rows.restore_column(got_dst, src, n, width, got_words)
    np.testing.assert_array_equal(got_dst, want_dst)
    np.testing.assert_array_equal(got_words, want_words)


RETIRED = 1 << 31


def fresh_index(slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.full(slots, RETIRED, np.uint32), np.full(slots, -1, np.int32), np.full(slots, -1, np.int32)


@pytest.mark.parametrize("count", SIZES)
def test_index_rows_enters_a_tables_ids_and_rows(count: int) -> None:
    rng = np.random.default_rng(22)
    slots = 2 * count + 10
    indices = rng.permutation(np.arange(1, slots))[:count].astype(np.int64)
    entity_col = (rng.integers(0, RETIRED, count, dtype=np.int64) << 32) | indices
    want = reference.index_rows(entity_col, 4, slots, *fresh_index(slots))
    got = fresh_index(slots)
    assert rows.index_rows(entity_col, 4, slots, *got) == want[0] == -1
    for g, w in zip(got, want[1:], strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("bad", ["zero id", "negative id", "slot 0", "past high", "in use", "twice"])
def test_index_rows_stops_at_the_first_id_that_cannot_be_entered(bad: str) -> None:
    slots = 100
    entity_col = (np.arange(1, 71, dtype=np.int64) << 32) | np.arange(1, 71)
    generation, table_of, row_of = fresh_index(slots)
    entity_col[40] = {"zero id": 0, "negative id": -5, "slot 0": 3 << 32, "past high": 100,
                      "in use": 80, "twice": entity_col[12], }[bad]
    table_of[80] = 2
    want = reference.index_rows(entity_col, 1, slots, generation, table_of, row_of)
    got = (generation.copy(), table_of.copy(), row_of.copy())
    assert rows.index_rows(entity_col, 1, slots, *got) == want[0] == 40
    for g, w in zip(got, want[1:], strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("count", SIZES)
def test_index_free_gives_free_slots_their_generations(count: int) -> None:
    rng = np.random.default_rng(23)
    slots = 2 * count + 10
    free = rng.permutation(np.arange(1, slots))[:count].astype(np.int64)
    free_generation = rng.integers(0, RETIRED, count, dtype=np.uint32)
    generation, table_of, _ = fresh_index(slots)
    want = reference.index_free(free, free_generation, slots, RETIRED, generation, table_of)
    got = generation.copy()
    assert rows.index_free(free, free_generation, slots, RETIRED, got, table_of) == want[0] == -1
    np.testing.assert_array_equal(got, want[1])


@pytest.mark.parametrize("bad", ["slot 0", "past high", "in use", "twice", "retired generation"])
def test_index_free_stops_at_the_first_slot_that_cannot_be_free(bad: str) -> None:
    slots = 100
    free = np.arange(1, 51, dtype=np.int64)
    free_generation = np.arange(50, dtype=np.uint32)
    generation, table_of, _ = fresh_index(slots)
    table_of[70] = 0
    if bad == "retired generation":
        free_generation[30] = RETIRED
    else:
        free[30] = {"slot 0": 0, "past high": 100, "in use": 70, "twice": 3}[bad]
    want = reference.index_free(free, free_generation, slots, RETIRED, generation, table_of)
    got = generation.copy()
    assert rows.index_free(free, free_generation, slots, RETIRED, got, table_of) == want[0] == 30
    np.testing.assert_array_equal(got, want[1])


@pytest.mark.parametrize("count", SIZES)
def test_alive_mask_accepts_exactly_placed_ids_of_the_current_generation(count: int) -> None:
    rng = np.random.default_rng(22)
    slots = count + 10
    generation, table_of, _, _ = slot_arrays(rng, slots, 1)
    index = rng.integers(0, slots + 5, count)                       # some past the high water mark
    current = generation[np.minimum(index, slots - 1)].astype(np.int64)
    gen = np.where(rng.random(count) < 0.8, current, current + 1)   # some of a stale generation
    ids = gen << 32 | index
    ids[rng.random(count) < 0.05] *= -1                             # placeholders and the like
    got = np.empty(count, np.bool_)
    rows.alive_mask(ids, slots - 3, generation, table_of, got)
    np.testing.assert_array_equal(got, reference.alive_mask(ids, slots - 3, generation, table_of))


@pytest.mark.parametrize("count", SIZES)
def test_group_by_table_lists_each_tables_positions_in_order(count: int) -> None:
    rng = np.random.default_rng(23)
    slots = count + 10
    generation, table_of, row_of, _ = slot_arrays(rng, slots, 1)
    for only_table in (False, True):            # ids of many tables, then all of one (its own path)
        live = np.flatnonzero(table_of == table_of[table_of >= 0][0] if only_table else table_of >= 0)
        index = rng.choice(live, count) if live.shape[0] else np.zeros(0, np.int64)   # repeats allowed
        ids = generation[index].astype(np.int64) << 32 | index
        positions, found = np.full(count, -7, np.int64), np.full(count, -7, np.int64)
        starts, present = np.empty(51, np.int64), np.empty(50, np.int64)
        dead, held = rows.group_by_table(ids, slots, generation, table_of, row_of, positions, found, starts, present)
        assert dead == -1
        tables = table_of[index]
        for t in range(50):
            np.testing.assert_array_equal(positions[starts[t]:starts[t + 1]], np.flatnonzero(tables == t))
        assert starts[50] == count
        np.testing.assert_array_equal(present[:held], np.unique(tables))
        np.testing.assert_array_equal(found, row_of[index[positions]])


def test_group_by_table_stops_at_the_first_dead_id() -> None:
    rng = np.random.default_rng(24)
    generation, table_of, row_of, _ = slot_arrays(rng, 100, 1)
    live = np.flatnonzero(table_of >= 0)[:10]
    ids = generation[live].astype(np.int64) << 32 | live
    dead = ids.copy()
    dead[6] += 1 << 32                                              # a stale generation
    free = np.flatnonzero(table_of < 0)[0]
    for bad, at in ((dead, 6), (np.r_[ids[:3], -ids[3], ids[4:]], 3), (np.r_[ids[:8], free], 8),
                    (np.r_[ids[:2], 100], 2)):                      # past the high water mark
        outputs = (np.empty(len(bad), np.int64), np.empty(len(bad), np.int64), np.empty(51, np.int64),
                   np.empty(50, np.int64))
        assert rows.group_by_table(bad, 100, generation, table_of, row_of, *outputs) == (at, 0)
    # an id of a table the outputs have no entry for (here: past table 1) and outputs shorter
    # than the ids are refused
    beyond = int(np.flatnonzero(table_of[live] >= 2)[0])
    assert rows.group_by_table(ids, 100, generation, table_of, row_of, np.empty(10, np.int64), np.empty(10, np.int64),
                               np.empty(3, np.int64), np.empty(2, np.int64)) == (beyond, 0)
    with pytest.raises(ValueError, match=r"group_by_table: positions and rows need an entry per id"):
        rows.group_by_table(ids, 100, generation, table_of, row_of, np.empty(9, np.int64), np.empty(10, np.int64),
                            np.empty(51, np.int64), np.empty(50, np.int64))


@pytest.mark.parametrize("count", SIZES)
def test_tail_fill_pairs_each_hole_below_the_new_end_with_a_kept_tail_row(count: int) -> None:
    rng = np.random.default_rng(25)
    n = count + 5
    removed = rng.permutation(n)[: rng.integers(0, n + 1)].astype(np.int64)
    holes, sources = np.empty((2, removed.shape[0]), np.int64)
    pairs = rows.tail_fill(removed, n, holes, sources)
    new_n = n - removed.shape[0]
    np.testing.assert_array_equal(holes[:pairs], np.sort(removed[removed < new_n]))
    np.testing.assert_array_equal(sources[:pairs], np.setdiff1d(np.arange(new_n, n), removed))


@pytest.mark.parametrize("count", SIZES)
def test_free_slots_bumps_generations_retires_the_last_and_pushes_the_rest_in_order(count: int) -> None:
    rng = np.random.default_rng(26)
    generation, table_of, row_of, _ = slot_arrays(rng, count + 10, 1)
    index = rng.permutation(count + 10)[:count].astype(np.int64)
    generation[index[: count // 7]] = 2**31 - 1                   # these retire
    free = np.full(count + 3, -7, np.int64)
    got = (generation.copy(), table_of.copy(), row_of.copy())
    top = rows.free_slots(index, *got, free, 3, 2**31 - 1, 2**31)
    bumped = generation[index].astype(np.int64) + 1
    keep = bumped <= 2**31 - 1
    want_generation = generation.copy()
    want_generation[index] = np.where(keep, bumped, 2**31)
    np.testing.assert_array_equal(got[0], want_generation)
    assert (got[1][index] == -1).all() and (got[2][index] == -1).all()
    assert top == 3 + keep.sum()
    np.testing.assert_array_equal(free[3:top], index[keep])
    assert (free[:3] == -7).all() and (free[top:] == -7).all()

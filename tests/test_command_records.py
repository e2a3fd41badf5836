"""kernels/commands.py: the records that despawn, add_tag, remove_tag, spawn and set_field write,
against their numpy twin in tests/reference.py, at 0, 1, 63, 64, 65 and many commands.

The helpers are called as a kernel calls them, from the njit driver `issue` below, on a buffer
whose records start as noise: a word a helper must not write keeps its noise, so the twin's
"only a SET writes VALUE" and "records past the count are untouched" are checked too.
"""

from __future__ import annotations

import numpy as np
import pytest

from ecs.kernels import commands
from ecs.kernels._jit import jit
from ecs.kernels.commands import (
    ADD,
    DESPAWN,
    KEY,
    RECORD_WORDS,
    REMOVE,
    ROW,
    SERIAL,
    SET,
    SPAWN,
    SYSTEM,
    TABLE,
    TARGET,
    VALUE,
    CommandBuffer,
)
from tests import reference

SIZES = [0, 1, 63, 64, 65, 10_000]
KINDS = {"despawn": DESPAWN, "add_tag": ADD, "remove_tag": REMOVE, "spawn": SPAWN, "set_field": SET}


@jit
def issue(cmd, kinds, rows, targets, keys, values, placeholders):
    """Issue command c through the helper of kinds[c], as a kernel processing slice row rows[c] would."""
    for c in range(kinds.shape[0]):
        kind = kinds[c]
        if kind == DESPAWN:
            commands.despawn(cmd, rows[c], targets[c])
        elif kind == ADD:
            commands.add_tag(cmd, rows[c], targets[c], keys[c])
        elif kind == REMOVE:
            commands.remove_tag(cmd, rows[c], targets[c], keys[c])
        elif kind == SPAWN:
            placeholders[c] = commands.spawn(cmd, rows[c], targets[c])
        else:
            commands.set_field(cmd, rows[c], targets[c], keys[c], values[c])


def noise_records(rng: np.random.Generator, capacity: int) -> np.ndarray:
    return rng.integers(-(1 << 62), 1 << 62, (capacity, RECORD_WORDS), dtype=np.int64)


def random_commands(rng: np.random.Generator, n: int, kinds: list[int]):
    """(kinds, rows, targets, keys, values) of n commands; values include -0.0, NaN, inf and a subnormal."""
    kind = rng.choice(np.array(kinds, np.int64), n)
    rows = rng.integers(0, 1 << 20, n, dtype=np.int64)
    targets = rng.integers(1, 1 << 40, n, dtype=np.int64)
    targets[rng.random(n) < 0.2] *= -1                       # set_field on spawn placeholders
    keys = rng.integers(1, 1 << 40, n, dtype=np.int64)
    values = rng.normal(0, 1e6, n)
    specials = np.array([-0.0, np.nan, np.inf, -np.inf, 5e-324, 1.7e308])
    values[: min(n, len(specials))] = specials[: min(n, len(specials))]
    return kind, rows, targets, keys, values


def run_both(records: np.ndarray, count: int, base: int, system: int, table: int, batch):
    """Issue `batch` through the kernels and through the twin: (got, want), each (records, count, placeholders)."""
    got_records = records.copy()
    got_count = np.array([count], np.int64)
    cmd = CommandBuffer(got_records, got_records.view(np.float64), got_count, base, system, table)
    got_placeholders = np.zeros(len(batch[0]), np.int64)
    issue(cmd, *batch, got_placeholders)
    want_records, want_count, want_placeholders, full = reference.command_records(
        records, count, base, system, table, *batch)
    assert not full
    return (got_records, int(got_count[0]), got_placeholders), (want_records, want_count, want_placeholders)


def assert_same_buffer(got, want) -> None:
    """Records (but the scratch last row, which overflowing commands overwrite), count, placeholders."""
    np.testing.assert_array_equal(got[0][:-1], want[0][:-1])   # int64 words: NaN and -0.0 compared bit for bit
    assert got[1] == want[1]
    np.testing.assert_array_equal(got[2], want[2])


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", [*KINDS, "mixed"])
def test_each_command_helper_writes_the_records_of_its_twin(name: str, n: int) -> None:
    rng = np.random.default_rng(n)
    kinds = list(KINDS.values()) if name == "mixed" else [KINDS[name]]
    records = noise_records(rng, n + 3)
    got, want = run_both(records, 0, 0, 0, 0, random_commands(rng, n, kinds))
    assert_same_buffer(got, want)
    assert got[1] == n
    np.testing.assert_array_equal(got[0][n:], records[n:])             # past the count: untouched


@pytest.mark.parametrize("n", SIZES)
def test_records_carry_the_slice_base_the_system_and_the_table(n: int) -> None:
    """A slice starting at table row 4096 of table 3, for system 7, after 5 records of an earlier system."""
    rng = np.random.default_rng(1000 + n)
    records = noise_records(rng, n + 6)                                # 5 earlier, n, the scratch row
    batch = random_commands(rng, n, list(KINDS.values()))
    got, want = run_both(records, 5, 4096, 7, 3, batch)
    assert_same_buffer(got, want)
    written = got[0][5:5 + n]
    np.testing.assert_array_equal(got[0][:5], records[:5])             # earlier records are kept
    np.testing.assert_array_equal(written[:, ROW], 4096 + batch[1])     # rows are global, not slice rows
    assert (written[:, SYSTEM] == 7).all() and (written[:, TABLE] == 3).all()
    np.testing.assert_array_equal(written[:, SERIAL], np.arange(5, 5 + n))
    np.testing.assert_array_equal(written[:, TARGET], batch[2])


def test_spawn_returns_distinct_negative_placeholders_that_name_its_record() -> None:
    rng = np.random.default_rng(2)
    batch = random_commands(rng, 65, [SPAWN, SET])
    got, want = run_both(noise_records(rng, 100), 9, 0, 1, 2, batch)
    assert_same_buffer(got, want)
    spawned = batch[0] == SPAWN
    placeholders = got[2][spawned]
    assert spawned.sum() > 10 and (placeholders < 0).all()
    assert len(np.unique(placeholders)) == len(placeholders)
    np.testing.assert_array_equal(got[0][-placeholders - 1, SERIAL], -placeholders - 1)
    np.testing.assert_array_equal(got[0][-placeholders - 1, KEY], 0)


def test_set_field_stores_the_float64_value_bit_for_bit() -> None:
    values = np.array([-0.0, 0.0, np.nan, -np.inf, 5e-324, 1.0 / 3.0])
    n = len(values)
    batch = (np.full(n, SET, np.int64), np.arange(n, dtype=np.int64), np.arange(1, n + 1, dtype=np.int64),
             np.full(n, 77, np.int64), values)
    got, want = run_both(np.zeros((n + 1, RECORD_WORDS), np.int64), 0, 0, 0, 0, batch)   # + the scratch row
    assert_same_buffer(got, want)
    np.testing.assert_array_equal(got[0][:n, VALUE], values.view(np.int64))
    np.testing.assert_array_equal(got[0][:n, KEY], 77)


@pytest.mark.parametrize(("capacity", "count", "n"), [(64, 60, 10), (64, 64, 1), (1, 0, 2), (65, 0, 66)])
def test_a_full_buffer_keeps_every_record_that_fit_and_counts_the_rest(capacity: int, count: int, n: int) -> None:
    """Past its rows a buffer writes only its scratch last row (no byte past the array) and counts
    every command: the frame's total decides, on any worker count, whether it is refused
    (CapacityError)."""
    rng = np.random.default_rng(capacity + count)
    records = noise_records(rng, capacity)
    batch = random_commands(rng, n, list(KINDS.values()))
    got_records, got_count = records.copy(), np.array([count], np.int64)
    cmd = CommandBuffer(got_records, got_records.view(np.float64), got_count, 128, 4, 5)
    got_placeholders = np.zeros(n, np.int64)
    issue(cmd, *batch, got_placeholders)
    want_records, want_count, want_placeholders, full = reference.command_records(records, count, 128, 4, 5, *batch)
    assert full and want_count == count + n
    assert_same_buffer((got_records, int(got_count[0]), got_placeholders),
                       (want_records, want_count, want_placeholders))


@pytest.mark.parametrize("name", list(KINDS))
def test_every_command_only_counts_in_the_empty_buffer_of_a_system_without_commands(name: str) -> None:
    cmd = commands.empty_buffer()
    batch = random_commands(np.random.default_rng(3), 1, [KINDS[name]])
    placeholders = np.zeros(1, np.int64)
    issue(cmd, *batch, placeholders)
    assert cmd.count[0] == 1 and cmd.records.shape[0] == 1      # counted; written only to the scratch row


def test_record_words_and_kinds_are_distinct() -> None:
    words = [commands.KIND, SYSTEM, TABLE, ROW, TARGET, KEY, VALUE, SERIAL]
    assert sorted(words) == list(range(RECORD_WORDS))
    kinds = {DESPAWN, ADD, REMOVE, SPAWN, SET}
    assert len(kinds) == 5 and 0 not in kinds     # a zeroed record is "corrupt" to apply_records


# ---------------------------------------------------------------- which change records decide
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 600])
@pytest.mark.parametrize("shape", ["distinct", "pairs", "few entities", "one entity"])
def test_final_changes_matches_its_twin(n: int, shape: str) -> None:
    rng = np.random.default_rng(n)
    entities = {"distinct": max(n, 1), "pairs": max(n // 2, 1), "few entities": 3, "one entity": 1}[shape]
    ids = rng.permutation(n) if shape == "distinct" else rng.integers(0, entities, n)
    ids = (ids.astype(np.int64) << 32) | 7          # ids as the index makes them: generation bits too
    keys = rng.integers(0, 5, n).astype(np.int64)   # "one entity" with 600 records: runs longer than 16
    final, several = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
    repeats = commands.final_changes(ids, keys, np.argsort(ids, kind="stable"), final, several)
    want_final, want_several = reference.final_changes(ids, keys)
    assert repeats == (np.unique(ids).shape[0] < n)
    np.testing.assert_array_equal(final, want_final)
    np.testing.assert_array_equal(several, want_several)
    # live ids of distinct entities have distinct slots: the entity number as the slot this time
    live = (7 << 32) | (ids >> 32)
    final, several, tags = np.zeros(n, np.bool_), np.zeros(n, np.bool_), np.zeros(max(n, entities) + 1, np.int32)
    assert commands.final_changes_by_slot(live, keys, final, several, tags)       # the same without a sort
    np.testing.assert_array_equal(final, want_final)
    np.testing.assert_array_equal(several, want_several)
    assert not tags.any()                                                          # left as it was given


def test_final_changes_by_slot_declines_more_than_few_keys_having_written_nothing() -> None:
    n = commands.FEW_KEYS + 1
    ids = np.full(n, (1 << 32) | 3, np.int64)
    final, several, tags = np.zeros(n, np.bool_), np.zeros(n, np.bool_), np.zeros(8, np.int32)
    assert not commands.final_changes_by_slot(ids, np.arange(n, dtype=np.int64), final, several, tags)
    assert not final.any() and not several.any() and not tags.any()
    assert commands.final_changes_by_slot(ids[:-1], np.arange(n - 1, dtype=np.int64), final[:-1], several[:-1], tags)
    assert final[:-1].all() and several[:-1].all()                # one entity, FEW_KEYS components: all decide


# ---------------------------------------------------------------- helpers of apply_records
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 600])
def test_last_sets_keeps_the_last_position_of_each_target_per_group(n: int) -> None:
    rng = np.random.default_rng(n + 1)
    targets = rng.integers(0, max(n // 3, 1), n).astype(np.int64) << 32 | 5
    field = rng.integers(0, 3, n)                         # three groups (fields), maybe empty, interleaved
    positions = np.argsort(field, kind="stable")          # each group's positions increasing
    bounds = np.array([0, *np.cumsum(np.bincount(field, minlength=3))], np.int64)
    want = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        group = positions[a:b]
        _, reversed_first = np.unique(targets[group][::-1], return_index=True)
        want.append(group[np.sort(group.shape[0] - 1 - reversed_first)])
    sets, fresh = positions.copy(), np.empty(3, np.int64)
    commands.last_sets(targets, sets, bounds, 3, fresh)
    for g in range(3):
        np.testing.assert_array_equal(sets[bounds[g]:bounds[g + 1]], want[g])
        same = g > 0 and np.array_equal(targets[want[g]], targets[want[g - 1]])
        assert fresh[g] == (0 if same else 1)


def test_last_sets_marks_a_group_naming_the_previous_groups_targets_as_not_fresh() -> None:
    targets = np.array([7, 8, 7, 8, 9, 8], np.int64)
    sets, bounds, fresh = np.arange(6, dtype=np.int64), np.array([0, 2, 4, 6], np.int64), np.empty(3, np.int64)
    commands.last_sets(targets, sets, bounds, 3, fresh)
    assert bounds.tolist() == [0, 2, 4, 6] and fresh.tolist() == [1, 0, 1]
    np.testing.assert_array_equal(sets, np.arange(6))


def _lexsorted(records: np.ndarray) -> np.ndarray:
    return np.lexsort((np.arange(records.shape[0]), records[:, ROW], records[:, TABLE], records[:, SYSTEM]))


@pytest.mark.parametrize("n", [0, 1, 2, 65, 600])
def test_ascending_runs_counts_the_runs_of_records_by_system_table_row(n: int) -> None:
    rng = np.random.default_rng(n + 2)
    records = np.zeros((n, RECORD_WORDS), np.int64)
    records[:, [SYSTEM, TABLE, ROW]] = rng.integers(0, 3, (n, 3))
    ordered = records[_lexsorted(records)]
    assert commands.ascending_runs(ordered) == min(n, 1)
    for shuffled in (records, ordered[::-1]):
        keys = [tuple(r) for r in shuffled[:, [SYSTEM, TABLE, ROW]].tolist()]
        want = min(n, 1) + sum(keys[k] < keys[k - 1] for k in range(1, n))
        assert commands.ascending_runs(shuffled) == want


@pytest.mark.parametrize("runs", [1, 2, 3, 8, 1000])
def test_sorted_order_is_lexsorts_stable_order_for_records_in_runs(runs: int) -> None:
    """Sorted blocks (a process's units) concatenated in a shuffled order, ties included (two
    records of one row): the merge gives np.lexsort's order with positions as the last key."""
    rng = np.random.default_rng(runs)
    records = np.zeros((3000, RECORD_WORDS), np.int64)
    records[:, [SYSTEM, TABLE, ROW]] = rng.integers(0, [2, 3, 400], (3000, 3))
    records[:, SERIAL] = np.arange(3000)
    records = records[_lexsorted(records)]
    blocks = np.array_split(np.arange(3000), runs)
    rng.shuffle(blocks)
    shuffled = records[np.concatenate(blocks)]
    np.testing.assert_array_equal(commands.sorted_order(shuffled), _lexsorted(shuffled))
    np.testing.assert_array_equal(commands.sorted_order(shuffled[:0]), np.empty(0, np.int64))
    owners = rng.integers(0, 3, shuffled.shape[0])
    records, owners_sorted = commands.sort_records(shuffled, owners)
    np.testing.assert_array_equal(records, shuffled[_lexsorted(shuffled)])
    np.testing.assert_array_equal(owners_sorted, owners[_lexsorted(shuffled)])


def test_added_at_spawn_places_the_copies_of_a_table_that_all_add_one_component_it_lacks() -> None:
    keys = np.array([10, 20, 30], np.int64)                 # component lookup: keys, ids 0..2
    ids = np.arange(3, dtype=np.int64)
    membership = np.zeros((6, 3), np.bool_)
    membership[4, 1] = True                                  # table 4 has component 1
    # spawn (each of its own prefab table): 0 adds 10 twice; 1 adds 10 and 20; 2 adds then
    # removes 10; 3 nothing; 4 adds 20, which its prefab's table has; 5 adds 30; and a record on
    # an entity (target >= 0)
    kinds = [ADD, ADD, ADD, ADD, ADD, REMOVE, ADD, ADD, ADD]
    record_keys = [10, 10, 10, 20, 10, 10, 20, 30, 30]
    targets = np.array([-1, -1, -2, -2, -3, -3, -5, -6, 77], np.int64)
    records = np.zeros((9, RECORD_WORDS), np.int64)
    records[:, 0], records[:, KEY] = kinds, record_keys
    changes = np.arange(9, dtype=np.int64)
    common, keep = np.empty(6, np.int64), np.empty(9, np.bool_)
    assert commands.added_at_spawn(records, targets, changes, np.arange(6, dtype=np.int64), membership, keys, ids,
                                   common, keep) == 2
    assert (common >= 0).tolist() == [True, False, False, False, False, True]
    assert common[[0, 5]].tolist() == [0, 2]
    assert keep.tolist() == [False, False, True, True, True, True, True, False, True]
    # the same spawns, all copies of one prefab table: they do not all add the same, so none is placed
    assert commands.added_at_spawn(records, targets, changes, np.zeros(6, np.int64), membership, keys, ids,
                                   common, keep) == 0
    assert (common < 0).all() and keep.all()


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 600])
def test_index_records_lists_sets_by_key_in_record_order_and_the_changes(n: int) -> None:
    rng = np.random.default_rng(n + 3)
    records = np.zeros((n, RECORD_WORDS), np.int64)
    records[:, 0] = rng.choice([SPAWN, SET, ADD, REMOVE, DESPAWN], n)
    records[:, KEY] = rng.integers(0, 4, n) << 40
    sets, bounds, changes = np.empty((3, n + 1), np.int64)
    groups, count = commands.index_records(records, sets, bounds, changes)
    at = np.flatnonzero(records[:, 0] == SET)
    want = at[np.argsort(records[at, KEY], kind="stable")]
    np.testing.assert_array_equal(sets[: at.shape[0]], want)
    keys = records[want, KEY]
    assert groups == np.unique(keys).shape[0] and bounds[groups] == at.shape[0]
    for g in range(groups):
        assert (keys[bounds[g]:bounds[g + 1]] == keys[bounds[g]]).all()
    np.testing.assert_array_equal(changes[:count], np.flatnonzero(np.isin(records[:, 0], (ADD, REMOVE))))

"""The compiled check of command records against the checks written in Python.

apply_records runs one kernel (plan_records) over a frame's records and runs the Python
checks only when it flags one; so the kernel must pass exactly the records those checks pass,
and plan what to apply as they do (placeholders resolved, sets grouped, changes left after the
adds placed at spawn, despawns). Random frames of well-formed records (serials as the
helpers write them) mix live, dead and placeholder targets, valid and invalid keys, and values
at the edges of every field type: the two must agree on each.
"""

from __future__ import annotations

import numpy as np
import pytest

import ecs
from ecs import bool_, component, f32, f64, i8, i32, u8, u16, u64
from ecs.kernels.commands import (
    ADD,
    DESPAWN,
    KEY,
    KIND,
    RECORD_WORDS,
    REMOVE,
    ROW,
    SERIAL,
    SET,
    SET_INT,
    SET_UINT,
    SPAWN,
    TARGET,
    VALUE,
)
from tests import introspect


@component
class Gauge:
    rgb: u8[3]                 # a vector field without default: cmd_set cannot name it, cmd_add cannot fill it
    level: f64 = 0.0
    ratio: f32 = 0.0
    small: i8 = 0
    count: u16 = 0
    big: u64 = 0
    on: bool_ = False


@component
class Plain:
    v: i32 = 1


@component
class Flag:
    pass


GAUGE, PLAIN, FLAG = (ecs.component_key(c) for c in (Gauge, Plain, Flag))
FIELD_KEYS = [ecs.field_key(Gauge, f) for f in ("level", "ratio", "small", "count", "big", "on")] + [
    ecs.field_key(Plain, "v"), GAUGE << 8, (GAUGE << 8) | 7, (PLAIN << 8) | 1, 12345 << 8]   # rgb; then no fields
COMPONENT_KEYS = [GAUGE, PLAIN, FLAG, 777]
VALUES = [0.0, 1.0, -1.0, 0.5, 127.0, 128.0, -128.0, -129.0, 255.0, 65535.0, 65536.0, 2.0**31, 2.0**63,
          2.0**64, -0.0, np.nan, np.inf, -np.inf, 3.4e38, 3.5e38, 1e300, 5e-324]
INT_WORDS = [0, 1, -1, 2, 127, 128, -128, -129, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, -2**63]
UINT_WORDS = [0, 1, 2, 255, 256, 65536, 2**63, 2**63 + 1, 2**64 - 1]   # stored as their bits in an int64 word


@pytest.fixture(scope="module")
def world():
    with ecs.World() as w:
        gauges = w.spawn_batch(4, Gauge(rgb=[[1, 2, 3]] * 4), Plain())
        plains = w.spawn_batch(3, Plain(v=[1, 2, 3]))
        dead = int(w.spawn(Plain()))
        w.despawn(dead)
        yield w, [int(e) for e in gauges], [int(e) for e in plains], dead


def random_frame(rng: np.random.Generator, gauges: list[int], plains: list[int],
                 dead: int) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(1, 24))
    owners = rng.integers(0, 3, n).astype(np.int64)
    records = np.zeros((n, RECORD_WORDS), np.int64)
    values = records.view(np.float64)
    seen = np.zeros(3, np.int64)
    for i in range(n):
        kind = int(rng.choice([SPAWN, SET, ADD, REMOVE, DESPAWN, 0, 9], p=[0.25, 0.3, 0.15, 0.1, 0.16, 0.02, 0.02]))
        roll = rng.random()
        if roll < 0.45:
            target = int(rng.choice(gauges))
        elif roll < 0.6:
            target = int(rng.choice(plains))
        elif roll < 0.65:
            target = dead
        elif roll < 0.67:
            target = 0
        else:
            target = -int(rng.integers(1, n + 2))        # a placeholder: maybe of a spawn of its owner
        key = int(rng.choice(FIELD_KEYS)) if kind == SET else int(rng.choice(COMPONENT_KEYS))
        if kind == SET:    # its value a float64, an int64 or a uint64 (as cmd_set stores each)
            kind = int(rng.choice([SET, SET_INT, SET_UINT]))
        records[i, [KIND, ROW, TARGET, KEY, SERIAL]] = kind, i, target, key, seen[owners[i]]
        if kind == SET_INT:
            records[i, VALUE] = INT_WORDS[int(rng.integers(len(INT_WORDS)))]
        elif kind == SET_UINT:
            word = UINT_WORDS[int(rng.integers(len(UINT_WORDS)))]
            records[i, VALUE] = word - 2**64 if word >= 2**63 else word
        else:
            values[i, VALUE] = rng.choice(VALUES)
        seen[owners[i]] += 1
    return records, owners


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_check_passes_exactly_what_the_python_checks_pass(world, seed: int) -> None:
    w, gauges, plains, dead = world
    rng = np.random.default_rng(seed)
    outcomes = set()
    for _ in range(400):
        records, owners = random_frame(rng, gauges, plains, dead)
        passed, compiled, error, python = introspect.plan_records_both_ways(w, records, owners)
        assert passed == (error is None), (records, owners, error)
        if passed:
            assert_same_plan(compiled, python)
        outcomes.add(type(error).__name__ if error else "passed")
    assert {"passed", "CommandError", "DeadEntityError", "MissingComponentError", "ComponentValueError"} <= outcomes


@component
class Twin:
    a: f32 = 0.0
    b: i8 = 0


TWIN_FIELDS = [ecs.field_key(Plain, "v"), ecs.field_key(Twin, "a"), ecs.field_key(Twin, "b")]


def valid_frame(rng: np.random.Generator, entities: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A frame whose every record passes (entities: live, each with Plain and Twin): spawns,
    often with their three fields set right after (as newborns are), sets, adds and removes of
    live entities or of placeholders of their own row's spawns (a placeholder is valid only in
    the commands of the row that made it), and despawns, repeats allowed. In half the frames
    every change of a copy adds Flag: copies of a table that lacks it are placed with it."""
    n = int(rng.integers(1, 40))
    owners = np.sort(rng.integers(0, 2, n)).astype(np.int64)
    records = np.zeros((n, RECORD_WORDS), np.int64)
    values = records.view(np.float64)
    row_spawns: list[int] = []                   # serials of the spawns of the current row
    seen = np.zeros(2, np.int64)
    tag_only = rng.random() < 0.5
    newborn: list[tuple[int, int]] = []          # (target, field key) still to set
    row = -1
    for i in range(n):
        owner = int(owners[i])
        same_owner = i > 0 and int(owners[i - 1]) == owner
        if newborn and same_owner:
            kind = SET
            target, key = newborn.pop()
        else:
            newborn = []
            kind = int(rng.choice([SPAWN, SET, ADD, REMOVE, DESPAWN], p=[0.3, 0.25, 0.25, 0.1, 0.1]))
            if kind != SPAWN and same_owner and row_spawns and rng.random() < 0.6:
                target = -(int(rng.choice(row_spawns)) + 1)
            else:
                target = int(rng.choice(entities))
                row, row_spawns = row + 1, []    # a command of another row
            key = int(rng.choice(TWIN_FIELDS)) if kind == SET else FLAG
        if kind == SET:
            values[i, VALUE] = float(rng.integers(-5, 5))
        elif kind == ADD and not (tag_only and target < 0):
            key = int(rng.choice([FLAG, PLAIN]))
        elif kind == REMOVE and tag_only and target < 0:
            kind = ADD
        if kind == SPAWN:
            row_spawns.append(int(seen[owner]))
            if rng.random() < 0.5:
                newborn = [(-int(seen[owner]) - 1, key) for key in TWIN_FIELDS[::-1]]
        records[i, [KIND, ROW, TARGET, KEY, SERIAL]] = kind, row, target, key, seen[owner]
        seen[owner] += 1
    return records, owners


def test_the_compiled_plan_of_valid_frames_is_the_python_checks_plan() -> None:
    with ecs.World() as w:
        entities = [int(e) for e in w.spawn_batch(4, Plain(), Twin())]
        entities += [int(e) for e in w.spawn_batch(3, Plain(), Twin(), Flag())]
        rng = np.random.default_rng(7)
        placed_with_an_add = fresh = again = 0
        for _ in range(400):
            records, owners = valid_frame(rng, entities)
            passed, compiled, error, python = introspect.plan_records_both_ways(w, records, owners)
            assert passed and error is None, (records, owners, error)
            assert_same_plan(compiled, python)
            placed_with_an_add += bool(compiled["added"])
            fresh += sum(group[-1] for group in compiled["sets"])
            again += sum(not group[-1] for group in compiled["sets"])
        assert placed_with_an_add >= 10 and fresh >= 500 and again >= 40     # (15, 934, 76 at this seed)


def assert_same_plan(compiled: dict, python: dict) -> None:
    for name in ("targets", "prefabs", "changes", "despawn_at"):
        np.testing.assert_array_equal(compiled[name], python[name], err_msg=name)
    assert compiled["added"] == python["added"]
    assert len(compiled["sets"]) == len(python["sets"])
    for (*names, positions, values, fresh), (*python_names, python_positions, python_values, python_fresh) in zip(
            compiled["sets"], python["sets"], strict=True):
        assert names == python_names and fresh == python_fresh
        np.testing.assert_array_equal(positions, python_positions)
        assert values.dtype == python_values.dtype
        np.testing.assert_array_equal(values, python_values)


def test_a_crafted_serial_goes_to_the_python_checks() -> None:
    with ecs.World() as w:
        prefab = int(w.spawn(Plain()))
        records = np.zeros((2, RECORD_WORDS), np.int64)
        records[0, [KIND, TARGET, SERIAL]] = SPAWN, prefab, 5      # the helpers never write serial 5 here
        records[1, [KIND, TARGET, KEY]] = ADD, -6, FLAG
        passed, _, error, targets = introspect.check_records_both_ways(w, records, np.zeros(2, np.int64))
        assert not passed and error is None                      # the Python checks find nothing wrong
        assert targets.tolist() == [prefab, -1]


def test_a_record_naming_a_vector_field_is_a_command_error_however_many_there_are(world) -> None:
    w, gauges, _, _ = world
    for count in (1, 3, 4):                      # 3: as many as the field's width
        records = np.zeros((count, RECORD_WORDS), np.int64)
        records[:, KIND], records[:, TARGET], records[:, KEY], records[:, ROW] = SET, gauges[0], GAUGE << 8, 0
        passed, _, error, _ = introspect.check_records_both_ways(w, records, np.zeros(count, np.int64))
        assert not passed and isinstance(error, ecs.CommandError)
        assert "Gauge.rgb: a vector field, which cmd_set cannot write" in str(error)


def test_a_placeholder_serial_past_32_bits_names_no_spawn_of_another_process() -> None:
    with ecs.World() as w:
        prefab = int(w.spawn(Plain()))
        records = np.zeros((2, RECORD_WORDS), np.int64)
        records[0, [KIND, TARGET, SERIAL]] = SPAWN, prefab, (1 << 32) + 5   # owner 0, as owner 1's serial 5 reads
        records[1, [KIND, TARGET, KEY]] = ADD, -6, FLAG                     # owner 1's placeholder of serial 5
        passed, _, error, _ = introspect.check_records_both_ways(w, records, np.array([0, 1], np.int64))
        assert not passed and isinstance(error, ecs.CommandError)
        assert "names placeholder -6, which no cmd_spawn of its kernel row made" in str(error)

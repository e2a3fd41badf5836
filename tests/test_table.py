"""ecs/table.py: rows leave no change bits behind (the word-level readers rely on it)."""

from __future__ import annotations

import numpy as np

import ecs
from tests import introspect, reference
from tests.components import Position, Velocity


def bits_at_and_past(table, row: int) -> list[int]:
    """Slots with any bit set at rows >= `row` (within the committed words)."""
    words = -(-max(table.capacity, 1) // 64)
    return [slot for slot in range(table.nslots)
            if reference.unpack(table.bit_matrix[slot, :words])[row:].any()]


def test_despawning_the_last_row_clears_its_change_bits(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Position(x=0, y=0), Velocity(x=0, y=0))
    reader = world.query(Position, changed=[Position])
    list(reader)
    world.set(int(ids[2]), Position(x=1, y=1))
    world.set(int(ids[2]), Velocity(x=1, y=1))
    table = introspect.tables(world)[0]
    assert bits_at_and_past(table, 2)   # the marks are there before the despawn
    world.despawn(int(ids[2]))          # the last row: nothing is swapped into it
    assert bits_at_and_past(table, 2) == []


def test_swap_remove_and_batch_removal_leave_the_tail_clear(world: ecs.World) -> None:
    ids = world.spawn_batch(200, Position(x=np.arange(200), y=0))
    table = introspect.tables(world)[0]
    world.despawn(int(ids[5]))
    world.despawn(int(ids[199]))
    world.despawn_batch(ids[[0, 197, 100, 198, 63, 64]])
    assert table.n == 192
    assert bits_at_and_past(table, 192) == []

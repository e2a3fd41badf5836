"""One-row archetype moves over a world's arena, addressed by byte offsets.

A world's columns, entity columns, change bits and entity index all lie in one arena
(ecs/memory.py), at offsets that never change. So one kernel, given the arena as bytes and a
*plan* of offsets built once per table edge (ecs/fastpath.py), moves a row between any two
tables: every column of any width, any number of change-tracking slots, one call. From Python a
call through the dispatcher costs ~0.25-0.4 us (two array arguments and four ints), through the
compiled entry the paths use ~0.14 us, against ~2 us of memoryview item operations for a
two-slot table; its work is ~75 ns (a tag's add then remove, 10,000 times in a compiled loop).
`move_entity` and `take_entity` take the entity's id and find its row themselves (locating it
from Python costs ~0.2 us more).

Plan layout (int64; offsets in bytes from the arena's start):
  [0] columns both tables have      [1] columns of the source    [2] slot pairs that follow a row
  [3] slots in use in the source    [4] source entity column     [5] target entity column
  [6] entity index's table column   [7] its row column (int32 each) [8] source table id
  [9] target table id               [10] source bits            [11] target bits
  [12] bytes per source slot        [13] bytes per target slot  [14] byte flip (0 little-endian)
  [15] slots to mark in the target row   [16] entity index's generation column (uint32)
  then per shared column (source offset, target offset, bytes per row), per source column
  (offset, bytes per row), per slot pair (source slot, target slot), per mark (target slot).
A row's bit of slot s is bit (row & 7) of byte bits + s * bytes per slot + ((row >> 3) ^ flip).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

HEADER = 17


@jit
def _words(arena):
    """The arena's bytes as int32 and int64 words (whole-array views: no copy). Every offset a
    plan holds for an int32 or int64 array is a multiple of its item size (regions start on
    pages, columns 512 bytes into them), so word w of a view is bytes [w * size, (w + 1) * size).
    A slice-and-view per access (`arena[o:o + 4].view(np.int32)[0]`) cost ~10 ns each: half of a
    one-row move's ~170 ns, against ~75 ns with these."""
    return arena.view(np.int32), arena.view(np.int64)


@jit
def _fill_hole(arena, a32, a64, plan, row, last):
    """Take `row` out of the source: its last row's values, id and bits fill it and the moved
    entity is placed at `row`; the vacated last row's bits are cleared."""
    nshared, ncolumns, nslots = plan[0], plan[1], plan[3]
    ids, bits, stride, flip = plan[4], plan[10], plan[12], plan[14]
    from_byte, from_bit = (row >> 3) ^ flip, np.uint8(1 << (row & 7))
    if row == last:
        for slot in range(nslots):
            arena[bits + slot * stride + from_byte] &= ~from_bit
        return
    p = HEADER + 3 * nshared
    for _ in range(ncolumns):
        column, size = plan[p], plan[p + 1]
        p += 2
        for b in range(size):
            arena[column + row * size + b] = arena[column + last * size + b]
    moved_id = a64[(ids >> 3) + last]
    a64[(ids >> 3) + row] = moved_id
    moved = moved_id & 0xFFFFFFFF
    a32[(plan[6] >> 2) + moved] = plan[8]
    a32[(plan[7] >> 2) + moved] = row
    last_byte, last_bit = (last >> 3) ^ flip, np.uint8(1 << (last & 7))
    for slot in range(nslots):
        base = bits + slot * stride
        if arena[base + last_byte] & last_bit:
            arena[base + last_byte] &= ~last_bit
            arena[base + from_byte] |= from_bit
        else:
            arena[base + from_byte] &= ~from_bit
    return


@jit
def _move_row(arena, a32, a64, plan, index, row, new_row, last):
    nshared, ncolumns, npairs = plan[0], plan[1], plan[2]
    flip = plan[14]
    p = HEADER
    for _ in range(nshared):
        source, target, size = plan[p], plan[p + 1], plan[p + 2]
        p += 3
        for b in range(size):
            arena[target + new_row * size + b] = arena[source + row * size + b]
    a64[(plan[5] >> 3) + new_row] = a64[(plan[4] >> 3) + row]
    from_byte, from_bit = (row >> 3) ^ flip, np.uint8(1 << (row & 7))
    to_byte, to_bit = (new_row >> 3) ^ flip, np.uint8(1 << (new_row & 7))
    p += 2 * ncolumns
    for _ in range(npairs):
        source_slot, target_slot = plan[p], plan[p + 1]
        p += 2
        target_byte = plan[11] + target_slot * plan[13] + to_byte
        if arena[plan[10] + source_slot * plan[12] + from_byte] & from_bit:
            arena[target_byte] |= to_bit
        else:
            arena[target_byte] &= ~to_bit
    for _ in range(plan[15]):
        arena[plan[11] + plan[p] * plan[13] + to_byte] |= to_bit
        p += 1
    _fill_hole(arena, a32, a64, plan, row, last)
    a32[(plan[6] >> 2) + index] = plan[9]
    a32[(plan[7] >> 2) + index] = new_row


@jit
def move_row(arena, plan, index, row, new_row, last):
    """Move entity slot `index` from `row` of the plan's source (whose last row is `last`) to
    `new_row` of its target: the shared columns, the id and the bits of the slot pairs go
    along, the target's mark slots are set, the hole is filled and both entities are placed.
    The caller reserved `new_row` and counts the rows."""
    a32, a64 = _words(arena)
    _move_row(arena, a32, a64, plan, index, row, new_row, last)


@jit
def take_row(arena, plan, row, last):
    """Take `row` out of the plan's source table (a despawn): the hole is filled from the last
    row. The caller frees the entity's slot and counts the rows."""
    a32, a64 = _words(arena)
    _fill_hole(arena, a32, a64, plan, row, last)


@jit
def _slot_in_source(arena, a32, plan, entity, high_water):
    """The slot index of `entity` when it is a live id of the plan's source table, else -1
    (dead, never spawned, or in another table): the id checks of EntityIndex.locate."""
    index = entity & 0xFFFFFFFF
    if entity <= 0 or index >= high_water:
        return -1
    if a32[(plan[6] >> 2) + index] != plan[8]:
        return -1
    if np.uint32(a32[(plan[16] >> 2) + index]) != entity >> 32:   # the generation: uint32
        return -1
    return index


@jit(nogil=False)   # called from Python one row at a time: the GIL's release costs ~40 ns
def move_entity(arena, plan, entity, high_water, new_row, last):
    """move_row of the live id `entity` (slots below `high_water` were handed out) when it is in
    the plan's source; returns False, having changed nothing, when it is not."""
    a32, a64 = _words(arena)
    index = _slot_in_source(arena, a32, plan, entity, high_water)
    if index < 0:
        return False
    _move_row(arena, a32, a64, plan, index, a32[(plan[7] >> 2) + index], new_row, last)
    return True


@jit(nogil=False)   # called from Python one row at a time: the GIL's release costs ~40 ns
def take_entity(arena, plan, entity, high_water, last):
    """take_row of the live id `entity` when it is in the plan's source; returns its slot index
    (for the caller to free), or -1, having changed nothing, when it is not."""
    a32, a64 = _words(arena)
    index = _slot_in_source(arena, a32, plan, entity, high_water)
    if index >= 0:
        _fill_hole(arena, a32, a64, plan, a32[(plan[7] >> 2) + index], last)
    return index

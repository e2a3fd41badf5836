"""Command records: structural changes queued from inside kernels, applied later by the library.

A kernel that takes `ecs.Commands` receives a `CommandBuffer`: the records of its process
(a sparse int64 array of RECORD_WORDS words per command, committed only where written), the
shared record count, and where the current slice starts. Every helper writes one record
naming the command, the issuing system, table and row (global), the target entity and one
argument. The main process applies all records after the frame, sorted by (system, table,
row), so the result does not depend on how rows were split across workers.

A full buffer raises (the kernel's KernelError says so): commands are never dropped.

The helpers are inlined into the calling kernel (`inline="always"`): called as functions, each
call increfs and decrefs the buffer's three arrays, 33 ns a command against ~2 ns inlined.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ._jit import jit

RECORD_WORDS = 8
KIND, SYSTEM, TABLE, ROW, TARGET, KEY, VALUE, SERIAL = range(RECORD_WORDS)
DESPAWN, ADD, REMOVE, SPAWN, SET = 1, 2, 3, 4, 5

CommandBuffer = namedtuple("CommandBuffer", ["records", "values", "count", "base", "system", "table"])
CommandBuffer.__module__ = __name__   # numba's cache finds the type by module and name


@jit(inline="always")
def _append(cmd, kind, row, target, key):
    k = cmd.count[0]
    if k >= cmd.records.shape[0]:
        raise MemoryError("command buffer full: too many commands from one process in one frame")
    cmd.count[0] = k + 1
    record = cmd.records[k]
    record[KIND] = kind
    record[SYSTEM] = cmd.system
    record[TABLE] = cmd.table
    record[ROW] = cmd.base + row
    record[TARGET] = target
    record[KEY] = key
    record[SERIAL] = k
    return k


@jit(inline="always")
def despawn(cmd, row, entity):
    """Queue despawning `entity` (issued while processing slice row `row`)."""
    _append(cmd, DESPAWN, row, entity, 0)


@jit(inline="always")
def add_tag(cmd, row, entity, component_key):
    """Queue adding a component without fields (or whose fields all have defaults)."""
    _append(cmd, ADD, row, entity, component_key)


@jit(inline="always")
def remove_tag(cmd, row, entity, component_key):
    """Queue removing a component from `entity`."""
    _append(cmd, REMOVE, row, entity, component_key)


@jit(inline="always")
def spawn(cmd, row, prefab):
    """Queue spawning a copy of the entity `prefab`; returns a placeholder id (negative) that
    `set_field` accepts until the frame's commands are applied."""
    k = _append(cmd, SPAWN, row, prefab, 0)
    return -(k + 1)


@jit(inline="always")
def set_field(cmd, row, target, field_key, value):
    """Queue writing `value` (as float64, converted to the field's dtype with range checks) to
    one field of `target` (an entity or a placeholder from `spawn`)."""
    k = _append(cmd, SET, row, target, field_key)
    cmd.values[k, VALUE] = value


def empty_buffer() -> CommandBuffer:
    records = np.zeros((0, RECORD_WORDS), np.int64)
    return CommandBuffer(records, records.view(np.float64), np.zeros(1, np.int64), 0, 0, 0)


@jit
def final_changes(ids, keys, order, final, several):
    """The last record of each (entity, component key) among change records in position order.

    `order`: a stable argsort of `ids`, so each entity's records are a run in position order.
    Sets final[p] for the record p that decides its pair and several[p] where that entity has
    more than one deciding record (different components). Returns whether any id repeats.
    O(n) for short runs (pairwise within a run of up to 16); a longer run is sorted by key first."""
    n = ids.shape[0]
    repeats = False
    i = 0
    while i < n:
        j = i + 1
        while j < n and ids[order[j]] == ids[order[i]]:
            j += 1
        if j - i == 1:
            final[order[i]] = True
        else:
            repeats = True
            run = order[i:j]
            deciding = 0
            if j - i <= 16:               # no later record of the same key: compare pairwise
                for a in range(run.shape[0]):
                    last = True
                    for b in range(a + 1, run.shape[0]):
                        if keys[run[b]] == keys[run[a]]:
                            last = False
                            break
                    if last:
                        final[run[a]] = True
                        deciding += 1
            else:
                by_key = run[np.argsort(keys[run], kind="mergesort")]
                for a in range(by_key.shape[0]):
                    if a + 1 == by_key.shape[0] or keys[by_key[a + 1]] != keys[by_key[a]]:
                        final[by_key[a]] = True
                        deciding += 1
            if deciding > 1:
                for a in range(run.shape[0]):
                    if final[run[a]]:
                        several[run[a]] = True
        i = j
    return repeats

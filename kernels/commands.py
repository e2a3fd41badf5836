"""Command records: structural changes queued from inside kernels, applied later by the library.

A kernel that takes `ecs.Commands` receives a `CommandBuffer`: the records of its process
(a sparse int64 array of RECORD_WORDS words per command, committed only where written), the
shared record count, and where the current slice starts. Every helper writes one record
naming the command, the issuing system, table and row (global), the target entity and one
argument. The main process applies all records after the frame, sorted by (system, table,
row), so the result does not depend on how rows were split across workers.

A full buffer raises (the kernel's KernelError says so): commands are never dropped.
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


@jit
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


@jit
def despawn(cmd, row, entity):
    """Queue despawning `entity` (issued while processing slice row `row`)."""
    _append(cmd, DESPAWN, row, entity, 0)


@jit
def add_tag(cmd, row, entity, component_key):
    """Queue adding a component without fields (or whose fields all have defaults)."""
    _append(cmd, ADD, row, entity, component_key)


@jit
def remove_tag(cmd, row, entity, component_key):
    """Queue removing a component from `entity`."""
    _append(cmd, REMOVE, row, entity, component_key)


@jit
def spawn(cmd, row, prefab):
    """Queue spawning a copy of the entity `prefab`; returns a placeholder id (negative) that
    `set_field` accepts until the frame's commands are applied."""
    k = _append(cmd, SPAWN, row, prefab, 0)
    return -(k + 1)


@jit
def set_field(cmd, row, target, field_key, value):
    """Queue writing `value` (as float64, converted to the field's dtype with range checks) to
    one field of `target` (an entity or a placeholder from `spawn`)."""
    k = _append(cmd, SET, row, target, field_key)
    cmd.values[k, VALUE] = value


def empty_buffer() -> CommandBuffer:
    records = np.zeros((0, RECORD_WORDS), np.int64)
    return CommandBuffer(records, records.view(np.float64), np.zeros(1, np.int64), 0, 0, 0)

"""Deferred structural changes: commands from kernels (`Commands`) and from Python (`defer`).

Structural changes (spawn, despawn, adding or removing components) move rows between tables,
so they happen only in the main process, between frames. A kernel that takes a parameter
annotated `Commands` queues them with the njit helpers of kernels/commands.py:

    ecs.cmd_despawn(cmd, i, entity)            ecs.cmd_spawn(cmd, i, prefab) -> placeholder
    ecs.cmd_add(cmd, i, entity, TAG_KEY)       ecs.cmd_set(cmd, i, target, FIELD_KEY, value)
    ecs.cmd_remove(cmd, i, entity, TAG_KEY)

where `i` is the row being processed, `TAG_KEY = ecs.component_key(Frozen)` and
`FIELD_KEY = ecs.field_key(Position, "x")` are module-level constants (the same in every
process). Each process appends to its own buffer in shared memory.

After the frame the main process gathers every buffer, sorts the records by (system, table,
row) (a row's own commands keep the order the kernel issued them) and applies them grouped by
kind: spawns (copies of the prefab entity), then field sets, then component adds and removes
(coalesced into one archetype move per entity), then despawns. Despawning an entity twice, or
one that another command already despawned, is not an error. The order depends only on the
world, never on how rows were split, so results are identical for any number of workers.
All commands are checked before any is applied (changeset.py): a bad one raises and changes
nothing. A frame that fails (KernelError, WorkerCrashedError) applies none of its commands: they
are dropped. `world.defer()` (deferred.py) queues the same changes from Python.
"""

from __future__ import annotations

import numpy as np

from kernels import commands as records_kernels
from kernels.commands import (
    ADD,
    DESPAWN,
    KEY,
    KIND,
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
)

from .changeset import ChangeSet
from .errors import CommandError, ComponentValueError, InvalidArgumentError, InvalidNameError
from .memory import Arena, ArraySpec
from .schema import INFO_BY_KEY, ComponentInfo, coerce_scalar, info_of
from .store import Store

BUFFER_CAPACITY = 1 << 20   # commands per process per frame: 64 MiB of address space, committed as written


class Commands:
    """Annotates a kernel parameter that receives this process's command buffer."""


def component_key(component: type) -> int:
    """The process-independent key of a component, for cmd_add / cmd_remove in kernels."""
    return info_of(component).key


def field_key(component: type, field: str) -> int:
    """The key of one field, for cmd_set in kernels."""
    info = info_of(component)
    if field not in info.fields:
        raise InvalidNameError(f"{info.name} has no field {field!r}; it has {', '.join(info.fields) or 'none'}")
    if info.fields[field].shape:
        raise InvalidArgumentError(f"{info.name}.{field} is a vector field; cmd_set writes scalar fields")
    return (info.key << 8) | list(info.fields).index(field)


class CommandBuffers:
    """One buffer per process that runs tasks: workers 0..N-1 and the main process (index N)."""

    def __init__(self, arena: Arena, processes: int) -> None:
        self.processes = processes
        self._records_region = arena.allocate(processes * BUFFER_CAPACITY * RECORD_WORDS * 8)
        self._count_region = arena.allocate(processes * 8)
        self._count_region.commit(processes * 8)
        self.counts = self._count_region.view(np.int64, (processes,))
        self.counts[:] = 0

    def spec(self, index: int) -> tuple[ArraySpec, ArraySpec]:
        """Where buffer `index` lives (its records and its count word)."""
        records = self._records_region.spec(np.int64, (BUFFER_CAPACITY, RECORD_WORDS),
                                            index * BUFFER_CAPACITY * RECORD_WORDS * 8)
        return records, self._count_region.spec(np.int64, (1,), index * 8)

    def take(self, arena: Arena) -> tuple[np.ndarray, np.ndarray]:
        """All records (in buffer order) and the buffer each came from; empties the buffers."""
        parts, owners = [], []
        for index in range(self.processes):
            count = int(self.counts[index])
            if count:
                records_spec, _ = self.spec(index)
                parts.append(arena.view_of(records_spec)[:count].copy())
                owners.append(np.full(count, index, np.int64))
        self.counts[:] = 0
        if not parts:
            return np.empty((0, RECORD_WORDS), np.int64), np.empty(0, np.int64)
        return np.concatenate(parts), np.concatenate(owners)


def buffer_view(arena: Arena, specs: tuple[ArraySpec, ArraySpec]) -> records_kernels.CommandBuffer:
    records = arena.view_of(specs[0])
    return records_kernels.CommandBuffer(records, records.view(np.float64), arena.view_of(specs[1]), 0, 0, 0)


def apply_records(store: Store, records: np.ndarray, owners: np.ndarray, system_names: list[str]) -> None:
    """Apply kernel commands in (system, table, row) order; see the module docstring."""
    if records.shape[0] == 0:
        return
    order = np.lexsort((np.arange(records.shape[0]), records[:, ROW], records[:, TABLE], records[:, SYSTEM]))
    records, owners = records[order], owners[order]
    values = records.view(np.float64)[:, VALUE]
    changes = ChangeSet(store)
    for k in range(records.shape[0]):
        kind, target, process = int(records[k, KIND]), int(records[k, TARGET]), int(owners[k])
        where = f"a command of system {system_names[int(records[k, SYSTEM])]!r}"
        if kind == SPAWN:
            changes.spawn_copy(target, (process, int(records[k, SERIAL])), where)
        elif kind == SET:
            info, field = _field_of(int(records[k, KEY]), where)
            value = coerce_scalar(info, field, float(values[k]))
            changes.set_field(changes.placeholder(target, process, where), info, field, value, where)
        elif kind in (ADD, REMOVE):
            component = INFO_BY_KEY.get(int(records[k, KEY]))
            if component is None:
                raise CommandError(f"{where} names component key {int(records[k, KEY])}, which no component has")
            entity = changes.placeholder(target, process, where)
            if kind == ADD:
                changes.add(entity, component, _default_values(component, where), where)
            else:
                changes.remove(entity, component, where)
        elif kind == DESPAWN:
            changes.despawn(changes.placeholder(target, process, where), where)
        else:
            raise CommandError(f"corrupt command record of kind {kind}")
    changes.apply()


def _field_of(key: int, where: str) -> tuple[ComponentInfo, str]:
    info = INFO_BY_KEY.get(key >> 8)
    if info is None or (key & 0xFF) >= len(info.fields):
        raise CommandError(f"{where} names field key {key}, which no component field has")
    return info, list(info.fields)[key & 0xFF]


def _default_values(info: ComponentInfo, where: str) -> dict[str, np.ndarray]:
    missing = [f for f in info.fields if f not in info.defaults]
    if missing:
        raise ComponentValueError(info.name, missing[0], None, f"{where} adds {info.name}, whose field "
                                                               f"{missing[0]!r} has no default")
    return dict(info.defaults)

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
All commands are checked before any is applied: a bad one raises and changes nothing. A frame
that fails (KernelError, WorkerCrashedError) applies none of its commands: they are dropped.

`with world.defer() as d:` queues the same operations from Python (spawn with values, despawn,
add with values, remove, set) and applies them the same way when the block ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

from .errors import ComponentValueError, MissingComponentError
from .memory import ArraySpec
from .schema import INFO_BY_KEY, ComponentInfo, _coerce, info_of, values_of

if TYPE_CHECKING:
    from .world import World

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
        raise KeyError(f"{info.name} has no field {field!r}; it has {', '.join(info.fields) or 'none'}")
    if info.fields[field].shape:
        raise ValueError(f"{info.name}.{field} is a vector field; cmd_set writes scalar fields")
    return (info.key << 8) | list(info.fields).index(field)


class CommandBuffers:
    """One buffer per process that runs tasks: workers 0..N-1 and the main process (index N)."""

    def __init__(self, world: World, processes: int) -> None:
        arena = world._arena
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

    def take(self, arena: Any) -> tuple[np.ndarray, np.ndarray]:
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


def buffer_view(arena: Any, specs: tuple[ArraySpec, ArraySpec]) -> records_kernels.CommandBuffer:
    records = arena.view_of(specs[0])
    return records_kernels.CommandBuffer(records, records.view(np.float64), arena.view_of(specs[1]), 0, 0, 0)


def apply_records(world: World, records: np.ndarray, owners: np.ndarray, system_names: list[str]) -> None:
    """Apply kernel commands in (system, table, row) order; see the module docstring."""
    if records.shape[0] == 0:
        return
    order = np.lexsort((np.arange(records.shape[0]), records[:, ROW], records[:, TABLE], records[:, SYSTEM]))
    records, owners = records[order], owners[order]
    values = records.view(np.float64)[:, VALUE]
    plan = _Plan(world)
    for k in range(records.shape[0]):
        kind, target = int(records[k, KIND]), int(records[k, TARGET])
        where = f"a command of system {system_names[int(records[k, SYSTEM])]!r}"
        if kind == SPAWN:
            plan.spawn_copy(target, (int(owners[k]), int(records[k, SERIAL])), where)
        elif kind == SET:
            resolved = plan.resolve(target, int(owners[k]), where)
            plan.set_field(resolved, int(records[k, KEY]), float(values[k]), where)
        elif kind in (ADD, REMOVE):
            info = INFO_BY_KEY.get(int(records[k, KEY]))
            if info is None:
                raise ValueError(f"{where} names component key {int(records[k, KEY])}, which no component has")
            resolved = plan.resolve(target, int(owners[k]), where)
            if kind == ADD:
                plan.add(resolved, info, _default_values(info, where))
            else:
                plan.remove(resolved, info)
        elif kind == DESPAWN:
            plan.despawn(plan.resolve(target, int(owners[k]), where))
        else:
            raise ValueError(f"corrupt command record of kind {kind}")
    plan.apply()


def _default_values(info: ComponentInfo, where: str) -> dict[str, np.ndarray]:
    missing = [f for f in info.fields if f not in info.defaults]
    if missing:
        raise ComponentValueError(info.name, missing[0], None, f"{where} adds {info.name}, whose field "
                                                               f"{missing[0]!r} has no default")
    return dict(info.defaults)


class _Plan:
    """Validated structural changes, applied together by `apply()`.

    Entities to be spawned are referred to by negative handles until they exist."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.spawns: list[tuple[int | None, list[tuple[ComponentInfo, dict[str, np.ndarray]]] | None]] = []
        self.handles: dict[tuple[int, int], int] = {}
        self.sets: list[tuple[int, ComponentInfo, str, np.ndarray]] = []
        self.changes: dict[int, dict[int, tuple[ComponentInfo, dict[str, np.ndarray] | None]]] = {}
        self.despawns: dict[int, None] = {}
        self.spawned: np.ndarray = np.empty(0, np.int64)

    # ---------------------------------------------------------------- queueing (validates)
    def spawn_copy(self, prefab: int, placeholder: tuple[int, int], where: str) -> int:
        if prefab < 0:
            raise ValueError(f"{where} copies {prefab}, a placeholder: the prefab of cmd_spawn must be an "
                             f"entity that exists before the frame's commands are applied")
        self._check_alive(prefab, where)
        handle = -(len(self.spawns) + 1)
        self.spawns.append((prefab, None))
        self.handles[placeholder] = handle
        return handle

    def spawn_values(self, parts: list[tuple[ComponentInfo, dict[str, np.ndarray]]]) -> int:
        handle = -(len(self.spawns) + 1)
        self.spawns.append((None, parts))
        return handle

    def resolve(self, target: int, owner: int, where: str) -> int:
        if target < 0:
            handle = self.handles.get((owner, -target - 1))
            if handle is None:
                raise ValueError(f"{where} names placeholder {target}, which no cmd_spawn of its process made")
            return handle
        return target

    def set_field(self, entity: int, key: int, value: float, where: str) -> None:
        info = INFO_BY_KEY.get(key >> 8)
        if info is None or (key & 0xFF) >= len(info.fields):
            raise ValueError(f"{where} names field key {key}, which no component field has")
        field = list(info.fields)[key & 0xFF]
        self._check_has(entity, info, where)
        self.sets.append((entity, info, field, _coerce(info.name, field, info.fields[field], value, batch=False)))

    def add(self, entity: int, info: ComponentInfo, values: dict[str, np.ndarray] | None) -> None:
        self._check_alive(entity, "add")
        self.changes.setdefault(entity, {})[info.id] = (info, values)

    def remove(self, entity: int, info: ComponentInfo) -> None:
        self._check_alive(entity, "remove")
        self.changes.setdefault(entity, {})[info.id] = (info, None)

    def despawn(self, entity: int) -> None:
        if entity < 0:
            self._check_alive(entity, "despawn")
        if entity < 0 or self.world._entities.is_alive(entity):
            self.despawns[entity] = None

    def _check_alive(self, entity: int, where: str) -> None:
        """DeadEntityError naming the entity unless it is alive; ValueError for a negative id that
        is not a placeholder of this queue's spawns."""
        if entity >= 0:
            self.world._entities.locate(entity)   # DeadEntityError names the entity
        elif -entity - 1 >= len(self.spawns):
            raise ValueError(f"{where}: {entity} is not a placeholder of this queue (it has "
                             f"{len(self.spawns)} spawns); placeholders are the negative ids its spawns "
                             f"returned")

    def _check_has(self, entity: int, info: ComponentInfo, where: str) -> None:
        if entity < 0:
            prefab, parts = self.spawns[-entity - 1]
            infos = [i for i, _ in parts] if parts is not None else \
                self.world._archetypes.tables[self.world._entities.locate(prefab)[1]].components
        else:
            infos = self.world._archetypes.tables[self.world._entities.locate(entity)[1]].components
        if info not in infos:
            raise MissingComponentError(entity, info.name, [i.name for i in infos])

    # ---------------------------------------------------------------- applying
    def apply(self) -> None:
        world = self.world
        ids = [world._spawn_copy(prefab) if parts is None else world.spawn(*_values_list(parts))  # type: ignore[arg-type]
               for prefab, parts in self.spawns]
        self.spawned = np.asarray(ids, np.int64)

        def real(entity: int) -> int:
            return ids[-entity - 1] if entity < 0 else entity

        for entity, info, field, value in self.sets:
            world._set_field(real(entity), info, field, value)
        for entity, changes in self.changes.items():
            entity = real(entity)
            if not world._entities.is_alive(entity):
                continue
            adds = {cid: (info, values) for cid, (info, values) in changes.items() if values is not None}
            removes = [info for info, values in changes.values() if values is None]
            world._change_components(entity, adds, removes)
        doomed = [real(e) for e in self.despawns]
        doomed = [e for e in dict.fromkeys(doomed) if world._entities.is_alive(e)]
        if doomed:
            world.despawn_batch(np.asarray(doomed, np.int64))


def _values_list(parts: list[tuple[ComponentInfo, dict[str, np.ndarray]]]) -> list[Any]:
    out = []
    for info, values in parts:
        value: Any = object.__new__(info.cls)
        object.__setattr__(value, "_values", values)
        object.__setattr__(value, "_batch_len", None)
        out.append(value)
    return out


class Deferred:
    """`with world.defer() as d:` queue of structural changes, applied when the block ends
    (if it ends without an exception). `d.spawned` then holds the ids of `d.spawn` calls."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._plan = _Plan(world)

    @property
    def spawned(self) -> np.ndarray:
        return self._plan.spawned

    def spawn(self, *components: object) -> int:
        """Queue a spawn; returns a placeholder (negative) usable by this queue's other calls."""
        parts = []
        for value in components:
            info, values, length = values_of(value)
            if length is not None:
                raise ComponentValueError(info.name, None, f"<arrays of length {length}>",
                                          "defer().spawn() takes scalar values")
            parts.append((info, values))
        return self._plan.spawn_values(parts)

    def despawn(self, entity: int) -> None:
        if entity >= 0:
            self._world._entities.locate(entity)
        self._plan.despawn(entity)

    def add(self, entity: int, *components: object) -> None:
        for value in components:
            info, values, length = values_of(value)
            if length is not None:
                raise ComponentValueError(info.name, None, f"<arrays of length {length}>",
                                          "defer().add() takes scalar values")
            self._plan.add(entity, info, values)

    def remove(self, entity: int, *components: type) -> None:
        for component in components:
            self._plan.remove(entity, info_of(component))

    def set(self, entity: int, value: object) -> None:
        """Queue writing one component value; the entity (or placeholder) must have it already
        (sets are applied before adds: write the values of an added component with `add`)."""
        info, values, length = values_of(value)
        if length is not None:
            raise ComponentValueError(info.name, None, f"<arrays of length {length}>",
                                      "defer().set() takes scalar values")
        self._plan._check_alive(entity, "set")
        self._plan._check_has(entity, info, "set")
        for field in info.fields:
            self._plan.sets.append((entity, info, field, values[field]))

    def __enter__(self) -> Deferred:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self._plan.apply()



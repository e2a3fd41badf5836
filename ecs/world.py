"""World: the one place structure changes.

A world owns one shared arena (memory.py), the entity index (entity.py), the archetype tables
(archetype.py, table.py), the change readers (changes.py) and the resources. Every structural
change (spawn, despawn, add, remove) happens here, in the main process, between system stages.

Every call validates all of its input before it changes anything: a call that raises leaves
the world exactly as it was (no half-spawned entity, no half-written batch).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kernels import bits

from . import snapshot, worldfile
from .archetype import Archetypes
from .changes import ChangeTracker
from .commands import Deferred
from .entity import INDEX_MASK, EntityIndex
from .errors import ComponentValueError, MissingComponentError, WorldClosedError
from .fastpath import Read, Write, compile_access, compile_spawn, no_plan
from .memory import Arena
from .query import Query
from .recorder import Recorder, run_recorded
from .resources import Resources
from .schedule import Progress, Schedule
from .schema import ComponentInfo, info_of, values_of
from .snapshot import Snapshot, Structure
from .system import System
from .table import BYTE_FLIP, Table
from .workers import WorkerPool

DEFAULT_MAX_ROWS = 1 << 25        # rows one archetype table can hold (address space only)
DEFAULT_MAX_ENTITIES = 1 << 28    # live entities a world can hold (address space only)

Values = dict[str, np.ndarray]


class World:
    """Entities, their components as shared-memory columns, systems and resources.

    `workers`: 0 runs systems in this process; N >= 1 uses N worker processes; "auto" one per
    core. `step_timeout`: seconds a frame may take on the workers before they are killed and
    replaced (WorkerCrashedError). `max_rows` / `max_entities` size the address-space reservations (memory is committed
    only as tables grow).
    """

    def __init__(self, workers: int | str = 0, *, step_timeout: float | None = None,
                 max_rows: int = DEFAULT_MAX_ROWS, max_entities: int = DEFAULT_MAX_ENTITIES) -> None:
        self.workers = _worker_count(workers)
        if step_timeout is not None and (isinstance(step_timeout, bool) or not isinstance(step_timeout, (int, float))
                                         or step_timeout <= 0):
            raise ValueError(f"World(step_timeout={step_timeout!r}): expected seconds > 0 or None")
        self.step_timeout = step_timeout
        for name, value in (("max_rows", max_rows), ("max_entities", max_entities)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 64:
                raise ValueError(f"World({name}={value!r}): expected an int >= 64")
        self._closed = False
        self._arena = Arena()
        self._entities = EntityIndex(self._arena, max_entities)
        self._archetypes = Archetypes(self._arena, max_rows)
        self._changes = ChangeTracker(self._archetypes)
        self.resources = Resources(self._arena)
        self._table_by_types: dict[tuple[type, ...], Table] = {}
        # One-entity fast paths for values built from plain scalars (`_raw`, schema.py), filled
        # by the checked paths once a call with those types succeeded; cleared by close():
        # spawn: component types -> a function compiled for them (_compile_spawn);
        # get/set: (table id, component class) -> (read(row), write(row, raw), bit bytes, byte
        # offset of the component's marks) (_compile_access).
        self._spawn_plans: dict[tuple[type, ...], Callable[..., int | None]] = {}
        self._last_spawn: Callable[..., int | None] = no_plan   # the plan that last succeeded
        self._access_plans: dict[tuple[int, type], tuple[Read, Write, memoryview, int]] = {}
        self._schedule = Schedule(self)
        # bumped by every structural change: spawn, despawn, add/remove that moves a row, load, a
        # restore that changed structure (snapshot.py's fast restore relies on it)
        self._structure_version = 0
        # (version, weak ref to a snapshot.Structure): at that version the structure equals it
        self._structure_seen: tuple[int, weakref.ref[Structure]] | None = None
        self._workers: WorkerPool | None = None
        self._recorders: list[Recorder] = []   # record(): sampled by step()/run() (recorder.py)

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release every column and resource; further use raises WorldClosedError. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._workers is not None:
            self._workers.close()
        # Drop the world's own arena views first: the arena unmaps (giving back its memory and its
        # address-space reservation) only when no view is left, and tables sit in reference
        # cycles, so otherwise that waits for a cyclic gc even after `del world`. Views that user
        # code holds still keep the mapping, and its values, until they go.
        for table in self._archetypes.tables:
            table.drop_views()
        self._entities.drop_views()
        self.resources._values = {name: value for name, value in self.resources._values.items()
                                  if not isinstance(value, np.ndarray)}
        self._schedule._executor = None   # its cache of views
        self._schedule.commands = None    # its count view
        self._spawn_plans.clear()         # their memoryviews
        self._last_spawn = no_plan
        self._access_plans.clear()
        self._arena.close()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise WorldClosedError(operation)

    def __len__(self) -> int:
        return self._entities.alive

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} entities in {len(self._archetypes.tables)} tables"
        return f"<World {state}, workers={self.workers}>"

    # ---------------------------------------------------------------- spawn / despawn
    def spawn(self, *components: object) -> int:
        """Create one entity with these component values; returns its id."""
        if self._closed:
            raise WorldClosedError("spawn")
        # Fast path: values built from plain scalars (schema.py's `_raw`), types seen before:
        # a function compiled for these types (_compile_spawn). It returns None, having changed
        # nothing, unless it gets exactly its types with raw values. Spawning in a loop calls
        # the same plan every time: try the last one first (saves the key and lookup, ~0.2 us).
        entity = self._last_spawn(*components)
        if entity is not None:
            return entity
        plan = self._spawn_plans.get(tuple(map(type, components)))
        if plan is not None:
            entity = plan(*components)
            if entity is not None:
                self._last_spawn = plan
                return entity
        return self._spawn_checked(components)

    def _spawn_checked(self, components: tuple[object, ...]) -> int:
        parts = _unpack("spawn", components)
        for info, _, n in parts:
            if n is not None:
                raise ComponentValueError(info.name, None, f"<arrays of length {n}>",
                                          "spawn() takes scalar values; use spawn_batch(n, ...) for arrays")
        table = self._table_of_values(parts)
        table.reserve(table.n + 1)
        row = table.n
        self._entities.spawn_into(1, table.id, row, table.entities_all)
        self._structure_version += 1
        table.append(1)
        for info, values, _ in parts:
            for field, col in table.columns_by_component[info.id].items():
                col[row] = values[field]
        for info, _, _ in parts:
            table.mark_row(table.marks_slot[info.id], row)
            table.mark_row(table.added_slot[info.id], row)
        plan = compile_spawn(self, table, tuple(info for info, _, _ in parts))
        if plan is not None:
            self._spawn_plans[tuple(map(type, components))] = self._last_spawn = plan
        return int(table.entities_all[row])

    def spawn_batch(self, n: int, *components: object) -> np.ndarray:
        """Create `n` entities in one table placement; values are arrays of length n or scalars
        that broadcast. Returns their ids (int64). Cost: O(n) vectorised, no per-entity loop."""
        self._check_open("spawn_batch")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"spawn_batch(n={n!r}): n must be an int >= 0")
        n = int(n)
        parts = _unpack("spawn_batch", components)
        for info, values, length in parts:
            if length is not None and length != n:
                field = next(f for f, v in values.items() if v.ndim > len(info.fields[f].shape))
                raise ComponentValueError(info.name, field, f"<array of length {length}>",
                                          f"batch length {length} differs from n={n}")
        table = self._table_of_values(parts)
        table.reserve(table.n + n)
        start = table.n
        stop = start + n
        self._entities.spawn_into(n, table.id, start, table.entities_all)
        self._structure_version += 1
        table.append(n)
        for info, values, _ in parts:
            for field, col in table.columns_by_component[info.id].items():
                col[start:stop] = values[field]
        table.mark_new_rows(start, stop, tuple(info for info, _, _ in parts))
        return table.entities_all[start:stop].copy()

    def despawn(self, entity: int) -> None:
        """Destroy one entity; its id is never alive again. DeadEntityError if it is not alive."""
        self._check_open("despawn")
        index, table_id, row = self._entities.locate(entity)
        table = self._archetypes.tables[table_id]
        self._structure_version += 1
        self._changes.record_removed(table.components, np.array([entity], np.int64))
        moved = table.swap_remove(row)
        if moved >= 0:
            self._entities.row_of[moved & INDEX_MASK] = row
        self._entities.free(np.array([index], np.int64))
        self._entities.alive -= 1

    def despawn_batch(self, entities: Sequence[int] | np.ndarray) -> None:
        """Destroy many entities; all must be alive and distinct, else nothing is despawned."""
        self._check_open("despawn_batch")
        ids = _id_array(entities)
        if np.unique(ids).shape[0] != ids.shape[0]:
            values, counts = np.unique(ids, return_counts=True)
            raise ValueError(f"despawn_batch: entity {int(values[counts > 1][0])} is listed more than once")
        index = self._entities.locate_batch(ids)
        table_ids = self._entities.table_of[index]
        self._structure_version += 1
        for table_id in np.unique(table_ids):
            table = self._archetypes.tables[int(table_id)]
            rows = self._entities.row_of[index[table_ids == table_id]].astype(np.int64)
            self._changes.record_removed(table.components, ids[table_ids == table_id])
            moved, new_rows = table.remove_rows(rows)
            self._entities.row_of[moved & INDEX_MASK] = new_rows
        self._entities.free(index)
        self._entities.alive -= ids.shape[0]

    def is_alive(self, entity: int) -> bool:
        self._check_open("is_alive")
        return self._entities.is_alive(entity)

    # ---------------------------------------------------------------- components of one entity
    def has(self, entity: int, component: type) -> bool:
        self._check_open("has")
        info = info_of(component)
        _, table_id, _ = self._entities.locate(entity)
        return info.id in self._archetypes.tables[table_id].component_ids

    def get(self, entity: int, component: type) -> Any:
        """A copy of the entity's component value (fields are numpy scalars)."""
        if self._closed:
            raise WorldClosedError("get")
        try:  # fast path (see spawn): any error re-runs the checked path, which raises it in order
            _, table_id, row = self._entities.locate(entity)
            read = self._access_plans[table_id, component][0]
        except Exception:
            return self._get_checked(entity, component)
        value: Any = object.__new__(component)
        value._raw = read(row)  # type: ignore[attr-defined]
        return value

    def _get_checked(self, entity: int, component: type) -> Any:
        info = info_of(component)
        _, table_id, row = self._entities.locate(entity)
        table = self._archetypes.tables[table_id]
        columns = table.columns_by_component.get(info.id)
        if columns is None:
            raise self._missing(entity, table, info)
        value: Any = object.__new__(info.cls)
        object.__setattr__(value, "_values", {field: col[row].copy() for field, col in columns.items()})
        object.__setattr__(value, "_batch_len", None)
        self._cache_access_plan(table, info)
        return value

    def _cache_access_plan(self, table: Table, info: ComponentInfo) -> None:
        views = table.field_items.get(info.id)
        if views is not None:
            read, write = compile_access(views)
            self._access_plans[table.id, info.cls] = (read, write, table.bit_bytes,
                                                      table.marks_slot[info.id] * table.max_words * 8)

    def set(self, entity: int, value: object) -> None:
        """Write one component value and mark the row changed."""
        if self._closed:
            raise WorldClosedError("set")
        try:  # fast path (see spawn); everything that can fail comes before the first write
            raw = value._raw  # type: ignore[attr-defined]
            _, table_id, row = self._entities.locate(entity)
            plan = self._access_plans[table_id, type(value)]
            plan[1](row, raw)  # unpacks `raw` (TypeError when None) before it stores anything
        except Exception:
            return self._set_checked(entity, value)
        plan[2][plan[3] + ((row >> 3) ^ BYTE_FLIP)] |= 1 << (row & 7)
        return None

    def _set_checked(self, entity: int, value: object) -> None:
        info, values, length = values_of(value)
        if length is not None:
            raise ComponentValueError(info.name, None, f"<arrays of length {length}>",
                                      "set() takes scalar values; use set_batch(ids, ...) for arrays")
        _, table_id, row = self._entities.locate(entity)
        table = self._archetypes.tables[table_id]
        columns = table.columns_by_component.get(info.id)
        if columns is None:
            raise self._missing(entity, table, info)
        for field, col in columns.items():
            col[row] = values[field]
        table.mark_row(table.marks_slot[info.id], row)
        self._cache_access_plan(table, info)

    def set_batch(self, entities: Sequence[int] | np.ndarray, value: object) -> None:
        """Write one component for many entities (values: arrays of len(entities) or scalars)
        and mark their rows changed. Checks every id and length before writing anything."""
        self._check_open("set_batch")
        info, values, length = values_of(value)
        ids = _id_array(entities)
        if length is not None and length != ids.shape[0]:
            field = next(f for f, v in values.items() if v.ndim > len(info.fields[f].shape))
            raise ComponentValueError(info.name, field, f"<array of length {length}>",
                                      f"batch length {length} differs from the {ids.shape[0]} entities given")
        index = self._entities.locate_batch(ids)
        table_ids = self._entities.table_of[index]
        groups = []
        for table_id in np.unique(table_ids):
            table = self._archetypes.tables[int(table_id)]
            where = np.flatnonzero(table_ids == table_id)
            if info.id not in table.component_ids:
                raise self._missing(int(ids[where[0]]), table, info)
            groups.append((table, where))
        for table, where in groups:
            rows = self._entities.row_of[index[where]].astype(np.int64)
            for field, col in table.columns_by_component[info.id].items():
                data = values[field]
                col[rows] = data[where] if data.ndim > len(info.fields[field].shape) else data
            bits.mark_rows(table.bit_matrix[table.marks_slot[info.id]], rows)

    def add(self, entity: int, *components: object) -> None:
        """Give the entity these component values (overwriting ones it has). A new component moves
        the entity to another table, keeping every other value and its change state."""
        self._check_open("add")
        parts = _unpack("add", components)
        for info, _, n in parts:
            if n is not None:
                raise ComponentValueError(info.name, None, f"<arrays of length {n}>", "add() takes scalar values")
        index, table_id, row = self._entities.locate(entity)
        table = self._archetypes.tables[table_id]
        new = tuple(info for info, _, _ in parts if info.id not in table.component_ids)
        if new:
            target = self._archetypes.with_added(table, new)
            row = self._move(index, table, row, target)
            table = target
        for info, values, _ in parts:
            for field, col in table.columns_by_component[info.id].items():
                col[row] = values[field]
            table.mark_row(table.marks_slot[info.id], row)
        for info in new:
            table.mark_row(table.added_slot[info.id], row)

    def remove(self, entity: int, *components: type) -> None:
        """Take these components away; the entity keeps every other value and change state."""
        self._check_open("remove")
        infos = [info_of(c) for c in components]
        index, table_id, row = self._entities.locate(entity)
        table = self._archetypes.tables[table_id]
        for info in infos:
            if info.id not in table.component_ids:
                raise self._missing(entity, table, info)
        if infos:
            self._move(index, table, row, self._archetypes.with_removed(table, infos))
            self._changes.record_removed(tuple(infos), np.array([entity], np.int64))

    def _move(self, index: int, source: Table, row: int, target: Table) -> int:
        """Move one entity's row between tables; returns its row in `target`."""
        self._structure_version += 1
        target.reserve(target.n + 1)
        new_row = target.append(1)
        for cid in source.component_ids & target.component_ids:
            src_cols = source.columns_by_component[cid]
            for field, col in target.columns_by_component[cid].items():
                col[new_row] = src_cols[field][row]
        target.entities_all[new_row] = source.entities_all[row]
        src_slots, dst_slots = self._changes.transfer_slots(source, target)
        bits.transfer_row_bits(source.bit_matrix, src_slots, row, target.bit_matrix, dst_slots, new_row)
        moved = source.swap_remove(row)
        if moved >= 0:
            self._entities.row_of[moved & INDEX_MASK] = row
        self._entities.place(index, target.id, new_row)
        return new_row

    def _spawn_copy(self, prefab: int) -> int:
        """A new entity with a copy of every component value of `prefab`."""
        _, table_id, row = self._entities.locate(prefab)
        table = self._archetypes.tables[table_id]
        table.reserve(table.n + 1)
        new_row = table.n
        self._entities.spawn_into(1, table.id, new_row, table.entities_all)
        self._structure_version += 1
        table.append(1)
        for cols in table.columns_by_component.values():
            for col in cols.values():
                col[new_row] = col[row]
        table.mark_new_rows(new_row, new_row + 1)
        return int(table.entities_all[new_row])

    def _set_field(self, entity: int, info: ComponentInfo, field: str, value: np.ndarray) -> None:
        _, table_id, row = self._entities.locate(entity)
        table = self._archetypes.tables[table_id]
        table.columns_by_component[info.id][field][row] = value
        table.mark_row(table.marks_slot[info.id], row)

    def _change_components(self, entity: int, adds: dict[int, tuple[ComponentInfo, Values]],
                           removes: list[ComponentInfo]) -> None:
        """Add (with values) and remove components in one archetype move."""
        index, table_id, row = self._entities.locate(entity)
        table = self._archetypes.tables[table_id]
        removes = [info for info in removes if info.id in table.component_ids and info.id not in adds]
        new = tuple(info for info, _ in adds.values() if info.id not in table.component_ids)
        target = self._archetypes.with_removed(self._archetypes.with_added(table, new), removes)
        if target is not table:
            row = self._move(index, table, row, target)
        for info, values in adds.values():
            for field, col in target.columns_by_component[info.id].items():
                col[row] = values[field]
            target.mark_row(target.marks_slot[info.id], row)
        for info in new:
            target.mark_row(target.added_slot[info.id], row)
        if removes:
            self._changes.record_removed(tuple(removes), np.array([entity], np.int64))

    def defer(self) -> Deferred:
        """`with world.defer() as d:` queue spawn/despawn/add/remove, applied at the block's end
        in one pass (one archetype move per entity); `d.spawned` then holds the new ids."""
        self._check_open("defer")
        return Deferred(self)

    def _missing(self, entity: int, table: Table, info: ComponentInfo) -> MissingComponentError:
        return MissingComponentError(int(entity), info.name, [c.name for c in table.components])

    def _table_of_values(self, parts: list[tuple[ComponentInfo, Values, int | None]]) -> Table:
        key = tuple(info.cls for info, _, _ in parts)
        table = self._table_by_types.get(key)
        if table is None:
            table = self._table_by_types[key] = self._archetypes.table_for(info for info, _, _ in parts)
        return table

    # ---------------------------------------------------------------- queries
    def query(self, *components: type, without: Sequence[type] = (), changed: Sequence[type] = (),
              added: Sequence[type] = (), removed: Sequence[type] = ()) -> Query:
        """A cached query over tables with every component and none of `without`; see query.py.
        `removed=[C]`: `query.removed()` gives the ids that lost C since this query last looked."""
        self._check_open("query")
        return Query(self, components, without, changed, added, removed)

    # ---------------------------------------------------------------- systems
    def add_system(self, system: System) -> None:
        """Append a system to the frame; systems run in the order they are added. Binding and
        compilation happen here, so a parameter that cannot be bound fails now, not at step()."""
        self._check_open("add_system")
        self._schedule.add(system)

    def step(self, **params: object) -> None:
        """Run one frame: every due system once, in registration order. `params` bind kernel
        parameters by name (before world.resources)."""
        self._check_open("step")
        if self._recorders:
            self._run_recorded(1, params, None)
            return
        self._schedule.run(1, params)

    def run(self, frames: int, *, progress: bool = False, **params: object) -> None:
        """Run `frames` frames with the same `params`; `progress=True` draws a progress bar on a
        terminal."""
        self._check_open("run")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
            raise ValueError(f"run(frames={frames!r}): expected an int >= 0")
        bar = Progress(frames, progress)
        try:
            if self._recorders:
                self._run_recorded(frames, params, bar)
            else:
                self._schedule.run(frames, params, bar)
        finally:
            bar.close()

    # ---------------------------------------------------------------- recording (ecs/recorder.py)
    def record(self, *components: type, every: int = 1,
               reductions: dict[str, Callable[[World], Any]] | None = None) -> Recorder:
        """Sample these components' fields (for entities that have all of them) and the
        `reductions` (name -> fn(world) -> scalar) during step()/run(), every `every` frames,
        in this process between frames (workers too). A sample's "frame" is the number of
        frames run when it was taken: 0 is the state before the first frame, f the state
        right after the f-th. `recorder.to_arrow()` gives the samples, `close()` stops it."""
        self._check_open("record")
        recorder = Recorder(self, components, every, reductions)
        self._recorders.append(recorder)
        return recorder

    def _run_recorded(self, frames: int, params: dict[str, object], bar: Progress | None) -> None:
        run_recorded(self, self._recorders, frames, lambda: self._schedule.frame, lambda: self._structure_version,
                     lambda n, progress: self._schedule.run(n, params, progress), bar)

    def stats(self) -> dict[str, dict[str, float]]:
        """Per system: calls (frames it ran), kernel_calls, rows given, seconds spent."""
        return self._schedule.stats()

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every entity, column, resource and the frame counter to `path`, atomically
        (a crash mid-save leaves the old file). Format: ecs/worldfile.py; no pickle."""
        self._check_open("save")
        worldfile.save(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], workers: int | str = 0, **options: Any) -> World:
        """A new world with the saved ids, values, archetypes and resources. SnapshotError for a
        corrupt, truncated, foreign or newer file. Systems are code: add them again."""
        return worldfile.load(path, lambda **limits: cls(workers, **{**limits, **options}))

    def snapshot(self) -> Snapshot:
        """An in-memory, read-only copy of the world's state for `restore`. Costs a copy of the
        field columns, plus the id columns unless a snapshot of the same structure is alive."""
        self._check_open("snapshot")
        return Snapshot(self)

    def restore(self, snap: Snapshot) -> None:
        """Put the world back as it was at `snap`; readers see only rows whose values differ.
        Costs a compare-copy of the field columns; of the ids and the entity index as well
        when something structural (spawn, despawn, add, remove) happened since."""
        self._check_open("restore")
        snapshot.restore(self, snap)

    def _pool(self) -> WorkerPool | None:
        """The worker pool, started at the first step that needs it; None for workers=0."""
        if self.workers == 0:
            return None
        if self._workers is None:
            self._workers = WorkerPool(self._arena, self.workers, self.step_timeout)
        return self._workers


def _unpack(call: str, components: tuple[object, ...]) -> list[tuple[ComponentInfo, Values, int | None]]:
    parts = []
    seen: set[int] = set()
    for value in components:
        info, values, length = values_of(value)
        if info.id in seen:
            raise ComponentValueError(info.name, None, value, f"{call}() got {info.name} twice")
        seen.add(info.id)
        parts.append((info, values, length))
    return parts


def _id_array(entities: Sequence[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(entities)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise TypeError(f"expected a 1-D sequence of entity ids, got {ids.dtype} array of shape {ids.shape}")
    return ids.astype(np.int64, copy=False)


def _worker_count(workers: int | str) -> int:
    if workers == "auto":
        return len(os.sched_getaffinity(0))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"World(workers={workers!r}): expected an int >= 0 or 'auto'")
    return workers

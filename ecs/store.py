"""Store: a world's entity data and every structural change to it.

The store owns the shared arena (memory.py), the entity index (entity.py), the archetype tables
(archetype.py, table.py), the change tracker (changes.py) and the structure version. Nothing
else changes which entity is in which table row: spawn, despawn, archetype moves, row counts,
entity slots and the structure version are written here only (snapshot.py and worldfile.py
restore and load through `restore_structure`, `load_table` and `rebuild_index`).

Callers pass validated input: component values as `Part`s (parts.values_of has checked and
converted them), live ids where a method says so. A method raises before it changes anything
(DeadEntityError, MissingComponentError, CapacityError) or does not raise at all.

The structure version is bumped by every structural change; plans, snapshots and the workers'
cached tasks compare it to know whether the layout they describe still holds.

One-entity spawn, add, remove and despawn first try a path generated per table, edge or type
tuple (fastpath.py): straight-line Python over memoryviews, and one kernel call for a row that
moves, which finds the entity itself; ~0.8-1.3 us a call at 10k entities. Batches are
vectorised (no per-entity Python loop). Reads and writes of values, which change no structure,
are access.py's (`values`).
"""

from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from ecs.kernels import bits

from .access import ComponentValues
from .archetype import Archetypes
from .changes import ChangeTracker
from .entity import ID_END, INDEX_MASK, EntityIndex, as_id
from .errors import MissingComponentError
from .fastpath import (
    AddPath,
    DespawnPath,
    EdgeMove,
    RemovePath,
    compile_add,
    compile_despawn,
    compile_move,
    compile_remove,
    compile_spawn,
    no_fast_path,
)
from .memory import Arena
from .parts import Part, Values
from .restore_rows import gather_returns, place_returns
from .schema import ComponentInfo
from .table import Table, too_many_rows

_tokens = itertools.count(1)
_live_stores: weakref.WeakSet[Store] = weakref.WeakSet()


def _disown_after_fork() -> None:
    """In a child forked from a process holding stores: every one counts as closed (forked), so
    the child's calls raise instead of writing the parent's shared memory, and its close() or
    exit touches nothing of the parent's: its arena counts as closed (Resources refuses, regions
    are not released), and the tables and entity index drop their views (a query collected in
    the child frees its change reader's slot in private memory, not in the parent's bits)."""
    for store in list(_live_stores):
        store.closed = store.forked = True
        store.arena.disown()
        for table in store.archetypes.tables:
            table.drop_views()
        store.entities.drop_views()


os.register_at_fork(after_in_child=_disown_after_fork)


class Store:
    """The arena, entity index, tables and change tracker of one world; see the module docstring."""

    def __init__(self, max_rows: int, max_entities: int, shared: bool = True) -> None:
        self.arena = Arena(shared=shared)   # shared: worker processes will map it (memory.py)
        try:
            self.entities = EntityIndex(self.arena, max_entities)
            self.archetypes = Archetypes(self.arena, max_rows)
        except BaseException:
            self.arena.close()
            raise
        self.changes = ChangeTracker(self.archetypes, self.entities)
        self.values = ComponentValues(self)   # reads and writes of values (access.py)
        self.structure_version = 0
        self.token = next(_tokens)   # names this store for snapshots; never reused, unlike id()
        self.closed = False
        self.forked = False          # set in a child forked from the process that made the store
        _live_stores.add(self)
        self._table_by_types: dict[tuple[type, ...], Table] = {}
        self._spawn_paths: dict[tuple[type, ...], Callable[..., int | None] | None] = {}   # None: none can be made
        self._last_spawn: Callable[..., int | None] = no_fast_path   # the fast path that last succeeded
        # per component class, per source table id (read from the entity index without a locate:
        # the path's kernel checks the id)
        self._add_paths: dict[type, dict[int, AddPath]] = {}
        self._remove_paths: dict[type, dict[int, RemovePath]] = {}
        self._despawn_paths: dict[int, DespawnPath] = {}              # per table id
        # per edge: (stamp, the edge's move)
        self._row_moves: dict[tuple[int, int], tuple[tuple[int, int], EdgeMove]] = {}

    @property
    def tables(self) -> list[Table]:
        return self.archetypes.tables

    @property
    def max_rows(self) -> int:
        return self.archetypes.max_rows

    def __len__(self) -> int:
        return self.entities.alive

    # ---------------------------------------------------------------- lookups
    def locate(self, entity: object) -> tuple[int, Table, int]:
        """(slot index, table, row) of a live id; DeadEntityError otherwise."""
        index, table_id, row = self.entities.locate(entity)
        return index, self.archetypes.tables[table_id], row

    def is_alive(self, entity: object) -> bool:
        return self.entities.is_alive(entity)

    def table_for(self, infos: tuple[ComponentInfo, ...]) -> Table:
        """The table of exactly these components (cached by their classes)."""
        key = tuple(info.cls for info in infos)
        table = self._table_by_types.get(key)
        if table is None:
            table = self._table_by_types[key] = self.archetypes.table_for(infos)
        return table

    def missing(self, entity: int, table: Table, info: ComponentInfo) -> MissingComponentError:
        return MissingComponentError(int(entity), info.name, [c.name for c in table.components])

    def placed(self, ids: np.ndarray, *infos: ComponentInfo) -> list[tuple[Table, np.ndarray, np.ndarray]]:
        """Live ids grouped by table: (table, positions in `ids`, their rows), tables in id order.
        MissingComponentError, for the first of `infos` a table lacks, naming that table's first
        id. The rows hold while no row of those tables moves (rows appended to a table move none)."""
        tables = self.archetypes.tables
        positions, rows, starts, present = self.entities.group_by_table(ids, len(tables))
        groups = [(tables[t], positions[starts[t]: starts[t + 1]], rows[starts[t]: starts[t + 1]]) for t in present]
        for info in infos:
            for table, where, _ in groups:
                if info.id not in table.component_ids:
                    raise self.missing(int(ids[where[0]]), table, info)
        return groups

    # ---------------------------------------------------------------- spawn
    def try_spawn_fast(self, components: tuple[object, ...]) -> int | None:
        """Spawn through a fast path made for these exact types, or return None having changed
        nothing (types not seen yet, values not plain scalars). Spawning in a loop meets the
        same path every time: the last one is tried first (saves the key and lookup, ~0.2 us)."""
        entity = self._last_spawn(*components)
        if entity is not None:
            return entity
        fast = self._spawn_paths.get(tuple(map(type, components)))
        if fast is not None:
            entity = fast(*components)
            if entity is not None:
                self._last_spawn = fast
        return entity

    def spawn(self, parts: list[Part]) -> int:
        """One entity with these scalar values; a fast path for their types is made for next time."""
        table = self.table_for(tuple(part.info for part in parts))
        row = self._place(table, 1)
        for info, values, _ in parts:
            for field, col in table.columns_by_component[info.id].items():
                col[row] = values[field]
        for part in parts:
            table.mark_row(table.marks_slot[part.info.id], row)
            table.mark_row(table.added_slot[part.info.id], row)
        key = tuple(part.info.cls for part in parts)
        if key not in self._spawn_paths:   # once per tuple of types: values not plain scalars come here every time
            fast = self._spawn_paths[key] = compile_spawn(self, table, tuple(part.info for part in parts))
            if fast is not None:
                self._last_spawn = fast
        return int(table.entities_all[row])

    def spawn_batch(self, n: int, parts: list[Part]) -> np.ndarray:
        """`n` entities in one table placement (values: arrays of length n or scalars); their ids.
        A spawn past either capacity raises before a new table is made for it."""
        infos = tuple(part.info for part in parts)
        if n > self.max_rows:
            raise too_many_rows(infos, n, self.max_rows)
        self.entities.make_room(n)
        table = self.table_for(infos)
        start, stop = self._place(table, n), table.n
        for info, values, _ in parts:
            for field, col in table.columns_by_component[info.id].items():
                col[start:stop] = values[field]
        table.mark_new_rows(start, stop)
        return table.entities_all[start:stop].copy()

    def spawn_copies(self, prefabs: np.ndarray, added: Mapping[int, ComponentInfo] | None = None) -> np.ndarray:
        """A copy of each live prefab (repeats allowed), in bulk per prefab table; their ids, in the
        order of `prefabs`. The copies of a table t in `added` go straight to the table of its
        components and added[t] (one it lacks, from its defaults): what adding it after gives."""
        ids = np.empty(prefabs.shape[0], np.int64)
        groups = []
        arrivals: dict[Table, int] = {}
        for source, where, rows in self.placed(prefabs):
            info = added.get(source.id) if added else None
            table = self.archetypes.with_added(source, (info,)) if info else source
            groups.append((source, where, rows, info, table))
            arrivals[table] = arrivals.get(table, 0) + where.shape[0]
        if len(groups) > 1:   # one table's placement checks its room before it changes anything
            self.make_room(arrivals, prefabs.shape[0])
        for source, where, rows, info, table in groups:
            start, stop = self._place(table, where.shape[0]), table.n
            for cid, cols in source.columns_by_component.items():
                for field, col in table.columns_by_component[cid].items():
                    col[start:stop] = cols[field][rows]
            for field, col in table.columns_by_component[info.id].items() if info else ():
                col[start:stop] = info.defaults[field]  # type: ignore[union-attr]
            table.mark_new_rows(start, stop)
            ids[where] = table.entities_all[start:stop]
        return ids

    def make_room(self, arrivals: Mapping[Table, int], spawning: int = 0) -> None:
        """Commit rows for `arrivals` (table: rows arriving) and slots for `spawning` new entities,
        or CapacityError having changed nothing but the memory committed: what a change that
        places rows in several tables checks before its first."""
        self.entities.make_room(spawning)
        for table, count in arrivals.items():
            table.reserve(table.n + count)

    def _place(self, table: Table, count: int) -> int:
        """Allocate `count` entities at the end of `table`; returns their first row. Checks both
        capacities before changing anything."""
        table.reserve(table.n + count)
        start = table.n
        if count == 1:
            self.entities.allocate_one(table.id, start, table.entity_items)
        else:
            self.entities.allocate(count, table.id, start, table.entities_all)
        self.structure_version += 1
        table.append(count)
        return start

    # ---------------------------------------------------------------- despawn
    def despawn(self, entity: int) -> None:
        """Despawn one live id (else DeadEntityError, nothing changed); through the path cached
        for its table (fastpath.compile_despawn, ~0.8 us) while no removed= reader journals it."""
        try:
            if type(entity) is not int:
                entity = as_id(entity)
            path = self._despawn_paths[self.entities.table_items[entity & INDEX_MASK]]
        except Exception:   # no path (or not an id: locate says so)
            path = None
        if path is not None and 0 < entity < ID_END and path(entity):
            return
        index, table_id, row = self.entities.locate(entity)
        table = self.archetypes.tables[table_id]
        if self.changes.journals_any(table.components):
            ids = np.array([entity], np.int64)
            self.changes.record_removed(table.components, ids, self.entities.births(ids))
        else:
            self._despawn_paths[table_id] = compile_despawn(self, table)
        self.structure_version += 1
        moved = table.swap_remove(row)
        if moved >= 0:
            self.entities.place(moved & INDEX_MASK, table.id, row)
        self.entities.free_one(index)

    def despawn_batch(self, ids: np.ndarray) -> None:
        """Despawn distinct live ids (the caller checked they are distinct)."""
        groups = self.placed(ids)
        self.structure_version += 1
        lost: dict[int, tuple[ComponentInfo, list[np.ndarray]]] = {}
        for table, where, _ in groups:
            for info in table.components:
                lost.setdefault(info.id, (info, []))[1].append(where)
        self.changes.record_removed_in_order(lost, ids)
        for table, _, rows in groups:
            moved, new_rows = table.remove_rows(rows)
            self.entities.place_batch(moved & INDEX_MASK, table.id, new_rows)
        self.entities.free(ids & INDEX_MASK)

    # ---------------------------------------------------------------- archetype moves
    def change_components(self, entity: int, adds: Iterable[tuple[ComponentInfo, Values]],
                          removes: Iterable[ComponentInfo], events: Mapping[int, int] | None = None) -> None:
        """Add (with values, overwriting ones it has) and remove components of a live entity in one
        archetype move; removing one it lacks, or one also added, is ignored. `events`: each
        removal's place in the journals by component id (ChangeTracker.reserve_removal_events),
        else the next one for all."""
        index, table, row = self.locate(entity)
        adds = list(adds)
        target, new, removes = self.change_target(table, [info for info, _ in adds], removes)
        if target is not table:
            row = self._move(index, table, row, target)
        for info, values in adds:
            for field, col in target.columns_by_component[info.id].items():
                col[row] = values[field]
            target.mark_row(target.marks_slot[info.id], row)
        for info in new:
            target.mark_row(target.added_slot[info.id], row)
        if removes and self.changes.journals_any(removes):
            ids = np.array([entity], np.int64)
            births = self.entities.births(ids)
            if events is None:
                self.changes.record_removed(tuple(removes), ids, births)
            else:
                for info in removes:
                    self.changes.record_removed((info,), ids, births, events[info.id])

    def change_target(self, table: Table, adds: Iterable[ComponentInfo], removes: Iterable[ComponentInfo]
                      ) -> tuple[Table, tuple[ComponentInfo, ...], list[ComponentInfo]]:
        """(target table, components new to the entity, components it loses) of adding and removing
        these for an entity of `table`; removing one it lacks, or one also added, is ignored."""
        adds = list(adds)
        have, added_ids = table.component_ids, {info.id for info in adds}
        new = tuple(info for info in adds if info.id not in have)
        gone = [info for info in removes if info.id in have and info.id not in added_ids]
        return self.archetypes.with_removed(self.archetypes.with_added(table, new), gone), new, gone

    def try_add_fast(self, entity: int, value: object) -> bool:
        """add_component of a value of plain scalars to a live entity that lacks the component,
        through the path cached for its table and the component (fastpath.compile_add, ~0.7 us);
        False, having changed nothing, when there is none or anything is off."""
        try:
            if type(entity) is not int:
                entity = as_id(entity)
            path = self._add_paths[type(value)][self.entities.table_items[entity & INDEX_MASK]]
        except Exception:
            return False
        return 0 < entity < ID_END and path(entity, value._raw)  # type: ignore[attr-defined]

    def try_remove_fast(self, entity: int, component: type) -> bool:
        """remove_component through the path cached for the entity's table and the component
        (fastpath.compile_remove); False, having changed nothing, when there is none."""
        try:
            if type(entity) is not int:
                entity = as_id(entity)
            path = self._remove_paths[component][self.entities.table_items[entity & INDEX_MASK]]
        except Exception:
            return False
        return 0 < entity < ID_END and path(entity)

    def add_component(self, entity: int, info: ComponentInfo, values: Values) -> None:
        """change_components with one add: the common case, without its lists (~1.5 us). An add
        that moves the entity caches a fast path for its source table and the component."""
        index, table, row = self.locate(entity)
        target = table
        if info.id not in table.component_ids:
            target = table.edge_add.get(info.id) or self.archetypes.with_added(table, (info,))
            source, row = table, self._move(index, table, row, target)
            target.mark_row(target.added_slot[info.id], row)
            self._cache_edge_path(self._add_paths, source, target, info,
                                  lambda edge: compile_add(self, source, target, info, edge))
        for field, col in target.columns_by_component[info.id].items():
            col[row] = values[field]
        target.mark_row(target.marks_slot[info.id], row)

    def remove_component(self, entity: int, info: ComponentInfo) -> None:
        """change_components with one remove of a component the entity has (else
        MissingComponentError, nothing changed). One that journals nothing caches a fast path
        for the source table and the component."""
        index, table, row = self.locate(entity)
        if info.id not in table.component_ids:
            raise self.missing(entity, table, info)
        target = table.edge_remove.get(info.id) or self.archetypes.with_removed(table, (info,))
        self._move(index, table, row, target)
        if self.changes.journals_any((info,)):
            ids = np.array([entity], np.int64)
            self.changes.record_removed((info,), ids, self.entities.births(ids))
            return
        self._cache_edge_path(self._remove_paths, table, target, info,
                              lambda edge: compile_remove(self, table, target, edge))

    def _cache_edge_path(self, paths: dict[type, dict[int, Any]], source: Table, target: Table,
                         info: ComponentInfo, compile_path: Callable[[EdgeMove], Any]) -> None:
        """Compile the add or remove path of (source, component) after a move along the edge,
        unless the cached one was compiled from the edge's current move (the move is compiled
        anew exactly when its stamp changes, so the path is current too). A checked call after
        the path exists (a value of 0-d arrays, say) would otherwise compile it again each time."""
        by_table = paths.setdefault(info.cls, {})
        edge = self._row_moves[source.id, target.id][1]
        cached = by_table.get(source.id)
        if cached is not None and cached.__globals__["edge"] is edge:
            return
        path = compile_path(edge)
        if path is not None:
            by_table[source.id] = path

    def change_components_batch(self, ids: np.ndarray, adds: list[tuple[ComponentInfo, Values]],
                                removes: list[ComponentInfo], events: np.ndarray | None = None,
                                placed: list[tuple[Table, np.ndarray, np.ndarray]] | None = None) -> None:
        """change_components for many distinct live ids with the same change: one archetype move
        per source table (a gather/scatter per column, one pass over the bits). Add values are
        arrays of len(ids) or scalars (an array field's values have one more leading axis).
        Removals journal as if made in the order of `ids`, or as removals `events[k]`. `placed`:
        the ids' groups (Store.placed), when the caller has them."""
        if ids.shape[0] == 0:
            return
        added = [info for info, _ in adds]
        lost: dict[int, tuple[ComponentInfo, list[np.ndarray]]] = {}
        groups = []
        arriving: dict[Table, int] = {}
        for table, where, rows in placed if placed is not None else self.placed(ids):
            target, new, gone = self.change_target(table, added, removes)
            # each group's values are gathered before any row moves: they may be views of the
            # world's own columns, which the moves rewrite
            values = [{field: data[where] if data.ndim > len(info.fields[field].shape) else data
                       for field, data in values.items()} for info, values in adds]
            groups.append((table, where, rows, new, gone, target, values))
            if target is not table:
                arriving[target] = arriving.get(target, 0) + where.shape[0]
        self.make_room(arriving)
        for table, where, rows, new, gone, target, values in groups:
            if target is not table:
                rows = self.move_rows(table, rows, target)
            for (info, _), fields in zip(adds, values, strict=True):
                for field, col in target.columns_by_component[info.id].items():
                    col[rows] = fields[field]
                bits.mark_rows(target.bit_matrix[target.marks_slot[info.id]], rows)
            for info in new:
                bits.mark_rows(target.bit_matrix[target.added_slot[info.id]], rows)
            for info in gone:
                lost.setdefault(info.id, (info, []))[1].append(where)
        if lost:
            self.changes.record_removed_in_order(lost, ids, events)

    def move_rows(self, source: Table, rows: np.ndarray, target: Table) -> np.ndarray:
        """Move distinct rows of `source` to the end of `target`, keeping the values of the
        components both have and the change bits that follow a row; returns their rows in
        `target`. Cost: one gather/scatter per column and one pass over the bits."""
        count = rows.shape[0]
        target.reserve(target.n + count)
        self.structure_version += 1
        start = target.append(count)
        for cid in source.component_ids & target.component_ids:
            src_cols = source.columns_by_component[cid]
            for field, col in target.columns_by_component[cid].items():
                col[start: start + count] = src_cols[field][rows]
        ids = source.entities_all[rows]
        target.entities_all[start: start + count] = ids
        src_slots, dst_slots = self.changes.transfer_slots(source, target)
        new_rows = np.arange(start, start + count, dtype=np.int64)
        bits.transfer_rows_bits(source.bit_matrix, src_slots, rows, target.bit_matrix, dst_slots, new_rows)
        self.entities.place_batch(ids & INDEX_MASK, target.id, new_rows)
        moved, holes = source.remove_rows(rows)
        self.entities.place_batch(moved & INDEX_MASK, source.id, holes)
        return new_rows

    def _move(self, index: int, source: Table, row: int, target: Table) -> int:
        """Move one entity's row between tables, keeping its values and change bits; returns its
        row in `target`. Through the edge's move (fastpath.compile_move: one kernel call), valid
        while the change tracker's version and the source's slot count are what they were."""
        target.reserve(target.n + 1)
        self.structure_version += 1
        stamp = (self.changes.version, source.nslots)
        cached = self._row_moves.get((source.id, target.id))
        if cached is None or cached[0] != stamp:
            src_slots, dst_slots = self.changes.transfer_slots(source, target)
            pairs = [(int(a), int(b)) for a, b in zip(src_slots, dst_slots, strict=True)]
            cached = self._row_moves[source.id, target.id] = (stamp, compile_move(self, source, target, pairs))
        return cached[1].move(index, row)

    # ---------------------------------------------------------------- restore and load
    def restore_structure(self, tables: list[tuple[int, int, np.ndarray]], high_water: int,
                          free: np.ndarray, free_generation: np.ndarray, births: np.ndarray | None) -> None:
        """Put back row counts and entity columns ((table id, rows, entity column) per table; a
        table not listed is emptied) and rebuild the index from them.

        An entity that is not in the row the snapshot has it in comes back with its values and
        change bits (restore_rows.py); bits past the restored row counts are cleared. Unchanged
        rows keep their bits, so readers see only what differs. Entities that hold a component now
        and will not after (spawned since, or given it since) are journaled as its removals, in
        id order, for removed= readers (_journal_restore_losses)."""
        self._journal_restore_losses(tables)
        returns = gather_returns(self.archetypes.tables, self.entities, self.changes, tables)
        restored = set()
        for table_id, n, entities in tables:
            restored.add(table_id)
            self.archetypes.tables[table_id].restore_rows(n, entities)
        for table in self.archetypes.tables:
            if table.id not in restored:
                table.restore_rows(0, table.entities_all[:0])
        place_returns(returns)
        problem = self.rebuild_index(high_water, [(table_id, entities) for table_id, _, entities in tables],
                                     free, free_generation, births)
        assert problem is None, problem

    def _journal_restore_losses(self, tables: list[tuple[int, int, np.ndarray]]) -> None:
        """Journal, before restore_structure replaces them, the ids that hold each read-for-removal
        component now and will not hold it in `tables` (restored (table id, rows, entity column)).
        Cost: O(live entities of the tables with such a component), nothing when nobody reads."""
        now = self.archetypes.tables
        watched = {info.id: info for table in now for info in table.components
                   if self.changes.journals_any((info,))}
        if not watched:
            return
        after = {table_id: entities for table_id, _, entities in tables}
        lost = {}
        for cid, info in watched.items():
            holders = [table for table in now if info in table.components]
            before = np.concatenate([t.entities_all[: t.n] for t in holders])
            kept = np.concatenate([after.get(t.id, before[:0]) for t in holders])
            lost[cid] = (info, np.sort(before[~np.isin(before, kept)]))
        ids = np.unique(np.concatenate([gone for _, gone in lost.values()]))
        if ids.shape[0]:
            self.changes.record_removed_in_order(
                {cid: (info, [np.searchsorted(ids, gone)]) for cid, (info, gone) in lost.items()}, ids)

    def load_table(self, infos: tuple[ComponentInfo, ...], n: int) -> Table:
        """The table of `infos`, grown by `n` rows of unset values counted as spawned (load fills
        their entity ids and values, then calls rebuild_index)."""
        table = self.archetypes.table_for(infos)
        start = table.append(n)
        table.mark_new_rows(start, start + n)
        self.structure_version += 1
        return table

    def rebuild_index(self, high_water: int, columns: list[tuple[int, np.ndarray]], free: np.ndarray,
                      free_generation: np.ndarray, births: np.ndarray | None = None) -> str | None:
        """EntityIndex.rebuild from the tables' entity columns; returns None, or why they cannot
        form an index (then the store is inconsistent and must be closed)."""
        self.structure_version += 1
        return self.entities.rebuild(high_water, columns, free, free_generation, births)

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Drop every view the store holds and close the arena. Views held by user code keep the
        mapping, and its values, until they go. Idempotent."""
        if self.closed:
            return
        self.closed = True
        # The arena unmaps (giving back its memory and its address-space reservation) only when
        # no view is left: drop the views here rather than wait for the world to be freed.
        for table in self.archetypes.tables:
            table.drop_views()
        self.archetypes.unlink()
        self.entities.drop_views()
        self._spawn_paths.clear()
        self._last_spawn = no_fast_path
        self._add_paths.clear()
        self._remove_paths.clear()
        self._despawn_paths.clear()
        self.values.clear()
        self._row_moves.clear()
        self.arena.close()

"""Change sets: structural changes from Python checked one by one, then applied together.

`world.defer()` (deferred.py) queues into a `ChangeSet`. Queueing checks each change against the
world as it is (the entity is alive, has the component a set writes or a remove takes unless this
set adds it, a placeholder names a spawn of this set) and raises before anything is applied.
`apply()` checks the entities again (the world may have changed since) and the room in every
table the changes fill, then makes them in the order kernel commands are applied in
(commands.py, which checks and applies whole arrays of records instead): spawns, field sets,
component adds and removes (one archetype move per entity, entities with the same change moved
in bulk), despawns. A remove of a component the world took away since it was queued does
nothing.

Entities to be spawned are named by negative placeholders until they exist. Despawning an entity
twice, or one that another change already despawned, is not an error. Changes to an entity that
a change of the same set despawned first are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .errors import CommandError, MissingComponentError
from .parts import Part, Values
from .schema import ComponentInfo
from .store import Store
from .table import Table


class FieldSet(NamedTuple):
    entity: int                 # an id, or a placeholder
    info: ComponentInfo
    field: str
    value: np.ndarray


class ChangeSet:
    """Validated structural changes of one frame's commands or one `defer()` block."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.spawns: list[list[Part]] = []
        self.sets: list[FieldSet] = []
        # entity -> component id -> (info, values to add) or (info, None) to remove
        self.changes: dict[int, dict[int, tuple[ComponentInfo, Values | None]]] = {}
        self.despawns: dict[int, None] = {}
        self.spawned: np.ndarray = np.empty(0, np.int64)

    # ---------------------------------------------------------------- queueing (checks)
    def spawn_values(self, parts: list[Part]) -> int:
        """Queue a spawn of these values; returns its placeholder (negative)."""
        self.spawns.append(parts)
        return -len(self.spawns)

    def set_field(self, entity: int, info: ComponentInfo, field: str, value: np.ndarray, where: str) -> None:
        self.check_has(entity, info, where)
        self.sets.append(FieldSet(entity, info, field, value))

    def add(self, entity: int, info: ComponentInfo, values: Values, where: str = "add") -> None:
        self.check_alive(entity, where)
        self.changes.setdefault(entity, {})[info.id] = (info, values)

    def remove(self, entity: int, info: ComponentInfo, where: str = "remove") -> None:
        """Queue removing a component the entity has, or that this set adds to it
        (MissingComponentError otherwise, as `World.remove` raises)."""
        queued = self.changes.get(entity, {}).get(info.id)
        if queued is None or queued[1] is None:
            self.check_has(entity, info, where)
        self.changes.setdefault(entity, {})[info.id] = (info, None)

    def despawn(self, entity: int, where: str = "despawn") -> None:
        if entity < 0:
            self.check_alive(entity, where)
        if entity < 0 or self.store.is_alive(entity):
            self.despawns[entity] = None

    def check_alive(self, entity: int, where: str) -> None:
        """DeadEntityError naming the entity unless it is alive; CommandError for a negative id
        that is not a placeholder of this set's spawns."""
        if entity >= 0:
            self.store.locate(entity)   # DeadEntityError names the entity
        elif -entity - 1 >= len(self.spawns):
            raise CommandError(f"{where}: {entity} is not a placeholder of this queue (it has "
                               f"{len(self.spawns)} spawns); placeholders are the negative ids its spawns "
                               f"returned")

    def check_has(self, entity: int, info: ComponentInfo, where: str) -> None:
        """MissingComponentError unless the entity (or the placeholder's spawn) has `info`."""
        self.check_alive(entity, where)
        if entity < 0:
            parts = self.spawns[-entity - 1]
            if all(part.info is not info for part in parts):
                raise MissingComponentError(entity, info.name, [part.info.name for part in parts])
            return
        _, table, _ = self.store.locate(entity)
        if info.id not in table.component_ids:
            raise self.store.missing(entity, table, info)

    # ---------------------------------------------------------------- applying
    def apply(self) -> None:
        """Make the queued changes. The entities they name are checked again first, as the world
        may have changed since they were queued (DeadEntityError, MissingComponentError), and so
        is the room in every table the spawns and moves fill (CapacityError): an error changes
        nothing."""
        store = self.store
        for entity, info, _, _ in self.sets:
            self.check_has(entity, info, "set")
        for entity, changes in self.changes.items():
            self.check_alive(entity, "add" if any(values is not None for _, values in changes.values()) else "remove")
        store.make_room(self._arrivals(), len(self.spawns))
        ids = [store.spawn(parts) for parts in self.spawns]
        self.spawned = np.asarray(ids, np.int64)

        def real(entity: int) -> int:
            return ids[-entity - 1] if entity < 0 else entity

        for entity, info, field, value in self.sets:
            store.values.write_field(real(entity), info, field, value)
        for batch, adds, removes in self._grouped_changes(real):
            store.change_components_batch(batch, adds, removes)
        doomed = [real(e) for e in self.despawns]
        doomed = [e for e in dict.fromkeys(doomed) if store.is_alive(e)]
        if doomed:
            store.despawn_batch(np.asarray(doomed, np.int64))

    def _arrivals(self) -> dict[Table, int]:
        """The rows each table will receive: the spawns, then the archetype moves (every queued
        entity is alive until the despawns, which come last)."""
        store, arrivals = self.store, dict[Table, int]()
        born = [store.table_for(tuple(part.info for part in parts)) for parts in self.spawns]
        for table in born:
            arrivals[table] = arrivals.get(table, 0) + 1
        for entity, changes in self.changes.items():
            source = born[-entity - 1] if entity < 0 else store.locate(entity)[1]
            adds = [info for info, values in changes.values() if values is not None]
            removes = [info for info, values in changes.values() if values is None]
            target, _, _ = store.change_target(source, adds, removes)
            if target is not source:
                arrivals[target] = arrivals.get(target, 0) + 1
        return arrivals

    def _grouped_changes(self, real: Callable[[int], int]) -> list[tuple[np.ndarray, list[tuple[ComponentInfo, Values]],
                                                                       list[ComponentInfo]]]:
        """The component changes as batches of live entities with the same change (the same
        components added and removed, in the same order), each applied as one bulk move per
        source table. Batches come in the order of their first entity; values of an added
        component are stacked per entity unless every entity shares one (a kernel's cmd_add)."""
        members: dict[tuple[tuple[int, bool], ...], list[tuple[int, dict[int, tuple[ComponentInfo, Values | None]]]]]
        members = {}
        for entity, changes in self.changes.items():
            entity = real(entity)
            if self.store.is_alive(entity):
                key = tuple((cid, values is None) for cid, (_, values) in changes.items())
                members.setdefault(key, []).append((entity, changes))
        batches: list[tuple[np.ndarray, list[tuple[ComponentInfo, Values]], list[ComponentInfo]]] = []
        for key, group in members.items():
            ids = np.fromiter((entity for entity, _ in group), np.int64, len(group))
            adds: list[tuple[ComponentInfo, Values]] = []
            removes: list[ComponentInfo] = []
            for cid, removing in key:
                info = group[0][1][cid][0]
                if removing:
                    removes.append(info)
                    continue
                given = [changes[cid][1] for _, changes in group]
                if all(values is given[0] for values in given):
                    adds.append((info, given[0]))  # type: ignore[arg-type]
                else:
                    adds.append((info, {field: np.stack([values[field] for values in given])  # type: ignore[index]
                                        for field in info.fields}))
            batches.append((ids, adds, removes))
        return batches

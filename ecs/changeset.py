"""Change sets: structural changes checked one by one, then applied together.

Kernel commands (commands.py) and `world.defer()` (deferred.py) both queue into a `ChangeSet`.
Queueing checks each change against the world as it is (the entity is alive, has the component
a set writes, a placeholder names a spawn of this set) and raises before anything is applied;
`apply()` then makes them in a fixed order: spawns (copies of a prefab entity, or values), field
sets, component adds and removes (coalesced into one archetype move per entity), despawns.

Entities to be spawned are named by negative placeholders until they exist. Despawning an entity
twice, or one that another change already despawned, is not an error. Changes to an entity that
a change of the same set despawned first are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .errors import CommandError, MissingComponentError
from .schema import ComponentInfo
from .store import Part, Store, Values


class Spawn(NamedTuple):
    """A queued spawn: a copy of `prefab`, or an entity of `parts`."""

    prefab: int | None
    parts: list[Part] | None


class FieldSet(NamedTuple):
    entity: int                 # an id, or a placeholder
    info: ComponentInfo
    field: str
    value: np.ndarray


class ChangeSet:
    """Validated structural changes of one frame's commands or one `defer()` block."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.spawns: list[Spawn] = []
        self.placeholder_by_serial: dict[tuple[int, int], int] = {}   # (process, serial) -> placeholder
        self.sets: list[FieldSet] = []
        # entity -> component id -> (info, values to add) or (info, None) to remove
        self.changes: dict[int, dict[int, tuple[ComponentInfo, Values | None]]] = {}
        self.despawns: dict[int, None] = {}
        self.spawned: np.ndarray = np.empty(0, np.int64)

    # ---------------------------------------------------------------- queueing (checks)
    def spawn_copy(self, prefab: int, serial: tuple[int, int], where: str) -> int:
        """Queue a copy of `prefab` (alive now); `serial` is the kernel's own name for it."""
        if prefab < 0:
            raise CommandError(f"{where} copies {prefab}, a placeholder: the prefab of cmd_spawn must be an "
                               f"entity that exists before the frame's commands are applied")
        self.check_alive(prefab, where)
        placeholder = self._queue_spawn(Spawn(prefab, None))
        self.placeholder_by_serial[serial] = placeholder
        return placeholder

    def spawn_values(self, parts: list[Part]) -> int:
        return self._queue_spawn(Spawn(None, parts))

    def _queue_spawn(self, spawn: Spawn) -> int:
        self.spawns.append(spawn)
        return -len(self.spawns)

    def placeholder(self, target: int, process: int, where: str) -> int:
        """A kernel's target: an id as it is, a negative serial as the placeholder it names."""
        if target < 0:
            placeholder = self.placeholder_by_serial.get((process, -target - 1))
            if placeholder is None:
                raise CommandError(f"{where} names placeholder {target}, which no cmd_spawn of its process made")
            return placeholder
        return target

    def set_field(self, entity: int, info: ComponentInfo, field: str, value: np.ndarray, where: str) -> None:
        self.check_has(entity, info, where)
        self.sets.append(FieldSet(entity, info, field, value))

    def add(self, entity: int, info: ComponentInfo, values: Values, where: str = "add") -> None:
        self.check_alive(entity, where)
        self.changes.setdefault(entity, {})[info.id] = (info, values)

    def remove(self, entity: int, info: ComponentInfo, where: str = "remove") -> None:
        self.check_alive(entity, where)
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
            prefab, parts = self.spawns[-entity - 1]
            if parts is not None:
                if all(part.info is not info for part in parts):
                    raise MissingComponentError(entity, info.name, [part.info.name for part in parts])
                return
            entity = prefab   # type: ignore[assignment]
        _, table, _ = self.store.locate(entity)
        if info.id not in table.component_ids:
            raise self.store.missing(entity, table, info)

    # ---------------------------------------------------------------- applying
    def apply(self) -> None:
        store = self.store
        ids = [store.spawn(spawn.parts) if spawn.parts is not None else store.spawn_copy(spawn.prefab)  # type: ignore[arg-type]
               for spawn in self.spawns]
        self.spawned = np.asarray(ids, np.int64)

        def real(entity: int) -> int:
            return ids[-entity - 1] if entity < 0 else entity

        for entity, info, field, value in self.sets:
            store.write_field(real(entity), info, field, value)
        for batch, adds, removes in self._grouped_changes(real):
            store.change_components_batch(batch, adds, removes)
        doomed = [real(e) for e in self.despawns]
        doomed = [e for e in dict.fromkeys(doomed) if store.is_alive(e)]
        if doomed:
            store.despawn_batch(np.asarray(doomed, np.int64))

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

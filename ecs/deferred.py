"""`with world.defer() as d:` structural changes from Python, applied when the block ends.

The calls mirror the World's (spawn with values, despawn, add with values, remove, set) and
queue into a ChangeSet (changeset.py): each call checks its values and the entity as the world
is now and raises what the World's call raises (a second despawn of one entity excepted: it
does nothing), before anything is applied; the block's end
checks the entities again (the world may have changed inside the block) and applies them all in
the change set's order (spawns, sets, adds and removes as one archetype move per entity,
despawns). A block that ends by an exception applies nothing. Either way the queue is then
empty: a block entered again applies only what it queues itself. `d.spawned` then holds the
new ids, in the order of the `d.spawn` calls; within the block, `d.spawn` returns a negative
placeholder that the block's other calls accept.
"""

from __future__ import annotations

import numpy as np

from .changeset import ChangeSet
from .entity import as_id
from .errors import ComponentValueError, WorldClosedError
from .interrupts import held_interrupts
from .parts import Part, parts_of
from .schema import info_of
from .store import Store


class Deferred:
    """A queue of structural changes applied at the end of its `with` block."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._changes = ChangeSet(store)
        self._spawned = np.empty(0, np.int64)

    @property
    def spawned(self) -> np.ndarray:
        """The ids of the last applied block's spawns, in the order of its `spawn` calls."""
        return self._spawned

    def spawn(self, *components: object) -> int:
        """Queue a spawn; returns a placeholder (negative) usable by this queue's other calls."""
        return self._changes.spawn_values(self._parts("spawn", components))

    def despawn(self, entity: int) -> None:
        self._check_open("despawn")
        entity = as_id(entity)
        if entity >= 0:
            self._changes.check_alive(entity, "despawn")   # a dead id is an error here, as in world.despawn
        self._changes.despawn(entity)

    def add(self, entity: int, *components: object) -> None:
        parts = self._parts("add", components)
        entity = as_id(entity)
        for part in parts:
            self._changes.add(entity, part.info, part.values)

    def remove(self, entity: int, *components: type) -> None:
        self._check_open("remove")
        infos = [info_of(component) for component in components]
        entity = as_id(entity)
        for info in infos:
            self._changes.remove(entity, info)

    def set(self, entity: int, value: object) -> None:
        """Queue writing one component value; the entity (or placeholder) must have it already
        (sets are applied before adds: write the values of an added component with `add`)."""
        part, = self._parts("set", (value,))
        entity = as_id(entity)
        self._changes.check_has(entity, part.info, "set")
        for field in part.info.fields:
            self._changes.set_field(entity, part.info, field, part.values[field], "set")

    def __enter__(self) -> Deferred:
        self._check_open("defer")
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        changes, self._changes = self._changes, ChangeSet(self._store)
        if exc_type is None:
            self._check_open("defer")
            with held_interrupts():   # Ctrl-C after the block's changes, never inside them
                changes.apply()
            self._spawned = changes.spawned

    def _parts(self, call: str, components: tuple[object, ...]) -> list[Part]:
        """The call's checked scalar values (ComponentValueError for arrays or a component twice)."""
        self._check_open(call)
        parts = parts_of(f"defer().{call}", components)
        for part in parts:
            if part.length is not None:
                raise ComponentValueError(part.info.name, None, f"<arrays of length {part.length}>",
                                          f"defer().{call}() takes scalar values")
        return parts

    def _check_open(self, call: str) -> None:
        if self._store.closed:
            raise WorldClosedError(f"defer().{call}" if call != "defer" else call, self._store.forked)

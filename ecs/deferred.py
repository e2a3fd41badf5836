"""`with world.defer() as d:` structural changes from Python, applied when the block ends.

The calls mirror the World's (spawn with values, despawn, add with values, remove, set) and
queue into one ChangeSet (changeset.py): each call checks its values and the entity as the
world is now and raises before anything is applied; the block's end applies them all in the
change set's order (spawns, sets, adds and removes as one archetype move per entity, despawns).
A block that ends by an exception applies nothing. `d.spawned` then holds the new ids, in the
order of the `d.spawn` calls; within the block, `d.spawn` returns a negative placeholder that
the block's other calls accept.
"""

from __future__ import annotations

import numpy as np

from .changeset import ChangeSet
from .errors import ComponentValueError
from .schema import info_of, values_of
from .store import Part, Store


class Deferred:
    """A queue of structural changes applied at the end of its `with` block."""

    def __init__(self, store: Store) -> None:
        self._changes = ChangeSet(store)

    @property
    def spawned(self) -> np.ndarray:
        return self._changes.spawned

    def spawn(self, *components: object) -> int:
        """Queue a spawn; returns a placeholder (negative) usable by this queue's other calls."""
        return self._changes.spawn_values([_scalar_part("spawn", value) for value in components])

    def despawn(self, entity: int) -> None:
        if entity >= 0:
            self._changes.check_alive(entity, "despawn")   # a dead id is an error here, as in world.despawn
        self._changes.despawn(entity)

    def add(self, entity: int, *components: object) -> None:
        parts = [_scalar_part("add", value) for value in components]
        for part in parts:
            self._changes.add(entity, part.info, part.values)

    def remove(self, entity: int, *components: type) -> None:
        for component in components:
            self._changes.remove(entity, info_of(component))

    def set(self, entity: int, value: object) -> None:
        """Queue writing one component value; the entity (or placeholder) must have it already
        (sets are applied before adds: write the values of an added component with `add`)."""
        part = _scalar_part("set", value)
        self._changes.check_has(entity, part.info, "set")
        for field in part.info.fields:
            self._changes.set_field(entity, part.info, field, part.values[field], "set")

    def __enter__(self) -> Deferred:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self._changes.apply()


def _scalar_part(call: str, value: object) -> Part:
    info, values, length = values_of(value)
    if length is not None:
        raise ComponentValueError(info.name, None, f"<arrays of length {length}>",
                                  f"defer().{call}() takes scalar values")
    return Part(info, values, length)

"""Reads and writes of live entities' component values: nothing structural.

`World.get`, `set` and `set_batch` (and commands' field writes) come here; which entity is in
which table row stays the store's (store.py). A read returns a copy; a write marks the rows
changed for the component. One-entity get/set first try a path generated per (table,
component) once the checked call has met it (fastpath.compile_access: straight-line memoryview
items, ~0.6 us a call at 100k entities); batches are vectorised per table.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from ecs.kernels import bits

from .fastpath import Read, Write, compile_access
from .table import BYTE_FLIP, Table

if TYPE_CHECKING:
    from .entity import EntityIndex
    from .errors import MissingComponentError
    from .parts import Values
    from .schema import ComponentInfo


class Store(Protocol):
    """What the values use of their store (store.py): where live ids are."""

    entities: EntityIndex

    def locate(self, entity: object) -> tuple[int, Table, int]: ...
    def missing(self, entity: int, table: Table, info: ComponentInfo) -> MissingComponentError: ...
    def placed(self, ids: np.ndarray, *infos: ComponentInfo) -> list[tuple[Table, np.ndarray, np.ndarray]]: ...


class AccessPath(NamedTuple):
    """get/set's fast path for one component in one table: read(row), write(row, raw), and the
    byte view and offset of the component's marks."""

    read: Read
    write: Write
    bit_bytes: memoryview
    marks_offset: int


class ComponentValues:
    """The component values of one store's live entities, and the get/set paths cached for them.
    Holds the store weakly: the store holds this (no reference cycle keeps a closed world)."""

    def __init__(self, store: Store) -> None:
        self._store = weakref.proxy(store)
        self._entities = store.entities
        self._paths: dict[tuple[int, type], AccessPath] = {}   # (table id, component class)

    def clear(self) -> None:
        """Drop every cached path (and the views it holds): the store is closing."""
        self._paths.clear()

    def try_get_fast(self, entity: int, component: type) -> Any:
        """The component value through a cached access path, or None (no path yet, or any error:
        the checked path then raises it)."""
        try:
            _, table_id, row = self._entities.locate(entity)
            read = self._paths[table_id, component].read
        except Exception:
            return None
        value: Any = object.__new__(component)
        value._raw = read(row)
        return value

    def read(self, entity: int, info: ComponentInfo) -> Any:
        """A copy of a live entity's component value; MissingComponentError if it lacks it."""
        _, table, row = self._store.locate(entity)
        columns = table.columns_by_component.get(info.id)
        if columns is None:
            raise self._store.missing(entity, table, info)
        value: Any = object.__new__(info.cls)
        object.__setattr__(value, "_values", {field: col[row].copy() for field, col in columns.items()})
        object.__setattr__(value, "_batch_len", None)
        self._cache_path(table, info)
        return value

    def try_set_fast(self, entity: int, value: object) -> bool:
        """Write a plain-scalar value through a cached access path and mark the row; False, having
        written nothing, when there is no path or anything is off (the checked path decides)."""
        try:  # everything that can fail comes before the first write
            raw = value._raw  # type: ignore[attr-defined]
            _, table_id, row = self._entities.locate(entity)
            path = self._paths[table_id, type(value)]
            path.write(row, raw)  # unpacks `raw` (TypeError when None) before it stores anything
        except Exception:
            return False
        path.bit_bytes[path.marks_offset + ((row >> 3) ^ BYTE_FLIP)] |= 1 << (row & 7)
        return True

    def write(self, entity: int, info: ComponentInfo, values: Values) -> None:
        """Write one component value of a live entity and mark its row changed."""
        _, table, row = self._store.locate(entity)
        columns = table.columns_by_component.get(info.id)
        if columns is None:
            raise self._store.missing(entity, table, info)
        for field, col in columns.items():
            col[row] = values[field]
        table.mark_row(table.marks_slot[info.id], row)
        self._cache_path(table, info)

    def write_field(self, entity: int, info: ComponentInfo, field: str, value: np.ndarray) -> None:
        """Write one field of a live entity that has the component, and mark its row changed."""
        _, table, row = self._store.locate(entity)
        table.columns_by_component[info.id][field][row] = value
        table.mark_row(table.marks_slot[info.id], row)

    def write_field_batch(self, ids: np.ndarray, info: ComponentInfo, field: str, values: np.ndarray,
                          placed: list[tuple[Table, np.ndarray, np.ndarray]] | None = None) -> None:
        """Write one field of distinct live ids that have the component (values: one per id) and
        mark their rows changed; `placed`: (table, positions, rows) of the ids, when known."""
        for table, where, rows in placed or self._store.placed(ids, info):
            table.columns_by_component[info.id][field][rows] = values[where]
            bits.mark_rows(table.bit_matrix[table.marks_slot[info.id]], rows)

    def write_batch(self, ids: np.ndarray, info: ComponentInfo, values: Values) -> None:
        """Write one component of many live entities (arrays of len(ids), or scalars) and mark
        their rows; MissingComponentError before any write if one lacks it."""
        for table, where, rows in self._store.placed(ids, info):
            for field, col in table.columns_by_component[info.id].items():
                data = values[field]
                col[rows] = data[where] if data.ndim > len(info.fields[field].shape) else data
            bits.mark_rows(table.bit_matrix[table.marks_slot[info.id]], rows)

    def _cache_path(self, table: Table, info: ComponentInfo) -> None:
        """Make the access path of (table, component) unless it exists: a path lives as long as
        its table, and a checked call (values not plain scalars) comes here at every call."""
        if (table.id, info.cls) in self._paths:
            return
        views = table.field_items.get(info.id)
        if views is not None:
            read, write = compile_access(views)
            self._paths[table.id, info.cls] = AccessPath(
                read, write, table.bit_bytes, table.marks_slot[info.id] * table.max_words * 8)

"""What checking a frame's command records reads besides the records (ecs/commands.py): the
registry's fields and components and which table has which component, as the arrays the
compiled checks (kernels/commands.plan_records) take."""

from __future__ import annotations

from typing import Any

import numpy as np

from ecs.kernels import commands as records_kernels

from .schema import INFO_BY_KEY, ComponentInfo, registry_stamp
from .store import Store


class RecordLookups:
    """What the kernels that check and place command records read besides the records: the
    fields and components of the registry and which table has which component, as arrays.
    Rebuilt when a component is registered or the store makes a table (tables are never
    dropped), so a frame of commands pays ~1 us here."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._stamp: tuple[int, int] | None = None
        self.fields: tuple[np.ndarray, ...] = ()        # plan_records' field_* arrays
        self.components: list[ComponentInfo] = []       # by key
        self.component_keys = self.component_ids = np.empty(0, np.int64)
        self.component_addable = np.empty(0, np.bool_)
        self.membership = np.empty((0, 0), np.bool_)
        self.field_of: dict[int, tuple[ComponentInfo, str]] = {}   # field key -> (component, field)
        self._scratch = np.zeros(0, np.int32)

    def slot_scratch(self, slots: int) -> np.ndarray:
        """An int32 per entity slot, all zero (kernels that use it leave it so): 4 bytes per
        entity, made the first time component changes are applied."""
        if self._scratch.shape[0] < slots:
            self._scratch = np.zeros(max(slots, 2 * self._scratch.shape[0]), np.int32)
        return self._scratch

    def added_components(self, tables: np.ndarray, components: np.ndarray) -> dict[int, ComponentInfo]:
        """spawn_copies' `added` (table id -> the component its copies are placed with) from the
        tables and the indices of their components (into component_keys)."""
        return {t: self.components[c] for t, c in zip(tables.tolist(), components.tolist(), strict=True)}

    def current(self) -> RecordLookups:
        tables = self.store.archetypes.tables
        stamp = (registry_stamp(), len(tables))
        if stamp != self._stamp:
            self.fields = _field_lookup()
            self.components = sorted(INFO_BY_KEY.values(), key=lambda info: info.key)
            self.component_keys = np.array([info.key for info in self.components], np.int64)
            self.component_ids = np.array([info.id for info in self.components], np.int64)
            self.component_addable = np.array([all(f in info.defaults for f in info.fields)
                                               for info in self.components], np.bool_)
            self.membership = _membership(tables)
            self.field_of = {(info.key << 8) | index: (info, name) for info in self.components
                             for index, name in enumerate(info.fields)}
            self._stamp = stamp
        return self


def _field_lookup() -> tuple[np.ndarray, ...]:
    """Sorted keys of the registry's scalar fields, with their component's id, FITS_* and
    integer range (vector fields are left out: cmd_set cannot write one)."""
    rows = []
    for info in INFO_BY_KEY.values():
        for index, dtype in enumerate(info.fields.values()):
            if dtype.shape:
                continue
            low = top = 0.0
            if dtype.kind == "f":   # field types: f32, f64, the integers and bool (schema.py)
                fits = records_kernels.FITS_ANY if dtype == np.float64 else records_kernels.FITS_FLOAT32
            elif dtype.kind == "b":
                fits = records_kernels.FITS_BOOL
            else:
                fits, low, top = records_kernels.FITS_INT, float(np.iinfo(dtype).min), float(np.iinfo(dtype).max) + 1
            rows.append(((info.key << 8) | index, info.id, fits, low, top))
    rows.sort()
    columns = list(zip(*rows, strict=True)) if rows else [()] * 5
    return (*(np.array(c, np.int64) for c in columns[:3]), *(np.array(c, np.float64) for c in columns[3:]))


def _membership(tables: list[Any]) -> np.ndarray:
    """membership[t, c]: whether table t has the component of id c (ids of the registry and of
    the tables)."""
    ids = [info.id for info in INFO_BY_KEY.values()] + [c for t in tables for c in t.component_ids]
    membership = np.zeros((max(len(tables), 1), max(ids, default=0) + 1), np.bool_)
    for table in tables:
        membership[table.id, list(table.component_ids)] = True
    return membership

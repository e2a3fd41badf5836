"""Archetypes: the set of components an entity has, and the table that stores that set.

Archetypes are not to be confused with tables (table.py): an archetype is the *key* (a set of
component ids), a table is the storage for it. There is exactly one table per archetype that
was ever used; tables are never dropped while the world lives, so table ids are stable and a
query's list of matching tables only ever grows.

Adding or removing one component moves an entity along a cached edge of the archetype graph:
the first move from table A with component C computes the target table; later moves are one
dict lookup.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

from .memory import Arena
from .schema import ComponentInfo
from .table import Table


class Archetypes:
    """All tables of a world, by component set, in creation order."""

    def __init__(self, arena: Arena, max_rows: int) -> None:
        self._arena = arena
        self.max_rows = max_rows
        self.tables: list[Table] = []
        self._by_key: dict[frozenset[int], Table] = {}
        self._new_table_listeners: list[weakref.WeakMethod[Callable[[Table], None]]] = []

    def on_new_table(self, listener: Callable[[Table], None]) -> None:
        """Call the bound method `listener` with each table made from now on, before the table is
        used; one that raises unmakes the table. Held weakly: a listener that keeps this object
        (the change tracker does) forms no reference cycle, so a closed world is freed by reference
        counting instead of waiting for a full garbage collection."""
        self._new_table_listeners.append(weakref.WeakMethod(listener))  # type: ignore[arg-type]

    def table_for(self, infos: Iterable[ComponentInfo]) -> Table:
        """The table of exactly these components, created on first use."""
        by_id = {info.id: info for info in infos}
        key = frozenset(by_id)
        table = self._by_key.get(key)
        if table is None:
            components = tuple(sorted(by_id.values(), key=lambda info: info.id))
            table = Table(len(self.tables), components, self._arena, self.max_rows)
            try:
                for reference in self._new_table_listeners:
                    listener = reference()
                    if listener is not None:
                        listener(table)
            except BaseException:   # a table nobody can track changes of is not made at all
                table.release()
                raise
            self.tables.append(table)
            self._by_key[key] = table
        return table

    def unlink(self) -> None:
        """Forget the edges between tables (world close): each edge and its reverse form a
        reference cycle, which would leave a closed world to the next full garbage collection."""
        for table in self.tables:
            table.edge_add.clear()
            table.edge_remove.clear()

    def with_added(self, table: Table, infos: Iterable[ComponentInfo]) -> Table:
        for info in infos:
            if info.id in table.component_ids:
                continue
            target = table.edge_add.get(info.id)
            if target is None:
                target = self.table_for((*table.components, info))
                table.edge_add[info.id] = target
                target.edge_remove[info.id] = table
            table = target
        return table

    def with_removed(self, table: Table, infos: Iterable[ComponentInfo]) -> Table:
        for info in infos:
            if info.id not in table.component_ids:
                continue  # a repeat (remove(e, C, C)) would link the table to itself as "C added"
            target = table.edge_remove.get(info.id)
            if target is None:
                target = self.table_for(c for c in table.components if c.id != info.id)
                table.edge_remove[info.id] = target
                target.edge_add[info.id] = table
            table = target
        return table

    def matching(self, required: frozenset[int], without: frozenset[int], start: int = 0) -> list[Table]:
        """Tables from index `start` on that have every `required` and none of `without`."""
        return [t for t in self.tables[start:]
                if required <= t.component_ids and not (without & t.component_ids)]

    def release(self) -> None:
        for table in self.tables:
            table.release()

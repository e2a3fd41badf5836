"""Queries: the tables that match a component filter, served as zero-copy batches.

A query matches tables that have every required component and none of `without`. The list is
cached and extended with only the tables created since the last look. Iterating yields one
`Batch` per non-empty matching table; `batch[C].x` is a writable numpy view straight onto the
column (no copy), valid until the next structural change of the world.

With `changed=`/`added=` filters the query object is a change reader (changes.py): each batch's
`rows` holds the rows that changed since *this query object* last iterated that table, and
tables with no such rows are skipped. Iteration consumes the changes; `count()` and
`entities()` only look. Writes through batch views are not change-tracked (use World.set_batch).

With `removed=[C]`, `query.removed()` returns the ids of entities that lost C (removed or
despawned) since this query object last called it (first call: since the query was created).
Those entities are no longer in C's tables, so they never appear in batches.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from .changes import Reader
from .errors import ArgumentTypeError, InvalidArgumentError, InvalidNameError, WorldClosedError
from .memory import read_only
from .schema import ComponentInfo, info_of
from .store import Store
from .table import Table


class Batch:
    """One matching table's rows as they were when the batch was made: `entities` (a read-only
    view of the ids), `batch[C].field` (writable views of the columns), filtered `rows` and
    `len(batch)`, all of the same `n` rows. A structural change of the table afterwards (a
    despawn's swap-remove, a spawn) leaves the batch stale, never inconsistent: its views keep
    their length and read whatever rows of the table are at those places now."""

    __slots__ = ("table", "rows", "entities", "_n", "_views")

    def __init__(self, table: Table, rows: np.ndarray | None) -> None:
        self.table = table
        self.rows = rows
        self._n = table.n
        self.entities = read_only(table.entities)   # a fresh slice: writes to it would corrupt the index
        self._views: dict[int, Any] = {}

    def __getitem__(self, component: type) -> Any:
        info = info_of(component)
        view = self._views.get(info.id)
        if view is None:
            columns = self.table.columns_by_component.get(info.id)
            if columns is None:
                have = ", ".join(i.name for i in self.table.components)
                raise InvalidNameError(f"this batch's table has no {info.name} (it has {have}); "
                               f"list {info.name} in world.query(...) to read it")
            n = self._n
            view = self._views[info.id] = info.view_type(*(col[:n] for col in columns.values()))
        return view

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        selected = "" if self.rows is None else f", {self.rows.shape[0]} selected"
        return f"<Batch of {self.table!r}{selected}>"


class Query:
    """A cached filter over the world's tables; each object keeps its own change cursor."""

    def __init__(self, store: Store, required: Sequence[type], without: Sequence[type],
                 changed: Sequence[type], added: Sequence[type], removed: Sequence[type] = ()) -> None:
        self._store = store
        self.required = tuple(_infos("query", required))
        self.without = tuple(_infos("without", without))
        self.changed = tuple(_infos("changed", changed))
        self.added = tuple(_infos("added", added))
        self.removed_filter = tuple(_infos("removed", removed))
        self._required_ids = frozenset(info.id for info in self.required)
        self._without_ids = frozenset(info.id for info in self.without)
        self._tables: list[Table] = []
        self._scanned = 0
        self._reader: Reader | None = None
        if self.removed_filter:
            self.reader()   # removals are journaled from the query's creation on

    @property
    def filtered(self) -> bool:
        return bool(self.changed or self.added)

    def matching_tables(self) -> list[Table]:
        """Every table with the required components and none of `without` (cached; tables are
        never dropped, so the list only grows)."""
        archetypes = self._store.archetypes
        if self._scanned < len(archetypes.tables):
            self._tables += archetypes.matching(self._required_ids, self._without_ids, self._scanned)
            self._scanned = len(archetypes.tables)
        return self._tables

    def reader(self) -> Reader:
        """This query's change reader, registered at the first call."""
        if self._reader is None:
            tracker = self._store.changes
            self._reader = tracker.register(self.changed, self.added, self.removed_filter)
            weakref.finalize(self, tracker.unregister, self._reader)
        return self._reader

    def close(self) -> None:
        """Stop tracking changes for this query now rather than when it is collected: frees its
        change reader (one bitset slot per table it reads). A later look registers a new reader,
        which sees every row as new."""
        if self._reader is not None:
            self._store.changes.unregister(self._reader)
            self._reader = None

    def _selected(self, consume: bool) -> Iterator[tuple[Table, np.ndarray | None]]:
        self._check_open()
        reader = self.reader() if self.filtered else None
        tracker = self._store.changes
        for table in list(self.matching_tables()):
            self._check_open()   # again at every table: the loop body may have closed the world
            if table.n == 0:
                continue
            if reader is None:
                yield table, None
                continue
            if table.id not in reader.slot_by_table:
                continue  # the table has none of the filter components: nothing can change
            rows = tracker.take(reader, table) if consume else tracker.peek(reader, table)
            if rows.shape[0]:
                yield table, rows

    def _check_open(self) -> None:
        if self._store.closed:
            raise WorldClosedError("query", self._store.forked)

    def __iter__(self) -> Iterator[Batch]:
        for table, rows in self._selected(consume=True):
            yield Batch(table, rows)

    def removed(self) -> np.ndarray:
        """Ids that lost a `removed=` component since the last call (each once), in the order the
        removals happened. ValueError if the query has no removed= filter."""
        self._check_open()
        if not self.removed_filter:
            raise InvalidArgumentError("this query has no removed= filter: world.query(..., removed=[C])")
        return self._store.changes.take_removed(self.reader())

    def count(self) -> int:
        """Matching entities (selected rows for a filtered query); does not consume changes."""
        return sum(table.n if rows is None else rows.shape[0] for table, rows in self._selected(False))

    def entities(self) -> np.ndarray:
        """Ids of the matching entities (selected ones if filtered); does not consume changes."""
        parts = [table.entities if rows is None else table.entities[rows]
                 for table, rows in self._selected(False)]
        return np.concatenate(parts) if parts else np.empty(0, np.int64)

    def __repr__(self) -> str:
        def names(infos: tuple[ComponentInfo, ...]) -> str:
            return ", ".join(i.name for i in infos)
        parts = [names(self.required)]
        for label, infos in (("without", self.without), ("changed", self.changed), ("added", self.added)):
            if infos:
                parts.append(f"{label}=[{names(infos)}]")
        return f"<Query {'; '.join(p for p in parts if p)}>"

    # ---------------------------------------------------------------- results (ecs/arrow.py)
    def to_arrow(self, *, copy: bool = False) -> Any:
        """The matching rows as a pyarrow.Table: "entity", then "Component.field" per field
        (vector fields as FixedSizeList). Like count(), it only looks: a changed=/added= query
        gives its selected rows and does not consume them (iterate the query for that).

        No copy for numeric columns when the query matches one table: the table is then a live
        view of the columns, valid until the next structural change; `copy=True` takes the
        values of the moment. Bool columns, several tables and filtered rows are copied (see
        ecs/arrow.py for the costs). ImportError naming the `arrow` extra without pyarrow."""
        from . import arrow
        return arrow.query_to_arrow(self.required, (Batch(table, rows) for table, rows in self._selected(False)),
                                    copy=copy)

    def to_pandas(self) -> Any:
        """The matching rows as a pandas.DataFrame, a copy: through to_arrow() (pandas copies
        every scalar column; vector fields become columns of numpy arrays, which pandas makes
        views of the Arrow buffers, so a query with vector fields exports a copy first). Does
        not consume changes. ImportError naming the extra without pandas or pyarrow."""
        from . import arrow
        arrow.require("pandas", "pandas", "to_pandas()")
        vectors = any(dtype.shape for info in self.required for dtype in info.fields.values())
        return self.to_arrow(copy=vectors).to_pandas()


def _infos(what: str, components: Sequence[type]) -> list[ComponentInfo]:
    if isinstance(components, type) or not isinstance(components, (list, tuple, set, frozenset)):
        if what == "query":
            raise ArgumentTypeError(f"world.query() takes component classes, got {components!r}")
        raise ArgumentTypeError(f"{what}= takes a list of component classes, got {components!r}")
    infos = [info_of(c) for c in components]
    if what == "query" and len({info.id for info in infos}) < len(infos):   # its exports would repeat columns
        twice = next(info for k, info in enumerate(infos) if info in infos[:k])
        raise InvalidArgumentError(f"world.query() lists {twice.name} twice")
    return infos

"""Tables: one archetype's rows, stored as columns in the world's shared arena.

A table holds every entity that has exactly one set of components (its archetype, see
archetype.py). Each field of each component is one column (SoA; a vector field `f32[3]` is one
2-D column of shape `(rows, 3)`), beside an int64 column of entity ids. Rows are dense: row r of
every column belongs to the entity in `entities[r]`; removal swaps the last row into the hole.

Change state lives beside the columns in one bit matrix `(slots, words)`: slot `marks(C)` is
the dirty bitset writers set for component C (kernels, set, spawn, add); slot `added(C)`
records additions; further slots are readers' pending bitsets (changes.py). Keeping them in one
matrix means moving a row's bits for every slot is one kernel call.

Every array is a fixed reservation of `max_rows` rows in the arena: growing commits more of
it (posix_fallocate), so views and worker mappings never move. Costs: append is O(new rows);
swap-remove is O(fields + slots); growth is O(committed bytes) once per doubling.
"""

from __future__ import annotations

import functools
import heapq
import math
import sys

import numpy as np

from ecs.kernels import bits
from ecs.kernels import rows as row_kernels

from .errors import CapacityError
from .memory import Arena, ArraySpec, Region
from .schema import ComponentInfo

# the byte of a uint64 bit matrix that holds row r's bit (bit r & 7 of it)
BYTE_FLIP = 0 if sys.byteorder == "little" else 7


def byte_of(row: int) -> int:
    return (row >> 3) ^ BYTE_FLIP


# A table reserves 2 bitset slots per component and READER_SLOTS for readers' pending sets, each of
# max_rows bits: at the default max_rows a slot takes 4 MiB of the arena, so a flat 256 slots made
# the bits 1 GiB of a two-component table's 1.5 GiB: 677 such tables fitted a world, 1,320 now.
READER_SLOTS = 64
MAX_COMPONENTS = 127     # components of one archetype
MIN_CAPACITY = 1024      # rows committed at first growth
COLUMN_STAGGER = 512     # bytes between the page offsets of a table's columns (see Table._reserve)
BYTE_OPS_MAX_SLOTS = 24  # one-row bit moves: Python item operations up to this many slots, a kernel past it
_BIT = [np.uint64(1) << np.uint64(b) for b in range(64)]


def too_many_rows(components: tuple[ComponentInfo, ...], rows: int, max_rows: int) -> CapacityError:
    """The error for `rows` rows of a table of these components in a world of `max_rows`."""
    names = ", ".join(info.name for info in components) or "no components"
    return CapacityError(f"table ({names}) cannot hold {rows} rows", f"World(max_rows={max_rows})",
                         "create the world with a larger max_rows")


class Table:
    """Columns, entity ids and change bits of one archetype."""

    def __init__(self, table_id: int, components: tuple[ComponentInfo, ...], arena: Arena,
                 max_rows: int) -> None:
        if len(components) > MAX_COMPONENTS:
            raise CapacityError(f"an archetype of {len(components)} components",
                                f"at most {MAX_COMPONENTS}", "split the entity's data into fewer, larger components")
        self.id = table_id
        self.components = components
        self.component_ids = frozenset(info.id for info in components)
        self.max_rows = max_rows
        self.max_words = -(-max_rows // 64)
        self.n = 0
        self.capacity = 0
        self._arena = arena
        self._regions: list[tuple[Region, int, int]] = []   # (region, bytes per row, stagger)
        row_bytes = [8] + [dtype.itemsize for info in components for dtype in info.fields.values()]
        self.max_slots = 2 * len(components) + READER_SLOTS
        arena.check_room([COLUMN_STAGGER * (k % 8) + n * max_rows for k, n in enumerate(row_bytes)]
                         + [self.max_slots * self.max_words * 8])
        self.entities_all, self.entity_spec = self._reserve(np.dtype(np.int64), ())
        # columns_by_component[C.id] = {field: full-reservation view}; rows [:n] are live
        self.columns_by_component: dict[int, dict[str, np.ndarray]] = {}
        self.column_specs: dict[tuple[int, str], ArraySpec] = {}
        for info in components:
            cols = {}
            for field, dtype in info.fields.items():
                base = dtype.base if dtype.shape else dtype
                cols[field], self.column_specs[info.id, field] = self._reserve(base, dtype.shape)
            self.columns_by_component[info.id] = cols
        self._bits_region = arena.allocate(self.max_slots * self.max_words * 8)
        self.bit_matrix = self._bits_region.view(np.uint64, (self.max_slots, self.max_words))
        self.bit_matrix_spec = self._bits_region.spec(np.uint64, (self.max_slots, self.max_words))
        # slot 2k marks component k's writes and 2k + 1 its additions: the lowest slots, taken
        # at once (nothing is committed yet, so there is nothing to zero)
        ncomponents = len(components)
        self.marks_slot: dict[int, int] = {info.id: 2 * k for k, info in enumerate(components)}
        self.added_slot: dict[int, int] = {info.id: 2 * k + 1 for k, info in enumerate(components)}
        self._free_slots = list(range(2 * ncomponents, self.max_slots))   # a heap: the lowest free slot first
        self._used_slots: set[int] = set(range(2 * ncomponents))
        self.nslots = 2 * ncomponents   # one past the highest slot in use: row-moving kernels visit [0, nslots)
        self._committed_words = 0
        self.info_by_id = {info.id: info for info in components}
        self._new_row_slots = np.arange(2 * ncomponents, dtype=np.int64)
        # archetype graph edges, filled by archetype.py
        self.edge_add: dict[int, Table] = {}
        self.edge_remove: dict[int, Table] = {}

    # memoryviews of the same arrays for one-row calls (World.spawn/get/set, the store's one-entity
    # paths), made on first use (a table filled and read in bulk never needs them): an item access
    # through one takes ~30 ns and moves Python scalars, against ~100 ns for a numpy scalar
    # (~300 ns for `bit_matrix[slot, word] |= bit`). drop_views forgets them.
    _ITEM_VIEWS = ("entity_items", "field_items", "bit_bytes", "row_columns")

    @functools.cached_property
    def entity_items(self) -> memoryview:
        return memoryview(self.entities_all)

    @functools.cached_property
    def field_items(self) -> dict[int, tuple[memoryview, ...] | None]:
        """Per component id, one memoryview per field in field order, or None when a field is a vector."""
        return {cid: (tuple(memoryview(col) for col in cols.values())
                      if all(col.ndim == 1 for col in cols.values()) else None)
                for cid, cols in self.columns_by_component.items()}

    @functools.cached_property
    def bit_bytes(self) -> memoryview:
        """The bits as bytes: row r of slot s is bit `r & 7` of `bit_bytes[s * max_words * 8 +
        byte_of(r)]` (little-endian words), so every operand is a small cached int (a uint64
        view's high bits would make 2-digit ints: ~150 ns against ~80 ns)."""
        return memoryview(self.bit_matrix.reshape(-1).view(np.uint8))

    @functools.cached_property
    def row_columns(self) -> list[tuple[int, str, memoryview | np.ndarray]]:
        """Every column once, for moving one row: a memoryview for a 1-D column, the array itself
        for a vector column (a memoryview item cannot hold a row of several values)."""
        return [(cid, field, memoryview(col) if col.ndim == 1 else col)
                for cid, cols in self.columns_by_component.items() for field, col in cols.items()]

    def _reserve(self, dtype: np.dtype, shape: tuple[int, ...]) -> tuple[np.ndarray, ArraySpec]:
        """A column of `max_rows` rows in its own region, and its spec. The k-th column of a table
        starts `COLUMN_STAGGER * (k % 8)` bytes into its region, whose start is page-aligned: with
        every column at the same offset modulo 4 KiB, a kernel's loads from one column and stores to
        another alias in the CPU's store buffer (4K aliasing): the numba move kernel over 4 columns
        of 1M f32 took 244-266 us page-aligned against 226-254 us staggered by 512 bytes or more
        (interleaved medians of 300 calls; 64 bytes did not help). Cost: up to a page more per
        column committed (a small table's first 1,024 rows of f32 take 2 pages instead of 1)."""
        row_bytes = dtype.itemsize * math.prod(shape)
        stagger = COLUMN_STAGGER * (len(self._regions) % 8)
        region = self._arena.allocate(stagger + row_bytes * self.max_rows)
        self._regions.append((region, row_bytes, stagger))
        full = (self.max_rows, *shape)
        return region.view(dtype, full, stagger), region.spec(dtype, full, stagger)

    # ---------------------------------------------------------------- capacity
    def reserve(self, rows: int) -> None:
        """Commit memory for at least `rows` rows (grows by doubling; MemoryError past max_rows)."""
        if rows <= self.capacity:
            return
        if rows > self.max_rows:
            raise too_many_rows(self.components, rows, self.max_rows)
        capacity = min(max(rows, 2 * self.capacity, MIN_CAPACITY), self.max_rows)
        for region, row_bytes, stagger in self._regions:
            region.commit(stagger + row_bytes * capacity)
        words = -(-capacity // 64)
        for slot in sorted(self._used_slots):
            self._commit_slot(slot, words)
        self._committed_words = words
        self.capacity = capacity

    def _commit_slot(self, slot: int, words: int) -> None:
        self._bits_region.commit_range(slot * self.max_words * 8, words * 8)

    # ---------------------------------------------------------------- slots
    def allocate_slot(self) -> int:
        """A zeroed bitset slot for a reader; CapacityError when all READER_SLOTS are taken."""
        if not self._free_slots:
            raise CapacityError(f"table {self.id} has no free change-tracking slot",
                                f"all {READER_SLOTS} for change readers are in use (1 per live changed= or added= "
                                f"query or system that reads the table)",
                                "drop unused filtered queries, or use fewer filtered systems")
        slot = heapq.heappop(self._free_slots)
        self._used_slots.add(slot)
        self.nslots = max(self.nslots, slot + 1)
        if self._committed_words:
            self._commit_slot(slot, self._committed_words)
        return slot

    def slot_spec(self, slot: int) -> ArraySpec:
        """The words of one bitset slot, as an arena array."""
        return self._bits_region.spec(np.uint64, (self.max_words,), slot * self.max_words * 8)

    def release_slot(self, slot: int) -> None:
        self.bit_matrix[slot, : self._committed_words] = 0
        if slot in self._used_slots:
            self._used_slots.remove(slot)
            heapq.heappush(self._free_slots, slot)
        self.nslots = max(self._used_slots) + 1 if self._used_slots else 0

    # ---------------------------------------------------------------- rows
    def append(self, count: int) -> int:
        """Make `count` new rows at the end; returns the first. Their values are unset."""
        start = self.n
        self.reserve(start + count)
        self.n = start + count
        return start

    def mark_new_rows(self, start: int, stop: int) -> None:
        """Mark rows [start, stop) added and changed for every component (one kernel call)."""
        bits.fill_range_slots(self.bit_matrix, self._new_row_slots, start, stop)

    def mark_row(self, slot: int, row: int) -> None:
        self.bit_bytes[slot * self.max_words * 8 + ((row >> 3) ^ BYTE_FLIP)] |= 1 << (row & 7)

    def swap_remove(self, row: int) -> int:
        """Remove `row` by moving the last row into it. Returns the moved entity id, or -1 if the
        removed row was the last. The vacated last row's bits are cleared."""
        last = self.n - 1
        moved = -1
        if row != last:
            for _, _, col in self.row_columns:
                col[row] = col[last]
            moved = self.entity_items[last]
            self.entity_items[row] = moved
        if self.nslots <= BYTE_OPS_MAX_SLOTS:   # item operations on bytes beat a kernel call here
            bit_bytes, words = self.bit_bytes, self.max_words * 8
            to_byte, to_bit = (row >> 3) ^ BYTE_FLIP, 1 << (row & 7)
            from_byte, from_bit = (last >> 3) ^ BYTE_FLIP, 1 << (last & 7)
            for base in range(0, self.nslots * words, words):
                if bit_bytes[base + from_byte] & from_bit:
                    bit_bytes[base + from_byte] &= ~from_bit & 0xFF
                    if row != last:
                        bit_bytes[base + to_byte] |= to_bit
                elif row != last:
                    bit_bytes[base + to_byte] &= ~to_bit & 0xFF
        else:
            bits.move_rows_bits(self.bit_matrix, self.nslots, np.array([last], np.int64),
                                np.array([row], np.int64))
            if row == last:  # a move onto itself keeps the bit: clear the vacated row's bits here
                self.bit_matrix[: self.nslots, last >> 6] &= ~_BIT[last & 63]
        self.n = last
        return moved

    def remove_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Remove a set of distinct rows at once, filling holes from the tail.

        Returns (moved entity ids, their new rows). O(removed rows x (fields + slots))."""
        new_n = self.n - rows.shape[0]
        holes, sources = np.empty((2, rows.shape[0]), np.int64)
        pairs = row_kernels.tail_fill(rows.astype(np.int64, copy=False), self.n, holes, sources)
        holes, sources = holes[:pairs], sources[:pairs]
        for cols in self.columns_by_component.values():
            for col in cols.values():
                col[holes] = col[sources]
        moved = self.entities_all[sources]
        self.entities_all[holes] = moved
        # every removed row's bits must end cleared: survivors' bits move, then the tail clears
        bits.fill_holes_bits(self.bit_matrix, self.nslots, sources, holes, new_n, self.n)
        self.n = new_n
        return moved, holes

    def restore_rows(self, n: int, entities: np.ndarray) -> None:
        """Make the table hold `n` rows with these entity ids (a snapshot's, rows [0, n)); bits
        past `n` are cleared. Values and the bits of rows [0, n) are left as they are (the
        caller returns each entity's: restore_rows.py). The entity index must be rebuilt
        afterwards."""
        self.reserve(n)
        current = self.n
        self.entities_all[:n] = entities
        for slot in range(self.nslots):
            bits.clear_range(self.bit_matrix[slot], n, max(current, n))
        self.n = n

    # ---------------------------------------------------------------- views
    def column(self, info: ComponentInfo, field: str) -> np.ndarray:
        """Live view of one column: rows [0, n)."""
        return self.columns_by_component[info.id][field][: self.n]

    @property
    def entities(self) -> np.ndarray:
        return self.entities_all[: self.n]

    def release(self) -> None:
        for region, _, _ in self._regions:
            region.release()
        self._bits_region.release()

    def drop_views(self) -> None:
        """Forget every arena view (world close): the arena unmaps only when none is left.
        The arrays become empty ones of the same dtypes; the memory is left untouched."""
        self.entities_all = self.entities_all[:0].copy()
        self.columns_by_component = {cid: {field: col[:0].copy() for field, col in cols.items()}
                                     for cid, cols in self.columns_by_component.items()}
        self.bit_matrix = self.bit_matrix[:, :0].copy()
        self._committed_words = 0
        self.n = self.capacity = 0    # nothing left to read: a stale loop over rows finds none
        for name in self._ITEM_VIEWS:
            self.__dict__.pop(name, None)

    def __repr__(self) -> str:
        names = ", ".join(info.name for info in self.components)
        return f"<Table {self.id} ({names}) rows={self.n}>"


def as_bits(array: np.ndarray) -> np.ndarray:
    """A flat unsigned-integer view of the same bytes (bitwise comparison)."""
    return array.reshape(-1).view(np.dtype(f"u{array.dtype.itemsize}"))

"""Entity ids and where each entity lives.

An id is a positive int64: `generation << 32 | index`. The index names a slot in three arrays
kept in the shared arena (so kernels can read them): `generation[index]` (uint32),
`table_of[index]` (int32, -1 when the slot is free) and `row_of[index]` (int32). An id is alive
when its slot is in use and its generation matches. Despawning bumps the generation and puts the
index on a free list (LIFO, as Bevy), so a kept id never aliases a later entity; a slot whose
generation would pass 2**31 - 1 is retired instead of reused (generation RETIRED, on no free
list). Index 0 is never used, so 0 is never an id (users may store 0 as "no entity").

Every slot below `high_water` is live, free or retired, so the three arrays follow from the tables'
entity columns, the free list and the free slots' generations: snapshots and saved files keep only
those and `rebuild` puts the arrays back (slots not in use hold table -1, row -1).

Costs: allocate/free one is O(1); batches are vectorised (no per-entity Python loop); rebuild is
O(high_water) fills plus O(live + free) kernel writes.
"""

from __future__ import annotations

import numpy as np

from ecs.kernels import rows

from .errors import ArgumentTypeError, CapacityError, DeadEntityError
from .memory import Arena

INDEX_BITS = 32
INDEX_MASK = (1 << INDEX_BITS) - 1
MAX_GENERATION = (1 << 31) - 1
RETIRED = MAX_GENERATION + 1   # the generation of a slot that is never reused
ID_END = 1 << 63               # every id is below: ids are int64
MAX_ENTITIES = 1 << INDEX_BITS # an id holds a 32-bit slot index
MAX_ROWS = 2**31               # rows are int32 in the index
MIN_CAPACITY = 4096


def slots_for(max_entities: int) -> int:
    """The index slots a world of `max_entities` entities has: one more, as slot 0 is never an id
    (2**32 at most: a world of max_entities=2**32 holds 2**32 - 1)."""
    return min(max_entities + 1, MAX_ENTITIES)


class EntityIndex:
    """Allocation of ids and the id -> (table, row) map."""

    def __init__(self, arena: Arena, max_entities: int) -> None:
        self.max_entities = max_entities
        self.slots = slots = slots_for(max_entities)
        self._gen_region = arena.allocate(4 * slots)
        self._table_region = arena.allocate(4 * slots)
        self._row_region = arena.allocate(4 * slots)
        self.generation = self._gen_region.view(np.uint32, (slots,))
        self.table_of = self._table_region.view(np.int32, (slots,))
        self.row_of = self._row_region.view(np.int32, (slots,))
        # per slot: `clock` when its entity was spawned; kept only once a removed= reader exists
        # (start_stamping): 8 B per entity that worlds without such readers do not pay
        self.birth = np.zeros(0, np.int64)
        self.stamping = False
        self.clock = 0                       # bumped by every allocation
        self._make_item_views()
        self.capacity = 0
        self.high_water = 1      # indices [1, high_water) have been handed out at least once
        self._set_free(np.empty(0, np.int64))   # stack of free indices; top is the end
        self._nfree = 0
        self.alive = 0

    def _make_item_views(self) -> None:
        # memoryviews of the same arrays, for one-entity calls: an item read or write through a
        # memoryview takes ~30 ns and gives a Python int, against ~100 ns for a numpy scalar
        # (locate: 380 ns -> 210 ns)
        self._generation_items = memoryview(self.generation)
        self.table_items = memoryview(self.table_of)   # public: the store's one-entity dispatch reads it
        self._row_items = memoryview(self.row_of)
        self._birth_items = memoryview(self.birth)

    # ---------------------------------------------------------------- lookups
    def locate(self, entity: object) -> tuple[int, int, int]:
        """(index, table id, row) of a live id; DeadEntityError otherwise."""
        if type(entity) is not int:
            entity = as_id(entity)
        index = entity & INDEX_MASK
        if entity <= 0 or index >= self.high_water:
            raise DeadEntityError(entity, "no entity was ever spawned with this id")
        table = self.table_items[index]
        if table < 0 or self._generation_items[index] != entity >> INDEX_BITS:
            if entity >= ID_END:   # past int64: its generation word matches no slot's
                raise DeadEntityError(entity, "no entity was ever spawned with this id")
            raise DeadEntityError(entity, f"its slot is at generation {int(self.generation[index])}; "
                                          f"an id kept across despawn() refers to nothing")
        return index, table, self._row_items[index]

    def is_alive(self, entity: object) -> bool:
        try:
            self.locate(entity)
        except DeadEntityError:
            return False
        return True

    def alive_mask(self, ids: np.ndarray) -> np.ndarray:
        """One bool per id of an int64 array: is it alive."""
        ok = np.empty(ids.shape[0], np.bool_)
        rows.alive_mask(ids, self.high_water, self.generation, self.table_of, ok)
        return ok

    def group_by_table(self, ids: np.ndarray, tables: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
        """(positions, rows, starts, present) of an int64 array of live ids in a world of `tables`
        tables: the positions of the ids in table t are positions[starts[t]:starts[t + 1]],
        increasing, and rows[starts[t]:starts[t + 1]] their rows; `present`: the tables that hold
        any, increasing. DeadEntityError naming the first dead id."""
        positions, found = np.empty(ids.shape[0], np.int64), np.empty(ids.shape[0], np.int64)
        starts, present = np.empty(tables + 1, np.int64), np.empty(tables, np.int64)
        dead, count = rows.group_by_table(ids, self.high_water, self.generation, self.table_of, self.row_of, positions,
                                          found, starts, present)
        if dead >= 0:
            self.locate(int(ids[dead]))  # raises with the precise reason
        return positions, found, starts, present[:count].tolist()

    def locate_batch(self, ids: np.ndarray) -> np.ndarray:
        """Indices of an int64 array of live ids; DeadEntityError naming the first dead one."""
        index = ids & INDEX_MASK
        ok = self.alive_mask(ids)
        if not ok.all():
            first = int(ids[np.flatnonzero(~ok)[0]])
            self.locate(first)  # raises with the precise reason
        return index

    # ---------------------------------------------------------------- allocation
    def allocate(self, count: int, table_id: int, first_row: int, entity_col: np.ndarray) -> None:
        """Allocate `count` entities and place them at rows [first_row, first_row + count) of a
        table, writing their ids into `entity_col`. Free slots are reused first (most recently
        freed first), then new indices. Checks capacity before changing anything."""
        reuse = min(count, self._nfree)
        fresh = count - reuse
        start = self.high_water
        self._reserve(start + fresh, count)
        self.clock += 1
        if self.stamping:
            self.birth[start: start + fresh] = self.clock
        if reuse:
            reused = self._free[self._nfree - reuse: self._nfree][::-1].copy()
            if self.stamping:
                self.birth[reused] = self.clock
            rows.place_indices(reused, table_id, first_row, self.generation, self.table_of,
                               self.row_of, entity_col)
            self._nfree -= reuse
        if fresh:
            rows.place_range(start, fresh, table_id, first_row + reuse, self.generation, self.table_of,
                             self.row_of, entity_col)
        self.high_water = start + fresh
        self.alive += count

    def allocate_one(self, table_id: int, row: int, entity_items: memoryview) -> int:
        """`allocate` for one entity, in plain Python (no kernel dispatch, no temporaries), the
        same policy; `entity_items` is a memoryview of the table's entity column. Returns the id."""
        if self._nfree:
            index = self._free_items[self._nfree - 1]
            self._nfree -= 1
        else:
            index = self.high_water
            if index >= self.capacity:
                self._reserve(index + 1, 1)
            self.high_water = index + 1
        self.table_items[index] = table_id
        self._row_items[index] = row
        self.clock += 1
        if self.stamping:
            self._birth_items[index] = self.clock
        entity = self._generation_items[index] << INDEX_BITS | index
        entity_items[row] = entity
        self.alive += 1
        return entity

    def place(self, index: int, table: int, row: int) -> None:
        """Record that slot `index` now lives at `row` of `table`."""
        self.table_items[index] = table
        self._row_items[index] = row

    def place_batch(self, index: np.ndarray, table: int, rows: np.ndarray) -> None:
        self.table_of[index] = table
        self.row_of[index] = rows

    def free(self, index: np.ndarray) -> None:
        """Release the slots of live entities: bump their generation; retire those that would
        overflow it."""
        self.alive -= index.shape[0]
        need = self._nfree + index.shape[0]       # at most: retired slots are not pushed
        if need > self._free.shape[0]:
            self._grow_free(need)
        self._nfree = rows.free_slots(index, self.generation, self.table_of, self.row_of, self._free, self._nfree,
                                      MAX_GENERATION, RETIRED)

    def free_one(self, index: int) -> None:
        """`free` for one slot, in plain Python (no temporaries), the same policy."""
        self.alive -= 1
        self.table_items[index] = -1
        self._row_items[index] = -1
        generation = self._generation_items[index] + 1
        if generation > MAX_GENERATION:
            self._generation_items[index] = RETIRED
            return
        self._generation_items[index] = generation
        if self._nfree >= len(self._free_items):
            self._grow_free(self._nfree + 1)
        self._free_items[self._nfree] = index
        self._nfree += 1

    def _grow_free(self, need: int) -> None:
        """Room for `need` free indices on the stack (at least doubled, at least 1,024)."""
        grown = np.empty(max(need, 2 * self._free.shape[0], 1024), np.int64)
        grown[: self._nfree] = self._free[: self._nfree]
        self._set_free(grown)

    def _set_free(self, stack: np.ndarray) -> None:
        self._free, self._free_items = stack, memoryview(stack)

    def make_room(self, spawning: int) -> None:
        """Commit slots for `spawning` more entities (free slots first), or CapacityError."""
        self._reserve(self.high_water + max(0, spawning - self._nfree), spawning)

    def _reserve(self, slots: int, spawning: int = 0) -> None:
        """Commit the arrays for `slots` slots; CapacityError past max_entities (for a spawn of
        `spawning` entities) before anything changes."""
        if slots <= self.capacity:
            return
        if slots > self.slots:
            raise CapacityError(f"cannot spawn {spawning} entities", f"World(max_entities={self.max_entities}) "
                                f"slots are all in use", "create the world with a larger max_entities")
        capacity = min(max(slots, 2 * self.capacity, MIN_CAPACITY), self.slots)
        for region in (self._gen_region, self._table_region, self._row_region):
            region.commit(4 * capacity)
        self.table_of[self.capacity: capacity] = -1
        self.capacity = capacity
        if self.stamping:
            self._grow_births()

    def start_stamping(self) -> None:
        """Keep every entity's birth clock from now on (entities alive now count as born at 0)."""
        if not self.stamping:
            self.stamping = True
            self._grow_births()

    def _grow_births(self) -> None:
        birth = np.zeros(self.capacity, np.int64)
        birth[: self.birth.shape[0]] = self.birth
        self.birth = birth
        self._birth_items = memoryview(self.birth)

    def births(self, ids: np.ndarray) -> np.ndarray:
        """The birth clock of each live id (0 for all before start_stamping)."""
        if not self.stamping:
            return np.zeros(ids.shape[0], np.int64)
        return self.birth[ids & INDEX_MASK]

    def free_list(self) -> np.ndarray:
        return self._free[: self._nfree].copy()

    def birth_stamps(self) -> np.ndarray | None:
        """A copy of every slot's birth clock below the high water mark (None before
        start_stamping): what rebuild puts back for a restore."""
        return self.birth[: self.high_water].copy() if self.stamping else None

    def free_generations(self, free: np.ndarray) -> np.ndarray:
        """The generations of the slots in `free` (a free list): what rebuild needs besides it."""
        return self.generation[free]

    def rebuild(self, high_water: int, columns: list[tuple[int, np.ndarray]], free: np.ndarray,
                free_generation: np.ndarray, births: np.ndarray | None = None) -> str | None:
        """Make the index hold exactly these entities: (table id, entity column) pairs give the live
        ids and their rows, `free` the free list (top last) with its slots' generations; every
        other slot below `high_water` is retired, and slots from `high_water` up to the old high
        water are fresh (generation 0). Returns None, or why the arrays cannot be an index (an id
        outside [1, high_water), a slot used twice); then the index is half-written and its world
        must be discarded (load). `births` (a restore's birth_stamps) puts the slots' birth clocks
        back. Cost: fills of max(high_water, old) slots, then one kernel write per live or free slot."""
        if not 1 <= high_water <= self.slots:
            return f"high water mark {high_water} is outside [1, {self.slots}] (max_entities={self.max_entities})"
        stop = max(high_water, self.high_water)
        self._reserve(stop)
        rows.clear_index(high_water, stop, RETIRED, self.generation, self.table_of, self.row_of)
        if self.stamping:   # loaded entities (and restored ones without stamps) count as born before every look
            self.birth[1:stop] = 0
            if births is not None:
                kept = min(births.shape[0], high_water)
                self.birth[1:kept] = births[1:kept]
        alive = 0
        for table_id, entity_col in columns:
            bad = rows.index_rows(entity_col, table_id, high_water, self.generation, self.table_of, self.row_of)
            if bad >= 0:
                entity = int(entity_col[bad])
                index = entity & INDEX_MASK
                if entity > 0 and 0 < index < high_water:   # a slot entered before: by this id's twin
                    return (f"row {bad} of table {table_id} holds id {entity}, whose slot {index} row "
                            f"{int(self.row_of[index])} of table {int(self.table_of[index])} holds already")
                return (f"row {bad} of table {table_id} holds id {entity}, whose slot is not in "
                        f"[1, high water mark {high_water})")
            alive += entity_col.shape[0]
        bad = rows.index_free(free, free_generation, high_water, RETIRED, self.generation, self.table_of)
        if bad >= 0:
            return f"free slot {int(free[bad])} (generation {int(free_generation[bad])}) " + self._why_not_free(
                free, bad, high_water, free_generation)
        self.high_water = high_water
        self._set_free(np.concatenate([free, np.empty(max(1024, free.shape[0]), np.int64)]))
        self._nfree = free.shape[0]
        self.alive = alive
        return None

    def _why_not_free(self, free: np.ndarray, bad: int, high_water: int, free_generation: np.ndarray) -> str:
        """Why rebuild's free slot `free[bad]` was refused (the error path: Python is fine)."""
        index = int(free[bad])
        if not 0 < index < high_water:
            return f"is not in [1, high water mark {high_water})"
        if index in free[:bad].tolist():
            return "is listed twice in the free list"
        if self.table_of[index] >= 0:
            return f"is in use: row {int(self.row_of[index])} of table {int(self.table_of[index])} holds it"
        return f"is past the last generation ({MAX_GENERATION})"

    def drop_views(self) -> None:
        """Forget the arena views (world close): the arena unmaps only when none is left."""
        self.generation = self.generation[:0].copy()
        self.table_of = self.table_of[:0].copy()
        self.row_of = self.row_of[:0].copy()
        self._make_item_views()


def as_id(entity: object) -> int:
    """An entity id as an int; ArgumentTypeError for anything but an int (bools included)."""
    if isinstance(entity, (bool, np.bool_)) or not isinstance(entity, (int, np.integer)):
        raise ArgumentTypeError(f"an entity id is an int, got {entity!r}")
    return int(entity)

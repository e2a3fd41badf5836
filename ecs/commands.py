"""Deferred structural changes: commands from kernels (`Commands`) and from Python (`defer`).

Structural changes (spawn, despawn, adding or removing components) move rows between tables,
so they happen only in the main process, between frames. A kernel that takes a parameter
annotated `Commands` queues them with the njit helpers of kernels/commands.py:

    ecs.cmd_despawn(cmd, i, entity)            ecs.cmd_spawn(cmd, i, prefab) -> placeholder
    ecs.cmd_add(cmd, i, entity, TAG_KEY)       ecs.cmd_set(cmd, i, target, FIELD_KEY, value)
    ecs.cmd_remove(cmd, i, entity, TAG_KEY)

where `i` is the row being processed, `TAG_KEY = ecs.component_key(Frozen)` and
`FIELD_KEY = ecs.field_key(Position, "x")` are module-level constants (the same in every
process). Each process appends to its own buffer in shared memory.

After the frame the main process gathers every buffer, sorts the records by (system, table,
row) (a row's own commands keep the order the kernel issued them) and applies them grouped by
kind: spawns (copies of the prefab entity), then field sets, then component adds and removes
(coalesced into one archetype move per entity), then despawns. Despawning an entity twice, or
one that another command already despawned, is not an error. The order depends only on the
world, never on how rows were split, so results are identical for any number of workers.

When every copy of one prefab table in a frame has the same changes, all adds of one component
the prefab lacks (newborns and their tag), the copies are placed in that final table at once,
without the move: the same components, values, change bits, journals and ids (in record order)
as moved copies; only their rows precede the frame's moves into that table. All commands are checked
before any is applied, by one kernel over every record (kernels/commands.plan_records); where
it flags one, the checks written here raise the error, naming the system, table row and
entity: a bad command changes nothing. A frame that fails (KernelError, WorkerCrashedError)
applies none of its commands: they are dropped. `world.defer()` (deferred.py) queues the same
changes from Python.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ecs.kernels import commands as records_kernels
from ecs.kernels import sets
from ecs.kernels.commands import (
    ADD,
    DESPAWN,
    KEY,
    KIND,
    RECORD_WORDS,
    REMOVE,
    ROW,
    SERIAL,
    SET,
    SET_INT,
    SET_UINT,
    SPAWN,
    SYSTEM,
    TABLE,
    TARGET,
    VALUE,
)

from .entity import INDEX_MASK
from .errors import (
    CapacityError,
    CommandError,
    ComponentValueError,
    DeadEntityError,
    InvalidArgumentError,
    InvalidNameError,
    MissingComponentError,
)
from .memory import Arena, ArraySpec
from .record_lookups import RecordLookups
from .schema import INFO_BY_KEY, ComponentInfo, coerce_batch, info_of
from .store import Store
from .table import Table

BUFFER_CAPACITY = 1 << 20   # commands per process per frame: 64 MiB of address space, committed as written
MERGE_RUN_ROWS = 16          # records per ascending run at least, for the merge to beat lexsort
MERGE_ALWAYS_RECORDS = 1024  # ... or at most this many records (lexsort's fixed cost is the larger)


# how each kind of set record stores its value in the VALUE word
_VALUE_VIEWS = {SET: np.dtype(np.float64), SET_INT: np.dtype(np.int64), SET_UINT: np.dtype(np.uint64)}


class Commands:
    """Annotates a kernel parameter that receives this process's command buffer."""


def component_key(component: type) -> int:
    """The process-independent key of a component, for cmd_add / cmd_remove in kernels."""
    return info_of(component).key


def field_key(component: type, field: str) -> int:
    """The key of one field, for cmd_set in kernels."""
    info = info_of(component)
    if field not in info.fields:
        raise InvalidNameError(f"{info.name} has no field {field!r}; it has {', '.join(info.fields) or 'none'}")
    if info.fields[field].shape:
        raise InvalidArgumentError(f"{info.name}.{field} is a vector field; cmd_set writes scalar fields")
    return (info.key << 8) | list(info.fields).index(field)


class CommandBuffers:
    """One buffer per process that runs tasks: workers 0..N-1 and the main process (index N)."""

    def __init__(self, arena: Arena, processes: int) -> None:
        self.processes = processes
        # each buffer's BUFFER_CAPACITY rows and a scratch row for what overflows (kernels/commands.py)
        self._records_region = arena.allocate(processes * (BUFFER_CAPACITY + 1) * RECORD_WORDS * 8)
        self._count_region = arena.allocate(processes * 8)
        self._count_region.commit(processes * 8)
        self.counts = self._count_region.view(np.int64, (processes,))
        self.counts[:] = 0

    def spec(self, index: int) -> tuple[ArraySpec, ArraySpec]:
        """Where buffer `index` lives (its records and its count word)."""
        records = self._records_region.spec(np.int64, (BUFFER_CAPACITY + 1, RECORD_WORDS),
                                            index * (BUFFER_CAPACITY + 1) * RECORD_WORDS * 8)
        return records, self._count_region.spec(np.int64, (1,), index * 8)

    def take(self, arena: Arena) -> tuple[np.ndarray, np.ndarray]:
        """All records (in buffer order) and the buffer each came from; empties the buffers.
        CapacityError when the frame issued more than BUFFER_CAPACITY in all: one limit for the
        frame whatever the number of processes that shared it (each buffer holds that many, and
        a process past its buffer's end counts what it drops), so a frame that fits on one
        worker count fits on every other."""
        counts = self.counts.copy()   # and zeroed first: an interrupted take leaves no count behind
        self.counts[:] = 0
        total = int(counts.sum())
        if total > BUFFER_CAPACITY:
            raise CapacityError(f"a frame's kernel commands: {total:,} records", f"at most {BUFFER_CAPACITY:,} a frame "
                                f"on any number of workers", "issue fewer a frame (spread the work over frames), or "
                                "make the change in bulk from Python (spawn_batch, despawn_batch, add_batch, "
                                "set_batch)")
        parts, owners = [], []
        for index in range(self.processes):
            count = int(counts[index])
            if count:
                records_spec, _ = self.spec(index)
                parts.append(arena.view_of(records_spec)[:count].copy())
                owners.append(np.full(count, index, np.int64))
        if not parts:
            return np.empty((0, RECORD_WORDS), np.int64), np.empty(0, np.int64)
        if len(parts) == 1:       # one process issued them all (workers=0, or one unit): no second copy
            return parts[0], owners[0]
        return np.concatenate(parts), np.concatenate(owners)

    def discard(self) -> None:
        """Empty the buffers (a frame that failed applies none of its commands)."""
        self.counts[:] = 0


def buffer_view(arena: Arena, specs: tuple[ArraySpec, ArraySpec]) -> records_kernels.CommandBuffer:
    records = arena.view_of(specs[0])
    return records_kernels.CommandBuffer(records, records.view(np.float64), arena.view_of(specs[1]), 0, 0, 0)


def apply_records(store: Store, records: np.ndarray, owners: np.ndarray, system_names: list[str],
                  lookups: RecordLookups) -> None:
    """Apply kernel commands in (system, table, row) order; see the module docstring.

    One kernel (plan_records) checks every record, resolves placeholders and plans the work
    below (the last set of each target per field, the changes left after adds placed at spawn,
    the despawns); only where it finds a record to look at do the checks written in Python run
    (each kind's records as a whole, raising the error that names the first bad one, else
    planning the same). Then spawns are bulk copies per
    prefab table, sets one write per (field, table), component changes bulk moves per source
    table (changeset.py's rule: the last command for an (entity, component) wins), despawns one
    batch. Python work is per distinct field or component key, not per record."""
    if records.shape[0] == 0:
        return
    records, owners = _sorted(records, owners)
    batch = _RecordBatch(store, records, owners, system_names)
    lookups = lookups.current()
    if not batch.verified(lookups):
        batch.check(lookups)
    batch.apply(lookups)


def _sorted(records: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records (and their owners) in stable (system, table, row) order. One process's
    come sorted (no copy); several processes' as a few runs each, and a small frame's in any
    order, merged in one kernel call; many records in a shuffled order (more than one run per
    MERGE_RUN_ROWS: a kernel that visits rows in a random order) by lexsort, the faster there.
    np.take, not records[order]: the fancy index of 200,000 records took 6.7-17 ms, take 2.8."""
    runs = records_kernels.ascending_runs(records)
    if runs <= 1:
        return records, owners
    if runs * MERGE_RUN_ROWS <= records.shape[0] or records.shape[0] <= MERGE_ALWAYS_RECORDS:
        return records_kernels.sort_records(records, owners)   # type: ignore[no-any-return]
    order = np.lexsort((np.arange(records.shape[0]), records[:, ROW], records[:, TABLE], records[:, SYSTEM]))
    return np.take(records, order, axis=0), owners[order]


class _RecordBatch:
    """One frame's sorted command records: checked as a whole, then applied as a whole."""

    def __init__(self, store: Store, records: np.ndarray, owners: np.ndarray, system_names: list[str]) -> None:
        self.store, self.records, self.owners, self.system_names = store, records, owners, system_names
        self._targets: np.ndarray | None = None      # resolved on first use (see resolved)
        self._unresolved: np.ndarray | None = None
        # what apply reads, made by verified() or by check()
        # per field set: (component, field, the positions of the last set of each target, their
        # values, whether its targets differ from the previous field's)
        self.field_groups: list[tuple[ComponentInfo, str, np.ndarray, np.ndarray, bool]] = []
        self.changes = np.empty(0, np.int64)         # positions of the add and remove records to apply
        self.prefabs = np.empty(0, np.int64)         # each spawn's prefab, in record order
        self.despawn_at = np.empty(0, np.int64)      # positions of despawn records
        self.added: dict[int, ComponentInfo] = {}    # spawn_copies' `added`

    @cached_property
    def kind(self) -> np.ndarray:
        return self.records[:, KIND]

    @cached_property
    def spawn_at(self) -> np.ndarray:
        return np.flatnonzero(self.kind == SPAWN)

    def where(self, k: int) -> str:
        record = self.records[k]
        return (f"a command of system {self.system_names[int(record[SYSTEM])]!r} (table {int(record[TABLE])}, "
                f"row {int(record[ROW])}, entity {int(record[TARGET])})")

    def located(self, exc: Exception, at: np.ndarray) -> Exception:
        """`exc` (same class, same attributes) with its message prefixed by where the first
        command of `at` came from (the first record checked when `at` is empty)."""
        k = int(at[0]) if at.shape[0] else 0
        exc.args = (f"{self.where(k)}: {exc}",)
        return exc

    def resolved(self, at: np.ndarray | None) -> np.ndarray:
        """Targets of the records at `at` (None: of every record, not to be written to): ids as
        they are, placeholders as -(spawn index + 1); CommandError for the first of them whose
        placeholder no cmd_spawn of its kernel row (system, table, row) made."""
        if self._targets is None:
            self._targets, self._unresolved = self._resolve_all()
        if at is None:
            if self._unresolved is None:
                return self._targets
            at = np.arange(self.records.shape[0])
        if self._unresolved is not None and self._unresolved[at].any():
            k = int(at[np.argmax(self._unresolved[at])])
            raise CommandError(f"{self.where(k)} names placeholder {self.records[k, TARGET]}, which no cmd_spawn of "
                               f"its kernel row made (a placeholder is valid only in the commands of the row that "
                               f"spawned it, in the same call; it is not an id to keep)")
        return self._targets[at]

    def _resolve_all(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Every record's target resolved once (a spawn's is its prefab, kept as is), and where
        a placeholder names no spawn (None: nowhere)."""
        targets = self.records[:, TARGET].copy()
        negative = np.flatnonzero((targets < 0) & (self.kind != SPAWN))
        if not negative.shape[0]:
            return targets, None
        if not self.spawn_at.shape[0]:     # no cmd_spawn this frame: no placeholder names one
            return targets, np.isin(np.arange(targets.shape[0]), negative)
        # (owner, serial) as one int64: serials outside [0, 2**32) (only in records written by
        # hand: the helpers count from 0) would collide with another owner's, so they name nothing
        own = self.records[self.spawn_at, SERIAL]
        serials = np.where((own >= 0) & (own < 1 << 32), self.owners[self.spawn_at] << 32 | own, -1)
        spawn_order = np.argsort(serials, kind="stable")
        serials = serials[spawn_order]
        named = -(targets[negative] + 1)
        wanted = np.where(named < 1 << 32, self.owners[negative] << 32 | named, -2)
        found = np.minimum(np.searchsorted(serials, wanted), serials.shape[0] - 1)
        row = [SYSTEM, TABLE, ROW]   # a placeholder names a spawn of its own kernel row only
        bad = (serials[found] != wanted) | (self.records[self.spawn_at[spawn_order[found]]][:, row]
                                            != self.records[negative][:, row]).any(1)
        targets[negative] = -(spawn_order[found] + 1)
        return targets, np.isin(np.arange(targets.shape[0]), negative[bad]) if bad.any() else None

    # ---------------------------------------------------------------- checks (nothing applied yet)
    def verified(self, lookups: RecordLookups) -> bool:
        """Whether plan_records passes every record; if so, what apply needs is ready (else
        nothing is, and check() must run)."""
        entities, n = self.store.entities, self.records.shape[0]
        work = np.empty((records_kernels.PLAN_ROWS, n + 1), np.int64)
        common = np.empty(lookups.membership.shape[0], np.int64)
        bad, spawns, groups, changes, despawns, tables = records_kernels.plan_records(
            self.records, self.owners, entities.high_water, entities.generation, entities.table_of, *lookups.fields,
            lookups.component_keys, lookups.component_addable, lookups.component_ids, lookups.membership, work, common)
        if bad >= 0:
            return False
        self._targets = work[records_kernels.PLAN_TARGETS, :n]
        self.prefabs = work[records_kernels.PLAN_PREFABS, :spawns]
        self.changes = work[records_kernels.PLAN_CHANGES, :changes]
        self.despawn_at = work[records_kernels.PLAN_DESPAWNS, :despawns]
        if tables:
            self.added = lookups.added_components(work[records_kernels.PLAN_ADDED_TABLES, :tables],
                                                  work[records_kernels.PLAN_ADDED_COMPONENTS, :tables])
        sets, bounds = work[records_kernels.PLAN_SETS], work[records_kernels.PLAN_SET_BOUNDS]
        words = work[records_kernels.PLAN_SET_VALUES]
        for start, stop, key, fresh in zip(bounds[:groups].tolist(), bounds[1:groups + 1].tolist(),
                                           work[records_kernels.PLAN_SET_KEYS, :groups].tolist(),
                                           work[records_kernels.PLAN_SET_FRESH, :groups].tolist(), strict=True):
            info, field = lookups.field_of[key]
            self.field_groups.append((info, field, sets[start:stop],
                                      _exact(words[start:stop], self.kind[sets[start:stop]], info.fields[field]),
                                      bool(fresh)))
        return True

    def check(self, lookups: RecordLookups) -> None:
        """The checks plan_records makes, one kind of record at a time, raising the error that
        names the first bad record; when none is bad, what apply needs is ready."""
        known = np.isin(self.kind, (SPAWN, *_VALUE_VIEWS, ADD, REMOVE, DESPAWN))
        if not known.all():
            raise CommandError(f"corrupt command record of kind {int(self.kind[np.flatnonzero(~known)[0]])}")
        prefabs = self.records[self.spawn_at, TARGET]
        if (prefabs < 0).any():
            k = int(self.spawn_at[np.flatnonzero(prefabs < 0)[0]])
            raise CommandError(f"{self.where(k)} copies {int(self.records[k, TARGET])}, a placeholder: the prefab of "
                               f"cmd_spawn must be an entity that exists before the frame's commands are applied")
        try:
            self.store.entities.locate_batch(prefabs)
        except DeadEntityError as exc:                       # a dead prefab
            raise self.located(exc, self.spawn_at[prefabs == exc.entity]) from None
        self._check_sets()
        self._check_changes()
        for kind in (ADD, REMOVE, DESPAWN):
            self.resolved(np.flatnonzero(self.kind == kind))   # placeholders of this frame's spawns
        self.prefabs = prefabs
        self.despawn_at = np.flatnonzero(self.kind == DESPAWN)
        self.added, self.changes = self._added_at_spawn(lookups)

    def _check_sets(self) -> None:
        at = np.flatnonzero(np.isin(self.kind, tuple(_VALUE_VIEWS)))
        keys = self.records[at, KEY]
        groups = []
        for key in distinct(keys):
            positions = at[keys == key]
            info, field = _field_of(int(key), self.where(int(positions[0])))
            targets = self.resolved(positions)
            holders = _substituted(targets, self.records[self.spawn_at, TARGET])   # a placeholder: its prefab
            try:
                self.store.placed(holders, info)                # DeadEntityError / MissingComponentError
            except (DeadEntityError, MissingComponentError) as exc:
                raise self.located(exc, positions[holders == exc.entity]) from None
            try:
                value = self._coerced_sets(info, field, positions)
            except ComponentValueError as exc:
                first = next((i for i in range(positions.shape[0]) if not self._fits(info, field, positions[i:i + 1])),
                             0)   # 0: each fits alone
                raise self.located(exc, positions[first:]) from None
            groups.append((info, field, positions, value))
        if groups:
            self._keep_last_sets(groups)

    def _coerced_sets(self, info: ComponentInfo, field: str, positions: np.ndarray) -> np.ndarray:
        """The values of the set records at `positions` in the field's dtype, converted exactly:
        an integer cmd_set's value is an int64 or a uint64, the others' a float64;
        ComponentValueError for one that does not fit."""
        kinds = self.kind[positions]
        out = np.empty(positions.shape[0], info.fields[field])
        for kind, dtype in _VALUE_VIEWS.items():
            part = kinds == kind
            if part.any():
                out[part] = coerce_batch(info, field, self.records[positions[part], VALUE].view(dtype))
        return out

    def _fits(self, info: ComponentInfo, field: str, positions: np.ndarray) -> bool:
        try:
            self._coerced_sets(info, field, positions)
        except ComponentValueError:
            return False
        return True

    def _keep_last_sets(self, groups: list[tuple[ComponentInfo, str, np.ndarray, np.ndarray]]) -> None:
        """field_groups from checked sets (per field: every position, increasing, and its value):
        the last set of each target per field and the fresh flags, by plan_records' last_sets."""
        sets = np.concatenate([positions for _, _, positions, _ in groups])
        bounds = np.zeros(len(groups) + 1, np.int64)
        np.cumsum([positions.shape[0] for _, _, positions, _ in groups], out=bounds[1:])
        fresh = np.empty(len(groups), np.int64)
        targets = np.empty(self.records.shape[0], np.int64)
        targets[sets] = self.resolved(sets)
        records_kernels.last_sets(targets, sets, bounds, len(groups), fresh)
        for g, (info, field, positions, value) in enumerate(groups):
            kept = sets[bounds[g]:bounds[g + 1]]
            self.field_groups.append((info, field, kept, value[np.searchsorted(positions, kept)], bool(fresh[g])))

    def _check_changes(self) -> None:
        at = np.flatnonzero((self.kind == ADD) | (self.kind == REMOVE))
        keys = self.records[at, KEY]
        for key in distinct(keys):
            info = INFO_BY_KEY.get(int(key))
            positions = at[keys == key]
            if info is None:
                raise CommandError(f"{self.where(int(positions[0]))} names component key {int(key)}, which no "
                                   f"component has")
            missing = [field for field in info.fields if field not in info.defaults]
            adds = positions[self.kind[positions] == ADD]
            if missing and adds.shape[0]:
                raise self.located(ComponentValueError(info.name, missing[0], None,
                                                       "cmd_add cannot fill this field: it has no default"), adds)
            targets = self.resolved(positions)
            try:
                self.store.entities.locate_batch(targets[targets >= 0])
            except DeadEntityError as exc:
                raise self.located(exc, positions[targets == exc.entity]) from None
            self.changes = np.union1d(self.changes, positions)

    # ---------------------------------------------------------------- applying
    def apply(self, lookups: RecordLookups) -> None:
        store, entities = self.store, self.store.entities
        arriving = self.prefabs.shape[0] + self.changes.shape[0]   # at most, into any one table
        try:
            if self.changes.shape[0] and max(table.n for table in store.tables) + arriving > store.max_rows:
                store.make_room(self._arrivals(lookups), self.prefabs.shape[0])   # a table may fill: count exactly
            spawned = store.spawn_copies(self.prefabs, self.added)
        except CapacityError as exc:   # of the frame's commands together: names who issued them
            systems = distinct(self.records[np.concatenate([self.spawn_at, self.changes]), SYSTEM])
            exc.args = (f"the commands of this frame ({self.prefabs.shape[0]} spawns, {self.changes.shape[0]} "
                        f"component changes, from system {', '.join(repr(self.system_names[int(k)]) for k in systems)}"
                        f"): {exc}",)
            raise
        real = np.empty(self.records.shape[0], np.int64)     # targets, placeholders replaced
        doomed = np.empty(self.despawn_at.shape[0], np.int64)
        doomed = doomed[:records_kernels.settle_targets(self.resolved(None), spawned, self.despawn_at,
                                                        entities.high_water, entities.generation, entities.table_of,
                                                        real, doomed)]
        for info, field, positions, value, fresh in self.field_groups:
            if fresh:
                ids = real[positions]
                placed = store.placed(ids)
            store.values.write_field_batch(ids, info, field, value, placed)
        if self.changes.shape[0]:
            ids = real[self.changes]
            self._apply_changes(ids, *self._final_changes(ids & INDEX_MASK, lookups.slot_scratch(entities.high_water)))
        if doomed.shape[0]:
            store.despawn_batch(doomed)

    def _added_at_spawn(self, lookups: RecordLookups) -> tuple[dict[int, ComponentInfo], np.ndarray]:
        """The prefab tables whose copies are placed with their component added (spawn_copies'
        `added`: every copy of the table only adds that one component, which the table lacks), and
        the change records left to apply after."""
        if not self.prefabs.shape[0] or not self.changes.shape[0]:
            return {}, self.changes
        common = np.empty(lookups.membership.shape[0], np.int64)
        keep = np.empty(self.changes.shape[0], np.bool_)
        if not records_kernels.added_at_spawn(
                self.records, self.resolved(None), self.changes,
                self.store.entities.table_of[self.prefabs & INDEX_MASK], lookups.membership, lookups.component_keys,
                lookups.component_ids, common, keep):
            return {}, self.changes
        tables = np.flatnonzero(common >= 0)
        return lookups.added_components(tables, common[tables]), self.changes[keep]

    def _final_changes(self, slots: np.ndarray, tags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per change record (at self.changes, their targets' slots given): whether it is the last
        for its (entity, component), which wins, and whether that entity has several such. `tags`:
        RecordLookups.slot_scratch, of a slot per entity."""
        keys = self.records[self.changes, KEY]
        final = np.zeros(slots.shape[0], np.bool_)
        several = np.zeros(slots.shape[0], np.bool_)
        if not records_kernels.final_changes_by_slot(slots, keys, final, several, tags):   # many keys: sort
            records_kernels.final_changes(slots, keys, np.argsort(slots, kind="stable"), final, several)
        return final, several

    def _arrivals(self, lookups: RecordLookups) -> dict[Table, int]:
        """The rows each table will receive from the frame's spawns and archetype moves, for
        make_room before any is made: ~40 us per 1,000 change records, so apply counts only when
        a table could fill."""
        store, entities = self.store, self.store.entities
        targets = self.resolved(None)[self.changes]
        # placeholders as slots past the high water mark: one per spawn, as the copies get
        slots = np.where(targets >= 0, targets & INDEX_MASK, entities.high_water - targets - 1)
        final, several = self._final_changes(slots, lookups.slot_scratch(entities.high_water + len(self.prefabs)))
        tables = store.tables
        born = entities.table_of[self.prefabs & INDEX_MASK].astype(np.int64)   # each spawn's table
        for table_id, info in self.added.items():
            born[born == table_id] = store.archetypes.with_added(tables[table_id], (info,)).id
        arrivals: dict[Table, int] = {}
        for table_id, count in zip(*np.unique(born, return_counts=True), strict=True):
            arrivals[tables[table_id]] = int(count)
        live = targets >= 0
        sources = np.empty(targets.shape[0], np.int64)
        sources[live] = entities.table_of[targets[live] & INDEX_MASK]
        sources[~live] = born[-targets[~live] - 1]
        batches, by_entity = self._grouped_changes(targets, final, several)
        moves: list[tuple[Table, Table, int]] = []
        for info, add, at in batches:
            counts = np.bincount(sources[at])
            for table_id in np.flatnonzero(counts).tolist():
                source = tables[table_id]
                moves.append((source, store.change_target(source, [info] * add, [info] * (not add))[0],
                              int(counts[table_id])))
        for position, adds, removes, _ in by_entity:
            source = tables[int(sources[position])]
            moves.append((source, store.change_target(source, adds, removes)[0], 1))
        for source, target, count in moves:
            if target is not source:
                arrivals[target] = arrivals.get(target, 0) + count
        return arrivals

    def _apply_changes(self, ids: np.ndarray, final: np.ndarray, several: np.ndarray) -> None:
        """The last command for each (entity, component) wins (`final`, `several`: _final_changes);
        an entity with one change is moved in a batch per (component, add or remove), one with
        several in one move of its own. `ids`: the entities of the change records. Removals
        journal in the order of the records (as the one-by-one calls would), not of the batches."""
        if not ids.shape[0]:
            return
        batches, by_entity = self._grouped_changes(ids, final, several)
        base = self.store.changes.reserve_removal_events(ids.shape[0])
        for info, add, at in batches:
            self.store.change_components_batch(ids[at], [(info, dict(info.defaults))] if add else [],
                                               [] if add else [info], base + at)
        for position, adds, removes, removed_at in by_entity:
            self.store.change_components(int(ids[position]), [(info, dict(info.defaults)) for info in adds], removes,
                                         {cid: base + at for cid, at in removed_at.items()})

    def _grouped_changes(self, targets: np.ndarray, final: np.ndarray, several: np.ndarray
                         ) -> tuple[list[tuple[ComponentInfo, bool, np.ndarray]],
                                    list[tuple[int, list[ComponentInfo], list[ComponentInfo], dict[int, int]]]]:
        """The winning change records as they are applied (positions index self.changes; `targets`
        tell entities apart): (component, adding, positions) per component and kind for entities
        with one change, in key order, adds first; and per entity with several, in the order of
        its first record, (that position, components added, components removed, the position of
        each removed component's record by component id)."""
        keys = self.records[self.changes, KEY]
        adding = self.kind[self.changes] == ADD
        alone = final & ~several
        batches = []
        for key in distinct(keys[alone]):
            info = INFO_BY_KEY[int(key)]
            for add in (True, False):
                chosen = np.flatnonzero(alone & (keys == key) & (adding == add))
                if chosen.shape[0]:
                    batches.append((info, add, chosen))
        by_entity: dict[int, tuple[int, list[ComponentInfo], list[ComponentInfo], dict[int, int]]] = {}
        mixed = np.flatnonzero(final & several)
        for position, target, key, add in zip(mixed.tolist(), targets[mixed].tolist(), keys[mixed].tolist(),
                                              adding[mixed].tolist(), strict=True):
            _, adds, removes, removed_at = by_entity.setdefault(target, (position, [], [], {}))
            info = INFO_BY_KEY[key]
            if add:
                adds.append(info)
            else:
                removes.append(info)
                removed_at[info.id] = position
        return batches, list(by_entity.values())


def _substituted(targets: np.ndarray, by_spawn: np.ndarray) -> np.ndarray:
    """Targets with each placeholder -(k + 1) replaced by by_spawn[k]."""
    out = targets.copy()
    placeholders = targets < 0
    out[placeholders] = by_spawn[-targets[placeholders] - 1]
    return out


def _field_of(key: int, where: str) -> tuple[ComponentInfo, str]:
    info = INFO_BY_KEY.get(key >> 8)
    if info is None or (key & 0xFF) >= len(info.fields):
        raise CommandError(f"{where} names field key {key}, which no component field has")
    field = list(info.fields)[key & 0xFF]
    if info.fields[field].shape:   # ecs.field_key refuses it; a record written by hand can still name it
        raise CommandError(f"{where} names field key {key}, {info.name}.{field}: a vector field, which cmd_set "
                           f"cannot write")
    return info, field


def _exact(words: np.ndarray, kinds: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Checked set values in `dtype`: `words` hold each one as its record's kind stores it."""
    if (kinds == kinds[0]).all():    # the common case: one kind of value per field
        return words.view(_VALUE_VIEWS[int(kinds[0])]).astype(dtype)
    out = np.empty(words.shape[0], dtype)
    for kind, view in _VALUE_VIEWS.items():
        part = kinds == kind
        out[part] = words[part].view(view).astype(dtype)
    return out


def distinct(values: np.ndarray) -> np.ndarray:
    """np.unique(values) of a 1-D array of few distinct values (component or field keys): ~10 us
    for 10k values that are all one (the common case), else a hash pass (kernels/sets.py) and a
    sort of the distinct ones, where np.unique took 1.4-2.1 ms for 10k."""
    if values.shape[0] and (values == values[0]).all():
        return values[:1]
    return np.sort(values[sets.first_occurrences(values)])

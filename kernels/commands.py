"""Command records: structural changes queued from inside kernels, applied later by the library.

A kernel that takes `ecs.Commands` receives a `CommandBuffer`: the records of its process
(a sparse int64 array of RECORD_WORDS words per command, committed only where written), the
shared record count, and where the current slice starts. Every helper writes one record
naming the command, the issuing system, table and row (global), the target entity and one
argument. The main process applies all records after the frame, sorted by (system, table,
row), so the result does not depend on how rows were split across workers. Past its rows a
buffer writes a scratch row and counts on; a frame over the limit is refused whole (CapacityError).

The helpers are inlined into the calling kernel (`inline="always"`): called as functions, each
call increfs and decrefs the buffer's three arrays, 33 ns a command against ~2 ns inlined.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba.core import types
from numba.extending import overload

from ._jit import jit
from .sets import first_occurrences

RECORD_WORDS = 8
KIND, SYSTEM, TABLE, ROW, TARGET, KEY, VALUE, SERIAL = range(RECORD_WORDS)
# SET_INT, SET_UINT: a set whose value is an int64, a uint64 (its bits in the int64 word)
DESPAWN, ADD, REMOVE, SPAWN, SET, SET_INT, SET_UINT = 1, 2, 3, 4, 5, 6, 7

CommandBuffer = namedtuple("CommandBuffer", ["records", "values", "count", "base", "system", "table"])
CommandBuffer.__module__ = __name__   # numba's cache finds the type by module and name


@jit(inline="always")
def is_set(kind):
    """Whether a record of this kind is a set (its value a float64, an int64 or a uint64)."""
    return kind in (SET, SET_INT, SET_UINT)


@jit(inline="always")
def slot_of(cmd, k):
    """The row of serial k in the buffer: k, or the scratch last row past the others."""
    return min(k, cmd.records.shape[0] - 1)


@jit(inline="always")
def _append(cmd, kind, row, target, key):
    """Write record k at row slot_of(cmd, k); returns k. Past the other rows, records overwrite
    the scratch last row and are only counted (a frame over the world's limit is refused when
    taken). Branch-free: a test and an early return cost ~45 ns an append (measured)."""
    k = cmd.count[0]
    cmd.count[0] = k + 1
    record = cmd.records[slot_of(cmd, k)]
    record[KIND] = kind
    record[SYSTEM] = cmd.system
    record[TABLE] = cmd.table
    record[ROW] = cmd.base + row
    record[TARGET] = target
    record[KEY] = key
    record[SERIAL] = k
    return k


@jit(inline="always")
def despawn(cmd, row, entity):
    """Queue despawning `entity` (issued while processing slice row `row`)."""
    _append(cmd, DESPAWN, row, entity, 0)


@jit(inline="always")
def add_tag(cmd, row, entity, component_key):
    """Queue adding a component without fields (or whose fields all have defaults)."""
    _append(cmd, ADD, row, entity, component_key)


@jit(inline="always")
def remove_tag(cmd, row, entity, component_key):
    """Queue removing a component from `entity`."""
    _append(cmd, REMOVE, row, entity, component_key)


@jit(inline="always")
def spawn(cmd, row, prefab):
    """Queue spawning a copy of the entity `prefab`; returns a placeholder id (negative) that
    the commands of the same row of this call (`set_field`, `add_tag`, ...) accept. It is not an
    id: it names a buffer slot of this process, so a placeholder kept (in a column, a resource)
    and used by another row or system, on any process, is refused when the frame's commands are
    checked."""
    k = _append(cmd, SPAWN, row, prefab, 0)
    return -(k + 1)


@jit(inline="always")
def set_field(cmd, row, target, field_key, value):
    """Queue writing `value` (converted to the field's dtype with range checks) to one field of
    `target` (an entity or a placeholder from `spawn`). An integer value travels exactly, as an
    int64 (an entity id past 2^53 too) or a uint64; a float or bool as a float64."""
    k = _append(cmd, SET, row, target, field_key)
    _put_value(cmd, slot_of(cmd, k), value)


def _put_value(cmd, k, value):
    """Store a set's value in record k (compiled by the overload below, by the value's type)."""
    raise NotImplementedError("compiled only")


# not inline="always": inlined into set_field, numba 0.68 wrote later sets of a kernel with the first's kind
@overload(_put_value)
def _put_value_compiled(cmd, k, value):
    if isinstance(value, types.Integer) and (value.signed or value.bitwidth < 64):
        def as_int64(cmd, k, value):
            cmd.records[k, KIND] = SET_INT
            cmd.records[k, VALUE] = value
        return as_int64
    if isinstance(value, types.Integer):
        def as_uint64(cmd, k, value):
            cmd.records[k, KIND] = SET_UINT
            cmd.records[k, VALUE] = np.int64(value)     # the same 64 bits
        return as_uint64

    def as_float64(cmd, k, value):
        cmd.values[k, VALUE] = value
    return as_float64


def empty_buffer() -> CommandBuffer:
    """No records (its one row is the scratch row): what a system without commands compiles with."""
    records = np.zeros((1, RECORD_WORDS), np.int64)
    return CommandBuffer(records, records.view(np.float64), np.zeros(1, np.int64), 0, 0, 0)


@jit
def final_changes(ids, keys, order, final, several):
    """The last record of each (entity, component key) among change records in position order.

    `order`: a stable argsort of `ids`, so each entity's records are a run in position order.
    Sets final[p] for the record p that decides its pair and several[p] where that entity has
    more than one deciding record (different components). Returns whether any id repeats.
    O(n) for short runs (pairwise within a run of up to 16); a longer run is sorted by key first."""
    n = ids.shape[0]
    repeats = False
    i = 0
    while i < n:
        j = i + 1
        while j < n and ids[order[j]] == ids[order[i]]:
            j += 1
        if j - i == 1:
            final[order[i]] = True
        else:
            repeats = True
            run = order[i:j]
            deciding = 0
            if j - i <= 16:               # no later record of the same key: compare pairwise
                for a in range(run.shape[0]):
                    last = True
                    for b in range(a + 1, run.shape[0]):
                        if keys[run[b]] == keys[run[a]]:
                            last = False
                            break
                    if last:
                        final[run[a]] = True
                        deciding += 1
            else:
                by_key = run[np.argsort(keys[run], kind="mergesort")]
                for a in range(by_key.shape[0]):
                    if a + 1 == by_key.shape[0] or keys[by_key[a + 1]] != keys[by_key[a]]:
                        final[by_key[a]] = True
                        deciding += 1
            if deciding > 1:
                for a in range(run.shape[0]):
                    if final[run[a]]:
                        several[run[a]] = True
        i = j
    return repeats


FITS_ANY, FITS_FLOAT32, FITS_INT, FITS_BOOL = 0, 1, 2, 3   # how verify_records checks a set's value


@jit
def _index_spawns(records, owners, first, high, generation, table_of, spawn_of, prefabs, spawn_records, targets):
    """verify_records' first pass: each spawn's index by (owner, serial) into `spawn_of`, its
    prefab (which must be alive) into `prefabs` and `targets`, its record's position into
    `spawn_records`. -1, or the first bad spawn."""
    spawns = 0
    for k in range(records.shape[0]):
        if records[k, KIND] != SPAWN:
            continue
        owner, serial, prefab = owners[k], records[k, SERIAL], records[k, TARGET]
        index = prefab & 0xFFFFFFFF
        if (serial < 0 or serial >= first[owner + 1] - first[owner] or spawn_of[first[owner] + serial] >= 0
                or prefab <= 0 or index >= high or table_of[index] < 0 or generation[index] != (prefab >> 32)):
            return k
        spawn_of[first[owner] + serial] = spawns
        prefabs[spawns] = prefab
        spawn_records[spawns] = k
        targets[k] = prefab
        spawns += 1
    return -1


@jit
def verify_records(records, values, owners, processes, high, generation, table_of,
                   field_keys, field_components, field_fits, field_low, field_top,
                   component_keys, component_addable, membership, targets):
    """Whether every record passes the checks ecs/commands.py writes in Python, in two passes and
    no temporaries but two of len(records): -1 when all pass, else the position of a record
    those checks must look at (they raise the error that names it, or find nothing wrong).

    `field_keys` (sorted) are the keys of every scalar field with its component's id, how its
    value fits (FITS_*) and, for FITS_INT, the range [low, top); `component_keys` (sorted) name
    every component and whether an add can fill its fields from defaults; membership[t, c]:
    whether table t has the component of id c. On -1, `targets` holds each record's target
    resolved: an id as it is (a spawn's prefab too), a placeholder as -(spawn index + 1), spawns
    counted in record order, as the Python checks resolve them. 10,000 records: ~36 us."""
    n = records.shape[0]
    first = np.zeros(processes + 1, np.int64)      # an owner's records are its serials [0, count)
    for k in range(n):
        if owners[k] < 0 or owners[k] >= processes:
            return k
        first[owners[k] + 1] += 1
    for o in range(processes):
        first[o + 1] += first[o]
    spawn_of = np.full(n, -1, np.int64)            # (first[owner] + serial) -> spawn index
    prefabs = np.empty(n, np.int64)
    spawn_records = np.empty(n, np.int64)
    bad = _index_spawns(records, owners, first, high, generation, table_of, spawn_of, prefabs, spawn_records, targets)
    if bad >= 0:
        return bad
    last_field_key = last_component_key = np.int64(-1)     # keys are >= 0 (ecs.field_key, component_key)
    f = c = 0
    for k in range(n):
        kind = records[k, KIND]
        if kind == SPAWN:
            continue
        if kind != DESPAWN and kind != ADD and kind != REMOVE and not is_set(kind):
            return k
        target = records[k, TARGET]
        holder = target
        if target < 0:
            serial = -(target + 1)
            owner = owners[k]
            if serial >= first[owner + 1] - first[owner] or spawn_of[first[owner] + serial] < 0:
                return k
            spawned = spawn_of[first[owner] + serial]
            at = spawn_records[spawned]     # a placeholder names a spawn of its own kernel row only
            if records[at, SYSTEM] != records[k, SYSTEM] or records[at, TABLE] != records[k, TABLE] \
                    or records[at, ROW] != records[k, ROW]:
                return k
            targets[k] = -(spawned + 1)
            holder = prefabs[spawned]
        else:
            targets[k] = target
        if kind == DESPAWN:
            continue
        index = holder & 0xFFFFFFFF
        alive = holder > 0 and index < high and table_of[index] >= 0 and generation[index] == (holder >> 32)
        key = records[k, KEY]
        if is_set(kind):
            if key != last_field_key:         # runs of one key are the common case: look it up once
                last_field_key, f = key, np.searchsorted(field_keys, key)
            if (f == field_keys.shape[0] or field_keys[f] != key or not alive
                    or not membership[table_of[index], field_components[f]]):
                return k
            if not _value_fits(kind, records[k, VALUE], values[k], field_fits[f], field_low[f], field_top[f]):
                return k
        else:
            if key != last_component_key:
                last_component_key, c = key, np.searchsorted(component_keys, key)
            if c == component_keys.shape[0] or component_keys[c] != key or not alive:
                return k
            if kind == ADD and not component_addable[c]:
                return k
    return -1


@jit
def _value_fits(kind, word, value, fits, low, top):
    """Whether a set's value fits its field (FITS_*; an integer field holds [low, top)): `word`
    is the record's value as an int64 (a SET_INT's; a SET_UINT's bits), `value` as a float64 (a SET's)."""
    if kind == SET_UINT and word < 0:   # a uint64 of 2^63 or more: only a u64 or a float field holds it
        return fits in (FITS_ANY, FITS_FLOAT32) or (fits == FITS_INT and top >= 1.8446744073709552e19)
    if kind in (SET_INT, SET_UINT):   # compared exactly: an int64 past 2^53 is not a float64
        if fits == FITS_INT:
            return word >= low and (top >= 9.223372036854775808e18 or word < top)
        return fits != FITS_BOOL or word == 0 or word == 1
    integral = np.isfinite(value) and value == np.floor(value)
    return not ((fits == FITS_FLOAT32 and np.isfinite(value) and not np.isfinite(np.float32(value)))
                or (fits == FITS_INT and not (integral and low <= value < top))
                or (fits == FITS_BOOL and value != 0.0 and value != 1.0))


@jit
def index_records(records, sets, bounds, changes):
    """Where each kind of work lies among checked records: `sets` receives the positions of set
    records ordered by field key (each key's in record order), bounds[g]:bounds[g + 1] the
    range of sets of its g-th key; `changes` the positions of add and remove records, in
    order. Returns (number of keys, number of changes)."""
    nsets = 0
    nchanges = 0
    for k in range(records.shape[0]):
        kind = records[k, KIND]
        if is_set(kind):
            sets[nsets] = k
            nsets += 1
        elif kind in (ADD, REMOVE):
            changes[nchanges] = k
            nchanges += 1
    keys = np.empty(nsets, np.int64)
    for i in range(nsets):
        keys[i] = records[sets[i], KEY]
    order = np.argsort(keys, kind="mergesort")
    by_key = sets[:nsets][order]
    sets[:nsets] = by_key
    groups = 0
    for i in range(nsets):
        if i == 0 or keys[order[i]] != keys[order[i - 1]]:
            bounds[groups] = i
            groups += 1
    bounds[groups] = nsets
    return groups, nchanges


# rows of plan_records' work array (int64, PLAN_ROWS x (records + 1))
(PLAN_TARGETS, PLAN_SETS, PLAN_SET_BOUNDS, PLAN_SET_FRESH, PLAN_SET_KEYS, PLAN_SET_VALUES, PLAN_CHANGES,
 PLAN_PREFABS, PLAN_DESPAWNS, PLAN_ADDED_TABLES, PLAN_ADDED_COMPONENTS) = range(11)
PLAN_ROWS = 11


@jit
def plan_records(records, owners, high, generation, table_of, field_keys, field_components, field_fits,
                 field_low, field_top, component_keys, component_addable, component_ids, membership,
                 work, common):
    """verify_records over sorted records and, when every record passes, the rest of what
    applying them needs, in one call (a frame's hundred records cost ~15 Python-level calls
    done one by one). Returns (bad, spawns, set groups, changes, despawns, tables): bad is
    verify_records' answer. On -1, the rows of `work` hold:
    - PLAN_TARGETS: each record's target resolved (verify_records');
    - PLAN_SETS, PLAN_SET_BOUNDS, PLAN_SET_FRESH: the set groups of last_sets, with each group's
      field key in PLAN_SET_KEYS and its records' value words in PLAN_SET_VALUES (float64 bits,
      int64 for a SET_INT record, uint64 bits for a SET_UINT's, one beside each position);
    - PLAN_PREFABS: each spawn's prefab, in record order;
    - PLAN_CHANGES: the add and remove records left after added_at_spawn; its `tables` prefab
      tables, with the index (into component_keys) of the component their copies are placed
      with, in PLAN_ADDED_TABLES and PLAN_ADDED_COMPONENTS (`common`: scratch, one per table);
    - PLAN_DESPAWNS: the positions of despawn records.
    Scratch: `work` is 88 bytes a record (the records themselves 64)."""
    n = records.shape[0]
    processes = 0
    for k in range(n):
        processes = max(processes, owners[k] + 1)
    values = records.view(np.float64)[:, VALUE]
    targets = work[PLAN_TARGETS, :n]
    bad = verify_records(records, values, owners, processes, high, generation, table_of, field_keys,
                         field_components, field_fits, field_low, field_top, component_keys, component_addable,
                         membership, targets)
    if bad >= 0:
        return bad, 0, 0, 0, 0, 0
    groups, changes = index_records(records, work[PLAN_SETS], work[PLAN_SET_BOUNDS], work[PLAN_CHANGES])
    last_sets(targets, work[PLAN_SETS], work[PLAN_SET_BOUNDS], groups, work[PLAN_SET_FRESH])
    for g in range(groups):
        work[PLAN_SET_KEYS, g] = records[work[PLAN_SETS, work[PLAN_SET_BOUNDS, g]], KEY]
    for i in range(work[PLAN_SET_BOUNDS, groups]):
        work[PLAN_SET_VALUES, i] = records[work[PLAN_SETS, i], VALUE]   # the word: float64, int64 or uint64 bits
    prefabs, despawn_at = work[PLAN_PREFABS], work[PLAN_DESPAWNS]
    spawns = despawns = 0
    for k in range(n):
        if records[k, KIND] == SPAWN:
            prefabs[spawns] = records[k, TARGET]
            spawns += 1
        elif records[k, KIND] == DESPAWN:
            despawn_at[despawns] = k
            despawns += 1
    prefab_tables = np.empty(spawns, np.int64)
    for s in range(spawns):
        prefab_tables[s] = table_of[prefabs[s] & 0xFFFFFFFF]
    keep = np.empty(changes, np.bool_)
    tables = added_at_spawn(records, targets, work[PLAN_CHANGES, :changes], prefab_tables, membership,
                            component_keys, component_ids, common, keep)
    kept = 0
    for i in range(changes):
        if keep[i]:
            work[PLAN_CHANGES, kept] = work[PLAN_CHANGES, i]
            kept += 1
    qualified = 0
    for t in range(common.shape[0]):
        if common[t] >= 0:
            work[PLAN_ADDED_TABLES, qualified] = t
            work[PLAN_ADDED_COMPONENTS, qualified] = common[t]
            qualified += 1
    return -1, spawns, groups, kept, despawns, tables


@jit
def last_sets(targets, sets, bounds, groups, fresh):
    """Keep in each set group (positions sets[bounds[g]:bounds[g + 1]], in record order) only the
    last record for each target, which decides the field's value; the kept positions stay in
    record order and the groups are compacted (bounds rewritten). fresh[g] = 1 unless group g
    names the same targets in the same order as group g - 1 (the fields of newborns set
    together: their rows are looked up once). Targets as plan_records resolves them: distinct
    targets are distinct entities."""
    cursor = 0
    for g in range(groups):
        start, stop = bounds[g], bounds[g + 1]
        m = stop - start
        backwards = np.empty(m, np.int64)
        for i in range(m):
            backwards[i] = targets[sets[stop - 1 - i]]
        last = first_occurrences(backwards)
        bounds[g] = cursor
        for i in range(m):
            if last[m - 1 - i]:
                sets[cursor] = sets[start + i]
                cursor += 1
        same = g > 0 and cursor - bounds[g] == bounds[g] - bounds[g - 1]
        for i in range(cursor - bounds[g]):
            if not same:
                break
            same = targets[sets[bounds[g] + i]] == targets[sets[bounds[g - 1] + i]]
        fresh[g] = 0 if same else 1
    bounds[groups] = cursor


@jit
def settle_targets(targets, spawned, despawn_at, high, generation, table_of, real, doomed):
    """Once spawns are placed: real[k] = targets[k] with each placeholder -(s + 1) replaced by
    spawned[s], and `doomed` the distinct live entities the despawn records at `despawn_at` name,
    in record order (a second despawn of one entity, or of one that is gone, does nothing);
    returns how many."""
    for k in range(targets.shape[0]):
        real[k] = spawned[-targets[k] - 1] if targets[k] < 0 else targets[k]
    named = np.empty(despawn_at.shape[0], np.int64)
    for i in range(despawn_at.shape[0]):
        named[i] = real[despawn_at[i]]
    first = first_occurrences(named)
    count = 0
    for i in range(named.shape[0]):
        entity = named[i]
        index = entity & 0xFFFFFFFF          # rows.alive_mask's test, written out (see rows.group_by_table)
        if first[i] and entity > 0 and index < high and table_of[index] >= 0 and generation[index] == (entity >> 32):
            doomed[count] = entity
            count += 1
    return count


@jit
def added_at_spawn(records, targets, changes, prefab_tables, membership, component_keys, component_ids,
                   common, keep):
    """Which prefab tables' copies can be placed with their component added: common[t] = the
    index (into component_keys) of the one component that every change record of every copy of
    table t adds, when the table lacks it (one placement per prefab table hands out ids in
    record order, as it does without adds), else negative; keep[i]: whether change record
    changes[i] is still to apply (its copy is not so placed). Returns how many tables qualify.
    Records were checked: each key names a component."""
    sole = np.full(prefab_tables.shape[0], -1, np.int64)    # per spawn; -2: a remove, or two components
    for i in range(changes.shape[0]):
        p = changes[i]
        if targets[p] >= 0:
            continue
        s = -targets[p] - 1
        c = np.searchsorted(component_keys, records[p, KEY])
        if c == component_keys.shape[0] or component_keys[c] != records[p, KEY] or records[p, KIND] != ADD:
            sole[s] = -2
        elif sole[s] == -1:
            sole[s] = c
        elif sole[s] != c:
            sole[s] = -2
    common[:] = -3                                           # -3: no copy yet, -2: copies differ
    for s in range(prefab_tables.shape[0]):
        c, t = sole[s], prefab_tables[s]
        adding = c if c >= 0 and not membership[t, component_ids[c]] else -1
        common[t] = adding if common[t] == -3 or common[t] == adding else -2
    for i in range(changes.shape[0]):
        t = targets[changes[i]]
        keep[i] = t >= 0 or common[prefab_tables[-t - 1]] < 0
    count = 0
    for t in range(common.shape[0]):
        count += common[t] >= 0
    return count


FEW_KEYS = 16   # final_changes_by_slot handles up to this many distinct component keys


@jit
def final_changes_by_slot(ids, keys, final, several, tags):
    """final_changes for live ids (two distinct ones never share a slot) without a sort: one
    backward pass per distinct key (up to FEW_KEYS, else False having written nothing), the
    entity's slot in `tags` (int32 per slot, zero on entry
    and on return) remembering the last pass that decided it and how many did. `final` and
    `several` must be False on entry. O(keys x n): 20k records of one entity order took ~0.5 ms
    through a stable argsort of their ids, ~40 us here."""
    n = ids.shape[0]
    distinct = np.empty(FEW_KEYS, np.int64)
    count = 0
    which = np.empty(n, np.int64)
    for k in range(n):
        j = 0
        while j < count and distinct[j] != keys[k]:
            j += 1
        if j == count:
            if count == FEW_KEYS:
                return False
            distinct[count] = keys[k]
            count += 1
        which[k] = j
    for p in range(count):
        for k in range(n - 1, -1, -1):   # the last record of (entity, key p) decides
            if which[k] == p:
                slot = ids[k] & 0xFFFFFFFF
                if (tags[slot] >> 8) != p + 1:
                    tags[slot] = ((p + 1) << 8) | min((tags[slot] & 0xFF) + 1, 255)
                    final[k] = True
    for k in range(n):
        several[k] = final[k] and (tags[ids[k] & 0xFFFFFFFF] & 0xFF) > 1
    for k in range(n):
        tags[ids[k] & 0xFFFFFFFF] = 0
    return True


@jit
def _before(records, i, j):
    """Whether record i sorts strictly before record j by (system, table, row)."""
    a, b = records[i], records[j]
    if a[SYSTEM] != b[SYSTEM]:
        return a[SYSTEM] < b[SYSTEM]
    if a[TABLE] != b[TABLE]:
        return a[TABLE] < b[TABLE]
    return a[ROW] < b[ROW]


@jit
def ascending_runs(records):
    """How many ascending runs by (system, table, row) the records form (ties continue a run):
    1 when they are sorted already, as one process's records are."""
    runs = 1 if records.shape[0] else 0
    for k in range(1, records.shape[0]):
        if _before(records, k, k - 1):
            runs += 1
    return runs


@jit
def sort_records(records, owners):
    """records and owners gathered in sorted_order's order, as new arrays (one call where
    lexsort, a take and a fancy index cost ~5 numpy calls for a frame's hundred records)."""
    order = sorted_order(records)
    out = np.empty_like(records)
    out_owners = np.empty_like(owners)
    for k in range(order.shape[0]):
        out[k] = records[order[k]]
        out_owners[k] = owners[order[k]]
    return out, out_owners


@jit
def sorted_order(records):
    """The stable order of records by (system, table, row), np.lexsort's, by a natural merge
    sort: O(n log runs). Records of several processes come as a few runs each (one per unit
    claimed): 200,000 records in 8 runs took ~1 ms, lexsort ~4.4 ms; for records in random order
    (a kernel that visits rows in a shuffled order) lexsort is the faster (ascending_runs tells)."""
    n = records.shape[0]
    if n == 0:
        return np.empty(0, np.int64)
    bounds = np.empty(n + 1, np.int64)
    runs = 0
    bounds[0] = 0
    for k in range(1, n):
        if _before(records, k, k - 1):
            runs += 1
            bounds[runs] = k
    runs += 1
    bounds[runs] = n
    order = np.arange(n)
    scratch = np.empty(n, np.int64)
    while runs > 1:
        merged = 0
        for r in range(0, runs, 2):
            lo, mid = bounds[r], bounds[r + 1]
            hi = bounds[r + 2] if r + 2 <= runs else mid
            i, j, out = lo, mid, lo
            while i < mid and j < hi:
                if _before(records, order[j], order[i]):   # ties keep the left (earlier) record
                    scratch[out] = order[j]
                    j += 1
                else:
                    scratch[out] = order[i]
                    i += 1
                out += 1
            scratch[out: out + mid - i] = order[i: mid]
            out += mid - i
            scratch[out: out + hi - j] = order[j: hi]
            bounds[merged] = lo
            merged += 1
        bounds[merged] = n
        runs = merged
        order, scratch = scratch, order
    return order

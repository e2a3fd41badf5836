"""Numpy twins ("oracles") of the kernels in kernels/bits.py, rows.py, physics.py and commands.py.

Each twin is written the obvious way, in whole-array numpy, with no shared code with the kernel
it checks: bitsets are unpacked to one bool per row, edited, and packed back; the grid twin sorts
with np.argsort and the collision twin compares every pair of discs (no grid); the command twin
writes all records of a kernel's commands as whole columns. Twins share only the record layout
(the word and kind constants of kernels/commands.py) with the kernels. Twins that mutate take and
return copies so a test can run kernel and twin on the same input.
"""

from __future__ import annotations

import math

import numpy as np

from ecs.kernels.commands import ADD, KEY, KIND, REMOVE, ROW, SERIAL, SET, SPAWN, SYSTEM, TABLE, TARGET, VALUE


# ---------------------------------------------------------------- bitset <-> bool rows
def unpack(words: np.ndarray) -> np.ndarray:
    """One bool per bit of a uint64 word array, bit `row & 63` of word `row >> 6` first."""
    as_bytes = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(as_bytes, bitorder="little").astype(bool)


def pack(flags: np.ndarray) -> np.ndarray:
    """Inverse of unpack: bools (length a multiple of 64) to uint64 words."""
    assert flags.shape[0] % 64 == 0
    packed = np.packbits(flags.astype(np.uint8), bitorder="little")
    return packed.view("<u8").astype(np.uint64)


# ---------------------------------------------------------------- bits.py twins
def mark_changed(changed: np.ndarray, row: int) -> np.ndarray:
    flags = unpack(changed)
    flags[row] = True
    return pack(flags)


def fill_range(words: np.ndarray, start: int, stop: int) -> np.ndarray:
    flags = unpack(words)
    if stop > start:
        flags[start:stop] = True
    return pack(flags)


def clear_range(words: np.ndarray, start: int, stop: int) -> np.ndarray:
    flags = unpack(words)
    if stop > start:
        flags[start:stop] = False
    return pack(flags)


def count_set(words: np.ndarray, nbits: int) -> int:
    return int(unpack(words)[:nbits].sum())


def set_rows(words: np.ndarray, nbits: int) -> np.ndarray:
    return np.flatnonzero(unpack(words)[:nbits]).astype(np.int64)


def flush_marks(matrix: np.ndarray, source: int, targets: np.ndarray, nwords: int) -> np.ndarray:
    out = matrix.copy()
    marks = out[source, :nwords].copy()
    for target in targets:
        out[target, :nwords] |= marks
    out[source, :nwords] = 0
    return out


def flush_take_rows(matrix: np.ndarray, source: int, targets: np.ndarray, reader: int,
                    nbits: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows set in slot `reader` among the first `nbits` after the flush, the matrix after the
    flush with the reader's first (nbits + 63) // 64 words cleared)."""
    nwords = (nbits + 63) >> 6
    out = flush_marks(matrix, source, targets, nwords)
    rows = np.flatnonzero(unpack(out[reader])[:nbits]).astype(np.int64)
    out[reader, :nwords] = 0
    return rows, out


def move_rows_bits(matrix: np.ndarray, nslots: int, sources: np.ndarray,
                   destinations: np.ndarray) -> np.ndarray:
    out = matrix.copy()
    for slot in range(nslots):
        flags = unpack(out[slot])
        for src, dst in zip(sources, destinations, strict=True):
            bit = flags[src]
            flags[src] = False
            flags[dst] = bit
        out[slot] = pack(flags)
    return out


def transfer_rows_bits(src_matrix: np.ndarray, src_slots: np.ndarray, src_rows: np.ndarray,
                       dst_matrix: np.ndarray, dst_slots: np.ndarray, dst_rows: np.ndarray) -> np.ndarray:
    out = dst_matrix.copy()
    for src_slot, dst_slot in zip(src_slots, dst_slots, strict=True):
        flags = unpack(out[dst_slot])
        flags[dst_rows] = unpack(src_matrix[src_slot])[src_rows]
        out[dst_slot] = pack(flags)
    return out


def clear_rows_bits(matrix: np.ndarray, slots: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = matrix.copy()
    for slot in slots:
        flags = unpack(out[slot])
        flags[rows] = False
        out[slot] = pack(flags)
    return out


def mark_rows(words: np.ndarray, rows: np.ndarray) -> np.ndarray:
    flags = unpack(words)
    flags[rows] = True
    return pack(flags)


def flush_marks_words(matrix: np.ndarray, source: int, targets: np.ndarray, first_word: int,
                      stop_word: int) -> np.ndarray:
    out = matrix.copy()
    marks = out[source, first_word:stop_word].copy()
    for target in targets:
        out[target, first_word:stop_word] |= marks
    out[source, first_word:stop_word] = 0
    return out


def take_rows(words: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows set in [start, stop) relative to start, the words with [start, stop)'s words cleared).
    Same precondition as the kernel: start % 64 == 0 and no bit at stop or beyond in the last word."""
    flags = unpack(words)
    rows = np.flatnonzero(flags[start:stop]).astype(np.int64)
    out = words.copy()
    out[start >> 6: (stop + 63) >> 6] = 0
    return rows, out


# ---------------------------------------------------------------- rows.py twins
def place_range(first_index: int, count: int, table_id: int, first_row: int, generation: np.ndarray,
                table_of: np.ndarray, row_of: np.ndarray,
                entity_col: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    indices = np.arange(first_index, first_index + count, dtype=np.int64)
    return place_indices(indices, table_id, first_row, generation, table_of, row_of, entity_col)


def place_indices(indices: np.ndarray, table_id: int, first_row: int, generation: np.ndarray,
                  table_of: np.ndarray, row_of: np.ndarray,
                  entity_col: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns new copies of (table_of, row_of, entity_col)."""
    table_of, row_of, entity_col = table_of.copy(), row_of.copy(), entity_col.copy()
    rows = first_row + np.arange(len(indices), dtype=np.int64)
    table_of[indices] = table_id
    row_of[indices] = rows
    entity_col[rows] = (generation[indices].astype(np.int64) << 32) | indices
    return table_of, row_of, entity_col


def restore_column(dst: np.ndarray, src: np.ndarray, n: int, width: int,
                   words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dst with rows [0, n) copied from src, words with every row that differed marked)."""
    out, marks = dst.copy(), words.copy()
    differs = (dst[: n * width] != src[: n * width]).reshape(n, width).any(axis=1)
    out[: n * width] = src[: n * width]
    flags = unpack(marks)
    flags[: n] |= differs
    return out, pack(flags)


def index_rows(entity_col: np.ndarray, table_id: int, high: int, generation: np.ndarray, table_of: np.ndarray,
               row_of: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(first bad row or -1, generation, table_of, row_of): new copies, written up to the bad row."""
    generation, table_of, row_of = generation.copy(), table_of.copy(), row_of.copy()
    index = entity_col & 0xFFFFFFFF
    bad = (entity_col <= 0) | (index == 0) | (index >= high)
    bad |= table_of[np.where(bad, 0, index)] >= 0
    first_seen = np.zeros(len(entity_col), np.bool_)
    first_seen[np.unique(index, return_index=True)[1]] = True
    bad |= ~first_seen                                    # a slot named by an earlier row
    stop = int(np.argmax(bad)) if bad.any() else len(entity_col)
    generation[index[:stop]] = entity_col[:stop] >> 32
    table_of[index[:stop]] = table_id
    row_of[index[:stop]] = np.arange(stop)
    return (stop if stop < len(entity_col) else -1), generation, table_of, row_of


def index_free(free: np.ndarray, free_generation: np.ndarray, high: int, retired: int, generation: np.ndarray,
               table_of: np.ndarray) -> tuple[int, np.ndarray]:
    """(first bad k or -1, generation): a new copy, written up to the bad k."""
    generation = generation.copy()
    safe = np.where((free > 0) & (free < high), free, 0)
    bad = (free <= 0) | (free >= high) | (table_of[safe] >= 0) | (generation[safe] != retired)
    bad |= free_generation >= retired
    first_seen = np.zeros(len(free), np.bool_)
    first_seen[np.unique(free, return_index=True)[1]] = True
    bad |= ~first_seen
    stop = int(np.argmax(bad)) if bad.any() else len(free)
    generation[free[:stop]] = free_generation[:stop]
    return (stop if stop < len(free) else -1), generation


# ---------------------------------------------------------------- bits.py helpers
def popcount(value: int) -> int:
    """Set bits of one uint64 word, counted from its unpacked bits."""
    return int(unpack(np.array([value], np.uint64)).sum())


# ---------------------------------------------------------------- physics.py twins
def apply_gravity(vy, gravity, dt):
    return vy + gravity * dt


def integrate(x, y, vx, vy, dt):
    return x + vx * dt, y + vy * dt


def bounce_walls(x, y, vx, vy, width, height, radius, restitution):
    x, y, vx, vy = x.copy(), y.copy(), vx.copy(), vy.copy()
    lo_x, hi_x, lo_y, hi_y = radius, width - radius, radius, height - radius
    left, right = x < lo_x, x > hi_x
    below, above = y < lo_y, y > hi_y
    x[left] = np.minimum(2 * lo_x - x[left], hi_x)
    x[right] = np.maximum(2 * hi_x - x[right], lo_x)
    y[below] = np.minimum(2 * lo_y - y[below], hi_y)
    y[above] = np.maximum(2 * hi_y - y[above], lo_y)
    vx[left] = np.abs(vx[left]) * restitution
    vx[right] = -np.abs(vx[right]) * restitution
    vy[below] = np.abs(vy[below]) * restitution
    vy[above] = -np.abs(vy[above]) * restitution
    return x, y, vx, vy, int(np.count_nonzero(left | right | below | above))


def cells_of(x, y, cell_size, ncx, ncy):
    cx = np.clip((x / cell_size).astype(np.int64), 0, ncx - 1)
    cy = np.clip((y / cell_size).astype(np.int64), 0, ncy - 1)
    return cy * ncx + cx


def build_grid(x, y, vx, vy, cell_size, ncx, ncy):
    cell = cells_of(x, y, cell_size, ncx, ncy)
    order = np.argsort(cell, kind="stable")
    cell_start = np.concatenate([[0], np.cumsum(np.bincount(cell, minlength=ncx * ncy)), [len(x)]])
    state = np.stack([x[order], y[order], vx[order], vy[order]], axis=1)
    return cell_start, state, order


def fastest_approaches(state, radius, keys=None):
    """best[k]: the slot approaching slot k fastest among every disc overlapping it (on a tie the
    one of lowest key), -1 if none."""
    dx = state[None, :, 0] - state[:, None, 0]
    dy = state[None, :, 1] - state[:, None, 1]
    d2 = dx * dx + dy * dy
    d = np.sqrt(d2)
    with np.errstate(invalid="ignore", divide="ignore"):
        dvx = state[None, :, 2] - state[:, None, 2]
        dvy = state[None, :, 3] - state[:, None, 3]
        vn = dvx * (dx / d) + dvy * (dy / d)
    eligible = (d2 < 4 * radius * radius) & (d2 != 0) & (vn < 0)
    vn = np.where(eligible, vn, np.inf)
    if not len(state):
        return np.zeros(0, np.int64)
    # the fastest; on a tie the lowest key (slot k's key is keys[k]; default: the slot itself)
    keys = np.arange(len(state)) if keys is None else keys
    fastest = vn == vn.min(axis=1, keepdims=True)
    best = np.argmin(np.where(fastest, keys[None, :], np.iinfo(np.int64).max), axis=1)
    return np.where(eligible.any(axis=1), best, -1)


def collide(x, y, vx, vy, hits, impulse, radius, restitution, cell_size, ncx, ncy):
    """Twin of build_grid + collide over all rows: mutual fastest approaches collide."""
    _, state, items = build_grid(x, y, vx, vy, cell_size, ncx, ncy)
    best = fastest_approaches(state, radius, keys=items)       # keys: the row numbers
    vx, vy, hits, impulse = vx.copy(), vy.copy(), hits.copy(), impulse.copy()
    changed = np.zeros(len(x), bool)
    share = 0.5 * (1 + restitution)
    for k, i in enumerate(items):
        j = best[k]
        if j < 0 or best[j] != k:
            continue
        dx, dy = state[j, 0] - x[i], state[j, 1] - y[i]
        d = math.sqrt(dx * dx + dy * dy)
        nx, ny = dx / d, dy / d
        vn = (state[j, 2] - vx[i]) * nx + (state[j, 3] - vy[i]) * ny
        vx[i] += share * vn * nx
        vy[i] += share * vn * ny
        hits[i] += 1
        impulse[i] = -share * vn
        changed[i] = True
    return vx, vy, hits, impulse, changed


def tally_contacts(rows, hits, impulse, tally):
    tally = tally.copy()
    selected = rows[hits[rows] > 0]
    tally[0] += len(selected)
    tally[1] += impulse[selected].astype(np.float64).sum()
    return tally


# ---------------------------------------------------------------- commands.py twins
def command_records(records: np.ndarray, count: int, base: int, system: int, table: int, kinds: np.ndarray,
                    rows: np.ndarray, targets: np.ndarray, keys: np.ndarray,
                    values: np.ndarray) -> tuple[np.ndarray, int, np.ndarray, bool]:
    """The buffer after a kernel issued command c = (kinds[c], rows[c], targets[c], keys[c], values[c]), in
    order, through despawn / add_tag / remove_tag / spawn / set_field on CommandBuffer(records, ..., count,
    base, system, table): (records, count, placeholders, full), records a new copy.

    Only records [count, new count) change, and in them every word but VALUE, which only a SET writes
    (its float64 bits). despawn and spawn take no key (KEY is 0); spawn's target is the prefab.
    placeholders[c] is what spawn returned, -(serial + 1); 0 for other kinds. The buffer's last row is
    scratch: when the other rows run out, the commands that fit are written, the others land in that
    row (its contents are not compared) and are only counted (the count is every command issued), and
    `full` is True."""
    records = records.copy()
    issued = len(kinds)
    all_kinds = kinds
    fit = max(0, min(issued, records.shape[0] - 1 - count))
    kinds, rows, targets, keys, values = kinds[:fit], rows[:fit], targets[:fit], keys[:fit], values[:fit]
    serials = count + np.arange(fit, dtype=np.int64)
    written = records[count:count + fit]
    written[:, KIND] = kinds
    written[:, SYSTEM] = system
    written[:, TABLE] = table
    written[:, ROW] = base + rows
    written[:, TARGET] = targets
    written[:, KEY] = np.where(np.isin(kinds, [ADD, REMOVE, SET]), keys, 0)
    written[:, SERIAL] = serials
    sets = kinds == SET
    written[sets, VALUE] = values[sets].astype(np.float64).view(np.int64)
    placeholders = np.zeros(issued, np.int64)
    placeholders[:fit] = np.where(kinds == SPAWN, -(serials + 1), 0)
    all_serials = count + np.arange(issued, dtype=np.int64)       # past the rows too: distinct, never applied
    placeholders[fit:] = np.where(all_kinds[fit:] == SPAWN, -(all_serials[fit:] + 1), 0)
    return records, count + issued, placeholders, fit < issued


def final_changes(ids: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(final, several) per change record in position order: final where no later record has the same
    (entity, key); several where a final record's entity has more than one final record."""
    final = np.array([not any(ids[b] == ids[a] and keys[b] == keys[a] for b in range(a + 1, len(ids)))
                      for a in range(len(ids))], np.bool_)
    finals_per_id = {int(e): int(np.sum(final & (ids == e))) for e in np.unique(ids)}
    several = np.array([bool(final[a]) and finals_per_id[int(ids[a])] > 1 for a in range(len(ids))], np.bool_)
    return final, several


def alive_mask(ids: np.ndarray, high: int, generation: np.ndarray, table_of: np.ndarray) -> np.ndarray:
    index = ids & 0xFFFFFFFF
    ok = (ids > 0) & (index < high)
    safe = np.where(ok, index, 0)
    ok &= table_of[safe] >= 0
    ok &= generation[safe].astype(np.int64) == (ids >> 32)
    return ok

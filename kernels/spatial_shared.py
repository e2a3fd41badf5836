"""Building a grid index (kernels/spatial.py) from systems that may run in any process at once.

Each chunk of rows of a split system runs these with no chunk numbers: `clear_counts` once
(or `clear_shared` per chunk), then per chunk `spatial.cell_ids_*` and `count_shared` (atomic
adds into the shared cell_start), `starts_from_counts` once, then per chunk `claim_slots`
(atomic fetch-adds on a cursor) and `spatial.place` for each column to copy. cell_start
equals the one-call build's; within a cell the slots come in the order processes took them,
so queries over such an index must not depend on that order.

The running sum need not run in one process: with `count_shared_blocks` (which also counts
per block of 2**BLOCK_SHIFT cells), `starts_from_blocks` may be called by every chunk at once,
each claiming blocks from a shared counter until none is left (O(ncells) split among the
callers: 0.27 ms of the physics demo's ~1 ms grid on one core), and `clear_shared` zeroes the
counts the same way, every chunk claiming blocks from a counter tagged with the frame (the
demo's 4 MB of counts, cold in cache after collide: ~0.3 ms a frame in one process, ~0.2 ms
in each of two).
examples/physics_systems.py builds its grid this way, as ordinary systems. spatial.py
re-exports every name here.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .checks import check_length
from .sync import atomic_add, atomic_add_fetch, atomic_cas, atomic_load

BLOCK_SHIFT = 12           # the shared running sum (starts_from_blocks) is claimed in blocks of 4,096 cells
ROUND_SHIFT = 32           # clear_shared's counter: the round's tag above this bit, the next block below
ROUND_MASK = (1 << 31) - 1 # the tag bits kept (a tag repeats only 2**31 rounds later)


@jit
def clear_counts(cell_start):
    """Zero every entry of cell_start before count_shared. Cost O(ncells)."""
    for c in range(cell_start.shape[0]):
        cell_start[c] = 0


@jit
def blocks_of(ncells):
    """Blocks of 2**BLOCK_SHIFT entries covering `ncells`: the entries of the block_counts array
    of a grid of `ncells` cells (count_shared_blocks), the blocks clear_shared claims."""
    return -(-ncells >> BLOCK_SHIFT)


@jit
def clear_shared(values, claim, tag):
    """clear_counts shared by any number of callers at once, in any processes: each claims
    blocks of 2**BLOCK_SHIFT entries of `values` (1-D) from the counter claim[0] (int64) and
    zeroes them, until none is left. `tag` names the round (the frame: ecs.Frame): the first
    claim with a tag other than the one the counter holds starts a new round, so the counter
    itself is never zeroed, and a round cut short (a kernel error in another process) does not
    hold back the next. Two consecutive rounds must have different tags. Cost O(len(values))
    in all, one compare-and-swap per block; a caller that finds nothing left costs one load."""
    nblocks = blocks_of(values.shape[0])
    tagged = (tag & ROUND_MASK) << ROUND_SHIFT
    while True:
        seen = atomic_load(claim, 0)
        if seen >> ROUND_SHIFT != tag & ROUND_MASK:
            block, claimed = 0, tagged | 1          # the first claim of this round
        else:
            block, claimed = seen & ((1 << ROUND_SHIFT) - 1), seen + 1
        if block >= nblocks:
            return
        if not atomic_cas(claim, 0, seen, claimed):
            continue
        part = values[block << BLOCK_SHIFT: (block + 1) << BLOCK_SHIFT]
        for j in range(part.shape[0]):
            part[j] = 0


@jit
def count_shared(cells, cell_start):
    """Count this chunk's points into the shared cell_start (cell c's count at entry c + 1) by
    atomic adds: chunks may run at once in any processes. Raises ValueError for a cell id
    outside the grid. Cost O(n), an atomic add per point."""
    ncells = cell_start.shape[0] - 1
    for i in range(cells.shape[0]):
        c = cells[i]
        if c < 0 or c >= ncells:
            raise ValueError("count_shared: a cell id is outside the grid (cells from another geometry?)")
        atomic_add(cell_start, c + 1, 1)


@jit
def count_shared_blocks(cells, cell_start, block_counts):
    """count_shared, also adding this chunk's points per block of 2**BLOCK_SHIFT cells into the
    shared block_counts (int64, blocks_of(ncells) entries), for starts_from_blocks: a local tally,
    then one atomic add per block the chunk touched. Raises ValueError for a cell id outside
    the grid or a block_counts too short. Cost O(n + blocks)."""
    ncells = cell_start.shape[0] - 1
    nblocks = blocks_of(ncells)
    if block_counts.shape[0] < nblocks:
        raise ValueError("count_shared_blocks: block_counts needs an entry per block of cells")
    tally = np.zeros(nblocks, np.int64)
    for i in range(cells.shape[0]):
        c = cells[i]
        if c < 0 or c >= ncells:
            raise ValueError("count_shared_blocks: a cell id is outside the grid (cells from another geometry?)")
        atomic_add(cell_start, c + 1, 1)
        tally[c >> BLOCK_SHIFT] += 1
    for b in range(nblocks):
        if tally[b]:
            atomic_add(block_counts, b, tally[b])


@jit
def starts_from_blocks(cell_start, cursor, block_counts, claim):
    """starts_from_counts shared by any number of callers at once, in any processes: each claims
    blocks of 2**BLOCK_SHIFT cells from the counter claim[0] (int64, zeroed with the counts) and
    turns its blocks' counts into starts, offset by the counts of the blocks before it
    (block_counts, from every chunk's count_shared_blocks); it returns when no block is left.
    Block b writes only cell_start[c + 1] and cursor[c] of its own cells c, so the result is
    starts_from_counts' whoever runs which block, and one caller alone does it all. Cost
    O(ncells + blocks**2 / 2) in all; a caller that finds nothing left costs one atomic add."""
    ncells = cell_start.shape[0] - 1
    if cursor.shape[0] < ncells:
        raise ValueError("starts_from_blocks: cursor needs an entry per cell")
    nblocks = blocks_of(ncells)
    if block_counts.shape[0] < nblocks:
        raise ValueError("starts_from_blocks: block_counts needs an entry per block of cells")
    cell_start[0] = 0           # every caller writes the same 0; no block writes entry 0
    while True:
        b = atomic_add_fetch(claim, 0, 1) - 1
        if b >= nblocks:
            return
        run = 0
        for k in range(b):
            run += block_counts[k]
        lo, hi = b << BLOCK_SHIFT, min((b + 1) << BLOCK_SHIFT, ncells)
        # slices indexed from 0: numba then drops its negative-index checks (2.6x faster)
        counts, starts = cell_start[lo + 1: hi + 1], cursor[lo:hi]
        for j in range(counts.shape[0]):
            starts[j] = run
            run += counts[j]
            counts[j] = run


@jit
def starts_from_counts(cell_start, cursor):
    """After every chunk's count_shared: cell_start[c] = the first slot of cell c (a running
    sum in place) and cursor[c] = the same, for claim_slots. Cost O(ncells)."""
    ncells = cell_start.shape[0] - 1
    if cursor.shape[0] < ncells:
        raise ValueError("starts_from_counts: cursor needs an entry per cell")
    cell_start[0] = 0
    for c in range(ncells):
        cell_start[c + 1] += cell_start[c]
        cursor[c] = cell_start[c]


@jit
def claim_slots(cells, cursor, slots):
    """slots[i] = a free slot of point i's cell, taken from the shared cursor by an atomic
    fetch-add: chunks may run at once in any processes. Which point of a cell gets which of
    its slots depends on who ran first, so a query over them must not depend on the order
    within a cell (an argmin with a key tie-break, a count, a sum of integers). Raises
    ValueError for a cell id outside the cursor or a slots shorter than cells. Cost O(n)."""
    check_length("claim_slots", slots, cells.shape[0])
    for i in range(cells.shape[0]):
        c = cells[i]
        if c < 0 or c >= cursor.shape[0]:
            raise ValueError("claim_slots: a cell id is outside the grid:", c)
        slots[i] = atomic_add(cursor, c, 1)

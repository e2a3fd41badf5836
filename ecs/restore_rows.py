"""A structural restore as the return of every entity to the row a snapshot has it in.

When the world's structure differs from a snapshot's, restore puts back each table's entity
column (Store.restore_structure). A row whose entity is not the one the snapshot has there
receives that entity, which is either elsewhere in the world now (an archetype change or a
swap-remove moved it since) or dead (despawned since). A live one *returns*: its values of
the components both places have, and the change bits that follow a row (the components'
marks and added bits, the pending bits of readers of both tables), are gathered from where it
is before any row is written, then written to its snapshot row, as an archetype move carries
them; a component it regains is marked added and changed. A dead one comes back new: every
component added and changed. The value restore that follows (snapshot.restore) compares each
row's values, now the returned entity's own, with the snapshot's and marks those that differ.
So readers learn what differs, per entity and component, between the world before the restore
and the snapshot, whatever order of rows the structural changes in between left (a batch call
and the loop of one-by-one calls place rows differently).

Cost: O(rows that changed hands x (columns + bit slots)): nothing for rows that kept their
entity. At 1M entities of 16 B, a restore after despawn_batch of every other one (500k rows
gathered and rewritten, 500k brought back) took ~25 ms, after one despawn ~4 ms (most of it the
index rebuild); marking such rows added wholesale, as an earlier restore did, took ~5 ms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ecs.kernels import bits

from .changes import ChangeTracker
from .entity import EntityIndex
from .table import Table


class Return(NamedTuple):
    """Entities that come back to `rows` of `target`: from rows of `source` (their values of the
    shared components, `values`, and their bits of slots `slots` of `target`, `carried`: a
    (slots, words) matrix, row k the k-th entity's), or, with `source` None, from the dead."""

    target: Table
    rows: np.ndarray
    source: Table | None
    values: dict[int, dict[str, np.ndarray]]
    slots: np.ndarray
    carried: np.ndarray


def gather_returns(tables: list[Table], entities: EntityIndex, changes: ChangeTracker,
                   saved: list[tuple[int, int, np.ndarray]]) -> list[Return]:
    """What each entity brings to the row `saved` (a snapshot's (table id, rows, entity column)
    per table) has it in, read from the world as it is now; nothing is written."""
    returns = []
    for table_id, n, ids in saved:
        target = tables[table_id]
        kept = min(target.n, n)
        moved = np.flatnonzero(target.entities_all[:kept] != ids[:kept])
        if n > kept:
            moved = np.concatenate([moved, np.arange(kept, n)])
        if not moved.shape[0]:
            continue
        arriving = ids[moved]
        alive = entities.alive_mask(arriving)
        if not alive.all():
            returns.append(Return(target, moved[~alive], None, {}, np.empty(0, np.int64), np.empty((0, 0), np.uint64)))
        live = arriving[alive]
        if not live.shape[0]:
            continue
        live_rows = moved[alive]
        positions, source_rows, starts, present = entities.group_by_table(live, len(tables))
        for source_id in present:
            part = slice(starts[source_id], starts[source_id + 1])
            source, rows_there, pick = tables[source_id], source_rows[part], positions[part]
            values = {cid: {field: col[rows_there] for field, col in source.columns_by_component[cid].items()}
                      for cid in source.component_ids & target.component_ids}
            source_slots, slots = changes.transfer_slots(source, target)
            carried = np.zeros((source_slots.shape[0], -(-rows_there.shape[0] // 64)), np.uint64)
            order = np.arange(rows_there.shape[0], dtype=np.int64)
            bits.transfer_rows_bits(source.bit_matrix, source_slots, rows_there, carried,
                                    np.arange(source_slots.shape[0], dtype=np.int64), order)
            returns.append(Return(target, live_rows[pick], source, values, slots, carried))
    return returns


def place_returns(returns: list[Return]) -> None:
    """Write the gathered entities into their rows (after the tables hold the snapshot's entity
    columns and row counts): the bits of the row's former entity cleared, the returned one's
    values and bits written, the components it regains or a dead one's marked added and changed."""
    for back in returns:
        target, rows = back.target, back.rows
        regained = [info for info in target.components
                    if back.source is None or info.id not in back.source.component_ids]
        marked = [slot for info in regained for slot in (target.marks_slot[info.id], target.added_slot[info.id])]
        # the former entity's bits go, but for the slots that the returned one's overwrite or set
        stale = np.setdiff1d(np.arange(target.nslots, dtype=np.int64), np.concatenate([back.slots, marked]))
        bits.clear_rows_bits(target.bit_matrix, stale, rows)
        for cid, fields in back.values.items():
            columns = target.columns_by_component[cid]
            for field, values in fields.items():
                columns[field][rows] = values
        if back.slots.shape[0]:
            bits.transfer_rows_bits(back.carried, np.arange(back.slots.shape[0], dtype=np.int64),
                                    np.arange(rows.shape[0], dtype=np.int64), target.bit_matrix, back.slots, rows)
        for slot in marked:
            bits.mark_rows(target.bit_matrix[slot], rows)

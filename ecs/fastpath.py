"""Generated paths for one-entity calls: straight-line Python over memoryviews.

`World.get`, `set`, `add` and `remove` of one entity are Python-bound: every attribute lookup
and loop counts (numpy scalar indexing costs ~100 ns an item, a memoryview item ~30 ns).
- `compile_access`: for one component in one table, a reader and a writer of its fields as
  Python scalars, with no loop over fields. Cost per call at 100k entities: get ~0.6 us,
  set ~0.6 us.
- `compile_move`: for one table edge (source -> target), the archetype move of one row: its
  shared columns, entity id and change bits copied, the source's last row moved into the hole,
  both entities placed. ~1 us against ~2.5 us through loops over columns and slots.
The store (store.py) caches them per (table, component) and per edge, and generates its spawn
fast path the same way. They are the store's own code: they change rows and entity places only
when the store calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .entity import INDEX_MASK
from .table import BYTE_FLIP, BYTE_OPS_MAX_SLOTS

if TYPE_CHECKING:
    from .entity import EntityIndex
    from .table import Table

Read = Callable[[int], tuple[Any, ...]]               # get's fast path: row -> raw field scalars
Write = Callable[[int, tuple[Any, ...]], None]        # set's fast path: (row, raw) -> stored
Move = Callable[[int, int], int]                      # (entity slot, row in source) -> row in target


def compile_access(views: tuple[memoryview, ...]) -> tuple[Read, Write]:
    """read(row) -> the fields as Python scalars; write(row, raw) stores them (straight-line
    memoryview items: a list comprehension over the views cost ~0.25 us more)."""
    items = "".join(f"v{j}[row], " for j in range(len(views)))
    namespace: dict[str, Any] = {f"v{j}": view for j, view in enumerate(views)}
    exec(f"def read(row):\n    return ({items})\n"  # noqa: S102 - built from field counts only
         f"def write(row, raw):\n    {items + '= raw' if views else '()= raw'}\n", namespace)
    return namespace.pop("read"), namespace.pop("write")


def no_fast_path(*components: object) -> None:
    """The fast path before any exists: never applies."""
    return None


def compile_move(source: Table, target: Table, slot_pairs: list[tuple[int, int]],
                 entities: EntityIndex) -> Move | None:
    """move(index, row) -> new_row: move entity slot `index` from `row` of `source` to the end of
    `target` (reserved by the caller) and fill the hole with the source's last row. The values
    of the components both tables have go along, and the bits of `slot_pairs` (source slot,
    target slot): those that follow a row. None when the source has too many slots for byte
    operations (the caller then moves through kernels)."""
    if source.nslots > BYTE_OPS_MAX_SLOTS:
        return None
    targets = {(cid, field): col for cid, field, col in target.row_columns}
    namespace: dict[str, Any] = {"source": source, "target": target, "place": entities.place,
                                 "src_ids": source.entity_items, "dst_ids": target.entity_items,
                                 "src_bits": source.bit_bytes, "dst_bits": target.bit_bytes}
    lines = ["def move(index, row):",
             "    new_row = target.n",
             "    target.n = new_row + 1",
             "    last = source.n - 1",
             "    src_ids_row = src_ids[row]",
             "    dst_ids[new_row] = src_ids_row",
             f"    from_byte, from_bit = (row >> 3) ^ {BYTE_FLIP}, 1 << (row & 7)",
             f"    to_byte, to_bit = (new_row >> 3) ^ {BYTE_FLIP}, 1 << (new_row & 7)"]
    for k, (cid, field, col) in enumerate(source.row_columns):
        namespace[f"s{k}"] = col
        if (cid, field) in targets:
            namespace[f"d{k}"] = targets[cid, field]
            lines.append(f"    d{k}[new_row] = s{k}[row]")
    for s_slot, d_slot in slot_pairs:
        s_base, d_base = s_slot * source.max_words * 8, d_slot * target.max_words * 8
        lines += [f"    if src_bits[{s_base} + from_byte] & from_bit:",
                  f"        dst_bits[{d_base} + to_byte] |= to_bit",
                  "    else:",
                  f"        dst_bits[{d_base} + to_byte] &= ~to_bit & 0xFF"]
    # the source's last row fills the hole; the vacated last row's bits are cleared
    lines += ["    if row != last:"]
    lines += [f"        s{k}[row] = s{k}[last]" for k in range(len(source.row_columns))]
    lines += ["        moved = src_ids[last]",
              "        src_ids[row] = moved",
              f"        place(moved & {INDEX_MASK}, {source.id}, row)",
              f"        last_byte, last_bit = (last >> 3) ^ {BYTE_FLIP}, 1 << (last & 7)"]
    for base in range(0, source.nslots * source.max_words * 8, source.max_words * 8):
        lines += [f"        if src_bits[{base} + last_byte] & last_bit:",
                  f"            src_bits[{base} + last_byte] &= ~last_bit & 0xFF",
                  f"            src_bits[{base} + from_byte] |= from_bit",
                  "        else:",
                  f"            src_bits[{base} + from_byte] &= ~from_bit & 0xFF"]
    lines += ["    else:"]
    lines += [f"        src_bits[{base} + from_byte] &= ~from_bit & 0xFF"
              for base in range(0, source.nslots * source.max_words * 8, source.max_words * 8)] or ["        pass"]
    lines += ["    source.n = last",
              f"    place(index, {target.id}, new_row)",
              "    return new_row"]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from ints and fixed names
    return namespace.pop("move")  # type: ignore[no-any-return]   # popped: no cycle keeps the views alive

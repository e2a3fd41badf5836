"""Generated paths for one-entity calls: straight-line Python over memoryviews.

`World.get`, `set`, `add` and `remove` of one entity are Python-bound: every attribute lookup
and loop counts (numpy scalar indexing costs ~100 ns an item, a memoryview item ~30 ns).
- `compile_access`: for one component in one table, a reader and a writer of its fields as
  Python scalars, with no loop over fields. Cost per call at 100k entities: get ~0.6 us,
  set ~0.6 us.
- `compile_move`: for one table edge (source -> target), the archetype move of one row: its
  shared columns, entity id and change bits copied, the source's last row moved into the hole,
  both entities placed. ~1 us against ~2.5 us through loops over columns and slots.
- `compile_add` / `compile_remove`: `World.add(e, C(...))` / `remove(e, C)` of one component
  from one source table: the edge's move, the new fields and marks inline. Per op, 10,000 adds
  then removes: ~1.4 us, against ~2.2 us through the checked calls.
- `compile_spawn`: `World.spawn` of one tuple of component types into its table (~1.3-1.6 us).
- `compile_despawn`: `World.despawn` of one entity of one table: the hole filled as in a
  move, the slot freed (~1.4 us on a day spawn took 1.4 us, against ~3.5 us through loops).
- `RowMove`: the one-row move for a source of too many slots for `compile_move`, by loops.
The store (store.py) caches them per (table, component), per edge, per table and per type
tuple. They are the store's own code: they change rows and entity places only when the store
calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .entity import INDEX_MASK
from .table import BYTE_FLIP, BYTE_OPS_MAX_SLOTS

if TYPE_CHECKING:
    from .changes import ChangeTracker
    from .entity import EntityIndex
    from .schema import ComponentInfo
    from .table import Table


class Store(Protocol):
    """What the generated paths use of the store that caches them (store.py)."""

    structure_version: int
    changes: ChangeTracker
    entities: EntityIndex

Read = Callable[[int], tuple[Any, ...]]               # get's fast path: row -> raw field scalars
Write = Callable[[int, tuple[Any, ...]], None]        # set's fast path: (row, raw) -> stored
Move = Callable[[int, int], int]                      # (entity slot, row in source) -> row in target
AddPath = Callable[[int, int, Any], bool]             # add's fast path: (entity slot, row, raw) -> done
RemovePath = Callable[[int, int], bool]               # remove's fast path: (entity slot, row) -> done
DespawnPath = Callable[[int, int], bool]              # despawn's fast path: (entity slot, row) -> done


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
                                 "dst_bits": target.bit_bytes}
    lines = ["def move(index, row):",
             "    new_row = target.n",
             "    target.n = new_row + 1",
             "    last = source.n - 1",
             "    src_ids_row = src_ids[row]",
             "    dst_ids[new_row] = src_ids_row",
             f"    from_byte, from_bit = (row >> 3) ^ {BYTE_FLIP}, 1 << (row & 7)",
             f"    to_byte, to_bit = (new_row >> 3) ^ {BYTE_FLIP}, 1 << (new_row & 7)"]
    for k, (cid, field, _) in enumerate(source.row_columns):
        if (cid, field) in targets:
            namespace[f"d{k}"] = targets[cid, field]
            lines.append(f"    d{k}[new_row] = s{k}[row]")
    for s_slot, d_slot in slot_pairs:
        s_base, d_base = s_slot * source.max_words * 8, d_slot * target.max_words * 8
        lines += [f"    if src_bits[{s_base} + from_byte] & from_bit:",
                  f"        dst_bits[{d_base} + to_byte] |= to_bit",
                  "    else:",
                  f"        dst_bits[{d_base} + to_byte] &= ~to_bit & 0xFF"]
    lines += _fill_hole_lines(source, namespace)
    lines += [f"    place(index, {target.id}, new_row)",
              "    return new_row"]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from ints and fixed names
    return namespace.pop("move")  # type: ignore[no-any-return]   # popped: no cycle keeps the views alive


def _fill_hole_lines(source: Table, namespace: dict[str, Any]) -> list[str]:
    """Lines that take row `row` out of `source` (its bit position `from_byte`, `from_bit` and
    `last` = source.n - 1 already computed): the last row's values, id and bits fill the hole,
    the moved entity is placed, the vacated last row's bits are cleared and the count drops.
    Adds `s{k}` (the source's row columns), `src_ids` and `src_bits` to `namespace`, which
    must hold `place` (EntityIndex.place)."""
    namespace.update({f"s{k}": col for k, (_, _, col) in enumerate(source.row_columns)})
    namespace.update({"src_ids": source.entity_items, "src_bits": source.bit_bytes})
    bases = range(0, source.nslots * source.max_words * 8, source.max_words * 8)
    lines = ["    if row != last:"]
    lines += [f"        s{k}[row] = s{k}[last]" for k in range(len(source.row_columns))]
    lines += ["        moved = src_ids[last]",
              "        src_ids[row] = moved",
              f"        place(moved & {INDEX_MASK}, {source.id}, row)",
              f"        last_byte, last_bit = (last >> 3) ^ {BYTE_FLIP}, 1 << (last & 7)"]
    for base in bases:
        lines += [f"        if src_bits[{base} + last_byte] & last_bit:",
                  f"            src_bits[{base} + last_byte] &= ~last_bit & 0xFF",
                  f"            src_bits[{base} + from_byte] |= from_bit",
                  "        else:",
                  f"            src_bits[{base} + from_byte] &= ~from_bit & 0xFF"]
    lines += ["    else:"]
    lines += [f"        src_bits[{base} + from_byte] &= ~from_bit & 0xFF" for base in bases] or ["        pass"]
    return [*lines, "    source.n = last"]


def compile_despawn(store: Store, source: Table) -> DespawnPath | None:
    """despawn(index, row) -> True: despawn entity slot `index` at `row` of `source`: the
    source's last row fills the hole (as in compile_move) and the slot is freed. False, having
    changed nothing, once the change tracker or the source's slots changed. Compiled only while
    no reader journals a component of the table (registering one changes the tracker's
    version); None when the source has too many slots for byte operations. ~1 us."""
    if source.nslots > BYTE_OPS_MAX_SLOTS:
        return None
    namespace: dict[str, Any] = {"store": store, "changes": store.changes, "source": source,
                                 "place": store.entities.place, "free_one": store.entities.free_one}
    lines = ["def despawn(index, row):",
             f"    if {_stale(store, source)}:",
             "        return False",
             "    store.structure_version += 1",
             "    last = source.n - 1",
             f"    from_byte, from_bit = (row >> 3) ^ {BYTE_FLIP}, 1 << (row & 7)",
             *_fill_hole_lines(source, namespace),
             "    free_one(index)",
             "    return True"]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from ints and fixed names
    return namespace.pop("despawn")  # type: ignore[no-any-return]


def compile_add(store: Store, source: Table, target: Table, info: ComponentInfo, move: Move) -> AddPath | None:
    """add(index, row, raw) -> True: give entity slot `index` at `row` of `source` (which lacks
    the component) the component's `_raw` field scalars, moving it to `target` through the
    edge's `move` and marking its row added and changed there. False, having changed nothing,
    for values not given as scalars (raw None) or once the change tracker or the source's slots
    changed (the move's bits would be stale). None when a field is a vector. ~1.3 us."""
    views = target.field_items[info.id]
    if views is None:
        return None
    namespace: dict[str, Any] = {"store": store, "changes": store.changes, "source": source, "target": target,
                                 "move": move, "bits": target.bit_bytes}
    fields = "".join(f"f{j}, " for j in range(len(views)))
    lines = ["def add(index, row, raw):",
             f"    if raw is None or {_stale(store, source)}:",
             "        return False"]
    if views:
        lines.append(f"    {fields}= raw")
    lines += _edge_move_lines()
    if views:
        lines.append(f"    {''.join(f'v{j}[new_row], ' for j in range(len(views)))}= ({fields})")
    namespace.update({f"v{j}": view for j, view in enumerate(views)})
    lines += _mark_lines(target, (info,), "new_row") + ["    return True"]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from ints and fixed names
    return namespace.pop("add")  # type: ignore[no-any-return]   # popped: no cycle keeps the views alive


def compile_remove(store: Store, source: Table, target: Table, move: Move) -> RemovePath:
    """remove(index, row) -> True: move entity slot `index` at `row` of `source` to `target`
    (one component fewer) through the edge's `move`. False, having changed nothing, once the
    change tracker or the source's slots changed. Compiled only while no reader journals the
    removed component (registering one changes the tracker's version). ~1.1 us."""
    namespace: dict[str, Any] = {"store": store, "changes": store.changes, "source": source, "target": target,
                                 "move": move}
    lines = ["def remove(index, row):",
             f"    if {_stale(store, source)}:",
             "        return False",
             *_edge_move_lines(),
             "    return True"]
    exec("\n".join(lines), namespace)  # noqa: S102 - fixed source and two ints
    return namespace.pop("remove")  # type: ignore[no-any-return]


def _stale(store: Store, source: Table) -> str:
    """The test that an edge path is stale: the change tracker or the source's slots changed
    since it was compiled (the edge's move, compiled with them, would carry the wrong bits)."""
    return f"changes.version != {store.changes.version} or source.nslots != {source.nslots}"


def _mark_lines(table: Table, infos: tuple[ComponentInfo, ...], row: str) -> list[str]:
    """Lines that mark row `row` of `table` added and changed for each of `infos` (bytes of the
    table's bits, named `bits` in the generated function's globals)."""
    lines = [f"    byte = ({row} >> 3) ^ {BYTE_FLIP}", f"    bit = 1 << ({row} & 7)"]
    for info in infos:
        for slot in (table.marks_slot[info.id], table.added_slot[info.id]):
            lines.append(f"    bits[{slot * table.max_words * 8} + byte] |= bit")
    return lines


def _edge_move_lines() -> list[str]:
    """Store._move's steps for one row, inline: reserve a target row, count a structural change,
    move (`new_row`)."""
    return ["    if target.n >= target.capacity:",
            "        target.reserve(target.n + 1)",
            "    store.structure_version += 1",
            "    new_row = move(index, row)"]


def compile_spawn(store: Store, table: Table, infos: tuple[ComponentInfo, ...]) -> Callable[..., int | None] | None:
    """Store.spawn's fast path for one tuple of component types: a function of the values that
    places one entity in `table` with straight-line memoryview writes (no loops over fields, no
    numpy scalars, no kernel dispatch), or returns None, having changed nothing, unless it gets
    exactly these types with `_raw` scalars (schema.py). None when a component has a vector field.
    Cost per entity at 100k, values built in the loop: ~1.6 us."""
    views = [table.field_items[info.id] for info in infos]
    if any(v is None for v in views):
        return None
    namespace: dict[str, Any] = {"table": table, "store": store, "allocate_one": store.entities.allocate_one,
                                 "entity_items": table.entity_items, "bits": table.bit_bytes}
    values = [f"c{k}" for k in range(len(infos))]
    checks = ["extra"]
    for k, info in enumerate(infos):
        namespace[f"T{k}"] = info.cls
        checks.append(f"type(c{k}) is not T{k}")
    lines = [f"def spawn({''.join(v + '=None, ' for v in values)}*extra):",
             f"    if {' or '.join(checks)}:",
             "        return None"]
    lines += [f"    r{k} = c{k}._raw" for k in range(len(infos))]
    if infos:
        lines += [f"    if {' or '.join(f'r{k} is None' for k in range(len(infos)))}:",
                  "        return None"]
    lines += ["    row = table.n",
              "    if row >= table.capacity:",
              "        table.reserve(row + 1)",
              f"    entity = allocate_one({table.id}, row, entity_items)",
              "    store.structure_version += 1",
              "    table.n = row + 1"]
    for k, component_views in enumerate(views):
        targets = []
        for j, view in enumerate(component_views):  # type: ignore[arg-type]
            namespace[f"v{k}_{j}"] = view
            targets.append(f"v{k}_{j}[row], ")
        if targets:
            lines.append(f"    {''.join(targets)}= r{k}")
    lines += _mark_lines(table, infos, "row") + ["    return entity"]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from ints and fixed names
    # popped, so that the function and its globals (the namespace) form no cycle: dropping the
    # fast path must free its memoryviews at once, or close() cannot unmap the arena
    return namespace.pop("spawn")  # type: ignore[no-any-return]


class RowMove:
    """What moving one row from `source` to `target` copies: the columns both have (as item
    views), the entity id, and the change bits that follow a row (byte offsets of slot pairs).
    Valid while the change tracker's version is `version` (readers decide the slot pairs)."""

    def __init__(self, source: Table, target: Table, changes: ChangeTracker) -> None:
        self.version = changes.version
        targets = {(cid, field): col for cid, field, col in target.row_columns}
        self.columns = [(col, targets[cid, field]) for cid, field, col in source.row_columns if (cid, field) in targets]
        self.entities = (source.entity_items, target.entity_items)
        src_slots, dst_slots = changes.transfer_slots(source, target)
        self.bits = (source.bit_bytes, target.bit_bytes)
        self.slot_bytes = [(int(s) * source.max_words * 8, int(d) * target.max_words * 8)
                           for s, d in zip(src_slots, dst_slots, strict=True)]

    def copy(self, row: int, new_row: int) -> None:
        for src, dst in self.columns:
            dst[new_row] = src[row]
        self.entities[1][new_row] = self.entities[0][row]
        src_bits, dst_bits = self.bits
        from_byte, from_bit = (row >> 3) ^ BYTE_FLIP, 1 << (row & 7)
        to_byte, to_bit = (new_row >> 3) ^ BYTE_FLIP, 1 << (new_row & 7)
        for src_base, dst_base in self.slot_bytes:
            if src_bits[src_base + from_byte] & from_bit:
                dst_bits[dst_base + to_byte] |= to_bit
            else:
                dst_bits[dst_base + to_byte] &= ~to_bit & 0xFF

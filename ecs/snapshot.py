"""Save / load to a file, and in-memory snapshots for rollback.

File format, version 1 (little-endian; no pickle anywhere):

    offset 0   b"ECSWORLD"                       magic
           8   u32 format version (1), u32 flags (0)
          16   u64 manifest length M
          24   M bytes of UTF-8 JSON manifest
               zero padding to a multiple of 64
           P   payload: raw arrays, each at a 64-byte aligned offset from P
         end   u32 CRC-32 of the manifest, then b"ECSEND\\0\\0"

The manifest names every component by `module:qualname` with its fields and dtypes, and for
every table its components, its row count and where its entity column and field columns lie
in the payload (offset, bytes, dtype, shape, CRC-32). It also holds the entity index
(generations, locations, free list), resources (numbers inline, arrays in the payload) and the
frame counter. Loading checks magic, version, sizes, every CRC and every component's fields
before it builds anything, so a corrupt, truncated, foreign or newer file raises SnapshotError
and changes nothing. Saving writes a temporary file beside the target, fsyncs it, renames it
over the target and fsyncs the directory: a crash at any point leaves the old file or the new.

Loaded rows count as spawned: every reader's first look sees them added and changed.

Snapshots (`world.snapshot()` / `world.restore(snap)`) copy the same state into private,
read-only memory. Restore copies each column back with one compare-copy-mark pass
(kernels/rows.py): readers see as changed exactly the rows whose bits differ from just before the
restore, and as added (and changed) the rows that now hold another entity; unchanged rows are not
reported. Entities spawned after the snapshot are gone and the id allocator is rewound with the
rest, so a replay after restore issues the same ids again (rollback semantics).

A snapshot's structure (entity columns, free list; the entity index is rebuilt from them) is
shared by every snapshot taken at the same `World._structure_version`, which every structural
change bumps. While the world's structure equals a snapshot's (nothing structural happened since
it was taken or last restored), restore compares and copies only the field columns, resources and
frame. At 1M entities of 16 B: snapshot 2.72 -> 1.14 ms (24 MB, no entity index), or the field
columns alone when a snapshot of the same structure is alive; restore after values changed
3.14 -> 0.85 ms; restore after one despawn 3.79 -> 3.60 ms (rebuilding the index from the entity
column, 1.18 ms, costs what copying it did).
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import weakref
import zlib
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from kernels import bits, rows

from .errors import SnapshotError
from .schema import ComponentInfo, info_of, is_component

if TYPE_CHECKING:
    from .world import World

MAGIC = b"ECSWORLD"
TRAILER = b"ECSEND\0\0"
FORMAT_VERSION = 1
HEADER = struct.Struct("<8sIIQ")
ALIGN = 64


# ==================================================================== save
def save(world: World, path: str | os.PathLike[str]) -> None:
    """Write the world atomically to `path` (see the module docstring for the format)."""
    path = os.fspath(path)
    manifest, arrays = _describe(world)
    blob = json.dumps(manifest, separators=(",", ":")).encode()
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    _remove_orphaned_temporaries(directory, os.path.basename(path))
    try:
        with open(temporary, "wb") as f:
            f.write(HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(blob)))
            f.write(blob)
            _pad(f, HEADER.size + len(blob))
            for array in arrays:
                f.write(_bytes_of(array))
                _pad(f, array.nbytes)
            f.write(struct.pack("<I", zlib.crc32(blob)) + TRAILER)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _remove_orphaned_temporaries(directory: str, name: str) -> None:
    """Delete temporaries of earlier saves of `name` whose writer died (killed mid-save)."""
    prefix = f".{name}.tmp-"
    for entry in os.listdir(directory):
        pid = entry[len(prefix):]
        if entry.startswith(prefix) and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            try:
                os.unlink(os.path.join(directory, entry))
            except FileNotFoundError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pad(f: BinaryIO, written: int) -> None:
    f.write(b"\0" * (-written % ALIGN))


def _bytes_of(array: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a C-contiguous array's bytes (table columns, index slices and payload
    arrays all are). memoryview.cast("B") refuses shapes with a 0, such as an empty vector column."""
    if not array.flags.c_contiguous:
        raise ValueError("expected a C-contiguous array")
    return array.reshape(-1).view(np.uint8)


def _describe(world: World) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The manifest and the payload arrays, in payload order."""
    arrays: list[np.ndarray] = []
    position = 0

    def add(array: np.ndarray) -> dict[str, Any]:
        nonlocal position
        array = np.ascontiguousarray(array).reshape(array.shape)   # ascontiguousarray makes 0-d 1-d
        entry = {"offset": position, "nbytes": array.nbytes, "dtype": array.dtype.str,
                 "shape": list(array.shape), "crc": zlib.crc32(_bytes_of(array))}
        arrays.append(array)
        position += array.nbytes + (-array.nbytes % ALIGN)
        return entry

    components: list[ComponentInfo] = []
    index_of: dict[int, int] = {}
    for table in world._archetypes.tables:
        for info in table.components:
            if info.id not in index_of:
                index_of[info.id] = len(components)
                components.append(info)
    tables = []
    for table in world._archetypes.tables:
        n = table.n
        tables.append({
            "components": [index_of[info.id] for info in table.components],
            "rows": n,
            "entities": add(table.entities_all[:n]),
            "columns": [[index_of[info.id], field, add(col[:n])]
                        for info in table.components for field, col in table.columns_by_component[info.id].items()],
        })
    entities = world._entities
    high = entities.high_water
    scalars, resource_arrays = {}, {}
    for name, value in world.resources.items():
        if isinstance(value, np.ndarray):
            resource_arrays[name] = add(value)
        else:
            kind = type(value).__name__ if isinstance(value, (bool, int, float)) else np.asarray(value).dtype.str
            scalars[name] = [kind, value.item() if isinstance(value, np.generic) else value]
    manifest = {
        "format": "ecs-world", "version": FORMAT_VERSION,
        "components": [{"name": info.qualname,
                        "fields": [[f, (d.base if d.shape else d).str, list(d.shape)]
                                   for f, d in info.fields.items()]}
                       for info in components],
        "tables": tables,
        "entities": {"high_water": high, "alive": entities.alive,
                     "generation": add(entities.generation[:high]), "table_of": add(entities.table_of[:high]),
                     "row_of": add(entities.row_of[:high]), "free": add(entities.free_list())},
        "resources": {"scalars": scalars, "arrays": resource_arrays},
        "frame": world._schedule.frame,
        "limits": {"max_rows": world._archetypes._max_rows, "max_entities": entities.max_entities},
    }
    return manifest, arrays


# ==================================================================== load
def load(path: str | os.PathLike[str], world_factory: Any) -> World:
    """Read a saved world; `world_factory(max_rows=, max_entities=)` makes the empty world."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise SnapshotError(path, f"cannot open it: {exc.strerror or exc}") from None
    with f:
        manifest, payload_start = _read_manifest(f, path, size)
        try:  # a manifest whose checksum holds can still be foreign: missing keys, wrong types
            components = _resolve_components(manifest, path)
            payload_end = size - 4 - len(TRAILER)
            for entry in _all_entries(manifest):
                if int(entry["offset"]) < 0 or int(entry["nbytes"]) < 0:
                    raise SnapshotError(path, "the manifest is malformed: an array has a negative offset "
                                              "or size")
                if payload_start + entry["offset"] + entry["nbytes"] > payload_end:
                    raise SnapshotError(path, "the file is truncated: an array runs past its end")
            limits = manifest["limits"]
            max_rows, max_entities = int(limits["max_rows"]), int(limits["max_entities"])
            if min(max_rows, max_entities) < 64:
                raise SnapshotError(path, f"the manifest is malformed: limits {limits}")
        except _MALFORMED as exc:
            raise _malformed(path, exc) from None
        world = world_factory(max_rows=max_rows, max_entities=max_entities)
        try:
            _fill(world, f, path, manifest, components, payload_start)
        except BaseException as exc:
            world.close()
            if isinstance(exc, _MALFORMED) and not isinstance(exc, SnapshotError):
                raise _malformed(path, exc) from None
            raise
    return world


# what reading a manifest of the wrong shape raises (SnapshotError, a ValueError, passes as is)
_MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def _malformed(path: str, exc: BaseException) -> SnapshotError:
    if isinstance(exc, SnapshotError):
        return exc
    return SnapshotError(path, f"the manifest is malformed or not from this library "
                               f"({type(exc).__name__}: {exc})")


def _read_manifest(f: BinaryIO, path: str, size: int) -> tuple[dict[str, Any], int]:
    head = f.read(HEADER.size)
    if not head:
        raise SnapshotError(path, "the file is empty")
    if head[:8] != MAGIC[: len(head)]:     # a short file that starts like ours is truncated
        raise SnapshotError(path, "not an ecs world file (bad magic)")
    if len(head) < HEADER.size:
        raise SnapshotError(path, f"the file is truncated: {len(head)} bytes, shorter than the header")
    _, version, _, length = HEADER.unpack(head)
    if version > FORMAT_VERSION:
        raise SnapshotError(path, f"written by a newer format version {version}; this library reads "
                                  f"version {FORMAT_VERSION}: upgrade ecs to load it")
    if version < 1 or HEADER.size + length + 4 + len(TRAILER) > size:
        raise SnapshotError(path, "the file is truncated or its header is corrupt")
    blob = f.read(length)
    f.seek(size - 4 - len(TRAILER))
    tail = f.read(4 + len(TRAILER))
    if tail[4:] != TRAILER:
        raise SnapshotError(path, "the file is truncated (no end marker)")
    if struct.unpack("<I", tail[:4])[0] != zlib.crc32(blob):
        raise SnapshotError(path, "the manifest is corrupt (checksum mismatch)")
    try:
        manifest = json.loads(blob)
    except ValueError as exc:
        raise SnapshotError(path, f"the manifest is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "ecs-world":
        raise SnapshotError(path, "not an ecs world file (foreign manifest)")
    start = HEADER.size + length
    return manifest, start + (-start % ALIGN)


def _resolve_components(manifest: dict[str, Any], path: str) -> list[ComponentInfo]:
    out = []
    for entry in manifest["components"]:
        name = entry["name"]
        module_name, _, qualname = name.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            raise SnapshotError(path, f"component {name} cannot be imported; import or define it "
                                      f"before loading") from None
        if not is_component(obj):
            raise SnapshotError(path, f"{name} is not a component class")
        info = info_of(obj)
        saved = [(f, d, tuple(s)) for f, d, s in entry["fields"]]
        have = [(f, (d.base if d.shape else d).str, tuple(d.shape)) for f, d in info.fields.items()]
        if saved != have:
            raise SnapshotError(path, f"component {name} has fields {have} but the file stores {saved}")
        out.append(info)
    return out


def _all_entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for table in manifest["tables"]:
        entries.append(table["entities"])
        entries += [column[2] for column in table["columns"]]
    entries += [manifest["entities"][k] for k in ("generation", "table_of", "row_of", "free")]
    entries += list(manifest["resources"]["arrays"].values())
    return entries


def _read_into(f: BinaryIO, path: str, start: int, entry: dict[str, Any], out: np.ndarray) -> None:
    """Read one payload array straight into `out` (e.g. a column) and check its CRC."""
    if out.nbytes != entry["nbytes"] or list(out.shape) != entry["shape"]:
        raise SnapshotError(path, f"an array has {entry['nbytes']} bytes of shape {entry['shape']}, "
                                  f"expected {out.nbytes} of shape {list(out.shape)}")
    f.seek(start + entry["offset"])
    buffer = _bytes_of(out)
    if f.readinto(buffer) != entry["nbytes"]:  # type: ignore[attr-defined]
        raise SnapshotError(path, "the file is truncated inside an array")
    if zlib.crc32(buffer) != entry["crc"]:
        raise SnapshotError(path, "an array is corrupt (checksum mismatch)")


def _fill(world: World, f: BinaryIO, path: str, manifest: dict[str, Any], components: list[ComponentInfo],
          start: int) -> None:
    table_ids = []
    for saved in manifest["tables"]:
        infos = [components[i] for i in saved["components"]]
        table = world._archetypes.table_for(infos)
        n = int(saved["rows"])
        table.reserve(n)
        table.n = n
        _read_into(f, path, start, saved["entities"], table.entities_all[:n])
        for component_index, field, entry in saved["columns"]:
            info = components[component_index]
            _read_into(f, path, start, entry, table.columns_by_component[info.id][field][:n])
        table.mark_new_rows(0, n)
        table_ids.append(table.id)
    saved_entities = manifest["entities"]
    high = int(saved_entities["high_water"])
    entities = world._entities
    entities._reserve(high)
    for name in ("generation", "table_of", "row_of"):
        _read_into(f, path, start, saved_entities[name], getattr(entities, name)[:high])
    in_use = entities.table_of[:high] >= 0
    remap = np.asarray(table_ids, np.int32)
    entities.table_of[:high][in_use] = remap[entities.table_of[:high][in_use]] if remap.size else -1
    free_entry = saved_entities["free"]
    free = np.empty(free_entry["shape"], np.int64)
    _read_into(f, path, start, free_entry, free)
    entities.high_water = high
    entities._free = np.concatenate([free, np.empty(max(1024, free.shape[0]), np.int64)])
    entities._nfree = free.shape[0]
    entities.alive = int(saved_entities["alive"])
    for name, (kind, value) in manifest["resources"]["scalars"].items():
        world.resources[name] = {"bool": bool, "int": int, "float": float}[kind](value) \
            if kind in ("bool", "int", "float") else np.dtype(kind).type(value)
    for name, entry in manifest["resources"]["arrays"].items():
        array = np.empty(entry["shape"], np.dtype(entry["dtype"]))
        _read_into(f, path, start, entry, array)
        world.resources[name] = array
    world._schedule.frame = int(manifest["frame"])
    world._structure_version += 1


# ==================================================================== in-memory snapshots
class Structure:
    """Which entity is in which table row, and the id allocator's state: the part of a snapshot
    that only structural changes (spawn, despawn, add, remove, load, restore) alter. Read-only,
    so snapshots taken at the same `World._structure_version` share one (the world keeps a weak
    reference to the last). The entity index is not copied: `EntityIndex.rebuild` derives it."""

    def __init__(self, world: World) -> None:
        self.tables = []
        for table in world._archetypes.tables:
            self.tables.append((table.id, table.n, _read_only(table.entities_all[: table.n].copy())))
        entities = world._entities
        self.high_water = entities.high_water
        self.free = _read_only(entities.free_list())
        self.free_generation = _read_only(entities.free_generations(self.free))
        self.alive = entities.alive
        self.nbytes = sum(e.nbytes for _, _, e in self.tables) + self.free.nbytes + self.free_generation.nbytes


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _shared_structure(world: World) -> Structure | None:
    """The Structure the world's structure equals now, if one is still alive."""
    seen = world._structure_seen
    if seen is None or seen[0] != world._structure_version:
        return None
    return seen[1]()


class Snapshot:
    """A private copy of a world's columns, resources and frame counter, and its Structure.

    Cost: a copy of every field column; plus, unless a live snapshot was taken at the same
    structure version, a copy of every entity column (8 B per entity) and of the free list."""

    def __init__(self, world: World) -> None:
        self.world_id = id(world)
        structure = _shared_structure(world)
        if structure is None:
            structure = Structure(world)
            world._structure_seen = (world._structure_version, weakref.ref(structure))
        self.structure = structure
        tables = world._archetypes.tables
        self.columns = [(table_id, [(cid, field, _read_only(col[:n].copy()))
                                    for cid, field, col in _flat_columns(tables[table_id])])
                        for table_id, n, _ in structure.tables]
        self.resources = {name: _read_only(value.copy()) if isinstance(value, np.ndarray) else value
                          for name, value in world.resources.items()}
        self.frame = world._schedule.frame
        self.nbytes = structure.nbytes + sum(col.nbytes for _, cols in self.columns for _, _, col in cols)

    def __repr__(self) -> str:
        return f"<Snapshot of {len(self.columns)} tables, {self.structure.alive} entities, {self.nbytes} bytes>"


def _flat_columns(table: Any) -> list[tuple[int, str, np.ndarray]]:
    return [(cid, field, col) for cid, cols in table.columns_by_component.items() for field, col in cols.items()]


def _as_bits(array: np.ndarray) -> np.ndarray:
    """A flat unsigned-integer view of the same bytes (bitwise comparison)."""
    return array.reshape(-1).view(np.dtype(f"u{array.dtype.itemsize}"))


def _width(col: np.ndarray) -> int:
    return int(np.prod(col.shape[1:], dtype=np.int64)) if col.ndim > 1 else 1


def restore(world: World, snap: Snapshot) -> None:
    """Put the world back as it was when `snap` was taken (see the module docstring).

    When the world's structure still equals the snapshot's (no structural change since it was
    taken, or since it was last restored), only the field columns, resources and frame are
    compared and copied, and the structure version stays. Otherwise entity columns are restored
    the same way and the entity index is rebuilt from them (EntityIndex.rebuild)."""
    if snap.world_id != id(world):
        raise ValueError("this snapshot was taken of another world")
    structure = snap.structure
    tables = world._archetypes.tables
    if _shared_structure(world) is not structure:
        _restore_structure(world, structure)
        world._structure_version += 1
        world._structure_seen = (world._structure_version, weakref.ref(structure))
    for (table_id, n, _), (_, columns) in zip(structure.tables, snap.columns, strict=True):
        table = tables[table_id]
        for cid, field, saved in columns:
            if n:
                col = table.columns_by_component[cid][field]
                rows.restore_column(_as_bits(col[:n]), _as_bits(saved), n, _width(col),
                                    table.bit_matrix[table.marks_slot[cid]])
    for name in list(world.resources):
        if name not in snap.resources:
            del world.resources[name]
    for name, value in snap.resources.items():
        now: Any = world.resources.get(name)
        if isinstance(value, np.ndarray) and isinstance(now, np.ndarray) and now.shape == value.shape \
                and now.dtype == value.dtype:
            now[...] = value
        else:
            world.resources[name] = value.copy() if isinstance(value, np.ndarray) else value
    world._schedule.frame = snap.frame


def _restore_structure(world: World, structure: Structure) -> None:
    """Tables get back their row counts and entity columns; a row that now holds another entity
    (or was not in use) is marked added and changed for every component of its table; bits past
    the restored row counts are cleared. Then the entity index is rebuilt."""
    tables = world._archetypes.tables
    restored = set()
    for table_id, n, entities in structure.tables:
        restored.add(table_id)
        table = tables[table_id]
        table.reserve(n)
        current = table.n
        moved_in = np.zeros(-(-n // 64), np.uint64)
        if n:
            rows.restore_column(_as_bits(table.entities_all[:n]), _as_bits(entities), n, 1, moved_in)
            bits.fill_range(moved_in, min(current, n), n)    # rows not in use count as moved in
        if moved_in.any():
            for info in table.components:
                for slot in (table.marks_slot[info.id], table.added_slot[info.id]):
                    words = table.bit_matrix[slot, : moved_in.shape[0]]
                    np.bitwise_or(words, moved_in, out=words)
        for slot in range(table.nslots):
            bits.clear_range(table.bit_matrix[slot], n, max(current, n))
        table.n = n
    for table in tables:
        if table.id not in restored:
            for slot in range(table.nslots):
                bits.clear_range(table.bit_matrix[slot], 0, table.n)
            table.n = 0
    problem = world._entities.rebuild(structure.high_water,
                                      [(table_id, entities) for table_id, _, entities in structure.tables],
                                      structure.free, structure.free_generation)
    assert problem is None, problem

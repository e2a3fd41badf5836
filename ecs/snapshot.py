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

Snapshots (`world.snapshot()` / `world.restore(snap)`) copy the same state into private memory.
Restore copies each column back with one compare-copy-mark pass (kernels/rows.py): readers see
as changed exactly the rows whose bits differ from just before the restore, and as added (and
changed) the rows that now hold another entity; unchanged rows are not reported. Entities spawned
after the snapshot are gone and the id allocator is rewound with the rest, so a replay after
restore issues the same ids again (rollback semantics).
"""

from __future__ import annotations

import importlib
import json
import os
import struct
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
class Snapshot:
    """A private copy of a world's entities, columns, resources and frame counter."""

    def __init__(self, world: World) -> None:
        self.world_id = id(world)
        self.tables = []
        for table in world._archetypes.tables:
            n = table.n
            columns = {key: col[:n].copy() for key, col in _flat_columns(table)}
            self.tables.append((table.id, n, table.entities_all[:n].copy(), columns))
        entities = world._entities
        high = entities.high_water
        self.high_water = high
        self.generation = entities.generation[:high].copy()
        self.table_of = entities.table_of[:high].copy()
        self.row_of = entities.row_of[:high].copy()
        self.free = entities.free_list()
        self.alive = entities.alive
        self.resources = {name: value.copy() if isinstance(value, np.ndarray) else value
                          for name, value in world.resources.items()}
        self.frame = world._schedule.frame
        self.nbytes = sum(c.nbytes for _, _, e, cols in self.tables for c in (e, *cols.values()))

    def __repr__(self) -> str:
        return f"<Snapshot of {len(self.tables)} tables, {self.alive} entities, {self.nbytes} bytes>"


def _flat_columns(table: Any) -> list[tuple[tuple[int, str], np.ndarray]]:
    return [((cid, field), col) for cid, cols in table.columns_by_component.items() for field, col in cols.items()]


def _as_bits(array: np.ndarray) -> np.ndarray:
    """A flat unsigned-integer view of the same bytes (bitwise comparison)."""
    return array.reshape(-1).view(np.dtype(f"u{array.dtype.itemsize}"))


def restore(world: World, snap: Snapshot) -> None:
    """Put the world back as it was when `snap` was taken (see the module docstring)."""
    if snap.world_id != id(world):
        raise ValueError("this snapshot was taken of another world")
    tables = world._archetypes.tables
    restored = {table_id for table_id, _, _, _ in snap.tables}
    for table_id, n, entities, columns in snap.tables:
        table = tables[table_id]
        table.reserve(n)
        current = table.n
        overlap = min(n, current)
        same = np.zeros(n, np.bool_)
        same[:overlap] = table.entities_all[:overlap] == entities[:overlap]
        moved_in = np.flatnonzero(~same)
        for cid, cols in table.columns_by_component.items():
            words = table.bit_matrix[table.marks_slot[cid]]
            for field, col in cols.items():
                saved = columns[cid, field]
                width = int(np.prod(col.shape[1:], dtype=np.int64)) if col.ndim > 1 else 1
                if n:
                    rows.restore_column(_as_bits(col[:n]), _as_bits(saved), n, width, words)
            if moved_in.shape[0]:
                bits.mark_rows(words, moved_in)
                bits.mark_rows(table.bit_matrix[table.added_slot[cid]], moved_in)
        if not table.columns_by_component and moved_in.shape[0]:
            for info in table.components:
                bits.mark_rows(table.bit_matrix[table.added_slot[info.id]], moved_in)
        table.entities_all[:n] = entities
        for slot in range(table.nslots):
            bits.clear_range(table.bit_matrix[slot], n, max(current, n))
        table.n = n
    for table in tables:
        if table.id not in restored:
            for slot in range(table.nslots):
                bits.clear_range(table.bit_matrix[slot], 0, table.n)
            table.n = 0
    entity_index = world._entities
    high = max(entity_index.high_water, snap.high_water)
    entity_index.generation[: snap.high_water] = snap.generation
    entity_index.table_of[: snap.high_water] = snap.table_of
    entity_index.row_of[: snap.high_water] = snap.row_of
    entity_index.table_of[snap.high_water: high] = -1
    entity_index.generation[snap.high_water: high] = 0
    entity_index.high_water = snap.high_water
    entity_index._free = np.concatenate([snap.free, np.empty(max(1024, snap.free.shape[0]), np.int64)])
    entity_index._nfree = snap.free.shape[0]
    entity_index.alive = snap.alive
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
    world._structure_version += 1

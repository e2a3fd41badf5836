"""The world file: save / load (in-memory snapshots for rollback are in snapshot.py).

File format, version 2 (little-endian; no pickle anywhere):

    offset 0   b"ECSWORLD"                       magic
           8   u32 format version (2), u32 flags (0)
          16   u64 manifest length M
          24   M bytes of UTF-8 JSON manifest
               zero padding to a multiple of 64
           P   payload: raw arrays, each at a 64-byte aligned offset from P
         end   u32 CRC-32 of the manifest, then b"ECSEND\\0\\0"

The manifest names every component by its stored name (`module:qualname`, schema.py) with its
fields and dtypes, and for
every table its components, its row count and where its entity column and field columns lie
in the payload (offset, bytes, dtype, shape, and a CRC-32 of every CHUNK = 4 MiB as 8 hex
digits). It also holds the id allocator (high water mark, live count, free list and the free
slots' generations: the entity index follows from these and the entity columns, and is rebuilt
on load), resources (numbers inline, arrays in the payload) and the frame counter. Version 1
stored the index itself (36 instead of 24 bytes per entity of 16 B of fields) and is refused.

A file is untrusted input. Loading checks magic, version, sizes and the whole manifest before it
builds anything (_check_manifest): components resolve only among the classes this program has
defined (nothing is imported on a file's word); every value has its type and range; every table
lists each column of each of its components once; arrays lie inside the payload and share no
byte, so the rows a table claims are backed by bytes of the file; the high water mark is bounded
by the stored ids and free list; and the memory the world will commit is bounded by the file's
length. Then it reads each array straight into the new world's columns while other threads
check its chunks' CRCs; a mismatch, or ids that cannot form an index, close that world again.
So a corrupt, truncated, foreign, crafted or newer file raises SnapshotError (never another
error) and changes nothing. Saving
writes a temporary file beside the target (header, a manifest with placeholder CRCs and the
payload while the CRCs are computed, then the manifest again, then the trailer: a partial file
has no end marker), fsyncs it, renames it over the target and fsyncs the directory: a crash at
any point leaves the old file or the new. Each save has its own temporary (two threads may save
to one path: the last rename wins); a path that is a symlink is followed, so the target is
replaced and the link kept.
At 1M entities of 16 B (persist benchmark, medians of 3 runs): save 40 -> 26 ms (36 -> 24 MB; of
it 4.7 ms write, 12 ms fsync, 5.6 ms the rename freeing the old file's blocks; the CRC-32 runs in
the shadow of the write: the same time as with no CRC at all); load + close 40 -> 31 ms, of it
18 ms committing the world's 36 MB of shared memory (fallocate 8, populate 10), 2.3 ms reads,
1.2 ms rebuilding the index, 7.6 ms close; waiting for the CRC threads 0.03 ms.

Loaded rows count as spawned: every reader's first look sees them added and changed.
"""

from __future__ import annotations

import errno
import itertools
import json
import math
import os
import re
import resource
import secrets
import stat
import struct
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from . import memory
from .entity import MIN_CAPACITY as ENTITY_MIN_CAPACITY
from .errors import SnapshotError
from .schema import ComponentInfo, find_component
from .table import MAX_SLOTS
from .table import MIN_CAPACITY as TABLE_MIN_CAPACITY

if TYPE_CHECKING:
    from .world import World

MAGIC = b"ECSWORLD"
TRAILER = b"ECSEND\0\0"
FORMAT_VERSION = 2
HEADER = struct.Struct("<8sIIQ")
ALIGN = 64
# bytes per CRC-32: at 1M entities 1, 4 and 16 MiB timed alike (save 22-27 ms, load + close 29-33 ms)
CHUNK = 1 << 22
_ZEROS = bytes(ALIGN)
_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16


# ==================================================================== save
def save(world: World, path: str | os.PathLike[str]) -> None:
    """Write the world atomically to `path` (see the module docstring for the format).

    One pwritev puts the header, a manifest with placeholder checksums and the payload in the
    file while other threads compute the checksums; then the manifest is written again with
    them (same length: they are fixed-width), the trailer after it, one fsync."""
    path = os.path.realpath(os.fspath(path))   # over a symlink: replace its target, keep the link
    manifest, arrays, entries = _describe(world)
    blob = _manifest_bytes(manifest)
    start = _payload_start(len(blob))
    directory, name = os.path.split(path)
    # unique per call (two threads saving to one path must not share one), pid first: see
    # _remove_orphaned_temporaries
    temporary = os.path.join(directory, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(8)}")
    _remove_orphaned_temporaries(directory, name)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            with _Checksums() as checksums:
                pending = [checksums.submit(array) for array in arrays]
                buffers: list[Any] = [HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(blob)), blob,
                                      _ZEROS[: start - HEADER.size - len(blob)]]
                for array in arrays:
                    buffers += [_bytes_of(array), _ZEROS[: -array.nbytes % ALIGN]]
                end = _write_all(fd, buffers, 0)
                for entry, crcs in zip(entries, pending, strict=True):
                    entry["crc32"] = [f"{crc.result():08x}" for crc in crcs]
            final = _manifest_bytes(manifest)
            assert len(final) == len(blob), "checksums are fixed-width"
            _write_all(fd, [final], HEADER.size)
            _write_all(fd, [struct.pack("<I", zlib.crc32(final)) + TRAILER], end)
            os.fsync(fd)
        finally:
            os.close(fd)
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


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, separators=(",", ":")).encode()


def _payload_start(manifest_length: int) -> int:
    start = HEADER.size + manifest_length
    return start + (-start % ALIGN)


def _write_all(fd: int, buffers: list[Any], offset: int) -> int:
    """pwritev the buffers back to back from `offset`, in as few calls as IOV_MAX and the
    kernel's 2 GiB per call allow; returns the offset after the last byte."""
    views = [view for view in (memoryview(b).cast("B") for b in buffers) if view.nbytes]
    first = 0
    while first < len(views):
        written = os.pwritev(fd, views[first: first + _IOV_MAX], offset)
        if written <= 0:
            raise OSError(f"pwritev wrote {written} bytes")
        offset += written
        while first < len(views) and written >= views[first].nbytes:
            written -= views[first].nbytes
            first += 1
        if written:
            views[first] = views[first][written:]
    return offset


def _remove_orphaned_temporaries(directory: str, name: str) -> None:
    """Delete temporaries of earlier saves of `name` whose writer died (killed mid-save): named
    `.{name}.tmp-{pid}-{random}` (`.{name}.tmp-{pid}` before)."""
    prefix = f".{name}.tmp-"
    for entry in os.listdir(directory):
        pid = entry[len(prefix):].split("-", 1)[0]
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


def _bytes_of(array: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a C-contiguous array's bytes (table columns, index slices and payload
    arrays all are). memoryview.cast("B") refuses shapes with a 0, such as an empty vector column."""
    if not array.flags.c_contiguous:
        raise ValueError("expected a C-contiguous array")
    return array.reshape(-1).view(np.uint8)


class _Checksums:
    """CRC-32 of every CHUNK bytes of an array, on threads: zlib.crc32 releases the GIL, so they
    run beside the main thread's writes (save) or reads and page commits (load).
    `with` waits for every pending one, so no thread reads an array after the block."""

    def __init__(self) -> None:
        # one per core, up to 4: on 2 cores 2 threads saved 1M entities in 22 ms, 1 in 24.5-27.5
        self._pool = ThreadPoolExecutor(max(1, min(4, len(os.sched_getaffinity(0)))))

    def submit(self, array: np.ndarray) -> list[Future[int]]:
        data = _bytes_of(array)
        return [self._pool.submit(zlib.crc32, data[at: at + CHUNK]) for at in range(0, max(data.shape[0], 1), CHUNK)]

    def __enter__(self) -> _Checksums:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _describe(world: World) -> tuple[dict[str, Any], list[np.ndarray], list[dict[str, Any]]]:
    """The manifest (placeholder checksums), the payload arrays in payload order and their
    manifest entries."""
    arrays: list[np.ndarray] = []
    entries: list[dict[str, Any]] = []
    position = 0

    def add(array: np.ndarray) -> dict[str, Any]:
        nonlocal position
        array = np.ascontiguousarray(array).reshape(array.shape)   # ascontiguousarray makes 0-d 1-d
        entry = {"offset": position, "nbytes": array.nbytes, "dtype": array.dtype.str,
                 "shape": list(array.shape), "crc32": ["00000000"] * _chunk_count(array.nbytes)}
        arrays.append(array)
        entries.append(entry)
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
    free = entities.free_list()
    index = {"high_water": entities.high_water, "alive": entities.alive, "free": add(free),
             "free_generation": add(entities.free_generations(free))}
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
        "entities": index,
        "resources": {"scalars": scalars, "arrays": resource_arrays},
        "frame": world._schedule.frame,
        "limits": {"max_rows": world._archetypes._max_rows, "max_entities": entities.max_entities},
    }
    return manifest, arrays, entries


def _chunk_count(nbytes: int) -> int:
    return max(1, -(-nbytes // CHUNK))


# ==================================================================== load
def load(path: str | os.PathLike[str], world_factory: Any) -> World:
    """Read a saved world; `world_factory(max_rows=, max_entities=)` makes the empty world."""
    path = os.fspath(path)
    try:   # O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise SnapshotError(path, f"cannot open it: {exc.strerror or exc}") from None
    try:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            raise SnapshotError(path, f"cannot open it: {os.strerror(errno.EISDIR)}")
        if not stat.S_ISREG(status.st_mode):
            raise SnapshotError(path, "cannot open it: not a regular file")
        size = status.st_size
        manifest, payload_start = _read_manifest(fd, path, size)
        try:  # a manifest whose checksum holds can still be foreign or crafted: check all of it first
            components, (max_rows, max_entities) = _check_manifest(manifest, path, payload_start, size)
        except _MALFORMED as exc:
            raise _malformed(path, exc) from None
        _check_address_space(path, max_entities)
        try:
            world = world_factory(max_rows=max_rows, max_entities=max_entities)
        except (MemoryError, OSError) as exc:
            raise _does_not_fit(path, exc) from None
        try:
            _fill(world, fd, path, manifest, components, payload_start)
        except BaseException as exc:
            world.close()
            if isinstance(exc, (MemoryError, OSError)):
                raise _does_not_fit(path, exc) from None
            if isinstance(exc, _MALFORMED) and not isinstance(exc, SnapshotError):
                raise _malformed(path, exc) from None
            raise
    finally:
        os.close(fd)
    return world


def _does_not_fit(path: str, exc: BaseException) -> SnapshotError:
    """SnapshotError for a MemoryError or OSError while the world is made or filled."""
    if isinstance(exc, OSError) and exc.errno not in (errno.ENOMEM, errno.ENOSPC):
        return SnapshotError(path, f"cannot read it: {exc.strerror or exc}")
    return SnapshotError(path, f"the world it describes does not fit in this process "
                               f"({type(exc).__name__}: {_text(str(exc), 200)})")


# what reading a manifest of the wrong shape raises (SnapshotError, a ValueError, passes as is)
_MALFORMED = (KeyError, IndexError, TypeError, ValueError, AttributeError)


def _malformed(path: str, exc: BaseException) -> SnapshotError:
    if isinstance(exc, SnapshotError):
        return exc
    return SnapshotError(path, f"the manifest is malformed or not from this library "
                               f"({type(exc).__name__}: {exc})")


def _read_exact(fd: int, buffer: Any, offset: int) -> int:
    """preadv into the whole buffer (in pieces past the kernel's 2 GiB per call); returns the
    bytes read, fewer only at the end of the file."""
    view = memoryview(buffer).cast("B")
    done = 0
    while done < view.nbytes:
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            break
        done += got
    return done


def _read_manifest(fd: int, path: str, size: int) -> tuple[dict[str, Any], int]:
    head = bytearray(HEADER.size)
    got = _read_exact(fd, head, 0)
    if not got:
        raise SnapshotError(path, "the file is empty")
    if head[: min(got, 8)] != MAGIC[: got]:     # a short file that starts like ours is truncated
        raise SnapshotError(path, "not an ecs world file (bad magic)")
    if got < HEADER.size:
        raise SnapshotError(path, f"the file is truncated: {got} bytes, shorter than the header")
    _, version, _, length = HEADER.unpack(head)
    if version > FORMAT_VERSION:
        raise SnapshotError(path, f"written by a newer format version {version}; this library reads "
                                  f"version {FORMAT_VERSION}: upgrade ecs to load it")
    if version == 1:
        raise SnapshotError(path, f"written in format version 1, which this library no longer reads (it reads "
                                  f"version {FORMAT_VERSION}, which stores the entity index compactly); build "
                                  f"the world again and save it")
    if version < 1 or HEADER.size + length + 4 + len(TRAILER) > size:
        raise SnapshotError(path, "the file is truncated or its header is corrupt")
    blob = bytearray(length)
    _read_exact(fd, blob, HEADER.size)
    tail = bytearray(4 + len(TRAILER))
    _read_exact(fd, tail, size - len(tail))
    if tail[4:] != TRAILER:
        raise SnapshotError(path, "the file is truncated (no end marker)")
    if struct.unpack("<I", tail[:4])[0] != zlib.crc32(blob):
        raise SnapshotError(path, "the manifest is corrupt (checksum mismatch)")
    try:
        manifest = json.loads(blob)
    except ValueError as exc:
        raise SnapshotError(path, f"the manifest is not valid JSON: {exc}") from None
    except RecursionError:
        raise SnapshotError(path, "the manifest is malformed: its JSON is nested too deeply") from None
    except MemoryError:
        raise SnapshotError(path, f"the manifest of {length} bytes does not fit in memory") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "ecs-world":
        raise SnapshotError(path, "not an ecs world file (foreign manifest)")
    return manifest, _payload_start(length)


# ---------------------------------------------------------------- manifest checks
# Everything _fill reads is checked here, before a world exists: types and ranges of every
# field, arrays inside the payload and not overlapping (so the rows a table claims are backed by
# bytes of the file), and an estimate of the memory the world will commit, against the file's
# length. _fill then only finds what needs the arrays themselves: checksums and ids.
MAX_FRAME = 2**62
MAX_ROWS = 2**31               # rows are int32 in the entity index
MAX_ENTITIES = 2**32           # an id holds a 32-bit slot index
MAX_RETIRED = 1 << 16          # slots neither live nor free a file may claim (each took 2**31 despawns)
MAX_DIMENSIONS = 32
COMMIT_PER_FILE_BYTE = 64      # memory a load may commit: this many times the file, plus COMMIT_ALLOWANCE
COMMIT_ALLOWANCE = 256 << 20   # (a table of 1 row commits MIN_CAPACITY rows of every column)
_DTYPE = re.compile(r"[<>|][biuf][1-9][0-9]?")
_CRC = re.compile(r"[0-9a-f]{8}")


def _check_manifest(manifest: dict[str, Any], path: str, payload_start: int,
                    size: int) -> tuple[list[ComponentInfo], tuple[int, int]]:
    """The components the manifest names, resolved, and its (max_rows, max_entities); SnapshotError
    for anything _fill could not build exactly as described."""
    check = _Check(path)
    limits = check.object(manifest.get("limits"), "limits", ("max_rows", "max_entities"))
    max_rows = check.int(limits["max_rows"], "limits.max_rows", 64, MAX_ROWS)
    max_entities = check.int(limits["max_entities"], "limits.max_entities", 64, MAX_ENTITIES)
    components = _check_components(check, manifest.get("components"))
    entries: list[tuple[str, dict[str, Any]]] = []     # (what, array entry) of every payload array
    alive, commit = _check_tables(check, manifest.get("tables"), components, max_rows, entries)
    commit += _check_entities(check, manifest.get("entities"), alive, max_entities, entries)
    commit += _check_resources(check, manifest.get("resources"), entries)
    check.int(manifest.get("frame"), "frame", 0, MAX_FRAME)
    _check_layout(check, entries, payload_start, size)
    if commit > COMMIT_PER_FILE_BYTE * size + COMMIT_ALLOWANCE:
        raise check.error(f"its world would commit about {commit >> 20} MiB of memory for a file of {size} bytes "
                          f"(at most {COMMIT_PER_FILE_BYTE} times the file plus {COMMIT_ALLOWANCE >> 20} MiB)")
    return components, (max_rows, max_entities)


def _check_tables(check: _Check, tables: object, components: list[ComponentInfo], max_rows: int,
                  entries: list[tuple[str, dict[str, Any]]]) -> tuple[int, int]:
    """(rows of all tables, bytes their columns will commit). Each table has distinct components,
    a set no other table has, and lists each column of each of them exactly once."""
    alive, commit = 0, 0
    sets: set[frozenset[int]] = set()
    for t, table in enumerate(check.list(tables, "tables")):
        what = f"table {t}"
        table = check.object(table, what, ("components", "rows", "entities", "columns"))
        indices = [check.int(i, f"{what}: a component index", 0, len(components) - 1)
                   for i in check.list(table["components"], f"{what}.components")]
        if len(set(indices)) != len(indices):
            raise check.error(f"{what} lists a component twice")
        if frozenset(indices) in sets:
            raise check.error(f"{what} has the components of an earlier table")
        if len(indices) > MAX_SLOTS // 2:
            raise check.error(f"{what} has {len(indices)} components; a table holds at most {MAX_SLOTS // 2}")
        sets.add(frozenset(indices))
        if type(table["rows"]) is int and table["rows"] > max_rows:
            raise check.error(f"a table of {table['rows']} rows, max_rows is {max_rows}")
        rows = check.int(table["rows"], f"{what}.rows", 0, max_rows)
        alive += rows
        entries.append((f"{what}: the entity column", check.array(table["entities"], f"{what}.entities",
                                                                   np.dtype(np.int64), (rows,))))
        wanted = {(i, field): dtype for i in indices for field, dtype in components[i].fields.items()}
        listed: set[tuple[int, str]] = set()
        for column in check.list(table["columns"], f"{what}.columns"):
            if type(column) is not list or len(column) != 3 or type(column[1]) is not str:
                raise check.error(f"{what}.columns holds {_described(column)}; expected [component index, "
                                  f"field, array]")
            index = check.int(column[0], f"{what}: a column's component index", 0, len(components) - 1)
            name = f"{components[index].name}.{_text(column[1])}"
            if (index, column[1]) in listed:
                raise check.error(f"{what} stores column {name} twice")
            if (index, column[1]) not in wanted:
                raise check.error(f"{what} stores column {name}, which is not a field of its components")
            listed.add((index, column[1]))
            dtype = wanted[index, column[1]]
            base = dtype.base if dtype.shape else dtype
            entries.append((f"{what}: column {name}", check.array(column[2], f"{what}: column {name}", base,
                                                                  (rows, *dtype.shape))))
        for index, field in wanted:
            if (index, field) not in listed:
                raise check.error(f"{what} stores no column {components[index].name}.{field}")
        commit += _table_commit(rows, max_rows, [components[i] for i in indices])
    return alive, commit


def _check_entities(check: _Check, index: object, alive: int, max_entities: int,
                    entries: list[tuple[str, dict[str, Any]]]) -> int:
    """The id allocator: the live count is the tables' rows, the free list and its generations
    have one length, and the high water mark is bounded by them (every slot below it is live,
    free or retired). Returns the bytes the entity index will commit."""
    index = check.object(index, "entities", ("high_water", "alive", "free", "free_generation"))
    if check.int(index["alive"], "entities.alive", 0, MAX_ENTITIES) != alive:
        raise SnapshotError(check.path, f"the entity index is inconsistent: the tables hold {alive} entities, the "
                                        f"manifest says {index['alive']}")
    free = check.object(index["free"], "entities.free", ("shape",))
    nfree = check.int(free["shape"][0] if type(free["shape"]) is list and free["shape"] else None,
                      "entities.free.shape[0]", 0, MAX_ENTITIES)
    entries.append(("the free list", check.array(free, "entities.free", np.dtype(np.int64), (nfree,))))
    entries.append(("the free slots' generations", check.array(
        index["free_generation"], "entities.free_generation", np.dtype(np.uint32), (nfree,))))
    high_water = check.int(index["high_water"], "entities.high_water", -(2**63), 2**63)
    if not 1 <= high_water <= max_entities:
        raise SnapshotError(check.path, f"the entity index is inconsistent: high water mark {high_water} is "
                                        f"outside [1, max_entities={max_entities}]")
    retired = high_water - 1 - alive - nfree
    if retired > MAX_RETIRED:
        raise SnapshotError(check.path, f"the entity index is inconsistent: high water mark {high_water} leaves "
                                        f"{retired} slots neither alive nor free, more than the {MAX_RETIRED} "
                                        f"retired slots a file may hold")
    # rebuild commits 3 int32 arrays of the slots, and copies the free list (and its generations)
    return 3 * memory.page_round(4 * min(max(high_water, ENTITY_MIN_CAPACITY), max_entities)) + 48 * nfree


def _check_resources(check: _Check, resources: object, entries: list[tuple[str, dict[str, Any]]]) -> int:
    """Numbers the named type holds exactly, numeric arrays of sane shapes, identifier names.
    Returns the bytes the arrays will take (read, then copied into the arena)."""
    resources = check.object(resources, "resources", ("scalars", "arrays"))
    scalars = check.object(resources["scalars"], "resources.scalars", ())
    arrays = check.object(resources["arrays"], "resources.arrays", ())
    for name, item in scalars.items():
        check.scalar(name, item)
    commit = 0
    for name, entry in arrays.items():
        check.resource_name(name, scalars)
        shape = entry.get("shape") if type(entry) is dict else None
        dtype = check.dtype(entry.get("dtype") if type(entry) is dict else None, f"resource {name!r}")
        if type(shape) is not list or len(shape) > MAX_DIMENSIONS:
            raise check.error(f"resource {name!r} has shape {_described(shape)}; expected a list of at most "
                              f"{MAX_DIMENSIONS} sizes")
        dims = tuple(check.int(d, f"resource {name!r}: a size", 0, 2**48) for d in shape)
        if math.prod(max(d, 1) for d in dims) * dtype.itemsize > 2**48:
            raise check.error(f"resource {name!r} has shape {list(dims)}, too large for any array")
        entries.append((f"resource {name!r}", check.array(entry, f"resource {name!r}", dtype, dims)))
        commit += 2 * entry["nbytes"]
    return commit


def _check_components(check: _Check, saved: object) -> list[ComponentInfo]:
    """Resolve every component among those this program defined (schema.find_component): the
    manifest's word imports nothing. Its fields must be exactly the class's."""
    out: list[ComponentInfo] = []
    for k, entry in enumerate(check.list(saved, "components")):
        entry = check.object(entry, f"component {k}", ("name", "fields"))
        name = entry["name"]
        if type(name) is not str:
            raise check.error(f"component {k} is named {_described(name)}; expected a string")
        info = find_component(name)
        if info is None:
            raise SnapshotError(check.path, f"component {_text(name)} is not defined in this program: import "
                                            f"the module that defines it (or define it) before loading; a "
                                            f"file's word imports nothing")
        if any(other is info for other in out):
            raise check.error(f"component {_text(name)} is listed twice")
        fields = check.list(entry["fields"], f"component {_text(name)}: fields")
        if not all(type(f) is list and len(f) == 3 and type(f[0]) is str and type(f[1]) is str
                   and type(f[2]) is list and all(type(d) is int for d in f[2]) for f in fields):
            raise check.error(f"component {_text(name)} has fields {_described(fields)}; expected "
                              f"[name, dtype, shape] triples")
        stored = [(f, d, tuple(s)) for f, d, s in fields]
        have = [(f, (d.base if d.shape else d).str, tuple(d.shape)) for f, d in info.fields.items()]
        if stored != have:
            raise SnapshotError(check.path, f"component {name} has fields {have} but the file stores "
                                            f"{_text(str(stored), 400)}")
        out.append(info)
    return out


def _check_layout(check: _Check, entries: list[tuple[str, dict[str, Any]]], payload_start: int, size: int) -> None:
    """Every array lies inside the payload, and no two share a byte: so the memory that arrays
    and the rows they hold commit is bounded by the file's own length."""
    payload_end = size - 4 - len(TRAILER)
    spans = []
    for what, entry in entries:
        offset, nbytes = entry["offset"], entry["nbytes"]
        if payload_start + offset + nbytes > payload_end:
            raise SnapshotError(check.path, f"the file is truncated: {what} runs past its end")
        if nbytes:
            spans.append((offset, offset + nbytes, what))
    spans.sort()
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise check.error(f"{first} and {second} overlap in the payload")


def _table_commit(rows: int, max_rows: int, infos: list[ComponentInfo]) -> int:
    """What table.reserve(rows) commits: its first growth takes MIN_CAPACITY rows of every column
    and of the change bits of each component's two slots."""
    if not rows:
        return 0
    capacity = min(max(rows, TABLE_MIN_CAPACITY), max_rows)
    row_bytes = [8] + [dtype.itemsize for info in infos for dtype in info.fields.values()]
    words = memory.page_round(-(-capacity // 64) * 8)
    return sum(memory.page_round(capacity * b) for b in row_bytes) + 2 * len(infos) * words


def _check_address_space(path: str, max_entities: int) -> None:
    """Under RLIMIT_AS the world's arena shrinks (memory.py) and World() fails when its entity
    index does not fit, leaving the arena's descriptor open; refuse such limits up front."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return
    with open("/proc/self/statm") as statm:
        room = soft - int(statm.read().split()[0]) * memory.PAGE
    arena = memory.ARENA_BYTES_WANTED
    while arena > room and arena > memory.ARENA_BYTES_MIN:
        arena //= 2
    need = 3 * memory.page_round(4 * max_entities) + 64 * memory.PAGE
    if arena <= room and need > arena:
        raise SnapshotError(path, f"the world it describes does not fit in this process: its entity index of "
                                  f"max_entities={max_entities} slots takes {need} bytes of address space, the "
                                  f"arena RLIMIT_AS leaves has {arena}")


class _Check:
    """Type and range checks of manifest values, raising SnapshotError naming the value."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, reason: str) -> SnapshotError:
        return SnapshotError(self.path, f"the manifest is malformed: {reason}")

    def int(self, value: object, what: str, lo: int, hi: int) -> int:
        if type(value) is not int or not lo <= value <= hi:   # bool, float and huge ints too
            raise self.error(f"{what} is {_described(value)}; expected an integer in [{lo}, {hi}]")
        return value

    def list(self, value: object, what: str) -> list[Any]:
        if type(value) is not list:
            raise self.error(f"{what} is {_described(value)}; expected a list")
        return value

    def object(self, value: object, what: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if type(value) is not dict:
            raise self.error(f"{what} is {_described(value)}; expected an object")
        missing = [k for k in keys if k not in value]
        if missing:
            raise self.error(f"{what} has no {missing[0]!r}")
        return value

    def dtype(self, value: object, what: str) -> np.dtype:
        if type(value) is not str or not _DTYPE.fullmatch(value):
            raise self.error(f"{what} has dtype {_described(value)}; expected a numeric or bool dtype such as '<f4'")
        try:
            dtype = np.dtype(value)
        except TypeError:
            dtype = None
        if dtype is None or dtype.str != value:
            raise self.error(f"{what} has dtype {value!r}, which is not one numpy writes")
        return dtype

    def array(self, entry: object, what: str, dtype: np.dtype, shape: tuple[int, ...]) -> dict[str, Any]:
        """An array entry of this dtype and shape: offset, nbytes and CRCs (parsed into
        `entry["crcs"]`, one per CHUNK bytes)."""
        entry = self.object(entry, what, ("offset", "nbytes", "dtype", "shape", "crc32"))
        self.int(entry["offset"], f"{what}: offset", 0, 2**62)
        nbytes = self.int(entry["nbytes"], f"{what}: nbytes", 0, 2**62)
        if entry["dtype"] != dtype.str or entry["shape"] != list(shape) or nbytes != math.prod(shape) * dtype.itemsize:
            raise self.error(f"{what} has {nbytes} bytes of shape {_described(entry['shape'])} and dtype "
                             f"{_described(entry['dtype'])}, expected {math.prod(shape) * dtype.itemsize} of shape "
                             f"{list(shape)} and dtype {dtype.str!r}")
        crcs = entry["crc32"]
        if type(crcs) is not list or len(crcs) != _chunk_count(nbytes) or \
                not all(type(c) is str and _CRC.fullmatch(c) for c in crcs):
            raise self.error(f"{what}: an array of {nbytes} bytes has checksums {_described(crcs)}, expected "
                             f"{_chunk_count(nbytes)} of 8 hex digits")
        entry["crcs"] = [int(c, 16) for c in crcs]
        return entry

    def resource_name(self, name: str, scalars: dict[str, Any] | None = None) -> None:
        if not name.isidentifier():
            raise self.error(f"resource {_text(name)!r} is not named by an identifier")
        if scalars is not None and name in scalars:
            raise self.error(f"resource {name!r} is stored both as a number and as an array")

    def scalar(self, name: str, item: object) -> None:
        """A resource number: ["bool" | "int" | "float", value] or [numpy dtype, value] that the
        dtype holds exactly (what .item() of that numpy scalar gave)."""
        self.resource_name(name)
        if type(item) is not list or len(item) != 2 or type(item[0]) is not str:
            raise self.error(f"resource {name!r} is {_described(item)}; expected [type, value]")
        kind, value = item
        python = {"bool": bool, "int": int, "float": float}.get(kind)
        if python is not None:
            if type(value) is not python:
                raise self.error(f"resource {name!r} is {_described(value)}; expected a value of type {kind}")
            return
        dtype = self.dtype(kind, f"resource {name!r}")
        fits = type(value) is {"b": bool, "i": int, "u": int, "f": float}[dtype.kind]
        if fits:
            try:
                with np.errstate(all="raise"):
                    stored = dtype.type(value)
                fits = stored.item() == value or (dtype.kind == "f" and math.isnan(value) and np.isnan(stored))
            except (OverflowError, FloatingPointError, ValueError):
                fits = False
        if not fits:
            raise self.error(f"resource {name!r} is {_described(value)}, which is not a {dtype.str} value")


def _described(value: object, outer: bool = True) -> str:
    """A manifest value in a message, without walking into it (it may be deep or huge)."""
    if type(value) is list:
        if outer and len(value) <= 8:
            return f"[{', '.join(_described(item, outer=False) for item in value)}]"
        return f"a list of {len(value)} items"
    if type(value) is dict:
        return f"an object of {len(value)} keys"
    if type(value) is str:
        return repr(_text(value))
    if type(value) is int and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


def _text(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Reader:
    """Reads payload arrays straight into their destinations (columns in the arena), handing
    each to the checksum threads as soon as it is in; `verify()` raises on the first mismatch.

    preadv into committed pages (fallocate + MADV_POPULATE_WRITE, memory.py) is as fast as the
    alternatives that skip the zeroing: per 24 MiB 15.0 ms, against 15.0 for pwrite of the file's
    mapping into the memfd then populate, 15.8 for sendfile (copy_file_range: EXDEV)."""

    def __init__(self, fd: int, path: str, start: int, checksums: _Checksums) -> None:
        self.fd, self.path, self.start, self.checksums = fd, path, start, checksums
        self.pending: list[tuple[list[int], list[Future[int]]]] = []

    def read(self, entry: dict[str, Any], out: np.ndarray) -> None:
        if out.nbytes != entry["nbytes"] or list(out.shape) != entry["shape"]:
            raise SnapshotError(self.path, f"an array has {entry['nbytes']} bytes of shape {entry['shape']}, "
                                           f"expected {out.nbytes} of shape {list(out.shape)}")
        if _read_exact(self.fd, _bytes_of(out), self.start + entry["offset"]) != out.nbytes:
            raise SnapshotError(self.path, "the file is truncated inside an array")
        self.pending.append((entry["crcs"], self.checksums.submit(out)))

    def read_new(self, entry: dict[str, Any], dtype: np.dtype) -> np.ndarray:
        """A new array of the entry's shape and `dtype` (numeric or bool), read from the file."""
        shape = tuple(int(d) for d in entry["shape"])
        nbytes = math.prod(shape) * dtype.itemsize
        if dtype.kind not in "biuf" or min(shape, default=0) < 0 or nbytes != entry["nbytes"]:
            raise SnapshotError(self.path, f"an array has {entry['nbytes']} bytes of shape {list(shape)} and dtype "
                                           f"{dtype.str}, which do not agree")
        out = np.empty(shape, dtype)
        self.read(entry, out)
        return out

    def verify(self) -> None:
        for crcs, futures in self.pending:
            if [f.result() for f in futures] != crcs:
                raise SnapshotError(self.path, "an array is corrupt (checksum mismatch)")


def _fill(world: World, fd: int, path: str, manifest: dict[str, Any], components: list[ComponentInfo],
          start: int) -> None:
    with _Checksums() as checksums:
        reader = _Reader(fd, path, start, checksums)
        columns = []
        for saved in manifest["tables"]:
            infos = [components[i] for i in saved["components"]]
            table = world._archetypes.table_for(infos)
            n = int(saved["rows"])
            table.reserve(n)
            table.n = n
            reader.read(saved["entities"], table.entities_all[:n])
            for component_index, field, entry in saved["columns"]:
                info = components[component_index]
                reader.read(entry, table.columns_by_component[info.id][field][:n])
            table.mark_new_rows(0, n)
            columns.append((table.id, table.entities_all[:n]))
        saved_entities = manifest["entities"]
        free = reader.read_new(saved_entities["free"], np.dtype(np.int64))
        free_generation = reader.read_new(saved_entities["free_generation"], np.dtype(np.uint32))
        arrays = {name: reader.read_new(entry, np.dtype(entry["dtype"]))
                  for name, entry in manifest["resources"]["arrays"].items()}
        # the kernels check ids as they place them, so a corrupt column cannot write out of
        # bounds; a checksum mismatch is reported first, as the likelier cause
        problem = world._entities.rebuild(int(saved_entities["high_water"]), columns, free, free_generation)
        reader.verify()
    if problem is None and world._entities.alive != int(saved_entities["alive"]):
        problem = f"the tables hold {world._entities.alive} entities, the manifest says {saved_entities['alive']}"
    if problem is not None:
        raise SnapshotError(path, f"the entity index is inconsistent: {problem}")
    for name, (kind, value) in manifest["resources"]["scalars"].items():
        world.resources[name] = {"bool": bool, "int": int, "float": float}[kind](value) \
            if kind in ("bool", "int", "float") else np.dtype(kind).type(value)
    for name, array in arrays.items():
        world.resources[name] = array
    world._schedule.frame = int(manifest["frame"])
    world._structure_version += 1

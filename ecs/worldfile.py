"""The world file: save / load (in-memory snapshots for rollback are in snapshot.py).

File format, version 3 (little-endian; no pickle anywhere):

    offset 0   b"ECSWORLD"                       magic
           8   u32 format version (3), u32 flags (0)
          16   u64 manifest length M
          24   M bytes of UTF-8 JSON manifest
               zero padding to a multiple of 64
           P   payload: raw arrays, each at a 64-byte aligned offset from P
         end   u32 CRC-32 of the manifest, then b"ECSEND\\0\\0"

The manifest names every component by its stored name (`module:qualname`, schema.py) with its
fields and dtypes, and for every table its components, its row count and where its entity column
and field columns lie in the payload (offset, bytes, dtype, shape, and an XXH64 of every CHUNK =
4 MiB as 16 hex digits, kernels/checksum.py). It also holds the id allocator (high water mark,
live count, free list and the free slots' generations: the entity index follows from these and
the entity columns, and is rebuilt on load), resources (numbers inline as JSON numbers, so a NaN
scalar comes back as the plain quiet NaN, without its sign or payload; arrays in the payload,
bit for bit) and the frame counter. Version 2 differs only in its array checksums (CRC-32, 8 hex
digits, key "crc32") and is still read; version 1 stored the index itself (36 instead of 24
bytes per entity of 16 B of fields) and is refused.

A file is untrusted input. Loading checks magic, version, sizes and the whole manifest before it
builds anything (manifest.py): components resolve only among the classes this program has
defined (nothing is imported on a file's word); every value has its type and range; every table
lists each column of each of its components once; arrays lie inside the payload and share no
byte, so the rows a table claims are backed by bytes of the file; the high water mark is bounded
by the stored ids and free list; and the memory the world will commit is bounded by the file's
length. Then it reads each array straight into the new world's columns while other threads
check its chunks' checksums; a mismatch, or ids that cannot form an index, close that world again.
So a corrupt, truncated, foreign, crafted or newer file raises SnapshotError (never another
error) and changes nothing. Saving replaces the target atomically (atomicfile.py): its
temporary gets the header, a manifest with placeholder checksums and the payload while they are
computed, then the manifest again, then the trailer (a partial file has no end marker; a small
world's checksums are known first, and all of it is one write).
At 1M entities of 16 B (persist benchmark): save ~17 ms for 24 MB, most of it the write and
the fsync (the checksums run in the shadow of the write); load ~5 ms into a world without
workers, of it reading the file into the world's columns, rebuilding the entity index and the
checksums on other threads (see _Reader).

Loaded rows count as spawned: every reader's first look sees them added and changed.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import struct
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np

from ecs.kernels.checksum import xxh64

from .atomicfile import create_temporary, replace_with, save_target
from .errors import ArgumentTypeError, CapacityError, SnapshotError
from .manifest import (
    ALIGN,
    CHECKSUMS,
    CHUNK,
    FORMAT_VERSION,
    HEADER,
    MAGIC,
    OLDEST_VERSION,
    TRAILER,
    Limits,
    check_address_space,
    check_manifest,
    chunk_count,
    shorten,
)
from .resources import Resources
from .schema import ComponentInfo
from .store import Store

_ZEROS = bytes(ALIGN)
INLINE_CHECKSUM_BYTES = 1 << 18   # arrays smaller than this are checksummed inline
# A manifest takes ~512 B a table (two components) and parsing it ~20x that in Python objects: 64
# MiB holds ~130,000 tables (more than a world's address space fits at max_rows=2**20) and
# parses in ~1.3 GB at most. save refuses a longer one; load refuses a longer claim unread.
MAX_MANIFEST_BYTES = 1 << 26
THREADED_REBUILD_ROWS = 1 << 16   # a load of fewer entities rebuilds the index in its own thread
# the checksum of a chunk (a uint8 array) by format version, and its manifest key and digits
_CHECKSUM_OF = {2: zlib.crc32, 3: xxh64}
_KEY, _DIGITS = CHECKSUMS[FORMAT_VERSION]
_T = TypeVar("_T")
_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 16


# ==================================================================== save
def save(path: str | os.PathLike[str], store: Store, resources: Resources, frame: int) -> None:
    """Write a world (its store, resources and frame counter) atomically to `path` (see the module
    docstring for the format).

    One pwritev puts the header, a manifest with placeholder checksums and the payload in the
    file while other threads compute the checksums; then the manifest is written again with
    them (same length: they are fixed-width), the trailer after it, one fsync. A small world,
    whose checksums are all computed inline before anything is written, has its manifest
    encoded once and is written in one pwritev."""
    path, mode = save_target(_path_of("save", path))
    manifest, arrays, entries = _describe(store, resources, frame)
    fd, temporary = create_temporary(path, mode)
    try:
        try:
            with _Checksums(FORMAT_VERSION) as checksums:
                pending = [checksums.submit(array) for array in arrays]
                known = not checksums.threaded      # every checksum computed inline: a small world
                if known:
                    _put_checksums(entries, pending)
                blob = _manifest_bytes(manifest)
                if len(blob) > MAX_MANIFEST_BYTES:
                    raise CapacityError(f"a world file's manifest of {len(blob)} bytes ({len(store.tables)} tables, "
                                        f"{len(resources)} resources)", f"at most {MAX_MANIFEST_BYTES} bytes",
                                        "save fewer archetypes or resources (merge tag components)")
                start = _payload_start(len(blob))
                buffers: list[Any] = [HEADER.pack(MAGIC, FORMAT_VERSION, 0, len(blob)), blob,
                                      _ZEROS[: start - HEADER.size - len(blob)]]
                for array in arrays:
                    buffers += [_bytes_of(array), _ZEROS[: -array.nbytes % ALIGN]]
                end = _write_all(fd, [*buffers, _trailer(blob)] if known else buffers, 0)
                if not known:
                    _put_checksums(entries, pending)
                    final = _manifest_bytes(manifest)
                    assert len(final) == len(blob), "checksums are fixed-width"
                    _write_all(fd, [final], HEADER.size)
                    _write_all(fd, [_trailer(final)], end)
                os.fsync(fd)
        finally:
            os.close(fd)
        replace_with(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _put_checksums(entries: list[dict[str, Any]], pending: list[list[_Pending]]) -> None:
    """Each payload entry's checksums in place of its placeholders (fixed width: same length)."""
    for entry, sums in zip(entries, pending, strict=True):
        entry[_KEY] = [f"{chunk.result():0{_DIGITS}x}" for chunk in sums]


def _trailer(manifest_bytes: bytes) -> bytes:
    return struct.pack("<I", zlib.crc32(manifest_bytes)) + TRAILER


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


def _path_of(call: str, path: object) -> str:
    """`path` as a str; ArgumentTypeError for anything but a str or os.PathLike of one, or one
    holding a NUL (no file is named by it)."""
    try:
        text = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        text = None
    if not isinstance(text, str) or "\0" in text:
        raise ArgumentTypeError(f"{call}(path={path!r}): expected a file path, a str or os.PathLike without NUL bytes")
    return text


def _bytes_of(array: np.ndarray) -> np.ndarray:
    """A flat uint8 view of a C-contiguous array's bytes (table columns, index slices and payload
    arrays all are). memoryview.cast("B") refuses shapes with a 0, such as an empty vector column."""
    assert array.flags.c_contiguous, "payload arrays are C-contiguous"
    return array.reshape(-1).view(np.uint8)


class _Checksums:
    """The checksum (a format version's: XXH64, or CRC-32 in version 2) of every CHUNK bytes of
    an array, on threads: both release the GIL, so they run beside the main thread's writes
    (save) or reads (load). An array under INLINE_CHECKSUM_BYTES is checksummed at once in this
    thread, and the threads start only when a larger one comes: a small world's save + load cost
    ~5 ms of thread start-up and hand-offs otherwise. `with` waits for every pending one, so no
    thread reads an array after the block."""

    def __init__(self, version: int) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._checksum = _CHECKSUM_OF[version]

    @property
    def threaded(self) -> bool:
        """Whether a checksum was handed to a thread (else every result is known already)."""
        return self._pool is not None

    def submit(self, array: np.ndarray) -> list[_Pending]:
        data = _bytes_of(array)
        chunks = [data[at: at + CHUNK] for at in range(0, max(data.shape[0], 1), CHUNK)]
        if data.shape[0] < INLINE_CHECKSUM_BYTES:
            return [_Computed(self._checksum(chunk)) for chunk in chunks]
        if self._pool is None:
            # one per core, up to 4: on 2 cores 2 threads saved 1M entities in 22 ms, 1 in 24.5-27.5
            self._pool = ThreadPoolExecutor(max(1, min(4, len(os.sched_getaffinity(0)))))
        return [self._pool.submit(self._checksum, chunk) for chunk in chunks]

    def __enter__(self) -> _Checksums:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class _Computed(Generic[_T]):
    """A result computed inline, answering like the Future a thread's would be: a Future costs
    ~7 us to make (its Condition), 0.2 ms of a 1,000-entity save + load."""

    __slots__ = ("value",)

    def __init__(self, value: _T) -> None:
        self.value = value

    def result(self) -> _T:
        return self.value


_Pending = Future[int] | _Computed[int]


def _describe(store: Store, resources: Resources,
              frame: int) -> tuple[dict[str, Any], list[np.ndarray], list[dict[str, Any]]]:
    """The manifest (placeholder checksums), the payload arrays in payload order and their
    manifest entries."""
    arrays: list[np.ndarray] = []
    entries: list[dict[str, Any]] = []
    position = 0

    def add(array: np.ndarray) -> dict[str, Any]:
        nonlocal position
        array = np.ascontiguousarray(array).reshape(array.shape)   # ascontiguousarray makes 0-d 1-d
        entry = {"offset": position, "nbytes": array.nbytes, "dtype": array.dtype.str,
                 "shape": list(array.shape), _KEY: ["0" * _DIGITS] * chunk_count(array.nbytes)}
        arrays.append(array)
        entries.append(entry)
        position += array.nbytes + (-array.nbytes % ALIGN)
        return entry

    components: list[ComponentInfo] = []
    index_of: dict[int, int] = {}
    for table in store.tables:
        for info in table.components:
            if info.id not in index_of:
                index_of[info.id] = len(components)
                components.append(info)
    tables = []
    for table in store.tables:
        n = table.n
        tables.append({
            "components": [index_of[info.id] for info in table.components],
            "rows": n,
            "entities": add(table.entities_all[:n]),
            "columns": [[index_of[info.id], field, add(col[:n])]
                        for info in table.components for field, col in table.columns_by_component[info.id].items()],
        })
    entities = store.entities
    free = entities.free_list()
    index = {"high_water": entities.high_water, "alive": entities.alive, "free": add(free),
             "free_generation": add(entities.free_generations(free))}
    scalars, resource_arrays = {}, {}
    for name, value in resources.items():
        if isinstance(value, np.ndarray):
            resource_arrays[name] = add(value)
        else:
            scalars[name] = _scalar_entry(name, value)
    manifest = {
        "format": "ecs-world", "version": FORMAT_VERSION,
        "components": [{"name": info.qualname,
                        "fields": [[f, (d.base if d.shape else d).str, list(d.shape)]
                                   for f, d in info.fields.items()]}
                       for info in components],
        "tables": tables,
        "entities": index,
        "resources": {"scalars": scalars, "arrays": resource_arrays},
        "frame": frame,
        "limits": {"max_rows": store.max_rows, "max_entities": entities.max_entities},
    }
    return manifest, arrays, entries


def _scalar_entry(name: str, value: object) -> list[Any]:
    """[kind, value] of a resource number: "bool"/"int"/"float" for Python's (an IntEnum is an
    int), a numpy scalar by its dtype (resources refuse floats wider than 64 bits, which JSON
    could not hold exactly)."""
    if isinstance(value, np.generic):
        return [value.dtype.str, value.item()]
    if isinstance(value, int) and value.bit_length() > 64:
        try:
            str(value)   # what the manifest's JSON does with it
        except ValueError:
            raise ArgumentTypeError(f"resource {name!r} is an int of {value.bit_length()} bits, more digits than "
                                    f"Python writes as text (sys.get_int_max_str_digits()): a world file cannot "
                                    f"hold it") from None
    for python in (bool, int, float):
        if isinstance(value, python):
            return [python.__name__, python(value)]   # type: ignore[call-overload]
    raise ArgumentTypeError(f"resource {name!r} is a {type(value).__name__}, which a world file cannot hold")


# ==================================================================== load
OpenWorld = Callable[[Limits], tuple[Store, Resources]]


def load(path: str | os.PathLike[str], open_world: OpenWorld) -> int:
    """Read a saved world into the store and resources that `open_world(limits)` makes (empty, once
    the file's manifest checked out: its limits and the least that hold it, manifest.Limits);
    returns the saved frame counter. On any
    failure the caller must close what `open_world` made: it may be half-filled."""
    path = _path_of("load", path)
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
        try:
            manifest, payload_start, version = _read_manifest(fd, path, size)
        except OSError as exc:
            raise SnapshotError(path, f"cannot read it: {exc.strerror or exc}") from None
        try:  # a manifest whose checksum holds can still be foreign or crafted: check all of it first
            # st_blocks: the bytes the file holds on disk (0 where a filesystem does not say)
            stored = status.st_blocks * 512 if status.st_blocks else None
            components, limits = check_manifest(manifest, path, payload_start, size, version, stored)
        except _MALFORMED as exc:
            raise _malformed(path, exc) from None
        check_address_space(path, limits.max_entities)
        try:
            store, resources = open_world(limits)
        except (MemoryError, OSError) as exc:
            raise _does_not_fit(path, exc) from None
        try:
            return _fill(store, resources, fd, path, manifest, components, payload_start, version)
        except (MemoryError, OSError) as exc:
            raise _does_not_fit(path, exc) from None
        except _MALFORMED as exc:
            raise _malformed(path, exc) from None
    finally:
        os.close(fd)


def _does_not_fit(path: str, exc: BaseException) -> SnapshotError:
    """SnapshotError for a MemoryError or OSError while the world is made or filled."""
    if isinstance(exc, OSError) and exc.errno not in (errno.ENOMEM, errno.ENOSPC):
        return SnapshotError(path, f"cannot read it: {exc.strerror or exc}")
    return SnapshotError(path, f"the world it describes does not fit in this process "
                               f"({type(exc).__name__}: {shorten(str(exc), 200)})")


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


def _read_manifest(fd: int, path: str, size: int) -> tuple[dict[str, Any], int, int]:
    """The parsed manifest, the payload's offset and the format version."""
    head = bytearray(HEADER.size)
    got = _read_exact(fd, head, 0)
    if not got:
        raise SnapshotError(path, "the file is empty")
    if head[: min(got, 8)] != MAGIC[: got]:     # a short file that starts like ours is truncated
        raise SnapshotError(path, "not an ecs world file (bad magic)")
    if got < HEADER.size:
        raise SnapshotError(path, f"the file is truncated: {got} bytes, shorter than the header")
    _, version, flags, length = HEADER.unpack(head)
    if version > FORMAT_VERSION:
        raise SnapshotError(path, f"written by a newer format version {version}; this library reads "
                                  f"version {FORMAT_VERSION}: upgrade ecs to load it")
    if version == 1:
        raise SnapshotError(path, f"written in format version 1, which this library no longer reads (it reads "
                                  f"versions {OLDEST_VERSION}-{FORMAT_VERSION}, which store the entity index "
                                  f"compactly); build the world again and save it")
    if version < 1 or HEADER.size + length + 4 + len(TRAILER) > size:
        raise SnapshotError(path, "the file is truncated or its header is corrupt")
    if flags:
        raise SnapshotError(path, f"its header has flags {flags:#x}, which no format version this library reads "
                                  f"sets: written by a newer or a foreign writer")
    if length > MAX_MANIFEST_BYTES:
        raise SnapshotError(path, f"its header claims a manifest of {length} bytes; a manifest this library "
                                  f"writes takes at most {MAX_MANIFEST_BYTES}")
    blob = bytearray(length)
    _read_exact(fd, blob, HEADER.size)
    tail = bytearray(4 + len(TRAILER))
    _read_exact(fd, tail, size - len(tail))
    if tail[4:] != TRAILER:
        raise SnapshotError(path, "the file is truncated (no end marker)")
    if struct.unpack("<I", tail[:4])[0] != zlib.crc32(blob):
        raise SnapshotError(path, "the manifest is corrupt (checksum mismatch)")
    try:
        manifest = json.loads(blob.decode("utf-8"))   # decoded first: json.loads(bytes) also takes UTF-16/32
    except UnicodeDecodeError as exc:
        raise SnapshotError(path, f"the manifest is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise SnapshotError(path, f"the manifest is not valid JSON: {exc}") from None
    except RecursionError:
        raise SnapshotError(path, "the manifest is malformed: its JSON is nested too deeply") from None
    except MemoryError:
        raise SnapshotError(path, f"the manifest of {length} bytes does not fit in memory") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "ecs-world":
        raise SnapshotError(path, "not an ecs world file (foreign manifest)")
    if manifest.get("version") != version:
        raise SnapshotError(path, f"its manifest says format version {shorten(repr(manifest.get('version')))}, "
                                  f"its header {version}")
    return manifest, _payload_start(length), version


# ---------------------------------------------------------------- manifest checks
# Everything _fill reads is checked here, before a world exists: types and ranges of every
# field, arrays inside the payload and not overlapping (so the rows a table claims are backed by
# bytes of the file), and an estimate of the memory the world will commit, against the file's
# length. _fill then only finds what needs the arrays themselves: checksums and ids.


class _Reader:
    """Reads payload arrays straight into their destinations (columns in the arena), handing
    each to the checksum threads as soon as it is in; `verify()` raises on the first mismatch.

    A world without workers reads into private memory whose huge pages fault in as preadv writes
    them (memory.py): 1M entities (24 MB file, 36 MB world) load in ~4-4.5 ms, 1.3x reading the
    file into a fresh private arena and hashing it on one thread (3.5 ms; with zlib's CRC-32 of
    version 2 files, 5.7). Into a memfd (a world with workers), preadv into committed pages
    (fallocate + MADV_POPULATE_WRITE) is as fast as the alternatives that skip the zeroing: per
    24 MiB 15.0 ms, against 15.0 for pwrite of the file's mapping into the memfd then populate,
    15.8 for sendfile (copy_file_range: EXDEV)."""

    def __init__(self, fd: int, path: str, start: int, checksums: _Checksums) -> None:
        self.fd, self.path, self.start, self.checksums = fd, path, start, checksums
        self.pending: list[tuple[list[int], list[_Pending]]] = []

    def read(self, entry: dict[str, Any], out: np.ndarray) -> None:
        if out.nbytes != entry["nbytes"] or list(out.shape) != entry["shape"]:
            raise SnapshotError(self.path, f"an array has {entry['nbytes']} bytes of shape {entry['shape']}, "
                                           f"expected {out.nbytes} of shape {list(out.shape)}")
        if _read_exact(self.fd, _bytes_of(out), self.start + entry["offset"]) != out.nbytes:
            raise SnapshotError(self.path, "the file is truncated inside an array")
        self.pending.append((entry["sums"], self.checksums.submit(out)))

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
        for sums, futures in self.pending:
            if [f.result() for f in futures] != sums:
                raise SnapshotError(self.path, "an array is corrupt (checksum mismatch)")


def _check_bools(path: str, arrays: list[tuple[str, np.ndarray]]) -> None:
    """SnapshotError for a bool array holding a byte other than 0 or 1 (numpy and numba read it
    as True, but it compares unequal to True bit for bit: a value no call of this library
    writes). O(bool bytes)."""
    for what, array in arrays:
        if array.dtype == np.bool_ and array.size:
            raw = array.reshape(-1).view(np.uint8)
            if raw.max() > 1:
                at = int(np.argmax(raw > 1))
                raise SnapshotError(path, f"{what} holds byte {int(raw[at])} at element {at}; a bool is 0 or 1")


def _fill(store: Store, resources: Resources, fd: int, path: str, manifest: dict[str, Any],
          components: list[ComponentInfo], start: int, version: int) -> int:
    """Read the arrays into the store's new tables and the resources; the entity index is rebuilt
    on another thread (for THREADED_REBUILD_ROWS rows or more) while this one reads the fields:
    at 1M entities 1.5 ms of the load's ~5 ms."""
    with _Checksums(version) as checksums, ThreadPoolExecutor(1) as rebuilder:
        reader = _Reader(fd, path, start, checksums)
        tables, columns = [], []
        for saved in manifest["tables"]:
            n = int(saved["rows"])
            table = store.load_table(tuple(components[i] for i in saved["components"]), n)
            rows = slice(table.n - n, table.n)
            reader.read(saved["entities"], table.entities_all[rows])
            tables.append((saved, table, rows))
            columns.append((table.id, table.entities_all[: table.n]))
        saved_entities = manifest["entities"]
        free = reader.read_new(saved_entities["free"], np.dtype(np.int64))
        free_generation = reader.read_new(saved_entities["free_generation"], np.dtype(np.uint32))
        # the kernels check ids as they place them, so a corrupt column cannot write out of
        # bounds; a checksum mismatch is reported first, as the likelier cause
        high_water = int(saved_entities["high_water"])
        index: Future[str | None] | _Computed[str | None]
        if int(saved_entities["alive"]) >= THREADED_REBUILD_ROWS:
            index = rebuilder.submit(store.rebuild_index, high_water, columns, free, free_generation)
        else:
            index = _Computed(store.rebuild_index(high_water, columns, free, free_generation))
        for saved, table, rows in tables:
            for component_index, field, entry in saved["columns"]:
                reader.read(entry, table.columns_by_component[components[component_index].id][field][rows])
        arrays = {name: reader.read_new(entry, np.dtype(entry["dtype"]))
                  for name, entry in manifest["resources"]["arrays"].items()}
        problem = index.result()
        reader.verify()
    _check_bools(path, [(f"{components[c].name}.{field}", table.columns_by_component[components[c].id][field][rows])
                        for saved, table, rows in tables for c, field, _ in saved["columns"]]
                 + [(f"resource {name!r}", array) for name, array in arrays.items()])
    if problem is None and len(store) != int(saved_entities["alive"]):
        problem = f"the tables hold {len(store)} entities, the manifest says {saved_entities['alive']}"
    if problem is not None:
        raise SnapshotError(path, f"the entity index is inconsistent: {problem}")
    for name, (kind, value) in manifest["resources"]["scalars"].items():
        resources[name] = {"bool": bool, "int": int, "float": float}[kind](value) \
            if kind in ("bool", "int", "float") else np.dtype(kind).type(value)
    for name, array in arrays.items():
        resources[name] = array
    return int(manifest["frame"])

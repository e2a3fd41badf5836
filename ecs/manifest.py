"""The world file's manifest, checked before anything is built (the file format: worldfile.py).

A file is untrusted input: its checksums (XXH64 per chunk; CRC-32 in version 2 files) detect
accidents, not edits. `check_manifest` validates every field of a parsed manifest (types,
ranges, JSON numbers that are bools, floats or huge), resolves components only among the
classes this program has already defined (never importing on the file's word), checks that
every table lists each column of each of its components exactly once and that every array lies
inside the payload without overlapping another, and bounds what loading would commit by the
file's own size and its stored ids. It raises SnapshotError naming
what is wrong; a manifest it accepts can be loaded without committing more than
COMMIT_PER_FILE_BYTE times the file plus COMMIT_ALLOWANCE.
"""

from __future__ import annotations

import itertools
import math
import re
import resource
import struct
from typing import Any, NamedTuple

import numpy as np

from . import memory
from .entity import MAX_ENTITIES, MAX_ROWS, slots_for
from .entity import MIN_CAPACITY as ENTITY_MIN_CAPACITY
from .errors import SnapshotError
from .schema import ComponentInfo, find_component
from .table import MAX_COMPONENTS
from .table import MIN_CAPACITY as TABLE_MIN_CAPACITY

MAGIC = b"ECSWORLD"
TRAILER = b"ECSEND\0\0"
FORMAT_VERSION = 3
OLDEST_VERSION = 2             # the oldest format still read
HEADER = struct.Struct("<8sIIQ")
ALIGN = 64
# bytes per checksum: at 1M entities 1, 4 and 16 MiB timed alike (save 22-27 ms, load + close 29-33 ms)
CHUNK = 1 << 22
# the checksum of each CHUNK of a payload array, by format version: (manifest key, hex digits).
# Version 3 has XXH64 (kernels/checksum.py, 3.3x faster than zlib's CRC-32), version 2 CRC-32.
CHECKSUMS = {2: ("crc32", 8), 3: ("xxh64", 16)}


def chunk_count(nbytes: int) -> int:
    return max(1, -(-nbytes // CHUNK))


MAX_FRAME = 2**62                 # the frame counter is an int64: room for 2**62 more steps before it overflows
MAX_RETIRED = 1 << 16          # slots neither live nor free a file may claim (each took 2**31 despawns)
MAX_DIMENSIONS = 32
COMMIT_PER_FILE_BYTE = 64      # memory a load may commit: this many times the file, plus COMMIT_ALLOWANCE
COMMIT_ALLOWANCE = 256 << 20   # (a table of 1 row commits MIN_CAPACITY rows of every column)
TABLE_OVERHEAD = 16 << 10      # what a table takes beyond its columns, counted in that bound
RESOURCE_OVERHEAD = 4 << 10    # what a resource array takes beyond its pages (its Python objects: ~2 KiB)
_DTYPE = re.compile(r"[<>|][biuf][1-9][0-9]?")


class Limits(NamedTuple):
    """A file's world limits (World(max_rows=, max_entities=) when it was saved) and the least
    ones that hold its contents (its largest table's rows; the id slots it has handed out)."""

    max_rows: int
    max_entities: int
    rows_needed: int
    entities_needed: int


def check_manifest(manifest: dict[str, Any], path: str, payload_start: int, size: int, version: int,
                   stored: int | None = None) -> tuple[list[ComponentInfo], Limits]:
    """The components the manifest of a file of this format `version` names, resolved, and its
    limits; SnapshotError for anything _fill could not build exactly as described. Each array
    entry gets `entry["sums"]`: its chunks' checksums (CHECKSUMS[version]) as ints. `stored`:
    the bytes the file occupies on disk, where fewer than its `size` (a sparse file: its holes
    cost nothing, so the memory a load may commit is bounded by what it stores)."""
    check = _Check(path, version)
    limits = check.mapping(manifest.get("limits"), "limits", ("max_rows", "max_entities"))
    max_rows = check.integer(limits["max_rows"], "limits.max_rows", 64, MAX_ROWS)
    max_entities = check.integer(limits["max_entities"], "limits.max_entities", 64, MAX_ENTITIES)
    components = _check_components(check, manifest.get("components"))
    entries: list[tuple[str, dict[str, Any]]] = []     # (what, array entry) of every payload array
    alive, commit = _check_tables(check, manifest.get("tables"), components, max_rows, entries)
    commit += _check_entities(check, manifest.get("entities"), alive, max_entities, entries)
    commit += _check_resources(check, manifest.get("resources"), entries)
    check.integer(manifest.get("frame"), "frame", 0, MAX_FRAME)
    _check_layout(check, entries, payload_start, size)
    backed = size if stored is None else min(size, stored)
    if commit > COMMIT_PER_FILE_BYTE * backed + COMMIT_ALLOWANCE:
        bound = f"at most {COMMIT_PER_FILE_BYTE} times the file plus {COMMIT_ALLOWANCE >> 20} MiB"
        if backed == size:
            raise check.error(f"its world would commit about {commit >> 20} MiB of memory for a file of {size} "
                              f"bytes ({bound})")
        raise SnapshotError(path, f"its world would commit about {commit >> 20} MiB of memory for a file of {size} "
                                  f"bytes, of which {backed} are stored on disk ({bound} stored: a sparse file's "
                                  f"holes cost nothing to claim); a sparse copy of a saved world loads once "
                                  f"copied without holes (cp --sparse=never)")
    rows_needed = max((table["rows"] for table in manifest["tables"]), default=0)
    return components, Limits(max_rows, max_entities, rows_needed, manifest["entities"]["high_water"] - 1)


def _check_tables(check: _Check, tables: object, components: list[ComponentInfo], max_rows: int,
                  entries: list[tuple[str, dict[str, Any]]]) -> tuple[int, int]:
    """(rows of all tables, bytes their columns will commit). Each table has distinct components,
    a set no other table has, and lists each column of each of them exactly once."""
    alive, commit = 0, 0
    sets: set[frozenset[int]] = set()
    for t, table in enumerate(check.list(tables, "tables")):
        what = f"table {t}"
        table = check.mapping(table, what, ("components", "rows", "entities", "columns"))
        indices = [check.integer(i, f"{what}: a component index", 0, len(components) - 1)
                   for i in check.list(table["components"], f"{what}.components")]
        if len(set(indices)) != len(indices):
            raise check.error(f"{what} lists a component twice")
        if frozenset(indices) in sets:
            raise check.error(f"{what} has the components of an earlier table")
        if len(indices) > MAX_COMPONENTS:
            raise check.error(f"{what} has {len(indices)} components; a table holds at most {MAX_COMPONENTS}")
        sets.add(frozenset(indices))
        if type(table["rows"]) is int and table["rows"] > max_rows:
            raise check.error(f"a table of {table['rows']} rows, max_rows is {max_rows}")
        rows = check.integer(table["rows"], f"{what}.rows", 0, max_rows)
        alive += rows
        entries.append((f"{what}: the entity column", check.array(table["entities"], f"{what}.entities",
                                                                   np.dtype(np.int64), (rows,))))
        wanted = {(i, field): dtype for i in indices for field, dtype in components[i].fields.items()}
        listed: set[tuple[int, str]] = set()
        for column in check.list(table["columns"], f"{what}.columns"):
            if type(column) is not list or len(column) != 3 or type(column[1]) is not str:
                raise check.error(f"{what}.columns holds {_described(column)}; expected [component index, "
                                  f"field, array]")
            index = check.integer(column[0], f"{what}: a column's component index", 0, len(components) - 1)
            name = f"{components[index].name}.{shorten(column[1])}"
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
    index = check.mapping(index, "entities", ("high_water", "alive", "free", "free_generation"))
    if check.integer(index["alive"], "entities.alive", 0, MAX_ENTITIES) != alive:
        raise SnapshotError(check.path, f"the entity index is inconsistent: the tables hold {alive} entities, the "
                                        f"manifest says {index['alive']}")
    free = check.mapping(index["free"], "entities.free", ("shape",))
    nfree = check.integer(free["shape"][0] if type(free["shape"]) is list and free["shape"] else None,
                      "entities.free.shape[0]", 0, MAX_ENTITIES)
    entries.append(("the free list", check.array(free, "entities.free", np.dtype(np.int64), (nfree,))))
    entries.append(("the free slots' generations", check.array(
        index["free_generation"], "entities.free_generation", np.dtype(np.uint32), (nfree,))))
    high_water = check.integer(index["high_water"], "entities.high_water", -(2**63), 2**63)
    if not 1 <= high_water <= slots_for(max_entities):
        raise SnapshotError(check.path, f"the entity index is inconsistent: high water mark {high_water} is "
                                        f"outside [1, {slots_for(max_entities)}] (max_entities={max_entities})")
    retired = high_water - 1 - alive - nfree
    if retired > MAX_RETIRED:
        raise SnapshotError(check.path, f"the entity index is inconsistent: high water mark {high_water} leaves "
                                        f"{retired} slots neither alive nor free, more than the {MAX_RETIRED} "
                                        f"retired slots a file may hold")
    # rebuild commits 3 int32 arrays of the slots, and copies the free list (and its generations)
    return 3 * memory.page_round(4 * min(max(high_water, ENTITY_MIN_CAPACITY), slots_for(max_entities))) + 48 * nfree


def _check_resources(check: _Check, resources: object, entries: list[tuple[str, dict[str, Any]]]) -> int:
    """Numbers the named type holds exactly, numeric arrays of sane shapes, identifier names.
    Returns the bytes the arrays will take: read, then copied into whole pages of the arena."""
    resources = check.mapping(resources, "resources", ("scalars", "arrays"))
    scalars = check.mapping(resources["scalars"], "resources.scalars", ())
    arrays = check.mapping(resources["arrays"], "resources.arrays", ())
    for name, item in scalars.items():
        check.scalar(name, item)
    commit = 0
    for name, entry in arrays.items():
        check.resource_name(name, scalars)
        shape = entry.get("shape") if type(entry) is dict else None
        dtype = check.dtype(entry.get("dtype") if type(entry) is dict else None, f"resource {name!r}")
        check.resource_dtype(name, dtype)
        if type(shape) is not list or len(shape) > MAX_DIMENSIONS:
            raise check.error(f"resource {name!r} has shape {_described(shape)}; expected a list of at most "
                              f"{MAX_DIMENSIONS} sizes")
        dims = tuple(check.integer(d, f"resource {name!r}: a size", 0, 2**48) for d in shape)
        if math.prod(max(d, 1) for d in dims) * dtype.itemsize > 2**48:
            raise check.error(f"resource {name!r} has shape {list(dims)}, too large for any array")
        entries.append((f"resource {name!r}", check.array(entry, f"resource {name!r}", dtype, dims)))
        commit += entry["nbytes"] + memory.page_round(max(entry["nbytes"], 1)) + RESOURCE_OVERHEAD
    return commit


def _check_components(check: _Check, saved: object) -> list[ComponentInfo]:
    """Resolve every component among those this program defined (schema.find_component): the
    manifest's word imports nothing. Its fields must be exactly the class's."""
    out: list[ComponentInfo] = []
    for k, entry in enumerate(check.list(saved, "components")):
        entry = check.mapping(entry, f"component {k}", ("name", "fields"))
        name = entry["name"]
        if type(name) is not str:
            raise check.error(f"component {k} is named {_described(name)}; expected a string")
        info = find_component(name)
        if info is None:
            raise SnapshotError(check.path, f"component {shorten(name)} is not defined in this program: import "
                                            f"the module that defines it (or define it) before loading; a "
                                            f"file's word imports nothing")
        if any(other is info for other in out):
            raise check.error(f"component {shorten(name)} is listed twice")
        fields = check.list(entry["fields"], f"component {shorten(name)}: fields")
        if not all(type(f) is list and len(f) == 3 and type(f[0]) is str and type(f[1]) is str
                   and type(f[2]) is list and all(type(d) is int for d in f[2]) for f in fields):
            raise check.error(f"component {shorten(name)} has fields {_described(fields)}; expected "
                              f"[name, dtype, shape] triples")
        stored = [(f, d, tuple(s)) for f, d, s in fields]
        have = [(f, (d.base if d.shape else d).str, tuple(d.shape)) for f, d in info.fields.items()]
        if stored != have:
            raise SnapshotError(check.path, f"component {name} has fields {have} but the file stores "
                                            f"{shorten(str(stored), 400)}")
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
    """What a table of `rows` rows takes: TABLE_OVERHEAD for the table itself (its Python objects,
    ~12-50 KB measured: 16,000 empty tables took 189 MiB), and what table.reserve(rows) commits:
    its first growth takes MIN_CAPACITY rows of every column and of the change bits of each
    component's two slots."""
    if not rows:
        return TABLE_OVERHEAD
    capacity = min(max(rows, TABLE_MIN_CAPACITY), max_rows)
    row_bytes = [8] + [dtype.itemsize for info in infos for dtype in info.fields.values()]
    words = memory.page_round(-(-capacity // 64) * 8)
    return TABLE_OVERHEAD + sum(memory.page_round(capacity * b) for b in row_bytes) + 2 * len(infos) * words


def check_address_space(path: str, max_entities: int) -> None:
    """Under RLIMIT_AS the world's arena shrinks (memory.py) and World() fails when its entity
    index does not fit, leaving the arena's descriptor open; refuse such limits up front."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return
    memory.release_spare()   # kept from before the limit, it is not reused under it
    with open("/proc/self/statm") as statm:
        room = soft - int(statm.read().split()[0]) * memory.PAGE
    arena = memory.ARENA_BYTES_WANTED
    while arena > room and arena > memory.ARENA_BYTES_MIN:
        arena //= 2
    need = 3 * memory.page_round(4 * slots_for(max_entities)) + 64 * memory.PAGE
    if arena <= room and need > arena:
        raise SnapshotError(path, f"the world it describes does not fit in this process: its entity index of "
                                  f"max_entities={max_entities} slots takes {need} bytes of address space, the "
                                  f"arena RLIMIT_AS leaves has {arena}")


class _Check:
    """Type and range checks of manifest values, raising SnapshotError naming the value."""

    def __init__(self, path: str, version: int) -> None:
        self.path = path
        self.checksum_key, digits = CHECKSUMS[version]
        self.checksum_pattern = re.compile(f"[0-9a-f]{{{digits}}}")
        self.checksum_digits = digits

    def error(self, reason: str) -> SnapshotError:
        return SnapshotError(self.path, f"the manifest is malformed: {reason}")

    def integer(self, value: object, what: str, lo: int, hi: int) -> int:
        if type(value) is not int or not lo <= value <= hi:   # bool, float and huge ints too
            raise self.error(f"{what} is {_described(value)}; expected an integer in [{lo}, {hi}]")
        return value

    def list(self, value: object, what: str) -> list[Any]:
        if type(value) is not list:
            raise self.error(f"{what} is {_described(value)}; expected a list")
        return value

    def mapping(self, value: object, what: str, keys: tuple[str, ...]) -> dict[str, Any]:
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
        if dtype.byteorder == ">":
            raise self.error(f"{what} has dtype {value!r}: big-endian, and a world file is little-endian")
        return dtype

    def array(self, entry: object, what: str, dtype: np.dtype, shape: tuple[int, ...]) -> dict[str, Any]:
        """An array entry of this dtype and shape: offset, nbytes and checksums (parsed into
        `entry["sums"]`, one per CHUNK bytes)."""
        entry = self.mapping(entry, what, ("offset", "nbytes", "dtype", "shape", self.checksum_key))
        self.integer(entry["offset"], f"{what}: offset", 0, 2**62)
        nbytes = self.integer(entry["nbytes"], f"{what}: nbytes", 0, 2**62)
        exact_shape = type(entry["shape"]) is list and all(type(d) is int for d in entry["shape"])  # not 42.0, True
        if entry["dtype"] != dtype.str or not exact_shape or entry["shape"] != list(shape) \
                or nbytes != math.prod(shape) * dtype.itemsize:
            raise self.error(f"{what} has {nbytes} bytes of shape {_described(entry['shape'])} and dtype "
                             f"{_described(entry['dtype'])}, expected {math.prod(shape) * dtype.itemsize} of shape "
                             f"{list(shape)} and dtype {dtype.str!r}")
        sums = entry[self.checksum_key]
        if type(sums) is not list or len(sums) != chunk_count(nbytes) or \
                not all(type(c) is str and self.checksum_pattern.fullmatch(c) for c in sums):
            raise self.error(f"{what}: an array of {nbytes} bytes has checksums {_described(sums)}, expected "
                             f"{chunk_count(nbytes)} of {self.checksum_digits} hex digits")
        entry["sums"] = [int(c, 16) for c in sums]
        return entry

    def resource_dtype(self, name: str, dtype: np.dtype) -> None:
        """A dtype a resource may have (Resources refuses the others): no float16 (numba compiles
        no kernel for it), no float wider than 64 bits (save refuses them: JSON holds doubles)."""
        if dtype.kind == "f" and dtype.itemsize not in (4, 8):
            raise self.error(f"resource {name!r} has dtype {dtype.str}; a resource's floats are float32 or float64")

    def resource_name(self, name: str, scalars: dict[str, Any] | None = None) -> None:
        if not name.isidentifier():
            raise self.error(f"resource {shorten(name)!r} is not named by an identifier")
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
        self.resource_dtype(name, dtype)
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
        return repr(shorten(value))
    if type(value) is int and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


def shorten(text: str, limit: int = 80) -> str:
    """`text` cut to `limit` characters, lone surrogates (a file's JSON may hold them) escaped,
    so that every message can be printed."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."

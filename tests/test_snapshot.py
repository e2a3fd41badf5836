"""ecs/worldfile.py and ecs/snapshot.py: save / load round trips, every way a file can be bad, a
kill during save, and in-memory snapshot / restore (values, structure, resources, frame counter,
change marks, the fast path when the structure is unchanged, shared read-only structure)."""

from __future__ import annotations

import enum
import gc
import json
import os
import pathlib
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import types
import weakref
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import xxhash
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import ecs
import ecs.manifest
from ecs import SnapshotError
from ecs.worldfile import CHUNK
from tests import introspect
from tests.command_systems import Burning, Heat, Life, Spot, Template, Wet, despawn_odd, spawn_children
from tests.snapshot_systems import Axes, Body, Count, Flags, Hidden, Paint, copy_prefab, count_moves, drift

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = struct.Struct("<8sIIQ")


# ---------------------------------------------------------------- a world with a bit of everything
def build(world: ecs.World) -> dict[str, list[int]]:
    """Several archetypes (vector, 2-D vector and bool fields, tags only), despawned slots (some
    reused, so generations > 0), archetype moves, NaN/inf/-0.0, resources of every kind, and a
    frame counter past 0. Returns the ids that are alive and those that were despawned."""
    rng = np.random.default_rng(7)
    n = 500
    a = world.spawn_batch(n, Body(x=rng.random(n), y=rng.normal(size=n), spin=rng.normal(size=n)),
                          Paint(rgb=rng.integers(0, 256, (n, 3)), alpha=rng.integers(0, 65536, n)),
                          Flags(visible=rng.random(n) < 0.5, layer=rng.integers(-128, 128, n)), Count())
    b = world.spawn_batch(200, Body(x=rng.random(200), y=0.0), Axes(basis=rng.normal(size=(200, 2, 3))),
                          Hidden())
    world.spawn_batch(50, Hidden())                                       # a table without columns
    odd = world.spawn(Body(x=np.nan, y=-0.0, spin=np.inf), Flags(visible=True, layer=-128))
    dead = [*a[::7].tolist(), int(b[3])]
    world.despawn_batch(a[::7])
    world.despawn(int(b[3]))
    extra = world.spawn_batch(30, Count(n=np.arange(30)))                 # reuses freed slots
    world.despawn_batch(extra[::2])
    dead += extra[::2].tolist()
    dead.append(world.spawn(Paint(rgb=[1, 2, 3])))                       # an empty table with a
    world.despawn(dead[-1])                                               # vector column
    for e in a[[1, 3, 9, 17, 25, 38]].tolist():
        world.add(e, Hidden())                                            # archetype moves
    world.remove(int(a[2]), Paint)
    world.resources["gravity"] = -9.81
    world.resources["lives"] = 3
    world.resources["paused"] = True
    world.resources["scale"] = np.float32(0.1)
    world.resources["offset"] = np.int16(-3)
    world.resources["not_a_number"] = float("nan")
    world.resources["grid"] = np.arange(24, dtype=np.int32).reshape(4, 6)
    world.resources["mask"] = np.array([True, False, True])
    world.resources["origin"] = np.array(-5, np.int16)          # 0-d
    world.resources["nothing"] = np.zeros((0, 3), np.float32)   # no elements
    world.resources["huge"] = 2**70
    world.resources["tally"] = np.zeros(1, np.int64)
    world.add_system(drift)
    world.add_system(count_moves)
    world.run(3, dt=0.25)
    alive = [int(e) for e in (*a.tolist(), *b.tolist(), odd, *extra.tolist()) if e not in set(dead)]
    return {"alive": alive, "dead": dead}


def state(world: ecs.World) -> dict:
    """Every id, archetype and column byte (of non-empty tables: a table made after a snapshot
    stays, empty, after the restore); the entity index (slot 0 is never used); resources with
    their types; the frame counter."""
    tables = {}
    for table in introspect.tables(world):
        if table.n == 0:
            continue
        names = tuple(sorted(info.name for info in table.components))
        columns = {f"{info.name}.{field}": table.column(info, field).tobytes()
                   for info in table.components for field in info.fields}
        tables[table.id] = (names, table.entities.tobytes(), columns)
    entities = introspect.entity_index(world)
    high = entities.high_water
    resources = {name: (type(v).__name__, v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray)
                 else (type(v).__name__, repr(v)) for name, v in world.resources.items()}
    return {"len": len(world), "tables": tables, "generation": entities.generation[1:high].tobytes(),
            "table_of": entities.table_of[1:high].tobytes(), "row_of": entities.row_of[1:high].tobytes(),
            "free": entities.free_list().tobytes(), "resources": resources, "frame": introspect.frame(world)}


@pytest.fixture
def built(tmp_path) -> Iterator[tuple[ecs.World, dict[str, list[int]], pathlib.Path]]:
    with ecs.World() as world:
        ids = build(world)
        path = tmp_path / "world.ecs"
        world.save(path)
        yield world, ids, path


# ---------------------------------------------------------------- round trips
def test_load_gives_back_every_id_generation_archetype_value_resource_and_the_frame(built) -> None:
    world, ids, path = built
    with ecs.World.load(path) as loaded:
        assert state(loaded) == state(world)
        assert introspect.frame(loaded) == 3
        for e in ids["alive"]:
            assert loaded.is_alive(e)
            for c in (Body, Paint, Flags, Axes, Count, Hidden):
                assert loaded.has(e, c) == world.has(e, c)
        for e in ids["dead"]:
            assert not loaded.is_alive(e)
        odd = ids["alive"][-16]                        # the NaN / -0.0 / inf entity
        body = loaded.get(odd, Body)
        assert np.isnan(body.x) and np.signbit(body.y) and body.spin == np.inf
        assert loaded.get(odd, Flags).visible.dtype == np.bool_ and loaded.get(odd, Flags).layer == -128
        axes = [e for e in ids["alive"] if world.has(e, Axes)][5]
        assert loaded.get(axes, Axes).basis.tolist() == world.get(axes, Axes).basis.tolist()
        assert type(loaded.resources["lives"]) is int and type(loaded.resources["paused"]) is bool
        assert type(loaded.resources["gravity"]) is float and np.isnan(loaded.resources["not_a_number"])
        assert loaded.resources["scale"].dtype == np.float32 and loaded.resources["offset"] == -3
        assert loaded.resources["grid"].tolist() == np.arange(24).reshape(4, 6).tolist()
        assert loaded.resources["origin"].shape == () and loaded.resources["nothing"].shape == (0, 3)


def test_the_next_ids_are_the_same_in_the_original_and_the_loaded_world(built) -> None:
    world, ids, path = built
    with ecs.World.load(path) as loaded:
        free = introspect.entity_index(world).free_list().shape[0]
        assert free > 50
        spawned = [[w.spawn(Count(n=1)) for _ in range(3)] + w.spawn_batch(free + 5, Body(x=0, y=0)).tolist()
                   for w in (world, loaded)]
        assert spawned[0] == spawned[1]
        assert not set(spawned[1]) & set(ids["dead"])                   # dead ids stay dead
        assert state(loaded) == state(world)


def test_loaded_rows_count_as_new_for_every_reader(built) -> None:
    world, ids, path = built
    with ecs.World.load(path) as loaded:
        assert sorted(loaded.query(Body, added=[Body]).entities().tolist()) == \
            sorted(world.query(Body).entities().tolist())
        assert loaded.query(Hidden, changed=[Hidden]).count() == world.query(Hidden).count()


def test_a_world_loaded_with_workers_steps_like_one_loaded_without(built) -> None:
    world, ids, path = built
    results = []
    for workers in (0, 2):
        with ecs.World.load(path, workers=workers) as loaded:
            assert loaded.workers == workers
            loaded.add_system(drift)
            loaded.add_system(count_moves)
            loaded.run(2, dt=0.5)
            loaded.step(dt=0.5)
            # count_moves is a new reader: its first look saw every loaded row as changed, then
            # the rows drift wrote
            tally = world.resources["tally"][0]
            assert loaded.resources["tally"][0] == tally + world.query(Body, Count).count() \
                + 2 * world.query(Body, Count, without=[Hidden]).count()
            results.append(state(loaded))
    assert results[0] == results[1]
    assert results[0]["frame"] == 6
    assert results[0]["tables"] != state(world)["tables"]           # the systems did run


def test_an_empty_world_round_trips(tmp_path) -> None:
    with ecs.World() as world:
        world.save(tmp_path / "empty.ecs")
        with ecs.World.load(tmp_path / "empty.ecs") as loaded:
            assert len(loaded) == 0 and state(loaded) == state(world)
            assert loaded.spawn(Count()) == world.spawn(Count())


def test_save_replaces_the_file_and_leaves_no_temporary_file(built) -> None:
    world, ids, path = built
    world.despawn(ids["alive"][0])
    world.save(path)
    assert os.listdir(path.parent) == [path.name]
    with ecs.World.load(path) as loaded:
        assert len(loaded) == len(world) and not loaded.is_alive(ids["alive"][0])
    with pytest.raises(FileNotFoundError, match=r"save\('.*/no such directory/x.ecs'\): cannot create a file "
                                                r"in '.*/no such directory': No such file"):
        world.save(path.parent / "no such directory" / "x.ecs")
    assert os.listdir(path.parent) == [path.name]


def test_a_save_into_a_directory_it_cannot_write_names_the_target(built, monkeypatch) -> None:
    world, _, path = built
    real_open = os.open

    def refused(name, flags, *args):   # what a read-only directory does to anyone but root
        if ".tmp-" in os.fspath(name):
            raise PermissionError(13, "Permission denied", name)
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", refused)
    with pytest.raises(PermissionError, match=r"save\('.*/world.ecs'\): cannot create a file in .*: Permission denied"):
        world.save(path)
    monkeypatch.undo()
    assert os.listdir(path.parent) == [path.name]


def test_loading_a_missing_file_is_a_snapshot_error(tmp_path) -> None:
    with pytest.raises(SnapshotError, match="cannot load .*missing.ecs'.*cannot open it: No such file"):
        ecs.World.load(tmp_path / "missing.ecs")
    with pytest.raises(SnapshotError, match="cannot open it"):
        ecs.World.load(tmp_path)


# ---------------------------------------------------------------- bad files
class Parsed:
    """A saved file split into its parts, to corrupt one and put it back together."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        _, self.version, self.flags, length = HEADER.unpack_from(data)
        self.manifest = json.loads(data[HEADER.size: HEADER.size + length])
        start = HEADER.size + length
        self.payload_start = start + (-start % 64)
        self.payload = data[self.payload_start: len(data) - 12]

    def rebuilt(self, manifest: object = None, payload: bytes | None = None) -> bytes:
        """The file with this manifest and payload (the manifest's checksum made right)."""
        blob = json.dumps(self.manifest if manifest is None else manifest).encode()
        head = HEADER.pack(b"ECSWORLD", self.version, self.flags, len(blob))
        start = HEADER.size + len(blob)
        trailer = struct.pack("<I", zlib.crc32(blob)) + b"ECSEND\0\0"
        return head + blob + b"\0" * (-start % 64) + (self.payload if payload is None else payload) + trailer

    def rebuilt_text(self, blob: bytes) -> bytes:
        """The file with this manifest text (its checksum made right)."""
        head = HEADER.pack(b"ECSWORLD", self.version, self.flags, len(blob))
        trailer = struct.pack("<I", zlib.crc32(blob)) + b"ECSEND\0\0"
        return head + blob + b"\0" * (-(HEADER.size + len(blob)) % 64) + self.payload + trailer

    def array_offset(self, entry: dict) -> int:
        return self.payload_start + entry["offset"]


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x10]) + data[at + 1:]


def with_manifest(edit: Callable[[dict], object]) -> Callable[[Parsed], bytes]:
    def corrupt(p: Parsed) -> bytes:
        manifest = json.loads(json.dumps(p.manifest))
        result = edit(manifest)
        return p.rebuilt(manifest if result is None else result)
    return corrupt


def body_component(manifest: dict) -> dict:
    return next(c for c in manifest["components"] if c["name"].endswith(":Body"))


def first_column(p: Parsed) -> dict:
    return next(col[2] for t in p.manifest["tables"] for col in t["columns"] if col[2]["nbytes"] > 64)


def flip_in_array(entry: Callable[[Parsed], dict], at: int) -> Callable[[Parsed], bytes]:
    return lambda p: flip(p.data, p.array_offset(entry(p)) + at)


def with_array(entry: Callable[[dict], dict], dtype: type,
               edit: Callable[[np.ndarray], None]) -> Callable[[Parsed], bytes]:
    """Edit one payload array and make its checksums right: a file that passes every checksum but
    does not make sense."""
    def corrupt(p: Parsed) -> bytes:
        manifest = json.loads(json.dumps(p.manifest))
        where = entry(manifest)
        payload = bytearray(p.payload)
        start, nbytes = where["offset"], where["nbytes"]
        edit(np.frombuffer(payload, dtype, nbytes // np.dtype(dtype).itemsize, start))
        where["xxh64"] = chunk_checksums(payload[start: start + nbytes])
        return p.rebuilt(manifest, bytes(payload))
    return corrupt


def chunk_checksums(data: bytes | bytearray, checksum: Callable[[bytes], int] = xxhash.xxh64_intdigest,
                    digits: int = 16) -> list[str]:
    """The manifest's checksums of an array's bytes: one per CHUNK, by the reference XXH64 (or,
    for a version 2 file, zlib's CRC-32 in 8 digits)."""
    return [f"{checksum(bytes(data[at: at + CHUNK])):0{digits}x}" for at in range(0, max(len(data), 1), CHUNK)]


def flags_column(m: dict, field: str) -> dict:
    """The array entry of Flags.<field> in the first table that has it."""
    index = next(k for k, c in enumerate(m["components"]) if c["name"].endswith(":Flags"))
    return next(entry for table in m["tables"] for c, f, entry in table["columns"] if c == index and f == field)


def first_entities(m: dict) -> dict:
    return m["tables"][0]["entities"]


def free_a_live_slot(p: Parsed) -> bytes:
    live = int(np.frombuffer(p.payload, np.int64, 1, first_entities(p.manifest)["offset"])[0]) & 0xFFFFFFFF
    return with_array(lambda m: m["entities"]["free"], np.int64, lambda free: free.__setitem__(0, live))(p)


def set_version(version: int) -> Callable[[Parsed], bytes]:
    return lambda p: p.data[:8] + struct.pack("<I", version) + p.data[12:]


def as_version_2(edit: Callable[[dict], object] = lambda m: None) -> Callable[[Parsed], bytes]:
    """A version 2 file (header and manifest say so) of the manifest as `edit` leaves it."""
    def corrupt(p: Parsed) -> bytes:
        manifest = json.loads(json.dumps(p.manifest))
        manifest["version"] = 2
        edit(manifest)
        as_2 = Parsed(p.data)
        as_2.version = 2
        return as_2.rebuilt(manifest)
    return corrupt


TAGS = [ecs.component(type(f"Tag{k}", (), {"__qualname__": f"TAGS.Tag{k}", "__module__": __name__}))
        for k in range(128)]


def with_tags(m: dict, count: int) -> None:
    """Table 0 given tags (components without fields) until it has `count` components."""
    first = len(m["components"])
    m["components"] += [{"name": f"{__name__}:TAGS.Tag{k}", "fields": []} for k in range(128)]
    table = m["tables"][0]
    table["components"] += list(range(first, first + count - len(table["components"])))


def set_flags(flags: int) -> Callable[[Parsed], bytes]:
    return lambda p: p.data[:12] + struct.pack("<I", flags) + p.data[16:]


def set_manifest_length(length: int) -> Callable[[Parsed], bytes]:
    return lambda p: p.data[:16] + struct.pack("<Q", length) + p.data[24:]


def drop_tables(m: dict) -> None:
    del m["tables"]


def add_a_row(m: dict) -> None:
    m["tables"][0]["rows"] += 1


def rename_component(name: str) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        body_component(m)["name"] = name
    return edit


def edit_first_field(position: int, value: str) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        body_component(m)["fields"][0][position] = value
    return edit


def drop_last_field(m: dict) -> None:
    body_component(m)["fields"].pop()


def set_key(*keys: str | int, value: object) -> Callable[[dict], None]:
    """An edit that sets manifest[keys[0]][keys[1]]... to `value`."""
    def edit(m: dict) -> None:
        where = m
        for key in keys[:-1]:
            where = where[key]
        where[keys[-1]] = value
    return edit


def first_columns(m: dict) -> list:
    return m["tables"][0]["columns"]


def alias_a_column(m: dict) -> None:
    """Body.y's entry names Body.x's bytes (same dtype and size): rows backed by bytes another
    array already claims."""
    columns = first_columns(m)
    columns[1][2] = json.loads(json.dumps(columns[0][2]))


def shorten_the_free_generations(m: dict) -> None:
    generations = m["entities"]["free_generation"]
    generations["shape"], generations["nbytes"] = [10], 40


def nest_deeply(p: Parsed) -> bytes:
    text = json.dumps(p.manifest)
    return p.rebuilt_text(f'{text[:-1]}, "deep": {"[" * 100_000}{"]" * 100_000}}}'.encode())


NUMPY_FILE = b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False}" + bytes(64)
CORRUPTIONS: dict[str, tuple[Callable[[Parsed], bytes], str]] = {
    "empty file": (lambda p: b"", "the file is empty"),
    "flipped byte in the manifest": (
        lambda p: flip(p.data, HEADER.size + 100), r"manifest is corrupt \(checksum"),
    "flipped byte in a column": (
        flip_in_array(first_column, 17), r"an array is corrupt \(checksum mismatch\)"),
    "flipped byte in an entity column": (
        flip_in_array(lambda p: first_entities(p.manifest), 12), r"an array is corrupt \(checksum mismatch\)"),
    "flipped byte in the free slots' generations": (
        flip_in_array(lambda p: p.manifest["entities"]["free_generation"], 2), "an array is corrupt"),
    "flipped byte in a resource array": (
        flip_in_array(lambda p: p.manifest["resources"]["arrays"]["grid"], 5), "an array is corrupt"),
    "flipped byte in the manifest checksum": (
        lambda p: flip(p.data, len(p.data) - 11), "manifest is corrupt"),
    "flipped byte in the end marker": (
        lambda p: flip(p.data, len(p.data) - 3), r"truncated \(no end marker\)"),
    "flipped byte in the magic": (lambda p: flip(p.data, 2), r"not an ecs world file \(bad magic\)"),
    "manifest length too large": (set_manifest_length(1 << 40), "truncated or its header is corrupt"),
    "manifest length too small": (set_manifest_length(50), "manifest is corrupt"),
    "truncated inside the magic": (lambda p: p.data[:5], "shorter than the header"),
    "truncated inside the header": (lambda p: p.data[:20], "shorter than the header"),
    "truncated inside the manifest": (
        lambda p: p.data[:HEADER.size + 300], "truncated or its header is corrupt"),
    "truncated inside the payload": (lambda p: p.data[: p.payload_start + len(p.payload) // 2],
                                     r"truncated \(no end marker\)"),
    "truncated before the checksum": (lambda p: p.data[:-12], r"truncated"),
    "truncated by one byte": (lambda p: p.data[:-1], r"truncated \(no end marker\)"),
    "foreign: text": (lambda p: b"hello, world\n" * 10, "bad magic"),
    "foreign: numpy file": (lambda p: NUMPY_FILE, "bad magic"),
    "foreign: zip": (lambda p: b"PK\x03\x04" + bytes(200), "bad magic"),
    "foreign manifest with our header": (with_manifest(lambda m: {"format": "other"}), "foreign manifest"),
    "manifest that is a list": (with_manifest(lambda m: []), "foreign manifest"),
    "manifest missing its tables": (with_manifest(drop_tables), "manifest is malformed"),
    "manifest naming a component index that is not there": (
        with_manifest(lambda m: m["tables"][0].__setitem__("components", [99])), "manifest is malformed"),
    "manifest with a negative array offset": (
        with_manifest(lambda m: m["entities"]["free"].__setitem__("offset", -64)), "manifest is malformed"),
    "manifest with a wrong array size": (
        with_manifest(lambda m: first_entities(m).__setitem__("nbytes", 4)),
        r"malformed: table 0.entities has 4 bytes of shape \[\d+\] and dtype '<i8', expected \d+ of shape"),
    "manifest with a wrong size of the free list": (
        with_manifest(lambda m: m["entities"]["free"].__setitem__("nbytes", 16)),
        r"entities.free has 16 bytes of shape \[(\d+)\] and dtype '<i8', expected \d+ of shape \[\1\]"),
    "manifest with a checksum missing": (
        with_manifest(lambda m: first_entities(m).__setitem__("xxh64", [])),
        r"the manifest is malformed: table 0.entities: an array of \d+ bytes has checksums \[\], expected 1 of 16 "
        r"hex"),
    "manifest with a table larger than max_rows": (
        with_manifest(lambda m: m["limits"].__setitem__("max_rows", 100)), r"a table of \d+ rows, max_rows is 100"),
    "manifest with the high water mark below the ids": (
        with_manifest(lambda m: m["entities"].__setitem__("high_water", 5)),
        r"the entity index is inconsistent: row 0 of table 0 holds id \d+, whose slot is not in \[1, high water "
        r"mark 5\)"),
    "manifest with the high water mark past max_entities": (
        with_manifest(lambda m: m["entities"].__setitem__("high_water", 1 << 40)),
        r"inconsistent: high water mark 1099511627776 is outside \[1, \d+\] \(max_entities="),
    "manifest with a wrong count of entities": (
        with_manifest(lambda m: m["entities"].__setitem__("alive", 694)),
        "inconsistent: the tables hold 693 entities, the manifest says 694"),
    "checksummed free list naming a live slot": (
        free_a_live_slot, r"inconsistent: free slot \d+ \(generation \d+\) is in use: row \d+ of table \d+ holds it"),
    "checksummed free slot at the retired generation": (
        with_array(lambda m: m["entities"]["free_generation"], np.uint32, lambda g: g.__setitem__(0, 2**31)),
        r"inconsistent: free slot \d+ \(generation 2147483648\) is past the last generation \(2147483647\)"),
    "checksummed free list naming one slot twice": (
        with_array(lambda m: m["entities"]["free"], np.int64, lambda free: free.__setitem__(1, free[0])),
        r"inconsistent: free slot \d+ \(generation \d+\) is listed twice in the free list"),
    "checksummed entity column naming one slot twice": (
        with_array(first_entities, np.int64, lambda ids: ids.__setitem__(1, ids[0])),
        r"inconsistent: row 1 of table 0 holds id \d+, whose slot \d+ row 0 of table 0 holds already"),
    "checksummed entity column with id 0": (
        with_array(first_entities, np.int64, lambda ids: ids.__setitem__(3, 0)),
        r"inconsistent: row 3 of table 0 holds id 0"),
    "manifest with a rows count past the arrays": (
        with_manifest(add_a_row), r"table 0.entities has (\d+) bytes of shape \[\d+\] and dtype '<i8', expected "
                                  r"(?!\1)\d+ of shape"),
    "newer format version": (set_version(4), "written by a newer format version 4; this library reads "
                                             "version 3: upgrade ecs to load it"),
    "format version 1": (set_version(1), "written in format version 1, which this library no longer reads"),
    "format version 0": (set_version(0), "header is corrupt"),
    "a component that no longer exists": (
        with_manifest(rename_component("tests.snapshot_systems:Gone")),
        "component tests.snapshot_systems:Gone is not defined in this program: import the module that defines it "
        r"\(or define it\) before loading"),
    "a module that no longer exists": (
        with_manifest(rename_component("tests.no_such:Body")), "tests.no_such:Body is not defined in this program"),
    "a name that is not a component": (
        with_manifest(rename_component("numpy:float32")), "numpy:float32 is not defined in this program"),
    "a field whose dtype changed": (
        with_manifest(edit_first_field(1, "<f8")),
        r"component tests.snapshot_systems:Body has fields .* but the file stores .*'<f8'"),
    "a field that was renamed": (with_manifest(edit_first_field(0, "z")), "has fields"),
    "a field that was dropped": (with_manifest(drop_last_field), "has fields"),
    # crafted manifests (checksums right) that loaded, imported, committed memory or raised another error
    "a column deleted from the manifest": (
        with_manifest(lambda m: first_columns(m).remove(first_columns(m)[0])),
        r"malformed: table 0 stores no column Body\.x$"),
    "a column listed twice": (
        with_manifest(lambda m: first_columns(m).append(first_columns(m)[0])),
        r"malformed: table 0 stores column Body\.x twice"),
    "a column of a component the table lacks": (
        with_manifest(lambda m: first_columns(m)[0].__setitem__(0, 4)),
        r"table 0 stores column Axes\.x, which is not a field of its components"),
    "a column named by a number": (
        with_manifest(lambda m: first_columns(m)[0].__setitem__(1, 7)),
        r"table 0.columns holds \[0, 7, an object of 5 keys\]; expected \[component index, field, array\]"),
    "two columns on the same payload bytes": (
        with_manifest(alias_a_column),
        r"malformed: table 0: column Body\.[xy] and table 0: column Body\.[xy] overlap in the payload"),
    "a negative component index": (
        with_manifest(lambda m: m["tables"][0]["components"].__setitem__(0, -1)),
        r"malformed: table 0: a component index is -1; expected an integer in \[0, 5\]"),
    "a table listing a component twice": (
        with_manifest(lambda m: m["tables"][0]["components"].__setitem__(1, 0)), "table 0 lists a component twice"),
    "two tables of one component set": (
        with_manifest(lambda m: m["tables"][3].__setitem__("components", m["tables"][0]["components"])),
        "malformed: table 3 has the components of an earlier table"),
    "a component listed twice": (
        with_manifest(lambda m: m["components"].append(m["components"][0])),
        "malformed: component tests.snapshot_systems:Body is listed twice"),
    "a frame past 2**62": (
        with_manifest(set_key("frame", value=2**62 + 1)),
        r"malformed: frame is 4611686018427387905; expected an integer in \[0, 4611686018427387904\]"),
    "a frame of 4000 digits": (
        with_manifest(set_key("frame", value=10**3999)), "malformed: frame is an integer of 4000 digits"),
    "a frame that is a float": (with_manifest(set_key("frame", value=3.5)), "malformed: frame is 3.5; expected"),
    "a frame that is a bool": (with_manifest(set_key("frame", value=True)), "malformed: frame is True; expected"),
    "a negative frame": (with_manifest(set_key("frame", value=-1)), "malformed: frame is -1; expected"),
    "a row count that is a float": (
        with_manifest(set_key("tables", 0, "rows", value=421.0)), r"malformed: table 0.rows is 421.0; expected"),
    "a live count that is a float": (
        with_manifest(set_key("entities", "alive", value=693.0)), r"malformed: entities.alive is 693.0; expected"),
    "max_rows that is a float": (
        with_manifest(set_key("limits", "max_rows", value=1e5)),
        r"malformed: limits.max_rows is 100000.0; expected an integer in \[64, 2147483648\]"),
    "max_rows past what rows can count": (
        with_manifest(set_key("limits", "max_rows", value=2**31 + 1)), r"limits.max_rows is 2147483649; expected"),
    "max_entities past what ids can count": (
        with_manifest(set_key("limits", "max_entities", value=2**32 + 1)), r"limits.max_entities is 4294967297"),
    "limits that are a list": (with_manifest(set_key("limits", value=[64, 64])), r"malformed: limits is \[64, 64\]"),
    "a high water mark far past the ids": (
        with_manifest(set_key("entities", "high_water", value=2**28)),
        r"inconsistent: high water mark 268435456 leaves 268434704 slots neither alive nor free, more than the "
        r"65536 retired slots a file may hold"),
    "a row count far past the arrays": (
        with_manifest(set_key("tables", 0, "rows", value=2**25)),
        r"malformed: table 0.entities has 3368 bytes of shape \[421\] and dtype '<i8', expected 268435456 of shape "
        r"\[33554432\]"),
    "free slots' generations shorter than the free list": (
        with_manifest(shorten_the_free_generations),
        r"entities.free_generation has 40 bytes of shape \[10\] and dtype '<u4', expected 232 of shape \[58\]"),
    "JSON nested 100000 deep": (nest_deeply, "malformed: its JSON is nested too deeply"),
    "a resource number its dtype cannot hold": (
        with_manifest(set_key("resources", "scalars", "scale", value=["<f4", 1e300])),
        r"malformed: resource 'scale' is 1e\+300, which is not a <f4 value"),
    "a resource int that is a float": (
        with_manifest(set_key("resources", "scalars", "lives", value=["int", 1.5])),
        r"malformed: resource 'lives' is 1.5; expected a value of type int"),
    "a resource of an unknown type": (
        with_manifest(set_key("resources", "scalars", "lives", value=["complex", 1])),
        r"malformed: resource 'lives' has dtype 'complex'; expected a numeric or bool dtype"),
    "a resource array of complex numbers": (
        with_manifest(set_key("resources", "arrays", "grid", "dtype", value="<c8")),
        r"malformed: resource 'grid' has dtype '<c8'; expected a numeric or bool dtype"),
    "a resource array of float16": (
        with_manifest(set_key("resources", "arrays", "grid", "dtype", value="<f2")),
        r"malformed: resource 'grid' has dtype <f2; a resource's floats are float32 or float64"),
    "a resource number of float128": (
        with_manifest(set_key("resources", "scalars", "scale", value=["<f16", 1.0])),
        r"malformed: resource 'scale' has dtype <f16; a resource's floats are float32 or float64"),
    "an array size that is a float": (
        with_manifest(set_key("tables", 0, "entities", "shape", value=[421.0])),
        r"malformed: table 0.entities has 3368 bytes of shape \[421.0\] and dtype '<i8', expected 3368 of shape "
        r"\[421\]"),
    "an array size that is a bool": (
        with_manifest(set_key("resources", "arrays", "grid", "shape", value=[True])),
        r"malformed: resource 'grid': a size is True; expected an integer"),
    "a bool column holding byte 2": (
        with_array(lambda m: flags_column(m, "visible"), np.uint8, lambda a: a.__setitem__(3, 2)),
        r"Flags.visible holds byte 2 at element 3; a bool is 0 or 1"),
    "a resource stored as a number and an array": (
        with_manifest(set_key("resources", "scalars", "grid", value=["int", 1])),
        "resource 'grid' is stored both as a number and as an array"),
    "a checksum that is not hex": (
        with_manifest(set_key("tables", 0, "entities", "xxh64", value=["+123456789abcdef"])),
        r"table 0.entities: an array of 3368 bytes has checksums \['\+123456789abcdef'\], expected 1 of 16 hex "
        r"digits"),
    "a version 2 file with version 3 checksums": (as_version_2(), r"malformed: table 0.entities has no 'crc32'"),
    "a header and a manifest of different versions": (set_version(2),
                                                      "its manifest says format version 3, its header 2"),
    "header flags set": (set_flags(1), "its header has flags 0x1, which no format version this library reads sets"),
    "a UTF-16 manifest": (lambda p: p.rebuilt_text(json.dumps(p.manifest).encode("utf-16")),
                          "the manifest is not UTF-8 text: invalid start byte at byte 0"),
    "a component name with a lone surrogate": (
        with_manifest(set_key("components", 0, "name", value="tests.snapshot_systems:\udcffBody")),
        r"component tests\.snapshot_systems:\\udcffBody is not defined in this program"),
    "a table of 128 components": (with_manifest(lambda m: with_tags(m, 128)), "has 128 components; a table holds "
                                                                           "at most 127"),
    "a big-endian resource array": (
        with_manifest(set_key("resources", "arrays", "grid", "dtype", value=">i4")),
        r"resource 'grid' has dtype '>i4': big-endian, and a world file is little-endian"),
}


def shm_entries() -> set[str]:
    """/dev/shm entries other than multiprocessing's named semaphores (sem.mp-*): the library
    makes none (its memory is a memfd or private), and other processes on the machine come and go."""
    names = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    return {name for name in names if not name.startswith("sem.mp-")}


def resources_in_use() -> tuple[int, int, set[str]]:
    """Arena mappings, open descriptors and /dev/shm entries of this process."""
    gc.collect()
    return introspect.arena_mappings(), len(os.listdir("/proc/self/fd")), shm_entries()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Parsed:
    path = tmp_path_factory.mktemp("saved") / "world.ecs"
    with ecs.World() as world:
        build(world)
        world.save(path)
    return Parsed(path.read_bytes())


@pytest.mark.parametrize("rebuild", ["inline", "threaded"])
@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_bad_file_raises_snapshot_error_and_builds_nothing(saved: Parsed, tmp_path, monkeypatch, case: str,
                                                             rebuild: str) -> None:
    """Both ways the entity index is rebuilt (a large file's on a thread beside the reads)."""
    if rebuild == "threaded":
        monkeypatch.setattr(ecs.worldfile, "THREADED_REBUILD_ROWS", 0)
    corrupt, message = CORRUPTIONS[case]
    path = tmp_path / "bad.ecs"
    path.write_bytes(corrupt(saved))
    before = resources_in_use()
    try:
        ecs.World.load(path)
    except SnapshotError as exc:
        text = str(exc)
    else:
        pytest.fail(f"{case}: loaded without error")
    assert text.startswith(f"cannot load {str(path)!r}: ")
    assert re.search(message, text), text
    assert resources_in_use() == before


def test_a_sparse_file_that_claims_a_huge_manifest_is_refused_before_it_is_read(saved: Parsed, tmp_path) -> None:
    path = tmp_path / "sparse.ecs"
    path.write_bytes(saved.data[:16] + struct.pack("<Q", (1 << 26) + 1) + saved.data[24:])
    os.truncate(path, 1 << 27)                   # a length to match, taking no disk
    with pytest.raises(SnapshotError, match=r"claims a manifest of 67108865 bytes; a manifest this library "
                                            r"writes takes at most 67108864"):
        ecs.World.load(path)


def test_save_refuses_a_manifest_that_load_would_refuse(tmp_path, monkeypatch) -> None:
    from ecs import worldfile
    path = tmp_path / "many.ecs"
    with ecs.World() as world:
        world.spawn(Count())
        world.save(path)
        before = path.read_bytes()
        monkeypatch.setattr(worldfile, "MAX_MANIFEST_BYTES", 100)   # the limit, lowered to what one table exceeds
        with pytest.raises(ecs.CapacityError, match=r"a world file's manifest of \d+ bytes \(1 tables, 0 "
                                                    r"resources\): at most 100 bytes; save fewer archetypes"):
            world.save(path)
        assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["many.ecs"]   # nothing changed


def test_a_read_error_is_a_snapshot_error() -> None:
    with pytest.raises(SnapshotError, match=r"cannot load '/proc/self/mem': cannot read it: Input/output error"):
        ecs.World.load("/proc/self/mem")


def test_resource_numbers_of_subclasses_and_numpy_types_round_trip(tmp_path) -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    with ecs.World() as world:
        world.resources["wide"] = np.float64(1.5)
        world.resources["level"] = Level.HIGH
        world.resources["small"] = np.int8(-3)
        with pytest.raises(ecs.ArgumentTypeError, match=r"resource 'long': a float128 is wider than a float64"):
            world.resources["long"] = np.longdouble(1.5)   # refused when assigned: no file could hold it
        world.save(tmp_path / "w.ecs")
    with ecs.World.load(tmp_path / "w.ecs") as loaded:
        assert type(loaded.resources["wide"]) is np.float64 and loaded.resources["wide"] == 1.5
        assert type(loaded.resources["level"]) is int and loaded.resources["level"] == 3
        assert type(loaded.resources["small"]) is np.int8 and loaded.resources["small"] == -3


def test_a_resource_int_too_long_for_text_is_refused_by_save_naming_it(tmp_path) -> None:
    with ecs.World() as world:
        world.resources["fine"] = 2**64 - 1
        world.resources["big"] = 10**5000
        with pytest.raises(ecs.ArgumentTypeError, match=r"^resource 'big' is an int of 16610 bits, more digits than "
                                                        r"Python writes as text"):
            world.save(tmp_path / "w.ecs")
        assert os.listdir(tmp_path) == []
        del world.resources["big"]
        world.save(tmp_path / "w.ecs")
    with ecs.World.load(tmp_path / "w.ecs") as loaded:
        assert loaded.resources["fine"] == 2**64 - 1


def test_the_unchanged_file_loads(saved: Parsed, tmp_path) -> None:
    """The corruption helpers themselves change nothing when they change nothing."""
    (tmp_path / "same.ecs").write_bytes(saved.rebuilt())
    with ecs.World.load(tmp_path / "same.ecs") as loaded:
        assert len(loaded) == 693


def test_a_large_world_rebuilds_its_index_on_a_thread_to_the_same_state(tmp_path) -> None:
    with ecs.World() as world:
        build(world)
        ids = world.spawn_batch(ecs.worldfile.THREADED_REBUILD_ROWS, Body(x=1.0, y=2.0))
        world.despawn_batch(ids[::3])
        world.save(tmp_path / "large.ecs")
        with ecs.World.load(tmp_path / "large.ecs") as loaded:
            assert state(loaded) == state(world)


DYNAMIC = "tests_snapshot_dynamic_components"


PROBE = "from ecs import component, f32, i32\n@component\nclass Probe:\n    x: f32\n"


def test_a_component_redefined_since_the_save_is_refused_and_one_redefined_alike_loads(tmp_path) -> None:
    """A re-executed module (exec into it, as a notebook cell run again) redefines its classes:
    load resolves the name to the newest, and refuses it when its fields changed."""
    module = types.ModuleType(DYNAMIC)
    sys.modules[DYNAMIC] = module
    try:
        exec(PROBE, module.__dict__)
        with ecs.World() as world:
            world.spawn(module.Probe(x=1.5))
            world.save(tmp_path / "probe.ecs")
        with ecs.World.load(tmp_path / "probe.ecs") as loaded:
            assert loaded.query(module.Probe).count() == 1
        exec(PROBE + "    hits: i32 = 0\n", module.__dict__)
        with pytest.raises(SnapshotError, match=r"component tests_snapshot_dynamic_components:Probe has "
                                                r"fields \[\('x', '<f4', \(\)\), \('hits', '<i4', \(\)\)\] "
                                                r"but the file stores \[\('x', '<f4', \(\)\)\]"):
            ecs.World.load(tmp_path / "probe.ecs")
        exec(PROBE, module.__dict__)
        with ecs.World.load(tmp_path / "probe.ecs") as loaded:
            assert [float(b[module.Probe].x[0]) for b in loaded.query(module.Probe)] == [1.5]
    finally:
        del sys.modules[DYNAMIC]


@pytest.mark.parametrize("name", ["this:Zen", "unittest.__main__:main", "tests.never_imported:X"])
def test_loading_imports_no_module_the_file_names(saved: Parsed, tmp_path, name: str) -> None:
    module = name.partition(":")[0]
    assert module not in sys.modules
    path = tmp_path / "named.ecs"
    path.write_bytes(with_manifest(rename_component(name))(saved))
    with pytest.raises(SnapshotError, match=rf"component {re.escape(name)} is not defined in this program: import "
                                            r"the module that defines it \(or define it\) before loading"):
        ecs.World.load(path)
    assert module not in sys.modules


def test_a_file_whose_world_would_commit_far_more_memory_than_its_length_is_refused(saved: Parsed, tmp_path,
                                                                                   monkeypatch) -> None:
    """A table of one row commits MIN_CAPACITY rows of every column: many small tables in a small
    file would commit far more than the file holds. The bound, made tight here, is checked first."""
    path = tmp_path / "small.ecs"
    path.write_bytes(saved.data)
    monkeypatch.setattr(ecs.manifest, "COMMIT_PER_FILE_BYTE", 1)
    monkeypatch.setattr(ecs.manifest, "COMMIT_ALLOWANCE", 0)
    with pytest.raises(SnapshotError, match=rf"malformed: its world would commit about \d+ MiB of memory for a file "
                                            rf"of {len(saved.data)} bytes \(at most 1 times the file plus 0 MiB\)"):
        ecs.World.load(path)


def test_load_options_take_limits_that_hold_the_file_and_name_those_that_do_not(tmp_path) -> None:
    with ecs.World(max_rows=4096, max_entities=4096) as world:
        world.spawn_batch(100, Body(x=1, y=2))
        world.despawn_batch(world.spawn_batch(50, Count()))      # ids 101-150 handed out, then freed
        world.save(tmp_path / "w.ecs")
    with ecs.World.load(tmp_path / "w.ecs", max_rows=100, max_entities=150) as loaded:
        assert len(loaded) == 100
        loaded.spawn_batch(10, Count())
    with pytest.raises(ecs.InvalidArgumentError, match=r"World.load\(max_rows=64\): the file's world needs max_rows >= "
                                                   r"100 \(its largest table has 100 rows\)"):
        ecs.World.load(tmp_path / "w.ecs", max_rows=64)
    with pytest.raises(ecs.InvalidArgumentError, match=r"World.load\(max_entities=149\): the file's world needs "
                                                   r"max_entities >= 150 \(it has handed out 150 ids\)"):
        ecs.World.load(tmp_path / "w.ecs", max_entities=149)


def _sparse_copy(data: bytes, path) -> None:
    """`data` written with every all-zero 4 KiB block left a hole (as `cp --sparse=always` does)."""
    block = 4096
    with open(path, "wb") as f:
        for at in range(0, len(data), block):
            part = data[at: at + block]
            if part.count(0) == len(part):
                f.seek(len(part), os.SEEK_CUR)
            else:
                f.write(part)
        f.truncate(len(data))


def test_a_sparse_file_may_make_a_world_take_only_what_it_stores(tmp_path, monkeypatch) -> None:
    """A sparse file's holes cost no disk: the memory a load may commit is bounded by the bytes
    the file stores, not its length (else a few KiB on disk could claim gigabytes)."""
    with ecs.World() as world:
        world.spawn_batch(100_000, Axes(basis=np.zeros((2, 3))))   # 48 zero bytes of fields an entity, 8 of id
        world.save(tmp_path / "dense.ecs")
    data = (tmp_path / "dense.ecs").read_bytes()
    _sparse_copy(data, tmp_path / "sparse.ecs")
    if os.stat(tmp_path / "sparse.ecs").st_blocks * 512 >= len(data) // 2:
        pytest.skip("this filesystem stores holes")
    monkeypatch.setattr(ecs.manifest, "COMMIT_PER_FILE_BYTE", 2)     # a dense file of this world passes
    monkeypatch.setattr(ecs.manifest, "COMMIT_ALLOWANCE", 0)
    ecs.World.load(tmp_path / "dense.ecs").close()
    with pytest.raises(SnapshotError, match=rf"for a file of {len(data)} bytes, of which \d+ are stored on disk "
                                            rf"\(at most 2 times the file plus 0 MiB stored: a sparse file's holes "
                                            rf"cost nothing to claim\); a sparse copy of a saved world loads once "
                                            rf"copied without holes \(cp --sparse=never\)"):
        ecs.World.load(tmp_path / "sparse.ecs")
    monkeypatch.setattr(ecs.manifest, "COMMIT_PER_FILE_BYTE", 64)
    with ecs.World.load(tmp_path / "sparse.ecs") as loaded:   # under the default bound it loads as it is
        assert len(loaded) == 100_000


def test_empty_tables_count_toward_the_memory_a_file_may_make_a_world_take(tmp_path, monkeypatch) -> None:
    """An empty table commits no rows, but the table itself takes memory (TABLE_OVERHEAD)."""
    with ecs.World() as world:
        world.despawn(world.spawn(Body(x=1, y=2)))       # its table stays, empty
        world.save(tmp_path / "empty.ecs")
    monkeypatch.setattr(ecs.manifest, "COMMIT_PER_FILE_BYTE", 1000)
    monkeypatch.setattr(ecs.manifest, "COMMIT_ALLOWANCE", 0)
    monkeypatch.setattr(ecs.manifest, "TABLE_OVERHEAD", 0)
    ecs.World.load(tmp_path / "empty.ecs").close()
    monkeypatch.setattr(ecs.manifest, "TABLE_OVERHEAD", 1 << 30)
    with pytest.raises(SnapshotError, match=r"its world would commit about 1024 MiB"):
        ecs.World.load(tmp_path / "empty.ecs")


def test_loading_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path) -> None:
    fifo = tmp_path / "world.fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    loader = threading.Thread(target=lambda: outcome.append(pytest.raises(SnapshotError, ecs.World.load, fifo).value),
                              daemon=True)
    loader.start()
    loader.join(10)
    if loader.is_alive():                      # release it: open the other end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        loader.join(10)
        pytest.fail("loading a FIFO waited for a writer")
    assert re.search("cannot open it: not a regular file", str(outcome[0]))


def payload_arrays(manifest: dict) -> list[dict]:
    """Every array entry of a manifest: tables' entity and field columns, the free list and its
    generations, resource arrays."""
    entries = []
    for table in manifest["tables"]:
        entries += [table["entities"], *(column[2] for column in table["columns"])]
    return entries + [manifest["entities"]["free"], manifest["entities"]["free_generation"],
                      *manifest["resources"]["arrays"].values()]


@pytest.mark.parametrize("checksums", ["inline", "threaded"])
def test_each_chunk_of_an_array_has_its_own_checksum(tmp_path, monkeypatch, checksums: str) -> None:
    """Both ways a save writes them: known before the one write (a small world's, inline), or
    computed on threads beside the payload's write and put in the manifest after it."""
    if checksums == "threaded":
        monkeypatch.setattr(ecs.worldfile, "INLINE_CHECKSUM_BYTES", 0)
    monkeypatch.setattr(ecs.worldfile, "CHUNK", 1024)
    monkeypatch.setattr(ecs.manifest, "CHUNK", 1024)
    with ecs.World() as world:
        build(world)
        world.save(tmp_path / "chunked.ecs")
        parsed = Parsed((tmp_path / "chunked.ecs").read_bytes())
        column = max((col[2] for t in parsed.manifest["tables"] for col in t["columns"]), key=lambda e: e["nbytes"])
        assert len(column["xxh64"]) == -(-column["nbytes"] // 1024) > 3
        assert parsed.version == 3
        for entry in payload_arrays(parsed.manifest):    # each the reference XXH64 of its chunk
            data = parsed.payload[entry["offset"]: entry["offset"] + entry["nbytes"]]
            assert entry["xxh64"] == [f"{xxhash.xxh64_intdigest(data[at: at + 1024]):016x}"
                                      for at in range(0, max(len(data), 1), 1024)]
        with ecs.World.load(tmp_path / "chunked.ecs") as loaded:
            assert state(loaded) == state(world)
        (tmp_path / "bad.ecs").write_bytes(flip(parsed.data, parsed.array_offset(column) + 3 * 1024 + 5))
        with pytest.raises(SnapshotError, match=r"an array is corrupt \(checksum mismatch\)"):
            ecs.World.load(tmp_path / "bad.ecs")


def test_a_version_2_file_with_crc32_checksums_still_loads(tmp_path) -> None:
    with ecs.World() as world:
        build(world)
        world.save(tmp_path / "w.ecs")
        parsed = Parsed((tmp_path / "w.ecs").read_bytes())
        manifest = json.loads(json.dumps(parsed.manifest))
        for entry in payload_arrays(manifest):
            data = parsed.payload[entry["offset"]: entry["offset"] + entry["nbytes"]]
            entry["crc32"] = chunk_checksums(data, zlib.crc32, 8)
            del entry["xxh64"]
        parsed.version = manifest["version"] = 2
        (tmp_path / "v2.ecs").write_bytes(parsed.rebuilt(manifest))
        with ecs.World.load(tmp_path / "v2.ecs") as loaded:
            assert state(loaded) == state(world)
        column = first_column(parsed)
        (tmp_path / "v2-bad.ecs").write_bytes(flip(parsed.rebuilt(manifest), parsed.array_offset(column) + 5))
        with pytest.raises(SnapshotError, match=r"an array is corrupt \(checksum mismatch\)"):
            ecs.World.load(tmp_path / "v2-bad.ecs")


def test_short_reads_and_writes_and_few_buffers_per_call_still_round_trip(tmp_path, monkeypatch) -> None:
    """The kernel may move fewer bytes than asked (2 GiB at most per call) and take at most
    IOV_MAX buffers: emulated with 1000 bytes and 3 buffers per call."""
    pwritev, preadv = os.pwritev, os.preadv

    def short_pwritev(fd: int, buffers: list, offset: int) -> int:
        assert len(buffers) <= 3
        taken, budget = [], 1000                  # the first 1000 bytes of what was asked
        for buffer in buffers:
            taken.append(memoryview(buffer).cast("B")[:budget])
            budget -= taken[-1].nbytes
        return pwritev(fd, taken, offset)

    def short_preadv(fd: int, buffers: list, offset: int) -> int:
        return preadv(fd, [memoryview(buffers[0])[:1000]], offset)

    monkeypatch.setattr(ecs.worldfile, "_IOV_MAX", 3)
    monkeypatch.setattr(ecs.worldfile.os, "pwritev", short_pwritev)
    monkeypatch.setattr(ecs.worldfile.os, "preadv", short_preadv)
    with ecs.World() as world:
        build(world)
        world.save(tmp_path / "short.ecs")
        monkeypatch.undo()
        with ecs.World.load(tmp_path / "short.ecs") as loaded:
            assert state(loaded) == state(world)
        monkeypatch.setattr(ecs.worldfile.os, "preadv", short_preadv)
        with ecs.World.load(tmp_path / "short.ecs") as loaded:
            assert state(loaded) == state(world)


# ---------------------------------------------------------------- a kill during save
SAVER = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
import ecs
from tests.snapshot_systems import Body, Count

n = 1_000_000
with ecs.World() as world:
    ids = world.spawn_batch(n, Body(x=np.arange(n), y=0.0), Count(n=0))
    version = int(sys.argv[2])
    while True:
        version += 1
        world.set_batch(ids, Count(n=version))
        world.resources["version"] = version
        print("saving", version, flush=True)
        world.save(sys.argv[1])
        print("saved", version, flush=True)
"""
ROWS_SAVED = 1_000_000


def kill_during_save(path: pathlib.Path, first_version: int, when: float | str) -> int:
    """Start a process that saves versions first_version + 1, + 2... over `path`; once it has
    saved one, SIGKILL it during the next save: `when` seconds after the save began, or
    "mid-write": as soon as its temporary file is partly written. Returns the last version it
    reported saved before it died (it may finish more saves while we wait to kill it)."""
    command = [sys.executable, "-c", SAVER.format(root=str(ROOT)), str(path), str(first_version)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    temporaries = f".{path.name}.tmp-{process.pid}-*"     # one per save, named after the saving process

    def temporary_size() -> int:
        return max((p.stat().st_size for p in path.parent.glob(temporaries)), default=0)
    try:
        saved_version = 0
        assert process.stdout is not None
        for line in process.stdout:
            word, version = line.split()
            if word == "saved":
                saved_version = int(version)
                full_size = path.stat().st_size
            elif saved_version:
                if when == "mid-write":
                    deadline = time.monotonic() + 20
                    while not 0 < temporary_size() < full_size:
                        assert time.monotonic() < deadline, "the temporary file was never seen partly written"
                        time.sleep(0.0005)
                else:
                    time.sleep(float(when))
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=30)
        for line in process.stdout.read().splitlines():   # saves it finished while we slept
            word, version = line.split()
            if word == "saved":
                saved_version = int(version)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    if when == "mid-write":          # what was being written is incomplete, and refused as such
        (temporary,) = path.parent.glob(temporaries)
        assert temporary.stat().st_size < full_size
        with pytest.raises(SnapshotError, match="truncated"):
            ecs.World.load(temporary)
    return saved_version


def test_a_process_killed_during_save_leaves_the_old_or_the_new_file(tmp_path) -> None:
    path = tmp_path / "big.ecs"
    for run, when in enumerate(("mid-write", 0.0, 0.1, "mid-write")):
        first_version = 100 * run
        last_saved = kill_during_save(path, first_version, when)
        assert last_saved > first_version
        with ecs.World.load(path) as loaded:
            version = loaded.resources["version"]
            assert version in (last_saved, last_saved + 1), (when, version, last_saved)
            counts = np.concatenate([b[Count].n for b in loaded.query(Count)])
            assert counts.shape[0] == ROWS_SAVED and (counts == version).all()
        for name in os.listdir(tmp_path):                # beside it, only temporaries, named as such
            assert name == path.name or name.startswith(f".{path.name}.tmp-"), name


# ---------------------------------------------------------------- snapshot / restore
def test_restore_puts_back_values_structure_resources_and_the_frame(built) -> None:
    world, ids, path = built
    before = state(world)
    snap = world.snapshot()
    alive = ids["alive"]
    world.set(alive[0], Body(x=123, y=4, spin=5))
    world.resources["gravity"] = 1.0
    world.resources["grid"][1, 1] = -7                 # an array changed in place
    world.resources["mask"] = np.zeros(10, np.bool_)   # replaced by another shape
    world.resources["new"] = 5
    del world.resources["lives"]
    spawned = world.spawn_batch(40, Body(x=1, y=1), Count())
    world.despawn_batch(alive[10:30])
    world.add(alive[40], Hidden())
    world.remove(alive[41], Paint)
    world.run(4, dt=1.0)
    assert state(world) != before
    world.restore(snap)
    assert state(world) == before
    assert all(world.is_alive(e) for e in alive) and not any(world.is_alive(int(e)) for e in spawned)
    assert not world.has(alive[40], Hidden) and world.has(alive[41], Paint)
    assert world.resources["lives"] == 3 and "new" not in world.resources
    world.run(4, dt=1.0)                                # and again, from the same snapshot
    world.restore(snap)
    assert state(world) == before


def test_restore_rewinds_the_id_allocator(built) -> None:
    world, ids, path = built
    snap = world.snapshot()
    first = [world.spawn(Count()) for _ in range(3)] + world.spawn_batch(200, Hidden()).tolist()
    world.restore(snap)
    again = [world.spawn(Count()) for _ in range(3)] + world.spawn_batch(200, Hidden()).tolist()
    assert again == first


def test_restore_refuses_a_snapshot_of_another_world(built) -> None:
    world, ids, path = built
    with ecs.World() as other, pytest.raises(ValueError, match="another world"):
        world.restore(other.snapshot())


def test_restore_marks_only_the_rows_whose_values_differ(world: ecs.World) -> None:
    ids = world.spawn_batch(10, Body(x=np.arange(10), y=np.nan, spin=0), Count()).tolist()
    changed = world.query(Body, changed=[Body])
    added = world.query(Body, added=[Body])
    counts = world.query(Count, changed=[Count])
    for q in (changed, added, counts):
        list(q)
    snap = world.snapshot()
    world.set(ids[2], Body(x=100, y=np.nan, spin=0))     # differs: reported after restore
    world.set(ids[3], Body(x=3, y=np.nan, spin=0))       # written, but the same value: not reported
    world.set(ids[4], Body(x=4, y=np.nan, spin=1))       # another field differs: reported
    for q in (changed, added, counts):
        list(q)                                          # the writes above are consumed
    world.restore(snap)
    assert sorted(changed.entities().tolist()) == [ids[2], ids[4]]   # NaN y, unchanged: not reported
    assert added.count() == 0 and counts.count() == 0
    assert world.get(ids[2], Body).x == 2 and world.get(ids[4], Body).spin == 0
    list(changed)
    world.restore(snap)                                  # nothing differs now
    assert changed.count() == 0


def test_a_filtered_system_sees_only_the_rows_a_restore_changed(world: ecs.World) -> None:
    ids = world.spawn_batch(50, Body(x=np.arange(50), y=0), Count()).tolist()
    world.resources["tally"] = np.zeros(1, np.int64)
    world.add_system(count_moves)                        # changed=[Body]: counts the rows it is given
    world.step()
    assert world.resources["tally"][0] == 50             # first look: every row
    snap = world.snapshot()
    world.set(ids[7], Body(x=-1, y=0))
    world.set(ids[9], Body(x=9, y=0))                    # the same value
    world.step()
    assert world.resources["tally"][0] == 52
    world.restore(snap)                                  # tally too: it is a resource
    assert world.resources["tally"][0] == 50
    world.step()
    assert world.resources["tally"][0] == 51             # only ids[7] differed
    assert [int(world.get(e, Count).n) for e in ids[6:10]] == [1, 2, 1, 1]


def test_restore_reports_the_entities_it_brings_back_as_added_and_not_those_it_only_moves(world: ecs.World) -> None:
    ids = world.spawn_batch(6, Body(x=np.arange(6), y=0), Count()).tolist()
    changed = world.query(Body, changed=[Body])
    added = world.query(Count, added=[Count])
    list(changed), list(added)
    snap = world.snapshot()
    world.despawn(ids[1])                # the last row (ids[5]) moves into row 1
    world.spawn(Body(x=9, y=9))          # another table, gone after the restore
    list(changed), list(added)
    world.restore(snap)
    # ids[1] comes back; ids[5] goes back to row 5 with the values and bits it had
    assert added.entities().tolist() == [ids[1]]
    assert changed.entities().tolist() == [ids[1]]
    assert world.query(Body).count() == 6


def test_a_change_pending_for_a_reader_returns_with_its_entity(world: ecs.World) -> None:
    """A reader's pending bits are a row's: an entity restored to its old row brings its own
    (here, a set the reader has not seen yet), and the rows it passes through keep none of it."""
    ids = world.spawn_batch(4, Body(x=np.arange(4), y=0)).tolist()
    changed = world.query(Body, changed=[Body])
    list(changed)
    world.set(ids[3], Body(x=30, y=0))     # pending for `changed`, in row 3
    snap = world.snapshot()
    world.despawn(ids[0])                  # ids[3] moves into row 0
    world.restore(snap)                    # ids[0] comes back to row 0, ids[3] to row 3
    assert sorted(changed.entities().tolist()) == [ids[0], ids[3]]
    assert world.get(ids[3], Body).x == 30 and world.get(ids[0], Body).x == 0


def test_restore_marks_per_entity_what_differs_whatever_rows_the_changes_left() -> None:
    """add_batch places rows by source table, the loop of add calls in call order: a restore
    after either reports the same entities, components and values, those that differ."""
    reports = []
    for batched in (False, True):
        with ecs.World() as world:
            a = world.spawn(Body(x=1, y=0))
            b = world.spawn(Body(x=2, y=0), Count(n=5))
            c = world.spawn(Body(x=3, y=0))
            world.add_batch([a, b, c], Count(n=1), Hidden())
            readers = [world.query(Body, changed=[Body]), world.query(Count, changed=[Count]),
                       world.query(Count, added=[Count]), world.query(Hidden, added=[Hidden])]
            for reader in readers:
                list(reader)          # a look: consumes what each reader has pending
            snap = world.snapshot()
            if batched:
                world.remove_batch([a, c], Hidden)
                world.add_batch([a, c], Hidden())
            else:
                for e in (a, c):
                    world.remove(e, Hidden)
                for e in (a, c):
                    world.add(e, Hidden())
            for reader in readers:
                list(reader)
            world.set(c, Body(x=30, y=0))
            world.restore(snap)
            reports.append([sorted(reader.entities().tolist()) for reader in readers])
    # a and c came back to their rows; only c's Body differs from the snapshot
    assert reports[0] == reports[1] == [[c], [], [], []]


def test_a_restored_world_with_workers_steps_like_one_without(built) -> None:
    world, ids, path = built
    results = []
    for workers in (0, 2):
        with ecs.World.load(path, workers=workers) as loaded:
            loaded.add_system(drift)
            loaded.step(dt=1.0)
            snap = loaded.snapshot()
            loaded.despawn_batch(ids["alive"][:50])
            loaded.spawn_batch(70, Body(x=0, y=0), Flags(visible=True))
            loaded.run(2, dt=1.0)
            loaded.restore(snap)
            loaded.run(2, dt=0.5)
            results.append(state(loaded))
    assert results[0] == results[1]


def test_a_save_removes_temporaries_left_by_a_writer_that_died(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphans = [tmp_path / f".world.ecs.tmp-{dead.pid}-0123456789abcdef", tmp_path / f".world.ecs.tmp-{dead.pid}"]
    kept = [tmp_path / ".other.ecs.tmp-1",                # another file's temporary (pid 1 is alive): kept
            tmp_path / ".world.ecs.tmp-1-0123456789abcdef"]  # a save in progress in a live process: kept
    for temporary in (*orphans, *kept):
        temporary.write_bytes(b"half written")
    with ecs.World() as world:
        world.save(tmp_path / "world.ecs")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in kept), "world.ecs"])


def test_two_threads_saving_to_one_path_each_write_a_whole_file(tmp_path) -> None:
    """Each save has its own temporary: with one name per process, one thread truncated or renamed
    away the other's half-written file."""
    path = tmp_path / "shared.ecs"
    with ecs.World() as world:
        n = 200_000
        world.spawn_batch(n, Body(x=np.arange(n), y=1.0), Count(n=np.arange(n)))
        start = threading.Barrier(2)
        failures: list[BaseException] = []

        def save_repeatedly() -> None:
            start.wait()
            try:
                for _ in range(6):
                    world.save(path)
            except BaseException as exc:
                failures.append(exc)

        savers = [threading.Thread(target=save_repeatedly) for _ in range(2)]
        for saver in savers:
            saver.start()
        for saver in savers:
            saver.join(120)
        assert failures == []
        with ecs.World.load(path) as loaded:
            assert state(loaded) == state(world)
    assert os.listdir(tmp_path) == [path.name]


def test_saving_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path) -> None:
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "world.ecs"
    target.write_bytes(b"an older file")
    link = tmp_path / "current.ecs"
    link.symlink_to(os.path.join("data", "world.ecs"))          # relative, resolved from the link's folder
    chained = tmp_path / "latest.ecs"
    chained.symlink_to(link)
    dangling = tmp_path / "next.ecs"
    dangling.symlink_to(tmp_path / "data" / "next-world.ecs")
    with ecs.World() as world:
        world.spawn_batch(10, Count(n=np.arange(10)))
        world.save(link)
        world.save(chained)
        world.save(dangling)                                    # creates the target, as open() would
        for path in (link, chained, dangling):
            assert path.is_symlink()
            with ecs.World.load(path) as loaded:
                assert state(loaded) == state(world)
    assert os.readlink(link) == os.path.join("data", "world.ecs") and os.readlink(chained) == str(link)
    assert sorted(os.listdir(tmp_path)) == ["current.ecs", "data", "latest.ecs", "next.ecs"]
    assert sorted(os.listdir(tmp_path / "data")) == ["next-world.ecs", "world.ecs"]


# ---------------------------------------------------------------- restore without structural change
def bit_state(world: ecs.World) -> dict[int, bytes]:
    """Every table's change bits in use (marks, added, readers' pending sets)."""
    return {table.id: table.bit_matrix[: table.nslots, : -(-max(table.n, 1) // 64)].tobytes()
            for table in introspect.tables(world)}


def test_a_restore_with_the_structure_unchanged_matches_a_full_restore_and_keeps_the_version() -> None:
    """The fast path (field columns only) against the full one, forced by forgetting which
    structure the world has: same values, same ids and index, same marks for every reader."""
    results = []
    for fast in (True, False):
        with ecs.World() as world:
            ids = build(world)
            readers = [world.query(Body, changed=[Body]), world.query(Count, added=[Count]),
                       world.query(Paint, changed=[Paint])]
            for q in readers:
                list(q)
            before = state(world)
            snap = world.snapshot()
            world.set_batch(ids["alive"][:40], Count(n=np.arange(40)))
            world.set(ids["alive"][50], Paint(rgb=[9, 9, 9]))
            world.resources["gravity"] = 3.0
            world.run(2, dt=0.5)
            version = introspect.structure_version(world)
            if not fast:
                introspect.forget_shared_structure(world)
            world.restore(snap)
            assert state(world) == before
            assert (introspect.structure_version(world) == version) == fast
            results.append((state(world), bit_state(world), [sorted(q.entities().tolist()) for q in readers]))
    assert results[0] == results[1]
    assert len(results[0][2][0]) > 100 and results[0][2][1] == []      # changed rows seen, nothing added


def small_world(world: ecs.World) -> None:
    """Entities with Life and Spot (the command systems' components), some despawned, some moved."""
    ids = world.spawn_batch(60, Life(t=np.arange(60) % 7), Spot(x=np.arange(60.0)))
    world.spawn_batch(5, Life(t=3), Spot(x=0), Template())
    world.spawn(Spot(x=1.0, y=0.0))               # compiles the one-entity spawn for Spot (raw values)
    world.despawn_batch(ids[::9])
    world.add(int(ids[4]), Burning())
    world.resources["prefab"] = int(world.query(Template).entities()[0])


def defer_everything(world: ecs.World) -> None:
    alive = world.query(Life, without=[Template]).entities().tolist()
    with world.defer() as d:
        d.spawn(Spot(x=5.0), Wet())
        d.despawn(alive[0])
        d.add(alive[1], Heat())
        d.remove(alive[2], Spot)


def run_system(sys_: object) -> Callable[[ecs.World], None]:
    def op(world: ecs.World) -> None:
        world.add_system(sys_)
        world.step()
    return op


def restore_another(world: ecs.World) -> None:
    world.spawn_batch(3, Spot(x=1.0))
    other = world.snapshot()
    world.despawn(int(world.query(Spot).entities()[0]))
    world.restore(other)


def first_of(world: ecs.World, *components: type) -> int:
    return int(world.query(*components, without=[Template]).entities()[0])


STRUCTURAL_OPS: dict[str, Callable[[ecs.World], object]] = {
    "spawn (the compiled one-entity path)": lambda w: w.spawn(Spot(x=2.0, y=0.0)),
    "spawn (the checked path)": lambda w: w.spawn(Spot(x=2.0), Heat(deg=1)),
    "spawn_batch": lambda w: w.spawn_batch(70, Spot(x=0.5)),
    "despawn": lambda w: w.despawn(first_of(w, Life)),
    "despawn_batch": lambda w: w.despawn_batch(w.query(Life, without=[Template]).entities()[:5]),
    "add": lambda w: w.add(first_of(w, Life), Wet()),
    "remove": lambda w: w.remove(first_of(w, Life, Burning), Burning),
    "defer": defer_everything,
    "kernel commands: despawn": run_system(despawn_odd),
    "kernel commands: spawn": run_system(copy_prefab),
    "kernel commands: spawn, add and remove": run_system(spawn_children),
    "restore of another snapshot": restore_another,
}


@pytest.mark.parametrize("op", list(STRUCTURAL_OPS))
def test_every_structural_change_is_undone_by_restore(op: str) -> None:
    """Each operation bumps the structure version (else restore would take its fast path and
    keep the changed structure); restoring gives exactly the state of a world that never did it:
    ids, locations, free list, and the ids spawned next."""
    with ecs.World() as world, ecs.World() as twin:
        small_world(world)
        small_world(twin)
        assert state(world) == state(twin)
        snap = world.snapshot()
        version = introspect.structure_version(world)
        STRUCTURAL_OPS[op](world)
        assert introspect.structure_version(world) > version
        assert state(world) != state(twin)
        if op.startswith("spawn (the compiled"):
            assert introspect.last_spawn_fast_path(world) is introspect.spawn_fast_path(world, Spot)
        world.restore(snap)
        assert state(world) == state(twin)
        version = introspect.structure_version(world)
        world.restore(snap)                                 # the structure now equals the snapshot's
        assert introspect.structure_version(world) == version and state(world) == state(twin)
        # the ids issued next (table ids may differ: tables the operation made stay, empty)
        spawned = [[w.spawn(Spot(x=1.0)), *w.spawn_batch(30, Spot(x=1.0), Heat()).tolist()] for w in (world, twin)]
        assert spawned[0] == spawned[1]


def test_setting_values_and_adding_a_component_an_entity_has_keep_the_structure() -> None:
    with ecs.World() as world:
        small_world(world)
        version = introspect.structure_version(world)
        e = first_of(world, Life)
        world.set(e, Spot(x=7.0))
        world.set_batch(world.query(Life).entities(), Life(t=2))
        world.add(e, Spot(x=8.0))                           # has it: overwritten in place
        world.resources["prefab"] = 0
        assert introspect.structure_version(world) == version


def test_snapshots_at_one_structure_version_share_a_read_only_structure(built) -> None:
    world, ids, path = built
    before = state(world)
    first, second = world.snapshot(), world.snapshot()
    assert first.structure is second.structure
    held = first.structure
    arrays = [e for _, _, e in held.tables] + [held.free, held.free_generation]
    arrays += [col for _, cols in first.columns for _, _, col in cols]
    kept = [a.copy() for a in arrays]
    for array in arrays:
        assert not array.flags.writeable
        with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):
            array.flags.writeable = True
        if array.size:
            with pytest.raises(ValueError, match="read-only"):
                array.reshape(-1)[0] = array.reshape(-1)[0]
    world.despawn_batch(ids["alive"][:100])
    world.spawn_batch(300, Body(x=1, y=2), Count())
    world.add(ids["alive"][200], Axes(basis=np.ones((2, 3))))
    world.run(2, dt=1.0)
    third = world.snapshot()
    assert third.structure is not held
    assert all(a.tobytes() == k.tobytes() for a, k in zip(arrays, kept, strict=True))   # NaN too
    world.restore(second)
    assert state(world) == before
    version = introspect.structure_version(world)
    world.restore(first)                                    # the same structure: nothing structural
    assert introspect.structure_version(world) == version and state(world) == before
    assert world.snapshot().structure is held


def test_a_structure_no_snapshot_holds_is_not_shared(world: ecs.World) -> None:
    world.spawn_batch(10, Count())
    first = world.snapshot()
    structure = weakref.ref(first.structure)
    del first
    gc.collect()
    assert structure() is None                              # the world's reference is weak
    snap = world.snapshot()
    world.spawn(Count())
    world.restore(snap)
    assert len(world) == 10


def test_restoring_two_snapshots_in_turn_restores_each_structure(built) -> None:
    world, ids, path = built
    early = world.snapshot()
    early_state = state(world)
    world.despawn_batch(ids["alive"][::3])
    world.spawn_batch(40, Hidden())
    late = world.snapshot()
    late_state = state(world)
    for snap, expected in ((early, early_state), (late, late_state), (late, late_state),
                           (early, early_state), (early, early_state), (late, late_state)):
        world.restore(snap)
        assert state(world) == expected
    added = world.query(Body, added=[Body])
    list(added)
    world.restore(late)                                     # the same structure: nothing is added
    assert added.count() == 0


# ---------------------------------------------------------------- fast and full restores, in random order
class RollbackMachine(RuleBasedStateMachine):
    """Two worlds receive the same calls; `full` forgets before every restore which structure it
    has, so it always takes the full path. After every step both must hold the same ids, index,
    values and change bits; readers, looking after some steps, must see the same rows; and a
    restore must give back the state its snapshot saw."""

    def __init__(self) -> None:
        super().__init__()
        self.fast, self.full = ecs.World(), ecs.World()
        self.snaps: list[tuple[object, object, dict]] = []
        self.readers = [(w.query(Body, changed=[Body]), w.query(Count, added=[Count])) for w in self.worlds]

    @property
    def worlds(self) -> tuple[ecs.World, ecs.World]:
        return self.fast, self.full

    def teardown(self) -> None:
        self.snaps.clear()
        self.fast.close()
        self.full.close()

    def live(self) -> list[int]:
        return sorted(self.fast.query().entities().tolist()) if len(self.fast) else []

    def maybe_look(self, look: bool) -> None:
        """Readers of both worlds see the same rows, then have seen them."""
        if look:
            seen = [[sorted(q.entities().tolist()) for q in queries] for queries in self.readers]
            assert seen[0] == seen[1]
            for queries in self.readers:
                for q in queries:
                    list(q)

    @rule(n=st.integers(0, 70), hidden=st.booleans(), look=st.booleans())
    def spawn_batch(self, n: int, hidden: bool, look: bool) -> None:
        for w in self.worlds:
            w.spawn_batch(n, Body(x=np.arange(n), y=1.0), Count(n=7), *([Hidden()] if hidden else []))
        self.maybe_look(look)

    @precondition(lambda self: len(self.fast))
    @rule(data=st.data())
    def despawn_some(self, data) -> None:
        doomed = data.draw(st.lists(st.sampled_from(self.live()), unique=True, max_size=20))
        for w in self.worlds:
            w.despawn_batch(np.array(doomed, np.int64))

    @precondition(lambda self: len(self.fast))
    @rule(data=st.data(), hide=st.booleans())
    def move_one(self, data, hide: bool) -> None:
        entity = data.draw(st.sampled_from(self.live()))
        for w in self.worlds:
            if hide:
                w.add(entity, Hidden())
            elif w.has(entity, Hidden):
                w.remove(entity, Hidden)

    @precondition(lambda self: len(self.fast))
    @rule(data=st.data(), x=st.floats(-5, 5, width=32), look=st.booleans())
    def set_values(self, data, x: float, look: bool) -> None:
        chosen = data.draw(st.lists(st.sampled_from(self.live()), unique=True, min_size=1, max_size=30))
        for w in self.worlds:
            w.set_batch(np.array(chosen, np.int64), Body(x=x, y=2.0))
        self.maybe_look(look)

    @rule()
    def snapshot(self) -> None:
        self.snaps.append((self.fast.snapshot(), self.full.snapshot(), state(self.fast)))
        del self.snaps[:-4]

    @precondition(lambda self: self.snaps)
    @rule(data=st.data())
    def drop_a_snapshot(self, data) -> None:
        del self.snaps[data.draw(st.integers(0, len(self.snaps) - 1))]
        gc.collect()

    def restore(self, k: int, look: bool) -> None:
        fast_snap, full_snap, expected = self.snaps[k]
        self.fast.restore(fast_snap)
        introspect.forget_shared_structure(self.full)
        self.full.restore(full_snap)
        assert state(self.fast) == expected
        self.maybe_look(look)

    @precondition(lambda self: self.snaps)
    @rule(look=st.booleans())
    def restore_latest(self, look: bool) -> None:
        self.restore(-1, look)

    @precondition(lambda self: self.snaps)
    @rule(data=st.data(), look=st.booleans())
    def restore_any(self, data, look: bool) -> None:
        self.restore(data.draw(st.integers(0, len(self.snaps) - 1)), look)

    @invariant()
    def both_worlds_agree(self) -> None:
        assert state(self.fast) == state(self.full)
        assert bit_state(self.fast) == bit_state(self.full)


RollbackMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None,
                                             suppress_health_check=[HealthCheck.too_slow])
TestRollbackMachine = RollbackMachine.TestCase

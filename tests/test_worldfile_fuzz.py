"""ecs/worldfile.py under fuzzing: a file is untrusted input.

Random edits of a saved world, each file made to pass the checks an edit would otherwise trip
(the manifest's CRC-32 and trailer recomputed, and the chunk checksums of an edited array), plus
crafted files that committed gigabytes or raised other errors before. Every case is loaded in
one subprocess, under RLIMIT_AS a few hundred MiB beyond what a world needs, with its peak
resident memory measured per case; each must either load a world equal to what its manifest
describes (an oracle reads the file with numpy) or raise SnapshotError: never another error,
never a kill, never more than MEMORY_MIB of memory, and no descriptor or mapping left behind.

This file is also the subprocess: `python tests/test_worldfile_fuzz.py SEED CASES`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pathlib
import re
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import xxhash

from tests import introspect

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = struct.Struct("<8sIIQ")
SEED = 20240607
CASES = 700                 # about 10 ms each: the whole test takes ~15-25 s
MEMORY_MIB = 192            # peak resident memory a case may add
HEADROOM = 768 << 20        # RLIMIT_AS beyond what a world needs (its 4 GiB arena) and the interpreter
ARENA = 4 << 30             # the arena under RLIMIT_AS: memory.py halves 16 TiB until it fits
TIMEOUT_S = 300


def test_every_edited_or_crafted_file_loads_as_described_or_raises_snapshot_error(tmp_path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, __file__, str(SEED), str(CASES), str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, (f"the fuzzing process exited with {done.returncode} during "
                                  f"{lines[-1] if lines else 'start-up'}:\n{done.stderr[-3000:]}")
    report = json.loads(lines[-1])
    assert report["failures"] == [], "\n".join(report["failures"][:20])
    outcomes = report["outcomes"]
    assert outcomes["loaded"] >= 50 and outcomes["refused"] >= 300, outcomes      # the edits reached both ends
    assert report["peak_mib"] < MEMORY_MIB, report
    assert report["leaked"] == [], report["leaked"]
    print(f"{outcomes} in {time.monotonic() - started:.1f} s, peak +{report['peak_mib']:.0f} MiB")


def test_under_rlimit_as_a_world_too_large_for_the_arena_is_a_snapshot_error(tmp_path) -> None:
    """max_rows = 2**31 reserves 64 GiB of change bits per table: the 4 GiB arena is exhausted
    while the world is filled (MemoryError before). max_entities = 2**30 needs a 12 GiB entity
    index: refused before World() is made, which would fail and leave its arena's memfd open."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, __file__, "limits", "0", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    messages = json.loads(done.stdout.splitlines()[-1])
    assert re.fullmatch(r"SnapshotError: cannot load '.*': the world it describes does not fit in this process "
                        r"\(CapacityError: the world.s address space is exhausted .*\)", messages["max_rows 2**31"])
    assert re.fullmatch(r"SnapshotError: cannot load '.*': the world it describes does not fit in this process: its "
                        r"entity index of max_entities=1073741824 slots takes \d+ bytes of address space, the arena "
                        r"RLIMIT_AS leaves has 4294967296", messages["max_entities 2**30"])
    assert messages["leaked"] == []


def test_a_file_of_many_tiny_resource_arrays_is_refused_by_the_memory_bound(tmp_path) -> None:
    """Each resource array takes at least a page of the arena and ~2 KiB of Python objects, so
    150,000 empty arrays (~13 MB of manifest) would commit ~1.2 GiB: over the bound of 64 times
    the file plus 256 MiB, which a count of 2 bytes per array did not see (such files loaded,
    at ~6 KiB and ~50 us an array)."""
    import ecs
    from ecs import SnapshotError

    path = tmp_path / "w.ecs"
    with ecs.World(max_rows=64, max_entities=64) as world:
        world.resources["e"] = np.zeros(0, np.uint8)
        world.save(path)
    saved = File(path.read_bytes())
    manifest = copy.deepcopy(saved.manifest)
    empty = manifest["resources"]["arrays"].pop("e")
    manifest["resources"]["arrays"] = {f"r{k}": empty for k in range(150_000)}
    path.write_bytes(saved.rebuilt(manifest))
    size = path.stat().st_size
    with pytest.raises(SnapshotError, match=rf"its world would commit about \d+ MiB of memory for a file of {size} "
                                            r"bytes \(at most 64 times the file plus 256 MiB\)"):
        ecs.World.load(path)


# ====================================================================== the subprocess
def build_world():
    """A world with a bit of everything, small limits (small reservations: the arena under
    RLIMIT_AS is 4 GiB): vector, 2-D and bool fields, a tag-only table, an empty table, freed
    and reused slots, resources of every kind, frame 3."""
    import ecs
    from tests.snapshot_systems import Axes, Body, Count, Flags, Hidden, Paint

    rng = np.random.default_rng(5)
    world = ecs.World(max_rows=4096, max_entities=1 << 14)
    n = 300
    a = world.spawn_batch(n, Body(x=rng.random(n), y=rng.normal(size=n), spin=rng.normal(size=n)),
                          Paint(rgb=rng.integers(0, 256, (n, 3)), alpha=rng.integers(0, 65536, n)),
                          Flags(visible=rng.random(n) < 0.5, layer=rng.integers(-128, 128, n)), Count(n=np.arange(n)))
    world.spawn_batch(40, Body(x=rng.random(40), y=0.0), Axes(basis=rng.normal(size=(40, 2, 3))), Hidden())
    world.spawn_batch(10, Hidden())
    world.despawn_batch(a[::5])
    world.spawn_batch(20, Count(n=7))
    world.despawn(world.spawn(Paint(rgb=[1, 2, 3])))
    world.add(int(a[1]), Hidden())
    world.remove(int(a[2]), Paint)
    for name, value in {"gravity": -9.81, "lives": 3, "paused": True, "scale": np.float32(0.1),
                        "offset": np.int16(-3), "not_a_number": float("nan"), "huge": 2**70,
                        "grid": np.arange(24, dtype=np.int32).reshape(4, 6), "mask": np.array([True, False, True]),
                        "origin": np.array(-5, np.int16), "nothing": np.zeros((0, 3), np.float32)}.items():
        world.resources[name] = value
    world.run(3)
    return world, (Axes, Body, Count, Flags, Hidden, Paint)


class File:
    """A saved file's parts; `rebuilt` puts a (changed) manifest and payload back together with the
    manifest's CRC-32 made right."""

    def __init__(self, data: bytes) -> None:
        _, self.version, self.flags, length = HEADER.unpack_from(data)
        self.manifest = json.loads(data[HEADER.size: HEADER.size + length])
        start = HEADER.size + length
        self.payload = data[start + (-start % 64): len(data) - 12]

    def rebuilt(self, manifest: object, payload: bytes | None = None) -> bytes:
        return self.rebuilt_text(json.dumps(manifest).encode(), payload)

    def rebuilt_text(self, blob: bytes, payload: bytes | None = None) -> bytes:
        head = HEADER.pack(b"ECSWORLD", self.version, self.flags, len(blob))
        trailer = struct.pack("<I", zlib.crc32(blob)) + b"ECSEND\0\0"
        pad = b"\0" * (-(HEADER.size + len(blob)) % 64)
        return head + blob + pad + (self.payload if payload is None else payload) + trailer


INTERESTING = [0, 1, -1, 2, 63, 64, 65, 1023, 4096, 2**16, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**62, 2**63, 2**64,
               10**30, -(2**63), 0.5, 64.0, 1e308, float("nan"), float("inf"), True, False, None, "", "x", "<f4",
               "|b1", "<i8", "<u4", "00000000", "tests.snapshot_systems:Body", "tests.snapshot_systems:Hidden",
               [], {}, [0], [[]], [0, 1], {"a": 1}, [["x", "<f4", []]]]


def locations(node: object) -> list[tuple[object, object]]:
    """Every (container, key) in a JSON tree."""
    out: list[tuple[object, object]] = []
    stack = [node]
    while stack:
        container = stack.pop()
        keys = list(container) if isinstance(container, dict) else range(len(container))  # type: ignore[arg-type]
        for key in keys:
            out.append((container, key))
            child = container[key]  # type: ignore[index]
            if isinstance(child, (dict, list)):
                stack.append(child)
    return out


def edit_manifest(manifest: dict, rng: np.random.Generator) -> str:
    """One random edit in place; returns what it did."""
    places = locations(manifest)
    container, key = places[rng.integers(len(places))]
    value = container[key]  # type: ignore[index]
    op = int(rng.integers(7))
    if op == 0 or (op == 1 and not isinstance(value, (int, float, str))):
        new = copy.deepcopy(INTERESTING[rng.integers(len(INTERESTING))])
    elif op == 1:
        if isinstance(value, str):
            new = value[: rng.integers(len(value) + 1)] + rng.choice(["", "x", "0", ":", ".", "-1"])
        elif isinstance(value, bool):
            new = not value
        else:
            step = [1, -1, 64, -64, 4096, 10**6][rng.integers(6)]
            new = value * 2 if rng.random() < 0.2 else value + step
    elif op == 2:
        del container[key]  # type: ignore[attr-defined]
        return f"delete {key!r}"
    elif op == 3 and isinstance(container, list):
        container.insert(int(key), copy.deepcopy(value))
        return f"duplicate item {key}"
    elif op == 4 and isinstance(container, list) and len(container) > 1:
        other = int(rng.integers(len(container)))
        container[key], container[other] = container[other], container[key]
        return f"swap items {key} and {other}"
    elif op == 5:
        donor, donor_key = places[rng.integers(len(places))]
        new = copy.deepcopy(donor[donor_key])  # type: ignore[index]
    else:
        if isinstance(container, dict):
            container["extra"] = copy.deepcopy(value)
            return f"add a key beside {key!r}"
        new = copy.deepcopy(INTERESTING[rng.integers(len(INTERESTING))])
    container[key] = new  # type: ignore[index]
    return f"set {key!r} from {short(value)} to {short(new)}"


def short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


def array_entries(manifest: dict) -> list[dict]:
    entries = []
    for table in manifest["tables"]:
        entries.append(table["entities"])
        entries += [column[2] for column in table["columns"]]
    entries += [manifest["entities"]["free"], manifest["entities"]["free_generation"]]
    return entries + list(manifest["resources"]["arrays"].values())


def edit_bytes(data: bytes, saved: File, rng: np.random.Generator) -> tuple[bytes, str]:
    """A random byte edit; an edit inside an array gets its chunk checksums and the manifest CRC
    recomputed, one inside the manifest the manifest CRC. Truncations and appends as they are."""
    kind = rng.integers(10)
    if kind == 0:
        cut = int(rng.integers(len(data)))
        return data[:cut], f"truncate to {cut} bytes"
    if kind == 1:
        return data + bytes(rng.integers(0, 256, int(rng.integers(1, 100)), dtype=np.uint8)), "append bytes"
    if kind <= 3:                                       # anywhere in the manifest text
        blob = bytearray(json.dumps(saved.manifest).encode())
        at = int(rng.integers(len(blob)))
        blob[at] = int(rng.integers(32, 127))
        return saved.rebuilt_text(bytes(blob)), f"manifest byte {at} set to {chr(blob[at])!r}"
    manifest = copy.deepcopy(saved.manifest)
    entries = [e for e in array_entries(manifest) if e["nbytes"]]
    entry = entries[rng.integers(len(entries))]
    payload = bytearray(saved.payload)
    count = int(rng.integers(1, 4))
    for at in rng.integers(entry["offset"], entry["offset"] + entry["nbytes"], count):
        payload[at] = int(rng.integers(256)) if rng.random() < 0.5 else payload[at] ^ (1 << int(rng.integers(8)))
    start, nbytes = entry["offset"], entry["nbytes"]
    entry["xxh64"] = [f"{xxhash.xxh64_intdigest(bytes(payload[start + at: start + min(at + (1 << 22), nbytes)])):016x}"
                      for at in range(0, max(nbytes, 1), 1 << 22)]
    return saved.rebuilt(manifest, bytes(payload)), f"{count} bytes of an array at {start} (checksums made right)"


def crafted(saved: File) -> list[tuple[str, bytes]]:
    """Edits that committed gigabytes, imported modules or raised other errors before."""
    def edited(*edits: tuple[tuple, object]) -> bytes:
        manifest = copy.deepcopy(saved.manifest)
        for keys, value in edits:
            where = manifest
            for key in keys[:-1]:
                where = where[key]
            where[keys[-1]] = value
        return saved.rebuilt(manifest)

    deep = json.dumps(saved.manifest)[:-1] + ', "deep": ' + "[" * 50_000 + "]" * 50_000 + "}"
    return [
        ("high water 2**28", edited((("entities", "high_water"), 2**28), (("limits", "max_entities"), 2**28))),
        ("rows 2**22 of one table", edited((("tables", 0, "rows"), 2**22), (("limits", "max_rows"), 2**25))),
        ("max_rows 2**31", edited((("limits", "max_rows"), 2**31),)),
        ("max_entities 2**32", edited((("limits", "max_entities"), 2**32),)),
        ("max_entities 2**30", edited((("limits", "max_entities"), 2**30),)),
        ("a component of module this", edited((("components", 0, "name"), "this:Body"),)),
        ("a component of module unittest.__main__", edited((("components", 0, "name"), "unittest.__main__:x"),)),
        ("frame 2**70", edited((("frame",), 2**70),)),
        ("nested 50000 deep", saved.rebuilt_text(deep.encode())),
        ("a manifest length of 2**63", saved.rebuilt(saved.manifest)[:16] + struct.pack("<Q", 2**63)
         + saved.rebuilt(saved.manifest)[24:]),
    ]


def expected_state(data: bytes) -> dict:
    """What a file describes, read with numpy: per table (by component names) the ids and every
    column's bytes, the live count, resources and the frame."""
    _, _, _, length = HEADER.unpack_from(data)
    manifest = json.loads(data[HEADER.size: HEADER.size + length])
    start = HEADER.size + length
    payload = start + (-start % 64)

    def array(entry: dict) -> np.ndarray:
        dtype = np.dtype(entry["dtype"])
        return np.frombuffer(data, dtype, math.prod(entry["shape"]), payload + entry["offset"]).reshape(entry["shape"])

    def described(entry: dict) -> tuple[str, tuple[int, ...], bytes]:
        return entry["dtype"], tuple(entry["shape"]), array(entry).tobytes()

    names = [c["name"].rpartition(":")[2] for c in manifest["components"]]
    tables = {}
    for table in manifest["tables"]:
        columns = {f"{names[i]}.{field}": described(entry) for i, field, entry in table["columns"]}
        tables[tuple(sorted(names[i] for i in table["components"]))] = (described(table["entities"]), columns)
    resources = {name: (kind, value) for name, (kind, value) in manifest["resources"]["scalars"].items()}
    resources |= {name: (entry["dtype"], array(entry).shape, array(entry).tobytes())
                  for name, entry in manifest["resources"]["arrays"].items()}
    return {"tables": tables, "alive": manifest["entities"]["alive"], "resources": resources,
            "frame": manifest["frame"]}


def observed_state(world, classes: tuple[type, ...], expected: dict) -> dict:
    """The same, read from a loaded world through queries (one table each: `without` the rest)."""
    by_name = {c.__name__: c for c in classes}
    tables = {}
    for names in expected["tables"]:
        wanted = [by_name[n] for n in names]
        batches = list(world.query(*wanted, without=[c for c in classes if c not in wanted]))
        columns = {}
        for c in wanted:
            for field, dtype in c.fields.items():
                empty = np.empty((0, *dtype.shape), dtype.base)
                columns[f"{c.__name__}.{field}"] = arranged([getattr(b[c], field) for b in batches] or [empty])
        tables[names] = (arranged([b.entities for b in batches] or [np.empty(0, np.int64)]), columns)
    resources = {}
    for name, value in world.resources.items():
        if isinstance(value, np.ndarray):
            resources[name] = (value.dtype.str, value.shape, value.tobytes())
        elif isinstance(value, np.generic):
            resources[name] = (value.dtype.str, value.item())
        else:
            resources[name] = (type(value).__name__, value)
    return {"tables": tables, "alive": len(world), "resources": resources, "frame": world._schedule.frame}


def arranged(parts: list[np.ndarray]) -> tuple[str, tuple[int, ...], bytes]:
    array = np.concatenate(parts)
    return array.dtype.str, array.shape, array.tobytes()


def same(expected: object, observed: object) -> bool:
    if isinstance(expected, float) and isinstance(observed, float) and math.isnan(expected):
        return math.isnan(observed)
    if isinstance(expected, (dict, tuple, list)):
        if type(expected) is not type(observed) or len(expected) != len(observed):
            return False
        if isinstance(expected, dict):
            return expected.keys() == observed.keys() and all(same(expected[k], observed[k]) for k in expected)
        return all(same(e, o) for e, o in zip(expected, observed, strict=True))
    return expected == observed and type(expected) is type(observed)


def resident() -> tuple[int, int]:
    """(current, peak) resident bytes of this process; the peak is reset after reading."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:          # a kernel without it: the peak then counts from the start, a stricter bound
        pass
    return int(fields["VmRSS"].split()[0]) << 10, int(fields["VmHWM"].split()[0]) << 10


def in_use() -> tuple[int, int]:
    return len(os.listdir("/proc/self/fd")), introspect.arena_mappings()


def run_cases(seed: int, cases: int, folder: pathlib.Path) -> dict:
    import gc
    import resource

    import ecs
    from ecs import SnapshotError

    world, classes = build_world()
    base = folder / "base.ecs"
    world.save(base)
    world.close()
    data = base.read_bytes()
    saved = File(data)
    path = folder / "case.ecs"
    with ecs.World.load(base) as loaded:     # warm up every code path once, before the baselines
        assert same(expected_state(data), observed_state(loaded, classes, expected_state(data)))
    del loaded
    gc.collect()
    introspect.release_spare_arena()   # the limit below is set on what is mapped without it
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + ARENA + HEADROOM, resource.RLIM_INFINITY))
    before = in_use()
    rng = np.random.default_rng(seed)
    plan = [(name, lambda blob=blob: blob) for name, blob in crafted(saved)]
    for k in range(cases):
        if k % 2:
            def case(k: int = k) -> tuple[bytes, str]:
                manifest = copy.deepcopy(saved.manifest)
                done = [edit_manifest(manifest, rng) for _ in range(int(rng.integers(1, 4)))]
                return saved.rebuilt(manifest), "; ".join(done)
        else:
            def case(k: int = k) -> tuple[bytes, str]:
                return edit_bytes(data, saved, rng)
        plan.append((f"case {k}", case))
    outcomes = {"loaded": 0, "refused": 0}
    failures: list[str] = []
    peak = 0
    for name, make in plan:
        made = make()
        blob, what = made if isinstance(made, tuple) else (made, name)
        path.write_bytes(blob)
        print(f"{name}: {what}", flush=True)            # the last line names the case if the process dies
        gc.collect()
        rss, _ = resident()
        try:
            loaded = ecs.World.load(path)
        except SnapshotError:
            outcomes["refused"] += 1
        except BaseException as exc:  # noqa: BLE001 - every other outcome is a failure, reported
            failures.append(f"{name} ({what}): {type(exc).__name__}: {str(exc)[:300]}")
        else:
            outcomes["loaded"] += 1
            try:
                expected = expected_state(blob)
            except Exception as exc:  # noqa: BLE001 - the oracle cannot read it: nonsense was accepted
                failures.append(f"{name} ({what}): loaded, but its manifest describes no world ({exc!r:.200})")
            else:
                if not same(expected, observed_state(loaded, classes, expected)):
                    failures.append(f"{name} ({what}): loaded a world other than its manifest describes")
            try:
                loaded.despawn_batch(loaded.spawn_batch(5, classes[1](x=1.0, y=2.0)))   # still usable
            except BaseException as exc:  # noqa: BLE001
                failures.append(f"{name} ({what}): loaded, then spawn_batch raised {type(exc).__name__}: {exc}")
            finally:
                loaded.close()
            del loaded
        _, hwm = resident()
        peak = max(peak, hwm - rss)
        if hwm - rss >= MEMORY_MIB << 20:
            failures.append(f"{name} ({what}): {(hwm - rss) >> 20} MiB of memory at its peak")
    gc.collect()
    leaked = [] if in_use() == before else [f"descriptors and arena mappings {before} -> {in_use()}"]
    leaked += [f"imported {name}, named by a file" for name in ("this", "unittest.__main__") if name in sys.modules]
    return {"outcomes": outcomes, "failures": failures, "peak_mib": peak / (1 << 20), "leaked": leaked}


def limit_messages(folder: pathlib.Path) -> dict:
    """What loading the crafted files of too large limits raises, under RLIMIT_AS."""
    import resource

    world, _ = build_world()
    world.save(folder / "base.ecs")
    world.close()
    introspect.release_spare_arena()   # else the next world would map into its 1 TiB, made before the limit
    saved = File((folder / "base.ecs").read_bytes())
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + ARENA + HEADROOM, resource.RLIM_INFINITY))
    import ecs

    before = in_use()
    messages: dict = {}
    for name, blob in crafted(saved):
        if name in ("max_rows 2**31", "max_entities 2**30"):
            (folder / "case.ecs").write_bytes(blob)
            try:
                ecs.World.load(folder / "case.ecs").close()
                messages[name] = "loaded"
            except BaseException as exc:  # noqa: BLE001 - reported
                messages[name] = f"{type(exc).__name__}: {exc}"
    messages["leaked"] = [] if in_use() == before else [f"{before} -> {in_use()}"]
    return messages


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1] == "limits":
        print(json.dumps(limit_messages(pathlib.Path(sys.argv[3]))), flush=True)
    else:
        print(json.dumps(run_cases(int(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3]))), flush=True)

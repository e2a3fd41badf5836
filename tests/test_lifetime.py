"""A world's lifetime as a user can get it wrong: closed mid-iteration, dropped without close(),
a failed constructor, dozens of worlds at once, os.fork() of a process holding one, and two
threads running its frames. None may crash the interpreter, leak memory, descriptors or
processes, or let one process corrupt another's world."""

from __future__ import annotations

import gc
import os
import resource
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

import ecs
from tests import introspect
from tests.components import Health, Mass, Position
from tests.memory_systems import Counter, count_up

ROOT = Path(__file__).resolve().parent.parent


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_closing_the_world_inside_a_query_loop_stops_the_loop_with_world_closed() -> None:
    world = ecs.World()
    world.spawn_batch(100, Position(x=1.0, y=2.0))
    world.spawn_batch(100, Position(x=1.0, y=2.0), Health())
    seen = []
    with pytest.raises(ecs.WorldClosedError, match=r"world.query\(\) called after world.close\(\)"):
        for batch in world.query(Position, changed=[Position]):
            seen.append(batch[Position].x.sum())
            world.close()
    assert seen == [100.0]


def test_a_world_dropped_without_close_releases_its_memory_and_warns() -> None:
    with ecs.World() as warm:      # whatever the first world opens for good (caches) is open now
        warm.spawn_batch(10, Position(x=0.0, y=0.0))
    gc.collect()
    before = (open_fds(), introspect.arena_mappings())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        world = ecs.World()
        world.spawn_batch(100_000, Position(x=0.0, y=0.0))
        assert introspect.arena_mappings() == before[1] + 1
        del world
    assert (open_fds(), introspect.arena_mappings()) == before
    assert any(issubclass(w.category, ResourceWarning) and "was never closed" in str(w.message) for w in caught)


def test_a_closed_world_gives_no_resource_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ecs.World() as world:
            world.spawn(Health())
        del world
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_closed_world_is_freed_by_reference_counting_alone(workers: int, tmp_path: Path) -> None:
    """Nothing a world made sits in a reference cycle once it is closed: it is freed at close and
    del, not at the next full garbage collection (whose cost grows with the user's heap: a loop
    that loaded and closed small worlds paid one every few hundred loads, 200 us a load)."""
    path = tmp_path / "w.ecs"

    def use_and_close() -> None:
        world = ecs.World(workers)
        ids = world.spawn_batch(200_000, Counter(value=0.0), Position(x=0.0, y=0.0))
        seen, gone = world.query(Counter, changed=[Counter]), world.query(Counter, removed=[Health])
        list(seen), list(gone)
        world.add_batch(ids[:10], Health(hp=1))
        world.remove_batch(ids[:5], Health)
        world.add(int(ids[20]), Mass(kg=1.0))
        world.remove(int(ids[20]), Position)
        world.despawn(int(ids[20]))
        world.add_system(count_up)
        world.step()
        world.run(frames=2)
        list(seen), list(gone)
        world.restore(world.snapshot())
        world.save(path)
        world.close()
        ecs.World.load(path).close()

    use_and_close()          # the first use compiles and caches what later ones reuse
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        use_and_close()
        gc.collect()
        ours = sorted({type(o).__qualname__ for o in gc.garbage
                       if type(o).__module__.split(".")[0] in ("ecs", "kernels", "tests")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert ours == []


def test_a_dropped_world_with_workers_stops_its_workers() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        world = ecs.World(workers=2)
        world.spawn_batch(200_000, Counter(value=0))      # enough rows to share: the workers start
        world.add_system(count_up)
        world.step()
        pids = introspect.worker_pids(world)
        del world
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_failed_constructor_leaks_no_descriptor_or_mapping(workers: int) -> None:
    """Under RLIMIT_AS the arena is what fits (16 GiB beyond what is mapped here), and the entity
    index of max_entities=2**32 (48 GiB) cannot be placed in it: the constructor fails after
    the arena exists."""
    before = (open_fds(), introspect.arena_mappings())
    gc.collect()
    introspect.release_spare_arena()   # else its reservation, counted below, is freed for the new arena
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (mapped + (16 << 30), hard))
    try:
        with pytest.raises(ecs.CapacityError, match="address space is exhausted"):
            ecs.World(workers, max_entities=2 ** 32)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    gc.collect()
    assert (open_fds(), introspect.arena_mappings()) == before


@pytest.mark.parametrize("workers", [0, 2])
def test_a_limit_that_leaves_no_room_for_an_arena_is_named_and_closes_nothing_twice(workers: int) -> None:
    """Under an RLIMIT_AS that leaves no 64 MiB, World() raises CapacityError naming the limit
    (it was a bare OSError), and the memfd it made is closed once: a collected half-made arena
    closed its number again, which by then named another file of the caller's."""
    gc.collect()
    introspect.release_spare_arena()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    before = open_fds()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + (16 << 20), hard))
    try:
        with pytest.raises(ecs.CapacityError, match=r"RLIMIT_AS \(\d+ MiB\) leaves no room for an arena of 64 MiB; "
                                                    r"raise the limit|address space is exhausted"):
            ecs.World(workers)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    mine = [os.open(os.devnull, os.O_RDONLY) for _ in range(8)]    # take the numbers a leaked closer would close
    gc.collect()
    try:
        for fd in mine:
            os.fstat(fd)
    finally:
        for fd in mine:
            os.close(fd)
    assert open_fds() == before


def test_thirty_worlds_coexist_and_each_can_create_tables() -> None:
    worlds = [ecs.World() for _ in range(30)]
    try:
        for world in worlds:
            world.spawn_batch(10, Position(x=0.0, y=0.0))
            world.spawn_batch(10, Position(x=0.0, y=0.0), Mass())
            assert len(world) == 20
    finally:
        for world in worlds:
            world.close()


FORK_SCRIPT = """
    import os, sys
    import numpy as np
    sys.path.insert(0, {root!r})
    import ecs
    from tests import introspect
    from tests.memory_systems import Counter, count_up

    if __name__ == "__main__":
        with ecs.World(workers=2) as world:
            ids = world.spawn_batch(200_000, Counter(value=0))   # enough rows to share: the workers start
            world.add_system(count_up)
            world.resources["grid"] = np.arange(1.0, 2049.0)
            changed = world.query(Counter, changed=[Counter])
            changed.count()
            world.step()                                         # every row changed: pending for `changed`
            pids = introspect.worker_pids(world)
            grid = world.resources["grid"]
            (batch,) = world.query(Counter)
            held = batch[Counter].value
            child = os.fork()
            if child == 0:
                grid[:] = -1.0       # held arrays are the child's own copies from here on
                held[:] = -7
                print("child sees its writes:", grid[0], held[0], flush=True)
                try:
                    world.resources["grid"]
                except ecs.WorldClosedError:
                    print("child: resources refused", flush=True)
                try:
                    world.spawn(Counter(value=5))
                except ecs.WorldClosedError as exc:
                    print("child:", exc, flush=True)
                for touch in (lambda: world.resources.__setitem__("grid", np.zeros(3)),
                              lambda: world.resources.__delitem__("grid")):
                    try:
                        touch()
                    except ecs.WorldClosedError:
                        print("child: resources refused", flush=True)
                changed.close()      # its reader's bits are the parent's: left alone
                world.close()
                sys.exit(0)          # a normal exit: multiprocessing's exit handler runs
            os.waitpid(child, 0)
            print("parent kept:", world.resources["grid"].sum(), changed.count(), flush=True)
            world.step()
            alive = all(os.path.exists(f"/proc/{{pid}}") for pid in pids)
            print("parent:", len(world), world.get(int(ids[0]), Counter).value, alive,
                  introspect.worker_pids(world) == pids, flush=True)
"""


def test_a_forked_child_cannot_touch_the_parents_world_or_workers(tmp_path) -> None:
    script = tmp_path / "fork_world.py"
    script.write_text(textwrap.dedent(FORK_SCRIPT.format(root=str(ROOT))))
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("child: world.spawn() called in a process forked from the one that made the "
                               "world") for line in lines), done.stdout
    assert lines.count("child: resources refused") == 3, done.stdout
    assert "child sees its writes: -1.0 -7.0" in lines, done.stdout
    assert "parent kept: 2098176.0 200000" in lines, done.stdout
    assert "parent: 200000 2.0 True True" in lines, done.stdout


def test_a_second_thread_cannot_run_frames_while_one_runs_them() -> None:
    with ecs.World() as world:
        world.spawn_batch(1_000_000, Counter(value=0))
        world.add_system(count_up)
        world.step()
        runner = threading.Thread(target=world.run, kwargs={"frames": 400})
        runner.start()
        refused = 0
        while runner.is_alive():
            try:
                world.step()
            except ecs.ConcurrentUseError as exc:
                assert "another thread is running this world's frames" in str(exc)
                refused += 1
            time.sleep(0.001)
        runner.join()
        assert refused > 0
        value = int(world.get(int(world.query(Counter).entities()[0]), Counter).value)
        assert value == world.stats()["count_up"]["calls"] == 1 + 400 + (world.stats()["count_up"]["calls"] - 401)
        assert value >= 401     # the run's 400 frames and every step that was let through, each once


@pytest.mark.parametrize("call", ["close", "remove_system", "step", "run"])
def test_frames_cannot_be_closed_or_rerun_from_their_own_callbacks(call: str) -> None:
    """A recorder reduction runs inside step()/run(), in the thread that holds the frames:
    close() or remove_system() there would wait for the frames forever, step() or run() would
    run frames inside a frame. Each raises ConcurrentUseError saying so; the world goes on."""
    with ecs.World() as world:
        world.spawn_batch(10, Counter(value=0))
        world.add_system(count_up)
        actions = {"close": world.close, "remove_system": lambda: world.remove_system(count_up),
                   "step": world.step, "run": lambda: world.run(frames=2)}

        def reduction(w: ecs.World) -> float:
            actions[call]()
            return 0.0
        recorder = world.record(Counter, every=1, reductions={"r": reduction})
        with pytest.raises(ecs.ConcurrentUseError, match=rf"world.{call}\(\) called from inside this world's "
                                                         rf"running step\(\)/run\(\)"):
            world.step()
        recorder.close()
        world.step()
        assert world.stats()["count_up"]["calls"] >= 1
    assert len(world) == 10


THREADED_READER_SCRIPT = """
import sys, threading, time
sys.path.insert(0, {root!r})
import ecs
from tests.memory_systems import Counter, count_up

with ecs.World() as world:
    world.spawn_batch(200_000, Counter(value=0))
    world.add_system(count_up)
    changed, everything = world.query(Counter, changed=[Counter]), world.query(Counter)
    stop = time.monotonic() + {seconds}

    def runner():
        while time.monotonic() < stop:
            world.run(frames=20)

    def reader():
        while time.monotonic() < stop:
            for batch in changed:
                assert batch.rows.shape[0] <= len(batch)
            changed.count(), everything.entities()

    threads = [threading.Thread(target=runner), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
print("survived")
"""


def test_a_changed_query_read_while_another_thread_runs_frames_never_writes_out_of_bounds(tmp_path) -> None:
    """Unguarded (the README says so), but memory-safe: the kernels that take set bits counted
    them and then wrote them while a nogil kernel set more (the heap was corrupted: abort)."""
    script = tmp_path / "threaded_reader.py"
    script.write_text(THREADED_READER_SCRIPT.format(root=str(ROOT), seconds=3))
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "survived", done.stderr[-2000:]


def test_close_from_another_thread_waits_for_the_running_frames() -> None:
    world = ecs.World()
    world.spawn_batch(1_000_000, Counter(value=0))
    world.add_system(count_up)
    world.step()
    runner = threading.Thread(target=world.run, kwargs={"frames": 200})
    runner.start()
    time.sleep(0.01)
    world.close()            # must not free the columns under the running kernels
    runner.join()
    with pytest.raises(ecs.WorldClosedError):
        world.step()

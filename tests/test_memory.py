"""Leak proof for ecs/memory.py's design: one arena per world (a memfd where workers map it, else
private memory), nothing named anywhere.

Nothing may appear in /dev/shm, whatever happens to the world: close(), an exception inside
`with`, interpreter exit without close(), SIGKILL of the process (or of its process group,
workers included). close() gives back the descriptor (if any) at once and the mapping as soon as no
view is held; views held by user code stay readable after close(). Table columns are
fixed-address reservations: a view taken early stays valid while the table grows to millions
of rows.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ecs
from ecs import memory
from tests import introspect
from tests.components import Health, Position, Tint, Velocity

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHM = pathlib.Path("/dev/shm")


def shm_entries() -> set[str]:
    return set(os.listdir(SHM)) if SHM.is_dir() else set()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def collect_earlier_garbage():
    """Free what earlier tests left to the cyclic gc first, so it cannot close a descriptor or
    unmap an arena in the middle of a test's count."""
    gc.collect()


def arena_mappings(pid: int | str = "self") -> int:
    return introspect.arena_mappings(pid)


def use_world(world: ecs.World) -> None:
    ids = world.spawn_batch(5000, Position(x=np.arange(5000), y=0), Velocity(x=1, y=1))
    world.spawn_batch(100, Tint(rgb=[1, 2, 3]))
    world.add(int(ids[0]), Health())
    world.despawn_batch(ids[::3])
    world.set_batch(ids[1::3], Position(x=-1, y=-1))
    world.resources["grid"] = np.zeros((64, 64), np.int32)
    list(world.query(Position, changed=[Position]))


def run_script(body: str, timeout: float = 60) -> subprocess.CompletedProcess:
    script = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def shm_before():
    before = shm_entries()
    yield before
    assert shm_entries() - before == set()


@pytest.fixture(scope="module", autouse=True)
def warm_imports():
    """Open and close one world first, so lazily opened files do not count against a baseline."""
    with ecs.World() as world:
        use_world(world)


# ---------------------------------------------------------------- this process
@pytest.mark.parametrize("workers", [0, 2])
def test_worlds_leave_nothing_in_dev_shm_and_give_back_their_memory(shm_before, workers) -> None:
    fds, mappings = open_fds(), arena_mappings()
    for _ in range(3):
        world = ecs.World(workers=workers)
        assert arena_mappings() == mappings + 1
        if workers:
            assert open_fds() > fds         # the memfd workers map (and the mapping's own duplicate)
        use_world(world)
        assert shm_entries() == shm_before   # memfd segments have no name
        world.close()
        assert (open_fds(), arena_mappings()) == (fds, mappings)
    world.close()                            # idempotent
    assert (open_fds(), arena_mappings()) == (fds, mappings)


def test_an_exception_inside_with_leaves_nothing_behind(shm_before) -> None:
    fds, mappings = open_fds(), arena_mappings()
    with pytest.raises(RuntimeError, match="boom"), ecs.World() as world:
        use_world(world)
        raise RuntimeError("boom")
    assert open_fds() == fds
    assert arena_mappings() == mappings


def test_close_unmaps_the_arena_while_the_world_object_lives() -> None:
    gc.collect()
    before = arena_mappings()      # other tests' worlds, if any are still referenced
    world = ecs.World()
    use_world(world)
    assert arena_mappings() == before + 1
    world.close()
    assert arena_mappings() == before   # without waiting for `del world` or a cyclic gc
    assert len(world) == 3433 and "closed" in repr(world)


def test_a_view_held_by_user_code_keeps_the_mapping_until_dropped() -> None:
    gc.collect()
    fds, before = open_fds(), arena_mappings()
    world = ecs.World()
    world.spawn_batch(10, Position(x=np.arange(10), y=0))
    (batch,) = world.query(Position)
    xs = batch[Position].x
    world.close()
    assert arena_mappings() == before + 1
    assert xs.tolist() == list(range(10))
    del batch, xs
    assert arena_mappings() == before
    assert open_fds() == fds


def test_a_closed_small_worlds_memory_serves_the_next_world_which_reads_it_as_new() -> None:
    world = ecs.World()
    use_world(world)
    base = introspect.arena(world).base
    world.close()
    assert memory.spare_mappings() == 1
    with ecs.World() as again:
        assert introspect.arena(again).base == base      # the same mapping, taken once
        assert memory.spare_mappings() == 0
        ids = again.spawn_batch(5000, Position(x=np.arange(5000), y=0), Velocity(x=1, y=1))
        assert ids.tolist() == list(range(1, 5001))      # a fresh entity index
        changed = again.query(Position, changed=[Position])
        assert sum(len(b) for b in changed) == 5000
        assert sum(len(b) for b in changed) == 0        # nothing marked but the spawn
        assert sum(len(b) for b in again.query(Health)) == 0 and sum(len(b) for b in again.query(Tint)) == 0
        (batch,) = again.query(Position, Velocity)
        assert batch[Position].x.tolist() == list(range(5000)) and set(batch[Velocity].y.tolist()) == {1.0}
        del batch                                        # a view left would keep the mapping from reuse
    assert memory.spare_mappings() == 1


def test_a_spare_arena_is_zero_wherever_the_next_commits() -> None:
    first = memory.Arena(memory.ARENA_BYTES_MIN, shared=False)
    small, large = first.allocate(64 << 10), first.allocate(4 << 20)
    small.commit(64 << 10)
    large.commit(3 << 20)
    large.commit_range(1 << 20, 64 << 10)                # overlapping commits are zeroed once
    small.view(np.uint8, (64 << 10,))[:] = 0xFF
    large.view(np.uint8, (3 << 20,))[:] = 0xFF
    first.close()
    second = memory.Arena(memory.ARENA_BYTES_MIN, shared=False)
    try:
        assert second.base == first.base
        same = second.allocate(64 << 10)                # where the first small region was: resident
        same.commit(32 << 10)
        assert not same.view(np.uint8, (32 << 10,)).any()
        region = second.allocate(8 << 20)               # across both earlier regions
        region.commit(8 << 20)
        assert not region.view(np.uint8, (8 << 20,)).any()
    finally:
        second.close()


def test_pages_a_spare_brought_that_the_next_world_left_uncommitted_are_given_back() -> None:
    first = memory.Arena(memory.ARENA_BYTES_MIN, shared=False)
    first.allocate(64 << 10).commit(64 << 10)
    first.close()
    second = memory.Arena(memory.ARENA_BYTES_MIN, shared=False)
    second.allocate(64 << 10)                            # not committed this time
    second.allocate(64 << 10).commit(32 << 10)
    second.close()
    third = memory.Arena(memory.ARENA_BYTES_MIN, shared=False)
    try:
        assert third.base == first.base
        assert third.committed_bytes() == 32 << 10     # the first arena's 64 KiB went back
    finally:
        third.close()


def test_an_arena_with_a_view_left_or_more_than_spare_bytes_committed_is_unmapped() -> None:
    gc.collect()
    held = memory.Arena(memory.ARENA_BYTES_MIN, shared=False)
    region = held.allocate(4096)
    region.commit(4096)
    view = region.view(np.uint8, (4096,))
    view[:] = 7
    mappings = arena_mappings()
    held.close()
    assert introspect.spare_arena_base() != held.base
    assert arena_mappings() == mappings and view.tolist() == [7] * 4096   # the view keeps it mapped
    del view
    assert arena_mappings() == mappings - 1
    big = memory.Arena(memory.ARENA_BYTES_MIN, shared=False)
    big.allocate(memory.SPARE_BYTES + 4096).commit(memory.SPARE_BYTES + 4096)
    big.close()
    assert introspect.spare_arena_base() != big.base
    assert arena_mappings() == mappings - 1


def test_many_closed_worlds_do_not_exhaust_the_address_space() -> None:
    sizes = []
    kept = []
    for _ in range(24):   # each arena reserves up to 1 TiB; 128 TiB of address space in all
        world = ecs.World()
        world.spawn_batch(100, Position(x=0, y=0))
        sizes.append(introspect.arena(world).size)
        world.close()
        kept.append(world)
    assert len(set(sizes)) == 1


def memfd_mappings() -> int:
    with open("/proc/self/maps") as maps:
        return sum("memfd:ecs-world" in line for line in maps)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_only_a_world_with_workers_maps_a_memfd() -> None:
    arenas, memfds = arena_mappings(), memfd_mappings()
    with ecs.World() as alone, ecs.World(workers=2) as shared:
        use_world(alone)
        use_world(shared)
        assert (arena_mappings(), memfd_mappings()) == (arenas + 2, memfds + 1)
        assert introspect.arena(alone).shared is False and introspect.arena(shared).shared is True
    assert (arena_mappings(), memfd_mappings()) == (arenas, memfds)


def huge_pages_advised(array: np.ndarray) -> bool:
    """Whether the mapping that holds `array` carries MADV_HUGEPAGE ("hg" in smaps' VmFlags). The
    advice is what the arena controls; whether the kernel then finds free huge pages depends on
    the machine's memory (fragmentation), so tests check the advice, not the pages."""
    address = array.ctypes.data
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(" ", 1)[0]
            if "-" in head and line[0] in "0123456789abcdef":
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= address < end
            elif inside and line.startswith("VmFlags:"):
                return "hg" in line.split()[1:]
    raise AssertionError("no mapping holds the array")


def test_large_columns_of_a_world_without_workers_get_huge_pages_and_small_ones_do_not() -> None:
    gc.collect()
    before_resident = resident_bytes()
    with ecs.World() as world:
        tags = [ecs.component(type(f"Small{i}", (), {"__annotations__": {"v": ecs.f32}})) for i in range(26)]
        for tag in tags:
            world.spawn_batch(20, Position(x=0, y=0), tag(v=0.0))
        grown = resident_bytes() - before_resident
        assert grown < 8 << 20, grown        # 26 tables of 4 KiB pages, not 2 MiB pages each
        world.spawn_batch(1_000_000, Velocity(x=1, y=2))
        (small, *_), (large,) = world.query(Position), world.query(Velocity)
        assert not huge_pages_advised(small[Position].x)
        assert huge_pages_advised(large[Velocity].x) and huge_pages_advised(large.entities)
        assert large[Velocity].x.shape == (1_000_000,) and (large[Velocity].y == 2).all()


def test_without_huge_pages_large_columns_are_populated_in_small_pages(monkeypatch) -> None:
    introspect.without_huge_pages(monkeypatch)
    with ecs.World() as world:
        world.spawn_batch(1_000_000, Velocity(x=1, y=2))
        (batch,) = world.query(Velocity)
        assert not huge_pages_advised(batch[Velocity].x)
        assert introspect.arena(world).committed_bytes() >= 8_000_000   # two 4 MB columns, resident
        ids = batch.entities
        world.set_batch(ids[-3:], Velocity(x=5, y=6))
        assert batch[Velocity].x[-3:].tolist() == [5, 5, 5] and batch[Velocity].y.sum() == 2 * 999_997 + 18


def test_a_world_without_workers_falls_back_to_a_memfd_where_private_memory_is_refused(monkeypatch) -> None:
    introspect.refuse_private_arenas(monkeypatch)
    memfds = memfd_mappings()
    with ecs.World() as world:
        use_world(world)
        assert memfd_mappings() == memfds + 1
        assert world.query(Position).count() > 0
    assert memfd_mappings() == memfds


# ---------------------------------------------------------------- other processes
def test_a_process_that_exits_without_close_leaves_nothing(shm_before) -> None:
    result = run_script("""
        import numpy as np
        import ecs
        from tests.components import Position
        world = ecs.World()
        world.spawn_batch(100_000, Position(x=np.arange(100_000), y=0))
        world.resources["grid"] = np.ones((128, 128))
        print("done")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done" and result.stderr == ""


def test_a_process_killed_with_sigkill_leaves_nothing(shm_before) -> None:
    script = f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        import ecs
        from tests.components import Position
        world = ecs.World()
        world.spawn_batch(100_000, Position(x=np.arange(100_000), y=0))
        print("ready", flush=True)
        time.sleep(60)
    """
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert arena_mappings(child.pid) == 1
    finally:
        child.kill()
        child.wait(10)
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL


def _pid_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


WORKER_SCRIPT = """
    import sys, time
    sys.path.insert(0, {root!r})
    import numpy as np
    import ecs
    from tests import introspect
    from tests.memory_systems import Counter, count_up

    if __name__ == "__main__":
        world = ecs.World(workers=2)
        world.spawn_batch(200_000, Counter(value=0))     # enough rows to share: the workers start
        world.add_system(count_up)
        world.step()
        print(" ".join(map(str, introspect.worker_pids(world))), flush=True)
        time.sleep(60)
"""


@pytest.mark.parametrize("whole_group", [True, False], ids=["process group", "main process only"])
def test_killing_a_world_with_workers_leaves_nothing(shm_before, tmp_path, whole_group: bool) -> None:
    script = tmp_path / "world_with_workers.py"
    script.write_text(textwrap.dedent(WORKER_SCRIPT.format(root=str(ROOT))))
    child = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        line = child.stdout.readline().split()
        assert line, "the world with workers did not start"
        workers = [int(pid) for pid in line]
        assert len(workers) == 2
    finally:
        if whole_group:
            os.killpg(child.pid, signal.SIGKILL)
        else:
            child.kill()
        child.wait(10)
        child.stdout.close()
    try:
        for pid in workers:
            assert _pid_gone(pid, within=10), f"worker {pid} outlived its world's process"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)   # never leave strays behind, whatever happened


CLOSE_WITH_WORKERS_SCRIPT = """
    import sys
    sys.path.insert(0, {root!r})
    import ecs
    from tests import introspect
    from tests.memory_systems import Counter, count_up

    def mappings():
        with open("/proc/self/maps") as maps:
            return sum("memfd:ecs-world" in line for line in maps)

    if __name__ == "__main__":
        world = ecs.World(workers=2)
        world.spawn_batch(200_000, Counter(value=0))     # enough rows to share: the workers start
        world.add_system(count_up)
        world.step()
        world.close()
        print(mappings(), flush=True)
"""


def test_close_unmaps_the_arena_of_a_world_with_workers(tmp_path) -> None:
    script = tmp_path / "close_with_workers.py"
    script.write_text(textwrap.dedent(CLOSE_WITH_WORKERS_SCRIPT.format(root=str(ROOT))))
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_views_taken_before_close_stay_readable_after_close() -> None:
    result = run_script("""
        import gc
        import numpy as np
        import ecs
        from tests.components import Position, Tint

        world = ecs.World()
        world.spawn_batch(50_000, Position(x=np.arange(50_000), y=1), Tint(rgb=[1, 2, 3]))
        world.resources["grid"] = np.arange(1000.0)
        (batch,) = world.query(Position, Tint)
        xs, rgb, ids = batch[Position].x, batch[Tint].rgb, batch.entities
        grid = world.resources["grid"]
        world.close()
        gc.collect()
        assert xs.sum() == np.arange(50_000, dtype=np.float32).sum()
        assert (rgb == [1, 2, 3]).all() and ids.shape == (50_000,)
        assert grid.sum() == np.arange(1000.0).sum()
        xs[:] = 7          # still writable memory, not a dangling pointer
        assert xs.sum() == 7 * 50_000
        del world
        gc.collect()
        assert xs[49_999] == 7 and grid[999] == 999
        print("readable")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "readable"


# ---------------------------------------------------------------- fixed-address growth
def test_columns_are_fixed_reservations_that_stay_valid_while_a_table_grows(world: ecs.World) -> None:
    first = world.spawn_batch(1, Position(x=-1, y=-1))
    table = introspect.tables(world)[0]
    xs_full = table.columns_by_component[Position.__ecs_component__.id]["x"]
    ids_full = table.entities_all
    address = xs_full.__array_interface__["data"][0]
    capacity = table.capacity
    total = 1
    for n in (0, 1_000, 250_000, 749_000, 999_999):
        world.spawn_batch(n, Position(x=np.arange(total, total + n), y=0))
        total += n
    assert total == 2_000_000 and len(world) == 2_000_000 and table.n == 2_000_000
    assert table.capacity > capacity
    assert table.columns_by_component[Position.__ecs_component__.id]["x"] is xs_full
    assert xs_full.__array_interface__["data"][0] == address
    assert xs_full[0] == -1 and ids_full[0] == first[0]
    assert (xs_full[1:2_000_000] == np.arange(1, 2_000_000, dtype=np.float32)).all()
    xs_full[1_999_999] = 42           # writes through the early view land in the live column
    assert world.get(int(ids_full[1_999_999]), Position).x == 42


@pytest.mark.parametrize("workers", [0, 1])
def test_the_columns_of_a_table_lie_at_different_offsets_within_a_page(workers: int) -> None:
    """Streaming kernels read one column and write another row by row; columns at one offset
    modulo 4 KiB make those loads and stores alias in the CPU (Table._reserve). Every column of
    a table of up to 8 columns, its ids included, starts at its own offset, 64-byte aligned."""
    with ecs.World(workers=workers) as world:
        world.spawn_batch(10, Position(x=0, y=0), Velocity(x=0, y=0), Health(hp=1))
        batch = next(iter(world.query(Position, Velocity, Health)))
        columns = [batch.entities, batch[Position].x, batch[Position].y, batch[Velocity].x, batch[Velocity].y,
                   batch[Health].hp]
        offsets = [column.ctypes.data % 4096 for column in columns]
        assert len(set(offsets)) == len(columns)
        assert all(offset % 64 == 0 for offset in offsets)


def test_memory_refused_while_pages_are_populated_is_an_error_of_that_call_and_no_more(monkeypatch) -> None:
    """MADV_POPULATE_WRITE refused with ENOMEM: the growth call raises it (nothing is populated
    behind the caller's back), and populating stays on for later calls; only EINVAL (a kernel
    without the advice) turns it off."""
    import errno
    import mmap

    from ecs import memory
    refuse = {"errno": errno.ENOMEM}

    class Refusing(mmap.mmap):
        def madvise(self, option, *args):
            if option == memory.MADV_POPULATE_WRITE and refuse["errno"]:
                raise OSError(refuse["errno"], "refused for the test")
            return super().madvise(option, *args)

    introspect.release_spare_arena()
    monkeypatch.setattr(mmap, "mmap", Refusing)
    monkeypatch.setattr(memory, "_populate_supported", True)
    introspect.without_huge_pages(monkeypatch)        # every commit populates
    with ecs.World() as world:
        with pytest.raises(OSError, match="refused for the test"):
            world.spawn_batch(300_000, Velocity(x=1, y=2))
        assert memory._populate_supported and len(world) == 0
        refuse["errno"] = errno.EINVAL
        world.spawn_batch(300_000, Velocity(x=1, y=2))
        assert not memory._populate_supported and len(world) == 300_000

"""ecs/workers.py faults: a kernel that raises, a worker killed by a signal or a segfault, a frame
past step_timeout; and what is left behind after close(), each fault, Ctrl-C and SIGKILL.

In-process tests share one world per module (worker start-up is the slow part). Leak and orphan
scenarios each run in a child Python process started from a script in tmp_path; every process
the child starts (the forkserver, the workers, their replacements) inherits a unique
environment marker, so survivors are found by that marker whoever their parent is by then.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import ecs
from ecs import KernelError, WorkerCrashedError
from ecs.plan import SPLIT_MIN_ROWS, split_rows
from tests import introspect
from tests.worker_systems import (
    Charge,
    GameRuleError,
    Hp,
    Pos,
    Vel,
    crash_and_hang,
    decay,
    integrate,
    kill_workers,
    saboteur,
    slow_frame,
)

ROOT = Path(__file__).resolve().parent.parent
ROWS = SPLIT_MIN_ROWS + 4_464
RAISE, SIGKILL_SELF, SEGFAULT, ENDLESS, USER_RAISE = 1, 2, 3, 4, 5
QUIET = {"mode": 0, "target": -1}


# ==================================================================== in-process faults
def populate(world: ecs.World) -> int:
    """A table cut into several units; returns an entity in its last rows."""
    world.add_system(integrate)
    world.add_system(saboteur)
    world.spawn_batch(ROWS, Pos(x=np.arange(ROWS) % 1000, y=0), Vel(x=np.arange(ROWS) % 5, y=1), Hp())
    world.spawn_batch(50, Pos(x=1, y=1), Vel(x=1, y=1))           # a small table, no Hp
    world.step(dt=1.0, **QUIET)
    if world.workers:
        assert len(split_rows(ROWS, introspect.plan(world).processes)) > 2
    return int(world.query(Hp).entities()[-1])


@pytest.fixture(scope="module")
def faulty() -> Iterator[tuple[ecs.World, int]]:
    # a step_timeout no frame reaches: the main process only supervises, so the units that crash
    # are surely run by workers (test_a_worker_crash_while_the_main_process_takes_part has it take part)
    with ecs.World(workers=2, step_timeout=120.0) as world:
        target = populate(world)
        yield world, target


def metadata(world: ecs.World) -> dict:
    ids = world.query(Pos).entities()
    return {"len": len(world), "ids": ids.tolist(), "alive": all(world.is_alive(int(e)) for e in ids[::101]),
            "has_hp": [world.has(int(e), Hp) for e in ids[::503]],
            "vel": [world.get(int(e), Vel).x for e in ids[::211]]}


def assert_usable(world: ecs.World, before: dict) -> None:
    """Entity metadata is what it was, and the next frame runs every row exactly once."""
    assert metadata(world) == before
    x0 = {int(e): world.get(int(e), Pos).x for e in world.query(Pos).entities()[::97]}
    world.step(dt=1.0, **QUIET)
    for entity, x in x0.items():
        assert world.get(entity, Pos).x == x + world.get(entity, Vel).x


@pytest.mark.parametrize("workers", [0, 2])
def test_kernel_error_names_the_system_and_chains_the_kernels_exception(faulty, workers: int) -> None:
    if workers:
        world, target = faulty
    else:
        world = ecs.World(workers=0)
        target = populate(world)
    try:
        world.set(target, Hp(hp=-5))
        before = metadata(world)
        pids = introspect.worker_pids(world) if workers else None
        with pytest.raises(KernelError, match=r"system 'saboteur' raised ValueError: "
                                              r"\('negative hp at entity', \d+, -5\)") as caught:
            world.step(dt=1.0, mode=RAISE, target=target)
        assert caught.value.system == "saboteur"
        assert isinstance(caught.value, RuntimeError)
        cause = caught.value.__cause__
        assert type(cause) is ValueError
        assert cause.args == ("negative hp at entity", target, -5)
        if workers:
            assert introspect.worker_pids(world) == pids       # a kernel error kills no worker
        assert_usable(world, before)
    finally:
        if not workers:
            world.close()


def test_a_user_exception_class_crosses_from_the_worker(faulty) -> None:
    world, target = faulty
    before = metadata(world)
    message = "system 'saboteur' raised GameRuleError: entity broke a rule"
    with pytest.raises(KernelError, match=message) as caught:
        world.run(5, dt=1.0, mode=USER_RAISE, target=target)
    assert type(caught.value.__cause__) is GameRuleError
    assert caught.value.__cause__.args == ("entity broke a rule",)
    assert_usable(world, before)


@pytest.mark.parametrize(("mode", "signum"), [(SIGKILL_SELF, signal.SIGKILL), (SEGFAULT, signal.SIGSEGV)],
                         ids=["sigkill", "segfault"])
def test_a_worker_killed_by_a_signal_is_named_and_replaced(faulty, mode: int, signum: signal.Signals) -> None:
    world, target = faulty
    before = metadata(world)
    pids = introspect.worker_pids(world)
    message = (rf"worker [01] was killed by signal {int(signum)} \({signum.name}\) while running system "
               r"'saboteur'; it was replaced")
    with pytest.raises(WorkerCrashedError, match=message) as caught:
        world.step(dt=1.0, mode=mode, target=target)
    error = caught.value
    assert (error.system, error.exitcode) == ("saboteur", -int(signum))
    assert error.__cause__ is None
    after = introspect.worker_pids(world)
    crashed, kept = error.worker, 1 - error.worker      # whichever claimed the target's unit
    assert after[kept] == pids[kept]                     # the worker that did not crash is kept
    assert after[crashed] != pids[crashed]
    assert_usable(world, before)
    assert introspect.worker_pids(world) == after


@pytest.mark.parametrize("settled", [True, False], ids=["dead", "dying"])
def test_a_worker_killed_while_idle_is_replaced_at_the_next_step(faulty, settled: bool) -> None:
    world, _ = faulty
    before = metadata(world)
    pids = introspect.worker_pids(world)
    os.kill(pids[0], signal.SIGKILL)
    deadline = time.monotonic() + 5
    if settled:   # until the death is known here: the forkserver reaps and reports it (slowly on a loaded machine)
        select.select([introspect.worker_sentinel(world, 0)], [], [], 5.0)
    try:
        world.step(dt=1.0, **QUIET)                 # a dead idle worker ran nothing: just replace it
    except WorkerCrashedError as error:           # still dying when the step was sent: reported
        assert not settled
        assert error.worker == 0 and error.exitcode == -signal.SIGKILL
    if not settled:     # the step may have ended (the other worker ran its units) before the death was final
        while _running(pids[0]) and time.monotonic() < deadline:
            time.sleep(0.01)
        world.step(dt=1.0, **QUIET)
    assert introspect.worker_pids(world)[0] != pids[0]
    assert introspect.worker_pids(world)[1] == pids[1]
    assert_usable(world, before)


def test_a_frame_past_step_timeout_kills_and_replaces_the_workers_still_running() -> None:
    with ecs.World(workers=2, step_timeout=1.0) as world:
        target = populate(world)
        before = metadata(world)
        pids = introspect.worker_pids(world)
        message = r"worker [01] ran past step_timeout=1.0 s per frame and was killed while running system 'sabot"
        with pytest.raises(WorkerCrashedError, match=message) as caught:
            world.step(dt=1.0, mode=ENDLESS, target=target)
        assert (caught.value.system, caught.value.exitcode) == ("saboteur", None)
        after = introspect.worker_pids(world)
        stuck, kept = caught.value.worker, 1 - caught.value.worker
        assert after[stuck] != pids[stuck]
        assert after[kept] == pids[kept]           # it was inside no kernel: nothing to kill
        assert_usable(world, before)


def test_a_crash_while_another_worker_is_stuck_in_a_kernel_replaces_both() -> None:
    with ecs.World(workers=2, step_timeout=120.0) as world:      # kernels run in the workers only
        world.add_system(crash_and_hang)
        world.spawn_batch(ROWS, Hp())
        ids = world.query(Hp).entities()
        world.step(kill=-1, hang=-1)
        pids = introspect.worker_pids(world)
        message = r"worker [01] was killed by signal 9 \(SIGKILL\) while running system 'crash_and_hang'"
        with pytest.raises(WorkerCrashedError, match=message):
            world.step(kill=int(ids[-1]), hang=int(ids[0]))   # the other never returns: killed after a grace
        assert not set(introspect.worker_pids(world)) & set(pids)
        world.step(kill=-1, hang=-1)
        assert len(world) == ROWS


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the main process takes part only beside a free core")
def test_a_worker_crash_while_the_main_process_takes_part_is_named_and_replaced() -> None:
    with ecs.World(workers=1) as world:              # one worker and this process share the units
        world.spawn_batch(ROWS, Hp())
        world.add_system(kill_workers)
        pids = introspect.worker_pids(world) if introspect.worker_pool(world) else []
        message = r"worker 0 was killed by signal 9 \(SIGKILL\) while running system 'kill_workers'"
        with pytest.raises(WorkerCrashedError, match=message):
            world.run(frames=40)                     # this process sleeps 50 ms a unit: the worker claims one
        assert introspect.worker_pids(world) != pids
        world.remove_system(kill_workers)
        world.add_system(integrate)
        first = int(world.spawn_batch(ROWS, Pos(x=0, y=0), Vel(x=1, y=2))[0])
        world.run(frames=4, dt=1.0)                  # usable again, on a new worker
        assert (world.get(first, Pos).x, world.get(first, Pos).y) == (4, 8)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_kernel_error_in_any_process_names_the_system(workers: int) -> None:
    """The main process takes units too (where the workers leave it a core): a kernel that raises
    there or in a worker is reported the same way, and the world goes on."""
    with ecs.World(workers=workers) as world:
        target = populate(world)
        before = metadata(world)
        for _ in range(3):
            with pytest.raises(KernelError, match=r"system 'saboteur' raised ValueError"):
                world.run(4, dt=1.0, mode=RAISE, target=target)
        assert_usable(world, before)


UNGUARDED_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import ecs
from tests.worker_systems import Charge, decay

world = ecs.World(workers=1)          # at module level, without the __main__ guard
world.spawn_batch(200_000, Charge(kg=1.0))   # enough rows to share: the first run starts the worker
world.add_system(decay)
try:
    world.step(dt=1.0)
    print("stepped")
except ecs.WorkerCrashedError as error:
    print("error:", error, error.system)
world.close()
"""


def test_a_script_that_makes_a_world_without_the_main_guard_is_told_so(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT.format(root=str(ROOT)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("error: worker 0 exited with status 1 while starting; it was replaced and the "
                                  "world is usable; worker processes import the main script before they start: "
                                  'a script that makes a World with workers must do so under `if __name__ == '
                                  '"__main__":` (its error is on stderr) None'), done.stdout


def test_a_failed_run_leaves_the_frame_count_where_a_run_in_this_process_would() -> None:
    """every=N counts frames from the first step: a run that fails in its second frame must leave
    the same count for any worker count, or every=N systems drift out of phase."""
    seen = []
    for workers in (0, 2):
        with ecs.World(workers=workers) as world:
            target = populate(world)                       # frame 0
            world.add_system(decay)
            world.spawn_batch(ROWS, Charge(kg=np.arange(ROWS) * 0.25))
            world.step(dt=1.0, **QUIET)                     # frame 1
            with pytest.raises(KernelError):
                world.run(6, dt=1.0, mode=RAISE, target=target)   # fails in frame 2
            world.run(4, dt=1.0, **QUIET)
            calls = {name: s["calls"] for name, s in world.stats().items()}
            seen.append((calls, np.concatenate([b[Charge].kg for b in world.query(Charge)]).tobytes()))
    assert seen[0][0] == seen[1][0]
    assert seen[0][1] == seen[1][1]


# ==================================================================== leaks and orphans
PRELUDE = '''
import gc, json, os, signal, sys, time
import multiprocessing.forkserver as forkserver
import numpy as np
import ecs
from tests import introspect
from tests.worker_systems import Hp, Pos, Vel, integrate, saboteur, slow_frame

QUIET = {"mode": 0, "target": -1, "spins": 1}


def fds():
    return sorted(os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                  if os.path.exists(f"/proc/self/fd/{fd}"))


def report(world, phase, **extra):
    print(json.dumps({"phase": phase, "main": os.getpid(), "workers": introspect.worker_pids(world),
                      "forkserver": forkserver._forkserver._forkserver_pid, "fds": len(fds()), **extra}),
          flush=True)


def make_world(**options):
    world = ecs.World(workers=2, **options)
    for s in (integrate, saboteur, slow_frame):
        world.add_system(s)
    n = ROWS
    world.spawn_batch(n, Pos(x=np.arange(n) % 1000, y=0), Vel(x=1, y=0), Hp())
    world.step(dt=1.0, **QUIET)
    return world


def main():
'''.replace("ROWS", str(ROWS))

MAIN = '''

if __name__ == "__main__":
    main()
'''


class Child:
    """A Python process running one scenario script; its stdout lines are JSON reports."""

    def __init__(self, tmp_path: Path, body: str, new_session: bool = False) -> None:
        script = tmp_path / "scenario.py"
        script.write_text(PRELUDE + textwrap.indent(textwrap.dedent(body), "    ") + MAIN)
        self.marker = uuid.uuid4().hex
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "ECS_TEST_SCENARIO": self.marker}
        self.shm_before = set(os.listdir("/dev/shm"))
        self.process = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=new_session)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        self.pids: set[int] = set()
        # workers inherit both pipes: read them in threads, so no read waits on an orphan
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines.put), daemon=True).start()
        self._stderr_reader = threading.Thread(target=self._read, daemon=True,
                                               args=(self.process.stderr, self.stderr_lines.append))
        self._stderr_reader.start()

    @staticmethod
    def _read(stream, put) -> None:
        for line in stream:
            put(line)
        put(None)

    def report(self, phase: str, timeout: float = 60.0) -> dict:
        """The next report, which must be `phase`; records every pid it names."""
        line = self.lines.get(timeout=timeout)
        assert line is not None, f"the scenario ended before reporting {phase!r}: {self.finish()[1]}"
        data = json.loads(line)
        assert data["phase"] == phase, data
        self.pids |= {data["main"], data["forkserver"], *data["workers"]}
        return data

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        """Wait for the process to end; its return code and what it wrote to stderr."""
        code = self.process.wait(timeout)
        self._stderr_reader.join(5.0)
        return code, "".join(line for line in list(self.stderr_lines) if line is not None)

    def survivors(self, wait: float = 3.0) -> list[int]:
        """Processes of this scenario still running (zombies count as gone) after up to `wait` s."""
        deadline = time.monotonic() + wait
        while True:
            alive = sorted(set(_marked_processes(self.marker)) | {p for p in self.pids if _running(p)})
            if not alive or time.monotonic() >= deadline:
                return alive
            time.sleep(0.05)

    def leaked_shm(self) -> list[str]:
        """Entries of /dev/shm that appeared since the start and that no live process holds."""
        new = set(os.listdir("/dev/shm")) - self.shm_before
        return sorted(name for name in new if not _held_by_anyone(f"/dev/shm/{name}"))

    def kill_all(self) -> None:
        for pid in {*self.pids, *_marked_processes(self.marker), self.process.pid}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _marked_processes(marker: str) -> list[int]:
    needle = f"ECS_TEST_SCENARIO={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0") and _running(int(entry)):
                    found.append(int(entry))
        except OSError:
            pass
    return found


def _held_by_anyone(path: str) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}").startswith(path):
                    return True
            with open(f"/proc/{entry}/maps") as f:
                if path in f.read():
                    return True
        except OSError:
            pass
    return False


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator:
    children: list[Child] = []

    def start(body: str, new_session: bool = False) -> Child:
        child = Child(tmp_path, body, new_session)
        children.append(child)
        return child

    yield start
    for child in children:             # never leave a failed scenario's processes behind
        child.kill_all()


def assert_nothing_left(child: Child) -> None:
    assert child.survivors() == []
    assert child.leaked_shm() == []


def test_close_stops_the_workers_and_releases_the_arena(scenario) -> None:
    child = scenario('''
        world = make_world()
        report(world, "running")
        world.close()
        del world
        gc.collect()
        print(json.dumps({"phase": "closed", "main": os.getpid(), "workers": [],
                          "forkserver": forkserver._forkserver._forkserver_pid,
                          "memfd_fds": sum("ecs-world" in fd for fd in fds()),
                          "memfd_maps": open("/proc/self/maps").read().count("ecs-world")}), flush=True)
    ''')
    running = child.report("running")
    closed = child.report("closed")
    assert (closed["memfd_fds"], closed["memfd_maps"]) == (0, 0)
    code, stderr = child.finish()
    assert code == 0, stderr
    assert "Traceback" not in stderr and "leaked" not in stderr
    assert len(running["workers"]) == 2
    assert_nothing_left(child)


FAULTS = {
    "raise": (RAISE, "KernelError"),
    "sigkill": (SIGKILL_SELF, "WorkerCrashedError"),
    "segfault": (SEGFAULT, "WorkerCrashedError"),
    "timeout": (ENDLESS, "WorkerCrashedError"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_leaves_no_process_descriptor_or_segment_behind(scenario, fault: str) -> None:
    mode, error = FAULTS[fault]
    # crashes must happen in a worker: a step_timeout no frame reaches keeps kernels out of the main process
    timeout = {"raise": None, "timeout": 1.0}.get(fault, 120.0)
    child = scenario(f'''
        world = make_world(step_timeout={timeout})
        report(world, "before")
        target = int(world.query(Hp).entities()[-1])
        caught = None
        try:
            world.step(dt=1.0, mode={mode}, target=target, spins=1)
        except ecs.{error} as exc:
            caught = type(exc).__name__
        gc.collect()
        world.step(dt=1.0, **QUIET)
        report(world, "after", caught=caught)
        world.close()
    ''')
    before = child.report("before")
    after = child.report("after")
    code, stderr = child.finish()
    assert code == 0, stderr
    assert after["caught"] == error
    assert after["fds"] == before["fds"]            # replacing workers leaks no descriptor
    if fault == "raise":
        assert after["workers"] == before["workers"]
    else:
        assert after["workers"] != before["workers"]
    assert "leaked" not in stderr
    assert_nothing_left(child)


@pytest.mark.parametrize("to_group", [False, True], ids=["main", "group"])
def test_ctrl_c_during_run_raises_keyboard_interrupt_and_stops_the_workers(scenario, to_group: bool) -> None:
    child = scenario('''
        world = make_world()
        report(world, "before")
        try:
            world.run(10**7, dt=1.0, mode=0, target=-1, spins=20)
        except KeyboardInterrupt:
            calls = world.stats()["integrate"]["calls"]
            report(world, "interrupted", frame=introspect.frame(world), calls=calls)
            world.step(dt=1.0, **QUIET)           # the world is still usable
            report(world, "usable")
            raise
    ''', new_session=to_group)
    child.report("before")
    time.sleep(0.5)
    if to_group:
        os.killpg(child.process.pid, signal.SIGINT)
    else:
        os.kill(child.process.pid, signal.SIGINT)
    interrupted = child.report("interrupted", timeout=20)
    usable = child.report("usable", timeout=20)
    assert interrupted["frame"] > 2                # the frames run before Ctrl-C count, as in-process
    assert interrupted["calls"] == interrupted["frame"]
    assert usable["workers"] == interrupted["workers"]
    code, stderr = child.finish()
    assert code == -signal.SIGINT, stderr
    assert "KeyboardInterrupt" in stderr and "leaked" not in stderr
    assert_nothing_left(child)


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "mid-run"])
def test_workers_exit_when_the_main_process_is_killed(scenario, busy: bool) -> None:
    child = scenario('''
        world = make_world()
        report(world, "before")
        if BUSY:
            world.run(10**7, dt=1.0, **QUIET)
        else:
            time.sleep(120)
    '''.replace("BUSY", str(busy)))
    before = child.report("before")
    time.sleep(0.5)
    os.kill(before["main"], signal.SIGKILL)
    assert child.finish()[0] == -signal.SIGKILL
    assert_nothing_left(child)


def test_a_killed_process_group_leaves_nothing_behind(scenario) -> None:
    child = scenario('''
        world = make_world()
        report(world, "before")
        world.run(10**7, dt=1.0, **QUIET)
    ''', new_session=True)
    child.report("before")
    time.sleep(0.5)
    os.killpg(child.process.pid, signal.SIGKILL)
    assert child.finish()[0] == -signal.SIGKILL
    assert_nothing_left(child)


def test_a_worker_stopped_mid_run_is_caught_within_one_frames_budget_and_named() -> None:
    """step_timeout holds per frame: a worker stopped (SIGSTOP) inside a kernel early in
    run(frames=400) is caught about one step_timeout after the last finished frame, not after
    400 of them. (A worker stopped between units holds nobody up: the others take its share.)"""
    with ecs.World(workers=2, step_timeout=0.5) as world:
        world.add_system(slow_frame)
        world.spawn_batch(SPLIT_MIN_ROWS * 4, Pos(x=0, y=0))
        world.step(spins=1)
        pids = introspect.worker_pids(world)
        stopped = threading.Event()

        def stop_inside_a_kernel() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if introspect.worker_in_kernel(world, 1):
                    os.kill(pids[1], signal.SIGSTOP)
                    time.sleep(0.002)                 # the stop has landed
                    if introspect.worker_in_kernel(world, 1):
                        stopped.set()
                        return
                    os.kill(pids[1], signal.SIGCONT)  # it had just left its unit: again
                time.sleep(0.0005)

        stopper = threading.Thread(target=stop_inside_a_kernel)
        started = time.monotonic()
        stopper.start()
        try:
            with pytest.raises(WorkerCrashedError, match=r"worker 1 ran past step_timeout=0.5 s per frame") as caught:
                world.run(frames=400, spins=300)
        finally:
            stopper.join()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pids[1], signal.SIGCONT)
        assert stopped.is_set()
        assert time.monotonic() - started < 5.0
        assert caught.value.worker == 1
        assert introspect.worker_pids(world)[1] != pids[1]
        world.step(spins=1)        # usable again


def test_a_stopped_idle_worker_whose_pipe_fills_is_caught_by_step_timeout() -> None:
    """A worker stopped while idle reads none of the plans and values it is sent; the others run
    its share. Once its pipe is full, the next send waits at most the frame's step_timeout: the
    worker is killed and replaced (WorkerCrashedError) instead of the main process hanging."""
    with ecs.World(workers=2, step_timeout=2.0) as world:
        populate(world)
        pid = introspect.worker_pids(world)[0]
        deadline = time.monotonic() + 5
        while introspect.worker_holds_a_unit(world, 0) and time.monotonic() < deadline:
            time.sleep(0.001)   # idle: one stopped holding a unit is replaced as a stale holder, silently
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(WorkerCrashedError, match=r"^worker 0 ran past step_timeout=2\.0 s per frame and was "
                                                         r"killed"):
                for k in range(2_000):     # the split table grows: a new plan (and values) for every worker
                    world.spawn_batch(100, Pos(x=1, y=1), Vel(x=1, y=1), Hp())
                    world.step(dt=1.0 + k, **QUIET)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        assert introspect.worker_pids(world)[0] != pid
        before = metadata(world)
        assert_usable(world, before)


INTERRUPTED_AT = {
    # the workers started, the first load sample not taken yet: the half-made pool was orphaned
    "pool start": "pool.OtherLoad.sample",
    # a run's message in flight: stop_now looked the worker up before it was noted (KeyError)
    "giving a run": "pool.WorkerPool._give",
    # the world's memfd made, its finalizer not registered yet: the descriptor stayed open
    "world construction": "schedule.Schedule.__init__",
}


@pytest.mark.parametrize("where", list(INTERRUPTED_AT))
def test_ctrl_c_at_an_awkward_point_leaves_nothing_behind(scenario, where: str) -> None:
    child = scenario(f'''
        import multiprocessing
        from ecs import pool, schedule
        owner_name, name = "{INTERRUPTED_AT[where]}".rsplit(".", 1)
        owner = eval(owner_name)
        real = getattr(owner, name)

        def interrupt(*args, **kwargs):
            raise KeyboardInterrupt

        world = None if "{where}" == "world construction" else make_world()   # its first step starts the pool
        if world is not None and "{where}" == "pool start":
            world.close()
            world = ecs.World(workers=2)
            world.add_system(integrate)
            world.spawn_batch(400_000, Pos(x=0, y=0), Vel(x=1, y=0))
        params = dict(QUIET, dt=1.0) if world is not None and len(world.stats()) > 1 else {{"dt": 1.0}}
        setattr(owner, name, interrupt)
        caught = []
        for _ in range(3):
            try:
                ecs.World(workers=2) if world is None else world.step(**params)
            except BaseException as exc:
                caught.append(type(exc).__name__)
        setattr(owner, name, real)
        gc.collect()
        orphans = [p.name for p in multiprocessing.active_children() if p.name.startswith("ecs-worker")
                   and (world is None or p.pid not in introspect.worker_pids(world))]
        if world is not None:
            world.step(**params)   # usable: workers replaced
            world.close()
            del world
            gc.collect()
        print(json.dumps({{"phase": "done", "main": os.getpid(), "workers": [], "caught": caught, "orphans": orphans,
                          "forkserver": forkserver._forkserver._forkserver_pid or os.getpid(),
                          "memfd_fds": sum("ecs-world" in fd for fd in fds())}}), flush=True)
    ''')
    done = child.report("done", timeout=120)
    code, stderr = child.finish()
    assert code == 0, stderr
    # each try raised the interrupt itself (a step after an interrupted one may run here: no give)
    assert done["caught"] and set(done["caught"]) == {"KeyboardInterrupt"}, (done, stderr[-3000:])
    assert done["orphans"] == [] and done["memfd_fds"] == 0, done
    assert_nothing_left(child)

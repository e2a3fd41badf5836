"""The worker pool: N worker processes attached to one world's arena, and the runs given to them.

Workers are `forkserver` processes: forking a process that ran an OpenMP kernel kills the child,
and a spawned worker costs ~340 ms against ~22 ms from a preloaded forkserver. The server
preloads the main script and `ecs._preload` (numba's one-time initialisation included). Worker
w is pinned to a core while no other process keeps a core busy (see `_adapt`).

A run of F frames costs one round trip, not one per system or frame: the pool ships the plan
(only when the structure changed) and the values (only when they changed) through each
worker's pipe and announces the run through the mailbox; nothing else per run is pickled. The
units of the run are shared out by claims (claims.py): the workers and, while they leave it a
core and the world has no step_timeout, the main process take them from per-home counters, so
the run ends when every unit is done, whoever ran it, and a worker that is slow to wake takes
fewer. `helps` decides when a run is better kept in the main process alone; the watch over a
run (sentinels, deadlines, failures) is runwatch.py.

Faults: a kernel that raises closes the run; every process stops claiming and the ones inside
a kernel finish it; the outcome carries KernelError with the kernel's exception as `__cause__`.
A worker that dies (signal, segfault) is seen through its sentinel: the pool closes the run,
waits for the others still inside a kernel (killing any still busy after CRASH_GRACE_S),
replaces the dead one, and the outcome carries WorkerCrashedError naming the system it was
running. A frame past `step_timeout` seconds kills and replaces every worker inside a kernel of
the run (with a step_timeout the main process runs no units: a kernel that never returns in
this process could not be stopped). A worker found dead when a run starts (it died idle, so
it ran nothing) is replaced without an error. Every wait of the main process has a deadline
and watches the workers' sentinels.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import multiprocessing.process as mp_process
import os
import select
import struct
import time
import weakref
from collections.abc import Callable
from multiprocessing.reduction import DupFd, ForkingPickler
from typing import Any, NamedTuple

import numpy as np

from ecs.kernels import sync

from . import mailbox
from .claims import Epochs, take_part
from .commands import CommandBuffers
from .cpuload import OtherLoad, others_busy_now
from .errors import InvalidArgumentError, SystemDefinitionError, WorkerCrashedError
from .mailbox import (
    CONTROL_WORDS,
    CURRENT_SYSTEM,
    HOLDING,
    IDLE_SPIN_NS,
    MAX_SYSTEMS,
    MAX_WORKERS,
    MESSAGES,
    RUN_SEQ,
    SLEEPING,
    STARTED,
    line_of,
)
from .memory import Arena, ArraySpec
from .plan import Plan, SystemValues, Unit
from .progress import Progress
from .runchoice import RunChoice
from .runwatch import RunWatch
from .worker import worker_main

OTHER_LOAD_UNPIN = 0.4              # CPUs of other load above which pinned workers are unpinned
OTHER_LOAD_PIN = 0.15               # ... and below which unpinned ones are pinned again (hysteresis:
                                    # a sample over 0.2 s is 20 ticks a CPU, +-1-2 of them noise)
EPOCH_SPIN_NS = 100_000            # how long a process waiting for an epoch polls before sleeping
STALE_HOLDER_S = 0.05             # how long a holder of a finished run may take to let go
STARTUP_WAIT_S = 60.0             # how long a run waits at most for new workers to attach
RELEASE_WAIT_S = 1.0              # how long a replaced (dead or killed) worker may take to be reaped
ASLEEP_ALONE_MAX_S = 0.002         # runs shorter than this do not wake sleeping workers (see helps)
LOADED_SHARE_MIN_S = 0.02          # stages shorter than this are run by the main process alone while loaded
STARTUP_HINT = ("worker processes import the main script before they start: a script that makes a World "
                "with workers must do so under `if __name__ == \"__main__\":` (its error is on stderr)")


_live_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _disown_after_fork() -> None:
    """In a child forked from a process with worker pools: the workers are the parent's. Forget
    them, so that neither the child's close() nor multiprocessing's exit handler (which
    terminates the daemonic children it knows) stops the parent's workers."""
    for pool in list(_live_pools):
        pool._closed = True
        for handle in pool._handles:
            if handle is not None:
                mp_process._children.discard(handle.process)   # type: ignore[attr-defined]


os.register_at_fork(after_in_child=_disown_after_fork)


def main_takes_part(workers: int, step_timeout: float | None) -> bool:
    """Whether the main process runs units beside `workers` workers: while they leave it a core
    of its own, and unless a step_timeout asks it only to supervise."""
    return step_timeout is None and workers < len(os.sched_getaffinity(0))


def shippable(arena: Arena, system_name: str, named: dict[str, object]) -> dict[str, object]:
    """A system's named values as a worker receives them: arrays in the world's arena travel as
    their place in it (the worker writes the very same memory), numbers as themselves.
    SystemDefinitionError for an array outside the arena: a world with workers checks every run
    with it (schedule.py), wherever the run goes, so that such a value is refused every time."""
    out = {}
    for name, value in named.items():
        if isinstance(value, np.ndarray):
            spec = arena.spec_of(value)
            if spec is None:
                raise SystemDefinitionError(
                    system_name,
                    "arrays given to systems that run on workers must live in the world's shared memory: "
                    f"store it with world.resources[{name!r}] = array and pass nothing, or pass "
                    f"world.resources[{name!r}]", name)
            value = spec
        out[name] = value
    return out


class RunOutcome(NamedTuple):
    """How a run on the workers ended: the frames that count as run, and the error to raise."""

    frames_done: int
    error: BaseException | None


class WorkerPool:
    """N worker processes attached to one arena."""

    def __init__(self, arena: Arena, size: int, step_timeout: float | None = None) -> None:
        if size > MAX_WORKERS:
            raise InvalidArgumentError(f"World(workers={size}): at most {MAX_WORKERS}")
        self.arena = arena
        self.size = size
        self.step_timeout = step_timeout
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["__main__", "ecs._preload"])
        self._control_region = arena.allocate(CONTROL_WORDS * 8)
        self._control_region.commit(CONTROL_WORDS * 8)
        self.control_spec = self._control_region.spec(np.int64, (CONTROL_WORDS,))
        self.control = arena.view_of(self.control_spec)
        self.control32 = self.control.view(np.int32)
        self._stats_region = arena.allocate(size * MAX_SYSTEMS * 3 * 8)
        self._stats_region.commit(size * MAX_SYSTEMS * 3 * 8)
        self.stats_spec = self._stats_region.spec(np.float64, (size, MAX_SYSTEMS, 3))
        self.stats = arena.view_of(self.stats_spec)
        # The main process takes units too while the workers leave it a core, and unless a
        # step_timeout asks it to supervise only (a kernel that never returns in this process
        # could not be stopped).
        cores = sorted(os.sched_getaffinity(0))
        self.main_takes_part = main_takes_part(size, step_timeout)
        processes = size + int(self.main_takes_part)
        # With a worker per core (or more), worker w is pinned to core w (mod cores) while no other
        # process keeps a core busy, and unpinned while one does (OtherLoad, sampled at most every
        # 0.2 s by helps()). Beside one busy process a pinned worker shares the busy core for good;
        # unpinned, the scheduler moves it. With fewer workers the main process takes part,
        # unpinned, and nobody is pinned (a pinned worker shared its core with it).
        self._cores = cores if size >= len(cores) > 1 else []
        self._other_load = OtherLoad(0.2)
        # until the first sample (0.2 s): loaded if another process is runnable at two looks 2 ms
        # apart (a busy process always is; a kernel thread's moment is not), pinned otherwise
        self._loaded = others_busy_now()
        self._pinned = bool(self._cores) and not self._loaded
        self._frame_s = 0.0                  # seconds a frame of the latest runs took (moving average)
        self._choice = RunChoice()           # the measured choice of helps()
        self._last_end = 0.0                 # time.monotonic() when the latest run on the workers ended
        self._last_request = 0.0             # ... when the latest run, here or there, ended
        # A process waiting for an epoch to open (claims.py) polls for EPOCH_SPIN_NS, yielding its
        # core at each poll, before it sleeps, and an idle one polls for its next run (the main
        # process for the run's end) for IDLE_SPIN_NS, only where every process has a core of
        # its own: step() of a 64-row system on 2 workers of this 2-core VM cost 118 us with
        # sleeps, 24-28 us polling.
        fits = processes <= len(cores)
        self._spin_ns = EPOCH_SPIN_NS if fits else 0
        self.idle_spin_ns = IDLE_SPIN_NS if fits else 0
        self._run_id = 0
        self._shipped_for: list[SystemValues] | None = None   # the values of the last run, as given
        self._shipped: list[SystemValues] = []                # ... and as shipped (_shippable)
        self._handles: list[_Handle | None] = [None] * size
        self._sentinels = select.poll()       # readable when a worker has died: one poll(2) for all
        self._closed = False
        _live_pools.add(self)
        try:   # an exception (Ctrl-C) part way: the workers started so far are stopped, not orphaned
            for w in range(size):
                self._start(w)
            # the first sample after the start-up: the forkserver's work starting the workers is not load
            self._other_load.sample([os.getpid(), *self.pids()])
        except BaseException:
            self.close()
            raise

    def _start(self, w: int) -> _Handle:
        """Start worker w and keep its handle (in _handles[w] as soon as the process runs)."""
        parent_end, child_end = self._ctx.Pipe()
        line = line_of(w)
        self.control[line + SLEEPING] = 0
        self.control[line + STARTED] = 0
        self.control[line + HOLDING] = 0
        process = self._ctx.Process(
            target=worker_main, name=f"ecs-worker-{w}", daemon=True,
            args=(w, DupFd(self.arena.fd), self.arena.size, self.control_spec, self.stats_spec,
                  child_end, int(self.control32[2 * (line + RUN_SEQ)]), int(self.control[line + MESSAGES]),
                  w + int(self.main_takes_part), self._spin_ns, self.idle_spin_ns))
        process.start()
        handle = self._handles[w] = _Handle(process, parent_end)
        child_end.close()
        if self._pinned:
            self._pin(w, process.pid, True)
        self._sentinels.register(process.sentinel, select.POLLIN)
        return handle

    def _pin(self, w: int, pid: int | None, pinned: bool) -> None:
        if pid is None:
            return
        with contextlib.suppress(OSError):   # the worker just ended, or a core was taken away
            os.sched_setaffinity(pid, {self._cores[w % len(self._cores)]} if pinned else set(self._cores))

    def _adapt(self) -> None:
        """Sample the other load (at most every 0.2 s) and follow it: pin the workers while other
        processes leave the cores free, unpin them while one is busy (more than OTHER_LOAD_UNPIN
        CPUs of other load: a busy process that shares its core with a pinned worker gets about
        half of it; pinned again below OTHER_LOAD_PIN)."""
        load = self._other_load.sample([os.getpid(), *self.pids()])
        if load is None:
            return
        self._loaded = load > (OTHER_LOAD_PIN if self._loaded else OTHER_LOAD_UNPIN)
        if not self._cores or self._pinned != self._loaded:
            return
        self._pinned = not self._loaded
        for w, handle in enumerate(self._handles):
            if handle is not None:
                self._pin(w, handle.process.pid, self._pinned)

    def helps(self, frames: int, stages: int = 1, scale: int = 0) -> bool:
        """Whether a run of `frames` frames (of `stages` stages with work each, the largest of
        `scale` rows) should go to the workers, or be run by this process alone. Alone when
        - other programs keep a core busy and a stage is expected to take under
          LOADED_SHARE_MIN_S: a process preempted inside a unit holds its stage up for the
          scheduler slice of the busy program (~1-4 ms), which costs more than sharing a short
          stage gains (beside one busy process on 2 cores: move over 1M rows, step() 0.42 ms
          alone, 0.67 ms shared; the physics demo, 10 stages of ~1 ms a frame, 94-104 fps alone,
          52-54 shared; heavy over 1M rows, one 90 ms stage, 1.1-1.2x faster shared); or
        - the workers sleep (no run for IDLE_SPIN_NS), the caller was idle too (a 60 Hz loop, not
          a burst of steps) and the run is expected under ASLEEP_ALONE_MAX_S: it costs less here
          than waking them (move over 1M rows at 60 Hz: 0.62-0.92 ms here, 0.77-1.06 ms waking);
        else as measured: the way that ran such runs faster lately (runchoice.py, fed by
        `ran_here` and `ran_shared`). Samples the other load (`_adapt`)."""
        self._adapt()
        if self._loaded and self._frame_s / max(stages, 1) < LOADED_SHARE_MIN_S:
            return False
        now, idle = time.monotonic(), IDLE_SPIN_NS / 1e9
        asleep = now - self._last_end > idle and now - self._last_request > idle
        if asleep and self._frame_s * frames < ASLEEP_ALONE_MAX_S:
            return False
        return self._choice.share(frames, scale)

    def ran_shared(self, seconds: float, frames: int) -> None:
        """A run of `frames` frames on the workers completed in `seconds` (the schedule's wall
        time of it; not the run that started the workers)."""
        self._choice.note(frames, True, seconds)

    def ran_here(self, seconds: float, frames: int) -> None:
        """A run of `frames` frames that helps() kept in this process took `seconds`."""
        self._last_request = time.monotonic()
        self._note_frames(seconds, frames)
        self._choice.note(frames, False, seconds)

    def _note_frames(self, seconds: float, frames: int) -> None:
        self._frame_s += (min(seconds / max(frames, 1), 1.0) - self._frame_s) / 4

    def replace_worker(self, w: int) -> _Handle:
        """Start a new worker w in place of one that is dead or was killed (and joined)."""
        old = self._handles[w]
        if old is not None:
            self._sentinels.unregister(old.process.sentinel)
            _release(old, RELEASE_WAIT_S)
        handle = self._handles[w] = self._start(w)
        return handle

    def _await_started(self) -> bool:
        """Wait until every worker attached to the arena or died (a new pool's first run may end
        before its workers are up: a start-up failure must still be reported by it). Returns
        whether any had not attached when looked at (then its exit status may have been read)."""
        deadline = time.monotonic() + STARTUP_WAIT_S
        waited = False
        for w, handle in enumerate(self._handles):
            while handle is not None and not self.control[line_of(w) + STARTED] and time.monotonic() < deadline:
                waited = True
                if not handle.process.is_alive():
                    break
                handle.process.join(0.002)
        return waited

    def _replace_dead(self, thorough: bool = False) -> WorkerCrashedError | None:
        """Replace workers that died outside any unit (the OOM killer, a stray signal): they ran
        nothing that was lost. One that died before it attached is a start-up failure (a script
        without the main guard): the error that says so. `thorough`: see dead_workers."""
        error = None
        for w in self.dead_workers(thorough):
            handle = self._handles[w]
            assert handle is not None
            handle.process.join(1.0)
            if not self.control[line_of(w) + STARTED] and error is None:
                error = WorkerCrashedError(None, w, handle.process.exitcode, hint=STARTUP_HINT)
            self.replace_worker(w)
        return error

    def dead_workers(self, thorough: bool = False) -> set[int]:
        """Workers whose process has ended: one poll(2) of the sentinels, ~1 us. `thorough` also
        asks each process (~2 us each): once multiprocessing has read a worker's exit status
        (is_alive), its sentinel may show nothing until the forkserver closes it."""
        ended = {fd for fd, _ in self._sentinels.poll(0)}
        dead = {w for w, h in enumerate(self._handles) if h is not None and h.process.sentinel in ended}
        if thorough:
            dead |= {w for w, h in enumerate(self._handles) if h is not None and h.process.exitcode is not None}
        return dead

    # ---------------------------------------------------------------- running
    def run(self, plan: Plan, values: list[SystemValues], first_frame: int, frames: int,
            commands: CommandBuffers | None, system_names: list[str], progress: Progress | None,
            run_here: Callable[[Unit, int], BaseException | None] | None = None) -> RunOutcome:
        """Run `frames` frames of `plan` on the workers until every unit is done or the run
        failed; with `run_here` (it runs one unit of a frame in this process and returns the
        error it raised, if any) this process takes units too where the workers leave it a core.
        The outcome says how many frames count as run (all of them; after a failure, the frames
        finished plus the failed one) and the error to raise."""
        self._run_id = run = mailbox.next_run_id(self._run_id)
        asked = self._replace_stale_holders()
        total = Epochs(plan, values, first_frame, frames).total()
        mailbox.open_run(self.control, self.control32, run, plan.processes, first_frame, frames, total)
        startup_error = self._replace_dead(thorough=asked)
        if values is not self._shipped_for:   # the schedule hands the same list while nothing changed
            self._shipped = [self._shippable(system_names[i], v) for i, v in enumerate(values)]
            self._shipped_for = values
        shipped = self._shipped
        watch = RunWatch(self, run, plan.processes, Epochs(plan, values, first_frame, frames), progress)
        if not self.main_takes_part:
            run_here = None
        helpers = min(self.size, max(plan.width() - int(run_here is not None), 1))
        started = time.perf_counter()
        errors: list[BaseException] = []

        def main_unit(unit: Unit, frame: int) -> bool:
            error = run_here(unit, frame)   # type: ignore[misc]
            if error is not None:
                errors.append(error)
                mailbox.close_run(self.control, self.control32, run, plan.processes)
            return error is None

        try:
            for w in range(helpers):
                watch.giving = w
                watch.given[w] = self._handles[w]   # known before the send: Ctrl-C inside it kills w (stop_now)
                _, given = self._give(w, run, plan, shipped, commands.spec(w) if commands is not None else None,
                                      watch.deadline)
                if not given:   # its pipe stayed full until the frame's deadline: it reads nothing
                    watch.kill_hung(w)
            watch.giving = None
            epochs = Epochs(plan, values, first_frame, frames)
            if run_here is not None:
                take_part(epochs, self.control, self.control32, run, total, 0, main_unit, self._spin_ns, -1,
                          watch.check)
            watch.wait_end(total)
            failed = watch.failed()
            if failed:
                watch.settle()
            else:          # what a frame costs, for helps(); a worker that died after its last unit lost nothing
                self._note_frames(time.perf_counter() - started, frames)
                startup_error = self._replace_dead(thorough=self._await_started()) or startup_error
            errors += watch.worker_errors(system_names)      # read always: none may stay in a pipe
        except BaseException as exc:   # KeyboardInterrupt: the frames run so far still count
            watch.stop_now()
            return RunOutcome(watch.frames_done(frames, failed=True), exc)
        finally:
            self._last_end = self._last_request = time.monotonic()
        done = watch.frames_done(frames, failed)
        if watch.crashed or watch.timed_out:
            return RunOutcome(done, self._replace_failed(system_names, watch.crashed, watch.timed_out))
        if startup_error is not None:
            errors.append(startup_error)
        return RunOutcome(done, errors[0] if errors else None)

    def _replace_stale_holders(self) -> bool:
        """Kill and replace a worker still inside a kernel of an earlier run (left by a run that
        ended abnormally): its unit would count in the next run's DONE. A worker that just
        counted its last unit clears HOLDING within microseconds: it gets STALE_HOLDER_S.
        Returns whether it asked a process whether it is alive (see dead_workers)."""
        deadline = None
        asked = False
        for w, handle in enumerate(self._handles):
            while handle is not None and sync.load(self.control, line_of(w) + HOLDING) != 0:
                asked = True
                if not handle.process.is_alive():
                    break
                deadline = deadline or time.monotonic() + STALE_HOLDER_S
                if time.monotonic() < deadline:
                    time.sleep(0.0002)
                    continue
                handle.process.kill()
                handle.process.join(5.0)
                self.replace_worker(w)
                break
        return asked

    def _give(self, w: int, run: int, plan: Plan, shipped: list[SystemValues],
              commands: tuple[ArraySpec, ArraySpec] | None, deadline: float | None = None) -> tuple[_Handle, bool]:
        """Give worker w run `run`: the announcement, then a message through its pipe only if its
        plan, values or command buffer changed since the last one it was sent; (its handle,
        whether it was given the run). A worker that reads no message (stopped, hung) fills its
        pipe: past `deadline` (the frame's, with a step_timeout) the send is abandoned (False).
        The run was announced and the message may be half written: the caller must kill the
        worker (RunWatch.kill_hung), which is then replaced."""
        handle = self._handles[w]
        assert handle is not None
        unchanged = handle.plan is plan and commands == handle.commands and _same_values(shipped, handle.values)
        # announced before the message is sent: the worker reads its pipe while this process
        # writes it (sent first, a message past the pipe's buffer, ~200 KB, waited for a reader
        # that waited for the announcement)
        mailbox.give_run(self.control, self.control32, w, run, message=not unchanged)
        if not unchanged:
            try:
                if not _send_within(handle.connection, (plan if handle.plan is not plan else None, shipped, commands),
                                    deadline):
                    handle.plan = None     # what it holds is unknown: it is killed and replaced
                    return handle, False
                handle.plan, handle.values, handle.commands = plan, shipped, commands
            except OSError:
                pass                  # died this instant: the run's watch sees it and reports it
        return handle, True

    def _replace_failed(self, system_names: list[str], crashed: list[tuple[int, int | None]],
                        timed_out: list[int]) -> WorkerCrashedError:
        """Replace crashed and timed-out workers; the error that names the first of them."""
        # read before the replacements reset their lines
        first_started = bool(crashed) and bool(self.control[line_of(crashed[0][0]) + STARTED])
        named = {w: self._system_name(system_names, w) for w, _ in crashed} | \
                {w: self._system_name(system_names, w) for w in timed_out}
        for w in {w for w, _ in crashed} | set(timed_out):
            self.replace_worker(w)
        if crashed:
            w, code = crashed[0]
            if not first_started:
                return WorkerCrashedError(None, w, code, hint=STARTUP_HINT)
            return WorkerCrashedError(named[w], w, code)
        w = timed_out[0]
        return WorkerCrashedError(named[w], w, None, f"ran past step_timeout={self.step_timeout} s per frame")

    def _shippable(self, system_name: str, values: SystemValues) -> SystemValues:
        return values._replace(named=shippable(self.arena, system_name, values.named))

    def _system_name(self, system_names: list[str], w: int) -> str:
        index = int(self.control[line_of(w) + CURRENT_SYSTEM])
        return system_names[index] if 0 <= index < len(system_names) else "<between systems>"

    def forget_system(self, index: int) -> None:
        """Drop the figures of system `index` (removed between runs): later systems move down one."""
        self.stats[:, index:-1] = self.stats[:, index + 1:]
        self.stats[:, -1] = 0

    def stats_total(self, systems: int) -> np.ndarray:
        return self.stats[:, :systems].sum(axis=0)   # after close(): the private copy close() kept

    def pids(self) -> list[int]:
        return [h.process.pid for h in self._handles if h is not None]

    def close(self) -> None:
        """Stop every worker: ask, then kill any that do not exit within a second."""
        if self._closed:
            return
        self._closed = True
        for w, handle in enumerate(self._handles):
            if handle is None:
                continue
            try:
                handle.connection.send(None)
            except (OSError, ValueError):
                continue
            mailbox.give_run(self.control, self.control32, w, 0, message=True)
        # keep the figures, drop the views: the arena unmaps only when no view of it is left
        self.stats = self.stats.copy()
        del self.control, self.control32
        deadline = time.monotonic() + 1.0
        for handle in self._handles:
            if handle is not None:
                _release(handle, max(0.0, deadline - time.monotonic()))


def _release(handle: _Handle, wait: float) -> None:
    """Reap a worker that was asked to stop or is dead, killing it after `wait` seconds, and close
    its pipe and process: the process's sentinel and pipe descriptors close now, not whenever
    multiprocessing next looks at its children (a dead worker's stayed open until then)."""
    handle.process.join(wait)
    if handle.process.is_alive():
        handle.process.kill()
        handle.process.join(5.0)
    handle.connection.close()
    if handle.process.exitcode is not None:     # never reaped after a kill: left to the collector
        handle.process.close()


class _Handle:
    """One worker process, its pipe, and what it was last sent."""
    __slots__ = ("process", "connection", "plan", "values", "commands")

    def __init__(self, process: Any, connection: Any) -> None:
        self.process = process
        self.connection = connection
        self.plan: Plan | None = None
        self.values: list[SystemValues] | None = None
        self.commands: tuple[ArraySpec, ArraySpec] | None = None


def _send_within(connection: Any, message: object, deadline: float | None) -> bool:
    """connection.send(message), waiting for room in the pipe at most until `deadline` (None:
    as long as it takes); False, part of it maybe written (the worker must then go), when the
    pipe stays full: the worker reads nothing. The bytes are Connection.send's own: a 4-byte
    big-endian length, or -1 and an 8-byte one past 2 GiB, then the pickle."""
    if deadline is None:
        connection.send(message)
        return True
    payload = ForkingPickler.dumps(message)
    size = len(payload)
    header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!i", -1) + struct.pack("!Q", size)
    data = memoryview(header + bytes(payload))
    fd = connection.fileno()
    os.set_blocking(fd, False)
    try:
        while data:
            try:
                data = data[os.write(fd, data):]
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                select.select([], [fd], [], left)
    finally:
        os.set_blocking(fd, True)
    return True


def _same_values(a: list[SystemValues], b: list[SystemValues] | None) -> bool:
    """Whether shipped values `a` equal `b` without pickling either (arrays only by identity).
    step() of one system sends nothing when they are: unpickling cost a worker 19-26 us."""
    if a is b:
        return True
    if b is None or len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.removed_ids is not y.removed_ids or x.removed_frame != y.removed_frame or x.named.keys() != y.named.keys():
            return False
        for name, value in x.named.items():
            other = y.named[name]
            if other is not value and (type(other) is not type(value) or isinstance(value, np.ndarray)
                                       or bool(other != value) or _zero_signs_differ(value, other)):
                return False
    return True


def _zero_signs_differ(a: object, b: object) -> bool:
    """Whether equal numbers `a` and `b` are float zeros of opposite signs (0.0 == -0.0, yet a
    kernel dividing by one gets inf, by the other -inf)."""
    return isinstance(a, (float, np.floating)) and math.copysign(1.0, a) != math.copysign(1.0, b)  # type: ignore[arg-type]

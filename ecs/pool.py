"""The worker pool: N worker processes attached to one world's arena, and the runs given to them.

Workers are `forkserver` processes: forking a process that ran an OpenMP kernel kills the child,
and a spawned worker costs ~340 ms against ~22 ms from a preloaded forkserver. The server
preloads the main script and `ecs._preload` (numba's one-time initialisation included). When
worker w is pinned to core w mod cores while no other process keeps a core busy. What a
worker does is in worker.py; the control block they share is in mailbox.py.

A run of F frames costs one round trip, not one per system or frame: the pool ships the plan
(only when the structure changed) and the values (only when they changed) through each
worker's pipe and announces the run through the mailbox; nothing else per run is pickled.

Faults: a kernel that raises sets ABORT; every worker stops at its next task or barrier and
answers; the outcome carries KernelError with the kernel's exception as `__cause__`. A worker
that dies (signal, segfault) is seen through its sentinel: the pool sets ABORT, waits for the
others (killing any still busy after CRASH_GRACE_S), replaces the dead one, and the outcome
carries WorkerCrashedError naming the system it was running. A run past `step_timeout` seconds
per frame kills and replaces every worker that has not answered. A worker found dead when a run
starts (it died idle, so it ran nothing) is replaced without an error. Every wait of the main
process has a deadline and watches the workers' sentinels.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.process as mp_process
import os
import pickle
import select
import time
import weakref
from multiprocessing.reduction import DupFd
from typing import Any, NamedTuple

import numpy as np

from ecs.kernels import sync

from . import mailbox
from .commands import CommandBuffers
from .cpuload import OtherLoad, runnable_others
from .errors import InvalidArgumentError, KernelError, SystemDefinitionError, WorkerCrashedError
from .mailbox import (
    ANSWERS,
    CONTROL_WORDS,
    CURRENT_SYSTEM,
    ERROR,
    FRAMES_DONE,
    IDLE_SPIN_NS,
    MAIN_SLEEPING,
    MAX_SYSTEMS,
    MAX_WORKERS,
    MESSAGE,
    RUN_SEQ,
    SLEEPING,
    STARTED,
    STATUS,
    line_of,
)
from .memory import Arena, ArraySpec
from .plan import Plan, SystemValues
from .progress import Progress
from .worker import worker_main

WATCH = 0.01                       # longest sleep of the main process between checks of the workers
WATCH_SPEC = sync.timespec(WATCH)
OTHER_LOAD_UNPIN = 0.4              # CPUs of other load above which pinned workers are unpinned
OTHER_LOAD_PIN = 0.15               # ... and below which unpinned ones are pinned again (hysteresis:
                                    # a sample over 0.2 s is 20 ticks a CPU, +-1-2 of them noise)
CRASH_GRACE_S = 2.0                # how long busy workers may finish their kernel after a crash
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
        # With as many workers as cores (or more), worker w is pinned to core w (mod cores) while no
        # other process keeps a core busy, and unpinned while one does (OtherLoad, sampled at most
        # every 0.2 s at the start of a run; at its start a pool pins unless a process runs). Idle,
        # pinning keeps a step's two workers off one core (move over 1M rows, 2 workers of this
        # 2-core VM, step() after the workers slept:
        # 0.16 ms pinned, 0.22 ms unpinned, 0.16 ms in this process); beside one busy process the
        # worker pinned to the busy core is the one everybody spins for at the barrier (step()
        # 3.98 ms pinned, 0.20-0.26 ms unpinned).
        cores = sorted(os.sched_getaffinity(0))
        self._cores = cores if size >= len(cores) > 1 else []
        self._pinned = False
        self._other_load = OtherLoad(0.2)
        self._other_load.sample([os.getpid()])
        if self._cores:                      # pinned from the start unless another process runs now
            self._pinned = runnable_others() == 0
        # Spin (~20 us) at barriers before sleeping only where every worker has a core: the main
        # process sleeps while a run is on, so that is size <= cores. Five
        # small systems over 10k rows on 2 pinned workers of this 2-core VM, run(frames=1000):
        # 63 us a frame sleeping at each barrier (a futex wake across cores), 17 us spinning first.
        spin = 500 if size <= len(cores) else 0
        self._spin = spin
        # Likewise between runs: a worker polls for its next run, and the main process for the
        # answers, for IDLE_SPIN_NS before sleeping, yielding the core to any other runnable
        # process at each poll. step() of a 64-row system on 2 workers of this 2-core VM: 118 us
        # with pipes and sleeps, 24-28 us polling; of move over 1M rows, 360 us against 158-174 us (the
        # kernel alone: 255 us in this process). Without the main process polling: 67 and 283 us.
        self._idle_spin_ns = IDLE_SPIN_NS if spin else 0
        self._handles: list[_Handle | None] = [None] * size
        self._sentinels = select.poll()       # readable when a worker has died: one poll(2) for all
        self._closed = False
        _live_pools.add(self)
        for w in range(size):
            self._handles[w] = self._start(w)

    def _start(self, w: int) -> _Handle:
        parent_end, child_end = self._ctx.Pipe()
        line = line_of(w)
        self.control[line + SLEEPING] = 0
        self.control[line + STARTED] = 0
        process = self._ctx.Process(
            target=worker_main, name=f"ecs-worker-{w}", daemon=True,
            args=(w, DupFd(self.arena.fd), self.arena.size, self.control_spec, self.stats_spec,
                  child_end, int(self.control32[2 * (line + RUN_SEQ)]), self._spin, self._idle_spin_ns))
        process.start()
        child_end.close()
        if self._pinned:
            self._pin(w, process.pid, True)
        self._sentinels.register(process.sentinel, select.POLLIN)
        return _Handle(process, parent_end)

    def _pin(self, w: int, pid: int | None, pinned: bool) -> None:
        if pid is None:
            return
        with contextlib.suppress(OSError):   # the worker just ended, or a core was taken away
            os.sched_setaffinity(pid, {self._cores[w % len(self._cores)]} if pinned else set(self._cores))

    def _adapt_pinning(self) -> None:
        """Pin the workers while other processes leave the cores free; unpin them while one is
        busy (more than OTHER_LOAD_UNPIN CPUs of other load: a busy process that shares its core
        with a pinned worker gets about half of it; pinned again below OTHER_LOAD_PIN)."""
        if not self._cores:
            return
        load = self._other_load.sample([os.getpid(), *self.pids()])
        if load is None or (load < OTHER_LOAD_UNPIN if self._pinned else load > OTHER_LOAD_PIN):
            return
        self._pinned = not self._pinned
        for w, handle in enumerate(self._handles):
            if handle is not None:
                self._pin(w, handle.process.pid, self._pinned)

    def _replace(self, w: int) -> _Handle:
        """Start a new worker w in place of one that is dead or was killed (and joined)."""
        old = self._handles[w]
        if old is not None:
            self._sentinels.unregister(old.process.sentinel)
        handle = self._handles[w] = self._start(w)
        return handle

    def _dead(self) -> set[int]:
        """Workers whose process has ended (one poll(2), ~1 us)."""
        ended = {fd for fd, _ in self._sentinels.poll(0)}
        if not ended:
            return set()
        return {w for w, h in enumerate(self._handles) if h is not None and h.process.sentinel in ended}

    # ---------------------------------------------------------------- running
    def run(self, plan: Plan, values: list[SystemValues], first_frame: int, frames: int,
            commands: CommandBuffers | None, system_names: list[str], progress: Progress | None) -> RunOutcome:
        """Run `frames` frames of `plan` on the workers and wait until every worker is idle again.
        The outcome says how many frames count as run (all of them; after a failure, the frames
        every worker finished plus the failed one) and the error to raise, if any."""
        mailbox.start_run(self.control, self.control32, first_frame, frames)
        self._adapt_pinning()
        for w in self._dead():
            # died while idle (the OOM killer, a stray signal): it ran nothing, so replace it
            self._handles[w].process.join(1.0)   # type: ignore[union-attr]
            self._replace(w)
        shipped = [self._shippable(system_names[i], v) for i, v in enumerate(values)]
        pending: dict[int, _Handle] = {}
        try:
            for w in plan.participants:
                pending[w] = self._send(w, plan, shipped, commands.spec(w) if commands is not None else None)
        except BaseException:         # KeyboardInterrupt between sends: stop the workers already sent
            self._stop_and_replace(pending)
            raise
        try:
            errors, crashed, timed_out = self._collect(pending, plan, frames, progress)
        except BaseException as exc:   # KeyboardInterrupt: the frames run so far still count
            return RunOutcome(self._frames_done(plan, frames, failed=True), exc)
        done = self._frames_done(plan, frames, failed=bool(errors or crashed or timed_out))
        if crashed or timed_out:
            return RunOutcome(done, self._replace_failed(plan, system_names, crashed, timed_out))
        if errors:
            system_index, cause = errors[0]
            error = KernelError(system_names[system_index], cause)
            error.__cause__ = cause
            return RunOutcome(done, error)
        return RunOutcome(done, None)

    def _send(self, w: int, plan: Plan, shipped: list[SystemValues],
              commands: tuple[ArraySpec, ArraySpec] | None) -> _Handle:
        """Hand worker w this run: a message through its pipe only if its plan, values or command
        buffer changed since its last run, then the announcement."""
        handle = self._handles[w]
        assert handle is not None
        unchanged = handle.plan is plan and commands == handle.commands and _same_values(shipped, handle.values)
        mailbox.reset_line(self.control, w, message=not unchanged)
        if not unchanged:
            try:
                handle.connection.send((plan if handle.plan is not plan else None, shipped, commands))
                handle.plan, handle.values, handle.commands = plan, shipped, commands
            except OSError:
                pass              # died this instant: _collect sees it and reports it
        handle.seq = mailbox.announce(self.control32, w)
        return handle

    def _replace_failed(self, plan: Plan, system_names: list[str], crashed: list[tuple[int, int | None]],
                        timed_out: list[int]) -> WorkerCrashedError:
        """Replace crashed and timed-out workers; the error that names the first of them."""
        # read before the replacements reset their lines
        first_started = bool(crashed) and bool(self.control[line_of(crashed[0][0]) + STARTED])
        named = {w: self._system_name(system_names, w) for w, _ in crashed} | \
                {w: self._system_name(system_names, w) for w in timed_out}
        # the one holding the others up: fewest frames finished, then inside a kernel (not at a barrier)
        stalled = sorted(timed_out, key=lambda w: (int(self.control[line_of(w) + FRAMES_DONE]),
                                                   int(self.control[line_of(w) + CURRENT_SYSTEM]) < 0))
        for w, _ in crashed:
            self._replace(w)
        for w in timed_out:
            self._replace(w)
        if crashed:
            w, code = crashed[0]
            if not first_started:
                return WorkerCrashedError(None, w, code, hint=STARTUP_HINT)
            return WorkerCrashedError(named[w], w, code)
        w = stalled[0]
        return WorkerCrashedError(named[w], w, None, f"ran past step_timeout={self.step_timeout} s per frame")

    def _collect(self, pending: dict[int, _Handle], plan: Plan, frames: int, progress: Progress | None):
        """Wait for every pending worker's answer, watching sentinels and the deadline."""
        errors: list[tuple[int, BaseException]] = []
        crashed: list[tuple[int, int | None]] = []
        timed_out: list[int] = []
        # step_timeout holds per frame: the deadline moves on each time every worker finished one more
        deadline = None if self.step_timeout is None else time.monotonic() + self.step_timeout
        frames_finished = 0
        grace_deadline = None
        control, control32 = self.control, self.control32
        answers = 0
        spin_ns = self._idle_spin_ns
        try:
            while pending:
                now = time.monotonic()
                limits = [d for d in (deadline, grace_deadline) if d is not None]
                watch = WATCH if not limits else max(0.0, min(WATCH, min(limits) - now))
                seen = answers
                answers = sync.await_change(control32, 2 * ANSWERS, seen, 2 * MAIN_SLEEPING, spin_ns,
                                            sync.timespec(watch) if watch != WATCH else WATCH_SPEC)
                spin_ns = 0                      # polled once for a short run; a long one wakes us
                for w, handle in list(pending.items()):
                    line = line_of(w)
                    if mailbox.has_answered(control, w, handle.seq):
                        del pending[w]
                        if control[line + STATUS] == ERROR:
                            try:
                                answer = handle.connection.recv()
                                errors.append((answer[1], _rebuild(answer[2])))
                            except (EOFError, OSError):
                                errors.append((int(control[line + CURRENT_SYSTEM]),
                                               RuntimeError("a worker's exception was lost with its pipe")))
                if not pending or answers != seen:
                    continue
                dead = self._dead()
                for w, handle in list(pending.items()):   # a slice without answers: look for the dead
                    if w in dead:
                        handle.process.join(1.0)
                        crashed.append((w, handle.process.exitcode))
                        del pending[w]
                        self._abort()
                        grace_deadline = grace_deadline or time.monotonic() + CRASH_GRACE_S
                now = time.monotonic()
                if plan.participants:
                    done = min(int(control[line_of(w) + FRAMES_DONE]) for w in plan.participants)
                    if done > frames_finished and deadline is not None:
                        frames_finished, deadline = done, now + self.step_timeout   # type: ignore[operator]
                    if progress is not None:
                        progress.update(done)
                if pending and ((deadline is not None and now >= deadline)
                                or (grace_deadline is not None and now >= grace_deadline)):
                    for w, handle in pending.items():
                        handle.process.kill()
                        handle.process.join(5.0)
                        if deadline is not None and now >= deadline:
                            timed_out.append(w)
                        else:
                            crashed.append((w, handle.process.exitcode))
                    pending.clear()
        except BaseException:  # KeyboardInterrupt: stop the workers before the world is touched again
            self._stop_and_replace(pending)
            raise
        return errors, crashed, timed_out

    def _shippable(self, system_name: str, values: SystemValues) -> SystemValues:
        """Values as a worker receives them: arrays in the world's arena travel as their place in
        it (the worker writes the very same memory), numbers as themselves."""
        out = {}
        for name, value in values.named.items():
            if isinstance(value, np.ndarray):
                spec = self.arena.spec_of(value)
                if spec is None:
                    raise SystemDefinitionError(
                        system_name,
                        "arrays given to systems that run on workers must live in the world's shared memory: "
                        f"store it with world.resources[{name!r}] = array and pass nothing, or pass "
                        f"world.resources[{name!r}]", name)
                value = spec
            out[name] = value
        return values._replace(named=out)

    def _frames_done(self, plan: Plan, frames: int, failed: bool) -> int:
        """Frames of the run that count as run, as in this process: all of them, or after a failure
        every frame all workers finished plus the failed one, but not the frames never started
        (every=N would otherwise drift from a sequential run's phase)."""
        if not failed or not plan.participants:
            return frames
        finished = min(int(self.control[line_of(w) + FRAMES_DONE]) for w in plan.participants)
        return min(frames, finished + 1)

    def _stop_and_replace(self, pending: dict[int, _Handle]) -> None:
        self._abort()
        for w, handle in pending.items():
            handle.process.kill()
            handle.process.join(5.0)
            self._replace(w)

    def _abort(self) -> None:
        mailbox.abort(self.control, self.control32)

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
            self.control[line_of(w) + MESSAGE] = 1
            mailbox.announce(self.control32, w)
        # keep the figures, drop the views: the arena unmaps only when no view of it is left
        self.stats = self.stats.copy()
        del self.control, self.control32
        deadline = time.monotonic() + 1.0
        for handle in self._handles:
            if handle is None:
                continue
            handle.process.join(max(0.0, deadline - time.monotonic()))
            if handle.process.is_alive():
                handle.process.kill()
                handle.process.join(5.0)
            handle.connection.close()
            handle.process.close()


class _Handle:
    """One worker process, its pipe, and what it was last sent."""
    __slots__ = ("process", "connection", "plan", "values", "commands", "seq")

    def __init__(self, process: Any, connection: Any) -> None:
        self.process = process
        self.connection = connection
        self.plan: Plan | None = None
        self.values: list[SystemValues] | None = None
        self.commands: tuple[ArraySpec, ArraySpec] | None = None
        self.seq = 0            # the run sequence number it was last given


def _same_values(a: list[SystemValues], b: list[SystemValues] | None) -> bool:
    """Whether shipped values `a` equal `b` without pickling either (arrays only by identity).
    step() of one system sends nothing when they are: unpickling cost a worker 19-26 us."""
    if b is None or len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.removed_ids is not y.removed_ids or x.removed_frame != y.removed_frame or x.named.keys() != y.named.keys():
            return False
        for name, value in x.named.items():
            other = y.named[name]
            if other is not value and (type(other) is not type(value) or isinstance(value, np.ndarray)
                                       or bool(other != value)):
                return False
    return True


def _rebuild(payload: bytes) -> BaseException:
    try:
        exc = pickle.loads(payload)
        if isinstance(exc, BaseException):
            return exc
    except Exception:  # noqa: BLE001 - a kernel exception that cannot cross processes
        pass
    return RuntimeError("a kernel exception that could not be transferred from its worker")

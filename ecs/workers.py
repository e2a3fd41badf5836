"""Workers: processes that run plan tasks in place on the world's shared columns.

Start: `forkserver` processes (RUNTIME.md Q2: forking a process that ran an OpenMP kernel
kills the child; spawn costs ~340 ms a worker, a preloaded forkserver ~22 ms). The server
preloads the main script and `ecs._preload` (numba's one-time initialisation included), so a
worker only maps the arena (its one memfd arrives as a descriptor), imports the systems of
its plan by module and name, and loads their kernels from numba's cache: the main process
compiled them before any worker asked. Workers ignore SIGINT; the main process owns shutdown.
When there are as many workers as cores (or more), worker w is pinned to core w mod cores.

Protocol (the mailbox): each worker has a pipe and a line of words in the shared control
block. For a run of F frames the main process writes the first frame and F into the control
block, a message into the pipe of each participant whose plan, values or command buffer
changed since its last run (flagged in its line), and then bumps the worker's run sequence
number; the worker, which polls that number for a while after each run before it
sleeps on it (a futex), reads its message, runs its tasks of every stage of every frame,
meeting the others at a futex barrier after each stage that needs it, writes its answer into
its line and bumps the shared answer count, which the main process polls the same way. So
`run(frames=F)` costs one round trip, not one per system or frame, and a round trip between
processes that are polling makes no system call to wake anyone: on this 2-core KVM guest a
wake-up through a pipe cost the waker ~20 us and the woken ~40 us more (step() of a 64-row
system on one worker: 121 us through pipes). Nothing per job is pickled but the values and,
when the structure changed, the plan; an exception travels pickled through the pipe.

Faults: a kernel that raises sets the shared abort word; every worker stops at its next task
or barrier and answers; the main process raises KernelError with the kernel's exception as
`__cause__`. A worker that dies (signal, segfault) is seen through its sentinel: the main
process sets abort, waits for the others (killing any still busy after a grace period),
replaces the dead one, then raises WorkerCrashedError naming the system it was running. A run
past `step_timeout` seconds per frame kills and replaces every worker that has not answered. A worker found dead when
a run starts (it died idle, so it ran nothing) is replaced without an error. Every wait of the
main process has a deadline and watches the workers' sentinels; workers watch the main process's
sentinel (at barriers and between frames) and exit within ~0.1 s of its death (even by SIGKILL),
or when the kernel they are inside returns. After a failed run the frame counter stands past
the failed frame, as after a failure in this process.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import select
import signal
import time
import traceback
from multiprocessing.reduction import DupFd
from typing import TYPE_CHECKING, Any

import numpy as np

from kernels import sync

from .commands import buffer_view
from .errors import KernelError, SystemDefinitionError, WorkerCrashedError
from .executor import Executor
from .memory import Arena, ArraySpec
from .plan import due

if TYPE_CHECKING:
    from .plan import Plan
    from .schedule import Progress, Schedule

# control block, int64 words; futex words and sleeper counts are the low halves (int32 index 2 * word)
ABORT = 0
BARRIER_COUNT = 8
BARRIER_GENERATION = 9
ANSWERS = 10               # answers given in this run (futex word)
MAIN_SLEEPING = 11         # 1 while the main process sleeps on ANSWERS
FIRST_FRAME, FRAMES = 12, 13               # of the run
WORKER_LINES = 16          # worker w's line starts at word 16 + 8 * w: line_of(w)
CURRENT_SYSTEM, FRAMES_DONE, RUN_SEQ, SLEEPING, STATUS, ANSWERED, MESSAGE, STARTED = 0, 1, 2, 3, 4, 5, 6, 7
OK, ERROR, ABORTED = 1, 2, 3                 # STATUS of an answer; ERROR's exception is in the pipe
MAX_WORKERS = 1024
MAX_SYSTEMS = 1024
CONTROL_WORDS = WORKER_LINES + 8 * MAX_WORKERS
SLEEP = sync.timespec(0.1)         # longest futex sleep: how often waits check abort and the parent
WATCH = 0.01                       # longest sleep of the main process between checks of the workers
WATCH_SPEC = sync.timespec(WATCH)
IDLE_SPIN_NS = 1_000_000           # how long a waiting process polls (yielding its core) before it sleeps
CRASH_GRACE_S = 2.0                # how long busy workers may finish their kernel after a crash
PARENT_CHECK_S = 0.05              # how often a worker running frames polls the main process's sentinel
STARTUP_HINT = ("worker processes import the main script before they start: a script that makes a World "
                "with workers must do so under `if __name__ == \"__main__\":` (its error is on stderr)")


def line_of(w: int) -> int:
    """The first control word of worker w's line."""
    return WORKER_LINES + 8 * w


class WorkerPool:
    """N worker processes attached to one arena."""

    def __init__(self, arena: Arena, size: int, step_timeout: float | None = None) -> None:
        if size > MAX_WORKERS:
            raise ValueError(f"workers={size}: at most {MAX_WORKERS}")
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
        # As many workers as cores (or more): worker w is pinned to core w (mod cores). Unpinned, the
        # scheduler woke both workers of a step on one core and they ran their halves in turn: move
        # over 1M rows on 2 workers of this 2-core VM, step() 496-540 -> 323-346 us (one worker
        # alone 252-275 us); run(frames=100) after the main process had been busy took 2-3 runs at
        # ~280 us a frame before settling at ~160 us, pinned 160-170 us at once. With fewer
        # workers than cores, idle cores are there to wake on, and nothing is pinned.
        cores = sorted(os.sched_getaffinity(0))
        self._cores = cores if size >= len(cores) > 1 else []
        # Spin (~20 us) at barriers before sleeping only where every worker has a core: the main
        # process sleeps while a run is on, so that is size <= cores (it was size < cores). Five
        # small systems over 10k rows on 2 pinned workers of this 2-core VM, run(frames=1000):
        # 63 us a frame sleeping at each barrier (a futex wake across cores), 17 us spinning first.
        spin = 500 if size <= len(cores) else 0
        self._spin = spin
        # Likewise between runs: a worker polls for its next run, and the main process for the
        # answers, for IDLE_SPIN_NS before sleeping, yielding the core to any other runnable
        # process at each poll. step() of a 64-row system on 2 workers of this 2-core VM: 118 us
        # with pipes and sleeps, 24-28 us polling; of move over 1M rows, 360 -> 158-174 us (the
        # kernel alone: 255 us in this process). Without the main process polling: 67 and 283 us.
        self._idle_spin_ns = IDLE_SPIN_NS if spin else 0
        self._handles: list[_Handle | None] = [None] * size
        self._sentinels = select.poll()       # readable when a worker has died: one poll(2) for all
        self._closed = False
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
                  child_end, int(self.control32[2 * (line + RUN_SEQ)]), self._spin, self._idle_spin_ns,
                  self._cores[w % len(self._cores)] if self._cores else -1))
        process.start()
        child_end.close()
        self._sentinels.register(process.sentinel, select.POLLIN)
        return _Handle(process, parent_end)

    def _replace(self, w: int) -> _Handle:
        """Start a new worker w in place of one that is dead or was killed (and joined)."""
        old = self._handles[w]
        if old is not None:
            self._sentinels.unregister(old.process.sentinel)
        handle = self._handles[w] = self._start(w)
        return handle

    def _announce(self, w: int) -> int:
        """Bump worker w's run sequence number, waking it if it sleeps; returns the new number."""
        line = line_of(w)
        return sync.publish(self.control32, 2 * (line + RUN_SEQ), 2 * (line + SLEEPING))

    def _dead(self) -> set[int]:
        """Workers whose process has ended (one poll(2), ~1 us)."""
        ended = {fd for fd, _ in self._sentinels.poll(0)}
        if not ended:
            return set()
        return {w for w, h in enumerate(self._handles) if h is not None and h.process.sentinel in ended}

    # ---------------------------------------------------------------- running
    def run(self, plan: Plan, values: list[dict[str, object]], first_frame: int, frames: int,
            schedule: Schedule, progress: Progress | None) -> None:
        """Run `frames` frames of `plan` on the workers; raise after every worker is idle again."""
        control = self.control
        control[ABORT] = 0
        self.control32[2 * BARRIER_COUNT] = 0
        self.control32[2 * ANSWERS] = 0
        control[FIRST_FRAME] = first_frame
        control[FRAMES] = frames
        participants = plan.participants
        for w in self._dead():
            # died while idle (the OOM killer, a stray signal): it ran nothing, so replace it
            self._handles[w].process.join(1.0)   # type: ignore[union-attr]
            self._replace(w)
        shipped = [self._shippable(schedule, i, v) for i, v in enumerate(values)]
        pending: dict[int, _Handle] = {}
        try:
            for w in participants:
                handle = self._handles[w]
                assert handle is not None
                commands = schedule.commands.spec(w) if schedule.commands is not None else None
                line = line_of(w)
                control[line + FRAMES_DONE] = 0
                control[line + CURRENT_SYSTEM] = -1   # a fresh worker names no stale system
                control[line + STATUS] = 0
                if handle.plan is plan and commands == handle.commands and _same_values(shipped, handle.values):
                    control[line + MESSAGE] = 0
                else:
                    control[line + MESSAGE] = 1
                    try:
                        handle.connection.send((plan if handle.plan is not plan else None, shipped, commands))
                        handle.plan, handle.values, handle.commands = plan, shipped, commands
                    except OSError:
                        pass              # died this instant: _collect sees it and reports it
                pending[w] = handle
                handle.seq = self._announce(w)
        except BaseException:         # KeyboardInterrupt between sends: stop the workers already sent
            self._stop_and_replace(pending)
            raise
        try:
            errors, crashed, timed_out = self._collect(pending, plan, frames, progress)
        except BaseException:   # KeyboardInterrupt: the frames run so far still count
            self._count_frames(plan, schedule, first_frame, frames, failed=True)
            raise
        self._count_frames(plan, schedule, first_frame, frames, failed=bool(errors or crashed or timed_out))
        if crashed or timed_out:
            # read before the replacements reset their lines
            first_started = bool(crashed) and bool(self.control[line_of(crashed[0][0]) + STARTED])
            for w, _ in crashed:
                self._replace(w)
            for w in timed_out:
                self._replace(w)
            if crashed:
                w, code = crashed[0]
                if not first_started:
                    raise WorkerCrashedError(None, w, code, hint=STARTUP_HINT)
                raise WorkerCrashedError(self._system_name(plan, schedule, w), w, code)
            # name a worker that was inside a kernel, not one waiting for it at a barrier
            w = next((w for w in timed_out if self.control[line_of(w) + CURRENT_SYSTEM] >= 0),
                     timed_out[0])
            raise WorkerCrashedError(self._system_name(plan, schedule, w), w, None,
                                     f"ran past step_timeout={self.step_timeout} s per frame")
        if errors:
            system_index, cause = errors[0]
            raise KernelError(schedule.systems[system_index].name, cause) from cause

    def _collect(self, pending: dict[int, _Handle], plan: Plan, frames: int, progress: Progress | None):
        """Wait for every pending worker's answer, watching sentinels and the deadline."""
        errors: list[tuple[int, BaseException]] = []
        crashed: list[tuple[int, int | None]] = []
        timed_out: list[int] = []
        deadline = None if self.step_timeout is None else time.monotonic() + self.step_timeout * max(frames, 1)
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
                    if sync.load(control, line + ANSWERED) == handle.seq:
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
                if progress is not None and plan.participants:
                    done = min(int(control[line_of(w) + FRAMES_DONE]) for w in plan.participants)
                    progress.update(done)
                now = time.monotonic()
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

    def _shippable(self, schedule: Schedule, system: int, values: dict[str, object]) -> dict[str, object]:
        """Values as a worker receives them: arrays in the world's arena travel as their place in
        it (the worker writes the very same memory), numbers as themselves."""
        out = {}
        for name, value in values.items():
            if isinstance(value, np.ndarray) and not name.startswith("__"):
                spec = self.arena.spec_of(value)
                if spec is None:
                    raise SystemDefinitionError(
                        schedule.systems[system].name,
                        "arrays given to systems that run on workers must live in the world's shared memory: "
                        f"store it with world.resources[{name!r}] = array and pass nothing, or pass "
                        f"world.resources[{name!r}]", name)
                value = spec
            out[name] = value
        return out

    def _count_frames(self, plan: Plan, schedule: Schedule, first_frame: int, frames: int,
                      failed: bool) -> None:
        """Advance the frame counter (and calls) as a run in this process would: past every frame
        all workers finished and, after a failure, past the failed frame too, but not past the
        frames never started (every=N would otherwise drift from a sequential run's phase)."""
        done = frames
        if failed and plan.participants:
            finished = min(int(self.control[line_of(w) + FRAMES_DONE]) for w in plan.participants)
            done = min(frames, finished + 1)
        schedule.frame = first_frame + done
        schedule.count_calls(first_frame, done)

    def _stop_and_replace(self, pending: dict[int, _Handle]) -> None:
        self._abort()
        for w, handle in pending.items():
            handle.process.kill()
            handle.process.join(5.0)
            self._replace(w)

    def _abort(self) -> None:
        sync.store(self.control, ABORT, 1)
        sync.futex_wake(self.control32, 2 * BARRIER_GENERATION, 1 << 30)

    def _system_name(self, plan: Plan, schedule: Schedule, w: int) -> str:
        index = int(self.control[line_of(w) + CURRENT_SYSTEM])
        return schedule.systems[index].name if 0 <= index < len(schedule.systems) else "<between systems>"

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
            self._announce(w)
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
        self.values: list[dict[str, object]] | None = None
        self.commands: tuple[ArraySpec, ArraySpec] | None = None
        self.seq = 0            # the run sequence number it was last given


def _same_values(a: list[dict[str, object]], b: list[dict[str, object]] | None) -> bool:
    """Whether shipped values `a` equal `b` without pickling either (arrays only by identity).
    step() of one system sends nothing when they are: unpickling cost a worker 19-26 us."""
    if b is None or len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x.keys() != y.keys():
            return False
        for name, value in x.items():
            other = y[name]
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


def _pickled(exc: BaseException) -> bytes:
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)
        return payload
    except Exception:  # noqa: BLE001
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return pickle.dumps(RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}\n{text}"))


# ==================================================================== worker process
def worker_main(w: int, arena_fd: Any, arena_size: int, control_spec: ArraySpec, stats_spec: ArraySpec,
                connection: Any, served: int, spin: int, idle_spin_ns: int, core: int = -1) -> None:
    """Entry point of worker `w`: attach, then serve runs until told to stop or orphaned.
    `served`: its run sequence number when it was started (runs come after it); `spin`: PAUSEs at
    a barrier before sleeping; `idle_spin_ns`: how long it polls for the next run before sleeping;
    `core`: the CPU it is pinned to, -1 for none."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if core >= 0:
        with contextlib.suppress(OSError):   # a core taken away meanwhile (cgroup change): run unpinned
            os.sched_setaffinity(0, {core})
    arena = Arena.attach(arena_fd.detach() if hasattr(arena_fd, "detach") else arena_fd, arena_size)
    control = arena.view_of(control_spec)
    control32 = control.view(np.int32)
    stats = arena.view_of(stats_spec)[w]
    executor = Executor(arena)
    parent = mp.parent_process()
    parent_sentinel = parent.sentinel if parent is not None else None
    line = line_of(w)
    control[line + STARTED] = 1
    plan = None
    systems: list[Any] = []
    values: list[dict[str, object]] = []
    seq_word, sleepers = 2 * (line + RUN_SEQ), 2 * (line + SLEEPING)
    poll_ns = idle_spin_ns
    while True:
        seq = sync.await_change(control32, seq_word, served, sleepers, poll_ns, SLEEP)
        if seq == served:
            if parent_sentinel is not None and mpc.wait([parent_sentinel], 0):
                os._exit(0)                  # the main process is gone
            poll_ns = 0                      # idle: sleep until the next run
            continue
        served = seq
        poll_ns = idle_spin_ns
        if control[line + MESSAGE]:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                os._exit(0)
            if message is None:
                return
            new_plan, shipped, commands = message
            if commands is not None and executor.commands is None:
                executor.commands = buffer_view(arena, commands)
            values = [{name: executor.view(v) if isinstance(v, ArraySpec) else v for name, v in vs.items()}
                      for vs in shipped]
            if new_plan is not None:
                plan = new_plan
                systems = [_resolve(module, attribute) for module, attribute in plan.systems]
        assert plan is not None
        first_frame, frames = int(control[FIRST_FRAME]), int(control[FRAMES])
        answer = _run_frames(w, plan, systems, values, first_frame, frames, executor, stats, control,
                             control32, line, spin, parent_sentinel)
        if answer[0] == "error":
            connection.send(answer)
        control[line + STATUS] = {"ok": OK, "error": ERROR, "aborted": ABORTED}[answer[0]]
        sync.store(control, line + ANSWERED, served)
        sync.publish(control32, 2 * ANSWERS, 2 * MAIN_SLEEPING)


def _run_frames(w, plan, systems, values, first_frame, frames, executor, stats, control, control32, line,
                spin, parent_sentinel):
    my_stages = plan.tasks[w]
    last_stage = len(my_stages) - 1
    parties = len(plan.participants)
    failure: list[BaseException] = []
    next_parent_check = time.monotonic() + PARENT_CHECK_S

    def on_error(exc: BaseException) -> None:
        failure.append(exc)

    for done, frame in enumerate(range(first_frame, first_frame + frames), start=1):
        for s, stage in enumerate(my_stages):
            for task in stage:
                if not due(plan, task, frame, values[task.system]):
                    continue
                if sync.load(control, ABORT):
                    return ("aborted",)
                control[line + CURRENT_SYSTEM] = task.system
                executor.run_task(systems[task.system], task, values[task.system], stats[task.system], on_error)
                if failure:
                    sync.store(control, ABORT, 1)
                    sync.futex_wake(control32, 2 * BARRIER_GENERATION, 1 << 30)
                    return ("error", task.system, _pickled(failure[0]))
            control[line + CURRENT_SYSTEM] = -1
            if plan.barriers[s] and parties > 1 and (done < frames or s < last_stage) \
                    and not _barrier(control, control32, parties, spin, parent_sentinel):
                return ("aborted",)      # (the answers end the run: its last stage needs no barrier)
        control[line + FRAMES_DONE] = done
        # a run of many short frames may never sleep at a barrier, where the parent is watched:
        # without this a worker outlived a SIGKILLed main process until its last frame
        if parent_sentinel is not None:
            now = time.monotonic()
            if now >= next_parent_check:
                next_parent_check = now + PARENT_CHECK_S
                if mpc.wait([parent_sentinel], 0):
                    os._exit(0)
    return ("ok",)


def _barrier(control, control32, parties: int, spin: int, parent_sentinel) -> bool:
    """Meet the other workers of the run; False when the run was aborted meanwhile."""
    generation = sync.barrier_arrive(control32, 2 * BARRIER_COUNT, 2 * BARRIER_GENERATION, parties)
    if generation < 0:
        return True
    while True:
        now = sync.wait_change(control32, 2 * BARRIER_GENERATION, generation, spin, SLEEP)
        if now != generation:
            return True
        if sync.load(control, ABORT):
            return False
        if parent_sentinel is not None and mpc.wait([parent_sentinel], 0):
            os._exit(0)


def _resolve(module: str, attribute: str) -> Any:
    from .schedule import resolve_system

    return resolve_system(module, attribute)

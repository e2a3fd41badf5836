"""The main process's watch over one run on the worker pool (pool.py).

While the run is on: the workers' sentinels, the per-frame deadline (step_timeout) and
progress, checked whenever the main process waits (for an epoch it takes part in, or for the
run's end, sleeping on END). After a failure: the wait for workers still inside a kernel
(killed after CRASH_GRACE_S when one crashed), and the kernel errors the workers sent through
their pipes. Ctrl-C: the run is closed and every worker inside a kernel, or being given the
run, is killed and replaced.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, Protocol

from ecs.kernels import sync

from . import mailbox
from .claims import Epochs
from .errors import KernelError
from .mailbox import CURRENT_SYSTEM, DONE, DONE_SLEEPERS, END, END_SLEEPERS, line_of
from .progress import Progress


class Workers(Protocol):
    """What the watch needs of the pool (pool.WorkerPool)."""

    control: Any
    control32: Any
    step_timeout: float | None
    idle_spin_ns: int

    def dead_workers(self, thorough: bool = False) -> set[int]: ...

    def replace_worker(self, w: int) -> Any: ...


WATCH = 0.01                       # longest sleep of the main process between checks of the workers
WATCH_SPEC = sync.timespec(WATCH)
CRASH_GRACE_S = 2.0                # how long busy workers may finish their kernel after a crash


class RunWatch:
    """The main process's watch over one run: the workers' sentinels, the per-frame deadline and
    progress while it runs; after a failure, the wait for workers still inside a kernel."""

    def __init__(self, pool: Workers, run: int, processes: int, epochs: Epochs, progress: Progress | None) -> None:
        self.pool, self.run, self.processes, self.epochs, self.progress = pool, run, processes, epochs, progress
        self.control, self.control32 = pool.control, pool.control32
        self.given: dict[int, Any] = {}       # worker -> its pool handle, once given the run
        self.giving: int | None = None        # the worker being given the run (its message in flight)
        self.crashed: list[tuple[int, int | None]] = []
        self.timed_out: list[int] = []
        self.timeout = pool.step_timeout
        self.deadline = None if self.timeout is None else time.monotonic() + self.timeout
        self.grace_deadline: float | None = None
        self.frames_finished = 0
        self.total: int | None = None

    def done(self) -> int:
        return int(sync.load(self.control32, 2 * DONE))

    def closed(self) -> bool:
        return not mailbox.is_open(self.control, self.run)

    def close(self) -> None:
        mailbox.close_run(self.control, self.control32, self.run, self.processes)

    def failed(self) -> bool:
        """Whether the run did not end normally: units left undone, or a worker crashed or was
        killed (even if the others finished its units' run)."""
        return self.total is None or self.done() < self.total or bool(self.crashed or self.timed_out)

    def in_run(self) -> list[int]:
        """Given workers, neither crashed nor killed."""
        out_of_it = {w for w, _ in self.crashed} | set(self.timed_out)
        return [w for w in self.given if w not in out_of_it]

    def holders(self) -> list[int]:
        """Given workers, neither crashed nor killed, inside a kernel of the run."""
        return [w for w in self.in_run() if mailbox.holds(self.control, w, self.run)]

    def check(self) -> bool:
        """Look at sentinels, progress and the deadline; False once the run is closed."""
        in_run = self.in_run()
        for w in self.pool.dead_workers():
            if w in in_run:
                handle = self.given[w]
                handle.process.join(1.0)
                self.crashed.append((w, handle.process.exitcode))
                self.close()
                self.grace_deadline = self.grace_deadline or time.monotonic() + CRASH_GRACE_S
        now = time.monotonic()
        finished = self.epochs.frames_done(self.done())
        if finished > self.frames_finished:
            self.frames_finished = finished
            if self.timeout is not None:
                self.deadline = now + self.timeout
            if self.progress is not None:
                self.progress.update(finished)
        if self.deadline is not None and now >= self.deadline and not self.timed_out:
            # the workers inside a kernel hold the frame up; with none inside one, every given worker
            # still in the run is stuck before its first claim (attaching, reading a big message)
            self.close()
            self.timed_out = self._kill(self.holders()) or self._kill(self.in_run())
        return not self.closed()

    def kill_hung(self, w: int) -> None:
        """Worker w read none of its messages until the frame's deadline (stopped, hung): killed,
        and reported as timed out. The run is closed: its units may be nobody else's to run (the
        deadline's own path closes it too), and waiting for them would never end."""
        self.close()
        self._kill([w])
        self.timed_out.append(w)

    def _kill(self, workers: list[int]) -> list[int]:
        for w in workers:
            handle = self.given[w]
            handle.process.kill()
            handle.process.join(5.0)
        return workers

    def _sleep(self, word: int, sleepers: int, seen: int, spin_ns: int = 0) -> None:
        """Wait for control32[word] to move from `seen` (read before the checks that led here),
        at most until the next check is due."""
        limits = [d for d in (self.deadline, self.grace_deadline) if d is not None]
        watch = WATCH if not limits else max(0.0, min(WATCH, min(limits) - time.monotonic()))
        sync.await_change(self.control32, word, seen, sleepers, spin_ns,
                          WATCH_SPEC if watch == WATCH else sync.timespec(watch))

    def wait_end(self, total: int) -> None:
        """Wait until all `total` units are done or the run is closed (sleeping on END: woken at
        the end, not per unit); then close it (a normal end too: a worker that reads this run's
        words late cannot claim anything)."""
        self.total = total
        spin_ns = self.pool.idle_spin_ns
        while True:
            end = int(sync.load(self.control32, 2 * END))     # before the look at DONE
            if self.done() >= total or not self.check():
                break
            self._sleep(2 * END, 2 * END_SLEEPERS, end, spin_ns)
            spin_ns = 0                       # polled once for a short run; a long one wakes us
        self.close()

    def settle(self) -> None:
        """After a failure: wait until no worker is inside a kernel of the run; after a crash,
        kill those still inside one when CRASH_GRACE_S is up."""
        while True:
            done = self.done()             # before the look: a holder that ends after it wakes us
            if not self.holders():
                return
            self.check()
            if self.grace_deadline is not None and time.monotonic() >= self.grace_deadline:
                for w in self._kill(self.holders()):
                    self.crashed.append((w, self.given[w].process.exitcode))
                return
            self._sleep(2 * DONE, 2 * DONE_SLEEPERS, done)

    def stop_now(self) -> None:
        """Ctrl-C: close the run; kill and replace every worker still inside one of its kernels,
        and one whose message was being sent (its pipe may hold half of it); read the errors
        the others sent."""
        self.close()
        doomed = set(self.holders()) | ({self.giving} if self.giving is not None else set())
        for w in self._kill(sorted(doomed)):
            self.pool.replace_worker(w)
        for w in doomed:
            self.given.pop(w, None)
        self.worker_errors([])

    def frames_done(self, frames: int, failed: bool) -> int:
        """Frames of the run that count as run, as in this process: all of them, or after a failure
        every frame finished plus the failed one, but not the frames never started (every=N would
        otherwise drift from a sequential run's phase)."""
        if not failed:
            return frames
        return min(frames, self.epochs.frames_done(self.done()) + 1)

    def worker_errors(self, system_names: list[str]) -> list[BaseException]:
        """The kernel errors workers reported in the run, as KernelError."""
        errors: list[BaseException] = []
        for w, handle in self.given.items():
            if not mailbox.raised_in(self.control, w, self.run):
                continue
            try:
                _, index, payload = handle.connection.recv()
                cause = _rebuild(payload)
            except (EOFError, OSError):
                index = int(self.control[line_of(w) + CURRENT_SYSTEM])
                cause = RuntimeError("a worker's exception was lost with its pipe")
            error = KernelError(system_names[index] if 0 <= index < len(system_names) else "<unknown system>", cause)
            error.__cause__ = cause
            errors.append(error)
        return errors


def _rebuild(payload: bytes) -> BaseException:
    try:
        exc = pickle.loads(payload)
        if isinstance(exc, BaseException):
            return exc
    except Exception:  # noqa: BLE001 - a kernel exception that cannot cross processes
        pass
    return RuntimeError("a kernel exception that could not be transferred from its worker")

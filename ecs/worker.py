"""The worker process: attach to a world's arena, then claim and run plan units in place until told to stop.

A worker is started by the pool (pool.py) through `multiprocessing`'s forkserver. It maps the
world's arena (its one memfd arrives as a descriptor), imports the systems of its plan by
module and name (binding.resolve_system) and loads their kernels from numba's cache: the main
process compiled them before any worker asked. It ignores SIGINT (the main process owns
shutdown).

It serves runs through the mailbox (mailbox.py): per run it reads its messages, then claims
units of the run from the shared counter and runs them (claims.py) until none is left or the
run is closed. A kernel that raises closes the run; the exception travels pickled through the
pipe. A worker watches the main process's sentinel while it waits and while idle, and exits
within ~0.1 s of its death (even by SIGKILL), or when the kernel it is inside returns.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import pickle
import signal
import time
import traceback
from typing import Any

import numpy as np

from ecs.kernels import sync

from . import mailbox
from .binding import resolve_system
from .claims import Epochs, take_part
from .commands import buffer_view
from .executor import Executor, stats_views
from .mailbox import (
    CURRENT_SYSTEM,
    ERROR_RUN,
    FIRST_FRAME,
    FRAMES,
    HOLDING,
    MESSAGES,
    RUN,
    RUN_SEQ,
    SLEEP,
    SLEEPING,
    STARTED,
    TOTAL,
    line_of,
)
from .memory import Arena, ArraySpec
from .plan import Unit

PARENT_CHECK_S = 0.05              # how often a worker running units polls the main process's sentinel


def worker_main(w: int, arena_fd: Any, arena_size: int, control_spec: ArraySpec, stats_spec: ArraySpec,
                connection: Any, served: int, received: int, home: int, spin_ns: int, idle_spin_ns: int) -> None:
    """Entry point of worker `w`: attach, then serve runs until told to stop or orphaned.
    `served`, `received`: its RUN_SEQ and MESSAGES when it was started (what it is given comes
    after them); `home`: its home range of each epoch (claims.py); `spin_ns`: how long it polls
    for an epoch to open before sleeping; `idle_spin_ns`: how long it polls for the next run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    arena = Arena.attach(arena_fd.detach() if hasattr(arena_fd, "detach") else arena_fd, arena_size)
    control = arena.view_of(control_spec)
    control32 = control.view(np.int32)
    stats = arena.view_of(stats_spec)[w]
    executor = Executor(arena)
    parent = mp.parent_process()
    parent_sentinel = parent.sentinel if parent is not None else None
    line = line_of(w)
    control[line + STARTED] = 1
    state = _State(executor, control, stats, line, home, connection, parent_sentinel, spin_ns)
    seq_word, sleepers = 2 * (line + RUN_SEQ), 2 * (line + SLEEPING)
    poll_ns = idle_spin_ns
    while True:
        seq = sync.await_change(control32, seq_word, served, sleepers, poll_ns, SLEEP)
        if seq == served:
            _exit_if_orphaned(parent_sentinel)
            poll_ns = 0                      # idle: sleep until the next run
            continue
        served = seq
        poll_ns = idle_spin_ns
        while True:                          # the run, its messages and frames, read consistently
            run = int(sync.load(control, line + RUN))
            while received < int(sync.load(control, line + MESSAGES)):
                try:
                    message = connection.recv()
                except (EOFError, OSError):
                    os._exit(0)
                if message is None:
                    return
                received += 1
                state.receive(arena, message)
            first_frame, frames, total = int(control[FIRST_FRAME]), int(control[FRAMES]), int(control[TOTAL])
            if int(sync.load(control, line + RUN)) == run:
                break
        if state.plan is None:
            continue
        state.serve(run, total, Epochs(state.plan, state.values, first_frame, frames))


class _State:
    """What a worker's messages told it (its plan, the systems it names, the run's values), and
    how it serves a run."""

    def __init__(self, executor: Executor, control: np.ndarray, stats: np.ndarray, line: int, home: int,
                 connection: Any, parent_sentinel: Any, spin_ns: int) -> None:
        self.executor, self.control, self.line, self.home = executor, control, line, home
        self.stats = stats_views(stats)
        self.connection, self.parent_sentinel, self.spin_ns = connection, parent_sentinel, spin_ns
        self.plan: Any = None
        self.systems: list[Any] = []
        self.values: list[Any] = []
        self.next_parent_check = 0.0
        self.failure: tuple[int, BaseException] | None = None   # (system, exception) of the run's failed unit

    def serve(self, run: int, total: int, epochs: Epochs) -> None:
        """Claim and run units of run `run`; a kernel that raises closes the run."""
        control = self.control
        control32 = control.view(np.int32)
        home = self.home % epochs.plan.processes
        self.failure = None
        raised = not take_part(epochs, control, control32, run, total, home,
                               lambda unit, frame: self.run_unit(run, unit, frame), self.spin_ns,
                               self.line + HOLDING, lambda: _exit_if_orphaned(self.parent_sentinel))
        if raised and self.failure is not None:
            # ERROR_RUN is set and the unit released: close the run, then send (the main process
            # reads the pipe once no worker holds a unit; a big exception must not block a holder)
            mailbox.close_run(control, control32, run, epochs.plan.processes)
            system, exc = self.failure
            self.connection.send(("error", system, _pickled(exc)))

    def run_unit(self, run: int, unit: Unit, frame: int) -> bool:
        """Run one claimed unit; False when a kernel raised (the run's id goes to ERROR_RUN; serve
        sends the exception once the unit is released)."""
        # a run of many short frames may never wait, where the parent is watched: without this a
        # worker outlived a SIGKILLed main process until the run's last frame
        if time.monotonic() >= self.next_parent_check:
            self.next_parent_check = time.monotonic() + PARENT_CHECK_S
            _exit_if_orphaned(self.parent_sentinel)
        failure: list[BaseException] = []
        control, line = self.control, self.line
        index = unit[0].system    # a unit's tasks are of one system
        control[line + CURRENT_SYSTEM] = index
        if not self.executor.run_unit(self.systems[index], unit, self.values[index], self.stats[index],
                                      failure.append, frame):
            self.failure = (index, failure[0])
            sync.store(control, line + ERROR_RUN, run)
            return False
        control[line + CURRENT_SYSTEM] = -1
        return True

    def receive(self, arena: Arena, message: tuple) -> None:
        new_plan, shipped, commands = message
        executor = self.executor
        if commands is not None and executor.commands is None:
            executor.commands = buffer_view(arena, commands)
        self.values = [vs._replace(named={name: executor.view(v) if isinstance(v, ArraySpec) else v
                                          for name, v in vs.named.items()})
                       for vs in shipped]
        if new_plan is not None:
            self.plan = new_plan
            executor.use_plan(new_plan)
            executor.map_in(new_plan.tasks())
            self.systems = [resolve_system(module, attribute) for module, attribute in new_plan.systems]


def _exit_if_orphaned(parent_sentinel: Any) -> bool:
    """Exit if the main process is gone; True otherwise (keep waiting)."""
    if parent_sentinel is not None and mpc.wait([parent_sentinel], 0):
        os._exit(0)
    return True


def _pickled(exc: BaseException) -> bytes:
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)
        return payload
    except Exception:  # noqa: BLE001
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return pickle.dumps(RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}\n{text}"))

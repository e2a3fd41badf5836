"""The worker process: attach to a world's arena, then run plan tasks in place until told to stop.

A worker is started by the pool (pool.py) through `multiprocessing`'s forkserver. It maps the
world's arena (its one memfd arrives as a descriptor), imports the systems of its plan by
module and name (binding.resolve_system) and loads their kernels from numba's cache: the main
process compiled them before any worker asked. It ignores SIGINT (the main process owns
shutdown).

It serves runs through the mailbox (mailbox.py): per run it reads its message if flagged, runs
its tasks of every stage of every frame, meets the others at a futex barrier after each stage
that needs it, and answers. A kernel that raises sets ABORT, and the exception travels pickled
through the pipe. A worker watches the main process's sentinel at barriers, between frames and
while idle, and exits within ~0.1 s of its death (even by SIGKILL), or when the kernel it is
inside returns.
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
from .commands import buffer_view
from .executor import Executor
from .mailbox import (
    ABORT,
    ABORTED,
    BARRIER_COUNT,
    BARRIER_GENERATION,
    CURRENT_SYSTEM,
    ERROR,
    FIRST_FRAME,
    FRAMES,
    FRAMES_DONE,
    MESSAGE,
    OK,
    RUN_SEQ,
    SLEEP,
    SLEEPING,
    STARTED,
    line_of,
)
from .memory import Arena, ArraySpec
from .plan import due

PARENT_CHECK_S = 0.05              # how often a worker running frames polls the main process's sentinel


def worker_main(w: int, arena_fd: Any, arena_size: int, control_spec: ArraySpec, stats_spec: ArraySpec,
                connection: Any, served: int, spin: int, idle_spin_ns: int) -> None:
    """Entry point of worker `w`: attach, then serve runs until told to stop or orphaned.
    `served`: its run sequence number when it was started (runs come after it); `spin`: PAUSEs at
    a barrier before sleeping; `idle_spin_ns`: how long it polls for the next run before sleeping."""
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
            values = [vs._replace(named={name: executor.view(v) if isinstance(v, ArraySpec) else v
                                         for name, v in vs.named.items()})
                      for vs in shipped]
            if new_plan is not None:
                plan = new_plan
                systems = [resolve_system(module, attribute) for module, attribute in plan.systems]
        assert plan is not None
        first_frame, frames = int(control[FIRST_FRAME]), int(control[FRAMES])
        answer = _run_frames(w, plan, systems, values, first_frame, frames, executor, stats, control,
                             control32, line, spin, parent_sentinel)
        if answer[0] == "error":
            connection.send(answer)
        mailbox.answer(control, control32, w, served, {"ok": OK, "error": ERROR, "aborted": ABORTED}[answer[0]])


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
                executor.run_task(systems[task.system], task, values[task.system], stats[task.system], on_error,
                              frame)
                if failure:
                    mailbox.abort(control, control32)
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


def _pickled(exc: BaseException) -> bytes:
    try:
        payload = pickle.dumps(exc)
        pickle.loads(payload)
        return payload
    except Exception:  # noqa: BLE001
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return pickle.dumps(RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}\n{text}"))

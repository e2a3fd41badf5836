"""Mailbox: the control block that the main process and its workers share, and its protocol.

The control block is CONTROL_WORDS int64 words in the world's arena. Futex words and sleeper
counts are the low 32-bit halves of their words (int32 index 2 * word).

    word 0             ABORT: set by whoever fails first; everyone stops at its next task or barrier
    words 8, 9         the barrier: arrivals and generation
    words 10, 11       ANSWERS (answers given in this run, a futex word) and MAIN_SLEEPING
    words 12, 13       FIRST_FRAME and FRAMES of the run
    words 16 + 8w ...  worker w's line (`line_of(w)`), eight words:
        CURRENT_SYSTEM  the system it is running, -1 between systems
        FRAMES_DONE     frames of this run it finished
        RUN_SEQ         its run sequence number (futex word), bumped by the main process per run
        SLEEPING        1 while it sleeps on RUN_SEQ
        STATUS          OK, ERROR (the exception follows through its pipe) or ABORTED
        ANSWERED        the run sequence number it last answered
        MESSAGE         1 when its pipe holds a message for this run (a plan, values or stop)
        STARTED         1 once it attached to the arena

A run: the main process writes FIRST_FRAME and FRAMES, a message into the pipe of each worker
whose plan or values changed, then `announce`s the run to each worker. A worker polls RUN_SEQ
for IDLE_SPIN_NS after its last run (yielding its core at each poll) and then sleeps on it;
it runs its tasks, writes STATUS and ANSWERED in its line and bumps ANSWERS, which the main
process awaits the same way. So a round trip between polling processes makes no system call.
"""

from __future__ import annotations

import numpy as np

from ecs.kernels import sync

ABORT = 0
BARRIER_COUNT = 8
BARRIER_GENERATION = 9
ANSWERS = 10
MAIN_SLEEPING = 11
FIRST_FRAME, FRAMES = 12, 13
WORKER_LINES = 16
CURRENT_SYSTEM, FRAMES_DONE, RUN_SEQ, SLEEPING, STATUS, ANSWERED, MESSAGE, STARTED = range(8)
OK, ERROR, ABORTED = 1, 2, 3
MAX_WORKERS = 1024
MAX_SYSTEMS = 1024
CONTROL_WORDS = WORKER_LINES + 8 * MAX_WORKERS
SLEEP = sync.timespec(0.1)         # longest futex sleep: how often waits check abort and the parent
IDLE_SPIN_NS = 1_000_000           # how long a waiting process polls (yielding its core) before it sleeps


def line_of(w: int) -> int:
    """The first control word of worker w's line."""
    return WORKER_LINES + 8 * w


def announce(control32: np.ndarray, w: int) -> int:
    """Bump worker w's run sequence number, waking it if it sleeps; returns the new number."""
    line = line_of(w)
    return sync.publish(control32, 2 * (line + RUN_SEQ), 2 * (line + SLEEPING))


def abort(control: np.ndarray, control32: np.ndarray) -> None:
    """Tell every process of the run to stop, waking those asleep at the barrier."""
    sync.store(control, ABORT, 1)
    sync.futex_wake(control32, 2 * BARRIER_GENERATION, 1 << 30)


def answer(control: np.ndarray, control32: np.ndarray, w: int, served: int, status: int) -> None:
    """Worker w's answer to run `served`: its status, then the answer count (waking the main process)."""
    line = line_of(w)
    control[line + STATUS] = status
    sync.store(control, line + ANSWERED, served)
    sync.publish(control32, 2 * ANSWERS, 2 * MAIN_SLEEPING)


def has_answered(control: np.ndarray, w: int, seq: int) -> bool:
    return bool(sync.load(control, line_of(w) + ANSWERED) == seq)


def start_run(control: np.ndarray, control32: np.ndarray, first_frame: int, frames: int) -> None:
    """Reset the shared words for a new run of `frames` frames from `first_frame`."""
    control[ABORT] = 0
    control32[2 * BARRIER_COUNT] = 0
    control32[2 * ANSWERS] = 0
    control[FIRST_FRAME] = first_frame
    control[FRAMES] = frames


def reset_line(control: np.ndarray, w: int, message: bool) -> None:
    """Worker w's line before a run; `message`: its pipe holds a message for this run."""
    line = line_of(w)
    control[line + FRAMES_DONE] = 0
    control[line + CURRENT_SYSTEM] = -1   # a fresh worker names no stale system
    control[line + STATUS] = 0
    control[line + MESSAGE] = int(message)

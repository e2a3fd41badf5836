"""Mailbox: the control block that the main process and its workers share, and its protocol.

The control block is CONTROL_WORDS int64 words in the world's arena. Futex words and sleeper
counts are the low 32-bit halves of their words (int32 index 2 * word).

    words 1, 2         DONE (units finished in this run, a futex word) and DONE_SLEEPERS
    word 3             TOTAL: the run's unit count
    words 4, 5         END (bumped when DONE reaches TOTAL and when the run closes, a futex word)
                       and END_SLEEPERS: the main process sleeps on it, not woken per unit
    words 12, 13       FIRST_FRAME and FRAMES of the run
    words 16 + 8w ...  worker w's line (`line_of(w)`), eight words:
        CURRENT_SYSTEM  the system it is running, -1 between systems
        HOLDING         the run id while it holds a claimed unit (set before it claims), else 0
        RUN_SEQ         bumped by the main process to announce a run (futex word)
        SLEEPING        1 while it sleeps on RUN_SEQ
        ERROR_RUN       the run id of the last run its kernel raised in (the exception follows
                        through its pipe, sent once the worker has released its unit and
                        closed the run)
        RUN             the run id it was last given
        MESSAGES        messages sent to it through its pipe so far (a plan, values or stop)
        STARTED         1 once it attached to the arena
    `counter_of(p)`    the claim counter of home range p (claims.py), one per 64-byte line:
                       (run id << 32) | ticket; the bit CLOSED of the low half is set when the
                       run ends or fails

A run r: the main process opens the counters at (r, 0) with DONE = 0 and the run's frames, then
for each worker it gives the run sends a message if its plan or values changed, bumps MESSAGES,
stores RUN = r and bumps RUN_SEQ, waking it if it sleeps. A worker polls RUN_SEQ for
IDLE_SPIN_NS after its last run (yielding its core at each poll), then sleeps on it; woken, it
reads RUN, every message up to MESSAGES (so a worker that missed runs still reads each message
in order), the frames, and RUN again (if it changed, a newer run came meanwhile: it reads
again). Then it claims units of run r until none is left or the run is closed. Nobody waits for
a worker that is late: a run ends when DONE counts every unit, whoever ran them.
"""

from __future__ import annotations

import numpy as np

from ecs.kernels import sync

DONE, DONE_SLEEPERS, TOTAL, END, END_SLEEPERS = 1, 2, 3, 4, 5
FIRST_FRAME, FRAMES = 12, 13
WORKER_LINES = 16
CURRENT_SYSTEM, HOLDING, RUN_SEQ, SLEEPING, ERROR_RUN, RUN, MESSAGES, STARTED = range(8)
CLOSED = sync.CLOSED               # in the low half of a claim counter: no more claims in this run
MAX_RUN_UNITS = 1 << 30            # units of one run: tickets and DONE stay under CLOSED and int32
MAX_RUN_ID = (1 << 31) - 1         # run ids are 1..MAX_RUN_ID, then wrap around
MAX_WORKERS = 1024
MAX_SYSTEMS = 1024
COUNTERS = WORKER_LINES + 8 * MAX_WORKERS
CONTROL_WORDS = COUNTERS + 8 * (MAX_WORKERS + 1)
SLEEP = sync.timespec(0.1)         # longest futex sleep: how often waits check the run and the parent
IDLE_SPIN_NS = 1_000_000           # how long an idle process polls (yielding its core) before it sleeps


def line_of(w: int) -> int:
    """The first control word of worker w's line."""
    return WORKER_LINES + 8 * w


def counter_of(p: int) -> int:
    """The control word of home range p's claim counter."""
    return COUNTERS + 8 * p


def next_run_id(run: int) -> int:
    return run + 1 if run < MAX_RUN_ID else 1


def open_run(control: np.ndarray, control32: np.ndarray, run: int, processes: int, first_frame: int,
             frames: int, total: int) -> None:
    """Reset the shared words for run `run` of `frames` frames from `first_frame`, `total` units
    over `processes` home ranges; claims open last."""
    control[FIRST_FRAME] = first_frame
    control[FRAMES] = frames
    control[TOTAL] = total
    sync.store(control32, 2 * DONE, 0)
    for p in range(processes):
        sync.store(control, counter_of(p), run << 32)


def close_run(control: np.ndarray, control32: np.ndarray, run: int, processes: int) -> None:
    """End claims in run `run` (where a counter still holds it), waking everyone waiting on DONE
    or END."""
    for p in range(processes):
        word = counter_of(p)
        while True:
            packed = int(sync.load(control, word))
            if packed >> 32 != run or packed & CLOSED:
                break
            if sync.compare_exchange(control, word, packed, packed | CLOSED):
                break
    sync.futex_wake(control32, 2 * DONE, 1 << 30)
    sync.publish(control32, 2 * END, 2 * END_SLEEPERS)


def unit_done(control32: np.ndarray, total: int) -> None:
    """Count one more unit done, waking epoch waiters; at the run's last, the main process too."""
    if sync.publish(control32, 2 * DONE, 2 * DONE_SLEEPERS) == total:
        sync.publish(control32, 2 * END, 2 * END_SLEEPERS)


def is_open(control: np.ndarray, run: int) -> bool:
    """Whether run `run` still takes claims (range 0's counter holds it, not closed)."""
    packed = int(sync.load(control, counter_of(0)))
    return packed >> 32 == run and not packed & CLOSED


def give_run(control: np.ndarray, control32: np.ndarray, w: int, run: int, message: bool) -> None:
    """Give worker w run `run` (its pipe holds one more message if `message`), waking it."""
    line = line_of(w)
    control[line + CURRENT_SYSTEM] = -1   # a fresh worker names no stale system
    if message:
        sync.store(control, line + MESSAGES, int(control[line + MESSAGES]) + 1)
    sync.store(control, line + RUN, run)
    sync.publish(control32, 2 * (line + RUN_SEQ), 2 * (line + SLEEPING))


def holds(control: np.ndarray, w: int, run: int) -> bool:
    """Whether worker w holds a unit of run `run` (it may be inside a kernel)."""
    return bool(sync.load(control, line_of(w) + HOLDING) == run)


def raised_in(control: np.ndarray, w: int, run: int) -> bool:
    """Whether worker w reported a kernel exception in run `run` (it waits in its pipe)."""
    return bool(sync.load(control, line_of(w) + ERROR_RUN) == run)

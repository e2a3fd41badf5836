"""kernels/sync.py: atomics, futex wait/wake, publish/await_change and claim_ticket, in one
process and between processes that share words in an Arena (a memfd).

Cross-process tests start `forkserver` children (as ecs/workers.py does; never a fork of a
process that ran numba) that attach the parent's memfd. Every wait on either side has a
deadline and children are joined with a timeout and killed at teardown, so a broken primitive
fails its test instead of hanging it. Every kernel a child calls is compiled here first
(`compiled_in_parent`): processes that compile different signatures at once corrupt numba's cache.
A child "asleep on a futex" is one that announced it is about to wait, made no other blocking
call since, and shows state S in /proc.
"""

from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection as mpc
import time
from collections.abc import Callable, Iterator
from multiprocessing.reduction import DupFd
from typing import Any, NamedTuple

import numba
import numpy as np
import pytest

from ecs.kernels import sync
from ecs.kernels._jit import jit
from ecs.memory import PAGE, Arena, ArraySpec

DEADLINE_S = 20.0                   # longest any wait or join of these tests may take
LONG = sync.timespec(60.0)          # a futex sleep that only a wake-up ends within DEADLINE_S
SLEEP = sync.timespec(0.1)          # as ecs/workers.py: sleeps re-check their deadline this often
OLDS = 400_000                      # atomic adds per process in the counter tests

# int64 words of the shared page; an int32 index 2 * w is the low half of int64 word w
GO, READY, COUNTER, STARTED = 0, 1, 2, 3
COUNTER32 = 2 * 4
SEQ32, SLEEPERS32 = 2 * 5, 2 * 6    # publish / await_change: the futex word and its sleeper count
FUTEX32 = 2 * 9
WARM = 10                           # a word the warm-up calls may write
ABOUT_TO_WAIT = 16                  # + child: a child is about to call the futex
RESULT = 32                         # + child: what a child reports
SHARED_WORDS = PAGE // 8


# ---------------------------------------------------------------- njit drivers
@jit
def add_many(words, idx, olds):
    """len(olds) atomic adds of one to words[idx]; olds[k] = the value the k-th add found."""
    for k in range(olds.shape[0]):
        olds[k] = sync.atomic_add(words, idx, 1)


@jit
def spin_until(words, idx, value):
    """Poll words[idx] until it is >= value, unbounded (only children call it; teardown kills
    them). Nothing but the acquire load is in the loop: with a plain load it compiles to a jump
    to itself and never sees another process's store (RUNTIME.md Q5)."""
    while sync.atomic_load(words, idx) < value:
        pass


@jit
def add_many_after(words, go, value, started, target, idx, olds):
    """spin_until(words, go, value), store 1 to words[started], add_many(target, idx, olds): all in
    one kernel, so the process is running when it says it started."""
    spin_until(words, go, value)
    sync.atomic_store(words, started, 1)
    add_many(target, idx, olds)


@jit
def add_many_now(words, go, started, max_polls, target, idx, olds):
    """Store 1 to words[go] (releasing a process in add_many_after), poll until it says it started,
    then add_many(target, idx, olds): both processes add at once. False (no adds) after max_polls."""
    sync.atomic_store(words, go, 1)
    polls = 0
    while sync.atomic_load(words, started) < 1:
        polls += 1
        if polls >= max_polls:
            return False
    add_many(target, idx, olds)
    return True


@jit
def claim_all(words, idx, tag, stop, out):
    """Claim tickets of [0, stop) from the counter words[idx] until none is left; out[k] = the
    k-th ticket this process got. Returns how many."""
    m = 0
    while True:
        ticket = sync.claim_ticket(words, idx, tag, 0, stop, -1)
        if ticket < 0:
            return m
        out[m] = ticket
        m += 1


@jit
def claim_all_after(words, go, value, started, idx, tag, stop, out):
    """spin_until(words, go, value), store 1 to words[started], then claim_all."""
    spin_until(words, go, value)
    sync.atomic_store(words, started, 1)
    return claim_all(words, idx, tag, stop, out)


@jit
def relax(times):
    """`times` PAUSEs; returns how many."""
    done = 0
    for _ in range(times):
        sync.cpu_relax()
        done += 1
    return done


@jit
def load_store_in_kernel(words, idx, value):
    """atomic_store then atomic_load from inside a kernel."""
    sync.atomic_store(words, idx, value)
    return sync.atomic_load(words, idx)


# ---------------------------------------------------------------- shared words and children
class Shared(NamedTuple):
    arena: Arena
    words_spec: ArraySpec
    olds_spec: ArraySpec
    words: np.ndarray       # int64, SHARED_WORDS
    olds: np.ndarray        # int64 (3, OLDS): one row of atomic_add results per process

    @property
    def words32(self) -> np.ndarray:
        return self.words.view(np.int32)


def attach(fd: Any, size: int, words_spec: ArraySpec, olds_spec: ArraySpec) -> tuple[np.ndarray, np.ndarray]:
    """A child's views of the parent's shared words (fd: the DupFd of the parent's memfd)."""
    arena = Arena.attach(fd.detach() if hasattr(fd, "detach") else fd, size)
    return arena.view_of(words_spec), arena.view_of(olds_spec)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.0002)


def asleep(process: mp.process.BaseProcess) -> bool:
    """Whether the process is in interruptible sleep (state S in /proc/<pid>/stat)."""
    with open(f"/proc/{process.pid}/stat") as stat:
        text = stat.read()
    return text[text.rindex(")") + 2] == "S"


def join_all(processes: list[mp.process.BaseProcess]) -> None:
    """Join every process within DEADLINE_S (in all) and require a clean exit."""
    deadline = time.monotonic() + DEADLINE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    codes = [process.exitcode for process in processes]
    assert codes == [0] * len(processes), f"children exit codes {codes} (None: still running)"


@pytest.fixture(scope="module")
def compiled_in_parent() -> None:
    """Compile (or load) here every signature a child calls, before any child exists."""
    words = np.zeros(SHARED_WORDS, np.int64)
    words32 = words.view(np.int32)
    olds = np.zeros(1, np.int64)
    add_many(words, COUNTER, olds)
    add_many(words32, COUNTER32, olds)
    for target, idx in ((words, COUNTER), (words32, COUNTER32)):
        add_many_after(words, GO, 0, WARM, target, idx, olds[:0])
        add_many_now(words, GO, WARM, 1, target, idx, olds[:0])
    sync.load(words, GO)
    sync.store(words, GO, 0)
    sync.load(words32, SEQ32)
    sync.await_change(words32, SEQ32, 1, SLEEPERS32, 0, SLEEP)
    sync.publish(words32, SEQ32, SLEEPERS32)
    sync.futex_wait(words32, FUTEX32, 1, SLEEP)
    sync.futex_wake(words32, FUTEX32, 1)
    claim_all_after(words, GO, 0, WARM, COUNTER, 5, 0, olds[:0])


@pytest.fixture
def shared() -> Iterator[Shared]:
    arena = Arena(1 << 24)
    region = arena.allocate(PAGE + 3 * OLDS * 8)
    region.commit(PAGE + 3 * OLDS * 8)
    words_spec = region.spec(np.int64, (SHARED_WORDS,))
    olds_spec = region.spec(np.int64, (3, OLDS), PAGE)
    yield Shared(arena, words_spec, olds_spec, arena.view_of(words_spec), arena.view_of(olds_spec))
    arena.close()


@pytest.fixture
def start_child(shared: Shared, compiled_in_parent: None) -> Iterator[Callable[..., mp.process.BaseProcess]]:
    """start_child(target, *args) runs target(fd, size, words_spec, olds_spec, *args) in a forkserver
    child; children still running at teardown are killed."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["__main__", "ecs._preload"])   # ecs/workers.py's: one server for both
    started: list[mp.process.BaseProcess] = []

    def start(target: Callable[..., None], *args: Any) -> mp.process.BaseProcess:
        process = context.Process(target=target, daemon=True,
                                  args=(DupFd(shared.arena.fd), shared.arena.size, shared.words_spec,
                                        shared.olds_spec, *args))
        process.start()
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.is_alive():
                process.kill()
            process.join(5.0)


# ---------------------------------------------------------------- child bodies
def child_add_many(fd, size, words_spec, olds_spec, width: int, row: int) -> None:
    words, olds = attach(fd, size, words_spec, olds_spec)
    target, idx = (words, COUNTER) if width == 64 else (words.view(np.int32), COUNTER32)
    olds[row] = -1                                         # fault its pages in now, not while adding
    add_many_after(words, GO, 0, WARM, target, idx, olds[row][:0])   # load the kernel now: no wait, no adds
    sync.store(words, READY, 1)
    add_many_after(words, GO, 1, STARTED, target, idx, olds[row])   # spins while the parent sees READY


def child_claim_all(fd, size, words_spec, olds_spec, tag: int, row: int) -> None:
    words, olds = attach(fd, size, words_spec, olds_spec)
    olds[row] = -1                                          # fault its pages in now
    claim_all_after(words, GO, 0, WARM, COUNTER, tag, 0, olds[row][:0])   # load the kernel now
    sync.store(words, READY, 1)
    claim_all_after(words, GO, 1, STARTED, COUNTER, tag, OLDS, olds[row])


def child_await_publish(fd, size, words_spec, olds_spec, child: int) -> None:
    words, _ = attach(fd, size, words_spec, olds_spec)
    words32 = words.view(np.int32)
    sync.await_change(words32, SEQ32, 1, SLEEPERS32, 0, SLEEP)        # warm: returns at once (0 != 1)
    sync.store(words, ABOUT_TO_WAIT + child, 1)
    value = sync.await_change(words32, SEQ32, 0, SLEEPERS32, 0, LONG)  # no spinning: straight to the futex
    sync.store(words, RESULT + child, value)


def child_futex_wait(fd, size, words_spec, olds_spec, child: int) -> None:
    words, _ = attach(fd, size, words_spec, olds_spec)
    words32 = words.view(np.int32)
    sync.futex_wait(words32, FUTEX32, 1, SLEEP)                        # warm: returns at once (0 != 1)
    sync.store(words, ABOUT_TO_WAIT + child, 1)
    woken = sync.futex_wait(words32, FUTEX32, 0, LONG)
    sync.store(words, RESULT + child, 100 + woken)


# ---------------------------------------------------------------- atomics, one process
@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_store_writes_one_word_that_load_reads_back(dtype) -> None:
    info = np.iinfo(dtype)
    for n in (1, 63, 64, 65):
        words = np.arange(n, dtype=dtype) * 3 + 1
        for idx in sorted({0, n // 2, n - 1}):
            for value in (info.min, -1, 0, 1, info.max):
                before = words.copy()
                sync.store(words, idx, value)
                assert sync.load(words, idx) == value
                before[idx] = value
                np.testing.assert_array_equal(words, before)
                assert load_store_in_kernel(words, idx, value - 1 if value > info.min else value + 1) == words[idx]


def test_increment_adds_one_and_returns_the_new_value() -> None:
    words = np.array([5, -1, 41], np.int64)
    assert [sync.increment(words, 1) for _ in range(3)] == [0, 1, 2]
    np.testing.assert_array_equal(words, [5, 2, 41])
    words[0] = np.iinfo(np.int64).max
    assert sync.increment(words, 0) == np.iinfo(np.int64).min == words[0]     # wraps like the word


def test_add_in_a_kernel_returns_each_old_value_once() -> None:
    for width, words in ((64, np.zeros(3, np.int64)), (32, np.zeros(3, np.int32))):
        olds = np.full(1000, -1, np.int64)
        words[1] = 7
        add_many(words, 1, olds)
        np.testing.assert_array_equal(olds, np.arange(7, 1007), err_msg=f"int{width}")
        assert words[1] == 1007 and words[0] == 0 and words[2] == 0


@pytest.mark.parametrize("bump", ["publish", "increment"])
def test_an_int32_word_bumped_past_its_maximum_returns_what_it_holds(bump: str) -> None:
    words32 = np.array([np.iinfo(np.int32).max, 0], np.int32)
    got = sync.publish(words32, 0, 1) if bump == "publish" else sync.increment(words32, 0)
    assert words32[0] == np.iinfo(np.int32).min
    assert got == sync.await_change(words32, 0, np.iinfo(np.int32).max, 1, 0, SLEEP) == words32[0]


def test_cpu_relax_runs_inside_a_kernel() -> None:
    assert relax(0) == 0
    assert relax(1000) == 1000


def test_atomics_refuse_arrays_that_are_not_integers() -> None:
    with pytest.raises(numba.core.errors.TypingError):
        sync.load(np.zeros(2, np.float64), 0)
    with pytest.raises(numba.core.errors.TypingError):
        sync.increment(np.zeros(2, np.float32), 0)


def test_timespec_splits_seconds_and_nanoseconds() -> None:
    for seconds, want in ((0.0, [0, 0]), (0.25, [0, 250_000_000]), (1.5, [1, 500_000_000]), (60.0, [60, 0])):
        got = sync.timespec(seconds)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------- waits, one process
def timed(call: Callable[[], int]) -> tuple[int, float]:
    start = time.monotonic()
    value = call()
    return value, time.monotonic() - start


def test_futex_wait_sleeps_its_timeout_when_nobody_wakes_it() -> None:
    words32 = np.zeros(4, np.int32)
    got, elapsed = timed(lambda: sync.futex_wait(words32, 2, 0, sync.timespec(0.05)))
    assert got < 0                             # timed out (0 is "woken")
    assert elapsed >= 0.05 - 1e-3              # it did sleep: a failing syscall would return at once
    assert sync.futex_wake(words32, 2, 1 << 30) == 0    # nobody left asleep


def test_futex_wait_returns_at_once_when_the_word_is_not_the_expected_value() -> None:
    words32 = np.array([0, 3], np.int32)
    got, elapsed = timed(lambda: sync.futex_wait(words32, 1, 2, sync.timespec(DEADLINE_S)))
    assert got < 0 and elapsed < DEADLINE_S / 2


@pytest.mark.parametrize("spin_ns", [0, 2_000_000])
def test_await_change_returns_the_new_value_and_leaves_no_sleeper(spin_ns: int) -> None:
    words32 = np.array([7, 0, 0], np.int32)
    assert sync.await_change(words32, 0, 6, 2, spin_ns, sync.timespec(DEADLINE_S)) == 7
    np.testing.assert_array_equal(words32, [7, 0, 0])


@pytest.mark.parametrize("spin_ns", [0, 20_000_000])
def test_await_change_returns_the_value_seen_after_polling_and_its_timeout(spin_ns: int) -> None:
    words32 = np.array([7, 0, 0], np.int32)
    got, elapsed = timed(lambda: sync.await_change(words32, 0, 7, 2, spin_ns, sync.timespec(0.05)))
    assert got == 7
    assert elapsed >= 0.05 + spin_ns * 1e-9 - 1e-3
    np.testing.assert_array_equal(words32, [7, 0, 0])     # the sleeper it counted is gone again


def test_publish_adds_one_and_returns_the_new_value() -> None:
    words32 = np.array([41, 0, 5], np.int32)
    assert sync.publish(words32, 0, 1) == 42
    assert sync.publish(words32, 0, 1) == 43
    np.testing.assert_array_equal(words32, [43, 0, 5])
    assert sync.await_change(words32, 0, 42, 1, 0, SLEEP) == 43


def test_claim_ticket_takes_the_next_ticket_of_its_range_once() -> None:
    words = np.zeros(4, np.int64)
    tag, holding = 7, 3
    words[0] = tag << 32
    assert [sync.claim_ticket(words, 0, tag, 10, 13, holding) for _ in range(4)] == [10, 11, 12, -1]
    assert words[0] == (tag << 32) | 13 and words[holding] == tag   # holding is the caller's to clear
    assert sync.claim_ticket(words, 0, tag, 20, 22, -1) == 20        # a later range: max(ticket, first)
    assert sync.claim_ticket(words, 0, tag, 5, 21, -1) == -1         # an earlier one is used up
    assert sync.claim_ticket(words, 0, tag + 1, 30, 40, -1) == -2    # another tag: a run that is over
    words[0] |= sync.CLOSED
    assert sync.claim_ticket(words, 0, tag, 30, 40, -1) == -2        # closed
    assert sync.compare_exchange(words, 1, 0, 9) and not sync.compare_exchange(words, 1, 0, 8)
    assert words[1] == 9


# ---------------------------------------------------------------- across processes
@pytest.mark.parametrize("width", [64, 32])
def test_two_processes_adding_atomically_end_at_exactly_twice_the_adds(width: int, shared: Shared,
                                                                       start_child) -> None:
    target, idx = (shared.words, COUNTER) if width == 64 else (shared.words32, COUNTER32)
    shared.olds[:] = -1
    child = start_child(child_add_many, width, 1)
    wait_for(lambda: sync.load(shared.words, READY) == 1, "the child to spin on GO")
    assert add_many_now(shared.words, GO, STARTED, 1 << 32, target, idx, shared.olds[0]), "the child never started"
    join_all([child])
    assert target[idx] == 2 * OLDS
    # every add found a value no other add found: the old values are exactly 0 .. 2 * OLDS - 1
    np.testing.assert_array_equal(np.sort(shared.olds[:2].ravel()), np.arange(2 * OLDS))


def test_publish_wakes_a_process_asleep_in_await_change(shared: Shared, start_child) -> None:
    child = start_child(child_await_publish, 0)
    wait_for(lambda: sync.load(shared.words, ABOUT_TO_WAIT) == 1 and sync.load(shared.words32, SLEEPERS32) == 1
             and asleep(child), "the child to sleep on the futex")
    assert sync.publish(shared.words32, SEQ32, SLEEPERS32) == 1
    join_all([child])                                 # its futex sleep (60 s) was cut short
    assert shared.words[RESULT] == 1
    assert shared.words32[SLEEPERS32] == 0


def test_futex_wake_wakes_as_many_sleepers_of_another_process_as_it_is_told(shared: Shared, start_child) -> None:
    children = [start_child(child_futex_wait, c) for c in range(2)]
    wait_for(lambda: all(sync.load(shared.words, ABOUT_TO_WAIT + c) == 1 and asleep(children[c]) for c in range(2)),
             "both children to sleep on the futex")
    assert sync.futex_wake(shared.words32, FUTEX32, 1) == 1
    ended = mpc.wait([child.sentinel for child in children], DEADLINE_S)
    assert len(ended) == 1
    assert sum(sync.load(shared.words, RESULT + c) == 100 for c in range(2)) == 1    # futex_wait returned 0
    assert sync.futex_wake(shared.words32, FUTEX32, 1 << 30) == 1
    join_all(children)
    assert [shared.words[RESULT + c] for c in range(2)] == [100, 100]
    assert sync.futex_wake(shared.words32, FUTEX32, 1 << 30) == 0


def test_two_processes_claiming_from_one_counter_take_every_ticket_exactly_once(shared: Shared,
                                                                                 start_child) -> None:
    tag = 3
    shared.words[COUNTER] = tag << 32
    shared.olds[:] = -1
    child = start_child(child_claim_all, tag, 1)
    wait_for(lambda: sync.load(shared.words, READY) == 1, "the child to spin on GO")
    sync.store(shared.words, GO, 1)
    wait_for(lambda: sync.load(shared.words, STARTED) == 1, "the child to start claiming")
    mine = claim_all(shared.words, COUNTER, tag, OLDS, shared.olds[0])
    join_all([child])
    theirs = int((shared.olds[1] >= 0).sum())
    assert mine + theirs == OLDS
    claimed = np.concatenate([shared.olds[0, :mine], shared.olds[1, :theirs]])
    np.testing.assert_array_equal(np.sort(claimed), np.arange(OLDS))
    assert shared.words[COUNTER] == (tag << 32) | OLDS

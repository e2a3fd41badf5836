"""Cross-process synchronisation for numba code: atomics, PAUSE, futex, publish/await, claims.

numba has no CPU atomics (numba #2988, open since 2018; PR #10124 open) and no volatile
loads: a plain load in a wait loop is hoisted and the loop never ends (measured).
llvmlite's IRBuilder has atomic load/store/rmw, so small `@intrinsic`s suffice. The futex is
called through libc's variadic syscall(2) declared inside an intrinsic, which keeps callers
cacheable (a ctypes function object would make them "use dynamic globals"). Futex words are
32-bit; the other words here are int64.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import jit

SYS_FUTEX = {"x86_64": 202, "aarch64": 98}.get(platform.machine(), 202)
SYS_SCHED_YIELD = {"x86_64": 24, "aarch64": 124}.get(platform.machine(), 24)
SYS_CLOCK_GETTIME = {"x86_64": 228, "aarch64": 113}.get(platform.machine(), 228)
CLOCK_MONOTONIC = 1
FUTEX_WAIT, FUTEX_WAKE = 0, 1  # not FUTEX_PRIVATE_FLAG: the words are shared between processes


def _item_pointer(context, builder, aryty, ary_val, idx_val, idx_ty):
    ary = context.make_array(aryty)(context, builder, ary_val)
    idx = context.cast(builder, idx_val, idx_ty, types.intp)
    return cgutils.get_item_pointer(context, builder, aryty, ary, [idx], wraparound=False)


def _integer_array(arr):
    return isinstance(arr, types.Array) and isinstance(arr.dtype, types.Integer) and arr.ndim == 1


@intrinsic
def atomic_load(typingctx, arr, idx):
    """Acquire load of arr[idx]."""
    if not _integer_array(arr):
        return None
    sig = arr.dtype(arr, idx)

    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load_atomic(ptr, "acquire", sig.args[0].dtype.bitwidth // 8)
    return sig, codegen


@intrinsic
def atomic_store(typingctx, arr, idx, val):
    """Release store arr[idx] = val."""
    if not _integer_array(arr):
        return None
    sig = types.void(arr, idx, val)

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ptr = _item_pointer(context, builder, aryty, args[0], args[1], sig.args[1])
        value = context.cast(builder, args[2], sig.args[2], aryty.dtype)
        builder.store_atomic(value, ptr, "release", aryty.dtype.bitwidth // 8)
        return context.get_dummy_value()
    return sig, codegen


def _atomic_add_typing(arr, idx, val, new_value: bool):
    """Signature and codegen of arr[idx] += val (seq_cst), returning the old or the new value."""
    if not _integer_array(arr):
        return None
    sig = arr.dtype(arr, idx, val)

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ptr = _item_pointer(context, builder, aryty, args[0], args[1], sig.args[1])
        value = context.cast(builder, args[2], sig.args[2], aryty.dtype)
        old = builder.atomic_rmw("add", ptr, value, "seq_cst")
        return builder.add(old, value) if new_value else old
    return sig, codegen


@intrinsic
def atomic_add(typingctx, arr, idx, val):
    """arr[idx] += val atomically (seq_cst); returns the old value."""
    return _atomic_add_typing(arr, idx, val, False)


@intrinsic
def atomic_add_fetch(typingctx, arr, idx, val):
    """arr[idx] += val atomically (seq_cst); returns the new value in the array's own width (an
    int32 word bumped past 2**31 - 1 returns -2**31, what it holds, not 2**31)."""
    return _atomic_add_typing(arr, idx, val, True)


@intrinsic
def atomic_cas(typingctx, arr, idx, expected, new):
    """If arr[idx] == expected, store `new` there (seq_cst); returns whether it did."""
    if not _integer_array(arr):
        return None
    sig = types.boolean(arr, idx, expected, new)

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ptr = _item_pointer(context, builder, aryty, args[0], args[1], sig.args[1])
        old = context.cast(builder, args[2], sig.args[2], aryty.dtype)
        value = context.cast(builder, args[3], sig.args[3], aryty.dtype)
        pair = builder.cmpxchg(ptr, old, value, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)
    return sig, codegen


@intrinsic
def cpu_relax(typingctx):
    """x86 PAUSE (numba's JIT cannot parse inline asm); a no-op elsewhere."""
    sig = types.void()

    def codegen(context, builder, sig, args):
        if platform.machine() in ("x86_64", "AMD64"):
            fnty = ir.FunctionType(ir.VoidType(), [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def _syscall(typingctx, number, a, b, c, d):
    """syscall(2) with four integer arguments (unused ones 0)."""
    sig = types.int64(types.int64, types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64], var_arg=True)
        fn = cgutils.get_or_insert_function(builder.module, fnty, "syscall")
        return builder.call(fn, [args[0], args[1], args[2], args[3], args[4], ir.Constant(i64, 0)])
    return sig, codegen


@jit
def futex_wait(words32, idx, expected, timespec):
    """Sleep while words32[idx] == expected, at most `timespec` (int64[2]: seconds, nanoseconds).
    Returns 0 when woken; a negative value on timeout, EAGAIN or EINTR (callers re-check)."""
    return _syscall(SYS_FUTEX, words32.ctypes.data + idx * 4, FUTEX_WAIT, expected, timespec.ctypes.data)


@jit
def futex_wake(words32, idx, count):
    return _syscall(SYS_FUTEX, words32.ctypes.data + idx * 4, FUTEX_WAKE, count, 0)


@jit
def load(words, idx):
    """Atomic (acquire) load callable from Python: a fresh read of a shared word."""
    return atomic_load(words, idx)


@jit
def store(words, idx, value):
    """Atomic (release) store callable from Python."""
    atomic_store(words, idx, value)


@jit
def increment(words, idx):
    """Atomically add one; returns the new value (in the word's width)."""
    return atomic_add_fetch(words, idx, 1)


@jit
def compare_exchange(words, idx, expected, new):
    """Atomically store `new` at words[idx] if it holds `expected`; returns whether it did."""
    return atomic_cas(words, idx, expected, new)


@jit
def _monotonic_ns(buffer):
    _syscall(SYS_CLOCK_GETTIME, CLOCK_MONOTONIC, buffer.ctypes.data, 0, 0)
    return buffer[0] * 1_000_000_000 + buffer[1]


@jit
def await_change(words32, idx, seen, sleepers_idx, spin_ns, timespec):
    """Wait until words32[idx] != seen: poll for up to `spin_ns`, yielding the core to any other
    runnable process between polls, then sleep on the futex for at most `timespec`, counted in
    words32[sleepers_idx] so that `publish` makes the wake-up call only when someone sleeps.
    Returns the new value, or `seen` on timeout (callers re-check their exits)."""
    clock = np.empty(2, np.int64)
    deadline = _monotonic_ns(clock) + spin_ns
    polls = 0
    while spin_ns > 0:
        value = atomic_load(words32, idx)
        if value != seen:
            return value
        _syscall(SYS_SCHED_YIELD, 0, 0, 0, 0)
        polls += 1
        if polls % 16 == 0 and _monotonic_ns(clock) >= deadline:
            break
    atomic_add(words32, sleepers_idx, 1)        # seq_cst: ordered before the re-check below
    value = atomic_load(words32, idx)
    if value == seen:
        futex_wait(words32, idx, seen, timespec)
        value = atomic_load(words32, idx)
    atomic_add(words32, sleepers_idx, -1)
    return value


@jit
def publish(words32, idx, sleepers_idx):
    """Add one to words32[idx] for `await_change` callers, waking them if any sleeps. Returns
    the new value."""
    value = atomic_add_fetch(words32, idx, 1)   # seq_cst: ordered before the sleepers load
    if atomic_load(words32, sleepers_idx) > 0:
        futex_wake(words32, idx, 1 << 30)
    return value


CLOSED = 1 << 31          # claim counters: (tag << 32) | ticket, this bit set once closed


@jit
def claim_ticket(words, idx, tag, first, stop, holding_idx):
    """Claim the next ticket in [first, stop) of the claim counter words[idx], a value
    (tag << 32) | ticket meaning "the next unclaimed ticket is max(ticket, first)". Before each
    try words[holding_idx] is set to `tag` (skipped when holding_idx < 0) and reset to 0 after a
    failed one. Returns the ticket claimed, -1 when [first, stop) has none left, -2 when the
    counter holds another tag or is closed."""
    while True:
        packed = atomic_load(words, idx)
        if (packed >> 32) != tag or packed & CLOSED:
            return -2
        ticket = max(packed & (CLOSED - 1), first)
        if ticket >= stop:
            return -1
        if holding_idx >= 0:
            atomic_store(words, holding_idx, tag)
        if atomic_cas(words, idx, packed, (tag << 32) | (ticket + 1)):
            return ticket
        if holding_idx >= 0:
            atomic_store(words, holding_idx, 0)


def timespec(seconds: float) -> np.ndarray:
    """A relative futex timeout."""
    whole = int(seconds)
    return np.array([whole, int((seconds - whole) * 1e9)], np.int64)

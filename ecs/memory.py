"""World memory: one anonymous arena per world, mapped once, regions that grow in place.

A world with workers maps a memfd (shared with its worker processes); a world without workers
maps private anonymous memory, which can use transparent huge pages (THP) where shmem cannot
(`shmem_enabled` is "never" on most distributions, these VMs included): committing 36 MB took
19 ms as shmem (fallocate + populate, 4 KiB pages) and ~2 ms as private memory with
MADV_HUGEPAGE, the advice numpy gives its own large arrays. A private arena aligns regions of
2 MiB or more to 2 MiB and asks for huge pages on the 2 MiB blocks a commit covers (a last block
too, when the commit covers more than half of it): a small table's columns stay in 4 KiB pages
(a huge page for 20 rows would hold 2 MiB), so the memory held is at most 1 MiB a region more
than was committed. It ends in a PROT_NONE guard page, so that two arenas never merge into one
mapping. Everything below holds for both kinds unless it names the memfd.

Choice and reasons (measured on the 2-core Linux VMs this library is developed on):
- **memfd, not named segments.** A memfd has no name in /dev/shm, so nothing can be left behind
  by close(), an exception, interpreter exit, or a SIGKILL of the whole process group; every
  named backend (SharedMemory, /dev/shm files, posix_ipc) leaked under a group SIGKILL. Worker
  processes receive the one descriptor when they start.
- **One arena, reserved sparse, mapped once.** The arena is `ftruncate`d to a large virtual size
  (1 TiB; under RLIMIT_AS at most half the address space the limit leaves, so the process keeps
  room for its own allocations, halved until the mapping succeeds, down to 64 MiB, below which
  World() raises CapacityError naming the limit) and mapped once; untouched pages cost
  nothing. Every column, bitset and resource array is a *region* at a fixed offset with a fixed
  reservation, so growing a table never moves it: views stay valid and workers that mapped the
  arena at start see every region created later, without re-attaching. The protocol for
  workers is therefore "map the arena once; read region offsets from the job descriptor".
- **Growth = posix_fallocate of the new range.** Running out of memory is a clean OSError(ENOSPC
  or ENOMEM) at the growth call instead of a SIGBUS at some later write. It costs no more than the
  page faults it replaces (7 ms + 14 ms vs 21 ms to allocate and fill 32 MiB, measured here).
- **Views only through np.frombuffer.** `np.ndarray(buffer=...)` holds no buffer export, so
  closing the mapping under it segfaults; frombuffer's export makes `mmap.close()` raise
  BufferError instead. close() then leaves the mapping to the last view: it is unmapped, and its
  memory freed, when that view is garbage-collected.
- **Region starts are page-aligned** (so 64-byte aligned: SIMD loads, no shared cache lines),
  and never a large power of two apart: an unused gap of 1-8 pages follows each reservation.
  Back to back, the columns of a table sat exactly `max_rows * itemsize` (128 MiB for f32) apart,
  and a streaming kernel over them ran slower the larger that power of two was (the numba move
  kernel over 4 columns of 1M f32, medians of 120 interleaved calls on a loaded 2-core VM:
  682 us 4 MB apart, 643 us at 64 MiB, 772 us at 128 MiB, 997 us at 256 MiB; 650-700 us at
  128 MiB plus 8 KiB or more; in a world: 812 us back to back, 664 us with these gaps). A
  table starts each column at its own offset inside its region's first page (Table._reserve).
- Released regions return their pages with MADV_REMOVE (MADV_DONTNEED in a private arena); their
  address space is never reused, so a view kept from a released region can never alias a newer one.
- **A closed private arena is kept for the next world** (the last one closed with at most
  SPARE_BYTES committed and no view of it left; one per process): its committed bytes are
  zeroed (memset) and its mapping handed to the next `Arena(shared=False)` of the same size,
  so a small world's pages are faulted once per process, not once per world (as malloc keeps
  freed memory for the next allocation). A spawn_batch of 10,000 entities into a new world faulted ~265 pages
  (0.32 ms) and unmapped 0.11 ms; zeroing its 1.1 MB takes ~0.04 ms, and a commit inside the
  pages it inherited makes no system call (~0.1 ms less for that spawn). A new arena reads
  zero wherever it is committed, recycled or not. Under RLIMIT_AS no spare is kept.
- Out of memory: a memfd's fallocate fails cleanly; a private arena's populate fails with ENOMEM
  where the kernel refuses the pages (with overcommit, the OOM killer may act first, as it would
  for numpy's own arrays).

Cost: creating the arena is two or three syscalls; a region is a bump of an offset.
"""

from __future__ import annotations

import atexit
import bisect
import ctypes
import errno
import math
import mmap
import os
import platform
import resource
import sys
import threading
import weakref
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from .errors import CapacityError

PAGE = mmap.PAGESIZE
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14+; Python 3.11 lacks the name
_populate_supported = True
_huge_pages_supported = True
# 1 TiB of address space a world: ~100 worlds fit the 128 TiB of an x86-64 process (ensembles,
# parameter sweeps), and one world holds ~1,000-1,300 tables at the default max_rows (a table of
# four f32 columns reserves ~1 GiB: 128 MiB a column, 256 MiB of ids, 288 MiB of change bits).
ARENA_BYTES_WANTED = 1 << 40
ARENA_BYTES_MIN = 1 << 26   # the least an arena halves to under RLIMIT_AS (a small world's index and tables)
HUGE_PAGE = 2 << 20
# MAP_NORESERVE keeps a private 1 TiB reservation from counting against overcommit; Python 3.11 lacks
# the name, and its value is 0x4000 only on the asm-generic architectures
MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if platform.machine() in ("x86_64", "aarch64") else 0)
_PROT_NONE = 0
_MAP_FIXED = getattr(mmap, "MAP_FIXED", 0x10)   # 0x10 on Linux; Python 3.11 lacks the name
SPARE_BYTES = 8 << 20   # the most a closed private arena may have committed to be kept for the next


def page_round(nbytes: int) -> int:
    return -(-nbytes // PAGE) * PAGE


class ArraySpec(NamedTuple):
    """An array at a fixed place in an arena: byte offset, dtype string, shape. Picklable, so
    another process that mapped the same arena can rebuild the very same view."""

    offset: int
    dtype: str
    shape: tuple[int, ...]


class Arena:
    """A sparse arena mapped once; hands out page-aligned regions of fixed reservation.

    `shared`: a memfd other processes can map (`fd`, `attach`); otherwise private memory, or a
    memfd after all where the system refuses a private reservation (strict overcommit)."""

    def __init__(self, reserve: int = ARENA_BYTES_WANTED, shared: bool = True) -> None:
        self.fd = -1
        # closes the memfd once: by close(), or when the arena is collected unclosed (an exception
        # in a constructor above it, Ctrl-C inside a close); the mapping goes with `map` then.
        # None: a private arena, no descriptor
        self._fd_closer: weakref.finalize | None = None
        self.shared = True
        size = self._requested = page_round(reserve)
        left = _address_space_left()
        if left is not None:   # under RLIMIT_AS: half of what is left, so the process keeps room to work
            size = max(min(size, page_round(left // 2)), min(size, ARENA_BYTES_MIN))
        self._inherited: list[tuple[int, int]] = []   # pages a spare mapping came with (zero)
        mapped = None
        if not shared:
            spare = _take_spare(size)
            if spare is not None:
                mapped, self._inherited = (spare.map, spare.size), spare.resident
            else:
                mapped = _map_private(size)
        if mapped is not None:
            self.map, size = mapped
            self.shared = False
        else:
            self.fd = os.memfd_create("ecs-world", os.MFD_CLOEXEC)
            try:
                self.map, size = _map_memfd(self.fd, size)
            except BaseException as exc:
                os.close(self.fd)   # once, here: no closer is registered yet
                self.fd = -1
                if isinstance(exc, OSError) and _address_space_limited():
                    raise CapacityError("a world's memory", f"RLIMIT_AS ({_limit_text()}) leaves no room for an arena "
                                        f"of {ARENA_BYTES_MIN >> 20} MiB", "raise the limit (ulimit -v)") from None
                raise
            self._fd_closer = weakref.finalize(self, os.close, self.fd)
        self.base = _address(self.map)
        self.size = size
        self._next = 0
        self._regions = 0
        # committed byte ranges of a private arena, by the end of their region (zeroed if kept)
        self._committed: dict[int, list[tuple[int, int]]] = {}
        self.closed = False
        self.forked = False   # closed because this is a child forked from the arena's process
        _open_arenas.add(self)

    def disown(self) -> None:
        """In a forked child: count as closed without touching the memory (the parent's). The
        inherited descriptor is left as it is: closing it at collection could close a number
        the child has since reused. A memfd arena is mapped again over the same addresses as a
        private mapping of the memfd, so that the child's writes through arrays it holds copy
        the page instead of reaching the parent's world (one mmap call). A page the child has
        not written still shows the parent's current values (a private mapping of a shared
        file), unlike numpy's own arrays, which keep their values of the moment of the fork.
        Under strict overcommit (vm.overcommit_memory = 2) the private mapping would be charged
        for the whole reservation, and a refused MAP_FIXED mapping may leave a hole on older
        kernels: there the shared mapping stays, and the child's writes reach the parent."""
        if not self.closed and self.shared:
            _map_private_copy(self.fd, self.base, self.size)
        self.closed = self.forked = True
        if self._fd_closer is not None:
            self._fd_closer.detach()

    @classmethod
    def attach(cls, fd: int, size: int) -> Arena:
        """Map an arena created by another process (a worker's view of the world's memory).
        Regions are never allocated through an attached arena."""
        arena = cls.__new__(cls)
        arena.fd = fd
        arena._fd_closer = weakref.finalize(arena, os.close, fd)
        arena.shared = True
        arena.map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        arena.base = _address(arena.map)
        arena.size = size
        arena._next = size
        arena._regions = 0
        arena._committed = {}
        arena._inherited = []
        arena._requested = size
        arena.closed = arena.forked = False
        _open_arenas.add(arena)
        return arena

    def allocate(self, nbytes: int) -> Region:
        """Reserve `nbytes` (rounded up to pages) of address space; commits nothing. Address space
        is never handed out twice: a view kept from a released region must not alias a new one."""
        offset, self._next = self._placed(self._next, self._regions, nbytes)
        self._regions += 1
        return Region(self, offset, page_round(max(nbytes, 1)))

    def check_room(self, sizes: list[int]) -> None:
        """CapacityError, before anything is reserved, unless regions of these sizes (allocated in
        this order) all fit: a table whose last column would not fit reserves none (its first
        ones' address space would be lost for good)."""
        at = self._next
        for k, nbytes in enumerate(sizes):
            _, at = self._placed(at, self._regions + k, nbytes)

    def _placed(self, at: int, regions: int, nbytes: int) -> tuple[int, int]:
        """Where the next region of `nbytes` starts when `at` is the first free byte and `regions`
        regions exist, and the first free byte after it; CapacityError past the arena."""
        reserved = page_round(max(nbytes, 1))
        if not self.shared and reserved >= HUGE_PAGE:
            at = self._huge_ceil(at)   # whole huge pages from its start
        if at + reserved > self.size:
            raise CapacityError(f"the world's address space is exhausted ({at} of {self.size} bytes "
                                f"reserved, {reserved} more requested)", f"arena of {self.size} bytes",
                                "lower World(max_rows=...) or World(max_entities=...)")
        return at, at + reserved + PAGE * (1 + (regions + 1) % 8)   # a gap of 1-8 pages: see below

    def view(self, dtype: npt.DTypeLike, offset: int, shape: tuple[int, ...]) -> np.ndarray:
        dtype = np.dtype(dtype)
        count = math.prod(shape)
        return np.frombuffer(self.map, dtype=dtype, count=count, offset=offset).reshape(shape)

    def spec_of(self, array: np.ndarray) -> ArraySpec | None:
        """The spec of a C-contiguous array that lies in this arena, else None."""
        base = self.base
        address = array.ctypes.data
        if not (base <= address and address + array.nbytes <= base + self.size) or not array.flags.c_contiguous:
            return None
        return ArraySpec(address - base, array.dtype.str, tuple(array.shape))

    def view_of(self, spec: ArraySpec) -> np.ndarray:
        return self.view(np.dtype(spec.dtype), spec.offset, spec.shape)

    def populate(self, offset: int, nbytes: int) -> None:
        """Map committed bytes [offset, offset + nbytes) into this process now, in one call.

        Without it every first write to a fresh 4 KiB page takes a page fault. MADV_POPULATE_WRITE
        maps them all at once: fallocate + populate + write of 16 MiB takes 3.3 + 3.8 + 0.9 ms
        against 3.3 + 7.3 ms of fallocate + faulting writes; spawn_batch of 1M entities (36.5 MB
        committed) went from 23.0 to 19.3 ms. No extra memory: the pages are already allocated.
        Kernels older than 5.14 reject the advice (EINVAL): then pages fault in as before."""
        global _populate_supported
        if _populate_supported and nbytes > 0:
            for _ in range(3):
                try:
                    self.map.madvise(MADV_POPULATE_WRITE, offset, nbytes)
                    return
                except OSError as exc:
                    if exc.errno == errno.EINVAL:   # a kernel without the advice: pages fault in as written
                        _populate_supported = False
                        return
                    if exc.errno not in (errno.EINTR, errno.EAGAIN):
                        raise   # ENOMEM: no memory for the pages, a clean error at the growth call

    def committed_bytes(self) -> int:
        """Bytes of the arena backed by memory: a memfd's blocks (fallocated or touched), or the
        resident bytes of a private arena's mapping (from /proc/self/smaps: ~5 ms in a numba process)."""
        if self.shared:
            return os.fstat(self.fd).st_blocks * 512
        base = self.base
        resident, inside = 0, False
        with open("/proc/self/smaps") as smaps:
            for line in smaps:
                if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                    start = int(line.split("-", 1)[0], 16)
                    inside = base <= start < base + self.size
                elif inside and line.startswith("Rss:"):
                    resident += int(line.split()[1]) << 10
        return resident

    def commit(self, offset: int, nbytes: int, limit: int) -> None:
        """Back [offset, offset + nbytes) with memory and map it in; `limit`: where its region ends.

        In a private arena, the 2 MiB blocks the range covers get huge pages, and so does a last
        block it covers more than half of (at most 1 MiB held beyond the commit: 0.19 MB for the
        4 MB column of a million f32), within the region. They fault in 2 MiB at a time as they
        are first written, zeroed while in cache: no populate. The rest are 4 KiB pages, populated."""
        if self.shared:
            os.posix_fallocate(self.fd, offset, nbytes)
            self.populate(offset, nbytes)
            return
        self._committed.setdefault(limit, []).append((offset, offset + nbytes))
        if self._inherited and _within(self._inherited, offset, offset + nbytes):
            return   # resident (zeroed) in the spare this arena took, huge-page advice included
        blocks_lo = self._huge_ceil(offset)
        blocks_hi = min(self._huge_ceil(offset + nbytes - HUGE_PAGE // 2), self._huge_ceil(limit - HUGE_PAGE + 1))
        if blocks_hi > blocks_lo and _advise_huge_pages(self.map, blocks_lo, blocks_hi - blocks_lo):
            self.populate(offset, blocks_lo - offset)
            self.populate(blocks_hi, offset + nbytes - blocks_hi)   # nothing when rounded up
        else:
            self.populate(offset, nbytes)

    def _huge_ceil(self, offset: int) -> int:
        """The first offset at or after `offset` that starts a 2 MiB block of memory (the kernel
        need not align the mapping itself to 2 MiB)."""
        skew = self.base % HUGE_PAGE
        return -(-(offset + skew) // HUGE_PAGE) * HUGE_PAGE - skew

    def _release(self, region: Region) -> None:
        """Return a region's pages to the system (its address space is not reused; see allocate)."""
        if self.closed:
            return
        if region.committed:
            self.map.madvise(mmap.MADV_REMOVE if self.shared else mmap.MADV_DONTNEED, region.offset, region.committed)
        self._committed.pop(region.offset + region.reserved, None)   # DONTNEED pages read back zero

    def close(self) -> None:
        """Close the memfd (if any) and unmap. Views still held by user code keep the mapping (and its
        memory) alive until the last of them is dropped; they never point at unmapped memory."""
        if self.closed:
            return
        self.closed = True
        if self._fd_closer is not None:
            self._fd_closer()  # the mapping keeps the memory alive while it exists
        # every view holds a reference to the mapping (its buffer export): 2 is this attribute
        # and getrefcount's argument, so no view is left and nobody can see the memory reused
        kept = not self.shared and not _exiting and sys.getrefcount(self.map) == 2 and self._keep_as_spare()
        if not kept:
            try:
                self.map.close()
            except BufferError:
                pass  # a user still holds a view: the mapping (and its memory) goes with the last view
        del self.map
        _open_arenas.discard(self)

    def _keep_as_spare(self) -> bool:
        """Make this mapping the process's spare (in place of an earlier one), if at most
        SPARE_BYTES are committed (then True): its committed bytes are zeroed, and pages an
        earlier world of the mapping left resident that this one did not commit are given back."""
        global _spare
        committed = _merged([r for parts in self._committed.values() for r in parts])
        if sum(hi - lo for lo, hi in committed) > SPARE_BYTES or _address_space_limited():
            return False
        for lo, hi in _subtracted(self._inherited, committed):
            self.map.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        for lo, hi in committed:
            ctypes.memset(self.base + lo, 0, hi - lo)
        with _spare_lock:
            if _spare is not None:
                _spare.map.close()   # nothing holds a view of a spare
            _spare = _Spare(self._requested, self.map, self.size, committed)
        return True


def _within(ranges: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """Whether [lo, hi) lies inside one of merged, sorted `ranges`."""
    k = bisect.bisect_right(ranges, (lo, math.inf)) - 1
    return k >= 0 and ranges[k][1] >= hi


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Byte ranges, sorted and overlapping ones joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _subtracted(ranges: list[tuple[int, int]], minus: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of merged `ranges` outside merged `minus`."""
    out = []
    for lo, hi in ranges:
        for cut_lo, cut_hi in minus:
            if cut_hi <= lo or cut_lo >= hi:
                continue
            if cut_lo > lo:
                out.append((lo, cut_lo))
            lo = max(lo, cut_hi)
        if hi > lo:
            out.append((lo, hi))
    return out


class Region:
    """A fixed reservation in the arena; `commit(n)` backs its first n bytes with memory."""

    __slots__ = ("arena", "offset", "reserved", "committed", "__weakref__")

    def __init__(self, arena: Arena, offset: int, reserved: int) -> None:
        self.arena = arena
        self.offset = offset
        self.reserved = reserved
        self.committed = 0

    def commit(self, nbytes: int) -> None:
        """Back the first `nbytes` with memory (page-rounded). OSError(ENOSPC/ENOMEM) if none."""
        want = min(page_round(nbytes), self.reserved)
        if nbytes > self.reserved:
            raise CapacityError(f"a region of {self.reserved} bytes cannot hold {nbytes}",
                                f"{self.reserved} bytes reserved", "raise World(max_rows=...)")
        if want > self.committed:
            self._back(self.committed, want)

    def commit_range(self, start: int, nbytes: int) -> None:
        """Back bytes [start, start + nbytes) of the region (for regions used in parts)."""
        lo = start - start % PAGE
        hi = min(page_round(start + nbytes), self.reserved)
        if hi > lo:
            self._back(lo, hi)

    def _back(self, lo: int, hi: int) -> None:
        self.arena.commit(self.offset + lo, hi - lo, self.offset + self.reserved)
        self.committed = max(self.committed, hi)

    def view(self, dtype: npt.DTypeLike, shape: tuple[int, ...], byte_offset: int = 0) -> np.ndarray:
        return self.arena.view(dtype, self.offset + byte_offset, shape)

    def spec(self, dtype: npt.DTypeLike, shape: tuple[int, ...], byte_offset: int = 0) -> ArraySpec:
        return ArraySpec(self.offset + byte_offset, np.dtype(dtype).str, tuple(shape))

    def release(self) -> None:
        self.arena._release(self)
        self.committed = 0


def read_only(array: np.ndarray) -> np.ndarray:
    """A view of `array` that cannot be made writable: its buffer is a read-only memoryview, so
    numpy refuses `flags.writeable = True` (clearing the flag of a view of writable memory
    would not hold: anyone could set it again). numba types it as a read-only array (a kernel
    that writes it does not compile); views made from it are read-only too. ~0.45 us."""
    return np.asarray(memoryview(array).toreadonly())


def _map_memfd(fd: int, size: int) -> tuple[mmap.mmap, int]:
    """Map `size` bytes of the memfd, halving under RLIMIT_AS or a small address space."""
    while True:
        try:
            os.ftruncate(fd, size)
            return mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE), size
        except OSError:
            if size <= ARENA_BYTES_MIN:
                raise
            size = page_round(size // 2)


def _map_private(size: int) -> tuple[mmap.mmap, int] | None:
    """Reserve `size` bytes of private memory (halving as _map_memfd does) plus a PROT_NONE guard
    page at the end; None where no size is granted (strict overcommit) or no guard can be set."""
    while True:
        try:
            mapped = mmap.mmap(-1, size + PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE,
                               prot=mmap.PROT_READ | mmap.PROT_WRITE)
            break
        except OSError:
            if size <= ARENA_BYTES_MIN:
                return None
            size = page_round(size // 2)
    if _libc.mprotect(ctypes.c_void_p(_address(mapped) + size), ctypes.c_size_t(PAGE), _PROT_NONE) != 0:
        mapped.close()
        return None
    return mapped, size


def _map_private_copy(fd: int, base: int, size: int) -> bool:
    """Replace the shared mapping of memfd `fd` at `base` by a private one of the same pages
    (MAP_FIXED): later writes through it stay in this process. False where it is refused (the
    shared mapping is then left as it was)."""
    try:
        with open("/proc/sys/vm/overcommit_memory") as mode:
            if mode.read().strip() == "2":
                return False
    except OSError:
        return False   # the policy is unknown: a refused MAP_FIXED mapping could leave a hole
    got = _libc.mmap(base, size, mmap.PROT_READ | mmap.PROT_WRITE,
                     mmap.MAP_PRIVATE | _MAP_FIXED | MAP_NORESERVE, fd, 0)
    return got == base


class _Spare(NamedTuple):
    """A closed private arena kept for the next: all zero, `resident` the byte ranges in memory."""

    requested: int          # the reserve its arena asked for
    map: mmap.mmap
    size: int               # the reserve granted
    resident: list[tuple[int, int]]


def _take_spare(requested: int) -> _Spare | None:
    """The spare, once, if its arena asked for the same reserve."""
    global _spare
    if _address_space_limited():
        release_spare()   # a new arena gets what the limit leaves, as if the spare never was
        return None
    with _spare_lock:   # two threads creating worlds must not take one mapping
        if _spare is None or _spare.requested != requested:
            return None
        taken, _spare = _spare, None
    return taken


def _address_space_left() -> int | None:
    """Bytes of address space RLIMIT_AS leaves this process (its limit less VmSize), or None
    without a limit."""
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/status") as status:
            used = next(int(line.split()[1]) << 10 for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return limit
    return max(limit - used, 0)


def _limit_text() -> str:
    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    return f"{limit >> 20} MiB"


def _address_space_limited() -> bool:
    """Whether RLIMIT_AS is set: then no spare is kept (its reservation counts against the limit)."""
    return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY


def release_spare() -> None:
    """Unmap the spare, if any (interpreter exit does; so may code that limits its address space)."""
    global _spare
    with _spare_lock:
        if _spare is not None:
            _spare.map.close()
            _spare = None


def spare_mappings() -> int:
    """Closed arenas kept for the next world: 0 or 1 (mapped, with at most SPARE_BYTES in use)."""
    return 0 if _spare is None else 1


def _address(mapped: mmap.mmap) -> int:
    """Where a mapping starts in this process (the array, an export of it, dies at once)."""
    return int(np.frombuffer(mapped, np.uint8, count=1).ctypes.data)


def _advise_huge_pages(mapped: mmap.mmap, offset: int, nbytes: int) -> bool:
    """MADV_HUGEPAGE on the range; False, then and from now on, on a kernel built without THP
    (it refuses the advice with EINVAL)."""
    global _huge_pages_supported
    if _huge_pages_supported:
        try:
            mapped.madvise(mmap.MADV_HUGEPAGE, offset, nbytes)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                _huge_pages_supported = False
            return False   # another refusal (ENOMEM: the mappings' limit): 4 KiB pages this time
    return _huge_pages_supported


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_open_arenas: weakref.WeakSet[Arena] = weakref.WeakSet()
_spare: _Spare | None = None
_spare_lock = threading.Lock()
_exiting = False


@atexit.register
def _close_all_at_exit() -> None:
    global _exiting
    _exiting = True
    for arena in list(_open_arenas):
        arena.close()
    release_spare()

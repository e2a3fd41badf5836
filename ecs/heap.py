"""The process heap's trim policy: freed heap memory is kept for the next temporaries.

Structural changes, commands and queries make numpy temporaries of a few hundred KB a frame
(ids, rows, masks, records). glibc's malloc gives the top of its heap back to the system as soon
as more than 128 KiB of it is free (M_TRIM_THRESHOLD), so each frame's temporaries fault their
pages in again: ~1-2 us per 4 KiB on these VMs. 10,000 kernel adds then removes a frame cost
120-134 ns a command that way and 66-68 ns with 16 MiB kept (M_TOP_PAD); a trim threshold of
64 MiB instead: 76 ns.

Setting M_TOP_PAD also ends glibc's raising of the mmap threshold as large blocks are freed
(128 KiB at start, up to 32 MiB), so arrays of 1 MiB or more would be mapped and unmapped at
every allocation (a 1 MiB np.ones: 257 page faults and 404 us each, against none and 37 us):
M_MMAP_THRESHOLD is set to 32 MiB with it, the ceiling glibc's own rule reaches.

How many pages a frame faults without this depends on the order of its allocations: the same
10,000 commands faulted ~1,100 pages a frame at one commit and none at the next, which made
fewer temporaries; with both set, none at either.

`keep_freed_heap()` sets both once per process, on glibc only (the first World does), unless
the user chose either (MALLOC_TOP_PAD_ / MALLOC_MMAP_THRESHOLD_, or glibc.malloc.top_pad /
mmap_threshold in GLIBC_TUNABLES: glibc then uses those as they are). Cost: up to TOP_PAD
bytes of freed memory stay resident per malloc arena (the main heap, and each thread's arena
that frees memory); pages the heap grows into but never touches cost nothing. Worker processes
(started from the forkserver, which makes no World) keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import os
import platform

TOP_PAD = 16 << 20
MMAP_THRESHOLD = 32 << 20
M_TOP_PAD, M_MMAP_THRESHOLD = -2, -3      # glibc's malloc.h
_USER_CHOICES = ("MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_")
_USER_TUNABLES = ("glibc.malloc.top_pad", "glibc.malloc.mmap_threshold")


def keep_freed_heap() -> bool:
    """Ask glibc's malloc to keep TOP_PAD bytes when it trims its heap and to serve blocks under
    MMAP_THRESHOLD from it (once per process; the first World does); whether it is set."""
    global _asked, _set
    if not _asked:
        _asked, _set = True, _set_policy()
    return _set


def _set_policy() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(name in os.environ for name in _USER_CHOICES) or any(name in tunables for name in _USER_TUNABLES):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TOP_PAD, TOP_PAD))


_asked = _set = False

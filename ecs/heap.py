"""The process heap's trim policy: keep TOP_PAD bytes of freed heap for the next temporaries.

Structural changes, commands and queries make numpy temporaries of a few hundred KB a frame
(ids, rows, masks, records). glibc's malloc gives the top of its heap back to the system as soon
as more than 128 KiB of it is free (M_TRIM_THRESHOLD), so each frame's temporaries fault their
pages in again: ~1-2 us per 4 KiB on these VMs. 10,000 kernel adds then removes a frame cost
120-134 ns a command that way and 66-68 ns with 16 MiB kept (M_TOP_PAD); trim threshold 64 MiB
instead: 76 ns; the mmap threshold alone changed nothing.

`keep_freed_heap()` sets M_TOP_PAD once per process, on glibc only, unless the user chose a pad
(the MALLOC_TOP_PAD_ environment variable, or glibc.malloc.top_pad in GLIBC_TUNABLES; glibc's
own default is MALLOC_TOP_PAD_=131072). Cost: at most TOP_PAD bytes of freed memory stay
resident in a process that freed them; pages the heap grows into but never touches cost nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform

TOP_PAD = 16 << 20
M_TOP_PAD = -2          # glibc's malloc.h


def keep_freed_heap() -> bool:
    """Ask glibc's malloc to keep TOP_PAD bytes when it trims its heap (once per process; the
    first World does); whether it is set."""
    global _asked, _set
    if not _asked:
        _asked, _set = True, _set_top_pad()
    return _set


def _set_top_pad() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if "MALLOC_TOP_PAD_" in os.environ or "glibc.malloc.top_pad" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_TOP_PAD, TOP_PAD))


_asked = _set = False

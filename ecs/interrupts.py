"""Ctrl-C held back while the world's structure is half-changed.

A KeyboardInterrupt is raised between any two bytecodes of the main thread. Inside an archetype
move in bulk (rows copied to the target table, not yet taken from the source) or while a frame's
commands are applied, it left the world inconsistent: entities in two tables, or a numba call
returning with the exception set (SystemError). `held_interrupts()` replaces Python's default
SIGINT handler for the block by one that only notes the signal, and raises KeyboardInterrupt
once the block is done, so a Ctrl-C lands after the change, never inside it. A handler of the
program's own is left in place, and outside the main thread (where no handler runs) it does
nothing. Blocking the signal instead (pthread_sigmask) would not do: another thread, which
does not block it, would take it and the handler would still run in the main thread. Cost:
~0.4 us a block (the C functions of `_signal`: `signal.signal` and `getsignal` wrap them to map
handlers to enums, ~7 us a block): it guards the bulk paths (a frame's commands, batch
calls, a defer() block, restore), not the one-entity calls, whose single compiled move leaves
no half-moved row.
"""

from __future__ import annotations

import _signal  # the C module under `signal`, which adds only enum conversions to these calls
import threading
from types import FrameType, TracebackType
from typing import Any


class held_interrupts:  # noqa: N801 - used as a context manager, named as one
    """`with held_interrupts(): ...`: a Ctrl-C during the block is raised after it (see the module)."""

    __slots__ = ("_before", "_noted")

    def __init__(self) -> None:
        self._before: Any = None
        self._noted = False

    def __enter__(self) -> held_interrupts:
        if threading.current_thread() is threading.main_thread() \
                and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
            self._noted = False
            self._before = _signal.signal(_signal.SIGINT, self._note)
        return self

    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._noted = True

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._before is None:
            return
        before, self._before = self._before, None
        _signal.signal(_signal.SIGINT, before)
        if self._noted:   # the user's Ctrl-C wins over an error of the block (chained to it)
            raise KeyboardInterrupt

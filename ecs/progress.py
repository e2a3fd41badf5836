"""Progress: a one-line progress bar on stderr for long runs (`world.run(progress=True)`)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second; silent when stderr
    is not a terminal."""

    def __init__(self, total: int, enabled: bool, label: str = "frames") -> None:
        self.total = total
        self.enabled = enabled and sys.stderr.isatty()
        self.label = label
        self.started = time.perf_counter()
        self._drawn = 0.0
        self.base = 0          # frames done before the current piece of a run (one run in pieces)

    def update(self, done: int) -> None:
        """`done` frames of the current piece are done."""
        if not self.enabled:
            return
        done += self.base
        now = time.perf_counter()
        if now - self._drawn < 0.1 and done < self.total:
            return
        self._drawn = now
        width = 30
        filled = width * done // max(self.total, 1)
        rate = done / max(now - self.started, 1e-9)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {self.label} "
                         f"{rate:,.1f}/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()

"""Command-line argument types the examples share: a bad value is an argparse error (usage and
one line), never a traceback from inside the library."""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Any

INT64_MAX = 2**63 - 1


def _number(text: str, convert: type, lo: float, hi: float, not_a_number: str, outside: str) -> Any:
    """`text` converted by `convert` and within [lo, hi], else an argparse error saying which."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {not_a_number}") from None
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {outside}")
    return value


def workers(text: str) -> int | str:
    """--workers: "auto" or an int from 0 to 1024 (World's limit)."""
    if text == "auto":
        return text
    return _number(text, int, 0, 1024, "an int >= 0 or 'auto'", "an int from 0 to 1024 or 'auto'")


def seed(text: str) -> int:
    """--seed: an int from 0 to 2**63 - 1 (the random generator's keys are int64)."""
    return _number(text, int, 0, INT64_MAX, "an int", "an int from 0 to 2**63 - 1")


def fraction(text: str) -> float:
    """A coefficient from 0 to 1 (a restitution: 1 is elastic; more would add energy)."""
    return _number(text, float, 0.0, 1.0, "a number from 0 to 1", "a number from 0 to 1")


def writable_folder(parser: argparse.ArgumentParser, option: str, folder: pathlib.Path) -> None:
    """Create `folder` (and its parents) now, before a run whose output goes there, or end with a
    usage error naming the option: a bad path must not cost a whole run."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"{option} {folder}: cannot create the folder ({exc.strerror or exc})")
    if not os.access(folder, os.W_OK):
        parser.error(f"{option} {folder}: the folder is not writable")

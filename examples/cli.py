"""Command-line argument types the examples share: a bad value is an argparse error (usage and
one line), never a traceback from inside the library."""

from __future__ import annotations

import argparse
import os
import pathlib

INT64_MAX = 2**63 - 1


def workers(text: str) -> int | str:
    """--workers: "auto" or an int from 0 to 1024 (World's limit)."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an int >= 0 or 'auto'") from None
    if not 0 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an int from 0 to 1024 or 'auto'")
    return value


def seed(text: str) -> int:
    """--seed: an int from 0 to 2**63 - 1 (the random generator's keys are int64)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an int") from None
    if not 0 <= value <= INT64_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an int from 0 to 2**63 - 1")
    return value


def fraction(text: str) -> float:
    """A coefficient from 0 to 1 (a restitution: 1 is elastic; more would add energy)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number from 0 to 1")
    return value


def writable_folder(parser: argparse.ArgumentParser, option: str, folder: pathlib.Path) -> None:
    """Create `folder` (and its parents) now, before a run whose output goes there, or end with a
    usage error naming the option: a bad path must not cost a whole run."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"{option} {folder}: cannot create the folder ({exc.strerror or exc})")
    if not os.access(folder, os.W_OK):
        parser.error(f"{option} {folder}: the folder is not writable")

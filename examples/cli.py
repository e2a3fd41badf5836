"""Command-line argument types the examples share: a bad value is an argparse error (usage and
one line), never a traceback from inside the library."""

from __future__ import annotations

import argparse

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

"""kernels/sets.py against np.unique: the first repeat and the first occurrences of int64 values."""

from __future__ import annotations

import numpy as np
import pytest

from ecs.kernels import sets

EXTREMES = np.array([np.iinfo(np.int64).min, -1, 0, 1, np.iinfo(np.int64).max], np.int64)


def _first_repeat_reference(values: np.ndarray) -> int:
    seen: set[int] = set()
    for i, value in enumerate(values.tolist()):
        if value in seen:
            return i
        seen.add(value)
    return -1


@pytest.mark.parametrize("n", [0, 1, 2, 15, 16, 17, 1000])
def test_distinct_values_have_no_repeat_and_are_all_first(n: int) -> None:
    values = np.random.default_rng(n).permutation(n).astype(np.int64) << 32 | 7   # ids: equal low bits
    assert sets.first_repeat(values) == -1
    assert sets.first_occurrences(values).tolist() == [True] * n


def test_extreme_values_are_kept_apart_and_found_again() -> None:
    assert sets.first_repeat(EXTREMES) == -1
    doubled = np.concatenate([EXTREMES, EXTREMES[::-1]])
    assert sets.first_repeat(doubled) == EXTREMES.shape[0]
    assert sets.first_occurrences(doubled).tolist() == [True] * 5 + [False] * 5


@pytest.mark.parametrize("seed", range(20))
def test_random_values_with_repeats_match_np_unique(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    values = rng.integers(-n // 2, n // 2 + 1, n, dtype=np.int64) * int(rng.choice([1, 1 << 32, 3]))
    assert sets.first_repeat(values) == _first_repeat_reference(values)
    _, first_index = np.unique(values, return_index=True)
    expected = np.zeros(n, bool)
    expected[first_index] = True
    assert np.array_equal(sets.first_occurrences(values), expected)


def test_unsigned_values_past_the_int64_range_are_kept_by_their_bits() -> None:
    values = np.array([2**64 - 1, 2**63, 2**63 + 1, 2**64 - 1, 5, 2**63], np.uint64)
    assert sets.first_repeat(values) == 3
    assert sets.first_occurrences(values).tolist() == [True, True, True, False, True, False]

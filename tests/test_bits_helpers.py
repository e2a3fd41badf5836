"""Helpers of kernels/bits.py that other kernels inline, against their twins in tests/reference.py."""

from __future__ import annotations

import numpy as np
import pytest

from ecs.kernels import bits
from tests import reference

WORD = 0xFFFFFFFFFFFFFFFF


@pytest.mark.parametrize("nbits", [0, 1, 63, 64])
def test_popcount_counts_the_low_bits_set(nbits: int) -> None:
    low = (1 << nbits) - 1
    high = (WORD << (64 - nbits)) & WORD if nbits else 0
    for value in (low, high, low & 0x5555555555555555):
        assert bits.popcount(np.uint64(value)) == reference.popcount(value) == bin(value).count("1")


@pytest.mark.parametrize("single", [0, 1, 31, 32, 62, 63])
def test_popcount_of_a_single_bit_is_one(single: int) -> None:
    assert bits.popcount(np.uint64(1 << single)) == reference.popcount(1 << single) == 1


def test_popcount_matches_its_twin_on_many_random_words() -> None:
    rng = np.random.default_rng(16)
    words = rng.integers(0, WORD, 100_003, dtype=np.uint64, endpoint=True)
    words[:65] = [(1 << k) - 1 for k in range(65)]   # 0 ... 64 bits set
    got = [bits.popcount(w) for w in words[:2000]]
    want = reference.unpack(words).reshape(-1, 64).sum(axis=1)
    assert got == want[:2000].tolist()
    assert want[:65].tolist() == list(range(65))
    assert all(reference.popcount(int(w)) == int(c) for w, c in zip(words[:200], want[:200], strict=True))

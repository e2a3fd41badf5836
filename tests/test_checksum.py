"""kernels/checksum.py against the reference XXH64 (the `xxhash` package)."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash

from ecs.kernels.checksum import xxh64


def test_the_empty_input_has_the_published_digest() -> None:
    assert xxh64(np.zeros(0, np.uint8)) == 0xEF46DB3751D8E999


@pytest.mark.parametrize("length", [*range(0, 72), 255, 1000, 4096, 12345, (1 << 20) + 7])
def test_every_length_matches_the_reference(length: int) -> None:
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8)
    assert xxh64(data) == xxhash.xxh64_intdigest(data.tobytes())


@pytest.mark.parametrize("start", range(1, 8))
def test_unaligned_views_match_the_reference(start: int) -> None:
    data = np.random.default_rng(start).integers(0, 256, 3000, dtype=np.uint8)[start:]
    assert xxh64(data) == xxhash.xxh64_intdigest(data.tobytes())


def test_one_flipped_bit_changes_the_digest() -> None:
    data = np.random.default_rng(1).integers(0, 256, 1 << 16, dtype=np.uint8)
    digest = xxh64(data)
    for at in (0, 31, 32, 40_000, (1 << 16) - 1):
        flipped = data.copy()
        flipped[at] ^= 1
        assert xxh64(flipped) != digest

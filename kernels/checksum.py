"""XXH64 (xxHash, 64-bit; Yann Collet's specification, seed 0) of a byte array, for the world file.

A non-cryptographic hash: it detects accidents (a flipped bit, a torn write, a truncation) with
the strength of a 64-bit hash, not edits. Bit-identical to the reference implementation
(tests/test_checksum.py compares it with the `xxhash` package at every length up to 70 bytes
and beyond). Cost: ~1.1 ms for 24 MB on one core here (22 GB/s, the reference C's speed; zlib's
CRC-32 took 3.6 ms), and the GIL is released, so threads hash chunks side by side.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)


def xxh64(data: np.ndarray) -> int:
    """XXH64 of a C-contiguous uint8 array's bytes (words read little-endian: the machine's)."""
    whole = data.shape[0] - data.shape[0] % 8
    return int(_xxh64(data[:whole].view(np.uint64), data[whole:]))


@jit(inline="always")
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@jit(inline="always")
def _round(acc, lane):
    return _rotl(acc + lane * _P2, 31) * _P1


@jit(inline="always")
def _merge(h, acc):
    return (h ^ _round(np.uint64(0), acc)) * _P1 + _P4


@jit
def _xxh64(words, tail):
    """XXH64 with seed 0 of `words` (uint64) followed by `tail` (under 8 uint8)."""
    n = words.shape[0]
    k = 0
    if n >= 4:   # four lanes over 32-byte stripes
        v1 = _P1 + _P2
        v2 = _P2
        v3 = np.uint64(0)
        v4 = np.uint64(0) - _P1
        while k + 4 <= n:
            v1 = _round(v1, words[k])
            v2 = _round(v2, words[k + 1])
            v3 = _round(v3, words[k + 2])
            v4 = _round(v4, words[k + 3])
            k += 4
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(_merge(_merge(_merge(h, v1), v2), v3), v4)
    else:
        h = _P5
    h = h + np.uint64(8 * n + tail.shape[0])
    while k < n:
        h = _rotl(h ^ _round(np.uint64(0), words[k]), 27) * _P1 + _P4
        k += 1
    t = 0
    if tail.shape[0] >= 4:
        word = np.uint64(tail[0]) | (np.uint64(tail[1]) << np.uint64(8)) | (np.uint64(tail[2]) << np.uint64(16)) \
            | (np.uint64(tail[3]) << np.uint64(24))
        h = _rotl(h ^ (word * _P1), 23) * _P2 + _P3
        t = 4
    while t < tail.shape[0]:
        h = _rotl(h ^ (np.uint64(tail[t]) * _P5), 11) * _P1
        t += 1
    h = (h ^ (h >> np.uint64(33))) * _P2
    h = (h ^ (h >> np.uint64(29))) * _P3
    return h ^ (h >> np.uint64(32))

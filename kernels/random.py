"""Counter-based random numbers for kernels: every draw is a pure function of its key.

A draw is keyed by (seed, entity, frame, stream): the same key gives the same number in any
process, on any worker count and whatever rows a worker was given, because nothing depends on
call order or on a generator's state (there is none). `stream` separates the draws one entity
makes in one frame: use one stream per quantity (a uniform and a normal drawn with the same key
share their first 64 bits, so they are not independent).

The generator is a chain of four SplitMix64 steps, one per key word:

    h = mix64(seed + GAMMA)
    h = mix64(h + (entity + 1) * GAMMA)
    h = mix64(h + (frame + 1) * GAMMA)
    bits = mix64(h + (stream + 1) * GAMMA)

`mix64` is the SplitMix64 finalizer (Stafford's "Mix13" constants), GAMMA the golden-ratio
odd constant. Why this one: SplitMix64 (Steele, Lea & Flood, OOPSLA 2014; the seeding
generator of Java's SplittableRandom and of xoshiro) passes TestU01's BigCrush and PractRand,
and for a fixed (seed, entity, frame) the draws over streams 0, 1, 2... *are* the SplitMix64
sequence started at h; the other words reach the output through further full-avalanche mixes.
Every step is a bijection of 64-bit words (x -> x * GAMMA is, GAMMA being odd; mix64 is), so
two keys that differ in one word never give the same 64 bits: `permutation` keys are never
tied. It needs only 64-bit multiplies and shifts, which numba compiles to a few instructions,
where Philox4x32-10 (numpy's, cuRAND's) needs ten rounds of 32x32->64 products for a stronger
published guarantee than we need for agent activation and noise. It is a hash, not a proven
family of independent streams: tests/test_random.py checks means, variances, KS statistics,
chi-square and cross-stream correlation over 10^6 draws against numpy.

Cost: `random_bits` 4 mixes (8 multiplies), a few ns; `normal` one more mix plus log, sqrt and
cos; `integers` a 64x64->128 product, rejected with probability (2^64 mod range) / 2^64 < 1/2
(one more mix per rejection); `permutation` O(n) (a radix argsort of n 64-bit keys).
Integers in keys are taken modulo 2^64 (negative ids and seeds are fine). Keys are integers of
int64 or uint64 range: from Python, an int past 2^64 - 1 does not convert (numba's TypingError), and a
float key is truncated by the conversion (uniform(1.5, ...) is uniform(1, ...)): pass ints.
Every kernel here has a numpy twin in tests/test_random.py.
"""

from __future__ import annotations

import math

import numpy as np
from numba.core import types
from numba.extending import overload

from ._jit import jit
from .checks import check_holds, check_length

GAMMA = np.uint64(0x9E3779B97F4A7C15)      # 2^64 / golden ratio, odd
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)
_ONE = np.uint64(1)
_UNIT = 1.0 / 9007199254740992.0           # 2^-53
_BELOW_ONE_F32 = 1.0 - 2.0**-24            # the largest float32 below 1
_TWO_PI = 2.0 * math.pi


@jit
def mix64(z):
    """The SplitMix64 finalizer: a bijection of uint64 words with full avalanche (every input
    bit flips every output bit with probability ~1/2)."""
    z = np.uint64(z)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@jit
def random_bits(seed, entity, frame, stream):
    """64 random bits (uint64) for the key (seed, entity, frame, stream); see the module doc.
    For any three words fixed, distinct values of the fourth give distinct bits."""
    h = mix64(np.uint64(seed) + GAMMA)
    h = mix64(h + (np.uint64(entity) + _ONE) * GAMMA)
    h = mix64(h + (np.uint64(frame) + _ONE) * GAMMA)
    return mix64(h + (np.uint64(stream) + _ONE) * GAMMA)


@jit
def unit_of(bits):
    """The top 53 bits of a uint64 as a double in [0, 1): k * 2^-53, every k equally likely."""
    return np.float64(np.uint64(bits) >> np.uint64(11)) * _UNIT


@jit
def uniform(seed, entity, frame, stream):
    """A double uniform on [0, 1) (53 random bits; 1.0 never occurs). Stored into a float32 it
    rounds to 1.0 for draws above 1 - 2^-25 (3 in 10^8): fill_uniform stores those below 1."""
    return unit_of(random_bits(seed, entity, frame, stream))


@jit
def normal(seed, entity, frame, stream):
    """A standard normal double (Box-Muller on two 53-bit uniforms: the key's bits and one more
    SplitMix64 step from them; the sine half of the pair is not used). |z| < 8.6 always."""
    bits = random_bits(seed, entity, frame, stream)
    u1 = unit_of(bits)
    u2 = unit_of(mix64(bits + GAMMA))
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(_TWO_PI * u2)   # 1 - u1 in (0, 1]


@jit
def mul128(a, b):
    """(high, low) 64-bit words of the 128-bit product of two uint64 (numba has no 128-bit int)."""
    a = np.uint64(a)
    b = np.uint64(b)
    a_lo = a & _LOW32
    a_hi = a >> np.uint64(32)
    b_lo = b & _LOW32
    b_hi = b >> np.uint64(32)
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> np.uint64(32)) + (p1 & _LOW32) + (p2 & _LOW32)      # < 3 * 2^32: no overflow
    high = p3 + (p1 >> np.uint64(32)) + (p2 >> np.uint64(32)) + (mid >> np.uint64(32))
    low = (mid << np.uint64(32)) | (p0 & _LOW32)
    return high, low


@jit
def integers_of(bits, low, high):
    """An int64 uniform on [low, high) from the uint64 `bits`: Lemire's multiply-and-reject
    (ACM TOMACS 2019), no modulo bias. A rejected word is replaced by the next SplitMix64 step
    from it, so the result is still a function of `bits` alone. Raises ValueError if high <= low
    or a bound is not an integer."""
    low, high = _integer_bound(low), _integer_bound(high)
    if high <= low:
        raise ValueError("integers: high " + str(high) + " must be greater than low " + str(low))
    span = np.uint64(high) - np.uint64(low)        # high - low, exact modulo 2^64
    x = np.uint64(bits)
    hi, lo = mul128(x, span)
    if lo < span:
        threshold = (np.uint64(0) - span) % span   # 2^64 mod span
        while lo < threshold:
            x = mix64(x + GAMMA)
            hi, lo = mul128(x, span)
    return np.int64(np.uint64(low) + hi)


@jit
def integers(seed, entity, frame, stream, low, high):
    """An int64 uniform on [low, high) (any int64 bounds; high - low may exceed 2^63; floats
    that hold integers, such as a resource 10.0, are taken as those). Raises ValueError if
    high <= low or a bound is not an integer."""
    return integers_of(random_bits(seed, entity, frame, stream), low, high)


def _integer_bound(value):
    """`value` as an int64 (compiled by the overload below: an integer as it is, a float only if
    it holds an integer within int64; a float 2.5 would be truncated, a negative one wrapped by
    the uint64 arithmetic of integers_of, one past int64 converted to an undefined value)."""
    if float(value) != int(value) or not -2**63 <= int(value) < 2**63:
        raise ValueError("integers: low and high must be integers within int64")
    return int(value)


@overload(_integer_bound)
def _integer_bound_compiled(value):
    if isinstance(value, types.Integer) and (value.signed or value.bitwidth < 64):
        return lambda value: np.int64(value)
    if isinstance(value, types.Integer):   # a uint64 (a Python int past int64 is typed as one)
        def unsigned(value):
            if value > np.uint64(9223372036854775807):
                raise ValueError("integers: low and high must be integers within int64, got " + str(value))
            return np.int64(value)
        return unsigned
    if isinstance(value, types.Float):
        def checked(value):
            if not -9.223372036854775808e18 <= value < 9.223372036854775808e18 or np.int64(value) != value:
                raise ValueError("integers: low and high must be integers within int64, got the float", value)
            return np.int64(value)
        return checked
    return None


# ---------------------------------------------------------------- one draw per entity of an array
@jit
def fill_bits(seed, entities, frame, stream, out):
    """out[i] = random_bits(seed, entities[i], frame, stream) (uint64 out). Any split of
    `entities` into slices gives the same values: each depends on its own id only."""
    check_length("fill_bits", out, entities.shape[0])
    for i in range(entities.shape[0]):
        out[i] = random_bits(seed, entities[i], frame, stream)


@jit
def fill_uniform(seed, entities, frame, stream, out):
    """out[i] = uniform(seed, entities[i], frame, stream), in [0, 1) also for a float32 `out`:
    the 3 in 10^8 draws that round up to 1.0 there are stored as the float32 below it."""
    check_length("fill_uniform", out, entities.shape[0])
    for i in range(entities.shape[0]):
        out[i] = uniform(seed, entities[i], frame, stream)
        if out[i] >= 1.0:
            out[i] = _BELOW_ONE_F32


@jit
def fill_normal(seed, entities, frame, stream, out):
    """out[i] = normal(seed, entities[i], frame, stream)."""
    check_length("fill_normal", out, entities.shape[0])
    for i in range(entities.shape[0]):
        out[i] = normal(seed, entities[i], frame, stream)


@jit
def fill_integers(seed, entities, frame, stream, low, high, out):
    """out[i] = integers(seed, entities[i], frame, stream, low, high). Raises ValueError if
    high <= low."""
    check_length("fill_integers", out, entities.shape[0])
    for i in range(entities.shape[0]):
        out[i] = integers(seed, entities[i], frame, stream, low, high)


# ---------------------------------------------------------------- activation order
_DIGIT_BITS = 8                               # 256 buckets: measured 29 ms at 10^6 keys; 11 bits 41, 16 bits 40
_DIGITS = 1 << _DIGIT_BITS
_PASSES = 8


@jit
def argsort_keys(keys, order):
    """order = the stable argsort of uint64 `keys` (equal keys by position): an LSD radix sort,
    eight passes of 8-bit digits. Cost O(n): 8 reads and scattered writes of n keys and
    positions, 4n words allocated; ~29 ms at 10^6 keys, where numba's mergesort argsort takes
    ~150 ms and its quicksort ~100 ms (measured on the same keys)."""
    n = keys.shape[0]
    check_length("argsort_keys", order, n)
    check_holds("argsort_keys", order, n - 1)
    counts = np.zeros((_PASSES, _DIGITS), np.int64)
    mask = np.uint64(_DIGITS - 1)
    for i in range(n):                                     # every pass's histogram in one read
        k = keys[i]
        for p in range(_PASSES):
            counts[p, (k >> np.uint64(p * _DIGIT_BITS)) & mask] += 1
    for p in range(_PASSES):                               # histogram -> first slot of each digit
        total = 0
        for d in range(_DIGITS):
            c = counts[p, d]
            counts[p, d] = total
            total += c
    src_keys = keys.copy()
    src_rows = np.arange(n)
    dst_keys = np.empty(n, np.uint64)
    dst_rows = np.empty(n, np.int64)
    for p in range(_PASSES):
        shift = np.uint64(p * _DIGIT_BITS)
        for i in range(n):
            k = src_keys[i]
            d = (k >> shift) & mask
            j = counts[p, d]
            counts[p, d] = j + 1
            dst_keys[j] = k
            dst_rows[j] = src_rows[i]
        src_keys, dst_keys = dst_keys, src_keys
        src_rows, dst_rows = dst_rows, src_rows
    for k in range(n):
        order[k] = src_rows[k]


@jit
def permutation(seed, frame, stream, ids, out):
    """Activation order: out[k] = the position in `ids` of the k-th id to act, ids sorted by
    random_bits(seed, id, frame, stream) (so by their `uniform` draws). Distinct ids never tie;
    copies of one id keep their order of position. The order of any two ids is the same in
    every array that holds both: a worker ordering its own slice agrees with the whole order,
    and merging sorted slices by key gives it. Cost O(n) (argsort_keys: ~30 ms at 10^6 ids),
    allocates 5n words."""
    n = ids.shape[0]
    if out.shape[0] != n:
        raise ValueError("permutation: out must have one entry per id")
    check_holds("permutation", out, n - 1)
    keys = np.empty(n, np.uint64)
    for i in range(n):
        keys[i] = random_bits(seed, ids[i], frame, stream)
    argsort_keys(keys, out)


@jit
def shuffle(seed, frame, stream, ids):
    """Reorder `ids` in place into their activation order (ids[permutation(...)]); the result
    depends only on the set of ids, not on their order before. Cost O(n), as permutation."""
    n = ids.shape[0]
    order = np.empty(n, np.int64)
    permutation(seed, frame, stream, ids, order)
    before = ids.copy()
    for k in range(n):
        ids[k] = before[order[k]]

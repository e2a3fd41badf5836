"""kernels/random.py against numpy twins, at sizes 0, 1, 63, 64, 65 and large, and its statistics.

The twins below are written in whole-array numpy uint64 arithmetic (which wraps modulo 2^64) and
Python ints (for the 128-bit products of `integers`), sharing no code with the kernels.
Beyond the twins: a key always gives the same draw; draws do not depend on how the ids are split
into chunks, nor on the order the chunks run (what workers do); and 10^6 draws, taken along each
key word, pass mean / variance bounds, a Kolmogorov-Smirnov test at the 1e-3 level, chi-square
tests at the 1e-3 level and correlation bounds. Every test uses fixed keys, so none is flaky: a
failure means the generator changed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ecs.kernels import random

SIZES = [0, 1, 63, 64, 65, 100_003]
N_STAT = 1_000_000
KS_CRIT = math.sqrt(-0.5 * math.log(1e-3 / 2)) / math.sqrt(N_STAT)   # one-sample, alpha = 1e-3
Z_1E3 = 3.0902                                                         # upper 1e-3 normal quantile
SIGMAS = 5.0                                                           # mean / variance bounds

U64 = np.uint64
GAMMA = U64(0x9E3779B97F4A7C15)


# ---------------------------------------------------------------- numpy twins
def mix64(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z).astype(U64)
    z = (z ^ (z >> U64(30))) * U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> U64(27))) * U64(0x94D049BB133111EB)
    return z ^ (z >> U64(31))


def words(v) -> np.ndarray:
    return np.atleast_1d(np.asarray(v, dtype=np.int64)).astype(U64)   # modulo 2^64, as the kernels


def random_bits(seed, entity, frame, stream) -> np.ndarray:
    h = mix64(words(seed) + GAMMA)
    for word in (entity, frame, stream):
        h = mix64(h + (words(word) + U64(1)) * GAMMA)
    return h


def uniform_of(bits: np.ndarray) -> np.ndarray:
    return (bits >> U64(11)).astype(np.float64) * 2.0**-53


def normal_of(bits: np.ndarray) -> np.ndarray:
    u1, u2 = uniform_of(bits), uniform_of(mix64(bits + GAMMA))
    return np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * np.pi * u2)


def integers_of(bits: np.ndarray, low: int, high: int) -> np.ndarray:
    """Lemire's method in Python ints, one value at a time."""
    span = high - low
    out = np.empty(len(bits), np.int64)
    for i, x in enumerate(bits.tolist()):
        product = x * span
        while product % 2**64 < (2**64 - span) % span:
            x = int(mix64(np.array([x], U64) + GAMMA)[0])
            product = x * span
        out[i] = low + (product >> 64)
    return out


def permutation(seed, frame, stream, ids) -> np.ndarray:
    return np.argsort(random_bits(seed, ids, frame, stream), kind="stable")


# ---------------------------------------------------------------- helpers
def ids_of(n: int, seed: int = 5) -> np.ndarray:
    """n distinct int64 ids, spread over the whole range (negative ones included)."""
    rng = np.random.default_rng(seed)
    return np.unique(rng.integers(-(2**63), 2**63 - 1, n + n // 10 + 10, dtype=np.int64))[:n]


def ks_statistic(sample: np.ndarray, cdf) -> float:
    """Kolmogorov-Smirnov distance between the sample's empirical CDF and `cdf`."""
    x = np.sort(sample)
    n = len(x)
    f = cdf(x)
    ranks = np.arange(1, n + 1) / n
    return float(max(np.max(ranks - f), np.max(f - (ranks - 1.0 / n))))


def ks_two_sample(a: np.ndarray, b: np.ndarray) -> float:
    both = np.concatenate([a, b])
    fa = np.searchsorted(np.sort(a), both, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), both, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def chi2_critical(df: int, z: float = Z_1E3) -> float:
    """Upper quantile of chi-square(df) at the normal quantile z (Wilson-Hilferty; no scipy)."""
    return df * (1.0 - 2.0 / (9.0 * df) + z * math.sqrt(2.0 / (9.0 * df))) ** 3


def chi2_uniform(counts: np.ndarray) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


_erf = np.frompyfunc(math.erf, 1, 1)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def along(word: str, n: int = N_STAT) -> tuple:
    """Keys (seed, entity, frame, stream) for n draws that vary only `word` over 0..n-1."""
    key = {"seed": 17, "entity": 123_456_789, "frame": 42, "stream": 3}
    key[word] = np.arange(n, dtype=np.int64)
    return key["seed"], key["entity"], key["frame"], key["stream"]


# ---------------------------------------------------------------- twins
@pytest.mark.parametrize("n", SIZES)
def test_fill_bits_matches_numpy_twin(n: int) -> None:
    ids = ids_of(n)
    out = np.empty(n, np.uint64)
    for seed, frame, stream in [(0, 0, 0), (7, 1_000, 2), (-3, -1, 2**40)]:
        random.fill_bits(seed, ids, frame, stream, out)
        np.testing.assert_array_equal(out, random_bits(seed, ids, frame, stream))


@pytest.mark.parametrize("n", SIZES)
def test_fill_uniform_normal_integers_match_numpy_twins(n: int) -> None:
    ids = ids_of(n)
    bits = random_bits(9, ids, 4, 1)
    u = np.empty(n)
    random.fill_uniform(9, ids, 4, 1, u)
    np.testing.assert_array_equal(u, uniform_of(bits))
    z = np.empty(n)
    random.fill_normal(9, ids, 4, 1, z)
    np.testing.assert_allclose(z, normal_of(bits), rtol=1e-12, atol=1e-14)   # libm vs numpy log/cos
    k = np.empty(n, np.int64)
    few = ids[:3001]                                                          # the twin loops in Python
    for low, high in [(0, 1), (-3, 7), (0, 1000), (-(3 << 61), 3 << 61), (-(2**63), 2**63 - 1)]:
        random.fill_integers(9, few, 4, 1, low, high, k[:len(few)])
        np.testing.assert_array_equal(k[:len(few)], integers_of(bits[:len(few)], low, high))


@pytest.mark.parametrize("n", SIZES)
def test_permutation_matches_numpy_twin_and_is_a_permutation(n: int) -> None:
    ids = ids_of(n)
    out = np.empty(n, np.int64)
    random.permutation(11, 6, 0, ids, out)
    np.testing.assert_array_equal(out, permutation(11, 6, 0, ids))
    np.testing.assert_array_equal(np.sort(out), np.arange(n))


@pytest.mark.parametrize("n", SIZES)
def test_argsort_keys_is_numpys_stable_argsort(n: int) -> None:
    rng = np.random.default_rng(n)
    for keys in (rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True),
                 rng.integers(0, 5, n).astype(np.uint64) << np.uint64(61),      # many ties, top digit
                 rng.integers(0, 3, n).astype(np.uint64) * np.uint64(257)):     # ties in low digits
        out = np.full(n, -1, np.int64)
        random.argsort_keys(keys, out)
        np.testing.assert_array_equal(out, np.argsort(keys, kind="stable"))


def test_scalar_draws_equal_the_array_kernels() -> None:
    ids = ids_of(65)
    u, z, k, b = np.empty(65), np.empty(65), np.empty(65, np.int64), np.empty(65, np.uint64)
    random.fill_uniform(1, ids, 2, 3, u)
    random.fill_normal(1, ids, 2, 3, z)
    random.fill_integers(1, ids, 2, 3, -10, 10, k)
    random.fill_bits(1, ids, 2, 3, b)
    for i, e in enumerate(ids.tolist()):
        assert random.uniform(1, e, 2, 3) == u[i]
        assert random.normal(1, e, 2, 3) == z[i]
        assert random.integers(1, e, 2, 3, -10, 10) == k[i]
        assert random.random_bits(1, e, 2, 3) == b[i]
        assert random.unit_of(b[i]) == u[i]
        assert random.integers_of(b[i], -10, 10) == k[i]


def test_mul128_gives_the_exact_product() -> None:
    rng = np.random.default_rng(2)
    values = [0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1] + rng.integers(0, 2**64 - 1, 50, dtype=np.uint64).tolist()
    for a in values:
        for b in values[::7]:
            high, low = random.mul128(np.uint64(a), np.uint64(b))
            assert (int(high) << 64) | int(low) == a * b


# ---------------------------------------------------------------- determinism
def test_same_key_gives_the_same_draw_and_the_values_are_pinned() -> None:
    # pinned: a change of the generator changes every stored or replayed simulation
    assert random.random_bits(0, 0, 0, 0) == 2391539541053276776
    assert random.random_bits(1, 2, 3, 4) == random.random_bits(1, 2, 3, 4) == 2973761935396792754
    assert random.uniform(1, 2, 3, 4) == random.uniform(1, 2, 3, 4)
    assert random.normal(1, 2, 3, 4) == random.normal(1, 2, 3, 4)
    assert random.integers(1, 2, 3, 4, 0, 6) == random.integers(1, 2, 3, 4, 0, 6)


def test_keys_are_taken_modulo_2_to_the_64() -> None:
    assert random.random_bits(-1, -5, 0, 0) == random.random_bits(np.uint64(2**64 - 1), np.uint64(2**64 - 5), 0, 0)


def test_every_key_word_changes_the_draw() -> None:
    small = np.arange(-20, 20)
    seed, entity, frame, stream = np.meshgrid(small, small, small, small, indexing="ij")
    bits = random_bits(seed.ravel(), entity.ravel(), frame.ravel(), stream.ravel())
    assert len(np.unique(bits)) == bits.size                 # 40^4 keys, 40^4 distinct words
    for word in range(4):
        key = [1, 2, 3, 4]
        values = set()
        for v in range(-3, 4):
            key[word] = v
            values.add(random.random_bits(*key))
        assert len(values) == 7


def test_draws_do_not_depend_on_how_ids_are_split_into_chunks_or_their_order() -> None:
    rng = np.random.default_rng(4)
    ids = ids_of(10_007)
    whole_u, whole_z, whole_k = np.empty(len(ids)), np.empty(len(ids)), np.empty(len(ids), np.int64)
    random.fill_uniform(5, ids, 8, 2, whole_u)
    random.fill_normal(5, ids, 8, 2, whole_z)
    random.fill_integers(5, ids, 8, 2, 0, 37, whole_k)
    order = np.empty(len(ids), np.int64)
    random.permutation(5, 8, 2, ids, order)
    rank = np.empty(len(ids), np.int64)
    rank[order] = np.arange(len(ids))
    for nchunks in (1, 2, 3, 7, 64):
        cuts = np.sort(rng.choice(np.arange(1, len(ids)), nchunks - 1, replace=False))
        chunks = list(zip(np.r_[0, cuts], np.r_[cuts, len(ids)], strict=True))
        rng.shuffle(chunks)                                  # workers finish in any order
        u, z, k = np.full(len(ids), np.nan), np.full(len(ids), np.nan), np.full(len(ids), -1)
        for start, stop in chunks:
            view = ids[start:stop]
            random.fill_uniform(5, view, 8, 2, u[start:stop])
            random.fill_normal(5, view, 8, 2, z[start:stop])
            random.fill_integers(5, view, 8, 2, 0, 37, k[start:stop])
            local = np.empty(stop - start, np.int64)         # a worker orders only its own ids
            random.permutation(5, 8, 2, view, local)
            assert np.all(np.diff(rank[start:stop][local]) > 0)
        np.testing.assert_array_equal(u, whole_u)
        np.testing.assert_array_equal(z, whole_z)
        np.testing.assert_array_equal(k, whole_k)


def test_permutation_breaks_ties_of_repeated_ids_by_position() -> None:
    ids = np.array([5, 9, 5, 2, 9, 5], np.int64)
    out = np.empty(6, np.int64)
    random.permutation(3, 0, 0, ids, out)
    for value in (5, 9):
        positions = out[ids[out] == value]
        assert np.all(np.diff(positions) > 0)
    np.testing.assert_array_equal(out, permutation(3, 0, 0, ids))


@pytest.mark.parametrize("n", SIZES)
def test_shuffle_puts_ids_in_activation_order_whatever_their_order_before(n: int) -> None:
    ids = ids_of(n)
    order = np.empty(n, np.int64)
    random.permutation(2, 9, 1, ids, order)
    shuffled = ids.copy()
    random.shuffle(2, 9, 1, shuffled)
    np.testing.assert_array_equal(shuffled, ids[order])
    reversed_first = ids[::-1].copy()
    random.shuffle(2, 9, 1, reversed_first)
    np.testing.assert_array_equal(reversed_first, shuffled)


def test_permutation_and_integers_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="high 5 must be greater than low 5"):
        random.integers(1, 2, 3, 4, 5, 5)
    with pytest.raises(ValueError, match="high 4 must be greater than low 5"):
        random.fill_integers(1, np.arange(3), 3, 4, 5, 4, np.empty(3, np.int64))
    with pytest.raises(ValueError, match="one entry per id"):
        random.permutation(1, 2, 3, np.arange(3), np.empty(2, np.int64))
    with pytest.raises(ValueError, match="low and high must be integers within int64"):
        random.integers(1, 2, 3, 4, 2.5, 4.5)
    with pytest.raises(ValueError, match="low and high must be integers within int64"):
        random.fill_integers(1, np.arange(3), 3, 4, 0, 1e30, np.empty(3, np.int64))
    for low, high in ((np.uint64(2**63), np.uint64(2**63 + 10)), (np.uint64(0), np.uint64(2**63 + 5))):   # wrapped
        with pytest.raises(ValueError, match="low and high must be integers within int64"):
            random.integers(1, 2, 3, 4, low, high)
    assert random.integers(1, 2, 3, 4, np.uint64(0), np.uint64(2**63 - 1)) >= 0


def test_integers_take_float_bounds_that_hold_integers_as_those() -> None:
    ids = np.arange(5_000)
    as_floats, as_ints = np.empty(5_000, np.int64), np.empty(5_000, np.int64)
    random.fill_integers(3, ids, 1, 2, -5.0, 5.0, as_floats)    # e.g. bounds from float resources
    random.fill_integers(3, ids, 1, 2, -5, 5, as_ints)
    assert np.array_equal(as_floats, as_ints)
    assert as_ints.min() == -5 and as_ints.max() == 4


def test_fill_uniform_into_float32_stays_below_one() -> None:
    entity = 33_165_172     # seed 0, frame 0, stream 0: a draw within 2^-25 of 1
    assert np.float32(random.uniform(0, entity, 0, 0)) == 1.0
    out = np.empty(3, np.float32)
    random.fill_uniform(0, np.array([entity, 1, 2]), 0, 0, out)
    assert out[0] == np.float32(1.0 - 2.0**-24) and np.all(out < 1.0)
    assert out[1] == np.float32(random.uniform(0, 1, 0, 0))


# ---------------------------------------------------------------- statistics over 10^6 draws
@pytest.mark.parametrize("word", ["entity", "frame", "stream", "seed"])
def test_uniform_mean_variance_and_ks_over_each_key_word(word: str) -> None:
    u = uniform_of(random_bits(*along(word)))
    n = len(u)
    assert abs(u.mean() - 0.5) < SIGMAS * math.sqrt(1 / 12 / n)
    assert abs(u.var() - 1 / 12) < SIGMAS * math.sqrt((1 / 80 - 1 / 144) / n)
    assert ks_statistic(u, lambda x: x) < KS_CRIT
    assert u.min() >= 0.0 and u.max() < 1.0


def test_uniform_kernel_passes_ks_and_matches_numpy_in_distribution() -> None:
    u = np.empty(N_STAT)
    random.fill_uniform(17, np.arange(N_STAT), 42, 3, u)
    assert ks_statistic(u, lambda x: x) < KS_CRIT
    theirs = np.random.default_rng(0).random(N_STAT)
    assert ks_two_sample(u, theirs) < KS_CRIT * math.sqrt(2.0)    # two-sample critical value
    assert abs(u.mean() - theirs.mean()) < SIGMAS * math.sqrt(2 / 12 / N_STAT)


@pytest.mark.parametrize("word", ["entity", "frame", "stream"])
def test_normal_mean_variance_and_ks(word: str) -> None:
    z = normal_of(random_bits(*along(word)))
    n = len(z)
    assert abs(z.mean()) < SIGMAS / math.sqrt(n)
    assert abs(z.var() - 1.0) < SIGMAS * math.sqrt(2.0 / n)
    assert ks_statistic(z, normal_cdf) < KS_CRIT
    assert np.abs(z).max() < 8.6


def test_normal_kernel_matches_numpy_standard_normal_in_distribution() -> None:
    z = np.empty(N_STAT)
    random.fill_normal(17, np.arange(N_STAT), 42, 3, z)
    theirs = np.random.default_rng(1).standard_normal(N_STAT)
    assert ks_two_sample(z, theirs) < KS_CRIT * math.sqrt(2.0)
    assert abs(z.var() - theirs.var()) < SIGMAS * math.sqrt(4.0 / N_STAT)
    # fourth moment: Box-Muller's tails are the normal's (3 for a normal)
    assert abs((z**4).mean() - 3.0) < SIGMAS * math.sqrt(96.0 / N_STAT)


@pytest.mark.parametrize(("low", "high"), [(-3, 7), (0, 1000), (5, 6), (-(2**40), -(2**40) + 97)])
def test_integers_are_uniform_by_chi_square(low: int, high: int) -> None:
    k = np.empty(N_STAT, np.int64)
    random.fill_integers(17, np.arange(N_STAT), 42, 3, low, high, k)
    assert k.min() >= low and k.max() < high
    counts = np.bincount(k - low, minlength=high - low)
    assert len(counts) == high - low
    if high - low > 1:
        assert chi2_uniform(counts) < chi2_critical(high - low - 1)


def test_integers_have_no_modulo_bias_on_a_range_of_three_times_2_to_the_62() -> None:
    # x % span would give the first third of [0, 3 * 2^62) twice the weight of the others (and
    # a quarter of the raw words are rejected, so this exercises the rejection loop)
    low = -(3 << 61)
    k = np.empty(N_STAT, np.int64)
    random.fill_integers(17, np.arange(N_STAT), 42, 3, low, 3 << 61, k)
    thirds = np.bincount(((k.astype(object) - low) // (1 << 62)).astype(np.int64), minlength=3)
    assert len(thirds) == 3
    assert chi2_uniform(thirds) < chi2_critical(2)


def test_top_and_bottom_bits_are_uniform_by_chi_square() -> None:
    bits = random_bits(*along("entity"))
    for shift in (0, 28, 56):
        byte = ((bits >> U64(shift)) & U64(255)).astype(np.int64)
        assert chi2_uniform(np.bincount(byte, minlength=256)) < chi2_critical(255)


@pytest.mark.parametrize("word", ["entity", "frame", "stream"])
def test_neighbouring_keys_and_streams_are_uncorrelated(word: str) -> None:
    seed, entity, frame, stream = along(word)
    u = uniform_of(random_bits(seed, entity, frame, stream)) - 0.5
    bound = SIGMAS / math.sqrt(N_STAT)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < bound                    # lag 1 along the word
    other = uniform_of(random_bits(seed, entity, frame, np.asarray(stream) + 1)) - 0.5
    assert abs(np.corrcoef(u, other)[0, 1]) < bound                         # the next stream
    pairs = np.bincount((np.floor(u[:-1:2] * 16 + 8) * 16 + np.floor(u[1::2] * 16 + 8)).astype(np.int64),
                        minlength=256)
    assert chi2_uniform(pairs) < chi2_critical(255)                         # serial pairs


def test_fills_and_orders_refuse_outputs_that_cannot_hold_them() -> None:
    """numba checks no bounds: an output too short would be written past its end, a narrow
    integer dtype would hold wrapped positions. Each is refused before a write."""
    backing = np.zeros(8, np.float64)
    short = backing[:1]
    for fill in (random.fill_uniform, random.fill_normal, random.fill_bits):
        out = short if fill is not random.fill_bits else np.zeros(8, np.uint64)[:1]
        with pytest.raises(ValueError, match=f"{fill.__name__}: an output array has 1 entries, 4 are needed"):
            fill(1, np.arange(4), 0, 0, out)
    with pytest.raises(ValueError, match="fill_integers: an output array has 1 entries, 4 are needed"):
        random.fill_integers(1, np.arange(4), 0, 0, 0, 9, np.zeros(8, np.int64)[:1])
    assert not backing.any()
    with pytest.raises(ValueError, match="argsort_keys: an output array has 2 entries, 3 are needed"):
        random.argsort_keys(np.arange(3, dtype=np.uint64), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="permutation: an output array's dtype cannot hold values up to 299"):
        random.permutation(1, 0, 0, np.arange(300), np.zeros(300, np.int8))
    order = np.zeros(100, np.int8)      # positions up to 99 fit
    random.permutation(1, 0, 0, np.arange(100), order)
    assert sorted(order.tolist()) == list(range(100))

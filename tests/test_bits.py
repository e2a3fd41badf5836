"""kernels/bits.py against its numpy twins in tests/reference.py.

Every kernel runs at sizes 0, 1, 63, 64, 65 and large, on random bit patterns of several
densities (all-zero words exercise the word skipping; all-one words the masks at the ends).
"""

from __future__ import annotations

import numpy as np
import pytest

from ecs.kernels import bits, rows
from tests import reference

SIZES = [0, 1, 63, 64, 65, 100_003]
DENSITIES = [0.0, 0.001, 0.01, 0.5, 1.0]   # 0.001: walks that skip zero words (bits.few_bits)


def nwords_of(nbits: int) -> int:
    return (nbits + 63) >> 6


def random_words(rng: np.random.Generator, nwords: int, density: float) -> np.ndarray:
    """uint64 words whose bits are set with probability `density`."""
    flags = rng.random(nwords * 64) < density
    return reference.pack(flags)


def random_matrix(rng: np.random.Generator, nslots: int, nwords: int, density: float) -> np.ndarray:
    return np.stack([random_words(rng, nwords, density) for _ in range(nslots)]).reshape(nslots, nwords)


def interesting_ranges(rng: np.random.Generator, nbits: int) -> list[tuple[int, int]]:
    """Empty, whole, word-boundary and random [start, stop) ranges within [0, nbits]."""
    ranges = {(0, 0), (0, nbits), (nbits, nbits)}
    for edge in (1, 63, 64, 65, 127, 128):
        if edge <= nbits:
            ranges |= {(0, edge), (edge - 1, edge), (edge, nbits), (nbits - edge, nbits)}
    if nbits:
        ranges.add((nbits // 2, nbits // 2 - 1))  # stop < start: nothing happens
        for _ in range(20):
            start, stop = sorted(int(v) for v in rng.integers(0, nbits + 1, 2))
            ranges.add((start, stop))
    return sorted(r for r in ranges if 0 <= r[0] <= nbits and 0 <= r[1] <= nbits)


@pytest.mark.parametrize("nbits", SIZES)
def test_mark_changed_sets_exactly_one_bit(nbits: int) -> None:
    rng = np.random.default_rng(1)
    for density in DENSITIES:
        words = random_words(rng, nwords_of(nbits) + 1, density)
        for row in sorted({0, nbits - 1, nbits // 2, *rng.integers(0, max(nbits, 1), 5).tolist()}):
            if not 0 <= row < max(nbits, 1):
                continue
            got = words.copy()
            bits.mark_changed(got, row)
            np.testing.assert_array_equal(got, reference.mark_changed(words, row))


@pytest.mark.parametrize("nbits", SIZES)
def test_fill_range_sets_the_range_and_nothing_else(nbits: int) -> None:
    rng = np.random.default_rng(2)
    for density in DENSITIES:
        words = random_words(rng, nwords_of(nbits) + 1, density)
        for start, stop in interesting_ranges(rng, nbits):
            got = words.copy()
            bits.fill_range(got, start, stop)
            np.testing.assert_array_equal(got, reference.fill_range(words, start, stop),
                                          err_msg=f"range [{start}, {stop})")


@pytest.mark.parametrize("nbits", SIZES)
def test_clear_range_clears_the_range_and_nothing_else(nbits: int) -> None:
    rng = np.random.default_rng(3)
    for density in DENSITIES:
        words = random_words(rng, nwords_of(nbits) + 1, density)
        for start, stop in interesting_ranges(rng, nbits):
            got = words.copy()
            bits.clear_range(got, start, stop)
            np.testing.assert_array_equal(got, reference.clear_range(words, start, stop),
                                          err_msg=f"range [{start}, {stop})")


@pytest.mark.parametrize("nbits", SIZES)
def test_count_set_ignores_bits_past_nbits(nbits: int) -> None:
    rng = np.random.default_rng(4)
    for density in DENSITIES:
        words = random_words(rng, nwords_of(nbits) + 1, density)
        assert bits.count_set(words, nbits) == reference.count_set(words, nbits)


@pytest.mark.parametrize("nbits", SIZES)
def test_set_rows_lists_set_bits_ascending(nbits: int) -> None:
    rng = np.random.default_rng(5)
    for density in DENSITIES:
        words = random_words(rng, nwords_of(nbits) + 1, density)
        got = bits.set_rows(words, nbits)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, reference.set_rows(words, nbits))


FLUSHES = ((0, [1], 1), (2, [0, 1, 5], 1), (2, [5, 0], 5), (4, [3], 3))   # (source, targets, reader)


def flush_cases(rng: np.random.Generator, nbits: int):
    """(matrix, source, targets, reader) of every case of FLUSHES at every density."""
    for density in DENSITIES:
        matrix = random_matrix(rng, 6, nwords_of(nbits) + 1, density)
        for source, targets, reader in FLUSHES:
            yield matrix, source, np.array(targets, np.int64), reader


@pytest.mark.parametrize("nbits", SIZES)
def test_flush_take_rows_flushes_then_takes_and_clears_the_readers_rows(nbits: int) -> None:
    for matrix, source, targets, reader in flush_cases(np.random.default_rng(17), nbits):
        want_rows, want_matrix = reference.flush_take_rows(matrix, source, targets, reader, nbits)
        got = matrix.copy()
        got_rows = bits.flush_take_rows(got, source, targets, reader, nbits)
        np.testing.assert_array_equal(got_rows, want_rows)
        np.testing.assert_array_equal(got, want_matrix)


@pytest.mark.parametrize("nbits", SIZES)
def test_move_rows_bits_moves_each_pair_in_order_in_every_slot(nbits: int) -> None:
    rng = np.random.default_rng(9)
    if nbits == 0:
        pairs = [(np.empty(0, np.int64), np.empty(0, np.int64))]
    else:
        k = min(nbits, 300)
        pairs = [
            (np.array([nbits - 1], np.int64), np.array([0], np.int64)),     # swap-remove shape
            (np.array([0], np.int64), np.array([0], np.int64)),             # onto itself
            (rng.integers(0, nbits, k), rng.integers(0, nbits, k)),         # arbitrary, overlapping
            (rng.permutation(nbits)[:k].astype(np.int64), rng.permutation(nbits)[:k].astype(np.int64)),
        ]
    for density in DENSITIES:
        matrix = random_matrix(rng, 4, nwords_of(nbits) + 1, density)
        for nslots in (0, 3, 4):
            for sources, destinations in pairs:
                got = matrix.copy()
                bits.move_rows_bits(got, nslots, sources, destinations)
                np.testing.assert_array_equal(
                    got, reference.move_rows_bits(matrix, nslots, sources, destinations))


@pytest.mark.parametrize("nbits", SIZES)
def test_transfer_rows_bits_moves_a_batch_of_rows_between_tables(nbits: int) -> None:
    rng = np.random.default_rng(11)
    for density in DENSITIES:
        src = random_matrix(rng, 4, nwords_of(nbits), density)
        dst = random_matrix(rng, 5, nwords_of(nbits) + 2, 1.0 - density)
        for src_slots, dst_slots in (([], []), ([0], [4]), ([0, 1, 3], [2, 0, 1])):
            src_slots = np.array(src_slots, np.int64)
            dst_slots = np.array(dst_slots, np.int64)
            count = min(nbits, 70)
            src_rows = rng.permutation(nbits)[:count].astype(np.int64)
            for first in (0, 63, nbits + 1 if nbits else 0):
                dst_rows = np.arange(first, first + count, dtype=np.int64)
                if first == 63:   # rows anywhere, in any order: a restore's return of entities
                    dst_rows = rng.permutation(nbits + 64)[:count].astype(np.int64)
                got = dst.copy()
                bits.transfer_rows_bits(src, src_slots, src_rows, got, dst_slots, dst_rows)
                np.testing.assert_array_equal(
                    got, reference.transfer_rows_bits(src, src_slots, src_rows, dst, dst_slots, dst_rows))


@pytest.mark.parametrize("nbits", SIZES)
def test_clear_rows_bits_clears_the_listed_rows_in_the_listed_slots(nbits: int) -> None:
    rng = np.random.default_rng(13)
    for density in DENSITIES:
        matrix = random_matrix(rng, 4, nwords_of(nbits) + 1, density)
        for slots, count in (([], 5), ([2], 1), ([3, 0, 1], min(nbits, 200))):
            slots = np.array(slots, np.int64)
            rows = rng.integers(0, nbits, count) if nbits else np.empty(0, np.int64)
            got = matrix.copy()
            bits.clear_rows_bits(got, slots, rows)
            np.testing.assert_array_equal(got, reference.clear_rows_bits(matrix, slots, rows))


@pytest.mark.parametrize("nbits", SIZES)
def test_mark_rows_sets_every_listed_row(nbits: int) -> None:
    rng = np.random.default_rng(12)
    for density in DENSITIES:
        words = random_words(rng, nwords_of(nbits) + 1, density)
        for count in (0, 1, min(nbits, 1000)):
            rows = rng.integers(0, nbits, count) if nbits else np.empty(0, np.int64)
            got = words.copy()
            bits.mark_rows(got, rows)
            np.testing.assert_array_equal(got, reference.mark_rows(words, rows))


def test_reference_pack_and_unpack_are_inverse() -> None:
    rng = np.random.default_rng(13)
    words = rng.integers(0, np.iinfo(np.uint64).max, 17, dtype=np.uint64, endpoint=True)
    np.testing.assert_array_equal(reference.pack(reference.unpack(words)), words)
    flags = reference.unpack(np.array([0b1011], np.uint64))
    assert flags[:5].tolist() == [True, True, False, True, False]


@pytest.mark.parametrize("nbits", SIZES)
def test_flush_marks_words_flushes_only_its_word_range(nbits: int) -> None:
    rng = np.random.default_rng(14)
    nwords = nwords_of(nbits) + 1
    for density in DENSITIES:
        matrix = random_matrix(rng, 5, nwords, density)
        for first, stop in ((0, 0), (0, nwords), (0, nwords // 2), (nwords // 2, nwords), (1, 2)):
            if stop > nwords or first > stop:
                continue
            for source, targets in ((0, []), (4, [1, 2]), (2, [0, 1, 3, 4])):
                targets = np.array(targets, np.int64)
                got = matrix.copy()
                bits.flush_marks_words(got, source, targets, first, stop)
                np.testing.assert_array_equal(
                    got, reference.flush_marks_words(matrix, source, targets, first, stop))


@pytest.mark.parametrize("nbits", SIZES)
def test_take_rows_lists_rows_relative_to_start_and_clears_their_words(nbits: int) -> None:
    rng = np.random.default_rng(15)
    for density in DENSITIES:
        base = random_words(rng, nwords_of(nbits) + 2, density)
        for start in sorted({0, 64 * (nbits // 128), 64 * (nbits // 64)}):
            for stop in sorted({start, nbits, min(nbits, start + 1), min(nbits, start + 65)}):
                if stop < start:
                    continue
                words = base.copy()
                flags = reference.unpack(words)
                flags[stop: 64 * ((stop + 63) >> 6)] = False   # the kernel's precondition
                words = reference.pack(flags)
                want_rows, want_words = reference.take_rows(words, start, stop)
                got_words = words.copy()
                got_rows = bits.take_rows(got_words, start, stop)
                np.testing.assert_array_equal(got_rows, want_rows, err_msg=f"[{start}, {stop})")
                np.testing.assert_array_equal(got_words, want_words, err_msg=f"[{start}, {stop})")


@pytest.mark.parametrize("nbits", SIZES)
def test_fill_holes_bits_moves_the_pairs_then_clears_the_tail_in_every_slot_in_use(nbits: int) -> None:
    rng = np.random.default_rng(11)
    removed = rng.permutation(nbits)[: nbits // 3].astype(np.int64)
    holes, sources = np.empty((2, removed.shape[0]), np.int64)
    pairs = rows.tail_fill(removed, nbits, holes, sources)
    new_n = nbits - removed.shape[0]
    for density in DENSITIES:
        matrix = random_matrix(rng, 4, nwords_of(nbits) + 1, density)
        got = matrix.copy()
        bits.fill_holes_bits(got, 3, sources[:pairs], holes[:pairs], new_n, nbits)
        want = reference.move_rows_bits(matrix, 3, sources[:pairs], holes[:pairs])
        for slot in range(3):                                  # slot 3 is not in use: untouched
            flags = reference.unpack(want[slot])
            flags[new_n:nbits] = False                         # the removed tail; past n: kept
            want[slot] = reference.pack(flags)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("nbits", SIZES)
def test_fill_range_slots_fills_the_range_in_the_listed_slots_only(nbits: int) -> None:
    rng = np.random.default_rng(12)
    matrix = random_matrix(rng, 5, nwords_of(nbits) + 1, 0.3)
    for start, stop in interesting_ranges(rng, nbits):
        got = matrix.copy()
        bits.fill_range_slots(got, np.array([3, 0], np.int64), start, stop)
        want = matrix.copy()
        for slot in (3, 0):
            bits.fill_range(want[slot], start, stop)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("nbits", SIZES)
def test_flush_take_words_flushes_and_takes_one_chunk_of_whole_words(nbits: int) -> None:
    nwords = nwords_of(nbits)
    for matrix, source, targets, reader in flush_cases(np.random.default_rng(13), nbits):
        for first, stop_word in ((0, nwords), (nwords // 3, nwords), (nwords // 4, nwords // 2 + 1)):
            want = matrix.copy()
            chunk = slice(first, stop_word)
            flushed = want[source, chunk].copy()
            want[targets, chunk] |= flushed
            want[source, chunk] = 0
            want_rows = np.flatnonzero(reference.unpack(want[reader, chunk])).astype(np.int64)
            want[reader, chunk] = 0
            got = matrix.copy()
            got_rows = bits.flush_take_words(got, source, targets, reader, first * 64, stop_word * 64)
            np.testing.assert_array_equal(got_rows, want_rows)
            np.testing.assert_array_equal(got, want)

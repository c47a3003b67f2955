"""Exact integer arithmetic coder with minimal byte termination (spec/bitstream.md §6).

32-bit Witten-Neal-Cleary coder on Python integers: no floating point anywhere, so every platform
produces and reads the same bytes. The encoder ends with the fewest bits that identify the final
interval when the decoder reads zero bits past the end, and drops trailing zero bytes. Chosen over
constriction's coders because they flush whole 32-bit words: coding wlm2's intervals with constriction
costs +1.7 B per caption (range coder) and +3.7 B (ANS) on the held-out captions
(benchmarks/textcode_bench.py).
"""

from __future__ import annotations

from collections.abc import Sequence

PRECISION = 32
TOP = (1 << PRECISION) - 1
HALF = 1 << (PRECISION - 1)
QUARTER = 1 << (PRECISION - 2)
MAX_TOTAL = 1 << 24  # frequency totals stay well below the smallest renormalised range (2^30)


def pack_bits(bits: list[int]) -> bytes:
    """Bits (MSB first) to bytes, zero-padded to a byte boundary."""
    bits = bits + [0] * (-len(bits) % 8)
    out = bytearray()
    for i in range(0, len(bits), 8):
        b = 0
        for bit in bits[i : i + 8]:
            b = (b << 1) | bit
        out.append(b)
    return bytes(out)


class Encoder:
    """Arithmetic encoder; call ``encode(lo, hi, total)`` per symbol, then ``finish()``."""

    def __init__(self) -> None:
        self.low = 0
        self.high = TOP
        self.pending = 0
        self.bits: list[int] = []

    def _emit(self, bit: int) -> None:
        """Output one bit and resolve pending underflow bits."""
        self.bits.append(bit)
        if self.pending:
            self.bits.extend([bit ^ 1] * self.pending)
            self.pending = 0

    def encode(self, lo: int, hi: int, total: int) -> None:
        """Code a symbol occupying [lo, hi) of a table summing to total."""
        if not 0 <= lo < hi <= total <= MAX_TOTAL:
            raise ValueError(f"bad frequency interval [{lo}, {hi}) of {total}")
        rng = self.high - self.low + 1
        self.high = self.low + rng * hi // total - 1
        self.low = self.low + rng * lo // total
        while True:
            if self.high < HALF:
                self._emit(0)
            elif self.low >= HALF:
                self._emit(1)
                self.low -= HALF
                self.high -= HALF
            elif self.low >= QUARTER and self.high < 3 * QUARTER:
                self.pending += 1
                self.low -= QUARTER
                self.high -= QUARTER
            else:
                break
            self.low <<= 1
            self.high = (self.high << 1) | 1

    def encode_uniform(self, value: int, n: int) -> None:
        """Code value in [0, n) with equal probabilities (n <= MAX_TOTAL)."""
        self.encode(value, value + 1, n)

    def finish(self) -> bytes:
        """Shortest termination: k bits whose zero extension lies in [low, high]; trailing zero bytes dropped."""
        for k in range(1 if self.pending else 0, PRECISION + 1):
            shift = PRECISION - k
            v = -(-self.low >> shift) << shift  # ceil(low / 2^shift) * 2^shift
            if v <= self.high:
                break
        for i in range(k):
            self._emit((v >> (PRECISION - 1 - i)) & 1)
        return pack_bits(self.bits).rstrip(b"\x00")


class Decoder:
    """Arithmetic decoder over bytes; bits past the end read as zero, and reading them is no error: they are
    the zero bytes the encoder dropped (spec §6.4). Callers bound their work by what they decode."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.nbits = len(data) * 8
        self.pos = 0
        self.low = 0
        self.high = TOP
        self.value = 0
        for _ in range(PRECISION):
            self.value = (self.value << 1) | self._bit()

    def _bit(self) -> int:
        """Next input bit, zero past the end."""
        p = self.pos
        self.pos += 1
        if p >= self.nbits:
            return 0
        return (self.data[p >> 3] >> (7 - (p & 7))) & 1

    def target(self, total: int) -> int:
        """The cumulative count in [0, total) that the next symbol's interval must contain."""
        rng = self.high - self.low + 1
        return ((self.value - self.low + 1) * total - 1) // rng

    def consume(self, lo: int, hi: int, total: int) -> None:
        """Remove the decoded symbol's interval [lo, hi) of total."""
        rng = self.high - self.low + 1
        self.high = self.low + rng * hi // total - 1
        self.low = self.low + rng * lo // total
        while True:
            if self.high < HALF:
                pass
            elif self.low >= HALF:
                self.low -= HALF
                self.high -= HALF
                self.value -= HALF
            elif self.low >= QUARTER and self.high < 3 * QUARTER:
                self.low -= QUARTER
                self.high -= QUARTER
                self.value -= QUARTER
            else:
                break
            self.low <<= 1
            self.high = (self.high << 1) | 1
            self.value = (self.value << 1) | self._bit()

    def decode_uniform(self, n: int) -> int:
        """Decode a value coded with encode_uniform(value, n)."""
        v = self.target(n)
        self.consume(v, v + 1, n)
        return v


def find(cum: Sequence[int], t: int) -> int:
    """Index i with cum[i] <= t < cum[i + 1] for a cumulative table cum (cum[0] == 0)."""
    from bisect import bisect_right

    return bisect_right(cum, t) - 1


def encode_cum(enc: Encoder, cum: Sequence[int], k: int) -> None:
    """Code symbol k of a static cumulative table (cum[0] == 0, cum[-1] == total)."""
    enc.encode(cum[k], cum[k + 1], cum[-1])


def decode_cum(dec: Decoder, cum: Sequence[int]) -> int:
    """Decode a symbol coded with encode_cum."""
    k = find(cum, dec.target(cum[-1]))
    dec.consume(cum[k], cum[k + 1], cum[-1])
    return k


class AdaptiveModel:
    """Adaptive frequency model over n symbols: integer counts, +inc per use, halved past a limit."""

    def __init__(self, n: int, inc: int = 24, limit: int = 1 << 13, init: Sequence[int] | None = None) -> None:
        self.freq = list(init) if init is not None else [1] * n
        self.inc = inc
        self.limit = limit

    def _update(self, s: int) -> None:
        """Count symbol s; rescale when the total passes the limit."""
        self.freq[s] += self.inc
        if sum(self.freq) > self.limit:
            self.freq = [(f + 1) >> 1 for f in self.freq]

    def encode(self, enc: Encoder, s: int) -> None:
        """Code symbol s and update."""
        lo = sum(self.freq[:s])
        enc.encode(lo, lo + self.freq[s], sum(self.freq))
        self._update(s)

    def decode(self, dec: Decoder) -> int:
        """Decode a symbol and update."""
        total = sum(self.freq)
        t = dec.target(total)
        acc = 0
        for s, f in enumerate(self.freq):
            if acc + f > t:
                dec.consume(acc, acc + f, total)
                self._update(s)
                return s
            acc += f
        raise AssertionError("unreachable: target below total")

"""Container read/write for .cmc files, exactly as spec/bitstream.md defines (version 1).

Pure Python, no torch, no models: ``read_header`` parses and checks the whole container.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import ids
from .arith import pack_bits
from .errors import (
    FormatError,
    IntegrityError,
    LimitError,
    NotCmcError,
    TruncatedError,
    UnknownSectionError,
    UnsupportedVersionError,
)

MAGIC = 0xCC  # spec §2
VERSION = 1  # highest container version this reader understands
CRC8_MAX_FILE = 256  # spec §5: files of at most 256 bytes end in CRC-8, larger ones in CRC-32
CRC32_MIN_FILE = 260
MAX_UE_BITS = 32  # spec §3: an ue(v) field never has more than 32 leading zero bits
MAX_SEED = 2**32 - 1
MAX_EXTRA_SECTIONS = 16


@dataclass(frozen=True)
class Limits:
    """Reader limits (issue 7); raise them for trusted input only."""

    max_width: int = 16384
    max_height: int = 16384
    max_pixels: int = 16384 * 16384
    max_section_bytes: int = 16 * 1024 * 1024
    max_file_bytes: int = 64 * 1024 * 1024
    max_caption_chars: int = 4096  # spec §6.1 caps it at 4096; a reader may lower it


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Section:
    """One section of a container: its type id, coder id, required flag and payload."""

    type_id: int
    coder_id: int
    payload: bytes
    required: bool = True

    @property
    def name(self) -> str:
        """Registered name of the section type, or ``unknown-<id>``."""
        return ids.SECTION_TYPES.get(self.type_id, f"unknown-{self.type_id}")


@dataclass(frozen=True)
class Header:
    """Everything a container says, without decoding any payload (spec §3)."""

    version: int
    mode: str
    width: int
    height: int
    profile_id: int
    seed: int
    sections: tuple[Section, ...]
    file_size: int
    header_bytes: int
    check: str  # "crc8" or "crc32"
    skipped: tuple[int, ...] = field(default=())  # unknown optional section type ids

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole file, over the original size."""
        return self.file_size * 8 / (self.width * self.height)

    @property
    def overhead_bytes(self) -> int:
        """Bytes that are not section payload: header, padding and check."""
        return self.file_size - sum(len(s.payload) for s in self.sections)

    def section(self, name: str) -> Section | None:
        """The section with a registered type name, or None."""
        for s in self.sections:
            if s.name == name:
                return s
        return None

    @property
    def profile_name(self) -> str:
        """Registered name of the decoder profile id."""
        return ids.PROFILE_NAMES.get(self.profile_id, f"unknown-{self.profile_id}")


# --- CRC (spec §5) ---------------------------------------------------------------------------------

def _crc8_table(poly: int = 0x2F) -> list[int]:
    """Table of CRC-8/AUTOSAR (poly 0x2F, MSB first)."""
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ poly) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_CRC8 = _crc8_table()


def crc8(data: bytes) -> int:
    """CRC-8/AUTOSAR: init 0xFF, xorout 0xFF; check("123456789") == 0xDF."""
    c = 0xFF
    for b in data:
        c = _CRC8[c ^ b]
    return c ^ 0xFF


# --- bit I/O (spec §3) -----------------------------------------------------------------------------

class BitWriter:
    """MSB-first bit writer with u(n) and ue(v) fields."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, value: int, n: int) -> None:
        """Write an n-bit unsigned field."""
        if not 0 <= value < (1 << n):
            raise ValueError(f"value {value} does not fit in {n} bits")
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def ue(self, value: int) -> None:
        """Write an Exp-Golomb ue(v) field."""
        if value < 0:
            raise ValueError("ue(v) takes non-negative values")
        v = value + 1
        n = v.bit_length() - 1
        self.bits.extend([0] * n)
        self.u(v, n + 1)

    def to_bytes(self) -> bytes:
        """The bits, zero-padded to a byte boundary."""
        return pack_bits(self.bits)


class BitReader:
    """MSB-first bit reader over a byte string; running out raises TruncatedError."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start * 8
        self.end = (len(data) if end is None else end) * 8

    def bit(self) -> int:
        """Read one bit."""
        if self.pos >= self.end:
            raise TruncatedError("truncated .cmc header: expected more header bits, found end of data")
        b = (self.data[self.pos >> 3] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return b

    def u(self, n: int) -> int:
        """Read an n-bit unsigned field."""
        v = 0
        for _ in range(n):
            v = (v << 1) | self.bit()
        return v

    def ue(self, what: str) -> int:
        """Read an Exp-Golomb ue(v) field (at most MAX_UE_BITS leading zeros)."""
        n = 0
        while self.bit() == 0:
            n += 1
            if n > MAX_UE_BITS:
                raise FormatError(f"corrupt .cmc header: {what} field longer than {MAX_UE_BITS} bits")
        return (1 << n) - 1 + self.u(n)

    def byte_align(self) -> int:
        """Skip zero padding to the next byte boundary; returns the byte offset."""
        while self.pos & 7:
            if self.bit():
                raise FormatError("corrupt .cmc header: padding bits must be zero, found a one")
        return self.pos >> 3


# --- write ------------------------------------------------------------------------------------------

def pack(
    *,
    mode: str,
    width: int,
    height: int,
    profile_id: int,
    seed: int = 0,
    sections: Sequence[Section],
    extra: Sequence[Section] = (),
) -> bytes:
    """Build a v1 container: the mode's implied sections in spec order, then optional extra ones."""
    if mode not in ids.MODE_IDS:
        raise ValueError(f"unknown mode {mode!r}")
    implied = ids.MODE_SECTIONS[mode]
    if tuple(s.type_id for s in sections) != implied:
        raise ValueError(f"mode {mode} needs sections {implied}, got {[s.type_id for s in sections]}")
    if not (1 <= width <= 65536 and 1 <= height <= 65536):
        raise ValueError(f"dimensions {width}x{height} outside 1..65536")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} outside 0..{MAX_SEED}")
    w = BitWriter()
    w.u(MAGIC, 8)
    w.ue(VERSION - 1)
    w.u(ids.MODE_IDS[mode], 2)
    large = width > 4096 or height > 4096
    w.u(int(large), 1)
    w.u(width - 1, 16 if large else 12)
    w.u(height - 1, 16 if large else 12)
    w.ue(profile_id)
    params = seed != 0 or any(s.coder_id != 0 for s in sections)
    w.u(int(params), 1)
    if params:
        w.ue(seed)
        for s in sections:
            w.ue(s.coder_id)
    w.u(int(bool(extra)), 1)
    if extra:
        if len(extra) > MAX_EXTRA_SECTIONS:
            raise ValueError("too many extra sections")
        w.ue(len(extra) - 1)
        for s in extra:
            if s.type_id in implied:
                raise ValueError(f"extra section repeats implied type {s.type_id}")
            w.ue(s.type_id)
            w.u(int(s.required), 1)
            w.ue(s.coder_id)
    everything = [*sections, *extra]
    for s in everything[:-1]:
        w.ue(len(s.payload))
    return seal(w.to_bytes() + b"".join(s.payload for s in everything))


def seal(body: bytes) -> bytes:
    """Header and payloads followed by the check sized for the whole file (spec §5)."""
    if len(body) + 1 <= CRC8_MAX_FILE:
        return body + bytes([crc8(body)])
    return body + zlib.crc32(body).to_bytes(4, "big")


# --- read -------------------------------------------------------------------------------------------

def _check(data: bytes) -> tuple[bytes, str]:
    """Verify the trailing check (spec §5); returns the body and the check name."""
    n = len(data)
    if n <= CRC8_MAX_FILE:
        body, want, got = data[:-1], data[-1], crc8(data[:-1])
        kind, fmt = "crc8", "0x{:02x}"
    elif n >= CRC32_MIN_FILE:
        body, want, got = data[:-4], int.from_bytes(data[-4:], "big"), zlib.crc32(data[:-4])
        kind, fmt = "crc32", "0x{:08x}"
    else:
        raise TruncatedError(f"corrupt or truncated .cmc file: no valid length is {n} bytes (257..259)")
    if want != got:
        raise IntegrityError(
            f"corrupt or truncated .cmc file: {kind} expected {fmt.format(got)}, found {fmt.format(want)}"
        )
    return body, kind


def read_header(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Header:
    """Parse and check a whole container (magic, version, fields, sections, check); no model is loaded."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"read_header takes bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise TruncatedError("empty input: expected a .cmc file, found 0 bytes")
    if data[0] != MAGIC:
        raise NotCmcError(
            f"not a .cmc file: expected magic byte 0x{MAGIC:02x}, found 0x{data[0]:02x}"
            + _sniff(data)
        )
    if len(data) > limits.max_file_bytes:
        raise LimitError(f".cmc file of {len(data)} bytes exceeds the limit of {limits.max_file_bytes}")
    if len(data) < 3:
        raise TruncatedError(f"truncated .cmc file: expected at least 3 bytes, found {len(data)}")
    # Version first, so that a newer file gets a version error rather than a CRC error (spec §2).
    r = BitReader(data, 1, len(data))
    version = r.ue("version") + 1
    if version > VERSION:
        raise UnsupportedVersionError(
            f"unsupported .cmc version: this reader handles up to {VERSION}, found {version}"
        )
    body, check = _check(data)
    r = BitReader(body, 1)
    r.ue("version")
    mode = ids.MODE_NAMES[r.u(2)]
    large = r.u(1)
    bits = 16 if large else 12
    width, height = r.u(bits) + 1, r.u(bits) + 1
    if large and width <= 4096 and height <= 4096:
        raise FormatError("corrupt .cmc header: large-size flag set for dimensions that fit in 12 bits")
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise LimitError(
            f"image {width}x{height} exceeds the limits ({limits.max_width}x{limits.max_height}, "
            f"{limits.max_pixels} pixels)"
        )
    profile_id = r.ue("profile id")
    if profile_id not in ids.PROFILE_NAMES:
        raise UnknownSectionError(
            f"unknown decoder profile id {profile_id}: expected one of {sorted(ids.PROFILE_NAMES)}"
        )
    implied = ids.MODE_SECTIONS[mode]
    seed, coders = 0, [0] * len(implied)
    if r.u(1):
        seed = r.ue("seed")
        if seed > MAX_SEED:
            raise FormatError(f"corrupt .cmc header: seed {seed} above {MAX_SEED}")
        coders = [r.ue("coder id") for _ in implied]
    layout: list[tuple[int, int, bool]] = [(t, c, True) for t, c in zip(implied, coders)]
    if r.u(1):
        n_extra = r.ue("section count") + 1
        if n_extra > MAX_EXTRA_SECTIONS:
            raise FormatError(f"corrupt .cmc header: {n_extra} extra sections, at most {MAX_EXTRA_SECTIONS}")
        for _ in range(n_extra):
            t = r.ue("section type")
            req = bool(r.u(1))
            c = r.ue("coder id")
            if any(t == lt for lt, _, _ in layout):
                raise FormatError(f"corrupt .cmc header: section type {t} appears twice")
            layout.append((t, c, req))
    lengths = []
    for t, _, _ in layout[:-1]:
        n = r.ue("section length")
        if n > limits.max_section_bytes:
            raise LimitError(
                f"section {ids.SECTION_TYPES.get(t, t)} of {n} bytes exceeds the limit of "
                f"{limits.max_section_bytes}"
            )
        lengths.append(n)
    pos = r.byte_align()
    header_bytes = pos
    remaining = len(body) - pos - sum(lengths)
    if remaining < 0:
        raise TruncatedError(
            f"truncated .cmc file: sections need {sum(lengths)} bytes after the header, found {len(body) - pos}"
        )
    if remaining > limits.max_section_bytes:
        raise LimitError(f"last section of {remaining} bytes exceeds the limit of {limits.max_section_bytes}")
    lengths.append(remaining)
    sections, skipped = [], []
    for (t, c, req), n in zip(layout, lengths):
        payload = body[pos : pos + n]
        pos += n
        if t not in ids.SECTION_TYPES:
            if req:
                raise UnknownSectionError(
                    f"unknown required section type {t} (coder {c}): this reader knows "
                    f"{', '.join(f'{k}={v}' for k, v in ids.SECTION_TYPES.items())}"
                )
            skipped.append(t)
            continue
        name = ids.SECTION_TYPES[t]
        known = ids.SECTION_CODERS[name]
        if c not in known:
            raise UnknownSectionError(
                f"unknown coder id {c} for section {name}: this reader knows "
                f"{', '.join(f'{k}={v}' for k, v in known.items())}"
            )
        sections.append(Section(t, c, payload, req))
    return Header(
        version=version,
        mode=mode,
        width=width,
        height=height,
        profile_id=profile_id,
        seed=seed,
        sections=tuple(sections),
        file_size=len(data),
        header_bytes=header_bytes,
        check=check,
        skipped=tuple(skipped),
    )


_SIGNATURES = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"RIFF": "a RIFF (WebP?) file",
    b"\x00\x00\x00": "an ISO-BMFF (AVIF/HEIF?) file",
}


def _sniff(data: bytes) -> str:
    """A hint naming a well-known file type, for error messages."""
    for sig, what in _SIGNATURES.items():
        if data.startswith(sig):
            return f" ({what})"
    return ""

"""Container read/write for .cmc files, exactly as spec/bitstream.md defines; no torch, no models.

Byte layout (spec §1)::

    magic 0xCC (§2) | version_minus_1 ue(v) (§2) | the version's header fields | zero padding to a byte
    | section payloads (§4) | check: CRC-8 when the file has at most 256 bytes, else CRC-32 (§5)

Version 1 header fields (§3, bit-packed, MSB first)::

    mode u(2) | large_size u(1) | width-1, height-1 u(12) each (u(16) if large_size)
    | profile_id ue(v) (§4.4) | params_present u(1) [ seed ue(v), coder_id ue(v) per implied section (§4.2) ]
    | extra_present u(1) [ count-1 ue(v), per extra section: type ue(v), required u(1), coder ue(v) (§4.5) ]
    | length ue(v) of every section but the last (§4.3)

The magic byte and the version come first and are read before the check, so a newer file is reported as a
newer version, not as corrupt (§2). Everything after the version field belongs to that version: ``FORMATS``
maps each version to its reader and writer, so a version 2 is one added row. ``read_header`` runs the steps
in spec order: magic, version, check, the version's fields, sections.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from . import ids, profiles
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
from .limits import DEFAULT_LIMITS, Limits  # re-exported: callers import them from here too

MAGIC = 0xCC  # spec §2: not a valid first byte of UTF-8 text or of the common image formats
# how the format is named where files are listed and served (Pillow's format registry, file dialogs)
FORMAT_NAME = "CMC"
EXTENSION = ".cmc"
MIME = "image/x-cmc"  # no registered media type exists; x- as RFC 6648's predecessors advised for private types
CRC8_MAX_FILE = 256  # spec §5: files of at most 256 bytes end in CRC-8, larger ones in CRC-32
CRC32_MIN_FILE = 260  # spec §5: a 257-byte body gets a 4-byte check, so 257..259-byte files cannot exist
MAX_UE_BITS = 32  # spec §3: an ue(v) field never has more than 32 leading zero bits
MAX_SEED = 2**32 - 1  # spec §3 field 9: the seed of a 32-bit generator
MAX_EXTRA_SECTIONS = 16  # spec §3 field 12: bounds the header a reader parses
SMALL_SIDE_BITS, LARGE_SIDE_BITS = 12, 16  # spec §3 fields 5-6: width-1 and height-1, by large_size
SMALL_SIDE_MAX = 1 << SMALL_SIDE_BITS  # 4096: sides up to this take the 12-bit fields (the 6-byte design point)
LARGE_SIDE_MAX = 1 << LARGE_SIDE_BITS  # 65536: the largest side a version-1 file can record
MIN_FILE = 3  # magic, one header byte, a CRC-8: the smallest file a version-1 writer can produce


def has_magic(prefix: bytes) -> bool:
    """True when the bytes start as a .cmc file does: the magic byte (spec §2), which no UTF-8 text, PNG, JPEG,
    GIF, RIFF, ISO-BMFF or JPEG 2000 file starts with."""
    return prefix[:1] == bytes([MAGIC])




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
        return profiles.name_of(self.profile_id)


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


# --- one container version: its fields after the version number -------------------------------------

@dataclass(frozen=True)
class _Fields:
    """What a version's header says (everything but magic and version), as the writer gets it and the
    reader returns it. layout: (type id, coder id, required) of every section in file order."""

    mode: str
    width: int
    height: int
    profile_id: int
    seed: int
    layout: tuple[tuple[int, int, bool], ...]
    lengths: tuple[int, ...]  # payload bytes of every section but the last (spec §4.3)


@dataclass(frozen=True)
class _Format:
    """A row of FORMATS: how one version's fields are written and read."""

    write: Callable[[BitWriter, _Fields], None]
    read: Callable[[BitReader, Limits], _Fields]


def _write_v1(w: BitWriter, f: _Fields) -> None:
    """Version-1 header fields 3-14 (spec §3)."""
    implied = ids.MODE_SECTIONS[f.mode]
    main, extra = f.layout[: len(implied)], f.layout[len(implied):]
    w.u(ids.MODE_IDS[f.mode], 2)
    large = f.width > SMALL_SIDE_MAX or f.height > SMALL_SIDE_MAX  # one canonical header per size (§3)
    bits = LARGE_SIDE_BITS if large else SMALL_SIDE_BITS
    w.u(int(large), 1)
    w.u(f.width - 1, bits)
    w.u(f.height - 1, bits)
    w.ue(f.profile_id)
    params = f.seed != 0 or any(c != 0 for _, c, _ in main)
    w.u(int(params), 1)
    if params:
        w.ue(f.seed)
        for _, c, _ in main:
            w.ue(c)
    w.u(int(bool(extra)), 1)
    if extra:
        w.ue(len(extra) - 1)
        for t, c, req in extra:
            w.ue(t)
            w.u(int(req), 1)
            w.ue(c)
    for n in f.lengths:
        w.ue(n)


def _read_v1(r: BitReader, limits: Limits) -> _Fields:
    """Version-1 header fields 3-14 (spec §3), each checked as soon as it is read."""
    mode = ids.MODE_NAMES[r.u(2)]
    width, height = _read_size(r, limits)
    profile_id = _read_profile(r)
    implied = ids.MODE_SECTIONS[mode]
    seed, coders = _read_params(r, len(implied))
    layout = [(t, c, True) for t, c in zip(implied, coders, strict=True)]
    layout += _read_extra(r, implied)
    lengths = _read_lengths(r, layout, limits)
    return _Fields(mode, width, height, profile_id, seed, tuple(layout), lengths)


def _read_size(r: BitReader, limits: Limits) -> tuple[int, int]:
    """Fields 4-6: the large-size flag and the dimensions, canonical (§3) and within the limits."""
    large = r.u(1)
    bits = LARGE_SIDE_BITS if large else SMALL_SIDE_BITS
    width, height = r.u(bits) + 1, r.u(bits) + 1
    if large and width <= SMALL_SIDE_MAX and height <= SMALL_SIDE_MAX:
        raise FormatError(f"corrupt .cmc header: large-size flag set for dimensions that fit in "
                          f"{SMALL_SIDE_BITS} bits")
    if width > limits.max_width or height > limits.max_height or width * height > limits.max_pixels:
        raise LimitError(
            f"image {width}x{height} exceeds the limits ({limits.max_width}x{limits.max_height}, "
            f"{limits.max_pixels} pixels)"
        )
    return width, height


def _read_profile(r: BitReader) -> int:
    """Field 7: a registered decoder profile id or a private one (§4.4, §4.4.1: a reader never substitutes
    another; whether a private id's definition is at hand is the decoder's question, not the reader's)."""
    profile_id = r.ue("profile id")
    if profile_id not in profiles.PROFILES_BY_ID and not profiles.is_private(profile_id):
        raise UnknownSectionError(
            f"unknown decoder profile id {profile_id}: expected one of {sorted(profiles.PROFILES_BY_ID)} or a "
            f"private id ({profiles.PRIVATE_BIT} and up, §4.4.1)"
        )
    return profile_id


def _read_params(r: BitReader, n_implied: int) -> tuple[int, list[int]]:
    """Fields 8-10: seed and the implied sections' coder ids (0 and coder 0 when absent)."""
    if not r.u(1):
        return 0, [0] * n_implied
    seed = r.ue("seed")
    if seed > MAX_SEED:
        raise FormatError(f"corrupt .cmc header: seed {seed} above {MAX_SEED}")
    return seed, [r.ue("coder id") for _ in range(n_implied)]


def _read_extra(r: BitReader, implied: tuple[int, ...]) -> list[tuple[int, int, bool]]:
    """Fields 11-13: extra sections (§4.5), no type twice."""
    if not r.u(1):
        return []
    n_extra = r.ue("section count") + 1
    if n_extra > MAX_EXTRA_SECTIONS:
        raise FormatError(f"corrupt .cmc header: {n_extra} extra sections, at most {MAX_EXTRA_SECTIONS}")
    seen, out = set(implied), []
    for _ in range(n_extra):
        t = r.ue("section type")
        req = bool(r.u(1))
        c = r.ue("coder id")
        if t in seen:
            raise FormatError(f"corrupt .cmc header: section type {t} appears twice")
        seen.add(t)
        out.append((t, c, req))
    return out


def _read_lengths(r: BitReader, layout: list[tuple[int, int, bool]], limits: Limits) -> tuple[int, ...]:
    """Field 14: the length of every section but the last, each within the section limit."""
    lengths = []
    for t, _, _ in layout[:-1]:
        n = r.ue("section length")
        if n > limits.max_section_bytes:
            raise LimitError(
                f"section {ids.SECTION_TYPES.get(t, t)} of {n} bytes exceeds the limit of "
                f"{limits.max_section_bytes}"
            )
        lengths.append(n)
    return tuple(lengths)


VERSION = 1  # what pack writes: the newest version in FORMATS
FORMATS: dict[int, _Format] = {1: _Format(write=_write_v1, read=_read_v1)}
if max(FORMATS) != VERSION:
    raise RuntimeError("bitstream.VERSION must be the newest row of FORMATS")


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
    """Build a container of the current VERSION: the mode's implied sections in spec order, then
    optional extra ones."""
    if mode not in ids.MODE_SECTIONS:
        raise ValueError(f"unknown mode {mode!r}")
    implied = ids.MODE_SECTIONS[mode]
    if tuple(s.type_id for s in sections) != implied:
        raise ValueError(f"mode {mode} needs sections {implied}, got {[s.type_id for s in sections]}")
    if not (1 <= width <= LARGE_SIDE_MAX and 1 <= height <= LARGE_SIDE_MAX):
        raise ValueError(f"dimensions {width}x{height} outside 1..{LARGE_SIDE_MAX}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed} outside 0..{MAX_SEED}")
    if len(extra) > MAX_EXTRA_SECTIONS:
        raise ValueError(f"{len(extra)} extra sections, at most {MAX_EXTRA_SECTIONS}")
    for s in extra:
        if s.type_id in implied:
            raise ValueError(f"extra section repeats implied type {s.type_id}")
        if any(s.type_id in own for _, own in ids.SECTION_MODES.values()):
            raise ValueError(f"section type {s.type_id} belongs to a mode: pack it as that mode's section")
    # a mode of SECTION_MODES: its header mode, its own sections first among the required extra ones (§4.2)
    header_mode, _ = ids.SECTION_MODES.get(mode, (mode, ()))
    n_base = len(ids.MODE_SECTIONS[header_mode])
    sections, extra = sections[:n_base], [replace(s, required=True) for s in sections[n_base:]] + list(extra)
    everything = [*sections, *extra]
    fields = _Fields(header_mode, width, height, profile_id, seed,
                     tuple((s.type_id, s.coder_id, s.required) for s in everything),
                     tuple(len(s.payload) for s in everything[:-1]))
    w = BitWriter()
    w.u(MAGIC, 8)
    w.ue(VERSION - 1)
    FORMATS[VERSION].write(w, fields)
    return seal(w.to_bytes() + b"".join(s.payload for s in everything))


def seal(body: bytes) -> bytes:
    """Header and payloads followed by the check sized for the whole file (spec §5)."""
    if len(body) + 1 <= CRC8_MAX_FILE:
        return body + bytes([crc8(body)])
    return body + zlib.crc32(body).to_bytes(4, "big")


# --- read -------------------------------------------------------------------------------------------

def read_header(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Header:
    """Parse and check a whole container (magic, version, check, fields, sections); no model is loaded."""
    data = _read_magic(data, limits)
    version = _read_version(data)
    body, check = _check(data)
    r = BitReader(body, 1)
    r.ue("version")
    f = FORMATS[version].read(r, limits)
    header_bytes = r.byte_align()
    sections, skipped = _split_sections(body, header_bytes, f.layout, f.lengths, limits)
    mode = _section_mode(f)
    return Header(version=version, mode=mode, width=f.width, height=f.height, profile_id=f.profile_id,
                  seed=f.seed, sections=sections, file_size=len(data), header_bytes=header_bytes, check=check,
                  skipped=skipped)


def _section_mode(f: _Fields) -> str:
    """The file's mode: the header's, or the mode of SECTION_MODES whose own sections follow the implied ones
    (§4.2). Their sections anywhere else, optional, or under another header mode are refused."""
    n_base = len(ids.MODE_SECTIONS[f.mode])
    for name, (header_mode, own) in ids.SECTION_MODES.items():
        where = [i for i, (t, _, _) in enumerate(f.layout) if t in own]
        if not where:
            continue
        if f.mode != header_mode:
            raise FormatError(f"corrupt .cmc file: a {ids.SECTION_TYPES[own[0]]} section in a {f.mode}-mode file "
                              f"(expected it only in {header_mode} mode)")
        placed = tuple(t for t, _, _ in f.layout[n_base:n_base + len(own)])
        if placed != own or not all(f.layout[i][2] for i in where) or len(where) != len(own):
            raise FormatError(f"corrupt .cmc file: {name} mode needs required section(s) {list(own)} first among "
                              f"the extra sections, found types {[t for t, _, _ in f.layout[n_base:]]}")
        return name
    return f.mode


def _read_magic(data: bytes, limits: Limits) -> bytes:
    """The input as bytes, if it starts with the magic byte (§2) and its size is plausible."""
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
    if len(data) < MIN_FILE:
        raise TruncatedError(f"truncated .cmc file: expected at least {MIN_FILE} bytes, found {len(data)}")
    return data


def _read_version(data: bytes) -> int:
    """The version field, read before the check so that a newer file is named as such (§2)."""
    version = BitReader(data, 1).ue("version") + 1
    if version not in FORMATS:
        raise UnsupportedVersionError(
            f"unsupported .cmc version: this reader handles up to {max(FORMATS)}, found {version}"
        )
    return version


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
        raise TruncatedError(f"corrupt or truncated .cmc file: no valid length is {n} bytes "
                             f"({CRC8_MAX_FILE + 1}..{CRC32_MIN_FILE - 1})")
    if want != got:
        raise IntegrityError(
            f"corrupt or truncated .cmc file: {kind} expected {fmt.format(got)}, found {fmt.format(want)}"
        )
    return body, kind


def _split_sections(body: bytes, pos: int, layout: tuple[tuple[int, int, bool], ...], lengths: tuple[int, ...],
                    limits: Limits) -> tuple[tuple[Section, ...], tuple[int, ...]]:
    """Payloads after the header (§4.3: the last one runs to the check): known sections with known
    coders, unknown optional types skipped (§4.5), anything else refused."""
    remaining = len(body) - pos - sum(lengths)
    if remaining < 0:
        raise TruncatedError(
            f"truncated .cmc file: sections need {sum(lengths)} bytes after the header, found {len(body) - pos}"
        )
    if remaining > limits.max_section_bytes:
        raise LimitError(f"last section of {remaining} bytes exceeds the limit of {limits.max_section_bytes}")
    sections, skipped = [], []
    for (t, c, req), n in zip(layout, (*lengths, remaining), strict=True):
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
    return tuple(sections), tuple(skipped)


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

"""Container: spec rules, golden files forever, truncation and corruption give clear errors."""

from __future__ import annotations

import hashlib
import json
import random
import zlib

import pytest
from conftest import GOLDEN
from hypothesis import given, settings
from hypothesis import strategies as st

from cmcodec import CmcodecError
from cmcodec.core import bitstream, textcode
from cmcodec.core.bitstream import Section, crc8, pack, read_header
from cmcodec.core.errors import (
    FormatError,
    IntegrityError,
    LimitError,
    NotCmcError,
    TruncatedError,
    UnknownSectionError,
    UnsupportedVersionError,
)

EXPECTED = json.loads((GOLDEN / "golden.json").read_text())
VALID = sorted(EXPECTED["valid"])
ALL_GOLDEN = sorted(p.name for p in GOLDEN.glob("*.cmc"))


def test_crc8_check_value() -> None:
    assert crc8(b"123456789") == 0xDF  # CRC-8/AUTOSAR (spec §5)


@pytest.mark.parametrize("w,h", [(1, 1), (768, 512), (512, 768), (4096, 4096), (4096, 1)])
def test_text_overhead_at_most_6_bytes(w: int, h: int) -> None:
    payload = textcode.caption_section("A red house with white windows.", "wlm1").payload
    data = pack(mode="text", width=w, height=h, profile_id=0, sections=[Section(0, 0, payload)])
    hd = read_header(data)
    assert hd.overhead_bytes <= 6
    assert (hd.width, hd.height, hd.mode) == (w, h, "text")


def test_large_dimensions_use_16_bit_fields() -> None:
    data = pack(mode="text", width=4097, height=3, profile_id=0, sections=[Section(0, 0, b"")])
    assert (read_header(data).width, read_header(data).height) == (4097, 3)


@st.composite
def containers(draw: st.DrawFn) -> dict:
    mode = draw(st.sampled_from(["text", "pixel", "image", "full"]))
    types = bitstream.ids.MODE_SECTIONS[mode]
    coders = {0: [0, 1, 2], 1: [0], 2: [0, 1, 2, 3]}
    sections = [Section(t, draw(st.sampled_from(coders[t])), draw(st.binary(max_size=300))) for t in types]
    extra = draw(st.lists(st.tuples(st.integers(4, 40), st.booleans(), st.integers(0, 5), st.binary(max_size=20)),
                          max_size=3, unique_by=lambda x: x[0]))
    return {"mode": mode, "width": draw(st.integers(1, 65536)), "height": draw(st.integers(1, 65536)),
            "profile_id": draw(st.sampled_from([0, 1, 2, 3, 4])), "seed": draw(st.integers(0, 2**32 - 1)),
            "sections": sections, "extra": [Section(t, c, p, False) for t, _, c, p in extra]}


@given(containers())
@settings(max_examples=300, deadline=None)
def test_pack_read_roundtrip(c: dict) -> None:
    data = pack(**c)
    h = read_header(data, bitstream.Limits(max_width=65536, max_height=65536, max_pixels=2**32))
    assert (h.mode, h.width, h.height, h.profile_id, h.seed) == (c["mode"], c["width"], c["height"],
                                                                  c["profile_id"], c["seed"])
    assert [(s.type_id, s.coder_id, s.payload) for s in h.sections] == \
        [(s.type_id, s.coder_id, s.payload) for s in c["sections"]]
    assert h.skipped == tuple(s.type_id for s in c["extra"])
    assert h.check == ("crc8" if len(data) <= 256 else "crc32")


@pytest.mark.parametrize("name", VALID)
def test_golden_fields(name: str) -> None:
    data = (GOLDEN / name).read_bytes()
    want = EXPECTED["valid"][name]
    assert hashlib.sha256(data).hexdigest() == want["sha256"]
    h = read_header(data)
    for key in ("version", "mode", "width", "height", "profile_id", "seed", "file_size", "check", "header_bytes"):
        assert getattr(h, key) == want[key], key
    assert list(h.skipped) == want["skipped"]
    assert [{"type": s.type_id, "coder": s.coder_id, "required": s.required, "bytes": len(s.payload),
             "sha256": hashlib.sha256(s.payload).hexdigest()} for s in h.sections] == want["sections"]
    cap = h.section("caption")
    assert (textcode.decode(cap.payload, cap.coder_id) if cap else None) == want["caption"]


def test_golden_invalid_required_section() -> None:
    with pytest.raises(UnknownSectionError, match="unknown required section type 9"):
        read_header((GOLDEN / "invalid_extra_required.cmc").read_bytes())


def _full_parse(data: bytes) -> None:
    """Header plus every payload decoder that needs no neural model."""
    from cmcodec import codec
    from cmcodec.core.profiles import get_profile

    h = read_header(data)
    cap = h.section("caption")
    if cap is not None:
        textcode.decode(cap.payload, cap.coder_id)
    prof = get_profile(h.profile_id)
    if h.mode != "text":
        codec.decode_guidance(h, prof)


@pytest.mark.parametrize("name", ALL_GOLDEN)
def test_every_truncation_is_a_clear_error(name: str) -> None:
    """CRC-8 lets ~1/256 truncations through; the payload decoders must then reject them."""
    data = (GOLDEN / name).read_bytes()
    for n in range(len(data)):
        with pytest.raises(FormatError):
            _full_parse(data[:n])


@pytest.mark.parametrize("name", VALID)
def test_random_corruption_never_escapes_as_another_exception(name: str) -> None:
    data = (GOLDEN / name).read_bytes()
    rng = random.Random(name)
    caught = 0
    for _ in range(300):
        b = bytearray(data)
        for _ in range(rng.choice([1, 1, 2, 5])):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        try:
            _full_parse(bytes(b))
        except CmcodecError:
            caught += 1
    assert caught >= 250  # CRC-8 lets about 1/256 through; those must still fail cleanly or parse


def test_corrupt_payload_with_valid_crc_is_a_clear_error() -> None:
    """Corruption that a recomputed CRC hides must still end in CmcodecError, never a crash."""
    rng = random.Random(5)
    for name in VALID:
        data = (GOLDEN / name).read_bytes()
        for _ in range(60):
            body = bytearray(data[:-1] if len(data) <= 256 else data[:-4])
            i = rng.randrange(1, len(body))
            body[i] = rng.randrange(256)
            fixed = bytes(body) + (bytes([crc8(bytes(body))]) if len(body) + 1 <= 256
                                   else zlib.crc32(bytes(body)).to_bytes(4, "big"))
            try:
                _full_parse(fixed)
            except CmcodecError:
                pass


def test_errors_name_what_was_expected_and_found() -> None:
    with pytest.raises(NotCmcError, match=r"expected magic byte 0xcc, found 0x89 \(a PNG image\)"):
        read_header(b"\x89PNG\r\n\x1a\n....")
    with pytest.raises(TruncatedError, match="found 0 bytes"):
        read_header(b"")
    good = (GOLDEN / "text_wlm1.cmc").read_bytes()
    with pytest.raises(IntegrityError, match="crc8 expected"):
        read_header(good[:-1] + bytes([good[-1] ^ 1]))


def test_newer_version_is_reported_as_such() -> None:
    w = bitstream.BitWriter()
    w.u(0xCC, 8)
    w.ue(1)  # version 2
    w.u(0, 7)
    with pytest.raises(UnsupportedVersionError, match="handles up to 1, found 2"):
        read_header(w.to_bytes() + b"\x00\x00\x00")


def test_a_new_version_is_one_row_of_the_format_table(monkeypatch: pytest.MonkeyPatch) -> None:
    # spec §2: everything after the version field belongs to the version; FORMATS drives reader and writer
    seen = []

    def read_v2(r: bitstream.BitReader, limits: bitstream.Limits):
        seen.append("read")
        return bitstream._read_v1(r, limits)

    monkeypatch.setitem(bitstream.FORMATS, 2, bitstream._Format(write=bitstream._write_v1, read=read_v2))
    monkeypatch.setattr(bitstream, "VERSION", 2)
    data = pack(mode="pixel", width=640, height=480, profile_id=1, seed=5,
                sections=[Section(1, 0, b"map"), Section(0, 2, b"cap")])
    assert data[1] >> 7 == 0  # version_minus_1 = 1 is ue(v) 010
    h = read_header(data)
    assert (h.version, h.mode, h.seed, seen) == (2, "pixel", 5, ["read"])
    assert [(s.coder_id, s.payload) for s in h.sections] == [(0, b"map"), (2, b"cap")]
    monkeypatch.delitem(bitstream.FORMATS, 2)
    with pytest.raises(UnsupportedVersionError, match="found 2"):
        read_header(data)


def test_unknown_profile_and_coder_rejected() -> None:
    data = pack(mode="text", width=8, height=8, profile_id=99, sections=[Section(0, 0, b"")])
    with pytest.raises(UnknownSectionError, match="unknown decoder profile id 99"):
        read_header(data)
    data = pack(mode="text", width=8, height=8, profile_id=0, sections=[Section(0, 9, b"")])
    with pytest.raises(UnknownSectionError, match="unknown coder id 9 for section caption"):
        read_header(data)


def test_limits() -> None:
    data = pack(mode="text", width=20000, height=20000, profile_id=0, sections=[Section(0, 0, b"")])
    with pytest.raises(LimitError, match="exceeds the limits"):
        read_header(data)
    assert read_header(data, bitstream.Limits(max_width=20000, max_height=20000, max_pixels=4 * 10**8)).width == 20000


def test_nonzero_padding_rejected() -> None:
    data = bytearray(pack(mode="text", width=768, height=512, profile_id=0, sections=[Section(0, 0, b"")]))
    data[4] |= 1  # 39 header bits: bit 40 is padding
    body = bytes(data[:-1])
    with pytest.raises(FormatError, match="padding"):
        read_header(body + bytes([crc8(body)]))

"""Caption coding: exact round trips, golden vectors forever, corruption gives CaptionDecodeError."""

from __future__ import annotations

import json
import random

import pytest
from conftest import GOLDEN
from hypothesis import given, settings
from hypothesis import strategies as st

from cmcodec import textcode
from cmcodec.errors import CaptionDecodeError, CmcodecError, LimitError
from cmcodec.wordmodel import get_model, tokenize

VECTORS = json.loads((GOLDEN / "wlm1_vectors.json").read_text())


@pytest.mark.parametrize("vec", VECTORS, ids=range(len(VECTORS)))
def test_wlm1_golden_vectors(vec: dict) -> None:
    assert textcode.encode_with(vec["text"], "wlm1")[1].hex() == vec["hex"]
    assert textcode.decode(bytes.fromhex(vec["hex"]), 0) == vec["text"]


@given(st.text(max_size=200).map(textcode.normalize))
@settings(max_examples=400, deadline=None)
def test_every_coder_roundtrips_any_unicode(text: str) -> None:
    for name in ("wlm1", "brotli", "utf8"):
        cid, data = textcode.encode_with(text, name)
        assert textcode.decode(data, cid) == text


@given(st.lists(st.sampled_from(["the", "a", "red", "house", "with", "Two", "12", "3.5", ",", ".", "-", "'", "(", ")", "\n", "", "é", "日", "iPhone", "XYZ"]),
                max_size=40).map(" ".join))
@settings(max_examples=300, deadline=None)
def test_wlm1_roundtrips_caption_like_text(text: str) -> None:
    m = get_model("wlm1")
    assert m.decode(m.encode(text)) == text


def test_tokenize_restores_text() -> None:
    for t in ("  a  b ", "x,y", "A red house.", "tab\there"):
        assert "".join((" " if k.space else "") + k.text for k in tokenize(t)) == t


def test_best_coder_is_wlm1_for_captions_and_small() -> None:
    cap = "A red brick house with white windows and a green door, surrounded by tall trees under a blue sky."
    cid, data = textcode.encode_with(cap)
    assert cid == 0 and len(data) < 30


def test_corrupt_streams_raise_caption_error_or_decode() -> None:
    rng = random.Random(1)
    good = textcode.encode_with(VECTORS[3]["text"], "wlm1")[1]
    for _ in range(500):
        b = bytearray(good)
        b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            textcode.decode(bytes(b), 0)
        except CaptionDecodeError:
            pass
    for n in range(64):  # random garbage: terminates (EOS, limit or overrun), never loops or crashes
        try:
            textcode.decode(bytes(rng.randrange(256) for _ in range(n)), 0)
        except CmcodecError:
            pass
    with pytest.raises(CaptionDecodeError):
        textcode.decode(b"\xff\xfe\x00", 2)
    with pytest.raises(CaptionDecodeError):
        textcode.decode(b"\x8b\x03\x80garbage", 1)


def test_caption_limit() -> None:
    with pytest.raises(LimitError, match="exceeds the limit of 4096"):
        textcode.encode("word " * 1000)


def test_trim_to_bytes_fits_at_word_boundary() -> None:
    cap = VECTORS[3]["text"]
    for budget in (0, 3, 8, 15, 20, 100):
        t = textcode.trim_to_bytes(cap, budget)
        assert textcode.size(t) <= budget or t == ""
        assert cap.startswith(t)
    assert textcode.trim_to_bytes(cap, 1000) == cap

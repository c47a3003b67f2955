"""Caption coding: exact round trips, golden vectors forever, corruption gives CaptionDecodeError."""

from __future__ import annotations

import json
import random

import pytest
from conftest import GOLDEN
from hypothesis import given, settings
from hypothesis import strategies as st

from cmcodec.core import ids, textcode
from cmcodec.core.errors import CaptionDecodeError, CmcodecError, LimitError
from cmcodec.core.wordmodel import get_model, tokenize

VECTORS = json.loads((GOLDEN / "wlm1_vectors.json").read_text())
GOLDEN_VECTORS = [(m, i, v) for m in textcode.WORD_MODELS
                  for i, v in enumerate(json.loads((GOLDEN / f"{m}_vectors.json").read_text()))]


@pytest.mark.parametrize("model,i,vec", GOLDEN_VECTORS, ids=[f"{m}-{i}" for m, i, _ in GOLDEN_VECTORS])
def test_word_model_golden_vectors(model: str, i: int, vec: dict) -> None:
    assert textcode.caption_section(vec["text"], model).payload.hex() == vec["hex"]
    assert textcode.decode(bytes.fromhex(vec["hex"]), ids.coder_id("caption", model)) == vec["text"]


@given(st.text(max_size=200).map(textcode.normalize))
@settings(max_examples=400, deadline=None)
def test_every_coder_roundtrips_any_unicode(text: str) -> None:
    for name in textcode.CODERS:
        sec = textcode.caption_section(text, name)
        assert textcode.decode(sec.payload, sec.coder_id) == text
    assert textcode.decode(textcode.encode(text)) == text


@given(st.lists(st.sampled_from(["the", "a", "red", "house", "with", "Two", "12", "3.5", ",", ".", "-", "'", "(", ")", "\n", "", "é", "日", "iPhone", "XYZ"]),
                max_size=40).map(" ".join))
@settings(max_examples=300, deadline=None)
def test_word_models_roundtrip_caption_like_text(text: str) -> None:
    for model in textcode.WORD_MODELS:
        m = get_model(model)
        assert m.decode(m.encode(text)) == text


def test_tokenize_restores_text() -> None:
    for t in ("  a  b ", "x,y", "A red house.", "tab\there"):
        assert "".join((" " if k.space else "") + k.text for k in tokenize(t)) == t


def test_best_coder_is_the_default_word_model_for_captions_and_small() -> None:
    cap = "A red brick house with white windows and a green door, surrounded by tall trees under a blue sky."
    sec = textcode.caption_section(cap)
    assert ids.CAPTION_CODERS[sec.coder_id] in textcode.WORD_MODELS and len(sec.payload) < 30
    assert len(sec.payload) == min(len(textcode.caption_section(cap, m).payload) for m in textcode.WORD_MODELS)
    assert textcode.available_coders()[0] == "wlm2"


def test_trainer_reproduces_shipped_models() -> None:
    pytest.importorskip("wordfreq")
    import hashlib
    import zlib

    from cmcodec.bench import wordmodel_train
    from cmcodec.core import wordmodel

    csv_path = GOLDEN.parents[2] / "shared/data/captions/cmcbench_gpt4v.csv"
    if not csv_path.exists():
        pytest.skip(f"training captions not found at {csv_path}")
    train, _ = wordmodel_train.load_split(csv_path)
    model = wordmodel_train.train(train, "wlm2")
    raw = zlib.compress(json.dumps(model, separators=(",", ":"), sort_keys=True).encode(), 9)
    assert hashlib.sha256(raw).hexdigest() == wordmodel.MODELS["wlm2"]


@pytest.mark.parametrize("model", textcode.WORD_MODELS)
def test_corrupt_streams_raise_caption_error_or_decode(model: str) -> None:
    rng = random.Random(1)
    sec = textcode.caption_section(VECTORS[3]["text"], model)
    cid, good = sec.coder_id, sec.payload
    for _ in range(500):
        b = bytearray(good)
        b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            textcode.decode(bytes(b), cid)
        except CaptionDecodeError:
            pass
    for n in range(64):  # random garbage: terminates (EOS or the caption limit, spec §6.4), never loops or crashes
        try:
            textcode.decode(bytes(rng.randrange(256) for _ in range(n)), cid)
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

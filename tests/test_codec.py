"""encode/decode in every mode, rate control, auto mode, determinism, model loading errors."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
from conftest import GOLDEN, HOUSE, PARROTS
from PIL import Image

import cmcodec
from cmcodec import codec
from cmcodec.core.errors import BudgetError, ModelError, ProfileError

CAP = "Two colourful parrots, one red and one green, perched side by side against a blurred green background."


@pytest.mark.parametrize("mode", ["pixel", "image", "full"])
def test_classic_roundtrip(mode: str) -> None:
    data = cmcodec.encode(PARROTS, mode=mode, profile="classic")
    img = cmcodec.decode(data)
    assert img.size == (192, 128) and img.mode == "RGB"
    ref = np.asarray(Image.open(PARROTS).convert("RGB"), dtype=float)
    assert np.abs(np.asarray(img, dtype=float) - ref).mean() < 60


def test_classic_refuses_text_mode() -> None:
    with pytest.raises(ProfileError, match="classic cannot decode text mode"):
        cmcodec.encode(PARROTS, mode="text", caption="x", profile="classic")


def test_max_bytes_and_error_names_smallest_size() -> None:
    data = cmcodec.encode(PARROTS, mode="text", caption=CAP, max_bytes=20)
    assert len(data) <= 20
    h = cmcodec.read_header(data)
    assert h.section("caption") is not None
    with pytest.raises(BudgetError, match=r"smallest file is \d+ bytes"):
        cmcodec.encode(PARROTS, mode="image", max_bytes=10)


def test_rate_control_uses_the_budget() -> None:
    img = Image.open(PARROTS).resize((768, 512))
    for bpp in (0.01, 0.02, 0.05):
        r = codec.encode_result(img, mode="image", profile="classic", bpp=bpp)
        assert 0.6 * bpp <= r.header.bpp <= bpp


def test_auto_mode_follows_the_budget() -> None:
    img = Image.open(PARROTS).resize((768, 512))
    assert codec.encode_result(img, mode="auto", caption=CAP, bpp=0.0008).mode == "text"
    assert codec.encode_result(img, mode="auto", caption=CAP, bpp=0.004).mode == "pixel"
    assert codec.encode_result(img, mode="auto", caption=CAP, bpp=0.02).mode == "full"
    assert codec.encode_result(img, mode="auto", profile="classic", bpp=0.003).mode == "pixel"
    assert codec.encode_result(img, mode="auto", profile="classic", bpp=0.02).mode == "image"


def test_import_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, cmcodec, cmcodec.cli, cmcodec.codec; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_weights_fail_fast_with_a_clear_message() -> None:
    data = (GOLDEN / "text_wlm1.cmc").read_bytes()
    t = time.time()
    with pytest.raises(ModelError, match=r"stabilityai/sd-turbo.*--model-path DIR"):
        cmcodec.decode(data)
    assert time.time() - t < 30


def test_unknown_captioner_fails_clearly() -> None:
    with pytest.raises(ModelError, match="cannot load I2T model"):
        cmcodec.encode(PARROTS, mode="text", options=codec.EncodeOptions(i2t="no-such-org/no-such-model"))


@pytest.mark.parametrize("mode", ["text", "pixel", "image", "full"])
def test_tiny_t2i_roundtrip_is_deterministic(mode: str, tiny_sd) -> None:
    data = cmcodec.encode(HOUSE, mode=mode, caption="a red house", seed=11)
    a = cmcodec.decode(data, codec.DecodeOptions(model_path=str(tiny_sd)))
    b = cmcodec.decode(data, codec.DecodeOptions(model_path=str(tiny_sd)))
    assert a.size == (96, 64)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_encode_with_tiny_captioner(tiny_blip) -> None:
    r = codec.encode_result(HOUSE, mode="text", options=codec.EncodeOptions(i2t=str(tiny_blip), caption_words=5))
    assert len(r.caption.split()) <= 5
    assert cmcodec.read_header(r.data).mode == "text"


def test_caption_given_loads_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from cmcodec.models import i2t

    monkeypatch.setattr(i2t, "load", lambda *a, **k: pytest.fail("captioner loaded"))
    cmcodec.encode(HOUSE, mode="full", caption="a house")


def test_chat_vlm_captioner_path(tiny_qwen2vl) -> None:
    from cmcodec.models import i2t

    imgs = [Image.open(PARROTS).convert("RGB"), Image.open(HOUSE).convert("RGB")]
    batch = i2t.caption_batch(imgs, model=str(tiny_qwen2vl), words=5, device="cpu")
    single = [i2t.caption(im, model=str(tiny_qwen2vl), words=5, device="cpu") for im in imgs]
    assert batch == single  # left padding: batching does not change a caption
    assert all(0 < len(c.split()) <= 5 for c in batch)
    row = next(v for k, v in i2t._CACHE.items() if k[0].path == str(tiny_qwen2vl))[2]
    assert row.kind == "chat"  # the processor's chat template decided the prompt path
    r = codec.encode_result(HOUSE, mode="text", options=codec.EncodeOptions(i2t=str(tiny_qwen2vl), caption_words=5))
    assert r.caption == single[1] and cmcodec.read_header(r.data).mode == "text"


def test_every_img2img_row_runs_at_least_one_denoising_step() -> None:
    """diffusers runs int(steps x strength) img2img steps; zero fails deep inside the UNet (measured by
    benchmarks/gpu_speed.py --steps 1 on pixel mode), so no profile row may ask for it."""
    from cmcodec.core.profiles import PROFILES, Pipeline

    for p in PROFILES:
        for mode, mc in p.modes.items():
            if mc.pipeline is Pipeline.IMG2IMG:
                assert int(mc.steps * mc.strength) >= 1, (p.name, mode)
            elif mc.pipeline is Pipeline.TEXT2IMG:
                assert mc.steps >= 1, (p.name, mode)

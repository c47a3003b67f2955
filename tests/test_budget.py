"""Rate control spends budgets: every mode and auto use at least 70% of a budget above their smallest file,
never more than the budget; the caption grows to the profile's prompt limit; the split and auto's ladder are
profile data."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import HOUSE, PARROTS, ROOT
from PIL import Image

import cmcodec
from cmcodec import codec
from cmcodec.core import textcode
from cmcodec.core.errors import BudgetError
from cmcodec.core.profiles import get_profile

CAP = "Two colourful parrots, one red and one green, perched side by side against a blurred green background."
KODAK = ROOT.parent / "shared/data/kodak/kodim05.png"  # the shared data set beside the repository, if any
BPPS = (0.002, 0.005, 0.01, 0.02, 0.05)
FILL = 0.7  # share of (budget - smallest file) a mode must use
# (mode, profile): the classic profile, and a neural one with a given caption (no model loads)
CASES = [("pixel", "classic"), ("image", "classic"), ("auto", "classic"),
         ("pixel", "sd-turbo"), ("full", "sd-turbo"), ("auto", "sd-turbo")]


def _large() -> Image.Image:
    """A Kodak-sized picture that is always at hand (the fixture upscaled)."""
    return Image.open(PARROTS).convert("RGB").resize((768, 512), Image.Resampling.BICUBIC)


def _images() -> list[tuple[str, Image.Image]]:
    out = [("parrots", Image.open(PARROTS).convert("RGB")), ("house", Image.open(HOUSE).convert("RGB")),
           ("parrots768", _large())]
    if KODAK.exists():
        out.append(("kodim05", Image.open(KODAK).convert("RGB")))
    return out


def _check_fill(img: Image.Image, mode: str, profile: str, bpp: float, caption: str | None = CAP) -> str:
    """Encode at bpp; 'refused' when the budget is below the mode's smallest file (then BudgetError is
    required), else 'ran' after checking bytes <= budget and the fill."""
    w, h = img.size
    budget = codec.budget_bytes(w, h, bpp)
    smallest = codec.smallest_size(img, mode=mode, profile=profile, max_bytes=budget)
    if budget < smallest:
        with pytest.raises(BudgetError, match=rf"smallest file is {smallest} bytes"):
            codec.encode(img, mode=mode, profile=profile, caption=caption, bpp=bpp)
        return "refused"
    r = codec.encode_result(img, mode=mode, profile=profile, caption=caption, bpp=bpp)
    n = len(r.data)
    assert n <= budget, (mode, profile, bpp, n, budget)
    assert n >= smallest + FILL * (budget - smallest), \
        f"{mode}/{profile} at {bpp} bpp ({w}x{h}): {n} bytes of a {budget}-byte budget, smallest {smallest}"
    return "ran"


@pytest.mark.parametrize(("mode", "profile"), CASES)
def test_every_mode_fills_its_budget(mode: str, profile: str) -> None:
    ran: dict[str, int] = {}
    for name, img in _images():
        ran[name] = sum(_check_fill(img, mode, profile, bpp) == "ran" for bpp in BPPS)
    # counted, so that a mode refusing every budget cannot pass: all five budgets on the Kodak-sized
    # pictures, at least the largest on the small fixtures (below their smallest file a refusal is right)
    assert all(n == len(BPPS) for name, n in ran.items() if name in ("parrots768", "kodim05")), ran
    assert all(n >= 1 for n in ran.values()), ran


def test_pixel_mode_sizes_follow_the_budget() -> None:
    """The same picture at growing budgets gives growing pixel maps, finer than the unbudgeted default."""
    img = _large()
    sizes = [len(codec.encode(img, mode="pixel", profile="classic", bpp=b)) for b in (0.002, 0.005, 0.01, 0.02)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4, sizes
    params = [cmcodec.read_header(codec.encode(img, mode="pixel", profile="classic", bpp=b)).section(
        "pixel_map").payload[0] for b in (0.002, 0.05)]
    assert params[1] >> 5 < params[0] >> 5  # smaller blocks at the larger budget (spec §7.1 byte)
    assert params[1] >> 5 == 0  # 8-pixel blocks at 0.05 bpp on 768x512


def test_text_mode_spends_up_to_its_caption() -> None:
    img = _large()
    full = len(codec.encode(img, mode="text", caption=CAP))
    for max_bytes in (18, full - 1, full, 10 * full):  # above ~3 words: a word's bytes are the step
        n = len(codec.encode(img, mode="text", caption=CAP, max_bytes=max_bytes))
        smallest = codec.smallest_size(img, mode="text")
        assert n <= max_bytes and n >= smallest + FILL * (min(max_bytes, full) - smallest), (max_bytes, n)


def test_smallest_size_is_what_budget_error_names() -> None:
    for mode, profile in CASES:
        smallest = codec.smallest_size(PARROTS, mode=mode, profile=profile, max_bytes=5)
        with pytest.raises(BudgetError, match=rf"smallest file is {smallest} bytes"):
            codec.encode(PARROTS, mode=mode, profile=profile, caption=CAP, max_bytes=smallest - 1)
        assert len(codec.encode(PARROTS, mode=mode, profile=profile, caption=CAP, max_bytes=smallest)) == smallest


def test_auto_follows_the_profile_ladder(monkeypatch: pytest.MonkeyPatch) -> None:
    img = _large()
    prof = get_profile("sd-turbo")
    assert [codec.encode_result(img, mode="auto", profile=prof, caption=CAP, bpp=b).mode
            for b in (0.001, 0.005, 0.02)] == ["text", "pixel", "full"]
    flipped = replace(prof, encoder=replace(prof.encoder, auto_ladder=((0.004, "pixel"), (0.0, "full"))))
    assert [codec.encode_result(img, mode="auto", profile=flipped, caption=CAP, bpp=b).mode
            for b in (0.001, 0.005, 0.02)] == ["full", "pixel", "pixel"]


def test_full_mode_split_is_the_profile_rule() -> None:
    """caption_pct decides how much of a full-mode budget the caption takes before the reference is sized."""
    img = _large()
    long_cap = " ".join([CAP] * 3)
    prof = get_profile("sd-turbo")
    sizes = {}
    for pct in (10, 60):
        p = replace(prof, encoder=replace(prof.encoder, caption_pct=pct))
        r = codec.encode_result(img, mode="full", profile=p, caption=long_cap, bpp=0.005)
        sizes[pct] = len(r.header.section("caption").payload)
        assert len(r.data) <= codec.budget_bytes(768, 512, 0.005)
    assert sizes[10] < sizes[60], sizes
    assert sizes[60] <= 0.6 * codec.budget_bytes(768, 512, 0.005)


def test_caption_grows_to_the_prompt_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    prof = get_profile("sd-turbo")
    assert codec.caption_word_limit(prof, "text") == 50  # (77 - 2) / 1.5
    assert codec.caption_word_limit(prof, "full") == 44  # the quality suffix takes 11 tokens
    assert codec.caption_word_limit(replace(prof, prompt_tokens=512), "text") == 340
    from cmcodec.models import i2t

    asked = []

    def fake_caption(image, *, model=None, words=20, device=None, dtype=None, model_path=None, accel=None):
        asked.append(words)
        return " ".join((["a", "red", "house"] * 40)[:words])  # captioners cut to the words asked

    monkeypatch.setattr(i2t, "caption", fake_caption)
    img = _large()
    for bpp in (None, 0.0005, 0.01):
        codec.encode_result(img, mode="text", bpp=bpp)
    assert asked == [20, 20, 50]  # no budget: the profile's 20; 24 bytes afford 20; 491 bytes: the limit
    r = codec.encode_result(img, mode="full", bpp=0.05)
    assert asked[-1] == 44 and len(r.caption.split()) == 44  # the caption fills its share up to the limit
    assert textcode.size(r.caption) <= codec.budget_bytes(768, 512, 0.05)


def test_reference_grows_on_smooth_pictures() -> None:
    """Where the best quality at the first guessed size leaves bytes unused, a larger reference spends them."""
    import numpy as np

    ramp = np.stack([*np.meshgrid(np.linspace(0, 255, 768), np.linspace(0, 255, 512)), np.full((512, 768), 90.0)], -1)
    img = Image.fromarray(ramp.astype(np.uint8))
    budget = codec.budget_bytes(768, 512, 0.01)
    smallest = codec.smallest_size(img, mode="image", profile="classic")
    n = len(codec.encode(img, mode="image", profile="classic", bpp=0.01))
    assert smallest + FILL * (budget - smallest) <= n <= budget, (n, budget)


@pytest.mark.parametrize("mode", ["pixel", "full"])
def test_classic_stores_no_caption_it_would_ignore(mode: str) -> None:
    """The classic decoder reads no caption: a given one would only take bytes from the guidance."""
    with_cap = codec.encode_result(_large(), mode=mode, profile="classic", caption=CAP, bpp=0.005)
    assert with_cap.caption == ""
    assert with_cap.data == codec.encode(_large(), mode=mode, profile="classic", bpp=0.005)


def test_budget_bytes_are_exact() -> None:
    assert codec.budget_bytes(800, 1, 0.29) == 29  # float arithmetic gives 28.999999999999996
    assert codec.budget_bytes(768, 512, 0.005) == 245 and codec.budget_bytes(768, 512, 0.005, 100) == 100
    assert codec.budget_bytes(768, 512, None) is None
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(cmcodec.CmcodecError, match="--bpp must be a positive number"):
            codec.budget_bytes(10, 10, bad)


def test_auto_on_a_row_without_low_rate_modes_names_its_smallest_file() -> None:
    prof = get_profile("classic")
    image_only = replace(prof, modes={"image": prof.modes["image"]})
    smallest = codec.smallest_size(PARROTS, mode="image", profile=image_only)
    with pytest.raises(BudgetError, match=rf"image mode cannot fit 10 bytes: the smallest file is {smallest}"):
        codec.encode(PARROTS, mode="auto", profile=image_only, max_bytes=10)
    assert codec.encode_result(PARROTS, mode="auto", profile=image_only, bpp=0.05).mode == "image"

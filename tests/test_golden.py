"""Pinned decoders: golden files decode to the same pixels forever, and shipped profile rows never change.

- ``fixtures/golden/pixels.json``: sha256 of the RGB bytes every golden file decodes to without a model (the
  classic profile's whole image; a neural profile's img2img init image). These are exact: the pixel map and
  the reference codecs are normative (spec §7, §8).
- ``fixtures/golden/profiles.json``: the pixel-deciding fields of every shipped profile row, by id
  (``cmcodec.core.profiles.DECODE_FIELDS``). Spec §4.4: a changed setting that alters decoded pixels gets a
  new profile id, so a row with an existing id must never change; new ids are appended with
  ``python fixtures/make_golden.py``. Fields that do not change a file's pixels (name, description, the encoder
  defaults, where weights are fetched from) are not pinned.
- Tiny-model decodes (random weights, CPU): diffusers-style ``expected_slice`` pins of the last 3x3 pixels of
  the blue channel, so a changed decode path (scheduler, prompt template, resize, 8-bit conversion) is caught,
  not only a changed size. They depend on the torch/diffusers arithmetic, hence a small tolerance.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import GOLDEN

import cmcodec
from cmcodec import codec
from cmcodec.core.profiles import PROFILES, PROFILES_BY_ID, decode_fields, get_profile

EXPECTED = json.loads((GOLDEN / "golden.json").read_text())["valid"]
PIXELS = json.loads((GOLDEN / "pixels.json").read_text())
ROWS = json.loads((GOLDEN / "profiles.json").read_text())


def _sha(img) -> str:
    return hashlib.sha256(img.convert("RGB").tobytes()).hexdigest()


def test_every_golden_file_has_a_pixel_pin() -> None:
    assert sorted(PIXELS) == sorted(EXPECTED), "run python fixtures/make_golden.py to pin new golden files"


@pytest.mark.parametrize("name", sorted(n for n, v in PIXELS.items() if "image" in v))
def test_classic_golden_files_decode_to_pinned_pixels(name: str) -> None:
    img = cmcodec.decode((GOLDEN / name).read_bytes())
    assert list(img.size) == PIXELS[name]["image"]["size"]
    assert _sha(img) == PIXELS[name]["image"]["rgb_sha256"]


@pytest.mark.parametrize("name", sorted(n for n, v in PIXELS.items() if "init" in v))
def test_neural_golden_files_have_pinned_init_images(name: str) -> None:
    h = cmcodec.read_header((GOLDEN / name).read_bytes())
    init = codec.decode_guidance(h, get_profile(h.profile_id))
    assert list(init.size) == PIXELS[name]["init"]["size"]
    assert _sha(init) == PIXELS[name]["init"]["rgb_sha256"]


def test_text_golden_files_have_no_model_free_image() -> None:
    for name, pin in PIXELS.items():
        if not pin:  # text mode, and noise mode: the caption and the coded noise, no guidance image (spec §10)
            assert EXPECTED[name]["mode"] in ("text", "noise"), name


@pytest.mark.parametrize("pid", sorted(ROWS, key=int))
def test_profile_row_with_an_id_never_changes(pid: str) -> None:
    assert int(pid) in PROFILES_BY_ID, f"profile id {pid} was removed: files that name it could not decode"
    now = json.loads(json.dumps(decode_fields(PROFILES_BY_ID[int(pid)])))  # JSON's view: tuples as lists
    changed = sorted(k for k in set(now) | set(ROWS[pid]) if now.get(k) != ROWS[pid].get(k))
    assert not changed, (f"profile id {pid} ({PROFILES_BY_ID[int(pid)].name}) changed {', '.join(changed)}: a "
                         "setting that alters decoded pixels needs a new profile id (spec §4.4)")


def test_every_shipped_profile_is_pinned() -> None:
    new = [p.id for p in PROFILES if str(p.id) not in ROWS]
    assert not new, f"profile ids {new} are not pinned: run python fixtures/make_golden.py to append them"


def test_profile_pin_catches_a_changed_row() -> None:
    from dataclasses import replace

    p = PROFILES_BY_ID[0]
    changed = replace(p, modes={**p.modes, "text": replace(p.modes["text"], steps=2)})
    assert json.loads(json.dumps(decode_fields(changed))) != ROWS["0"]
    assert json.loads(json.dumps(decode_fields(replace(p, description="other words")))) == ROWS["0"]


# Last 3x3 pixels of the blue channel of each tiny-model decode (CPU, float32, tests/tiny_models.py weights).
EXPECTED_SLICES = {
    "text_wlm1.cmc": [122, 136, 143, 130, 130, 140, 146, 108, 125],
    "text_brotli_seed.cmc": [127, 132, 126, 128, 132, 127, 142, 136, 128],
    "pixel_sdturbo.cmc": [136, 126, 112, 136, 130, 112, 126, 134, 120],
    "full_j2k.cmc": [127, 129, 125, 131, 124, 124, 134, 124, 130],
    "noise_sd15.cmc": [111, 123, 126, 118, 119, 129, 119, 115, 141],
}
# 40 steps with classifier-free guidance at 1024 px: minutes on a loaded CPU
SLOW_SLICES = {"full_hevc_realvis.cmc": [142, 128, 124, 127, 111, 133, 125, 116, 127]}
SLICE_ATOL = 2  # 8-bit levels: thread-count-dependent float sums may round a level differently


@pytest.mark.parametrize("name", [*sorted(EXPECTED_SLICES),
                                  *(pytest.param(n, marks=pytest.mark.slow) for n in SLOW_SLICES)])
def test_tiny_model_decodes_of_golden_files_are_pinned(name: str, tiny_sd) -> None:
    img = cmcodec.decode((GOLDEN / name).read_bytes(), codec.DecodeOptions(model_path=str(tiny_sd), device="cpu"))
    assert img.size == (192, 128) and img.mode == "RGB"
    got = np.asarray(img)[-3:, -3:, -1].flatten().astype(int)
    want = np.array({**EXPECTED_SLICES, **SLOW_SLICES}[name])
    assert np.abs(got - want).max() <= SLICE_ATOL, got.tolist()


def test_decode_dispatches_on_the_rows_pipeline_not_on_the_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # a neural row whose pixel mode were model-free would decode its pixel files with core.classic, no model
    from dataclasses import replace

    from cmcodec.core import profiles

    data = (GOLDEN / "pixel_sdturbo.cmc").read_bytes()
    sd = get_profile("sd-turbo")
    mc = get_profile("classic").modes["pixel"]
    monkeypatch.setitem(profiles.PROFILES_BY_ID, sd.id, replace(sd, modes={**sd.modes, "pixel": mc}))
    h = cmcodec.read_header(data)
    want = codec.classic.guidance_image(h, mc.upsample, mc.smooth)
    assert _sha(cmcodec.decode(data)) == _sha(want)


def test_a_model_free_mode_without_guidance_is_refused() -> None:
    from dataclasses import replace

    from cmcodec.core import profiles

    classic = get_profile("classic")
    odd = replace(classic, modes={**classic.modes, "text": classic.modes["pixel"]})
    assert profiles.row_problem(odd) == "a model-free pipeline needs guidance; text mode has none"
    assert profiles.row_problem(classic) is None


def test_spec_lists_exactly_the_profile_table() -> None:
    # spec §4.4's table is generated from core.profiles (python fixtures/make_golden.py rewrites it)
    from cmcodec.core import profiles

    spec = (GOLDEN.parents[1] / "spec" / "bitstream.md").read_text()
    assert profiles.spec_table() in spec, "run python fixtures/make_golden.py to rewrite spec §4.4's table"

"""The decoder line-up: one tiny random-weight pipeline per family, saved and loaded like a real model folder
(save_pretrained, safetensors, from_pretrained through cmcodec's loaders), a .cmc round trip in every mode
its profile row decodes, determinism and a pinned pixel slice; prompt-length trimming; the rows themselves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import HOUSE, PARROTS

import cmcodec
from cmcodec import codec
from cmcodec.core import profiles
from cmcodec.core.errors import ProfileError
from cmcodec.models import t2i

# family of the tiny model -> profile row it stands in for
FAMILY_ROWS = {
    "sdxl-edm": "playground-v2.5",
    "controlnet": "sd15-tile",
    "controlnet-sdxl": "sdxl-tile",
    "pix2pix": "instruct-pix2pix",
    "upscale-x4": "sd-x4-upscaler",
    "flux": "flux-schnell",
    "sd3": "sd35-large-turbo",
    "sana-sprint": "sana-sprint",
}
# pixels [0, :3] of each decode (HOUSE, caption "a red house", seed 3, 2 steps, CPU float32); a few levels of
# slack for other CPUs' float rounding
EXPECTED = {
    ("sdxl-edm", "text"): [[109, 146, 124], [99, 156, 143], [88, 160, 162]],
    ("sdxl-edm", "pixel"): [[104, 143, 128], [93, 146, 143], [85, 147, 156]],
    ("sdxl-edm", "image"): [[104, 141, 130], [93, 146, 143], [85, 147, 155]],
    ("sdxl-edm", "full"): [[105, 141, 130], [95, 146, 143], [87, 147, 155]],
    ("controlnet", "image"): [[128, 111, 134], [125, 111, 140], [123, 110, 134]],
    ("controlnet", "full"): [[128, 115, 130], [124, 110, 136], [124, 104, 133]],
    ("controlnet-sdxl", "image"): [[103, 142, 129], [93, 147, 144], [85, 149, 157]],
    ("controlnet-sdxl", "full"): [[104, 142, 129], [93, 147, 144], [86, 149, 157]],
    ("pix2pix", "image"): [[107, 130, 135], [103, 130, 134], [98, 127, 130]],
    ("pix2pix", "full"): [[106, 130, 136], [102, 130, 135], [98, 127, 130]],
    ("upscale-x4", "image"): [[101, 136, 118], [115, 110, 119], [140, 96, 102]],
    ("upscale-x4", "full"): [[102, 132, 114], [116, 108, 118], [140, 100, 104]],
    ("flux", "text"): [[154, 113, 153], [150, 120, 160], [145, 126, 163]],
    ("flux", "pixel"): [[154, 94, 160], [144, 105, 163], [131, 118, 168]],
    ("flux", "image"): [[154, 96, 160], [143, 105, 165], [131, 116, 169]],
    ("flux", "full"): [[154, 96, 160], [143, 105, 163], [131, 116, 168]],
    ("sd3", "text"): [[134, 113, 107], [132, 104, 104], [128, 98, 104]],
    ("sd3", "pixel"): [[146, 113, 114], [138, 112, 112], [131, 110, 108]],
    ("sd3", "image"): [[131, 112, 110], [132, 103, 101], [133, 95, 93]],
    ("sd3", "full"): [[131, 113, 111], [132, 105, 101], [134, 95, 91]],
    ("sana-sprint", "text"): [[91, 165, 87], [86, 149, 116], [85, 122, 145]],
    ("sana-sprint", "pixel"): [[103, 165, 108], [98, 136, 120], [91, 102, 128]],
    ("sana-sprint", "image"): [[104, 164, 89], [100, 163, 128], [89, 153, 168]],
    ("sana-sprint", "full"): [[105, 171, 92], [102, 166, 131], [92, 150, 172]],
}
CASES = [(fam, mode) for fam, row in FAMILY_ROWS.items() for mode in profiles.get_profile(row).modes]


@pytest.fixture
def small_row(monkeypatch: pytest.MonkeyPatch):
    """The profile row with tiny-test settings (64 px long side, 2 steps where the row takes more; the image
    modes keep the step counts their schedules need), registered under its own id and name."""

    def make(name: str) -> profiles.Profile:
        row = profiles.get_profile(name)
        modes = {m: dataclasses.replace(mc, steps=min(mc.steps, 2) if m in ("text",) or mc.steps > 5 else mc.steps)
                 for m, mc in row.modes.items()}
        small = dataclasses.replace(row, long_side=128 if row.family == "upscale-x4" else 64, modes=modes)
        monkeypatch.setitem(profiles.PROFILES_BY_ID, row.id, small)
        monkeypatch.setitem(profiles.PROFILES_BY_NAME, row.name, small)
        return small

    return make


@pytest.mark.parametrize(("fam", "mode"), CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_family_round_trip_is_deterministic(fam: str, mode: str, tiny_family, small_row, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_family(fam)
    row = small_row(FAMILY_ROWS[fam])
    _separate_controlnet(row, folder, tmp_path, monkeypatch)
    data = cmcodec.encode(HOUSE, mode=mode, caption="a red house", profile=row.name, seed=3)
    h = cmcodec.read_header(data)
    assert (h.profile_id, h.mode) == (row.id, mode)
    opts = codec.DecodeOptions(model_path=str(folder), device="cpu")
    a = cmcodec.decode(data, opts)
    b = cmcodec.decode(data, opts)
    assert a.size == (96, 64) and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))  # same file, same pixels
    got = np.asarray(a)[0, :3].astype(int)
    assert np.abs(got - np.array(EXPECTED[(fam, mode)])).max() <= 3, got.tolist()


def _separate_controlnet(row: profiles.Profile, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A family whose tiny ControlNet is its own repo (as the SDXL tile row's is) finds it as a user's
    $CMCODEC_MODEL_DIR/org--name, beside the base model given with --model-path."""
    cn = folder.parent / (folder.name + "-controlnet")
    if row.controlnet and cn.is_dir():
        _model_dir(tmp_path, monkeypatch, row.controlnet, cn)


def test_sdxl_tile_loads_its_own_controlnet_and_reads_the_condition(tiny_family, small_row, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDXL base folder holds no controlnet/: the row's ControlNet repo is loaded beside it (at the row's
    pin, which a local folder does not need), and its condition changes the pixels (scale 0 ignores it)."""
    folder = tiny_family("controlnet-sdxl")
    row = small_row("sdxl-tile")
    assert not (folder / "controlnet").exists()
    _separate_controlnet(row, folder, tmp_path, monkeypatch)
    data = cmcodec.encode(HOUSE, mode="full", caption="a red house", profile=row.name, seed=3)
    opts = codec.DecodeOptions(model_path=str(folder), device="cpu")
    with_cn = np.asarray(cmcodec.decode(data, opts))
    _, img, _ = t2i.load_pipelines(row, "cpu", None, str(folder))
    assert type(img).__name__ == "StableDiffusionXLControlNetImg2ImgPipeline"
    assert type(img.controlnet).__name__ == "ControlNetModel"
    off = dataclasses.replace(row, modes={m: dataclasses.replace(mc, extra={"controlnet_conditioning_scale": 0.0})
                                          for m, mc in row.modes.items()})
    monkeypatch.setitem(profiles.PROFILES_BY_ID, row.id, off)
    without = np.asarray(cmcodec.decode(data, opts))
    assert np.abs(with_cn.astype(int) - without.astype(int)).max() > 3


def test_sdxl_tile_controlnet_loads_offline_from_the_cache_at_its_pin(tiny_family, small_row, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The ControlNet as a user's offline Hugging Face cache holds it after a run at the row's pinned commit
    (fixtures/hub manifest: every listed file, the weights from the tiny repo; no refs/main): the same pixels
    as from the folder."""
    from hub_cache import build_cache, manifests

    folder = tiny_family("controlnet-sdxl")
    row = small_row("sdxl-tile")
    manifest = manifests()[row.controlnet]
    assert manifest["commit"] == row.controlnet_revision
    data = cmcodec.encode(HOUSE, mode="image", profile=row.name, seed=3)
    opts = codec.DecodeOptions(model_path=str(folder), device="cpu")
    with monkeypatch.context() as m:
        _separate_controlnet(row, folder, tmp_path, m)
        want = np.asarray(cmcodec.decode(data, opts))
    t2i.clear_cache()
    build_cache(tmp_path / "hf", manifest, folder.parent / (folder.name + "-controlnet"), revision_ref=False)
    monkeypatch.delenv("CMCODEC_MODEL_DIR", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert np.array_equal(np.asarray(cmcodec.decode(data, opts)), want)


def test_a_missing_controlnet_is_one_line_naming_it(tiny_family, small_row, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    from cmcodec.core.errors import ModelError

    folder = tiny_family("controlnet-sdxl")
    row = small_row("sdxl-tile")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("CMCODEC_MODEL_DIR", raising=False)
    data = cmcodec.encode(HOUSE, mode="image", profile=row.name, seed=3)
    with pytest.raises(ModelError, match=r"xinsir/controlnet-tile-sdxl-1\.0.*at revision 1ae8d952") as e:
        cmcodec.decode(data, codec.DecodeOptions(model_path=str(folder), device="cpu"))
    assert "\n" not in str(e.value)


def test_flow_img2img_reads_the_guidance(tiny_family, small_row) -> None:
    """A flow model's img2img that starts at step 0 is pure noise and ignores its image: two different
    pixel maps must give two different images."""
    folder = tiny_family("flux")
    row = small_row("flux-schnell")
    a, b = (cmcodec.decode(cmcodec.encode(img, mode="pixel", caption="a red house", profile=row.name, seed=3),
                           codec.DecodeOptions(model_path=str(folder), device="cpu")).resize((96, 64))
            for img in (HOUSE, PARROTS))
    assert not np.array_equal(np.asarray(a), np.asarray(b))


def test_restoration_rows_refuse_modes_without_a_reference() -> None:
    for name in ("sd15-tile", "sdxl-tile", "instruct-pix2pix", "sd-x4-upscaler"):
        with pytest.raises(ProfileError, match=f"profile {name} cannot decode text mode"):
            cmcodec.encode(HOUSE, mode="text", caption="a house", profile=name)


def test_upscaler_reference_is_coded_at_a_quarter_of_the_size() -> None:
    from cmcodec.core import guidance

    data = cmcodec.encode(PARROTS, mode="image", profile="sd-x4-upscaler")
    ref = cmcodec.read_header(data).section("image_ref")
    small = guidance.decode_image_ref(ref.payload, ref.coder_id, 192, 128)
    assert max(small.size) <= 192 // 4


def test_every_row_has_its_family_licence_and_a_new_id() -> None:
    assert sorted(profiles.PROFILES_BY_ID) == list(range(len(profiles.PROFILES)))  # ids never skipped or reused
    for p in profiles.PROFILES:
        assert p.license, p.name
        if p.model:
            fam = t2i.family(p)
            if fam.text2img is None:
                assert "text" not in p.modes and "pixel" not in p.modes, p.name
            for mode, mc in p.modes.items():
                if mc.pipeline == "img2img" and fam.strength and p.family in ("flux", "sd3", "sana-sprint"):
                    # diffusers' flow img2img skips int(steps x (1 - strength)) steps: 0 would be pure noise
                    assert int(mc.steps - mc.steps * mc.strength) >= 1, (p.name, mode)


def test_profiles_cli_shows_licences() -> None:
    from click.testing import CliRunner

    from cmcodec.cli import main

    r = CliRunner().invoke(main, ["profiles"])
    assert r.exit_code == 0
    assert "flux-schnell" in r.output and "apache-2.0" in r.output and "stabilityai-ai-community" in r.output


# --- prompt length -------------------------------------------------------------------------------------------

LONG = " ".join(["a red house with white windows under a blue sky and a green tree on the street,"] * 8)


def _model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_id: str, folder: Path) -> None:
    """Make folder the profile's model as $CMCODEC_MODEL_DIR/org--name (the encoder finds it there)."""
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / hub_id.replace("/", "--")).symlink_to(folder)
    monkeypatch.setenv("CMCODEC_MODEL_DIR", str(tmp_path / "models"))


@pytest.mark.parametrize("mode", ["text", "full"])
def test_clip_caption_is_trimmed_token_exact_at_a_word(mode: str, tiny_sd: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import CLIPTokenizer

    _model_dir(tmp_path, monkeypatch, "stabilityai/sd-turbo", tiny_sd)
    r = codec.encode_result(HOUSE, mode=mode, caption=LONG, seed=1)
    tok = CLIPTokenizer.from_pretrained(tiny_sd / "tokenizer")
    prof = profiles.get_profile("sd-turbo")

    def n(text: str) -> int:
        return len(tok(t2i.prompt_of(prof.mode(mode).prompt, text))["input_ids"])

    assert n(r.caption) <= 77 < n(LONG)
    assert LONG.startswith(r.caption) and LONG[len(r.caption)] in " ,"  # a word prefix
    next_word = LONG[: LONG.index(" ", len(r.caption) + 1)]
    assert n(next_word) > 77  # one more word would be cut by the pipeline: token-exact, not an estimate


def test_t5_profile_reads_its_own_limit(tiny_family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_family("flux")
    _model_dir(tmp_path, monkeypatch, "black-forest-labs/FLUX.1-schnell", folder)
    prof = profiles.get_profile("flux-schnell")
    tok = t2i.tokenizer_of(prof)
    assert type(tok).__name__.startswith("T5")  # tokenizer_2: the T5 one, loaded alone from the folder
    long = " ".join([LONG] * 3)
    got = t2i.fit_prompt(prof, "text", long)
    assert len(tok(got)["input_ids"]) <= 256 < len(tok(long)["input_ids"])
    assert len(got.split()) > 60  # far beyond what CLIP's 77 tokens would allow


def test_without_a_tokenizer_the_fallbacks_trim() -> None:
    t2i._TOKENIZERS.clear()
    prof = profiles.get_profile("sd-turbo")  # not cached here (offline): no tokenizer
    got = t2i.fit_prompt(prof, "text", LONG)  # the conservative estimate
    assert 10 < len(got.split()) < len(LONG.split()) and t2i.estimate_tokens(got) <= 77
    assert t2i.fit_prompt(prof, "text", "a red house") == "a red house"  # short: no tokenizer looked for
    # the encoder passes its word limit (measured CLIP tokens per word): that many words are kept
    r = codec.encode_result(HOUSE, mode="text", caption=LONG)
    assert r.caption == " ".join(LONG.split()[:codec.caption_word_limit(prof, "text")]).rstrip(",;:")

"""How real checkpoints load: revisions, weight variants, dtypes, watermarks, prompts, image caps and the
library floors (tiny models from tests/tiny_models.py and tests/hub_families.py, CPU)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import torch
from hub_cache import build_cache, manifests

from cmcodec.core.deps import version_tuple
from cmcodec.core.errors import CmcodecError, ConfigError, ModelError
from cmcodec.core.profiles import get_profile
from cmcodec.models import i2t, loading, t2i


@pytest.fixture(autouse=True)
def _fresh_caches(monkeypatch: pytest.MonkeyPatch):
    """Each test loads its own models (the backends cache them by location)."""
    monkeypatch.setattr(t2i, "_CACHE", {})
    monkeypatch.setattr(i2t, "_CACHE", {})
    monkeypatch.delenv(loading.ENV_REVISIONS, raising=False)
    monkeypatch.delenv(loading.ENV_MODEL_DIR, raising=False)


# --- library floors ------------------------------------------------------------------------------------------

def test_an_old_library_is_refused_naming_the_version_found(monkeypatch: pytest.MonkeyPatch) -> None:
    from cmcodec.core import deps

    real = deps.installed
    monkeypatch.setattr(deps, "installed", lambda p: "4.45.2" if p == "transformers" else real(p))
    with pytest.raises(ModelError, match=r"transformers 4\.45\.2 is installed; cmcodec needs transformers >= 4\.56"):
        loading.require("transformers")
    loading.require("diffusers", "huggingface_hub", "torch")  # the installed ones pass
    assert version_tuple("4.56.0.dev0") == (4, 56, 0) and version_tuple("2.4") < (2, 10)


def test_the_installed_libraries_have_what_the_floors_promise(tiny_blip: Path) -> None:
    import inspect

    import diffusers
    import huggingface_hub
    import transformers

    # transformers >= 4.56: native Florence-2, one Auto class for every captioner, from_pretrained(dtype=)
    assert hasattr(transformers, "Florence2ForConditionalGeneration")
    net = transformers.AutoModelForImageTextToText.from_pretrained(tiny_blip, dtype=torch.bfloat16)
    assert net.dtype == torch.bfloat16
    # diffusers: from_pipe, the tiny autoencoder, add_watermarker on the SDXL pipelines
    assert callable(diffusers.AutoPipelineForImage2Image.from_pipe) and diffusers.AutoencoderTiny
    for cls in (diffusers.StableDiffusionXLPipeline, diffusers.StableDiffusionXLImg2ImgPipeline):
        assert "add_watermarker" in inspect.signature(cls.__init__).parameters
    assert callable(huggingface_hub.try_to_load_from_cache)
    assert callable(torch.compiler.cudagraph_mark_step_begin)


# --- captioners: dtype, prompts, image caps ------------------------------------------------------------------

def test_each_captioner_runs_in_its_own_dtype_on_gpus() -> None:
    for name in ("qwen2-vl-2b", "qwen2.5-vl-3b"):
        row = i2t.CAPTIONERS[name]
        assert loading.pick_dtype("cuda", None or row.dtype) == torch.bfloat16, name  # trained in bf16
    assert loading.pick_dtype("cuda", i2t.CAPTIONERS["blip-large"].dtype) == torch.float16
    assert loading.pick_dtype("cpu", None) == torch.float32
    assert loading.pick_dtype("cuda", "float32") == torch.float32
    with pytest.raises(ModelError, match="unknown dtype"):
        loading.pick_dtype("cpu", "int8")


def test_encode_dtype_reaches_the_captioner(tiny_blip: Path, tmp_path: Path) -> None:
    from conftest import HOUSE

    from cmcodec.cli import main

    r = CliRunner().invoke(main, ["encode", str(HOUSE), "-o", str(tmp_path / "h.cmc"), "--i2t-path", str(tiny_blip),
                                  "--device", "cpu", "--dtype", "bfloat16"])
    assert r.exit_code == 0, r.output
    assert [net.dtype for _, net, _, _ in i2t._CACHE.values()] == [torch.bfloat16]
    for cmd in ("evaluate", "rd-curve", "decode"):
        assert "--dtype [float16|bfloat16|float32]" in CliRunner().invoke(main, [cmd, "--help"]).output, cmd


def test_florence_asks_for_the_caption_task_that_fits_the_word_budget() -> None:
    row = i2t.CAPTIONERS["florence-2-large"]
    assert i2t.prompt_for(row, 20) == "<CAPTION>"  # one sentence, not a paragraph cut at 20 words
    assert i2t.prompt_for(row, 50) == "<DETAILED_CAPTION>"
    assert i2t.prompt_for(row, 200) == "<MORE_DETAILED_CAPTION>"
    assert "20 words" in i2t.prompt_for(i2t.CAPTIONERS["qwen2-vl-2b"], 20)


def test_qwen_rows_cap_the_visual_tokens_of_a_photo(tiny_qwen2vl: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One visual token per 28x28 pixels: a 12 MP photo is 15552 tokens at the repos' own max_pixels
    (12845056), 972 at the rows' cap."""
    from PIL import Image
    from transformers import Qwen2VLImageProcessor

    photo = Image.new("RGB", (4032, 3024), (120, 80, 40))

    def tokens(ip) -> int:
        return int(ip(images=[photo], return_tensors="pt")["image_grid_thw"].prod()) // 4  # 2x2 merge

    assert tokens(Qwen2VLImageProcessor(max_pixels=12845056)) == 15552
    shutil.copytree(tiny_qwen2vl, tmp_path / "Qwen--Qwen2-VL-2B-Instruct")
    monkeypatch.setenv(loading.ENV_MODEL_DIR, str(tmp_path))
    proc, _, _, _ = i2t.load("qwen2-vl-2b", device="cpu")
    assert tokens(proc.image_processor) == 972 <= i2t.QWEN_MAX_PIXELS // (28 * 28)


# --- decoders: watermark, variant, revision ------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hub_families import sdxl

    return sdxl(tmp_path_factory.mktemp("models") / "tiny-sdxl")


def test_sdxl_pipelines_carry_no_watermarker(tiny_sdxl: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With invisible-watermark installed diffusers watermarks SDXL outputs unless told not to."""
    from diffusers.pipelines.stable_diffusion_xl import pipeline_stable_diffusion_xl as xl
    from diffusers.pipelines.stable_diffusion_xl import pipeline_stable_diffusion_xl_img2img as xl_i2i

    class Watermarker:
        def apply_watermark(self, images):
            return images + 1

    for mod in (xl, xl_i2i):  # as on an install with the optional package
        monkeypatch.setattr(mod, "is_invisible_watermark_available", lambda: True)
        monkeypatch.setattr(mod, "StableDiffusionXLWatermarker", Watermarker, raising=False)
    t2i_pipe, i2i_pipe, _ = t2i.load_pipelines(get_profile("sdxl-turbo"), device="cpu", model_path=str(tiny_sdxl))
    assert type(t2i_pipe).__name__ == "StableDiffusionXLPipeline" and t2i_pipe.watermark is None
    assert type(i2i_pipe).__name__ == "StableDiffusionXLImg2ImgPipeline" and i2i_pipe.watermark is None


def _with_fp16_variant(src: Path, dst: Path) -> Path:
    """A copy of a pipeline folder plus *.fp16.safetensors files whose UNet conv_in differs from the full
    weights by +1 (so a test can tell which file was loaded)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    for f in dst.rglob("*.safetensors"):
        sd = {k: v.half() if v.is_floating_point() else v for k, v in load_file(f).items()}
        if f.parent.name == "unet":
            sd["conv_in.weight"] = sd["conv_in.weight"] + 1
        save_file(sd, f.with_name(f.name.replace(".safetensors", ".fp16.safetensors")), metadata={"format": "pt"})
    return dst


def _conv_in(pipe) -> torch.Tensor:
    return pipe.unet.conv_in.weight.detach().float()


def _variant_conv_in(folder: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(folder / "unet" / "diffusion_pytorch_model.fp16.safetensors")["conv_in.weight"].float()


def test_fp16_decodes_load_the_fp16_variant_where_the_folder_has_one(tiny_sd: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    full = load_file(tiny_sd / "unet" / "diffusion_pytorch_model.safetensors")["conv_in.weight"].half().float()
    folder = _with_fp16_variant(tiny_sd, tmp_path / "sd-fp16")
    variant = _variant_conv_in(folder)
    assert not torch.equal(variant, full)
    prof = get_profile("sd-turbo")
    assert prof.variant == "fp16"
    pipe, _, _ = t2i.load_pipelines(prof, device="cpu", dtype="float16", model_path=str(folder))
    assert pipe.unet.dtype == torch.float16 and torch.equal(_conv_in(pipe), variant)  # the variant's weights
    pipe32, _, _ = t2i.load_pipelines(prof, device="cpu", dtype="float32", model_path=str(folder))
    assert torch.equal(pipe32.unet.conv_in.weight.detach().half().float(), full)  # float32 never reads it
    plain, _, _ = t2i.load_pipelines(prof, device="cpu", dtype="float16", model_path=str(tiny_sd))
    assert torch.equal(_conv_in(plain), full)  # no variant in the folder: the full weights, converted


@pytest.mark.parametrize("fetched", ["variant", "full"])
def test_fp16_decodes_load_offline_from_a_cache_of_either_weights(fetched: str, tiny_sd: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache left by a run that fetched only the fp16 variant, or only the full-precision weights."""
    from hub_families import sd as sd_family
    from safetensors.torch import load_file

    family = _with_fp16_variant(sd_family(tmp_path / "family"), tmp_path / "family-fp16")
    m = manifests()["stabilityai/sd-turbo"]
    full_weights = ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                    "text_encoder/model.safetensors")
    drop = full_weights if fetched == "variant" else ("*.fp16.safetensors",)
    build_cache(tmp_path / "hf", m, family, drop=drop)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    pipe, _, _ = t2i.load_pipelines(get_profile("sd-turbo"), device="cpu", dtype="float16")
    full = load_file(family / "unet" / "diffusion_pytorch_model.safetensors")["conv_in.weight"].half().float()
    assert torch.equal(_conv_in(pipe), _variant_conv_in(family) if fetched == "variant" else full)


def test_rows_pin_revisions_and_a_user_pins_unpinned_rows_locally(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sd = get_profile("sd-turbo")
    assert loading.revision_for(sd.name, sd.model, sd.revision) == (sd.revision, "row")
    qwen = i2t.CAPTIONERS["qwen2-vl-2b"]
    assert loading.revision_for(qwen.name, qwen.model, qwen.revision) == (None, "unpinned")
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({"qwen2-vl-2b": "a" * 40, "stabilityai/sd-turbo": "b" * 40}))
    monkeypatch.setenv(loading.ENV_REVISIONS, str(pins))
    assert loading.revision_for(qwen.name, qwen.model, None) == ("a" * 40, "$CMCODEC_REVISIONS")
    assert loading.revision_for(sd.name, sd.model, sd.revision)[0] == "b" * 40
    pins.write_text("{not json")
    with pytest.raises(ConfigError, match="CMCODEC_REVISIONS"):
        loading.revision_for(sd.name, sd.model, sd.revision)


def test_profiles_command_shows_pinned_and_unpinned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cmcodec.cli import main
    from cmcodec.core import profiles

    out = CliRunner().invoke(main, ["profiles"]).output
    assert f"revision {get_profile('sd-turbo').revision} (pinned by the profile)" in out
    unpinned = [p for p in profiles.PROFILES if p.model and not p.revision]
    assert out.count("revision: unpinned") == len(unpinned)
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({"sd-turbo": "d" * 40}))
    monkeypatch.setenv(loading.ENV_REVISIONS, str(pins))
    assert f"revision {'d' * 40} (pinned by $CMCODEC_REVISIONS)" in CliRunner().invoke(main, ["profiles"]).output


def test_a_cache_of_another_commit_is_not_the_pinned_model(tmp_path: Path, tiny_family_sd: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """main moved on: the cached snapshot is of another commit, so the pinned row must not load it."""
    m = dict(manifests()["stabilityai/sd-turbo"], commit="e" * 40)
    build_cache(tmp_path / "hf", m, tiny_family_sd)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ModelError, match=rf"not in the local Hugging Face cache at revision {get_profile('sd-turbo').revision}"):
        t2i.load_pipelines(get_profile("sd-turbo"), device="cpu")
    pins = tmp_path / "pins.json"  # the user follows main on purpose
    pins.write_text(json.dumps({"sd-turbo": "main"}))
    monkeypatch.setenv(loading.ENV_REVISIONS, str(pins))
    pipe, _, _ = t2i.load_pipelines(get_profile("sd-turbo"), device="cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline"


def test_the_tokenizer_cache_follows_a_changed_local_pin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tokenizer lookup is cached per process, failures too; a pin set later names other weights, so the
    lookup is made again at the pinned revision (and only once per revision)."""
    asked: list[str | None] = []

    def locate(kind, model, path, option, revision, *marker):
        asked.append(revision)
        raise ModelError(f"{model} not found at {revision}")

    monkeypatch.setattr(t2i, "_TOKENIZERS", {})
    monkeypatch.setattr(t2i, "locate", locate)
    prof = get_profile("sd-turbo")
    assert t2i.tokenizer_of(prof) is None and t2i.tokenizer_of(prof) is None
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({"sd-turbo": "e" * 40}))
    monkeypatch.setenv(loading.ENV_REVISIONS, str(pins))
    assert t2i.tokenizer_of(prof) is None and t2i.tokenizer_of(prof) is None
    assert asked == [prof.revision, "e" * 40]
    pins.write_text("{not json")  # unreadable: the estimate, as for a missing model (the decode reports it)
    assert t2i.tokenizer_of(prof) is None and asked == [prof.revision, "e" * 40]


@pytest.fixture(scope="session")
def tiny_family_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hub_families import sd

    return sd(tmp_path_factory.mktemp("family") / "sd")


def test_one_line_errors_name_the_revision(tmp_path: Path) -> None:
    src = loading.Source("org/name", "f" * 40, local_only=True)
    e = loading.load_error("T2I", "org/name", src, OSError("boom\nmore"), "--model-path")
    assert "\n" not in str(e) and f"at revision {'f' * 40}" in str(e) and "local cache only" in str(e)
    assert isinstance(e, CmcodecError) and sys.modules["cmcodec.models.loading"] is loading

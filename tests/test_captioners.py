"""Captioner rows: the line-up and its listing, refusals, and one tiny-model test per family."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HOUSE, PARROTS
from PIL import Image

from cmcodec.core.errors import ModelError
from cmcodec.models import i2t


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmcodec.cli", *args], capture_output=True, text=True, timeout=120)


def test_captioners_lists_every_row_with_its_costs() -> None:
    r = run("captioners", "--json", "--words", "20")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert isinstance(got, list)  # every --json prints a list
    rows = {d["name"]: d for d in got if d["refused"] is None}
    assert list(rows) == [*i2t.CAPTIONERS, "api:MODEL"]
    for name in ("llava-1.5-7b", "llava-next-mistral-7b", "instructblip-vicuna-7b", "smolvlm2-2.2b", "internvl3-1b"):
        d = rows[name]
        assert d["model"] == i2t.CAPTIONERS[name].model and d["size"].endswith("B") and d["license"]
        assert d["dtype"] in ("float16", "bfloat16") and d["prompt"]
    assert rows["llava-1.5-7b"]["model"] == "llava-hf/llava-1.5-7b-hf"
    assert rows["instructblip-vicuna-7b"]["prompt"] == ("Generate an informative paragraph in 20 words based on the "
                                                        "image.Considering Light and Color, Clarity")
    assert rows["smolvlm2-2.2b"]["dtype"] == "bfloat16" and rows["blip-large"]["default"]
    assert {d["name"] for d in got if d["refused"]} == {"sharegpt4v", "mplug-owl2"}
    assert all(list(d) == list(got[0]) for d in got)  # one shape for every row
    text = run("captioners").stdout
    assert "llava-hf/llava-v1.6-mistral-7b-hf, 7.6B, float16, Apache-2.0" in text
    assert "mplug-owl2" in text and "refused" in text


def test_cmcbench_prompt_adds_an_aspect_per_ten_words() -> None:
    row = i2t.CAPTIONERS["llava-1.5-7b"]
    assert i2t.prompt_for(row, 5) == "Generate an informative paragraph in 5 words based on the image."
    assert i2t.prompt_for(row, 40).endswith("image.Considering Light and Color, Clarity, Dense Caption, and Region "
                                            "Semantic")


@pytest.mark.parametrize("name", ["sharegpt4v", "Lin-Chen/ShareGPT4V-7B", "mplug-owl2", "MAGAer13/mplug-owl2-llama2-7b"])
def test_remote_code_captioners_are_refused_by_name(name: str) -> None:
    with pytest.raises(ModelError, match=r"is not supported: .* cmcodec never runs remote code"):
        i2t.caption(Image.open(HOUSE), model=name)


def test_refusal_is_a_one_line_cli_error(tmp_path) -> None:
    r = run("encode", str(HOUSE), "-o", str(tmp_path / "h.cmc"), "--i2t", "mplug-owl2")
    assert r.returncode == 7 and r.stderr.count("\n") == 1 and "trust_remote_code" in r.stderr


FAMILIES = {  # registered row -> tiny builder of its family, the class transformers' Auto mapping picks
    "llava-1.5-7b": ("make_tiny_llava", "LlavaForConditionalGeneration"),
    "llava-next-mistral-7b": ("make_tiny_llava_next", "LlavaNextForConditionalGeneration"),
    "instructblip-vicuna-7b": ("make_tiny_instructblip", "InstructBlipForConditionalGeneration"),
    "smolvlm2-2.2b": ("make_tiny_smolvlm", "SmolVLMForConditionalGeneration"),
    "internvl3-1b": ("make_tiny_internvl", "InternVLForConditionalGeneration"),
}


@pytest.fixture(scope="session")
def lineup_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$CMCODEC_MODEL_DIR holding each family's tiny model under its row's hub id (org--name), built once."""
    pytest.importorskip("transformers")
    import tiny_models

    root = tmp_path_factory.mktemp("lineup")
    for name, (builder, _) in FAMILIES.items():
        getattr(tiny_models, builder)(root / i2t.CAPTIONERS[name].model.replace("/", "--"))
    # llava-1.5-7b-hf's repo holds the image processor's preprocessor_config.json and no processor_config.json
    # (patch size, feature strategy): its row supplies those
    from transformers import AutoProcessor

    llava = root / "llava-hf--llava-1.5-7b-hf"
    AutoProcessor.from_pretrained(llava).image_processor.save_pretrained(llava)
    (llava / "processor_config.json").unlink()
    return root


@pytest.mark.parametrize("name", list(FAMILIES))
def test_tiny_captioner_of_each_family(name: str, lineup_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cmcodec import codec
    from cmcodec.models.loading import ENV_MODEL_DIR

    monkeypatch.setenv(ENV_MODEL_DIR, str(lineup_dir))
    folder = lineup_dir / i2t.CAPTIONERS[name].model.replace("/", "--")
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    imgs = [Image.open(PARROTS).convert("RGB"), Image.open(HOUSE).convert("RGB")]
    batch = i2t.caption_batch(imgs, model=name, words=5, device="cpu")
    single = [i2t.caption(im, model=name, words=5, device="cpu") for im in imgs]
    assert batch == single  # left padding and one image per prompt: batching changes no caption
    assert all(0 < len(c.split()) <= 5 for c in batch)
    _, net, row, dev = i2t.load(name, "cpu")
    assert row == i2t.CAPTIONERS[name] and dev == "cpu" and str(net.dtype) == "torch.float32"
    assert type(net).__name__ == FAMILIES[name][1]
    opts = codec.EncodeOptions(i2t=name, caption_words=5, device="cpu")
    a = codec.encode_result(HOUSE, mode="text", options=opts)
    b = codec.encode_result(HOUSE, mode="text", options=opts)
    assert a.data == b.data and a.caption == single[1]  # same image, same file
    assert codec.validate(a.data).mode == "text"


def test_a_folder_whose_processor_cannot_prepare_images_is_a_one_line_error(lineup_dir: Path) -> None:
    folder = lineup_dir / "llava-hf--llava-1.5-7b-hf"  # as a bare folder: no row supplies the patch size
    with pytest.raises(ModelError, match=r"captioner .*llava-1.5-7b-hf: its processor cannot prepare the images "
                                         r"\(TypeError: .*\); check the model folder's processor files"):
        i2t.caption(Image.open(HOUSE), model=str(folder), words=5, device="cpu")


def test_a_captioner_that_says_nothing_is_an_error_per_image(lineup_dir: Path, tmp_path: Path) -> None:
    """A model whose answer is only special tokens gives no caption: each image gets a one-line ModelError
    (a folder run goes on past it), never a text-mode file of an empty caption."""
    import shutil

    from cmcodec import codec

    mute = tmp_path / "mute"
    shutil.copytree(lineup_dir / "llava-hf--llava-v1.6-mistral-7b-hf", mute)
    gen = json.loads((mute / "generation_config.json").read_text())
    vocab = json.loads((mute / "tokenizer.json").read_text())["model"]["vocab"]
    gen["suppress_tokens"] = sorted(i for i in vocab.values() if i != gen["eos_token_id"])  # eos at once
    (mute / "generation_config.json").write_text(json.dumps(gen))
    imgs = [Image.open(PARROTS).convert("RGB"), Image.open(HOUSE).convert("RGB")]
    got = i2t.caption_each(imgs, model=str(mute), words=5, device="cpu")
    assert len(got) == 2 and all(isinstance(e, ModelError) for e in got), got
    assert "returned an empty caption" in str(got[0]) and "\n" not in str(got[0])
    with pytest.raises(ModelError, match="returned an empty caption"):
        codec.encode_result(HOUSE, mode="text", options=codec.EncodeOptions(i2t=str(mute), device="cpu"))

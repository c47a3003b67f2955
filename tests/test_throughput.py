"""Throughput paths on CPU: batched folder encode/decode, runtime speed-ups, tiny-autoencoder profiles, sharded evaluate.

Speed itself is measured by benchmarks/gpu_speed.py and benchmarks/multi_gpu.py, never here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HOUSE, PARROTS
from PIL import Image

import cmcodec
from cmcodec import codec
from cmcodec.core.errors import CmcodecError, ConfigError, LimitError, ModelError
from cmcodec.models.loading import Accel


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmcodec.cli", *args], capture_output=True, text=True, timeout=600)


def _px(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def tiny_taesd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny AutoencoderTiny (TAESD layout, random weights)."""
    pytest.importorskip("diffusers")
    from tiny_models import make_tiny_taesd

    return make_tiny_taesd(tmp_path_factory.mktemp("models") / "tiny-taesd")


def _files(n: int) -> list[bytes]:
    """n text-mode sd-turbo files of two sizes (two generation sizes: two batch groups)."""
    out = []
    for i in range(n):
        img = Image.open(PARROTS if i % 2 else HOUSE)
        out.append(cmcodec.encode(img, mode="text", caption=f"a red house number {i} under a blue sky", seed=i))
    return out


def test_accel_rejects_unknown_compile_mode() -> None:
    with pytest.raises(ConfigError, match="unknown compile mode 'fast': expected one of default"):
        Accel(compile="fast")


def test_decode_many_matches_single_decodes_and_reports_bad_files(tiny_sd: Path) -> None:
    datas = _files(5)
    classic = cmcodec.encode(Image.open(PARROTS), mode="pixel", profile="classic")
    batch = [*datas[:2], b"\xcc\x00garbage", classic, *datas[2:]]
    got = dict(codec.decode_many(batch, codec.DecodeOptions(device="cpu", model_path=str(tiny_sd)), batch_size=2))
    assert sorted(got) == list(range(len(batch)))  # every file answered exactly once
    assert isinstance(got[2], CmcodecError)
    assert _px(got[3]).shape == (128, 192, 3)
    for i, data in zip((0, 1, 4, 5, 6), datas, strict=True):
        single = cmcodec.decode(data, codec.DecodeOptions(device="cpu", model_path=str(tiny_sd)))
        assert got[i].size == single.size
        # same seed and CPU generator per file; batched arithmetic may move the last bit
        assert np.abs(_px(got[i]) - _px(single)).max() <= 1
    with pytest.raises(ConfigError, match="batch size must be at least 1"):
        list(codec.decode_many(datas, batch_size=0))


def test_decode_many_turns_out_of_memory_into_a_model_error(tiny_sd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cmcodec.models import t2i

    def oom(*a: object, **k: object) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(t2i, "start_batch", oom)
    got = dict(codec.decode_many(_files(3), codec.DecodeOptions(device="cpu", model_path=str(tiny_sd)), batch_size=4))
    assert all(isinstance(v, ModelError) and "use a smaller batch size (found 4)" in str(v) for v in got.values())
    # a device error of a batch already started surfaces where its pixels are waited for: that batch alone
    monkeypatch.undo()
    real = t2i.finish_batch
    calls = []

    def fails_once(pending):
        calls.append(pending.count)
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(pending)

    monkeypatch.setattr(t2i, "finish_batch", fails_once)
    got = dict(codec.decode_many(_files(3), codec.DecodeOptions(device="cpu", model_path=str(tiny_sd)), batch_size=2))
    assert calls == [2, 1]
    assert [type(got[i]).__name__ for i in range(3)] == ["ModelError", "ModelError", "Image"]
    with pytest.raises(RuntimeError, match="illegal memory access"):  # any other device error is not hidden
        monkeypatch.setattr(t2i, "finish_batch", lambda p: (_ for _ in ()).throw(RuntimeError("illegal memory access")))
        dict(codec.decode_many(_files(2), codec.DecodeOptions(device="cpu", model_path=str(tiny_sd)), batch_size=2))


def test_decode_many_starts_the_next_batch_before_waiting_for_the_last(tiny_sd: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """One batch in flight: batch n+1 is started (its GPU work queued) before batch n's images are waited
    for, and every file still gets its own image, the same as generate_batch gives."""
    from cmcodec.models import t2i

    order: list[str] = []
    real_start, real_finish = t2i.start_batch, t2i.finish_batch

    def start(prof, mode, items, **kw):
        order.append(f"start {len(items)}")
        return real_start(prof, mode, items, **kw)

    def finish(pending):
        order.append(f"finish {pending.count}")
        return real_finish(pending)

    monkeypatch.setattr(t2i, "start_batch", start)
    monkeypatch.setattr(t2i, "finish_batch", finish)
    opts = codec.DecodeOptions(device="cpu", model_path=str(tiny_sd))
    datas = _files(5)
    got = dict(codec.decode_many(datas, opts, batch_size=2))
    assert order == ["start 2", "start 2", "finish 2", "start 1", "finish 2", "finish 1"]
    for i, d in enumerate(datas):
        h = cmcodec.read_header(d)
        prof = codec.get_profile(h.profile_id)
        cap, init = codec._prepare(h, opts.limits)[1:]
        alone = t2i.generate_batch(prof, h.mode, [(cap, init, h.width, h.height, h.seed)], device="cpu",
                                   model_path=str(tiny_sd))[0]
        assert np.abs(_px(got[i]) - _px(alone)).max() <= 1, i


def test_channels_last_decodes_like_eager(tiny_sd: Path) -> None:
    data = cmcodec.encode(Image.open(HOUSE), mode="pixel", caption="a house", profile="sd-turbo")
    eager = cmcodec.decode(data, codec.DecodeOptions(device="cpu", model_path=str(tiny_sd)))
    cl = cmcodec.decode(data, codec.DecodeOptions(device="cpu", model_path=str(tiny_sd), accel=Accel(channels_last=True)))
    assert np.abs(_px(eager) - _px(cl)).max() <= 1


def test_compile_option_compiles_unet_autoencoder_and_text_encoder(tiny_sd: Path) -> None:
    from cmcodec.core.profiles import get_profile
    from cmcodec.models import t2i

    pipe, i2i, _ = t2i.load_pipelines(get_profile("sd-turbo"), "cpu", None, str(tiny_sd),
                                      accel=Accel(compile="reduce-overhead"))
    for net in (pipe.unet, pipe.vae.decoder, pipe.vae.encoder, pipe.text_encoder):
        assert net._compiled_call_impl is not None
    assert i2i.unet is pipe.unet  # img2img shares the compiled modules


@pytest.mark.slow
def test_compiled_decode_runs_on_cpu(tiny_sd: Path) -> None:
    data = cmcodec.encode(Image.open(HOUSE), mode="text", caption="a house")
    eager = cmcodec.decode(data, codec.DecodeOptions(device="cpu", model_path=str(tiny_sd)))
    comp = cmcodec.decode(data, codec.DecodeOptions(device="cpu", model_path=str(tiny_sd), accel=Accel(compile="default")))
    assert np.abs(_px(eager) - _px(comp)).max() <= 2


def test_taesd_profile_decodes_with_its_autoencoder_and_fails_clearly_without(
        tiny_sd: Path, tiny_taesd: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "h.cmc"
    src.write_bytes(cmcodec.encode(Image.open(HOUSE), mode="full", caption="a house", profile="sd-turbo-taesd"))
    assert cmcodec.read_header(src.read_bytes()).profile_name == "sd-turbo-taesd"
    r = run("decode", str(src), "-o", str(tmp_path / "h.png"), "--model-path", str(tiny_sd), "--vae-path",
            str(tiny_taesd), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "h.png").size == (96, 64)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CMCODEC_MODEL_DIR", raising=False)
    r = run("decode", str(src), "-o", str(tmp_path / "h2.png"), "--model-path", str(tiny_sd), "--device", "cpu")
    assert r.returncode == 7 and not (tmp_path / "h2.png").exists()
    assert "cannot load autoencoder model 'madebyollin/taesd'" in r.stderr and "--vae-path" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_folder_decode_batches_and_goes_on_past_a_bad_file(tiny_sd: Path, tmp_path: Path) -> None:
    src = tmp_path / "cmc"
    src.mkdir()
    for i, data in enumerate(_files(5)):
        (src / f"f{i}.cmc").write_bytes(data)
    (src / "bad.cmc").write_bytes(b"\xcc\x00\x01")
    outs = {}
    for b in ("1", "3"):
        r = run("decode", str(src), "-o", str(tmp_path / f"png{b}"), "--model-path", str(tiny_sd), "--device", "cpu",
                "--batch-size", b)
        assert r.returncode == 1 and "1 of 6 files failed" in r.stderr and "bad.cmc" in r.stderr
        outs[b] = {p.name: _px(Image.open(p)) for p in (tmp_path / f"png{b}").glob("*.png")}
        assert sorted(outs[b]) == [f"f{i}.decoded.png" for i in range(5)]
        assert not list((tmp_path / f"png{b}").glob(".*.tmp"))
    assert all(np.abs(outs["1"][k] - outs["3"][k]).max() <= 1 for k in outs["1"])


def test_folder_encode_captions_in_batches(tiny_blip: Path, tmp_path: Path) -> None:
    src = tmp_path / "img"
    src.mkdir()
    for i in range(3):
        shutil.copy(PARROTS if i % 2 else HOUSE, src / f"p{i}.png")
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    got = {}
    for b in ("1", "2"):
        r = run("encode", str(src), "-o", str(tmp_path / f"cmc{b}"), "--i2t", str(tiny_blip), "--device", "cpu",
                "--batch-size", b)
        assert r.returncode == 1 and "broken.png" in r.stderr and "1 of 4 files failed" in r.stderr
        got[b] = {p.name: p.read_bytes() for p in (tmp_path / f"cmc{b}").glob("*.cmc")}
        assert sorted(got[b]) == ["p0.cmc", "p1.cmc", "p2.cmc"]
    assert got["1"] == got["2"]  # batched captions are the captions of single images
    for i in range(3):  # and the same as a single-file encode
        r = run("encode", str(src / f"p{i}.png"), "-o", str(tmp_path / f"s{i}.cmc"), "--i2t", str(tiny_blip),
                "--device", "cpu")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / f"s{i}.cmc").read_bytes() == got["2"][f"p{i}.cmc"]


def test_read_input_refuses_files_over_the_limit(tmp_path: Path) -> None:
    from cmcodec.media.fileio import read_input

    p = tmp_path / "big.cmc"
    p.write_bytes(b"\xcc" * 100)
    assert read_input(p, 100) == b"\xcc" * 100
    with pytest.raises(LimitError, match="file of 101 bytes exceeds the limit of 100 bytes"):
        p.write_bytes(b"\xcc" * 101)
        read_input(p, 100)
    with pytest.raises(ConfigError, match="cannot read"):
        read_input(tmp_path / "missing.cmc")


def test_rank_files_merge_into_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cmcodec import distributed

    path = tmp_path / "text.scores.jsonl"
    path.write_text('{"name": "a"}\n')
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # what a launcher sets beside RANK / WORLD_SIZE
    monkeypatch.setenv("MASTER_PORT", "29500")
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert distributed.rank_path(path).name == f"text.scores.rank{rank}.jsonl"
        distributed.rank_path(path).write_text(f'{{"name": "r{rank}"}}')  # no final newline: still one row
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert distributed.rank_path(path) == path
    distributed.merge_lines(path)
    assert [json.loads(x)["name"] for x in path.read_text().splitlines()] == ["a", "r0", "r1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.scores.jsonl"]


def test_evaluate_shards_across_two_processes(tiny_sd: Path, tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    gt = tmp_path / "gt"
    gt.mkdir()
    for i in range(5):
        shutil.copy(PARROTS if i % 2 else HOUSE, gt / f"NSI_{i}.png")
    caps = tmp_path / "caps.csv"
    caps.write_text(",name,text\n" + "".join(f"{i},NSI_{i}.png,a red house {i}\n" for i in range(5)))
    args = ["evaluate", str(gt), "--captions", str(caps), "--profile", "sd-turbo", "--model-path",
            f"sd-turbo={tiny_sd}", "--modes", "text,pixel", "--fr", "psnr", "--nr", "piqe", "--device", "cpu"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
              "-m", "cmcodec.cli"]
    r = subprocess.run([*launch, *args, "-o", str(tmp_path / "two")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("| caps__sd-turbo |") == 1  # one leaderboard, printed by rank 0
    r = run(*args, "-o", str(tmp_path / "one"))
    assert r.returncode == 0, r.stderr
    two, one = tmp_path / "two" / "caps__sd-turbo", tmp_path / "one" / "caps__sd-turbo"
    for mode in ("text", "pixel"):
        rows = [json.loads(x) for x in (two / f"{mode}.scores.jsonl").read_text().splitlines()]
        assert sorted(x["name"] for x in rows) == [f"NSI_{i}" for i in range(5)]
        assert sorted(p.name for p in (two / mode).glob("*.cmc")) == [f"NSI_{i}.cmc" for i in range(5)]
    assert not list((tmp_path / "two").rglob("*.rank*.jsonl")) and not list((tmp_path / "two").rglob("*.new.jsonl"))
    s2 = json.loads((two / "scores.json").read_text())
    s1 = json.loads((one / "scores.json").read_text())
    assert s2["modes"]["text"]["bpp"] == pytest.approx(s1["modes"]["text"]["bpp"])
    assert s2["overall"] == pytest.approx(s1["overall"], abs=0.01)


def test_compiled_captioner_gives_the_eager_captions(tiny_blip: Path) -> None:
    from cmcodec.models import i2t

    imgs = [Image.open(HOUSE), Image.open(PARROTS)]
    eager = i2t.caption_batch(imgs, model=str(tiny_blip), device="cpu", words=8)
    # the compiled token decoder (encode --compile) is its own cache entry; its steps run through compile
    comp = i2t.caption_batch(imgs, model=str(tiny_blip), device="cpu", words=8, accel=Accel(compile="default"))
    assert comp == eager
    _, net, _, _ = i2t.load(str(tiny_blip), "cpu", None, None, Accel(compile="default"))
    assert hasattr(net.text_decoder.forward, "__wrapped__")


def test_captioner_preprocesses_on_the_model_device_where_the_backend_can(tiny_blip: Path) -> None:
    """transformers' torchvision image processors get device= (the batch is resized on the GPU there); PIL ones
    get nothing; both give nearly the same pixel values."""
    from transformers import AutoProcessor

    from cmcodec.models import i2t

    tv = AutoProcessor.from_pretrained(tiny_blip, backend="torchvision")
    pil = AutoProcessor.from_pretrained(tiny_blip, backend="pil")
    assert i2t._image_kwargs(tv, "cuda:1") == {"device": "cuda:1"}
    assert i2t._image_kwargs(pil, "cuda:1") == {}
    imgs = [Image.open(HOUSE), Image.open(PARROTS)]
    on_device = tv(images=imgs, return_tensors="pt", **i2t._image_kwargs(tv, "cpu"))["pixel_values"]
    on_cpu = pil(images=imgs, return_tensors="pt")["pixel_values"]
    assert on_device.shape == on_cpu.shape and (on_device - on_cpu).abs().max() < 0.05
    i2t.PREPROCESS_ON_DEVICE = False  # the public switch benchmarks/gpu_speed.py's cpu-preproc variant uses
    try:
        assert i2t._image_kwargs(tv, "cuda:1") == {}
    finally:
        i2t.PREPROCESS_ON_DEVICE = True


def test_batched_images_give_the_processors_own_pixel_values(tiny_blip: Path) -> None:
    """Same-size images go to a device-side processor as one tensor (i2t._batch_on): the pixel values are
    exactly those of the images given one by one, grouped or not; mixed sizes and a PIL processor's images
    are passed as they are, and captions are the same both ways."""
    import torch
    from transformers import AutoProcessor

    from cmcodec.models import i2t

    tv = AutoProcessor.from_pretrained(tiny_blip, backend="torchvision")
    imgs = [Image.open(p).convert("RGB").resize((96, 64)) for p in (HOUSE, PARROTS, HOUSE)]
    pre = i2t._image_kwargs(tv, "cpu")
    batch = i2t._batch_on(imgs, pre)
    assert isinstance(batch, torch.Tensor) and batch.shape == (3, 3, 64, 96) and batch.dtype == torch.uint8
    one_by_one = tv(images=imgs, return_tensors="pt", **pre)["pixel_values"]
    for grouping in (True, False):
        got = tv(images=batch, return_tensors="pt", disable_grouping=not grouping, **pre)["pixel_values"]
        assert torch.equal(got, one_by_one), grouping
    mixed = [imgs[0], Image.open(PARROTS).convert("RGB")]
    assert i2t._batch_on(mixed, pre) is mixed and i2t._batch_on(imgs, {}) is imgs
    with_batch = i2t.caption_batch(imgs, model="blip-large", model_path=str(tiny_blip), device="cpu", words=5)
    i2t.clear_cache()
    real = i2t._batch_on
    i2t._batch_on = lambda images, pre: images
    try:
        assert i2t.caption_batch(imgs, model="blip-large", model_path=str(tiny_blip), device="cpu",
                                 words=5) == with_batch
    finally:
        i2t._batch_on = real
        i2t.clear_cache()


def test_a_folder_loaded_as_two_captioners_keeps_each_ones_prompt(tiny_blip: Path) -> None:
    """The captioner cache is keyed by the row as well as the folder: a folder captioned as an ad-hoc model
    first (its word prompt) must not lend that row to a later blip-large call on the same folder."""
    from cmcodec.models import i2t

    i2t.clear_cache()
    imgs = [Image.open(HOUSE).convert("RGB")]
    alone = i2t.caption_batch(imgs, model="blip-large", model_path=str(tiny_blip), device="cpu", words=5)
    i2t.clear_cache()
    i2t.caption_batch(imgs, model=str(tiny_blip), device="cpu", words=8)
    _, _, row, _ = i2t.load("blip-large", "cpu", None, str(tiny_blip))
    assert row.name == "blip-large"
    assert i2t.caption_batch(imgs, model="blip-large", model_path=str(tiny_blip), device="cpu", words=5) == alone
    i2t.clear_cache()


def test_model_caches_have_a_public_clear(tiny_blip: Path) -> None:
    from cmcodec.models import i2t, t2i

    first = i2t.load(str(tiny_blip), "cpu")
    assert i2t.load(str(tiny_blip), "cpu")[1] is first[1]  # cached
    i2t.clear_cache()
    assert i2t.load(str(tiny_blip), "cpu")[1] is not first[1]  # loaded again
    t2i._CACHE[("stale",)] = object()
    t2i.clear_cache()
    assert t2i._CACHE == {}


def test_compile_for_a_captioner_without_a_token_decoder_is_refused(tiny_qwen2vl: Path) -> None:
    from cmcodec.models import i2t

    with pytest.raises(ConfigError, match="supports BLIP-class models"):
        i2t.caption_batch([Image.open(HOUSE)], model=str(tiny_qwen2vl), device="cpu", accel=Accel(compile="default"))


@pytest.mark.parametrize("mode", ["text", "pixel"])
def test_batched_output_is_diffusers_own_pil_output_resized(tiny_sd: Path, mode: str) -> None:
    """generate_batch converts to 8 bits on the device and resizes in threads: the very pixels of the pipeline's
    own "pil" output, resized one by one with Lanczos."""
    import torch

    from cmcodec.core.profiles import get_profile
    from cmcodec.models import t2i

    prof = get_profile("sd-turbo")
    mc = prof.mode(mode)
    init = Image.open(HOUSE).convert("RGB")
    w, h = init.size
    items = [(f"a red house number {i}", None if mode == "text" else init, w, h, i) for i in range(3)]
    got = t2i.generate_batch(prof, mode, items, device="cpu", model_path=str(tiny_sd))
    t2i_pipe, i2i_pipe, _ = t2i.load_pipelines(prof, "cpu", None, str(tiny_sd))
    gw, gh = prof.decode_size(w, h)
    kw = {"prompt": [c for c, *_ in items], "num_inference_steps": mc.steps, "guidance_scale": mc.guidance_scale,
          "generator": [torch.Generator("cpu").manual_seed(s) for *_, s in items], "output_type": "pil"}
    with torch.inference_mode():
        if mode == "text":
            ref = t2i_pipe(height=gh, width=gw, **kw).images
        else:
            small = init.resize((gw, gh), Image.Resampling.LANCZOS)
            ref = i2i_pipe(image=[small] * 3, strength=mc.strength, **kw).images
    assert (gw, gh) != (w, h)  # the resize is exercised
    for a, b in zip(got, ref, strict=True):
        assert a.size == (w, h)
        assert np.array_equal(_px(a), _px(b.resize((w, h), Image.Resampling.LANCZOS)))


@pytest.mark.parametrize("src, dst", [((96, 64), (192, 128)), ((128, 128), (125, 83)), ((120, 80), (119, 40)),
                                      ((64, 40), (61, 40)), ((300, 200), (77, 61))])
def test_lanczos_on_the_device_gives_pillows_pixels(src: tuple[int, int], dst: tuple[int, int]) -> None:
    """The decoded batch is resized to each file's size as tensor arithmetic (models.resample): the same
    bytes as Pillow's Lanczos, whichever pass order the installed Pillow takes for the size pair."""
    import torch

    from cmcodec.models.resample import resize_lanczos

    rng = np.random.default_rng(0)
    (w, h), (ow, oh) = src, dst
    batch = rng.integers(0, 256, (2, h, w, 3), dtype=np.uint8)
    batch[1] = np.clip(np.cumsum(rng.integers(-4, 5, (h, w, 3)), axis=1) + 128, 0, 255)  # smooth, clipped
    got = resize_lanczos(torch.from_numpy(batch), dst)
    assert got is not None and got.dtype == torch.uint8
    for a, b in zip(got.numpy(), batch, strict=True):
        assert np.array_equal(a, np.asarray(Image.fromarray(b).resize((ow, oh), Image.Resampling.LANCZOS)))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16"])
@pytest.mark.parametrize("codecs", [True, False])
def test_png_outputs_hold_the_image_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str,
                                            codecs: bool) -> None:
    """save_image writes PNG through imagecodecs (its encoder runs without the GIL, so writer threads encode
    in parallel) where installed, through Pillow otherwise or for other modes: the same pixels either way."""
    from cmcodec.media.fileio import save_image

    if not codecs:
        monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import fails: Pillow writes it
    else:
        pytest.importorskip("imagecodecs")
    img = Image.open(PARROTS).convert("RGB").convert(mode) if mode != "I;16" else \
        Image.fromarray((np.arange(64 * 96, dtype=np.uint16) * 7).reshape(64, 96))
    save_image(img, tmp_path / "o.png")
    with Image.open(tmp_path / "o.png") as back:
        assert back.format == "PNG" and back.mode == img.mode
        assert np.array_equal(np.asarray(back), np.asarray(img))
        if mode == "P":
            assert back.getpalette() == img.getpalette()
    assert [p.name for p in tmp_path.iterdir()] == ["o.png"]


def test_read_ahead_keeps_order_raises_the_producers_error_and_stops_when_closed() -> None:
    import threading
    import time

    from cmcodec.codec import read_ahead

    assert list(read_ahead(iter(range(50)), 3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad file")

    got = read_ahead(broken(), 2)
    assert next(got) == 1
    with pytest.raises(ValueError, match="bad file"):
        next(got)
    made: list[int] = []

    def endless():
        for i in range(10**9):
            made.append(i)
            yield i

    gen = read_ahead(endless(), 4)
    assert [next(gen) for _ in range(3)] == [0, 1, 2]
    gen.close()  # the reader thread ends instead of producing forever
    n = len(made)
    time.sleep(0.3)
    assert len(made) == n <= 3 + 4 + 2
    assert not any(t.name == "cmcodec-read-ahead" for t in threading.enumerate())


def test_batch_to_images_on_the_device_path_matches_pillow() -> None:
    """generate_batch's last step as it runs on a GPU (resize as tensor arithmetic, one copy to the host per
    output size), forced here on the CPU tensor: a batch of mixed file sizes gives Pillow's own bytes."""
    import torch

    from cmcodec.models import t2i

    batch = np.random.default_rng(3).integers(0, 256, (4, 64, 96, 3), dtype=np.uint8)
    sizes = [(192, 128), (96, 64), (130, 87), (192, 128)]
    on_device = t2i._to_images(torch.from_numpy(batch), sizes, on_device=True)
    by_pillow = t2i._to_images(torch.from_numpy(batch), sizes)  # the CPU's own path
    for a, b, arr, size in zip(on_device, by_pillow, batch, sizes, strict=True):
        ref = Image.fromarray(arr).resize(size, Image.Resampling.LANCZOS) if size != (96, 64) else Image.fromarray(arr)
        assert a.size == b.size == size
        assert np.array_equal(_px(a), _px(ref)) and np.array_equal(_px(b), _px(ref))


def test_decoded_pngs_are_written_with_the_fast_settings(tmp_path: Path) -> None:
    """zlib level 1, the RLE strategy and the Paeth filter (fileio.PNG_IMAGECODECS): the bytes are
    imagecodecs' own for those settings, and Pillow's fallback uses level 1 too; the pixels are the image's
    either way, in every mode imagecodecs writes."""
    imagecodecs = pytest.importorskip("imagecodecs")
    from cmcodec.media import fileio

    img = Image.open(PARROTS).convert("RGB")
    fileio.save_image(img, tmp_path / "o.png")
    assert (tmp_path / "o.png").read_bytes() == \
        bytes(imagecodecs.png_encode(np.asarray(img), level=1, strategy=3, filter=128))
    for mode in ("L", "RGB", "RGBA"):
        im = img.convert(mode)
        assert np.array_equal(imagecodecs.png_decode(fileio.png_bytes(im)), np.asarray(im)), mode
    pal = img.convert("P")  # a mode imagecodecs does not write: Pillow, at compress_level 1
    import io

    buf = io.BytesIO()
    pal.save(buf, format="PNG", compress_level=1)
    assert fileio.png_bytes(pal) == buf.getvalue()


def test_folder_encode_reads_each_image_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The captioner and the coder take the same decoded picture: one read of each file (in the reader
    threads), where the captioner's batch and the coder each read it before."""
    import threading

    from cmcodec import cli
    from cmcodec.media import images as images_mod
    from cmcodec.models import i2t

    src = tmp_path / "in"
    src.mkdir()
    for k in range(5):
        Image.open(PARROTS if k % 2 else HOUSE).convert("RGB").resize((96 + 8 * k, 64)).save(src / f"i{k}.png")
    reads: list[str] = []
    lock = threading.Lock()
    real = images_mod.load_image

    def counted(image, *a, **k):
        if isinstance(image, (str, Path)):
            with lock:
                reads.append(Path(image).name)
        return real(image, *a, **k)

    monkeypatch.setattr(images_mod, "load_image", counted)
    monkeypatch.setattr(codec, "load_image", counted)
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(i2t, "caption_each", lambda imgs, **kw: [seen.append(im.size) or f"a picture {im.size[0]} wide"
                                                                  for im in imgs])
    monkeypatch.setattr(i2t, "identity", lambda *a, **k: {"captioner": "test"})
    with pytest.raises(SystemExit) as e:
        cli.main(["encode", str(src), "-o", str(tmp_path / "out"), "--batch-size", "2", "--profile", "sd-turbo"])
    assert e.value.code == 0
    assert sorted(reads) == [f"i{k}.png" for k in range(5)]  # once each
    assert sorted(seen) == sorted((96 + 8 * k, 64) for k in range(5))  # every picture reached the captioner
    from cmcodec.core import bitstream, textcode

    for k in range(5):
        h = bitstream.read_header((tmp_path / "out" / f"i{k}.cmc").read_bytes())
        sec = h.section("caption")
        assert (h.width, h.height) == (96 + 8 * k, 64)
        assert textcode.decode(sec.payload, sec.coder_id) == f"a picture {96 + 8 * k} wide"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice levels are Linux's")
def test_png_writers_run_below_the_priority_of_the_thread_feeding_the_model(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder decode's writer threads take lower priority (runs.WRITER_NICENESS), so they never keep the
    thread that feeds the GPU waiting for a core; the process's own priority is left as it was."""
    import os
    import threading

    from cmcodec import cli, runs

    src = tmp_path / "cmc"
    src.mkdir()
    for k in range(3):
        (src / f"f{k}.cmc").write_bytes(cmcodec.encode(Image.open(PARROTS if k % 2 else HOUSE), mode="pixel",
                                                       profile="classic"))
    niceness: list[int] = []
    real = runs.save_image

    def save(img, path, *a, **k):
        niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(img, path, *a, **k)

    monkeypatch.setattr(runs, "save_image", save)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with pytest.raises(SystemExit) as e:
        cli.main(["decode", str(src), "-o", str(tmp_path / "out")])
    assert e.value.code == 0
    assert niceness == [min(19, mine + runs.WRITER_NICENESS)] * 3
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [f"f{k}.decoded.png" for k in range(3)]
    assert runs.writers_default() == max(1, len(os.sched_getaffinity(0)) - 2)


@pytest.mark.parametrize("mode", ["text", "auto"])
def test_folder_encode_codes_beside_the_captioner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Files of a mode whose encoder runs no model (text, pixel, image, full) are coded and written in coder
    threads while the captioner takes the next batch; auto (its ladder may hold noise, which runs the
    decoder's model) codes in the run's own thread, as does a batch of one file (its coder captions it, to
    fit its budget). Every file gets its own caption either way."""
    import threading

    from cmcodec import cli, runs
    from cmcodec.models import i2t

    src = tmp_path / "in"
    src.mkdir()
    for k in range(6):
        Image.open(PARROTS if k % 2 else HOUSE).convert("RGB").resize((96 + 8 * k, 64)).save(src / f"i{k}.png")
    monkeypatch.setattr(i2t, "caption_each", lambda imgs, **kw: [f"a picture {im.size[0]} wide" for im in imgs])
    monkeypatch.setattr(i2t, "identity", lambda *a, **k: {"captioner": "test"})
    where: list[bool] = []
    real = runs.EncodeRun.work

    def work(self, *a, **k):
        where.append(threading.current_thread() is threading.main_thread())
        return real(self, *a, **k)

    monkeypatch.setattr(runs.EncodeRun, "work", work)
    with pytest.raises(SystemExit) as e:
        cli.main(["encode", str(src), "-o", str(tmp_path / "out"), "--batch-size", "2", "--profile", "sd-turbo",
                  "--mode", mode, *(["--bpp", "0.05"] if mode == "auto" else [])])
    assert e.value.code == 0
    assert len(where) == 6 and set(where) == ({False} if mode == "text" else {True})
    from cmcodec.core import bitstream, textcode

    for k in range(6):
        h = bitstream.read_header((tmp_path / "out" / f"i{k}.cmc").read_bytes())
        sec = h.section("caption")
        assert textcode.decode(sec.payload, sec.coder_id) == f"a picture {96 + 8 * k} wide"

"""GPU speed of cmcodec's decode (T2I) and encode (I2T) paths on real-size architectures with random weights.

    python benchmarks/gpu_speed.py [--profiles sd-turbo,sd15,sdxl-turbo,realvisxl-v4] [--batches 1,8,32]
                                   [--models /tmp/cmcodec-models] [--json benchmarks/results/gpu_speed.json]

Speed does not depend on weight values, so each profile's architecture is built from the configuration of
its real checkpoint (written below: SD 2.1 / SD-Turbo, SD 1.5, SDXL / SDXL-Turbo / RealVisXL, BLIP-large)
with random weights, saved with save_pretrained (safetensors) into a local folder and loaded back through
cmcodec's own loaders (``backends.t2i.generate_batch``, ``backends.i2t.caption_batch``), exactly as a
downloaded model would be. Tokenizers are small files written here (token ids only; the encoder sizes
are real). Random captioner weights never emit end-of-sequence, so captions run to their token limit: an
upper bound on encode time. Quality is not measured (random weights). realvisxl-v4 at 1024 px, 40 steps,
CFG 7, img2img is CMC-Bench's own decoder: the seed configuration.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tokenizer-file writers shared with the tiny test models

CLIP_VOCAB = 49408


def _clip_text(kind: str):
    """CLIP text encoders of the real checkpoints: L (SD 1.5, SDXL 1st), H (SD 2.1), bigG (SDXL 2nd)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = {"L": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                     projection_dim=768, hidden_act="quick_gelu"),
           "H": dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                     projection_dim=512, hidden_act="gelu"),
           "G": dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                     projection_dim=1280, hidden_act="gelu")}[kind]
    c = CLIPTextConfig(vocab_size=CLIP_VOCAB, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                       pad_token_id=1, **cfg)
    return CLIPTextModelWithProjection(c) if kind == "G" else CLIPTextModel(c)


def _vae(xl: bool):
    """The SD / SDXL autoencoder (SDXL's config upcasts to fp32 for decoding, as the real one does)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                         block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, sample_size=1024 if xl else 512,
                         scaling_factor=0.13025 if xl else 0.18215, force_upcast=xl)


def build_pipeline(arch: str, folder: Path) -> Path:
    """Save a random-weight pipeline of a real architecture (sd21, sd15, sdxl) as fp16 safetensors."""
    import torch
    from diffusers import (
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from tiny_models import write_clip_tokenizer
    from transformers import CLIPTokenizer

    if (folder / "model_index.json").exists():
        return folder
    torch.manual_seed(0)
    write_clip_tokenizer(folder.parent / f"{arch}-tok")
    tok = CLIPTokenizer.from_pretrained(folder.parent / f"{arch}-tok")
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="trailing" if arch != "sd15" else "leading")
    with torch.device("cuda"):
        if arch == "sdxl":
            unet = UNet2DConditionModel(
                sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=2816)
            pipe = StableDiffusionXLPipeline(vae=_vae(True), text_encoder=_clip_text("L"),
                                             text_encoder_2=_clip_text("G"), tokenizer=tok, tokenizer_2=tok,
                                             unet=unet, scheduler=sched)
        else:
            sd21 = arch == "sd21"
            unet = UNet2DConditionModel(
                sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                cross_attention_dim=1024 if sd21 else 768, attention_head_dim=(5, 10, 20, 20) if sd21 else 8,
                use_linear_projection=sd21)
            pipe = StableDiffusionPipeline(vae=_vae(False), text_encoder=_clip_text("H" if sd21 else "L"),
                                           tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
                                           feature_extractor=None, requires_safety_checker=False)
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    del pipe
    torch.cuda.empty_cache()
    return folder


def build_blip_large(folder: Path) -> Path:
    """Random-weight BLIP-large captioner (ViT-L/16 at 384 px, BERT-base decoder) with a word-level tokenizer."""
    import torch
    from tiny_models import bert_wordlevel_tokenizer
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(0)
    fast = bert_wordlevel_tokenizer([f"w{i}" for i in range(200)])
    cfg = BlipConfig(
        text_config={"vocab_size": 30524, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                     "intermediate_size": 3072, "max_position_embeddings": 512, "bos_token_id": 5, "pad_token_id": 0,
                     "sep_token_id": 3, "eos_token_id": 3, "encoder_hidden_size": 1024},
        vision_config={"hidden_size": 1024, "image_size": 384, "patch_size": 16, "num_hidden_layers": 24,
                       "num_attention_heads": 16, "intermediate_size": 4096},
        projection_dim=256)
    model = BlipForConditionalGeneration(cfg).to(torch.float16)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 384, "width": 384}), tokenizer=fast
                  ).save_pretrained(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _time(fn, reps: int) -> tuple[float, float]:
    """(median seconds, peak GiB) of fn() after one warm-up call."""
    import torch

    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), torch.cuda.max_memory_allocated() / 2**30


ARCH = {"sd-turbo": "sd21", "sd15": "sd15", "sdxl-turbo": "sdxl", "realvisxl-v4": "sdxl"}


def bench_decode(profile_name: str, folder: Path, modes: list[str], batches: list[int], budget_s: float) -> list[dict]:
    """ms per image of cmcodec's T2I decode, per mode and batch size."""
    from PIL import Image

    from cmcodec.backends import t2i
    from cmcodec.profiles import get_profile

    prof = get_profile(profile_name)
    rows = []
    init = Image.new("RGB", (768, 512), (120, 110, 100))
    for mode in modes:
        for b in batches:
            items = [("a red house with white windows under a blue sky, trees around it", None if mode == "text"
                      else init, 768, 512, i) for i in range(b)]
            t0 = time.perf_counter()
            try:
                s, mem = _time(lambda items=items, mode=mode: t2i.generate_batch(prof, mode, items, device="cuda",
                                                                                 model_path=str(folder),
                                                                                 dtype="fp16"),
                               reps=3 if b == 1 else 2)
            except Exception as e:  # out of memory at a large batch: report, go on
                rows.append({"profile": profile_name, "mode": mode, "batch": b,
                             "error": f"{type(e).__name__}: {e}"[:200]})
                break
            mc = prof.mode(mode)
            rows.append({"profile": profile_name, "mode": mode, "batch": b, "steps": mc.steps,
                         "pipeline": mc.pipeline, "strength": mc.strength if mc.pipeline == "img2img" else None,
                         "size": prof.decode_size(768, 512), "ms_per_image": round(1000 * s / b, 1),
                         "images_per_s": round(b / s, 2), "peak_gib": round(mem, 2)})
            print(json.dumps(rows[-1]), flush=True)
            if time.perf_counter() - t0 > budget_s:
                break
    return rows


def bench_encode(folder: Path, batches: list[int]) -> list[dict]:
    """ms per image of cmcodec's I2T caption path (blip-large architecture)."""
    from PIL import Image

    from cmcodec.backends import i2t

    rows = []
    img = Image.new("RGB", (768, 512), (90, 140, 200))
    for b in batches:
        imgs = [img] * b
        s, mem = _time(lambda imgs=imgs: i2t.caption_batch(imgs, model="blip-large", model_path=str(folder),
                                                          device="cuda", dtype="fp16", words=20), reps=3)
        rows.append({"profile": "blip-large (encode)", "mode": "caption", "batch": b, "max_new_tokens": 40,
                     "ms_per_image": round(1000 * s / b, 1), "images_per_s": round(b / s, 2),
                     "peak_gib": round(mem, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    """Build, load, time; print the table and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", default="sd-turbo,sd15,sdxl-turbo,realvisxl-v4")
    ap.add_argument("--modes", default="text,pixel,full")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--encode-batches", default="1,16")
    ap.add_argument("--models", type=Path, default=Path("/tmp/cmcodec-models"))
    ap.add_argument("--budget-s", type=float, default=60, help="stop growing the batch of a mode after this long")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/gpu_speed.json")
    args = ap.parse_args()
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    rows: list[dict] = []
    batches = [int(x) for x in args.batches.split(",")]
    t_start = time.perf_counter()
    if args.encode_batches:
        t0 = time.perf_counter()
        blip = build_blip_large(args.models / "blip-large")
        print(f"built blip-large in {time.perf_counter() - t0:.0f} s", flush=True)
        rows += bench_encode(blip, [int(x) for x in args.encode_batches.split(",")])
    for name in [p for p in args.profiles.split(",") if p]:
        t0 = time.perf_counter()
        folder = build_pipeline(ARCH[name], args.models / ARCH[name])
        print(f"built {ARCH[name]} in {time.perf_counter() - t0:.0f} s", flush=True)
        modes = args.modes.split(",") if name != "realvisxl-v4" else ["full"]
        rows += bench_decode(name, folder, modes, batches if name != "realvisxl-v4" else [1], args.budget_s)
        t2i_cache_clear()
    import diffusers
    import transformers

    result = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "diffusers": diffusers.__version__,
              "transformers": transformers.__version__, "python": platform.python_version(), "dtype": "fp16",
              "weights": "random (real-size architectures)", "rows": rows,
              "total_s": round(time.perf_counter() - t_start, 1), "command": "python " + " ".join(sys.argv)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"\n{result['device']}, torch {result['torch']}, diffusers {result['diffusers']}, fp16, random weights")
    print(f"{'profile':<22}{'mode':<9}{'batch':>6}{'steps':>6}{'ms/img':>9}{'img/s':>8}{'peak GiB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['profile']:<22}{r['mode']:<9}{r['batch']:>6}  {r['error'][:60]}")
        else:
            print(f"{r['profile']:<22}{r['mode']:<9}{r['batch']:>6}{r.get('steps', ''):>6}{r['ms_per_image']:>9}"
                  f"{r['images_per_s']:>8}{r['peak_gib']:>9}")


def t2i_cache_clear() -> None:
    """Free the loaded pipelines before the next profile."""
    import gc

    import torch

    from cmcodec.backends import t2i

    t2i._CACHE.clear()
    gc.collect()
    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

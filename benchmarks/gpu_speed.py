"""GPU speed of cmcodec's decode (T2I) and encode (I2T) paths on real-size architectures with random weights.

    python benchmarks/gpu_speed.py [--profiles sd-turbo,sd15,sdxl-turbo,realvisxl-v4] [--batches 1,8,32]
                                   [--variants eager,channels-last,compile+cl,taesd,...] [--steps 1,2,4]
                                   [--encode-variants eager,compile,static-cache] [--encode-tokens 20,40]
                                   [--models /tmp/cmcodec-models] [--json benchmarks/results/gpu_speed/latest.json]
    python benchmarks/gpu_speed.py --summarize benchmarks/results/gpu_speed/*.json [--current 'threaded_*']  # one table
    python benchmarks/gpu_speed.py --profiles sd-turbo,realvisxl-v4,sd15-tile,sd-x4-upscaler,sana-sprint,\
        sd35-large-turbo,flux-schnell --modes text,full --batches 1,4,8,16 --max-batch-large 8 \
        --encode-batches "" --free-disk          # the decoder line-up (benchmarks/results/gpu_speed_lineup/)
    python benchmarks/gpu_speed.py --profiles sd-turbo,playground-v2.5,playground-v2,ssd-1b,sdxl-base \
        --modes text,full --batches 1,4 --encode-batches ""         # its CFG rows, saved and reloaded (same folder)
    python benchmarks/gpu_speed.py --profiles sd-turbo,sdxl-tile,dreamlike-photoreal-2,instruct-pix2pix \
        --modes text,full --batches 1,4 --encode-batches ""         # ... and its restoration rows

Speed does not depend on weight values, so each profile's architecture is built from the configuration of
its real checkpoint (written below: SD 2.1 / SD-Turbo, SD 1.5, SDXL / SDXL-Turbo / RealVisXL / Playground, SSD-1B,
InstructPix2Pix's 8-channel UNet, SDXL with an SDXL ControlNet in the folder's controlnet/, BLIP-large) with
random weights, saved with save_pretrained (safetensors) into a local folder and loaded back through
cmcodec's own loaders (``backends.t2i.generate_batch``, ``backends.i2t.caption_batch``), exactly as a
downloaded model would be. Tokenizers are small files written here (token ids only; the encoder sizes
are real). Random captioner weights never emit end-of-sequence, so captions run to their token limit: an
upper bound on encode time. Quality is not measured (random weights). realvisxl-v4 at 1024 px, 40 steps,
CFG 7, img2img is CMC-Bench's own decoder: the seed configuration. The line-up's other families (FLUX.1-schnell,
SD 3.5 Large Turbo, SANA-Sprint, ControlNet tile, x4 upscaler) are built in GPU memory instead (IN_MEMORY below).

Speed-ups are measured one at a time as variants of a profile (VARIANTS): dtype, SDPA, channels_last,
torch.compile (its start-up cost is the first call's time less a steady call), CUDA graphs (compile mode
reduce-overhead) and the tiny-autoencoder profile variants. The tiny autoencoder has TAESD's architecture.
``--steps`` measures step counts alone: the same architecture and scheduler with every mode's step count
set to each value (variant "eager@4st"); such rows are not the profile's own and never count for targets.
The JSON file is rewritten after each measured row, so a run cut off by a time limit keeps what it measured.
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


def _sdxl_unet(ssd1b: bool = False):
    """SDXL's UNet (2.57B parameters); ``ssd1b``: Segmind SSD-1B's distillation of it, with fewer transformer
    layers (down 1/2/4, up 4-4-10 / 2-1-1) and no mid block: 1.30B parameters, the 1.3B its card states."""
    from diffusers import UNet2DConditionModel

    depth = (dict(transformer_layers_per_block=[1, 2, 4], reverse_transformer_layers_per_block=[[4, 4, 10], [2, 1, 1],
                                                                                              [1, 1, 1]],
                  mid_block_type=None) if ssd1b else dict(transformer_layers_per_block=(1, 2, 10)))
    return UNet2DConditionModel(
        sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
        **depth)


def _sd15_unet(in_channels: int = 4):
    """SD 1.5's UNet (InstructPix2Pix's takes 8 input channels: the latents and the encoded condition image)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, in_channels=in_channels,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768, attention_head_dim=8)


# the saved architectures: sd21 (SD-Turbo), sd15 (SD 1.5, Dreamlike Photoreal 2), pix2pix (InstructPix2Pix), sdxl
# (SDXL base / Turbo, RealVisXL, Playground v2), sdxl-edm (Playground v2.5: SDXL with its EDM scheduler), ssd1b,
# sdxl-tile (SDXL with an SDXL ControlNet of xinsir's tile size, saved in the pipeline folder's controlnet/)
SAVED_ARCHS = ("sd21", "sd15", "pix2pix", "sdxl", "sdxl-edm", "ssd1b", "sdxl-tile")


def build_pipeline(arch: str, folder: Path, device: str = "cuda") -> Path:
    """Save a random-weight pipeline of a real architecture (SAVED_ARCHS) as fp16 safetensors; device "meta"
    builds it without memory and saves nothing (a check of the constructors)."""
    import torch
    from diffusers import (
        ControlNetModel,
        EDMDPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        StableDiffusionInstructPix2PixPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLControlNetImg2ImgPipeline,
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
                                   timestep_spacing="trailing" if arch not in ("sd15", "pix2pix") else "leading")
    if arch == "sdxl-edm":  # Playground v2.5's own scheduler (its row keeps the model's)
        sched = EDMDPMSolverMultistepScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, solver_order=2,
                                               prediction_type="epsilon", final_sigmas_type="zero")
    with torch.device(device):
        if arch in ("sdxl", "sdxl-edm", "ssd1b", "sdxl-tile"):
            unet = _sdxl_unet(ssd1b=arch == "ssd1b")
            parts = dict(vae=_vae(True), text_encoder=_clip_text("L"), text_encoder_2=_clip_text("G"), tokenizer=tok,
                         tokenizer_2=tok, unet=unet, scheduler=sched)
            pipe = (StableDiffusionXLControlNetImg2ImgPipeline(**parts, controlnet=ControlNetModel.from_unet(unet))
                    if arch == "sdxl-tile" else StableDiffusionXLPipeline(**parts))
        elif arch == "pix2pix":
            pipe = StableDiffusionInstructPix2PixPipeline(
                vae=_vae(False), text_encoder=_clip_text("L"), tokenizer=tok, unet=_sd15_unet(8), scheduler=sched,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        elif arch == "sd15":
            pipe = StableDiffusionPipeline(vae=_vae(False), text_encoder=_clip_text("L"), tokenizer=tok,
                                           unet=_sd15_unet(), scheduler=sched, safety_checker=None,
                                           feature_extractor=None, requires_safety_checker=False)
        elif arch == "sd21":
            unet = UNet2DConditionModel(
                sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
            pipe = StableDiffusionPipeline(vae=_vae(False), text_encoder=_clip_text("H"), tokenizer=tok, unet=unet,
                                           scheduler=sched, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)
        else:
            raise ValueError(f"unknown architecture {arch!r}: expected one of {', '.join(SAVED_ARCHS)}")
    if device == "meta":
        return folder
    pipe.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    del pipe
    torch.cuda.empty_cache()
    return folder


# BLIP-large's sizes (ViT-L/16 at 384 px, BERT-base decoder); TINY_BLIP keeps its vocabulary and tokenizer and
# shrinks the rest, so that a CPU test runs this benchmark's own encode path (tests/test_benchmarks.py)
BLIP_LARGE = dict(text=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
                  vision=dict(hidden_size=1024, image_size=384, patch_size=16, num_hidden_layers=24,
                              num_attention_heads=16, intermediate_size=4096))
TINY_BLIP = dict(text=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
                 vision=dict(hidden_size=16, image_size=32, patch_size=8, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32))


def build_blip_large(folder: Path, sizes: dict = BLIP_LARGE, dtype: str = "float16") -> Path:
    """Random-weight BLIP-large captioner (ViT-L/16 at 384 px, BERT-base decoder) with a word-level tokenizer
    of 200 words: the model's 30524-token vocabulary is the real one, so most of what random weights emit
    are ids the tokenizer has no word for (see CAPTION_WORDS_ONLY)."""
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
    vis = sizes["vision"]
    cfg = BlipConfig(
        text_config={"vocab_size": 30524, "max_position_embeddings": 512, "bos_token_id": 5, "pad_token_id": 0,
                     "sep_token_id": 3, "eos_token_id": 3, "encoder_hidden_size": vis["hidden_size"],
                     **sizes["text"]},
        vision_config=vis, projection_dim=256)
    model = BlipForConditionalGeneration(cfg).to(getattr(torch, dtype))
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": vis["image_size"], "width": vis["image_size"]}),
                  tokenizer=fast).save_pretrained(folder)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def caption_words_only(net, proc) -> list[int]:
    """Make random captioner weights write captions of exactly max_new_tokens words, in this benchmark only.

    Random weights choose among all 30524 ids, nearly all of which the benchmark's 200-word tokenizer has no
    word for, and may choose end-of-sequence first: the caption decodes to nothing, which cmcodec rightly
    refuses ("returned an empty caption"). Suppressing every id that is not one of the tokenizer's words
    (end-of-sequence and the other special tokens included) on the text decoder's generation config, which
    BLIP's generate hands over to, makes every step emit a word, so the generated length is the measured one.
    Returns the suppressed ids. The product path never sets this (tests/test_benchmarks.py)."""
    tok = proc.tokenizer
    words = {i for t, i in tok.get_vocab().items() if t not in tok.all_special_tokens}
    vocab = net.config.text_config.vocab_size
    suppressed = [i for i in range(vocab) if i not in words]
    for cfg in (net.generation_config, net.text_decoder.generation_config):
        cfg.suppress_tokens = suppressed
    return suppressed


def build_taesd(folder: Path) -> Path:
    """Random-weight tiny autoencoder of TAESD / TAESDXL's architecture (diffusers' AutoencoderTiny defaults)."""
    import torch
    from diffusers import AutoencoderTiny

    if (folder / "config.json").exists():
        return folder
    torch.manual_seed(0)
    AutoencoderTiny().to(torch.float16).save_pretrained(folder, safe_serialization=True)
    return folder


# Decode variants, measured one at a time on the same profile: (tiny autoencoder, channels_last, compile mode,
# dtype, attention). "no-sdpa" swaps diffusers' SDPA attention for its classic processor, to show SDPA's share.
VARIANTS: dict[str, tuple[bool, bool, str | None, str, str]] = {
    "eager": (False, False, None, "fp16", "sdpa"),
    "bf16": (False, False, None, "bf16", "sdpa"),
    "no-sdpa": (False, False, None, "fp16", "classic"),
    "channels-last": (False, True, None, "fp16", "sdpa"),
    "compile": (False, False, "default", "fp16", "sdpa"),
    "compile+cl": (False, True, "default", "fp16", "sdpa"),
    "cudagraphs": (False, False, "reduce-overhead", "fp16", "sdpa"),
    "cudagraphs+cl": (False, True, "reduce-overhead", "fp16", "sdpa"),
    "max-autotune+cl": (False, True, "max-autotune", "fp16", "sdpa"),
    "taesd": (True, False, None, "fp16", "sdpa"),
    "taesd+cl": (True, True, None, "fp16", "sdpa"),
    "taesd+compile+cl": (True, True, "default", "fp16", "sdpa"),
    "taesd+cudagraphs+cl": (True, True, "reduce-overhead", "fp16", "sdpa"),
}


def _time(fn, reps: int, device: str = "cuda") -> tuple[float, float, float]:
    """(median seconds, peak GiB, seconds of the first call) of fn(); the first call is the warm-up. Peak GiB is
    0 off CUDA (the CPU test of this benchmark's code path)."""
    import torch

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    t0 = time.perf_counter()
    fn()
    sync()
    first = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0, first


def _why(e: BaseException) -> str:
    """Exception type, message and the innermost frame, short enough for a table."""
    import traceback

    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:240] + where


ARCH = {"sd-turbo": "sd21", "sd15": "sd15", "sdxl-turbo": "sdxl", "realvisxl-v4": "sdxl", "playground-v2.5": "sdxl-edm",
        "playground-v2": "sdxl", "ssd-1b": "ssd1b", "sdxl-base": "sdxl", "dreamlike-photoreal-2": "sd15",
        "instruct-pix2pix": "pix2pix", "sdxl-tile": "sdxl-tile"}


# --- the line-up's other families: real-size architectures built on the GPU with random weights -------------
# FLUX.1-schnell (12B transformer + 4.7B T5-XXL) and SD 3.5 Large (8B + T5-XXL) are 30+ GB in bf16: saving and
# reloading them would spend most of a device session on disk traffic, so every family below is built in GPU
# memory and handed to cmcodec's decode path (t2i.generate_batch) in place of its from_pretrained step; the
# call path, schedulers, step counts and sizes are the profile rows' own. Speed does not depend on weight values.
IN_MEMORY = {"flux-schnell": "flux", "sd35-large-turbo": "sd35", "sana-sprint": "sana", "sd15-tile": "sd15-tile",
             "sd-x4-upscaler": "x4-upscaler"}


def _t5_xxl():
    """T5 v1.1 XXL's encoder (FLUX and SD3 both read it): 24 layers, d_model 4096, gated GELU."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
                                   feed_forward_proj="gated-gelu", is_gated_act=True, dense_act_fn="gelu_new"))


def _flow_vae(scaling: float, shift: float):
    """The 16-channel autoencoder of SD3 and FLUX."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, layers_per_block=2,
                         block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, sample_size=1024, scaling_factor=scaling,
                         shift_factor=shift, use_quant_conv=False, use_post_quant_conv=False)


def build_in_memory(arch: str, tok_dir: Path, device: str = "cuda"):
    """A random-weight pipeline of a real architecture, on the GPU (bf16 for the flow families, fp16 else);
    device "meta" checks the constructors without memory."""
    import diffusers
    import torch
    from tiny_models import gemma_tokenizer, t5_tokenizer, write_clip_tokenizer
    from transformers import CLIPTokenizer

    torch.manual_seed(0)
    write_clip_tokenizer(tok_dir)
    clip_tok = CLIPTokenizer.from_pretrained(tok_dir)
    dtype = torch.bfloat16 if arch in ("flux", "sd35", "sana") else torch.float16
    # schedulers outside the device context: their tables stay on the CPU, as from_pretrained leaves them
    sched = {"flux": lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
             "sd35": lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0),
             "sana": diffusers.SCMScheduler,
             "sd15-tile": lambda: diffusers.DPMSolverMultistepScheduler(beta_start=0.00085, beta_end=0.012,
                                                                        beta_schedule="scaled_linear"),
             "x4-upscaler": lambda: diffusers.DDIMScheduler(prediction_type="v_prediction")}[arch]()
    low_res = diffusers.DDPMScheduler()
    with torch.device(device):
        if arch == "flux":
            tr = diffusers.FluxTransformer2DModel(
                patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=False,
                axes_dims_rope=(16, 56, 56)).to(dtype)
            pipe = diffusers.FluxPipeline(
                scheduler=sched, vae=_flow_vae(0.3611, 0.1159).to(dtype), text_encoder=_clip_text("L").to(dtype),
                tokenizer=clip_tok, text_encoder_2=_t5_xxl().to(dtype), tokenizer_2=t5_tokenizer(), transformer=tr)
        elif arch == "sd35":
            from transformers import CLIPTextModelWithProjection

            def clip_proj(kind: str):
                te = _clip_text(kind)
                return te if kind == "G" else CLIPTextModelWithProjection(te.config)

            tr = diffusers.SD3Transformer2DModel(
                sample_size=128, patch_size=2, in_channels=16, num_layers=38, attention_head_dim=64,
                num_attention_heads=38, joint_attention_dim=4096, caption_projection_dim=2432,
                pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192, qk_norm="rms_norm").to(dtype)
            pipe = diffusers.StableDiffusion3Pipeline(
                scheduler=sched, vae=_flow_vae(1.5305, 0.0609).to(dtype),
                text_encoder=clip_proj("L").to(dtype), tokenizer=clip_tok, text_encoder_2=clip_proj("G").to(dtype),
                tokenizer_2=clip_tok, text_encoder_3=_t5_xxl().to(dtype), tokenizer_3=t5_tokenizer(), transformer=tr)
        elif arch == "sana":
            from transformers import Gemma2Config, Gemma2Model

            tr = diffusers.SanaTransformer2DModel(
                in_channels=32, out_channels=32, num_attention_heads=70, attention_head_dim=32, num_layers=20,
                num_cross_attention_heads=20, cross_attention_head_dim=112, cross_attention_dim=2240,
                caption_channels=2304, mlp_ratio=2.5, sample_size=32, patch_size=1, norm_elementwise_affine=False,
                norm_eps=1e-6, qk_norm="rms_norm_across_heads", guidance_embeds=True, guidance_embeds_scale=0.1
            ).to(dtype)
            te = Gemma2Model(Gemma2Config(vocab_size=256000, hidden_size=2304, intermediate_size=9216,
                                          num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                                          head_dim=256, pad_token_id=0, bos_token_id=2, eos_token_id=1)).to(dtype)
            vae = diffusers.AutoencoderDC(  # DC-AE f32c32 (SANA 1.0)
                encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
                upsample_block_type="interpolate", downsample_block_type="Conv",
                decoder_norm_types=("batch_norm",) * 3 + ("rms_norm",) * 3,
                decoder_act_fns=("relu",) * 3 + ("silu",) * 3, scaling_factor=0.41407).to(dtype)
            pipe = diffusers.SanaSprintPipeline(tokenizer=gemma_tokenizer(), text_encoder=te, vae=vae, transformer=tr,
                                                scheduler=sched)
        elif arch == "sd15-tile":
            unet = diffusers.UNet2DConditionModel(
                sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
                attention_head_dim=8)
            pipe = diffusers.StableDiffusionControlNetImg2ImgPipeline(
                vae=_vae(False), text_encoder=_clip_text("L"), tokenizer=clip_tok, unet=unet,
                controlnet=diffusers.ControlNetModel.from_unet(unet),
                scheduler=sched, safety_checker=None, feature_extractor=None, requires_safety_checker=False).to(dtype)
        elif arch == "x4-upscaler":
            unet = diffusers.UNet2DConditionModel(
                sample_size=128, in_channels=7, out_channels=4, block_out_channels=(256, 512, 512, 1024),
                layers_per_block=2, down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * 3,
                up_block_types=("CrossAttnUpBlock2D",) * 3 + ("UpBlock2D",), cross_attention_dim=1024,
                attention_head_dim=8, use_linear_projection=True, only_cross_attention=(True, True, True, False),
                num_class_embeds=1000)
            vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                                          block_out_channels=(128, 256, 512),
                                          down_block_types=("DownEncoderBlock2D",) * 3,
                                          up_block_types=("UpDecoderBlock2D",) * 3, scaling_factor=0.08333)
            pipe = diffusers.StableDiffusionUpscalePipeline(
                vae=vae, text_encoder=_clip_text("H"), tokenizer=clip_tok, unet=unet,
                low_res_scheduler=low_res, scheduler=sched, max_noise_level=350).to(dtype)
        else:
            raise ValueError(arch)
    pipe.set_progress_bar_config(disable=True)
    return pipe, str(dtype).removeprefix("torch.")


def install_in_memory(profile_name: str, pipe) -> None:
    """Serve pipe from t2i.load_pipelines for this profile, as from_pretrained would have loaded it (the image
    pipeline made from_pipe, the way load_pipelines makes it)."""
    import diffusers

    from cmcodec.core.profiles import get_profile
    from cmcodec.models import t2i

    prof = get_profile(profile_name)
    fam = t2i.family(prof)
    if prof.scheduler:
        pipe.scheduler = getattr(diffusers, prof.scheduler).from_config(pipe.scheduler.config,
                                                                         **prof.scheduler_kwargs)
    text, img = (pipe, None) if fam.text2img else (None, pipe)
    if fam.img2img:
        cls = diffusers.AutoPipelineForImage2Image if fam.img2img == "auto" else getattr(diffusers, fam.img2img)
        img = cls.from_pipe(pipe)
        img.set_progress_bar_config(disable=True)
    real = t2i.load_pipelines

    def load(p, *a, **k):
        return (text, img, "cuda") if p.id == prof.id else real(p, *a, **k)

    load.real = real  # type: ignore[attr-defined]
    t2i.load_pipelines = load


def bench_decode(profile_name: str, variant: str, folder: Path, taesd: Path | None, modes: list[str],
                 batches: list[int], budget_s: float, steps: int | None = None, emit=print,
                 size: tuple[int, int] = (768, 512), dtype: str | None = None, device: str = "cuda") -> list[dict]:
    """ms per image of cmcodec's T2I decode for one profile and speed-up variant, per mode and batch size;
    steps, when given, replaces every mode's step count (a few-step schedule measured on its own)."""
    from dataclasses import replace

    from PIL import Image

    from cmcodec.core.profiles import get_profile
    from cmcodec.models import t2i
    from cmcodec.models.loading import Accel

    tiny, cl, comp, vdtype, attention = VARIANTS[variant]
    dtype = dtype or vdtype
    prof = get_profile(profile_name + ("-taesd" if tiny else ""))
    label = variant
    if steps is not None:  # same pipeline cache entry (keyed by profile id): only the call's step count changes
        prof = replace(prof, modes={m: replace(mc, steps=steps) for m, mc in prof.modes.items()})
        label = f"{variant}@{steps}st"
    accel = Accel(channels_last=cl, compile=comp)
    if attention == "classic":
        from diffusers.models.attention_processor import AttnProcessor

        t2i_pipe = t2i.load_pipelines(prof, device, dtype, str(folder), None, accel)[0]
        t2i_pipe.unet.set_attn_processor(AttnProcessor())
        t2i_pipe.vae.set_attn_processor(AttnProcessor())
    rows = []
    w, h = size
    init = Image.new("RGB", size, (120, 110, 100))
    for mode in modes:
        for b in batches:
            items = [("a red house with white windows under a blue sky, trees around it", None if mode == "text"
                      else init, w, h, i) for i in range(b)]
            t0 = time.perf_counter()
            try:
                s, mem, first = _time(lambda items=items, mode=mode: t2i.generate_batch(
                    prof, mode, items, device=device, model_path=str(folder), dtype=dtype,
                    vae_path=str(taesd) if tiny else None, accel=accel), reps=5 if b == 1 else 3, device=device)
            except Exception as e:  # out of memory at a large batch, a compile failure: report, go on
                rows.append({"profile": prof.name, "variant": label, "mode": mode, "batch": b,
                             "error": _why(e)})
                emit(rows[-1])
                break
            mc = prof.mode(mode)
            rows.append({"profile": prof.name, "variant": label, "dtype": dtype, "mode": mode, "batch": b,
                         "steps": mc.steps,
                         "pipeline": mc.pipeline, "strength": mc.strength if mc.pipeline == "img2img"
                         and t2i.family(prof).strength else None,
                         "size": prof.decode_size(w, h), "ms_per_image": round(1000 * s / b, 1),
                         "images_per_s": round(b / s, 2), "peak_gib": round(mem, 2),
                         "first_call_s": round(first, 2), "startup_s": round(max(0.0, first - s), 2),
                         **({"steps_override": True} if steps is not None else {})})
            emit(rows[-1])
            if time.perf_counter() - t0 > budget_s:
                break
    return rows


class StageClock:
    """Time spent in named calls: wall seconds of each call (any thread) and, on CUDA, the span between
    CUDA events recorded on the current stream around it (the stage's place on the GPU timeline, which the
    wall time of an asynchronous launch does not show). ``wrap(obj, attr, label, gpu)`` replaces obj.attr by
    a timed call (gpu=False: a CPU stage, wall time only: events around it would time the GPU work that
    other threads queued meanwhile); ``restore()`` puts every wrapped attribute back."""

    def __init__(self, cuda: bool) -> None:
        import threading

        self.cuda, self.lock, self.walls, self.events, self.calls = cuda, threading.Lock(), {}, {}, {}
        self.undo: list[tuple] = []

    def wrap(self, obj, attr: str, label: str, gpu: bool = True) -> None:
        import functools

        import torch

        fn = getattr(obj, attr)
        had = attr in vars(obj) if hasattr(obj, "__dict__") else True

        @functools.wraps(fn)
        def timed(*a, **k):
            ev = None
            if self.cuda and gpu:
                ev = (torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                ev[0].record()
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                if ev is not None:
                    ev[1].record()
                with self.lock:
                    self.walls[label] = self.walls.get(label, 0.0) + dt
                    self.calls[label] = self.calls.get(label, 0) + 1
                    if ev is not None:
                        self.events.setdefault(label, []).append(ev)

        setattr(obj, attr, timed)
        self.undo.append((obj, attr, fn, had))

    def restore(self) -> None:
        for obj, attr, fn, had in reversed(self.undo):
            if had:
                setattr(obj, attr, fn)
            else:
                delattr(obj, attr)
        self.undo.clear()

    def reset(self) -> None:
        with self.lock:
            self.walls, self.events, self.calls = {}, {}, {}

    def totals(self) -> dict[str, dict]:
        """{label: {calls, wall_s, gpu_s (CUDA only)}} of what ran since the last reset (synchronizes)."""
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        out = {}
        for label, wall in self.walls.items():
            row = {"calls": self.calls[label], "wall_s": round(wall, 4)}
            if label in self.events:
                row["gpu_s"] = round(sum(a.elapsed_time(b) for a, b in self.events[label]) / 1000, 4)
            out[label] = row
        return out


def text_batch(profile_name: str, folder: Path, taesd: Path | None, batch: int, variant: str,
               size: tuple[int, int], dtype: str, device: str) -> tuple:
    """(profile, generate_batch keywords, items) of one text-mode batch of a decode variant."""
    from cmcodec.core.profiles import get_profile
    from cmcodec.models.loading import Accel

    tiny, cl, comp, _, _ = VARIANTS[variant]
    prof = get_profile(profile_name + ("-taesd" if tiny else ""))
    kw = dict(device=device, model_path=str(folder), dtype=dtype, vae_path=str(taesd) if tiny else None,
              accel=Accel(channels_last=cl, compile=comp))
    w, h = size
    items = [("a red house with white windows under a blue sky, trees around it", None, w, h, i) for i in range(batch)]
    return prof, kw, items


def stage_breakdown(profile_name: str, folder: Path, taesd: Path | None, batch: int, reps: int = 3,
                    size: tuple[int, int] = (768, 512), dtype: str = "fp16", device: str = "cuda",
                    variant: str = "eager") -> dict:
    """Where one text-mode generate_batch call's time goes: the text encoder, the UNet, the autoencoder's
    decode (GPU spans between CUDA events) and the conversion to the files' images (8 bits, resize, copy to
    the host, PIL), against the call's wall time; the rest is the CPU's share (tokenizer, initial noise,
    scheduler, pipeline code). Averaged over reps calls after a warm-up."""
    from cmcodec.models import t2i

    prof, kw, items = text_batch(profile_name, folder, taesd, batch, variant, size, dtype, device)
    t2i.generate_batch(prof, "text", items, **kw)  # load and warm up
    pipe = t2i.load_pipelines(prof, device, dtype, kw["model_path"], kw["vae_path"], kw["accel"])[0]
    clock = StageClock(device.startswith("cuda"))
    clock.wrap(pipe.text_encoder, "forward", "text encoder")
    clock.wrap(t2i._denoiser(pipe), "forward", "unet")
    clock.wrap(pipe.vae, "decode", "autoencoder decode")
    clock.wrap(t2i, "_to_images", "to images (8 bits, resize, to host, PIL)")
    try:
        t2i.generate_batch(prof, "text", items, **kw)  # once more with the wrappers (compiled code re-guards)
        clock.reset()
        walls = []
        for _ in range(reps):
            t0 = time.perf_counter()
            t2i.generate_batch(prof, "text", items, **kw)
            walls.append(time.perf_counter() - t0)
        stages = clock.totals()
    finally:
        clock.restore()
    wall = sum(walls) / reps
    rows = {k: {"ms_per_call": round(1000 * v.get("gpu_s", v["wall_s"]) / reps, 2),
                "share": round(v.get("gpu_s", v["wall_s"]) / reps / wall, 3), **v} for k, v in stages.items()}
    inside = sum(v.get("gpu_s", v["wall_s"]) for v in stages.values()) / reps
    return {"profile": prof.name, "variant": variant, "mode": "text", "batch": batch, "size": prof.decode_size(*size),
            "ms_per_call": round(1000 * wall, 2), "images_per_s": round(batch / wall, 2), "stages": rows,
            "outside_stages_ms": round(1000 * (wall - inside), 2),
            "note": "stage ms: GPU span between CUDA events around each call (CPU: wall); 'to images' wall "
                    "includes waiting for the GPU to finish the batch"}


def profiled(call, batch: int, cuda: bool, top: int = 25) -> dict:
    """torch.profiler over one call() after two warm-up calls: the call's wall time, the GPU's busy time (the
    kernels' durations summed; one stream, so they do not overlap), its idle share, and the ops of the
    largest own GPU time (CPU time without a GPU). What a missed goal is limited by, in numbers."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(2):
        call()
    sync()
    with profile(activities=[ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]) as p:
        t0 = time.perf_counter()
        call()
        sync()
        wall = time.perf_counter() - t0

    def own_us(e) -> float:  # own GPU time (torch >= 2.4 names it device time; older, cuda time); CPU: own CPU time
        if not cuda:
            return float(e.self_cpu_time_total)
        return float(getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0))

    ops = sorted((e for e in p.key_averages() if own_us(e) > 0), key=own_us, reverse=True)
    kernels = [e for e in p.events() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA]
    busy = sum(e.time_range.elapsed_us() for e in kernels) / 1000
    return {"batch": batch, "wall_ms": round(1000 * wall, 2), "images_per_s": round(batch / wall, 2),
            "gpu_busy_ms": round(busy, 2), "gpu_idle_share": round(max(0.0, 1 - busy / (1000 * wall)), 3),
            "kernels": len(kernels),
            "top_ops": [{"op": e.key[:100], "calls": e.count, "self_gpu_ms" if cuda else "self_cpu_ms":
                         round(own_us(e) / 1000, 2)} for e in ops[:top]],
            "note": "one call under torch.profiler (its overhead included in wall_ms); gpu_busy_ms sums the "
                    "kernels' durations"}


def trace_call(profile_name: str, folder: Path, taesd: Path | None, batch: int, variant: str,
               size: tuple[int, int] = (768, 512), dtype: str = "fp16", device: str = "cuda") -> dict:
    """profiled() over one text-mode generate_batch call of a decode variant, the compiled ones included
    (where the stage clock's wrappers would split the graphs)."""
    from cmcodec.models import t2i

    prof, kw, items = text_batch(profile_name, folder, taesd, batch, variant, size, dtype, device)
    got = profiled(lambda: t2i.generate_batch(prof, "text", items, **kw), batch, device.startswith("cuda"))
    return {"profile": prof.name, "variant": variant, **got}


ENCODE_VARIANTS = ("eager", "cpu-preproc", "compile", "cudagraphs", "cudagraphs-step", "static-cache",
                   "static-decoder")



def bench_encode(folder: Path, variant: str, batches: list[int], tokens: list[int], emit=print,
                 device: str = "cuda", dtype: str = "fp16", reps: int = 3, trace: list[int] = ()) -> list[dict]:
    """ms per image of cmcodec's I2T caption path (blip-large architecture), per generated-token count.

    caption_words_only makes the random weights write one word per token, so max_new_tokens sets the caption
    length exactly (each row records the generated length); cmcodec's default word budget (20 words) allows 40
    tokens. "cpu-preproc" keeps the image processor on the CPU (cmcodec
    resizes on the model's device where transformers' torchvision backend allows). "compile" compiles the text
    decoder (dynamic shapes),
    "cudagraphs" too with mode reduce-overhead;
    "static-cache" asks transformers' generate for a static KV cache (which it compiles where supported), on the
    captioner's generation config; "static-decoder" on its text decoder's, which BLIP's generate calls.
    """
    from PIL import Image

    from cmcodec.models import i2t
    from cmcodec.models.loading import EAGER, Accel

    # cudagraphs-step is cmcodec's own `encode --compile reduce-overhead` (Accel(compile=...) of models.i2t)
    accel = Accel(compile="reduce-overhead") if variant == "cudagraphs-step" else EAGER
    proc, net, _, _ = i2t.load("blip-large", device, dtype, str(folder), accel)
    caption_words_only(net, proc)
    if variant == "compile":
        net.text_decoder.compile(dynamic=True)
    elif variant == "cudagraphs":  # one CUDA graph per cache length, recorded on first use
        net.text_decoder.compile(mode="reduce-overhead", dynamic=True)
    elif variant == "static-cache":
        net.generation_config.cache_implementation = "static"
    elif variant == "static-decoder":  # BLIP's generate delegates to its text decoder: set it there
        net.text_decoder.generation_config.cache_implementation = "static"
    # cpu-preproc: the image processor resizes and normalizes on the CPU (i2t.PREPROCESS_ON_DEVICE off)
    device_preprocess = i2t.PREPROCESS_ON_DEVICE
    if variant == "cpu-preproc":
        i2t.PREPROCESS_ON_DEVICE = False
    lengths: list[int] = []  # sequence length of each generate call: a caption that ended early is cheaper
    generate = net.generate

    def counted(*a, **k):
        out = generate(*a, **k)
        lengths.append(int(out.shape[1]))
        return out

    net.generate = counted
    rows = []
    img = Image.new("RGB", (768, 512), (90, 140, 200))
    for n in tokens:
        for b in batches:
            imgs = [img] * b
            try:
                s, mem, first = _time(lambda imgs=imgs, n=n: i2t.caption_batch(
                    imgs, model="blip-large", model_path=str(folder), device=device, dtype=dtype, words=20,
                    max_new_tokens=n, accel=accel), reps=reps, device=device)
            except Exception as e:
                rows.append({"profile": "blip-large (encode)", "variant": variant, "mode": "caption", "batch": b,
                             "max_new_tokens": n, "error": _why(e)})
                emit(rows[-1])
                continue
            rows.append({"profile": "blip-large (encode)", "variant": variant, "mode": "caption", "batch": b,
                         "max_new_tokens": n, "ms_per_image": round(1000 * s / b, 1),
                         "images_per_s": round(b / s, 2), "peak_gib": round(mem, 2),
                         "first_call_s": round(first, 2), "startup_s": round(max(0.0, first - s), 2),
                         "sequence_length": lengths[-1]})
            emit(rows[-1])
        for b in trace:  # profiled() over one caption call: GPU busy and idle time, top ops
            imgs = [img] * b
            try:
                got = profiled(lambda imgs=imgs, n=n: i2t.caption_batch(
                    imgs, model="blip-large", model_path=str(folder), device=device, dtype=dtype, words=20,
                    max_new_tokens=n, accel=accel), b, device.startswith("cuda"))
            except Exception as e:
                got = {"batch": b, "error": _why(e)}
            rows.append({"profile": "blip-large (encode)", "variant": variant, "mode": "caption trace",
                         "max_new_tokens": n, **got})
            emit(rows[-1])
    net.generate = generate
    i2t.clear_cache()
    i2t.PREPROCESS_ON_DEVICE = device_preprocess
    return rows


class Recorder:
    """Collects rows, prints each as a JSON line and rewrites the run's JSON file after every row."""

    def __init__(self, path: Path, meta: dict) -> None:
        self.path, self.meta, self.rows, self.t0 = path, meta, [], time.perf_counter()
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, row: dict) -> None:
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        self.write()

    def write(self, done: bool = False) -> dict:
        """Write what was measured so far (complete: False until the run ends)."""
        result = {**self.meta, "rows": self.rows, "complete": done,
                  "total_s": round(time.perf_counter() - self.t0, 1)}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(self.path)
        return result


def main() -> None:
    """Build, load, time; print the table and write JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", default="sd-turbo,sd15,sdxl-turbo,realvisxl-v4")
    ap.add_argument("--variants", default="eager", help=f"decode speed-ups, one at a time: {', '.join(VARIANTS)}")
    ap.add_argument("--steps", default="", help="step counts measured alone (every mode set to each); "
                                                 "empty: the profiles' own")
    ap.add_argument("--modes", default="text,pixel,full")
    ap.add_argument("--input-size", default="768x512", help="decoded image size WxH (Kodak's by default); each "
                                                             "profile generates at its long side")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--stages", default="", help="batches at which to break a text-mode generate_batch call of "
                                                  "each profile and eager variant into stages (stage_breakdown)")
    ap.add_argument("--trace", default="", help="batches at which to profile one text-mode decode call of every "
                    "variant, and one caption call of every encode variant, with torch.profiler (profiled: GPU busy "
                    "and idle time, top ops)")
    ap.add_argument("--encode-batches", default="1,16")
    ap.add_argument("--encode-tokens", default="40", help="caption lengths in tokens (max_new_tokens)")
    ap.add_argument("--encode-variants", default="eager", help=f"captioner speed-ups: {', '.join(ENCODE_VARIANTS)}")
    ap.add_argument("--models", type=Path, default=Path("/tmp/cmcodec-models"))
    ap.add_argument("--budget-s", type=float, default=60, help="stop growing the batch of a mode after this long")
    ap.add_argument("--max-batch-large", type=int, default=4, help="largest batch of the FLUX / SD 3.5 rows")
    ap.add_argument("--free-disk", action="store_true", help="delete each saved model folder after its rows")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/gpu_speed/latest.json")
    ap.add_argument("--summarize", type=Path, nargs="+", help="print one table of these runs' JSON files and exit")
    ap.add_argument("--current", default="*", help="with --summarize: decode targets from runs matching this "
                                                     "name pattern only (runs of the current decode path)")
    args = ap.parse_args()
    if args.summarize:
        summarize(args.summarize, args.current)
        return
    import diffusers
    import torch
    import transformers

    torch.backends.cuda.matmul.allow_tf32 = True
    builds: dict[str, float] = {}
    rec = Recorder(args.json, {
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__, "diffusers": diffusers.__version__,
        "transformers": transformers.__version__, "python": platform.python_version(),
        "weights": "random (real-size architectures)", "build_s": builds, "command": "python " + " ".join(sys.argv)})
    batches = [int(x) for x in args.batches.split(",")]
    size = tuple(int(x) for x in args.input_size.lower().split("x"))
    if args.encode_batches:
        t0 = time.perf_counter()
        blip = build_blip_large(args.models / "blip-large")
        builds["blip-large"] = round(time.perf_counter() - t0, 1)
        for v in args.encode_variants.split(","):
            bench_encode(blip, v, [int(x) for x in args.encode_batches.split(",")],
                         [int(x) for x in args.encode_tokens.split(",")], emit=rec,
                         trace=[int(x) for x in args.trace.split(",") if x])
    variants = [v for v in args.variants.split(",") if v]
    step_list: list[int | None] = [int(x) for x in args.steps.split(",") if x] or [None]
    taesd = build_taesd(args.models / "taesd") if any(VARIANTS[v][0] for v in variants) else None
    from cmcodec.core.profiles import get_profile

    for name in [p for p in args.profiles.split(",") if p]:
        t0 = time.perf_counter()
        seed = name == "realvisxl-v4"  # the seed configuration is measured as it is, once
        if name in IN_MEMORY:
            try:
                pipe, dtype = build_in_memory(IN_MEMORY[name], args.models / "clip-tok")
                install_in_memory(name, pipe)
            except Exception as e:  # report, go on with the next profile
                rec({"profile": name, "variant": "eager", "mode": "build", "batch": 0, "error": _why(e)})
                t2i_cache_clear()
                continue
            builds[IN_MEMORY[name]] = round(time.perf_counter() - t0, 1)
            modes = [m for m in args.modes.split(",") if m in get_profile(name).modes] or list(get_profile(name).modes)
            nb = [b for b in batches if b <= args.max_batch_large] if name in ("flux-schnell", "sd35-large-turbo") \
                else batches
            bench_decode(name, "eager", args.models, None, modes, nb, args.budget_s, emit=rec, size=size,
                         dtype=dtype)
            del pipe
            t2i_cache_clear()
            continue
        folder = build_pipeline(ARCH[name], args.models / ARCH[name])
        builds[ARCH[name]] = round(time.perf_counter() - t0, 1)
        own = get_profile(name).modes  # a restoration row decodes image and full only
        modes = ["full"] if seed else [m for m in args.modes.split(",") if m in own] or list(own)
        for v in [] if seed or not args.stages else [v for v in variants if not VARIANTS[v][2]]:
            for b in [int(x) for x in args.stages.split(",")]:
                try:
                    got = stage_breakdown(name, folder, taesd, b, size=size, variant=v)
                except Exception as e:  # report, go on
                    got = {"profile": name, "variant": v, "batch": b, "error": _why(e)}
                rec.meta.setdefault("stages", []).append(got)
                print(json.dumps(got), flush=True)
                rec.write()
        for v in [] if seed or not args.trace else variants:
            for b in [int(x) for x in args.trace.split(",")]:
                try:
                    got = trace_call(name, folder, taesd, b, v, size=size)
                except Exception as e:  # report, go on
                    got = {"profile": name, "variant": v, "batch": b, "error": _why(e)}
                rec.meta.setdefault("traces", []).append(got)
                print(json.dumps(got), flush=True)
                rec.write()
        for v in ["eager"] if seed else variants:
            for n in [None] if seed else step_list:
                bench_decode(name, v, folder, taesd, modes, [1] if seed else batches, args.budget_s, n, emit=rec,
                             size=size)
            t2i_cache_clear()
        if args.free_disk:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    result = rec.write(done=True)
    print(f"\n{result['device']}, torch {result['torch']}, diffusers {result['diffusers']}, random weights")
    print_rows(rec.rows)


def print_rows(rows: list[dict]) -> None:
    """The table of rows (with a run column when rows carry one)."""
    run = any("run" in r for r in rows)
    print(("{:<33}".format("run") if run else "") + f"{'profile':<22}{'variant':<21}{'mode':<8}{'batch':>6}"
          f"{'steps':>6}{'ms/img':>9}{'img/s':>8}{'GiB':>7}{'start s':>8}")
    for r in rows:
        head = (f"{r['run']:<33}" if run else "") + \
            f"{r['profile']:<22}{r.get('variant', 'eager'):<21}{r['mode']:<8}{r['batch']:>6}"
        if "error" in r:
            print(f"{head}  {r['error'][:70]}")
            continue
        steps = r.get("steps", f"{r.get('max_new_tokens', '')}t")
        print(f"{head}{steps:>6}{r['ms_per_image']:>9}{r['images_per_s']:>8}{r['peak_gib']:>7}"
              f"{r.get('startup_s', ''):>8}")


def summarize(paths: list[Path], current: str = "*") -> None:
    """Print one table of several runs' JSON files and the issue's targets against them: decode targets from
    the runs whose name matches current (the runs of today's decode path), the seed and encode from all."""
    import fnmatch

    rows = []
    for p in paths:
        d = json.loads(p.read_text())
        for r in d["rows"]:
            rows.append({**r, "run": p.stem, "device": d["device"]})
    print_rows(rows)
    steps_rows = [r for r in rows if r.get("steps_override") and "error" not in r
                  and fnmatch.fnmatch(r["run"], current)]
    ok = [r for r in rows if "error" not in r and not r.get("steps_override")]  # the profiles' own settings

    def best(rs: list[dict]) -> dict | None:
        return min(rs, key=lambda r: r["ms_per_image"]) if rs else None

    def conservative(rs: list[dict]) -> tuple[float, float] | None:
        """(batch-1 ms, batched img/s): the best batch of each run, the worst run of those that repeat it."""
        runs = sorted({r["run"] for r in rs})
        b1 = [r["ms_per_image"] for r in rs if r["batch"] == 1]
        bn = [max(r["images_per_s"] for r in rs if r["run"] == run and r["batch"] > 1) for run in runs
              if any(r["run"] == run and r["batch"] > 1 for r in rs)]
        return (max(b1), min(bn)) if b1 and bn else None

    # the seed's fastest run against each variant's slowest run: ratios err on the low side
    seed = best([r for r in ok if r["profile"] == "realvisxl-v4" and r["batch"] == 1])
    print(f"\nTargets (one H100; default profile sd-turbo, default mode text; decode from runs {current}; where runs "
          "repeat a row, the slowest run of a variant and the fastest of the seed):")
    for prof in ("sd-turbo", "sd-turbo-taesd"):
        for mode in ("text", "pixel", "full"):
            rs = [r for r in ok if r["profile"] == prof and r["mode"] == mode and fnmatch.fnmatch(r["run"], current)]
            for v, size in sorted({(r.get("variant", "eager"), tuple(r["size"])) for r in rs}):
                got = conservative([r for r in rs if r.get("variant", "eager") == v and tuple(r["size"]) == size])
                if not got:
                    continue
                ms, ips = got
                line = (f"  {prof:<15}{mode:<6}{'x'.join(map(str, size)):<8}{v:<21} batch 1 {ms:>6} ms "
                        f"[{'met' if ms <= 100 else 'not met'} <=100]  batched {ips:>6} img/s "
                        f"[{'met' if ips >= 30 else 'not met'} >=30]")
                if seed:
                    line += (f"  vs seed {seed['ms_per_image'] / ms:.1f}x at batch 1, "
                             f"{seed['ms_per_image'] * ips / 1000:.1f}x batched")
                print(line)
    if seed:
        print(f"  seed configuration (realvisxl-v4, 1024 px, 40 steps, img2img): {seed['ms_per_image']} ms "
              f"({seed['run']})")
    if steps_rows:
        print(f"\nStep count alone (runs {current}; same architecture and scheduler, every mode set to N steps; "
              "img2img runs N x strength UNet steps): batch 1 ms / best batch img/s")
        for key in sorted({(r["profile"], r["mode"]) for r in steps_rows}):
            cells = []
            for n in sorted({r["steps"] for r in steps_rows if (r["profile"], r["mode"]) == key}):
                rs = [r for r in steps_rows if (r["profile"], r["mode"], r["steps"]) == (*key, n)]
                b1 = max((r["ms_per_image"] for r in rs if r["batch"] == 1), default=None)
                bn = max((r["images_per_s"] for r in rs if r["batch"] > 1), default=None)
                cells.append(f"{n} st: {b1} ms / {bn} img/s")
            print(f"  {key[0]:<15}{key[1]:<6}" + "   ".join(cells))
    enc = [r for r in ok if r["profile"].startswith("blip-large")]
    for n in sorted({r.get("max_new_tokens", 40) for r in enc}):
        rs = [r for r in enc if r.get("max_new_tokens", 40) == n]
        b1 = best([r for r in rs if r["batch"] == 1])
        ips = max((r["images_per_s"] for r in rs if r["batch"] > 1), default=0)
        if b1:
            print(f"  encode blip-large {n} tokens: batch 1 {b1['ms_per_image']} ms ({b1.get('variant', 'eager')}) "
                  f"[{'met' if b1['ms_per_image'] <= 200 else 'not met'} <=200]  batched {ips} img/s "
                  f"[{'met' if ips >= 20 else 'not met'} >=20]")


def t2i_cache_clear() -> None:
    """Free the loaded pipelines before the next profile."""
    import gc

    import torch

    from cmcodec.models import t2i

    t2i.clear_cache()
    gc.collect()
    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

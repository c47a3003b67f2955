"""Text-to-image decoding through diffusers pipelines (safetensors only, no remote code).

A profile row names its pipeline family; FAMILIES says, per family, which diffusers classes load and run it
and how the decoded guidance image and the prompt reach the pipeline call (a family is a row, not a class).
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..core.deps import version_tuple
from ..core.errors import ConfigError, ModelError
from ..core.profiles import MODEL_FREE, SPECIAL_TOKENS, Pipeline, Profile
from ..core.textcode import longest_prefix, word_prefix
from .loading import (
    EAGER,
    ENV_MODEL_DIR,
    Accel,
    Source,
    load_error,
    locate,
    pick_device,
    pick_dtype,
    require,
    revision_for,
)

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Family:
    """How one pipeline family is loaded and called."""

    loader: str  # diffusers class whose from_pretrained loads the model folder
    text2img: str | None  # class of the text mode ("auto": AutoPipelineForText2Image), None: the family has none
    img2img: str | None  # class of the image-conditioned modes, made from_pipe of the loaded one; None: the loaded
    init_args: tuple[str, ...] = ("image",)  # call arguments that receive the guidance image
    strength: bool = True  # the image pipeline starts from the noised guidance (img2img): it takes strength
    negative: bool = True  # takes negative_prompt (the distilled flow models have no classifier-free guidance)
    sequence_length: bool = False  # takes max_sequence_length: the profile's prompt_tokens is passed
    init_divisor: int = 1  # the guidance image is given at the generation size divided by this
    controlnet: bool = False  # loads the profile's ControlNet beside the model
    extra: tuple[tuple[str, Any], ...] = ()  # fixed call arguments of every call of the family


FAMILIES: dict[str, Family] = {
    # SD 1.x / 2.x and SDXL (any scheduler, EDM ones included): AutoPipelines map the folder's own class
    "sd": Family("AutoPipelineForText2Image", "auto", "auto"),
    "flux": Family("AutoPipelineForText2Image", "auto", "auto", negative=False, sequence_length=True),
    "sd3": Family("AutoPipelineForText2Image", "auto", "auto", negative=False, sequence_length=True),
    # AutoPipelines do not map SANA-Sprint. Resolution binning off: decode_size already gives the size, a
    # multiple of the autoencoder's 32, so the generation size is the profile's, as for every other family
    "sana-sprint": Family("SanaSprintPipeline", "SanaSprintPipeline", "SanaSprintImg2ImgPipeline", negative=False,
                          sequence_length=True, extra=(("use_resolution_binning", False),)),
    # restoration decoders: image-conditioned only
    "controlnet": Family("StableDiffusionControlNetImg2ImgPipeline", None, None,
                         init_args=("image", "control_image"), controlnet=True),
    # the same with SDXL's pipeline (two text encoders, size conditioning) over an SDXL folder
    "controlnet-sdxl": Family("StableDiffusionXLControlNetImg2ImgPipeline", None, None,
                              init_args=("image", "control_image"), controlnet=True),
    "pix2pix": Family("StableDiffusionInstructPix2PixPipeline", None, None, strength=False),
    "upscale-x4": Family("StableDiffusionUpscalePipeline", None, None, strength=False, init_divisor=4),
}


def family(profile: Profile) -> Family:
    """The family row of a neural profile."""
    try:
        return FAMILIES[profile.family]
    except KeyError:
        raise ModelError(f"profile {profile.name} names pipeline family {profile.family!r}: expected one of "
                         f"{', '.join(FAMILIES)}") from None


def clear_cache() -> None:
    """Forget every loaded pipeline (the next decode loads it again), freeing its memory once unreferenced."""
    with _LOCK:
        _CACHE.clear()


def _dtype_kw(version: str, dtype: Any) -> dict[str, Any]:
    """diffusers renamed torch_dtype to dtype in 0.42."""
    return {"dtype": dtype} if version_tuple(version) >= (0, 42) else {"torch_dtype": dtype}


def load_pipelines(profile: Profile, device: str | None = None, dtype: str | None = None,
                   model_path: str | None = None, vae_path: str | None = None,
                   accel: Accel = EAGER) -> tuple[Any, Any, str]:
    """(text2img, image pipeline, device) for a profile, cached; the image pipeline shares the components of
    the text one. text2img is None for the families that only restore a guidance image.

    The model loads at the profile's pinned revision (or a local pin, models.loading.revision_for; its
    autoencoder and ControlNet repos at their own pins), in float16 on GPUs with the repo's fp16 weight variant
    where it publishes one, and never with an invisible watermark."""
    if not profile.model:
        raise ModelError(f"profile {profile.name} has no generative model")
    fam = family(profile)
    rev, _ = revision_for(profile.name, profile.model, profile.revision)
    # before heavy imports: fail fast
    src = locate("T2I", profile.model, model_path, "--model-path", rev, "model_index.json")
    vae_src = None
    if profile.vae:
        vae_rev, _ = revision_for(profile.name + ":vae", profile.vae, profile.vae_revision)
        vae_src = locate("autoencoder", profile.vae, vae_path, "--vae-path", vae_rev)
    # a folder saved with save_pretrained from the whole pipeline holds its ControlNet; else the profile's own
    cn_src = None
    base = src.path if src.is_folder else src.snapshot
    if fam.controlnet and not (base and os.path.isdir(os.path.join(base, "controlnet"))):
        if not profile.controlnet:
            raise ModelError(f"profile {profile.name} is a ControlNet row without a controlnet model")
        cn_rev, _ = revision_for(profile.name + ":controlnet", profile.controlnet, profile.controlnet_revision)
        cn_src = locate("ControlNet", profile.controlnet, None, "--model-path (a pipeline folder with controlnet/)",
                        cn_rev)
    try:
        import diffusers
        import torch
    except ImportError as e:
        raise ModelError(
            f"profile {profile.name} needs diffusers and torch: pip install 'cmcodec[neural]' ({e})"
        ) from None
    require("torch", "diffusers", "transformers", "huggingface_hub")
    from huggingface_hub.utils import are_progress_bars_disabled

    if are_progress_bars_disabled():  # diffusers' loading bars ignore the hub's switch, which transformers reads
        diffusers.utils.logging.disable_progress_bar()
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype or (profile.dtype if dev.startswith("cuda") else None))
    key = (profile.id, src, vae_src, cn_src, dev, str(torch_dtype), accel)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        dkw = _dtype_kw(diffusers.__version__, torch_dtype)
        variant = profile.variant if torch_dtype == torch.float16 else None
        extra: dict[str, Any] = {}
        if vae_src:
            try:
                # TAESD repos publish no fp16 variant: full-precision files, converted to the dtype
                extra["vae"] = _from_pretrained(diffusers.AutoencoderTiny, vae_src, dkw, None)
            except Exception as e:  # same contract as the pipeline below: one line, how to supply it
                raise load_error("autoencoder", profile.vae or "", vae_src, e, "--vae-path") from None
        if cn_src:
            try:
                extra["controlnet"] = _from_pretrained(diffusers.ControlNetModel, cn_src, dkw, variant)
            except Exception as e:
                raise load_error("ControlNet", profile.controlnet or "", cn_src, e, "--model-path") from None
        try:
            # use_safetensors=True: never unpickle; no custom_pipeline: never run remote code
            pipe = _from_pretrained(getattr(diffusers, fam.loader), src, {**dkw, **profile.load_kwargs, **extra},
                                    variant)
        except Exception as e:  # diffusers raises OSError, ValueError, HF hub errors, ...: all mean "cannot load"
            raise load_error("T2I", profile.model, src, e, "--model-path") from None
        if profile.scheduler:
            cls = getattr(diffusers, profile.scheduler)
            pipe.scheduler = cls.from_config(pipe.scheduler.config, **profile.scheduler_kwargs)
        _no_watermark(pipe)
        pipe = pipe.to(dev)
        _accelerate(pipe, accel, torch)
        pipe.set_progress_bar_config(disable=True)
        t2i, img = (pipe, None) if fam.text2img else (None, pipe)
        if fam.img2img:
            cls = diffusers.AutoPipelineForImage2Image if fam.img2img == "auto" else getattr(diffusers, fam.img2img)
            img = cls.from_pipe(pipe)
            _no_watermark(img)
            img.set_progress_bar_config(disable=True)
        _CACHE[key] = (t2i, img, dev)
        return _CACHE[key]


def _denoiser(pipe: Any) -> Any:
    """The pipeline's denoising network: a UNet, or the transformer of the DiT families."""
    return pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer


def _from_pretrained(cls: Any, src: Source, kwargs: dict[str, Any], variant: str | None) -> Any:
    """cls.from_pretrained from a Source, safetensors only, with the weight variant where the copy at hand
    has it: a folder or cached listing without ``*.{variant}.*`` weights loads the full-precision files
    (converted to the asked dtype), and a hub repo that turns out to have none is loaded again without it."""
    kw = {**kwargs, **src.kwargs(), "use_safetensors": True}
    if variant and not _has_variant(src, variant):
        variant = None
    if variant is None:
        return cls.from_pretrained(src.path, **kw)
    try:
        return cls.from_pretrained(src.path, variant=variant, **kw)
    except (ValueError, OSError) as e:
        # diffusers: a pipeline raises ValueError "... variant=fp16, but no such modeling files are available"; a
        # single model (a ControlNet repo) OSError "... does not appear to have a file named x.fp16.safetensors"
        if "variant" not in str(e) and f".{variant}." not in str(e):
            raise
        return cls.from_pretrained(src.path, **kw)


def _has_variant(src: Source, variant: str) -> bool:
    """Whether the folder or cached snapshot holds weights of that variant; True when it cannot be known
    here (a download: diffusers picks the variant files the repo has, and a repo with none is retried)."""
    if src.is_folder:
        files = [p.name for p in Path(src.path).rglob("*.safetensors")]
    elif src.local_only and src.snapshot:  # what was fetched, not the repo's listing: the cache is all there is
        files = [p.name for p in Path(src.snapshot).rglob("*.safetensors")]
    else:
        return True
    return any(f.endswith(f".{variant}.safetensors") or f".{variant}-" in f for f in files)


def _no_watermark(pipe: Any) -> None:
    """Drop the invisible watermark diffusers adds to SDXL-family outputs whenever the optional
    invisible-watermark package is installed: a file must decode to the same pixels on every install."""
    if getattr(pipe, "watermark", None) is not None:
        pipe.watermark = None


def _accelerate(pipe: Any, accel: Accel, torch: Any) -> None:
    """Apply channels_last and torch.compile to the denoiser and autoencoder in place (components are shared
    with the image pipeline made from this one)."""
    net = _denoiser(pipe)
    if accel.channels_last:
        for m in (net, pipe.vae):
            m.to(memory_format=torch.channels_last)
    if accel.compile:
        # dynamic=False: one graph per batch shape; the first call of each shape pays the compile time. The
        # text encoders too: with CUDA graphs (reduce-overhead) the whole one-step path then replays graphs,
        # where an eager encoder's launches would dominate a batch-1 decode
        encoders = [getattr(pipe, a, None) for a in ("text_encoder", "text_encoder_2", "text_encoder_3")]
        for m in (net, pipe.vae.decoder, pipe.vae.encoder, *(e for e in encoders if e is not None)):
            m.compile(mode=accel.compile, dynamic=False)


def generate(profile: Profile, mode: str, *, caption: str, init: Image.Image | None, width: int, height: int,
             seed: int, device: str | None = None, model_path: str | None = None,
             dtype: str | None = None, vae_path: str | None = None, accel: Accel = EAGER) -> Image.Image:
    """Decode one image: text2img or img2img per the profile's mode row, resized to (width, height)."""
    return generate_batch(profile, mode, [(caption, init, width, height, seed)], device=device,
                          model_path=model_path, dtype=dtype, vae_path=vae_path, accel=accel)[0]


def generate_batch(profile: Profile, mode: str, items: list[tuple[str, Image.Image | None, int, int, int]],
                   *, device: str | None = None, model_path: str | None = None,
                   dtype: str | None = None, vae_path: str | None = None,
                   accel: Accel = EAGER) -> list[Image.Image]:
    """Decode several images of one mode and one generation size in one pipeline call."""
    return _batch(profile, mode, items, device, model_path, dtype, vae_path, accel, later=False)


def start_batch(profile: Profile, mode: str, items: list[tuple[str, Image.Image | None, int, int, int]],
                *, device: str | None = None, model_path: str | None = None,
                dtype: str | None = None, vae_path: str | None = None, accel: Accel = EAGER) -> PendingImages:
    """generate_batch's first half: the pipeline call, and its pixels' copy to the host queued on the device
    behind it. finish_batch(result) waits for the copy and gives the images, the same as generate_batch's.
    Between the two, the caller can start the next batch: its pipeline code runs on the CPU while the device
    still works on this one (codec.decode_many)."""
    return _batch(profile, mode, items, device, model_path, dtype, vae_path, accel, later=True)


def finish_batch(pending: PendingImages) -> list[Image.Image]:
    """The images of a start_batch call, once its pixels are on the host."""
    return _finish_images(pending)


def _batch(profile: Profile, mode: str, items: list[tuple[str, Image.Image | None, int, int, int]],
           device: str | None, model_path: str | None, dtype: str | None, vae_path: str | None, accel: Accel,
           later: bool) -> Any:
    import torch

    mc = profile.mode(mode)
    fam = family(profile)
    t2i, img, _ = load_pipelines(profile, device, dtype, model_path, vae_path, accel)
    sizes = {profile.decode_size(w, h) for _, _, w, h, _ in items}
    if len(sizes) != 1:
        raise ValueError("generate_batch takes items of one generation size")
    (gw, gh), = sizes
    prompts = [prompt_of(mc.prompt, c) for c, *_ in items]
    # initial noise from CPU generators, one per image: identical pixels for a file on any batch
    gens = [torch.Generator("cpu").manual_seed(s) for *_, s in items]
    kw: dict[str, Any] = {
        "prompt": prompts,
        "num_inference_steps": mc.steps,
        "guidance_scale": mc.guidance_scale,
        "generator": gens,
        "output_type": "pt",  # to 8 bits on the device, below: only bytes cross to the CPU
        **dict(fam.extra),
        **mc.extra,
    }
    if fam.negative and mc.guidance_scale > 1 and mc.negative_prompt:
        kw["negative_prompt"] = [mc.negative_prompt] * len(items)
    if fam.sequence_length:
        kw["max_sequence_length"] = profile.prompt_tokens
    with torch.inference_mode():
        if mc.pipeline is Pipeline.TEXT2IMG:
            if t2i is None:
                raise ModelError(f"profile {profile.name} has no text-to-image pipeline")
            out = t2i(height=gh, width=gw, **kw).images
        else:
            iw, ih = gw // fam.init_divisor, gh // fam.init_divisor
            inits = _map(lambda i: i.convert("RGB").resize((iw, ih), Image.Resampling.LANCZOS),
                         [i for _, i, *_ in items])
            if fam.strength:
                kw["strength"] = mc.strength
            if fam.init_divisor == 1 and "height" in _call_args(img):  # the size the pipeline generates at
                kw.update(height=gh, width=gw)
            out = img(**{a: inits for a in fam.init_args}, **kw).images
        pixels, sizes = _to_uint8(out, torch), [(w, h) for _, _, w, h, _ in items]
        del out  # the float batch: freed now, not held while the caller starts the next batch
        return _start_images(pixels, sizes) if later else _to_images(pixels, sizes)


def _call_args(pipe: Any) -> set[str]:
    """Names the pipeline's __call__ takes."""
    import inspect

    return set(inspect.signature(pipe.__call__).parameters)


def prompt_of(template: str, caption: str) -> str:
    """The prompt a mode's template makes of a caption (an empty caption leaves a generic prompt)."""
    return template.format(caption=caption).strip(" ,") or "a photograph"


def _to_uint8(images: Any, torch: Any) -> Any:
    """NHWC uint8 tensor of the pipeline's [0, 1] NCHW output, on its device: the arithmetic of diffusers' own
    "pil" output (float32, x 255, round half to even)."""
    return (images.permute(0, 2, 3, 1).float() * 255).round().to(torch.uint8)


@dataclass
class PendingImages:
    """A decoded batch on its way to the host: per part (the indices of the batch it holds, its 8-bit NHWC
    pixels on the host, and the size Pillow resizes them to, or None when they have their files' size), and
    the device event after the copies (None on the CPU)."""

    count: int
    parts: list[tuple[list[int], Any, tuple[int, int] | None]]
    event: Any = None


def _to_images(pixels: Any, sizes: list[tuple[int, int]], on_device: bool | None = None) -> list[Image.Image]:
    """PIL images of the batch's NHWC uint8 pixels, each resized to its file's size (spec: the decoded image
    has the original size) with Pillow's Lanczos. On an accelerator (``on_device`` defaults to "not the CPU")
    the resize is done there (models.resample, the same bytes), so that only the final bytes cross to the
    host, in one copy per output size; on the CPU, and for a size pair the installed Pillow resizes in a way
    resample does not reproduce, Pillow itself resizes, in threads (it is the faster way to those bytes on a
    CPU)."""
    return _finish_images(_start_images(pixels, sizes, on_device))


def _start_images(pixels: Any, sizes: list[tuple[int, int]], on_device: bool | None = None) -> PendingImages:
    """_to_images' device half: the resizes and the copies to page-locked host memory, queued without waiting."""
    from .resample import resize_lanczos

    if on_device is None:
        on_device = pixels.device.type != "cpu"
    parts: list[tuple[list[int], Any, tuple[int, int] | None]] = []
    by_pillow: list[int] = []
    for size in dict.fromkeys(sizes):
        idx = [i for i, s in enumerate(sizes) if s == size]
        done = None
        if on_device:
            done = resize_lanczos(pixels[idx] if len(idx) < len(sizes) else pixels, size)
        if done is None:
            by_pillow += idx
            continue
        parts.append((idx, _to_host(done), None))
    for size in dict.fromkeys(sizes[i] for i in by_pillow):
        idx = [i for i in by_pillow if sizes[i] == size]
        parts.append((idx, _to_host(pixels[idx]), size))
    event = None
    if pixels.device.type == "cuda":
        import torch

        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(pixels.device))
    return PendingImages(len(sizes), parts, event)


def _finish_images(p: PendingImages) -> list[Image.Image]:
    """_to_images' host half: wait for the copies, then the PIL images (Pillow's resizes where the device did
    none)."""
    if p.event is not None:
        p.event.synchronize()
    out: list[Image.Image | None] = [None] * p.count
    for idx, host, size in p.parts:
        arrays = list(host.numpy())
        if size is None:
            made = _map(Image.fromarray, arrays)
        else:
            made = _map(lambda a, wh=size: _fit(Image.fromarray(a), wh), arrays)
        for i, im in zip(idx, made, strict=True):
            out[i] = im
    return out  # type: ignore[return-value]


def _to_host(t: Any) -> Any:
    """A CUDA tensor's copy into page-locked host memory (from torch's caching host allocator, so reused
    batch after batch), queued on the current stream: it runs at the bus's speed instead of through a
    staging buffer, and nothing waits for it here (_finish_images waits for the event after it)."""
    if t.device.type != "cuda":
        return t.cpu()
    import torch

    out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    out.copy_(t, non_blocking=True)
    return out


def _fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The generated image resized (Lanczos) to the file's size."""
    return im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)


def _map(fn: Any, *args: list) -> list:
    """fn over the items in threads: Pillow releases the GIL while it resamples, so resizes done by Pillow
    run on all cores."""
    n = len(args[0])
    if n < 2:
        return [fn(*a) for a in zip(*args, strict=True)]
    with ThreadPoolExecutor(max_workers=min(n, os.cpu_count() or 1)) as ex:
        return list(ex.map(fn, *args))


# --- prompt length (the encoder trims; no pipeline truncates a caption) ---------------------------------------
_TOKENIZERS: dict[tuple, Any] = {}
_TOKENIZER_LOCK = threading.Lock()


def prompt_fits_surely(prompt: str, limit: int) -> bool:
    """True when no sub-word tokenizer can make more than limit tokens of prompt: each token holds at least one
    byte of its UTF-8 text (byte-level BPE and byte fallback included), plus the special tokens."""
    return len(prompt.encode("utf-8")) + SPECIAL_TOKENS <= limit


def estimate_tokens(prompt: str) -> int:
    """Conservative token count without a tokenizer, specials included: a word of n letters counts ceil(n / 3)
    tokens (CLIP's, T5's and Gemma's vocabularies hold common English words whole and split rare ones into
    pieces of 3-4 letters), every digit and punctuation mark one more."""
    n = SPECIAL_TOKENS
    for word in prompt.split():
        letters = re.sub(r"[^A-Za-z]", "", word)
        n += (len(letters) + 2) // 3 + sum(1 for ch in word if not ch.isascii() or not ch.isalpha())
    return n


def tokenizer_of(profile: Profile, model_path: str | None = None) -> Any | None:
    """The tokenizer of the profile's binding text encoder, loaded alone from wherever its model is (local
    folder, $CMCODEC_MODEL_DIR, Hugging Face cache or hub), or None when it cannot be had (then callers use
    estimate_tokens). Cached per process, failures too: a missing model is looked for once per place and
    revision (a local pin in $CMCODEC_REVISIONS names other weights, so it is part of the key)."""
    try:
        rev = revision_for(profile.name, profile.model, profile.revision)[0] if profile.model else None
    except ConfigError:  # an unreadable $CMCODEC_REVISIONS file: estimate (the decode itself reports it)
        return None
    key = (profile.id, profile.model, profile.tokenizer, model_path, os.environ.get(ENV_MODEL_DIR),
           os.environ.get("HF_HOME"), rev)
    if key not in _TOKENIZERS:
        tok = None
        if profile.model:
            try:
                src = locate("T2I", profile.model, model_path, "--model-path", rev, "model_index.json")
                from transformers import AutoTokenizer

                tok = AutoTokenizer.from_pretrained(src.path, subfolder=profile.tokenizer, **src.kwargs())
            except Exception:  # ModelError (no model), ImportError, OSError (no tokenizer files): estimate instead
                tok = None
        _TOKENIZERS[key] = tok
    return _TOKENIZERS[key]


def count_tokens(profile: Profile, prompt: str, model_path: str | None = None) -> int:
    """Tokens of prompt for the profile's binding text encoder, special tokens included (estimated without
    a tokenizer)."""
    tok = tokenizer_of(profile, model_path)
    if tok is None:
        return estimate_tokens(prompt)
    # a fast tokenizer sets its truncation state on a call: two threads at once (folder encode's coders) can
    # find it borrowed ("Already borrowed")
    with _TOKENIZER_LOCK:
        return len(tok(prompt, add_special_tokens=True, truncation=False)["input_ids"])


def fit_prompt(profile: Profile, mode: str, caption: str, model_path: str | None = None,
               fallback_words: int | None = None) -> str:
    """The longest word prefix of caption whose prompt (the mode's template filled in) the profile's text
    encoder reads whole: CLIP at most 77 tokens, T5 and Gemma the profile's prompt_tokens. Token-exact with the
    profile's own tokenizer; with none at hand, the first fallback_words words (the encoder's word limit from
    measured tokens per word) or, without that, by the conservative estimate_tokens."""
    mc = profile.mode(mode)
    limit = profile.prompt_tokens
    if not profile.model or mc.pipeline in MODEL_FREE or "{caption}" not in mc.prompt:
        return caption
    if prompt_fits_surely(prompt_of(mc.prompt, caption), limit):
        return caption  # short captions never need the tokenizer (nor a model lookup)
    words = caption.split()
    if fallback_words is not None and tokenizer_of(profile, model_path) is None:
        return caption if len(words) <= fallback_words else word_prefix(words, fallback_words)

    def fits(n: int) -> bool:
        return count_tokens(profile, prompt_of(mc.prompt, word_prefix(words, n)), model_path) <= limit

    if fits(len(words)):
        return caption
    return word_prefix(words, longest_prefix(len(words), fits) or 0)  # 0 words: the template alone

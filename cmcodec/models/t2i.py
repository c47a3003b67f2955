"""Text-to-image decoding through diffusers AutoPipelines (safetensors only, no remote code)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from ..core.errors import ModelError
from .loading import EAGER, Accel, load_error, locate, pick_device, pick_dtype
from .profiles import Profile

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _dtype_kw(version: str, dtype: Any) -> dict[str, Any]:
    """diffusers renamed torch_dtype to dtype in 0.42."""
    major, minor = (int(x) for x in version.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (0, 42) else {"torch_dtype": dtype}


def load_pipelines(profile: Profile, device: str | None = None, dtype: str | None = None,
                   model_path: str | None = None, vae_path: str | None = None,
                   accel: Accel = EAGER) -> tuple[Any, Any, str]:
    """(text2img, img2img, device) for a profile, cached; img2img shares the text2img components."""
    if not profile.model:
        raise ModelError(f"profile {profile.name} has no generative model")
    loc = locate("T2I", profile.model, model_path, "--model-path")  # before heavy imports: fail fast
    vae_loc = locate("autoencoder", profile.vae, vae_path, "--vae-path") if profile.vae else None
    try:
        import diffusers
        import torch
        from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image
    except ImportError as e:
        raise ModelError(
            f"profile {profile.name} needs diffusers and torch: pip install 'cmcodec[neural]' ({e})"
        ) from None
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    key = (profile.id, loc, vae_loc, dev, str(torch_dtype), accel)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        extra: dict[str, Any] = {}
        if vae_loc:
            try:
                extra["vae"] = diffusers.AutoencoderTiny.from_pretrained(
                    vae_loc, **_dtype_kw(diffusers.__version__, torch_dtype), use_safetensors=True)
            except Exception as e:  # same contract as the pipeline below: one line, how to supply it
                raise load_error("autoencoder", profile.vae or "", vae_loc, e, "--vae-path") from None
        try:
            # use_safetensors=True: never unpickle; no custom_pipeline: never run remote code (issue 7)
            t2i = AutoPipelineForText2Image.from_pretrained(loc, **_dtype_kw(diffusers.__version__, torch_dtype),
                                                            use_safetensors=True, **profile.load_kwargs, **extra)
        except Exception as e:  # diffusers raises OSError, ValueError, HF hub errors, ...: all mean "cannot load"
            raise load_error("T2I", profile.model, loc, e, "--model-path") from None
        if profile.scheduler:
            cls = getattr(diffusers, profile.scheduler)
            t2i.scheduler = cls.from_config(t2i.scheduler.config, **profile.scheduler_kwargs)
        t2i = t2i.to(dev)
        _accelerate(t2i, accel, torch)
        t2i.set_progress_bar_config(disable=True)
        i2i = AutoPipelineForImage2Image.from_pipe(t2i)
        i2i.set_progress_bar_config(disable=True)
        _CACHE[key] = (t2i, i2i, dev)
        return _CACHE[key]


def _accelerate(pipe: Any, accel: Accel, torch: Any) -> None:
    """Apply channels_last and torch.compile to the UNet and autoencoder in place (components are shared
    with the img2img pipeline made from this one)."""
    nets = [pipe.unet, pipe.vae]
    if accel.channels_last:
        for net in nets:
            net.to(memory_format=torch.channels_last)
    if accel.compile:
        # dynamic=False: one graph per batch shape; the first call of each shape pays the compile time
        for net in (pipe.unet, pipe.vae.decoder, pipe.vae.encoder):
            net.compile(mode=accel.compile, dynamic=False)


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
    import torch

    mc = profile.mode(mode)
    t2i, i2i, _ = load_pipelines(profile, device, dtype, model_path, vae_path, accel)
    sizes = {profile.decode_size(w, h) for _, _, w, h, _ in items}
    if len(sizes) != 1:
        raise ValueError("generate_batch takes items of one generation size")
    (gw, gh), = sizes
    prompts = [mc.prompt.format(caption=c).strip(" ,") or "a photograph" for c, *_ in items]
    # initial noise from CPU generators, one per image: identical pixels for a file on any batch
    gens = [torch.Generator("cpu").manual_seed(s) for *_, s in items]
    kw: dict[str, Any] = {
        "prompt": prompts,
        "num_inference_steps": mc.steps,
        "guidance_scale": mc.guidance_scale,
        "generator": gens,
        "output_type": "pt",  # to 8 bits on the device, below: only bytes cross to the CPU
    }
    if mc.guidance_scale > 1 and mc.negative_prompt:
        kw["negative_prompt"] = [mc.negative_prompt] * len(items)
    with torch.inference_mode():
        if mc.pipeline == "text2img":
            out = t2i(height=gh, width=gw, **kw).images
        else:
            inits = _map(lambda i: i.convert("RGB").resize((gw, gh), Image.Resampling.LANCZOS),
                         [i for _, i, *_ in items])
            out = i2i(image=inits, strength=mc.strength, **kw).images
        pixels = _to_uint8(out, torch)
    return _map(lambda a, wh: _fit(Image.fromarray(a), wh), list(pixels), [(w, h) for _, _, w, h, _ in items])


def _to_uint8(images: Any, torch: Any) -> Any:
    """NHWC uint8 array of the pipeline's [0, 1] NCHW output, the arithmetic of diffusers' own "pil" output
    (float32, x 255, round half to even) done on the device, so only bytes cross to the CPU."""
    return (images.permute(0, 2, 3, 1).float() * 255).round().to(torch.uint8).cpu().numpy()


def _fit(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The generated image resized (Lanczos) to the file's size."""
    return im if im.size == size else im.resize(size, Image.Resampling.LANCZOS)


def _map(fn: Any, *args: list) -> list:
    """fn over the items in threads: Pillow releases the GIL while it resamples, so a batch's resizes, the
    CPU side of a batched decode, run on all cores (measured: half the batched decode time on one thread)."""
    n = len(args[0])
    if n < 2:
        return [fn(*a) for a in zip(*args)]
    with ThreadPoolExecutor(max_workers=min(n, os.cpu_count() or 1)) as ex:
        return list(ex.map(fn, *args))

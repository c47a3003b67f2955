"""The decoder profile table (spec §4.4): every registered row, ``classic`` included, as plain data.

A profile id is written into every .cmc file and decides how it decodes; ids are never reused. This module is
the one place rows live: the reader checks ids against it (core.bitstream), codec.decode asks the row's mode
for its pipeline (a model-free pipeline is decoded by core.classic, any other by cmcodec.models, which keeps
only *how* to run a row: pipeline families, loading, captioners), and spec §4.4's table is generated from it
(``spec_table``, checked by tests/test_golden.py and rewritten by fixtures/make_golden.py). No torch, no
model code: importing it loads nothing heavy.

Adding a built-in row in an existing family (cmcodec.models.t2i.FAMILIES): append one ``Profile`` to
``PROFILES`` below with the next free id (a variant of an earlier row: ``_like(its name, changes)``), pinned to
the commit of its hub manifest ``fixtures/hub/<org>--<name>.json`` (added beside it, with where its licence
was read), then run ``python fixtures/make_golden.py``: it pins the row's pixel-deciding fields in
fixtures/golden/profiles.json and rewrites spec §4.4's table. Nothing else names rows.

Adding a mode (spec §3, §4.2; the noise mode was added this way):
1. core.ids: its sections. The header's u(2) mode field is full, so a new mode is a header mode plus required
   extra sections of its own (SECTION_MODES; §4.5 makes older readers refuse it by name); a new section type
   gets its id in SECTION_IDS and its coders, with the spec section that defines its payload;
2. here: the rows that decode it get a ``ModeConfig`` for it; a new way of decoding gets a ``Pipeline`` member
   (a model-free one also in MODEL_FREE, then decoded by core.classic; codec.decode sends the others to
   their runner in cmcodec.models by the pipeline, never by a profile id); the auto ladders (AUTO_NEURAL /
   AUTO_CLASSIC) if --mode auto should pick it; encoder defaults it needs in EncoderDefaults;
3. codec: its encoder in _MODE_ENCODERS (and what it writes in _smallest);
4. spec/bitstream.md and golden files of the new mode (fixtures/make_golden.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from .errors import CmcodecError, ConfigError, ProfileError
from .ids import MODE_SECTIONS, SECTION_IDS


class Pipeline(str, Enum):
    """How a mode is decoded (a str, so rows and the pinned profiles.json read as plain names)."""

    TEXT2IMG = "text2img"  # diffusion from the caption alone
    IMG2IMG = "img2img"  # diffusion from the guidance image, strength of it noised
    CLASSIC = "classic"  # no model: the guidance image upsampled (spec §7.4, §8)
    NOISE = "noise"  # the coded trajectory of spec §10 (cmcodec.models.noise), the caption as its prompt


# pipelines decoded from the bitstream alone by core.classic; codec.decode sends every other one to
# cmcodec.models (a classic decode loads no model code)
MODEL_FREE: frozenset[Pipeline] = frozenset({Pipeline.CLASSIC})


@dataclass(frozen=True)
class ModeConfig:
    """How one mode is decoded: pipeline kind and its numeric settings."""

    pipeline: Pipeline  # IMG2IMG: any image-conditioned pipeline of the family
    steps: int = 0
    strength: float = 1.0
    guidance_scale: float = 0.0
    prompt: str = "{caption}"  # template; {caption} is the decoded caption
    negative_prompt: str = ""
    # classic decoding of guidance (also used to build the img2img init image)
    upsample: str = "bicubic"
    smooth: float = 0.0  # Gaussian radius, in output pixels per guidance pixel
    # further pipeline call arguments of this mode: image_guidance_scale (InstructPix2Pix), noise_level
    # (x4 upscaler), controlnet_conditioning_scale (ControlNet)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # a row written with the plain name gets the enum member (or is refused)
        object.__setattr__(self, "pipeline", Pipeline(self.pipeline))


# --mode auto of the neural rows: full from 0.01 bpp, pixel from 0.0015 bpp, text below (README, Budgets)
AUTO_NEURAL: tuple[tuple[float, str], ...] = ((0.01, "full"), (0.0015, "pixel"), (0.0, "text"))
# ... and of rows without a generative model: image from 0.006 bpp, pixel below
AUTO_CLASSIC: tuple[tuple[float, str], ...] = ((0.006, "image"), (0.0, "pixel"))


@dataclass(frozen=True)
class EncoderDefaults:
    """What the encoder writes for this profile unless rate control or options say otherwise."""

    caption_words: int = 20  # words asked of the captioner without a budget (CMC-Bench's word budget)
    pixel_block: int = 64  # pixel map without a budget
    pixel_bits: int = 5
    ref_bpp: float = 0.02  # image reference without a budget
    # Percent of a pixel- or full-mode budget the caption may take before the guidance is sized; the
    # guidance (pixel map, image reference) gets the rest, and the caption then grows into what it leaves.
    caption_pct: int = 30
    # --mode auto: (lowest bpp, mode) rows, highest first; auto starts at the first row the budget reaches
    # and falls to the next rows' modes when a mode cannot fit (no budget: from the first row); modes the
    # profile does not decode are skipped
    auto_ladder: tuple[tuple[float, str], ...] = AUTO_NEURAL
    # largest image reference, as a fraction of the image's long side: the x4 upscaler restores 4x, so a
    # larger reference would only be shrunk again before it (the bytes would be wasted)
    ref_max_scale: float = 1.0
    # noise mode (spec §10): trajectory steps T and codebook size 2^log2_k written into its files (Turbo-DDCM's
    # T = 30 and K = 16384), and its rate without a budget
    noise_steps: int = 30
    noise_log2_k: int = 14
    noise_bpp: float = 0.02


@dataclass(frozen=True)
class Profile:
    """One decoder configuration (a row of PROFILES)."""

    id: int
    name: str
    description: str
    model: str | None  # diffusers hub id; None for profiles that need no neural model
    modes: dict[str, ModeConfig]
    long_side: int = 512
    multiple_of: int = 8
    scheduler: str | None = None  # diffusers scheduler class name; None keeps the model's own
    scheduler_kwargs: dict[str, Any] = field(default_factory=dict)
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # extra from_pretrained arguments
    vae: str | None = None  # hub id of a tiny autoencoder (AutoencoderTiny) that replaces the model's own
    encoder: EncoderDefaults = EncoderDefaults()
    family: str = "sd"  # pipeline family (cmcodec.models.t2i.FAMILIES): which diffusers classes load and run it
    controlnet: str | None = None  # hub id of the ControlNet of a ControlNet family row ("controlnet*")
    license: str = ""  # the model's licence as its model card names it (the user must accept it)
    # Tokens of prompt the binding text encoder reads, its special tokens included (CLIP: 77; T5 / Gemma:
    # the max_sequence_length the family passes), and the tokenizer subfolder that counts them. The encoder
    # trims a longer caption at a word boundary (cmcodec.models.t2i.fit_prompt), so no pipeline cuts it;
    # rate control grows a caption no further than this (codec.caption_word_limit)
    prompt_tokens: int = 77
    tokenizer: str = "tokenizer"
    dtype: str | None = None  # GPU precision unless --dtype names one (None: float16); CPUs run float32
    # The hub commit of `model` (and of `vae`, `controlnet`) the row was defined against: a profile id fixes the decoder
    # (spec §4.4), so a repo's main branch moving on must not change how existing files decode. None: not
    # known here ("unpinned", follows main; pin it locally, see models.loading.revision_for).
    revision: str | None = None
    vae_revision: str | None = None
    controlnet_revision: str | None = None  # the commit of `controlnet` (a repo of its own, pinned the same way)
    # Weight variant the repo publishes for half precision (diffusers' variant="fp16": half the download);
    # asked for only when the decoder runs in float16, and skipped where the copy at hand has none.
    variant: str | None = None
    note: str = ""  # what spec §4.4's table says beside the row (spec_table)

    def mode(self, mode: str) -> ModeConfig:
        """Settings of a mode, or ProfileError if this profile cannot decode it."""
        try:
            return self.modes[mode]
        except KeyError:
            raise ProfileError.cannot_decode(self.name, mode, tuple(self.modes), neural=bool(self.model)) from None

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """Generation size: long side scaled to long_side, both sides a multiple of multiple_of."""
        s = self.long_side / max(width, height)
        m = self.multiple_of
        return max(m, round(width * s / m) * m), max(m, round(height * s / m) * m)


# special tokens a text encoder adds to a prompt (CLIP: start and end; T5: an end; Gemma: a start; 2 covers each),
# counted in Profile.prompt_tokens
SPECIAL_TOKENS = 2

_QUALITY = "a high quality, sharp, detailed photograph"
_QUALITY_FULL = "{caption}, high quality, sharp, detailed"
_NEG = "blurry, low quality, jpeg artifacts, distorted"


def _turbo_modes() -> dict[str, ModeConfig]:
    """Mode table shared by the one-step turbo models (no classifier-free guidance)."""
    return {
        "text": ModeConfig(Pipeline.TEXT2IMG, steps=1, guidance_scale=0.0),
        "pixel": ModeConfig(Pipeline.IMG2IMG, steps=4, strength=0.8, guidance_scale=0.0, smooth=0.5),
        "image": ModeConfig(Pipeline.IMG2IMG, steps=2, strength=0.5, guidance_scale=0.0, prompt=_QUALITY),
        "full": ModeConfig(Pipeline.IMG2IMG, steps=2, strength=0.5, guidance_scale=0.0, prompt=_QUALITY_FULL),
    }


def _cfg_modes(steps: int, cfg: float) -> dict[str, ModeConfig]:
    """Mode table for classic many-step models with classifier-free guidance."""
    return {
        "text": ModeConfig(Pipeline.TEXT2IMG, steps=steps, guidance_scale=cfg, negative_prompt=_NEG),
        "pixel": ModeConfig(Pipeline.IMG2IMG, steps=steps, strength=0.8, guidance_scale=cfg, negative_prompt=_NEG,
                            smooth=0.5),
        "image": ModeConfig(Pipeline.IMG2IMG, steps=steps, strength=0.5, guidance_scale=cfg, prompt=_QUALITY,
                            negative_prompt=_NEG),
        "full": ModeConfig(Pipeline.IMG2IMG, steps=steps, strength=0.5, guidance_scale=cfg, prompt=_QUALITY_FULL,
                           negative_prompt=_NEG),
    }


def _restore_modes(steps: int, cfg: float, strength: float, **extra: Any) -> dict[str, ModeConfig]:
    """Image and full modes of a restoration decoder (the reference drives it; text and pixel modes have no
    image good enough for it)."""
    return {
        "image": ModeConfig(Pipeline.IMG2IMG, steps=steps, strength=strength, guidance_scale=cfg, prompt=_QUALITY,
                            negative_prompt=_NEG, extra=dict(extra)),
        "full": ModeConfig(Pipeline.IMG2IMG, steps=steps, strength=strength, guidance_scale=cfg, prompt=_QUALITY_FULL,
                           negative_prompt=_NEG, extra=dict(extra)),
    }


def _fast_modes(steps: int, cfg: float = 0.0, image_steps: int = 2, **extra: Any) -> dict[str, ModeConfig]:
    """Mode table of the few-step flow models (FLUX.1-schnell, SD 3.5 Turbo, SANA-Sprint): no negative prompt
    (distilled, no classifier-free guidance). Their img2img starts at step int(steps x (1 - strength)) of the
    schedule (diffusers' flow pipelines round down the steps skipped, not the steps run): index 0 is pure noise,
    so the pixel mode takes 5 steps at strength 0.8 (4 run) and the image modes 2 at 0.5 (1 run) or more."""
    return {
        "text": ModeConfig(Pipeline.TEXT2IMG, steps=steps, guidance_scale=cfg),
        "pixel": ModeConfig(Pipeline.IMG2IMG, steps=5, strength=0.8, guidance_scale=cfg, smooth=0.5, extra=dict(extra)),
        "image": ModeConfig(Pipeline.IMG2IMG, steps=image_steps, strength=0.5, guidance_scale=cfg, prompt=_QUALITY,
                            extra=dict(extra)),
        "full": ModeConfig(Pipeline.IMG2IMG, steps=image_steps, strength=0.5, guidance_scale=cfg, prompt=_QUALITY_FULL,
                           extra=dict(extra)),
    }


# Noise mode (spec §10) of the SD-class epsilon / v rows: the caption as the prompt (an empty one: the empty prompt,
# unconditional, as Turbo-DDCM runs), no classifier-free guidance (one UNet call per step); the steps and the
# codebook are in the file, the schedule in the spec
NOISE_MODE = ModeConfig(Pipeline.NOISE, guidance_scale=1.0)

_SAI_NC = "sai-nc-community (Stability AI non-commercial research community licence)"


@dataclass(frozen=True)
class _Like:
    """A row that differs from an earlier row (named ``base``) only in ``changes``."""

    base: str
    changes: dict[str, Any]


def _like(base: str, **changes: Any) -> _Like:
    return _Like(base, changes)


def _build(rows: tuple[Profile | _Like, ...]) -> tuple[Profile, ...]:
    """The table of rows in order, each ``_like`` resolved against the rows before it."""
    out: dict[str, Profile] = {}
    for r in rows:
        p = replace(out[r.base], **r.changes) if isinstance(r, _Like) else r
        out[p.name] = p
    return tuple(out.values())


PROFILES: tuple[Profile, ...] = _build((
    Profile(
        id=0,
        name="sd-turbo",
        note="default (1-bit id)",
        description="SD-Turbo (SD 2.1 distilled), 512 px, 1-4 steps: the fast default",
        model="stabilityai/sd-turbo",
        revision="1681ed09e0cff58eeb41e878a49893228b78b94c",  # fixtures/hub/stabilityai--sd-turbo.json
        variant="fp16",
        modes=_turbo_modes(),
        scheduler="EulerDiscreteScheduler",
        scheduler_kwargs={"timestep_spacing": "trailing"},
        license=_SAI_NC,
    ),
    Profile(
        id=1,
        name="classic",
        description="no neural model: pixel and image modes by classical upsampling and deblocking",
        model=None,
        encoder=EncoderDefaults(auto_ladder=AUTO_CLASSIC),
        # the guidance upsampled to the coded size (spec §7.4, §8.3) with each mode's filter and smoothing; text
        # mode has no guidance to show, so this row refuses it
        modes={
            "pixel": ModeConfig(Pipeline.CLASSIC, upsample="bicubic", smooth=0.35),
            "image": ModeConfig(Pipeline.CLASSIC, upsample="lanczos", smooth=0.0),
            "full": ModeConfig(Pipeline.CLASSIC, upsample="lanczos", smooth=0.0),
        },
        license="none (no model)",
        note="pixel, image, full decoded by classical upsampling; text refused",
    ),
    Profile(
        id=2,
        name="sdxl-turbo",
        description="SDXL-Turbo, 512 px, 1-4 steps",
        model="stabilityai/sdxl-turbo",
        revision="b0ff6e8c8d37d300d650d5f371c80d8bce29de92",  # fixtures/hub/stabilityai--sdxl-turbo.json
        variant="fp16",
        modes=_turbo_modes(),
        scheduler="EulerAncestralDiscreteScheduler",
        scheduler_kwargs={"timestep_spacing": "trailing"},
        license=_SAI_NC,
    ),
    Profile(
        id=3,
        name="sd15",
        description="Stable Diffusion 1.5, 512 px, 25 DPM-Solver++ steps, CFG 7.5",
        model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        revision="451f4fe16113bff5a5d2269ed5ad43b0592e9a14",  # fixtures/hub/stable-diffusion-v1-5--....json
        variant="fp16",
        modes={**_cfg_modes(25, 7.5), "noise": NOISE_MODE},
        scheduler="DPMSolverMultistepScheduler",
        load_kwargs={"safety_checker": None, "requires_safety_checker": False},
        license="creativeml-openrail-m",
    ),
    Profile(
        id=4,
        name="realvisxl-v4",
        note="CMC-Bench's decoder",
        description="RealVisXL V4.0 (CMC-Bench's decoder), 1024 px, 40 steps, CFG 7",
        model="SG161222/RealVisXL_V4.0",
        revision="26dfe44930964cd70d0a817b6d1cc945c130e38d",  # fixtures/hub/SG161222--RealVisXL_V4.0.json
        variant="fp16",
        modes=_cfg_modes(40, 7.0),
        long_side=1024,
        license="openrail++",
    ),
    # Tiny-autoencoder variants: the turbo rows with TAESD / TAESDXL decoding the latents (own ids: other pixels)
    _like("sd-turbo", id=5, name="sd-turbo-taesd", vae="madebyollin/taesd",
          vae_revision="931366cc24b8bc15d6f682fa2e0352f1deec397b",  # fixtures/hub/madebyollin--taesd.json
          description="sd-turbo with the tiny autoencoder TAESD: the fastest decoder, slightly softer detail",
          license=_SAI_NC + "; madebyollin/taesd: mit", note="sd-turbo with the tiny autoencoder"),
    _like("sdxl-turbo", id=6, name="sdxl-turbo-taesd", vae="madebyollin/taesdxl",
          vae_revision="b581b405a4be617b15c80368c62b65c2fea5495d",  # fixtures/hub/madebyollin--taesdxl.json
          description="sdxl-turbo with the tiny autoencoder TAESDXL",
          license=_SAI_NC + "; madebyollin/taesdxl: mit", note="sdxl-turbo with the tiny autoencoder"),
    # CMC-Bench's other decoders that diffusers loads without remote code, restoration decoders for the image
    # and full modes, and today's few-step families. Steps and guidance follow each model card's recommendation.
    Profile(
        id=7,
        name="playground-v2.5",
        note="CMC-Bench decoder; EDM scheduler",
        description="Playground v2.5 (SDXL architecture, EDM noise schedule), 1024 px, 30 steps, CFG 3",
        model="playgroundai/playground-v2.5-1024px-aesthetic",
        revision="1e032f13f2fe6db2dc49947dbdbd196e753de573",  # fixtures/hub/playgroundai--playground-v2.5-*.json
        variant="fp16",
        modes=_cfg_modes(30, 3.0),  # scheduler: the model's own EDMDPMSolverMultistepScheduler
        long_side=1024,
        license="playground-v2dot5-community",
    ),
    Profile(
        id=8,
        name="playground-v2",
        note="CMC-Bench decoder",
        description="Playground v2 (SDXL architecture), 1024 px, 30 steps, CFG 3",
        model="playgroundai/playground-v2-1024px-aesthetic",
        revision="d15bca2ba750fe73e309f3bf0639285ae7925b41",  # fixtures/hub/playgroundai--playground-v2-*.json
        variant="fp16",
        modes=_cfg_modes(30, 3.0),
        long_side=1024,
        license="playground-v2-community",
    ),
    Profile(
        id=9,
        name="ssd-1b",
        note="CMC-Bench decoder",
        description="Segmind SSD-1B (SDXL distilled to 1.3B UNet), 1024 px, 30 steps, CFG 5",
        model="segmind/SSD-1B",
        revision="60987f37e94cd59c36b1cba832b9f97b57395a10",  # fixtures/hub/segmind--SSD-1B.json
        variant="fp16",
        modes=_cfg_modes(30, 5.0),
        long_side=1024,
        license="apache-2.0",
    ),
    Profile(
        id=10,
        name="sdxl-base",
        note="CMC-Bench decoder",
        description="Stable Diffusion XL 1.0 base, 1024 px, 30 steps, CFG 5",
        model="stabilityai/stable-diffusion-xl-base-1.0",
        revision="462165984030d82259a11f4367a4eed129e94a7b",  # fixtures/hub/stabilityai--stable-diffusion-xl-*.json
        variant="fp16",
        modes=_cfg_modes(30, 5.0),
        long_side=1024,
        license="openrail++",
    ),
    Profile(
        id=11,
        name="dreamlike-photoreal-2",
        note="CMC-Bench decoder",
        description="Dreamlike Photoreal 2.0 (SD 1.5 fine-tune), 768 px, 25 DPM-Solver++ steps, CFG 7.5",
        model="dreamlike-art/dreamlike-photoreal-2.0",
        revision="d9e27ac81cfa72def39d74ca673219c349f0a0d5",  # fixtures/hub/dreamlike-art--*.json
        modes=_cfg_modes(25, 7.5),
        long_side=768,
        scheduler="DPMSolverMultistepScheduler",
        load_kwargs={"safety_checker": None, "requires_safety_checker": False},
        license="other (CreativeML OpenRAIL-M with Dreamlike's additions)",
    ),
    Profile(
        id=12,
        name="instruct-pix2pix",
        note="image and full only",
        description="InstructPix2Pix: the reference edited by an instruction, 512 px, 20 steps, CFG 7.5, "
                    "image guidance 1.5",
        model="timbrooks/instruct-pix2pix",
        revision="346c71fb13ed3a1a4a0484593b0eb5d8847dcd8e",  # fixtures/hub/timbrooks--instruct-pix2pix.json
        modes={  # no strength: the reference is a condition, image_guidance_scale weighs it
            "image": ModeConfig(Pipeline.IMG2IMG, steps=20, guidance_scale=7.5, negative_prompt=_NEG,
                                prompt="make it a sharp, detailed, high quality photograph",
                                extra={"image_guidance_scale": 1.5}),
            "full": ModeConfig(Pipeline.IMG2IMG, steps=20, guidance_scale=7.5, negative_prompt=_NEG,
                               prompt="make it a sharp, detailed, high quality photograph of {caption}",
                               extra={"image_guidance_scale": 1.5}),
        },
        family="pix2pix",
        scheduler="EulerAncestralDiscreteScheduler",
        load_kwargs={"safety_checker": None, "requires_safety_checker": False},
        license="mit",
    ),
    Profile(
        id=13,
        name="sd15-tile",
        note="image and full only",
        description="SD 1.5 with ControlNet 1.1 tile: the reference as img2img start and tile condition, "
                    "512 px, 20 steps at strength 0.75, CFG 7.5",
        model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        revision="451f4fe16113bff5a5d2269ed5ad43b0592e9a14",  # as sd15: fixtures/hub/stable-diffusion-v1-5--*.json
        variant="fp16",  # the ControlNet has none: it loads its full weights, converted
        controlnet="lllyasviel/control_v11f1e_sd15_tile",
        # main holds only a pickled diffusion_pytorch_model.bin; the safetensors conversion is the commit of its
        # refs/pr/4 branch (fixtures/hub/lllyasviel--control_v11f1e_sd15_tile.json)
        controlnet_revision="7e2607811c97dc77a6c98a4256bb7a44f5abc8b3",
        modes=_restore_modes(20, 7.5, 0.75, controlnet_conditioning_scale=1.0),
        family="controlnet",
        scheduler="DPMSolverMultistepScheduler",
        load_kwargs={"safety_checker": None, "requires_safety_checker": False},
        license="creativeml-openrail-m; ControlNet tile: openrail",
    ),
    Profile(
        id=14,
        name="sd-x4-upscaler",
        note="image and full only; reference at most 1/4 size",
        description="SD x4 upscaler: a reference coded at a quarter of the size restored 4x, 768 px out, "
                    "20 steps, CFG 7.5, noise level 20",
        model="stabilityai/stable-diffusion-x4-upscaler",
        revision="c1d3e4830bb80da091d1d94354d8852fab670b4b",  # fixtures/hub/stabilityai--stable-diffusion-x4-*.json
        modes={
            "image": ModeConfig(Pipeline.IMG2IMG, steps=20, guidance_scale=7.5, prompt=_QUALITY, negative_prompt=_NEG,
                                extra={"noise_level": 20}),
            "full": ModeConfig(Pipeline.IMG2IMG, steps=20, guidance_scale=7.5, prompt=_QUALITY_FULL,
                               negative_prompt=_NEG, extra={"noise_level": 20}),
        },
        long_side=768,
        multiple_of=32,  # the input (a quarter of this) stays a multiple of the UNet's 8
        family="upscale-x4",
        encoder=EncoderDefaults(ref_max_scale=0.25),
        license="openrail++",
    ),
    Profile(
        id=15,
        name="flux-schnell",
        note="prompt up to 256 T5 tokens",
        description="FLUX.1 [schnell] (12B rectified-flow transformer, T5-XXL), 1024 px, 4 steps, no guidance",
        model="black-forest-labs/FLUX.1-schnell",
        modes=_fast_modes(4),
        long_side=1024,
        multiple_of=16,  # 8x autoencoder, then 2x2 latent patches
        family="flux",
        dtype="bfloat16",  # trained in bf16: float16 overflows in its T5 / Gemma activations
        encoder=EncoderDefaults(caption_words=40),
        license="apache-2.0",
        prompt_tokens=256,  # schnell's T5 limit (dev takes 512)
        tokenizer="tokenizer_2",
    ),
    Profile(
        id=16,
        name="sd35-large-turbo",
        note="prompt up to 256 T5 tokens",
        description="Stable Diffusion 3.5 Large Turbo (8B MMDiT, CLIP-L/G + T5-XXL), 1024 px, 4 steps, no guidance",
        model="stabilityai/stable-diffusion-3.5-large-turbo",
        modes=_fast_modes(4),
        long_side=1024,
        multiple_of=16,
        family="sd3",
        dtype="bfloat16",  # trained in bf16: float16 overflows in its T5 / Gemma activations
        encoder=EncoderDefaults(caption_words=40),
        license="stabilityai-ai-community",
        prompt_tokens=256,  # T5 reads the caption; the CLIP encoders see its first 77 tokens by design
        tokenizer="tokenizer_3",
    ),
    Profile(
        id=17,
        name="sana-sprint",
        note="prompt up to 300 Gemma tokens",
        description="SANA-Sprint 1.6B (linear DiT, Gemma-2 text encoder, 32x DC-AE), 1024 px, 2 steps",
        model="Efficient-Large-Model/Sana_Sprint_1.6B_1024px_diffusers",
        # guidance is an embedding input of the distilled model, not CFG. Its SCM schedule has a fixed middle
        # step (intermediate_timesteps) only at 2 steps; the image modes take an even 4-step schedule instead
        modes=_fast_modes(2, 4.5, image_steps=4, intermediate_timesteps=None),
        long_side=1024,
        multiple_of=32,
        family="sana-sprint",
        dtype="bfloat16",  # trained in bf16: float16 overflows in its T5 / Gemma activations
        encoder=EncoderDefaults(caption_words=40),
        license="NSCL v2-custom (NVIDIA); Gemma terms of use",
        prompt_tokens=300,
    ),
    # The SDXL restoration decoder: SDXL base with a tile ControlNet (xinsir's, published in diffusers' layout,
    # config.json + diffusion_pytorch_model.safetensors; a ControlNetModel, so the SD 1.5 tile row's path serves
    # it with SDXL's pipeline class). Strength and conditioning scale as sd15-tile; steps and CFG as sdxl-base.
    _like(
        "sdxl-base",
        id=18,
        name="sdxl-tile",
        description="SDXL base with xinsir's tile ControlNet: the reference as img2img start and tile condition, "
                    "1024 px, 30 steps at strength 0.75, CFG 5",
        controlnet="xinsir/controlnet-tile-sdxl-1.0",
        controlnet_revision="1ae8d9529efe58f7362a987363ff86a7904dc84f",  # fixtures/hub/xinsir--*.json
        modes=_restore_modes(30, 5.0, 0.75, controlnet_conditioning_scale=1.0),
        family="controlnet-sdxl",
        license="openrail++; xinsir/controlnet-tile-sdxl-1.0: apache-2.0",
        note="image and full only",
    ),
    # SD 2.1 base: the SD 2 architecture (OpenCLIP-ViT/H text encoder, loaded as CLIPTextModel), epsilon
    # prediction at 512 px; the second row of the noise mode (spec §10), the model Turbo-DDCM codes with
    Profile(
        id=19,
        name="sd21-base",
        note="text and noise only; unpinned",
        description="Stable Diffusion 2.1 base (OpenCLIP-ViT/H text encoder), 512 px, 25 DPM-Solver++ steps, CFG 7.5",
        # unpinned: fixtures/hub/stabilityai--stable-diffusion-2-1-base.json says why
        model="stabilityai/stable-diffusion-2-1-base",
        modes={"text": _cfg_modes(25, 7.5)["text"], "noise": NOISE_MODE},
        scheduler="DPMSolverMultistepScheduler",
        license="openrail++",
    ),
))

PROFILES_BY_ID: dict[int, Profile] = {p.id: p for p in PROFILES}
PROFILES_BY_NAME: dict[str, Profile] = {p.name: p for p in PROFILES}
DEFAULT_PROFILE = "sd-turbo"


# Profile fields that decide a file's decoded pixels (spec §4.4: changing one of a row that has an id needs a
# new id instead). description and name do not; neither do the encoder defaults, which decide what is written
# and never how a written file decodes.
# revision / vae_revision / controlnet_revision name the weights themselves (a repo's main branch can move on);
# variant does not: it picks the repo's half-precision copy of the same weights, read only by float16 decodes.
DECODE_FIELDS: tuple[str, ...] = ("model", "vae", "modes", "long_side", "multiple_of", "scheduler",
                                  "scheduler_kwargs", "load_kwargs")


# pixel-deciding fields added after the first pins, with their defaults: written only where a row sets them,
# so the rows pinned before them keep their pins
LATER_DECODE_FIELDS: dict[str, Any] = {"family": "sd", "controlnet": None, "prompt_tokens": 77, "dtype": None,
                                       "revision": None, "vae_revision": None, "controlnet_revision": None}
LATER_MODE_FIELDS: dict[str, Any] = {"extra": {}}


def decode_fields(p: Profile) -> dict[str, Any]:
    """The pixel-deciding fields of a row as plain JSON data (pinned by fixtures/golden/profiles.json)."""
    out = {f: getattr(p, f) for f in DECODE_FIELDS}
    out.update({f: getattr(p, f) for f, d in LATER_DECODE_FIELDS.items() if getattr(p, f) != d})
    out["modes"] = {m: {k: v for k, v in {**asdict(mc), "pipeline": mc.pipeline.value}.items()
                        if LATER_MODE_FIELDS.get(k, object()) != v} for m, mc in p.modes.items()}
    return out


def spec_table() -> str:
    """Spec §4.4's table of registered rows, generated from PROFILES (fixtures/make_golden.py writes it into
    spec/bitstream.md; tests/test_golden.py checks the two agree)."""
    lines = ["| id | name | model | notes |", "|---|---|---|---|"]
    for p in PROFILES:
        models = " + ".join(m for m in (p.model, p.vae, p.controlnet) if m) or "none"
        lines.append(f"| {p.id} | {p.name} | {models} | {p.note} |".replace("|  |", "| |"))
    return "\n".join(lines) + "\n"


# --- user profiles (spec §4.4.1) -----------------------------------------------------------------------------
# A user profile is a row defined outside this source, in a TOML or JSON file (--profiles-file, $CMCODEC_PROFILES)
# or by an installed package's entry point (group "cmcodec.profiles"), with the fields of a built-in row. Its
# profile id is private: bit 31 set, the user's private number (0-127) in bits 30-24 and the first 24 bits of the
# SHA-256 of its definition (the pixel-deciding fields, DECODE_FIELDS) in bits 23-0. A decoder decodes such a
# file only with a definition of that number and hash; the file itself never names a model, a path or code.
ENV_PROFILES = "CMCODEC_PROFILES"  # profiles files, separated by os.pathsep
ENTRY_POINT_GROUP = "cmcodec.profiles"
PRIVATE_BIT = 1 << 31
PRIVATE_NUMBERS = 128  # private numbers 0..127 (bits 30-24)
HASH_BITS = 24
HASH_HEX = HASH_BITS // 4
# "like" starts a user row from a built-in row's way of decoding (these fields), which its own fields override
LIKE_FIELDS: tuple[str, ...] = ("modes", "long_side", "multiple_of", "scheduler", "scheduler_kwargs", "load_kwargs",
                                "encoder", "family", "prompt_tokens", "tokenizer", "dtype")


def is_private(profile_id: int) -> bool:
    """True for a private (user) profile id: 2^31 <= id < 2^32 (spec §4.4.1)."""
    return PRIVATE_BIT <= profile_id < 2 * PRIVATE_BIT


def private_id(number: int, digest: str) -> int:
    """The profile id of user profile ``number`` whose definition's SHA-256 is ``digest`` (hex)."""
    if not 0 <= number < PRIVATE_NUMBERS:
        raise ValueError(f"private number {number} outside 0..{PRIVATE_NUMBERS - 1}")
    return PRIVATE_BIT | number << HASH_BITS | int(digest[:HASH_HEX], 16)


def split_private(profile_id: int) -> tuple[int, str]:
    """(private number, definition hash as HASH_HEX hex digits) of a private profile id."""
    return (profile_id >> HASH_BITS) & (PRIVATE_NUMBERS - 1), f"{profile_id & ((1 << HASH_BITS) - 1):0{HASH_HEX}x}"


def definition_json(p: Profile) -> str:
    """The canonical text of a row's definition: its pixel-deciding fields as JSON, keys sorted, no spaces."""
    return json.dumps(decode_fields(p), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def definition_hash(p: Profile) -> str:
    """SHA-256 (hex) of definition_json: a private profile id carries its first 24 bits."""
    return hashlib.sha256(definition_json(p).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class UserRow:
    """A user profile as loaded: the row (its id private), its definition's hash and where it was defined."""

    profile: Profile
    number: int  # the private number
    digest: str  # the full SHA-256 of its definition (the id holds the first HASH_HEX digits)
    origin: str  # the file or entry point that defined it

    @property
    def short(self) -> str:
        return self.digest[:HASH_HEX]


def _kind(annotation: str, value: Any) -> Any:
    """value checked against a field's annotation (as the dataclasses spell it), ints widened to floats; raises
    TypeError saying what was expected."""
    want = annotation.replace(" | None", "")
    if value is None and annotation.endswith("| None"):
        return None
    if want == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if want == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if want == "str" and isinstance(value, str):
        return value
    if want.startswith("dict") and isinstance(value, dict):
        return dict(value)
    if want.startswith("tuple[tuple[float, str]") and isinstance(value, list) and all(
            isinstance(r, list) and len(r) == 2 and isinstance(r[0], (int, float)) and isinstance(r[1], str)
            for r in value):
        return tuple((float(b), m) for b, m in value)
    if want == "Pipeline" and value in {x.value for x in Pipeline}:
        return Pipeline(value)
    shown = {"Pipeline": "one of " + ", ".join(x.value for x in Pipeline), "int": "an integer", "float": "a number",
             "str": "a string", "tuple[tuple[float, str], ...]": "a list of [bpp, mode] pairs"}.get(want, "a table")
    raise TypeError(f"expected {shown}, found {value!r}")


def _fields_of(cls: type, data: Any, where: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword arguments of a dataclass from a table of its field names (but skip), each type-checked."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table of fields, found {data!r}")
    known = {f.name: f for f in fields(cls) if f.name not in skip}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown field {', '.join(unknown)}: expected {', '.join(known)}")
    out = {}
    for k, v in data.items():
        try:
            out[k] = _kind(str(known[k].type), v)
        except TypeError as e:
            raise ConfigError(f"{where}.{k}: {e}") from None
    return out


def _user_row(name: str, data: Any, origin: str, base: Path | None) -> UserRow:
    """One user row from its table in a profiles file (base: the file's folder, for relative model folders)."""
    where = f"{origin}: profile {name}"
    if name in PROFILES_BY_NAME:
        raise ConfigError(f"{where}: {name!r} is a built-in profile; a user profile cannot shadow a built-in row "
                          "(give it another name)")
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table of fields, found {data!r}")
    data = dict(data)
    number = data.pop("id", None)
    if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < PRIVATE_NUMBERS:
        raise ConfigError(f"{where}: id must be a private number 0..{PRIVATE_NUMBERS - 1} (spec §4.4.1: built-in "
                          f"ids cannot be taken); found {number!r}")
    kw: dict[str, Any] = {}
    like = data.pop("like", None)
    if like is not None:
        if like not in PROFILES_BY_NAME:
            raise ConfigError(f"{where}: like {like!r} is no built-in profile: expected one of "
                              f"{', '.join(PROFILES_BY_NAME)}")
        kw = {f: getattr(PROFILES_BY_NAME[like], f) for f in LIKE_FIELDS}
    modes = data.pop("modes", None)
    enc = data.pop("encoder", None)
    kw.update(_fields_of(Profile, data, where, skip=("id", "name", "note", "modes", "encoder")))
    if modes is not None:
        if not isinstance(modes, dict):
            raise ConfigError(f"{where}.modes: expected a table of modes, found {modes!r}")
        table = dict(kw.get("modes", {}))
        for m, mc in modes.items():
            got = _fields_of(ModeConfig, mc, f"{where}.modes.{m}")
            if m in table:
                table[m] = replace(table[m], **got)
            elif "pipeline" not in got:
                raise ConfigError(f"{where}.modes.{m}: pipeline is required (one of "
                                  f"{', '.join(x.value for x in Pipeline)})")
            else:
                table[m] = ModeConfig(**got)
        kw["modes"] = table
    if enc is not None:
        kw["encoder"] = replace(kw.get("encoder", EncoderDefaults()),
                                **_fields_of(EncoderDefaults, enc, f"{where}.encoder"))
    if not kw.get("model"):
        raise ConfigError(f"{where}: model is required (a hub id, or a model folder saved with save_pretrained)")
    if not kw.get("modes"):
        raise ConfigError(f"{where}: modes is required (the modes it decodes, or like = a built-in row)")
    kw.setdefault("description", f"user profile {name}")
    row = Profile(id=0, name=name, **kw)
    why = row_problem(row)
    if why:
        raise ConfigError(f"{where}: {why}")
    digest = definition_hash(row)  # of the definition as written: a folder is named as the file names it
    folder = base / row.model if base is not None and not Path(row.model).is_absolute() else None
    model = str(folder) if folder is not None and folder.is_dir() else row.model
    return UserRow(replace(row, id=private_id(number, digest), model=model), number, digest, origin)


def parse_profiles(text: str, origin: str, base: Path | None = None, fmt: str = "toml") -> list[UserRow]:
    """The user rows of a profiles file's text: a TOML (or JSON) table ``profiles`` of rows by name."""
    try:
        if fmt == "json":
            doc = json.loads(text)
        else:
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # the backport of the same parser (a dependency on Python 3.10)
                import tomli as tomllib
            doc = tomllib.loads(text)
    except ValueError as e:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ConfigError(f"{origin}: expected a {fmt.upper()} profiles file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict) or set(doc) - {"profiles"}:
        raise ConfigError(f"{origin}: expected one table 'profiles' of user profiles by name, found "
                          f"{sorted(doc) if isinstance(doc, dict) else type(doc).__name__}")
    return [_user_row(n, d, origin, base) for n, d in doc["profiles"].items()]


def read_profiles_file(path: str | Path) -> list[UserRow]:
    """The user rows of a .toml or .json profiles file (relative model folders are relative to it)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"profiles file {path}: cannot read it ({e.__class__.__name__}: {e})") from None
    return parse_profiles(text, str(path), p.resolve().parent, "json" if p.suffix.lower() == ".json" else "toml")


def _entry_point_rows() -> list[UserRow]:
    """Rows of installed packages' "cmcodec.profiles" entry points: each gives a profiles file (its path) or its
    content (a mapping), or a function returning one. Loading one imports that package: code the user
    installed, which no .cmc file can name."""
    from importlib.metadata import entry_points

    out: list[UserRow] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {ep.name} ({ep.value})"
        try:
            obj = ep.load()
            obj = obj() if callable(obj) else obj
        except Exception as e:  # a broken plugin: one line naming it
            raise ConfigError(f"{origin}: cannot load it ({e.__class__.__name__}: {e})") from None
        if isinstance(obj, (str, Path)):
            out += read_profiles_file(obj)
        elif isinstance(obj, dict):
            out += parse_profiles(json.dumps(obj), origin, None, "json")
        else:
            raise ConfigError(f"{origin}: expected a profiles file path or a mapping {{'profiles': ...}}, found "
                              f"{type(obj).__name__}")
    return out


_USER: dict[tuple, tuple[UserRow, ...]] = {}
_ENTRY_POINTS: list[UserRow] = []
_ENTRY_POINTS_READ = False


def _stamp(path: str) -> tuple[int, int]:
    """(modification time, size) of a file, (0, -1) when it cannot be seen (reading it then says why)."""
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return 0, -1
    return st.st_mtime_ns, st.st_size


def user_rows() -> tuple[UserRow, ...]:
    """Every user row: those of the files in $CMCODEC_PROFILES (which --profiles-file extends), then of entry
    points; files are read again when they change. Two rows of one name or one id are refused, unless they are
    the same definition under the same name."""
    global _ENTRY_POINTS, _ENTRY_POINTS_READ
    files = [f for f in os.environ.get(ENV_PROFILES, "").split(os.pathsep) if f]
    key = tuple((f, *_stamp(f)) for f in files)
    if key not in _USER:
        if not _ENTRY_POINTS_READ:
            _ENTRY_POINTS, _ENTRY_POINTS_READ = _entry_point_rows(), True
        rows = [r for f in files for r in read_profiles_file(f)] + _ENTRY_POINTS
        by_name: dict[str, UserRow] = {}
        by_id: dict[int, UserRow] = {}
        for r in rows:
            old = by_name.get(r.profile.name) or by_id.get(r.profile.id)
            if old is not None and (old.profile.name, old.profile.id) != (r.profile.name, r.profile.id):
                raise ConfigError(f"user profile {r.profile.name} (private id {r.number}, definition {r.short}, "
                                  f"{r.origin}) clashes with {old.profile.name} (private id {old.number}, "
                                  f"definition {old.short}, {old.origin}): one name and one definition each")
            by_name.setdefault(r.profile.name, r)
            by_id.setdefault(r.profile.id, r)
        _USER[key] = tuple(by_name.values())
    return _USER[key]


def add_profiles_files(paths: Iterable[str | Path]) -> None:
    """Make the user rows of these files known to this process and to the processes it starts (they are put
    first in $CMCODEC_PROFILES), each file checked now."""
    new = [str(p) for p in paths]
    for p in new:
        read_profiles_file(p)
    old = [x for x in os.environ.get(ENV_PROFILES, "").split(os.pathsep) if x]
    os.environ[ENV_PROFILES] = os.pathsep.join(dict.fromkeys([*new, *old]))


def _private(profile_id: int) -> Profile:
    """The user row of a private id, or the one-line refusal of spec §4.4.1."""
    number, h = split_private(profile_id)
    rows = user_rows()
    for r in rows:
        if r.profile.id == profile_id:
            return r.profile
    same = [r for r in rows if r.number == number]
    if same:
        here = "; ".join(f"{r.profile.name} (from {r.origin}) has definition {r.short}" for r in same)
        raise ProfileError(f"the file was written with user profile {number} of definition {h}; here user profile "
                           f"{number} {here}: the definitions differ, so it is not decoded (spec §4.4.1)")
    raise ProfileError(f"the file needs user profile {number} of definition {h}, which no profiles file here "
                       f"defines: pass --profiles-file (or ${ENV_PROFILES}) with the definition it was written with")


def user_row(p: Profile) -> UserRow | None:
    """The user row of a profile (None for a built-in one)."""
    if not is_private(p.id):
        return None
    return next((r for r in user_rows() if r.profile.id == p.id), None)


def definition_tag(name: str) -> str:
    """``@<definition hash>`` of a user profile's name, "" for a built-in one: what names the outputs a run makes
    with it (evaluate's runs, rd-curve's curves), so that another definition never reuses them."""
    if name in PROFILES_BY_NAME:
        return ""
    u = user_row(get_profile(name))
    return f"@{u.short}" if u else ""


def name_of(profile_id: int) -> str:
    """The name of a profile id: a built-in row's, a known user row's, ``user-<number>:<hash>`` for another
    private id, ``unknown-<id>`` otherwise."""
    p = PROFILES_BY_ID.get(profile_id)
    if p is not None:
        return p.name
    if is_private(profile_id):
        try:
            return _private(profile_id).name
        except CmcodecError:  # not defined here (or a profiles file that cannot be read): the id's parts
            number, h = split_private(profile_id)
            return f"user-{number}:{h}"
    return f"unknown-{profile_id}"


def get_profile(key: str | int | Profile | None) -> Profile:
    """Profile by name or id, built-in or user (None gives the default); unknown keys raise ProfileError."""
    if isinstance(key, Profile):
        return key
    if key is None:
        key = DEFAULT_PROFILE
    if isinstance(key, int):
        if key in PROFILES_BY_ID:
            return PROFILES_BY_ID[key]
        if is_private(key):
            return _private(key)
    elif key in PROFILES_BY_NAME:
        return PROFILES_BY_NAME[key]
    else:
        for r in user_rows():
            if r.profile.name == key:
                return r.profile
    names = [*PROFILES_BY_NAME, *(r.profile.name for r in user_rows())]
    raise ProfileError(f"unknown profile {key!r}: expected one of {', '.join(names)}")


def row_problem(p: Profile) -> str | None:
    """What makes a row unusable (its encoder data, its modes), or None."""
    e = p.encoder
    if not 0 <= e.caption_pct <= 100:
        return f"caption_pct must be 0..100; found {e.caption_pct}"
    bpps = [b for b, _ in e.auto_ladder]
    if not bpps or bpps != sorted(bpps, reverse=True) or bpps[-1] != 0.0:
        return "auto_ladder needs bpp thresholds from highest down to 0.0"
    if not any(m in p.modes for _, m in e.auto_ladder):  # modes the row cannot decode are skipped
        return "auto_ladder names no mode the row decodes"
    if not p.modes:
        return "the row decodes no mode"
    for m, mc in p.modes.items():
        if m not in MODE_SECTIONS:
            return f"unknown mode {m!r}: expected one of {', '.join(MODE_SECTIONS)}"
        if mc.pipeline in MODEL_FREE and not set(MODE_SECTIONS[m]) - {SECTION_IDS["caption"]}:
            return f"a model-free pipeline needs guidance; {m} mode has none"
        if mc.pipeline not in MODEL_FREE and not p.model:
            return f"{m} mode runs a {mc.pipeline.value} pipeline but the row names no model"
    if p.prompt_tokens < 3:
        return "prompt_tokens must leave room for a caption"
    return None


def _check_rows() -> None:
    """Every built-in row is usable and has its own id and name: raised at import, so a bad row fails every
    test at once."""
    if len(PROFILES_BY_ID) != len(PROFILES) or len(PROFILES_BY_NAME) != len(PROFILES):
        raise RuntimeError("two profile rows share an id or a name (spec §4.4: ids are never reused)")
    for p in PROFILES:
        why = row_problem(p)
        if why:
            raise RuntimeError(f"profile {p.name}: {why}")


_check_rows()

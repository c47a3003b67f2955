"""Decoder profiles: named decoder configurations as data rows with fixed numeric ids (spec §4.4).

A profile id is written into every .cmc file and decides how it is decoded; ids are never reused.
Rows are plain data: no model is loaded at import time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..core.errors import ProfileError
from ..core.ids import PROFILE_NAMES


@dataclass(frozen=True)
class ModeConfig:
    """How one mode is decoded: pipeline kind and its numeric settings."""

    pipeline: str  # "text2img", "img2img" or "classic"
    steps: int = 0
    strength: float = 1.0
    guidance_scale: float = 0.0
    prompt: str = "{caption}"  # template; {caption} is the decoded caption
    negative_prompt: str = ""
    # classic decoding of guidance (also used to build the img2img init image)
    upsample: str = "bicubic"
    smooth: float = 0.0  # Gaussian radius, in output pixels per guidance pixel


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
    # Tokens of prompt the binding text encoder reads, its special tokens included (CLIP: 77); rate control
    # grows a caption no further than this (codec.caption_word_limit)
    prompt_tokens: int = 77

    def mode(self, mode: str) -> ModeConfig:
        """Settings of a mode, or ProfileError if this profile cannot decode it."""
        try:
            return self.modes[mode]
        except KeyError:
            hint = " (it has no generative model; use a neural profile such as sd-turbo)" if not self.model else ""
            raise ProfileError(
                f"profile {self.name} cannot decode {mode} mode{hint}: it decodes {', '.join(self.modes)}"
            ) from None

    def decode_size(self, width: int, height: int) -> tuple[int, int]:
        """Generation size: long side scaled to long_side, both sides a multiple of multiple_of."""
        s = self.long_side / max(width, height)
        m = self.multiple_of
        return max(m, round(width * s / m) * m), max(m, round(height * s / m) * m)


_QUALITY = "a high quality, sharp, detailed photograph"
_QUALITY_FULL = "{caption}, high quality, sharp, detailed"
_NEG = "blurry, low quality, jpeg artifacts, distorted"


def _turbo_modes() -> dict[str, ModeConfig]:
    """Mode table shared by the one-step turbo models (no classifier-free guidance)."""
    return {
        "text": ModeConfig("text2img", steps=1, guidance_scale=0.0),
        "pixel": ModeConfig("img2img", steps=4, strength=0.8, guidance_scale=0.0, smooth=0.5),
        "image": ModeConfig("img2img", steps=2, strength=0.5, guidance_scale=0.0, prompt=_QUALITY),
        "full": ModeConfig("img2img", steps=2, strength=0.5, guidance_scale=0.0, prompt=_QUALITY_FULL),
    }


def _cfg_modes(steps: int, cfg: float) -> dict[str, ModeConfig]:
    """Mode table for classic many-step models with classifier-free guidance."""
    return {
        "text": ModeConfig("text2img", steps=steps, guidance_scale=cfg, negative_prompt=_NEG),
        "pixel": ModeConfig("img2img", steps=steps, strength=0.8, guidance_scale=cfg, negative_prompt=_NEG,
                            smooth=0.5),
        "image": ModeConfig("img2img", steps=steps, strength=0.5, guidance_scale=cfg, prompt=_QUALITY,
                            negative_prompt=_NEG),
        "full": ModeConfig("img2img", steps=steps, strength=0.5, guidance_scale=cfg, prompt=_QUALITY_FULL,
                           negative_prompt=_NEG),
    }


PROFILES: tuple[Profile, ...] = (
    Profile(
        id=0,
        name="sd-turbo",
        description="SD-Turbo (SD 2.1 distilled), 512 px, 1-4 steps: the fast default",
        model="stabilityai/sd-turbo",
        modes=_turbo_modes(),
        scheduler="EulerDiscreteScheduler",
        scheduler_kwargs={"timestep_spacing": "trailing"},
    ),
    Profile(
        id=1,
        name="classic",
        description="no neural model: pixel and image modes by classical upsampling and deblocking",
        model=None,
        encoder=EncoderDefaults(auto_ladder=AUTO_CLASSIC),
        modes={
            "pixel": ModeConfig("classic", upsample="bicubic", smooth=0.35),
            "image": ModeConfig("classic", upsample="lanczos", smooth=0.0),
            "full": ModeConfig("classic", upsample="lanczos", smooth=0.0),
        },
    ),
    Profile(
        id=2,
        name="sdxl-turbo",
        description="SDXL-Turbo, 512 px, 1-4 steps",
        model="stabilityai/sdxl-turbo",
        modes=_turbo_modes(),
        scheduler="EulerAncestralDiscreteScheduler",
        scheduler_kwargs={"timestep_spacing": "trailing"},
    ),
    Profile(
        id=3,
        name="sd15",
        description="Stable Diffusion 1.5, 512 px, 25 DPM-Solver++ steps, CFG 7.5",
        model="stable-diffusion-v1-5/stable-diffusion-v1-5",
        modes=_cfg_modes(25, 7.5),
        scheduler="DPMSolverMultistepScheduler",
        load_kwargs={"safety_checker": None, "requires_safety_checker": False},
    ),
    Profile(
        id=4,
        name="realvisxl-v4",
        description="RealVisXL V4.0 (CMC-Bench's decoder), 1024 px, 40 steps, CFG 7",
        model="SG161222/RealVisXL_V4.0",
        modes=_cfg_modes(40, 7.0),
        long_side=1024,
    ),
)
# Tiny-autoencoder variants: the turbo rows with TAESD / TAESDXL decoding the latents (own ids: other pixels)
_BASE = {p.name: p for p in PROFILES}
PROFILES += (
    replace(_BASE["sd-turbo"], id=5, name="sd-turbo-taesd", vae="madebyollin/taesd",
            description="sd-turbo with the tiny autoencoder TAESD: the fastest decoder, slightly softer detail"),
    replace(_BASE["sdxl-turbo"], id=6, name="sdxl-turbo-taesd", vae="madebyollin/taesdxl",
            description="sdxl-turbo with the tiny autoencoder TAESDXL"),
)

PROFILES_BY_ID: dict[int, Profile] = {p.id: p for p in PROFILES}
PROFILES_BY_NAME: dict[str, Profile] = {p.name: p for p in PROFILES}
DEFAULT_PROFILE = "sd-turbo"
if {p.id: p.name for p in PROFILES} != PROFILE_NAMES or len(PROFILES_BY_NAME) != len(PROFILES):
    raise RuntimeError("profile rows and core.ids.PROFILE_NAMES disagree: every row needs its own id there (spec §4.4)")


# Profile fields that decide a file's decoded pixels (spec §4.4: changing one of a row that has an id needs a
# new id instead). description and name do not; neither do the encoder defaults, which decide what is written
# and never how a written file decodes.
DECODE_FIELDS: tuple[str, ...] = ("model", "vae", "modes", "long_side", "multiple_of", "scheduler",
                                  "scheduler_kwargs", "load_kwargs")


def decode_fields(p: Profile) -> dict[str, Any]:
    """The pixel-deciding fields of a row as plain JSON data (pinned by fixtures/golden/profiles.json)."""
    out = {f: getattr(p, f) for f in DECODE_FIELDS}
    out["modes"] = {m: asdict(mc) for m, mc in p.modes.items()}
    return out


def get_profile(key: str | int | Profile | None) -> Profile:
    """Profile by name or id (None gives the default); unknown keys raise ProfileError."""
    if isinstance(key, Profile):
        return key
    if key is None:
        key = DEFAULT_PROFILE
    p = PROFILES_BY_ID.get(key) if isinstance(key, int) else PROFILES_BY_NAME.get(key)
    if p is None:
        raise ProfileError(f"unknown profile {key!r}: expected one of {', '.join(PROFILES_BY_NAME)}")
    return p


def _check_rows() -> None:
    """Each row's encoder data is usable: raised at import, so a bad row fails every test at once."""
    for p in PROFILES:
        e = p.encoder
        if not 0 <= e.caption_pct <= 100:
            raise RuntimeError(f"profile {p.name}: caption_pct must be 0..100; found {e.caption_pct}")
        bpps = [b for b, _ in e.auto_ladder]
        if not bpps or bpps != sorted(bpps, reverse=True) or bpps[-1] != 0.0:
            raise RuntimeError(f"profile {p.name}: auto_ladder needs bpp thresholds from highest down to 0.0")
        if not any(m in p.modes for _, m in e.auto_ladder):  # modes the row cannot decode are skipped
            raise RuntimeError(f"profile {p.name}: auto_ladder names no mode the row decodes")
        if p.prompt_tokens < 3:
            raise RuntimeError(f"profile {p.name}: prompt_tokens must leave room for a caption")


_check_rows()

"""encode / decode orchestration and rate control (the data flow is drawn in the package docstring).

Rate control always measures whole packed files: a budget is never exceeded, and when nothing fits the
BudgetError names the smallest file that could be made.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

from PIL import Image

from .core import bitstream, classic, guidance, ids, textcode
from .core.bitstream import DEFAULT_LIMITS, Limits, Section
from .core.errors import (
    BudgetError,
    CmcodecError,
    CodecUnavailableError,
    ConfigError,
    LimitError,
    ModelError,
    ProfileError,
    UnknownCoderError,
)
from .core.limits import check_image
from .core.profiles import MODEL_FREE, SPECIAL_TOKENS, Pipeline, Profile, get_profile
from .media.images import load_image

T = TypeVar("T")

if TYPE_CHECKING:
    import os

    from .models.loading import Accel

MODES_AUTO = ("auto", *ids.MODES)
MIN_CAPTION_WORDS = 6  # pixel/full modes shrink guidance before cutting the caption below this
# Pixel-map ladder (spec §7: block, luma bits, chroma drop), finest first: rate control takes the finest map
# that fits beside the caption. The rows are the size/PSNR Pareto front of every pmap1 setting (blocks 8..256,
# 3..7 bits, each chroma drop) over Kodak 1, 5, 13 and 23, with rows of equal PSNR between them (chroma drop
# 1; 16/7/0 before block 8) so that no step grows the mean map by more than 1.4x (a budget between two rows
# is then mostly spent), and 512 / 1024 blocks for the smallest files of large images. Mean bytes at
# 768x512: 7408 first, 2699 at 8/4/0, 1536 at 16/6/0, 318 at 32/5/0, 93 at 64/5/0, 19 at 128/4/0, 3 at 256/3/3.
PIXEL_LADDER: tuple[tuple[int, int, int], ...] = (
    (8, 7, 0), (8, 7, 1), (8, 6, 0), (8, 6, 1), (8, 5, 0), (8, 5, 1), (8, 4, 0), (8, 4, 1),
    (16, 7, 0), (16, 7, 1), (16, 6, 0), (16, 6, 1), (16, 5, 0), (16, 5, 1), (16, 4, 0), (16, 4, 1), (16, 3, 0),
    (32, 6, 0), (32, 6, 1), (32, 5, 0), (32, 5, 1), (32, 4, 0), (32, 4, 1), (32, 3, 0),
    (64, 6, 0), (64, 6, 1), (64, 5, 0), (64, 5, 1), (64, 4, 0), (64, 5, 2), (64, 4, 1), (64, 3, 0),
    (128, 6, 0), (128, 6, 1), (128, 5, 0), (128, 6, 2), (128, 5, 1), (128, 4, 0), (128, 4, 1), (128, 3, 0),
    (128, 4, 3), (256, 6, 1), (256, 6, 2), (256, 5, 1), (256, 4, 0), (256, 4, 1), (256, 3, 0), (256, 4, 3),
    (256, 3, 3), (512, 3, 3), (1024, 3, 3),
)
REF_BITS_PER_PIXEL = 0.4  # starting guess of reference bits per reference pixel at low quality
REF_GROW_SLACK = 15  # percent of a budget the best-quality reference may leave unused before it grows
# CLIP BPE tokens per caption word: 95th percentile 1.47 (median 1.24) over CMC-Bench's 1000 GPT-4V captions,
# rounded up; it bounds how many words rate control asks of the captioner (caption_word_limit)
TOKENS_PER_WORD = 1.5
# Coded bytes per caption word: 24.4 bytes per 20-word caption with wlm2 (README, benchmarks/textcode_bench.py)
BYTES_PER_WORD = 1.22


@dataclass(frozen=True)
class EncodeOptions:
    """Encoder settings beyond the mode, caption, budget, profile and seed (those are ``encode``'s own
    arguments): the captioner, the guidance's tuning and the input limits. None takes the profile's default."""

    i2t: str | None = None  # captioner: registered name, hub id or local folder
    i2t_path: str | None = None  # local folder of the weights of the captioner i2t names (its row's settings kept)
    device: str | None = None  # where the captioner runs
    dtype: str | None = None  # captioner precision (None: its row's GPU dtype on CUDA, float32 on CPU)
    accel: Accel | None = None  # captioner speed-ups (None: eager)
    caption_words: int | None = None  # words asked of the captioner
    caption_coder: str | None = None  # pin one caption coder (else the smallest file of all wins)
    pixel_block: int | None = None  # pin the pixel map's block (no ladder)
    pixel_bits: int | None = None  # ... and its luma bits
    ref_codec: str | None = None  # image-reference codec name (guidance.REF_CODECS)
    ref_bpp: float | None = None  # reference rate when no budget is given
    noise_steps: int | None = None  # noise mode: trajectory steps T (spec §10.5)
    noise_log2_k: int | None = None  # noise mode: codebook of 2^this atoms
    model_path: str | None = None  # noise mode: local folder of the profile's T2I model (the encoder runs it)
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class DecodeOptions:
    """Decoder runtime settings; none of them changes what a file means (the profile comes from the file)."""

    device: str | None = None
    # local folder of the profile's T2I model, or {profile name or '*' (any): folder}, as the CLI's NAME=DIR
    model_path: str | Mapping[str, str] | None = None
    dtype: str | None = None
    vae_path: str | Mapping[str, str] | None = None  # the same for a *-taesd profile's tiny autoencoder
    accel: Accel | None = None  # channels_last, torch.compile (None: eager)
    limits: Limits = DEFAULT_LIMITS
    # noise mode: decode with only the first k coded steps (a prefix, spec §10.6), as a receiver that has only
    # part of the file would; None: all of them
    steps_available: int | None = None

    def folders(self, prof: Profile) -> tuple[str | None, str | None]:
        """(model folder, autoencoder folder) for prof."""

        def pick(paths: str | Mapping[str, str] | None) -> str | None:
            if paths is None or isinstance(paths, str):
                return paths
            return paths.get(prof.name, paths.get("*"))

        return pick(self.model_path), pick(self.vae_path)


def _accel(opts: EncodeOptions | DecodeOptions) -> Accel:
    """The options' speed-ups; models.loading is imported only on the neural paths, so a classic decode
    loads no model code (the layering test checks it)."""
    from .models.loading import EAGER

    return opts.accel or EAGER


@dataclass(frozen=True)
class EncodeResult:
    """What encode_result returns: the file, the caption it holds and the choices made."""

    data: bytes
    mode: str
    caption: str
    header: bitstream.Header


def budget_bytes(width: int, height: int, bpp: float | None, max_bytes: int | None = None) -> int | None:
    """Byte budget from --bpp and/or --max-bytes (the smaller wins; None: no budget). Exact: bpp is taken as
    the decimal it was written as (its shortest repr), so 0.29 bpp of 800 pixels is 29 bytes, not the 28
    that float arithmetic gives."""
    out = None
    if bpp is not None:
        if not (bpp > 0 and math.isfinite(bpp)):
            raise ConfigError(f"--bpp must be a positive number; found {bpp}")
        out = math.floor(Fraction(repr(float(bpp))) * width * height / 8)
    if max_bytes is not None:
        if max_bytes < 1:
            raise ConfigError(f"--max-bytes must be at least 1; found {max_bytes}")
        out = max_bytes if out is None else min(out, max_bytes)
    return out


class _Packer:
    """Builds whole files for one image, trying each caption coder and keeping the smallest."""

    def __init__(self, mode: str, width: int, height: int, profile: Profile, seed: int,
                 caption_coder: str | None) -> None:
        self.mode, self.width, self.height, self.profile, self.seed = mode, width, height, profile, seed
        self.coders = [caption_coder] if caption_coder else textcode.available_coders()

    def pack(self, caption: str | None, guide: Section | None = None) -> bytes:
        """Smallest file for this caption (None: mode has no caption) and guidance section."""
        best: bytes | None = None
        captions: list[Section] = []
        if caption is not None:
            captions = [textcode.caption_section(caption, name) for name in self.coders]
        order = ids.MODE_SECTIONS[self.mode]  # payload order (spec §4.2)
        for cap in captions or [None]:
            sections = sorted((s for s in (guide, cap) if s is not None), key=lambda s: order.index(s.type_id))
            data = bitstream.pack(mode=self.mode, width=self.width, height=self.height,
                                  profile_id=self.profile.id, seed=self.seed, sections=sections)
            if best is None or len(data) < len(best):
                best = data
        if best is None:  # the loop runs at least once
            raise RuntimeError("no file was packed")
        return best


def _fit_caption(caption: str, build: Callable[[str], bytes], budget: int | None) -> tuple[bytes, str] | None:
    """Longest word prefix of caption whose file fits budget (None if nothing fits)."""
    data = build(caption)
    if budget is None or len(data) <= budget:
        return data, caption
    words = caption.split()
    sizes: dict[int, bytes] = {}

    def fits(k: int) -> bool:
        sizes[k] = build(textcode.word_prefix(words, k))
        return len(sizes[k]) <= budget

    k = textcode.longest_prefix(len(words), fits)
    if k is None:
        return None
    return sizes[k], textcode.word_prefix(words, k)


def _ref_search(img: Image.Image, codec: guidance.RefCodec, target: int,
                build: Callable[[Section], bytes], max_scale: float = 1.0) -> tuple[bytes, Section] | None:
    """Best-quality reference whose whole file fits target bytes, with its section: long side from a size
    guess, then bisection of the quality setting; the long side shrinks while even the worst quality is too
    big, and grows while the best quality leaves more than REF_GROW_SLACK of the target unused. max_scale caps
    the long side at that fraction of the image's (the profile's ref_max_scale)."""
    w, h = img.size
    longest = min(2040, max(8, (math.ceil(max(w, h) * max_scale) + 7) // 8 * 8))
    px = max(64.0, target * 8 / REF_BITS_PER_PIXEL)
    long_side = int(math.sqrt(px * max(w, h) / min(w, h)))
    long_side = max(8, min(longest, long_side // 8 * 8))
    def make(ls: int, q: int) -> tuple[bytes, Section]:
        sec = guidance.image_ref_section(img, codec, ls, q)
        return build(sec), sec

    def at(ls: int) -> tuple[bytes, Section] | None:
        """Best quality at long side ls whose file fits (None: not even the worst quality does)."""
        best = make(ls, codec.ref_quality[1])
        if len(best[0]) > target:
            return None
        lo, hi = codec.ref_quality[0] - 1, codec.ref_quality[1]  # larger q: smaller file; hi fits, lo untried
        while hi - lo > 1:
            mid = (lo + hi) // 2
            d = make(ls, mid)
            if len(d[0]) <= target:
                best, hi = d, mid
            else:
                lo = mid
        return best

    while long_side >= 8:
        got = at(long_side)
        if got is not None:
            break
        long_side = (long_side * 3 // 4) // 8 * 8
    else:
        return None
    # the best quality fits with bytes to spare: a larger reference spends them (spec §8.2 sizes)
    while len(got[0]) < target * (100 - REF_GROW_SLACK) // 100 and long_side < longest:
        long_side = min(longest, (long_side * 4 // 3 + 7) // 8 * 8)
        bigger = at(long_side)
        if bigger is None or len(bigger[0]) <= len(got[0]):
            break
        got = bigger
    return got


@dataclass(frozen=True)
class _Job:
    """One mode's encode under a budget: what every per-mode function needs."""

    img: Image.Image
    mode: str
    caption: str  # normalized caption ("" when the mode or the profile's decoder stores none)
    budget: int | None
    prof: Profile
    options: EncodeOptions
    packer: _Packer

    def caption_share(self) -> int:
        """Bytes of a guided mode's budget the caption may take before the guidance is sized: the profile's
        caption_pct, and never so few that fewer than MIN_CAPTION_WORDS words remain."""
        if self.budget is None:
            raise RuntimeError("caption_share needs a budget")
        share = self.budget * self.prof.encoder.caption_pct // 100
        least = textcode.size(" ".join(self.caption.split()[:MIN_CAPTION_WORDS])) if self.caption else 0
        return max(share, least)


def _encode_text(job: _Job) -> bytes:
    """Text mode: the longest word prefix of the caption that fits."""
    got = _fit_caption(job.caption, job.packer.pack, job.budget)
    if got is None:
        raise _budget_error(job)
    return got[0]


def _pixel_section(img: Image.Image, p: tuple[int, int, int]) -> Section:
    """The pixel-map section of one ladder entry."""
    return guidance.pixel_map_section(img, guidance.PixelParams(*p))


def _pixel_ladder(w: int, h: int) -> list[tuple[int, int, int]]:
    """PIXEL_LADDER without the blocks too small for this size (the grid limit, spec §7.2)."""
    fits = [p for p in PIXEL_LADDER
            if math.prod(guidance.grid_size(w, h, p[0], check=False)) <= guidance.MAX_MAP_CELLS]
    return fits or [PIXEL_LADDER[-1]]


def _encode_pixel(job: _Job) -> bytes:
    """Pixel mode: the caption's share first, then the finest pixel map that fits beside it, then the
    caption grows into what the map left (spec §7 maps only; no new format)."""
    img, opts, enc, budget, pack = job.img, job.options, job.prof.encoder, job.budget, job.packer.pack
    w, h = img.size
    pinned = opts.pixel_block is not None or opts.pixel_bits is not None
    default = (opts.pixel_block or enc.pixel_block, opts.pixel_bits or enc.pixel_bits, 2)
    if pinned or budget is None:
        section = _pixel_section(img, default)
        got = _fit_caption(job.caption, lambda c: pack(c, section), budget)
        if got is None:
            raise _budget_error(job)
        return got[0]
    ladder = _pixel_ladder(w, h)
    first = textcode.trim_to_bytes(job.caption, job.caption_share()) if job.caption else ""
    sections: dict[int, Section] = {}

    def size(i: int, caption: str) -> int:
        if i not in sections:
            sections[i] = _pixel_section(img, ladder[i])
        return len(pack(caption, sections[i]))

    # sizes fall along the ladder (almost always; a finer neighbour is checked below): bisect for the first
    # entry that fits beside the caption's share, then the shorter captions before the coarser maps
    chosen = None
    for cap in dict.fromkeys((first, "")):
        lo, hi = 0, len(ladder)  # entries < lo do not fit (as far as bisection saw); entries >= hi fit
        if size(len(ladder) - 1, cap) > budget:
            continue
        hi = len(ladder) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if size(mid, cap) <= budget:
                hi = mid
            else:
                lo = mid + 1
        while hi > 0 and size(hi - 1, cap) <= budget:
            hi -= 1
        chosen = hi
        break
    if chosen is None:
        raise _budget_error(job)
    got = _fit_caption(job.caption, lambda c: pack(c, sections[chosen]), budget)
    if got is None:  # the empty caption fitted with this map
        raise RuntimeError("pixel map chosen without room for its caption")
    return got[0]


def _ref_codec(opts: EncodeOptions) -> guidance.RefCodec:
    """The image-reference codec asked for (or the default one), refused when it is not usable here."""
    if opts.ref_codec and opts.ref_codec not in guidance.REF_CODECS:
        raise UnknownCoderError(f"unknown image-reference codec {opts.ref_codec!r}: expected one of "
                                f"{', '.join(guidance.REF_CODECS)}")
    codec = guidance.REF_CODECS[opts.ref_codec] if opts.ref_codec else guidance.default_ref_codec()
    why = codec.available()
    if why:  # the same error (and exit code) as when no default codec is usable
        raise CodecUnavailableError(f"image-reference codec {codec.name} is not usable here: {why}")
    return codec


def _smallest_ref(job: _Job, codec: guidance.RefCodec, caption: str | None) -> bytes:
    """The smallest file with a reference: 8-pixel long side at the worst quality."""
    return job.packer.pack(caption, guidance.image_ref_section(job.img, codec, 8, codec.ref_quality[1]))


def _encode_unbudgeted_ref(job: _Job, codec: guidance.RefCodec, caption: str | None) -> bytes:
    """Image or full mode without a budget: the profile's reference rate is a target, not a limit."""
    w, h = job.img.size
    target = max(16, int((job.options.ref_bpp or job.prof.encoder.ref_bpp) * w * h / 8))
    base = len(job.packer.pack(caption, Section(ids.SECTION_IDS["image_ref"], codec.ref_id, b"")))
    got = _ref_search(job.img, codec, target + base, lambda s: job.packer.pack(caption, s),
                     job.prof.encoder.ref_max_scale)
    return got[0] if got is not None else _smallest_ref(job, codec, caption)


def _encode_image(job: _Job) -> bytes:
    """Image mode: the best reference whose file fits."""
    codec = _ref_codec(job.options)
    if job.budget is None:
        return _encode_unbudgeted_ref(job, codec, None)
    got = _ref_search(job.img, codec, job.budget, lambda s: job.packer.pack(None, s),
                     job.prof.encoder.ref_max_scale)
    if got is None:
        raise _budget_error(job)
    return got[0]


def _encode_full(job: _Job) -> bytes:
    """Full mode: the caption's share of the budget first (the profile's caption_pct; halved, then none, when
    no reference fits beside it), the best reference in the rest, then the caption grows into what is left."""
    codec = _ref_codec(job.options)
    budget, pack = job.budget, job.packer.pack
    if budget is None:
        return _encode_unbudgeted_ref(job, codec, job.caption)
    share = job.caption_share()
    for cap_bytes in dict.fromkeys((share, share // 2, 0)):
        c = textcode.trim_to_bytes(job.caption, cap_bytes) if cap_bytes else ""
        got = _ref_search(job.img, codec, budget, lambda s, c=c: pack(c, s), job.prof.encoder.ref_max_scale)
        if got is not None:
            grown = _fit_caption(job.caption, lambda c, s=got[1]: pack(c, s), budget)
            return grown[0] if grown is not None else got[0]
    raise _budget_error(job)


def _noise_section(payload: bytes) -> Section:
    return Section(ids.SECTION_IDS["noise"], 0, payload)


def noise_shape(prof: Profile, steps: int | None = None, log2_k: int | None = None) -> tuple[int, int]:
    """(T, log2 K) of the noise-mode files a profile's encoder writes (spec §10.5): the given ones, else the
    profile's defaults. Besides the profile, this keys a noise-mode output (bench.rd, bench.evaluate)."""
    return steps or prof.encoder.noise_steps, log2_k or prof.encoder.noise_log2_k


def _noise_shape(job: _Job) -> tuple[int, int]:
    """(T, log2 K) of a noise-mode file: the options', else the profile's."""
    return noise_shape(job.prof, job.options.noise_steps, job.options.noise_log2_k)


def _encode_noise(job: _Job) -> bytes:
    """Noise mode (spec §10): the caption (the longest prefix that fits beside an empty noise code), then the
    plan of the most coded bits that fits what is left (noisecode.fit_plan), then one encoding trajectory."""
    from .core import noisecode
    from .models import noise

    steps, log2_k = _noise_shape(job)
    noisecode.Plan(steps).check()
    empty = noisecode.Plan(steps)
    pack = job.packer.pack
    got = _fit_caption(job.caption, lambda c: pack(c, _noise_section(noisecode.pack(empty, []))), job.budget)
    if got is None:
        raise _budget_error(job)
    caption = got[1]
    fixed = len(got[0]) - empty.nbytes()  # everything but the noise payload (its section is last: no length)
    w, h = job.img.size
    budget = job.budget if job.budget is not None else max(len(got[0]),
                                                           budget_bytes(w, h, job.prof.encoder.noise_bpp))
    room = budget - fixed
    while True:  # the check grows from 1 to 4 bytes past 256 bytes (spec §5): shrink until the file fits
        plan = noisecode.fit_plan(steps, log2_k, room)
        data_len = len(pack(caption, _noise_section(bytes(plan.nbytes()))))
        if data_len <= budget or plan.coded == 0:
            break
        room -= data_len - budget
    # the decoder's own trajectory, in the profile's precision on the options' device
    (codes, _), = noise.run_batch(job.prof, [noise.NoiseJob(caption, w, h, job.packer.seed, plan, image=job.img)],
                                  device=job.options.device, accel=_accel(job.options),
                                  model_path=job.options.model_path)
    return pack(caption, _noise_section(noisecode.pack(plan, codes)))


def _smallest(job: _Job) -> int:
    """Bytes of the smallest file this mode can make for this image: no caption, the coarsest guidance."""
    pack, opts, enc = job.packer.pack, job.options, job.prof.encoder
    if job.mode == "text":
        return len(pack(""))
    if job.mode == "noise":
        from .core import noisecode

        return len(pack("", _noise_section(noisecode.pack(noisecode.Plan(_noise_shape(job)[0]), []))))
    if job.mode == "pixel":
        if opts.pixel_block is not None or opts.pixel_bits is not None:
            entry = (opts.pixel_block or enc.pixel_block, opts.pixel_bits or enc.pixel_bits, 2)
        else:
            entry = _pixel_ladder(*job.img.size)[-1]
        return len(pack("", _pixel_section(job.img, entry)))
    return len(_smallest_ref(job, _ref_codec(opts), "" if job.mode == "full" else None))


def _budget_error(job: _Job) -> BudgetError:
    """The error of a mode that cannot fit its budget, naming the smallest file it could make."""
    return BudgetError(f"{job.mode} mode cannot fit {job.budget} bytes: the smallest file is {_smallest(job)} bytes")


_MODE_ENCODERS: dict[str, Callable[[_Job], bytes]] = {
    "text": _encode_text, "pixel": _encode_pixel, "image": _encode_image, "full": _encode_full,
    "noise": _encode_noise,
}
if set(_MODE_ENCODERS) != set(ids.MODES):
    raise RuntimeError("codec._MODE_ENCODERS and core.ids.MODES disagree: every mode needs one encoder")


def _auto_modes(prof: Profile, budget: int | None, w: int, h: int) -> list[str]:
    """Modes --mode auto tries, best first: the profile's auto_ladder from the first row whose bpp the
    budget reaches (compared in whole bytes, as --bpp is), the modes the profile does not decode skipped."""
    rows = prof.encoder.auto_ladder
    start = 0
    if budget is not None:
        start = next((i for i, (bpp, _) in enumerate(rows) if bpp <= 0 or budget >= budget_bytes(w, h, bpp)),
                     len(rows))
    modes = [m for _, m in rows[start:] if m in prof.modes]
    # a row that decodes none of the low-rate modes (a restoration decoder: image and full only) still tries
    # its own, so the error names the smallest file it could make
    return modes or [m for _, m in rows if m in prof.modes]


def caption_word_limit(prof: Profile, mode: str) -> int:
    """Most caption words the profile's text encoder reads whole in this mode's prompt template, by
    TOKENS_PER_WORD (the decoder's tokenizer is not at hand when encoding)."""
    template = prof.mode(mode).prompt.replace("{caption}", "")
    fixed = SPECIAL_TOKENS + math.ceil(len(re.findall(r"[A-Za-z]+", template)) * TOKENS_PER_WORD) \
        + len(re.findall(r"[^A-Za-z\s]", template))
    return max(1, math.floor((prof.prompt_tokens - fixed) / TOKENS_PER_WORD))


def _words_to_ask(prof: Profile, mode: str, budget: int | None, opts: EncodeOptions) -> int:
    """Words asked of the captioner: the option, else the profile's default without a budget, else as many
    as the caption's part of the budget affords (text: all of it; pixel and full: caption_pct) up to the
    prompt limit, never fewer than the default (rate control trims)."""
    default = prof.encoder.caption_words
    if opts.caption_words:
        return opts.caption_words
    if budget is None:
        return default
    part = budget if mode == "text" else budget * prof.encoder.caption_pct // 100
    return max(default, min(caption_word_limit(prof, mode), math.floor(part / BYTES_PER_WORD)))


@contextlib.contextmanager
def _memory_bounded(what: str) -> Iterator[None]:
    """A MemoryError (the machine has less memory than the limits allow for) as a one-line LimitError."""
    try:
        yield
    except MemoryError:
        raise LimitError(f"out of memory {what}: lower the input's size, or give this process more memory than the "
                         "limits allow for (core.limits)") from None


def encode_result(image: object, *, mode: str = "text", caption: str | None = None, bpp: float | None = None,
                  max_bytes: int | None = None, profile: str | int | Profile | None = None, seed: int = 0,
                  options: EncodeOptions | None = None) -> EncodeResult:
    """Encode an image; returns the file with the mode and caption chosen (arguments as ``encode``)."""
    with _memory_bounded("encoding an image"):
        return _encode_result(image, mode=mode, caption=caption, bpp=bpp, max_bytes=max_bytes, profile=profile,
                              seed=seed, options=options)


def _encode_result(image: object, *, mode: str, caption: str | None, bpp: float | None, max_bytes: int | None,
                   profile: str | int | Profile | None, seed: int, options: EncodeOptions | None) -> EncodeResult:
    """encode_result's work."""
    opts = options or EncodeOptions()
    if mode not in MODES_AUTO:
        raise ConfigError(f"unknown mode {mode!r}: expected one of {', '.join(MODES_AUTO)}")
    if not 0 <= seed <= bitstream.MAX_SEED:
        raise ConfigError(f"seed must be in 0..{bitstream.MAX_SEED}; found {seed}")
    prof = get_profile(profile)
    img = load_image(image, opts.limits)
    w, h = img.size
    budget = budget_bytes(w, h, bpp, max_bytes)
    modes = _auto_modes(prof, budget, w, h) if mode == "auto" else [mode]
    for m in modes:
        prof.mode(m)  # a profile that cannot decode the mode is refused before any work
    if not modes:
        raise ProfileError(f"profile {prof.name} decodes no mode")
    words = _words_to_ask(prof, modes[0], budget, opts) if modes else 0
    cap_text: str | None = None
    errors = []
    for m in modes:
        if not _uses_caption(prof, m):
            text = ""  # the mode, or the profile's decoder in it, reads no caption: a given one is not stored
        elif caption is not None:
            text = textcode.normalize(caption).strip()
        else:
            if cap_text is None:
                from .models import i2t as i2t_backend

                cap_text = textcode.normalize(i2t_backend.caption(img, model=opts.i2t, words=words,
                                                                  device=opts.device, dtype=opts.dtype,
                                                                  model_path=opts.i2t_path, accel=_accel(opts)))
            text = cap_text
        if text:  # never more than the profile's text encoder reads: no pipeline cuts the prompt
            from .models.t2i import fit_prompt

            text = fit_prompt(prof, m, text, fallback_words=caption_word_limit(prof, m))
        job = _Job(img, m, text, budget, prof, opts, _Packer(m, w, h, prof, seed, opts.caption_coder))
        try:
            data = _MODE_ENCODERS[m](job)
        except BudgetError as e:
            errors.append(str(e))
            continue
        if budget is not None and len(data) > budget:  # rate control measures whole files: a bug if not
            raise RuntimeError(f"rate control made a {len(data)}-byte {m}-mode file for a {budget}-byte budget")
        header = bitstream.read_header(data, opts.limits)
        final = ""
        sec = header.section("caption")
        if sec is not None:
            final = textcode.decode(sec.payload, sec.coder_id)
        return EncodeResult(data, m, final, header)
    raise BudgetError("; ".join(errors))


def encode(image: object, *, mode: str = "text", caption: str | None = None, bpp: float | None = None,
           max_bytes: int | None = None, profile: str | int | Profile | None = None, seed: int = 0,
           options: EncodeOptions | None = None) -> bytes:
    """Encode an image (a path, bytes, file object or PIL image) to .cmc bytes.

    ``mode``: text, pixel, image, full or auto; ``caption`` skips the I2T model; ``bpp`` / ``max_bytes``
    set a budget that the file never exceeds (the smaller wins; BudgetError names the smallest possible
    file when nothing fits); ``profile`` names the decoder profile written in the file; ``seed`` the
    decoder's noise seed. ``options`` (EncodeOptions) picks the captioner and tunes the guidance.
    ``encode_result`` returns the same file with the mode and caption chosen.
    """
    return encode_result(image, mode=mode, caption=caption, bpp=bpp, max_bytes=max_bytes, profile=profile,
                         seed=seed, options=options).data


def smallest_size(image: object, *, mode: str = "text", profile: str | int | Profile | None = None,
                  max_bytes: int | None = None, options: EncodeOptions | None = None) -> int:
    """Bytes of the smallest file ``encode`` can make of this image in this mode (auto: in any mode it may
    use under max_bytes), as a BudgetError names it: what a budget must at least be."""
    opts = options or EncodeOptions()
    if mode not in MODES_AUTO:
        raise ConfigError(f"unknown mode {mode!r}: expected one of {', '.join(MODES_AUTO)}")
    prof = get_profile(profile)
    img = load_image(image, opts.limits)
    w, h = img.size
    if mode == "auto":
        modes = _auto_modes(prof, max_bytes, w, h)
    else:
        prof.mode(mode)
        modes = [mode]
    if not modes:
        raise ProfileError(f"profile {prof.name} decodes no mode")
    return min(_smallest(_Job(img, m, "", max_bytes, prof, opts, _Packer(m, w, h, prof, 0, opts.caption_coder)))
               for m in modes)


def _uses_caption(prof: Profile, mode: str) -> bool:
    """True when this profile's decoder reads a caption in this mode (else none is stored)."""
    return (mode in ("text", "pixel", "full", "noise") and mode in prof.modes
            and prof.modes[mode].pipeline not in MODEL_FREE)


def needs_captioner(mode: str, profile: str | int | Profile | None = None) -> bool:
    """True when encoding in this mode (any of auto's modes) for this profile runs the I2T model, unless a
    caption is given."""
    prof = get_profile(profile)
    return any(_uses_caption(prof, m) for m in (ids.MODES if mode == "auto" else (mode,)))


def caption_many(images: Sequence[object], options: EncodeOptions | None = None, *,
                 batch_size: int = 8) -> Iterator[tuple[int, str | CmcodecError]]:
    """Captions of many images, batch_size per I2T call, with the captioner (and its folder), words (default
    20), device, dtype, accel and limits of ``options``; yields (index, caption or that image's CmcodecError),
    a batch at a time: an image that cannot be read, or that a server captioner fails, fails alone. Pass each
    caption to encode(caption=...) to code it."""
    opts = options or EncodeOptions()
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1; found {batch_size}")
    from .models import i2t as i2t_backend

    for start in range(0, len(images), batch_size):
        loaded: list[tuple[int, Image.Image]] = []
        for i in range(start, min(start + batch_size, len(images))):
            try:
                loaded.append((i, load_image(images[i], opts.limits)))
            except CmcodecError as e:
                yield i, e
        if not loaded:
            continue
        try:  # a server captioner answers per image: one failure leaves the others their captions
            texts: list[str | CmcodecError] = list(i2t_backend.caption_each(
                [im for _, im in loaded], model=opts.i2t, words=opts.caption_words or 20, device=opts.device,
                dtype=opts.dtype, model_path=opts.i2t_path, accel=_accel(opts)))
        except CmcodecError as e:
            texts = [e] * len(loaded)
        if len(texts) != len(loaded):  # a short answer would silently lose images
            raise ModelError(f"the captioner returned {len(texts)} captions for {len(loaded)} images")
        for (i, _), t in zip(loaded, texts, strict=True):
            yield i, textcode.normalize(t) if isinstance(t, str) else t


def decode_guidance(header: bitstream.Header, prof: Profile) -> Image.Image | None:
    """The guidance image at the original size (pixel map or reference) with the profile's filter and smoothing
    for the file's mode, or None in text mode."""
    mc = prof.mode(header.mode)
    return classic.guidance_image(header, mc.upsample, mc.smooth)


def validate(data: bytes, limits: Limits = DEFAULT_LIMITS) -> bitstream.Header:
    """Check a whole file without any model: header, check, and every payload decoded (caption, pixel-map
    grid, reference picture). Raises a CmcodecError subclass on anything wrong."""
    header = bitstream.read_header(data, limits)
    sec = header.section("caption")
    if sec is not None:
        textcode.decode(sec.payload, sec.coder_id, limits.max_caption_chars)
    pm = header.section("pixel_map")
    if pm is not None:
        guidance.decode_pixel_map(pm.payload, header.width, header.height)
    ref = header.section("image_ref")
    if ref is not None:
        guidance.decode_image_ref(ref.payload, ref.coder_id, header.width, header.height)
    noise = header.section("noise")
    if noise is not None:
        from .core import noisecode

        noisecode.unpack(noise.payload)
    return header


def _prepare(header: bitstream.Header, limits: Limits) -> tuple[Profile, str, Image.Image | None]:
    """Everything a neural decode needs before any model runs: profile, caption and guidance image."""
    check_image(header.width, header.height, limits, "decoded image")  # the decode budget (spec §9.1) first
    prof = get_profile(header.profile_id)
    prof.mode(header.mode)
    sec = header.section("caption")
    caption = textcode.decode(sec.payload, sec.coder_id, limits.max_caption_chars) if sec is not None else ""
    return prof, caption, decode_guidance(header, prof)


def _model_free(header: bitstream.Header, limits: Limits) -> Image.Image | None:
    """The image of a file whose row decodes its mode without a model (core.classic), else None: the one
    dispatch of decode and decode_many, on the row's pipeline for the mode (never on a profile id)."""
    mc = get_profile(header.profile_id).mode(header.mode)
    return classic.decode(header, mc, limits) if mc.pipeline in MODEL_FREE else None


def _file_bytes(data: object, limits: Limits) -> bytes:
    """The bytes of a .cmc file given as bytes or as its path (str or os.PathLike), read under the limits."""
    import os

    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, (str, os.PathLike)):
        from pathlib import Path

        from .media.fileio import read_input

        return read_input(Path(data), limits.max_file_bytes)
    raise ConfigError(f"expected the bytes of a .cmc file or its path, found {type(data).__name__}")


def decode(data: bytes | str | os.PathLike, options: DecodeOptions | None = None) -> Image.Image:
    """Decode a .cmc file (its bytes or its path) to an RGB image of the original size, with the profile named
    in the file.

    ``options`` (DecodeOptions) picks the device and precision, points the profile's model (tiny
    autoencoder) at a local folder and turns on runtime speed-ups; none of it changes the profile.
    """
    opts = options or DecodeOptions()
    header = bitstream.read_header(_file_bytes(data, opts.limits), opts.limits)
    with _memory_bounded("decoding a file"):
        done = _model_free(header, opts.limits)  # normative: core alone decodes it
        if done is not None:
            return done
        prof, caption, init = _prepare(header, opts.limits)  # the row's model decodes it (cmcodec.models)
        from .models import t2i

        model_path, vae_path = opts.folders(prof)
        if prof.mode(header.mode).pipeline is Pipeline.NOISE:
            return _decode_noise([(header, caption)], prof, opts)[0]
        return t2i.generate(prof, header.mode, caption=caption, init=init, width=header.width,
                            height=header.height, seed=header.seed, device=opts.device, model_path=model_path,
                            dtype=opts.dtype, vae_path=vae_path, accel=_accel(opts))


def _noise_job(header: bitstream.Header, caption: str, steps_available: int | None) -> object:
    """The decoding job of a noise-mode file: its plan and step codes (spec §10.5), a prefix when asked."""
    from .core import noisecode
    from .models import noise

    sec = header.section("noise")
    if sec is None:  # read_header names a file noise-mode only with its noise section
        raise RuntimeError("noise-mode header without a noise section")
    plan, codes = noisecode.unpack(sec.payload, steps_available)
    return noise.NoiseJob(caption, header.width, header.height, header.seed, plan, codes=tuple(codes))


def _decode_noise(files: list[tuple[bitstream.Header, str]], prof: Profile, opts: DecodeOptions) -> list[Image.Image]:
    """Decode noise-mode files of one profile, generation size and step count in one batch."""
    from .models import noise

    model_path, vae_path = opts.folders(prof)
    jobs = [_noise_job(h, c, opts.steps_available) for h, c in files]
    out = noise.run_batch(prof, jobs, device=opts.device, model_path=model_path, dtype=opts.dtype,
                          vae_path=vae_path, accel=_accel(opts))
    return [im for _, im in out]


def _steps_of(header: bitstream.Header) -> int:
    """Trajectory steps of a noise-mode file (files batch together only with the same count), else 0."""
    sec = header.section("noise")
    if sec is None:
        return 0
    from .core import noisecode

    return noisecode.read_plan(sec.payload)[0].steps


def read_ahead(items: Iterable[T], depth: int) -> Iterator[T]:
    """The items of an iterator, produced by a background thread up to ``depth`` ahead of the consumer (file
    reading and parsing overlap the model's work; the GIL is free while the model waits on the device). An
    exception of the producer is raised to the consumer; closing the consumer stops the producer."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    end = object()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for x in items:
                if not put((None, x)):
                    return
            put((None, end))
        except BaseException as e:  # handed to the consumer, which raises it
            put((e, None))

    worker = threading.Thread(target=produce, name="cmcodec-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            err, x = q.get()
            if err is not None:
                raise err
            if x is end:
                return
            yield x
    finally:
        stop.set()
        worker.join()


def decode_many(datas: Iterable[bytes | str | os.PathLike], options: DecodeOptions | None = None, *,
                batch_size: int = 8) -> Iterator[tuple[int, Image.Image | CmcodecError]]:
    """Decode many files (bytes or paths), batching those of one profile, mode and generation size into one call.
    Yields (index, image or the CmcodecError of that file) as results are ready, not in order.

    Each file keeps its own seed and CPU generator, so a file decodes to the same image in any batch up to
    the last bits of batched arithmetic. The files are taken from ``datas`` and parsed (header, caption,
    guidance image) by a reader thread up to two batches ahead, while the model runs on the batch before.
    """
    opts = options or DecodeOptions()
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1; found {batch_size}")
    groups: dict[tuple, list[tuple[int, bitstream.Header, str, Image.Image | None]]] = {}

    def oom(e: RuntimeError, n: int, prof: Profile, mode: str) -> ModelError:
        """torch.cuda.OutOfMemoryError is a RuntimeError: that one is the batch's ModelError; others raise."""
        if "out of memory" not in str(e):
            raise e
        return ModelError(f"out of device memory decoding a batch of {n} {mode}-mode files with profile "
                          f"{prof.name}: use a smaller batch size (found {batch_size})")

    def launch(key: tuple) -> tuple[list, Profile, str, Any]:
        """A full group's batch and its start: t2i.start_batch's pending images (the device works on them
        while the caller goes on), or the finished list of images / errors."""
        from .models import t2i

        batch = groups.pop(key)
        prof, mode = get_profile(key[0]), key[1]
        items = [(cap, init, h.width, h.height, h.seed) for _, h, cap, init in batch]
        try:
            if prof.mode(mode).pipeline is Pipeline.NOISE:
                return batch, prof, mode, list(_decode_noise([(h, cap) for _, h, cap, _ in batch], prof, opts))
            return batch, prof, mode, t2i.start_batch(
                prof, mode, items, device=opts.device, model_path=opts.folders(prof)[0], dtype=opts.dtype,
                vae_path=opts.folders(prof)[1], accel=_accel(opts))
        except CmcodecError as e:
            return batch, prof, mode, [e] * len(batch)
        except RuntimeError as e:
            return batch, prof, mode, [oom(e, len(batch), prof, mode)] * len(batch)

    def finish(batch: list, prof: Profile, mode: str, got: Any) -> Iterator[tuple[int, Image.Image | CmcodecError]]:
        from .models import t2i

        out: list[Image.Image | CmcodecError]
        if isinstance(got, list):
            out = got
        else:
            try:
                out = list(t2i.finish_batch(got))
            except RuntimeError as e:  # an asynchronous device error surfaces where the copy is waited for
                out = [oom(e, len(batch), prof, mode)] * len(batch)
        if len(out) != len(batch):  # a short answer would silently lose files
            err = ModelError(f"the {prof.name} pipeline returned {len(out)} images for {len(batch)} files")
            out = [err] * len(batch)
        for (i, *_), res in zip(batch, out, strict=True):
            yield i, res

    def parsed() -> Iterator[tuple[int, tuple]]:
        """(index, ("done", image) | ("model", header, profile, caption, guidance) | ("error", e)) per file."""
        for i, data in enumerate(datas):
            try:
                header = bitstream.read_header(_file_bytes(data, opts.limits), opts.limits)
                with _memory_bounded("decoding a file"):
                    done = _model_free(header, opts.limits)  # as in decode
                    got = ("done", done) if done is not None else ("model", header, *_prepare(header, opts.limits))
            except CmcodecError as e:
                got = ("error", e)
            yield i, got

    # one batch in flight: the next batch is started before the last one's images are waited for, so the
    # device goes from one batch to the next while the CPU makes images, hands them over and prepares more
    in_flight: tuple[list, Profile, str, Any] | None = None
    for i, (kind, *got) in read_ahead(parsed(), 2 * batch_size):
        if kind != "model":
            yield i, got[0]
            continue
        header, prof, caption, init = got
        key = (prof.id, header.mode, prof.decode_size(header.width, header.height), _steps_of(header))
        groups.setdefault(key, []).append((i, header, caption, init))
        if len(groups[key]) >= batch_size:
            started = launch(key)
            if in_flight is not None:
                yield from finish(*in_flight)
            in_flight = started
    for key in list(groups):
        started = launch(key)
        if in_flight is not None:
            yield from finish(*in_flight)
        in_flight = started
    if in_flight is not None:
        yield from finish(*in_flight)

"""encode / decode orchestration and rate control (the data flow is drawn in the package docstring).

Rate control always measures whole packed files: a budget is never exceeded, and when nothing fits the
BudgetError names the smallest file that could be made.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from PIL import Image

from .core import bitstream, guidance, ids, textcode
from .core.bitstream import DEFAULT_LIMITS, Limits, Section
from .core.errors import BudgetError, CmcodecError, ConfigError, ModelError, ProfileError
from .media.images import load_image
from .models.loading import EAGER, Accel
from .models.profiles import Profile, get_profile

MODES_AUTO = ("auto", *ids.MODES)
MIN_CAPTION_WORDS = 6  # pixel/full modes shrink guidance before cutting the caption below this
# Pixel-map ladder, best first (block, luma bits, chroma drop): rate control walks down it (spec §7).
PIXEL_LADDER: tuple[tuple[int, int, int], ...] = (
    (32, 6, 2), (32, 5, 2), (64, 6, 2), (64, 5, 2), (64, 4, 2), (128, 5, 2), (128, 4, 2),
    (128, 4, 3), (256, 4, 3), (512, 3, 3), (1024, 3, 3),
)
# auto mode (neural profiles): full from 0.01 bpp, pixel from 0.0015 bpp, text below.
AUTO_FULL_BPP = 0.01
AUTO_PIXEL_BPP = 0.0015
AUTO_CLASSIC_IMAGE_BPP = 0.006
REF_BITS_PER_PIXEL = 0.4  # starting guess of reference bits per reference pixel at low quality


@dataclass(frozen=True)
class EncodeOptions:
    """Encoder settings beyond the mode, caption, budget, profile and seed (those are ``encode``'s own
    arguments): the captioner, the guidance's tuning and the input limits. None takes the profile's default."""

    i2t: str | None = None  # captioner: registered name, hub id or local folder
    device: str | None = None  # where the captioner runs
    accel: Accel = EAGER  # captioner speed-ups
    caption_words: int | None = None  # words asked of the captioner
    caption_coder: str | None = None  # pin one caption coder (else the smallest file of all wins)
    pixel_block: int | None = None  # pin the pixel map's block (no ladder)
    pixel_bits: int | None = None  # ... and its luma bits
    ref_codec: str | None = None  # image-reference codec name (guidance.REF_CODECS)
    ref_bpp: float | None = None  # reference rate when no budget is given
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class DecodeOptions:
    """Decoder runtime settings; none of them changes what a file means (the profile comes from the file)."""

    device: str | None = None
    model_path: str | None = None  # local folder of the profile's T2I model
    dtype: str | None = None
    vae_path: str | None = None  # local folder of a *-taesd profile's tiny autoencoder
    accel: Accel = EAGER  # channels_last, torch.compile
    limits: Limits = DEFAULT_LIMITS


@dataclass(frozen=True)
class EncodeResult:
    """What encode_result returns: the file, the caption it holds and the choices made."""

    data: bytes
    mode: str
    caption: str
    header: bitstream.Header


def _budget(width: int, height: int, bpp: float | None, max_bytes: int | None) -> int | None:
    """Byte budget from --bpp and/or --max-bytes (the smaller wins)."""
    out = None
    if bpp is not None:
        if not bpp > 0:
            raise ConfigError(f"--bpp must be positive; found {bpp}")
        out = math.floor(bpp * width * height / 8)
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
            for name in self.coders:
                cid, payload = textcode.encode_with(caption, name)
                captions.append(Section(ids.SECTION_IDS["caption"], cid, payload))
        for cap in captions or [None]:
            sections = [s for s in (guide, cap) if s is not None]
            data = bitstream.pack(mode=self.mode, width=self.width, height=self.height,
                                  profile_id=self.profile.id, seed=self.seed, sections=sections)
            if best is None or len(data) < len(best):
                best = data
        if best is None:  # the loop runs at least once
            raise RuntimeError("no file was packed")
        return best


def _fit_caption(caption: str, build: Callable[[str], bytes], budget: int | None,
                 min_words: int = 0) -> tuple[bytes, str] | None:
    """Longest word prefix of caption whose file fits budget (None if below min_words or nothing fits)."""
    data = build(caption)
    if budget is None or len(data) <= budget:
        return data, caption
    words = caption.split()
    lo, hi, best = 0, len(words) - 1, None  # prefixes of lo words are tried; len(words) did not fit
    while lo <= hi:
        mid = (lo + hi) // 2
        cand = " ".join(words[:mid]).rstrip(",;:")
        d = build(cand)
        if len(d) <= budget:
            best, lo = (d, cand), mid + 1
        else:
            hi = mid - 1
    if best is None or len(best[1].split()) < min(min_words, len(words)):
        return None
    return best


def _ref_search(img: Image.Image, codec: guidance.RefCodec, target: int,
                build: Callable[[Section], bytes]) -> bytes | None:
    """Best-quality reference whose whole file fits target bytes: long side from a size guess, then
    bisection of the quality setting; the long side shrinks while even the worst quality is too big."""
    w, h = img.size
    longest = min(2040, max(8, (max(w, h) + 7) // 8 * 8))
    px = max(64.0, target * 8 / REF_BITS_PER_PIXEL)
    long_side = int(math.sqrt(px * max(w, h) / min(w, h)))
    long_side = max(8, min(longest, long_side // 8 * 8))
    sid = ids.SECTION_IDS["image_ref"]

    def make(ls: int, q: int) -> bytes:
        return build(Section(sid, *guidance.encode_image_ref_ex(img, codec, ls, q)))

    while long_side >= 8:
        best = make(long_side, codec.ref_quality[1])
        if len(best) <= target:
            lo, hi = codec.ref_quality  # larger q: smaller file; hi fits
            while hi - lo > 1:
                mid = (lo + hi) // 2
                d = make(long_side, mid)
                if len(d) <= target:
                    best, hi = d, mid
                else:
                    lo = mid
            return best
        long_side = (long_side * 3 // 4) // 8 * 8
    return None


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


def _encode_text(job: _Job) -> bytes:
    """Text mode: the longest word prefix of the caption that fits."""
    got = _fit_caption(job.caption, job.packer.pack, job.budget)
    if got is None:
        raise BudgetError(f"text mode cannot fit {job.budget} bytes: the smallest file is "
                          f"{len(job.packer.pack(''))} bytes")
    return got[0]


def _encode_pixel(job: _Job) -> bytes:
    """Pixel mode: walk the pixel-map ladder down from the profile's default until map and caption fit."""
    img, opts, enc, budget = job.img, job.options, job.prof.encoder, job.budget
    w, h = img.size
    pinned = opts.pixel_block is not None or opts.pixel_bits is not None
    default = (opts.pixel_block or enc.pixel_block, opts.pixel_bits or enc.pixel_bits, 2)
    ladder = [default] if pinned or budget is None else \
        [default, *(p for p in PIXEL_LADDER if _coarser(p, default))]
    smallest = None
    if not pinned:  # blocks too small for this image's size would exceed the grid limit (spec §7.2)
        fits = [p for p in ladder if math.prod(guidance.grid_size(w, h, p[0], check=False))
                <= guidance.MAX_MAP_CELLS]
        ladder = fits or ladder[-1:]
    for i, (block, bits, drop) in enumerate(ladder):
        section = Section(ids.SECTION_IDS["pixel_map"], 0,
                          guidance.encode_pixel_map(img, guidance.PixelParams(block, bits, drop)))
        last = i == len(ladder) - 1
        got = _fit_caption(job.caption, lambda c, s=section: job.packer.pack(c, s), budget,
                           0 if last else MIN_CAPTION_WORDS)
        if got is not None:
            return got[0]
        smallest = len(job.packer.pack("", section))
    raise BudgetError(f"pixel mode cannot fit {budget} bytes: the smallest file is {smallest} bytes")


def _ref_codec(opts: EncodeOptions) -> guidance.RefCodec:
    """The image-reference codec asked for (or the default one), refused when it is not usable here."""
    codec = guidance.REF_CODECS[opts.ref_codec] if opts.ref_codec else guidance.default_ref_codec()
    why = codec.available()
    if why:
        raise ConfigError(f"image-reference codec {codec.name} is not usable here: {why}")
    return codec


def _smallest_ref(job: _Job, codec: guidance.RefCodec, caption: str | None) -> bytes:
    """The smallest file with a reference: 8-pixel long side at the worst quality."""
    return job.packer.pack(caption, Section(ids.SECTION_IDS["image_ref"],
                                            *guidance.encode_image_ref_ex(job.img, codec, 8, codec.ref_quality[1])))


def _encode_unbudgeted_ref(job: _Job, codec: guidance.RefCodec, caption: str | None) -> bytes:
    """Image or full mode without a budget: the profile's reference rate is a target, not a limit."""
    w, h = job.img.size
    target = max(16, int((job.options.ref_bpp or job.prof.encoder.ref_bpp) * w * h / 8))
    base = len(job.packer.pack(caption, Section(ids.SECTION_IDS["image_ref"], codec.ref_id, b"")))
    data = _ref_search(job.img, codec, target + base, lambda s: job.packer.pack(caption, s))
    return data if data is not None else _smallest_ref(job, codec, caption)


def _encode_image(job: _Job) -> bytes:
    """Image mode: the best reference whose file fits."""
    codec = _ref_codec(job.options)
    if job.budget is None:
        return _encode_unbudgeted_ref(job, codec, None)
    data = _ref_search(job.img, codec, job.budget, lambda s: job.packer.pack(None, s))
    if data is None:
        raise BudgetError(f"image mode cannot fit {job.budget} bytes: the smallest file is "
                          f"{len(_smallest_ref(job, codec, None))} bytes")
    return data


def _encode_full(job: _Job) -> bytes:
    """Full mode: caption first, up to 30% of the budget, then the reference gets the rest."""
    codec = _ref_codec(job.options)
    budget = job.budget
    if budget is None:
        return _encode_unbudgeted_ref(job, codec, job.caption)
    for share in (0.3, 0.15, 0.0):
        c = textcode.trim_to_bytes(job.caption, int(budget * share)) if share else ""
        data = _ref_search(job.img, codec, budget, lambda s, c=c: job.packer.pack(c, s))
        if data is not None:
            return data
    raise BudgetError(f"full mode cannot fit {budget} bytes: the smallest file is "
                      f"{len(_smallest_ref(job, codec, ''))} bytes")


_MODE_ENCODERS: dict[str, Callable[[_Job], bytes]] = {
    "text": _encode_text, "pixel": _encode_pixel, "image": _encode_image, "full": _encode_full,
}
if set(_MODE_ENCODERS) != set(ids.MODES):
    raise RuntimeError("codec._MODE_ENCODERS and core.ids.MODES disagree: every mode needs one encoder")


def _coarser(p: tuple[int, int, int], ref: tuple[int, int, int]) -> bool:
    """Ladder entries below the default: larger blocks, or the same block with fewer bits."""
    return p[0] > ref[0] or (p[0] == ref[0] and (p[1], -p[2]) < (ref[1], -ref[2]))


def _auto_modes(prof: Profile, budget: int | None, w: int, h: int) -> list[str]:
    """Modes to try for --mode auto, best first (spec-independent encoder policy, see README)."""
    bpp = None if budget is None else budget * 8 / (w * h)
    classic = not prof.model
    if classic:
        order = ["image", "pixel"] if bpp is None or bpp >= AUTO_CLASSIC_IMAGE_BPP else ["pixel"]
    elif bpp is None or bpp >= AUTO_FULL_BPP:
        order = ["full", "pixel", "text"]
    elif bpp >= AUTO_PIXEL_BPP:
        order = ["pixel", "text"]
    else:
        order = ["text"]
    return [m for m in order if m in prof.modes]


def encode_result(image: object, *, mode: str = "text", caption: str | None = None, bpp: float | None = None,
                  max_bytes: int | None = None, profile: str | int | Profile | None = None, seed: int = 0,
                  options: EncodeOptions | None = None) -> EncodeResult:
    """Encode an image; returns the file with the mode and caption chosen (arguments as ``encode``)."""
    opts = options or EncodeOptions()
    if mode not in MODES_AUTO:
        raise ConfigError(f"unknown mode {mode!r}: expected one of {', '.join(MODES_AUTO)}")
    if not 0 <= seed <= bitstream.MAX_SEED:
        raise ConfigError(f"seed must be in 0..{bitstream.MAX_SEED}; found {seed}")
    prof = get_profile(profile)
    img = load_image(image, opts.limits)
    w, h = img.size
    budget = _budget(w, h, bpp, max_bytes)
    modes = _auto_modes(prof, budget, w, h) if mode == "auto" else [mode]
    for m in modes:
        prof.mode(m)  # a profile that cannot decode the mode is refused before any work
    if not modes:
        raise ProfileError(f"profile {prof.name} decodes no mode")
    words = opts.caption_words or prof.encoder.caption_words
    cap_text: str | None = None
    errors = []
    for m in modes:
        if m in ("text", "pixel", "full"):
            if caption is not None:
                text = textcode.normalize(caption).strip()
            elif _uses_caption(prof, m):
                if cap_text is None:
                    from .models import i2t as i2t_backend

                    cap_text = textcode.normalize(i2t_backend.caption(img, model=opts.i2t, words=words,
                                                                      device=opts.device, accel=opts.accel))
                text = cap_text
            else:
                text = ""  # the profile's decoder ignores captions: store none
        else:
            text = ""
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


def _uses_caption(prof: Profile, mode: str) -> bool:
    """True when this profile's decoder reads a caption in this mode (else none is stored)."""
    return mode in ("text", "pixel", "full") and mode in prof.modes and prof.modes[mode].pipeline != "classic"


def needs_captioner(mode: str, profile: str | int | Profile | None = None) -> bool:
    """True when encoding in this mode (any of auto's modes) for this profile runs the I2T model, unless a
    caption is given."""
    prof = get_profile(profile)
    return any(_uses_caption(prof, m) for m in (ids.MODES if mode == "auto" else (mode,)))


def caption_many(images: Sequence[object], options: EncodeOptions | None = None, *,
                 batch_size: int = 8) -> Iterator[tuple[int, str | CmcodecError]]:
    """Captions of many images, batch_size per I2T call, with the captioner, words (default 20), device,
    accel and limits of ``options``; yields (index, caption or that image's CmcodecError), a batch at a
    time. Pass each caption to encode(caption=...) to code it."""
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
                accel=opts.accel))
        except CmcodecError as e:
            texts = [e] * len(loaded)
        if len(texts) != len(loaded):  # a short answer would silently lose images
            raise ModelError(f"the captioner returned {len(texts)} captions for {len(loaded)} images")
        for (i, _), t in zip(loaded, texts, strict=True):
            yield i, textcode.normalize(t) if isinstance(t, str) else t


def decode_guidance(header: bitstream.Header, prof: Profile) -> Image.Image | None:
    """The guidance image at the original size (pixel map or reference), or None in text mode."""
    mc = prof.mode(header.mode)
    pm = header.section("pixel_map")
    if pm is not None:
        params, grid = guidance.decode_pixel_map(pm.payload, header.width, header.height)
        return guidance.render_pixel_map(grid, params, header.width, header.height, mc.upsample, mc.smooth)
    ref = header.section("image_ref")
    if ref is not None:
        small = guidance.decode_image_ref(ref.payload, ref.coder_id, header.width, header.height)
        return guidance.render_image_ref(small, header.width, header.height, mc.upsample, mc.smooth)
    return None


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
    return header


def _prepare(data: bytes, limits: Limits) -> tuple[bitstream.Header, Profile, str, Image.Image | None]:
    """Everything a decode needs before any model runs: header, profile, caption and guidance image."""
    header = bitstream.read_header(data, limits)
    prof = get_profile(header.profile_id)
    prof.mode(header.mode)
    sec = header.section("caption")
    caption = textcode.decode(sec.payload, sec.coder_id, limits.max_caption_chars) if sec is not None else ""
    return header, prof, caption, decode_guidance(header, prof)


def decode(data: bytes, options: DecodeOptions | None = None) -> Image.Image:
    """Decode .cmc bytes to an RGB image of the original size, with the profile named in the file.

    ``options`` (DecodeOptions) picks the device and precision, points the profile's model (tiny
    autoencoder) at a local folder and turns on runtime speed-ups; none of it changes the profile.
    """
    opts = options or DecodeOptions()
    header, prof, caption, init = _prepare(data, opts.limits)
    if prof.mode(header.mode).pipeline == "classic":
        if init is None:  # the reader implies guidance for classic modes (spec §4.2); a bug if not
            raise RuntimeError(f"{header.mode}-mode file without guidance passed the reader")
        return init
    from .models import t2i

    return t2i.generate(prof, header.mode, caption=caption, init=init, width=header.width,
                        height=header.height, seed=header.seed, device=opts.device, model_path=opts.model_path,
                        dtype=opts.dtype, vae_path=opts.vae_path, accel=opts.accel)


def decode_many(datas: Iterable[bytes], options: DecodeOptions | None = None, *,
                batch_size: int = 8) -> Iterator[tuple[int, Image.Image | CmcodecError]]:
    """Decode many files, batching those of one profile, mode and generation size into one pipeline call.
    Yields (index, image or the CmcodecError of that file) as results are ready, not in order.

    Each file keeps its own seed and CPU generator, so a file decodes to the same image in any batch up to
    the last bits of batched arithmetic.
    """
    opts = options or DecodeOptions()
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1; found {batch_size}")
    groups: dict[tuple, list[tuple[int, bitstream.Header, str, Image.Image | None]]] = {}

    def flush(key: tuple) -> Iterator[tuple[int, Image.Image | CmcodecError]]:
        from .models import t2i

        batch = groups.pop(key)
        prof, mode = get_profile(key[0]), key[1]
        items = [(cap, init, h.width, h.height, h.seed) for _, h, cap, init in batch]
        try:
            out: list[Image.Image | CmcodecError] = list(t2i.generate_batch(
                prof, mode, items, device=opts.device, model_path=opts.model_path, dtype=opts.dtype,
                vae_path=opts.vae_path, accel=opts.accel))
        except CmcodecError as e:
            out = [e] * len(batch)
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is one
            if "out of memory" not in str(e):
                raise
            err = ModelError(f"out of device memory decoding a batch of {len(batch)} {mode}-mode files with "
                             f"profile {prof.name}: use a smaller batch size (found {batch_size})")
            out = [err] * len(batch)
        if len(out) != len(batch):  # a short answer would silently lose files
            err = ModelError(f"the {prof.name} pipeline returned {len(out)} images for {len(batch)} files")
            out = [err] * len(batch)
        for (i, *_), res in zip(batch, out, strict=True):
            yield i, res

    for i, data in enumerate(datas):
        try:
            header, prof, caption, init = _prepare(data, opts.limits)
        except CmcodecError as e:
            yield i, e
            continue
        if prof.mode(header.mode).pipeline == "classic":
            if init is None:  # as in decode
                raise RuntimeError(f"{header.mode}-mode file without guidance passed the reader")
            yield i, init
            continue
        key = (prof.id, header.mode, prof.decode_size(header.width, header.height))
        groups.setdefault(key, []).append((i, header, caption, init))
        if len(groups[key]) >= batch_size:
            yield from flush(key)
    for key in list(groups):
        yield from flush(key)

"""Conventional codecs: one table of rows, each encode(image, setting, effort) -> bytes, decode(bytes) -> image.

Each codec is a data row written with keywords (CompressAI ``utils/bench/codecs.py`` style): stable name,
library and version, the integer setting range and which end gives the smallest files, the encoder options
of each effort level with the reason for them, and a note on its fixed headers. ``header_bytes(data)``
counts the bytes a decoder could rebuild or that do not depend on the picture (parameter sets, box
structure, markers), so rd-curve can report a second rate without them. Rows with ``ref_quality`` are the
image-reference coders of spec §8 (their ids come from ``core.ids``); rd-curve's sweeps over all rows live
in ``cmcodec.bench``. Everything is in memory except VVC, whose only encoder here is VVenC inside the
static ffmpeg of the ``imageio-ffmpeg`` package (run as a subprocess).
"""

from __future__ import annotations

import atexit
import fractions
import io
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from PIL import Image

from . import deps, ids
from .errors import CodecUnavailableError, ConfigError, LimitError, UnknownCoderError

# --- PyAV video codecs (one intra picture) -------------------------------------------------------------


def padded_size(w: int, h: int, multiple: int, minimum: int = 0) -> tuple[int, int]:
    """Sides rounded up to a multiple, and to at least minimum."""
    return (max(minimum, -(-w // multiple) * multiple), max(minimum, -(-h // multiple) * multiple))


def _pad(img: Image.Image, multiple: int, minimum: int = 0) -> Image.Image:
    """Pad right and bottom by edge replication to padded_size; decoders' outputs are cropped back."""
    import numpy as np

    w, h = img.size
    pw, ph = padded_size(w, h, multiple, minimum)
    if (pw, ph) == (w, h):
        return img
    a = np.pad(np.asarray(img.convert("RGB")), ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    return Image.fromarray(a)


# SVT-AV1 hangs on some small pictures (seen with 16x66, 24x66 and 66x16 in PyAV 18.1's build); sides that are
# multiples of 8 and at least 32 never did in our sweeps, so AV1 pictures are padded to that (spec §8.3)
AV1_PAD = (8, 32)


def av_encode(img: Image.Image, codec: str, q: int, options: Mapping[str, str] | None = None) -> bytes:
    """One intra frame through PyAV (SVT-AV1 or x265) at crf q with the encoder options of an effort row
    (default: the image reference's, spec §8.3), all packets concatenated."""
    import av

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only (it prints its configuration otherwise)
    av.logging.set_level(av.logging.ERROR)
    img = _pad(img.convert("RGB"), *AV1_PAD) if codec == "av1" else _pad(img.convert("RGB"), 2)
    ctx = av.CodecContext.create({"av1": "libsvtav1", "hevc": "libx265"}[codec], "w")
    ctx.width, ctx.height = img.size
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = fractions.Fraction(1, 25)
    ctx.options = {"crf": str(q), **(options if options is not None else _REF_AV_OPTIONS[codec])}
    frame = av.VideoFrame.from_image(img).reformat(format="yuv420p")
    try:
        packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    except (av.error.FFmpegError, ValueError) as e:
        raise CodecUnavailableError(f"{codec} encoder failed on a {img.size[0]}x{img.size[1]} picture ({e})") from None
    return b"".join(bytes(p) for p in packets)


# x265 for one still picture at every effort: quiet, all-intra, parameter sets once
_X265_PARAMS = "info=0:log-level=none:keyint=1:repeat-headers=0"
# what spec §8.3's rebuilt sequence header / parameter sets assume: the image reference's encoder options
_REF_AV_OPTIONS = {
    "av1": {"preset": "6", "svtav1-params": "avif=1:tune=0"},
    "hevc": {"preset": "medium", "x265-params": _X265_PARAMS},
}


_AV_DECODERS = {"av1": "libdav1d", "hevc": "hevc", "vvc": "vvc"}


def _check_av_decoder(codec: str) -> None:
    """CodecUnavailableError when PyAV here cannot decode the codec: a valid stream this install cannot
    decode is not a corrupt one."""
    why = _av_codecs(_AV_DECODERS[codec])()
    if not why and codec == "vvc":
        import av

        why = None if "vvc" in av.formats_available else "PyAV's FFmpeg lacks the vvc demuxer" + _av_hint()
    if why:
        raise CodecUnavailableError(f"cannot decode {codec}: {why}")


def av_decode(data: bytes, codec: str, max_pixels: int = 1 << 26) -> Image.Image:
    """Decode one frame with PyAV (dav1d, FFmpeg's HEVC or VVC decoder), refusing pictures above max_pixels.

    Raises ValueError with the decoder's complaint on a corrupt stream, CodecUnavailableError when PyAV's
    FFmpeg has no decoder for the codec.
    """
    import av

    decoder = _AV_DECODERS[codec]
    _check_av_decoder(codec)
    av.logging.set_level(av.logging.ERROR)
    frames = []
    with av.logging.Capture() as logs:  # a corrupt stream's complaints go into the error, not to stderr
        try:
            if codec == "vvc":  # PyAV has no VVC parser: go through the raw VVC demuxer
                with av.open(io.BytesIO(data), format="vvc") as c:
                    stream = c.streams.video[0]
                    # a decoder option (the demuxer ignores it): checked on the SPS, before any allocation
                    stream.codec_context.options = {"max_pixels": str(max_pixels)}
                    frames = [next(c.decode(stream))]
            else:
                ctx = av.CodecContext.create(decoder, "r")
                ctx.options = {"max_pixels": str(max_pixels)}  # checked on the stream header, before allocation
                if codec == "hevc":  # fail on damaged slice data instead of concealing it (truncated files)
                    ctx.options = {**ctx.options, "err_detect": "explode"}
                for pkt in ctx.parse(data) or [av.Packet(data)]:
                    frames.extend(ctx.decode(pkt))
                frames.extend(ctx.decode(None))
        except (av.error.FFmpegError, ValueError, StopIteration) as e:
            raise ValueError(logs[-1][2].strip() if logs else str(e) or "no frame") from None
    if not frames:
        raise ValueError(f"the {codec} stream holds no frame")
    return frames[0].to_image()


# --- native decoders under a deadline (spec §9.1) --------------------------------------------------------
# A reference stream of a .cmc file is untrusted input to a native decoder (dav1d, FFmpeg's HEVC and VVC,
# OpenJPEG): one that loops, crashes or blocks inside C code would hang the process where no signal handler
# runs. Such decodes run in a worker process (spawned, so no threads or locks of this process are inherited)
# that is killed when it overruns a deadline proportional to the stream; the worker is reused between calls.


def ref_deadline(n_bytes: int, pixels: int) -> float:
    """Seconds a reference decode may take: REF_DEADLINE_S plus 1 s per 100 kB of stream and per megapixel
    of the picture it declares (a 2040 x 2040 reference of 1 MB: 24 s; the usual few hundred bytes: 10 s)."""
    from .limits import REF_DEADLINE_S

    return REF_DEADLINE_S + n_bytes / 100_000 + pixels / 1_000_000


def _j2k_decode(data: bytes, want: tuple[int, int] | None) -> Image.Image:
    """A JPEG 2000 codestream through Pillow (OpenJPEG); a picture that is not ``want`` pixels is refused from
    its SIZ header, before any sample is decoded. ValueError carries the decoder's complaint."""
    import warnings

    with warnings.catch_warnings():  # a huge SIZ header is refused just below, not warned about
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=["JPEG2000"])
            if want and img.size != want:
                raise ValueError(f"expected a {want[0]}x{want[1]} picture, found {img.size[0]}x{img.size[1]}")
            img.load()
        except ValueError:
            raise
        except Exception as e:  # Pillow raises OSError/SyntaxError/... on broken codestreams
            raise ValueError(str(e) or type(e).__name__) from None
    return img.convert("RGB")


_WORKER_CALLS: dict[str, Callable[..., Image.Image]] = {"av": av_decode, "j2k": _j2k_decode}


def _serve(conn: Any) -> None:
    """The worker's loop: "ready" once its libraries are loaded, then (call, args) in, ("ok", (mode, size,
    pixels)) or ("err", kind, message) out."""
    try:
        import av  # noqa: F401  (loaded before the first deadline starts, not within it)
    except ImportError:
        pass
    conn.send("ready")
    while True:
        try:
            name, args = conn.recv()
        except EOFError:
            return
        try:
            img = _WORKER_CALLS[name](*args)
            conn.send(("ok", (img.mode, img.size, img.tobytes())))
        except CodecUnavailableError as e:
            conn.send(("err", "unavailable", str(e)))
        except Exception as e:  # the decoder's complaint about a corrupt stream, told to the caller
            conn.send(("err", "corrupt", str(e) or type(e).__name__))


def _serve_fd(fd: int) -> None:
    """The worker process's entry point: _serve on the socket it inherited."""
    from multiprocessing.connection import Connection

    _serve(Connection(fd))


class _Worker:
    """One worker process serving _serve over a socket pair. It is started as ``python -c`` (not through
    multiprocessing's spawn, which would import the caller's main script again in the child: a script that
    decodes at top level would run twice)."""

    def __init__(self) -> None:
        import socket
        import sys
        from multiprocessing.connection import Connection
        from pathlib import Path

        parent, child = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])  # the folder holding this cmcodec package
        code = (f"import sys; sys.path.insert(0, {root!r}); from cmcodec.core.refcodecs import _serve_fd; "
                f"_serve_fd({child.fileno()})")
        self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(child.fileno(),),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,  # a decoder's own log lines are not ours to print
                                     close_fds=True)
        child.close()
        self.conn = Connection(parent.detach())
        # starting a process and loading PyAV is not the stream's work: its own bound, outside the deadline
        try:
            ready = self.conn.poll(WORKER_START_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.stop()
            raise LimitError(f"the reference decoder process did not start within {WORKER_START_S:.0f} s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.conn.close()


def _stop_worker() -> None:
    """At exit: a worker still decoding (a stream past its deadline while the caller was interrupted) ends too."""
    if _worker is not None:
        _worker.stop()


WORKER_START_S = 120.0  # a spawned Python loading PyAV: about a second, minutes only on a starved machine
_worker: _Worker | None = None
_worker_lock = __import__("threading").Lock()


def bounded_decode(name: str, args: tuple, n_bytes: int, pixels: int) -> Image.Image:
    """_WORKER_CALLS[name](*args) in the worker process within ref_deadline(n_bytes, pixels) seconds. A corrupt
    stream raises ValueError with the decoder's complaint; an overrun kills the worker and raises LimitError;
    a worker that dies (a crash in native code) raises ValueError."""
    global _worker
    if name == "av":  # asked here, not only in the worker: this process's PyAV is the one a user set up
        _check_av_decoder(args[1])
    deadline = ref_deadline(n_bytes, pixels)
    with _worker_lock:
        if _worker is None or not _worker.alive():
            if _worker is None:
                atexit.register(_stop_worker)
            _worker = _Worker()
        w = _worker
        try:
            w.conn.send((name, args))
            if not w.conn.poll(deadline):
                w.stop()
                _worker = None
                raise LimitError(f"the reference decoder did not finish within {deadline:.1f} s (spec §9.1 deadline "
                                 f"of a {n_bytes}-byte stream); a hostile or damaged stream")
            kind, *rest = w.conn.recv()
        except (EOFError, OSError):  # the worker died: a crash inside the native decoder
            w.stop()
            _worker = None
            raise ValueError("the decoder process crashed on this stream") from None
        except BaseException:  # Ctrl-C or SIGTERM while waiting: the worker may be mid-decode, never reused
            w.stop()
            _worker = None
            raise
    if kind == "ok":
        mode, size, pixels_bytes = rest[0]
        return Image.frombytes(mode, size, pixels_bytes)
    if rest[0] == "unavailable":
        raise CodecUnavailableError(rest[1])
    raise ValueError(rest[1])


@cache
def ffmpeg_exe() -> str | None:
    """The static ffmpeg of imageio-ffmpeg (it carries VVenC), or None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or no binary for this platform
        return None


def vvc_encode(img: Image.Image, q: int, options: Mapping[str, str] | None = None) -> bytes:
    """One intra picture through VVenC at constant QP q, VVC Annex-B stream, 10-bit 4:2:0 (VVenC's only input
    format here). options: ffmpeg libvvenc options of an effort row (default: the image reference's,
    preset 'faster' with VVenC's default perceptual QP adaptation)."""
    exe = ffmpeg_exe()
    if exe is None:
        raise CodecUnavailableError("VVC needs the imageio-ffmpeg package (its static ffmpeg carries VVenC)")
    img = _pad(img.convert("RGB"), 2)
    w, h = img.size
    opts = [x for k, v in (options if options is not None else {"preset": "faster"}).items() for x in (f"-{k}", v)]
    cmd = [exe, "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
           "-i", "-", "-frames:v", "1", "-c:v", "libvvenc", *opts, "-qp", str(q),
           "-pix_fmt", "yuv420p10le", "-f", "vvc", "-"]
    r = subprocess.run(cmd, input=img.tobytes(), capture_output=True, timeout=600)
    if r.returncode or not r.stdout:
        lines = [x.strip() for x in r.stderr.decode(errors="replace").splitlines() if x.strip()]
        raise CodecUnavailableError(f"VVenC failed on a {w}x{h} picture at QP {q}: {' / '.join(lines[-2:])[:300]}")
    return r.stdout


# --- header accounting ---------------------------------------------------------------------------------


def _annexb_nals(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each NAL unit of an Annex-B stream, start codes included."""
    starts = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i - 1 if i > 0 and data[i - 1] == 0 else i)
        i = data.find(b"\x00\x00\x01", i + 3)
    return [(s, starts[k + 1] if k + 1 < len(starts) else len(data)) for k, s in enumerate(starts)]


def _nal_header_bytes(data: bytes, codec: str) -> int:
    """Bytes of parameter sets, SEI and delimiters (HEVC: VPS/SPS/PPS/AUD/SEI; VVC: OPI/DCI/VPS/SPS/PPS/AUD/SEI)."""
    total = 0
    for s, e in _annexb_nals(data):
        hdr = s + (4 if data[s : s + 4] == b"\x00\x00\x00\x01" else 3)
        if hdr + 1 >= len(data):
            continue
        if codec == "hevc":
            t = (data[hdr] >> 1) & 0x3F
            fixed = t in (32, 33, 34, 35, 39, 40)
        else:
            t = data[hdr + 1] >> 3
            fixed = t in (12, 13, 14, 15, 16, 20, 23, 24)
        if fixed:
            total += e - s
    return total


def _leb128(data: bytes, i: int) -> tuple[int, int]:
    """AV1 leb128 value and the index after it."""
    v = 0
    for k in range(8):
        b = data[i + k]
        v |= (b & 0x7F) << (7 * k)
        if not b & 0x80:
            return v, i + k + 1
    raise ValueError("bad leb128")


def _av1_header_bytes(data: bytes) -> int:
    """Temporal delimiter and sequence header OBUs (with their OBU headers)."""
    i, total = 0, 0
    while i < len(data):
        t = (data[i] >> 3) & 0xF
        ext = (data[i] >> 2) & 1
        size, j = _leb128(data, i + 1 + ext)
        if t in (1, 2):  # OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER
            total += j + size - i
        i = j + size
    return total


def _jpeg_header_bytes(data: bytes) -> int:
    """Everything before the entropy-coded data (SOI, APPn, DQT, SOF, DHT, SOS) plus EOI."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        i += 2 + length
        if marker == 0xDA:  # SOS: scan data follows
            return i + 2
    return len(data)


def _box_header_bytes(data: bytes) -> int:
    """ISOBMFF (AVIF, HEIF): everything but the payload of the 'mdat' box."""
    i = 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        hdr = 8
        if size == 1:
            size, hdr = int.from_bytes(data[i + 8 : i + 16], "big"), 16
        elif size == 0:
            size = len(data) - i
        if kind == b"mdat":
            return len(data) - (size - hdr)
        i += max(size, 8)
    return len(data)


def _webp_header_bytes(data: bytes) -> int:
    """RIFF and chunk headers, and the 10-byte VP8 frame header of a lossy WebP."""
    i, total = 12, 12
    while i + 8 <= len(data):
        kind, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        total += 8 + (10 if kind == b"VP8 " else 0 if kind in (b"VP8L", b"ALPH") else size)
        i += 8 + size + (size & 1)
    return total


def _j2k_header_bytes(data: bytes) -> int:
    """Main header and tile-part headers up to each SOD marker, plus EOC (codestream markers only)."""
    i = data.find(b"\xff\x90")  # first SOT
    if i < 0:
        return len(data)
    total = i + 2  # main header + EOC
    while 0 <= i < len(data):
        psot = int.from_bytes(data[i + 6 : i + 10], "big")
        sod = data.find(b"\xff\x93", i)
        if sod < 0 or psot == 0:
            break
        total += sod + 2 - i
        i += psot
    return total


# --- Pillow / imagecodecs still-image codecs -------------------------------------------------------------


def _pil_encode(fmt: str) -> Callable[[Image.Image, int, Mapping[str, Any]], bytes]:
    """Encoder through Pillow's save with the setting passed as ``quality`` and the effort's options."""

    def enc(img: Image.Image, q: int, options: Mapping[str, Any]) -> bytes:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, fmt, quality=q, **options)
        return buf.getvalue()

    return enc


def _pil_decode(data: bytes) -> Image.Image:
    """Any format Pillow (or a registered plugin) reads."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def j2k_encode(img: Image.Image, q: int, options: Mapping[str, Any] | None = None) -> bytes:
    """JPEG 2000 codestream (no JP2 box) at compression ratio q, 9/7 wavelet (OpenJPEG through Pillow).

    Resolution levels: up to 6, fewer on small pictures (the lowest band keeps at least 4 samples a side).
    """
    import math

    buf = io.BytesIO()
    img = img.convert("RGB")
    img.save(buf, "JPEG2000", no_jp2=True, quality_mode="rates", quality_layers=[q], irreversible=True,
             num_resolutions=max(1, min(6, int(math.log2(max(1, min(img.size)))) - 2)), **(options or {}))
    return buf.getvalue()


def _heif_encode(img: Image.Image, q: int, options: Mapping[str, Any]) -> bytes:
    """HEIC through pillow-heif (libheif with x265); options are libheif encoder parameters."""
    import pillow_heif

    heif = pillow_heif.from_pillow(img.convert("RGB"))
    buf = io.BytesIO()
    heif.save(buf, quality=q, enc_params=dict(options))
    return buf.getvalue()


def _heif_decode(data: bytes) -> Image.Image:
    """HEIC through pillow-heif."""
    import pillow_heif

    return pillow_heif.open_heif(io.BytesIO(data)).to_pillow().convert("RGB")


def _jxl_encode(img: Image.Image, q: int, options: Mapping[str, Any]) -> bytes:
    """JPEG XL codestream (no container) at Butteraugli distance q / 10."""
    import imagecodecs
    import numpy as np

    return bytes(imagecodecs.jpegxl_encode(np.asarray(img.convert("RGB")), distance=q / 10, usecontainer=False,
                                           **options))


def _jxl_decode(data: bytes) -> Image.Image:
    """JPEG XL through imagecodecs."""
    import imagecodecs

    return Image.fromarray(imagecodecs.jpegxl_decode(data)).convert("RGB")


def _module_version(mod: str, attr: str = "__version__") -> Callable[[], str]:
    """Version getter of a module."""

    def get() -> str:
        import importlib

        return str(getattr(importlib.import_module(mod), attr, "?"))

    return get


def _pil_feature(feature: str) -> Callable[[], str | None]:
    """Availability of a Pillow codec (for one newer than Pillow's floor: the release that brought it)."""

    def check() -> str | None:
        from PIL import features

        old = deps.too_old(feature) if feature in deps.FLOORS else None
        if old:  # before its plugin, features.check only warns "Unknown feature"
            return f"Pillow has no {feature}: {old}"
        return None if features.check(feature) else f"Pillow was built without {feature}"

    return check


def _av_codecs(*names: str) -> Callable[[], str | None]:
    """Availability of PyAV codecs."""

    def check() -> str | None:
        try:
            import av
        except ImportError:
            return "PyAV is not installed"
        missing = [n for n in names if n not in av.codecs_available]
        if missing:
            return f"PyAV's FFmpeg lacks {', '.join(missing)}{_av_hint()}"
        return deps.too_old("av") if "libsvtav1" in names else None

    return check


def _av_hint() -> str:
    """The upgrade line when PyAV predates the wheels that carry a missing codec, else ''."""
    old = deps.too_old("av")
    return f": {old}" if old else ""


def _imports(mod: str) -> Callable[[], str | None]:
    """Availability of an importable module."""

    def check() -> str | None:
        try:
            __import__(mod)
        except ImportError as e:
            return f"{mod} is not installed ({e})"
        return None

    return check


@cache
def _vvc_available() -> str | None:
    """VVenC in imageio-ffmpeg's ffmpeg, and PyAV's VVC decoder (asked once per process: it runs ffmpeg)."""
    why = _av_codecs("vvc")()
    if why:
        return why
    exe = ffmpeg_exe()
    if exe is None:
        return "imageio-ffmpeg is not installed (its static ffmpeg carries the only VVC encoder, VVenC)"
    r = subprocess.run([exe, "-hide_banner", "-h", "encoder=libvvenc"], capture_output=True, text=True)
    return None if "libvvenc" in r.stdout else f"{exe} has no libvvenc"


def _vvc_version() -> str:
    """ffmpeg build of imageio-ffmpeg (VVenC's version is not printed by it)."""
    import imageio_ffmpeg

    return f"imageio-ffmpeg {imageio_ffmpeg.__version__}, ffmpeg {imageio_ffmpeg.get_ffmpeg_version()}"


# --- the codec table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Effort:
    """Encoder options of one effort level, and why they are what they are."""

    options: Mapping[str, Any]
    why: str


EFFORTS = ("best", "fast")  # "best": the anchors of rd-curve; "fast": rd-curve --fast (weaker, said so)
REF_EFFORT = "ref"  # the image reference of spec §8, whose rebuilt headers (§8.3) assume these options


@dataclass(frozen=True, kw_only=True)
class RefCodec:
    """One conventional codec: a data row (CompressAI ``utils/bench/codecs.py`` style).

    ``quality`` is the integer setting range, inclusive; ``small_at`` says which end ("lo" or "hi") gives the
    smallest files. ``efforts`` maps "best" and "fast" (and "ref" for the image-reference coders) to encoder
    options. ``ref_id`` is the coder id of spec §4.3 when the codec is an image-reference coder (spec §8),
    with ``ref_quality`` = (best, worst) settings its reference search may use.
    """

    name: str
    label: str
    library: str
    quality: tuple[int, int]
    small_at: str
    headers: str  # what header_bytes counts
    efforts: Mapping[str, Effort]
    encoder: Callable[[Image.Image, int, Mapping[str, Any]], bytes]
    decoder: Callable[[bytes], Image.Image]
    header_bytes: Callable[[bytes], int]
    check: Callable[[], str | None]
    version: Callable[[], str]
    ref_quality: tuple[int, int] | None = None

    @property
    def ref_id(self) -> int | None:
        """Coder id of spec §4.3 for an image-reference coder (core.ids), None for the others."""
        return ids.coder_id("image_ref", self.name) if self.ref_quality else None

    def available(self) -> str | None:
        """None when usable here, else the reason."""
        return self.check()

    def encode(self, img: Image.Image, q: int, effort: str = "best") -> bytes:
        """The coded stream of img at setting q with the options of an effort level."""
        if effort not in self.efforts:
            raise ConfigError(f"{self.name} has no effort {effort!r}: expected one of {', '.join(self.efforts)}")
        return self.encoder(img, q, self.efforts[effort].options)

    def decode(self, data: bytes) -> Image.Image:
        """The decoded picture (padded codecs return the padded size)."""
        return self.decoder(data)

    def settings_small_to_large(self) -> list[int]:
        """Settings ordered from the smallest files to the largest."""
        r = list(range(self.quality[0], self.quality[1] + 1))
        return r if self.small_at == "lo" else r[::-1]


_SAME = "one effort only: {}"

CODECS: dict[str, RefCodec] = {c.name: c for c in (
    RefCodec(
        name="jpeg", label="JPEG", library="Pillow (libjpeg)", quality=(1, 95), small_at="lo",
        headers="SOI, APPn, DQT, SOF, DHT, SOS, EOI",
        efforts={"best": Effort({"optimize": True}, "Huffman tables optimized for the picture (two passes): the "
                                "smallest baseline JPEG libjpeg writes at a quality; 4:2:0"),
                 "fast": Effort({"optimize": True}, _SAME.format("optimizing costs milliseconds"))},
        encoder=_pil_encode("JPEG"), decoder=_pil_decode, header_bytes=_jpeg_header_bytes, check=lambda: None,
        version=_module_version("PIL")),
    RefCodec(
        name="webp", label="WebP", library="Pillow (libwebp)", quality=(0, 100), small_at="lo",
        headers="RIFF and chunk headers, VP8 frame header",
        efforts={"best": Effort({"method": 6}, "method 6: libwebp's slowest and strongest search"),
                 "fast": Effort({"method": 4}, "method 4: libwebp's default")},
        encoder=_pil_encode("WEBP"), decoder=_pil_decode, header_bytes=_webp_header_bytes,
        check=_pil_feature("webp"), version=_module_version("PIL")),
    RefCodec(
        name="avif", label="AVIF", library="Pillow (libavif/aom)", quality=(0, 100), small_at="lo",
        headers="ISOBMFF boxes except the mdat payload",
        efforts={"best": Effort({"speed": 4}, "libaom speed 4: a low speed a 24-image sweep can afford (speed 2 "
                                "took 2.7x its time on kodim05); libaom tunes for PSNR by default"),
                 "fast": Effort({"speed": 6}, "speed 6: libavif's default")},
        encoder=_pil_encode("AVIF"), decoder=_pil_decode, header_bytes=_box_header_bytes,
        check=_pil_feature("avif"), version=_module_version("PIL")),
    RefCodec(
        name="jxl", label="JPEG XL", library="imagecodecs (libjxl)", quality=(1, 250), small_at="hi",
        headers="none separated (codestream without container)",
        efforts={"best": Effort({"effort": 9}, "effort 9: libjxl's strongest search short of 10"),
                 "fast": Effort({"effort": 7}, "effort 7: libjxl's default")},
        encoder=_jxl_encode, decoder=_jxl_decode, header_bytes=lambda d: 0, check=_imports("imagecodecs"),
        version=_module_version("imagecodecs")),
    RefCodec(
        name="j2k", label="JPEG 2000", library="Pillow (OpenJPEG)", quality=(2, 2000), small_at="hi",
        headers="main and tile-part headers, EOC",
        efforts={"best": Effort({}, _SAME.format("OpenJPEG has no effort knob; 9/7 wavelet, rate allocation by "
                                                 "compression ratio")),
                 "fast": Effort({}, _SAME.format("OpenJPEG has no effort knob")),
                 "ref": Effort({}, "spec §8: the reference codestream")},
        encoder=j2k_encode, decoder=_pil_decode, header_bytes=_j2k_header_bytes, check=_pil_feature("jpg_2000"),
        version=_module_version("PIL"), ref_quality=(20, 400)),  # setting = compression ratio
    RefCodec(
        name="heif", label="HEIF", library="pillow-heif (libheif/x265)", quality=(0, 100), small_at="lo",
        headers="ISOBMFF boxes except the mdat payload",
        efforts={"best": Effort({"preset": "slow"}, "x265 preset slow inside libheif (its default: the same "
                                "bytes on kodim01), libheif's default tuning"),
                 "fast": Effort({"preset": "medium"}, "x265 preset medium inside libheif")},
        encoder=_heif_encode, decoder=_heif_decode, header_bytes=_box_header_bytes, check=_imports("pillow_heif"),
        version=_module_version("pillow_heif")),
    RefCodec(
        name="hevc", label="HEVC (x265)", library="PyAV (libx265 / FFmpeg hevc)", quality=(0, 51), small_at="hi",
        headers="VPS, SPS, PPS, SEI NAL units",
        efforts={"best": Effort({"preset": "slow", "tune": "psnr", "x265-params": _X265_PARAMS},
                                "x265 preset slow, tune psnr (no psycho-visual RD, the yardstick is PSNR)"),
                 "fast": Effort({"preset": "medium", "x265-params": _X265_PARAMS},
                                "x265 preset medium, default tuning"),
                 "ref": Effort(_REF_AV_OPTIONS["hevc"], "spec §8.3: the parameter sets hevcs rebuilds")},
        encoder=lambda img, q, o: av_encode(img, "hevc", q, o), decoder=lambda d: av_decode(d, "hevc"),
        header_bytes=lambda d: _nal_header_bytes(d, "hevc"), check=_av_codecs("libx265", "hevc"),
        version=_module_version("av"), ref_quality=(20, 51)),
    RefCodec(
        name="av1", label="AV1 (SVT-AV1)", library="PyAV (libsvtav1 / libdav1d)", quality=(1, 63), small_at="hi",
        headers="temporal delimiter and sequence header OBUs",
        efforts={"best": Effort({"preset": "4", "svtav1-params": "avif=1:tune=1"},
                                "SVT-AV1 preset 4 (a slow preset; 2 took 20x its time on kodim05) in "
                                "still-picture mode, tune 1 (PSNR)"),
                 "fast": Effort({"preset": "6", "svtav1-params": "avif=1:tune=1"},
                                "SVT-AV1 preset 6, still-picture mode, tune 1 (PSNR)"),
                 "ref": Effort(_REF_AV_OPTIONS["av1"], "spec §8.3: the sequence header av1s rebuilds")},
        encoder=lambda img, q, o: av_encode(img, "av1", q, o), decoder=lambda d: av_decode(d, "av1"),
        header_bytes=_av1_header_bytes, check=_av_codecs("libsvtav1", "libdav1d"), version=_module_version("av"),
        ref_quality=(20, 63)),
    RefCodec(
        name="vvc", label="VVC (VVenC)", library="imageio-ffmpeg VVenC / PyAV vvc", quality=(1, 63),
        small_at="hi",  # QP 0 fails in VVenC
        headers="OPI, DCI, VPS, SPS, PPS, AUD, SEI NAL units",
        efforts={"best": Effort({"preset": "medium", "qpa": "0"},
                                "VVenC preset medium, 10-bit, perceptual QP adaptation off (VTM has none and the "
                                "yardstick is PSNR); slower is 0.13 dB better at 0.05 bpp on 4 Kodak images for 5 "
                                "to 8 times the encode time (kodim01): more than a 24-image sweep on 2 cores affords"),
                 "fast": Effort({"preset": "faster", "qpa": "0"}, "VVenC preset faster, 10-bit, QPA off"),
                 "ref": Effort({"preset": "faster"}, "spec §8: VVenC preset faster with its default QPA")},
        encoder=vvc_encode, decoder=lambda d: av_decode(d, "vvc"), header_bytes=lambda d: _nal_header_bytes(d, "vvc"),
        check=_vvc_available, version=_vvc_version, ref_quality=(20, 63)),
)}
for _c in CODECS.values():  # registry consistency, checked at import (raised: asserts vanish under -O)
    if _c.ref_quality and (_c.ref_id is None or REF_EFFORT not in _c.efforts):
        raise ConfigError(f"image-reference codec {_c.name} needs an id in core.ids and a {REF_EFFORT!r} effort")
    if not set(EFFORTS) <= set(_c.efforts) or _c.small_at not in ("lo", "hi"):
        raise ConfigError(f"codec row {_c.name} needs efforts {EFFORTS} and small_at 'lo' or 'hi'")

REF_CODECS: dict[str, RefCodec] = {n: c for n, c in CODECS.items() if c.ref_quality}  # spec §8 coders


def get(name: str) -> RefCodec:
    """A codec by name; unknown names list the registered ones."""
    try:
        return CODECS[name]
    except KeyError:
        raise UnknownCoderError(f"unknown codec {name!r}: expected one of {', '.join(CODECS)}") from None

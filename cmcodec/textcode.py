"""Caption entropy coding (spec §6): coders by stable id, size and trim helpers for rate control.

``encode(text)`` returns the payload of the best coder; ``encode_with(text)`` also says which coder
id produced it (the bitstream records it). Every coder round-trips any UTF-8 text exactly.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from . import registry
from .errors import CaptionDecodeError, LimitError

MAX_CAPTION_CHARS = 4096  # issue 7: caption length limit, for encoding and decoding


def _check_len(text: str) -> None:
    """Enforce the caption length limit."""
    if len(text) > MAX_CAPTION_CHARS:
        raise LimitError(f"caption of {len(text)} characters exceeds the limit of {MAX_CAPTION_CHARS}")


def normalize(text: str) -> str:
    """Unicode NFC, the form captions are coded in (spec §6.1)."""
    return unicodedata.normalize("NFC", text)


# --- library coders ---------------------------------------------------------------------------------

def _brotli_encode(text: str) -> bytes:
    """Brotli q11, smallest window, raw stream."""
    import brotli

    return brotli.compress(text.encode("utf-8"), quality=11, lgwin=10, mode=brotli.MODE_TEXT)


def _brotli_decode(data: bytes) -> str:
    """Inverse of _brotli_encode, bounded output."""
    import brotli

    try:
        d = brotli.Decompressor()
        out = d.process(data, output_buffer_limit=4 * MAX_CAPTION_CHARS + 1)
        if len(out) > 4 * MAX_CAPTION_CHARS or not d.is_finished():
            raise CaptionDecodeError("corrupt caption: brotli stream is incomplete or too long")
        return out.decode("utf-8")
    except (brotli.error, UnicodeDecodeError) as e:
        raise CaptionDecodeError(f"corrupt caption: brotli stream does not decode ({e})") from None


def _utf8_decode(data: bytes) -> str:
    """Plain UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CaptionDecodeError(f"corrupt caption: not UTF-8 ({e})") from None


def _wlm_encode(text: str) -> bytes:
    """Word language model v1 (cmcodec.wordmodel)."""
    from . import wordmodel

    return wordmodel.get_model("wlm1").encode(text)


def _wlm_decode(data: bytes) -> str:
    """Inverse of _wlm_encode."""
    from . import wordmodel

    return wordmodel.get_model("wlm1").decode(data)


CODERS: dict[str, tuple[Callable[[str], bytes], Callable[[bytes], str]]] = {
    "wlm1": (_wlm_encode, _wlm_decode),
    "brotli": (_brotli_encode, _brotli_decode),
    "utf8": (lambda t: t.encode("utf-8"), _utf8_decode),
}
assert set(CODERS) == set(registry.CAPTION_CODERS.values())


def available_coders() -> list[str]:
    """Coders usable here (the word model needs its shipped model file)."""
    out = []
    for name in CODERS:
        if name == "wlm1":
            from . import wordmodel

            if not wordmodel.model_available("wlm1"):
                continue
        out.append(name)
    return out


def encode_with(text: str, coder: str | None = None) -> tuple[int, bytes]:
    """(coder id, payload): the named coder, or the smallest of the available ones."""
    text = normalize(text)
    _check_len(text)
    names = [coder] if coder else available_coders()
    best: tuple[int, bytes] | None = None
    for name in names:
        if name not in CODERS:
            raise KeyError(f"unknown caption coder {name!r}: expected one of {', '.join(CODERS)}")
        data = CODERS[name][0](text)
        if best is None or len(data) < len(best[1]):
            best = (registry.coder_id("caption", name), data)
    assert best is not None
    return best


def encode(text: str) -> bytes:
    """Caption payload of the best available coder (the id is ``encode_with(text)[0]``)."""
    return encode_with(text)[1]


def decode(data: bytes, coder_id: int | None = None) -> str:
    """Decode a caption payload; coder_id defaults to the best available coder's id."""
    if coder_id is None:
        coder_id = registry.coder_id("caption", available_coders()[0])
    name = registry.CAPTION_CODERS.get(coder_id)
    if name is None:
        raise CaptionDecodeError(f"unknown caption coder id {coder_id}")
    text = CODERS[name][1](bytes(data))
    _check_len(text)
    return text


def size(text: str) -> int:
    """Bytes the caption will take in a file (best available coder)."""
    return len(encode_with(text)[1])


_WORD_END = re.compile(r"\S+")


def trim_to_bytes(text: str, budget: int) -> str:
    """Longest prefix of whole words whose coded size fits budget (may be ''), trailing punctuation kept."""
    text = normalize(text).strip()
    if size(text) <= budget:
        return text
    ends = [m.end() for m in _WORD_END.finditer(text)]
    lo, hi = 0, len(ends) - 1  # invariant: prefixes ending at ends[<lo] fit (or lo == 0), ends[hi] does not
    best = ""
    while lo < hi:
        mid = (lo + hi) // 2
        cand = text[: ends[mid]].rstrip(",;:")
        if size(cand) <= budget:
            best, lo = cand, mid + 1
        else:
            hi = mid
    return best


def trim_to_words(text: str, words: int) -> str:
    """First ``words`` whitespace-separated words."""
    return " ".join(normalize(text).split()[:words])

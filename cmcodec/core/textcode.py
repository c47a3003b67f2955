"""Caption entropy coding (spec §6): coders by stable id, size and trim helpers for rate control.

``encode(text)`` returns the payload of one coder; ``caption_section(text)`` the whole caption section of
the smallest coder, its id included (the bitstream records it). Every coder round-trips any UTF-8 text exactly.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from . import deps, ids
from .bitstream import Section
from .errors import CaptionDecodeError, ConfigError, LimitError, UnknownCoderError
from .limits import MAX_CAPTION_BYTES, MAX_CAPTION_CHARS


def _check_len(text: str, limit: int = MAX_CAPTION_CHARS) -> None:
    """Enforce the caption length limit (spec §6.1: at most MAX_CAPTION_CHARS; a reader may set a lower one)."""
    limit = min(limit, MAX_CAPTION_CHARS)
    if len(text) > limit:
        raise LimitError(f"caption of {len(text)} characters exceeds the limit of {limit}")


def normalize(text: str) -> str:
    """Unicode NFC, the form captions are coded in (spec §6.1). A caption is a string of Unicode scalar
    values: a lone surrogate (what non-UTF-8 bytes of a command line or file name become in Python) is a
    ConfigError naming where it is."""
    bad = _first_surrogate(text)
    if bad is not None:
        raise ConfigError(f"caption is not Unicode text: expected Unicode scalar values (spec §6.1), found "
                          f"U+{ord(text[bad]):04X} at character {bad} (bytes that are not UTF-8?)")
    return unicodedata.normalize("NFC", text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _first_surrogate(text: str) -> int | None:
    """Index of the first surrogate code point of text (not a Unicode scalar value), or None."""
    m = _SURROGATE.search(text)
    return None if m is None else m.start()


# --- library coders ---------------------------------------------------------------------------------

def _brotli_encode(text: str) -> bytes:
    """Brotli q11, smallest window, raw stream."""
    import brotli

    return brotli.compress(text.encode("utf-8"), quality=11, lgwin=10, mode=brotli.MODE_TEXT)


def _brotli_decode(data: bytes) -> str:
    """Inverse of _brotli_encode, bounded output."""
    import brotli

    deps.require("brotli")  # older releases take no output_buffer_limit (a TypeError below, not a clear line)
    try:
        d = brotli.Decompressor()
        out = d.process(data, output_buffer_limit=MAX_CAPTION_BYTES + 1)
        if len(out) > MAX_CAPTION_BYTES or not d.is_finished():
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


def _wlm(model_id: str) -> tuple[Callable[[str], bytes], Callable[[bytes], str]]:
    """(encode, decode) of a shipped word language model (cmcodec.wordmodel), loaded on first use."""
    from . import wordmodel

    return (lambda t: wordmodel.get_model(model_id).encode(t), lambda d: wordmodel.get_model(model_id).decode(d))


WORD_MODELS = ("wlm1", "wlm2")  # spec §6.3; only the newest is tried by encoders, all of them decode
CODERS: dict[str, tuple[Callable[[str], bytes], Callable[[bytes], str]]] = {
    **{m: _wlm(m) for m in WORD_MODELS},
    "brotli": (_brotli_encode, _brotli_decode),
    "utf8": (lambda t: t.encode("utf-8"), _utf8_decode),
}
if set(CODERS) != set(ids.CAPTION_CODERS.values()):  # registry consistency at import (spec §4.6)
    raise RuntimeError(f"caption coders {sorted(CODERS)} and core.ids.CAPTION_CODERS disagree")


def available_coders() -> list[str]:
    """Coders an encoder tries, default first: the word models whose files ship (newest first), brotli, utf8.

    Every one is tried because the whole file decides: wlm1 is coder 0, which a version-1 header implies
    for free (spec §3 field 8), while naming wlm2 costs 4 header bits.
    """
    from . import wordmodel

    models = sorted((m for m in WORD_MODELS if wordmodel.model_available(m)),
                    key=lambda m: m != wordmodel.DEFAULT_MODEL)
    return [*models, "brotli", "utf8"]


def caption_section(text: str, coder: str | None = None) -> Section:
    """The caption section of the named coder, or of the smallest of the available ones."""
    text = normalize(text)
    _check_len(text)
    names = [coder] if coder else available_coders()  # never empty: brotli and utf8 always ship
    for name in names:
        if name not in CODERS:
            raise UnknownCoderError(f"unknown caption coder {name!r}: expected one of {', '.join(CODERS)}")
    coded = [Section(ids.SECTION_IDS["caption"], ids.coder_id("caption", name), CODERS[name][0](text))
             for name in names]
    return min(coded, key=lambda c: len(c.payload))  # the first of equal sizes, as before


def encode(text: str, coder: str | None = None) -> bytes:
    """Caption payload of one coder, by default the first available (the default word model)."""
    return caption_section(text, coder or available_coders()[0]).payload


def decode(data: bytes, coder_id: int | None = None, max_chars: int = MAX_CAPTION_CHARS) -> str:
    """Decode a caption payload; coder_id defaults to the coder ``encode`` uses by default."""
    if coder_id is None:
        coder_id = ids.coder_id("caption", available_coders()[0])
    name = ids.CAPTION_CODERS.get(coder_id)
    if name is None:
        raise CaptionDecodeError(f"unknown caption coder id {coder_id}")
    text = CODERS[name][1](bytes(data))
    _check_len(text, max_chars)
    bad = _first_surrogate(text)
    if bad is not None:  # spec §6.1: a caption is Unicode scalar values; a coder can spell any code point
        raise CaptionDecodeError(f"corrupt caption: expected Unicode scalar values (spec §6.1), found "
                                 f"U+{ord(text[bad]):04X} at character {bad}")
    return text


def size(text: str) -> int:
    """Bytes the caption will take in a file (best available coder)."""
    return len(caption_section(text).payload)


_WORD_END = re.compile(r"\S+")


def longest_prefix(n: int, fits: Callable[[int], bool]) -> int | None:
    """Most words k < n whose prefix ``fits`` accepts, by bisection (the caller has found all n too many);
    None when not even the empty prefix fits. fits is taken to hold up to some k and fail after it, as a
    caption's coded size and token count do as words are added. Rate control, the caption's share of a
    budget and the decoder's prompt limit all trim a caption with it."""
    lo, hi, best = 0, n - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def word_prefix(words: Sequence[str], k: int) -> str:
    """The first k words joined by spaces, without a trailing comma, semicolon or colon."""
    return " ".join(words[:k]).rstrip(",;:")


def trim_to_bytes(text: str, budget: int) -> str:
    """Longest prefix of whole words whose coded size fits budget (may be ''), trailing punctuation kept."""
    text = normalize(text).strip()
    if size(text) <= budget:
        return text
    ends = [0, *(m.end() for m in _WORD_END.finditer(text))]  # the text's own spacing is kept

    def prefix(k: int) -> str:
        return text[: ends[k]].rstrip(",;:")

    k = longest_prefix(len(ends) - 1, lambda k: size(prefix(k)) <= budget)
    return "" if k is None else prefix(k)


def trim_to_words(text: str, words: int) -> str:
    """First ``words`` whitespace-separated words."""
    return " ".join(normalize(text).split()[:words])

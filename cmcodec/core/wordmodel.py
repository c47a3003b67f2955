"""Word language model caption coder (spec §6.3): PPM over words, orders 2-1-0, exact integer coding.

A caption is tokenised into words ([A-Za-z]+), numbers ([0-9]+) and single other characters; one space
before a token is a flag of that token. Each token is coded as a symbol (word id, punctuation, or an
escape for a spelled word, a number or any code point), then its case and space flag. Order-2 and
order-1 contexts escape to order 0, which holds every symbol. Only integers are used: the shipped model
file holds integer counts and is pinned by its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import zlib
from bisect import bisect_right
from dataclasses import dataclass
from importlib import resources

from . import arith
from .errors import CaptionDecodeError, CaptionModelError
from .limits import MAX_CAPTION_CHARS

FIXED: tuple[str, ...] = (
    "<eos>", "<word>", "<num>", "<char>", " ", ",", ".", ";", ":", "!", "?", "'", '"', "-", "(", ")", "/",
    "&", "%", "\n", "+", "*", "=", "[", "]", "#", "@", "$", "_", "\u2013", "\u2014", "\u2019", "\u201c",
    "\u201d",
)
EOS, ESC_WORD, ESC_NUM, ESC_CHAR = 0, 1, 2, 3
CASE_NAMES: tuple[str, ...] = ("lower", "cap", "upper", "mixed")
LETTERS = "abcdefghijklmnopqrstuvwxyz$"
MAX_CODEPOINT = 0x110000

# model id -> SHA-256 of its file in cmcodec/core/data (a retrained model gets a new id; old ids stay)
MODELS: dict[str, str] = {
    "wlm1": "50978dd2c570cebb3e2d7e12a0cf6fad5d86b8a8c85a34efcd2e579b3768b947",
    "wlm2": "8351844fee6ff9adfab2981d774d26e45ee02efb143341b8634a3aaca8ada72e",
}
DEFAULT_MODEL = "wlm2"  # what encoders write; every id above keeps decoding

_PIECE = re.compile(r"[A-Za-z]+|[0-9]+|.", re.S)


@dataclass(frozen=True)
class Token:
    """One coded unit: kind (word/num/char), its text, case, and whether one space precedes it."""

    kind: str
    text: str
    space: bool

    @property
    def case(self) -> str:
        """lower, cap, upper or mixed (words only)."""
        w = self.text
        if w.islower():
            return "lower"
        if w[0].isupper() and (len(w) == 1 or w[1:].islower()):
            return "cap"
        if w.isupper():
            return "upper"
        return "mixed"

    @property
    def cls(self) -> str:
        """Class for the space model: 'w' for words and numbers, the character for punctuation."""
        if self.kind != "char":
            return "w"
        return self.text if self.text in FIXED else "c"


def tokenize(text: str) -> list[Token]:
    """Tokens of a text; ''.join((' ' if t.space else '') + t.text) gives it back."""
    pieces = _PIECE.findall(text)
    out: list[Token] = []
    space = False
    for i, p in enumerate(pieces):
        if p == " " and not space and i + 1 < len(pieces) and pieces[i + 1] != " ":
            space = True
            continue
        kind = "word" if p[0].isascii() and p[0].isalpha() else "num" if p[0].isascii() and p[0].isdigit() else "char"
        out.append(Token(kind, p, space))
        space = False
    return out


class _Table:
    """A context's symbols and integer counts; the escape count is esc per distinct symbol (PPM method C: 1)."""

    __slots__ = ("counts", "syms")

    def __init__(self, pairs: list[tuple[int, int]]) -> None:
        self.syms = [s for s, _ in pairs]
        self.counts = [c for _, c in pairs]

    def view(self, excl: set[int], esc: int) -> tuple[list[int], list[int], int] | None:
        """(symbols, cumulative counts, total with escape) without excluded symbols; None if none is left."""
        syms, cum = [], [0]
        for s, c in zip(self.syms, self.counts, strict=True):
            if s not in excl:
                syms.append(s)
                cum.append(cum[-1] + c)
        if not syms:
            return None
        return syms, cum, cum[-1] + len(syms) * esc


class WordModel:
    """A loaded caption model: encode(text) -> bytes, decode(bytes) -> text."""

    def __init__(self, model: dict) -> None:
        self.id = model["id"]
        self.vocab: list[str] = model["vocab"]
        self.esc = int(model["esc_weight"])
        self.word_id = {w: len(FIXED) + i for i, w in enumerate(self.vocab)}
        self.c0 = [int(c) for c in model["order0"]]
        self.cum0 = _cum(self.c0)
        self.order1 = {int(k): _Table([tuple(p) for p in v]) for k, v in model["order1"].items()}
        self.order2 = {tuple(int(x) for x in k.split()): _Table([tuple(p) for p in v])
                       for k, v in model["order2"].items()}
        self.case = {int(k): _cum(v) for k, v in model["case"].items()}
        self.space = {k: _cum(v) for k, v in model["space"].items()}
        self.letters = {k: _cum(v) for k, v in model["letters"].items()}
        # wlm2+: letters after two previous letters, backing off to the one-letter table when unseen
        self.letters2 = {k: _cum(v) for k, v in model.get("letters2", {}).items()}
        self.uniform_letters = _cum([1] * len(LETTERS))

    # -- symbols -------------------------------------------------------------------------------------

    def _tables(self, a: int, b: int) -> list[_Table]:
        """Context tables from order 2 down to 1 that exist for the history (a, b)."""
        out = []
        t = self.order2.get((a, b))
        if t is not None:
            out.append(t)
        t = self.order1.get(b)
        if t is not None:
            out.append(t)
        return out

    def _enc_symbol(self, enc: arith.Encoder, s: int, a: int, b: int) -> None:
        """Code symbol s after history (a, b): escape down the orders, excluding symbols already ruled out."""
        excl: set[int] = set()
        for t in self._tables(a, b):
            v = t.view(excl, self.esc)
            if v is None:
                continue
            syms, cum, total = v
            if s in syms:
                i = syms.index(s)
                enc.encode(cum[i], cum[i + 1], total)
                return
            enc.encode(cum[-1], total, total)
            excl.update(syms)
        lo, total = self._order0(excl, s)
        enc.encode(lo, lo + self.c0[s], total)

    def _order0(self, excl: set[int], s: int) -> tuple[int, int]:
        """Order-0 (cumulative count below s, total) with the excluded symbols removed."""
        below = sum(self.c0[e] for e in excl if e < s)
        return self.cum0[s] - below, self.cum0[-1] - sum(self.c0[e] for e in excl)

    def _dec_symbol(self, dec: arith.Decoder, a: int, b: int) -> int:
        """Decode a symbol after history (a, b)."""
        excl: set[int] = set()
        for t in self._tables(a, b):
            view = t.view(excl, self.esc)
            if view is None:
                continue
            syms, cum, total = view
            v = dec.target(total)
            if v >= cum[-1]:
                dec.consume(cum[-1], total, total)
                excl.update(syms)
                continue
            i = bisect_right(cum, v) - 1
            dec.consume(cum[i], cum[i + 1], total)
            return syms[i]
        ex = sorted(excl)
        total = self.cum0[-1] - sum(self.c0[e] for e in ex)
        v = dec.target(total)
        # adjusted cumulative count adj(i) = cum0[i] - counts of excluded symbols below i; find the last
        # non-excluded i with adj(i) <= v by bisection over i (adj is non-decreasing)
        lo, hi = 0, len(self.c0) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.cum0[mid] - sum(self.c0[e] for e in ex if e < mid) <= v:
                lo = mid
            else:
                hi = mid - 1
        while lo in excl:  # an excluded symbol has zero width: step back to the owner of v
            lo -= 1
        start, _ = self._order0(excl, lo)
        dec.consume(start, start + self.c0[lo], total)
        return lo

    def _letter_cum(self, prev2: str, prev: str) -> list[int]:
        """Spelling table after the previous two letters ('^' before the word)."""
        t = self.letters2.get(prev2 + prev)
        if t is not None:
            return t
        return self.letters.get(prev, self.uniform_letters)

    def _case_cum(self, prev_cls: str) -> list[int]:
        """Case table: after a sentence start or end, or elsewhere."""
        return self.case.get(int(prev_cls in ("^", ".", "!", "?")), self.case[0])

    # -- public --------------------------------------------------------------------------------------

    def encode(self, text: str, enc: arith.Encoder | None = None) -> bytes:
        """Code a text (any Unicode) to bytes ending on the shortest byte boundary (enc: another back end)."""
        enc = enc or arith.Encoder()
        a, b, prev_cls = EOS, EOS, "^"
        for t in tokenize(text):
            if t.kind == "word":
                s = self.word_id.get(t.text.lower(), ESC_WORD) if t.case != "mixed" else ESC_WORD
            elif t.kind == "num":
                s = ESC_NUM
            else:
                s = FIXED.index(t.text) if t.text in FIXED and FIXED.index(t.text) > ESC_CHAR else ESC_CHAR
            self._enc_symbol(enc, s, a, b)
            if s == ESC_WORD:
                prev2, prev = "^", "^"
                for ch in t.text.lower() + "$":
                    arith.encode_cum(enc, self._letter_cum(prev2, prev), LETTERS.index(ch))
                    prev2, prev = prev, ch
            elif s == ESC_NUM:
                for j, ch in enumerate(t.text + "$"):
                    if j == 0:
                        enc.encode_uniform(int(ch), 10)
                    else:
                        enc.encode_uniform(10 if ch == "$" else int(ch), 11)
            elif s == ESC_CHAR:
                enc.encode_uniform(ord(t.text), MAX_CODEPOINT)
            if t.kind == "word":
                arith.encode_cum(enc, self._case_cum(prev_cls), CASE_NAMES.index(t.case))
                if t.case == "mixed":
                    for ch in t.text:
                        enc.encode_uniform(int(ch.isupper()), 2)
            arith.encode_cum(enc, self.space.get(prev_cls + "|" + t.cls, _EVEN), int(t.space))
            prev_cls = t.cls
            a, b = b, s
        self._enc_symbol(enc, EOS, a, b)
        return enc.finish()

    def decode(self, data: bytes) -> str:
        """Inverse of encode. Input that breaks a rule (the caption limit, an empty spelled word) raises
        CaptionDecodeError; every symbol but the end adds a character, so the caption limit bounds the work
        whatever the payload's length (spec §6.1, §6.4)."""
        dec = arith.Decoder(data)
        out: list[str] = []
        n = 0
        a, b, prev_cls = EOS, EOS, "^"
        while True:
            s = self._dec_symbol(dec, a, b)
            if s == EOS:
                break
            if s == ESC_WORD:
                letters, prev2, prev = [], "^", "^"
                while True:
                    ch = LETTERS[arith.decode_cum(dec, self._letter_cum(prev2, prev))]
                    if ch == "$":
                        break
                    letters.append(ch)
                    prev2, prev = prev, ch
                    if len(letters) > MAX_CAPTION_CHARS:
                        raise CaptionDecodeError("corrupt caption: spelled word exceeds the caption limit")
                if not letters:
                    raise CaptionDecodeError("corrupt caption: empty spelled word")
                text, kind = "".join(letters), "word"
            elif s == ESC_NUM:
                digits = [str(dec.decode_uniform(10))]
                while (d := dec.decode_uniform(11)) != 10:
                    digits.append(str(d))
                    if len(digits) > MAX_CAPTION_CHARS:
                        raise CaptionDecodeError("corrupt caption: number exceeds the caption limit")
                text, kind = "".join(digits), "num"
            elif s == ESC_CHAR:
                text, kind = chr(dec.decode_uniform(MAX_CODEPOINT)), "char"
            elif s < len(FIXED):
                text, kind = FIXED[s], "char"
            else:
                text, kind = self.vocab[s - len(FIXED)], "word"
            if kind == "word":
                case = CASE_NAMES[arith.decode_cum(dec, self._case_cum(prev_cls))]
                if case == "cap":
                    text = text[0].upper() + text[1:]
                elif case == "upper":
                    text = text.upper()
                elif case == "mixed":
                    text = "".join(c.upper() if dec.decode_uniform(2) else c for c in text)
            tok = Token(kind, text, False)
            sp = arith.decode_cum(dec, self.space.get(prev_cls + "|" + tok.cls, _EVEN))
            out.append(" " + text if sp else text)
            n += len(text) + sp
            if n > MAX_CAPTION_CHARS:
                raise CaptionDecodeError(f"corrupt caption: decodes to more than {MAX_CAPTION_CHARS} characters")
            prev_cls = tok.cls
            a, b = b, s
        return "".join(out)


_EVEN = [0, 1, 2]


def _cum(counts: list[int]) -> list[int]:
    """Cumulative table of integer counts."""
    out = [0]
    for c in counts:
        out.append(out[-1] + int(c))
    return out


_LOADED: dict[str, WordModel] = {}
_LOCK = threading.Lock()


def _path(model_id: str):
    """The packaged file of a model id."""
    return resources.files("cmcodec.core").joinpath(f"data/{model_id}.model")


def model_available(model_id: str) -> bool:
    """True when the model file of model_id ships with the package."""
    return model_id in MODELS and _path(model_id).is_file()


def get_model(model_id: str) -> WordModel:
    """Load (once) a shipped model, verifying its pinned SHA-256."""
    with _LOCK:
        if model_id not in _LOADED:
            if not model_available(model_id):
                raise CaptionModelError(
                    f"caption model {model_id} is not installed (expected cmcodec/core/data/{model_id}.model)"
                )
            raw = _path(model_id).read_bytes()
            digest = hashlib.sha256(raw).hexdigest()
            if MODELS[model_id] and digest != MODELS[model_id]:
                raise CaptionModelError(f"caption model {model_id}: file hash {digest[:16]}... does not match the "
                                   f"pinned {MODELS[model_id][:16]}...; reinstall cmcodec")
            _LOADED[model_id] = WordModel(json.loads(zlib.decompress(raw)))
        return _LOADED[model_id]

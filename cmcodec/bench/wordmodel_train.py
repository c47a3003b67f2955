"""Train a caption word model (reproducible; developers: needs the captions CSV and wordfreq).

    python -m cmcodec.bench.wordmodel_train ../shared/data/captions/cmcbench_gpt4v.csv cmcodec/core/data/wlm2.model wlm2

Each model id is a row of CONFIGS; a retrained model gets a new id, and the rows of shipped models never
change (rerunning a row reproduces its file byte for byte, pinned in wordmodel.MODELS).
Training uses captions whose CSV index is not a multiple of 5; multiples of 5 are the held-out test split
(benchmarks/textcode_bench.py). Every setting was chosen on a fold of the training split (every 5th
training caption), never on the test split. Floating point is used here only; the model file holds integers.
"""

from __future__ import annotations

import csv
import json
import sys
import zlib
from collections import Counter, defaultdict
from pathlib import Path

from ..core.wordmodel import CASE_NAMES, FIXED, LETTERS, tokenize

ORDER0_BITS = 22  # order-0 counts sum to about 2^22
SPELL_WORDS = 60000  # words whose spelling trains the letter model

# model id -> settings (fold figures: mean bytes on the training fold, 640 train / 160 validation captions)
CONFIGS: dict[str, dict] = {
    # fold 26.19 B
    "wlm1": {"vocab_general": 24000, "caption_weight": 0.7, "esc_weight": 2, "count_scale": (1, 0),
             "word_escape_div": 200, "letters2": False},
    # fold 25.20 B: 60k general words (-0.79 B: fewer spelled words), two-letter spelling contexts (-0.2 B),
    # PPM-D-like counts 2c-1 with escape weight 3 (-0.14 B)
    "wlm2": {"vocab_general": 60000, "caption_weight": 0.7, "esc_weight": 3, "count_scale": (2, 1),
             "word_escape_div": 500, "letters2": True},
}


def load_split(path: Path) -> tuple[list[str], list[str]]:
    """(train, test) captions: test is every row whose index is a multiple of 5."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    train = [r["text"] for i, r in enumerate(rows) if i % 5]
    test = [r["text"] for i, r in enumerate(rows) if i % 5 == 0]
    return train, test


def train(captions: list[str], model_id: str = "wlm2") -> dict:
    """Counts of every model component, as integers, for the settings row of model_id."""
    from wordfreq import top_n_list, word_frequency

    cfg = CONFIGS[model_id]
    n_general = cfg["vocab_general"]
    general = [w for w in top_n_list("en", n_general * 2) if w.isascii() and w.isalpha()][:n_general]
    cap_tokens = [tokenize(c) for c in captions]
    cap_words = Counter(t.text.lower() for toks in cap_tokens for t in toks if t.kind == "word")
    vocab = sorted(set(general) | set(cap_words), key=lambda w: (-cap_words[w], -word_frequency(w, "en"), w))
    sym = {w: len(FIXED) + i for i, w in enumerate(vocab)}

    def sid(t) -> int:
        """Training symbol of a token (unknown words never occur: vocab holds every caption word)."""
        if t.kind == "word":
            return sym[t.text.lower()]
        if t.kind == "num":
            return FIXED.index("<num>")
        return FIXED.index(t.text) if t.text in FIXED else FIXED.index("<char>")

    uni: Counter = Counter()
    ctx1: dict[int, Counter] = defaultdict(Counter)
    ctx2: dict[tuple[int, int], Counter] = defaultdict(Counter)
    case: dict[int, Counter] = defaultdict(Counter)
    space: dict[str, Counter] = defaultdict(Counter)
    for toks in cap_tokens:
        a, b = 0, 0  # start context: EOS twice
        prev_class = "^"
        for t in [*toks, None]:
            s = 0 if t is None else sid(t)
            uni[s] += 1
            ctx1[b][s] += 1
            ctx2[(a, b)][s] += 1
            if t is not None:
                if t.kind == "word":
                    case[int(prev_class in ("^", ".", "!", "?"))][CASE_NAMES.index(t.case)] += 1
                space[prev_class + "|" + t.cls][int(t.space)] += 1
                prev_class = t.cls
            a, b = b, s
    # order 0: mix of caption unigram and general English frequency; every symbol at least 1
    n_cap = sum(uni.values())
    fw = {w: word_frequency(w, "en") for w in vocab}
    n_gen = sum(fw.values())
    scale = 1 << ORDER0_BITS
    order0 = []
    for i in range(len(FIXED) + len(vocab)):
        p_cap = uni[i] / n_cap
        p_gen = fw[vocab[i - len(FIXED)]] / n_gen if i >= len(FIXED) else 0.0
        p = cfg["caption_weight"] * p_cap + (1 - cfg["caption_weight"]) * p_gen
        order0.append(max(1, round(p * scale)))
    for name in ("<word>", "<num>", "<char>"):  # escapes: rare in training, not rare elsewhere
        i = FIXED.index(name)
        order0[i] = max(order0[i], scale // {"<word>": cfg["word_escape_div"], "<num>": 1000, "<char>": 2000}[name])
    letters = _letter_counts(top_n_list("en", SPELL_WORDS), 1)  # a-z and end after one letter ('^': start)
    mul, sub = cfg["count_scale"]  # context counts stored as mul * count - sub (PPM-C: 1, 0)

    def table(v: Counter) -> list[tuple[int, int]]:
        """A context's (symbol, stored count) pairs."""
        return [(s, mul * c - sub) for s, c in sorted(v.items())]

    model = {
        "id": model_id,
        "esc_weight": cfg["esc_weight"],
        "vocab": vocab,
        "order0": order0,
        "order1": {str(k): table(v) for k, v in ctx1.items()},
        "order2": {f"{k[0]} {k[1]}": table(v) for k, v in ctx2.items()},
        "case": {str(k): [v[i] + 1 for i in range(len(CASE_NAMES))] for k, v in case.items()},
        "space": {k: [v[0] + 1, v[1] + 1] for k, v in space.items()},
        "letters": {k: [v.get(c, 0) + 1 for c in "abcdefghijklmnopqrstuvwxyz$"] for k, v in letters.items()},
    }
    if cfg["letters2"]:  # spelling after two letters, keyed by them ('^' pads the word start)
        letters2 = _letter_counts(top_n_list("en", SPELL_WORDS), 2)
        model["letters2"] = {k: [v.get(c, 0) + 1 for c in LETTERS] for k, v in letters2.items()}
    return model


def _letter_counts(words: list[str], order: int) -> dict[str, Counter]:
    """Counts of each next letter (or '$', the end) after the previous ``order`` letters of ASCII words."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for w in words:
        if w.isascii() and w.isalpha():
            ctx = "^" * order
            for ch in w.lower() + "$":
                counts[ctx][ch] += 1
                ctx = (ctx + ch)[-order:]
    return counts


def main(argv: list[str]) -> None:
    """Train and write the compressed model file; print its sha256 for wordmodel.MODELS."""
    import hashlib

    src, dst = Path(argv[0]), Path(argv[1])
    model_id = argv[2] if len(argv) > 2 else "wlm2"
    train_caps, _ = load_split(src)
    model = train(train_caps, model_id)
    data = zlib.compress(json.dumps(model, separators=(",", ":"), sort_keys=True).encode(), 9)
    from ..media.fileio import write_bytes

    write_bytes(dst, data, force=True)  # atomic: a model file cut short would fail its sha256 check at load
    print(f"{dst}: {len(data)} bytes, {len(model['vocab'])} words, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main(sys.argv[1:])

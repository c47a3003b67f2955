"""Caption coders on the held-out CMC-Bench GPT-4V captions (every 5th row): bytes, bits/char, speed.

    python benchmarks/textcode_bench.py [--captions ../shared/data/captions/cmcbench_gpt4v.csv] [--json OUT]

Each caption is coded alone, as in a .cmc file. zstd's dictionary is trained on the training split only.
The constriction rows code the very intervals wlm2 produces with constriction's range coder and ANS coder
instead of cmcodec.core.arith, to measure what their 32-bit word flushing costs (size and encode time only: a
decoder would need the model in the loop, which is what cmcodec.core.arith does).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import zlib
from pathlib import Path

import brotli
import constriction
import numpy as np
import zstandard

from cmcodec.bench.wordmodel_train import load_split
from cmcodec.core import textcode
from cmcodec.core.wordmodel import get_model


def _zstd_coder(train: list[str]):
    """zstd -22 with a 64 KB dictionary trained on the training captions; frame without header fields."""
    d = zstandard.train_dictionary(65536, [c.encode() for c in train])
    params = zstandard.ZstdCompressionParameters.from_level(22, format=zstandard.FORMAT_ZSTD1_MAGICLESS,
                                                           write_checksum=0, write_content_size=0,
                                                           write_dict_id=0)
    cctx = zstandard.ZstdCompressor(dict_data=d, compression_params=params)
    dctx = zstandard.ZstdDecompressor(dict_data=d, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    return cctx.compress, lambda b: dctx.decompressobj().decompress(b)


class _ConstrictionBackEnd:
    """Collects the coder's (lo, hi, total) intervals, then codes them with a constriction coder."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.probs: list[tuple[int, int, int]] = []

    def encode(self, lo: int, hi: int, total: int) -> None:
        """Record one interval as a three-bin categorical: below, the symbol, above."""
        self.probs.append((lo, hi - lo, total - hi))

    def encode_uniform(self, value: int, n: int) -> None:
        """As arith.Encoder.encode_uniform."""
        self.encode(value, value + 1, n)

    def finish(self) -> bytes:
        """Compressed words as bytes (constriction emits whole 32-bit words)."""
        p = np.array(self.probs, dtype=np.float64)
        p /= p.sum(axis=1, keepdims=True)
        model = constriction.stream.model.Categorical(perfect=False)
        symbols = np.ones(len(p), dtype=np.int32)
        if self.kind == "range":
            coder = constriction.stream.queue.RangeEncoder()
            coder.encode(symbols, model, p)
        else:
            coder = constriction.stream.stack.AnsCoder()
            coder.encode_reverse(symbols, model, p)
        return coder.get_compressed().tobytes()


def main() -> None:
    """Print the table and write JSON."""
    ap = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[1].parent / "shared/data/captions/cmcbench_gpt4v.csv"
    ap.add_argument("--captions", type=Path, default=default)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results/textcode.json")
    args = ap.parse_args()
    train, test = load_split(args.captions)
    wlm1, wlm2 = get_model("wlm1"), get_model("wlm2")
    zc, zd = _zstd_coder(train)
    coders = {
        "raw UTF-8": (lambda t: t.encode(), lambda b: b.decode()),
        "zlib -9": (lambda t: zlib.compress(t.encode(), 9), lambda b: zlib.decompress(b).decode()),
        "brotli q11 (coder 'brotli')": (lambda t: textcode.CODERS["brotli"][0](t), textcode.CODERS["brotli"][1]),
        "zstd -22 + 64 KB dict, magicless": (lambda t: zc(t.encode()), lambda b: zd(b).decode()),
        "wlm1 (coder 0)": (wlm1.encode, wlm1.decode),
        "wlm2 (coder 3, default)": (wlm2.encode, wlm2.decode),
        "wlm2 + constriction range": (lambda t: wlm2.encode(t, _ConstrictionBackEnd("range")), None),
        "wlm2 + constriction ANS": (lambda t: wlm2.encode(t, _ConstrictionBackEnd("ans")), None),
    }
    chars = statistics.mean(len(c) for c in test)
    rows = []
    for name, (enc, dec) in coders.items():
        t0 = time.perf_counter()
        data = [enc(c) for c in test]
        t1 = time.perf_counter()
        if dec is not None and [dec(d) for d in data] != test:  # a size of a lossy coder is no result
            raise SystemExit(f"{name} does not round-trip the test captions")
        t2 = time.perf_counter()
        mean = statistics.mean(len(d) for d in data)
        rows.append({"coder": name, "mean_bytes": round(mean, 2), "max_bytes": max(len(d) for d in data),
                     "bits_per_char": round(mean * 8 / chars, 3),
                     "encode_ms": round((t1 - t0) / len(test) * 1000, 3),
                     "decode_ms": round((t2 - t1) / len(test) * 1000, 3) if dec else None})
    print(f"{len(test)} held-out captions, {chars:.1f} characters on average (training split: {len(train)})")
    print(f"{'coder':<36} {'mean B':>7} {'max B':>6} {'bits/char':>9} {'enc ms':>7} {'dec ms':>7}")
    for r in rows:
        print(f"{r['coder']:<36} {r['mean_bytes']:>7} {r['max_bytes']:>6} {r['bits_per_char']:>9} "
              f"{r['encode_ms']:>7} {r['decode_ms'] if r['decode_ms'] is not None else '-':>7}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"test_captions": len(test), "train_captions": len(train), "rows": rows,
                                     "machine": platform.platform(), "python": platform.python_version(),
                                     "brotli": brotli.__version__, "zstandard": zstandard.__version__,
                                     "constriction": getattr(constriction, "__version__", "?")},
                                    indent=2))


if __name__ == "__main__":
    main()

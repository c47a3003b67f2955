"""Caption coders on the held-out CMC-Bench GPT-4V captions (every 5th row): bytes, bits/char, speed.

    python benchmarks/textcode_bench.py [--captions ../shared/data/captions/cmcbench_gpt4v.csv] [--json OUT]

Each caption is coded alone, as in a .cmc file. zstd's dictionary is trained on the training split only.
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
import zstandard

from cmcodec import textcode
from cmcodec.wordmodel import get_model
from cmcodec.wordmodel_train import load_split


def _zstd_coder(train: list[str]):
    """zstd -22 with a 64 KB dictionary trained on the training captions; frame without header fields."""
    d = zstandard.train_dictionary(65536, [c.encode() for c in train])
    params = zstandard.ZstdCompressionParameters.from_level(22, format=zstandard.FORMAT_ZSTD1_MAGICLESS,
                                                           write_checksum=0, write_content_size=0,
                                                           write_dict_id=0)
    cctx = zstandard.ZstdCompressor(dict_data=d, compression_params=params)
    dctx = zstandard.ZstdDecompressor(dict_data=d, format=zstandard.FORMAT_ZSTD1_MAGICLESS)
    return cctx.compress, lambda b: dctx.decompressobj().decompress(b)


def main() -> None:
    """Print the table and write JSON."""
    ap = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[1].parent / "shared/data/captions/cmcbench_gpt4v.csv"
    ap.add_argument("--captions", type=Path, default=default)
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / "results/textcode.json")
    args = ap.parse_args()
    train, test = load_split(args.captions)
    wlm = get_model("wlm1")
    zc, zd = _zstd_coder(train)
    coders = {
        "raw UTF-8": (lambda t: t.encode(), lambda b: b.decode()),
        "zlib -9": (lambda t: zlib.compress(t.encode(), 9), lambda b: zlib.decompress(b).decode()),
        "brotli q11 (coder 'brotli')": (lambda t: textcode.CODERS["brotli"][0](t), textcode.CODERS["brotli"][1]),
        "zstd -22 + 64 KB dict, magicless": (lambda t: zc(t.encode()), lambda b: zd(b).decode()),
        "wlm1 (coder 0)": (wlm.encode, wlm.decode),
    }
    chars = statistics.mean(len(c) for c in test)
    rows = []
    for name, (enc, dec) in coders.items():
        t0 = time.perf_counter()
        data = [enc(c) for c in test]
        t1 = time.perf_counter()
        back = [dec(d) for d in data]
        t2 = time.perf_counter()
        assert back == test, name
        mean = statistics.mean(len(d) for d in data)
        rows.append({"coder": name, "mean_bytes": round(mean, 2), "max_bytes": max(len(d) for d in data),
                     "bits_per_char": round(mean * 8 / chars, 3),
                     "encode_ms": round((t1 - t0) / len(test) * 1000, 3),
                     "decode_ms": round((t2 - t1) / len(test) * 1000, 3)})
    print(f"{len(test)} held-out captions, {chars:.1f} characters on average (training split: {len(train)})")
    print(f"{'coder':<36} {'mean B':>7} {'max B':>6} {'bits/char':>9} {'enc ms':>7} {'dec ms':>7}")
    for r in rows:
        print(f"{r['coder']:<36} {r['mean_bytes']:>7} {r['max_bytes']:>6} {r['bits_per_char']:>9} "
              f"{r['encode_ms']:>7} {r['decode_ms']:>7}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"test_captions": len(test), "train_captions": len(train), "rows": rows,
                                     "machine": platform.platform(), "python": platform.python_version(),
                                     "brotli": brotli.__version__, "zstandard": zstandard.__version__},
                                    indent=2))


if __name__ == "__main__":
    main()

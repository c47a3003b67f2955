"""Forged-file fuzzing of every decode path: files made field by field from spec/bitstream.md
(cmcodec.bench.fuzzing.Forger), each sent through read_header and validate, a share through decode (classic
files: the whole model-free decode) and Pillow (open, and load of classic files), and a sample through the CLI
(``cmcodec decode``, one process each). Prints a table and writes JSON with the figures:

    python benchmarks/fuzz_forged.py --inputs 100000 --decode-every 20 --pillow-every 20 --cli 40

Goals: 0 escapes (an exception other than a CmcodecError; for Pillow, other than Pillow's own refusals; for
the CLI, a traceback, an undocumented exit code or more than one error line), 0 inputs over 5 CPU-seconds,
peak memory (this process and the reference-decoder worker) under 2 GiB. Checkpoints are written as it goes
(``"complete": false``), so a run cut short still says what it covered.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decode-every", type=int, default=20, help="decode every N-th classic file")
    ap.add_argument("--pillow-every", type=int, default=20, help="Pillow open (and load) of every N-th file")
    ap.add_argument("--cli", type=int, default=40, help="files sent through `cmcodec decode` (one process each)")
    ap.add_argument("--chunk", type=int, default=5000, help="inputs between checkpoints")
    ap.add_argument("--worst", action="store_true", help="also decode the costliest files the budget admits")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fuzz_forged.json")
    a = ap.parse_args(argv)

    import PIL

    import cmcodec
    from cmcodec.bench import fuzzing

    totals: dict = {"inputs": 0, "per_target": {}, "outcomes": {}, "slowest_cpu_s": 0.0, "slowest_wall_s": 0.0,
                    "over_5_cpu_s": 0, "seconds": 0.0, "peak_rss_mb": 0.0, "failures": []}
    command = "python benchmarks/fuzz_forged.py " + " ".join(argv or sys.argv[1:])
    result = {"benchmark": "fuzz_forged", "command": command,
              "settings": vars(a) | {"out": str(a.out)}, "complete": False,
              "versions": {"cmcodec": cmcodec.__version__, "python": platform.python_version(),
                           "pillow": PIL.__version__},
              "machine": platform.platform(), "totals": totals}
    done, chunk_seed = 0, a.seed
    while done < a.inputs:
        n = min(a.chunk, a.inputs - done)
        st = fuzzing.run_forged(n, seed=chunk_seed, decode_every=a.decode_every, pillow_every=a.pillow_every)
        chunk_seed += 1
        done += n
        totals["inputs"] += st.inputs
        for k, (sent, esc) in st.per_target.items():
            t = totals["per_target"].setdefault(k, [0, 0])
            t[0] += sent
            t[1] += esc
        for k, v in st.outcomes.items():
            totals["outcomes"][k] = totals["outcomes"].get(k, 0) + v
        totals["slowest_cpu_s"] = max(totals["slowest_cpu_s"], round(st.slowest_cpu_s, 3))
        totals["slowest_wall_s"] = max(totals["slowest_wall_s"], round(st.slowest_wall_s, 3))
        totals["over_5_cpu_s"] += st.over_5s
        totals["seconds"] = round(totals["seconds"] + st.seconds, 1)
        totals["peak_rss_mb"] = max(totals["peak_rss_mb"], round(st.peak_rss_mb, 1))
        totals["failures"] += [{"target": t, "error": e, "hex": d.hex()} for t, e, d in st.failures][:20]
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"{done} inputs, escapes {sum(e for _, e in totals['per_target'].values())}, slowest "
              f"{totals['slowest_cpu_s']} CPU-s, peak {totals['peak_rss_mb']} MB", flush=True)
    if a.cli:
        import random

        rng = random.Random(a.seed)
        forger = fuzzing.Forger(fuzzing._ref_streams(HERE.parent / "fixtures" / "golden"))
        with tempfile.TemporaryDirectory() as tmp:
            result["cli"] = fuzzing.cli_sample([forger.forge(rng) for _ in range(a.cli)], Path(tmp))
    if a.worst:
        with tempfile.TemporaryDirectory() as tmp:
            result["worst_cases"] = fuzzing.worst_cases(Path(tmp))
    result["complete"] = True
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'target':<10} {'sent':>8} {'escapes':>8}")
    for k, (sent, esc) in totals["per_target"].items():
        print(f"{k:<10} {sent:>8} {esc:>8}")
    if a.cli:
        print(f"{'cli':<10} {result['cli']['sent']:>8} {result['cli']['escapes']:>8}")
    for w in result.get("worst_cases", []):
        print(f"{w['file']}: {w['outcome']}, {w['decode_and_save_cpu_s']} CPU-s, {w['process_peak_rss_mb']} MB")
    print(f"slowest input {totals['slowest_cpu_s']} CPU-s ({totals['slowest_wall_s']} s wall), "
          f"{totals['over_5_cpu_s']} over 5 CPU-s, peak memory {totals['peak_rss_mb']} MB -> {a.out}")
    return result


if __name__ == "__main__":
    main()

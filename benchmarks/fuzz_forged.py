"""Forged-file fuzzing of every decode path: files made field by field from spec/bitstream.md
(cmcodec.bench.fuzzing.Forger), each sent through read_header and validate, a share through decode (classic
files: the whole model-free decode), Pillow (open, and load of classic files) and the CLI's ``decode`` run
in the worker process through its own entry point (``--cli-every``: option parsing, error mapping, one-line
errors, atomic PNG output; any profile), and a sample through the CLI as its own process each (``--cli``).
Prints a table and writes JSON with the figures:

    python benchmarks/fuzz_forged.py --inputs 100000 --chunk 2500 --decode-every 1 --pillow-every 1 \
        --cli-every 1 --cli 500 --jobs 2 --worst --out benchmarks/results/fuzz_forged_every_path.json

Goals: 0 escapes (an exception other than a CmcodecError; for Pillow, other than Pillow's own refusals; for
the CLI, a traceback, an undocumented exit code, more than one error line or an output left by a failure),
0 paths over 5 CPU-seconds (each of an input's paths, read+validate, decode, Pillow and the CLI, is one decode
a user could run; the reference decoder's worker is counted in; an input still running after 60 s is stopped by an
alarm and counted too), peak
memory (each worker and the reference-decoder worker it starts) under 2 GiB. Chunks of ``--chunk`` inputs,
each with its own seed, run in ``--jobs`` worker processes; checkpoints are written as chunks end
(``"complete": false``), so a run cut short still says what it covered.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cli_main(args: list[str]) -> object:
    """The CLI's entry point for the fuzzing workers (a module-level function is sent to them by name; the
    click group itself does not pickle)."""
    from cmcodec.cli import main

    return main(args)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decode-every", type=int, default=20, help="decode every N-th classic file")
    ap.add_argument("--pillow-every", type=int, default=20, help="Pillow open (and load) of every N-th file")
    ap.add_argument("--cli-every", type=int, default=0,
                    help="every N-th file also through the CLI's decode in the worker process (0: none)")
    ap.add_argument("--cli", type=int, default=40, help="files sent through `cmcodec decode` (one process each)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes, one chunk each at a time")
    ap.add_argument("--chunk", type=int, default=5000, help="inputs between checkpoints")
    ap.add_argument("--worst", action="store_true", help="also decode the costliest files the budget admits")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fuzz_forged.json")
    a = ap.parse_args(argv)

    import PIL

    import cmcodec
    from cmcodec.bench import fuzzing

    t_start = time.perf_counter()
    totals: dict = {"inputs": 0, "per_target": {}, "outcomes": {}, "slowest_cpu_s": 0.0, "slowest_wall_s": 0.0,
                    "over_5_cpu_s": 0, "seconds": 0.0, "peak_rss_mb": 0.0, "failures": []}
    command = "python benchmarks/fuzz_forged.py " + " ".join(argv or sys.argv[1:])
    result = {"benchmark": "fuzz_forged", "command": command,
              "settings": vars(a) | {"out": str(a.out)}, "complete": False,
              "versions": {"cmcodec": cmcodec.__version__, "python": platform.python_version(),
                           "pillow": PIL.__version__},
              "machine": platform.platform(), "totals": totals}
    import concurrent.futures as cf

    sizes = [min(a.chunk, a.inputs - i) for i in range(0, a.inputs, a.chunk)]
    kw = dict(decode_every=a.decode_every, pillow_every=a.pillow_every, cli_every=a.cli_every, cli_main=cli_main)
    done = 0
    with cf.ProcessPoolExecutor(max_workers=a.jobs) as pool:
        futures = [pool.submit(fuzzing.run_forged, n, seed=a.seed + i, **kw) for i, n in enumerate(sizes)]
        for fut in cf.as_completed(futures):
            st = fut.result()
            done += st.inputs
            totals["inputs"] += st.inputs
            for k, (sent, esc) in st.per_target.items():
                t = totals["per_target"].setdefault(k, [0, 0])
                t[0] += sent
                t[1] += esc
            for k, v in st.outcomes.items():
                totals["outcomes"][k] = totals["outcomes"].get(k, 0) + v
            totals["slowest_cpu_s"] = max(totals["slowest_cpu_s"], round(st.slowest_cpu_s, 3))
            for k, v in st.slowest_by_target.items():
                by = totals.setdefault("slowest_cpu_s_by_path", {})
                by[k] = max(by.get(k, 0.0), round(v, 3))
            totals["slowest_wall_s"] = max(totals["slowest_wall_s"], round(st.slowest_wall_s, 3))
            totals["over_5_cpu_s"] += st.over_5s
            totals["seconds"] = round(totals["seconds"] + st.seconds, 1)  # summed over workers
            totals["peak_rss_mb"] = max(totals["peak_rss_mb"], round(st.peak_rss_mb, 1))
            totals["failures"] = (totals["failures"] + [{"target": t, "error": e, "hex": d.hex()}
                                                        for t, e, d in st.failures])[:20]
            totals["wall_s"] = round(time.perf_counter() - t_start, 1)
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
    totals["wall_s"] = round(time.perf_counter() - t_start, 1)
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

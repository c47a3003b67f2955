"""Fuzz the .cmc reader (container, caption decoder, pixel map, reference codecs) and print the figures.

    python benchmarks/fuzz.py --runs 1000000                 # atheris (coverage-guided libFuzzer)
    python benchmarks/fuzz.py --runs 1000000 --engine mutator  # cmcodec.bench.fuzzing's own structured mutator

The target is cmcodec.bench.fuzzing.target (codec.validate on a file, or on a body whose check is recomputed so
mutations reach the payload decoders), seeded with the golden files. Figures: inputs tried, exceptions
other than CmcodecError (goal 0), inputs slower than 1 s (goal 0), the slowest input, peak memory (goal
under 1 GB). Crashing inputs are written to benchmarks/results/fuzz-crashes/ and belong in the regression
test (tests/test_fuzz.py). CI runs a short mutator version (tests/test_fuzz.py).

The 1-second hang goal is measured by the mutator engine, which times every input exactly on plain
Python. Under atheris the pure-Python decoders run several times slower (coverage instrumentation: an
input that takes 0.26 s plain took over 2 s instrumented), so its per-input timeout defaults to 3 s.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRASHES = HERE / "results" / "fuzz-crashes"
GOLDEN = HERE.parent / "fixtures" / "golden"


def _atheris_worker(args: list[str]) -> None:
    """Run inside the libFuzzer process: instrument cmcodec's parsers (numpy, Pillow and PyAV are C code).

    The arithmetic coder's inner loop is left uninstrumented: it is a few integer operations per symbol
    that instrumentation slowed tenfold (a 10,000-cell pixel map: 0.3 s plain, over 3 s instrumented),
    and it is covered by round-trip property tests.
    """
    import atheris
    import numpy  # noqa: F401  - imported before instrumentation so they are not instrumented
    import PIL.Image  # noqa: F401

    import cmcodec.core.arith  # noqa: F401

    with atheris.instrument_imports(include=["cmcodec"]):
        from cmcodec.bench import fuzzing

    atheris.Setup([sys.argv[0], *args], fuzzing.target)
    atheris.Fuzz()


def run_atheris(runs: int, timeout_s: int, rss_mb: int) -> dict:
    """libFuzzer run in a subprocess; its final stats parsed into figures."""
    import atheris

    from cmcodec.bench import fuzzing

    CRASHES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as corpus:
        for i, s in enumerate(fuzzing.seeds(GOLDEN)):
            Path(corpus, f"seed{i:03d}").write_bytes(s)
        cmd = [sys.executable, __file__, "--atheris-worker", corpus, f"-runs={runs}", f"-timeout={timeout_s}",
               f"-rss_limit_mb={rss_mb}", "-print_final_stats=1", f"-artifact_prefix={CRASHES}/", "-max_len=4096"]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", p.stderr))
    crash = re.findall(r"(crash|timeout|oom|leak)-\w+", p.stderr)
    tail = "\n".join(p.stderr.splitlines()[-30:])
    return {
        "engine": f"atheris {getattr(atheris, '__version__', '')} (libFuzzer)".replace("  ", " "),
        "inputs": int(stats.get("number_of_executed_units", 0)),
        "seconds": round(seconds, 1),
        "exit_code": p.returncode,
        "other_exceptions": int("Uncaught Python exception" in p.stderr),
        "hangs_over_1s": int(any(c == "timeout" for c in crash)),
        "slowest_s": int(stats.get("slowest_unit_time_sec", 0)),  # libFuzzer reports whole seconds
        "peak_rss_mb": int(stats.get("peak_rss_mb", 0)),
        "new_coverage_units": int(stats.get("new_units_added", 0)),
        "artifacts": sorted(set(crash)),
        "log_tail": tail if p.returncode else "",
    }


def run_mutator(runs: int, seed: int) -> dict:
    """cmcodec.bench.fuzzing's structured mutator in this process."""
    from cmcodec.bench import fuzzing

    st = fuzzing.run_mutations(runs, fuzzing.seeds(GOLDEN), seed=seed)
    CRASHES.mkdir(parents=True, exist_ok=True)
    for i, (why, data) in enumerate(st.failures):
        (CRASHES / f"mutator-{seed}-{i}.bin").write_bytes(data)
        print(f"failure {i}: {why}", file=sys.stderr)
    return {"engine": f"cmcodec.bench.fuzzing mutator (seed {seed})", "inputs": st.inputs,
            "seconds": round(st.seconds, 1),
            "other_exceptions": st.other_exceptions, "hangs_over_1s": st.hangs_over_1s,
            "slowest_s": round(st.slowest_s, 3), "peak_rss_mb": round(st.peak_rss_mb, 1)}


def main() -> None:
    """Parse arguments, fuzz, print the table and write JSON."""
    if len(sys.argv) > 1 and sys.argv[1] == "--atheris-worker":
        _atheris_worker(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--engine", choices=("atheris", "mutator"), default="atheris")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=3, help="libFuzzer per-input timeout, seconds (instrumented)")
    ap.add_argument("--rss-mb", type=int, default=1024, help="libFuzzer memory limit")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "fuzz.json")
    args = ap.parse_args()
    if args.engine == "atheris":
        r = run_atheris(args.runs, args.timeout, args.rss_mb)
    else:
        r = run_mutator(args.runs, args.seed)
    import av
    import PIL

    import cmcodec

    r.update(machine=platform.platform(), python=platform.python_version(), cmcodec=cmcodec.__version__,
             pillow=PIL.__version__, pyav=av.__version__,
             command="python benchmarks/fuzz.py " + " ".join(sys.argv[1:]))
    for k in ("engine", "inputs", "seconds", "other_exceptions", "hangs_over_1s", "slowest_s", "peak_rss_mb"):
        print(f"{k:<18} {r[k]}")
    if r.get("log_tail"):
        print(r["log_tail"], file=sys.stderr)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(r, indent=2))
    sys.exit(1 if r["other_exceptions"] or r["hangs_over_1s"] or r.get("exit_code") else 0)


if __name__ == "__main__":
    main()

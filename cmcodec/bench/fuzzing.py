"""Fuzzing support (the reader must refuse any input with a CmcodecError, quickly):
the decoder-side target, a structured mutator, and a timed mutation loop.

The target is what a reader does with a stranger's file before any model runs: ``codec.validate``
(header, check, every payload). Its one rule: any input either validates or raises a ``CmcodecError``.
Inputs are prefixed with a control byte; when its low bit is set the rest is taken as a body whose
check (spec §5) is recomputed, so that mutations get past the CRC and reach the payload decoders.
``benchmarks/fuzz.py`` drives this with atheris (coverage-guided) or with ``run_mutations`` below.
"""

from __future__ import annotations

import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import codec
from ..core import bitstream
from ..core.errors import CmcodecError


def target(data: bytes) -> None:
    """Decode a fuzz input; only CmcodecError may escape as the project's answer to bad input."""
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        body = bitstream.seal(body)
    try:
        codec.validate(body)
    except CmcodecError:
        pass


def seeds(folder: Path) -> list[bytes]:
    """Seed inputs from a folder of golden files (fixtures/golden): each file as is, and its body with the CRC
    removed for CRC-fixing mutation."""
    out = []
    for p in sorted(folder.glob("*.cmc")):
        data = p.read_bytes()
        out.append(b"\x00" + data)
        out.append(b"\x01" + data[: -1 if len(data) <= bitstream.CRC8_MAX_FILE else -4])
    return out


def mutate(rng: random.Random, pool: list[bytes]) -> bytes:
    """One structured mutation of a pool input: bit flips, byte sets, inserts, deletes, splices, ue(v) edits."""
    b = bytearray(rng.choice(pool))
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(7)
        n = len(b)
        if n <= 1:
            b += bytes([rng.randrange(256)])
            continue
        i = rng.randrange(1, n)  # byte 0 is the control byte
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3:
            del b[i : i + rng.randint(1, 16)]
        elif op == 4:
            other = rng.choice(pool)
            j = rng.randrange(len(other))
            b[i:] = other[j:]
        elif op == 5:
            b[i : i + 4] = bytes(4) if rng.random() < 0.5 else b"\xff" * 4  # long ue(v) runs / huge sizes
        else:
            del b[i:]
    b[0] = (b[0] & ~1) | rng.getrandbits(1) if rng.random() < 0.2 else b[0]
    return bytes(b)


@dataclass
class FuzzStats:
    """Figures of a mutation run."""

    inputs: int = 0
    seconds: float = 0.0
    other_exceptions: int = 0
    hangs_over_1s: int = 0
    slowest_s: float = 0.0
    peak_rss_mb: float = 0.0
    failures: list[tuple[str, bytes]] = field(default_factory=list)


def run_mutations(n: int, pool: list[bytes], seed: int = 0, hang_s: float = 1.0,
                  keep: int = 10) -> FuzzStats:
    """Run n mutated inputs through the target, timing each; keep up to ``keep`` failing inputs."""
    rng = random.Random(seed)
    if not pool:
        raise ValueError("run_mutations needs a non-empty seed pool (fuzzing.seeds(folder))")
    pool = list(pool)
    st = FuzzStats()
    start = time.perf_counter()
    for _ in range(n):
        data = mutate(rng, pool)
        t0 = time.perf_counter()
        try:
            target(data)
        except Exception as e:
            st.other_exceptions += 1
            if len(st.failures) < keep:
                st.failures.append((f"{type(e).__name__}: {e}", data))
        dt = time.perf_counter() - t0
        st.slowest_s = max(st.slowest_s, dt)
        if dt > hang_s:
            st.hangs_over_1s += 1
            if len(st.failures) < keep:
                st.failures.append((f"hang: {dt:.2f} s", data))
        st.inputs += 1
        if rng.random() < 0.01 and len(pool) < 2000:
            pool.append(data)  # let deeper mutations build on earlier ones
    st.seconds = time.perf_counter() - start
    st.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return st


# --- the forged-file fuzzer: files made field by field from spec/bitstream.md -----------------------------------
# Mutating golden files rarely reaches what a red team writes by hand: a tiny file that declares a huge picture,
# an image reference whose stream declares another size, a caption coder spelling surrogates, a section table
# that disagrees with the payloads. ``forge`` writes every header field of spec §3 itself (legal values, edge
# values and illegal ones), payloads per section type (§6-§8, seeded with real reference streams), and seals
# most files with a correct check (§5) so that they reach the payload decoders. ``run_forged`` sends each file
# through read_header, validate, decode (classic profile files: the full model-free decode) and Pillow's open
# (and load for classic files), timing each input and counting exceptions that are not the project's own.

_EDGE_SIDES = (1, 2, 7, 8, 63, 64, 65, 192, 4095, 4096, 4097, 5792, 8192, 16383, 16384, 16385, 65535, 65536)


def _ref_streams(folder: Path) -> dict[int, list[bytes]]:
    """Real image-reference payloads by coder id, from the golden and forged files (their long-side byte
    included), to forge around."""
    from ..core import ids as _ids

    out: dict[int, list[bytes]] = {}
    for p in sorted(folder.glob("*.cmc")):
        try:
            h = bitstream.read_header(p.read_bytes(), bitstream.Limits(max_pixels=1 << 40, max_width=1 << 20,
                                                                       max_height=1 << 20))
        except CmcodecError:
            continue
        for s in h.sections:
            if s.type_id == _ids.SECTION_IDS["image_ref"]:
                out.setdefault(s.coder_id, []).append(s.payload)
    return out


@dataclass
class Forger:
    """Forges .cmc files from the spec's fields; ``refs``: real reference payloads by coder id."""

    refs: dict[int, list[bytes]]

    def side(self, rng: random.Random) -> int:
        r = rng.random()
        if r < 0.75:
            return rng.randint(1, 600)
        if r < 0.97:
            return rng.choice(_EDGE_SIDES)
        return rng.randint(1, 1 << 16)

    def ue(self, rng: random.Random, small: int = 8) -> int:
        r = rng.random()
        if r < 0.8:
            return rng.randint(0, small)
        if r < 0.95:
            return rng.choice((15, 16, 17, 255, 256, 4096, 65535, 1 << 20, 1 << 24))
        return rng.randint(0, (1 << 33) - 2)

    def caption(self, rng: random.Random) -> tuple[int, bytes]:
        """(coder id, payload) of a caption section: valid, corrupt, surrogate-spelling, bombs."""
        from ..core import textcode, wordmodel

        kind = rng.randrange(8)
        words = " ".join(rng.choice(("a", "red", "house", "café", "☕", "\ud800", "x" * 40, "Ünïcödé"))
                         for _ in range(rng.randint(0, 12)))
        if kind == 0:  # a word model's stream of any text, lone surrogates included (not via normalize)
            return 3, wordmodel.get_model("wlm2").encode(words)
        if kind == 1:
            return rng.choice((0, 3)), bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        if kind == 2:  # brotli: text, random bytes, or a bomb of many characters
            import brotli

            text = words if rng.random() < 0.5 else "a" * rng.choice((4096, 4097, 20000, 1 << 20))
            data = brotli.compress(text.encode("utf-8", "surrogatepass"))
            return 1, data if rng.random() < 0.8 else data[: rng.randint(0, len(data))]
        if kind == 3:
            return 2, words.encode("utf-8", "surrogatepass")  # CESU-style surrogates are not UTF-8
        if kind == 4:
            return 2, bytes(rng.randrange(256) for _ in range(rng.randint(0, 30)))
        if kind == 5:
            return 0, textcode.encode(words.replace("\ud800", "?"), "wlm1")
        return rng.randrange(6), b""

    def pixel_map(self, rng: random.Random) -> bytes:
        """Parameter byte (any of 256) and an arithmetic-coded stream: none, random, or a flat run."""
        b = rng.randrange(256)
        r = rng.random()
        rest = b"" if r < 0.3 else bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) if r < 0.8 \
            else b"\xff" * rng.randint(1, 64)
        return bytes([b]) + rest

    def image_ref(self, rng: random.Random) -> tuple[int, bytes]:
        """(coder id, payload): a real stream, mutated a little or a lot, under any long-side byte."""
        coder = rng.randrange(6) if rng.random() < 0.9 else rng.randrange(6, 40)
        pool = self.refs.get(coder) or [b"\x18" + bytes(rng.randrange(256) for _ in range(40))]
        p = bytearray(rng.choice(pool))
        if p and rng.random() < 0.5:
            p[0] = rng.choice((0, 1, 2, 8, 24, 255, rng.randrange(256)))
        for _ in range(rng.choice((0, 0, 1, 2, 5))):
            if len(p) > 1:
                i = rng.randrange(1, len(p))
                op = rng.randrange(3)
                if op == 0:
                    p[i] ^= 1 << rng.randrange(8)
                elif op == 1:
                    del p[i:]
                else:
                    p[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        return coder, bytes(p)

    def forge(self, rng: random.Random) -> bytes:
        """One forged file."""
        from ..core import ids as _ids

        w = bitstream.BitWriter()
        w.u(bitstream.MAGIC, 8)
        w.ue(0 if rng.random() < 0.97 else rng.randint(1, 3))  # version
        mode_id = rng.randrange(4)
        mode = _ids.MODE_NAMES[mode_id]
        w.u(mode_id, 2)
        width, height = self.side(rng), self.side(rng)
        large = width > 4096 or height > 4096
        if rng.random() < 0.03:
            large = not large
        w.u(int(large), 1)
        bits = 16 if large else 12
        w.u((width - 1) % (1 << bits), bits)
        w.u((height - 1) % (1 << bits), bits)
        w.ue(rng.choice((0, 1, 1, 1, 5)) if rng.random() < 0.95 else self.ue(rng, 30))  # profile (1: classic)
        implied = list(_ids.MODE_SECTIONS[mode])
        payloads: list[bytes] = []
        coders: list[int] = []
        for t in implied:
            if t == _ids.SECTION_IDS["caption"]:
                c, pl = self.caption(rng)
            elif t == _ids.SECTION_IDS["pixel_map"]:
                c, pl = (0 if rng.random() < 0.95 else rng.randint(1, 5)), self.pixel_map(rng)
            else:
                c, pl = self.image_ref(rng)
            coders.append(c)
            payloads.append(pl)
        seed = 0 if rng.random() < 0.5 else rng.choice((1, 2**32 - 1, 2**32, rng.randrange(2**32)))
        params = seed != 0 or any(coders) or rng.random() < 0.1
        w.u(int(params), 1)
        if params:
            w.ue(seed)
            for c in coders:
                w.ue(c)
        extra: list[tuple[int, bool, int, bytes]] = []
        if rng.random() < 0.15:
            for _ in range(rng.choice((1, 1, 2, 16, 17))):
                extra.append((self.ue(rng, 12), rng.random() < 0.5, self.ue(rng, 3),
                              bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))))
        w.u(int(bool(extra)), 1)
        if extra:
            w.ue(len(extra) - 1)
            for t, req, c, _ in extra:
                w.ue(t)
                w.u(int(req), 1)
                w.ue(c)
        everything = payloads + [e[3] for e in extra]
        for pl in everything[:-1]:
            r = rng.random()
            w.ue(len(pl) if r < 0.9 else self.ue(rng, 100))
        body = w.to_bytes() + b"".join(everything)
        r = rng.random()
        if r < 0.9:
            return bitstream.seal(body)
        if r < 0.95:
            return body + bytes([rng.randrange(256)])
        sealed = bitstream.seal(body)
        return sealed[: rng.randint(0, len(sealed))]


def _pillow_ok(e: BaseException) -> bool:
    """Pillow's own refusals: not a .cmc (UnidentifiedImageError), its decompression-bomb guard."""
    from PIL import Image, UnidentifiedImageError

    return isinstance(e, (CmcodecError, UnidentifiedImageError, Image.DecompressionBombError))


@dataclass
class ForgedStats:
    """Figures of a forged-file run (per target: inputs sent and escapes)."""

    inputs: int = 0
    per_target: dict[str, list[int]] = field(default_factory=dict)  # target: [sent, escapes]
    outcomes: dict[str, int] = field(default_factory=dict)  # error class (or "ok") of validate
    slowest_cpu_s: float = 0.0  # the slowest single path (read+validate, decode, Pillow or CLI) of any input
    slowest_by_target: dict[str, float] = field(default_factory=dict)  # CPU-s, the reference decoder's included
    slowest_wall_s: float = 0.0  # the slowest input, every path together
    over_5s: int = 0  # paths over hang_s CPU-seconds, and inputs the alarm stopped
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    failures: list[tuple[str, str, bytes]] = field(default_factory=list)

    @property
    def escapes(self) -> int:
        return sum(e for _, e in self.per_target.values())


class _Hang(BaseException):
    """Raised by the wall-clock alarm in an input that runs past its bound (a BaseException, so that no
    handler of the code under test takes it for the code's own error)."""


class _Broken(Exception):
    """A CLI run that broke a promise (cli_in_process says which)."""


def _cli_codes() -> set[int]:
    """The exit codes the CLI documents: 0, interrupted (130), terminated (143) and each error class's."""
    from ..core import errors

    return {0, 130, 143} | {c.exit_code for c in vars(errors).values()
                            if isinstance(c, type) and issubclass(c, CmcodecError)}


def cli_in_process(data: bytes, folder: Path, codes: set[int], main: Callable[[list[str]], object]) -> str | None:
    """``cmcodec decode FILE -o OUT.png`` through the CLI's own entry point in this process (its option
    parsing, error mapping and atomic output; not the interpreter's start): None when it kept its promise
    (a documented exit code; on failure exactly one line on stderr and no output left), else what broke."""
    import contextlib
    import io
    import signal

    src, dst = folder / "f.cmc", folder / "f.png"
    src.write_bytes(data)
    err = io.StringIO()
    on_term = signal.getsignal(signal.SIGTERM)  # the CLI installs its own; the fuzzing process keeps its
    code: object = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main(["decode", str(src), "-o", str(dst)])
    except SystemExit as e:
        code = e.code if e.code is not None else 0
    finally:
        signal.signal(signal.SIGTERM, on_term)
        made = dst.exists()
        dst.unlink(missing_ok=True)
        src.unlink(missing_ok=True)
    lines = [x for x in err.getvalue().splitlines() if x.strip()]
    if code not in codes:
        return f"exit {code!r}, not a documented code: {err.getvalue()[-200:]!r}"
    if code and len(lines) != 1:
        return f"exit {code}: {len(lines)} lines on stderr, not 1: {err.getvalue()[-200:]!r}"
    if code and made:
        return f"exit {code} left an output file"
    return None


def run_forged(n: int, seed: int = 0, refs_folder: Path | None = None, decode_every: int = 1,
               pillow_every: int = 1, hang_s: float = 5.0, keep: int = 20,
               progress: Callable[[int], None] | None = None, cli_every: int = 0,
               cli_main: Callable[[list[str]], object] | None = None, alarm_s: int = 60) -> ForgedStats:
    """n forged files through read_header, validate, decode (classic profile files, every decode_every-th),
    Pillow (open, and load of classic files; every pillow_every-th) and, with cli_every, the CLI's
    ``decode`` in this process (every cli_every-th file, any profile: cli_in_process; cli_main is the CLI's
    entry point, cmcodec.cli.main, passed in since this layer sits below the CLI), with the default
    limits. A path of an input (read and validate, decode, Pillow, CLI: each a decode a user could run) over
    hang_s CPU-seconds counts as a hang; an input still running after alarm_s wall seconds is stopped by an
    alarm and counted too (so a true hang cannot stall the run)."""
    import io
    import os
    import signal
    import tempfile

    from PIL import Image

    from .. import pillow_plugin
    from ..core import classic as _classic  # noqa: F401  (loaded before timing starts)

    pillow_plugin.register()
    if cli_every and cli_main is None:
        raise ValueError("cli_every needs cli_main, the CLI's entry point (cmcodec.cli.main)")
    codes = _cli_codes()
    offline_was = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # a model profile's file: no hub attempt, a ModelError at once (put back)
    tmp = Path(tempfile.mkdtemp(prefix="cmcodec-fuzz-")) if cli_every else None

    def ring(signum: int, frame: object) -> None:
        raise _Hang(f"still running after {alarm_s} s")

    old_alarm = signal.signal(signal.SIGALRM, ring)
    rng = random.Random(seed)
    forger = Forger(_ref_streams(refs_folder or Path(__file__).resolve().parents[2] / "fixtures" / "golden"))
    st = ForgedStats()
    start = time.perf_counter()

    def cpu() -> float:
        """CPU-seconds of this process and of the finished children (the reference decoder's worker)."""
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + ch.ru_utime + ch.ru_stime

    def timed(name: str, c0: float, data: bytes) -> None:
        """A path's CPU time against the bound: each path of an input is one decode a user could run."""
        dt = cpu() - c0
        st.slowest_by_target[name] = max(st.slowest_by_target.get(name, 0.0), dt)
        st.slowest_cpu_s = max(st.slowest_cpu_s, dt)
        if dt > hang_s:
            st.over_5s += 1
            if len(st.failures) < keep:
                st.failures.append(("hang", f"{name}: {dt:.2f} CPU-s", data))

    def attempt(name: str, fn: Callable[[], object], data: bytes, allowed: Callable[[BaseException], bool]) -> None:
        sent = st.per_target.setdefault(name, [0, 0])
        sent[0] += 1
        c0 = cpu()
        try:
            fn()
        except Exception as e:  # the one rule: only the project's errors (Pillow's own refusals for Pillow)
            if not allowed(e):
                sent[1] += 1
                if len(st.failures) < keep:
                    st.failures.append((name, f"{type(e).__name__}: {e}"[:300], data))
        timed(name, c0, data)

    def one(k: int, data: bytes) -> None:
        c0 = cpu()
        header = None
        try:
            header = bitstream.read_header(data)
        except CmcodecError:
            pass
        except Exception as e:
            st.per_target.setdefault("read", [0, 0])[1] += 1
            if len(st.failures) < keep:
                st.failures.append(("read", f"{type(e).__name__}: {e}"[:300], data))
        st.per_target.setdefault("read", [0, 0])[0] += 1
        try:
            codec.validate(data)
            st.outcomes["ok"] = st.outcomes.get("ok", 0) + 1
        except CmcodecError as e:
            st.outcomes[type(e).__name__] = st.outcomes.get(type(e).__name__, 0) + 1
        except Exception as e:
            st.per_target.setdefault("validate", [0, 0])[1] += 1
            if len(st.failures) < keep:
                st.failures.append(("validate", f"{type(e).__name__}: {e}"[:300], data))
        st.per_target.setdefault("validate", [0, 0])[0] += 1
        timed("validate", c0, data)  # read_header and validate together
        classic = header is not None and header.profile_id == 1
        if classic and k % decode_every == 0:
            attempt("decode", lambda data=data: codec.decode(data), data, lambda e: isinstance(e, CmcodecError))
        if k % pillow_every == 0:
            def pil(data: bytes = data, classic: bool = classic) -> None:
                with Image.open(io.BytesIO(data)) as im:
                    if classic:
                        im.load()
            attempt("pillow", pil, data, _pillow_ok)
        if cli_every and k % cli_every == 0:
            def via_cli(data: bytes = data) -> None:
                broke = cli_in_process(data, tmp, codes, cli_main)
                if broke:
                    raise _Broken(broke)
            attempt("cli", via_cli, data, lambda e: False)

    try:
        for k in range(n):
            data = forger.forge(rng)
            t0 = time.perf_counter()
            signal.alarm(alarm_s)
            try:
                one(k, data)
            except _Hang as e:
                st.over_5s += 1
                if len(st.failures) < keep:
                    st.failures.append(("hang", str(e), data))
            finally:
                signal.alarm(0)
            st.slowest_wall_s = max(st.slowest_wall_s, time.perf_counter() - t0)
            st.inputs += 1
            if progress is not None and (k + 1) % 1000 == 0:
                progress(k + 1)
    finally:
        signal.signal(signal.SIGALRM, old_alarm)
        if offline_was is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = offline_was
        if tmp is not None:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    st.seconds = time.perf_counter() - start
    st.peak_rss_mb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                         resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return st


def cli_sample(files: list[bytes], folder: Path, timeout_s: float = 60.0) -> dict:
    """Each file through ``cmcodec decode`` in its own process (one process each: a sample): an escape is a
    traceback, an undocumented exit code or more than one line of error; also the slowest run."""
    import subprocess
    import sys

    codes = _cli_codes()
    out = {"sent": 0, "escapes": 0, "slowest_s": 0.0, "exit_codes": {}, "failures": []}
    for i, data in enumerate(files):
        src, dst = folder / f"f{i}.cmc", folder / f"f{i}.png"
        src.write_bytes(data)
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "cmcodec.cli", "decode", str(src), "-o", str(dst)],
                           capture_output=True, text=True, timeout=timeout_s)
        dt = time.perf_counter() - t0
        out["sent"] += 1
        out["slowest_s"] = max(out["slowest_s"], dt)
        out["exit_codes"][str(r.returncode)] = out["exit_codes"].get(str(r.returncode), 0) + 1
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        if r.returncode not in codes or "Traceback" in r.stderr or (r.returncode and len(lines) != 1):
            out["escapes"] += 1
            if len(out["failures"]) < 10:
                out["failures"].append({"exit": r.returncode, "stderr": r.stderr[-300:], "hex": data.hex()})
        dst.unlink(missing_ok=True)
        src.unlink()
    return out


_WORST = '''
import resource, sys, time
from cmcodec.core import bitstream, guidance
import cmcodec
w, h, block = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pm = bitstream.Section(1, 0, bytes([guidance.PixelParams(block=block, bits=1, chroma_drop=3).byte]))
data = bitstream.pack(mode="pixel", width=w, height=h, profile_id=1, sections=[pm, bitstream.Section(0, 2, b"")])
c0, t0 = time.process_time(), time.perf_counter()
try:
    cmcodec.decode(data).save(sys.argv[4])
    out = "decoded"
except cmcodec.CmcodecError as e:
    out = type(e).__name__
print(len(data), out, round(time.process_time() - c0, 2), round(time.perf_counter() - t0, 2),
      round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
'''


def worst_cases(folder: Path) -> list[dict]:
    """The costliest files the default budget admits, and one it refuses, each decoded (and saved as PNG) in a
    fresh process: a flat classic pixel-mode file (10 bytes) at the budget's widest 2:1 size with the largest
    blur (1024-px blocks) and a mid one (128), and the 16384 x 16384 a header may declare. CPU-seconds, wall
    seconds and peak memory of each process (its Python and imports included)."""
    import subprocess
    import sys

    out = []
    for w, h, block in ((8192, 4096, 1024), (8192, 4096, 128), (16384, 16384, 1024)):
        r = subprocess.run([sys.executable, "-c", _WORST, str(w), str(h), str(block), str(folder / "w.png")],
                           capture_output=True, text=True, timeout=600)
        nbytes, what, cpu, wall, rss = r.stdout.split()
        out.append({"file": f"{nbytes}-byte classic pixel-mode file, {w}x{h}, {block}-px blocks", "outcome": what,
                    "decode_and_save_cpu_s": float(cpu), "decode_and_save_wall_s": float(wall),
                    "process_peak_rss_mb": int(rss)})
    return out

"""The command line as a user types it: exit codes, one-line errors, folders, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import GOLDEN, HOUSE, PARROTS

import cmcodec
import cmcodec.codec
import cmcodec.core.bitstream


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cmcodec.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_encode_info_decode_classic(tmp_path: Path) -> None:
    out = tmp_path / "p.cmc"
    r = run("encode", str(PARROTS), "-o", str(out), "--mode", "pixel", "--profile", "classic")
    assert r.returncode == 0, r.stderr
    [info] = json.loads(run("info", str(out), "--json").stdout)
    assert info["mode"] == "pixel" and info["width"] == 192 and info["bytes"] == out.stat().st_size
    r = run("decode", str(out), "-o", str(tmp_path / "p.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p.png").stat().st_size > 0


def test_no_overwrite_without_force_and_never_the_input(tmp_path: Path) -> None:
    out = tmp_path / "p.cmc"
    out.write_bytes(b"keep")
    r = run("encode", str(PARROTS), "-o", str(out), "--caption", "x")
    assert r.returncode == 10 and "use --force" in r.stderr and out.read_bytes() == b"keep"
    assert run("encode", str(PARROTS), "-o", str(out), "--caption", "x", "--force").returncode == 0
    src = tmp_path / "a.cmc"
    shutil.copy(GOLDEN / "pixel_classic.cmc", src)
    r = run("decode", str(src), "-o", str(src), "--force")
    assert r.returncode == 10 and "its own input" in r.stderr
    assert src.read_bytes() == (GOLDEN / "pixel_classic.cmc").read_bytes()


def test_outputs_get_the_permissions_of_an_ordinary_file(tmp_path: Path) -> None:
    # atomic writes go through a private temp file (0o600): the output must end as open() would make it
    old = os.umask(0o022)  # the subprocesses inherit it
    try:
        out, png = tmp_path / "p.cmc", tmp_path / "p.png"
        assert run("encode", str(PARROTS), "-o", str(out), "--mode", "pixel", "--profile", "classic").returncode == 0
        assert run("decode", str(out), "-o", str(png)).returncode == 0
        assert [oct(p.stat().st_mode & 0o777) for p in (out, png)] == ["0o644", "0o644"]
        out.chmod(0o640)  # --force over an existing output keeps that file's permissions
        assert run("encode", str(PARROTS), "-o", str(out), "--mode", "pixel", "--profile", "classic", "--force").returncode == 0
        assert oct(out.stat().st_mode & 0o777) == "0o640"
    finally:
        os.umask(old)


def test_errors_are_one_line_with_exit_codes(tmp_path: Path) -> None:
    r = run("info", str(PARROTS))
    assert r.returncode == 3 and r.stderr.strip().count("\n") == 0 and "not a .cmc file" in r.stderr
    bad = tmp_path / "t.cmc"
    bad.write_bytes((GOLDEN / "text_wlm1.cmc").read_bytes()[:-3])
    r = run("decode", str(bad), "-o", str(tmp_path / "t.png"))
    assert r.returncode == 3 and "corrupt or truncated" in r.stderr
    assert not (tmp_path / "t.png").exists()
    r = run("encode", str(PARROTS), "-o", str(tmp_path / "x.cmc"), "--mode", "text", "--profile", "classic",
            "--caption", "x")
    assert r.returncode == 6 and "classic cannot decode text mode" in r.stderr
    r = run("encode", str(PARROTS), "-o", str(tmp_path / "y.cmc"), "--max-bytes", "3", "--caption", "x")
    assert r.returncode == 8 and "smallest file is" in r.stderr


def test_info_does_not_import_torch() -> None:
    code = ("import sys; from cmcodec.cli import main; sys.argv=['cmcodec','info','" + str(GOLDEN / "text_wlm1.cmc")
            + "']\ntry: main()\nexcept SystemExit: pass\nassert 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_folder_runs_continue_past_bad_files(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PARROTS, src / "a.png")
    shutil.copy(HOUSE, src / "b.png")
    (src / "c.png").write_bytes(b"broken")
    r = run("encode", str(src), "-o", str(tmp_path / "out"), "--mode", "pixel", "--profile", "classic")
    assert r.returncode == 1
    assert "1 of 3 files failed" in r.stderr and "c.png" in r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".cmcodec-run.jsonl", "a.cmc", "b.cmc"]
    r = run("decode", str(tmp_path / "out"), "-o", str(tmp_path / "dec"))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "dec").iterdir()) == [".cmcodec-run.jsonl", "a.decoded.png",
                                                                    "b.decoded.png"]


def test_captions_csv_for_folders(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(HOUSE, src / "b.png")
    csv = tmp_path / "c.csv"
    csv.write_text(",name,text\n0,b.png,A red house with white windows.\n", encoding="utf-8")
    r = run("encode", str(src), "-o", str(tmp_path / "out"), "--caption-file", str(csv))
    assert r.returncode == 0, r.stderr
    [info] = json.loads(run("info", str(tmp_path / "out/b.cmc"), "--json").stdout)
    assert info["caption"] == "A red house with white windows."
    # 6 bytes with the coder a v1 header implies (wlm1); naming wlm2 costs a byte, taken only when it pays
    coder = info["sections"][0]["coder"]
    assert info["overhead_bytes"] <= (6 if coder == "wlm1" else 7)
    wlm1_file = cmcodec.encode(HOUSE, mode="text", caption="A red house with white windows.", options=cmcodec.EncodeOptions(caption_coder="wlm1"))
    assert info["bytes"] <= len(wlm1_file)


def test_profiles_lists_stable_ids() -> None:
    r = run("profiles", "--json")
    ids = {p["name"]: p["id"] for p in json.loads(r.stdout)}
    assert ids == {"sd-turbo": 0, "classic": 1, "sdxl-turbo": 2, "sd15": 3, "realvisxl-v4": 4,
                   "sd-turbo-taesd": 5, "sdxl-turbo-taesd": 6, "playground-v2.5": 7, "playground-v2": 8,
                   "ssd-1b": 9, "sdxl-base": 10, "dreamlike-photoreal-2": 11, "instruct-pix2pix": 12,
                   "sd15-tile": 13, "sd-x4-upscaler": 14, "flux-schnell": 15, "sd35-large-turbo": 16,
                   "sana-sprint": 17, "sdxl-tile": 18, "sd21-base": 19}


def test_info_verify_decodes_payloads_without_torch(tmp_path: Path) -> None:
    code = ("import sys; from cmcodec.cli import main; sys.argv=['cmcodec','info','--verify','"
            + str(GOLDEN / "image_av1_classic.cmc") + "']\ntry: main()\nexcept SystemExit as e: assert not e.code\n"
            + "assert 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = bytearray((GOLDEN / "full_j2k.cmc").read_bytes())
    h = cmcodec.read_header(bytes(data))
    assert [s.name for s in h.sections] == ["image_ref", "caption"]
    data[h.header_bytes + 60] ^= 0xFF  # inside the JPEG 2000 stream, with the check recomputed: only --verify sees it
    bad = tmp_path / "bad.cmc"
    bad.write_bytes(cmcodec.core.bitstream.seal(bytes(data[: -1 if h.check == "crc8" else -4])))
    assert run("info", str(bad)).returncode == 0
    r = run("info", "--verify", str(bad))
    assert r.returncode != 0 and "corrupt image reference" in r.stderr


def _signal_masks(pid: int) -> str:
    """The Sig* lines of /proc/PID/status (Linux), for diagnosis."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return ""
    return " ".join(x.replace("\t", "") for x in lines if x.startswith(("SigBlk", "SigIgn", "SigCgt")))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["INT", "TERM", "KILL"])
def test_interrupted_folder_run_leaves_no_half_written_file(tmp_path: Path, sig: int) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(200):  # about 5 s of work: the signal lands midway even when this process polls late
        shutil.copy(PARROTS, src / f"p{i:03d}.png")
    out = tmp_path / "out"
    # SIGINT as a terminal's Ctrl-C finds it: a suite started as a background job of a non-interactive shell
    # has SIGINT and SIGQUIT ignored, and a child inherits that (it then ran all files and exited 0)
    proc = subprocess.Popen([sys.executable, "-m", "cmcodec.cli", "encode", str(src), "-o", str(out), "--mode", "image",
                             "--profile", "classic"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and len(list(out.glob("*.cmc"))) >= 2):
        time.sleep(0.02)
    masks = _signal_masks(proc.pid)  # for the failure message: a blocked or ignored signal would explain it
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    done = sorted(out.glob("*.cmc"))
    assert proc.returncode != 0, (len(done), masks, _signal_masks(os.getpid()), err.decode()[-300:])
    assert 2 <= len(done) < 200, "the run was not interrupted midway"
    for f in done:  # every file under its final name is complete
        cmcodec.codec.validate(f.read_bytes())
    leftovers = [p.name for p in out.iterdir() if p.suffix != ".cmc" and p.name != ".cmcodec-run.jsonl"]
    if sig == signal.SIGKILL:  # nothing can clean up after SIGKILL: at most a hidden temp file remains
        assert all(n.startswith(".") and n.endswith(".tmp") for n in leftovers), leftovers
    else:
        assert leftovers == []


def test_two_process_sharding_with_torchrun_gloo(tmp_path: Path) -> None:
    # sharding: folder decode and rd-curve split across processes (gloo on CPU), results merged in one output
    pytest.importorskip("accelerate")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        shutil.copy(PARROTS if i % 2 else HOUSE, src / f"p{i}.png")
    r = run("encode", str(src), "-o", str(tmp_path / "cmc"), "--mode", "pixel", "--profile", "classic")
    assert r.returncode == 0, r.stderr
    # --standalone: torchrun's own rendezvous on a free port, so two suites at once do not clash
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              "-m", "cmcodec.cli"]
    r = subprocess.run([*launch, "decode", str(tmp_path / "cmc"), "-o", str(tmp_path / "png")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "png").glob("*.png")) == [f"p{i}.decoded.png" for i in range(5)]
    # each process recorded its outputs; the next run folds the records together and reuses every output
    r = run("decode", str(tmp_path / "cmc"), "-o", str(tmp_path / "png"))
    assert r.returncode == 0 and "0 written, 0 redone" in r.stderr and "5 skipped" in r.stderr, r.stderr
    assert sorted(p.name for p in (tmp_path / "png").glob(".cmcodec-run*")) == [".cmcodec-run.jsonl"]
    r = subprocess.run([*launch, "rd-curve", str(src), "-o", str(tmp_path / "rd"), "--codecs", "jpeg,av1",
                        "--scales", "1", "--profiles", "none", "--metrics", "psnr", "--targets", "0.5,1,2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (tmp_path / "rd" / "points.jsonl").read_text().splitlines()]
    assert {(x["image"], x["curve"]) for x in rows} == {(f"p{i}.png", c) for i in range(5) for c in ("jpeg", "av1")}
    assert not list((tmp_path / "rd").glob("points.rank*.jsonl"))
    assert json.loads((tmp_path / "rd" / "results.json").read_text())["curves"]


def test_shard_takes_every_world_size_th_item(monkeypatch: pytest.MonkeyPatch) -> None:
    from cmcodec import distributed

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.shard([1, 2, 3]) == [1, 2, 3] and distributed.is_main() and distributed.tag() == ""
    assert distributed.device(None) is None and distributed.device("cpu") == "cpu"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):  # as a launcher sets them
        monkeypatch.setenv(name, value)
    assert distributed.shard([1, 2, 3, 4, 5]) == [2, 4] and not distributed.is_main()
    assert distributed.tag() == "[rank 1/2] "


# ---- one vocabulary ------------------------------------------------------------------------------------------


def _commands():
    from cmcodec.cli import main

    return sorted(main.commands.items())


def test_every_option_of_every_command_has_help() -> None:
    missing = [f"{name} {p.opts[0]}" for name, cmd in _commands() for p in cmd.params
               if isinstance(p, __import__("click").Option) and not (p.help or "").strip()]
    assert missing == []


def test_lists_and_model_folders_are_spelled_one_way() -> None:
    import click

    from cmcodec.cli import ListOf, NamedDir

    for name, cmd in _commands():
        for p in cmd.params:
            if not isinstance(p, click.Option):
                continue
            if p.multiple:  # a repeatable option is a list or a set of model folders, nothing else
                assert isinstance(p.type, ListOf | NamedDir), f"{name} {p.opts[0]}"
            if p.opts[0].endswith("-path"):  # every model location is [NAME=]DIR
                assert isinstance(p.type, NamedDir) and p.multiple, f"{name} {p.opts[0]}"
            if p.opts[0] in ("--profile", "--profiles", "--codecs", "--modes", "--metrics", "--fr", "--nr", "--i2t",
                             "--ref-codec", "--scales"):  # names from registries are choices
                t = p.type.item if isinstance(p.type, ListOf) else p.type
                assert isinstance(t, click.Choice), f"{name} {p.opts[0]}"


def test_list_and_folder_helpers(tmp_path: Path) -> None:
    import click
    from click.testing import CliRunner

    from cmcodec.cli import CODEC, PROFILE, dirs_option, list_option

    @click.command()
    @list_option("--codecs", item=CODEC, default=["jpeg"], help="x")
    @dirs_option("--model-path", "paths", names=PROFILE, help="x")
    def cmd(codecs: list[str], paths: dict[str, str]) -> None:
        click.echo(json.dumps([codecs, paths]))

    def out(*a: str) -> list:
        r = CliRunner().invoke(cmd, list(a))
        assert r.exit_code == 0, r.output
        return json.loads(r.output)

    d = str(tmp_path)
    assert out() == [["jpeg"], {}]
    assert out("--codecs", "av1,webp", "--codecs", "jpeg") == out("--codecs", "av1", "--codecs", "webp,jpeg")
    assert out("--codecs", "none")[0] == []
    assert out("--model-path", d)[1] == {"*": d}
    assert out("--model-path", f"sd15={d}", "--model-path", d)[1] == {"sd15": d, "*": d}
    for bad, why in ((["--codecs", "jpeg,,av1"], "empty item"), (["--codecs", "gif"], "unknown codec 'gif'"),
                     (["--model-path", f"nope={d}"], "unknown profile 'nope'"),
                     (["--model-path", str(tmp_path / "absent")], "not an existing folder"),
                     (["--model-path", f"sd15={d}", "--model-path", f"sd15={tmp_path.parent}"], "given twice")):
        r = CliRunner().invoke(cmd, bad)
        assert r.exit_code == 2 and why in r.output, (bad, r.output)


def test_exit_codes_in_help_come_from_the_error_classes() -> None:
    from cmcodec.core import errors

    codes = {c.exit_code for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.CmcodecError)}
    assert {1, 2, 3, 8, 9, 10} <= codes
    for args in (["--help"], ["decode", "--help"], ["rd-curve", "--help"]):
        text = run(*args).stdout
        table = text[text.index("Exit codes:"):]
        shown = {int(line.split()[0]) for line in table.splitlines()[1:] if line.strip()}
        assert codes | {0, 130, 143} == shown, args
        assert "(OutputExistsError)" in table and "(ConfigError)" in table


def test_python_dash_m_cmcodec_runs_the_cli() -> None:
    r = subprocess.run([sys.executable, "-m", "cmcodec", "info", str(GOLDEN / "text_wlm1.cmc"), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert [d["mode"] for d in json.loads(r.stdout)] == ["text"]
    r = subprocess.run([sys.executable, "-m", "cmcodec", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("cmcodec, version ")


def test_info_json_is_always_a_list(tmp_path: Path) -> None:
    one = json.loads(run("info", str(GOLDEN / "text_wlm1.cmc"), "--json").stdout)
    two = json.loads(run("info", str(GOLDEN / "text_wlm1.cmc"), str(GOLDEN / "pixel_classic.cmc"), "--json").stdout)
    assert isinstance(one, list) and len(one) == 1 and [d["mode"] for d in two] == ["text", "pixel"]
    r = run("info", str(PARROTS), str(GOLDEN / "text_wlm1.cmc"), "--json")  # a bad file is in the list too
    bad, good = json.loads(r.stdout)
    assert r.returncode == 3 and good["mode"] == "text" and good["error"] is None
    assert bad["file"] == str(PARROTS) and "not a .cmc file" in bad["error"] and bad["mode"] is None
    assert list(bad) == list(good)


IMAGES = PARROTS.parent


@pytest.mark.parametrize(("args", "says"), [
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--bpp-range", "a:b"], "expected LO:HI"),
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--bpp-range", "0.2:0.1"], "expected LO:HI"),
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--codecs", "none", "--profiles", "none"], "nothing to measure"),
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--codecs", "jpeg", "--profiles", "none", "--metrics", "psnr",
      "--targets", "1", "--anchor", "av2"], "unknown --anchor 'av2'"),
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--codecs", "jpeg2"], "unknown codec 'jpeg2'"),
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--scales", "1/3"], "unknown scale '1/3'"),
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--points", "0"], "--points"),
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--targets", "0,1"], "--targets"),
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--jobs", "0"], "--jobs"),
    (["rd-curve", str(IMAGES), "-o", "{tmp}/r", "--metrics", "psnr2"], "unknown pyiqa metric 'psnr2'"),
    (["encode", str(PARROTS), "-o", "{tmp}/x.cmc", "--profile", "sd-turbo2"], "unknown profile 'sd-turbo2'"),
    (["encode", str(PARROTS), "-o", "{tmp}/x.cmc", "--bpp", "0"], "--bpp"),
    (["encode", str(PARROTS), "-o", "{tmp}/x.cmc", "--max-bytes", "0"], "--max-bytes"),
    (["encode", str(PARROTS), "-o", "{tmp}/x.cmc", "--seed", "-1"], "--seed"),
    (["encode", str(PARROTS), "-o", "{tmp}/x.cmc", "--words", "0"], "--words"),
    (["encode", str(PARROTS), "-o", "{tmp}/x.cmc", "--i2t", "no such captioner"], "unknown captioner"),
    (["encode", str(PARROTS), "-o", "{tmp}/x.cmc", "--ref-codec", "jpeg"], "unknown image-reference codec"),
    (["encode", str(PARROTS), "-o", "{tmp}/x.cmc", "--i2t-path", "{tmp}/absent"], "not an existing folder"),
    (["decode", str(GOLDEN / "text_wlm1.cmc"), "--model-path", "sd16={tmp}"], "unknown profile 'sd16'"),
    (["evaluate", str(IMAGES), "-o", "{tmp}/e", "--fr", "piqe"], "unknown full-reference pyiqa metric 'piqe'"),
    (["evaluate", str(IMAGES), "-o", "{tmp}/e", "--modes", "txt"], "'txt' is not one of"),
    (["evaluate", str(IMAGES), "-o", "{tmp}/e", "--modes", "none"], "--modes none"),
    (["encode", "--no-such-option", str(PARROTS)], "No such option"),
    (["no-such-command"], "No such command"),
    (["decode", "{tmp}/absent.cmc"], "does not exist"),
])
def test_misuse_is_a_one_line_error(tmp_path: Path, args: list[str], says: str) -> None:
    from click.testing import CliRunner

    from cmcodec.cli import main

    # in this process (the group's own main, as the console script runs it): pyiqa is imported once, not per case
    r = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.exit_code == 2, (r.exit_code, r.stderr, r.exception)
    assert r.stderr.startswith("cmcodec: error: ") and r.stderr.strip().count("\n") == 0, r.stderr
    assert says in r.stderr and "Traceback" not in r.stderr
    assert not list(tmp_path.iterdir())  # nothing was written


# ---- safe outputs, resumed folder runs, --json ---------------------------------------------------------------


def test_decode_default_output_is_never_the_encoders_input(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    shutil.copy(PARROTS, photo)
    assert run("encode", str(photo), "--mode", "pixel", "--profile", "classic").returncode == 0
    r = run("decode", str(tmp_path / "photo.cmc"))  # the plain round trip, no -o
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "photo.decoded.png").is_file() and photo.read_bytes() == PARROTS.read_bytes()
    for force in ((), ("--force",)):  # onto the file it decodes from: refused, --force or not
        r = run("decode", str(tmp_path / "photo.cmc"), "-o", str(tmp_path / "photo.cmc"), *force)
        assert r.returncode == 10 and "its own input" in r.stderr and r.stderr.count("\n") == 1


def test_an_input_of_the_run_is_never_an_output(tmp_path: Path) -> None:
    from cmcodec.core.errors import OutputExistsError
    from cmcodec.runs import no_input_overwritten as _no_input_overwritten

    a, b = tmp_path / "a.cmc", tmp_path / "b.cmc"
    _no_input_overwritten([(a, tmp_path / "a.png"), (b, tmp_path / "b.png")])
    with pytest.raises(OutputExistsError, match=r"would overwrite .*a.cmc, an input of this run"):
        _no_input_overwritten([(a, tmp_path / "a.png"), (b, tmp_path / "sub/../a.cmc")])
    with pytest.raises(OutputExistsError, match="its own input"):
        _no_input_overwritten([(a, a)])


def _folder(tmp_path: Path, n: int) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(n):
        shutil.copy(PARROTS if i % 2 else HOUSE, src / f"p{i}.png")
    return src


def test_folder_encode_and_decode_resume(tmp_path: Path) -> None:
    # the rerun cases one by one are in test_resume.py; here the whole round trip as a user runs it
    src = _folder(tmp_path, 4)
    out = tmp_path / "cmc"
    args = ["encode", str(src), "-o", str(out), "--mode", "pixel", "--profile", "classic"]
    r = run(*args, "--json")
    assert r.returncode == 0, r.stderr
    first = {d["input"]: d for d in json.loads(r.stdout)}
    # an interrupted run: one output missing, one damaged (atomic writes never leave one, a disk might)
    (out / "p1.cmc").unlink()
    good = (out / "p2.cmc").read_bytes()
    (out / "p2.cmc").write_bytes(good[:-2])
    stamp = (out / "p0.cmc").stat().st_mtime_ns
    r = run(*args, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [d["status"] for d in rows] == ["skipped", "written", "redone", "skipped"]
    assert "1 written, 1 redone (options or output changed), 2 skipped" in r.stderr
    assert (out / "p0.cmc").stat().st_mtime_ns == stamp and (out / "p2.cmc").read_bytes() == good
    assert all(d["bytes"] == first[d["input"]]["bytes"] for d in rows)
    r = run(*args, "--force", "--json")
    assert [d["status"] for d in json.loads(r.stdout)] == ["written"] * 4
    # another run's settings are not silently taken as done: redone, saying why
    r = run("encode", str(src), "-o", str(out), "--mode", "image", "--profile", "classic", "--json")
    assert r.returncode == 0 and {d["reason"] for d in json.loads(r.stdout)} == {"--mode pixel -> image"}

    dec = tmp_path / "png"
    r = run("decode", str(out), "-o", str(dec))
    assert r.returncode == 0 and "4 written" in r.stderr
    (dec / "p3.decoded.png").write_bytes((dec / "p3.decoded.png").read_bytes()[:200])  # truncated
    (dec / "p0.decoded.png").unlink()
    r = run("decode", str(out), "-o", str(dec), "--json")
    assert r.returncode == 0, r.stderr
    got = [d["status"] for d in json.loads(r.stdout)]
    assert got == ["written", "skipped", "skipped", "redone"]
    from PIL import Image

    for i in range(4):
        with Image.open(dec / f"p{i}.decoded.png") as im:
            assert im.size == Image.open(src / f"p{i}.png").size


def test_json_summary_of_encode_and_decode(tmp_path: Path) -> None:
    r = run("encode", str(PARROTS), "-o", str(tmp_path / "p.cmc"), "--mode", "pixel", "--profile", "classic",
            "--json")
    assert r.returncode == 0, r.stderr
    [rec] = json.loads(r.stdout)
    from cmcodec.runs import JSON_FIELDS

    assert tuple(rec) == JSON_FIELDS
    h = cmcodec.read_header((tmp_path / "p.cmc").read_bytes())
    assert rec["bytes"] == (tmp_path / "p.cmc").stat().st_size and rec["bpp"] == h.bpp
    assert (rec["status"], rec["mode"], rec["profile"], rec["error"]) == ("written", "pixel", "classic", None)
    assert rec["seconds"] >= 0
    r = run("decode", str(tmp_path / "p.cmc"), "--json")
    assert r.returncode == 0, r.stderr
    [rec] = json.loads(r.stdout)
    assert rec["output"] == str(tmp_path / "p.decoded.png") and rec["bpp"] == h.bpp and rec["mode"] == "pixel"
    r = run("decode", str(tmp_path / "p.cmc"), "--json")  # exists: a single file is refused, as a record too
    assert r.returncode == 10
    [rec] = json.loads(r.stdout)
    assert rec["status"] == "failed" and "exists" in rec["error"]

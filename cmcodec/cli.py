"""The cmcodec command line. The only place that turns CmcodecError into messages and exit codes."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import __version__
from .core import ids
from .core.bitstream import MAX_SEED
from .core.errors import CmcodecError, ConfigError, DiskFullError, ModelError
from .core.limits import limits_from_env
from .media.fileio import list_files
from .models.loading import COMPILE_MODES
from .runs import JSON_FIELDS, Item, Result, record

if TYPE_CHECKING:
    from .models.loading import Accel


# ---- one vocabulary for every command -------------------------------------------------------------------
# Lists: a list option is repeatable and each value may also be a comma list (`--codecs jpeg,av1` is
# `--codecs jpeg --codecs av1`); `none` alone means the empty list. Model folders: `NAME=DIR` for one
# name, a bare `DIR` for every name (key "*"), repeatable. Names from registries are click Choices built
# from the registry itself, resolved when first needed so that `--help` and `info` load nothing heavy.


class RegistryChoice(click.Choice):
    """A click Choice whose names come from a registry, read on first use (never a copied list).

    ``extra`` accepts values outside the registry (a hub id, a folder, ``api:MODEL``); ``metavar`` stands in
    for the list in usage lines where listing it would import a heavy library (pyiqa).
    """

    def __init__(self, names: Callable[[], Iterable[str]], what: str, extra: Callable[[str], bool] | None = None,
                 metavar: str | None = None, local: str | None = None) -> None:
        self._names, self.what, self._extra, self._metavar, self.local = names, what, extra, metavar, local
        self.case_sensitive = True
        self._cache: tuple[str, ...] | None = None

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._cache is None:
            self._cache = tuple(self._names())
        return self._cache

    @choices.setter
    def choices(self, value: Iterable[str]) -> None:
        self._cache = tuple(value)

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        return self._metavar or super().get_metavar(param, ctx)

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, str) and self._extra is not None and value not in self.choices and self._extra(value):
            return value
        if isinstance(value, str) and value in self.choices:
            return value
        if self.local and ctx is not None and value in (ctx.params.get(self.local) or {}):
            return value  # a name that the eager NAME=DIR option (self.local) gave a folder
        self.fail(f"unknown {self.what} {value!r}: expected one of {', '.join(self.choices)}"
                  + (" (or " + self._extra.__doc__ + ")" if self._extra is not None and self._extra.__doc__ else ""),
                  param, ctx)


class ListOf(click.ParamType):
    """Comma-separated values of an item type; with ``multiple=True`` and the ``_flat`` callback, repeatable."""

    def __init__(self, item: click.ParamType) -> None:
        self.item = item
        self.name = f"{item.name}[,...]"

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        inner = self.item.get_metavar(param, ctx) if isinstance(self.item, click.Choice) else self.item.name.upper()
        return f"{inner}[,...]"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> list:
        if isinstance(value, list):
            return value
        parts = [x.strip() for x in str(value).split(",")]
        if [x.lower() for x in parts] == ["none"]:
            return []
        if any(not x for x in parts):
            self.fail(f"expected a comma list of {self.item.name} values, found an empty item in {value!r}",
                      param, ctx)
        return [self.item.convert(x, param, ctx) for x in parts]


def _flat(ctx: click.Context, param: click.Parameter, value: tuple[list, ...]) -> list:
    """Callback of a repeatable ListOf option: one flat list in the given order, duplicates dropped."""
    out: list = []
    for part in value or ():
        for x in part if isinstance(part, list) else [part]:
            if x not in out:
                out.append(x)
    return out


def list_option(*decls: str, item: click.ParamType, help: str, default: Sequence[str] | None = None,
                all_by_default: str | None = None) -> Callable[[Callable], Callable]:
    """A list option as every command spells it (see the rule above). all_by_default: not given means None
    (the command takes every registered name), shown in --help as that text."""

    def flat(ctx: click.Context, param: click.Parameter, value: tuple[list, ...]) -> list | None:
        return None if all_by_default and not value else _flat(ctx, param, value)

    return click.option(*decls, type=ListOf(item), multiple=True, callback=flat,
                        default=list(default) if default is not None else None,
                        show_default=all_by_default or (",".join(default) if default else False),
                        help=help + " Comma list or repeated; 'none' for none.")


class NamedDir(click.ParamType):
    """``NAME=DIR`` (a local folder for one name) or ``DIR`` (for every name); the folder must exist."""

    name = "[NAME=]DIR"

    def __init__(self, names: RegistryChoice | None = None) -> None:
        self.names = names

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        text = str(value)
        name, sep, path = text.partition("=")
        if not sep or Path(text).is_dir():  # a folder whose own name holds '=' is still a bare DIR
            name, path = "*", text
        if not name or not path:
            self.fail(f"expected NAME=DIR or DIR, found {text!r}", param, ctx)
        if name != "*" and self.names is not None:
            name = self.names.convert(name, param, ctx)
        if not Path(path).is_dir():
            self.fail(f"{path!r} is not an existing folder (expected NAME=DIR or DIR)", param, ctx)
        return name, path


def _dirs(ctx: click.Context, param: click.Parameter, value: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """Callback of a model-folder option: {name: folder}, '*' for a bare DIR; a name given twice is refused."""
    out: dict[str, str] = {}
    for name, path in value or ():
        if name in out and out[name] != path:
            raise click.BadParameter(f"{'a bare DIR' if name == '*' else name!r} given twice ({out[name]}, {path})",
                                     ctx, param)
        out[name] = path
    return out


def dirs_option(*decls: str, names: RegistryChoice | None, help: str) -> Callable[[Callable], Callable]:
    """A model-folder option as every command spells it: repeatable NAME=DIR or DIR (see the rule above).

    names=None: any NAME, which then names a local model (eager, so a name option later may use it)."""
    return click.option(*decls, type=NamedDir(names), multiple=True, callback=_dirs, is_eager=names is None,
                        help=help + " NAME=DIR for one name, DIR for all; repeatable.")


def model_dir(dirs: dict[str, str], name: str | None) -> str | None:
    """The folder a dirs_option gives for name (its own entry, else the bare DIR, else None)."""
    return dirs.get(name or "", dirs.get("*"))


def _profile_names() -> Iterable[str]:
    """Built-in rows, then the user rows of $CMCODEC_PROFILES and --profiles-file (read as the option is)."""
    from .core.profiles import PROFILES_BY_NAME, user_rows

    try:
        users = [r.profile.name for r in user_rows()]
    except CmcodecError:  # a broken profiles file: --profiles-file (or the command) reports it
        users = []
    return [*PROFILES_BY_NAME, *users]


def _profiles_files(ctx: click.Context, param: click.Parameter, value: tuple[list, ...]) -> None:
    """--profiles-file: its user rows join $CMCODEC_PROFILES (so worker processes see them too)."""
    from .core.profiles import add_profiles_files

    try:
        add_profiles_files(_flat(ctx, param, value))
    except CmcodecError as e:
        _fail(e)
    PROFILE.choices = _profile_names()  # this run's rows (the variable may have changed since the last)


# before any --profile is read (eager), and for the worker processes it starts
profiles_file_option = click.option(
    "--profiles-file", type=ListOf(click.Path(exists=True, dir_okay=False, path_type=Path)), multiple=True,
    is_eager=True, expose_value=False, callback=_profiles_files,
    help="TOML or JSON files of user profiles (README, Bring your own model), added to $CMCODEC_PROFILES. "
         "Comma list or repeated.")


def _captioner_names() -> Iterable[str]:
    from .models.i2t import CAPTIONERS

    return CAPTIONERS


def _other_captioner(v: str) -> bool:
    """a hub id ORG/NAME, a local folder, or api:MODEL"""
    from .models.i2t import REFUSED  # refused by name: the model layer says why (exit 7), not a usage error

    return (v.startswith("api:") and len(v) > 4) or Path(v).is_dir() or v in REFUSED or (
        v.count("/") == 1 and " " not in v and not v.startswith("/"))


def _codec_names() -> Iterable[str]:
    from .core.refcodecs import CODECS

    return CODECS


def _ref_codec_names() -> Iterable[str]:
    from .core.refcodecs import REF_CODECS

    return REF_CODECS


def _metric_names(kind: str | None = None) -> Callable[[], Iterable[str]]:
    def names() -> Iterable[str]:
        try:
            from .bench import metrics

            return metrics.names(kind)
        except ImportError as e:  # read while parsing: _Group.main makes this one line
            raise ModelError(f"pyiqa is not installed ({e}): pip install 'cmcodec[rd]' (the metrics of rd-curve "
                             "and evaluate)") from None

    return names


def _scale_names() -> Iterable[str]:
    from .bench.baselines import SCALES

    return SCALES


PROFILE = RegistryChoice(_profile_names, "profile")
CAPTIONER = RegistryChoice(_captioner_names, "captioner", _other_captioner, local="i2t_paths")
CODEC = RegistryChoice(_codec_names, "codec")
REF_CODEC = RegistryChoice(_ref_codec_names, "image-reference codec")
METRIC = RegistryChoice(_metric_names(), "pyiqa metric", metavar="METRIC")
FR_METRIC = RegistryChoice(_metric_names("FR"), "full-reference pyiqa metric", metavar="FR_METRIC")
NR_METRIC = RegistryChoice(_metric_names("NR"), "no-reference pyiqa metric", metavar="NR_METRIC")
SCALE = RegistryChoice(_scale_names, "scale")
MODE = click.Choice(ids.MODES)
POSITIVE = click.FloatRange(min=0, min_open=True)


class BppRange(click.ParamType):
    """``LO:HI`` with 0 < LO < HI (bits per pixel)."""

    name = "LO:HI"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> tuple[float, float]:
        if isinstance(value, tuple):
            return value
        lo, sep, hi = str(value).partition(":")
        try:
            a, b = float(lo), float(hi)
        except ValueError:
            a = b = math.nan
        if not sep or not 0 < a < b < math.inf:
            self.fail(f"expected LO:HI with 0 < LO < HI bits per pixel, found {value!r}", param, ctx)
        return a, b


def _exit_codes() -> list[tuple[int, str]]:
    """(exit code, what it means) from the error classes of core.errors, then the signal codes."""
    from .core import errors

    by_code: dict[int, list[str]] = {}
    for obj in vars(errors).values():
        if isinstance(obj, type) and issubclass(obj, CmcodecError):
            first = (obj.__doc__ or obj.__name__).strip().splitlines()[0].rstrip(".")
            if obj is CmcodecError:
                first = "a failure of some files of a folder run, or another cmcodec error"
            names = by_code.setdefault(obj.exit_code, [])
            if obj.__base__ is CmcodecError or obj is CmcodecError or not names:
                names.append(f"{first} ({obj.__name__})")
    rows = [(0, "success")] + [(c, "; ".join(v)) for c, v in sorted(by_code.items())]
    if 2 in by_code:
        rows = [(c, v + "; or a usage error (unknown option, bad value)" if c == 2 else v) for c, v in rows]
    return [*rows, (130, "interrupted (Ctrl-C)"), (143, "terminated (SIGTERM)")]


def _exit_codes_epilog() -> str:
    """The exit-code table of --help (click keeps lines of a \b paragraph as they are)."""
    return "\b\nExit codes:\n" + "\n".join(f"  {c:>3}  {v}" for c, v in _exit_codes())


class _Command(click.Command):
    """Every command: the exit-code table under its help."""

    def __init__(self, *a: object, **kw: object) -> None:
        kw.setdefault("epilog", _exit_codes_epilog())
        super().__init__(*a, **kw)  # type: ignore[arg-type]


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """The cmcodec group: misuse is one line on stderr and exit 2 (click's usage text is in --help)."""

    command_class = _Command

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, **kw: object) -> None:
        _printable_streams()
        try:
            rv = super().main(args, prog_name or "cmcodec", standalone_mode=False, **kw)  # type: ignore[arg-type]
        except _NO_ARGS_IS_HELP as e:  # `cmcodec` alone (click >= 8.2): the help, as click prints it
            click.echo(e.ctx.get_help() if e.ctx is not None else "")
            sys.exit(0)
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx is not None else "cmcodec"
            click.echo(f"cmcodec: error: {e.format_message()} (see {where} --help)".replace("\n", " "), err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"cmcodec: error: {e.format_message()}".replace("\n", " "), err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("cmcodec: interrupted", err=True)
            sys.exit(130)
        except CmcodecError as e:  # raised while parsing (a registry read for an option's choices)
            _fail(e)
        except OSError as e:  # a file-system failure no layer below named: still one line (OutputError's code)
            from .core.errors import OutputError

            _fail(OutputError(f"{e.filename or 'file system'}: {e.strerror or e}"))
        if isinstance(rv, int) and rv:
            sys.exit(rv)
        sys.exit(0)


def _printable_streams() -> None:
    """Whatever the locale, everything printed is encodable: a character the terminal's encoding lacks (a
    caption's emoji under Latin-1, a non-UTF-8 file name's escaped bytes) is printed as a backslash escape,
    never a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):  # a closed or detached stream: nothing will be printed to it
                pass


def _json(obj: object) -> str:
    """JSON for stdout: non-ASCII characters as themselves where stdout is UTF-8, else as \\u escapes, so
    that the text stays valid JSON in any locale (a backslash escape of the stream would not be)."""
    enc = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    return json.dumps(obj, indent=2, ensure_ascii=enc != "utf8")


def _default_captioner() -> str:
    from .models.i2t import DEFAULT_CAPTIONER

    return DEFAULT_CAPTIONER


def _fail(e: CmcodecError) -> None:
    """Print a one-line error and exit with the error's code."""
    click.echo(f"cmcodec: error: {e}", err=True)
    sys.exit(e.exit_code)


def _quiet_libraries() -> None:
    """Keep model-loading progress bars and warnings of the ML libraries off the terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("bitsandbytes", "kernels"):  # kernels: a notice per load that offline mode skips its hub check
        logging.getLogger(name).setLevel(logging.ERROR)


def _offline(flag: bool) -> None:
    """--offline: never contact the Hugging Face hub, and never send an image to an api: captioner."""
    if flag:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ["CMCODEC_OFFLINE"] = "1"


API_BASE_HELP = ("Server of an api:MODEL captioner, speaking OpenAI's chat completions (e.g. http://127.0.0.1:8000/v1 "
                 "for vLLM); default $CMCODEC_API_BASE, else https://api.openai.com/v1. Each image is sent to it. "
                 "The key is read from $CMCODEC_API_KEY, never from the command line.")


def _api_base(base: str | None, i2ts: tuple[str | None, ...]) -> None:
    """--api-base: for api:MODEL captioners only; handed to them through $CMCODEC_API_BASE."""
    if base is None:
        return
    from .models import api_i2t

    if not any(api_i2t.is_api(m) for m in i2ts):
        raise ConfigError(f"--api-base {api_i2t.redact_url(base)} applies to an api:MODEL captioner; found --i2t "
                          f"{', '.join(str(m) for m in i2ts if m) or '(default)'}")
    api_i2t.ApiConfig(base=base)  # a malformed URL fails here, before any work
    os.environ[api_i2t.ENV_BASE] = base



def _stdout_alone(output: str | None, as_json: bool) -> None:
    """-o - (the file to stdout) leaves no room there for --json, and binary bytes do not belong on a terminal."""
    if output != "-":
        return
    if as_json:
        raise ConfigError("-o - writes the file to stdout, where --json would print too: give one of them")
    if sys.stdout.isatty():
        raise ConfigError("-o - would write binary data to the terminal: redirect stdout to a file or a pipe")


def _report(items: list[Item], results: Callable[[list[Item]], Iterator[Result]], what: str,
            as_json: bool = False) -> None:
    """Show a progress bar over this process's share of items while results(share) yields (index, outcome or
    error), in any order; go on past failures; count written, redone, skipped and failed files (folder runs);
    --json prints one record per file; list failures; exit non-zero if any."""
    from tqdm import tqdm

    from .distributed import shard, tag

    single = len(items) == 1
    items = shard(items)  # under accelerate launch / torchrun: this process's share
    failed: list[tuple[Path, str]] = []
    records: list[dict | None] = [None] * len(items)
    counts = dict.fromkeys(("written", "redone", "skipped"), 0)

    def dump() -> None:
        if as_json:
            click.echo(_json([r for r in records if r is not None]))

    with tqdm(total=len(items), desc=tag() + what, unit="file", disable=len(items) < 2, file=sys.stderr) as bar:
        for i, res in results(items):
            bar.update(1)
            if isinstance(res, CmcodecError):
                records[i] = record(*items[i], "failed", error=str(res))
                if single:
                    dump()
                    _fail(res)
                if isinstance(res, DiskFullError):  # every later file would fail too: stop, keeping what is done
                    bar.close()
                    dump()
                    done = sum(counts.values())
                    click.echo(f"cmcodec: error: {res}; the run stopped after {done} of {len(items)} files (kept)",
                               err=True)
                    sys.exit(res.exit_code)
                failed.append((items[i][0], str(res)))
                bar.write(f"cmcodec: error: {res}", file=sys.stderr)
                continue
            records[i] = res.record
            counts[res.status] += 1
            if as_json or res.status == "skipped":
                continue
            if len(items) < 2:  # beside a file written to stdout (-o -), the line goes to stderr
                click.echo(res.line, err=str(items[i][1]) == "-")
            else:
                bar.write(res.line)
    dump()
    if not single:
        click.echo(f"cmcodec: {tag()}{what}: {counts['written']} written, {counts['redone']} redone (options or output "
                   f"changed), {counts['skipped']} skipped (made with these options), {len(failed)} failed",
                   err=True)
    if failed:
        click.echo(f"cmcodec: {tag()}{len(failed)} of {len(items)} files failed:", err=True)
        for src, msg in failed:
            click.echo(f"  {src}: {msg}", err=True)
        sys.exit(1)


def _accel(compile_mode: str | None, channels_last: bool) -> Accel:
    """Runtime speed-ups from --compile / --channels-last."""
    from .models.loading import Accel

    return Accel(channels_last=channels_last, compile=None if compile_mode in (None, "none") else compile_mode)


def _speed_options(batch_help: str, compile_help: str) -> Callable[[Callable], Callable]:
    """--batch-size and --compile, with each command's own help."""

    def add(f: Callable) -> Callable:
        f = click.option("--compile", "compile_mode", type=click.Choice(["none", *COMPILE_MODES]), default="none",
                         show_default=True, help=compile_help)(f)
        return click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
                            help=batch_help)(f)

    return add


FORCE_HELP = ("Overwrite existing outputs (a folder run redoes every file). An input of the run is never "
              "overwritten.")
JSON_HELP = ("Print a JSON list, one object per file: " + ", ".join(JSON_FIELDS) + " (status: written, redone, "
             "skipped or failed; reason: why an output was redone; seconds: from the file's start, batched work "
             "shared, to its output written).")


def _noise_options(what: str) -> Callable[[Callable], Callable]:
    """--noise-steps and --noise-log2k (spec §10.5): the shape of the noise-mode files ``what`` writes."""

    def add(f: Callable) -> Callable:
        f = click.option("--noise-log2k", type=click.IntRange(1, 20),
                         help=f"Noise mode: codebook of 2^N atoms per step in {what} (default from the profile: "
                         "14).")(f)
        return click.option("--noise-steps", type=click.IntRange(2, 1000),
                            help=f"Noise mode: trajectory steps T written in {what} (default from the profile: "
                            "30).")(f)

    return add


def _noise_shape(steps: int | None, log2k: int | None) -> dict[str, int]:
    """The noise-mode encoder options given (EncodeOptions fields; a missing one is the profile's default)."""
    return {k: v for k, v in (("noise_steps", steps), ("noise_log2_k", log2k)) if v is not None}


def _dtype_option(help_text: str) -> Callable[[Callable], Callable]:
    """--dtype, one spelling for every command that runs a model."""
    return click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), help=help_text)


def _read_captions(path: Path) -> dict[str, str]:
    """Captions by image name from a CMC-Bench-style CSV (columns name,text)."""
    from .media.fileio import read_csv_pairs

    return read_csv_pairs(path, "name", "text")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_exit_codes_epilog())
@click.version_option(__version__, prog_name="cmcodec")
def main() -> None:
    """Cross-modality image compression: caption + tiny guidance, decoded by text-to-image diffusion."""
    import signal

    def _terminate(signum: int, frame: object) -> None:
        """SIGTERM unwinds like Ctrl-C, so atomic writes remove their temp files (nothing half-written)."""
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)


@main.command()
@click.argument("input", type=click.Path(exists=True, allow_dash=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="Output .cmc file, or a folder to put NAME.cmc in (an existing one, or a name ending in /); - "
              "for stdout (default NAME.cmc beside the image; a folder for folder input). INPUT - reads stdin.")
@click.option("--mode", type=click.Choice(["auto", *ids.MODES]), default="text", show_default=True,
              help="What the file carries: text (caption), pixel (caption + pixel map), image (reference "
              "picture), full (reference + caption), noise (caption + the diffusion model's coded sampling "
              "noise, any rate: runs the profile's model while encoding); auto picks by budget.")
@click.option("--bpp", type=POSITIVE, help="Budget in bits per pixel of the original image (whole file).")
@click.option("--max-bytes", type=click.IntRange(min=1), help="Budget in bytes (whole file); never exceeded.")
@click.option("--caption", help="Use this caption; no I2T model is loaded.")
@click.option("--caption-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Caption text file, or for folders a CSV with columns name,text.")
@click.option("--profile", type=PROFILE, default="sd-turbo", show_default=True,
              help="Decoder profile written in the file (see cmcodec profiles).")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True,
              help="Diffusion seed written in the file (the decoder's noise).")
@click.option("--i2t", type=CAPTIONER, help="Captioner: registered name, hub id ORG/NAME, local folder or api:MODEL "
              "for a chat-completions server (default blip-large; see cmcodec captioners).")
@dirs_option("--i2t-path", "i2t_paths", names=None,
             help="Local folder of a captioner's model (a NAME not registered names a local captioner).")
@click.option("--api-base", metavar="URL", help=API_BASE_HELP)
@click.option("--words", type=click.IntRange(min=1), help="Caption word budget (default from the profile: 20).")
@click.option("--ref-codec", type=REF_CODEC, help="Image-reference codec (default: the best one installed).")
@dirs_option("--model-path", "model_paths", names=PROFILE,
             help="Noise mode: local folder of the profile's T2I model (the encoder runs its trajectory).")
@_noise_options("the file")
@click.option("--device", help="cuda, cuda:1, cpu, ... (default: cuda when present).")
@_dtype_option("Captioner precision (default: the captioner's own on CUDA, e.g. bfloat16 for Qwen2-VL; "
               "float32 on CPU).")
@_speed_options("Images captioned per I2T call (folder input).",
                "torch.compile the captioner's token decoder (BLIP-class; reduce-overhead adds CUDA graphs); the "
                "first captions pay about two minutes of compile time.")
@click.option("--offline", is_flag=True, help="Never contact the model hub.")
@click.option("-f", "--force", is_flag=True, help=FORCE_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@profiles_file_option
def encode(input: Path, output: str | None, mode: str, bpp: float | None, max_bytes: int | None,
           caption: str | None, caption_file: Path | None, profile: str, seed: int, i2t: str | None,
           i2t_paths: dict[str, str], api_base: str | None, words: int | None, ref_codec: str | None,
           model_paths: dict[str, str], noise_steps: int | None, noise_log2k: int | None, device: str | None,
           dtype: str | None, batch_size: int, compile_mode: str, offline: bool, force: bool,
           as_json: bool) -> None:
    """Encode an image (or a folder of images) to .cmc.

    A folder run resumes: an output is reused only when its header and the folder's run record
    (.cmcodec-run.jsonl) show it was made from this image with these options (mode, profile, budget, seed,
    words, caption, captioner and revision, reference codec, coders); otherwise it is redone, with the reason.
    --force redoes all. Two images of one name (a.png, a.jpg) are refused before any work."""
    _offline(offline)
    _quiet_libraries()
    from . import codec, runs
    from .core.profiles import get_profile
    from .distributed import device as dist_device

    try:
        if caption is not None and caption_file is not None:
            raise ConfigError("give --caption or --caption-file, not both")
        if bpp is not None and max_bytes is not None:
            raise ConfigError(f"give --bpp or --max-bytes, not both (found --bpp {bpp} and --max-bytes {max_bytes})")
        _stdout_alone(output, as_json)
        _api_base(api_base, (i2t,))
        items = runs.encode_items(input, output)
        folder = not runs.is_stream(input) and input.is_dir()
        captions: dict[str, str] | None = None
        if caption_file is not None and folder:
            captions = _read_captions(caption_file)
        elif caption_file is not None:
            caption = caption_file.read_text(encoding="utf-8-sig").strip()
        i2t_model = model_dir(i2t_paths, i2t or _default_captioner()) or i2t
        enc_opts = codec.EncodeOptions(i2t=i2t_model, device=dist_device(device), dtype=dtype,
                                       accel=_accel(compile_mode, False),
                                       caption_words=words or get_profile(profile).encoder.caption_words,
                                       ref_codec=ref_codec, limits=limits_from_env(),
                                       model_path=model_dir(model_paths, profile),
                                       noise_steps=noise_steps, noise_log2_k=noise_log2k)
        run = runs.EncodeRun(mode=mode, profile=profile, seed=seed, bpp=bpp, max_bytes=max_bytes, caption=caption,
                             captions=captions, caption_file=caption_file, options=enc_opts, batch_size=batch_size,
                             force=force, folder=folder, output_dir=items[0][1].parent if folder else None)
    except CmcodecError as e:
        _fail(e)
    _report(items, run.results, "encode", as_json)


@main.command()
@click.argument("input", type=click.Path(exists=True, allow_dash=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="Output image, or a folder to put NAME.decoded.png in (an existing one, or a name ending in /); "
              "- for stdout (PNG). Default NAME.decoded.png beside NAME.cmc; a folder for folder input, files "
              "NAME.decoded.png. INPUT - reads stdin.")
@click.option("--device", help="cuda, cuda:1, cpu, ... (default: cuda when present).")
@_dtype_option("Model precision (default: float16 on CUDA, float32 on CPU).")
@dirs_option("--model-path", "model_paths", names=PROFILE,
             help="Local folder of a profile's T2I model (each file names its profile).")
@dirs_option("--vae-path", "vae_paths", names=PROFILE, help="Local folder of a *-taesd profile's tiny autoencoder.")
@_speed_options("Files of one profile, mode and size decoded per pipeline call (folder input).",
                "torch.compile the UNet, autoencoder and text encoder (reduce-overhead adds CUDA graphs); the first "
                "batch of each shape pays about a minute of compile time.")
@click.option("--channels-last", is_flag=True, help="channels_last memory format for the convolutions.")
@click.option("--steps-available", type=click.IntRange(min=0),
              help="Noise-mode files: decode with only the first K coded steps, as a receiver holding only a prefix "
              "of the noise section would (spec §10.6).")
@click.option("--offline", is_flag=True, help="Never contact the model hub.")
@click.option("-f", "--force", is_flag=True, help=FORCE_HELP)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@profiles_file_option
def decode(input: Path, output: str | None, device: str | None, dtype: str | None, model_paths: dict[str, str],
           vae_paths: dict[str, str], batch_size: int, compile_mode: str, channels_last: bool,
           steps_available: int | None, offline: bool, force: bool, as_json: bool) -> None:
    """Decode a .cmc file (or a folder of them) to an image.

    A file decodes to NAME.decoded.png (beside it, or in the -o folder of a folder run): never the encoder's
    input NAME.png. A folder run resumes: an output is reused only when the folder's run record
    (.cmcodec-run.jsonl) shows it was decoded from this file with this model, precision and device kind;
    otherwise it is redone, with the reason. --force redoes all. No output may be an input of the run or an
    image the run records list as encoded, --force or not."""
    _offline(offline)
    _quiet_libraries()
    from . import codec, runs
    from .distributed import device as dist_device

    try:
        _stdout_alone(output, as_json)
        items = runs.decode_items(input, output)
        opts = codec.DecodeOptions(device=dist_device(device), dtype=dtype, model_path=model_paths or None,
                                   vae_path=vae_paths or None, accel=_accel(compile_mode, channels_last),
                                   limits=limits_from_env(), steps_available=steps_available)
        folder = not runs.is_stream(input) and input.is_dir()
        run = runs.DecodeRun(options=opts, batch_size=batch_size, force=force, folder=folder,
                             output_dir=items[0][1].parent if folder else None)
    except CmcodecError as e:
        _fail(e)
    _report(items, run.results, "decode", as_json)


def _info_dict(path: Path, verify: bool = False) -> dict:
    """Header fields, sections and caption of a file, without loading any model (verify: decode every payload)."""
    from .core import textcode
    from .core.bitstream import read_header
    from .media.fileio import read_input

    limits = limits_from_env()
    if str(path) == "-":
        from .runs import read_stdin

        data = read_stdin(limits.max_file_bytes)
    else:
        data = read_input(path, limits.max_file_bytes)
    if verify:
        from .codec import validate

        validate(data, limits)
    h = read_header(data, limits)
    sections = []
    caption = None
    for s in h.sections:
        sections.append({"type": s.name, "coder": ids.SECTION_CODERS[s.name][s.coder_id],
                         "coder_id": s.coder_id, "bytes": len(s.payload), "required": s.required})
        if s.name == "caption":
            caption = textcode.decode(s.payload, s.coder_id)
    return {"file": str(path), "version": h.version, "mode": h.mode, "width": h.width, "height": h.height,
            "profile": h.profile_name, "profile_id": h.profile_id, "seed": h.seed, "bytes": h.file_size,
            "bpp": h.bpp, "header_bytes": h.header_bytes, "overhead_bytes": h.overhead_bytes, "check": h.check,
            "sections": sections, "skipped_optional_sections": list(h.skipped), "caption": caption}


@main.command("rd-curve")
@click.argument("images", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Results folder (points.jsonl, points.csv, results.json, plots, bd_rate.md); reruns resume.")
@list_option("--codecs", item=CODEC, all_by_default="every registered codec",
             help="Conventional codecs (those not installed here are skipped with the reason).")
@list_option("--scales", item=SCALE, default=["1", "1/2", "1/4", "1/8"],
             help="Code at these fractions of each side, then upscale back.")
@list_option("--profiles", item=PROFILE, default=["classic"], help="cmcodec profiles.")
@list_option("--modes", item=MODE, default=["image", "pixel"], help="cmcodec modes for those profiles.")
@list_option("--metrics", "metric_names", item=METRIC, default=["psnr", "ssim", "ms_ssim", "lpips", "dists",
             "topiq_fr", "piqe", "niqe", "musiq", "clipiqa", "topiq_nr"],
             help="pyiqa metrics; those without weights are skipped with the reason.")
@click.option("--metric-weights", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of local metric weights (topiq-fr.pth, topiq-nr.pth, ...).")
@click.option("--bpp-range", type=BppRange(), default="0.0005:0.2", show_default=True,
              help="Target bpp range LO:HI (0 < LO < HI), --points values log-spaced in it.")
@click.option("--points", type=click.IntRange(min=1), default=10, show_default=True,
              help="Targets in the range, log-spaced.")
@list_option("--targets", item=POSITIVE, help="Explicit target bpp values (instead of the range).")
@click.option("--anchor", help="Anchor curve of the BD-rate table: a curve of this run (av1, av1@1/2, "
              "cmc:PROFILE:MODE; default: av1 when measured, else the first curve).")
@click.option("--captions", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Captions CSV (name,text) for the cmcodec modes that carry one.")
@dirs_option("--model-path", "model_paths", names=PROFILE, help="Local folder of a profile's T2I model.")
@_noise_options("the noise curves' files")
@_dtype_option("Model precision of the cmcodec curves (default: float16 on CUDA, float32 on CPU).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option("--offline", is_flag=True, is_eager=True, callback=lambda ctx, p, v: _offline(v) or v,
              help="Never contact the model hub; metrics whose weights are not on this machine are skipped at once.")
@click.option("--fast", is_flag=True, help="Conventional codecs at faster, weaker settings (said in the output "
              "and results.json); the default is each codec's strongest documented settings.")
@click.option("--report-image", help="Image (file name) whose crops report.html shows (default: the first).")
@list_option("--report-targets", item=POSITIVE, default=["0.002", "0.005", "0.02"],
             help="Target bpp values of report.html's crops.")
@click.option("--report-region", help="X,Y,W,H of the crops (default: the most detailed 160-px square).")
@profiles_file_option
@list_option("--reference-curves", "reference_curves", item=click.Path(exists=True, dir_okay=False, path_type=Path),
             help="Published curves to draw and compare (CompressAI JSON, or CSV name,bpp,METRIC...).")
@click.option("-f", "--force", is_flag=True,
              help="Recompute every point, even those stored points.jsonl has for these exact settings.")
def rd_curve(images: Path, output: Path, codecs: list[str] | None, scales: list[str], profiles: list[str],
             modes: list[str], metric_names: list[str], metric_weights: Path | None, bpp_range: tuple[float, float],
             points: int, targets: list[float], anchor: str | None, captions: Path | None, model_paths: dict[str, str],
             noise_steps: int | None, noise_log2k: int | None, dtype: str | None, jobs: int, offline: bool,
             fast: bool, report_image: str | None, report_targets: list[float], report_region: str | None,
             reference_curves: list[Path], force: bool) -> None:
    """Rate-distortion curves of conventional codecs and cmcodec modes, with BD-rates, plots and report.html.

    A rerun into the same folder reuses a stored point only when it was made from the same image bytes by the
    same codec row, effort (--fast), library version, scale and targets (for cmcodec curves: cmcodec's version,
    caption, model folder and precision; for noise curves also T and K); a score is reused only under the same
    metric, options and weights, and a metric new to stored points is computed on their files coded again.
    --force recomputes all."""
    _quiet_libraries()
    from tqdm import tqdm

    from .bench import rd
    from .bench import report as report_mod

    try:
        if codecs is None:
            codecs = list(_codec_names())
        if not (codecs and scales) and not (profiles and modes):
            raise ConfigError("nothing to measure: expected at least one codec and scale, or one profile and mode; "
                              f"found codecs {','.join(codecs) or 'none'}, scales {','.join(scales) or 'none'}, "
                              f"profiles {','.join(profiles) or 'none'}, modes {','.join(modes) or 'none'}")
        if not metric_names:
            raise ConfigError("--metrics none: expected at least one metric to draw curves of")
        if not report_targets:
            raise ConfigError("--report-targets none: expected at least one bpp value for report.html's crops")
        tg = sorted(targets) if targets else rd.targets_from_range(*bpp_range, points)
        plan = rd.Plan(files=list_files(images), codecs=codecs, scales=scales, profiles=profiles,
                       modes=modes, metrics=tuple(metric_names), targets=tg, anchor=anchor,
                       metric_weights=str(metric_weights) if metric_weights else None,
                       captions=_read_captions(captions) if captions else {}, model_paths=model_paths, jobs=jobs,
                       fast=fast, dtype=dtype, force=force, references=tuple(reference_curves),
                       noise=_noise_shape(noise_steps, noise_log2k))
        shown = report_mod.pick_image(plan.files, report_image)  # the report's options fail before the sweep
        crop_targets = sorted(report_targets)
        region = report_mod.parse_region(report_region) if report_region else None
        result = rd.run(plan, output, lambda desc, n: tqdm(total=n, desc=desc, unit="unit", file=sys.stderr),
                        lambda msg: click.echo(f"cmcodec: {msg}", err=True))
        if result is not None and shown is not None and shown.name in result["images_failed"]:
            shown = next(f for f in plan.files if f.name not in result["images_failed"])  # crops of a readable one
        page = None if result is None else report_mod.write_report(
            output, result, rd.shown_rows(output, result), image=shown, targets=crop_targets, region=region,
            weights_dir=plan.metric_weights, captions=plan.captions, model_paths=plan.model_paths)
    except CmcodecError as e:
        _fail(e)
    if result is None:  # not the main rank: rank 0 merged every process's points and wrote the results
        return
    fast_note = " (--fast: weaker anchors)" if result["fast"] else ""
    click.echo(f"{result['ran']} units computed, {result['topped_up']} topped up with new metrics, "
               f"{result['reused']} reused; {len(result['curves'])} curves -> {output}{fast_note}")
    if result["failed_units"]:
        click.echo(f"{len(result['failed_units'])} units failed (listed in results.json; a rerun retries them)")
    click.echo((output / "bd_rate.md").read_text())
    click.echo(f"report: {page}")
    # an image that could not be read was left out of every curve (the others went on): listed, exit code 1
    if result["images_failed"]:
        click.echo(f"cmcodec: {len(result['images_failed'])} image(s) could not be read and were left out of "
                   "every curve:", err=True)
        for name, why in sorted(result["images_failed"].items()):
            click.echo(f"  {name}: {why}", err=True)
        sys.exit(1)


@main.command()
@click.argument("gt", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Evaluation folder (files, caches, tables); reruns resume.")
@list_option("--i2t", "i2ts", item=CAPTIONER, default=["blip-large"],
             help="Captioners: registered names, hub ids ORG/NAME, local folders, api:MODEL, or a NAME given by "
             "--i2t-path.")
@dirs_option("--i2t-path", "i2t_paths", names=None,
             help="Local folder of a captioner's model (a NAME not registered names a local captioner).")
@click.option("--api-base", metavar="URL", help=API_BASE_HELP)
@list_option("--profiles", "--profile", "profiles", item=PROFILE, default=["sd-turbo"], help="Decoder profiles.")
@dirs_option("--model-path", "model_paths", names=PROFILE, help="Local folder of a profile's T2I model.")
@_noise_options("the noise mode's files")
@list_option("--modes", item=MODE, default=list(ids.MODE_IDS),
             help="Modes to run and score (default CMC-Bench's four; noise on request, for rows that decode it).")
@click.option("--captions", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Captions CSV in CMC-Bench's format (,name,text): no captioner is run.")
@click.option("--results", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Score an existing result folder (one subfolder per mode) instead of running the codec.")
@click.option("--fr", type=FR_METRIC, default="topiq_fr", show_default=True,
              help="Full-reference pyiqa metric (consistency).")
@click.option("--nr", type=NR_METRIC, default="topiq_nr", show_default=True,
              help="No-reference pyiqa metric (perception).")
@click.option("--metric-weights", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder with local metric weights (topiq-fr.pth, topiq-nr.pth as CMC-Bench distributes).")
@click.option("--categories", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV name,category (default: file-name prefixes NSI_, SCI_, AIGI_).")
@click.option("--words", type=click.IntRange(min=1), default=20, show_default=True, help="Caption word budget.")
@click.option("--device", help="cuda, cpu, ... (default: cuda when present).")
@_dtype_option("Captioner and decoder precision (default: each model's own on CUDA, float32 on CPU).")
@profiles_file_option
@click.option("--offline", is_flag=True, is_eager=True, callback=lambda ctx, p, v: _offline(v) or v,
              help="Never contact the model hub; metrics whose weights are not on this machine are skipped at once.")
@click.option("-f", "--force", is_flag=True, help="Redo every file and score, even those stored for these settings.")
def evaluate(gt: Path, output: Path, i2ts: list[str], i2t_paths: dict[str, str], api_base: str | None,
             profiles: list[str], model_paths: dict[str, str], noise_steps: int | None, noise_log2k: int | None,
             modes: list[str], captions: Path | None, results: Path | None, fr: str, nr: str,
             metric_weights: Path | None, categories: Path | None, words: int, device: str | None, dtype: str | None,
             offline: bool, force: bool) -> None:
    """CMC-Bench-style scoring: every captioner x profile x mode, FR and NR metrics, Overall, leaderboard.

    A rerun into the same folder reuses a stored file or score only when what made it matches: the image's
    bytes, profile, mode, caption and cmcodec's version for a .cmc (in noise mode also the model folder, device,
    T and K); the model folder and precision besides for
    a decoded image; the metric, its options and weights for a score. --force redoes all."""
    _quiet_libraries()
    from tqdm import tqdm

    from .bench import evaluate as ev
    from .distributed import device as dist_device
    from .distributed import is_main

    try:
        _api_base(api_base, i2ts)
        device = dist_device(device)  # under accelerate launch / torchrun: this process's GPU
        mode_list = modes
        for what, v in (("--modes", modes), ("--profiles", profiles), ("--i2t", i2ts)):
            if not v:
                raise ConfigError(f"{what} none: expected at least one")
        gt_files = ev.image_files(gt)
        if not gt_files:
            raise ConfigError(f"{gt}: expected ground-truth images, found none")
        scorer = ev.Scorer.load(fr, nr, metric_weights, "cpu" if device is None else device)
        cats = None
        if categories:
            from .media.fileio import read_csv_pairs

            cats = {Path(k).stem: v for k, v in read_csv_pairs(categories, "name", "category").items()}
        output.mkdir(parents=True, exist_ok=True)

        def bar(desc: str, total: int):
            return tqdm(total=total, desc=desc, unit="img", file=sys.stderr)

        if results is not None:
            summaries = ev.score_results(gt_files, results, mode_list, scorer, output, cats, bar, force)
        else:
            summaries = ev.run_combinations(
                gt_files, output, mode_list, scorer, cats,
                i2ts if not captions else [captions.stem], profiles,
                ev.read_captions(captions) if captions else None, i2t_paths, model_paths, words, device, bar,
                lambda msg: click.echo(f"cmcodec: {msg}", err=True), dtype=dtype, force=force,
                noise=_noise_shape(noise_steps, noise_log2k))
        if is_main():  # every process holds the merged summaries; one writes them
            ev.write_reports(summaries, output, fr, nr)
    except CmcodecError as e:
        _fail(e)
    if is_main():
        click.echo((output / "leaderboard.md").read_text())
    # images that could not be read, or that a captioner failed on, were left out of its runs (the others
    # went on): listed, exit code 1
    lost = sorted({(stem, s["i2t"], why) for s in summaries.values()
                   for stem, why in (s.get("images_failed") or {}).items()})
    if lost:
        from .distributed import tag

        click.echo(f"cmcodec: {tag()}{len(lost)} image(s) failed (unreadable, or no caption); each was left out "
                   "of that captioner's runs:", err=True)
        for stem, i2t, why in lost:
            click.echo(f"  {stem} ({i2t}): {why}", err=True)
        sys.exit(1)



@main.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list with one object per file, also for a single file; a file that cannot be "
              "read is an object with its file name and error (the other fields null).")
@click.option("--verify", is_flag=True, help="Also decode the pixel map and reference picture (still no model).")
@profiles_file_option
def info(files: tuple[Path, ...], as_json: bool, verify: bool) -> None:
    """Show what a .cmc file holds (no model is loaded, torch is not imported)."""
    out, failed = [], 0
    for f in files:
        try:
            out.append({**_info_dict(f, verify), "error": None})
        except CmcodecError as e:
            click.echo(f"cmcodec: error: {f}: {e}", err=True)
            out.append({"file": str(f), "error": str(e)})
            failed = e.exit_code
    if as_json:  # always a list, one object per file, those that failed included, each with every field
        keys = next((list(d) for d in out if d["error"] is None), ["file", "error"])
        click.echo(_json([{k: d.get(k) for k in keys} for d in out]))
    else:
        for d in out:
            if d["error"] is not None:
                continue
            click.echo(f"{d['file']}: cmc v{d['version']}, {d['mode']} mode, {d['width']}x{d['height']}, "
                       f"{d['bytes']} bytes ({d['bpp']:.5f} bpp), profile {d['profile']} (id {d['profile_id']}), "
                       f"seed {d['seed']}, {d['check']}")
            for s in d["sections"]:
                click.echo(f"  {s['type']}: {s['bytes']} bytes, coder {s['coder']} (id {s['coder_id']})")
            click.echo(f"  overhead: {d['overhead_bytes']} bytes (header {d['header_bytes']})")
            if d["caption"] is not None:
                click.echo(f"  caption: {d['caption']!r}")
    if failed:
        sys.exit(failed)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with one object per profile.")
@profiles_file_option
def profiles(as_json: bool) -> None:
    """List the decoder profiles: built-in rows (stable ids written into files), then user rows (private ids,
    from --profiles-file, $CMCODEC_PROFILES and installed plugins)."""
    import dataclasses

    from .core.profiles import PROFILES, Pipeline, user_rows

    try:
        rows = [(p, None) for p in PROFILES] + [(r.profile, r) for r in user_rows()]
    except CmcodecError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps([{**dataclasses.asdict(p), **({"user": {
            "private_number": u.number, "definition_sha256": u.digest, "origin": u.origin}} if u else {})}
            for p, u in rows], indent=2))
        return
    from .models.loading import revision_for

    try:
        for p, u in rows:
            modes = ", ".join(f"{m}: {c.pipeline.value}" + (f" {c.steps} steps" if c.steps else "")
                              + (f" strength {c.strength}" if c.pipeline is Pipeline.IMG2IMG else "")
                              for m, c in p.modes.items())
            pin = ""
            # the model's own revision, then those of the repos it loads beside it (autoencoder, ControlNet)
            for key, repo, row_rev in ((p.name, p.model, p.revision), (p.name + ":vae", p.vae, p.vae_revision),
                                       (p.name + ":controlnet", p.controlnet, p.controlnet_revision)):
                if not repo:
                    continue
                what = "revision" if repo == p.model else f"{repo} revision"
                if Path(repo).is_dir():
                    pin += f"\n     {what}: a local folder" + (f" (labelled {row_rev})" if row_rev else "")
                    continue
                rev, how = revision_for(key, repo, row_rev)
                pin += (f"\n     {what} {rev} (pinned by {'the profile' if how == 'row' else how})" if rev else
                        f"\n     {what}: unpinned (follows the repo's main branch; pin it in $CMCODEC_REVISIONS)")
            ident = f"{p.id:>3}" if u is None else f"u{u.number:<2}"
            user = "" if u is None else (f"\n     user profile {u.number}, definition {u.short} "
                                         f"(sha256 {u.digest}), from {u.origin}")
            click.echo(f"{ident}  {p.name:<14} {p.model or '(no model)'}, {p.long_side} px\n"
                       f"     {p.description}{user}\n     {modes}{pin}\n     licence: {p.license}")
    except CmcodecError as e:
        _fail(e)


@main.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list, one object per captioner; refused ones say why in 'refused'.")
@click.option("--words", type=click.IntRange(min=1), default=20, show_default=True,
              help="Word budget the prompts are shown for.")
def captioners(as_json: bool, words: int) -> None:
    """List the captioners (I2T rows): hub id, size, dtype on a GPU, licence and prompt; refused ones with why."""
    from .models import i2t

    rows = [*i2t.CAPTIONERS.values(), i2t.API_CAPTIONER]
    out = [{"name": r.name, "model": r.model or None, "kind": r.kind, "size": r.size, "dtype": r.dtype,
            "license": r.license, "origin": r.origin, "prompt": i2t.prompt_for(r, words) or None,
            "default": r.name == i2t.DEFAULT_CAPTIONER} for r in rows]
    out = [{**d, "refused": None} for d in out]
    refused = [{**dict.fromkeys(out[0]), "name": n, "model": m, "refused": why} for n, (m, why) in i2t.REFUSED.items()]
    if as_json:  # a list like every --json: usable rows, then refused ones (their reason in "refused")
        click.echo(_json(out + refused))
        return
    for d in out:
        click.echo(f"{d['name']:<23} {d['model'] or '(OpenAI-compatible server, --api-base)'}, {d['size']}, "
                   f"{d['dtype']}, {d['license']}; {d['origin']}" + (" (default)" if d["default"] else ""))
        click.echo(f"  prompt: {d['prompt']}" if d["prompt"] else "  prompt: none (plain captioning head)")
    for d in refused:
        click.echo(f"{d['name']:<23} {d['model']}: refused, {d['refused']}")


if __name__ == "__main__":
    main()

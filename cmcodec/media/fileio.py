"""Atomic output files: temp file in the target folder, fsync, rename; inputs are never overwritten.

Outputs are safe against a hostile or unlucky file system: only regular files are read as inputs or replaced
as outputs (a FIFO, a device or a link to one is refused, never read without end or replaced by a file); a
writer holds a per-output lock, so of two processes writing one output exactly one wins and the other is
refused, and stale temp files of a killed run are removed by the next writer of that output; every
file-system failure is one OutputError (DiskFullError for a full disk) naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import ConfigError, DiskFullError, LimitError, OutputError, OutputExistsError
from ..core.limits import DEFAULT_LIMITS

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file"))


def describe(path: Path) -> str:
    """What is at path, for messages: "a regular file", "a FIFO", "a character device", "a folder", ...,
    "a broken link" or "nothing"."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a broken link" if os.path.islink(path) else "nothing"
    except OSError as e:
        return f"something unreadable ({e.strerror or e})"
    return next((what for test, what in _KINDS if test(mode)), "a special file")


def fs_error(e: OSError, path: Path, doing: str) -> OutputError:
    """A file-system failure as one line: DiskFullError for a full disk or quota, else OutputError."""
    why = e.strerror or str(e)
    cls = DiskFullError if e.errno in (errno.ENOSPC, errno.EDQUOT) else OutputError
    return cls(f"cannot {doing} {path}: {why}")


def list_files(folder: Path, suffixes: set[str] | None = None) -> list[Path]:
    """Files of a folder with the given suffixes (default: the image suffixes folder runs pick up), sorted by
    name: what every folder run (encode, decode, rd-curve, evaluate) takes as its input list."""
    from ..core.ids import IMAGE_SUFFIXES

    want = IMAGE_SUFFIXES if suffixes is None else suffixes
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in want)


def read_input(path: Path, max_bytes: int = DEFAULT_LIMITS.max_file_bytes) -> bytes:
    """The bytes of a regular input file, refusing one larger than max_bytes before reading it (spec §3 limits)
    and anything else (a FIFO, a device such as /dev/zero) before reading a byte: those never end."""
    try:
        # O_NONBLOCK: opening a FIFO without a writer must not block; fstat then judges what was opened
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: expected a regular file, found {describe(path)}")
        if st.st_size > max_bytes:
            raise LimitError(f"{path}: file of {st.st_size} bytes exceeds the limit of {max_bytes} bytes")
        try:
            data = f.read(max_bytes + 1)  # a file that grew since fstat is still bounded
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise LimitError(f"{path}: file of more than {max_bytes} bytes exceeds the limit")
    return data


def check_output(path: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an existing output without force, any output that is one of the inputs, and with or without
    force anything at the path but a regular file (or a link to one): a FIFO, a device, a folder or a link to
    /dev/stdout is never replaced by a file."""
    rp = path.resolve()
    for i in inputs:
        if i.exists() and rp == i.resolve():
            raise OutputExistsError(f"{path}: output would overwrite its own input")
    if not output_exists(path):
        return
    check_replaceable(path)
    if not force:
        raise OutputExistsError(f"{path} exists: expected a new path (use --force to overwrite)")


def output_exists(path: Path) -> bool:
    """Whether anything is at an output path (a link counts); a path the file system cannot even look up (a
    name too long, a parent that is a file) is an OutputError naming why."""
    try:
        os.lstat(path)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        raise fs_error(e, path, "write") from None


def check_replaceable(path: Path) -> None:
    """Refuse an existing output path that is not a regular file (or a link to one outside /dev and /proc): a
    FIFO, a device, a folder or a link to /dev/stdout is never opened for a resume check nor replaced."""
    what = describe(path)
    link = os.path.realpath(path) if os.path.islink(path) else ""
    if what == "a regular file" and not link.startswith(("/dev/", "/proc/")):
        return
    if link:
        what += f" (a link to {os.readlink(path)})"
    raise OutputExistsError(f"{path}: expected a regular file or a new path, found {what}; cmcodec never "
                            "replaces it (give another output path)")


def _umask() -> int:
    """The process umask (read by setting and restoring it: the only portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(path: Path) -> int:
    """Permissions of a new output as open() would give it (0o666 less the umask), or of the file it replaces:
    mkstemp's temp files are private (0o600), which an output must not stay."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _temp_stem(path: Path) -> str:
    """Hidden prefix of an output's temp and lock files: its name, or a hash of a name too long to extend."""
    name = path.name
    if len(os.fsencode(name)) > 200:
        name = "cmc-" + hashlib.sha256(os.fsencode(name)).hexdigest()[:16]
    return "." + name + "."


@contextlib.contextmanager
def _output_lock(path: Path) -> Iterator[None]:
    """Hold the output's lock (flock on a hidden lock file beside it) or refuse: another writer has it."""
    import fcntl

    lock = path.parent / (_temp_stem(path) + "lock.tmp")
    fd, held = None, False
    try:  # one try from the open on: a signal (SIGTERM unwinds as SystemExit) in any step still cleans up
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as e:
            raise fs_error(e, path, "write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{path}: another process is writing this output; expected it alone") from None
        held = True
        try:  # a lock file removed by its last holder after we opened it locks nothing: that writer finished
            if os.stat(lock).st_ino != os.fstat(fd).st_ino:
                raise FileNotFoundError
        except FileNotFoundError:
            held = False
            raise OutputError(f"{path}: another process wrote this output meanwhile; expected it alone") from None
        yield
    finally:
        if fd is not None:
            if held:
                with contextlib.suppress(OSError):
                    os.unlink(lock)  # while still held, so no writer can hold a lock on the removed file unnoticed
            os.close(fd)


def _link_new(tmp: str, path: Path) -> None:
    """Put tmp at path only if nothing is there: a hard link fails if the path exists (never a silent
    replace); on a file system without hard links, the check and a rename (the lock still excludes cmcodec's
    other writers)."""
    try:
        os.link(tmp, path)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "exists") from None
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: Path, force: bool = False, inputs: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on any error it is removed. The
    output's lock is held throughout; without force the temp file is linked into place, so an output that
    appeared meanwhile is never replaced. File-system failures are OutputError (DiskFullError)."""
    path = Path(path)
    check_output(path, force, inputs)
    for parent in (path.parent, *path.parent.parents):  # the nearest existing one must be a folder
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise OutputError(f"cannot write {path}: {parent} is {describe(parent)}, expected a folder")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise fs_error(e, path.parent, "create the folder") from None
    with _output_lock(path):
        # one temp name per output: the lock makes its writer the only one, so a temp file already there is
        # a killed run's, removed here (no listing of the folder per output, which made a folder of N outputs
        # cost N^2). The name is known before the file exists, so the finally below removes it whatever
        # interrupts (a SIGTERM unwinding as SystemExit right after the file is created included)
        tmp = str(path.parent / (_temp_stem(path) + "part.tmp"))
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
            except OSError as e:
                raise fs_error(e, path, "write") from None
            try:
                yield Path(tmp)
            except OSError as e:  # the caller's write into the temp file (a full disk, most often)
                raise fs_error(e, path, "write") from None
            try:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
                os.chmod(tmp, _final_mode(path))
                check_output(path, force, inputs)  # what appeared while this output was computed
                if force:
                    os.replace(tmp, path)
                else:
                    _link_new(tmp, path)
            except FileExistsError:
                raise OutputExistsError(f"{path} exists: expected a new path (use --force to overwrite)") from None
            except OSError as e:
                raise fs_error(e, path, "write") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_bytes(path: Path, data: bytes, force: bool = False, inputs: tuple[Path, ...] = ()) -> None:
    """Atomically write bytes."""
    with atomic_path(path, force, inputs) as tmp:
        tmp.write_bytes(data)


# How decoded pictures are written as PNG: zlib level 1, the RLE strategy and the Paeth filter alone (imagecodecs
# documents level 1 + RLE as OpenCV's fast settings; Paeth instead of their Sub filter keeps photographs as small
# as Sub without RLE). Measured on this project's 2-core CPU: the 24 Kodak photographs in 17.9 ms each, 16.62 MB
# together, against 21.2 ms and 16.59 MB for level 1 + Sub and 114 ms and 15.85 MB for libpng's defaults; a
# 768x512 noise picture (what random weights decode to) in 11 ms against 34 (level 1 + Sub); a smooth upscaled
# picture (what a generative decode at a smaller size, resized up, looks like) 30% smaller than level 1 + Sub.
# Pixels are the same either way (PNG is lossless); recompress the outputs where size matters.
PNG_IMAGECODECS = {"level": 1, "strategy": 3, "filter": 128}  # imagecodecs.png_encode (3: Z_RLE, 128: PAETH)
PNG_PILLOW = {"compress_level": 1}  # where imagecodecs is absent, or for modes it does not write


def save_image(img, path: Path, force: bool = False, inputs: tuple[Path, ...] = ()) -> None:
    """Atomically save a PIL image; the format follows the output suffix (PNG when unknown). PNG goes
    through imagecodecs' libpng where it is installed: its encoder runs without Python's GIL, so writer
    threads encode in parallel (Pillow's PNG encoder holds the GIL), with the same pixels either way."""
    from PIL import Image

    ext = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(ext, "PNG")
    with atomic_path(path, force, inputs) as tmp:
        if fmt == "PNG":
            tmp.write_bytes(png_bytes(img))
        else:
            img.save(tmp, format=fmt)


def pixels(img):
    """An 8-bit L / RGB / RGBA PIL image's pixels as a read-only HxW[xC] uint8 array. Through tobytes: 3-4
    times cheaper than np.asarray(img) (the array interface's copy), time in which the caller holds the GIL
    that a thread feeding a GPU needs."""
    import numpy as np

    w, h = img.size
    return np.frombuffer(img.tobytes(), np.uint8).reshape((h, w) if img.mode == "L" else (h, w, len(img.mode)))


def png_bytes(img) -> bytes:
    """A PIL image as PNG bytes with the fast settings above: imagecodecs for 8-bit L / RGB / RGBA, Pillow
    otherwise."""
    if img.mode in ("L", "RGB", "RGBA"):
        try:
            import imagecodecs
        except ImportError:
            pass
        else:
            return bytes(imagecodecs.png_encode(pixels(img), **PNG_IMAGECODECS))
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", **PNG_PILLOW)
    return buf.getvalue()


def read_csv_pairs(path: Path, key: str, value: str) -> dict[str, str]:
    """Two columns of a CSV file as a dict; a ConfigError names what was expected and found."""
    import csv

    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{path}: cannot read CSV ({e})") from None
    if not rows or key not in rows[0] or value not in rows[0]:
        found = ", ".join(c for c in (rows[0] if rows else {}) if c) or "no rows"
        raise ConfigError(f"{path}: expected a CSV with columns {key},{value}; found {found}")
    return {r[key]: r[value] for r in rows}


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file ([] when it does not exist; blank lines are skipped)."""
    import json

    path = Path(path)
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Append rows to a JSON-lines file in one write, flushed: a crash loses at most the rows in flight."""
    import json

    with Path(path).open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
        f.flush()


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as a CSV file, atomically: the columns in the order they first appear in the rows."""
    import csv
    import io

    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    write_bytes(path, buf.getvalue().encode(), force=True)

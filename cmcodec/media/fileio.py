"""Atomic output files: temp file in the target folder, fsync, rename; inputs are never overwritten."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..core.errors import ConfigError, LimitError, OutputExistsError


def list_files(folder: Path, suffixes: set[str] | None = None) -> list[Path]:
    """Files of a folder with the given suffixes (default: the image suffixes folder runs pick up), sorted by
    name: what every folder run (encode, decode, rd-curve, evaluate) takes as its input list."""
    from ..core.ids import IMAGE_SUFFIXES

    want = IMAGE_SUFFIXES if suffixes is None else suffixes
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in want)


def read_input(path: Path, max_bytes: int = 64 * 1024 * 1024) -> bytes:
    """The bytes of an input file, refusing one larger than max_bytes before reading it (spec §3 limits)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LimitError(f"{path}: file of {size} bytes exceeds the limit of {max_bytes} bytes")
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None


def check_output(path: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an existing output without force, and any output that is one of the inputs."""
    rp = path.resolve()
    for i in inputs:
        if i.exists() and rp == i.resolve():
            raise OutputExistsError(f"{path}: output would overwrite its own input")
    if path.exists() and not force:
        raise OutputExistsError(f"{path} exists: expected a new path (use --force to overwrite)")


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


@contextlib.contextmanager
def atomic_path(path: Path, force: bool = False, inputs: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path``, on any error it is removed."""
    path = Path(path)
    check_output(path, force, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _final_mode(path))
        if not force and path.exists():  # lost a race with another writer
            raise OutputExistsError(f"{path} exists: expected a new path (use --force to overwrite)")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_bytes(path: Path, data: bytes, force: bool = False, inputs: tuple[Path, ...] = ()) -> None:
    """Atomically write bytes."""
    with atomic_path(path, force, inputs) as tmp:
        tmp.write_bytes(data)


def save_image(img, path: Path, force: bool = False, inputs: tuple[Path, ...] = ()) -> None:
    """Atomically save a PIL image; the format follows the output suffix (PNG when unknown)."""
    from PIL import Image

    ext = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(ext, "PNG")
    with atomic_path(path, force, inputs) as tmp:
        img.save(tmp, format=fmt)


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

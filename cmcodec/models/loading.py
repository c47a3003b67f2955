"""Model backends (I2T captioners, T2I diffusion decoders). Importing this package imports no torch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import CmcodecError, ConfigError, ModelError

ENV_MODEL_DIR = "CMCODEC_MODEL_DIR"


def resolve_location(model: str, override: str | None = None) -> str:
    """Where a model is loaded from: an explicit folder, $CMCODEC_MODEL_DIR/<name>, or the hub id itself.

    Under $CMCODEC_MODEL_DIR a hub id ``org/name`` is looked up as ``org--name`` and as ``name``.
    """
    if override:
        p = Path(override).expanduser()
        if not p.is_dir():
            raise ModelError(f"model folder {override} does not exist (expected a folder saved with save_pretrained)")
        return str(p)
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    root = os.environ.get(ENV_MODEL_DIR)
    if root:
        for cand in (model_dir_name(model), model.split("/")[-1]):
            p = Path(root).expanduser() / cand
            if p.is_dir():
                return str(p)
    return model


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")


@dataclass(frozen=True)
class Accel:
    """Runtime speed-ups of a decoder (throughput, not quality). They change no profile setting; output
    pixels can differ in the last bits from eager PyTorch, and two decodes with the same settings on one
    machine stay identical."""

    channels_last: bool = False  # NHWC memory format for the UNet and autoencoder convolutions
    compile: str | None = None  # torch.compile mode ("reduce-overhead" adds CUDA graphs); None: eager

    def __post_init__(self) -> None:
        if self.compile is not None and self.compile not in COMPILE_MODES:
            raise ConfigError(f"unknown compile mode {self.compile!r}: expected one of {', '.join(COMPILE_MODES)}")


EAGER = Accel()


HUB_PROBE_TIMEOUT = 3.0  # seconds to wait for the hub before failing (no retries, no hang)


def hub_unreachable() -> str | None:
    """None when the Hugging Face endpoint answers a TCP connect, else why not."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT):
            return None
    except OSError as e:
        return f"{host}:{port} unreachable ({e.strerror or e})"


@dataclass(frozen=True)
class Source:
    """Where from_pretrained loads a model from: a local folder, or a hub id at a revision, from the network or
    (``local_only``) only from the local Hugging Face cache. The loading library itself decides which cached
    files it needs (diffusers reads the cached file listing and its own allow patterns, transformers asks for
    each file it uses), exactly as it does for a user who calls it directly."""

    path: str
    revision: str | None = None  # hub revision (a commit pins it); None: the repo's main branch
    local_only: bool = False
    snapshot: str | None = None  # the cached snapshot folder, when there is one

    @property
    def is_folder(self) -> bool:
        return Path(self.path).is_dir()

    def kwargs(self) -> dict[str, Any]:
        """revision / local_files_only arguments for from_pretrained (none for a folder)."""
        if self.is_folder:
            return {}
        kw: dict[str, Any] = {"local_files_only": self.local_only}
        if self.revision:
            kw["revision"] = self.revision
        return kw


def _cached(repo: str, revision: str | None, config_name: str) -> str | None:
    """The cached snapshot folder of repo at revision (a branch resolved through refs/, or a commit), judged
    by the file every load reads first (model_index.json for pipelines, config.json for models); None when
    it is not cached. No network."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(repo, config_name, revision=revision)
    except Exception:  # not a valid repo id, no huggingface_hub: not cached
        return None
    return str(Path(hit).parent) if isinstance(hit, str) else None


def cached_files(repo: str, revision: str | None, snapshot: str) -> list[str]:
    """Every file of the repo at that revision: the listing huggingface_hub cached with the download when
    it has one (huggingface_hub >= 2 writes it), else the files of the snapshot folder."""
    try:
        from huggingface_hub import get_cached_repo_tree

        return [f.path for f in get_cached_repo_tree(repo, revision=revision)]
    except Exception:  # older huggingface_hub, or no listing cached: the snapshot is all we know
        root = Path(snapshot)
        return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()]


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".h5", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".gguf")


def _weights_refusal(kind: str, model: str, revision: str | None, files: list[str]) -> ModelError | None:
    """A ModelError when the repo's listing holds weights but none in safetensors (never unpickled here)."""
    weights = [f for f in files if f.endswith(WEIGHT_SUFFIXES)]
    if not weights or any(f.endswith(".safetensors") for f in weights):
        return None
    at = f" at revision {revision}" if revision else " on its main branch"
    return ModelError(
        f"cannot load {kind} model {model!r}: the repo publishes no safetensors weights{at} (found "
        f"{', '.join(sorted(weights)[:4])}); cmcodec loads safetensors only, never pickled weights"
    )


def locate(kind: str, model: str, override: str | None, option: str, revision: str | None = None,
           config_name: str = "config.json") -> Source:
    """Where to load a model from, or a ModelError within seconds: a local folder, the local Hugging Face cache
    (offline, or when the hub does not answer), or the hub itself."""
    loc = resolve_location(model, override)
    if Path(loc).is_dir():
        return Source(loc)
    snapshot = _cached(loc, revision, config_name)
    if snapshot is not None:
        refusal = _weights_refusal(kind, loc, revision, cached_files(loc, revision, snapshot))
        if refusal is not None:
            raise refusal
    at = f" at revision {revision}" if revision else ""
    if offline():
        if snapshot is not None:
            return Source(loc, revision, local_only=True, snapshot=snapshot)
        why = f"offline (HF_HUB_OFFLINE=1) and not in the local Hugging Face cache{at}"
    else:
        why = hub_unreachable()
        if why is None:
            return Source(loc, revision, snapshot=snapshot)  # from_pretrained downloads what it needs
        if snapshot is not None:
            return Source(loc, revision, local_only=True, snapshot=snapshot)
        why = f"not in the local Hugging Face cache{at} and the hub is {why}"
    raise ModelError(f"cannot load {kind} model {model!r}: {why} | {_ways_to_supply(model, option)}")


def model_dir_name(model: str) -> str:
    """The folder name under $CMCODEC_MODEL_DIR that stands for a hub id (``org/name`` -> ``org--name``)."""
    return model.replace("/", "--")


def _ways_to_supply(model: str, option: str) -> str:
    """Every way to give a model that cannot be loaded, as each one-line error ends."""
    return (f"supply it with {option} DIR (a folder saved with save_pretrained), ${ENV_MODEL_DIR}/"
            f"{model_dir_name(model)}, or a Hugging Face cache (HF_HOME) that holds it")


def offline() -> bool:
    """True when the Hugging Face hub must not be contacted."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def load_error(kind: str, model: str, source: Source, err: BaseException, option: str) -> ModelError:
    """A one-line ModelError naming the model, where it was looked for and every way to supply it."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    where = ("local folder" if source.is_folder else
             "hub id (local cache only)" if source.local_only else "hub id")
    at = f" at revision {source.revision}" if source.revision and not source.is_folder else ""
    return ModelError(f"cannot load {kind} model {model!r} from {where} {source.path!r}{at}: {first[:300]} | "
                      f"{_ways_to_supply(model, option)}")


def require(*packages: str) -> None:
    """ModelError naming the version found when a model library is missing or older than its floor
    (core.deps.FLOORS, the one floor table)."""
    from ..core.deps import FLOORS, installed, too_old

    for pkg in packages:
        if installed(pkg) is None:
            raise ModelError(f"{pkg} is not installed: pip install 'cmcodec[neural]' (needs {pkg} >= {FLOORS[pkg][1]})")
        why = too_old(pkg)
        if why:
            raise ModelError(why)


def pick_device(device: str | None) -> str:
    """The device to run on: the given one, else CUDA when present, else CPU."""
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {device!r} requested but CUDA is not available (found torch {torch.__version__})")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: str | None, gpu_default: str = "float16"):
    """The named dtype (torch's names float16, bfloat16, float32, as rows and --dtype spell them; the short
    fp16 / bf16 / fp32 are read too), else the model's own GPU dtype on CUDA (float16 unless its row says
    otherwise: Qwen2-VL was trained in bfloat16), else float32 (CPU)."""
    import torch

    names = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
             "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if dtype:
        try:
            return names[dtype]
        except KeyError:
            raise ModelError(f"unknown dtype {dtype!r}: expected float16, bfloat16 or float32") from None
    return names[gpu_default] if device.startswith("cuda") else torch.float32


ENV_REVISIONS = "CMCODEC_REVISIONS"


def local_pins() -> dict[str, str]:
    """Revisions pinned on this machine: the JSON object {row name or hub id: revision} in the file named by
    $CMCODEC_REVISIONS (for rows whose commit the package does not know, or to follow a fork)."""
    import json

    from ..media.fileio import read_input

    path = os.environ.get(ENV_REVISIONS)
    if not path:
        return {}
    try:  # a regular file of at most 1 MiB: a FIFO or /dev/zero named here is refused, not read without end
        pins = json.loads(read_input(Path(path).expanduser(), 1 << 20).decode("utf-8"))
    except (CmcodecError, ValueError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else e
        raise ConfigError(f"${ENV_REVISIONS} {path}: expected a JSON file {{name: revision}} ({why})") from None
    if not isinstance(pins, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in pins.items()):
        raise ConfigError(f"${ENV_REVISIONS} {path}: expected a JSON object of name -> revision strings")
    return pins


def revision_for(name: str, model: str, row_revision: str | None) -> tuple[str | None, str]:
    """(revision, where it comes from) of a row's model: a local pin of the row's name or hub id, then the row's
    own pin; None follows the repo's main branch ("unpinned")."""
    pins = local_pins()
    for key in (name, model):
        if key in pins:
            return pins[key], f"${ENV_REVISIONS}"
    return (row_revision, "row") if row_revision else (None, "unpinned")


def folder_signature(folder: str | os.PathLike) -> str:
    """A short digest of a model folder's files (relative name, size, modification time): what stands for the
    revision of local weights when outputs are keyed by the model that made them (retrained or replaced
    weights differ; reading every byte of a multi-gigabyte folder would not be affordable per run)."""
    import hashlib

    root = Path(folder)
    sig = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            sig.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return sig.hexdigest()[:16]

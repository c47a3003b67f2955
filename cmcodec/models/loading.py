"""Model backends (I2T captioners, T2I diffusion decoders). Importing this package imports no torch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError, ModelError

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
        for cand in (model.replace("/", "--"), model.split("/")[-1]):
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


def locate(kind: str, model: str, override: str | None, option: str) -> str:
    """A loadable location, or a ModelError within seconds: local folder, cached snapshot, or reachable hub."""
    loc = resolve_location(model, override)
    if Path(loc).is_dir():
        return loc
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(loc, local_files_only=True)  # fully local: no network at all
    except Exception:  # not cached (or not a valid repo id): decide below without touching the network twice
        pass
    if offline():
        why = "offline (HF_HUB_OFFLINE=1) and not in the local Hugging Face cache"
    else:
        why = hub_unreachable()
        if why is None:
            return loc  # from_pretrained downloads it
        why = f"not in the local Hugging Face cache and the hub is {why}"
    raise ModelError(
        f"cannot load {kind} model {model!r}: {why} | supply it with {option} DIR (a folder saved with "
        f"save_pretrained), ${ENV_MODEL_DIR}/{model.replace('/', '--')}, or a Hugging Face cache (HF_HOME) "
        "that holds it"
    )


def offline() -> bool:
    """True when the Hugging Face hub must not be contacted."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def load_error(kind: str, model: str, location: str, err: BaseException, option: str) -> ModelError:
    """A one-line ModelError naming the model and every way to supply it."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    where = "local folder" if Path(location).is_dir() else ("hub id (offline)" if offline() else "hub id")
    return ModelError(
        f"cannot load {kind} model {model!r} from {where} {location!r}: {first[:300]} | supply it with "
        f"{option} DIR (a folder saved with save_pretrained), ${ENV_MODEL_DIR}/{model.replace('/', '--')}, "
        "or a Hugging Face cache (HF_HOME) that holds it"
    )


def pick_device(device: str | None) -> str:
    """The device to run on: the given one, else CUDA when present, else CPU."""
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"device {device!r} requested but CUDA is not available (found torch {torch.__version__})")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str, dtype: str | None):
    """fp16 on GPUs, fp32 on CPU, unless named (float16, bfloat16, float32)."""
    import torch

    if dtype:
        try:
            return {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
                    "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32}[dtype]
        except KeyError:
            raise ModelError(f"unknown dtype {dtype!r}: expected float16, bfloat16 or float32") from None
    return torch.float16 if device.startswith("cuda") else torch.float32

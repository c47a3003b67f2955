"""Version floors of the libraries cmcodec calls, in one table, checked where an older install would otherwise
fail obscurely (a TypeError inside the caption decoder, a valid file reported as corrupt, a model that loads
wrongly) instead of with a one-line error naming the version found and the one needed.

pyproject.toml states the same floors for pip (tests/test_deps.py keeps them equal); this table covers installs
pip did not resolve (``--no-deps``, distribution packages, environments pinned by hand). The conventional
libraries are checked by feature (``require``), the model libraries by package when a model loads
(``cmcodec.models.loading.require``).
"""

from __future__ import annotations

import re
from functools import cache

from .errors import CodecUnavailableError

# feature -> (distribution, first release that has it, what it is); each row was checked against that release
# and the one before it (pyproject.toml gives the same floors, with the releases tried)
FLOORS: dict[str, tuple[str, str, str]] = {
    "brotli": ("brotli", "1.2", "Decompressor.process(output_buffer_limit=), the bounded caption decode"),
    # PyAV's wheels: FFmpeg's VVC decoder and demuxer from 13.0; SVT-AV1 (the default image-reference encoder of
    # spec §8) from 14.1, refusing sides under 64 (spec §8.3 pads to 32) in 14.1-14.2 and encoding only a process's
    # first AVIF-mode picture in 15.0-17.0.1
    "av": ("av", "17.1", "the VVC decoder, and an SVT-AV1 that encodes every still picture of spec §8"),
    "avif": ("pillow", "11.3", "Pillow's wheels carry libavif from 11.3 on"),
    # the model libraries (pyproject's neural extra), by package
    "torch": ("torch", "2.4", "torch.compile of the UNet and text decoder, torch.compiler.cudagraph_mark_step_begin"),
    "transformers": ("transformers", "4.56", "from_pretrained(dtype=), native Florence-2 "
                     "(Florence2ForConditionalGeneration) and AutoModelForImageTextToText for every registered "
                     "captioner"),
    "diffusers": ("diffusers", "0.30", "AutoPipeline*.from_pipe, AutoencoderTiny, variant= and use_safetensors= "
                  "loading, add_watermarker= on the SDXL pipelines"),
    "huggingface_hub": ("huggingface_hub", "0.34", "try_to_load_from_cache and the offline cache layout "
                        "transformers 4.56 needs"),
    "safetensors": ("safetensors", "0.4", "safetensors.torch save_file / load_file"),
    "accelerate": ("accelerate", "0.30", "device placement used by transformers' from_pretrained"),
}


def version_tuple(v: str) -> tuple[int, ...]:
    """Leading numeric release of a version string ("14.1.0.dev0" -> (14, 1, 0))."""
    m = re.match(r"\d+(?:\.\d+)*", v)
    return tuple(int(x) for x in m.group(0).split(".")) if m else ()


@cache
def installed(dist: str) -> str | None:
    """The installed version of a distribution, None when its metadata is absent."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def too_old(feature: str) -> str | None:
    """The one-line reason when the installed library is older than the feature's floor, else None (also when
    its metadata is absent: the import then says what is missing)."""
    dist, floor, why = FLOORS[feature]
    found = installed(dist)
    if found is None or version_tuple(found) >= version_tuple(floor):
        return None
    return f"{dist} {found} is installed; cmcodec needs {dist} >= {floor} ({why}): pip install -U '{dist}>={floor}'"


def require(feature: str) -> None:
    """CodecUnavailableError with too_old's reason when the installed library predates the feature."""
    why = too_old(feature)
    if why:
        raise CodecUnavailableError(why)

"""Version floors of the conventional libraries the core calls, checked where an older install would otherwise
fail obscurely (a TypeError inside the caption decoder, a valid file reported as corrupt) instead of with a
one-line error naming the version found and the one needed.

pyproject.toml states the same floors for pip; this table covers installs pip did not resolve (``--no-deps``,
distribution packages, environments pinned by hand). The neural libraries' floors are in
``cmcodec.models.loading.FLOORS``.
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

"""The cmcodec exception tree: one root, precise subclasses. Only ``cli`` maps them to exit codes."""

from __future__ import annotations


class CmcodecError(Exception):
    """Root of every error cmcodec raises on purpose."""

    exit_code = 1


class FormatError(CmcodecError):
    """A byte string is not a valid .cmc container (spec/bitstream.md)."""

    exit_code = 3


class NotCmcError(FormatError):
    """The data does not start with the .cmc magic byte."""


class TruncatedError(FormatError):
    """The data ends before the structure it announces is complete."""


class IntegrityError(FormatError):
    """The integrity check (CRC) does not match the content."""


class UnsupportedVersionError(FormatError):
    """The container version is newer than this reader understands."""


class UnknownSectionError(FormatError):
    """A required section (or a coder id) is unknown to this reader."""


class CaptionDecodeError(FormatError):
    """A caption payload cannot be decoded by its coder."""


class GuidanceDecodeError(FormatError):
    """A pixel-map or image-reference payload cannot be decoded."""


class LimitError(CmcodecError):
    """A size limit (dimensions, pixels, section or caption size) was exceeded."""

    exit_code = 4


class ImageInputError(CmcodecError):
    """An input image cannot be read or is not usable (format, size, bit depth)."""

    exit_code = 5


class ProfileError(CmcodecError):
    """An unknown decoder profile, or a mode the profile cannot decode."""

    exit_code = 6

    @classmethod
    def cannot_decode(cls, profile: str, mode: str, modes: tuple[str, ...], neural: bool) -> ProfileError:
        """The error of a mode the profile does not decode, naming those it does."""
        hint = "" if neural else " (it has no generative model; use a neural profile such as sd-turbo)"
        return cls(f"profile {profile} cannot decode {mode} mode{hint}: it decodes {', '.join(modes)}")


class ModelError(CmcodecError):
    """A model cannot be loaded (missing weights, offline, unsafe format, missing package)."""

    exit_code = 7


class CaptionModelError(ModelError):
    """A word language model file that ships with cmcodec is missing or does not match its pinned SHA-256
    (spec §6.3): the installation is broken, not the input."""


class BudgetError(CmcodecError):
    """The requested rate (--bpp / --max-bytes) cannot be met; the message gives the smallest size."""

    exit_code = 8


class CodecUnavailableError(CmcodecError):
    """A conventional codec is not installed or cannot handle the request."""

    exit_code = 9


class OutputExistsError(CmcodecError):
    """An output exists and --force was not given, or would land on an input or another output (never allowed)."""

    exit_code = 10


class OutputError(CmcodecError):
    """An output cannot be written: the file system refused it (permissions, a parent that is not a folder, a
    name too long, a full disk) or another process is writing the same output."""

    exit_code = 11


class DiskFullError(OutputError):
    """The disk (or quota) holding an output is full: a folder run stops here, keeping every finished file."""


class ConfigError(CmcodecError):
    """Inconsistent options (for example --bpp together with --max-bytes)."""

    exit_code = 2


class UnknownCoderError(ConfigError):
    """A caption coder or conventional codec asked for by a name that is not registered."""

"""Limits that more than one module of the normative decoder enforces, each with its reason.

Reader limits a caller may lower (image size, section and file bytes) are the fields of
``cmcodec.core.bitstream.Limits``; the constants here are fixed by the spec.
"""

from __future__ import annotations

# spec §6.1: a decoded caption has at most 4096 characters. Captions of CMC-Bench's captioners are tens of
# words; the cap bounds a reader's work and memory for any caption payload, whatever its coder.
MAX_CAPTION_CHARS = 4096

# UTF-8 takes at most 4 bytes per character (RFC 3629): the byte bound of a caption within the limit above.
MAX_CAPTION_BYTES = 4 * MAX_CAPTION_CHARS

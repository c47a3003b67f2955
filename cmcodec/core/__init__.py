"""The normative core of spec/bitstream.md: ids, errors, limits, bit I/O, container, caption coders and their
models, pixel map, image reference and the conventional codecs it wraps. Imports nothing above it, never torch.
"""

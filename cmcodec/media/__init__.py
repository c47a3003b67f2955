"""Media helpers: image loading under limits, atomic file writes. Imports only core.
"""

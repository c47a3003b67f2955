"""Word language model for caption coding (coder wlm1): placeholder until the model file ships."""

from __future__ import annotations

from importlib import resources


def model_available(model_id: str) -> bool:
    """True when the model file of model_id ships with the package."""
    return resources.files("cmcodec").joinpath(f"data/{model_id}.model").is_file()

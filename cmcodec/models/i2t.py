"""Image-to-text captioning through transformers Auto classes (safetensors only, no remote code).

Captioners are data rows: a registered name maps to a hub id and how it is prompted. Any other hub id or
local folder is accepted too; its kind is read from its config (chat template present: "chat").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..core.errors import ConfigError, ModelError
from .loading import EAGER, Accel, load_error, locate, pick_device, pick_dtype


@dataclass(frozen=True)
class Captioner:
    """A registered captioner: hub id, prompting kind and prompt (with {words})."""

    name: str
    model: str
    kind: str  # "caption" (plain captioning head) or "chat" (vision-language model with a chat template)
    prompt: str = ""


WORD_PROMPT = ("Describe this image in one sentence of at most {words} words, naming the main subjects, "
               "their colours and layout, and the setting.")
CAPTIONERS: dict[str, Captioner] = {c.name: c for c in (
    Captioner("blip-large", "Salesforce/blip-image-captioning-large", "caption"),
    Captioner("blip-base", "Salesforce/blip-image-captioning-base", "caption"),
    Captioner("blip2-opt-2.7b", "Salesforce/blip2-opt-2.7b", "caption"),
    Captioner("florence-2-large", "florence-community/Florence-2-large", "caption", "<MORE_DETAILED_CAPTION>"),
    Captioner("qwen2-vl-2b", "Qwen/Qwen2-VL-2B-Instruct", "chat", WORD_PROMPT),
    Captioner("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "chat", WORD_PROMPT),
)}
DEFAULT_CAPTIONER = "blip-large"

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def _captioner(model: str | None) -> Captioner:
    """Registered row for a name, else an ad-hoc row for a hub id or folder."""
    model = model or DEFAULT_CAPTIONER
    if model in CAPTIONERS:
        return CAPTIONERS[model]
    return Captioner(model, model, "auto", WORD_PROMPT)


def load(model: str | None = None, device: str | None = None, dtype: str | None = None,
         model_path: str | None = None, accel: Accel = EAGER) -> tuple[Any, Any, Captioner, str]:
    """(processor, model, row, device), cached; ``accel.compile`` compiles the token decoder (BLIP-class)."""
    row = _captioner(model)
    loc = locate("I2T", row.model, model_path, "--i2t-path")  # before heavy imports: fail fast
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForImageTextToText, AutoProcessor
    except ImportError as e:
        raise ModelError(f"captioning needs transformers and torch: pip install 'cmcodec[neural]' ({e})") from None
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    key = (loc, dev, str(torch_dtype), accel.compile)
    with _LOCK:
        if key not in _CACHE:
            try:
                proc = AutoProcessor.from_pretrained(loc, trust_remote_code=False)
                net = AutoModelForImageTextToText.from_pretrained(
                    loc, dtype=torch_dtype, use_safetensors=True, trust_remote_code=False
                ).to(dev).eval()
            except Exception as e:  # OSError / ValueError / hub errors: all mean the model cannot be loaded
                raise load_error("I2T", row.model, loc, e, "--i2t-path") from None
            if accel.compile:
                dec = getattr(net, "text_decoder", None)
                if dec is None:
                    raise ConfigError(f"--compile for captioners supports BLIP-class models (a text_decoder); "
                                      f"found {type(net).__name__}")
                _compile_steps(dec, accel.compile)
            if row.kind == "auto":
                row = Captioner(row.name, row.model, "chat" if getattr(proc, "chat_template", None) else "caption",
                                row.prompt)
            _CACHE[key] = (proc, net, row, dev)
        return _CACHE[key]


def _compile_steps(dec: Any, mode: str) -> None:
    """torch.compile a token decoder for generate (issue 6): dynamic shapes, one compiled step per call. With
    mode reduce-overhead each call is a CUDA-graph step; the logits and KV cache it returns are copied out of
    the graph's memory before the next replay overwrites them (measured on an H100: 88 ms instead of 308 ms
    for a 20-token BLIP-large caption at batch 1)."""
    import functools

    import torch

    compiled = torch.compile(dec.forward, mode=mode, dynamic=True)

    @functools.wraps(dec.forward)  # generate checks its keyword arguments against forward's signature
    def forward(*args: Any, **kwargs: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        out = compiled(*args, **kwargs)
        out.logits = out.logits.clone()
        pkv = out.past_key_values
        for cache in (getattr(pkv, "self_attention_cache", pkv), getattr(pkv, "cross_attention_cache", None)):
            for layer in getattr(cache, "layers", []):
                if getattr(layer, "keys", None) is not None:
                    layer.keys, layer.values = layer.keys.clone(), layer.values.clone()
        return out

    dec.forward = forward


def caption_batch(images: list[Image.Image], *, model: str | None = None, words: int = 20,
                  device: str | None = None, dtype: str | None = None, model_path: str | None = None,
                  max_new_tokens: int | None = None, accel: Accel = EAGER) -> list[str]:
    """Captions of several images, each cut to at most ``words`` words (CMC-Bench's word budget)."""
    import torch

    proc, net, row, dev = load(model, device, dtype, model_path, accel)
    rgb = [im.convert("RGB") for im in images]
    new = max_new_tokens or max(8, int(words * 2))
    prompt = row.prompt.format(words=words)
    pre = _image_kwargs(proc, dev)
    if row.kind == "chat":
        tok = getattr(proc, "tokenizer", None)
        if tok is not None:  # decoder-only generation: pad on the left, so every prompt ends where output starts
            tok.padding_side = "left"
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = proc.apply_chat_template(msgs, add_generation_prompt=True)
        inputs = proc(text=[text] * len(rgb), images=rgb, return_tensors="pt", padding=True, **pre)
    elif prompt:
        inputs = proc(text=[prompt] * len(rgb), images=rgb, return_tensors="pt", **pre)
    else:
        inputs = proc(images=rgb, return_tensors="pt", **pre)
    inputs = {k: (v.to(dev, net.dtype) if v.is_floating_point() else v.to(dev)) for k, v in inputs.items()}
    with torch.inference_mode():
        out = net.generate(**inputs, max_new_tokens=new, do_sample=False, num_beams=1)
    if row.kind == "chat" or (prompt and not net.config.is_encoder_decoder):
        out = out[:, inputs["input_ids"].shape[1]:]
    texts = proc.batch_decode(out, skip_special_tokens=True)
    return [_clean(t, words) for t in texts]


def _image_kwargs(proc: Any, dev: str) -> dict[str, Any]:
    """device= for image processors of transformers' torchvision backend, which then resize and normalize
    the batch on the model's device instead of the CPU; other processors get nothing."""
    ip = getattr(proc, "image_processor", None)
    return {"device": dev} if getattr(ip, "backend", None) == "torchvision" else {}


def _clean(text: str, words: int) -> str:
    """Whitespace folded, first letter upper-case, cut to the word budget."""
    from ..core.textcode import trim_to_words

    t = trim_to_words(" ".join(text.split()), words).strip()
    return t[:1].upper() + t[1:]


def caption(image: Image.Image, *, model: str | None = None, words: int = 20, device: str | None = None,
            dtype: str | None = None, model_path: str | None = None, accel: Accel = EAGER) -> str:
    """Caption of one image (see caption_batch)."""
    return caption_batch([image], model=model, words=words, device=device, dtype=dtype, model_path=model_path,
                         accel=accel)[0]

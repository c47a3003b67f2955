"""Image-to-text captioning through transformers Auto classes (safetensors only, no remote code).

Captioners are data rows: a registered name maps to a hub id and how it is prompted. Any other hub id or
local folder is accepted too; its kind is read from its config (chat template present: "chat").
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..core.errors import CmcodecError, ConfigError, ModelError
from . import api_i2t
from .loading import EAGER, Accel, load_error, locate, pick_device, pick_dtype, require, revision_for


@dataclass(frozen=True)
class Captioner:
    """A registered captioner (one row per variant, one loader for all): hub id, how it is prompted, and what
    it costs. ``prompt`` may hold {words} (the word budget) and {aspects} (CMC-Bench's extra aspects)."""

    name: str
    model: str
    kind: str  # "caption" (captioning head, optional text prompt), "chat" (VLM with a chat template), "api"
    prompt: str = ""
    size: str = ""  # parameters as the model card gives them
    # precision on a GPU, by torch's name: what the model was trained and published in (CPU runs float32)
    dtype: str = "float16"
    license: str = ""  # as the model card names it (the user must accept it)
    origin: str = ""  # why it is in the line-up
    # (most words, prompt) pairs, shortest first: the first whose budget covers the asked words is used
    # instead of ``prompt`` (Florence-2's task tokens answer at different lengths)
    prompts_by_words: tuple[tuple[int, str], ...] = ()
    revision: str | None = None  # hub commit the row was defined against; None: unpinned (main)
    processor_kwargs: tuple[tuple[str, Any], ...] = ()  # AutoProcessor.from_pretrained arguments


WORD_PROMPT = ("Describe this image in one sentence of at most {words} words, naming the main subjects, "
               "their colours and layout, and the setting.")
# CMC-Bench's I2T prompt (its script-i2t.py): a paragraph of the word budget, one more aspect per 10 words,
# appended without a space as that script does (the prompt is reproduced, not improved).
CMCBENCH_PROMPT = "Generate an informative paragraph in {words} words based on the image.{aspects}"
CMCBENCH_ASPECTS = ("Considering Light and Color", ", Clarity", ", Dense Caption", ", and Region Semantic")


def prompt_for(row: Captioner, words: int) -> str:
    """The row's prompt for a word budget."""
    for most, prompt in row.prompts_by_words:
        if words <= most:
            return prompt
    return row.prompt.format(words=words, aspects="".join(CMCBENCH_ASPECTS[:words // 10]))


# llava-hf/llava-1.5-7b-hf has held no processor_config.json since its processor upload of Jun 28 2024 (the
# stored tree pages of its later commits list none), and transformers 5's LlavaProcessor needs these to
# expand <image> into the vision tower's tokens (None fails): 14 px patches (its config.json vision_config),
# the CLS token counted and then dropped ("default").
LLAVA_PROCESSOR = (("patch_size", 14), ("vision_feature_select_strategy", "default"),
                   ("num_additional_image_tokens", 1))
# Florence-2's captioning tasks: <CAPTION> answers in one short sentence, <DETAILED_CAPTION> in a few,
# <MORE_DETAILED_CAPTION> in a paragraph. A paragraph cut at a 20-word budget keeps only its opening ("The
# image shows ..."), so the budget picks the task whose answer fits it (the last covers every longer one).
FLORENCE_TASKS = ((25, "<CAPTION>"), (60, "<DETAILED_CAPTION>"), (1 << 30, "<MORE_DETAILED_CAPTION>"))
# Qwen2-VL / Qwen2.5-VL see an image as one token per 28x28 pixels (14 px patches merged 2x2); their processors
# allow up to 16384 tokens (12.8 MP) per image. A word-budget caption is capped at 1024 tokens (0.8 MP, e.g.
# 896x896 px), which bounds the vision encoder's sequence and the text model's KV cache per image.
QWEN_MAX_PIXELS = 1024 * 28 * 28
QWEN_PROCESSOR = (("max_pixels", QWEN_MAX_PIXELS),)


CMCB = "CMC-Bench"
# each row's size, licence and pin, with the pages they were read from: its manifest fixtures/hub/<org>--<name>.json
CAPTIONERS: dict[str, Captioner] = {c.name: c for c in (
    Captioner("blip-large", "Salesforce/blip-image-captioning-large", "caption", size="0.47B",
              license="BSD-3-Clause", origin="fast", revision="2227ac38c9f16105cb0412e7cab4759978a8fd90"),
    # main holds only pytorch_model.bin and tf_model.h5: the row loads the hub's safetensors conversion
    # commit of it (fixtures/hub/Salesforce--blip-image-captioning-base.json)
    Captioner("blip-base", "Salesforce/blip-image-captioning-base", "caption", size="0.25B",
              license="BSD-3-Clause", origin="fast", revision="9cfcdbcaccbcadb2b53b36d4b50042c4eeaa0c25"),
    # the commit whose processor_config.json / image_token_index transformers 5 generate needs
    # (fixtures/hub/Salesforce--blip2-opt-2.7b.json)
    Captioner("blip2-opt-2.7b", "Salesforce/blip2-opt-2.7b", "caption", size="3.7B", license="MIT",
              origin="BLIP-2", revision="c7d6c9f37354a91481abf26893b22ffcb6d10878"),
    # unpinned: no commit of the conversion is known (fixtures/hub/florence-community--Florence-2-large.json)
    Captioner("florence-2-large", "florence-community/Florence-2-large", "caption", "<MORE_DETAILED_CAPTION>",
              size="0.77B", license="MIT", origin="small captioner", prompts_by_words=FLORENCE_TASKS),
    Captioner("qwen2-vl-2b", "Qwen/Qwen2-VL-2B-Instruct", "chat", WORD_PROMPT, size="2.2B", dtype="bfloat16",
              license="Apache-2.0", origin="small VLM", processor_kwargs=QWEN_PROCESSOR),
    # unpinned: only main's short id is known (fixtures/hub/Qwen--Qwen2.5-VL-3B-Instruct.json)
    Captioner("qwen2.5-vl-3b", "Qwen/Qwen2.5-VL-3B-Instruct", "chat", WORD_PROMPT, size="3.8B", dtype="bfloat16",
              license="Qwen Research License", origin="small VLM", processor_kwargs=QWEN_PROCESSOR),
    Captioner("llava-1.5-7b", "llava-hf/llava-1.5-7b-hf", "chat", CMCBENCH_PROMPT, size="7.1B",
              license="Llama 2 Community License", origin=CMCB, processor_kwargs=LLAVA_PROCESSOR,
              revision="95f2cf316249a98c11183f471ab76065c3e5f494"),
    Captioner("llava-next-mistral-7b", "llava-hf/llava-v1.6-mistral-7b-hf", "chat", CMCBENCH_PROMPT, size="7.6B",
              license="Apache-2.0", origin=CMCB + " (LLaVA-NeXT)",
              revision="0cfb71e15a694974ba847f6aaaef8d5c19f2879e"),
    Captioner("instructblip-vicuna-7b", "Salesforce/instructblip-vicuna-7b", "caption", CMCBENCH_PROMPT,
              size="7.9B", license="non-commercial (Vicuna / LLaMA terms)", origin=CMCB,
              revision="4fd0ddbb2172352d120b7ff982274f32f6fe278f"),
    # unpinned: only short commit ids are known (their manifests)
    Captioner("smolvlm2-2.2b", "HuggingFaceTB/SmolVLM2-2.2B-Instruct", "chat", WORD_PROMPT, size="2.2B",
              dtype="bfloat16", license="Apache-2.0", origin="small VLM"),
    Captioner("internvl3-1b", "OpenGVLab/InternVL3-1B-hf", "chat", WORD_PROMPT, size="0.9B", dtype="bfloat16",
              license="Apache-2.0", origin="small VLM"),
)}
# CMC-Bench's GPT-4o row: any model behind an OpenAI-compatible server (models/api_i2t.py).
API_CAPTIONER = Captioner("api:MODEL", "", "api", CMCBENCH_PROMPT, size="(server)", dtype="(server)",
                          license="the server's terms", origin=CMCB + " (GPT-4o); vLLM, Ollama, LM Studio")
# CMC-Bench captioners whose checkpoints load only with their authors' model code: cmcodec never runs remote
# code (trust_remote_code), so they are refused by name and hub id with the reason.
REFUSED: dict[str, tuple[str, str]] = {
    "sharegpt4v": ("Lin-Chen/ShareGPT4V-7B", "its checkpoint (model_type share4v) loads only with the ShareGPT4V "
                   "repository's own model code"),
    "mplug-owl2": ("MAGAer13/mplug-owl2-llama2-7b", "it loads only with trust_remote_code (the mPLUG-Owl2 "
                   "repository's model code)"),
}
DEFAULT_CAPTIONER = "blip-large"

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()
# Image processors of transformers' torchvision backend resize and normalize on the model's device (same
# captions, less CPU time); False keeps them on the CPU, e.g. to measure what that costs.
PREPROCESS_ON_DEVICE = True


def clear_cache() -> None:
    """Forget every loaded captioner (the next call loads it again), freeing its memory once unreferenced."""
    with _LOCK:
        _CACHE.clear()


def _captioner(model: str | None) -> Captioner:
    """Registered row for a name, else an ad-hoc row for a hub id or folder; refused models raise ModelError."""
    model = model or DEFAULT_CAPTIONER
    if model in CAPTIONERS:
        return CAPTIONERS[model]
    for name, (hub_id, why) in REFUSED.items():
        if model.lower() in (name, hub_id.lower()):
            raise ModelError(f"captioner {name} ({hub_id}) is not supported: {why}, and cmcodec never runs "
                             f"remote code; choose one of {', '.join(CAPTIONERS)} or api:MODEL")
    if api_i2t.is_api(model):
        return Captioner(model, api_i2t.model_name(model), "api", API_CAPTIONER.prompt)
    return Captioner(model, model, "auto", WORD_PROMPT)


def load(model: str | None = None, device: str | None = None, dtype: str | None = None,
         model_path: str | None = None, accel: Accel = EAGER) -> tuple[Any, Any, Captioner, str]:
    """(processor, model, row, device), cached; ``accel.compile`` compiles the token decoder (BLIP-class).

    The model loads at the row's pinned revision (or a local pin, models.loading.revision_for), in the row's
    dtype on GPUs."""
    row = _captioner(model)
    if row.kind == "api":
        raise ConfigError(f"captioner {row.name} runs on a server: there is no local model to load")
    rev, _ = revision_for(row.name, row.model, row.revision)
    src = locate("I2T", row.model, model_path, "--i2t-path", rev)  # before heavy imports: fail fast
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForImageTextToText, AutoProcessor
    except ImportError as e:
        raise ModelError(f"captioning needs transformers and torch: pip install 'cmcodec[neural]' ({e})") from None
    require("torch", "transformers", "huggingface_hub")
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype or (row.dtype if dev.startswith("cuda") else None))
    # the row too: one folder loaded as an ad-hoc captioner and as a registered row gets different prompts
    key = (src, row, dev, str(torch_dtype), accel.compile)
    with _LOCK:
        if key not in _CACHE:
            try:
                proc = AutoProcessor.from_pretrained(src.path, trust_remote_code=False, **src.kwargs(),
                                                     **dict(row.processor_kwargs))
                net = AutoModelForImageTextToText.from_pretrained(
                    src.path, dtype=torch_dtype, use_safetensors=True, trust_remote_code=False, **src.kwargs()
                ).to(dev).eval()
            except Exception as e:  # OSError / ValueError / hub errors: all mean the model cannot be loaded
                raise load_error("I2T", row.model, src, e, "--i2t-path") from None
            if accel.compile:
                dec = getattr(net, "text_decoder", None)
                if dec is None:
                    raise ConfigError(f"--compile for captioners supports BLIP-class models (a text_decoder); "
                                      f"found {type(net).__name__}")
                _compile_steps(dec, accel.compile)
            if row.kind == "auto":
                row = dataclasses.replace(row, kind="chat" if getattr(proc, "chat_template", None) else "caption")
            _CACHE[key] = (proc, net, row, dev)
        return _CACHE[key]


def _compile_steps(dec: Any, mode: str) -> None:
    """torch.compile a token decoder for generate (encode throughput): dynamic shapes, one compiled step per call. With
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
    """Captions of several images, each cut to at most ``words`` words (CMC-Bench's word budget); the first
    failure raises (caption_each keeps going)."""
    out = caption_each(images, model=model, words=words, device=device, dtype=dtype, model_path=model_path,
                       max_new_tokens=max_new_tokens, accel=accel)
    for t in out:
        if isinstance(t, CmcodecError):
            raise t
    return out  # type: ignore[return-value]


def caption_each(images: list[Image.Image], *, model: str | None = None, words: int = 20,
                 device: str | None = None, dtype: str | None = None, model_path: str | None = None,
                 max_new_tokens: int | None = None, accel: Accel = EAGER) -> list[str | CmcodecError]:
    """Caption or CmcodecError per image: a local model captions the batch in one call (one error fails it
    all); an api: captioner asks once per image, so one failed image leaves the others their captions. An
    empty caption is that image's ModelError."""
    row = _captioner(model)
    new = max_new_tokens or max(8, int(words * 2))
    if row.kind == "api":
        if model_path:
            raise ConfigError(f"--i2t-path does not apply to the server captioner {row.name}")
        texts = api_i2t.caption_each(images, model=row.model, prompt=prompt_for(row, words), max_tokens=new)
        return [t if isinstance(t, CmcodecError) else _said(row, _clean(t, words)) for t in texts]
    return [_said(row, t) for t in _caption_local(images, model, words, device, dtype, model_path, new, accel)]


def _said(row: Captioner, text: str) -> str | CmcodecError:
    """The caption, or a ModelError when it is empty: a model whose output is only special tokens (its first
    token ended the answer, or it wrote only padding / unknown tokens) said nothing, and a text-mode file of
    an empty caption would decode an image of no content instead of failing."""
    if text:
        return text
    return ModelError(f"captioner {row.name} returned an empty caption (its output held only special tokens); "
                      f"give the caption with --caption or choose another --i2t")


def _caption_local(images: list[Image.Image], model: str | None, words: int, device: str | None,
                   dtype: str | None, model_path: str | None, new: int, accel: Accel) -> list[str]:
    """One generate call over the batch of a local transformers model."""
    import torch

    proc, net, row, dev = load(model, device, dtype, model_path, accel)
    rgb = [im.convert("RGB") for im in images]
    prompt = prompt_for(row, words)
    pre = _image_kwargs(proc, dev)
    try:  # a folder or processor that cannot prepare this input: one line naming the captioner, no traceback
        if row.kind == "chat":
            tok = getattr(proc, "tokenizer", None)
            if tok is not None:  # decoder-only generation: pad on the left, so every prompt ends where output starts
                tok.padding_side = "left"
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            text = proc.apply_chat_template(msgs, add_generation_prompt=True)
            # one image per prompt, as a list per prompt (processors of several images per prompt need the nesting)
            inputs = proc(text=[text] * len(rgb), images=[[im] for im in rgb], return_tensors="pt", padding=True, **pre)
        elif prompt:
            inputs = proc(text=[prompt] * len(rgb), images=_batch_on(rgb, pre), return_tensors="pt", **pre)
        else:
            inputs = proc(images=_batch_on(rgb, pre), return_tensors="pt", **pre)
    except (TypeError, ValueError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ModelError(f"captioner {row.name}: its processor cannot prepare the images ({type(e).__name__}: "
                         f"{first}); check the model folder's processor files") from None
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
    return {"device": dev} if PREPROCESS_ON_DEVICE and getattr(ip, "backend", None) == "torchvision" else {}


def _batch_on(images: list[Image.Image], pre: dict[str, Any]) -> Any:
    """Same-size RGB images for a processor that prepares them on a device (``pre``): one uint8 NCHW tensor
    there, crossing in one copy from page-locked memory, instead of a tensor made and copied per image. The
    processor resizes and normalizes it exactly as the images one by one
    (test_batched_images_give_the_processors_own_pixel_values). Other inputs are returned unchanged."""
    if not pre or len(images) < 2 or len({im.size for im in images}) != 1:
        return images
    import torch

    from ..media.fileio import pixels

    dev = torch.device(pre["device"])
    w, h = images[0].size
    host = torch.empty((len(images), h, w, 3), dtype=torch.uint8, pin_memory=dev.type == "cuda")
    arr = host.numpy()
    for i, im in enumerate(images):
        arr[i] = pixels(im)
    return host.to(dev, non_blocking=True).permute(0, 3, 1, 2).contiguous()


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


def identity(model: str | None, model_path: str | None = None) -> dict[str, str | None]:
    """What decides a captioner's text besides the image, without loading it (the key of outputs made from
    its captions): the row's name and hub id with its revision (pinned, local pin or unpinned), the weights
    folder when one is used, read as a signature of its files (name, size, modification time: a retrained
    folder differs), or an api: model and the server it is sent to."""
    import os
    from pathlib import Path

    from .loading import folder_signature

    row = _captioner(model)
    if row.kind == "api":
        return {"captioner": row.name, "server": api_i2t.ApiConfig.from_env().base}
    folder = model_path or (row.model if Path(row.model).is_dir() else None)
    out: dict[str, str | None] = {"captioner": row.name, "model": row.model}
    if folder is None:
        out["revision"] = revision_for(row.name, row.model, row.revision)[0] or "unpinned (main)"
        return out
    out["folder"] = os.path.abspath(folder)
    out["files"] = folder_signature(folder)
    return out

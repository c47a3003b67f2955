"""Tiny random-weight models saved like real model folders (diffusers' get_dummy_components style).

Tokenizer files are written here from a small vocabulary; nothing is fetched.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

CHARS = string.ascii_lowercase + string.digits + ".,;:!?'\"-()/&%"


def write_clip_tokenizer(folder: Path) -> int:
    """A character-level CLIP BPE tokenizer (vocab.json, merges.txt); returns the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges = ["#version: 0.2", "t h", "th e</w>", "a n", "an d</w>", "o f</w>"]
    for m in merges[1:]:
        a, b = m.split()
        vocab.setdefault(a + b, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer"}))
    return len(vocab)


def make_tiny_sd(folder: Path) -> Path:
    """A tiny Stable-Diffusion-layout pipeline folder (UNet, VAE with 8x downsampling, CLIP text encoder)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    tok_dir = folder.parent / (folder.name + "-tok")
    vocab_size = write_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=2, attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 4, 4, 4), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=32,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=vocab_size, max_position_embeddings=77,
        projection_dim=16,
    ))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def bert_wordlevel_tokenizer(words: list[str]):
    """A word-level BERT-style fast tokenizer over special tokens + words ([DEC] is BLIP's start token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", bos_token="[DEC]")


def make_tiny_blip(folder: Path) -> Path:
    """A tiny BLIP captioning model folder with a word-level BERT-style tokenizer written here."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    torch.manual_seed(0)
    words = ["a", "photo", "of", "the", "red", "house", "with", "white", "windows", "blue", "sky", "green", "tree", "and", "on", "in", "an", "old", "door", "street", "car", "person", "dog", "cat", "field", "water", "boat", "mountain"]
    fast = bert_wordlevel_tokenizer(words)
    vocab = fast.get_vocab()
    cfg = BlipConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                     "intermediate_size": 32, "max_position_embeddings": 64, "bos_token_id": 5, "pad_token_id": 0,
                     "sep_token_id": 3, "eos_token_id": 3, "encoder_hidden_size": 16},
        vision_config={"hidden_size": 16, "image_size": 32, "patch_size": 8, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "intermediate_size": 32},
        projection_dim=16,
    )
    model = BlipForConditionalGeneration(cfg).eval()
    proc = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=fast)
    model.save_pretrained(folder, safe_serialization=True)
    proc.save_pretrained(folder)
    return folder


def make_tiny_qwen2vl(folder: Path) -> Path:
    """A tiny Qwen2-VL-class chat VLM folder (word-level tokenizer and chat template written here)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    words = ["a", "photo", "of", "the", "red", "house", "user", "assistant", "describe", "image", "in", "words", "at", "most", "20", ".", "\n", "system"]
    vocab = {t: i for i, t in enumerate(special + words + ["<unk>"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                   additional_special_tokens=special[1:])
    template = ("{% for m in messages %}<|im_start|> {{ m['role'] }} "
                "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|> <|image_pad|> <|vision_end|> "
                "{% else %}{{ c['text'] }} {% endif %}{% endfor %}<|im_end|> {% endfor %}"
                "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    ip = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56 * 4, patch_size=14, merge_size=2, temporal_patch_size=2)
    proc = Qwen2VLProcessor(image_processor=ip, tokenizer=fast, video_processor=Qwen2VLVideoProcessor(), chat_template=template)
    cfg = Qwen2VLConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                     "bos_token_id": 0, "eos_token_id": vocab["<|im_end|>"], "pad_token_id": 0},
        vision_config={"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2, "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3},
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(cfg).eval()
    model.save_pretrained(folder, safe_serialization=True)
    proc.save_pretrained(folder)
    return folder


def make_tiny_taesd(folder: Path) -> Path:
    """A tiny AutoencoderTiny folder (TAESD's layout: 8x downsampling, 4 latent channels, scaling 1)."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(encoder_block_out_channels=(4, 4, 4, 4), decoder_block_out_channels=(4, 4, 4, 4),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1),
                    latent_channels=4).save_pretrained(folder, safe_serialization=True)
    return folder


# Chat VLMs of the captioner line-up. Each gets a word-level tokenizer over VLM_WORDS plus its family's special
# tokens, and a small chat template of the same shape as the real ones (the real templates ship with the real
# processors; the code path, apply_chat_template then the processor, is the same).
VLM_WORDS = ["a", "photo", "of", "the", "red", "house", "with", "white", "windows", "blue", "sky", "green", "tree",
             "and", "on", "in", "two", "parrots", "branch", "user", "assistant", "system", ":", "generate", "an",
             "informative", "paragraph", "words", "based", "image.", "describe", "this", "image", "one", "sentence",
             "at", "most", "naming", "main", "subjects,", "their", "colours", "layout,", "setting.", "5", "8", "20"]
VLM_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}{% if c['type'] == 'image' %}"
                "IMAGE {% else %}{{ c['text'] }} {% endif %}{% endfor %}END {% endfor %}"
                "{% if add_generation_prompt %}assistant : {% endif %}")


def wordlevel_tokenizer(special: list[str], eos: str, pad: str, bos: str | None = None, **extra: str):
    """A word-level fast tokenizer: <unk>, the special tokens (split out before whitespace splitting, so a
    processor's run of image tokens needs no spaces), then VLM_WORDS."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<unk>", *special, *VLM_WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    named = {"unk_token": "<unk>", "pad_token": pad, "eos_token": eos, **({"bos_token": bos} if bos else {})}
    return PreTrainedTokenizerFast(tokenizer_object=tok, **named, **extra,
                                   additional_special_tokens=[s for s in special if s not in named.values()])


def _template(image: str, end: str) -> str:
    return VLM_TEMPLATE.replace("IMAGE", image).replace("END", end)


def _llama(vocab: dict[str, int], **kw: object) -> dict:
    return {"model_type": "llama", "vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
            "bos_token_id": vocab.get("<s>", 0), "eos_token_id": vocab["</s>"], "pad_token_id": vocab["<pad>"], **kw}


def _clip_vision(image: int) -> dict:
    return {"model_type": "clip_vision_model", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": image, "patch_size": 14, "projection_dim": 16}


def _save(model, proc, folder: Path) -> Path:
    model.eval().save_pretrained(folder, safe_serialization=True)
    proc.save_pretrained(folder)
    return folder


def make_tiny_llava(folder: Path) -> Path:
    """A tiny LLaVA-1.5-class folder (CLIP vision tower, MLP projector, Llama LM), llava-hf's layout."""
    import torch
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    fast = wordlevel_tokenizer(["<s>", "</s>", "<pad>", "<image>"], "</s>", "<pad>", "<s>")
    vocab = fast.get_vocab()
    proc = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 28},
                                                             crop_size={"height": 28, "width": 28}),
                          tokenizer=fast, patch_size=14, vision_feature_select_strategy="default",
                          num_additional_image_tokens=1, chat_template=_template("<image>", "</s>"))
    cfg = LlavaConfig(vision_config=_clip_vision(28), text_config=_llama(vocab), image_token_index=vocab["<image>"],
                      vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(0)
    return _save(LlavaForConditionalGeneration(cfg), proc, folder)


def make_tiny_llava_next(folder: Path) -> Path:
    """A tiny LLaVA-NeXT folder: any-resolution tiling over a 2x2 grid of 28 px tiles, Mistral LM."""
    import torch
    from transformers import (
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    fast = wordlevel_tokenizer(["<s>", "</s>", "<pad>", "<image>"], "</s>", "<pad>", "<s>")
    vocab = fast.get_vocab()
    grid = [[28, 56], [56, 28], [56, 56]]
    ip = LlavaNextImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                 image_grid_pinpoints=grid)
    proc = LlavaNextProcessor(image_processor=ip, tokenizer=fast, patch_size=14, vision_feature_select_strategy="default",
                              num_additional_image_tokens=1, chat_template=_template("<image>", "</s>"))
    cfg = LlavaNextConfig(vision_config=_clip_vision(28), text_config={**_llama(vocab), "model_type": "mistral"},
                          image_token_index=vocab["<image>"], image_grid_pinpoints=grid, vision_feature_layer=-1,
                          vision_feature_select_strategy="default")
    torch.manual_seed(0)
    return _save(LlavaNextForConditionalGeneration(cfg), proc, folder)


def make_tiny_instructblip(folder: Path) -> Path:
    """A tiny InstructBLIP folder: ViT, instruction-aware Q-Former (its BERT tokenizer) and a Llama LM, like
    instructblip-vicuna-7b."""
    import torch
    from transformers import (
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    fast = wordlevel_tokenizer(["<s>", "</s>", "<pad>", "<image>"], "</s>", "<pad>", "<s>")
    vocab = fast.get_vocab()
    qtok = bert_wordlevel_tokenizer(VLM_WORDS)
    proc = InstructBlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=fast,
                                 qformer_tokenizer=qtok, num_query_tokens=4)
    cfg = InstructBlipConfig(
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        qformer_config={"vocab_size": len(qtok.get_vocab()), "hidden_size": 16, "num_hidden_layers": 1,
                        "num_attention_heads": 2, "intermediate_size": 32, "encoder_hidden_size": 16,
                        "max_position_embeddings": 128, "pad_token_id": 0},
        text_config=_llama(vocab), num_query_tokens=4, image_token_index=vocab["<image>"])
    torch.manual_seed(0)
    return _save(InstructBlipForConditionalGeneration(cfg), proc, folder)


def make_tiny_smolvlm(folder: Path) -> Path:
    """A tiny SmolVLM2-class folder (SigLIP-style vision encoder, pixel-shuffle connector, Llama LM)."""
    import torch
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    special = ["<s>", "</s>", "<pad>", "<image>", "<fake_token_around_image>", "<global-img>", "<end_of_utterance>",
               "<video>"]
    fast = wordlevel_tokenizer(special, "<end_of_utterance>", "<pad>", "<s>")
    vocab = fast.get_vocab()
    ip = SmolVLMImageProcessor(do_image_splitting=False, size={"longest_edge": 32},
                               max_image_size={"longest_edge": 32})
    proc = SmolVLMProcessor(image_processor=ip, tokenizer=fast, video_processor=SmolVLMVideoProcessor(),
                            image_seq_len=4, chat_template=_template("<image>", "<end_of_utterance>"))
    cfg = SmolVLMConfig(
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        text_config={**_llama(vocab), "eos_token_id": vocab["<end_of_utterance>"]}, scale_factor=2,
        image_token_id=vocab["<image>"])
    torch.manual_seed(0)
    return _save(SmolVLMForConditionalGeneration(cfg), proc, folder)


def make_tiny_internvl(folder: Path) -> Path:
    """A tiny InternVL3-hf folder (InternViT, pixel-shuffle MLP projector, Qwen2 LM), OpenGVLab's -hf layout."""
    import torch
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    special = ["</s>", "<pad>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    fast = wordlevel_tokenizer(special, "</s>", "<pad>", extra_special_tokens={
        "start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>"})
    vocab = fast.get_vocab()
    ip = GotOcr2ImageProcessor(crop_to_patches=False, size={"height": 32, "width": 32})
    proc = InternVLProcessor(image_processor=ip, tokenizer=fast, video_processor=InternVLVideoProcessor(),
                             image_seq_length=4, chat_template=_template("<IMG_CONTEXT>", "</s>"))
    cfg = InternVLConfig(
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": [32, 32], "patch_size": [8, 8]},
        text_config={**_llama(vocab), "model_type": "qwen2"}, downsample_ratio=0.5, image_token_id=vocab["<IMG_CONTEXT>"])
    torch.manual_seed(0)
    return _save(InternVLForConditionalGeneration(cfg), proc, folder)

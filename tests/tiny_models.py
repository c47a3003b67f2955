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
# --- the decoder families beyond SD 1.x (one factory each; shapes after diffusers' own pipeline tests) -------

WORDS = ["a", "photo", "of", "the", "red", "house", "with", "white", "windows", "blue", "sky", "green", "tree",
         "and", "on", "in", "high", "quality", "sharp", "detailed", "photograph", "make", "it", ","]


def _clip_pair(folder: Path, hidden: int = 16, projection: bool = False):
    """A CLIP text encoder (with projection for SDXL's / SD3's second encoder) and the character tokenizer."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tok_dir = folder.parent / (folder.name + "-tok")
    vocab_size = write_clip_tokenizer(tok_dir)
    cfg = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden,
                         intermediate_size=2 * hidden, num_attention_heads=2, num_hidden_layers=2,
                         vocab_size=vocab_size, max_position_embeddings=77, projection_dim=hidden)
    enc = CLIPTextModelWithProjection(cfg) if projection else CLIPTextModel(cfg)
    return enc, CLIPTokenizer.from_pretrained(tok_dir)


def t5_tokenizer():
    """A word-level T5 tokenizer (sentencepiece unigram pieces written here, no model file)."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + w, -1.0) for w in WORDS] + \
        [(c, -5.0) for c in CHARS]
    return T5TokenizerFast(vocab=pieces, extra_ids=0)


def _t5(vocab: int, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab, d_model=d_model, d_ff=2 * d_model, d_kv=8, num_layers=1,
                                   num_heads=2, decoder_start_token_id=0))


def _kl_vae(latent_channels: int = 4, blocks: int = 4, **kw):
    """A tiny AutoencoderKL downsampling 2^(blocks-1) times."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(4,) * blocks, in_channels=3, out_channels=3,
                         latent_channels=latent_channels, norm_num_groups=2, layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * blocks,
                         up_block_types=("UpDecoderBlock2D",) * blocks, **kw)


def sdxl_unet():
    """A tiny UNet with SDXL's text-time conditioning (diffusers' own SDXL test dimensions, for two 16-wide
    CLIP encoders: cross-attention 32, pooled projection 16)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=6 * 8 + 16,
        cross_attention_dim=32, norm_num_groups=2)


def make_tiny_sdxl_edm(folder: Path) -> Path:
    """A tiny SDXL-layout pipeline with Playground v2.5's EDM DPM-Solver scheduler and latent statistics."""
    import torch
    from diffusers import EDMDPMSolverMultistepScheduler, StableDiffusionXLPipeline

    torch.manual_seed(0)
    te, tok = _clip_pair(folder, 16)
    te2, tok2 = _clip_pair(folder, 16, projection=True)
    unet = sdxl_unet()
    vae = _kl_vae(latents_mean=[0.1, -0.1, 0.05, 0.0], latents_std=[1.1, 0.9, 1.0, 1.2], scaling_factor=0.5)
    sched = EDMDPMSolverMultistepScheduler(sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, solver_order=2,
                                           prediction_type="epsilon", final_sigmas_type="zero")
    StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2,
                              unet=unet, scheduler=sched).save_pretrained(folder, safe_serialization=True)
    return folder


def _sd_unet(in_channels: int = 4):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=2, attention_head_dim=4)


def make_tiny_controlnet(folder: Path) -> Path:
    """A tiny SD 1.5-layout ControlNet img2img pipeline folder (controlnet/ saved inside, as save_pretrained
    of the whole pipeline writes it)."""
    import torch
    from diffusers import (
        ControlNetModel,
        EulerDiscreteScheduler,
        StableDiffusionControlNetImg2ImgPipeline,
    )

    torch.manual_seed(0)
    te, tok = _clip_pair(folder, 16)
    cn = ControlNetModel(block_out_channels=(4, 8), layers_per_block=1, in_channels=4, cross_attention_dim=16,
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), norm_num_groups=2,
                         attention_head_dim=4, conditioning_embedding_out_channels=(4, 4, 4, 4))
    pipe = StableDiffusionControlNetImg2ImgPipeline(
        vae=_kl_vae(), text_encoder=te, tokenizer=tok, unet=_sd_unet(), controlnet=cn,
        scheduler=EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def make_tiny_sdxl_controlnet(folder: Path) -> Path:
    """A tiny SDXL base folder and, beside it as ``<folder>-controlnet``, a tiny SDXL ControlNet repo in the
    layout xinsir/controlnet-tile-sdxl-1.0 publishes (config.json + diffusion_pytorch_model.safetensors at
    the root): a real user's two downloads, which the profile puts together at load time."""
    import torch
    from diffusers import ControlNetModel, EulerDiscreteScheduler, StableDiffusionXLPipeline

    torch.manual_seed(0)
    te, tok = _clip_pair(folder, 16)
    te2, tok2 = _clip_pair(folder, 16, projection=True)
    unet = sdxl_unet()
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="leading", steps_offset=1)
    StableDiffusionXLPipeline(vae=_kl_vae(), text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2,
                              unet=unet, scheduler=sched).save_pretrained(folder, safe_serialization=True)
    torch.manual_seed(1)
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 4, 4, 4))
    for name, prm in cn.named_parameters():  # the zero convolutions, zero until trained: random here, so the
        if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
            torch.nn.init.normal_(prm, std=0.5)  # condition reaches the UNet and a test can see it
    cn.save_pretrained(folder.parent / (folder.name + "-controlnet"), safe_serialization=True)
    return folder


def make_tiny_pix2pix(folder: Path) -> Path:
    """A tiny InstructPix2Pix folder (UNet with 8 input channels: latents + the encoded condition image)."""
    import torch
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInstructPix2PixPipeline

    torch.manual_seed(0)
    te, tok = _clip_pair(folder, 16)
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=_kl_vae(), text_encoder=te, tokenizer=tok, unet=_sd_unet(8),
        scheduler=EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def make_tiny_upscaler(folder: Path) -> Path:
    """A tiny SD x4 upscaler folder: the UNet takes latents + the low-resolution image (7 channels) and a noise
    level class embedding; the autoencoder upsamples 4x."""
    import torch
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline, UNet2DConditionModel

    torch.manual_seed(0)
    te, tok = _clip_pair(folder, 16)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=2, attention_head_dim=4, num_class_embeds=351)
    vae = _kl_vae(blocks=3, scaling_factor=0.08333)
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet, low_res_scheduler=DDPMScheduler(),
        scheduler=DDIMScheduler(prediction_type="v_prediction"), max_noise_level=350)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def make_tiny_flux(folder: Path) -> Path:
    """A tiny FLUX.1-layout folder: CLIP (pooled) + T5 text encoders, a 1+1-block flux transformer over 2x2
    latent patches, a 16-channel-style autoencoder (here 4 latent channels, 8x downsampling)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    te, tok = _clip_pair(folder, 16)
    tok2 = t5_tokenizer()
    tr = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                pooled_projection_dim=16, axes_dims_rope=[2, 2, 4])
    vae = _kl_vae(shift_factor=0.1, scaling_factor=0.5, use_quant_conv=False, use_post_quant_conv=False)
    FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae, text_encoder=te, tokenizer=tok,
                 text_encoder_2=_t5(len(tok2), 32), tokenizer_2=tok2, transformer=tr
                 ).save_pretrained(folder, safe_serialization=True)
    return folder


def make_tiny_sd3(folder: Path) -> Path:
    """A tiny SD3-layout folder: two CLIP encoders with projection + T5, a one-block MMDiT."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    te, tok = _clip_pair(folder, 16, projection=True)
    te2, tok2 = _clip_pair(folder, 16, projection=True)
    tok3 = t5_tokenizer()
    tr = SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8,
                               num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=32,
                               pooled_projection_dim=32, out_channels=4)
    vae = _kl_vae(shift_factor=0.1, scaling_factor=0.5, use_quant_conv=False, use_post_quant_conv=False)
    StableDiffusion3Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=vae, text_encoder=te,
                             tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok2, text_encoder_3=_t5(len(tok3), 32),
                             tokenizer_3=tok3, transformer=tr).save_pretrained(folder, safe_serialization=True)
    return folder


def gemma_tokenizer():
    """A word-level Gemma tokenizer (BPE without merges over words and characters, written here)."""
    from transformers import GemmaTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "\u2581"] +
                                         ["\u2581" + w for w in WORDS] + list(CHARS))}
    return GemmaTokenizerFast(vocab=vocab, merges=[])


def make_tiny_sana_sprint(folder: Path) -> Path:
    """A tiny SANA-Sprint folder: Gemma-2 text encoder, a one-block linear DiT with guidance embedding and QK
    norm, a DC autoencoder (2 stages), the SCM scheduler."""
    import torch
    from diffusers import AutoencoderDC, SanaSprintPipeline, SanaTransformer2DModel, SCMScheduler
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(0)
    tok = gemma_tokenizer()
    te = Gemma2Model(Gemma2Config(head_dim=8, hidden_size=16, intermediate_size=32, num_attention_heads=2,
                                  num_hidden_layers=1, num_key_value_heads=1, vocab_size=len(tok),
                                  max_position_embeddings=1024, pad_token_id=0, bos_token_id=2, eos_token_id=1))
    tr = SanaTransformer2DModel(patch_size=1, in_channels=4, out_channels=4, num_layers=1, num_attention_heads=2,
                                attention_head_dim=4, num_cross_attention_heads=2, cross_attention_head_dim=4,
                                cross_attention_dim=8, caption_channels=16, sample_size=32,
                                qk_norm="rms_norm_across_heads", guidance_embeds=True)
    vae = AutoencoderDC(in_channels=3, latent_channels=4, attention_head_dim=2,
                        encoder_block_types=("ResBlock", "EfficientViTBlock"),
                        decoder_block_types=("ResBlock", "EfficientViTBlock"),
                        encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                        encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
                        encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1),
                        downsample_block_type="conv", upsample_block_type="interpolate",
                        decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407)
    SanaSprintPipeline(tokenizer=tok, text_encoder=te, vae=vae, transformer=tr, scheduler=SCMScheduler()
                       ).save_pretrained(folder, safe_serialization=True)
    return folder


TINY_FAMILIES = {
    "sdxl-edm": make_tiny_sdxl_edm, "controlnet": make_tiny_controlnet, "pix2pix": make_tiny_pix2pix,
    "controlnet-sdxl": make_tiny_sdxl_controlnet,
    "upscale-x4": make_tiny_upscaler, "flux": make_tiny_flux, "sd3": make_tiny_sd3,
    "sana-sprint": make_tiny_sana_sprint,
}

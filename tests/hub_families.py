"""One tiny-model factory per model family, writing a folder in the real repos' layout (the file names a
manifest's ``family`` promises: legacy tokenizer and preprocessor files included), built once per session.

A new family is one function here plus its name in FAMILIES; a new repo of a known family is only a
manifest in fixtures/hub/.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import tiny_models


def _legacy_processor_files(folder: Path) -> None:
    """The files transformers < 5 wrote and the hub repos still hold: preprocessor_config.json (the image
    processor alone) and chat_template.json, next to the processor_config.json / chat_template.jinja that
    transformers 5 writes."""
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(folder)
    ip = getattr(proc, "image_processor", None)
    if ip is not None:
        ip.save_pretrained(folder)  # preprocessor_config.json
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        (folder / "chat_template.json").write_text(json.dumps({"chat_template": jinja.read_text()}))


def _slow_clip_tokenizers(folder: Path, *subs: str) -> None:
    """The slow CLIP tokenizer files the hub repos hold (vocab.json, merges.txt, special_tokens_map.json) in
    each tokenizer subfolder, from the character tokenizer tiny_models wrote beside the folder."""
    tok = folder.parent / (folder.name + "-tok")
    for sub in subs:
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(tok / name, folder / sub / name)
        (folder / sub / "special_tokens_map.json").write_text(json.dumps({
            "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>"}))


def _sentencepiece_files(folder: Path, sub: str, model_name: str) -> None:
    """The legacy files a sentencepiece tokenizer's hub folder holds beside tokenizer.json (T5's spiece.model,
    Gemma's tokenizer.model, special_tokens_map.json): diffusers fetches the whole tokenizer folder, so an online
    run leaves them in the cache. The model is trained here on the tiny word list; transformers loads the fast
    tokenizer.json, as it does for the real repos."""
    import io

    import sentencepiece as spm
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder / sub)
    (folder / sub / "special_tokens_map.json").write_text(json.dumps(tok.special_tokens_map))
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([" ".join(tiny_models.WORDS)] * 50), model_writer=buf,
                                   vocab_size=40, model_type="unigram", hard_vocab_limit=False, minloglevel=2)
    (folder / sub / model_name).write_bytes(buf.getvalue())


def _feature_extractor(folder: Path) -> None:
    """feature_extractor/preprocessor_config.json: the CLIP image processor of SD 1.x's safety checker."""
    from transformers import CLIPImageProcessor

    fe = folder / "feature_extractor"
    fe.mkdir(exist_ok=True)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(fe)


def _names_safety_checker(folder: Path) -> None:
    """model_index.json names a safety checker and its feature extractor, as SD 1.x-derived repos' do (the rows
    pass safety_checker=None, so diffusers neither fetches nor loads it)."""
    index = json.loads((folder / "model_index.json").read_text())
    index.update(feature_extractor=["transformers", "CLIPImageProcessor"],
                 safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"], requires_safety_checker=True)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def sd(folder: Path) -> Path:
    """Stable Diffusion 1.x / 2.x layout (SD-Turbo, SD 1.5, Dreamlike Photoreal): slow CLIP tokenizer files, a
    CLIP image processor config for the feature_extractor folder."""
    tiny_models.make_tiny_sd(folder)
    _slow_clip_tokenizers(folder, "tokenizer")
    _feature_extractor(folder)
    return folder


def sd_safety(folder: Path) -> Path:
    """Stable Diffusion 1.5's layout: the sd layout whose model_index.json names a safety checker and its
    CLIP feature extractor."""
    sd(folder)
    _names_safety_checker(folder)
    return folder


def sdxl(folder: Path) -> Path:
    """Stable Diffusion XL layout (SDXL-Turbo, RealVisXL): two CLIP text encoders (the second with a
    projection), two tokenizers, a UNet with SDXL's text-time conditioning (diffusers' own SDXL test
    dimensions, scaled to this tokenizer)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    tok_dir = folder.parent / (folder.name + "-tok")
    vocab_size = tiny_models.write_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    unet = tiny_models.sdxl_unet()
    vae = AutoencoderKL(
        block_out_channels=(4, 4, 4, 4), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1,
    )
    cfg = {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1, "hidden_size": 16, "intermediate_size": 32,
           "num_attention_heads": 2, "num_hidden_layers": 2, "vocab_size": vocab_size, "max_position_embeddings": 77,
           "projection_dim": 16}
    text_encoder = CLIPTextModel(CLIPTextConfig(**cfg))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**cfg))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    pipe = StableDiffusionXLPipeline(unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler,
                                     add_watermarker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    _slow_clip_tokenizers(folder, "tokenizer", "tokenizer_2")
    # SDXL base 1.0 keeps its first autoencoder in vae_1_0/ beside vae/: diffusers' download takes the weights of
    # every subfolder, a model_index.json component or not (its allow patterns start from all model files), so an
    # online run caches vae_1_0/ too and the offline load asks for it
    shutil.copytree(folder / "vae", folder / "vae_1_0")
    return folder


def sdxl_edm(folder: Path) -> Path:
    """Playground v2.5's layout: SDXL with the EDM DPM-Solver scheduler config and the autoencoder's latent
    statistics (latents_mean / latents_std) that its model_index.json and vae/config.json carry."""
    tiny_models.make_tiny_sdxl_edm(folder)
    _slow_clip_tokenizers(folder, "tokenizer", "tokenizer_2")
    return folder


def pix2pix(folder: Path) -> Path:
    """InstructPix2Pix's layout: SD 1.5 folders with an 8-channel UNet, a safety checker named in
    model_index.json, its feature extractor, slow CLIP tokenizer files."""
    tiny_models.make_tiny_pix2pix(folder)
    _slow_clip_tokenizers(folder, "tokenizer")
    _feature_extractor(folder)
    _names_safety_checker(folder)
    return folder


def upscale_x4(folder: Path) -> Path:
    """The SD x4 upscaler's layout: low_res_scheduler/ beside scheduler/, a 7-channel UNet with the noise-level
    class embedding, an autoencoder without the last downsampling."""
    tiny_models.make_tiny_upscaler(folder)
    _slow_clip_tokenizers(folder, "tokenizer")
    return folder


def flux(folder: Path) -> Path:
    """FLUX.1's layout: CLIP (tokenizer/, slow files) + T5 (text_encoder_2/, tokenizer_2/ as a fast tokenizer),
    transformer/ and text_encoder_2/ sharded by the manifest."""
    tiny_models.make_tiny_flux(folder)
    _slow_clip_tokenizers(folder, "tokenizer")
    _sentencepiece_files(folder, "tokenizer_2", "spiece.model")
    return folder


def sd3(folder: Path) -> Path:
    """Stable Diffusion 3.x's layout: three text encoders (two CLIP with projection, T5 in text_encoder_3/ with
    fp16 shards), an MMDiT transformer/."""
    tiny_models.make_tiny_sd3(folder)
    _slow_clip_tokenizers(folder, "tokenizer", "tokenizer_2")
    _sentencepiece_files(folder, "tokenizer_3", "spiece.model")
    return folder


def sana_sprint(folder: Path) -> Path:
    """SANA-Sprint's layout: Gemma-2 text_encoder/ (sharded by the manifest), a fast Gemma tokenizer, a linear DiT
    with guidance embedding, a DC autoencoder, the SCM scheduler."""
    tiny_models.make_tiny_sana_sprint(folder)
    _sentencepiece_files(folder, "tokenizer", "tokenizer.model")
    return folder


def controlnet_sd15(folder: Path) -> Path:
    """A ControlNet repo of its own (config.json and the weights at the root), conditioned like the sd family's
    tiny UNet (its blocks, cross-attention width and 8x latent grid), as lllyasviel's SD 1.5 ControlNets are."""
    pipe = tiny_models.make_tiny_controlnet(folder.parent / (folder.name + "-pipeline"))
    shutil.copytree(pipe / "controlnet", folder)
    return folder


def controlnet_sdxl(folder: Path) -> Path:
    """An SDXL ControlNet repo (xinsir's tile): ControlNetModel's config.json and safetensors at the root, made
    from the tiny SDXL UNet it conditions."""
    base = folder.parent / (folder.name + "-base")
    tiny_models.make_tiny_sdxl_controlnet(base)
    shutil.copytree(base.parent / (base.name + "-controlnet"), folder)
    return folder


def taesd(folder: Path) -> Path:
    """A tiny autoencoder repo (AutoencoderTiny at the repo root)."""
    return tiny_models.make_tiny_taesd(folder)


def blip(folder: Path) -> Path:
    """BLIP captioning layout."""
    tiny_models.make_tiny_blip(folder)
    _legacy_processor_files(folder)
    return folder


def _words_first(folder: Path) -> Path:
    """Zero the tiny LM's output rows of its special tokens (end, padding, unknown, image), so greedy decoding
    writes vocabulary words. A random LM can end its answer at the first token, or write only <unk>: with
    tied embeddings it echoes its last input token (BLIP-2 prompts end in bos, which is OPT's eos), and a
    prompt ending in a word the tiny vocabulary lacks is echoed as <unk>. The real models write words; an
    empty caption is refused by encode, so the tiny ones must write words too."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    net = AutoModelForImageTextToText.from_pretrained(folder)
    tok = AutoProcessor.from_pretrained(folder).tokenizer  # with the image token the processor adds
    ids = sorted(set(tok.all_special_ids) | set(tok.added_tokens_decoder))
    with torch.no_grad():
        net.get_output_embeddings().weight[ids] = 0
    net.save_pretrained(folder, safe_serialization=True)
    return folder


def blip2(folder: Path) -> Path:
    """BLIP-2 (OPT) layout as transformers 5 saves it: processor_config.json with num_query_tokens and the
    config's image_token_index, which generate needs to build its prompt of image tokens."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        PreTrainedTokenizerFast,
    )

    words = ["a", "photo", "of", "the", "red", "house", "with", "white", "windows", "blue", "sky", "green", "tree"]
    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>", "<image>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>",
                                   bos_token="</s>")
    cfg = Blip2Config(
        vision_config={"hidden_size": 16, "image_size": 32, "patch_size": 8, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "intermediate_size": 32},
        qformer_config={"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
                        "intermediate_size": 32, "encoder_hidden_size": 16, "vocab_size": 30},
        text_config={"model_type": "opt", "vocab_size": len(vocab), "hidden_size": 16, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "ffn_dim": 32, "max_position_embeddings": 128,
                     "word_embed_proj_dim": 16, "bos_token_id": 1, "eos_token_id": 1, "pad_token_id": 0},
        num_query_tokens=4, image_token_index=vocab["<image>"])
    torch.manual_seed(0)
    Blip2ForConditionalGeneration(cfg).eval().save_pretrained(folder, safe_serialization=True)
    proc = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=fast,
                          num_query_tokens=4)
    proc.save_pretrained(folder)
    proc.image_processor.save_pretrained(folder)  # preprocessor_config.json
    return _words_first(folder)


def qwen2_vl(folder: Path) -> Path:
    """Qwen2-VL layout (chat_template.json, preprocessor_config.json; weights sharded by the manifest)."""
    tiny_models.make_tiny_qwen2vl(folder)
    _legacy_processor_files(folder)
    return folder


def qwen2_5_vl(folder: Path) -> Path:
    """Qwen2.5-VL layout (window-attention vision tower, chat_template.json, preprocessor_config.json): the tiny
    Qwen2-VL tokenizer, template and image processor (the 2.5 repos use Qwen2-VL's image processor), the 2.5
    model classes."""
    import torch
    from transformers import (
        AutoProcessor,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
    )

    scratch = folder.parent / (folder.name + "-qwen2")
    tiny_models.make_tiny_qwen2vl(scratch)
    old = AutoProcessor.from_pretrained(scratch)
    vocab = old.tokenizer.get_vocab()
    Qwen2_5_VLProcessor(image_processor=old.image_processor, tokenizer=old.tokenizer,
                        video_processor=old.video_processor, chat_template=old.chat_template).save_pretrained(folder)
    cfg = Qwen2_5_VLConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
                     "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                     "bos_token_id": 0, "eos_token_id": vocab["<|im_end|>"], "pad_token_id": 0},
        vision_config={"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                       "fullatt_block_indexes": [1]},
        image_token_id=vocab["<|image_pad|>"], video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"], vision_end_token_id=vocab["<|vision_end|>"])
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(cfg).eval().save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(scratch)
    _legacy_processor_files(folder)
    return folder


def florence2(folder: Path) -> Path:
    """Florence-2 as transformers ships it natively (florence-community): DaViT vision tower, BART encoder-decoder
    with tied embeddings, a CLIP image processor of fixed size whose image_seq_length is the vision tower's
    token count (a 4x4 grid after strides 4 and 2, plus the pooled token), the <image> token named on the
    tokenizer."""
    import torch
    from transformers import CLIPImageProcessor, Florence2Config, Florence2ForConditionalGeneration, Florence2Processor

    fast = tiny_models.wordlevel_tokenizer(["<s>", "<pad>", "</s>", "<image>"], "</s>", "<pad>", "<s>",
                                           extra_special_tokens={"image_token": "<image>"})
    vocab = fast.get_vocab()
    ip = CLIPImageProcessor(size={"height": 32, "width": 32}, do_center_crop=False)
    ip.image_seq_length = 4 * 4 + 1
    Florence2Processor(image_processor=ip, tokenizer=fast).save_pretrained(folder)
    cfg = Florence2Config(
        vision_config={"depths": [1, 1], "patch_size": [7, 3], "patch_stride": [4, 2], "patch_padding": [3, 1],
                       "patch_prenorm": [False, True], "embed_dim": [8, 16], "num_heads": [2, 2], "num_groups": [2, 2],
                       "window_size": 2, "projection_dim": 16, "max_position_embeddings": 8,
                       "max_temporal_embeddings": 2},
        text_config={"model_type": "bart", "vocab_size": len(vocab), "d_model": 16, "encoder_layers": 1,
                     "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                     "encoder_ffn_dim": 32, "decoder_ffn_dim": 32, "max_position_embeddings": 128,
                     "bos_token_id": vocab["<s>"], "eos_token_id": vocab["</s>"], "pad_token_id": vocab["<pad>"],
                     "decoder_start_token_id": vocab["</s>"], "forced_eos_token_id": vocab["</s>"]},
        image_token_id=vocab["<image>"])
    torch.manual_seed(0)
    Florence2ForConditionalGeneration(cfg).eval().save_pretrained(folder, safe_serialization=True)
    _words_first(folder)  # tied embeddings: the decoder would echo its start token, </s>
    _legacy_processor_files(folder)
    return folder


def instructblip(folder: Path) -> Path:
    """InstructBLIP layout: the tiny folder (its Q-Former tokenizer in qformer_tokenizer/), the legacy
    processor files, words first."""
    tiny_models.make_tiny_instructblip(folder)
    _words_first(folder)
    _legacy_processor_files(folder)
    return folder


def _chat_vlm(make: Callable[[Path], Path]) -> Callable[[Path], Path]:
    """A chat VLM layout of the captioner line-up: the tiny folder plus the legacy processor files."""

    def build(folder: Path) -> Path:
        make(folder)
        _legacy_processor_files(folder)
        return folder

    build.__doc__ = make.__doc__
    return build


FAMILIES: dict[str, Callable[[Path], Path]] = {
    "llava": _chat_vlm(tiny_models.make_tiny_llava),
    "llava-next": _chat_vlm(tiny_models.make_tiny_llava_next),
    "instructblip": instructblip,
    "smolvlm": _chat_vlm(tiny_models.make_tiny_smolvlm),
    "internvl": _chat_vlm(tiny_models.make_tiny_internvl),
    "sd": sd,
    "sd-safety": sd_safety,
    "sdxl": sdxl,
    "sdxl-edm": sdxl_edm,
    "pix2pix": pix2pix,
    "upscale-x4": upscale_x4,
    "flux": flux,
    "sd3": sd3,
    "sana-sprint": sana_sprint,
    "controlnet-sd15": controlnet_sd15,
    "taesd": taesd,
    "controlnet-sdxl": controlnet_sdxl,
    "blip": blip,
    "blip2": blip2,
    "qwen2-vl": qwen2_vl,
    "qwen2.5-vl": qwen2_5_vl,
    "florence2": florence2,
}

"""Tiny randomly initialised learned models, saved with ``save_pretrained`` so that the code under test loads
them through the same ``from_pretrained`` path as a real checkpoint folder. Tokenizer files are written locally
(byte-level CLIP vocabulary without merges, a small BERT WordPiece vocabulary): nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def byte_chars() -> list[str]:
    """The 256 printable stand-ins of GPT-2/CLIP byte-level BPE, in byte order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_tokenizer(folder: Path, max_length: int = 16):
    """A CLIPTokenizer over single characters (each byte, and each byte ending a word), no merges."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in byte_chars():
            vocab.setdefault(c + suffix, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length)


def clip_text_config(vocab_size: int, max_length: int = 16):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        max_position_embeddings=max_length,
    )


def ip2p_pipeline(folder: Path) -> Path:
    """A tiny random StableDiffusionInstructPix2PixPipeline (UNet with 8 input channels, 2-level VAE,
    2-layer CLIP text encoder, PNDM), saved to ``folder``."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    tok = clip_tokenizer(folder.parent / f"{folder.name}_tokenizer")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=8,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        layers_per_block=1,
    )
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(clip_text_config(len(tok))),
        tokenizer=tok,
        unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return folder


def bert_tokenizer(folder: Path, words: list[str]):
    """A BertTokenizer over a small WordPiece vocabulary: special tokens, ``words``, '.', single letters."""
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *words, *letters, *("##" + c for c in letters)]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return BertTokenizer(str(folder / "vocab.txt"))


def grounding_dino(folder: Path, words: list[str]) -> Path:
    """A tiny random Grounding DINO (Swin backbone with 12-channel patches, 1-layer BERT, d_model 32,
    20 queries) and its processor (PIL image processor, local BERT vocabulary), saved to ``folder``."""
    from transformers import (
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import GroundingDinoImageProcessorPil

    tok = bert_tokenizer(folder.parent / f"{folder.name}_vocab", words)
    swin = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=12,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_indices=[2, 3, 4],
    )
    bert = BertConfig(
        vocab_size=len(tok),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    cfg = GroundingDinoConfig(
        backbone_config=swin,
        text_config=bert,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,  # transformers ties bbox_embed.1.. to bbox_embed.0: at least two decoder layers
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=20,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(cfg).eval().save_pretrained(folder)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(folder)
    return folder


def clip(folder: Path) -> Path:
    """A tiny random CLIPModel (2-layer text and vision towers, 32x32 images) and its processor, saved to ``folder``."""
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPVisionConfig
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = clip_tokenizer(folder.parent / f"{folder.name}_tokenizer", max_length=32)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    model = CLIPModel(
        CLIPConfig(
            text_config=clip_text_config(len(tok), 32).to_dict(), vision_config=vision.to_dict(), projection_dim=16
        )
    )
    model.eval().save_pretrained(folder)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=tok).save_pretrained(folder)
    return folder

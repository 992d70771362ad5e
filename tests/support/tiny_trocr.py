"""A tiny TrOCR (ViT encoder + TrOCR decoder) with random weights, saved like a real one.

``build_tiny_trocr(folder)`` writes the model, its image processor and a word-level tokenizer
built offline into ``folder``; ``TrOCRProcessor.from_pretrained(folder)`` and
``VisionEncoderDecoderModel.from_pretrained(folder)`` load them without the network, through
the same code path as ``microsoft/trocr-base-printed``. Its text is random words of a small
vocabulary (special tokens never win, so a line is never empty), its structure real.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, as in TrOCR's own vocabulary
WORDS = ("hello", "world", "test", "text", "line", "2024", "imganalyzer", "a", "b", "c")
IMAGE_SIZE = 32


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def build_tiny_trocr(folder: Path, seed: int = 0) -> Path:
    """Write a tiny random-weight TrOCR model and its processor to ``folder``; return it."""
    import torch
    from transformers import (
        TrOCRConfig,
        TrOCRProcessor,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    tokenizer = _tokenizer()
    encoder = ViTConfig(
        image_size=IMAGE_SIZE,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    decoder = TrOCRConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,  # TrOCR starts decoding at </s>
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config=config).eval()
    with torch.no_grad():  # special tokens score 0: random words win, so lines are not empty
        model.decoder.output_projection.weight[: len(SPECIAL_TOKENS)] = 0.0
    image_processor = ViTImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    TrOCRProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder

"""A tiny random-weight BLIP-2 (ViT, Q-Former, OPT) with its processor, saved to a folder
that ``from_pretrained`` loads offline, as it loads a real model from the hub cache.

The tokenizer is a word-level one built with the ``tokenizers`` library over a small
vocabulary, with OPT's conventions: ``</s>`` (id 2) is both BOS (prepended to every text)
and EOS, ``<pad>`` is id 1. The processor adds the ``<image>`` token at the end of the
vocabulary; the model's ``image_token_index`` points at it.

The language model's weights are drawn wider than BLIP-2's default initialisation
(``LM_INIT_RANGE``): with the default 0.02, all logits are nearly equal, so greedy decoding
emits one token whatever the image or prompt, and near-ties make the comparison of two
decoding paths meaningless. Wider weights make the text depend on the image and the prompt.
Nothing else is changed: EOS is the real EOS, and some sequences end before
``max_new_tokens`` while others do not.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "a",
    "photo",
    "of",
    "the",
    "cat",
    "dog",
    "car",
    "tree",
    "sky",
    "sun",
    "night",
    "day",
    "indoor",
    "outdoor",
    "portrait",
    "landscape",
    "street",
    "city",
    "beach",
    "mountain",
    "bright",
    "dark",
    "warm",
    "cold",
    "calm",
    "happy",
    "sad",
    "light",
    "shadow",
    "red",
    "blue",
    "green",
    "person",
    "people",
    "building",
    "water",
    "what",
    "is",
    "type",
    "scene",
    "main",
    "subject",
    "this",
    "lighting",
    "like",
    "mood",
    "question",
    "answer",
    "?",
    ":",
    ".",
)

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # OPT's ids 0..3
NUM_QUERY_TOKENS = 4
IMAGE_SIZE = 32
LM_INIT_RANGE = 0.5
SEED = 0
STOP_WORD = "tree"


def tiny_tokenizer(vocabulary_size: int = 0):  # -> PreTrainedTokenizerFast
    """The word-level tokenizer; ``vocabulary_size`` pads the vocabulary with filler tokens
    to a real model's size (the GPU kit's real-size BLIP-2)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokens = SPECIALS + WORDS
    tokens += tuple(f"[filler{i}]" for i in range(len(tokens), vocabulary_size))
    vocab = {token: i for i, token in enumerate(tokens)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    core.post_processor = processors.TemplateProcessing(
        single="</s> $A", special_tokens=[("</s>", vocab["</s>"])]
    )
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    )


def build_tiny_blip2(folder: Path) -> Path:
    """Write the tiny BLIP-2 model and processor into ``folder``; returns ``folder``."""
    import torch
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        Blip2QFormerConfig,
        Blip2VisionConfig,
        BlipImageProcessor,
        OPTConfig,
    )

    processor = Blip2Processor(
        BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tiny_tokenizer(),
        num_query_tokens=NUM_QUERY_TOKENS,
    )
    tokenizer = processor.tokenizer
    image_token = tokenizer.convert_tokens_to_ids(processor.image_token.content)
    vision = Blip2VisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=IMAGE_SIZE, patch_size=8,
    )  # fmt: skip
    qformer = Blip2QFormerConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        encoder_hidden_size=32, vocab_size=64, max_position_embeddings=64,
    )  # fmt: skip
    text = OPTConfig(
        vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=128, word_embed_proj_dim=32,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(STOP_WORD), init_std=LM_INIT_RANGE,
    )  # fmt: skip
    config = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        text_config=text.to_dict(),
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=image_token,
    )
    torch.manual_seed(SEED)
    model = Blip2ForConditionalGeneration(config).eval()
    _widen_language_model(model, torch.Generator().manual_seed(SEED))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _widen_language_model(model, generator) -> None:
    """Redraw the language model's and the projection's matrices with std LM_INIT_RANGE
    (see the module docstring); scaled by fan-in so activations stay bounded."""
    import torch

    with torch.no_grad():
        for module in (model.language_projection, model.language_model):
            for name, weight in module.named_parameters():
                if weight.dim() == 2 and "norm" not in name:
                    fan_in = weight.shape[1]
                    scale = LM_INIT_RANGE * (32 / fan_in) ** 0.5
                    weight.copy_(torch.randn(weight.shape, generator=generator) * scale)

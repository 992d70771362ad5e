"""A tiny GroundingDINO with random weights, saved the way Hugging Face repos are, so that
``from_pretrained(folder)`` loads it offline through the same code path as a real model.

GroundingDINO's processor and model hard-code the BERT ids of ``[CLS]`` (101), ``[SEP]``
(102), ``.`` (1012) and ``?`` (1029) to split the prompt into phrases: the vocabulary puts
them there, the words of the default prompts after them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from imganalyzer.config import default_config

SEED = 0
# Filler tokens below the ids GroundingDINO hard-codes; words from here on.
FIRST_WORD_ID = 1030
SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
PUNCTUATION_IDS = {".": 1012, "?": 1029}
EXTRA_WORDS = ("traffic", "light", "red", "green", "cup", "coffee")
IMAGE_SIZE = {"shortest_edge": 64, "longest_edge": 96}


def tiny_vocabulary(words: tuple[str, ...] = ()) -> dict[str, int]:
    """WordPiece vocabulary with the special ids GroundingDINO expects, then ``words``."""
    vocab = {**SPECIAL_IDS, **PUNCTUATION_IDS}
    taken = set(vocab.values())
    vocab.update({f"[unused{i}]": i for i in range(FIRST_WORD_ID) if i not in taken})
    prompt_words = sorted(
        {w for p in default_config()["objects"]["prompts"] for w in p.split()} | set(EXTRA_WORDS)
    )
    for word in [*prompt_words, *words]:
        vocab.setdefault(word, len(vocab))
    return vocab


def tiny_config(vocab_size: int):
    """Swin backbone (3 stages of 1 block), 1-layer BERT, d_model 32, 30 queries."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1],
        num_heads=[1, 2, 4],
        window_size=4,
        out_features=["stage1", "stage2", "stage3"],
    )
    text = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=30,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=64,
    )


def build_tiny_groundingdino(folder: Path, words: tuple[str, ...] = ()) -> Path:
    """Write a seeded tiny GroundingDINO (model, tokenizer, image processor) to ``folder``.

    Small enough to load and detect in well under a second on a CPU core."""
    vocab = tiny_vocabulary(words)
    return save_groundingdino(folder, tiny_config(len(vocab)), vocab, IMAGE_SIZE)


def save_groundingdino(
    folder: Path, config, vocab: dict[str, int], image_size: dict[str, int]
) -> Path:
    """Save a GroundingDINO of ``config`` with seeded random weights, a WordPiece tokenizer
    of ``vocab`` and an image processor resizing to ``image_size``, as a Hugging Face repo."""
    from transformers import (
        BertTokenizer,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    folder = Path(folder)
    torch.manual_seed(SEED)
    model = GroundingDinoForObjectDetection(config).eval()
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    image_processor = GroundingDinoImageProcessor(size=image_size)
    model.save_pretrained(folder)
    GroundingDinoProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


class ReplayedQuerySelection:
    """Records the query selection (GroundingDINO's one ``torch.topk``: the encoder proposals
    that become decoder queries) of a reference run and replays it in later runs.

    With random weights the proposal scores nearly tie, so any numerical change (1e-4 input
    noise in fp32 already) selects other queries and outputs cannot be compared query by
    query; replaying the reference selection isolates the numerical drift of the rest.
    """

    def __init__(self) -> None:
        self.recorded: list[torch.Tensor] = []
        self.replaying = False
        self._calls = 0

    def __enter__(self) -> ReplayedQuerySelection:
        self._original, self._calls = torch.topk, 0
        torch.topk = self._topk
        return self

    def __exit__(self, *exc: object) -> None:
        torch.topk = self._original

    def replay(self) -> ReplayedQuerySelection:
        self.replaying = True
        return self

    def _topk(self, values: torch.Tensor, k: int, dim: int = -1, *args, **kwargs):
        if not self.replaying:
            result = self._original(values, k, dim, *args, **kwargs)
            self.recorded.append(result.indices)
            return result
        indices = self.recorded[self._calls % len(self.recorded)].to(values.device)
        self._calls += 1
        return torch.return_types.topk((values.gather(dim, indices), indices))

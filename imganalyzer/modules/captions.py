"""Captions and answers to configured questions (BLIP-2 through transformers), from the
``clip`` tier of a shard.

Output per shard: ``<shard>.jsonl`` rows with ``model``, ``caption`` and ``answers``
(question key -> answer), in manifest order; error rows for images that could not be
decoded.

The vision tower, the Q-Former and the language projection run ONCE per image (OPP-2):
``model.generate`` would run them again for every prompt. Their output (the projected
query embeddings) is put in place of the image tokens of every prompt, the caption's and
one per question, and a single ``language_model.generate`` call decodes all images times
all prompts together (left padding, attention masks, greedy). This is what
``model.generate`` does for each image and prompt, so the text is the same, token for
token (tests/unit/modules/test_captions.py checks it).

Two options change how, never what, it decodes (the same tokens in fp32; tested):
``static_cache`` gives ``generate`` a static KV cache, with which transformers compiles the
decoding step on a GPU (``torch.compile``, CUDA graphs: one launch per step instead of
hundreds); ``separate_answers`` decodes the captions and the answers in two calls, so that
the answers' batch ends with the longest answer instead of the caption. Answers are cut
to ``max_answer_tokens`` (the first tokens of a greedy decoding do not depend on how long
it may run, so both ways give the same text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from imganalyzer.config import Settings
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import RowBatch
from imganalyzer.runtime.jobshard import JobShard
from imganalyzer.runtime.registry import MODELS, ModelNotFoundError
from imganalyzer.runtime.weights import hf_load_path

# The VQA prompt format of the BLIP-2 OPT model card and paper.
QUESTION_TEMPLATE = "Question: {question} Answer:"


@dataclass(frozen=True)
class CaptionSettings(Settings):
    """The ``captions`` section: a BLIP-2 ``model``, the ``questions`` (answer key ->
    question), the text the caption starts from ("" as BLIP-2's model card: BOS alone) and
    the longest caption or answer in tokens; how it decodes (``max_answer_tokens``: None is
    max_new_tokens; ``separate_answers``, ``static_cache``: the same text either way)."""

    section = "captions"
    model: str
    questions: Mapping[str, str]
    caption_prompt: str
    max_new_tokens: int
    max_answer_tokens: int | None
    separate_answers: bool
    static_cache: bool
    batch_size: int | str
    device: str


def question_prompt(question: str) -> str:
    return QUESTION_TEMPLATE.format(question=question.strip())


class Captioner(BatchedModel):
    """A BLIP-2 model (``Blip2ForConditionalGeneration``): a caption and the answers to
    ``questions`` (key -> question) for each image, greedy, at most ``max_new_tokens``."""

    spec = MODELS["captions"]
    # BLIP-2 OPT is published for and run in fp16/bf16 (transformers keeps the Q-Former in fp32
    # under fp16).
    half_precision_safe = True

    def __init__(self, settings: CaptionSettings) -> None:
        super().__init__(settings.device, settings.batch_size)
        # questions and bounds were checked by the config's schema (validate_config)
        self.model_name, self.max_new_tokens = settings.model, settings.max_new_tokens
        answer_tokens = settings.max_answer_tokens
        self.max_answer_tokens = settings.max_new_tokens if answer_tokens is None else answer_tokens
        self.separate_answers, self.static_cache = settings.separate_answers, settings.static_cache
        self.questions = dict(settings.questions)
        self.prompts = [settings.caption_prompt.strip()] + [
            question_prompt(q) for q in self.questions.values()
        ]

    @property
    def model_id(self) -> str:
        return self.model_name

    def load_model(self, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import AutoProcessor, Blip2ForConditionalGeneration

        source = hf_load_path(self.module, self.model_name)  # fetches it if allowed
        try:
            self.processor = AutoProcessor.from_pretrained(source)
            model = Blip2ForConditionalGeneration.from_pretrained(source, dtype=dtype)
        except OSError as error:  # a failed download or an incomplete folder
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            raise ModelNotFoundError(self.model_name, source, reason) from error
        # transformers' stubs type the wrapped ``.to`` without its ``self``
        self.model = model.to(device).eval()  # type: ignore[arg-type]
        self.tokenizer = self.processor.tokenizer
        self._check_image_tokens()
        self.prompt_ids, self.prompt_mask = self._tokenize_prompts()

    def _check_image_tokens(self) -> None:
        """The model knows its image token, and the processor (if it says) agrees."""
        config = self.model.config
        image_token = self.tokenizer.convert_tokens_to_ids(self.processor.image_token.content)
        processor_tokens = getattr(self.processor, "num_query_tokens", None)
        if config.image_token_index is None:
            raise ValueError(
                f"captions: {self.model_name}: the model config has no image_token_index "
                "(a snapshot older than transformers 4.47's format: fetch it again)"
            )
        if processor_tokens not in (None, config.num_query_tokens) or (
            image_token != config.image_token_index
        ):
            raise ValueError(
                f"captions: {self.model_name}: the processor has {processor_tokens} image "
                f"tokens (id {image_token}), the model {config.num_query_tokens} "
                f"(id {config.image_token_index})"
            )

    def _tokenize_prompts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompts, length) token ids and attention mask, left-padded: the image tokens,
        then each prompt as the processor writes it (with BOS)."""
        config = self.model.config
        image_ids = [config.image_token_index] * config.num_query_tokens
        texts = self.tokenizer(self.prompts, add_special_tokens=True)["input_ids"]
        rows = [image_ids + list(ids) for ids in texts]
        length = max(map(len, rows))
        pad = self._pad_id()
        ids = torch.tensor([[pad] * (length - len(row)) + row for row in rows])
        mask = torch.tensor([[0] * (length - len(row)) + [1] * len(row) for row in rows])
        return ids.to(self.device), mask.to(self.device)

    def preprocess(self, batch: RowBatch) -> torch.Tensor:
        """(n, S, S, 3) uint8 padded tier images -> (n, 3, side, side) float32 pixel values:
        each image's true region (never the padding) through the model's image processor."""
        crops = [
            np.ascontiguousarray(image[:height, :width])
            for image, (height, width) in zip(batch.data, batch.image_sizes, strict=True)
        ]
        processed = self.processor.image_processor(
            images=crops, input_data_format="channels_last", return_tensors="pt"
        )
        return processed["pixel_values"].float()

    def query_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(n, 3, side, side) -> (n, query tokens, LM width): vision tower, Q-Former and
        projection, the steps (and dtype casts) of ``Blip2ForConditionalGeneration.generate``."""
        image_embeds = self.model.vision_model(pixel_values, return_dict=True).last_hidden_state
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        queries = self.model.query_tokens.expand(image_embeds.shape[0], -1, -1)
        query_output = self.model.qformer(
            query_embeds=queries,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            return_dict=True,
        ).last_hidden_state
        return self.model.language_projection(query_output.to(image_embeds.dtype))

    def predict_batch(self, inputs: torch.Tensor) -> torch.Tensor:
        """(n, 3, side, side) -> (n * prompts, new tokens) generated ids, image-major (rows
        that ended early padded with the pad token)."""
        features = self.query_embeddings(inputs)
        n_prompts = len(self.prompts)
        if not self.separate_answers or n_prompts == 1:
            return self.generate(features)
        captions = self.generate(features, range(1), self.max_new_tokens)
        answers = self.generate(features, range(1, n_prompts), self.max_answer_tokens)
        n, length = len(features), max(captions.shape[1], answers.shape[1])
        ids = captions.new_full((n, n_prompts, length), self._pad_id())
        ids[:, 0, : captions.shape[1]] = captions
        ids[:, 1:, : answers.shape[1]] = answers.view(n, n_prompts - 1, -1)
        return ids.view(n * n_prompts, length)

    def generate(
        self,
        features: torch.Tensor,
        prompts: Sequence[int] | None = None,
        max_new_tokens: int | None = None,
    ) -> torch.Tensor:
        """Greedy decoding of ``prompts`` (indices into ``self.prompts``; default all) for
        every image's query embeddings, in one call: (n * len(prompts), new tokens)."""
        chosen = list(range(len(self.prompts))) if prompts is None else list(prompts)
        row_prompts = chosen * len(features)  # image-major, as the rows below
        input_ids = self.prompt_ids[chosen].repeat(len(features), 1)
        mask = self.prompt_mask[chosen].repeat(len(features), 1)
        columns = mask.any(dim=0)  # a subset of the prompts may need less left padding
        input_ids, mask = input_ids[:, columns], mask[:, columns]
        embeds = self.model.get_input_embeddings()(input_ids)
        image_slots = (input_ids == self.model.config.image_token_index).unsqueeze(-1)
        features = features.repeat_interleave(len(chosen), dim=0).to(embeds.dtype)
        embeds = embeds.masked_scatter(image_slots, features)
        options: dict[str, Any] = {"cache_implementation": "static"} if self.static_cache else {}
        generated = self._language_generate(
            row_prompts,
            inputs_embeds=embeds,
            attention_mask=mask,
            input_ids=input_ids,
            max_new_tokens=self.max_new_tokens if max_new_tokens is None else max_new_tokens,
            do_sample=False,
            num_beams=1,
            **options,
        )
        return generated[:, input_ids.shape[1] :]  # decoder-only: the prompt comes back first

    def _language_generate(self, row_prompts: list[int], **kwargs: Any) -> torch.Tensor:
        """The language model's ``generate``; ``row_prompts``: each row's prompt index (for a
        subclass that steers decoding per prompt, as the GPU kit's realistic lengths do)."""
        return self.model.language_model.generate(**kwargs)

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return self.model.config.text_config.pad_token_id if pad is None else pad

    def postprocess(self, outputs: torch.Tensor) -> list[dict[str, Any]]:
        """-> one ``{"caption": str, "answers": {key: str}}`` per image; answers cut to
        ``max_answer_tokens``."""
        ids = outputs.to("cpu", copy=True)
        n_prompts = len(self.prompts)
        answer_rows = torch.arange(len(ids)) % n_prompts != 0
        ids[answer_rows, self.max_answer_tokens :] = self._pad_id()
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        texts = [text.strip() for text in texts]
        return [
            {
                "caption": texts[start],
                "answers": dict(
                    zip(self.questions, texts[start + 1 : start + n_prompts], strict=True)
                ),
            }
            for start in range(0, len(texts), n_prompts)
        ]

    def row_fields(self, result: dict[str, Any], shard: JobShard, row: int) -> dict[str, Any]:
        return {"model": self.model_id, **result}

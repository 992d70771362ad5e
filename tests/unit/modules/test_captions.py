"""Captions and answers on a tiny random BLIP-2 loaded from a folder, like real ones: the
features-once batched path against ``model.generate`` per image and prompt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from imganalyzer.decode.tiers import TierReader
from imganalyzer.modules.captions import Captioner, CaptionSettings, question_prompt
from imganalyzer.results import read_rows
from imganalyzer.runtime.batches import RowBatch
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.registry import FETCH_COMMAND, ModelNotFoundError
from tests.support.tiny_blip2 import build_tiny_blip2
from tests.unit.conftest import DECODE_FAILURE, TEST_TIERS, shard_images, write_shard

JOB = "000001-00000-00000"
MAX_NEW_TOKENS = 12
QUESTIONS = CaptionSettings.defaults().questions  # the schema's


def tiny_captioner(model: str | Path, **settings) -> Captioner:
    """A captioner on the CPU, with the schema's other settings (``settings`` changed)."""
    changes = {"model": str(model), "max_new_tokens": MAX_NEW_TOKENS, "device": "cpu"}
    return Captioner(CaptionSettings.defaults(**changes | settings))


def caption(shards: list, model: str | Path, **settings) -> Captioner:
    """The captions job of ``shards`` (in the first one's results folder)."""
    ids = [shard.id for shard in shards]
    return run_model_job(tiny_captioner(model, **settings), shards[0].layout, JOB, ids)


@pytest.fixture(scope="session")
def tiny_blip2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip2(tmp_path_factory.mktemp("tiny_blip2"))


@pytest.fixture(scope="module")
def captioner(tiny_blip2: Path) -> Captioner:
    model = tiny_captioner(tiny_blip2)
    model.load()
    return model


def stored_images(shard) -> list[tuple[int, np.ndarray]]:
    """(row, clip tier image as stored: JPEG-compressed) of the decoded rows."""
    reader = TierReader(shard.tiers)
    return [(i, reader.image("clip", i)) for i, rgb in enumerate(shard.images) if rgb is not None]


def padded(images: list[np.ndarray], side: int = TEST_TIERS["clip"]) -> RowBatch:
    canvas = np.zeros((len(images), side, side, 3), dtype=np.uint8)
    for slot, rgb in zip(canvas, images, strict=True):
        slot[: rgb.shape[0], : rgb.shape[1]] = rgb
    sizes = np.array([rgb.shape[:2] for rgb in images], dtype=np.int32)
    return RowBatch(np.arange(len(images)), canvas, sizes)


def reference_ids(captioner: Captioner, rgb: np.ndarray, prompt: str) -> torch.Tensor:
    """The new tokens of ``model.generate`` on the processor's inputs for one image."""
    inputs = captioner.processor(images=rgb, text=prompt, return_tensors="pt")
    with torch.inference_mode():
        out = captioner.model.generate(
            **inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, num_beams=1
        )
    return out[0, inputs["input_ids"].shape[1] :]


def test_preprocess_is_the_processor_on_the_true_region(captioner: Captioner, shard) -> None:
    images = [rgb for _, rgb in stored_images(shard)]
    ours = captioner.preprocess(padded(images))
    theirs = captioner.processor(images=images, return_tensors="pt")["pixel_values"]
    assert ours.shape == (len(images), 3, 32, 32)
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize(
    ("caption_prompt", "options"),
    [
        ("", {}),
        ("a photo of", {}),
        ("", {"static_cache": True}),  # a static KV cache (compiled on a GPU only)
        ("", {"separate_answers": True}),  # captions and answers in two calls
        ("a photo of", {"static_cache": True, "separate_answers": True}),
    ],
)
def test_features_once_gives_the_tokens_of_model_generate_per_image_and_prompt(
    tiny_blip2: Path, shard, caption_prompt: str, options: dict
) -> None:
    captioner = tiny_captioner(tiny_blip2, caption_prompt=caption_prompt, **options)
    captioner.load()
    images = [rgb for _, rgb in stored_images(shard)]
    with torch.inference_mode():
        generated = captioner.predict_batch(captioner.preprocess(padded(images)))
    results = captioner.postprocess(generated)
    prompts = [caption_prompt] + [question_prompt(q) for q in QUESTIONS.values()]
    eos, pad = captioner.model.generation_config.eos_token_id, captioner.tokenizer.pad_token_id
    lengths = set()
    for i, rgb in enumerate(images):
        texts = [results[i]["caption"]] + [results[i]["answers"][key] for key in QUESTIONS]
        for j, prompt in enumerate(prompts):
            expected = reference_ids(captioner, rgb, prompt)
            ours = generated[i * len(prompts) + j]
            assert torch.equal(ours[: len(expected)], expected)
            assert (ours[len(expected) :] == pad).all()  # finished early in the batch
            decoded = captioner.tokenizer.decode(expected, skip_special_tokens=True).strip()
            assert texts[j] == decoded
            lengths.add((len(expected), bool((expected == eos).any())))
    # The comparison means something: texts differ, some stop at EOS and others run out.
    assert len({r["caption"] for r in results}) > 1
    assert {stopped for _, stopped in lengths} == {True, False}


def test_answers_cut_to_max_answer_tokens_are_the_first_tokens_either_way(
    tiny_blip2: Path, shard
) -> None:
    images = padded([rgb for _, rgb in stored_images(shard)])
    whole = tiny_captioner(tiny_blip2)
    whole.load()
    with torch.inference_mode():
        ids = whole.predict_batch(whole.preprocess(images))
    n_prompts = 1 + len(QUESTIONS)
    texts = whole.tokenizer.batch_decode(ids[:, :2], skip_special_tokens=True)
    expected = [
        [text.strip() for text in texts[start + 1 : start + n_prompts]]
        for start in range(0, len(texts), n_prompts)
    ]
    assert any(
        len(text.split()) < len(full.split())
        for full, text in zip(  # cut somewhere
            whole.postprocess(ids)[0]["answers"].values(), expected[0], strict=True
        )
    )
    for separate in (False, True):
        cutter = tiny_captioner(tiny_blip2, max_answer_tokens=2, separate_answers=separate)
        cut = cutter.infer(images)
        assert [list(row["answers"].values()) for row in cut] == expected
        assert [row["caption"] for row in cut] == [row["caption"] for row in whole.infer(images)]


def test_separate_answers_decode_captions_and_answers_in_two_calls(
    tiny_blip2: Path, shard, monkeypatch: pytest.MonkeyPatch
) -> None:
    captioner = tiny_captioner(tiny_blip2, max_answer_tokens=3, separate_answers=True)
    captioner.load()
    calls = []
    generate = captioner.model.language_model.generate
    monkeypatch.setattr(
        captioner.model.language_model,
        "generate",
        lambda **kw: calls.append((len(kw["input_ids"]), kw["max_new_tokens"])) or generate(**kw),
    )
    images = [rgb for _, rgb in stored_images(shard)]
    captioner.infer(padded(images))
    assert calls == [(len(images), MAX_NEW_TOKENS), (len(images) * len(QUESTIONS), 3)]


def test_vision_tower_and_generate_run_once_per_batch(
    captioner: Captioner, shard, monkeypatch: pytest.MonkeyPatch
) -> None:
    vision_calls, generate_calls = [], []
    hook = captioner.model.vision_model.register_forward_hook(
        lambda module, args, output: vision_calls.append(len(args[0]))
    )
    generate = captioner.model.language_model.generate
    monkeypatch.setattr(
        captioner.model.language_model,
        "generate",
        lambda **kwargs: generate_calls.append(len(kwargs["input_ids"])) or generate(**kwargs),
    )
    images = [rgb for _, rgb in stored_images(shard)]
    try:
        results = captioner.infer(padded(images))
    finally:
        hook.remove()
    assert vision_calls == [len(images)]
    assert generate_calls == [len(images) * (1 + len(QUESTIONS))]
    assert len(results) == len(images)


def test_shard_rows_follow_the_manifest_and_carry_decode_errors(
    tiny_blip2: Path, shard, tmp_path: Path
) -> None:
    questions = {"scene": "What type of scene is this?", "where": "Where is it?"}
    job = caption([shard], tiny_blip2, questions=questions, batch_size=4)
    rows = list(read_rows(shard.layout.rows("captions", shard.id)))
    assert [row["path"] for row in rows] == [entry.path for entry in shard.entries]
    assert rows[2] == {
        "path": shard.entries[2].path,
        "size": shard.entries[2].size,
        "mtime_ns": shard.entries[2].mtime_ns,
        "status": "error",
        "error": DECODE_FAILURE,
    }
    assert job.stats.images == 6 and job.stats.batches == 2
    alone = tiny_captioner(tiny_blip2, questions=questions)
    for row, (_, rgb) in zip(
        [r for r in rows if r["status"] == "ok"], stored_images(shard), strict=True
    ):
        assert row["model"] == str(tiny_blip2)
        assert set(row["answers"]) == set(questions)
        expected = alone.infer(padded([rgb]))[0]
        assert (row["caption"], row["answers"]) == (expected["caption"], expected["answers"])


def test_batch_size_one_equals_batched(tiny_blip2: Path, shard, tmp_path: Path) -> None:
    rows = []
    for size in (1, 16):
        caption([shard], tiny_blip2, batch_size=size)
        rows.append(list(read_rows(shard.layout.rows("captions", shard.id))))
    assert rows[0] == rows[1]


def test_one_job_captions_several_shards_with_one_model_load(
    tiny_blip2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    original = Captioner.load_model
    monkeypatch.setattr(
        Captioner, "load_model", lambda self, *a: loads.append(1) or original(self, *a)
    )
    shards = [
        write_shard(tmp_path / "job", shard_images()[i * 3 :], f"00000{i}-00000") for i in range(2)
    ]
    layout = shards[0].layout
    caption(shards, tiny_blip2, batch_size=3)
    assert loads == [1]
    for i, shard in enumerate(shards):
        alone = write_shard(tmp_path / f"alone{i}", shard_images()[i * 3 :])
        caption([alone], tiny_blip2)
        together = list(read_rows(layout.rows("captions", shard.id)))
        assert [r["path"] for r in together] == [e.path for e in shard.entries]
        assert together == list(read_rows(alone.layout.rows("captions", alone.id)))


def test_no_questions_gives_a_caption_only(tiny_blip2: Path, shard) -> None:
    captioner = tiny_captioner(tiny_blip2, questions={})
    result = captioner.infer(padded([stored_images(shard)[0][1]]))
    assert result[0]["answers"] == {} and isinstance(result[0]["caption"], str)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_runs_in_half_precision(tiny_blip2: Path, shard, dtype: torch.dtype) -> None:
    # transformers keeps the Q-Former in fp32 under fp16 (not bf16): the casts between
    # the vision tower, the Q-Former and the projection must follow.
    half = tiny_captioner(tiny_blip2)
    half.load_model(torch.device("cpu"), dtype)
    half.dtype = dtype
    assert half.model.vision_model.dtype == dtype
    assert half.model.qformer.dtype == (torch.float32 if dtype == torch.float16 else dtype)
    images = [rgb for _, rgb in stored_images(shard)[:2]]
    results = half.infer(padded(images))
    assert [set(r["answers"]) for r in results] == [set(QUESTIONS)] * 2


def test_a_missing_local_model_names_the_folder_and_how_to_fetch(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "blip2"
    with pytest.raises(ModelNotFoundError) as caught:
        tiny_captioner(missing).load()
    assert str(missing) in str(caught.value) and FETCH_COMMAND in str(caught.value)


def test_an_uncached_hub_model_fails_fast_when_downloads_are_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as caught:
        tiny_captioner("Salesforce/blip2-opt-2.7b").load()
    message = str(caught.value)
    assert "Salesforce/blip2-opt-2.7b" in message and "HF_HUB_OFFLINE" in message


def test_a_hub_model_loads_from_the_cache_when_downloads_are_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--org--tiny-blip2"
    build_tiny_blip2(repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    captioner = tiny_captioner("org/tiny-blip2", max_new_tokens=4)
    captioner.load()
    assert captioner.model_id == "org/tiny-blip2"
    assert captioner.model.config.num_query_tokens == 4

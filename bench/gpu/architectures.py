"""The models the GPU kit measures, built from configs with random weights (no download).

Real size (the GPU run): open_clip ViT-L-14, GroundingDINO-T (Swin-T + BERT-base, the
processor's real 800 px short side), BLIP-2 with the ViT-g, the Q-Former and OPT-2.7B, and
an InsightFace-shaped pack (an SCRFD-shaped detector on a ResNet-18 trunk, about SCRFD-10G's
cost at 640 px, and a ResNet-50 ArcFace-shaped recogniser like buffalo_l's w600k_r50)
exported to ONNX. Tiny (``--cpu-smoke``): the test suite's models. Each is loaded through
the module's own loader where that loader can take a folder (open_clip, GroundingDINO,
InsightFace); BLIP-2 OPT-2.7B is built in place on the device (writing 7.7 GB to disk and
reading it back would take longer than measuring it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from gpu.baselines import KitCaptioner
from torch import nn

from imganalyzer.modules.captions import CaptionSettings
from tests.support import tiny_insightface
from tests.support.tiny_blip2 import _widen_language_model, build_tiny_blip2, tiny_tokenizer
from tests.support.tiny_groundingdino import build_tiny_groundingdino, save_groundingdino

REAL_CLIP = "ViT-L-14"
TINY_CLIP = "imganalyzer-kit-tiny-ViT"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
# grounding-dino-tiny's preprocessor_config.json
GROUNDINGDINO_IMAGE_SIZE = {"shortest_edge": 800, "longest_edge": 1333}
# Salesforce/blip2-opt-2.7b's language model
OPT_2_7B = {
    "hidden_size": 2560, "ffn_dim": 10240, "num_hidden_layers": 32, "num_attention_heads": 32,
    "word_embed_proj_dim": 2560, "max_position_embeddings": 2048,
}  # fmt: skip
OPT_VOCABULARY = 50272
BLIP2_QUERY_TOKENS = 32


def clip_model(folder: Path, real: bool) -> tuple[str, None]:
    """(open_clip model name, pretrained=None): random weights through open_clip's loader."""
    if real:
        return REAL_CLIP, None
    import open_clip

    config = folder / f"{TINY_CLIP}.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(config)
    return TINY_CLIP, None


def groundingdino_t_config() -> Any:
    """GroundingDINO-T's architecture: the config's defaults are the tiny variant's."""
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(out_features=["stage2", "stage3", "stage4"])  # Swin-T defaults
    text = BertConfig()  # bert-base-uncased: 12 layers, 768 wide, 30522 tokens
    return GroundingDinoConfig(backbone_config=backbone, text_config=text)


def groundingdino_folder(folder: Path, real: bool) -> str:
    """A Hugging Face folder ``ObjectDetector`` loads with ``from_pretrained``."""
    if not real:
        return str(build_tiny_groundingdino(folder))
    from tests.support.tiny_groundingdino import tiny_vocabulary

    config = groundingdino_t_config()
    vocab = tiny_vocabulary()
    vocab.update({f"[filler{i}]": i for i in range(len(vocab), config.text_config.vocab_size)})
    return str(save_groundingdino(folder, config, vocab, GROUNDINGDINO_IMAGE_SIZE))


class RealSizeCaptioner(KitCaptioner):
    """BLIP-2 ViT-g + Q-Former + OPT-2.7B with random weights, built directly on the device
    (the language model's weights drawn wider, as in the tests, so the text depends on the
    image and the prompt). A subclass may swap the language model (bench_captions.py)."""

    language_model: dict[str, int] = OPT_2_7B
    vocabulary_size = OPT_VOCABULARY  # 0: the tests' small word list
    widen_language_model = True

    def load_model(self, device: torch.device, dtype: torch.dtype) -> None:
        from transformers import (
            Blip2Config,
            Blip2ForConditionalGeneration,
            Blip2Processor,
            Blip2QFormerConfig,
            Blip2VisionConfig,
            BlipImageProcessor,
            OPTConfig,
        )

        vision = Blip2VisionConfig()  # ViT-g/14 at 224 px
        self.processor = Blip2Processor(
            BlipImageProcessor(size={"height": vision.image_size, "width": vision.image_size}),
            tiny_tokenizer(vocabulary_size=self.vocabulary_size),
            num_query_tokens=BLIP2_QUERY_TOKENS,
        )
        self.tokenizer = self.processor.tokenizer
        text = OPTConfig(
            vocab_size=len(self.tokenizer), pad_token_id=self.tokenizer.pad_token_id,
            bos_token_id=self.tokenizer.bos_token_id, eos_token_id=self.tokenizer.eos_token_id,
            **self.language_model,
        )  # fmt: skip
        config = Blip2Config(
            vision_config=vision.to_dict(),
            qformer_config=Blip2QFormerConfig().to_dict(),
            text_config=text.to_dict(),
            num_query_tokens=BLIP2_QUERY_TOKENS,
            image_token_index=self.tokenizer.convert_tokens_to_ids(
                self.processor.image_token.content
            ),
        )
        torch.manual_seed(0)
        with torch.device(device):
            model = Blip2ForConditionalGeneration(config)
            if self.widen_language_model:
                _widen_language_model(model, _generator(device))
        self.model = model.to(dtype).eval()
        self._check_image_tokens()
        self.prompt_ids, self.prompt_mask = self._tokenize_prompts()


def _generator(device: torch.device) -> torch.Generator | None:
    return None if device.type == "meta" else torch.Generator(device).manual_seed(0)


def captioner(folder: Path, real: bool, **settings: Any) -> KitCaptioner:
    """``settings``: changes to the schema's captions settings."""
    if real:
        model = "blip2-opt-2.7b-architecture (random weights)"
        return RealSizeCaptioner(CaptionSettings.defaults(model=model, **settings))
    return KitCaptioner(CaptionSettings.defaults(model=str(build_tiny_blip2(folder)), **settings))


class _Trunk(nn.Module):
    """A ResNet-18 trunk whose three deepest feature maps (strides 8/16/32) feed one
    convolution each, as SCRFD's necks and heads do; reduced to a scalar that the detector
    adds, scaled to nothing, to every output (so it must run)."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        self.stages = nn.ModuleList([net.layer2, net.layer3, net.layer4])
        self.heads = nn.ModuleList([nn.Conv2d(c, 20, 3, 1, 1) for c in (128, 256, 512)])

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features, total = self.stem(image), image.new_zeros(())
        for stage, head in zip(self.stages, self.heads, strict=True):
            features = stage(features)
            total = total + head(features).mean()
        return total


class RealSizeScrfd(tiny_insightface.TinyScrfd):
    """The tests' SCRFD-shaped detector (bright cells are faces) at a real detector's cost."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = _Trunk()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        noise = self.trunk(image) * 1e-9
        return tuple(output + noise for output in super().forward(image))


def arcface_r50() -> nn.Module:
    """ResNet-50 to a 512-d embedding from 112x112 faces (stem stride 2, no max pool: the
    feature maps of w600k_r50's iresnet50, 56 -> 7 px)."""
    from torchvision.models import resnet50

    net = resnet50(num_classes=tiny_insightface.EMBEDDING_DIM)
    net.maxpool = nn.Identity()
    return net


def face_pack(folder: Path, real: bool) -> str:
    """A folder of ONNX files that ``FaceAnalysis`` routes by shape (a ``faces.pack``)."""
    tiny_insightface.build_tiny_insightface(folder)
    if real:
        export = tiny_insightface._export
        torch.manual_seed(0)
        (folder / "det_tiny.onnx").unlink()
        (folder / "rec_tiny.onnx").unlink()
        detector, recogniser = RealSizeScrfd().eval(), arcface_r50().eval()
        export(detector, torch.zeros(1, 3, 64, 64), folder / "det.onnx", {2: "h", 3: "w"})
        export(recogniser, torch.zeros(2, 3, 112, 112), folder / "rec.onnx", {0: "n"})
    return str(folder)

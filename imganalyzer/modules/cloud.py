"""Descriptions of each image from a remote vision model (Anthropic or OpenAI-compatible).

Off by default. For every decoded image of a shard, the job sends one tier image (the
largest tier whose long edge is at most ``max_long_edge``, 1568 px by default: the
providers' own limit; downscaled if every tier is larger) as a JPEG through the
provider's Python SDK, and asks for one JSON object: ``description``, ``keywords``,
``objects`` (notable objects) and ``text_seen``.

Sending costs money and is rate-limited by the provider, so the job:

- reuses the ok rows of the shard's previous output whose file version still matches the
  manifest: a re-run never pays twice for an image;
- runs ``concurrency`` requests at once, their starts spaced to ``requests_per_minute``;
- retries 408/409/429/5xx, timeouts and connection errors itself (the SDK's retries are
  off), with exponential backoff and jitter, honouring ``Retry-After``, at most
  ``max_retries`` times; then the image gets an error row and the shard goes on;
- retries a reply that is not the requested JSON once, then writes an error row;
- stops sending when the run's budget (``max_images_per_run``, ``max_cost_usd``) is
  spent; the remaining images get ``"skipped": "budget"`` rows. Jobs of one workflow run
  (same ``IMGANALYZER_RUN_ID``) share the budget through a ledger file.

The API key is read from the environment variable that ``api_key_env`` names, and is never
written to a log, a result, a summary or an exception message.

Output per shard: ``<shard>.jsonl`` rows with ``provider``, ``model``, ``description``,
``keywords``, ``objects``, ``text_seen`` and ``usage`` (when the API reports it).

This file holds the settings and the API key; ``cloud_budget`` the budget, its ledger and
the pacing; ``cloud_api`` the provider clients, the reply parsing and the sending of one
image with retries; ``cloud_job`` the ``BatchedModel`` describer and ``run_cloud_job``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imganalyzer.errors import ConfigError

PROVIDERS = ("anthropic", "openai")
DEFAULT_MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4.1-mini"}
DEFAULT_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
# The providers' recommended maximum: larger images are downscaled by the API anyway.
MAX_LONG_EDGE = 1568

DEFAULT_PROMPT = (
    "Describe this photo for a searchable photo catalogue. Answer with one JSON object and "
    "nothing else, with exactly these keys:\n"
    '"description": one to three sentences on what the photo shows;\n'
    '"keywords": a list of 5 to 15 short lowercase keywords (subjects, scene, style, '
    "colours, mood);\n"
    '"objects": a list of the notable objects visible, each a short noun phrase;\n'
    '"text_seen": the legible text in the image, verbatim, or "" if there is none.'
)


@dataclass
class CloudSettings:
    """The ``cloud`` section of the config. ``model``/``api_key_env`` None: the provider's
    default. Prices per million tokens, when both are set, turn the reported token usage
    into the cost of an image; ``cost_per_image_usd`` is the estimate reserved before each
    request (and the cost when no usage or price is known)."""

    provider: str = "anthropic"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 4
    requests_per_minute: float = 50.0
    max_retries: int = 6
    timeout_s: float = 60.0
    max_images_per_run: int = 1000
    max_cost_usd: float = 5.0
    cost_per_image_usd: float = 0.005
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    max_long_edge: int = MAX_LONG_EDGE
    jpeg_quality: int = 85
    max_output_tokens: int = 1024
    json_mode: bool = True  # OpenAI: response_format json_object (off for servers without it)
    prompt: str = DEFAULT_PROMPT
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> CloudSettings:
        """Settings from ``config["cloud"]`` as ``validate_config`` left it (the schema holds
        every bound and default; a default here equals the schema's, checked by a test)."""
        return cls(**dict(section))

    @property
    def model_id(self) -> str:
        return self.model or DEFAULT_MODELS.get(self.provider, "")

    @property
    def key_env(self) -> str:
        return self.api_key_env or DEFAULT_KEY_ENV.get(self.provider, "")


class CloudError(RuntimeError):
    """The job cannot go on (authentication refused, model or endpoint not found)."""


def api_key(settings: CloudSettings) -> str:
    """The key from the environment variable ``settings`` names; ConfigError if unset."""
    key = os.environ.get(settings.key_env, "").strip()
    if not key:
        raise ConfigError(
            f"cloud: the environment variable {settings.key_env} holding the "
            f"{settings.provider} API key is not set (config key 'cloud.api_key_env' names it)"
        )
    return key

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
from dataclasses import dataclass

from imganalyzer.config import Settings
from imganalyzer.errors import ConfigError
from imganalyzer.runtime.weights import REMOTE_KEY_ENV, REMOTE_MODELS


@dataclass(frozen=True)
class CloudSettings(Settings):
    """The ``cloud`` section of the config. ``model``/``api_key_env`` None: the provider's
    default. Prices per million tokens, when both are set, turn the reported token usage
    into the cost of an image; ``cost_per_image_usd`` is the estimate reserved before each
    request (and the cost when no usage or price is known). ``json_mode``: OpenAI's
    response_format json_object (off for servers without it)."""

    section = "cloud"
    provider: str
    model: str | None
    base_url: str | None
    api_key_env: str | None
    concurrency: int
    requests_per_minute: float
    max_retries: int
    timeout_s: float
    max_images_per_run: int
    max_cost_usd: float
    cost_per_image_usd: float
    input_usd_per_mtok: float | None
    output_usd_per_mtok: float | None
    max_long_edge: int
    jpeg_quality: int
    max_output_tokens: int
    json_mode: bool
    prompt: str
    backoff_base_s: float
    backoff_max_s: float

    @property
    def model_id(self) -> str:
        return self.model or REMOTE_MODELS.get(self.provider, "")

    @property
    def key_env(self) -> str:
        return self.api_key_env or REMOTE_KEY_ENV.get(self.provider, "")


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

"""Test helpers: tiny models, fakes, generated results."""

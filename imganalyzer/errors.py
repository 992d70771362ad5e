"""Errors that several layers raise (a leaf module: it imports nothing of the package)."""


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""

"""The ``imganalyzer`` command: one file per command group, shared options in ``options``."""

"""imganalyzer: analyse very large photo libraries and make them searchable."""

__version__ = "0.1.0"

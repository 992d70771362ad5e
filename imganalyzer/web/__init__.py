"""`imganalyzer serve`: a local web application over a results folder (search, image
details, people, duplicates, status). Everything it serves ships in this package."""

from imganalyzer.web.app import create_app

__all__ = ["create_app"]

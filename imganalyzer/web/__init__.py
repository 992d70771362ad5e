"""`imganalyzer serve`: a local photo browser over a results folder (timeline, viewer,
explore, map, people, search, duplicates, status). Everything it serves ships in this
package, the world map's outlines included."""

from imganalyzer.web.app import create_app

__all__ = ["create_app"]

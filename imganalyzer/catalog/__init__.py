"""The catalog: scanning the library into shard manifests, moves, and the current view."""

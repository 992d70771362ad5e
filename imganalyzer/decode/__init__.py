"""Reading images once: decoders per format, tiers, thumbnails, technical values, metadata, and
the per-shard decode and metadata jobs.
"""

"""Global steps over every shard's results: people, duplicates, XMP sidecars, the benchmark
report, compaction.
"""

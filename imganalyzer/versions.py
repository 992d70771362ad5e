"""The version strings of the workflow's stages that are not models (a rule param each:
bumping one re-runs that stage's jobs; the models' versions are in runtime/registry.py).

A module of constants that imports nothing: the workflow reads them at every parse, and
importing the stages themselves for them (zarr, the decoders, the gazetteer, Tantivy and
the index's documents) cost every run's main process over half a second.
"""

TECHNICAL_VERSION = "1"  # bump when the technical output changes
TIER_FORMAT_VERSION = "1"  # bump when the tier store's layout changes
DECODE_VERSION = f"decode-1/technical-{TECHNICAL_VERSION}/tiers-{TIER_FORMAT_VERSION}"
METADATA_VERSION = "2"  # bump when the metadata output changes
INDEX_VERSION = "3"  # 2: keys and folders in the text form of paths; 3: display names

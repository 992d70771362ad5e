"""The version strings of the decode and metadata stages (a rule param each: bumping one
re-runs that stage's jobs).

A module of constants that imports nothing: the workflow reads them at every parse, and
importing the stages themselves (zarr, the decoders, the gazetteer) cost the main process
about half a second per run.
"""

TECHNICAL_VERSION = "1"  # bump when the technical output changes
TIER_FORMAT_VERSION = "1"  # bump when the tier store's layout changes
METADATA_VERSION = "2"  # bump when the metadata output changes
DECODE_VERSION = f"decode-1/technical-{TECHNICAL_VERSION}/tiers-{TIER_FORMAT_VERSION}"

"""Image file formats: the extensions the catalog picks up and what a file's first bytes are.

Decoding goes by content, not by name: :func:`sniff` names the format from the first bytes, so
a JPEG named ``.nef`` is decoded as the JPEG it is (and its row says so).

At the package's top level, below both users: the catalog picks files by these extensions
and decode reads them by their content, and neither may import the other's way up.
"""

from __future__ import annotations

PILLOW_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif"}
)
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".hif", ".avif"})
# Every RAW extension LibRaw reads (GoPro's .gpr needs a VC-5 decoder LibRaw is built without:
# catalogued so that it gets an ``unsupported_format`` row instead of being skipped silently).
RAW_EXTENSIONS = frozenset(
    {".3fr", ".ari", ".arw", ".bay", ".cap", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf"}
    | {".fff", ".gpr", ".iiq", ".k25", ".kdc", ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf"}
    | {".ori", ".pef", ".raf", ".raw", ".rw2", ".rwl", ".sr2", ".srf", ".srw", ".x3f"}
)
# JPEG XL, decoded by libjxl through imagecodecs.
JXL_EXTENSIONS = frozenset({".jxl"})
IMAGE_EXTENSIONS = PILLOW_EXTENSIONS | HEIF_EXTENSIONS | RAW_EXTENSIONS | JXL_EXTENSIONS

# Formats :func:`sniff` names that only LibRaw reads.
RAW_FORMATS = frozenset({"cr2", "cr3", "crw", "raf", "x3f", "mrw", "orf", "rw2"})
_AVIF_BRANDS = (b"avif", b"avis")
# HEIF brands that say nothing of the codec: the compatible brands tell HEVC from AV1.
_GENERIC_HEIF_BRANDS = (b"mif1", b"msf1", b"mif2")
# libheif's compact "mini" files (ISO/IEC 23008-12 amendment 2) have this major brand and name
# their codec's brand ("heic", "avif") in the ftyp box's minor_version field.
MINI_BRAND = b"mif3"
_EXPECTED = {
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".jpe": "jpeg",
    ".jfif": "jpeg",
    ".png": "png",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".webp": "webp",
    ".bmp": "bmp",
    ".gif": "gif",
    ".heic": "heif",
    ".heif": "heif",
    ".hif": "heif",
    ".avif": "avif",
    ".jxl": "jxl",
}


# The formats the decoder reads, as a number that grows when it learns one (2: JPEG XL through
# imagecodecs, libheif's "mini" HEIF). An "unsupported_format" error row records the version
# that wrote it; a file an older version refused whose content this one reads
# (``readable_since``) is catalogued again, alone (``catalog.retries``): no re-decode of the
# whole library.
FORMATS_VERSION = 2


def readable_since(head: bytes) -> int:
    """The formats version from which a file starting with ``head`` (16+ bytes) is read:
    2 for JPEG XL and "mini" HEIF files, 1 for everything else."""
    if sniff(head) == "jxl" or head[4:12] == b"ftyp" + MINI_BRAND:
        return 2
    return 1


def sniff(head: bytes) -> str:
    """The format of a file from its first 16+ bytes: "jpeg", "png", "gif", "bmp", "webp",
    "tiff", "heif", "avif", "jxl", a RAW format ("cr2", "cr3", "crw", "raf", "x3f", "mrw",
    "orf", "rw2"), or "unknown"."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 14:
        return "bmp"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL ")):
        return "jxl"
    if head[4:8] == b"ftyp":
        return _iso_bmff_format(head)
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "raf"
    if head.startswith(b"FOVb"):
        return "x3f"
    if head.startswith(b"\x00MRM"):
        return "mrw"
    if head[6:14] == b"HEAPCCDR":
        return "crw"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "orf"
    if head[:4] == b"IIU\x00":
        return "rw2"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "cr2" if head[8:10] == b"CR" else "tiff"
    return "unknown"


def _iso_bmff_format(head: bytes) -> str:
    """ "cr3", "avif" or "heif" from an ftyp box: its major brand, or for a "mini" file the
    brand in its minor_version, or for a file of a generic HEIF brand ("mif1") an AVIF brand
    among its compatible brands (as far as ``head`` holds them)."""
    major = head[8:12]
    if major == MINI_BRAND:
        major = head[12:16]
    if major == b"crx ":
        return "cr3"
    if major in _AVIF_BRANDS:
        return "avif"
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    compatible = {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    return "avif" if major in _GENERIC_HEIF_BRANDS and compatible & set(_AVIF_BRANDS) else "heif"


def is_raw(fmt: str, extension: str) -> bool:
    """Whether LibRaw decodes a file of sniffed format ``fmt`` named with ``extension``."""
    # LibRaw also knows RAW formats without a signature (by file size, maker headers).
    return fmt in RAW_FORMATS or (fmt in ("tiff", "unknown") and extension in RAW_EXTENSIONS)


def mismatch_note(fmt: str, extension: str) -> str | None:
    """A note for a file whose content is not what its extension says ("content is JPEG,
    not .nef"); None where they agree or the format is unknown."""
    if fmt == "unknown":
        return None
    if extension in RAW_EXTENSIONS:
        agrees = fmt in RAW_FORMATS or fmt == "tiff"
    else:
        expected = _EXPECTED.get(extension)
        agrees = expected is None or expected == fmt or {expected, fmt} == {"heif", "avif"}
    return None if agrees else f"content is {fmt.upper()}, not {extension or 'no extension'}"

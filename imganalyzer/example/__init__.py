"""The example library's writers (photos with EXIF, PNG, TIFF, HEIC, DNG)."""

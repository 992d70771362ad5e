"""The EXIF the tests and benchmarks write into generated photos: one full set of fields of a
real camera (a Fujifilm X-T4 at the Eiffel Tower), and variants of it."""

from __future__ import annotations

import dataclasses

from imganalyzer.example.writers import ExifInfo

X_T4 = ExifInfo(
    make="FUJIFILM",
    model="X-T4",
    lens="XF16-80mmF4 R OIS WR",
    datetime_original="2023:07:14 18:03:22",
    offset="+02:00",
    exposure_time=1 / 250,
    f_number=5.6,
    iso=400,
    focal_length=23.0,
    focal_length_35mm=35,
    gps=(48.8583, 2.2945, 35.0),
    orientation=1,
    software="imganalyzer tests",
    artist="Test Artist",
    copyright="CC0",
    rating=3,
)

# The west longitude (a negative value) and no orientation or rating written.
X_T4_WEST = dataclasses.replace(
    X_T4, gps=(48.8583, -2.2945, 35.0), orientation=None, artist=None, copyright=None, rating=None
)

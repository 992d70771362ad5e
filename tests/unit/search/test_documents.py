"""Index documents: the schema holds every field, a path's key id and its readable words,
folder facets and text Tantivy accepts from names that are not UTF-8."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime

import tantivy

from imganalyzer.search.documents import (
    INDEX_FIELDS,
    build_schema,
    folder_facet,
    image_fields,
    key_id,
    readable_name,
    to_document,
    valid_text,
)

CAFE = os.fsdecode(b"2023/d\xfcr/caf\xe9.jpg")  # written by a Windows-1252 machine


def test_key_ids_are_stable_64_bit_and_distinct_for_undecodable_names() -> None:
    assert key_id("2021/a.jpg") == key_id("2021/a.jpg") < 2**64
    assert len({key_id(p) for p in ("a.jpg", "b.jpg", CAFE, "2023/dür/café.jpg")}) == 4
    digest = hashlib.blake2b(b"2023/d\xfcr/caf\xe9.jpg", digest_size=8).digest()
    assert key_id(CAFE) == int.from_bytes(digest, "big")  # the file name's own bytes


def test_a_name_that_is_not_utf8_reads_as_windows_1252_words() -> None:
    assert readable_name(CAFE) == "2023/dür/café.jpg"
    assert readable_name("plain/name.jpg") == "plain/name.jpg"
    assert readable_name(os.fsdecode(b"\x81.jpg")) == "\x81.jpg"  # undefined in cp1252


def test_text_with_lone_surrogates_is_escaped_for_tantivy() -> None:
    assert valid_text("plain") == "plain"
    assert valid_text(f"cannot read {CAFE}") == "cannot read 2023/d\\udcfcr/caf\\udce9.jpg"
    valid_text("\ud800 alone").encode("utf-8")  # no UnicodeEncodeError


def test_folder_facets_escape_their_separator_and_backslashes() -> None:
    assert folder_facet("/2021/paris/").to_path() == ["2021", "paris"]
    assert folder_facet("").is_root
    assert folder_facet("a\\b").to_path() == ["a\\\\b"]  # one level, its backslash kept
    assert folder_facet(os.fsdecode(b"caf\xe9")).to_path() == ["caf\\xe9"]


def test_every_field_of_an_image_goes_into_a_document_of_the_schema() -> None:
    schema = build_schema()
    fields = image_fields(
        CAFE, "000001-00000",
        {
            "metadata": {"status": "ok", "make": "FUJIFILM", "model": "X-T4",
                         "datetime_original": "2021-06-05T18:30:00+02:00"},
            "captions": {"status": "ok", "caption": "a cup", "answers": {"Indoors?": "yes"}},
            "ocr": {"status": "ok", "text": "Café Crème"},
            "technical": {"status": "error", "error": f"cannot read {CAFE}"},
            "faces": None,
        },
    )  # fmt: skip
    assert set(fields) <= set(INDEX_FIELDS)
    assert fields["date"] == datetime(2021, 6, 5, 18, 30) and fields["has_text"] is True
    assert fields["status"] == "error" and fields["errors"].startswith("technical: cannot read")
    assert "café" in fields["path_text"] and fields["folder"] == "/2023/d\udcfcr"
    index = tantivy.Index(schema)  # in memory
    writer = index.writer()
    writer.add_document(to_document(fields))
    writer.commit()
    index.reload()
    searcher = index.searcher()
    for query, field in (("café", "path_text"), ("cup", "caption"), ("crème", "ocr_text")):
        assert searcher.search(index.parse_query(query, [field]), 1).count == 1, field
    (stored,) = [searcher.doc(address) for _, address in searcher.search(
        tantivy.Query.all_query(), 1).hits]  # fmt: skip
    assert stored["key"] == ["2023/d\\xfcr/caf\\xe9.jpg"]  # the lossless UTF-8 text form

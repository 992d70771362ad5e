"""The image page (tier image with object and face boxes, metadata, technical values,
caption and answers, OCR lines, duplicate group, similar images) and the image files:
thumbnails, tier images, face crops and originals."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from imganalyzer.decode.names import display_names
from imganalyzer.web.data import ResultsData
from imganalyzer.web.pages_search import hit_card
from imganalyzer.web.security import inside
from imganalyzer.web.view import data_of

# Thumbnail and tier addresses carry the shard file's version (?v=): a new version is a
# new address, so browsers may keep what they fetched for good.
IMMUTABLE = "public, max-age=31536000, immutable"
SIMILAR = 12
# camera and place: their display names (decode.names), as search results show them.
METADATA_SHOWN = (
    "camera", "lens", "datetime_original", "offset_time", "exposure_time", "f_number",
    "iso", "focal_length", "focal_length_35mm", "gps_latitude", "gps_longitude",
    "gps_altitude", "place", "width", "height", "format", "artist", "copyright", "rating",
)  # fmt: skip
TECHNICAL_SHOWN = (
    "sharpness", "exposure_mean", "clipped_highlights", "clipped_shadows", "noise",
    "colorfulness", "width", "height",
)  # fmt: skip


def image_details(data: ResultsData, path: str, similar: bool = True) -> dict[str, Any] | None:
    """Everything the viewer shows, or None when the image is not in the index.
    ``similar``: also the most similar images (a pass over every vector)."""
    doc = data.document(path)
    if doc is None:
        return None
    location = data.locate(path, doc.get("shard"))
    rows = data.rows(location) if location is not None else {}
    metadata, technical = rows.get("metadata", {}), rows.get("technical", {})
    width = technical.get("width") or metadata.get("width") or doc.get("width")
    height = technical.get("height") or metadata.get("height") or doc.get("height")
    boxes = _object_boxes(rows.get("objects", {})) + _face_boxes(data, path, rows.get("faces", {}))
    captions = rows.get("captions", {})
    return {
        "path": path,
        "location": location,
        "tier": f"/tier/{location.shard}/{location.row}" if location else None,
        "width": width,
        "height": height,
        "metadata": _shown({**metadata, **display_names(metadata)}, METADATA_SHOWN),
        "technical": _shown(technical, TECHNICAL_SHOWN),
        "metadata_row": metadata,
        "technical_row": technical,
        "file_size": next((r.get("size") for r in rows.values() if r.get("size")), None),
        "aesthetic": rows.get("aesthetic", {}).get("aesthetic"),
        "caption": captions.get("caption") or doc.get("caption"),
        "answers": captions.get("answers") or {},
        "description": doc.get("description"),
        "boxes": boxes if width and height else [],
        "object_counts": _label_counts(rows.get("objects", {})),
        "faces": [b for b in boxes if b["kind"] == "face"],
        "ocr": [line.get("text", "") for line in rows.get("ocr", {}).get("lines", [])],
        "errors": [e for e in str(doc.get("errors", "")).splitlines() if e],
        "group": _duplicate_group(data, path),
        "similar": _similar(data, path) if similar else [],
        "original": data.original(path) is not None,
    }


def _shown(row: dict[str, Any], keys: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(k.replace("_", " "), row[k]) for k in keys if row.get(k) not in (None, "", [])]


def _object_boxes(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"kind": "object", "label": f"{d['label']} {d['score']:.2f}", "box": d["box"]}
        for d in row.get("detections", [])
    ]


def _label_counts(row: dict[str, Any]) -> list[tuple[str, int]]:
    return Counter(d["label"] for d in row.get("detections", [])).most_common()


def _face_boxes(data: ResultsData, path: str, row: dict[str, Any]) -> list[dict[str, Any]]:
    labels = data.face_labels(path)
    boxes = []
    for number, face in enumerate(row.get("faces", [])):
        person = labels.get(number)
        label = person[1] if person else "face"
        boxes.append({"kind": "face", "label": label, "box": face["box"], "person": person})
    return boxes


def _duplicate_group(data: ResultsData, path: str) -> dict[str, Any] | None:
    from imganalyzer.web.pages_library import keeper_of

    for group in data.duplicate_groups() or []:
        if any(m["path"] == path for m in group["members"]):
            return {**group, "keeper": keeper_of(data, group)}
    return None


def _similar(data: ResultsData, path: str) -> list[dict[str, Any]]:
    index = data.index()
    if index.vectors is None:
        return []
    try:
        return [hit_card(data, hit) for hit in index.similar(path, limit=SIMILAR)]
    except LookupError:  # no embedding for this image
        return []


def image_api(request: Request) -> Response:
    path = request.query_params.get("path", "")
    details = image_details(data_of(request), path)
    if details is None:
        return JSONResponse({"error": f"{path!r} is not in the index"}, status_code=404)
    location = details.pop("location")
    details["shard"], details["row"] = (location.shard, location.row) if location else (None, None)
    for internal in ("metadata_row", "technical_row"):
        details.pop(internal)
    return JSONResponse(details)


def _cached_bytes(request: Request, body: bytes, media_type: str) -> Response:
    """``body`` with a content ETag; 304 when the browser already holds it."""
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _shard_row(request: Request) -> tuple[str, int]:
    return request.path_params["shard"], request.path_params["row"]


def thumbnail(request: Request) -> Response:
    shard, row = _shard_row(request)
    zipped = data_of(request).thumbnail_file(shard)
    jpeg = request.app.state.thumbnail_zips.read(zipped, row) if zipped is not None else None
    if jpeg is None:
        return Response("no thumbnail", status_code=404, media_type="text/plain")
    return _cached_bytes(request, jpeg, "image/jpeg")


def tier_image(request: Request) -> Response:
    jpeg = data_of(request).tier_jpeg(*_shard_row(request))
    if jpeg is None:
        return Response("no stored image", status_code=404, media_type="text/plain")
    response = _cached_bytes(request, jpeg, "image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


def original(request: Request) -> Response:
    """The original file, from inside the library only (when it is mounted)."""
    found = data_of(request).original(request.query_params.get("path", ""))
    if found is None:
        return Response("not in the library", status_code=404, media_type="text/plain")
    return FileResponse(found, content_disposition_type="attachment")


def face_crop(request: Request) -> Response:
    data = data_of(request)
    person = data.people().people.get(request.path_params["person"])
    faces = data.layout.module_dir("faces")  # a person's crop is relative to it
    crop = inside(faces, person.crop) if person and person.crop else None
    if crop is None:
        return Response("no crop", status_code=404, media_type="text/plain")
    return FileResponse(crop, headers={"Cache-Control": "no-cache"})


def routes() -> list[Route]:
    return [
        Route("/api/image", image_api),
        Route("/thumbnail/{shard}/{row:int}", thumbnail),
        Route("/tier/{shard}/{row:int}", tier_image),
        Route("/original", original),
        Route("/face/{person:int}.jpg", face_crop),
    ]

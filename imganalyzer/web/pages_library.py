"""The people, duplicates and status pages. People edits go through the functions
`imganalyzer people` calls (one code path, one edits file); the duplicates page records
the keeper the user picks and exports delete lists, and never deletes anything."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.steps import people as people_module
from imganalyzer.web.data import ResultsData
from imganalyzer.web.view import data_of, form_of, not_found, render

# ---------------------------------------------------------------- people


# Face crops shown on a person's card in the people list.
FACES_ON_CARD = 6
# Faces shown on a person's page (the split form lists these).
FACES_ON_PAGE = 600


def people_rows(data: ResultsData) -> list[dict[str, Any]]:
    people = data.people()
    rows: list[dict[str, Any]] = []
    for person in people.people.values():
        images = {people.faces[f].path for f in person.faces}
        rows.append(
            {"id": person.id, "name": person.name, "label": person.label,
             "aliases": person.aliases, "faces": len(person.faces), "images": len(images),
             "crop": bool(person.crop), "samples": person.faces[:FACES_ON_CARD]}
        )  # fmt: skip
    rows.sort(key=lambda r: (r["name"] is None, -r["faces"], r["id"]))
    return rows


def people_page(request: Request) -> Response:
    data = data_of(request)
    message = request.query_params.get("message")
    rows = people_rows(data)
    return render(
        request, "people.html", people=rows, named=[r for r in rows if r["name"]],
        unnamed=[r for r in rows if not r["name"]], unassigned=len(data.people().unassigned),
        message=message,
    )  # fmt: skip


def person_page(request: Request) -> Response:
    data = data_of(request)
    people = data.people()
    person = people.people.get(request.path_params["person"])
    if person is None:
        return not_found(request, f"no person {request.path_params['person']}")
    faces = [{"id": f, **people.faces[f].__dict__} for f in person.faces[:FACES_ON_PAGE]]
    message = request.query_params.get("message")
    return render(
        request, "person.html", person=person, faces=faces, total=len(person.faces),
        message=message,
    )  # fmt: skip


def face_crop(request: Request) -> Response:
    """One face, cut from its image's thumbnail."""
    from imganalyzer.web.faces import FaceCrops

    record = data_of(request).people().faces.get(request.path_params["face"])
    crops: FaceCrops = request.app.state.face_crops
    jpeg = crops.jpeg(record) if record is not None else None
    if jpeg is None:
        return Response("no face crop", status_code=404, media_type="text/plain")
    return Response(
        jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=600"}
    )


def _apply_person_edit(layout: Layout, action: str, form: dict[str, list[str]]) -> str:
    """One edit as `imganalyzer people <action>` makes it; returns what was done."""
    person_id = int(form.get("id", ["0"])[0])
    value = form.get("value", [""])[0].strip()
    if action in ("name", "alias") and not value:
        raise ValueError(f"{action}: give a name")
    if action == "name":
        person = people_module.set_name(layout, person_id, value)
    elif action == "alias":
        person = people_module.add_alias(layout, person_id, value)
    elif action == "merge":
        person = people_module.merge_people(layout, [int(i) for i in form.get("ids", [])])
    elif action == "split":
        person = people_module.split_person(layout, person_id, form.get("faces", []))
    else:
        raise ValueError(f"unknown action {action!r}")
    return (
        f"{action}: {person.label} now has {len(person.faces)} faces. Search finds new names "
        "after the next run or `imganalyzer index`."
    )


async def people_edit(request: Request) -> Response:
    try:
        form = await form_of(request)
    except PermissionError as error:
        return Response(str(error), status_code=403, media_type="text/plain")
    try:
        message = _apply_person_edit(data_of(request).layout, request.path_params["action"], form)
    except (ValueError, LookupError) as error:
        message = f"not done: {error}"
    back = form.get("back", [""])[0]
    target = back if back.startswith("/people") and "//" not in back else "/people"
    return RedirectResponse(f"{target.split('?')[0]}?{_query(message=message)}", status_code=303)


def _query(**values: str) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


# ---------------------------------------------------------------- duplicates


def group_id(group: dict[str, Any]) -> str:
    paths = "\0".join(sorted(m["path"] for m in group["members"]))
    return hashlib.blake2b(paths.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def _chosen(data: ResultsData) -> dict[str, str]:
    path = data.keepers_file
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def keeper_of(data: ResultsData, group: dict[str, Any]) -> str:
    """The keeper the user picked for the group, else the suggested one."""
    picked = _chosen(data).get(group_id(group))
    if picked is not None and picked in {m["path"] for m in group["members"]}:
        return picked
    return group["keeper"]


def duplicate_rows(data: ResultsData) -> list[dict[str, Any]] | None:
    groups = data.duplicate_groups()
    if groups is None:
        return None
    rows = []
    for group in groups:
        keeper = keeper_of(data, group)
        members = []
        for member in group["members"]:
            doc = data.document(member["path"])
            location = data.locate(member["path"], doc.get("shard")) if doc else None
            thumbnail = data.thumbnail_url(location)
            members.append({**member, "thumbnail": thumbnail, "keep": member["path"] == keeper})
        rows.append({**group, "id": group_id(group), "keeper": keeper,
                     "suggested": group["keeper"], "members": members})  # fmt: skip
    return rows


def duplicates_page(request: Request) -> Response:
    return render(request, "duplicates.html", groups=duplicate_rows(data_of(request)))


async def pick_keeper(request: Request) -> Response:
    try:
        form = await form_of(request)
    except PermissionError as error:
        return Response(str(error), status_code=403, media_type="text/plain")
    data = data_of(request)
    wanted, keeper = form.get("group", [""])[0], form.get("keeper", [""])[0]
    for group in data.duplicate_groups() or []:
        if group_id(group) == wanted and keeper in {m["path"] for m in group["members"]}:
            chosen = _chosen(data)
            chosen[wanted] = keeper
            atomic_write_text(data.keepers_file, json.dumps(chosen, indent=1, ensure_ascii=False))
            break
    return RedirectResponse(f"/duplicates#g{wanted}", status_code=303)


def delete_list(request: Request) -> Response:
    """The files a user may delete: every member that is not its group's keeper."""
    fmt = request.path_params["fmt"]
    if fmt not in ("txt", "csv"):
        return not_found(request, "delete lists come as .txt or .csv")
    rows = [
        (m["path"], g["kind"], g["keeper"], g["id"])
        for g in duplicate_rows(data_of(request)) or []
        for m in g["members"]
        if not m["keep"]
    ]
    if fmt == "txt":
        body = "".join(f"{path}\n" for path, *_ in rows)
        media = "text/plain; charset=utf-8"
    else:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["path", "kind", "keeper", "group"])
        writer.writerows(rows)
        body, media = out.getvalue(), "text/csv; charset=utf-8"
    disposition = f'attachment; filename="imganalyzer-delete-list.{fmt}"'
    return Response(body, media_type=media, headers={"Content-Disposition": disposition})


# ---------------------------------------------------------------- status


def status_data(data: ResultsData) -> dict[str, Any]:
    from imganalyzer.search.status import library_status

    config = data.config
    report = library_status(data.layout, config["library"], config["modules"])
    groups = [  # the groups `imganalyzer status` prints: by module and kind of error
        {"module": g.module, "error": g.kind, "count": g.count, "paths": g.examples}
        for g in report.error_groups()
    ]
    return {**report.as_dict(), "error_groups": groups, "library": config["library"],
            "mounted": data.library.is_dir()}  # fmt: skip


def status_page(request: Request) -> Response:
    return render(request, "status.html", status=status_data(data_of(request)))


def status_api(request: Request) -> Response:
    return JSONResponse(status_data(data_of(request)))


def routes() -> list[Route]:
    return [
        Route("/people", people_page),
        Route("/people/{person:int}", person_page),
        Route("/people/{action:str}", people_edit, methods=["POST"]),
        Route("/faces/{face:str}.jpg", face_crop),
        Route("/duplicates", duplicates_page),
        Route("/duplicates/keeper", pick_keeper, methods=["POST"]),
        Route("/duplicates/delete-list.{fmt:str}", delete_list),
        Route("/status", status_page),
        Route("/api/status", status_api),
    ]

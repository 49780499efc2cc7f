"""The JSON API under /api (documented at /docs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from skyphot import __version__
from skyphot.db import crud
from skyphot.db.errors import ConflictError, NotFoundError, PermissionDeniedError
from skyphot.db.models import Job, Source, User, utcnow
from skyphot.errors import SkyphotError
from skyphot.jobs import push, store
from skyphot.jobs.colors import recalibrate_source
from skyphot.jobs.header import check_upload
from skyphot.jobs.limits import DATABASE_OUTAGE
from skyphot.jobs.queue import EmbeddedQueue
from skyphot.web.deps import (
    QueueDep,
    SessionDep,
    SettingsDep,
    UserDep,
    current_user,
    image_analysis_enabled,
)
from skyphot.web.errors import FieldError
from skyphot.web.exports import (
    photometry_ecsv,
    photometry_skyportal,
    photometry_tom,
    photometry_votable,
)
from skyphot.web.schemas import (
    ErrorOut,
    FitsInfoOut,
    GroupOut,
    InfoOut,
    InstrumentCreate,
    InstrumentOut,
    InstrumentUpdate,
    JobCreated,
    JobOut,
    JobPage,
    JobRetry,
    MembershipChange,
    PhotometryOut,
    PhotometryUpdate,
    SourceCreate,
    SourceOut,
    SourceShare,
    SourceUpdate,
    TokenOut,
    UserCreate,
    UserOut,
)
from skyphot.web.uploads import FITS_SUFFIXES, Upload, receive_multipart
from skyphot.web.views import (
    add_source,
    analysis_params,
    job_out,
    parse_obstime,
    photometry_csv,
    photometry_out,
    retry_changes,
    source_out,
)

# Database ids are the schema's INTEGER, signed 32-bit on PostgreSQL: a larger one in a path
# is a validation error (422), never an overflow inside the database driver (500).
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, PathParam(ge=0, le=MAX_ROW_ID, description="Row id.")]

log = logging.getLogger(__name__)
# What a poll of the live-notification stream survives (logged, tried again next tick): any
# database error (an outage, or a schema being migrated under it), and our own.
EVENT_POLL_ERRORS: tuple[type[BaseException], ...] = (SkyphotError, SQLAlchemyError,
                                                      *DATABASE_OUTAGE)

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 507)
}
router = APIRouter(prefix="/api", responses=ERRORS)
CATALOG_SUFFIXES = (".ecsv", ".csv", ".fits", ".fit", ".parquet", ".txt", ".dat")

UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "FITS image (.fits, .fits.fz, .fits.gz)."},
                "filter": {"type": "string", "description": "Filter; default: header."},
                "obstime": {"type": "string", "description":
                            "Observation time (ISO UTC or MJD); default: header."},
                "instrument": {"type": "string", "description":
                               "Instrument; default: header INSTRUME (created if new)."},
                "catalog": {"type": "string", "description": "Catalog name; default: auto."},
                "catalog_file": {"type": "string", "format": "binary",
                                 "description": "Reference catalog table (ECSV/CSV/FITS)."},
                "nsigma": {"type": "number", "enum": [3, 5],
                           "description": "Detection threshold and limit sigma."},
                "obstime_ref": {"type": "string", "enum": ["start", "mid"], "description":
                                "Whether obstime is the exposure start or mid (default)."},
                "target_color": {"type": "string", "description":
                                 "Target colour: 'g-r=0.3', or a number in the catalog's "
                                 "default colour."},
                "engine": {"type": "string", "enum": ["skyphot", "stdpipe"],
                           "description": "Measurement engine (default skyphot)."},
                "pixel_scale": {"type": "number", "description":
                                "Pixel scale, arcsec/px (frames without WCS)."},
                "gain": {"type": "number", "description": "Gain, e-/ADU."},
                "saturation": {"type": "number", "description": "Saturation, ADU."},
                "template": {"type": "string", "enum": ["none", "auto"], "description":
                             "Template subtraction: 'none' (default) or 'auto' (the "
                             "deepest survey image of the frame's band covering the source: "
                             "Pan-STARRS1, Legacy Survey, DES or SkyMapper, nearest band "
                             "when missing); or upload a template_file instead."},
                "template_file": {"type": "string", "format": "binary", "description":
                                  "Template FITS image of the field (.fits, .fits.fz, "
                                  ".fits.gz), without the transient."},
            },
        }}},
    }
}

# --- sources -------------------------------------------------------------------------------


@router.get("/info", response_model=InfoOut, tags=["instance"])
def info(session: SessionDep, settings: SettingsDep) -> InfoOut:
    """Version, feature flag and upload limit (no login needed); also a health check: it
    answers only when the database does."""
    session.execute(text("SELECT 1"))
    return InfoOut(
        version=__version__,
        image_analysis=settings.image_analysis,
        max_body_size=settings.max_body_size,
        database="ok",
    )


@router.post("/sources", status_code=201, response_model=SourceOut, tags=["sources"])
def create_source(body: SourceCreate, request: Request, session: SessionDep, user: UserDep,
                  settings: SettingsDep) -> SourceOut:
    """Create a source: ra/dec in degrees or sexagesimal text, or only a name (resolved
    through the name service), or import it from SkyPortal with ``{"skyportal_id": ...}``
    (id defaults to the SkyPortal id)."""
    source = add_source(session, user, settings, body)
    session.commit()
    return source_out(source)


@router.patch("/sources/{source_id}", response_model=SourceOut, tags=["sources"])
def update_source(source_id: str, body: SourceUpdate, session: SessionDep, user: UserDep,
                  settings: SettingsDep) -> SourceOut:
    """Change a source's settings: ``light_curve_colors`` on or off (points re-calibrated)."""
    source = crud.get_source(session, user, source_id)
    source.light_curve_colors = body.light_curve_colors
    session.flush()
    recalibrate_source(session, source, window_d=settings.light_curve_color_window_d)
    session.commit()
    return source_out(source)


@router.get("/sources", response_model=list[SourceOut], tags=["sources"])
def list_sources(
    session: SessionDep, user: UserDep,
    q: Annotated[str | None, Query(description="Search in id and name.")] = None,
) -> list[SourceOut]:
    """Sources you may see."""
    return [source_out(s) for s in crud.list_sources(session, user, q)]


@router.get("/sources/{source_id}", response_model=SourceOut, tags=["sources"])
def get_source(source_id: str, session: SessionDep, user: UserDep) -> SourceOut:
    """One source."""
    return source_out(crud.get_source(session, user, source_id))


@router.get("/sources/{source_id}/photometry", response_model=list[PhotometryOut],
            tags=["photometry"])
def get_photometry(
    source_id: str, session: SessionDep, user: UserDep, settings: SettingsDep,
    format: Annotated[str | None, Query(
        pattern="^(json|csv|ecsv|votable|tom)$",
        description="None: the JSON list of points; csv; ecsv or votable (astropy tables "
        "with units and magsys per point); json (SkyPortal-style records); tom (TOM "
        "Toolkit photometry CSV).")] = None,
    download: Annotated[bool, Query(description="Send as an attachment (file name "
                                    "<source>_photometry.<ext>).")] = False,
) -> Any:
    """Light curve: magnitudes and fluxes (µJy), upper limits with mag null."""
    source = crud.get_source(session, user, source_id)
    points = [photometry_out(p, user) for p in crud.list_photometry(session, source_id)]
    if format is None:
        return points
    name = f"{source_id}_photometry"
    body: str | bytes
    if format == "csv":
        body, media, ext = photometry_csv(points), "text/csv", "csv"
    elif format == "ecsv":
        body, media, ext = photometry_ecsv(points, source_id), "text/plain", "ecsv"
    elif format == "votable":
        body, media, ext = photometry_votable(points, source_id), "application/x-votable+xml", "xml"
    elif format == "tom":
        body, media, ext, name = photometry_tom(points), "text/csv", "csv", f"{source_id}_tom"
    else:
        records = photometry_skyportal(points, source.skyportal_id or source.id,
                                       settings.skyportal.filters)
        body, media, ext = json.dumps(records, indent=1), "application/json", "json"
        if not download:
            return Response(body, media_type=media)
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{name}.{ext}"'})


@router.delete("/sources/{source_id}", tags=["sources"])
def delete_source(source_id: str, session: SessionDep, user: UserDep) -> dict[str, str]:
    """Delete a source with its photometry and jobs (its creator or an admin)."""
    crud.delete_source(session, user, source_id)
    session.commit()
    return {"deleted": source_id}


@router.put("/sources/{source_id}/groups", response_model=SourceOut, tags=["sources"])
def share_source(source_id: str, body: SourceShare, session: SessionDep,
                 user: UserDep) -> SourceOut:
    """Set the groups a source is shared with (its creator or an admin)."""
    source = crud.share_source(session, user, source_id, body.groups)
    session.commit()
    return source_out(source)


@router.patch("/photometry/{photometry_id}", response_model=PhotometryOut, tags=["photometry"])
def edit_photometry(photometry_id: RowId, body: PhotometryUpdate, session: SessionDep,
                    user: UserDep) -> PhotometryOut:
    """Change a point's filter, instrument, time or comment (its owner or an admin)."""
    point = crud.update_photometry(
        session, user, photometry_id, filter_name=body.filter, instrument=body.instrument,
        mjd=parse_obstime(body.obstime) if body.obstime else None, comment=body.comment,
    )
    session.commit()
    return photometry_out(point, user)


@router.delete("/photometry/{photometry_id}", tags=["photometry"])
def delete_photometry(
    photometry_id: RowId, session: SessionDep, user: UserDep, settings: SettingsDep,
    skyportal: Annotated[bool, Query(description="Also delete the point's copy in "
                                     "SkyPortal (when it was pushed).")] = False,
) -> dict[str, Any]:
    """Delete a point (its owner or an admin); with ``skyportal=true`` in SkyPortal too."""
    point = crud.get_photometry(session, user, photometry_id)
    remote = point.skyportal_id if skyportal else None
    source_id = point.source_id
    if remote is not None:
        # SkyPortal first: if it refuses, nothing is deleted here and the user can retry.
        push.delete_remote(settings, point)
    crud.delete_photometry(session, user, photometry_id)
    source = session.get(Source, source_id)
    if source is not None:
        recalibrate_source(session, source, window_d=settings.light_curve_color_window_d)
    session.commit()
    if skyportal:
        return {"deleted": photometry_id, "skyportal_deleted": remote}
    return {"deleted": photometry_id}


@router.post("/photometry/{photometry_id}/push", status_code=202,
             response_model=PhotometryOut, tags=["photometry"])
def push_photometry(photometry_id: RowId, session: SessionDep, user: UserDep,
                    settings: SettingsDep, queue: QueueDep) -> PhotometryOut:
    """Push (or re-push: SkyPortal's copy is updated) one point to SkyPortal; the push is
    queued and retried, its state shows in ``skyportal`` of the point."""
    if settings.skyportal.push == "off":
        raise ConflictError("pushing to SkyPortal is off on this server (skyportal.push: off)")
    if not settings.skyportal.configured:
        raise ConflictError("SkyPortal is not configured on this server: set skyportal.url "
                            "and skyportal.token")
    point = crud.get_photometry(session, user, photometry_id)
    source = crud.get_source(session, user, point.source_id)
    if source.skyportal_id is None:
        raise ConflictError(
            f"source {source.id!r} is not linked to a SkyPortal source; import it from "
            "SkyPortal to push its points")
    push.mark_pending(point)
    session.commit()
    if isinstance(queue, EmbeddedQueue):
        queue.wake()
    return photometry_out(point, user)


# --- image analysis ------------------------------------------------------------------------


@router.post("/sources/{source_id}/image_analysis", status_code=202, response_model=JobCreated,
             dependencies=[Depends(image_analysis_enabled)], openapi_extra=UPLOAD_SCHEMA,
             tags=["image analysis"])
async def image_analysis(
    source_id: str, request: Request, session: SessionDep, user: UserDep,
    settings: SettingsDep, queue: QueueDep,
) -> JobCreated:
    """Upload a frame for analysis; returns the job id at once (the job runs in a worker)."""
    await run_in_threadpool(crud.get_source, session, user, source_id)
    upload = await receive_multipart(
        request, root=settings.upload_path, max_bytes=settings.max_body_bytes,
        file_fields={"file": FITS_SUFFIXES, "catalog_file": CATALOG_SUFFIXES,
                     "template_file": FITS_SUFFIXES},
        quota_bytes=settings.upload_quota_bytes,
    )
    try:
        image = upload.files.get("file")
        if image is None:
            raise FieldError("file", "choose a FITS file to upload (.fits, .fits.fz, .fits.gz)")
        # A file no setting can make usable is refused now (400), before any job exists.
        await run_in_threadpool(check_upload, image.path, display_name=image.filename)
        job = await run_in_threadpool(_create_job, session, user, source_id, upload)
    except BaseException:
        upload.discard()
        raise
    queue.submit(job.id)
    return JobCreated(job_id=job.id, state=job.state, url=f"/api/jobs/{job.id}")


def _create_job(session: Session, user: User, source_id: str, upload: Upload) -> Job:
    image = upload.files["file"]
    params = analysis_params(session, upload.fields)
    catalog_file = upload.files.get("catalog_file")
    if catalog_file is not None:
        params["catalog_file"] = str(catalog_file.path)
        params["catalog_file_hash"] = catalog_file.sha256
    template_file = upload.files.get("template_file")
    if template_file is not None:
        if params["template"] == "auto":
            raise FieldError(
                "template", "choose either an automatic template or an uploaded template file"
            )
        params["template"] = "file"
        params["template_file"] = str(template_file.path)
        params["template_file_hash"] = template_file.sha256
    kept = store.kept_upload(session, image.sha256)
    job = store.create_job(
        session, source_id=source_id, owner_id=user.id,
        upload_path=str(kept if kept is not None else image.path),
        filename=image.filename, file_hash=image.sha256, params=params,
    )
    session.commit()
    if kept is not None:
        # One copy per content: the identical file kept for an earlier job serves this one.
        image.path.unlink()
        for directory in (image.path.parent, upload.directory):
            with contextlib.suppress(OSError):  # not empty: a catalog file came along
                directory.rmdir()
    return job


@router.post("/fits/inspect", response_model=FitsInfoOut,
             dependencies=[Depends(image_analysis_enabled), Depends(current_user)],
             tags=["image analysis"])
async def inspect(request: Request, settings: SettingsDep) -> FitsInfoOut:
    """Read the header of an uploaded frame (nothing is kept): filter, time, instrument."""
    upload = await receive_multipart(
        request, root=settings.upload_path / "inspect", max_bytes=settings.max_body_bytes,
        file_fields={"file": FITS_SUFFIXES},
    )
    try:
        image = upload.files.get("file")
        if image is None:
            raise FieldError("file", "choose a FITS file to upload (.fits, .fits.fz, .fits.gz)")
        info = await run_in_threadpool(check_upload, image.path, display_name=image.filename,
                                       max_pixels=settings.max_image_pixels)
    finally:
        upload.discard()
    return FitsInfoOut.model_validate(info.as_dict())


# --- jobs ----------------------------------------------------------------------------------


@router.get("/jobs", response_model=JobPage, tags=["jobs"])
def list_all_jobs(
    session: SessionDep, user: UserDep, settings: SettingsDep,
    state: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed)$",
                                       description="Only jobs in this state.")] = None,
    source: Annotated[str | None, Query(description="Only jobs of this source id.")] = None,
    q: Annotated[str | None, Query(description="Search in file name and reason.")] = None,
    offset: Annotated[int, Query(ge=0, description="Index of the first job.")] = 0,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
) -> JobPage:
    """Jobs across all sources you may see, newest first, with paging."""
    rows, total = store.search_jobs(session, user, state=state, source_id=source, text=q,
                                    offset=offset, limit=limit)
    return JobPage(jobs=[job_out(j, settings, owner) for j, owner in rows], total=total,
                   offset=offset, limit=limit)


@router.delete("/jobs/{job_id}", tags=["jobs"])
def delete_job(job_id: RowId, session: SessionDep, user: UserDep) -> dict[str, int]:
    """Delete a failed job and its kept upload (its owner or an admin)."""
    job = store.get_job(session, user, job_id)
    upload = store.delete_failed(session, user, job)
    session.commit()
    Path(upload).unlink(missing_ok=True)
    return {"deleted": job_id}


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
def get_job(job_id: RowId, session: SessionDep, user: UserDep, settings: SettingsDep) -> JobOut:
    """State of a job: queued, running (with stage), succeeded or failed (with reason)."""
    return job_out(store.get_job(session, user, job_id), settings)


@router.get("/sources/{source_id}/jobs", response_model=list[JobOut], tags=["jobs"])
def source_jobs(source_id: str, session: SessionDep, user: UserDep,
                settings: SettingsDep) -> list[JobOut]:
    """The newest analysis jobs of a source."""
    crud.get_source(session, user, source_id)
    return [job_out(j, settings) for j in store.list_jobs(session, source_id)]


@router.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"],
             dependencies=[Depends(image_analysis_enabled)])
def retry_job(job_id: RowId, session: SessionDep, user: UserDep, settings: SettingsDep,
              queue: QueueDep, body: JobRetry | None = None) -> JobOut:
    """Run a failed job again on its kept upload, optionally with changed settings (time,
    filter, instrument, catalog, pixel scale, threshold, target colour); only jobs whose
    failure a retry can change (``retryable``)."""
    job = store.get_job(session, user, job_id)
    if not (user.is_admin or job.owner_id == user.id):
        raise PermissionDeniedError("only the owner of a job or an admin may retry it")
    changes: dict[str, Any] = {}
    if body is not None:
        changes = retry_changes(session, body, job.params)
    store.retry(session, job, changes)
    session.commit()
    queue.submit(job.id)
    return job_out(job, settings)


@router.put("/jobs/{job_id}/catalog_file", response_model=JobOut, tags=["jobs"],
            dependencies=[Depends(image_analysis_enabled)],
            openapi_extra={"requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {
                    "type": "object", "required": ["catalog_file"],
                    "properties": {"catalog_file": {
                        "type": "string", "format": "binary",
                        "description": "Reference catalog table (ECSV/CSV/FITS)."}}}}}}})
async def replace_catalog_file(job_id: RowId, request: Request, session: SessionDep,
                               user: UserDep, settings: SettingsDep) -> JobOut:
    """Give a failed job another reference catalog file before retrying it."""
    job = await run_in_threadpool(store.get_job, session, user, job_id)
    if not (user.is_admin or job.owner_id == user.id):
        raise PermissionDeniedError("only the owner of a job or an admin may change it")
    if job.state != "failed":
        raise ConflictError(f"job {job_id} is {job.state}; only a failed job's catalog file "
                            "can be replaced")
    upload = await receive_multipart(
        request, root=settings.upload_path, max_bytes=settings.max_body_bytes,
        file_fields={"catalog_file": CATALOG_SUFFIXES}, quota_bytes=settings.upload_quota_bytes,
    )
    try:
        catalog = upload.files.get("catalog_file")
        if catalog is None:
            raise FieldError("catalog_file", "choose a catalog file (ECSV, CSV, FITS)")
        job.params = {**job.params, "catalog_file": str(catalog.path),
                      "catalog_file_hash": catalog.sha256, "catalog": None}
        await run_in_threadpool(session.commit)
    except BaseException:
        upload.discard()
        raise
    return job_out(job, settings)


@router.get("/jobs/{job_id}/log", response_class=PlainTextResponse, tags=["jobs"])
def job_log(job_id: RowId, session: SessionDep, user: UserDep, settings: SettingsDep) -> str:
    """The job's log (text)."""
    store.get_job(session, user, job_id)
    path = settings.jobs_path / str(job_id) / "job.log"
    return path.read_text(encoding="utf-8") if path.is_file() else "(the job has not started)\n"


@router.get("/jobs/{job_id}/diagnostics.png", response_class=FileResponse, tags=["jobs"])
def job_diagnostics(job_id: RowId, session: SessionDep, user: UserDep,
                    settings: SettingsDep) -> FileResponse:
    """The diagnostic image of a job."""
    store.get_job(session, user, job_id)
    path: Path = settings.jobs_path / str(job_id) / "diagnostics.png"
    if not path.is_file():
        raise NotFoundError(f"job {job_id} has no diagnostic image (it failed early or runs)")
    return FileResponse(path, media_type="image/png")


# --- instruments ---------------------------------------------------------------------------


@router.get("/instruments", response_model=list[InstrumentOut], tags=["instruments"])
def list_instruments(session: SessionDep, _user: UserDep) -> list[InstrumentOut]:
    """Instruments and their filters."""
    return [InstrumentOut.model_validate(i) for i in crud.list_instruments(session)]


@router.post("/instruments", status_code=201, response_model=InstrumentOut, tags=["instruments"])
def create_instrument(body: InstrumentCreate, session: SessionDep,
                      _user: UserDep) -> InstrumentOut:
    """Add an instrument with its filters (gain e-/ADU, saturation ADU)."""
    instrument = crud.create_instrument(
        session, body.name, [f.strip() for f in body.filters if f.strip()],
        gain=body.gain, saturation=body.saturation,
    )
    session.commit()
    return InstrumentOut.model_validate(instrument)


@router.patch("/instruments/{instrument_id}", response_model=InstrumentOut,
              tags=["instruments"])
def edit_instrument(instrument_id: RowId, body: InstrumentUpdate, session: SessionDep,
                    _user: UserDep) -> InstrumentOut:
    """Change an instrument's name, filters (the full list), gain or saturation."""
    instrument = crud.update_instrument(
        session, instrument_id, name=body.name.strip() if body.name else None,
        filters=body.filters, gain=body.gain, saturation=body.saturation,
    )
    session.commit()
    return InstrumentOut.model_validate(instrument)


@router.delete("/instruments/{instrument_id}", tags=["instruments"])
def delete_instrument(instrument_id: RowId, session: SessionDep, _user: UserDep) -> dict[str, int]:
    """Delete an instrument no photometry point uses."""
    crud.delete_instrument(session, instrument_id)
    session.commit()
    return {"deleted": instrument_id}


# --- accounts ------------------------------------------------------------------------------


@router.post("/users", status_code=201, response_model=UserOut, tags=["accounts"])
def create_user(body: UserCreate, session: SessionDep, user: UserDep) -> UserOut:
    """Create an account with an API token (admins only)."""
    if not user.is_admin:
        raise PermissionDeniedError("only an admin may create accounts")
    new = crud.create_user(session, body.username, body.password, is_admin=body.is_admin,
                           groups=body.groups)
    token = crud.create_token(session, new)
    session.commit()
    return UserOut(id=new.id, username=new.username, is_admin=new.is_admin,
                   groups=sorted(g.name for g in new.groups), token=token)


@router.get("/users", response_model=list[UserOut], tags=["accounts"])
def list_users(session: SessionDep, user: UserDep) -> list[UserOut]:
    """All accounts (admins only)."""
    if not user.is_admin:
        raise PermissionDeniedError("only an admin may list accounts")
    return [UserOut(id=u.id, username=u.username, is_admin=u.is_admin,
                    groups=sorted(g.name for g in u.groups)) for u in crud.list_users(session)]


@router.get("/groups", response_model=list[GroupOut], tags=["accounts"])
def list_groups(session: SessionDep, user: UserDep) -> list[GroupOut]:
    """Your groups and their members (an admin: all groups)."""
    return [GroupOut(id=g.id, name=g.name, members=crud.group_members(session, g))
            for g in crud.list_groups(session, user)]


@router.post("/groups/{group_name}/members", response_model=GroupOut, tags=["accounts"])
def add_member(group_name: str, body: MembershipChange, session: SessionDep,
               user: UserDep) -> GroupOut:
    """Add a user to a group (members of the group or an admin; an admin may create it)."""
    group = crud.change_membership(session, user, group_name, body.username, add=True)
    session.commit()
    return GroupOut(id=group.id, name=group.name, members=crud.group_members(session, group))


@router.delete("/groups/{group_name}/members/{username}", response_model=GroupOut,
               tags=["accounts"])
def remove_member(group_name: str, username: str, session: SessionDep,
                  user: UserDep) -> GroupOut:
    """Remove a user from a group (members of the group or an admin)."""
    group = crud.change_membership(session, user, group_name, username, add=False)
    session.commit()
    return GroupOut(id=group.id, name=group.name, members=crud.group_members(session, group))


@router.get("/tokens", response_model=list[TokenOut], tags=["accounts"])
def list_tokens(session: SessionDep, user: UserDep) -> list[TokenOut]:
    """Your API tokens (names and dates; values are never shown again)."""
    return [TokenOut(id=t.id, name=t.name, created_at=t.created_at)
            for t in crud.list_tokens(session, user)]


@router.delete("/tokens/{token_id}", tags=["accounts"])
def revoke_token(token_id: RowId, session: SessionDep, user: UserDep) -> dict[str, int]:
    """Revoke one of your API tokens."""
    crud.revoke_token(session, user, token_id)
    session.commit()
    return {"revoked": token_id}


# --- live notifications --------------------------------------------------------------------


def _poll(request: Request, user_id: int, since: Any) -> list[dict[str, Any]]:
    with request.app.state.sessions() as session:
        user = session.get(User, user_id)
        if user is None:
            return []
        return [
            {"id": j.id, "source_id": j.source_id, "state": j.state, "stage": j.stage,
             "message": j.message, "filename": j.filename, "photometry_id": j.photometry_id,
             "retryable": j.state == "failed" and bool(j.retryable),
             "params": {k: v for k, v in j.params.items() if k != "catalog_file"},
             "updated_at": j.updated_at.isoformat()}
            for j in store.changed_since(session, user, since)
        ]


@router.get("/events", tags=["jobs"], response_class=StreamingResponse)
async def events(
    request: Request, user: UserDep,
    max_seconds: Annotated[float | None, Query(description="End the stream after this.")] = None,
) -> StreamingResponse:
    """Server-sent events: one ``job`` event each time one of your jobs changes state/stage."""
    user_id = user.id
    interval: float = getattr(request.app.state, "event_interval", 1.0)

    async def stream() -> AsyncIterator[str]:
        since = utcnow() - timedelta(seconds=2)
        sent: dict[int, tuple[str, str | None]] = {}
        started = last_beat = time.monotonic()
        yield "retry: 3000\n: connected\n\n"
        while max_seconds is None or time.monotonic() - started < max_seconds:
            if await request.is_disconnected():
                break
            try:
                changes = await run_in_threadpool(_poll, request, user_id, since)
            except EVENT_POLL_ERRORS as err:
                # The stream outlives a database blip; the next poll catches up.
                log.warning("live notifications of user %s: cannot read job changes (%s: %s);"
                            " trying again", user_id, type(err).__name__, err)
                changes = []
            for change in changes:
                key = (change["state"], change["stage"])
                if sent.get(change["id"]) != key:
                    sent[change["id"]] = key
                    yield f"event: job\ndata: {json.dumps(change)}\n\n"
            if changes:
                # Overlap windows a little: a row committed late with an older stamp is
                # still seen; `sent` drops the repeats.
                latest = max(c["updated_at"] for c in changes)
                since = max(since, datetime.fromisoformat(latest) - timedelta(seconds=2))
            if time.monotonic() - last_beat > 15:
                last_beat = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(interval)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

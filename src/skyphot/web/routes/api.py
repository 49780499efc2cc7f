"""The JSON API under /api (documented at /docs)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response, StreamingResponse
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from skyphot import __version__
from skyphot.db import crud
from skyphot.db.errors import NotFoundError, PermissionDeniedError
from skyphot.db.models import Job, User, utcnow
from skyphot.errors import SkyphotError
from skyphot.jobs import store
from skyphot.jobs.header import inspect_fits
from skyphot.web.deps import (
    QueueDep,
    SessionDep,
    SettingsDep,
    UserDep,
    current_user,
    image_analysis_enabled,
)
from skyphot.web.errors import FieldError
from skyphot.web.schemas import (
    ErrorOut,
    FitsInfoOut,
    InfoOut,
    InstrumentCreate,
    InstrumentOut,
    JobCreated,
    JobOut,
    JobRetry,
    PhotometryOut,
    SourceCreate,
    SourceOut,
    UserCreate,
    UserOut,
)
from skyphot.web.uploads import FITS_SUFFIXES, Upload, receive_multipart
from skyphot.web.views import (
    analysis_params,
    job_out,
    parse_obstime,
    photometry_csv,
    photometry_out,
    source_out,
)

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
                "target_color": {"type": "number", "description": "Target colour (c1-c2)."},
                "gain": {"type": "number", "description": "Gain, e-/ADU."},
                "saturation": {"type": "number", "description": "Saturation, ADU."},
                "template": {"type": "string", "enum": ["none", "auto"], "description":
                             "Template subtraction: 'none' (default) or 'auto' (survey "
                             "template); an uploaded template_file overrides it."},
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
def create_source(body: SourceCreate, session: SessionDep, user: UserDep) -> SourceOut:
    """Create a source (ra/dec in degrees)."""
    source = crud.create_source(
        session, user, source_id=body.id, ra=body.ra, dec=body.dec, name=body.name,
        redshift=body.redshift, groups=body.groups,
    )
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
    source_id: str, session: SessionDep, user: UserDep,
    format: Annotated[str, Query(pattern="^(json|csv)$",
                                 description="json (default) or csv.")] = "json",
) -> Any:
    """Light curve: magnitudes and fluxes (µJy), upper limits with mag null."""
    crud.get_source(session, user, source_id)
    points = [photometry_out(p, user) for p in crud.list_photometry(session, source_id)]
    if format == "csv":
        return Response(
            photometry_csv(points), media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{source_id}_photometry.csv"'},
        )
    return points


@router.delete("/photometry/{photometry_id}", tags=["photometry"])
def delete_photometry(photometry_id: int, session: SessionDep, user: UserDep) -> dict[str, int]:
    """Delete a point (its owner or an admin)."""
    crud.delete_photometry(session, user, photometry_id)
    session.commit()
    return {"deleted": photometry_id}


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
    job = store.create_job(
        session, source_id=source_id, owner_id=user.id, upload_path=str(image.path),
        filename=image.filename, file_hash=image.sha256, params=params,
    )
    session.commit()
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
        info = await run_in_threadpool(inspect_fits, image.path, display_name=image.filename)
    finally:
        upload.discard()
    return FitsInfoOut.model_validate(info.as_dict())


# --- jobs ----------------------------------------------------------------------------------


@router.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
def get_job(job_id: int, session: SessionDep, user: UserDep, settings: SettingsDep) -> JobOut:
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
def retry_job(job_id: int, session: SessionDep, user: UserDep, settings: SettingsDep,
              queue: QueueDep, body: JobRetry | None = None) -> JobOut:
    """Run a failed job again on its kept upload, optionally with changed parameters."""
    job = store.get_job(session, user, job_id)
    if not (user.is_admin or job.owner_id == user.id):
        raise PermissionDeniedError("only the owner of a job or an admin may retry it")
    changes: dict[str, Any] = {}
    if body is not None:
        changes = body.model_dump(exclude_none=True)
        if "obstime" in changes:
            changes["mjd"] = parse_obstime(changes.pop("obstime"))
    store.retry(session, job, changes)
    session.commit()
    queue.submit(job.id)
    return job_out(job, settings)


@router.get("/jobs/{job_id}/log", response_class=PlainTextResponse, tags=["jobs"])
def job_log(job_id: int, session: SessionDep, user: UserDep, settings: SettingsDep) -> str:
    """The job's log (text)."""
    store.get_job(session, user, job_id)
    path = settings.jobs_path / str(job_id) / "job.log"
    return path.read_text(encoding="utf-8") if path.is_file() else "(the job has not started)\n"


@router.get("/jobs/{job_id}/diagnostics.png", response_class=FileResponse, tags=["jobs"])
def job_diagnostics(job_id: int, session: SessionDep, user: UserDep,
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


# --- live notifications --------------------------------------------------------------------


def _poll(request: Request, user_id: int, since: Any) -> list[dict[str, Any]]:
    with request.app.state.sessions() as session:
        user = session.get(User, user_id)
        if user is None:
            return []
        return [
            {"id": j.id, "source_id": j.source_id, "state": j.state, "stage": j.stage,
             "message": j.message, "filename": j.filename, "photometry_id": j.photometry_id,
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
            except SkyphotError:
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

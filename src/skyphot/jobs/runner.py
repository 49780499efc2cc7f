"""The job function: one analysis, whatever queue delivered it.

``run_job`` claims the job (so a job delivered twice runs once), runs the engine with a
progress callback that records the current stage, writes the photometry point in one
transaction (an identical earlier upload is reused, never duplicated) and ends the job
``succeeded`` or ``failed`` with a reason a user understands. It never raises for a
failing analysis. While the job runs a heartbeat stamps its row; a soft time limit ends an
analysis that overruns ``job_time_limit_s`` (the queue's supervisor enforces the hard one).
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from astropy.time import Time
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from skyphot.db.crud import ensure_instrument, find_upload_point
from skyphot.db.models import Instrument, Job, Photometry, Source, utcnow
from skyphot.errors import HeaderError, SkyphotError
from skyphot.jobs import push, store
from skyphot.jobs.colors import recalibrate_source
from skyphot.jobs.header import inspect_fits
from skyphot.jobs.limits import (
    DATABASE_OUTAGE,
    Heartbeat,
    describe_database_error,
    is_database_outage,
    is_lock_conflict,
    soft_time_limit,
)
from skyphot.jobs.messages import is_retryable, user_message
from skyphot.jobs.states import JobState
from skyphot.pipeline.config import (
    AstrometryConfig,
    CalibrationConfig,
    CatalogConfig,
    HeaderOverrides,
    MeasureConfig,
    SubtractionConfig,
    Target,
)
from skyphot.pipeline.result import PhotometryResult
from skyphot.settings import Settings

log = logging.getLogger(__name__)

MeasureFunction = Callable[..., PhotometryResult]
DEFAULT_ENGINE = "skyphot.pipeline.api:measure"


def load_engine(path: str) -> MeasureFunction:
    """Import ``module:function`` (the engine, or a stand-in in tests)."""
    module_name, _, attr = path.partition(":")
    function: MeasureFunction = getattr(importlib.import_module(module_name), attr)
    return function


def job_dir(settings: Settings, job_id: int) -> Path:
    """Directory of a job's log and diagnostic image."""
    return settings.jobs_path / str(job_id)


def _log(stream: TextIO, text: str) -> None:
    stream.write(f"{utcnow().isoformat(timespec='seconds')}Z  {text}\n")
    stream.flush()


def build_config(
    job: Job, source: Source, settings: Settings, *, gain: float | None, saturation: float | None,
    mjd: float | None = None,
) -> MeasureConfig:
    """The engine configuration for a job's parameters (units as in ``MeasureConfig``);
    ``mjd``: the resolved mid-exposure time when the form gave one."""
    params = job.params
    # The worker's cache and VizieR mirror are settings, never the job's choice.
    online = {"cache_dir": None if settings.cache_dir is None else str(settings.cache_dir),
              "server": settings.vizier_server}
    if params.get("catalog_file"):
        catalog = CatalogConfig(path=params["catalog_file"], **online)
    elif params.get("catalog"):
        catalog = CatalogConfig(name=params["catalog"], **online)
    else:
        catalog = CatalogConfig(
            name=settings.catalog.name, path=settings.catalog.path, magsys=settings.catalog.magsys,
            **online,
        )
    overrides = HeaderOverrides(
        mjd=mjd if mjd is not None else params.get("mjd"),
        filter=params.get("filter"),
        instrument=params.get("instrument"),
        gain=gain,
        saturation=saturation,
    )
    return MeasureConfig(
        target=Target(ra=source.ra, dec=source.dec),
        header=overrides,
        catalog=catalog,
        nsigma=float(params.get("nsigma") or 5.0),
        target_color=params.get("target_color"),
        engine=params.get("engine") or "skyphot",
        astrometry=AstrometryConfig(pixel_scale_arcsec=params.get("pixel_scale")),
        calibration=CalibrationConfig(color_bands=tuple(params["color_bands"]))
        if params.get("color_bands") else CalibrationConfig(),
        subtraction=_subtraction(params, settings),
    )


def _subtraction(params: dict[str, object], settings: Settings) -> SubtractionConfig:
    """The job's template choice with the workers' template cache and services (settings,
    never the job's choice)."""
    tpl = settings.templates
    return SubtractionConfig(
        template=_template_choice(params),
        cache_dir=None if tpl.cache_dir is None else str(tpl.cache_dir),
        service_urls=tpl.service_urls(), timeout_s=tpl.timeout_s, retries=tpl.retries,
    )


def _template_choice(params: dict[str, object]) -> str:
    """The configured template: the uploaded file's path, 'auto' or 'none'."""
    if params.get("template") == "file":
        return str(params["template_file"])
    return str(params.get("template") or "none")


def point_from_result(job: Job, result: PhotometryResult, instrument: str | None) -> Photometry:
    """The light-curve point of a result: origin ``skyphot`` with calibration details."""
    return Photometry(
        source_id=job.source_id,
        mjd=result.mjd,
        mag=result.mag if result.detected else None,
        magerr=result.magerr if result.detected else None,
        limiting_mag=result.limiting_mag,
        limit_sigma=result.limit_nsigma,
        flux=result.flux,
        fluxerr=result.fluxerr,
        snr=result.snr,
        filter=result.filter,
        instrument=result.instrument or instrument,
        magsys=result.magsys,
        origin="skyphot",
        owner_id=job.owner_id,
        job_id=job.id,
        file_hash=job.file_hash,
        settings_hash=job.settings_hash,
        calibration={
            "catalog": result.catalog,
            "band": result.band,
            "zero_point": result.zero_point,
            "zero_point_err": result.zero_point_err,
            "color_term": result.color_term,
            "color_term_err": result.color_term_err,
            "color_bands": list(result.color_bands) if result.color_bands else None,
            "fwhm_arcsec": result.fwhm_arcsec,
            "fwhm_px": result.fwhm_px,
            "n_calib": result.n_calib,
            "flags": result.flags,
            "flag_names": result.flag_names,
            "notes": result.notes,
            "assumptions": list(result.assumptions),
            "job_id": job.id,
            # The subtraction block as the result has it (None: measured without template).
            "subtraction": None if result.subtraction is None
            else result.subtraction.model_dump(mode="json"),
            **color_record(result),
        },
    )


def color_record(result: PhotometryResult) -> dict[str, Any]:
    """What re-applying the zero point with another colour needs (no pixels): the colour
    used and the magnitude and limit without the colour-term contribution."""
    term = result.color_term or 0.0
    used = result.target_color
    shift = term * used if used is not None else 0.0
    return {
        "target_color": used,
        "color_source": result.color_source,
        "mag_nocolor": (result.mag - shift if result.detected and result.mag is not None
                        else None),
        "magerr_nocolor": result.magerr if result.detected else None,
        "limit_nocolor": result.limiting_mag - shift,
    }


LOCK_RETRIES = 8  # fresh transactions tried when SQLite reports a lock conflict


def _ensure_instrument(session: Session, name: str, filter_name: str | None) -> Instrument:
    """Get-or-create the instrument and commit, tolerating the race of two jobs meeting a
    new instrument at once: on SQLite that race is a lock conflict ("database is locked",
    not a lost connection), settled by starting a fresh transaction."""
    for attempt in range(LOCK_RETRIES):
        try:
            instrument = ensure_instrument(session, name, filter_name)
            session.commit()
            return instrument
        except OperationalError as err:
            if not is_lock_conflict(err) or attempt == LOCK_RETRIES - 1:
                raise
            session.rollback()
            log.info("instrument %r: %s; trying again", name, describe_database_error(err))
            time.sleep(0.05 * (attempt + 1) * (1 + random.random()))
    raise AssertionError("unreachable")  # the loop returns or raises


def _prepare(session: Session, job: Job, settings: Settings, stream: TextIO
             ) -> tuple[Source, dict[str, Any]]:
    source = session.get(Source, job.source_id)
    if source is None:
        raise SkyphotError(f"source {job.source_id!r} was deleted before the analysis ran")
    info = inspect_fits(job.upload_path, display_name=job.filename,
                        max_pixels=settings.max_image_pixels)
    _log(stream, f"header: {info.as_dict()}")
    params = job.params
    mjd = params.get("mjd")
    if mjd is not None and params.get("obstime_ref") == "start":
        if not info.exptime:
            raise HeaderError(
                "the observation time was given as the exposure start, but the header has no "
                "exposure time; give the mid-exposure time instead and retry"
            )
        mjd = float(mjd) + info.exptime / 2.0 / 86400.0
    if mjd is None and info.mjd_mid is None:
        raise HeaderError(
            "the image header has no observation time (no DATE-OBS or MJD-OBS); "
            "enter the observation time in the form and upload again"
        )
    mid = float(mjd) if mjd is not None else info.mjd_mid
    assert mid is not None  # checked just above
    instrument_name = params.get("instrument") or info.instrument
    gain, saturation = params.get("gain"), params.get("saturation")
    if instrument_name:
        instrument = _ensure_instrument(session, instrument_name,
                                        job.params.get("filter") or info.filter)
        instrument_name = instrument.name  # the stored spelling, whatever the header's case
        # Instrument defaults only fill what neither the form nor the header gives.
        gain = gain if gain is not None else (None if info.gain else instrument.gain)
        if saturation is None and not info.saturation:
            saturation = instrument.saturation
    resolved = {
        **params,
        "filter": params.get("filter") or info.filter,
        "instrument": instrument_name,
        "mjd": round(mid, 7),  # ~10 ms: finer differences are the same time
        "obstime_ref": None,  # folded into the resolved mid-exposure mjd
        "gain": gain if gain is not None else info.gain,
        "saturation": saturation if saturation is not None else info.saturation,
        "catalog": params.get("catalog") or (
            None if params.get("catalog_file_hash") else
            f"{settings.catalog.name or ''}|{settings.catalog.path or ''}"),
        "nsigma": float(params.get("nsigma") or 5.0),
        "engine": params.get("engine") or "skyphot",
    }
    return source, {"instrument": instrument_name, "gain": gain, "saturation": saturation,
                    "header_mjd": info.mjd_mid, "mjd": mjd,
                    "settings_hash": store.settings_hash(resolved)}


def run_job(
    job_id: int,
    *,
    settings: Settings,
    sessions: sessionmaker[Session],
    measure: MeasureFunction,
    worker: str = "worker",
) -> bool:
    """Run job ``job_id`` if it is still queued. Returns False when it was not claimable.

    A failing analysis ends the job ``failed`` (with the reason; past the soft time limit
    with the time limit message) and returns True. Only a lost database connection raises:
    the job is then handed back to the queue first (the caller retries later).
    """
    with sessions() as session:
        if not store.claim(session, job_id, worker):
            return False
    try:
        _run_claimed(job_id, settings=settings, sessions=sessions, measure=measure,
                     worker=worker)
    except DBAPIError as err:
        if is_database_outage(err):
            _hand_back(sessions, job_id, worker, patience_s=settings.job_stale_after_s,
                       reason=describe_database_error(err))
        raise
    return True


def _hand_back(sessions: sessionmaker[Session], job_id: int, worker: str, *,
               patience_s: float, reason: str) -> None:
    """Re-queue a job interrupted by a database outage, waiting up to ``patience_s`` s for
    the database; if it stays away, the sweep re-queues the job once its stamp is stale."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            with sessions() as session:
                store.release(session, job_id, worker)
        except DATABASE_OUTAGE:
            if time.monotonic() > deadline:
                log.error("job %s: the database is still unreachable; a sweep will re-queue "
                          "it once its heartbeat is stale", job_id)
                return
            time.sleep(1.0)
            continue
        log.warning("job %s was handed back to the queue: %s", job_id, reason)
        return


def _run_claimed(
    job_id: int,
    *,
    settings: Settings,
    sessions: sessionmaker[Session],
    measure: MeasureFunction,
    worker: str,
) -> None:
    directory = job_dir(settings, job_id)
    directory.mkdir(parents=True, exist_ok=True)
    with ((directory / "job.log").open("a", encoding="utf-8") as stream, sessions() as session,
          Heartbeat(sessions, job_id, worker, settings.job_heartbeat_s, stamp=store.touch)):
        job = session.get(Job, job_id)
        assert job is not None  # claimed a moment ago
        _log(stream, f"job {job_id} started by {worker} (pid {os.getpid()}), "
                     f"attempt {job.attempts}, file {job.filename}")

        def progress(stage: str) -> None:
            _log(stream, f"stage: {stage}")
            try:
                with sessions() as inner:
                    store.set_stage(inner, job_id, stage)
            except DATABASE_OUTAGE as err:
                # The stage shown to users is cosmetic; the analysis goes on without it.
                log.warning("job %s: cannot record stage %r (%s)", job_id, stage,
                            type(err).__name__)

        retryable = True
        try:
            state, message, point_id = _analyse(session, job, settings, measure, stream,
                                                directory, progress)
        except SkyphotError as err:
            state, point_id = JobState.FAILED, None
            message = user_message(err, stored=job.upload_path, filename=job.filename)
            retryable = is_retryable(err)
            if message != str(err):  # the log keeps the engine's own words for experts
                _log(stream, f"engine's message: {err}")
        except DATABASE_OUTAGE as err:
            _log(stream, f"{describe_database_error(err)}; handing the job back to the queue")
            raise
        except Exception as err:  # any engine bug must end the job as failed, and is logged
            state, point_id = JobState.FAILED, None
            message = user_message(err, stored=job.upload_path, filename=job.filename)
            retryable = is_retryable(err)
            _log(stream, f"internal error:\n{traceback.format_exc()}")
            log.exception("job %s failed with an internal error", job_id)
        session.rollback()
        if store.finish(session, job_id, state, message=message, photometry_id=point_id,
                        worker=worker, retryable=retryable):
            _log(stream, f"{state.value}: {message}")
        else:
            _log(stream, f"{state.value}: {message} (not recorded: the job was ended or "
                         "taken over meanwhile)")


def _analyse(
    session: Session,
    job: Job,
    settings: Settings,
    measure: MeasureFunction,
    stream: TextIO,
    directory: Path,
    progress: Callable[[str], None],
) -> tuple[JobState, str, int | None]:
    # The soft time limit covers the slow part; saving the point is never interrupted.
    with soft_time_limit(settings.job_time_limit_s):
        progress("reading header")
        source, extra = _prepare(session, job, settings, stream)
        # Identity of a measurement: the same file with the same *resolved* settings (the
        # header's instrument picked explicitly in the form is the same measurement).
        job.settings_hash = extra["settings_hash"]
        session.commit()
        existing = find_upload_point(session, job.source_id, job.file_hash, job.settings_hash)
        if existing is not None:
            return (JobState.SUCCEEDED,
                    f"identical upload already measured (point {existing.id}); nothing added",
                    existing.id)
        config = build_config(job, source, settings, gain=extra["gain"],
                              saturation=extra["saturation"], mjd=extra["mjd"])
        _log(stream, f"config: {config.model_dump_json()}")
        result = measure(job.upload_path, config, diagnostics=directory / "diagnostics.png",
                         progress=progress)
    _log(stream, f"result: {result.model_dump_json(exclude={'config'})}")
    progress("saving")
    point = point_from_result(job, result, extra["instrument"])
    if push.auto_push_wanted(settings.skyportal, source):
        push.mark_pending(point)
    session.add(point)
    try:
        session.commit()
    except IntegrityError:
        # A concurrent identical job won the race; the unique constraint kept one point.
        session.rollback()
        existing = find_upload_point(session, job.source_id, job.file_hash, job.settings_hash)
        if existing is None:
            raise
        return (JobState.SUCCEEDED,
                f"identical upload already measured (point {existing.id}); nothing added",
                existing.id)
    if source.light_curve_colors:
        # The new point may give other points their colour, and take its own from them.
        recalibrate_source(session, source, window_d=settings.light_curve_color_window_d)
        session.commit()
        session.refresh(point)
    when = Time(result.mjd, format="mjd").iso[:19]
    value = (f"{point.filter} = {point.mag:.3f} ± {point.magerr:.3f}"
             if point.mag is not None and point.magerr is not None
             else f"{point.filter} > {point.limiting_mag or 0:.2f} "
                  f"({result.limit_nsigma:g}σ limit)")
    return JobState.SUCCEEDED, f"{value} at {when} UTC", point.id

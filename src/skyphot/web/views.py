"""Conversions from rows to response models and CSV, and form-field parsing, shared by
the API and the pages."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from typing import Any

from astropy.time import Time
from sqlalchemy.orm import Session

from skyphot.catalogs.names import KnownName, Resolved, resolve_name
from skyphot.db.crud import create_source, get_instrument, source_names
from skyphot.db.models import Job, Photometry, Source, User
from skyphot.jobs.push import client_for
from skyphot.jobs.skyportal_import import import_source
from skyphot.settings import Settings
from skyphot.web.errors import FieldError
from skyphot.web.schemas import (
    JobOut,
    JobRetry,
    PhotometryOut,
    SkyPortalState,
    SourceCreate,
    SourceOut,
)

CSV_COLUMNS = (
    "id", "mjd", "iso", "mag", "magerr", "limiting_mag", "limit_sigma", "flux", "fluxerr",
    "snr", "filter", "instrument", "magsys", "origin", "job_id", "catalog", "zero_point",
    "color_term", "fwhm_arcsec",
)


def mjd_to_iso(mjd: float) -> str:
    """ISO UTC string (seconds) of an MJD."""
    return str(Time(mjd, format="mjd", scale="utc").isot)[:19]


def source_out(source: Source) -> SourceOut:
    """Response model of a source."""
    return SourceOut(
        id=source.id, ra=source.ra, dec=source.dec, name=source.name, redshift=source.redshift,
        groups=sorted(g.name for g in source.groups), created_at=source.created_at,
        skyportal_id=source.skyportal_id, light_curve_colors=source.light_curve_colors,
        position_origin=source.position_origin, position_note=source.position_note,
    )


def photometry_out(point: Photometry, user: User) -> PhotometryOut:
    """Response model of a point; ``can_delete`` for ``user``."""
    return PhotometryOut(
        id=point.id, source_id=point.source_id, mjd=point.mjd, iso=mjd_to_iso(point.mjd),
        mag=point.mag, magerr=point.magerr, limiting_mag=point.limiting_mag,
        limit_sigma=point.limit_sigma, flux=point.flux, fluxerr=point.fluxerr, snr=point.snr,
        filter=point.filter, instrument=point.instrument, magsys=point.magsys,
        origin=point.origin, owner_id=point.owner_id, job_id=point.job_id,
        calibration=point.calibration or {}, comment=point.comment,
        can_delete=user.is_admin or point.owner_id == user.id,
        skyportal=SkyPortalState(state=point.skyportal_state, id=point.skyportal_id,
                                 error=point.skyportal_error),
    )


def job_out(job: Job, settings: Settings, owner: str | None = None) -> JobOut:
    """Response model of a job (``owner``: the submitter's login name, when known)."""
    png = settings.jobs_path / str(job.id) / "diagnostics.png"
    return JobOut(
        id=job.id, source_id=job.source_id, state=job.state, stage=job.stage,
        message=job.message, filename=job.filename,
        params={k: v for k, v in job.params.items() if k != "catalog_file"},
        photometry_id=job.photometry_id, attempts=job.attempts, created_at=job.created_at,
        retryable=job.state == "failed" and bool(job.retryable),
        owner=owner,
        started_at=job.started_at, finished_at=job.finished_at,
        log_url=f"/api/jobs/{job.id}/log",
        diagnostics_url=f"/api/jobs/{job.id}/diagnostics.png" if png.is_file() else None,
    )


def photometry_csv(points: Sequence[PhotometryOut]) -> str:
    """CSV text of points (one row each, CSV_COLUMNS)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for p in points:
        cal = p.calibration
        row: dict[str, Any] = {**p.model_dump(), "catalog": cal.get("catalog"),
                               "zero_point": cal.get("zero_point"),
                               "color_term": cal.get("color_term"),
                               "fwhm_arcsec": cal.get("fwhm_arcsec")}
        writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    return out.getvalue()


def add_source(session: Session, user: User, settings: Settings, body: SourceCreate) -> Source:
    """Create a source from the API or the page: at the given position, at its name's
    position (see ``source_position``), or imported from SkyPortal."""
    if body.skyportal_id is not None:
        source = import_source(session, user, client_for(settings.skyportal),
                               body.skyportal_id, source_id=body.id, groups=body.groups)
        if body.name:
            source.name = body.name
        source.position_origin = "skyportal"
        source.position_note = f"SkyPortal source {body.skyportal_id!r}"
        return source
    assert body.id is not None  # validated
    where = source_position(session, user, settings, body)
    return create_source(session, user, source_id=body.id, ra=where.ra, dec=where.dec,
                         name=body.name, redshift=body.redshift, groups=body.groups,
                         position_origin=where.origin, position_note=where.note)


def _float(fields: dict[str, str], name: str, *, positive: bool = False) -> float | None:
    raw = fields.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FieldError(name, f"{name} must be a number, not {raw!r}") from None
    if not math.isfinite(value) or (positive and value <= 0):
        raise FieldError(name, f"{name} must be a {'positive ' if positive else ''}number")
    return value


def parse_obstime(raw: str) -> float:
    """An observation time as MJD (UTC): ISO UTC text or a plain MJD number."""
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            return float(Time(text.replace(" ", "T"), format="isot", scale="utc").mjd)
        except ValueError:
            raise FieldError(
                "obstime", f"observation time {text!r} is neither ISO UTC "
                "(2024-05-01T03:04:05) nor an MJD number",
            ) from None
    if not 15000 < value < 100000:
        raise FieldError("obstime", f"MJD {value} is implausible; give e.g. 60400.123")
    return value


_COLOR = re.compile(
    r"^\s*([A-Za-z][\w']*)\s*-\s*([A-Za-z][\w']*)\s*=\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


def parse_target_color(raw: str) -> tuple[float, tuple[str, str] | None]:
    """A target colour as typed: ``g-r=0.3`` (value and the colour's bands) or ``0.3`` (in
    the catalog's default colour). FieldError explains the accepted forms."""
    text = raw.strip().replace("\u2212", "-")  # a typographic minus from a copied text
    match = _COLOR.match(text)
    if match is not None:
        value, bands = float(match.group(3)), (match.group(1), match.group(2))
    else:
        try:
            value, bands = float(text), None
        except ValueError:
            raise FieldError(
                "target_color", f"target colour {raw.strip()!r} is neither BAND1-BAND2=VALUE "
                "(e.g. g-r=0.3) nor a number (the catalog's default colour)",
            ) from None
    if not math.isfinite(value) or abs(value) > 10:
        raise FieldError("target_color", f"target colour {value} is implausible (|c| > 10 mag)")
    return value, bands


ENGINES = ("skyphot", "stdpipe")
"""Measurement engines a job may ask for (``MeasureConfig.engine``)."""

TEMPLATE_CHOICES = ("none", "auto")
"""Template choices by name; an uploaded template_file is the third way."""


def analysis_params(session: Session, fields: dict[str, str]) -> dict[str, Any]:
    """Validated analysis parameters from form fields (FieldError names the bad field)."""
    params: dict[str, Any] = {}
    params["filter"] = fields.get("filter", "").strip() or None
    obstime = fields.get("obstime", "").strip()
    params["mjd"] = parse_obstime(obstime) if obstime else None
    params["instrument"] = fields.get("instrument", "").strip() or None
    catalog = fields.get("catalog", "").strip()
    params["catalog"] = None if catalog.lower() in ("", "auto", "automatic") else catalog
    nsigma = _nsigma(fields)
    params["nsigma"] = nsigma if nsigma is not None else 5.0
    color = fields.get("target_color", "").strip()
    params["target_color"], bands = parse_target_color(color) if color else (None, None)
    params["color_bands"] = list(bands) if bands else None
    reference = fields.get("obstime_ref", "").strip().lower() or "mid"
    if reference not in ("start", "mid"):
        raise FieldError("obstime_ref", "say whether the time is the exposure 'start' or 'mid'")
    params["obstime_ref"] = reference if params["mjd"] is not None else None
    engine = fields.get("engine", "").strip().lower() or "skyphot"
    if engine not in ENGINES:
        raise FieldError(
            "engine", f"engine must be one of {', '.join(ENGINES)} (got {engine!r})"
        )
    params["engine"] = engine
    params["gain"] = _float(fields, "gain", positive=True)
    params["saturation"] = _float(fields, "saturation", positive=True)
    params["pixel_scale"] = _float(fields, "pixel_scale", positive=True)
    template = fields.get("template", "").strip().lower() or "none"
    if template not in TEMPLATE_CHOICES:
        raise FieldError(
            "template", f"template must be one of {', '.join(TEMPLATE_CHOICES)} or an uploaded "
            f"template_file (got {template!r})"
        )
    params["template"] = template
    check_filter(session, params["instrument"], params["filter"])
    return params


def _nsigma(fields: dict[str, str]) -> float | None:
    nsigma = _float(fields, "nsigma")
    if nsigma is not None and nsigma not in (3.0, 5.0):
        raise FieldError("nsigma", "detection threshold must be 3 or 5 (sigma)")
    return nsigma


def retry_changes(session: Session, body: JobRetry, params: dict[str, Any]) -> dict[str, Any]:
    """Validated parameter changes of a retry (only what the body sets)."""
    fields = {k: str(v) for k, v in body.model_dump(exclude_none=True).items()}
    changes: dict[str, Any] = {}
    if "obstime" in fields:
        changes["mjd"] = parse_obstime(fields["obstime"])
        reference = fields.get("obstime_ref", "mid").strip().lower()
        if reference not in ("start", "mid"):
            raise FieldError("obstime_ref", "say whether the time is the exposure 'start' or "
                             "'mid'")
        changes["obstime_ref"] = reference
    for key in ("filter", "instrument"):
        if fields.get(key, "").strip():
            changes[key] = fields[key].strip()
    if "catalog" in fields:
        catalog = fields["catalog"].strip()
        changes["catalog"] = None if catalog.lower() in ("", "auto", "automatic") else catalog
    if "nsigma" in fields:
        changes["nsigma"] = _nsigma(fields)
    if body.pixel_scale is not None:
        changes["pixel_scale"] = float(body.pixel_scale)
    if "target_color" in fields:
        value, bands = parse_target_color(fields["target_color"])
        changes["target_color"] = value
        changes["color_bands"] = list(bands) if bands else None
    merged = {**params, **changes}
    check_filter(session, merged.get("instrument"), merged.get("filter"))
    return changes


def check_filter(session: Session, instrument_name: str | None, filter_name: str | None) -> None:
    """FieldError when ``filter_name`` is not one of a known instrument's filters."""
    if not (instrument_name and filter_name):
        return
    instrument = get_instrument(session, instrument_name)
    if instrument is not None and instrument.filters and filter_name not in instrument.filters:
        raise FieldError(
            "filter", f"filter {filter_name!r} is not one of {instrument.name}'s filters "
            f"({', '.join(instrument.filters)}); add the filter to the instrument first",
        )


def source_position(session: Session, user: User, settings: Settings,
                    body: SourceCreate) -> Resolved:
    """(ra, dec) in degrees and where they came from: as given, or the name resolved among
    the user's sources, in the local name table, then (when allowed) through CDS Sesame."""
    if body.ra is not None and body.dec is not None:
        return Resolved(body.ra, body.dec, "given", "as given")
    assert body.name  # the model insists on a name when there are no coordinates
    known = [KnownName((sid, name or "", sp_id or ""), ra, dec, f"your source {sid!r}")
             for sid, name, sp_id, ra, dec in source_names(session, user)]
    return resolve_name(
        body.name, known=known, table=settings.name_table_path,
        online=settings.name_resolver_online, url=settings.name_resolver_url,
        timeout_s=settings.name_resolver_timeout_s,
        # Nothing is written yet: end the read transaction so that no pooled connection is
        # held while Sesame takes its time (up to name_resolver_timeout_s).
        before_online=session.commit,
    )

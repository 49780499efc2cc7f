"""Conversions from rows to response models and CSV, and form-field parsing, shared by
the API and the pages."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from typing import Any

from astropy.time import Time
from sqlalchemy.orm import Session

from skyphot.db.crud import get_instrument
from skyphot.db.models import Job, Photometry, Source, User
from skyphot.settings import Settings
from skyphot.web.errors import FieldError
from skyphot.web.schemas import JobOut, PhotometryOut, SourceOut

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
    )


def photometry_out(point: Photometry, user: User) -> PhotometryOut:
    """Response model of a point; ``can_delete`` for ``user``."""
    return PhotometryOut(
        id=point.id, source_id=point.source_id, mjd=point.mjd, iso=mjd_to_iso(point.mjd),
        mag=point.mag, magerr=point.magerr, limiting_mag=point.limiting_mag,
        limit_sigma=point.limit_sigma, flux=point.flux, fluxerr=point.fluxerr, snr=point.snr,
        filter=point.filter, instrument=point.instrument, magsys=point.magsys,
        origin=point.origin, owner_id=point.owner_id, job_id=point.job_id,
        calibration=point.calibration or {},
        can_delete=user.is_admin or point.owner_id == user.id,
    )


def job_out(job: Job, settings: Settings) -> JobOut:
    """Response model of a job."""
    png = settings.jobs_path / str(job.id) / "diagnostics.png"
    return JobOut(
        id=job.id, source_id=job.source_id, state=job.state, stage=job.stage,
        message=job.message, filename=job.filename,
        params={k: v for k, v in job.params.items() if k != "catalog_file"},
        photometry_id=job.photometry_id, attempts=job.attempts, created_at=job.created_at,
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
    nsigma = _float(fields, "nsigma")
    if nsigma is not None and nsigma not in (3.0, 5.0):
        raise FieldError("nsigma", "detection threshold must be 3 or 5 (sigma)")
    params["nsigma"] = nsigma if nsigma is not None else 5.0
    params["target_color"] = _float(fields, "target_color")
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
    if params["instrument"] and params["filter"]:
        instrument = get_instrument(session, params["instrument"])
        if instrument is not None and instrument.filters and (
            params["filter"] not in instrument.filters
        ):
            raise FieldError(
                "filter", f"filter {params['filter']!r} is not one of {instrument.name}'s "
                f"filters ({', '.join(instrument.filters)}); add it on the Instruments page",
            )
    return params

"""Light-curve exports: ECSV and VOTable (astropy, with units and the magnitude system of
each point), SkyPortal-style JSON, and TOM Toolkit's photometry CSV.

TOM Toolkit's photometry import (``tom_dataproducts`` photometry processor) reads a CSV with
the columns ``time`` (MJD), ``filter``, ``magnitude``, ``error`` and ``limit``: a detection
has ``magnitude`` and ``error``, a non-detection only ``limit``; skyphot adds ``telescope``
(the instrument) and ``magsys``, which TOM keeps as extra values of the datum.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table

from skyphot import __version__
from skyphot.adapters.skyportal import skyportal_filter
from skyphot.web.schemas import PhotometryOut

# (column, unit, description) of the astropy exports, in order.
TABLE_COLUMNS: tuple[tuple[str, u.UnitBase | None, str], ...] = (
    ("id", None, "skyphot point id"),
    ("mjd", u.day, "mid-exposure time, MJD (UTC)"),
    ("iso", None, "mid-exposure time, ISO UTC"),
    ("mag", u.mag, "magnitude in magsys; masked for an upper limit"),
    ("magerr", u.mag, "1-sigma magnitude error"),
    ("limiting_mag", u.mag, "limiting magnitude at limit_sigma"),
    ("limit_sigma", None, "sigma level of limiting_mag"),
    ("flux", u.uJy, "flux density, microjansky"),
    ("fluxerr", u.uJy, "1-sigma flux error, microjansky"),
    ("snr", None, "signal-to-noise ratio"),
    ("filter", None, "filter"),
    ("magsys", None, "magnitude system of this point (AB or Vega)"),
    ("instrument", None, "instrument"),
    ("origin", None, "where the point came from"),
    ("job_id", None, "analysis job"),
    ("catalog", None, "reference catalog"),
    ("zero_point", u.mag, "zero point at the target"),
    ("zero_point_err", u.mag, "zero-point error"),
    ("color_term", None, "colour-term coefficient"),
    ("color_used", u.mag, "colour applied with the colour term"),
    ("color_source", None, "where that colour came from"),
    ("fwhm_arcsec", u.arcsec, "PSF FWHM"),
    ("skyportal_state", None, "SkyPortal push state"),
    ("skyportal_id", None, "SkyPortal photometry id"),
)
_CALIBRATION_KEYS = {"catalog": "catalog", "zero_point": "zero_point",
                     "zero_point_err": "zero_point_err", "color_term": "color_term",
                     "color_used": "target_color", "color_source": "color_source",
                     "fwhm_arcsec": "fwhm_arcsec"}


def _value(point: PhotometryOut, name: str) -> Any:
    if name in _CALIBRATION_KEYS:
        return point.calibration.get(_CALIBRATION_KEYS[name])
    if name == "skyportal_state":
        return point.skyportal.state
    if name == "skyportal_id":
        return point.skyportal.id
    return getattr(point, name)


def photometry_table(points: Sequence[PhotometryOut], source_id: str) -> Table:
    """The light curve as an astropy table: units on every physical column, missing values
    masked, the magnitude system per row."""
    table = Table(meta={"source_id": source_id, "software": f"skyphot {__version__}",
                        "flux_zero_point": "AB: 23.9 mag = 1 uJy"})
    for name, unit, description in TABLE_COLUMNS:
        values = [_value(p, name) for p in points]
        mask = [v is None for v in values]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool)
                      for v in values if v is not None)
        if numeric and name not in ("id", "job_id", "skyportal_id"):
            data: Any = np.array([np.nan if v is None else float(v) for v in values])
        elif numeric:
            data = np.array([0 if v is None else int(v) for v in values], dtype=np.int64)
        else:
            data = np.array(["" if v is None else str(v) for v in values], dtype=str)
        table[name] = MaskedColumn(data, mask=mask, unit=unit, description=description)
    return table


def photometry_ecsv(points: Sequence[PhotometryOut], source_id: str) -> str:
    """ECSV text (units and descriptions in the header)."""
    out = io.StringIO()
    photometry_table(points, source_id).write(out, format="ascii.ecsv")
    return out.getvalue()


def photometry_votable(points: Sequence[PhotometryOut], source_id: str) -> bytes:
    """VOTable XML (units on the FIELDs)."""
    out = io.BytesIO()
    photometry_table(points, source_id).write(out, format="votable")
    return out.getvalue()


def photometry_skyportal(points: Sequence[PhotometryOut], obj_id: str,
                         filter_overrides: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Points as SkyPortal photometry records (its bandpass names, lower-case magsys, limits
    with mag null) with the calibration in ``altdata``."""
    rows = []
    for p in points:
        detected = p.mag is not None and p.magerr is not None
        cal = p.calibration
        rows.append({
            "obj_id": obj_id, "mjd": p.mjd, "filter": skyportal_filter(p.filter, filter_overrides),
            "mag": p.mag if detected else None, "magerr": p.magerr if detected else None,
            "limiting_mag": p.limiting_mag, "magsys": p.magsys.lower(),
            "instrument_name": p.instrument, "origin": p.origin,
            "altdata": {"catalog": cal.get("catalog"), "zero_point": cal.get("zero_point"),
                        "zero_point_err": cal.get("zero_point_err"),
                        "color_term": cal.get("color_term"),
                        "color_used": cal.get("target_color"),
                        "color_source": cal.get("color_source"),
                        "fwhm_arcsec": cal.get("fwhm_arcsec"), "flags": cal.get("flags"),
                        "flag_names": cal.get("flag_names"), "limit_sigma": p.limit_sigma,
                        "skyphot_version": __version__, "skyphot_job_id": p.job_id,
                        "skyphot_point_id": p.id},
            "skyportal_id": p.skyportal.id,
        })
    return rows


TOM_COLUMNS = ("time", "filter", "magnitude", "error", "limit", "telescope", "magsys")


def photometry_tom(points: Sequence[PhotometryOut]) -> str:
    """TOM Toolkit photometry CSV (see the module docstring)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(TOM_COLUMNS)
    for p in points:
        detected = p.mag is not None and p.magerr is not None
        writer.writerow([
            f"{p.mjd:.6f}", p.filter, f"{p.mag:.4f}" if detected and p.mag is not None else "",
            f"{p.magerr:.4f}" if detected and p.magerr is not None else "",
            "" if detected or p.limiting_mag is None else f"{p.limiting_mag:.4f}",
            p.instrument or "", p.magsys,
        ])
    return out.getvalue()

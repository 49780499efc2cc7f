"""What every survey template provider shares: the HTTP client (time-outs, retries with
back-off, errors naming the service), the description of a survey, and the finishing of a
fetched cutout into a template file the engine reads like any other frame.

The providers themselves are ``skyphot.templates.ps1`` (Pan-STARRS1),
``skyphot.templates.viewer`` (Legacy Survey and DES through the Legacy Survey viewer) and
``skyphot.templates.skymapper`` (SkyMapper); ``skyphot.templates.surveys`` lists them with
their footprints and depths and decides the order in which they are asked.
"""

from __future__ import annotations

import math
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits import Header
from astropy.wcs import WCS, FITSFixedWarning

from skyphot.core.stats import mad_sigma
from skyphot.errors import TemplateCoverageError, TemplateServiceError

# A template must have real data (finite, not exactly zero) in most pixels this close to the
# target; survey services answer outside their footprint with NaN or zero images.
_COVER_RADIUS_PX = 8
_COVER_FRACTION = 0.8
# Typical dark-sky brightness, AB mag/arcsec^2, per band: only for the effective gain of
# sky-subtracted survey images (see effective_gain).
SKY_MAG = {"u": 22.5, "v": 22.3, "g": 22.0, "r": 21.0, "i": 20.2, "z": 19.2, "y": 18.2}


@dataclass(frozen=True)
class FetchRequest:
    """One cutout to fetch: a square of ``size_px`` survey pixels around (ra, dec)."""

    ra: float
    dec: float
    band: str
    size_px: int
    base_url: str
    timeout: float
    retries: int


Fetcher = Callable[["Survey", FetchRequest], Path]


@dataclass(frozen=True)
class Survey:
    """A survey whose images serve as templates, and how to fetch them.

    ``depth`` is the typical 5-sigma point-source depth (AB mag) per band, the key of the
    automatic choice; ``band_dec_max`` narrows the footprint of single bands (e.g. Legacy
    Survey i exists only in the DECam part, south of +32) and ``ra_ranges`` (degrees, empty:
    all) its right ascensions; ``zero_point`` is that of the
    data unit (AB mag giving 1 unit) when fixed, used only to estimate an effective gain of
    sky-subtracted images; ``unit`` documents the data unit; ``epoch_mjd`` is the middle of
    the survey's observing years, written as MJD-AVG into coadd cutouts that carry no time
    (the engine reads a time from every frame; a template's time is not used further).
    """

    name: str
    title: str
    bands: tuple[str, ...]
    depth: Mapping[str, float]
    dec_min: float
    dec_max: float
    pixel_scale: float
    max_size_px: int
    url: str
    fetcher: Fetcher
    unit: str
    min_abs_galactic_lat: float = 0.0
    ra_ranges: tuple[tuple[float, float], ...] = ()
    band_dec_max: Mapping[str, float] = field(default_factory=dict)
    zero_point: float | None = None
    layer: str | None = None
    epoch_mjd: float | None = None

    def service(self) -> str:
        """How errors name the service."""
        return f"{self.title} image cutout service"

    def fetch(self, request: FetchRequest) -> Path:
        """The cutout of ``request`` in a temporary FITS file (caller removes it); raises
        ``TemplateServiceError`` (service down) or ``TemplateCoverageError`` (no image)."""
        return self.fetcher(self, request)


def http_get(url: str, *, service: str, timeout: float, retries: int) -> bytes:
    """GET with retries and exponential back-off; a clear error naming the service."""
    last: Exception | None = None
    tries = 0
    for attempt in range(retries):
        tries += 1
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as err:
            last = err
            if 400 <= err.code < 500:
                break  # the request itself is wrong; repeating it will not help
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            last = err
        if attempt + 1 < retries:
            time.sleep(min(0.5 * 2**attempt, 8.0))
    raise TemplateServiceError(f"the {service} failed after {tries} attempt(s) ({last})")


def read_image(body: bytes, *, service: str) -> tuple[np.ndarray, Header]:
    """The first 2-D (or single-plane 3-D) image of a FITS answer and its header."""
    raw = Path(tempfile.mkdtemp(prefix="skyphot-cut-")) / "raw.fits"
    raw.write_bytes(body)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            with fits.open(raw, memmap=False) as hdul:
                for hdu in hdul:
                    data = hdu.data if hdu.is_image else None
                    if data is None:
                        continue
                    if data.ndim == 3 and data.shape[0] == 1:
                        data = data[0]
                    if data.ndim == 2:
                        return np.asarray(data, dtype=np.float64), hdu.header.copy()
    except OSError as err:
        raise TemplateServiceError(
            f"the {service} returned something that is not FITS ({err})"
        ) from err
    finally:
        raw.unlink(missing_ok=True)
        raw.parent.rmdir()
    raise TemplateServiceError(f"the {service} returned no image; try again later")


def effective_gain(data: np.ndarray, sky_flux_per_px: float | None) -> float:
    """Electrons per data unit, gain = sky level / sky variance: the image's own sky when it
    still has one (median above 3 sigma), else a typical sky level (data units per pixel,
    for sky-subtracted coadds). Only the photon noise of static sources (the host) depends
    on it, so a factor of two hardly matters."""
    finite = data[np.isfinite(data) & (data != 0)]
    if finite.size < 100:
        return 1.0
    med = float(np.median(finite))
    sigma = mad_sigma(finite)
    if not sigma > 0:
        return 1.0
    if med > 3 * sigma:
        return med / sigma**2
    if sky_flux_per_px is None or not sky_flux_per_px > 0:
        return 1.0
    return sky_flux_per_px / sigma**2


def check_coverage(data: np.ndarray, header: Header, ra: float, dec: float,
                   *, survey: Survey, band: str) -> None:
    """Raise ``TemplateCoverageError`` unless the image has data around (ra, dec)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    where = f"{survey.title} has no {band} image at ({ra:.5f}, {dec:+.5f})"
    if not wcs.has_celestial:
        raise TemplateCoverageError(f"{where}: its cutout has no celestial WCS")
    x, y = wcs.all_world2pix(np.array([ra]), np.array([dec]), 0)
    ny, nx = data.shape
    if not (np.isfinite(x[0]) and np.isfinite(y[0])):
        raise TemplateCoverageError(f"{where}: the cutout does not contain the target")
    xi, yi = round(float(x[0])), round(float(y[0]))
    if not (0 <= xi < nx and 0 <= yi < ny):
        raise TemplateCoverageError(f"{where}: the cutout does not contain the target")
    r = _COVER_RADIUS_PX
    patch = data[max(yi - r, 0): yi + r + 1, max(xi - r, 0): xi + r + 1]
    good = np.isfinite(patch) & (patch != 0)
    if good.mean() < _COVER_FRACTION:
        raise TemplateCoverageError(f"{where}: the cutout is blank there (outside the survey)")


def write_template(
    data: np.ndarray,
    header: Header,
    *,
    survey: Survey,
    band: str,
    ra: float,
    dec: float,
    gain: float | None = None,
    zero_point: float | None = None,
) -> Path:
    """Check coverage, then write the template with what the engine needs to read it
    (FILTER, GAIN, provenance) to a temporary file. Without a ``gain`` (or a GAIN card) an
    effective gain is estimated, from the survey's (or the given) zero point and the band's
    typical sky brightness when the sky was subtracted."""
    check_coverage(data, header, ra, dec, survey=survey, band=band)
    header = header.copy()
    for key in ("BSCALE", "BZERO", "BLANK"):
        header.remove(key, ignore_missing=True)
    header["FILTER"] = (band, f"{survey.title} band")
    if gain is None and _positive(header.get("GAIN")):
        gain = float(header["GAIN"])
    if gain is None:
        zp = zero_point if zero_point is not None else survey.zero_point
        sky = None
        if zp is not None and band in SKY_MAG:
            scale = float(np.sqrt(abs(np.linalg.det(_pixel_matrix(header))))) * 3600.0
            sky = 10 ** (-0.4 * (SKY_MAG[band] - zp)) * scale**2
        header["GAIN"] = (effective_gain(data, sky), "e-/unit, effective: sky / sky variance")
    else:
        header["GAIN"] = (gain, "e-/unit")
    timed = any(k in header for k in ("MJD-AVG", "DATE-AVG")) or (
        any(k in header for k in ("MJD-OBS", "DATE-OBS", "MJD", "JD"))
        and any(k in header for k in ("EXPTIME", "EXPOSURE"))
    )
    if survey.epoch_mjd is not None and not timed:
        header["MJD-AVG"] = (survey.epoch_mjd, "skyphot: nominal, middle of the survey years")
    header["TPLSURV"] = (survey.name, "skyphot: survey of this template")
    header["TPLORIG"] = (survey.name, "skyphot: template from an image cutout service")
    out = Path(tempfile.mkdtemp(prefix=f"skyphot-{survey.name}-")) / f"{survey.name}_{band}.fits"
    fits.PrimaryHDU(data=data.astype(np.float32), header=header).writeto(out)
    return out


def _positive(value: object) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _pixel_matrix(header: Header) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return np.asarray(WCS(header).celestial.pixel_scale_matrix)

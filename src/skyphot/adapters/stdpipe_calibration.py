"""Photometric calibration by STDPipe, expressed as skyphot's ``ZeroPointFit``.

STDPipe's ``photometry.match`` cross-matches detections with the catalog and fits, robustly
(statsmodels RLM, iterative ``clip_sigma`` rejection, optional intrinsic scatter)::

    m_cat - m_inst = ZP(x, y) + C * color

with ``ZP`` a polynomial of order ``calibration.spatial_order`` in its own normalised pixel
coordinates. It returns ``zero_fn(x, y)`` (``ZP`` and its error, without the colour term) and
``C`` with its error, but not the covariance between ``C`` and ``ZP``. Two things make the
conversion to ``ZeroPointFit`` faithful:

- the catalog colour is handed to STDPipe centred on ``c_ref``, the median colour of the
  catalog stars matched to detections, so STDPipe's ``ZP`` is the zero point at colour
  ``c_ref`` and its correlation with ``C`` is small (it would be large at colour 0);
- ``ZP`` is a polynomial of the same order in skyphot's ``u, v`` (an affine change of
  variables), so evaluating ``zero_fn`` and its error on a grid gives skyphot's spatial
  coefficients and their covariance exactly.

In the resulting ``ZeroPointFit`` the "zp" term is ``ZP0 - C * c_ref`` (zero point at colour
0, frame centre), "color" is ``C``, the spatial terms are STDPipe's; the covariance is
STDPipe's spatial covariance and ``var(C)``, with the ``C``-``ZP`` covariance taken as zero at
``c_ref``. ``predict(x, y, color)`` is then ``zero_fn(x, y) + C * (color - c_ref)`` with error
``hypot(zero_fn error, C error * (color - c_ref))`` — the colour term is applied to the target
with its own colour. ``intrinsic_scatter`` is STDPipe's fitted intrinsic rms (bounded by
``_MAX_INTRINSIC_RMS``); ``rms`` the robust scatter of the used stars' residuals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.wcs import WCS

from skyphot.adapters.sextractor import SEP_OBJ_MERGED
from skyphot.adapters.stdpipe import StdpipeAPI
from skyphot.adapters.stdpipe_photometry import ForcedInputs, measure_forced
from skyphot.adapters.stdpipe_psf import StdpipePSF
from skyphot.core.calibration import ZeroPointFit
from skyphot.core.detection import SourceList
from skyphot.core.matching import match_sky
from skyphot.core.stats import mad_sigma
from skyphot.core.wcs_utils import pixel_to_world, poly_design, poly_exponents, world_to_pixel
from skyphot.errors import CalibrationError

# Largest intrinsic (extra) scatter per star STDPipe may fit, mag (its usual setting).
_MAX_INTRINSIC_RMS = 0.02
# Points per axis of the grid on which STDPipe's zero-point model is re-expressed.
_GRID_POINTS = 9
# The re-expressed model must reproduce STDPipe's to this many mag (it is exact in theory).
_CONVERSION_TOLERANCE = 1e-6

ZeroFunction = Callable[..., Any]


def _normalised_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                       np.ndarray]:
    """Grid pixel positions (x, y) and skyphot's normalised (u, v) there."""
    ny, nx = shape
    t = np.linspace(-1.0, 1.0, _GRID_POINTS)
    u, v = (a.ravel() for a in np.meshgrid(t, t))
    x = (u + 1.0) / 2.0 * max(nx - 1, 1)
    y = (v + 1.0) / 2.0 * max(ny - 1, 1)
    return x, y, u, v


def convert_zero_point(
    zero_fn: ZeroFunction,
    *,
    shape: tuple[int, int],
    spatial_order: int,
    color_term: float | None,
    color_term_err: float | None,
    reference_color: float,
    median_color: float | None,
    intrinsic_scatter: float,
    used: np.ndarray,
    residuals: np.ndarray,
) -> ZeroPointFit:
    """A ``ZeroPointFit`` equivalent to STDPipe's model (see the module docstring).

    ``zero_fn`` is STDPipe's zero-point function fitted with colours centred on
    ``reference_color``; ``median_color`` (the used stars' median colour) becomes the fit's
    ``reference_color``, the colour assumed for a target of unknown colour.
    """
    x, y, u, v = _normalised_grid(shape)
    exps = poly_exponents(spatial_order, min_degree=1)
    rows = np.concatenate([np.ones((x.size, 1)), poly_design(u, v, exps)], axis=1)
    values = np.asarray(zero_fn(x, y), dtype=float)
    errors = np.asarray(zero_fn(x, y, get_err=True), dtype=float)
    spatial, *_ = np.linalg.lstsq(rows, values, rcond=None)
    # err^2 = r^T S r is linear in the independent entries of the symmetric matrix S.
    n = rows.shape[1]
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    quad = np.stack([rows[:, i] * rows[:, j] * (1.0 if i == j else 2.0) for i, j in pairs], 1)
    entries, *_ = np.linalg.lstsq(quad, errors**2, rcond=None)
    cov_spatial = np.zeros((n, n))
    for (i, j), value in zip(pairs, entries, strict=True):
        cov_spatial[i, j] = cov_spatial[j, i] = value
    mismatch = max(
        float(np.max(np.abs(rows @ spatial - values))),
        float(np.max(np.abs(np.einsum("ki,ij,kj->k", rows, cov_spatial, rows) - errors**2))),
    )
    if not mismatch < _CONVERSION_TOLERANCE:
        raise CalibrationError(
            f"STDPipe's zero-point model is not a polynomial of order {spatial_order} "
            f"(mismatch {mismatch:.2g} mag); this STDPipe version is not supported — "
            "install the pinned one with pip install 'skyphot[stdpipe]'"
        )
    spatial_terms = [f"u^{p} v^{q}" for p, q in exps]
    if color_term is None:
        coefficients, covariance = spatial, cov_spatial
        terms = ("zp", *spatial_terms)
    else:
        var_c = float(color_term_err) ** 2 if color_term_err is not None else 0.0
        # Parameters (ZP0 at c_ref, C, spatial...) -> skyphot's (ZP0 at colour 0, C, ...).
        theta = np.concatenate([[spatial[0], color_term], spatial[1:]])
        sigma = np.zeros((n + 1, n + 1))
        keep = [0, *range(2, n + 1)]
        sigma[np.ix_(keep, keep)] = cov_spatial
        sigma[1, 1] = var_c
        transform = np.eye(n + 1)
        transform[0, 1] = -reference_color
        coefficients = transform @ theta
        covariance = transform @ sigma @ transform.T
        terms = ("zp", "color", *spatial_terms)
    used_res = residuals[used & np.isfinite(residuals)]
    rms = mad_sigma(used_res)
    return ZeroPointFit(
        coefficients=np.asarray(coefficients, dtype=float),
        covariance=np.asarray(covariance, dtype=float),
        terms=terms,
        spatial_order=spatial_order,
        color_term=None if color_term is None else float(color_term),
        color_term_err=None if color_term is None or color_term_err is None else float(
            color_term_err),
        intrinsic_scatter=float(intrinsic_scatter),
        n_used=int(np.count_nonzero(used)),
        used=used,
        residuals=residuals,
        rms=rms,
        reference_color=median_color if color_term is not None else None,
        shape=(int(shape[0]), int(shape[1])),
        notes=(
            "zero point fitted by STDPipe (photometry.match, robust)"
            + ("" if color_term is None else
               f"; colour centred at {reference_color:.3f}, C-ZP covariance neglected there"),
        ),
    )


def _catalog_errors(table: Any, band: str) -> np.ndarray | None:
    name = f"{band}_err"
    if name not in table.colnames:
        return None
    err = np.asarray(table[name], dtype=float)
    # STDPipe drops stars with a non-finite catalog error; unknown errors count as 0 instead
    # (as in the built-in fit, where the intrinsic scatter absorbs them).
    return np.where(np.isfinite(err) & (err >= 0), err, 0.0)


@dataclass(frozen=True)
class StdpipeCalibrationSettings:
    """What ``calibrate`` needs from the configuration (the units of ``MeasureConfig``)."""

    match_radius_arcsec: float  # detection-catalog pairing radius
    spatial_order: int  # zero-point polynomial order in x, y
    clip_sigma: float  # STDPipe's outlier rejection threshold
    max_mag_err: float  # largest instrumental error of a calibration star (STDPipe's sn cut)
    min_stars: int  # fewest stars the fit may keep
    fit_color_term: bool  # fit a colour term when colour bands are given
    psf_radius_fwhm: float  # optimal-extraction radius, in FWHM
    annulus_fwhm: tuple[float, float]  # local-background annulus, in FWHM


@dataclass(frozen=True)
class StdpipeCalibration:
    """The stars passing STDPipe's initial cuts (arrays of equal length) and the fit."""

    x: np.ndarray
    y: np.ndarray
    cat_mag: np.ndarray
    cat_err: np.ndarray
    inst_mag: np.ndarray
    inst_err: np.ndarray
    color: np.ndarray | None
    n_candidates: int  # catalog stars on the frame with a magnitude (and colour)
    zero_point: ZeroPointFit


@dataclass(frozen=True)
class _CatalogColumns:
    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray
    mag_err: np.ndarray | None
    color: np.ndarray | None


def _catalog_columns(
    table: Any, band: str, color_bands: tuple[str, str] | None
) -> _CatalogColumns:
    color: np.ndarray | None = None
    if color_bands is not None:
        c1, c2 = color_bands
        color = np.asarray(table[c1], dtype=float) - np.asarray(table[c2], dtype=float)
    return _CatalogColumns(
        ra=np.asarray(table["ra"], dtype=float),
        dec=np.asarray(table["dec"], dtype=float),
        mag=np.asarray(table[band], dtype=float),
        mag_err=_catalog_errors(table, band),
        color=color,
    )


def calibrate(
    api: StdpipeAPI,
    inputs: ForcedInputs,
    sources: SourceList,
    wcs: WCS,
    table: Any,
    *,
    psf: StdpipePSF,
    band: str,
    color_bands: tuple[str, str] | None,
    settings: StdpipeCalibrationSettings,
) -> StdpipeCalibration:
    """Optimal-extraction photometry of every detection, then STDPipe's zero-point fit.

    ``table`` is the reference catalog (``ra``, ``dec``, ``band``, optional ``{band}_err``
    and the colour bands); ``wcs`` the frame's solution. Calibration stars are detections
    matched to the catalog within ``match_radius_arcsec`` whose instrumental error is below
    ``max_mag_err`` and whose flags are clean (deblended is accepted, as STDPipe users
    usually do). Unlike the built-in engine, which selects calibration stars from the
    catalog, STDPipe selects detections by their measured error, so stars near the cut enter
    with upward noise fluctuations; the fit's weights keep the resulting zero-point bias to
    a few mmag. Raises ``CalibrationError`` when STDPipe's fit fails or keeps fewer than
    ``min_stars`` stars.
    """
    shape = inputs.mask.shape
    ny, nx = shape
    phot = measure_forced(
        api, inputs, sources.x, sources.y, psf=psf,
        fwhm=psf.fwhm_at((nx - 1) / 2.0, (ny - 1) / 2.0),
        radius_fwhm=settings.psf_radius_fwhm,
        annulus_fwhm=settings.annulus_fwhm,
        optimal=True, with_source_noise=True, flags=sources.flag, group_sources=True,
    )
    obj_ra, obj_dec = pixel_to_world(wcs, sources.x, sources.y)
    cat = _catalog_columns(table, band, color_bands)
    xc, yc = world_to_pixel(wcs, cat.ra, cat.dec)
    on_frame = np.isfinite(xc) & np.isfinite(yc) & (xc >= 0) & (xc <= nx - 1) & (
        yc >= 0) & (yc <= ny - 1) & np.isfinite(cat.mag)
    radius = settings.match_radius_arcsec
    _, i_cat, _ = match_sky(obj_ra, obj_dec, cat.ra, cat.dec, radius_arcsec=radius)
    reference_color = 0.0
    use_color = cat.color is not None and settings.fit_color_term
    if cat.color is not None:
        on_frame &= np.isfinite(cat.color)
        matched_colors = cat.color[i_cat][np.isfinite(cat.color[i_cat])]
        use_color = use_color and matched_colors.size > 0
        if matched_colors.size:
            reference_color = float(np.median(matched_colors))
    fit = api.photometry.match(
        obj_ra, obj_dec,
        np.asarray(phot["mag"], dtype=float), np.asarray(phot["magerr"], dtype=float),
        np.asarray(phot["flags"], dtype=np.int64),
        cat.ra, cat.dec, cat.mag,
        cat_magerr=cat.mag_err,
        cat_color=None if cat.color is None or not use_color else cat.color - reference_color,
        sr=radius / 3600.0,
        obj_x=np.asarray(sources.x, dtype=float), obj_y=np.asarray(sources.y, dtype=float),
        spatial_order=settings.spatial_order,
        threshold=settings.clip_sigma,
        accept_flags=SEP_OBJ_MERGED,
        max_intrinsic_rms=_MAX_INTRINSIC_RMS,
        sn=1.0 / settings.max_mag_err,
        use_color=use_color,
        verbose=False,
    )
    if fit is None:
        raise CalibrationError(
            f"STDPipe's photometric calibration failed: too few of the {len(sources)} "
            f"detections match a catalog star with a {band} magnitude within "
            f"{radius:g} arcsec and an error below {settings.max_mag_err:g} mag — use a deeper "
            "catalog or exposure, or raise calibration.max_mag_err"
        )
    result = _results(fit, shape=shape, spatial_order=settings.spatial_order,
                      color_used=use_color, reference_color=reference_color,
                      n_candidates=int(on_frame.sum()))
    if result.zero_point.n_used < settings.min_stars:
        raise CalibrationError(
            f"STDPipe's calibration kept only {result.zero_point.n_used} stars (need "
            f"{settings.min_stars}); use a deeper catalog or exposure, or lower "
            "calibration.min_stars"
        )
    return result


def _results(
    fit: dict[str, Any],
    *,
    shape: tuple[int, int],
    spatial_order: int,
    color_used: bool,
    reference_color: float,
    n_candidates: int,
) -> StdpipeCalibration:
    """The pairs passing STDPipe's initial cuts and the converted fit."""
    base = np.asarray(fit["idx0"], dtype=bool)
    used = np.asarray(fit["idx"], dtype=bool)[base]
    color = (np.asarray(fit["color"], dtype=float)[base] + reference_color) if color_used else None
    residuals = (np.asarray(fit["zero"], float) - np.asarray(fit["zero_model"], float))[base]
    color_term = fit["color_term"] if color_used else None
    median_color = (
        float(np.median(color[used])) if color is not None and used.any() else None
    )
    zp = convert_zero_point(
        fit["zero_fn"],
        shape=shape,
        spatial_order=spatial_order,
        color_term=None if color_term is None else float(color_term),
        color_term_err=None if fit["color_term_err"] is None else float(fit["color_term_err"]),
        reference_color=reference_color,
        median_color=median_color,
        intrinsic_scatter=float(fit["intrinsic_rms"]),
        used=used,
        residuals=residuals,
    )
    return StdpipeCalibration(
        x=np.asarray(fit["ox"], dtype=float)[base],
        y=np.asarray(fit["oy"], dtype=float)[base],
        cat_mag=np.asarray(fit["cmag"], dtype=float)[base],
        cat_err=np.asarray(fit["cmag_err"], dtype=float)[base],
        inst_mag=np.asarray(fit["omag"], dtype=float)[base],
        inst_err=np.asarray(fit["omag_err"], dtype=float)[base],
        color=color,
        n_candidates=n_candidates,
        zero_point=zp,
    )

"""Astrometric refinement with SCAMP (Debian package ``scamp``), fully offline.

The detections and the reference stars are handed to SCAMP as local FITS-LDAC files
(``ASTREF_CATALOG FILE``), so SCAMP never contacts a catalog server. SCAMP's output header
(TAN, plus TPV distortion terms above degree 1) becomes the ``AstrometricSolution``; its
quality numbers are measured here by matching the detections to the reference stars again
through the new WCS, the same way for every method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skyphot.adapters._ldac import write_ldac
from skyphot.adapters._process import find_tool, run_tool, tool_workdir, write_config
from skyphot.catalogs.base import ReferenceCatalog
from skyphot.core.astrometry import AstrometricSolution
from skyphot.core.detection import SourceList
from skyphot.errors import AstrometryError, CatalogError, ExternalToolError, InputError

_MIN_POSITION_ERROR_PX = 0.005
_FALLBACK_POSITION_ERROR_PX = 0.05


def _reference_columns(
    reference: ReferenceCatalog | Table, band: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ra, dec, mag, magerr) of the reference stars; NaN magnitudes become 99."""
    table = reference.table if isinstance(reference, ReferenceCatalog) else reference
    if band is None:
        if isinstance(reference, ReferenceCatalog) and reference.bands:
            band = reference.bands[0]
        else:
            band = "mag"
    for column in ("ra", "dec"):
        if column not in table.colnames:
            raise CatalogError(f"the reference catalog has no {column!r} column (degrees)")
    n = len(table)
    mag = (
        np.asarray(table[band], dtype=np.float64) if band in table.colnames
        else np.full(n, 20.0)  # positions are all SCAMP needs; magnitudes only sort
    )
    err_col = f"{band}_err"
    magerr = (
        np.asarray(table[err_col], dtype=np.float64) if err_col in table.colnames
        else np.full(n, 0.05)
    )
    mag = np.where(np.isfinite(mag), mag, 99.0)
    magerr = np.where(np.isfinite(magerr), magerr, 0.05)
    ra = np.asarray(table["ra"], dtype=np.float64)
    dec = np.asarray(table["dec"], dtype=np.float64)
    good = np.isfinite(ra) & np.isfinite(dec)
    return ra[good], dec[good], mag[good], magerr[good]


def _image_header(wcs: WCS, shape: tuple[int, int]) -> fits.Header:
    ny, nx = shape
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = nx
    header["NAXIS2"] = ny
    header["EXPTIME"] = 1.0
    header["FILTER"] = "skyphot"
    guess = wcs.deepcopy()
    if guess.sip is not None:
        # SCAMP does not read SIP; it fits its own distortion, so the linear part will do.
        guess.sip = None
        guess.wcs.ctype = [c.replace("-SIP", "") for c in guess.wcs.ctype]
    header.update(guess.to_header(relax=True))
    return header


def _position_errors(sources: SourceList) -> np.ndarray:
    """Centroid error (pixels) from the source size and S/N: about sigma_PSF / SNR."""
    with np.errstate(divide="ignore", invalid="ignore"):
        size = np.sqrt(np.abs(sources.a * sources.b))
        err = size * np.abs(sources.fluxerr / sources.flux)
    err = np.where(np.isfinite(err) & (err > 0), err, _FALLBACK_POSITION_ERROR_PX)
    return np.maximum(err, _MIN_POSITION_ERROR_PX)


def _write_sources(path: Path, sources: SourceList, wcs: WCS, shape: tuple[int, int]) -> None:
    err = _position_errors(sources)
    flux = np.asarray(sources.flux, dtype=np.float64)
    objects = Table(
        {
            # SCAMP reads FITS (1-based) pixel coordinates.
            "XWIN_IMAGE": np.asarray(sources.x, dtype=np.float64) + 1.0,
            "YWIN_IMAGE": np.asarray(sources.y, dtype=np.float64) + 1.0,
            "ERRAWIN_IMAGE": err,
            "ERRBWIN_IMAGE": err,
            "ERRTHETAWIN_IMAGE": np.zeros(len(sources)),
            "FLUX_AUTO": flux,
            "FLUXERR_AUTO": np.asarray(sources.fluxerr, dtype=np.float64),
            "MAG_AUTO": -2.5 * np.log10(np.clip(flux, 1e-30, None)),
            "FLAGS": np.zeros(len(sources), dtype=np.int16),
        }
    )
    write_ldac(path, _image_header(wcs, shape), objects)


def _write_reference(
    path: Path, ra: np.ndarray, dec: np.ndarray, mag: np.ndarray, magerr: np.ndarray,
    error_arcsec: float,
) -> None:
    n = ra.size
    objects = Table(
        {
            "X_WORLD": ra,
            "Y_WORLD": dec,
            "ERRA_WORLD": np.full(n, error_arcsec / 3600.0),
            "ERRB_WORLD": np.full(n, error_arcsec / 3600.0),
            "ERRTHETA_WORLD": np.zeros(n),
            "MAG": mag,
            "MAGERR": magerr,
            "OBSDATE": np.full(n, 2000.0),
        }
    )
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 0
    write_ldac(path, header, objects)


def _read_scamp_header(path: Path, shape: tuple[int, int]) -> WCS:
    if not path.is_file():
        raise ExternalToolError(
            "scamp finished but wrote no output header; run it by hand to see why"
        )
    # SCAMP's comments may hold non-ASCII characters, which FITS headers cannot.
    text = path.read_bytes().decode("latin-1").encode("ascii", "replace").decode("ascii")
    header = fits.Header.fromstring(text, sep="\n")
    has_pv = any(key.startswith(("PV1_", "PV2_")) for key in header)
    if has_pv:
        # SCAMP writes TAN with PV distortion terms: the convention wcslib calls TPV.
        header["CTYPE1"] = "RA---TPV"
        header["CTYPE2"] = "DEC--TPV"
    ny, nx = shape
    header["NAXIS"] = 2
    header["NAXIS1"] = nx
    header["NAXIS2"] = ny
    wcs = WCS(header, relax=True)
    wcs.pixel_shape = (nx, ny)
    return wcs


def match_to_reference(
    sources: SourceList, wcs: WCS, ra: np.ndarray, dec: np.ndarray, radius_arcsec: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of (source, reference) indices within ``radius_arcsec`` through ``wcs``.

    Each reference star takes its nearest source and vice versa (mutual nearest only).
    Returns the indices and the residuals (reference - source) along RA·cos(dec) and Dec,
    arcsec.
    """
    if len(sources) == 0 or ra.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), np.zeros(0)
    s_ra, s_dec = wcs.all_pix2world(sources.x, sources.y, 0)
    dec0 = np.deg2rad(np.median(dec))
    # Local tangent-plane offsets (arcsec) are exact enough at match-radius scale.
    dx = ((ra[None, :] - s_ra[:, None] + 180.0) % 360.0 - 180.0) * np.cos(dec0) * 3600.0
    dy = (dec[None, :] - s_dec[:, None]) * 3600.0
    d2 = dx**2 + dy**2
    best_ref = np.argmin(d2, axis=1)
    best_src = np.argmin(d2, axis=0)
    src = np.arange(len(sources))
    mutual = best_src[best_ref] == src
    close = d2[src, best_ref] <= radius_arcsec**2
    keep = mutual & close
    i_src = src[keep]
    i_ref = best_ref[keep]
    return i_src, i_ref, dx[i_src, i_ref], dy[i_src, i_ref]


def refine_wcs_scamp(
    sources: SourceList,
    *,
    wcs: WCS,
    reference: ReferenceCatalog | Table,
    shape: tuple[int, int],
    band: str | None = None,
    distortion_degree: int = 2,
    position_maxerr_arcmin: float = 1.0,
    pixscale_maxerr: float = 1.2,
    posangle_maxerr_deg: float = 5.0,
    crossid_radius_arcsec: float = 2.0,
    match_resolution_arcsec: float | None = None,
    reference_error_arcsec: float = 0.05,
    match_radius_arcsec: float = 2.0,
    min_matches: int = 6,
    max_rms_arcsec: float = 1.5,
    timeout: float = 120.0,
    executable: str | Path | None = None,
) -> AstrometricSolution:
    """Refine the approximate ``wcs`` of a frame of ``shape`` (ny, nx) with SCAMP.

    ``sources``: detections (0-based pixels). ``reference``: a ``ReferenceCatalog`` or a table
    with ``ra``, ``dec`` (degrees) and a magnitude column (``band``; default the catalog's
    first band, or ``mag``). The header WCS may be off by up to ``position_maxerr_arcmin``,
    its scale by a factor ``pixscale_maxerr`` and its rotation by ``posangle_maxerr_deg``.
    ``match_resolution_arcsec``: resolution of SCAMP's pattern matching (default two
    pixels; SCAMP's own automatic choice is far finer and takes seconds).
    ``distortion_degree``: polynomial degree of SCAMP's distortion (1 = linear, pure TAN).
    The result is checked by re-matching within ``match_radius_arcsec``; raises
    ``AstrometryError`` with fewer than ``min_matches`` pairs or rms above ``max_rms_arcsec``.
    """
    find_tool("scamp", executable)
    if distortion_degree < 1:
        raise InputError(f"distortion_degree must be >= 1, got {distortion_degree}")
    if len(sources) < min_matches:
        raise AstrometryError(
            f"only {len(sources)} detections, SCAMP needs at least {min_matches}; lower the "
            "detection threshold"
        )
    ra, dec, mag, magerr = _reference_columns(reference, band)
    if match_resolution_arcsec is None:
        pixel_arcsec = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
        match_resolution_arcsec = 2.0 * pixel_arcsec
    if ra.size < min_matches:
        raise CatalogError(
            f"the reference catalog has only {ra.size} usable stars (need {min_matches}); "
            "use a deeper catalog or a larger radius"
        )
    config: dict[str, object] = {
        "ASTREF_CATALOG": "FILE",
        "ASTREFCAT_NAME": "reference.cat",
        "ASTREFCENT_KEYS": ("X_WORLD", "Y_WORLD"),
        "ASTREFERR_KEYS": ("ERRA_WORLD", "ERRB_WORLD", "ERRTHETA_WORLD"),
        "ASTREFMAG_KEY": "MAG",
        "ASTREFMAGERR_KEY": "MAGERR",
        "ASTREFOBSDATE_KEY": "OBSDATE",
        "SAVE_REFCATALOG": False,
        "MATCH": True,
        "MATCH_FLIPPED": False,
        "MATCH_RESOL": match_resolution_arcsec,
        "PIXSCALE_MAXERR": pixscale_maxerr,
        "POSANGLE_MAXERR": posangle_maxerr_deg,
        "POSITION_MAXERR": position_maxerr_arcmin,
        "CROSSID_RADIUS": crossid_radius_arcsec,
        "MOSAIC_TYPE": "UNCHANGED",
        "SOLVE_ASTROM": True,
        "PROJECTION_TYPE": "TAN" if distortion_degree == 1 else "TPV",
        "DISTORT_KEYS": ("XWIN_IMAGE", "YWIN_IMAGE"),
        "DISTORT_GROUPS": (1, 1),
        "DISTORT_DEGREES": distortion_degree,
        "STABILITY_TYPE": "EXPOSURE",
        "SOLVE_PHOTOM": False,
        "SN_THRESHOLDS": (5.0, 50.0),
        "FLAGS_MASK": "0x00f0",
        "CHECKPLOT_TYPE": "NONE",
        "CHECKPLOT_DEV": "NULL",
        "CHECKIMAGE_TYPE": "NONE",
        "WRITE_XML": False,
        "VERBOSE_TYPE": "NORMAL",
        "HEADER_TYPE": "NORMAL",
        "AHEADER_GLOBAL": "none.ahead",
        "NTHREADS": 1,
    }
    with tool_workdir("scamp") as workdir:
        _write_sources(workdir / "sources.cat", sources, wcs, shape)
        _write_reference(workdir / "reference.cat", ra, dec, mag, magerr, reference_error_arcsec)
        write_config(workdir / "scamp.conf", config)
        run_tool(
            "scamp", ["sources.cat", "-c", "scamp.conf"],
            workdir=workdir, timeout=timeout, executable=executable,
        )
        solved = _read_scamp_header(workdir / "sources.head", shape)
    i_src, i_ref, res_x, res_y = match_to_reference(sources, solved, ra, dec,
                                                    match_radius_arcsec)
    n = int(i_src.size)
    rms = float(np.sqrt(np.mean(res_x**2 + res_y**2))) if n else float("inf")
    if n < min_matches or rms > max_rms_arcsec:
        raise AstrometryError(
            f"SCAMP's solution matches only {n} reference stars within "
            f"{match_radius_arcsec:g} arcsec (rms {rms:.2f} arcsec; need {min_matches} "
            f"and <= {max_rms_arcsec:g}); check that the header WCS is within "
            f"{position_maxerr_arcmin:g} arcmin and that the catalog covers the field"
        )
    ny, nx = shape
    x_ref, y_ref = solved.all_world2pix(ra, dec, 0)
    on_frame = int(np.count_nonzero((x_ref > -0.5) & (x_ref < nx - 0.5)
                                    & (y_ref > -0.5) & (y_ref < ny - 0.5)))
    return AstrometricSolution(
        wcs=solved,
        n_matched=n,
        rms_arcsec=rms,
        matched_fraction=n / max(1, min(len(sources), on_frame)),
        matched_source=i_src,
        matched_catalog=i_ref,
        residual_x_arcsec=res_x,
        residual_y_arcsec=res_y,
        method="scamp",
    )

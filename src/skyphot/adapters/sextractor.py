"""Source detection with SExtractor (Debian package ``source-extractor``).

``detect_sources_sextractor`` returns the same ``SourceList`` as the built-in SEP detection
(0-based pixel centroids); ``extract_ldac`` writes the FITS-LDAC catalog SCAMP and PSFEx read.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from skyphot.adapters._ldac import read_ldac_objects
from skyphot.adapters._process import run_tool, tool_workdir, write_config
from skyphot.core.detection import SourceList
from skyphot.errors import InputError

# SEP flag bits (sep.OBJ_MERGED, ...) the SExtractor FLAGS are translated to.
SEP_OBJ_MERGED = 0x01
SEP_OBJ_TRUNC = 0x02
SEP_OBJ_DOVERFLOW = 0x04
SEP_APER_TRUNC = 0x10
SEP_APER_HASMASKED = 0x20
# SEP has no saturation bit; this one is above all SEP bits so it cannot collide.
FLAG_SATURATED = 0x100

# SExtractor FLAGS bit -> SEP-style bit.
_FLAG_MAP = {
    0x01: SEP_APER_HASMASKED,  # neighbours or bad pixels bias the photometry
    0x02: SEP_OBJ_MERGED,  # deblended from a larger detection
    0x04: FLAG_SATURATED,
    0x08: SEP_OBJ_TRUNC,  # touches the image border
    0x10: SEP_APER_TRUNC,  # aperture data incomplete
    0x20: SEP_OBJ_TRUNC,  # isophotal data incomplete
    0x40: SEP_OBJ_DOVERFLOW,  # deblending memory overflow
    0x80: SEP_OBJ_DOVERFLOW,  # extraction memory overflow
}

# The classic 3x3 pyramid detection filter (the same kernel SEP uses by default).
_PYRAMID_KERNEL = "CONV NORM\n1 2 1\n2 4 2\n1 2 1\n"

_DETECT_PARAMS = (
    "NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "FLAGS_WIN",
    "FLUX_ISO", "FLUXERR_ISO", "A_IMAGE", "B_IMAGE", "THETA_IMAGE", "FLAGS",
    "FLUX_MAX", "ISOAREA_IMAGE",
)
# What SCAMP and PSFEx read (keys of their default configurations), plus the world position.
_LDAC_PARAMS = (
    "NUMBER", "X_IMAGE", "Y_IMAGE", "XWIN_IMAGE", "YWIN_IMAGE", "ERRAWIN_IMAGE",
    "ERRBWIN_IMAGE", "ERRTHETAWIN_IMAGE", "X_WORLD", "Y_WORLD", "FLUX_AUTO", "FLUXERR_AUTO",
    "FLUX_APER", "FLUXERR_APER", "FLUX_RADIUS", "ELONGATION", "SNR_WIN", "FLUX_MAX",
    "A_IMAGE", "B_IMAGE", "THETA_IMAGE", "FLAGS", "FLAGS_WEIGHT",
)

# Variance given to masked pixels; anything at or above _BAD_VARIANCE_THRESHOLD is ignored.
_MASKED_VARIANCE = 1e30
_BAD_VARIANCE_THRESHOLD = 1e29


@dataclass(frozen=True)
class SExtractorSettings:
    """Detection settings shared by both entry points (see ``detect_sources_sextractor``)."""

    threshold_sigma: float = 5.0
    min_area: int = 5
    gain: float = 0.0
    saturation: float | None = None
    background_box: int = 64
    background_filter: int = 3
    filter: bool = True
    deblend_nthresh: int = 32
    deblend_mincont: float = 0.005
    aperture_diameter: float = 8.0


def _validated(
    data: np.ndarray, rms: np.ndarray | float | None, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """float32 image (bad pixels zeroed), variance map (bad: huge) and the bad-pixel map."""
    image = np.asarray(data, dtype=np.float32)
    if image.ndim != 2 or image.size == 0:
        raise InputError(f"SExtractor needs a 2-D image, got an array of shape {image.shape}")
    bad = ~np.isfinite(image)
    if mask is not None:
        given = np.asarray(mask, dtype=bool)
        if given.shape != image.shape:
            raise InputError(f"mask shape {given.shape} differs from image shape {image.shape}")
        bad |= given
    variance: np.ndarray | None = None
    if rms is not None:
        rms_given = np.asarray(rms, dtype=np.float64)
        if rms_given.ndim != 0 and rms_given.shape != image.shape:
            raise InputError(
                f"rms shape {rms_given.shape} differs from image shape {image.shape}"
            )
        rms_arr = np.broadcast_to(rms_given, image.shape)
        if not np.all((np.isfinite(rms_arr) & (rms_arr > 0)) | bad):
            raise InputError(
                "the rms map must be positive and finite wherever pixels are not masked; "
                "mask the pixels where it is not"
            )
        variance = np.where(bad, _MASKED_VARIANCE, rms_arr**2).astype(np.float32)
    if not bad.any():
        return image, variance, None
    return np.where(bad, np.float32(0.0), image), variance, bad


def _run(
    data: np.ndarray,
    *,
    workdir: Path,
    rms: np.ndarray | float | None,
    mask: np.ndarray | None,
    header: fits.Header | None,
    settings: SExtractorSettings,
    params: Sequence[str],
    timeout: float,
    executable: str | Path | None,
) -> Path:
    """Run SExtractor on ``data`` in ``workdir``; returns the LDAC catalog path."""
    image, variance, bad = _validated(data, rms, mask)
    image_header = fits.Header() if header is None else header.copy()
    fits.PrimaryHDU(image, header=image_header).writeto(workdir / "image.fits")
    config: dict[str, object] = {
        "CATALOG_NAME": "image.cat",
        "CATALOG_TYPE": "FITS_LDAC",
        "PARAMETERS_NAME": "image.param",
        "DETECT_TYPE": "CCD",
        "DETECT_MINAREA": settings.min_area,
        "THRESH_TYPE": "RELATIVE",
        "DETECT_THRESH": settings.threshold_sigma,
        "ANALYSIS_THRESH": settings.threshold_sigma,
        "FILTER": settings.filter,
        "FILTER_NAME": "pyramid.conv",
        "DEBLEND_NTHRESH": settings.deblend_nthresh,
        "DEBLEND_MINCONT": settings.deblend_mincont,
        "CLEAN": True,
        "CLEAN_PARAM": 1.0,
        "MASK_TYPE": "CORRECT",
        "PHOT_APERTURES": settings.aperture_diameter,
        "PHOT_AUTOPARAMS": (2.5, 3.5),
        "PHOT_FLUXFRAC": 0.5,
        # No saturation given: nothing is flagged saturated (SExtractor's default is 50000).
        "SATUR_LEVEL": settings.saturation if settings.saturation is not None else 1e20,
        "SATUR_KEY": "SKYPHOT_NOKEY",
        "GAIN": settings.gain,
        "GAIN_KEY": "SKYPHOT_NOKEY",
        "PIXEL_SCALE": 1.0,
        "BACK_SIZE": settings.background_box,
        "BACK_FILTERSIZE": settings.background_filter,
        "INTERP_TYPE": "NONE",  # masked pixels stay masked, they are not filled in
        "MEMORY_PIXSTACK": max(300000, image.size),
        "MEMORY_OBJSTACK": 20000,
        "VERBOSE_TYPE": "NORMAL",
        "WRITE_XML": False,
        "CHECKIMAGE_TYPE": "NONE",
        "NTHREADS": 1,
    }
    if variance is not None:
        # The rms belongs to background-subtracted data: the sky is zero by construction.
        fits.PrimaryHDU(variance).writeto(workdir / "variance.fits")
        config.update(
            BACK_TYPE="MANUAL", BACK_VALUE=0.0, WEIGHT_TYPE="MAP_VAR",
            WEIGHT_IMAGE="variance.fits", RESCALE_WEIGHTS=False, WEIGHT_GAIN=False,
            WEIGHT_THRESH=_BAD_VARIANCE_THRESHOLD,
        )
    else:
        config.update(BACK_TYPE="AUTO", WEIGHT_TYPE="NONE")
        if bad is not None:
            fits.PrimaryHDU((~bad).astype(np.float32)).writeto(workdir / "weight.fits")
            config.update(
                WEIGHT_TYPE="MAP_WEIGHT", WEIGHT_IMAGE="weight.fits", WEIGHT_THRESH=0.0,
                WEIGHT_GAIN=False,
            )
    (workdir / "pyramid.conv").write_text(_PYRAMID_KERNEL)
    (workdir / "image.param").write_text("\n".join(params) + "\n")
    write_config(workdir / "image.sex", config)
    run_tool(
        "source-extractor", ["image.fits", "-c", "image.sex"],
        workdir=workdir, timeout=timeout, executable=executable,
    )
    return workdir / "image.cat"


def _sep_flags(flags: np.ndarray) -> np.ndarray:
    out = np.zeros(flags.shape, dtype=np.int64)
    for sex_bit, sep_bit in _FLAG_MAP.items():
        out[(flags & sex_bit) != 0] |= sep_bit
    return out


def _to_source_list(table: Table) -> SourceList:
    """Convert a SExtractor catalog (1-based pixels, degrees) to a 0-based ``SourceList``."""
    x = np.asarray(table["XWIN_IMAGE"], dtype=np.float64)
    y = np.asarray(table["YWIN_IMAGE"], dtype=np.float64)
    # Windowed centroids are the precise ones; where their iteration failed, use isophotal.
    failed = (np.asarray(table["FLAGS_WIN"]) != 0) | ~np.isfinite(x) | ~np.isfinite(y)
    x = np.where(failed, np.asarray(table["X_IMAGE"], dtype=np.float64), x) - 1.0
    y = np.where(failed, np.asarray(table["Y_IMAGE"], dtype=np.float64), y) - 1.0
    return SourceList(
        x=x,
        y=y,
        flux=np.asarray(table["FLUX_ISO"], dtype=np.float64),
        fluxerr=np.asarray(table["FLUXERR_ISO"], dtype=np.float64),
        a=np.asarray(table["A_IMAGE"], dtype=np.float64),
        b=np.asarray(table["B_IMAGE"], dtype=np.float64),
        theta=np.deg2rad(np.asarray(table["THETA_IMAGE"], dtype=np.float64)),
        flag=_sep_flags(np.asarray(table["FLAGS"], dtype=np.int64)),
        peak=np.asarray(table["FLUX_MAX"], dtype=np.float64),
        npix=np.asarray(table["ISOAREA_IMAGE"], dtype=np.int64),
    )


def detect_sources_sextractor(
    data: np.ndarray,
    *,
    rms: np.ndarray | float | None = None,
    mask: np.ndarray | None = None,
    threshold_sigma: float = 5.0,
    min_area: int = 5,
    gain: float = 0.0,
    saturation: float | None = None,
    background_box: int = 64,
    background_filter: int = 3,
    filter: bool = True,
    deblend_nthresh: int = 32,
    deblend_mincont: float = 0.005,
    max_sources: int | None = None,
    timeout: float = 120.0,
    executable: str | Path | None = None,
) -> SourceList:
    """Detect sources with SExtractor; same contract as the built-in SEP detection.

    With ``rms`` (ADU, per pixel or scalar) ``data`` must be background-subtracted: the
    threshold is ``threshold_sigma`` × rms per pixel. Without it SExtractor estimates the
    background itself on meshes of ``background_box`` pixels. ``mask`` (True = bad) pixels
    never take part. ``gain`` in e-/ADU (0: no Poisson term in errors), ``saturation`` in ADU
    (flagged ``FLAG_SATURATED``). Positions are 0-based; flux is the isophotal flux (ADU).
    Sorted by decreasing flux and cut to ``max_sources`` when given; may be empty.
    """
    settings = SExtractorSettings(
        threshold_sigma=threshold_sigma, min_area=min_area, gain=gain, saturation=saturation,
        background_box=background_box, background_filter=background_filter, filter=filter,
        deblend_nthresh=deblend_nthresh, deblend_mincont=deblend_mincont,
    )
    with tool_workdir("source-extractor") as workdir:
        catalog = _run(
            data, workdir=workdir, rms=rms, mask=mask, header=None, settings=settings,
            params=_DETECT_PARAMS, timeout=timeout, executable=executable,
        )
        table = read_ldac_objects(catalog, "source-extractor")
    sources = _to_source_list(table)
    order = np.argsort(-sources.flux, kind="stable")
    if max_sources is not None:
        order = order[:max_sources]
    return sources.select(order)


def extract_ldac(
    data: np.ndarray,
    out_path: str | Path,
    *,
    header: fits.Header | None = None,
    rms: np.ndarray | float | None = None,
    mask: np.ndarray | None = None,
    vignet_size: int | None = None,
    settings: SExtractorSettings | None = None,
    timeout: float = 120.0,
    executable: str | Path | None = None,
) -> Path:
    """Run SExtractor and write its FITS-LDAC catalog (for SCAMP or PSFEx) to ``out_path``.

    ``header`` (e.g. with the frame WCS) is stored in the catalog's ``LDAC_IMHEAD``.
    ``vignet_size`` (pixels) adds the ``VIGNET`` cut-outs PSFEx needs. Pixel positions in the
    file keep SExtractor's 1-based convention, as the AstrOmatic tools expect.
    """
    params = list(_LDAC_PARAMS)
    if vignet_size is not None:
        if vignet_size < 5:
            raise InputError(f"vignet_size must be at least 5 pixels, got {vignet_size}")
        params.append(f"VIGNET({vignet_size},{vignet_size})")
    target = Path(out_path)
    with tool_workdir("source-extractor") as workdir:
        catalog = _run(
            data, workdir=workdir, rms=rms, mask=mask, header=header,
            settings=settings or SExtractorSettings(), params=params, timeout=timeout,
            executable=executable,
        )
        read_ldac_objects(catalog, "source-extractor")  # fails clearly if nothing was written
        shutil.copyfile(catalog, target)
    return target

"""Forced photometry through STDPipe's ``measure_objects``: calibration stars and the target.

Fluxes are STDPipe's optimal extraction (Naylor 1998): ``F = sum(P D) / sum(P^2)`` over the
pixels within ``photometry.psf_radius_fwhm`` FWHM, with ``P`` the PSFEx stamp normalised to
unit sum (see :mod:`skyphot.adapters.stdpipe_psf`) and ``D`` the frame minus skyphot's
background map minus the local background (photutils' sigma-clipped mode estimate,
3 median - 2 mean, in the ``photometry.annulus_fwhm`` annulus).
Its error is ``sqrt(sum(P^2 V)) / sum(P^2)`` for the per-pixel variance ``V`` given:
background only (``rms**2``) for ``fluxerr_background``, background plus the source's photon
noise for ``fluxerr``. STDPipe does not propagate the local-background uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from skyphot.adapters.stdpipe import StdpipeAPI
from skyphot.adapters.stdpipe_psf import StdpipePSF
from skyphot.core.photometry import AperturePhotometry, PSFPhotometry
from skyphot.errors import PhotometryError


@dataclass(frozen=True)
class ForcedInputs:
    """The pixels and noise model every forced measurement of one frame shares."""

    data: np.ndarray  # the frame as read, ADU
    background: np.ndarray  # skyphot's smooth background map, ADU
    data_sub: np.ndarray  # data - background, masked pixels 0
    rms: np.ndarray  # background noise per pixel, ADU
    mask: np.ndarray  # bool, True = bad
    gain: float  # e-/ADU

    def noise(self, *, with_source: bool) -> np.ndarray:
        """Per-pixel 1-sigma noise (ADU): background, plus source photons when asked."""
        rms = self.rms.astype(np.float64)
        if not with_source:
            return rms
        return np.sqrt(rms**2 + np.maximum(self.data_sub, 0.0) / self.gain)


def measure_forced(
    api: StdpipeAPI,
    inputs: ForcedInputs,
    x: np.ndarray,
    y: np.ndarray,
    *,
    psf: StdpipePSF,
    fwhm: float,
    radius_fwhm: float,
    annulus_fwhm: tuple[float, float],
    optimal: bool,
    with_source_noise: bool,
    flags: np.ndarray | None = None,
    group_sources: bool = False,
) -> Table:
    """STDPipe's ``measure_objects`` at 0-based (x, y); radii are in units of ``fwhm`` (px).

    ``optimal``: PSF-weighted optimal extraction, else a circular aperture. Returns STDPipe's
    table: ``flux``, ``fluxerr`` (ADU), ``mag``, ``magerr``, ``bg_local`` (ADU/px),
    ``npix_aper``, ``flags`` (``flags`` given, OR-ed with STDPipe's 0x200 masked aperture,
    0x400 local background failed, 0x800 extraction failed, 0x1000 bad fit), and for optimal
    extraction ``chi2_optimal``.
    """
    obj = Table({
        "x": np.asarray(x, dtype=np.float64),
        "y": np.asarray(y, dtype=np.float64),
        "flags": np.zeros(np.size(x), dtype=np.int64) if flags is None else np.asarray(
            flags, dtype=np.int64),
    })
    result: Table = api.photometry.measure_objects(
        obj,
        inputs.data,
        aper=radius_fwhm,
        bkgann=annulus_fwhm,
        fwhm=fwhm,
        psf=psf.model,
        optimal=optimal,
        group_sources=group_sources,
        mask=inputs.mask,
        bg=inputs.background,
        err=inputs.noise(with_source=with_source_noise),
        keep_negative=True,
        verbose=False,
    )
    return result


def _circle_stats(
    mask: np.ndarray, x: float, y: float, radius: float
) -> tuple[int, bool]:
    """Masked pixel centres within ``radius`` of (x, y), and whether the circle leaves the frame."""
    ny, nx = mask.shape
    near_edge = (x - radius < -0.5) or (x + radius > nx - 0.5) or (y - radius < -0.5) or (
        y + radius > ny - 0.5)
    x0, x1 = max(0, int(np.floor(x - radius))), min(nx, int(np.ceil(x + radius)) + 1)
    y0, y1 = max(0, int(np.floor(y - radius))), min(ny, int(np.ceil(y + radius)) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    return int(np.count_nonzero(mask[y0:y1, x0:x1] & inside)), bool(near_edge)


@dataclass(frozen=True)
class ForcedTarget:
    """The target's optimal-extraction (PSF) and aperture photometry at a fixed position."""

    psf: PSFPhotometry
    aperture: AperturePhotometry
    aperture_radius: float  # px
    encircled_energy: float  # the PSF's flux fraction inside ``aperture_radius``
    fwhm: float  # px, of the PSF model at the target


def measure_target(
    api: StdpipeAPI,
    inputs: ForcedInputs,
    x: float,
    y: float,
    *,
    psf: StdpipePSF,
    psf_radius_fwhm: float,
    aperture_radius_fwhm: float,
    annulus_fwhm: tuple[float, float],
) -> ForcedTarget:
    """Optimal-extraction and aperture flux at 0-based (x, y), never re-centred.

    The position is used as given, like the calibration stars' photometry, so the zero point
    applies to it unchanged. Radii are in units of the PSF model's FWHM at (x, y). Raises
    ``PhotometryError`` when STDPipe cannot measure there.
    """
    fwhm = psf.fwhm_at(x, y)
    px, py = np.array([x]), np.array([y])

    def measure(radius_fwhm: float, *, optimal: bool, with_source: bool) -> Table:
        return measure_forced(
            api, inputs, px, py, psf=psf, fwhm=fwhm, radius_fwhm=radius_fwhm,
            annulus_fwhm=annulus_fwhm, optimal=optimal, with_source_noise=with_source,
        )

    total = measure(psf_radius_fwhm, optimal=True, with_source=True)
    background_only = measure(psf_radius_fwhm, optimal=True, with_source=False)
    aperture = measure(aperture_radius_fwhm, optimal=False, with_source=True)
    flux = float(total["flux"][0])
    if not np.isfinite(flux):
        raise PhotometryError(
            f"STDPipe cannot measure the target at pixel ({x:.1f}, {y:.1f}): its PSF "
            "stamp does not fit on the frame there, or every pixel around it is masked — "
            "use the built-in engine for targets this close to the edge"
        )
    psf_radius = psf_radius_fwhm * fwhm
    n_masked, near_edge = _circle_stats(inputs.mask, x, y, psf_radius)
    phot = PSFPhotometry(
        flux=np.array([flux]),
        fluxerr=np.array([float(total["fluxerr"][0])]),
        fluxerr_background=np.array([float(background_only["fluxerr"][0])]),
        local_background=np.array([float(total["bg_local"][0])]),
        n_masked=np.array([n_masked], dtype=np.int64),
        near_edge=np.array([near_edge]),
        chi2=np.array([float(total["chi2_optimal"][0])]),
    )
    ap_radius = aperture_radius_fwhm * fwhm
    ap_masked, ap_edge = _circle_stats(inputs.mask, x, y, ap_radius)
    ap = AperturePhotometry(
        flux=np.array([float(aperture["flux"][0])]),
        fluxerr=np.array([float(aperture["fluxerr"][0])]),
        local_background=np.array([float(aperture["bg_local"][0])]),
        area=np.array([float(aperture["npix_aper"][0])]),
        n_masked=np.array([ap_masked], dtype=np.int64),
        near_edge=np.array([ap_edge]),
    )
    return ForcedTarget(
        psf=phot,
        aperture=ap,
        aperture_radius=ap_radius,
        encircled_energy=psf.enclosed_fraction(x, y, ap_radius),
        fwhm=fwhm,
    )

"""A position-dependent PSF model from PSFEx (Debian package ``psfex``).

PSFEx writes its model as a stack of basis images sampled every ``PSF_SAMP`` image pixels
and a polynomial in the (1-based) ``X_IMAGE``/``Y_IMAGE`` position; the model at a position is
the polynomial-weighted sum of the basis images. The model describes the PSF as recorded by
the pixels, so rendering it onto the pixel grid (Lanczos-3 interpolation, as PSFEx itself
resamples) yields the pixel-integrated PSF the ``PSFModel`` protocol asks for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from skyphot.adapters._process import find_tool, run_tool, tool_workdir, write_config
from skyphot.adapters.sextractor import SExtractorSettings, extract_ldac
from skyphot.errors import DetectionError, ExternalToolError, InputError

_LANCZOS_A = 3
# A pixel is a box of unit width: it adds 1/12 px^2 of variance per axis to the PSF.
_PIXEL_FWHM2 = 8.0 * np.log(2.0) / 12.0
_FINE_STEP = 0.2  # image pixels, grid on which the half-maximum area is measured


def _lanczos_weights(coords: np.ndarray, n: int) -> np.ndarray:
    """Matrix (len(coords), n) interpolating a length-``n`` sampled signal at ``coords``.

    Each row is normalised over all its taps (also those beyond the signal's ends, which
    multiply zeros), so interpolation conserves flux at any sub-pixel phase.
    """
    taps = np.arange(-_LANCZOS_A, n + _LANCZOS_A)
    t = coords[:, None] - taps[None, :]
    w = np.sinc(t) * np.sinc(t / _LANCZOS_A)
    w[np.abs(t) >= _LANCZOS_A] = 0.0
    norm = w.sum(axis=1, keepdims=True)
    norm[norm == 0] = 1.0
    return (w / norm)[:, _LANCZOS_A : _LANCZOS_A + n]


@dataclass(frozen=True)
class PSFExModel:
    """A PSFEx PSF model; satisfies ``skyphot.core.psf.PSFModel`` (0-based pixels).

    ``basis`` has shape (n_terms, ny, nx), sampled every ``sampling`` image pixels with the
    PSF centre at element (ny // 2, nx // 2). Term k multiplies ``u**i * v**j`` for the
    k-th (i, j) of ``powers``, with ``u = (x + 1 - zero[0]) / scale[0]`` (PSFEx's 1-based
    X_IMAGE) and likewise ``v`` for y.
    """

    basis: np.ndarray
    sampling: float
    zero: tuple[float, float]
    scale: tuple[float, float]
    powers: tuple[tuple[int, int], ...]
    n_loaded: int
    n_accepted: int
    chi2: float

    def coefficients(self, x: float, y: float) -> np.ndarray:
        """Weights of the basis images at 0-based pixel (x, y)."""
        u = (x + 1.0 - self.zero[0]) / self.scale[0]
        v = (y + 1.0 - self.zero[1]) / self.scale[1]
        return np.array([u**i * v**j for i, j in self.powers])

    def model_at(self, x: float, y: float) -> np.ndarray:
        """The model image at (x, y) on PSFEx's own grid (not normalised)."""
        return np.tensordot(self.coefficients(x, y), self.basis, axes=1)

    def _resample(
        self, model: np.ndarray, offsets_x: np.ndarray, offsets_y: np.ndarray
    ) -> np.ndarray:
        """The model at image-pixel offsets from the centre, in flux fraction per pixel."""
        ny, nx = model.shape
        wx = _lanczos_weights(nx // 2 + offsets_x / self.sampling, nx)
        wy = _lanczos_weights(ny // 2 + offsets_y / self.sampling, ny)
        total = float(model.sum()) * self.sampling**2
        if not total > 0:
            raise InputError(
                "the PSFEx model has no positive flux at this position; the position is "
                "probably far outside the area the model was fitted on"
            )
        return (wy @ model @ wx.T) / total

    def render(self, x: float, y: float, size: int) -> tuple[np.ndarray, int, int]:
        """Pixel-integrated PSF centred at 0-based (x, y); each pixel holds its flux fraction.

        Returns ``(stamp, x0, y0)`` with ``stamp[j, i]`` at frame pixel ``(x0 + i, y0 + j)``.
        The fractions sum to 1 when the stamp covers the model (less when it is cut).
        """
        if size < 1:
            raise InputError(f"PSF stamp size must be at least 1 pixel, got {size}")
        x0 = int(np.floor(x + 0.5)) - size // 2
        y0 = int(np.floor(y + 0.5)) - size // 2
        pix = np.arange(size, dtype=np.float64)
        stamp = self._resample(self.model_at(x, y), x0 + pix - x, y0 + pix - y)
        return stamp, x0, y0

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM in pixels at 0-based (x, y), from the area above half maximum.

        The pixel's own width is removed in quadrature, so this is the FWHM of the PSF
        before pixel integration, comparable to the built-in Moffat fit.
        """
        model = self.model_at(x, y)
        half_extent = 0.5 * self.sampling * (min(model.shape) - 1)
        grid = np.arange(-half_extent, half_extent + 1e-9, _FINE_STEP)
        fine = self._resample(model, grid, grid)
        area = np.count_nonzero(fine >= 0.5 * fine.max()) * _FINE_STEP**2
        fwhm_pix2 = 4.0 * area / np.pi
        return float(np.sqrt(max(fwhm_pix2 - _PIXEL_FWHM2, 0.0)))


def _powers(header: fits.Header) -> tuple[tuple[float, float], tuple[float, float], tuple[
        tuple[int, int], ...]]:
    naxis = int(header.get("POLNAXIS", 0))
    if naxis == 0:
        return (0.0, 0.0), (1.0, 1.0), ((0, 0),)
    names = [str(header.get(f"POLNAME{i}", "")).strip() for i in (1, 2)]
    if naxis != 2 or names != ["X_IMAGE", "Y_IMAGE"] or int(header.get("POLNGRP", 1)) != 1:
        raise InputError(
            f"unsupported PSFEx model variables {names[:naxis]}; only a single polynomial in "
            "X_IMAGE, Y_IMAGE is supported (PSFVAR_KEYS X_IMAGE,Y_IMAGE)"
        )
    degree = int(header["POLDEG1"])
    # PSFEx orders the terms with the first variable's power running fastest.
    powers = tuple((i, j) for j in range(degree + 1) for i in range(degree + 1 - j))
    zero = (float(header["POLZERO1"]), float(header["POLZERO2"]))
    scale = (float(header["POLSCAL1"]), float(header["POLSCAL2"]))
    return zero, scale, powers


def read_psfex_model(path: str | Path) -> PSFExModel:
    """Load a PSFEx ``.psf`` file. Raises ``InputError`` when it is not one."""
    try:
        with fits.open(path) as hdul:
            hdu = hdul["PSF_DATA"]
            header = hdu.header
            basis = np.array(hdu.data["PSF_MASK"][0], dtype=np.float64)
    except (OSError, KeyError) as exc:
        raise InputError(f"{path} is not a readable PSFEx model file ({exc})") from exc
    zero, scale, powers = _powers(header)
    if basis.ndim == 2:
        basis = basis[None, :, :]
    if basis.shape[0] != len(powers):
        raise InputError(
            f"{path}: {basis.shape[0]} PSF basis images but {len(powers)} polynomial terms"
        )
    return PSFExModel(
        basis=basis,
        sampling=float(header["PSF_SAMP"]),
        zero=zero,
        scale=scale,
        powers=powers,
        n_loaded=int(header.get("LOADED", 0)),
        n_accepted=int(header.get("ACCEPTED", 0)),
        chi2=float(header.get("CHI2", np.nan)),
    )


def fit_psf_psfex(
    data: np.ndarray,
    *,
    rms: np.ndarray | float | None = None,
    mask: np.ndarray | None = None,
    gain: float = 0.0,
    saturation: float | None = None,
    threshold_sigma: float = 5.0,
    psf_size: int = 25,
    sampling: float = 0.0,
    degree: int = 2,
    min_snr: float = 20.0,
    fwhm_range: tuple[float, float] = (1.5, 20.0),
    min_stars: int = 5,
    timeout: float = 120.0,
    sextractor: str | Path | None = None,
    psfex: str | Path | None = None,
) -> PSFExModel:
    """Fit a PSF varying as a ``degree`` polynomial over the frame with SExtractor + PSFEx.

    ``data``, ``rms``, ``mask``, ``gain`` (e-/ADU), ``saturation`` (ADU) and
    ``threshold_sigma`` mean what they do in ``detect_sources_sextractor``. ``psf_size``:
    model size in model pixels; ``sampling``: model step in image pixels (0: PSFEx chooses).
    Stars need S/N >= ``min_snr`` and FWHM within ``fwhm_range`` (pixels). ``sextractor`` and
    ``psfex`` are optional executable paths. Raises ``DetectionError`` when fewer than
    ``min_stars`` stars were accepted.
    """
    find_tool("source-extractor", sextractor)  # fail before any work if either is missing
    find_tool("psfex", psfex)
    if psf_size < 7:
        raise InputError(f"psf_size must be at least 7 pixels, got {psf_size}")
    if degree < 0:
        raise InputError(f"the PSF variation degree must be >= 0, got {degree}")
    settings = SExtractorSettings(
        threshold_sigma=threshold_sigma, gain=gain, saturation=saturation
    )
    config: dict[str, object] = {
        "BASIS_TYPE": "PIXEL_AUTO",
        "PSF_SAMPLING": sampling,
        "PSF_SIZE": (psf_size, psf_size),
        "PSF_RECENTER": False,
        "CENTER_KEYS": ("XWIN_IMAGE", "YWIN_IMAGE"),
        "PHOTFLUX_KEY": "FLUX_APER(1)",
        "PHOTFLUXERR_KEY": "FLUXERR_APER(1)",
        "PSFVAR_KEYS": ("X_IMAGE", "Y_IMAGE"),
        "PSFVAR_GROUPS": (1, 1),
        "PSFVAR_DEGREES": degree,
        "SAMPLE_AUTOSELECT": True,
        "SAMPLE_FWHMRANGE": fwhm_range,
        "SAMPLE_MINSN": min_snr,
        "SAMPLE_MAXELLIP": 0.3,
        "SAMPLE_FLAGMASK": "0x00fe",
        "CHECKPLOT_TYPE": "NONE",
        "CHECKIMAGE_TYPE": "NONE",
        "WRITE_XML": False,
        "VERBOSE_TYPE": "NORMAL",
        "NTHREADS": 1,
    }
    with tool_workdir("psfex") as workdir:
        extract_ldac(
            data, workdir / "stars.cat", rms=rms, mask=mask, vignet_size=psf_size,
            settings=settings, timeout=timeout, executable=sextractor,
        )
        write_config(workdir / "psfex.conf", config)
        run_tool(
            "psfex", ["stars.cat", "-c", "psfex.conf"],
            workdir=workdir, timeout=timeout, executable=psfex,
        )
        psf_path = workdir / "stars.psf"
        if not psf_path.is_file():
            raise ExternalToolError(
                "psfex finished but wrote no PSF model; too few usable stars, or a "
                "configuration problem (run psfex by hand on the catalog to see why)"
            )
        model = read_psfex_model(psf_path)
    if model.n_accepted < min_stars:
        raise DetectionError(
            f"PSFEx accepted only {model.n_accepted} of {model.n_loaded} stars (need "
            f"{min_stars}); lower min_snr or threshold_sigma, or widen fwhm_range"
        )
    return model

"""Synthetic frames with known truth for the adapter contract tests.

A field of pixel-integrated Moffat stars at random positions, a flat sky with Gaussian noise,
and a TAN WCS that maps them to known sky positions (0-based pixels, astropy origin 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from astropy.wcs import WCS


@dataclass(frozen=True)
class SimFrame:
    data: np.ndarray  # sky + stars + noise, ADU
    wcs: WCS  # the true TAN WCS
    x: np.ndarray  # true star centres, 0-based pixels
    y: np.ndarray
    flux: np.ndarray  # total star flux, ADU
    ra: np.ndarray  # degrees
    dec: np.ndarray
    mag: np.ndarray  # -2.5 log10(flux) + 25
    fwhm: float  # pixels, at the frame centre
    fwhm_slope_x: float  # FWHM change from the left to the right edge, pixels
    beta: float
    sky: float  # ADU
    noise: float  # ADU rms per pixel

    def fwhm_at(self, x: float) -> float:
        return self.fwhm + self.fwhm_slope_x * (x / (self.shape[1] - 1) - 0.5)

    @property
    def shape(self) -> tuple[int, int]:
        ny, nx = self.data.shape
        return int(ny), int(nx)


def moffat_stamp(
    dx: np.ndarray, dy: np.ndarray, fwhm: float, beta: float, oversample: int = 5
) -> np.ndarray:
    """Unit-flux Moffat integrated over pixels centred at offsets (dx, dy) from the star."""
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    total = np.zeros(np.broadcast(dx, dy).shape)
    for sy in sub:
        for sx in sub:
            r2 = (dx + sx) ** 2 + (dy + sy) ** 2
            total += (beta - 1.0) / (np.pi * alpha**2) * (1.0 + r2 / alpha**2) ** (-beta)
    return total / oversample**2


def tan_wcs(
    shape: tuple[int, int], *, ra: float, dec: float, scale_arcsec: float, rotation_deg: float
) -> WCS:
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]  # FITS 1-based: the frame centre
    scale = scale_arcsec / 3600.0
    rot = np.deg2rad(rotation_deg)
    # East to the left (RA increases to -x), as on the sky seen from Earth.
    wcs.wcs.cd = scale * np.array([[-np.cos(rot), np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    wcs.pixel_shape = (nx, ny)
    return wcs


def make_frame(
    *,
    shape: tuple[int, int] = (512, 512),
    n_stars: int = 150,
    fwhm: float = 3.5,
    fwhm_slope_x: float = 0.0,
    beta: float = 3.0,
    sky: float = 200.0,
    noise: float = 10.0,
    flux_range: tuple[float, float] = (3e3, 3e5),
    scale_arcsec: float = 1.2,
    center: tuple[float, float] = (150.0, 2.2),
    rotation_deg: float = 12.0,
    min_separation: float = 12.0,
    seed: int = 1,
) -> SimFrame:
    rng = np.random.default_rng(seed)
    ny, nx = shape
    margin = 10.0
    xs: list[float] = []
    ys: list[float] = []
    while len(xs) < n_stars:  # keep stars apart so truth matching is unambiguous
        cx = rng.uniform(margin, nx - 1 - margin)
        cy = rng.uniform(margin, ny - 1 - margin)
        taken = zip(xs, ys, strict=True)
        if all((cx - a) ** 2 + (cy - b) ** 2 > min_separation**2 for a, b in taken):
            xs.append(cx)
            ys.append(cy)
    x = np.array(xs)
    y = np.array(ys)
    # Log-uniform fluxes: many faint stars, a few bright ones.
    flux = np.exp(rng.uniform(np.log(flux_range[0]), np.log(flux_range[1]), n_stars))
    image = np.full(shape, sky, dtype=np.float64)
    half = int(np.ceil(5 * (fwhm + abs(fwhm_slope_x) / 2)))
    for cx, cy, f in zip(x, y, flux, strict=True):
        star_fwhm = fwhm + fwhm_slope_x * (cx / (nx - 1) - 0.5)
        x0, y0 = round(cx) - half, round(cy) - half
        jj, ii = np.mgrid[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1]
        inside = (ii >= 0) & (ii < nx) & (jj >= 0) & (jj < ny)
        stamp = f * moffat_stamp(ii - cx, jj - cy, star_fwhm, beta)
        image[jj[inside], ii[inside]] += stamp[inside]
    image += rng.normal(0.0, noise, shape)
    wcs = tan_wcs(shape, ra=center[0], dec=center[1], scale_arcsec=scale_arcsec,
                  rotation_deg=rotation_deg)
    ra, dec = wcs.all_pix2world(x, y, 0)
    return SimFrame(
        data=image.astype(np.float32), wcs=wcs, x=x, y=y, flux=flux, ra=ra, dec=dec,
        mag=-2.5 * np.log10(flux) + 25.0, fwhm=fwhm, fwhm_slope_x=fwhm_slope_x, beta=beta,
        sky=sky, noise=noise,
    )


def match_truth(
    x: np.ndarray, y: np.ndarray, frame: SimFrame, radius: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (measured, truth) of the nearest truth star within ``radius`` pixels."""
    d2 = (x[:, None] - frame.x[None, :]) ** 2 + (y[:, None] - frame.y[None, :]) ** 2
    nearest = np.argmin(d2, axis=1)
    ok = d2[np.arange(x.size), nearest] < radius**2
    return np.flatnonzero(ok), nearest[ok]


@pytest.fixture(scope="session")
def sim_frame() -> SimFrame:
    return make_frame()


@pytest.fixture(scope="session")
def make_sim() -> Callable[..., SimFrame]:
    """The frame factory, for tests that need other parameters."""
    return make_frame


@pytest.fixture(scope="session")
def match() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    return match_truth


@pytest.fixture(scope="session")
def moffat() -> Callable[..., np.ndarray]:
    """The pixel-integrated Moffat profile the frames are made of."""
    return moffat_stamp

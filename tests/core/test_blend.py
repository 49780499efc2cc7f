"""Stars within 2 FWHM fitted together with the target (``core.blend``), against truth."""

from __future__ import annotations

import numpy as np
import pytest

from skyphot.core.annulus import SourceDiscs, source_discs
from skyphot.core.blend import fit_close_neighbours
from skyphot.core.deblend import ForcedFit
from skyphot.core.detection import SourceList
from skyphot.core.photometry import forced_psf_photometry
from skyphot.core.psf import MoffatPSF

FWHM = 3.5
PSF = MoffatPSF.constant(FWHM, beta=3.0)
SHAPE = (120, 120)
TARGET = (60.2, 59.7)
RADIUS = 1.5 * FWHM
ANNULUS = (3.0 * FWHM, 8.0 * FWHM)
NOISE = 5.0
RMS = np.full(SHAPE, NOISE)


def _render(image: np.ndarray, x: float, y: float, flux: float) -> None:
    size = 101
    stamp, x0, y0 = PSF.render(x, y, size)
    ys = slice(max(y0, 0), min(y0 + size, SHAPE[0]))
    xs = slice(max(x0, 0), min(x0 + size, SHAPE[1]))
    image[ys, xs] += flux * stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]


def _sources(xy: list[tuple[float, float, float]]) -> SourceList:
    n = len(xy)
    return SourceList(
        x=np.array([p[0] for p in xy]), y=np.array([p[1] for p in xy]),
        flux=np.array([p[2] for p in xy]), fluxerr=np.ones(n), a=np.full(n, 0.45 * FWHM),
        b=np.full(n, 0.45 * FWHM), theta=np.zeros(n), flag=np.zeros(n, dtype=np.int16),
        peak=np.zeros(n), npix=np.full(n, 30),
    )


def _scene(seed: int, target_flux: float, star: tuple[float, float, float] | None
           ) -> np.ndarray:
    image = np.random.default_rng(seed).normal(0.0, NOISE, SHAPE)
    _render(image, *TARGET, target_flux)
    if star is not None:
        _render(image, *star)
    return image


def _forced(discs: SourceDiscs) -> ForcedFit:
    return ForcedFit(psf=PSF, rms=RMS, gain=1e6, mask=None, radius=RADIUS, annulus=ANNULUS,
                     discs=discs)


def _fit(image: np.ndarray, detected: list[tuple[float, float, float]]):  # type: ignore[no-untyped-def]
    sources = _sources(detected)
    discs = source_discs(sources.x, sources.y, sources.flux, sources.a,
                         np.full(len(sources), NOISE), fwhm=FWHM)
    return fit_close_neighbours(
        image, *TARGET, fit=_forced(discs), stellar=np.ones(len(sources), dtype=bool)
    )


def _target_flux(image: np.ndarray, extra_error: float = 0.0) -> tuple[float, float]:
    phot = forced_psf_photometry(
        image, np.array([TARGET[0]]), np.array([TARGET[1]]), psf=PSF, rms=RMS, gain=1e6,
        radius=RADIUS, annulus=ANNULUS,
    )
    return float(phot.flux[0]), float(np.hypot(phot.fluxerr[0], extra_error))


@pytest.mark.parametrize("distance_fwhm", [1.0, 1.5])
def test_a_detected_star_within_two_fwhm_is_fitted_with_the_target(distance_fwhm: float) -> None:
    """A target 1-1.5 FWHM from a star twice as bright: measured alone it takes the star's
    light (tens of sigma too bright); fitted together, the target's flux is right within
    the error, which includes what the joint fit adds."""
    truth = 3000.0
    star = (TARGET[0] + distance_fwhm * FWHM * 0.8, TARGET[1] + distance_fwhm * FWHM * 0.6,
            6000.0)
    pulls, alone = [], []
    for seed in range(8):
        image = _scene(seed, truth, star)
        f0, e0 = _target_flux(image)
        alone.append((f0 - truth) / e0)
        light = _fit(image, [(star[0] + 0.2, star[1] - 0.3, 5000.0)])
        assert light.count == 1
        assert abs(light.x[0] - star[0]) < 0.3 and abs(light.y[0] - star[1]) < 0.3
        assert light.flux[0] == pytest.approx(star[2], rel=0.1)
        f, e = _target_flux(light.image, light.error)
        pulls.append((f - truth) / e)
    assert min(alone) > 5.0
    assert np.max(np.abs(pulls)) < 3.0
    assert abs(float(np.mean(pulls))) < 3.0 / np.sqrt(len(pulls))


def test_an_undetected_companion_is_found_in_the_residual() -> None:
    """A star as bright as the target 1.2 FWHM away with no detection of its own (merged
    with the target's): the residual of the target's fit finds it."""
    truth = 2000.0
    star = (TARGET[0] - 1.2 * FWHM, TARGET[1] + 0.5, 2000.0)
    pulls = []
    for seed in range(6):
        image = _scene(seed, truth, star)
        light = _fit(image, [])
        assert light.count == 1
        assert np.hypot(light.x[0] - star[0], light.y[0] - star[1]) < 0.5
        f, e = _target_flux(light.image, light.error)
        pulls.append((f - truth) / e)
    assert np.max(np.abs(pulls)) < 3.0


@pytest.mark.parametrize("offset_fwhm", [0.0, 0.15, 0.3])
def test_a_bright_isolated_target_gets_no_companion(offset_fwhm: float) -> None:
    """A bright target alone (S/N ~ 250), measured at its position or 0.15-0.3 FWHM off it
    (an astrometric error leaves a dipole residual of S/N ~ 400-800, which starts a
    companion): nothing is fitted beside it and the image comes back untouched."""
    for seed in range(6):
        image = _scene(seed, 1.0e5, None)
        sources = _sources([])
        discs = source_discs(sources.x, sources.y, sources.flux, sources.a, np.zeros(0),
                             fwhm=FWHM)
        light = fit_close_neighbours(
            image, TARGET[0] + offset_fwhm * FWHM, TARGET[1], fit=_forced(discs),
            stellar=np.zeros(0, bool),
        )
        assert light.count == 0
        assert light.image is image


def test_a_faint_target_on_empty_sky_is_left_alone() -> None:
    for seed in range(6):
        image = _scene(seed, 100.0, None)
        assert _fit(image, []).count == 0


def test_an_undetected_star_three_fwhm_out_is_fitted_but_not_close() -> None:
    """A star as bright as the target 2.5 FWHM away and undetected: its light in the fit
    circle is fitted and subtracted; it is no blend (further than 2 FWHM)."""
    truth = 2000.0
    star = (TARGET[0] + 2.5 * FWHM, TARGET[1], 4000.0)
    for seed in range(4):
        light = _fit(_scene(seed, truth, star), [])
        assert light.count == 1
        assert np.hypot(light.x[0] - star[0], light.y[0] - star[1]) < 0.5
        assert np.hypot(light.x[0] - TARGET[0], light.y[0] - TARGET[1]) > 2.0 * FWHM
        f, e = _target_flux(light.image, light.error)
        assert abs(f - truth) < 3.0 * e


def test_no_companion_is_looked_for_beside_a_galaxy() -> None:
    """A detected galaxy (no point source) 1.5 FWHM away: its light is not a star's, and
    no PSF is fitted to it (the host a transient sits on stays, as without this fit)."""
    image = _scene(0, 2000.0, None)
    yy, xx = np.indices(SHAPE)
    gx, gy = TARGET[0] + 1.5 * FWHM, TARGET[1]
    image += 40.0 * np.exp(-0.5 * ((xx - gx) ** 2 + (yy - gy) ** 2) / (2.0 * FWHM) ** 2)
    sources = _sources([(gx, gy, 2.0e4)])
    discs = source_discs(sources.x, sources.y, sources.flux, np.full(1, 2.0 * FWHM),
                         np.full(1, NOISE), fwhm=FWHM)
    light = fit_close_neighbours(image, *TARGET, fit=_forced(discs),
                                 stellar=np.zeros(1, dtype=bool))
    assert light.count == 0
    assert light.image is image

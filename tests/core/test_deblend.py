"""Detected neighbours' light subtracted before the target is measured (``core.deblend``)."""

from __future__ import annotations

import numpy as np

from skyphot.core.annulus import source_discs
from skyphot.core.deblend import (
    WING_MODEL_UNCERTAINTY,
    ForcedFit,
    NeighbourLight,
    neighbours_reaching,
    point_sources,
    subtract_neighbours,
)
from skyphot.core.detection import SourceList
from skyphot.core.masking import MaskBits
from skyphot.core.photometry import forced_psf_photometry
from skyphot.core.psf import MoffatPSF

FWHM = 3.5
PSF = MoffatPSF.constant(FWHM, beta=3.0)
SHAPE = (200, 200)
TARGET = (100.2, 99.7)
RADIUS = 1.5 * FWHM
ANNULUS = (3.0 * FWHM, 6.0 * FWHM)
NOISE = 5.0
PEAK = float(PSF.render(100.0, 100.0, 5)[0].max())  # the unit-flux PSF's brightest pixel


def _render(image: np.ndarray, x: float, y: float, flux: float) -> None:
    size = 151
    stamp, x0, y0 = PSF.render(x, y, size)
    ys = slice(max(y0, 0), min(y0 + size, SHAPE[0]))
    xs = slice(max(x0, 0), min(x0 + size, SHAPE[1]))
    image[ys, xs] += flux * stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]


def _sources(
    xs: list[float], ys: list[float], flux: list[float], a: list[float],
    peak_fraction: list[float] | None = None,
) -> SourceList:
    """Detections; ``peak_fraction``: each peak pixel over its flux (default: a PSF's)."""
    n = len(xs)
    frac = np.full(n, PEAK) if peak_fraction is None else np.array(peak_fraction)
    return SourceList(
        x=np.array(xs), y=np.array(ys), flux=np.array(flux), fluxerr=np.ones(n),
        a=np.array(a), b=np.array(a), theta=np.zeros(n), flag=np.zeros(n, dtype=np.int16),
        peak=np.array(flux) * frac, npix=np.full(n, 30),
    )


def _scene(target_flux: float, seed: int) -> tuple[np.ndarray, SourceList]:
    """The target and a star 100 times brighter 3 FWHM away, with white noise."""
    image = np.random.default_rng(seed).normal(0.0, NOISE, SHAPE)
    star = (TARGET[0] + 10.0, TARGET[1] + 4.0, 2.0e5)
    _render(image, *star)
    if target_flux:
        _render(image, *TARGET, target_flux)
    return image, _sources([star[0]], [star[1]], [star[2]], [0.45 * FWHM])


def _flux_at_target(image: np.ndarray) -> tuple[float, float]:
    phot = forced_psf_photometry(
        image, np.array([TARGET[0]]), np.array([TARGET[1]]), psf=PSF,
        rms=np.full(SHAPE, NOISE), gain=1e6, radius=RADIUS, annulus=ANNULUS,
    )
    return float(phot.flux[0]), float(phot.fluxerr[0])


def _subtract(image: np.ndarray, sources: SourceList) -> NeighbourLight:
    discs = source_discs(sources.x, sources.y, sources.flux, sources.a,
                         np.full(len(sources), NOISE), fwhm=FWHM)
    fit = ForcedFit(psf=PSF, rms=np.full(SHAPE, NOISE), gain=1e6, mask=None, radius=RADIUS,
                    annulus=ANNULUS, discs=discs)
    return subtract_neighbours(
        image, *TARGET, fit=fit,
        stellar=point_sources(sources, np.zeros(SHAPE, dtype=np.uint8), psf_peak=PEAK),
    )


def test_a_neighbours_wing_is_removed_from_an_empty_position() -> None:
    image, sources = _scene(0.0, seed=1)
    before, err = _flux_at_target(image)
    assert before > 5 * err  # the wing alone made a "detection"
    kept = image.copy()
    light = _subtract(image, sources)
    np.testing.assert_array_equal(image, kept)  # the input is not changed
    assert light.count == 1
    after, err = _flux_at_target(light.image)
    assert abs(after) < 3 * err
    # what was removed is about what the wing had added (the local background took a
    # little of it before)
    assert abs(light.flux_at_target - (before - after)) < 0.1 * before
    assert light.error == WING_MODEL_UNCERTAINTY * abs(light.flux_at_target)


def test_the_target_keeps_its_own_flux() -> None:
    true_flux = 3000.0
    pulls = []
    for seed in range(8):
        image, sources = _scene(true_flux, seed=seed)
        light = _subtract(image, sources)
        flux, err = _flux_at_target(light.image)
        pulls.append((flux - true_flux) / err)
    assert abs(float(np.mean(pulls))) < 3.0 / np.sqrt(len(pulls))
    assert float(np.max(np.abs(pulls))) < 4.0


def test_no_neighbour_leaves_the_image_as_it_is() -> None:
    image = np.random.default_rng(2).normal(0.0, NOISE, SHAPE)
    far = _sources([20.0], [20.0], [1e4], [0.45 * FWHM])  # its disc is far from the target
    light = _subtract(image, far)
    assert light.count == 0
    assert light.image is image
    assert light.error == 0.0


def test_galaxies_are_not_subtracted_but_saturated_stars_are() -> None:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[50, 60] = MaskBits.SATURATED
    # a bright star (wide isophotal moments, a PSF's peak); a saturated star (clipped
    # peak); a galaxy (a tenth of a PSF's peak for its flux)
    sources = _sources([30.0, 60.0, 90.0], [40.0, 50.0, 60.0], [1e5, 1e6, 1e4],
                       [3.0 * FWHM, 3.0 * FWHM, 3.0 * FWHM],
                       peak_fraction=[0.9 * PEAK, 0.01 * PEAK, 0.1 * PEAK])
    assert point_sources(sources, mask, psf_peak=PEAK).tolist() == [True, True, False]


def test_the_target_and_close_blends_are_not_neighbours() -> None:
    """The target's own detection and a source within 2 FWHM (a host's nucleus) stay."""
    sources = _sources([TARGET[0] + 0.4, TARGET[0] + 5.0, TARGET[0] + 9.0],
                       [TARGET[1]] * 3, [5e3, 5e4, 5e4], [0.45 * FWHM] * 3)
    discs = source_discs(sources.x, sources.y, sources.flux, sources.a, np.full(3, NOISE),
                         fwhm=FWHM)
    near = neighbours_reaching(discs, *TARGET, radius=RADIUS, stellar=np.ones(3, dtype=bool),
                               min_distance=2.0 * FWHM)
    assert near.tolist() == [2]


def test_a_failed_subtraction_is_in_the_error() -> None:
    """The neighbour subtracted with a PSF model 15% too sharp leaves a ring the fixed 10%
    does not cover; the probes around the star see it and the error grows to cover it."""
    image, sources = _scene(0.0, seed=5)
    wrong = MoffatPSF.constant(0.85 * FWHM, beta=3.0)
    discs = source_discs(sources.x, sources.y, sources.flux, sources.a,
                         np.full(len(sources), NOISE), fwhm=FWHM)
    fit = ForcedFit(psf=wrong, rms=np.full(SHAPE, NOISE), gain=1e6, mask=None, radius=RADIUS,
                    annulus=ANNULUS, discs=discs)
    light = subtract_neighbours(
        image, *TARGET, fit=fit,
        stellar=point_sources(sources, np.zeros(SHAPE, dtype=np.uint8), psf_peak=PEAK),
    )
    assert light.error > 1.5 * WING_MODEL_UNCERTAINTY * abs(light.flux_at_target)
    phot = forced_psf_photometry(
        light.image, np.array([TARGET[0]]), np.array([TARGET[1]]), psf=wrong,
        rms=np.full(SHAPE, NOISE), gain=1e6, radius=RADIUS, annulus=ANNULUS,
    )
    assert abs(float(phot.flux[0])) < 3 * float(np.hypot(phot.fluxerr[0], light.error))

"""Other sources' light left out of local-background annuli (``core.annulus``)."""

from __future__ import annotations

import numpy as np
import pytest

from skyphot.core.annulus import SourceDiscs, covered_by_others, moffat_radius, source_discs
from skyphot.core.photometry import aperture_photometry, forced_psf_photometry
from skyphot.core.psf import MoffatPSF
from skyphot.errors import InputError

FWHM = 3.5
PSF = MoffatPSF.constant(FWHM, beta=3.0)
ANNULUS = (3.0 * FWHM, 8.0 * FWHM)
SHAPE = (160, 160)
STAR = (60.3, 70.6, 2.0e4)  # x, y, flux (ADU)
NEIGHBOUR = (60.3 + 19.0, 70.6 + 6.0, 3.0e4)  # 20 px away: its disc (17 px) misses the star


def _image(*stars: tuple[float, float, float]) -> np.ndarray:
    image = np.zeros(SHAPE)
    for x, y, flux in stars:
        stamp, x0, y0 = PSF.render(x, y, 121)
        ys, xs = slice(max(y0, 0), min(y0 + 121, SHAPE[0])), slice(max(x0, 0),
                                                                  min(x0 + 121, SHAPE[1]))
        image[ys, xs] += flux * stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return image


def _discs(noise: float) -> SourceDiscs:
    x, y, f = (np.array(v) for v in zip(STAR, NEIGHBOUR, strict=True))
    return source_discs(x, y, f, np.full(2, 0.6 * FWHM), np.full(2, noise), fwhm=FWHM, beta=3.0)


def test_moffat_radius_is_where_the_profile_reaches_the_level() -> None:
    flux, level = 1.0e5, 0.5
    r = float(moffat_radius(np.array([flux]), np.array([level]), fwhm=FWHM, beta=3.0)[0])
    alpha = FWHM / (2.0 * np.sqrt(2.0 ** (1.0 / 3.0) - 1.0))  # the definition, written out
    profile = flux * 2.0 / (np.pi * alpha**2) * (1.0 + r**2 / alpha**2) ** -3.0
    assert profile == pytest.approx(level, rel=1e-9)
    # a star fainter than the level at its peak reaches nowhere
    assert moffat_radius(np.array([1e-3]), np.array([1.0]), fwhm=FWHM, beta=3.0)[0] == 0.0


def _stars(
    rng: np.random.Generator, *, neighbours: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """64 stars of 2e4 ADU on noise of 5 ADU/px (the same noise for the same ``rng`` seed);
    with ``neighbours``, each has a 5e4 ADU neighbour 24 px away, in the star's annulus
    (10.5-28 px): its wings add < 0.1 ADU/px in the star's fit circle (~1 ADU of flux, a
    quarter of the test's standard error), so only the local background can be hurt by it.
    Returns the image, the stars' x, y and the neighbours' x, y."""
    n_side, spacing = 8, 80
    size = n_side * spacing + 140  # room for the neighbours' stamps at the edges
    image = rng.normal(0.0, 5.0, (size, size))
    g = 60.0 + spacing * np.arange(n_side)
    x = (g[None, :] + rng.uniform(-0.5, 0.5, (n_side, n_side))).ravel()
    y = (g[:, None] + rng.uniform(-0.5, 0.5, (n_side, n_side))).ravel()
    angle = rng.uniform(0, 2 * np.pi, x.size)
    nb_x, nb_y = x + 24.0 * np.cos(angle), y + 24.0 * np.sin(angle)
    placed = [(x, y, 2.0e4, 30)]
    if neighbours:
        placed.append((nb_x, nb_y, 5.0e4, 25))
    for xs, ys, f, half in placed:
        for xi, yi in zip(xs, ys, strict=True):
            stamp, x0, y0 = PSF.render(float(xi), float(yi), 2 * half + 1)
            image[y0:y0 + 2 * half + 1, x0:x0 + 2 * half + 1] += f * stamp
    return image, x, y, nb_x, nb_y


def test_a_neighbour_in_the_annulus_no_longer_lowers_the_flux() -> None:
    crowded, x, y, nb_x, nb_y = _stars(np.random.default_rng(5), neighbours=True)
    alone = _stars(np.random.default_rng(5), neighbours=False)[0]
    rms = np.full(crowded.shape, 5.0)
    discs = source_discs(np.concatenate([x, nb_x]), np.concatenate([y, nb_y]),
                         np.concatenate([np.full(x.size, 2e4), np.full(x.size, 5e4)]),
                         np.full(2 * x.size, 0.6 * FWHM), np.full(2 * x.size, 5.0),
                         fwhm=FWHM, beta=3.0)
    args = dict(psf=PSF, rms=rms, gain=1e6, radius=1.5 * FWHM, annulus=ANNULUS)
    reference = forced_psf_photometry(alone, x, y, **args).flux  # type: ignore[arg-type]
    plain = forced_psf_photometry(crowded, x, y, **args)  # type: ignore[arg-type]
    cleaned = forced_psf_photometry(crowded, x, y, exclude=discs, **args)  # type: ignore[arg-type]
    # the neighbours' wings lift the plain annulus level: the fluxes come out low
    d_plain, d_clean = plain.flux - reference, cleaned.flux - reference
    assert np.mean(d_plain) < -5.0 * np.std(d_plain) / np.sqrt(x.size)
    # left out, the fluxes agree with the lone stars' within the annuli's noise
    assert abs(np.mean(d_clean)) < 4.0 * np.std(d_clean) / np.sqrt(x.size)
    # aperture photometry leaves out the same pixels
    ap = aperture_photometry(crowded, x, y, radius=3.0 * FWHM, rms=rms, gain=1e6,
                             annulus=ANNULUS, exclude=discs)
    np.testing.assert_allclose(ap.local_background, cleaned.local_background)


def test_a_position_keeps_its_own_source() -> None:
    discs = _discs(1.0)
    ny, nx = SHAPE
    rows, cols = np.mgrid[0:ny, 0:nx]
    at_star = covered_by_others(discs, np.array([STAR[0]]), np.array([STAR[1]]),
                                cols.ravel()[None, :], rows.ravel()[None, :], reach=200.0)
    grid = at_star.reshape(SHAPE)
    # the star's own disc stays, the neighbour's is left out
    assert not grid[int(STAR[1]), int(STAR[0])]
    assert grid[round(NEIGHBOUR[1]), round(NEIGHBOUR[0])]
    # measured at the neighbour, the star is the other source
    at_nb = covered_by_others(discs, np.array([NEIGHBOUR[0]]), np.array([NEIGHBOUR[1]]),
                              cols.ravel()[None, :], rows.ravel()[None, :], reach=200.0)
    assert at_nb.reshape(SHAPE)[int(STAR[1]), int(STAR[0])]


def test_an_extended_source_is_its_positions_own() -> None:
    # A transient 5 px from a galaxy's centre (a = 6 px) keeps the galaxy's light in its
    # annulus, as the science-frame measurement did before (subtraction removes it).
    discs = source_discs(np.array([50.0]), np.array([50.0]), np.array([1e5]), np.array([6.0]),
                         np.array([1.0]), fwhm=FWHM)
    cols, rows = np.array([[50, 70]]), np.array([[50, 50]])
    assert not covered_by_others(discs, np.array([55.0]), np.array([50.0]), cols, rows,
                                 reach=30.0).any()


def test_a_crowded_annulus_is_kept_whole() -> None:
    # Discs covering nearly all of the annulus: the level comes from the whole annulus.
    image = _image(STAR) + 5.0
    rms = np.ones(SHAPE)
    big = SourceDiscs(x=np.array([STAR[0] + 20.0]), y=np.array([STAR[1]]),
                      radius=np.array([60.0]), own_radius=np.array([1.0]))
    phot = forced_psf_photometry(image, np.array([STAR[0]]), np.array([STAR[1]]), psf=PSF,
                                 rms=rms, gain=1e6, radius=1.5 * FWHM, annulus=ANNULUS,
                                 exclude=big)
    assert phot.local_background[0] == pytest.approx(5.0, abs=0.05)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(InputError, match="one value per source"):
        source_discs(np.zeros(2), np.zeros(2), np.zeros(3), np.zeros(2), np.zeros(2), fwhm=3.0)
    with pytest.raises(InputError, match="one value per source"):
        SourceDiscs(x=np.zeros(2), y=np.zeros(2), radius=np.zeros(1), own_radius=np.zeros(2))

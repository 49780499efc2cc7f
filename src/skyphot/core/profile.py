"""Whether a source's light has the PSF's shape: its fit's chi-square against the stars'.

Two stars closer than ~0.75 FWHM, a source on a compact host or a cosmic-ray hit are fitted
as one point source: the flux takes all of their light and no detection shows the second
component. The PSF fit's reduced chi-square does. The PSF model's own mismatch grows with a
star's S/N (``chi2 - 1 ~ q * snr**2``, ``q`` set by how well the model describes the frame's
stars), so the source is compared with the calibration stars' ``q`` scaled to its S/N, and
with the chi-square's own noise (``sqrt(2 / dof)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skyphot.core.stats import mad_sigma

# How far above the stars' chi-square (in its spread at the source's S/N) a source's fit
# must be before its profile is called different from the PSF: far out in the tail, since
# a flag on a star that is fine sends an astronomer looking for a companion that is not
# there.
PROFILE_NSIGMA = 5.0
# Stars measured well enough for their chi-square to show the PSF model's mismatch, and how
# many of them are needed to know its spread.
REFERENCE_MIN_SNR = 20.0
MIN_REFERENCE_STARS = 8


@dataclass(frozen=True)
class ProfileCheck:
    """The source's reduced chi-square beside what the field's stars give at its S/N.

    ``expected`` is ``1 + q * snr**2`` with ``q`` the median over the reference stars;
    ``spread`` the 1-sigma width there: the stars' robust spread of ``q`` scaled to the
    source's S/N, and the chi-square's noise, in quadrature. With fewer than
    ``MIN_REFERENCE_STARS`` reference stars the profile is not tested.
    """

    chi2: float
    snr: float
    expected: float
    spread: float
    n_reference: int

    @property
    def tested(self) -> bool:
        """Whether enough stars told the PSF model's own mismatch apart."""
        return self.n_reference >= MIN_REFERENCE_STARS and bool(
            np.isfinite(self.chi2) and np.isfinite(self.expected) and self.spread > 0
        )

    @property
    def excess_sigma(self) -> float:
        """How many spreads the source's chi-square lies above the stars' (NaN untested)."""
        if not self.tested:
            return float("nan")
        return (self.chi2 - self.expected) / self.spread

    @property
    def mismatched(self) -> bool:
        """Whether the source's light is significantly not the PSF's shape."""
        return self.tested and self.excess_sigma > PROFILE_NSIGMA


def check_profile(
    chi2: float,
    snr: float,
    *,
    dof: float,
    star_chi2: np.ndarray,
    star_snr: np.ndarray,
) -> ProfileCheck:
    """Compare a source's PSF-fit reduced chi-square ``chi2`` (at ``snr``, over ``dof``
    degrees of freedom) with those of stars fitted the same way (``star_chi2`` at
    ``star_snr``)."""
    star_chi2 = np.asarray(star_chi2, dtype=float)
    star_snr = np.asarray(star_snr, dtype=float)
    ref = np.isfinite(star_chi2) & np.isfinite(star_snr) & (star_snr >= REFERENCE_MIN_SNR)
    n_ref = int(np.count_nonzero(ref))
    if n_ref == 0 or not (np.isfinite(chi2) and np.isfinite(snr) and dof > 1):
        return ProfileCheck(chi2=float(chi2), snr=float(snr), expected=float("nan"),
                            spread=float("nan"), n_reference=n_ref)
    q = (star_chi2[ref] - 1.0) / star_snr[ref] ** 2
    snr2 = float(snr) ** 2
    expected = 1.0 + float(np.median(q)) * snr2
    spread = float(np.hypot(mad_sigma(q) * snr2, np.sqrt(2.0 / dof)))
    return ProfileCheck(chi2=float(chi2), snr=float(snr), expected=expected, spread=spread,
                        n_reference=n_ref)

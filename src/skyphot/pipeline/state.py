"""The state that flows through the pipeline.

Stages never mutate a state: each returns a new one with the products it made
(``dataclasses.replace``). A product a stage needs but that no earlier stage made is a
recipe bug, reported by ``need``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from astropy.wcs import WCS

from skyphot.catalogs.base import ReferenceCatalog
from skyphot.core.aperture_correction import ApertureCorrection
from skyphot.core.astrometry import AstrometricSolution
from skyphot.core.calibration import ZeroPointFit
from skyphot.core.detection import BackgroundModel, SourceList
from skyphot.core.photometry import AperturePhotometry, PSFPhotometry
from skyphot.core.profile import ProfileCheck
from skyphot.core.psf import PSFModel
from skyphot.io.frame import Frame, ObservationMeta
from skyphot.pipeline.config import MeasureConfig

T = TypeVar("T")


@dataclass(frozen=True)
class Bands:
    """The catalog band calibrated to and the colour used for the colour term."""

    filter: str
    band: str
    color_bands: tuple[str, str] | None


@dataclass(frozen=True)
class CalibrationStars:
    """The stars the zero point was fitted on (arrays of equal length)."""

    x: np.ndarray
    y: np.ndarray
    cat_mag: np.ndarray
    cat_err: np.ndarray
    inst_mag: np.ndarray
    inst_err: np.ndarray
    color: np.ndarray | None
    n_candidates: int  # catalog stars on the frame before the cuts
    # their PSF fits' reduced chi-square and S/N (the target's profile is tested against
    # them); None from an engine that does not fit the PSF to them
    fit_chi2: np.ndarray | None = None
    snr: np.ndarray | None = None


@dataclass(frozen=True)
class TargetMeasurement:
    """Forced photometry at the target, before calibration."""

    x: float
    y: float
    psf: PSFPhotometry
    aperture: AperturePhotometry
    aperture_radius: float
    encircled_energy: float
    fwhm: float
    # neighbours fitted and subtracted before the target was measured, the PSF-fit flux
    # (ADU) their light had at the target, and the error (ADU) the subtraction added to the
    # target's flux; of them, the stars within 2 FWHM fitted together with the target
    # (``core.blend``; detected or found in the residual)
    neighbours_subtracted: int = 0
    neighbour_flux: float = 0.0
    neighbour_error: float = 0.0
    close_neighbours: int = 0
    # the target's PSF-fit chi-square against the calibration stars' (``core.profile``);
    # None when it was not tested (no chi-squares for the stars, or a difference image)
    profile: ProfileCheck | None = None
    # cosmic-ray pixels found and masked in the target's fit circle and aperture
    cosmic_ray_pixels: int = 0


@dataclass(frozen=True)
class TemplateFrame:
    """The template, calibrated by the same stages as the science frame.

    ``state`` is the template's own final state (its data, mask, background, refined WCS,
    PSF and zero point); ``origin`` is 'file' or 'survey'; ``label`` says where it came from;
    ``survey`` (None for a file), ``band`` and ``band_substituted`` what 'auto' chose.
    """

    state: FrameState
    origin: str
    label: str
    band_note: str | None = None
    survey: str | None = None
    band: str | None = None
    band_substituted: bool = False


@dataclass(frozen=True)
class SubtractionProducts:
    """What the subtraction made, beside the difference-image measurement in ``target``.

    Arrays are the cutout around the target (science grid), whose [0, 0] pixel is frame pixel
    ``origin``; ``science_target`` is the measurement on the science frame alone.
    """

    science_target: TargetMeasurement
    template: TemplateFrame
    origin: tuple[int, int]
    science: np.ndarray
    template_aligned: np.ndarray
    difference: np.ndarray
    variance: np.ndarray
    score: np.ndarray
    bad: np.ndarray  # difference pixels spoilt by a masked pixel in either image
    flux_ratio: float
    flux_ratio_err: float
    flux_ratio_source: str
    template_zero_point: float
    template_zero_point_err: float
    template_fwhm_px: float
    template_limit_flux: float  # 5-sigma PSF-fit flux limit of the template at the target, ADU_t
    noise_measured: float  # robust std of difference / predicted sigma near the target
    noise_pixels: int
    timings: dict[str, float]


@dataclass(frozen=True)
class FrameState:
    """Everything known about the frame so far."""

    image_path: str
    config: MeasureConfig
    frame: Frame | None = None
    meta: ObservationMeta | None = None
    header_wcs: WCS | None = None
    mask: np.ndarray | None = None  # uint8 MaskBits
    background: BackgroundModel | None = None
    data_sub: np.ndarray | None = None
    sources: SourceList | None = None
    fwhm: float | None = None
    bands: Bands | None = None
    catalog: ReferenceCatalog | None = None
    astrometry: AstrometricSolution | None = None
    psf: PSFModel | None = None
    calib_stars: CalibrationStars | None = None
    zero_point: ZeroPointFit | None = None
    aperture_correction: ApertureCorrection | None = None
    target: TargetMeasurement | None = None
    template: TemplateFrame | None = None
    subtraction: SubtractionProducts | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def need(value: T | None, what: str) -> T:
    """Return a product an earlier stage must have made, or fail loudly (a recipe bug)."""
    if value is None:
        raise RuntimeError(f"pipeline recipe error: {what} is needed but no earlier stage made it")
    return value


def frame_pixels(frame: Frame) -> np.ndarray:
    """The frame's pixels as read, or fail loudly when an earlier stage released them (a
    recipe bug: only the background-subtracted image is kept after the background stage)."""
    if frame.released:
        raise RuntimeError(
            "pipeline recipe error: the frame's pixels are needed but the background stage "
            "released them (give it keep_pixels=True)"
        )
    return frame.data

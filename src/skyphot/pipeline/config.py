"""Configuration of one measurement.

Every field is described; the whole model is stored with each result so a measurement can
be reproduced exactly. Models are frozen: settings never change while a run is under way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from skyphot.io.overrides import HeaderOverrides

__all__ = [
    "AstrometryConfig",
    "CalibrationConfig",
    "CatalogConfig",
    "DetectionConfig",
    "HeaderOverrides",
    "MaskingConfig",
    "MeasureConfig",
    "PhotometryConfig",
    "Target",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    """Where the source is."""

    ra: float = Field(description="Target right ascension, degrees (ICRS).", ge=0.0, lt=360.0)
    dec: float = Field(description="Target declination, degrees (ICRS).", ge=-90.0, le=90.0)


class CatalogConfig(_Model):
    """Which reference catalog to calibrate against and how to read it."""

    path: str | None = Field(
        None, description="Local catalog file (ECSV, CSV, FITS, Parquet). None: online/auto."
    )
    name: str | None = Field(
        None, description="Catalog name for online/automatic selection (e.g. 'ps1', 'gaia')."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Explicit column mapping, normalised name -> file column "
        "(e.g. {'ra': 'RA_deg', 'r': 'rPSF', 'r_err': 'e_rPSF'}).",
    )
    magsys: Literal["AB", "Vega"] = Field("AB", description="Magnitude system of the catalog.")
    radius_deg: float | None = Field(
        None,
        description="Cone radius to use; None: the frame's half-diagonal plus a margin.",
        gt=0,
    )
    mag_min: float | None = Field(None, description="Ignore reference stars brighter than this.")
    mag_max: float | None = Field(None, description="Ignore reference stars fainter than this.")
    use_cache: bool = Field(
        True, description="Keep online catalog cones on disk and answer repeat visits from it."
    )
    cache_dir: str | None = Field(
        None,
        description="Catalog cache directory; None: $SKYPHOT_CACHE_DIR or "
        "~/.cache/skyphot/catalogs.",
    )
    server: str | None = Field(
        None, description="VizieR server (mirror) to query; None: astroquery's default."
    )
    timeout_s: float = Field(30.0, description="Timeout of one catalog request, seconds.", gt=0)
    retries: int = Field(
        3, description="Attempts per catalog request (with exponential back-off).", ge=1
    )


class MaskingConfig(_Model):
    """How bad pixels are found."""

    saturation_fraction: float = Field(
        0.95,
        description="Pixels above this fraction of the saturation level are masked.",
        gt=0,
        le=1.0,
    )
    saturation_grow_px: int = Field(
        2, description="Grow saturated regions by this many pixels (bleed, wings).", ge=0
    )
    edge_px: int = Field(3, description="Mask this many pixels along every edge.", ge=0)
    bad_columns: bool = Field(True, description="Find and mask bad columns/rows.")
    cosmic_rays: bool = Field(
        False, description="Find and mask cosmic-ray hits over the whole frame (off: the "
        "calibration's robust fit shrugs off the few that hit its stars)."
    )
    target_cosmic_rays: bool = Field(
        True, description="Find and mask cosmic-ray hits in the target's PSF-fit circle and "
        "aperture before it is measured (a 1,000 e- hit 2 px from a 20th-magnitude target "
        "made it +5 to +8 sigma too bright); frames with a FWHM under 2 px are left alone, "
        "their star cores being as sharp as hits."
    )


class DetectionConfig(_Model):
    """Background and source detection."""

    method: Literal["sep", "sextractor"] = Field("sep", description="Detection engine.")
    background_box_px: int = Field(64, description="Background mesh size, pixels.", ge=8)
    background_filter: int = Field(3, description="Median filter over background meshes.", ge=1)
    threshold_sigma: float = Field(
        5.0, description="Detection threshold per pixel, in background sigmas.", gt=0
    )
    min_area_px: int = Field(5, description="Minimum connected pixels for a detection.", ge=1)
    max_sources: int = Field(
        3000, description="Keep at most this many (brightest) detections for matching.", ge=10
    )
    max_pixstack: int = Field(
        20_000_000,
        description="Most pixels the extractor (SEP) may hold in working memory at once; a "
        "frame too crowded for it is detected at a raised threshold, which is flagged "
        "(DETECTION_THRESHOLD_RAISED) and noted in the result.",
        ge=1000,
    )


class AstrometryConfig(_Model):
    """How the header WCS is checked and improved."""

    method: Literal["refine", "header", "scamp", "astrometry.net"] = Field(
        "refine",
        description="'refine': match to the catalog and fit TAN+SIP (default); "
        "'header': trust the header WCS as is.",
    )
    sip_order: int = Field(
        3,
        description="Highest order of the SIP distortion polynomial (0 = pure TAN); lowered "
        "automatically when too few stars support it.",
        ge=0,
        le=5,
    )
    max_offset_arcsec: float = Field(
        60.0, description="Largest header WCS offset searched for, arcsec.", gt=0
    )
    match_radius_arcsec: float = Field(
        2.0, description="Final match radius between detections and catalog, arcsec.", gt=0
    )
    min_matches: int = Field(6, description="Fewest matched stars for a solution.", ge=3)
    max_rms_arcsec: float = Field(
        1.5, description="Reject a solution whose residual rms exceeds this.", gt=0
    )
    blind: Literal["auto", "never", "always"] = Field(
        "auto",
        description="Blind solving with astrometry.net: 'auto' when the header has no usable "
        "WCS or refinement fails, 'never', or 'always'.",
    )
    index_dir: str | None = Field(
        None,
        description="Directory of astrometry.net index files to solve with. None: index files "
        "are built on the fly from the reference catalog of the field.",
    )
    pixel_scale_arcsec: float | None = Field(
        None,
        description="Pixel scale hint for blind solving, arcsec/px (None: from the header).",
        gt=0,
    )
    solve_timeout_s: float = Field(
        60.0, description="CPU seconds astrometry.net may spend on a blind solve.", gt=0
    )


class CalibrationConfig(_Model):
    """Photometric zero point fit."""

    band: str | None = Field(
        None, description="Catalog band to calibrate to; None: derived from the frame filter."
    )
    color_bands: tuple[str, str] | None = Field(
        None, description="Two catalog bands (c1, c2) whose c1-c2 colour enters the colour term."
    )
    fit_color_term: bool = Field(True, description="Fit a colour term when colour bands exist.")
    spatial_order: int = Field(
        2,
        description="Order of the zero-point polynomial in x, y (0 = constant); lowered "
        "automatically when too few stars support it.",
        ge=0,
        le=3,
    )
    clip_sigma: float = Field(3.0, description="Outlier rejection threshold, sigmas.", gt=1)
    min_stars: int = Field(5, description="Fewest calibration stars accepted.", ge=2)
    max_mag_err: float = Field(
        0.1, description="Ignore calibration stars whose instrumental error exceeds this.", gt=0
    )
    response_order: Literal[0, 1, 2, "auto"] = Field(
        0,
        description="Order of a polynomial in the instrumental magnitude added to the "
        "zero point, for a non-linear response (photographic plates, detectors near "
        "saturation): 0 = linear response; 'auto' keeps order 2 or 1 only when its top term "
        "is significant (F-test, p < 0.001). The target's zero point is then taken on the "
        "curve at its own instrumental magnitude.",
    )

    @field_validator("response_order", mode="before")
    @classmethod
    def _response_order_digits(cls, value: object) -> object:
        # YAML, forms and the CLI may give the order as text ("2")
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value


class PhotometryConfig(_Model):
    """Target and calibration-star measurement."""

    psf_radius_fwhm: float = Field(
        1.5, description="Radius of the PSF-fit region, in FWHM.", gt=0.3
    )
    aperture_radius_fwhm: float = Field(
        1.0, description="Radius of the reported aperture, in FWHM.", gt=0.1
    )
    annulus_fwhm: tuple[float, float] = Field(
        (3.0, 8.0),
        description="Inner and outer radius of the local-background annulus, FWHM. Its noise "
        "adds to every PSF-fit flux: 3-8 FWHM keeps the 5-sigma limit within ~0.02 mag of the "
        "ideal (3-5 FWHM cost ~0.06 mag). The inner radius is also the aperture radius of the "
        "aperture correction.",
    )

    @field_validator("annulus_fwhm")
    @classmethod
    def _annulus_ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] < value[1]:
            raise ValueError("annulus must satisfy 0 < inner < outer")
        return value


class SubtractionConfig(_Model):
    """Template (reference image) subtraction before the target is measured."""

    template: str = Field(
        "none",
        description="'none': measure on the science frame alone; 'auto': a survey template "
        "from the template cache; otherwise the path of a template FITS file (.fits, .fz, .gz).",
    )
    template_hdu: int | str | None = Field(
        None, description="HDU index or EXTNAME of the template; None: the first image HDU."
    )
    survey: str | None = Field(
        None,
        description="Survey for 'auto' templates ('ps1', 'legacy', 'des', 'skymapper'); None: "
        "the deepest survey serving the band at the target, falling back to the next.",
    )
    service_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Image cutout service base URL per survey for 'auto' (keys 'ps1', "
        "'legacy', 'des', 'skymapper'); a survey not named uses its own public service.",
    )
    timeout_s: float = Field(60.0, description="Timeout of one cutout request, seconds.", gt=0)
    retries: int = Field(3, description="Attempts per cutout request (with back-off).", ge=1)
    method: Literal["zogy", "sfft", "hotpants"] = Field(
        "zogy",
        description="Subtraction algorithm: ZOGY (Zackay, Ofek & Gal-Yam 2016); for "
        "comparison SFFT (Hu et al. 2022; needs the sfft extra and a template sharper than "
        "the frame) or HOTPANTS (needs the hotpants program on PATH).",
    )
    align: Literal["internal", "swarp"] = Field(
        "internal",
        description="How the template is resampled onto the frame's refined WCS: 'internal' "
        "(flux-conserving spline resampling) or 'swarp' (SWarp's Lanczos-3 resampling; needs "
        "the swarp program).",
    )
    tool_timeout_s: float = Field(
        300.0,
        description="Time limit of one run of an external subtraction or alignment program "
        "(hotpants, swarp), seconds.",
        gt=0,
    )
    region: Literal["target", "full"] = Field(
        "target",
        description="'target': subtract a cutout_px square around the target; 'full': the "
        "whole frame, in tiles (for difference-image searches and diagnostics).",
    )
    tile_px: int = Field(
        1024,
        description="Side of the sub-images ZOGY works on, px; each uses the PSFs at its "
        "centre, so a PSF varying across the frame is followed.",
        ge=64,
        le=8192,
    )
    cutout_px: int = Field(
        512,
        description="Side of the square region around the target that is aligned and "
        "subtracted, px (clipped to the frame); the PSFs are taken at the target.",
        ge=64,
        le=8192,
    )
    max_template_noise_ratio: float = Field(
        1.0,
        description="Refuse a template whose noise in a PSF-fit flux at the target exceeds "
        "this multiple of the science frame's (template noise would dominate the difference).",
        gt=0,
    )
    cache_dir: str | None = Field(
        None,
        description="Template cache directory for 'auto'; None: $SKYPHOT_TEMPLATE_DIR or "
        "~/.cache/skyphot/templates.",
    )


class MeasureConfig(_Model):
    """Everything that determines one measurement of one target on one frame."""

    target: Target = Field(description="Target position.")
    engine: Literal["skyphot", "stdpipe"] = Field(
        "skyphot",
        description="Measurement engine: skyphot's own stages, or STDPipe's detection, "
        "astrometric refinement and calibration (needs `pip install skyphot[stdpipe]`).",
    )
    hdu: int | str | None = Field(
        None, description="HDU index or EXTNAME; None: the first HDU with image data."
    )
    header: HeaderOverrides = Field(
        default_factory=HeaderOverrides, description="Overrides for header values."
    )
    catalog: CatalogConfig = Field(default_factory=CatalogConfig, description="Reference catalog.")
    target_color: float | None = Field(
        None,
        description="Target colour in the colour-term bands (c1 - c2). None: the median "
        "colour of the calibration stars is assumed, and the result is flagged.",
    )
    nsigma: float = Field(
        5.0, description="S/N for a detection, and the sigma level of limits.", ge=1.0, le=20.0
    )
    masking: MaskingConfig = Field(default_factory=MaskingConfig, description="Bad pixels.")
    detection: DetectionConfig = Field(
        default_factory=DetectionConfig, description="Background and detection."
    )
    astrometry: AstrometryConfig = Field(
        default_factory=AstrometryConfig, description="Astrometry."
    )
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="Zero-point fit."
    )
    photometry: PhotometryConfig = Field(
        default_factory=PhotometryConfig, description="Photometry."
    )
    subtraction: SubtractionConfig = Field(
        default_factory=SubtractionConfig, description="Template subtraction (default: none)."
    )

    @model_validator(mode="after")
    def _response_supported(self) -> MeasureConfig:
        if self.calibration.response_order == 0:
            return self
        if self.subtraction.template != "none":
            raise ValueError(
                "calibration.response_order must be 0 with template subtraction: the "
                "difference flux is not on the frame's response curve, so a non-linear "
                "zero point cannot be applied to it"
            )
        if self.engine == "stdpipe":
            raise ValueError(
                "calibration.response_order must be 0 with engine 'stdpipe': STDPipe's "
                "calibration fits no term in the instrumental magnitude"
            )
        return self

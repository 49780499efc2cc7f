"""Template subtraction: calibrate the template with the same stages, align it onto the
science grid, subtract with ZOGY and measure the target on the difference image.

The science-frame measurement made by ``MeasureTarget`` stays in ``state.subtraction``;
``state.target`` becomes the difference-image measurement, in science ADU, so the report
calibrates it with the science zero point like any other measurement.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from astropy.wcs import WCS
from scipy.ndimage import maximum_filter
from scipy.spatial import cKDTree

from skyphot.catalogs.filters import resolve_filter
from skyphot.core.difference_ratio import (
    MIN_RATIO_STARS,
    DifferencePSFs,
    flux_ratio_from_difference,
)
from skyphot.core.flux_ratio import RatioEstimate, mean_flux_ratio
from skyphot.core.masking import grow
from skyphot.core.noise_correlation import resampled_noise_acf
from skyphot.core.photometry import aperture_photometry, encircled_energy, forced_psf_photometry
from skyphot.core.psf import PSFModel, effective_area
from skyphot.core.resample import (
    PixelMap,
    nearest_pixels,
    pixel_map,
    pixel_map_jacobian,
    psf_on_grid,
    resample,
    sample_nearest,
)
from skyphot.core.wcs_utils import pixel_scale_arcsec
from skyphot.core.zogy import StampPSF, ZogyResult, zogy_tiled
from skyphot.errors import (
    PhotometryError,
    SkyphotError,
    TargetOutsideFrameError,
    TemplateError,
    TooFewStarsError,
    UnknownFilterError,
)
from skyphot.pipeline.config import HeaderOverrides, MeasureConfig, SubtractionConfig
from skyphot.pipeline.runner import Stage
from skyphot.pipeline.stages.calibrate import Calibrate
from skyphot.pipeline.stages.frame import NormaliseHeader, ReadFrame
from skyphot.pipeline.stages.image import BuildMask, DetectSources, FitPSF, SubtractBackground
from skyphot.pipeline.stages.reference import RefineAstrometry
from skyphot.pipeline.state import (
    FrameState,
    SubtractionProducts,
    TargetMeasurement,
    TemplateFrame,
    need,
)

# The difference-image noise is checked in an annulus around the target (px).
_NOISE_INNER_FWHM = 3.0
_NOISE_OUTER_PX = 60.0
# The flux ratio comes from up to this many calibration stars nearest the target, matched
# within this radius.
_RATIO_STARS = 40
_MATCH_ARCSEC = 1.0
# Spline order of the template resampling (and of its PSF, resampled the same way): quintic
# splines depend less on a source's sub-pixel phase than cubic ones.
SPLINE_ORDER = 5
# Side of the region (px) whose stars refine the flux ratio in a first difference image.
_RATIO_WINDOW_PX = 1024
# Survey cutouts reach this far beyond the region subtracted (pointing and WCS slack).
_SIZE_MARGIN_ARCSEC = 60.0
# Template pixels this close to the target must be on the template.
_COVER_FWHM = 3.0


@dataclass(frozen=True)
class ResolvedTemplate:
    """Where the configured template is and what it is (survey and band for 'auto')."""

    path: str
    origin: str
    label: str
    note: str | None = None
    survey: str | None = None
    band: str | None = None
    substituted: bool = False


def resolve_template(
    config: MeasureConfig, *, band: str, size_arcsec: float
) -> ResolvedTemplate:
    """The configured template file, fetching or finding a survey one for 'auto'; raises
    ``TemplateError`` (or ``TemplateServiceError`` when the cutout services fail)."""
    choice = config.subtraction.template
    if choice == "auto":
        from skyphot.templates.auto import auto_template

        sub = config.subtraction
        got = auto_template(
            ra=config.target.ra, dec=config.target.dec, band=band, size_arcsec=size_arcsec,
            survey_name=sub.survey, cache_dir=sub.cache_dir, urls=sub.service_urls,
            timeout=sub.timeout_s, retries=sub.retries,
        )
        return ResolvedTemplate(str(got.path), "survey", got.label, got.note, got.survey,
                                got.band, got.substituted)
    file = Path(choice)
    if not file.is_file():
        raise TemplateError(f"template file {choice} does not exist or is not a file")
    return ResolvedTemplate(str(file), "file", file.name)


def _template_config(config: MeasureConfig) -> MeasureConfig:
    """The science configuration for the template: its own HDU, and header values from the
    template's own header (the science frame's overrides do not apply to it)."""
    return config.model_copy(
        update={"hdu": config.subtraction.template_hdu, "header": HeaderOverrides()}
    )


@dataclass(frozen=True)
class PrepareTemplate:
    """Read the template and calibrate it with the science frame's own stages and catalog."""

    name: str = "template"

    def run(self, state: FrameState) -> FrameState:
        bands = need(state.bands, "the bands")
        catalog = need(state.catalog, "the reference catalog")
        frame = need(state.frame, "the frame")
        scale = pixel_scale_arcsec(need(state.astrometry, "the astrometric solution").wcs)
        sub = state.config.subtraction
        side = math.hypot(*frame.shape) if sub.region == "full" else sub.cutout_px * 1.42
        chosen = resolve_template(
            state.config, band=bands.band, size_arcsec=side * scale + _SIZE_MARGIN_ARCSEC
        )
        label = chosen.label
        tstate = FrameState(image_path=chosen.path, config=_template_config(state.config))
        before: list[Stage] = [
            ReadFrame(), NormaliseHeader(), BuildMask(), SubtractBackground(), DetectSources()
        ]
        after: list[Stage] = [RefineAstrometry(), FitPSF(), Calibrate()]
        tstate = _run(before, tstate, label)
        if chosen.origin == "file":
            note = _band_note(need(tstate.meta, "the template header").filter, bands.band, label)
        else:  # a survey image was chosen for this band (or its nearest, said in the note)
            note = chosen.note
        tstate = replace(tstate, catalog=catalog, bands=bands)
        tstate = _run(after, tstate, label)
        template = TemplateFrame(
            state=tstate, origin=chosen.origin, label=label, band_note=note,
            survey=chosen.survey, band=chosen.band or bands.band,
            band_substituted=chosen.substituted,
        )
        return replace(state, template=template)


def _run(stages: list[Stage], state: FrameState, label: str) -> FrameState:
    for stage in stages:
        try:
            state = stage.run(state)
        except TemplateError:
            raise
        except TargetOutsideFrameError as err:
            raise TemplateError(
                f"template {label} does not cover the target ({err}); use a template of this field"
            ) from err
        except SkyphotError as err:
            raise TemplateError(f"template {label} unusable ({stage.name}): {err}") from err
    return state


def _band_note(template_filter: str | None, band: str, label: str) -> str | None:
    """None when the template is in the frame's band; refuse another band."""
    if template_filter is None:
        return f"the template {label} names no filter; assumed to be {band}"
    try:
        tband = resolve_filter(template_filter).band
    except UnknownFilterError as err:
        raise TemplateError(
            f"template {label} has filter {template_filter!r}, which maps to no band: {err}"
        ) from err
    if tband != band:
        raise TemplateError(
            f"template {label} is in band {tband} (filter {template_filter!r}) but the frame is "
            f"calibrated in {band}; give a template in the same band"
        )
    return None


@dataclass(frozen=True)
class SubtractTemplate:
    """Align the template, subtract it with ZOGY and measure the target on the difference."""

    name: str = "subtract"

    def run(self, state: FrameState) -> FrameState:
        template = need(state.template, "the calibrated template")
        science_target = need(state.target, "the science-frame measurement")
        t_state = template.state
        frame = need(state.frame, "the frame")
        solution = need(state.astrometry, "the astrometric solution")
        t_data = need(t_state.data_sub, "the template image")
        t_wcs = need(t_state.astrometry, "the template astrometry").wcs
        t_psf = need(t_state.psf, "the template PSF")
        cfg = state.config
        timings: dict[str, float] = {}
        t0 = time.perf_counter()

        x, y = science_target.x, science_target.y
        region = _Region.around(x, y, frame.shape, cfg.subtraction)
        pmap = pixel_map(
            t_wcs, solution.wcs, (region.awy, region.awx), origin=(region.ax0, region.ay0)
        )
        at = (round(x) - region.ax0, round(y) - region.ay0)
        t_xy = (float(pmap.x[at[1], at[0]]), float(pmap.y[at[1], at[0]]))
        t_fwhm_native = t_psf.fwhm_at(*t_xy)
        _check_coverage(t_data.shape, *t_xy, _COVER_FWHM * t_fwhm_native, template.label)
        aligned = _align(t_state, solution.wcs, region, pmap, cfg.subtraction)
        timings["align"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        m = _match(state, aligned, region, t_xy, t_fwhm_native)
        timings["match"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        z = _subtract(m, need(state.psf, "the PSF"), t_psf, region, (x, y), cfg, template.label)
        timings["subtract"] = time.perf_counter() - t2

        t3 = time.perf_counter()
        measurement, z, bad = _measure_difference(
            z, m, science_target, region, need(state.meta, "the header").gain, cfg
        )
        noise, n_pix = _noise_check(
            z.difference, z.variance, bad, x - region.x0, y - region.y0, measurement.fwhm
        )
        timings["photometry"] = time.perf_counter() - t3
        timings["total"] = time.perf_counter() - t0
        t_bg = need(t_state.background, "the template background")
        t_limit = 5.0 * float(np.median(t_bg.rms)) * math.sqrt(effective_area(t_psf, *t_xy))

        products = SubtractionProducts(
            science_target=science_target,
            template=template,
            origin=(region.x0, region.y0),
            science=m.sci,
            template_aligned=m.ref / m.flux_ratio,
            difference=z.difference,
            variance=z.variance,
            score=z.score,
            bad=bad,
            flux_ratio=m.flux_ratio,
            flux_ratio_err=m.flux_ratio * m.ln_ratio_err,
            flux_ratio_source=m.ratio_source,
            template_zero_point=m.zp_t,
            template_zero_point_err=m.zp_t_err,
            template_fwhm_px=t_fwhm_native,
            template_limit_flux=t_limit,
            noise_measured=noise,
            noise_pixels=n_pix,
            timings=timings,
        )
        return replace(state, target=measurement, subtraction=products)


@dataclass(frozen=True)
class _Region:
    """The science pixels subtracted (first pixel ``x0``, ``y0``; ``wx`` by ``wy``) and the
    larger region aligned around them (``ax0``, ``ay0``; ``awx`` by ``awy``), whose stars
    refine the flux ratio (a template that covers less of it leaves the uncovered stars
    out)."""

    x0: int
    y0: int
    wx: int
    wy: int
    ax0: int
    ay0: int
    awx: int
    awy: int

    @classmethod
    def around(
        cls, x: float, y: float, shape: tuple[int, ...], cfg: SubtractionConfig
    ) -> _Region:
        """The whole frame (``region`` 'full') or a ``cutout_px`` square about (x, y),
        within a ``_RATIO_WINDOW_PX`` aligned one, both inside the frame."""
        ny, nx = shape
        if cfg.region == "full":
            return cls(0, 0, nx, ny, 0, 0, nx, ny)
        w = min(cfg.cutout_px, ny, nx)
        aw = min(max(cfg.cutout_px, _RATIO_WINDOW_PX), ny, nx)

        def start(c: float, width: int, n: int) -> int:
            return int(np.clip(round(c) - width // 2, 0, n - width))

        return cls(
            start(x, w, nx), start(y, w, ny), w, w, start(x, aw, nx), start(y, aw, ny), aw, aw
        )

    @property
    def aligned(self) -> tuple[slice, slice]:
        """The aligned region in the frame."""
        return (slice(self.ay0, self.ay0 + self.awy), slice(self.ax0, self.ax0 + self.awx))

    @property
    def inner(self) -> tuple[slice, slice]:
        """The subtracted region within the aligned one."""
        dy, dx = self.y0 - self.ay0, self.x0 - self.ax0
        return (slice(dy, dy + self.wy), slice(dx, dx + self.wx))


@dataclass(frozen=True)
class _Aligned:
    """The template on the science grid of the aligned region: its counts (0 where bad),
    bad pixels, white-equivalent background variance, and the map into the template."""

    counts: np.ndarray
    bad: np.ndarray
    bg_var: np.ndarray
    pmap: PixelMap


def _align(
    t_state: FrameState, wcs: WCS, region: _Region, pmap: PixelMap, cfg: SubtractionConfig
) -> _Aligned:
    """Counts, mask and background variance of the template onto the science grid of
    ``region``'s aligned part (``wcs``: the science frame's)."""
    t_data = need(t_state.data_sub, "the template image")
    t_bad = need(t_state.mask, "the template mask") != 0
    if cfg.align == "swarp":
        from skyphot.adapters.swarp import resample as swarp_resample

        t_wcs = need(t_state.astrometry, "the template astrometry").wcs
        ref, _ = swarp_resample(
            t_data, t_wcs, target_wcs=wcs.slice(region.aligned), shape=pmap.x.shape, mask=t_bad,
            timeout=cfg.tool_timeout_s,
        )
        ref = ref.astype(np.float64)
    else:
        ref = resample(np.where(t_bad, 0.0, t_data), pmap, order=SPLINE_ORDER)
    near = nearest_pixels(pmap, t_data.shape)
    ref_bad = ~np.isfinite(ref) | sample_nearest(t_bad, pmap, fill=True, nearest=near)
    # White-equivalent variance per science pixel: the source-pixel variance times the
    # number of source pixels per science pixel (noise power per unit sky area is kept).
    # The background rms map is smooth, so its nearest sample is enough.
    # (sampled in its own precision: converting the whole template first costs more)
    t_rms = need(t_state.background, "the template background").rms
    bg_var = sample_nearest(
        t_rms, pmap, fill=float(np.median(t_rms[::8, ::8].astype(np.float64))), nearest=near
    ).astype(np.float64, copy=False) ** 2
    bg_var *= pmap.area_ratio
    return _Aligned(counts=np.where(ref_bad, 0.0, ref), bad=ref_bad, bg_var=bg_var, pmap=pmap)


@dataclass(frozen=True)
class _Matched:
    """Both images over the subtracted region, ready for the difference: science counts
    and template counts (0 where bad) with their variances and bad pixels, the map into the
    template, both PSFs at the target on the science grid (``size`` square) with their
    FWHMs (px), the template's noise correlation, and the flux ratio with its source."""

    sci: np.ndarray
    ref: np.ndarray
    var_n: np.ndarray
    var_r: np.ndarray
    sci_bad: np.ndarray
    ref_bad: np.ndarray
    pmap: PixelMap
    psf_n: np.ndarray
    psf_r: np.ndarray
    size: int
    fwhm_n: float
    fwhm_r: float
    ref_acf: np.ndarray | None
    flux_ratio: float
    ln_ratio_err: float
    ratio_source: str
    zp_t: float
    zp_t_err: float


def _match(
    state: FrameState, aligned: _Aligned, region: _Region, t_xy: tuple[float, float],
    t_fwhm: float,
) -> _Matched:
    """The flux ratio (stars on both frames, then what they leave in a first difference),
    both PSFs at the target and both images' noise, cut to the subtracted region; the
    target is at template pixel ``t_xy``, where the template's FWHM is ``t_fwhm`` px."""
    template = need(state.template, "the calibrated template")
    t_state = template.state
    target = need(state.target, "the science-frame measurement")
    meta = need(state.meta, "the header")
    psf = need(state.psf, "the PSF")
    t_psf = need(t_state.psf, "the template PSF")
    background = need(state.background, "the background")
    cfg = state.config
    x, y = target.x, target.y
    xi, yi = round(x), round(y)
    pmap = aligned.pmap
    zp_n, zp_n_err = need(state.zero_point, "the zero point").predict(x, y, None)
    zp_t, zp_t_err = need(t_state.zero_point, "the template zero point").predict(*t_xy, None)
    try:
        est = _matched_flux_ratio(state, t_state, x, y)
        flux_ratio, ln_ratio_err = est.ratio, est.ln_err
        ratio_source = f"{est.n_stars} stars on both frames"
    except TooFewStarsError:  # the two zero points give the ratio
        flux_ratio = 10.0 ** (0.4 * (zp_t - zp_n))
        ln_ratio_err = 0.4 * math.log(10.0) * math.hypot(zp_t_err, zp_n_err)
        ratio_source = "zero points"
    fwhm_n = psf.fwhm_at(x, y)
    jac = pixel_map_jacobian(pmap, xi - region.ax0, yi - region.ay0)
    fwhm_r = t_fwhm / math.sqrt(abs(float(np.linalg.det(jac))))
    # Stamps out to 6 FWHM: truncating Moffat wings differently in the two PSFs would
    # leave a fraction of every static source in the difference.
    size = 2 * math.ceil(6.0 * max(fwhm_n, fwhm_r, 1.5)) + 1
    psf_n, _, _ = psf.render(float(xi), float(yi), size)
    psf_r = psf_on_grid(t_psf, *t_xy, jac, size, order=SPLINE_ORDER)
    # Interpolation correlates the template's noise; ZOGY whitens the difference with
    # its spectrum (the map at the target stands for the region). SWarp's own kernel is
    # not modelled: its template noise is taken as white.
    ref_acf = (
        None if cfg.subtraction.align == "swarp" else resampled_noise_acf(jac, order=SPLINE_ORDER)
    )
    cut = region.aligned
    sci_bad = need(state.mask, "the mask")[cut] != 0
    sci = np.where(sci_bad, 0.0, need(state.data_sub, "the background-subtracted image")[cut]
                   .astype(np.float64))
    ref = aligned.counts
    # Typical noise levels for the depth check: medians of a sparse sample (smooth maps)
    sigma_n = float(np.median(background.rms[cut][::4, ::4]))
    sigma_r = math.sqrt(float(np.median(aligned.bg_var[::4, ::4])))
    _check_depth(
        sigma_n, fwhm_n, sigma_r / flux_ratio, fwhm_r,
        cfg.subtraction.max_template_noise_ratio, template.label,
    )
    # Source noise of the static sky from the (deeper, transient-free) template.
    static = np.maximum(ref, 0.0)
    bg_var_n = background.rms[cut].astype(np.float64) ** 2
    var_n = bg_var_n + static / flux_ratio / meta.gain
    var_r = aligned.bg_var + static / need(t_state.meta, "the template header").gain
    # The ratio above rests on each frame's own total-flux scale; what the stars leave in a
    # first difference gives it without that scale (``core.difference_ratio``).
    try:
        refined = flux_ratio_from_difference(
            sci, ref, var_n, var_r, sci_bad | aligned.bad, psf_n, psf_r, flux_ratio,
            sources=need(state.sources, "the detected sources"),
            origin=(region.ax0, region.ay0), target=(x - region.ax0, y - region.ay0),
            fwhm=max(fwhm_n, fwhm_r), gain=meta.gain, window=_RATIO_WINDOW_PX,
            ref_noise_acf=ref_acf,
            field=DifferencePSFs(science=psf, template=t_psf, pmap=pmap, order=SPLINE_ORDER),
        )
    except TooFewStarsError:
        pass  # the ratio from the stars' fluxes stands
    else:
        flux_ratio, ln_ratio_err = refined.ratio, refined.ln_err
        ratio_source = f"{refined.n_stars} stars left in a first difference image"
        # The static-noise terms scale with the ratio.
        var_n = bg_var_n + static / flux_ratio / meta.gain
    inner = region.inner
    return _Matched(
        sci=sci[inner], ref=ref[inner], var_n=var_n[inner], var_r=var_r[inner],
        sci_bad=sci_bad[inner], ref_bad=aligned.bad[inner],
        pmap=PixelMap(x=pmap.x[inner], y=pmap.y[inner], area_ratio=pmap.area_ratio[inner]),
        psf_n=psf_n, psf_r=psf_r, size=size, fwhm_n=fwhm_n, fwhm_r=fwhm_r, ref_acf=ref_acf,
        flux_ratio=flux_ratio, ln_ratio_err=ln_ratio_err, ratio_source=ratio_source,
        zp_t=zp_t, zp_t_err=zp_t_err,
    )


def _subtract(
    m: _Matched, psf: PSFModel, t_psf: PSFModel, region: _Region, xy: tuple[float, float],
    cfg: MeasureConfig, label: str,
) -> ZogyResult:
    """The difference image of the subtracted region by the configured method."""
    x, y = xy[0] - region.x0, xy[1] - region.y0
    focus = (round(xy[0]) - region.x0, round(xy[1]) - region.y0)

    def psfs_at(cx: int, cy: int) -> tuple[np.ndarray, np.ndarray]:
        """Both PSFs at cutout pixel (cx, cy), on the science grid."""
        if (cx, cy) == focus:
            return m.psf_n, m.psf_r
        tx, ty = float(m.pmap.x[cy, cx]), float(m.pmap.y[cy, cx])
        pn, _, _ = psf.render(float(cx + region.x0), float(cy + region.y0), m.size)
        jac = pixel_map_jacobian(m.pmap, cx, cy)
        return pn, psf_on_grid(t_psf, tx, ty, jac, m.size, order=SPLINE_ORDER)

    sub = cfg.subtraction
    if sub.method == "sfft":
        yy, xx = np.ogrid[:region.wy, :region.wx]
        near_target = np.hypot(xx - x, yy - y) < 4.0 * m.fwhm_n
        exclude = (
            maximum_filter((m.sci_bad | m.ref_bad).astype(np.uint8), size=m.size) > 0
        ) | near_target
        return _sfft(m, label, exclude)
    if sub.method == "hotpants":
        return _hotpants(m, sub.tool_timeout_s)
    return zogy_tiled(
        m.sci, m.ref, m.var_n, m.var_r, psfs_at, flux_ratio=m.flux_ratio, tile=sub.tile_px,
        overlap=m.size, focus=focus, psf_size=m.size, ref_noise_acf=m.ref_acf,
        matched_within=_photometry_reach(cfg, max(m.fwhm_n, m.fwhm_r)) + m.size,
    )


def _measure_difference(
    z: ZogyResult, m: _Matched, science_target: TargetMeasurement, region: _Region,
    gain: float, cfg: MeasureConfig,
) -> tuple[TargetMeasurement, ZogyResult, np.ndarray]:
    """Forced photometry of the target on the difference image, with the flux ratio's
    error; the difference with its undefined pixels zeroed, and the pixels it left out."""
    # Pixels a method left undefined (HOTPANTS' invalid pixels) count as masked.
    invalid = ~(np.isfinite(z.difference) & np.isfinite(z.variance) & np.isfinite(z.psf_variance))
    if invalid.any():
        z = replace(
            z, difference=np.where(invalid, 0.0, z.difference),
            variance=np.where(invalid, float(np.nanmedian(z.variance)), z.variance),
            psf_variance=np.where(invalid, float(np.nanmedian(z.psf_variance)), z.psf_variance),
        )
    # A masked pixel spoils the difference over about the matching kernels' core.
    halo = math.ceil(1.5 * max(m.fwhm_n, m.fwhm_r))
    bad = grow(m.sci_bad | m.ref_bad | invalid, halo)
    # PSF-sized sums take the variance that holds the noise correlations (a host's
    # source noise through one kernel alone); the per-pixel one would overstate them.
    measurement = _measure(
        z.difference, z.psf_variance, bad, StampPSF.from_stamp(z.psf),
        science_target.x - region.x0, science_target.y - region.y0, gain, cfg,
        (region.x0, region.y0),
    )
    # An error in the flux ratio leaves a fraction of the static light (host, star) under
    # the target in the difference: add it to the error.
    static_flux = float(science_target.psf.flux[0] - measurement.psf.flux[0])
    ratio_term = abs(static_flux) * m.ln_ratio_err
    measurement = replace(
        measurement,
        psf=replace(measurement.psf, fluxerr=np.hypot(measurement.psf.fluxerr, ratio_term)),
    )
    return measurement, z, bad


def _sfft(m: _Matched, label: str, exclude: np.ndarray) -> ZogyResult:
    """SFFT's difference with the science PSF; its variance is taken as the sum of both
    images' (the matching kernel's smoothing of the template noise is ignored, so the
    errors are somewhat conservative)."""
    from skyphot.adapters.sfft import subtract_sfft

    if m.fwhm_r > m.fwhm_n:
        raise TemplateError(
            f"template {label} is broader than the frame (FWHM {m.fwhm_r:.2f} vs "
            f"{m.fwhm_n:.2f} px) and SFFT here only convolves the template; use method 'zogy'"
        )
    diff = subtract_sfft(
        m.sci, m.ref / m.flux_ratio, exclude=exclude, kernel_half_width=math.ceil(2.0 * m.fwhm_n)
    )
    return _plain_result(diff, m.var_n + m.var_r / m.flux_ratio**2, m.psf_n)


def _hotpants(m: _Matched, timeout: float) -> ZogyResult:
    """HOTPANTS' difference in science units with its noise image; the difference has the
    PSF of the image HOTPANTS did not convolve."""
    from skyphot.adapters.hotpants import subtract_hotpants

    res = subtract_hotpants(
        m.sci, m.ref / m.flux_ratio, science_var=m.var_n, template_var=m.var_r / m.flux_ratio**2,
        bad=m.sci_bad | m.ref_bad, fwhm_science=m.fwhm_n, fwhm_template=m.fwhm_r,
        timeout=timeout,
    )
    return _plain_result(
        res.difference, res.variance, m.psf_n if res.convolved == "template" else m.psf_r
    )


def _plain_result(diff: np.ndarray, var: np.ndarray, psf: np.ndarray) -> ZogyResult:
    """A difference in science units with its per-pixel variance and PSF (SFFT, HOTPANTS)
    as a ``ZogyResult``: nothing correlates its noise in a known way, so the PSF-fit
    variance is the per-pixel one."""
    return ZogyResult(
        difference=diff, variance=var, psf=psf / float(psf.sum()), score=diff / np.sqrt(var),
        flux_scale=1.0, background_sigma=float(np.sqrt(np.nanmedian(var))), psf_variance=var,
    )


def _matched_flux_ratio(
    state: FrameState, t_state: FrameState, x: float, y: float
) -> RatioEstimate:
    """Template/science flux ratio from the calibration stars measured on both frames
    nearest the target (catalog errors cancel star by star); raises ``TooFewStarsError``
    when fewer than ``MIN_RATIO_STARS`` are shared."""
    s_st = need(state.calib_stars, "the calibration stars")
    t_st = need(t_state.calib_stars, "the template calibration stars")
    s_wcs = need(state.astrometry, "the astrometric solution").wcs
    t_wcs = need(t_state.astrometry, "the template astrometry").wcs
    s_ra, s_dec = s_wcs.all_pix2world(s_st.x, s_st.y, 0)
    t_ra, t_dec = t_wcs.all_pix2world(t_st.x, t_st.y, 0)
    si, ti = _matched_stars(s_ra, s_dec, t_ra, t_dec)
    if si.size < MIN_RATIO_STARS:
        raise TooFewStarsError(
            f"only {si.size} calibration stars are measured on both frames; the flux ratio "
            f"needs {MIN_RATIO_STARS}"
        )
    near = np.argsort(np.hypot(s_st.x[si] - x, s_st.y[si] - y))[:_RATIO_STARS]
    si, ti = si[near], ti[near]
    return mean_flux_ratio(
        t_st.inst_mag[ti] - s_st.inst_mag[si],
        1.0 / (t_st.inst_err[ti] ** 2 + s_st.inst_err[si] ** 2),
        min_stars=MIN_RATIO_STARS,
    )


def _matched_stars(
    s_ra: np.ndarray, s_dec: np.ndarray, t_ra: np.ndarray, t_dec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the science stars with a template star within ``_MATCH_ARCSEC``, and of
    those template stars."""
    if s_ra.size < MIN_RATIO_STARS or t_ra.size < MIN_RATIO_STARS:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    cosd = math.cos(math.radians(float(np.median(s_dec))))
    tree = cKDTree(np.column_stack([t_ra * cosd, t_dec]) * 3600.0)
    dist, idx = tree.query(np.column_stack([s_ra * cosd, s_dec]) * 3600.0)
    ok = dist < _MATCH_ARCSEC
    return np.flatnonzero(ok), idx[ok]


def _check_coverage(shape: tuple[int, ...], x: float, y: float, margin: float, label: str) -> None:
    ny, nx = shape
    if not (margin - 0.5 <= x <= nx - 0.5 - margin and margin - 0.5 <= y <= ny - 0.5 - margin):
        raise TemplateError(
            f"template {label} does not cover the target: it falls at template pixel "
            f"({x:.1f}, {y:.1f}) of a {nx}x{ny} image; use a template of this field"
        )


def _check_depth(
    sigma_n: float, fwhm_n: float, sigma_r: float, fwhm_r: float, limit: float, label: str
) -> None:
    """Refuse a template whose PSF-flux noise (science units) exceeds ``limit`` x the frame's."""
    # A PSF fit's flux error is sigma * sqrt(n_eff), n_eff ~ FWHM^2 for a given profile.
    ratio = (sigma_r * fwhm_r) / (sigma_n * fwhm_n)
    if ratio > limit:
        raise TemplateError(
            f"template {label} is too shallow: its noise in the target's flux would be "
            f"{ratio:.2f} times the frame's (allowed {limit:g}); use a deeper template"
        )


def _photometry_reach(config: MeasureConfig, fwhm: float) -> float:
    """How far from the target (px) the photometry reads the difference image."""
    ph = config.photometry
    return fwhm * max(ph.annulus_fwhm[1], ph.psf_radius_fwhm, ph.aperture_radius_fwhm)


def _measure(
    diff: np.ndarray,
    var: np.ndarray,
    bad: np.ndarray,
    psf: StampPSF,
    x: float,
    y: float,
    gain: float,
    config: MeasureConfig,
    origin: tuple[int, int],
) -> TargetMeasurement:
    """Forced PSF (and aperture) photometry at cutout position (x, y) with a local
    background; ``var`` is the per-pixel variance for PSF-sized sums (``psf_variance``)."""
    cfg = config.photometry
    fwhm = psf.fwhm
    rms = np.sqrt(var)
    # A local background: each image's background model absorbs a different part of an
    # extended host, which leaves a smooth offset in the difference under the target.
    annulus = (cfg.annulus_fwhm[0] * fwhm, cfg.annulus_fwhm[1] * fwhm)
    phot = forced_psf_photometry(
        diff, np.array([x]), np.array([y]), psf=psf, rms=rms, gain=gain, mask=bad,
        radius=cfg.psf_radius_fwhm * fwhm, annulus=annulus,
    )
    if not np.isfinite(phot.flux[0]):
        raise PhotometryError(
            "the target cannot be measured on the difference image: every pixel around it is "
            "masked in the frame or the template"
        )
    ap_radius = cfg.aperture_radius_fwhm * fwhm
    aperture = aperture_photometry(
        diff, np.array([x]), np.array([y]), radius=ap_radius, rms=rms, gain=gain, mask=bad,
        annulus=annulus,
    )
    return TargetMeasurement(
        x=x + origin[0],
        y=y + origin[1],
        psf=phot,
        aperture=aperture,
        aperture_radius=ap_radius,
        encircled_energy=encircled_energy(psf, x, y, ap_radius),
        fwhm=fwhm,
    )


def _noise_check(
    diff: np.ndarray, var: np.ndarray, bad: np.ndarray, x: float, y: float, fwhm: float
) -> tuple[float, int]:
    """Robust std of difference / predicted sigma in an annulus around the target (1 when
    the subtraction is clean and the noise model right), and the pixels used."""
    ny, nx = diff.shape
    r_out = math.ceil(_NOISE_OUTER_PX)
    ys = slice(max(int(y) - r_out, 0), min(int(y) + r_out + 2, ny))
    xs = slice(max(int(x) - r_out, 0), min(int(x) + r_out + 2, nx))
    diff, var, bad = diff[ys, xs], var[ys, xs], bad[ys, xs]
    yy, xx = np.indices(diff.shape)
    r = np.hypot(xx + xs.start - x, yy + ys.start - y)
    sel = (r > _NOISE_INNER_FWHM * fwhm) & (r < _NOISE_OUTER_PX) & ~bad
    n = int(sel.sum())
    if n < 50:
        return float("nan"), n
    z = diff[sel] / np.sqrt(var[sel])
    q25, q75 = np.percentile(z, [25, 75])
    return float((q75 - q25) / 1.349), n

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
from scipy.interpolate import RectBivariateSpline
from scipy.ndimage import map_coordinates, maximum_filter
from scipy.spatial import cKDTree

from skyphot.catalogs.filters import resolve_filter
from skyphot.core.detection import SourceList, isolated
from skyphot.core.flux_ratio import fit_flux_ratio
from skyphot.core.masking import grow
from skyphot.core.noise_correlation import resampled_noise_acf
from skyphot.core.photometry import (
    AperturePhotometry,
    aperture_photometry,
    encircled_energy,
    forced_psf_photometry,
)
from skyphot.core.psf import PSFModel, effective_area
from skyphot.core.resample import PixelMap, nearest_pixels, pixel_map, resample, sample_nearest
from skyphot.core.stats import mad_sigma
from skyphot.core.units import MAG_ERR_FACTOR
from skyphot.core.wcs_utils import pixel_scale_arcsec
from skyphot.core.zogy import StampPSF, ZogyResult, zogy, zogy_tiled
from skyphot.errors import (
    InputError,
    PhotometryError,
    SkyphotError,
    TargetOutsideFrameError,
    TemplateError,
    UnknownFilterError,
)
from skyphot.pipeline.config import HeaderOverrides, MeasureConfig
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
# The flux ratio comes from up to this many stars nearest the target, matched within this
# radius, and needs at least this many.
_RATIO_STARS = 40
_MATCH_ARCSEC = 1.0
_MIN_RATIO_STARS = 5
# Spline order of the template resampling (and of its PSF, resampled the same way): quintic
# splines depend less on a source's sub-pixel phase than cubic ones.
_ORDER = 5
# Side of the region (px) whose stars refine the flux ratio in a first difference image.
_RATIO_WINDOW_PX = 1024
# Survey cutouts reach this far beyond the region subtracted (pointing and WCS slack).
_SIZE_MARGIN_ARCSEC = 60.0
# Template pixels this close to the target must be on the template.
_COVER_FWHM = 3.0
# Nodes per side of the grid on which the flux-ratio stars' PSF-variation residual is
# modelled (see ``_model_residuals``).
_MODEL_GRID = 5
# What a flux-ratio star leaves in the first difference is summed in an aperture of this
# radius and its local background taken from this annulus (units of the larger FWHM); the
# star must be this far from the target and have no detected neighbour brighter than
# ``_RESIDUAL_NEIGHBOUR_FLUX`` of its own flux within the aperture plus one FWHM.
_RESIDUAL_APERTURE_FWHM = 3.0
_RESIDUAL_ANNULUS_FWHM = (5.0, 7.0)
_RESIDUAL_TARGET_FWHM = 10.0
_RESIDUAL_NEIGHBOUR_FLUX = 0.02


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
        meta = need(state.meta, "the header")
        data_sub = need(state.data_sub, "the background-subtracted image")
        background = need(state.background, "the background")
        mask = need(state.mask, "the mask")
        solution = need(state.astrometry, "the astrometric solution")
        psf = need(state.psf, "the PSF")
        zp_fit = need(state.zero_point, "the zero point")
        t_data = need(t_state.data_sub, "the template image")
        t_bg = need(t_state.background, "the template background")
        t_mask = need(t_state.mask, "the template mask")
        t_meta = need(t_state.meta, "the template header")
        t_wcs = need(t_state.astrometry, "the template astrometry").wcs
        t_psf = need(t_state.psf, "the template PSF")
        t_zp_fit = need(t_state.zero_point, "the template zero point")
        cfg = state.config
        timings: dict[str, float] = {}
        t0 = time.perf_counter()

        x, y = science_target.x, science_target.y
        ny, nx = frame.shape
        if cfg.subtraction.region == "full":
            x0, y0, wy, wx = 0, 0, ny, nx
            ax0, ay0, awy, awx = x0, y0, wy, wx
        else:
            wy = wx = min(cfg.subtraction.cutout_px, ny, nx)
            x0 = int(np.clip(round(x) - wx // 2, 0, nx - wx))
            y0 = int(np.clip(round(y) - wy // 2, 0, ny - wy))
            # A larger region is aligned: its stars refine the flux ratio (a template that
            # covers less of it leaves the uncovered stars out).
            awy = awx = min(max(cfg.subtraction.cutout_px, _RATIO_WINDOW_PX), ny, nx)
            ax0 = int(np.clip(round(x) - awx // 2, 0, nx - awx))
            ay0 = int(np.clip(round(y) - awy // 2, 0, ny - awy))
        cut = (slice(ay0, ay0 + awy), slice(ax0, ax0 + awx))
        pmap = pixel_map(t_wcs, solution.wcs, (awy, awx), origin=(ax0, ay0))
        xi, yi = round(x), round(y)
        txc = float(pmap.x[yi - ay0, xi - ax0])
        tyc = float(pmap.y[yi - ay0, xi - ax0])
        t_fwhm_native = t_psf.fwhm_at(txc, tyc)
        _check_coverage(t_data.shape, txc, tyc, _COVER_FWHM * t_fwhm_native, template.label)

        # --- align: counts, mask and background variance onto the science grid
        t_bad = t_mask != 0
        if cfg.subtraction.align == "swarp":
            from skyphot.adapters.swarp import resample as swarp_resample

            region_wcs = solution.wcs.slice(cut)
            ref, _ = swarp_resample(
                t_data, t_wcs, target_wcs=region_wcs, shape=(awy, awx), mask=t_bad,
                timeout=cfg.subtraction.tool_timeout_s,
            )
            ref = ref.astype(np.float64)
        else:
            ref = resample(np.where(t_bad, 0.0, t_data), pmap, order=_ORDER)
        near = nearest_pixels(pmap, t_data.shape)
        ref_bad = ~np.isfinite(ref) | sample_nearest(t_bad, pmap, fill=True, nearest=near)
        area = pmap.area_ratio
        # White-equivalent variance per science pixel: the source-pixel variance times the
        # number of source pixels per science pixel (noise power per unit sky area is kept).
        # The background rms map is smooth, so its nearest sample is enough.
        # (sampled in its own precision: converting the whole template first costs more)
        t_rms = t_bg.rms
        ref_bgvar = sample_nearest(
            t_rms, pmap, fill=float(np.median(t_rms[::8, ::8].astype(np.float64))), nearest=near
        ).astype(np.float64, copy=False) ** 2
        ref_bgvar *= area
        ref = np.where(ref_bad, 0.0, ref)
        timings["align"] = time.perf_counter() - t0

        # --- match: flux ratio from both zero points, PSFs at the target on this grid
        t1 = time.perf_counter()
        zp_n, zp_n_err = zp_fit.predict(x, y, None)
        zp_t, zp_t_err = t_zp_fit.predict(txc, tyc, None)
        matched = _matched_flux_ratio(state, t_state, x, y)
        if matched is not None:
            flux_ratio, ln_ratio_err, ratio_source = matched
        else:  # too few stars measured on both: the two zero points give the ratio
            flux_ratio = 10.0 ** (0.4 * (zp_t - zp_n))
            ln_ratio_err = 0.4 * math.log(10.0) * math.hypot(zp_t_err, zp_n_err)
            ratio_source = "zero points"
        fwhm_n = psf.fwhm_at(x, y)
        jac = _jacobian(pmap, xi - ax0, yi - ay0)
        t_fwhm_sci = t_fwhm_native / math.sqrt(abs(float(np.linalg.det(jac))))
        # Stamps out to 6 FWHM: truncating Moffat wings differently in the two PSFs would
        # leave a fraction of every static source in the difference.
        size = 2 * math.ceil(6.0 * max(fwhm_n, t_fwhm_sci, 1.5)) + 1
        psf_n, _, _ = psf.render(float(xi), float(yi), size)
        psf_r = _template_psf_on_grid(t_psf, txc, tyc, jac, size)
        # Interpolation correlates the template's noise; ZOGY whitens the difference with
        # its spectrum (the map at the target stands for the region). SWarp's own kernel is
        # not modelled: its template noise is taken as white.
        ref_acf = (
            None if cfg.subtraction.align == "swarp"
            else resampled_noise_acf(jac, order=_ORDER)
        )
        sci_bad = mask[cut] != 0
        sci = np.where(sci_bad, 0.0, data_sub[cut].astype(np.float64))
        # Typical noise levels for the depth check: medians of a sparse sample (smooth maps)
        sigma_n = float(np.median(background.rms[cut][::4, ::4]))
        sigma_r = math.sqrt(float(np.median(ref_bgvar[::4, ::4])))
        _check_depth(
            sigma_n, fwhm_n, sigma_r / flux_ratio, t_fwhm_sci,
            cfg.subtraction.max_template_noise_ratio, template.label,
        )
        # Source noise of the static sky from the (deeper, transient-free) template.
        static = np.maximum(ref, 0.0)
        bg_var_n = background.rms[cut].astype(np.float64) ** 2
        var_n = bg_var_n + static / flux_ratio / meta.gain
        var_r = ref_bgvar + static / t_meta.gain
        # The stars' flux ratio above rests on each frame's own total-flux scale (PSF fit
        # and aperture correction), whose systematics differ between a sharp and a broad
        # PSF by a few 0.1%: times a host 10-20 times the transient, that is a bias of a
        # sizeable fraction of the error. Stars left over in a first difference image give
        # the ratio without that scale (see ``_refine_flux_ratio``).
        refined = _refine_flux_ratio(
            sci, ref, var_n, var_r, sci_bad | ref_bad, psf_n, psf_r, flux_ratio,
            sources=need(state.sources, "the detected sources"), origin=(ax0, ay0),
            target=(x - ax0, y - ay0), fwhm=max(fwhm_n, t_fwhm_sci), gain=meta.gain,
            window=_RATIO_WINDOW_PX, ref_noise_acf=ref_acf,
            field=_PSFField(science=psf, template=t_psf, pmap=pmap),
        )
        if refined is not None:
            new_ratio, ln_ratio_err, ratio_source = refined
            # The static-noise terms scale with the ratio.
            var_n = bg_var_n + static / new_ratio / meta.gain
            flux_ratio = new_ratio
        # From here on only the region to subtract.
        inner = (slice(y0 - ay0, y0 - ay0 + wy), slice(x0 - ax0, x0 - ax0 + wx))
        sci, ref, var_n, var_r = sci[inner], ref[inner], var_n[inner], var_r[inner]
        sci_bad, ref_bad = sci_bad[inner], ref_bad[inner]
        pmap = PixelMap(x=pmap.x[inner], y=pmap.y[inner], area_ratio=pmap.area_ratio[inner])
        timings["match"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        tile = cfg.subtraction.tile_px

        def psfs_at(cx: int, cy: int) -> tuple[np.ndarray, np.ndarray]:
            """Both PSFs at cutout pixel (cx, cy), on the science grid."""
            if (cx, cy) == (xi - x0, yi - y0):
                return psf_n, psf_r
            tx, ty = float(pmap.x[cy, cx]), float(pmap.y[cy, cx])
            pn, _, _ = psf.render(float(cx + x0), float(cy + y0), size)
            return pn, _template_psf_on_grid(t_psf, tx, ty, _jacobian(pmap, cx, cy), size)

        if cfg.subtraction.method == "sfft":
            yy, xx = np.ogrid[:wy, :wx]
            near_target = np.hypot(xx - (x - x0), yy - (y - y0)) < 4.0 * fwhm_n
            exclude = (maximum_filter((sci_bad | ref_bad).astype(np.uint8), size=size) > 0) | (
                near_target
            )
            z = _sfft(sci, ref, var_n, var_r, psf_n, flux_ratio, fwhm_n, t_fwhm_sci,
                      template.label, exclude)
        elif cfg.subtraction.method == "hotpants":
            z = _hotpants(sci, ref, var_n, var_r, sci_bad | ref_bad, psf_n, psf_r, flux_ratio,
                          fwhm_n, t_fwhm_sci, cfg.subtraction.tool_timeout_s)
        else:
            z = zogy_tiled(
                sci, ref, var_n, var_r, psfs_at, flux_ratio=flux_ratio, tile=tile,
                overlap=size, focus=(xi - x0, yi - y0), psf_size=size, ref_noise_acf=ref_acf,
                matched_within=_photometry_reach(cfg, max(fwhm_n, t_fwhm_sci)) + size,
            )
        timings["subtract"] = time.perf_counter() - t2

        # --- forced photometry on the difference image
        t3 = time.perf_counter()
        # Pixels a method left undefined (HOTPANTS' invalid pixels) count as masked.
        invalid = ~(
            np.isfinite(z.difference) & np.isfinite(z.variance) & np.isfinite(z.psf_variance)
        )
        if invalid.any():
            z = replace(
                z, difference=np.where(invalid, 0.0, z.difference),
                variance=np.where(invalid, float(np.nanmedian(z.variance)), z.variance),
                psf_variance=np.where(
                    invalid, float(np.nanmedian(z.psf_variance)), z.psf_variance
                ),
            )
        # A masked pixel spoils the difference over about the matching kernels' core.
        halo = math.ceil(1.5 * max(fwhm_n, t_fwhm_sci))
        bad = grow(sci_bad | ref_bad | invalid, halo)
        d_psf = StampPSF.from_stamp(z.psf)
        # PSF-sized sums take the variance that holds the noise correlations (a host's
        # source noise through one kernel alone); the per-pixel one would overstate them.
        measurement = _measure(
            z.difference, z.psf_variance, bad, d_psf, x - x0, y - y0, meta.gain, cfg, (x0, y0)
        )
        # An error in the flux ratio leaves a fraction of the static light (host, star) under
        # the target in the difference: add it to the error.
        static_flux = float(science_target.psf.flux[0] - measurement.psf.flux[0])
        ratio_term = abs(static_flux) * ln_ratio_err
        measurement = replace(
            measurement,
            psf=replace(measurement.psf, fluxerr=np.hypot(measurement.psf.fluxerr, ratio_term)),
        )
        noise, n_pix = _noise_check(z.difference, z.variance, bad, x - x0, y - y0, d_psf.fwhm)
        timings["photometry"] = time.perf_counter() - t3
        timings["total"] = time.perf_counter() - t0
        t_limit = 5.0 * float(np.median(t_bg.rms)) * math.sqrt(effective_area(t_psf, txc, tyc))

        products = SubtractionProducts(
            science_target=science_target,
            template=template,
            origin=(x0, y0),
            science=sci,
            template_aligned=ref / flux_ratio,
            difference=z.difference,
            variance=z.variance,
            score=z.score,
            bad=bad,
            flux_ratio=flux_ratio,
            flux_ratio_err=flux_ratio * ln_ratio_err,
            flux_ratio_source=ratio_source,
            template_zero_point=zp_t,
            template_zero_point_err=zp_t_err,
            template_fwhm_px=t_fwhm_native,
            template_limit_flux=t_limit,
            noise_measured=noise,
            noise_pixels=n_pix,
            timings=timings,
        )
        return replace(state, target=measurement, subtraction=products)


def _sfft(
    sci: np.ndarray,
    ref: np.ndarray,
    var_n: np.ndarray,
    var_r: np.ndarray,
    psf_n: np.ndarray,
    flux_ratio: float,
    fwhm_n: float,
    fwhm_r: float,
    label: str,
    exclude: np.ndarray,
) -> ZogyResult:
    """SFFT's difference with the science PSF; its variance is taken as the sum of both
    images' (the matching kernel's smoothing of the template noise is ignored, so the
    errors are somewhat conservative)."""
    from skyphot.adapters.sfft import subtract_sfft

    if fwhm_r > fwhm_n:
        raise TemplateError(
            f"template {label} is broader than the frame (FWHM {fwhm_r:.2f} vs {fwhm_n:.2f} px) "
            "and SFFT here only convolves the template; use method 'zogy'"
        )
    diff = subtract_sfft(
        sci, ref / flux_ratio, exclude=exclude, kernel_half_width=math.ceil(2.0 * fwhm_n)
    )
    return _plain_result(diff, var_n + var_r / flux_ratio**2, psf_n)


def _hotpants(
    sci: np.ndarray,
    ref: np.ndarray,
    var_n: np.ndarray,
    var_r: np.ndarray,
    bad: np.ndarray,
    psf_n: np.ndarray,
    psf_r: np.ndarray,
    flux_ratio: float,
    fwhm_n: float,
    fwhm_r: float,
    timeout: float,
) -> ZogyResult:
    """HOTPANTS' difference in science units with its noise image; the difference has the
    PSF of the image HOTPANTS did not convolve."""
    from skyphot.adapters.hotpants import subtract_hotpants

    res = subtract_hotpants(
        sci, ref / flux_ratio, science_var=var_n, template_var=var_r / flux_ratio**2,
        bad=bad, fwhm_science=fwhm_n, fwhm_template=fwhm_r, timeout=timeout,
    )
    return _plain_result(
        res.difference, res.variance, psf_n if res.convolved == "template" else psf_r
    )


def _plain_result(diff: np.ndarray, var: np.ndarray, psf: np.ndarray) -> ZogyResult:
    """A difference in science units with its per-pixel variance and PSF (SFFT, HOTPANTS)
    as a ``ZogyResult``: nothing correlates its noise in a known way, so the PSF-fit
    variance is the per-pixel one."""
    return ZogyResult(
        difference=diff, variance=var, psf=psf / float(psf.sum()), score=diff / np.sqrt(var),
        flux_scale=1.0, background_sigma=float(np.sqrt(np.nanmedian(var))), psf_variance=var,
    )


@dataclass(frozen=True)
class _PSFField:
    """Both frames' PSF models across the aligned region and its map into the template
    (``pmap``: the region's pixels, the region starting at the ``origin`` given with it)."""

    science: PSFModel
    template: PSFModel
    pmap: PixelMap


def _refine_flux_ratio(
    sci: np.ndarray,
    ref: np.ndarray,
    var_n: np.ndarray,
    var_r: np.ndarray,
    bad: np.ndarray,
    psf_n: np.ndarray,
    psf_r: np.ndarray,
    flux_ratio: float,
    *,
    sources: SourceList,
    origin: tuple[int, int],
    target: tuple[float, float],
    fwhm: float,
    gain: float,
    window: int,
    ref_noise_acf: np.ndarray | None = None,
    field: _PSFField | None = None,
) -> tuple[float, float, str] | None:
    """The flux ratio from what static stars leave in a ZOGY difference made with
    ``flux_ratio``: None when too few stars are usable.

    A static source of science flux s, subtracted with ratio rho where rho0 is right,
    becomes a point source of flux ``s (1 - rho0 / rho)`` with the difference PSF P_D
    (ZOGY eq. 13-14), at every spatial frequency and whatever the PSF models' errors in
    the source's total flux. So each star's residual r (PSF fit with P_D) and science flux
    s give ``rho0 = rho (1 - r / s)``; the PSF models enter only through r / s, which is
    small: the result no longer rests on either frame's own total-flux scale.

    That holds where the two PSFs are those the difference was made with, i.e. at the
    target: a star elsewhere has both PSFs a little different (FWHM and shape vary across
    the frame), and leaves a residual even with the right ratio. Growing with the distance
    from the target (quadratically, as the PSF's FWHM does), it is not absorbed by the
    ratio's linear fit and biased the ratio at the target by 0.2-0.4% on 1024 px windows
    (noise-free benchmark frames; times a host 10-20 times the transient, a few 0.01 mag).
    With ``field`` given, that residual is predicted for each star from both PSF models at
    its position (a noise-free model of the stars subtracted the same way) and removed.
    """
    ny, nx = sci.shape
    tx, ty = target
    w = min(window, ny, nx)
    wx0 = int(np.clip(round(tx) - w // 2, 0, nx - w))
    wy0 = int(np.clip(round(ty) - w // 2, 0, ny - w))
    box = (slice(wy0, wy0 + w), slice(wx0, wx0 + w))
    size = psf_n.shape[0]
    vn, vr = var_n[box], var_r[box]
    # white levels from a sparse sample, as for the tiles (a full median costs ~50 ms)
    sigmas = (
        math.sqrt(float(np.median(vn[::4, ::4]))), math.sqrt(float(np.median(vr[::4, ::4])))
    )
    z = zogy(
        sci[box], ref[box], psf_n, psf_r, sigma_new=sigmas[0], sigma_ref=sigmas[1],
        flux_ratio=flux_ratio, var_new=vn, var_ref=vr, psf_size=size,
        ref_noise_acf=ref_noise_acf,
    )
    # Stars in the window, clear of its edges (the FFT wraps), of the target and its host
    # (> 6 FWHM) and of masked pixels.
    xs = sources.x - origin[0] - wx0
    ys = sources.y - origin[1] - wy0
    edge = size + 2.0 * fwhm
    sel = (xs > edge) & (xs < w - 1 - edge) & (ys > edge) & (ys < w - 1 - edge)
    sel &= np.hypot(xs - (tx - wx0), ys - (ty - wy0)) > _RESIDUAL_TARGET_FWHM * fwhm
    sel &= isolated(
        sources, radius=(_RESIDUAL_APERTURE_FWHM + 1.0) * fwhm,
        min_flux_ratio=_RESIDUAL_NEIGHBOUR_FLUX,
    )
    halo = math.ceil(2.0 * fwhm)
    w_bad = grow(bad[box], halo)
    xi = np.clip(np.rint(xs), 0, w - 1).astype(np.intp)
    yi = np.clip(np.rint(ys), 0, w - 1).astype(np.intp)
    sel &= ~w_bad[yi, xi]
    if int(sel.sum()) < _MIN_RATIO_STARS:
        return None
    xs, ys = xs[sel], ys[sel]
    radius = 1.5 * fwhm
    annulus = (3.0 * fwhm, 5.0 * fwhm)
    s_phot = forced_psf_photometry(
        sci[box], xs, ys, psf=StampPSF.from_stamp(psf_n), rms=np.sqrt(vn), gain=gain,
        mask=w_bad, radius=radius, annulus=annulus,
    )
    t_phot = forced_psf_photometry(
        ref[box] / flux_ratio, xs, ys, psf=StampPSF.from_stamp(psf_r),
        rms=np.sqrt(vr) / flux_ratio, gain=gain * flux_ratio, mask=w_bad, radius=radius,
        annulus=annulus,
    )
    r_phot = _residual_flux(z.difference, z.variance, xs, ys, fwhm=fwhm, gain=gain, mask=w_bad)
    # The star's flux s from both images, inverse-variance weighted: the residual r holds
    # the science noise with a plus sign and the template noise with a minus sign, so this
    # s is (to first order) uncorrelated with r. With the science flux alone, choosing and
    # weighting stars by s favours upward science noise, which r shares: the ratio came out
    # ~0.3% low on the benchmark frames.
    w_n = 1.0 / s_phot.fluxerr_background**2
    w_t = 1.0 / t_phot.fluxerr_background**2
    s = (w_n * s_phot.flux + w_t * t_phot.flux) / (w_n + w_t)
    s_err = 1.0 / np.sqrt(w_n + w_t)
    r, r_err = r_phot.flux, r_phot.fluxerr
    if field is not None:
        r = r - s * _model_residuals(
            field, xs, ys, origin, (wx0, wy0), (tx - wx0, ty - wy0), w, edge, psf_n, psf_r,
            flux_ratio,
            sigmas, ref_noise_acf, rms=float(np.sqrt(np.median(z.variance[::4, ::4]))),
            gain=gain, fwhm=fwhm,
        )
    # Bright stars only: a faint star's r / s is noise, and its s error would not be second
    # order any more.
    ok = np.isfinite(s) & np.isfinite(s_err) & np.isfinite(r) & np.isfinite(r_err) & (r_err > 0)
    ok &= s > 20.0 * np.where(ok, s_err, np.inf)
    ok &= np.abs(r) < 0.2 * np.abs(s)
    if int(ok.sum()) < _MIN_RATIO_STARS:
        return None
    q = r[ok] / s[ok]
    d_mag = -2.5 * np.log10(flux_ratio * (1.0 - q))
    d_err = MAG_ERR_FACTOR * (r_err[ok] / s[ok]) / (1.0 - q)
    try:
        fit = fit_flux_ratio(
            d_mag, d_err, xs[ok], ys[ok], at=(tx - wx0, ty - wy0), shape=(w, w),
            max_order=1, min_stars=_MIN_RATIO_STARS,
        )
    except InputError:
        return None
    return fit.ratio, fit.ln_err, f"{fit.n_used} stars left in a first difference image"


def _model_residuals(
    field: _PSFField,
    xs: np.ndarray,
    ys: np.ndarray,
    origin: tuple[int, int],
    offset: tuple[int, int],
    target: tuple[float, float],
    width: int,
    edge: float,
    psf_n: np.ndarray,
    psf_r: np.ndarray,
    flux_ratio: float,
    sigmas: tuple[float, float],
    ref_noise_acf: np.ndarray | None,
    *,
    rms: float,
    gain: float,
    fwhm: float,
) -> np.ndarray:
    """The fraction of its flux a static star at window pixel (``xs``, ``ys``) leaves in a
    ZOGY difference made with the PSFs at the target (``psf_n``, ``psf_r``) and the right
    ratio, measured as the stars' residuals are (PSF fit with P_D, local background).

    Unit stars are rendered noise-free with both PSF models at the nodes of a
    ``_MODEL_GRID`` x ``_MODEL_GRID`` grid over the window (within ``edge`` px of its
    sides; the template's through the pixel map onto the science grid), each in its own
    cell of a small mosaic subtracted with the same kernels; the fraction left varies as
    slowly as the PSFs do and is interpolated (bicubic) to every star, relative to its
    value at the ``target`` (window px), where the difference's PSFs are exact: only the
    variation is taken from the models, not their truncation or total flux. ``origin``: the
    aligned region's first pixel in the science frame (``field.pmap`` covers the region);
    ``offset``: the window's first pixel in the region; ``sigmas``: the white noise levels
    the difference was made with; ``rms``: a typical per-pixel noise of that difference.
    """
    n = _MODEL_GRID
    size = psf_n.shape[0]
    h = size // 2
    if width - 1 - 2 * edge < 4 * (n - 1):  # no room for a grid (nor for many stars)
        return np.zeros(xs.shape)
    nodes = np.linspace(edge, width - 1 - edge, n).round()
    cell = 2 * size
    mosaic = (n * cell, n * cell)
    model_n = np.zeros(mosaic)
    model_r = np.zeros(mosaic)
    rx0, ry0 = offset
    pmap = field.pmap
    centres = []
    for jj, wy in enumerate(nodes):
        for ii, wx in enumerate(nodes):
            i, j = int(wx) + rx0, int(wy) + ry0  # the node's pixel in the aligned region
            stamp_n, _, _ = field.science.render(float(i + origin[0]), float(j + origin[1]), size)
            stamp_r = _template_psf_on_grid(
                field.template, float(pmap.x[j, i]), float(pmap.y[j, i]), _jacobian(pmap, i, j),
                size,
            )
            cy, cx = jj * cell + cell // 2, ii * cell + cell // 2
            box = (slice(cy - h, cy + h + 1), slice(cx - h, cx + h + 1))
            model_n[box] = stamp_n / float(np.sum(stamp_n))  # unit sum, as the template's
            model_r[box] = flux_ratio * stamp_r
            centres.append((cx, cy))
    mz = zogy(
        model_n, model_r, psf_n, psf_r, sigma_new=sigmas[0], sigma_ref=sigmas[1],
        flux_ratio=flux_ratio, psf_size=size, ref_noise_acf=ref_noise_acf,
        matched_filter=False,
    )
    cxy = np.asarray(centres, dtype=float)
    phot = _residual_flux(
        mz.difference, np.full(mosaic, rms**2), cxy[:, 0], cxy[:, 1], fwhm=fwhm, gain=gain,
        mask=None,
    )
    left = np.nan_to_num(np.asarray(phot.flux, dtype=float)).reshape(n, n)  # [y, x]
    spline = RectBivariateSpline(nodes, nodes, left, kx=3, ky=3)
    lo, hi = nodes[0], nodes[-1]
    at_target = float(spline.ev(np.clip(target[1], lo, hi), np.clip(target[0], lo, hi)))
    return np.asarray(spline.ev(np.clip(ys, lo, hi), np.clip(xs, lo, hi))) - at_target


def _residual_flux(
    diff: np.ndarray,
    var: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    *,
    fwhm: float,
    gain: float,
    mask: np.ndarray | None,
) -> AperturePhotometry:
    """What static stars at (``xs``, ``ys``) leave in a difference image: an aperture sum
    out to ``_RESIDUAL_APERTURE_FWHM`` x ``fwhm`` less a local background.

    A PSF fit with the difference's PSF would be less noisy, but an error in either PSF
    model's shape (a Moffat beta off by 1%, or a real PSF no Moffat fits) leaves every
    star a residual of zero total flux and non-zero PSF-fit flux: on the benchmark frames
    that biased the ratio by 0.3-0.5%, times a host ten times the transient. A wide
    aperture holds all but the encircled-energy difference of that residual (< 0.1%)."""
    return aperture_photometry(
        diff, xs, ys, radius=_RESIDUAL_APERTURE_FWHM * fwhm, rms=np.sqrt(var), gain=gain,
        mask=mask, annulus=(_RESIDUAL_ANNULUS_FWHM[0] * fwhm, _RESIDUAL_ANNULUS_FWHM[1] * fwhm),
    )


def _matched_flux_ratio(
    state: FrameState, t_state: FrameState, x: float, y: float
) -> tuple[float, float, str] | None:
    """Template/science flux ratio from the calibration stars measured on both frames
    nearest the target (catalog errors cancel star by star), its relative error, and a
    description; None when fewer than ``_MIN_RATIO_STARS`` stars are shared."""
    s_st = need(state.calib_stars, "the calibration stars")
    t_st = need(t_state.calib_stars, "the template calibration stars")
    s_wcs = need(state.astrometry, "the astrometric solution").wcs
    t_wcs = need(t_state.astrometry, "the template astrometry").wcs
    if s_st.x.size < _MIN_RATIO_STARS or t_st.x.size < _MIN_RATIO_STARS:
        return None
    s_ra, s_dec = s_wcs.all_pix2world(s_st.x, s_st.y, 0)
    t_ra, t_dec = t_wcs.all_pix2world(t_st.x, t_st.y, 0)
    cosd = math.cos(math.radians(float(np.median(s_dec))))
    tree = cKDTree(np.column_stack([t_ra * cosd, t_dec]) * 3600.0)
    dist, idx = tree.query(np.column_stack([s_ra * cosd, s_dec]) * 3600.0)
    ok = dist < _MATCH_ARCSEC
    if int(ok.sum()) < _MIN_RATIO_STARS:
        return None
    si = np.flatnonzero(ok)
    ti = idx[ok]
    near = np.argsort(np.hypot(s_st.x[si] - x, s_st.y[si] - y))[:_RATIO_STARS]
    si, ti = si[near], ti[near]
    d = t_st.inst_mag[ti] - s_st.inst_mag[si]
    w = 1.0 / (t_st.inst_err[ti] ** 2 + s_st.inst_err[si] ** 2)
    med = float(np.median(d))
    mad = mad_sigma(d)
    keep = np.abs(d - med) <= max(3.0 * mad, 0.01)
    if int(keep.sum()) < _MIN_RATIO_STARS:
        return None
    d, w = d[keep], w[keep]
    mean = float(np.sum(w * d) / np.sum(w))
    chi2 = float(np.sum(w * (d - mean) ** 2)) / max(d.size - 1, 1)
    err_mag = math.sqrt(max(chi2, 1.0) / float(np.sum(w)))
    ratio = 10.0 ** (-0.4 * mean)
    return ratio, 0.4 * math.log(10.0) * err_mag, f"{d.size} stars on both frames"


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


def _jacobian(pmap: PixelMap, i: int, j: int) -> np.ndarray:
    """d(template x, y) / d(science x, y) at cutout pixel (i, j)."""
    ny, nx = pmap.x.shape
    i0, i1 = max(i - 1, 0), min(i + 1, nx - 1)
    j0, j1 = max(j - 1, 0), min(j + 1, ny - 1)
    jac = np.empty((2, 2))
    jac[0, 0] = (pmap.x[j, i1] - pmap.x[j, i0]) / (i1 - i0)
    jac[0, 1] = (pmap.x[j1, i] - pmap.x[j0, i]) / (j1 - j0)
    jac[1, 0] = (pmap.y[j, i1] - pmap.y[j, i0]) / (i1 - i0)
    jac[1, 1] = (pmap.y[j1, i] - pmap.y[j0, i]) / (j1 - j0)
    return jac


def _template_psf_on_grid(
    t_psf: PSFModel, tx: float, ty: float, jac: np.ndarray, size: int
) -> np.ndarray:
    """The template's PSF at template pixel (tx, ty), resampled onto the science grid as a
    centred ``size`` stamp (unit sum)."""
    scale = float(np.max(np.abs(jac)))
    native = 2 * math.ceil(size * max(scale, 1.0) * 0.75) + 1
    stamp, sx0, sy0 = t_psf.render(tx, ty, native)
    h = size // 2
    dy, dx = np.mgrid[-h : h + 1, -h : h + 1].astype(float)
    src_x = tx + jac[0, 0] * dx + jac[0, 1] * dy - sx0
    src_y = ty + jac[1, 0] * dx + jac[1, 1] * dy - sy0
    out = map_coordinates(
        np.asarray(stamp, float), [src_y, src_x], order=_ORDER, mode="constant"
    )
    out = np.maximum(out, 0.0)
    return np.asarray(out / out.sum())


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

"""The diagnostic PNG: target cutouts, calibration residuals, astrometric residuals."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and workers

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Circle

from skyphot.pipeline.result import PhotometryResult
from skyphot.pipeline.state import FrameState, need

_CUTOUT_FWHM = 8.0  # half-size of the target cutouts, in FWHM


@dataclass(frozen=True)
class WriteDiagnostics:
    """Stage that writes the diagnostic figure for a finished measurement."""

    result: PhotometryResult
    path: Path
    name: str = "diagnostics"

    def run(self, state: FrameState) -> FrameState:
        write_diagnostics(state, self.result, self.path)
        return state


def write_diagnostics(state: FrameState, result: PhotometryResult, path: Path) -> None:
    """Render the figure and write it atomically to ``path`` (PNG)."""
    sub = state.subtraction
    fig = plt.figure(figsize=(13, 8.5 if sub is None else 12.5), dpi=90)
    try:
        grid = fig.add_gridspec(2 if sub is None else 3, 3, hspace=0.35, wspace=0.3)
        # With subtraction the top panels show the science frame and its own PSF fit.
        science = state if sub is None else replace(state, target=sub.science_target)
        _cutouts(science, result, fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]))
        _summary(result, fig.add_subplot(grid[0, 2]))
        _calibration_vs_mag(state, fig.add_subplot(grid[1, 0]))
        _calibration_vs_color(state, result, fig.add_subplot(grid[1, 1]))
        _astrometry(state, fig.add_subplot(grid[1, 2]))
        if sub is not None:
            _subtraction_cutouts(state, result, [fig.add_subplot(grid[2, i]) for i in range(3)])
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
        os.close(fd)
        try:
            fig.savefig(tmp, format="png")
            Path(tmp).replace(path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    finally:
        plt.close(fig)


def _cutouts(state: FrameState, result: PhotometryResult, ax_data: Axes, ax_resid: Axes) -> None:
    data_sub = need(state.data_sub, "the background-subtracted image")
    psf = need(state.psf, "the PSF")
    target = need(state.target, "the target measurement")
    ny, nx = data_sub.shape
    half = max(8, int(_CUTOUT_FWHM * target.fwhm))
    size = 2 * half + 1
    x0, y0 = round(target.x) - half, round(target.y) - half
    cut = np.full((size, size), np.nan)
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(nx, x0 + size), min(ny, y0 + size)
    cut[ys - y0 : ye - y0, xs - x0 : xe - x0] = data_sub[ys:ye, xs:xe]
    stamp, sx0, sy0 = psf.render(target.x, target.y, size)
    model = np.zeros((size, size))
    # Place the PSF stamp (its own origin) into the cutout frame.
    ox, oy = sx0 - x0, sy0 - y0
    a0, b0 = max(0, ox), max(0, oy)
    a1, b1 = min(size, ox + stamp.shape[1]), min(size, oy + stamp.shape[0])
    if a1 > a0 and b1 > b0:
        model[b0:b1, a0:a1] = stamp[b0 - oy : b1 - oy, a0 - ox : a1 - ox]
    model *= float(target.psf.flux[0])
    finite = cut[np.isfinite(cut)]
    lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
    extent = (x0 - 0.5, x0 + size - 0.5, y0 - 0.5, y0 + size - 0.5)
    for ax, image, title in (
        (ax_data, cut, "target (background subtracted)"),
        (ax_resid, cut - model, "after subtracting the PSF fit"),
    ):
        ax.imshow(image, origin="lower", cmap="gray", vmin=lo, vmax=hi, extent=extent)
        ax.add_patch(
            Circle((target.x, target.y), target.aperture_radius, fill=False, color="tab:red")
        )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x [px]")
        ax.set_ylabel("y [px]")
    verdict = (
        f"{result.band} = {result.mag:.3f} ± {result.magerr:.3f}"
        if result.mag is not None and result.magerr is not None
        else f"{result.band} > {result.limiting_mag:.2f} ({result.limit_nsigma:g}σ)"
    )
    ax_data.text(
        0.02, 0.98, verdict, transform=ax_data.transAxes, va="top", color="yellow", fontsize=9
    )


def _subtraction_cutouts(state: FrameState, result: PhotometryResult, axes: list[Axes]) -> None:
    """Science, aligned template (science flux scale) and difference around the target."""
    sub = need(state.subtraction, "the subtraction")
    target = need(state.target, "the target measurement")
    x0, y0 = sub.origin
    cx, cy = round(target.x) - x0, round(target.y) - y0
    half = max(8, int(_CUTOUT_FWHM * target.fwhm))
    ny, nx = sub.difference.shape
    ys, ye = max(0, cy - half), min(ny, cy + half + 1)
    xs, xe = max(0, cx - half), min(nx, cx + half + 1)
    extent = (xs + x0 - 0.5, xe + x0 - 0.5, ys + y0 - 0.5, ye + y0 - 0.5)
    science = sub.science[ys:ye, xs:xe]
    lo, hi = np.percentile(science, [1, 99.5])
    diff = sub.difference[ys:ye, xs:xe]
    # +-5 sigma of the predicted noise: residuals and the transient stand out the same way
    dlim = 5.0 * float(np.median(np.sqrt(sub.variance[ys:ye, xs:xe])))
    panels = (
        (axes[0], science, "science", lo, hi),
        (axes[1], sub.template_aligned[ys:ye, xs:xe], f"template ({sub.template.label})", lo, hi),
        (axes[2], diff, "difference (ZOGY), ±5σ", -dlim, dlim),
    )
    for ax, image, title, vmin, vmax in panels:
        ax.imshow(image, origin="lower", cmap="gray", vmin=vmin, vmax=vmax, extent=extent)
        ax.add_patch(
            Circle((target.x, target.y), target.aperture_radius, fill=False, color="tab:red")
        )
        ax.set_title(title[:60], fontsize=9)
        ax.set_xlabel("x [px]")
        ax.set_ylabel("y [px]")
    block = result.subtraction
    if block is not None and block.difference_noise_ratio is not None:
        axes[2].text(0.02, 0.98, f"noise/expected {block.difference_noise_ratio:.2f}",
                     transform=axes[2].transAxes, va="top", color="yellow", fontsize=9)


def _summary(result: PhotometryResult, ax: Axes) -> None:
    ax.axis("off")
    lines = [
        f"MJD {result.mjd:.5f}   filter {result.filter} -> {result.band} ({result.magsys})",
        f"S/N {result.snr:.1f}   detected: {result.detected}",
        f"limit ({result.limit_nsigma:g}σ): {result.limiting_mag:.3f}",
        f"ZP {result.zero_point:.3f} ± {result.zero_point_err:.3f}",
        "colour term: "
        + (
            f"{result.color_term:+.3f} × ({result.color_bands[0]}-{result.color_bands[1]})"
            f" at {result.target_color:.2f} [{result.color_source}]"
            if result.color_term is not None
            and result.color_bands
            and result.target_color is not None
            else "not fitted"
        ),
        f"calibration: {result.n_calib} stars, rms {result.calib_scatter:.3f}, {result.catalog}",
        f'FWHM {result.fwhm_px:.2f} px = {result.fwhm_arcsec:.2f}"',
        f'astrometry: {result.astrometry_method}, rms {result.astrometry_rms_arcsec:.3f}"'
        f" ({result.n_astrometry} stars)",
        f"flags: {', '.join(result.flag_names) or 'none'}",
        f"time: {result.timings.get('total', float('nan')):.2f} s",
    ]
    ax.text(0.0, 1.0, "\n".join(lines), va="top", family="monospace", fontsize=8)


def _calibration_vs_mag(state: FrameState, ax: Axes) -> None:
    stars = need(state.calib_stars, "the calibration stars")
    fit = need(state.zero_point, "the zero point")
    used = fit.used
    ax.errorbar(
        stars.cat_mag[used],
        fit.residuals[used],
        yerr=stars.inst_err[used],
        fmt=".",
        ms=3,
        lw=0.5,
        label="used",
    )
    ax.plot(
        stars.cat_mag[~used], fit.residuals[~used], "x", color="tab:red", ms=4, label="rejected"
    )
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylim(-0.5, 0.5)
    ax.set_xlabel("catalog magnitude")
    ax.set_ylabel("catalog - calibrated [mag]")
    ax.set_title(f"calibration residuals (rms {fit.rms:.3f})", fontsize=9)
    ax.legend(fontsize=7)


def _calibration_vs_color(state: FrameState, result: PhotometryResult, ax: Axes) -> None:
    stars = need(state.calib_stars, "the calibration stars")
    fit = need(state.zero_point, "the zero point")
    if stars.color is None or result.color_bands is None:
        ax.text(0.5, 0.5, "no colour term", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    used = fit.used
    ax.plot(stars.color[used], fit.residuals[used], ".", ms=3)
    ax.plot(stars.color[~used], fit.residuals[~used], "x", color="tab:red", ms=4)
    if result.target_color is not None:
        ax.axvline(result.target_color, color="tab:orange", lw=1, label="target colour")
        ax.legend(fontsize=7)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylim(-0.5, 0.5)
    ax.set_xlabel(f"{result.color_bands[0]} - {result.color_bands[1]}")
    ax.set_ylabel("residual [mag]")
    ax.set_title("residuals vs colour", fontsize=9)


def _astrometry(state: FrameState, ax: Axes) -> None:
    solution = need(state.astrometry, "the astrometric solution")
    if solution.residual_x_arcsec.size == 0:
        ax.text(0.5, 0.5, "header WCS used as is", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    ax.plot(solution.residual_x_arcsec, solution.residual_y_arcsec, ".", ms=3)
    ax.add_patch(Circle((0, 0), solution.rms_arcsec, fill=False, color="tab:red"))
    lim = max(0.5, 3 * solution.rms_arcsec)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("ΔRA cos δ [arcsec]")
    ax.set_ylabel("ΔDec [arcsec]")
    ax.set_title(
        f'astrometric residuals (rms {solution.rms_arcsec:.3f}", {solution.n_matched} stars)',
        fontsize=9,
    )

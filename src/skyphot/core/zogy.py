"""ZOGY image subtraction (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27), from its closed form.

Notation follows the paper with the new (science) image ``N`` in its own units (F_n = 1)
and the reference (template) ``R`` already resampled onto the science grid, whose fluxes are
``flux_ratio`` (F_r) times the science ones. Both are background subtracted. With hats for
Fourier transforms and sigma_n, sigma_r the white background noise of each image:

    den^2   = sigma_n^2 F_r^2 |P_r|^2 + sigma_r^2 |P_n|^2
    D^      = (F_r P_r^ N^ - P_n^ R^) / sqrt(den^2)              (eq. 13)
    F_D     = F_r / sqrt(sigma_n^2 F_r^2 + sigma_r^2)             (eq. 15)
    P_D^    = F_r P_r^ P_n^ / (F_D sqrt(den^2))                   (eq. 14)

D has unit white background noise; ``D / F_D`` is in science flux units, so PSF photometry
on it with ``P_D`` gives the transient's flux on the science frame's scale (negative if it
faded), whatever the template's units. The per-pixel variance including source noise of
both images is propagated through the two linear kernels (paper section 3.3).

Only the background noise of D is white. The source noise of a bright host (or star) in
each image passes through one kernel alone and comes out correlated between pixels: with a
template broader than the frame, the template's kernel amplifies high spatial frequencies,
which raise the per-pixel variance but average out in a PSF fit. A PSF-weighted sum
therefore gets its variance, as S_corr does in the paper (eq. 25-28), from the composite
kernels (each image's kernel followed by the matched filter P_D), squared and convolved
with that image's variance map, and not from the per-pixel variance:

    V_S = V_n (x) (IFT[k_n^ conj(P_D^)])^2 + V_r (x) (IFT[k_r^ conj(P_D^)])^2

``psf_variance = V_S / sum(P_D^2)`` is the per-pixel white variance that gives a PSF fit
the same error; it equals ``variance`` where both are the white background.

A resampled template's noise is not white: interpolation correlates it. With its
autocorrelation given (``ref_noise_acf``, from ``core.noise_correlation``: the covariance
is the variance map times that ACF), sigma_r^2 above becomes sigma_r^2 S_r(k), S_r the
ACF's power spectrum, in den^2 and F_D, so D stays white (S_r floored there at
``_NOISE_SPECTRUM_FLOOR`` of its peak); and the template's kernel k_r becomes
k_r sqrt(S_r) in the propagated variances, with the actual S_r (its noise is white noise
coloured by a filter of power S_r).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft

from skyphot.errors import InputError

# Relative floor on den^2: keeps frequencies where both PSFs vanish from dividing 0 by 0.
_DEN_FLOOR = 1e-14
# Floor of the template's noise power spectrum, relative to its peak: a resampling kernel
# that nearly cancels some frequencies must not make the template look noiseless there.
_NOISE_SPECTRUM_FLOOR = 0.01
_WORKERS = 2


@dataclass(frozen=True)
class ZogyResult:
    """The difference image and what comes with it, all on the input grid.

    difference: D / F_D, science flux units per pixel. variance: its per-pixel variance.
    psf: P_D as a centred odd-sized stamp of unit sum. score: matched-filter S/N image.
    flux_scale: F_D. background_sigma: the white background noise of ``difference``, 1 / F_D.
    psf_variance: the per-pixel variance to give PSF (and other PSF-sized) photometry on
    ``difference``: the white-noise level whose PSF-fit error equals that of the correlated
    noise actually there (``variance`` where nothing correlates it, e.g. other methods).
    """

    difference: np.ndarray
    variance: np.ndarray
    psf: np.ndarray
    score: np.ndarray
    flux_scale: float
    background_sigma: float
    psf_variance: np.ndarray


def _embed(stamp: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A centred odd stamp placed in a zero array of ``shape`` with its centre at [0, 0]."""
    sy, sx = stamp.shape
    if sy % 2 == 0 or sx % 2 == 0:
        raise InputError(f"PSF stamps must have odd sizes, got {stamp.shape}")
    ny, nx = shape
    if sy > ny or sx > nx:
        raise InputError(f"PSF stamp {stamp.shape} is larger than the image {shape}")
    out = np.zeros(shape)
    out[:sy, :sx] = stamp / float(stamp.sum())
    return np.roll(out, (-(sy // 2), -(sx // 2)), axis=(0, 1))


def _centred(kernel: np.ndarray, size: int) -> np.ndarray:
    """The ``size``x``size`` centre of a kernel whose origin is at [0, 0] (wrapped)."""
    half = size // 2
    return np.roll(kernel, (half, half), axis=(0, 1))[:size, :size]


def zogy(
    new: np.ndarray,
    ref: np.ndarray,
    psf_new: np.ndarray,
    psf_ref: np.ndarray,
    *,
    sigma_new: float,
    sigma_ref: float,
    flux_ratio: float,
    var_new: np.ndarray | None = None,
    var_ref: np.ndarray | None = None,
    psf_size: int | None = None,
    ref_noise_acf: np.ndarray | None = None,
    matched_filter: bool = True,
) -> ZogyResult:
    """Subtract ``ref`` from ``new`` with ZOGY; see the module docstring for the maths.

    ``new``, ``ref``: background-subtracted images of equal shape, no NaN (fill masked
    pixels before). ``psf_new``, ``psf_ref``: centred, odd-sized PSF stamps of each image on
    this grid. ``sigma_new``, ``sigma_ref``: white background noise per pixel of each image
    in its own units. ``flux_ratio``: F_r, template counts per science count.
    ``var_new``, ``var_ref``: per-pixel variances (background + source noise) in each image's
    units; default: the white background levels. ``psf_size``: side of the returned P_D stamp.
    ``ref_noise_acf``: centred odd stamp, the template noise's autocorrelation relative to
    ``var_ref`` (``sigma_ref**2``); default: white (a delta of 1). ``matched_filter``:
    False skips the score image and the PSF-fit variance (a third of the cost): ``score``
    is then NaN and ``psf_variance`` is the per-pixel ``variance``.
    """
    if new.shape != ref.shape:
        raise InputError(f"science {new.shape} and template {ref.shape} grids differ")
    if not (math.isfinite(flux_ratio) and flux_ratio > 0):
        raise InputError(f"the template/science flux ratio must be positive, got {flux_ratio}")
    if not (sigma_new > 0 and sigma_ref >= 0):
        raise InputError(
            f"background noise must be positive, got science {sigma_new}, template {sigma_ref}"
        )
    if not (np.all(np.isfinite(new)) and np.all(np.isfinite(ref))):
        raise InputError("the images given to ZOGY contain NaN or infinite pixels; fill them")
    out_shape = new.shape
    # FFTs of sizes with only small prime factors are several times faster: pad (zeros in
    # the images, the white level in the variances) and crop the results.
    shape = (
        sfft.next_fast_len(out_shape[0], real=True),
        sfft.next_fast_len(out_shape[1], real=True),
    )
    if shape != out_shape:
        pads = ((0, shape[0] - out_shape[0]), (0, shape[1] - out_shape[1]))
        new = np.pad(new, pads)
        ref = np.pad(ref, pads)
        if var_new is not None:
            var_new = np.pad(var_new, pads, constant_values=sigma_new**2)
        if var_ref is not None:
            var_ref = np.pad(var_ref, pads, constant_values=sigma_ref**2)
    fr = float(flux_ratio)
    pn = sfft.rfft2(_embed(psf_new, shape), workers=_WORKERS)
    pr = sfft.rfft2(_embed(psf_ref, shape), workers=_WORKERS)
    s_true = _noise_spectrum(ref_noise_acf, shape)
    s_r = s_true if np.ndim(s_true) == 0 else np.maximum(
        s_true, _NOISE_SPECTRUM_FLOOR * float(np.max(s_true))
    )
    den2 = sigma_new**2 * fr**2 * _power(pr) + sigma_ref**2 * s_r * _power(pn)
    den = np.sqrt(den2 + _DEN_FLOOR * float(den2.max()))
    # P_D has unit sum: its spectrum at k = 0 is fr / (F_D den(0)), with |P_n| = |P_r| = 1.
    s_r0 = float(np.asarray(s_r).flat[0])
    f_d = fr / math.sqrt(sigma_new**2 * fr**2 + sigma_ref**2 * s_r0)
    # Kernels applied to each image so that the result is D / F_D (science flux units).
    # Images are transformed in single precision (twice as fast; their noise is far above
    # its round-off), kernels are built in double precision and stored in single.
    inv = 1.0 / (den * f_d)
    kn = _scaled(pr, fr * inv)
    kr = _scaled(pn, inv)
    # The template kernel followed by its noise's colouring filter, for variances only.
    # Beyond a coarse template's own Nyquist frequency its noise power is far below the
    # floor used in den: the variances take the actual spectrum, or they would overstate
    # the noise there.
    kr_noise = kr if ref_noise_acf is None else _scaled(pn, np.sqrt(s_true) * inv)
    pd_hat = _scaled(pr * pn, fr * inv)
    n_hat = sfft.rfft2(new.astype(np.float32), workers=_WORKERS)
    r_hat = sfft.rfft2(ref.astype(np.float32), workers=_WORKERS)
    d_hat = kn * n_hat - kr * r_hat
    diff = sfft.irfft2(d_hat, s=shape, workers=_WORKERS)
    pd_full = sfft.irfft2(pd_hat, s=shape, workers=_WORKERS)
    size = psf_size or max(psf_new.shape[0], psf_ref.shape[0])
    size = min(size | 1, (min(shape) - 1) | 1)
    psf_d = _centred(pd_full, size).astype(np.float64)
    psf_d = psf_d / float(psf_d.sum())

    v_n = np.full(shape, sigma_new**2) if var_new is None else var_new
    v_r = np.full(shape, sigma_ref**2) if var_ref is None else var_ref
    vn_hat = sfft.rfft2(v_n.astype(np.float32), workers=_WORKERS)
    vr_hat = sfft.rfft2(v_r.astype(np.float32), workers=_WORKERS)
    white = 1.0 / f_d**2
    var = _propagate(vn_hat, vr_hat, kn, kr_noise, shape)
    var = np.maximum(var, 0.25 * white)  # round-off floor: never below a quarter of white
    crop = (slice(0, out_shape[0]), slice(0, out_shape[1]))
    if not matched_filter:
        return ZogyResult(
            difference=diff[crop], variance=var[crop], psf=psf_d,
            score=np.full(out_shape, np.nan), flux_scale=f_d, background_sigma=1.0 / f_d,
            psf_variance=var[crop],
        )
    # The matched filter of D with P_D, and its variance from the composite kernels (see the
    # module docstring): the per-pixel variance convolved with P_D^2 would count the
    # correlated high-frequency noise of a host as if it were independent.
    pd_conj = np.conj(pd_hat)
    s_img = sfft.irfft2(d_hat * pd_conj, s=shape, workers=_WORKERS)
    v_s = _propagate(vn_hat, vr_hat, kn * pd_conj, kr_noise * pd_conj, shape)
    # White background: V_S = sum(P_D^2) / F_D^2 exactly; the same floor as above.
    pd_power = float(np.sum(pd_full.astype(np.float64) ** 2))
    v_s = np.maximum(v_s, 0.25 * white * pd_power)
    score = s_img / np.sqrt(v_s)
    return ZogyResult(
        difference=diff[crop],
        variance=var[crop],
        psf=psf_d,
        score=score[crop],
        flux_scale=f_d,
        background_sigma=1.0 / f_d,
        psf_variance=v_s[crop] / pd_power,
    )


def _power(z: np.ndarray) -> np.ndarray:
    """|z|^2 without the square root of ``np.abs``."""
    return np.asarray(z.real**2 + z.imag**2)


def _scaled(z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``z * w`` (complex times real) in single precision, without a complex temporary."""
    out = np.empty(z.shape, dtype=np.complex64)
    np.multiply(z.real, w, out=out.real, casting="same_kind")
    np.multiply(z.imag, w, out=out.imag, casting="same_kind")
    return out


def _noise_spectrum(acf: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | float:
    """The power spectrum (rfft2 layout) of noise with autocorrelation ``acf`` (centred odd
    stamp) on a grid of ``shape``, clipped at 0 (the ACF's truncation); 1.0 (white) for
    None."""
    if acf is None:
        return 1.0
    a = np.asarray(acf, dtype=float)
    sy, sx = a.shape
    if sy % 2 == 0 or sx % 2 == 0:
        raise InputError(f"the noise autocorrelation must have odd sizes, got {a.shape}")
    # An ACF wider than a small tile is cropped to it (centred, odd): the cut correlations
    # are the weakest, and would wrap around the tile otherwise.
    cy = min(sy, (shape[0] - 1) | 1) // 2
    cx = min(sx, (shape[1] - 1) | 1) // 2
    a = a[sy // 2 - cy : sy // 2 + cy + 1, sx // 2 - cx : sx // 2 + cx + 1]
    sy, sx = a.shape
    out = np.zeros(shape)
    out[:sy, :sx] = a
    out = np.roll(out, (-(sy // 2), -(sx // 2)), axis=(0, 1))
    # An even ACF has a real spectrum; the imaginary part is round-off.
    spec = sfft.rfft2(out, workers=_WORKERS).real
    peak = float(spec.max())
    if not peak > 0:
        raise InputError("the noise autocorrelation has no positive power")
    return np.maximum(spec, 0.0)


def _propagate(
    vn_hat: np.ndarray,
    vr_hat: np.ndarray,
    kernel_n: np.ndarray,
    kernel_r: np.ndarray,
    shape: tuple[int, int],
) -> np.ndarray:
    """Variance map of ``k_n * N - k_r * R`` for independent pixel noise of variance maps
    with spectra ``vn_hat``, ``vr_hat``: each map convolved with its kernel squared (the
    kernels given by their spectra; the maps vary slowly over a kernel)."""
    kn2 = sfft.rfft2(sfft.irfft2(kernel_n, s=shape, workers=_WORKERS) ** 2, workers=_WORKERS)
    kr2 = sfft.rfft2(sfft.irfft2(kernel_r, s=shape, workers=_WORKERS) ** 2, workers=_WORKERS)
    return np.asarray(sfft.irfft2(kn2 * vn_hat + kr2 * vr_hat, s=shape, workers=_WORKERS))


def zogy_tiled(
    new: np.ndarray,
    ref: np.ndarray,
    var_new: np.ndarray,
    var_ref: np.ndarray,
    psfs_at: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    *,
    flux_ratio: float,
    tile: int,
    overlap: int,
    focus: tuple[int, int],
    psf_size: int,
    ref_noise_acf: np.ndarray | None = None,
    matched_within: float | None = None,
) -> ZogyResult:
    """ZOGY over sub-images so a spatially varying PSF is followed: each tile (plus
    ``overlap`` px of context on every side) is subtracted with both PSFs at its centre (the
    tile holding ``focus`` uses the PSFs at ``focus``) and the white noise levels of the
    tile, and only its core is kept. ``psfs_at(x, y)`` gives (science, template) stamps at
    pixel (x, y). The returned ``psf`` and ``flux_scale`` are those of the ``focus`` tile.
    ``ref_noise_acf``: the template noise's autocorrelation (see ``zogy``), for all tiles.
    ``matched_within``: the score and the PSF-fit variance are computed only on tiles whose
    core comes within this many px of ``focus`` (photometry needs only the target's
    surroundings); elsewhere ``score`` is NaN and ``psf_variance`` the per-pixel
    ``variance``. None: on every tile.
    """
    ny, nx = new.shape
    diff = np.empty((ny, nx))
    var = np.empty((ny, nx))
    psf_var = np.empty((ny, nx))
    score = np.empty((ny, nx))
    fx, fy = focus
    focus_result: ZogyResult | None = None
    for ty0 in range(0, ny, tile):
        for tx0 in range(0, nx, tile):
            ty1, tx1 = min(ty0 + tile, ny), min(tx0 + tile, nx)
            has_focus = ty0 <= fy < ty1 and tx0 <= fx < tx1
            cx, cy = (fx, fy) if has_focus else ((tx0 + tx1 - 1) // 2, (ty0 + ty1 - 1) // 2)
            ey0, ey1 = max(ty0 - overlap, 0), min(ty1 + overlap, ny)
            ex0, ex1 = max(tx0 - overlap, 0), min(tx1 + overlap, nx)
            box = (slice(ey0, ey1), slice(ex0, ex1))
            # distance from the focus to the tile's core
            gap_x = max(tx0 - fx, 0, fx - (tx1 - 1))
            gap_y = max(ty0 - fy, 0, fy - (ty1 - 1))
            matched = matched_within is None or math.hypot(gap_x, gap_y) <= matched_within
            pn, pr = psfs_at(cx, cy)
            vn, vr = var_new[box], var_ref[box]
            # The white levels of the tile: medians of a sparse sample (the maps are smooth
            # where they matter and a full median costs more than the FFTs).
            res = zogy(
                new[box], ref[box], pn, pr,
                sigma_new=math.sqrt(float(np.median(vn[::4, ::4]))),
                sigma_ref=math.sqrt(float(np.median(vr[::4, ::4]))),
                flux_ratio=flux_ratio, var_new=vn, var_ref=vr, psf_size=psf_size,
                ref_noise_acf=ref_noise_acf, matched_filter=matched,
            )
            core = (slice(ty0 - ey0, ty1 - ey0), slice(tx0 - ex0, tx1 - ex0))
            diff[ty0:ty1, tx0:tx1] = res.difference[core]
            var[ty0:ty1, tx0:tx1] = res.variance[core]
            psf_var[ty0:ty1, tx0:tx1] = res.psf_variance[core]
            score[ty0:ty1, tx0:tx1] = res.score[core]
            if has_focus:
                focus_result = res
    if focus_result is None:
        raise InputError(f"focus pixel {focus} is outside the {nx}x{ny} image")
    return ZogyResult(
        difference=diff, variance=var, psf=focus_result.psf, score=score,
        flux_scale=focus_result.flux_scale, background_sigma=focus_result.background_sigma,
        psf_variance=psf_var,
    )


@dataclass(frozen=True)
class StampPSF:
    """A constant PSF given as a centred odd stamp; satisfies ``core.psf.PSFModel``.

    Rendering at a sub-pixel position shifts the stamp with a Fourier phase ramp, exact for
    a band-limited PSF such as a difference image's P_D.
    """

    stamp: np.ndarray
    fwhm: float

    @classmethod
    def from_stamp(cls, stamp: np.ndarray) -> StampPSF:
        """Normalise ``stamp`` to unit sum; FWHM from the area above half maximum."""
        s = np.asarray(stamp, dtype=float)
        s = s / float(s.sum())
        area = float(np.count_nonzero(s >= 0.5 * s.max()))
        return cls(stamp=s, fwhm=2.0 * math.sqrt(area / math.pi))

    def fwhm_at(self, x: float, y: float) -> float:
        """FWHM in px (the same everywhere)."""
        return self.fwhm

    def render(self, x: float, y: float, size: int) -> tuple[np.ndarray, int, int]:
        """The stamp shifted to (x, y), on a ``size``x``size`` grid around the nearest pixel."""
        stamps, x0, y0 = self.render_many(np.array([float(x)]), np.array([float(y)]), size)
        return stamps[0], int(x0[0]), int(y0[0])

    def render_many(
        self, x: np.ndarray, y: np.ndarray, size: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``render`` for many positions at once: stamps (n, size, size) and corners; one
        batched inverse FFT instead of a Python loop (the flux-ratio stars number ~100)."""
        if size < 1:
            raise InputError(f"PSF stamp size must be at least 1 px, got {size}")
        xs = np.asarray(x, dtype=float)
        ys = np.asarray(y, dtype=float)
        n = self.stamp.shape[0]
        big = max(n, size) | 1
        pad = np.zeros((big, big))
        o = (big - n) // 2
        pad[o : o + n, o : o + n] = self.stamp
        xi, yi = np.rint(xs).astype(np.int64), np.rint(ys).astype(np.int64)
        dx, dy = xs - xi, ys - yi
        ky = sfft.fftfreq(big)[None, :, None]
        kx = sfft.rfftfreq(big)[None, None, :]
        ramp = np.exp(-2j * np.pi * (kx * dx[:, None, None] + ky * dy[:, None, None]))
        spectrum = sfft.rfft2(sfft.ifftshift(pad))
        shifted = sfft.irfft2(spectrum[None] * ramp, s=(big, big), axes=(1, 2))
        shifted = sfft.fftshift(shifted, axes=(1, 2))
        c = big // 2
        h = size // 2
        out = shifted[:, c - h : c - h + size, c - h : c - h + size]
        return np.ascontiguousarray(out), xi - h, yi - h

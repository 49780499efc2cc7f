"""What ``simulate_frame`` returns: the frame, its exact truth, and writing it to disk."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.io.fits import Header
from astropy.table import Table
from astropy.wcs import WCS
from numpy.typing import NDArray

from skyphot.testing.params import SimulationError, SimulationParams
from skyphot.testing.psf import MoffatField

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PhotometricModel:
    """The true photometric response:
    ``m_cat = -2.5 log10(ADU) + ZP(x, y) + C * color + response * (m_cat - response_pivot)**2``.

    ``ZP(x, y) = zero_point - zp_gradient * rho**2``, rho = distance from the frame centre
    divided by the centre-to-corner distance. ``response`` (mag per mag^2; 0: linear) makes
    the recorded counts non-linear in the true flux, like a photographic plate.
    """

    shape: tuple[int, int]
    zero_point: float
    zp_gradient: float
    color_term: float
    response: float = 0.0
    response_pivot: float = 17.0

    def response_offset(self, mag: float | FloatArray) -> FloatArray:
        """Recorded minus linear instrumental magnitude of stars of catalog ``mag``, mag."""
        return np.asarray(self.response * (np.asarray(mag, float) - self.response_pivot) ** 2)

    def zero_point_at(
        self, x: float | FloatArray, y: float | FloatArray, color: float | FloatArray = 0.0
    ) -> FloatArray:
        """ZP(x, y) + C * color, mag, at pixel position(s) (x, y) for colour(s) ``color``."""
        ny, nx = self.shape
        xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
        rho2 = ((np.asarray(x) - xc) ** 2 + (np.asarray(y) - yc) ** 2) / (xc**2 + yc**2)
        return np.asarray(
            self.zero_point - self.zp_gradient * rho2 + self.color_term * np.asarray(color)
        )

    def flux_adu(
        self, mag: FloatArray, color: FloatArray, x: FloatArray, y: FloatArray
    ) -> FloatArray:
        """Total flux (ADU, over the infinite plane) of stars with catalog mag and colour."""
        linear = mag - self.zero_point_at(x, y, color)
        return np.asarray(10.0 ** (-0.4 * (linear + self.response_offset(mag))))


@dataclass(frozen=True)
class Truth:
    """Exact truth about the target (all positions 0-based px, fluxes ADU, magnitudes in the
    catalog system of ``band``)."""

    x: float
    y: float
    ra: float  # deg
    dec: float  # deg
    mag: float  # true catalog-system magnitude in ``band``
    color: float  # bands[0] - bands[1]
    band: str
    flux_adu: float  # total instrumental flux over the infinite plane, ADU
    # ZP(x, y) + C * color - response offset: mag = -2.5 log10(flux_adu) + this
    zero_point_at_target: float
    mjd_mid: float  # mid-exposure, MJD UTC
    fwhm: float  # px, at the target
    background_variance: float  # B, ADU^2 per px: sky_e / gain^2 + (read_noise / gain)^2
    n_eff: float  # 1 / sum(P^2) of the true pixel-integrated PSF at the target, px
    saturated: bool  # a pixel within 1 px of the target is at/above saturation (noiseless)
    photometry: PhotometricModel

    def ideal_flux_error(self) -> float:
        """Sky- and read-noise-limited flux error of an optimal PSF fit, sqrt(B n_eff), ADU."""
        return math.sqrt(self.background_variance * self.n_eff)

    def ideal_mag_error(self) -> float:
        """``ideal_flux_error`` as a magnitude error (1.0857 sigma_F / F)."""
        return 2.5 / math.log(10.0) * self.ideal_flux_error() / self.flux_adu

    def ideal_limit(self, nsigma: float = 5.0) -> float:
        """Magnitude of a source at this position detected at ``nsigma`` by an optimal fit."""
        return self.zero_point_at_target - 2.5 * math.log10(nsigma * self.ideal_flux_error())

    def zero_point_at(self, x: float, y: float, color: float) -> float:
        """ZP(x, y) + C * color, mag, anywhere on the frame."""
        return float(self.photometry.zero_point_at(x, y, color))


@dataclass(frozen=True)
class Defects:
    """Where the simulator put artefacts. Masks are (ny, nx) booleans."""

    cosmic_ray_mask: NDArray[np.bool_]
    saturated_mask: NDArray[np.bool_]  # stored data at/above the saturation level
    bad_column_x: int | None
    bad_column_rows: tuple[int, int] | None  # [start, stop) rows of the bad column
    bad_column_kind: Literal["hot", "dead"] | None


@dataclass(frozen=True)
class SimulatedPaths:
    """Files written by ``SimulatedFrame.write``."""

    image: Path
    catalog: Path


@dataclass(frozen=True)
class SimulatedFrame:
    """A simulated frame and its exact truth. Arrays are read-only (copy to modify).

    ``data``: as stored (float32 or uint16), ADU, with noise, saturation, cosmic rays, bad
    column. ``noiseless``: float64 sky + stars (ADU) before noise, defects and clipping.
    ``sky_adu``: float64 noiseless sky alone. ``header``: the approximate (wrong) WCS plus
    DATE-OBS, EXPTIME, FILTER, GAIN, RDNOISE, SATURATE, INSTRUME, TELESCOP, OBJECT, MJD-OBS.
    ``true_wcs``: TAN(-SIP) including the distortion. ``catalog``: noisy reference catalog
    (no target). ``stars``: all true field stars. ``target``: the target's truth, None when
    ``target_mag`` was None; ``truth`` is the same but raises when there is no target.
    """

    data: np.ndarray
    noiseless: FloatArray
    sky_adu: FloatArray
    header: Header
    true_wcs: WCS
    catalog: Table
    stars: Table
    target: Truth | None
    psf: MoffatField
    photometry: PhotometricModel
    defects: Defects
    params: SimulationParams
    seed: int

    @property
    def truth(self) -> Truth:
        """The target's truth; raises ``SimulationError`` if the frame has no target."""
        if self.target is None:
            raise SimulationError(
                "this simulated frame has no target (target_mag=None); set "
                "SimulationParams.target_mag to get a Truth."
            )
        return self.target

    def zero_point_at(self, x: float, y: float, color: float) -> float:
        """ZP(x, y) + C * color, mag."""
        return float(self.photometry.zero_point_at(x, y, color))

    def write(
        self,
        directory: str | Path,
        *,
        stem: str = "frame",
        compression: Literal[None, "fz", "gz"] = None,
        catalog_format: Literal["ecsv", "csv", "fits", "parquet"] = "ecsv",
        catalog_style: Literal["plain", "vizier"] = "plain",
    ) -> SimulatedPaths:
        """Write the image and the catalog into ``directory`` (created if missing).

        Image: ``<stem>.fits`` (primary HDU), ``<stem>.fits.gz`` (the same, gzipped) or
        ``<stem>.fits.fz`` (empty primary + ``CompImageHDU``: RICE_1 for uint16, lossless
        GZIP_2 without quantisation (quantize_level=0) for float32, so the data are
        bit-identical). uint16 is written as BITPIX=16, BZERO=32768.
        Catalog: ``<stem>_catalog.<ext>``; style "plain" has columns ra, dec, <b>, <b>_err, id;
        "vizier" has RAJ2000, DEJ2000, <b>mag, e_<b>mag, ID.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        image = _write_image(self.data, self.header, out, stem, compression)
        catalog = _write_catalog(
            self.catalog, self.params.bands, out, stem, catalog_format, catalog_style
        )
        return SimulatedPaths(image=image, catalog=catalog)


def _write_image(
    data: np.ndarray, header: Header, out: Path, stem: str, compression: str | None
) -> Path:
    if compression is None:
        path = out / f"{stem}.fits"
        fits.PrimaryHDU(data=data, header=header).writeto(path, overwrite=True)
    elif compression == "gz":
        path = out / f"{stem}.fits.gz"
        fits.PrimaryHDU(data=data, header=header).writeto(path, overwrite=True)
    elif compression == "fz":
        path = out / f"{stem}.fits.fz"
        if data.dtype == np.uint16:
            comp = fits.CompImageHDU(data=data, header=header, compression_type="RICE_1")
        else:
            comp = fits.CompImageHDU(
                data=data, header=header, compression_type="GZIP_2", quantize_level=0.0
            )
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path, overwrite=True)
    else:
        raise SimulationError(
            f"compression={compression!r} is not known; use None, 'fz' or 'gz'."
        )
    return path


_FORMATS = {"ecsv": "ascii.ecsv", "csv": "ascii.csv", "fits": "fits", "parquet": "parquet"}


def _write_catalog(
    catalog: Table, bands: tuple[str, str], out: Path, stem: str, fmt: str, style: str
) -> Path:
    if fmt not in _FORMATS:
        raise SimulationError(
            f"catalog_format={fmt!r} is not known; use one of {sorted(_FORMATS)}."
        )
    if style == "plain":
        table = catalog.copy()
    elif style == "vizier":
        names = {"ra": "RAJ2000", "dec": "DEJ2000", "id": "ID"}
        for b in bands:
            names[b] = f"{b}mag"
            names[f"{b}_err"] = f"e_{b}mag"
        table = catalog.copy()
        table.rename_columns(list(names), list(names.values()))
    else:
        raise SimulationError(f"catalog_style={style!r} is not known; use 'plain' or 'vizier'.")
    path = out / f"{stem}_catalog.{fmt}"
    table.write(path, format=_FORMATS[fmt], overwrite=True)
    return path

"""A stand-in for ``skyphot.pipeline.api.measure`` that tests of the web layer run in real
worker processes: it reads the header and answers from keywords, so the web tests do not
depend on the engine's accuracy (the engine has its own tests; ``tests/jobs`` runs the real
one end to end).

Header keywords: STUBMAG (magnitude; absent -> 18.0; negative -> non-detection),
STUBBUSY (seconds of CPU work, to load the workers), STUBFAIL (raise CalibrationError).
"""

from __future__ import annotations

import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from astropy.io import fits

from skyphot.errors import CalibrationError, StageError
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.result import ApertureMeasurement, PhotometryResult


def tiny_png(path: Path) -> None:
    """A valid 1x1 grey PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


def measure(
    image: str | Path,
    config: MeasureConfig,
    *,
    diagnostics: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> PhotometryResult:
    report = progress or (lambda _stage: None)
    report("reading frame")
    header = fits.getheader(image)
    busy = float(header.get("STUBBUSY", 0.0))
    end = time.perf_counter() + busy
    while time.perf_counter() < end:
        sum(i * i for i in range(2000))
    report("calibration")
    if header.get("STUBFAIL"):
        raise StageError("calibration", CalibrationError(
            "only 2 reference stars matched (5 needed); use a deeper catalog"))
    mjd = config.header.mjd if config.header.mjd is not None else float(header["MJD-OBS"])
    mag = float(header.get("STUBMAG", 18.0))
    note = str(header.get("STUBNOTE", ""))
    detected = mag > 0
    zp = 25.0
    flux = 10 ** (-0.4 * (mag - 23.9)) if detected else 0.5
    fluxerr = flux * 0.02 if detected else 1.0
    if diagnostics is not None:
        tiny_png(Path(diagnostics))
    report("photometry")
    return PhotometryResult(
        mjd=mjd, mjd_source="stub", exptime=float(header.get("EXPTIME", 60.0)),
        filter=config.header.filter or str(header.get("FILTER", "r")), band="r", magsys="AB",
        detected=detected, mag=mag if detected else None, magerr=0.021 if detected else None,
        snr=50.0 if detected else 0.5, flux=flux, fluxerr=fluxerr, limiting_mag=21.5,
        limit_nsigma=config.nsigma, zero_point=zp, zero_point_err=0.01, color_term=0.08,
        color_term_err=0.01, color_bands=("g", "r"), target_color=config.target_color,
        color_source="given" if config.target_color is not None else "calibrators_median",
        n_calib=42, calib_scatter=0.02, calib_intrinsic_scatter=0.0,
        catalog=config.catalog.name or config.catalog.path or "auto", fwhm_px=3.5,
        fwhm_arcsec=2.1, pixel_scale_arcsec=0.6, astrometry_method="refine",
        astrometry_rms_arcsec=0.1, n_astrometry=40, ra=config.target.ra, dec=config.target.dec,
        x=10.0, y=10.0, local_background=100.0,
        aperture=ApertureMeasurement(radius_px=3.5, mag=mag if detected else None,
                                     magerr=0.03 if detected else None, flux=flux,
                                     fluxerr=fluxerr, snr=40.0, aperture_correction=-0.1),
        instrument=header.get("INSTRUME"), telescope=header.get("TELESCOP"), image=str(image),
        flags=4096 if note else 0, flag_names=["SPATIAL_ORDER_LOWERED"] if note else [],
        notes=[note] if note else [], assumptions=[], timings={"total": busy},
        software_version="stub", config=config,
    )

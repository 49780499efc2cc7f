"""The engine on real frames: it measures, or refuses with a clear error — never crashes.

Most of these fields have no overlapping reference catalog here (see the data README), so
a clear refusal naming the problem is the right answer for them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from skyphot.errors import SkyphotError, StageError
from skyphot.pipeline.api import measure
from skyphot.pipeline.config import MeasureConfig

M67 = "m67_tycho2_vt.ecsv"
REFCAT2 = "all_refcat2_ey_uma.ecsv"
APASS = "all_apass_ey_uma.ecsv"

# (frame, target ra, dec, catalog, extra settings, expected: None = measured, else the
#  stage and words the refusal must contain)
CASES: list[tuple[str, float, float, str, dict[str, Any], tuple[str, str] | None]] = [
    # A 1951 plate without exposure time or filter in usable form: both given.
    (
        "M6707HH.fits",
        132.8460,
        11.8140,
        M67,
        {"calibration": {"band": "VT"}, "header": {"mjd": 33000.0, "exptime": 3000}},
        None,
    ),
    (
        "reprojected_sdss_g.fits",
        313.17,
        -5.69,
        REFCAT2,
        {},
        ("catalog", "give a catalog for this field"),
    ),
    (
        "eyuma_feder_thumbnail.fit.gz",
        135.0211,
        49.6087,
        REFCAT2,
        {},
        ("catalog", "RA 135.296..135.807"),
    ),
    (
        "hst_acs_47tuc_j8bt06nyq_flt.fits",
        6.0271,
        -72.0835,
        APASS,
        {"header": {"filter": "V"}},
        ("catalog", "No star of catalog file"),
    ),
    ("sep_ntt_emmi_image.fits", 10.0, 10.0, APASS, {}, ("header", "--pixel-scale")),
    (
        "iraf_devpix_M51_B600s.fits",
        202.47,
        47.19,
        APASS,
        {"astrometry": {"blind": "never"}},
        ("header", "no usable celestial WCS"),
    ),
    (
        "stellarsolver_randomsky_SIMULATED.fits",
        21.643,
        69.2522,
        M67,
        {"calibration": {"band": "VT"}},
        ("catalog", "give a catalog for this field"),
    ),
]


@pytest.mark.parametrize(
    ("frame", "ra", "dec", "catalog", "extra", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_real_frame(
    real_data: Path,
    frame: str,
    ra: float,
    dec: float,
    catalog: str,
    extra: dict[str, Any],
    expected: tuple[str, str] | None,
) -> None:
    config = MeasureConfig.model_validate(
        {"target": {"ra": ra, "dec": dec}, "catalog": {"path": str(real_data / catalog)}, **extra}
    )
    if expected is None:
        result = measure(real_data / frame, config)
        assert math.isfinite(result.limiting_mag)
        assert result.n_calib >= 5
        assert result.mag is None or math.isfinite(result.mag)
        return
    with pytest.raises(StageError) as info:
        measure(real_data / frame, config)
    stage, words = expected
    assert info.value.stage == stage
    assert isinstance(info.value.reason, SkyphotError), "a bug, not a clear refusal"
    assert words in str(info.value)


def test_m67_plate_calibrates_against_tycho2(real_data: Path) -> None:
    """A photographic plate is non-linear: expect a large scatter, flagged, but a sane ZP."""
    config = MeasureConfig.model_validate(
        {
            "target": {"ra": 132.8460, "dec": 11.8140},
            "catalog": {"path": str(real_data / M67)},
            "calibration": {"band": "VT"},
            "header": {"mjd": 33000.0, "exptime": 3000},
        }
    )
    result = measure(real_data / "M6707HH.fits", config)
    assert result.astrometry_rms_arcsec < 2.0
    assert 8.0 < result.limiting_mag < 20.0
    assert "HIGH_CALIB_SCATTER" in result.flag_names

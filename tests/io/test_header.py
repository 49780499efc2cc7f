"""normalise_header, celestial_wcs and target_pixel on synthetic and real headers."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.time import Time

from skyphot.core.wcs_utils import pixel_to_world
from skyphot.errors import ConfigError, HeaderError, TargetOutsideFrameError, WCSError
from skyphot.io.fits import read_frame
from skyphot.io.header import celestial_wcs, normalise_header, target_pixel
from skyphot.pipeline.config import HeaderOverrides

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
NONE = HeaderOverrides()
SECOND = 1.0 / 86400.0


@pytest.fixture(scope="module")
def real() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real data directory {REAL} not present")
    return REAL


_DASHED = {"DATE_OBS", "TIME_OBS", "MJD_OBS", "MJD_AVG", "DATE_AVG", "JD_OBS", "TM_START"}


def _header(**cards: object) -> fits.Header:
    header = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long names become HIERARCH cards, as in real files
        for key, value in cards.items():
            header[key.replace("_", "-") if key in _DASHED else key] = value
    return header


def _mjd(iso: str, scale: str = "utc") -> float:
    """Truth from astropy's own time machinery."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ERFA's "dubious year" before 1960
        return float(Time(iso, format="isot", scale=scale).utc.mjd)


# --- time ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date_obs", "iso"),
    [
        ("2021-03-04T05:06:07", "2021-03-04T05:06:07"),
        ("2021-03-04T05:06:07.25", "2021-03-04T05:06:07.25"),
        ("2021-03-04 05:06:07.5", "2021-03-04T05:06:07.5"),
        ("2021-03-04T05:06:07Z", "2021-03-04T05:06:07"),
        ("2021-03-04T05:06", "2021-03-04T05:06:00"),
    ],
)
def test_date_obs_formats_plus_half_exposure(date_obs: str, iso: str) -> None:
    meta = normalise_header(_header(DATE_OBS=date_obs, EXPTIME=120.0), overrides=NONE)
    assert meta.mjd == pytest.approx(_mjd(iso) + 60 * SECOND, abs=1e-3 * SECOND)
    assert meta.mjd_source == "DATE-OBS + EXPTIME/2 (DATE-OBS taken as exposure start)"
    assert meta.exptime == 120.0


def test_date_only_plus_time_obs() -> None:
    meta = normalise_header(_header(DATE_OBS="2002-04-13", TIME_OBS="20:40:22", EXPTIME=60.0),
                            overrides=NONE)
    assert meta.mjd == pytest.approx(_mjd("2002-04-13T20:40:52"), abs=1e-3 * SECOND)
    assert meta.mjd_source.startswith("DATE-OBS + TIME-OBS + EXPTIME/2")


def test_old_dd_mm_yy_with_ut() -> None:
    # the pre-2000 FITS form: dd/mm/yy means 19yy
    meta = normalise_header(_header(DATE_OBS="05/04/87", UT=" 9:27:27.00", ITIME=600),
                            overrides=NONE)
    assert meta.mjd == pytest.approx(_mjd("1987-04-05T09:32:27"), abs=1e-3 * SECOND)
    assert meta.exptime == 600.0


def test_eso_seconds_since_midnight() -> None:
    meta = normalise_header(_header(DATE_OBS="26/10/92", TM_START=11048.0, EXPTIME=10.0),
                            overrides=NONE)
    assert meta.mjd == pytest.approx(_mjd("1992-10-26T03:04:13"), abs=1e-3 * SECOND)


def test_mjd_obs_float() -> None:
    meta = normalise_header(_header(MJD_OBS=58225.25, EXPTIME=100.0), overrides=NONE)
    assert meta.mjd == pytest.approx(58225.25 + 50 * SECOND, abs=1e-9)
    assert meta.mjd_source == "MJD-OBS + EXPTIME/2 (MJD-OBS taken as exposure start)"


def test_jd() -> None:
    meta = normalise_header(_header(JD=2458225.75, EXPTIME=100.0), overrides=NONE)
    assert meta.mjd == pytest.approx(58225.25 + 50 * SECOND, abs=1e-8)
    assert meta.mjd_source.startswith("JD + EXPTIME/2")


def test_mid_exposure_keywords_win_and_need_no_exptime() -> None:
    header = _header(MJD_AVG=59000.5, DATE_OBS="2020-05-31T11:00:00", EXPTIME=30.0)
    meta = normalise_header(header, overrides=NONE)
    assert meta.mjd == 59000.5 and meta.mjd_source == "MJD-AVG (mid-exposure)"
    meta = normalise_header(_header(DATE_AVG="2020-05-31T12:00:00.5"), overrides=NONE)
    assert meta.mjd == pytest.approx(_mjd("2020-05-31T12:00:00.5"), abs=1e-3 * SECOND)
    assert meta.exptime == 0.0
    assert any(a.startswith("exptime=0 s") for a in meta.assumed)


def test_expstart_expend_mid() -> None:
    meta = normalise_header(_header(EXPSTART=52377.8, EXPEND=52377.9, EXPTIME=60.0),
                            overrides=NONE)
    assert meta.mjd == pytest.approx(52377.85, abs=1e-9)
    assert meta.mjd_source == "(EXPSTART + EXPEND)/2 (mid-exposure)"


def test_tai_header_converted_to_utc() -> None:
    # TAI - UTC = 37 s since 2017
    header = _header(DATE_OBS="2020-01-01T00:00:37", TIMESYS="TAI", EXPTIME=2.0)
    meta = normalise_header(header, overrides=NONE)
    assert meta.mjd == pytest.approx(_mjd("2020-01-01T00:00:01"), abs=1e-3 * SECOND)
    assert "TAI converted to UTC" in meta.mjd_source


def test_date_obs_and_mjd_obs_disagreeing_is_noted() -> None:
    header = _header(DATE_OBS="2020-01-01T00:00:00", MJD_OBS=58849.5, EXPTIME=2.0)
    meta = normalise_header(header, overrides=NONE)
    assert meta.mjd == pytest.approx(58849.0 + SECOND, abs=1e-9)  # DATE-OBS has priority
    assert "time: MJD-OBS differs from DATE-OBS by 12.0 h; used DATE-OBS" in meta.assumed


def test_date_only_falls_back_to_mjd_obs_quietly() -> None:
    meta = normalise_header(_header(DATE_OBS="2020-01-01", MJD_OBS=58849.25, EXPTIME=2.0),
                            overrides=NONE)
    assert meta.mjd == pytest.approx(58849.25 + SECOND, abs=1e-9)
    assert not any(a.startswith("time:") for a in meta.assumed)


def test_unreadable_date_falls_back_with_a_note() -> None:
    meta = normalise_header(_header(DATE_OBS="yesterday", MJD_OBS=58849.25, EXPTIME=2.0),
                            overrides=NONE)
    assert meta.mjd == pytest.approx(58849.25 + SECOND, abs=1e-9)
    assert any("DATE-OBS='yesterday' is not a date" in a for a in meta.assumed)


def test_no_time_at_all() -> None:
    with pytest.raises(HeaderError) as info:
        normalise_header(_header(EXPTIME=10.0, FILTER="V"), overrides=NONE)
    assert str(info.value) == (
        "no observation time in the header (looked for DATE-OBS, MJD-OBS, JD, DATE-AVG, "
        "MJD-AVG, EXPSTART/EXPEND); give it with --mjd"
    )


def test_date_without_time_of_day_and_nothing_else() -> None:
    with pytest.raises(HeaderError) as info:
        normalise_header(_header(DATE_OBS="2000-09-27", EXPTIME=10.0), overrides=NONE)
    message = str(info.value)
    assert "DATE-OBS='2000-09-27' has only a date" in message
    assert message.endswith("give it with --mjd")


def test_bad_time_of_day() -> None:
    with pytest.raises(HeaderError, match=r"UT='25:61:00' is not a time of day"):
        normalise_header(_header(DATE_OBS="2000-09-27", UT="25:61:00", EXPTIME=1.0),
                         overrides=NONE)


def test_implausible_mjd() -> None:
    with pytest.raises(HeaderError, match=r"MJD-OBS=0.0 is not a plausible MJD"):
        normalise_header(_header(MJD_OBS=0.0, EXPTIME=1.0), overrides=NONE)


def test_implausible_jd_and_date_avg_without_time() -> None:
    with pytest.raises(HeaderError, match=r"JD=12345.0 is not a plausible Julian date"):
        normalise_header(_header(JD=12345.0, EXPTIME=1.0), overrides=NONE)
    with pytest.raises(HeaderError, match=r"DATE-AVG='2020-01-01' has no time of day"):
        normalise_header(_header(DATE_AVG="2020-01-01"), overrides=NONE)


def test_unknown_timesys_is_noted() -> None:
    meta = normalise_header(_header(MJD_OBS=59000.0, EXPTIME=2.0, TIMESYS="LOCAL"),
                            overrides=NONE)
    assert meta.mjd == pytest.approx(59000.0 + SECOND, abs=1e-9)
    assert "time: TIMESYS='LOCAL' not understood; header times taken as UTC" in meta.assumed


def test_mjd_override_wins_and_is_mid() -> None:
    meta = normalise_header(_header(DATE_OBS="2020-01-01T00:00:00"),
                            overrides=HeaderOverrides(mjd=60000.125))
    assert meta.mjd == 60000.125
    assert meta.mjd_source == "given with --mjd (mid-exposure)"
    assert "mjd" in meta.overridden


# --- exposure -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["EXPTIME", "EXPOSURE", "ITIME", "EXP_TIME", "TEXP"])
def test_exposure_keywords(key: str) -> None:
    meta = normalise_header(_header(MJD_OBS=59000.0, **{key: 30.0}), overrides=NONE)
    assert meta.exptime == 30.0
    assert meta.mjd == pytest.approx(59000.0 + 15 * SECOND, abs=1e-9)


def test_exposure_as_numeric_string_and_minutes() -> None:
    assert normalise_header(_header(MJD_OBS=59000.0, EXPTIME="53.9"), overrides=NONE).exptime \
        == pytest.approx(53.9)
    header = _header(MJD_OBS=59000.0)
    header["EXPOSURE"] = (50.0, "Exposure time minutes")
    meta = normalise_header(header, overrides=NONE)
    assert meta.exptime == 3000.0
    assert "exptime=3000 s (EXPOSURE read as minutes, as its comment says)" in meta.assumed


def test_exposure_in_milliseconds() -> None:
    header = _header(MJD_OBS=59000.0)
    header["EXPTIME"] = (2500, "exposure [ms]")
    meta = normalise_header(header, overrides=NONE)
    assert meta.exptime == 2.5
    assert "exptime=2.5 s (EXPTIME read as milliseconds, as its comment says)" in meta.assumed


def test_missing_exposure_with_start_time() -> None:
    with pytest.raises(HeaderError) as info:
        normalise_header(_header(DATE_OBS="2020-01-01T00:00:00"), overrides=NONE)
    message = str(info.value)
    assert message.startswith("no exposure time in the header (looked for EXPTIME, EXPOSURE")
    assert message.endswith("give the exposure time with --exptime")


def test_exposure_override() -> None:
    meta = normalise_header(_header(DATE_OBS="2020-01-01T00:00:00", EXPTIME=5.0),
                            overrides=HeaderOverrides(exptime=100.0))
    assert meta.exptime == 100.0 and "exptime" in meta.overridden
    assert meta.mjd == pytest.approx(_mjd("2020-01-01T00:00:50"), abs=1e-3 * SECOND)


@pytest.mark.parametrize(("value", "text"), [(0.0, "EXPTIME=0.0 is not a usable exposure"),
                                             ("n/a", "EXPTIME='n/a' is not a number")])
def test_absurd_exposure(value: object, text: str) -> None:
    with pytest.raises(HeaderError) as info:
        normalise_header(_header(MJD_OBS=59000.0, EXPTIME=value), overrides=NONE)
    assert text in str(info.value) and "--exptime" in str(info.value)


# --- detector -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["GAIN", "EGAIN", "CCDGAIN", "GAINEFF"])
def test_gain_keywords(key: str) -> None:
    meta = normalise_header(_header(MJD_AVG=59000.0, **{key: 2.5}), overrides=NONE)
    assert meta.gain == 2.5
    assert not any(a.startswith("gain") for a in meta.assumed)


@pytest.mark.parametrize("key", ["RDNOISE", "READNOIS", "RON", "READNOISE", "RDNOISE1"])
def test_read_noise_keywords(key: str) -> None:
    assert normalise_header(_header(MJD_AVG=59000.0, **{key: 7.5}), overrides=NONE).read_noise \
        == 7.5


@pytest.mark.parametrize("key", ["SATURATE", "SATLEVEL", "SATURATION", "MAXLIN"])
def test_saturation_keywords(key: str) -> None:
    assert normalise_header(_header(MJD_AVG=59000.0, **{key: 60000}), overrides=NONE)\
        .saturation == 60000.0


def test_missing_detector_values_are_assumed_and_listed() -> None:
    meta = normalise_header(_header(MJD_AVG=59000.0, EXPTIME=1.0), overrides=NONE)
    assert (meta.gain, meta.read_noise, meta.saturation) == (1.0, 0.0, None)
    assert meta.assumed == (
        "gain=1.0 e-/ADU (no GAIN keyword)",
        "read_noise=0.0 e- (no RDNOISE keyword)",
        "saturation unknown (no SATURATE keyword)",
    )
    assert meta.overridden == ()


def test_overrides_win_over_header() -> None:
    header = _header(MJD_AVG=59000.0, EXPTIME=1.0, GAIN=2.0, RDNOISE=5.0, SATURATE=1000.0,
                     FILTER="r", INSTRUME="cam", TELESCOP="scope")
    given = HeaderOverrides(gain=1.5, read_noise=3.0, saturation=900.0, filter="i",
                            instrument="other cam", telescope="other scope")
    meta = normalise_header(header, overrides=given)
    assert (meta.gain, meta.read_noise, meta.saturation, meta.filter) == (1.5, 3.0, 900.0, "i")
    assert (meta.instrument, meta.telescope) == ("other cam", "other scope")
    assert set(meta.overridden) == {"gain", "read_noise", "saturation", "filter",
                                    "instrument", "telescope"}
    assert meta.assumed == ()


@pytest.mark.parametrize(
    ("cards", "text", "option"),
    [
        ({"GAIN": 0.0}, "GAIN=0.0 is not a usable gain (must be > 0)", "--gain"),
        ({"GAIN": -1.2}, "GAIN=-1.2 is not a usable gain", "--gain"),
        ({"EGAIN": "fast"}, "EGAIN='fast' is not a number", "--gain"),
        ({"RDNOISE": -3.0}, "RDNOISE=-3.0 is not a usable read noise (must be >= 0)",
         "--read-noise"),
        ({"SATURATE": 0}, "SATURATE=0 is not a usable saturation level", "--saturation"),
    ],
)
def test_absurd_detector_values(cards: dict[str, object], text: str, option: str) -> None:
    with pytest.raises(HeaderError) as info:
        normalise_header(_header(MJD_AVG=59000.0, **cards), overrides=NONE)
    assert text in str(info.value) and str(info.value).endswith(option)


def test_absurd_value_is_fine_when_overridden() -> None:
    meta = normalise_header(_header(MJD_AVG=59000.0, GAIN=0.0), overrides=HeaderOverrides(gain=2))
    assert meta.gain == 2.0


def test_data_in_electrons_has_unit_gain() -> None:
    header = _header(MJD_AVG=59000.0, EXPTIME=60.0, CCDGAIN=2, BUNIT="ELECTRONS")
    assert normalise_header(header, overrides=NONE).gain == 1.0
    header["BUNIT"] = "electrons/s"
    assert normalise_header(header, overrides=NONE).gain == 60.0


def test_gain_in_adu_per_electron_is_inverted() -> None:
    header = _header(MJD_AVG=59000.0)
    header["GAIN"] = (0.5, "[ADU/e-] inverse gain")
    meta = normalise_header(header, overrides=NONE)
    assert meta.gain == 2.0
    assert any("inverse of GAIN" in a for a in meta.assumed)


def test_per_amplifier_values_ignore_unused_amplifiers() -> None:
    header = _header(MJD_AVG=59000.0, ATODGNA=0.0, ATODGNC=2.216, READNSEA=0.0, READNSEC=4.71)
    meta = normalise_header(header, overrides=NONE)
    assert (meta.gain, meta.read_noise) == (2.216, 4.71)


def test_datamax_only_when_plausible() -> None:
    header = _header(MJD_AVG=59000.0, BITPIX=16, BZERO=32768, DATAMAX=65535)
    meta = normalise_header(header, overrides=NONE)
    assert meta.saturation == 65535.0
    assert "saturation=65535 (DATAMAX taken as the saturation level)" in meta.assumed
    header["DATAMAX"] = 73.0
    meta = normalise_header(header, overrides=NONE)
    assert meta.saturation is None
    assert any(a.startswith("saturation unknown (no SATURATE keyword; DATAMAX=73.0")
               for a in meta.assumed)
    header["BITPIX"] = -32  # float data: DATAMAX says nothing about saturation
    header["DATAMAX"] = 65535.0
    assert normalise_header(header, overrides=NONE).saturation is None


# --- filter and names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cards", "expected"),
    [
        ({"FILTER": "r "}, "r"),
        ({"FILTER1": "F606W", "FILTER2": "CLEAR2S"}, "F606W"),
        ({"FILTER1": "CLEAR1L", "FILTER2": "F814W"}, "F814W"),
        ({"FILTER1": "Open", "FILTER2": "open"}, "Open"),
        ({"FILTNAME": "V"}, "V"),
        ({"FLTRNAME": "g'"}, "g'"),
        ({"INSFLNAM": "B"}, "B"),
        ({"FILTER": ""}, None),
        ({}, None),
    ],
)
def test_filter(cards: dict[str, str], expected: str | None) -> None:
    assert normalise_header(_header(MJD_AVG=59000.0, **cards), overrides=NONE).filter == expected


def test_names() -> None:
    header = _header(MJD_AVG=59000.0, INSTRUME="ACS ", TELESCOP="HST", OBJECT=" M31 ")
    meta = normalise_header(header, overrides=NONE)
    assert (meta.instrument, meta.telescope, meta.object_name) == ("ACS", "HST", "M31")


# --- real headers -------------------------------------------------------------------------


def _meta(real: Path, name: str, **kwargs: object) -> tuple[object, object]:
    frame = read_frame(real / name, **kwargs)  # type: ignore[arg-type]
    return frame, normalise_header(frame.header, overrides=NONE)


def test_real_hst_acs(real: Path) -> None:
    _, meta = _meta(real, "hst_acs_47tuc_j8bt06nyq_flt.fits")
    assert meta.mjd == pytest.approx((52377.86137319 + 52377.86208235) / 2, abs=1e-9)
    assert meta.mjd_source == "(EXPSTART + EXPEND)/2 (mid-exposure)"
    assert (meta.exptime, meta.filter, meta.instrument, meta.telescope) == \
        (60.0, "F606W", "ACS", "HST")
    assert meta.gain == 1.0  # BUNIT ELECTRONS, not CCDGAIN=2
    assert meta.read_noise == pytest.approx(4.71)


def test_real_feder(real: Path) -> None:
    _, meta = _meta(real, "eyuma_feder_thumbnail.fit.gz")
    assert meta.mjd == pytest.approx(_mjd("2018-04-17T03:36:07"), abs=1e-3 * SECOND)
    assert (meta.filter, meta.exptime, meta.instrument) == ("r", 90.0, "AspenCG16")
    assert meta.telescope is None  # blank TELESCOP
    assert not any(a.startswith("time:") for a in meta.assumed)  # MJD-OBS agrees


def test_real_sdss_tai(real: Path) -> None:
    _, meta = _meta(real, "reprojected_sdss_g.fits")
    # DATE-OBS 2000-09-27 + TAIHMS 02:50:45.01 TAI (TAI-UTC = 32 s) + 53.907456/2 s
    expected = _mjd("2000-09-27T02:50:45.01", scale="tai") + 53.907456 / 2 * SECOND
    assert meta.mjd == pytest.approx(expected, abs=1e-3 * SECOND)
    assert (meta.filter, meta.exptime) == ("g", pytest.approx(53.907456))


def test_real_ntt(real: Path) -> None:
    _, meta = _meta(real, "sep_ntt_emmi_image.fits")
    assert meta.mjd == pytest.approx(_mjd("1992-10-26T03:14:08"), abs=1e-3 * SECOND)
    # MIDAS wrote JD-2400000 into MJD-OBS: the 12 h disagreement is reported
    assert any("MJD-OBS differs from DATE-OBS + TM-START by 12.0 h" in a for a in meta.assumed)
    assert meta.saturation == pytest.approx(98528.234375)  # DATAMAX near the 16-bit top


def test_real_m67_plate(real: Path) -> None:
    _, meta = _meta(real, "M6707HH.fits")
    assert meta.mjd == pytest.approx(_mjd("1951-11-29T12:32:00"), abs=1e-3 * SECOND)
    assert meta.exptime == 3000.0 and meta.saturation is None
    assert (meta.telescope, meta.object_name) == ("Palomar 48-inch Schmidt", "M67")


def test_real_m51_iraf(real: Path) -> None:
    _, meta = _meta(real, "iraf_devpix_M51_B600s.fits")
    assert meta.mjd == pytest.approx(_mjd("1987-04-05T09:32:27"), abs=1e-3 * SECOND)


# --- WCS ----------------------------------------------------------------------------------


def _tan(**extra: object) -> fits.Header:
    header = _header(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=150.0, CRVAL2=2.0,
                     CRPIX1=51.0, CRPIX2=41.0, CD1_1=-1e-4, CD1_2=0.0, CD2_1=0.0, CD2_2=1e-4)
    for key, value in extra.items():
        if value is None:
            del header[key]
        else:
            header[key] = value
    return header


def test_tan_wcs_and_target_pixel() -> None:
    header = _tan()
    before = header.tostring()
    wcs = celestial_wcs(header, shape=(80, 100))
    assert header.tostring() == before
    x, y = target_pixel(wcs, 150.0, 2.0, shape=(80, 100))
    assert (x, y) == pytest.approx((50.0, 40.0), abs=1e-8)  # CRPIX is 1-based
    # 3.6 arcsec north = 10 pixels up (0.36 arcsec/px)
    assert target_pixel(wcs, 150.0, 2.001, shape=(80, 100)) == pytest.approx((50.0, 50.0),
                                                                               abs=1e-3)


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"CTYPE1": None, "CTYPE2": None}, "CTYPE1/CTYPE2 are missing or empty"),
        ({"CTYPE1": "", "CTYPE2": ""}, "CTYPE1/CTYPE2 are missing or empty"),
        ({"CRVAL2": None}, "CRVAL2 missing"),
        ({"CD1_1": None, "CD1_2": None, "CD2_1": None, "CD2_2": None},
         "no pixel scale (neither a CD matrix nor CDELT1/CDELT2)"),
        ({"CD1_2": -1e-4, "CD2_2": 1e-4, "CD2_1": 1e-4}, "matrix is singular"),
        ({"CTYPE1": "LINEAR", "CTYPE2": "LINEAR"}, "is not celestial"),
    ],
)
def test_unusable_wcs(change: dict[str, object], text: str) -> None:
    with pytest.raises(WCSError) as info:
        celestial_wcs(_tan(**change), shape=(80, 100))
    assert text in str(info.value)
    assert "plate-solve the frame first" in str(info.value)


@pytest.mark.parametrize(
    ("change", "text"),
    [
        ({"CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ"},
         "the header WCS cannot be interpreted (ERROR 4 in wcs_types()"),
        ({"CUNIT1": "furlong"}, "the header WCS cannot be interpreted"),
        ({"CTYPE1": "RA---SIN", "CTYPE2": "DEC--SIN", "CRPIX1": 1e6},
         "gives no sky position for the frame centre"),
    ],
)
def test_wcs_that_wcslib_refuses(change: dict[str, object], text: str) -> None:
    with pytest.raises(WCSError) as info:
        celestial_wcs(_tan(**change), shape=(80, 100))
    assert text in str(info.value) and "\n" not in str(info.value)


def test_folding_distortion_is_refused_at_the_target() -> None:
    # x' = x - 0.05 x^2 turns back 10 px from CRPIX: beyond, no pixel maps to the target
    header = _tan(CTYPE1="RA---TAN-SIP", CTYPE2="DEC--TAN-SIP", A_ORDER=2, B_ORDER=2,
                  A_2_0=-0.05)
    wcs = celestial_wcs(header, shape=(80, 100))
    ra, dec = wcs.wcs_pix2world([[54.0, 40.0]], 0)[0]  # reachable: u' = 4 <= 5
    x, _ = target_pixel(wcs, ra, dec, shape=(80, 100))
    assert x == pytest.approx(50.0 + (10 - np.sqrt(100 - 80)), abs=1e-3)
    ra, dec = wcs.wcs_pix2world([[62.0, 40.0]], 0)[0]  # u' = 12: beyond the fold
    with pytest.raises(WCSError, match="the WCS does not invert consistently"):
        target_pixel(wcs, ra, dec, shape=(80, 100))


def test_cdelt_and_tpv_accepted() -> None:
    header = _tan(CD1_1=None, CD1_2=None, CD2_1=None, CD2_2=None, CDELT1=-1e-4, CDELT2=1e-4)
    assert target_pixel(celestial_wcs(header, shape=(80, 100)), 150.0, 2.0, shape=(80, 100)) == \
        pytest.approx((50.0, 40.0), abs=1e-8)
    tpv = _tan(CTYPE1="RA---TPV", CTYPE2="DEC--TPV", PV1_1=1.0, PV2_1=1.0, PV1_4=1e-3)
    wcs = celestial_wcs(tpv, shape=(80, 100))
    x, y = target_pixel(wcs, 150.0, 2.0, shape=(80, 100))
    assert (x, y) == pytest.approx((50.0, 40.0), abs=1e-6)
    ra, dec = wcs.all_pix2world([[90.0, 70.0]], 0)[0]
    assert target_pixel(wcs, ra, dec, shape=(80, 100)) == pytest.approx((90.0, 70.0), abs=1e-4)


def test_target_off_the_frame() -> None:
    wcs = celestial_wcs(_tan(), shape=(80, 100))
    with pytest.raises(TargetOutsideFrameError) as info:
        target_pixel(wcs, 150.0, 2.1, shape=(80, 100))  # 1000 px north
    message = str(info.value)
    assert "falls at pixel (x=50.0, y=1040.0), outside the 100x80 frame" in message
    # the pixel edges are inside: -0.5 .. n-0.5
    ra, dec = wcs.all_pix2world([[99.4, -0.4]], 0)[0]
    assert target_pixel(wcs, ra, dec, shape=(80, 100)) == pytest.approx((99.4, -0.4), abs=1e-6)
    ra, dec = wcs.all_pix2world([[99.6, 10.0]], 0)[0]
    with pytest.raises(TargetOutsideFrameError):
        target_pixel(wcs, ra, dec, shape=(80, 100))


def test_target_behind_the_projection() -> None:
    wcs = celestial_wcs(_tan(), shape=(80, 100))
    with pytest.raises(TargetOutsideFrameError, match="behind the projection"):
        target_pixel(wcs, 330.0, -2.0, shape=(80, 100))


def test_invalid_target_coordinates() -> None:
    wcs = celestial_wcs(_tan(), shape=(80, 100))
    with pytest.raises(ConfigError, match="not a valid sky position"):
        target_pixel(wcs, 150.0, 95.0, shape=(80, 100))


def test_real_feder_sip(real: Path) -> None:
    frame = read_frame(real / "eyuma_feder_thumbnail.fit.gz")
    wcs = celestial_wcs(frame.header, shape=frame.shape)
    assert wcs.sip is not None
    # the header is FK5 J2000; targets are ICRS (they differ by ~20 mas, 0.03 px here)
    ras, decs = pixel_to_world(wcs, np.array([10.0]), np.array([250.0]))
    ra, dec = float(ras[0]), float(decs[0])
    assert target_pixel(wcs, ra, dec, shape=frame.shape) == pytest.approx((10.0, 250.0),
                                                                          abs=1e-3)
    # far away: the SIP solve would diverge; the answer is still a clean refusal
    with pytest.raises(TargetOutsideFrameError):
        target_pixel(wcs, ra + 20.0, dec, shape=frame.shape)


def test_real_m67_dss_plate_solution(real: Path) -> None:
    frame = read_frame(real / "M6707HH.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy's FITSFixedWarning noise stays silent
        wcs = celestial_wcs(frame.header, shape=frame.shape)
    x, y = target_pixel(wcs, 132.825, 11.8, shape=frame.shape)  # the cluster centre
    assert 0 < x < frame.shape[1] and 0 < y < frame.shape[0]
    scale = np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600
    assert scale == pytest.approx(1.70, abs=0.02)


def test_real_hst_sci_wcs(real: Path) -> None:
    frame = read_frame(real / "hst_acs_47tuc_j8bt06nyq_flt.fits")
    wcs = celestial_wcs(frame.header, shape=frame.shape)
    scale = np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix))) * 3600
    assert scale == pytest.approx(0.025, abs=0.003)  # ACS/HRC pixels


@pytest.mark.parametrize("name", ["sep_ntt_emmi_image.fits", "iraf_devpix_M51_B600s.fits"])
def test_real_frames_without_wcs(real: Path, name: str) -> None:
    frame = read_frame(real / name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(WCSError) as info:
            celestial_wcs(frame.header, shape=frame.shape)
    assert str(info.value).startswith(
        "no usable celestial WCS in the header: CTYPE1/CTYPE2 are missing or empty; "
        "plate-solve the frame first"
    )

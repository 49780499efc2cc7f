"""Local catalog files: formats, column recognition, cleaning, cone search and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from skyphot.catalogs.columns import recognise_columns
from skyphot.catalogs.local import LocalCatalog, load_catalog_file, read_table
from skyphot.errors import CatalogError

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


def _real(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"real data {path} not available")
    return path


def _sim_table(n: int = 50, seed: int = 1) -> Table:
    rng = np.random.default_rng(seed)
    return Table(
        {
            "ra": 150.0 + rng.uniform(-0.2, 0.2, n),
            "dec": 2.0 + rng.uniform(-0.2, 0.2, n),
            "r": rng.uniform(12, 19, n),
            "r_err": rng.uniform(0.01, 0.1, n),
        }
    )


# --- real files -----------------------------------------------------------------------------


def test_refcat2_real_file_bands_and_values() -> None:
    path = _real("all_refcat2_ey_uma.ecsv")
    raw = Table.read(path)
    cat = load_catalog_file(path)
    assert len(cat) == len(raw) == 187
    assert set(cat.bands) == {"g", "r", "i", "z", "G", "BP", "RP", "J", "H", "K"}
    assert cat.name == "all_refcat2_ey_uma.ecsv"
    np.testing.assert_allclose(cat.table["ra"], raw["RA_ICRS"])
    np.testing.assert_allclose(cat.table["dec"], raw["DE_ICRS"])
    # the case of the band letter matters: Gmag is Gaia G, gmag is SDSS g
    np.testing.assert_allclose(cat.table["G"], raw["Gmag"], rtol=1e-6)
    np.testing.assert_allclose(cat.table["g"], raw["gmag"], rtol=1e-6)
    np.testing.assert_allclose(cat.table["r_err"], raw["e_rmag"], rtol=1e-6)
    # masked 2MASS K magnitudes become NaN, and so do their errors
    k_masked = np.ma.getmaskarray(raw["Kmag"])
    assert k_masked.any()
    assert np.all(np.isnan(cat.table["K"][k_masked]))
    assert np.all(np.isnan(cat.table["K_err"][k_masked]))
    assert np.all(np.isfinite(cat.table["K"][~k_masked]))
    for col in cat.table.colnames:
        assert cat.table[col].dtype == np.float64


def test_apass_real_file_masked_and_zero_errors() -> None:
    path = _real("all_apass_ey_uma.ecsv")
    raw = Table.read(path)
    cat = load_catalog_file(path, magsys="Vega")
    assert set(cat.bands) == {"g", "r", "i", "B", "V"}
    assert cat.magsys == "Vega"
    v_masked = np.ma.getmaskarray(raw["Vmag"])
    assert np.isnan(cat.table["V"][v_masked]).all()
    # APASS writes e_Vmag = 0.000 when the error is unknown: that is "no error", not zero
    zero = np.ma.filled(raw["e_Vmag"], 1.0) == 0
    assert zero.sum() > 0
    assert np.isnan(cat.table["V_err"][zero]).all()
    ok = ~v_masked & ~zero
    np.testing.assert_allclose(cat.table["V_err"][ok], raw["e_Vmag"][ok], rtol=1e-6)
    # APASS's primed Sloan names g'mag, r'mag, i'mag
    np.testing.assert_allclose(
        cat.table["r"], np.ma.filled(raw["r'mag"].astype(float), np.nan), rtol=1e-6
    )


def test_tycho2_real_file_and_cone() -> None:
    path = _real("m67_tycho2_vt.ecsv")
    provider = LocalCatalog(path)
    assert provider.bands == ("VT",)
    assert len(provider.catalog) == 157
    assert np.isnan(provider.catalog.table["VT_err"]).all()  # the file has no errors
    center = SkyCoord(132.825 * u.deg, 11.8 * u.deg)
    result = provider.query(center, 0.3, ["VT"])
    raw = Table.read(path)
    sep = SkyCoord(raw["ra"], raw["dec"], unit="deg").separation(center).deg
    assert len(result) == int(np.sum(sep <= 0.3)) > 0
    assert result.bands == ("VT",)
    assert result.table.colnames == ["ra", "dec", "VT", "VT_err"]


def test_banzai_matched_fits_catalog_ignores_pixel_columns() -> None:
    # a real FITS source table with pixel columns x and y beside ra/dec and griz
    path = _real("cpt1m012-fa06-20200113-0102-matched-cat.fits")
    cat = load_catalog_file(path)
    assert cat.bands == ("g", "r", "i", "z")  # "y" is a pixel coordinate, not PS1 y
    raw = Table.read(path)
    np.testing.assert_allclose(cat.table["i_err"], raw["imagerr"])


# --- formats -------------------------------------------------------------------------------


def test_csv_with_blanks_and_sentinels(tmp_path: Path) -> None:
    path = tmp_path / "stars.csv"
    path.write_text(
        "# made by hand\n"
        "RA_deg,DEC_deg,rmag,e_rmag,Vmag\n"
        "150.0,2.0,15.5,0.02,16.0\n"
        "150.1,2.1,,,99.99\n"
        "150.2,2.2,99,9.999,-99\n"
        "150.3,2.3,14.0,0.01,NA\n"
    )
    cat = load_catalog_file(path)
    assert cat.bands == ("r", "V")
    np.testing.assert_array_equal(np.isnan(cat.table["r"]), [False, True, True, False])
    np.testing.assert_array_equal(np.isnan(cat.table["r_err"]), [False, True, True, False])
    np.testing.assert_array_equal(np.isnan(cat.table["V"]), [False, True, True, True])
    assert cat.table["r"][3] == 14.0


@pytest.mark.parametrize(
    ("text", "suffix"),
    [
        ("ra dec r r_err\n150.0 2.0 15.0 0.02\n150.1 2.1 16.0 0.03\n", ".txt"),
        ("ra\tdec\tr\tr_err\n150.0\t2.0\t15.0\t0.02\n150.1\t2.1\t16.0\t0.03\n", ".tsv"),
        ("# ra dec r r_err\n150.0 2.0 15.0 0.02\n150.1 2.1 16.0 0.03\n", ".dat"),
        ("ra;dec;r;r_err\n150.0;2.0;15.0;0.02\n150.1;2.1;16.0;0.03\n", ".csv"),
        ("ra,dec,r,r_err\n150.0,2.0,15.0,0.02\n150.1,2.1,16.0,0.03\n", ".unknownext"),
    ],
)
def test_text_variants(tmp_path: Path, text: str, suffix: str) -> None:
    path = tmp_path / f"cat{suffix}"
    path.write_text(text)
    cat = load_catalog_file(path)
    np.testing.assert_allclose(cat.table["ra"], [150.0, 150.1])
    np.testing.assert_allclose(cat.table["r"], [15.0, 16.0])
    np.testing.assert_allclose(cat.table["r_err"], [0.02, 0.03])


def test_fits_parquet_ecsv_votable_round_trip(tmp_path: Path) -> None:
    table = _sim_table()
    table["r"][3] = np.nan
    paths = {
        "fits": tmp_path / "c.fits",
        "ecsv": tmp_path / "c.ecsv",
        "votable": tmp_path / "c.xml",
    }
    for fmt, path in paths.items():
        table.write(path, format=fmt)
    pq.write_table(pa.table({c: np.asarray(table[c]) for c in table.colnames}),
                   tmp_path / "c.parquet")
    paths["parquet"] = tmp_path / "c.parquet"
    for path in paths.values():
        cat = load_catalog_file(path)
        assert cat.bands == ("r",)
        np.testing.assert_allclose(cat.table["ra"], table["ra"])
        np.testing.assert_allclose(cat.table["r"], table["r"], equal_nan=True)
        np.testing.assert_allclose(cat.table["r_err"][[0, 1, 2]], table["r_err"][[0, 1, 2]])
        assert np.isnan(cat.table["r_err"][3])  # no error without a magnitude


def test_format_detected_by_content_when_extension_lies(tmp_path: Path) -> None:
    table = _sim_table(10)
    fits_path = tmp_path / "real_fits.csv"
    table.write(tmp_path / "tmp.fits")
    fits_path.write_bytes((tmp_path / "tmp.fits").read_bytes())
    assert len(load_catalog_file(fits_path)) == 10
    parquet_path = tmp_path / "noext"
    pq.write_table(pa.table({c: np.asarray(table[c]) for c in table.colnames}), parquet_path)
    assert len(load_catalog_file(parquet_path)) == 10
    csv_as_ecsv = tmp_path / "plain.ecsv"  # not ECSV at all: read as CSV from its content
    csv_as_ecsv.write_text("ra,dec,V\n1.0,2.0,12.5\n")
    np.testing.assert_allclose(load_catalog_file(csv_as_ecsv).table["V"], [12.5])


def test_parquet_nulls_become_nan(tmp_path: Path) -> None:
    path = tmp_path / "n.parquet"
    pq.write_table(
        pa.table({"raMean": [10.0, 10.1, 10.2], "decMean": [-5.0, -5.1, -5.2],
                  "gMeanPSFMag": pa.array([15.0, None, -999.0]),
                  "gMeanPSFMagErr": pa.array([0.01, None, -999.0]),
                  "gMeanKronMag": [14.9, 15.0, 15.1], "objName": ["a", None, "c"]}),
        path,
    )
    cat = load_catalog_file(path)
    assert cat.bands == ("g",)
    np.testing.assert_allclose(cat.table["g"], [15.0, np.nan, np.nan], equal_nan=True)
    np.testing.assert_allclose(cat.table["g_err"], [0.01, np.nan, np.nan], equal_nan=True)


def test_fits_with_masked_values(tmp_path: Path) -> None:
    table = Table()
    table["RAJ2000"] = [1.0, 2.0, 3.0]
    table["DEJ2000"] = [0.0, 0.5, 1.0]
    table["Bmag"] = MaskedColumn([12.0, 13.0, 14.0], mask=[False, True, False])
    path = tmp_path / "m.fits"
    table.write(path)
    cat = load_catalog_file(path)
    np.testing.assert_allclose(cat.table["B"], [12.0, np.nan, 14.0], equal_nan=True)


# --- VizieR-style and sexagesimal -------------------------------------------------------------


def test_vizier_style_sexagesimal_columns(tmp_path: Path) -> None:
    ra_text = ["08 51 12.345", "08:52:00.0", "8h53m01.5s"]
    dec_text = ["+11 48 00.12", "-00:30:15.5", "+11d50m00s"]
    table = Table({"RAJ2000": ra_text, "DEJ2000": dec_text, "Vmag": [12.1, 13.2, 14.3],
                   "e_Vmag": [0.02, 0.03, 0.04], "B-V": [0.5, 0.6, 0.7]})
    path = tmp_path / "viz.ecsv"
    table.write(path)
    cat = load_catalog_file(path)
    expected_ra = Angle(["08h51m12.345s", "08h52m00.0s", "08h53m01.5s"]).deg
    expected_dec = Angle(["11d48m00.12s", "-0d30m15.5s", "11d50m00s"]).deg
    np.testing.assert_allclose(cat.table["ra"], expected_ra, atol=1e-9)
    np.testing.assert_allclose(cat.table["dec"], expected_dec, atol=1e-9)
    assert cat.bands == ("V",)


def test_vizier_computed_columns_and_numeric_hours(tmp_path: Path) -> None:
    table = Table({"_RAJ2000": [10.0], "_DEJ2000": [20.0], "Rmag": [15.0]})
    assert recognise_columns(table).ra == "_RAJ2000"
    hours = Table({"RA": [1.0, 2.0], "DEC": [3.0, 4.0], "V": [10.0, 11.0]})
    hours["RA"].unit = u.hourangle
    path = tmp_path / "hours.ecsv"
    hours.write(path)
    np.testing.assert_allclose(load_catalog_file(path).table["ra"], [15.0, 30.0])


def test_rows_without_position_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("ra,dec,r\n10.0,5.0,15.0\n,5.1,15.1\nabc,5.2,15.2\n10.3,95.0,15.3\n")
    cat = load_catalog_file(path)
    np.testing.assert_allclose(cat.table["r"], [15.0])


# --- column recognition -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mag", "err"),
    [("rmag", "e_rmag"), ("r", "r_err"), ("r", "rerr"), ("r", "err_r"), ("r", "e_r"),
     ("rMeanPSFMag", "rMeanPSFMagErr"), ("r_mag", "r_mag_err"), ("r", "dr"),
     ("RMAG", "E_RMAG"), ("mag_r", "err_mag_r"), ("r'mag", "e_r'mag")],
)
def test_error_column_names(mag: str, err: str) -> None:
    table = Table({"ra": [1.0], "dec": [2.0], mag: [15.0], err: [0.05]})
    colmap = recognise_columns(table)
    band = "R" if mag.startswith("R") else "r"
    assert colmap.mags == {band: mag}
    assert colmap.errs == {band: err}


@pytest.mark.parametrize(
    ("ra", "dec"),
    [("RAJ2000", "DEJ2000"), ("RA_ICRS", "DE_ICRS"), ("RA_deg", "DEC_deg"),
     ("RAdeg", "DEdeg"), ("_RAJ2000", "_DEJ2000"), ("ALPHA_J2000", "DELTA_J2000"),
     ("raMean", "decMean"), ("Ra", "Dec")],
)
def test_coordinate_names(ra: str, dec: str) -> None:
    colmap = recognise_columns(Table({"id": [1], ra: [1.0], dec: [2.0]}))
    assert (colmap.ra, colmap.dec) == (ra, dec)


def test_case_of_band_letter_matters() -> None:
    table = Table({"ra": [1.0], "dec": [2.0], "r": [15.0], "R": [14.6], "i": [14.8],
                   "I": [14.2], "Vmag": [15.3], "phot_bp_mean_mag": [15.6]})
    colmap = recognise_columns(table)
    assert colmap.mags == {"r": "r", "i": "i", "V": "Vmag", "R": "R", "I": "I",
                           "BP": "phot_bp_mean_mag"}


def test_gaia_error_from_flux_over_error(tmp_path: Path) -> None:
    table = Table({"ra": [1.0, 1.01], "dec": [2.0, 2.01], "phot_g_mean_mag": [15.0, 16.0],
                   "phot_g_mean_flux_over_error": [1000.0, 100.0]})
    path = tmp_path / "gaia.ecsv"
    table.write(path)
    cat = load_catalog_file(path)
    np.testing.assert_allclose(cat.table["G_err"], 2.5 / np.log(10) / np.array([1e3, 1e2]))


def test_explicit_mapping_overrides_recognition(tmp_path: Path) -> None:
    table = Table({"x_ra": [10.0, 10.1], "x_dec": [1.0, 1.1], "Rmag": [15.0, 16.0],
                   "e_Rmag": [0.01, 0.02], "mystery": [0.03, 0.04]})
    path = tmp_path / "m.ecsv"
    table.write(path)
    cat = load_catalog_file(path, columns={"ra": "X_RA", "dec": "x_dec", "r": "Rmag",
                                           "r_err": "mystery"}, name="mine")
    assert cat.name == "mine"
    assert cat.bands == ("r",)  # Rmag was claimed as r, so it is not also read as R
    np.testing.assert_allclose(cat.table["r_err"], [0.03, 0.04])
    # a mapped band without a mapped error takes the error named after its column
    cat2 = load_catalog_file(path, columns={"ra": "x_ra", "dec": "x_dec", "r": "Rmag"})
    np.testing.assert_allclose(cat2.table["r_err"], [0.01, 0.02])


# --- error paths ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"nope\.ecsv does not exist. Check the path"):
        load_catalog_file(tmp_path / "nope.ecsv")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="is not a file"):
        load_catalog_file(tmp_path)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.fits"
    path.write_bytes(b"SIMPLE  = this is no FITS file\x00\x01\x02" * 10)
    with pytest.raises(CatalogError, match=r"Cannot read catalog file .*junk\.fits.*Supported"):
        load_catalog_file(path)


def test_fits_without_table(tmp_path: Path) -> None:
    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((4, 4))).writeto(path)
    with pytest.raises(CatalogError, match="no table extension"):
        read_table(path)


def test_no_coordinates_lists_columns_and_mapping(tmp_path: Path) -> None:
    path = tmp_path / "nocoord.csv"
    path.write_text("x_pos,y_pos,rmag\n1,2,15\n")
    with pytest.raises(CatalogError) as info:
        load_catalog_file(path)
    message = str(info.value)
    assert "nocoord.csv has no recognisable RA and Dec column" in message
    assert "x_pos, y_pos, rmag" in message
    assert "columns={'ra': '<RA column>', 'dec': '<Dec column>'}" in message


def test_mapping_to_absent_column(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("ra,dec,rmag\n1,2,15\n")
    with pytest.raises(CatalogError, match=r"'r' -> 'rPSF'.*Columns in the file: ra, dec, rmag"):
        load_catalog_file(path, columns={"r": "rPSF"})


def test_band_absent_lists_bands(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("ra,dec,Vmag,Bmag\n1,2,15,16\n")
    with pytest.raises(CatalogError, match=r"has no r magnitudes \(bands found: B, V\)"):
        load_catalog_file(path, bands=["r"])
    provider = LocalCatalog(path)
    with pytest.raises(CatalogError, match=r"c\.csv has no R magnitudes.*case-sensitive"):
        provider.query(SkyCoord(1 * u.deg, 2 * u.deg), 0.1, ["R"])


def test_zero_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.ecsv"
    Table({"ra": np.zeros(0), "dec": np.zeros(0), "r": np.zeros(0)}).write(path)
    with pytest.raises(CatalogError, match=r"empty\.ecsv has no rows"):
        load_catalog_file(path)


def test_cone_without_stars_names_coverage(tmp_path: Path) -> None:
    path = tmp_path / "field.ecsv"
    _sim_table().write(path)
    provider = LocalCatalog(path)
    with pytest.raises(CatalogError, match=r"No star of catalog file .*field\.ecsv.*covers RA"):
        provider.query(SkyCoord(10 * u.deg, 10 * u.deg), 0.2, ["r"])


def test_cone_search_matches_skycoord(tmp_path: Path) -> None:
    table = _sim_table(400, seed=3)
    path = tmp_path / "cone.ecsv"
    table.write(path)
    center = SkyCoord(150.05 * u.deg, 2.03 * u.deg)
    result = LocalCatalog(path).query(center, 0.1, ["r"])
    sep = SkyCoord(table["ra"], table["dec"], unit="deg").separation(center).deg
    assert len(result) == int(np.sum(sep <= 0.1))
    assert sorted(np.asarray(result.table["r"])) == sorted(np.asarray(table["r"][sep <= 0.1]))

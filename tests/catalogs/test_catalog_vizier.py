"""Online providers against a local stand-in for VizieR (no network)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from fake_vizier_server import FakeVizier, empty_votable, votable_document

from skyphot.catalogs.vizier import (
    APASSProvider,
    GaiaSynthProvider,
    PS1Provider,
    RefCat2Provider,
    SDSSProvider,
    ServiceUnavailableError,
    SkyMapperProvider,
    TwoMassProvider,
    VizierProvider,
)
from skyphot.errors import CatalogError, CatalogServiceError

CENTER = SkyCoord(150.0 * u.deg, 2.0 * u.deg)

PS1_FIELDS = [("RAJ2000", "double", "deg"), ("DEJ2000", "double", "deg"),
              ("gmag", "float", "mag"), ("e_gmag", "float", "mag"),
              ("rmag", "float", "mag"), ("e_rmag", "float", "mag"),
              ("imag", "float", "mag"), ("e_imag", "float", "mag"),
              ("iKmag", "float", "mag"), ("Qual", "short", "")]
PS1_ROWS = [
    [150.00, 2.00, 16.10, 0.011, 15.50, 0.012, 15.20, 0.013, 15.19, 52],  # star
    [150.01, 2.01, 17.00, 0.020, 16.50, None, 16.00, 0.02, 15.50, 52],    # galaxy: PSF-Kron .5
    [150.02, 2.00, 18.00, None, None, None, 17.20, 0.03, 17.19, 52],      # no r, no g error
    [150.00, 2.03, -999.0, -999.0, 14.00, 0.010, 13.80, 0.01, None, 52],  # sentinel g, no Kron
]


def _provider(cls: type[VizierProvider], url: str, **kwargs: float) -> VizierProvider:
    options: dict[str, float] = {"timeout": 2.0, "retries": 3, "backoff": 0.01}
    options.update(kwargs)
    return cls(server=url, **options)  # type: ignore[arg-type]


def test_ps1_answer_is_parsed_and_normalised(fake_vizier: FakeVizier) -> None:
    fake_vizier.body = votable_document("II/349/ps1", PS1_FIELDS, PS1_ROWS)
    provider = _provider(PS1Provider, fake_vizier.url)
    result = provider.query(CENTER, 0.1, ["g", "r"])
    assert fake_vizier.count == 1
    raw = fake_vizier.requests[0]["__raw__"][0]
    assert "-source=II/349/ps1" in raw
    assert "-c.rd=0.1" in raw
    assert "RAJ2000" in raw and "e_rmag" in raw and "iKmag" in raw
    assert result.name == "ps1"
    assert result.bands == ("g", "r")
    assert result.magsys == "AB"
    table = result.table
    assert table.colnames == ["ra", "dec", "g", "g_err", "r", "r_err"]
    # the extended object (i PSF - Kron = 0.5) is gone; the others stay
    np.testing.assert_allclose(table["ra"], [150.00, 150.02, 150.00])
    np.testing.assert_allclose(table["g"], [16.10, 18.00, np.nan], rtol=1e-6, equal_nan=True)
    # a missing error takes the catalog floor (0.02 mag); no magnitude means no error
    np.testing.assert_allclose(table["g_err"], [0.011, 0.02, np.nan], rtol=1e-6,
                               equal_nan=True)
    np.testing.assert_allclose(table["r"], [15.50, np.nan, 14.00], rtol=1e-6, equal_nan=True)
    assert table.meta["truncated"] is False


def test_rows_outside_the_cone_are_dropped(fake_vizier: FakeVizier) -> None:
    fake_vizier.body = votable_document("II/349/ps1", PS1_FIELDS, PS1_ROWS)
    result = _provider(PS1Provider, fake_vizier.url).query(CENTER, 0.025, [])
    assert result.bands == ("g", "r", "i", "z", "y")
    np.testing.assert_allclose(result.table["ra"], [150.00, 150.02])


def test_empty_answer_gives_empty_catalog(fake_vizier: FakeVizier) -> None:
    fake_vizier.body = empty_votable("II/349/ps1")
    result = _provider(PS1Provider, fake_vizier.url).query(CENTER, 0.1, ["r"])
    assert len(result) == 0
    assert result.table.colnames == ["ra", "dec", "r", "r_err"]
    assert fake_vizier.count == 1


def test_server_down_fails_quickly_after_retries(closed_port_url: str) -> None:
    provider = _provider(PS1Provider, closed_port_url)
    start = time.perf_counter()
    with pytest.raises(ServiceUnavailableError) as info:
        provider.query(CENTER, 0.1, ["r"])
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert message.startswith("VizieR (Pan-STARRS1 DR1) did not answer after 3 attempts: "
                              "cannot connect to http://127.0.0.1:")
    assert "run `skyphot catalog prefetch` when online or give --catalog FILE" in message
    assert isinstance(info.value, CatalogServiceError)
    assert elapsed < 3.0


def test_http_500_is_retried_then_reported(fake_vizier: FakeVizier) -> None:
    fake_vizier.status = 500
    fake_vizier.body = b"Internal Server Error"
    fake_vizier.content_type = "text/plain"
    with pytest.raises(ServiceUnavailableError, match=r"after 3 attempts: HTTP 500 from"):
        _provider(PS1Provider, fake_vizier.url).query(CENTER, 0.1, ["r"])
    assert fake_vizier.count == 3


def test_backoff_grows_exponentially(fake_vizier: FakeVizier) -> None:
    fake_vizier.status = 503
    provider = _provider(PS1Provider, fake_vizier.url, backoff=0.1, retries=3)
    start = time.perf_counter()
    with pytest.raises(ServiceUnavailableError):
        provider.query(CENTER, 0.1, ["r"])
    # pauses of 0.1 s then 0.2 s between the three attempts
    assert 0.3 <= time.perf_counter() - start < 2.0
    assert fake_vizier.count == 3


def test_http_404_is_not_retried(fake_vizier: FakeVizier) -> None:
    fake_vizier.status = 404
    with pytest.raises(ServiceUnavailableError, match=r"refused the query: HTTP 404"):
        _provider(PS1Provider, fake_vizier.url).query(CENTER, 0.1, ["r"])
    assert fake_vizier.count == 1


def test_answer_that_is_not_a_votable(fake_vizier: FakeVizier) -> None:
    fake_vizier.body = b"<html><body>maintenance</body></html>"
    fake_vizier.content_type = "text/html"
    with pytest.raises(ServiceUnavailableError, match=r"unreadable answer \(not a VOTable\)"):
        _provider(PS1Provider, fake_vizier.url, retries=2).query(CENTER, 0.1, ["r"])
    assert fake_vizier.count == 2


def test_timeout(fake_vizier: FakeVizier) -> None:
    fake_vizier.body = empty_votable("II/349/ps1")
    fake_vizier.delay_s = 1.0
    provider = _provider(PS1Provider, fake_vizier.url, timeout=0.2, retries=2)
    with pytest.raises(ServiceUnavailableError, match=r"no answer within 0.2 s"):
        provider.query(CENTER, 0.1, ["r"])


def test_band_not_served() -> None:
    provider = PS1Provider(server="http://127.0.0.1:9")
    with pytest.raises(CatalogError, match=r"Pan-STARRS1 DR1 \(II/349/ps1\) has no V "
                                           r"magnitudes; it serves g, r, i, z, y"):
        provider.query(CENTER, 0.1, ["V"])


def test_missing_coordinate_columns_are_reported(fake_vizier: FakeVizier) -> None:
    fake_vizier.body = votable_document("II/349/ps1", [("gmag", "float", "mag")], [[15.0]])
    with pytest.raises(CatalogServiceError, match=r"answered without the columns "
                                                  r"RAJ2000/DEJ2000 \(got: gmag\)"):
        _provider(PS1Provider, fake_vizier.url).query(CENTER, 0.1, ["g"])


# --- every catalog's mapping and cuts ---------------------------------------------------------


def test_gaia_synth_flags_and_flux_errors(fake_vizier: FakeVizier) -> None:
    fields = [("RA_ICRS", "double", "deg"), ("DE_ICRS", "double", "deg"),
              ("FV", "double", "W/m2/nm"), ("e_FV", "double", "W/m2/nm"),
              ("Vmag", "float", "mag"), ("VFlag", "unsignedByte", ""),
              ("Bmag", "float", "mag"), ("BFlag", "unsignedByte", "")]
    rows = [[150.0, 2.0, 1e-16, 1e-18, 14.0, 1, 14.6, 1],
            [150.01, 2.0, 2e-16, 4e-18, 13.2, 0, 13.9, 1]]
    fake_vizier.body = votable_document("I/360/syntphot", fields, rows)
    result = _provider(GaiaSynthProvider, fake_vizier.url).query(CENTER, 0.1, ["B", "V"])
    assert "-source=I/360/syntphot" in fake_vizier.requests[0]["__raw__"][0]
    np.testing.assert_allclose(result.table["V"], [14.0, np.nan], equal_nan=True)
    # error from the flux error: 1.0857 * 1e-18 / 1e-16
    np.testing.assert_allclose(result.table["V_err"], [2.5 / np.log(10) * 0.01, np.nan],
                               rtol=1e-6, equal_nan=True)
    # no flux column for B: the 0.02 mag floor
    np.testing.assert_allclose(result.table["B_err"], [0.02, 0.02])


def test_twomass_quality_letters(fake_vizier: FakeVizier) -> None:
    fields = [("RAJ2000", "double", "deg"), ("DEJ2000", "double", "deg"),
              ("Jmag", "float", "mag"), ("e_Jmag", "float", "mag"),
              ("Hmag", "float", "mag"), ("e_Hmag", "float", "mag"),
              ("Kmag", "float", "mag"), ("e_Kmag", "float", "mag"), ("Qflg", "char", "")]
    rows = [[150.0, 2.0, 12.0, 0.02, 11.5, 0.03, 11.4, 0.03, "AAA"],
            [150.01, 2.0, 15.0, 0.05, 14.6, None, 14.9, None, "BUE"]]
    fake_vizier.body = votable_document("II/246/out", fields, rows)
    result = _provider(TwoMassProvider, fake_vizier.url).query(CENTER, 0.1, [])
    assert result.magsys == "Vega"
    np.testing.assert_allclose(result.table["J"], [12.0, 15.0])
    np.testing.assert_allclose(result.table["H"], [11.5, np.nan], equal_nan=True)
    np.testing.assert_allclose(result.table["K"], [11.4, np.nan], equal_nan=True)


def test_sdss_keeps_primary_stars(fake_vizier: FakeVizier) -> None:
    fields = [("RA_ICRS", "double", "deg"), ("DE_ICRS", "double", "deg"),
              ("mode", "unsignedByte", ""), ("class", "unsignedByte", ""),
              ("rpmag", "float", "mag"), ("e_rpmag", "float", "mag")]
    rows = [[150.0, 2.0, 1, 6, 17.0, 0.01], [150.01, 2.0, 1, 3, 18.0, 0.02],
            [150.02, 2.0, 2, 6, 17.5, 0.01]]
    fake_vizier.body = votable_document("V/154/sdss16", fields, rows)
    result = _provider(SDSSProvider, fake_vizier.url).query(CENTER, 0.1, ["r"])
    np.testing.assert_allclose(result.table["r"], [17.0])


def test_skymapper_flags(fake_vizier: FakeVizier) -> None:
    fields = [("RAICRS", "double", "deg"), ("DEICRS", "double", "deg"),
              ("flags", "short", ""), ("gPSF", "float", "mag"), ("e_gPSF", "float", "mag")]
    rows = [[150.0, 2.0, 0, 15.0, 0.01], [150.01, 2.0, 4, 11.0, 0.01]]
    fake_vizier.body = votable_document("II/379/smssdr4", fields, rows)
    result = _provider(SkyMapperProvider, fake_vizier.url).query(CENTER, 0.1, ["g"])
    np.testing.assert_allclose(result.table["g"], [15.0])


def test_refcat2_drops_variables_and_keeps_gaia_bands(fake_vizier: FakeVizier) -> None:
    fields = [("RA_ICRS", "double", "deg"), ("DE_ICRS", "double", "deg"),
              ("Gmag", "float", "mag"), ("e_Gmag", "float", "mag"),
              ("rmag", "float", "mag"), ("e_rmag", "float", "mag"),
              ("dupvar", "unsignedByte", "")]
    rows = [[150.0, 2.0, 15.1, 0.001, 15.3, 0.01, 0], [150.01, 2.0, 14.0, 0.001, 14.2, 0.01, 1]]
    fake_vizier.body = votable_document("J/ApJ/867/105/refcat2", fields, rows)
    result = _provider(RefCat2Provider, fake_vizier.url).query(CENTER, 0.1, ["G", "r"])
    np.testing.assert_allclose(result.table["G"], [15.1], rtol=1e-6)
    np.testing.assert_allclose(result.table["r_err"], [0.01], rtol=1e-6)


def test_apass_primed_names_and_zero_errors(fake_vizier: FakeVizier) -> None:
    fields = [("RAJ2000", "double", "deg"), ("DEJ2000", "double", "deg"),
              ("Vmag", "float", "mag"), ("e_Vmag", "float", "mag"),
              ("r'mag", "float", "mag"), ("e_r'mag", "float", "mag")]
    rows = [[150.0, 2.0, 12.0, 0.0, 11.8, 0.03]]
    fake_vizier.body = votable_document("II/336/apass9", fields, rows)
    result = _provider(APASSProvider, fake_vizier.url).query(CENTER, 0.1, ["V", "r"])
    np.testing.assert_allclose(result.table["V_err"], [0.05])  # APASS 0.000 -> floor
    np.testing.assert_allclose(result.table["r"], [11.8], rtol=1e-6)


def test_missing_online_extra_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from skyphot.catalogs.cache import CatalogCache
    from skyphot.errors import ToolNotFoundError

    monkeypatch.setitem(sys.modules, "astroquery.vizier", None)  # import fails
    monkeypatch.setitem(sys.modules, "astropy_healpix", None)
    with pytest.raises(ToolNotFoundError, match=r"pip install 'skyphot\[online\]'"):
        PS1Provider(server="http://127.0.0.1:9").query(CENTER, 0.1, ["r"])
    with pytest.raises(ToolNotFoundError, match=r"cache needs astropy-healpix"):
        CatalogCache("/nonexistent")

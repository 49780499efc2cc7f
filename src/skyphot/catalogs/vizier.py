"""Online reference catalogs served by VizieR, queried through astroquery.

One provider class per catalog carries its VizieR table, the columns it needs, how they map
to skyphot's band names, a per-catalog error floor (used where a magnitude has no error)
and its quality cuts. Every query retries with exponential back-off and raises
``CatalogServiceError`` naming the service when it stays down.

The server is astroquery's configured VizieR mirror (``astroquery.vizier.conf.server``),
overridable per provider or with the environment variable ``SKYPHOT_VIZIER_SERVER``; a value
with a scheme (``http://127.0.0.1:8123``) is used as given, which is how the tests point the
providers at a local server.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from numpy.typing import NDArray

from skyphot.catalogs.base import ReferenceCatalog
from skyphot.catalogs.columns import ColumnMap, to_float
from skyphot.catalogs.local import normalise_table
from skyphot.catalogs.sky import center_degrees, cone_mask
from skyphot.errors import CatalogError, CatalogServiceError, ToolNotFoundError

OFFLINE_ADVICE = "run `skyphot catalog prefetch` when online or give --catalog FILE"

QualityCut = Callable[[Table], tuple[NDArray[np.bool_], dict[str, NDArray[np.bool_]]]]
"""(rows to keep, per-band mask of magnitudes to keep) for a raw VizieR table."""


class ServiceUnavailableError(CatalogServiceError):
    """A VizieR service did not answer usefully after every attempt.

    ``summary`` is the message without the advice, so a caching layer can add its own.
    """

    def __init__(self, service: str, summary: str, advice: str = OFFLINE_ADVICE) -> None:
        self.service = service
        self.summary = summary
        super().__init__(f"{summary}; {advice}")


@dataclass(frozen=True)
class VizierSpec:
    """How one VizieR table maps onto skyphot's normalised columns.

    ``mags``/``errs`` map band -> VizieR column; ``err_floor`` (mag) replaces a missing or
    non-positive error of a finite magnitude; ``magsys`` is the system of every band that
    ``systems`` (band -> "AB"/"Vega") does not name, for catalogs that mix systems.
    """

    key: str
    title: str
    table_id: str
    ra: str
    dec: str
    mags: Mapping[str, str]
    errs: Mapping[str, str]
    err_floor: float
    magsys: str = "AB"
    extra_columns: tuple[str, ...] = ()
    quality: QualityCut | None = None
    flux_errors: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    systems: Mapping[str, str] = field(default_factory=dict)

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self.mags)

    def system(self, band: str) -> str:
        """The magnitude system of ``band``."""
        return self.systems.get(band, self.magsys)

    def band_systems(self) -> dict[str, str]:
        """The system of every band the catalog serves."""
        return {band: self.system(band) for band in self.bands}

    def columns(self) -> list[str]:
        flux = [c for pair in self.flux_errors.values() for c in pair]
        names = [self.ra, self.dec, *self.mags.values(), *self.errs.values(), *flux,
                 *self.extra_columns]
        return list(dict.fromkeys(names))


# --- quality cuts ---------------------------------------------------------------------------


def _column(table: Table, name: str) -> NDArray[np.float64] | None:
    return to_float(table[name]) if name in table.colnames else None


def _ps1_quality(table: Table) -> tuple[NDArray[np.bool_], dict[str, NDArray[np.bool_]]]:
    """Drop extended objects: PSF minus Kron magnitude > 0.05 in i (the usual PS1 star/galaxy
    separation), in r where i has no Kron magnitude; kept when neither can be computed."""
    n = len(table)
    diffs = []
    for band in ("i", "r"):
        psf, kron = _column(table, f"{band}mag"), _column(table, f"{band}Kmag")
        diffs.append(psf - kron if psf is not None and kron is not None else np.full(n, np.nan))
    diff = np.where(np.isfinite(diffs[0]), diffs[0], diffs[1])
    with np.errstate(invalid="ignore"):
        extended = diff > 0.05
    return ~extended, {}


def _skymapper_quality(table: Table) -> tuple[NDArray[np.bool_], dict[str, NDArray[np.bool_]]]:
    """Keep rows whose SExtractor flags are below 4 (no saturation or truncation)."""
    flags = _column(table, "flags")
    keep = np.ones(len(table), dtype=bool) if flags is None else (np.nan_to_num(flags) < 4)
    return keep, {}


def _sdss_quality(table: Table) -> tuple[NDArray[np.bool_], dict[str, NDArray[np.bool_]]]:
    """Keep primary (mode 1) point sources (class 6), and clean photometry where flagged."""
    keep = np.ones(len(table), dtype=bool)
    for name, wanted in (("mode", 1.0), ("class", 6.0), ("clean", 1.0)):
        values = _column(table, name)
        if values is not None:
            keep &= values == wanted
    return keep, {}


def _twomass_quality(table: Table) -> tuple[NDArray[np.bool_], dict[str, NDArray[np.bool_]]]:
    """Keep J/H/K magnitudes whose photometric quality letter (Qflg) is A, B or C."""
    if "Qflg" not in table.colnames:
        return np.ones(len(table), dtype=bool), {}
    flags = [str(v) if v is not None else "" for v in np.ma.filled(table["Qflg"], "")]
    per_band = {}
    for index, band in enumerate("JHK"):
        per_band[band] = np.array([len(f) > index and f[index] in "ABC" for f in flags])
    return np.ones(len(table), dtype=bool), per_band


def _refcat2_quality(table: Table) -> tuple[NDArray[np.bool_], dict[str, NDArray[np.bool_]]]:
    """Drop stars flagged as variable or duplicated (dupvar != 0)."""
    dupvar = _column(table, "dupvar")
    keep = np.ones(len(table), dtype=bool) if dupvar is None else (np.nan_to_num(dupvar) == 0)
    return keep, {}


def _gaia_synth_quality(
    table: Table,
) -> tuple[NDArray[np.bool_], dict[str, NDArray[np.bool_]]]:
    """Keep synthetic magnitudes whose validity flag (``<band>Flag``) is 1 where present."""
    per_band = {}
    for band in ("U", "B", "V", "R", "I", "u", "g", "r", "i", "z"):
        flag = _column(table, f"{band}Flag")
        if flag is not None:
            per_band[band] = flag == 1
    return np.ones(len(table), dtype=bool), per_band


# --- the catalogs ---------------------------------------------------------------------------

GAIA_SYNTH = VizierSpec(
    key="gaia_synth", title="Gaia DR3 synthetic photometry", table_id="I/360/syntphot",
    ra="RA_ICRS", dec="DE_ICRS",
    mags={b: f"{b}mag" for b in ("U", "B", "V", "R", "I", "u", "g", "r", "i", "z")},
    # GSPC: Johnson-Kron-Cousins U B V R I are Vega magnitudes, SDSS u g r i z are AB
    # (Gaia Collaboration, Montegriffo et al. 2023, A&A 674, A33).
    errs={}, err_floor=0.02, magsys="AB", systems=dict.fromkeys("UBVRI", "Vega"),
    extra_columns=tuple(f"{b}Flag" for b in ("U", "B", "V", "R", "I", "u", "g", "r", "i", "z")),
    flux_errors={b: (f"F{b}", f"e_F{b}") for b in ("U", "B", "V", "R", "I",
                                                   "u", "g", "r", "i", "z")},
    quality=_gaia_synth_quality,
)
PS1 = VizierSpec(
    key="ps1", title="Pan-STARRS1 DR1", table_id="II/349/ps1", ra="RAJ2000", dec="DEJ2000",
    mags={b: f"{b}mag" for b in "grizy"}, errs={b: f"e_{b}mag" for b in "grizy"},
    err_floor=0.02, extra_columns=("iKmag", "rKmag", "Qual", "Nd"), quality=_ps1_quality,
)
SKYMAPPER = VizierSpec(
    key="skymapper", title="SkyMapper DR4", table_id="II/379/smssdr4", ra="RAICRS",
    dec="DEICRS", mags={b: f"{b}PSF" for b in "ugriz"}, errs={b: f"e_{b}PSF" for b in "ugriz"},
    err_floor=0.03, extra_columns=("flags", "ClassStar"), quality=_skymapper_quality,
)
REFCAT2 = VizierSpec(
    key="refcat2", title="ATLAS-RefCat2", table_id="J/ApJ/867/105/refcat2", ra="RA_ICRS",
    dec="DE_ICRS",
    mags={"g": "gmag", "r": "rmag", "i": "imag", "z": "zmag", "G": "Gmag", "BP": "BPmag",
          "RP": "RPmag", "J": "Jmag", "H": "Hmag", "K": "Kmag"},
    errs={"g": "e_gmag", "r": "e_rmag", "i": "e_imag", "z": "e_zmag", "G": "e_Gmag",
          "BP": "e_BPmag", "RP": "e_RPmag", "J": "e_Jmag", "H": "e_Hmag", "K": "e_Kmag"},
    err_floor=0.02, extra_columns=("dupvar",), quality=_refcat2_quality,
    # g r i z are on the PS1 (AB) system; G BP RP are Gaia DR2 and J H K 2MASS, both Vega
    # (Tonry et al. 2018, ApJ 867, 105).
    magsys="AB", systems=dict.fromkeys(("G", "BP", "RP", "J", "H", "K"), "Vega"),
)
APASS = VizierSpec(
    key="apass", title="APASS DR9", table_id="II/336/apass9", ra="RAJ2000", dec="DEJ2000",
    mags={"B": "Bmag", "V": "Vmag", "g": "g'mag", "r": "r'mag", "i": "i'mag"},
    errs={"B": "e_Bmag", "V": "e_Vmag", "g": "e_g'mag", "r": "e_r'mag", "i": "e_i'mag"},
    # B V are Johnson (Vega), g' r' i' Sloan (AB) (APASS DR9, VizieR II/336).
    err_floor=0.05, magsys="AB", systems={"B": "Vega", "V": "Vega"},
)
SDSS = VizierSpec(
    key="sdss", title="SDSS DR16", table_id="V/154/sdss16", ra="RA_ICRS", dec="DE_ICRS",
    mags={b: f"{b}pmag" for b in "ugriz"}, errs={b: f"e_{b}pmag" for b in "ugriz"},
    err_floor=0.03, extra_columns=("mode", "class", "clean"), quality=_sdss_quality,
)
TWOMASS = VizierSpec(
    key="2mass", title="2MASS", table_id="II/246/out", ra="RAJ2000", dec="DEJ2000",
    mags={"J": "Jmag", "H": "Hmag", "K": "Kmag"},
    errs={"J": "e_Jmag", "H": "e_Hmag", "K": "e_Kmag"}, err_floor=0.05, magsys="Vega",
    extra_columns=("Qflg",), quality=_twomass_quality,
)


# --- the client -----------------------------------------------------------------------------


ONLINE_EXTRA_MISSING = (
    "Online catalogs need astroquery and astropy-healpix: pip install 'skyphot[online]' "
    "(or give a local catalog with --catalog FILE)"
)


def _vizier_client(server: str, timeout: float, row_limit: int, columns: list[str]) -> Any:
    """An astroquery Vizier instance; a server given with a scheme is used as given."""
    try:  # deferred: astroquery is the "online" extra
        from astroquery.vizier import VizierClass
    except ImportError as exc:
        raise ToolNotFoundError(ONLINE_EXTRA_MISSING) from exc

    class _Client(VizierClass):
        def _server_to_url(self, return_type: str = "votable") -> str:
            if "://" in self.VIZIER_SERVER:
                return f"{self.VIZIER_SERVER.rstrip('/')}/viz-bin/{return_type}"
            return str(super()._server_to_url(return_type=return_type))

    return _Client(columns=columns, row_limit=row_limit, timeout=timeout, vizier_server=server)


def default_server() -> str:
    """``SKYPHOT_VIZIER_SERVER`` if set, else astroquery's configured VizieR mirror."""
    env = os.environ.get("SKYPHOT_VIZIER_SERVER")
    if env:
        return env
    try:
        from astroquery.vizier import conf
    except ImportError as exc:
        raise ToolNotFoundError(ONLINE_EXTRA_MISSING) from exc

    return str(conf.server)


class VizierProvider:
    """A ``CatalogProvider`` for one VizieR catalog (``SPEC``); subclasses set ``SPEC``.

    ``timeout`` (s) applies to each HTTP request, ``retries`` is the number of attempts,
    ``backoff`` (s) the first pause between attempts (doubling each time). ``row_limit``
    caps the rows VizieR returns; a capped answer is marked ``table.meta["truncated"]``.
    """

    SPEC: ClassVar[VizierSpec]

    def __init__(
        self,
        *,
        server: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 1.0,
        row_limit: int = 200_000,
    ) -> None:
        if retries < 1:
            raise ValueError("retries must be at least 1")
        self.server = server or default_server()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.row_limit = row_limit
        self.name = self.SPEC.key

    @property
    def bands(self) -> tuple[str, ...]:
        """Every band this catalog serves."""
        return self.SPEC.bands

    @property
    def title(self) -> str:
        return self.SPEC.title

    def query(
        self, center: SkyCoord, radius_deg: float, bands: Sequence[str]
    ) -> ReferenceCatalog:
        """Stars within ``radius_deg`` (degrees) of ``center`` with the requested bands
        (all of the catalog's bands if ``bands`` is empty); positions ICRS degrees.

        Raises ``CatalogError`` for a band the catalog does not serve and
        ``CatalogServiceError`` when VizieR does not answer usefully.
        """
        unknown = [b for b in bands if b not in self.bands]
        if unknown:
            raise CatalogError(
                f"{self.title} ({self.SPEC.table_id}) has no {'/'.join(unknown)} magnitudes; "
                f"it serves {', '.join(self.bands)}. Choose another catalog or band."
            )
        ra0, dec0 = center_degrees(center)
        raw = self._fetch(ra0, dec0, radius_deg)
        catalog = self.normalise(raw)
        table = catalog.table
        mask = cone_mask(np.asarray(table["ra"]), np.asarray(table["dec"]), ra0, dec0,
                         radius_deg)
        keep = tuple(bands) if bands else self.bands
        names = ["ra", "dec"] + [n for b in keep for n in (b, f"{b}_err")]
        subset = table[names][mask]
        subset.meta["truncated"] = len(raw) >= self.row_limit
        return ReferenceCatalog(table=subset, bands=keep, name=self.name,
                                magsys=self.SPEC.magsys, systems=self.SPEC.band_systems())

    def normalise(self, raw: Table) -> ReferenceCatalog:
        """Apply the column mapping, quality cuts and error floor to a raw VizieR table."""
        spec = self.SPEC
        if len(raw) and (spec.ra not in raw.colnames or spec.dec not in raw.colnames):
            raise CatalogServiceError(
                f"VizieR ({spec.title}) answered without the columns {spec.ra}/{spec.dec} "
                f"(got: {', '.join(raw.colnames)}); the service may have changed its tables"
            )
        table = Table(raw, copy=True)
        for column in (spec.ra, spec.dec):
            if column not in table.colnames:  # only for an empty answer
                table[column] = np.zeros(len(table))
        table = table[np.isfinite(to_float(table[spec.ra])) & np.isfinite(
            to_float(table[spec.dec]))]
        for column in spec.mags.values():
            if column not in table.colnames:
                table[column] = np.full(len(table), np.nan)
        keep_rows, band_masks = (spec.quality(table) if spec.quality is not None
                                 else (np.ones(len(table), dtype=bool), {}))
        errs = {b: c for b, c in spec.errs.items() if c in table.colnames}
        for band, (flux, flux_err) in spec.flux_errors.items():
            if band not in errs and flux in table.colnames and flux_err in table.colnames:
                name = f"__err_{band}"
                with np.errstate(divide="ignore", invalid="ignore"):
                    table[name] = 2.5 / np.log(10) * to_float(table[flux_err]) / to_float(
                        table[flux])
                errs[band] = name
        colmap = ColumnMap(ra=spec.ra, dec=spec.dec, mags=dict(spec.mags), errs=errs)
        normalised, found = normalise_table(table, colmap)
        if len(normalised) != len(table):
            raise CatalogServiceError(
                f"VizieR ({spec.title}) answered with positions outside the sky "
                f"(|Dec| > 90) in {spec.ra}/{spec.dec}; the service may have changed its tables"
            )
        for band in found:
            mag = np.asarray(normalised[band], dtype=np.float64)
            err = np.asarray(normalised[f"{band}_err"], dtype=np.float64)
            if band in band_masks:
                mag[~band_masks[band]] = np.nan
            floor = np.isfinite(mag) & ~(err > 0)
            err[floor] = spec.err_floor
            err[~np.isfinite(mag)] = np.nan
            normalised[band] = mag
            normalised[f"{band}_err"] = err
        return ReferenceCatalog(table=normalised[keep_rows], bands=found, name=self.name,
                                magsys=spec.magsys, systems=spec.band_systems())

    def _fetch(self, ra0: float, dec0: float, radius_deg: float) -> Table:
        """The raw VizieR table for the cone, retrying with exponential back-off."""
        # made first: it fails with a clear message when astroquery is not installed
        client = _vizier_client(self.server, self.timeout, self.row_limit, self.SPEC.columns())
        import requests  # astroquery's own dependency, so present whenever the client is
        from astroquery.exceptions import TableParseError

        center = SkyCoord(ra0 * u.deg, dec0 * u.deg, frame="icrs")
        reason = "no attempt made"
        for attempt in range(1, self.retries + 1):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # VOTable/units chatter from the service
                    result = client.query_region(
                        center, radius=radius_deg * u.deg, catalog=self.SPEC.table_id,
                        cache=False, frame="icrs",
                    )
                return self._first_table(result)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                reason = f"HTTP {status} from {self.server}"
                if 400 <= status < 500 and status not in (408, 429):
                    raise ServiceUnavailableError(
                        self.title,
                        f"VizieR ({self.title}) refused the query: {reason}",
                        advice="check the catalog name and the server setting "
                        "(SKYPHOT_VIZIER_SERVER)",
                    ) from exc
            except requests.Timeout:
                reason = f"no answer within {self.timeout:g} s from {self.server}"
            except requests.ConnectionError as exc:
                reason = f"cannot connect to {self.server} ({type(exc).__name__})"
            except (TableParseError, _UnreadableAnswerError) as exc:
                reason = f"unreadable answer ({exc})"
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        raise ServiceUnavailableError(
            self.title,
            f"VizieR ({self.title}) did not answer after {self.retries} attempts: {reason}",
        )

    def _first_table(self, result: Any) -> Table:
        if result is None:  # astroquery's answer for content that is no VOTable
            raise _UnreadableAnswerError("not a VOTable")
        tables = list(result.values()) if isinstance(result, Mapping) else list(result)
        if not tables:
            return Table()  # VizieR found nothing in the cone
        first = tables[0]
        if not isinstance(first, Table):
            raise _UnreadableAnswerError(f"a {type(first).__name__} instead of a table")
        return first


class _UnreadableAnswerError(Exception):
    """The service answered, but not with a table we can read (retried)."""


class GaiaSynthProvider(VizierProvider):
    """Gaia DR3 synthetic photometry from XP spectra (I/360/syntphot): Johnson-Cousins
    U B V R I (Vega) and SDSS u g r i z (AB). Magnitudes whose ``<band>Flag`` is not 1 are
    dropped; errors come from the flux errors when VizieR gives them, else a 0.02 mag floor.
    """

    SPEC = GAIA_SYNTH


class PS1Provider(VizierProvider):
    """Pan-STARRS1 DR1 mean PSF magnitudes g r i z y (AB), II/349/ps1. Extended objects
    (i PSF - Kron > 0.05 mag) are dropped. Error floor 0.02 mag. Covers Dec > -30 deg."""

    SPEC = PS1


class SkyMapperProvider(VizierProvider):
    """SkyMapper DR4 PSF magnitudes u g r i z (AB), II/379/smssdr4; rows with SExtractor
    flags >= 4 are dropped. Error floor 0.03 mag. Southern sky."""

    SPEC = SKYMAPPER


class RefCat2Provider(VizierProvider):
    """ATLAS-RefCat2 (J/ApJ/867/105/refcat2): g r i z (AB, PS1 system), Gaia G BP RP and
    2MASS J H K (Vega). Variable/duplicate stars (dupvar != 0) dropped. Floor 0.02 mag."""

    SPEC = REFCAT2


class APASSProvider(VizierProvider):
    """APASS DR9 (II/336/apass9): B V (Vega) and g r i (AB). Zero errors (APASS's "unknown")
    take the 0.05 mag floor."""

    SPEC = APASS


class SDSSProvider(VizierProvider):
    """SDSS DR16 PSF magnitudes u g r i z (AB, V/154/sdss16), primary point sources only.
    Error floor 0.03 mag."""

    SPEC = SDSS


class TwoMassProvider(VizierProvider):
    """2MASS point sources J H K (Vega, II/246/out); magnitudes with quality letter other than
    A/B/C are dropped. Error floor 0.05 mag."""

    SPEC = TWOMASS


PROVIDERS: dict[str, type[VizierProvider]] = {
    cls.SPEC.key: cls
    for cls in (GaiaSynthProvider, PS1Provider, SkyMapperProvider, RefCat2Provider,
                APASSProvider, SDSSProvider, TwoMassProvider)
}
"""Every online catalog by its skyphot name."""

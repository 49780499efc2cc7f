"""SkyPortal, the transient portal many collaborations use as their place of record.

A small client of its REST API (the subset skyphot uses: sources, instruments, photometry),
the map from skyphot filter names to SkyPortal/sncosmo bandpass names, and the photometry
payload. Authentication is ``Authorization: token <TOKEN>``; the token is never logged.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skyphot.errors import SkyPortalError, SkyPortalNotFoundError, UnknownFilterError

# --- filters -----------------------------------------------------------------------------

# Names after removing separators (space - _ . : ' and a trailing "prime"); bare one-letter
# names keep their case (r is Sloan r, R is Cousins R), everything else is matched lower-case.
_BARE: dict[str, str] = {
    "u": "sdssu", "g": "sdssg", "r": "sdssr", "i": "sdssi", "z": "sdssz", "y": "ps1::y",
    "U": "bessellux", "B": "bessellb", "V": "bessellv", "R": "bessellr", "I": "besselli",
    "J": "2massj", "H": "2massh", "K": "2massks", "G": "gaia::g", "BP": "gaia::gbp",
    "RP": "gaia::grp",  # upper case: Gaia; "rp" is Sloan r prime
}
_PREFIXED: dict[str, str] = {
    **{f"sdss{b}": f"sdss{b}" for b in "ugriz"},
    **{f"sloan{b}": f"sdss{b}" for b in "ugriz"},
    **{f"{b}p": f"sdss{b}" for b in "ugriz"},  # r' written rp
    **{f"ztf{b}": f"ztf{b}" for b in "gri"},
    **{f"ps1{b}": f"ps1::{b}" for b in "grizy"},
    **{f"panstarrs{b}": f"ps1::{b}" for b in "grizy"},
    **{f"lsst{b}": f"lsst{b}" for b in "ugrizy"},
    **{f"decam{b}": f"des{b}" for b in "grizy"},
    **{f"des{b}": f"des{b}" for b in "grizy"},
    **{f"{p}{b}": f"bessell{'ux' if b == 'u' else b}"
       for p in ("johnson", "bessell", "bessel", "cousins", "jc") for b in "ubvri"},
    "rc": "bessellr", "ic": "besselli", "vj": "bessellv", "bj": "bessellb",
    "ks": "2massks", "2massj": "2massj", "2massh": "2massh", "2massks": "2massks",
    "2massk": "2massks", "gaiag": "gaia::g", "gaiabp": "gaia::gbp", "gaiarp": "gaia::grp",
    "gbp": "gaia::gbp", "grp": "gaia::grp",
}
_SEPARATORS = re.compile(r"[\s\-_.:'`′’\"]+")

# Every SkyPortal bandpass name skyphot can produce.
BANDPASSES: frozenset[str] = frozenset({*_BARE.values(), *_PREFIXED.values()})

FILTER_MAP_DOC = (
    "u g r i z -> sdssu..sdssz (also r', rp, sdssr, SDSS-r), y -> ps1::y, ztfg/ztfr/ztfi "
    "(ZTF_r, ztf-r), ps1::g..ps1::y (PS1-r, ps1r), lsstu..lssty, desg..desy (DECam), "
    "U B V R I -> bessellux bessellb bessellv bessellr besselli (also Rc, Ic, Johnson-V), "
    "J H K/Ks -> 2massj 2massh 2massks, G BP RP -> gaia::g gaia::gbp gaia::grp"
)


def skyportal_filter(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """The SkyPortal (sncosmo) bandpass name of skyphot filter ``name``.

    ``overrides`` (setting ``skyportal.filters``) maps filter names to bandpass names and wins.
    Raises ``UnknownFilterError`` naming the filter and listing the known names.
    """
    raw = name.strip()
    if overrides and raw in overrides:
        return overrides[raw]
    compact = _SEPARATORS.sub("", raw)
    if compact in _BARE:
        return _BARE[compact]
    key = compact.lower()
    if key in _PREFIXED:
        return _PREFIXED[key]
    if key in BANDPASSES:
        return key  # already a SkyPortal name, e.g. "sdssr"
    if raw.lower() in BANDPASSES:
        return raw.lower()  # "ps1::r"
    raise UnknownFilterError(
        f"filter {name!r} has no SkyPortal bandpass name; known filters: {FILTER_MAP_DOC}; "
        f"map it in config.yaml under skyportal.filters (e.g. {{{raw!r}: sdssr}})"
    )


# --- payload -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PushPoint:
    """What a skyphot light-curve point sends to SkyPortal."""

    point_id: int
    uid: str  # skyphot's own identifier of the point, kept in altdata to find it again
    mjd: float
    filter: str
    magsys: str  # "AB" or "Vega"
    instrument: str | None
    mag: float | None
    magerr: float | None
    limiting_mag: float | None
    limit_sigma: float | None
    job_id: int | None
    calibration: Mapping[str, Any] = field(default_factory=dict)


def build_payload(
    point: PushPoint,
    *,
    obj_id: str,
    instrument_id: int,
    group_ids: list[int],
    version: str,
    filter_overrides: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``POST /api/photometry`` body of one point (a limit when ``mag`` is None)."""
    magsys = point.magsys.lower()
    if magsys not in ("ab", "vega"):
        raise SkyPortalError(
            f"point {point.point_id} has magnitude system {point.magsys!r}; SkyPortal takes "
            "AB or Vega"
        )
    detected = point.mag is not None and point.magerr is not None
    if not detected and point.limiting_mag is None:
        raise SkyPortalError(
            f"point {point.point_id} has neither a magnitude nor a limiting magnitude"
        )
    cal = point.calibration
    altdata: dict[str, Any] = {
        "catalog": cal.get("catalog"),
        "zero_point": cal.get("zero_point"),
        "zero_point_err": cal.get("zero_point_err"),
        "color_term": cal.get("color_term"),
        "color_term_err": cal.get("color_term_err"),
        "color_bands": cal.get("color_bands"),
        "color_used": cal.get("target_color"),
        "color_source": cal.get("color_source"),
        "fwhm_arcsec": cal.get("fwhm_arcsec"),
        "fwhm_px": cal.get("fwhm_px"),
        "n_calib": cal.get("n_calib"),
        "flags": cal.get("flags"),
        "flag_names": cal.get("flag_names"),
        "notes": cal.get("notes") or cal.get("flag_names"),
        "limit_sigma": point.limit_sigma,
        "skyphot_version": version,
        "skyphot_job_id": point.job_id,
        "skyphot_point_id": point.point_id,
        "skyphot_uid": point.uid,
    }
    return {
        "obj_id": obj_id,
        "instrument_id": instrument_id,
        "mjd": point.mjd,
        "filter": skyportal_filter(point.filter, filter_overrides),
        "mag": point.mag if detected else None,
        "magerr": point.magerr if detected else None,
        "limiting_mag": point.limiting_mag,
        "magsys": magsys,
        "origin": "skyphot",
        "group_ids": list(group_ids),
        "altdata": altdata,
    }


# --- the client --------------------------------------------------------------------------


@dataclass(frozen=True)
class SkyPortalSource:
    """What skyphot takes from a SkyPortal source."""

    obj_id: str
    ra: float
    dec: float
    redshift: float | None
    aliases: list[str]


class SkyPortalClient:
    """Requests to one SkyPortal server. Every failure raises ``SkyPortalError`` (with
    ``retryable`` set for time-outs, 5xx answers and unreachable servers)."""

    def __init__(self, url: str, token: str, *, timeout: float = 20.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self._instrument_ids: dict[str, int] = {}

    def __repr__(self) -> str:  # the token stays out of logs and tracebacks
        return f"SkyPortalClient({self.url!r})"

    def request(self, method: str, path: str, body: Any = None,
                query: Mapping[str, str] | None = None) -> Any:
        """One request; returns SkyPortal's ``data`` member."""
        target = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(target, data=data, method=method, headers={
            "Authorization": f"token {self._token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {}),
        })
        where = f"SkyPortal at {self.url} ({method} {path})"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as err:
            raise self._http_error(err, where) from None
        except TimeoutError:
            raise SkyPortalError(f"{where} did not answer within {self.timeout:g} s",
                                 retryable=True) from None
        except (urllib.error.URLError, ConnectionError) as err:
            reason = getattr(err, "reason", err)
            retry = not isinstance(reason, socket.gaierror)
            raise SkyPortalError(f"{where} cannot be reached: {reason}",
                                 retryable=retry) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise SkyPortalError(f"{where} answered with something that is not JSON",
                                 retryable=True) from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            message = answer.get("message") if isinstance(answer, dict) else None
            raise SkyPortalError(f"{where} reported an error: {message or answer!r}")
        return answer.get("data")

    @staticmethod
    def _http_error(err: urllib.error.HTTPError, where: str) -> SkyPortalError:
        try:
            message = json.loads(err.read()).get("message")
        except (ValueError, AttributeError, OSError):
            message = None
        detail = f": {message}" if message else ""
        if err.code == 401:
            return SkyPortalError(
                f"{where} refused the token (HTTP 401{detail}); set skyportal.token "
                "(SKYPHOT_SKYPORTAL_TOKEN) to a valid SkyPortal API token", status=401)
        return SkyPortalError(f"{where} answered HTTP {err.code}{detail}", status=err.code,
                              retryable=err.code >= 500 or err.code == 429)

    def get_source(self, obj_id: str) -> SkyPortalSource:
        """A source by its SkyPortal id (404: ``SkyPortalError`` naming the id)."""
        try:
            data = self.request("GET", f"/api/sources/{urllib.parse.quote(obj_id, safe='')}")
        except SkyPortalError as err:
            if err.status in (400, 404):
                raise SkyPortalNotFoundError(
                    f"SkyPortal at {self.url} has no source {obj_id!r} (or it is not shared "
                    "with the token's groups)", status=404) from None
            raise
        try:
            aliases = data.get("alias") or []
            return SkyPortalSource(
                obj_id=str(data.get("id", obj_id)), ra=float(data["ra"]),
                dec=float(data["dec"]),
                redshift=None if data.get("redshift") is None else float(data["redshift"]),
                aliases=[str(a) for a in (aliases if isinstance(aliases, list) else [aliases])],
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise SkyPortalError(
                f"SkyPortal at {self.url} sent source {obj_id!r} without usable ra/dec"
            ) from None

    def instrument_id(self, name_or_id: int | str) -> int:
        """A SkyPortal instrument id: an int as is, a name resolved by ``GET /api/instrument``."""
        if isinstance(name_or_id, int):
            return name_or_id
        if name_or_id not in self._instrument_ids:
            data = self.request("GET", "/api/instrument", query={"name": name_or_id})
            matches = [i for i in (data or []) if str(i.get("name")) == name_or_id]
            if not matches:
                raise SkyPortalError(
                    f"SkyPortal at {self.url} has no instrument named {name_or_id!r}; fix "
                    "skyportal.instruments in config.yaml (a SkyPortal instrument id or name)")
            self._instrument_ids[name_or_id] = int(matches[0]["id"])
        return self._instrument_ids[name_or_id]

    def post_photometry(self, payload: Mapping[str, Any]) -> int:
        """Create one point; returns its SkyPortal photometry id."""
        data = self.request("POST", "/api/photometry", dict(payload))
        try:
            return int(data["ids"][0])
        except (KeyError, IndexError, TypeError, ValueError):
            raise SkyPortalError(
                f"SkyPortal at {self.url} accepted the point but sent no photometry id"
            ) from None

    def update_photometry(self, photometry_id: int, payload: Mapping[str, Any]) -> None:
        """Replace the values of an existing point (``PATCH /api/photometry/{id}``)."""
        self.request("PATCH", f"/api/photometry/{photometry_id}", dict(payload))

    def delete_photometry(self, photometry_id: int) -> None:
        """Delete a point."""
        self.request("DELETE", f"/api/photometry/{photometry_id}")

    def find_photometry(self, obj_id: str, uid: str) -> int | None:
        """The id of the point skyphot pushed with ``altdata.skyphot_uid == uid``, if any
        (after an attempt whose answer was lost, the point may exist)."""
        data = self.request("GET", f"/api/sources/{urllib.parse.quote(obj_id, safe='')}"
                                   "/photometry")
        for row in data or []:
            altdata = row.get("altdata") or {}
            if isinstance(altdata, dict) and altdata.get("skyphot_uid") == uid:
                return int(row["id"])
        return None

"""Local stand-ins for the Legacy Survey viewer (Legacy Survey and DES layers) and the
SkyMapper SIAP image service, for tests that must not reach the internet.

Each serves one simulated template image (``skyphot.testing.template.simulate_template``)
in the service's own format and units, and can misbehave the ways real services do:
``status`` other than 200 fails every request (a service that is down), ``delay_s`` holds
every answer back (a client with a shorter time-out gives up), ``coverage=False`` answers as
outside the survey (the viewer: an image of zeros; SkyMapper: a table without rows),
``garbage=True`` answers an HTML page instead.

* ``FakeViewer`` answers ``/fits-cutout?ra=&dec=&layer=&pixscale=&size=&bands=`` with a cut
  of the image around the position (at the image's own pixel scale; the header WCS says so),
  sky subtracted and in nanomaggies (layers ``ls-*``) or DES counts at zero point 30
  (``des-*``); a band or layer it does not hold is answered with zeros, as the viewer does.
* ``FakeSkyMapper`` answers ``/query?POS=&SIZE=&BAND=&FORMAT=&INTERSECT=&RESPONSEFORMAT=CSV``
  with a CSV table (a 'short' and a 'main' exposure of the band, ``get_image`` URLs pointing
  back at the stand-in) and ``/get_image?IMAGE=&SIZE=&POS=&FORMAT=fits`` with the cut in
  counts, sky included, with ZPAPPROX and without GAIN, like a SkyMapper exposure.
"""

from __future__ import annotations

import io
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from astropy.io import fits
from astropy.io.fits import Header
from astropy.wcs import WCS

from skyphot.testing.frame import SimulatedFrame
from skyphot.testing.loopback import StandInHandler, loopback_server


@dataclass
class _Served:
    """The image a stand-in serves and how it misbehaves."""

    data: np.ndarray
    header: Header
    zero_point: float
    """Magnitude giving 1 data unit of ``data`` (the simulated template's zero point)."""
    sky: float
    """Sky level of ``data``, data units per pixel."""
    band: str = "r"
    url: str = ""
    status: int = 200
    delay_s: float = 0.0
    coverage: bool = True
    garbage: bool = False
    """Answer every request with an HTML page (a portal in maintenance)."""
    requests: list[str] = field(default_factory=list)

    def cut(self, ra: float, dec: float, size: int) -> tuple[np.ndarray, Header]:
        """A square of up to ``size`` pixels of the image around (ra, dec), with its WCS."""
        wcs = WCS(self.header)
        x, y = wcs.all_world2pix(np.array([ra]), np.array([dec]), 0)
        ny, nx = self.data.shape
        x0 = int(np.clip(round(float(x[0])) - size // 2, 0, max(nx - size, 0)))
        y0 = int(np.clip(round(float(y[0])) - size // 2, 0, max(ny - size, 0)))
        cut = self.data[y0: y0 + size, x0: x0 + size].astype(np.float64)
        header = Header()
        header.extend(wcs[y0: y0 + size, x0: x0 + size].to_header(), update=True)
        for key in ("DATE-OBS", "MJD-OBS"):  # coadd cutouts carry no time; exposures add it
            header.remove(key, ignore_missing=True)
        return cut, header


def _fits_bytes(data: np.ndarray, header: Header) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(data=data.astype(np.float32), header=header).writeto(buf)
    return buf.getvalue()


class _Handler(StandInHandler):
    state: _Served
    stopping: threading.Event

    def do_GET(self) -> None:
        self.state.requests.append(self.path)
        if self.state.delay_s > 0:
            self.stopping.wait(self.state.delay_s)
        parsed = urllib.parse.urlparse(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        if self.state.status != 200:
            self.reply(self.state.status, b"service unavailable", "text/plain")
            return
        if self.state.garbage:
            self.reply(200, b"<html><body>down for maintenance</body></html>", "text/html")
            return
        self.answer(parsed.path, query)

    def answer(self, path: str, query: dict[str, str]) -> None:
        raise NotImplementedError



@dataclass
class FakeViewer(_Served):
    """The Legacy Survey viewer's FITS cutout service (see the module docstring)."""

    layers: tuple[str, ...] = ("ls-dr10", "des-dr1")


class _ViewerHandler(_Handler):
    state: FakeViewer

    def answer(self, path: str, query: dict[str, str]) -> None:
        if not path.endswith("/fits-cutout"):
            self.reply(404, b"unknown endpoint", "text/plain")
            return
        try:
            ra, dec = float(query["ra"]), float(query["dec"])
            size, layer, band = int(query["size"]), query["layer"], query["bands"]
        except (KeyError, ValueError):
            self.reply(400, b"bad request: ra, dec, size, layer and bands are required",
                      "text/plain")
            return
        s = self.state
        data, header = s.cut(ra, dec, size)
        zp = 30.0 if layer.startswith("des") else 22.5
        scale = 10 ** (-0.4 * (s.zero_point - zp))
        served = (s.coverage and layer in s.layers
                  and band.lower() == s.band.lower())
        image = (data - s.sky) * scale if served else np.zeros_like(data)
        header["BANDS"] = band
        header["BAND0"] = band
        self.reply(200, _fits_bytes(image[np.newaxis], header), "application/fits")


_SHORT_IMAGE = "20190101000000-01"


@dataclass
class FakeSkyMapper(_Served):
    """The SkyMapper DR4 SIAP service (see the module docstring)."""


class _SkyMapperHandler(_Handler):
    state: FakeSkyMapper

    def answer(self, path: str, query: dict[str, str]) -> None:
        s = self.state
        if path.endswith("/query"):
            columns = ["unique_image_id", "band", "image_type", "exptime", "mean_fwhm",
                       "zpapprox", "get_image"]
            lines = [",".join(columns)]
            band = query.get("BAND", "")
            if s.coverage and band == s.band:
                for image_id, kind, exptime in ((_SHORT_IMAGE, "short", 5),
                                                ("20190101000100-01", "main", 100)):
                    link = f"{s.url}/get_image?" + urllib.parse.urlencode(
                        {"IMAGE": image_id, "SIZE": query.get("SIZE", "0.1"),
                         "POS": query.get("POS", "0,0"), "FORMAT": "fits"})
                    lines.append(f"{image_id},{band},{kind},{exptime},2.1,{s.zero_point},"
                                 f"{link}")
            self.reply(200, ("\n".join(lines) + "\n").encode(), "text/csv")
        elif path.endswith("/get_image"):
            ra, dec = (float(v) for v in query["POS"].split(","))
            size_px = round(float(query["SIZE"]) * 3600.0 / _scale(s.header))
            data, header = s.cut(ra, dec, size_px)
            if query.get("IMAGE") == _SHORT_IMAGE:
                # The short exposure: 20 times fewer counts (a test would see it used).
                data = data / 20.0
            header["DATE-OBS"] = self.state.header.get("DATE-OBS", "2019-01-01T00:01:00")
            header["EXPTIME"] = 5.0 if query.get("IMAGE") == _SHORT_IMAGE else 100.0
            header["ZPAPPROX"] = (s.zero_point, "approximate AB zero point")
            header["FILTER"] = s.band
            self.reply(200, _fits_bytes(data, header), "application/fits")
        else:
            self.reply(404, b"unknown endpoint", "text/plain")


def _scale(header: Header) -> float:
    return float(np.sqrt(abs(np.linalg.det(WCS(header).celestial.pixel_scale_matrix)))) * 3600


@contextmanager
def _serve(state: _Served, handler: type[_Handler], suffix: str) -> Iterator[None]:
    stopping = threading.Event()
    bound = type("Bound", (handler,), {"state": state, "stopping": stopping})
    with loopback_server(bound, stopping=stopping) as url:
        state.url = url + suffix
        yield


@contextmanager
def serve_viewer(state: FakeViewer) -> Iterator[FakeViewer]:
    """Run the viewer stand-in on 127.0.0.1 (a free port) for the duration of the block;
    ``state.url`` is its base URL (ends in /viewer)."""
    with _serve(state, _ViewerHandler, "/viewer"):
        yield state


@contextmanager
def serve_skymapper(state: FakeSkyMapper) -> Iterator[FakeSkyMapper]:
    """Run the SkyMapper stand-in on 127.0.0.1 for the duration of the block; ``state.url``
    is its base URL (ends in /public/siap/dr4)."""
    with _serve(state, _SkyMapperHandler, "/public/siap/dr4"):
        yield state


_S = TypeVar("_S", bound=_Served)


def template_service_state(kind: type[_S], template: SimulatedFrame, **kw: Any) -> _S:
    """A stand-in state (``FakeViewer`` or ``FakeSkyMapper``) serving a simulated template:
    its data, header, zero point and sky level in ADU; ``kw`` sets the other fields
    (``status``, ``delay_s``, ``coverage``, ...)."""
    p = template.params
    return kind(data=np.asarray(template.data), header=template.header.copy(),
                zero_point=float(p.zero_point), sky=float(p.sky) / float(p.gain),
                band=str(template.header.get("FILTER", "r")), **kw)


UNREACHABLE_URL = "http://127.0.0.1:9/unreachable"
"""A service URL that refuses connections at once (the discard port): a survey pointed here
is 'down' without any waiting and without the network."""


def offline_service_urls(**given: str) -> dict[str, str]:
    """Service URLs for every template survey: those ``given`` (e.g. ``legacy=viewer.url``),
    every other one unreachable, so no test can reach a real service."""
    from skyphot.templates.surveys import SURVEYS

    return {name: given.get(name, UNREACHABLE_URL) for name in SURVEYS}

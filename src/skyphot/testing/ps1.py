"""A local stand-in for the Pan-STARRS1 image cutout service, for tests that must not
reach the internet.

It answers ``ps1filenames.py`` with a one-row listing and ``fitscut.cgi`` with a cutout of
the given template image, stored with PS1's asinh scaling (BOFFSET, BSOFTEN) as the real
service does. ``status`` other than 200 makes every request fail (a service that is down),
``delay_s`` holds every answer back (a client time-out), ``coverage=False`` lists no image
(a field outside the survey).
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

import numpy as np
from astropy.io import fits
from astropy.io.fits import Header
from astropy.wcs import WCS

from skyphot.testing.loopback import StandInHandler, loopback_server

_BSOFTEN = 50.0
_BOFFSET = 100.0


@dataclass
class FakePS1:
    """What the stand-in serves and what it was asked."""

    data: np.ndarray
    header: Header
    band: str = "r"
    url: str = ""
    status: int = 200
    delay_s: float = 0.0
    coverage: bool = True
    requests: list[str] = field(default_factory=list)

    def cutout(self, ra: float, dec: float, size: int) -> bytes:
        """A ``size`` square cut of the image around (ra, dec), asinh scaled, as FITS bytes."""
        wcs = WCS(self.header)
        x, y = wcs.all_world2pix(np.array([ra]), np.array([dec]), 0)
        ny, nx = self.data.shape
        x0 = int(np.clip(round(float(x[0])) - size // 2, 0, max(nx - size, 0)))
        y0 = int(np.clip(round(float(y[0])) - size // 2, 0, max(ny - size, 0)))
        cut = self.data[y0 : y0 + size, x0 : x0 + size].astype(np.float64)
        header = self.header.copy()
        header["CRPIX1"] = float(header["CRPIX1"]) - x0
        header["CRPIX2"] = float(header["CRPIX2"]) - y0
        for key in ("FILTER", "GAIN"):
            header.remove(key, ignore_missing=True)
        header["HIERARCH CELL.GAIN"] = float(self.header.get("GAIN", 1.0))
        a = 2.5 / math.log(10.0)
        header["BSOFTEN"] = _BSOFTEN
        header["BOFFSET"] = _BOFFSET
        scaled = a * np.arcsinh((cut - _BOFFSET) / (2.0 * _BSOFTEN))
        buf = io.BytesIO()
        fits.PrimaryHDU(data=scaled.astype(np.float32), header=header).writeto(buf)
        return buf.getvalue()


@contextmanager
def serve_ps1(state: FakePS1) -> Iterator[FakePS1]:
    """Run the stand-in on 127.0.0.1 (a free port) for the duration of the block."""

    stopping = threading.Event()

    class Handler(StandInHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            if state.delay_s > 0:
                stopping.wait(state.delay_s)
            parsed = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(parsed.query).items()}
            if state.status != 200:
                self.reply(state.status, b"service unavailable", "text/plain")
            elif parsed.path.endswith("ps1filenames.py"):
                band = q.get("filters", state.band)
                rows = "projcell subcell ra dec filter mjd type filename shortname badflag\n"
                if band == state.band and state.coverage:
                    rows += (f"2000 50 {q['ra']} {q['dec']} {band} 0 stack "
                             f"/rings.v3.skycell.2000.050.stk.{band}.unconv.fits "
                             f"rings.v3.skycell.2000.050.stk.{band}.unconv.fits 0\n")
                self.reply(200, rows.encode(), "text/plain")
            elif parsed.path.endswith("fitscut.cgi"):
                body = state.cutout(float(q["ra"]), float(q["dec"]), int(q["size"]))
                self.reply(200, body, "application/fits")
            else:
                self.reply(404, b"unknown endpoint", "text/plain")


    with loopback_server(Handler, stopping=stopping) as url:
        state.url = url + "/cgi-bin"
        yield state

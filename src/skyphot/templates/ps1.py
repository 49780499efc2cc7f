"""Pan-STARRS1 stacks (g r i z y, north of Dec -30) from the STScI image cutout service.

Two steps, as the service documents them: ``ps1filenames.py?ra=&dec=&filters=&type=stack``
lists the stack image of the band at the position (a whitespace table with a ``filename``
column, no rows outside the survey), then ``fitscut.cgi?ra=&dec=&size=&format=fits&red=FILE``
cuts a FITS image out of it. Stacks store asinh-scaled values (keywords BOFFSET, BSOFTEN);
they are converted back to linear counts, so the template is calibrated like any image.
"""

from __future__ import annotations

import math
import urllib.parse
from pathlib import Path

import numpy as np

from skyphot.errors import TemplateCoverageError
from skyphot.templates.service import FetchRequest, Survey, http_get, read_image, write_template

PS1_URL = "https://ps1images.stsci.edu/cgi-bin"


def asinh_to_linear(data: np.ndarray, boffset: float, bsoften: float) -> np.ndarray:
    """Invert PS1's scaling: linear = BOFFSET + BSOFTEN * 2 sinh(value / a), a = 2.5 / ln 10."""
    a = 2.5 / math.log(10.0)
    return np.asarray(boffset + bsoften * 2.0 * np.sinh(data.astype(np.float64) / a))


def fetch_ps1(survey: Survey, req: FetchRequest) -> Path:
    """A linear-count PS1 stack cutout of ``req`` in a temporary file."""
    base = req.base_url.rstrip("/")
    service = survey.service()
    query = urllib.parse.urlencode({"ra": f"{req.ra:.6f}", "dec": f"{req.dec:.6f}",
                                    "filters": req.band, "type": "stack"})
    listing = http_get(f"{base}/ps1filenames.py?{query}", service=service,
                       timeout=req.timeout, retries=req.retries).decode(errors="replace")
    lines = [ln.split() for ln in listing.strip().splitlines() if ln.strip()]
    if len(lines) < 2 or "filename" not in lines[0]:
        raise TemplateCoverageError(
            f"{survey.title} has no {req.band} stack at ({req.ra:.5f}, {req.dec:+.5f}): the "
            "field is outside the survey"
        )
    filename = lines[1][lines[0].index("filename")]
    cut = urllib.parse.urlencode({"ra": f"{req.ra:.6f}", "dec": f"{req.dec:.6f}",
                                  "size": str(req.size_px), "format": "fits", "red": filename})
    body = http_get(f"{base}/fitscut.cgi?{cut}", service=service, timeout=req.timeout,
                    retries=req.retries)
    data, header = read_image(body, service=service)
    if "BSOFTEN" in header and "BOFFSET" in header:
        data = asinh_to_linear(data, float(header["BOFFSET"]), float(header["BSOFTEN"]))
        for key in ("BSOFTEN", "BOFFSET"):
            del header[key]
    gain = float(header.get("GAIN", header.get("CELL.GAIN", 1.0)))
    return write_template(data, header, survey=survey, band=req.band, ra=req.ra, dec=req.dec,
                          gain=gain)

"""Legacy Survey DR10 and DES images from the Legacy Survey viewer's FITS cutout service.

One request: ``fits-cutout?ra=&dec=&layer=&pixscale=&size=&bands=`` answers a FITS image
resampled onto a TAN grid of ``size`` x ``size`` pixels of ``pixscale`` arcsec centred on the
position (several bands: a cube, one plane per band, named by BAND0, BAND1, ... cards;
outside the survey: zeros). The Legacy Survey layer ``ls-dr10`` is in nanomaggies (AB zero
point 22.5) at the native 0.262"/px; the DES layer serves the DES coadd tiles, whose counts
have the DES zero point 30. The engine calibrates the template against the catalog itself,
so the unit is documentation. Sky-subtracted coadds carry no gain: an effective one is
estimated (``skyphot.templates.service.effective_gain``).
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import numpy as np

from skyphot.errors import TemplateServiceError
from skyphot.templates.service import FetchRequest, Survey, http_get, read_image, write_template

VIEWER_URL = "https://www.legacysurvey.org/viewer"


def _service_band(survey: Survey, band: str) -> str:
    # DES names its reddest band Y; skyphot's band is y.
    return "Y" if survey.name == "des" and band == "y" else band


def fetch_viewer(survey: Survey, req: FetchRequest) -> Path:
    """A cutout of ``survey``'s viewer layer in ``req.band``, in a temporary file."""
    if survey.layer is None:
        raise TemplateServiceError(f"the {survey.service()} needs a viewer layer; none is set")
    band = _service_band(survey, req.band)
    query = urllib.parse.urlencode({
        "ra": f"{req.ra:.6f}", "dec": f"{req.dec:.6f}", "layer": survey.layer,
        "pixscale": f"{survey.pixel_scale:g}", "size": str(req.size_px), "bands": band,
    })
    body = http_get(f"{req.base_url.rstrip('/')}/fits-cutout?{query}",
                    service=survey.service(), timeout=req.timeout, retries=req.retries)
    data, header = read_image(body, service=survey.service())
    for key in [k for k in header if k.startswith("BAND") and k[4:].isdigit()]:
        del header[key]
    data = np.where(data == 0, np.nan, data)  # zeros are "no data" in the viewer's answer
    return write_template(data, header, survey=survey, band=req.band, ra=req.ra, dec=req.dec)

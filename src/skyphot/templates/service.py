"""Survey template images from an image cutout service.

Pan-STARRS1 (g r i z y, north of Dec -30) through the STScI cutout service, in its two-step
format: ``ps1filenames.py`` lists the stack image of each filter at a position, and
``fitscut.cgi`` cuts a FITS image out of it. PS1 stacks store asinh-scaled values
(keywords BOFFSET, BSOFTEN); they are converted back to linear counts before use, so the
template is calibrated like any other image. Legacy Survey, DES and SkyMapper are not
served yet: asking for them says so.
"""

from __future__ import annotations

import math
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import FITSFixedWarning

from skyphot.errors import TemplateError, TemplateServiceError

PS1_URL = "https://ps1images.stsci.edu/cgi-bin"


@dataclass(frozen=True)
class Survey:
    """A survey whose images can serve as templates."""

    name: str
    bands: tuple[str, ...]
    dec_min: float
    dec_max: float
    pixel_scale: float  # arcsec/px
    max_size_px: int
    url: str


SURVEYS: dict[str, Survey] = {
    "ps1": Survey("ps1", ("g", "r", "i", "z", "y"), -30.0, 90.0, 0.25, 6000, PS1_URL),
}
# The survey band closest in wavelength to a band the surveys lack.
NEAREST_BAND = {
    "u": "g", "U": "g", "B": "g", "V": "r", "R": "r", "Rc": "r", "I": "i", "Ic": "i",
    "Y": "y", "G": "r", "BP": "g", "RP": "i", "c": "g", "o": "r", "w": "r", "L": "r",
}


def choose_survey(band: str, dec: float, survey: str | None) -> tuple[Survey, str, str | None]:
    """The survey and its band for a template in ``band`` at ``dec``, and a note when the
    band is a substitute. Raises ``TemplateError`` when no served survey fits."""
    names = [survey] if survey else list(SURVEYS)
    for name in names:
        info = SURVEYS.get(name)
        if info is None:
            raise TemplateError(
                f"template survey {name!r} is not served; choose one of {', '.join(SURVEYS)} "
                "or give a template file (skyphot template import)"
            )
        if not info.dec_min <= dec <= info.dec_max:
            continue
        if band in info.bands:
            return info, band, None
        near = NEAREST_BAND.get(band)
        if near in info.bands:
            return info, near, f"no {info.name} {band} image: the nearest band {near} is used"
    raise TemplateError(
        f"no served survey has a template in band {band} at Dec {dec:+.2f} (Pan-STARRS1 covers "
        "g r i z y north of Dec -30); give a template file or import one into the cache"
    )


def _get(url: str, *, service: str, timeout: float, retries: int) -> bytes:
    """GET with retries and exponential back-off; a clear error naming the service."""
    last: Exception | None = None
    for attempt in range(retries):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as err:
            last = err
            if 400 <= err.code < 500:
                break  # the request itself is wrong; repeating it will not help
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            last = err
        if attempt + 1 < retries:
            time.sleep(min(0.5 * 2**attempt, 8.0))
    raise TemplateServiceError(
        f"the {service} image cutout service failed after {retries} attempt(s) ({last}); "
        "try again later, or give a template file"
    )


def asinh_to_linear(data: np.ndarray, boffset: float, bsoften: float) -> np.ndarray:
    """Invert PS1's scaling: linear = BOFFSET + BSOFTEN * 2 sinh(value / a), a = 2.5 / ln 10."""
    a = 2.5 / math.log(10.0)
    return np.asarray(boffset + bsoften * 2.0 * np.sinh(data.astype(np.float64) / a))


def fetch_ps1(
    ra: float,
    dec: float,
    band: str,
    size_px: int,
    *,
    base_url: str = PS1_URL,
    timeout: float = 60.0,
    retries: int = 3,
) -> Path:
    """A linear-count PS1 stack cutout of ``size_px`` around (ra, dec) in a temporary file."""
    base = base_url.rstrip("/")
    query = urllib.parse.urlencode({"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "filters": band,
                                    "type": "stack"})
    listing = _get(f"{base}/ps1filenames.py?{query}", service="Pan-STARRS1", timeout=timeout,
                   retries=retries).decode(errors="replace")
    lines = [ln.split() for ln in listing.strip().splitlines() if ln.strip()]
    if len(lines) < 2 or "filename" not in lines[0]:
        raise TemplateServiceError(
            f"the Pan-STARRS1 service lists no {band} stack image at ({ra:.5f}, {dec:+.5f}); "
            "the field may be outside the survey"
        )
    filename = lines[1][lines[0].index("filename")]
    cut = urllib.parse.urlencode({"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "size": str(size_px),
                                  "format": "fits", "red": filename})
    body = _get(f"{base}/fitscut.cgi?{cut}", service="Pan-STARRS1", timeout=timeout,
                retries=retries)
    out = Path(tempfile.mkdtemp(prefix="skyphot-ps1-")) / f"ps1_{band}.fits"
    raw = out.with_suffix(".raw.fits")
    raw.write_bytes(body)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            with fits.open(raw, memmap=False) as hdul:
                header = hdul[0].header.copy()
                data = hdul[0].data
                if data is None or data.ndim != 2:
                    raise TemplateServiceError(
                        "the Pan-STARRS1 cutout service returned no image; try again later"
                    )
                linear = data.astype(np.float64)
                if "BSOFTEN" in header and "BOFFSET" in header:
                    linear = asinh_to_linear(data, float(header["BOFFSET"]),
                                             float(header["BSOFTEN"]))
                    for key in ("BSOFTEN", "BOFFSET"):
                        del header[key]
    except OSError as err:
        raise TemplateServiceError(
            f"the Pan-STARRS1 cutout service returned something that is not FITS ({err})"
        ) from err
    finally:
        raw.unlink(missing_ok=True)
    header["FILTER"] = (band, "PS1 filter")
    if "GAIN" not in header:
        header["GAIN"] = (float(header.get("CELL.GAIN", 1.0)), "e-/count, from CELL.GAIN")
    header["TPLORIG"] = ("ps1", "skyphot: template from the PS1 cutout service")
    fits.PrimaryHDU(data=linear.astype(np.float32), header=header).writeto(out)
    return out

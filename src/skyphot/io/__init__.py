"""Reading frames and normalising their headers.

The names below are imported on first use: ``skyphot.io.fits_limits`` (the upload checks of
the batch client and the web application) must not pull in astropy and numpy with its
package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skyphot.io.fits import read_frame
    from skyphot.io.frame import Frame, ObservationMeta
    from skyphot.io.header import celestial_wcs, normalise_header, target_pixel

_HOME = {
    "Frame": "skyphot.io.frame",
    "ObservationMeta": "skyphot.io.frame",
    "celestial_wcs": "skyphot.io.header",
    "normalise_header": "skyphot.io.header",
    "read_frame": "skyphot.io.fits",
    "target_pixel": "skyphot.io.header",
}

__all__ = [
    "Frame",
    "ObservationMeta",
    "celestial_wcs",
    "normalise_header",
    "read_frame",
    "target_pixel",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'skyphot.io' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)

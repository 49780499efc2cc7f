"""Reading frames and normalising their headers."""

from skyphot.io.fits import read_frame
from skyphot.io.frame import Frame, ObservationMeta
from skyphot.io.header import celestial_wcs, normalise_header, target_pixel

__all__ = [
    "Frame",
    "ObservationMeta",
    "celestial_wcs",
    "normalise_header",
    "read_frame",
    "target_pixel",
]

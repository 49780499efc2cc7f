"""skyphot: calibrated photometry of a transient from any FITS frame."""

__version__ = "0.1.0"

__all__ = ["__version__"]

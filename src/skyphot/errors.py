"""One error hierarchy for the whole project.

Every error carries a message a user can act on. The CLI (``skyphot.cli``) and the web
layer each map these classes to exit codes / HTTP statuses in exactly one place; the
classes themselves know nothing about either.
"""

from __future__ import annotations


class SkyphotError(Exception):
    """Root of every error skyphot raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- problems with what the user gave us -------------------------------------------------


class InputError(SkyphotError):
    """The input (file, option, configuration) is unusable as given."""


class FrameReadError(InputError):
    """The image file cannot be read: not FITS, truncated, empty, no image data."""


class HeaderError(InputError):
    """A value the analysis needs is missing from the header and was not given."""


class WCSError(InputError):
    """The frame has no usable world coordinate system."""


class TargetOutsideFrameError(InputError):
    """The target position does not fall on the image."""


class CatalogError(InputError):
    """A reference catalog is unusable (file unreadable, columns missing, band absent)."""


class UnknownFilterError(InputError):
    """The filter name is not known and no mapping was given."""


class ConfigError(InputError):
    """A configuration value is invalid."""


class TemplateError(InputError):
    """The template (reference image) for subtraction is unusable: unreadable, not covering
    the target, in another band, unsolvable, or too shallow."""


class TemplateCoverageError(TemplateError):
    """No survey image covers the target in a usable band (outside every footprint, or the
    cutout services answered with blank images)."""


# --- the analysis could not reach a trustworthy answer -----------------------------------


class AnalysisError(SkyphotError):
    """The frame was read, but the analysis could not produce a trustworthy result."""


class DetectionError(AnalysisError):
    """Too few sources were detected to analyse the frame."""


class AstrometryError(AnalysisError):
    """The astrometric solution could not be found or failed its quality check."""


class CalibrationError(AnalysisError):
    """The photometric zero point could not be determined (e.g. too few matched stars)."""


class PhotometryError(AnalysisError):
    """The target could not be measured (e.g. all its pixels are masked)."""


class TooFewStarsError(AnalysisError):
    """Fewer usable stars than an estimate needs; a caller with another way to the same
    quantity (the template subtraction's flux ratio) falls back to it."""


# --- the environment ----------------------------------------------------------------------


class ExternalToolError(SkyphotError):
    """An external program (SExtractor, SCAMP, solve-field, ...) failed."""


class ToolNotFoundError(ExternalToolError):
    """An external program or optional Python extra is not installed."""


class TemplateServiceError(ExternalToolError):
    """An image cutout service (survey templates) failed or could not be reached."""


class CatalogServiceError(SkyphotError):
    """An online catalog service could not be reached or answered badly."""


class SkyPortalError(SkyphotError):
    """A SkyPortal server refused a request, answered badly or could not be reached.

    ``status`` is the HTTP status (None: no answer); ``retryable`` says whether trying the
    same request later may succeed (time-out, 5xx, connection refused).
    """

    def __init__(self, message: str, *, status: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class SkyPortalNotFoundError(SkyPortalError):
    """SkyPortal does not know the requested source (or does not share it with the token)."""


# --- the pipeline runner ------------------------------------------------------------------


class StageError(SkyphotError):
    """A pipeline stage failed. Names the stage; the original error is ``reason``."""

    def __init__(self, stage: str, reason: BaseException) -> None:
        self.stage = stage
        self.reason = reason
        detail = (
            str(reason)
            if isinstance(reason, SkyphotError)
            else (f"internal error ({type(reason).__name__}: {reason})")
        )
        super().__init__(f"{stage}: {detail}")


def root_cause(error: SkyphotError) -> BaseException:
    """The error a stage failure wraps, or the error itself."""
    return error.reason if isinstance(error, StageError) else error

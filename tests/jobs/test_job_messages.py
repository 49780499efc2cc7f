"""Failure messages for the web: the user's file name, the form's words, no internals."""

from __future__ import annotations

from skyphot.errors import (
    CalibrationError,
    CatalogError,
    FrameReadError,
    HeaderError,
    StageError,
)
from skyphot.jobs.messages import is_retryable, user_message

STORED = "/root/.local/share/skyphot/uploads/0f3c9a/file/frame_1.fits"


def test_server_paths_become_the_uploaded_name() -> None:
    err = HeaderError(f"{STORED}: no usable observation time in the header; give it with --mjd")
    text = user_message(err, stored=STORED, filename="night1.fits")
    assert text == ("night1.fits: no usable observation time in the header; give it with the "
                    "observation time field")
    other = CatalogError("cannot read /srv/skyphot/cache/ps1/0042.parquet (bad magic)")
    assert "/srv" not in user_message(other, stored=STORED, filename="n.fits")
    assert "'0042.parquet'" in user_message(other, stored=STORED, filename="n.fits")


def test_units_are_not_taken_for_paths() -> None:
    err = HeaderError("gain 0 e-/ADU is not positive; pixel scale 0.4 arcsec/px assumed")
    assert user_message(err, stored=STORED, filename="n.fits") == str(err)


def test_library_internals_become_what_is_wrong_with_the_file() -> None:
    err = StageError("reading frame", ValueError("buffer is too small for requested array"))
    text = user_message(err, stored=STORED, filename="night1.fits")
    assert text == ("'night1.fits' is damaged or incomplete (its data end before the header "
                    "says they should); upload the complete file again")
    assert not is_retryable(err)
    bug = StageError("photometry", ZeroDivisionError("float division by zero"))
    assert user_message(bug, stored=STORED, filename="n.fits") == (
        "the analysis of 'n.fits' stopped on an unexpected problem (ZeroDivisionError); the "
        "administrator can see the details in the job log")
    assert is_retryable(bug)


def test_cli_options_become_form_fields() -> None:
    err = StageError("reference catalog", CatalogError(
        "no catalog covers this field offline; run `skyphot catalog prefetch` when online or "
        "give --catalog FILE"))
    text = user_message(err, stored=STORED, filename="n.fits")
    assert "--" not in text and "`" not in text
    assert text == ("reference catalog: no catalog covers this field offline; run a catalog "
                    "prefetch on the server when online or give a catalog file (the form's "
                    "catalog file field)")
    scale = CalibrationError("give the pixel scale (--pixel-scale ARCSEC) for blind solving")
    assert user_message(scale, stored=STORED, filename="n.fits") == (
        "give the pixel scale (the form's pixel scale field) for blind solving")


def test_what_a_retry_can_change() -> None:
    assert not is_retryable(FrameReadError("'x.fits': not a FITS file"))
    assert not is_retryable(StageError("reading frame", FrameReadError("truncated")))
    assert is_retryable(HeaderError("no observation time"))
    assert is_retryable(StageError("calibration", CalibrationError("2 stars")))


def test_template_advice_speaks_of_the_form() -> None:
    from skyphot.errors import TemplateCoverageError

    err = StageError("template", TemplateCoverageError(
        "no survey serves a template in band J at (1.00000, +2.00000): Pan-STARRS1 has no band "
        "near J; give a template file or import one (skyphot template import)"))
    text = user_message(err, stored="/srv/u/x.fits", filename="x.fits")
    assert text.endswith("has no band near J; upload a template file with the frame")
    assert "skyphot" not in text

"""The upload check: files no setting can make usable are refused before a job exists."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skyphot.jobs.header import UploadRejectedError, check_upload


def write(path: Path, *, compressed: bool = False) -> bytes:
    data = np.zeros((100, 100), np.float32)
    hdu = fits.CompImageHDU(data) if compressed else fits.PrimaryHDU(data)
    hdu.header["DATE-OBS"] = "2024-03-01T02:00:00"
    if compressed:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    else:
        hdu.writeto(path)
    return path.read_bytes()


def test_complete_files_pass(tmp_path: Path) -> None:
    whole = write(tmp_path / "a.fits")
    assert check_upload(tmp_path / "a.fits", display_name="a.fits").shape == (100, 100)
    write(tmp_path / "b.fits.fz", compressed=True)
    assert check_upload(tmp_path / "b.fits.fz", display_name="b.fits.fz").shape == (100, 100)
    (tmp_path / "c.fits.gz").write_bytes(gzip.compress(whole))
    assert check_upload(tmp_path / "c.fits.gz", display_name="c.fits.gz").shape == (100, 100)


def test_a_cut_file_is_refused_with_the_sizes(tmp_path: Path) -> None:
    whole = write(tmp_path / "full.fits")
    (tmp_path / "cut.fits").write_bytes(whole[:20000])
    with pytest.raises(UploadRejectedError) as err:
        check_upload(tmp_path / "cut.fits", display_name="night.fits")
    # one 2880-byte header block plus 100 x 100 float32 pixels
    assert str(err.value) == ("'night.fits' is incomplete: its header announces 42880 bytes "
                              "but the file has only 20000; upload the complete file")


def test_a_cut_tile_compressed_file_is_refused(tmp_path: Path) -> None:
    whole = write(tmp_path / "full.fits.fz", compressed=True)
    (tmp_path / "cut.fits.fz").write_bytes(whole[: len(whole) - 2880])
    with pytest.raises(UploadRejectedError, match=r"'cut\.fits\.fz' is incomplete"):
        check_upload(tmp_path / "cut.fits.fz", display_name="cut.fits.fz")


def test_text_is_refused_with_what_it_looks_like(tmp_path: Path) -> None:
    (tmp_path / "log.fits").write_text("observing log\n")
    with pytest.raises(UploadRejectedError) as err:
        check_upload(tmp_path / "log.fits", display_name="log.fits")
    assert str(err.value).startswith("'log.fits': not a FITS file (it looks like text: "
                                     "'observing log')")

"""The shared FITS header walker: layouts of whole files, and each way a stream is broken."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from astropy.io import fits

from skyphot.errors import FrameReadError
from skyphot.io.fits_walk import BLOCK, FitsStructureError, walk_hdus


def _bytes(hdul: fits.HDUList) -> bytes:
    out = io.BytesIO()
    hdul.writeto(out)
    return out.getvalue()


def _two_hdus() -> bytes:
    return _bytes(fits.HDUList([fits.PrimaryHDU(np.zeros((30, 40), np.int16)),
                                fits.ImageHDU(np.zeros((5, 7), np.float32), name="SCI")]))


def test_layouts_of_a_whole_file_plain_and_gzipped() -> None:
    raw = _two_hdus()
    for stream, seekable in ((io.BytesIO(raw), True),
                             (gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(raw))), False)):
        hdus = list(walk_hdus(stream, seekable=seekable))
        assert [(h.index, h.data_bytes, h.image_pixels, h.dims()) for h in hdus] == [
            (0, 30 * 40 * 2, 1200, "40x30"), (1, 5 * 7 * 4, 35, "7x5")]
        assert hdus[0].data_start == BLOCK
        assert hdus[1].header_start == 2 * BLOCK  # 2400 bytes of data padded to one block
        assert hdus[1].data_start == 3 * BLOCK


def test_tile_compressed_image_declares_its_znaxis_pixels() -> None:
    raw = _bytes(fits.HDUList([fits.PrimaryHDU(),
                               fits.CompImageHDU(np.zeros((64, 48), np.int16))]))
    hdus = list(walk_hdus(io.BytesIO(raw)))
    assert hdus[1].image_pixels == 64 * 48 and hdus[1].dims() == "48x64"


def test_cut_data_name_the_hdu_and_both_sizes() -> None:
    raw = _two_hdus()[:BLOCK + 1000]
    with pytest.raises(FitsStructureError, match=r"HDU 0 declares 2400 bytes of data but only "
                       r"1000 are present") as err:
        list(walk_hdus(io.BytesIO(raw)))
    assert (err.value.kind, err.value.declared, err.value.present) == ("data", 2400, 1000)
    assert isinstance(err.value, FrameReadError)  # one hierarchy: readers may catch either


def test_a_header_without_end_is_refused() -> None:
    raw = _two_hdus()[:BLOCK // 2]
    with pytest.raises(FitsStructureError, match=r"the header of HDU 0 does not end") as err:
        list(walk_hdus(io.BytesIO(raw)))
    assert err.value.kind == "header"


def test_a_non_integer_axis_is_refused() -> None:
    raw = bytearray(_two_hdus())
    at = raw.index(b"NAXIS1  =")
    raw[at:at + 80] = b"NAXIS1  = 'forty'".ljust(80)
    with pytest.raises(FitsStructureError, match=r"HDU 0 has no valid integer NAXIS1 "
                       r"\(\"'forty'\"\)|HDU 0 has no valid integer NAXIS1 \('forty'\)"):
        list(walk_hdus(io.BytesIO(bytes(raw))))


def test_a_bitpix_fits_does_not_allow_is_refused() -> None:
    raw = bytearray(_two_hdus())
    at = raw.index(b"BITPIX  =")
    raw[at:at + 80] = b"BITPIX  =                   12".ljust(80)
    with pytest.raises(FitsStructureError, match=r"HDU 0 has BITPIX = 12, not one FITS allows"):
        list(walk_hdus(io.BytesIO(bytes(raw))))


def test_trailing_bytes_after_the_last_hdu_are_not_an_hdu() -> None:
    raw = _two_hdus() + b"some trailer" * 300
    assert len(list(walk_hdus(io.BytesIO(raw)))) == 2

"""read_frame: each supported layout gives the right float32 pixels; each bad file a clear error."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skyphot.errors import FrameReadError
from skyphot.io.fits import _merged_header, read_frame

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def real() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real data directory {REAL} not present")
    return REAL


def _image(shape: tuple[int, int] = (20, 30), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(100.0, 5.0, shape).astype(np.float32)


def _write(path: Path, *hdus: fits.hdu.base.ExtensionHDU | fits.PrimaryHDU) -> Path:
    fits.HDUList(list(hdus)).writeto(path)
    return path


# --- good files ---------------------------------------------------------------------------


def test_plain_float32_roundtrip(tmp_path: Path) -> None:
    data = _image()
    frame = read_frame(_write(tmp_path / "a.fits", fits.PrimaryHDU(data)))
    assert frame.data.dtype == np.float32
    assert frame.data.dtype.isnative
    np.testing.assert_array_equal(frame.data, data)
    assert frame.shape == (20, 30)
    assert (frame.hdu_index, frame.hdu_name) == (0, "PRIMARY")
    assert frame.path == str(tmp_path / "a.fits")


def test_float64_becomes_float32(tmp_path: Path) -> None:
    data = _image().astype(np.float64) + 1e-3
    frame = read_frame(_write(tmp_path / "a.fit", fits.PrimaryHDU(data)))
    assert frame.data.dtype == np.float32
    np.testing.assert_allclose(frame.data, data, rtol=1e-7)


def test_uint16_with_bzero_gives_physical_values(tmp_path: Path) -> None:
    data = np.array([[0, 1, 32767], [32768, 50000, 65535]], dtype=np.uint16)
    path = _write(tmp_path / "u.fts", fits.PrimaryHDU(data))
    with fits.open(path) as hdul:  # the file really stores int16 + BZERO
        assert hdul[0].header["BITPIX"] == 16 and hdul[0].header["BZERO"] == 32768
    frame = read_frame(path)
    assert frame.data.dtype == np.float32
    np.testing.assert_array_equal(frame.data, data.astype(np.float32))
    assert frame.header["BZERO"] == 32768  # the file's scaling stays on record


def test_bscale_bzero_and_blank(tmp_path: Path) -> None:
    raw = np.array([[-3, 0, 7], [100, -32768, 5]], dtype=np.int16)
    hdu = fits.PrimaryHDU(raw)
    hdu.header["BSCALE"] = 2.5
    hdu.header["BZERO"] = 1000.0
    hdu.header["BLANK"] = -32768
    path = tmp_path / "s.fits"
    hdu.writeto(path)
    frame = read_frame(path)
    expected = 1000.0 + 2.5 * raw.astype(np.float64)
    expected[1, 1] = np.nan
    np.testing.assert_allclose(frame.data, expected, rtol=1e-6)
    assert np.isnan(frame.data[1, 1])


def test_tile_compressed_fz(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 65535, (40, 50)).astype(np.uint16)
    path = _write(tmp_path / "c.fits.fz", fits.PrimaryHDU(), fits.CompImageHDU(data, name="SCI"))
    frame = read_frame(path)
    np.testing.assert_array_equal(frame.data, data.astype(np.float32))
    assert (frame.hdu_index, frame.hdu_name) == (1, "SCI")


@pytest.mark.parametrize("name", ["g.fits.gz", "g.fit.gz"])
def test_gzip_compressed(tmp_path: Path, name: str) -> None:
    data = _image()
    plain = _write(tmp_path / "plain.fits", fits.PrimaryHDU(data))
    (tmp_path / name).write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(read_frame(tmp_path / name).data, data)


def test_multi_extension_defaults_to_first_2d_image_and_merges_primary(tmp_path: Path) -> None:
    primary = fits.PrimaryHDU()
    primary.header["DATE-OBS"] = "2021-03-04T05:06:07"
    primary.header["FILTER"] = "r"
    primary.header["OBJECT"] = "from primary"
    primary.header["CTYPE1"] = "RA---TAN"  # a primary WCS must not mix into the extension's
    primary.header["CDELT1"] = 9.0
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=[1.0])])
    sci = fits.ImageHDU(_image(), name="SCI")
    sci.header["OBJECT"] = "from extension"
    sci.header["CTYPE1"] = "RA---TAN"
    sci.header["CD1_1"] = -1e-4
    frame = read_frame(_write(tmp_path / "m.fits", primary, table, sci))
    assert (frame.hdu_index, frame.hdu_name) == (2, "SCI")
    assert frame.header["DATE-OBS"] == "2021-03-04T05:06:07"
    assert frame.header["FILTER"] == "r"
    assert frame.header["OBJECT"] == "from extension"
    assert "CDELT1" not in frame.header
    assert frame.header["EXTNAME"] == "SCI"


def test_primary_wcs_is_inherited_by_an_extension_without_one(tmp_path: Path) -> None:
    primary = fits.PrimaryHDU()
    primary.header["CTYPE1"] = "RA---TAN"
    primary.header["CDELT1"] = -2e-4
    frame = read_frame(_write(tmp_path / "m.fits", primary, fits.ImageHDU(_image())))
    assert frame.header["CTYPE1"] == "RA---TAN" and frame.header["CDELT1"] == -2e-4


def test_merge_does_not_mutate_inputs() -> None:
    image = fits.Header([("NAXIS", 2), ("EXPTIME", 10.0)])
    primary = fits.Header([("SIMPLE", True), ("NAXIS", 0), ("DATE-OBS", "2020-01-01"),
                           ("EXPTIME", 99.0)])
    before = (image.tostring(), primary.tostring())
    merged = _merged_header(image, primary)
    assert merged["DATE-OBS"] == "2020-01-01" and merged["EXPTIME"] == 10.0
    assert merged["NAXIS"] == 2 and "SIMPLE" not in merged
    assert (image.tostring(), primary.tostring()) == before
    merged["EXPTIME"] = 1.0
    assert image["EXPTIME"] == 10.0


@pytest.mark.parametrize("choice", [2, "ERR", "err", "2"])
def test_hdu_chosen_by_index_or_name(tmp_path: Path, choice: int | str) -> None:
    sci, err = _image(seed=1), _image(seed=2)
    path = _write(tmp_path / "m.fits", fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"),
                  fits.ImageHDU(err, name="ERR"))
    frame = read_frame(path, hdu=choice)
    np.testing.assert_array_equal(frame.data, err)
    assert (frame.hdu_index, frame.hdu_name) == (2, "ERR")


def test_single_plane_cube_is_squeezed(tmp_path: Path) -> None:
    data = _image()[np.newaxis]
    frame = read_frame(_write(tmp_path / "p.fits", fits.PrimaryHDU(data)))
    assert frame.shape == (20, 30)
    np.testing.assert_array_equal(frame.data, data[0])


def test_data_is_safe_after_the_file_is_gone(tmp_path: Path) -> None:
    data = _image((64, 64))
    path = _write(tmp_path / "a.fits", fits.PrimaryHDU(data.astype(">f4")))
    frame = read_frame(path)
    path.write_bytes(b"\0" * path.stat().st_size)  # overwrite in place: a live memmap would see it
    path.unlink()
    np.testing.assert_array_equal(frame.data, data)
    assert frame.data.flags.writeable and frame.data.flags.owndata


def test_missing_final_padding_is_accepted(tmp_path: Path) -> None:
    data = _image()
    full = _write(tmp_path / "full.fits", fits.PrimaryHDU(data)).read_bytes()
    unpadded = tmp_path / "unpadded.fits"
    unpadded.write_bytes(full[: 2880 + data.nbytes])  # header block + data, no padding
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy's truncation warning must not leak
        frame = read_frame(unpadded)
    np.testing.assert_array_equal(frame.data, data)


# --- bad files ----------------------------------------------------------------------------


def _error(path: Path, **kwargs: int | str) -> str:
    with pytest.raises(FrameReadError) as info:
        read_frame(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_file_not_found(tmp_path: Path) -> None:
    assert "file not found" in _error(tmp_path / "nope.fits")


def test_directory(tmp_path: Path) -> None:
    assert "not a regular file" in _error(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.fits"
    path.touch()
    assert "empty file (0 bytes)" in _error(path)


def test_png_is_not_fits(tmp_path: Path) -> None:
    path = tmp_path / "image.fits"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    assert "not a FITS file (a PNG image)" in _error(path)


def test_text_is_not_fits(tmp_path: Path) -> None:
    path = tmp_path / "notes.fits"
    path.write_text("RA DEC MAG\n10.0 20.0 15.2\n")
    message = _error(path)
    assert "not a FITS file" in message and "looks like text" in message


def test_gzip_of_text_is_not_fits(tmp_path: Path) -> None:
    path = tmp_path / "notes.fits.gz"
    path.write_bytes(gzip.compress(b"hello world, not an image at all" * 10))
    assert "not a FITS file (gzip-compressed it looks like text" in _error(path)


@pytest.mark.parametrize("keep", [5000, 2880 + 1000, 2880 * 2 + 10])
def test_truncated_fits(tmp_path: Path, keep: int) -> None:
    data = _image((100, 100))  # 40000 bytes of data after one header block
    full = _write(tmp_path / "full.fits", fits.PrimaryHDU(data)).read_bytes()
    assert keep < len(full) - 2880
    cut = tmp_path / "cut.fits"
    cut.write_bytes(full[:keep])
    assert "truncated" in _error(cut)


def test_truncated_header(tmp_path: Path) -> None:
    full = _write(tmp_path / "full.fits", fits.PrimaryHDU(_image())).read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(full[:1600])  # inside the header: no END card
    assert "truncated or corrupt" in _error(cut)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    data = np.random.default_rng(5).normal(0, 1, (200, 200)).astype(np.float32)
    full = _write(tmp_path / "full.fits", fits.PrimaryHDU(data)).read_bytes()
    packed = gzip.compress(full)
    cut = tmp_path / "cut.fits.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    assert "truncated" in _error(cut)


def test_gzip_cut_in_its_first_bytes(tmp_path: Path) -> None:
    path = tmp_path / "tiny.fits.gz"
    path.write_bytes(gzip.compress(b"SIMPLE  =                    T" + bytes(3000))[:12])
    assert "truncated compressed file" in _error(path)


def test_corrupt_gzip_header(tmp_path: Path) -> None:
    path = tmp_path / "bad.fits.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 20)
    assert "cannot be read or decompressed" in _error(path)


def test_truncated_tile_compressed(tmp_path: Path) -> None:
    data = np.random.default_rng(3).integers(0, 65535, (200, 200)).astype(np.uint16)
    full = _write(tmp_path / "c.fits.fz", fits.PrimaryHDU(), fits.CompImageHDU(data))
    cut = tmp_path / "cut.fits.fz"
    cut.write_bytes(full.read_bytes()[:40000])
    assert "truncated FITS file: HDU 1 (COMPRESSED_IMAGE)" in _error(cut)


def test_short_data_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # astropy may hand back fewer pixels than the header promises; that must not pass
    import skyphot.io.fits as module

    path = _write(tmp_path / "a.fits", fits.PrimaryHDU(_image()))
    monkeypatch.setattr(module, "_image_shape", lambda hdu: (25, 30))
    assert "truncated FITS file: HDU 0 (PRIMARY) should hold 30x25 pixels" in _error(path)


def test_non_numeric_bscale(tmp_path: Path) -> None:
    hdu = fits.PrimaryHDU(np.zeros((5, 5), np.int16))
    hdu.header["BSCALE"] = "abc"
    hdu.writeto(tmp_path / "b.fits")
    assert "non-numeric BSCALE/BZERO ('abc'/None)" in _error(tmp_path / "b.fits")


def test_table_only_file(tmp_path: Path) -> None:
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="mag", format="E", array=[1.0, 2.0])], name="CAT"
    )
    message = _error(_write(tmp_path / "t.fits", fits.PrimaryHDU(), table))
    assert "no image data in any HDU" in message
    assert "1 CAT (binary table)" in message


def test_header_only_file(tmp_path: Path) -> None:
    message = _error(_write(tmp_path / "h.fits", fits.PrimaryHDU()))
    assert "no image data in any HDU (0 PRIMARY (no data))" in message


def test_requested_hdu_absent_lists_what_exists(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.fits", fits.PrimaryHDU(), fits.ImageHDU(_image(), name="SCI"))
    message = _error(path, hdu=5)
    assert "HDU 5 does not exist" in message
    assert "0 PRIMARY (no data), 1 SCI (image 30x20)" in message
    message = _error(path, hdu="DQ")
    assert "no HDU named 'DQ'" in message and "1 SCI (image 30x20)" in message


def test_requested_hdu_is_a_table(tmp_path: Path) -> None:
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=[1.0])])
    path = _write(tmp_path / "t.fits", fits.PrimaryHDU(_image()), table)
    assert "HDU 1 is a binary table, not an image" in _error(path, hdu=1)


def test_requested_header_only_hdu(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.fits", fits.PrimaryHDU(), fits.ImageHDU(_image()))
    assert "HDU 0 (PRIMARY) holds no image data" in _error(path, hdu=0)


def test_true_cube_is_refused(tmp_path: Path) -> None:
    cube = np.zeros((3, 20, 30), dtype=np.float32)
    message = _error(_write(tmp_path / "cube.fits", fits.PrimaryHDU(cube)))
    assert "data cube (30x20x3, 3 planes of 30x20)" in message
    assert "extract a plane first" in message


def test_one_dimensional_data_is_refused(tmp_path: Path) -> None:
    spectrum = np.zeros(100, dtype=np.float32)
    message = _error(_write(tmp_path / "spec.fits", fits.PrimaryHDU(spectrum)))
    assert "1-D data (100); unsupported dimension" in message


# --- real files ---------------------------------------------------------------------------


def test_real_feder_uint16_gz(real: Path) -> None:
    frame = read_frame(real / "eyuma_feder_thumbnail.fit.gz")
    assert frame.shape == (256, 256) and frame.data.dtype == np.float32
    # uint16 stored as int16 + 32768: physical values are whole ADU up to the ADC maximum
    assert float(frame.data.max()) == 65535.0
    assert np.all(frame.data == np.round(frame.data)) and float(frame.data.min()) > 0


def test_real_hst_multi_extension(real: Path) -> None:
    frame = read_frame(real / "hst_acs_47tuc_j8bt06nyq_flt.fits")
    assert (frame.hdu_index, frame.hdu_name, frame.shape) == (1, "SCI", (1024, 1024))
    assert frame.header["EXPSTART"] == pytest.approx(52377.86137319)  # from the primary
    assert frame.header["BUNIT"] == "ELECTRONS"  # the extension's own
    dq = read_frame(real / "hst_acs_47tuc_j8bt06nyq_flt.fits", hdu="DQ")
    assert dq.hdu_index == 3


def test_real_scaled_int16(real: Path) -> None:
    frame = read_frame(real / "sep_ntt_emmi_image.fits")  # BSCALE 2.92, BZERO 3713.7
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its non-standard ESO-LOG cards
        with fits.open(real / "sep_ntt_emmi_image.fits") as hdul:
            reference = hdul[0].data.astype(np.float64)  # astropy's own scaling
    np.testing.assert_allclose(frame.data, reference, rtol=1e-6)


def test_real_truncated_copy(real: Path, tmp_path: Path) -> None:
    cut = tmp_path / "hst_cut.fits"
    cut.write_bytes((real / "hst_acs_47tuc_j8bt06nyq_flt.fits").read_bytes()[:3_000_000])
    message = _error(cut)
    assert "truncated FITS file: HDU 1 (SCI) should hold 4194304 bytes" in message


def test_real_table_file_is_refused(real: Path) -> None:
    message = _error(real / "cpt1m012-fa06-20200113-0102-matched-cat.fits")
    assert "no image data in any HDU" in message

"""Decompression bombs and oversized headers are refused from the headers alone, before any
decompression (issue 10, hostile items 2 and 5)."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from skyphot.errors import FrameReadError
from skyphot.io.fits_limits import MAX_HEADER_CARDS, check_fits_size


def _card(key: str, value: int) -> bytes:
    return f"{key:<8}= {value:>20d}".ljust(80).encode()


def fz_bomb(path: Path, side: int = 100_000) -> Path:
    """A small tile-compressed file whose header declares a ``side`` x ``side`` image."""
    out = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((64, 64), np.float32))]
                 ).writeto(out)
    content = out.getvalue()
    for key in ("ZNAXIS1", "ZNAXIS2"):
        start = content.index(key.encode())
        content = content[:start] + _card(key, side) + content[start + 80:]
    path.write_bytes(content)
    return path


def gz_bomb(path: Path, side: int) -> Path:
    """A gzip file of a ``side`` x ``side`` float32 image of zeros (compresses ~1000:1)."""
    header = fits.Header([("SIMPLE", True), ("BITPIX", -32), ("NAXIS", 2),
                          ("NAXIS1", side), ("NAXIS2", side)])
    raw = header.tostring().encode()
    zeros = bytes(1 << 20)
    total = 4 * side * side
    with gzip.open(path, "wb", compresslevel=9) as stream:
        stream.write(raw)
        while total > 0:
            stream.write(zeros[:min(total, len(zeros))])
            total -= len(zeros)
        stream.write(bytes(-(4 * side * side) % 2880))
    return path


def test_plain_frame_passes_with_its_true_size(tmp_path: Path) -> None:
    path = tmp_path / "ok.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((30, 40), np.int16))]
                 ).writeto(path)
    size = check_fits_size(path, max_pixels=1200)
    assert (size.largest_image_pixels, size.hdus) == (1200, 2)
    assert size.declared_bytes == 30 * 40 * 2
    with pytest.raises(FrameReadError, match=r"HDU 1 declares a 40x30 image \(1,200 pixels\), "
                       r"more than the 1,199 this server accepts \(max_image_pixels\)"):
        check_fits_size(path, max_pixels=1199)


def test_tile_compressed_bomb_is_refused_by_its_znaxis(tmp_path: Path) -> None:
    bomb = fz_bomb(tmp_path / "bomb.fits.fz")
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(FrameReadError, match=r"'upload\.fits\.fz': HDU 1 declares a "
                       r"100000x100000 image \(10,000,000,000 pixels\)"):
        check_fits_size(bomb, max_pixels=200_000_000, name="'upload.fits.fz'")


def test_gzip_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = gz_bomb(tmp_path / "bomb.fits.gz", 2000)  # 16 MB inside, 16 kB outside
    assert bomb.stat().st_size < 100_000
    with pytest.raises(FrameReadError, match=r"declares a 2000x2000 image \(4,000,000 pixels"):
        check_fits_size(bomb, max_pixels=1_000_000)
    assert check_fits_size(bomb, max_pixels=4_000_000).declared_bytes == 16_000_000


def test_many_small_hdus_exceeding_the_data_budget_are_refused(tmp_path: Path) -> None:
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(np.zeros((30, 30), np.float64))
                                  for _ in range(40)]
    path = tmp_path / "many.fits.gz"
    out = io.BytesIO()
    fits.HDUList(hdus).writeto(out)
    path.write_bytes(gzip.compress(out.getvalue()))
    # budget: 8 bytes x 1000 pixels + 64 blocks = 192 kB; declared 40 x 7.2 kB = 288 kB
    with pytest.raises(FrameReadError, match=r"declares 0\.0 GB of data, more than the 0\.0 GB "
                       r"allowed by max_image_pixels \(1,000 pixels\)"):
        check_fits_size(path, max_pixels=1000)


def test_header_with_too_many_cards_is_refused(tmp_path: Path) -> None:
    header = fits.Header([("SIMPLE", True), ("BITPIX", 8), ("NAXIS", 0)])
    for i in range(MAX_HEADER_CARDS + 100):
        header.append(("COMMENT", f"card {i}"), end=True)
    path = tmp_path / "long.fits"
    fits.PrimaryHDU(header=header).writeto(path)
    with pytest.raises(FrameReadError, match=rf"more than {MAX_HEADER_CARDS} cards"):
        check_fits_size(path, max_pixels=10)


def test_truncated_header_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut.fits"
    fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(FrameReadError, match=r"cut\.fits: truncated FITS header"):
        check_fits_size(path, max_pixels=100)


@pytest.mark.slow
def test_refusing_a_gzip_bomb_keeps_memory_small(tmp_path: Path) -> None:
    """Peak memory of the check in a fresh process (getrusage): refusing a 64 MB bomb, and
    walking it through to the end when the limit allows it, both stay within a few MB."""
    bomb = gz_bomb(tmp_path / "bomb.fits.gz", 4000)
    script = textwrap.dedent(f"""
        import resource
        from skyphot.errors import FrameReadError
        from skyphot.io.fits_limits import check_fits_size
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            check_fits_size({str(bomb)!r}, max_pixels=1_000_000)
        except FrameReadError:
            pass
        else:
            raise SystemExit("not refused")
        assert check_fits_size({str(bomb)!r}, max_pixels=16_000_000).hdus == 1
        print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    before_kb, after_kb = map(int, done.stdout.split())
    assert after_kb - before_kb < 20_000, (before_kb, after_kb)

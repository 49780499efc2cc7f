"""On-disk cache of template images, like the catalog cache.

Layout under the root (default ``$SKYPHOT_TEMPLATE_DIR`` or ``~/.cache/skyphot/templates``)::

    <survey>/<band>/<tile>_<ra>_<dec>_<size>.fits

``tile`` is a 0.5-degree sky cell, so a follow-up campaign finds a field's template by
reading a few headers. Files are written to a temporary name and renamed (atomic: a reader
never sees half a file); each use touches the file, and the least recently used files are
removed when the cache grows beyond ``max_bytes``. Templates imported by hand live under the
survey name the user gives ('local' by default), so observatories without internet can work
from their own references.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from skyphot.errors import TemplateError

DEFAULT_MAX_BYTES = 20 * 1024**3
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,40}$")
_TILE_DEG = 0.5
# By default the target must be this far inside a cached template to use it.
_EDGE_ARCSEC = 30.0


def default_template_dir() -> Path:
    """``$SKYPHOT_TEMPLATE_DIR`` if set, else ``~/.cache/skyphot/templates``."""
    env = os.environ.get("SKYPHOT_TEMPLATE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "skyphot" / "templates"


@dataclass(frozen=True)
class CachedTemplate:
    """A template file in the cache."""

    path: Path
    survey: str
    band: str


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise TemplateError(
            f"{kind} name {value!r} is not usable in the template cache; use letters, digits "
            "and _ . + - only"
        )
    return value


def tile_name(ra: float, dec: float) -> str:
    """The 0.5-degree cell of (ra, dec), e.g. 'c0300p004'."""
    i = math.floor((ra % 360.0) / _TILE_DEG)
    j = math.floor((dec + 90.0) / _TILE_DEG)
    return f"c{i:04d}p{j:03d}"


def _image_hdu(hdul: fits.HDUList) -> fits.hdu.base.ExtensionHDU | fits.PrimaryHDU:
    for hdu in hdul:
        if hdu.is_image and hdu.data is not None and getattr(hdu.data, "ndim", 0) == 2:
            return hdu
    raise TemplateError(f"{hdul.filename()} has no 2-D image to use as a template")


def _footprint_margin(path: Path, ra: float, dec: float) -> float:
    """Arcsec between (ra, dec) and the nearest edge of the template (negative: outside)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        with fits.open(path, memmap=False) as hdul:
            hdu = _image_hdu(hdul)
            wcs = WCS(hdu.header).celestial
            ny, nx = hdu.data.shape
    x, y = wcs.all_world2pix(np.array([ra]), np.array([dec]), 0)
    if not (np.isfinite(x[0]) and np.isfinite(y[0])):
        return -math.inf
    scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
    return scale * float(min(x[0] + 0.5, nx - 0.5 - x[0], y[0] + 0.5, ny - 0.5 - y[0]))


class TemplateCache:
    """Template files per survey, band and sky tile (see the module docstring)."""

    def __init__(self, root: str | Path | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root).expanduser() if root is not None else default_template_dir()
        self.max_bytes = int(max_bytes)

    def find(
        self,
        ra: float,
        dec: float,
        band: str,
        *,
        survey: str | None = None,
        min_margin_arcsec: float = _EDGE_ARCSEC,
    ) -> CachedTemplate | None:
        """The cached template of ``band`` that holds (ra, dec) deepest inside it (at least
        ``min_margin_arcsec`` from every edge), or None when the cache has none (a miss is an
        ordinary answer, not a failure)."""
        surveys = [survey] if survey else sorted(
            p.name for p in self.root.iterdir() if p.is_dir()
        ) if self.root.is_dir() else []
        best: tuple[float, CachedTemplate] | None = None
        for name in surveys:
            directory = self.root / _check_name("survey", name) / _check_name("band", band)
            if not directory.is_dir():
                continue
            for path in sorted(directory.glob("*.fits")):
                margin = _footprint_margin(path, ra, dec)
                if margin >= min_margin_arcsec and (best is None or margin > best[0]):
                    best = (margin, CachedTemplate(path=path, survey=name, band=band))
        if best is None:
            return None
        os.utime(best[1].path)  # least-recently-used bookkeeping
        return best[1]

    def store(
        self, source: Path, *, survey: str, band: str, ra: float, dec: float, size_px: int
    ) -> CachedTemplate:
        """Copy ``source`` into the cache atomically, then evict beyond ``max_bytes``."""
        directory = self.root / _check_name("survey", survey) / _check_name("band", band)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{tile_name(ra, dec)}_{ra:09.5f}_{dec:+09.5f}_{size_px}.fits"
        target = directory / name
        fd, tmp_name = tempfile.mkstemp(prefix=".part-", suffix=".fits", dir=directory)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            shutil.copyfile(source, tmp)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        self.evict(keep=target)
        return CachedTemplate(path=target, survey=survey, band=band)

    def evict(self, *, keep: Path | None = None) -> list[Path]:
        """Remove least recently used files until the cache fits ``max_bytes``."""
        files = sorted(
            (p for p in self.root.glob("*/*/*.fits") if p != keep),
            key=lambda p: p.stat().st_mtime,
        )
        total = sum(p.stat().st_size for p in files) + (
            keep.stat().st_size if keep is not None and keep.exists() else 0
        )
        removed: list[Path] = []
        for path in files:
            if total <= self.max_bytes:
                break
            total -= path.stat().st_size
            path.unlink()
            removed.append(path)
        return removed

    def import_file(self, path: str | Path, *, survey: str, band: str) -> CachedTemplate:
        """Put a user's template into the cache under ``survey`` and ``band``; the file must
        be a readable FITS image with a celestial WCS."""
        src = Path(path)
        if not src.is_file():
            raise TemplateError(f"template file {src} does not exist or is not a file")
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                with fits.open(src, memmap=False) as hdul:
                    hdu = _image_hdu(hdul)
                    wcs = WCS(hdu.header).celestial
                    ny, nx = hdu.data.shape
                    if not wcs.has_celestial:
                        raise TemplateError(
                            f"template {src.name} has no celestial WCS; solve it before importing"
                        )
                    ra, dec = wcs.all_pix2world(
                        np.array([(nx - 1) / 2]), np.array([(ny - 1) / 2]), 0
                    )
                    plain = src.suffix.lower() == ".fits" and hdu is hdul[0]
                    if not plain:  # store compressed or extension images as a plain file
                        out = Path(tempfile.mkdtemp(prefix="skyphot-tpl-")) / "t.fits"
                        fits.PrimaryHDU(data=hdu.data, header=hdu.header).writeto(out)
                        src = out
        except OSError as err:
            raise TemplateError(
                f"template {Path(path).name} cannot be read as FITS: {err}"
            ) from err
        return self.store(
            src, survey=survey, band=band, ra=float(ra[0]), dec=float(dec[0]), size_px=max(nx, ny)
        )

"""Reference catalogs from local files: ECSV, CSV/whitespace text, FITS tables, Parquet, VOTable.

``load_catalog_file`` reads a file, recognises its columns (``skyphot.catalogs.columns``) and
returns a ``ReferenceCatalog`` with normalised columns ``ra``, ``dec`` (degrees), and ``b``,
``b_err`` (magnitudes) per band. ``LocalCatalog`` serves cone searches from such a file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import ascii as astropy_ascii
from astropy.io import fits
from astropy.table import Table
from astropy.units import UnitsWarning
from numpy.typing import NDArray

from skyphot.catalogs.base import ReferenceCatalog
from skyphot.catalogs.columns import (
    ColumnMap,
    clean_errors,
    clean_magnitudes,
    recognise_columns,
    to_float,
)
from skyphot.catalogs.sky import center_degrees, cone_mask
from skyphot.errors import CatalogError

SUPPORTED = "ECSV, CSV (comma, tab or whitespace separated), FITS table, Parquet, VOTable"

_EXTENSIONS: dict[str, str] = {
    ".ecsv": "ecsv",
    ".csv": "text", ".tsv": "text", ".tab": "text", ".txt": "text", ".dat": "text",
    ".cat": "text", ".asc": "text",
    ".fits": "fits", ".fit": "fits", ".fts": "fits", ".fits.gz": "fits", ".fit.gz": "fits",
    ".parquet": "parquet", ".pq": "parquet",
    ".xml": "votable", ".vot": "votable", ".votable": "votable",
}

# Sexagesimal "hh:mm:ss.s", "hh mm ss", "12h34m56s", "+12d34'56\"", "-12°34′56″".
_SEXAGESIMAL = re.compile(
    r"^\s*([+-]?)\s*(\d+(?:\.\d*)?)\s*[:\shd°]\s*(\d+(?:\.\d*)?)\s*[:\sm'′]?\s*"
    r"(\d+(?:\.\d*)?)?\s*[s\"″]?\s*$"
)


def _format_from_name(path: Path) -> str | None:
    name = path.name.lower()
    for ext in sorted(_EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext):
            return _EXTENSIONS[ext]
    return None


def _format_from_content(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(512)
    if head.startswith(b"SIMPLE") or head.startswith(b"\x1f\x8b"):
        return "fits"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip().startswith(b"# %ECSV"):
        return "ecsv"
    stripped = head.lstrip()
    if stripped.startswith(b"<?xml") or stripped[:9].upper() == b"<VOTABLE":
        return "votable"
    return "text"


def _read_fits(path: Path) -> Table:
    with fits.open(path, memmap=False) as hdul:
        tables = [i for i, hdu in enumerate(hdul)
                  if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU))]
        if not tables:
            raise ValueError("the FITS file has no table extension")
        with_rows = [i for i in tables if hdul[i].data is not None and len(hdul[i].data) > 0]
        index = (with_rows or tables)[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnitsWarning)
            return Table.read(hdul[index])


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq  # deferred: only needed for Parquet files

    arrow = pq.read_table(path)
    out = Table()
    for name in arrow.column_names:
        column = arrow.column(name)
        values = column.to_numpy(zero_copy_only=False)
        nulls = column.is_null().to_numpy(zero_copy_only=False)
        if values.dtype.kind == "O":
            values = np.array(["" if v is None else str(v) for v in values])
        out[name] = np.ma.MaskedArray(values, mask=nulls) if nulls.any() else values
    return out


def _read_text(path: Path) -> Table:
    """CSV, tab- or whitespace-separated text with a header line (or a ``#`` header line)."""
    lines = path.read_text(errors="replace").splitlines()
    first_body = next((i for i, ln in enumerate(lines)
                       if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first_body is None:
        raise ValueError("no header or data lines")
    header = lines[first_body]
    delimiter: str | None = None  # None: whitespace
    for candidate in (",", "\t", ";", "|"):
        if candidate in header:
            delimiter = candidate
            break
    tokens = [t for t in re.split(r"[,\t;|\s]+", header.strip()) if t]
    leading_comments = [ln for ln in lines[:first_body] if ln.lstrip().startswith("#")]
    kwargs: dict[str, object] = {"format": "basic"}
    if tokens and all(_is_number(t) for t in tokens) and leading_comments:
        # no header line: the column names are in the last comment line before the data
        kwargs = {"format": "commented_header", "header_start": len(leading_comments) - 1}
    if delimiter is not None:
        kwargs["delimiter"] = delimiter
    missing = [("", "0"), ("NA", "0"), ("N/A", "0"), ("--", "0"), ("null", "0"),
               ("None", "0")]
    table: Table = astropy_ascii.read(str(path), fill_values=missing, **kwargs)
    return table


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_with(fmt: str, path: Path) -> Table:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitsWarning)
        warnings.filterwarnings("ignore", module=r"astropy\.io\.votable")
        if fmt == "fits":
            return _read_fits(path)
        if fmt == "parquet":
            return _read_parquet(path)
        if fmt == "text":
            return _read_text(path)
        return Table.read(path, format=fmt)


def read_table(path: str | Path) -> Table:
    """Read a catalog file as an astropy ``Table``: format from the extension, then from the
    content. Raises ``CatalogError`` (missing, unreadable, unknown format)."""
    file = Path(path)
    if not file.exists():
        raise CatalogError(
            f"Catalog file {file} does not exist. Check the path (relative paths are taken "
            f"from the working directory {Path.cwd()})."
        )
    if not file.is_file():
        raise CatalogError(f"Catalog path {file} is not a file; give the catalog file itself.")
    tried: list[str] = []
    by_name = _format_from_name(file)
    try:
        by_content = _format_from_content(file)
    except OSError as exc:
        raise CatalogError(f"Catalog file {file} cannot be opened: {exc}. "
                           "Check its permissions.") from exc
    for fmt in dict.fromkeys(f for f in (by_name, by_content) if f is not None):
        try:
            return _read_with(fmt, file)
        except (ValueError, TypeError, KeyError, IndexError, OSError,
                UnicodeDecodeError, astropy_ascii.InconsistentTableError) as exc:
            tried.append(f"as {fmt}: {exc}")
    raise CatalogError(
        f"Cannot read catalog file {file} ({'; '.join(tried)}). Supported formats: "
        f"{SUPPORTED}; convert the file to one of them."
    )


def _sexagesimal_to_float(text: str, *, hours: bool) -> float:
    match = _SEXAGESIMAL.match(text)
    if match is None:
        return float("nan")
    sign, a, b, c = match.groups()
    value = float(a) + float(b) / 60.0 + (float(c) if c else 0.0) / 3600.0
    value = -value if sign == "-" else value
    return value * 15.0 if hours else value


def coordinate_degrees(column: object, *, is_ra: bool) -> NDArray[np.float64]:
    """A coordinate column as float degrees.

    Numbers are degrees unless the column's unit says hours (``h``/``hourangle``) or
    radians. Text that is a plain number is degrees; sexagesimal text is hours for RA and
    degrees for Dec. Unparseable values become NaN.
    """
    unit = getattr(column, "unit", None)
    data: np.ma.MaskedArray = np.ma.asarray(column)
    if data.dtype.kind in "fiu":
        values = to_float(column)
        # hours or radians are converted; anything else (none, unrecognised, "mag" on a
        # mislabelled column) is taken as degrees
        if isinstance(unit, u.UnitBase) and not isinstance(unit, u.UnrecognizedUnit) and (
            unit.physical_type == "angle"
        ):
            values = (values * unit).to_value(u.deg)
        return values
    mask = np.ma.getmaskarray(data)
    out = np.full(data.shape, np.nan, dtype=np.float64)
    for index, (value, masked) in enumerate(zip(np.ma.getdata(data), mask, strict=True)):
        if masked:
            continue
        text = (value.decode() if isinstance(value, bytes) else str(value)).strip()
        try:
            out[index] = float(text)
        except ValueError:
            out[index] = _sexagesimal_to_float(text, hours=is_ra)
    return out


def normalise_table(table: Table, colmap: ColumnMap) -> tuple[Table, tuple[str, ...]]:
    """The normalised table (``ra``, ``dec``, ``b``, ``b_err`` as float64) and its bands.

    Rows without a valid position are dropped; sentinel magnitudes and errors become NaN.
    """
    if colmap.ra is None or colmap.dec is None:
        raise ValueError("no coordinate columns")
    ra = coordinate_degrees(table[colmap.ra], is_ra=True)
    dec = coordinate_degrees(table[colmap.dec], is_ra=False)
    good = np.isfinite(ra) & np.isfinite(dec) & (np.abs(dec) <= 90.0)
    out = Table()
    out["ra"] = np.mod(ra[good], 360.0)
    out["dec"] = dec[good]
    bands = tuple(colmap.mags)
    for band in bands:
        mag = clean_magnitudes(to_float(table[colmap.mags[band]]))
        if band in colmap.errs:
            err = clean_errors(to_float(table[colmap.errs[band]]))
        elif band in colmap.err_from_flux_over_error:
            foe = to_float(table[colmap.err_from_flux_over_error[band]])
            with np.errstate(divide="ignore", invalid="ignore"):
                err = clean_errors(2.5 / np.log(10.0) / foe)
        else:
            err = np.full(len(mag), np.nan)
        err[~np.isfinite(mag)] = np.nan
        out[band] = mag[good]
        out[f"{band}_err"] = err[good]
    return out, bands


def _column_list(table: Table, limit: int = 40) -> str:
    names = list(table.colnames)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def require_bands(
    catalog: ReferenceCatalog, bands: Sequence[str], *, source: str
) -> None:
    """Raise ``CatalogError`` unless ``catalog`` carries every band in ``bands``.

    ``source`` names the file or service in the message.
    """
    check_bands(catalog.bands, bands, source=source)


def check_bands(available: Sequence[str], bands: Sequence[str], *, source: str) -> None:
    """Raise ``CatalogError`` naming ``source`` unless every one of ``bands`` is available."""
    missing = [b for b in bands if b not in available]
    if not missing:
        return
    found = ", ".join(available) if available else "none"
    example = missing[0]
    raise CatalogError(
        f"{source} has no {'/'.join(missing)} magnitudes (bands found: {found}). Calibrate "
        f"to one of the bands found, or map the right columns explicitly, e.g. "
        f"columns={{'{example}': '<magnitude column>', '{example}_err': '<error column>'}} "
        f"(CLI: --catalog-columns {example}=<column>,{example}_err=<column>). "
        "Band names are case-sensitive: u g r i z y (SDSS/PS1), U B V R I "
        "(Johnson-Cousins), J H K (2MASS), G BP RP (Gaia)."
    )


def load_catalog_file(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    name: str | None = None,
    magsys: str = "AB",
    bands: Sequence[str] | None = None,
) -> ReferenceCatalog:
    """Read a local catalog file into a ``ReferenceCatalog`` (positions in degrees, ICRS).

    ``columns`` maps normalised names (``ra``, ``dec``, a band such as ``r``, ``r_err``) to
    file columns and overrides recognition. ``name`` defaults to the file name. When
    ``bands`` is given, every one of them must be present. Raises ``CatalogError`` naming
    the file and what to do.
    """
    file = Path(path)
    table = read_table(file)
    if len(table) == 0:
        raise CatalogError(
            f"Catalog file {file} has no rows (columns: {_column_list(table)}). It is empty, "
            "perhaps from a cone search that found nothing; make it again for this field."
        )
    try:
        colmap = recognise_columns(table, columns=columns)
    except KeyError as exc:
        raise CatalogError(
            f"Catalog file {file}: the column mapping {exc.args[0]} names a column the file "
            f"does not have. Columns in the file: {_column_list(table)}."
        ) from exc
    if colmap.ra is None or colmap.dec is None:
        missing = " and ".join(k for k, v in (("RA", colmap.ra), ("Dec", colmap.dec))
                               if v is None)
        raise CatalogError(
            f"Catalog file {file} has no recognisable {missing} column (columns found: "
            f"{_column_list(table)}). Map them explicitly, e.g. "
            "columns={'ra': '<RA column>', 'dec': '<Dec column>'} (CLI: --catalog-columns "
            "ra=<RA column>,dec=<Dec column>); values in degrees, or sexagesimal text with RA "
            "in hours."
        )
    normalised, found = normalise_table(table, colmap)
    if len(normalised) == 0:
        raise CatalogError(
            f"Catalog file {file}: no row has a valid position in columns {colmap.ra!r}/"
            f"{colmap.dec!r}. Check that they hold degrees or sexagesimal text, or map other "
            "columns with columns={'ra': ..., 'dec': ...}."
        )
    catalog = ReferenceCatalog(
        table=normalised, bands=found, name=name or file.name, magsys=magsys
    )
    if bands:
        require_bands(catalog, bands, source=f"Catalog file {file}")
    return catalog


def select_cone(
    catalog: ReferenceCatalog, center: SkyCoord, radius_deg: float, bands: Sequence[str]
) -> ReferenceCatalog:
    """Rows of ``catalog`` within ``radius_deg`` of ``center``, keeping ``ra``, ``dec`` and
    the requested bands (all bands if ``bands`` is empty). Bands must be present."""
    ra0, dec0 = center_degrees(center)
    table = catalog.table
    mask = cone_mask(np.asarray(table["ra"]), np.asarray(table["dec"]), ra0, dec0, radius_deg)
    keep_bands = tuple(bands) if bands else catalog.bands
    names = ["ra", "dec"] + [n for b in keep_bands for n in (b, f"{b}_err")]
    subset = table[names][mask]
    return ReferenceCatalog(table=subset, bands=keep_bands, name=catalog.name,
                            magsys=catalog.magsys, systems=catalog.systems)


class LocalCatalog:
    """A ``CatalogProvider`` that cone-filters the stars of one local file.

    The file is read once, when the provider is made, so a bad file fails early.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        columns: Mapping[str, str] | None = None,
        name: str | None = None,
        magsys: str = "AB",
    ) -> None:
        self.path = Path(path)
        self.catalog = load_catalog_file(self.path, columns=columns, name=name, magsys=magsys)
        self.name = self.catalog.name

    @property
    def bands(self) -> tuple[str, ...]:
        """Bands the file carries."""
        return self.catalog.bands

    def query(
        self, center: SkyCoord, radius_deg: float, bands: Sequence[str]
    ) -> ReferenceCatalog:
        """Stars of the file within ``radius_deg`` (degrees) of ``center``.

        Raises ``CatalogError`` if a band is absent or no star of the file lies in the cone
        (the file is probably for another field).
        """
        require_bands(self.catalog, bands, source=f"Catalog file {self.path}")
        result = select_cone(self.catalog, center, radius_deg, bands)
        if len(result) == 0:
            ra0, dec0 = center_degrees(center)
            table = self.catalog.table
            raise CatalogError(
                f"No star of catalog file {self.path} lies within {radius_deg:.3f} deg of "
                f"RA {ra0:.5f}, Dec {dec0:+.5f}. The file covers RA "
                f"{float(np.min(table['ra'])):.3f}..{float(np.max(table['ra'])):.3f}, Dec "
                f"{float(np.min(table['dec'])):+.3f}..{float(np.max(table['dec'])):+.3f} deg; "
                "give a catalog for this field."
            )
        return result

"""The list of online catalogs, their aliases, and the automatic choice for a band and field.

Automatic choice (``choose_catalog``):

* J H K → 2MASS;
* g r i z y north of Dec −30° → Pan-STARRS1 (``ps1``);
* g r i z south of Dec −30° → SkyMapper DR4 (``skymapper``);
* G BP RP → ATLAS-RefCat2 (``refcat2``, which carries Gaia DR2 photometry);
* U B V R I and u → Gaia DR3 synthetic photometry (``gaia_synth``), which is also the
  fallback everywhere for the bands it serves (all-sky).

A catalog can be forced by name (``catalog=``); aliases such as ``gaia``, ``panstarrs``,
``atlas`` are accepted.
"""

from __future__ import annotations

from skyphot.catalogs.vizier import PROVIDERS
from skyphot.errors import CatalogError

ALIASES: dict[str, str] = {
    "gaia": "gaia_synth", "gaia_synth": "gaia_synth", "gaiasynth": "gaia_synth",
    "gaia_xp": "gaia_synth", "gaiaxp": "gaia_synth", "gaiadr3": "gaia_synth",
    "syntphot": "gaia_synth", "gspc": "gaia_synth",
    "ps1": "ps1", "panstarrs": "ps1", "pan-starrs": "ps1", "pan_starrs": "ps1",
    "panstarrs1": "ps1",
    "skymapper": "skymapper", "smss": "skymapper", "sm": "skymapper",
    "refcat2": "refcat2", "atlas": "refcat2", "atlas-refcat2": "refcat2",
    "atlas_refcat2": "refcat2", "refcat": "refcat2",
    "apass": "apass", "apass9": "apass", "apass_dr9": "apass",
    "sdss": "sdss", "sdss16": "sdss", "sdss_dr16": "sdss",
    "2mass": "2mass", "twomass": "2mass", "2mass_psc": "2mass",
}

PS1_SOUTH_LIMIT_DEG = -30.0
"""Pan-STARRS1 3pi covers Dec > -30 deg; SkyMapper serves g r i z south of it."""


def catalog_names() -> tuple[str, ...]:
    """The online catalogs by their skyphot names."""
    return tuple(PROVIDERS)


def canonical_name(name: str) -> str:
    """The skyphot name of an online catalog given by name or alias (case-insensitive).

    Raises ``CatalogError`` listing the known names.
    """
    key = name.strip().lower()
    if key in ALIASES:
        return ALIASES[key]
    raise CatalogError(
        f"Unknown online catalog {name!r}. Known: {', '.join(catalog_names())} (aliases: "
        f"{', '.join(sorted(k for k in ALIASES if k not in PROVIDERS))}). A catalog "
        "imported into the cache is used by the name given at import."
    )


def choose_catalog(
    band: str, ra: float, dec: float, *, catalog: str | None = None
) -> str:
    """The online catalog to calibrate ``band`` at (``ra``, ``dec``) (degrees).

    ``catalog`` forces a catalog (name or alias); it must serve the band. Raises
    ``CatalogError`` when no catalog serves the band there.
    """
    if catalog is not None:
        name = canonical_name(catalog)
        served = PROVIDERS[name].SPEC.bands
        if band not in served:
            raise CatalogError(
                f"Catalog {name} ({PROVIDERS[name].SPEC.title}) has no {band} magnitudes; it "
                f"serves {', '.join(served)}. Choose another band or let skyphot choose the "
                "catalog."
            )
        return name
    north = dec > PS1_SOUTH_LIMIT_DEG
    if band in ("J", "H", "K"):
        return "2mass"
    if band in ("g", "r", "i", "z", "y") and north:
        return "ps1"
    if band in ("g", "r", "i", "z") and not north:
        return "skymapper"
    if band in ("G", "BP", "RP"):
        return "refcat2"
    if band in PROVIDERS["gaia_synth"].SPEC.bands:
        return "gaia_synth"
    serving = [n for n, cls in PROVIDERS.items() if band in cls.SPEC.bands]
    where = f"at Dec {dec:+.2f}" if serving else "anywhere"
    hint = (f" ({', '.join(serving)} serve it elsewhere)" if serving else "")
    raise CatalogError(
        f"No online catalog serves band {band!r} {where}{hint}. Calibrate to another band "
        "(--band) or give a local catalog with --catalog FILE."
    )

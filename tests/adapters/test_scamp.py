"""SCAMP refines a wrong header WCS to the truth, offline, from a local reference file."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS, Sip

from skyphot.adapters._process import available
from skyphot.adapters.scamp import refine_wcs_scamp
from skyphot.adapters.sextractor import detect_sources_sextractor
from skyphot.catalogs.base import ReferenceCatalog
from skyphot.core.detection import SourceList
from skyphot.errors import AstrometryError, CatalogError

pytestmark = [
    pytest.mark.tools,
    pytest.mark.skipif(not (available("scamp") and available("source-extractor")),
                       reason="scamp or source-extractor is not installed"),
]


@pytest.fixture(scope="module")
def sources(sim_frame) -> SourceList:
    f = sim_frame
    return detect_sources_sextractor(f.data - f.sky, rms=f.noise)


def _perturbed(wcs: WCS, shift_arcsec: tuple[float, float], rot_deg: float,
               scale: float) -> WCS:
    wrong = copy.deepcopy(wcs)
    wrong.wcs.crval = wrong.wcs.crval + np.array(shift_arcsec) / 3600.0
    r = np.deg2rad(rot_deg)
    rotation = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    wrong.wcs.cd = wrong.wcs.cd @ rotation * scale
    return wrong


def _pixel_residuals(sim_frame, wcs: WCS) -> np.ndarray:
    x, y = wcs.all_world2pix(sim_frame.ra, sim_frame.dec, 0)
    return np.hypot(x - sim_frame.x, y - sim_frame.y)


@pytest.mark.parametrize("degree", [1, 3])
def test_wrong_header_is_refined_to_truth(sim_frame, sources: SourceList, degree: int) -> None:
    f = sim_frame
    wrong = _perturbed(f.wcs, (40.0, -30.0), 1.5, 1.01)
    assert np.max(_pixel_residuals(f, wrong)) > 20  # really wrong to begin with
    reference = Table({"ra": f.ra, "dec": f.dec, "mag": f.mag})
    solution = refine_wcs_scamp(sources, wcs=wrong, reference=reference, shape=f.shape,
                                distortion_degree=degree)
    assert solution.method == "scamp"
    assert np.max(_pixel_residuals(f, solution.wcs)) < 0.1
    assert solution.n_matched >= 0.95 * len(sources)
    assert solution.matched_fraction > 0.95
    # Residual rms as expected from centroid noise (well under 0.1 px = 0.12 arcsec).
    assert solution.rms_arcsec < 0.06
    i, j = solution.matched_source, solution.matched_catalog
    assert np.all(np.hypot(sources.x[i] - f.x[j], sources.y[i] - f.y[j]) < 0.5)
    assert solution.residual_x_arcsec.shape == (solution.n_matched,)
    assert abs(np.mean(solution.residual_x_arcsec)) < 0.02
    assert solution.wcs.pixel_shape == (f.shape[1], f.shape[0])


def test_reference_catalog_object_and_band(sim_frame, sources: SourceList) -> None:
    f = sim_frame
    table = Table({"ra": f.ra, "dec": f.dec, "r": f.mag, "r_err": np.full(f.mag.size, 0.02)})
    catalog = ReferenceCatalog(table=table, bands=("r",), name="truth")
    wrong = _perturbed(f.wcs, (-15.0, 10.0), -0.5, 0.995)
    solution = refine_wcs_scamp(sources, wcs=wrong, reference=catalog, shape=f.shape)
    assert np.max(_pixel_residuals(f, solution.wcs)) < 0.1


def test_sip_header_is_accepted_as_a_starting_point(sim_frame, sources: SourceList) -> None:
    f = sim_frame
    start = _perturbed(f.wcs, (5.0, 5.0), 0.2, 1.0)
    a = np.zeros((3, 3))
    b = np.zeros((3, 3))
    a[2, 0] = 2e-6  # 0.5 px at the frame corners
    start.sip = Sip(a, b, None, None, start.wcs.crpix)
    start.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    reference = Table({"ra": f.ra, "dec": f.dec, "mag": f.mag})
    solution = refine_wcs_scamp(sources, wcs=start, reference=reference, shape=f.shape)
    assert np.max(_pixel_residuals(f, solution.wcs)) < 0.1


def test_catalog_of_another_field_fails_clearly(sim_frame, sources: SourceList) -> None:
    f = sim_frame
    rng = np.random.default_rng(3)
    elsewhere = Table({
        "ra": f.ra.mean() + rng.uniform(-0.08, 0.08, 150),
        "dec": f.dec.mean() + rng.uniform(-0.08, 0.08, 150),
        "mag": rng.uniform(12, 18, 150),
    })
    with pytest.raises(AstrometryError) as info:
        refine_wcs_scamp(sources, wcs=f.wcs, reference=elsewhere, shape=f.shape)
    message = str(info.value)
    assert "SCAMP's solution matches only" in message
    assert "catalog covers the field" in message


def test_unusable_reference_catalog(sim_frame, sources: SourceList) -> None:
    f = sim_frame
    with pytest.raises(CatalogError, match="no 'dec' column"):
        refine_wcs_scamp(sources, wcs=f.wcs, reference=Table({"ra": f.ra}), shape=f.shape)
    few = Table({"ra": f.ra[:3], "dec": f.dec[:3], "mag": f.mag[:3]})
    with pytest.raises(CatalogError, match="only 3 usable stars"):
        refine_wcs_scamp(sources, wcs=f.wcs, reference=few, shape=f.shape)

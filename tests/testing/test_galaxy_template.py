"""Host galaxies and templates in the simulator: fluxes and positions against their truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from skyphot.testing import SimulationError, SimulationParams, simulate_frame
from skyphot.testing.galaxy import HostComponent
from skyphot.testing.template import TemplateParams, simulate_template

BASE = SimulationParams(shape=(300, 400), n_stars=60, n_cosmic_rays=0, bad_column=False,
                        target_mag=19.0, target_xy=(200.0, 150.0))
HOSTS = (
    HostComponent(mag=17.0, r_eff_arcsec=3.0, sersic_n=1.0, axis_ratio=0.5, angle_deg=40.0,
                  offset_arcsec=(2.0, 1.0)),
    HostComponent(mag=18.0, r_eff_arcsec=0.6, sersic_n=4.0, offset_arcsec=(2.0, 1.0)),
)


def _host_flux(sim_params: SimulationParams) -> float:
    photo = simulate_frame(sim_params, seed=1).photometry
    x, y = sim_params.target_xy or (0.0, 0.0)
    return float(sum(
        photo.flux_adu(np.array([h.mag]), np.array([h.color]), np.array([x]), np.array([y]))[0]
        for h in HOSTS
    ))


def test_hosts_add_their_catalog_flux() -> None:
    plain = simulate_frame(BASE, seed=1)
    hosted = simulate_frame(replace(BASE, hosts=HOSTS), seed=1)
    added = float(np.sum(hosted.noiseless - plain.noiseless))
    # the zero-point gradient across the galaxy's few arcsec is far below 0.5%
    assert added == pytest.approx(_host_flux(BASE), rel=5e-3)
    # centred where it was put: 2" east (x decreasing for this rotation), 1" north
    diff = hosted.noiseless - plain.noiseless
    yy, xx = np.indices(diff.shape)
    cx = float(np.sum(diff * xx) / np.sum(diff))
    cy = float(np.sum(diff * yy) / np.sum(diff))
    ra, dec = hosted.true_wcs.all_pix2world(np.array([cx]), np.array([cy]), 0)
    t = hosted.truth
    east = (ra[0] - t.ra) * np.cos(np.radians(t.dec)) * 3600
    north = (dec[0] - t.dec) * 3600
    assert east == pytest.approx(2.0, abs=0.05) and north == pytest.approx(1.0, abs=0.05)


def test_template_renders_the_same_sky_without_the_transient() -> None:
    sim = simulate_frame(replace(BASE, hosts=HOSTS), seed=2)
    tp = TemplateParams(shape=(420, 500), pixel_scale=0.45, rotation_deg=30.0, fwhm=3.0,
                        pointing_offset_arcsec=(5.0, -4.0))
    without = simulate_template(sim, tp, seed=3)
    with_transient = simulate_template(sim, replace(tp, transient_mag=18.0), seed=3)
    extra = with_transient.noiseless - without.noiseless
    t = sim.truth
    tx, ty = without.true_wcs.all_world2pix(np.array([t.ra]), np.array([t.dec]), 0)
    expected = float(without.photometry.flux_adu(np.array([18.0]), np.array([t.color]), tx, ty)[0])
    assert float(extra.sum()) == pytest.approx(expected, rel=2e-3)
    yy, xx = np.indices(extra.shape)
    assert float(np.sum(extra * xx) / extra.sum()) == pytest.approx(float(tx[0]), abs=0.02)
    assert float(np.sum(extra * yy) / extra.sum()) == pytest.approx(float(ty[0]), abs=0.02)
    # the header WCS is near the truth, and the catalog is the science frame's
    assert without.catalog is sim.catalog
    assert without.header["FILTER"] == sim.header["FILTER"]
    assert without.data.shape == (420, 500)


def test_a_template_noise_draw_changes_only_the_noise() -> None:
    sim = simulate_frame(replace(BASE, hosts=HOSTS), seed=2)
    tp = TemplateParams(shape=(220, 260), pixel_scale=0.45, rotation_deg=30.0, fwhm=3.0)
    a, b = (simulate_template(sim, tp, seed=3, noise_seed=n) for n in (1, 2))
    assert np.array_equal(a.noiseless, simulate_template(sim, tp, seed=3).noiseless)
    assert np.array_equal(a.noiseless, b.noiseless)
    assert a.header.tostring() == b.header.tostring()
    assert not np.array_equal(a.data, b.data)


def test_bad_host_and_template_parameters_say_what_to_change() -> None:
    with pytest.raises(SimulationError, match="hosts are placed relative to the target"):
        SimulationParams(target_mag=None, hosts=HOSTS)
    with pytest.raises(SimulationError, match=r"sersic_n=20\.0 must be within"):
        SimulationParams(hosts=(HostComponent(mag=17.0, r_eff_arcsec=1.0, sersic_n=20.0),))
    sim = simulate_frame(BASE, seed=1)
    with pytest.raises(SimulationError, match="fwhm, pixel_scale and gain must be positive"):
        simulate_template(sim, TemplateParams(fwhm=0.0))

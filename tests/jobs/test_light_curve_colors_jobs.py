"""Colours from the light curve through real jobs: each new point re-calibrates the others
from what is stored (no pixels), the switch per source, and SkyPortal copies re-queued."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from astropy.io import fits
from stub_engine import measure as stub_measure
from webtest_helpers import Instance, fits_bytes

from skyphot.db.models import Photometry, Source
from skyphot.jobs import store
from skyphot.jobs.colors import recalibrate_source
from skyphot.jobs.runner import run_job
from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.result import PhotometryResult

TERMS = {"g": 0.12, "r": 0.06}
ASSUMED = 0.6  # the calibrators' median g-r


def true_mag(band: str, t: float) -> float:
    return {"g": 17.80 + 0.15 * t, "r": 17.70 + 0.07 * t}[band]


def reddening_engine(image: str | Path, config: MeasureConfig,
                     **kwargs: Any) -> PhotometryResult:
    """The stub engine, calibrated like the real one: mag = mag_nocolor + C * colour with
    the calibrators' median colour, for a transient whose truth is ``true_mag``."""
    base = stub_measure(image, config, **kwargs)
    header = fits.getheader(image)
    band, t = str(header["FILTER"]), float(header["TDAYS"])
    term = TERMS[band]
    color = true_mag("g", t) - true_mag("r", t)
    mag = true_mag(band, t) - term * color + term * ASSUMED
    return base.model_copy(update={
        "band": band, "filter": band, "mag": mag, "magerr": 0.02, "color_term": term,
        "color_bands": ("g", "r"), "target_color": ASSUMED,
        "color_source": "calibrators_median", "flags": 16, "flag_names": ["COLOR_ASSUMED"],
        "mjd": 60370.0 + t, "flux": 10 ** (-0.4 * (mag - 23.9)),
        "fluxerr": 0.02 * 10 ** (-0.4 * (mag - 23.9)) / 1.0857})


def frame(tmp_path: Path, band: str, t: float) -> Path:
    path = tmp_path / f"{band}_{t}.fits"
    with fits.open(io.BytesIO(fits_bytes(filt=band, seed=int(t * 10)))) as hdul:
        hdul[0].header["TDAYS"] = t
        hdul.writeto(path)
    return path


def run(instance: Instance, source: str, path: Path) -> int:
    with instance.app.state.sessions() as session:
        job = store.create_job(session, source_id=source, owner_id=2, upload_path=str(path),
                               filename=path.name, file_hash=path.name,
                               params={"mjd": None})
        session.commit()
        job_id = job.id
    assert run_job(job_id, settings=instance.settings, sessions=instance.app.state.sessions,
                   measure=reddening_engine)
    with instance.app.state.sessions() as session:
        finished = session.get(type(job), job_id)
        assert finished is not None and finished.state == "succeeded", finished.message
        assert finished.photometry_id is not None
        return finished.photometry_id


def points(instance: Instance, source: str) -> dict[int, Photometry]:
    with instance.app.state.sessions() as session:
        rows = session.query(Photometry).filter_by(source_id=source).all()
        for row in rows:
            session.expunge(row)
        return {row.id: row for row in rows}


def test_new_points_recalibrate_the_light_curve(instance: Instance, source: str,
                                                tmp_path: Path) -> None:
    r_first = run(instance, source, frame(tmp_path, "r", 0.0))
    alone = points(instance, source)[r_first]
    assert alone.calibration["color_source"] == "calibrators_median"
    assert "COLOR_ASSUMED" in alone.calibration["flag_names"]
    truth = {r_first: true_mag("r", 0.0)}
    for band, t in (("g", 0.3), ("r", 0.6), ("g", 0.9), ("r", 1.2)):
        truth[run(instance, source, frame(tmp_path, band, t))] = true_mag(band, t)
    final = points(instance, source)
    for point_id, point in final.items():
        cal = point.calibration
        assert cal["color_source"] == "light_curve", point_id
        assert cal["color_points"] and "COLOR_ASSUMED" not in cal["flag_names"]
        assert point.mag is not None and point.magerr is not None
        # within the errors of the truth (the stub adds no noise: well within)
        assert abs(point.mag - truth[point_id]) < 2 * point.magerr, (point_id, point.mag)
        assert point.flux == pytest.approx(10 ** (-0.4 * (point.mag - 23.9)), rel=1e-6)
    # the first point got its colour from the g points measured after it
    assert final[r_first].calibration["target_color"] == pytest.approx(
        true_mag("g", 0.0) - true_mag("r", 0.0), abs=0.05)

    # Turn the light-curve colours off for this source: back to the assumed colour.
    r = instance.client.patch(f"/api/sources/{source}", json={"light_curve_colors": False},
                              headers=instance.alice)
    assert r.status_code == 200 and r.json()["light_curve_colors"] is False
    assumed = points(instance, source)
    for point_id, point in assumed.items():
        assert point.calibration["color_source"] == "calibrators_median"
        assert "COLOR_ASSUMED" in point.calibration["flag_names"]
        band = point.filter
        color = true_mag("g", point.mjd - 60370) - true_mag("r", point.mjd - 60370)
        bias = TERMS[band] * (ASSUMED - color)
        assert point.mag == pytest.approx(truth[point_id] + bias, abs=1e-6)
    r = instance.client.patch(f"/api/sources/{source}", json={"light_curve_colors": "maybe"},
                              headers=instance.alice)
    assert r.status_code == 422 and r.json()["error"]["field"] == "light_curve_colors"


def test_recalibration_requeues_pushed_points(instance: Instance, source: str,
                                              tmp_path: Path) -> None:
    r_id = run(instance, source, frame(tmp_path, "r", 0.0))
    with instance.app.state.sessions() as session:
        point = session.get(Photometry, r_id)
        assert point is not None
        point.skyportal_state, point.skyportal_id = "pushed", 41
        session.commit()
    run(instance, source, frame(tmp_path, "g", 0.2))
    after = points(instance, source)[r_id]
    assert after.skyportal_state == "pending" and after.skyportal_id == 41
    with instance.app.state.sessions() as session:
        src = session.get(Source, source)
        assert src is not None
        assert recalibrate_source(session, src) == []  # converged: nothing changes again

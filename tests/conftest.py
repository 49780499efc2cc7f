"""Shared fixtures: real data location and small simulated frames written once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATA = REPO.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The directory of real frames and catalogs (skips when this checkout has none)."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data directory {REAL_DATA} not present")
    return REAL_DATA


@dataclass(frozen=True)
class WrittenFrame:
    image: Path
    catalog: Path
    sim: object  # skyphot.testing.SimulatedFrame


@pytest.fixture(scope="session")
def small_frame(tmp_path_factory: pytest.TempPathFactory) -> WrittenFrame:
    """A small, messy simulated frame (non-square, uint16, PSF varying, WCS off) with a target."""
    from skyphot.testing import SimulationParams, simulate_frame

    sim = simulate_frame(
        SimulationParams(shape=(700, 900), dtype="uint16", target_mag=18.5), seed=11
    )
    paths = sim.write(tmp_path_factory.mktemp("small"), stem="small")
    return WrittenFrame(image=paths.image, catalog=paths.catalog, sim=sim)

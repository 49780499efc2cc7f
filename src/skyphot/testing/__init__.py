"""Simulated frames with exactly known truth, for accuracy tests and benchmarks.

>>> from skyphot.testing import SimulationParams, simulate_frame
>>> frame = simulate_frame(SimulationParams(target_mag=17.0), seed=1)
>>> frame.truth.mag, frame.truth.ideal_flux_error()  # doctest: +SKIP
"""

from skyphot.testing.frame import (
    Defects,
    PhotometricModel,
    SimulatedFrame,
    SimulatedPaths,
    Truth,
)
from skyphot.testing.params import SimulationError, SimulationParams
from skyphot.testing.psf import MoffatField
from skyphot.testing.simulate import simulate_frame

__all__ = [
    "Defects",
    "MoffatField",
    "PhotometricModel",
    "SimulatedFrame",
    "SimulatedPaths",
    "SimulationError",
    "SimulationParams",
    "Truth",
    "simulate_frame",
]

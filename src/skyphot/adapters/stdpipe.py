"""STDPipe as an optional measurement engine (``engine: stdpipe``, ``--engine stdpipe``).

The recipe keeps skyphot's own reading, header, mask, background and catalog stages and
hands detection, astrometric refinement, the PSF, the photometric calibration and the target
photometry to STDPipe (https://github.com/karpov-sv/stdpipe):

- detection: ``stdpipe.photometry.get_objects_sextractor`` (SExtractor);
- astrometry: ``stdpipe.pipeline.refine_astrometry`` with its quad-hash matcher and a
  TAN-SIP fit (``astrometry.sip_order``), checked against the catalog afterwards;
- PSF: ``stdpipe.psf.run_psfex`` (PSFEx), see :mod:`skyphot.adapters.stdpipe_psf`;
- photometry: ``stdpipe.photometry.measure_objects`` optimal (PSF-weighted) extraction for
  the calibration stars and the target, and its aperture photometry for the target;
- calibration: ``stdpipe.photometry.match`` (robust fit with spatial polynomial and colour
  term), converted to a ``ZeroPointFit``, see :mod:`skyphot.adapters.stdpipe_calibration`.

Every stage fills the same ``FrameState`` fields with the same types as the built-in stages,
so ``build_result`` makes the same ``PhotometryResult`` and the two engines can be compared
on the same frames (``benchmarks/compare_engines.py``). Where STDPipe's products differ from
the built-in ones, the result fields mean, with this engine:

- ``flux``/``mag`` (and every zero point): flux inside the PSFEx model's footprint, as
  STDPipe normalises its PSF stamps; the zero point absorbs the constant difference to the
  total flux, so calibrated magnitudes are unaffected, but ``zero_point`` itself is not
  comparable between engines to better than ~0.03 mag;
- ``limiting_mag``: from STDPipe's background-only optimal-extraction error, which leaves out
  the local-background uncertainty (the built-in engine includes it);
- ``aperture``: STDPipe's aperture photometry (no local-background error either), corrected
  with STDPipe's enclosed PSF fraction;
- ``astrometry_method`` "stdpipe-quadhash"; ``astrometry_rms_arcsec``, ``n_astrometry``:
  measured by skyphot on the pairs within ``match_radius_arcsec`` of STDPipe's WCS;
- ``n_calib``, ``calib_scatter``, ``calib_intrinsic_scatter``, ``color_term``: STDPipe's fit
  (stars kept by its robust fit, robust scatter of their residuals, its intrinsic rms).

STDPipe is an optional extra: importing this module never imports it; ``stdpipe_recipe``
raises ``ToolNotFoundError`` with the install command when it is missing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skyphot.errors import ConfigError, ToolNotFoundError
from skyphot.pipeline.config import MeasureConfig

if TYPE_CHECKING:
    from skyphot.pipeline.runner import Stage

MISSING_EXTRA = "the STDPipe engine needs the optional extra: pip install 'skyphot[stdpipe]'"

# Astrometry methods this engine can honour; the others belong to the built-in engine.
SUPPORTED_ASTROMETRY = ("refine", "header")


@dataclass(frozen=True)
class StdpipeAPI:
    """The STDPipe modules the engine calls (typed ``Any``: STDPipe ships no type hints)."""

    photometry: Any
    pipeline: Any
    psf: Any


def load_stdpipe() -> StdpipeAPI:
    """Import STDPipe, or raise ``ToolNotFoundError`` saying how to install it."""
    try:
        from stdpipe import photometry, pipeline
        from stdpipe import psf as psf_module
    except ImportError as err:
        raise ToolNotFoundError(MISSING_EXTRA) from err
    return StdpipeAPI(photometry=photometry, pipeline=pipeline, psf=psf_module)


@contextmanager
def stdpipe_workspace() -> Iterator[str]:
    """A private directory for STDPipe's temporary files, removed afterwards.

    STDPipe makes its own temporary directory inside this one for every external program
    and only cleans it up on success; this one goes in any case.
    """
    with tempfile.TemporaryDirectory(prefix="skyphot-stdpipe-") as name:
        yield name


def stdpipe_recipe(config: MeasureConfig) -> list[Stage]:
    """The stage list of the STDPipe engine for ``config``.

    Raises ``ToolNotFoundError`` when STDPipe (the ``stdpipe`` extra) or the SExtractor /
    PSFEx programs are missing, and ``ConfigError`` for an astrometry method this engine
    does not offer.
    """
    if config.astrometry.method not in SUPPORTED_ASTROMETRY:
        raise ConfigError(
            f"astrometry method {config.astrometry.method!r} is not available with the "
            f"STDPipe engine; use {' or '.join(repr(m) for m in SUPPORTED_ASTROMETRY)}, or "
            "the built-in engine (engine 'skyphot')"
        )
    load_stdpipe()
    from skyphot.adapters._process import find_tool

    # Fail before any work when a program STDPipe calls is missing.
    find_tool("source-extractor")
    find_tool("psfex")
    from skyphot.adapters.stdpipe_calibration import StdpipeCalibrate
    from skyphot.adapters.stdpipe_stages import StdpipeAstrometry, StdpipeDetect, StdpipeFitPSF
    from skyphot.adapters.stdpipe_target import StdpipeMeasureTarget
    from skyphot.pipeline.stages.frame import NormaliseHeader, ReadFrame
    from skyphot.pipeline.stages.image import BuildMask, MaskCosmicRays, SubtractBackground
    from skyphot.pipeline.stages.reference import LoadCatalog

    stages: list[Stage] = [
        ReadFrame(),
        NormaliseHeader(),
        BuildMask(),
        SubtractBackground(),
        StdpipeDetect(),
    ]
    if config.masking.cosmic_rays:
        stages.append(MaskCosmicRays())
    stages += [
        LoadCatalog(),
        StdpipeAstrometry(),
        StdpipeFitPSF(),
        StdpipeCalibrate(),
        StdpipeMeasureTarget(),
    ]
    return stages

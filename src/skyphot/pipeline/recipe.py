"""The recipe: the explicit list of stages a measurement runs.

There is one recipe. The engine (``MeasureConfig.engine``) only chooses the implementation
of the stages it replaces — detection, astrometry, PSF, calibration and target photometry —
from ``stage_variants``; reading, header, masking, background and catalog stages, the
runner, the state and the report are the same for every engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from skyphot.pipeline.config import MeasureConfig
from skyphot.pipeline.runner import Stage
from skyphot.pipeline.stages.calibrate import Calibrate
from skyphot.pipeline.stages.frame import NormaliseHeader, ReadFrame
from skyphot.pipeline.stages.image import (
    BuildMask,
    DetectSources,
    FitPSF,
    MaskCosmicRays,
    SubtractBackground,
)
from skyphot.pipeline.stages.reference import LoadCatalog, RefineAstrometry
from skyphot.pipeline.stages.target import MeasureTarget


@dataclass(frozen=True)
class StageVariants:
    """The implementations an engine gives to the stages that differ between engines."""

    detect: Stage
    astrometry: Stage
    psf: Stage
    calibrate: Stage
    target: Stage


def stage_variants(config: MeasureConfig) -> StageVariants:
    """The per-stage implementations of the configured engine.

    Raises ``ConfigError`` / ``ToolNotFoundError`` before any work when the engine cannot
    run this configuration or its tools are missing.
    """
    if config.engine == "stdpipe":
        # Imported here: the STDPipe wrappers are only needed when that engine is chosen.
        from skyphot.pipeline.stages.stdpipe import (
            StdpipeAstrometry,
            StdpipeCalibrate,
            StdpipeDetect,
            StdpipeFitPSF,
            StdpipeMeasureTarget,
            check_stdpipe_engine,
        )

        check_stdpipe_engine(config)
        return StageVariants(
            detect=StdpipeDetect(),
            astrometry=StdpipeAstrometry(),
            psf=StdpipeFitPSF(),
            calibrate=StdpipeCalibrate(),
            target=StdpipeMeasureTarget(),
        )
    return StageVariants(
        detect=DetectSources(),
        astrometry=RefineAstrometry(),
        psf=FitPSF(),
        calibrate=Calibrate(),
        target=MeasureTarget(),
    )


def recipe_for(config: MeasureConfig) -> list[Stage]:
    """Stages in order; optional ones only when the configuration asks for them."""
    variants = stage_variants(config)
    stages: list[Stage] = [
        ReadFrame(),
        NormaliseHeader(),
        BuildMask(),
        # The STDPipe stages read the raw frame; the built-in ones only the subtracted image.
        SubtractBackground(keep_pixels=config.engine == "stdpipe"),
        variants.detect,
    ]
    if config.masking.cosmic_rays:
        stages.append(MaskCosmicRays())
    stages += [
        LoadCatalog(),
        variants.astrometry,
        variants.psf,
        variants.calibrate,
        variants.target,
    ]
    if config.subtraction.template != "none":
        # Imported here: resampling, ZOGY and the template services are only needed then.
        from skyphot.pipeline.stages.subtraction import PrepareTemplate, SubtractTemplate

        stages += [PrepareTemplate(), SubtractTemplate()]
    return stages

"""The default recipe: the explicit list of stages a measurement runs."""

from __future__ import annotations

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
from skyphot.pipeline.stages.subtraction import PrepareTemplate, SubtractTemplate
from skyphot.pipeline.stages.target import MeasureTarget


def recipe_for(config: MeasureConfig) -> list[Stage]:
    """The stage list of the configured engine."""
    if config.engine == "stdpipe":
        from skyphot.adapters.stdpipe import stdpipe_recipe

        return stdpipe_recipe(config)
    return default_recipe(config)


def default_recipe(config: MeasureConfig) -> list[Stage]:
    """Stages in order; optional ones only when the configuration asks for them."""
    stages: list[Stage] = [
        ReadFrame(),
        NormaliseHeader(),
        BuildMask(),
        SubtractBackground(),
        DetectSources(),
    ]
    if config.masking.cosmic_rays:
        stages.append(MaskCosmicRays())
    stages += [
        LoadCatalog(),
        RefineAstrometry(),
        FitPSF(),
        Calibrate(),
        MeasureTarget(),
    ]
    if config.subtraction.template != "none":
        stages += [PrepareTemplate(), SubtractTemplate()]
    return stages

"""Values a user gives in place of (or in addition to) what the FITS header says.

Defined here, beside the header reader that applies them, so ``io`` needs nothing from the
pipeline; ``skyphot.pipeline.config`` uses this model for ``MeasureConfig.header``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class HeaderOverrides(BaseModel):
    """Values that replace (or supply) what the FITS header says. None means: use the header."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mjd: float | None = Field(None, description="Mid-exposure time, MJD (UTC).")
    exptime: float | None = Field(None, description="Exposure time, seconds.", gt=0)
    filter: str | None = Field(None, description="Filter name as the instrument calls it.")
    gain: float | None = Field(None, description="Detector gain, electrons per ADU.", gt=0)
    read_noise: float | None = Field(None, description="Read noise, electrons rms.", ge=0)
    saturation: float | None = Field(
        None, description="Saturation level in ADU (after BZERO/BSCALE).", gt=0
    )
    instrument: str | None = Field(None, description="Instrument name.")
    telescope: str | None = Field(None, description="Telescope name.")

"""Request and response models of the JSON API (separate: what comes in is validated,
what goes out is documented)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from skyphot.core.coords import parse_dec, parse_ra

# --- requests ------------------------------------------------------------------------------


class SourceCreate(BaseModel):
    """A new source: its position, a name to resolve, or a SkyPortal id to import."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="Unique source id, e.g. 'ZTF21aaaaaaa' "
                           "(default with skyportal_id: the SkyPortal id).", min_length=1,
                           max_length=64, pattern=r"^[A-Za-z0-9_.+\-]+$")
    ra: float | None = Field(
        None, description="Right ascension (ICRS): degrees, or sexagesimal hours as text "
        "('10:00:31.365', '10 00 31.365', '10h00m31.365s'). Omit ra and dec to resolve "
        "`name` (your sources, the local name table, then CDS Sesame when allowed); taken "
        "from SkyPortal with skyportal_id.",
        ge=0, lt=360)
    dec: float | None = Field(
        None, description="Declination (ICRS): degrees, or sexagesimal degrees as text "
        "('+02:09:42.92', '+02d09m42.92s'); taken from SkyPortal with skyportal_id.",
        ge=-90, le=90)
    name: str | None = Field(None, description="Optional common name.", max_length=200)
    redshift: float | None = Field(None, description="Optional redshift (finite, >= 0).", ge=0,
                                   allow_inf_nan=False)
    groups: list[str] | None = Field(
        None, description="Groups to share with; default: all of the creator's groups."
    )
    skyportal_id: str | None = Field(
        None, description="Import the source from the configured SkyPortal by this id "
        "(ra, dec, redshift and aliases come from there).", min_length=1, max_length=64,
        pattern=r"^[A-Za-z0-9_.+\-]+$",
    )

    @field_validator("ra", mode="before")
    @classmethod
    def _ra_text(cls, value: Any) -> Any:
        return parse_ra(value) if isinstance(value, str) else value

    @field_validator("dec", mode="before")
    @classmethod
    def _dec_text(cls, value: Any) -> Any:
        return parse_dec(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _position_name_or_skyportal(self) -> SourceCreate:
        if self.skyportal_id is not None:
            if self.ra is not None or self.dec is not None:
                raise ValueError("give either skyportal_id or ra/dec, not both: an imported "
                                 "source takes its position from SkyPortal")
            return self
        if self.id is None:
            raise PydanticCustomError("missing", "give id (or skyportal_id to import from "
                                      "SkyPortal)")
        if (self.ra is None) != (self.dec is None):
            missing = "dec" if self.dec is None else "ra"
            raise PydanticCustomError("missing", f"give {missing} too (or neither, to "
                                      "resolve the name)")
        if self.ra is None and not self.name:
            raise PydanticCustomError("missing", "give ra and dec, or a name to resolve (or "
                                      "skyportal_id to import from SkyPortal)")
        return self


class SourceUpdate(BaseModel):
    """Changes to a source's settings."""

    model_config = ConfigDict(extra="forbid")

    light_curve_colors: bool = Field(
        description="Use the colour measured on the light curve for the colour term of its "
        "points (true) or not (false: the form's colour or the calibrators' median)."
    )


class SourceShare(BaseModel):
    """Groups a source is shared with (replaces the list)."""

    model_config = ConfigDict(extra="forbid")

    groups: list[str] = Field(description="Group names; at least one.", min_length=1)


class InstrumentCreate(BaseModel):
    """A new instrument and its filters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Instrument name as in the INSTRUME keyword.", min_length=1,
                      max_length=100)
    filters: list[str] = Field(default_factory=list, description="Filter names it has.")
    gain: float | None = Field(None, description="Default gain, e-/ADU.", gt=0)
    saturation: float | None = Field(None, description="Default saturation level, ADU.", gt=0)


class InstrumentUpdate(BaseModel):
    """Changes to an instrument (absent fields stay as they are)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="New name.", min_length=1, max_length=100)
    filters: list[str] | None = Field(None, description="The full new list of filters.")
    gain: float | None = Field(None, description="Default gain, e-/ADU.", gt=0)
    saturation: float | None = Field(None, description="Default saturation level, ADU.", gt=0)


def instrument_form_values(form: dict[str, str]) -> InstrumentCreate:
    """An ``InstrumentCreate`` from page-form text (filters comma separated)."""
    values: dict[str, Any] = {k: v for k, v in form.items() if v.strip() != ""}
    values["filters"] = [f.strip() for f in form.get("filters", "").split(",") if f.strip()]
    return InstrumentCreate.model_validate(values)


class PhotometryUpdate(BaseModel):
    """Changes to a point's metadata (absent fields stay as they are)."""

    model_config = ConfigDict(extra="forbid")

    filter: str | None = Field(None, description="Filter name.", min_length=1, max_length=50)
    instrument: str | None = Field(None, description="Instrument name.", max_length=100)
    obstime: str | None = Field(None, description="Mid-exposure time: ISO UTC or MJD.")
    comment: str | None = Field(None, description="Free-text comment.", max_length=2000)


class MembershipChange(BaseModel):
    """A user to add to or remove from a group."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(description="Login name of the member.", min_length=1)


class UserCreate(BaseModel):
    """A new account (admins only)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(description="Login name.", min_length=1, max_length=100,
                          pattern=r"^[A-Za-z0-9_.@+\-]+$")
    password: str = Field(description="Password for the pages (8 characters or more).",
                          min_length=8)
    is_admin: bool = Field(False, description="Admin role: sees and changes everything.")
    groups: list[str] = Field(default_factory=list, description="Groups to join.")


class JobRetry(BaseModel):
    """Optional changes for a retried job (None keeps the earlier value)."""

    model_config = ConfigDict(extra="forbid")

    filter: str | None = Field(None, description="Filter name.")
    obstime: str | None = Field(None, description="Observation time: ISO UTC or MJD.")
    obstime_ref: str | None = Field(
        None, description="Whether obstime is the exposure 'start' or 'mid' (default mid).")
    instrument: str | None = Field(None, description="Instrument name.")
    nsigma: float | None = Field(None, description="Detection threshold (3 or 5).")
    catalog: str | None = Field(None, description="Catalog name ('auto' for automatic).")
    pixel_scale: float | None = Field(None, description="Pixel scale, arcsec/px.", gt=0)
    target_color: str | None = Field(
        None, description="Target colour: 'g-r=0.3' or a number in the catalog's colour.")


# --- responses -----------------------------------------------------------------------------


class InfoOut(BaseModel):
    """What a client needs to know about this instance before uploading."""

    version: str = Field(description="skyphot version of the server.")
    image_analysis: bool = Field(description="Whether image analysis is enabled.")
    max_body_size: float = Field(description="Largest accepted upload, MB (10^6 bytes).")
    database: str = Field(description="'ok' when the database answered this request.")


class SourceOut(BaseModel):
    """A source."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Source id.")
    ra: float = Field(description="Right ascension, degrees.")
    dec: float = Field(description="Declination, degrees.")
    name: str | None = Field(description="Common name.")
    redshift: float | None = Field(description="Redshift.")
    groups: list[str] = Field(description="Groups the source is shared with.")
    created_at: datetime = Field(description="Creation time (UTC).")
    skyportal_id: str | None = Field(None, description="SkyPortal id of the source, when "
                                     "imported from (and pushed to) SkyPortal.")
    light_curve_colors: bool = Field(True, description="Whether colours measured on the "
                                     "light curve feed the colour term of its points.")
    position_origin: str | None = Field(
        None, description="Where ra/dec came from: 'given', 'source' (one of your sources of "
        "that name), 'name_table' (the local name table), 'sesame' (CDS Sesame) or "
        "'skyportal'; null for sources made before this was recorded.")
    position_note: str | None = Field(
        None, description="Which: e.g. \"your source 'SN2023ixf'\", \"'SN 2023ixf' in the "
        "local name table (names.csv)\", 'CDS Sesame (Simbad)'.")


class SkyPortalState(BaseModel):
    """Where a point stands with SkyPortal."""

    state: str = Field(description="off (not pushed), pending (queued or being retried), "
                       "pushed, or failed.")
    id: int | None = Field(description="SkyPortal's photometry id once pushed.")
    error: str | None = Field(description="Reason of the last failed attempt.")


class PhotometryOut(BaseModel):
    """One light-curve point: magnitude and flux, or an upper limit (mag null)."""

    id: int = Field(description="Point id.")
    source_id: str = Field(description="Source id.")
    mjd: float = Field(description="Mid-exposure time, MJD (UTC).")
    iso: str = Field(description="Same time, ISO UTC.")
    mag: float | None = Field(description="Magnitude; null for an upper limit.")
    magerr: float | None = Field(description="1-sigma magnitude error.")
    limiting_mag: float | None = Field(description="Limiting magnitude at limit_sigma.")
    limit_sigma: float | None = Field(description="Sigma level of limiting_mag.")
    flux: float | None = Field(description="Flux, µJy (23.9 AB mag = 1 µJy).")
    fluxerr: float | None = Field(description="1-sigma flux error, µJy.")
    snr: float | None = Field(description="Signal-to-noise ratio.")
    filter: str = Field(description="Filter.")
    instrument: str | None = Field(description="Instrument.")
    magsys: str = Field(description="Magnitude system.")
    origin: str = Field(description="Where the point came from ('skyphot' = image analysis).")
    owner_id: int | None = Field(description="User who added it.")
    job_id: int | None = Field(description="Analysis job that produced it.")
    calibration: dict[str, Any] = Field(
        description="Calibration details: catalog, band, zero_point, zero_point_err, "
        "color_term, n_calib, fwhm, flags, flag_names, notes (degradations worked around), "
        "job_id..."
    )
    comment: str | None = Field(None, description="Free-text comment.")
    can_delete: bool = Field(description="Whether the requesting user may edit or delete it.")
    skyportal: SkyPortalState = Field(description="Push state of the point in SkyPortal.")


class JobOut(BaseModel):
    """State of an analysis job."""

    id: int = Field(description="Job id.")
    source_id: str = Field(description="Source id.")
    state: str = Field(description="queued, running, succeeded or failed.")
    stage: str | None = Field(description="Current stage while running.")
    message: str | None = Field(description="Result summary, or the reason of a failure.")
    filename: str = Field(description="Uploaded file name.")
    params: dict[str, Any] = Field(description="Analysis parameters.")
    photometry_id: int | None = Field(description="Point produced (when succeeded).")
    attempts: int = Field(description="How many times it was started since it was queued "
                          "(a retry starts again from 0).")
    created_at: datetime = Field(description="Submission time (UTC).")
    started_at: datetime | None = Field(description="Start of the last attempt (UTC).")
    finished_at: datetime | None = Field(description="End time (UTC).")
    retryable: bool = Field(
        False, description="Whether retrying (possibly with changed settings) can help.")
    owner: str | None = Field(None, description="User who submitted it.")
    log_url: str = Field(description="URL of the job log.")
    diagnostics_url: str | None = Field(description="URL of the diagnostic PNG, when made.")


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    jobs: list[JobOut] = Field(description="The jobs of this page.")
    total: int = Field(description="Number of jobs matching the filter.")
    offset: int = Field(description="Index of the first job of this page.")
    limit: int = Field(description="Page size.")


class TokenOut(BaseModel):
    """An API token (its value is never shown again)."""

    id: int = Field(description="Token id.")
    name: str = Field(description="Label given when it was made.")
    created_at: datetime = Field(description="Creation time (UTC).")


class GroupOut(BaseModel):
    """A group and its members."""

    id: int = Field(description="Group id.")
    name: str = Field(description="Group name.")
    members: list[str] = Field(description="Login names of its members.")


class UserOut(BaseModel):
    """An account."""

    id: int = Field(description="User id.")
    username: str = Field(description="Login name.")
    is_admin: bool = Field(description="Admin role.")
    groups: list[str] = Field(description="Groups the user belongs to.")
    token: str | None = Field(None, description="A new API token (only when just created).")


class JobCreated(BaseModel):
    """Answer to an upload: the job runs in the background."""

    job_id: int = Field(description="Id of the new job; poll GET /api/jobs/{job_id}.")
    state: str = Field(description="Initial state (queued).")
    url: str = Field(description="URL of the job.")


class InstrumentOut(BaseModel):
    """An instrument."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Instrument id.")
    name: str = Field(description="Name.")
    filters: list[str] = Field(description="Filters.")
    gain: float | None = Field(description="Default gain, e-/ADU.")
    saturation: float | None = Field(description="Default saturation, ADU.")


class FitsInfoOut(BaseModel):
    """Header values of an uploaded frame, shown for confirmation."""

    hdu: int = Field(description="Index of the image HDU.")
    shape: list[int] = Field(description="Image shape (ny, nx).")
    filter: str | None = Field(description="FILTER keyword.")
    instrument: str | None = Field(description="INSTRUME keyword.")
    telescope: str | None = Field(description="TELESCOP keyword.")
    object: str | None = Field(description="OBJECT keyword.")
    obstime: str | None = Field(description="Exposure start, ISO UTC.")
    mjd_start: float | None = Field(description="Exposure start, MJD.")
    mjd_mid: float | None = Field(description="Mid-exposure, MJD.")
    time_keyword: str | None = Field(description="Keyword the time came from.")
    exptime: float | None = Field(description="Exposure time, s.")
    gain: float | None = Field(description="Gain, e-/ADU.")
    saturation: float | None = Field(description="Saturation, ADU.")


class ErrorDetail(BaseModel):
    """What went wrong."""

    type: str = Field(description="Error class.")
    message: str = Field(description="What was wrong and what to do.")
    field: str | None = Field(None, description="Form field at fault, if any.")


class ErrorOut(BaseModel):
    """The one error shape."""

    error: ErrorDetail

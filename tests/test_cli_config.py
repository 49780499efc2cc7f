"""``skyphot measure`` options and the YAML file become one ``MeasureConfig``: every option
lands on its field, the command line wins over the file, and bad settings say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyphot.cli import build_measure_config, build_parser
from skyphot.errors import ConfigError
from skyphot.pipeline.config import MeasureConfig


def config_from(*options: str) -> MeasureConfig:
    args = build_parser().parse_args(["measure", "frame.fits", "--ra", "10.5", "--dec",
                                      "-20.25", *options])
    config = build_measure_config(args)
    assert isinstance(config, MeasureConfig)
    return config


def test_defaults_when_only_the_target_is_given() -> None:
    assert config_from() == MeasureConfig.model_validate({"target": {"ra": 10.5,
                                                                      "dec": -20.25}})


def test_every_option_lands_on_its_field(tmp_path: Path) -> None:
    config = config_from(
        "--hdu", "2", "--mjd", "60001.5", "--exptime", "30", "--filter", "rp",
        "--gain", "1.7", "--read-noise", "4.5", "--saturation", "60000",
        "--catalog", str(tmp_path / "ref.ecsv"), "--catalog-columns", "ra=RA_deg,r=rPSF",
        "--catalog-name", "ps1", "--cache-dir", str(tmp_path / "cache"), "--no-cache",
        "--magsys", "Vega", "--band", "r", "--target-color", "g-r=0.45",
        "--no-color-term", "--spatial-order", "2", "--nsigma", "3",
        "--astrometry", "header", "--blind", "never", "--index-dir", str(tmp_path / "idx"),
        "--pixel-scale", "0.4", "--engine", "stdpipe", "--detection", "sextractor",
        "--cosmic-rays",
    )
    assert (config.target.ra, config.target.dec) == (10.5, -20.25)
    assert config.hdu == 2
    h = config.header
    assert (h.mjd, h.exptime, h.filter, h.gain, h.read_noise, h.saturation) == (
        60001.5, 30.0, "rp", 1.7, 4.5, 60000.0)
    c = config.catalog
    assert c.path == str(tmp_path / "ref.ecsv") and c.columns == {"ra": "RA_deg", "r": "rPSF"}
    assert (c.name, c.cache_dir, c.use_cache, c.magsys) == (
        "ps1", str(tmp_path / "cache"), False, "Vega")
    cal = config.calibration
    assert (cal.band, cal.color_bands, cal.fit_color_term, cal.spatial_order) == (
        "r", ("g", "r"), False, 2)
    assert config.target_color == 0.45 and config.nsigma == 3.0
    a = config.astrometry
    assert (a.method, a.blind, a.index_dir, a.pixel_scale_arcsec) == (
        "header", "never", str(tmp_path / "idx"), 0.4)
    assert config.engine == "stdpipe" and config.detection.method == "sextractor"
    assert config.masking.cosmic_rays is True
    assert config_from("--hdu", "SCI").hdu == "SCI"
    assert config_from("--color", "g", "i").calibration.color_bands == ("g", "i")


def test_command_line_overrides_the_file_section_by_section(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "target: {ra: 1.0, dec: 2.0}\nnsigma: 4\n"
        "header: {gain: 2.0, exptime: 10}\ndetection: {threshold_sigma: 7}\n"
        "calibration: {spatial_order: 1, min_stars: 8}\n"
    )
    config = config_from("--config", str(path), "--gain", "3.5", "--detection", "sextractor")
    assert (config.target.ra, config.target.dec) == (10.5, -20.25)  # the command line's
    assert config.nsigma == 4.0
    assert (config.header.gain, config.header.exptime) == (3.5, 10.0)
    assert (config.detection.method, config.detection.threshold_sigma) == ("sextractor", 7.0)
    assert (config.calibration.spatial_order, config.calibration.min_stars) == (1, 8)


def test_bad_configuration_files_and_options_say_what_to_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=f"cannot read configuration file {missing}"):
        config_from("--config", str(missing))
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=f"configuration file {listing} must hold a mapping"):
        config_from("--config", str(listing))
    scalar_section = tmp_path / "section.yaml"
    scalar_section.write_text("header: 5\n")
    with pytest.raises(ConfigError, match="configuration section 'header' must be a mapping"):
        config_from("--config", str(scalar_section))
    with pytest.raises(ConfigError, match="--target-color is for g-r but --color asks for "
                                          "g-i: they must be the same colour"):
        config_from("--color", "g", "i", "--target-color", "g-r=0.3")
    negative = tmp_path / "negative.yaml"
    negative.write_text("nsigma: -1\n")
    with pytest.raises(ConfigError, match=r"invalid settings: nsigma: Input should be greater"):
        config_from("--config", str(negative))
    with pytest.raises(ConfigError, match=r"--catalog-columns item 'ra' is not NAME=COLUMN"):
        config_from("--catalog-columns", "ra")


def test_response_order_option_lands_on_its_field() -> None:
    assert config_from().calibration.response_order == 0
    assert config_from("--response-order", "2").calibration.response_order == 2
    assert config_from("--response-order", "auto").calibration.response_order == "auto"
    with pytest.raises(SystemExit):
        config_from("--response-order", "3")


def test_response_order_refused_where_it_cannot_work() -> None:
    with pytest.raises(ConfigError, match="response_order must be 0 with engine 'stdpipe'"):
        config_from("--response-order", "auto", "--engine", "stdpipe")
    target = {"ra": 1.0, "dec": 2.0}
    with pytest.raises(ValueError, match="response_order must be 0 with template subtraction"):
        MeasureConfig.model_validate({
            "target": target, "calibration": {"response_order": 2},
            "subtraction": {"template": "auto"},
        })
    text = MeasureConfig.model_validate({"target": target, "calibration": {"response_order": "1"}})
    assert text.calibration.response_order == 1

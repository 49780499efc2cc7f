"""The ``skyphot`` command.

Errors are mapped to exit codes in exactly one place (``exit_code_for``); every failure
prints one line on stderr and nothing on stdout.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skyphot import __version__
from skyphot.errors import (
    AnalysisError,
    CatalogServiceError,
    ConfigError,
    ExternalToolError,
    InputError,
    SkyphotError,
    SkyPortalError,
    SkyPortalNotFoundError,
    StageError,
    ToolNotFoundError,
    root_cause,
)

EXIT_OK = 0
EXIT_FAILURE = 1  # any other SkyphotError
EXIT_USAGE = 2  # argparse's own code for bad command lines
EXIT_BAD_INPUT = 3  # the file, catalog or options are unusable
EXIT_ANALYSIS = 4  # the frame was read but no trustworthy result could be made
EXIT_ENVIRONMENT = 5  # an external tool or service failed
EXIT_INTERNAL = 70  # a bug: please report it

logger = logging.getLogger("skyphot")


def exit_code_for(error: SkyphotError) -> int:
    """The one mapping from error classes to exit codes."""
    cause = root_cause(error)
    if isinstance(error, StageError) and not isinstance(cause, SkyphotError):
        return EXIT_INTERNAL
    if isinstance(cause, InputError | SkyPortalNotFoundError):
        return EXIT_BAD_INPUT
    if isinstance(cause, AnalysisError):
        return EXIT_ANALYSIS
    if isinstance(cause, ExternalToolError | CatalogServiceError | SkyPortalError):
        return EXIT_ENVIRONMENT
    return EXIT_FAILURE


# --------------------------------------------------------------------------- measure


_COLOR_SPEC = re.compile(
    r"^\s*([A-Za-z][\w']*)\s*-\s*([A-Za-z][\w']*)\s*=\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*$"
)


def parse_target_color(text: str) -> tuple[str, str, float]:
    """Parse ``g-r=0.3`` into ("g", "r", 0.3)."""
    match = _COLOR_SPEC.match(text)
    if match is None:
        raise ConfigError(
            f"--target-color {text!r} is not of the form BAND1-BAND2=VALUE, e.g. g-r=0.3"
        )
    return match.group(1), match.group(2), float(match.group(3))


def build_measure_config(args: argparse.Namespace) -> Any:
    """A ``MeasureConfig`` from a YAML file (optional) overlaid with the command line."""
    settings = _read_config_file(args.config)
    color_bands, target_color = _color_options(args)
    settings.update(_top_level_options(args, target_color))
    sections = {
        "header": _header_options(args),
        "catalog": _catalog_options(args),
        "calibration": _calibration_options(args, color_bands),
        "astrometry": _astrometry_options(args),
        "detection": {"method": args.detection} if args.detection is not None else {},
        "masking": {"cosmic_rays": True} if args.cosmic_rays else {},
        "subtraction": _given(args, {
            "template": "template", "survey": "template_catalog", "align": "template_align",
            "method": "subtraction_method",
        }),
    }
    for name, options in sections.items():
        settings[name] = _overlay_section(settings, name, options)
    return _validate_measure_config(settings)


def _read_config_file(path: str | None) -> dict[str, Any]:
    """The settings of the YAML file at ``path`` (none: empty)."""
    if path is None:
        return {}
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read configuration file {path}: {err}") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping")
    return loaded


def _overlay_section(settings: dict[str, Any], name: str, options: dict[str, Any]) -> Any:
    """Section ``name`` of the file's ``settings`` with the command-line ``options`` on top."""
    from_file = settings.get(name, {})
    if not isinstance(from_file, dict):
        raise ConfigError(f"configuration section {name!r} must be a mapping")
    return {**from_file, **options}


def _given(args: argparse.Namespace, fields: dict[str, str]) -> dict[str, Any]:
    """``{setting: value}`` for each ``{setting: option attribute}`` the command line set."""
    values = {key: getattr(args, attr) for key, attr in fields.items()}
    return {key: value for key, value in values.items() if value is not None}


def _top_level_options(args: argparse.Namespace, target_color: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {"target": {"ra": args.ra, "dec": args.dec}}
    if args.hdu is not None:
        # A number selects the HDU by index, anything else by EXTNAME.
        options["hdu"] = int(args.hdu) if args.hdu.isdigit() else args.hdu
    if target_color is not None:
        options["target_color"] = target_color
    options.update(_given(args, {"nsigma": "nsigma", "engine": "engine"}))
    return options


def _header_options(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("mjd", "exptime", "filter", "gain", "read_noise", "saturation")
    return _given(args, {key: key for key in keys})


def _catalog_options(args: argparse.Namespace) -> dict[str, Any]:
    from skyphot.catalogs.columns import parse_columns

    options = _given(args, {"name": "catalog_name", "magsys": "magsys"})
    if args.catalog is not None:
        options["path"] = str(args.catalog)
    if args.cache_dir is not None:
        options["cache_dir"] = str(args.cache_dir)
    columns = parse_columns(args.catalog_columns)
    if columns:
        options["columns"] = columns
    if args.no_cache:
        options["use_cache"] = False
    return options


def _color_options(args: argparse.Namespace) -> tuple[tuple[str, str] | None, float | None]:
    """The colour bands (``--color`` or ``--target-color``) and the target's colour."""
    color_bands: tuple[str, str] | None = (args.color[0], args.color[1]) if args.color else None
    if args.target_color is None:
        return color_bands, None
    c1, c2, value = parse_target_color(args.target_color)
    if color_bands is not None and color_bands != (c1, c2):
        raise ConfigError(
            f"--target-color is for {c1}-{c2} but --color asks for "
            f"{color_bands[0]}-{color_bands[1]}: they must be the same colour"
        )
    return (c1, c2), value


def _calibration_options(
    args: argparse.Namespace, color_bands: tuple[str, str] | None
) -> dict[str, Any]:
    options = _given(args, {"band": "band", "spatial_order": "spatial_order"})
    if args.response_order is not None:
        # "0".."2" as the config's integer orders, "auto" as is
        order = args.response_order
        options["response_order"] = int(order) if order.isdigit() else order
    if color_bands is not None:
        options["color_bands"] = list(color_bands)
    if args.no_color_term:
        options["fit_color_term"] = False
    return options


def _astrometry_options(args: argparse.Namespace) -> dict[str, Any]:
    options = _given(args, {"method": "astrometry", "blind": "blind",
                            "pixel_scale_arcsec": "pixel_scale"})
    if args.index_dir is not None:
        options["index_dir"] = str(args.index_dir)
    return options


def _validate_measure_config(settings: dict[str, Any]) -> Any:
    """``settings`` as a ``MeasureConfig``; a ``ConfigError`` listing every invalid field."""
    from pydantic import ValidationError

    from skyphot.pipeline.config import MeasureConfig

    try:
        return MeasureConfig.model_validate(settings)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from err


def cmd_measure(args: argparse.Namespace) -> int:
    from skyphot.pipeline.api import measure

    config = build_measure_config(args)
    result = measure(
        args.image,
        config,
        diagnostics=args.plot,
        progress=lambda stage: logger.debug("running %s", stage),
    )
    if args.json:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        sys.stdout.write(format_result(result) + "\n")
    return EXIT_OK


def format_result(result: Any) -> str:
    """A short human-readable summary of a ``PhotometryResult``."""
    if result.detected:
        head = f"{result.band} = {result.mag:.3f} ± {result.magerr:.3f} ({result.magsys})"
    else:
        head = f"{result.band} > {result.limiting_mag:.3f} ({result.limit_nsigma:g}σ upper limit)"
    color = (
        f"colour term {result.color_term:+.3f} on {result.color_bands[0]}-{result.color_bands[1]}"
        f" = {result.target_color:.2f} [{result.color_source}]"
        if result.color_term is not None
        else "no colour term"
    )
    return "\n".join(
        [
            head,
            f"  MJD {result.mjd:.5f}  S/N {result.snr:.1f}  "
            f"limit {result.limiting_mag:.3f} ({result.limit_nsigma:g}σ)",
            f"  flux {result.flux:.3f} ± {result.fluxerr:.3f} µJy",
            f"  ZP {result.zero_point:.3f} ± {result.zero_point_err:.3f}, {color}",
            f"  {result.n_calib} calibration stars (rms {result.calib_scatter:.3f}) from "
            f'{result.catalog}; FWHM {result.fwhm_arcsec:.2f}"; astrometric rms '
            f'{result.astrometry_rms_arcsec:.3f}"',
            f"  flags: {', '.join(result.flag_names) or 'none'}; {result.timings['total']:.2f} s",
            *(f"  note: {note}" for note in result.notes),
            *_subtraction_lines(result),
        ]
    )


NSIGMA_CHOICES = (3.0, 5.0)
"""Detection thresholds offered everywhere (CLI, web form, API)."""

MEASURE_EPILOG = f"""examples:
  skyphot measure frame.fits --ra 150.1307 --dec 2.1619
  skyphot measure frame.fits.fz --ra 150.1307 --dec 2.1619 --catalog ref.ecsv --json
  skyphot measure frame.fits --ra 150.1307 --dec 2.1619 --filter r --mjd 60400.1234 \\
      --target-color g-r=0.3 --nsigma 3 --plot diag.png

exit codes:
  {EXIT_OK}   a magnitude or an upper limit was measured
  {EXIT_USAGE}   bad command line
  {EXIT_BAD_INPUT}   the file, catalog or options are unusable (the message says which)
  {EXIT_ANALYSIS}   the frame was read but no trustworthy result could be made
  {EXIT_ENVIRONMENT}   an external tool or service failed (e.g. the catalog service)
  {EXIT_FAILURE}   any other error
  {EXIT_INTERNAL}  a bug: please report it with the command line
"""


def _subtraction_lines(result: Any) -> list[str]:
    """What the template subtraction did, when it ran."""
    sub = result.subtraction
    if sub is None:
        return []
    science = (
        f"{sub.science_mag:.3f} ± {sub.science_magerr:.3f}"
        if sub.science_mag is not None
        else f"flux {sub.science_flux:.3f} µJy"
    )
    noise = (
        f"{sub.difference_noise_ratio:.2f}" if sub.difference_noise_ratio is not None else "n/a"
    )
    return [
        f"  difference image ({sub.method}) against {sub.template} [{sub.template_origin}]: "
        f"template depth {sub.template_limiting_mag:.2f}, FWHM {sub.template_fwhm_arcsec:.2f}\", "
        f"noise/expected {noise}; {sub.timings['total']:.2f} s",
        f"  science frame alone (host light included): {science}",
        *([f"  template: {sub.template_note}"] if sub.template_note else []),
    ]


def add_measure_parser(sub: Any) -> None:
    p = sub.add_parser(
        "measure", help="calibrated photometry of a target on a FITS frame",
        description="Measure the target at --ra/--dec on one FITS frame: astrometry, "
        "calibration against a reference catalog, PSF photometry; prints the magnitude with "
        "its error (magnitude system per band), or an upper limit when the target is not "
        "detected at --nsigma.",
        epilog=MEASURE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help="FITS frame (.fits, .fits.fz, .fits.gz)")
    p.add_argument("--ra", type=float, required=True, help="target RA, degrees")
    p.add_argument("--dec", type=float, required=True, help="target Dec, degrees")
    p.add_argument(
        "--catalog",
        help="reference catalog file (ECSV, CSV, FITS, Parquet); "
        "default: the best online catalog for the band, through the cache",
    )
    p.add_argument(
        "--catalog-name",
        help="force a catalog: gaia_synth, ps1, skymapper, refcat2, apass, sdss, 2mass, "
        "or a name given to 'skyphot catalog import'",
    )
    p.add_argument("--cache-dir", help="catalog cache directory")
    p.add_argument("--no-cache", action="store_true", help="do not use the catalog cache")
    p.add_argument("--catalog-columns", help="column mapping, e.g. ra=RA_deg,dec=DE_deg,r=rPSF")
    p.add_argument("--magsys", choices=["AB", "Vega"], help="magnitude system of the catalog")
    p.add_argument("--filter", help="frame filter (overrides the header)")
    p.add_argument("--band", help="catalog band to calibrate to (default: from the filter)")
    p.add_argument("--color", nargs=2, metavar=("C1", "C2"), help="colour-term bands (C1-C2)")
    p.add_argument("--target-color", help="target colour, e.g. g-r=0.3")
    p.add_argument("--no-color-term", action="store_true", help="do not fit a colour term")
    p.add_argument("--spatial-order", type=int, help="zero-point polynomial order in x, y")
    p.add_argument(
        "--response-order", choices=["0", "1", "2", "auto"],
        help="order of a non-linear response term in the instrumental magnitude (plates, "
        "detectors near saturation); auto: 2 or 1 only if significant (default 0)",
    )
    p.add_argument("--nsigma", type=float, choices=NSIGMA_CHOICES,
                   help="detection S/N and limit sigma: 3 or 5 (default 5; as in the web form)")
    p.add_argument("--hdu", help="HDU index or EXTNAME (default: first image HDU)")
    p.add_argument("--mjd", type=float, help="mid-exposure MJD (overrides the header)")
    p.add_argument("--exptime", type=float, help="exposure time, s")
    p.add_argument("--gain", type=float, help="gain, e-/ADU")
    p.add_argument("--read-noise", dest="read_noise", type=float, help="read noise, e-")
    p.add_argument("--saturation", type=float, help="saturation level, ADU")
    p.add_argument(
        "--astrometry",
        choices=["refine", "header", "scamp", "astrometry.net"],
        help="astrometry method (default: refine the header WCS)",
    )
    p.add_argument(
        "--blind",
        choices=["auto", "never", "always"],
        help="blind solving with astrometry.net (default auto: when the WCS is missing or wrong)",
    )
    p.add_argument(
        "--index-dir", help="astrometry.net index files (default: built from the catalog)"
    )
    p.add_argument("--pixel-scale", type=float, help="pixel scale hint, arcsec/px")
    p.add_argument("--engine", choices=["skyphot", "stdpipe"], help="measurement engine")
    p.add_argument("--detection", choices=["sep", "sextractor"], help="detection engine")
    p.add_argument("--cosmic-rays", action="store_true", help="mask cosmic rays")
    p.add_argument(
        "--template",
        metavar="FILE|auto|none",
        help="subtract a template before measuring: a FITS file, 'auto' (survey template from "
        "the template cache or the cutout service) or 'none' (default)",
    )
    p.add_argument(
        "--template-survey",
        "--template-catalog",
        dest="template_catalog",
        metavar="SURVEY",
        help="survey for --template auto: ps1, legacy, des or skymapper (default: the deepest "
        "serving the frame's band at the target, falling back to the next)",
    )
    p.add_argument(
        "--template-align",
        choices=["internal", "swarp"],
        help="resample the template onto the frame with skyphot's flux-conserving splines "
        "(internal, default) or with SWarp",
    )
    p.add_argument(
        "--subtraction-method",
        choices=["zogy", "sfft", "hotpants"],
        help="template subtraction algorithm (default zogy; sfft and hotpants for comparison, "
        "when installed)",
    )
    p.add_argument("--config", help="YAML file with MeasureConfig settings")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--plot", help="write the diagnostic PNG here")
    p.set_defaults(handler=cmd_measure)


# --------------------------------------------------------------------------- simulate, demo


def cmd_simulate(args: argparse.Namespace) -> int:
    from skyphot.testing import SimulationParams, simulate_frame

    overrides: dict[str, Any] = {}
    if args.shape is not None:
        overrides["shape"] = (args.shape[0], args.shape[1])
    if args.target_mag is not None:
        overrides["target_mag"] = args.target_mag
    if args.no_wcs:
        overrides["include_wcs"] = False
    if args.dtype is not None:
        overrides["dtype"] = args.dtype
    params = SimulationParams(**overrides)
    sim = simulate_frame(params, seed=args.seed)
    paths = sim.write(Path(args.outdir), stem=args.stem, compression=args.compress)
    truth = sim.truth
    summary = {
        "image": str(paths.image),
        "catalog": str(paths.catalog),
        "target_ra": truth.ra,
        "target_dec": truth.dec,
        "target_mag": truth.mag,
        "target_color": truth.color,
        "ideal_limit_5sigma": truth.ideal_limit(5.0),
        "mjd": truth.mjd_mid,
    }
    sys.stdout.write(json.dumps(summary, indent=None if args.json else 2) + "\n")
    return EXIT_OK


def add_simulate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "simulate", help="write a simulated frame and its reference catalog",
        description="Write a simulated FITS frame with a transient of known magnitude and its "
        "reference catalog; prints the truth (position, magnitude, ideal limit) as JSON.",
    )
    p.add_argument("outdir", help="directory to write into")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed: the same seed writes the same frame (default 0)")
    p.add_argument("--stem", default="frame", help="file name stem (default 'frame')")
    p.add_argument("--shape", type=int, nargs=2, metavar=("NY", "NX"),
                   help="image size in pixels, rows then columns")
    p.add_argument("--target-mag", type=float, help="true AB magnitude of the transient")
    p.add_argument("--dtype", choices=["float32", "uint16"],
                   help="pixel type: float32 or uint16 with BZERO (like many cameras)")
    p.add_argument("--compress", choices=["fz", "gz"],
                   help="write .fits.fz (tile-compressed) or .fits.gz instead of .fits")
    p.add_argument("--no-wcs", action="store_true", help="write no WCS (blind-solve tests)")
    p.add_argument("--json", action="store_true", help="compact JSON")
    p.set_defaults(handler=cmd_simulate)


def cmd_demo(args: argparse.Namespace) -> int:
    from skyphot.pipeline.api import measure
    from skyphot.pipeline.config import MeasureConfig
    from skyphot.testing import SimulationParams, simulate_frame

    outdir = Path(args.dir)
    sim = simulate_frame(SimulationParams(shape=(1024, 1536), target_mag=19.0), seed=args.seed)
    paths = sim.write(outdir, stem="demo", compression="fz")
    truth = sim.truth
    config = MeasureConfig.model_validate(
        {
            "target": {"ra": truth.ra, "dec": truth.dec},
            "catalog": {"path": str(paths.catalog)},
            "target_color": truth.color,
        }
    )
    plot = outdir / "demo_diagnostics.png"
    result = measure(paths.image, config, diagnostics=plot)
    sys.stdout.write(
        "skyphot demo: a simulated frame measured end to end\n"
        f"  frame    {paths.image}\n  catalog  {paths.catalog}\n  plot     {plot}\n\n"
        + format_result(result)
        + "\n\n"
        f"  truth: {truth.mag:.3f}; 5σ ideal PSF-fit limit {truth.ideal_limit(5.0):.3f}\n"
        f"  stage timings: "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in result.timings.items())
        + "\n"
    )
    return EXIT_OK


def add_demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="simulate a frame and measure it end to end")
    p.add_argument("--dir", default="skyphot-demo", help="where to write the demo files")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(handler=cmd_demo)


# --------------------------------------------------------------------------- main


# Subcommands whose parser is built alone when the command line names them: their
# neighbours' parsers import the web, job and client modules (~0.02 s of CPU on top of the
# numpy and astropy a measurement imports anyway).
_BUILT_ALONE: dict[str, Callable[[Any], None]] = {
    "measure": add_measure_parser,
    "simulate": add_simulate_parser,
    "demo": add_demo_parser,
}

# Global options that may precede the command word (none takes a value). Anything else
# there (--help, --version, an abbreviation) gets the whole parser, as before.
_GLOBAL_FLAGS = re.compile(r"-[vq]+|--verbose|--quiet")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``skyphot`` parser; with ``command`` one of measure, simulate or demo, only that
    subcommand's parser (the others' modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog="skyphot", description="Calibrated photometry of a transient on any FITS frame."
    )
    parser.add_argument("--version", action="version", version=f"skyphot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more progress on stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command in _BUILT_ALONE:
        _BUILT_ALONE[command](sub)
        return parser
    add_measure_parser(sub)
    add_simulate_parser(sub)
    add_demo_parser(sub)
    _add_catalog_parsers(sub)
    _add_template_parsers(sub)
    _add_batch_parsers(sub)
    _add_web_parsers(sub)
    return parser


def command_word(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` runs, when only global flags precede it; else None (then
    the whole parser is built, e.g. for ``skyphot --help`` or a misspelt option)."""
    for word in argv:
        if not word.startswith("-"):
            return word
        if not _GLOBAL_FLAGS.fullmatch(word):
            return None
    return None


def _add_catalog_parsers(sub: Any) -> None:
    from skyphot.catalogs.commands import add_parsers

    add_parsers(sub)


def _add_template_parsers(sub: Any) -> None:
    from skyphot.templates.commands import add_parsers

    add_parsers(sub)


def _add_batch_parsers(sub: Any) -> None:
    from skyphot.client.batch import add_parsers

    add_parsers(sub)


def _add_web_parsers(sub: Any) -> None:
    """``serve``, ``admin-token`` and ``worker``; without their extras they explain how to
    get them."""
    try:
        from skyphot.jobs.commands import add_parsers as add_worker_parsers
        from skyphot.web.commands import add_parsers
        from skyphot.web.skyportal_commands import add_parsers as add_skyportal_parsers
    except ModuleNotFoundError as err:  # the optional 'web' extra is not installed
        missing = err.name or "a web dependency"

        def needs_extra(args: argparse.Namespace) -> int:
            raise ToolNotFoundError(
                f"'skyphot {args.command}' needs the web extra ({missing} is not installed): "
                "pip install 'skyphot[web]'"
            )

        for name in ("serve", "admin-token", "worker", "skyportal"):
            sub.add_parser(name, help="(needs: pip install 'skyphot[web]')").set_defaults(
                handler=needs_extra
            )
        return
    add_parsers(sub)
    add_worker_parsers(sub)
    add_skyportal_parsers(sub)


def _configure_logging(verbose: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("skyphot: %(message)s"))
    root = logging.getLogger("skyphot")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); its exit code."""
    return _run(argv)[0]


def _run(
    argv: Sequence[str] | None, prepare: Callable[[str], None] | None = None
) -> tuple[int, str | None]:
    """The exit code and the command that ran (None when there was none); ``prepare`` is
    called with the command's name once the command line is parsed."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_word(words))
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE, None
    _configure_logging(args.verbose, args.quiet)
    if prepare is not None:
        prepare(args.command)
    try:
        return int(args.handler(args)), args.command
    except SkyphotError as err:
        code = exit_code_for(err)
        if code == EXIT_INTERNAL:
            logger.debug("internal error", exc_info=True)
            sys.stderr.write(f"skyphot: error: {err} (this is a bug; please report it)\n")
        else:
            sys.stderr.write(f"skyphot: error: {err}\n")
        return code, args.command


# Commands that are done once their output is written: they skip the interpreter's
# teardown of astropy and numpy (~0.1 s of every `skyphot measure`). Long-running ones
# (serve, worker) and those that may leave work to atexit handlers exit normally.
_ONE_SHOT = frozenset({"measure", "simulate", "demo"})

# The modules a command imports before it starts working (its handler imports them too).
_HEAVY_IMPORTS: dict[str, tuple[str, ...]] = {
    "measure": ("skyphot.pipeline.api",),
    "demo": ("skyphot.pipeline.api", "skyphot.testing"),
    "simulate": ("skyphot.testing",),
}


# What OpenBLAS reads for its thread count when numpy loads it, in its order of precedence.
_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def _import_then_freeze(command: str) -> None:
    """Import ``command``'s heavy modules with the collector off, then freeze what exists.

    A one-shot command loads BLAS with one thread unless the user chose a count: starting
    OpenBLAS's pool costs ~0.04 s (per-thread buffers), and a measurement's linear algebra
    (normal equations of a few parameters) gains nothing from it; its idle workers spin on
    the cores the pipeline uses. The variable is removed again once numpy is loaded, so
    external tools run later keep their own defaults.
    """
    one_thread = command in _ONE_SHOT and not any(
        name in os.environ for name in _BLAS_THREAD_VARIABLES
    )
    if one_thread:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        for name in _HEAVY_IMPORTS.get(command, ()):
            importlib.import_module(name)
    finally:
        if one_thread:
            del os.environ["OPENBLAS_NUM_THREADS"]
    gc.freeze()
    gc.enable()


def entry() -> None:
    """The ``skyphot`` program (console script and ``python -m skyphot.cli``)."""
    # Importing numpy, astropy and pydantic makes hundreds of thousands of objects that live
    # as long as the process; with the collector on, the import triggers full collections
    # that walk them again and again, and every full collection of the run walks them once
    # more. So the command's imports run with the collector off and their objects are then
    # frozen (kept out of every later collection). Only here, never on importing skyphot:
    # a program that embeds the library owns its collector.
    gc.disable()
    code, command = _run(None, prepare=_import_then_freeze)
    if command in _ONE_SHOT:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()

"""The HOTPANTS adapter's contract, against a stand-in ``hotpants`` on PATH (the real program
is packaged neither for Debian nor PyPI): the command line it builds, the outputs it reads
back, and the errors when the program is missing or fails."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from skyphot.adapters._process import available
from skyphot.adapters.hotpants import subtract_hotpants
from skyphot.errors import ExternalToolError, ToolNotFoundError

# Behaves like hotpants on its I/O: reads -inim/-tmplim and their noise images, writes the
# difference (image minus template: the test's images have one PSF, so the matching kernel
# is the identity) and its noise image, and records its arguments. HOTPANTS_FAIL makes it
# fail as the real program does, with a message on stderr.
_STAND_IN = '''#!{python}
import json, os, sys
import numpy as np
from astropy.io import fits
argv = sys.argv[1:]
opt = {{argv[i]: argv[i + 1] for i in range(0, len(argv) - 1, 2) if argv[i].startswith("-")}}
with open(os.environ["HOTPANTS_LOG"], "w") as log:
    json.dump(argv, log)
if os.environ.get("HOTPANTS_FAIL"):
    print("ERROR: kernel fit failed: no good stamps", file=sys.stderr)
    sys.exit(1)
sci = fits.getdata(opt["-inim"]).astype(float)
tmpl = fits.getdata(opt["-tmplim"]).astype(float)
lo_i, lo_t = float(opt["-il"]), float(opt["-tl"])
bad = (sci < lo_i) | (tmpl < lo_t)
diff = np.where(bad, 1e-30, sci - tmpl)
noise = np.hypot(fits.getdata(opt["-ini"]), fits.getdata(opt["-tni"]))
fits.PrimaryHDU(diff.astype(np.float32)).writeto(opt["-outim"])
fits.PrimaryHDU(np.where(bad, 0.0, noise).astype(np.float32)).writeto(opt["-oni"])
'''


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "hotpants"
    exe.write_text(_STAND_IN.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "args.json"
    monkeypatch.setenv("HOTPANTS_LOG", str(log))
    return log


def _gauss(shape: tuple[int, int], x: float, y: float, flux: float, fwhm: float) -> np.ndarray:
    s = fwhm / 2.3548
    yy, xx = np.indices(shape)
    return flux * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)) / (2 * math.pi * s * s)


def _pair(seed: int) -> tuple[np.ndarray, np.ndarray, float, float, tuple[float, float]]:
    """Science (static star + transient) and template (the star) with the same PSF, both
    with white noise: noise levels, transient flux and position."""
    rng = np.random.default_rng(seed)
    shape = (64, 64)
    static = _gauss(shape, 20.3, 40.6, 2.0e4, 3.0)
    pos = (40.2, 25.7)
    flux = 3000.0
    sig_n, sig_r = 5.0, 3.0
    sci = static + _gauss(shape, *pos, flux, 3.0) + rng.normal(0, sig_n, shape)
    tmpl = static + rng.normal(0, sig_r, shape)
    return sci, tmpl, sig_n, sig_r, pos


def test_difference_and_noise_read_back_measure_the_transient(stand_in: Path) -> None:
    sci, tmpl, sig_n, sig_r, (x, y) = _pair(1)
    bad = np.zeros(sci.shape, bool)
    bad[5, 5:9] = True  # masked pixels must reach hotpants as invalid and come back NaN
    res = subtract_hotpants(
        sci, tmpl, science_var=np.full(sci.shape, sig_n**2),
        template_var=np.full(sci.shape, sig_r**2), bad=bad, fwhm_science=3.0,
        fwhm_template=2.5,
    )
    args = json.loads(stand_in.read_text())
    opts = dict(zip(args[::2], args[1::2], strict=False))
    assert opts["-c"] == "t" and opts["-n"] == "i"  # template sharper: it is convolved
    assert int(opts["-r"]) >= 4 and int(opts["-rss"]) > int(opts["-r"])
    assert res.convolved == "template"
    assert np.all(np.isnan(res.difference[5, 5:9])) and np.all(np.isnan(res.variance[5, 5:9]))
    good = ~np.isnan(res.variance)
    assert np.allclose(res.variance[good], sig_n**2 + sig_r**2, rtol=1e-5)
    # The transient's flux in a 3 FWHM aperture against the truth, with the noise read back.
    yy, xx = np.indices(sci.shape)
    ap = np.hypot(xx - x, yy - y) < 4.5
    measured = float(res.difference[ap].sum())
    err = math.sqrt(float(res.variance[ap].sum()))
    enclosed = float(_gauss(sci.shape, x, y, 3000.0, 3.0)[ap].sum())
    assert abs(measured - enclosed) < 4 * err
    # The static star is gone within its noise.
    ap_s = np.hypot(xx - 20.3, yy - 40.6) < 4.5
    assert abs(float(res.difference[ap_s].sum())) < 4 * err


def test_broader_template_convolves_the_science_image(stand_in: Path) -> None:
    sci, tmpl, sig_n, sig_r, _ = _pair(2)
    res = subtract_hotpants(
        sci, tmpl, science_var=np.full(sci.shape, sig_n**2),
        template_var=np.full(sci.shape, sig_r**2), bad=np.zeros(sci.shape, bool),
        fwhm_science=2.5, fwhm_template=3.5,
    )
    args = json.loads(stand_in.read_text())
    assert args[args.index("-c") + 1] == "i" and res.convolved == "science"


def test_failure_of_the_program_is_reported_with_its_error_output(
    stand_in: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOTPANTS_FAIL", "1")
    sci, tmpl, sig_n, sig_r, _ = _pair(3)
    with pytest.raises(ExternalToolError, match=r"(?s)hotpants exited with code 1.*no good stamps"):
        subtract_hotpants(
            sci, tmpl, science_var=np.full(sci.shape, sig_n**2),
            template_var=np.full(sci.shape, sig_r**2), bad=np.zeros(sci.shape, bool),
            fwhm_science=3.0, fwhm_template=2.5,
        )


@pytest.mark.skipif(available("hotpants"), reason="hotpants is installed here")
def test_missing_program_is_named_with_how_to_get_it(tmp_path: Path) -> None:
    sci, tmpl, sig_n, sig_r, _ = _pair(4)
    with pytest.raises(ToolNotFoundError, match=r"(?s)hotpants is not installed.*build it from"):
        subtract_hotpants(
            sci, tmpl, science_var=np.full(sci.shape, sig_n**2),
            template_var=np.full(sci.shape, sig_r**2), bad=np.zeros(sci.shape, bool),
            fwhm_science=3.0, fwhm_template=2.5,
        )

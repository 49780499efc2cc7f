"""Help texts of `measure` and `simulate`, and the detection thresholds every layer offers."""

from __future__ import annotations

import argparse
import re

import pytest

from skyphot.cli import build_parser, main


def help_text(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_measure_help_has_description_examples_and_exit_codes(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(capsys, "measure")
    assert "Measure the target at --ra/--dec on one FITS frame" in text
    assert "examples:\n  skyphot measure frame.fits --ra 150.1307 --dec 2.1619\n" in text
    codes = dict(re.findall(r"^  (\d+) +(.+)$", text.split("exit codes:")[1], re.MULTILINE))
    assert set(codes) == {"0", "1", "2", "3", "4", "5", "70"}


def test_every_simulate_option_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    simulate = sub.choices["simulate"]
    assert simulate.description and "known magnitude" in simulate.description
    undocumented = [a.option_strings or a.dest for a in simulate._actions if not a.help]
    assert undocumented == []


def test_nsigma_is_three_or_five_as_in_the_web(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["measure", "x.fits", "--ra", "1", "--dec", "1", "--nsigma", "4"])
    assert done.value.code == 2
    assert "argument --nsigma: invalid choice: 4.0 (choose from 3.0, 5.0)" in (
        capsys.readouterr().err)

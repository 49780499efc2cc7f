"""Stages, recipe, runner and configuration of a measurement."""

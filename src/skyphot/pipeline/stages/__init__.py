"""The stages of a measurement, one concept per module."""

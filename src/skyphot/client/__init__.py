"""A client of a running skyphot server: ``skyphot batch`` uploads many frames through the
HTTP API. Standard library only, so it runs on any machine that has skyphot installed."""

"""The local VizieR stand-in lives in ``skyphot.testing.vizier``; re-exported for the tests."""

from skyphot.testing.vizier import FakeVizier, empty_votable, serve_vizier, votable_document

__all__ = ["FakeVizier", "empty_votable", "serve_vizier", "votable_document"]

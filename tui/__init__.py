"""Textual UI for kfdtrace (`kfdtrace view`)."""

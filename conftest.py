"""Loads the `*.test.yaml` pytest plugin for this checkout (`pytest agents/`), also when the
installed package's entry points predate it (an editable install made before the plugin existed).
Named like its entry point, so pytest registers it once either way."""

pytest_plugins = ["runner.testing.plugin"]

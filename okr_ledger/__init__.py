"""The application: settings, the CLI and the wiring of adapters (the composition root)."""

__version__ = "0.1.0"

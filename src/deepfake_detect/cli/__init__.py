"""The command line (`deepfake-detect`): it imports every layer, lazily, and nothing imports it."""

from deepfake_detect.cli.app import app, main

__all__ = ["app", "main"]

"""Errors that the command line shows as one line, without a traceback."""


class DetectorError(Exception):
    """Base class for every error caused by the user's input rather than a bug."""


class ImageError(DetectorError):
    """An image that cannot be read: unsupported, corrupt, truncated or too large."""


class DataError(DetectorError):
    """A dataset that cannot be used: missing folders, empty classes, bad CSVs."""


class ModelError(DetectorError):
    """A model that cannot be built or loaded: unknown backbone, bad weights or config."""

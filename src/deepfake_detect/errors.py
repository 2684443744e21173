"""Errors that the command line shows as one line, without a traceback."""


class DetectorError(Exception):
    """Base class for every error caused by the user's input rather than a bug."""


class ImageError(DetectorError):
    """An image that cannot be read: unsupported, corrupt, truncated or too large.

    Its subclasses tell a caller that answers in kinds (the HTTP service's 415 and 413) which
    kind; a plain `ImageError` is a file that claims to be an image and is broken.
    """


class UnsupportedImageError(ImageError):
    """Not an image, or a format this installation does not decode."""


class ImageTooLargeError(ImageError):
    """Over the file-size or pixel limit, refused before its pixels are decoded."""


class DataError(DetectorError):
    """A dataset that cannot be used: missing folders, empty classes, bad CSVs."""


class ModelError(DetectorError):
    """A model that cannot be built or loaded: unknown backbone, bad weights or config."""

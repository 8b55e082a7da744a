"""Errors that carry one sentence a user can act on; entry points print them instead of tracebacks."""


class FerError(Exception):
    """Base class: str(error) is a complete, user-facing sentence."""


class ImageReadError(FerError):
    """An image file could not be read or decoded."""


class ModelLoadError(FerError):
    """A model file is missing, corrupt, unsafe, or not a fer-realtime model."""


class DatasetError(FerError):
    """A dataset is missing, malformed, or lacks usable classes."""


class DetectorError(FerError):
    """A face detector could not be created."""

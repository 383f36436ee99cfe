"""Exceptions raised for problems a user can fix.

Every message names the bad value, what was expected, and how to fix it. The CLI prints these
without a traceback and exits with status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EmbedgenreError(Exception):
    """Base class for user-facing errors."""


class CatalogError(EmbedgenreError):
    """A catalog cannot be read: missing file or column, bad encoding, empty."""


class PosterError(EmbedgenreError):
    """One poster cannot be used (missing, corrupt, not an image, too large)."""


class WeightsNotFoundError(EmbedgenreError):
    """An encoder's weights are not on this machine; the message lists where we looked."""


class UnknownEncoderError(EmbedgenreError):
    """A name that the encoder registry does not know."""


class IndexStoreError(EmbedgenreError):
    """An index directory is missing, corrupt, or incompatible with the request."""


class PredictorError(EmbedgenreError):
    """A predictor cannot be trained or applied to the given data."""


class IndexLockedError(IndexStoreError):
    """Another process is writing the index; the message names it (pid, host, start time)."""


class WriteError(EmbedgenreError):
    """A file cannot be written (read-only, disk full, no permission); nothing was changed."""


class OutputPathError(WriteError):
    """An output file or folder cannot be written (a file in the way, no permission, disk full)."""

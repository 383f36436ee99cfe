"""Exceptions raised for problems a user can fix.

Every error says what went wrong (``what``), what to do about it (``fix``, when the message
alone does not say) and, where one argument is at fault, which (``param``, by its Python
keyword). Each surface renders the same error in its own words: the CLI names the option
(``--plot``), the HTTP service the field (``plot``) and picks the status from the error's
kind, a Python caller sees the keyword. Library text never names a CLI option.

The kinds, which every concrete error also is:

- :class:`BadInputError`: a value that cannot be used (HTTP 400);
- :class:`NotFoundError`: something asked for by name or id does not exist (404);
- :class:`ConflictError`: the request clashes with the state of an index (409);
- :class:`TooLargeError`: over a size or pixel limit (413);
- :class:`UnsupportedMediaError`: not a kind of file that is read (415);
- :class:`UnavailableError`: the work cannot be done here and now (503).

Anything that is not an ``EmbedgenreError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class EmbedgenreError(Exception):
    """Base class for user-facing errors.

    Parameters
    ----------
    what : str
        What went wrong, naming the bad value.
    fix : str, optional
        What to do about it.
    param : str, optional
        The argument at fault, by its Python keyword (``"plot"``, ``"item_id"``).
    """

    def __init__(self, what: str, fix: str | None = None, *, param: str | None = None):
        self.what, self.fix, self.param = what, fix, param
        super().__init__(what if not fix else f"{what.rstrip()} {fix}")


class EmbedgenreWarning(UserWarning):
    """Base class for warnings about something a user may want to fix; like an error it
    carries ``what``, ``fix`` and the ``param`` at fault, so each surface can name it."""

    def __init__(self, what: str, fix: str | None = None, *, param: str | None = None):
        self.what, self.fix, self.param = what, fix, param
        super().__init__(what if not fix else f"{what.rstrip()} {fix}")


class BadInputError(EmbedgenreError):
    """A value that cannot be used as given."""


class NotFoundError(EmbedgenreError):
    """Something asked for by name or id does not exist."""


class ConflictError(EmbedgenreError):
    """The request clashes with the current state of an index (another writer, another
    vocabulary or encoder)."""


class TooLargeError(BadInputError):
    """An input over a size or pixel limit."""


class UnsupportedMediaError(BadInputError):
    """A file that is not of a kind embedgenre reads."""


class UnavailableError(EmbedgenreError):
    """The work cannot be done here and now (weights not on this machine, no GPU, a busy
    server)."""


class NoSuchFileError(NotFoundError):
    """A file or folder named by its path does not exist."""


class CatalogError(BadInputError):
    """A catalog cannot be read: missing file or column, bad encoding, empty."""


class NoSuchCatalogError(CatalogError, NoSuchFileError):
    """The catalog's path does not exist."""


class PosterError(BadInputError):
    """One poster cannot be used (missing, corrupt, not an image, too large)."""


class NoSuchPosterError(PosterError, NoSuchFileError):
    """A poster file that does not exist."""


class NotAnImageError(PosterError, UnsupportedMediaError):
    """A poster whose bytes are not an image Pillow reads."""


class TooManyPixelsError(PosterError, TooLargeError):
    """A poster over the pixel limit or Pillow's decompression-bomb limit."""


class WeightsNotFoundError(UnavailableError):
    """An encoder's weights are not on this machine; the message lists where we looked."""


class UnknownEncoderError(NotFoundError):
    """A name that the encoder registry does not know."""


class IndexStoreError(EmbedgenreError):
    """An index directory is missing, corrupt, or incompatible with the request."""


class IndexPlanError(IndexStoreError, BadInputError):
    """An index cannot be built as asked (a memory budget or FAISS kind that does not fit)."""


class FaissGpuError(IndexStoreError, UnavailableError):
    """A GPU index was asked for, and the installed faiss has no GPU support or sees no GPU."""


class IndexLockedError(IndexStoreError, ConflictError):
    """Another process is writing the index; the message names it (pid, host, start time)."""


class IndexMismatchError(IndexStoreError, ConflictError):
    """The request does not fit the index as built (other encoders, dimensions or space)."""


class PredictorError(BadInputError):
    """A predictor cannot be trained or applied to the given data."""


class UnknownHeadError(PredictorError, NotFoundError):
    """No head of that name is saved in the index."""


class RetrievalError(BadInputError):
    """A similar or search query that cannot be answered as asked."""


class UnknownItemError(RetrievalError, NotFoundError):
    """No movie with that id in the index."""


class WriteError(EmbedgenreError):
    """A file cannot be written (read-only, disk full, no permission); nothing was changed."""


class ReadOnlyError(WriteError):
    """A folder takes no file at all (a read-only file system, no permission)."""


class OutputPathError(WriteError):
    """An output file or folder cannot be written (a file in the way, no permission, disk full)."""

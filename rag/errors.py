"""One exception family, so the CLI and the API can turn expected failures into messages."""


class RagError(Exception):
    """An expected failure with a message a user can act on."""

    exit_code = 1


class InputError(RagError):
    """Bad input from the user: a path, a name, a question. Exit code 2."""

    exit_code = 2


class IndexNotFoundError(InputError):
    """The named index does not exist."""


class IndexFormatError(InputError):
    """The index exists but was built by another embedder or a newer format."""


class CorruptIndexError(RagError):
    """A file of the index is missing, truncated or altered."""

    exit_code = 2


class ModelLoadError(RagError):
    """A configured model could not be found or loaded."""

    exit_code = 2


class IndexLockedError(RagError):
    """Another process is writing the same index."""

    exit_code = 2


class GenerationTimeout(RagError):
    """Generation (or the wait for the generator) ran past its deadline."""

"""One exception type per kind of failure; the CLI maps each to its exit code."""
from __future__ import annotations


class FaceDeidError(Exception):
    """Base class. ``exit_code`` is what the command line returns for it."""

    exit_code = 1


class BadArguments(FaceDeidError):
    """Unknown method, bad parameter value, conflicting options."""

    exit_code = 2


class UnsupportedMedia(FaceDeidError):
    """A file that cannot be read: empty, truncated, not an image, too large, unsupported mode."""

    exit_code = 3


class NoFaceFound(FaceDeidError):
    """No face was detected and the user asked to fail in that case."""

    exit_code = 4


class ModelUnavailable(FaceDeidError):
    """A model file or optional dependency is missing."""

    exit_code = 5


class BadKey(FaceDeidError):
    """A password or key did not authenticate a recovery payload."""

    exit_code = 6


class OutputError(FaceDeidError):
    """The output could not be written (would overwrite an input, unwritable folder...)."""

    exit_code = 7

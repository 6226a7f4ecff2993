"""The package's one exception family: every error a person can fix (chapter 00).

Every anticipated error of the API raises a :class:`SkinlesionError` whose message is one line
"what is wrong. Fix: what to do"; the command line (:mod:`skinlesion_utils.cli`) prints that
line as ``error: …`` and exits with status 2 (``--debug`` shows the traceback). Any other
exception is a bug and keeps its traceback.

:class:`SkinlesionError` subclasses ``ValueError``, so callers that catch ``ValueError`` keep
working; the ``*NotFound`` members are also ``FileNotFoundError``.

==========================  ===========================================  ================
class                       raised for                                   also importable
==========================  ===========================================  ================
``ConfigError``             a setting or argument out of range, of the   ``profiles``
                            wrong shape or type, an unknown name
``DataError``               layout, class folders, images, downloads     ``data``
``ChecksumError``           a file's sha256 differs from the manifest    ``data``
``DataNotAvailableError``   data neither on disk nor downloadable        ``data``
``CheckpointError``         a missing, damaged or mismatched checkpoint  ``checkpoints``
``CheckpointNotFound``      no checkpoint at the path                    ``checkpoints``
``RunError``                a run folder in use, or holding another run  ``runs``
``RunNotFound``             a folder holding no finished run             ``runs``
``FolderInUse``             a run folder another live process writes     ``results``
``ClaimsError``             a malformed claims file, unknown claim       ``paper``
``ClaimsNotTranscribed``    a table of the paper not transcribed yet     ``paper``
==========================  ===========================================  ================
"""
from __future__ import annotations


class SkinlesionError(ValueError):
    """Any error a person can fix; the message names the file or setting and the fix."""


class ConfigError(SkinlesionError):
    """A setting out of its range or an unknown name (profile, model, fusion, recipe …)."""


class DataError(SkinlesionError):
    """Any problem with the data a reader can fix; the message names the file and the fix."""


class ChecksumError(DataError):
    """A file's sha256 differs from the manifest."""


class DataNotAvailableError(DataError, RuntimeError):
    """The data is neither on disk nor downloadable (e.g. offline)."""


class CheckpointError(SkinlesionError):
    """A checkpoint that cannot be used as asked: damaged, refused, other architecture or settings."""


class CheckpointNotFound(CheckpointError, FileNotFoundError):
    """No checkpoint file at the given path."""


class RunError(SkinlesionError, RuntimeError):
    """A run folder that cannot be used: written by another process, or holding another run."""


class RunNotFound(RunError, FileNotFoundError):
    """A folder that holds no finished run."""


class FolderInUse(RunError):
    """A folder another live process holds the lock of (``results.exclusive_lock``)."""


class ClaimsError(SkinlesionError):
    """The claims file (or an edited copy) is malformed, or a claim/table does not exist."""


class ClaimsNotTranscribed(ClaimsError):
    """A table of the paper has no rows in the claims file yet."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (what the command line prints)."""
    lines = [s for s in str(exc).splitlines() if s.strip()]
    return lines[0] if lines else type(exc).__name__

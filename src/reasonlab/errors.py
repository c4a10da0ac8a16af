"""Errors a user sees as one clear line (the CLI prints ``str(err)`` and exits non-zero).

Every error that comes from bad input (a file, a model name, a server, a config field) is a
``ReasonlabError`` so the CLI can show it without a traceback wall; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class ReasonlabError(Exception):
    """Base class: bad input or environment, explained in one line."""


class UnknownNameError(ReasonlabError, KeyError):
    """A registry lookup (engine, model, dataset, strategy, prompt) found nothing."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelError(ReasonlabError):
    """A model file is missing, corrupt, has the wrong checksum, or cannot be loaded."""


class DataError(ReasonlabError):
    """A dataset file, line or field is missing or malformed."""


class EngineError(ReasonlabError):
    """A backend failed to generate: a dead server, garbage in a response, a load failure.

    ``retryable`` says whether asking again could help: False for a request that is wrong in itself
    (a prompt longer than the context window), which a run records once and does not retry forever.
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Interrupted(ReasonlabError):
    """The run was asked to stop (Ctrl-C, SIGTERM): work in flight ends without a result."""


class ConfigError(ReasonlabError):
    """A config is invalid, or a run directory holds a different config."""

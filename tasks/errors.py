"""User errors: bad input, bad data or a bad config, told in a few lines instead of a traceback.

``pyflyte run`` prints an exception that is a ``click.ClickException`` as its message alone (in
an "Error" box) and exits 1; every other exception is a bug and keeps its full traceback. Tasks
wrap their work in ``user_errors()``, which turns the project's own user-error types into a
``UserError`` with the same message, and raise ``UserError`` directly for what they check
themselves. Nothing in ``models/`` or ``data_contracts/`` knows about this: they raise their own
``ValueError`` subclasses, which stay catchable by type in plain Python.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import click


class UserError(click.ClickException, ValueError):
    """Something the user can fix (an input, a file, a config): the message says what and where.

    A ``ValueError`` too, so plain-Python callers catch it as the bad value it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


# The project's user-error types, by module. An exception of one of these types can only exist
# once its module is imported, so the check never imports one (data_contracts.validate pulls in
# great-expectations, models.registry PyTorch: seconds, on the path of a one-line error).
USER_ERROR_TYPES = {
    "data_contracts.sources": "SourceError",
    "data_contracts.schema": "SchemaError",
    "data_contracts.validate": "DataContractError",
    "models.registry": "ConfigError",
    "pipeline.options": "OptionsError",
}


def user_error_types() -> tuple[type[Exception], ...]:
    """The user-error types among the modules imported so far."""
    return tuple(getattr(sys.modules[module], name) for module, name in USER_ERROR_TYPES.items() if module in sys.modules)


@contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Re-raise the project's user-error types as ``UserError`` (message kept, ``prefix`` added)."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        if isinstance(exc, user_error_types()):
            raise UserError(f"{prefix}{exc}") from exc
        raise

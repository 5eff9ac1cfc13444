"""The domain's errors: what went wrong, in the school's terms.

The domain raises these and knows nothing of HTTP; ``web/errors.py`` maps each
to its status once (Invalid → 422, Missing → 404, StateConflict → 409,
NotAuthorized → 401, Forbidden → 403, Gone → 410). Their text is safe to show
to a client: it names what was wrong with the request, never internals.
"""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """Base of the errors below; ``message`` is shown to the caller."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class Invalid(DomainError):
    """Field-level validation errors: {field: message key}."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("invalid fields: "
                         + ", ".join(f"{k} ({v})" for k, v in errors.items()))
        self.errors = dict(errors)


class Missing(DomainError):
    """No such row (the message says what was looked for)."""

    def __init__(self, message: str = "no such item") -> None:
        super().__init__(message)


class StateConflict(DomainError):
    """The request does not fit the item's or session's state."""


class NotAuthorized(DomainError):
    """No credentials, or credentials that are not valid anywhere."""


class Forbidden(DomainError):
    """Valid credentials, but not for this resource or role."""


class Gone(DomainError):
    """A credential that was real but is expired, revoked or withdrawn."""

"""Errors raised by the domain when a command breaks one of the policy's rules.

Two families, so that every adapter can answer consistently without the domain
knowing anything about HTTP: ``InvalidCommandError`` (the command itself is
unacceptable: bad values, a refused basis, a card number) and ``StateError``
(the command is well formed but the aggregate's current state forbids it).
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule the domain enforces."""

    title = "Domain rule violated"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidCommandError(DomainError):
    """The command carries values the policy does not accept."""

    title = "Invalid command"


class StateError(DomainError):
    """The aggregate's current state does not allow the command."""

    title = "Command not allowed in the current state"


class CardNumberError(InvalidCommandError):
    """A payment card number was found in a command: card numbers are never stored."""

    title = "Payment card numbers are never stored"


class InvalidPurposeError(InvalidCommandError):
    """A purpose outside the policy's five, or marketing without consent."""

    title = "Purpose not permitted"


class MarketingConsentRequiredError(InvalidPurposeError):
    """Marketing is a purpose only through explicit, recorded consent."""

    title = "Marketing requires explicit consent"


class InvalidCategoryError(InvalidCommandError):
    """An unknown data category, or a field that does not belong to it."""

    title = "Unknown data category or field"


class DisclosureRefusedError(InvalidCommandError):
    """A share with a partner that the policy does not permit."""

    title = "Disclosure refused"


class InvalidPartnerError(InvalidCommandError):
    """A partner registration that lacks what its kind requires."""

    title = "Invalid partner"


class NotInWritingError(InvalidCommandError):
    """Data-rights requests must be submitted in writing."""

    title = "Request not in writing"


class UnknownJurisdictionError(InvalidCommandError):
    """No response deadline is configured for the jurisdiction."""

    title = "Unknown jurisdiction"


class RequestClosedError(StateError):
    """A request in a final state (fulfilled, denied, revoked, expired) cannot change."""

    title = "Request is closed"


class NotVerifiedError(StateError):
    """Work on a request may not finish before the requester's identity is verified."""

    title = "Identity not verified"


class IllegalTransitionError(StateError):
    """The request's lifecycle does not allow this step from its current status."""

    title = "Illegal status transition"


class ExtensionError(StateError):
    """A deadline can be extended once, before it has passed."""

    title = "Extension not allowed"


class CustomerErasedError(StateError):
    """The customer's personal data has been erased."""

    title = "Customer erased"

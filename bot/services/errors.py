"""The services layer's errors: one root, so a handler can tell "the request cannot be
done" (a ServiceError, shown to whoever asked) from a fault (anything else, logged)."""


class ServiceError(Exception):
    """A request the services refuse, with the reason."""


class NotFound(ServiceError, LookupError):
    """What the request names does not exist (a survey, a version, a customer...)."""

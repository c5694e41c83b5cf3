"""The edges' errors: one root, for what a handler answers the request with itself (an API
error body, a page), never logged as a fault."""


class HandlerError(Exception):
    """A request the handlers answer with an error of their own."""

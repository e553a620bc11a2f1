"""The error a backfill command stops with when it cannot start as given."""


class UsageError(Exception):
    """The command cannot start as given (a PATH that does not exist, a
    missing extra); the message says what to change."""

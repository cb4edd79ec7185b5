"""Signals registry sends so that in-process caches (openai_api's LRU front) stay consistent."""

from django.dispatch import Signal

# Sent after cached responses were deleted from the database. kwargs: tier (name or None: all),
# keys (list of keys or None: every key of `tier`), expired_only (bool).
cached_responses_cleared = Signal()


class CacheClearIncomplete(Exception):
    """The database's rows were deleted (`deleted` of them), but a receiver of
    `cached_responses_cleared` could not clear its copy (the shared front, with Redis unreachable).
    The message says what is left and what to do."""

    def __init__(self, message: str, deleted: int = 0):
        super().__init__(message)
        self.deleted = deleted

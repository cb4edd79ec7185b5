"""Signals registry sends so that in-process caches (openai_api's LRU front) stay consistent."""

from django.dispatch import Signal

# Sent after cached responses were deleted from the database. kwargs: tier (name or None: all),
# keys (list of keys or None: every key of `tier`), expired_only (bool).
cached_responses_cleared = Signal()

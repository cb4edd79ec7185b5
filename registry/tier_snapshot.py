"""The tiers as this process last read them, so resolving a request's `model` costs no query.

Every API request names a tier; reading the tier table per request cost a database round trip
through a worker thread (about 0.6 ms, and Django starts a thread per request for it). Instead
the table is read once into a snapshot, which is dropped:
- at once when a Tier is saved or deleted in this process (the admin, `tier_update`, tests'
  settings changes), so an admin edit applies from the next request;
- after TIER_SNAPSHOT_SECONDS, so an edit made by another process (`manage.py shell`, another
  instance on the same database) applies within that time. 0: read the table on every request.

A re-read keeps the specs built from rows that did not change (a spec validates the tier's
options against its engine: about 0.3 ms per tier, paid by whichever request came first after
each re-read). A save in this process and a settings change drop the specs with the snapshot.

While requests come in, the table is re-read in the background once a snapshot is half its
TIER_SNAPSHOT_SECONDS old, and for REFRESH_WHILE_ACTIVE_SECONDS after the last lookup, so a
request rarely waits for a read: one that did (a thread hop and a query) took 1.7-2.9 ms before
its first byte, on every request of a client pausing two seconds between them. A snapshot older
than TIER_SNAPSHOT_SECONDS is still never used (the background read was late or had stopped:
the request reads the table itself, as before). A background read that fails leaves the
snapshot as it was. With REDIS_URL the version check (tier_version.py) decides instead.

`tier_lookup` is the one entry point (a cross-instance invalidation can replace the age check).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.db import close_old_connections
from django.db.models.signals import post_delete, post_save

from inference.params import ModelSpec

from .models import Tier
from .selectors import enabled_or_raise, tier_match, tier_spec
from .tier_version import tier_version

logger = logging.getLogger(__name__)

REFRESH_AT = 0.5  # of TIER_SNAPSHOT_SECONDS: the age at which a snapshot is re-read in the background
REFRESH_WHILE_ACTIVE_SECONDS = 60.0  # background re-reads stop this long after the last lookup


@dataclass
class _Snapshot:
    tiers: list[Tier]
    read_at: float  # time.monotonic()
    version: int | None = None  # with REDIS_URL: the table's version across instances (tier_version.py)
    specs: dict[str, tuple[list, ModelSpec]] = field(default_factory=dict)  # name -> (the row it was built from, spec)


_snapshot: _Snapshot | None = None
_generation = 0  # bumped by every invalidation: a read that began before one is not kept


def tier_snapshot_clear(**_: object) -> None:
    """Forget the snapshot: the next lookup reads the table again."""
    global _snapshot, _generation
    _snapshot = None
    _generation += 1


def _row(tier: Tier) -> list:
    """Every stored value of the tier: what its spec is built from."""
    return [getattr(tier, f.attname) for f in Tier._meta.concrete_fields]


def _read_tiers() -> list[Tier]:
    try:
        return list(Tier.objects.all())
    finally:
        close_old_connections()  # a pool thread's connection follows CONN_MAX_AGE like a request's


async def _current() -> _Snapshot:
    global _snapshot, _last_lookup
    snapshot, max_age = _snapshot, settings.TIER_SNAPSHOT_SECONDS
    version = await tier_version()  # issue 16: with REDIS_URL, an edit on any instance is seen at once
    ahead = version is None and max_age > 0  # age-checked: kept fresh in the background while in use
    if ahead:
        _last_lookup = time.monotonic()
    if snapshot is not None and (snapshot.version == version if version is not None
                                 else time.monotonic() - snapshot.read_at < max_age):
        if ahead:
            _refresh_ahead(max_age)
        return snapshot
    generation, started = _generation, time.monotonic()
    # Not thread-sensitive: a thread-sensitive call would make Django start a thread for this request.
    fresh = _Snapshot(await sync_to_async(_read_tiers, thread_sensitive=False)(), started, version=version)
    if generation != _generation:
        return fresh  # invalidated while it was read: used by this request only, built afresh
    if max_age > 0:
        _install(fresh)
        if ahead:
            _refresh_ahead(max_age)
    return fresh


def _install(fresh: _Snapshot) -> None:
    """Make `fresh` the snapshot, with the specs of the current one whose rows are unchanged."""
    global _snapshot
    if _snapshot is not None:
        for tier in fresh.tiers:
            built = _snapshot.specs.get(tier.name)
            if built is not None and built[0] == _row(tier):
                fresh.specs[tier.name] = built
    _snapshot = fresh


_last_lookup = 0.0  # time.monotonic() of the last lookup (age-checked snapshots only)
_refresher: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle | asyncio.Task] | None = None


def _refresh_ahead(max_age: float) -> None:
    """Have the snapshot re-read in the background when it is REFRESH_AT of `max_age` old, on
    this event loop, unless that is arranged already (a timer, or a read under way)."""
    global _refresher
    loop = asyncio.get_running_loop()
    if _snapshot is None or (_refresher is not None and _refresher[0] is loop):
        return
    delay = max(0.0, _snapshot.read_at + max_age * REFRESH_AT - time.monotonic())
    _refresher = (loop, loop.call_later(delay, _refresh_due))


def _refresh_due() -> None:
    """The timer fired: re-read now, unless lookups stopped (or the settings changed)."""
    global _refresher
    loop, max_age = asyncio.get_running_loop(), settings.TIER_SNAPSHOT_SECONDS
    if max_age <= 0 or settings.REDIS_URL or time.monotonic() - _last_lookup > REFRESH_WHILE_ACTIVE_SECONDS:
        _refresher = None  # the next lookup arranges it again
        return
    _refresher = (loop, loop.create_task(_refresh(max_age)))


async def _refresh(max_age: float) -> None:
    global _refresher
    try:
        generation, started = _generation, time.monotonic()
        tiers = await sync_to_async(_read_tiers, thread_sensitive=False)()
        current = _snapshot
        if generation == _generation and (current is None or current.read_at < started):
            _install(_Snapshot(tiers, started))
    except Exception:
        logger.warning("Re-reading the tiers in the background failed; requests read them when due", exc_info=True)
    finally:
        _refresher = None
    _refresh_ahead(max_age)  # the next one (`_refresh_due` ends the chain once lookups stopped)


async def tier_lookup(*, model: str) -> tuple[Tier, ModelSpec]:
    """The enabled tier `model` names (404 `model_not_found` otherwise) and its spec."""
    snapshot = await _current()
    tier = enabled_or_raise(tier_match(tiers=snapshot.tiers, model=model), model)
    built = snapshot.specs.get(tier.name)
    if built is None:
        built = snapshot.specs[tier.name] = (_row(tier), tier_spec(tier=tier))
    return tier, built[1]


async def tiers_snapshot(*, enabled_only: bool = True) -> list[Tier]:
    """Every tier (or every enabled one), as the snapshot holds them."""
    tiers = (await _current()).tiers
    return [t for t in tiers if t.enabled] if enabled_only else list(tiers)


post_save.connect(tier_snapshot_clear, sender=Tier, dispatch_uid="registry.tier_snapshot.save")
post_delete.connect(tier_snapshot_clear, sender=Tier, dispatch_uid="registry.tier_snapshot.delete")
# A tier's spec takes global settings (N_THREADS, KEEP_ALIVE, ...) for what it leaves unset.
setting_changed.connect(tier_snapshot_clear, dispatch_uid="registry.tier_snapshot.settings")

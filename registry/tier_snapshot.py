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

`tier_lookup` is the one entry point (a cross-instance invalidation can replace the age check).
"""

from __future__ import annotations

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
    global _snapshot
    snapshot, max_age = _snapshot, settings.TIER_SNAPSHOT_SECONDS
    version = await tier_version()  # issue 16: with REDIS_URL, an edit on any instance is seen at once
    if snapshot is not None and (snapshot.version == version if version is not None
                                 else time.monotonic() - snapshot.read_at < max_age):
        return snapshot
    generation = _generation
    # Not thread-sensitive: a thread-sensitive call would make Django start a thread for this request.
    fresh = _Snapshot(await sync_to_async(_read_tiers, thread_sensitive=False)(), time.monotonic(), version=version)
    if generation != _generation:
        return fresh  # invalidated while it was read: used by this request only, built afresh
    if snapshot is not None:
        for tier in fresh.tiers:
            built = snapshot.specs.get(tier.name)
            if built is not None and built[0] == _row(tier):
                fresh.specs[tier.name] = built
    if max_age > 0:
        _snapshot = fresh
    return fresh


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

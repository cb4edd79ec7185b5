"""The tier snapshot (registry/tier_snapshot.py): lookups without a query, and when a change applies."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from llmservice.errors import ModelNotFound
from registry import tier_snapshot
from registry.models import Tier
from registry.tier_snapshot import tier_lookup, tiers_snapshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def light():
    return Tier.objects.create(name="light", backend="fake", model_path="fake.gguf", aliases="small", temperature=0.5)


async def test_a_lookup_resolves_names_and_aliases_and_then_costs_no_query(light, monkeypatch):
    reads = []
    read = tier_snapshot._read_tiers
    monkeypatch.setattr(tier_snapshot, "_read_tiers", lambda: reads.append(1) or read())
    tier, spec = await tier_lookup(model="small")
    assert tier.name == spec.name == "light" and spec.defaults["temperature"] == 0.5
    for _ in range(3):
        assert (await tier_lookup(model="light"))[1] is spec  # one spec per snapshot: hashed once
    assert len(reads) == 1  # the table was read once
    with pytest.raises(ModelNotFound):
        await tier_lookup(model="nope")


async def test_a_save_or_delete_in_this_process_applies_from_the_next_request(light):
    await tier_lookup(model="light")
    light.temperature = 1.5
    await light.asave()  # what the admin does
    assert (await tier_lookup(model="light"))[1].defaults["temperature"] == 1.5
    light.enabled = False
    await light.asave()
    with pytest.raises(ModelNotFound):
        await tier_lookup(model="light")
    assert await tiers_snapshot() == []
    await light.adelete()
    assert await tiers_snapshot(enabled_only=False) == []


async def test_a_change_made_elsewhere_applies_after_tier_snapshot_seconds(light, settings):
    """A queryset update sends no signal: as another process's edit, it is seen once the snapshot ages."""
    await tier_lookup(model="light")
    await sync_to_async(Tier.objects.filter(name="light").update)(temperature=1.0)
    assert (await tier_lookup(model="light"))[1].defaults["temperature"] == 0.5  # the snapshot still answers
    settings.TIER_SNAPSHOT_SECONDS = 0  # (a settings change drops the snapshot too)
    assert (await tier_lookup(model="light"))[1].defaults["temperature"] == 1.0
    await sync_to_async(Tier.objects.filter(name="light").update)(temperature=2.0)
    assert (await tier_lookup(model="light"))[1].defaults["temperature"] == 2.0  # 0: read per request


async def test_a_reread_keeps_the_specs_of_unchanged_tiers_and_rebuilds_the_changed_ones(light, monkeypatch):
    await sync_to_async(Tier.objects.create)(name="heavy", backend="fake", model_path="big.gguf", temperature=0.2)
    built = []
    spec_of = tier_snapshot.tier_spec
    monkeypatch.setattr(tier_snapshot, "tier_spec", lambda *, tier: built.append(tier.name) or spec_of(tier=tier))
    light_spec, heavy_spec = (await tier_lookup(model="light"))[1], (await tier_lookup(model="heavy"))[1]
    await sync_to_async(Tier.objects.filter(name="heavy").update)(temperature=0.9)  # as another process's edit
    tier_snapshot._snapshot.read_at -= 3600  # aged: the next lookup reads the table again
    assert (await tier_lookup(model="light"))[1] is light_spec  # its row is as it was: its spec is kept
    assert (await tier_lookup(model="heavy"))[1].defaults["temperature"] == 0.9  # its row changed: built again
    assert built == ["light", "heavy", "heavy"]


async def _due_refresh() -> None:
    """Run the background re-read that the lookups armed, now (instead of when its timer fires)."""
    loop, timer = tier_snapshot._refresher
    assert loop is asyncio.get_running_loop() and isinstance(timer, asyncio.TimerHandle)
    timer.cancel()
    tier_snapshot._refresher = None
    tier_snapshot._refresh_due()
    if tier_snapshot._refresher is not None:
        await tier_snapshot._refresher[1]


async def test_while_lookups_come_in_the_table_is_reread_in_the_background_not_by_a_request(light, monkeypatch, settings):
    settings.TIER_SNAPSHOT_SECONDS = 60
    reads = []
    read = tier_snapshot._read_tiers
    monkeypatch.setattr(tier_snapshot, "_read_tiers", lambda: reads.append(1) or read())
    await tier_lookup(model="light")
    loop, timer = tier_snapshot._refresher  # armed for when the snapshot is half its lifetime old
    assert 0 < timer.when() - loop.time() <= 60 * tier_snapshot.REFRESH_AT
    await sync_to_async(Tier.objects.filter(name="light").update)(temperature=1.0)  # as another process's edit
    await _due_refresh()
    assert len(reads) == 2  # the background read
    assert (await tier_lookup(model="light"))[1].defaults["temperature"] == 1.0  # seen without a read of its own
    assert len(reads) == 2
    assert isinstance(tier_snapshot._refresher[1], asyncio.TimerHandle)  # and the next one is armed


async def test_background_rereads_stop_when_lookups_do_and_a_failed_one_changes_nothing(light, monkeypatch, settings, caplog):
    settings.TIER_SNAPSHOT_SECONDS = 60
    _, spec = await tier_lookup(model="light")

    def broken():
        raise RuntimeError("database away")

    monkeypatch.setattr(tier_snapshot, "_read_tiers", broken)
    await _due_refresh()
    assert "in the background failed" in caplog.text
    assert (await tier_lookup(model="light"))[1] is spec  # the snapshot as it was (still young enough)
    reads = []
    monkeypatch.setattr(tier_snapshot, "_read_tiers", lambda: reads.append(1) or [])
    tier_snapshot._last_lookup -= tier_snapshot.REFRESH_WHILE_ACTIVE_SECONDS + 1  # no lookup for a while
    await _due_refresh()
    assert reads == [] and tier_snapshot._refresher is None  # no read, and none armed until the next lookup


async def test_a_background_reread_overtaken_by_an_invalidation_is_dropped(light, monkeypatch, settings):
    settings.TIER_SNAPSHOT_SECONDS = 60
    await tier_lookup(model="light")
    read = tier_snapshot._read_tiers

    def read_while_a_tier_is_saved():
        tiers = read()
        tier_snapshot.tier_snapshot_clear()  # what a save in this process does meanwhile
        return tiers

    monkeypatch.setattr(tier_snapshot, "_read_tiers", read_while_a_tier_is_saved)
    await _due_refresh()
    assert tier_snapshot._snapshot is None  # not installed: the next lookup reads the table afresh

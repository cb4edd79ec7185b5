"""The activity tracker auto-shutdown decides on (llmservice/activity.py)."""

import asyncio

from llmservice.activity import Activity, run_when_idle


def test_seconds_left_counts_down_only_while_idle():
    activity = Activity()
    assert activity.seconds_left(0) is None  # off
    activity.begin()
    assert activity.idle_seconds() == 0.0
    assert activity.seconds_left(60) == 60  # busy: the countdown has not started
    activity.end()
    assert 0 < activity.seconds_left(60) <= 60
    assert (activity.in_flight, activity.total) == (0, 1)


async def test_run_when_idle_waits_for_work_in_flight_and_fires_once_idle():
    activity = Activity()
    fired = asyncio.Event()

    async def action():
        fired.set()

    activity.begin()
    watcher = asyncio.create_task(run_when_idle(activity, 0.05, action))
    await asyncio.sleep(0.3)  # far past the timeout, but the work is still in flight
    assert not fired.is_set()
    activity.end()
    await asyncio.wait_for(fired.wait(), 10)
    await watcher


async def test_wait_idle_reports_whether_the_work_ended():
    activity = Activity()
    activity.begin()
    assert await activity.wait_idle(0.1) is False
    asyncio.get_running_loop().call_later(0.05, activity.end)
    assert await activity.wait_idle(10) is True

"""`manage.py status`: a table of the running server's tiers."""

import time

from django.core.management.base import BaseCommand

from registry.client import command_call

COLUMNS = ("TIER", "BACKEND", "LOADED", "MEMORY", "REQUESTS", "LAST USED", "RUNNING", "QUEUED", "KV", "UNLOADS IN")


def _memory(value):
    return f"{value / 2**20:.0f} MiB" if value else "-"


def _ago(timestamp):
    return f"{int(time.time() - timestamp)}s ago" if timestamp else "never"


def _running(t):
    """Requests being served, of the engine's slots when loaded: `1/4`."""
    return f"{t['running']}/{t['slots']}" if t.get("slots") else str(t["running"])


def _kv(t):
    return f"{t['kv_cache_usage']:.0%}" if t.get("kv_cache_usage") is not None else "-"


def _unloads_in(t):
    """The keep_alive countdown of a loaded tier: `4m48s`, `never`, or `when idle` while busy."""
    if not t["loaded"]:
        return "-"
    if t.get("unload_in_seconds") is not None:
        return _duration(t["unload_in_seconds"])
    return "never" if t.get("keep_alive") is None else "when idle"


class Command(BaseCommand):
    help = "Show the running server's tiers: backend, loaded, memory, requests, last used, running, queued, KV cache use, idle-unload countdown."

    def handle(self, *args, **options):
        status = command_call("GET", "/internal/status", timeout=30)
        rows = [
            (
                t["name"] + ("" if t["enabled"] else " (disabled)"),
                t["backend"],
                "yes" if t["loaded"] else ("no" if t["state"] == "unloaded" else t["state"]),
                _memory(t["memory_bytes"]),
                str(t["requests"]),
                _ago(t["last_used"]),
                _running(t),
                str(t["queued"]),
                _kv(t),
                _unloads_in(t),
            )
            for t in status["tiers"]
        ]
        widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        for row in [COLUMNS, *rows]:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        for t in status["tiers"]:
            if t["state"] == "failed":  # why, and when the server tries again
                retry = f"; next load attempt in {max(0, int(t['next_retry_at'] - time.time()))}s" if t.get("next_retry_at") else ""
                self.stdout.write(f"{t['name']}: failed: {t['error']}{retry}")
        cache = status["cache"]
        rate = f"{cache['hit_rate']:.0%}" if cache["hit_rate"] is not None else "-"
        self.stdout.write(f"cache: {cache['hits']} hits, {cache['misses']} misses, hit rate {rate}")
        if "server" in status:
            self.stdout.write(server_line(status["server"]))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def server_line(server: dict) -> str:
    """`server: serving, 0 in flight, idle 12s; auto-shutdown in 4m48s` (or `off`, or why it is stopping)."""
    line = f"server: {server['state']}, {server['in_flight']} in flight, idle {_duration(server['idle_seconds'])}"
    if server["state"] != "serving":
        return f"{line}; shutting down: {server['reason']}"
    if server["auto_shutdown_minutes"] is None:
        return f"{line}; auto-shutdown off"
    if server["shutdown_in_seconds"] is None:
        return f"{line}; auto-shutdown inactive (the server runs without the ASGI lifespan protocol)"
    when = _duration(server["shutdown_in_seconds"])
    return f"{line}; auto-shutdown in {when}" + (" once the requests in flight end" if server["in_flight"] else "")

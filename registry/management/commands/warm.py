"""`manage.py warm [TIER ...]`: load tiers in the running server now, showing progress and load times."""

import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout

from django.core.management.base import BaseCommand

from registry.client import command_call

SPINNER = "|/-\\"
FRAME_SECONDS = 0.1  # spinner refresh on a terminal
PLAIN_EVERY_SECONDS = 10  # without a terminal: one "still loading" line this often


class Command(BaseCommand):
    help = "Load tiers in the running server now (default: every enabled tier) and show their load times."

    def add_arguments(self, parser):
        parser.add_argument("tiers", nargs="*", help="Tier names or aliases (default: every enabled tier).")

    def handle(self, *args, tiers, **options):
        if not tiers:
            status = command_call("GET", "/internal/status", timeout=30)
            tiers = [t["name"] for t in status["tiers"] if t["enabled"]]
        tty = self.stdout.isatty()
        with ThreadPoolExecutor(max_workers=1) as pool:
            for index, name in enumerate(tiers, 1):
                label = f"[{index}/{len(tiers)}] warming {name}"
                future = pool.submit(command_call, "POST", f"/internal/warm/{name}")
                started = time.monotonic()
                try:
                    result = self._wait(future, label, started, tty)
                finally:
                    if tty:
                        self.stdout.write("\r\x1b[K", ending="")  # clear the spinner line
                waited = time.monotonic() - started
                done = f"{result['state']}, loaded in {result['load_seconds']:.2f}s"
                self.stdout.write(f"{label} ... " + self.style.SUCCESS(done) + f" (waited {waited:.1f}s)")

    def _wait(self, future, label: str, started: float, tty: bool) -> dict:
        """The warm call's result; meanwhile a spinner with the elapsed time (terminal) or a line
        every PLAIN_EVERY_SECONDS (log files, pipes)."""
        frame, next_plain = 0, PLAIN_EVERY_SECONDS
        while True:
            elapsed = time.monotonic() - started
            if tty:
                self.stdout.write(f"\r{label} {SPINNER[frame % len(SPINNER)]} {elapsed:.1f}s", ending="")
                self.stdout.flush()
                frame += 1
            elif elapsed >= next_plain:
                self.stdout.write(f"{label}: still loading after {int(elapsed)}s")
                self.stdout.flush()
                next_plain += PLAIN_EVERY_SECONDS
            try:
                return future.result(timeout=FRAME_SECONDS)
            except FutureTimeout:
                continue

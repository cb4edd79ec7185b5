"""Finding 6: no public SECRET_KEY. A generated key file (mode 0600), the old default refused off
loopback and warned about on it. (The end-to-end start without SECRET_KEY is in tests/e2e.)"""

import stat

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from llmservice.secret import OLD_DEFAULT_SECRET_KEY, secret_key_from_file
from registry.checks import is_loopback, secret_key_not_public


def test_a_key_is_generated_once_private_and_then_reused(tmp_path):
    path = tmp_path / "var" / "secret_key"
    key = secret_key_from_file(path)
    assert len(key) >= 50 and key != OLD_DEFAULT_SECRET_KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key_from_file(path) == key
    assert secret_key_from_file(tmp_path / "other") != key
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temporary files left


def test_an_empty_key_file_is_refused(tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    (tmp_path / "secret_key").write_text("")
    with pytest.raises(ImproperlyConfigured, match="is empty"):
        secret_key_from_file(tmp_path / "secret_key")


def test_the_old_default_is_an_error_off_loopback_and_a_warning_on_it(settings):
    settings.SECRET_KEY = OLD_DEFAULT_SECRET_KEY
    settings.HOST = "0.0.0.0"
    assert [m.id for m in secret_key_not_public()] == ["registry.E010"]
    settings.HOST = "127.0.0.1"
    assert [m.id for m in secret_key_not_public()] == ["registry.W010"]
    settings.SECRET_KEY = "a-real-secret-" * 4
    assert secret_key_not_public() == []


def test_serve_refuses_the_old_default_on_a_reachable_address(settings):
    settings.SECRET_KEY = OLD_DEFAULT_SECRET_KEY
    with pytest.raises(CommandError, match="refusing to serve on 0.0.0.0"):
        call_command("serve", "--host", "0.0.0.0", "--port", "1", skip_checks=True)


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
                                            ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
                                            ("example.com", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback

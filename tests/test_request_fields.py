"""Header values as an event may hold them: cleaned and capped in bytes of JSON."""

from __future__ import annotations

from analytics_posthog._context.fields import first_language, sanitise


def test_header_sanitising():
    assert sanitise(" id\x00\x1b[31m\n ", 200) == "id[31m"
    assert sanitise("x" * 500, 200) == "x" * 200
    assert sanitise("\x00", 200) is None
    # Limits are bytes of JSON as sent (ensure_ascii): 6 per BMP character, 12 beyond it, 2 for a quote.
    assert sanitise("é" * 100, 200) == "é" * 33
    assert sanitise("\U0001f600" * 100, 200) == "\U0001f600" * 16
    assert sanitise('"' * 300, 200) == '"' * 100
    assert sanitise("a\udc80b\ud800", 200) == "ab"  # lone surrogates: no encoder takes them
    assert first_language("fr-CH, fr;q=0.9") == "fr-CH"
    assert first_language("*") is None and first_language("<script>") is None

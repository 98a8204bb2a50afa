"""bench/layers.py: the exclusive-time arithmetic and the WSGI environ it builds (no timing)."""

from __future__ import annotations

import itertools

from bench import layers, load


def test_a_layer_counts_its_own_time_not_its_callees(monkeypatch):
    ticks = itertools.count()
    monkeypatch.setattr(layers.time, "perf_counter", lambda: float(next(ticks)))
    clock = layers.Clock()

    def view():
        return "answer"

    timed_view = clock.timed("view", view)
    outer = clock.timed("outer", clock.timed("inner", timed_view))
    assert outer() == "answer"
    # Clock reads: outer 0, inner 1, view 2-3, inner ends 4, outer ends 5.
    assert clock.reset() == {"outer": 2.0, "inner": 2.0, "view": 1.0, layers.VIEW_CPU: 0.0}
    assert clock.reset() == {layers.VIEW_CPU: 0.0}


def test_the_environ_is_what_gunicorn_hands_the_application():
    scenario = load.client_credentials("id", "secret")
    environ = layers.wsgi_environ(scenario.build(None))
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/oauth/token"
    assert environ["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert environ["HTTP_AUTHORIZATION"] == load.basic_auth("id", "secret")
    body = b"grant_type=client_credentials"
    assert environ["CONTENT_LENGTH"] == str(len(body))
    assert environ["wsgi.input"].read() == body
    assert environ["HTTP_HOST"] == "127.0.0.1"

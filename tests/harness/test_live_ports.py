"""The test harness's own servers (tests/live.py) own their port from construction: two test
workers can never end up talking to one server (CI once ran a test against another worker's
gunicorn, which stopped under it)."""

from __future__ import annotations

import errno
import socket

import pytest
import requests

from tests.live import Gunicorn, bound_socket

pytestmark = pytest.mark.slow


def test_the_port_is_held_from_construction_until_the_server_stops(child_env):
    server = Gunicorn(child_env, workers=1)
    # Nobody else can bind it before the server starts, even with SO_REUSEADDR...
    with pytest.raises(OSError) as taken, socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", server.port))
    assert taken.value.errno == errno.EADDRINUSE
    with server:
        assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
        with pytest.raises(OSError), socket.socket() as other:
            other.bind(("127.0.0.1", server.port))
    # ...and once it stopped, the test process kept no copy that would still queue connections.
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/healthz", timeout=2)


def test_a_restart_on_the_same_port_gets_it_back(child_env):
    first = Gunicorn(child_env, workers=1)
    with first:
        assert requests.get(first.url + "/healthz", timeout=10).status_code == 200
    again = Gunicorn(child_env, workers=1)
    again.port, again.url = first.port, first.url
    with again:
        assert requests.get(again.url + "/healthz", timeout=10).status_code == 200


def test_a_port_in_use_is_refused_after_the_wait():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(OSError):
            bound_socket(holder.getsockname()[1], wait=0.3)

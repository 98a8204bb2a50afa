"""bench/sockets.py: which process holds which connection, read from /proc with real sockets
held by two real processes."""

from __future__ import annotations

import multiprocessing
import os
import socket

from bench import sockets


def _hold_accepted(listener: socket.socket, count: int, ready, release) -> None:
    held = [listener.accept()[0] for _ in range(count)]
    ready.set()
    release.wait(30)
    for conn in held:
        conn.close()


def test_connections_are_counted_for_the_process_that_accepted_them():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    child = context.Process(target=_hold_accepted, args=(listener, 3, ready, release))
    clients = []
    try:
        child.start()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        assert ready.wait(30)
        clients.append(socket.create_connection(("127.0.0.1", port)))
        mine = listener.accept()[0]  # the fourth connection, accepted here
        try:
            counts = sockets.connections_per_process([os.getpid(), child.pid], port)
            assert counts == [3, 1]  # the child's three, then this process's one
            # The listening socket and the client ends (other local ports) are not counted.
            assert sockets.connections_per_process([os.getpid()], port) == [1]
            # The client ends' ports are this process's local ports, as is the listener's.
            own_ports = sockets.local_ports([os.getpid()])
            assert port in own_ports
            assert {c.getsockname()[1] for c in clients} <= own_ports
        finally:
            mine.close()
    finally:
        release.set()
        child.join(30)
        for client in clients:
            client.close()
        listener.close()
    assert sockets.connections_per_process([os.getpid()], port) == []


def test_a_process_that_has_exited_holds_nothing():
    child = multiprocessing.get_context("fork").Process(target=lambda: None)
    child.start()
    child.join(30)
    assert sockets.socket_inodes(child.pid) == set()

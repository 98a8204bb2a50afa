"""gunicorn configuration for authserver.

    gunicorn -c deploy/gunicorn.conf.py          # serves authserver.wsgi:application

Every value comes from authserver/settings.py, the one module that reads the environment
(README "Running in production"): a malformed variable stops the master with one line naming
it, before any socket is opened. Command-line flags still override what is set here.

- Workers: AUTHSERVER_WORKERS, else one per CPU this process may use (CPU affinity and the
  cgroup v2 CPU quota of a container both count), at most 16. gthread workers with
  AUTHSERVER_THREADS threads each; every thread holds one persistent PostgreSQL connection.
  One process per CPU because a process runs Python on one CPU at a time (the GIL) while its
  threads overlap the waits (PostgreSQL, Redis; Argon2id runs without the GIL): more processes
  than CPUs only take turns on them, and cost more CPU per request (bench/README.md "Workers
  per core": on one core, a refresh or an introspection cost 20-27 % more with 3 workers than
  with 1 at 8 or 32 clients).
- preload_app: the app is imported once in the master, so a configuration error is reported
  once, as one line, and workers fork with the code already loaded. It is safe here: importing
  authserver opens no database or cache connection and starts no thread (the key ring, the
  Redis pool and metric files are created lazily, per worker); pre_fork closes any connection
  the master might still hold. A code change needs a restart, not a HUP.
- gc.freeze() before each fork (pre_fork): the preloaded objects are not traversed by the
  workers' garbage collections.
- Graceful timeouts: on SIGTERM workers finish in-flight requests for up to
  AUTHSERVER_GRACEFUL_TIMEOUT seconds (keep it below the orchestrator's kill timeout). They
  close their listening sockets at once (post_worker_init), after taking what the kernel had
  already queued: a new connection is refused, which a proxy retries elsewhere, rather than
  queued and reset unanswered when the last request is done.
- Access log: one JSON object per response on stdout, with the request id and the path but
  never the query string (it can carry authorization codes, state or tokens).
- forwarded_allow_ips is AUTHSERVER_TRUSTED_PROXIES, the same list the login rate limiter
  trusts for X-Forwarded-For; empty means no peer may set X-Forwarded-Proto. (gunicorn always
  trusts peers on a Unix socket: only the proxy should be able to reach one.)
- Error log: gunicorn's own messages quote request lines and URIs; their query strings are
  redacted (authserver.logs.QueryStringRedactor). No `Server: gunicorn` response header.
- A Unix socket (a unix: bind, or an fd:// or systemd socket that is one) is refused at start,
  with one line, unless AUTHSERVER_TRUSTED_PROXIES contains "unix": its peer has no address, so
  only the proxy's X-Forwarded-For can tell clients apart (accounts/network.py). settings.py
  checks AUTHSERVER_BIND; on_starting checks what gunicorn will really listen on, --bind flags
  and inherited sockets included.
- Metrics: prometheus-client's multiprocess mode in AUTHSERVER_METRICS_DIR, which must be
  private to this instance; when unset a temporary folder is created here and removed at exit.
  Stale files are removed at start, so counters restart from zero with the instance.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import ipaddress
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")
# Reads and checks the environment; a bad value exits here with one line (authserver.startup).
app_settings = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])

# prometheus-client's multiprocess mode: the folder must exist, hold nothing from an earlier
# run, and be named in PROMETHEUS_MULTIPROC_DIR before the app (and prometheus-client) is
# imported by preload. Once per master: a reload (HUP) re-reads this file while old workers
# still write their files.
if os.environ.get("_AUTHSERVER_GUNICORN_MASTER") != str(os.getpid()):
    os.environ["_AUTHSERVER_GUNICORN_MASTER"] = str(os.getpid())
    if app_settings.AUTHSERVER_METRICS_DIR:
        _metrics_dir = Path(app_settings.AUTHSERVER_METRICS_DIR)
        _metrics_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for _stale in _metrics_dir.glob("*.db"):
            _stale.unlink(missing_ok=True)
    else:
        _metrics_dir = Path(tempfile.mkdtemp(prefix="authserver-metrics-"))
        os.environ["_AUTHSERVER_CREATED_METRICS_DIR"] = str(_metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

from gunicorn import systemd  # noqa: E402
from gunicorn.glogging import Logger  # noqa: E402
from gunicorn.http.wsgi import Response as GunicornResponse  # noqa: E402

from accounts.network import unix_peer_trusted  # noqa: E402
from authserver.logs import (  # noqa: E402
    JsonFormatter,
    QueryStringRedactor,
    access_log_fields,
    json_log_dumps,
    json_log_payload,
)
from authserver.startup import config_fail  # noqa: E402


def available_cpus() -> int:
    """CPUs this process may run on: affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    return max(1, count)


def default_workers(cpus: int) -> int:
    return min(cpus, 16)


wsgi_app = "authserver.wsgi:application"
proc_name = "authserver"
bind = app_settings.AUTHSERVER_BIND
workers = app_settings.AUTHSERVER_WORKERS or default_workers(available_cpus())
worker_class = "gthread"
threads = app_settings.AUTHSERVER_THREADS
timeout = app_settings.AUTHSERVER_WORKER_TIMEOUT
graceful_timeout = app_settings.AUTHSERVER_GRACEFUL_TIMEOUT
keepalive = app_settings.AUTHSERVER_KEEPALIVE
max_requests = app_settings.AUTHSERVER_MAX_REQUESTS
max_requests_jitter = max_requests // 10
preload_app = True
# gunicorn 25+ opens a control socket under $HOME by default: one per user, so two instances
# on one host would fight over it, and a read-only container home cannot hold it.
control_socket_disable = True

# The proxy policy of accounts/network.py: gunicorn wants exact networks (no host bits). "unix"
# is left out: gunicorn trusts a Unix-socket peer anyway.
forwarded_allow_ips = ",".join(
    str(ipaddress.ip_network(entry, strict=False))
    for entry in app_settings.AUTHSERVER_TRUSTED_PROXIES
    if not unix_peer_trusted([entry])
)
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
forwarder_headers = ""  # no proxy may rewrite SCRIPT_NAME / PATH_INFO

accesslog = "-"
errorlog = "-"
loglevel = app_settings.LOG_LEVEL.lower()


class AuthserverLogger(Logger):
    """gunicorn's logger with JSON lines: the access log always, the error log when
    AUTHSERVER_LOG_FORMAT=json."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        # gunicorn quotes request lines and URIs in its own messages; never their query strings.
        if not any(isinstance(f, QueryStringRedactor) for f in self.error_log.filters):
            self.error_log.addFilter(QueryStringRedactor())
        for handler in self.access_log.handlers:
            handler.setFormatter(JsonFormatter())
        if app_settings.AUTHSERVER_LOG_FORMAT == "json":
            for handler in self.error_log.handlers:
                handler.setFormatter(JsonFormatter())

    def _stream_handlers(self) -> list[logging.StreamHandler] | None:
        """The access log's handlers when every one is a plain stream (stdout or a file, as
        `accesslog` configures), else None. Looked up per line: USR1 reopens files in place."""
        handlers = self.access_log.handlers
        if handlers and all(type(h) in _STREAM_HANDLERS for h in handlers):
            return handlers
        return None

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        try:
            fields = access_log_fields(
                environ=environ,
                status=resp.status,
                response_headers=resp.headers,
                sent=getattr(resp, "sent", None),
                duration_seconds=request_time.total_seconds(),
            )
            request_id = fields.pop("request_id")
            handlers = self._stream_handlers()
            if handlers is None or not self.access_log.isEnabledFor(logging.INFO):
                self.access_log.info("access", extra={"request_id": request_id, "http": fields})
                return
            # The line JsonFormatter would write, without a LogRecord, the caller lookup and
            # the formatter's pass over the record (bench/README.md: "Logging").
            payload = json_log_payload(
                created=time.time(),
                level="INFO",
                logger=self.access_log.name,
                message="access",
                request_id=request_id,
            )
            payload["http"] = fields
            line = json_log_dumps(payload) + "\n"
            for handler in handlers:
                handler.acquire()
                try:
                    handler.stream.write(line)
                    handler.stream.flush()
                finally:
                    handler.release()
        except Exception:  # noqa: BLE001 - a log line must never break a response
            self.error(traceback.format_exc())


_STREAM_HANDLERS = (logging.StreamHandler, logging.FileHandler)


def _without_server_header(default_headers):
    """gunicorn (27) has no setting for its `Server: gunicorn` header; it is one of the lines
    Response.default_headers returns. Leaving it out tells scanners nothing about the stack."""

    def headers(self) -> list[str]:
        return [line for line in default_headers(self) if not line.lower().startswith("server:")]

    headers.authserver_without_server = True
    return headers


# Patched here, in the master, before the workers fork (a HUP re-reads this file: patch once).
if not getattr(GunicornResponse.default_headers, "authserver_without_server", False):
    GunicornResponse.default_headers = _without_server_header(GunicornResponse.default_headers)


logger_class = AuthserverLogger


def unix_listeners(cfg) -> list[str]:
    """The Unix sockets gunicorn is about to listen on: unix:PATH binds, and fd://N or systemd
    (LISTEN_FDS) sockets that are Unix sockets."""
    found, fds = [], []
    for address in cfg.address:
        if isinstance(address, str):
            found.append(f"unix:{address}")
        elif isinstance(address, int):
            fds.append(address)
    inherited = systemd.listen_fds(unset_environment=False)
    fds.extend(range(systemd.SD_LISTEN_FDS_START, systemd.SD_LISTEN_FDS_START + inherited))
    for fd in fds:
        try:
            probe = socket.socket(fileno=fd)  # reads the family of the open socket
        except OSError:
            continue  # not a socket: gunicorn reports that itself
        family = probe.family
        probe.detach()  # the descriptor stays open for gunicorn
        if family == socket.AF_UNIX:
            found.append(f"fd://{fd}")
    return found


def on_starting(server) -> None:
    """Master, before it opens any socket: refuse a Unix socket whose peer is not trusted (every
    client would share one address, so one attacker would throttle sign-in for everyone)."""
    if unix_peer_trusted(app_settings.AUTHSERVER_TRUSTED_PROXIES):
        return
    listeners = unix_listeners(server.cfg)
    if listeners:
        config_fail(
            "AUTHSERVER_TRUSTED_PROXIES",
            f"must contain 'unix' to listen on {', '.join(listeners)} (the proxy on the socket, "
            "which must set X-Forwarded-For), or bind HOST:PORT",
        )


def pre_fork(server, worker) -> None:
    """Master, before each fork: a connection opened during preload must not be shared with a
    child, and the preloaded objects move to the collector's permanent generation."""
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()
    # The workers' full collections then skip the hundreds of thousands of objects Django and
    # the app made at import, which never become garbage, and do not write to their pages
    # (copy-on-write keeps them shared). Without it, an introspection cost up to 25-30 % more
    # CPU at 32 concurrent clients than at 8 (bench/README.md): with more requests in flight
    # per worker, more of their objects survive young collections and full ones come sooner.
    gc.freeze()


def child_exit(server, worker) -> None:
    """Master: a worker is gone; its live gauges must not be summed any more."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    """Master, at exit: remove the metrics folder if this file created it."""
    created = os.environ.get("_AUTHSERVER_CREATED_METRICS_DIR")
    if created:
        shutil.rmtree(created, ignore_errors=True)


def _drain_then_close_listeners(worker) -> None:
    """A stopping gthread worker takes the connections the kernel already queued on its
    listening sockets, then closes them, instead of keeping them open (and queueing more) until
    its in-flight requests are done."""
    from gunicorn.workers.gthread import TConn

    for listener in worker.sockets:
        with contextlib.suppress(OSError):
            listener.setblocking(False)
        while True:
            try:
                client, address = listener.accept()
            except OSError:  # EAGAIN: nothing queued any more (or the socket is gone)
                break
            worker.nr_conns += 1
            client.setblocking(True)
            worker.enqueue_req(TConn(worker.cfg, client, address, listener.getsockname()))
        listener.close()


def post_worker_init(worker) -> None:
    """Worker, once set up: on SIGTERM, stop listening at once. gunicorn's gthread worker stops
    accepting on SIGTERM but closes its listening sockets only when its last request is done (up
    to the graceful timeout); meanwhile the kernel kept completing new connections into the
    backlog, the proxy sent requests on them, and they were reset at the close: a GET is retried
    on another instance, a POST is lost (502). Closed at once, a new connection is refused, which
    the proxy retries elsewhere whatever the method."""
    enable = getattr(worker, "set_accept_enabled", None)
    if enable is None:  # not a gthread worker
        return

    def set_accept_enabled(enabled: bool) -> None:
        enable(enabled)
        if not enabled and not worker.alive:
            _drain_then_close_listeners(worker)

    worker.set_accept_enabled = set_accept_enabled

"""Worker processes on one port: :func:`run` and its :class:`Supervisor`.

::

    import wsfast

    async def handler(ws):
        async for message in ws:
            await ws.send(message)

    if __name__ == "__main__":
        wsfast.run(handler, "0.0.0.0", 8765, workers=0)  # one worker per core

The process that calls :func:`run` becomes the supervisor. It binds the
address first, so that a bad address fails at once, before any fork, and
port 0 becomes one real port that every worker uses. Then it forks the
workers. Each runs its own event loop (``asyncio.run``, or uvloop with
``loop="uvloop"``) and its own server: :func:`~wsfast.asyncio.serve`, or
:func:`~wsfast.asyncio.create_server` with ``api="callback"``. It tells the
supervisor through a pipe once it listens. ``handler`` may be a string
``"module:attribute"``, imported in each worker after the fork, so that a
rolling restart runs new code. Nothing that does I/O may be created before
the fork: open connections (a database, a pub/sub hub) in ``lifespan``, an
async context manager that each worker enters around serving.

Two ways to share the port:

``reuse_port=True`` (the default where the OS has ``SO_REUSEPORT``)
    Each worker binds a listening socket of its own, and the kernel spreads
    new connections evenly across them (on Linux: macOS and the BSDs accept
    the option but do not balance, so use ``reuse_port=False`` there). The
    supervisor holds a bound, not listening, socket so the port stays
    reserved while workers come and go. The price: when a worker stops,
    the connections still in its own accept queue are reset by the kernel,
    and their clients must retry. Any process of the same user that sets
    ``SO_REUSEPORT`` can also join the port.
``reuse_port=False``
    The supervisor listens and every worker accepts from that one socket.
    One accept queue: a stopping worker loses no queued connection, but the
    balance is left to whichever worker wakes first, less even under load.

Signals to the supervisor:

SIGTERM, SIGINT
    Graceful stop. The supervisor sends SIGTERM to every worker; a worker
    stops accepting, closes every connection with 1001 (going away) through
    :meth:`~wsfast.asyncio.Server.close`, waits for them at most
    ``close_timeout`` (the option, 10 s by default) and exits 0. Workers
    still alive ``close_timeout`` + 5 s later are killed. A worker that gets
    SIGINT itself (Ctrl-C reaches the whole process group) does the same.
SIGHUP
    Rolling restart, one worker at a time: fork the replacement, wait until
    it listens, then stop the old worker as above and wait until it exited
    before the next. The port is never unbound. If a replacement exits
    before it listens (new code that fails to import, say), the rolling
    restart stops there and the remaining old workers keep serving.

A worker that dies otherwise is restarted after ``restart_delay`` seconds,
a delay that doubles at each crash of the same worker up to 30 s and goes
back to ``restart_delay`` once a worker has lived 60 s. Each step is logged
on the logger ``wsfast.workers``: crashes at WARNING (with the pid and the
exit status or signal), the rest at INFO. A worker that fails before the
first workers all listen stops the supervisor: :func:`run` raises. A worker
whose supervisor was killed notices (a pipe they share reaches its end) and
stops as for SIGTERM.

This needs ``os.fork`` (not Windows). Under uvicorn (:mod:`wsfast.uvicorn`),
uvicorn's own ``--workers`` does this job.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, AsyncContextManager, Callable, Literal, Mapping, Optional, Union

from .options import Options

__all__ = ["run", "Supervisor", "Worker", "usable_cores"]

logger = logging.getLogger("wsfast.workers")

MAX_RESTART_DELAY = 30.0
"""The longest wait before restarting a worker that died."""
STABLE_AFTER = 60.0
"""A worker that lived this long resets its restart delay to ``restart_delay``."""
KILL_GRACE = 5.0
"""Workers still alive this long after ``close_timeout`` (counted from SIGTERM) get SIGKILL."""

Handler = Union[str, Callable[..., Any], Mapping[str, Callable[..., Any]]]
"""What :func:`~wsfast.asyncio.serve` or :func:`~wsfast.asyncio.create_server`
takes, or a string ``"module:attribute"`` naming it."""

Lifespan = Callable[[], AsyncContextManager[Any]]

Phase = Literal["starting", "running", "stopping"]

# Keyword arguments that run() passes on, besides the Options fields.
_SERVER_ARGUMENTS = {
    "ssl",
    "max_connections",
    "server_header",
    "backlog",
    "reuse_address",
    "ssl_handshake_timeout",
    "ssl_shutdown_timeout",
}


def usable_cores() -> int:
    """The number of cores this process may run on (its CPU affinity where
    the OS tells it, else ``os.cpu_count()``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class Worker:
    """A worker process, as the supervisor sees it."""

    pid: int
    slot: int
    """Its place among the workers (0 to N-1); a replacement takes its predecessor's."""
    ready_fd: int
    """The supervisor's end of its readiness pipe (-1 once closed)."""
    started: float
    """``time.monotonic()`` at the fork."""
    ready: bool = False
    """It listens."""
    stopping: bool = False
    """It was sent SIGTERM: its exit is expected."""
    replaces: Optional[int] = None
    """In a rolling restart: the pid of the worker it takes over from, until that one exited."""


class Supervisor:
    """Forks and supervises the workers of :func:`run` (its arguments, and
    ``on_ready(supervisor)``, called once all the first workers listen).

    :meth:`bind` binds the address (:meth:`run` does it if needed);
    :meth:`run` forks the workers and supervises them until SIGTERM or
    SIGINT. The whole state is in the attributes set at the end of
    ``__init__``; the supervisor runs one thread and one ``select`` loop,
    which turns signals (through :func:`signal.set_wakeup_fd`), readiness
    pipes and timers into calls of the ``_on_*`` methods.
    """

    def __init__(
        self,
        handler: Handler,
        host: Optional[str] = "127.0.0.1",
        port: int = 8765,
        *,
        workers: int = 1,
        reuse_port: Optional[bool] = None,
        api: Literal["serve", "callback"] = "serve",
        loop: Literal["asyncio", "uvloop"] = "asyncio",
        lifespan: Optional[Lifespan] = None,
        restart_delay: float = 1.0,
        on_ready: Optional[Callable[[Supervisor], None]] = None,
        **options: Any,
    ) -> None:
        if not hasattr(os, "fork"):
            raise RuntimeError(
                "wsfast.run() forks worker processes and this platform has no os.fork(): serve in one process"
                " (wsfast.serve), or run several processes on distinct ports behind a load balancer"
            )
        if workers < 0:
            raise ValueError(f"workers must be 0 (one per core) or more, not {workers}")
        if api not in ("serve", "callback"):
            raise ValueError(f"api must be 'serve' or 'callback', not {api!r}")
        if loop not in ("asyncio", "uvloop"):
            raise ValueError(f"loop must be 'asyncio' or 'uvloop', not {loop!r}")
        if loop == "uvloop":
            try:
                importlib.import_module("uvloop")
            except ImportError as exc:
                raise RuntimeError(f"loop='uvloop' needs uvloop ({exc}): pip install uvloop") from None
        if reuse_port is None:
            reuse_port = hasattr(socket, "SO_REUSEPORT")
        elif reuse_port and not hasattr(socket, "SO_REUSEPORT"):
            raise ValueError(f"reuse_port=True needs socket.SO_REUSEPORT, which this platform ({sys.platform}) lacks")
        if isinstance(handler, str):
            _split_target(handler)
        _check_options(api, options)
        close_timeout = options.get("close_timeout", Options.close_timeout)

        # Configuration.
        self.handler = handler
        self.host = host
        self.port = port
        self.count = workers or usable_cores()
        self.reuse_port: bool = reuse_port
        self.api = api
        self.loop = loop
        self.lifespan = lifespan
        self.restart_delay = restart_delay
        self.close_timeout: Optional[float] = close_timeout
        self.on_ready = on_ready
        self.options = options

        # State.
        self.sockets: list[socket.socket] = []
        """Listening (shared) or bound placeholder (reuse_port) sockets, one per address."""
        self.addresses: list[str] = []
        """The addresses of :attr:`sockets`, numeric."""
        self.phase: Phase = "starting"
        """``starting`` until the first workers all listen, ``running``,
        then ``stopping`` from SIGTERM or SIGINT until every worker exited."""
        self.workers: dict[int, Worker] = {}
        """Live workers by pid (a slot has two during a step of a rolling restart)."""
        self.restart_at: dict[int, float] = {}
        """Slot -> when (monotonic) to fork a worker for it again, after a crash."""
        self.delay: dict[int, float] = {}
        """Slot -> how long to wait before the next restart after a crash."""
        self.rolling: Optional[list[int]] = None
        """During a rolling restart, the slots still to replace (a step in
        progress is the worker whose ``replaces`` is set)."""
        self.kill_at: Optional[float] = None
        """When stopping: when to SIGKILL the workers still alive."""
        self.failure: Optional[str] = None
        """Why the start failed (:meth:`run` raises it)."""

        self._selector: Optional[selectors.BaseSelector] = None
        self._wakeup = (-1, -1)  # signal.set_wakeup_fd's pipe
        self._lifeline = (-1, -1)  # workers see its end when the supervisor is gone
        self._previous: dict[int, Any] = {}  # signal handlers to restore
        self._previous_wakeup = -1

    # ------------------------------------------------------------ public

    @property
    def pids(self) -> list[int]:
        """The live workers' pids, in slot order."""
        return [w.pid for w in sorted(self.workers.values(), key=lambda w: (w.slot, w.started))]

    def bind(self) -> None:
        """Bind (and, without ``reuse_port``, listen on) every address of
        ``host``, all on one port: the first one's when ``port`` is 0.
        Raises :exc:`OSError` naming the address."""
        if self.sockets:
            return
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise socket.gaierror(exc.errno, f"cannot resolve {self.host!r}: {exc.strerror}") from None
        port = self.port
        sockets: list[socket.socket] = []
        addresses: list[str] = []
        try:
            for family, kind, proto, _, address in infos:
                if str(address[0]) in addresses:
                    continue
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if self.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    sock.bind((address[0], port, *address[2:]))
                except OSError as exc:
                    shown = f"[{address[0]}]" if family == socket.AF_INET6 else address[0]
                    raise OSError(exc.errno, f"cannot listen on {shown}:{port}: {exc.strerror}") from None
                if not self.reuse_port:
                    sock.listen(self.options.get("backlog", 100))
                port = sock.getsockname()[1]
                addresses.append(str(address[0]))
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self.sockets, self.addresses, self.port = sockets, addresses, port
        logger.info(
            "listening on %s (%s)",
            ", ".join(f"[{a}]:{port}" if ":" in a else f"{a}:{port}" for a in addresses),
            "SO_REUSEPORT: a socket per worker" if self.reuse_port else "one socket shared by the workers",
        )

    def run(self) -> int:
        """Bind if needed, fork the workers, supervise them until SIGTERM or
        SIGINT and every worker exited; return 0 (once per Supervisor). Raises
        :exc:`RuntimeError` if a worker fails before the first ones all
        listen."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the supervisor handles signals: call run() from the main thread")
        self.bind()
        try:
            self._setup()
            for slot in range(self.count):
                self._spawn(slot)
            while self.workers or self.phase != "stopping":
                self._wait()
        finally:
            self._teardown()
        if self.failure is not None:
            raise RuntimeError(self.failure)
        return 0

    # ------------------------------------------------------------ the loop

    def _setup(self) -> None:
        # poll(), not epoll: no descriptor of its own for the workers to inherit.
        self._selector = getattr(selectors, "PollSelector", selectors.SelectSelector)()
        self._wakeup = os.pipe()
        self._lifeline = os.pipe()
        for fd in self._wakeup:
            os.set_blocking(fd, False)
        self._selector.register(self._wakeup[0], selectors.EVENT_READ)
        # No-op handlers: their only effect is the byte that the C-level
        # handler writes to the wakeup pipe, read in _wait.
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            self._previous[signum] = signal.signal(signum, _ignore)
        self._previous_wakeup = signal.set_wakeup_fd(self._wakeup[1])

    def _teardown(self) -> None:
        for worker in list(self.workers.values()):  # only after an error in the supervisor itself
            logger.error("supervisor failed: killing worker %d", worker.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(worker.pid, 0)
            self._forget(worker)
        if self._previous:
            signal.set_wakeup_fd(self._previous_wakeup)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for fd in (*self._wakeup, *self._lifeline):
            if fd >= 0:
                os.close(fd)
        self._wakeup = self._lifeline = (-1, -1)
        for sock in self.sockets:
            sock.close()
        self.sockets = []

    def _wait(self) -> None:
        """One turn: wait for a signal, a readiness pipe or the next timer."""
        assert self._selector is not None
        deadlines = [*self.restart_at.values(), *([self.kill_at] if self.kill_at is not None else [])]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        for key, _ in self._selector.select(timeout):
            if key.fd == self._wakeup[0]:
                with contextlib.suppress(BlockingIOError):
                    for signum in os.read(self._wakeup[0], 512):
                        self._on_signal(signum)
            else:
                self._read_ready(key.data)
        self._reap()
        self._on_time(time.monotonic())

    def _read_ready(self, worker: Worker) -> None:
        if worker.ready_fd < 0:
            return
        try:
            data = os.read(worker.ready_fd, 1)
        except BlockingIOError:
            return
        self._close_ready(worker)  # one byte once it listens, or the end of the pipe if it died first
        if data:
            self._on_ready(worker)

    def _reap(self) -> None:
        for worker in list(self.workers.values()):
            try:
                pid, status = os.waitpid(worker.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by someone else: its status is lost
                pid, status = worker.pid, 255 << 8
            if pid:
                self._read_ready(worker)  # it may have listened just before it died
                self._forget(worker)
                self._on_exit(worker, os.waitstatus_to_exitcode(status))

    # ------------------------------------------------------------ events

    def _on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop(f"{signal.Signals(signum).name}: stopping the workers")
        elif signum == signal.SIGHUP:
            if self.phase == "stopping":
                return
            logger.info("SIGHUP: rolling restart of %d workers", self.count)
            self.rolling = list(range(self.count))  # again from the first if one is under way
            self._advance_rolling()
        # SIGCHLD: _reap follows.

    def _on_ready(self, worker: Worker) -> None:
        worker.ready = True
        logger.info("worker %d listening", worker.pid)
        if worker.replaces is not None:
            old = self.workers.get(worker.replaces)
            if old is not None and self.phase != "stopping":
                logger.info("rolling restart: stopping worker %d", old.pid)
                self._terminate(old)
            elif old is None:
                worker.replaces = None
                self._advance_rolling()
        if self.phase == "starting" and sum(w.ready for w in self.workers.values()) == self.count:
            self.phase = "running"
            logger.info("%d workers serving: %s", self.count, " ".join(map(str, self.pids)))
            if self.on_ready is not None:
                self.on_ready(self)
            self._advance_rolling()  # a SIGHUP received while starting

    def _on_exit(self, worker: Worker, status: int) -> None:
        how = _describe(status)
        lived = time.monotonic() - worker.started
        if worker.stopping or self.phase == "stopping":
            logger.info("worker %d %s", worker.pid, how)
            for successor in self.workers.values():
                if successor.replaces == worker.pid:
                    successor.replaces = None
                    logger.info("rolling restart: worker %d replaced by %d", worker.pid, successor.pid)
            self._advance_rolling()
            return
        if not worker.ready and self.phase == "starting":
            self.failure = f"worker {worker.pid} {how} before it was listening (its error is logged above)"
            logger.error("%s", self.failure)
            self._stop("stopping the other workers")
            return
        if not worker.ready and worker.replaces is not None:
            logger.error(
                "rolling restart stopped: the new worker %d %s before it was listening; worker %d and the others"
                " keep serving",
                worker.pid,
                how,
                worker.replaces,
            )
            self.rolling = None
            return
        delay = self.restart_delay if lived >= STABLE_AFTER else self.delay.get(worker.slot, self.restart_delay)
        self.delay[worker.slot] = min(2 * delay, MAX_RESTART_DELAY)
        successor_pid = next((w.pid for w in self.workers.values() if w.slot == worker.slot and not w.stopping), None)
        if successor_pid is not None:  # the old worker of a rolling restart step died
            logger.warning("worker %d %s after %.1f s; worker %d takes over", worker.pid, how, lived, successor_pid)
            return
        logger.warning("worker %d %s after %.1f s; restarting it in %.1f s", worker.pid, how, lived, delay)
        self.restart_at[worker.slot] = time.monotonic() + delay

    def _on_time(self, now: float) -> None:
        for slot, at in list(self.restart_at.items()):
            if at <= now:
                del self.restart_at[slot]
                worker = self._spawn(slot)
                logger.info("worker %d forked (a restart)", worker.pid)
        if self.kill_at is not None and now >= self.kill_at:
            self.kill_at = None
            for worker in self.workers.values():
                logger.warning(
                    "worker %d still running %.1f s after SIGTERM: SIGKILL",
                    worker.pid,
                    (self.close_timeout or 0.0) + KILL_GRACE,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGKILL)

    # ------------------------------------------------------------ actions

    def _stop(self, reason: str) -> None:
        if self.phase == "stopping":
            return
        logger.info("%s", reason)
        self.phase = "stopping"
        self.restart_at.clear()
        self.rolling = None
        for worker in self.workers.values():
            self._terminate(worker)
        if self.close_timeout is not None:
            self.kill_at = time.monotonic() + self.close_timeout + KILL_GRACE

    def _advance_rolling(self) -> None:
        """Start the next step of a rolling restart, unless one is under way."""
        if self.rolling is None or self.phase != "running":
            return
        if any(w.replaces is not None for w in self.workers.values()):
            return
        while self.rolling:
            slot = self.rolling.pop(0)
            old = next((w for w in self.workers.values() if w.slot == slot and w.ready and not w.stopping), None)
            if old is not None:  # else it awaits a restart after a crash, which runs new code anyway
                new = self._spawn(slot, replaces=old.pid)
                logger.info("rolling restart: worker %d forked to replace worker %d", new.pid, old.pid)
                return
        self.rolling = None
        logger.info("rolling restart done: workers %s", " ".join(map(str, self.pids)))

    def _terminate(self, worker: Worker) -> None:
        worker.stopping = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.pid, signal.SIGTERM)

    def _spawn(self, slot: int, replaces: Optional[int] = None) -> Worker:
        assert self._selector is not None
        ready_r, ready_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):  # or the worker would write what is buffered again
            with contextlib.suppress(Exception):
                stream.flush()
        # Signals stay blocked across the fork, until the worker has replaced
        # the supervisor's handlers (they would write to its wakeup pipe).
        blocked = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            pid = os.fork()
            if pid == 0:
                os.close(ready_r)
                self._become_worker(ready_w, mask)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(ready_w)
        os.set_blocking(ready_r, False)
        worker = Worker(pid, slot, ready_r, time.monotonic(), replaces=replaces)
        self.workers[pid] = worker
        self._selector.register(ready_r, selectors.EVENT_READ, worker)
        return worker

    def _forget(self, worker: Worker) -> None:
        self.workers.pop(worker.pid, None)
        self._close_ready(worker)

    def _close_ready(self, worker: Worker) -> None:
        if worker.ready_fd >= 0:
            assert self._selector is not None
            self._selector.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    # ------------------------------------------------------------ in a worker

    def _become_worker(self, ready_fd: int, mask: Any) -> None:
        """The forked child: drop the supervisor's signal handling and file
        descriptors, serve until stopped, exit. Never returns."""
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the supervisor's business
            inherited = [*self._wakeup, self._lifeline[1], *(w.ready_fd for w in self.workers.values())]
            for fd in inherited:
                if fd >= 0:
                    os.close(fd)
            if self.reuse_port:
                for sock in self.sockets:  # the placeholders: each worker binds its own
                    sock.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            main = self._serve(ready_fd, self._lifeline[0])
            if self.loop == "uvloop":
                status = importlib.import_module("uvloop").run(main)
            else:
                status = asyncio.run(main)
        except KeyboardInterrupt:  # SIGINT before the event loop handles it
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(status)

    async def _serve(self, ready_fd: int, lifeline_fd: int) -> int:
        """A worker's life: start serving, tell the supervisor, serve until
        SIGTERM or SIGINT (or the supervisor is gone), close with 1001."""
        from .asyncio.server import Server, create_server, serve

        loop = asyncio.get_running_loop()
        stop: asyncio.Future[str] = loop.create_future()

        def request_stop(why: str) -> None:
            if not stop.done():
                stop.set_result(why)

        loop.add_signal_handler(signal.SIGTERM, request_stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, request_stop, "SIGINT")
        loop.add_reader(lifeline_fd, request_stop, "the supervisor is gone")
        pid = os.getpid()
        handler = _load(self.handler) if isinstance(self.handler, str) else self.handler
        start: Callable[..., Any] = serve if self.api == "serve" else create_server
        async with contextlib.AsyncExitStack() as stack:
            if self.lifespan is not None:
                await stack.enter_async_context(self.lifespan())
            servers: list[Server] = []  # one per address (usually one)
            if self.reuse_port:
                for address in self.addresses:
                    servers.append(await start(handler, address, self.port, reuse_port=True, **self.options))
            else:
                for sock in self.sockets:  # inherited, listening
                    servers.append(await start(handler, sock=sock, **self.options))
            os.write(ready_fd, b"1")
            os.close(ready_fd)
            why = await stop
            loop.remove_reader(lifeline_fd)
            logger.info(
                "worker %d: %s: closing %d connections with 1001",
                pid,
                why,
                sum(len(server.connections) for server in servers),
            )
            for server in servers:
                server.close()
            closing = asyncio.ensure_future(asyncio.gather(*(server.wait_closed() for server in servers)))
            await asyncio.wait({closing}, timeout=self.close_timeout)
            if not closing.done():
                closing.cancel()
                logger.warning(
                    "worker %d: connections still open after close_timeout (%s s); exiting", pid, self.close_timeout
                )
        return 0


def run(
    handler: Handler,
    host: Optional[str] = "127.0.0.1",
    port: int = 8765,
    *,
    workers: int = 1,
    reuse_port: Optional[bool] = None,
    api: Literal["serve", "callback"] = "serve",
    loop: Literal["asyncio", "uvloop"] = "asyncio",
    lifespan: Optional[Lifespan] = None,
    restart_delay: float = 1.0,
    **options: Any,
) -> int:
    """Serve ``handler`` on ``host:port`` from ``workers`` processes (0: one
    per usable core) under a supervisor; block until SIGTERM or SIGINT
    stopped them all, and return 0. See :mod:`wsfast.workers`.

    ``handler`` is what :func:`~wsfast.asyncio.serve` takes (a coroutine
    function, or a mapping from path to coroutine function) or, with
    ``api="callback"``, what :func:`~wsfast.asyncio.create_server` takes
    (a listener factory); or a string ``"module:attribute"`` naming it,
    imported in each worker (a rolling restart then runs new code).
    ``reuse_port`` (default: where the OS has ``SO_REUSEPORT``): a listening
    socket per worker, balanced by the kernel; ``False``: one socket, bound
    by the supervisor, shared by the workers. ``loop``: ``"asyncio"`` or
    ``"uvloop"``. ``lifespan()``: an async context manager that each
    worker enters around serving (create there what does I/O: nothing may
    be before the fork). ``restart_delay``: the first wait before a worker
    that died is restarted (it doubles at each crash, up to 30 s).
    ``options`` go to ``serve`` or ``create_server``
    (:class:`~wsfast.asyncio.Options` fields, ``ssl``, ``process_request``,
    ``max_connections``, ``backlog``...).

    Raises :exc:`OSError` at once when the address cannot be bound,
    :exc:`RuntimeError` without ``os.fork`` (Windows) or when a worker
    fails before they all listen.
    """
    supervisor = Supervisor(
        handler,
        host,
        port,
        workers=workers,
        reuse_port=reuse_port,
        api=api,
        loop=loop,
        lifespan=lifespan,
        restart_delay=restart_delay,
        **options,
    )
    return supervisor.run()


# ---------------------------------------------------------------- helpers


def _ignore(signum: int, frame: Any) -> None:
    """The supervisor's signal handler: the wakeup pipe does the work."""


def _describe(status: int) -> str:
    """``os.waitstatus_to_exitcode()``'s result in words."""
    if status >= 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"was killed by {name}"


def _split_target(target: str) -> tuple[str, str]:
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        raise ValueError(f"handler {target!r}: a string names it as 'module:attribute'")
    return module, attribute


def _load(target: str) -> Any:
    """Import ``"module:attribute"`` (the attribute may be dotted)."""
    module, attribute = _split_target(target)
    value: Any = importlib.import_module(module)
    for name in attribute.split("."):
        value = getattr(value, name)
    return value


def _check_options(api: str, options: Mapping[str, Any]) -> None:
    """Reject in the supervisor what would make every worker fail."""
    allowed = set(Options.__dataclass_fields__) | _SERVER_ARGUMENTS
    if api == "serve":
        allowed.add("process_request")
    unknown = sorted(set(options) - allowed)
    if unknown:
        hint = " (run() binds the sockets itself)" if {"sock", "path"} & set(unknown) else ""
        raise TypeError(f"run() got unexpected keyword arguments for api={api!r}: {', '.join(unknown)}{hint}")
    if api == "serve" and options.get("stream_messages"):
        raise ValueError("stream_messages is for the callback API (api='callback')")

"""`serve --workers N`: a small supervisor and N server processes (one `app.Node` each).

The supervisor checks what can be checked before anything starts (settings, the listeners'
addresses), forks the owner (worker 0) and waits until it serves, then the others, and
from then on only waits: a worker that dies is started again after a back-off (1 s,
doubling to 30 s while it keeps dying young), and SIGTERM, SIGINT or SIGHUP is passed on to
every worker, which drains its requests as a single server does; after the shutdown timeout
what is left is killed. Forking (not spawning) gives every worker exactly the supervisor's
settings; the supervisor has no threads and no event loop when it forks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from s3torrent.config import Settings, StartupError
from s3torrent.roles import (
    STOP_SIGNALS,
    Role,
    events_socket,
    handoff_socket,
    owner_socket,
    tracker_socket,
)

log = logging.getLogger("s3torrent")

START_TIMEOUT = 600.0  # a first start may migrate the schema
MIN_BACKOFF, MAX_BACKOFF = 1.0, 30.0
HEALTHY_AFTER = 60.0  # a worker that ran this long starts again after MIN_BACKOFF
KILL_GRACE = 10.0  # after the shutdown timeout: then SIGKILL
UNIX_PATH_MAX = 107

Describe = Callable[[BaseException], str]


@dataclass(slots=True)
class _Worker:
    role: Role
    pid: int
    started: float
    status_fd: int | None = None


def check_sockets(settings: Settings) -> None:
    for socket_of in (owner_socket, events_socket, tracker_socket, handoff_socket):
        path = socket_of(settings.data_dir)
        if len(os.fsencode(path.absolute())) > UNIX_PATH_MAX:
            raise StartupError(
                f"the data directory {settings.data_dir.absolute()} is too long a path for the "
                f"workers' Unix sockets ({path.name}); choose a shorter --data-dir, or --workers 1"
            )


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        count: int,
        run_worker: Callable[[Role, Callable[[], None]], None],
        describe: Describe,
        *,
        debug: bool = False,
    ) -> None:
        self.settings = settings
        self.count = count
        self.run_worker = run_worker
        self.describe = describe
        self.debug = debug
        self.workers: dict[int, _Worker] = {}  # by index
        self.backoff = [MIN_BACKOFF] * count
        self.restart_at: dict[int, float] = {}
        self.stopping = False
        self.reopen = False  # SIGUSR1 came: forward it to the workers
        self.restarts = 0

    # ---- forking ----

    def _spawn(self, role: Role) -> _Worker:
        read_fd, write_fd = os.pipe()
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            self._child(role, write_fd, supervisor)
        os.close(write_fd)
        worker = _Worker(role, pid, time.monotonic(), read_fd)
        self.workers[role.index] = worker
        log.info("worker %d started (pid %d)%s", role.index, pid, " as owner" if role.owner else "")
        return worker

    def _child(self, role: Role, status_fd: int, supervisor: int) -> None:
        code = 1
        try:
            for sig in (*STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            _drain_when_orphaned(supervisor)
            # Until the node listens for it (app.serve): not the supervisor's, not a death.
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)
            for other in self.workers.values():
                if other.status_fd is not None:
                    os.close(other.status_fd)

            def ready() -> None:
                with contextlib.suppress(OSError):
                    os.write(status_fd, b"ready\n")

            self.run_worker(role, ready)
            code = 0
        except KeyboardInterrupt:
            code = 0
        except BaseException as exc:
            if self.debug:
                traceback.print_exc()
            with contextlib.suppress(OSError):
                os.write(status_fd, ("error " + self.describe(exc)).encode()[:4000])
        finally:
            logging.shutdown()
            os._exit(code)

    def _await_ready(self, workers: list[_Worker]) -> None:
        """Until each worker said it serves; StartupError with the first one's failure."""
        waiting = {w.status_fd: w for w in workers if w.status_fd is not None}
        said: dict[int, bytes] = {fd: b"" for fd in waiting}
        deadline = time.monotonic() + START_TIMEOUT
        while waiting:
            if self.stopping:
                raise KeyboardInterrupt
            if time.monotonic() > deadline:
                raise StartupError(f"the workers did not start within {START_TIMEOUT:.0f} s")
            readable, _, _ = select.select(list(waiting), [], [], 0.2)
            for fd in readable:
                chunk = os.read(fd, 4096)
                said[fd] += chunk
                if said[fd].startswith(b"ready"):
                    self._close_status(waiting.pop(fd))
                elif not chunk:  # the worker is gone: it said why, or died without a word
                    worker = waiting.pop(fd)
                    self._close_status(worker)
                    message = said[fd].decode(errors="replace")
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(worker.pid, 0)
                    self.workers.pop(worker.role.index, None)
                    if message.startswith("error "):
                        raise StartupError(message[len("error ") :])
                    raise StartupError(f"worker {worker.role.index} exited while starting")

    @staticmethod
    def _close_status(worker: _Worker) -> None:
        if worker.status_fd is not None:
            os.close(worker.status_fd)
            worker.status_fd = None

    # ---- running ----

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _on_reopen(self, signum: int, frame: FrameType | None) -> None:
        self.reopen = True

    def _forward_reopen(self) -> None:
        """SIGUSR1 (log rotation) reaches every worker, which opens its access log again."""
        self.reopen = False
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGUSR1)

    def run(self) -> None:
        """Start the workers, keep them running until a stop signal (STOP_SIGNALS), stop them."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._on_reopen)
        try:
            try:
                self._await_ready([self._spawn(Role(0, self.count))])
                self._await_ready([self._spawn(Role(i, self.count)) for i in range(1, self.count)])
            except KeyboardInterrupt:
                return
            log.info("%d workers serving", self.count)
            while not self.stopping:
                self._reap()
                self._restart_due()
                if self.reopen:
                    self._forward_reopen()
                time.sleep(0.2)
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers.values() if w.pid == pid), None)
            if worker is None:
                continue
            self._close_status(worker)
            del self.workers[worker.role.index]
            index = worker.role.index
            ran = time.monotonic() - worker.started
            if ran >= HEALTHY_AFTER:
                self.backoff[index] = MIN_BACKOFF
            delay = self.backoff[index]
            self.backoff[index] = min(delay * 2, MAX_BACKOFF)
            self.restart_at[index] = time.monotonic() + delay
            log.warning(
                "worker %d (pid %d) %s after %.0f s; starting it again in %.0f s",
                index,
                pid,
                _exit_text(status),
                ran,
                delay,
            )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, at in list(self.restart_at.items()):
            if at <= now:
                del self.restart_at[index]
                self.restarts += 1
                worker = self._spawn(Role(index, self.count, restarted=True))
                self._close_status(worker)  # it serves when it can; a failure is a death

    def _stop_all(self) -> None:
        for worker in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.limits.shutdown_timeout + KILL_GRACE
        while self.workers and time.monotonic() < deadline:
            for index, worker in list(self.workers.items()):
                with contextlib.suppress(ChildProcessError):
                    pid, status = os.waitpid(worker.pid, os.WNOHANG)
                    if pid == 0:
                        continue
                    if status != 0:
                        log.warning("worker %d %s while stopping", index, _exit_text(status))
                self._close_status(worker)
                del self.workers[index]
            time.sleep(0.05)
        for index, worker in self.workers.items():
            log.warning("worker %d (pid %d) did not stop in time: killed", index, worker.pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(worker.pid, 0)
        self.workers.clear()


def _drain_when_orphaned(supervisor: int) -> None:
    """A worker whose supervisor dies (SIGKILL, the OOM killer) gets SIGTERM and drains, as
    at a shutdown: else it would serve on unsupervised, holding the listener and the data
    directory's lock (provision.hold_data_dir) until someone finds it. Linux's
    PR_SET_PDEATHSIG; elsewhere nothing is asked."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            return
        if os.getppid() != supervisor:  # it died before the request took effect
            os._exit(0)


_PR_SET_PDEATHSIG = 1


def _exit_text(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def serve(
    settings: Settings,
    *,
    config_file: Path | None,
    describe: Describe,
    debug: bool = False,
) -> None:
    """Run the server: one process for one worker (exactly the single-node path), else a
    supervisor and its workers. Raises StartupError when it cannot start."""
    from s3torrent import app
    from s3torrent.provision import hold_data_dir
    from s3torrent.startup import deployment_warnings, preflight

    count = settings.worker_count
    if count == 1:
        asyncio.run(app.serve(settings, config_file=config_file))
        return
    for warning in deployment_warnings(settings):
        log.warning("%s", warning)
    preflight(settings)
    check_sockets(settings)
    held = hold_data_dir(settings, count)  # secures the data directory first

    def run_worker(role: Role, ready: Callable[[], None]) -> None:
        asyncio.run(
            app.serve(
                settings,
                config_file=config_file,
                role=role,
                on_ready=ready,
                announce=role.owner,
            )
        )

    try:
        Supervisor(settings, count, run_worker, describe, debug=debug).run()
    finally:
        for fd in held:
            os.close(fd)

"""Test servers forked from a process that has already imported streamd.

``python -m streamd.cli serve`` spends about 0.5 s of its 0.6 s of start-up CPU importing PyAV,
aiohttp, aiortc and the package, and the suite starts about a hundred servers on two cores. So each
pytest process keeps one fork server (this module, run with ``python -m tests.server_forks``): it
imports once and forks a server per request, as gunicorn's ``preload`` does. The child then runs the
same entry point ``python -m streamd.cli`` runs (``runpy``, as ``-m`` does), with the request's
arguments, environment, working directory and log file, and exits the way the interpreter would
(threads joined, ``atexit`` run, the exit code or the signal that ended it). Tests still see a
process of their own: its pid, its exit status, signals sent to it. ``STREAMD_TEST_NO_FORK=1``
starts every server with a fresh interpreter instead; tests that run the CLI itself always do.

Protocol, one unix-socket connection per server: the client sends one JSON line (argv, env, cwd,
log), the fork server answers the server's pid on a line and, when it has ended, its exit code on
another (negative: the signal), like ``subprocess.Popen.returncode``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

# what `streamd.cli serve` imports before it listens (measured: the rest costs a server little)
PRELOAD = (
    "streamd.cli",
    "streamd.embed",
    "streamd.workers.worker",
    "streamd.workers.supervisor",
    "streamd.http.app",
)


def enabled() -> bool:
    return os.environ.get("STREAMD_TEST_NO_FORK", "") in ("", "0")


# --- the client side (in the test process) --------------------------------------------------------


class ForkedServer:
    """The few ``subprocess.Popen`` members the tests use, for a server the fork server started."""

    def __init__(self, connection: socket.socket, args: list[str]) -> None:
        self.args = args
        self.returncode: int | None = None
        self._connection = connection
        self._buffer = b""  # unbuffered reads: the exit line may come right behind the pid's
        pid = self._line(None)
        if not pid:
            raise RuntimeError("the fork server did not start the server")
        self.pid = int(pid)

    def poll(self) -> int | None:
        if self.returncode is None:
            self._exit_from(self._line(0))
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            line = self._line(timeout)
            if line is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            self._exit_from(line)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _line(self, timeout: float | None) -> bytes | None:
        """The next line, waiting up to ``timeout`` (None: for ever); None if none came by then,
        what is left (maybe empty) if the connection ended."""
        while b"\n" not in self._buffer:
            if not select.select([self._connection], [], [], timeout)[0]:
                return None
            data = self._connection.recv(4096)
            if not data:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _exit_from(self, line: bytes | None) -> None:
        if line is None:
            return
        self.returncode = int(line) if line.strip() else -signal.SIGKILL  # the fork server died
        self._connection.close()


class _Client:
    """This process's fork server, started on first use and ended with this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._address = ""

    def spawn(self, args: list[str], log_path: Path, cwd: Path) -> ForkedServer:
        """``python -m streamd.cli <args>`` with stdout and stderr to ``log_path`` (made empty now,
        so that it can be read at once)."""
        log_path.write_bytes(b"")
        request = {"argv": args, "env": dict(os.environ), "cwd": str(cwd), "log": str(log_path)}
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(self._started())
            connection.sendall(json.dumps(request).encode() + b"\n")
            return ForkedServer(connection, [sys.executable, "-m", "streamd.cli", *args])
        except BaseException:
            connection.close()
            raise

    def _started(self) -> str:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._address = os.path.join(tempfile.mkdtemp(prefix="streamd-forks-"), "socket")
                root = Path(__file__).resolve().parents[1]
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "tests.server_forks", self._address],
                    stdin=subprocess.PIPE,  # its end of file is this process ending
                    stdout=subprocess.PIPE,
                    cwd=root,
                )
                assert self._process.stdout is not None
                if self._process.stdout.readline() != b"ready\n":
                    raise RuntimeError("the fork server did not start")
                atexit.register(self._stop, self._process, self._address)
            return self._address

    @staticmethod
    def _stop(process: subprocess.Popen[bytes], address: str) -> None:
        assert process.stdin is not None
        process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        shutil.rmtree(os.path.dirname(address), ignore_errors=True)


_client = _Client()
spawn = _client.spawn


# --- the fork server --------------------------------------------------------------------------------


def _serve_forever(address: str) -> None:
    for name in PRELOAD:
        __import__(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # its children (the waiters) reap themselves
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        readable = select.select([listener, sys.stdin], [], [])[0]
        if sys.stdin in readable:  # the test process ended
            return
        connection, _ = listener.accept()
        with connection:
            request = json.loads(connection.makefile("rb").readline())
            if os.fork() == 0:
                try:
                    listener.close()
                    _wait_for_server(connection, request)
                finally:
                    os._exit(1)


def _wait_for_server(connection: socket.socket, request: dict[str, Any]) -> None:
    """In a child of the fork server: fork the server, tell its pid, then how it ended."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        try:
            connection.close()
            _run_server(request)
        finally:
            os._exit(1)
    connection.sendall(b"%d\n" % pid)
    _, status = os.waitpid(pid, 0)
    with contextlib.suppress(OSError):
        connection.sendall(b"%d\n" % os.waitstatus_to_exitcode(status))
    os._exit(0)


def _run_server(request: dict[str, Any]) -> None:
    """Become ``python -m streamd.cli <argv>``: its stdio, directory, environment, exit."""
    import runpy
    import traceback

    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT, 0o644)  # made empty by the client
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["streamd.cli", *request["argv"]]
    del sys.modules["streamd.cli"]  # `-m` runs it as __main__ only; a later import makes a second copy
    code = 0
    try:
        runpy.run_module("streamd.cli", run_name="__main__", alter_sys=True)
    except SystemExit as end:
        if end.code is None or isinstance(end.code, int):
            code = end.code or 0
        else:
            print(end.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # as the interpreter does at exit
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if code < 0:  # ended by a signal it did not handle: end the same way
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


if __name__ == "__main__":
    _serve_forever(sys.argv[1])

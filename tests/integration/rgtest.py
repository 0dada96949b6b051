"""Shared helpers for the Roundguard integration tests (Python standard library only).

Pieces meant for reuse by every daemon test file:

* locating a daemon binary (environment variable, else the meson build tree);
* free_port(): a TCP port nobody listens on right now;
* Daemon: start a daemon subprocess in its own process group, drain its
  stdout/stderr in background threads, wait until its port accepts
  connections, signal/stop it, and kill it and every process it forked, by
  PID, on cleanup;
* run(): a one-shot run of a command that is expected to exit by itself;
* raw-socket HTTP: build_request(), encode_chunked(), RawHTTP (a connection
  that can send arbitrary bytes and parse responses: Content-Length, chunked,
  read-until-close, HEAD), send_raw();
* http.client helpers returning the same Response type;
* /proc helpers: descendants(), children(), pid_alive(), group_members(),
  cmdline(), rss_bytes();
* JSON log helpers: json_log_lines(), json_log_objects(), wait_json_log();
  wait_until().
"""

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_HOST = "127.0.0.1"

# Variables that change how a daemon logs; tests start from an environment without them.
LOG_ENV_VARS = ("LOG_LEVEL", "LOG_FORMAT")


class DaemonError(Exception):
    """A daemon did not start (or stop) the way a test needed."""


class ConnectionClosed(Exception):
    """The peer closed the connection before a complete response was read."""


# --------------------------------------------------------------------------
# Binaries and environment
# --------------------------------------------------------------------------

def find_binary(env_var, default_relpath):
    """Path of a daemon binary: $env_var if set, else REPO_ROOT/default_relpath.

    Raises DaemonError (so the tests fail, not skip) when there is no executable.
    """
    path = os.environ.get(env_var) or os.path.join(REPO_ROOT, default_relpath)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise DaemonError(
            "%s: no executable at %r (set %s, or build with "
            "`meson setup build && ninja -C build`)" % (env_var, path, env_var))
    return path


def clean_env(overrides=None, drop=LOG_ENV_VARS):
    """A copy of os.environ without the variables in drop, plus overrides."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if overrides:
        for k, v in overrides.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
    return env


# --------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------

_handed_out = set()
_handed_out_lock = threading.Lock()


def free_port(host=DEFAULT_HOST):
    """A TCP port on host that is free right now and was not handed out before
    by this process (so a port left in TIME_WAIT by an earlier test is not reused)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        with _handed_out_lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise DaemonError("could not find a free port")


def port_accepting(host, port, timeout=0.5):
    """True if a TCP connection to host:port can be made now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host, port, timeout=5.0, proc=None):
    """Wait until host:port accepts connections. Returns True, or False if the
    timeout passed or proc (a Popen) exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        if port_accepting(host, port, timeout=0.2):
            return True
        time.sleep(0.01)
    return False


# --------------------------------------------------------------------------
# Processes (/proc)
# --------------------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid, pgrp) of pid from /proc, or None if there is no such process."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    try:
        rest = data[data.rindex(b")") + 2:].split()
        return rest[0].decode(), int(rest[1]), int(rest[2])
    except (ValueError, IndexError):
        return None


def _all_stats():
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None:
                stats[int(name)] = st
    return stats


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def descendants(pid):
    """PIDs of all live (non-zombie) descendants of pid."""
    stats = _all_stats()
    children = {}
    for p, (state, ppid, _) in stats.items():
        if state not in ("Z", "X"):
            children.setdefault(ppid, []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def group_members(pgid):
    """PIDs of live (non-zombie) processes in process group pgid."""
    return [p for p, (state, _, pgrp) in _all_stats().items()
            if pgrp == pgid and state not in ("Z", "X")]


def children(pid):
    """PIDs of the live (non-zombie) direct children of pid."""
    return sorted(p for p, (state, ppid, _) in _all_stats().items()
                  if ppid == pid and state not in ("Z", "X"))


def cmdline(pid):
    """The command line of pid as one str (arguments joined by spaces), or
    None if there is no such process. Shows process titles set with
    setproctitle()."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def rss_bytes(pid):
    """Resident set size of pid in bytes (VmRSS), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def wait_until(fn, timeout=3.0, interval=0.02):
    """Call fn until it returns something true or timeout passes; return its
    last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


# --------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------

def run(argv, env=None, timeout=10.0):
    """Run argv to completion (stdin closed); CompletedProcess with text output.
    On timeout the child is killed and subprocess.TimeoutExpired is raised."""
    return subprocess.run(argv, env=clean_env(env), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout,
                          encoding="utf-8", errors="replace")


class _Drain(threading.Thread):
    """Reads a pipe line by line into a list until EOF."""

    def __init__(self, stream, cond):
        super().__init__(daemon=True)
        self.stream = stream
        self.cond = cond
        self.lines = []

    def run(self):
        try:
            for line in iter(self.stream.readline, b""):
                with self.cond:
                    self.lines.append(line)
                    self.cond.notify_all()
        except (OSError, ValueError):
            pass
        with self.cond:
            self.cond.notify_all()


class Daemon:
    """A daemon subprocess listening on a TCP port.

    args may contain "{host}" and "{port}" placeholders, replaced by the
    listen host and port (a free port is picked when port is None):

        d = Daemon(binary, ["-l", "{host}", "-p", "{port}"]).start()
        try: ... d.port ...
        finally: d.kill()

    The daemon runs in a new session (process group = its PID), so the
    processes it forks can be found and killed by PID afterwards.
    """

    def __init__(self, binary, args=(), env=None, host=DEFAULT_HOST, port=None,
                 preexec_fn=None):
        self.binary = binary
        self.preexec_fn = preexec_fn    # run in the child before exec (e.g. setrlimit)
        self.args = list(args)
        self.env = dict(env or {})
        self.host = host
        self.fixed_port = port
        self.port = port
        self.proc = None
        self.known_pids = set()
        self._cond = threading.Condition()
        self._out = self._err = None

    # -- starting ---------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def argv(self):
        return [self.binary] + [a.replace("{host}", self.host).replace("{port}", str(self.port))
                                for a in self.args]

    def _spawn(self):
        self.proc = subprocess.Popen(
            self.argv(), env=clean_env(self.env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=self.preexec_fn)
        self.known_pids = {self.proc.pid}
        self._out = _Drain(self.proc.stdout, self._cond)
        self._err = _Drain(self.proc.stderr, self._cond)
        self._out.start()
        self._err.start()

    def start(self, timeout=5.0, retries=3):
        """Spawn the daemon and wait until its port accepts connections.
        A port picked here that turns out to be taken is replaced and retried."""
        for attempt in range(retries):
            if self.fixed_port is None:
                self.port = free_port(self.host)
            self._spawn()
            if wait_port(self.host, self.port, timeout, self.proc):
                self.refresh_pids()
                return self
            exited = self.proc.poll() is not None
            self.kill()
            err = self.stderr_text()
            if exited and self.fixed_port is None and "in use" in err.lower() \
                    and attempt + 1 < retries:
                continue
            raise DaemonError("%s did not start listening on %s (%s); stderr:\n%s" % (
                " ".join(self.argv()), self.address,
                "exit status %s" % self.proc.returncode if exited else "timeout", err))
        raise DaemonError("unreachable")

    def __enter__(self):
        return self if self.proc else self.start()

    def __exit__(self, *exc):
        self.kill()

    # -- processes --------------------------------------------------------

    def refresh_pids(self):
        """Record the daemon's live descendants and process-group members."""
        if self.proc is None:
            return self.known_pids
        if pid_alive(self.proc.pid):
            self.known_pids.update(descendants(self.proc.pid))
        self.known_pids.update(group_members(self.proc.pid))
        return self.known_pids

    def live_pids(self):
        """Known PIDs (daemon and everything it forked) that are still alive."""
        self.refresh_pids()
        return sorted(p for p in self.known_pids if self._ours_alive(p))

    def _ours_alive(self, p):
        st = proc_stat(p)
        if st is None or st[0] in ("Z", "X"):
            return False
        # Guard against PID reuse: the process must still be in our group or
        # a child of one of ours.
        return p == self.proc.pid or st[2] == self.proc.pid or st[1] in self.known_pids

    def wait_for_processes(self, n, timeout=3.0):
        """Wait until at least n of the daemon's processes are alive; return their PIDs."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.live_pids()
            if len(pids) >= n or time.monotonic() >= deadline:
                return pids
            time.sleep(0.02)

    # -- stopping ---------------------------------------------------------

    def send_signal(self, sig):
        self.refresh_pids()
        os.kill(self.proc.pid, sig)

    def wait(self, timeout=5.0):
        """Exit status, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Send sig to the main process; (exit status or None, seconds until exit)."""
        self.refresh_pids()
        t0 = time.monotonic()
        os.kill(self.proc.pid, sig)
        rc = self.wait(timeout)
        elapsed = time.monotonic() - t0
        if rc is not None:
            self._join_output(2.0)
        return rc, elapsed

    def kill(self):
        """SIGKILL the daemon and every process it forked (by PID); reap; close pipes."""
        if self.proc is None:
            return
        self.refresh_pids()
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in sorted(self.known_pids):
            if p != self.proc.pid and self._ours_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            pass
        self._join_output(2.0)

    def _join_output(self, timeout):
        for t, stream in ((self._out, self.proc.stdout), (self._err, self.proc.stderr)):
            if t is None:
                continue
            t.join(timeout)
            if not t.is_alive() and stream is not None and not stream.closed:
                stream.close()

    # -- output -----------------------------------------------------------

    def stderr_bytes(self):
        with self._cond:
            return b"".join(self._err.lines) if self._err else b""

    def stdout_bytes(self):
        with self._cond:
            return b"".join(self._out.lines) if self._out else b""

    def stderr_text(self):
        return self.stderr_bytes().decode("utf-8", "replace")

    def stderr_lines(self):
        """stderr as a list of str lines without line ends."""
        return self.stderr_text().splitlines()

    def stderr_mark(self):
        """Number of stderr lines read so far (for wait_for_stderr(since=...))."""
        with self._cond:
            return len(self._err.lines) if self._err else 0

    def wait_for_stderr(self, predicate, timeout=3.0, since=0):
        """Wait until predicate(line: str) holds for a stderr line (from line
        number since on); return it or None."""
        deadline = time.monotonic() + timeout
        seen = since
        with self._cond:
            while True:
                lines = self._err.lines
                for raw in lines[seen:]:
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    if predicate(line):
                        return line
                seen = len(lines)
                left = deadline - time.monotonic()
                if left <= 0 or not self._err.is_alive():
                    return None
                self._cond.wait(left)


def wait_json_log(daemon, predicate, timeout=3.0, since=0):
    """Wait until a stderr line of daemon is a JSON object for which
    predicate(obj) holds (from stderr line number since on); return the
    object or None."""
    found = []

    def check(line):
        try:
            obj = json.loads(line)
        except ValueError:
            return False
        if isinstance(obj, dict) and predicate(obj):
            found.append(obj)
            return True
        return False

    daemon.wait_for_stderr(check, timeout=timeout, since=since)
    return found[0] if found else None


def stdout_events(daemon, **match):
    """The JSON lines daemon (a test backend) wrote to stdout whose fields include match."""
    out = []
    for line in daemon.stdout_bytes().decode("utf-8", "replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and all(obj.get(k) == v for k, v in match.items()):
            out.append(obj)
    return out


def json_log_objects(text):
    """The JSON objects among the lines of text (other lines skipped)."""
    return [o for _, o in json_log_lines(text) if isinstance(o, dict)]


def json_log_lines(text):
    """Parse each line of text as JSON; list of (line, object or None)."""
    out = []
    for line in text.splitlines():
        try:
            out.append((line, json.loads(line)))
        except ValueError:
            out.append((line, None))
    return out


# --------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------

class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version      # "HTTP/1.1"
        self.status = status        # int
        self.reason = reason
        self.headers = headers      # list of (name, value), as received
        self.body = body            # bytes

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def media_type(self):
        ct = self.header("Content-Type")
        return None if ct is None else ct.split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def wants_close(self):
        conn = [t.strip().lower() for v in self.header_all("Connection") for t in v.split(",")]
        if "close" in conn:
            return True
        return self.version == "HTTP/1.0" and "keep-alive" not in conn

    def __repr__(self):
        return "<Response %s %d %r headers=%r body=%r>" % (
            self.version, self.status, self.reason, self.headers,
            self.body if len(self.body) <= 200 else self.body[:200] + b"...")


def encode_chunked(chunks, trailers=()):
    """Chunked transfer coding of a list of bytes chunks (empty chunks skipped)."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)
    out += b"0\r\n"
    out += b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in trailers)
    return out + b"\r\n"


def build_request(method, target, body=None, headers=(), version="HTTP/1.1",
                  host="localhost", chunks=None):
    """Raw request bytes. body=None sends no body and no Content-Length;
    chunks (list of bytes) sends a chunked body; host=None omits Host."""
    lines = ["%s %s %s" % (method, target, version)]
    if host is not None:
        lines.append("Host: %s" % host)
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    payload = b""
    if chunks is not None:
        lines.append("Transfer-Encoding: chunked")
        payload = encode_chunked(chunks)
    elif body is not None:
        lines.append("Content-Length: %d" % len(body))
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class RawHTTP:
    """One TCP connection (over TLS with tls, an ssl.SSLContext, and
    server_hostname for SNI); sends raw bytes and parses HTTP/1.x responses."""

    def __init__(self, host, port, timeout=5.0, tls=None, server_hostname=None):
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_hostname)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.timeout = timeout
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, target, **kw):
        self.send(build_request(method, target, **kw))

    def _fill(self):
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            data = b""     # a TLS peer that closed without (or with) close_notify
        if not data:
            raise ConnectionClosed("connection closed by peer (buffered: %r)" % self.buf[:200])
        self.buf += data

    def _read_until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(sep):]
                return out
            self._fill()

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_to_close(self):
        while True:
            try:
                self._fill()
            except ConnectionClosed:
                out, self.buf = self.buf, b""
                return out

    def read_response(self, method="GET"):
        """Read one response (skipping 1xx). method tells whether a body follows (HEAD)."""
        while True:
            head = self._read_until(b"\r\n\r\n").decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError("bad status line %r" % lines[0])
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep:
                    raise ValueError("bad header line %r" % line)
                headers.append((name.strip(), value.strip()))
            resp = Response(version, status, reason, headers, b"")
            if 100 <= status < 200 and status != 101:
                continue
            break
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "chunked" in te:
            body = b""
            while True:
                size = int(self._read_until(b"\r\n").split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n"):
                        pass
                    break
                body += self._read_exact(size)
                if self._read_exact(2) != b"\r\n":
                    raise ValueError("chunk not followed by CRLF")
        elif cl is not None:
            body = self._read_exact(int(cl))
        else:
            body = self._read_to_close()
        resp.body = body
        return resp

    def closed_by_peer(self, timeout=1.0):
        """True if the peer closes (or resets) the connection within timeout with
        no further data; False if it stays open or sends something."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return True
        finally:
            if self.sock is not None:
                self.sock.settimeout(self.timeout)
        if data:
            self.buf += data
            return False
        return True


def send_raw(host, port, data, timeout=5.0):
    """Send data on a new connection, half-close, and return everything received until EOF."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def _from_client_response(r):
    body = r.read()
    version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(r.version, "HTTP/0.9")
    return Response(version, r.status, r.reason, r.getheaders(), body)


def conn_request(conn, method, path, body=None, headers=None):
    """One request on an existing http.client.HTTPConnection; Response."""
    conn.request(method, path, body=body, headers=headers or {})
    return _from_client_response(conn.getresponse())


def http_request(host, port, method, path, body=None, headers=None, timeout=5.0):
    """One request on a fresh http.client connection; Response."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        return conn_request(conn, method, path, body, headers)
    finally:
        conn.close()


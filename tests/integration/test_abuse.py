#!/usr/bin/env python3
"""Bad and hostile input for roundguardd (issue 7, suite `abuse`; real daemons on loopback).

Run:
  ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
      python3 tests/integration/test_abuse.py -v

Every case sends raw bytes on its own connection and checks, all at once (a
failure lists every problem of the case with the bytes sent, the bytes that
came back and what reached the backend):
  - the exact status, made by roundguardd itself, with a JSON
    {"title", "description"} body;
  - the connection closed afterwards (where it should be);
  - nothing forwarded: testbackend.py logs every request head it receives,
    every body it reads whole, every body cut short and every unparsed
    leftover (see its docstring); nothing but health probes may appear there
    during the case;
  - the daemon unharmed: the same master and worker processes (no crash, no
    respawn), and a normal request through it answered 200 right after.

The load balancers here are started by tlsmode.py's LB class (test_lb.py's:
JSON logs, "ready" awaited), with testbackend.py backends from test_lb.py.

Over TLS: ROUNDGUARD_TEST_TLS=1, or --tls on the command line (meson test
abuse-tls), gives every roundguardd an extra TLS listener and sends every client
connection of the suite to it over TLS (tlsmode.py); raw connections are opened
with connect().
"""

import concurrent.futures
import json
import os
import resource
import selectors
import socket
import statistics
import sys
import threading
import time
import unittest
import uuid
from urllib.parse import urlsplit

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rgtest  # noqa: E402
import test_lb as lbt  # noqa: E402
import tlsmode  # noqa: E402

HOST = rgtest.DEFAULT_HOST
CALM = lbt.CALM
SANITIZED = lbt.SANITIZED

# Limits of the LB that most cases run against.
MAX_HEADER = 4096
MAX_BODY = 65536
CLIENT_TIMEOUT = 0.5

# Descriptors this test process wants (2,000 idle client sockets and the rest);
# roundguardd inherits the raised soft limit.
WANT_NOFILE = 8192
IDLE_CONNECTIONS = 2000
# File-descriptor exhaustion: the worker's limit.
LOW_NOFILE = 64


def setUpModule():
    lbt.setUpModule()       # sets test_lb.RGD and test_lb.ECHO (fails, not skips, without them)
    tlsmode.announce()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = WANT_NOFILE if hard == resource.RLIM_INFINITY else min(WANT_NOFILE, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# ---------------------------------------------------------------------------
# Raw exchanges
# ---------------------------------------------------------------------------

def connect(port, timeout=5, handshake=True):
    """A new client connection to the LB's port: a plain socket, or in TLS mode
    a tlsmode.TLSStream (handshake=False: no handshake until the first send or
    recv, for connections that only wait in the listen queue)."""
    return tlsmode.connect(port, timeout=timeout, handshake=handshake)


def parse_response(raw):
    """The first response in raw: (Response, complete?) or (None, False) while
    its head is incomplete or unparseable."""
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return None, False
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None, False
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    resp = rgtest.Response(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "",
                           headers, b"")
    cl = resp.header("Content-Length")
    if cl is not None and cl.strip().isdigit():
        n = int(cl)
        resp.body = rest[:n]
        return resp, len(rest) >= n
    resp.body = rest
    return resp, False


class Exchange:
    """What one raw connection saw: sent bytes, received bytes, the first
    response, whether and when the peer closed."""

    def __init__(self):
        self.sent = b""
        self.raw = b""
        self.resp = None
        self.complete = False
        self.closed = False
        self.reset = False
        self.t_answer = None      # seconds from the first byte sent to the complete answer
        self.t_closed = None      # ... to the close
        self.send_error = None
        self.bytes_sent = 0

    def describe(self, limit=600):
        def cut(b):
            return repr(b if len(b) <= limit else b[:limit] + b"...(%d bytes)" % len(b))
        closed = "no (still open)"
        if self.closed:
            closed = "yes, %s after %.2f s" % ("reset" if self.reset else "FIN", self.t_closed)
        return ("  sent:     %s\n  received: %s\n  closed:   %s%s"
                % (cut(self.sent), cut(self.raw), closed,
                   "\n  send error: %r" % self.send_error if self.send_error else ""))


def _recv_into(sock, ex, t0):
    """One recv; False when the peer closed."""
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, ConnectionAbortedError):
        ex.closed, ex.reset, ex.t_closed = True, True, time.monotonic() - t0
        return False
    if not data:
        ex.closed, ex.t_closed = True, time.monotonic() - t0
        return False
    ex.raw += data
    if not ex.complete:
        ex.resp, ex.complete = parse_response(ex.raw)
        if ex.complete:
            ex.t_answer = time.monotonic() - t0
    return True


def exchange(port, data, answer_timeout=3.0, close_wait=1.0, shut_wr=False, sock=None):
    """Send data on a new connection (or sock), then read until the peer
    closes, or until close_wait after a complete answer, or answer_timeout."""
    ex = Exchange()
    s = sock or connect(port)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        try:
            s.sendall(data)
            ex.bytes_sent = len(data)
            if shut_wr:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            ex.send_error = e
        ex.sent = data
        deadline = t0 + answer_timeout
        while True:
            now = time.monotonic()
            if ex.complete:
                deadline = min(deadline, t0 + ex.t_answer + close_wait)
            if now >= deadline:
                break
            s.settimeout(deadline - now)
            try:
                if not _recv_into(s, ex, t0):
                    break
            except socket.timeout:
                break
    finally:
        s.close()
    return ex


def drip(port, data, interval, max_time, after=b"", stop=None):
    """Send `after` at once (if any), then data one byte every interval
    seconds on a new connection, stopping at the first byte received, at the
    close, or after max_time. Returns an Exchange (t_* from the first byte of
    the drip)."""
    ex = Exchange()
    s = connect(port)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if after:
            s.sendall(after)
            ex.sent += after
        t0 = time.monotonic()
        next_send = t0
        i = 0
        s.setblocking(False)
        while True:
            now = time.monotonic()
            if now - t0 >= max_time or (stop is not None and stop.is_set()):
                break
            if not ex.raw and i < len(data) and now >= next_send:
                try:
                    s.send(data[i:i + 1])
                    ex.sent += data[i:i + 1]
                    i += 1
                except BlockingIOError:
                    pass
                except OSError as e:
                    ex.send_error = e
                    i = len(data)
                next_send += interval
            sel = selectors.DefaultSelector()
            sel.register(s, selectors.EVENT_READ)
            wait = max(0.0, min(next_send, t0 + max_time) - time.monotonic())
            if ex.raw or i >= len(data):
                wait = max(0.0, t0 + max_time - time.monotonic())
            ready = sel.select(min(wait, 0.05))
            sel.close()
            if ready:
                try:
                    if not _recv_into(s, ex, t0):
                        break
                except BlockingIOError:
                    pass
                if ex.complete and ex.t_closed is None:
                    # Give the close a moment to follow the answer.
                    max_time = min(max_time, ex.t_answer + 1.0)
        ex.bytes_sent = i
    finally:
        s.close()
    return ex


# ---------------------------------------------------------------------------
# What reached the backend
# ---------------------------------------------------------------------------

def backend_mark(b):
    return len(b.stdout_bytes())


def backend_records(b, since):
    """The JSON lines testbackend `b` wrote from stdout byte offset since on."""
    out = []
    for line in b.stdout_bytes()[since:].decode("utf-8", "replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"event": "unparsed stdout", "line": line})
    return out


def is_probe(o):
    """A health probe of the checker (GET */live with no body)."""
    return (o.get("event") is None and o.get("method") == "GET"
            and urlsplit(o.get("target", "")).path.endswith("/live"))


def forwarded(b, since):
    """Everything but health probes that reached backend b since the mark."""
    return [o for o in backend_records(b, since) if not is_probe(o)]


def fmt_records(recs, limit=400):
    out = []
    for o in recs:
        o = dict(o)
        for k in ("raw_head", "bytes"):
            if isinstance(o.get(k), str) and len(o[k]) > limit:
                o[k] = o[k][:limit] + "...(%d chars)" % len(o[k])
        out.append(json.dumps(o))
    return "\n    ".join(out) if out else "(nothing)"


# ---------------------------------------------------------------------------
# Test case base
# ---------------------------------------------------------------------------

def worker_pids(lb, n):
    """The PIDs of lb's n workers (a child forked just before "ready" may not
    have set its title yet)."""
    return sorted(rgtest.wait_until(lambda: len(lb.workers()) >= n and lb.workers(),
                                    timeout=3) or lb.workers())


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def cpu_seconds(pid):
    """utime + stime of pid in seconds, or None."""
    st = rgtest.proc_stat(pid)
    if st is None:
        return None
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
        rest = data[data.rindex(b")") + 2:].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def forwarded_proto(r):
    """X-Forwarded-Proto as testbackend's /headers saw it."""
    try:
        hdrs = r.json()["headers"]
    except (ValueError, KeyError, TypeError):
        return None
    return next((v for k, v in hdrs if k.lower() == "x-forwarded-proto"), None)


class AbuseTestCase(lbt.LBTestCase):
    """One LB per class over one testbackend; cases checked by check_case()."""

    backend = None
    lb = None
    workers = []

    @classmethod
    def start_lb(cls, proxy, workers=2, **top):
        cls.backend = lbt.py_backend(cls.addClassCleanup)
        cfg = lbt.make_config([lbt.url(cls.backend)], health=CALM, proxy=proxy, **top)
        cls.lb = tlsmode.LB(cls.addClassCleanup, cfg, workers=workers).start()
        cls.workers = worker_pids(cls.lb, workers)

    # -- problems of one case -----------------------------------------------

    def error_json_problems(self, resp, want):
        """Problems with resp as an error roundguardd made: status in want
        (an int or a tuple of accepted ints), JSON {title, description}."""
        p = []
        wants = want if isinstance(want, tuple) else (want,)
        if resp is None:
            return ["no HTTP answer (want %s)" % "/".join(map(str, wants))]
        if resp.status not in wants:
            p.append("status %d, want %s" % (resp.status, "/".join(map(str, wants))))
        if resp.header("X-Backend-Server") is not None:
            p.append("the answer came from a backend (X-Backend-Server: %s)"
                     % resp.header("X-Backend-Server"))
        if resp.media_type() != "application/json":
            p.append("Content-Type %r, want application/json" % resp.header("Content-Type"))
        try:
            obj = json.loads(resp.body.decode("utf-8"))
        except ValueError:
            p.append("body is not JSON: %r" % resp.body[:200])
        else:
            if not (isinstance(obj, dict) and set(obj) == {"title", "description"}
                    and all(isinstance(v, str) and v.strip() for v in obj.values())):
                p.append("body is not {title, description}: %r" % resp.body[:200])
        return p

    def alive_problems(self):
        """The master and the same workers alive (no crash, no respawn) and a
        normal request answered 200 by the backend."""
        p = []
        if not rgtest.pid_alive(self.lb.pid):
            return ["the master (pid %d) is gone; stderr tail:\n%s"
                    % (self.lb.pid, self.lb.d.stderr_text()[-2000:])]
        now = sorted(self.lb.workers())
        if now != self.workers:
            p.append("workers changed from %r to %r (a crash or a respawn); stderr tail:\n%s"
                     % (self.workers, now, self.lb.d.stderr_text()[-2000:]))
            type(self).workers = now
        tag = uuid.uuid4().hex
        r = self.lb.attempt("GET", "/headers?after=" + tag, timeout=3)
        if isinstance(r, Exception) or r.status != 200 or r.header("X-Backend-Server") is None:
            p.append("a normal request afterwards failed: %r" % (r,))
        elif tlsmode.enabled() and forwarded_proto(r) != "https":
            p.append("TLS mode, but the backend got X-Forwarded-Proto %r (want https)"
                     % forwarded_proto(r))
        else:
            # Its log line must be read before the next case takes its mark.
            rgtest.wait_until(lambda: tag.encode() in self.backend.stdout_bytes(), timeout=2)
        return p

    def check_case(self, name, data, want, close=True, forward="none", **kw):
        """Send data; check status, JSON error body, close, what reached the
        backend, and the daemon afterwards. forward is "none" (not one byte of
        the request may reach the backend) or "incomplete" (the head may have
        been streamed before the fault was seen, but the backend must never get
        a complete request, and the connection to it must be closed)."""
        mark = backend_mark(self.backend)
        ex = exchange(self.lb.port, data, **kw)
        problems = self.error_json_problems(ex.resp if ex.complete else None, want)
        if ex.resp is not None and not ex.complete:
            problems.append("incomplete answer")
        if close and not ex.closed:
            problems.append("connection still open %.1f s after the answer"
                            % kw.get("close_wait", 1.0))
        rest = ex.raw.partition(b"\r\n\r\n")[2]
        if ex.complete and len(rest) > len(ex.resp.body):
            problems.append("bytes after the answer: %r" % rest[len(ex.resp.body):][:200])
        time.sleep(0.15)
        recs = forwarded(self.backend, mark)
        if forward == "none" and recs:
            problems.append("forwarded to the backend")
        elif forward == "incomplete":
            heads = [o for o in recs if o.get("event") is None]
            done = [o for o in recs if o.get("event") == "body"]
            cut = [o for o in recs if o.get("event") in ("truncated", "leftover")]
            if done:
                problems.append("a complete request body reached the backend")
            if heads and not cut and not done:
                wait = rgtest.wait_until(lambda: [o for o in forwarded(self.backend, mark)
                                                  if o.get("event") in ("truncated", "body")],
                                         timeout=1.5)
                recs = forwarded(self.backend, mark)
                if not wait:
                    problems.append("the request head reached the backend and its connection "
                                    "was left open (the request is neither complete nor cut)")
            if [o for o in recs if o.get("event") == "malformed"]:
                problems.append("a malformed head reached the backend")
        problems += self.alive_problems()
        if problems:
            self.fail("case %r:\n  problems: %s\n%s\n  backend received:\n    %s"
                      % (name, "\n            ".join(problems), ex.describe(),
                         fmt_records(recs)))
        return ex

    def run_cases(self, cases, **kw):
        for case in cases:
            name, data, want = case[:3]
            opts = dict(kw)
            if len(case) > 3:
                opts.update(case[3])
            with self.subTest(case=name):
                self.check_case(name, data, want, **opts)


def req(head_lines, body=b"", target=None):
    """Raw request bytes: head_lines (bytes, first the request line) joined by CRLF."""
    return b"\r\n".join(head_lines) + b"\r\n\r\n" + body


def mk(method=b"GET", extra=(), body=b"", tag=None):
    tag = (tag or uuid.uuid4().hex).encode()
    return req([method + b" /headers?id=" + tag + b" HTTP/1.1", b"Host: x"] + list(extra), body)


# ---------------------------------------------------------------------------
# 1. Malformed requests and limits
# ---------------------------------------------------------------------------

class MalformedRequestTests(AbuseTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_lb({"max_header_size": "4KiB", "max_body_size": "64KiB",
                      "client_timeout": "500ms", "timeout": "2s"}, workers=2)

    def test_malformed_request_lines_400(self):
        bad_version = (400, 505)       # RFC 9110 15.6.6 lets a server answer either
        self.run_cases([
            ("garbage", b"GARBAGE\r\n\r\n", 400),
            ("binary garbage (TLS hello)", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
             + bytes(range(32)) + b"\r\n\r\n", 400),
            ("missing version", b"GET /headers?id=nover\r\nHost: x\r\n\r\n", 400),
            ("HTTP/2.0 version", b"GET /headers?id=v2 HTTP/2.0\r\nHost: x\r\n\r\n", bad_version),
            ("HTTP/9.9 version", b"GET /headers?id=v99 HTTP/9.9\r\nHost: x\r\n\r\n", bad_version),
            ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", bad_version),
            ("lowercase version", b"GET /headers?id=lv http/1.1\r\nHost: x\r\n\r\n", 400),
            ("version with junk", b"GET /headers?id=vj HTTP/1.1x\r\nHost: x\r\n\r\n", 400),
            ("lowercase method", b"get /headers?id=lm HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("space in target", b"GET /headers?id=a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("tab in target", b"GET /headers?id=a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("NUL in target", b"GET /headers?id=a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("control byte in target", b"GET /headers?id=a\x01b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("DEL in target", b"GET /headers?id=a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("CR in target", b"GET /headers?id=a\rb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("LF in target", b"GET /headers?id=a\nb HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("empty method", b" /headers?id=em HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("HTTP/1.1 without Host", b"GET /headers?id=nohost HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
        ])

    def test_malformed_header_lines_400(self):
        self.run_cases([
            ("no colon", mk(extra=[b"NoColon"]), 400),
            ("space before colon (Host : x)",
             req([b"GET /headers?id=hsc HTTP/1.1", b"Host : x"]), 400),
            ("space before colon (X-A : 1)", mk(extra=[b"X-A : 1"]), 400),
            ("tab before colon", mk(extra=[b"X-A\t: 1"]), 400),
            ("empty header name", mk(extra=[b": value"]), 400),
            ("space inside name", mk(extra=[b"X A: 1"]), 400),
            ("separator in name", mk(extra=[b"X(A): 1"]), 400),
            ("non-ASCII name", mk(extra=[b"X-\xffA: 1"]), 400),
            ("NUL in value", mk(extra=[b"X-A: a\x00b"]), 400),
            ("NUL in name", mk(extra=[b"X-\x00A: 1"]), 400),
            ("bare CR in value", mk(extra=[b"X-A: a\rb"]), 400),
            ("bare CR ending a header line", mk(extra=[b"X-A: 1\rX-B: 2"]), 400),
            ("header line ending in CR CR LF", mk(extra=[b"X-A: 1\r"]), 400),
        ])

    def test_header_over_max_header_size_431(self):
        self.run_cases([
            ("one 8000-byte header", mk(extra=[b"X-Big: " + b"a" * 8000]), 431),
            ("many headers over 4KiB", mk(extra=[b"X-H%03d: %s" % (i, b"v" * 90)
                                                 for i in range(60)]), 431),
            ("target over 4KiB", b"GET /headers?id=" + b"t" * 6000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
             431),
            ("endless header, no line end", b"GET /headers?id=endless HTTP/1.1\r\nX-A: "
             + b"a" * 20000, 431),
        ])

    def test_too_many_headers_431_and_128_pass(self):
        # 128 header lines (Host and 127 more) are allowed ...
        tag = uuid.uuid4().hex
        mark = backend_mark(self.backend)
        data = mk(extra=[b"X-N%03d: 1" % i for i in range(127)], tag=tag)
        ex = exchange(self.lb.port, data, close_wait=0.1)
        self.assertTrue(ex.complete and ex.resp.status == 200,
                        "128 header lines were not served:\n" + ex.describe())
        self.assertEqual(len([o for o in forwarded(self.backend, mark) if o.get("event") is None]),
                         1, fmt_records(forwarded(self.backend, mark)))
        # ... 129 are not (well under the 4KiB size limit: counted, not measured).
        self.assertLess(len(mk(extra=[b"X-N%03d: 1" % i for i in range(128)])), MAX_HEADER)
        self.run_cases([
            ("129 header lines", mk(extra=[b"X-N%03d: 1" % i for i in range(128)]), 431),
            ("500 header lines", mk(extra=[b"X: %d" % i for i in range(500)]), 431),
        ])

    def test_body_over_max_body_size_413(self):
        chunk = b"c" * 16384
        # Chunked: every byte in one write, so the whole body is there at once. Over TLS
        # that is not so: roundguardd decrypts record by record and stops at one that is
        # not all in yet, and under load it was seen (in about 5 runs in 100 of this test
        # on a busy 2-CPU machine; never in plain) forwarding the head and the whole
        # records read so far (16278 or 49046 bytes of the body) before the rest came and
        # the 413 cut the backend connection: the streaming README.md describes for
        # chunked bodies (only a Content-Length promises a 413 before anything is sent).
        # So over TLS these two are held to test_body_over_max_body_size_413_streamed's
        # rule: no complete body reaches the backend and its connection is cut.
        streamed = {"forward": "incomplete"} if tlsmode.enabled() else {}
        self.run_cases([
            # Content-Length says so: answered before the body is sent, nothing forwarded.
            ("Content-Length 65537, no body sent",
             mk(b"POST", [b"Content-Length: 65537"]), 413),
            ("Content-Length 10 GB, no body sent",
             mk(b"POST", [b"Content-Length: 10000000000"]), 413),
            ("chunked 80 KiB in one write",
             mk(b"POST", [b"Transfer-Encoding: chunked"],
                b"".join(b"4000\r\n" + chunk + b"\r\n" for _ in range(5)) + b"0\r\n\r\n"), 413,
             streamed),
            ("one chunk announced over the limit",
             mk(b"POST", [b"Transfer-Encoding: chunked"],
                b"20000\r\n" + b"d" * 0x20000 + b"\r\n0\r\n\r\n"), 413, streamed),
        ])

    def test_body_over_max_body_size_413_streamed(self):
        """A chunked body that crosses the limit after the head went out: the
        head may have been streamed, the rest must not follow."""
        chunk = b"e" * 16384
        mark = backend_mark(self.backend)
        s = connect(self.lb.port)
        head = mk(b"POST", [b"Transfer-Encoding: chunked"])
        s.sendall(head)
        time.sleep(0.1)
        ex = Exchange()
        ex.sent = head
        try:
            for _ in range(5):
                piece = b"4000\r\n" + chunk + b"\r\n"
                s.sendall(piece)
                ex.sent += piece
                time.sleep(0.05)
        except OSError as e:
            ex.send_error = e
        more = exchange(self.lb.port, b"", sock=s)
        ex.raw, ex.resp, ex.complete, ex.closed = more.raw, more.resp, more.complete, more.closed
        ex.reset, ex.t_closed = more.reset, more.t_closed
        time.sleep(0.15)
        recs = forwarded(self.backend, mark)
        problems = self.error_json_problems(ex.resp if ex.complete else None, 413)
        if not ex.closed:
            problems.append("connection left open after the 413")
        if [o for o in recs if o.get("event") == "body"]:
            problems.append("the backend read a complete body")
        if [o for o in recs if o.get("event") is None] and \
                not rgtest.wait_until(lambda: [o for o in forwarded(self.backend, mark)
                                               if o.get("event") == "truncated"], 1.5):
            problems.append("the backend connection was not closed after the 413")
        problems += self.alive_problems()
        if problems:
            self.fail("streamed chunked body over the limit:\n  problems: %s\n%s\n"
                      "  backend received:\n    %s" % ("\n            ".join(problems),
                                                       ex.describe(), fmt_records(recs)))

    def test_body_shorter_than_content_length(self):
        self.run_cases([
            # The head may stream to the backend before the body is due; the
            # backend must never see a complete request.
            ("body short of Content-Length: 408 after client_timeout",
             mk(b"POST", [b"Content-Length: 100"], b"0123456789"), 408,
             {"forward": "incomplete", "answer_timeout": 3.0}),
            ("body short of Content-Length, then half-close: 400",
             mk(b"POST", [b"Content-Length: 100"], b"0123456789"), 400,
             {"forward": "incomplete", "shut_wr": True, "answer_timeout": 2.0}),
        ])

    def test_invalid_chunk_sizes_400(self):
        def chunked(body):
            return mk(b"POST", [b"Transfer-Encoding: chunked"], body)
        self.run_cases([
            ("chunk size zz", chunked(b"zz\r\nhello\r\n0\r\n\r\n"), 400),
            ("negative chunk size", chunked(b"-5\r\nhello\r\n0\r\n\r\n"), 400),
            ("chunk size 0x5", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
            ("overflowing chunk size (17 hex digits)",
             chunked(b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"), (400, 413)),
            ("overflowing chunk size (ffff...)", chunked(b"f" * 32 + b"\r\nhello\r\n0\r\n\r\n"),
             (400, 413)),
            ("empty chunk size", chunked(b"\r\nhello\r\n0\r\n\r\n"), 400),
            ("chunk size with space inside", chunked(b"1 0\r\n" + b"h" * 16 + b"\r\n0\r\n\r\n"), 400),
            ("chunk data longer than its size", chunked(b"3\r\nhello\r\n0\r\n\r\n"), 400),
            ("chunk size line with bare LF", chunked(b"5\nhello\r\n0\r\n\r\n"), 400),
            ("chunk data not followed by CRLF", chunked(b"5\r\nhelloXX0\r\n\r\n"), 400),
        ])

    def test_chunk_extension_abuse(self):
        def chunked(body):
            return mk(b"POST", [b"Transfer-Encoding: chunked"], body)
        self.run_cases([
            ("extension with bare LF", chunked(b"5;a=b\nhello\r\n0\r\n\r\n"), 400),
            ("extension with bare CR", chunked(b"5;a=b\rc\r\nhello\r\n0\r\n\r\n"), 400),
            ("extension with NUL", chunked(b"5;a=\x00\r\nhello\r\n0\r\n\r\n"), 400),
            ("extension name with space", chunked(b"5;a b=c\r\nhello\r\n0\r\n\r\n"), 400),
            ("unterminated quoted extension",
             chunked(b'5;a="b\r\nhello\r\n0\r\n\r\n'), 400),
            # An extension is framing, not data: 100 KiB of it must not be
            # streamed on (nor buffered without bound).
            ("100 KiB chunk extension", chunked(b"5;" + b"e" * 102400 + b"\r\nhello\r\n0\r\n\r\n"),
             (400, 413, 431)),
            ("100 KiB of chunk extensions on empty chunks... (last-chunk)",
             chunked(b"0" + b";a=b" * 25600 + b"\r\n\r\n"), (400, 413, 431)),
        ])

    def test_trailer_abuse(self):
        def chunked(body):
            return mk(b"POST", [b"Transfer-Encoding: chunked"], body)
        self.run_cases([
            ("trailer without colon", chunked(b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n"), 400),
            ("trailer with NUL", chunked(b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n"), 400),
            ("trailer with bare CR", chunked(b"5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n"), 400),
            ("trailers over max_header_size",
             chunked(b"5\r\nhello\r\n0\r\nX-T: " + b"t" * 8000 + b"\r\n\r\n"), (400, 431)),
        ])


# ---------------------------------------------------------------------------
# 2. Request smuggling
# ---------------------------------------------------------------------------

class SmugglingTests(AbuseTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_lb({"max_header_size": "4KiB", "max_body_size": "64KiB",
                      "client_timeout": "500ms", "timeout": "2s"}, workers=2)

    # A request a lenient reader would find in the body of the first one.
    SMUGGLED = b"GET /headers?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n"

    def post(self, extra, body=None):
        if body is None:
            body = b"0\r\n\r\n" + self.SMUGGLED
        return mk(b"POST", extra, body)

    def test_content_length_and_transfer_encoding(self):
        self.run_cases([
            ("CL then TE", self.post([b"Content-Length: 5", b"Transfer-Encoding: chunked"]), 400),
            ("TE then CL", self.post([b"Transfer-Encoding: chunked", b"Content-Length: 5"]), 400),
            ("TE then CL 0", self.post([b"Transfer-Encoding: chunked", b"Content-Length: 0"]), 400),
            ("CL with TE identity", self.post([b"Content-Length: 5",
                                               b"Transfer-Encoding: identity"]), 400),
        ])

    def test_duplicate_or_conflicting_content_length(self):
        self.run_cases([
            ("Content-Length 5 and 6",
             self.post([b"Content-Length: 5", b"Content-Length: 6"], b"hello!" + self.SMUGGLED), 400),
            ("Content-Length 5 twice",
             self.post([b"Content-Length: 5", b"Content-Length: 5"], b"hello" + self.SMUGGLED), 400),
            ("Content-Length: 5, 5", self.post([b"Content-Length: 5, 5"], b"hello"), 400),
            ("Content-Length: 5, 6", self.post([b"Content-Length: 5, 6"], b"hello!"), 400),
            ("Content-Length: +5", self.post([b"Content-Length: +5"], b"hello"), 400),
            ("Content-Length: -1", self.post([b"Content-Length: -1"], b"hello"), 400),
            ("Content-Length: 0x5", self.post([b"Content-Length: 0x5"], b"hello"), 400),
            ("Content-Length: 5 5", self.post([b"Content-Length: 5 5"], b"hello"), 400),
            ("Content-Length: abc", self.post([b"Content-Length: abc"], b"hello"), 400),
            ("empty Content-Length", self.post([b"Content-Length:"], b"hello"), 400),
            ("Content-Length overflowing 64 bits",
             self.post([b"Content-Length: 99999999999999999999999"], b"hello"), (400, 413)),
        ])

    def test_transfer_encoding_other_than_chunked(self):
        body = b"5\r\nhello\r\n0\r\n\r\n" + self.SMUGGLED
        cases = [
            ("TE: chunked, identity", [b"Transfer-Encoding: chunked, identity"]),
            ("TE: xchunked", [b"Transfer-Encoding: xchunked"]),
            ("TE: chunkedx", [b"Transfer-Encoding: chunkedx"]),
            ("TE: gzip", [b"Transfer-Encoding: gzip"]),
            ("TE: identity", [b"Transfer-Encoding: identity"]),
            ("TE: gzip, chunked", [b"Transfer-Encoding: gzip, chunked"]),
            ("TE: chunked, chunked", [b"Transfer-Encoding: chunked, chunked"]),
            ("TE twice: chunked and chunked",
             [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"]),
            ("TE twice: gzip and chunked", [b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"]),
            ("TE: chunked;q=1", [b"Transfer-Encoding: chunked;q=1"]),
            ("TE with vertical tab", [b"Transfer-Encoding:\x0bchunked"]),
            ("TE with form feed", [b"Transfer-Encoding: \x0cchunked"]),
            ("TE: empty", [b"Transfer-Encoding:"]),
            ("space before colon (Transfer-Encoding : chunked)", [b"Transfer-Encoding : chunked"]),
            ("TE name with trailing tab", [b"Transfer-Encoding\t: chunked"]),
            ("TE in obs-fold", [b"Transfer-Encoding: identity", b" chunked"]),
            ("TE value on a folded line", [b"Transfer-Encoding:", b" chunked"]),
        ]
        self.run_cases([(name, self.post(extra, body), 400) for name, extra in cases])

    def test_obs_fold_and_line_ends(self):
        t = uuid.uuid4().hex.encode()
        self.run_cases([
            ("obs-fold with space", mk(extra=[b"X-A: 1", b"  folded", b"X-B: 2"]), 400),
            ("obs-fold with tab", mk(extra=[b"X-A: 1", b"\tfolded"]), 400),
            ("bare LF line ends everywhere",
             b"GET /headers?id=" + t + b" HTTP/1.1\nHost: x\nX-A: 1\n\n", 400),
            ("bare LF after the request line",
             b"GET /headers?id=" + t + b" HTTP/1.1\nHost: x\r\n\r\n", 400),
            ("bare LF ending one header", mk(extra=[b"X-A: 1\nX-B: 2"]), 400),
            ("bare LF ending the head", mk(extra=[b"X-A: 1"])[:-2] + b"\n", 400),
            ("LF inside a value hiding Transfer-Encoding",
             self.post([b"Content-Length: 5", b"X-A: a\nTransfer-Encoding: chunked"],
                       b"hello"), 400),
            ("CR inside a value hiding Transfer-Encoding",
             self.post([b"Content-Length: 5", b"X-A: a\rTransfer-Encoding: chunked"],
                       b"hello"), 400),
            ("CR inside a value hiding Content-Length",
             mk(b"POST", [b"Transfer-Encoding: chunked", b"X-A: a\rContent-Length: 40"],
                b"0\r\n\r\n"), 400),
            ("whitespace line before the first header",
             req([b"GET /headers?id=" + t + b" HTTP/1.1", b" X-A: 1", b"Host: x"]), 400),
        ])

    def test_two_host_headers(self):
        self.run_cases([
            ("Host twice, different", mk(extra=[b"Host: evil.example"]), 400),
            ("Host twice, same", mk(extra=[b"Host: x"]), 400),
            ("Host and host", mk(extra=[b"host: y"]), 400),
            ("Host twice, second empty", mk(extra=[b"Host:"]), 400),
        ])

    def test_pipelined_smuggle_after_valid_request_not_desynced(self):
        """A valid request followed on the same connection by a smuggling
        shape: the first is served, the second refused with 400 and the
        connection closed; the backend sees only the first."""
        tag = uuid.uuid4().hex
        first = mk(tag=tag)
        second = self.post([b"Content-Length: 5", b"Transfer-Encoding: chunked"])
        mark = backend_mark(self.backend)
        ex = exchange(self.lb.port, first + second, answer_timeout=3.0, close_wait=1.0)
        time.sleep(0.15)
        recs = forwarded(self.backend, mark)
        problems = []
        r1, done = ex.resp, ex.complete
        if not done or r1.status != 200:
            problems.append("the valid first request was not answered 200")
        else:
            rest = ex.raw.partition(b"\r\n\r\n")[2][len(r1.body):]
            r2, ok = parse_response(rest)
            problems += self.error_json_problems(r2 if ok else None, 400)
        if not ex.closed:
            problems.append("connection still open after the 400")
        targets = [o.get("target") for o in recs if o.get("event") is None]
        if targets != ["/headers?id=" + tag]:
            problems.append("the backend got heads %r, want only the first" % targets)
        problems += self.alive_problems()
        if problems:
            self.fail("pipelined smuggle:\n  problems: %s\n%s\n  backend received:\n    %s"
                      % ("\n            ".join(problems), ex.describe(), fmt_records(recs)))


# ---------------------------------------------------------------------------
# 3. Broken response heads from a backend
# ---------------------------------------------------------------------------

class BadBackendResponseTests(AbuseTestCase):

    @classmethod
    def setUpClass(cls):
        cls.start_lb({"timeout": "2s"}, workers=1)

    def test_bad_header_bytes_from_backend_502(self):
        """CR, LF or NUL inside a response header value (or the reason
        phrase): 502, and none of the broken head reaches the client. For the
        two shapes RFC 9112 lets a proxy repair instead (obs-fold replaced by
        SP, 5.2; whitespace before the colon removed, 5.1) a repaired 200 is
        accepted too."""
        repaired = {
            "fold": lambda raw: b"\r\nX-Bad: evil X-Injected: fold\r\n" in raw
            or b"\r\nX-Bad: evil  X-Injected: fold\r\n" in raw,
            "name-space": lambda raw: b"\r\nX-Bad: evil\r\n" in raw and b"X-Bad :" not in raw,
        }
        for kind in ("cr", "lf", "nul", "fold", "reason-cr", "name-space"):
            with self.subTest(kind=kind):
                data = rgtest.build_request("GET", "/badhead?kind=" + kind)
                ex = exchange(self.lb.port, data, answer_timeout=3.0, close_wait=0.3)
                if ex.complete and ex.resp.status == 200 and kind in repaired \
                        and repaired[kind](ex.raw):
                    problems = []
                else:
                    problems = self.error_json_problems(ex.resp if ex.complete else None, 502)
                    for bad in (b"evil", b"X-Injected", b"\x00"):
                        if bad in ex.raw:
                            problems.append("%r reached the client" % bad)
                if b"\r" in ex.raw.replace(b"\r\n", b""):
                    problems.append("a bare CR reached the client")
                if b"\n" in ex.raw.replace(b"\r\n", b""):
                    problems.append("a bare LF reached the client")
                problems += self.alive_problems()
                if problems:
                    self.fail("backend head %r:\n  problems: %s\n%s"
                              % (kind, "\n            ".join(problems), ex.describe()))


# ---------------------------------------------------------------------------
# 4. Slow clients
# ---------------------------------------------------------------------------

class Prober(threading.Thread):
    """Normal GET requests on new connections every `pause` seconds; records
    (latency, Response or exception)."""

    def __init__(self, lb, pause=0.05):
        super().__init__(daemon=True)
        self.lb = lb
        self.pause = pause
        self.results = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            t = time.monotonic()
            r = self.lb.attempt("GET", "/headers?probe=1", timeout=3)
            self.results.append((time.monotonic() - t, r))
            self.halt.wait(self.pause)

    def finish(self):
        self.halt.set()
        self.join(10)

    def problems(self, max_latency):
        p = []
        bad = [r for _, r in self.results
               if isinstance(r, Exception) or r.status != 200 or r.header("X-Backend-Server") is None]
        if not self.results:
            p.append("no normal request completed meanwhile")
        if bad:
            p.append("%d of %d normal requests failed meanwhile: %r"
                     % (len(bad), len(self.results), bad[:3]))
        lat = [t for t, _ in self.results]
        if lat and max(lat) > max_latency:
            p.append("normal request latency up to %.3f s meanwhile (median %.3f s), want < %.1f s"
                     % (max(lat), statistics.median(lat), max_latency))
        return p


class SlowClientTests(AbuseTestCase):
    TIMEOUT = 1.0

    @classmethod
    def setUpClass(cls):
        # One worker: the slow clients and the normal ones share its event loop.
        cls.start_lb({"client_timeout": "1s", "timeout": "2s"}, workers=1)

    def drip_all(self, n, data, after=b""):
        """n connections dripping data (after `after` sent at once), a byte every 200 ms for
        at most 4 s, while a prober checks that normal requests are still served. Returns
        the drip results and the prober."""
        results = [None] * n
        prober = Prober(self.lb)

        def one(i):
            results[i] = drip(self.lb.port, data, 0.2, max_time=4.0, after=after)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        prober.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        prober.finish()
        return results, prober

    def timeout_problems(self, results, label, part):
        """Each dripping connection must get the JSON 408 about client_timeout after its
        start, and be closed."""
        problems = []
        for i, ex in enumerate(results):
            p = self.error_json_problems(ex.resp if ex.complete else None, 408)
            if ex.complete and not (0.7 * self.TIMEOUT <= ex.t_answer <= self.TIMEOUT + 1.0):
                p.append("answered after %.2f s, want about client_timeout (%.1f s)"
                         % (ex.t_answer, self.TIMEOUT))
            if not ex.closed:
                p.append("not closed (%d %s bytes dripped in %.0f s)" % (ex.bytes_sent, part, 4.0))
            if p:
                problems.append("%s connection %d: %s\n%s"
                                % (label, i, "; ".join(p), ex.describe(200)))
        return problems

    def test_slowloris_head_408_while_others_served(self):
        n = 8
        head = (b"GET /headers?slowloris=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n"
                b"X-Padding: " + b"p" * 200 + b"\r\n\r\n")
        mark = backend_mark(self.backend)
        results, prober = self.drip_all(n, head)
        time.sleep(0.1)
        problems = self.timeout_problems(results, "slowloris", "head")
        problems += prober.problems(max_latency=0.5)
        recs = [o for o in forwarded(self.backend, mark) if "probe=1" not in o.get("target", "")]
        if recs:
            problems.append("slowloris heads reached the backend:\n    " + fmt_records(recs))
        problems += self.alive_problems()
        if problems:
            self.fail("slowloris (a head byte every 200 ms, client_timeout 1s):\n"
                      + "\n".join(problems))

    def test_slow_body_408_while_others_served(self):
        n = 4
        tag = uuid.uuid4().hex.encode()
        head = (b"POST /count?slowbody=" + tag + b" HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 200\r\n\r\n")
        mark = backend_mark(self.backend)
        results, prober = self.drip_all(n, b"b" * 200, after=head)
        time.sleep(0.2)
        problems = self.timeout_problems(results, "slow body", "body")
        problems += prober.problems(max_latency=0.5)
        recs = [o for o in forwarded(self.backend, mark)
                if "probe=1" not in (o.get("target") or o.get("body_target") or "")]
        # The head streams to the backend before the body (by design); the
        # body must never arrive whole, and each backend connection must be cut.
        if [o for o in recs if o.get("event") == "body"]:
            problems.append("a slow body reached the backend whole")
        heads = len([o for o in recs if o.get("event") is None])
        cut = len([o for o in recs if o.get("event") == "truncated"])
        if cut < heads:
            problems.append("%d slow-body heads reached the backend but only %d backend "
                            "connections were cut" % (heads, cut))
        problems += self.alive_problems()
        if problems:
            self.fail("slow body (a byte every 200 ms, client_timeout 1s):\n" + "\n".join(problems)
                      + "\n  backend received:\n    " + fmt_records(recs))


class IdleConnectionTests(AbuseTestCase):
    TIMEOUT = 5.0
    # Over TLS: 2,000 handshakes take seconds (5.5 s one after the other on a busy 2-CPU
    # machine, without sanitizers), and the connections must all be open and the normal
    # requests served well within client_timeout for the measure to be valid.
    TLS_TIMEOUT = 20.0
    TLS_OPENERS = 8

    @classmethod
    def setUpClass(cls):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < IDLE_CONNECTIONS + 200:
            raise AssertionError("RLIMIT_NOFILE soft limit %d: cannot open %d connections"
                                 % (soft, IDLE_CONNECTIONS))
        if tlsmode.enabled():
            cls.TIMEOUT = cls.TLS_TIMEOUT
        cls.start_lb({"client_timeout": "%gs" % cls.TIMEOUT, "timeout": "2s"}, workers=2)

    def open_idle(self, socks):
        """IDLE_CONNECTIONS connections to the LB, nothing sent (over TLS: the
        handshake done, several at a time)."""
        def one(i):
            try:
                return connect(self.lb.port)
            except OSError as e:
                raise AssertionError("idle connection %d could not be opened: %r" % (i, e))
        if not tlsmode.enabled():
            for i in range(IDLE_CONNECTIONS):
                socks.append(one(i))
            return
        with concurrent.futures.ThreadPoolExecutor(self.TLS_OPENERS) as pool:
            futures = [pool.submit(one, i) for i in range(IDLE_CONNECTIONS)]
            for f in futures:
                if f.exception() is None:
                    socks.append(f.result())
            for f in futures:
                if f.exception() is not None:
                    raise f.exception()

    def test_2000_idle_connections_do_not_stop_service(self):
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        t0 = time.monotonic()
        self.open_idle(socks)
        t_open = time.monotonic() - t0
        # Give the workers a moment to accept them all, then count.
        fds = rgtest.wait_until(lambda: sum(fd_count(p) or 0 for p in self.workers)
                                >= IDLE_CONNECTIONS, timeout=2.0)
        accepted = sum(fd_count(p) or 0 for p in self.workers)
        # Normal requests, new connections and one keep-alive connection.
        lat, bad = [], []
        for i in range(40):
            t = time.monotonic()
            r = self.lb.attempt("GET", "/headers?idle=%d" % i, timeout=3)
            lat.append(time.monotonic() - t)
            if isinstance(r, Exception) or r.status != 200:
                bad.append(r)
        with self.lb.raw(timeout=3) as c:
            for i in range(20):
                t = time.monotonic()
                c.request("GET", "/headers?idle-ka=%d" % i)
                try:
                    r = c.read_response()
                except (OSError, rgtest.ConnectionClosed, ValueError) as e:
                    r = e
                lat.append(time.monotonic() - t)
                if isinstance(r, Exception) or r.status != 200:
                    bad.append(r)
                    break
        t_served = time.monotonic() - t0
        problems = []
        if bad:
            problems.append("%d normal requests failed with %d idle connections open: %r"
                            % (len(bad), IDLE_CONNECTIONS, bad[:3]))
        if lat and (max(lat) > 1.0 or statistics.median(lat) > 0.1):
            problems.append("normal request latency median %.3f s, max %.3f s with %d idle "
                            "connections open (want median < 0.1 s, max < 1 s)"
                            % (statistics.median(lat), max(lat), IDLE_CONNECTIONS))
        if t_served > self.TIMEOUT - 0.5:
            problems.append("opening the idle connections and serving took %.1f s, longer than "
                            "client_timeout: the measure is not valid" % t_served)
        # The idle connections are closed by the daemon after client_timeout
        # (silently or with a 408; nothing else may come back).
        sel = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        closed, answered, other = 0, 0, []
        # The last one was opened at t0 + t_open.
        deadline = t0 + t_open + self.TIMEOUT + 3.0
        pending = set(socks)
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(0.2):
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue        # over TLS: records without data (session tickets)
                except ConnectionResetError:
                    data = b""
                if data:
                    if data.startswith(b"HTTP/1.1 408 "):
                        answered += 1
                    else:
                        other.append(data[:100])
                else:
                    closed += 1
                sel.unregister(s)
                pending.discard(s)
        sel.close()
        if pending:
            problems.append("%d of %d idle connections still open %.0f s after client_timeout "
                            "(%.0f s)" % (len(pending), IDLE_CONNECTIONS, 3.0, self.TIMEOUT))
        if other:
            problems.append("idle connections got something other than a close or a 408: %r"
                            % other[:3])
        problems += self.alive_problems()
        sys.stderr.write("\n  [idle, %s] %d connections opened in %.2f s; workers hold %d fds; "
                         "latency median %.4f s max %.4f s; %d closed silently, %d got 408\n"
                         % (tlsmode.label(), IDLE_CONNECTIONS, t_open, accepted,
                            statistics.median(lat), max(lat),
                            closed, answered))
        if problems:
            self.fail("2000 idle connections:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------
# 5. File-descriptor exhaustion
# ---------------------------------------------------------------------------

def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_NOFILE, LOW_NOFILE))


class FdExhaustionTests(AbuseTestCase):

    @classmethod
    def setUpClass(cls):
        cls.backend = lbt.py_backend(cls.addClassCleanup)
        # keepalive 0: every request needs a new descriptor for the backend.
        cfg = lbt.make_config([lbt.url(cls.backend)], health=CALM,
                              proxy={"client_timeout": "30s", "timeout": "2s", "keepalive": 0})
        cls.lb = tlsmode.LB(cls.addClassCleanup, cfg, workers=1)
        cls.lb.d.preexec_fn = low_nofile
        cls.lb.start()
        cls.workers = worker_pids(cls.lb, 1)

    def fill(self, held, worker):
        """Open idle connections one at a time until the worker holds LOW_NOFILE
        descriptors (the next connection can only wait in the backlog)."""
        for _ in range(LOW_NOFILE + 10):
            before = fd_count(worker)
            if before is None or before >= LOW_NOFILE:
                break
            held.append(connect(self.lb.port))
            rgtest.wait_until(lambda: (fd_count(worker) or 0) > before, timeout=0.5, interval=0.005)
        return fd_count(worker)

    def test_descriptor_exhaustion_survived_and_recovered(self):
        w = self.workers[0] if len(self.workers) == 1 else None
        self.assertIsNotNone(w, "want one worker, have %r" % self.workers)
        with open("/proc/%d/limits" % w) as f:
            lim = [line for line in f if line.startswith("Max open files")]
        self.assertIn(" %d " % LOW_NOFILE, lim[0], lim)
        checker = self.lb.checkers()
        problems = []
        r = self.lb.attempt("GET", "/headers?before=1", timeout=3)
        if isinstance(r, Exception) or r.status != 200:
            problems.append("not serving before the test: %r" % (r,))

        # A. Fill the worker's descriptor table with idle client connections.
        held, extra = [], []
        self.addCleanup(lambda: [s.close() for s in held + extra])
        n = self.fill(held, w)
        if n is None or n < LOW_NOFILE:
            problems.append("could not fill the worker's descriptors (%r of %d with %d connections)"
                            % (n, LOW_NOFILE, len(held)))
        # B. More connections than that: they wait in the backlog. One of them
        # is a normal request, which must be served once descriptors free up.
        mark = self.lb.d.stderr_mark()
        for _ in range(100):
            # Over TLS no handshake: the worker cannot accept them yet.
            extra.append(connect(self.lb.port, handshake=False))
        waiting = {}

        def normal():
            t = time.monotonic()
            waiting["r"] = self.lb.attempt("GET", "/headers?queued=1", timeout=10)
            waiting["t"] = time.monotonic()
        th = threading.Thread(target=normal, daemon=True)
        cpu0 = cpu_seconds(w)
        th.start()
        time.sleep(1.0)
        cpu1 = cpu_seconds(w)
        if not rgtest.pid_alive(self.lb.pid) or sorted(self.lb.workers()) != self.workers \
                or self.lb.checkers() != checker:
            problems.append("processes changed while out of descriptors: master alive %s, "
                            "workers %r -> %r, checker %r -> %r"
                            % (rgtest.pid_alive(self.lb.pid), self.workers,
                               sorted(self.lb.workers()), checker, self.lb.checkers()))
        if cpu0 is not None and cpu1 is not None and cpu1 - cpu0 > 0.5:
            problems.append("the worker used %.2f s of CPU in 1 s while out of descriptors "
                            "(a busy loop?)" % (cpu1 - cpu0))
        early = dict(waiting)
        # C. Free the descriptors: the waiting request is served.
        t_free = time.monotonic()
        for s in held + extra:
            s.close()
        held.clear()
        extra.clear()
        th.join(12)
        r = waiting.get("r")
        if "r" in early:
            problems.append("the request sent while out of descriptors ended before they were "
                            "freed: %r (want it to wait)" % (early["r"],))
        elif isinstance(r, Exception) or r is None or r.status != 200:
            problems.append("the request that waited was not served after the descriptors were "
                            "freed: %r" % (r,))
        elif waiting["t"] - t_free > 3.0:
            problems.append("the request that waited was served %.1f s after the descriptors "
                            "were freed" % (waiting["t"] - t_free))
        rs = [self.lb.attempt("GET", "/headers?after-free=%d" % i, timeout=3) for i in range(10)]
        bad = [r for r in rs if isinstance(r, Exception) or r.status != 200]
        if bad:
            problems.append("%d of 10 requests failed after recovery: %r" % (len(bad), bad[:3]))
        warn = [o for o in rgtest.json_log_objects("\n".join(self.lb.d.stderr_lines()[mark:]))
                if o.get("level") in ("warn", "error")]

        # D. One descriptor left: the client is accepted but the backend
        # connection cannot be made. The client gets an error (not a hang), and
        # the backend is not taken out of the rotation for it.
        n = self.fill(held, w)
        edge = "skipped (could not fill: %r)" % n
        if n == LOW_NOFILE:
            held.pop().close()
            rgtest.wait_until(lambda: (fd_count(w) or LOW_NOFILE) < LOW_NOFILE, timeout=2)
            ex = exchange(self.lb.port, rgtest.build_request("GET", "/headers?edge=1"),
                          answer_timeout=3.0, close_wait=0.3)
            edge = ex.describe(300)
            if not ex.complete and not ex.closed:
                problems.append("with one descriptor left, a request hung (no answer, no close "
                                "within 3 s):\n" + edge)
            elif ex.complete and ex.resp.status != 200:
                p = self.error_json_problems(ex.resp, (502, 503))
                if p:
                    problems.append("with one descriptor left: %s\n%s" % ("; ".join(p), edge))
            for s in held:
                s.close()
            held.clear()
            rgtest.wait_until(lambda: (fd_count(w) or LOW_NOFILE) < LOW_NOFILE - 10, timeout=2)
            r = self.lb.attempt("GET", "/headers?after-edge=1", timeout=3)
            if isinstance(r, Exception) or r.status != 200:
                problems.append("right after descriptors freed up again, a request got %r "
                                "(was the backend marked down because the worker ran out of "
                                "descriptors?)" % (r,))
        problems += self.alive_problems()
        sys.stderr.write("\n  [fd] worker filled at %s fds; queued request: %r after %.2f s; "
                         "worker CPU while starved %.2f s/s; %d warn/error log lines while "
                         "starved (%r); one-fd-left request:\n%s\n"
                         % (n, waiting.get("r"), (waiting.get("t") or t_free) - t_free,
                            (cpu1 or 0) - (cpu0 or 0), len(warn),
                            sorted({o.get("msg") for o in warn}), edge))
        if problems:
            self.fail("descriptor exhaustion (RLIMIT_NOFILE %d, 1 worker):\n  %s"
                      % (LOW_NOFILE, "\n  ".join(problems)))


if __name__ == "__main__":
    tlsmode.take_flag(sys.argv)
    unittest.main()

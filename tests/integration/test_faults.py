#!/usr/bin/env python3
"""Faults under load: integration suite `faults` (issue 7; real daemons on loopback).

Run:
  ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
      python3 tests/integration/test_faults.py -v

Every scenario runs a steady load through roundguardd (2 workers): 16 client
threads, each on one keep-alive connection, alternating `GET /live?rid=ID` and
`POST /reflect?rid=ID` with a JSON body unique to the request, 1 ms apart
(FAULTS_PAUSE), so that keep-alive connections are idle most of the time as
real clients' are; every answer is checked (200, empty body for GET, exactly the bytes sent for POST). The rid in
the query string names each request, so that the access log (which worker) and
the fault stubs (which request reached them) can be matched with what the
client saw.

Each request ends as exactly one kind:
  ok                   200 with the right body
  status_N             any other status (502, 503, 504, ...)
  bad_body             200 with a body other than the one expected
  refused              connect() to roundguardd refused (ECONNREFUSED)
  connect_reset        the connection was reset before connect() returned (it was
                       queued on a listening socket that then closed)
  connect_error        connect() failed otherwise (timeout, reset, ...)
  send_error           the request could not be written
  lost                 the connection ended (EOF or RST) before any byte of the answer
  cut                  the connection ended in the middle of the answer
  timeout              no complete answer within the client's timeout (10 s)
  protocol             the answer could not be parsed
Before reusing a keep-alive connection a client checks whether roundguardd has
closed it meanwhile (as browsers and HTTP libraries do) and then reconnects;
such reconnects are counted, not failures.

The fault stubs (backends that stall, answer slowly, drop the request, break
off in the head or in the body) live in this file too: `python3
test_faults.py --stub MODE PORT [MS]` (see stub_main). They answer the health
probes (requests without X-Forwarded-For) normally unless the mode says
otherwise, and write one JSON line per proxied request to stdout.

At the end the run prints a table: scenario, requests sent, failures by kind,
what was expected.
"""

import collections
import json
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import unittest
from datetime import datetime, timezone

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# The stub backends run this file as a script: keep their start-up light.
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--stub":
    rgtest = lbt = None
else:
    import rgtest  # noqa: E402
    import test_lb as lbt  # noqa: E402

THIS_FILE = os.path.abspath(__file__)
HOST = "127.0.0.1"
CLIENTS = 16                  # keep-alive client threads per scenario
CLIENT_TIMEOUT = 10.0         # bounded wait for any answer
# Think time between a client's requests: keep-alive connections are idle most
# of the time, as real clients' are, and the load stays modest.
PAUSE = float(os.environ.get("FAULTS_PAUSE", "0.001"))
PROXY_TIMEOUT = 0.5           # proxy.timeout in the scenarios that use it
SHUTDOWN_TIMEOUT = 3.0        # proxy.shutdown_timeout for the SIGTERM scenario
FAST = {"interval": "200ms", "timeout": "100ms"}
INTERVAL, CHECK_TIMEOUT = 0.2, 0.1
DETECT = INTERVAL + CHECK_TIMEOUT + 1.5     # generous bound for a transition to be logged

SUMMARY = []                  # rows of the closing table


# ---------------------------------------------------------------------------
# Fault stubs (run as separate processes)
# ---------------------------------------------------------------------------

def stub_main(argv):
    """MODE PORT [MS]. Modes (for proxied requests; probes get 200 unless said):
      echo-then-stall  a small echo (GET */live -> 200, POST -> the body back) until
                       SIGUSR1; from then on every request, probes included, is
                       read and never answered
      slow             answers after MS milliseconds
      drop             reads the request and closes the connection without a byte
      halfhead         sends part of a response head, then closes
      cutbody          sends a 200 head with Content-Length 4096 and 100 bytes of
                       body, then resets the connection
    """
    mode, port = argv[0], int(argv[1])
    ms = int(argv[2]) if len(argv) > 2 else 0
    state = {"stall": False}
    out_lock = threading.Lock()

    def on_usr1(signum, frame):
        state["stall"] = True
    signal.signal(signal.SIGUSR1, on_usr1)

    def log(obj):
        with out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def serve(sock):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = sock.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3:
                    return
                method, target = parts[0], parts[1]
                hdrs = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                n = int(hdrs.get("content-length") or 0)
                while len(buf) < n:
                    d = sock.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:n], buf[n:]
                proxied = "x-forwarded-for" in hdrs
                close = "close" in hdrs.get("connection", "").lower()
                if mode == "echo-then-stall":
                    action = "stalled" if state["stall"] else "served"
                elif proxied:
                    action = mode
                else:
                    action = "probe"
                if proxied:
                    log({"t": time.time(), "method": method, "target": target, "action": action})
                if action == "stalled":
                    while sock.recv(65536):       # read, never write
                        pass
                    return
                if action == "slow":
                    time.sleep(ms / 1000.0)
                elif action == "drop":
                    return
                elif action == "halfhead":
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
                    time.sleep(0.02)
                    return
                elif action == "cutbody":
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 4096\r\n\r\n" + b"x" * 100)
                    time.sleep(0.05)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))     # close() sends RST
                    return
                if method == "POST":
                    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                else:
                    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                sock.sendall(resp)
                if close:
                    return
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind((HOST, port))
    except OSError as e:
        sys.stderr.write("stub: cannot listen on %s:%d: %s (address in use?)\n" % (HOST, port, e))
        return 1
    srv.listen(512)
    sys.stderr.write("stub %s listening on %s:%d\n" % (mode, HOST, port))
    sys.stderr.flush()
    while True:
        s, _ = srv.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(s,), daemon=True).start()


# ---------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------

class Outcome:
    __slots__ = ("cid", "conn", "rid", "method", "t0", "t_conn", "t_req", "t1", "kind",
                 "status", "backend", "reused", "detail")

    def __init__(self, cid, conn, rid, method, t0):
        self.cid, self.conn, self.rid, self.method, self.t0 = cid, conn, rid, method, t0
        self.t_conn = None      # when the connection it went on was established
        self.t_req = None       # when the first byte of the request was written
        self.t1 = None
        self.kind = None
        self.status = None
        self.backend = None
        self.reused = False
        self.detail = ""

    @property
    def duration(self):
        return self.t1 - self.t0

    def __repr__(self):
        return ("<%s %s rid=%s kind=%s status=%s backend=%s reused=%s t0=%.3f dur=%.3f %s>"
                % (self.method, "conn%d.%d" % (self.cid, self.conn), self.rid, self.kind,
                   self.status, self.backend, self.reused, self.t0,
                   (self.t1 or self.t0) - self.t0, self.detail))


def mixed_requests(tag):
    """GET /live and POST /reflect in turn, each with its rid and a unique JSON body."""
    def gen(cid, seq):
        rid = "%s-c%02d-%06d" % (tag, cid, seq)
        if seq % 2 == 0:
            return "GET", "/live?rid=" + rid, None, b"", rid
        body = json.dumps({"rid": rid, "n": seq, "pad": "p" * (seq % 37)}).encode()
        return "POST", "/reflect?rid=" + rid, body, body, rid
    return gen


def slow_upload_requests(tag, size=24 * 1024):
    def gen(cid, seq):
        rid = "%s-u%02d-%06d" % (tag, cid, seq)
        body = json.dumps({"rid": rid, "pad": "u" * size}).encode()
        return "POST", "/reflect?rid=" + rid, body, body, rid
    return gen


class Client(threading.Thread):
    """One client: requests from gen(cid, seq) one after the other until halted,
    on one keep-alive connection (a new one after a close or a failure), or on a
    new connection each time (keepalive=False). pieces > 1 sends the body in that
    many parts, `gap` seconds apart (a slow upload)."""

    def __init__(self, port, cid, gen, keepalive=True, pieces=1, gap=0.0):
        super().__init__(daemon=True)
        self.port = port
        self.cid = cid
        self.gen = gen
        self.keepalive = keepalive
        self.pieces = pieces
        self.gap = gap
        self.results = []
        self.stale_reconnects = 0
        self.halt = threading.Event()
        self.sock = None
        self.sock_t = None
        self.conn_seq = 0

    def run(self):
        seq = 0
        try:
            while not self.halt.is_set():
                o = self.one(*self.gen(self.cid, seq))
                seq += 1
                self.results.append(o)
                if o.kind in ("refused", "connect_reset", "connect_error"):
                    self.halt.wait(0.02)
                elif PAUSE:
                    time.sleep(PAUSE)
        finally:
            self._close()

    def _close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _stale(self):
        """True if roundguardd closed (or reset) the idle connection, or sent
        something unasked."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)      # EOF, a reset, or unexpected bytes

    def one(self, method, target, body, expect, rid):
        o = Outcome(self.cid, self.conn_seq, rid, method, time.time())
        head = "%s %s HTTP/1.1\r\nHost: faults.test\r\n" % (method, target)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        if not self.keepalive:
            head += "Connection: close\r\n"
        data = head.encode() + b"\r\n"
        whole = data + (body or b"") if self.pieces <= 1 or not body else None
        # The request is ready: the check for a connection closed meanwhile
        # comes right before the send, as close to it as a client can get.
        if self.sock is not None and self._stale():
            self.stale_reconnects += 1
            self._close()
        o.reused = self.sock is not None
        if self.sock is None:
            try:
                s = socket.create_connection((HOST, self.port), timeout=3.0)
            except ConnectionRefusedError as e:
                return self._end(o, "refused", str(e))
            except ConnectionResetError as e:
                return self._end(o, "connect_reset", str(e))
            except OSError as e:
                return self._end(o, "connect_error", repr(e))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.settimeout(CLIENT_TIMEOUT)
            self.sock = s
            self.sock_t = time.time()
            self.conn_seq += 1
            o.conn = self.conn_seq
        o.t_conn = self.sock_t
        try:
            o.t_req = time.time()
            if whole is not None:
                self.sock.sendall(whole)
            else:
                self.sock.sendall(data)
                step = -(-len(body) // self.pieces)
                for i in range(0, len(body), step):
                    time.sleep(self.gap)
                    self.sock.sendall(body[i:i + step])
        except OSError as e:
            self._close()
            return self._end(o, "send_error", repr(e))
        try:
            kind, status, headers, rbody, detail = self._read_response()
        except socket.timeout:
            self._close()
            return self._end(o, "timeout", "no complete answer in %.0f s" % CLIENT_TIMEOUT)
        o.status = status
        if headers is not None:
            o.backend = headers.get("x-backend-server")
        if kind != "ok":
            self._close()
            return self._end(o, kind, detail)
        conn_hdr = headers.get("connection", "").lower()
        if not self.keepalive or "close" in conn_hdr:
            self._close()
        if status != 200:
            return self._end(o, "status_%d" % status, rbody[:200].decode("latin-1"))
        if rbody != expect:
            return self._end(o, "bad_body", "got %r" % rbody[:200])
        return self._end(o, "ok")

    def _end(self, o, kind, detail=""):
        o.t1 = time.time()
        o.kind = kind
        o.detail = detail
        return o

    def _read_response(self):
        """(kind, status, headers, body, detail); kind is ok, lost, cut or protocol."""
        buf = b""
        got = 0

        def more():
            nonlocal buf, got
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError) as e:
                raise _Ended(repr(e))
            if not d:
                raise _Ended("EOF")
            got += len(d)
            buf += d

        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    more()
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ", 2)
                if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
                    return "protocol", None, None, b"", "status line %r" % lines[0]
                status = int(parts[1])
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                if 100 <= status < 200:
                    continue
                break
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = b""
                while True:
                    while b"\r\n" not in buf:
                        more()
                    line, _, buf = buf.partition(b"\r\n")
                    size = int(line.split(b";")[0], 16)
                    while len(buf) < size + 2:
                        more()
                    body += buf[:size]
                    buf = buf[size + 2:]
                    if size == 0:
                        break
            else:
                n = int(headers.get("content-length", "0"))
                while len(buf) < n:
                    more()
                body = buf[:n]
            return "ok", status, headers, body, ""
        except _Ended as e:
            kind = "lost" if got == 0 else "cut"
            return kind, None, None, b"", "%s after %d bytes of the answer" % (e, got)
        except ValueError as e:
            return "protocol", None, None, b"", repr(e)


class _Ended(Exception):
    pass


class Load:
    """A group of clients: start(), stop(), results()."""

    def __init__(self, port, tag, n=CLIENTS, prober=False, uploaders=0):
        self.clients = [Client(port, i, mixed_requests(tag)) for i in range(n)]
        if prober:      # a new connection for every request
            self.clients.append(Client(port, 90, mixed_requests(tag + "n"), keepalive=False))
        for i in range(uploaders):
            self.clients.append(Client(port, 80 + i, slow_upload_requests(tag), pieces=12,
                                       gap=0.1))

    def start(self):
        for c in self.clients:
            c.start()
        return self

    def stop(self):
        for c in self.clients:
            c.halt.set()
        deadline = time.monotonic() + CLIENT_TIMEOUT + 5
        for c in self.clients:
            c.join(max(0.1, deadline - time.monotonic()))
        stuck = [c.cid for c in self.clients if c.is_alive()]
        if stuck:
            raise AssertionError("client threads %r did not stop" % stuck)

    def results(self):
        return sorted((o for c in self.clients for o in c.results), key=lambda o: o.t0)

    def stale_reconnects(self):
        return sum(c.stale_reconnects for c in self.clients)


def kinds(outcomes):
    return collections.Counter(o.kind for o in outcomes)


def failures(outcomes):
    return [o for o in outcomes if o.kind != "ok"]


def kind_label(o):
    """The kind, and for a connection that ended whether it was a reused one."""
    if o.kind in ("lost", "cut", "send_error"):
        return o.kind + ("/reused" if o.reused else "/new")
    return o.kind


def fmt_kinds(outcomes, by_method=True):
    c = collections.Counter((o.method + " " if by_method else "") + kind_label(o)
                            for o in outcomes if o.kind != "ok")
    return ", ".join("%s x%d" % kv for kv in sorted(c.items())) or "none"


def log_time(obj):
    """The "time" field of a JSON log line as a Unix time."""
    return datetime.strptime(obj["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()


def stub_lines(stub):
    out = []
    for line in stub.stdout_bytes().decode("utf-8", "replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def rid_of(target):
    m = re.search(r"rid=([^&]+)", target)
    return m.group(1) if m else None


_METRIC = re.compile(r'^(roundguard_upstream_errors_total|roundguard_requests_total)\{([^}]*)\} (\S+)$')


def backend_counters(lb, address):
    """Sum of roundguard_upstream_errors_total and of roundguard_requests_total
    for one backend, from /metrics on the proxy port."""
    r = rgtest.http_request(HOST, lb.port, "GET", "/metrics", timeout=5)
    assert r.status == 200, r
    errs = reqs = 0.0
    for line in r.body.decode().splitlines():
        m = _METRIC.match(line)
        if m and 'backend="%s"' % address in m.group(2):
            if m.group(1) == "roundguard_upstream_errors_total":
                errs += float(m.group(3))
            else:
                reqs += float(m.group(3))
    return errs, reqs


def setUpModule():
    lbt.setUpModule()


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------

class FaultTestCase(unittest.TestCase):
    maxDiff = 4000

    def row(self, scenario, outcomes, expected, extra=""):
        """A row of the closing table (appended now, so that a failing test
        shows too); the test sets its verdict to PASS after its last assertion."""
        sent = [o for o in outcomes if o.t_req is not None]
        r = {"scenario": scenario, "attempts": len(outcomes), "sent": len(sent),
             "ok": sum(1 for o in outcomes if o.kind == "ok"),
             "failures": fmt_kinds(outcomes), "expected": expected, "extra": extra,
             "verdict": "FAIL"}
        SUMMARY.append(r)
        return r

    def lb(self, backends, proxy=None, access=False, workers=2):
        cfg = lbt.make_config([lbt.url(b) for b in backends], health=FAST, proxy=proxy,
                              log={"access": access})
        return lbt.LB(self.addCleanup, cfg, workers=workers).start()

    def stub(self, mode, ms=0):
        d = rgtest.Daemon(sys.executable, ["-u", THIS_FILE, "--stub", mode, "{port}", str(ms)])
        self.addCleanup(d.kill)
        return d.start()

    def run_load(self, load, seconds):
        self.addCleanup(lambda: [c.halt.set() for c in load.clients])
        load.start()
        time.sleep(seconds)
        load.stop()
        return load.results()

    def stderr_tail(self, lb, n=3000):
        return lb.d.stderr_text()[-n:]

    # -- 1 ---------------------------------------------------------------------

    def test_1_backend_killed_and_revived(self):
        """kill -9 of one echo backend every 2 s, revived on its port 1 s later."""
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        lb = self.lb(backends)
        load = Load(lb.port, "s1")
        self.addCleanup(lambda: [c.halt.set() for c in load.clients])
        load.start()
        time.sleep(1.0)
        kills = []        # per kill: dict
        for k in range(5):
            i = k % 3
            victim = backends[i]
            addr = victim.address
            mark = lb.d.stderr_mark()
            t_kill = time.time()
            victim.kill()
            down = rgtest.wait_json_log(
                lb.d, lambda o: o.get("backend") == addr and o.get("msg") in (
                    "backend down", "backend unreachable, out of rotation until it passes a check"),
                timeout=DETECT, since=mark)
            info = {"backend": addr, "t_kill": t_kill, "down": down}
            kills.append(info)
            if down is not None:
                info["t_down"] = log_time(down)
                time.sleep(0.1)
                info["before"] = backend_counters(lb, addr)
            time.sleep(max(0.0, t_kill + 1.0 - time.time()))
            if down is not None:
                info["after"] = backend_counters(lb, addr)
            info["t_revive"] = time.time()
            backends[i] = lbt.echo_backend(self.addCleanup, port=victim.port)
            mark = lb.d.stderr_mark()
            info["up"] = rgtest.wait_json_log(
                lb.d, lambda o: o.get("backend") == addr and o.get("msg") == "backend up",
                timeout=DETECT, since=mark)
            time.sleep(max(0.0, t_kill + 2.0 - time.time()))
        load.stop()
        res = load.results()
        gets = [o for o in res if o.method == "GET"]
        posts = [o for o in res if o.method == "POST"]
        post_bound = len(kills) * CLIENTS
        row = self.row("1 backend kill -9 + revive x%d" % len(kills), res,
                       "GET failures 0; POST failures <= %d (kills x clients), all 502 "
                       "and in flight at a kill; 0 attempts on a dead backend after "
                       "detection" % post_bound)
        flaps = [o for o in lb.logs() if o.get("msg") == "backend down"
                 and o.get("reason") != "connect refused"]

        # Attribution of each failed POST to a kill: under way at the kill, or
        # started between the kill and its detection.
        post_fail = failures(posts)
        unexplained = []
        per_kill = collections.Counter()
        for o in post_fail:
            hit = None
            for n, info in enumerate(kills):
                end = info.get("t_down", info["t_kill"] + DETECT) + 0.1
                if o.t0 <= end and o.t1 >= info["t_kill"] - 0.01:
                    hit = n
                    break
            if hit is None:
                unexplained.append(o)
            else:
                per_kill[hit] += 1
        dead_attempts = []
        for n, info in enumerate(kills):
            if "before" in info and "after" in info:
                d_err = info["after"][0] - info["before"][0]
                d_req = info["after"][1] - info["before"][1]
                if d_err or d_req:
                    dead_attempts.append((n, info["backend"], d_err, d_req))
        row["extra"] = ("POST failures per kill %s; detected after %s ms (first by %s); "
                        "stale keep-alive reconnects %d; other backends marked down %d" % (
                            [per_kill[n] for n in range(len(kills))],
                            [int((i["t_down"] - i["t_kill"]) * 1000) if "t_down" in i else None
                             for i in kills],
                            [i["down"].get("proc") if i["down"] else None for i in kills],
                            load.stale_reconnects(), len(flaps)))

        self.assertGreater(len(gets), 200, "load too thin to mean anything")
        self.assertFalse([i["backend"] for i in kills if i["down"] is None],
                         "kill not detected within %.1f s; stderr:\n%s" % (DETECT, self.stderr_tail(lb)))
        self.assertFalse([i["backend"] for i in kills if i["up"] is None],
                         "revived backend not back within %.1f s; stderr:\n%s" % (DETECT, self.stderr_tail(lb)))
        self.assertEqual(failures(gets), [], "GET failures (%s)" % fmt_kinds(gets))
        self.assertLessEqual(len(post_fail), post_bound, fmt_kinds(posts))
        self.assertEqual([o for o in post_fail if o.kind != "status_502"], [],
                         "POST failures other than 502")
        self.assertEqual(unexplained, [], "POST failures not in flight at a kill")
        self.assertLessEqual(max(per_kill.values(), default=0), CLIENTS, "POST failures at one kill")
        self.assertEqual(dead_attempts, [],
                         "(kill, backend, upstream errors, requests) counted for a dead backend "
                         "between its detection and its revival")
        row["verdict"] = "PASS"

    # -- 2 ---------------------------------------------------------------------

    def test_2_stalled_backend_504_then_down(self):
        """A backend that accepts and reads but never answers (from SIGUSR1 on)."""
        echos = [lbt.echo_backend(self.addCleanup) for _ in range(2)]
        stub = self.stub("echo-then-stall")
        lb = self.lb(echos + [stub], proxy={"timeout": "500ms"})
        load = Load(lb.port, "s2")
        self.addCleanup(lambda: [c.halt.set() for c in load.clients])
        load.start()
        time.sleep(1.5)
        mark = lb.d.stderr_mark()
        t_stall = time.time()
        os.kill(stub.pid, signal.SIGUSR1)
        down = rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "backend down"
                                    and o.get("backend") == stub.address, timeout=DETECT, since=mark)
        time.sleep(max(0.0, t_stall + 3.0 - time.time()))
        load.stop()
        res = load.results()
        landed = {rid_of(x["target"]): x for x in stub_lines(stub)}
        stalled = {r: x for r, x in landed.items() if x["action"] == "stalled"}
        n504 = [o for o in res if o.kind == "status_504"]
        row = self.row("2 backend accepts, never answers", res,
                       "504 after ~proxy.timeout (500ms) exactly for the requests that reached "
                       "it, not retried; marked down (timeout); no 504 after that")
        self.assertIsNotNone(down, "stalled backend not marked down; stderr:\n%s" % self.stderr_tail(lb))
        t_down = log_time(down)
        row["extra"] = ("reached the stub after the stall: %d (GET %d, POST %d); down %d ms after "
                        "the stall (reason %s); 504 durations %.2f-%.2f s" % (
                            len(stalled), sum(1 for x in stalled.values() if x["method"] == "GET"),
                            sum(1 for x in stalled.values() if x["method"] == "POST"),
                            (t_down - t_stall) * 1000, down.get("reason"),
                            min((o.duration for o in n504), default=0),
                            max((o.duration for o in n504), default=0)))
        self.assertEqual(down.get("reason"), "timeout", down)
        self.assertTrue(stalled, "no request reached the stub after it stalled")
        wrong = [o for o in res if (o.rid in stalled) != (o.kind == "status_504")]
        self.assertEqual(wrong, [], "requests that reached the stalled backend must end in 504, "
                                    "all others must succeed (%s)" % fmt_kinds(res))
        self.assertEqual([o for o in n504 if not PROXY_TIMEOUT * 0.9 <= o.duration
                          <= PROXY_TIMEOUT + 3.0], [], "504 not after about proxy.timeout")
        late = [x for x in stalled.values() if x["t"] > t_down + 0.1]
        self.assertEqual(late, [], "requests reached the backend after it was marked down")
        self.assertEqual([o for o in res if o.kind != "ok" and o.t0 > t_down + 0.1], [],
                         "failures after the backend was marked down")
        row["verdict"] = "PASS"

    # -- 3 ---------------------------------------------------------------------

    def faulty_backend(self, mode, scenario, expected, expect, ms=0):
        """2 echo backends + a stub in `mode` that passes its health checks;
        expect(outcome, stub address) -> True when a request that reached the
        stub ended right."""
        echos = [lbt.echo_backend(self.addCleanup) for _ in range(2)]
        stub = self.stub(mode, ms)
        lb = self.lb(echos + [stub], proxy={"timeout": "500ms"})
        res = self.run_load(Load(lb.port, "s3" + mode[:2]), 3.0)
        landed = {rid_of(x["target"]): x for x in stub_lines(stub)}
        by_method = collections.Counter(x["method"] for x in landed.values())
        row = self.row(scenario, res, expected, "reached the faulty backend: GET %d, POST %d"
                       % (by_method["GET"], by_method["POST"]))
        wrong = [o for o in res
                 if not (expect(o, stub.address) if o.rid in landed else o.kind == "ok")]
        self.assertGreater(by_method["GET"], 0, "no GET reached the stub")
        self.assertGreater(by_method["POST"], 0, "no POST reached the stub")
        self.assertEqual(wrong, [], "%s (%s); stderr:\n%s"
                         % (scenario, fmt_kinds(res), self.stderr_tail(lb, 1500)))
        row["verdict"] = "PASS"

    def test_3a_slow_backend_504(self):
        self.faulty_backend(
            "slow", "3a backend answers after 1.5 s",
            "504 for the requests that reached it (not retried), all others 200",
            lambda o, _: o.kind == "status_504" and o.duration >= PROXY_TIMEOUT * 0.9, ms=1500)

    def test_3b_backend_drops_request(self):
        self.faulty_backend(
            "drop", "3b backend closes without answering",
            "GET retried on the next backend (200), POST 502 (never run twice); all others 200",
            lambda o, stub: (o.kind == "ok" and o.backend != stub) if o.method == "GET"
            else o.kind == "status_502")

    def test_3c_backend_breaks_off_in_head(self):
        self.faulty_backend(
            "halfhead", "3c backend closes mid-head",
            "502 for the requests that reached it, all others 200",
            lambda o, _: o.kind == "status_502")

    def test_3d_backend_resets_mid_body(self):
        self.faulty_backend(
            "cutbody", "3d backend resets mid-body",
            "connection cut after the 200 head (status already out) for the requests that "
            "reached it, all others 200",
            lambda o, _: o.kind == "cut")

    # -- 4 ---------------------------------------------------------------------

    def test_4_worker_killed(self):
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        lb = self.lb(backends, access=True)
        load = Load(lb.port, "s4", prober=True)
        self.addCleanup(lambda: [c.halt.set() for c in load.clients])
        load.start()
        time.sleep(2.0)
        before = {p: rgtest.cmdline(p) for p in lb.workers()}
        victims = [p for p, t in before.items() if t and re.search(r"worker 0\b", t)]
        self.assertEqual(len(victims), 1, before)
        victim = victims[0]
        t_kill = time.time()
        os.kill(victim, signal.SIGKILL)
        respawned = rgtest.wait_until(
            lambda: [p for p in lb.workers() if p != victim and p not in before
                     and re.search(r"roundguardd: worker 0\b", rgtest.cmdline(p) or "")], timeout=5)
        lb.d.refresh_pids()
        time.sleep(max(0.0, t_kill + 3.0 - time.time()))
        load.stop()
        time.sleep(0.3)          # the access log is flushed every 100 ms
        res = load.results()
        nconns = len(load.clients)
        row = self.row("4 worker kill -9", res,
                       "respawned as \"worker 0\"; failures <= %d (client connections), only on "
                       "connections of the killed worker; refused 0" % nconns)
        worker_of = {}
        for obj in lb.logs():
            if obj.get("msg") == "request":
                r = rid_of(obj.get("path", ""))
                if r:
                    worker_of[r] = obj.get("worker")
        conn_workers = collections.defaultdict(set)
        for o in res:
            if o.kind == "ok" and o.rid in worker_of:
                conn_workers[(o.cid, o.conn)].add(worker_of[o.rid])
        fails = failures(res)
        elsewhere = [o for o in fails if conn_workers[(o.cid, o.conn)] - {"0"}]
        row["extra"] = ("respawned pid %s; failed requests on worker-0 connections %d, on "
                        "connections with no earlier answer %d; stale reconnects %d" % (
                            respawned, sum(1 for o in fails if conn_workers[(o.cid, o.conn)] == {"0"}),
                            sum(1 for o in fails if not conn_workers[(o.cid, o.conn)]),
                            load.stale_reconnects()))
        self.assertTrue(respawned, "no new \"roundguardd: worker 0\" within 5 s; children %r"
                        % {p: rgtest.cmdline(p) for p in lb.children()})
        self.assertEqual(len(lb.workers()), 2, {p: rgtest.cmdline(p) for p in lb.children()})
        self.assertEqual(kinds(res)["refused"], 0, "connections refused")
        self.assertLessEqual(len(fails), nconns, fmt_kinds(res))
        self.assertEqual(elsewhere, [], "failures on connections served by another worker")
        self.assertEqual([o for o in fails if o.t1 < t_kill - 0.01], [], "failures before the kill")
        self.assertEqual([o for o in fails if o.kind not in ("lost", "cut")], [],
                         "failures other than lost connections")
        self.assertGreater(len([o for o in res if o.kind == "ok" and o.t0 > t_kill + 0.5]), 100,
                           "too little served after the kill")
        row["verdict"] = "PASS"

    # -- 5 ---------------------------------------------------------------------

    def test_5_checker_killed(self):
        """kill -9 of the health checker three times (the 2nd and 3rd at once,
        so that respawn backoff leaves 100 ms and 200 ms without a checker); a
        backend that is down (its /live answers 500) must stay out meanwhile."""
        echos = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        sick = lbt.py_backend(self.addCleanup, mode="sick")
        lb = self.lb(echos + [sick])
        load = Load(lb.port, "s5")
        self.addCleanup(lambda: [c.halt.set() for c in load.clients])
        load.start()
        time.sleep(1.5)
        pids = []
        gaps = []
        current = lb.checkers()
        self.assertEqual(len(current), 1, {p: rgtest.cmdline(p) for p in lb.children()})
        for _ in range(3):
            old = current[0]
            t_kill = time.time()
            os.kill(old, signal.SIGKILL)
            current = rgtest.wait_until(
                lambda: [p for p in lb.checkers() if p != old
                         and "roundguardd: health checker" in (rgtest.cmdline(p) or "")],
                timeout=5, interval=0.005)
            gaps.append((t_kill, time.time()))
            if not current:
                break
            pids.append(current[0])
        lb.d.refresh_pids()
        time.sleep(1.5)
        load.stop()
        res = load.results()
        to_sick = [x for x in lbt.received(sick, "rid=")]
        in_gaps = [o for o in res if any(a <= o.t0 <= b for a, b in gaps)]
        row = self.row("5 health checker kill -9 x3", res,
                       "respawned each time; 0 failures; sick backend gets nothing; "
                       "echo backends keep their share meanwhile",
                       "checkerless gaps %s ms, %d requests in them, served by %d backends" % (
                           [int((b - a) * 1000) for a, b in gaps], len(in_gaps),
                           len({o.backend for o in in_gaps if o.kind == "ok"})))
        self.assertEqual(len(pids), 3, "checker not respawned; children %r"
                         % {p: rgtest.cmdline(p) for p in lb.children()})
        self.assertEqual(failures(res), [], fmt_kinds(res))
        self.assertEqual(to_sick, [], "requests reached the backend that was down")
        self.assertEqual({o.backend for o in res}, {b.address for b in echos})
        self.assertEqual({o.backend for o in in_gaps}, {b.address for b in echos},
                         "backends that answered while there was no health checker")
        row["verdict"] = "PASS"

    # -- 6 ---------------------------------------------------------------------

    def test_6_reload_changed_backends(self):
        e = [lbt.echo_backend(self.addCleanup) for _ in range(5)]
        lists = [[e[0], e[1], e[2]], [e[0], e[1], e[3]], [e[0], e[3], e[4]], [e[4], e[1], e[2]]]
        lb = self.lb(lists[0])
        load = Load(lb.port, "s6")
        self.addCleanup(lambda: [c.halt.set() for c in load.clients])
        load.start()
        time.sleep(1.0)
        reloads = []
        for n in (1, 2, 3):
            cfg = lbt.make_config([lbt.url(b) for b in lists[n]], health=FAST,
                                  log={"access": False})
            lb.write_config(cfg)
            mark = lb.d.stderr_mark()
            t_hup = time.time()
            lb.d.send_signal(signal.SIGHUP)
            done = rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "reloaded", timeout=5,
                                        since=mark)
            reloads.append((n, t_hup, time.time() if done else None))
            time.sleep(max(0.0, t_hup + 1.5 - time.time()))
        time.sleep(0.5)
        load.stop()
        lb.d.refresh_pids()
        res = load.results()
        row = self.row("6 SIGHUP x3, backend list changed", res,
                       "0 failures; after each reload only the new list answers",
                       "stale keep-alive reconnects %d" % load.stale_reconnects())
        fails = failures(res)

        def since_hup(o):
            past = [(o.t_req or o.t0) - t for _, t, _ in reloads if t <= (o.t_req or o.t0)]
            return "%.1f ms after SIGHUP %d" % (min(past) * 1000, len(past)) if past else "before"
        row["extra"] += "; failures: %s" % ([
            "%s %s %s (%s)" % (o.method, kind_label(o), o.detail, since_hup(o)) for o in fails]
            or "none")
        self.assertEqual([n for n, _, t in reloads if t is None], [],
                         "no \"reloaded\" line; stderr:\n%s" % self.stderr_tail(lb))
        self.assertEqual(fails, [], "%s: %s" % (fmt_kinds(res), row["extra"]))
        wrong = []
        for i, (n, t_hup, t_done) in enumerate(reloads):
            t_end = reloads[i + 1][1] if i + 1 < len(reloads) else float("inf")
            want = {b.address for b in lists[n]}
            wrong += [(n, o) for o in res if t_done + 0.5 < o.t0 < t_end and o.backend not in want]
        self.assertEqual(wrong, [], "answers from backends not in the new list")
        self.assertTrue(rgtest.pid_alive(lb.pid))
        self.assertEqual(len(lb.workers()), 2, {p: rgtest.cmdline(p) for p in lb.children()})
        row["verdict"] = "PASS"

    # -- 7 ---------------------------------------------------------------------

    def test_7_sigterm_under_load(self):
        """SIGTERM while 16 keep-alive clients, 2 slow uploads (24 KiB in 12
        parts over 1.2 s) and a new-connection-per-request client run.

        A request counts as begun before SIGTERM when its first byte was written
        (on a connection already established) before the signal was sent: those
        must all end 200 with the right body. Requests begun after it may be
        refused (listeners closed) or find their idle keep-alive connection
        closed by the drain; connect() must not be refused before the signal."""
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        lb = self.lb(backends, proxy={"shutdown_timeout": "3s"})
        seg = lbt.shm_segments(lb.pid)
        self.assertTrue(seg, "no shm segment while running")
        load = Load(lb.port, "s7", prober=True, uploaders=2)
        self.addCleanup(lambda: [c.halt.set() for c in load.clients])
        load.start()
        time.sleep(2.0)
        pids = lb.d.live_pids()
        t_sig = time.time()
        rc, elapsed = lb.d.stop(signal.SIGTERM, timeout=SHUTDOWN_TIMEOUT + 8)
        t_exit = time.time()
        accepting = rgtest.port_accepting(HOST, lb.port)
        time.sleep(0.2)
        load.stop()
        res = load.results()
        begun_before = [o for o in res if o.t_req is not None and o.t_req < t_sig]
        after = [o for o in res if o.t_req is None or o.t_req >= t_sig]
        spanning = [o for o in begun_before if o.t1 > t_sig and o.kind == "ok"]
        uploads = [o for o in spanning if o.cid >= 80 and o.cid < 90]
        row = self.row("7 SIGTERM under load", res,
                       "begun before SIGTERM: all 200 (%d, %d of them still in flight at the "
                       "signal, %d slow uploads); refused before SIGTERM 0; exit 0 within "
                       "shutdown_timeout 3s + 3s; no child, no segment left"
                       % (len(begun_before), len(spanning), len(uploads)),
                       "exit %s after %.2f s; after SIGTERM: %s" % (rc, elapsed, fmt_kinds(after)))
        odd = [o for o in after if o.kind not in ("ok", "refused")]
        if odd:
            row["extra"] += "; after SIGTERM, other than ok/refused: %s" % [
                "%s %s: connected %+.1f ms, sent %+.1f ms from SIGTERM, %s" % (
                    o.method, kind_label(o), ((o.t_conn or t_sig) - t_sig) * 1000,
                    ((o.t_req or t_sig) - t_sig) * 1000, o.detail or "-") for o in odd]
        self.assertEqual(rc, 0, "exit status; stderr:\n%s" % self.stderr_tail(lb))
        self.assertLessEqual(elapsed, SHUTDOWN_TIMEOUT + 3.0)
        self.assertEqual([p for p in pids if rgtest.pid_alive(p)], [], "processes left")
        self.assertEqual(lbt.shm_segments(lb.pid), [], "segments left after exit")
        self.assertFalse(accepting, "port still accepting after the master exited")
        self.assertEqual(failures(begun_before), [],
                         "requests begun before SIGTERM that failed (%s); stderr:\n%s"
                         % (fmt_kinds(begun_before), self.stderr_tail(lb)))
        self.assertTrue(uploads, "no slow upload was in flight at SIGTERM")
        self.assertEqual([o for o in res if o.kind == "refused" and o.t0 < t_sig], [],
                         "connections refused before SIGTERM")
        self.assertEqual([o for o in after if o.kind not in ("ok", "refused", "connect_reset", "lost")], [],
                         "requests begun after SIGTERM ended other than ok/refused/lost")
        self.assertLess(max((o.t1 for o in res if o.kind == "ok"), default=0), t_exit + 0.01)
        row["verdict"] = "PASS"


# ---------------------------------------------------------------------------

def print_summary():
    if not SUMMARY:
        return
    out = sys.stdout
    out.write("\nFaults under load: %d client threads, 2 workers\n" % CLIENTS)
    cols = ("scenario", "sent", "ok", "failures (by method and kind)", "expected", "verdict")
    out.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
    for r in SUMMARY:
        out.write("| %s | %d | %d | %s | %s | %s |\n" % (
            r["scenario"], r["sent"], r["ok"], r["failures"], r["expected"], r["verdict"]))
    out.write("\nDetails:\n")
    for r in SUMMARY:
        if r["extra"]:
            out.write("- %s: %s\n" % (r["scenario"], r["extra"]))
    out.flush()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--stub":
        try:
            sys.exit(stub_main(sys.argv[2:]))
        except KeyboardInterrupt:
            pass
    prog = unittest.main(exit=False)
    sys.stderr.flush()
    print_summary()
    sys.exit(0 if prog.result.wasSuccessful() else 1)

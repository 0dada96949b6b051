#!/usr/bin/env python3
"""Integration tests for the PROXY protocol on listeners (issue 16): real HAProxy in TCP mode
in front (send-proxy and send-proxy-v2, its health checks as v2 LOCAL), hand-made headers
(malformed, truncated, oversized, missing, LOCAL, trickled, refused sources), PROXY then TLS.

Run:
  ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
      python3 tests/integration/test_proxyproto.py -v
"""

import json
import os
import shutil
import socket
import ssl
import struct
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rgtest  # noqa: E402
import test_lb as lbt  # noqa: E402
import tlscerts  # noqa: E402

HOST = rgtest.DEFAULT_HOST
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
REQ = b"GET /headers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


def setUpModule():
    lbt.setUpModule()
    if shutil.which("haproxy") is None:
        raise rgtest.DaemonError("haproxy is missing (scripts/deps test installs it)")


def v2(src, dst, sport, dport, cmd=0x21, tlv=b""):
    """A v2 header for IPv4 addresses (dotted strings)."""
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport) + tlv
    return SIG + bytes([cmd, 0x11]) + struct.pack("!H", len(body)) + body


def exchange(port, data, src=None, timeout=5.0, pause=None):
    """Send data (a list of pieces, with pause seconds between them) on a new connection from
    src; every byte received until the close, or the error that ended it."""
    s = socket.socket()
    try:
        if src:
            s.bind((src, 0))
        s.settimeout(timeout)
        s.connect((HOST, port))
        for i, piece in enumerate(data if isinstance(data, list) else [data]):
            if i and pause:
                time.sleep(pause)
            s.sendall(piece)
        s.shutdown(socket.SHUT_WR)          # all sent: a connection cut short ends here
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    except OSError as e:
        return e
    finally:
        s.close()


def start_haproxy(case, config, port):
    """Real HAProxy with this configuration (defaults block included), listening on port;
    stopped by case's cleanup."""
    d = tempfile.mkdtemp(prefix="rg-pp-haproxy-")
    case.addCleanup(shutil.rmtree, d, True)
    cfg = os.path.join(d, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write("global\n    maxconn 100\n" + config)
    hp = rgtest.Daemon(shutil.which("haproxy"), ["-db", "-f", cfg], port=port)
    case.addCleanup(hp.kill)
    return hp.start()


def forwarded_for(out):
    """X-Forwarded-For as testbackend's /headers saw it."""
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), out[:200]
    return [v for k, v in json.loads(body)["headers"] if k.lower() == "x-forwarded-for"]


class PPCase(lbt.LBTestCase):
    def start_lb(self, listeners, **top):
        """roundguardd with a plain listener first (-l/-p give it the LB's port: self.plain,
        where /metrics is read) and then these."""
        self.backend = lbt.py_backend(self.addCleanup)
        cfg = lbt.make_config([lbt.url(self.backend)], log={"access": True}, **top)
        cfg["listeners"] = [{"listen": "127.0.0.1:1", "name": "plain"}] + listeners
        cfg["control"] = {"socket": None}
        self.lb = lbt.LB(self.addCleanup, cfg).start()
        self.plain = self.lb.port
        return self.lb

    def metric(self, listener, result, port):
        text = rgtest.http_request(HOST, port, "GET", "/metrics").body.decode()
        key = 'roundguard_proxy_protocol_headers_total{listener="%s",result="%s"} ' % (
            listener, result)
        for line in text.splitlines():
            if line.startswith(key):
                return int(line.split()[-1])
        self.fail("no %s in /metrics" % key)

    def ports(self, n):
        return [rgtest.free_port() for _ in range(n)]


class HeaderTests(PPCase):
    def setUp(self):
        self.pp, self.only2 = self.ports(2)
        self.start_lb([
            {"listen": "%s:%d" % (HOST, self.pp), "name": "pp", "proxy_protocol": True},
            {"listen": "%s:%d" % (HOST, self.only2), "name": "only2", "proxy_protocol": True,
             "proxy_protocol_from": ["127.0.0.2/32", "::2"]},
        ], proxy={"client_timeout": "1s"})

    def test_v1_and_v2_name_the_client(self):
        out = exchange(self.pp, b"PROXY TCP4 203.0.113.7 127.0.0.1 4444 80\r\n" + REQ)
        self.assertEqual(forwarded_for(out), ["203.0.113.7"])
        out = exchange(self.pp, v2("198.51.100.9", "127.0.0.1", 4445, 80) + REQ)
        self.assertEqual(forwarded_for(out), ["198.51.100.9"])
        tlv = bytes([0x02, 0, 4]) + b"host"        # an authority TLV: skipped
        out = exchange(self.pp, v2("198.51.100.10", "127.0.0.1", 1, 2, tlv=tlv) + REQ)
        self.assertEqual(forwarded_for(out), ["198.51.100.10"])
        out = exchange(self.pp, b"PROXY TCP6 2001:db8::7 ::1 5 6\r\n" + REQ)
        self.assertEqual(forwarded_for(out), ["2001:db8::7"])
        # The header and the request in separate pieces, a little apart.
        out = exchange(self.pp, [b"PROXY TCP4 203.0.1", b"13.8 127.0.0.1 1 2\r\nGET /head",
                                 REQ[9:]], pause=0.05)
        self.assertEqual(forwarded_for(out), ["203.0.113.8"])
        time.sleep(0.2)
        logs = [o for o in self.lb.logs() if o.get("msg") == "request"]
        self.assertIn("203.0.113.7", [o.get("client") for o in logs])
        self.assertEqual(self.metric("pp", "v1", self.plain), 3)
        self.assertEqual(self.metric("pp", "v2", self.plain), 2)

    def test_local_and_unknown_keep_the_connection_address(self):
        out = exchange(self.pp, SIG + bytes([0x20, 0x00, 0, 0]) + REQ)
        self.assertEqual(forwarded_for(out), ["127.0.0.1"])
        out = exchange(self.pp, b"PROXY UNKNOWN\r\n" + REQ)
        self.assertEqual(forwarded_for(out), ["127.0.0.1"])
        self.assertEqual(self.metric("pp", "local", self.plain), 1)

    def test_bad_headers_are_closed_and_counted(self):
        cases = {
            "missing": [REQ, b""],
            "invalid": [
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n" + REQ,                   # 4 fields
                b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n" + REQ,               # bad address
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + REQ,                   # no CR
                b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n" + REQ,              # over 107 bytes
                SIG + bytes([0x21, 0x11]) + struct.pack("!H", 5000) + b"\0" * 64,  # oversized
                SIG + bytes([0x31, 0x11, 0, 12]) + b"\0" * 12 + REQ,         # version 3
                SIG + bytes([0x21, 0x11, 0, 8]) + b"\0" * 8 + REQ,           # cut addresses
                b"PROXY TCP4 1.2.3.4 5.6",                                   # then closed
                v2("1.2.3.4", "5.6.7.8", 1, 2)[:20],                         # then closed
            ],
        }
        for result, datas in cases.items():
            for data in datas:
                out = exchange(self.pp, data)
                self.assertTrue(isinstance(out, OSError) or out == b"",
                                "%r answered %r" % (data[:40], out))
        time.sleep(0.2)
        self.assertEqual(self.metric("pp", "missing", self.plain), 2)
        self.assertEqual(self.metric("pp", "invalid", self.plain), len(cases["invalid"]))
        # Without the option, a PROXY header is an ordinary bad request.
        out = exchange(self.plain, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + REQ)
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out)
        self.assertIn(b"application/json", out)
        # Everyone else is still served.
        self.assertEqual(forwarded_for(exchange(self.pp, b"PROXY TCP4 9.9.9.9 1.1.1.1 1 2\r\n"
                                                + REQ)), ["9.9.9.9"])

    def test_trickled_header_is_cut_at_client_timeout(self):
        s = socket.create_connection((HOST, self.pp))
        self.addCleanup(s.close)
        t0 = time.monotonic()
        s.sendall(b"PROXY TCP4 ")
        s.settimeout(5)
        closed = None
        for piece in (b"1", b".", b"2", b".", b"3", b".", b"4", b" ", b"5", b"."):
            try:
                s.sendall(piece)
                time.sleep(0.25)
            except OSError:
                closed = time.monotonic() - t0
                break
        if closed is None:
            try:
                closed = (s.recv(10), time.monotonic() - t0)[1]
            except OSError:
                closed = time.monotonic() - t0
        self.assertLess(closed, 3.5, "a header trickled for %.1f s" % closed)
        self.assertTrue(rgtest.wait_until(
            lambda: self.metric("pp", "timeout", self.plain) == 1, 3))

    def test_sources_not_allowed_are_refused(self):
        out = exchange(self.only2, b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n" + REQ)
        self.assertTrue(isinstance(out, OSError) or out == b"", out)
        out = exchange(self.only2, b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n" + REQ, src="127.0.0.2")
        self.assertEqual(forwarded_for(out), ["1.1.1.1"])
        self.assertEqual(self.metric("only2", "refused", self.plain), 1)
        self.assertEqual(self.metric("only2", "v1", self.plain), 1)


class HAProxyTests(PPCase):
    """Real HAProxy in TCP mode in front, as an L4 layer: send-proxy, send-proxy-v2 with its
    health checks sent as PROXY v2 LOCAL (check-send-proxy)."""

    def test_haproxy_in_front(self):
        rg = rgtest.free_port()
        self.start_lb([{"listen": "%s:%d" % (HOST, rg), "name": "l4", "proxy_protocol": True}])
        plain = self.plain
        f1, f2 = rgtest.free_port(), rgtest.free_port()
        start_haproxy(self, """defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend v1
    bind 127.0.0.1:%d
    default_backend v1
frontend v2
    bind 127.0.0.1:%d
    default_backend v2
backend v1
    server rg 127.0.0.1:%d send-proxy
backend v2
    option httpchk GET /live
    server rg 127.0.0.1:%d send-proxy-v2 check check-send-proxy inter 200ms
""" % (f1, f2, rg, rg), f1)
        rgtest.wait_port(HOST, f2, timeout=5)
        time.sleep(0.3)
        # The two readiness probes above went through HAProxy too.
        before = {r: self.metric("l4", r, plain) for r in ("v1", "v2")}
        out = exchange(f1, REQ, src="127.0.0.2")
        self.assertEqual(forwarded_for(out), ["127.0.0.2"])
        out = exchange(f2, REQ, src="127.0.0.3")
        self.assertEqual(forwarded_for(out), ["127.0.0.3"])
        self.assertTrue(rgtest.wait_until(lambda: self.metric("l4", "local", plain) >= 2, 5))
        counts = {r: self.metric("l4", r, plain) for r in ("v1", "v2", "local", "invalid")}
        self.assertEqual((counts["v1"] - before["v1"], counts["v2"] - before["v2"]), (1, 1),
                         (before, counts))
        self.assertEqual(self.metric("l4", "invalid", plain), 0)


class SendProxyTests(lbt.LBTestCase):
    """send_proxy: "v2" on a backend: real HAProxy as the backend, with accept-proxy, answers
    each request with the client address and port the PROXY header gave it."""

    def test_backend_learns_each_client(self):
        hport = rgtest.free_port()
        start_haproxy(self, """defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 10s
frontend fe
    bind 127.0.0.1:%d accept-proxy
    http-request return status 200 content-type text/plain lf-string "%%[src] %%[fc_rcvd_proxy] %%[dst_port]"
""" % hport, hport)
        lb = lbt.LB(self.addCleanup, lbt.make_config(
            [{"url": "http://127.0.0.1:%d" % hport, "send_proxy": "v2"}],
            health={"interval": "300ms", "timeout": "200ms"})).start()
        seen = []
        for src in ("127.0.0.2", "127.0.0.3", "127.0.0.2"):
            out = exchange(lb.port, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                           src=src)
            self.assertTrue(out.startswith(b"HTTP/1.1 200"), out)
            seen.append(out.partition(b"\r\n\r\n")[2].decode().split())
        # Each request on its own backend connection, with its own client's header (a pooled
        # one would have carried the first client's address to the second).
        self.assertEqual([x[0] for x in seen], ["127.0.0.2", "127.0.0.3", "127.0.0.2"])
        self.assertEqual({x[1] for x in seen}, {"1"})
        self.assertEqual({x[2] for x in seen}, {str(lb.port)})
        # Two requests on one keep-alive client connection: both arrive, each with the header.
        with rgtest.RawHTTP(HOST, lb.port) as h:
            for _ in range(2):
                h.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                r = h.read_response()
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.body.decode().split()[0], "127.0.0.1")
        # The health checks speak PROXY too (v2 LOCAL): the backend stays up.
        time.sleep(1.0)
        m = lb.request("GET", "/metrics").body.decode()
        self.assertIn('roundguard_backend_up{backend="127.0.0.1:%d"} 1' % hport, m)
        self.assertIn('roundguard_health_checks_total{backend="127.0.0.1:%d",result="failure"} 0'
                      % hport, m)


class TLSTests(PPCase):
    def test_proxy_header_then_tls(self):
        d = tempfile.mkdtemp(prefix="rg-pp-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        ca = tlscerts.CA(d)
        chain, key = ca.issue("site", ["localhost"])
        tport = rgtest.free_port()
        self.start_lb([{"listen": "%s:%d" % (HOST, tport), "name": "tls-pp",
                        "proxy_protocol": True,
                        "tls": {"certificates": [{"cert": chain, "key": key}]}}])
        plain = self.plain
        ctx = ssl.create_default_context(cafile=ca.cert)
        raw = socket.create_connection((HOST, tport), timeout=5)
        raw.sendall(b"PROXY TCP4 192.0.2.44 127.0.0.1 5555 443\r\n")
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(REQ)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    break
                if not chunk:
                    break
                out += chunk
        self.assertEqual(forwarded_for(out), ["192.0.2.44"])
        # Without the header, the ClientHello is what comes first: closed, counted missing.
        raw = socket.create_connection((HOST, tport), timeout=5)
        with self.assertRaises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(REQ)
                s.recv(10)
        self.assertEqual(self.metric("tls-pp", "missing", plain), 1)


if __name__ == "__main__":
    unittest.main()

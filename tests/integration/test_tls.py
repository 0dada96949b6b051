#!/usr/bin/env python3
"""TLS through roundguardd (issue 14): HTTPS listeners beside plain ones, certificates
chosen by SNI, versions and ALPN, session resumption across workers, the redirect
listener, reloads with new and broken certificates, and hostile input on the TLS port.

Real daemons on loopback; certificates are made at test time with the openssl command
(tlscerts.py: a throw-away CA, leaves for the names a test needs, an expired one). The
client is Python's ssl module (the system OpenSSL), raw sockets for hostile input.

Run: ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
         python3 tests/integration/test_tls.py -v
"""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import rgtest  # noqa: E402
import test_lb as lbt  # noqa: E402
import test_metrics as tmt  # noqa: E402
import tlscerts  # noqa: E402

HOST = rgtest.DEFAULT_HOST


def setUpModule():
    lbt.setUpModule()
    if shutil.which("openssl") is None:
        raise unittest.SkipTest("the openssl command makes the certificates (scripts/deps test)")


def client_ctx(ca=None, alpn=None, minimum=None, maximum=None, ciphers=None):
    """A client context: verifying against ca (a CA file) when given, else not verifying."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        ctx.load_verify_locations(ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def peer_fingerprint(sock):
    import hashlib
    return hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest()


def https_get(port, path="/live", sni=None, ctx=None, session=None, headers=b"", timeout=5.0):
    """One GET on a new TLS connection: (Response, ssl socket info dict)."""
    ctx = ctx or client_ctx()
    with socket.create_connection((HOST, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s:
            info = {"fingerprint": peer_fingerprint(s), "version": s.version(),
                    "alpn": s.selected_alpn_protocol(), "reused": s.session_reused,
                    "session": None}
            s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s\r\n" %
                      (path.encode(), (sni or HOST).encode(), headers))
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    break
                if not chunk:
                    break
                data += chunk
            # TLS 1.3 tickets come after the handshake: the session is complete once read.
            info["session"] = s.session
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    return rgtest.Response(lines[0].split(" ")[0], status, "", hdrs, body), info


class TLSCase(unittest.TestCase):
    """A CA and certificates per class: a.test (ECDSA), *.b.test (RSA), c.test."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="rg-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.ca = tlscerts.CA(os.path.join(cls.dir, "ca"))
        cls.a = cls.ca.issue("a", ["a.test"], "ec")
        cls.w = cls.ca.issue("w", ["*.b.test"], "rsa")
        cls.c = cls.ca.issue("c", ["c.test"], "ec")
        cls.fp = {k: tlscerts.fingerprint(v[0]) for k, v in
                  (("a", cls.a), ("w", cls.w), ("c", cls.c))}

    def setUp(self):
        self.lbs = [self.lb] if getattr(type(self), "lb", None) is not None else []

    def tearDown(self):
        # A sanitizer report, a failed assertion or a child that died fails the test.
        for lb in self.lbs:
            text = lb.d.stderr_text()
            for bad in ("Sanitizer", "runtime error:", "Assertion", "died"):
                self.assertNotIn(bad, text, text[-3000:])

    @staticmethod
    def certs(*pairs):
        return [{"cert": c, "key": k} for c, k in pairs]

    def start(self, backends, listeners, workers=2, **top):
        """roundguardd with a plain listener (moved by -l/-p to a free port) and listeners."""
        cfg = lbt.make_config([lbt.url(b) for b in backends], health=lbt.FAST,
                              listeners=[{"listen": "127.0.0.1:1", "name": "plain"}] + listeners,
                              **top)
        lb = lbt.LB(self.addCleanup, cfg, workers=workers).start()
        self.lbs.append(lb)
        return lb

    def tls_listener(self, port, certs=None, name=None, **tls):
        tls["certificates"] = certs or self.certs(self.a, self.w)
        out = {"listen": "%s:%d" % (HOST, port), "tls": tls}
        if name:
            out["name"] = name
        return out


class HTTPSListenerTests(TLSCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.backend = lbt.py_backend(cls.addClassCleanup)
        cls.tport = rgtest.free_port()
        cls.sport = rgtest.free_port()
        cfg = lbt.make_config([lbt.url(cls.backend)], health=lbt.FAST, listeners=[
            {"listen": "127.0.0.1:1", "name": "plain"},
            {"listen": "%s:%d" % (HOST, cls.tport), "name": "https",
             "tls": {"certificates": [{"cert": cls.a[0], "key": cls.a[1]},
                                      {"cert": cls.w[0], "key": cls.w[1]}]}},
            {"listen": "%s:%d" % (HOST, cls.sport), "name": "strict",
             "tls": {"certificates": [{"cert": cls.a[0], "key": cls.a[1]}], "strict_sni": True,
                     "min_version": "TLSv1.3"}}])
        cls.lb = lbt.LB(cls.addClassCleanup, cfg, workers=2).start()

    def test_get_over_https_and_forwarded_proto(self):
        r, info = https_get(self.tport, "/headers?tls=1", sni="a.test", ctx=client_ctx(self.ca.cert))
        self.assertEqual(r.status, 200, r)
        hdrs = dict((k.lower(), v) for k, v in json.loads(r.body)["headers"])
        self.assertEqual(hdrs["x-forwarded-proto"], "https")
        self.assertEqual(info["fingerprint"], self.fp["a"])
        # The plain listener beside it says http.
        r = self.lb.request("GET", "/headers?plain=1")
        hdrs = dict((k.lower(), v) for k, v in r.json()["headers"])
        self.assertEqual(hdrs["x-forwarded-proto"], "http")

    def test_sni_exact_wildcard_and_fallback(self):
        cases = [("a.test", "a"), ("x.b.test", "w"), ("X.B.TEST", "w"),
                 ("a.x.b.test", "a"),       # a wildcard covers one label only: the first cert
                 ("unknown.test", "a"), (None, "a")]
        for sni, want in cases:
            with self.subTest(sni=sni):
                r, info = https_get(self.tport, sni=sni)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(info["fingerprint"], self.fp[want])
        # Verified by name against the CA: the chosen certificate is valid for the name.
        r, _ = https_get(self.tport, sni="x.b.test", ctx=client_ctx(self.ca.cert))
        self.assertEqual(r.status, 200, r)

    def test_strict_sni_refuses_unknown_names(self):
        r, info = https_get(self.sport, sni="a.test")
        self.assertEqual((r.status, info["fingerprint"]), (200, self.fp["a"]))
        for sni in ("unknown.test", None):
            with self.subTest(sni=sni):
                with self.assertRaises(ssl.SSLError) as cm:
                    https_get(self.sport, sni=sni)
                if sni is not None:
                    self.assertIn("UNRECOGNIZED_NAME", str(cm.exception).upper())

    def test_alpn_http11(self):
        for offered, want in ((["h2", "http/1.1"], "http/1.1"), (["http/1.1"], "http/1.1"),
                              (None, None)):
            with self.subTest(offered=offered):
                r, info = https_get(self.tport, sni="a.test", ctx=client_ctx(alpn=offered))
                self.assertEqual(r.status, 200, r)
                self.assertEqual(info["alpn"], want)

    def test_versions(self):
        """TLS 1.2 and 1.3 by default; 1.0 and 1.1 refused; min_version TLSv1.3 refuses 1.2."""
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            r, info = https_get(self.tport, sni="a.test", ctx=client_ctx(minimum=v, maximum=v))
            self.assertEqual((r.status, info["version"]), (200, v.name.replace("_", ".")))
        for v in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with self.subTest(version=v):
                ctx = client_ctx(minimum=v, maximum=v, ciphers="DEFAULT:@SECLEVEL=0")
                with self.assertRaises((ssl.SSLError, ConnectionResetError)):
                    https_get(self.tport, sni="a.test", ctx=ctx)
        v12 = ssl.TLSVersion.TLSv1_2
        with self.assertRaises(ssl.SSLError):
            https_get(self.sport, sni="a.test", ctx=client_ctx(minimum=v12, maximum=v12))
        r, info = https_get(self.sport, sni="a.test")
        self.assertEqual(info["version"], "TLSv1.3")

    def test_cipher_refusal(self):
        """A TLS 1.2 client offering only ciphers outside the list is refused."""
        v12 = ssl.TLSVersion.TLSv1_2
        ctx = client_ctx(minimum=v12, maximum=v12, ciphers="AES128-SHA:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError):
            https_get(self.tport, sni="a.test", ctx=ctx)

    def test_resumption_across_workers(self):
        """Tickets issued by one worker resume on the other: every try after the first."""
        for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            with self.subTest(version=v.name):
                ctx = client_ctx(minimum=v, maximum=v)
                _, info = https_get(self.tport, sni="a.test", ctx=ctx)
                session = info["session"]
                self.assertFalse(info["reused"])
                mark = self.lb.d.stderr_mark()
                reused = []
                for _ in range(30):
                    r, info = https_get(self.tport, "/live", sni="a.test", ctx=ctx,
                                        session=session)
                    self.assertEqual(r.status, 200, r)
                    reused.append(info["reused"])
                    # TLS 1.3 tickets are single-use: each resumption must bring a new one,
                    # and the next connection offers only that.
                    if v == ssl.TLSVersion.TLSv1_3:
                        self.assertIsNotNone(info["session"])
                        self.assertNotEqual(info["session"].id, session.id,
                                            "no new ticket after a TLS 1.3 resumption")
                    session = info["session"] or session
                self.assertEqual(reused, [True] * 30)
        # Which worker served each is in the access log (off here): the connections came
        # from 60 different source ports, which SO_REUSEPORT spreads over both workers.

    def test_keepalive_and_pipelined_requests(self):
        with rgtest.RawHTTP(HOST, self.tport, tls=client_ctx(), server_hostname="a.test") as c:
            for i in range(3):
                c.request("GET", "/headers?k=%d" % i)
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
            c.send(b"".join(rgtest.build_request("GET", "/headers?p=%d" % i) for i in range(5)))
            for i in range(5):
                r = c.read_response()
                self.assertEqual(json.loads(r.body)["target"], "/headers?p=%d" % i)

    def test_large_bodies_both_ways(self):
        body = os.urandom(3 * 1024 * 1024 + 17)
        with rgtest.RawHTTP(HOST, self.tport, tls=client_ctx(), server_hostname="a.test",
                            timeout=20) as c:
            c.request("POST", "/count", body=body)
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            import hashlib
            self.assertEqual(json.loads(r.body), {"bytes": len(body),
                                                  "sha1": hashlib.sha1(body).hexdigest()})
            c.request("GET", "/big?n=%d" % (5 * 1024 * 1024))
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(len(r.body), 5 * 1024 * 1024)


class RedirectTests(TLSCase):

    def test_redirect_listener(self):
        backend = lbt.echo_backend(self.addCleanup)
        rport, r2port = rgtest.free_port(), rgtest.free_port()
        lb = self.start([backend], [
            {"listen": "%s:%d" % (HOST, rport), "redirect_https": True},
            {"listen": "%s:%d" % (HOST, r2port), "redirect_https": True, "redirect_port": 8443}],
            workers=1)
        cases = [(rport, "GET", "/a/b?c=d", "shop.test", "https://shop.test/a/b?c=d"),
                 (rport, "GET", "/", "shop.test:80", "https://shop.test/"),
                 (rport, "POST", "/form", "shop.test", "https://shop.test/form"),
                 (rport, "GET", "/v6", "[::1]:80", "https://[::1]/v6"),
                 (r2port, "GET", "/x", "shop.test:8080", "https://shop.test:8443/x")]
        for port, method, target, host, want in cases:
            with self.subTest(target=target, host=host):
                with rgtest.RawHTTP(HOST, port) as c:
                    c.request(method, target, host=host,
                              body=b"x=1" if method == "POST" else None)
                    r = c.read_response(method)
                self.assertEqual(r.status, 308, r)
                self.assertEqual(r.header("Location"), want)
                self.assertEqual(r.media_type(), "application/json")
                self.assertIsNone(r.header("X-Backend-Server"))
        # The plain listener without redirect_https still proxies.
        self.assertEqual(lb.request("GET", "/live").status, 200)


class TunnelOverTLSTests(TLSCase):

    def test_websocket_over_https(self):
        """An upgrade on a TLS listener: the 101 and a tunnel, TLS to the client only."""
        import base64
        import hashlib
        backend = lbt.echo_backend(self.addCleanup)
        tport = rgtest.free_port()
        self.start([backend], [self.tls_listener(tport)], workers=1)
        key = base64.b64encode(os.urandom(16)).decode()
        with rgtest.RawHTTP(HOST, tport, tls=client_ctx(), server_hostname="a.test") as c:
            c.send(("GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode())
            head = c._read_until(b"\r\n\r\n").decode("latin-1")
            self.assertTrue(head.startswith("HTTP/1.1 101 "), head)
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            self.assertIn("Sec-WebSocket-Accept: %s" % accept, head)
            for size in (5, 300, 70000):
                payload = os.urandom(size)
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                if size < 126:
                    hdr = bytes([0x82, 0x80 | size])
                elif size < 65536:
                    hdr = bytes([0x82, 0x80 | 126]) + size.to_bytes(2, "big")
                else:
                    hdr = bytes([0x82, 0x80 | 127]) + size.to_bytes(8, "big")
                c.send(hdr + mask + masked)
                first = c._read_exact(2)
                n = first[1] & 0x7F
                if n == 126:
                    n = int.from_bytes(c._read_exact(2), "big")
                elif n == 127:
                    n = int.from_bytes(c._read_exact(8), "big")
                self.assertEqual((first[0], n), (0x82, size))
                self.assertEqual(c._read_exact(n), payload)


class HostileInputTests(TLSCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.backend = lbt.echo_backend(cls.addClassCleanup)
        cls.tport = rgtest.free_port()
        cfg = lbt.make_config([lbt.url(cls.backend)], health=lbt.FAST,
                              proxy={"client_timeout": "1500ms"}, listeners=[
            {"listen": "127.0.0.1:1", "name": "plain"},
            {"listen": "%s:%d" % (HOST, cls.tport),
             "tls": {"certificates": [{"cert": cls.a[0], "key": cls.a[1]}]}}])
        cls.lb = lbt.LB(cls.addClassCleanup, cfg, workers=1).start()

    def assertServing(self):
        r, _ = https_get(self.tport, sni="a.test")
        self.assertEqual(r.status, 200, r)

    def test_garbage_instead_of_client_hello(self):
        for junk in (b"\x00" * 64, os.urandom(512), b"\x16\x03\x01\x00\x05hello" + os.urandom(40)):
            with self.subTest(junk=junk[:8]):
                with socket.create_connection((HOST, self.tport), timeout=3) as s:
                    s.sendall(junk)
                    s.settimeout(3)
                    try:
                        while s.recv(4096):
                            pass
                    except ConnectionResetError:
                        pass
        self.assertServing()

    def test_plain_http_on_the_tls_port(self):
        """Answered with a plain 400 that says why, as nginx does, then closed."""
        out = rgtest.send_raw(HOST, self.tport, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", timeout=3)
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out)
        self.assertIn(b"application/json", out)
        self.assertIn(b"TLS", out)
        head, _, body = out.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
        self.assertEqual(length, len(body), out)
        self.assertEqual(json.loads(body)["title"], "Bad Request", out)
        self.assertServing()

    def test_trickled_handshake_is_closed(self):
        """A ClientHello trickled a byte every 0.25 s is cut at handshake_timeout (client_timeout)."""
        hello = bytes.fromhex("16030100c8010000c40303") + os.urandom(32)
        with socket.create_connection((HOST, self.tport), timeout=5) as s:
            t0 = time.monotonic()
            closed_after = None
            for b in hello:
                try:
                    s.sendall(bytes([b]))
                except OSError:
                    closed_after = time.monotonic() - t0
                    break
                s.settimeout(0.25)
                try:
                    if s.recv(4096) == b"":
                        closed_after = time.monotonic() - t0
                        break
                except socket.timeout:
                    pass
                except OSError:
                    closed_after = time.monotonic() - t0
                    break
                if time.monotonic() - t0 > 5:
                    break
        self.assertIsNotNone(closed_after, "the trickled handshake was not closed within 5 s")
        self.assertGreater(closed_after, 1.2)
        self.assertLess(closed_after, 3.5)
        self.assertServing()

    def test_2000_half_open_handshakes(self):
        """2,000 connections that never finish a handshake: others are served meanwhile,
        and all 2,000 are closed after the handshake timeout."""
        socks = []
        try:
            for i in range(2000):
                s = socket.create_connection((HOST, self.tport), timeout=5)
                if i % 2:
                    s.sendall(bytes.fromhex("16030100c8010000c40303"))   # a partial ClientHello
                socks.append(s)
            for _ in range(10):
                self.assertServing()
            time.sleep(2.5)
            closed = 0
            for s in socks:
                s.settimeout(0.5)
                try:
                    if s.recv(4096) == b"":
                        closed += 1
                except (ConnectionResetError, socket.timeout):
                    closed += isinstance(sys.exc_info()[1], ConnectionResetError)
            self.assertEqual(closed, 2000)
        finally:
            for s in socks:
                s.close()
        self.assertServing()

    def test_oversized_record(self):
        """A record longer than TLS allows (2^14 + 2048) ends the connection."""
        with socket.create_connection((HOST, self.tport), timeout=3) as s:
            s.sendall(b"\x16\x03\x01\x50\x00" + b"\x01" * 1000)
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
        # An alert record (21) if anything.
        self.assertTrue(data == b"" or data[0] == 21, data[:16])
        self.assertServing()


def scrape(host, port):
    """GET /metrics on a new plain connection, parsed by test_metrics' exposition parser."""
    r = rgtest.http_request(host, port, "GET", "/metrics")
    if r.status != 200:
        raise AssertionError("GET /metrics: %r" % r)
    return tmt.Scrape(r.body.decode("utf-8"))


def handshake_counts(s):
    """{(listener, version, result): n} of roundguard_tls_handshakes_total in a Scrape."""
    out = {}
    for labels, v in s.series("roundguard_tls_handshakes_total").items():
        d = dict(labels)
        out[(d["listener"], d["version"], d["result"])] = v
    return out


def expiry_gauges(s):
    """{(listener, name): Unix time} of roundguard_tls_certificate_expiry_timestamp_seconds."""
    return {(dict(k)["listener"], dict(k)["name"]): v for k, v in
            s.series("roundguard_tls_certificate_expiry_timestamp_seconds").items()}


def trickle_until_closed(port, data, gap=0.2, limit=5.0):
    """Send data a byte every gap seconds until the server closes: seconds it took, or None."""
    with socket.create_connection((HOST, port), timeout=limit) as s:
        t0 = time.monotonic()
        for b in data:
            try:
                s.sendall(bytes([b]))
                s.settimeout(gap)
                if s.recv(4096) == b"":
                    return time.monotonic() - t0
            except socket.timeout:
                pass
            except OSError:
                return time.monotonic() - t0
            if time.monotonic() - t0 > limit:
                return None
    return None


class HandshakeMetricsTests(TLSCase):
    """roundguard_tls_handshakes_total{listener,version,result}: each connection to a TLS
    listener counted once, whichever of the two workers took it, read from /metrics on the
    plain listener as exact deltas; and the certificates' expiry gauge."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a_rsa = cls.ca.issue("a-rsa", ["a.test"], "rsa")	# beside a's ECDSA one
        cls.backend = lbt.echo_backend(cls.addClassCleanup)
        cls.tport = rgtest.free_port()
        cls.sport = rgtest.free_port()
        cfg = lbt.make_config([lbt.url(cls.backend)], health=lbt.FAST, listeners=[
            {"listen": "127.0.0.1:1", "name": "plain"},
            {"listen": "%s:%d" % (HOST, cls.tport), "name": "https",
             "tls": {"certificates": cls.certs(cls.a, cls.a_rsa, cls.w),
                     "handshake_timeout": "1s"}},
            {"listen": "%s:%d" % (HOST, cls.sport), "name": "strict",
             "tls": {"certificates": cls.certs(cls.a), "strict_sni": True,
                     "min_version": "TLSv1.3"}}])
        cls.lb = lbt.LB(cls.addClassCleanup, cfg, workers=2).start()

    def counts(self):
        return handshake_counts(scrape(self.lb.host, self.lb.port))

    def assertHandshakes(self, before, want, timeout=3.0):
        """The counters moved from before by exactly want ({(listener, version, result): n}),
        and nothing else moved, also a moment later (a second count would show then)."""
        def delta():
            now = self.counts()
            d = {k: now.get(k, 0) - before.get(k, 0) for k in set(now) | set(before)}
            return {k: v for k, v in d.items() if v}, now

        deadline = time.monotonic() + timeout
        got, now = delta()
        while got != want and time.monotonic() < deadline:
            time.sleep(0.05)
            got, now = delta()
        self.assertEqual(got, want, "counters now: %r" % now)
        time.sleep(0.3)
        self.assertEqual(delta()[0], want)

    def test_full_handshakes(self):
        before = self.counts()
        for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            r, info = https_get(self.tport, sni="a.test", ctx=client_ctx(minimum=v, maximum=v))
            self.assertEqual((r.status, info["reused"]), (200, False), r)
        self.assertHandshakes(before, {("https", "TLSv1.3", "ok"): 2, ("https", "TLSv1.2", "ok"): 1})

    def test_resumed_handshakes(self):
        """One full handshake, then four resumed ones (tickets work on either worker)."""
        for v, label in ((ssl.TLSVersion.TLSv1_3, "TLSv1.3"), (ssl.TLSVersion.TLSv1_2, "TLSv1.2")):
            with self.subTest(version=label):
                before = self.counts()
                ctx = client_ctx(minimum=v, maximum=v)
                _, info = https_get(self.tport, sni="a.test", ctx=ctx)
                session = info["session"]
                reused = []
                for _ in range(4):
                    r, info = https_get(self.tport, sni="a.test", ctx=ctx, session=session)
                    self.assertEqual(r.status, 200, r)
                    reused.append(info["reused"])
                self.assertEqual(reused, [True] * 4)
                self.assertHandshakes(before, {("https", label, "ok"): 1,
                                               ("https", label, "resumed"): 4})

    def test_unsupported_version(self):
        """TLS 1.1 on the default listener, TLS 1.2 where min_version is TLSv1.3: no version."""
        before = self.counts()
        ctx = client_ctx(minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1,
                         ciphers="DEFAULT:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError):
            https_get(self.tport, sni="a.test", ctx=ctx)
        v12 = ssl.TLSVersion.TLSv1_2
        with self.assertRaises(ssl.SSLError):
            https_get(self.sport, sni="a.test", ctx=client_ctx(minimum=v12, maximum=v12))
        self.assertHandshakes(before, {("https", "unknown", "unsupported_version"): 1,
                                       ("strict", "unknown", "unsupported_version"): 1})

    def test_no_shared_cipher(self):
        """A TLS 1.2 client offering only a cipher outside the list: the version was agreed."""
        before = self.counts()
        v12 = ssl.TLSVersion.TLSv1_2
        ctx = client_ctx(minimum=v12, maximum=v12, ciphers="AES128-SHA:@SECLEVEL=0")
        with self.assertRaises(ssl.SSLError):
            https_get(self.tport, sni="a.test", ctx=ctx)
        self.assertHandshakes(before, {("https", "TLSv1.2", "no_shared_cipher"): 1})

    def test_unknown_name(self):
        """strict_sni refuses an unknown name and no name; a known one is ok."""
        before = self.counts()
        for sni in ("unknown.test", None):
            with self.assertRaises(ssl.SSLError):
                https_get(self.sport, sni=sni)
        r, _ = https_get(self.sport, sni="a.test")
        self.assertEqual(r.status, 200, r)
        self.assertHandshakes(before, {("strict", "TLSv1.3", "unknown_name"): 2,
                                       ("strict", "TLSv1.3", "ok"): 1})

    def test_plain_http(self):
        before = self.counts()
        out = rgtest.send_raw(HOST, self.tport, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", timeout=3)
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out)
        self.assertHandshakes(before, {("https", "unknown", "plain_http"): 1})

    def test_trickled_handshake_times_out(self):
        """A ClientHello trickled a byte every 0.2 s is cut at tls.handshake_timeout (1 s)."""
        before = self.counts()
        took = trickle_until_closed(self.tport, bytes.fromhex("16030100c8010000c40303") +
                                    os.urandom(64))
        self.assertIsNotNone(took, "the trickled handshake was not closed")
        self.assertGreater(took, 0.8)
        self.assertLess(took, 3.0)
        self.assertHandshakes(before, {("https", "unknown", "timeout"): 1})

    def test_closed_and_other(self):
        """Closed (nothing sent; half a ClientHello; a reset) and other (garbage)."""
        before = self.counts()
        with socket.create_connection((HOST, self.tport), timeout=3):
            pass
        with socket.create_connection((HOST, self.tport), timeout=3) as s:
            s.sendall(bytes.fromhex("16030100c8010000c40303"))
            time.sleep(0.1)
        s = socket.create_connection((HOST, self.tport), timeout=3)
        s.sendall(bytes.fromhex("16030100c801"))
        time.sleep(0.1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        with socket.create_connection((HOST, self.tport), timeout=3) as s:
            s.sendall(b"\x00" * 64)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        self.assertHandshakes(before, {("https", "unknown", "closed"): 3,
                                       ("https", "unknown", "other"): 1})

    def test_certificate_expiry_gauge(self):
        """Each listener's certificates by first name, valued notAfter (openssl x509 -enddate);
        a.test's ECDSA and RSA certificates are one series, the earlier of the two."""
        got = expiry_gauges(scrape(self.lb.host, self.lb.port))
        a = tlscerts.not_after(self.a[0])
        self.assertEqual(got, {
            ("https", "a.test"): min(a, tlscerts.not_after(self.a_rsa[0])),
            ("https", "*.b.test"): tlscerts.not_after(self.w[0]),
            ("strict", "a.test"): a,
        })
        self.assertGreater(a, time.time() + 29 * 86400)


class MetricsListenTLSTests(TLSCase):

    def test_tls_metrics_on_metrics_listen(self):
        """With metrics.listen the same families come from there (the worker answering it
        holds the generation's TLS contexts too)."""
        backend = lbt.echo_backend(self.addCleanup)
        tport, mport = rgtest.free_port(), rgtest.free_port()
        lb = self.start([backend], [self.tls_listener(tport, self.certs(self.c), name="site")],
                        metrics={"listen": "%s:%d" % (HOST, mport)})
        self.assertTrue(rgtest.wait_port(HOST, mport, 3))
        for _ in range(3):
            r, _ = https_get(tport, sni="c.test")
            self.assertEqual(r.status, 200, r)
        s = scrape(HOST, mport)
        self.assertEqual(expiry_gauges(s), {("site", "c.test"): tlscerts.not_after(self.c[0])})
        self.assertEqual(handshake_counts(s), {("site", "TLSv1.3", "ok"): 3})
        # /metrics on the plain proxy port is a path like any other there.
        self.assertNotIn(b"# TYPE", lb.request("GET", "/metrics").body)


class ReloadTests(TLSCase):

    def test_reload_carries_handshake_counters_by_listener_name(self):
        """A reload that moves the TLS listener to another index and changes its certificate:
        its handshake counters follow its name, the expiry gauge shows the new certificate."""
        backend = lbt.echo_backend(self.addCleanup)
        tport, oport = rgtest.free_port(), rgtest.free_port()
        site = self.tls_listener(tport, self.certs(self.a), name="site")
        lb = self.start([backend], [site], workers=2)
        for v in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            r, _ = https_get(tport, sni="a.test", ctx=client_ctx(minimum=v, maximum=v))
            self.assertEqual(r.status, 200, r)
        with self.assertRaises(ssl.SSLError):
            https_get(tport, sni="a.test", ctx=client_ctx(
                minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2,
                ciphers="AES128-SHA:@SECLEVEL=0"))
        want = {("site", "TLSv1.3", "ok"): 2, ("site", "TLSv1.2", "ok"): 1,
                ("site", "TLSv1.2", "no_shared_cipher"): 1}
        self.assertTrue(rgtest.wait_until(
            lambda: handshake_counts(scrape(lb.host, lb.port)) == want, 3))
        old_workers = lb.workers()

        cfg = lbt.make_config([lbt.url(backend)], health=lbt.FAST, listeners=[
            {"listen": "127.0.0.1:1", "name": "plain"},
            self.tls_listener(oport, self.certs(self.w), name="other"),
            self.tls_listener(tport, self.certs(self.c), name="site")])
        lb.write_config(cfg)
        mark = lb.d.stderr_mark()
        lb.d.send_signal(signal.SIGHUP)
        self.assertIsNotNone(rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "reloaded",
                                                  8, since=mark), lb.d.stderr_text()[-2000:])
        self.assertTrue(rgtest.wait_until(
            lambda: not [p for p in old_workers if rgtest.pid_alive(p)], 5))
        lb.d.refresh_pids()
        for _ in range(4):		# whichever worker answers
            s = scrape(lb.host, lb.port)
            self.assertEqual(handshake_counts(s), want, s.text)
            self.assertEqual(expiry_gauges(s), {
                ("other", "*.b.test"): tlscerts.not_after(self.w[0]),
                ("site", "c.test"): tlscerts.not_after(self.c[0])})
        r, _ = https_get(tport, sni="c.test")
        self.assertEqual(r.status, 200, r)
        want[("site", "TLSv1.3", "ok")] += 1
        self.assertTrue(rgtest.wait_until(
            lambda: handshake_counts(scrape(lb.host, lb.port)) == want, 3),
            handshake_counts(scrape(lb.host, lb.port)))


    def test_reload_with_new_certificate_under_traffic(self):
        backend = lbt.echo_backend(self.addCleanup)
        tport = rgtest.free_port()
        live = os.path.join(self.dir, "live-%d" % tport)
        os.makedirs(live)
        chain, key = os.path.join(live, "site.pem"), os.path.join(live, "site.key")
        shutil.copy(self.a[0], chain)
        shutil.copy(self.a[1], key)
        lb = self.start([backend], [self.tls_listener(tport, self.certs((chain, key)))], workers=2)
        errors, served = [], []
        halt = threading.Event()

        def load():
            while not halt.is_set():
                try:
                    r, info = https_get(tport, sni="a.test")
                    served.append(info["fingerprint"]) if r.status == 200 else errors.append(r)
                except (OSError, ssl.SSLError) as e:
                    errors.append(e)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        # The new certificate (c.test's, valid for another name: easy to tell apart).
        shutil.copy(self.c[0], chain + ".new")
        shutil.copy(self.c[1], key + ".new")
        os.replace(chain + ".new", chain)
        os.replace(key + ".new", key)
        mark = lb.d.stderr_mark()
        lb.d.send_signal(signal.SIGHUP)
        self.assertIsNotNone(rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "reloaded",
                                                  8, since=mark), lb.d.stderr_text()[-2000:])
        time.sleep(1.0)
        halt.set()
        for t in threads:
            t.join(10)
        self.assertEqual(errors, [])
        self.assertIn(self.fp["a"], served)
        _, info = https_get(tport, sni="a.test")
        self.assertEqual(info["fingerprint"], self.fp["c"])

    def test_reload_with_broken_certificate_keeps_the_old_one(self):
        backend = lbt.echo_backend(self.addCleanup)
        tport = rgtest.free_port()
        live = os.path.join(self.dir, "broken-%d" % tport)
        os.makedirs(live)
        chain, key = os.path.join(live, "site.pem"), os.path.join(live, "site.key")
        shutil.copy(self.a[0], chain)
        shutil.copy(self.a[1], key)
        lb = self.start([backend], [self.tls_listener(tport, self.certs((chain, key)))], workers=1)
        old = self.ca.issue("old-%d" % tport, ["a.test"], "ec", expired=True)
        for what, src in (("mismatched key", (self.a[0], self.c[1])), ("expired", old)):
            with self.subTest(what=what):
                shutil.copy(src[0], chain)
                shutil.copy(src[1], key)
                mark = lb.d.stderr_mark()
                lb.d.send_signal(signal.SIGHUP)
                failed = rgtest.wait_json_log(lb.d, lambda o: o.get("msg", "").startswith("reload failed"),
                                              8, since=mark)
                self.assertIsNotNone(failed, lb.d.stderr_text()[-2000:])
                self.assertIn(chain if what == "expired" else key, json.dumps(failed))
                _, info = https_get(tport, sni="a.test")
                self.assertEqual(info["fingerprint"], self.fp["a"])


def tls_backend(cleanup, chain, key, port=None):
    """A testbackend.py speaking TLS with chain/key; killed by cleanup."""
    d = rgtest.Daemon(sys.executable, ["-u", lbt.TESTBACKEND, "{port}", "ok", "--tls", chain, key],
                      port=port)
    cleanup(d.kill)
    return d.start()


def backend_events(backend, kind):
    return rgtest.stdout_events(backend, event=kind)


def metric(lb, name, **labels):
    """The value of one series of /metrics (summed over workers by roundguardd), or 0."""
    text = lb.request("GET", "/metrics").body.decode()
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        series, _, value = line.rpartition(" ")
        got = series[len(name):].strip("{}")
        if all(part in got.split(",") for part in want.split(",") if part):
            total += float(value)
    return total


class BackendTLSTests(TLSCase):
    """https:// backends: verified against a CA file by name, pooled, resumed, health-checked."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.good = cls.ca.issue("backend", ["backend.test", "127.0.0.1"], "ec")
        cls.expired = cls.ca.issue("backend-old", ["backend.test"], "ec", expired=True)
        other_ca = tlscerts.CA(os.path.join(cls.dir, "other-ca"), name="Someone Else")
        cls.foreign = other_ca.issue("foreign", ["backend.test"], "ec")

    def https_url(self, b):
        return "https://127.0.0.1:%d" % b.port

    def lb_for(self, backends, health=None, workers=1):
        cfg = lbt.make_config(backends, health=health or lbt.FAST)
        lb = lbt.LB(self.addCleanup, cfg, workers=workers).start()
        self.lbs.append(lb)
        return lb

    def test_verified_backend_pooled_and_resumed(self):
        b = tls_backend(self.addCleanup, *self.good)
        lb = self.lb_for([{"url": self.https_url(b),
                           "tls": {"ca_file": self.ca.cert, "server_name": "backend.test"}}])
        # Keep-alive to the backend: 20 requests, few handshakes.
        for i in range(20):
            r = lb.request("GET", "/headers?pooled=%d" % i)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["target"], "/headers?pooled=%d" % i)
        hs = [e for e in backend_events(b, "tls")]
        self.assertTrue(all(e["sni"] == "backend.test" for e in hs), hs)
        data_hs = len(hs)
        self.assertLess(data_hs, 10, hs)
        # The backend closes after each answer: each request needs a new connection,
        # which resumes the worker's last session.
        before = len(backend_events(b, "tls"))
        for i in range(6):
            r = lb.request("GET", "/close")
            self.assertEqual(r.status, 200, r)
        new = backend_events(b, "tls")[before:]
        # (The first may still find a pooled connection.)
        self.assertGreaterEqual(len(new), 5, new)
        # Health checks resume too (the checker keeps its own session); requests' too.
        self.assertGreaterEqual(sum(1 for e in new if e["reused"]), len(new) - 1, new)
        self.assertEqual(metric(lb, "roundguard_upstream_errors_total", reason="tls"), 0)

    def test_ip_url_verified_against_its_address(self):
        b = tls_backend(self.addCleanup, *self.good)
        lb = self.lb_for([{"url": self.https_url(b), "tls": {"ca_file": self.ca.cert}}])
        r = lb.request("GET", "/headers?ip=1")
        self.assertEqual(r.status, 200, r)
        # No SNI for an IP address (RFC 6066 3).
        self.assertTrue(all(e["sni"] is None for e in backend_events(b, "tls")))

    def check_refused(self, cert, tls, reason):
        b = tls_backend(self.addCleanup, *cert)
        lb = self.lb_for([{"url": self.https_url(b), "tls": tls}])
        # The checker's handshake fails the same way: the backend is down, the answer 503.
        line = rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "health check" and
                                    o.get("result") == "TLS handshake failed", 5)
        if line is None:   # failures are debug lines; the transition says it at warn
            line = rgtest.wait_json_log(lb.d, lambda o: o.get("backend", "").endswith(
                ":%d" % b.port) and "TLS" in json.dumps(o), 5)
        self.assertIsNotNone(line, lb.d.stderr_text()[-2000:])
        self.assertIn(reason, json.dumps(line))
        r = lb.request("GET", "/live")
        self.assertEqual(r.status, 503, r)

    def test_wrong_name_refused(self):
        self.check_refused(self.good, {"ca_file": self.ca.cert, "server_name": "other.test"},
                           "hostname mismatch")

    def test_unknown_ca_refused(self):
        self.check_refused(self.foreign, {"ca_file": self.ca.cert, "server_name": "backend.test"},
                           "self-signed certificate in certificate chain")

    def test_expired_refused(self):
        self.check_refused(self.expired, {"ca_file": self.ca.cert, "server_name": "backend.test"},
                           "certificate has expired")

    def test_system_cas_refuse_a_private_ca(self):
        """A plain https:// URL checks against the system CAs: this test CA is not one."""
        self.check_refused(self.good, {"server_name": "backend.test"},
                           "self-signed certificate in certificate chain")

    def test_verify_off(self):
        b = tls_backend(self.addCleanup, *self.foreign)
        lb = self.lb_for([{"url": self.https_url(b), "tls": {"verify": False}}])
        self.assertEqual(lb.request("GET", "/live").status, 200)
        warned = [o for o in lb.logs() if "verification is off" in o.get("msg", "")]
        self.assertEqual(len(warned), 1, lb.logs())

    def test_data_path_tls_failure_retries_and_counts(self):
        """A backend whose certificate stops verifying between health checks: the request
        goes to the next backend (a connect failure), the backend is marked down
        passively, and upstream_errors_total{reason="tls"} counts it."""
        good = tls_backend(self.addCleanup, *self.good)
        flip = tls_backend(self.addCleanup, *self.good)
        tls = {"ca_file": self.ca.cert, "server_name": "backend.test"}
        lb = self.lb_for([{"url": self.https_url(good), "tls": tls},
                          {"url": self.https_url(flip), "tls": tls}],
                         health={"interval": "30s", "timeout": "2s"})
        for _ in range(4):
            self.assertEqual(lb.request("GET", "/close").status, 200)
        # The same port now presents a certificate from another CA.
        port = flip.port
        flip.kill()
        tls_backend(self.addCleanup, *self.foreign, port=port)
        results = [lb.request("GET", "/close") for _ in range(6)]
        self.assertEqual([r.status for r in results], [200] * 6, results)
        self.assertTrue(all(r.header("X-Backend-Server") == "127.0.0.1:%d" % good.port
                            for r in results[1:]), [r.header("X-Backend-Server") for r in results])
        self.assertGreaterEqual(metric(lb, "roundguard_upstream_errors_total", reason="tls"), 1)


if __name__ == "__main__":
    unittest.main()

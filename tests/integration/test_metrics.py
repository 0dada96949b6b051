#!/usr/bin/env python3
"""Integration tests for roundguardd's Prometheus metrics and access log
(issue 4; real daemons on loopback).

Run:
  ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
      python3 tests/integration/test_metrics.py -v

The load balancer is started the way test_lb.py starts it (its LB class,
make_config, echo_backend: JSON logs, waiting for the "ready" line). Every
scrape is parsed with the small exposition parser below and checked as
numbers, not as text.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rgtest  # noqa: E402
import test_lb as lbt  # noqa: E402

HOST = rgtest.DEFAULT_HOST
INTERVAL = lbt.INTERVAL              # FAST health checking: 200 ms interval ...
CHECK_TIMEOUT = lbt.CHECK_TIMEOUT    # ... 100 ms timeout
SLACK = lbt.SLACK
DETECT = INTERVAL + CHECK_TIMEOUT + SLACK
FAST = lbt.FAST
CALM = lbt.CALM
JSON_HDR = lbt.JSON_HDR

GO_BUCKETS = ["10", "50", "200", "500", "800", "1200", "2000", "3500", "5000", "10000", "+Inf"]

# Every family of DESIGN.md "Observability", and the TLS ones of issue 14 (there, empty,
# without a TLS listener; test_tls.py counts them), with its type.
FAMILIES = {
    "proxy_count": "gauge",
    "request_duration_milliseconds": "histogram",
    "roundguard_backend_up": "gauge",
    "roundguard_requests_total": "counter",
    "roundguard_request_duration_seconds": "histogram",
    "roundguard_upstream_errors_total": "counter",
    "roundguard_health_checks_total": "counter",
    "roundguard_no_backend_total": "counter",
    "roundguard_workers": "gauge",
    "roundguard_worker_restarts_total": "counter",
    "roundguard_tls_handshakes_total": "counter",
    "roundguard_tls_certificate_expiry_timestamp_seconds": "gauge",
    "roundguard_build_info": "gauge",
}

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"


def setUpModule():
    lbt.setUpModule()       # sets test_lb.RGD and test_lb.ECHO (fails, not skips, without them)


# ---------------------------------------------------------------------------
# Exposition format parser
# ---------------------------------------------------------------------------

class ExpositionError(ValueError):
    pass


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _parse_labels(s, i, line):
    """Parse {k="v",...} starting at s[i] == "{"; (tuple of sorted (k, v), index after "}")."""
    assert s[i] == "{"
    i += 1
    labels = []
    while True:
        if i < len(s) and s[i] == "}":
            return tuple(sorted(labels)), i + 1
        m = _LABEL.match(s, i)
        if not m:
            raise ExpositionError("bad label name in %r" % line)
        key = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ExpositionError("bad label %r in %r" % (key, line))
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise ExpositionError("unterminated label value in %r" % line)
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ExpositionError("bad escape in %r" % line)
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                val.append(c)
                i += 1
        if any(k == key for k, _ in labels):
            raise ExpositionError("label %r twice in %r" % (key, line))
        labels.append((key, "".join(val)))
        if i < len(s) and s[i] == ",":
            i += 1
        elif i < len(s) and s[i] == "}":
            continue
        else:
            raise ExpositionError("expected , or } in %r" % line)


def _parse_value(v, line):
    if v in ("+Inf", "-Inf", "NaN"):
        return float(v.replace("Inf", "inf").replace("NaN", "nan"))
    try:
        return float(v)
    except ValueError:
        raise ExpositionError("bad value %r in %r" % (v, line))


class Scrape:
    """One parsed exposition: samples {(name, ((label, value), ...)): float},
    types {family: type}, helps {family: text}."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        self.helps = {}
        for line in text.split("\n"):
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] == "TYPE":
                    if parts[2] in self.types:
                        raise ExpositionError("second TYPE line for %s" % parts[2])
                    self.types[parts[2]] = parts[3] if len(parts) > 3 else ""
                elif len(parts) >= 3 and parts[1] == "HELP":
                    self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            m = _NAME.match(line)
            if not m:
                raise ExpositionError("bad sample line %r" % line)
            name, i = m.group(0), m.end()
            labels = ()
            if i < len(line) and line[i] == "{":
                labels, i = _parse_labels(line, i, line)
            rest = line[i:]
            if not rest.startswith(" "):
                raise ExpositionError("no space before the value in %r" % line)
            fields = rest.split()
            if len(fields) not in (1, 2):
                raise ExpositionError("bad value part in %r" % line)
            key = (name, labels)
            if key in self.samples:
                raise ExpositionError("duplicate series %r" % line)
            self.samples[key] = _parse_value(fields[0], line)

    # -- lookups ------------------------------------------------------------

    def series(self, name, **match):
        """{labels dict as sorted tuple: value} of samples called name whose
        labels include match."""
        out = {}
        for (n, labels), v in self.samples.items():
            if n != name:
                continue
            d = dict(labels)
            if all(d.get(k) == str(want) for k, want in match.items()):
                out[labels] = v
        return out

    def total(self, name, **match):
        return sum(self.series(name, **match).values())

    def get(self, name, **labels):
        """The value of the sample with exactly these labels, or None."""
        key = (name, tuple(sorted((k, str(v)) for k, v in labels.items())))
        return self.samples.get(key)

    def family_of(self, name):
        if name in self.types:
            return name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and self.types.get(base) == "histogram":
                return base
        return None

    def monotonic(self):
        """The samples that must never go down: every counter, and every
        histogram's _bucket, _sum and _count."""
        out = {}
        for key, v in self.samples.items():
            fam = self.family_of(key[0])
            if fam is not None and self.types[fam] in ("counter", "histogram"):
                out[key] = v
        return out

    def without(self, *families):
        return {k: v for k, v in self.samples.items() if self.family_of(k[0]) not in families}


def fmt_series(key):
    name, labels = key
    if not labels:
        return name
    return "%s{%s}" % (name, ",".join('%s="%s"' % kv for kv in labels))


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def worker_index(pid):
    """N of a process titled "roundguardd: worker N" (titles may carry padding), or None."""
    m = re.search(r"roundguardd: worker (\d+)\b", rgtest.cmdline(pid) or "")
    return m.group(1) if m else None


def http_get(host, port, path, method="GET", timeout=5.0):
    return rgtest.http_request(host, port, method, path, timeout=timeout)


def raw_exchange(host, port, data, timeout=5.0):
    """Send one request (which asks for Connection: close) on a new
    connection; (every byte received until the server closed, Response)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep:
        raise AssertionError("incomplete response %r" % out[:300])
    lines = head.decode("latin-1").split("\r\n")
    version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
    headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
    return out, rgtest.Response(version, int(status), reason, headers, body)


class MetricsTestCase(lbt.LBTestCase):

    def scrape(self, host, port, path="/metrics"):
        """GET path on a new connection: a parsed Scrape (asserting 200 and the
        exposition content type)."""
        r = http_get(host, port, path)
        self.assertEqual(r.status, 200, r)
        ct = (r.header("Content-Type") or "").replace(" ", "")
        self.assertTrue(ct.startswith(METRICS_CONTENT_TYPE.replace(" ", "")),
                        "Content-Type %r of %r" % (ct, r))
        self.assertIsNone(r.header("X-Backend-Server"), "metrics were proxied: %r" % r)
        try:
            return Scrape(r.body.decode("utf-8"))
        except (UnicodeDecodeError, ExpositionError) as e:
            self.fail("unparseable exposition (%s):\n%s" % (e, r.body.decode("utf-8", "replace")))

    def lb_scrape(self, lb):
        return self.scrape(lb.host, lb.port)

    def wait_scrape(self, lb, cond, timeout, port=None):
        """Scrape every 50 ms until cond(scrape) holds; the last scrape (check it)."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.scrape(lb.host, port or lb.port)
            if cond(s) or time.monotonic() >= deadline:
                return s
            time.sleep(0.05)

    def assertFamilies(self, s):
        """Every family of DESIGN.md with HELP and its TYPE; no sample outside them."""
        for fam, typ in FAMILIES.items():
            self.assertEqual(s.types.get(fam), typ, "TYPE of %s in:\n%s" % (fam, s.text))
            self.assertTrue(s.helps.get(fam), "no HELP for %s" % fam)
        stray = sorted({k[0] for k in s.samples if s.family_of(k[0]) is None})
        self.assertFalse(stray, "samples without a TYPE line: %r" % stray)

    def assertHistogramsConsistent(self, s):
        """Buckets cumulative (never decreasing with le), +Inf == _count, for every series."""
        for fam, typ in s.types.items():
            if typ != "histogram":
                continue
            groups = {}
            for labels, v in s.series(fam + "_bucket").items():
                d = dict(labels)
                le = d.pop("le")
                groups.setdefault(tuple(sorted(d.items())), []).append((le, v))
            for base, buckets in groups.items():
                buckets.sort(key=lambda lv: float(lv[0].replace("+Inf", "inf")))
                vals = [v for _, v in buckets]
                what = "%s%r" % (fam, base)
                self.assertEqual(vals, sorted(vals), "buckets not cumulative: %s %r" % (what, buckets))
                self.assertEqual(buckets[-1][0], "+Inf", what)
                count = s.get(fam + "_count", **dict(base))
                self.assertIsNotNone(count, "no _count for %s" % what)
                self.assertEqual(buckets[-1][1], count, "+Inf bucket != _count for %s" % what)
                self.assertIsNotNone(s.get(fam + "_sum", **dict(base)), "no _sum for %s" % what)
                if fam == "request_duration_milliseconds":
                    self.assertEqual([le for le, _ in buckets], GO_BUCKETS, what)

    def assertNotLower(self, before, after, what, keys=None):
        """Every monotonic series of before is in after with a value not lower."""
        lower, gone = [], []
        b, a = before.monotonic(), after.monotonic()
        for key, v in b.items():
            if keys is not None and not keys(key):
                continue
            if key not in a:
                gone.append(fmt_series(key))
            elif a[key] < v:
                lower.append("%s %g -> %g" % (fmt_series(key), v, a[key]))
        self.assertFalse(gone, "%s: series disappeared: %s" % (what, gone[:20]))
        self.assertFalse(lower, "%s: counters went down: %s" % (what, lower[:20]))

    def request_lines(self, lb, since=0):
        """The JSON access-log objects (msg "request") in lb's stderr from line since on."""
        text = "\n".join(lb.d.stderr_lines()[since:])
        return [o for o in rgtest.json_log_objects(text) if o.get("msg") == "request"]


def traffic(lb, k, tag="t"):
    """k requests: a third GET /live and a third POST /reflect on new
    connections, a third alternating on keep-alive connections of 10
    requests. Returns the list of (method, Response)."""
    out = []
    n_new = k - k // 3
    for i in range(n_new):
        if i % 2 == 0:
            out.append(("GET", lb.request("GET", "/live?%s=%d" % (tag, i))))
        else:
            out.append(("POST", lb.request("POST", "/reflect", b'{"%s":%d}' % (tag.encode(), i),
                                           JSON_HDR)))
    left = k - n_new
    while left > 0:
        conn = http.client.HTTPConnection(lb.host, lb.port, timeout=5)
        try:
            for j in range(min(10, left)):
                if j % 2 == 0:
                    out.append(("GET", rgtest.conn_request(conn, "GET", "/live?%s=ka%d" % (tag, left))))
                else:
                    out.append(("POST", rgtest.conn_request(conn, "POST", "/reflect", b"[%d]" % left,
                                                            JSON_HDR)))
                left -= 1
        finally:
            conn.close()
    return out


# ---------------------------------------------------------------------------
# 1. Totals over workers and backends, scraped from different connections
# ---------------------------------------------------------------------------

class CountingTests(MetricsTestCase):

    def test_totals_exact_over_workers_and_scrapes(self):
        K = 300
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        addrs = {b.address for b in backends}
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(b) for b in backends], health=CALM,
                                                     log={"access": True}), workers=2).start()
        before = self.lb_scrape(lb)
        self.assertFamilies(before)
        self.assertEqual(before.total("roundguard_requests_total"), 0, before.text)
        mark = lb.d.stderr_mark()
        rs = traffic(lb, K)
        bad = [(m, r) for m, r in rs if r.status != 200 or r.header("X-Backend-Server") not in addrs]
        self.assertFalse(bad, bad[:5])
        n_get = sum(1 for m, _ in rs if m == "GET")
        n_post = K - n_get

        # Recording may trail the last answer by a moment; then it must be exact.
        s = self.wait_scrape(lb, lambda s: s.total("request_duration_milliseconds_count") >= K, 2.0)
        scrapes = [s]
        # Scrape on new connections until both workers have answered one (the
        # access log says which worker served each scrape), at least 6 times.
        workers_seen = set()
        for i in range(60):
            scrapes.append(self.lb_scrape(lb))
            if len(scrapes) >= 7 and i % 5 == 4:
                time.sleep(0.25)      # access log flushed at least every 100 ms
                workers_seen = {o.get("worker") for o in self.request_lines(lb, mark)
                                if o.get("path") == "/metrics"}
                if len(workers_seen) >= 2:
                    break
        self.assertGreaterEqual(len(workers_seen), 2,
                                "all %d scrapes answered by worker(s) %r" % (len(scrapes), workers_seen))
        served_by = {o.get("worker") for o in self.request_lines(lb, mark) if o.get("path") != "/metrics"}
        self.assertEqual(served_by, {"0", "1"}, "requests not spread over both workers")

        for i, s in enumerate(scrapes):
            with self.subTest(scrape=i):
                self.assertFamilies(s)
                self.assertHistogramsConsistent(s)
                self.assertEqual(s.total("request_duration_milliseconds_count"), K, s.text)
                self.assertEqual(s.total("roundguard_requests_total"), K, s.text)
                self.assertEqual(s.total("roundguard_request_duration_seconds_count"), K, s.text)
                # Strict round robin: K / 3 through each backend, all 200.
                for b in addrs:
                    self.assertEqual(s.total("roundguard_requests_total", backend=b), K // 3, b)
                    self.assertEqual(s.get("roundguard_requests_total", backend=b, code="200"), K // 3, b)
                    self.assertEqual(s.total("request_duration_milliseconds_count", target=b), K // 3, b)
                    self.assertEqual(s.get("roundguard_request_duration_seconds_count", backend=b),
                                     K // 3, b)
                    self.assertEqual(s.get("roundguard_backend_up", backend=b), 1, b)
                self.assertEqual(s.total("request_duration_milliseconds_count", method="GET"), n_get)
                self.assertEqual(s.total("request_duration_milliseconds_count", method="POST"), n_post)
                self.assertEqual(s.total("request_duration_milliseconds_count", scope="proxy"), K)
                self.assertEqual(s.total("request_duration_milliseconds_count", status="success"), K)
                self.assertEqual({dict(l)["target"] for l in s.series("request_duration_milliseconds_count")},
                                 addrs)
                self.assertEqual(s.get("proxy_count", availability="available"), 3)
                self.assertEqual(s.get("proxy_count", availability="unavailable"), 0)
                self.assertEqual(s.get("roundguard_workers"), 2)
                self.assertEqual(s.get("roundguard_worker_restarts_total"), 0)
                self.assertEqual(s.get("roundguard_no_backend_total"), 0)
                self.assertEqual(s.total("roundguard_upstream_errors_total"), 0)
                self.assertEqual(len(s.series("roundguard_build_info")), 1)
                self.assertEqual(list(s.series("roundguard_build_info").values()), [1])
                # Sums are plausible: positive, and not more than the test's own wall time.
                sec_sum = s.total("roundguard_request_duration_seconds_sum")
                ms_sum = s.total("request_duration_milliseconds_sum")
                self.assertGreater(sec_sum, 0)
                self.assertAlmostEqual(ms_sum / 1000.0, sec_sum, delta=0.01 + sec_sum * 0.01)
        # No traffic in between: every scrape identical (health checks tick on their own).
        first = scrapes[0].without("roundguard_health_checks_total")
        for i, s in enumerate(scrapes[1:], 1):
            self.assertEqual(s.without("roundguard_health_checks_total"), first,
                             "scrape %d differs from the first" % i)


# ---------------------------------------------------------------------------
# 2. Backend availability gauges
# ---------------------------------------------------------------------------

class AvailabilityTests(MetricsTestCase):

    def test_killed_backend_unavailable_then_back(self):
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(b) for b in backends], health=FAST),
                    workers=2).start()
        s = self.lb_scrape(lb)
        self.assertEqual(s.get("proxy_count", availability="available"), 3, s.text)
        self.assertEqual(s.get("proxy_count", availability="unavailable"), 0, s.text)
        victim = backends[1]
        fails_before = s.get("roundguard_health_checks_total", backend=victim.address, result="failure")
        t0 = time.monotonic()
        victim.kill()
        s = self.wait_scrape(lb, lambda s: s.get("proxy_count", availability="unavailable") == 1, DETECT)
        took = time.monotonic() - t0
        self.assertEqual(s.get("proxy_count", availability="unavailable"), 1,
                         "not unavailable within %.1f s:\n%s" % (DETECT, s.text))
        self.assertLess(took, DETECT + 0.2)
        self.assertEqual(s.get("proxy_count", availability="available"), 2, s.text)
        self.assertEqual(s.get("roundguard_backend_up", backend=victim.address), 0, s.text)
        for b in (backends[0], backends[2]):
            self.assertEqual(s.get("roundguard_backend_up", backend=b.address), 1, s.text)
        self.assertGreater(s.get("roundguard_health_checks_total", backend=victim.address,
                                 result="failure"), fails_before, s.text)

        again = rgtest.Daemon(lbt.ECHO, ["-l", "{host}", "-p", "{port}", "-w", "1"], port=victim.port)
        self.addCleanup(again.kill)
        again.start()
        s = self.wait_scrape(lb, lambda s: s.get("roundguard_backend_up", backend=victim.address) == 1,
                             DETECT)
        self.assertEqual(s.get("roundguard_backend_up", backend=victim.address), 1,
                         "restarted backend not up within %.1f s:\n%s" % (DETECT, s.text))
        self.assertEqual(s.get("proxy_count", availability="available"), 3, s.text)
        self.assertEqual(s.get("proxy_count", availability="unavailable"), 0, s.text)


# ---------------------------------------------------------------------------
# 3. A worker killed: no counter goes down
# ---------------------------------------------------------------------------

class WorkerRestartTests(MetricsTestCase):

    def test_killed_worker_keeps_counters(self):
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(2)]
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(b) for b in backends], health=CALM),
                    workers=2).start()
        K1 = 120
        rs = traffic(lb, K1, "a")
        # and a few non-200 answers, so more series exist
        for path in ("/nope", "/nope", "/other"):
            rs.append(("GET", lb.request("GET", path)))
        rs.append(("POST", lb.request("POST", "/reflect", b"{bad", JSON_HDR)))
        total1 = len(rs)
        before = self.wait_scrape(lb, lambda s: s.total("roundguard_requests_total") >= total1, 2.0)
        self.assertEqual(before.total("roundguard_requests_total"), total1, before.text)
        self.assertEqual(before.total("roundguard_requests_total", code="404"), 3, before.text)
        self.assertEqual(before.total("roundguard_requests_total", code="400"), 1, before.text)
        restarts = before.get("roundguard_worker_restarts_total")
        self.assertEqual(restarts, 0)

        # Let both workers have counted something (they did, with > 100 new
        # connections over SO_REUSEPORT); kill each in turn, one at a time.
        for victim_no in range(2):
            workers = lb.workers()
            self.assertEqual(len(workers), 2, {p: rgtest.cmdline(p) for p in lb.children()})
            victim = [p for p in workers if worker_index(p) == str(victim_no)]
            self.assertEqual(len(victim), 1, {p: rgtest.cmdline(p) for p in workers})
            snap = self.lb_scrape(lb)
            os.kill(victim[0], signal.SIGKILL)
            new = rgtest.wait_until(lambda: [w for w in lb.workers() if w not in workers], timeout=5)
            self.assertTrue(new, "no worker respawned within 5 s; children %r" % lb.children())
            lb.d.refresh_pids()
            # several scrapes on new connections, so the new worker answers too
            for i in range(8):
                after = self.lb_scrape(lb)
                self.assertNotLower(snap, after, "after worker %d was killed (scrape %d)" % (victim_no, i))
                self.assertEqual(after.total("roundguard_requests_total"), total1, after.text)
                self.assertEqual(after.total("request_duration_milliseconds_count"), total1)
                self.assertEqual(after.total("roundguard_request_duration_seconds_count"), total1)
            self.assertEqual(after.get("roundguard_worker_restarts_total"), restarts + 1, after.text)
            restarts += 1
            self.assertEqual(after.get("roundguard_workers"), 2)

        # The respawned workers count on top of what their slots held.
        K2 = 60
        rs2 = traffic(lb, K2, "b")
        self.assertFalse([r for _, r in rs2 if r.status != 200])
        s = self.wait_scrape(lb, lambda s: s.total("roundguard_requests_total") >= total1 + K2, 2.0)
        self.assertNotLower(before, s, "after more traffic")
        self.assertEqual(s.total("roundguard_requests_total"), total1 + K2, s.text)
        self.assertEqual(s.total("request_duration_milliseconds_count"), total1 + K2, s.text)
        self.assertEqual(s.total("roundguard_request_duration_seconds_count"), total1 + K2, s.text)
        self.assertEqual(s.get("roundguard_worker_restarts_total"), 2, s.text)
        self.assertHistogramsConsistent(s)


# ---------------------------------------------------------------------------
# 4. SIGHUP reload keeps totals of the backends that remain
# ---------------------------------------------------------------------------

class ReloadTests(MetricsTestCase):

    def test_reload_carries_totals(self):
        old = [lbt.echo_backend(self.addCleanup) for _ in range(2)]
        extra = lbt.echo_backend(self.addCleanup)
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(b) for b in old], health=FAST),
                    workers=2).start()
        K1 = 60
        rs = traffic(lb, K1, "r")
        self.assertFalse([r for _, r in rs if r.status != 200])
        lb.request("GET", "/missing")          # a 404 series too
        K1 += 1
        before = self.wait_scrape(lb, lambda s: s.total("roundguard_requests_total") >= K1, 2.0)
        self.assertEqual(before.total("roundguard_requests_total"), K1, before.text)
        old_workers = lb.workers()
        old_checker = lb.checkers()

        mark = lb.d.stderr_mark()
        lb.write_config(lbt.make_config([lbt.url(b) for b in old + [extra]], health=FAST))
        lb.d.send_signal(signal.SIGHUP)
        reloaded = rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "reloaded", timeout=5, since=mark)
        self.assertIsNotNone(reloaded, "no \"reloaded\" within 5 s; stderr:\n%s"
                             % lb.d.stderr_text()[-3000:])
        gone = rgtest.wait_until(
            lambda: not [p for p in old_workers + old_checker if rgtest.pid_alive(p)], timeout=5)
        self.assertTrue(gone, "old generation still running 5 s after the reload")
        lb.d.refresh_pids()
        old_addrs = {b.address for b in old}

        def remaining(key):
            d = dict(key[1])
            return d.get("backend", d.get("target")) in old_addrs or not ({"backend", "target"} & set(d))

        # the carry happens when the master has reaped the old generation
        after = self.wait_scrape(
            lb, lambda s: s.total("roundguard_requests_total") >= K1 and
            s.get("roundguard_backend_up", backend=extra.address) == 1, 2.0)
        self.assertNotLower(before, after, "after the reload", keys=remaining)
        self.assertEqual(after.total("roundguard_requests_total"), K1, after.text)
        self.assertEqual(after.total("request_duration_milliseconds_count"), K1, after.text)
        self.assertEqual(after.total("roundguard_request_duration_seconds_count"), K1, after.text)
        for b in old_addrs:
            self.assertEqual(after.total("roundguard_requests_total", backend=b),
                             before.total("roundguard_requests_total", backend=b), b)
        self.assertEqual(after.get("roundguard_backend_up", backend=extra.address), 1, after.text)
        self.assertEqual(after.get("proxy_count", availability="available"), 3, after.text)
        self.assertEqual(after.get("roundguard_request_duration_seconds_count", backend=extra.address), 0)
        self.assertIsNotNone(after.get("roundguard_health_checks_total", backend=extra.address,
                                       result="success"), after.text)
        # Every scrape from now on (whichever worker) agrees, and new traffic adds up.
        for _ in range(6):
            s = self.lb_scrape(lb)
            self.assertEqual(s.total("roundguard_requests_total"), K1, s.text)
        rs = traffic(lb, 30, "r2")
        self.assertEqual({r.header("X-Backend-Server") for _, r in rs}, old_addrs | {extra.address})
        s = self.wait_scrape(lb, lambda s: s.total("roundguard_requests_total") >= K1 + 30, 2.0)
        self.assertEqual(s.total("roundguard_requests_total"), K1 + 30, s.text)
        self.assertEqual(s.total("roundguard_requests_total", backend=extra.address), 10, s.text)
        self.assertHistogramsConsistent(s)

    def test_counters_hold_while_old_generation_drains(self):
        """A slow exchange keeps the old workers draining for seconds after a
        reload; no scrape in that window may show a counter lower than before."""
        slow = lbt.py_backend(self.addCleanup)
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(slow)], health=FAST),
                    workers=2).start()
        K = 40
        for i in range(K):
            self.assertEqual(lb.request("GET", "/live").status, 200)
        before = self.wait_scrape(lb, lambda s: s.total("roundguard_requests_total") >= K, 2.0)
        self.assertEqual(before.total("roundguard_requests_total"), K, before.text)
        result = {}

        def slow_request():
            result["r"] = lb.attempt("GET", "/slow?ms=2500", timeout=10)

        t = threading.Thread(target=slow_request)
        t.start()
        self.addCleanup(t.join, 10)
        time.sleep(0.3)
        mark = lb.d.stderr_mark()
        lb.d.send_signal(signal.SIGHUP)
        reloaded = rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "reloaded",
                                        timeout=5, since=mark)
        self.assertIsNotNone(reloaded, lb.d.stderr_text()[-3000:])
        lowest = None
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            s = self.lb_scrape(lb)
            self.assertNotLower(before, s, "while the old generation drains")
            total = s.total("roundguard_requests_total")
            lowest = total if lowest is None else min(lowest, total)
            time.sleep(0.1)
        self.assertGreaterEqual(lowest, K)
        t.join(10)
        self.assertEqual(result["r"].status, 200, result)
        after = self.wait_scrape(lb, lambda s: s.total("roundguard_requests_total") >= K + 1, 5.0)
        self.assertEqual(after.total("roundguard_requests_total"), K + 1, after.text)


# ---------------------------------------------------------------------------
# 5. No backend, upstream errors
# ---------------------------------------------------------------------------

class ErrorCountTests(MetricsTestCase):

    def test_no_backend_total_counts_503s(self):
        ports = [rgtest.free_port(), rgtest.free_port()]
        lb = lbt.LB(self.addCleanup, lbt.make_config(["http://127.0.0.1:%d" % p for p in ports],
                                                     health=FAST), workers=2).start()
        s0 = self.lb_scrape(lb)
        self.assertEqual(s0.get("roundguard_no_backend_total"), 0, s0.text)
        self.assertEqual(s0.get("proxy_count", availability="available"), 0, s0.text)
        self.assertEqual(s0.get("proxy_count", availability="unavailable"), 2, s0.text)
        N = 0
        for method, body in (("GET", None), ("POST", b"{}"), ("DELETE", None), ("GET", None),
                             ("PUT", b"x"), ("GET", None), ("GET", None)):
            r = lb.request(method, "/x", body)
            self.assertEqual(r.status, 503, r)
            N += 1
        with lb.raw() as c:            # keep-alive connection: three more
            for _ in range(3):
                c.request("GET", "/ka")
                self.assertEqual(c.read_response().status, 503)
                N += 1
        s = self.wait_scrape(lb, lambda s: s.get("roundguard_no_backend_total") >= N, 2.0)
        for _ in range(4):
            self.assertEqual(s.get("roundguard_no_backend_total"), N, s.text)
            self.assertEqual(s.total("roundguard_requests_total"), 0, s.text)
            self.assertEqual(s.total("roundguard_upstream_errors_total"), 0, s.text)
            s = self.lb_scrape(lb)
        for p in ports:
            self.assertEqual(s.get("roundguard_backend_up", backend="127.0.0.1:%d" % p), 0, s.text)
            self.assertGreater(s.get("roundguard_health_checks_total", backend="127.0.0.1:%d" % p,
                                     result="failure"), 0, s.text)

    def test_connect_refused_counted(self):
        a, b = lbt.echo_backend(self.addCleanup), lbt.echo_backend(self.addCleanup)
        # The checker will not look again for a minute: only the workers notice.
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(a), lbt.url(b)],
                                                     health={"interval": "60s", "timeout": "1s"}),
                    workers=2).start()
        s = self.lb_scrape(lb)
        self.assertEqual(s.get("roundguard_backend_up", backend=a.address), 1, s.text)
        a.kill()
        time.sleep(0.1)
        rs = []
        for i in range(8):
            if i % 2:
                rs.append(lb.request("POST", "/reflect", b'{"i":%d}' % i, JSON_HDR))
            else:
                rs.append(lb.request("GET", "/live"))
        self.assertEqual([r.status for r in rs], [200] * 8, rs)
        self.assertEqual({r.header("X-Backend-Server") for r in rs}, {b.address})
        s = self.wait_scrape(lb, lambda s: s.total("roundguard_requests_total") >= 8, 2.0)
        errs = s.series("roundguard_upstream_errors_total")
        self.assertEqual(s.get("roundguard_upstream_errors_total", backend=a.address,
                               reason="connect_refused"), 1,
                         "want exactly one refused connect (then the live bit is cleared):\n%s" % s.text)
        self.assertEqual(sum(errs.values()), 1, errs)
        self.assertEqual(s.get("roundguard_backend_up", backend=a.address), 0, s.text)
        self.assertEqual(s.get("proxy_count", availability="unavailable"), 1, s.text)
        self.assertEqual(s.total("roundguard_requests_total", backend=b.address), 8, s.text)
        self.assertEqual(s.total("roundguard_requests_total", backend=a.address), 0, s.text)
        self.assertEqual(s.get("roundguard_no_backend_total"), 0, s.text)


# ---------------------------------------------------------------------------
# 6. promtool check metrics on a live scrape
# ---------------------------------------------------------------------------

# The Go version's names draw these lints; they are kept on purpose.
KNOWN_LINT = re.compile(r"^(proxy_count|request_duration_milliseconds) ")


class PromtoolTests(MetricsTestCase):

    def test_promtool_check_metrics_live_scrape(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool not installed (Debian package prometheus)")
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(2)]
        dead = rgtest.free_port()
        lb = lbt.LB(self.addCleanup,
                    lbt.make_config([lbt.url(b) for b in backends] + ["http://127.0.0.1:%d" % dead],
                                    health=FAST), workers=2).start()
        rs = traffic(lb, 30, "p")
        lb.request("GET", "/nope")
        lb.request("POST", "/reflect", b"{bad", JSON_HDR)
        lb.request("DELETE", "/live")
        self.assertFalse([r for _, r in rs if r.status != 200])
        r = http_get(lb.host, lb.port, "/metrics")
        self.assertEqual(r.status, 200, r)
        s = Scrape(r.body.decode())
        self.assertFamilies(s)
        p = subprocess.run([promtool, "check", "metrics"], input=r.body, capture_output=True,
                           timeout=30)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        complaints = [line for line in out.splitlines() if line.strip() and not KNOWN_LINT.match(line)]
        self.assertIn(p.returncode, (0, 3), "promtool check metrics exited %d:\n%s" % (p.returncode, out))
        self.assertFalse(complaints, "promtool check metrics complained:\n%s\n--- scrape:\n%s"
                         % (out, r.body.decode()[:3000]))


# ---------------------------------------------------------------------------
# 7. metrics.listen
# ---------------------------------------------------------------------------

class MetricsListenTests(MetricsTestCase):

    def test_metrics_on_own_listener_only(self):
        b = lbt.echo_backend(self.addCleanup)
        mport = rgtest.free_port()
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(b)], health=FAST,
                                                     metrics={"listen": "127.0.0.1:%d" % mport}),
                    workers=2).start()
        self.assertTrue(rgtest.wait_port(HOST, mport, 3), "nothing listens on metrics.listen")
        s = self.scrape(HOST, mport)
        self.assertFamilies(s)
        self.assertEqual(s.get("roundguard_backend_up", backend=b.address), 1, s.text)
        # the query string does not matter
        self.scrape(HOST, mport, "/metrics?x=1")
        for path in ("/other", "/", "/metricsx", "/live"):
            r = http_get(HOST, mport, path)
            self.assertEqual(r.status, 404, (path, r))
            self.assertIsNone(r.header("X-Backend-Server"), (path, r))
        # On the proxy port, /metrics is a path like any other: the echo answers 404.
        for _ in range(4):                   # new connections: whichever worker
            r = lb.request("GET", "/metrics")
            self.assertEqual(r.status, 404, r)
            self.assertEqual(r.header("X-Backend-Server"), b.address, r)
            self.assertNotIn(b"# TYPE", r.body, r)
        s = self.wait_scrape(lb, lambda s: s.total("roundguard_requests_total") >= 4, 2.0, port=mport)
        self.assertEqual(s.get("roundguard_requests_total", backend=b.address, code="404"), 4, s.text)
        self.assertEqual(s.total("roundguard_requests_total"), 4, s.text)


# ---------------------------------------------------------------------------
# 8. Access log
# ---------------------------------------------------------------------------

ACCESS_FIELDS = ("client", "method", "path", "status", "bytes", "duration", "backend", "worker")
GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:h|m|s|ms|us|µs|ns))+$|^0$")
DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def go_duration_seconds(text):
    if text == "0":
        return 0.0
    return sum(float(n) * DURATION_UNITS[u]
               for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)", text))


def req_bytes(method, target, body=None, close=True):
    headers = [("Connection", "close")] if close else []
    if body is not None:
        headers.append(("Content-Type", "application/json"))
    return rgtest.build_request(method, target, body=body, headers=headers)


class AccessLogTests(MetricsTestCase):

    def test_one_line_per_request_with_matching_fields(self):
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(2)]
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(b) for b in backends], health=CALM,
                                                     log={"access": True}), workers=2).start()
        mark = lb.d.stderr_mark()
        plan = [("GET", "/live", None), ("POST", "/reflect", b'{"a":[1,2,3]}'),
                ("POST", "/reflect", b"{nope"), ("GET", "/nothing-here", None),
                ("DELETE", "/live", None), ("HEAD", "/live", None), ("PUT", "/reflect", b"{}")]
        done = {}
        for i in range(28):
            method, path, body = plan[i % len(plan)]
            target = "%s?n=%d" % (path, i)
            raw, r = raw_exchange(lb.host, lb.port, req_bytes(method, target, body))
            done[target] = (method, raw, r)
        # a scrape is logged too, without a backend
        scrape_raw, r = raw_exchange(lb.host, lb.port, req_bytes("GET", "/metrics?n=scrape"))
        self.assertEqual(r.status, 200, r)
        time.sleep(0.3)        # flushed at least every 100 ms
        lines = self.request_lines(lb, mark)
        by_path = {}
        for o in lines:
            by_path.setdefault(o.get("path"), []).append(o)
        self.assertEqual(len(lines), len(done) + 1,
                         "want one line per request:\n%s" % "\n".join(map(json.dumps, lines)))
        worker_titles = {str(p): worker_index(p) for p in lb.workers()}
        for target, (method, raw, r) in done.items():
            with self.subTest(target=target):
                got = by_path.get(target, [])
                self.assertEqual(len(got), 1, "lines for %s: %r" % (target, got))
                o = got[0]
                for f in ACCESS_FIELDS:
                    self.assertIn(f, o, o)
                self.assertEqual(o.get("level"), "info", o)
                self.assertEqual(o.get("proc"), "worker", o)
                self.assertEqual(o["client"], "127.0.0.1", o)
                self.assertEqual(o["method"], method, o)
                self.assertEqual(str(o["status"]), str(r.status), (o, r))
                self.assertEqual(o["backend"], r.header("X-Backend-Server"), (o, r))
                self.assertEqual(int(o["bytes"]), len(raw), (o, raw[:300]))
                self.assertRegex(str(o["duration"]), GO_DURATION)
                self.assertLess(go_duration_seconds(str(o["duration"])), 5.0, o)
                self.assertIn(str(o["worker"]), ("0", "1"), o)
                # the worker that wrote it is titled with its index
                self.assertEqual(worker_titles.get(str(o.get("pid"))), str(o["worker"]),
                                 (o, worker_titles))
        statuses = {str(o["status"]) for o in lines}
        self.assertTrue({"200", "400", "404", "405"} <= statuses, statuses)
        scrape = by_path.get("/metrics?n=scrape", [])
        self.assertEqual(len(scrape), 1, scrape)
        self.assertEqual(scrape[0]["backend"], "-", scrape[0])
        self.assertEqual(str(scrape[0]["status"]), "200", scrape[0])
        self.assertEqual(int(scrape[0]["bytes"]), len(scrape_raw), scrape[0])

    def test_bytes_of_chunked_and_dechunked_answers(self):
        """bytes is what went to the client, also when the body is re-framed: an
        HTTP/1.0 client gets a chunked answer de-chunked (the body is copied out
        while llhttp parses it, a path of its own in the byte count)."""
        b = lbt.py_backend(self.addCleanup)
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(b)], health=CALM, log={"access": True}),
                    workers=1).start()
        mark = lb.d.stderr_mark()
        raw11, r11 = raw_exchange(lb.host, lb.port, req_bytes("GET", "/chunked?v=11"))
        raw10, r10 = raw_exchange(lb.host, lb.port,
                                  rgtest.build_request("GET", "/chunked?v=10", version="HTTP/1.0"))
        self.assertEqual(r11.status, 200, r11)
        self.assertEqual(r10.status, 200, r10)
        self.assertIn(b"Transfer-Encoding: chunked", raw11.partition(b"\r\n\r\n")[0])
        self.assertNotIn(b"chunked", raw10.partition(b"\r\n\r\n")[0].lower())
        time.sleep(0.3)        # flushed at least every 100 ms
        by_path = {o.get("path"): o for o in self.request_lines(lb, mark)}
        for path, raw in (("/chunked?v=11", raw11), ("/chunked?v=10", raw10)):
            with self.subTest(path=path):
                self.assertIn(path, by_path, by_path)
                self.assertEqual(int(by_path[path]["bytes"]), len(raw), by_path[path])

    def test_lines_flushed_at_sigterm(self):
        b = lbt.echo_backend(self.addCleanup)
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(b)], health=CALM, log={"access": True}),
                    workers=2).start()
        mark = lb.d.stderr_mark()
        N = 40
        conns = [http.client.HTTPConnection(lb.host, lb.port, timeout=5) for _ in range(2)]
        try:
            for i in range(N):
                if i % 4 == 0:
                    r = lb.request("GET", "/live?sig=%d" % i)
                else:
                    r = rgtest.conn_request(conns[i % 2], "GET", "/live?sig=%d" % i)
                self.assertEqual(r.status, 200, r)
        finally:
            for c in conns:
                c.close()
        rc, _ = lb.d.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, lb.d.stderr_text()[-3000:])
        lines = self.request_lines(lb, mark)
        paths = sorted(o.get("path") for o in lines)
        want = sorted("/live?sig=%d" % i for i in range(N))
        self.assertEqual(paths, want, "access lines after SIGTERM: %d of %d" % (len(lines), N))

    def test_access_false_logs_no_request_lines(self):
        b = lbt.echo_backend(self.addCleanup)
        lb = lbt.LB(self.addCleanup, lbt.make_config([lbt.url(b)], health=CALM, log={"access": False}),
                    workers=2).start()
        for i in range(20):
            self.assertEqual(lb.request("GET", "/live?q=%d" % i).status, 200)
        self.lb_scrape(lb)
        time.sleep(0.3)
        rc, _ = lb.d.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, lb.d.stderr_text()[-3000:])
        lines = self.request_lines(lb)
        self.assertEqual(lines, [], "request lines with log.access false")
        self.assertTrue(lb.logs(), "no JSON log lines at all (is the log captured?)")


if __name__ == "__main__":
    unittest.main()

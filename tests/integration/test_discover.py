#!/usr/bin/env python3
"""Integration tests for backends discovered through DNS (issue 16): a DNS server started by
the test (dnsserver.py) serving A, AAAA and SRV records it changes under load; roundguardd
resolving them on its health checker with c-ares; roundguard-echo backends on 127.0.0.x.

Run:
  ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
      python3 tests/integration/test_discover.py -v
"""

import collections
import os
import re
import signal
import sys
import time
import unittest

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dnsserver  # noqa: E402
import rgtest  # noqa: E402
import test_ctl as ctlt  # noqa: E402
import test_lb as lbt  # noqa: E402

NAME = "api.test"
ADDRS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


def setUpModule():
    ctlt.setUpModule()


def echo_on(cleanup, ip, port):
    """roundguard-echo on ip:port (several addresses share one port, as a DNS name's do)."""
    d = rgtest.Daemon(lbt.ECHO, ["-l", "{host}", "-p", "{port}", "-w", "1"], host=ip, port=port)
    cleanup(d.kill)
    return d.start()


def metric_lines(lb, prefix):
    body = lb.request("GET", "/metrics").body.decode()
    return [l for l in body.splitlines() if l.startswith(prefix)]


def dns_count(lb, result):
    for l in metric_lines(lb, "roundguard_dns_lookups_total{"):
        if 'result="%s"' % result in l:
            return int(l.rsplit(" ", 1)[1])
    return None


def requests_total(lb):
    """roundguard_requests_total summed per backend label."""
    out = collections.Counter()
    for l in metric_lines(lb, "roundguard_requests_total{"):
        m = re.match(r'roundguard_requests_total\{backend="([^"]+)",code="[^"]+"\} (\d+)', l)
        out[m.group(1)] += int(m.group(2))
    return out


class DiscoverCase(lbt.LBTestCase):

    def setUp(self):
        self.dns = dnsserver.DNSServer().start()
        self.addCleanup(self.dns.stop)

    def start(self, entries, resolve=None, workers=2, **top):
        r = {"resolvers": [self.dns.address], "min_interval": "300ms", "timeout": "600ms"}
        r.update(resolve or {})
        cfg = lbt.make_config(entries, health=lbt.FAST, resolve=r, **top)
        return lbt.LB(self.addCleanup, cfg, workers=workers).start()

    def backends(self, port, ips=ADDRS):
        return {"%s:%d" % (ip, port): echo_on(self.addCleanup, ip, port) for ip in ips}

    def seen(self, lb, n):
        rs = [lb.attempt("GET", "/live") for _ in range(n)]
        bad = [r for r in rs if lbt.failed(r)]
        self.assertFalse(bad, "%d of %d failed: %r" % (len(bad), n, bad[:2]))
        return collections.Counter(r.header("X-Backend-Server") for r in rs)


class AddressTests(DiscoverCase):

    def test_name_expands_to_every_address_in_round_robin(self):
        port = rgtest.free_port()
        names = self.backends(port)
        self.dns.set_a(NAME, ADDRS, ttl=30)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns"}])
        # Ready only after the first lookup and the new backends' first checks.
        self.assertEqual(self.seen(lb, 30), {n: 10 for n in names})
        up = metric_lines(lb, "roundguard_backend_up{")
        self.assertEqual(sorted(up), sorted('roundguard_backend_up{backend="%s"} 1' % n
                                            for n in names))
        self.assertGreaterEqual(dns_count(lb, "ok"), 1)
        self.assertEqual(dns_count(lb, "servfail"), 0)

    def test_added_and_removed_under_load_without_failures(self):
        """Three clients keep sending while the name loses an address, gets it back and gains
        a fourth: every request answered by a backend, each change followed within seconds,
        the removed backend's series gone, the others' counters never going back."""
        port = rgtest.free_port()
        names = self.backends(port, ADDRS + ["127.0.0.5"])
        self.dns.set_a(NAME, ADDRS, ttl=1)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns"}],
                        resolve={"min_interval": "200ms"})
        loads = [lbt.Load(lb), lbt.Load(lb), lbt.Load(lb, [("POST", "/reflect", b'{"a":1}')])]
        for t in loads:
            t.start()
            self.addCleanup(t.finish)
        gone, fourth = "127.0.0.4:%d" % port, "127.0.0.5:%d" % port
        steps = [(ADDRS[:2], set(names) - {gone, fourth}),
                 (ADDRS, set(names) - {fourth}),
                 (ADDRS + ["127.0.0.5"], set(names))]
        took = []
        before = requests_total(lb)
        for addrs, want in steps:
            time.sleep(0.5)
            t0 = time.monotonic()
            self.dns.set_a(NAME, addrs, ttl=1)

            def switched():
                seen = loads[0].backends_since(t0 + 0.3)[-12:]
                return len(seen) == 12 and set(seen) == want
            self.assertTrue(rgtest.wait_until(switched, timeout=10),
                            (want, loads[0].backends_since(t0)[-12:]))
            took.append(time.monotonic() - t0)
            if addrs == ADDRS[:2]:
                self.assertTrue(rgtest.wait_until(
                    lambda: gone not in requests_total(lb), timeout=5), requests_total(lb))
            now = requests_total(lb)
            for n in now:
                self.assertGreaterEqual(now[n], before.get(n, 0), (n, before, now))
            before = now
        for t in loads:
            t.finish()
        results = [(m, p, r) for t in loads for _, m, p, r in t.results]
        self.assertGreater(len(results), 100)
        self.assertNoFailures(results, "while the name's addresses changed")
        print("\n  discover add/remove under load: %d requests, 0 failed; changes took %s s"
              % (len(results), ", ".join("%.2f" % t for t in took)), file=sys.stderr)

    def test_health_checks_ask_for_the_name_not_the_address(self):
        """A discovered backend is checked with the URL's host name in Host (the virtual
        host behind the name expects it), a static one with its URL's host:port."""
        named = lbt.py_backend(self.addCleanup)
        static = lbt.py_backend(self.addCleanup)
        self.dns.set_a(NAME, ["127.0.0.1"], ttl=30)
        lb = self.start([{"url": "http://%s:%d" % (NAME, named.port), "discover": "dns"},
                         lbt.url(static)])
        self.seen(lb, 4)

        def hosts(backend):
            """Host of every health check the backend received (not of proxied requests)."""
            out = set()
            for o in lbt.received(backend, "/live"):
                fields = dict((k.strip().lower(), v.strip()) for k, _, v in
                              (line.partition(":") for line in o["raw_head"].split("\r\n")[1:]))
                if fields.get("user-agent") == "roundguard-health-check":
                    out.add(fields.get("host"))
            return out
        self.assertTrue(rgtest.wait_until(lambda: hosts(named) and hosts(static), timeout=5))
        self.assertEqual(hosts(named), {"%s:%d" % (NAME, named.port)})
        self.assertEqual(hosts(static), {"127.0.0.1:%d" % static.port})

    def test_ttl_is_followed_within_the_bounds(self):
        """The record's TTL sets the next lookup, held within min_interval and max_interval."""
        port = rgtest.free_port()
        self.backends(port, ADDRS[:1])
        self.dns.set_a(NAME, ADDRS[:1], ttl=1)
        self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns"}],
                   resolve={"min_interval": "500ms", "max_interval": "2s"})
        for ttl, seconds, expected, why in ((1, 4.2, (4, 5), "TTL 1 s"),
                                            (0, 3.2, (6, 7), "TTL 0 held to 500 ms"),
                                            (600, 4.2, (2, 3), "TTL 600 s held to 2 s")):
            self.dns.set_a(NAME, ADDRS[:1], ttl=ttl)
            time.sleep(2.2)         # the lookup that brings the new TTL
            t0 = time.monotonic()
            time.sleep(seconds)
            n = self.dns.count(NAME, "A", since=t0)
            self.assertIn(n, expected, "%s: %d lookups in %.1f s" % (why, n, seconds))

    def test_failures_keep_the_last_answer_and_are_logged_once(self):
        port = rgtest.free_port()
        names = self.backends(port)
        self.dns.set_a(NAME, ADDRS, ttl=1)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns"}],
                        resolve={"min_interval": "200ms"})
        self.assertEqual(set(self.seen(lb, 6)), set(names))
        for mode, result in (("servfail", "servfail"), ("drop", "timeout"),
                             ("nxdomain", "nxdomain")):
            with self.subTest(mode=mode):
                self.dns.set_mode(NAME, mode)
                self.assertTrue(rgtest.wait_until(lambda: (dns_count(lb, result) or 0) >= 2,
                                                  timeout=8), metric_lines(lb, "roundguard_dns"))
                self.assertEqual(self.seen(lb, 9), {n: 3 for n in names})
        self.dns.set_mode(NAME, None)
        self.assertTrue(rgtest.wait_until(
            lambda: any(o.get("msg") == "DNS lookup answers again" for o in lb.logs()), 5))
        logs = [o for o in lb.logs() if o.get("msg", "").startswith("DNS lookup failed")]
        self.assertEqual([o.get("result") for o in logs], ["servfail", "timeout", "nxdomain"],
                         logs)
        self.assertEqual(self.seen(lb, 9), {n: 3 for n in names})

    def test_hold_expires_then_backends_drain(self):
        port = rgtest.free_port()
        self.backends(port, ADDRS[:2])
        self.dns.set_a(NAME, ADDRS[:2], ttl=1)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns"}],
                        resolve={"min_interval": "200ms", "hold": "1s"})
        self.assertEqual(len(self.seen(lb, 4)), 2)
        self.dns.set_mode(NAME, "servfail")
        self.assertTrue(rgtest.wait_until(
            lambda: lb.attempt("GET", "/live").status == 503, timeout=8))
        self.assertEqual(metric_lines(lb, "roundguard_backend_up{"), [])
        self.dns.set_mode(NAME, None)
        self.assertTrue(rgtest.wait_until(
            lambda: lb.attempt("GET", "/live").status == 200, timeout=8))

    def test_a_family_failing_alone_keeps_its_addresses_for_hold(self):
        """The AAAA query fails while A answers: the IPv6 address stays for resolve.hold
        after AAAA's last answer (logged once), then goes; it is back when AAAA answers."""
        port = rgtest.free_port()
        echo_on(self.addCleanup, ADDRS[0], port)
        echo_on(self.addCleanup, "::1", port)
        both = {"%s:%d" % (ADDRS[0], port), "[::1]:%d" % port}
        self.dns.set_a(NAME, ADDRS[:1], ttl=1)
        self.dns.set_aaaa(NAME, ["::1"], ttl=1)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns"}],
                        resolve={"min_interval": "200ms", "hold": "3s"})
        self.assertEqual(set(self.seen(lb, 4)), both)
        failing = time.monotonic()
        self.dns.set_mode(NAME, "servfail", qtype="AAAA")
        # A lookup a second (TTL 1 s): the first failed AAAA query within about a second.
        self.assertTrue(rgtest.wait_until(
            lambda: self.dns.count(NAME, "AAAA", since=failing) >= 1, timeout=5))
        time.sleep(0.2)
        self.assertEqual(set(self.seen(lb, 4)), both, "the IPv6 address went before hold")
        self.assertTrue(rgtest.wait_until(
            lambda: set(self.seen(lb, 4)) == {"%s:%d" % (ADDRS[0], port)}, timeout=8))
        self.assertGreaterEqual(time.monotonic() - failing, 2.0)  # hold 3 s after the last answer
        time.sleep(0.6)             # more failing lookups: still one line
        dropped = [o for o in lb.logs() if o.get("msg", "").startswith(
            "DNS queries of one address family failed")]
        self.assertEqual([o.get("type") for o in dropped], ["AAAA"], dropped)
        self.dns.set_mode(NAME, None, qtype="AAAA")
        self.assertTrue(rgtest.wait_until(lambda: set(self.seen(lb, 4)) == both, timeout=8))

    def test_a_family_failing_first_goes_at_its_own_hold_when_all_fail(self):
        """AAAA fails, then A too: the IPv6 address goes at AAAA's hold while the IPv4 one
        stays until the name's own hold (counted from A's last answer)."""
        port = rgtest.free_port()
        v4, v6 = "%s:%d" % (ADDRS[0], port), "[::1]:%d" % port
        echo_on(self.addCleanup, ADDRS[0], port)
        echo_on(self.addCleanup, "::1", port)
        self.dns.set_a(NAME, ADDRS[:1], ttl=1)
        self.dns.set_aaaa(NAME, ["::1"], ttl=1)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns"}],
                        resolve={"min_interval": "200ms", "hold": "3s"})
        self.assertEqual(set(self.seen(lb, 4)), {v4, v6})
        t0 = time.monotonic()
        self.dns.set_mode(NAME, "servfail", qtype="AAAA")
        time.sleep(1.5)
        self.dns.set_mode(NAME, "servfail")     # every query now

        def only_v4():
            rs = [lb.attempt("GET", "/live") for _ in range(4)]
            return all(not lbt.failed(r) for r in rs) and \
                {r.header("X-Backend-Server") for r in rs} == {v4}
        self.assertTrue(rgtest.wait_until(only_v4, timeout=6),
                        [o for o in lb.logs() if "DNS" in o.get("msg", "")])
        self.assertGreaterEqual(time.monotonic() - t0, 2.0)
        # Then the name's hold ends too: nothing left.
        self.assertTrue(rgtest.wait_until(
            lambda: lb.attempt("GET", "/live").status == 503, timeout=6))

    def test_expansion_is_limited_by_max_backends(self):
        port = rgtest.free_port()
        names = self.backends(port)
        self.dns.set_a(NAME, ADDRS, ttl=30)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns",
                          "max_backends": 2}])
        # The first two in address order, the same whatever order the answer has.
        self.assertEqual(self.seen(lb, 8), {n: 4 for n in sorted(names)[:2]})
        self.assertTrue([o for o in lb.logs() if "more addresses than max_backends"
                         in o.get("msg", "") and o.get("addresses") == "3"], lb.logs())

    def test_static_and_discovered_backends_share_the_round_robin(self):
        """Configured and discovered backends in one round robin; roundguardctl lists the
        discovered ones by address, drains one by its address, leaves weights to DNS."""
        port = rgtest.free_port()
        names = self.backends(port, ADDRS[:2])
        static = lbt.echo_backend(self.addCleanup)
        self.dns.set_a(NAME, ADDRS[:2], ttl=30)
        lb = ctlt.CtlLB(self.addCleanup, [lbt.url(static), {"url": "http://%s:%d" % (NAME, port),
                                                             "discover": "dns"}],
                        health=lbt.FAST, resolve={"resolvers": [self.dns.address]}).start()
        want = {n: 5 for n in names}
        want[static.address] = 5
        self.assertEqual(self.seen(lb, 15), want)
        st = lb.status()
        self.assertEqual(set(st), set(want))
        for n in names:
            self.assertEqual(st[n]["discovered_from"], NAME)
            self.assertEqual(st[n]["state"], "up")
        self.assertNotIn("discovered_from", st[static.address])
        # One address can be drained; its weight follows DNS; the entry names them all.
        first, second = sorted(names)
        p = lb.roundguardctl("weight", first, "3")
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("its weight follows its SRV record", p.stderr)
        p = lb.roundguardctl("drain", "http://%s:%d" % (NAME, port))
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("names backends discovered through DNS", p.stderr)
        p = lb.roundguardctl("drain", first)
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("%s: state drain (was ready)" % first, p.stdout)
        self.assertEqual(lb.status()[first]["admin"], "drain")
        self.assertEqual(lb.roundguardctl("drain", static.address).returncode, 0)
        self.assertEqual(self.seen(lb, 10), {second: 10})
        self.assertEqual(lb.roundguardctl("ready", first).returncode, 0)
        self.assertEqual(set(self.seen(lb, 10)), {first, second})


class LifecycleTests(DiscoverCase):
    """What the health checker's restart, a reload and a full slot table do to discovered backends."""

    def test_checker_killed_keeps_the_discovered_backends(self):
        port = rgtest.free_port()
        names = self.backends(port)
        self.dns.set_a(NAME, ADDRS[:2], ttl=1)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns"}],
                        resolve={"min_interval": "200ms"})
        self.assertEqual(set(self.seen(lb, 4)), set(sorted(names)[:2]))
        old = lb.checkers()
        self.assertEqual(len(old), 1)
        os.kill(old[0], signal.SIGKILL)
        self.assertTrue(rgtest.wait_until(
            lambda: [p for p in lb.checkers() if p not in old], timeout=8))
        time.sleep(1.0)                 # the new checker's probes and first lookup
        self.assertEqual(self.seen(lb, 10), {n: 5 for n in sorted(names)[:2]})
        self.dns.set_a(NAME, ADDRS, ttl=1)      # and it still follows the name
        self.assertTrue(rgtest.wait_until(lambda: len(self.seen(lb, 6)) == 3, timeout=8))

    def test_reload_during_a_dns_outage_keeps_serving_and_counting(self):
        port = rgtest.free_port()
        names = self.backends(port)
        self.dns.set_a(NAME, ADDRS, ttl=1)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns"}],
                        resolve={"min_interval": "200ms"})
        self.assertEqual(self.seen(lb, 30), {n: 10 for n in names})
        self.dns.set_mode(NAME, "servfail")
        self.assertTrue(rgtest.wait_until(lambda: (dns_count(lb, "servfail") or 0) >= 1, 5))
        before = requests_total(lb)
        mark = lb.d.stderr_mark()
        lb.d.send_signal(signal.SIGHUP)
        self.assertIsNotNone(rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "reloaded",
                                                  10, since=mark), lb.d.stderr_text()[-3000:])
        # Every request answered by the held backends (old and new workers may share them).
        got = self.seen(lb, 30)
        self.assertEqual(set(got), set(names))
        self.assertTrue(all(c >= 8 for c in got.values()), got)
        # The counters go on from where they were: none went back, all 30 are in them.
        self.assertTrue(rgtest.wait_until(
            lambda: sum(requests_total(lb).values()) >= sum(before.values()) + 30, timeout=8),
            (before, requests_total(lb)))
        after = requests_total(lb)
        self.assertTrue(all(after[n] > before[n] for n in names), (before, after))

    def test_a_drained_address_stays_drained_while_the_name_has_it(self):
        """roundguardctl maint on one discovered address: out of the round robin and not
        checked, across a reload; once DNS drops the address and later returns it, even at
        the very next lookup, it is a new backend (ready, checked, picked)."""
        port = rgtest.free_port()
        names = self.backends(port)
        self.dns.set_a(NAME, ADDRS, ttl=1)
        lb = ctlt.CtlLB(self.addCleanup, [{"url": "http://%s:%d" % (NAME, port),
                                           "discover": "dns"}],
                        health=lbt.FAST, resolve={"resolvers": [self.dns.address],
                                                  "min_interval": "100ms"}).start()
        self.assertEqual(set(self.seen(lb, 6)), set(names))
        gone = "%s:%d" % (ADDRS[2], port)

        def checks():
            return sum(int(l.rsplit(" ", 1)[1]) for l in metric_lines(
                lb, 'roundguard_health_checks_total{backend="%s"' % gone))
        self.assertEqual(lb.roundguardctl("maint", gone).returncode, 0)
        rest = set(names) - {gone}
        self.assertEqual(self.seen(lb, 8), {n: 4 for n in rest})
        before = checks()
        time.sleep(0.8)             # 4 check intervals: not one probe of it
        self.assertEqual(checks(), before)
        mark = lb.d.stderr_mark()
        lb.d.send_signal(signal.SIGHUP)
        self.assertIsNotNone(rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "reloaded",
                                                  10, since=mark))
        self.assertEqual(lb.status()[gone]["admin"], "maint")
        self.assertEqual(set(self.seen(lb, 8)), rest)
        # The name drops the address: its state goes with it (logged); back, it is picked.
        self.dns.set_a(NAME, ADDRS[:2], ttl=1)
        self.assertTrue(rgtest.wait_until(lambda: gone not in lb.status(), timeout=8))
        left = lambda: [o for o in lb.logs() if o.get("msg") == "discovered backend's address "
                        "left; its state is ready again"]
        self.assertTrue(rgtest.wait_until(left, timeout=5), lb.logs()[-5:])
        self.assertEqual([(o.get("backend"), o.get("was")) for o in left()], [(gone, "maint")])
        self.dns.set_a(NAME, ADDRS, ttl=1)
        self.assertTrue(rgtest.wait_until(lambda: set(self.seen(lb, 6)) == set(names),
                                          timeout=8))
        self.assertEqual(lb.status()[gone]["admin"], "ready")
        # Dropped for one lookup only (100 ms, less than the master's 250 ms sweep): the
        # address that comes back is still a new backend.
        self.assertEqual(lb.roundguardctl("maint", gone).returncode, 0)
        self.dns.set_a(NAME, ADDRS, ttl=0)     # a lookup every min_interval from now on
        time.sleep(1.2)
        self.dns.set_a(NAME, ADDRS[:2], ttl=0)
        t0 = time.monotonic()
        self.assertTrue(self.dns.wait_for_query(NAME, "A", since=t0))
        self.dns.set_a(NAME, ADDRS, ttl=0)
        self.assertTrue(rgtest.wait_until(lambda: set(self.seen(lb, 6)) == set(names),
                                          timeout=8), lb.status().get(gone))
        self.assertEqual(lb.status()[gone]["admin"], "ready")

    def test_a_new_address_takes_the_slot_as_soon_as_the_old_one_drained(self):
        """One slot: a changed address waits for the old one's drain, not for the next lookup
        (3 s later here)."""
        port = rgtest.free_port()
        names = sorted(self.backends(port, ADDRS[:2]))
        self.dns.set_a(NAME, ADDRS[:1], ttl=60)
        lb = self.start([{"url": "http://%s:%d" % (NAME, port), "discover": "dns",
                          "max_backends": 1}], resolve={"max_interval": "3s"})
        self.assertEqual(self.seen(lb, 3), {names[0]: 3})
        t0 = time.monotonic()
        self.dns.set_a(NAME, ADDRS[1:2], ttl=60)
        self.assertTrue(self.dns.wait_for_query(NAME, "A", since=t0, timeout=5))
        asked = [t for t, n, q in list(self.dns.queries) if n == NAME and q == "A" and t >= t0][0]
        self.assertTrue(rgtest.wait_until(
            lambda: lb.attempt("GET", "/live").header("X-Backend-Server") == names[1], 5))
        self.assertLess(time.monotonic() - asked, 2.5, "the next lookup is 3 s after that one")

    def test_an_address_listed_already_is_left_out(self):
        static = lbt.echo_backend(self.addCleanup)
        self.dns.set_a(NAME, ["127.0.0.1"], ttl=30)
        lb = self.start([lbt.url(static), {"url": "http://%s:%d" % (NAME, static.port),
                                           "discover": "dns"}])
        self.assertEqual(self.seen(lb, 4), {static.address: 4})
        self.assertEqual(len(metric_lines(lb, "roundguard_backend_up{")), 1)
        self.assertTrue([o for o in lb.logs() if "another backend's already" in o.get("msg", "")])


class SRVTests(DiscoverCase):

    def test_srv_ports_and_weights(self):
        a = lbt.echo_backend(self.addCleanup)
        b = lbt.echo_backend(self.addCleanup)
        c = lbt.echo_backend(self.addCleanup)
        srv = "_http._tcp." + NAME
        self.dns.set_a("node1." + NAME, ["127.0.0.1"])
        # Priority 10 is preferred; c at priority 20 is a backup and gets nothing.
        self.dns.set_srv(srv, [(10, 30, a.port, "node1." + NAME), (10, 10, b.port, "node1." + NAME),
                               (20, 50, c.port, "node1." + NAME)], ttl=30)
        lb = self.start([{"srv": srv, "scheme": "http"}])
        got = self.seen(lb, 40)
        self.assertEqual(got, {a.address: 30, b.address: 10})

    def test_srv_weights_follow_the_records(self):
        a = lbt.echo_backend(self.addCleanup)
        b = lbt.echo_backend(self.addCleanup)
        srv = "_http._tcp." + NAME
        self.dns.set_a("node1." + NAME, ["127.0.0.1"])
        self.dns.set_srv(srv, [(0, 1000, a.port, "node1." + NAME),
                               (0, 1000, b.port, "node1." + NAME)], ttl=1)
        lb = self.start([{"srv": srv, "scheme": "http"}], resolve={"min_interval": "200ms"})
        self.assertEqual(self.seen(lb, 20), {a.address: 10, b.address: 10})
        # Weights above 256 are scaled alike: 3000:1000 is 3:1.
        self.dns.set_srv(srv, [(0, 3000, a.port, "node1." + NAME),
                               (0, 1000, b.port, "node1." + NAME)], ttl=1)
        self.assertTrue(rgtest.wait_until(
            lambda: self.seen(lb, 40) == {a.address: 30, b.address: 10}, timeout=8))


if __name__ == "__main__":
    unittest.main()

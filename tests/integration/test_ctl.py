#!/usr/bin/env python3
"""Integration tests for live operation (issue 15): roundguardctl and the
control socket, weights, drain and maintenance, slow start, state kept across
reloads and restarts (real daemons on loopback).

Run:
  ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
  ROUNDGUARD_CTL=build/src/roundguardctl python3 tests/integration/test_ctl.py -v
"""

import collections
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest
import uuid

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rgtest  # noqa: E402
import test_lb as lbt  # noqa: E402

CTL = None


def setUpModule():
    global CTL
    lbt.setUpModule()
    CTL = rgtest.find_binary("ROUNDGUARD_CTL", "build/src/roundguardctl")


def read_all(s):
    """Every byte until the peer closes."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def control(path, request, timeout=10.0):
    """One request over the control socket (what roundguardctl does): the answer as a dict."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps(request).encode())
        s.shutdown(socket.SHUT_WR)
        return json.loads(read_all(s))


class CtlLB(lbt.LB):
    """An lbt.LB with a control socket (and, if asked, a state file) in its temporary directory."""

    def __init__(self, cleanup, backends, state_file=False, args=(), **top):
        self.sock = None
        cfg = lbt.make_config(backends, **top)
        super().__init__(cleanup, cfg, args=args)
        self.sock = os.path.join(self.tmpdir, "control.sock")
        cfg.setdefault("control", {})["socket"] = self.sock
        if state_file:
            cfg["state_file"] = os.path.join(self.tmpdir, "state.json")
        self.cfg = cfg
        self.write_config(cfg)

    def ctl(self, command, backend=None, weight=None):
        req = {"command": command}
        if backend is not None:
            req["backend"] = backend
        if weight is not None:
            req["weight"] = weight
        return control(self.sock, req)

    def status(self):
        st = self.ctl("status")
        assert st["ok"], st
        return {b["name"]: b for b in st["backends"]}

    def roundguardctl(self, *args, user=None, sock=None):
        argv = [CTL, "-s", sock or self.sock] + list(args)
        if user is not None:
            argv = ["setpriv", "--reuid=%s" % user, "--regid=%s" % user, "--clear-groups"] + argv
        return subprocess.run(argv, capture_output=True, text=True, timeout=20)


class TimedLoad(lbt.Load):
    """lbt.Load that also notes when each answer came: results of (start, end, Response)."""

    def run(self):
        self.timed = []
        while not self._halt.is_set():
            t = time.monotonic()
            r = self.lb.attempt("GET", "/live")
            self.timed.append((t, time.monotonic(), r))
            self.results.append((t, "GET", "/live", r))
            if self.pause:
                time.sleep(self.pause)


class CtlTestCase(lbt.LBTestCase):
    def picks(self, lb, n, path="/live"):
        return [r.header("X-Backend-Server") for r in self.sequential(lb, n, path=path)]


class WeightTests(CtlTestCase):
    def test_weights_3_1_1_through_two_workers(self):
        """Weights 3:1:1 give 30/10/10 over 50 requests on new connections, interleaved."""
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        a, b, c = (x.address for x in backends)
        lb = CtlLB(self.addCleanup, [{"url": lbt.url(backends[0]), "weight": 3},
                                     lbt.url(backends[1]), {"url": lbt.url(backends[2])}]).start()
        self.assertTrue(rgtest.wait_until(lambda: len(lb.workers()) == 2, 5), lb.workers())
        seq = self.picks(lb, 50)
        self.assertEqual(collections.Counter(seq), {a: 30, b: 10, c: 10}, seq)
        # Interleaved: within each period of 5 (the schedule repeats), no backend twice in a
        # row while another still has weight left in it.
        start = seq.index(b) - 1            # the period is a b a c a; find where it begins
        for p in range(start % 5, 50 - 4, 5):
            period = seq[p:p + 5]
            self.assertEqual(collections.Counter(period), {a: 3, b: 1, c: 1}, seq)
            for i in range(1, 5):
                if period[i] == period[i - 1]:
                    left = collections.Counter({a: 3, b: 1, c: 1})
                    left.subtract(period[:i + 1])
                    self.assertFalse([k for k, v in left.items() if v > 0 and k != period[i]],
                                     "twice in a row with weight left: %r" % period)

    def test_weight_command_and_weight_zero(self):
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        a, b, c = (x.address for x in backends)
        lb = CtlLB(self.addCleanup, [lbt.url(x) for x in backends]).start()
        r = lb.ctl("weight", b, 2)
        self.assertTrue(r["ok"], r)
        self.assertIn("weight 2 (was 1)", r["message"])
        self.assertEqual(collections.Counter(self.picks(lb, 40)), {a: 10, b: 20, c: 10})
        r = lb.ctl("weight", "http://%s" % c, 0)       # by URL, as configured
        self.assertTrue(r["ok"], r)
        self.assertEqual(collections.Counter(self.picks(lb, 30)), {a: 10, b: 20})
        st = lb.status()
        self.assertEqual((st[b]["weight"], st[b]["effective_weight"]), (2, 2))
        self.assertEqual((st[c]["weight"], st[c]["state"]), (0, "drain"))
        m = lb.request("GET", "/metrics").body.decode()
        self.assertIn('roundguard_backend_weight{backend="%s"} 2.0' % b, m)
        self.assertIn('roundguard_backend_weight{backend="%s"} 0.0' % c, m)
        logs = [o for o in lb.logs() if o.get("msg") == "backend weight changed"]
        self.assertEqual([(o["backend"], o["weight"], o["was"], o["uid"]) for o in logs],
                         [(b, "2", "1", str(os.getuid())), (c, "0", "1", str(os.getuid()))])


class PassiveTests(CtlTestCase):
    def test_backend_taken_out_by_a_worker_comes_back_whole(self):
        """A worker that cannot connect takes a backend out (the others share its part
        evenly); when the next probe finds it fine again, its share comes back exactly,
        even though the checker never saw it down."""
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        a, b, c = (x.address for x in backends)
        lb = CtlLB(self.addCleanup, [lbt.url(x) for x in backends],
                   health={"interval": "2s", "timeout": "1s"}).start()
        port = backends[1].port
        backends[1].kill()
        seq = [r.header("X-Backend-Server") for r in self.sequential(lb, 6)]
        self.assertNotIn(b, seq)
        self.assertEqual(collections.Counter(self.picks(lb, 20)), {a: 10, c: 10})
        lbt.echo_backend(self.addCleanup, port=port)
        time.sleep(2.5)             # the next probe round finds it answering
        self.assertEqual(collections.Counter(self.picks(lb, 30)), {a: 10, b: 10, c: 10})


class DrainTests(CtlTestCase):
    def test_drain_under_load(self):
        """16 clients: zero failures, nothing new to the drained backend once drain returned,
        the request in flight there completes; ready brings it back."""
        backends = [lbt.py_backend(self.addCleanup) for _ in range(3)]
        lb = CtlLB(self.addCleanup, [lbt.url(x) for x in backends], workers=2).start()
        marker = uuid.uuid4().hex
        slow = {}

        def slow_request():
            slow["r"] = lb.attempt("GET", "/slow?ms=1500&m=" + marker, timeout=10)

        loads = [TimedLoad(lb, pause=0.005) for _ in range(16)]
        for ld in loads:
            ld.start()
        t = threading.Thread(target=slow_request)
        t.start()
        target = None
        for _ in range(100):
            got = [x for x in backends if lbt.received(x, marker)]
            if got:
                target = got[0]
                break
            time.sleep(0.02)
        self.assertIsNotNone(target, "the slow request reached no backend")
        r = lb.ctl("drain", target.address)
        after = time.monotonic()
        self.assertTrue(r["ok"], r)
        self.assertIn("state drain (was ready)", r["message"])
        # The slow request is still in flight there: status counts it.
        self.assertGreaterEqual(lb.status()[target.address]["active_connections"], 1)
        time.sleep(1.0)
        st = lb.status()[target.address]
        self.assertEqual((st["state"], st["admin"]), ("drain", "drain"))
        before_ready = time.monotonic()
        r = lb.ctl("ready", target.address)
        self.assertTrue(r["ok"], r)
        back = time.monotonic()
        time.sleep(0.5)
        for ld in loads:
            ld.finish()
        t.join(10)
        fails = [f for ld in loads for f in ld.failures()]
        self.assertEqual(fails, [], "failed requests while draining")
        # Begun after drain returned, answered before ready was asked for.
        drained_window = [resp.header("X-Backend-Server") for ld in loads
                          for (ts, te, resp) in ld.timed
                          if ts >= after and te < before_ready and not isinstance(resp, Exception)]
        self.assertGreater(len(drained_window), 50, "too little load to tell")
        self.assertNotIn(target.address, drained_window,
                         "%d of %d requests begun after drain returned went to the drained backend"
                         % (drained_window.count(target.address), len(drained_window)))
        self.assertIn(target.address, [b for ld in loads for b in ld.backends_since(back)])
        self.assertEqual((slow["r"].status, slow["r"].header("X-Backend-Server")),
                         (200, target.address), slow["r"])

    def test_maint_stops_health_checks_and_ready_needs_a_pass(self):
        backends = [lbt.py_backend(self.addCleanup) for _ in range(2)]
        a, b = backends
        lb = CtlLB(self.addCleanup, [lbt.url(x) for x in backends], health=lbt.FAST).start()

        def probes(x):
            return len([o for o in rgtest.stdout_events(x) if o.get("target") == "/live"
                        and "roundguard-health-check" in o.get("raw_head", "")])

        r = lb.ctl("maint", b.address)
        self.assertTrue(r["ok"], r)
        time.sleep(0.3)             # a probe under way when it was put in maintenance
        n = probes(b)
        time.sleep(1.2)             # six intervals
        self.assertEqual(probes(b), n, "probed in maintenance")
        self.assertGreater(probes(a), 4)
        st = lb.status()[b.address]
        self.assertEqual((st["state"], st["check"]), ("maint", "not checked"))
        self.assertEqual(set(self.picks(lb, 6)), {a.address})
        # Back: it is sick now, so it stays out until a check passes.
        lbt.ctl(b, live=500)
        self.assertTrue(lb.ctl("ready", b.address)["ok"])
        time.sleep(0.5)
        self.assertEqual(set(self.picks(lb, 6)), {a.address})
        self.assertEqual(lb.status()[b.address]["state"], "down")
        lbt.ctl(b, live=200)
        self.assertTrue(rgtest.wait_until(lambda: lb.status()[b.address]["state"] == "up", 3))
        self.assertEqual(collections.Counter(self.picks(lb, 6)), {a.address: 3, b.address: 3})
        m = lb.request("GET", "/metrics").body.decode()
        self.assertIn('roundguard_backend_admin_state{backend="%s",state="ready"} 1' % b.address, m)


class SlowStartTests(CtlTestCase):
    def test_recovered_backend_ramps_up(self):
        """slow_start 4s: a backend back up gets 1/10 of its weight, rising linearly.
        Tolerance: each second's share within 0.12 of the ramp's mean share that second."""
        backends = [lbt.py_backend(self.addCleanup) for _ in range(2)]
        a, b = backends
        lb = CtlLB(self.addCleanup, [lbt.url(x) for x in backends], health=lbt.FAST,
                   slow_start="4s").start()
        lbt.ctl(b, live=500)
        self.assertTrue(rgtest.wait_until(lambda: lb.status()[b.address]["state"] == "down", 3))
        lbt.ctl(b, live=200)
        self.assertTrue(rgtest.wait_until(lambda: lb.status()[b.address]["state"] == "up", 3,
                                          interval=0.01))
        t0 = time.monotonic()
        shares = []
        while time.monotonic() - t0 < 5.5:
            second = int(time.monotonic() - t0)
            r = lb.attempt("GET", "/live")
            if not lbt.failed(r):
                shares.append((second, r.header("X-Backend-Server") == b.address))
        for sec in range(4):
            got = [x for s, x in shares if s == sec]
            share = sum(got) / len(got)
            # weight w against 1: b's share is w / (1 + w), w going 0.1 -> 1 over 4 s.
            mid = 0.1 + 0.9 * (sec + 0.5) / 4
            want = mid / (1 + mid)
            self.assertLess(abs(share - want), 0.12,
                            "second %d: share %.2f, want %.2f (%d requests)"
                            % (sec, share, want, len(got)))
        last = [x for s, x in shares if s >= 4.5]
        self.assertAlmostEqual(sum(last) / max(1, len(last)), 0.5, delta=0.05)
        self.assertEqual(lb.status()[b.address]["effective_weight"], 1.0)


class StateTests(CtlTestCase):
    def test_reload_keeps_drain_weight_and_health(self):
        backends = [lbt.py_backend(self.addCleanup) for _ in range(4)]
        a, b, c, d = (x.address for x in backends)
        lb = CtlLB(self.addCleanup, [lbt.url(x) for x in backends],
                   health={"interval": "300ms", "timeout": "200ms", "rise": 3}).start()
        self.assertTrue(lb.ctl("drain", a)["ok"])
        self.assertTrue(lb.ctl("weight", b, 3)["ok"])
        lbt.ctl(backends[2], live=500)
        self.assertTrue(rgtest.wait_until(lambda: lb.status()[c]["state"] == "down", 3))
        lbt.ctl(backends[2], live=200)      # healthy again, but rise 3: down for ~1 s more
        mark = lb.d.stderr_mark()
        lb.d.send_signal(1)
        self.assertIsNotNone(rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "reloaded",
                                                  5, since=mark))
        seq = self.picks(lb, 8)
        self.assertEqual(collections.Counter(seq), {b: 6, d: 2}, seq)
        st = lb.status()
        self.assertEqual(st[a]["state"], "drain")
        self.assertEqual(st[b]["weight"], 3)
        self.assertEqual(st[c]["state"], "down")
        self.assertGreater(lb.ctl("status")["generation"], 0)

    def test_restart_with_state_file_keeps_drain(self):
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(3)]
        a, b, c = (x.address for x in backends)
        lb = CtlLB(self.addCleanup, [lbt.url(x) for x in backends], state_file=True).start()
        self.assertTrue(lb.ctl("drain", b)["ok"])
        self.assertTrue(lb.ctl("weight", c, 2)["ok"])
        with open(lb.cfg["state_file"]) as f:
            saved = json.load(f)
        self.assertEqual(saved["version"], 1)
        self.assertEqual({e["url"]: (e["admin"], e["weight"]) for e in saved["backends"]},
                         {"http://" + b: ("drain", 1), "http://" + c: ("ready", 2)})
        lb.d.stop()
        self.assertFalse(os.path.exists(lb.sock), "socket left behind")
        lb.start()
        self.assertTrue(any(o.get("msg") == "administrative state restored" for o in lb.logs()))
        self.assertEqual(collections.Counter(self.picks(lb, 9)), {a: 3, c: 6})
        self.assertEqual(lb.status()[b]["state"], "drain")

    def test_state_file_flag_as_the_unit_passes_it(self):
        """--state-file (the systemd unit's) wins over the file's state_file."""
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(2)]
        a, b = (x.address for x in backends)
        lb = CtlLB(self.addCleanup, [lbt.url(x) for x in backends], state_file=True)
        flagged = os.path.join(lb.tmpdir, "flagged.json")
        lb.d.args = list(lb.d.args) + ["--state-file", flagged]
        lb.start()
        self.assertTrue(lb.ctl("maint", a)["ok"])
        self.assertTrue(os.path.exists(flagged))
        self.assertFalse(os.path.exists(lb.cfg["state_file"]))
        lb.d.stop()
        lb.start()
        self.assertEqual(lb.status()[a]["state"], "maint")
        self.assertEqual(set(self.picks(lb, 4)), {b})

    def test_broken_state_file_is_named_and_ignored(self):
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(2)]
        lb = CtlLB(self.addCleanup, [lbt.url(x) for x in backends], state_file=True)
        with open(lb.cfg["state_file"], "w") as f:
            f.write('{"version": 1, "backends": [{"url": "http://x:1", "admin": "gone"}]}')
        lb.start()
        err = [o for o in lb.logs() if o.get("msg", "").startswith("state file not read")]
        self.assertEqual(len(err), 1, lb.logs())
        self.assertIn("state.json", err[0]["error"])
        self.assertIn("backends[0]", err[0]["error"])
        self.assertEqual(len(set(self.picks(lb, 4))), 2)


class RoundguardctlTests(CtlTestCase):
    def test_status_table_and_json(self):
        backends = [lbt.echo_backend(self.addCleanup) for _ in range(2)]
        a, b = (x.address for x in backends)
        lb = CtlLB(self.addCleanup, [{"url": lbt.url(backends[0]), "weight": 2},
                                     lbt.url(backends[1])]).start()
        self.sequential(lb, 6)
        self.assertTrue(lb.ctl("drain", b)["ok"])
        p = lb.roundguardctl("status")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("generation 0, 2 workers", p.stdout)
        rows = {ln.split()[0]: ln.split() for ln in p.stdout.splitlines() if ln.startswith("127.")}
        self.assertEqual(rows[a][1], "up")
        self.assertEqual(rows[b][1], "drain")
        p = lb.roundguardctl("--json", "status")
        self.assertEqual(p.returncode, 0, p.stderr)
        st = json.loads(p.stdout)
        self.assertEqual({x["name"]: (x["state"], x["weight"]) for x in st["backends"]},
                         {a: ("up", 2), b: ("drain", 1)})
        self.assertEqual(st["workers"], 2)
        p = lb.roundguardctl("ready", b)
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "%s: state ready (was drain)" % b))

    def test_errors_and_exit_statuses(self):
        backends = [lbt.echo_backend(self.addCleanup)]
        lb = CtlLB(self.addCleanup, [lbt.url(backends[0])]).start()
        p = lb.roundguardctl("drain", "127.0.0.1:1")
        self.assertEqual(p.returncode, 1, p)
        self.assertIn('unknown backend "127.0.0.1:1"', p.stderr)
        p = lb.roundguardctl("weight", backends[0].address, "257")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("weight", p.stderr)
        p = lb.roundguardctl("frobnicate")
        self.assertEqual(p.returncode, 2, p)
        p = lb.roundguardctl("status", sock=os.path.join(lb.tmpdir, "nothing.sock"))
        self.assertEqual(p.returncode, 3, p)
        self.assertIn("no roundguardd is listening", p.stderr)
        # A bad request straight on the socket: a JSON answer naming the problem.
        r = control(lb.sock, {"command": "weight", "backend": backends[0].address, "weight": -1})
        self.assertEqual((r["ok"], r["code"]), (False, "bad_weight"), r)
        self.assertIn("weight", r["error"])
        r = control(lb.sock, {"command": "drain"})
        self.assertEqual((r["ok"], r["code"]), (False, "bad_request"), r)
        self.assertIn("backend", r["error"])

    def test_socket_abuse(self):
        """Garbage, an oversized request and a client that never finishes: each gets a JSON
        refusal or is cut off, and the master keeps answering everyone else."""
        backends = [lbt.echo_backend(self.addCleanup)]
        lb = CtlLB(self.addCleanup, [lbt.url(backends[0])]).start()
        idle = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(idle.close)
        idle.connect(lb.sock)
        idle.sendall(b'{"command": "sta')             # and never more, never shutdown
        for data in (b"\x00\xff garbage", b'{"command": "status"} {"command": "status"}',
                     b'{"command": "' + b"x" * 5000 + b'"}'):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect(lb.sock)
                try:
                    s.sendall(data)
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass                    # refused before all of it was read
                r = json.loads(read_all(s))
            self.assertEqual((r["ok"], r["code"]), (False, "bad_request"), r)
        t0 = time.monotonic()
        self.assertTrue(lb.ctl("status")["ok"])
        self.assertLess(time.monotonic() - t0, 2, "status waited for the idle client")
        idle.settimeout(8)
        r = json.loads(idle.recv(65536))
        self.assertEqual(r["code"], "bad_request", r)
        self.assertIn("5s", r["error"])
        self.assertEqual(lb.d.proc.poll(), None)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run roundguardctl as another user")
    def test_permission_denied_for_another_user(self):
        backends = [lbt.echo_backend(self.addCleanup)]
        lb = CtlLB(self.addCleanup, [lbt.url(backends[0])]).start()
        self.assertEqual(os.stat(lb.sock).st_mode & 0o777, 0o660)
        os.chmod(lb.tmpdir, 0o755)          # the directory is not what stops it
        nobody = pwd.getpwnam("nobody").pw_uid
        p = lb.roundguardctl("status", user=str(nobody))
        self.assertEqual(p.returncode, 4, p)
        self.assertIn("permission denied", p.stderr)


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""Integration tests for roundguardd, the load balancer (real daemons on loopback).

Run:
  ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
      python3 tests/integration/test_lb.py -v

Backends are roundguard-echo daemons and testbackend.py (a small Python
backend with paths for header inspection, chunked and close-delimited
answers, slow answers, resets, big bodies, byte counting and a control path
that changes its health answer at run time).
"""

import collections
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rgtest  # noqa: E402
import testbackend as tb  # noqa: E402

HOST = rgtest.DEFAULT_HOST
RGD = None     # roundguardd, set in setUpModule
ECHO = None    # roundguard-echo
TESTBACKEND = os.path.join(HERE, "testbackend.py")
DATA_DIR = os.path.join(rgtest.REPO_ROOT, "tests", "data")

NO_UPSTREAM_BODY = (b'{"title":"No healthy upstream","description":'
                    b'"There\'s no instance of application that can process this request"}')
ECHO_BAD_REQUEST_BODY = (b'{"title":"Bad Request",'
                         b'"description":"The request body could not be parsed as JSON"}')
JSON_HDR = {"Content-Type": "application/json"}

# Health checking used by the tests that watch it: probe every 200 ms with a 100 ms timeout.
INTERVAL = 0.2
CHECK_TIMEOUT = 0.1
# Extra time allowed on top of interval + timeout for a transition to be noticed and logged.
SLACK = 0.8
# Generous health settings for classes that do not test health checking (a busy
# machine must not make a backend flap in the middle of a distribution count).
CALM = {"interval": "2s", "timeout": "1s"}
FAST = {"interval": "200ms", "timeout": "100ms"}


def setUpModule():
    global RGD, ECHO
    ECHO = rgtest.find_binary("ROUNDGUARD_ECHO", "build/src/roundguard-echo")
    RGD = rgtest.find_binary("ROUNDGUARD_D", "build/src/roundguardd")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def echo_backend(cleanup, port=None):
    """A started roundguard-echo (1 process) on 127.0.0.1; killed by cleanup."""
    d = rgtest.Daemon(ECHO, ["-l", "{host}", "-p", "{port}", "-w", "1"], port=port)
    cleanup(d.kill)
    return d.start()


def py_backend(cleanup, mode="ok", port=None):
    """A started testbackend.py on 127.0.0.1; killed by cleanup."""
    d = rgtest.Daemon(sys.executable, ["-u", TESTBACKEND, "{port}", mode], port=port)
    cleanup(d.kill)
    return d.start()


def url(d, prefix=""):
    return "http://%s:%d%s" % (d.host, d.port, prefix)


def received(backend, marker):
    """Request heads (dicts) that testbackend `backend` logged whose target contains marker."""
    return [o for o in rgtest.stdout_events(backend) if marker in o.get("target", "")]


def ctl(backend, **params):
    """Change a testbackend's behaviour directly (not through the balancer)."""
    q = "&".join("%s=%s" % kv for kv in params.items())
    r = rgtest.http_request(backend.host, backend.port, "GET", "/_ctl?" + q)
    assert r.status == 200, r


def make_config(backends, health=None, proxy=None, log=None, **top):
    cfg = {"backends": list(backends),
           "health_check": dict(health or CALM),
           "log": {"format": "json", "access": False}}
    if log:
        cfg["log"].update(log)
    if proxy:
        cfg["proxy"] = dict(proxy)
    cfg.update(top)
    return cfg


def attempt(host, port, method, path, body=None, headers=None, timeout=5.0):
    """One request on a new connection: a Response, or the exception it raised."""
    try:
        return rgtest.http_request(host, port, method, path, body, headers, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:
        return e


def failed(r):
    """A request counts as failed when it raised, was answered 502/503/504
    or the answer did not come from a backend."""
    return (isinstance(r, Exception) or r.status in (502, 503, 504)
            or r.header("X-Backend-Server") is None)


def counts(responses):
    return collections.Counter(r.header("X-Backend-Server") for r in responses)


class LB:
    """A roundguardd under test: config file in a temporary directory, JSON
    logs, always -l 127.0.0.1 -p <free port>; started() waits for "ready"."""

    def __init__(self, cleanup, config=None, backends=(), workers=2, env=None, args=(),
                 hosts_flag="--backend"):
        self.tmpdir = tempfile.mkdtemp(prefix="rg-lb-test-")
        cleanup(shutil.rmtree, self.tmpdir, True)
        self.config_path = None
        argv = []
        if config is not None:
            self.config_path = os.path.join(self.tmpdir, "roundguardd.json")
            self.write_config(config)
            argv += ["-c", self.config_path]
        for b in backends:
            argv += [hosts_flag, b]
        argv += ["-l", "{host}", "-p", "{port}"]
        if workers is not None:
            argv += ["-w", str(workers)]
        argv += list(args)
        e = {"LOG_FORMAT": "json", "PROXY_CHECK_DURATION": None}
        e.update(env or {})
        self.d = rgtest.Daemon(RGD, argv, env=e)
        self.ready = None
        cleanup(self.kill)

    def write_config(self, cfg):
        text = cfg if isinstance(cfg, str) else json.dumps(cfg, indent=2)
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)

    def start(self, timeout=8.0):
        self.d.start(timeout=timeout)
        self.ready = rgtest.wait_json_log(self.d, lambda o: o.get("msg") == "ready", timeout)
        if self.ready is None:
            raise rgtest.DaemonError("roundguardd logged no \"ready\" line within %.0f s; stderr:\n%s"
                                     % (timeout, self.d.stderr_text()[-4000:]))
        self.d.refresh_pids()
        return self

    def kill(self):
        pid = self.d.pid
        self.d.kill()
        if pid is not None:
            for seg in shm_segments(pid):     # left behind by SIGKILL; ours to remove
                try:
                    os.unlink(seg)
                except OSError:
                    pass

    @property
    def host(self):
        return self.d.host

    @property
    def port(self):
        return self.d.port

    @property
    def pid(self):
        return self.d.pid

    def request(self, method, path, body=None, headers=None, timeout=5.0):
        return rgtest.http_request(self.host, self.port, method, path, body, headers, timeout=timeout)

    def attempt(self, method, path, body=None, headers=None, timeout=5.0):
        return attempt(self.host, self.port, method, path, body, headers, timeout)

    def raw(self, timeout=5.0):
        return rgtest.RawHTTP(self.host, self.port, timeout=timeout)

    def children(self):
        return rgtest.children(self.pid)

    def titled(self, word):
        return [p for p in self.children() if word in (rgtest.cmdline(p) or "")]

    def workers(self):
        return self.titled("worker")

    def checkers(self):
        return self.titled("checker")

    def logs(self):
        return rgtest.json_log_objects(self.d.stderr_text())


def shm_path(pid):
    return "/dev/shm/roundguardd.%d" % pid


def shm_segments(pid):
    """Paths of the segments of master pid: the first one and those of later
    generations (made by reloads), /dev/shm/roundguardd.<pid>[.<n>]."""
    base = "roundguardd.%d" % pid
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return []
    return sorted("/dev/shm/" + n for n in names if n == base or n.startswith(base + "."))


class Load(threading.Thread):
    """Sequential requests, each on a new connection, until finish()."""

    def __init__(self, lb, requests=(("GET", "/live", None),), pause=0.0):
        super().__init__(daemon=True)
        self.lb = lb
        self.requests = list(requests)
        self.pause = pause
        self.results = []          # (start time, method, path, Response or exception)
        self._halt = threading.Event()

    def run(self):
        i = 0
        while not self._halt.is_set():
            method, path, body = self.requests[i % len(self.requests)]
            i += 1
            t = time.monotonic()
            r = self.lb.attempt(method, path, body, JSON_HDR if body is not None else None)
            self.results.append((t, method, path, r))
            if self.pause:
                time.sleep(self.pause)

    def finish(self):
        self._halt.set()
        self.join(15)

    def failures(self):
        return [(m, p, r) for _, m, p, r in self.results if failed(r)]

    def backends_since(self, t0):
        return [r.header("X-Backend-Server") for t, _, _, r in list(self.results)
                if t >= t0 and not isinstance(r, Exception)]


class LBTestCase(unittest.TestCase):
    maxDiff = 4000

    def assertErrorJSON(self, r, status, title=None):
        """A response roundguardd made itself: status, JSON {title, description}."""
        self.assertNotIsInstance(r, Exception, r)
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.media_type(), "application/json", r)
        cl = r.header("Content-Length")
        if cl is not None:
            self.assertEqual(int(cl), len(r.body), r)
        try:
            obj = json.loads(r.body.decode("utf-8"))
        except ValueError as e:
            self.fail("error body is not JSON (%s): %r" % (e, r))
        self.assertIsInstance(obj, dict, r)
        self.assertEqual(set(obj), {"title", "description"}, r)
        for k in ("title", "description"):
            self.assertIsInstance(obj[k], str, r)
            self.assertTrue(obj[k].strip(), r)
        if title is not None:
            self.assertEqual(obj["title"], title, r)
        return obj

    def assertNoFailures(self, results, what=""):
        bad = [(m, p, r) for m, p, r in results if failed(r)]
        self.assertFalse(bad, "%d of %d requests failed %s: %r"
                         % (len(bad), len(results), what, bad[:5]))

    def sequential(self, lb, n, method="GET", path="/live", body=None):
        out = []
        for _ in range(n):
            r = lb.attempt(method, path, body, JSON_HDR if body is not None else None)
            out.append((method, path, r))
        self.assertNoFailures(out, "(%s %s)" % (method, path))
        return [r for _, _, r in out]

    def assertRoundRobin(self, lb, backends, rounds=10, path="/live"):
        """rounds * len(backends) requests on new connections: exactly rounds each."""
        rs = self.sequential(lb, rounds * len(backends), path=path)
        want = {b.address: rounds for b in backends}
        self.assertEqual(dict(counts(rs)), want, "X-Backend-Server counts")

    def wait_log(self, lb, msg, backend, since, timeout, **fields):
        def pred(o):
            return (o.get("msg") == msg and o.get("backend") == backend
                    and all(str(o.get(k)) == v for k, v in fields.items()))
        return rgtest.wait_json_log(lb.d, pred, timeout=timeout, since=since)


def run_rgd(*args, env=None, timeout=10.0):
    e = {"PROXY_CHECK_DURATION": None}
    e.update(env or {})
    return rgtest.run([RGD] + list(args), env=e, timeout=timeout)


# ---------------------------------------------------------------------------
# Configuration check (-t) and start-up errors
# ---------------------------------------------------------------------------

class ConfigCheckTests(LBTestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rg-cfg-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, content):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def assertConfigOK(self, p):
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("configuration OK", p.stdout + p.stderr, p)

    def test_good_configs_ok(self):
        full = {
            "listen": "127.0.0.1:3000",
            "workers": 2,
            "backends": ["http://127.0.0.1:9001", "http://127.0.0.1:9002/api"],
            "health_check": {"path": "/healthz", "interval": "10s", "timeout": "1500ms",
                             "rise": 2, "fall": 3, "expect_status": 204},
            "proxy": {"connect_timeout": "1s", "timeout": "30s", "client_timeout": "15s",
                      "shutdown_timeout": "1m30s", "max_body_size": "1MiB",
                      "max_header_size": 32768, "keepalive": 0, "retry_unsent": False,
                      "retry_idempotent": False},
            "metrics": {"path": "/_metrics", "listen": None},
            "log": {"level": "debug", "format": "json", "access": False},
            "user": None, "group": None,
        }
        cases = {
            "full.json": full,
            "minimal.json": {"backends": ["http://127.0.0.1:9001"]},
            "comments.json": '// line comment\n{ /* block */ "backends": ["http://127.0.0.1:9001"], '
                             '"workers": "auto" // trailing\n}\n',
        }
        for name, content in cases.items():
            with self.subTest(config=name):
                self.assertConfigOK(run_rgd("-t", "-c", self.write(name, content)))
        with self.subTest(config="tests/data/good-minimal.json"):
            self.assertConfigOK(run_rgd("-t", "-c", os.path.join(DATA_DIR, "good-minimal.json")))
        with self.subTest(config="flags only"):
            self.assertConfigOK(run_rgd("-t", "--backend", "http://127.0.0.1:9001",
                                        "--hosts", "http://127.0.0.1:9002"))

    def test_bad_configs_exit_1_naming_file_and_key(self):
        b = ["http://127.0.0.1:9001"]
        cases = [
            ("interval.json", {"backends": b, "health_check": {"interval": "5x"}},
             ["health_check.interval", "5x"]),
            ("unknown.json", {"backends": b, "proxy": {"tiemout": "1s"}}, ["proxy.tiemout"]),
            ("unknown-top.json", {"backends": b, "health_chek": {}}, ["health_chek"]),
            ("type.json", {"backends": b, "proxy": {"retry_unsent": "yes"}}, ["proxy.retry_unsent"]),
            ("size.json", {"backends": b, "proxy": {"max_body_size": "12XB"}}, ["proxy.max_body_size"]),
            ("url.json", {"backends": b + ["htp://x"]}, ["backends"]),
            ("empty.json", {"backends": []}, ["backends"]),
            ("level.json", {"backends": b, "log": {"level": "verbose"}}, ["log.level"]),
            ("workers.json", {"backends": b, "workers": 0}, ["workers"]),
            ("status.json", {"backends": b, "health_check": {"expect_status": "ok"}},
             ["health_check.expect_status"]),
            ("timeout.json", {"backends": b, "health_check": {"interval": "1s", "timeout": "2s"}},
             ["health_check."]),
            ("syntax.json", '{ "backends": ["http://127.0.0.1:9001"] "workers": 2 }', []),
        ]
        for name, content, keys in cases:
            with self.subTest(config=name):
                p = run_rgd("-t", "-c", self.write(name, content))
                self.assertEqual(p.returncode, 1, p)
                self.assertNotIn("configuration OK", p.stdout, p)
                lines = [l for l in p.stderr.splitlines() if name in l]
                self.assertTrue(lines, "no stderr line names %s: %r" % (name, p.stderr))
                for key in keys:
                    self.assertTrue(any(key in l for l in lines),
                                    "no stderr line names both %s and %s: %r" % (name, key, p.stderr))

    def test_every_error_is_reported(self):
        path = self.write("many.json", {
            "backends": ["http://127.0.0.1:9001"],
            "health_check": {"interval": "5x"},
            "proxy": {"timeout": "soon", "tiemout": "1s"},
        })
        p = run_rgd("-t", "-c", path)
        self.assertEqual(p.returncode, 1, p)
        for key in ("health_check.interval", "proxy.timeout", "proxy.tiemout"):
            self.assertTrue(any("many.json" in l and key in l for l in p.stderr.splitlines()),
                            "error for %s not reported: %r" % (key, p.stderr))

    def test_repository_bad_configs(self):
        names = sorted(n for n in os.listdir(DATA_DIR) if n.startswith("bad-") and n.endswith(".json"))
        self.assertTrue(names)
        for name in names:
            with self.subTest(config=name):
                p = run_rgd("-t", "-c", os.path.join(DATA_DIR, name))
                self.assertEqual(p.returncode, 1, p)
                self.assertIn(name, p.stderr, p)

    def test_missing_config_file(self):
        path = os.path.join(self.dir, "does-not-exist.json")
        p = run_rgd("-t", "-c", path)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("does-not-exist.json", p.stderr, p)

    def test_proxy_check_duration_env(self):
        path = self.write("ok.json", {"backends": ["http://127.0.0.1:9001"]})
        self.assertConfigOK(run_rgd("-t", "-c", path, env={"PROXY_CHECK_DURATION": "300ms"}))
        p = run_rgd("-t", "-c", path, env={"PROXY_CHECK_DURATION": "abc"})
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("PROXY_CHECK_DURATION", p.stderr, p)
        self.assertNotIn("configuration OK", p.stdout, p)

    def test_bad_env_at_start_exits_1_and_leaves_nothing(self):
        """A real start (no -t) with PROXY_CHECK_DURATION=abc: exit 1, no segment left."""
        port = rgtest.free_port()
        proc = subprocess.Popen(
            [RGD, "--backend", "http://127.0.0.1:9", "-l", HOST, "-p", str(port), "-w", "1"],
            env=rgtest.clean_env({"PROXY_CHECK_DURATION": "abc"}), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            for p in rgtest.group_members(proc.pid):
                os.kill(p, signal.SIGKILL)
            proc.communicate()
            self.fail("roundguardd with PROXY_CHECK_DURATION=abc still running after 5 s")
        self.assertEqual(proc.returncode, 1, err)
        self.assertIn(b"PROXY_CHECK_DURATION", err)
        self.assertFalse(os.path.exists(shm_path(proc.pid)), "segment left after a failed start")
        self.assertFalse(rgtest.port_accepting(HOST, port))

    def test_bad_log_level_env(self):
        p = run_rgd("-t", "--backend", "http://127.0.0.1:9001", env={"LOG_LEVEL": "verbose"})
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("LOG_LEVEL", p.stderr, p)

    def test_version_and_help(self):
        p = run_rgd("-V")
        self.assertEqual(p.returncode, 0, p)
        self.assertIn("roundguardd", p.stdout, p)
        p = run_rgd("-h")
        self.assertEqual(p.returncode, 0, p)
        for opt in ("--backend", "--hosts", "-c", "-t", "-p", "-l", "-w"):
            self.assertIn(opt, p.stdout, "usage does not mention %s: %r" % (opt, p.stdout))


class TLSConfigTests(LBTestCase):
    """Issue 14's first half: TLS listeners and https backends are configured, and their
    certificates loaded by -t as at start-up; serving them is refused until the data path
    exists. Certificates come from the openssl command when it is installed."""

    assertConfigOK = ConfigCheckTests.assertConfigOK

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="rg-tls-test-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def write(self, name, content):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def cert(self, name, cn):
        """A self-signed ECDSA certificate and key for cn: (cert path, key path)."""
        if shutil.which("openssl") is None:
            self.skipTest("no openssl command to make a certificate with")
        crt, key = os.path.join(self.dir, name + ".pem"), os.path.join(self.dir, name + ".key")
        p = rgtest.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "30", "-subj", "/CN=" + cn, "-addext", "subjectAltName=DNS:" + cn])
        self.assertEqual(p.returncode, 0, p)
        os.chmod(key, 0o600)
        return crt, key

    def tls_listener(self, crt, key, listen="127.0.0.1:8443"):
        return {"listen": listen, "tls": {"certificates": [{"cert": crt, "key": key}]}}

    def test_t_names_certificate_file_and_reason(self):
        missing = os.path.join(self.dir, "missing.pem")
        path = self.write("tls.json", {"backends": ["http://127.0.0.1:9001"],
                                       "listeners": [self.tls_listener(missing, missing)]})
        p = run_rgd("-t", "-c", path)
        self.assertEqual(p.returncode, 1, p)
        self.assertNotIn("configuration OK", p.stdout, p)
        self.assertIn('tls.json: listeners[0].tls.certificates[0].cert: "%s": cannot open: '
                      "No such file or directory" % missing, p.stderr, p)

    def test_t_loads_certificates(self):
        crt, key = self.cert("a", "a.example")
        _, other_key = self.cert("b", "b.example")
        ok = self.write("ok.json", {"backends": ["http://127.0.0.1:9001"],
                                    "listeners": [{"listen": "127.0.0.1:8080", "redirect_https": True},
                                                  self.tls_listener(crt, key)]})
        self.assertConfigOK(run_rgd("-t", "-c", ok))
        bad = self.write("bad.json", {"backends": ["http://127.0.0.1:9001"],
                                      "listeners": [self.tls_listener(crt, other_key)]})
        p = run_rgd("-t", "-c", bad)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn('bad.json: listeners[0].tls.certificates[0].key: "%s": the key does not match '
                      'the certificate in "%s"' % (other_key, crt), p.stderr, p)

    def test_t_backend_ca_file_and_unverified_warning(self):
        path = self.write("b.json", {"backends": [
            {"url": "https://127.0.0.1:9443", "tls": {"ca_file": os.path.join(self.dir, "ca.pem")}}]})
        p = run_rgd("-t", "-c", path)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("b.json: backends[0].tls.ca_file:", p.stderr, p)
        path = self.write("v.json", {"backends": [
            {"url": "https://127.0.0.1:9443", "tls": {"verify": False}}]})
        p = run_rgd("-t", "-c", path)
        self.assertConfigOK(p)
        self.assertIn("TLS certificate verification is off", p.stderr, p)
        self.assertIn("https://127.0.0.1:9443", p.stderr, p)

    def test_listen_flags_need_a_plain_listener(self):
        crt, key = self.cert("a", "a.example")
        path = self.write("tls.json", {"backends": ["http://127.0.0.1:9001"],
                                       "listeners": [self.tls_listener(crt, key)]})
        for flags in (["-p", "8081"], ["-l", "127.0.0.1"]):
            with self.subTest(flags=flags):
                p = run_rgd("-t", "-c", path, *flags)
                self.assertEqual(p.returncode, 1, p)
                self.assertIn("every listener has \"tls\"", p.stderr, p)

    def test_one_plain_listener_serves(self):
        """listeners with one plain entry is the short form's equivalent; -l/-p move it."""
        backends = [echo_backend(self.addCleanup) for _ in range(2)]
        lb = LB(self.addCleanup, make_config([url(b) for b in backends], health=FAST,
                                             listeners=[{"listen": "127.0.0.1:1", "name": "web"}]),
                workers=1).start()
        self.assertRoundRobin(lb, backends, 3)


# ---------------------------------------------------------------------------
# Round robin and pass-through with roundguard-echo backends
# ---------------------------------------------------------------------------

class DistributionTests(LBTestCase):

    @classmethod
    def setUpClass(cls):
        cls.backends = [echo_backend(cls.addClassCleanup) for _ in range(3)]
        cls.lb = LB(cls.addClassCleanup, make_config([url(b) for b in cls.backends]), workers=2).start()

    def test_strict_round_robin_new_connections(self):
        self.assertRoundRobin(self.lb, self.backends, 10)

    def test_strict_round_robin_one_keepalive_connection(self):
        conn = http.client.HTTPConnection(HOST, self.lb.port, timeout=5)
        self.addCleanup(conn.close)
        rs = [rgtest.conn_request(conn, "GET", "/live") for _ in range(30)]
        self.assertEqual([r.status for r in rs], [200] * 30, rs)
        self.assertEqual(dict(counts(rs)), {b.address: 10 for b in self.backends})

    def test_round_robin_concurrent_clients(self):
        results = []
        lock = threading.Lock()

        def client():
            for _ in range(20):
                r = self.lb.attempt("GET", "/live")
                with lock:
                    results.append(("GET", "/live", r))
        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(len(results), 60)
        self.assertNoFailures(results)
        self.assertEqual(dict(counts(r for _, _, r in results)),
                         {b.address: 20 for b in self.backends})

    def test_reflect_bodies_byte_exact(self):
        big = json.dumps({"items": [{"i": i, "s": "x" * 90} for i in range(9000)]}).encode()
        self.assertGreater(len(big), 1000000)
        bodies = [b"{}", b"[1,2,3]", b'"str"', '{"ünï": "日本 🎉"}'.encode(), big]
        for body in bodies:
            with self.subTest(size=len(body)):
                r = self.lb.request("POST", "/reflect", body, JSON_HDR, timeout=15)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.media_type(), "application/json", r)
                self.assertEqual(len(r.body), len(body))
                self.assertTrue(r.body == body, "body differs")
                self.assertIn(r.header("X-Backend-Server"), [b.address for b in self.backends])

    def test_chunked_request_body_to_echo(self):
        body = json.dumps({"k": list(range(5000))}).encode()
        chunks = [body[i:i + 777] for i in range(0, len(body), 777)]
        with self.lb.raw() as c:
            c.request("POST", "/reflect", chunks=chunks, headers=[("Content-Type", "application/json")])
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body)

    def test_echo_statuses_passed_through(self):
        addrs = [b.address for b in self.backends]
        r = self.lb.request("POST", "/reflect", b"{not json", JSON_HDR)
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.body, ECHO_BAD_REQUEST_BODY)
        self.assertIn(r.header("X-Backend-Server"), addrs, r)
        r = self.lb.request("GET", "/no/such/path")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.media_type(), "application/json", r)
        self.assertIn(r.header("X-Backend-Server"), addrs, r)
        r = self.lb.request("GET", "/reflect")
        self.assertEqual(r.status, 405, r)
        self.assertIn("POST", r.header("Allow") or "", r)
        self.assertIn(r.header("X-Backend-Server"), addrs, r)

    def test_head_request(self):
        with self.lb.raw() as c:
            c.request("HEAD", "/live")
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 200, r)
            self.assertIsNotNone(r.header("X-Backend-Server"), r)
            c.request("GET", "/live")      # nothing left over from the HEAD answer
            self.assertEqual(c.read_response().status, 200)

    def test_metrics_on_proxy_port(self):
        r = self.lb.request("GET", "/metrics")
        self.assertEqual(r.status, 200, r)
        text = r.body.decode()
        self.assertIsNone(r.header("X-Backend-Server"), "metrics were proxied: %r" % r)
        self.assertIn('proxy_count{availability="available"} 3', text)
        self.assertIn("roundguard_backend_up", text)


# ---------------------------------------------------------------------------
# Request/response rewriting, framing, protocol (testbackend.py backends)
# ---------------------------------------------------------------------------

class ProxyTests(LBTestCase):

    @classmethod
    def setUpClass(cls):
        cls.backends = [py_backend(cls.addClassCleanup) for _ in range(2)]
        cls.addrs = [b.address for b in cls.backends]
        cfg = make_config([url(b) for b in cls.backends], proxy={"timeout": "400ms"})
        cls.lb = LB(cls.addClassCleanup, cfg, workers=2).start()

    def headers_request(self, headers, host="example.test:8080", target="/headers?a=1"):
        with self.lb.raw() as c:
            c.send(rgtest.build_request("GET", target, headers=headers, host=host))
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        seen = r.json()
        self.assertEqual(r.header("X-Backend-Server"), seen["backend"], r)
        return r, seen

    def test_request_headers_forwarded_and_hop_by_hop_removed(self):
        r, seen = self.headers_request([
            ("X-Forwarded-For", "10.1.2.3"),
            ("Connection", "keep-alive, X-Hop-Custom"),
            ("X-Hop-Custom", "drop me"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Authorization", "Bearer t0k3n"),
            ("X-Dup", "one"),
            ("X-Dup", "two"),
            ("Cookie", "a=b; c=d"),
            ("User-Agent", "rg-test/1"),
        ])
        h = seen["headers"]

        def values(name):
            return [v for k, v in h if k.lower() == name.lower()]
        self.assertEqual(seen["request_line"], "GET /headers?a=1 HTTP/1.1", seen)
        self.assertEqual(values("Host"), ["example.test:8080"], h)
        self.assertEqual(values("X-Forwarded-For"), ["10.1.2.3, 127.0.0.1"], h)
        self.assertEqual(values("X-Forwarded-Proto"), ["http"], h)
        self.assertEqual(values("X-Forwarded-Host"), ["example.test:8080"], h)
        for name in ("X-Hop-Custom", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
                     "Upgrade", "Proxy-Authorization"):
            self.assertEqual(values(name), [], "hop-by-hop %s forwarded: %r" % (name, h))
        for v in values("Connection"):
            self.assertNotIn("x-hop-custom", v.lower(), h)
        self.assertEqual(values("Authorization"), ["Bearer t0k3n"], h)
        self.assertEqual(values("X-Dup"), ["one", "two"], h)
        self.assertEqual(values("Cookie"), ["a=b; c=d"], h)
        self.assertEqual(values("User-Agent"), ["rg-test/1"], h)

    def test_forwarded_for_without_and_with_list(self):
        _, seen = self.headers_request([], host="h.test")
        xff = [v for k, v in seen["headers"] if k.lower() == "x-forwarded-for"]
        self.assertEqual(xff, ["127.0.0.1"], seen)
        xfh = [v for k, v in seen["headers"] if k.lower() == "x-forwarded-host"]
        self.assertEqual(xfh, ["h.test"], seen)
        _, seen = self.headers_request([("X-Forwarded-For", "10.0.0.1, 10.0.0.2")])
        xff = [v for k, v in seen["headers"] if k.lower() == "x-forwarded-for"]
        self.assertEqual(xff, ["10.0.0.1, 10.0.0.2, 127.0.0.1"], seen)

    def test_methods_and_targets_pass_through(self):
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            with self.subTest(method=method):
                target = "/headers/%s/x%%20y?q=1&r=a%%2Fb" % method.lower()
                body = b'{"m":"%s"}' % method.encode() if method in ("POST", "PUT", "PATCH") else None
                with self.lb.raw() as c:
                    c.send(rgtest.build_request(method, target, body=body))
                    r = c.read_response(method)
                self.assertEqual(r.status, 200, r)
                seen = r.json()
                self.assertEqual(seen["method"], method)
                self.assertEqual(seen["target"], target)
                self.assertEqual(seen["body_len"], len(body or b""))
                if body:
                    self.assertEqual(seen["body_sha1"], hashlib.sha1(body).hexdigest())
        with self.lb.raw() as c:
            c.request("HEAD", "/headers")
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 200, r)
            self.assertIn(r.header("X-Backend-Server"), self.addrs)

    def test_trace_refused_by_default(self):
        """TRACE echoes cookies and credentials (cross-site tracing): 405 made here, with
        Allow and the JSON body, and the connection stays usable (proxy.allow_trace)."""
        with self.lb.raw() as c:
            c.request("TRACE", "/headers")
            r = c.read_response()
            self.assertEqual(r.status, 405, r)
            self.assertIsNone(r.header("X-Backend-Server"), r)
            self.assertIn("GET", r.header("Allow") or "", r)
            self.assertNotIn("TRACE", r.header("Allow") or "", r)
            self.assertEqual(set(r.json()), {"title", "description"}, r)
            c.request("GET", "/headers")
            self.assertEqual(c.read_response().status, 200)

    def test_response_hop_by_hop_removed(self):
        with self.lb.raw() as c:
            c.request("GET", "/hop")
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hop")
        self.assertEqual(r.header("X-End-To-End"), "kept", r)
        for name in ("X-Resp-Hop", "Keep-Alive", "Proxy-Authenticate", "Proxy-Connection", "Upgrade"):
            self.assertIsNone(r.header(name), "hop-by-hop %s passed to the client: %r" % (name, r))
        for v in r.header_all("Connection"):
            self.assertNotIn("x-resp-hop", v.lower(), r)
        self.assertIn(r.header("X-Backend-Server"), self.addrs, r)

    def test_chunked_response_passed_through(self):
        with self.lb.raw() as c:
            c.request("GET", "/chunked")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertIn("chunked", (r.header("Transfer-Encoding") or "").lower(), r)
            self.assertIsNone(r.header("Content-Length"), r)
            self.assertEqual(r.body, b"".join(tb.CHUNKED_PARTS))
            c.request("GET", "/headers")     # connection still usable
            self.assertEqual(c.read_response().status, 200)

    def test_http10_client_gets_dechunked_answer_and_close(self):
        with self.lb.raw() as c:
            c.send(b"GET /chunked HTTP/1.0\r\nHost: x\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertNotIn("chunked", (r.header("Transfer-Encoding") or "").lower(), r)
            self.assertEqual(r.body, b"".join(tb.CHUNKED_PARTS))
            self.assertTrue(c.closed_by_peer(2.0), "connection not closed after an HTTP/1.0 answer")

    def test_http10_client_plain(self):
        with self.lb.raw() as c:
            c.send(b"GET /headers HTTP/1.0\r\n\r\n")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["method"], "GET")
            self.assertTrue(c.closed_by_peer(2.0), "connection not closed after an HTTP/1.0 answer")

    def test_close_delimited_response(self):
        with self.lb.raw() as c:
            c.request("GET", "/close")
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), len(tb.CLOSE_BODY))
        self.assertTrue(r.body == tb.CLOSE_BODY, "body differs")

    def test_pipelined_requests_answered_in_order(self):
        reqs = (rgtest.build_request("GET", "/headers?seq=1")
                + rgtest.build_request("POST", "/count", body=b"abcde")
                + rgtest.build_request("GET", "/status?code=404")
                + rgtest.build_request("GET", "/headers?seq=4"))
        with self.lb.raw() as c:
            c.send(reqs)
            r1, r2, r3, r4 = (c.read_response() for _ in range(4))
        self.assertEqual((r1.status, r1.json()["target"]), (200, "/headers?seq=1"), r1)
        self.assertEqual((r2.status, r2.json()["bytes"]), (200, 5), r2)
        self.assertEqual((r3.status, r3.json()), (404, {"code": 404}), r3)
        self.assertEqual((r4.status, r4.json()["target"]), (200, "/headers?seq=4"), r4)

    def test_expect_100_continue(self):
        body = b"x" * 5000
        with self.lb.raw(timeout=3) as c:
            c.send(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                   b"Expect: 100-continue\r\n\r\n" % len(body))
            try:
                interim = c._read_until(b"\r\n\r\n")
            except socket.timeout:
                self.fail("no 100 Continue within 3 s")
            self.assertTrue(interim.startswith(b"HTTP/1.1 100"), interim)
            c.send(body)
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["bytes"], len(body))

    def test_client_keepalive(self):
        with self.lb.raw() as c:
            seen = set()
            for i in range(8):
                c.request("GET", "/headers?i=%d" % i)
                r = c.read_response()
                self.assertEqual(r.status, 200, r)
                self.assertFalse(r.wants_close(), r)
                self.assertEqual(r.json()["target"], "/headers?i=%d" % i)
                seen.add(r.header("X-Backend-Server"))
            self.assertFalse(c.closed_by_peer(0.3), "keep-alive connection closed")
        self.assertEqual(seen, set(self.addrs))

    def test_chunked_request_body_streamed(self):
        body = os.urandom(200000)
        chunks = [body[i:i + 10000] for i in range(0, len(body), 10000)]
        with self.lb.raw() as c:
            c.request("POST", "/headers", chunks=chunks)
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        seen = r.json()
        te = [v for k, v in seen["headers"] if k.lower() == "transfer-encoding"]
        self.assertEqual([v.lower() for v in te], ["chunked"], seen["headers"])
        self.assertEqual(seen["body_len"], len(body))
        self.assertEqual(seen["body_sha1"], hashlib.sha1(body).hexdigest())

    def test_backend_error_statuses_passed_through_not_retried(self):
        for code in (500, 503, 404):
            with self.subTest(code=code):
                marker = uuid.uuid4().hex
                r = self.lb.request("GET", "/status?code=%d&id=%s" % (code, marker))
                self.assertEqual(r.status, code, r)
                self.assertEqual(r.json(), {"code": code}, r)
                self.assertIn(r.header("X-Backend-Server"), self.addrs, r)
                time.sleep(0.1)
                n = sum(len(received(b, marker)) for b in self.backends)
                self.assertEqual(n, 1, "backend %d answer was retried" % code)

    def test_slow_backend_504(self):
        marker = uuid.uuid4().hex
        t0 = time.monotonic()
        r = self.lb.attempt("GET", "/slow?ms=2500&id=" + marker, timeout=5)
        elapsed = time.monotonic() - t0
        self.assertErrorJSON(r, 504)
        self.assertGreaterEqual(elapsed, 0.35, "504 before proxy.timeout (400ms)")
        self.assertLess(elapsed, 1.3, "504 took %.2f s with proxy.timeout 400ms" % elapsed)
        r = self.lb.request("GET", "/slow?ms=50")
        self.assertEqual((r.status, r.body), (200, b"slow"), r)

    def test_obs_fold_rejected(self):
        """A folded header line (obs-fold) is refused with 400 (DESIGN: llhttp
        refuses it) and never forwarded as it is."""
        for fold in (b"  ", b"\t"):
            with self.subTest(fold=fold):
                marker = uuid.uuid4().hex
                with self.lb.raw() as c:
                    c.send(b"GET /headers?id=%s HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n%sfolded\r\n"
                           b"X-B: 2\r\n\r\n" % (marker.encode(), fold))
                    r = c.read_response()
                if r.status == 200:
                    self.fail("obs-fold request forwarded; the backend received head %r"
                              % r.json().get("raw_head"))
                self.assertErrorJSON(r, 400)
                time.sleep(0.1)
                for b in self.backends:
                    self.assertEqual(received(b, marker), [], "an obs-fold request reached a backend")

    def test_malformed_requests_400(self):
        marker = uuid.uuid4().hex
        cases = {
            "garbage": b"GARBAGE\r\n\r\n",
            "cl+te": (b"POST /headers?id=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % marker.encode()),
            "two content-lengths": (b"POST /headers?id=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                    b"Content-Length: 4\r\n\r\nabcd" % marker.encode()),
            "header without colon": b"GET /headers?id=%s HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n" % marker.encode(),
            "bad version": b"GET /headers?id=%s HTTP/9.Z\r\nHost: x\r\n\r\n" % marker.encode(),
        }
        for name, data in cases.items():
            with self.subTest(case=name):
                with self.lb.raw() as c:
                    c.send(data)
                    try:
                        r = c.read_response()
                    except rgtest.ConnectionClosed:
                        self.fail("connection closed without a 400 answer")
                self.assertErrorJSON(r, 400)
        time.sleep(0.1)
        for b in self.backends:
            self.assertEqual(received(b, marker), [], "a malformed request reached a backend")
        self.assertEqual(self.lb.request("GET", "/headers").status, 200)


class LimitsTests(LBTestCase):

    @classmethod
    def setUpClass(cls):
        cls.backend = py_backend(cls.addClassCleanup)
        cfg = make_config([url(cls.backend)], proxy={
            "max_header_size": "4KiB", "max_body_size": "64KiB", "client_timeout": "400ms"})
        cls.lb = LB(cls.addClassCleanup, cfg, workers=1).start()

    def test_431_header_too_large(self):
        marker = uuid.uuid4().hex
        with self.lb.raw() as c:
            c.request("GET", "/headers?id=" + marker, headers=[("X-Big", "a" * 8000)])
            r = c.read_response()
        self.assertErrorJSON(r, 431)
        time.sleep(0.1)
        self.assertEqual(received(self.backend, marker), [])
        with self.lb.raw() as c:
            c.request("GET", "/headers", headers=[("X-Big", "a" * 3000)])
            self.assertEqual(c.read_response().status, 200)

    def test_413_content_length_before_forwarding(self):
        marker = uuid.uuid4().hex
        with self.lb.raw(timeout=3) as c:
            c.send(b"POST /count?id=%s HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                   % marker.encode())
            try:
                r = c.read_response()       # no body sent: the answer must come anyway
            except socket.timeout:
                self.fail("no 413 before the body was sent")
        self.assertErrorJSON(r, 413)
        time.sleep(0.1)
        self.assertEqual(received(self.backend, marker), [], "request forwarded despite 413")

    def test_body_at_limit_passes(self):
        body = b"z" * 65536
        r = self.lb.request("POST", "/count", body)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["bytes"], 65536)
        r = self.lb.attempt("POST", "/count", body + b"z")
        self.assertErrorJSON(r, 413)

    def test_408_head_stalls(self):
        with self.lb.raw(timeout=3) as c:
            t0 = time.monotonic()
            c.send(b"GET /headers HTTP/1.1\r\nHost: x\r\n")
            r = c.read_response()
            elapsed = time.monotonic() - t0
        self.assertErrorJSON(r, 408)
        self.assertGreater(elapsed, 0.3)
        self.assertLess(elapsed, 1.5)

    def test_408_body_stalls(self):
        with self.lb.raw(timeout=3) as c:
            t0 = time.monotonic()
            c.send(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
            r = c.read_response()
            elapsed = time.monotonic() - t0
        self.assertErrorJSON(r, 408)
        self.assertGreater(elapsed, 0.3)
        self.assertLess(elapsed, 1.5)


class PrefixTests(LBTestCase):

    def test_backend_url_prefix_is_prepended(self):
        b = py_backend(self.addCleanup)
        lb = LB(self.addCleanup, make_config([url(b, "/api")]), workers=1).start()
        for target, want in (("/x?q=1", "/api/x?q=1"), ("/a/b/c", "/api/a/b/c")):
            with self.subTest(target=target):
                r = lb.request("GET", target)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.json()["target"], want, r)
                self.assertEqual(r.header("X-Backend-Server"), b.address, r)


# ---------------------------------------------------------------------------
# Retries
# ---------------------------------------------------------------------------

class RetryTests(LBTestCase):
    """Backend A reads each request and closes without answering; B answers."""

    @classmethod
    def setUpClass(cls):
        cls.a = py_backend(cls.addClassCleanup, mode="reset")
        cls.b = py_backend(cls.addClassCleanup)
        cls.lb = LB(cls.addClassCleanup, make_config([url(cls.a), url(cls.b)]), workers=2).start()

    def total(self, marker):
        time.sleep(0.15)        # let the stdout drains catch up
        return len(received(self.a, marker)), len(received(self.b, marker))

    def test_get_and_idempotent_methods_retried_on_next_backend(self):
        marker = uuid.uuid4().hex
        for method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"):
            with self.subTest(method=method):
                for i in range(4):
                    body = b"{}" if method == "PUT" else None
                    r = self.lb.attempt(method, "/headers?id=%s&i=%s%d" % (marker, method, i), body)
                    self.assertFalse(failed(r), r)
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.header("X-Backend-Server"), self.b.address, r)
        na, nb = self.total(marker)
        self.assertEqual(nb, 20)
        self.assertGreaterEqual(na, 1, "no request reached the resetting backend: retry not exercised")

    def test_post_not_retried_502(self):
        marker = uuid.uuid4().hex
        statuses = []
        for i in range(20):
            r = self.lb.attempt("POST", "/headers?id=%s&i=%d" % (marker, i), b'{"n":%d}' % i, JSON_HDR)
            self.assertNotIsInstance(r, Exception, r)
            if r.status == 502:
                self.assertErrorJSON(r, 502)
            else:
                self.assertEqual(r.status, 200, r)
                self.assertEqual(r.header("X-Backend-Server"), self.b.address, r)
            statuses.append(r.status)
        na, nb = self.total(marker)
        self.assertGreaterEqual(statuses.count(502), 1, "no POST reached the resetting backend")
        self.assertEqual(na, statuses.count(502), "POSTs reaching A vs 502 answers")
        self.assertEqual(nb, statuses.count(200))
        self.assertEqual(na + nb, 20, "a POST was sent twice")

    def test_get_retried_only_once(self):
        ctl(self.b, mode="reset")
        self.addCleanup(ctl, self.b, mode="ok")
        marker = uuid.uuid4().hex
        r = self.lb.attempt("GET", "/headers?id=" + marker)
        self.assertErrorJSON(r, 502)
        na, nb = self.total(marker)
        self.assertEqual(na + nb, 2, "want one try and one retry, got A=%d B=%d" % (na, nb))


class ConnectFailoverTests(LBTestCase):
    """A backend dies; the checker would not notice for a minute: the workers must."""

    def test_dead_backend_skipped_for_every_method(self):
        backends = [echo_backend(self.addCleanup) for _ in range(3)]
        lb = LB(self.addCleanup, make_config([url(b) for b in backends],
                                             health={"interval": "60s", "timeout": "100ms"}),
                workers=2).start()
        self.assertRoundRobin(lb, backends, 4)     # fills the workers' keep-alive pools
        dead = backends[1]
        dead.kill()
        time.sleep(0.3)
        alive = {backends[0].address, backends[2].address}
        reqs = [("GET", "/live", None), ("POST", "/reflect", b'{"a":[1,2]}'),
                ("PUT", "/reflect", b"{}"), ("DELETE", "/live", None),
                ("PATCH", "/reflect", b"[]"), ("OPTIONS", "/live", None), ("HEAD", "/live", None)]
        results = []
        for i in range(5):
            for method, path, body in reqs:
                r = lb.attempt(method, path, body, JSON_HDR if body is not None else None)
                results.append((method, path, r))
                if not failed(r):
                    self.assertIn(r.header("X-Backend-Server"), alive, r)
                    if method == "POST":
                        self.assertEqual((r.status, r.body), (200, body), r)
        self.assertNoFailures(results, "after a backend died")
        rs = self.sequential(lb, 20)
        self.assertEqual(dict(counts(rs)), {a: 10 for a in alive})


# ---------------------------------------------------------------------------
# Health checking
# ---------------------------------------------------------------------------

class HealthTests(LBTestCase):

    @classmethod
    def setUpClass(cls):
        cls.echos = [echo_backend(cls.addClassCleanup) for _ in range(2)]
        cls.py = py_backend(cls.addClassCleanup)
        cls.all = cls.echos + [cls.py]
        cls.lb = LB(cls.addClassCleanup, make_config([url(b) for b in cls.all], health=FAST),
                    workers=2).start()

    def test_killed_backend_detected_and_comes_back(self):
        victim = self.echos[0]
        load = Load(self.lb)
        load.start()
        self.addCleanup(load.finish)
        time.sleep(0.4)
        mark = self.lb.d.stderr_mark()
        t_kill = time.monotonic()
        victim.kill()
        down = self.wait_log(self.lb, "backend down", victim.address, mark,
                             INTERVAL + CHECK_TIMEOUT + SLACK)
        t_down = time.monotonic() - t_kill
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t_kill)))
        load.finish()
        self.assertNoFailures([(m, p, r) for _, m, p, r in load.results], "while a backend died")
        self.assertGreater(len(load.results), 10, "load thread too slow to mean anything")
        self.assertIsNotNone(down, "no 'backend down' for %s within %.1f s; stderr:\n%s"
                             % (victim.address, INTERVAL + CHECK_TIMEOUT + SLACK,
                                self.lb.d.stderr_text()[-3000:]))
        self.assertEqual(down.get("level"), "warn", down)
        self.assertEqual(down.get("reason"), "connect refused", down)
        after = load.backends_since(t_kill + INTERVAL + CHECK_TIMEOUT + 0.05)
        self.assertTrue(after)
        self.assertNotIn(victim.address, after)
        self.assertLess(t_down, INTERVAL + CHECK_TIMEOUT + SLACK)

        # restarted on the same port: back in rotation
        mark = self.lb.d.stderr_mark()
        restarted = rgtest.Daemon(ECHO, ["-l", "{host}", "-p", "{port}", "-w", "1"], port=victim.port)
        self.addClassCleanup(restarted.kill)
        restarted.start()
        self.echos[0] = restarted
        self.all[0] = restarted
        up = self.wait_log(self.lb, "backend up", victim.address, mark, INTERVAL + CHECK_TIMEOUT + SLACK)
        self.assertIsNotNone(up, "no 'backend up' after the restart; stderr:\n%s"
                             % self.lb.d.stderr_text()[-3000:])
        self.assertEqual(up.get("level"), "info", up)
        self.assertRoundRobin(self.lb, self.all, 10)

    def test_status_500_takes_backend_out(self):
        addr = self.py.address
        mark = self.lb.d.stderr_mark()
        ctl(self.py, live=500)
        self.addCleanup(ctl, self.py, live=200)
        down = self.wait_log(self.lb, "backend down", addr, mark, INTERVAL + CHECK_TIMEOUT + SLACK)
        self.assertIsNotNone(down, self.lb.d.stderr_text()[-3000:])
        self.assertEqual(down.get("reason"), "status 500", down)
        rs = self.sequential(self.lb, 12)
        self.assertEqual(dict(counts(rs)), {b.address: 6 for b in self.echos})
        mark = self.lb.d.stderr_mark()
        ctl(self.py, live=200)
        up = self.wait_log(self.lb, "backend up", addr, mark, INTERVAL + CHECK_TIMEOUT + SLACK)
        self.assertIsNotNone(up, self.lb.d.stderr_text()[-3000:])
        self.assertRoundRobin(self.lb, self.all, 10)

    def test_probe_timeout_takes_backend_out(self):
        addr = self.py.address
        mark = self.lb.d.stderr_mark()
        ctl(self.py, live_delay_ms=400)
        self.addCleanup(ctl, self.py, live_delay_ms=0)
        down = self.wait_log(self.lb, "backend down", addr, mark, INTERVAL + CHECK_TIMEOUT + SLACK)
        self.assertIsNotNone(down, self.lb.d.stderr_text()[-3000:])
        self.assertEqual(down.get("reason"), "timeout", down)
        rs = self.sequential(self.lb, 6)
        self.assertNotIn(addr, counts(rs))
        mark = self.lb.d.stderr_mark()
        ctl(self.py, live_delay_ms=0)
        up = self.wait_log(self.lb, "backend up", addr, mark, INTERVAL + CHECK_TIMEOUT + SLACK + 0.5)
        self.assertIsNotNone(up, self.lb.d.stderr_text()[-3000:])


class NoUpstreamTests(LBTestCase):

    def assertNoUpstream(self, r, head=False):
        self.assertNotIsInstance(r, Exception, r)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.media_type(), "application/json", r)
        if head:
            self.assertEqual(r.body, b"", r)
        else:
            self.assertEqual(r.body, NO_UPSTREAM_BODY, r)
            cl = r.header("Content-Length")
            if cl is not None:
                self.assertEqual(int(cl), len(NO_UPSTREAM_BODY), r)

    def test_no_live_backend_at_start(self):
        ports = [rgtest.free_port(), rgtest.free_port()]
        lb = LB(self.addCleanup, make_config(["http://127.0.0.1:%d" % p for p in ports], health=FAST),
                workers=2).start()
        for method, body in (("GET", None), ("POST", b"{}"), ("DELETE", None)):
            with self.subTest(method=method):
                self.assertNoUpstream(lb.attempt(method, "/anything", body))
        with lb.raw() as c:
            c.request("HEAD", "/x")
            self.assertNoUpstream(c.read_response("HEAD"), head=True)

    def test_all_backends_killed_then_one_back(self):
        b = echo_backend(self.addCleanup)
        lb = LB(self.addCleanup, make_config([url(b)], health=FAST), workers=2).start()
        self.assertEqual(lb.request("GET", "/live").status, 200)
        mark = lb.d.stderr_mark()
        b.kill()
        self.assertIsNotNone(self.wait_log(lb, "backend down", b.address, mark, INTERVAL + CHECK_TIMEOUT + SLACK),
                             lb.d.stderr_text()[-3000:])
        self.assertNoUpstream(lb.attempt("GET", "/live"))
        mark = lb.d.stderr_mark()
        again = rgtest.Daemon(ECHO, ["-l", "{host}", "-p", "{port}", "-w", "1"], port=b.port)
        self.addCleanup(again.kill)
        again.start()
        self.assertIsNotNone(self.wait_log(lb, "backend up", b.address, mark, INTERVAL + CHECK_TIMEOUT + SLACK),
                             lb.d.stderr_text()[-3000:])
        r = lb.request("GET", "/live")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("X-Backend-Server"), b.address)


# ---------------------------------------------------------------------------
# Processes, shared memory, signals
# ---------------------------------------------------------------------------

class ProcessTests(LBTestCase):

    @classmethod
    def setUpClass(cls):
        cls.backends = [echo_backend(cls.addClassCleanup) for _ in range(2)]
        cls.lb = LB(cls.addClassCleanup, make_config([url(b) for b in cls.backends], health=FAST),
                    workers=2).start()

    def test_process_tree_titles_and_shm(self):
        lb = self.lb
        kids = lb.children()
        titles = {p: rgtest.cmdline(p) for p in kids}
        self.assertEqual(len(kids), 3, "want 2 workers + 1 health checker: %r" % titles)
        self.assertEqual(len(lb.workers()), 2, titles)
        self.assertEqual(len(lb.checkers()), 1, titles)
        self.assertIn("roundguardd: master", rgtest.cmdline(lb.pid) or "")
        self.assertEqual(lb.ready.get("address"), "%s:%d" % (HOST, lb.port), lb.ready)
        self.assertEqual(lb.ready.get("shm"), "/roundguardd.%d" % lb.pid, lb.ready)
        st = os.stat(shm_path(lb.pid))
        self.assertEqual(st.st_mode & 0o777, 0o600, oct(st.st_mode))
        self.assertEqual(st.st_uid, os.getuid())

    def test_worker_killed_is_respawned(self):
        lb = self.lb
        before = lb.workers()
        self.assertEqual(len(before), 2, {p: rgtest.cmdline(p) for p in lb.children()})
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        now = rgtest.wait_until(lambda: [w for w in lb.workers() if w not in before], timeout=3)
        self.assertTrue(now, "no new worker within 3 s; children %r" % lb.children())
        self.assertNotIn(victim, lb.workers())
        self.assertEqual(len(lb.workers()), 2)
        lb.d.refresh_pids()
        self.assertRoundRobin(lb, self.backends, 10)
        self.assertTrue(rgtest.pid_alive(lb.pid))

    def test_checker_killed_is_respawned(self):
        lb = self.lb
        before = lb.checkers()
        self.assertEqual(len(before), 1, {p: rgtest.cmdline(p) for p in lb.children()})
        os.kill(before[0], signal.SIGKILL)
        now = rgtest.wait_until(lambda: [c for c in lb.checkers() if c not in before], timeout=3)
        self.assertTrue(now, "no new health checker within 3 s; children %r" % lb.children())
        lb.d.refresh_pids()
        # The new checker works: a backend that dies and comes back returns to
        # rotation, and only the checker can put it back.
        b = self.backends[1]
        mark = lb.d.stderr_mark()
        b.kill()
        down = self.wait_log(lb, "backend down", b.address, mark, INTERVAL + CHECK_TIMEOUT + SLACK)
        self.assertIsNotNone(down, "respawned checker logged no 'backend down'; stderr:\n%s"
                             % lb.d.stderr_text()[-3000:])
        self.assertEqual(down.get("pid"), now[0], down)
        rs = self.sequential(lb, 6)
        self.assertEqual(dict(counts(rs)), {self.backends[0].address: 6})
        again = rgtest.Daemon(ECHO, ["-l", "{host}", "-p", "{port}", "-w", "1"], port=b.port)
        self.addClassCleanup(again.kill)
        again.start()
        self.backends[1] = again
        came_back = rgtest.wait_until(
            lambda: b.address in [lb.request("GET", "/live").header("X-Backend-Server") for _ in range(2)],
            timeout=INTERVAL + CHECK_TIMEOUT + SLACK + 0.5, interval=0.05)
        self.assertTrue(came_back, "restarted backend not back in rotation")


class SystemdNotifyTests(LBTestCase):
    """sd_notify: READY=1 after the first health pass, RELOADING=1/READY=1 around a
    reload, STOPPING=1 on SIGTERM, read from a NOTIFY_SOCKET of our own."""

    def test_notify_states(self):
        tmp = tempfile.mkdtemp(prefix="rg-notify-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind(path)
        sock.settimeout(10)
        b = echo_backend(self.addCleanup)
        lb = LB(self.addCleanup, make_config([url(b)], health=FAST), workers=1,
                env={"NOTIFY_SOCKET": path})
        lb.start()

        def next_state():
            msg = sock.recv(4096).decode()
            return msg

        self.assertIn("READY=1", next_state())
        os.kill(lb.pid, signal.SIGHUP)
        self.assertIn("RELOADING=1", next_state())
        self.assertIn("READY=1", next_state())
        os.kill(lb.pid, signal.SIGTERM)
        self.assertIn("STOPPING=1", next_state())
        self.assertEqual(lb.d.wait(10), 0)


@unittest.skipUnless(os.geteuid() == 0, "privilege drop needs root")
class PrivilegeDropTests(LBTestCase):
    """user/group: the children run as that user once the sockets are bound; the
    master stays root; an unknown user is a configuration error."""

    def test_children_run_as_configured_user(self):
        import pwd
        nobody = pwd.getpwnam("nobody")
        b = echo_backend(self.addCleanup)
        lb = LB(self.addCleanup, make_config([url(b)], health=FAST, user="nobody"), workers=2)
        lb.start()
        kids = lb.children()
        self.assertEqual(len(kids), 3, kids)

        def uids(pid):
            with open("/proc/%d/status" % pid) as f:
                return set([line.split()[1:] for line in f if line.startswith("Uid:")][0])

        # "ready" comes right after the fork: a child drops privileges before it
        # serves anything, but may not have done so yet at that moment.
        rgtest.wait_until(lambda: all(uids(p) == {str(nobody.pw_uid)} for p in kids), timeout=3)
        for pid in kids:
            self.assertEqual(uids(pid), {str(nobody.pw_uid)}, pid)
        self.assertEqual(os.stat("/proc/%d" % lb.pid).st_uid, 0)
        st = os.stat(shm_path(lb.pid))
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (nobody.pw_uid, 0o600))
        r = lb.request("GET", "/live")
        self.assertEqual(r.status, 200)

    def test_unknown_user_is_a_config_error(self):
        b = echo_backend(self.addCleanup)
        tmp = tempfile.mkdtemp(prefix="rg-user-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "rg.json")
        with open(path, "w") as f:
            json.dump(make_config([url(b)], user="no-such-user-rg"), f)
        r = run_rgd("-t", "-c", path)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("no-such-user-rg", r.stderr)


class ReloadTests(LBTestCase):

    def test_sighup_new_backend_list_without_failures(self):
        """Four reloads that swap the backend list back and forth while three
        clients keep sending: every request answered by a backend, and after
        each reload only the new list answers."""
        old = [echo_backend(self.addCleanup) for _ in range(2)]
        new = [echo_backend(self.addCleanup) for _ in range(2)]
        lb = LB(self.addCleanup, make_config([url(b) for b in old], health=FAST), workers=2).start()
        self.assertRoundRobin(lb, old, 5)
        loads = [Load(lb), Load(lb), Load(lb, [("POST", "/reflect", b'{"reload":true}')])]
        for t in loads:
            t.start()
            self.addCleanup(t.finish)
        time.sleep(0.2)
        switched_ok = []
        for i in range(4):
            target = new if i % 2 == 0 else old
            lb.write_config(make_config([url(b) for b in target], health=FAST))
            t0 = time.monotonic()
            lb.d.send_signal(signal.SIGHUP)
            want = {b.address for b in target}

            def switched():
                seen = loads[0].backends_since(t0)[-10:]
                return len(seen) == 10 and set(seen) <= want
            switched_ok.append(bool(rgtest.wait_until(switched, timeout=5)))
            time.sleep(0.2)
        for t in loads:
            t.finish()
        results = [(m, p, r) for t in loads for _, m, p, r in t.results]
        self.assertNoFailures(results, "during 4 SIGHUP reloads")
        self.assertEqual(switched_ok, [True] * 4, "new backends not in use 5 s after SIGHUP; stderr:\n%s"
                         % lb.d.stderr_text()[-3000:])
        self.assertTrue(rgtest.pid_alive(lb.pid))
        lb.d.refresh_pids()
        self.assertRoundRobin(lb, old, 10)
        # Old generations' workers exit once drained (under ASan, after LeakSanitizer's pass).
        rgtest.wait_until(lambda: len(lb.workers()) == 2, timeout=5)
        self.assertEqual(len(lb.workers()), 2, {p: rgtest.cmdline(p) for p in lb.children()})
        pids = lb.d.live_pids()
        rc, _ = lb.d.stop(signal.SIGTERM, timeout=5)
        self.assertEqual(rc, 0, lb.d.stderr_text()[-3000:])
        self.assertFalse([p for p in pids if rgtest.pid_alive(p)], "processes left after SIGTERM")
        self.assertEqual(shm_segments(lb.pid), [], "segments left after exit")

    def test_sighup_adding_a_listener_keeps_the_others(self):
        """Reloads that add and remove a second listener while three clients keep
        sending to the first: its queued connections reach the new workers (its
        sockets carry over), none is reset when the old generation goes."""
        backends = [echo_backend(self.addCleanup) for _ in range(2)]
        extra = rgtest.free_port()
        plain = {"listen": "127.0.0.1:1", "name": "web"}
        other = {"listen": "%s:%d" % (HOST, extra), "name": "other"}
        lb = LB(self.addCleanup, make_config([url(b) for b in backends], health=FAST,
                                             listeners=[plain]), workers=2).start()
        loads = [Load(lb) for _ in range(3)]
        for t in loads:
            t.start()
            self.addCleanup(t.finish)
        for i in range(4):
            listeners = [plain, other] if i % 2 == 0 else [plain]
            lb.write_config(make_config([url(b) for b in backends], health=FAST,
                                        listeners=listeners))
            old = lb.workers()
            mark = lb.d.stderr_mark()
            lb.d.send_signal(signal.SIGHUP)
            self.assertIsNotNone(rgtest.wait_json_log(
                lb.d, lambda o: o.get("msg") == "reloaded", 8, since=mark),
                lb.d.stderr_text()[-2000:])
            self.assertTrue(rgtest.wait_until(lambda: not [p for p in old if rgtest.pid_alive(p)], 8))
            if i % 2 == 0:
                self.assertTrue(rgtest.wait_port(HOST, extra, 3))
            else:       # the removed listener's sockets go with the old generation
                self.assertTrue(rgtest.wait_until(
                    lambda: not rgtest.port_accepting(HOST, extra, timeout=0.2), 5))
            time.sleep(0.2)
        for t in loads:
            t.finish()
        results = [(m, p, r) for t in loads for _, m, p, r in t.results]
        self.assertGreater(len(results), 100)
        self.assertNoFailures(results, "during 4 reloads that add or remove another listener")

    def test_sighup_invalid_config_keeps_running(self):
        backends = [echo_backend(self.addCleanup) for _ in range(2)]
        lb = LB(self.addCleanup, make_config([url(b) for b in backends], health=FAST), workers=2).start()
        kids = lb.children()
        mark = lb.d.stderr_mark()
        lb.write_config('{ "backends": ["http://127.0.0.1:9"], "workers": }')
        lb.d.send_signal(signal.SIGHUP)
        err = rgtest.wait_json_log(lb.d, lambda o: o.get("level") == "error", timeout=3, since=mark)
        self.assertIsNotNone(err, "no error logged for an invalid config on SIGHUP; stderr:\n%s"
                             % lb.d.stderr_text()[-3000:])
        time.sleep(0.3)
        self.assertTrue(rgtest.pid_alive(lb.pid))
        self.assertEqual(lb.children(), kids, "children changed after a rejected reload")
        self.assertRoundRobin(lb, backends, 10)


class ShutdownTests(LBTestCase):

    def test_sigterm_finishes_inflight_request_and_cleans_up(self):
        b = py_backend(self.addCleanup)
        lb = LB(self.addCleanup, make_config([url(b)], health=FAST), workers=2).start()
        seg = shm_path(lb.pid)
        self.assertTrue(os.path.exists(seg), "no %s while running" % seg)
        out = []
        t = threading.Thread(target=lambda: out.append(lb.attempt("GET", "/slow?ms=1000", timeout=8)))
        t.start()
        time.sleep(0.3)
        pids = lb.d.live_pids()
        self.assertEqual(len(pids), 4, pids)
        rc, elapsed = lb.d.stop(signal.SIGTERM, timeout=8)
        t.join(10)
        self.assertEqual(rc, 0, "exit status after SIGTERM; stderr:\n%s" % lb.d.stderr_text()[-3000:])
        self.assertTrue(out and not isinstance(out[0], Exception), out)
        self.assertEqual((out[0].status, out[0].body), (200, b"slow"), out)
        self.assertFalse([p for p in pids if rgtest.pid_alive(p)], "processes left after SIGTERM")
        self.assertFalse(os.path.exists(seg), "%s still there after exit" % seg)
        self.assertFalse(rgtest.port_accepting(HOST, lb.port))

    def test_idle_sigterm_and_sigint(self):
        b = echo_backend(self.addCleanup)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name):
                lb = LB(self.addCleanup, make_config([url(b)], health=FAST), workers=2).start()
                self.assertEqual(lb.request("GET", "/live").status, 200)
                pids = lb.d.live_pids()
                rc, elapsed = lb.d.stop(sig, timeout=5)
                self.assertEqual(rc, 0, lb.d.stderr_text()[-3000:])
                self.assertLess(elapsed, 3.0)
                self.assertFalse([p for p in pids if rgtest.pid_alive(p)])
                self.assertEqual(shm_segments(lb.pid), [])


# ---------------------------------------------------------------------------
# Streaming without buffering whole bodies
# ---------------------------------------------------------------------------

RSS_LIMIT = 60 * 1024 * 1024
# AddressSanitizer keeps freed memory in quarantine and maps shadow memory, so a
# worker's RSS says nothing about its buffering there: the bound is checked in the
# plain build only (the bytes are checked in both).
SANITIZED = os.environ.get("ROUNDGUARD_SANITIZE", "none") not in ("", "none")


class StaleSegmentTests(LBTestCase):

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"),
                         "needs root and unshare(1) for a PID namespace")
    def test_a_segment_left_with_the_masters_name_is_left_alone(self):
        """A master whose segment name is taken (/dev/shm/roundguardd.<pid> left by a master
        killed with SIGKILL whose PID came back, or one of another PID namespace) starts
        with another name, leaves that file alone, and removes its own at exit. Run as PID 1
        of a new PID namespace, so that the name is known before it starts."""
        stale = shm_path(1)
        if os.path.exists(stale):
            self.skipTest("%s exists already (not this test's)" % stale)
        with open(stale, "wb") as f:
            f.write(b"not a roundguardd segment")
        self.addCleanup(os.unlink, stale)
        ours = "/dev/shm/roundguardd.1~1"
        # After the daemon's cleanup (SIGKILL if the test failed first): its segment too.
        self.addCleanup(lambda: os.path.exists(ours) and os.unlink(ours))
        backend = echo_backend(self.addCleanup)
        lb = LB(self.addCleanup, backends=[url(backend)], workers=1)
        d = lb.d
        d.args = ["--pid", "--fork", "--kill-child=SIGTERM", d.binary] + d.args
        d.binary = shutil.which("unshare")
        lb.start()
        self.assertEqual(lb.request("GET", "/live").status, 200)
        warned = [o for o in lb.logs() if o.get("msg", "").startswith(
            "a shared-memory segment of this master's name exists")]
        self.assertEqual([o.get("shm") for o in warned], ["/roundguardd.1~1"], lb.logs()[:5])
        self.assertTrue(os.path.exists(ours))
        # SIGTERM to the master (PID 1 inside; unshare's child outside): it shuts down and
        # removes its own segment.
        master = [p for p in rgtest.children(d.pid) if "roundguardd" in (rgtest.cmdline(p) or "")]
        self.assertEqual(len(master), 1, master)
        os.kill(master[0], signal.SIGTERM)
        self.assertTrue(rgtest.wait_until(lambda: not os.path.exists(ours), timeout=10),
                        lb.d.stderr_text()[-2000:])
        with open(stale, "rb") as f:
            self.assertEqual(f.read(), b"not a roundguardd segment")


class StreamingTests(LBTestCase):

    @classmethod
    def setUpClass(cls):
        cls.backend = py_backend(cls.addClassCleanup)
        cfg = make_config([url(cls.backend)], proxy={"max_body_size": "100MiB", "timeout": "30s"})
        cls.lb = LB(cls.addClassCleanup, cfg, workers=1).start()

    def worker_pid(self):
        # A child forked just before "ready" may not have set its title yet.
        ws = rgtest.wait_until(lambda: self.lb.workers(), timeout=3) or []
        self.assertEqual(len(ws), 1, {p: rgtest.cmdline(p) for p in self.lb.children()})
        return ws[0]

    def test_100mb_download_with_bounded_worker_rss(self):
        w = self.worker_pid()
        n = 100 * 1024 * 1024
        max_rss = rgtest.rss_bytes(w)
        with socket.create_connection((HOST, self.lb.port), timeout=10) as s:
            s.sendall(rgtest.build_request("GET", "/big?n=%d" % n))
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                self.assertTrue(d, "closed before the head")
                buf += d
            head, _, body = buf.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            self.assertIn(b"content-length: %d" % n, head.lower())
            got = 0
            next_sample = 0
            paused = False
            while got < n:
                if body:
                    if body != tb.pattern_bytes(got, len(body)):
                        self.fail("body differs near offset %d" % got)
                    got += len(body)
                if got >= next_sample:
                    if not paused and got >= 1 << 20:
                        time.sleep(0.5)      # a slow client: the worker must not read ahead
                        paused = True
                    max_rss = max(max_rss, rgtest.rss_bytes(w) or 0)
                    next_sample = got + 4 * 1024 * 1024
                if got >= n:
                    break
                body = s.recv(1 << 18)
                self.assertTrue(body, "closed after %d of %d bytes" % (got, n))
        self.assertEqual(got, n)
        if not SANITIZED:
            self.assertLess(max_rss, RSS_LIMIT, "worker RSS reached %.1f MB" % (max_rss / 1e6))

    def test_50mb_chunked_upload_with_bounded_worker_rss(self):
        w = self.worker_pid()
        chunk = os.urandom(65536)
        nchunks = 800           # 50 MiB
        h = hashlib.sha1()
        for _ in range(nchunks):
            h.update(chunk)
        max_rss = [rgtest.rss_bytes(w)]
        err = []
        with self.lb.raw(timeout=20) as c:
            def send():
                try:
                    c.send(b"POST /count?delay_ms=700 HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n")
                    framed = b"10000\r\n" + chunk + b"\r\n"
                    for _ in range(nchunks):
                        c.send(framed)
                    c.send(b"0\r\n\r\n")
                except OSError as e:
                    err.append(e)
            t = threading.Thread(target=send)
            t.start()
            while t.is_alive():
                max_rss[0] = max(max_rss[0], rgtest.rss_bytes(w) or 0)
                time.sleep(0.02)
            t.join()
            self.assertFalse(err, err)
            r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"bytes": nchunks * 65536, "sha1": h.hexdigest()})
        if not SANITIZED:
            self.assertLess(max_rss[0], RSS_LIMIT,
                            "worker RSS reached %.1f MB" % (max_rss[0] / 1e6))


# ---------------------------------------------------------------------------
# Compatibility with the Go version's command line
# ---------------------------------------------------------------------------

class CompatTests(LBTestCase):

    def test_hosts_and_backend_flags_without_config(self):
        backends = [echo_backend(self.addCleanup) for _ in range(2)]
        lb = LB(self.addCleanup, None, backends=[url(backends[0])], workers=2,
                args=["--hosts", url(backends[1])], env={"PROXY_CHECK_DURATION": "200ms"}).start()
        self.assertRoundRobin(lb, backends, 10)

    def test_flags_override_file(self):
        b = echo_backend(self.addCleanup)
        other = rgtest.free_port()
        lb = LB(self.addCleanup, make_config([url(b)], listen="127.0.0.1:%d" % other, workers=3),
                workers=1).start()
        self.assertEqual(lb.request("GET", "/live").status, 200)
        self.assertFalse(rgtest.port_accepting(HOST, other), "listened on the file's port too")
        self.assertEqual(len(lb.workers()), 1, {p: rgtest.cmdline(p) for p in lb.children()})


if __name__ == "__main__":
    unittest.main()

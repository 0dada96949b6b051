#!/usr/bin/env python3
"""Integration tests for roundguardctl alone: its arguments, its exit statuses, what it sends and
how it shows answers, against a stand-in for roundguardd's control socket (a Unix socket in a
temporary directory that records each request and answers what the test says).

Run: ROUNDGUARD_CTL=build/src/roundguardctl python3 tests/integration/test_ctl_client.py -v
"""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rgtest  # noqa: E402

CTL = None  # path of the binary, set in setUpModule

# The exit statuses of roundguardctl(8).
OK, REFUSED, USAGE, UNREACHABLE, DENIED, BAD_ANSWER = range(6)

STATUS_ANSWER = {
    "ok": True, "version": "0.1.0", "generation": 2, "workers": 2, "uptime_s": 3723.4,
    "backends": [
        {"url": "http://127.0.0.1:8001", "name": "127.0.0.1:8001", "state": "up",
         "admin": "ready", "check": "ok", "reason": "status 200", "since_s": 12.5,
         "weight": 3, "effective_weight": 3, "active_connections": 4, "requests_per_s": 31.25},
        {"url": "https://api.internal:8443/prefix", "name": "api.internal:8443",
         "state": "drain", "admin": "drain", "check": "ok", "reason": "", "since_s": 90061,
         "weight": 3, "effective_weight": 1, "active_connections": 0, "requests_per_s": 0},
        {"url": "http://127.0.0.1:8003", "name": "127.0.0.1:8003", "state": "down",
         "admin": "ready", "check": "connect refused", "reason": "connect refused",
         "since_s": 754, "weight": 1, "effective_weight": 1, "active_connections": 0,
         "requests_per_s": 0.0},
    ],
}


def setUpModule():
    global CTL
    CTL = rgtest.find_binary("ROUNDGUARD_CTL", "build/src/roundguardctl")


def ctl(*args, env=None, timeout=15.0):
    """roundguardctl run to its end, without ROUNDGUARD_CONTROL unless env sets it."""
    env = dict(env or {})
    env.setdefault("ROUNDGUARD_CONTROL", None)
    return rgtest.run([CTL] + list(args), env=env, timeout=timeout)


class FakeDaemon:
    """A control socket that reads each request to its end, records it and sends self.answer
    (bytes, or None to say nothing and hold the connection until stop())."""

    def __init__(self, path, answer=b'{"ok":true,"message":"done"}'):
        self.path = path
        self.answer = answer
        self.requests = []
        self._stop = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                try:
                    while True:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.requests.append(data)
                if self.answer is None:
                    self._stop.wait(30)
                    continue
                try:
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def stop(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


class CtlTestCase(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="roundguardctl-test.")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.sock_path = os.path.join(self.dir, "control.sock")

    def daemon(self, answer=b'{"ok":true,"message":"done"}'):
        d = FakeDaemon(self.sock_path, answer)
        self.addCleanup(d.stop)
        return d

    def answering(self, obj):
        return self.daemon(json.dumps(obj).encode())

    def assertExit(self, p, status, stderr=None):
        self.assertEqual(p.returncode, status, "stdout: %r\nstderr: %r" % (p.stdout, p.stderr))
        if stderr is not None:
            self.assertRegex(p.stderr, stderr)


class ArgumentTests(CtlTestCase):
    """Bad command lines stop with status 2 before any connection."""

    def test_version_matches_roundguardd(self):
        for flag in ("-V", "--version"):
            p = ctl(flag)
            self.assertExit(p, OK)
            self.assertRegex(p.stdout, r"^roundguardctl \d+\.\d+\.\d+\n$")
        d = os.environ.get("ROUNDGUARD_D")
        if d:
            want = rgtest.run([d, "-V"]).stdout.split()[-1]
            self.assertEqual(p.stdout.split()[-1], want)

    def test_help(self):
        for flag in ("-h", "--help"):
            p = ctl(flag)
            self.assertExit(p, OK)
            self.assertIn("usage: roundguardctl", p.stdout)
            self.assertIn("/run/roundguardd/control.sock", p.stdout)

    def test_usage_errors_send_nothing(self):
        d = self.daemon()
        cases = [
            ([], r"no command"),
            (["halt"], r'unknown command "halt"'),
            (["status", "x"], r"status takes no argument"),
            (["drain"], r"drain takes one argument: BACKEND"),
            (["weight", "h:1"], r"weight takes two arguments"),
            (["weight", "h:1", "300"], r"^roundguardctl: weight: 300 is out of range \(0-256\)\n"),
            (["weight", "h:1", "-1"], r"unknown option -1"),
            (["weight", "h:1", "1.5"], r'weight: "1.5" is not an integer'),
            (["weight", "h:1", "99999999999999999999"], r"out of range \(0-256\)"),
            (["weight", "h:1", ""], r'weight: "" is not an integer'),
            (["drain", "a b"], r'backend: "a b": not a URL or host:port'),
            (["drain", ""], r"backend: empty"),
            (["drain", "x" * 1296], r"backend: too long: 1296 bytes \(at most 1295\)"),
            (["-t", "0", "status"], r"-t: \"0\" is out of range"),
            (["-t", "soon", "status"], r"-t: \"soon\" is not a number of seconds"),
            (["-t"], r"option -t needs a value"),
            (["--bogus", "status"], r"unknown option --bogus"),
            (["-s", "", "status"], r"control socket path is empty"),
            (["-s", "/" + "x" * 200, "status"], r"socket path too long"),
        ]
        for args, err in cases:
            with self.subTest(args=args[:3]):
                p = ctl("-s", self.sock_path, *args) if "-s" not in args else ctl(*args)
                self.assertExit(p, USAGE, err)
                self.assertIn("Try 'roundguardctl --help'", p.stderr)
                self.assertEqual(p.stdout, "")
        self.assertEqual(d.requests, [])


class ReachTests(CtlTestCase):
    """Status 3 and 4: nothing there, nothing listening, no permission, no room."""

    def test_no_socket(self):
        p = ctl("-s", "/nonexistent", "status")
        self.assertExit(p, UNREACHABLE)
        self.assertEqual(p.stderr, "roundguardctl: no roundguardd is listening on /nonexistent "
                         "(is it running? is control.socket set?)\n")

    def test_default_and_environment(self):
        p = ctl("status", env={"ROUNDGUARD_CONTROL": os.path.join(self.dir, "nope")})
        self.assertExit(p, UNREACHABLE, re.escape(os.path.join(self.dir, "nope")))
        # An empty variable counts as unset: the default path.
        if not os.path.exists("/run/roundguardd/control.sock"):
            p = ctl("status", env={"ROUNDGUARD_CONTROL": ""})
            self.assertExit(p, UNREACHABLE, "/run/roundguardd/control.sock")
        # -s wins over the environment.
        d = self.daemon()
        p = ctl("-s", self.sock_path, "drain", "h:1", env={"ROUNDGUARD_CONTROL": "/nonexistent"})
        self.assertExit(p, OK)
        p = ctl("drain", "h:1", env={"ROUNDGUARD_CONTROL": self.sock_path})
        self.assertExit(p, OK)
        self.assertEqual(len(d.requests), 2)

    def test_not_listening(self):
        # A socket file that is bound but not listening, and a file that is no socket.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.bind(self.sock_path)
        p = ctl("-s", self.sock_path, "status")
        self.assertExit(p, UNREACHABLE, "no roundguardd is listening on")
        plain = os.path.join(self.dir, "file")
        open(plain, "w").close()
        p = ctl("-s", plain, "status")
        self.assertExit(p, UNREACHABLE, "no roundguardd is listening on")

    def test_permission_denied(self):
        d = self.daemon()
        os.chmod(self.dir, 0o755)
        os.chmod(self.sock_path, 0)
        preexec = None
        if os.geteuid() == 0:
            # root passes any file mode: ask as nobody, if nobody can run the binary.
            def preexec():
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            probe = subprocess.run([CTL, "-V"], preexec_fn=preexec, capture_output=True)
            if probe.returncode != 0:
                self.skipTest("the unprivileged user cannot run %s" % CTL)
        p = subprocess.run([CTL, "-s", self.sock_path, "status"], preexec_fn=preexec,
                           capture_output=True, text=True, timeout=15)
        self.assertExit(p, DENIED)
        self.assertEqual(p.stderr, "roundguardctl: permission denied on %s: run as root or as "
                         "a member of its group\n" % self.sock_path)
        self.assertEqual(d.requests, [])

    def test_backlog_full(self):
        # Nobody accepts and the backlog is full: the connect waits, then gives up with -t.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.bind(self.sock_path)
        s.listen(0)
        fillers = []
        for _ in range(64):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            fillers.append(c)
            try:
                c.connect(self.sock_path)
            except BlockingIOError:
                break
        else:
            self.skipTest("the backlog never filled")
        for c in fillers:
            self.addCleanup(c.close)
        start = time.monotonic()
        p = ctl("-s", self.sock_path, "-t", "0.5", "status")
        self.assertExit(p, UNREACHABLE, "did not take the connection within 500ms")
        self.assertLess(time.monotonic() - start, 5)


class RequestTests(CtlTestCase):
    """What goes over the socket: one compact JSON object, then the end of the stream."""

    def test_each_command(self):
        d = self.daemon()
        cases = [
            (["status"], {"command": "status"}),
            (["drain", "http://127.0.0.1:8001"],
             {"command": "drain", "backend": "http://127.0.0.1:8001"}),
            (["maint", "127.0.0.1:8001"], {"command": "maint", "backend": "127.0.0.1:8001"}),
            (["ready", "[::1]:80"], {"command": "ready", "backend": "[::1]:80"}),
            (["weight", "h:1", "0"], {"command": "weight", "backend": "h:1", "weight": 0}),
            (["weight", "h:1", "+256"], {"command": "weight", "backend": "h:1", "weight": 256}),
            (["--json", "-t", "3", "drain", 'a"b\\c'],
             {"command": "drain", "backend": 'a"b\\c'}),
        ]
        for args, want in cases:
            d.answer = (b'{"ok":true,"message":"x"}' if args[0] != "status" else
                        json.dumps(STATUS_ANSWER).encode())
            p = ctl("-s", self.sock_path, *args)
            self.assertExit(p, OK)
            got = d.requests[-1]
            self.assertEqual(json.loads(got), want)
            self.assertNotIn(b" ", got)
            self.assertLessEqual(len(got), 4096)
        self.assertEqual(len(d.requests), len(cases))
        # Options after the command work too.
        p = ctl("drain", "h:1", "-s", self.sock_path)
        self.assertExit(p, OK)


class AnswerTests(CtlTestCase):
    """What the answer becomes: text, JSON, an exit status."""

    def test_message(self):
        self.answering({"ok": True, "message": "127.0.0.1:8001: drain (was ready)"})
        p = ctl("-s", self.sock_path, "drain", "127.0.0.1:8001")
        self.assertExit(p, OK)
        self.assertEqual(p.stdout, "127.0.0.1:8001: drain (was ready)\n")
        self.assertEqual(p.stderr, "")

    def test_refused(self):
        answer = {"ok": False, "error": 'unknown backend "x:1"', "code": "unknown_backend"}
        self.answering(answer)
        p = ctl("-s", self.sock_path, "drain", "x:1")
        self.assertExit(p, REFUSED)
        self.assertEqual(p.stderr, 'roundguardctl: unknown backend "x:1"\n')
        self.assertEqual(p.stdout, "")
        p = ctl("-s", self.sock_path, "--json", "drain", "x:1")
        self.assertExit(p, REFUSED)
        self.assertEqual(json.loads(p.stdout), answer)
        self.assertEqual(p.stderr, 'roundguardctl: unknown backend "x:1"\n')

    def test_json_as_received(self):
        raw = json.dumps(STATUS_ANSWER, indent=1).encode()
        self.daemon(raw)
        p = ctl("-s", self.sock_path, "--json", "status")
        self.assertExit(p, OK)
        self.assertEqual(p.stdout, raw.decode() + "\n")
        self.assertEqual(json.loads(p.stdout), STATUS_ANSWER)

    def test_status_table(self):
        self.answering(STATUS_ANSWER)
        p = ctl("-s", self.sock_path, "status")
        self.assertExit(p, OK)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0], "roundguardd 0.1.0, generation 2, 2 workers, up 1h02m03s")
        rows = [l.split("  ") for l in lines[1:]]
        cells = [[c.strip() for c in r if c.strip()] for r in rows]
        self.assertEqual(cells, [
            ["BACKEND", "STATE", "CHECK", "SINCE", "WEIGHT", "ACTIVE", "REQ/S"],
            ["127.0.0.1:8001", "up", "ok (status 200)", "12s", "3", "4", "31.2"],
            ["https://api.internal:8443/prefix", "drain", "ok", "1d01h01m", "1/3", "0", "0.0"],
            ["127.0.0.1:8003", "down", "connect refused", "12m34s", "1", "0", "0.0"],
        ])
        # Aligned: each column starts at the same place on every line.
        for title in ("STATE", "CHECK", "SINCE", "WEIGHT", "ACTIVE", "REQ/S"):
            col = lines[1].index(title)
            for l in lines[2:]:
                self.assertNotEqual(l[col], " ", (title, l))
                self.assertEqual(l[col - 2:col], "  ", (title, l))
        for l in lines:
            self.assertEqual(l, l.rstrip())

    def test_status_lenient_and_safe(self):
        # Missing values show as "-"; control bytes from the daemon never reach the terminal.
        answer = {"ok": True, "version": "0.9\x1b[31m", "workers": 1, "backends": [
            {"name": "h:1", "state": "down", "check": "tls", "reason": "bad\ncert\x1b]0;x\x07"},
            {"url": "http://h:2"},
        ]}
        d = self.answering(answer)
        p = ctl("-s", self.sock_path, "status")
        self.assertExit(p, OK)
        self.assertNotRegex(p.stdout, r"[\x00-\x09\x0b-\x1f\x7f]")
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0], "roundguardd 0.9?[31m, generation ?, 1 worker, up -")
        self.assertIn("tls (bad?cert?]0;x?)", lines[2])
        self.assertEqual(lines[3].split(), ["http://h:2", "-", "-", "-", "-", "-", "-"])
        # No backends: the titles alone.
        d.answer = b'{"ok":true,"backends":[]}'
        p = ctl("-s", self.sock_path, "status")
        self.assertExit(p, OK)
        self.assertEqual(len(p.stdout.splitlines()), 2)

    def test_bad_answers(self):
        cases = [
            (b"", "closed the connection without an answer"),
            (b" \n", "closed the connection without an answer"),
            (b"not json", "is not JSON"),
            (b'{"ok":tru', "is cut short"),
            (b'{"ok":true', "is cut short"),
            (b'{"ok":true} {"ok":true}', "is not JSON"),
            (b"[1]", 'not an object with "ok"'),
            (b'{"message":"x"}', 'not an object with "ok"'),
            (b'{"ok":"yes"}', 'not an object with "ok"'),
            (b'{"ok":true,"backends":{}}', 'has no "backends" list'),
            (b'{"ok":true,"backends":[1]}', r"backends\[0\] that is not an object"),
        ]
        d = self.daemon()
        for answer, err in cases:
            with self.subTest(answer=answer):
                d.answer = answer
                p = ctl("-s", self.sock_path, "status")
                self.assertExit(p, BAD_ANSWER, "^roundguardctl: .*" + err)
                self.assertEqual(p.stdout, "")

    def test_answer_too_large(self):
        self.daemon(b'{"ok":true,"message":"' + b"x" * (4 * 1024 * 1024) + b'"}')
        p = ctl("-s", self.sock_path, "drain", "h:1")
        self.assertExit(p, BAD_ANSWER, "is over 4 MiB")

    def test_no_answer_in_time(self):
        self.daemon(None)
        start = time.monotonic()
        p = ctl("-s", self.sock_path, "-t", "0.5", "drain", "h:1")
        self.assertExit(p, BAD_ANSWER, r"no answer from roundguardd on .* within 500ms")
        self.assertLess(time.monotonic() - start, 5)


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""Integration tests for roundguard-echo.

Run: ROUNDGUARD_ECHO=build/src/roundguard-echo python3 tests/integration/test_echo.py -v
"""

import datetime
import http.client
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rgtest  # noqa: E402

HOST = rgtest.DEFAULT_HOST
ECHO = None  # path of the binary, set in setUpModule

JSON_HDR = {"Content-Type": "application/json"}
JSON_HDR_RAW = [("Content-Type", "application/json")]

BAD_REQUEST_BODY = (b'{"title":"Bad Request",'
                    b'"description":"The request body could not be parsed as JSON"}')

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
VERSION_RE = re.compile(r"\d+\.\d+")
LEVELS = ("trace", "debug", "info", "warn", "error")

# Exit within 1 s of SIGTERM/SIGINT, with some slack for a loaded machine.
SHUTDOWN_LIMIT = 1.5


def setUpModule():
    global ECHO
    ECHO = rgtest.find_binary("ROUNDGUARD_ECHO", "build/src/roundguard-echo")


def echo_daemon(*args, env=None, port=None):
    """An unstarted Daemon for roundguard-echo on 127.0.0.1 and a free port."""
    return rgtest.Daemon(ECHO, ["-l", "{host}", "-p", "{port}"] + list(args),
                         env=env, host=HOST, port=port)


def run_echo(*args, env=None, timeout=5.0):
    return rgtest.run([ECHO] + list(args), env=env, timeout=timeout)


class EchoTestCase(unittest.TestCase):
    maxDiff = 4000

    def start(self, *args, env=None):
        """Start a daemon for this test; killed on cleanup."""
        d = echo_daemon(*args, env=env)
        self.addCleanup(d.kill)
        return d.start()

    @classmethod
    def start_class_daemon(cls, *args, env=None):
        d = echo_daemon(*args, env=env)
        cls.addClassCleanup(d.kill)
        return d.start()

    def req(self, d, method, path, body=None, headers=None):
        return rgtest.http_request(d.host, d.port, method, path, body, headers)

    def assertJSONResponse(self, r, status, body):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.media_type(), "application/json", r)
        self.assertEqual(r.body, body, r)
        cl = r.header("Content-Length")
        if cl is not None:
            self.assertEqual(int(cl), len(body), r)

    def assertErrorResponse(self, r, status, title, head=False):
        """status, application/json, body {"title": title, "description": <non-empty str>}."""
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.media_type(), "application/json", r)
        if head:
            self.assertEqual(r.body, b"", r)
            return None
        cl = r.header("Content-Length")
        if cl is not None:
            self.assertEqual(int(cl), len(r.body), r)
        try:
            obj = r.json()
        except ValueError as e:
            self.fail("error body is not JSON (%s): %r" % (e, r.body))
        self.assertIsInstance(obj, dict, r)
        self.assertEqual(set(obj), {"title", "description"}, r)
        self.assertEqual(obj["title"], title, r)
        self.assertIsInstance(obj["description"], str, r)
        self.assertTrue(obj["description"].strip(), r)
        return obj

    def assertStopsCleanly(self, d, sig=signal.SIGTERM):
        rc, elapsed = d.stop(sig, timeout=3.0)
        self.assertIsNotNone(rc, "daemon still running 3 s after %s; stderr:\n%s"
                             % (sig.name, d.stderr_text()))
        self.assertEqual(rc, 0, "exit status after %s; stderr:\n%s" % (sig.name, d.stderr_text()))
        self.assertLess(elapsed, SHUTDOWN_LIMIT, "took %.3f s to exit after %s" % (elapsed, sig.name))
        return elapsed


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

class CommandLineTests(EchoTestCase):

    def test_version(self):
        for flag in ("-V", "--version"):
            with self.subTest(flag=flag):
                p = run_echo(flag)
                self.assertEqual(p.returncode, 0, p)
                lines = [line for line in p.stdout.splitlines() if "roundguard-echo" in line]
                self.assertTrue(lines, "no line naming roundguard-echo on stdout: %r" % p.stdout)
                self.assertRegex(lines[0], VERSION_RE)

    def test_help(self):
        for flag in ("-h", "--help"):
            with self.subTest(flag=flag):
                p = run_echo(flag)
                self.assertEqual(p.returncode, 0, p)
                self.assertIn("usage", p.stdout.lower())
                for opt in ("--port", "--listen", "--workers", "--max-body",
                            "--access-log", "--version", "--help"):
                    self.assertIn(opt, p.stdout, "usage does not mention %s" % opt)

    def assertUsageError(self, p, names):
        self.assertEqual(p.returncode, 2, p)
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        self.assertGreaterEqual(len(lines), 2, "want an error line and a usage hint: %r" % p.stderr)
        if names:
            self.assertTrue(any(n in lines[0] for n in names),
                            "first stderr line does not name %s: %r" % (" or ".join(names), lines[0]))
        self.assertTrue(any("usage" in line.lower() or "--help" in line for line in lines[1:]),
                        "no usage hint after the error line: %r" % p.stderr)

    def test_bad_options_exit_2(self):
        port = str(rgtest.free_port())
        cases = [
            (["-p", "0"], ("-p", "--port")),
            (["-p", "abc"], ("-p", "--port")),
            (["--port", "65536"], ("-p", "--port")),
            (["-p", "80x"], ("-p", "--port")),
            (["-p", port, "--max-body", "5x"], ("--max-body",)),
            (["-p", port, "--max-body", "1.5KiB"], ("--max-body",)),
            (["-p", port, "--max-body", "64k"], ("--max-body",)),
            (["-p", port, "-w", "0"], ("-w", "--workers")),
            (["-p", port, "--workers", "abc"], ("-w", "--workers")),
            (["-p", port, "-w", "-3"], ("-w", "--workers")),
            (["-p", port, "--bogus"], ("--bogus",)),
        ]
        for args, names in cases:
            with self.subTest(args=args):
                self.assertUsageError(run_echo("-l", HOST, *args), names)

    def test_unknown_short_option_and_missing_argument_exit_2(self):
        port = str(rgtest.free_port())
        for args in (["-l", HOST, "-p", port, "-x"], ["-l", HOST, "-p"], ["-l", HOST, "-p", port, "--max-body"]):
            with self.subTest(args=args):
                self.assertUsageError(run_echo(*args), ())

    def test_port_in_use_by_other_socket_exit_1(self):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            s.listen(8)
            port = s.getsockname()[1]
            p = run_echo("-l", HOST, "-p", str(port))
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("%s:%d" % (HOST, port), p.stderr)

    def test_port_in_use_by_other_instance_exit_1(self):
        first = self.start()
        p = run_echo("-l", HOST, "-p", str(first.port))
        self.assertEqual(p.returncode, 1, p)
        self.assertIn(first.address, p.stderr)
        self.assertEqual(self.req(first, "GET", "/live").status, 200)

    def test_long_options_and_size_units(self):
        for size in ("512", "64KiB", "16MiB", "64kib"):
            with self.subTest(max_body=size):
                d = rgtest.Daemon(ECHO, ["--listen", "{host}", "--port", "{port}",
                                         "--workers", "1", "--max-body", size])
                self.addCleanup(d.kill)
                d.start()
                r = self.req(d, "POST", "/reflect", b"[1,2,3]", JSON_HDR)
                self.assertJSONResponse(r, 200, b"[1,2,3]")
                d.kill()

    def test_max_body_plain_bytes(self):
        d = self.start("--max-body", "512")
        ok = b'"' + b"a" * 510 + b'"'
        self.assertJSONResponse(self.req(d, "POST", "/reflect", ok, JSON_HDR), 200, ok)
        big = b'"' + b"a" * 511 + b'"'
        self.assertErrorResponse(self.req(d, "POST", "/reflect", big, JSON_HDR), 413, "Payload Too Large")


# ---------------------------------------------------------------------------
# Log configuration
# ---------------------------------------------------------------------------

class LogConfigTests(EchoTestCase):

    def test_bad_log_level_exit_1(self):
        for value in ("verbose", "warnings", "inf", "5"):
            with self.subTest(LOG_LEVEL=value):
                p = run_echo("-l", HOST, "-p", str(rgtest.free_port()), env={"LOG_LEVEL": value})
                self.assertEqual(p.returncode, 1, p)
                self.assertIn("LOG_LEVEL", p.stderr)
                for level in LEVELS:
                    self.assertIn(level, p.stderr.lower(), "valid value %s not named" % level)

    def test_bad_log_format_exit_1(self):
        for value in ("xml", "jsonl", "logfmt"):
            with self.subTest(LOG_FORMAT=value):
                p = run_echo("-l", HOST, "-p", str(rgtest.free_port()), env={"LOG_FORMAT": value})
                self.assertEqual(p.returncode, 1, p)
                self.assertIn("LOG_FORMAT", p.stderr)
                self.assertIn("text", p.stderr.lower())
                self.assertIn("json", p.stderr.lower())

    def test_level_names_aliases_and_filtering(self):
        # level name -> whether info lines ("listening") are shown
        cases = {"TRACE": True, "Debug": True, "info": True, "INFO": True,
                 "warn": False, "WARNING": False, "error": False, "fatal": False, "Panic": False}
        for value, shows_info in cases.items():
            with self.subTest(LOG_LEVEL=value):
                d = echo_daemon("--access-log", env={"LOG_LEVEL": value, "LOG_FORMAT": "json"})
                self.addCleanup(d.kill)
                d.start()
                self.assertEqual(self.req(d, "GET", "/live").status, 200)
                self.assertStopsCleanly(d)
                objs = [o for _, o in rgtest.json_log_lines(d.stderr_text())]
                self.assertNotIn(None, objs, d.stderr_text())
                levels = {o.get("level") for o in objs}
                if shows_info:
                    self.assertTrue(any(o.get("msg") == "listening" for o in objs), d.stderr_text())
                    self.assertTrue(any(o.get("msg") == "request" for o in objs), d.stderr_text())
                else:
                    self.assertFalse(levels & {"trace", "debug", "info"}, d.stderr_text())
                    if value.lower() in ("error", "fatal", "panic"):
                        self.assertFalse(levels & {"warn"}, d.stderr_text())

    def test_text_format_default(self):
        d = self.start()
        line = d.wait_for_stderr(lambda l: "listening" in l and d.address in l)
        self.assertIsNotNone(line, "no text 'listening' line naming %s: %r" % (d.address, d.stderr_text()))
        self.assertFalse(line.lstrip().startswith("{"), line)
        self.assertRegex(line, re.compile(r"\binfo\b", re.I))


# ---------------------------------------------------------------------------
# JSON logs
# ---------------------------------------------------------------------------

class JsonLogTests(EchoTestCase):

    def check_json_lines(self, d, extra_pids=()):
        text = d.stderr_text()
        self.assertTrue(text.endswith("\n"), "stderr does not end in a newline: %r" % text[-200:])
        objs = []
        now = datetime.datetime.now(datetime.timezone.utc)
        pids = {d.pid} | set(extra_pids)
        for line, obj in rgtest.json_log_lines(text):
            self.assertIsInstance(obj, dict, "stderr line is not a JSON object: %r" % line)
            for key in ("time", "level", "msg", "proc", "pid"):
                self.assertIn(key, obj, line)
            self.assertRegex(obj["time"], TIME_RE, line)
            t = datetime.datetime.strptime(obj["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc)
            self.assertLess(abs((now - t).total_seconds()), 120, "time is not current UTC: " + line)
            self.assertIn(obj["level"], LEVELS, line)
            self.assertIsInstance(obj["msg"], str, line)
            self.assertIsInstance(obj["proc"], str, line)
            self.assertTrue(obj["proc"], line)
            self.assertIs(type(obj["pid"]), int, line)
            self.assertIn(obj["pid"], pids, line)
            objs.append(obj)
        return objs

    def test_json_logs_with_access_log(self):
        d = self.start("--access-log", env={"LOG_FORMAT": "json"})
        body = b'{"hello": ["world", 1, 2.5]}'
        made = [
            ("POST", "/reflect", body, 200),
            ("GET", "/live", None, 200),
            ("HEAD", "/live", None, 200),
            ("GET", "/nope", None, 404),
            ("GET", "/reflect", None, 405),
            ("POST", "/reflect", b"{bad", 400),
        ]
        conn = http.client.HTTPConnection(d.host, d.port, timeout=5)
        self.addCleanup(conn.close)
        for method, path, b, status in made:
            r = rgtest.conn_request(conn, method, path, b, JSON_HDR if b is not None else None)
            self.assertEqual(r.status, status, r)
        conn.close()
        # the last request's log line is written before or right after its response
        d.wait_for_stderr(lambda l: '"status"' in l and "400" in l, timeout=2)
        pids = d.live_pids()
        self.assertStopsCleanly(d)
        objs = self.check_json_lines(d, pids)

        listening = [o for o in objs if o["msg"] == "listening"]
        self.assertEqual(len(listening), 1, objs)
        self.assertEqual(listening[0]["level"], "info")
        self.assertEqual(listening[0].get("address"), d.address)

        requests = [o for o in objs if o["msg"] == "request"]
        self.assertEqual(len(requests), len(made), requests)
        for o, (method, path, b, status) in zip(requests, made):
            with self.subTest(request=(method, path)):
                self.assertEqual(o["level"], "info", o)
                for key in ("method", "path", "status", "bytes", "duration"):
                    self.assertIn(key, o)
                self.assertEqual(o["method"], method, o)
                self.assertEqual(o["path"], path, o)
                self.assertEqual(int(str(o["status"])), status, o)
                nbytes = int(str(o["bytes"]))
                self.assertGreaterEqual(nbytes, 0, o)
                if status == 200 and b is not None:
                    self.assertGreaterEqual(nbytes, len(b), o)
                self.assertTrue(str(o["duration"]).strip(), o)

    def test_no_access_log_without_flag(self):
        d = self.start(env={"LOG_FORMAT": "json"})
        for _ in range(3):
            self.assertEqual(self.req(d, "GET", "/live").status, 200)
        self.assertStopsCleanly(d)
        objs = self.check_json_lines(d)
        self.assertTrue(any(o["msg"] == "listening" for o in objs), objs)
        self.assertFalse([o for o in objs if o["msg"] == "request"], objs)


# ---------------------------------------------------------------------------
# POST /reflect
# ---------------------------------------------------------------------------

VALID_JSON = [
    b"{}",
    b"[]",
    b'{"a":1,"b":[true,false,null],"c":{"d":"e"}}',
    b'[1, 2.5, -3e10, 1E-2, "x"]',
    b"42",
    b"0",
    b"-0.5e-3",
    b'"hello"',
    b'""',
    b'"esc \\" \\\\ \\/ \\n \\t \\u00e9 \\ud83c\\udf89"',
    b"true",
    b"false",
    b"null",
    b'  {\n\t"spaced" :  [ 1 ,2 ]\r\n}  \n',
    b"\n\n[\n]\n",
    '{"ünïcödé": "日本語 🎉"}'.encode("utf-8"),
    b'{"deep":' * 50 + b"1" + b"}" * 50,
]

INVALID_JSON = [
    b"",
    b" ",
    b"\r\n",
    b"{",
    b"}",
    b'{"a":1',
    b"[1 2]",
    b'{"a" 1}',
    b"{a:1}",
    b"nul",
    b"tru",
    b"True",
    b".5",
    b"+1",
    b'"unterminated',
    b'"bad escape \\x41"',
    b'{"a":1} x',
    b"{} {}",
    b"1 2",
    b"[1]]",
    b"\xff\xfe",
    b"plain text",
]

# Extensions that lenient parsers accept but RFC 8259 does not.
NON_STANDARD_JSON = [
    b"[1,2,]",
    b'{"a":1,}',
    b"{'a':1}",
    b"'str'",
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"01",
    b"1.",
    b"0x10",
    b'"ctrl \x01 char"',
    b'"tab\tinside"',
    b"// comment\n{}",
    b"/* c */ 1",
]


class ReflectTests(EchoTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon()

    def reflect(self, body, headers=JSON_HDR):
        return self.req(self.d, "POST", "/reflect", body, headers)

    def test_valid_json_reflected_byte_for_byte(self):
        for body in VALID_JSON:
            with self.subTest(body=body[:60]):
                self.assertJSONResponse(self.reflect(body), 200, body)

    def test_large_body(self):
        body = json.dumps([{"i": i, "s": "x" * (i % 97)} for i in range(20000)]).encode()
        self.assertGreater(len(body), 1 << 20)
        self.assertJSONResponse(self.reflect(body), 200, body)

    def test_invalid_json_400(self):
        for body in INVALID_JSON:
            with self.subTest(body=body[:60]):
                r = self.reflect(body)
                self.assertJSONResponse(r, 400, BAD_REQUEST_BODY)
                self.assertErrorResponse(r, 400, "Bad Request")

    def test_non_standard_json_400(self):
        for body in NON_STANDARD_JSON:
            with self.subTest(body=body[:60]):
                self.assertJSONResponse(self.reflect(body), 400, BAD_REQUEST_BODY)

    def test_empty_body_without_content_length(self):
        # No Content-Length and no Transfer-Encoding: a request without body.
        with rgtest.RawHTTP(self.d.host, self.d.port) as c:
            c.request("POST", "/reflect", headers=JSON_HDR_RAW)
            self.assertJSONResponse(c.read_response(), 400, BAD_REQUEST_BODY)
            c.request("POST", "/reflect", body=b"", headers=JSON_HDR_RAW)
            self.assertJSONResponse(c.read_response(), 400, BAD_REQUEST_BODY)

    def test_chunked_request(self):
        cases = [
            [b'{"chunked": ', b'[1, 2', b', 3]}'],
            [b'"', b"a" * 5000, b"b" * 70000, b'"'],
            [b"t", b"r", b"u", b"e"],
            [b"[", b"]"],
        ]
        with rgtest.RawHTTP(self.d.host, self.d.port) as c:
            for chunks in cases:
                with self.subTest(chunks=[x[:10] for x in chunks]):
                    c.request("POST", "/reflect", headers=JSON_HDR_RAW, chunks=chunks)
                    self.assertJSONResponse(c.read_response(), 200, b"".join(chunks))

    def test_chunked_with_extension_and_trailer(self):
        body = b'{"ext": true}'
        raw = (b"POST /reflect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               b"5;name=value\r\n" + body[:5] + b"\r\n" +
               b"%x\r\n" % (len(body) - 5) + body[5:] + b"\r\n"
               b"0\r\nX-Trailer: yes\r\n\r\n")
        with rgtest.RawHTTP(self.d.host, self.d.port) as c:
            c.send(raw)
            self.assertJSONResponse(c.read_response(), 200, body)

    def test_chunked_invalid_and_empty(self):
        with rgtest.RawHTTP(self.d.host, self.d.port) as c:
            c.request("POST", "/reflect", headers=JSON_HDR_RAW, chunks=[b'{"a":', b"}"])
            self.assertJSONResponse(c.read_response(), 400, BAD_REQUEST_BODY)
            c.request("POST", "/reflect", headers=JSON_HDR_RAW, chunks=[])
            self.assertJSONResponse(c.read_response(), 400, BAD_REQUEST_BODY)

    def test_query_string_ignored(self):
        body = b'{"q":1}'
        r = self.req(self.d, "POST", "/reflect?x=1&y=%20", body, JSON_HDR)
        self.assertJSONResponse(r, 200, body)

    def test_keeps_serving_after_bad_request(self):
        with rgtest.RawHTTP(self.d.host, self.d.port) as c:
            c.request("POST", "/reflect", body=b"{oops", headers=JSON_HDR_RAW)
            self.assertJSONResponse(c.read_response(), 400, BAD_REQUEST_BODY)
            c.request("POST", "/reflect", body=b"[true]", headers=JSON_HDR_RAW)
            self.assertJSONResponse(c.read_response(), 200, b"[true]")


class MaxBodyTests(EchoTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon("--max-body", "1KiB")

    @staticmethod
    def json_of_size(n):
        return b'"' + b"x" * (n - 2) + b'"'

    def test_content_length_over_limit(self):
        r = self.req(self.d, "POST", "/reflect", self.json_of_size(2000), JSON_HDR)
        self.assertErrorResponse(r, 413, "Payload Too Large")

    def test_chunked_over_limit(self):
        body = self.json_of_size(2000)
        with rgtest.RawHTTP(self.d.host, self.d.port) as c:
            c.request("POST", "/reflect", headers=JSON_HDR_RAW,
                      chunks=[body[i:i + 300] for i in range(0, len(body), 300)])
            self.assertErrorResponse(c.read_response(), 413, "Payload Too Large")

    def test_boundary(self):
        at = self.json_of_size(1024)
        self.assertJSONResponse(self.req(self.d, "POST", "/reflect", at, JSON_HDR), 200, at)
        over = self.json_of_size(1025)
        self.assertErrorResponse(self.req(self.d, "POST", "/reflect", over, JSON_HDR),
                                 413, "Payload Too Large")
        with rgtest.RawHTTP(self.d.host, self.d.port) as c:
            c.request("POST", "/reflect", headers=JSON_HDR_RAW,
                      chunks=[at[:500], at[500:1000], at[1000:]])
            self.assertJSONResponse(c.read_response(), 200, at)
        with rgtest.RawHTTP(self.d.host, self.d.port) as c:
            c.request("POST", "/reflect", headers=JSON_HDR_RAW, chunks=[over[:1024], over[1024:]])
            self.assertErrorResponse(c.read_response(), 413, "Payload Too Large")

    def test_still_serving_after_413(self):
        self.req(self.d, "POST", "/reflect", self.json_of_size(2000), JSON_HDR)
        self.assertEqual(self.req(self.d, "GET", "/live").status, 200)
        self.assertJSONResponse(self.req(self.d, "POST", "/reflect", b"[]", JSON_HDR), 200, b"[]")


# ---------------------------------------------------------------------------
# Routing: /live, 404, 405
# ---------------------------------------------------------------------------

class RoutingTests(EchoTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon()

    def test_live_get_and_head(self):
        for method in ("GET", "HEAD"):
            for path in ("/live", "/live?x=1", "/live?"):
                with self.subTest(method=method, path=path):
                    r = self.req(self.d, method, path)
                    self.assertEqual(r.status, 200, r)
                    self.assertEqual(r.header("Content-Length"), "0", r)
                    self.assertEqual(r.body, b"", r)

    def test_live_head_raw_has_no_body(self):
        # HEAD answered, then a GET on the same connection parses cleanly.
        with rgtest.RawHTTP(self.d.host, self.d.port) as c:
            c.request("HEAD", "/live")
            r = c.read_response("HEAD")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("Content-Length"), "0", r)
            c.request("GET", "/live")
            r = c.read_response()
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"", r)

    def test_method_not_allowed(self):
        cases = [
            ("GET", "/reflect", "POST"),
            ("PUT", "/reflect", "POST"),
            ("DELETE", "/reflect", "POST"),
            ("PATCH", "/reflect?a=b", "POST"),
            ("POST", "/live", "GET, HEAD"),
            ("PUT", "/live", "GET, HEAD"),
            ("DELETE", "/live?x=1", "GET, HEAD"),
            ("OPTIONS", "/live", "GET, HEAD"),
        ]
        for method, path, allow in cases:
            with self.subTest(method=method, path=path):
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                r = self.req(self.d, method, path, body, JSON_HDR if body else None)
                self.assertErrorResponse(r, 405, "Method Not Allowed")
                self.assertEqual(r.header("Allow"), allow, r)

    def test_head_reflect_405(self):
        r = self.req(self.d, "HEAD", "/reflect")
        self.assertErrorResponse(r, 405, "Method Not Allowed", head=True)
        self.assertEqual(r.header("Allow"), "POST", r)

    def test_not_found(self):
        cases = [("GET", "/"), ("GET", "/nope"), ("POST", "/nope"), ("DELETE", "/nope"),
                 ("GET", "/livez"), ("POST", "/reflect/extra"), ("GET", "/reflectx"),
                 ("GET", "/nope?live"), ("POST", "/x/reflect")]
        for method, path in cases:
            with self.subTest(method=method, path=path):
                body = b"{}" if method == "POST" else None
                r = self.req(self.d, method, path, body, JSON_HDR if body else None)
                self.assertErrorResponse(r, 404, "Not Found")

    def test_keep_alive_many_requests_one_connection(self):
        conn = http.client.HTTPConnection(self.d.host, self.d.port, timeout=5)
        self.addCleanup(conn.close)
        conn.connect()
        local = conn.sock.getsockname()
        for i in range(100):
            kind = i % 5
            if kind == 0:
                body = json.dumps({"i": i}).encode()
                r = rgtest.conn_request(conn, "POST", "/reflect", body, JSON_HDR)
                self.assertJSONResponse(r, 200, body)
            elif kind == 1:
                self.assertEqual(rgtest.conn_request(conn, "GET", "/live").status, 200)
            elif kind == 2:
                r = rgtest.conn_request(conn, "GET", "/missing/%d" % i)
                self.assertErrorResponse(r, 404, "Not Found")
            elif kind == 3:
                r = rgtest.conn_request(conn, "GET", "/reflect")
                self.assertErrorResponse(r, 405, "Method Not Allowed")
            else:
                r = rgtest.conn_request(conn, "POST", "/reflect", b"[", JSON_HDR)
                self.assertJSONResponse(r, 400, BAD_REQUEST_BODY)
            self.assertIsNotNone(conn.sock, "server closed the connection after request %d: %r" % (i, r))
            self.assertEqual(conn.sock.getsockname(), local, "connection changed at request %d" % i)


# ---------------------------------------------------------------------------
# HTTP protocol: pipelining, HTTP/1.0, Connection: close
# ---------------------------------------------------------------------------

class ProtocolTests(EchoTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon()

    def raw(self):
        c = rgtest.RawHTTP(self.d.host, self.d.port)
        self.addCleanup(c.close)
        return c

    def test_pipelined_requests_answered_in_order(self):
        a, b, cbody = b'{"n":"A"}', b'["B",' + b" " * 3000 + b"2]", b"3"
        reqs = [
            (rgtest.build_request("POST", "/reflect", body=a, headers=JSON_HDR_RAW), "POST",
             lambda r: self.assertJSONResponse(r, 200, a)),
            (rgtest.build_request("GET", "/live"), "GET",
             lambda r: (self.assertEqual(r.status, 200, r), self.assertEqual(r.body, b"", r))),
            (rgtest.build_request("GET", "/missing"), "GET",
             lambda r: self.assertErrorResponse(r, 404, "Not Found")),
            (rgtest.build_request("POST", "/reflect", headers=JSON_HDR_RAW,
                                  chunks=[b[:7], b[7:2000], b[2000:]]), "POST",
             lambda r: self.assertJSONResponse(r, 200, b)),
            (rgtest.build_request("HEAD", "/live"), "HEAD",
             lambda r: self.assertEqual(r.status, 200, r)),
            (rgtest.build_request("GET", "/reflect"), "GET",
             lambda r: (self.assertErrorResponse(r, 405, "Method Not Allowed"),
                        self.assertEqual(r.header("Allow"), "POST"))),
            (rgtest.build_request("POST", "/reflect", body=b"{x", headers=JSON_HDR_RAW), "POST",
             lambda r: self.assertJSONResponse(r, 400, BAD_REQUEST_BODY)),
            (rgtest.build_request("POST", "/reflect?z", body=cbody, headers=JSON_HDR_RAW), "POST",
             lambda r: self.assertJSONResponse(r, 200, cbody)),
        ]
        c = self.raw()
        c.send(b"".join(raw for raw, _, _ in reqs))
        for i, (_, method, check) in enumerate(reqs):
            with self.subTest(index=i):
                check(c.read_response(method))
        self.assertFalse(c.closed_by_peer(0.2), "connection closed after pipelined requests")

    def test_many_pipelined_reflects(self):
        bodies = [json.dumps({"seq": i, "pad": "p" * (i * 7 % 300)}).encode() for i in range(200)]
        c = self.raw()
        c.send(b"".join(rgtest.build_request("POST", "/reflect", body=x, headers=JSON_HDR_RAW)
                        for x in bodies))
        for i, x in enumerate(bodies):
            r = c.read_response("POST")
            self.assertEqual((r.status, r.body), (200, x), "response %d out of order or wrong" % i)

    def test_fragmented_request(self):
        body = b'{"slow": [1, 2, 3]}'
        raw = rgtest.build_request("POST", "/reflect", body=body, headers=JSON_HDR_RAW)
        c = self.raw()
        for i in range(0, len(raw), 3):
            c.send(raw[i:i + 3])
            time.sleep(0.002)
        self.assertJSONResponse(c.read_response(), 200, body)

    def test_http10_closes_after_response(self):
        body = b'{"v": "1.0"}'
        cases = [
            (rgtest.build_request("GET", "/live", version="HTTP/1.0", host=None), "GET", 200, b""),
            (rgtest.build_request("GET", "/live", version="HTTP/1.0"), "GET", 200, b""),
            (rgtest.build_request("POST", "/reflect", body=body, version="HTTP/1.0",
                                  headers=JSON_HDR_RAW), "POST", 200, body),
            (rgtest.build_request("GET", "/nope", version="HTTP/1.0"), "GET", 404, None),
        ]
        for raw, method, status, expect in cases:
            with self.subTest(request=raw.split(b"\r\n")[0]):
                c = self.raw()
                c.send(raw)
                r = c.read_response(method)
                self.assertEqual(r.status, status, r)
                self.assertTrue(r.version.startswith("HTTP/1."), r)
                self.assertIsNone(r.header("Transfer-Encoding"), "chunked response to HTTP/1.0: %r" % r)
                if expect is not None:
                    self.assertEqual(r.body, expect, r)
                else:
                    self.assertErrorResponse(r, status, "Not Found")
                self.assertTrue(c.closed_by_peer(2.0), "HTTP/1.0 connection not closed")

    def test_http10_keep_alive(self):
        c = self.raw()
        ka = [("Connection", "keep-alive")]
        for i in range(3):
            body = json.dumps([i]).encode()
            c.send(rgtest.build_request("POST", "/reflect", body=body, version="HTTP/1.0",
                                        headers=JSON_HDR_RAW + ka))
            r = c.read_response("POST")
            self.assertJSONResponse(r, 200, body)
            self.assertIn("keep-alive", (r.header("Connection") or "").lower(),
                          "HTTP/1.0 keep-alive response lacks Connection: keep-alive: %r" % r)
            self.assertIsNone(r.header("Transfer-Encoding"), r)
        c.send(rgtest.build_request("GET", "/live", version="HTTP/1.0", headers=ka))
        self.assertEqual(c.read_response().status, 200)
        self.assertFalse(c.closed_by_peer(0.3), "HTTP/1.0 keep-alive connection closed")

    def test_http11_connection_close(self):
        c = self.raw()
        c.send(rgtest.build_request("GET", "/live", headers=[("Connection", "close")]))
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertTrue(c.closed_by_peer(2.0), "connection not closed after Connection: close")

    def test_http11_keep_alive_raw(self):
        c = self.raw()
        for i in range(50):
            body = json.dumps({"k": i}).encode()
            c.request("POST", "/reflect", body=body, headers=JSON_HDR_RAW)
            r = c.read_response("POST")
            self.assertJSONResponse(r, 200, body)
            self.assertEqual(r.version, "HTTP/1.1", r)
            self.assertFalse(r.wants_close(), r)
        self.assertFalse(c.closed_by_peer(0.2))


# ---------------------------------------------------------------------------
# Concurrency and workers
# ---------------------------------------------------------------------------

def keepalive_client(host, port, tid, n, errors):
    """n reflects on one persistent connection; appends problems to errors."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.connect()
        local = conn.sock.getsockname()
        for i in range(n):
            body = json.dumps({"thread": tid, "seq": i, "pad": "z" * ((i * 13 + tid) % 120)}).encode()
            conn.request("POST", "/reflect", body=body, headers=JSON_HDR)
            r = conn.getresponse()
            data = r.read()
            if r.status != 200 or data != body:
                errors.append("thread %d req %d: %d %r (sent %r)" % (tid, i, r.status, data[:100], body[:100]))
                return
            if conn.sock is None or conn.sock.getsockname() != local:
                errors.append("thread %d req %d: connection was not kept alive" % (tid, i))
                return
    except Exception as e:  # reported by the test
        errors.append("thread %d: %r" % (tid, e))
    finally:
        conn.close()


def oneshot_clients(host, port, tid, n, errors):
    """n reflects, each on a new connection."""
    try:
        for i in range(n):
            body = json.dumps({"t": tid, "i": i}).encode()
            r = rgtest.http_request(host, port, "POST", "/reflect", body, JSON_HDR, timeout=10)
            if r.status != 200 or r.body != body:
                errors.append("thread %d req %d: %r" % (tid, i, r))
                return
    except Exception as e:
        errors.append("thread %d: %r" % (tid, e))


def run_threads(target, host, port, nthreads, n):
    errors = []
    threads = [threading.Thread(target=target, args=(host, port, t, n, errors)) for t in range(nthreads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors, [t for t in threads if t.is_alive()]


class ConcurrencyTests(EchoTestCase):

    def test_concurrent_keepalive_clients(self):
        d = self.start()
        errors, stuck = run_threads(keepalive_client, d.host, d.port, 8, 200)
        self.assertFalse(stuck, "client threads did not finish")
        self.assertEqual(errors, [])
        self.assertTrue(rgtest.pid_alive(d.pid))


class WorkerTests(EchoTestCase):

    def test_three_workers_serve(self):
        d = self.start("-w", "3", "--access-log", env={"LOG_FORMAT": "json"})
        pids = d.wait_for_processes(3)
        self.assertGreaterEqual(len(pids), 3, "want 3 processes sharing the port, have %s" % pids)
        errors, stuck = run_threads(keepalive_client, d.host, d.port, 6, 100)
        self.assertFalse(stuck)
        self.assertEqual(errors, [])
        errors, stuck = run_threads(oneshot_clients, d.host, d.port, 6, 25)
        self.assertFalse(stuck)
        self.assertEqual(errors, [])
        pids = d.live_pids()
        self.assertStopsCleanly(d)
        objs = [o for _, o in rgtest.json_log_lines(d.stderr_text())]
        self.assertNotIn(None, objs, "stderr line is not JSON")
        requests = [o for o in objs if o.get("msg") == "request"]
        self.assertEqual(len(requests), 6 * 100 + 6 * 25)
        self.assertTrue({o.get("pid") for o in requests} <= set(pids),
                        "request lines from unknown pids")


# ---------------------------------------------------------------------------
# Shutdown
# ---------------------------------------------------------------------------

class ShutdownTests(EchoTestCase):

    def assertAllGone(self, d, pids):
        deadline = time.monotonic() + 0.5
        while any(rgtest.pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = [p for p in pids if rgtest.pid_alive(p)]
        self.assertEqual(left, [], "processes left after the daemon exited")
        self.assertFalse(rgtest.port_accepting(d.host, d.port), "port still accepting after exit")

    def test_signal_exits_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name):
                d = self.start()
                self.assertEqual(self.req(d, "GET", "/live").status, 200)
                self.assertStopsCleanly(d, sig)
                self.assertAllGone(d, [d.pid])

    def test_signal_with_idle_keepalive_connection(self):
        d = self.start()
        c = rgtest.RawHTTP(d.host, d.port)
        self.addCleanup(c.close)
        c.request("GET", "/live")
        self.assertEqual(c.read_response().status, 200)
        self.assertStopsCleanly(d)
        self.assertTrue(c.closed_by_peer(0.5), "idle connection not closed at shutdown")

    def test_request_in_flight_is_finished(self):
        d = self.start()
        body = json.dumps({"in": "flight", "pad": "q" * 4000}).encode()
        raw = rgtest.build_request("POST", "/reflect", body=body, headers=JSON_HDR_RAW)
        cut = len(raw) - len(body) // 2
        c = rgtest.RawHTTP(d.host, d.port)
        self.addCleanup(c.close)
        c.send(raw[:cut])
        time.sleep(0.1)
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        try:
            c.send(raw[cut:])
            r = c.read_response("POST")
        except (OSError, rgtest.ConnectionClosed) as e:
            self.fail("request in flight at SIGTERM was not finished: %r; stderr:\n%s" % (e, d.stderr_text()))
        self.assertJSONResponse(r, 200, body)
        rc = d.wait(5)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, d.stderr_text())
        self.assertLess(elapsed, SHUTDOWN_LIMIT)

    def test_stops_accepting_after_signal(self):
        d = self.start()
        # a connection with a request in flight keeps the daemon busy for a moment
        c = rgtest.RawHTTP(d.host, d.port)
        self.addCleanup(c.close)
        c.send(b"POST /reflect HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[")
        time.sleep(0.05)
        d.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        self.assertFalse(rgtest.port_accepting(d.host, d.port, 0.3), "still accepting after SIGTERM")
        c.send(b"]")
        self.assertEqual(c.read_response().body, b"[]")
        self.assertEqual(d.wait(5), 0)

    def test_workers_exit_on_signal(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name):
                d = self.start("-w", "3")
                pids = d.wait_for_processes(3)
                self.assertGreaterEqual(len(pids), 3, pids)
                errors, _ = run_threads(oneshot_clients, d.host, d.port, 3, 5)
                self.assertEqual(errors, [])
                pids = d.live_pids()
                self.assertStopsCleanly(d, sig)
                self.assertAllGone(d, pids)


if __name__ == "__main__":
    unittest.main()

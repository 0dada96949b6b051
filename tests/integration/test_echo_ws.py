#!/usr/bin/python3
"""Integration tests for roundguard-echo's WebSocket endpoint, GET /ws (RFC 6455).

Two independent clients: Debian's python3-websockets (messages, fragments,
ping/pong, closing from either side; skipped when it cannot be imported, so
run this file with /usr/bin/python3), and raw sockets for the handshake and
for every protocol error, asserting the exact close code sent back.

Run: ROUNDGUARD_ECHO=build/src/roundguard-echo /usr/bin/python3 tests/integration/test_echo_ws.py -v
"""

import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rgtest  # noqa: E402

try:
    import websockets
    import websockets.exceptions
except ImportError:  # only the websockets-based classes are skipped
    websockets = None

HOST = rgtest.DEFAULT_HOST
ECHO = None
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MASK = b"\x37\xfa\x21\x3d"
SHUTDOWN_LIMIT = 1.5

# What a sanitizer build or a crash leaves on stderr.
BAD_STDERR = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|worker died")

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def setUpModule():
    global ECHO
    ECHO = rgtest.find_binary("ROUNDGUARD_ECHO", "build/src/roundguard-echo")


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(b0, payload=b"", masked=True, lenform=None, mask=MASK):
    """One frame: first byte b0 as given; lenform 16 or 64 forces a length form."""
    n = len(payload)
    m = 0x80 if masked else 0
    if lenform == 16 or (lenform is None and 126 <= n <= 0xFFFF):
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    elif lenform == 64 or (lenform is None and n > 0xFFFF):
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    else:
        head = bytes([b0, m | n])
    if not masked:
        return head + payload
    if n > 4096:
        # XOR of big payloads in one go, through integers.
        reps = (n + 3) // 4
        k = int.from_bytes((mask * reps)[:n], "big")
        body = (int.from_bytes(payload, "big") ^ k).to_bytes(n, "big")
    else:
        body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + mask + body


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def handshake_request(path="/ws", key=None, headers=None, version="HTTP/1.1", host="localhost"):
    """Raw opening handshake; headers replaces or (value None) drops defaults, by name."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    base = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    extra = list(headers or [])
    names = {k.lower() for k, _ in extra}
    hdrs = [(k, v) for k, v in base if k.lower() not in names]
    hdrs += [(k, v) for k, v in extra if v is not None]
    return rgtest.build_request("GET", path, headers=hdrs, version=version, host=host), key


def read_response(c, method="GET"):
    """A response on RawHTTP c; a 101 has no body: what follows it stays in c.buf."""
    head = c._read_until(b"\r\n\r\n")
    c.buf = head + b"\r\n\r\n" + c.buf
    if not head.startswith(b"HTTP/1.1 101 "):
        return c.read_response(method)
    c._read_until(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    return rgtest.Response("HTTP/1.1", 101, lines[0].split(" ", 2)[2], headers, b"")


class RawWS:
    """A WebSocket client on a raw socket: any bytes out, server frames parsed strictly."""

    def __init__(self, d, path="/ws", headers=None, extra=b"", timeout=5.0):
        self.http = rgtest.RawHTTP(d.host, d.port, timeout=timeout)
        self.sock = self.http.sock
        req, self.key = handshake_request(path, headers=headers)
        self.http.send(req + extra)
        try:
            self.response = read_response(self.http)
        except BaseException:
            self.http.close()
            raise

    def close(self):
        self.http.close()

    def send(self, data):
        self.sock.sendall(data)

    def _exact(self, n):
        return self.http._read_exact(n)

    def recv_frame(self):
        """(fin, opcode, payload) of the next frame from the server."""
        b0, b1 = self._exact(2)
        assert b0 & 0x70 == 0, "RSV bits set by the server: %#x" % b0
        assert b1 & 0x80 == 0, "masked frame from the server"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exact(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._exact(n)

    def recv_message(self):
        fin, op, data = self.recv_frame()
        while not fin:
            fin, cont, more = self.recv_frame()
            assert cont == OP_CONT, cont
            data += more
        return op, data

    def recv_close(self):
        """The close code (None for an empty close frame) and reason; frames before it fail."""
        fin, op, data = self.recv_frame()
        assert fin and op == OP_CLOSE, "wanted a close frame, got opcode %d %r" % (op, data[:80])
        if not data:
            return None, b""
        return struct.unpack(">H", data[:2])[0], data[2:]

    def closed_by_peer(self, timeout=2.0):
        """True when the server closes the TCP connection with nothing more sent."""
        if self.http.buf:
            return False
        return self.http.closed_by_peer(timeout)


def stop_cleanly(d):
    """SIGTERM (unless it exited already): exit status 0, nothing on stderr from a sanitizer
    (leaks are reported at exit) or a crash."""
    rc = d.proc.poll()
    if rc is None:
        rc, _ = d.stop(signal.SIGTERM, timeout=5.0)
    else:
        d._join_output(2.0)
    err = d.stderr_text()
    if rc != 0 or BAD_STDERR.search(err):
        raise AssertionError("roundguard-echo exited with %r; stderr:\n%s" % (rc, err[-4000:]))


class WSTestCase(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def start_class_daemon(cls, *args, env=None):
        d = rgtest.Daemon(ECHO, ["-l", "{host}", "-p", "{port}"] + list(args), env=env, host=HOST)
        cls.addClassCleanup(d.kill)
        cls.addClassCleanup(stop_cleanly, d)
        return d.start()

    def start(self, *args, env=None):
        d = rgtest.Daemon(ECHO, ["-l", "{host}", "-p", "{port}"] + list(args), env=env, host=HOST)
        self.addCleanup(d.kill)
        self.addCleanup(stop_cleanly, d)
        return d.start()

    def raw(self, d=None, **kw):
        ws = RawWS(d or self.d, **kw)
        self.addCleanup(ws.close)
        self.assertEqual(ws.response.status, 101, ws.response)
        return ws

    def assertClosesWith(self, ws, code, what=""):
        got, _ = ws.recv_close()
        self.assertEqual(got, code, "close code for %s" % what)
        self.assertTrue(ws.closed_by_peer(), "TCP connection left open after the close (%s)" % what)

    def assertErrorResponse(self, r, status, title):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.media_type(), "application/json", r)
        obj = json.loads(r.body)
        self.assertEqual(set(obj), {"title", "description"}, r)
        self.assertEqual(obj["title"], title, r)
        self.assertTrue(obj["description"].strip(), r)


# ---------------------------------------------------------------------------
# The opening handshake
# ---------------------------------------------------------------------------

class HandshakeTests(WSTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon()

    def handshake(self, path="/ws", headers=None, version="HTTP/1.1", host="localhost",
                  method="GET", body=None):
        c = rgtest.RawHTTP(self.d.host, self.d.port)
        self.addCleanup(c.close)
        if method == "GET" and body is None:
            req, key = handshake_request(path, headers=headers, version=version, host=host)
        else:
            key = "dGhlIHNhbXBsZSBub25jZQ=="
            hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
            req = rgtest.build_request(method, path, body=body, headers=hdrs, host=host)
        c.send(req)
        return c, read_response(c, method), key

    def test_101_with_accept_key(self):
        c, r, key = self.handshake()
        self.assertEqual(r.status, 101, r)
        self.assertEqual(r.reason, "Switching Protocols")
        self.assertEqual(r.header("Upgrade").lower(), "websocket", r)
        self.assertIn("upgrade", r.header("Connection").lower(), r)
        self.assertEqual(r.header("Sec-WebSocket-Accept"), accept_for(key), r)
        self.assertIsNone(r.header("Content-Length"), r)
        self.assertIsNone(r.header("Sec-WebSocket-Extensions"), r)

    def test_rfc_example_key(self):
        _, r, _ = self.handshake(headers=[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])
        self.assertEqual(r.header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", r)

    def test_no_extension_negotiated(self):
        _, r, _ = self.handshake(headers=[
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
            ("Sec-WebSocket-Protocol", "chat")])
        self.assertEqual(r.status, 101, r)
        self.assertIsNone(r.header("Sec-WebSocket-Extensions"), r)
        self.assertIsNone(r.header("Sec-WebSocket-Protocol"), r)

    def test_header_variants_accepted(self):
        cases = [
            [("Connection", "keep-alive, Upgrade")],
            [("Connection", "upgrade")],
            [("Upgrade", "WebSocket")],
            [("Upgrade", "h2c, websocket")],
            [("Sec-WebSocket-Version", "13 ")],
            [("Origin", "http://example.com")],
        ]
        for headers in cases:
            with self.subTest(headers=headers):
                _, r, key = self.handshake(headers=headers)
                self.assertEqual(r.status, 101, r)
                self.assertEqual(r.header("Sec-WebSocket-Accept"), accept_for(key))

    def test_query_is_ignored_for_routing(self):
        _, r, _ = self.handshake(path="/ws?x=1&greet=0")
        self.assertEqual(r.status, 101, r)

    def test_bad_handshakes_400(self):
        cases = [
            ("no Upgrade", [("Upgrade", None)]),
            ("no Connection", [("Connection", None)]),
            ("Connection without upgrade", [("Connection", "keep-alive")]),
            ("Upgrade other", [("Upgrade", "h2c")]),
            ("Upgrade websockets", [("Upgrade", "websockets")]),
            ("no key", [("Sec-WebSocket-Key", None)]),
            ("short key", [("Sec-WebSocket-Key", "dGhlIHNhbXBsZQ==")]),
            ("long key", [("Sec-WebSocket-Key", base64.b64encode(b"x" * 17).decode())]),
            ("key not base64", [("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!==")]),
            ("key bits past 16 bytes", [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZR==")]),
            ("two keys", [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                          ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]),
            ("no version", [("Sec-WebSocket-Version", None)]),
            ("two versions", [("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Version", "13")]),
        ]
        for what, headers in cases:
            with self.subTest(what):
                c, r, _ = self.handshake(headers=headers)
                self.assertErrorResponse(r, 400, "Bad Request")
                self.assertIsNone(r.header("Sec-WebSocket-Accept"), r)

    def test_http10_and_no_host_400(self):
        _, r, _ = self.handshake(version="HTTP/1.0")
        self.assertErrorResponse(r, 400, "Bad Request")
        _, r, _ = self.handshake(host=None)
        self.assertErrorResponse(r, 400, "Bad Request")

    def test_body_400(self):
        _, r, _ = self.handshake(method="GET", body=b"abc")
        self.assertErrorResponse(r, 400, "Bad Request")

    def test_wrong_version_426(self):
        for v in ("8", "12", "14", "13, 8", "", "abc"):
            with self.subTest(version=v):
                c, r, _ = self.handshake(headers=[("Sec-WebSocket-Version", v)])
                self.assertErrorResponse(r, 426, "Upgrade Required")
                self.assertEqual(r.header("Sec-WebSocket-Version"), "13", r)
                self.assertTrue(c.closed_by_peer(2.0), "connection open after a refused upgrade")

    def test_other_methods_405(self):
        for method in ("POST", "PUT", "DELETE", "HEAD"):
            with self.subTest(method=method):
                c = rgtest.RawHTTP(self.d.host, self.d.port)
                self.addCleanup(c.close)
                c.request(method, "/ws")
                r = c.read_response(method)
                self.assertEqual(r.status, 405, r)
                self.assertEqual(r.header("Allow"), "GET", r)

    def test_plain_get_400_keeps_connection(self):
        c = rgtest.RawHTTP(self.d.host, self.d.port)
        self.addCleanup(c.close)
        c.request("GET", "/ws")
        self.assertErrorResponse(c.read_response(), 400, "Bad Request")
        c.request("GET", "/live")
        self.assertEqual(c.read_response().status, 200)

    def test_upgrade_elsewhere_not_switched(self):
        # Upgrade headers on /live: answered as plain HTTP, then closed.
        c = rgtest.RawHTTP(self.d.host, self.d.port)
        self.addCleanup(c.close)
        req, _ = handshake_request("/live")
        c.send(req)
        r = c.read_response()
        self.assertEqual(r.status, 200, r)
        self.assertTrue(c.closed_by_peer(2.0))

    def test_frames_right_after_the_handshake(self):
        # The handshake and two frames in one write: the frames are not lost.
        ws = self.raw(extra=frame(0x81, b"early") + frame(0x89, b"p"))
        self.assertEqual(ws.recv_message(), (OP_TEXT, b"early"))
        self.assertEqual(ws.recv_frame(), (True, OP_PONG, b"p"))

    def test_greet(self):
        ws = self.raw(path="/ws?greet=1")
        self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"hello"))
        ws.send(frame(0x81, b"then echo"))
        self.assertEqual(ws.recv_message(), (OP_TEXT, b"then echo"))

    def test_close_after_101(self):
        ws = self.raw(path="/ws?close_after_101=1")
        self.assertTrue(ws.closed_by_peer(2.0), "connection open after close_after_101")

    def test_close_after_101_ignores_frames(self):
        ws = self.raw(path="/ws?x=2&close_after_101=1", extra=frame(0x81, b"ignored"))
        self.assertTrue(ws.closed_by_peer(2.0))


# ---------------------------------------------------------------------------
# Echo, raw
# ---------------------------------------------------------------------------

class RawEchoTests(WSTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon()

    def test_text_and_binary(self):
        ws = self.raw()
        for b0, payload in ((0x81, b"hello"), (0x82, bytes(range(256))), (0x81, b""),
                            (0x82, b""), (0x81, "κόσμε 😀".encode()), (0x82, b"\xff" * 70000)):
            ws.send(frame(b0, payload))
            self.assertEqual(ws.recv_frame(), (True, b0 & 0x0F, payload))

    def test_fragmented_message_comes_back_whole(self):
        ws = self.raw()
        ws.send(frame(0x01, b"frag") + frame(0x00, b"") + frame(0x00, b"men") + frame(0x80, b"ted"))
        self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"fragmented"))
        ws.send(frame(0x02, b"\x00") + frame(0x80, b"\x01"))
        self.assertEqual(ws.recv_frame(), (True, OP_BINARY, b"\x00\x01"))

    def test_utf8_split_across_fragments(self):
        ws = self.raw()
        text = "κόσμε€😀".encode()
        pieces = [text[:1], text[1:4], text[4:9], text[9:]]
        data = frame(0x01, pieces[0]) + b"".join(frame(0x00, p) for p in pieces[1:-1])
        ws.send(data + frame(0x80, pieces[-1]))
        self.assertEqual(ws.recv_frame(), (True, OP_TEXT, text))

    def test_ping_between_fragments(self):
        ws = self.raw()
        ws.send(frame(0x01, b"one ") + frame(0x89, b"ping!") + frame(0x8A, b"unsolicited") +
                frame(0x80, b"two"))
        self.assertEqual(ws.recv_frame(), (True, OP_PONG, b"ping!"))
        self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"one two"))

    def test_ping_pong(self):
        ws = self.raw()
        for payload in (b"", b"x", bytes(range(125))):
            ws.send(frame(0x89, payload))
            self.assertEqual(ws.recv_frame(), (True, OP_PONG, payload))
        # Unsolicited pongs get nothing back.
        ws.send(frame(0x8A, b"nothing") + frame(0x81, b"after"))
        self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"after"))

    def test_byte_by_byte(self):
        ws = self.raw()
        data = frame(0x01, b"sl") + frame(0x89, b"p") + frame(0x80, b"ow" * 100) + \
            frame(0x82, b"b" * 300)
        for i in range(len(data)):
            ws.send(data[i:i + 1])
        self.assertEqual(ws.recv_frame(), (True, OP_PONG, b"p"))
        self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"sl" + b"ow" * 100))
        self.assertEqual(ws.recv_frame(), (True, OP_BINARY, b"b" * 300))

    def test_one_mib_in_fragments(self):
        ws = self.raw()
        data = os.urandom(1 << 20)
        step = 65536
        parts = [frame(0x02 if i == 0 else (0x80 if i + step >= len(data) else 0x00),
                       data[i:i + step], mask=os.urandom(4))
                 for i in range(0, len(data), step)]
        ws.send(b"".join(parts))
        self.assertEqual(ws.recv_message(), (OP_BINARY, data))

    def test_close_code_echoed(self):
        for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                     3000, 3999, 4000, 4999):
            with self.subTest(code=code):
                ws = self.raw()
                ws.send(frame(0x88, close_payload(code, b"reason")))
                self.assertClosesWith(ws, code, "close %d" % code)

    def test_close_without_code(self):
        ws = self.raw()
        ws.send(frame(0x88, b""))
        self.assertClosesWith(ws, None, "an empty close")

    def test_close_after_messages(self):
        ws = self.raw()
        ws.send(frame(0x81, b"a") + frame(0x88, close_payload(1000)) + frame(0x81, b"late"))
        self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"a"))
        self.assertClosesWith(ws, 1000, "close after a message")

    def test_close_in_fragmented_message(self):
        ws = self.raw()
        ws.send(frame(0x01, b"half") + frame(0x88, close_payload(1001)))
        self.assertClosesWith(ws, 1001, "close inside a message")

    def test_autobahn_style_cases(self):
        # Autobahn testsuite cases, by number, checked by hand.
        with self.subTest("1.1.1-1.1.7, 1.2.x: lengths around the 7/16/64-bit forms"):
            ws = self.raw()
            for n in (0, 125, 126, 127, 128, 65535, 65536):
                for b0 in (0x81, 0x82):
                    payload = b"*" * n
                    ws.send(frame(b0, payload))
                    self.assertEqual(ws.recv_frame(), (True, b0 & 0x0F, payload), n)
        with self.subTest("1.1.8: 65536 bytes sent in chops of 997"):
            ws = self.raw()
            data = frame(0x81, b"*" * 65536)
            for i in range(0, len(data), 997):
                ws.send(data[i:i + 997])
            self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"*" * 65536))
        with self.subTest("2.10: ten pings in a row"):
            ws = self.raw()
            ws.send(b"".join(frame(0x89, b"payload-%d" % i) for i in range(10)))
            for i in range(10):
                self.assertEqual(ws.recv_frame(), (True, OP_PONG, b"payload-%d" % i))
        with self.subTest("3.4: text, then a ping with RSV, then text"):
            ws = self.raw()
            ws.send(frame(0x81, b"Hello") + frame(0xC9, b"") + frame(0x81, b"never"))
            self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"Hello"))
            self.assertClosesWith(ws, 1002, "3.4")
        with self.subTest("5.15: a continuation after the message ended"):
            ws = self.raw()
            ws.send(frame(0x01, b"f1") + frame(0x80, b"f2") + frame(0x00, b"f3") +
                    frame(0x80, b"f4"))
            self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"f1f2"))
            self.assertClosesWith(ws, 1002, "5.15")
        with self.subTest("7.1.2: two closes"):
            ws = self.raw()
            ws.send(frame(0x88, close_payload(1000)) + frame(0x88, close_payload(1000)))
            self.assertClosesWith(ws, 1000, "7.1.2")
        with self.subTest("7.1.3/7.1.4: a ping and a text after the close get nothing"):
            ws = self.raw()
            ws.send(frame(0x88, close_payload(1000)) + frame(0x89, b"p") + frame(0x81, b"t"))
            self.assertClosesWith(ws, 1000, "7.1.3")
        with self.subTest("7.1.6: 256 KiB, close, ping"):
            ws = self.raw()
            big = b"BAsd7&jh23" * 26215
            ws.send(frame(0x81, big) + frame(0x88, close_payload(1000)) + frame(0x89, b"p"))
            self.assertEqual(ws.recv_frame(), (True, OP_TEXT, big))
            self.assertClosesWith(ws, 1000, "7.1.6")
        with self.subTest("7.3.5: the longest close reason"):
            ws = self.raw()
            ws.send(frame(0x88, close_payload(1000, b"r" * 123)))
            self.assertClosesWith(ws, 1000, "7.3.5")

    def test_client_closes_tcp(self):
        ws = self.raw()
        ws.send(frame(0x01, b"half"))
        ws.close()
        time.sleep(0.1)
        r = rgtest.http_request(self.d.host, self.d.port, "GET", "/live")
        self.assertEqual(r.status, 200)


# ---------------------------------------------------------------------------
# Protocol errors, raw: the exact close code, then the TCP connection closed
# ---------------------------------------------------------------------------

class ProtocolErrorTests(WSTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon("--max-body", "1KiB")

    def expect(self, data, code, what):
        ws = self.raw()
        ws.send(data)
        self.assertClosesWith(ws, code, what)

    def test_unmasked_frame_1002(self):
        self.expect(frame(0x81, b"hi", masked=False), 1002, "unmasked text")
        self.expect(frame(0x89, b"", masked=False), 1002, "unmasked ping")
        self.expect(frame(0x88, close_payload(1000), masked=False), 1002, "unmasked close")

    def test_rsv_bits_1002(self):
        for b0 in (0xC1, 0xA1, 0x91, 0xF2, 0xC9):
            with self.subTest(b0=hex(b0)):
                self.expect(frame(b0, b"x"), 1002, "RSV %#x" % b0)

    def test_unknown_opcodes_1002(self):
        for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
            with self.subTest(opcode=op):
                self.expect(frame(0x80 | op, b""), 1002, "opcode %d" % op)

    def test_control_frames_1002(self):
        self.expect(frame(0x89, b"p" * 126), 1002, "ping of 126 bytes")
        self.expect(frame(0x8A, b"p" * 126), 1002, "pong of 126 bytes")
        self.expect(frame(0x88, close_payload(1000, b"r" * 124)), 1002, "close of 126 bytes")
        self.expect(frame(0x09, b"p"), 1002, "fragmented ping")
        self.expect(frame(0x08, close_payload(1000)), 1002, "fragmented close")
        self.expect(frame(0x89, b"p" * 2, lenform=16), 1002, "ping with a 16-bit length")

    def test_fragmentation_order_1002(self):
        self.expect(frame(0x80, b"x"), 1002, "continuation without a start")
        self.expect(frame(0x00, b"x"), 1002, "non-final continuation without a start")
        self.expect(frame(0x01, b"a") + frame(0x81, b"b"), 1002, "text inside a text")
        self.expect(frame(0x02, b"a") + frame(0x01, b"b"), 1002, "text inside a binary")
        ws = self.raw()
        ws.send(frame(0x81, b"a") + frame(0x80, b"b"))
        self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"a"))
        self.assertClosesWith(ws, 1002, "continuation after the end")

    def test_non_minimal_lengths_1002(self):
        self.expect(frame(0x82, b"abc", lenform=16), 1002, "16-bit length for 3 bytes")
        self.expect(frame(0x82, b"abc", lenform=64), 1002, "64-bit length for 3 bytes")
        self.expect(b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01" + MASK, 1002, "64-bit MSB set")

    def test_invalid_utf8_1007(self):
        cases = [
            ("invalid byte", frame(0x81, b"abc\xff")),
            ("surrogate", frame(0x81, b"\xed\xa0\x80")),
            ("overlong", frame(0x81, b"\xc0\xaf")),
            ("over U+10FFFF", frame(0x81, b"\xf4\x90\x80\x80")),
            ("truncated at the end", frame(0x81, b"ok\xe2\x82")),
            ("split, invalid", frame(0x01, b"ok\xe2") + frame(0x80, b"\x28")),
            ("split, truncated", frame(0x01, b"ok\xe2") + frame(0x00, b"\x82") + frame(0x80, b"")),
            ("second fragment", frame(0x01, "κόσμε".encode()) + frame(0x80, b"\xed\xa0\x80")),
        ]
        for what, data in cases:
            with self.subTest(what):
                self.expect(data, 1007, what)

    def test_invalid_utf8_close_reason_1007(self):
        self.expect(frame(0x88, close_payload(1000, b"\xff")), 1007, "close reason")

    def test_binary_is_not_checked_as_text(self):
        ws = self.raw()
        ws.send(frame(0x82, b"\xff\xfe"))
        self.assertEqual(ws.recv_frame(), (True, OP_BINARY, b"\xff\xfe"))

    def test_close_body_of_one_byte_1002(self):
        self.expect(frame(0x88, b"\x03"), 1002, "1-byte close")

    def test_invalid_close_codes_1002(self):
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
            with self.subTest(code=code):
                self.expect(frame(0x88, close_payload(code)), 1002, "close code %d" % code)

    def test_message_over_max_body_1009(self):
        ws = self.raw()
        ws.send(frame(0x82, b"x" * 1024))
        self.assertEqual(ws.recv_frame(), (True, OP_BINARY, b"x" * 1024))
        self.expect(frame(0x82, b"x" * 1025), 1009, "one frame of 1025 bytes")
        self.expect(frame(0x01, b"x" * 1000) + frame(0x80, b"y" * 25), 1009, "fragments")
        # Told from the header alone: the payload never has to arrive.
        self.expect(b"\x82\xff" + struct.pack(">Q", 1 << 40) + MASK, 1009, "a huge length")

    def test_messages_after_errors_ignored(self):
        ws = self.raw()
        ws.send(frame(0xC1, b"x") + frame(0x81, b"not echoed"))
        self.assertClosesWith(ws, 1002, "RSV then text")


# ---------------------------------------------------------------------------
# Daemon behaviour around WebSocket connections
# ---------------------------------------------------------------------------

class DaemonTests(WSTestCase):

    def test_sigterm_sends_1001_and_exits(self):
        d = self.start()
        ws = self.raw(d)
        ws.send(frame(0x81, b"up"))
        self.assertEqual(ws.recv_frame(), (True, OP_TEXT, b"up"))
        ws.send(frame(0x01, b"half a message"))
        time.sleep(0.05)
        d.send_signal(signal.SIGTERM)
        code, _ = ws.recv_close()
        self.assertEqual(code, 1001)
        ws.send(frame(0x88, close_payload(1001)))
        self.assertTrue(ws.closed_by_peer(2.0))
        rc, elapsed = d.stop(signal.SIGTERM, timeout=3.0)
        self.assertEqual(rc, 0, d.stderr_text())

    def test_sigterm_with_idle_client_that_never_answers(self):
        d = self.start()
        ws = self.raw(d)
        t0 = time.monotonic()
        d.send_signal(signal.SIGTERM)
        self.assertEqual(ws.recv_close()[0], 1001)
        self.assertEqual(d.wait(5), 0, d.stderr_text())
        self.assertLess(time.monotonic() - t0, SHUTDOWN_LIMIT)

    def test_access_log_101(self):
        d = self.start("--access-log", env={"LOG_FORMAT": "json"})
        ws = self.raw(d, path="/ws?greet=1")
        ws.recv_frame()
        line = d.wait_for_stderr(lambda l: '"status":"101"' in l.replace(" ", ""), timeout=3)
        self.assertIsNotNone(line, d.stderr_text())
        obj = json.loads(line)
        self.assertEqual((obj["method"], obj["path"]), ("GET", "/ws?greet=1"), obj)

    def test_many_clients_and_http_alongside(self):
        d = self.start()
        errors = []

        def client(i):
            try:
                ws = RawWS(d)
                if ws.response.status != 101:
                    errors.append("client %d: %r" % (i, ws.response))
                    return
                for j in range(20):
                    msg = ("%d-%d " % (i, j)).encode() * (j + 1)
                    ws.send(frame(0x81, msg))
                    if ws.recv_frame() != (True, OP_TEXT, msg):
                        errors.append("client %d message %d" % (i, j))
                        return
                ws.send(frame(0x88, close_payload(1000)))
                if ws.recv_close()[0] != 1000:
                    errors.append("client %d close" % i)
                ws.close()
            except Exception as e:  # reported below
                errors.append("client %d: %r" % (i, e))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for _ in range(20):
            self.assertEqual(rgtest.http_request(d.host, d.port, "POST", "/reflect", b"[1]",
                                                 {"Content-Type": "application/json"}).body, b"[1]")
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertTrue(rgtest.pid_alive(d.pid))


# ---------------------------------------------------------------------------
# python3-websockets as the client
# ---------------------------------------------------------------------------

def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@unittest.skipIf(websockets is None, "python3-websockets is not importable (run with /usr/bin/python3)")
class WebsocketsLibraryTests(WSTestCase):

    @classmethod
    def setUpClass(cls):
        cls.d = cls.start_class_daemon()
        cls.uri = "ws://%s:%d/ws" % (cls.d.host, cls.d.port)

    def connect(self, query="", **kw):
        kw.setdefault("max_size", None)
        return websockets.connect(self.uri + query, open_timeout=5, close_timeout=5, **kw)

    def test_text_and_binary(self):
        async def go():
            async with self.connect() as ws:
                for msg in ("hello", "", "κόσμε 😀", b"\x00\x01\xff", b"", "x" * 70000):
                    await ws.send(msg)
                    self.assertEqual(await ws.recv(), msg)
            self.assertEqual(ws.close_code, 1000)
        run(go())

    def test_one_mib(self):
        async def go():
            async with self.connect() as ws:
                data = os.urandom(1 << 20)
                await ws.send(data)
                self.assertEqual(await ws.recv(), data)
                text = "é" * (1 << 19)
                await ws.send(text)
                self.assertEqual(await ws.recv(), text)
        run(go())

    def test_fragmented(self):
        async def go():
            async with self.connect() as ws:
                await ws.send(["frag", "men", "", "ted"])
                self.assertEqual(await ws.recv(), "fragmented")
                await ws.send([b"\x00" * 1000, b"\x01" * 1000])
                self.assertEqual(await ws.recv(), b"\x00" * 1000 + b"\x01" * 1000)
                # (A character cut between fragments: see RawEchoTests, websockets sends str whole.)
        run(go())

    def test_ping_pong(self):
        async def go():
            async with self.connect() as ws:
                for payload in (b"", b"abc", bytes(range(125))):
                    waiter = await ws.ping(payload)
                    await asyncio.wait_for(waiter, 5)
                await ws.pong(b"unsolicited")
                await ws.send("still here")
                self.assertEqual(await ws.recv(), "still here")
        run(go())

    def test_close_from_client(self):
        async def go():
            async with self.connect() as ws:
                await ws.send("x")
                await ws.recv()
                await ws.close(code=4000, reason="bye")
            self.assertEqual(ws.close_code, 4000)
        run(go())

    def test_close_from_server_on_protocol_error(self):
        # Invalid UTF-8 in a text frame, written under the library's feet.
        async def go():
            async with self.connect() as ws:
                ws.transport.write(frame(0x81, b"\xff"))
                with self.assertRaises(websockets.exceptions.ConnectionClosed) as cm:
                    await ws.recv()
                self.assertEqual(cm.exception.rcvd.code, 1007)
        run(go())

    def test_close_from_server_on_sigterm(self):
        d = self.start()

        async def go():
            async with websockets.connect("ws://%s:%d/ws" % (d.host, d.port)) as ws:
                await ws.send("before")
                self.assertEqual(await ws.recv(), "before")
                d.send_signal(signal.SIGTERM)
                with self.assertRaises(websockets.exceptions.ConnectionClosedOK) as cm:
                    await ws.recv()
                self.assertEqual(cm.exception.rcvd.code, 1001)
        run(go())
        self.assertEqual(d.wait(5), 0, d.stderr_text())

    def test_greet(self):
        async def go():
            async with self.connect("?greet=1") as ws:
                self.assertEqual(await ws.recv(), "hello")
                await ws.send("echo")
                self.assertEqual(await ws.recv(), "echo")
        run(go())

    def test_close_after_101(self):
        async def go():
            async with self.connect("?close_after_101=1") as ws:
                with self.assertRaises(websockets.exceptions.ConnectionClosedError) as cm:
                    await ws.recv()
                self.assertIsNone(cm.exception.rcvd)   # no close frame: 1006 for the client
        run(go())

    def test_compression_offer_declined(self):
        async def go():
            async with self.connect(compression="deflate") as ws:
                self.assertEqual(ws.response_headers.get("Sec-WebSocket-Extensions"), None)
                await ws.send("plain " * 100)
                self.assertEqual(await ws.recv(), "plain " * 100)
        run(go())

    def test_concurrent_clients(self):
        async def one(i):
            async with self.connect() as ws:
                for j in range(30):
                    msg = "%d:%d:" % (i, j) + "z" * (j * 37)
                    await ws.send(msg)
                    if await ws.recv() != msg:
                        return "client %d message %d" % (i, j)
            return None

        async def go():
            return await asyncio.gather(*(one(i) for i in range(20)))
        self.assertEqual([e for e in run(go()) if e], [])


if __name__ == "__main__":
    unittest.main()

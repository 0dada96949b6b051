#!/usr/bin/env python3
"""A tiny HTTP/1.1 backend for the roundguardd integration tests (standard library only).

Run: python3 testbackend.py PORT [MODE] [--tls CHAIN KEY]   (listens on 127.0.0.1:PORT)

--tls: every connection is TLS (the certificate chain and key in PEM files),
for https:// backends; the handshake runs in the connection's thread and is
logged as {"event": "tls", "version", "reused" (a resumed session), "sni"}, or
{"event": "tls_failed", "error"}.

MODE (can be changed at run time through GET /_ctl?mode=...):
  ok      every path below behaves as described (default)
  reset   every request except the health path (*/live) is read and then the
          connection is closed without an answer
  sick    */live answers 500

Paths (the query string selects options):
  */live              200 empty body (status and delay set by /_ctl)
  /headers (and any path not listed here)
                      200 JSON {"backend", "method", "target", "version",
                      "request_line", "headers": [[name, value], ...], "raw_head",
                      "body_len", "body_sha1"}; the request body is read first
  /chunked            200 with Transfer-Encoding: chunked, CHUNKED_PARTS in
                      separate writes
  /close              "HTTP/1.0 200 OK" head without Content-Length, CLOSE_BODY,
                      then the connection is closed
  /big?n=BYTES        200, Content-Length n, body = pattern_bytes(0, n) streamed
  /slow?ms=N          waits N ms, then 200 "slow"
  /reset              reads the request, closes the connection without answering
  /count[?delay_ms=N] waits N ms, then reads the body (Content-Length or
                      chunked) and answers JSON {"bytes": n, "sha1": hex}; sends
                      100 Continue first when the request asks for it
  /status?code=N      answers status N with a small JSON body
  /hop                200 with hop-by-hop headers in the response
  /chunkedext[?bad=K] 200 chunked, each piece in its own write: CHUNKEXT_BODY
                      (leading-zero and upper-case sizes, chunk extensions,
                      trailer fields; "Trailer" in the head). bad=lf ends a
                      trailer field with a bare LF (CHUNKEXT_BAD["lf"]),
                      bad=lf0 the empty trailer section
                      (CHUNKEXT_BAD["lf0"]); after those the connection stays
                      open for the next request. onewrite=1: the whole answer
                      in one write. HEAD: the head only
  /badhead?kind=K     200 whose head is broken on purpose (K: cr, lf, nul,
                      fold, reason-cr, name-space); the broken header carries
                      the word "evil" and smuggles an "X-Injected" header
  /events?n=N&ms=M[&framing=F]
                      200 text/event-stream: N events, one every M ms, each
                      "id: I\ndata: {"i": I, "t": SEND_TIME}\n\n" (t: Unix time
                      taken right before its write) in its own write. F chunked
                      (default: each event one chunk) or close (no length, the
                      connection closed after the last event)
  /_ctl?live=S&live_delay_ms=N&mode=M
                      changes the health answer / mode; 200 "ok"

Every request head received is written to stdout as one JSON line
{"method", "target", "version", "raw_head"} (flushed before the answer or
the close), so tests can count what reached which backend. Other events are
JSON lines with an "event" key and no "target" key:
  {"event": "malformed", "raw_head"}          a head whose request line does not
                                              have three parts (not answered)
  {"event": "body", "body_target", "body_len", "raw_body"}
                                              a request body (Content-Length or
                                              chunked) was read completely
  {"event": "truncated", "body_target", "body_len", "error", "raw_body"}
                                              the connection ended, or the framing
                                              was bad, in the middle of a body
  raw_body is every byte received after the head, as latin-1 text and at most
  RAW_BODY_MAX bytes: the body with its framing exactly as it came (chunk-size
  lines with their extensions, CRLFs, the last chunk, trailer fields and the
  final CRLF), up to where the body ended ("body") or the connection or the
  framing broke ("truncated"; then also the bytes received but not read yet).
  {"event": "leftover", "bytes"}              the connection ended with bytes
                                              received but not consumed (a partial
                                              head, say), as latin-1 text

With TESTBACKEND_CONN_IDS=1 in the environment, every line (request heads and
events) also carries "conn": the number of the connection it came on (1, 2, ...
in accept order), so tests can tell a reused backend connection from a new one.
"""

import hashlib
import itertools
import json
import os
import socket
import ssl
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

CHUNKED_PARTS = [b"Hello", b", ", b"chunked ", b"world" * 100, b"!" * 4000, b"\n"]
CLOSE_BODY = b"".join(b"close-delimited line %05d\n" % i for i in range(4000))
PATTERN = bytes(range(256)) * 4096          # 1 MiB, period 256
RAW_BODY_MAX = 65536                        # raw_body in body/truncated events

# /chunkedext: one piece per write. Sizes with leading zeros and in upper case,
# extensions (a quoted one among them), trailer fields after the last chunk.
CHUNKEXT_PARTS = [b"005;ext=1\r\nhello\r\n",
                  b"000A;a=\"b c\";flag\r\n0123456789\r\n",
                  b"0;last=1\r\nX-Checksum: abc\r\nX-Trailer-Two: 2\r\n\r\n"]
CHUNKEXT_BODY = b"".join(CHUNKEXT_PARTS)
# The same body framed canonically (what a re-framing proxy sends on).
CHUNKEXT_CANONICAL = b"5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n"
CHUNKEXT_DATA = b"hello0123456789"
# Bare LF in the trailer section: after a trailer field, or as the empty line.
CHUNKEXT_BAD = {
    "lf": [b"005;ext=1\r\nhello\r\n", b"0\r\nX-Checksum: abc\r\n\n"],
    "lf0": [b"005;ext=1\r\nhello\r\n", b"0\r\n\n"],
}


def pattern_bytes(offset, n):
    """n bytes of the /big body starting at offset (byte i is i % 256)."""
    start = offset % 256
    out = []
    while n > 0:
        take = min(n, len(PATTERN) - start)
        out.append(PATTERN[start:start + take])
        n -= take
        start = 0
    return b"".join(out)


# Response heads for /badhead: each breaks the header syntax so that a
# lenient reader would see an extra "X-Injected" header or a raw control byte.
BAD_HEADS = {
    "cr": b"HTTP/1.1 200 OK\r\nX-Bad: evil\rX-Injected: cr\r\n",
    "lf": b"HTTP/1.1 200 OK\r\nX-Bad: evil\nX-Injected: lf\r\n",
    "nul": b"HTTP/1.1 200 OK\r\nX-Bad: evil\x00X-Injected: nul\r\n",
    "fold": b"HTTP/1.1 200 OK\r\nX-Bad: evil\r\n X-Injected: fold\r\n",
    "reason-cr": b"HTTP/1.1 200 OK evil\rX-Injected: reason\r\n",
    "name-space": b"HTTP/1.1 200 OK\r\nX-Bad : evil\r\nX-Injected: name-space\r\n",
}

STATE = {"mode": "ok", "live": 200, "live_delay_ms": 0}
_out_lock = threading.Lock()
CONN_IDS = os.environ.get("TESTBACKEND_CONN_IDS") == "1"
_conn_seq = itertools.count(1)


def log_event(obj, conn=None):
    if CONN_IDS and conn is not None:
        obj["conn"] = conn.id
    line = json.dumps(obj)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def log_request(method, target, version, raw_head=None, conn=None):
    obj = {"method": method, "target": target, "version": version}
    if raw_head is not None:
        obj["raw_head"] = raw_head
    if CONN_IDS and conn is not None:
        obj["conn"] = conn.id
    line = json.dumps(obj)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Closed(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.target = None       # target of the request being read (for log events)
        self.id = next(_conn_seq)
        self.raw = None          # bytearray while a body is read: what was taken from buf

    def _took(self, data):
        if self.raw is not None and len(self.raw) < RAW_BODY_MAX:
            self.raw += data[:RAW_BODY_MAX - len(self.raw)]

    def raw_text(self, pending=False):
        """The bytes taken while reading this body (and, with pending, those
        received but not taken yet), as latin-1 text, at most RAW_BODY_MAX."""
        data = bytes(self.raw or b"")
        if pending:
            data += self.buf
        return data[:RAW_BODY_MAX].decode("latin-1")

    def fill(self):
        data = self.sock.recv(262144)
        if not data:
            raise Closed()
        self.buf += data

    def read_until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                if self.raw is not None:
                    self._took(self.buf[:i + len(sep)])
                out, self.buf = self.buf[:i], self.buf[i + len(sep):]
                return out
            if len(self.buf) > limit:
                raise Closed()
            self.fill()

    def read_some(self, maxn):
        if not self.buf:
            self.fill()
        out, self.buf = self.buf[:maxn], self.buf[maxn:]
        self._took(out)
        return out

    def read_exact_into(self, n, sink):
        while n > 0:
            piece = self.read_some(min(n, 262144))
            sink(piece)
            n -= len(piece)

    def send(self, data):
        self.sock.sendall(data)


def header(headers, name):
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def read_body(conn, headers, sink):
    """Read the request body (Content-Length or chunked) into sink(bytes).
    A body is logged as a "body" event once read whole, as "truncated" when
    the connection ends (or the framing breaks) in its middle."""
    te = (header(headers, "Transfer-Encoding") or "").lower()
    cl = header(headers, "Content-Length")
    if "chunked" not in te and (cl is None or cl.strip() in ("", "0")):
        _read_body(conn, headers, sink)
        return
    got = [0]

    def counting(b):
        got[0] += len(b)
        sink(b)
    conn.raw = bytearray()
    try:
        _read_body(conn, headers, counting)
    except (Closed, OSError, ValueError) as e:
        log_event({"event": "truncated", "body_target": conn.target, "body_len": got[0],
                   "error": type(e).__name__, "raw_body": conn.raw_text(pending=True)}, conn)
        raise
    finally:
        raw, conn.raw = conn.raw_text(), None
    log_event({"event": "body", "body_target": conn.target, "body_len": got[0],
               "raw_body": raw}, conn)


def _read_body(conn, headers, sink):
    te = (header(headers, "Transfer-Encoding") or "").lower()
    if "chunked" in te:
        while True:
            size = int(conn.read_until(b"\r\n").split(b";")[0].strip(), 16)
            if size == 0:
                while conn.read_until(b"\r\n"):
                    pass
                return
            conn.read_exact_into(size, sink)
            if conn.read_until(b"\r\n") != b"":
                raise Closed()
    cl = header(headers, "Content-Length")
    if cl is not None:
        conn.read_exact_into(int(cl), sink)


def respond(conn, status, body=b"", headers=(), keep=True, reason=None):
    reason = reason or {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "Status")
    lines = ["HTTP/1.1 %d %s" % (status, reason)]
    lines += ["%s: %s" % kv for kv in headers]
    lines.append("Content-Length: %d" % len(body))
    if not keep:
        lines.append("Connection: close")
    conn.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


def handle(sock):
    conn = Conn(sock)
    try:
        while True:
            head = conn.read_until(b"\r\n\r\n").decode("latin-1")
            lines = head.split("\r\n")
            request_line = lines[0]
            parts = request_line.split(" ")
            if len(parts) != 3:
                log_event({"event": "malformed", "raw_head": head}, conn)
                return
            method, target, version = parts
            conn.target = target
            headers = []
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers.append((k.strip(), v.strip()))
            log_request(method, target, version, head, conn)
            conn_tokens = [t.strip().lower() for t in (header(headers, "Connection") or "").split(",")]
            keep = ("close" not in conn_tokens) if version == "HTTP/1.1" else ("keep-alive" in conn_tokens)
            u = urlsplit(target)
            path, q = u.path, parse_qs(u.query)

            def qint(name, default):
                return int(q.get(name, [default])[0])

            if path.endswith("/live"):
                read_body(conn, headers, lambda b: None)
                time.sleep(STATE["live_delay_ms"] / 1000.0)
                status = 500 if STATE["mode"] == "sick" else STATE["live"]
                respond(conn, status, b"", keep=keep)
            elif path == "/_ctl":
                read_body(conn, headers, lambda b: None)
                if "live" in q:
                    STATE["live"] = int(q["live"][0])
                if "live_delay_ms" in q:
                    STATE["live_delay_ms"] = int(q["live_delay_ms"][0])
                if "mode" in q:
                    STATE["mode"] = q["mode"][0]
                respond(conn, 200, b"ok", [("Content-Type", "text/plain")], keep=keep)
            elif STATE["mode"] == "reset" or path == "/reset":
                read_body(conn, headers, lambda b: None)
                return
            elif path == "/chunked":
                read_body(conn, headers, lambda b: None)
                h = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                if not keep:
                    h += "Connection: close\r\n"
                conn.send((h + "\r\n").encode())
                for p in CHUNKED_PARTS:
                    conn.send(b"%x\r\n%s\r\n" % (len(p), p))
                    time.sleep(0.01)
                conn.send(b"0\r\n\r\n")
            elif path == "/chunkedext":
                read_body(conn, headers, lambda b: None)
                parts = CHUNKEXT_BAD.get(q.get("bad", [""])[0], CHUNKEXT_PARTS)
                h = ("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                     "Trailer: X-Checksum, X-Trailer-Two\r\n")
                if not keep:
                    h += "Connection: close\r\n"
                pieces = [(h + "\r\n").encode()] + (parts if method != "HEAD" else [])
                if q.get("onewrite", ["0"])[0] == "1":
                    pieces = [b"".join(pieces)]
                for p in pieces:
                    conn.send(p)
                    time.sleep(0.02)
            elif path == "/close":
                read_body(conn, headers, lambda b: None)
                conn.send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                for i in range(0, len(CLOSE_BODY), 16384):
                    conn.send(CLOSE_BODY[i:i + 16384])
                return
            elif path == "/events":
                read_body(conn, headers, lambda b: None)
                n, ms = qint("n", 10), qint("ms", 100)
                chunked = q.get("framing", ["chunked"])[0] != "close"
                h = ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n")
                if chunked:
                    h += "Transfer-Encoding: chunked\r\n"
                if not chunked or not keep:
                    h += "Connection: close\r\n"
                conn.send((h + "\r\n").encode())
                start = time.monotonic()
                for i in range(n):
                    time.sleep(max(0.0, start + i * ms / 1000.0 - time.monotonic()))
                    ev = ("id: %d\ndata: {\"i\": %d, \"t\": %.6f}\n\n" % (i, i, time.time())).encode()
                    conn.send(b"%x\r\n%s\r\n" % (len(ev), ev) if chunked else ev)
                if not chunked:
                    return
                conn.send(b"0\r\n\r\n")
            elif path == "/big":
                read_body(conn, headers, lambda b: None)
                n = qint("n", 0)
                h = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n" % n
                if not keep:
                    h += "Connection: close\r\n"
                conn.send((h + "\r\n").encode())
                mv = memoryview(PATTERN)
                sent = 0
                while sent < n:      # n is a multiple of 256 at each step's start
                    take = min(n - sent, len(PATTERN))
                    conn.send(mv[:take])
                    sent += take
            elif path == "/slow":
                read_body(conn, headers, lambda b: None)
                time.sleep(qint("ms", 1000) / 1000.0)
                respond(conn, 200, b"slow", [("Content-Type", "text/plain")], keep=keep)
            elif path == "/count":
                delay = qint("delay_ms", 0)
                if (header(headers, "Expect") or "").lower() == "100-continue":
                    conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                time.sleep(delay / 1000.0)
                total = [0]
                h = hashlib.sha1()

                def sink(b):
                    total[0] += len(b)
                    h.update(b)
                read_body(conn, headers, sink)
                body = json.dumps({"bytes": total[0], "sha1": h.hexdigest()}).encode()
                respond(conn, 200, body, [("Content-Type", "application/json")], keep=keep)
            elif path == "/status":
                read_body(conn, headers, lambda b: None)
                code = qint("code", 200)
                respond(conn, code, json.dumps({"code": code}).encode(),
                        [("Content-Type", "application/json")], keep=keep)
            elif path == "/badhead":
                read_body(conn, headers, lambda b: None)
                bad = BAD_HEADS.get(q.get("kind", ["cr"])[0], BAD_HEADS["cr"])
                body = b"badhead"
                conn.send(bad + b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
                          % (len(body), body))
            elif path == "/hop":
                read_body(conn, headers, lambda b: None)
                hh = [("Content-Type", "text/plain"),
                      ("Connection", "keep-alive, X-Resp-Hop" if keep else "close, X-Resp-Hop"),
                      ("X-Resp-Hop", "secret"),
                      ("Keep-Alive", "timeout=5, max=100"),
                      ("Proxy-Authenticate", "Basic realm=x"),
                      ("Proxy-Connection", "keep-alive"),
                      ("Upgrade", "h2c"),
                      ("X-End-To-End", "kept")]
                body = b"hop"
                lines = ["HTTP/1.1 200 OK"] + ["%s: %s" % kv for kv in hh]
                lines.append("Content-Length: %d" % len(body))
                conn.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            else:
                h = hashlib.sha1()
                n = [0]

                def sink2(b):
                    n[0] += len(b)
                    h.update(b)
                read_body(conn, headers, sink2)
                body = json.dumps({
                    "backend": "127.0.0.1:%d" % sock.getsockname()[1],
                    "method": method, "target": target, "version": version,
                    "request_line": request_line, "headers": headers, "raw_head": head,
                    "body_len": n[0], "body_sha1": h.hexdigest(),
                }).encode()
                respond(conn, 200, body, [("Content-Type", "application/json")], keep=keep)
            if not keep:
                return
    except (Closed, OSError, ValueError):
        pass
    finally:
        if conn.buf:
            log_event({"event": "leftover", "bytes": conn.buf.decode("latin-1")}, conn)
        try:
            sock.close()
        except OSError:
            pass


def tls_wrapped(ctx, sock):
    """The server side of a TLS connection on sock, or None when its handshake failed."""
    try:
        t = ctx.wrap_socket(sock, server_side=True)
    except (ssl.SSLError, OSError) as e:
        log_event({"event": "tls_failed", "error": str(e)}, None)
        sock.close()
        return None
    log_event({"event": "tls", "version": t.version(), "reused": t.session_reused,
               "sni": getattr(t, "sni", None)}, None)
    return t


def serve_one(ctx, sock):
    if ctx is not None and (sock := tls_wrapped(ctx, sock)) is None:
        return
    handle(sock)


def main():
    args = sys.argv[1:]
    ctx = None
    if "--tls" in args:
        i = args.index("--tls")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args[i + 1], args[i + 2])

        def remember_sni(sslsock, name, _ctx):
            sslsock.sni = name
        ctx.sni_callback = remember_sni
        del args[i:i + 3]
    port = int(args[0])
    if len(args) > 1:
        STATE["mode"] = args[1]
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind(("127.0.0.1", port))
    except OSError as e:
        sys.stderr.write("testbackend: cannot listen on 127.0.0.1:%d: %s (address in use?)\n" % (port, e))
        return 1
    srv.listen(256)
    sys.stderr.write("testbackend listening on 127.0.0.1:%d mode %s%s\n" %
                     (port, STATE["mode"], " tls" if ctx is not None else ""))
    sys.stderr.flush()
    while True:
        s, _ = srv.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve_one, args=(ctx, s), daemon=True).start()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        pass

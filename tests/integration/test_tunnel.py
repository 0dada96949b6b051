#!/usr/bin/python3
"""WebSocket and other Upgrade tunnels through roundguardd (issue 13; real daemons on loopback).

Run (python3-websockets is needed: the Debian package, under /usr/bin/python3):
  ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
      /usr/bin/python3 tests/integration/test_tunnel.py -v [--suite integration|faults]

--suite picks the classes of one meson suite (SUITE attribute); other
arguments then keep the tests whose id contains one of them (a class or test
name). Without --suite, plain unittest.main(). meson runs the file twice:
`integration` (what a tunnel does) and `faults` (reload, SIGTERM, a worker or a
backend killed with tunnels open).

roundguardd's stderr is watched in every test: a child that died (unless the
test killed it), a sanitizer report or a failed assertion fails the test.
roundguard-echo's GET /ws is used as a backend too (EchoWebSocketTests).

Backends (this file, run as a script, in their own processes; each writes one
JSON line per event to stdout, which the tests read through rgtest.Daemon):

  --ws-backend PORT   a python3-websockets server (permessage-deflate off, no
                      keepalive pings, no size limit). */live answers 200.
                      WebSocket on any path: ?push=N sends N text messages
                      right after the handshake; every message is logged
                      ({"event": "msg", "conn", "tag", "type", "len", "sha1"})
                      and echoed, except text commands: "!push N" (N messages),
                      "!ping" (the server pings the client, waits for the pong,
                      logs {"event": "pong"} and sends "pong received"),
                      "!close CODE REASON" (the server closes). Events "open"
                      (path, tag from ?tag=, request headers as received) and
                      "close" (code and reason as the server saw them).
  --raw-backend PORT  a socket-level stub (a thread per connection; keep-alive)
                      that logs every request head it reads ({"event": "head",
                      "conn", "path", "raw_head", "behind": the bytes read past
                      the head in the same read}) and every byte after a 101
                      ({"event": "data"}; {"event": "eof", "total", "sha1"} at
                      the end). Paths (the 101s name the protocol the request
                      asked for and carry Sec-WebSocket-Accept; ?delay101=MS
                      waits that long before any 101, ?up101=P names P
                      instead, ?h101=LINE adds a header line to it):
        */live                200
        /echo[?behind=1]      101 (with one server frame in the same write as
                              the head when behind=1), then echoes every byte
        /auto                 101 and echo when the request asks for an upgrade,
                              else 200 JSON {"raw_head", "body"} (body read by
                              Content-Length or chunked)
        /refuse?code=N        answers N with a small body and stays open
        /unasked              answers 101 whatever was asked, then reads to EOF
        /other101             answers 101 naming "h2c" whatever was asked
        /drop                 reads the request, closes without answering
        /close101             101, then closes at once
        /halfclose            101, reads to EOF, then answers "got N sha1 H"
                              and closes
        /bhalfclose           101 + "hello from backend", shutdown(SHUT_WR),
                              then reads to EOF
        /sink[?wait_ms=N]     101; reads nothing for N ms, then reads and
                              discards to EOF
        /tick?ms=M&n=N        101, N ticks M ms apart, then reads to EOF
        /flood?bytes=N[&close=1]
                              101, then N bytes of WebSocket binary frames as
                              fast as the socket takes them (FLOOD_FRAME
                              repeated); logs {"event": "flood", "sent", "t"}
                              every MiB and {"event": "flood_done"}; then
                              reads to EOF, or closes at once with close=1
"""

import asyncio
import base64
import collections
import hashlib
import itertools
import json
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import unittest
from urllib.parse import parse_qs, urlsplit

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

STUB = __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] in ("--ws-backend",
                                                                         "--raw-backend")
if not STUB:
    import rgtest  # noqa: E402
    import test_lb as lbt  # noqa: E402
    import test_metrics as tmx  # noqa: E402
try:
    import websockets  # noqa: E402
    import websockets.client  # noqa: E402
    import websockets.exceptions  # noqa: E402
    import websockets.server  # noqa: E402
except ImportError as e:        # reported by setUpModule: a failure, not a skip
    websockets = None
    WEBSOCKETS_ERROR = e

THIS_FILE = os.path.abspath(__file__)
HOST = "127.0.0.1"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CALM = {"interval": "2s", "timeout": "1s"}
FAST = {"interval": "200ms", "timeout": "100ms"}
MIB = 1024 * 1024
# One binary frame of the flood: 64 KiB payload, server frames are not masked.
FLOOD_PAYLOAD = bytes(range(256)) * 256
FLOOD_FRAME = b"\x82\x7f" + struct.pack(">Q", len(FLOOD_PAYLOAD)) + FLOOD_PAYLOAD


# ---------------------------------------------------------------------------
# WebSocket framing (the raw-socket tests build and read frames themselves)
# ---------------------------------------------------------------------------

def ws_frame(payload, opcode=0x1, mask=True, fin=True):
    """One frame; client frames are masked (RFC 6455 5.3)."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode("latin-1") + WS_GUID).digest()).decode()


def upgrade_request(path, proto="websocket", version="HTTP/1.1", headers=(),
                    host="tunnel.test"):
    """(raw upgrade request, its Sec-WebSocket-Key)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET %s %s" % (path, version), "Host: %s" % host, "Connection: Upgrade",
             "Upgrade: %s" % proto, "Sec-WebSocket-Key: %s" % key, "Sec-WebSocket-Version: 13"]
    lines += ["%s: %s" % kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), key


def parse_head(raw):
    """(status, [(name, value)]) of a response head (bytes, without the blank line)."""
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    hdrs = []
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs.append((k.strip(), v.strip()))
    return status, hdrs


def hget(hdrs, name):
    vals = [v for k, v in hdrs if k.lower() == name.lower()]
    return vals[0] if vals else None


def hall(hdrs, name):
    return [v for k, v in hdrs if k.lower() == name.lower()]


# ---------------------------------------------------------------------------
# Backends (run as separate processes)
# ---------------------------------------------------------------------------

_out_lock = threading.Lock()


def emit(**obj):
    obj.setdefault("t", time.time())
    line = json.dumps(obj)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def ws_backend_main(port):
    import logging
    import http
    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    ids = itertools.count(1)

    def process_request(path, headers):
        if urlsplit(path).path.endswith("/live"):
            return http.HTTPStatus.OK, [("Content-Length", "0"), ("Connection", "close")], b""
        if headers.get("Upgrade") is None:
            emit(event="plain", path=path, headers=list(headers.raw_items()))
            body = json.dumps({"path": path}).encode()
            return http.HTTPStatus.OK, [("Content-Type", "application/json"),
                                        ("Content-Length", str(len(body))),
                                        ("Connection", "close")], body
        return None

    async def handler(ws):
        cid = next(ids)
        q = parse_qs(urlsplit(ws.path).query)
        tag = q.get("tag", [""])[0]
        emit(event="open", conn=cid, tag=tag, path=ws.path,
             headers=list(ws.request_headers.raw_items()),
             peer="%s:%d" % ws.remote_address[:2])
        try:
            for i in range(int(q.get("push", ["0"])[0])):
                await ws.send("push %d" % i)
            async for msg in ws:
                data = msg.encode() if isinstance(msg, str) else msg
                emit(event="msg", conn=cid, tag=tag, type="text" if isinstance(msg, str) else "binary",
                     len=len(data), sha1=hashlib.sha1(data).hexdigest())
                if isinstance(msg, str) and msg.startswith("!"):
                    cmd = msg[1:].split(" ", 2)
                    if cmd[0] == "push":
                        for i in range(int(cmd[1])):
                            await ws.send("push %d" % i)
                    elif cmd[0] == "ping":
                        waiter = await ws.ping(b"server-ping")
                        await asyncio.wait_for(waiter, 5)
                        emit(event="pong", conn=cid, tag=tag)
                        await ws.send("pong received")
                    elif cmd[0] == "close":
                        await ws.close(int(cmd[1]), cmd[2] if len(cmd) > 2 else "")
                    continue
                await ws.send(msg)
        except (websockets.exceptions.ConnectionClosed, asyncio.TimeoutError):
            pass
        finally:
            emit(event="close", conn=cid, tag=tag, code=ws.close_code, reason=ws.close_reason)

    async def serve():
        async with websockets.server.serve(handler, HOST, port, process_request=process_request,
                                           compression=None, ping_interval=None, max_size=None,
                                           max_queue=None, close_timeout=2):
            sys.stderr.write("ws backend listening on %s:%d\n" % (HOST, port))
            sys.stderr.flush()
            await asyncio.Future()

    asyncio.run(serve())


def raw_backend_main(port):
    ids = itertools.count(1)

    def serve(sock, cid):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = sock.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, buf = buf.partition(b"\r\n\r\n")
                text = head.decode("latin-1")
                lines = text.split("\r\n")
                parts = lines[0].split(" ")
                method, target, version = parts[0], parts[1], parts[2] if len(parts) > 2 else ""
                u = urlsplit(target)
                path, q = u.path, parse_qs(u.query)
                hdrs = []
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hdrs.append((k.strip(), v.strip()))
                conn_tokens = [t.strip().lower() for v in hall(hdrs, "Connection") for t in v.split(",")]
                asked = "upgrade" in conn_tokens and hget(hdrs, "Upgrade") is not None
                if path.endswith("/live"):
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    continue
                emit(event="head", conn=cid, method=method, path=target, version=version,
                     raw_head=text, behind=buf.decode("latin-1"), peer_port=sock.getpeername()[1])

                def switching(proto=None):
                    time.sleep(int(q.get("delay101", ["0"])[0]) / 1000.0)
                    proto = proto or q.get("up101", [None])[0] or hget(hdrs, "Upgrade") or "websocket"
                    h = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n" % proto
                    h += "".join(x + "\r\n" for x in q.get("h101", []))
                    key = hget(hdrs, "Sec-WebSocket-Key")
                    if key:
                        h += "Sec-WebSocket-Accept: %s\r\n" % ws_accept(key)
                    return (h + "\r\n").encode("latin-1")

                def read_to_eof(first=b"", log_data=True):
                    total, h = len(first), hashlib.sha1(first)
                    got = bytearray(first[:4096])
                    while True:
                        try:
                            d = sock.recv(262144)
                        except ConnectionResetError:
                            emit(event="eof", conn=cid, total=total, sha1=h.hexdigest(),
                                 reset=True, data=bytes(got).decode("latin-1"))
                            return total, h.hexdigest()
                        if not d:
                            break
                        total += len(d)
                        h.update(d)
                        if len(got) < 4096:
                            got += d[:4096 - len(got)]
                    emit(event="eof", conn=cid, total=total, sha1=h.hexdigest(),
                         data=bytes(got).decode("latin-1"))
                    return total, h.hexdigest()

                def echo(first):
                    total = 0
                    if first:
                        sock.sendall(first)
                        total += len(first)
                    while True:
                        try:
                            d = sock.recv(262144)
                        except ConnectionResetError:
                            d = b""
                        if not d:
                            emit(event="eof", conn=cid, total=total)
                            return
                        emit(event="data", conn=cid, len=len(d), data=d[:4096].decode("latin-1"))
                        total += len(d)
                        sock.sendall(d)

                if path == "/echo" or (path == "/auto" and asked):
                    extra = ws_frame(b"server frame behind the 101", mask=False) \
                        if q.get("behind") == ["1"] else b""
                    sock.sendall(switching() + extra)
                    echo(buf)
                    return
                if path == "/auto":
                    body = b""
                    if "chunked" in (hget(hdrs, "Transfer-Encoding") or "").lower():
                        while True:
                            while b"\r\n" not in buf:
                                buf += sock.recv(65536) or b"\0"
                            line, _, buf = buf.partition(b"\r\n")
                            size = int(line.split(b";")[0], 16)
                            while len(buf) < size + 2:
                                buf += sock.recv(65536)
                            body += buf[:size]
                            buf = buf[size + 2:]
                            if size == 0:
                                break
                    else:
                        n = int(hget(hdrs, "Content-Length") or 0)
                        while len(buf) < n:
                            d = sock.recv(65536)
                            if not d:
                                return
                            buf += d
                        body, buf = buf[:n], buf[n:]
                    out = json.dumps({"raw_head": text, "body": body.decode("latin-1")}).encode()
                    close = version == "HTTP/1.0" or "close" in conn_tokens
                    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n%s\r\n%s"
                                 % (len(out), b"Connection: close\r\n" if close else b"", out))
                    if close:
                        return
                    continue
                if path == "/refuse":
                    code = int(q.get("code", ["426"])[0])
                    body = b"no upgrade here"
                    sock.sendall(b"HTTP/1.1 %d Nope\r\nContent-Type: text/plain\r\n"
                                 b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (code, len(body), body))
                    continue
                if path == "/unasked":
                    sock.sendall(switching("websocket"))
                    read_to_eof(buf)
                    return
                if path == "/other101":
                    sock.sendall(switching("h2c"))
                    read_to_eof(buf)
                    return
                if path == "/drop":
                    return
                if path == "/close101":
                    sock.sendall(switching())
                    return
                if path == "/halfclose":
                    sock.sendall(switching())
                    total, sha = read_to_eof(buf)
                    sock.sendall(b"got %d sha1 %s" % (total, sha.encode()))
                    return
                if path == "/bhalfclose":
                    sock.sendall(switching() + b"hello from backend")
                    sock.shutdown(socket.SHUT_WR)
                    read_to_eof(buf)
                    return
                if path == "/sink":
                    # Kernel buffers stay small (no autotuning): what piles up is roundguardd's.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                    sock.sendall(switching())
                    time.sleep(int(q.get("wait_ms", ["0"])[0]) / 1000.0)
                    emit(event="sink_reading", conn=cid)
                    read_to_eof(buf)
                    return
                if path == "/tick":
                    sock.sendall(switching())
                    ms, n = int(q.get("ms", ["300"])[0]), int(q.get("n", ["10"])[0])
                    for i in range(n):
                        time.sleep(ms / 1000.0)
                        sock.sendall(b"tick %03d\n" % i)
                    emit(event="ticks_done", conn=cid)
                    read_to_eof(buf)
                    return
                if path == "/flood":
                    total = int(q.get("bytes", [str(50 * MIB)])[0]) // len(FLOOD_PAYLOAD) * len(FLOOD_FRAME)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
                    sock.sendall(switching())
                    # Non-blocking sends, so that the count is exact whenever the
                    # socket is full: logged then (and every MiB).
                    block = memoryview(FLOOD_FRAME * 16)
                    sock.setblocking(False)
                    sent = logged = 0
                    while sent < total:
                        off = sent % len(block)
                        want = min(len(block) - off, total - sent)
                        try:
                            k = sock.send(block[off:off + want])
                        except BlockingIOError:
                            k = 0
                        sent += k
                        if k < want:
                            if sent != logged:
                                emit(event="flood", conn=cid, sent=sent)
                                logged = sent
                            select.select([], [sock], [])
                        elif sent - logged >= MIB:
                            emit(event="flood", conn=cid, sent=sent)
                            logged = sent
                    sock.setblocking(True)
                    emit(event="flood_done", conn=cid, sent=sent)
                    if q.get("close") != ["1"]:
                        read_to_eof(buf)
                    return
                body = b"not here"
                sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(body), body))
        except OSError as e:
            emit(event="error", conn=cid, error=repr(e))
        finally:
            try:
                sock.close()
            except OSError:
                pass

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind((HOST, port))
    except OSError as e:
        sys.stderr.write("raw backend: cannot listen on %s:%d: %s (address in use?)\n" % (HOST, port, e))
        return 1
    srv.listen(512)
    sys.stderr.write("raw backend listening on %s:%d\n" % (HOST, port))
    sys.stderr.flush()
    while True:
        s, _ = srv.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(s, next(ids)), daemon=True).start()


# ---------------------------------------------------------------------------
# Test helpers
# ---------------------------------------------------------------------------

def setUpModule():
    if websockets is None:
        raise RuntimeError("python3-websockets is needed (the Debian package; run this file "
                           "with /usr/bin/python3): %s" % WEBSOCKETS_ERROR)
    lbt.setUpModule()


def events(backend, **match):
    """The JSON lines a backend wrote to stdout whose fields include match."""
    return rgtest.stdout_events(backend, **match)


def wait_events(backend, n=1, timeout=3.0, **match):
    return rgtest.wait_until(lambda: (lambda e: e if len(e) >= n else None)(events(backend, **match)),
                             timeout=timeout) or events(backend, **match)


def ws_backend(cleanup, port=None):
    d = rgtest.Daemon(sys.executable, ["-u", THIS_FILE, "--ws-backend", "{port}"], port=port)
    cleanup(d.kill)
    return d.start()


def raw_backend(cleanup):
    d = rgtest.Daemon(sys.executable, ["-u", THIS_FILE, "--raw-backend", "{port}"])
    cleanup(d.kill)
    return d.start()


_LBS = []      # every roundguardd started here: tearDown looks at what each logged


def start_lb(cleanup, backends, proxy=None, access=False, health=CALM, workers=2):
    cfg = lbt.make_config([lbt.url(b) for b in backends], health=health, proxy=proxy,
                          log={"access": access})
    lb = lbt.LB(cleanup, cfg, workers=workers).start()
    _LBS.append(lb)
    cleanup(_LBS.remove, lb)
    return lb


# Lines of roundguardd's stderr that fail the test that was running: a child
# died (a crash, an ASan abort), or a sanitizer reported something.
BAD_STDERR = re.compile(r"child died|AddressSanitizer|LeakSanitizer|runtime error:|"
                        r"Assertion .* failed")


def ws_connect(lb, path, **kw):
    opts = dict(compression=None, ping_interval=None, max_size=None, max_queue=None,
                open_timeout=5, close_timeout=3)
    opts.update(kw)
    return websockets.client.connect("ws://%s:%d%s" % (HOST, lb.port, path), **opts)


def arun(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Loop:
    """An asyncio loop in a thread, for WebSocket clients that stay open while
    the test does other things: run(coro) waits for its result. stop() aborts
    the connections opened with connect() and ends every task."""

    def __init__(self, cleanup):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.opened = []
        cleanup(self.stop)

    def run(self, coro, timeout=30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def connect(self, lb, path, **kw):
        ws = await ws_connect(lb, path, **kw)
        self.opened.append(ws)
        return ws

    def stop(self):
        async def _end():
            for ws in self.opened:
                if ws.transport is not None:
                    ws.transport.abort()
            await asyncio.sleep(0)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self.run(_end(), 10)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def connection_pids(lb, client_ports, pids):
    """{client port: the process among pids that holds roundguardd's end of the
    connection from that port (None if none does)}, from /proc/net/tcp and
    /proc/PID/fd, each read once."""
    want = set(client_ports)
    inode_of = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) != lb.port:
                continue
            rport = int(fields[2].split(":")[1], 16)
            if rport in want and fields[9] != "0":
                inode_of[rport] = "socket:[%s]" % fields[9]
    holder = {}
    for p in pids:
        try:
            fds = os.listdir("/proc/%d/fd" % p)
        except OSError:
            continue
        for fd in fds:
            try:
                holder[os.readlink("/proc/%d/fd/%s" % (p, fd))] = p
            except OSError:
                pass
    return {port: holder.get(inode_of.get(port)) for port in client_ports}


def tcp_queues():
    """{(local port, remote port): (bytes in the send queue not acknowledged,
    bytes received and not read)} of the established IPv4 TCP sockets."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] != "01":
                continue
            tx, rx = (int(x, 16) for x in fields[4].split(":"))
            out[(int(fields[1].split(":")[1], 16), int(fields[2].split(":")[1], 16))] = (tx, rx)
    return out


def listener_holders(lb, pids):
    """The processes among pids that hold a socket listening on roundguardd's port."""
    inodes = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == lb.port:
                inodes.add("socket:[%s]" % fields[9])
    out = set()
    for p in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % p):
                try:
                    if os.readlink("/proc/%d/fd/%s" % (p, fd)) in inodes:
                        out.add(p)
                except OSError:
                    pass
        except OSError:
            pass
    return out


def pid_of_connection(lb, client_port, pids):
    return connection_pids(lb, [client_port], pids)[client_port]


class RawTunnel:
    """A raw-socket client: the upgrade request (plus `behind`, in the same
    write), then the answer head; self.buf holds what came behind it."""

    def __init__(self, lb, path, behind=b"", timeout=5.0, proto="websocket", headers=(),
                 request=None, rcvbuf=None, sndbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, lb.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self.sock.getsockname()[1]
        if request is None:
            request, self.key = upgrade_request(path, proto=proto, headers=headers)
        self.sock.sendall(request + behind)
        self.buf = b""
        self.raw_head = self.read_head()
        self.status, self.headers = parse_head(self.raw_head)

    def read_head(self, limit=65536):
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                raise rgtest.ConnectionClosed("EOF before the end of the head: %r" % self.buf)
            self.buf += d
            if len(self.buf) > limit:
                raise AssertionError("no head end in %d bytes" % limit)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def recv_exact(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(262144)
            if not d:
                raise rgtest.ConnectionClosed("EOF after %d of %d bytes: %r"
                                              % (len(self.buf), n, self.buf[:200]))
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self, timeout=5.0):
        """(bytes until EOF or reset, 'eof'|'reset'|'timeout', seconds it took)."""
        t0 = time.monotonic()
        self.sock.settimeout(timeout)
        out, how = self.buf, "eof"
        self.buf = b""
        try:
            while True:
                d = self.sock.recv(262144)
                if not d:
                    break
                out += d
        except ConnectionResetError:
            how = "reset"
        except socket.timeout:
            how = "timeout"
        return out, how, time.monotonic() - t0

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class TunnelTestCase(unittest.TestCase):
    maxDiff = 4000
    SUITE = None

    def setUp(self):
        self._marks = {id(lb): lb.d.stderr_mark() for lb in _LBS}
        self.killed_workers = False       # a test that kills a worker itself sets it

    def tearDown(self):
        bad = []
        for lb in list(_LBS):
            lines = lb.d.stderr_lines()[self._marks.get(id(lb), 0):]
            bad += [line for line in lines if BAD_STDERR.search(line) and not (
                self.killed_workers and "child died" in line and "signal 9" in line)]
        self.assertEqual(bad, [], "roundguardd reported during the test")

    def raw(self, lb, path, **kw):
        t = RawTunnel(lb, path, **kw)
        self.addCleanup(t.close)
        return t

    def assert101(self, t, backend):
        self.assertEqual(t.status, 101, t.raw_head)
        self.assertEqual(hget(t.headers, "X-Backend-Server"), backend.address, t.raw_head)
        self.assertEqual((hget(t.headers, "Upgrade") or "").lower(), "websocket", t.raw_head)
        self.assertIn("upgrade", (hget(t.headers, "Connection") or "").lower(), t.raw_head)
        if getattr(t, "key", None):
            self.assertEqual(hget(t.headers, "Sec-WebSocket-Accept"), ws_accept(t.key), t.raw_head)

    def two_workers(self, lb):
        """The PIDs of lb's two workers (a child forked just before "ready"
        may not have set its title yet)."""
        ws = rgtest.wait_until(lambda: (lambda w: w if len(w) == 2 else None)(lb.workers()),
                               timeout=3) or []
        self.assertEqual(len(ws), 2, {p: rgtest.cmdline(p) for p in lb.children()})
        return ws

    def heads(self, backend, marker):
        return [e for e in events(backend, event="head") if marker in e["path"]]

    def received_after(self, head, n, backend=None, timeout=3.0):
        """What the raw backend read on head's connection after the head (its
        "behind" and "data" events; the first 4 KiB of each read), once n bytes
        were counted or timeout passed."""
        backend = backend or self.backend

        def got():
            evs = events(backend, event="data", conn=head["conn"])
            if len(head["behind"]) + sum(e["len"] for e in evs) < n:
                return None
            return head["behind"].encode("latin-1") + b"".join(e["data"].encode("latin-1") for e in evs)
        return rgtest.wait_until(got, timeout=timeout) or got() or b""

    def settled_heads(self, backends, marker, expect):
        """How many heads with marker the backends logged: once expect arrived
        (or 3 s passed), and 0.3 s more for any that should not have come."""
        def n():
            return sum(len(self.heads(b, marker)) for b in backends)
        rgtest.wait_until(lambda: n() >= expect, timeout=3)
        time.sleep(0.3)
        return n()

    def one_head(self, backend, marker, timeout=3.0):
        hs = rgtest.wait_until(lambda: self.heads(backend, marker), timeout=timeout)
        self.assertEqual(len(hs or []), 1, "heads with %r at the backend: %r" % (marker, hs))
        return hs[0]

    def stderr_tail(self, lb, n=3000):
        return lb.d.stderr_text()[-n:]


def header_names(raw_head):
    return [line.partition(":")[0].strip().lower() for line in raw_head.split("\r\n")[1:]]


def connection_tokens(raw_head):
    out = []
    for line in raw_head.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "connection":
            out += [t.strip().lower() for t in v.split(",")]
    return out


# ---------------------------------------------------------------------------
# WebSocket through roundguardd (python3-websockets on both ends)
# ---------------------------------------------------------------------------

class WebSocketTests(TunnelTestCase):
    SUITE = "integration"

    @classmethod
    def setUpClass(cls):
        cls.backends = [ws_backend(cls.addClassCleanup) for _ in range(3)]
        cls.lb = start_lb(cls.addClassCleanup, cls.backends)

    def opened(self, tag, timeout=3.0):
        """(backend, its open event) of the connection tagged tag."""
        def find():
            return [(b, e) for b in self.backends for e in events(b, event="open", tag=tag)]
        got = rgtest.wait_until(find, timeout=timeout) or []
        self.assertEqual(len(got), 1, "backends that saw tag %s: %r" % (tag, got))
        return got[0]

    def test_messages_echoed_text_binary_big_fragmented(self):
        tag = "msgs-%d" % os.getpid()
        big = os.urandom(MIB)
        sent = ["hello, tunnel \u00e9\u00e8 \u2603", b"\x00\x01\x02\xff" * 10, big]
        frags_text = ["frag-a ", "frag-b ", "frag-c"]
        frags_bin = [b"\x10" * 1000, b"\x20" * 70000, b"\x30"]

        async def go():
            async with ws_connect(self.lb, "/echo?tag=" + tag) as ws:
                hdr = ws.response_headers.get("X-Backend-Server")
                got = []
                for m in sent:
                    await ws.send(m)
                    got.append(await ws.recv())
                await ws.send(frags_text)          # one message in three frames
                got.append(await ws.recv())
                await ws.send(frags_bin)
                got.append(await ws.recv())
                await ws.close(4000, "client-bye")
                return hdr, got, ws.close_code, ws.close_reason
        hdr, got, code, reason = arun(go())
        want = sent + ["".join(frags_text), b"".join(frags_bin)]
        self.assertEqual(len(got), len(want))
        for i, (g, w) in enumerate(zip(got, want)):
            self.assertEqual(type(g), type(w), "message %d" % i)
            self.assertTrue(g == w, "message %d differs (%d vs %d bytes)" % (i, len(g), len(w)))
        self.assertEqual((code, reason), (4000, "client-bye"))
        b, opened = self.opened(tag)
        self.assertEqual(hdr, b.address)
        # What the backend received: the handshake with Upgrade and Connection:
        # upgrade, and every message whole, in order.
        names = {k.lower(): v for k, v in opened["headers"]}
        self.assertEqual(names.get("upgrade", "").lower(), "websocket", opened)
        self.assertIn("upgrade", names.get("connection", "").lower(), opened)
        self.assertEqual(names.get("x-forwarded-for"), "127.0.0.1", opened)
        msgs = [(e["type"], e["len"], e["sha1"]) for e in wait_events(b, len(want), event="msg", tag=tag)]

        def desc(m):
            d = m.encode() if isinstance(m, str) else m
            return ("text" if isinstance(m, str) else "binary", len(d), hashlib.sha1(d).hexdigest())
        self.assertEqual(msgs, [desc(m) for m in want])
        closed = wait_events(b, 1, event="close", tag=tag)
        self.assertEqual([(e["code"], e["reason"]) for e in closed], [(4000, "client-bye")])

    def test_ping_pong_server_messages_and_server_close(self):
        tag = "srv-%d" % os.getpid()

        async def go():
            async with ws_connect(self.lb, "/echo?push=3&tag=" + tag) as ws:
                pushed = [await asyncio.wait_for(ws.recv(), 5) for _ in range(3)]
                pong = await ws.ping(b"client-ping")
                await asyncio.wait_for(pong, 5)          # the backend's pong came back
                await ws.send("!ping")                   # the backend pings us
                after_ping = await asyncio.wait_for(ws.recv(), 5)
                await ws.send("!push 2")
                more = [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)]
                await ws.send("!close 4001 server-bye")
                try:
                    extra = await asyncio.wait_for(ws.recv(), 5)
                except websockets.exceptions.ConnectionClosed as e:
                    extra = None        # ConnectionClosedError for codes other than 1000/1001
                    self.assertIsNotNone(e.rcvd, "no close frame received")
                t0 = time.monotonic()
                await asyncio.wait_for(ws.wait_closed(), 5)   # TCP closed too
                return pushed, after_ping, more, extra, ws.close_code, ws.close_reason, \
                    time.monotonic() - t0
        pushed, after_ping, more, extra, code, reason, waited = arun(go())
        self.assertEqual(pushed, ["push 0", "push 1", "push 2"])
        self.assertEqual(after_ping, "pong received")
        self.assertEqual(more, ["push 0", "push 1"])
        self.assertIsNone(extra)
        self.assertEqual((code, reason), (4001, "server-bye"))
        self.assertLess(waited, 3.0)
        b, _ = self.opened(tag)
        self.assertEqual(len(wait_events(b, 1, event="pong", tag=tag)), 1)
        self.assertEqual([(e["code"], e["reason"]) for e in wait_events(b, 1, event="close", tag=tag)],
                         [(4001, "server-bye")])

    def test_round_robin_over_upgrades(self):
        run = "rr-%d-%d" % (os.getpid(), int(time.time() * 1000))

        async def go():
            out = []
            for i in range(30):
                async with ws_connect(self.lb, "/echo?tag=%s-%02d" % (run, i)) as ws:
                    await ws.send("n%d" % i)
                    self.assertEqual(await asyncio.wait_for(ws.recv(), 5), "n%d" % i)
                    out.append(ws.response_headers.get("X-Backend-Server"))
            return out
        by_header = collections.Counter(arun(go()))
        want = {b.address: 10 for b in self.backends}
        self.assertEqual(dict(by_header), want, "X-Backend-Server of the 101s")
        def opened():
            return {b.address: len([e for e in events(b, event="open") if e["tag"].startswith(run + "-")])
                    for b in self.backends}
        by_backend = rgtest.wait_until(lambda: (lambda o: o if sum(o.values()) >= 30 else None)(opened()),
                                       timeout=3) or opened()
        self.assertEqual(by_backend, want, "upgrades each backend saw")


class EchoWebSocketTests(TunnelTestCase):
    """The same through roundguard-echo's GET /ws (the project's own backend)."""
    SUITE = "integration"

    @classmethod
    def setUpClass(cls):
        cls.backends = [lbt.echo_backend(cls.addClassCleanup) for _ in range(3)]
        cls.lb = start_lb(cls.addClassCleanup, cls.backends)

    def test_echo_ws_through_roundguardd(self):
        big = os.urandom(MIB)

        async def go():
            async with ws_connect(self.lb, "/ws?greet=1") as ws:
                out = {"backend": ws.response_headers.get("X-Backend-Server"),
                       "greeting": await asyncio.wait_for(ws.recv(), 5)}
                got = []
                for m in ("text \u2603", b"\x00\xff" * 50, big, ["frag-a ", "frag-b"],
                          [b"\x01" * 70000, b"\x02"]):
                    await ws.send(m)
                    got.append(await asyncio.wait_for(ws.recv(), 10))
                pong = await ws.ping(b"p")
                await asyncio.wait_for(pong, 5)
                await ws.close(4002, "bye")
                out.update(got=got, close=(ws.close_code, ws.close_reason))
                return out
        out = arun(go())
        self.assertIn(out["backend"], [b.address for b in self.backends])
        self.assertEqual(out["greeting"], "hello")
        self.assertEqual(out["got"], ["text \u2603", b"\x00\xff" * 50, big, "frag-a frag-b",
                                      b"\x01" * 70000 + b"\x02"])
        self.assertEqual(out["close"][0], 4002)     # roundguard-echo sends the code back, no reason

    def test_round_robin_over_upgrades_to_echo(self):
        async def go():
            out = []
            for i in range(30):
                async with ws_connect(self.lb, "/ws") as ws:
                    await ws.send("n%d" % i)
                    self.assertEqual(await asyncio.wait_for(ws.recv(), 5), "n%d" % i)
                    out.append(ws.response_headers.get("X-Backend-Server"))
            return out
        self.assertEqual(dict(collections.Counter(arun(go()))), {b.address: 10 for b in self.backends})

    def test_echo_closes_after_101(self):
        t = self.raw(self.lb, "/ws?close_after_101=1")
        self.assertEqual(t.status, 101, t.raw_head)
        self.assertEqual(hget(t.headers, "Sec-WebSocket-Accept"), ws_accept(t.key))
        rest, how, took = t.read_to_eof(timeout=5)
        self.assertEqual(rest, b"")
        self.assertIn(how, ("eof", "reset"))
        self.assertLess(took, 2.0)


# ---------------------------------------------------------------------------
# Raw sockets: bytes behind heads, non-101 answers, what is not upgraded, half-closes
# ---------------------------------------------------------------------------

class RawTunnelTests(TunnelTestCase):
    SUITE = "integration"

    @classmethod
    def setUpClass(cls):
        cls.backend = raw_backend(cls.addClassCleanup)
        cls.lb = start_lb(cls.addClassCleanup, [cls.backend])

    def test_bytes_behind_both_heads_forwarded(self):
        mark = "behind-%d" % time.monotonic_ns()
        client_frame = ws_frame(b"first frame, in the request's packet")
        t = self.raw(self.lb, "/echo?behind=1&m=" + mark, behind=client_frame)
        self.assert101(t, self.backend)
        server_frame = ws_frame(b"server frame behind the 101", mask=False)
        # The backend's frame (sent in the write of its 101), then the echo of ours.
        got = t.recv_exact(len(server_frame) + len(client_frame))
        self.assertEqual(got, server_frame + client_frame)
        head = self.one_head(self.backend, mark)
        received = self.received_after(head, len(client_frame))
        self.assertEqual(received, client_frame, "what the backend got behind the upgrade head")
        t.sock.shutdown(socket.SHUT_WR)
        rest, how, _ = t.read_to_eof()
        self.assertEqual((rest, how), (b"", "eof"))

    def test_connection_header_forms(self):
        """Connection lists as browsers send them; what reaches the backend is
        exactly "Connection: upgrade" and the Upgrade asked for, nothing else hop-by-hop."""
        forms = {
            "firefox": "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n",
            "lower-case": "connection: upgrade\r\nupgrade: websocket\r\n",
            "two-fields": "Connection: keep-alive\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n",
            "white-space": "Connection:   Upgrade  \r\nUpgrade:    websocket   \r\n",
            "hop-by-hop": "Proxy-Connection: keep-alive\r\nConnection: Upgrade, X-Hop\r\nX-Hop: secret\r\n"
                          "Upgrade: websocket\r\nKeep-Alive: 5\r\nTE: trailers\r\n",
        }
        for name, fields in forms.items():
            with self.subTest(form=name):
                mark = "form-%s-%d" % (name, time.monotonic_ns())
                req = ("GET /echo?m=%s HTTP/1.1\r\nHost: tunnel.test\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                       "%s\r\n" % (mark, fields)).encode()
                t = self.raw(self.lb, None, request=req, behind=b"DATA")
                self.assertEqual(t.status, 101, t.raw_head)
                self.assertEqual(t.recv_exact(4), b"DATA")
                raw = self.one_head(self.backend, mark)["raw_head"]
                lines = raw.split("\r\n")[1:]
                hop = [line for line in lines if line.split(":")[0].lower() in (
                    "connection", "upgrade", "keep-alive", "te", "proxy-connection", "x-hop")]
                self.assertEqual(hop, ["Connection: upgrade", "Upgrade: websocket"], raw)

    def test_large_data_behind_request_head(self):
        mark = "bigbehind-%d" % time.monotonic_ns()
        frames = b"".join(ws_frame(os.urandom(n), opcode=2) for n in (100, 70000, 130000))
        result = {}

        def reader(t):
            try:
                result["got"] = t.recv_exact(len(frames))
            except Exception as e:  # noqa: BLE001
                result["err"] = e
        # The reader starts once the 101 is in: the echo must not fill both buffers.
        t = self.raw(self.lb, "/echo?m=" + mark, behind=frames, timeout=10)
        self.assert101(t, self.backend)
        th = threading.Thread(target=reader, args=(t,))
        th.start()
        th.join(15)
        self.assertNotIn("err", result)
        self.assertTrue(result.get("got") == frames, "echo differs")
        head = self.one_head(self.backend, mark)
        self.received_after(head, len(frames))
        self.assertEqual(len(head["behind"]) + sum(e["len"] for e in events(
            self.backend, event="data", conn=head["conn"])), len(frames), "bytes the backend read")

    def test_non_101_answer_is_ordinary_and_connection_stays_usable(self):
        for code in (426, 200, 403):
            with self.subTest(code=code):
                mark = "refuse-%d-%d" % (code, time.monotonic_ns())
                t = self.raw(self.lb, "/refuse?code=%d&m=%s" % (code, mark))
                self.assertEqual(t.status, code, t.raw_head)
                cl = int(hget(t.headers, "Content-Length"))
                self.assertEqual(t.recv_exact(cl), b"no upgrade here")
                self.assertIsNone(hget(t.headers, "Upgrade"), t.raw_head)
                self.assertNotIn("upgrade", (hget(t.headers, "Connection") or "").lower())
                # The backend got an upgrade request...
                head = self.one_head(self.backend, mark)
                self.assertIn("upgrade", connection_tokens(head["raw_head"]))
                self.assertIn("upgrade", header_names(head["raw_head"]))
                # ... and the client's connection serves the next request.
                t.sock.sendall(rgtest.build_request("GET", "/auto?next=" + mark))
                rh = t.read_head()
                status, hdrs = parse_head(rh)
                self.assertEqual(status, 200, rh)
                body = json.loads(t.recv_exact(int(hget(hdrs, "Content-Length"))))
                self.assertIn("/auto?next=" + mark, body["raw_head"])
                self.assertNotIn("upgrade", header_names(body["raw_head"]))

    def test_unasked_101_is_502(self):
        mark = "unasked-%d" % time.monotonic_ns()
        r = rgtest.http_request(HOST, self.lb.port, "GET", "/unasked?m=" + mark)
        self.assertEqual(r.status, 502, r)
        heads = rgtest.wait_until(lambda: self.heads(self.backend, mark))
        self.assertTrue(heads)
        self.assertNotIn("upgrade", header_names(heads[0]["raw_head"]))
        # The backend connection that switched protocols is closed, not pooled.
        for h in heads:
            self.assertTrue(wait_events(self.backend, 1, event="eof", conn=h["conn"]),
                            "backend connection left open after an unasked 101")

    def test_101_to_another_protocol_is_502_and_not_retried(self):
        mark = "other-%d" % time.monotonic_ns()
        t = self.raw(self.lb, "/other101?m=" + mark)
        self.assertEqual(t.status, 502, t.raw_head)
        lbt.LBTestCase.assertErrorJSON(self, rgtest.Response(
            "HTTP/1.1", t.status, "", t.headers, t.recv_exact(int(hget(t.headers, "Content-Length")))), 502)
        self.assertEqual(self.settled_heads([self.backend], mark, 1), 1, "an upgrade sent twice")

    def test_h2c_upgrade_not_forwarded(self):
        for proto in ("h2c", "websocket, h2c"):
            with self.subTest(upgrade=proto):
                mark = "h2c-%d" % time.monotonic_ns()
                req = ("GET /auto?m=%s HTTP/1.1\r\nHost: tunnel.test\r\n"
                       "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: %s\r\n"
                       "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n" % (mark, proto)).encode()
                t = self.raw(self.lb, None, request=req)
                self.assertEqual(t.status, 200, t.raw_head)
                self.assertEqual(t.headers and hget(t.headers, "X-Backend-Server"), self.backend.address)
                body = json.loads(t.recv_exact(int(hget(t.headers, "Content-Length"))))
                raw = self.one_head(self.backend, mark)["raw_head"]
                self.assertEqual(body["raw_head"], raw)
                self.assertNotIn("upgrade", header_names(raw), raw)
                self.assertNotIn("http2-settings", header_names(raw), raw)
                self.assertNotIn("upgrade", connection_tokens(raw), raw)
                self.assertTrue(raw.startswith("GET /auto?m=%s HTTP/1.1\r\n" % mark), raw)
                # Plain HTTP/1.1: the connection serves the next request.
                t.sock.sendall(rgtest.build_request("GET", "/auto?after=" + mark))
                status, hdrs = parse_head(t.read_head())
                self.assertEqual(status, 200)
                t.recv_exact(int(hget(hdrs, "Content-Length")))

    def test_http10_upgrade_goes_on_as_plain_request(self):
        mark = "h10-%d" % time.monotonic_ns()
        req, _ = upgrade_request("/auto?m=" + mark, version="HTTP/1.0")
        t = self.raw(self.lb, None, request=req)
        self.assertEqual(t.status, 200, t.raw_head)
        rest, how, _ = t.read_to_eof()
        self.assertEqual(how, "eof")
        body = json.loads(rest)
        raw = self.one_head(self.backend, mark)["raw_head"]
        self.assertEqual(body["raw_head"], raw)
        self.assertNotIn("upgrade", header_names(raw), raw)
        self.assertNotIn("upgrade", connection_tokens(raw), raw)

    def test_upgrade_with_body_goes_on_as_plain_request(self):
        for kind in ("content-length", "chunked"):
            with self.subTest(body=kind):
                mark = "body-%s-%d" % (kind, time.monotonic_ns())
                if kind == "chunked":
                    hdrs, payload = [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n"
                else:
                    hdrs, payload = [("Content-Length", "5")], b"hello"
                req, _ = upgrade_request("/auto?m=" + mark, headers=hdrs)
                req = req.replace(b"GET ", b"POST ", 1) + payload
                t = self.raw(self.lb, None, request=req)
                self.assertEqual(t.status, 200, t.raw_head)
                body = json.loads(t.recv_exact(int(hget(t.headers, "Content-Length"))))
                self.assertEqual(body["body"], "hello")
                raw = self.one_head(self.backend, mark)["raw_head"]
                self.assertNotIn("upgrade", header_names(raw), raw)
                self.assertNotIn("upgrade", connection_tokens(raw), raw)
                t.sock.sendall(rgtest.build_request("GET", "/auto?after=" + mark))
                status, h2 = parse_head(t.read_head())
                self.assertEqual(status, 200)
                t.recv_exact(int(hget(h2, "Content-Length")))

    def test_backend_closes_right_after_101(self):
        mark = "close101-%d" % time.monotonic_ns()
        t = self.raw(self.lb, "/close101?m=" + mark)
        self.assert101(t, self.backend)
        rest, how, took = t.read_to_eof(timeout=5)
        self.assertEqual(rest, b"")
        self.assertIn(how, ("eof", "reset"))
        self.assertLess(took, 2.0)

    def test_client_half_close_backend_still_answers(self):
        mark = "half-%d" % time.monotonic_ns()
        data = os.urandom(300000)
        t = self.raw(self.lb, "/halfclose?m=" + mark, timeout=10)
        self.assert101(t, self.backend)
        t.sock.sendall(data)
        t.sock.shutdown(socket.SHUT_WR)
        answer, how, took = t.read_to_eof(timeout=10)
        self.assertEqual(how, "eof")
        self.assertEqual(answer, b"got %d sha1 %s" % (len(data), hashlib.sha1(data).hexdigest().encode()))
        conn = self.one_head(self.backend, mark)["conn"]
        eof = wait_events(self.backend, 1, event="eof", conn=conn)
        self.assertEqual([(e["total"], e.get("reset")) for e in eof], [(len(data), None)])

    def test_client_half_close_before_the_101(self):
        """The client sends the upgrade, its first bytes and its end before
        the backend answered (at once, and 300 ms later)."""
        for delay in (0, 300):
            with self.subTest(delay101=delay):
                mark = "halfearly-%d-%d" % (delay, time.monotonic_ns())
                req, key = upgrade_request("/halfclose?delay101=%d&m=%s" % (delay, mark))
                s = socket.create_connection((HOST, self.lb.port), timeout=5)
                self.addCleanup(s.close)
                s.sendall(req + b"early bytes")
                s.shutdown(socket.SHUT_WR)
                got, how = b"", "eof"
                try:
                    while True:
                        d = s.recv(65536)
                        if not d:
                            break
                        got += d
                except (socket.timeout, ConnectionResetError) as e:
                    how = repr(e)
                head, _, rest = got.partition(b"\r\n\r\n")
                self.assertTrue(head.startswith(b"HTTP/1.1 101 "), got)
                self.assertEqual((rest, how), (b"got 11 sha1 %s" % hashlib.sha1(b"early bytes")
                                               .hexdigest().encode(), "eof"))
                conn = self.one_head(self.backend, mark)["conn"]
                self.assertEqual([e["data"] for e in wait_events(self.backend, 1, event="eof", conn=conn)],
                                 ["early bytes"])

    def test_backend_half_close_client_still_sends(self):
        mark = "bhalf-%d" % time.monotonic_ns()
        t = self.raw(self.lb, "/bhalfclose?m=" + mark)
        self.assert101(t, self.backend)
        got = t.recv_exact(len(b"hello from backend"))
        self.assertEqual(got, b"hello from backend")
        t.sock.settimeout(3)
        self.assertEqual(t.sock.recv(100), b"", "the backend's half-close was not passed on")
        t.sock.sendall(b"client data after the backend's EOF")
        t.sock.shutdown(socket.SHUT_WR)
        conn = self.one_head(self.backend, mark)["conn"]
        eof = wait_events(self.backend, 1, event="eof", conn=conn)
        self.assertEqual([e["data"] for e in eof], ["client data after the backend's EOF"])
        rest, how, _ = t.read_to_eof(timeout=5)
        self.assertEqual((rest, how), (b"", "eof"))


class UpgradeRetryTests(TunnelTestCase):
    """A connect failure before the upgrade was sent is retried on the next
    backend; an upgrade that was sent is never sent again."""
    SUITE = "integration"

    def test_connect_refused_retried_sent_upgrade_not(self):
        backends = [raw_backend(self.addCleanup) for _ in range(3)]
        # Health checks far apart: the dead backend is found by the connects.
        lb = start_lb(self.addCleanup, backends, health={"interval": "60s", "timeout": "1s"})
        dead = backends[0]
        dead.kill()
        alive = backends[1:]
        for i in range(6):
            t = self.raw(lb, "/echo?m=retry-%d" % i)
            self.assertEqual(t.status, 101, t.raw_head)
            self.assertIn(hget(t.headers, "X-Backend-Server"), [b.address for b in alive])
            t.sock.sendall(b"ping %d" % i)
            self.assertEqual(t.recv_exact(6), b"ping %d" % i)
            t.close()
        # Sent, then the backend closed without a byte of answer: 502, sent once.
        mark = "drop-%d" % time.monotonic_ns()
        t = self.raw(lb, "/drop?m=" + mark)
        self.assertEqual(t.status, 502, t.raw_head)
        self.assertEqual(self.settled_heads(alive, mark, 1), 1, "the upgrade was sent again")
        # The same without Upgrade is a GET that is retried once (the contrast).
        mark = "dropget-%d" % time.monotonic_ns()
        r = rgtest.http_request(HOST, lb.port, "GET", "/drop?m=" + mark)
        self.assertEqual(r.status, 502, r)
        self.assertEqual(self.settled_heads(alive, mark, 2), 2)


# ---------------------------------------------------------------------------
# proxy.tunnel_timeout
# ---------------------------------------------------------------------------

TUNNEL_TIMEOUT = 1.0


class TunnelTimeoutTests(TunnelTestCase):
    SUITE = "integration"

    @classmethod
    def setUpClass(cls):
        cls.backend = raw_backend(cls.addClassCleanup)
        # proxy.timeout and client_timeout shorter than tunnel_timeout: neither applies to a tunnel.
        cls.lb = start_lb(cls.addClassCleanup, [cls.backend],
                          proxy={"tunnel_timeout": "1s", "timeout": "300ms", "client_timeout": "300ms"})

    def backend_eof(self, mark):
        conn = self.one_head(self.backend, mark)["conn"]
        return wait_events(self.backend, 1, event="eof", conn=conn)

    def test_idle_tunnel_closed_after_timeout(self):
        mark = "idle-%d" % time.monotonic_ns()
        t0 = time.monotonic()
        t = self.raw(self.lb, "/echo?m=" + mark)
        self.assert101(t, self.backend)
        rest, how, _ = t.read_to_eof(timeout=6)
        took = time.monotonic() - t0
        self.assertEqual(rest, b"")
        self.assertIn(how, ("eof", "reset"))
        self.assertGreaterEqual(took, TUNNEL_TIMEOUT * 0.9)
        self.assertLess(took, TUNNEL_TIMEOUT + 1.5)
        self.assertTrue(self.backend_eof(mark), "the backend side stayed open")

    def test_101_later_than_proxy_timeout_is_504(self):
        mark = "late101-%d" % time.monotonic_ns()
        t0 = time.monotonic()
        t = self.raw(self.lb, "/echo?delay101=800&m=" + mark)
        self.assertEqual(t.status, 504, t.raw_head)
        self.assertLess(time.monotonic() - t0, 0.75)
        self.assertTrue(self.backend_eof(mark), "the backend connection stayed open")

    def test_tunnel_with_traffic_client_to_backend_stays(self):
        mark = "busyup-%d" % time.monotonic_ns()
        t = self.raw(self.lb, "/sink?m=" + mark)
        self.assert101(t, self.backend)
        sent = 0
        end = time.monotonic() + 3 * TUNNEL_TIMEOUT
        while time.monotonic() < end:
            t.sock.sendall(b"x" * 10)
            t_last = time.monotonic()
            sent += 10
            time.sleep(TUNNEL_TIMEOUT * 0.3)
        # Still open: nothing came back (no EOF) and the backend saw it all.
        t.sock.settimeout(0.05)
        with self.assertRaises(socket.timeout):
            t.sock.recv(10)
        rest, how, _ = t.read_to_eof(timeout=6)       # now idle: closed after the timeout
        self.assertEqual(rest, b"")
        self.assertLess(time.monotonic() - t_last, TUNNEL_TIMEOUT + 1.5)
        self.assertGreaterEqual(time.monotonic() - t_last, TUNNEL_TIMEOUT * 0.9)
        self.assertEqual([e["total"] for e in self.backend_eof(mark)], [sent])

    def test_tunnel_with_traffic_backend_to_client_stays(self):
        mark = "busydown-%d" % time.monotonic_ns()
        n, ms = 10, int(TUNNEL_TIMEOUT * 300)
        t = self.raw(self.lb, "/tick?ms=%d&n=%d&m=%s" % (ms, n, mark), timeout=10)
        self.assert101(t, self.backend)
        want = b"".join(b"tick %03d\n" % i for i in range(n))
        got = t.recv_exact(len(want))
        t0 = time.monotonic()
        self.assertEqual(got, want)
        rest, how, _ = t.read_to_eof(timeout=6)
        self.assertEqual(rest, b"")
        self.assertLess(time.monotonic() - t0, TUNNEL_TIMEOUT + 1.5)
        self.assertTrue(self.backend_eof(mark))


# ---------------------------------------------------------------------------
# Many tunnels one after the other: nothing left behind
# ---------------------------------------------------------------------------

def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


class ChurnTests(TunnelTestCase):
    SUITE = "integration"

    def test_many_tunnels_leave_nothing_behind(self):
        backend = raw_backend(self.addCleanup)
        lb = start_lb(self.addCleanup, [backend])
        workers = self.two_workers(lb)

        def cycle(n):
            for i in range(n):
                t = RawTunnel(lb, "/echo?m=churn")
                t.sock.sendall(b"x" * 100)
                self.assertEqual(t.recv_exact(100), b"x" * 100)
                if i % 2:       # half-close, then the backend closes: both ends go in turn
                    t.sock.shutdown(socket.SHUT_WR)
                    self.assertEqual(t.read_to_eof(timeout=3)[:2], (b"", "eof"))
                t.close()        # else a full close while the tunnel is open
        cycle(100)
        self.assertEqual(rgtest.wait_until(lambda: scrape(lb).total("roundguard_tunnels_active") == 0, 3),
                         True)
        time.sleep(0.5)          # the scrape's own connection is gone by now
        fds0 = {p: fd_count(p) for p in workers}
        rss0 = {p: rgtest.rss_bytes(p) for p in workers}
        cycle(1000)
        self.assertEqual(rgtest.wait_until(lambda: scrape(lb).total("roundguard_tunnels_active") == 0, 3),
                         True, scrape(lb).series("roundguard_tunnels_active"))
        self.assertEqual(scrape(lb).total("roundguard_tunnels_total"), 1100)
        time.sleep(0.5)
        fds1 = rgtest.wait_until(lambda: (lambda f: f if f == fds0 else None)(
            {p: fd_count(p) for p in workers}), timeout=3) or {p: fd_count(p) for p in workers}
        rss1 = {p: rgtest.rss_bytes(p) for p in workers}
        self.assertEqual(fds1, fds0, "worker descriptors before and after 1000 tunnels")
        if not lbt.SANITIZED:
            for p in workers:
                self.assertLess(rss1[p] - rss0[p], MIB, "worker %d RSS %d -> %d" % (p, rss0[p], rss1[p]))


# ---------------------------------------------------------------------------
# Back-pressure: a slow reader behind a fast writer
# ---------------------------------------------------------------------------

FLOOD = 50 * MIB
STALL = 3.0
RSS_GROWTH_LIMIT = 4 * MIB
# What the worker itself holds of a stalled stream: the bytes written in, less
# those in the kernel's queues of the four sockets on the way and those read
# out. Below the 64 KiB high-water mark one more readiness is served: up to 4
# reads, each into the space evbuffer_reserve_space() gives (asked for 16 KiB,
# it may give a fresh 32 KiB chain's ~32 KiB), so at most ~192 KiB (seen: 196 KB).
HELD_LIMIT = 256 * 1024


class BackPressureTests(TunnelTestCase):
    """A slow reader behind a fast writer, both ways. The test's own sockets
    have small fixed buffers; roundguardd's are autotuned and may take tens of
    MiB (net.ipv4.tcp_rmem), so what the worker holds is counted exactly from
    /proc/net/tcp rather than guessed from what the writer got rid of."""
    SUITE = "integration"

    @classmethod
    def setUpClass(cls):
        cls.backend = raw_backend(cls.addClassCleanup)
        cls.lb = start_lb(cls.addClassCleanup, [cls.backend])

    def path_queues(self, client_port, backend_port_of_lb):
        """Bytes in the kernel on the way: client, roundguardd's two sockets, backend."""
        q = tcp_queues()
        lb, be = self.lb.port, self.backend.port
        keys = {"client": (client_port, lb), "lb_client_side": (lb, client_port),
                "lb_backend_side": (backend_port_of_lb, be), "backend": (be, backend_port_of_lb)}
        missing = [k for k, v in keys.items() if v not in q]
        self.assertEqual(missing, [], "sockets not found in /proc/net/tcp")
        return {k: q[v] for k, v in keys.items()}

    def test_fast_backend_slow_client(self):
        mark = "flood-%d" % time.monotonic_ns()
        workers = self.two_workers(self.lb)
        t = self.raw(self.lb, "/flood?bytes=%d&close=1&m=%s" % (FLOOD, mark), timeout=20,
                     rcvbuf=65536)
        self.assert101(t, self.backend)
        worker = pid_of_connection(self.lb, t.port, workers)
        self.assertIn(worker, workers)
        head = self.one_head(self.backend, mark)
        rss0 = rgtest.rss_bytes(worker)
        peak = rss0
        end = time.monotonic() + STALL
        while time.monotonic() < end:          # the client reads nothing meanwhile
            peak = max(peak, rgtest.rss_bytes(worker) or 0)
            time.sleep(0.05)
        conn = head["conn"]
        progress = events(self.backend, event="flood", conn=conn)
        sent = progress[-1]["sent"] if progress else 0
        qs = self.path_queues(t.port, head["peer_port"])
        in_kernel = qs["backend"][0] + qs["lb_backend_side"][1] + qs["lb_client_side"][0] + qs["client"][1]
        held = sent - in_kernel - len(t.buf)
        done_early = events(self.backend, event="flood_done", conn=conn)
        info = ("after %.0f s of a client reading nothing: the backend had sent %.1f MiB, %.1f MiB "
                "of them in kernel queues %r, the worker held %d bytes; worker RSS %.1f -> %.1f MiB"
                % (STALL, sent / MIB, in_kernel / MIB, qs, held, rss0 / MIB, peak / MIB))
        sys.stderr.write("\n  back-pressure (down): %s\n" % info)
        # Now read everything: every byte, in order, then the end.
        total = (FLOOD // len(FLOOD_PAYLOAD)) * len(FLOOD_FRAME)
        h, want = hashlib.sha1(), hashlib.sha1()
        for _ in range(FLOOD // len(FLOOD_PAYLOAD)):
            want.update(FLOOD_FRAME)
        got = len(t.buf)
        h.update(t.buf)
        t.buf = b""
        while got < total:
            d = t.sock.recv(min(1 << 20, total - got))
            self.assertTrue(d, "EOF after %d of %d bytes" % (got, total))
            got += len(d)
            h.update(d)
        self.assertEqual(h.hexdigest(), want.hexdigest(), "the stream differs")
        self.assertTrue(wait_events(self.backend, 1, event="flood_done", conn=conn))
        # The backend closed right after its last byte: the end follows the bytes.
        rest, how, _ = t.read_to_eof(timeout=5)
        self.assertEqual((rest, how), (b"", "eof"))
        self.assertFalse(done_early, "the backend wrote all 50 MiB while the client read nothing: " + info)
        self.assertGreater(sent, 0, info)
        self.assertLessEqual(held, HELD_LIMIT, info)
        self.assertGreaterEqual(held, 0, info)
        if not lbt.SANITIZED:
            self.assertLess(peak - rss0, RSS_GROWTH_LIMIT, info)

    def test_fast_client_slow_backend(self):
        mark = "sink-%d" % time.monotonic_ns()
        workers = self.two_workers(self.lb)
        wait_ms = int(STALL * 1000)
        t = self.raw(self.lb, "/sink?wait_ms=%d&m=%s" % (wait_ms, mark), timeout=20,
                     sndbuf=65536)
        self.assert101(t, self.backend)
        worker = pid_of_connection(self.lb, t.port, workers)
        self.assertIn(worker, workers)
        head = self.one_head(self.backend, mark)
        rss0 = rgtest.rss_bytes(worker)
        block = memoryview(bytes(range(256)) * 4096)       # 1 MiB
        n = FLOOD // len(block)
        want = hashlib.sha1()
        for _ in range(n):
            want.update(block)
        state = {"sent": 0}

        def writer():
            # send() on a socket with a timeout returns what the kernel took: an exact count.
            try:
                for _ in range(n):
                    off = 0
                    while off < len(block):
                        k = t.sock.send(block[off:])
                        off += k
                        state["sent"] += k
                t.sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                state["err"] = e
        th = threading.Thread(target=writer, daemon=True)
        t0 = time.monotonic()
        th.start()
        peak = rss0
        conn = head["conn"]
        qs = None
        while time.monotonic() < t0 + STALL * 0.9:
            peak = max(peak, rgtest.rss_bytes(worker) or 0)
            time.sleep(0.05)
        if not events(self.backend, event="sink_reading", conn=conn):
            sent = state["sent"]
            qs = self.path_queues(t.port, head["peer_port"])
            if state["sent"] != sent:
                qs = None      # the writer moved meanwhile: no exact count
        th.join(30)
        self.assertFalse(th.is_alive(), "writer still blocked after 30 s")
        self.assertNotIn("err", state)
        eof = wait_events(self.backend, 1, timeout=10, event="eof", conn=conn)
        self.assertEqual([(e["total"], e["sha1"]) for e in eof], [(n * len(block), want.hexdigest())])
        self.assertIsNotNone(qs, "no still moment to count at (the backend started reading too early, "
                             "or the writer never blocked)")
        in_kernel = qs["client"][0] + qs["lb_client_side"][1] + qs["lb_backend_side"][0] + qs["backend"][1]
        held = sent - in_kernel
        info = ("while the backend read nothing: the client had sent %.1f MiB, %.1f MiB of them in "
                "kernel queues %r, the worker held %d bytes; worker RSS %.1f -> %.1f MiB"
                % (sent / MIB, in_kernel / MIB, qs, held, rss0 / MIB, peak / MIB))
        sys.stderr.write("\n  back-pressure (up): %s\n" % info)
        self.assertLess(sent, FLOOD, info)
        self.assertLessEqual(held, HELD_LIMIT, info)
        self.assertGreaterEqual(held, 0, info)
        if not lbt.SANITIZED:
            self.assertLess(peak - rss0, RSS_GROWTH_LIMIT, info)


# ---------------------------------------------------------------------------
# Metrics and the access log
# ---------------------------------------------------------------------------

def scrape(lb):
    r = rgtest.http_request(HOST, lb.port, "GET", "/metrics", timeout=5)
    assert r.status == 200, r
    return tmx.Scrape(r.body.decode())


class TunnelMetricsTests(TunnelTestCase):
    SUITE = "integration"

    def tunnel_gauges(self, lb, backends):
        s = scrape(lb)
        return ({b.address: s.get("roundguard_tunnels_active", backend=b.address) for b in backends},
                {b.address: s.get("roundguard_tunnels_total", backend=b.address) for b in backends})

    def wait_gauges(self, lb, backends, active, total, timeout=3.0):
        want = ({b.address: float(active[i]) for i, b in enumerate(backends)},
                {b.address: float(total[i]) for i, b in enumerate(backends)})
        got = rgtest.wait_until(lambda: (lambda g: g if g == want else None)(
            self.tunnel_gauges(lb, backends)), timeout=timeout)
        self.assertEqual(got or self.tunnel_gauges(lb, backends), want)

    def test_tunnels_active_and_total(self):
        backends = [ws_backend(self.addCleanup) for _ in range(3)]
        lb = start_lb(self.addCleanup, backends)
        loop = Loop(self.addCleanup)
        self.wait_gauges(lb, backends, [0, 0, 0], [0, 0, 0])

        async def open_n(n):
            out = []
            for i in range(n):
                ws = await loop.connect(lb, "/echo?tag=m%d" % i)
                await ws.send("x")
                await ws.recv()
                out.append(ws)
            return out
        # 9 tunnels over 2 workers: 3 per backend
        socks = loop.run(open_n(9))
        by = collections.defaultdict(list)
        for ws in socks:
            by[ws.response_headers.get("X-Backend-Server")].append(ws)
        self.assertEqual(sorted(len(v) for v in by.values()), [3, 3, 3])
        self.wait_gauges(lb, backends, [3, 3, 3], [3, 3, 3])

        async def close(wss):
            for ws in wss:
                await ws.close()
        # close 2 of backend 0's and 1 of backend 1's (client-initiated close)
        loop.run(close(by[backends[0].address][:2] + by[backends[1].address][:1]))
        self.wait_gauges(lb, backends, [1, 2, 3], [3, 3, 3])
        # the backend ends one (server-initiated close)

        async def server_close(ws):
            await ws.send("!close 1000 done")
            await asyncio.wait_for(ws.wait_closed(), 5)
        loop.run(server_close(by[backends[2].address][0]))
        self.wait_gauges(lb, backends, [1, 2, 2], [3, 3, 3])
        socks2 = loop.run(open_n(3))
        self.wait_gauges(lb, backends, [2, 3, 3], [4, 4, 4])
        loop.run(close([ws for ws in socks + socks2 if ws.open]))
        self.wait_gauges(lb, backends, [0, 0, 0], [4, 4, 4])

    def test_access_log_line_when_tunnel_ends(self):
        backend = raw_backend(self.addCleanup)
        lb = start_lb(self.addCleanup, [backend], access=True)
        mark = "alog-%d" % time.monotonic_ns()
        since = lb.d.stderr_mark()
        early, data = os.urandom(100), os.urandom(5000)
        t0 = time.monotonic()
        t = self.raw(lb, "/echo?m=" + mark, behind=early)
        self.assert101(t, backend)
        t.sock.sendall(data)
        self.assertEqual(t.recv_exact(len(early + data)), early + data)
        time.sleep(0.8)

        def line():
            return [o for o in rgtest.json_log_objects("\n".join(lb.d.stderr_lines()[since:]))
                    if o.get("msg") == "request" and mark in o.get("path", "")]
        self.assertEqual(line(), [], "access line written while the tunnel was open")
        t.sock.shutdown(socket.SHUT_WR)        # the backend closes at EOF: the tunnel ends
        rest, how, _ = t.read_to_eof()
        elapsed = time.monotonic() - t0
        self.assertEqual((rest, how), (b"", "eof"))
        got = rgtest.wait_until(line, timeout=3)
        self.assertEqual(len(got or []), 1, lb.d.stderr_text()[-2000:])
        o = got[0]
        self.assertEqual(str(o["status"]), "101", o)
        self.assertEqual(o["method"], "GET", o)
        self.assertEqual(o["backend"], backend.address, o)
        self.assertEqual(int(o["bytes"]), len(t.raw_head) + 4 + len(early + data), o)
        self.assertEqual(int(o["bytes_up"]), len(early + data), o)
        dur = tmx.go_duration_seconds(o["duration"])
        self.assertGreaterEqual(dur, 0.8, o)
        self.assertLessEqual(dur, elapsed + 0.1, o)


# ---------------------------------------------------------------------------
# Event streams: every event as it is sent
# ---------------------------------------------------------------------------

EVENTS_N, EVENTS_MS = 12, 250
EVENT_LATE = 0.15          # each event: well under one interval (nothing waits for the next)
EVENT_MEDIAN = 0.05        # and typically within 50 ms


class EventStreamTests(TunnelTestCase):
    SUITE = "integration"

    @classmethod
    def setUpClass(cls):
        cls.backend = lbt.py_backend(cls.addClassCleanup)
        cls.lb = start_lb(cls.addClassCleanup, [cls.backend])

    def stream(self, framing, version="HTTP/1.1"):
        """[(event dict, arrival time)], response head."""
        req = ("GET /events?n=%d&ms=%d&framing=%s %s\r\nHost: events.test\r\n"
               "Accept: text/event-stream\r\n\r\n" % (EVENTS_N, EVENTS_MS, framing, version)).encode()
        s = socket.create_connection((HOST, self.lb.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            self.assertTrue(d, "EOF before the head")
            buf += d
        head, _, buf = buf.partition(b"\r\n\r\n")
        status, hdrs = parse_head(head)
        self.assertEqual(status, 200, head)
        chunked = "chunked" in (hget(hdrs, "Transfer-Encoding") or "").lower()
        body = b""
        out = []
        done = False
        while not done:
            now = time.time()
            if chunked:
                while True:          # take every whole chunk in buf
                    i = buf.find(b"\r\n")
                    if i < 0:
                        break
                    size = int(buf[:i].split(b";")[0], 16)
                    if len(buf) < i + 2 + size + 2:
                        break
                    body += buf[i + 2:i + 2 + size]
                    buf = buf[i + 2 + size + 2:]
                    if size == 0:
                        done = True
                        break
            else:
                body += buf
                buf = b""
            while b"\n\n" in body:
                ev, _, body = body.partition(b"\n\n")
                data = [line[6:] for line in ev.split(b"\n") if line.startswith(b"data: ")]
                out.append((json.loads(data[0]), now))
            if done or len(out) >= EVENTS_N and not chunked:
                if not chunked:
                    rest = s.recv(65536)
                    self.assertEqual(rest, b"", "bytes after the last event")
                break
            d = s.recv(65536)
            if not d:
                break
            buf += d
        return out, head, hdrs

    def check(self, got, what):
        self.assertEqual([e["i"] for e, _ in got], list(range(EVENTS_N)), what)
        delays = sorted(arrived - e["t"] for e, arrived in got)
        median = delays[len(delays) // 2]
        sys.stderr.write("\n  %s: delays ms min %.1f median %.1f max %.1f\n"
                         % (what, delays[0] * 1e3, median * 1e3, delays[-1] * 1e3))
        self.assertLess(delays[-1], EVENT_LATE, "%s: an event arrived %.0f ms after it was sent "
                        "(delays %s)" % (what, delays[-1] * 1e3, [round(d * 1e3) for d in delays]))
        self.assertLess(median, EVENT_MEDIAN, what)

    def test_chunked_event_stream(self):
        got, head, hdrs = self.stream("chunked")
        self.assertEqual(hget(hdrs, "Content-Type"), "text/event-stream", head)
        self.check(got, "chunked")

    def test_close_delimited_event_stream(self):
        got, head, hdrs = self.stream("close")
        self.assertIsNone(hget(hdrs, "Content-Length"), head)
        self.check(got, "close-delimited")

    def test_chunked_event_stream_to_http10_client(self):
        got, head, hdrs = self.stream("chunked", version="HTTP/1.0")
        self.assertIsNone(hget(hdrs, "Transfer-Encoding"), head)
        self.check(got, "de-chunked for HTTP/1.0")


# ---------------------------------------------------------------------------
# Faults: reload and SIGTERM with 100 tunnels open, a backend killed under tunnels
# ---------------------------------------------------------------------------

N_TUNNELS = 100
SHUTDOWN = 3.0
SHUTDOWN_TIMEOUT_MSG = "shutdown timeout reached, closing remaining connections"


async def echo_all(wss, word):
    """Send word on every tunnel, read the echo; a list of what went wrong."""
    async def one(i, ws):
        try:
            await ws.send("%s %d" % (word, i))
            got = await asyncio.wait_for(ws.recv(), 5)
            return None if got == "%s %d" % (word, i) else (i, "got %r" % got)
        except Exception as e:  # noqa: BLE001
            return (i, repr(e))
    return [r for r in await asyncio.gather(*(one(i, ws) for i, ws in enumerate(wss))) if r]


async def wait_all_closed(wss, timeout):
    """Seconds until each tunnel ended (recv raised ConnectionClosed), None if it did not."""
    t0 = time.monotonic()

    async def one(ws):
        try:
            while True:
                await ws.recv()
        except websockets.exceptions.ConnectionClosed:
            return time.monotonic() - t0
    out = []
    for f in [asyncio.ensure_future(one(ws)) for ws in wss]:
        try:
            out.append(await asyncio.wait_for(f, max(0.01, t0 + timeout - time.monotonic())))
        except asyncio.TimeoutError:
            out.append(None)
    return out


class TunnelFaultTests(TunnelTestCase):
    SUITE = "faults"

    def open_tunnels(self, loop, lb, n, tag):
        async def go():
            async def one(i):
                ws = await loop.connect(lb, "/echo?tag=%s-%03d" % (tag, i), open_timeout=10)
                await ws.send("hi")
                await asyncio.wait_for(ws.recv(), 5)
                return ws
            out = []
            for k in range(0, n, 20):        # 20 handshakes at a time
                out += await asyncio.gather(*(one(i) for i in range(k, min(n, k + 20))))
            return out
        return loop.run(go(), timeout=60)

    def workers_of(self, lb, wss, pids):
        return collections.Counter(connection_pids(
            lb, [ws.transport.get_extra_info("sockname")[1] for ws in wss], pids).values())

    def plain_failures(self, load, before=None):
        return [(t, m, p, r) for t, m, p, r in list(load.results)
                if (before is None or t < before) and lbt.failed(r)]

    def tunnel_lines(self, lb, tag):
        return [o for o in lb.logs() if o.get("msg") == "request" and str(o.get("status")) == "101"
                and tag in o.get("path", "")]

    def test_reload_with_open_tunnels(self):
        backends = [ws_backend(self.addCleanup) for _ in range(3)]
        lb = start_lb(self.addCleanup, backends, proxy={"shutdown_timeout": "%ds" % SHUTDOWN},
                      access=True)
        loop = Loop(self.addCleanup)
        old = sorted(self.two_workers(lb))
        old_wss = self.open_tunnels(loop, lb, N_TUNNELS, "old")
        on_old = self.workers_of(lb, old_wss, old)
        self.assertEqual(sum(on_old[p] for p in old), N_TUNNELS, on_old)
        load = lbt.Load(lb, pause=0.01)
        self.addCleanup(load.finish)
        load.start()
        time.sleep(0.5)
        self.assertEqual(listener_holders(lb, old), set(old))
        mark = lb.d.stderr_mark()
        t_hup = time.monotonic()
        lb.d.send_signal(signal.SIGHUP)
        self.assertIsNotNone(rgtest.wait_json_log(lb.d, lambda o: o.get("msg") == "reloaded",
                                                  timeout=5, since=mark), self.stderr_tail(lb))
        new = sorted(rgtest.wait_until(lambda: (lambda w: w if len(w) == 2 else None)(
            [p for p in lb.workers() if p not in old]), timeout=3) or [])
        self.assertEqual(len(new), 2, {p: rgtest.cmdline(p) for p in lb.children()})
        # Once the old workers let go of their listening sockets (at once, on the
        # SIGTERM the master sends them), new upgrades go to the new workers.
        self.assertTrue(rgtest.wait_until(lambda: not listener_holders(lb, old), timeout=3),
                        "old workers still listening")
        new_wss = self.open_tunnels(loop, lb, 10, "new")
        on_new = self.workers_of(lb, new_wss, old + new)
        self.assertEqual(sum(on_new[p] for p in new), 10, "new tunnels by worker pid %r (old %r, new %r)"
                         % (on_new, old, new))
        self.assertEqual(scrape(lb).total("roundguard_tunnels_active"), N_TUNNELS + 10,
                         "tunnels active while the old generation drains")
        # The old tunnels keep working until shutdown_timeout...
        time.sleep(max(0.0, t_hup + SHUTDOWN - 1.0 - time.monotonic()))
        self.assertEqual(loop.run(echo_all(old_wss, "still")), [], "old tunnels before the timeout")
        self.assertTrue(all(rgtest.pid_alive(p) for p in old), "old workers gone before the timeout")
        # ... and are closed then.
        closed = loop.run(wait_all_closed(old_wss, t_hup + SHUTDOWN + 3.0 - time.monotonic()), 30)
        self.assertEqual([i for i, c in enumerate(closed) if c is None], [],
                         "old tunnels still open %.1f s after SIGHUP" % (SHUTDOWN + 3))
        self.assertGreaterEqual(time.monotonic() - t_hup, SHUTDOWN - 0.2)
        self.assertTrue(rgtest.wait_until(lambda: not any(rgtest.pid_alive(p) for p in old), timeout=3),
                        "old workers still alive")
        self.assertEqual(loop.run(echo_all(new_wss, "after")), [], "new tunnels after the old closed")
        self.assertEqual(rgtest.wait_until(
            lambda: (lambda s: s if s.total("roundguard_tunnels_active") == 10 else None)(scrape(lb)),
            timeout=3) and 10, 10, "tunnels active after the old generation ended: %r"
            % scrape(lb).series("roundguard_tunnels_active"))
        self.assertEqual(scrape(lb).total("roundguard_tunnels_total"), N_TUNNELS + 10)
        load.finish()
        self.assertGreater(len(load.results), 20)
        self.assertEqual(self.plain_failures(load), [], "plain requests that failed")
        warn = [o for o in lb.logs() if o.get("msg") == SHUTDOWN_TIMEOUT_MSG]
        self.assertEqual(len(warn), 2, "one line per old worker")
        self.assertEqual(sum(int(o.get("open", 0)) for o in warn), N_TUNNELS, warn)
        # Each old tunnel has its access-log line, written when it was closed.
        lines = self.tunnel_lines(lb, "tag=old-")
        self.assertEqual(len(lines), N_TUNNELS)
        self.assertEqual([o for o in lines if tmx.go_duration_seconds(o["duration"]) < SHUTDOWN - 0.5],
                         [], "tunnel lines with a duration shorter than the drain")

    def test_sigterm_with_open_tunnels(self):
        backends = [ws_backend(self.addCleanup) for _ in range(3)]
        lb = start_lb(self.addCleanup, backends, proxy={"shutdown_timeout": "%ds" % SHUTDOWN},
                      access=True)
        loop = Loop(self.addCleanup)
        wss = self.open_tunnels(loop, lb, N_TUNNELS, "term")
        load = lbt.Load(lb, pause=0.01)
        self.addCleanup(load.finish)
        load.start()
        time.sleep(0.5)
        pids = lb.d.live_pids()
        t_sig = time.monotonic()
        os.kill(lb.pid, signal.SIGTERM)
        time.sleep(1.0)
        self.assertEqual(loop.run(echo_all(wss, "during")), [], "tunnels during the shutdown")
        closed = loop.run(wait_all_closed(wss, SHUTDOWN + 3.0), 30)
        self.assertEqual([i for i, c in enumerate(closed) if c is None], [],
                         "tunnels still open %.1f s after SIGTERM" % (SHUTDOWN + 3))
        rc = lb.d.wait(5)
        elapsed = time.monotonic() - t_sig
        load.finish()
        self.assertEqual(rc, 0, self.stderr_tail(lb))
        self.assertGreaterEqual(elapsed, SHUTDOWN - 0.2)
        self.assertLess(elapsed, SHUTDOWN + 3.0)
        self.assertEqual([p for p in pids if rgtest.pid_alive(p)], [], "processes left")
        self.assertEqual(self.plain_failures(load, before=t_sig - 0.05), [],
                         "plain requests begun before SIGTERM that failed")
        after = [r for t, _, _, r in load.results if t >= t_sig and lbt.failed(r)]
        # Begun after SIGTERM: refused (the listeners are closed), or reset when
        # queued on a listener as it closed; nothing else.
        self.assertEqual([r for r in after if not isinstance(r, (ConnectionRefusedError,
                                                                   ConnectionResetError))], [],
                         "plain requests after SIGTERM")
        ended = [o for o in lb.logs() if o.get("msg") == SHUTDOWN_TIMEOUT_MSG]
        self.assertEqual(sum(int(o.get("open", 0)) for o in ended), N_TUNNELS, ended)
        self.assertEqual(len(self.tunnel_lines(lb, "tag=term-")), N_TUNNELS,
                         "access-log lines of the tunnels")

    def test_sigterm_exits_once_tunnels_end(self):
        """Tunnels that end by themselves during the shutdown do not hold it
        up to shutdown_timeout."""
        backend = raw_backend(self.addCleanup)
        lb = start_lb(self.addCleanup, [backend], proxy={"shutdown_timeout": "10s"})
        ts = [self.raw(lb, "/echo?m=early-end-%d" % i) for i in range(10)]
        t_sig = time.monotonic()
        os.kill(lb.pid, signal.SIGTERM)
        time.sleep(0.5)
        for t in ts:
            t.sock.sendall(b"abc")
            self.assertEqual(t.recv_exact(3), b"abc")
            t.sock.shutdown(socket.SHUT_WR)       # the stub closes at EOF: the tunnel ends
        for t in ts:
            self.assertEqual(t.read_to_eof(timeout=3)[:2], (b"", "eof"))
        rc = lb.d.wait(8)
        self.assertEqual(rc, 0, self.stderr_tail(lb))
        self.assertLess(time.monotonic() - t_sig, 3.0)

    def test_worker_killed_under_open_tunnels(self):
        """kill -9 of a worker: its tunnels end (the clients see EOF), the other
        worker's go on, and roundguard_tunnels_active counts only the tunnels
        that are still open."""
        backend = raw_backend(self.addCleanup)
        lb = start_lb(self.addCleanup, [backend])
        workers = self.two_workers(lb)
        ts = []
        for i in range(40):
            ts.append(self.raw(lb, "/echo?m=wkill-%d" % i))
            self.assertEqual(ts[-1].status, 101)
        holder = connection_pids(lb, [t.port for t in ts], workers)
        victim = workers[0]
        doomed = [t for t in ts if holder[t.port] == victim]
        others = [t for t in ts if holder[t.port] != victim]
        self.assertTrue(doomed and others, "tunnels by worker: %r" % collections.Counter(holder.values()))
        self.assertEqual(scrape(lb).total("roundguard_tunnels_active"), len(ts))
        self.killed_workers = True
        os.kill(victim, signal.SIGKILL)
        lb.d.refresh_pids()
        for t in doomed:
            rest, how, took = t.read_to_eof(timeout=3)
            self.assertIn(how, ("eof", "reset"), "a tunnel of the killed worker stayed open")
        for t in others:
            t.sock.sendall(b"still there")
            self.assertEqual(t.recv_exact(11), b"still there")
        self.assertTrue(rgtest.wait_until(lambda: len([p for p in lb.workers() if p != victim]) == 2, 5),
                        "worker not respawned")
        # A worker that died cannot count the ends of its tunnels itself.
        active = rgtest.wait_until(lambda: (lambda n: n if n == len(others) else None)(
            scrape(lb).total("roundguard_tunnels_active")), timeout=3)
        self.assertEqual(active, len(others),
                         "roundguard_tunnels_active with %d tunnels open after %d died with "
                         "their worker: %r" % (len(others), len(doomed),
                                               scrape(lb).series("roundguard_tunnels_active")))
        for t in others:
            t.close()
        self.assertEqual(rgtest.wait_until(lambda: scrape(lb).total("roundguard_tunnels_active") == 0,
                                           timeout=3), True,
                         "roundguard_tunnels_active after every tunnel ended: %r"
                         % scrape(lb).series("roundguard_tunnels_active"))
        self.assertEqual(scrape(lb).total("roundguard_tunnels_total"), len(ts))

    def test_backend_killed_under_open_tunnels(self):
        backends = [ws_backend(self.addCleanup) for _ in range(3)]
        lb = start_lb(self.addCleanup, backends, health=FAST)
        loop = Loop(self.addCleanup)
        wss = self.open_tunnels(loop, lb, 30, "kill")
        by = collections.defaultdict(list)
        for ws in wss:
            by[ws.response_headers.get("X-Backend-Server")].append(ws)
        self.assertEqual(sorted(len(v) for v in by.values()), [10, 10, 10])
        load = lbt.Load(lb, pause=0.005)
        self.addCleanup(load.finish)
        load.start()
        time.sleep(0.5)
        victim = backends[0]
        doomed = by[victim.address]
        others = [ws for b in backends[1:] for ws in by[b.address]]
        victim.kill()
        closed = loop.run(wait_all_closed(doomed, 5.0), 30)
        self.assertEqual([c for c in closed if c is None or c > 1.5], [],
                         "seconds until each tunnel to the killed backend closed: %r" % closed)
        self.assertEqual(loop.run(echo_all(others, "alive")), [], "tunnels to the other backends")
        time.sleep(1.0)
        self.assertEqual(loop.run(echo_all(others, "still")), [], "tunnels to the other backends")
        load.finish()
        self.assertGreater(len(load.results), 50)
        self.assertEqual(self.plain_failures(load), [], "plain requests that failed")
        s = scrape(lb)
        self.assertEqual(s.get("roundguard_tunnels_active", backend=victim.address), 0.0)
        self.assertEqual(s.get("roundguard_tunnels_active", backend=backends[1].address), 10.0)


# ---------------------------------------------------------------------------

def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t


def suite_of(name):
    loader = unittest.TestLoader()
    s = unittest.TestSuite()
    for obj in list(globals().values()):
        if isinstance(obj, type) and issubclass(obj, TunnelTestCase) and obj.SUITE == name:
            s.addTests(loader.loadTestsFromTestCase(obj))
    return s


if __name__ == "__main__":
    if STUB:
        try:
            port = int(sys.argv[2])
            sys.exit(ws_backend_main(port) if sys.argv[1] == "--ws-backend" else raw_backend_main(port))
        except KeyboardInterrupt:
            pass
    if "--suite" in sys.argv:
        i = sys.argv.index("--suite")
        name = sys.argv[i + 1]
        del sys.argv[i:i + 2]
        # Other arguments: parts of test ids to keep (TestClass, test_name); -v is the default.
        keep = [a for a in sys.argv[1:] if not a.startswith("-")]
        tests = [t for t in _flatten(suite_of(name)) if not keep or any(k in t.id() for k in keep)]
        res = unittest.TextTestRunner(verbosity=2).run(unittest.TestSuite(tests))
        sys.exit(0 if res.wasSuccessful() else 1)
    unittest.main()

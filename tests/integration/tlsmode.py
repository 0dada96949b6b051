"""TLS mode for the abuse and conformance suites (issue 14: "the smuggling and limits
suites also pass over TLS").

With ROUNDGUARD_TEST_TLS=1 in the environment, or --tls on the command line of
test_abuse.py / test_conformance.py (take_flag() removes it before unittest sees the
arguments), every roundguardd those suites start with this module's LB gets a second
listener with TLS beside its plain one, and every client connection of the suites goes
over TLS to it:

  * LB.port is the TLS listener's port (LB.plain_port the plain one, which the harness
    only uses to see that the daemon started); LB.request(), LB.attempt() and LB.raw()
    use http.client.HTTPSConnection and rgtest.RawHTTP(tls=...);
  * connect(port) is how the suites open raw connections: on a TLS listener's port it
    returns a TLSStream, a socket look-alike over ssl.SSLObject that the suites' raw
    helpers (exchange, drip, converse, the idle and descriptor tests) use as they use a
    plain socket: sendall/send/recv/settimeout/setblocking/fileno, recv() giving b"" at
    the end (close_notify, or EOF without it) and raising BlockingIOError on a
    non-blocking socket with no application data (records like TLS 1.3 session tickets
    are consumed on the way), shutdown(SHUT_WR) sending close_notify and then the TCP
    FIN (a half-close at both layers; RFC 8446 6.1: close_notify closes the sender's
    write side only).

The certificate (a throw-away CA from tlscerts.py and a leaf for localhost and
127.0.0.1) is made the first time an LB is set up (setUpClass), in a temporary
directory removed when the process exits. Clients verify it: SNI "localhost" on raw
connections, the address on http.client's.

Without the mode nothing changes: LB is test_lb.LB, connect() is
socket.create_connection().
"""

import atexit
import http.client
import os
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rgtest  # noqa: E402
import test_lb as lbt  # noqa: E402
import tlscerts  # noqa: E402

HOST = rgtest.DEFAULT_HOST
ENV = "ROUNDGUARD_TEST_TLS"
FLAG = "--tls"
SNI = "localhost"

_forced = False


def take_flag(argv):
    """Remove --tls from argv (sys.argv, before unittest.main()) and turn the mode on."""
    global _forced
    if FLAG in argv[1:]:
        argv[:] = [argv[0]] + [a for a in argv[1:] if a != FLAG]
        _forced = True


def enabled():
    return _forced or os.environ.get(ENV, "") not in ("", "0")


def label():
    return "over TLS" if enabled() else "plain"


def announce():
    """One stderr line saying which mode runs (setUpModule)."""
    if enabled():
        if shutil.which("openssl") is None:
            raise RuntimeError("TLS mode: the openssl command makes the certificates "
                               "(scripts/deps test)")
        sys.stderr.write("[tls] every client connection goes over TLS (%s=1 or %s) to an extra "
                         "TLS listener of each roundguardd\n" % (ENV, FLAG))


# ---------------------------------------------------------------------------
# Certificates and client contexts
# ---------------------------------------------------------------------------

_lock = threading.RLock()
_material = {}


def certificates():
    """(ca_cert, leaf_chain, leaf_key), made once per process."""
    with _lock:
        if not _material:
            d = tempfile.mkdtemp(prefix="rg-tlsmode-")
            atexit.register(shutil.rmtree, d, True)
            ca = tlscerts.CA(os.path.join(d, "ca"), name="Roundguard TLS-mode test CA")
            chain, key = ca.issue("server", [SNI, HOST], "ec")
            _material.update(ca=ca.cert, chain=chain, key=key)
        return _material["ca"], _material["chain"], _material["key"]


def client_context():
    """A client context that verifies the test CA (and the name or address)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(certificates()[0])
    return ctx


_ctx = None


def shared_context():
    global _ctx
    with _lock:
        if _ctx is None:
            _ctx = client_context()
        return _ctx


# Ports of TLS listeners started in this mode: connect() speaks TLS to these only.
_tls_ports = set()


def is_tls_port(port):
    return port in _tls_ports


# ---------------------------------------------------------------------------
# A socket look-alike over TLS
# ---------------------------------------------------------------------------

class TLSStream:
    """A client TLS connection over a connected TCP socket, driven by hand
    (ssl.SSLObject and memory BIOs), so that a half-close, non-blocking reads
    and byte-at-a-time writes behave as the plain-socket code expects."""

    def __init__(self, raw, ctx=None, server_hostname=SNI, handshake=True):
        self.raw = raw
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = (ctx or shared_context()).wrap_bio(self._in, self._out,
                                                      server_side=False,
                                                      server_hostname=server_hostname)
        self.eof = False             # the TCP stream ended
        self.ragged_eof = False      # ... without a close_notify
        self.close_notify = False    # the peer's close_notify came
        self.sent_close_notify = False
        self.handshaken = False
        self._early = b""            # application data read while waiting for tickets
        if handshake:
            self.do_handshake()

    # -- plumbing ----------------------------------------------------------

    def _flush(self):
        """Write what OpenSSL produced to the socket (blocking for at most the
        socket's timeout, or 5 s on a non-blocking one: a few bytes each time)."""
        data = self._out.read()
        if not data:
            return
        t = self.raw.gettimeout()
        if t == 0.0:
            self.raw.settimeout(5.0)
        try:
            self.raw.sendall(data)
        finally:
            if t == 0.0:
                self.raw.settimeout(t)

    def _feed(self):
        """One recv from the socket into OpenSSL (raises what recv raises)."""
        data = self.raw.recv(65536)
        if data:
            self._in.write(data)
        else:
            self.eof = True
            self._in.write_eof()

    def do_handshake(self):
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                if self.eof:
                    raise ConnectionResetError("TLS handshake: the server closed the connection")
                self._feed()
        self._flush()
        self.handshaken = True
        self._await_ticket()

    def _await_ticket(self, limit=2.0):
        """TLS 1.3: wait (at most limit seconds) for the server's session
        ticket, which it sends once it has taken the client's Finished (OpenSSL
        sends two, back to back; they came in one read every time looked at).
        The server is then done with the handshake and waits for the request,
        as a plain connection's server does. Without this the bytes a test sends
        "in one write" race with the end of the handshake on the server, which
        reads at once whatever came behind it: a request that the plain suites
        see in one read would arrive in pieces more often. It also keeps the
        tickets from showing up later as a readable socket without data."""
        if self.obj.version() != "TLSv1.3" or self.raw.gettimeout() == 0.0:
            return
        before = self.raw.gettimeout()
        deadline = time.monotonic() + limit
        try:
            while True:
                got = self._read_available(65536)      # takes the records fed so far
                self._flush()
                if got is None or got or self.eof:
                    self._early += got or b""
                    return       # data or the end before a ticket: recv() tells
                sess = self.obj.session
                if sess is not None and sess.has_ticket:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.raw.settimeout(left)
                try:
                    self._feed()
                except socket.timeout:
                    return
        finally:
            self.raw.settimeout(before)

    # -- the socket interface the suites use -------------------------------

    def fileno(self):
        return self.raw.fileno()

    def settimeout(self, t):
        self.raw.settimeout(t)

    def gettimeout(self):
        return self.raw.gettimeout()

    def setblocking(self, flag):
        self.raw.setblocking(flag)

    def setsockopt(self, *args):
        self.raw.setsockopt(*args)

    def getsockname(self):
        return self.raw.getsockname()

    def sendall(self, data):
        """All of data in records, then the records in one write: a test that
        sends "every byte in one write" (so that roundguardd reads it all at
        once) must not become a write per 16 KiB record over TLS."""
        if not self.handshaken:
            self.do_handshake()
        view = memoryview(data)
        while len(view):
            view = view[self.obj.write(view):]
        self._flush()

    def send(self, data):
        self.sendall(data)
        return len(data)

    def _read_available(self, n):
        """Application data OpenSSL already holds (up to n bytes): b"" when it
        has none; None at the end (close_notify or EOF)."""
        out = b""
        while len(out) < n:
            try:
                d = self.obj.read(n - len(out))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                return out or None
            except ssl.SSLEOFError:
                self.ragged_eof = True
                return out or None
            if not d:
                # read() gives b"" after a close_notify.
                self.close_notify = True
                return out or None
            out += d
        return out

    def recv(self, n):
        """Like socket.recv: data, b"" at the end, socket.timeout, BlockingIOError
        (non-blocking, no application data), ConnectionResetError."""
        if not self.handshaken:
            self.do_handshake()
        if self._early:
            got, self._early = self._early[:n], self._early[n:]
            return got
        while True:
            got = self._read_available(n)
            self._flush()        # a key update, an alert
            if got is None:
                return b""
            if got:
                return got
            if self.eof:
                self.ragged_eof = True
                return b""
            self._feed()

    def pending(self):
        return self.obj.pending()

    def shutdown(self, how):
        """SHUT_WR (or SHUT_RDWR): close_notify, then the TCP FIN; reading goes on."""
        if how in (socket.SHUT_WR, socket.SHUT_RDWR) and self.handshaken \
                and not self.sent_close_notify:
            self.sent_close_notify = True
            try:
                self.obj.unwrap()
            except ssl.SSLWantReadError:
                pass          # sent; the peer's close_notify is read by recv()
            self._flush()
        self.raw.shutdown(how)

    def close(self):
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect(port, timeout=5, handshake=True, host=HOST):
    """A new client connection to port: a TLSStream on a TLS listener of this
    mode (handshake=False leaves the handshake to the first send or recv), else
    a plain socket."""
    raw = socket.create_connection((host, port), timeout=timeout)
    if not is_tls_port(port):
        return raw
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return TLSStream(raw, handshake=handshake)
    except BaseException:
        raw.close()
        raise


# ---------------------------------------------------------------------------
# HTTP clients
# ---------------------------------------------------------------------------

def http_request(host, port, method, path, body=None, headers=None, timeout=5.0):
    """rgtest.http_request over TLS on a TLS port of this mode."""
    if not is_tls_port(port):
        return rgtest.http_request(host, port, method, path, body, headers, timeout=timeout)
    conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=shared_context())
    try:
        return rgtest.conn_request(conn, method, path, body, headers)
    finally:
        conn.close()


def attempt(host, port, method, path, body=None, headers=None, timeout=5.0):
    """test_lb.attempt(), over TLS on a TLS port of this mode."""
    try:
        return http_request(host, port, method, path, body, headers, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:
        return e


# ---------------------------------------------------------------------------
# The load balancer
# ---------------------------------------------------------------------------

class LB(lbt.LB):
    """test_lb.LB; in TLS mode with a TLS listener beside the plain one (which
    -l/-p move), and port, request(), attempt() and raw() going to it."""

    def __init__(self, cleanup, config=None, backends=(), workers=2, env=None, args=(),
                 hosts_flag="--backend"):
        self.tls_port = None
        if enabled():
            if not isinstance(config, dict):
                raise ValueError("TLS mode needs the configuration as a dict")
            if "listeners" in config or "listen" in config:
                raise ValueError("TLS mode adds the listeners itself")
            _, chain, key = certificates()
            self.tls_port = rgtest.free_port()
            config = dict(config)
            config["listeners"] = [
                {"listen": "127.0.0.1:1", "name": "plain"},
                {"listen": "%s:%d" % (HOST, self.tls_port), "name": "https",
                 "tls": {"certificates": [{"cert": chain, "key": key}]}}]
            _tls_ports.add(self.tls_port)
        super().__init__(cleanup, config, backends, workers, env, args, hosts_flag)

    @property
    def plain_port(self):
        return self.d.port

    @property
    def port(self):
        return self.tls_port if self.tls_port is not None else self.d.port

    def request(self, method, path, body=None, headers=None, timeout=5.0):
        return http_request(self.host, self.port, method, path, body, headers, timeout=timeout)

    def attempt(self, method, path, body=None, headers=None, timeout=5.0):
        return attempt(self.host, self.port, method, path, body, headers, timeout)

    def raw(self, timeout=5.0):
        if self.tls_port is None:
            return super().raw(timeout)
        return rgtest.RawHTTP(self.host, self.port, timeout=timeout, tls=shared_context(),
                              server_hostname=SNI)

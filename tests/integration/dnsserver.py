#!/usr/bin/env python3
"""A small authoritative DNS server for the integration tests (standard library only).

    srv = DNSServer().start(); self.addCleanup(srv.stop)    # 127.0.0.1, a free port, UDP+TCP
    srv.set_a("web.test", ["127.0.0.2"], ttl=2); srv.set_srv("_h._tcp.web.test", [(10, 60, 80, "web.test")])
    srv.set_mode("web.test", "servfail")      # or "nxdomain", "refused", "drop", None
    assert srv.wait_for_query("web.test", "A")

Names are case-insensitive, trailing dot optional. No record at all: NXDOMAIN; records, but
none of the asked type: NOERROR without answers (NODATA). UDP answers are capped at `udp_limit`
(512: classic DNS, no EDNS); past it the additional section goes, then the answers with TC set,
so a client has to retry over TCP.
"""
import socket
import struct
import threading
import time

TYPES = {"A": 1, "AAAA": 28, "SRV": 33}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {None: 0, "servfail": 2, "nxdomain": 3, "refused": 5, "drop": None}


def _norm(name):
    return name.lower().rstrip(".")


def _qtype(qtype):
    """"A"/"AAAA"/"SRV" or a number -> the number (None stays None)."""
    return TYPES[qtype.upper()] if isinstance(qtype, str) else qtype


def encode_name(name):
    """Uncompressed wire form of a dotted name, case kept ("" or "." is the root)."""
    return b"".join(bytes([len(l)]) + l for l in (x.encode("ascii") for x in name.split(".") if x)) + b"\0"


class DNSServer:
    """Authoritative server, UDP and TCP on one port, each loop in a daemon thread."""

    def __init__(self, host="127.0.0.1", port=0):
        self.host, self.port, self.udp_limit = host, port, 512
        self.queries = []            # (time.monotonic(), name, "A"/"AAAA"/"SRV"/int)
        self._records = {}           # name -> {qtype: [(ttl, rdata, SRV target or None)]}
        self._modes = {}             # (name, qtype or None) -> mode (absent: None)
        self._cond = threading.Condition()   # guards all three; wakes wait_for_query
        self._stopping = threading.Event()
        self._threads, self._socks = [], []

    @property
    def address(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    def _set(self, name, qtype, entries):
        with self._cond:
            recs = {t: e for t, e in self._records.pop(_norm(name), {}).items() if t != qtype}
            recs.update({qtype: entries} if entries else {})
            if recs:                 # no type left: the name no longer exists (NXDOMAIN)
                self._records[_norm(name)] = recs

    def set_a(self, name, addrs, ttl=5):
        """IPv4 addresses (strings) for name; an empty list removes them."""
        self._set(name, 1, [(ttl, socket.inet_pton(socket.AF_INET, a), None) for a in addrs])

    def set_aaaa(self, name, addrs, ttl=5):
        """IPv6 addresses (strings) for name; an empty list removes them."""
        self._set(name, 28, [(ttl, socket.inet_pton(socket.AF_INET6, a), None) for a in addrs])

    def set_srv(self, name, records, ttl=5):
        """[(priority, weight, port, target), ...] for name; an empty list removes them."""
        self._set(name, 33, [(ttl, struct.pack(">HHH", p, w, port) + encode_name(t), _norm(t))
                             for p, w, port, t in records])

    def set_mode(self, name, mode, qtype=None):
        """None (answer), "servfail", "nxdomain", "refused" or "drop" (never answer); with
        qtype ("A", "AAAA", "SRV"), for queries of that type only."""
        if mode not in RCODES:
            raise ValueError("unknown mode %r" % (mode,))
        with self._cond:
            self._modes[(_norm(name), _qtype(qtype))] = mode

    def count(self, name, qtype=None, since=None):
        """How many queries for name (and qtype, if given) arrived at or after `since`."""
        name, qtype = _norm(name), _qtype(qtype)
        with self._cond:
            return sum(1 for t, n, q in self.queries if n == name
                       and (qtype is None or _qtype(q) == qtype) and (since is None or t >= since))

    def wait_for_query(self, name, qtype=None, since=None, timeout=5):
        """True once count(name, qtype, since) > 0, False after timeout seconds."""
        with self._cond:
            return self._cond.wait_for(lambda: self.count(name, qtype, since) > 0, timeout)

    def start(self):
        """Binds UDP and TCP to one port (port 0: retried until TCP can have UDP's port)."""
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(50):
            udp, tcp = socket.socket(fam, socket.SOCK_DGRAM), socket.socket(fam, socket.SOCK_STREAM)
            try:
                udp.bind((self.host, self.port))
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind((self.host, udp.getsockname()[1]))
                break
            except OSError:
                udp.close(), tcp.close()
                if self.port:
                    raise
        else:
            raise OSError("no port free for both UDP and TCP")
        tcp.listen(16)
        self.port = udp.getsockname()[1]
        # The loops poll with a short timeout: close() does not wake a thread blocked on a socket.
        for s, loop in ((udp, self._udp_loop), (tcp, self._tcp_loop)):
            s.settimeout(0.1)
            self._socks.append(s)
            self._spawn(loop, s)
        return self

    def stop(self):
        """Stops the loops, joins their threads, closes the sockets. Safe to call twice."""
        self._stopping.set()
        for t in self._threads[:2]:  # the UDP and accept loops poll, so they see it within 0.1 s
            t.join(5)
        for s in self._socks[2:]:    # connection threads block in recv: shutdown() wakes them
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:          # already closed
                pass
        for t in self._threads:
            t.join(5)
        for s in self._socks:
            s.close()

    def _spawn(self, fn, *args):
        self._threads.append(threading.Thread(target=fn, args=args, daemon=True, name="dnsserver"))
        self._threads[-1].start()

    def _udp_loop(self, sock):
        while not self._stopping.is_set():
            try:
                msg, peer = sock.recvfrom(65535)
                resp = self._respond(msg, self.udp_limit)
                if resp:
                    sock.sendto(resp, peer)
            except OSError:          # the poll timeout, or an ICMP error left by a gone client
                pass

    def _tcp_loop(self, sock):
        while not self._stopping.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:          # the poll timeout
                continue
            self._socks.append(conn)
            self._spawn(self._tcp_conn, conn)

    def _tcp_conn(self, conn):
        """Serves length-prefixed queries until the client closes (it may send several)."""
        with conn:
            try:
                while True:
                    head = conn.recv(2, socket.MSG_WAITALL)
                    msg = conn.recv(struct.unpack(">H", head)[0], socket.MSG_WAITALL) if len(head) == 2 else b""
                    if not msg:
                        return
                    resp = self._respond(msg, None)
                    if resp:
                        conn.sendall(struct.pack(">H", len(resp)) + resp)
            except OSError:
                pass

    def _respond(self, msg, limit):
        """The response to one query message, or None to send nothing (malformed, or "drop")."""
        try:
            qid, flags, qdcount = struct.unpack(">HHH", msg[:6])
            if flags & 0xF800 or qdcount != 1:       # a response, or not a standard QUERY
                return None
            pos, labels = 12, []
            while msg[pos]:
                if msg[pos] & 0xC0 or pos + 1 + msg[pos] > len(msg):  # no pointers in a question
                    return None
                labels.append(msg[pos + 1:pos + 1 + msg[pos]].decode("ascii"))
                pos += 1 + msg[pos]
            qtype, qclass = struct.unpack(">HH", msg[pos + 1:pos + 5])
        except (IndexError, struct.error, UnicodeDecodeError):
            return None
        name, question = ".".join(labels).lower(), msg[12:pos + 5]
        with self._cond:
            self.queries.append((time.monotonic(), name, TYPE_NAMES.get(qtype, qtype)))
            self._cond.notify_all()
            mode = self._modes.get((name, qtype), self._modes.get((name, None)))
            recs = self._records.get(name, {})
            rcode = RCODES[mode] if mode or recs else 3
            rcode = 5 if qclass != 1 and rcode == 0 else rcode      # only class IN is served
            answers = recs.get(qtype, []) if rcode == 0 else []
            extra = [(encode_name(target), t, ttl, rd)              # glue: each SRV target once
                     for target in dict.fromkeys(x for _, _, x in answers if x) for t in (1, 28)
                     for ttl, rd, _ in self._records.get(target, {}).get(t, [])]
        if rcode is None:
            return None
        rr = lambda owner, t, ttl, rd: owner + struct.pack(">HHIH", t, 1, ttl, len(rd)) + rd
        # Owner names point at the question name (offset 12) so clients' decompression is used.
        an = b"".join(rr(b"\xc0\x0c", qtype, ttl, rd) for ttl, rd, _ in answers)
        ar = b"".join(rr(*e) for e in extra)
        flags = 0x8400 | (flags & 0x0100) | rcode               # QR, AA, RD copied, RA=0
        if limit and 12 + len(question) + len(an) + len(ar) > limit:
            extra, ar = [], b""                                   # additional data goes first
            if 12 + len(question) + len(an) > limit:
                answers, an, flags = [], b"", flags | 0x0200      # then the answers, with TC
        return struct.pack(">6H", qid, flags, 1, len(answers), 0, len(extra)) + question + an + ar


if __name__ == "__main__":
    import random

    def read_name(msg, pos):
        """(dotted name, offset after it), following compression pointers."""
        labels, end = [], None
        while msg[pos]:
            if msg[pos] & 0xC0:
                end, pos = end or pos + 2, struct.unpack(">H", msg[pos:pos + 2])[0] & 0x3FFF
            else:
                labels.append(msg[pos + 1:pos + 1 + msg[pos]].decode())
                pos += 1 + msg[pos]
        return ".".join(labels), end or pos + 1

    def ask(srv, name, qtype, tcp=False, rd=True):
        """One query; checks the header; (rcode, TC bit, [(section, owner, type, ttl, value)])."""
        qid = random.randrange(65536)
        q = struct.pack(">6H", qid, rd << 8, 1, 0, 0, 0) + encode_name(name) + struct.pack(">HH", TYPES[qtype], 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            s.connect((srv.host, srv.port))
            s.sendall(struct.pack(">H", len(q)) + q if tcp else q)
            n = struct.unpack(">H", s.recv(2, socket.MSG_WAITALL))[0] if tcp else 65535
            msg = s.recv(n, socket.MSG_WAITALL if tcp else 0)
        rid, flags, qd, an, ns, ar = struct.unpack(">6H", msg[:12])
        # QR=1, opcode 0, AA=1, RD as asked, RA=0, Z=0; the question echoed verbatim.
        assert (rid, flags & 0xFDF0, qd, ns, msg[12:len(q)]) == (qid, 0x8400 | rd << 8, 1, 0, q[12:])
        pos, rrs = len(q), []
        for i in range(an + ar):
            owner, pos = read_name(msg, pos)
            t, cls, ttl, ln = struct.unpack(">HHIH", msg[pos:pos + 10])
            data, pos = msg[pos + 10:pos + 10 + ln], pos + 10 + ln
            val = (struct.unpack(">HHH", data[:6]) + (read_name(msg, pos - ln + 6)[0],) if t == 33 else
                   socket.inet_ntop(socket.AF_INET if t == 1 else socket.AF_INET6, data))
            assert cls == 1
            rrs.append(("an" if i < an else "ar", owner, TYPE_NAMES[t], ttl, val))
        return flags & 0xF, flags & 0x0200, rrs

    srv, t0 = DNSServer().start(), time.monotonic()
    assert srv.port and srv.address == "127.0.0.1:%d" % srv.port
    srv.set_a("Web.Example.", ["10.0.0.1", "10.0.0.2"], ttl=7)
    srv.set_aaaa("web.example", ["2001:db8::1"], ttl=9)
    srv.set_srv("_http._tcp.example", [(10, 60, 8080, "web.example."), (20, 40, 8081, "other.example")], ttl=11)
    web6 = ("web.example", "AAAA", 9, "2001:db8::1")
    for tcp in (False, True):
        assert ask(srv, "WEB.example.", "A", tcp) == (0, 0, [
            ("an", "WEB.example", "A", 7, "10.0.0.1"), ("an", "WEB.example", "A", 7, "10.0.0.2")])
        assert ask(srv, "web.example", "AAAA", tcp, rd=False) == (0, 0, [("an",) + web6])
        assert ask(srv, "_http._tcp.example", "SRV", tcp) == (0, 0, [
            ("an", "_http._tcp.example", "SRV", 11, (10, 60, 8080, "web.example")),
            ("an", "_http._tcp.example", "SRV", 11, (20, 40, 8081, "other.example")),
            ("ar", "web.example", "A", 7, "10.0.0.1"), ("ar", "web.example", "A", 7, "10.0.0.2"), ("ar",) + web6])
        assert ask(srv, "web.example", "SRV", tcp) == (0, 0, [])          # NODATA
        assert ask(srv, "nope.example", "A", tcp) == (3, 0, [])
        for mode, rcode in (("servfail", 2), ("nxdomain", 3), ("refused", 5)):
            srv.set_mode("web.example", mode)
            assert ask(srv, "web.example", "A", tcp) == (rcode, 0, [])
        srv.set_mode("web.example", "drop")
        try:
            raise AssertionError("drop mode answered: %r" % (ask(srv, "web.example", "A", tcp),))
        except socket.timeout:
            srv.set_mode("web.example", None)
    # Garbage is ignored and both loops keep serving.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"\x12", (srv.host, srv.port)), s.sendto(b"\0" * 12 + b"\xc0", (srv.host, srv.port))
    with socket.create_connection((srv.host, srv.port)) as s:
        s.sendall(b"\x00\x05\x01\x02\x03\x04\x05")
    assert ask(srv, "web.example", "A")[2][0][4] == ask(srv, "web.example", "A", True)[2][0][4] == "10.0.0.1"
    # Too many answers for 512 bytes: TC over UDP, all of them over TCP.
    srv.set_a("many.example", ["10.1.0.%d" % i for i in range(40)])
    assert ask(srv, "many.example", "A") == (0, 0x0200, [])
    assert len(ask(srv, "many.example", "A", True)[2]) == 40
    srv.set_a("web.example", [])
    assert ask(srv, "web.example", "A") == (0, 0, [])                     # the AAAA is left: NODATA
    srv.set_aaaa("web.example", [])
    assert ask(srv, "web.example", "A")[0] == 3                           # nothing left: NXDOMAIN
    assert srv.count("web.example", since=t0) == srv.count("WEB.EXAMPLE.") == 18
    assert srv.count("_http._tcp.example", "SRV") == 2 and srv.count("web.example", 33) == 2
    assert srv.wait_for_query("many.example", "A", since=t0)
    assert not srv.wait_for_query("many.example", "A", since=time.monotonic(), timeout=0.2)
    srv.stop(), srv.stop()
    print("dnsserver self-test OK")

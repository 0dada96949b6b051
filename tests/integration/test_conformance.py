#!/usr/bin/env python3
"""RFC 9112 conformance of what roundguardd forwards, byte for byte (suite `abuse`).

Run:
  ROUNDGUARD_D=build/src/roundguardd ROUNDGUARD_ECHO=build/src/roundguard-echo \\
      python3 tests/integration/test_conformance.py -v

Every case sends raw bytes and checks, all at once (a failure lists every
problem of the case with the bytes sent, the bytes that came back and what
reached the backend):
  - the client's answer: the status; for an error made by roundguardd its
    JSON {"title", "description"} body; for a forwarded request the backend's
    200 (X-Backend-Server set);
  - what reached the backend, as testbackend.py logged it raw: the request
    head exactly (request line, Host, X-Forwarded-*, no dropped field) and
    the body exactly as framed on the wire ("raw_body": chunk sizes in
    lower-case hex without leading zeros, no chunk extensions, no trailer
    fields, "0\\r\\n\\r\\n" at the end);
  - framing afterwards: a forwarded case is followed on the same client
    connection (pipelined) by a normal "GET /headers?id=<tag>", which must be
    answered 200 and reach the backend as exactly that head, as a separate
    request, on the same backend connection (one worker, pooled keep-alive
    connections; testbackend.py runs with TESTBACKEND_CONN_IDS=1 so that
    every line names its connection), with no "malformed", "truncated" or
    "leftover" event; a refused case may forward nothing of the pipelined
    request either;
  - the daemon unharmed (test_abuse.py's alive_problems()).

The helpers (exchange, check_case, error_json_problems, backend records) are
test_abuse.py's; the daemons are started with tlsmode.py's LB class (test_lb.py's).

Over TLS: ROUNDGUARD_TEST_TLS=1, or --tls on the command line (meson test
conformance-tls), gives every roundguardd an extra TLS listener and sends every
client connection to it over TLS (tlsmode.py); the backend must then get
"X-Forwarded-Proto: https" where it gets "http" otherwise.

Cases marked expectedFailure are deviations from RFC 9112 found while writing
this file (see their docstrings); they pass ("unexpected success", which fails
the run) once roundguardd is changed, and must then lose the mark.
"""

import json
import os
import re
import socket
import sys
import time
import unittest
import uuid

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rgtest  # noqa: E402
import test_abuse as ab  # noqa: E402
import test_lb as lbt  # noqa: E402
import testbackend as tb  # noqa: E402
import tlsmode  # noqa: E402

HOST = ab.HOST
CALM = lbt.CALM


def setUpModule():
    ab.setUpModule()


# ---------------------------------------------------------------------------
# Requests and what the backend must get
# ---------------------------------------------------------------------------

def tag():
    return uuid.uuid4().hex


def follow_up(t):
    """The normal request sent after a case on the same connection."""
    return b"GET /headers?id=%s HTTP/1.1\r\nHost: x\r\n\r\n" % t.encode()


def chunked_post(body, target=b"/headers?id=chunked", extra=()):
    return ab.req([b"POST " + target + b" HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked"]
                  + list(extra), body)


def fwd(line, fields=("Host: x",), xfh="x"):
    """The record of a request head as the backend must receive it: the
    request line, the client's fields that go on, then the X-Forwarded-*
    fields roundguardd adds."""
    proto = "https" if tlsmode.enabled() else "http"
    lines = [line] + list(fields) + ["X-Forwarded-For: %s" % HOST, "X-Forwarded-Proto: " + proto]
    if xfh is not None:
        lines.append("X-Forwarded-Host: " + xfh)
    return {"raw_head": "\r\n".join(lines)}


def body(raw):
    """The record of a request body the backend must read whole, framing included."""
    return {"event": "body", "raw_body": raw.decode("latin-1") if isinstance(raw, bytes) else raw}


def project(o):
    """What of a backend record is compared: the raw head of a request, the
    kind and raw bytes of an event."""
    if o.get("event") is None:
        return {"raw_head": o.get("raw_head")}
    p = {"event": o["event"]}
    for k in ("raw_body", "bytes"):
        if k in o:
            p[k] = o[k]
    return p


def fmt_expected(recs):
    return "\n    ".join(json.dumps(o) for o in recs) if recs else "(nothing)"


# ---------------------------------------------------------------------------
# Responses, chunked ones included, with their framing as received
# ---------------------------------------------------------------------------

class Msg:
    """One response parsed out of the received bytes: resp (rgtest.Response,
    body de-chunked), head (bytes, up to and with the empty line), framing
    (the body bytes exactly as received) and complete."""

    def __init__(self, resp, head, framing, complete):
        self.resp, self.head, self.framing, self.complete = resp, head, framing, complete


def _chunked_end(raw, p):
    """(end offset, data) of a chunked body starting at raw[p:], read strictly
    (sizes in hex, CRLF only), or (None, data so far) when incomplete or broken."""
    data = b""
    while True:
        eol = raw.find(b"\r\n", p)
        if eol < 0:
            return None, data
        size_text = raw[p:eol].split(b";")[0]
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            return None, data
        size = int(size_text, 16)
        p = eol + 2
        if size == 0:
            while True:           # trailer fields, then the empty line
                eol = raw.find(b"\r\n", p)
                if eol < 0:
                    return None, data
                line, p = raw[p:eol], eol + 2
                if not line:
                    return p, data
        if len(raw) < p + size + 2:
            return None, data + raw[p:p + size]
        data += raw[p:p + size]
        if raw[p + size:p + size + 2] != b"\r\n":
            return None, data
        p += size + 2


def parse_messages(raw, closed=False, bodiless=()):
    """The responses in raw, one after the other (Msg list). bodiless: the
    indexes of answers to HEAD requests."""
    out, pos = [], 0
    while pos < len(raw):
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            out.append(Msg(None, raw[pos:], b"", False))
            break
        head = raw[pos:end + 4]
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            out.append(Msg(None, raw[pos:], b"", False))
            break
        headers = [(n.strip(), v.strip()) for n, _, v in (ln.partition(":") for ln in lines[1:])]
        resp = rgtest.Response(parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "",
                               headers, b"")
        p = end + 4
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        if len(out) in bodiless or resp.status in (204, 304) or resp.status < 200:
            stop, data = p, b""
        elif te == "chunked":
            stop, data = _chunked_end(raw, p)
        elif cl is not None and cl.isdigit():
            stop = p + int(cl) if len(raw) >= p + int(cl) else None
            data = raw[p:p + int(cl)]
        else:
            stop, data = (len(raw) if closed else None), raw[p:]
        resp.body = data
        if stop is None:
            out.append(Msg(resp, head, raw[p:], False))
            break
        out.append(Msg(resp, head, raw[p:stop], True))
        pos = stop
    return out


def converse(port, data, answers, timeout=3.0, pieces=(), pause=0.05, bodiless=()):
    """Send data (then each of pieces after pause) on a new connection and read
    until `answers` complete responses are in, the peer closes, or timeout
    (counted from the last byte sent). Returns a test_abuse Exchange (ex.msgs:
    the parsed responses)."""
    ex = ab.Exchange()
    s = ab.connect(port)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        try:
            for i, piece in enumerate((data,) + tuple(pieces)):
                if i:
                    time.sleep(pause)
                s.sendall(piece)
                ex.sent += piece
        except OSError as e:
            ex.send_error = e
        ex.bytes_sent = len(ex.sent)
        deadline = time.monotonic() + timeout
        while True:
            msgs = parse_messages(ex.raw, ex.closed, bodiless)
            if len([m for m in msgs if m.complete]) >= answers:
                # Anything more (a stray answer, a close) shows within a moment.
                deadline = min(deadline, time.monotonic() + 0.05)
            now = time.monotonic()
            if now >= deadline:
                break
            s.settimeout(deadline - now)
            try:
                if not ab._recv_into(s, ex, t0):
                    break
            except socket.timeout:
                break
    finally:
        s.close()
    ex.msgs = parse_messages(ex.raw, ex.closed, bodiless)
    return ex


# ---------------------------------------------------------------------------
# Test case base
# ---------------------------------------------------------------------------

def conn_backend(cleanup):
    """A started testbackend.py whose log lines name their connection."""
    d = rgtest.Daemon(sys.executable, ["-u", lbt.TESTBACKEND, "{port}", "ok"],
                      env={"TESTBACKEND_CONN_IDS": "1"})
    cleanup(d.kill)
    return d.start()


DROPPED = re.compile(r'^roundguard_header_fields_dropped_total\{reason="([a-z_]+)"\} (\d+)$', re.M)


class ConformanceCase(ab.AbuseTestCase):
    """One LB (one worker) per class over one testbackend, PROXY its proxy keys."""

    PROXY = {}
    PREFIX = ""

    @classmethod
    def setUpClass(cls):
        cls.backend = conn_backend(cls.addClassCleanup)
        proxy = {"timeout": "2s", "client_timeout": "2s"}
        proxy.update(cls.PROXY)
        cfg = lbt.make_config([lbt.url(cls.backend, cls.PREFIX)], health=CALM, proxy=proxy)
        cls.lb = tlsmode.LB(cls.addClassCleanup, cfg, workers=1).start()
        cls.workers = ab.worker_pids(cls.lb, 1)

    # -- helpers ------------------------------------------------------------

    def recs_since(self, mark, settle=0.15):
        time.sleep(settle)
        return ab.forwarded(self.backend, mark)

    def dropped(self):
        """roundguard_header_fields_dropped_total by reason, from /metrics."""
        r = self.lb.request("GET", "/metrics", timeout=3)
        self.assertEqual(r.status, 200, r)
        return {k: int(v) for k, v in DROPPED.findall(r.body.decode("utf-8"))}

    def fail_case(self, name, problems, ex, recs, want=None):
        msg = "case %r:\n  problems: %s\n%s\n  backend received:\n    %s" % (
            name, "\n            ".join(problems), ex.describe(2000), ab.fmt_records(recs, 2000))
        if want is not None:
            msg += "\n  backend should have received:\n    " + fmt_expected(want)
        self.fail(msg)

    def framing_problems(self, recs, want):
        """recs (what reached the backend) against want (records, in order):
        the same heads and bodies byte for byte, all on one backend connection,
        and no malformed, truncated or leftover event."""
        p = []
        got = [project(o) for o in recs]
        if got != want:
            p.append("the backend did not receive exactly what it should")
        bad = [o for o in recs if o.get("event") in ("malformed", "truncated", "leftover")]
        if bad:
            p.append("framing went wrong on the backend connection: %s"
                     % ", ".join(sorted({o["event"] for o in bad})))
        conns = sorted({o.get("conn") for o in recs})
        if len(conns) > 1:
            p.append("the requests came on several backend connections %r (want one, reused)"
                     % conns)
        return p

    def answer_problems(self, m, status=200, what="the answer"):
        """m (a Msg) is a complete answer from the backend with this status."""
        if m is None or m.resp is None:
            return ["%s is missing" % what]
        p = []
        if not m.complete:
            p.append("%s is incomplete" % what)
        if m.resp.status != status:
            p.append("%s has status %d, want %d" % (what, m.resp.status, status))
        if m.resp.header("X-Backend-Server") is None:
            p.append("%s was not made by the backend (no X-Backend-Server)" % what)
        return p

    def follow_problems(self, m, t):
        p = self.answer_problems(m, 200, "the answer to the follow-up request")
        if not p:
            try:
                target = m.resp.json().get("target")
            except ValueError:
                target = None
            if target != self.PREFIX + "/headers?id=" + t:
                p.append("the follow-up answer is for %r, want %r"
                         % (target, self.PREFIX + "/headers?id=" + t))
        return p

    # -- forwarded cases ----------------------------------------------------

    def forward_case(self, name, data, want, status=200, pieces=(), pause=0.05, follow=True,
                     check=None, bodiless=False):
        """data must be forwarded as exactly want (fwd()/body() records, in
        order) and answered `status` by the backend; with follow, a normal
        request pipelined after it on the same connection must be answered and
        reach the backend as exactly its own head, on the same backend
        connection; without, the connection must be closed (HTTP/1.0).
        check(msg) may add problems about the answer."""
        t = tag()
        mark = ab.backend_mark(self.backend)
        sent = data + (follow_up(t) if follow else b"")
        if pieces:
            ex = converse(self.lb.port, data, 2 if follow else 1,
                          pieces=tuple(pieces[:-1]) + (pieces[-1] + follow_up(t),)
                          if follow else tuple(pieces), pause=pause,
                          bodiless=(0,) if bodiless else ())
        else:
            ex = converse(self.lb.port, sent, 2 if follow else 1,
                          bodiless=(0,) if bodiless else ())
        want = list(want)
        if follow:
            want.append(fwd("GET %s/headers?id=%s HTTP/1.1" % (self.PREFIX, t)))
        recs = self.recs_since(mark)
        msgs = ex.msgs
        problems = self.answer_problems(msgs[0] if msgs else None, status)
        if check is not None and msgs and msgs[0].resp is not None:
            problems += check(msgs[0])
        if follow:
            problems += self.follow_problems(msgs[1] if len(msgs) > 1 else None, t)
            if len(msgs) > 2:
                problems.append("bytes after the answers")
        elif not ex.closed:
            problems.append("connection still open after the answer")
        problems += self.framing_problems(recs, want)
        problems += self.alive_problems()
        if problems:
            self.fail_case(name, problems, ex, recs, want)
        return ex, recs

    def run_forwarded(self, cases):
        for case in cases:
            name, data, want = case[:3]
            with self.subTest(case=name):
                self.forward_case(name, data, want, **(case[3] if len(case) > 3 else {}))

    # -- refused cases ------------------------------------------------------

    def run_refused(self, cases, **kw):
        """(name, data, status[, opts]): answered by roundguardd with the JSON
        error and closed; nothing forwarded, not even the normal request
        pipelined after the case."""
        for case in cases:
            name, data, want = case[:3]
            opts = dict(kw)
            if len(case) > 3:
                opts.update(case[3])
            with self.subTest(case=name):
                self.check_case(name, data + follow_up(tag()), want, **opts)

    def refused_or_reframed(self, name, data, want):
        """Either refused (400, nothing forwarded) or forwarded as exactly want:
        for shapes RFC 9112 lets a recipient accept that strict parsing refuses."""
        mark = ab.backend_mark(self.backend)
        ex = converse(self.lb.port, data, 1)
        msgs = ex.msgs
        if msgs and msgs[0].resp is not None and msgs[0].resp.status == 400:
            recs = self.recs_since(mark)
            problems = self.error_json_problems(msgs[0].resp, 400)
            if recs:
                problems.append("refused, but something was forwarded")
            problems += self.alive_problems()
            if problems:
                self.fail_case(name, problems, ex, recs)
            return "refused"
        self.forward_case(name, data, want)
        return "forwarded"


# ---------------------------------------------------------------------------
# 1. Chunked bodies re-framed; trailers dropped (default keys)
# ---------------------------------------------------------------------------

CANON_HELLO = b"5\r\nhello\r\n0\r\n\r\n"


class ChunkedRequestTests(ConformanceCase):

    def test_chunked_request_body_reframed(self):
        t = b"/headers?id=chunked"
        head = fwd("POST /headers?id=chunked HTTP/1.1", ["Host: x", "Transfer-Encoding: chunked"])
        big = bytes(range(256)) * 64           # 16 KiB in one chunk
        self.run_forwarded([
            ("leading zeros, extension, trailer (the example)",
             chunked_post(b"05;ext=1\r\nhello\r\n000a\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"),
             [head, body(b"5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n")]),
            ("upper-case size", chunked_post(b"1A\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n"),
             [head, body(b"1a\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n")]),
            ("25 leading zeros, last chunk 00000",
             chunked_post(b"0" * 25 + b"5\r\nhello\r\n00000\r\n\r\n"), [head, body(CANON_HELLO)]),
            ("quoted extension with ; inside", chunked_post(b'5;c="d;e"\r\nhello\r\n0\r\n\r\n'),
             [head, body(CANON_HELLO)]),
            ("quoted extension then a name-only one",
             chunked_post(b'5;c="d e";flag\r\nhello\r\n0\r\n\r\n'), [head, body(CANON_HELLO)]),
            ("extension names without values", chunked_post(b"5;a\r\nhello\r\n0;b\r\n\r\n"),
             [head, body(CANON_HELLO)]),
            ("extension on the last chunk", chunked_post(b"5\r\nhello\r\n0;a=b\r\n\r\n"),
             [head, body(CANON_HELLO)]),
            ("quoted extension on the last chunk",
             chunked_post(b'5\r\nhello\r\n0;c="d;e"\r\n\r\n'), [head, body(CANON_HELLO)]),
            ("empty body", chunked_post(b"0\r\n\r\n"), [head, body(b"0\r\n\r\n")]),
            ("empty body with trailer", chunked_post(b"0\r\nX-T: 1\r\n\r\n"),
             [head, body(b"0\r\n\r\n")]),
            ("trailers that look like framing (Content-Length, Host) dropped",
             chunked_post(b"5\r\nhello\r\n0\r\nContent-Length: 50\r\nHost: evil\r\n\r\n"),
             [head, body(CANON_HELLO)]),
            ("three trailer fields dropped",
             chunked_post(b"5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\n\r\n"),
             [head, body(CANON_HELLO)]),
            ("trailer with obs-text dropped", chunked_post(b"5\r\nhello\r\n0\r\nX-A: \xe9\xff\r\n\r\n"),
             [head, body(CANON_HELLO)]),
            # RFC 9112 5.2: obs-fold is refused or replaced before interpreting or
            # forwarding; a dropped trailer is neither.
            ("trailer with obs-fold dropped",
             chunked_post(b"5\r\nhello\r\n0\r\nX-A: 1\r\n folded\r\n\r\n"), [head, body(CANON_HELLO)]),
            ("trailer named with an underscore dropped",
             chunked_post(b"5\r\nhello\r\n0\r\nX_A: 1\r\n\r\n"), [head, body(CANON_HELLO)]),
            ("Trailer header (hop-by-hop) removed, trailer dropped",
             chunked_post(b"5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n", extra=[b"Trailer: X-Sum"]),
             [head, body(CANON_HELLO)]),
            ("16 KiB chunk split over three writes",
             chunked_post(b"4000;big=1\r\n" + big[:5000]), [head, body(b"4000\r\n" + big + b"\r\n0\r\n\r\n")],
             {"pieces": [big[5000:12000], big[12000:] + b"\r\n0\r\nX-T: 1\r\n\r\n"]}),
            ("every byte of the body in its own write",
             chunked_post(b""), [head, body(b"5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n")],
             {"pieces": [bytes([c]) for c in b"05;e=1\r\nhello\r\n00A\r\n0123456789\r\n0\r\nX: 1\r\n\r\n"],
              "pause": 0.01}),
            ("Content-Length body as received",
             ab.req([b"POST " + t + b" HTTP/1.1", b"Host: x", b"Content-Length: 11"], b"05\r\nhello\r\n"),
             [fwd("POST /headers?id=chunked HTTP/1.1", ["Host: x", "Content-Length: 11"]),
              body(b"05\r\nhello\r\n")]),
        ])

    def test_bare_lf_in_request_trailer_400(self):
        """In one write: 400, nothing complete forwarded, the pipelined request
        neither."""
        self.run_refused([
            ("bare LF ending the trailer section", chunked_post(b"5\r\nhello\r\n0\r\n\n"), 400),
            ("bare LF after a trailer field", chunked_post(b"5\r\nhello\r\n0\r\nX-T: 1\r\n\n"), 400),
            ("bare LF ending a trailer field", chunked_post(b"5\r\nhello\r\n0\r\nX-T: 1\nX-U: 2\r\n\r\n"),
             400),
        ], forward="incomplete")

    def test_bare_lf_in_request_trailer_after_streaming_400(self):
        """The head and the first chunk went on before the bad trailer section
        came: the backend has the head and "5\\r\\nhello\\r\\n", then its
        connection is closed; it never gets a complete request, nor the
        request pipelined after the bad one."""
        for name, tail in (("0 CRLF LF", b"0\r\n\n"), ("0 CRLF X-T: 1 CRLF LF", b"0\r\nX-T: 1\r\n\n")):
            with self.subTest(case=name):
                t = tag()
                mark = ab.backend_mark(self.backend)
                first = chunked_post(b"5\r\nhello\r\n", target=b"/headers?id=" + t.encode())
                s = ab.connect(self.lb.port)
                s.sendall(first)
                streamed = rgtest.wait_until(lambda: t.encode() in self.backend.stdout_bytes(), 2)
                rest = tail + follow_up(tag())
                ex = ab.exchange(self.lb.port, rest, sock=s)
                ex.sent = first + rest
                rgtest.wait_until(lambda: [o for o in ab.forwarded(self.backend, mark)
                                           if o.get("event") is not None], 2)
                recs = self.recs_since(mark)
                problems = self.error_json_problems(ex.resp if ex.complete else None, 400)
                if not streamed:
                    problems.append("the head was not streamed to the backend before the trailer "
                                    "(the case does not test what it should)")
                if not ex.closed:
                    problems.append("client connection still open after the 400")
                want = [fwd("POST /headers?id=%s HTTP/1.1" % t, ["Host: x", "Transfer-Encoding: chunked"]),
                        {"event": "truncated", "raw_body": "5\r\nhello\r\n"}]
                if [project(o) for o in recs] != want:
                    problems.append("the backend should have got the head and the first chunk, then "
                                    "a closed connection")
                problems += self.alive_problems()
                if problems:
                    self.fail_case(name, problems, ex, recs, want)

    def test_bws_in_chunk_size_line_refused_or_reframed(self):
        """RFC 9112 7.1.1 allows BWS around ";" (recipients must accept it, RFC
        9110 5.6.3); strict llhttp refuses it. Either is safe; forwarding it
        as received is not."""
        for name, b in (("space before ;", b"5 ;a=b\r\nhello\r\n0\r\n\r\n"),
                        ("tab before ;", b"5\t;a=b\r\nhello\r\n0\r\n\r\n"),
                        ("space after ;", b"5; a=b\r\nhello\r\n0\r\n\r\n"),
                        ("space around =", b"5;a = b\r\nhello\r\n0\r\n\r\n")):
            with self.subTest(case=name):
                self.refused_or_reframed(name, chunked_post(b), [
                    fwd("POST /headers?id=chunked HTTP/1.1", ["Host: x", "Transfer-Encoding: chunked"]),
                    body(CANON_HELLO)])

    @unittest.expectedFailure
    def test_rfc_valid_chunk_extensions_accepted(self):
        """Found while writing this file: RFC 9112 7.1.1 allows any number of
        extensions (chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ))
        and quoted-pair in a quoted value, and says a recipient MUST ignore
        extensions it does not know. llhttp 8.1.0 (Debian's node-llhttp, in
        strict and lenient mode alike) refuses a token value followed by
        another extension ("5;a=b;c=d": HPE_INVALID_CHUNK_SIZE) and a
        quoted-pair ('5;c="d\\"e"': HPE_STRICT), so roundguardd answers 400."""
        head = fwd("POST /headers?id=chunked HTTP/1.1", ["Host: x", "Transfer-Encoding: chunked"])
        self.run_forwarded([
            ("two extensions", chunked_post(b"5;a=b;c=d\r\nhello\r\n0\r\n\r\n"), [head, body(CANON_HELLO)]),
            ("two extensions on the last chunk", chunked_post(b"5\r\nhello\r\n0;a=b;c=d\r\n\r\n"),
             [head, body(CANON_HELLO)]),
            ("quoted-pair in a quoted value", chunked_post(b'5;c="d\\"e"\r\nhello\r\n0\r\n\r\n'),
             [head, body(CANON_HELLO)]),
        ])


class ChunkedResponseTests(ConformanceCase):

    def test_chunked_response_reframed_trailers_dropped(self):
        def check(m):
            p = []
            if m.resp.header("Transfer-Encoding") != "chunked":
                p.append("Transfer-Encoding %r, want chunked" % m.resp.header("Transfer-Encoding"))
            if m.resp.header("Trailer") is not None:
                p.append("the hop-by-hop Trailer header reached the client")
            if m.framing != tb.CHUNKEXT_CANONICAL:
                p.append("body framing %r, want %r" % (m.framing, tb.CHUNKEXT_CANONICAL))
            if m.resp.body != tb.CHUNKEXT_DATA:
                p.append("body %r, want %r" % (m.resp.body, tb.CHUNKEXT_DATA))
            for word in (b"X-Checksum", b"X-Trailer-Two", b"ext=", b"last=1", b"flag"):
                if word in m.head + m.framing:
                    p.append("%r reached the client" % word)
            return p
        self.forward_case("GET /chunkedext", b"GET /chunkedext HTTP/1.1\r\nHost: x\r\n\r\n",
                          [fwd("GET /chunkedext HTTP/1.1")], check=check)

    def test_chunked_response_to_head_request(self):
        def check(m):
            return ["a body came with the answer to HEAD: %r" % m.framing] if m.framing else []
        self.forward_case("HEAD /chunkedext", b"HEAD /chunkedext HTTP/1.1\r\nHost: x\r\n\r\n",
                          [fwd("HEAD /chunkedext HTTP/1.1")], check=check, bodiless=True)

    def test_chunked_response_dechunked_for_http10(self):
        def check(m):
            p = []
            if m.resp.header("Transfer-Encoding") is not None:
                p.append("Transfer-Encoding %r to an HTTP/1.0 client" % m.resp.header("Transfer-Encoding"))
            if m.framing != tb.CHUNKEXT_DATA:
                p.append("body %r, want exactly %r then the close" % (m.framing, tb.CHUNKEXT_DATA))
            return p
        self.forward_case("GET /chunkedext HTTP/1.0", b"GET /chunkedext HTTP/1.0\r\n\r\n",
                          [fwd("GET /chunkedext HTTP/1.1", ["Host: %s" % self.backend.address], None)],
                          check=check, follow=False)

    def test_bare_lf_in_response_trailer_cuts_client(self):
        """The head and the first chunk are out when the bad trailer section
        comes: the client connection is cut (no last chunk), the pipelined
        request goes nowhere, the backend connection is not used again, and
        the daemon goes on serving."""
        for kind in ("lf", "lf0"):
            with self.subTest(kind=kind):
                self.bad_response_trailer("bad=" + kind, strict=True)

    def test_bare_lf_in_response_trailer_in_one_write(self):
        """The whole answer in one read: the client gets no complete answer
        (the head may or may not be out; a 502 would be fine too)."""
        for kind in ("lf", "lf0"):
            with self.subTest(kind=kind):
                self.bad_response_trailer("bad=%s&onewrite=1" % kind, strict=False)

    def bad_response_trailer(self, query, strict):
        t = tag()
        mark = ab.backend_mark(self.backend)
        data = b"GET /chunkedext?%s HTTP/1.1\r\nHost: x\r\n\r\n" % query.encode() + follow_up(t)
        ex = converse(self.lb.port, data, 2, timeout=3.0)
        recs = self.recs_since(mark)
        problems = []
        m = ex.msgs[0] if ex.msgs else None
        if m is not None and m.resp is not None and m.resp.status == 502 and m.complete:
            problems += self.error_json_problems(m.resp, 502)
        elif m is not None and m.resp is not None:
            if m.resp.status != 200 or m.resp.header("X-Backend-Server") is None:
                problems.append("the head that went out is not the backend's 200")
            if m.complete or b"0\r\n\r\n" in m.framing:
                problems.append("the client got a complete chunked body")
            if not b"5\r\nhello\r\n".startswith(m.framing):
                problems.append("body framing %r, want a prefix of %r" % (m.framing, b"5\r\nhello\r\n"))
        elif strict:
            problems.append("the head and first chunk (sent in separate writes) did not reach the "
                            "client before the cut")
        for word in (b"X-Checksum", b"\n\n", b"ext="):
            if word in ex.raw:
                problems.append("%r reached the client" % word)
        if len(ex.msgs) > 1:
            problems.append("more than one answer on the cut connection")
        if not ex.closed:
            problems.append("the client connection was not cut")
        cut = [o.get("conn") for o in recs if o.get("event") is None]
        want = [fwd("GET /chunkedext?%s HTTP/1.1" % query)]
        if [project(o) for o in recs] != want:
            problems.append("the backend should have got the one request (not the pipelined one)")
        # The next request must not go over the backend connection with the bad answer.
        mark2 = ab.backend_mark(self.backend)
        r = self.lb.attempt("GET", "/headers?after-cut=" + t, timeout=3)
        after = [o for o in self.recs_since(mark2) if o.get("event") is None]
        if isinstance(r, Exception) or r.status != 200:
            problems.append("a request right after the cut failed: %r" % (r,))
        elif not after or (cut and after[0].get("conn") in cut):
            problems.append("the backend connection of the bad answer was used again (%r)"
                            % [o.get("conn") for o in after])
        problems += self.alive_problems()
        if problems:
            self.fail_case("GET /chunkedext?" + query, problems, ex, recs, want)


class DroppedFieldsMetricsTests(ConformanceCase):

    def test_dropped_fields_counted(self):
        before = self.dropped()
        self.forward_case("three underscore names",
                          ab.req([b"GET /headers?id=us HTTP/1.1", b"Host: x", b"X_A: 1", b"X-B: 2",
                                  b"X_C_: 3", b"_X: 4"]),
                          [fwd("GET /headers?id=us HTTP/1.1", ["Host: x", "X-B: 2"])])
        self.forward_case("two request trailer fields",
                          chunked_post(b"5\r\nhello\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"),
                          [fwd("POST /headers?id=chunked HTTP/1.1", ["Host: x", "Transfer-Encoding: chunked"]),
                           body(CANON_HELLO)])
        self.forward_case("two response trailer fields",
                          b"GET /chunkedext HTTP/1.1\r\nHost: x\r\n\r\n", [fwd("GET /chunkedext HTTP/1.1")])
        after = self.dropped()
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in ("underscore", "trailer")}
        self.assertEqual(delta, {"underscore": 3, "trailer": 4},
                         "roundguard_header_fields_dropped_total grew by %r (before %r, after %r)"
                         % (delta, before, after))


# ---------------------------------------------------------------------------
# 2-5. Host, absolute-form, "*", request-target checks
# ---------------------------------------------------------------------------

class HostAndTargetTests(ConformanceCase):

    def test_invalid_host_400(self):
        def get(host):
            return ab.req([b"GET /headers?id=host HTTP/1.1", b"Host:" + (b" " + host if host else b"")])
        self.run_refused([
            ("empty Host", get(b""), 400),
            ("Host: h:p/path", get(b"h:p/path"), 400),
            ("Host: h:80/path", get(b"h:80/path"), 400),
            ("Host: a, b", get(b"a, b"), 400),
            ("Host: user@h", get(b"user@h"), 400),
            ("Host: h:99999", get(b"h:99999"), 400),
            ("Host: h:65536", get(b"h:65536"), 400),
            ("Host: h:", get(b"h:"), 400),
            ("Host: [::1", get(b"[::1"), 400),
            ("Host: h h", get(b"h h"), 400),
            ("Host: h?q", get(b"h?q"), 400),
            ("Host: h#f", get(b"h#f"), 400),
            ("Host: a\\b", get(b"a\\b"), 400),
            ("Host: h:000080 (6 digits)", get(b"h:000080"), 400),
            ("Host: h:8o", get(b"h:8o"), 400),
            ("Host: :80", get(b":80"), 400),
            ("Host: [::1]x", get(b"[::1]x"), 400),
            ("Host: [zz::1]", get(b"[zz::1]"), 400),
            ("Host: [fe80::1%25eth0] (zone id)", get(b"[fe80::1%25eth0]"), 400),
            ("Host: ex%zzample", get(b"ex%zzample"), 400),
            ("Host: exa\"mple", get(b'exa"mple'), 400),
            ("Host with obs-text", get(b"caf\xe9.example"), 400),
            # RFC 9112 3.2: an invalid Host is a 400 even when the target is absolute.
            ("absolute-form with Host: a, b",
             ab.req([b"GET http://o.example/p HTTP/1.1", b"Host: a, b"]), 400),
            # ... and so is an HTTP/1.1 request without Host.
            ("absolute-form without Host", ab.req([b"GET http://o.example/p HTTP/1.1", b"X-A: 1"]), 400),
        ])

    def test_valid_host_forwarded(self):
        def case(host, name=None):
            h = host.decode("latin-1")
            return (name or "Host: " + h, ab.req([b"GET /headers?id=host HTTP/1.1", b"Host: " + host]),
                    [fwd("GET /headers?id=host HTTP/1.1", ["Host: " + h], h)])
        self.run_forwarded([
            case(b"example.com"),
            case(b"example.com:8080"),
            case(b"127.0.0.1:80"),
            case(b"[::1]:8080"),
            case(b"[::1]"),
            case(b"EXAMPLE.com"),
            case(b"ex%41mple.com"),
            case(b"a-b_c~d!$&'()*+;=.example"),
            case(b"h:65535"),
            ("lower-case field name (host:)", ab.req([b"GET /headers?id=host HTTP/1.1", b"host: example.com"]),
             [fwd("GET /headers?id=host HTTP/1.1", ["host: example.com"], "example.com")]),
            ("Host in the middle of the head",
             ab.req([b"GET /headers?id=host HTTP/1.1", b"X-A: 1", b"Host: [::1]:8080", b"X-B: 2"]),
             [fwd("GET /headers?id=host HTTP/1.1", ["X-A: 1", "Host: [::1]:8080", "X-B: 2"], "[::1]:8080")]),
        ])

    def test_absolute_form_forwarded_in_origin_form(self):
        def get(target, method=b"GET", host=b"x", version=b"HTTP/1.1"):
            return ab.req([method + b" " + target + b" " + version]
                          + ([b"Host: " + host] if host else []))

        def want(line, authority, fields=()):
            return [fwd(line, list(fields) + ["Host: " + authority], authority)]
        self.run_forwarded([
            ("http://other.example/p?q=1", get(b"http://other.example/p?q=1"),
             want("GET /p?q=1 HTTP/1.1", "other.example")),
            ("http://other.example?q=1", get(b"http://other.example?q=1"),
             want("GET /?q=1 HTTP/1.1", "other.example")),
            ("http://other.example", get(b"http://other.example"), want("GET / HTTP/1.1", "other.example")),
            ("http://other.example/", get(b"http://other.example/"), want("GET / HTTP/1.1", "other.example")),
            ("http://other.example?", get(b"http://other.example?"), want("GET /? HTTP/1.1", "other.example")),
            ("HTTPS://h/x (scheme case-insensitive)", get(b"HTTPS://h/x"), want("GET /x HTTP/1.1", "h")),
            ("hTtP://h/x", get(b"hTtP://h/x"), want("GET /x HTTP/1.1", "h")),
            ("https://h:8443/x", get(b"https://h:8443/x"), want("GET /x HTTP/1.1", "h:8443")),
            ("http://[::1]:81/x", get(b"http://[::1]:81/x"), want("GET /x HTTP/1.1", "[::1]:81")),
            ("http://127.0.0.1/x", get(b"http://127.0.0.1/x"), want("GET /x HTTP/1.1", "127.0.0.1")),
            ("http://ex%41mple/", get(b"http://ex%41mple/"), want("GET / HTTP/1.1", "ex%41mple")),
            ("path with %2F and a malformed query",
             get(b"http://o.example/a%2Fb?x=%zz"), want("GET /a%2Fb?x=%zz HTTP/1.1", "o.example")),
            ("client Host elsewhere in the head is not forwarded",
             ab.req([b"GET http://o.example:81/p HTTP/1.1", b"X-A: 1", b"Host: x", b"X-B: 2"]),
             want("GET /p HTTP/1.1", "o.example:81", ["X-A: 1", "X-B: 2"])),
            ("POST with a chunked body",
             ab.req([b"POST http://o.example/p HTTP/1.1", b"Host: x", b"Transfer-Encoding: chunked"],
                    b"05;e=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"),
             [fwd("POST /p HTTP/1.1", ["Transfer-Encoding: chunked", "Host: o.example"], "o.example"),
              body(CANON_HELLO)]),
            ("HTTP/1.0 without Host", get(b"http://o.example/p", host=None, version=b"HTTP/1.0"),
             want("GET /p HTTP/1.1", "o.example"), {"follow": False}),
        ])

    def test_absolute_form_refused(self):
        def get(target):
            return ab.req([b"GET " + target + b" HTTP/1.1", b"Host: x"])
        self.run_refused([
            ("ftp://a/", get(b"ftp://a/"), 400),
            ("ws://h/", get(b"ws://h/"), 400),
            ("httpx://h/", get(b"httpx://h/"), 400),
            ("http://u@h/ (userinfo)", get(b"http://u@h/"), 400),
            ("http://u:p@h/ (userinfo)", get(b"http://u:p@h/"), 400),
            ("http:///p (no host)", get(b"http:///p"), 400),
            ("http://h:99999/", get(b"http://h:99999/"), 400),
            ("http://h:/", get(b"http://h:/"), 400),
            ("http://a,b/", get(b"http://a,b/"), 400),
            ("http://[::1/", get(b"http://[::1/"), 400),
            ("http://o.example/p#f (fragment)", get(b"http://o.example/p#f"), 400),
            ("http://o.example#f", get(b"http://o.example#f"), 400),
            ("http://o.example/a%00b", get(b"http://o.example/a%00b"), 400),
            ("http://o.example/a%zz", get(b"http://o.example/a%zz"), 400),
            ("http:/p", get(b"http:/p"), 400),
            ("http:p", get(b"http:p"), 400),
            ("mailto:x@y", get(b"mailto:x@y"), 400),
            ("authority-form with GET", get(b"o.example:80"), 400),
        ])

    def test_asterisk_form(self):
        self.run_refused([
            ("GET *", ab.req([b"GET * HTTP/1.1", b"Host: x"]), 400),
            ("POST *", ab.req([b"POST * HTTP/1.1", b"Host: x", b"Content-Length: 0"]), 400),
            ("OPTIONS */x", ab.req([b"OPTIONS */x HTTP/1.1", b"Host: x"]), 400),
        ])
        self.run_forwarded([
            ("OPTIONS *", ab.req([b"OPTIONS * HTTP/1.1", b"Host: x"]), [fwd("OPTIONS * HTTP/1.1")]),
            ("OPTIONS * HTTP/1.0", ab.req([b"OPTIONS * HTTP/1.0", b"Host: x"]),
             [fwd("OPTIONS * HTTP/1.1")], {"follow": False}),
        ])

    def test_options_absolute_form_without_path_goes_on_as_asterisk(self):
        """RFC 9112 3.2.4: "OPTIONS http://www.example.org:8001 HTTP/1.1" is
        forwarded by the last proxy as "OPTIONS * HTTP/1.1" (an empty path in
        an OPTIONS absolute-form means the server, not "/"); found while
        writing this file (roundguardd sent "OPTIONS / HTTP/1.1")."""
        self.forward_case("OPTIONS http://www.example.org:8001",
                          ab.req([b"OPTIONS http://www.example.org:8001 HTTP/1.1", b"Host: x"]),
                          [fwd("OPTIONS * HTTP/1.1", ["Host: www.example.org:8001"],
                               "www.example.org:8001")])

    def test_bad_targets_400(self):
        def get(target):
            return ab.req([b"GET " + target + b" HTTP/1.1", b"Host: x"])
        self.run_refused([
            ("fragment", get(b"/path#frag"), 400),
            ("empty fragment", get(b"/path#"), 400),
            ("fragment after the query", get(b"/p?q=1#f"), 400),
            ("%00 in the path", get(b"/a%00b"), 400),
            ("%00 at the end of the path", get(b"/a%00"), 400),
            ("%zz in the path", get(b"/a%zzb"), 400),
            ("%2 at the end of the path", get(b"/a%2"), 400),
            ("% at the end of the path", get(b"/a%"), 400),
            ("%g0 in the path", get(b"/a%g0"), 400),
            ("UTF-8 in the path", get(b"/caf\xc3\xa9"), 400),
            ("0x80 in the path", get(b"/a\x80b"), 400),
            ("0xff in the query", get(b"/a?x=\xff"), 400),
            ("0xe9 in the query", get(b"/a?x=caf\xe9"), 400),
        ])

    def test_targets_forwarded_as_received(self):
        def case(name, target):
            t = target.decode("latin-1")
            return (name, ab.req([b"GET " + target + b" HTTP/1.1", b"Host: x"]),
                    [fwd("GET %s%s HTTP/1.1" % (self.PREFIX, t))])
        self.run_forwarded([
            case("malformed percent-encoding in the query", b"/a?x=%zz"),
            case("%00 in the query", b"/a?x=%00"),
            case("% at the end of the query", b"/a?x=%"),
            case("%2F %2e %2E in the path", b"/a%2Fb%2e%2E"),
            case("{ | } in the path", b"/a{b|c}d"),
            # RFC 3986 leaves these out of URIs too; they pass as with nginx (README).
            case("\" < > \\ ^ ` in the path", b"/a\"b<c>d\\e^f`g"),
            case("dot segments", b"/a/../../etc/passwd"),
            case("origin-form starting with //", b"//evil.example/p"),
            case("? in the query", b"/a?b?c=/d"),
            case("sub-delims and @ : in the path", b"/a!$&'()*+,;=:@b"),
        ])


# ---------------------------------------------------------------------------
# 6-8. Underscores, versions, TRACE (default keys)
# ---------------------------------------------------------------------------

class FieldsVersionsMethodsTests(ConformanceCase):

    def test_underscore_names_dropped(self):
        self.run_forwarded([
            ("Content_Length, Transfer_Encoding, X_Real_IP dropped",
             ab.req([b"POST /headers?id=us HTTP/1.1", b"Host: x", b"Content_Length: 99",
                     b"Transfer_Encoding: chunked", b"X_Real_IP: 1", b"X-Ok: 1"]),
             [fwd("POST /headers?id=us HTTP/1.1", ["Host: x", "X-Ok: 1"])]),
            ("Host_ does not count as Host",
             ab.req([b"GET /headers?id=us HTTP/1.1", b"Host_: evil", b"Host: x"]),
             [fwd("GET /headers?id=us HTTP/1.1")]),
            ("underscore next to a real Content-Length body",
             ab.req([b"POST /headers?id=us HTTP/1.1", b"Host: x", b"Content_Length: 1",
                     b"Content-Length: 5"], b"hello"),
             [fwd("POST /headers?id=us HTTP/1.1", ["Host: x", "Content-Length: 5"]), body(b"hello")]),
        ])
        # Without Host once the underscore one is gone: an HTTP/1.1 request without Host.
        self.run_refused([("only Host_", ab.req([b"GET /headers?id=us HTTP/1.1", b"Host_: x"]), 400)])

    def test_obs_text_and_whitespace_in_values(self):
        self.run_forwarded([
            # RFC 9110 5.5: obs-text is allowed in field values (and passed on).
            ("obs-text in a value", ab.req([b"GET /headers?id=ot HTTP/1.1", b"Host: x",
                                            b"X-A: caf\xe9 \x80\xff"]),
             [fwd("GET /headers?id=ot HTTP/1.1", ["Host: x", "X-A: caf\xe9 \x80\xff"])]),
            ("leading and trailing whitespace of a value removed",
             ab.req([b"GET /headers?id=ws HTTP/1.1", b"Host: x", b"X-A: \t v 1 \t "]),
             [fwd("GET /headers?id=ws HTTP/1.1", ["Host: x", "X-A: v 1"])]),
            ("empty value", ab.req([b"GET /headers?id=ev HTTP/1.1", b"Host: x", b"X-A:"]),
             [fwd("GET /headers?id=ev HTTP/1.1", ["Host: x", "X-A: "])]),
        ])

    def test_framing_and_forwarding_fields(self):
        self.run_forwarded([
            ("Transfer-Encoding: Chunked (case-insensitive coding)",
             ab.req([b"POST /headers?id=te HTTP/1.1", b"Host: x", b"Transfer-Encoding: Chunked"],
                    b"5;a=b\r\nhello\r\n0\r\n\r\n"),
             [fwd("POST /headers?id=te HTTP/1.1", ["Host: x", "Transfer-Encoding: Chunked"]),
              body(CANON_HELLO)]),
            ("transfer-encoding in lower case",
             ab.req([b"POST /headers?id=te HTTP/1.1", b"Host: x", b"transfer-encoding: chunked"],
                    b"5;a=b\r\nhello\r\n0\r\n\r\n"),
             [fwd("POST /headers?id=te HTTP/1.1", ["Host: x", "transfer-encoding: chunked"]),
              body(CANON_HELLO)]),
            ("Content-Length with OWS", ab.req([b"POST /headers?id=cl HTTP/1.1", b"Host: x",
                                                b"Content-Length: \t5 "], b"hello"),
             [fwd("POST /headers?id=cl HTTP/1.1", ["Host: x", "Content-Length: 5"]), body(b"hello")]),
            # RFC 9110 8.6 allows leading zeros; it goes on as the number read (a parser
            # that takes "010" for octal would read 8), ahead of the other fields.
            ("Content-Length: 010", ab.req([b"POST /headers?id=cl HTTP/1.1", b"Host: x",
                                            b"Content-Length: 010"], b"0123456789"),
             [fwd("POST /headers?id=cl HTTP/1.1", ["Content-Length: 10", "Host: x"]),
              body(b"0123456789")]),
            ("Content-Length: 0000", ab.req([b"POST /headers?id=cl0 HTTP/1.1", b"Host: x",
                                             b"Content-Length: 0000"]),
             [fwd("POST /headers?id=cl0 HTTP/1.1", ["Content-Length: 0", "Host: x"])]),
            ("Host with OWS", ab.req([b"GET /headers?id=h HTTP/1.1", b"Host: \t example.com \t"]),
             [fwd("GET /headers?id=h HTTP/1.1", ["Host: example.com"], "example.com")]),
            ("the client's X-Forwarded-Host and -Proto replaced",
             ab.req([b"GET /headers?id=xf HTTP/1.1", b"Host: x", b"X-Forwarded-Host: evil",
                     b"x-forwarded-proto: https", b"X-Forwarded-Host: evil2"]),
             [fwd("GET /headers?id=xf HTTP/1.1")]),
            ("fields named in Connection removed",
             ab.req([b"GET /headers?id=c HTTP/1.1", b"Host: x", b"Connection: X-Foo, keep-alive",
                     b"X-Foo: 1", b"TE: trailers", b"Trailer: X-Sum"]),
             [fwd("GET /headers?id=c HTTP/1.1")]),
            ("HTTP/1.0 keep-alive with Content-Length",
             ab.req([b"POST /headers?id=k HTTP/1.0", b"Host: x", b"Connection: keep-alive",
                     b"Content-Length: 5"], b"hello"),
             [fwd("POST /headers?id=k HTTP/1.1", ["Host: x", "Content-Length: 5"]), body(b"hello")]),
        ])

    def test_http10_with_transfer_encoding_faulty_framing(self):
        """RFC 9112 6.1: a server that receives an HTTP/1.0 message with
        Transfer-Encoding MUST treat its framing as faulty and close the
        connection after processing it (an HTTP/1.0 hop may not know
        chunked); found while writing this file (roundguardd kept the
        keep-alive connection open and served the request pipelined after it).
        Accepted here: a 400 with nothing forwarded, or the request served and
        the connection closed, the pipelined one not forwarded."""
        t = tag()
        mark = ab.backend_mark(self.backend)
        data = ab.req([b"POST /headers?id=te10 HTTP/1.0", b"Host: x", b"Connection: keep-alive",
                       b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n\r\n")
        ex = converse(self.lb.port, data + follow_up(t), 2)
        recs = self.recs_since(mark)
        m = ex.msgs[0] if ex.msgs else None
        problems = []
        if m is not None and m.resp is not None and m.resp.status == 400:
            problems += self.error_json_problems(m.resp, 400)
            if recs:
                problems.append("refused, but something was forwarded")
        else:
            problems += self.answer_problems(m)
            if t in json.dumps(recs):
                problems.append("the request pipelined after it was forwarded")
        if len(ex.msgs) > 1:
            problems.append("the request pipelined after it was answered")
        if not ex.closed:
            problems.append("the connection was not closed")
        if problems:
            self.fail_case("HTTP/1.0 with Transfer-Encoding", problems, ex, recs)

    def test_http_1x_versions_served_as_http11(self):
        def check(m):
            return [] if m.resp.version == "HTTP/1.1" else ["answered as %s" % m.resp.version]
        self.run_forwarded([
            ("HTTP/1.2", ab.req([b"GET /headers?id=v12 HTTP/1.2", b"Host: x"]),
             [fwd("GET /headers?id=v12 HTTP/1.1")], {"check": check}),
            ("HTTP/1.9", ab.req([b"GET /headers?id=v19 HTTP/1.9", b"Host: x"]),
             [fwd("GET /headers?id=v19 HTTP/1.1")], {"check": check}),
            ("HTTP/1.2 POST with a chunked body",
             ab.req([b"POST /headers?id=v12 HTTP/1.2", b"Host: x", b"Transfer-Encoding: chunked"],
                    b"5;x\r\nhello\r\n0\r\n\r\n"),
             [fwd("POST /headers?id=v12 HTTP/1.1", ["Host: x", "Transfer-Encoding: chunked"]),
              body(CANON_HELLO)], {"check": check}),
        ])
        self.run_refused([
            ("HTTP/2.0", ab.req([b"GET /headers?id=v2 HTTP/2.0", b"Host: x"]), 505),
            ("HTTP/3.0", ab.req([b"GET /headers?id=v3 HTTP/3.0", b"Host: x"]), 505),
            ("HTTP/0.9", ab.req([b"GET /headers?id=v09 HTTP/0.9", b"Host: x"]), 400),
            ("HTTP/1.10", ab.req([b"GET /headers?id=v110 HTTP/1.10", b"Host: x"]), 400),
            ("HTTP/1.1.1", ab.req([b"GET /headers?id=v111 HTTP/1.1.1", b"Host: x"]), 400),
        ])

    def test_trace_405(self):
        """405 with Allow (without TRACE) and the JSON body; without a body the
        connection stays usable and the next request goes on alone; with one,
        the connection is closed and nothing goes on."""
        t = tag()
        mark = ab.backend_mark(self.backend)
        data = ab.req([b"TRACE /headers?id=trace HTTP/1.1", b"Host: x", b"Cookie: secret=1"])
        ex = converse(self.lb.port, data + follow_up(t), 2)
        recs = self.recs_since(mark)
        m = ex.msgs[0] if ex.msgs else None
        problems = self.error_json_problems(m.resp if m and m.complete else None, 405)
        allow = m.resp.header("Allow") if m and m.resp else None
        if not allow or "GET" not in allow or "TRACE" in allow:
            problems.append("Allow %r, want a list with GET and without TRACE" % allow)
        if b"secret" in ex.raw:
            problems.append("the cookie was echoed")
        problems += self.follow_problems(ex.msgs[1] if len(ex.msgs) > 1 else None, t)
        want = [fwd("GET /headers?id=%s HTTP/1.1" % t)]
        problems += self.framing_problems(recs, want)
        problems += self.alive_problems()
        if problems:
            self.fail_case("TRACE", problems, ex, recs, want)
        self.run_refused([
            ("TRACE with a Content-Length body",
             ab.req([b"TRACE /headers?id=trace HTTP/1.1", b"Host: x", b"Content-Length: 5"], b"hello"), 405),
            ("TRACE with a chunked body", chunked_post(b"5\r\nhello\r\n0\r\n\r\n").replace(b"POST", b"TRACE", 1),
             405),
            ("TRACE * ", ab.req([b"TRACE * HTTP/1.1", b"Host: x"]), 400),
        ])


# ---------------------------------------------------------------------------
# The keys switched on: proxy.underscores_in_headers, proxy.allow_trace
# ---------------------------------------------------------------------------

class KeysOnTests(ConformanceCase):
    PROXY = {"underscores_in_headers": True, "allow_trace": True}

    def test_underscore_names_kept(self):
        before = self.dropped()
        self.run_forwarded([
            ("Content_Length, Transfer_Encoding, X_Real_IP kept",
             ab.req([b"POST /headers?id=us HTTP/1.1", b"Host: x", b"Content_Length: 99",
                     b"Transfer_Encoding: chunked", b"X_Real_IP: 1", b"X-Ok: 1"]),
             [fwd("POST /headers?id=us HTTP/1.1", ["Host: x", "Content_Length: 99",
                                                    "Transfer_Encoding: chunked", "X_Real_IP: 1",
                                                    "X-Ok: 1"])]),
        ])
        after = self.dropped()
        self.assertEqual(after.get("underscore", 0) - before.get("underscore", 0), 0,
                         "underscore drops counted with underscores_in_headers on: %r -> %r"
                         % (before, after))

    def test_trailers_still_dropped(self):
        self.run_forwarded([
            ("trailer with an underscore name",
             chunked_post(b"05;e\r\nhello\r\n0\r\nX_T: 1\r\n\r\n"),
             [fwd("POST /headers?id=chunked HTTP/1.1", ["Host: x", "Transfer-Encoding: chunked"]),
              body(CANON_HELLO)]),
        ])

    def test_trace_forwarded(self):
        self.run_forwarded([
            ("TRACE", ab.req([b"TRACE /headers?id=trace HTTP/1.1", b"Host: x"]),
             [fwd("TRACE /headers?id=trace HTTP/1.1")]),
            ("TRACE with a Content-Length body",
             ab.req([b"TRACE /headers?id=trace HTTP/1.1", b"Host: x", b"Content-Length: 5"], b"hello"),
             [fwd("TRACE /headers?id=trace HTTP/1.1", ["Host: x", "Content-Length: 5"]), body(b"hello")]),
        ])


# ---------------------------------------------------------------------------
# A backend URL with a path prefix
# ---------------------------------------------------------------------------

class PrefixTests(ConformanceCase):
    PREFIX = "/api"

    def test_prefix_and_special_targets(self):
        def want(line, authority):
            return [fwd(line, ["Host: " + authority], authority)]
        self.run_forwarded([
            ("OPTIONS * gets no prefix", ab.req([b"OPTIONS * HTTP/1.1", b"Host: x"]),
             [fwd("OPTIONS * HTTP/1.1")]),
            ("origin-form", ab.req([b"GET /x?q=1 HTTP/1.1", b"Host: x"]), [fwd("GET /api/x?q=1 HTTP/1.1")]),
            ("origin-form starting with //", ab.req([b"GET //evil.example/p HTTP/1.1", b"Host: x"]),
             [fwd("GET /api//evil.example/p HTTP/1.1")]),
            ("absolute-form with a path", ab.req([b"GET http://o.example/p?q=1 HTTP/1.1", b"Host: x"]),
             want("GET /api/p?q=1 HTTP/1.1", "o.example")),
            ("absolute-form without a path", ab.req([b"GET http://o.example?q=1 HTTP/1.1", b"Host: x"]),
             want("GET /api/?q=1 HTTP/1.1", "o.example")),
            ("absolute-form, authority only", ab.req([b"GET http://o.example HTTP/1.1", b"Host: x"]),
             want("GET /api/ HTTP/1.1", "o.example")),
        ])


if __name__ == "__main__":
    tlsmode.take_flag(sys.argv)
    unittest.main()

#!/usr/bin/env python3
"""Helpers for bench/run and bench/soak (Python 3 standard library only).

usage: benchlib.py freeports N START     N free loopback TCP ports from START up
       benchlib.py tree PID              PID and all its descendants
       benchlib.py cpu PID               utime+stime of PID and its descendants, in us
       benchlib.py rss PID               VmRSS (KiB) summed over the worker processes
                                         under PID (cmdline contains "worker"), else PID
       benchlib.py sys PID [TPID]        "time busy steal own [cpu]": wall clock (us), CPU
                                         busy (user+nice+system) and steal of the whole
                                         machine, CPU of PID, its descendants and reaped
                                         children, and (cpu) that of TPID and descendants
       benchlib.py wrk FILE              parse a wrk --latency output:
                                         "rps p50_us p99_us errors requests"
       benchlib.py wsload FILE           parse the WSLOAD line of a wsload run:
                                         "msgs/s p50_us p99_us errors messages cpu_us"
       benchlib.py tlsload FILE          parse the TLSLOAD line of a tlsload run:
                                         "req/s p50_us p99_us errors requests cpu_us
                                         resumption version cipher group cert"
       benchlib.py fds PID               open descriptors of the worker processes under PID
                                         (as for rss)
       benchlib.py idle PORT N READYFILE open N keep-alive connections, one GET / on each,
                                         write the number that got a 200 to READYFILE,
                                         then hold them until killed
       benchlib.py report RESULTS        print the tables
"""
import os
import re
import signal
import socket
import statistics
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def free_ports(n, start):
    """N loopback TCP ports from START up that could be bound just now."""
    found = []
    port = start
    while len(found) < n and port < 65000:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            found.append(port)
        except OSError:
            pass
        finally:
            s.close()
        port += 1
    if len(found) < n:
        sys.exit("no free ports")
    return found


def freeports(n, start):
    print(" ".join(map(str, free_ports(n, start))))


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rfind(")") + 2:].split()


def tree(root):
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            ppid = int(_stat(d)[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_us(root):
    total = 0
    for p in tree(root):
        try:
            st = _stat(p)
            total += int(st[11]) + int(st[12])
        except (OSError, IndexError, ValueError):
            pass
    return total * 1_000_000 // HZ


def sysload(root, target=None):
    now = time.time()
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy, steal = v[0] + v[1] + v[2], v[7] if len(v) > 7 else 0
    own = cpu_us(root) * HZ // 1_000_000
    try:
        st = _stat(root)
        own += int(st[13]) + int(st[14])
    except (OSError, IndexError, ValueError):
        pass
    k = 1_000_000 // HZ
    extra = f" {cpu_us(target)}" if target else ""
    print(f"{int(now * 1_000_000)} {busy * k} {steal * k} {own * k}{extra}")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _vmrss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _workers(root):
    procs = tree(root)
    return [p for p in procs if "worker" in _cmdline(p)] or [root]


def rss_kib(root):
    return sum(_vmrss(p) for p in _workers(root))


def fds(root):
    n = 0
    for p in _workers(root):
        try:
            n += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            pass
    return n


UNITS = {"us": 1, "ms": 1000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}


def _time_us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def parse_wrk(path):
    with open(path, errors="replace") as f:
        out = f.read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    reqs = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    if not (rps and reqs):
        print("0 nan nan -1 0")
        return
    print(rps.group(1), _time_us(p50.group(1)) if p50 else "nan",
          _time_us(p99.group(1)) if p99 else "nan", errors, reqs.group(1))


def parse_wsload(path):
    """bench/wsload's summary line (key=value pairs after "WSLOAD")."""
    kv = {}
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("WSLOAD "):
                kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
    if not kv or "messages" not in kv:
        print("0 nan nan -1 0 -1")
        return
    msgs = int(kv["messages"])
    p50, p99 = (kv["p50_us"], kv["p99_us"]) if msgs else ("nan", "nan")
    print(kv["rate"], p50, p99, kv["errors"], msgs, kv.get("cpu_us", "-1"))


def parse_tlsload(path):
    """bench/tlsload's summary line (key=value pairs after "TLSLOAD")."""
    kv = {}
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("TLSLOAD "):
                kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
    if not kv or "requests" not in kv:
        print("0 nan nan -1 0 -1 nan - - - -")
        return
    reqs = int(kv["requests"])
    p50, p99 = (kv["p50_us"], kv["p99_us"]) if reqs else ("nan", "nan")
    hs = int(kv.get("handshakes", "0"))
    resumption = kv.get("resumption", "nan") if hs else "nan"
    print(kv["rate"], p50, p99, kv["errors"], reqs, kv.get("cpu_us", "-1"), resumption,
          *(kv.get(k, "-") or "-" for k in ("tls", "cipher", "group", "cert")))


def idle(port, n, readyfile):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 64) if hard != resource.RLIM_INFINITY else n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    socks, ok = [], 0
    req = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(req)
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("closed")
                buf += chunk
            head, _, body = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            need = int(m.group(1)) if m else 0
            while len(body) < need:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("closed")
                body += chunk
            if head.startswith(b"HTTP/1.1 200"):
                ok += 1
            socks.append(s)
        except OSError:
            pass
    # Count the ones still open (a server that closed them makes them readable with EOF).
    time.sleep(0.3)
    import select
    still = 0
    for s in socks:
        r, _, _ = select.select([s], [], [], 0)
        if not r:
            still += 1
    ok = min(ok, still)
    with open(readyfile + ".tmp", "w") as f:
        f.write(f"{ok}\n")
    os.rename(readyfile + ".tmp", readyfile)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


# ---------------------------------------------------------------- report

def fmt_us(us):
    if us != us:  # nan
        return "-"
    if us >= 1000:
        return f"{us / 1000:.2f}ms"
    return f"{us:.0f}us"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b and a == a and b == b else "-"


def paired_cpu(srows, me, t, m):
    """The CPU ratio of me to t round by round (each round runs the targets one after the
    other, so a machine that drifts over minutes moves both): median [min-max], when
    there are at least 3 rounds."""
    per = {}
    for r in srows:
        if r["method"] == m and r["reqs"] > 0 and r["cpu"] == r["cpu"] and r["cpu"] > 0:
            per.setdefault(r["rnd"], {})[r["target"]] = r["cpu"]
    rs = sorted(v[me] / v[t] for v in per.values() if me in v and t in v)
    if len(rs) < 3:
        return ""
    return f"   per round {statistics.median(rs):.2f} [{rs[0]:.2f}-{rs[-1]:.2f}]"


def report(path):
    rows = []     # run rows
    mems = []     # memory rows
    bigmems = []  # memory rows with ~10,000 idle connections (tunnels, keep-alive)
    notes = {}    # section -> title
    extra = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "run":
                _, sec, target, method, rnd, rps, p50, p99, err, reqs, cpu, other, steal = p[:13]
                # tlsload's handshake rows add the share of resumed handshakes
                resumed = float(p[13]) if len(p) > 13 else None
                rows.append(dict(sec=sec, target=target, method=method, rnd=rnd, rps=float(rps),
                                 p50=float(p50), p99=float(p99), err=int(err),
                                 reqs=int(reqs), cpu=float(cpu), other=float(other),
                                 steal=float(steal), resumed=resumed))
            elif p[0] == "section":
                notes[p[1]] = p[2]
            elif p[0] == "mem":
                mems.append(p[1:])
            elif p[0] == "bigmem":
                bigmems.append(p[1:])
            elif p[0] == "note":
                extra.append((p[1], p[2]))
    order = []
    for r in rows:
        if r["sec"] not in order:
            order.append(r["sec"])
    for sec in order:
        print()
        print(f"== {notes.get(sec, sec)}")
        srows = [r for r in rows if r["sec"] == sec]
        targets, methods = [], []
        for r in srows:
            if r["target"] not in targets:
                targets.append(r["target"])
            if r["method"] not in methods:
                methods.append(r["method"])
        # WebSocket sections count echoed messages, per number of connections; tlsload's
        # handshake sections count handshakes (one per request), per mode.
        unit, col = ("msg", "conns") if sec.startswith("ws") else ("req", "method")
        with_resumed = any(r["resumed"] is not None for r in srows)
        if with_resumed:
            unit, col = "hs", "mode"
        print(f"{'target':<19}{col:<7}{'n':>2}  {unit + '/s median [min-max]':<28}"
              f"{'p50':>9}{'p99':>9}{'errors':>8}{'CPU us/' + unit:>12}{'CPU busy':>10}"
              f"{'other CPU':>11}" + (f"{'resumed':>9}" if with_resumed else ""))
        med = {}
        for m in methods:
            for t in targets:
                rr = [r for r in srows if r["target"] == t and r["method"] == m]
                if not rr:
                    continue
                rps = [r["rps"] for r in rr]
                good = [r for r in rr if r["reqs"] > 0]
                mr = statistics.median(rps)
                p50 = statistics.median([r["p50"] for r in good]) if good else float("nan")
                p99 = statistics.median([r["p99"] for r in good]) if good else float("nan")
                cpu = statistics.median([r["cpu"] for r in good]) if good else float("nan")
                other = max(r["other"] + r["steal"] for r in rr)
                err = sum(r["err"] for r in rr)
                med[(t, m)] = (mr, cpu, p99)
                rng = f"{mr:.0f} [{min(rps):.0f}-{max(rps):.0f}]"
                res = ""
                if with_resumed:
                    rs = [r["resumed"] for r in good if r["resumed"] == r["resumed"]]
                    res = f"{statistics.median(rs) * 100:>8.1f}%" if rs else f"{'-':>9}"
                print(f"{t:<19}{m:<7}{len(rr):>2}  {rng:<28}{fmt_us(p50):>9}{fmt_us(p99):>9}"
                      f"{err:>8}{cpu:>12.2f}{cpu * mr / 1e6:>10.2f}{other:>11.2f}{res}")
        # ratios of the first "roundguard*" target to each other target
        rg = [t for t in targets if t.startswith("roundguard")]
        if rg:
            me = rg[0]
            for t in targets:
                for m in methods:
                    if t == me or (me, m) not in med or (t, m) not in med:
                        continue
                    a, b = med[(me, m)], med[(t, m)]
                    print(f"  {me + ' / ' + t:<38} {m:<5} {unit}/s {ratio(a[0], b[0]):>5}   "
                          f"CPU/{unit} {ratio(a[1], b[1]):>5}   p99 {ratio(a[2], b[2]):>5}"
                          f"{paired_cpu(srows, me, t, m)}")
        for nsec, text in extra:
            if nsec == sec:
                print(text)
    if mems:
        print()
        print("== memory: worker RSS with idle keep-alive connections held open (one GET / each)")
        print(f"{'target':<14}{'conns':>7}{'RSS before':>12}{'RSS open':>12}{'RSS/conn':>12}"
              f"{'delta/conn':>12}")
        for t, conns, before, during in mems:
            c, b, d = int(conns), int(before), int(during)
            per = f"{d * 1024 / c / 1024:.1f}KiB" if c else "-"
            delta = f"{(d - b) * 1024 / c / 1024:.2f}KiB" if c else "-"
            print(f"{t:<14}{c:>7}{b:>9}KiB{d:>9}KiB{per:>12}{delta:>12}")
    if bigmems:
        print()
        print(f"== {notes.get('bigmem', 'memory with ~10,000 idle connections')}")
        print(f"{'target':<14}{'idle connections':<20}{'open':>7}{'worker fds':>12}"
              f"{'RSS before':>12}{'RSS open':>12}{'delta/conn':>12}")
        kinds = {"ws": "WebSocket tunnels", "http": "HTTP keep-alive"}
        per = {}
        for t, kind, conns, nfds, before, during in bigmems:
            c, b, d = int(conns), int(before), int(during)
            per[(t, kind)] = (d - b) / c if c else float("nan")
            delta = f"{(d - b) / c:.2f}KiB" if c else "-"
            print(f"{t:<14}{kinds.get(kind, kind):<20}{c:>7}{nfds:>12}{b:>9}KiB{d:>9}KiB"
                  f"{delta:>12}")
        me = "roundguardd"
        for t in dict.fromkeys(r[0] for r in bigmems):
            if t == me:
                continue
            parts = [f"{kinds.get(k, k)} {ratio(per.get((me, k)), per.get((t, k))):>5}"
                     for k in kinds if (me, k) in per and (t, k) in per]
            if parts:
                print(f"  {me + ' / ' + t:<26} delta/conn: " + "   ".join(parts))
    for nsec, text in extra:
        if nsec not in order and nsec != "bigmem":
            print(text)
    for nsec, text in extra:
        if nsec == "bigmem" and bigmems:
            print(text)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "freeports":
        freeports(int(args[0]), int(args[1]))
    elif cmd == "tree":
        print(" ".join(map(str, tree(int(args[0])))))
    elif cmd == "cpu":
        print(cpu_us(int(args[0])))
    elif cmd == "rss":
        print(rss_kib(int(args[0])))
    elif cmd == "sys":
        sysload(int(args[0]), int(args[1]) if len(args) > 1 else None)
    elif cmd == "wrk":
        parse_wrk(args[0])
    elif cmd == "wsload":
        parse_wsload(args[0])
    elif cmd == "tlsload":
        parse_tlsload(args[0])
    elif cmd == "fds":
        print(fds(int(args[0])))
    elif cmd == "idle":
        idle(int(args[0]), int(args[1]), args[2])
    elif cmd == "report":
        report(args[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

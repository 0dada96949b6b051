#!/usr/bin/env python3
"""The manual pages against the code: options, configuration keys, metric families.

usage:
  check_docs.py options BINARY PAGE
      the options in PAGE's list (.It Fl ...) and SYNOPSIS are those BINARY --help shows,
      and PAGE's ENVIRONMENT names every variable the help names
  check_docs.py keys ROUNDGUARDD PAGE CONFIG_C EXAMPLE
      the keys in roundguardd.json(5) are those src/config.c's tables accept; each documented
      default passes "roundguardd -t"; unknown keys are refused; every key the example uses is
      documented, with the documented default as its value; the keys of list entries
      ("listeners[].tls.min_version", "backends[].url") are those of src/config_tls.c's tables
  check_docs.py metrics PAGE METRICS_C
      the families in roundguardd(8)'s METRICS are those src/metrics.c renders
"""
import json
import os
import re
import subprocess
import sys
import tempfile

# Keys whose value in examples/roundguardd.json is not the built-in default, and why.
EXAMPLE_NOT_DEFAULT = {
    "backends": "there is no default list",
}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def finish(what):
    if failures:
        print(f"{len(failures)} problem(s) in {what}")
        sys.exit(1)
    print(f"ok: {what}")
    sys.exit(0)


def clean_env():
    """The environment without the variables that override the configuration."""
    env = dict(os.environ)
    for var in ("LOG_LEVEL", "LOG_FORMAT", "PROXY_CHECK_DURATION"):
        env.pop(var, None)
    return env


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def mdoc_lines(page):
    """The page's lines, with the roff escapes the checks meet turned into text."""
    return [l.replace("\\(dq", '"').replace("\\&", "").replace("\\e", "\\")
            for l in read(page).splitlines()]


def section(lines, name):
    """The lines of one .Sh section."""
    out, inside = [], False
    for l in lines:
        if l.startswith(".Sh "):
            inside = l[4:].strip() == name
            continue
        if inside:
            out.append(l)
    return out


def fl_flags(tokens):
    """The flags named by the Fl macros in a list of mdoc tokens: "-c", "--config"."""
    flags = []
    for i, t in enumerate(tokens[:-1]):
        if t.lstrip(".") != "Fl":
            continue
        arg = tokens[i + 1]
        if arg.startswith("-"):
            flags.append("-" + arg)
        elif re.fullmatch(r"[A-Za-z0-9]+", arg):
            flags.extend("-" + ch for ch in arg)	# ".Op Fl tVh" groups short flags
    return flags


# ---- options ----

def help_options(binary):
    """(short or None, long) for every option line of --help, and the variables it names."""
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, env=clean_env(),
                       timeout=30)
    if r.returncode != 0:
        fail(f"{binary} --help exited {r.returncode}: {r.stderr.strip()}")
        return set(), set()
    pairs = set()
    env = set()
    for line in r.stdout.splitlines():
        m = re.match(r"^\s+(?:-([A-Za-z0-9]), )?--([a-z][a-z0-9-]*)", line)
        if m:
            pairs.add(("-" + m.group(1) if m.group(1) else None, "--" + m.group(2)))
        if line.startswith("Environment:"):
            env.update(re.findall(r"\b[A-Z][A-Z_]{2,}\b", line))
    if not pairs:
        fail(f"{binary} --help lists no options")
    return pairs, env


def page_options(lines):
    """(short or None, long) for every ".It Fl" entry of the page."""
    pairs = set()
    for l in lines:
        if not l.startswith(".It Fl"):
            continue
        flags = fl_flags(l.split())
        shorts = [f for f in flags if not f.startswith("--")]
        longs = [f for f in flags if f.startswith("--")]
        if len(shorts) > 1 or len(longs) != 1:
            fail(f"option entry not of the form '.It Fl x Ar arg , Fl -long Ar arg': {l}")
            continue
        pairs.add((shorts[0] if shorts else None, longs[0]))
    return pairs


def check_options(binary, page):
    name = os.path.basename(page)
    want, env = help_options(binary)
    lines = mdoc_lines(page)
    have = page_options(lines)
    show = lambda p: f"{p[0] + ', ' if p[0] else ''}{p[1]}"
    for p in sorted(want - have, key=str):
        fail(f"{name}: option {show(p)} is in --help but not in the page's option list")
    for p in sorted(have - want, key=str):
        fail(f"{name}: option {show(p)} is in the page but not in --help")
    synopsis = set(fl_flags(" ".join(section(lines, "SYNOPSIS")).split()))
    for short, long in sorted(want, key=str):
        if (short or long) not in synopsis:
            fail(f"{name}: SYNOPSIS does not show {short or long}")
    documented_env = {l.split()[2] for l in section(lines, "ENVIRONMENT")
                      if l.startswith(".It Ev ")}
    for var in sorted(env - documented_env):
        fail(f"{name}: --help names {var}, ENVIRONMENT does not")
    print(f"{name}: {len(have)} options, {len(documented_env)} environment variables")
    finish(f"{name} options")


# ---- configuration keys ----

def parser_keys(config_c):
    """Every key path src/config.c's field tables accept: "listen", "health_check.path", ...
    (a section's table may live in src/config_discover.c: "resolve")."""
    text = read(config_c)
    discover_c = os.path.join(os.path.dirname(config_c), "config_discover.c")
    if os.path.exists(discover_c):
        text += read(discover_c)
    tables = {}
    for m in re.finditer(r"(?:static )?const struct field (\w+)\[\] = \{(.*?)\n\};", text, re.S):
        entries = re.findall(r'\{\s*"([^"]+)",\s*(\w+),[^{}]*?,\s*(\w+)\s*\}', m.group(2))
        tables[m.group(1)] = entries
    if "top_fields" not in tables:
        fail(f"{config_c}: no top_fields table found")
        return set()
    keys = set()
    for key, fn, sub in tables["top_fields"]:
        if sub != "NULL":
            if sub not in tables:
                fail(f"{config_c}: table {sub} not found")
                continue
            keys.update(f"{key}.{k}" for k, _, _ in tables[sub])
        else:
            keys.add(key)
    return keys


# src/config_tls.c's tables: the key path each one's keys are documented under.
NESTED_TABLES = {
    "listener_fields": "listeners[].",
    "tls_fields": "listeners[].tls.",
    "cert_fields": "listeners[].tls.certificates[].",
    "backend_fields": "backends[].",
    "backend_tls_fields": "backends[].tls.",
}


def nested_parser_keys(config_tls_c):
    """"listeners[].tls.min_version", ...: the keys of the tables of list entries."""
    text = read(config_tls_c)
    keys = set()
    for table, prefix in NESTED_TABLES.items():
        m = re.search(r"static const struct field " + table + r"\[\] = \{(.*?)\n\};", text, re.S)
        if not m:
            fail(f"{config_tls_c}: no {table} table found")
            continue
        keys.update(prefix + k for k in re.findall(r'\{\s*"([^"]+)",', m.group(1)))
    return keys


def nested_page_keys(page):
    """The ".It Ic listeners[]..." and ".It Ic backends[]..." entries of the page."""
    return {m.group(1) for l in mdoc_lines(page)
            for m in [re.match(r"^\.It Ic ((?:listeners|backends)\[\][a-z_.\[\]]+) Pq ", l)] if m}


def page_keys(page):
    """{key path: default as JSON text, or None when required} from ".It Ic" entries."""
    keys = {}
    for l in mdoc_lines(page):
        m = re.match(r"^\.It Ic ([a-z_]+(?:\.[a-z_]+)?) Pq (.*)$", l)
        if not m:
            continue
        key, rest = m.groups()
        d = re.search(r"\bdefault Li (.+)$", rest)
        if d:
            keys[key] = d.group(1).strip()
        elif re.search(r"\brequired$", rest):
            keys[key] = None
        else:
            fail(f"{os.path.basename(page)}: {key}: neither 'default Li VALUE' nor 'required': {l}")
    return keys


def nest(path, value):
    """{"a": {"b": value}} for "a.b"."""
    doc = value
    for part in reversed(path.split(".")):
        doc = {part: doc}
    return doc


def config_test(roundguardd, doc, tmp):
    """(exit status, output) of roundguardd -t on doc, a JSON object or text."""
    path = os.path.join(tmp, "roundguardd.json")
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc if isinstance(doc, str) else json.dumps(doc))
    r = subprocess.run([roundguardd, "-t", "-c", path], capture_output=True, text=True,
                       env=clean_env(), timeout=30)
    return r.returncode, (r.stdout + r.stderr).strip()


def strip_comments(text):
    """JSON with // and /* */ comments (as json-c takes it) to plain JSON; strings are kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            i = text.find("*/", i + 2)
            i = n if i < 0 else i + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def leaf_paths(obj, prefix=""):
    """{"health_check.path": "/live", ...}: objects are walked, anything else is a leaf."""
    out = {}
    for k, v in obj.items():
        p = prefix + k
        if isinstance(v, dict):
            out.update(leaf_paths(v, p + "."))
        else:
            out[p] = v
    return out


def check_keys(roundguardd, page, config_c, example):
    name = os.path.basename(page)
    documented = page_keys(page)
    accepted = parser_keys(config_c)
    for k in sorted(accepted - documented.keys()):
        fail(f"{name}: key {k} is accepted by the parser but not documented")
    for k in sorted(documented.keys() - accepted):
        fail(f"{name}: key {k} is documented but not in src/config.c's tables")
    nested_accepted = nested_parser_keys(os.path.join(os.path.dirname(config_c), "config_tls.c"))
    nested_documented = nested_page_keys(page)
    for k in sorted(nested_accepted - nested_documented):
        fail(f"{name}: key {k} is accepted by the parser but not documented")
    for k in sorted(nested_documented - nested_accepted):
        fail(f"{name}: key {k} is documented but not in src/config_tls.c's tables")

    backend = ["http://127.0.0.1:8001"]
    sections = sorted({k.split(".")[0] for k in documented if "." in k})
    with tempfile.TemporaryDirectory() as tmp:
        for key, default in sorted(documented.items()):
            if default is None:
                doc = nest(key, backend)
            else:
                try:
                    value = json.loads(default)
                except ValueError:
                    fail(f"{name}: {key}: default {default} is not a JSON value")
                    continue
                doc = nest(key, value)
                if key != "backends":
                    doc["backends"] = backend
            rc, out = config_test(roundguardd, doc, tmp)
            if rc != 0 or out != "configuration OK":
                fail(f"{name}: {key}: the documented default {default or backend} is refused "
                     f"(exit {rc}): {out}")
        # Unknown keys, at the top and in each object, are refused and named.
        for key in ["no_such_key"] + [s + ".no_such_key" for s in sections]:
            doc = nest(key, 1)
            doc["backends"] = backend
            rc, out = config_test(roundguardd, doc, tmp)
            if rc != 1 or key not in out or "unknown key" not in out:
                fail(f"unknown key {key} not refused as such (exit {rc}): {out}")
        # The installed example itself.
        rc, out = config_test(roundguardd, read(example), tmp)
        if rc != 0 or out != "configuration OK":
            fail(f"{example} is refused (exit {rc}): {out}")

    try:
        used = leaf_paths(json.loads(strip_comments(read(example))))
    except ValueError as e:
        fail(f"{example}: cannot read it as JSON with comments: {e}")
        used = {}
    for key, value in sorted(used.items()):
        if key not in documented:
            fail(f"{example} uses {key}, which {name} does not document")
            continue
        if key in EXAMPLE_NOT_DEFAULT or documented[key] is None:
            continue
        if json.loads(documented[key]) != value:
            fail(f"{example}: {key} is {json.dumps(value)}, {name} says the default is "
                 f"{documented[key]} (the example says it shows the defaults)")
    for key, why in sorted(EXAMPLE_NOT_DEFAULT.items()):
        if key in used:
            print(f"note: {example}: {key} is not the default value: {why}")
    print(f"{name}: {len(documented)} keys documented, {len(accepted)} accepted, "
          f"{len(used)} used by the example; {len(nested_documented)} keys of list entries "
          f"documented, {len(nested_accepted)} accepted")
    finish(f"{name} keys")


# ---- metrics ----

def check_metrics(page, metrics_c):
    name = os.path.basename(page)
    rendered = set(re.findall(r"# TYPE ([a-z_:][a-z0-9_:]*) ", read(metrics_c)))
    documented = set()
    for l in section(mdoc_lines(page), "METRICS"):
        m = re.match(r"^\.It Li ([a-z_:][a-z0-9_:]*)", l)
        if m:
            documented.add(m.group(1))
    if not rendered:
        fail(f"{metrics_c}: no '# TYPE' lines found")
    for f in sorted(rendered - documented):
        fail(f"{name}: metric family {f} is rendered but not in METRICS")
    for f in sorted(documented - rendered):
        fail(f"{name}: METRICS documents {f}, which src/metrics.c does not render")
    print(f"{name}: {len(documented)} metric families")
    finish(f"{name} metrics")


def main(argv):
    if len(argv) == 4 and argv[1] == "options":
        check_options(argv[2], argv[3])
    elif len(argv) == 6 and argv[1] == "keys":
        check_keys(*argv[2:])
    elif len(argv) == 4 and argv[1] == "metrics":
        check_metrics(argv[2], argv[3])
    print(__doc__.strip(), file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)

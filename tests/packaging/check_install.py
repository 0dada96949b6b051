#!/usr/bin/env python3
"""What "meson install --destdir" puts in place, and whether it works there.

usage: check_install.py MODE --meson CMD --build DIR --prefix P --bindir D --sbindir D
                        --sysconfdir D --mandir D --datadir D --unitdir D
MODE:
  files     every installed file is there: binaries, units, manual pages, configuration
  verify    "systemd-analyze verify" is clean on the installed units
  security  "systemd-analyze security --offline=yes" exposure of roundguardd.service < 3.0
  example   the installed roundguardd accepts the installed example configuration
The directories are absolute, as the build configured them; --unitdir is empty when the
build installs no units (-Dsystemd_unit_dir=no).
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
EXPOSURE_MAX = 3.0
UNITS = ("roundguardd.service", "roundguard-echo@.service")


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def install(args, destdir):
    """meson install into destdir, without rebuilding (meson test has built everything)."""
    cmd = shlex.split(args.meson) + ["install", "-C", args.build, "--no-rebuild",
                                     "--destdir", destdir]
    r = run(cmd)
    if r.returncode != 0:
        print(f"FAIL: {' '.join(cmd)} exited {r.returncode}\n{r.stdout}{r.stderr}")
        sys.exit(1)


def under(destdir, path):
    """path (absolute, as installed) inside destdir."""
    return os.path.join(destdir, path.lstrip("/"))


def expected_files(args):
    """(path as installed, must be executable) for everything the build installs."""
    files = [
        (os.path.join(args.sbindir, "roundguardd"), True),
        (os.path.join(args.sbindir, "roundguardctl"), True),
        (os.path.join(args.bindir, "roundguard-echo"), True),
        (os.path.join(args.mandir, "man8", "roundguardd.8"), False),
        (os.path.join(args.mandir, "man8", "roundguardctl.8"), False),
        (os.path.join(args.mandir, "man8", "roundguard-echo.8"), False),
        (os.path.join(args.mandir, "man5", "roundguardd.json.5"), False),
        (os.path.join(args.sysconfdir, "roundguard", "roundguardd.json"), False),
        (os.path.join(args.datadir, "doc", "roundguard", "roundguard-alerts.yml"), False),
    ]
    if args.unitdir:
        files += [(os.path.join(args.unitdir, u), False) for u in UNITS]
    return files


def check_files(args, destdir):
    problems = 0
    for path, exe in expected_files(args):
        p = under(destdir, path)
        if not os.path.isfile(p):
            print(f"FAIL: {path} is not installed")
            problems += 1
        elif exe and not os.access(p, os.X_OK):
            print(f"FAIL: {path} is not executable")
            problems += 1
        elif not os.stat(p).st_mode & 0o004:
            # The unit runs as a dynamic user, which must read the configuration.
            print(f"FAIL: {path} is not readable by everyone (mode {os.stat(p).st_mode & 0o777:o})")
            problems += 1
        else:
            print(f"ok: {path}")
    if not args.unitdir:
        print("note: no units installed (-Dsystemd_unit_dir=no)")
        return problems
    # The units must name the installed programs and configuration, with nothing left over.
    want = {
        "roundguardd.service": [
            f"ExecStartPre={args.sbindir}/roundguardd -t -c {args.sysconfdir}/roundguard/roundguardd.json",
            f"ExecStart={args.sbindir}/roundguardd -c {args.sysconfdir}/roundguard/roundguardd.json --state-file %S/roundguardd/state.json",
        ],
        "roundguard-echo@.service": [f"ExecStart={args.bindir}/roundguard-echo -p %i"],
    }
    for unit, lines in want.items():
        p = under(destdir, os.path.join(args.unitdir, unit))
        if not os.path.isfile(p):
            continue
        text = open(p, encoding="utf-8").read().splitlines()
        for line in lines:
            if line not in text:
                print(f"FAIL: {unit} lacks the line {line}")
                problems += 1
        left = [l for l in text if re.search(r"@[a-z_]+@", l)]
        for l in left:
            print(f"FAIL: {unit}: unsubstituted: {l}")
            problems += 1
    return problems


def units_for_analyze(args, destdir, workdir):
    """
    Copies of the installed units whose commands point into destdir when the program is
    installed there, so that systemd-analyze finds them without installing anything into /.
    """
    copies = []
    for unit in UNITS:
        text = open(under(destdir, os.path.join(args.unitdir, unit)), encoding="utf-8").read()

        def relocate(m):
            path = m.group(2)
            inside = under(destdir, path)
            return m.group(1) + (inside if os.path.exists(inside) else path)

        text = re.sub(r"(?m)^(Exec[A-Za-z]+=[-@:+!]*)(/\S+)", relocate, text)
        copy = os.path.join(workdir, unit)
        with open(copy, "w", encoding="utf-8") as f:
            f.write(text)
        copies.append(copy)
    return copies


def systemd_analyze(args):
    """systemd-analyze's path, or None (after saying SKIP) when there is nothing to check."""
    if not args.unitdir:
        print("SKIP: the build installs no units (-Dsystemd_unit_dir=no)")
        return None
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        print("SKIP: systemd-analyze is not installed (Debian: apt-get install systemd, "
              "or scripts/deps test)")
    return analyze


def check_verify(args, destdir, workdir):
    analyze = systemd_analyze(args)
    if analyze is None:
        return SKIP
    units = units_for_analyze(args, destdir, workdir)
    env = dict(os.environ)
    cmd = [analyze, "verify"]
    # Documentation=man:... is checked with man(1), against the pages just installed.
    if shutil.which("man") is not None:
        env["MANPATH"] = under(destdir, args.mandir)
    else:
        print("note: man(1) is missing: Documentation= is not checked (--man=no)")
        cmd.append("--man=no")
    r = run(cmd + units, env=env)
    out = (r.stdout + r.stderr).strip()
    print(f"$ {' '.join(cmd)} {' '.join(os.path.basename(u) for u in units)}")
    if out:
        print(out)
    if r.returncode != 0 or out:
        print(f"FAIL: systemd-analyze verify exited {r.returncode}")
        return 1
    print("ok: systemd-analyze verify is clean")
    return 0


def check_security(args, destdir, workdir):
    analyze = systemd_analyze(args)
    if analyze is None:
        return SKIP
    problems = 0
    for unit in units_for_analyze(args, destdir, workdir):
        if "@" in os.path.basename(unit):
            # A template cannot be analysed as it is: name an instance of it.
            inst = os.path.join(workdir, os.path.basename(unit).replace("@", "@8001"))
            os.rename(unit, inst)
            unit = inst
        r = run([analyze, "security", "--offline=yes", "--no-pager", unit])
        out = r.stdout + r.stderr
        m = re.search(r"Overall exposure level for (\S+): ([0-9.]+) (\S+)", out)
        if m is None:
            if "--offline" in out or "unrecognized option" in out:
                print(f"SKIP: this systemd-analyze has no --offline (systemd 250 or later): "
                      f"{out.strip()}")
                return SKIP
            print(f"FAIL: no exposure level in the output of systemd-analyze security:\n{out}")
            return 1
        # The settings that still count against the unit, then the score.
        for line in out.splitlines():
            if line.startswith("\u2717"):
                print(line.rstrip())
        print(m.group(0))
        if float(m.group(2)) >= EXPOSURE_MAX:
            print(f"FAIL: {m.group(1)}: exposure {m.group(2)} is not below {EXPOSURE_MAX}")
            problems += 1
    return 1 if problems else 0


def check_example(args, destdir):
    binary = under(destdir, os.path.join(args.sbindir, "roundguardd"))
    config = under(destdir, os.path.join(args.sysconfdir, "roundguard", "roundguardd.json"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOG_LEVEL", "LOG_FORMAT", "PROXY_CHECK_DURATION")}
    r = run([binary, "-t", "-c", config], env=env)
    out = (r.stdout + r.stderr).strip()
    print(f"$ roundguardd -t -c {config}\n{out}")
    if r.returncode != 0 or r.stdout.strip() != "configuration OK":
        print(f"FAIL: the installed example is refused (exit {r.returncode})")
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["files", "verify", "security", "example"])
    for opt in ("meson", "build", "prefix", "bindir", "sbindir", "sysconfdir", "mandir",
                "datadir", "unitdir"):
        ap.add_argument("--" + opt, required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="roundguard-install.") as tmp:
        destdir = os.path.join(tmp, "root")
        workdir = os.path.join(tmp, "work")
        os.mkdir(workdir)
        install(args, destdir)
        if args.mode == "files":
            sys.exit(1 if check_files(args, destdir) else 0)
        if args.mode == "verify":
            sys.exit(check_verify(args, destdir, workdir))
        if args.mode == "security":
            sys.exit(check_security(args, destdir, workdir))
        sys.exit(check_example(args, destdir))


if __name__ == "__main__":
    main()

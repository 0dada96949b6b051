"""Certificates for the TLS tests, made at test time with the openssl command.

A throw-away CA signs leaf certificates (RSA or ECDSA P-256) for the names a
test asks for; an expired one is signed with explicit past dates (openssl ca,
since OpenSSL 3.0's x509 has no -not_after). Nothing here is secret: every
key lives in the test's temporary directory.
"""
import os
import subprocess

OPENSSL = "openssl"


def _run(args, cwd):
    proc = subprocess.run([OPENSSL] + args, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), proc.stderr.strip()))
    return proc.stdout


def _key_args(kind):
    if kind == "rsa":
        return ["-newkey", "rsa:2048"]
    if kind == "ec":
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    raise ValueError(kind)


class CA:
    """A CA in directory d (created), named name."""

    def __init__(self, d, name="Roundguard Test CA"):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.cert = os.path.join(d, "ca.pem")
        self.key = os.path.join(d, "ca.key")
        _run(["req", "-x509", "-nodes"] + _key_args("ec") +
             ["-keyout", self.key, "-out", self.cert, "-days", "30", "-subj", "/CN=" + name,
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)
        self._serial = 1000

    def issue(self, stem, names, kind="ec", expired=False, cn=None):
        """Sign a leaf for names (DNS names or IP literals); returns (chain_pem, key_pem).

        The chain file holds the leaf then the CA, as a server sends it.
        """
        self._serial += 1
        key = os.path.join(self.dir, stem + ".key")
        csr = os.path.join(self.dir, stem + ".csr")
        leaf = os.path.join(self.dir, stem + ".crt")
        chain = os.path.join(self.dir, stem + ".pem")
        ext = os.path.join(self.dir, stem + ".ext")
        sans = ",".join(("IP:" if _is_ip(n) else "DNS:") + n for n in names)
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n")
            f.write("keyUsage=critical,digitalSignature,keyEncipherment\n")
            f.write("extendedKeyUsage=serverAuth\n")
            if sans:
                f.write("subjectAltName=%s\n" % sans)
        subj = "/CN=" + (cn if cn is not None else (names[0] if names else stem))
        _run(["req", "-new", "-nodes"] + _key_args(kind) +
             ["-keyout", key, "-out", csr, "-subj", subj], self.dir)
        if expired:
            self._ca_sign(csr, leaf, ext, "20200101000000Z", "20200201000000Z")
        else:
            _run(["x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                  "-set_serial", str(self._serial), "-days", "30", "-sha256",
                  "-extfile", ext, "-out", leaf], self.dir)
        with open(chain, "w") as out:
            for part in (leaf, self.cert):
                with open(part) as f:
                    out.write(f.read())
        os.chmod(key, 0o600)
        return chain, key

    def _ca_sign(self, csr, leaf, ext, start, end):
        db = os.path.join(self.dir, "db")
        os.makedirs(os.path.join(db, "new"), exist_ok=True)
        index = os.path.join(db, "index.txt")
        if not os.path.exists(index):
            open(index, "w").close()
        conf = os.path.join(db, "ca.cnf")
        with open(conf, "w") as f:
            f.write("[ca]\ndefault_ca=t\n[t]\ndatabase=%s\nnew_certs_dir=%s\n"
                    "default_md=sha256\npolicy=p\nunique_subject=no\n"
                    "serial=%s\n[p]\ncommonName=supplied\n" %
                    (index, os.path.join(db, "new"), os.path.join(db, "serial")))
        with open(os.path.join(db, "serial"), "w") as f:
            f.write("%04X\n" % self._serial)
        _run(["ca", "-batch", "-notext", "-config", conf, "-cert", self.cert, "-keyfile", self.key,
              "-in", csr, "-out", leaf, "-startdate", start, "-enddate", end,
              "-extfile", ext], self.dir)


def _is_ip(name):
    return name.replace(".", "").isdigit() or ":" in name


def not_after(pem_path):
    """notAfter of the first certificate in a PEM file as Unix time, from openssl x509 -enddate."""
    import calendar
    import time
    out = _run(["x509", "-in", pem_path, "-noout", "-enddate"], None).strip()
    # "notAfter=Mar  7 12:34:56 2026 GMT"
    return calendar.timegm(time.strptime(out.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))


def fingerprint(pem_path):
    """SHA-256 fingerprint of the first certificate in a PEM file, as openssl prints it."""
    out = _run(["x509", "-in", pem_path, "-noout", "-fingerprint", "-sha256"], None)
    return out.strip().split("=", 1)[1].replace(":", "").lower()

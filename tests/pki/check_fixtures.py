#!/usr/bin/python3
"""Checks the fixtures make_grid_fixtures.py wrote to OUTDIR against their manifest.

Usage: check_fixtures.py OUTDIR

For every case:
  * `openssl verify -CApath ca_dir -crl_check_all -allow_proxy_certs [-untrusted chain] leaf`
    reports the manifest's openssl_error (null: it accepts), so a change in OpenSSL or in the
    generator that alters what a negative case exercises shows up here, not as a puzzling
    cmsfront test failure;
  * the credential files agree with each other, the combined file loads in Python's ssl
    (what requests' cert= uses) and curl sends it in a real handshake;
  * leaf_dn and user_dn match the certificates, and proxy subjects are their issuer's subject
    plus one CN, byte for byte (what cmsfront's legacy proxy check depends on).
Also checks the layout of ca_dir, the CRLs and the server certificates.

Exits 1 after listing every failed check.
"""

import base64
import datetime as dt
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time


def oid(dotted):
    """DER content bytes of an OBJECT IDENTIFIER."""
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        while p > 0x7F:
            p >>= 7
            chunk.append(0x80 | (p & 0x7F))
        out += bytes(reversed(chunk))
    return bytes(out)


OID_CN = oid("2.5.4.3")
OID_PROXY_CERT_INFO = oid("1.3.6.1.5.5.7.1.14")
OID_GT3_PROXY_CERT_INFO = oid("1.3.6.1.4.1.3536.1.222")
OID_LIMITED = oid("1.3.6.1.4.1.3536.1.1.1.9")
OID_SUBJECT_ALT_NAME = oid("2.5.29.17")
TAG_UTF8STRING = 0x0C
TAG_PRINTABLESTRING = 0x13


def tlv(data, pos=0):
    """(tag, content, end) of the DER element at pos."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, data[pos:pos + length], pos + length


def children(content):
    """(tag, content, raw element) of each element in a constructed value."""
    out, pos = [], 0
    while pos < len(content):
        tag, value, end = tlv(content, pos)
        out.append((tag, value, content[pos:end]))
        pos = end
    return out


class Cert:
    """Just enough of an X.509 certificate for the checks below."""

    def __init__(self, pem):
        self.pem = pem
        body = re.search(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S)
        self.der = base64.b64decode(body.group(1))
        tbs = children(tlv(tlv(self.der)[1])[1])
        if tbs[0][0] == 0xA0:  # explicit version
            tbs = tbs[1:]
        # serial, signature, issuer, validity, subject, subjectPublicKeyInfo, [3] extensions
        self.issuer = [rdn[2] for rdn in children(tbs[2][1])]
        self.subject = [rdn[2] for rdn in children(tbs[4][1])]
        self.extensions = {}
        for tag, value, _ in tbs[6:]:
            if tag == 0xA3:
                for _, ext, _ in children(tlv(value)[1]):
                    parts = children(ext)
                    self.extensions[parts[0][1]] = parts[-1][1]

    def last_rdn(self):
        """[(oid, tag, value)] of the subject's last RDN."""
        rdn = children(tlv(self.subject[-1])[1])
        return [tuple((c[0], c[1]) for c in children(atv[1])) for atv in rdn]

    def is_rfc_proxy(self):
        return OID_PROXY_CERT_INFO in self.extensions

    def is_limited(self):
        info = self.extensions.get(OID_PROXY_CERT_INFO, b"")
        last = self.last_rdn()
        return OID_LIMITED in info or (len(last) == 1 and last[0][1][1] == b"limited proxy")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def certs_in(text):
    return [Cert(m.group(0)) for m in
            re.finditer(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)]


def openssl_dn(path):
    out = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-subject", "-nameopt",
                          "esc_ctrl,utf8,-esc_msb,sep_multiline,sname"],
                         capture_output=True, text=True, check=True).stdout
    return "".join("/" + line.strip() for line in out.splitlines()[1:] if line.strip())


def openssl_verify(ca_dir, case):
    """(first error code or None, its message, the whole output)."""
    args = ["openssl", "verify", "-CApath", ca_dir, "-crl_check_all", "-allow_proxy_certs"]
    if os.path.getsize(case["chain"]):
        args += ["-untrusted", case["chain"]]
    proc = subprocess.run(args + [case["cert"]], capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    # `openssl verify` carries on past some errors (expiry, CRL expiry, invalid CA, ...); the
    # first one is what a TLS server, whose callback stops there, reports.
    m = re.search(r"error (\d+) at \d+ depth lookup: ?(.*)", output)
    if proc.returncode == 0:
        return None, "OK", output
    return (int(m.group(1)) if m else -1), (m.group(2) if m else "?"), output


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TLSServer:
    """openssl s_server that asks for (without requiring or judging) a client certificate and
    answers every request with a page that includes the certificate it received."""

    def __init__(self, manifest):
        self.port = free_port()
        servers = manifest["servers"]
        self.proc = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-www", "-quiet",
             "-cert", servers["server"]["cert"], "-key", servers["server"]["key"],
             "-servername", servers["server2"]["dns"][0],
             "-cert2", servers["server2"]["cert"], "-key2", servers["server2"]["key"],
             "-verify", "10"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("openssl s_server did not start")
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def client_cert_seen(page, leaf):
    """The certificate s_server -www reports it received, compared with the leaf we sent."""
    m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", page, re.S)
    return m is not None and Cert(m.group(0)).der == leaf.der


class Checker:
    def __init__(self, outdir):
        self.outdir = os.path.abspath(outdir)
        with open(os.path.join(self.outdir, "manifest.json"), encoding="utf-8") as f:
            self.manifest = json.load(f)
        self.ca_dir = self.manifest["ca_dir"]
        self.failures = []

    def check(self, condition, what):
        if not condition:
            self.failures.append(what)
        return condition

    def check_ca_dir(self):
        store_certs = []
        for name, ca in self.manifest["cas"].items():
            if not ca["in_ca_dir"]:
                self.check(not any(read(os.path.join(self.ca_dir, f)) == read(ca["cert"])
                                   for f in os.listdir(self.ca_dir) if f.endswith(".0")),
                           f"CA {name} must not be in ca_dir")
                continue
            base = os.path.join(self.ca_dir, ca["hash"])
            self.check(read(base + ".0") == read(ca["cert"]), f"{base}.0 is CA {name}")
            store_certs.append(Cert(read(ca["cert"])).der)
            for side in (".signing_policy", ".namespaces", ".info", ".crl_url"):
                self.check(os.path.isfile(base + side), f"{base}{side} exists")
            old = subprocess.run(["openssl", "x509", "-in", ca["cert"], "-noout",
                                  "-subject_hash_old"], capture_output=True, text=True,
                                 check=True).stdout.strip()
            link = os.path.join(self.ca_dir, old + ".0")
            self.check(os.path.islink(link) and os.readlink(link) == ca["hash"] + ".0",
                       f"{link} -> {ca['hash']}.0")
            self.check(os.path.exists(base + ".r0") == (ca["crl"] is not None),
                       f"{base}.r0 exists iff CA {name} has a CRL")
        self.store_certs = store_certs

        root_crl = self.manifest["cas"]["root"]["crl"]
        text = subprocess.run(["openssl", "crl", "-in", root_crl, "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout
        revoked = text.count("Serial Number:")
        self.check(revoked == self.manifest["revoked_count"] + 1,
                   f"root CRL lists {revoked} serials, want revoked_count + 1")

        now = dt.datetime.now(dt.timezone.utc)

        def stale_by(name):
            next_update = dt.datetime.strptime(self.manifest["cas"][name]["crl_next_update"],
                                               "%Y-%m-%dT%H:%M:%SZ")
            return now - next_update.replace(tzinfo=dt.timezone.utc)

        self.check(dt.timedelta(hours=1) < stale_by("gracecrl") < dt.timedelta(hours=24),
                   "gracecrl CRL is between 1 h and 24 h past nextUpdate")
        self.check(stale_by("stalecrl") >= dt.timedelta(days=3),
                   "stalecrl CRL is 3 days past nextUpdate")

    def check_case(self, name, case):
        ok = True
        leaf_text, key_text, chain_text = (read(case[k]) for k in ("cert", "key", "chain"))
        ok &= self.check(read(case["pem"]) == leaf_text + key_text + chain_text,
                         f"{name}: pem is cert + key + chain")
        leaf, chain = certs_in(leaf_text)[0], certs_in(chain_text)
        ok &= self.check(not any(c.der in self.store_certs for c in chain),
                         f"{name}: chain holds no CA of ca_dir")

        code, message, output = openssl_verify(self.ca_dir, case)
        ok &= self.check(code == case["openssl_error"],
                         f"{name}: openssl verify says {code} ({message}), manifest says "
                         f"{case['openssl_error']}\n{output}")
        ok &= self.check(case["openssl_reject_expected"] ==
                         (case["expect"] == "ok" and case["openssl_error"] is not None),
                         f"{name}: openssl_reject_expected")

        ok &= self.check(openssl_dn(case["cert"]) == case["leaf_dn"], f"{name}: leaf_dn")
        # The chain stops below the trust store, so its last certificate is the user's.
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as user:
            user.write((chain or [leaf])[-1].pem)
            user.flush()
            ok &= self.check(openssl_dn(user.name) == case["user_dn"], f"{name}: user_dn")

        presented = [leaf] + chain
        proxies = presented[:-1]  # everything before the user
        if case["kind"] != "certificate":
            ok &= self.check(len(proxies) >= 1, f"{name}: a proxy has a user certificate behind it")
        ok &= self.check((case["kind"] == "limited_proxy") == any(p.is_limited() for p in proxies),
                         f"{name}: kind {case['kind']} vs limited policy or CN")
        for cert, issuer in zip(proxies, presented[1:]):
            if name in ("proxy_bad_subject", "spliced_chain"):
                continue  # broken on purpose, see their notes
            ok &= self.check(cert.issuer == issuer.subject, f"{name}: proxy issuer name")
            last = cert.last_rdn()
            ok &= self.check(cert.subject[:-1] == issuer.subject and len(last) == 1
                             and last[0][0][1] == OID_CN,
                             f"{name}: proxy subject is its issuer's plus one CN, byte for byte")
        if name == "proxy_with_san":
            ok &= self.check(OID_SUBJECT_ALT_NAME in leaf.extensions, f"{name}: has a SAN")
        if name == "proxy_gt3":
            ok &= self.check(OID_GT3_PROXY_CERT_INFO in leaf.extensions and not leaf.is_rfc_proxy(),
                             f"{name}: GT3 proxyCertInfo only")
        if name == "user_utf8":
            types = [atv[1][0] for rdn in leaf.subject for atv in
                     [children(children(tlv(rdn)[1])[0][1])]]
            ok &= self.check(types[-1] == TAG_UTF8STRING and TAG_PRINTABLESTRING in types,
                             f"{name}: UTF8String for the non-ASCII CN, PrintableString elsewhere")
        return ok, code, leaf

    def check_tls(self, leaves):
        """One handshake per case and client: curl --cert and Python's ssl (what requests'
        cert= uses) with the combined file, openssl s_client with the separate ones. Each
        must send the case's leaf; for a case whose .pem is not loadable, curl and Python must
        refuse it while s_client still sends it."""
        server = TLSServer(self.manifest)
        url = f"https://localhost:{server.port}/"
        try:
            for name, case in self.manifest["cases"].items():
                leaf, loadable = leaves[name], case["pem_loadable"]
                curl = subprocess.run(["curl", "-sS", "--capath", self.ca_dir, "--cert",
                                       case["pem"], url], capture_output=True, text=True)
                sent = curl.returncode == 0 and client_cert_seen(curl.stdout, leaf)
                self.check(sent == loadable, f"{name}: curl --cert sent the leaf: {sent} "
                           f"(rc {curl.returncode}: {curl.stderr.strip()})")

                try:
                    context = ssl.create_default_context(capath=self.ca_dir)
                    context.load_cert_chain(case["pem"])
                    with socket.create_connection(("127.0.0.1", server.port)) as raw, \
                            context.wrap_socket(raw, server_hostname="localhost") as tls:
                        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
                        page = b"".join(iter(lambda: tls.recv(65536), b"")).decode("latin-1")
                    sent, error = client_cert_seen(page, leaf), ""
                except (OSError, ssl.SSLError) as e:
                    sent, error = False, str(e)
                self.check(sent == loadable, f"{name}: python ssl sent the leaf: {sent} {error}")

                args = ["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{server.port}",
                        "-CApath", self.ca_dir, "-cert", case["cert"], "-key", case["key"]]
                if os.path.getsize(case["chain"]):
                    args += ["-cert_chain", case["chain"]]
                s_client = subprocess.run(args, input="GET / HTTP/1.0\r\n\r\n",
                                          capture_output=True, text=True)
                self.check(client_cert_seen(s_client.stdout, leaf),
                           f"{name}: openssl s_client sent the leaf\n{s_client.stderr}")

            # The second SNI name gets the second certificate, which verifies for that name.
            host = self.manifest["servers"]["server2"]["dns"][0]
            curl = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--capath", self.ca_dir,
                                   "--resolve", f"{host}:{server.port}:127.0.0.1",
                                   f"https://{host}:{server.port}/"], capture_output=True,
                                  text=True)
            self.check(curl.returncode == 0, f"server2 for {host}: {curl.stderr}")
        finally:
            server.stop()

    def run(self):
        self.check_ca_dir()
        leaves = {}
        print(f"{'case':24} {'expect':14} {'kind':14} openssl")
        for name, case in self.manifest["cases"].items():
            ok, code, leaf = self.check_case(name, case)
            leaves[name] = leaf
            print(f"{name:24} {case['expect']:14} {case['kind']:14} "
                  f"{'ok' if code is None else code}{'' if ok else '   FAILED'}")
        self.check_tls(leaves)
        for failure in self.failures:
            print("FAIL:", failure, file=sys.stderr)
        print(f"{len(self.manifest['cases'])} cases, {len(self.failures)} failed checks")
        return not self.failures


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    sys.exit(0 if Checker(sys.argv[1]).run() else 1)


if __name__ == "__main__":
    main()

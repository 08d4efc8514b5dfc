#!/usr/bin/python3
"""Generates the grid X.509 test PKI for cmsfront: CAs in an IGTF-style hashed directory with
CRLs, user certificates, RFC 3820 / legacy / GT3 / VOMS proxies, and broken variants of all of
them, plus a manifest.json that says what each credential is and how it must be judged.

Usage: make_grid_fixtures.py OUTDIR [--revoked-count N] [--force]

Real grid tools make the proxies wherever they can (grid-proxy-init from globus-proxy-utils,
voms-proxy-fake from voms-clients), so the fixtures look like what users actually send;
`openssl ca` makes the certificates those tools cannot. tools/install-deps.sh installs both.

The run is skipped when OUTDIR/manifest.json was made by this version of the script with the
same --revoked-count and is still fresh ("fresh_until": every CA and valid credential has more
than a day left, and the gracecrl CRL is still inside its test window). A rebuild wipes OUTDIR,
so the script refuses to touch a non-empty OUTDIR it did not make. Runs on the same OUTDIR are
serialised with a lock file, so parallel test sessions can all call it.
"""

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import fcntl
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time

# Bump when the layout or the meaning of the manifest changes, so old fixtures get rebuilt.
# 2: a case's kind is limited_proxy when any proxy of its chain is limited (limited_signs_full).
FORMAT = 2

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

# RFC 3820 policy language of a Globus limited proxy.
LIMITED_POLICY_OID = "1.3.6.1.4.1.3536.1.1.1.9"

# OpenSSL's X509_V_ERR_* codes that the negative cases expect. They are part of the fixture
# specification: check_fixtures.py verifies that `openssl verify` still reports them.
ERR_UNABLE_TO_GET_CRL = 3
ERR_CERT_SIGNATURE_FAILURE = 7
ERR_CERT_NOT_YET_VALID = 9
ERR_CERT_HAS_EXPIRED = 10
ERR_CRL_HAS_EXPIRED = 12
ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
ERR_CERT_REVOKED = 23
ERR_INVALID_CA = 79  # renumbered in OpenSSL 3.0 (24 in 1.1)
ERR_UNHANDLED_CRITICAL_EXTENSION = 34
ERR_PROXY_PATH_LENGTH_EXCEEDED = 38
ERR_PROXY_SUBJECT_NAME_VIOLATION = 72

# The base of every user DN: CERN's layout, whose numeric CN in the middle is what breaks any
# "strip trailing /CN=<digits>" way of finding the user behind a proxy.
CERN_USERS = "/DC=ch/DC=cern/OU=Organic Units/OU=Users"

ROOT_DN = "/DC=ch/DC=cern/OU=cmsfront/CN=cmsfront grid test CA"
VOMS_HOST = "voms-cms.cmsfront.test"
VOMS_PORT = 15002
VOMS_FQAN = "/cms/Role=NULL/Capability=NULL"

# Lifetimes. Proxies get a day less than the user certificates because grid-proxy-init warns
# (and older versions shorten the proxy) when a proxy would outlive its issuer.
CERT_LIFETIME = 30 * DAY
PROXY_LIFETIME = 29 * DAY
# The gracecrl CRL went stale this long before the fixtures were made; tests expect it to be
# accepted with the default crl_grace (24 h) and refused with crl_grace = 1 h. The fixtures are
# rebuilt once it is GRACE_MAX_STALE stale, well before it would fall outside the 24 h.
GRACE_STALE_AT = 2 * HOUR
GRACE_MAX_STALE = 12 * HOUR

# Printable for ASCII, UTF8String otherwise (DC and emailAddress are always IA5String). This is
# what many IGTF CAs issue, and it is also how globus encodes the CN it appends to a proxy
# subject (PrintableString), so the proxies openssl makes below from -subj strings carry
# issuer names byte for byte equal to those of globus-made issuers. 0x2002 =
# B_ASN1_UTF8STRING | B_ASN1_PRINTABLESTRING.
STRING_MASK = "MASK:0x2002"

CA_EXT = """\
basicConstraints = critical, CA:true{pathlen}
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

USER_EXT = """\
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""

# No authorityKeyIdentifier: with one, OpenSSL would refuse the real root as issuer by key id
# (error 20) before it ever checks the signature; without, chain building picks the real root
# by name and the forgery is caught where it should be, by the signature (error 7). OpenSSL 3
# `ca` adds key identifiers unless told "none".
FORGED_USER_EXT = """\
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = none
"""

HOST_EXT = """\
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {eku}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {san}
"""

# Proxies as grid-proxy-init writes them: no basicConstraints, no key identifiers (which
# OpenSSL 3 `ca` would add by default).
LEGACY_PROXY_EXT = """\
keyUsage = critical, digitalSignature, keyEncipherment
subjectKeyIdentifier = none
authorityKeyIdentifier = none
"""

RFC_PROXY_EXT = LEGACY_PROXY_EXT + """\
proxyCertInfo = critical, language:{language}{pathlen}
"""

# The config every `openssl ca` run uses; each signer (CA, or the throwaway database of a
# proxy openssl makes) gets its own copy. sign() passes -preserveDN to keep the CSR's DN as it
# is (order, string types) instead of rebuilding it from the policy; OpenSSL 3.0 ignores the
# `preserve` config key that should do the same.
CA_CONFIG = """\
[ca]
default_ca = signer

[signer]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = yes
copy_extensions = none
crl_extensions = crl_ext

[policy_any]
commonName = optional

[crl_ext]
authorityKeyIdentifier = keyid:always
"""

REQ_CONFIG = f"""\
[req]
distinguished_name = dn
string_mask = {STRING_MASK}
prompt = no

[dn]
"""


class FixtureError(Exception):
    pass


def asn1_time(t):
    return t.strftime("%Y%m%d%H%M%SZ")


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def run(args, env=None):
    """Runs a tool and returns its stdout; on failure raises with everything it said."""
    proc = subprocess.run(args, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise FixtureError(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def write(path, text, mode=0o644):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def pem_blocks(path):
    """(type, text) of each PEM block in a file, in order."""
    with open(path, encoding="ascii") as f:
        text = f.read()
    return [(m.group(1), m.group(0) + "\n")
            for m in re.finditer(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", text, re.S)]


def same_pem(a, b):
    return "".join(a.split()) == "".join(b.split())


def parallel(*thunks):
    """Runs independent steps concurrently: most of the run time is RSA key generation inside
    openssl and the grid tools, which happily uses every core."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return [f.result() for f in [pool.submit(t) for t in thunks]]


@dataclasses.dataclass
class Cred:
    """A certificate with its key, and the certificates a client has to send after it (its
    issuers up to, not including, the first CA of the trust store)."""
    name: str
    cert: str
    key: str
    dn: str
    chain: tuple = ()

    def presented_chain(self):
        """What a proxy issued by this credential carries after itself."""
        return (self,) + self.chain


@dataclasses.dataclass
class CA:
    name: str
    dir: str
    cred: Cred
    in_store: bool
    crl: str = None
    crl_next_update: dt.datetime = None
    end: dt.datetime = None
    hash: str = None
    hash_old: str = None


class Builder:
    def __init__(self, outdir, revoked_count, now):
        self.out = outdir
        self.revoked_count = revoked_count
        self.now = now
        self.work = os.path.join(outdir, "work")
        self.ca_dir = os.path.join(outdir, "ca_dir")
        self.creds_dir = os.path.join(outdir, "creds")
        self.cases = {}
        self.cas = {}
        # Credentials that must stay valid while the fixtures are reused; see fresh_until.
        self.must_stay_valid = []
        self.rng = random.SystemRandom()
        for d in (self.work, self.ca_dir, self.creds_dir):
            os.makedirs(d)
        self.req_config = os.path.join(self.work, "req.cnf")
        write(self.req_config, REQ_CONFIG)
        # The grid tools read trust and random-seed locations from the environment; point
        # them into OUTDIR so nothing of the host (~/.globus, /etc/grid-security) leaks in.
        self.grid_env = dict(os.environ, X509_CERT_DIR=self.ca_dir,
                             RANDFILE=os.path.join(self.work, ".rnd"), HOME=self.work)
        for var in ("X509_USER_PROXY", "X509_USER_CERT", "X509_USER_KEY", "X509_VOMS_DIR"):
            self.grid_env.pop(var, None)

    # ---- building blocks -----------------------------------------------------------------

    def path(self, name, suffix):
        return os.path.join(self.work, name + suffix)

    def new_key(self, name, kind):
        """EC P-256 wherever the tools allow it (fast); RSA 2048 where they do not (see
        build())."""
        key = self.path(name, ".key")
        if kind == "ec":
            run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", key])
        else:
            run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", key])
        # globus refuses keys that others can read.
        os.chmod(key, 0o600)
        return key

    def csr(self, name, dn, key):
        csr = self.path(name, ".csr")
        run(["openssl", "req", "-config", self.req_config, "-new", "-utf8", "-key", key,
             "-subj", dn, "-out", csr])
        return csr

    def new_signer_db(self, directory, serial):
        os.makedirs(os.path.join(directory, "newcerts"), exist_ok=True)
        write(os.path.join(directory, "index.txt"), "")
        write(os.path.join(directory, "serial"), f"{serial:04X}\n")
        write(os.path.join(directory, "crlnumber"), "1000\n")
        config = os.path.join(directory, "openssl.cnf")
        write(config, CA_CONFIG.format(dir=directory))
        return config

    def sign(self, db_dir, name, csr, ext, start, end, issuer=None, issuer_key=None,
             serial=None):
        """Signs csr with `openssl ca` using the database in db_dir. issuer None: self-signed
        with issuer_key. serial, if given, overrides the database's next serial number."""
        if serial is not None:
            digits = f"{serial:X}"
            write(os.path.join(db_dir, "serial"), "0" * (len(digits) % 2) + digits + "\n")
        ext_file = self.path(name, ".ext")
        write(ext_file, "[ext]\n" + ext)
        cert = self.path(name, ".pem")
        args = ["openssl", "ca", "-batch", "-notext", "-preserveDN",
                "-config", os.path.join(db_dir, "openssl.cnf"),
                "-in", csr, "-out", cert, "-extfile", ext_file, "-extensions", "ext",
                "-startdate", asn1_time(start), "-enddate", asn1_time(end)]
        if issuer is None:
            args += ["-selfsign", "-keyfile", issuer_key]
        else:
            args += ["-cert", issuer.cert, "-keyfile", issuer_key or issuer.key]
        run(args)
        return cert

    def dn_of(self, cert):
        """Subject in OpenSSL's legacy slash form, with raw UTF-8 (X509_NAME_oneline would
        escape it as \\xC3\\xA9)."""
        out = run(["openssl", "x509", "-in", cert, "-noout", "-subject",
                   "-nameopt", "esc_ctrl,utf8,-esc_msb,sep_multiline,sname"])
        return "".join("/" + line.strip() for line in out.splitlines()[1:] if line.strip())

    def serial_of(self, cert):
        out = run(["openssl", "x509", "-in", cert, "-noout", "-serial"])
        return out.strip().split("=", 1)[1]

    # ---- CAs -----------------------------------------------------------------------------

    def make_ca(self, name, dn, key_kind="ec", parent=None, in_store=True, directory=None,
                stays_valid=True, key=None):
        directory = directory or os.path.join(self.out, "cas", name)
        self.new_signer_db(directory, 0x1000)
        key = key or self.new_key(name + "-ca", key_kind)
        csr = self.csr(name + "-ca", dn, key)
        # Backdated far enough that the expired user and the stale CRLs fall inside the CA's
        # own lifetime, as they would in real life.
        start, end = self.now - 90 * DAY, self.now + CERT_LIFETIME
        if parent is None:
            cert = self.sign(directory, name + "-ca", csr, CA_EXT.format(pathlen=""), start, end,
                             issuer_key=key)
        else:
            cert = self.sign(parent.dir, name + "-ca", csr, CA_EXT.format(pathlen=", pathlen:0"),
                             start, end, issuer=parent.cred)
        shutil.copy(cert, os.path.join(directory, "ca.pem"))
        shutil.copy(key, os.path.join(directory, "ca.key"))
        ca = CA(name, directory, Cred(name, os.path.join(directory, "ca.pem"),
                                      os.path.join(directory, "ca.key"), dn), in_store, end=end)
        self.cas[name] = ca
        if stays_valid:
            self.must_stay_valid.append(end)
        return ca

    def gen_crl(self, ca, last_update, next_update):
        crl = os.path.join(ca.dir, "crl.pem")
        run(["openssl", "ca", "-gencrl", "-config", os.path.join(ca.dir, "openssl.cnf"),
             "-cert", ca.cred.cert, "-keyfile", ca.cred.key, "-out", crl,
             "-crl_lastupdate", asn1_time(last_update), "-crl_nextupdate", asn1_time(next_update)])
        ca.crl, ca.crl_next_update = crl, next_update

    def revoke(self, ca, cred, when, reason="keyCompromise"):
        """Marks an issued certificate revoked in the CA's index.txt. Written directly rather
        than with `openssl ca -revoke`, which can only revoke "now", after the CRL's
        lastUpdate."""
        serial = self.serial_of(cred.cert)
        index = os.path.join(ca.dir, "index.txt")
        with open(index, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            fields = line.split("\t")
            if fields[3] == serial:
                fields[0], fields[2] = "R", f"{when.strftime('%y%m%d%H%M%SZ')},{reason}"
                lines[i] = "\t".join(fields)
                break
        else:
            raise FixtureError(f"serial {serial} of {cred.name} not in {index}")
        write(index, "\n".join(lines) + "\n")

    def add_bulk_revocations(self, ca, count):
        """Appends `count` revoked entries with random 16-byte serials (as real CAs use) to the
        index, so the CRL grows as large as production ones without issuing a certificate."""
        expiry = (self.now + CERT_LIFETIME).strftime("%y%m%d%H%M%SZ")
        seen = set()
        lines = []
        while len(lines) < count:
            # Top bit clear, next one set: positive in DER and always 16 bytes.
            serial = f"{self.rng.getrandbits(126) | (1 << 126):032X}"
            if serial in seen:
                continue
            seen.add(serial)
            revoked_at = self.now - dt.timedelta(seconds=self.rng.randint(86400, 30 * 86400))
            lines.append(f"R\t{expiry}\t{revoked_at.strftime('%y%m%d%H%M%SZ')}\t{serial}\tunknown\t"
                         f"/CN=cmsfront bulk revoked {len(lines) + 1}\n")
        with open(os.path.join(ca.dir, "index.txt"), "a", encoding="utf-8") as f:
            f.writelines(lines)

    def install_ca_dir(self):
        """Lays out ca_dir like /etc/grid-security/certificates: the files a CApath lookup
        uses (hash.0, hash.r0) and the IGTF side files a loader has to skip, plus a duplicate
        of each CA under its old (MD5) subject hash, as c_rehash used to make."""
        for ca in self.cas.values():
            if not ca.in_store:
                continue
            out = run(["openssl", "x509", "-in", ca.cred.cert, "-noout", "-hash",
                       "-subject_hash_old"]).split()
            ca.hash, ca.hash_old = out[0], out[1]
            base = os.path.join(self.ca_dir, ca.hash)
            if os.path.exists(base + ".0"):
                raise FixtureError(f"subject hash collision in ca_dir: {ca.hash}")
            shutil.copy(ca.cred.cert, base + ".0")
            if ca.hash_old != ca.hash:
                os.symlink(ca.hash + ".0", os.path.join(self.ca_dir, ca.hash_old + ".0"))
            if ca.crl:
                shutil.copy(ca.crl, base + ".r0")
            subject_prefix = "/".join(ca.cred.dn.split("/")[:3])  # /DC=ch/DC=cern
            write(base + ".signing_policy",
                  f"access_id_CA  X509  '{ca.cred.dn}'\npos_rights  globus  CA:sign\n"
                  f"cond_subjects  globus  '\"{subject_prefix}/*\"'\n")
            write(base + ".namespaces",
                  f'TO Issuer "{ca.cred.dn}" \\\n  PERMIT Subject "{subject_prefix}/.*"\n')
            write(base + ".info",
                  f"alias = cmsfront-test-{ca.name}\nstatus = unaccredited:test\n"
                  f"crl_url = https://ca.cmsfront.invalid/{ca.hash}.r0\n"
                  f"email = cmsfront-ca@cern.invalid\nsha1fp.0 = unused\n")
            write(base + ".crl_url", f"https://ca.cmsfront.invalid/{ca.hash}.r0\n")

    # ---- end-entity certificates ---------------------------------------------------------

    def make_cert(self, name, dn, ca, key, ext=USER_EXT, start=None, end=None,
                  stays_valid=True):
        start = start or self.now - HOUR
        end = end or self.now + CERT_LIFETIME
        cert = self.sign(ca.dir, name, self.csr(name, dn, key), ext, start, end, issuer=ca.cred)
        if stays_valid:
            self.must_stay_valid.append(end)
        return Cred(name, cert, key, dn)

    def openssl_proxy(self, name, issuer, subject_dn, ext, issuer_key=None, start=None):
        """A proxy (or any certificate signed by a non-CA) made with `openssl ca` and a
        throwaway database, for the shapes the grid tools refuse to make. The serial is the
        digits of the last CN when that is a number, as grid-proxy-init does it."""
        db = self.path(name, ".db")
        self.new_signer_db(db, 1)
        last_cn = subject_dn.rsplit("/CN=", 1)[-1]
        serial = int(last_cn) if last_cn.isdigit() else self.rng.randint(1 << 30, (1 << 31) - 1)
        start = start or self.now - HOUR
        key = self.new_key(name, "ec")
        cert = self.sign(db, name, self.csr(name, subject_dn, key), ext, start,
                         self.now + PROXY_LIFETIME, issuer=issuer, issuer_key=issuer_key,
                         serial=serial)
        return Cred(name, cert, key, subject_dn, issuer.presented_chain())

    def random_cn(self):
        return str(self.rng.randint(1 << 28, (1 << 31) - 1))

    def split_proxy_file(self, name, proxy_file, issuer):
        """Splits a grid tool's output (proxy, its key, then the chain) into separate files,
        checking that the chain the tool wrote is the one we expect to present."""
        blocks = pem_blocks(proxy_file)
        if len(blocks) < 2 or blocks[0][0] != "CERTIFICATE" or "PRIVATE KEY" not in blocks[1][0]:
            raise FixtureError(f"{proxy_file}: unexpected layout {[b[0] for b in blocks]}")
        cert, key = self.path(name, ".pem"), self.path(name, ".key")
        write(cert, blocks[0][1])
        write(key, blocks[1][1], 0o600)
        chain = issuer.presented_chain()
        written = [b[1] for b in blocks[2:]]
        expected = [open(c.cert, encoding="ascii").read() for c in chain]
        if len(written) != len(expected) or not all(map(same_pem, written, expected)):
            raise FixtureError(f"{proxy_file}: chain differs from the issuer's")
        return Cred(name, cert, key, self.dn_of(cert), chain)

    def issuer_bundle(self, name, issuer):
        """The issuer's certificate followed by its chain: grid-proxy-init copies whatever
        follows the first certificate of -cert into the new proxy file as its chain."""
        if not issuer.chain:
            return issuer.cert
        bundle = self.path(name, ".issuer")
        with open(bundle, "w", encoding="ascii") as out:
            for cred in issuer.presented_chain():
                with open(cred.cert, encoding="ascii") as f:
                    out.write(f.read())
        return bundle

    def grid_proxy(self, name, issuer, *options):
        out = self.path(name, ".proxy")
        run(["grid-proxy-init", "-q", "-bits", "2048", "-valid", f"{PROXY_LIFETIME // HOUR}:00",
             "-cert", self.issuer_bundle(name, issuer), "-key", issuer.key, "-certdir", self.ca_dir,
             "-out", out, *options], env=self.grid_env)
        return self.split_proxy_file(name, out, issuer)

    def voms_proxy(self, name, issuer, voms, *options):
        out = self.path(name, ".proxy")
        run(["voms-proxy-fake", "-q", "-rfc", "-bits", "2048", "-cert", issuer.cert,
             "-key", issuer.key, "-certdir", self.ca_dir, "-hostcert", voms.cert,
             "-hostkey", voms.key, "-voms", "cms", "-uri", f"{VOMS_HOST}:{VOMS_PORT}",
             "-fqan", VOMS_FQAN, "-out", out, *options], env=self.grid_env)
        return self.split_proxy_file(name, out, issuer)

    # ---- cases ---------------------------------------------------------------------------

    def add_case(self, cred, expect, kind, user, openssl_error, note, pem_loadable=True):
        name = cred.name
        paths = {k: os.path.join(self.creds_dir, f"{name}{k and '.' + k}.pem")
                 for k in ("", "cert", "key", "chain")}

        def read(path):
            with open(path, encoding="utf-8") as f:
                return f.read()

        leaf, key = read(cred.cert), read(cred.key)
        chain = "".join(read(c.cert) for c in cred.chain)
        # The combined file in the order curl --cert, requests' cert= and grid tools all read:
        # leaf, key, rest of the chain.
        write(paths[""], leaf + key + chain, 0o600)
        write(paths["cert"], leaf)
        write(paths["key"], key, 0o600)
        write(paths["chain"], chain)
        self.cases[name] = {
            "pem": paths[""], "cert": paths["cert"], "key": paths["key"], "chain": paths["chain"],
            "expect": expect, "kind": kind, "user_dn": user.dn, "leaf_dn": cred.dn,
            "openssl_error": openssl_error,
            # cmsfront accepts what `openssl verify` alone refuses (legacy proxies, CRL grace).
            "openssl_reject_expected": expect == "ok" and openssl_error is not None,
            # Whether curl --cert and requests' cert= can load the combined file at all.
            "pem_loadable": pem_loadable,
            "note": note,
        }

    def build(self):
        now = self.now

        # Keys first, all at once: RSA generation dominates the run time. grid-proxy-init
        # cannot make a proxy of a certificate whose own signature is ECDSA ("Certificate's
        # signing algorithm not supported by OpenSSL"), so the root that issues the proxy users
        # is RSA, and jdoe is RSA because grid-proxy-init also makes a proxy of jdoe's proxy.
        # Forgers use the victim's key type: OpenSSL 3 skips a candidate issuer whose key
        # type does not match the signature algorithm (error 20), and the forged cases should
        # get as far as the signature check (error 7).
        rsa = {"jdoe", "voms", "fakeroot", "attacker"}
        ec = {"utf8", "subuser", "graceuser", "bench", "revoked", "expired", "future",
              "nocrluser", "staleuser", "unknownuser", "forged", "server", "server2"}
        names = sorted(rsa) + sorted(ec)
        keys = dict(zip(names, parallel(*[
            (lambda n=n: self.new_key(n, "rsa" if n in rsa else "ec")) for n in names])))

        root = self.make_ca("root", ROOT_DN, key_kind="rsa")
        sub = self.make_ca("sub", "/DC=ch/DC=cern/OU=cmsfront/CN=cmsfront grid test sub CA",
                           parent=root)
        nocrl = self.make_ca("nocrl", "/DC=org/DC=cmsfront-test/CN=cmsfront CA without CRL")
        stale = self.make_ca("stalecrl", "/DC=org/DC=cmsfront-test/CN=cmsfront CA with stale CRL")
        grace = self.make_ca("gracecrl",
                             "/DC=org/DC=cmsfront-test/CN=cmsfront CA with CRL in grace")
        other = self.make_ca("other", "/DC=org/DC=elsewhere/CN=Some unknown grid CA",
                             in_store=False, directory=os.path.join(self.out, "other_ca"))
        # The root's twin: same name, another key. Kept in work/, trusted by nobody.
        fake_root = self.make_ca("fakeroot", ROOT_DN, in_store=False, key=keys["fakeroot"],
                                 directory=self.path("fakeroot", ".ca"), stays_valid=False)

        for server, host, san in (("server", "localhost", "DNS:localhost, IP:127.0.0.1"),
                                  ("server2", "cmsweb-testbed.localhost",
                                   "DNS:cmsweb-testbed.localhost")):
            cred = self.make_cert(server, f"/DC=ch/DC=cern/OU=computers/CN={host}", root,
                                  keys[server], HOST_EXT.format(eku="serverAuth", san=san))
            with open(os.path.join(self.out, server + ".pem"), "w", encoding="ascii") as f:
                # Leaf then chain, as SSL_CTX_use_certificate_chain_file reads it.
                for part in (cred.cert, root.cred.cert):
                    with open(part, encoding="ascii") as src:
                        f.write(src.read())
            shutil.copy(cred.key, os.path.join(self.out, server + ".key"))
            os.chmod(os.path.join(self.out, server + ".key"), 0o600)
        voms = self.make_cert("voms", f"/DC=ch/DC=cern/OU=computers/CN={VOMS_HOST}", root,
                              keys["voms"], HOST_EXT.format(eku="serverAuth, clientAuth",
                                                            san=f"DNS:{VOMS_HOST}"))
        vomsdir = os.path.join(self.out, "vomsdir", "cms")
        os.makedirs(vomsdir)
        write(os.path.join(vomsdir, VOMS_HOST + ".lsc"), f"{voms.dn}\n{root.cred.dn}\n")
        self.voms = voms

        def user(name, login, number, full_name, ca, key, suffix="", **kw):
            dn = f"{CERN_USERS}/CN={login}/CN={number}/CN={full_name}{suffix}"
            return self.make_cert(name, dn, ca, keys[key], **kw)

        jdoe = user("user", "jdoe", 123456, "John Doe", root, "jdoe")
        utf8 = user("user_utf8", "jmuller", 234567, "José Müller", root, "utf8")
        subuser = user("user_sub", "subuser", 345678, "Sub User", sub, "subuser",
                       suffix="/emailAddress=sub.user@cern.invalid")
        graceuser = user("user_gracecrl", "graceuser", 456789, "Grace User", grace, "graceuser")
        bench = user("user_ecdsa", "bench", 654321, "Bench User", root, "bench")
        revoked = user("revoked", "revoked", 900001, "Revoked User", root, "revoked",
                       start=now - 10 * DAY)
        expired = user("expired", "expired", 900002, "Expired User", root, "expired",
                       start=now - 60 * DAY, end=now - DAY, stays_valid=False)
        future = user("not_yet_valid", "future", 900003, "Future User", root, "future",
                      start=now + 7 * DAY, stays_valid=False)
        self.not_valid_before = now + 7 * DAY
        nocrluser = user("user_nocrl", "nocrluser", 900004, "No CRL User", nocrl, "nocrluser")
        staleuser = user("user_stalecrl", "staleuser", 900005, "Stale CRL User", stale, "staleuser")
        unknown = user("unknown_ca", "unknownuser", 900006, "Unknown CA User", other, "unknownuser")
        forged = user("forged_issuer", "forged", 900007, "Forged User", fake_root, "forged",
                      ext=FORGED_USER_EXT)

        rfc_ext = RFC_PROXY_EXT.format(language="id-ppl-inheritAll", pathlen="")
        bad_subject_dn = f"{CERN_USERS}/CN=admin/CN=100001/CN=Site Admin/CN={self.random_cn()}"
        # The attacker's own signing certificate: their key under the victim's name, so that
        # `openssl ca` can sign with it; the proxy then names jdoe as issuer.
        impostor = self.make_cert("spliced_signer", jdoe.dn, other, keys["attacker"],
                                  stays_valid=False)
        spliced_dn = f"{jdoe.dn}/CN={self.random_cn()}"

        # First-level proxies, in parallel: each grid tool run generates an RSA key.
        (proxy_rfc, proxy_legacy, limited_rfc, limited_legacy, proxy_voms, voms_expired,
         of_revoked, gt3, pathlen0, bad_subject, with_san, spliced) = parallel(
            lambda: self.grid_proxy("proxy_rfc", jdoe, "-rfc"),
            lambda: self.grid_proxy("proxy_legacy", jdoe, "-old"),
            lambda: self.grid_proxy("proxy_limited_rfc", jdoe, "-rfc", "-limited"),
            lambda: self.grid_proxy("proxy_limited_legacy", jdoe, "-old", "-limited"),
            lambda: self.voms_proxy("proxy_voms", jdoe, voms, "-hours", str(PROXY_LIFETIME // HOUR),
                                    "-vomslife", str(PROXY_LIFETIME // HOUR)),
            # Both the proxy and its AC were valid for a day, two days ago.
            lambda: self.voms_proxy("proxy_voms_expired", jdoe, voms, "-pastproxy", "48:00",
                                    "-hours", "24", "-pastac", "48:00", "-vomslife", "24"),
            lambda: self.grid_proxy("proxy_of_revoked", revoked, "-rfc"),
            lambda: self.grid_proxy("proxy_gt3", jdoe, "-draft"),
            # grid-proxy-init 7.3 accepts -path-length (and -policy/-pl) with -rfc but writes
            # "Path Length Constraint: infinite" regardless, so openssl makes the pathlen:0 one.
            lambda: self.openssl_proxy("pathlen0", jdoe, f"{jdoe.dn}/CN={self.random_cn()}",
                                       RFC_PROXY_EXT.format(language="id-ppl-inheritAll",
                                                            pathlen=", pathlen:0")),
            lambda: self.openssl_proxy("proxy_bad_subject", jdoe, bad_subject_dn, rfc_ext),
            lambda: self.openssl_proxy("proxy_with_san", jdoe, f"{jdoe.dn}/CN={self.random_cn()}",
                                       rfc_ext + "subjectAltName = DNS:cmsweb.cern.ch\n"),
            lambda: self.openssl_proxy("spliced_chain", impostor, spliced_dn, rfc_ext,
                                       issuer_key=keys["attacker"]),
        )
        # The impostor's certificate is only the attacker's signing tool; what the client
        # presents after the proxy is the victim's real certificate.
        spliced.chain = jdoe.presented_chain()

        (proxy_of_proxy, pathlen_exceeded, limited_signs_full, mixed_types) = parallel(
            lambda: self.grid_proxy("proxy_of_proxy", proxy_rfc, "-rfc"),
            lambda: self.grid_proxy("proxy_pathlen_exceeded", pathlen0, "-rfc"),
            # grid-proxy-init silently makes a proxy of a limited proxy limited, and refuses a
            # legacy proxy of an RFC one ("Couldn't create proxy certificate"): openssl it is.
            lambda: self.openssl_proxy("limited_signs_full", limited_rfc,
                                       f"{limited_rfc.dn}/CN={self.random_cn()}", rfc_ext),
            lambda: self.openssl_proxy("mixed_types", proxy_rfc, f"{proxy_rfc.dn}/CN=proxy",
                                       LEGACY_PROXY_EXT),
        )
        self.must_stay_valid.append(now + PROXY_LIFETIME)

        # CRLs. Revocation and bulk entries go into the index before the CRL is made.
        self.revoke(root, revoked, now - DAY)
        self.add_bulk_revocations(root, self.revoked_count)
        for ca in (root, sub, grace, stale):
            if ca is stale:
                self.gen_crl(ca, now - 10 * DAY, now - 3 * DAY)
            elif ca is grace:
                self.gen_crl(ca, now - 7 * DAY, now - GRACE_STALE_AT)
            else:
                self.gen_crl(ca, now - HOUR, now + CERT_LIFETIME)
        self.install_ca_dir()

        c = self.add_case
        # ---- accepted ----
        c(jdoe, "ok", "certificate", jdoe, None,
          "RSA user under root (grid-proxy-init needs RSA to proxy a proxy of it); DN has a "
          "numeric CN in the middle")
        c(utf8, "ok", "certificate", utf8, None, "last CN is a UTF8String with non-ASCII letters")
        c(subuser, "ok", "certificate", subuser, None,
          "user under the intermediate sub CA (both CRLs apply); DN ends in emailAddress")
        c(graceuser, "ok", "certificate", graceuser, ERR_CRL_HAS_EXPIRED,
          "its CA's CRL passed nextUpdate 2 hours before generation: cmsfront accepts it within "
          "crl_grace (default 24h) and refuses it with crl_grace = 1h; openssl has no grace")
        c(bench, "ok", "certificate", bench, None, "ECDSA P-256 user for benchmarks")
        c(proxy_rfc, "ok", "proxy", jdoe, None, "grid-proxy-init -rfc")
        c(proxy_legacy, "ok", "proxy", jdoe, ERR_INVALID_CA,
          "grid-proxy-init -old: /CN=proxy, no proxyCertInfo; openssl sees a certificate issued "
          "by a non-CA unless the proxy flag is set on it")
        c(limited_rfc, "ok", "limited_proxy", jdoe, None,
          f"grid-proxy-init -rfc -limited: policy language {LIMITED_POLICY_OID}")
        c(limited_legacy, "ok", "limited_proxy", jdoe, ERR_INVALID_CA,
          "grid-proxy-init -old -limited: /CN=limited proxy; openssl refuses as for proxy_legacy")
        c(proxy_of_proxy, "ok", "proxy", jdoe, None, "grid-proxy-init -rfc from proxy_rfc")
        c(proxy_voms, "ok", "proxy", jdoe, None,
          f"voms-proxy-fake -rfc: VOMS AC for vo cms ({VOMS_FQAN}) signed by the {VOMS_HOST} "
          "host certificate from root (vomsdir/ has its .lsc)")
        # ---- refused ----
        c(pathlen_exceeded, "bad_proxy", "proxy", jdoe, ERR_PROXY_PATH_LENGTH_EXCEEDED,
          "grid-proxy-init -rfc from an openssl-made proxy with pathlen:0 (grid-proxy-init 7.3 "
          "ignores -path-length)")
        c(voms_expired, "expired", "proxy", jdoe, ERR_CERT_HAS_EXPIRED,
          "voms-proxy-fake -pastproxy 48:00 -hours 24 (and the same for its AC)")
        c(bad_subject, "bad_proxy", "proxy", jdoe, ERR_PROXY_SUBJECT_NAME_VIOLATION,
          "openssl-made RFC proxy signed by jdoe but named after another user")
        c(with_san, "bad_proxy", "proxy", jdoe, ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
          "openssl-made RFC proxy with a subjectAltName, which RFC 3820 forbids. OpenSSL 3 "
          "marks such a proxy EXFLAG_INVALID, so no issuer matches it (20); curl --cert and "
          "Python's load_cert_chain refuse to load the .pem (SSL_CTX_use_certificate_chain_file "
          "trips over the error left queued), send it with openssl s_client -cert -key "
          "-cert_chain", pem_loadable=False)
        c(of_revoked, "revoked", "proxy", revoked, ERR_CERT_REVOKED,
          "grid-proxy-init -rfc from the user root's CRL revokes; needs CRL_CHECK_ALL")
        c(revoked, "revoked", "certificate", revoked, ERR_CERT_REVOKED,
          "revoked (keyCompromise) in root's CRL")
        c(forged, "bad_signature", "certificate", forged, ERR_CERT_SIGNATURE_FAILURE,
          "issuer name is root's, signed by another key; no authorityKeyIdentifier, so openssl "
          "picks the real root and fails the signature")
        c(spliced, "bad_signature", "proxy", jdoe, ERR_CERT_SIGNATURE_FAILURE,
          "RFC proxy named after jdoe (issuer and subject) but signed by another RSA key, "
          "presented with jdoe's real certificate as its chain")
        c(nocrluser, "crl_missing", "certificate", nocrluser, ERR_UNABLE_TO_GET_CRL,
          "its CA has no .r0 in ca_dir")
        c(staleuser, "crl_expired", "certificate", staleuser, ERR_CRL_HAS_EXPIRED,
          "its CA's CRL passed nextUpdate 3 days before generation")
        c(unknown, "unknown_ca", "certificate", unknown, ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
          "issued by other_ca, which is not in ca_dir")
        c(expired, "expired", "certificate", expired, ERR_CERT_HAS_EXPIRED,
          "notAfter a day before generation")
        c(future, "not_yet_valid", "certificate", future, ERR_CERT_NOT_YET_VALID,
          "notBefore a week after generation")
        # kind describes the whole chain: a chain with a limited proxy anywhere in it is a
        # limited_proxy credential, whatever its leaf claims.
        c(limited_signs_full, "bad_proxy", "limited_proxy", jdoe, None,
          "openssl-made full (inheritAll) RFC proxy issued by proxy_limited_rfc; openssl "
          "ignores policy languages and accepts it. kind is limited_proxy: the chain holds a "
          "limited proxy, though the leaf itself is a full one")
        c(mixed_types, "bad_proxy", "proxy", jdoe, ERR_INVALID_CA,
          "openssl-made legacy proxy (/CN=proxy, no proxyCertInfo) issued by proxy_rfc; openssl "
          "sees a certificate issued by a non-CA")
        c(gt3, "bad_proxy", "proxy", jdoe, ERR_UNHANDLED_CRITICAL_EXTENSION,
          "grid-proxy-init -draft: GT3 proxyCertInfo 1.3.6.1.4.1.3536.1.222, critical, which "
          "openssl does not know")

    def fresh_until(self):
        limits = [t - DAY for t in self.must_stay_valid]
        limits.append(self.not_valid_before - DAY)
        limits.append(self.cas["gracecrl"].crl_next_update + GRACE_MAX_STALE)
        return min(limits)

    def manifest(self):
        cas = {}
        for ca in self.cas.values():
            if ca.name == "fakeroot":
                continue
            cas[ca.name] = {
                "cert": ca.cred.cert, "key": ca.cred.key, "subject": ca.cred.dn,
                "in_ca_dir": ca.in_store, "hash": ca.hash,
                "crl": ca.crl, "crl_next_update": ca.crl_next_update and iso(ca.crl_next_update),
                "not_after": iso(ca.end),
            }
        servers = {
            "server": {"cert": os.path.join(self.out, "server.pem"),
                       "key": os.path.join(self.out, "server.key"),
                       "dns": ["localhost"], "ip": ["127.0.0.1"]},
            "server2": {"cert": os.path.join(self.out, "server2.pem"),
                        "key": os.path.join(self.out, "server2.key"),
                        "dns": ["cmsweb-testbed.localhost"], "ip": []},
        }
        return {
            "format": FORMAT,
            "revoked_count": self.revoked_count,
            "created": iso(self.now),
            "fresh_until": iso(self.fresh_until()),
            "ca_dir": self.ca_dir,
            "cas": cas,
            "servers": servers,
            "voms": {"vo": "cms", "fqan": VOMS_FQAN, "uri": f"{VOMS_HOST}:{VOMS_PORT}",
                     "host_cert": self.voms.cert, "host_dn": self.voms.dn,
                     "vomsdir": os.path.join(self.out, "vomsdir")},
            "cases": self.cases,
        }


def manifest_paths(manifest):
    yield manifest["ca_dir"]
    for case in manifest["cases"].values():
        yield from (case[k] for k in ("pem", "cert", "key", "chain"))
    for server in manifest["servers"].values():
        yield from (server["cert"], server["key"])


def still_fresh(outdir, revoked_count, now):
    try:
        with open(os.path.join(outdir, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        fresh_until = dt.datetime.strptime(manifest["fresh_until"], "%Y-%m-%dT%H:%M:%SZ")
        return (manifest.get("format") == FORMAT
                and manifest.get("revoked_count") == revoked_count
                and fresh_until.replace(tzinfo=dt.timezone.utc) > now
                and all(os.path.exists(p) for p in manifest_paths(manifest)))
    except (OSError, ValueError, KeyError, TypeError):
        return False


MARKER = ".made-by-make_grid_fixtures"
LOCK = ".lock"


def check_ours(outdir):
    """A rebuild empties OUTDIR; refuse unless it is empty or ours: a typo must not wipe $HOME."""
    entries = set(os.listdir(outdir)) - {LOCK}
    if entries and MARKER not in entries and "manifest.json" not in entries:
        raise FixtureError(f"{outdir} is not empty and was not made by this script; "
                           "not touching it")
    return entries


def clear(outdir):
    entries = check_ours(outdir)
    # The manifest goes first, so that an interrupted rebuild never looks complete.
    for name in ["manifest.json"] + sorted(entries - {"manifest.json"}):
        path = os.path.join(outdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--revoked-count", type=int, default=0,
                        help="extra random serials in the root CA's CRL (default 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even if still fresh")
    args = parser.parse_args()
    if args.revoked_count < 0:
        parser.error("--revoked-count must be >= 0")
    for tool in ("openssl", "grid-proxy-init", "voms-proxy-fake"):
        if shutil.which(tool) is None:
            sys.exit(f"make_grid_fixtures: {tool} not found; run tools/install-deps.sh")

    outdir = os.path.abspath(args.outdir)
    started = time.monotonic()
    try:
        os.makedirs(outdir, exist_ok=True)
        check_ours(outdir)  # before the lock file lands in someone else's directory
        with open(os.path.join(outdir, LOCK), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Whole seconds: certificate times have no fractions, and the manifest repeats them.
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            if not args.force and still_fresh(outdir, args.revoked_count, now):
                print(f"make_grid_fixtures: {outdir} is up to date")
                return
            clear(outdir)
            write(os.path.join(outdir, MARKER), "")
            builder = Builder(outdir, args.revoked_count, now.replace(tzinfo=None))
            builder.build()
            tmp = os.path.join(outdir, "manifest.json.tmp")
            write(tmp, json.dumps(builder.manifest(), indent=2, ensure_ascii=False) + "\n")
            os.replace(tmp, os.path.join(outdir, "manifest.json"))
    except (FixtureError, OSError) as e:
        sys.exit(f"make_grid_fixtures: {e}")
    print(f"make_grid_fixtures: {len(builder.cases)} cases in {outdir} "
          f"({time.monotonic() - started:.1f}s)")


if __name__ == "__main__":
    main()

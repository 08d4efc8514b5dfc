#!/usr/bin/python3
"""Backend-side checks of the CMS identity headers a frontend adds (contract sections 1.2, 1.3),
written from the contract only: nothing here calls or imports cmsfront's code.

Two verifiers, because the backends in production compute two different things:

  verify(headers, key)      what a WMCore (Python 3, CherryPy) backend computes
                            (WMCore/REST/Auth.py user_info_from_headers): the header values are
                            str decoded from the wire bytes as Latin-1 (what cheroot does), the
                            lengths are counted in those characters, and the message is encoded
                            as UTF-8 before the HMAC. Over ASCII this is the contract's HMAC; a
                            non-ASCII value signed over its raw UTF-8 bytes does NOT verify here
                            (the "known trap" of section 1.3).
  verify_raw(headers, key)  the byte-exact variant (Go backends, the contract's own definition):
                            names and values are the wire bytes, lengths in bytes.

Both return a Result: ok, reason ("missing status", "status not OK", "missing hmac",
"duplicate header", "hmac mismatch", "bad role item"), the identity (status, method, dn, login,
name, roles: {role: [item, ...]}), and the expected/received HMAC and the message, so a failing
test can say why.

Signing helpers for tests (a test backend must be able to hand-sign a request):
  sign_raw(headers, key)       the contract's HMAC over the raw bytes
  sign_cherrypy(headers, key)  the HMAC a CherryPy backend expects for the same wire bytes
  message_raw / message_cherrypy  the signed messages themselves

self_check() runs the contract's test vectors (A, C with and without the newline, E) through
both verifiers and the signers; `python3 cms_auth_check.py` runs it.
"""

import hashlib
import hmac as _hmac
import sys
from dataclasses import dataclass, field

SIGNED_PREFIXES = ("cms-authn", "cms-authz")
HMAC_HEADER = "cms-authn-hmac"
STATUS_HEADER = "cms-auth-status"


@dataclass
class Result:
    ok: bool
    reason: str = ""
    status: object = None
    method: object = None
    dn: object = None
    login: object = None
    name: object = None
    roles: dict = field(default_factory=dict)
    expected: str = ""   # the HMAC this verifier computed ("" when it did not get that far)
    received: str = ""   # the cms-authn-hmac value received
    message: object = None  # the signed message (str for verify, bytes for verify_raw)

    def identity(self):
        return {"status": self.status, "method": self.method, "dn": self.dn,
                "login": self.login, "name": self.name, "roles": self.roles}


def _items(headers):
    """(name, value) pairs from a dict or from an iterable of pairs."""
    if hasattr(headers, "items"):
        return list(headers.items())
    return list(headers)


def _is_signed(lower_name):
    # The test is on the first 9 characters: cms-auth-status / cms-auth-cert are not signed.
    return lower_name[0:9] in SIGNED_PREFIXES and lower_name != HMAC_HEADER


def _lowered(pairs, lower):
    """{lowercased name: value}; None when one name occurs twice (whatever its case)."""
    seen = {}
    for name, value in pairs:
        key = lower(name)
        if key in seen:
            return None
        seen[key] = value
    return seen


# ---- the CherryPy (str, Latin-1) variant ------------------------------------------------------

def message_cherrypy(headers):
    """The message a WMCore backend signs: headers are {name: str value} as CherryPy gives them
    (values decoded from the wire as Latin-1)."""
    lowered = _lowered(_items(headers), str.lower)
    if lowered is None:
        raise ValueError("duplicate header")
    prefix = suffix = ""
    for name in sorted(lowered):
        if _is_signed(name):
            value = lowered[name]
            prefix += "h%xv%x" % (len(name), len(value))
            suffix += "%s%s" % (name, value)
    return prefix + "#" + suffix


def sign_cherrypy(headers, key):
    return _hmac.new(key, message_cherrypy(headers).encode("utf-8"), hashlib.sha1).hexdigest()


def _parse_roles(lowered, decode):
    roles = {}
    for name in sorted(lowered):
        text = decode(name)
        if text.startswith("cms-authz-"):
            items = decode(lowered[name]).split()
            for item in items:
                kind, sep, _ = item.partition(":")
                if not sep or kind not in ("group", "site"):
                    raise ValueError(item)
            roles[text[len("cms-authz-"):]] = items
    return roles


def _check(lowered, key, status_name, hmac_name, message_of, decode, field_of):
    result = Result(ok=False)
    if lowered is None:
        result.reason = "duplicate header"
        return result
    result.status = field_of(status_name)
    result.method = field_of("cms-authn-method")
    result.dn = field_of("cms-authn-dn")
    result.login = field_of("cms-authn-login")
    result.name = field_of("cms-authn-name")
    if result.status is None:
        result.reason = "missing status"
        return result
    if decode(result.status) not in ("OK", "NONE"):
        result.reason = "status not OK"
        return result
    received = field_of(hmac_name)
    if received is None:
        result.reason = "missing hmac"
        return result
    result.received = decode(received)
    result.message = message_of()
    result.expected = _hmac.new(key, result.message if isinstance(result.message, bytes)
                                else result.message.encode("utf-8"), hashlib.sha1).hexdigest()
    if not _hmac.compare_digest(result.expected, result.received):
        result.reason = "hmac mismatch"
        return result
    try:
        result.roles = _parse_roles(lowered, decode)
    except ValueError as e:
        result.reason = "bad role item %s" % e
        return result
    result.ok = True
    return result


def verify(headers, key):
    """WMCore/CherryPy verification. headers: {name: str} (any case; values as CherryPy decoded
    them, i.e. Latin-1), key: bytes. Unlike WMCore, a NONE status is checked too: the frontend
    signs the NONE block (cms-authn-method: None), so it must verify."""
    pairs = _items(headers)
    lowered = _lowered(pairs, str.lower)
    return _check(lowered, key, STATUS_HEADER, HMAC_HEADER,
                  lambda: message_cherrypy(pairs), lambda v: v,
                  lambda n: lowered.get(n))


# ---- the byte-exact variant --------------------------------------------------------------------

def _as_bytes(x):
    return x if isinstance(x, bytes) else x.encode("utf-8")


def _raw_pairs(headers):
    return [(_as_bytes(n), _as_bytes(v)) for n, v in _items(headers)]


def message_raw(headers):
    """The contract's message over raw bytes; headers: {bytes: bytes} or pairs (str is taken
    as UTF-8)."""
    lowered = _lowered(_raw_pairs(headers), bytes.lower)
    if lowered is None:
        raise ValueError("duplicate header")
    prefix = suffix = b""
    for name in sorted(lowered):
        if _is_signed(name.decode("latin-1")):
            value = lowered[name]
            prefix += b"h%xv%x" % (len(name), len(value))
            suffix += name + value
    return prefix + b"#" + suffix


def sign_raw(headers, key):
    return _hmac.new(key, message_raw(headers), hashlib.sha1).hexdigest()


def verify_raw(headers, key):
    """Byte-exact verification (Go-like). headers: {bytes: bytes} or pairs; key: bytes. The
    identity fields of the Result are bytes."""
    pairs = _raw_pairs(headers)
    lowered = _lowered(pairs, bytes.lower)
    return _check(lowered, key, STATUS_HEADER.encode(), HMAC_HEADER.encode(),
                  lambda: message_raw(pairs), lambda v: v.decode("latin-1"),
                  lambda n: lowered.get(n.encode() if isinstance(n, str) else n))


# ---- the contract's test vectors ---------------------------------------------------------------

VECTOR_KEY = b"0123456789abcdefghij"
VECTOR_A = {
    "cms-authn-method": "X509Proxy",
    "cms-authn-dn": "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe",
    "cms-authn-login": "jdoe",
    "cms-authn-name": "John Doe",
    "cms-authz-admin": "group:das group:reqmgr",
    "cms-authz-operator": "group:dbs site:t1-ch-cern",
}
VECTOR_A_PREFIX = "hcv46hfv4h10v9hev8hfv16h12v19#cms-authn-dn/DC=ch/"
VECTOR_A_HMAC = "978045a91ebbdc60e5bb8b9d2b6dcf86d6ffd00b"
VECTOR_C = {"cms-authn-method": "X509Cert", "cms-authn-login": "jdoe"}
VECTOR_C_MESSAGE = "hfv4h10v8#cms-authn-loginjdoecms-authn-methodX509Cert"
VECTOR_C_HMAC = "bb701cfc7ba7a8ecce6dcc5c12a0af10f626f049"
VECTOR_C_HMAC_KEY_NEWLINE = "562ef8ea6652ac1adbf683e9c9ddd6f4dd673023"
VECTOR_E = {"cms-authn-method": "None"}
VECTOR_E_MESSAGE = "h10v4#cms-authn-methodNone"
VECTOR_E_HMAC = "e9322c689744a1dc68d83d4648705535f2c98bc3"


def signed(headers, status, hmac_value, extra=()):
    """headers plus cms-auth-status, cms-authn-hmac and extra unsigned pairs, as a dict."""
    out = dict(headers)
    out["cms-auth-status"] = status
    out["cms-authn-hmac"] = hmac_value
    out.update(dict(extra))
    return out


def self_check():
    """Runs the contract's vectors; returns a list of failure descriptions (empty: all good)."""
    failures = []

    def expect(what, got, want):
        if got != want:
            failures.append("%s: got %r, want %r" % (what, got, want))

    key = VECTOR_KEY
    expect("A message prefix", message_cherrypy(VECTOR_A)[:len(VECTOR_A_PREFIX)], VECTOR_A_PREFIX)
    expect("A message raw prefix", message_raw(VECTOR_A)[:len(VECTOR_A_PREFIX)],
           VECTOR_A_PREFIX.encode())
    expect("A cherrypy hmac", sign_cherrypy(VECTOR_A, key), VECTOR_A_HMAC)
    expect("A raw hmac", sign_raw(VECTOR_A, key), VECTOR_A_HMAC)
    expect("C message", message_cherrypy(VECTOR_C), VECTOR_C_MESSAGE)
    expect("C raw message", message_raw(VECTOR_C), VECTOR_C_MESSAGE.encode())
    expect("C hmac", sign_cherrypy(VECTOR_C, key), VECTOR_C_HMAC)
    expect("C raw hmac", sign_raw(VECTOR_C, key), VECTOR_C_HMAC)
    expect("C hmac, key + newline", sign_cherrypy(VECTOR_C, key + b"\n"),
           VECTOR_C_HMAC_KEY_NEWLINE)
    expect("C raw hmac, key + newline", sign_raw(VECTOR_C, key + b"\n"),
           VECTOR_C_HMAC_KEY_NEWLINE)
    expect("E message", message_cherrypy(VECTOR_E), VECTOR_E_MESSAGE)
    expect("E hmac", sign_cherrypy(VECTOR_E, key), VECTOR_E_HMAC)
    expect("E raw hmac", sign_raw(VECTOR_E, key), VECTOR_E_HMAC)

    # Full verification of each vector, as a CherryPy backend (title-cased names, the unsigned
    # headers present) and byte-exact.
    for label, headers, status, digest in (("A", VECTOR_A, "OK", VECTOR_A_HMAC),
                                           ("C", VECTOR_C, "OK", VECTOR_C_HMAC),
                                           ("E", VECTOR_E, "NONE", VECTOR_E_HMAC)):
        full = signed(headers, status, digest,
                      [("cms-auth-cert", headers.get("cms-authn-dn", "")),
                       ("cms-request-uri", "/x")])
        titled = {n.title(): v for n, v in full.items()}
        result = verify(titled, key)
        expect("%s verify" % label, (result.ok, result.reason), (True, ""))
        raw = {n.encode(): v.encode() for n, v in full.items()}
        result = verify_raw(raw, key)
        expect("%s verify_raw" % label, (result.ok, result.reason), (True, ""))
        tampered = dict(titled)
        tampered["Cms-Authn-Method"] += "x"
        expect("%s tampered" % label, verify(tampered, key).reason, "hmac mismatch")
        expect("%s wrong key" % label, verify(titled, key + b"\n").reason, "hmac mismatch")
    result = verify(signed(VECTOR_A, "OK", VECTOR_A_HMAC), key)
    expect("A roles", result.roles, {"admin": ["group:das", "group:reqmgr"],
                                     "operator": ["group:dbs", "site:t1-ch-cern"]})
    expect("A login", result.login, "jdoe")
    return failures


if __name__ == "__main__":
    problems = self_check()
    for p in problems:
        print("FAIL", p)
    print("ok" if not problems else "%d failures" % len(problems))
    sys.exit(1 if problems else 0)

"""cmsfront-hmac, the operator's HMAC tool: the contract's vectors (section 1.3) through its
arguments and standard input, --verify's exit status, both encodings for a non-ASCII user, and
its key errors.

The binary is $CMSFRONT_HMAC_BIN, else cmsfront-hmac next to $CMSFRONT_BIN (default
build/cmsfront), so tools/test.sh tests the release and the sanitizer build alike.
"""

import os
import subprocess
from pathlib import Path

import pytest

import harness

BIN = os.environ.get("CMSFRONT_HMAC_BIN", str(Path(harness.BIN).parent / "cmsfront-hmac"))

KEY = b"0123456789abcdefghij"
VECTOR_A = [
    "cms-authn-method: X509Proxy",
    "cms-authn-dn: /DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jdoe/CN=123456/CN=John Doe",
    "cms-authn-login: jdoe",
    "cms-authn-name: John Doe",
    "cms-authz-admin: group:das group:reqmgr",
    "cms-authz-operator: group:dbs site:t1-ch-cern",
]
VECTOR_A_PREFIX = "hcv46hfv4h10v9hev8hfv16h12v19#cms-authn-dn/DC=ch/"
VECTOR_A_HMAC = "978045a91ebbdc60e5bb8b9d2b6dcf86d6ffd00b"
VECTOR_C_MESSAGE = "hfv4h10v8#cms-authn-loginjdoecms-authn-methodX509Cert"
VECTOR_C_HMAC = "bb701cfc7ba7a8ecce6dcc5c12a0af10f626f049"
VECTOR_C_HMAC_KEY_NEWLINE = "562ef8ea6652ac1adbf683e9c9ddd6f4dd673023"

NON_ASCII = [
    "cms-authn-method: X509Cert",
    "cms-authn-dn: /DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=jmuller/CN=654321/CN=José Müller",
    "cms-authn-login: jmuller",
    "cms-authn-name: José Müller",
]
# Computed with /usr/bin/python3 from the UTF-8 header bytes decoded as Latin-1 (see
# tests/unit/cms_headers_test.cpp): python3 = hmac over msg.encode("utf-8"), raw = over the
# wire bytes.
NON_ASCII_PYTHON3 = "081ca59208bfca2ebba7f7b5ca73961643941401"
NON_ASCII_RAW = "7500562df877f448609cd86695273751b0dca96e"


@pytest.fixture(scope="module", autouse=True)
def built():
    if not os.access(BIN, os.X_OK):
        pytest.fail("cmsfront-hmac not found at %s (build target cmsfront-hmac, or set "
                    "CMSFRONT_HMAC_BIN)" % BIN)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "hmac.key"
    path.write_bytes(KEY)
    return path


def run(*args, stdin=b""):
    """(exit status, stdout, stderr) of the tool; arguments may be str (UTF-8 on the wire)."""
    argv = [BIN] + [a.encode() if isinstance(a, str) else a for a in args]
    done = subprocess.run(argv, input=stdin, capture_output=True, timeout=30)
    return done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


def test_vector_a_from_arguments(key_file):
    status, out, err = run("--key", str(key_file), *VECTOR_A, "cms-auth-status: OK")
    assert status == 0, err
    assert "message (python3): " + VECTOR_A_PREFIX in out
    assert "hmac (python3): " + VECTOR_A_HMAC in out
    # Sorted as signed; cms-auth-status listed but not signed.
    listed = [line.strip() for line in out.splitlines() if line.startswith("  cms-")]
    assert [line.split(":")[0] for line in listed] == sorted(
        h.split(":")[0] for h in VECTOR_A)
    assert "not signed: cms-auth-status" in out
    # ASCII only: one encoding shown, no raw line.
    assert "hmac (raw)" not in out
    assert err == ""


def test_vector_a_raw_encoding_is_the_same(key_file):
    status, out, _ = run("--key", str(key_file), "--encoding", "raw", *VECTOR_A)
    assert status == 0
    assert "hmac (raw): " + VECTOR_A_HMAC in out


def test_vector_c_from_stdin(key_file):
    # As pasted from a log: CRLF, a blank line, "name:value" without a space, mixed case.
    pasted = b"Cms-Authn-Method:X509Cert\r\n\n   \ncms-authn-login: jdoe\r\n"
    status, out, err = run("--key", str(key_file), stdin=pasted)
    assert status == 0, err
    assert "message (python3): " + VECTOR_C_MESSAGE + "\n" in out
    assert "hmac (python3): " + VECTOR_C_HMAC in out


def test_key_with_newline_warns_and_is_used_as_is(tmp_path):
    key = tmp_path / "newline.key"
    key.write_bytes(KEY + b"\n")
    status, out, err = run("--key", str(key), stdin=b"cms-authn-method: X509Cert\n"
                                                    b"cms-authn-login: jdoe\n")
    assert status == 0
    assert "hmac (python3): " + VECTOR_C_HMAC_KEY_NEWLINE in out
    assert "key file ends with a newline; backends use it as-is" in err


def test_verify_match_exits_0(key_file):
    status, out, _ = run("--key", str(key_file), "--verify", VECTOR_A_HMAC.upper(), *VECTOR_A)
    assert status == 0
    assert "matches the python3 encoding" in out


def test_verify_mismatch_exits_1(key_file):
    status, out, _ = run("--key", str(key_file), "--verify", VECTOR_C_HMAC, *VECTOR_A)
    assert status == 1
    assert "MISMATCH" in out


def test_pasted_hmac_header_is_verified(key_file):
    lines = "\n".join(VECTOR_A + ["cms-authn-hmac: " + VECTOR_A_HMAC]).encode()
    status, out, _ = run("--key", str(key_file), stdin=lines)
    assert status == 0
    assert "matches the python3 encoding" in out
    lines = "\n".join(VECTOR_A[1:] + ["cms-authn-hmac: " + VECTOR_A_HMAC]).encode()
    status, out, _ = run("--key", str(key_file), stdin=lines)
    assert status == 1


def test_non_ascii_shows_both_encodings(key_file):
    status, out, err = run("--key", str(key_file), *NON_ASCII)
    assert status == 0, err
    assert "hmac (python3): " + NON_ASCII_PYTHON3 in out
    assert "hmac (raw): " + NON_ASCII_RAW in out
    assert "CherryPy" in out and "Go backends" in out
    # Non-printable bytes escaped: é is C3 A9 on the wire, C3 83 C2 A9 in the python3 message.
    assert "Jos\\xc3\\x83\\xc2\\xa9 M" in out
    assert "Jos\\xc3\\xa9 M" in out


def test_non_ascii_verify_reports_the_other_encoding(key_file):
    status, out, _ = run("--key", str(key_file), "--verify", NON_ASCII_RAW, *NON_ASCII)
    assert status == 1
    assert "matches the raw encoding" in out
    status, out, _ = run("--key", str(key_file), "--encoding", "raw", "--verify", NON_ASCII_RAW,
                         *NON_ASCII)
    assert status == 0
    assert "matches the raw encoding" in out


def test_missing_key_file_exits_2(tmp_path):
    missing = tmp_path / "absent.key"
    status, out, err = run("--key", str(missing), *VECTOR_A)
    assert status == 2
    assert str(missing) in err
    assert "No such file or directory" in err
    assert out == ""


def test_empty_key_file_exits_2(tmp_path):
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    status, _, err = run("--key", str(empty), *VECTOR_A)
    assert status == 2
    assert "empty" in err


@pytest.mark.parametrize("args", [
    [],                                            # no --key
    ["--encoding", "latin1"],                      # unknown encoding
    ["--verify", "xyz"],                           # not an HMAC
    ["--bogus"],                                   # unknown option
    ["not a header"],                              # no colon
    ["host: cmsweb.cern.ch"],                      # nothing to sign
])
def test_usage_errors_exit_2(key_file, args):
    argv = list(args)
    if args:
        argv = ["--key", str(key_file)] + argv
    status, _, err = run(*argv)
    assert status == 2
    assert err.startswith("cmsfront-hmac: ")


def test_help(key_file):
    status, out, _ = run("--help")
    assert status == 0
    assert out.startswith("usage: cmsfront-hmac --key FILE")
    assert "--encoding" in out and "--verify" in out

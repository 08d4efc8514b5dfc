#!/bin/sh
# Creates a throw-away PKI for tests and demos, with the openssl command line only.
#
#   tools/make-test-pki.sh DIR
#
# DIR/ca.pem, DIR/ca.key      a self-signed test CA (ECDSA P-256, 10 days)
# DIR/server.pem              server certificate for localhost and 127.0.0.1, then the CA
# DIR/server.key              its key (PKCS#8, unencrypted)
# DIR/user.pem, DIR/user.key  a client ("grid user") certificate with a CERN-style DN:
#                             /DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=demo/CN=100001/CN=Demo User
# DIR/ca_dir/                 the CA as an IGTF-style hashed directory (<hash>.0) with an
#                             empty CRL (<hash>.r0), for cmsfront's ca_dir
#
# Idempotent: files that already exist and still verify against the CA are kept, so running it
# again is cheap and never changes a certificate a running process has loaded. Remove DIR to
# start over. Nothing here is secret or fit for production.
#
# Later kinds of certificate (client users, proxies, CRLs) get their own issue_* function below,
# signed by the same CA.
set -eu

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 64
fi
dir=$1
days=10
mkdir -p "$dir"
umask 077

tmp=$(mktemp -d "${TMPDIR:-/tmp}/make-test-pki.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

new_key() {  # new_key FILE
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# still_valid CERT: true when CERT exists, is signed by our CA and is not about to expire.
still_valid() {
  [ -s "$1" ] || return 1
  openssl verify -CAfile "$dir/ca.pem" "$1" >/dev/null 2>&1 || return 1
  openssl x509 -in "$1" -noout -checkend 86400 >/dev/null 2>&1
}

make_ca() {
  if [ -s "$dir/ca.pem" ] && [ -s "$dir/ca.key" ] &&
     openssl x509 -in "$dir/ca.pem" -noout -checkend 86400 >/dev/null 2>&1; then
    return 0
  fi
  new_key "$tmp/ca.key"
  cat > "$tmp/ca.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
O = cmsfront tests
CN = cmsfront test CA
[ext]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
  openssl req -new -x509 -config "$tmp/ca.cnf" -key "$tmp/ca.key" -days "$days" \
    -sha256 -out "$tmp/ca.pem" 2>/dev/null
  mv "$tmp/ca.key" "$dir/ca.key"
  mv "$tmp/ca.pem" "$dir/ca.pem"
  # A new CA invalidates everything it signed before.
  rm -f "$dir/server.pem" "$dir/server.key" "$dir/server.crt" "$dir/user.pem" \
    "$dir/user.key" "$dir/user.crt"
}

# sign NAME SUBJECT EXTENSIONS: key DIR/NAME.key, certificate DIR/NAME.crt signed by the CA.
sign() {
  name=$1 subject=$2 extensions=$3
  new_key "$tmp/$name.key"
  printf '%s\n' "$extensions" > "$tmp/$name.ext"
  openssl req -new -key "$tmp/$name.key" -subj "$subject" -out "$tmp/$name.csr" 2>/dev/null
  openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days "$days" -sha256 \
    -extfile "$tmp/$name.ext" -out "$tmp/$name.crt" 2>/dev/null
  mv "$tmp/$name.key" "$dir/$name.key"
  mv "$tmp/$name.crt" "$dir/$name.crt"
}

issue_server() {
  if still_valid "$dir/server.crt" && [ -s "$dir/server.key" ] && [ -s "$dir/server.pem" ]; then
    return 0
  fi
  sign server "/O=cmsfront tests/CN=localhost" "basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid"
  cat "$dir/server.crt" "$dir/ca.pem" > "$dir/server.pem"
}

issue_user() {
  if still_valid "$dir/user.crt" && [ -s "$dir/user.key" ] && [ -s "$dir/user.pem" ]; then
    return 0
  fi
  sign user "/DC=ch/DC=cern/OU=Organic Units/OU=Users/CN=demo/CN=100001/CN=Demo User" \
    "basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid"
  cp "$dir/user.crt" "$dir/user.pem"
}

# The CA and an empty CRL (valid as long as the CA), named by subject hash as in
# /etc/grid-security/certificates. Rewritten whenever the CA changed.
make_ca_dir() {
  hash=$(openssl x509 -in "$dir/ca.pem" -noout -subject_hash)
  if [ -s "$dir/ca_dir/$hash.0" ] && [ -s "$dir/ca_dir/$hash.r0" ] &&
     cmp -s "$dir/ca.pem" "$dir/ca_dir/$hash.0"; then
    return 0
  fi
  rm -rf "$dir/ca_dir"
  mkdir -p "$dir/ca_dir"
  : > "$tmp/index.txt"
  echo 01 > "$tmp/crlnumber"
  printf '[ca]\ndefault_ca = test_ca\n[test_ca]\ndatabase = %s\ncrlnumber = %s\ndefault_md = sha256\ndefault_crl_days = %s\n' \
    "$tmp/index.txt" "$tmp/crlnumber" "$days" > "$tmp/crl.cnf"
  openssl ca -config "$tmp/crl.cnf" -gencrl -keyfile "$dir/ca.key" -cert "$dir/ca.pem" \
    -out "$tmp/crl.pem" 2>/dev/null
  cp "$dir/ca.pem" "$dir/ca_dir/$hash.0"
  cp "$tmp/crl.pem" "$dir/ca_dir/$hash.r0"
  chmod 755 "$dir/ca_dir"
  chmod 644 "$dir/ca_dir/$hash.0" "$dir/ca_dir/$hash.r0"
}

make_ca
issue_server
issue_user
make_ca_dir
chmod 644 "$dir/ca.pem" "$dir/server.pem" "$dir/server.crt" "$dir/user.pem"

#!/bin/sh
# Creates a throw-away PKI for tests and demos, with the openssl command line only.
#
#   tools/make-test-pki.sh DIR
#
# DIR/ca.pem, DIR/ca.key      a self-signed test CA (ECDSA P-256, 10 days)
# DIR/server.pem              server certificate for localhost and 127.0.0.1, then the CA
# DIR/server.key              its key (PKCS#8, unencrypted)
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
  rm -f "$dir/server.pem" "$dir/server.key" "$dir/server.crt"
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

make_ca
issue_server
chmod 644 "$dir/ca.pem" "$dir/server.pem" "$dir/server.crt"

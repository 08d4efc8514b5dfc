#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and the demo need.
#
# Idempotent and cheap when there is nothing to do: it asks dpkg which packages are missing
# and only then touches apt (update + install), so tools/test.sh and tools/demo.sh can call it
# on every run. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config
  libevent-dev libssl-dev libnghttp2-dev libtomlplusplus-dev prometheus-cpp-dev libpcre2-dev
  nlohmann-json3-dev
  # unit tests and the fuzzer (clang's libFuzzer runtime lives in libclang-rt-14-dev)
  libgtest-dev googletest clang libclang-rt-14-dev
  # integration tests and the demo
  openssl curl ca-certificates procps nghttp2-client nghttp2-server
  python3 python3-cherrypy3 python3-requests python3-pytest
  # grid certificate fixtures and the IGTF bundle (issue 3)
  globus-proxy-utils voms-clients igtf-policy-classic
  # metrics tests: a real Prometheus server and promtool (issue 5)
  prometheus
)

missing=()
for package in "${packages[@]}"; do
  # db:Status-Abbrev is "ii " for an installed package; unknown packages make dpkg-query fail.
  status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null || true)
  if [[ "$status" != ii* ]]; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if ((EUID != 0)); then
  if ! command -v sudo >/dev/null; then
    echo "install-deps: missing packages and not root (no sudo either): ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi

export DEBIAN_FRONTEND=noninteractive
# A fresh machine has no package lists at all, and stale lists may name files the mirror no
# longer has: refresh them whenever we have to install something. -qq keeps apt's progress
# chatter out of the log; errors still go to stderr.
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"

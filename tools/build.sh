#!/usr/bin/env bash
# Configures and builds cmsfront with CMake + Ninja, using every core.
#
#   tools/build.sh              release build (RelWithDebInfo) in build/
#   tools/build.sh --asan       ASan + UBSan build in build-asan/
#   tools/build.sh --fuzz       clang libFuzzer target fuzz_http1_request in build-fuzz/
#   tools/build.sh --release --asan --fuzz    any combination, in that order
#   --werror, --no-werror       turn treating compiler warnings as errors on or off; without
#                               either, a build directory keeps its previous choice (off at
#                               first). tools/test.sh builds release with --werror: the tree
#                               must stay warning-clean.
#
# Build directories are git-ignored. Dependencies come from tools/install-deps.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

want_release=0 want_asan=0 want_fuzz=0 werror=()
for argument in "$@"; do
  case "$argument" in
    --release) want_release=1 ;;
    --asan) want_asan=1 ;;
    --fuzz) want_fuzz=1 ;;
    --werror) werror=(-DCMAKE_COMPILE_WARNING_AS_ERROR=ON) ;;
    --no-werror) werror=(-DCMAKE_COMPILE_WARNING_AS_ERROR=OFF) ;;
    -h | --help)
      sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "build.sh: unknown argument '$argument' (try --help)" >&2
      exit 2
      ;;
  esac
done
if ((want_release + want_asan + want_fuzz == 0)); then
  want_release=1
fi

jobs=$(nproc)

# configure DIR [cmake -D arguments...]: the generator is named only on the first configure,
# because CMake refuses to switch generators in an existing build directory.
configure() {
  local dir=$1
  shift
  local generator=()
  if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    generator=(-G Ninja)
  fi
  cmake -S . -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
}

if ((want_release)); then
  echo "build.sh: release build in build/"
  configure build -DCMSFRONT_SANITIZE=OFF -DCMSFRONT_FUZZ=OFF "${werror[@]}"
  cmake --build build --parallel "$jobs"
fi

if ((want_asan)); then
  echo "build.sh: ASan+UBSan build in build-asan/"
  configure build-asan -DCMSFRONT_SANITIZE=ON -DCMSFRONT_FUZZ=OFF "${werror[@]}"
  cmake --build build-asan --parallel "$jobs"
fi

if ((want_fuzz)); then
  echo "build.sh: libFuzzer build in build-fuzz/"
  # libFuzzer is clang-only. CMake reads CXX on the first configure of a directory only (naming
  # the compiler again later with -D would make it throw the cache away).
  CXX=clang++ configure build-fuzz -DCMSFRONT_FUZZ=ON -DCMSFRONT_SANITIZE=OFF \
    "${werror[@]}"
  cmake --build build-fuzz --parallel "$jobs" --target fuzz_http1_request
fi

#!/usr/bin/env bash
# Installs, builds and runs every test of cmsfront; .ci/run runs exactly this.
#
# Steps, stopping at the first failure (exit status non-zero):
#   deps, release build (warnings are errors), unit tests, libFuzzer run over a copy of the
#   corpus, integration suite, demo smoke test, ASan+UBSan build, unit tests and integration
#   suite again under the sanitizers (without the tests marked `large`).
#
# Knobs (environment): CMSFRONT_FUZZ_SECONDS (default 60), CMSFRONT_PYTEST_TIMEOUT (seconds per
# integration run, default 1200), CMSFRONT_PYTEST_ARGS (extra pytest arguments, e.g. "-k pool"),
# CMSFRONT_WERROR=0 (let warnings pass, for a local look at the tests; CI keeps the default 1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD

# Debian's interpreter first: a pyenv/virtualenv python3 earlier on PATH lacks the Debian
# packages (CherryPy, requests, pytest) the integration tests import, and the tests may start
# helper processes with a bare `python3`.
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
python=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1

fuzz_seconds=${CMSFRONT_FUZZ_SECONDS:-60}
pytest_timeout=${CMSFRONT_PYTEST_TIMEOUT:-1200}
read -r -a pytest_extra <<<"${CMSFRONT_PYTEST_ARGS:-}"

steps=(
  "install dependencies:step_deps"
  "release build:step_build_release"
  "unit tests (release):step_unit_release"
  "fuzz the HTTP/1.1 request parser:step_fuzz"
  "integration tests (release):step_integration_release"
  "demo smoke test:step_demo"
  "ASan+UBSan build:step_build_asan"
  "unit tests (ASan+UBSan):step_unit_asan"
  "integration tests (ASan+UBSan, not large):step_integration_asan"
)

current_step=""
started=$SECONDS

elapsed() {
  local seconds=$((SECONDS - $1))
  printf '%dm%02ds' $((seconds / 60)) $((seconds % 60))
}

on_exit() {
  local status=$?
  if ((status != 0)); then
    echo
    echo "test.sh: FAILED at step '${current_step:-setup}' (exit status $status) after $(elapsed "$started")" >&2
  fi
}
trap on_exit EXIT

step_deps() {
  tools/install-deps.sh
}

step_build_release() {
  if [[ "${CMSFRONT_WERROR:-1}" == 0 ]]; then
    tools/build.sh --release --no-werror
  else
    tools/build.sh --release --werror
  fi
}

step_build_asan() {
  tools/build.sh --asan
}

# Unit tests through CTest; "no tests" is an error, not a pass.
step_unit_release() {
  ctest --test-dir build --output-on-failure --no-tests=error --timeout 300 --parallel "$(nproc)"
}

# The sanitizer settings of every ASan step: leaks are checked at exit, and any report stops
# the process with a non-zero status so a test cannot miss it.
asan_env=(
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
)

step_unit_asan() {
  env "${asan_env[@]}" ctest --test-dir build-asan --output-on-failure --no-tests=error \
    --timeout 600 --parallel "$(nproc)"
}

# Runs the libFuzzer target for a bounded time over a throw-away copy of the corpus, so the
# inputs it discovers never dirty the repository. A crash, leak, UB report or hang fails.
step_fuzz() {
  tools/build.sh --fuzz
  local fuzzer=build-fuzz/tests/fuzz_http1_request
  if [[ ! -x "$fuzzer" ]]; then
    echo "fuzzer binary $fuzzer not found" >&2
    return 1
  fi
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/cmsfront-fuzz.XXXXXX")
  mkdir -p "$work/corpus" "$work/artifacts"
  local seeds=tests/fuzz/corpus/http1_request
  if [[ -d "$seeds" ]]; then
    cp -R "$seeds/." "$work/corpus/"
  fi
  echo "corpus: $(find "$work/corpus" -type f | wc -l) seed inputs from $seeds; fuzzing for ${fuzz_seconds}s"

  local options=(
    -max_total_time="$fuzz_seconds"
    -timeout=10                # one input taking 10 s is a hang
    -rss_limit_mb=2048
    -print_final_stats=1
    -artifact_prefix="$work/artifacts/"
  )
  if [[ -f tests/fuzz/http1_request.dict ]]; then
    options+=(-dict=tests/fuzz/http1_request.dict)
  fi

  local status=0
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$fuzzer" "${options[@]}" "$work/corpus" >"$work/fuzz.log" 2>&1 || status=$?
  if ((status != 0)); then
    tail -n 80 "$work/fuzz.log"
    local artifact
    for artifact in "$work"/artifacts/*; do
      [[ -f "$artifact" ]] || continue
      echo "--- crashing input $artifact (first 4 KiB, hex):"
      head -c 4096 "$artifact" | od -An -tx1 -v
    done
    echo "fuzzer failed (exit status $status); log and inputs kept in $work" >&2
    echo "reproduce: $fuzzer <input>; once fixed, add the input to $seeds" >&2
    return 1
  fi
  grep -E '^(stat::|Done|#[0-9]+ +DONE)' "$work/fuzz.log" || tail -n 5 "$work/fuzz.log"
  rm -rf "$work"
}

# run_pytest BINARY [pytest arguments...]: the integration suite against one cmsfront binary.
# pytest's exit status 5 ("no tests collected") counts as a failure: a suite that silently runs
# nothing must not look green.
run_pytest() {
  local binary=$1
  shift
  local status=0
  CMSFRONT_BIN="$repo/$binary" timeout --kill-after=30 "$pytest_timeout" \
    "$python" -m pytest tests/integration -q -rfE -p no:cacheprovider "$@" "${pytest_extra[@]}" ||
    status=$?
  case $status in
    0) return 0 ;;
    5) echo "pytest collected no tests" >&2 ;;
    124 | 137) echo "integration suite exceeded ${pytest_timeout}s and was stopped" >&2 ;;
  esac
  return 1
}

step_integration_release() {
  run_pytest build/cmsfront
}

step_integration_asan() {
  # LeakSanitizer runs at exit, so a clean SIGTERM shutdown must also free everything. The 2 GB
  # streaming tests (marker `large`) are left to the release run: ASan makes them slow.
  export "${asan_env[@]}"
  run_pytest build-asan/cmsfront -m "not large"
}

# The README's first command, minus the waiting: demo PKI, demo backend, cmsfront on the
# rendered demo config, one request through it.
step_demo() {
  tools/demo.sh --smoke
}

total=${#steps[@]}
index=0
for entry in "${steps[@]}"; do
  index=$((index + 1))
  current_step=${entry%%:*}
  step_started=$SECONDS
  printf '\n======== [%d/%d] %s ========\n' "$index" "$total" "$current_step"
  "${entry##*:}"
  echo "-------- ok: $current_step ($(elapsed "$step_started"))"
done

current_step=""
echo
echo "test.sh: all $total steps passed in $(elapsed "$started")"

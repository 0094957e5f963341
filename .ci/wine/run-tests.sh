#!/usr/bin/env bash
# Runs Rust tests for x86_64-pc-windows-gnu under Wine; exit code is cargo's.
#   .ci/wine/run-tests.sh [cargo test args...]        e.g. -p mmipc --lib -- --test-threads=1
#   .ci/wine/run-tests.sh --selftest [test args...]   the Wine self-tests (prints RESULT lines)
# Runs setup.sh first (about 0.1 s once set up; set WINE_SKIP_SETUP=1 to skip it).
# Builds go to $CARGO_TARGET_DIR if set (default: cargo's), jobs per $CARGO_BUILD_JOBS.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "${WINE_SKIP_SETUP:-0}" != 1 ]; then
    bash "$here/setup.sh"
fi
# shellcheck source=env.sh
source "$here/env.sh"
if [ "${1:-}" = --selftest ]; then
    shift
    # Fixed lock file; one test at a time so the latency figures are not disturbed.
    cargo test --manifest-path "$here/selftest/Cargo.toml" --locked \
        --target x86_64-pc-windows-gnu -- --nocapture --test-threads=1 "$@" </dev/null
    exit $?
fi
cargo test --target x86_64-pc-windows-gnu "$@" </dev/null

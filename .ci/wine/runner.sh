#!/usr/bin/env bash
# Cargo runner for x86_64-pc-windows-gnu: runs a Windows binary under Wine and passes its exit
# code through (cargo decides pass/fail on it). Set by env.sh as
# CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER.
export WINEPREFIX="${WINEPREFIX:-${HOME:-/root}/.wine-mmipc}"
export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
unset DISPLAY WAYLAND_DISPLAY
exec wine "$@"

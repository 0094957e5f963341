#!/usr/bin/env bash
# Prepares this (Debian 12) machine to run x86_64-pc-windows-gnu test binaries under Wine 8.0:
#   1. installs wine, wine64, gcc-mingw-w64-x86-64 (apt-get update only if something is missing)
#      and the rustup target x86_64-pc-windows-gnu;
#   2. builds the bcryptprimitives.dll stand-in (see bcryptprimitives.c for why);
#   3. creates and initialises the Wine prefix ($WINEPREFIX, default ~/.wine-mmipc);
#   4. installs the DLL into the prefix's system32 and checks that a program importing
#      ProcessPrng runs;
#   5. starts a persistent wineserver (`wineserver -p`) for the prefix.
# Idempotent; a second run takes about a second. Exits non-zero with a message on stderr when
# something cannot be installed (the caller may then warn and skip the Windows tests).
# Usage: bash .ci/wine/setup.sh        (then: source .ci/wine/env.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
start=$SECONDS
die() { printf 'wine-setup: ERROR: %s\n' "$*" >&2; exit 1; }
note() { printf 'wine-setup: %s\n' "$*" >&2; }

# --- 1. packages -------------------------------------------------------------------------
missing=()
command -v wine >/dev/null 2>&1 || missing+=(wine)
[ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null 2>&1 || missing+=(wine64)
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || missing+=(gcc-mingw-w64-x86-64)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || die "no apt-get: install ${missing[*]} by hand"
    note "installing ${missing[*]} (apt-get, first run only; about a minute)"
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-q -o DPkg::Lock::Timeout=300)
    "${sudo[@]}" apt-get "${apt_opts[@]}" update >/dev/null ||
        die "apt-get update failed; cannot install Wine"
    "${sudo[@]}" apt-get "${apt_opts[@]}" install -y --no-install-recommends \
        wine wine64 gcc-mingw-w64-x86-64 >/dev/null ||
        die "apt-get install wine wine64 gcc-mingw-w64-x86-64 failed; cannot run Windows tests"
    command -v wine >/dev/null 2>&1 || die "wine still missing after apt-get install"
fi
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu; then
    note "adding rustup target x86_64-pc-windows-gnu"
    rustup target add x86_64-pc-windows-gnu >/dev/null ||
        die "rustup target add x86_64-pc-windows-gnu failed"
fi

# --- 2. the DLL stand-in (rebuilt only when its source changes) ----------------------------
build="${XDG_CACHE_HOME:-$HOME/.cache}/mmipc-wine"
mkdir -p "$build"
if [ ! -f "$build/bcryptprimitives.dll" ] ||
    [ "$here/bcryptprimitives.c" -nt "$build/bcryptprimitives.dll" ] ||
    [ "$here/bcryptprimitives.def" -nt "$build/bcryptprimitives.dll" ]; then
    x86_64-w64-mingw32-gcc -O2 -Wall -shared -s -o "$build/bcryptprimitives.dll" \
        "$here/bcryptprimitives.c" "$here/bcryptprimitives.def" -ladvapi32 ||
        die "building bcryptprimitives.dll failed"
    rm -f "$build/prngcheck.exe"
fi
if [ ! -f "$build/prngcheck.exe" ] || [ "$here/prngcheck.c" -nt "$build/prngcheck.exe" ]; then
    x86_64-w64-mingw32-gcc -O2 -Wall -s -o "$build/prngcheck.exe" "$here/prngcheck.c" \
        "$build/bcryptprimitives.dll" || die "building prngcheck.exe failed"
fi

# --- 3. the prefix ---------------------------------------------------------------------------
if [ ! -f "$WINEPREFIX/system.reg" ] || [ ! -d "$WINEPREFIX/drive_c/windows/system32" ]; then
    note "creating Wine prefix $WINEPREFIX (first run only)"
    mkdir -p "$WINEPREFIX"
    wineboot --init >"$build/wineboot.log" 2>&1 ||
        die "wineboot --init failed (log: $build/wineboot.log)"
    wineserver -w
    [ -d "$WINEPREFIX/drive_c/windows/system32" ] || die "prefix $WINEPREFIX was not created"
fi

# --- 4. install the DLL ------------------------------------------------------------------------
sys32="$WINEPREFIX/drive_c/windows/system32"
cmp -s "$build/bcryptprimitives.dll" "$sys32/bcryptprimitives.dll" ||
    cp "$build/bcryptprimitives.dll" "$sys32/bcryptprimitives.dll"

# --- 5. persistent wineserver and Wine's own service processes ------------------------------
# `wineserver -p` stays up (no timeout) so that each test binary does not start and stop its
# own server, and so that child processes of a test never outlive a server that went away.
# With a server already running for this prefix it exits at once and leaves that one alone.
# PITFALL: the wineserver, and the services.exe/winedevice.exe/plugplay.exe/svchost.exe/rpcss.exe
# that the first Wine program of a session starts, keep that program's stderr open for as long
# as the server lives. Started from `$(...)` or a `| tee` they keep the pipe open and the reader
# hangs forever; started from CI's own stdout they keep CI's log pipe open. So both are started
# here with their stdio on files.
# (Debian's /usr/bin/wineserver wrapper adds -p0 to every call; our -p comes later and wins.)
# It exits with status 2 when a server is already running for the prefix.
rc=0
wineserver -p </dev/null >>"$build/wineserver.log" 2>&1 || rc=$?
case $rc in
0) server="wineserver started (persistent)" ;;
2) server="wineserver already running" ;;
*) die "wineserver -p failed with status $rc (log: $build/wineserver.log)" ;;
esac
# A program that imports ProcessPrng the way Rust's std does: proves the stand-in loads (and
# starts the service processes, with their stdio on the log file).
if ! wine "$build/prngcheck.exe" </dev/null >"$build/prngcheck.out" 2>>"$build/wineserver.log"; then
    die "prngcheck.exe failed under Wine (exit $?): $(cat "$build/prngcheck.out")"
fi
out="$(cat "$build/prngcheck.out")"

ver="$(wine --version </dev/null 2>/dev/null || echo '?')"
printf 'wine-setup: ok: %s, prefix %s, bcryptprimitives stand-in (%s), %s, target x86_64-pc-windows-gnu, %d s\n' \
    "$ver" "$WINEPREFIX" "$out" "$server" "$((SECONDS - start))"

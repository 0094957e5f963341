#!/usr/bin/env bash
# Stops the persistent wineserver of the mmipc prefix, and with it every Wine process in that
# prefix (services.exe & co., and any test process left behind). Run at the end of a CI step.
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
command -v wineserver >/dev/null 2>&1 || exit 0
wineserver -k </dev/null >/dev/null 2>&1 || true
wineserver -w </dev/null >/dev/null 2>&1 || true

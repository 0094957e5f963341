# Source this (bash): sets up the environment so that
#   cargo test --target x86_64-pc-windows-gnu
# runs the Windows test binaries under Wine, in the prefix prepared by setup.sh.
# Safe to source more than once; an existing WINEPREFIX is kept.
_mmipc_wine_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export WINEPREFIX="${WINEPREFIX:-${HOME:-/root}/.wine-mmipc}"
# Wine prints hundreds of fixme:/err: lines otherwise; set WINEDEBUG=+... by hand to debug.
export WINEDEBUG="${WINEDEBUG:--all}"
# No Mono / Gecko install prompts (they would want a display and the network).
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
# Console programs only: never try to talk to an X server.
unset DISPLAY WAYLAND_DISPLAY
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$_mmipc_wine_dir/runner.sh"
# Linker for the target (rustup's windows-gnu target uses the system MinGW gcc).
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER="${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER:-x86_64-w64-mingw32-gcc}"
unset _mmipc_wine_dir

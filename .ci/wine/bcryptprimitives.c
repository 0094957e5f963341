/*
 * Stand-in for Windows' bcryptprimitives.dll, for running Rust test binaries under Wine 8.0.
 *
 * Why: since Rust 1.78 the standard library of the *-pc-windows-* targets takes its random
 * bytes (HashMap seeds, among others) from ProcessPrng() in bcryptprimitives.dll. Wine 8.0
 * (Debian 12) ships no such DLL, so the loader fails before main() and every Rust program
 * exits with status 53 -- silently under WINEDEBUG=-all; with WINEDEBUG=err+module Wine says
 * "err:module:import_dll Library bcryptprimitives.dll (which is needed by ...) not found".
 * Wine 9 has its own bcryptprimitives; this stand-in is only needed on older Wine.
 *
 * What: one export, ProcessPrng, implemented on top of RtlGenRandom (exported from
 * advapi32 as SystemFunction036), which Wine 8.0 does implement. Build with
 *   x86_64-w64-mingw32-gcc -O2 -shared -o bcryptprimitives.dll bcryptprimitives.c \
 *       bcryptprimitives.def -ladvapi32
 * and copy the DLL into "$WINEPREFIX/drive_c/windows/system32/" (setup.sh does all this).
 */
#include <windows.h>

/* RtlGenRandom; declared by hand to avoid the ntsecapi.h dance. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* Real Windows documents it as always returning TRUE; we return FALSE only if Wine's
 * RtlGenRandom fails, which Rust's std turns into a panic (better than silent zeros). */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst; (void)reason; (void)reserved;
    return TRUE;
}

/*
 * TEST ONLY — never shipped in the MSI.
 *
 * Rust's standard library (1.78+) gets random bytes from ProcessPrng in
 * bcryptprimitives.dll, which wine 8 (Debian 12) does not provide, so a real
 * Rust exe cannot even start there. This stub exports ProcessPrng on top of
 * RtlGenRandom (advapi32's SystemFunction036), which wine does implement.
 * installer/windows/verify.sh drops it into the throwaway WINEPREFIX's
 * system32 before running the installed agent.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance; (void)reason; (void)reserved;
    return TRUE;
}

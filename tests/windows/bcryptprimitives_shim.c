/* Test-only stand-in for bcryptprimitives.dll under Wine 8, which lacks ProcessPrng:
 * Rust's standard library (1.78 and later) imports it for random numbers, so no Rust
 * program or DLL built for Windows starts without it. Windows 10 and 11 have the real
 * one; this file is never shipped. It forwards to RtlGenRandom (SystemFunction036), which
 * Wine has. Built by `make test-windows` into the test Wine prefix only. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x7fffffffu ? 0x7fffffffu : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}

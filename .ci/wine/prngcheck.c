/* setup.sh's check that the bcryptprimitives.dll stand-in is found and works: imports
 * ProcessPrng at load time, exactly as a Rust std binary does. Exit 0 and prints "ProcessPrng ok". */
#include <windows.h>
#include <stdio.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len);

int main(void)
{
    BYTE a[32] = {0}, b[32] = {0};
    if (!ProcessPrng(a, sizeof a) || !ProcessPrng(b, sizeof b)) {
        puts("ProcessPrng returned FALSE");
        return 2;
    }
    if (memcmp(a, b, sizeof a) == 0) {
        puts("ProcessPrng returned the same bytes twice");
        return 3;
    }
    puts("ProcessPrng ok");
    return 0;
}

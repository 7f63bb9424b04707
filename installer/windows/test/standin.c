/*
 * STAND-IN PAYLOAD — used only when the Rust Windows target
 * (x86_64-pc-windows-gnu) cannot be installed on the build machine.
 *
 * It lets CI build and check the MSI (tables, silent install, uninstall)
 * without the real agent. An MSI built with it says so in its file name
 * (link-peeler-STANDIN-PAYLOAD-<version>.msi) and must never be shipped.
 */
#include <stdio.h>
#include <string.h>

#ifndef STANDIN_VERSION
#define STANDIN_VERSION "0.0.0"
#endif

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("link-peeler " STANDIN_VERSION " (STAND-IN PAYLOAD, not the agent)\n");
        return 0;
    }
    fprintf(stderr, "link-peeler: this is a stand-in payload for installer tests, not the agent\n");
    return 2;
}

/* cmd_inventory.c - 'certfleet inventory' (not built yet). */
#include "cf.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

int cmd_inventory(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: certfleet inventory\n\nThis command is not implemented yet.");
        return CF_EXIT_OK;
    }
    fprintf(stderr, "certfleet inventory: not implemented yet\n");
    return CF_EXIT_USAGE;
}

/* cmd_account.c - 'certfleet account' (not built yet). */
#include "cf.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

int cmd_account(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: certfleet account\n\nThis command is not implemented yet.");
        return CF_EXIT_OK;
    }
    fprintf(stderr, "certfleet account: not implemented yet\n");
    return CF_EXIT_USAGE;
}

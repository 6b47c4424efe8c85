/* cmd_schedule.c - 'certfleet schedule' (not built yet). */
#include "cf.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

int cmd_schedule(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: certfleet schedule\n\nThis command is not implemented yet.");
        return CF_EXIT_OK;
    }
    fprintf(stderr, "certfleet schedule: not implemented yet\n");
    return CF_EXIT_USAGE;
}

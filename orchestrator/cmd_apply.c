/* cmd_apply.c - 'certfleet apply', 'renew' and 'plan' (not built yet). */
#include "cf.h"
#include "commands.h"

#include <stdio.h>
#include <string.h>

static int not_yet(const char *name, int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: certfleet %s\n\nThis command is not implemented yet.\n", name);
        return CF_EXIT_OK;
    }
    fprintf(stderr, "certfleet %s: not implemented yet\n", name);
    return CF_EXIT_USAGE;
}

int cmd_apply(int argc, char **argv)
{
    return not_yet("apply", argc, argv);
}

int cmd_renew(int argc, char **argv)
{
    return not_yet("renew", argc, argv);
}

int cmd_plan(int argc, char **argv)
{
    return not_yet("plan", argc, argv);
}

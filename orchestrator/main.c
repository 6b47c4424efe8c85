/*
 * main.c - certfleet's entry point: dispatch argv[1] through one table.
 */
#include "cf.h"
#include "commands.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#ifndef CF_VERSION
#define CF_VERSION "0.1.0"
#endif

struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
};

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct command commands[] = {
    {"apply", cmd_apply, "prepare hosts, issue or renew certificates, push and prove them"},
    {"renew", cmd_renew, "only the certificate phases: decide, issue, push (no host preparation)"},
    {"plan", cmd_plan, "show what apply would change; writes nothing, orders nothing (exit 3)"},
    {"status", cmd_status, "scan every host x domain over TLS and report expiry and drift"},
    {"certificates", cmd_certificates, "list the central certificate store"},
    {"inventory", cmd_inventory,
     "show the inventory as ansible-inventory does (--list/--graph/--host)"},
    {"account", cmd_account, "manage the ACME account (rollover)"},
    {"schedule", cmd_schedule, "print or install a systemd timer / cron line for unattended runs"},
    {"version", cmd_version, "print the version"},
    {"help", cmd_help, "show this help, or a command's help"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_overview(FILE *f)
{
    fprintf(f, "usage: certfleet <command> [options]\n\n"
               "Keeps the TLS certificates of a fleet of nginx hosts valid: issues each\n"
               "certificate once with ACME and pushes it to every host that serves it.\n\n"
               "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'certfleet <command> --help' for a command's options.\n"
               "Exit codes: 0 all good, 1 some host or certificate failed, 2 usage or\n"
               "configuration error (nothing touched), 3 plan/--check found changes.\n");
}

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int cmd_version(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        puts("usage: certfleet version\n\nPrints the version of certfleet.");
        return CF_EXIT_OK;
    }
    if (argc > 1)
        return cf_usage_error("version", "takes no arguments");
    printf("certfleet %s\n", CF_VERSION);
    return CF_EXIT_OK;
}

static int cmd_help(int argc, char **argv)
{
    if (argc > 1) {
        const struct command *c = find_command(argv[1]);
        if (!c) {
            fprintf(stderr, "certfleet: unknown command '%s'\n", argv[1]);
            return CF_EXIT_USAGE;
        }
        char *sub[] = {(char *)c->name, "--help", NULL};
        return c->fn(2, sub);
    }
    print_overview(stdout);
    return CF_EXIT_OK;
}

int main(int argc, char **argv)
{
    /* A peer that hangs up must fail one host, not end the run: OpenSSL
     * writes the status probes' TLS records with plain write(), which raises
     * SIGPIPE when the host has reset the connection.  Ignored, the write
     * fails with EPIPE and the probe reports that host.  (libssh2 and
     * libcurl already send with MSG_NOSIGNAL.) */
    signal(SIGPIPE, SIG_IGN);
    /* Everything certfleet creates (state, keys, journal, reports) is
     * private unless a mode is set explicitly. */
    umask(077);
    if (argc < 2) {
        print_overview(stderr);
        return CF_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return cmd_help(1, argv + 1);
    if (!strcmp(argv[1], "--version"))
        return cmd_version(1, argv + 1);
    const struct command *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "certfleet: unknown command '%s' (see 'certfleet help')\n", argv[1]);
        return CF_EXIT_USAGE;
    }
    return c->fn(argc - 1, argv + 1);
}

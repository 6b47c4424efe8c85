/*
 * commands.h - one entry point per subcommand (git's builtin/ pattern).
 * Each cmd_<name>() receives argv with argv[0] = the command name and
 * returns a process exit code (enum cf_exit); only main() exits.
 */
#ifndef CF_COMMANDS_H
#define CF_COMMANDS_H

int cmd_apply(int argc, char **argv);
int cmd_renew(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_certificates(int argc, char **argv);
int cmd_inventory(int argc, char **argv);
int cmd_account(int argc, char **argv);
int cmd_schedule(int argc, char **argv);

/* Print "certfleet: <msg>" (and a hint to run --help) for a usage error and
 * return CF_EXIT_USAGE. */
int cf_usage_error(const char *cmd, const char *msg);

#endif

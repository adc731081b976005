/*
 * cli — mailferry's command line (DESIGN §7). main() calls cli_main and
 * exits with what it returns: 0 done, 1 something failed, 2 usage error.
 */
#ifndef MF_CLI_H
#define MF_CLI_H

int cli_main(int argc, char **argv);

#endif

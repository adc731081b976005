/*
 * archive_cmd — the archive commands of the command line:
 *   mailferry export ARCHIVE --maildir DIR | --mbox FILE [--run N] [--folder NAME]
 *   mailferry verify ARCHIVE
 *   mailferry archive ls ARCHIVE
 * Each returns the exit status: 0 ok, 1 problems found (each listed),
 * 2 usage error or an archive that cannot be read.
 *
 * Not for: backup and restore (the pipeline), the archive format (store/).
 */
#ifndef MF_ARCHIVE_CMD_H
#define MF_ARCHIVE_CMD_H

/* argv[0] is the command name ("export", "verify", "archive"). */
int archive_cmd_export(int argc, char **argv);
int archive_cmd_verify(int argc, char **argv);
int archive_cmd_archive(int argc, char **argv);
/* One line: is argv (after "verify") an archive verify? (one argument) */
int archive_cmd_is_archive_verify(int argc, char **argv);

#endif

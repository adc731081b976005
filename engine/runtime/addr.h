/*
 * addr — socket addresses as conn.c needs them, kept apart because they are
 * pure: whether a peer is on this machine (plaintext logins are allowed
 * there), and the one address of a UNIX socket path.
 *
 * Not for: resolving names (conn.c, getaddrinfo) or connecting.
 */
#ifndef MF_ADDR_H
#define MF_ADDR_H

#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>

/* 1 if ss is 127.0.0.0/8, ::1, ::ffff:127.x.y.z or a UNIX socket. */
int addr_is_loopback(const struct sockaddr_storage *ss);
/* Fills ai (one stream address) and sa for path, which must fit sun_path. */
void addr_unix(struct addrinfo *ai, struct sockaddr_un *sa, const char *path);

#endif

/*
 * addr — pure helpers on socket addresses (see addr.h).
 */
#include "engine/runtime/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

int addr_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_UNIX) /* never leaves the machine */
		return 1;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)(const void *)ss;

		return (ntohl(s->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return 0;
}

void addr_unix(struct addrinfo *ai, struct sockaddr_un *sa, const char *path)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	memcpy(sa->sun_path, path, strlen(path) + 1);
	memset(ai, 0, sizeof(*ai));
	ai->ai_family = AF_UNIX;
	ai->ai_socktype = SOCK_STREAM;
	ai->ai_addr = (struct sockaddr *)sa;
	ai->ai_addrlen = (socklen_t)sizeof(*sa);
}

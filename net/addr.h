/*
 * addr.h -- numeric "HOST:PORT" listen addresses and SO_REUSEPORT listening
 * sockets, shared by the daemon's listeners (shard/shard_conn.c) and
 * petrel-sink (bench/sink_io.c).
 *
 * Text forms: "127.0.0.1:25", "0.0.0.0:2525", "[::1]:25" (unbracketed,
 * the last ':' separates the port).  Numeric only: no DNS, so parsing
 * never blocks.
 */
#ifndef NET_ADDR_H
#define NET_ADDR_H

#include <sys/socket.h>

#include "core/pt.h"

/*
 * Parse `text` into *ss (zeroed first) and *len.  Port 0 to 65535 (0: the
 * kernel picks one at bind).  PT_OK, or PT_ERROR when it is not a numeric
 * address and port (host part longer than 127 bytes included).
 */
int net_addr_parse(const char *text, struct sockaddr_storage *ss, socklen_t *len);

/* The port of an AF_INET or AF_INET6 address, in host order. */
unsigned net_addr_port(const struct sockaddr_storage *ss);

/* Set the port (host order) of an AF_INET or AF_INET6 address. */
void net_addr_set_port(struct sockaddr_storage *ss, unsigned port);

/*
 * A listening TCP socket (SOCK_CLOEXEC, blocking) bound to `ss`, with
 * SO_REUSEADDR and SO_REUSEPORT, so that every ring thread can bind the same
 * address and the kernel spreads the connections among them.  The fd
 * (caller closes), or -1 with err filled: "socket: <reason>" when no socket
 * could be made, else the reason setsockopt, bind or listen gave.
 */
int net_addr_listen(const struct sockaddr_storage *ss, socklen_t len, int backlog, char *err,
		    size_t err_len);

#endif

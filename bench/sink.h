/*
 * sink.h -- what petrel-sink's main (sink.c) and its ring threads
 * (sink_io.c) share: the run's configuration and one struct per thread.
 *
 * Threads: main parses the options, opens one SO_REUSEPORT listening
 * socket per thread (so the kernel spreads connections and each ring
 * accepts on its own socket), starts the threads, then only waits for
 * SIGTERM/SIGINT and rewrites the status file.  A thread touches nothing
 * of another thread; main reads the threads' counters with relaxed atomic
 * loads (struct sink_counters).
 */
#ifndef PT_SINK_H
#define PT_SINK_H

#include <pthread.h>

#include "bench/sink_smtp.h"

#define SINK_LISTEN_BACKLOG 4096

/* The whole run's configuration; read only once the threads run. */
struct sink_config {
	struct sink_smtp_config smtp;
	const char *listen; /* "127.0.0.1:2526", "[::1]:2526" */
	unsigned n_threads;
	bool pin; /* pin thread i to CPU i % online CPUs */
	uint64_t seed;
	const char *tls_cert; /* PEM files, or NULL */
	const char *tls_key;
	bool tls_self_signed;
	const char *status_path; /* or NULL */
	const char *log_path;	 /* or NULL */
	bool json;		 /* summary as one JSON object */
	/* Set up by main: */
	struct pt_buf cert_pem, key_pem; /* when smtp.tls */
	int log_fd;			 /* -1 when no --log */
};

/* One ring thread. */
struct sink_thread {
	unsigned index;
	const struct sink_config *cfg; /* not owned */
	int listen_fd;		       /* opened by main, closed by the thread */
	int wake_fd;		       /* eventfd: main writes to it to stop the thread */
	pthread_t tid;
	pthread_barrier_t *started; /* every thread and main meet here after setup */
	int setup_status;	    /* PT_OK or PT_ERROR, set before the barrier */
	/* Written by the thread only; on its own cache line. */
	struct sink_counters counters __attribute__((aligned(64)));
};

/*
 * Open a listening socket for "HOST:PORT" (numeric; IPv6 in brackets) with
 * SO_REUSEPORT and backlog SINK_LISTEN_BACKLOG.  *port: in, 0 to take the
 * port of `listen` (and out: the port bound, useful with port 0, so that
 * every thread binds the same one).  Returns the fd, or -1 (err filled).
 */
int sink_listen_open(const char *addr, unsigned *port, char *err, size_t err_len);

/*
 * The body of a ring thread (pthread start routine; arg is its struct
 * sink_thread).  Sets up its ring, reports through t->setup_status and the
 * barrier, then serves until t->wake_fd is written.  Returns NULL.
 */
void *sink_io_thread(void *arg);

#endif

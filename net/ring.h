/*
 * ring.h -- setting up an io_uring ring and its provided-buffer ring, the
 * same way for the daemon's shards and the bench programs.
 *
 * Two things every ring thread of ours does before its loop:
 *
 *   1. create the ring with the cheapest completion mode the kernel has
 *      (net_ring_init): SINGLE_ISSUER | DEFER_TASKRUN (6.1+), else
 *      COOP_TASKRUN (5.19+), else none; each with SUBMIT_ALL first (keep
 *      submitting past an SQE that fails inline), then without;
 *   2. register one group of provided buffers for multishot receives
 *      (net_ring_bufs_init), and give each buffer back once its completion
 *      is handled (net_ring_bufs_put).
 *
 * System-call style: net_ring_init returns 0 / -errno so that each caller
 * words the failure in its own log.  Nothing here owns the ring.
 */
#ifndef NET_RING_H
#define NET_RING_H

#include <liburing.h>

#include "core/pt.h"

/*
 * Create `ring` with `entries` SQEs and the best flags of the list above.
 * 0, with *flags (may be NULL) set to the IORING_SETUP_* flags in effect;
 * or the -errno of the last attempt (an error other than -EINVAL stops the
 * search at once).  The caller owns the ring: io_uring_queue_exit().
 */
int net_ring_init(struct io_uring *ring, unsigned entries, unsigned *flags);

/*
 * Register `count` buffers (a power of two, at most 32768) of `size` bytes
 * each as buffer group `group` of `ring`, every buffer given to the kernel.
 * Buffer i starts at *base + i * size.  PT_OK with *br and *base set (free
 * them with net_ring_bufs_free after the ring has exited); PT_NOMEM; or
 * PT_ERROR (logged: the kernel refused the registration).  On failure *br
 * and *base are NULL and nothing is left allocated.
 */
int net_ring_bufs_init(struct io_uring *ring, unsigned count, unsigned size, unsigned short group,
		      struct io_uring_buf_ring **br, char **base);

/* The buffer of id `bid` (from a CQE's flags) in a group made by net_ring_bufs_init. */
static inline char *net_ring_bufs_get(char *base, unsigned size, unsigned bid)
{
	return base + (size_t)bid * size;
}

/*
 * Give buffer `bid` (at `buf`, `size` bytes) back to the kernel, at once
 * visible to it.  `count` is the group's count.  The caller must be done
 * with the bytes.
 */
void net_ring_bufs_put(struct io_uring_buf_ring *br, unsigned count, char *buf, unsigned size,
		      unsigned bid);

/* Release what net_ring_bufs_init made; NULLs are fine.  The ring must be gone or unregistered. */
void net_ring_bufs_free(struct io_uring_buf_ring *br, char *base, unsigned count);

#endif

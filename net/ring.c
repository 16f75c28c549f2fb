/*
 * ring.c -- io_uring ring and provided-buffer set-up shared by the shards
 * (shard/shard.c) and the bench programs (bench/sink_io.c,
 * bench/gen_worker.c).
 *
 * Flag fallback: io_uring_setup() answers -EINVAL to a flag it does not
 * know, so we walk from the best set to none.  SUBMIT_ALL (5.18) is tried
 * with every set and dropped alone when refused, so a kernel that has
 * COOP_TASKRUN but not SUBMIT_ALL still gets COOP_TASKRUN.  Any other error
 * (-ENOMEM, -EPERM from io_uring_disabled, -EMFILE) would repeat for every
 * set: we stop and return it.
 *
 * Provided buffers: one mmap'd ring of struct io_uring_buf (page-aligned,
 * as the kernel requires) and one allocation for the buffers themselves,
 * registered with io_uring_register_buf_ring (5.19).  liburing 2.3 has no
 * io_uring_setup_buf_ring, hence this.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "net/ring.h"

int net_ring_init(struct io_uring *ring, unsigned entries, unsigned *flags)
{
	static const unsigned try_flags[] = {
	    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	    IORING_SETUP_COOP_TASKRUN,
	    0,
	};
	struct io_uring_params p;
	int rc = -EINVAL;

	for (size_t i = 0; i < PT_ARRAY_LEN(try_flags); i++) {
		memset(&p, 0, sizeof(p));
		p.flags = try_flags[i] | IORING_SETUP_SUBMIT_ALL;
		rc = io_uring_queue_init_params(entries, ring, &p);
		if (rc == -EINVAL) {
			/* Older kernels also lack SUBMIT_ALL. */
			memset(&p, 0, sizeof(p));
			p.flags = try_flags[i];
			rc = io_uring_queue_init_params(entries, ring, &p);
		}
		if (rc == 0) {
			if (flags)
				*flags = p.flags;
			return 0;
		}
		if (rc != -EINVAL)
			break;
	}
	return rc;
}

static size_t ring_bufs_ring_size(unsigned count)
{
	return count * sizeof(struct io_uring_buf);
}

int net_ring_bufs_init(struct io_uring *ring, unsigned count, unsigned size, unsigned short group,
		      struct io_uring_buf_ring **br, char **base)
{
	struct io_uring_buf_reg reg;
	int rc, status = PT_NOMEM;

	*br = mmap(NULL, ring_bufs_ring_size(count), PROT_READ | PROT_WRITE,
		   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	*base = NULL;
	if (*br == MAP_FAILED) {
		*br = NULL;
		return PT_NOMEM;
	}
	*base = malloc((size_t)count * size);
	if (!*base)
		goto fail;
	io_uring_buf_ring_init(*br);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)*br;
	reg.ring_entries = count;
	reg.bgid = group;
	rc = io_uring_register_buf_ring(ring, &reg, 0);
	if (rc) {
		pt_error("io_uring_register_buf_ring (group %u): %s%s", group, strerror(-rc),
			 rc == -EINVAL ? " (provided buffer rings need Linux 5.19 or later)" : "");
		status = PT_ERROR;
		goto fail;
	}
	for (unsigned i = 0; i < count; i++)
		io_uring_buf_ring_add(*br, net_ring_bufs_get(*base, size, i), size,
				      (unsigned short)i, io_uring_buf_ring_mask(count), (int)i);
	io_uring_buf_ring_advance(*br, (int)count);
	return PT_OK;

fail:
	net_ring_bufs_free(*br, *base, count);
	*br = NULL;
	*base = NULL;
	return status;
}

void net_ring_bufs_put(struct io_uring_buf_ring *br, unsigned count, char *buf, unsigned size,
		      unsigned bid)
{
	io_uring_buf_ring_add(br, buf, size, (unsigned short)bid, io_uring_buf_ring_mask(count), 0);
	io_uring_buf_ring_advance(br, 1);
}

void net_ring_bufs_free(struct io_uring_buf_ring *br, char *base, unsigned count)
{
	if (br)
		munmap(br, ring_bufs_ring_size(count));
	free(base);
}

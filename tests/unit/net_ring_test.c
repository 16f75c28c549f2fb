/*
 * net_ring_test.c -- io_uring set-up (net/ring.c) on the running kernel:
 * the flags chosen, a ring that works, errors returned as -errno; and a
 * provided-buffer group that receives real bytes from a socketpair, hands
 * out the buffer the CQE names, and keeps serving receives past its count
 * only because each buffer is given back.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/ring.h"

#define BEST_FLAGS                                                                                 \
	(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL)

Test(ring, init_takes_the_best_flags_and_works)
{
	struct io_uring ring;
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	unsigned flags = 0;

	/* Kernel 6.1 or later (this machine: 6.18) has every flag we try first. */
	cr_assert_eq(net_ring_init(&ring, 8, &flags), 0);
	cr_assert_eq(flags, BEST_FLAGS, "flags 0x%x", flags);
	cr_assert_eq(ring.sq.ring_entries, 8);
	sqe = io_uring_get_sqe(&ring);
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, 42);
	cr_assert_eq(io_uring_submit_and_wait(&ring, 1), 1);
	cr_assert_eq(io_uring_peek_cqe(&ring, &cqe), 0);
	cr_assert_eq(cqe->user_data, 42);
	cr_assert_eq(cqe->res, 0);
	io_uring_cqe_seen(&ring, cqe);
	io_uring_queue_exit(&ring);
	cr_assert_eq(net_ring_init(&ring, 16, NULL), 0); /* flags may be NULL */
	io_uring_queue_exit(&ring);
}

Test(ring, init_error_is_minus_errno)
{
	struct io_uring ring;
	unsigned flags = 7;

	/* 0 entries is -EINVAL with every flag set: the last attempt's error comes back. */
	cr_assert_eq(net_ring_init(&ring, 0, &flags), -EINVAL);
	cr_assert_eq(flags, 7, "flags written on failure");
}

struct bufs_fixture {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	char *base;
	int sv[2];
};

#define N_BUFS	 4
#define BUF_SIZE 64
#define GROUP	 3

static void bufs_setup(struct bufs_fixture *f)
{
	cr_assert_eq(net_ring_init(&f->ring, 8, NULL), 0);
	cr_assert_eq(net_ring_bufs_init(&f->ring, N_BUFS, BUF_SIZE, GROUP, &f->br, &f->base), PT_OK);
	cr_assert_not_null(f->br);
	cr_assert_not_null(f->base);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->sv), 0);
}

static void bufs_teardown(struct bufs_fixture *f)
{
	close(f->sv[0]);
	close(f->sv[1]);
	io_uring_queue_exit(&f->ring);
	net_ring_bufs_free(f->br, f->base, N_BUFS);
}

/* One recv with buffer selection: its result, and the buffer id in *bid. */
static int recv_one(struct bufs_fixture *f, unsigned *bid)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&f->ring);
	struct io_uring_cqe *cqe;
	int res;

	io_uring_prep_recv(sqe, f->sv[0], NULL, BUF_SIZE, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = GROUP;
	cr_assert_eq(io_uring_submit_and_wait(&f->ring, 1), 1);
	cr_assert_eq(io_uring_peek_cqe(&f->ring, &cqe), 0);
	res = cqe->res;
	*bid = (cqe->flags & IORING_CQE_F_BUFFER) ? cqe->flags >> IORING_CQE_BUFFER_SHIFT : ~0u;
	io_uring_cqe_seen(&f->ring, cqe);
	return res;
}

Test(ring, buffers_receive_and_are_recycled)
{
	struct bufs_fixture f;
	char msg[16];
	unsigned bid, seen = 0;

	bufs_setup(&f);
	/* Three times the count: only recycled buffers make the later receives possible. */
	for (unsigned i = 0; i < 3 * N_BUFS; i++) {
		int n = snprintf(msg, sizeof(msg), "message %u", i);

		cr_assert_eq(write(f.sv[1], msg, (size_t)n), n);
		cr_assert_eq(recv_one(&f, &bid), n, "receive %u", i);
		cr_assert_lt(bid, N_BUFS);
		seen |= 1u << bid;
		cr_assert_eq(memcmp(net_ring_bufs_get(f.base, BUF_SIZE, bid), msg, (size_t)n), 0);
		cr_assert_eq(net_ring_bufs_get(f.base, BUF_SIZE, bid), f.base + bid * BUF_SIZE);
		net_ring_bufs_put(f.br, N_BUFS, net_ring_bufs_get(f.base, BUF_SIZE, bid), BUF_SIZE,
				 bid);
	}
	cr_assert_eq(seen, (1u << N_BUFS) - 1, "buffers used: 0x%x", seen);
	bufs_teardown(&f);
}

Test(ring, buffers_run_out_without_put)
{
	struct bufs_fixture f;
	unsigned bid;

	bufs_setup(&f);
	for (unsigned i = 0; i < N_BUFS; i++) {
		cr_assert_eq(write(f.sv[1], "x", 1), 1);
		cr_assert_eq(recv_one(&f, &bid), 1);
	}
	cr_assert_eq(write(f.sv[1], "y", 1), 1);
	cr_assert_eq(recv_one(&f, &bid), -ENOBUFS);
	cr_assert_eq(bid, ~0u);
	bufs_teardown(&f);
}

Test(ring, buffers_refused_registration_leaves_nothing)
{
	struct bufs_fixture f;
	struct io_uring_buf_ring *br = (void *)1;
	char *base = (char *)1;

	bufs_setup(&f);
	/* The group is taken: the kernel says -EEXIST; PT_ERROR, both pointers NULL. */
	cr_assert_eq(net_ring_bufs_init(&f.ring, N_BUFS, BUF_SIZE, GROUP, &br, &base), PT_ERROR);
	cr_assert_null(br);
	cr_assert_null(base);
	net_ring_bufs_free(NULL, NULL, N_BUFS);
	bufs_teardown(&f);
}

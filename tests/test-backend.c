/* SPDX-License-Identifier: MIT */
/* The loop's backends (src/loop/): which one a loop gets (flags,
 * AF_BACKEND, the fall-back when io_uring is refused or unusable), and what
 * the epoll backend does that io_uring does not have to: readiness waits
 * shared by several tasks, descriptors closed behind its back, blocking
 * descriptors, files on the blocking pool. Every other suite runs on both
 * backends (meson test --setup epoll). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define BACKEND_BITS (AF_FEATURE_BACKEND_IO_URING | AF_FEATURE_BACKEND_EPOLL)

static const struct af_loop_opts epoll_opts = { .flags = AF_LOOP_BACKEND_EPOLL };

static unsigned backend_of(const struct af_loop_opts *opts)
{
	struct af_loop *loop;
	unsigned f;
	int r = af_loop_new(&loop, opts);

	ck_assert_msg(r == 0, "af_loop_new: %s", af_strerror(r));
	f = af_loop_features(loop) & BACKEND_BITS;
	af_loop_free(loop);
	return f;
}

/* Run @fn as the main task of an epoll loop; return its result. */
static int run_epoll(af_task_fn fn, void *arg)
{
	struct af_loop *loop;
	int r, result = -1;

	ck_assert_int_eq(af_loop_new(&loop, &epoll_opts), 0);
	r = af_loop_run(loop, fn, arg, &result);
	ck_assert_msg(r == 0, "af_loop_run: %s", af_strerror(r));
	af_loop_free(loop);
	return result;
}

static int pending_bytes(int fd)
{
	int n = -1;

	ck_assert_int_eq(ioctl(fd, FIONREAD, &n), 0);
	return n;
}

/* ---- choosing ---------------------------------------------------------------------- */

START_TEST(the_backend_flags_choose_the_backend_and_features_report_exactly_one)
{
	ck_assert_uint_eq(backend_of(&epoll_opts), AF_FEATURE_BACKEND_EPOLL);
	ck_assert_uint_eq(backend_of(&(struct af_loop_opts){ .flags = AF_LOOP_BACKEND_IO_URING }),
			  AF_FEATURE_BACKEND_IO_URING);
	/* Only a ring has setup flags. */
	{
		struct af_loop *loop;

		ck_assert_int_eq(af_loop_new(&loop, &epoll_opts), 0);
		ck_assert_uint_eq(af_loop_features(loop) & (AF_FEATURE_COOP_TASKRUN |
							    AF_FEATURE_SINGLE_ISSUER |
							    AF_FEATURE_DEFER_TASKRUN),
				  0);
		af_loop_free(loop);
	}
}
END_TEST

START_TEST(both_backend_flags_at_once_are_refused_with_einval)
{
	struct af_loop *loop = NULL;
	struct af_loop_opts o = { .flags = AF_LOOP_BACKEND_EPOLL | AF_LOOP_BACKEND_IO_URING };

	ck_assert_int_eq(af_loop_new(&loop, &o), -EINVAL);
	ck_assert_ptr_null(loop);
}
END_TEST

START_TEST(af_backend_chooses_when_no_flag_does_and_a_flag_wins_over_it)
{
	/* Each test case runs in its own process: the environment is ours. */
	ck_assert_int_eq(setenv("AF_BACKEND", "epoll", 1), 0);
	ck_assert_uint_eq(backend_of(NULL), AF_FEATURE_BACKEND_EPOLL);
	ck_assert_uint_eq(backend_of(&(struct af_loop_opts){ .flags = AF_LOOP_BACKEND_IO_URING }),
			  AF_FEATURE_BACKEND_IO_URING);
	ck_assert_int_eq(setenv("AF_BACKEND", "io_uring", 1), 0);
	ck_assert_uint_eq(backend_of(NULL), AF_FEATURE_BACKEND_IO_URING);
	ck_assert_uint_eq(backend_of(&epoll_opts), AF_FEATURE_BACKEND_EPOLL);
}
END_TEST

START_TEST(an_unknown_af_backend_value_chooses_like_an_unset_one)
{
	unsigned automatic;

	ck_assert_int_eq(unsetenv("AF_BACKEND"), 0);
	automatic = backend_of(NULL);
	/* io_uring wherever it works; here too unless it is refused. */
	ck_assert(automatic == AF_FEATURE_BACKEND_IO_URING ||
		  automatic == AF_FEATURE_BACKEND_EPOLL);
	ck_assert_int_eq(setenv("AF_BACKEND", "kqueue", 1), 0);
	ck_assert_uint_eq(backend_of(NULL), automatic);
	ck_assert_int_eq(setenv("AF_BACKEND", "", 1), 0);
	ck_assert_uint_eq(backend_of(NULL), automatic);
}
END_TEST

/* ---- io_uring refused or unusable ---------------------------------------------------- */

#ifdef THIS_AUDIT_ARCH
#define REFUSE(nr) SECCOMP_REFUSE(nr, EPERM)

/* Docker's default profile refuses all three calls; a partial profile (or
 * an LSM hook) might let the set-up through and refuse the rest. */
static int refuse(bool setup_too)
{
	struct sock_filter all[] = {
		SECCOMP_BY_NR,
		REFUSE(__NR_io_uring_enter),
		REFUSE(__NR_io_uring_register),
		REFUSE(__NR_io_uring_setup),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		/* Without the last REFUSE, io_uring_setup is allowed. */
		.len = (unsigned short)(sizeof(all) / sizeof(all[0]) - (setup_too ? 0 : 2)),
		.filter = all,
	};

	if (!setup_too)
		all[prog.len - 1] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
								  SECCOMP_RET_ALLOW);
	return seccomp_install(&prog);
}

struct refused {
	int filter_r, new_r, run_r, forced_r;
	unsigned backend;
};

static int echo_through_a_pipe(void *arg)
{
	int p[2];
	char c = 0;

	(void)arg;
	if (pipe(p) < 0)
		return -errno;
	if (af_write(p[1], "x", 1, AF_OFFSET_CURRENT) != 1 ||
	    af_read(p[0], &c, 1, AF_OFFSET_CURRENT) != 1)
		return -EIO;
	close(p[0]);
	close(p[1]);
	return c == 'x' ? 7 : -EIO;
}

static void refused_child(void *arg, void *out)
{
	struct refused *r = out;
	bool setup_too = arg != NULL;
	struct af_loop *loop = NULL;

	/* The choice under test is the automatic one. */
	unsetenv("AF_BACKEND");
	r->filter_r = refuse(setup_too);
	r->new_r = af_loop_new(&loop, NULL);
	r->backend = af_loop_features(loop) & BACKEND_BITS;
	af_loop_free(loop);
	r->run_r = af_run(echo_through_a_pipe, NULL);
	loop = NULL;
	r->forced_r = af_loop_new(&loop, &(struct af_loop_opts){
						.flags = AF_LOOP_BACKEND_IO_URING });
	af_loop_free(loop);
}

static void run_refused(bool setup_too, struct refused *out)
{
	in_child_report(refused_child, (void *)(uintptr_t)setup_too, out, sizeof(*out));
	ck_assert_msg(out->filter_r == 0, "could not install the seccomp filter: %d", out->filter_r);
}
#endif

START_TEST(with_io_uring_blocked_as_docker_does_af_run_runs_io_on_epoll)
{
#ifdef THIS_AUDIT_ARCH
	struct refused r;

	run_refused(true, &r);
	ck_assert_int_eq(r.new_r, 0);
	ck_assert_uint_eq(r.backend, AF_FEATURE_BACKEND_EPOLL);
	ck_assert_int_eq(r.run_r, 7);
	ck_assert_int_eq(r.forced_r, -EPERM);
#else
	ck_abort_msg("no seccomp audit arch known for this machine");
#endif
}
END_TEST

START_TEST(an_io_uring_that_sets_up_but_refuses_enter_and_register_is_passed_over_for_epoll)
{
#ifdef THIS_AUDIT_ARCH
	struct refused r;

	run_refused(false, &r);
	ck_assert_int_eq(r.new_r, 0);
	ck_assert_uint_eq(r.backend, AF_FEATURE_BACKEND_EPOLL);
	ck_assert_int_eq(r.run_r, 7);
	ck_assert_int_eq(r.forced_r, -EPERM);
#else
	ck_abort_msg("no seccomp audit arch known for this machine");
#endif
}
END_TEST

/* ---- epoll: readiness ----------------------------------------------------------------- */

struct reader {
	int fd;
	int r;
	char buf[16];
};

static int read_one(void *arg)
{
	struct reader *rd = arg;

	rd->r = af_read(rd->fd, rd->buf, sizeof(rd->buf), AF_OFFSET_CURRENT);
	return 0;
}

/* io_uring may complete a read the task has not resumed from yet (and then
 * returns the data with the cancel left pending); on epoll the read is only
 * tried when the task runs, so a cancel that wins leaves the data where it
 * was. Either way no byte is lost. */
static int cancel_after_ready_main(void *arg)
{
	struct reader rd = { 0 };
	struct af_task *t;
	int p[2];

	(void)arg;
	ck_assert_int_eq(pipe(p), 0);
	rd.fd = p[0];
	ck_assert_int_eq(af_task_spawn(&t, read_one, &rd), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(t->state, AF_TASK_BLOCKED);
	ck_assert_int_eq(write(p[1], "ready", 5), 5);
	for (int i = 0; i < 1000 && t->state == AF_TASK_BLOCKED; i++)
		ck_assert_int_eq(af_yield(), 0);
	/* Woken by the readiness, not yet resumed. */
	ck_assert_int_eq(t->state, AF_TASK_RUNNABLE);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(rd.r, -ECANCELED);
	ck_assert_int_eq(pending_bytes(p[0]), 5);
	ck_assert_int_eq(af_read(p[0], rd.buf, sizeof(rd.buf), AF_OFFSET_CURRENT), 5);
	close(p[0]);
	close(p[1]);
	return 0;
}

START_TEST(a_cancel_after_the_pipe_became_readable_leaves_the_data_for_the_next_read)
{
	ck_assert_int_eq(run_epoll(cancel_after_ready_main, NULL), 0);
}
END_TEST

struct duplex {
	int fd, peer;
	int sent, got;
};

static int duplex_writer(void *arg)
{
	struct duplex *d = arg;
	static const char big[256 * 1024];

	/* Fills the socket buffer: parks for POLLOUT while the reader parks
	 * for POLLIN on the same descriptor. */
	while (d->sent < (int)sizeof(big)) {
		int n = af_send(d->fd, big, (size_t)((int)sizeof(big) - d->sent), 0);

		if (n <= 0)
			return n;
		d->sent += n;
	}
	return 0;
}

static int duplex_reader(void *arg)
{
	struct duplex *d = arg;
	char c;
	int n = af_recv(d->fd, &c, 1, 0);

	d->got = n == 1 ? c : n;
	return 0;
}

static int peer_main(void *arg)
{
	struct duplex *d = arg;
	char buf[4096];
	int total = 0;

	/* Give both tasks time to park on the one descriptor. */
	ck_assert_int_eq(af_sleep_ms(20), 0);
	ck_assert_int_eq(af_send(d->peer, "R", 1, 0), 1);
	while (total < 4 * 64 * 1024) {
		int n = af_recv(d->peer, buf, sizeof(buf), 0);

		ck_assert_int_gt(n, 0);
		total += n;
	}
	return total;
}

static int duplex_main(void *arg)
{
	struct duplex *d = arg;
	struct af_task *w, *r, *p;
	int sv[2], result = 0;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	d->fd = sv[0];
	d->peer = sv[1];
	ck_assert_int_eq(af_task_spawn(&w, duplex_writer, d), 0);
	ck_assert_int_eq(af_task_spawn(&r, duplex_reader, d), 0);
	ck_assert_int_eq(af_task_spawn(&p, peer_main, d), 0);
	ck_assert_int_eq(af_task_join(w, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_int_eq(af_task_join(r, NULL), 0);
	ck_assert_int_eq(af_task_join(p, &result), 0);
	ck_assert_int_eq(result, 4 * 64 * 1024);
	close(sv[0]);
	close(sv[1]);
	return 0;
}

START_TEST(a_reader_and_a_writer_parked_on_one_socket_are_both_woken)
{
	struct duplex d = { 0 };

	ck_assert_int_eq(run_epoll(duplex_main, &d), 0);
	ck_assert_int_eq(d.got, 'R');
	ck_assert_int_eq(d.sent, 4 * 64 * 1024);
}
END_TEST

static int reused_number_main(void *arg)
{
	int p[2], q[2];
	char c = 0;

	(void)arg;
	ck_assert_int_eq(pipe(p), 0);
	/* Armed in the epoll set, then closed with close(2), not af_close:
	 * the set forgets it by itself, the loop's table does not know. */
	ck_assert_int_eq(af_read_timeout(p[0], &c, 1, AF_OFFSET_CURRENT, 1 * MS), -ETIMEDOUT);
	close(p[0]);
	close(p[1]);
	ck_assert_int_eq(pipe(q), 0);
	ck_assert_int_eq(q[0], p[0]);
	ck_assert_int_eq(write(q[1], "n", 1), 1);
	ck_assert_int_eq(af_read_timeout(q[0], &c, 1, AF_OFFSET_CURRENT, 5000 * MS), 1);
	ck_assert_int_eq(c, 'n');
	/* And one that has to wait for its data. */
	ck_assert_int_eq(af_read_timeout(q[0], &c, 1, AF_OFFSET_CURRENT, 1 * MS), -ETIMEDOUT);
	close(q[0]);
	close(q[1]);
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(p[0], q[0]);
	{
		struct reader rd = { .fd = p[0] };
		struct af_task *t;

		ck_assert_int_eq(af_task_spawn(&t, read_one, &rd), 0);
		ck_assert_int_eq(af_sleep_ms(5), 0);
		ck_assert_int_eq(write(p[1], "m", 1), 1);
		ck_assert_int_eq(af_task_join(t, NULL), 0);
		ck_assert_int_eq(rd.r, 1);
		ck_assert_int_eq(rd.buf[0], 'm');
	}
	close(p[0]);
	close(p[1]);
	return 0;
}

START_TEST(a_descriptor_closed_behind_the_loops_back_and_its_number_reused_still_wakes_readers)
{
	ck_assert_int_eq(run_epoll(reused_number_main, NULL), 0);
}
END_TEST

/* Many waits trust the table at once; the reused number among them is
 * found by the check of waits that have lasted 10 ms: the loop's timerfd
 * wakes it for that when it sleeps, and a busy loop runs it between
 * batches. */
#define TRUSTING 6

struct spinner {
	bool stop;
	long turns;
};

static int spin(void *arg)
{
	struct spinner *sp = arg;

	while (!sp->stop) {
		ck_assert_int_eq(af_yield(), 0);
		sp->turns++;
	}
	return 0;
}

static void reused_among_many(bool busy)
{
	int p[TRUSTING][2], q[2];
	struct reader rd[TRUSTING] = { { 0 } };
	struct af_task *t[TRUSTING], *spinner_task = NULL;
	struct spinner sp = { 0 };
	char c = 0;

	for (int i = 0; i < TRUSTING; i++) {
		ck_assert_int_eq(pipe(p[i]), 0);
		/* Registered, and known empty: the next wait trusts the table. */
		ck_assert_int_eq(af_read_timeout(p[i][0], &c, 1, AF_OFFSET_CURRENT, 1 * MS),
				 -ETIMEDOUT);
	}
	for (int i = 1; i < TRUSTING; i++) {
		rd[i].fd = p[i][0];
		ck_assert_int_eq(af_task_spawn(&t[i], read_one, &rd[i]), 0);
	}
	ck_assert_int_eq(af_yield(), 0);
	close(p[0][0]);
	close(p[0][1]);
	ck_assert_int_eq(pipe(q), 0);
	ck_assert_int_eq(q[0], p[0][0]);
	ck_assert_int_eq(write(q[1], "n", 1), 1);
	if (busy)
		ck_assert_int_eq(af_task_spawn(&spinner_task, spin, &sp), 0);
	ck_assert_int_eq(af_read_timeout(q[0], &c, 1, AF_OFFSET_CURRENT, 5000 * MS), 1);
	ck_assert_int_eq(c, 'n');
	if (busy) {
		/* The loop never slept: the check ran between its batches. */
		sp.stop = true;
		ck_assert_int_eq(af_task_join(spinner_task, NULL), 0);
		ck_assert_int_gt(sp.turns, 0);
	}
	for (int i = 1; i < TRUSTING; i++) {
		ck_assert_int_eq(write(p[i][1], "x", 1), 1);
		ck_assert_int_eq(af_task_join(t[i], NULL), 0);
		ck_assert_int_eq(rd[i].r, 1);
		ck_assert_int_eq(rd[i].buf[0], 'x');
		close(p[i][0]);
		close(p[i][1]);
	}
	close(q[0]);
	close(q[1]);
}

static int reused_among_many_main(void *arg)
{
	reused_among_many(*(bool *)arg);
	return 0;
}

START_TEST(a_number_reused_behind_the_loops_back_is_found_among_many_waits_by_a_sleeping_loop)
{
	bool busy = false;

	ck_assert_int_eq(run_epoll(reused_among_many_main, &busy), 0);
}
END_TEST

START_TEST(a_number_reused_behind_the_loops_back_is_found_among_many_waits_by_a_busy_loop)
{
	bool busy = true;

	ck_assert_int_eq(run_epoll(reused_among_many_main, &busy), 0);
}
END_TEST

#ifdef THIS_AUDIT_ARCH
struct no_timerfd {
	int filter_r, timerfd_r, run_r;
};

static void no_timerfd_child(void *arg, void *out)
{
	struct no_timerfd *r = out;
	struct sock_filter f[] = {
		SECCOMP_BY_NR,
		REFUSE(__NR_timerfd_create),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = (unsigned short)(sizeof(f) / sizeof(f[0])), .filter = f };
	bool busy = false;

	(void)arg;
	r->filter_r = seccomp_install(&prog);
	r->timerfd_r = timerfd_create(CLOCK_MONOTONIC, 0) < 0 ? -errno : 0;
	r->run_r = run_epoll(reused_among_many_main, &busy);
}
#endif

START_TEST(without_timerfd_a_sleeping_loop_still_finds_a_reused_number_by_the_sleeps_timeout)
{
#ifdef THIS_AUDIT_ARCH
	struct no_timerfd r;

	in_child_report(no_timerfd_child, NULL, &r, sizeof(r));
	ck_assert_int_eq(r.filter_r, 0);
	ck_assert_int_eq(r.timerfd_r, -EPERM);
	ck_assert_int_eq(r.run_r, 0);
#else
	ck_abort_msg("no seccomp audit arch known for this machine");
#endif
}
END_TEST

static int close_parked_main(void *arg)
{
	struct reader rd = { 0 };
	struct af_task *t;
	int p[2];

	(void)arg;
	ck_assert_int_eq(pipe(p), 0);
	rd.fd = p[0];
	ck_assert_int_eq(af_task_spawn(&t, read_one, &rd), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_close(p[0]), 0);
	/* The number is taken again before the reader runs: it must not
	 * read from the new pipe. */
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(p[0], rd.fd);
	ck_assert_int_eq(write(p[1], "new", 3), 3);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(rd.r, -EBADF);
	ck_assert_int_eq(pending_bytes(p[0]), 3);
	close(p[0]);
	close(p[1]);
	return 0;
}

START_TEST(af_close_ends_a_read_parked_on_the_descriptor_with_ebadf_even_if_the_number_is_reused)
{
	ck_assert_int_eq(run_epoll(close_parked_main, NULL), 0);
}
END_TEST

/* A connected TCP pair on loopback: @fds[0] the client, @fds[1] the server. */
static void tcp_pair(int fds[2])
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(lfd, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
	ck_assert_int_eq(listen(lfd, 1), 0);
	fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fds[0], 0);
	ck_assert_int_eq(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
	fds[1] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(fds[1], 0);
	close(lfd);
}

static int recv_one(void *arg)
{
	struct reader *rd = arg;

	rd->r = af_recv(rd->fd, rd->buf, sizeof(rd->buf), 0);
	return 0;
}

/* Spawn a reader of @fd, let the loop look at the kernel a few hundred
 * times, and say whether the reader has its data: well before the 10 ms
 * check that would also find it, so only the edge can have woken it. */
static bool reader_woken_by_the_edge(struct reader *rd, struct af_task **t)
{
	ck_assert_int_eq(af_task_spawn(t, recv_one, rd), 0);
	for (int i = 0; i < 300 && (*t)->state != AF_TASK_DONE; i++)
		ck_assert_int_eq(af_yield(), 0);
	return (*t)->state == AF_TASK_DONE;
}

/* A short read on TCP means the receive queue was empty, so the next read
 * parks without trying; what arrives after the short read, even before
 * that next read starts, raises an edge that wakes it. */
static int short_read_main(void *arg)
{
	struct reader rd = { 0 };
	struct af_task *t;
	char buf[64];
	int s[2];

	(void)arg;
	tcp_pair(s);
	/* Registered by a first wait: only then does the loop know it is TCP. */
	ck_assert_int_eq(af_recv_timeout(s[0], buf, sizeof(buf), 0, 1 * MS), -ETIMEDOUT);
	ck_assert_int_eq(send(s[1], "abc", 3, 0), 3);
	ck_assert_int_eq(af_recv(s[0], buf, sizeof(buf), 0), 3);
	ck_assert_int_eq(send(s[1], "def", 3, 0), 3);
	rd.fd = s[0];
	ck_assert(reader_woken_by_the_edge(&rd, &t));
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(rd.r, 3);
	ck_assert_int_eq(memcmp(rd.buf, "def", 3), 0);
	/* Data and the end of the stream in one go: the read that takes the
	 * data is short, and the end of stream raises no second edge. */
	ck_assert_int_eq(send(s[1], "gh", 2, 0), 2);
	ck_assert_int_eq(shutdown(s[1], SHUT_WR), 0);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_recv(s[0], buf, sizeof(buf), 0), 2);
	ck_assert(reader_woken_by_the_edge(&rd, &t));
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(rd.r, 0);
	ck_assert_int_eq(af_recv(s[0], buf, sizeof(buf), 0), 0);
	close(s[0]);
	close(s[1]);
	return 0;
}

START_TEST(after_a_short_tcp_read_the_next_read_is_woken_by_what_arrives_even_an_end_of_stream)
{
	ck_assert_int_eq(run_epoll(short_read_main, NULL), 0);
}
END_TEST

/* A registration outlives the wait that made it: a timed-out read leaves
 * the descriptor in the set, and the next wait on it needs no system call
 * and still wakes. */
static int registered_main(void *arg)
{
	struct reader rd = { 0 };
	struct af_task *t;
	char buf[8];
	int s[2];

	(void)arg;
	tcp_pair(s);
	ck_assert_int_eq(af_recv_timeout(s[0], buf, sizeof(buf), 0, 1 * MS), -ETIMEDOUT);
	rd.fd = s[0];
	ck_assert_int_eq(af_task_spawn(&t, recv_one, &rd), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(t->state, AF_TASK_BLOCKED);
	ck_assert_int_eq(send(s[1], "x", 1, 0), 1);
	for (int i = 0; i < 300 && t->state != AF_TASK_DONE; i++)
		ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(t->state, AF_TASK_DONE);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(rd.r, 1);
	/* af_close takes it out; the number's next file starts afresh. */
	ck_assert_int_eq(af_close(s[0]), 0);
	close(s[1]);
	tcp_pair(s);
	ck_assert_int_eq(send(s[1], "y", 1, 0), 1);
	ck_assert_int_eq(af_recv_timeout(s[0], buf, sizeof(buf), 0, LONG_NS), 1);
	ck_assert_int_eq(buf[0], 'y');
	close(s[0]);
	close(s[1]);
	return 0;
}

START_TEST(a_descriptor_stays_registered_after_a_timed_out_wait_and_its_next_wait_still_wakes)
{
	ck_assert_int_eq(run_epoll(registered_main, NULL), 0);
}
END_TEST

struct unix_conn {
	struct sockaddr_un a;
	socklen_t alen;
	int fd;
	int r;
};

static int unix_connect_task(void *arg)
{
	struct unix_conn *u = arg;

	u->r = af_connect(u->fd, (struct sockaddr *)&u->a, u->alen);
	return 0;
}

/* connect(2) to a Unix listener with a full backlog fails with EAGAIN when
 * non-blocking, and no poll reports the room: af_connect() tries again,
 * backing off, until the listener accepts, as a blocking connect would. */
static int full_backlog_main(void *arg)
{
	struct unix_conn u = { .a = { .sun_family = AF_UNIX } };
	struct af_task *t;
	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int c0 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), a0, a1;

	(void)arg;
	ck_assert_int_ge(lfd, 0);
	ck_assert_int_ge(c0, 0);
	/* An abstract address: nothing to clean up. */
	snprintf(u.a.sun_path + 1, sizeof(u.a.sun_path) - 1, "af-test-backlog-%d", (int)getpid());
	u.alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(u.a.sun_path + 1));
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&u.a, u.alen), 0);
	ck_assert_int_eq(listen(lfd, 0), 0);
	ck_assert_int_eq(connect(c0, (struct sockaddr *)&u.a, u.alen), 0);
	u.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	ck_assert_int_ge(u.fd, 0);
	ck_assert_int_eq(connect(u.fd, (struct sockaddr *)&u.a, u.alen), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(af_task_spawn(&t, unix_connect_task, &u), 0);
	ck_assert_int_eq(af_sleep_ms(30), 0);
	ck_assert_int_eq(t->state, AF_TASK_BLOCKED);
	a0 = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(a0, 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(u.r, 0);
	a1 = af_accept_timeout(lfd, NULL, NULL, SOCK_CLOEXEC, LONG_NS);
	ck_assert_int_ge(a1, 0);
	ck_assert_int_eq(af_send(u.fd, "z", 1, 0), 1);
	{
		char c = 0;

		ck_assert_int_eq(af_recv(a1, &c, 1, 0), 1);
		ck_assert_int_eq(c, 'z');
	}
	close(a0);
	close(a1);
	close(u.fd);
	close(c0);
	close(lfd);
	return 0;
}

START_TEST(a_connect_to_a_full_unix_backlog_completes_once_the_listener_accepts)
{
	ck_assert_int_eq(run_epoll(full_backlog_main, NULL), 0);
}
END_TEST

/* ---- epoll: blocking descriptors -------------------------------------------------------- */

struct ticker {
	bool stop;
	int ticks;
};

static int tick(void *arg)
{
	struct ticker *tk = arg;

	while (!tk->stop && af_sleep_ms(1) == 0)
		tk->ticks++;
	return 0;
}

struct conn {
	struct sockaddr_in addr;
	int lfd;
	int r;
};

static int connect_later(void *arg)
{
	struct conn *c = arg;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(af_sleep_ms(20), 0);
	/* A blocking socket: connect(2) would block the loop; it must not. */
	c->r = af_connect(fd, (struct sockaddr *)&c->addr, sizeof(c->addr));
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	af_close(fd);
	return 0;
}

static int blocking_sockets_main(void *arg)
{
	struct ticker tk = { 0 };
	struct conn c = { .addr = { .sin_family = AF_INET } };
	socklen_t len = sizeof(c.addr);
	struct af_task *ticker, *client;
	int fd, refused;

	(void)arg;
	c.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(c.lfd, 0);
	ck_assert_int_eq(bind(c.lfd, (struct sockaddr *)&c.addr, sizeof(c.addr)), 0);
	ck_assert_int_eq(getsockname(c.lfd, (struct sockaddr *)&c.addr, &len), 0);
	ck_assert_int_eq(listen(c.lfd, 4), 0);
	ck_assert_int_eq(af_task_spawn(&ticker, tick, &tk), 0);
	ck_assert_int_eq(af_task_spawn(&client, connect_later, &c), 0);
	fd = af_accept(c.lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	/* The loop kept running while accept waited. */
	ck_assert_int_gt(tk.ticks, 0);
	ck_assert_int_eq(af_task_join(client, NULL), 0);
	ck_assert_int_eq(c.r, 0);
	ck_assert_int_eq(af_close(fd), 0);
	ck_assert_int_eq(af_close(c.lfd), 0);
	/* Nothing listens there any more. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	refused = af_connect(fd, (struct sockaddr *)&c.addr, sizeof(c.addr));
	ck_assert_int_eq(refused, -ECONNREFUSED);
	close(fd);
	/* Not listening, not a socket: refused at once, never waited on. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(af_accept(fd, NULL, NULL, 0), -EINVAL);
	close(fd);
	tk.stop = true;
	ck_assert_int_eq(af_task_join(ticker, NULL), 0);
	return 0;
}

START_TEST(accept_and_connect_on_blocking_sockets_park_the_task_not_the_loop)
{
	ck_assert_int_eq(run_epoll(blocking_sockets_main, NULL), 0);
}
END_TEST

static int dev_null_main(void *arg)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	char buf[8];

	(void)arg;
	ck_assert_int_ge(fd, 0);
	/* epoll refuses /dev/null; poll(2) calls it always ready. */
	ck_assert_int_eq(af_read(fd, buf, sizeof(buf), AF_OFFSET_CURRENT), 0);
	ck_assert_int_eq(af_write(fd, "abc", 3, AF_OFFSET_CURRENT), 3);
	ck_assert_int_eq(af_poll(fd, POLLIN | POLLOUT), POLLIN | POLLOUT);
	ck_assert_int_eq(af_close(fd), 0);
	return 0;
}

START_TEST(descriptors_epoll_refuses_like_dev_null_never_block)
{
	ck_assert_int_eq(run_epoll(dev_null_main, NULL), 0);
}
END_TEST

/* ---- epoll: files on the blocking pool ---------------------------------------------------- */

static int file_main(void *arg)
{
	struct af_loop *loop = af_loop_current();
	char path[] = "/tmp/af-backend-XXXXXX";
	int fd = mkstemp(path);
	char buf[8] = { 0 };
	struct iovec iov[2] = { { buf, 2 }, { buf + 2, 3 } };

	(void)arg;
	ck_assert_int_ge(fd, 0);
	unlink(path);
	ck_assert_ptr_null(loop->pool);
	ck_assert_int_eq(af_write(fd, "hello", 5, AF_OFFSET_CURRENT), 5);
	/* It went through a worker thread, not a readiness wait. */
	ck_assert_ptr_nonnull(loop->pool);
	ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 5);
	ck_assert_int_eq(af_read(fd, buf, sizeof(buf), 1), 4);
	ck_assert_int_eq(memcmp(buf, "ello", 4), 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 5);
	ck_assert_int_eq(af_readv(fd, iov, 2, 0), 5);
	ck_assert_int_eq(memcmp(buf, "hello", 5), 0);
	ck_assert_int_eq(af_read(fd, buf, sizeof(buf), AF_OFFSET_CURRENT), 0);
	ck_assert_int_eq(af_close(fd), 0);
	return 0;
}

START_TEST(regular_files_are_read_and_written_on_the_blocking_pool_at_offsets_and_positions)
{
	ck_assert_int_eq(run_epoll(file_main, NULL), 0);
}
END_TEST

struct file_reader {
	int fd;
	int r, next;
	char buf[4];
};

static int read_file_then_block(void *arg)
{
	struct file_reader *f = arg;

	f->r = af_read(f->fd, f->buf, sizeof(f->buf), 0);
	f->next = af_yield();
	return 0;
}

/* The worker writes into the caller's buffer: the task waits for it even
 * when cancelled, returns what it read and takes the cancel at its next
 * blocking call. */
static int file_cancel_main(void *arg)
{
	char path[] = "/tmp/af-backend-XXXXXX";
	struct file_reader f = { .fd = mkstemp(path) };
	struct af_task *t;

	(void)arg;
	ck_assert_int_ge(f.fd, 0);
	unlink(path);
	ck_assert_int_eq(write(f.fd, "data", 4), 4);
	ck_assert_int_eq(af_task_spawn(&t, read_file_then_block, &f), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(f.r, 4);
	ck_assert_int_eq(memcmp(f.buf, "data", 4), 0);
	ck_assert_int_eq(f.next, -ECANCELED);
	close(f.fd);
	return 0;
}

START_TEST(a_file_read_cancelled_on_the_pool_returns_its_data_and_the_next_call_is_cancelled)
{
	ck_assert_int_eq(run_epoll(file_cancel_main, NULL), 0);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("backend");
	TCase *tc;

	tc = tcase_create("choosing");
	tcase_add_test(tc, the_backend_flags_choose_the_backend_and_features_report_exactly_one);
	tcase_add_test(tc, both_backend_flags_at_once_are_refused_with_einval);
	tcase_add_test(tc, af_backend_chooses_when_no_flag_does_and_a_flag_wins_over_it);
	tcase_add_test(tc, an_unknown_af_backend_value_chooses_like_an_unset_one);
	suite_add_tcase(s, tc);

	tc = tcase_create("io_uring refused");
	tcase_add_test(tc, with_io_uring_blocked_as_docker_does_af_run_runs_io_on_epoll);
	tcase_add_test(tc, an_io_uring_that_sets_up_but_refuses_enter_and_register_is_passed_over_for_epoll);
	suite_add_tcase(s, tc);

	tc = tcase_create("epoll readiness");
	tcase_add_test(tc, a_cancel_after_the_pipe_became_readable_leaves_the_data_for_the_next_read);
	tcase_add_test(tc, a_reader_and_a_writer_parked_on_one_socket_are_both_woken);
	tcase_add_test(tc, a_descriptor_closed_behind_the_loops_back_and_its_number_reused_still_wakes_readers);
	tcase_add_test(tc, a_number_reused_behind_the_loops_back_is_found_among_many_waits_by_a_sleeping_loop);
	tcase_add_test(tc, a_number_reused_behind_the_loops_back_is_found_among_many_waits_by_a_busy_loop);
	tcase_add_test(tc, without_timerfd_a_sleeping_loop_still_finds_a_reused_number_by_the_sleeps_timeout);
	tcase_add_test(tc, af_close_ends_a_read_parked_on_the_descriptor_with_ebadf_even_if_the_number_is_reused);
	tcase_add_test(tc, after_a_short_tcp_read_the_next_read_is_woken_by_what_arrives_even_an_end_of_stream);
	tcase_add_test(tc, a_descriptor_stays_registered_after_a_timed_out_wait_and_its_next_wait_still_wakes);
	suite_add_tcase(s, tc);

	tc = tcase_create("epoll blocking descriptors");
	tcase_add_test(tc, accept_and_connect_on_blocking_sockets_park_the_task_not_the_loop);
	tcase_add_test(tc, descriptors_epoll_refuses_like_dev_null_never_block);
	tcase_add_test(tc, a_connect_to_a_full_unix_backlog_completes_once_the_listener_accepts);
	suite_add_tcase(s, tc);

	tc = tcase_create("epoll files");
	tcase_add_test(tc, regular_files_are_read_and_written_on_the_blocking_pool_at_offsets_and_positions);
	tcase_add_test(tc, a_file_read_cancelled_on_the_pool_returns_its_data_and_the_next_call_is_cancelled);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(make_suite());
}

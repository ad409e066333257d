/* SPDX-License-Identifier: MIT */
/* File-descriptor I/O as coroutine calls (io.h): every call on pipes,
 * socketpairs, loopback TCP and regular files, the exact errno of each error
 * path, timeouts, the cancellation guarantee under races, a tiny ring, and
 * the echo-server load test of the I/O issue. */
#include <arpa/inet.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#define AF_TESTUTIL_SUBMIT_HOOK
#include "testutil.h"


/* ---- helpers ------------------------------------------------------------------ */

static void spin_us(unsigned us)
{
	uint64_t end = now_ns() + (uint64_t)us * 1000u;

	while (now_ns() < end)
		;
}

static int run_opts(af_task_fn fn, void *arg, const struct af_loop_opts *opts)
{
	struct af_loop *loop;
	int r, result = -1;

	r = af_loop_new(&loop, opts);
	ck_assert_msg(r == 0, "af_loop_new: %s", af_strerror(r));
	r = af_loop_run(loop, fn, arg, &result);
	ck_assert_msg(r == 0, "af_loop_run: %s", af_strerror(r));
	af_loop_free(loop);
	return result;
}

static void run_ok(af_task_fn fn, void *arg)
{
	ck_assert_int_eq(run_main(fn, arg), 0);
}

static void make_pipe(int p[2])
{
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
}

static void make_socketpair(int sv[2])
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static int make_tmpfile(void)
{
	const char *dir = getenv("TMPDIR");
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/af-test-io-XXXXXX", dir && *dir ? dir : "/tmp");
	fd = mkstemp(path);
	ck_assert_msg(fd >= 0, "mkstemp %s: %s", path, strerror(errno));
	unlink(path);
	return fd;
}

static off_t file_pos(int fd)
{
	return lseek(fd, 0, SEEK_CUR);
}

/* Bytes waiting in a pipe or socket. */
static int pending_bytes(int fd)
{
	int n = -1;

	ck_assert_int_eq(ioctl(fd, FIONREAD, &n), 0);
	return n;
}

/* Whether the kernel reads and writes a pipe without blocking
 * (FMODE_NOWAIT; not on Linux 6.1), probed as the kernel checks it:
 * RWF_NOWAIT is refused where it is missing. Without it a ring read of a
 * pipe never completes where it is submitted: the kernel parks it on poll
 * and issues it later, so a cancel (or a zero timeout) right behind it
 * can win, before it has moved a byte. */
static bool pipe_reads_nowait(void)
{
	static int cached = -1;

	if (cached < 0) {
		char c;
		struct iovec iov = { &c, 1 };
		int p[2];

		make_pipe(p);
		ck_assert_int_eq(preadv2(p[0], &iov, 1, -1, RWF_NOWAIT), -1);
		ck_assert_msg(errno == EAGAIN || errno == EOPNOTSUPP, "preadv2: %s", strerror(errno));
		cached = errno == EAGAIN;
		close(p[0]);
		close(p[1]);
	}
	return cached;
}

/* A descriptor number that is certainly closed right now. */
static int closed_fd(void)
{
	int p[2];

	make_pipe(p);
	close(p[0]);
	close(p[1]);
	return p[0];
}

static void set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	ck_assert_int_ge(fl, 0);
	ck_assert_int_eq(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK), 0);
}

/* Fill a pipe or socket until the kernel would block. */
static void fill(int fd)
{
	static const char junk[4096];

	set_nonblock(fd, true);
	while (write(fd, junk, sizeof(junk)) > 0)
		;
	ck_assert_int_eq(errno, EAGAIN);
	while (write(fd, junk, 1) > 0)
		;
	set_nonblock(fd, false);
}

static unsigned char pat(uint32_t seed, size_t k)
{
	uint32_t x = seed * 2654435761u ^ (uint32_t)k * 40503u;

	x ^= x >> 15;
	x *= 0x2c1b3c6du;
	x ^= x >> 12;
	return (unsigned char)x;
}

static void fill_pat(unsigned char *buf, size_t len, uint32_t seed, size_t from)
{
	for (size_t k = 0; k < len; k++)
		buf[k] = pat(seed, from + k);
}

static bool check_pat(const unsigned char *buf, size_t len, uint32_t seed, size_t from)
{
	for (size_t k = 0; k < len; k++)
		if (buf[k] != pat(seed, from + k))
			return false;
	return true;
}

static struct sockaddr_in loopback(uint16_t port)
{
	struct sockaddr_in a;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(port);
	return a;
}

static int tcp_socket(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(s, 0);
	return s;
}

/* A socket bound to an ephemeral loopback port; listening if backlog >= 0. */
static int tcp_bound(uint16_t *port, int backlog)
{
	struct sockaddr_in a = loopback(0);
	socklen_t len = sizeof(a);
	int s = tcp_socket();

	ck_assert_int_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	if (backlog >= 0)
		ck_assert_int_eq(listen(s, backlog), 0);
	ck_assert_int_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return s;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static void raise_nofile(void)
{
	struct rlimit rl;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

/* First failure seen in a hot loop; asserting there would cost a write to
 * Check's log on every success. */
struct failure {
	char msg[256];
};

#define FAIL_IF(f, cond, ...)                                                  \
	do {                                                                   \
		if ((cond) && !(f)->msg[0])                                    \
			snprintf((f)->msg, sizeof((f)->msg), __VA_ARGS__);     \
	} while (0)

static void assert_no_failure(const struct failure *f)
{
	ck_assert_msg(f->msg[0] == 0, "%s", f->msg);
}

/* Small scenarios: two fds, results and a log of what tasks did. */
struct sc {
	int fd[4];
	int r[8];
	char buf[256];
	struct trace tr;
	uint16_t port;
	struct af_task *t;
	bool flag;
};

/* ---- pipes --------------------------------------------------------------------- */

static int pipe_read_write_main(void *arg)
{
	struct sc *s = arg;
	char buf[16] = { 0 };

	make_pipe(s->fd);
	ck_assert_int_eq(af_write(s->fd[1], "hello", 5, AF_OFFSET_CURRENT), 5);
	ck_assert_int_eq(af_read(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT), 5);
	ck_assert_str_eq(buf, "hello");
	/* A read never waits for more than is there. */
	ck_assert_int_eq(af_write(s->fd[1], "abc", 3, AF_OFFSET_CURRENT), 3);
	ck_assert_int_eq(af_read(s->fd[0], buf, 2, AF_OFFSET_CURRENT), 2);
	ck_assert_int_eq(af_read(s->fd[0], buf + 2, sizeof(buf) - 2, AF_OFFSET_CURRENT), 1);
	ck_assert_int_eq(memcmp(buf, "abc", 3), 0);
	/* Zero bytes is a valid request, even with a NULL buffer. */
	ck_assert_int_eq(af_write(s->fd[1], NULL, 0, AF_OFFSET_CURRENT), 0);
	ck_assert_int_eq(af_read(s->fd[0], NULL, 0, AF_OFFSET_CURRENT), 0);
	ck_assert_int_eq(pending_bytes(s->fd[0]), 0);
	close(s->fd[0]);
	close(s->fd[1]);
	return 0;
}

START_TEST(read_and_write_on_a_pipe_move_the_bytes_and_return_their_count)
{
	struct sc s = { 0 };

	run_ok(pipe_read_write_main, &s);
}
END_TEST

static int late_writer(void *arg)
{
	struct sc *s = arg;

	trace_add(&s->tr, "writer");
	ck_assert_int_eq(af_sleep_ms(10), 0);
	trace_add(&s->tr, "writes");
	ck_assert_int_eq(af_write(s->fd[1], "ping", 4, AF_OFFSET_CURRENT), 4);
	return 0;
}

static int parked_read_main(void *arg)
{
	struct sc *s = arg;
	char buf[8] = { 0 };

	make_pipe(s->fd);
	ck_assert_int_eq(af_task_spawn(&s->t, late_writer, s), 0);
	trace_add(&s->tr, "reads");
	ck_assert_int_eq(af_read(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT), 4);
	trace_add(&s->tr, "got");
	ck_assert_str_eq(buf, "ping");
	ck_assert_int_eq(af_task_join(s->t, NULL), 0);
	close(s->fd[0]);
	close(s->fd[1]);
	return 0;
}

START_TEST(a_read_on_an_empty_pipe_parks_the_task_while_the_loop_runs_the_writer)
{
	struct sc s = { 0 };

	run_ok(parked_read_main, &s);
	ck_assert_str_eq(s.tr.buf, "reads writer writes got");
}
END_TEST

static int pipe_eof_main(void *arg)
{
	struct sc *s = arg;
	char c;

	make_pipe(s->fd);
	close(s->fd[1]);
	ck_assert_int_eq(af_read(s->fd[0], &c, 1, AF_OFFSET_CURRENT), 0);
	ck_assert_int_eq(af_read_timeout(s->fd[0], &c, 1, AF_OFFSET_CURRENT, LONG_NS), 0);
	close(s->fd[0]);
	return 0;
}

START_TEST(a_read_of_a_pipe_whose_writer_closed_returns_zero)
{
	struct sc s = { 0 };

	run_ok(pipe_eof_main, &s);
}
END_TEST

static int pipe_vec_main(void *arg)
{
	struct sc *s = arg;
	char a[3] = "abc", b[4] = "defg", x[2], y[10];
	struct iovec out[2] = { { a, 3 }, { b, 4 } };
	struct iovec in[2] = { { x, 2 }, { y, sizeof(y) } };

	make_pipe(s->fd);
	ck_assert_int_eq(af_writev(s->fd[1], out, 2, AF_OFFSET_CURRENT), 7);
	ck_assert_int_eq(af_readv(s->fd[0], in, 2, AF_OFFSET_CURRENT), 7);
	ck_assert_int_eq(memcmp(x, "ab", 2), 0);
	ck_assert_int_eq(memcmp(y, "cdefg", 5), 0);
	ck_assert_int_eq(af_writev_timeout(s->fd[1], out, 1, AF_OFFSET_CURRENT, LONG_NS), 3);
	ck_assert_int_eq(af_readv_timeout(s->fd[0], in + 1, 1, AF_OFFSET_CURRENT, LONG_NS), 3);
	ck_assert_int_eq(memcmp(y, "abc", 3), 0);
	close(s->fd[0]);
	close(s->fd[1]);
	return 0;
}

START_TEST(writev_gathers_and_readv_scatters_through_a_pipe)
{
	struct sc s = { 0 };

	run_ok(pipe_vec_main, &s);
}
END_TEST

static int short_write_main(void *arg)
{
	static unsigned char big[1 << 20];
	struct sc *s = arg;
	int r;

	make_pipe(s->fd);
	fill_pat(big, sizeof(big), 7, 0);
	/* Nobody reads: the kernel takes what fits and the call says so.
	 * Where pipes cannot be written without blocking (Linux 6.1: no
	 * FMODE_NOWAIT), the write parks in io-wq until its timeout cancels
	 * it, and a timed-out write that moved bytes reports them: a short
	 * count either way, so the timeout need not be long. */
	r = af_write_timeout(s->fd[1], big, sizeof(big), AF_OFFSET_CURRENT, 1000 * MS);
	ck_assert_int_gt(r, 0);
	ck_assert_int_lt(r, (int)sizeof(big));
	ck_assert_int_eq(pending_bytes(s->fd[0]), r);
	s->r[0] = r;
	close(s->fd[0]);
	close(s->fd[1]);
	return 0;
}

START_TEST(a_write_larger_than_the_pipe_reports_the_short_count)
{
	struct sc s = { 0 };

	run_ok(short_write_main, &s);
}
END_TEST

/* ---- regular files ---------------------------------------------------------------- */

static int file_current_main(void *arg)
{
	struct sc *s = arg;
	char buf[32] = { 0 };
	int fd = make_tmpfile();

	ck_assert_int_eq(af_write(fd, "hello ", 6, AF_OFFSET_CURRENT), 6);
	ck_assert_int_eq(file_pos(fd), 6);
	ck_assert_int_eq(af_write_timeout(fd, "world", 5, AF_OFFSET_CURRENT, LONG_NS), 5);
	ck_assert_int_eq(file_pos(fd), 11);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	ck_assert_int_eq(af_read(fd, buf, 6, AF_OFFSET_CURRENT), 6);
	ck_assert_int_eq(file_pos(fd), 6);
	ck_assert_int_eq(af_read_timeout(fd, buf + 6, sizeof(buf) - 6, AF_OFFSET_CURRENT,
					 LONG_NS), 5);
	ck_assert_str_eq(buf, "hello world");
	ck_assert_int_eq(file_pos(fd), 11);
	/* At the end of the file a read returns 0. */
	ck_assert_int_eq(af_read(fd, buf, sizeof(buf), AF_OFFSET_CURRENT), 0);
	(void)s;
	close(fd);
	return 0;
}

START_TEST(read_and_write_at_the_current_offset_advance_the_file_position)
{
	struct sc s = { 0 };

	run_ok(file_current_main, &s);
}
END_TEST

static int file_offset_main(void *arg)
{
	char buf[32] = { 0 };
	int fd = make_tmpfile();

	(void)arg;
	ck_assert_int_eq(pwrite(fd, "hello world", 11, 0), 11);
	ck_assert_int_eq(lseek(fd, 3, SEEK_SET), 3);
	ck_assert_int_eq(af_read(fd, buf, 5, 6), 5);
	ck_assert_str_eq(buf, "world");
	ck_assert_int_eq(file_pos(fd), 3);
	ck_assert_int_eq(af_write(fd, "HELLO", 5, 0), 5);
	ck_assert_int_eq(file_pos(fd), 3);
	/* Past the end: the file grows, the position still stays. */
	ck_assert_int_eq(af_write_timeout(fd, "!", 1, 20, LONG_NS), 1);
	ck_assert_int_eq(file_pos(fd), 3);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(af_read_timeout(fd, buf, sizeof(buf), 0, LONG_NS), 21);
	ck_assert_int_eq(memcmp(buf, "HELLO world\0\0\0\0\0\0\0\0\0!", 21), 0);
	ck_assert_int_eq(file_pos(fd), 3);
	ck_assert_int_eq(af_read(fd, buf, sizeof(buf), 21), 0);
	ck_assert_int_eq(af_read(fd, buf, sizeof(buf), 1000), 0);
	close(fd);
	return 0;
}

START_TEST(read_and_write_at_an_explicit_offset_leave_the_file_position_alone)
{
	run_ok(file_offset_main, NULL);
}
END_TEST

static int file_vec_main(void *arg)
{
	char a[4] = "abcd", b[3] = "xyz", x[5] = { 0 }, y[5] = { 0 }, whole[16] = { 0 };
	struct iovec out[2] = { { a, 4 }, { b, 3 } };
	struct iovec in[2] = { { x, 2 }, { y, 5 } };
	int fd = make_tmpfile();

	(void)arg;
	ck_assert_int_eq(af_writev(fd, out, 2, AF_OFFSET_CURRENT), 7);
	ck_assert_int_eq(file_pos(fd), 7);
	ck_assert_int_eq(af_writev(fd, out + 1, 1, 2), 3);
	ck_assert_int_eq(file_pos(fd), 7);
	ck_assert_int_eq(pread(fd, whole, sizeof(whole), 0), 7);
	ck_assert_str_eq(whole, "abxyzyz");
	ck_assert_int_eq(af_readv(fd, in, 2, 1), 6);
	ck_assert_int_eq(memcmp(x, "bx", 2), 0);
	ck_assert_int_eq(memcmp(y, "yzyz", 4), 0);
	ck_assert_int_eq(file_pos(fd), 7);
	ck_assert_int_eq(lseek(fd, 4, SEEK_SET), 4);
	memset(x, 0, sizeof(x));
	memset(y, 0, sizeof(y));
	ck_assert_int_eq(af_readv(fd, in, 2, AF_OFFSET_CURRENT), 3);
	ck_assert_int_eq(memcmp(x, "zy", 2), 0);
	ck_assert_int_eq(y[0], 'z');
	ck_assert_int_eq(file_pos(fd), 7);
	close(fd);
	return 0;
}

START_TEST(writev_and_readv_on_a_file_honour_the_offset_like_pwritev_and_preadv)
{
	run_ok(file_vec_main, NULL);
}
END_TEST

/* ---- sockets ------------------------------------------------------------------------ */

static int socketpair_main(void *arg)
{
	struct sc *s = arg;
	char buf[16] = { 0 };

	make_socketpair(s->fd);
	ck_assert_int_eq(af_send(s->fd[0], "ping", 4, 0), 4);
	ck_assert_int_eq(af_recv(s->fd[1], buf, sizeof(buf), 0), 4);
	ck_assert_str_eq(buf, "ping");
	ck_assert_int_eq(af_send_timeout(s->fd[1], "pong!", 5, 0, LONG_NS), 5);
	/* Flags reach the kernel: a peek leaves the bytes queued. */
	ck_assert_int_eq(af_recv(s->fd[0], buf, 2, MSG_PEEK), 2);
	ck_assert_int_eq(pending_bytes(s->fd[0]), 5);
	ck_assert_int_eq(af_recv_timeout(s->fd[0], buf, sizeof(buf), 0, LONG_NS), 5);
	ck_assert_int_eq(memcmp(buf, "pong!", 5), 0);
	/* read/write work on sockets as well. */
	ck_assert_int_eq(af_write(s->fd[0], "rw", 2, AF_OFFSET_CURRENT), 2);
	ck_assert_int_eq(af_read(s->fd[1], buf, sizeof(buf), AF_OFFSET_CURRENT), 2);
	close(s->fd[0]);
	ck_assert_int_eq(af_recv(s->fd[1], buf, sizeof(buf), 0), 0);
	close(s->fd[1]);
	return 0;
}

START_TEST(send_and_recv_on_a_socketpair_pass_flags_and_recv_returns_zero_after_the_peer_closed)
{
	struct sc s = { 0 };

	run_ok(socketpair_main, &s);
}
END_TEST

static int tcp_client(void *arg)
{
	struct sc *s = arg;
	struct sockaddr_in a = loopback(s->port);
	char buf[8] = { 0 };

	s->fd[1] = tcp_socket();
	trace_add(&s->tr, "connect");
	s->r[0] = af_connect(s->fd[1], (struct sockaddr *)&a, sizeof(a));
	if (s->r[0] < 0)
		return s->r[0];
	ck_assert_int_eq(af_send(s->fd[1], "hi", 2, 0), 2);
	ck_assert_int_eq(af_recv(s->fd[1], buf, sizeof(buf), 0), 5);
	ck_assert_str_eq(buf, "hello");
	return 0;
}

static int tcp_accept_main(void *arg)
{
	struct sc *s = arg;
	struct sockaddr_in peer, local;
	socklen_t plen = sizeof(peer), llen = sizeof(local);
	char buf[8] = { 0 };
	int lfd = tcp_bound(&s->port, 16), cfd;

	ck_assert_int_eq(af_task_spawn(&s->t, tcp_client, s), 0);
	trace_add(&s->tr, "accept");
	cfd = af_accept(lfd, (struct sockaddr *)&peer, &plen, 0);
	trace_add(&s->tr, "accepted");
	ck_assert_int_ge(cfd, 0);
	ck_assert_int_eq(plen, sizeof(peer));
	ck_assert_int_eq(peer.sin_family, AF_INET);
	ck_assert_uint_eq(ntohl(peer.sin_addr.s_addr), INADDR_LOOPBACK);
	ck_assert_int_eq(getsockname(s->fd[1], (struct sockaddr *)&local, &llen), 0);
	ck_assert_uint_eq(peer.sin_port, local.sin_port);
	ck_assert_int_eq(af_recv(cfd, buf, sizeof(buf), 0), 2);
	ck_assert_str_eq(buf, "hi");
	ck_assert_int_eq(af_send(cfd, "hello", 5, 0), 5);
	ck_assert_int_eq(af_task_join(s->t, &s->r[1]), 0);
	ck_assert_int_eq(s->r[0], 0);
	ck_assert_int_eq(s->r[1], 0);
	ck_assert_int_eq(fcntl(cfd, F_GETFD) & FD_CLOEXEC, 0);
	close(cfd);
	close(s->fd[1]);
	close(lfd);
	return 0;
}

START_TEST(accept_parks_until_a_task_connects_over_loopback_tcp_and_reports_its_address)
{
	struct sc s = { 0 };

	run_ok(tcp_accept_main, &s);
	ck_assert_str_eq(s.tr.buf, "accept connect accepted");
}
END_TEST

static int tcp_flags_main(void *arg)
{
	struct sc *s = arg;
	struct sockaddr_in a;
	int lfd = tcp_bound(&s->port, 16), c1 = tcp_socket(), c2 = tcp_socket(), fd;

	a = loopback(s->port);
	/* A listening socket completes the handshake without accept. */
	ck_assert_int_eq(af_connect(c1, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(af_connect_timeout(c2, (struct sockaddr *)&a, sizeof(a), LONG_NS), 0);

	fd = af_accept(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_ne(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_ne(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);

	fd = af_accept_timeout(lfd, NULL, NULL, 0, LONG_NS);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
	ck_assert_int_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	ck_assert_int_eq(af_write(c2, "x", 1, AF_OFFSET_CURRENT), 1);
	ck_assert_int_eq(af_read(fd, s->buf, 1, AF_OFFSET_CURRENT), 1);
	ck_assert_int_eq(s->buf[0], 'x');
	close(fd);
	close(c1);
	close(c2);
	close(lfd);
	return 0;
}

START_TEST(accept_without_an_address_honours_cloexec_and_nonblock_flags)
{
	struct sc s = { 0 };

	run_ok(tcp_flags_main, &s);
}
END_TEST

/* ---- poll, wait_readable, close ------------------------------------------------------ */

static int poll_mask_main(void *arg)
{
	struct sc *s = arg;
	char c;

	make_pipe(s->fd);
	ck_assert_int_eq(af_poll(s->fd[1], POLLIN | POLLOUT), POLLOUT);
	ck_assert_int_eq(write(s->fd[1], "x", 1), 1);
	ck_assert_int_eq(af_poll(s->fd[0], POLLIN), POLLIN);
	ck_assert_int_eq(af_poll_timeout(s->fd[0], POLLIN | POLLPRI, LONG_NS), POLLIN);
	/* Polling consumes nothing. */
	ck_assert_int_eq(pending_bytes(s->fd[0]), 1);
	close(s->fd[1]);
	ck_assert_int_eq(af_poll(s->fd[0], POLLIN), POLLIN | POLLHUP);
	ck_assert_int_eq(read(s->fd[0], &c, 1), 1);
	/* Hang-up is reported even when not asked for, like poll(2). */
	ck_assert_int_eq(af_poll(s->fd[0], POLLIN), POLLHUP);
	ck_assert_int_eq(af_wait_readable(s->fd[0]), 0);
	close(s->fd[0]);
	return 0;
}

START_TEST(poll_returns_the_mask_of_ready_events)
{
	struct sc s = { 0 };

	run_ok(poll_mask_main, &s);
}
END_TEST

static int poll_waiter(void *arg)
{
	struct sc *s = arg;

	trace_add(&s->tr, "poll");
	s->r[0] = af_poll(s->fd[0], POLLIN);
	trace_add(&s->tr, "ready");
	s->r[1] = af_wait_readable(s->fd[0]);
	s->r[2] = af_wait_readable_timeout(s->fd[0], LONG_NS);
	trace_add(&s->tr, "readable");
	return 0;
}

static int poll_park_main(void *arg)
{
	struct sc *s = arg;

	make_pipe(s->fd);
	ck_assert_int_eq(af_task_spawn(&s->t, poll_waiter, s), 0);
	ck_assert_int_eq(af_sleep_ms(10), 0);
	trace_add(&s->tr, "write");
	ck_assert_int_eq(write(s->fd[1], "x", 1), 1);
	ck_assert_int_eq(af_task_join(s->t, NULL), 0);
	ck_assert_int_eq(s->r[0], POLLIN);
	ck_assert_int_eq(s->r[1], 0);
	ck_assert_int_eq(s->r[2], 0);
	ck_assert_int_eq(pending_bytes(s->fd[0]), 1);
	close(s->fd[0]);
	close(s->fd[1]);
	return 0;
}

START_TEST(poll_and_wait_readable_park_until_data_arrives_and_consume_nothing)
{
	struct sc s = { 0 };

	run_ok(poll_park_main, &s);
	ck_assert_str_eq(s.tr.buf, "poll write ready readable");
}
END_TEST

static int close_main(void *arg)
{
	struct sc *s = arg;
	int fd = make_tmpfile();

	make_pipe(s->fd);
	ck_assert_int_eq(af_close(fd), 0);
	ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
	ck_assert_int_eq(af_close(fd), -EBADF);
	/* Closing the last writer is seen by the reader. */
	ck_assert_int_eq(af_close(s->fd[1]), 0);
	ck_assert_int_eq(af_read(s->fd[0], s->buf, 1, AF_OFFSET_CURRENT), 0);
	ck_assert_int_eq(af_close(s->fd[0]), 0);
	ck_assert_int_eq(af_close(-1), -EBADF);
	return 0;
}

START_TEST(close_through_the_ring_closes_the_descriptor_and_a_second_close_fails_with_ebadf)
{
	struct sc s = { 0 };

	run_ok(close_main, &s);
}
END_TEST

struct close_case {
	int p[2];
	int r;
	bool done;
	char c;
};

static int reader_of_closed(void *arg)
{
	struct close_case *c = arg;

	c->r = af_read(c->p[0], &c->c, 1, AF_OFFSET_CURRENT);
	c->done = true;
	return 0;
}

static int close_inflight_main(void *arg)
{
	struct close_case *c = arg;
	struct af_task *t;

	make_pipe(c->p);
	ck_assert_int_eq(af_task_spawn(&t, reader_of_closed, c), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_close(c->p[0]), 0);
	ck_assert_int_eq(fcntl(c->p[0], F_GETFD), -1);
	ck_assert_int_eq(errno, EBADF);
	/* The read holds the pipe open: not cancelled, still parked. */
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(af_yield(), 0);
	ck_assert(!c->done);
	ck_assert_int_eq(write(c->p[1], "z", 1), 1);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(c->r, 1);
	ck_assert_int_eq(c->c, 'z');
	close(c->p[1]);
	return 0;
}

START_TEST(close_leaves_a_read_in_flight_on_the_descriptor_to_finish_as_io_uring_does)
{
	struct close_case c = { 0 };

	run_ok(close_inflight_main, &c);
}
END_TEST

/* ---- write_all and read_full ------------------------------------------------------------- */

#define BIG_LEN ((size_t)4 << 20)

struct bulk {
	int fd[2];
	unsigned char *src, *dst;
	size_t len, got;
	int r_reader, r_writer, reads;
	struct af_task *reader;
};

/* Reads in odd chunk sizes so that the writer's short writes and the
 * reader's short reads never line up. */
static int bulk_reader(void *arg)
{
	struct bulk *b = arg;
	size_t chunk = 1;

	while (b->got < b->len) {
		size_t want = b->len - b->got < chunk ? b->len - b->got : chunk;
		int r = af_read(b->fd[0], b->dst + b->got, want, AF_OFFSET_CURRENT);

		if (r <= 0)
			return r < 0 ? r : -EIO;
		b->got += (size_t)r;
		b->reads++;
		chunk = chunk * 7 % 9001 + 1;
	}
	return 0;
}

static int write_all_pipe_main(void *arg)
{
	struct bulk *b = arg;
	size_t written = 1;

	make_pipe(b->fd);
	/* A small pipe makes nearly every write short. */
	ck_assert_int_ge(fcntl(b->fd[1], F_SETPIPE_SZ, 4096), 4096);
	ck_assert_int_eq(af_task_spawn(&b->reader, bulk_reader, b), 0);
	b->r_writer = af_write_all(b->fd[1], b->src, b->len, AF_OFFSET_CURRENT, &written);
	ck_assert_int_eq(b->r_writer, 0);
	ck_assert_uint_eq(written, b->len);
	ck_assert_int_eq(af_task_join(b->reader, &b->r_reader), 0);
	ck_assert_int_eq(b->r_reader, 0);
	ck_assert_int_eq(af_write_all(b->fd[1], NULL, 0, AF_OFFSET_CURRENT, &written), 0);
	ck_assert_uint_eq(written, 0);
	close(b->fd[0]);
	close(b->fd[1]);
	return 0;
}

START_TEST(write_all_pushes_a_large_buffer_through_a_small_pipe_to_a_concurrent_reader)
{
	struct bulk b = { .len = BIG_LEN };

	b.src = malloc(b.len);
	b.dst = malloc(b.len);
	ck_assert(b.src && b.dst);
	fill_pat(b.src, b.len, 11, 0);
	memset(b.dst, 0, b.len);
	run_ok(write_all_pipe_main, &b);
	ck_assert_uint_eq(b.got, b.len);
	ck_assert_int_eq(memcmp(b.src, b.dst, b.len), 0);
	/* Far more reads than one: the data really came in pieces. */
	ck_assert_int_gt(b.reads, 100);
	free(b.src);
	free(b.dst);
}
END_TEST

static int write_all_file_main(void *arg)
{
	struct bulk *b = arg;
	size_t written = 0, got = 0;
	int fd = make_tmpfile();

	ck_assert_int_eq(af_write_all(fd, b->src, b->len, 1000, &written), 0);
	ck_assert_uint_eq(written, b->len);
	ck_assert_int_eq(file_pos(fd), 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_END), (off_t)(b->len + 1000));
	ck_assert_int_eq(af_read_full(fd, b->dst, b->len, 1000, &got), (int)b->len);
	ck_assert_uint_eq(got, b->len);
	ck_assert_int_eq(memcmp(b->src, b->dst, b->len), 0);

	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
	ck_assert_int_eq(af_write_all(fd, b->src, 5000, AF_OFFSET_CURRENT, NULL), 0);
	ck_assert_int_eq(file_pos(fd), 5000);
	ck_assert_int_eq(af_write_all(fd, b->src + 5000, 3000, AF_OFFSET_CURRENT, &written), 0);
	ck_assert_uint_eq(written, 3000);
	ck_assert_int_eq(file_pos(fd), 8000);
	memset(b->dst, 0, 8000);
	ck_assert_int_eq(pread(fd, b->dst, 8000, 0), 8000);
	ck_assert_int_eq(memcmp(b->src, b->dst, 8000), 0);
	close(fd);
	return 0;
}

START_TEST(write_all_on_a_file_advances_its_offset_and_read_full_reads_it_back)
{
	struct bulk b = { .len = (size_t)3 << 20 };

	b.src = malloc(b.len);
	b.dst = malloc(b.len);
	ck_assert(b.src && b.dst);
	fill_pat(b.src, b.len, 12, 0);
	run_ok(write_all_file_main, &b);
	free(b.src);
	free(b.dst);
}
END_TEST

static int write_all_error_main(void *arg)
{
	static unsigned char buf[20000];
	struct rlimit rl = { .rlim_cur = 8192, .rlim_max = RLIM_INFINITY };
	size_t written = 0;
	int fd = make_tmpfile();

	(void)arg;
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &rl), 0);
	rl.rlim_cur = 8192;
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
	/* The first write stops short at the limit, the next fails. */
	ck_assert_int_eq(af_write_all(fd, buf, sizeof(buf), 1000, &written), -EFBIG);
	ck_assert_uint_eq(written, 8192 - 1000);
	ck_assert_int_eq(lseek(fd, 0, SEEK_END), 8192);
	close(fd);
	return 0;
}

START_TEST(write_all_reports_the_bytes_written_before_an_error)
{
	/* Past RLIMIT_FSIZE the kernel raises SIGXFSZ, whose default dumps core. */
	signal(SIGXFSZ, SIG_IGN);
	run_ok(write_all_error_main, NULL);
}
END_TEST

static int dribbler(void *arg)
{
	struct sc *s = arg;

	for (int i = 0; i < 10; i++) {
		ck_assert_int_eq(af_write(s->fd[1], "0123456789" + i, 1, AF_OFFSET_CURRENT), 1);
		ck_assert_int_eq(af_sleep_ms(1), 0);
	}
	ck_assert_int_eq(af_close(s->fd[1]), 0);
	return 0;
}

static int read_full_main(void *arg)
{
	struct sc *s = arg;
	char buf[64] = { 0 };
	size_t got = 99;
	int fd = make_tmpfile();

	/* A pipe fed one byte at a time: read_full gathers them all and
	 * stops at end of file, short of what it asked for. */
	make_pipe(s->fd);
	ck_assert_int_eq(af_task_spawn(&s->t, dribbler, s), 0);
	ck_assert_int_eq(af_read_full(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT, &got), 10);
	ck_assert_uint_eq(got, 10);
	ck_assert_str_eq(buf, "0123456789");
	ck_assert_int_eq(af_task_join(s->t, NULL), 0);
	close(s->fd[0]);

	/* A file: from an offset, and from the current position. */
	ck_assert_int_eq(pwrite(fd, "abcdefghij", 10, 0), 10);
	memset(buf, 0, sizeof(buf));
	ck_assert_int_eq(af_read_full(fd, buf, sizeof(buf), 7, &got), 3);
	ck_assert_uint_eq(got, 3);
	ck_assert_str_eq(buf, "hij");
	ck_assert_int_eq(file_pos(fd), 0);
	ck_assert_int_eq(af_read_full(fd, buf, 4, AF_OFFSET_CURRENT, NULL), 4);
	ck_assert_int_eq(file_pos(fd), 4);
	ck_assert_int_eq(af_read_full(fd, buf, sizeof(buf), AF_OFFSET_CURRENT, &got), 6);
	ck_assert_int_eq(memcmp(buf, "efghij", 6), 0);
	ck_assert_int_eq(af_read_full(fd, buf, sizeof(buf), AF_OFFSET_CURRENT, &got), 0);
	ck_assert_uint_eq(got, 0);
	ck_assert_int_eq(af_read_full(fd, buf, 0, 0, &got), 0);
	close(fd);
	return 0;
}

START_TEST(read_full_gathers_short_reads_and_stops_at_end_of_file_with_a_short_count)
{
	struct sc s = { 0 };

	run_ok(read_full_main, &s);
}
END_TEST

/* ---- errors -------------------------------------------------------------------------- */

static int ebadf_main(void *arg)
{
	char buf[4];
	struct iovec iov = { buf, sizeof(buf) };
	struct sockaddr_in a = loopback(9);
	socklen_t alen = sizeof(a);
	size_t n = 5;

	(void)arg;
	for (int round = 0; round < 2; round++) {
		/* A closed descriptor reaches the kernel; -1 is refused before. */
		int fd = round == 0 ? closed_fd() : -1;

		ck_assert_int_eq(af_read(fd, buf, sizeof(buf), AF_OFFSET_CURRENT), -EBADF);
		ck_assert_int_eq(af_read_timeout(fd, buf, sizeof(buf), 0, LONG_NS), -EBADF);
		ck_assert_int_eq(af_write(fd, buf, sizeof(buf), AF_OFFSET_CURRENT), -EBADF);
		ck_assert_int_eq(af_write_timeout(fd, buf, sizeof(buf), 0, LONG_NS), -EBADF);
		ck_assert_int_eq(af_readv(fd, &iov, 1, AF_OFFSET_CURRENT), -EBADF);
		ck_assert_int_eq(af_readv_timeout(fd, &iov, 1, 0, LONG_NS), -EBADF);
		ck_assert_int_eq(af_writev(fd, &iov, 1, AF_OFFSET_CURRENT), -EBADF);
		ck_assert_int_eq(af_writev_timeout(fd, &iov, 1, 0, LONG_NS), -EBADF);
		ck_assert_int_eq(af_recv(fd, buf, sizeof(buf), 0), -EBADF);
		ck_assert_int_eq(af_recv_timeout(fd, buf, sizeof(buf), 0, LONG_NS), -EBADF);
		ck_assert_int_eq(af_send(fd, buf, sizeof(buf), 0), -EBADF);
		ck_assert_int_eq(af_send_timeout(fd, buf, sizeof(buf), 0, LONG_NS), -EBADF);
		ck_assert_int_eq(af_accept(fd, NULL, NULL, 0), -EBADF);
		ck_assert_int_eq(af_accept_timeout(fd, (struct sockaddr *)&a, &alen, 0, LONG_NS),
				 -EBADF);
		ck_assert_int_eq(af_connect(fd, (struct sockaddr *)&a, sizeof(a)), -EBADF);
		ck_assert_int_eq(af_connect_timeout(fd, (struct sockaddr *)&a, sizeof(a), LONG_NS),
				 -EBADF);
		ck_assert_int_eq(af_poll(fd, POLLIN), -EBADF);
		ck_assert_int_eq(af_poll_timeout(fd, POLLIN, LONG_NS), -EBADF);
		ck_assert_int_eq(af_wait_readable(fd), -EBADF);
		ck_assert_int_eq(af_wait_readable_timeout(fd, LONG_NS), -EBADF);
		ck_assert_int_eq(af_close(fd), -EBADF);
		n = 5;
		ck_assert_int_eq(af_write_all(fd, buf, sizeof(buf), AF_OFFSET_CURRENT, &n), -EBADF);
		ck_assert_uint_eq(n, 0);
		n = 5;
		ck_assert_int_eq(af_read_full(fd, buf, sizeof(buf), AF_OFFSET_CURRENT, &n), -EBADF);
		ck_assert_uint_eq(n, 0);
	}
	return 0;
}

START_TEST(every_call_on_a_closed_descriptor_or_on_minus_one_fails_with_ebadf)
{
	run_ok(ebadf_main, NULL);
}
END_TEST

static int wrong_kind_main(void *arg)
{
	struct sc *s = arg;
	char c = 'x';

	make_pipe(s->fd);
	ck_assert_int_eq(af_write(s->fd[0], &c, 1, AF_OFFSET_CURRENT), -EBADF);
	ck_assert_int_eq(af_read(s->fd[1], &c, 1, AF_OFFSET_CURRENT), -EBADF);
	ck_assert_int_eq(af_recv(s->fd[0], &c, 1, 0), -ENOTSOCK);
	ck_assert_int_eq(af_send(s->fd[1], &c, 1, 0), -ENOTSOCK);
	ck_assert_int_eq(af_accept(s->fd[0], NULL, NULL, 0), -ENOTSOCK);
	close(s->fd[0]);
	close(s->fd[1]);
	return 0;
}

START_TEST(the_kernel_errno_comes_back_unchanged_for_the_wrong_kind_of_descriptor)
{
	struct sc s = { 0 };

	run_ok(wrong_kind_main, &s);
}
END_TEST

static int refused_main(void *arg)
{
	uint16_t port;
	/* Bound but not listening: the port cannot be taken by anyone else,
	 * and a SYN to it is answered with a reset. */
	int b = tcp_bound(&port, -1), c1 = tcp_socket(), c2 = tcp_socket();
	struct sockaddr_in a = loopback(port);

	(void)arg;
	ck_assert_int_eq(af_connect(c1, (struct sockaddr *)&a, sizeof(a)), -ECONNREFUSED);
	ck_assert_int_eq(af_connect_timeout(c2, (struct sockaddr *)&a, sizeof(a), LONG_NS),
			 -ECONNREFUSED);
	close(c1);
	close(c2);
	close(b);
	return 0;
}

START_TEST(connect_to_a_port_nobody_listens_on_fails_with_econnrefused)
{
	run_ok(refused_main, NULL);
}
END_TEST

static int pipe_epipe_main(void *arg)
{
	struct sc *s = arg;
	struct iovec iov = { "abc", 3 };
	size_t n = 9;

	make_pipe(s->fd);
	close(s->fd[0]);
	ck_assert_int_eq(af_write(s->fd[1], "x", 1, AF_OFFSET_CURRENT), -EPIPE);
	ck_assert_int_eq(af_write_timeout(s->fd[1], "x", 1, AF_OFFSET_CURRENT, LONG_NS), -EPIPE);
	ck_assert_int_eq(af_writev(s->fd[1], &iov, 1, AF_OFFSET_CURRENT), -EPIPE);
	ck_assert_int_eq(af_write_all(s->fd[1], "abc", 3, AF_OFFSET_CURRENT, &n), -EPIPE);
	ck_assert_uint_eq(n, 0);
	close(s->fd[1]);
	return 0;
}

START_TEST(write_to_a_pipe_whose_reader_closed_fails_with_epipe)
{
	struct sc s = { 0 };

	/* af_write adds nothing to stop SIGPIPE on a pipe: a program ignores it. */
	signal(SIGPIPE, SIG_IGN);
	run_ok(pipe_epipe_main, &s);
}
END_TEST

static volatile sig_atomic_t sigpipes;

static void count_sigpipe(int sig)
{
	(void)sig;
	sigpipes++;
}

static int send_epipe_main(void *arg)
{
	struct sc *s = arg;
	uint16_t port;
	int lfd = tcp_bound(&port, 4), c = tcp_socket(), a;
	struct sockaddr_in addr = loopback(port);

	make_socketpair(s->fd);
	close(s->fd[1]);
	ck_assert_int_eq(af_send(s->fd[0], "x", 1, 0), -EPIPE);
	ck_assert_int_eq(af_send_timeout(s->fd[0], "x", 1, 0, LONG_NS), -EPIPE);
	close(s->fd[0]);

	/* TCP: the peer closed, so the first send is still taken by the local
	 * stack and answered with a reset; a reset in CLOSE_WAIT makes the
	 * next send fail with -EPIPE. POLLPRI never comes: the poll returns
	 * on the POLLERR/POLLHUP of the reset. */
	ck_assert_int_eq(af_connect(c, (struct sockaddr *)&addr, sizeof(addr)), 0);
	a = af_accept(lfd, NULL, NULL, 0);
	ck_assert_int_ge(a, 0);
	ck_assert_int_eq(af_close(a), 0);
	ck_assert_int_eq(af_recv(c, s->buf, 1, 0), 0);
	ck_assert_int_eq(af_send(c, "y", 1, 0), 1);
	ck_assert_int_ne(af_poll_timeout(c, POLLPRI, LONG_NS) & (POLLERR | POLLHUP), 0);
	ck_assert_int_eq(af_send(c, "z", 1, 0), -EPIPE);
	ck_assert_int_eq(af_send_timeout(c, "z", 1, 0, LONG_NS), -EPIPE);
	close(c);
	close(lfd);
	return 0;
}

START_TEST(send_to_a_closed_peer_fails_with_epipe_and_raises_no_sigpipe)
{
	struct sc s = { 0 };
	struct sigaction sa = { .sa_handler = count_sigpipe };

	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGPIPE, &sa, NULL), 0);
	sigpipes = 0;
	run_ok(send_epipe_main, &s);
	ck_assert_int_eq(sigpipes, 0);
}
END_TEST

static int einval_main(void *arg)
{
	struct sc *s = arg;
	char buf[4];
	struct iovec iov = { buf, sizeof(buf) };
	struct sockaddr_in a = loopback(9);
	size_t n = 7;
	const size_t huge = (size_t)INT_MAX + 1;

	make_pipe(s->fd);
	ck_assert_int_eq(write(s->fd[1], "data", 4), 4);
	ck_assert_int_eq(af_read(s->fd[0], NULL, 1, AF_OFFSET_CURRENT), -EINVAL);
	ck_assert_int_eq(af_read_timeout(s->fd[0], NULL, 1, AF_OFFSET_CURRENT, LONG_NS), -EINVAL);
	ck_assert_int_eq(af_write(s->fd[1], NULL, 1, AF_OFFSET_CURRENT), -EINVAL);
	ck_assert_int_eq(af_write_timeout(s->fd[1], NULL, 1, AF_OFFSET_CURRENT, 0), -EINVAL);
	ck_assert_int_eq(af_recv(s->fd[0], NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(af_recv_timeout(s->fd[0], NULL, 1, 0, 0), -EINVAL);
	ck_assert_int_eq(af_send(s->fd[1], NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(af_send_timeout(s->fd[1], NULL, 1, 0, 0), -EINVAL);
	ck_assert_int_eq(af_write_all(s->fd[1], NULL, 1, AF_OFFSET_CURRENT, &n), -EINVAL);
	ck_assert_uint_eq(n, 0);
	n = 7;
	ck_assert_int_eq(af_read_full(s->fd[0], NULL, 1, AF_OFFSET_CURRENT, &n), -EINVAL);
	ck_assert_uint_eq(n, 0);
	/* More than a call can move. */
	ck_assert_int_eq(af_read(s->fd[0], buf, huge, AF_OFFSET_CURRENT), -EINVAL);
	ck_assert_int_eq(af_write(s->fd[1], buf, huge, AF_OFFSET_CURRENT), -EINVAL);
	ck_assert_int_eq(af_recv(s->fd[0], buf, huge, 0), -EINVAL);
	ck_assert_int_eq(af_send(s->fd[1], buf, huge, 0), -EINVAL);
	ck_assert_int_eq(af_read_full(s->fd[0], buf, huge, AF_OFFSET_CURRENT, NULL), -EINVAL);
	/* Vectors. */
	ck_assert_int_eq(af_readv(s->fd[0], NULL, 1, AF_OFFSET_CURRENT), -EINVAL);
	ck_assert_int_eq(af_readv(s->fd[0], &iov, 0, AF_OFFSET_CURRENT), -EINVAL);
	ck_assert_int_eq(af_readv(s->fd[0], &iov, -1, AF_OFFSET_CURRENT), -EINVAL);
	ck_assert_int_eq(af_readv_timeout(s->fd[0], &iov, IOV_MAX + 1, 0, 0), -EINVAL);
	ck_assert_int_eq(af_writev(s->fd[1], NULL, 1, AF_OFFSET_CURRENT), -EINVAL);
	ck_assert_int_eq(af_writev_timeout(s->fd[1], &iov, 0, AF_OFFSET_CURRENT, 0), -EINVAL);
	/* accept: unknown flags, an address without its length. */
	ck_assert_int_eq(af_accept(s->fd[0], NULL, NULL, MSG_PEEK), -EINVAL);
	ck_assert_int_eq(af_accept_timeout(s->fd[0], NULL, NULL, O_APPEND, 0), -EINVAL);
	ck_assert_int_eq(af_accept(s->fd[0], (struct sockaddr *)&a, NULL, 0), -EINVAL);
	ck_assert_int_eq(af_connect(s->fd[0], NULL, sizeof(a)), -EINVAL);
	ck_assert_int_eq(af_connect_timeout(s->fd[0], (struct sockaddr *)&a, 0, 0), -EINVAL);
	ck_assert_int_eq(af_poll(s->fd[0], 0), -EINVAL);
	ck_assert_int_eq(af_poll_timeout(s->fd[0], 0, 0), -EINVAL);
	/* Refused calls consumed nothing. */
	ck_assert_int_eq(pending_bytes(s->fd[0]), 4);
	close(s->fd[0]);
	close(s->fd[1]);
	return 0;
}

START_TEST(bad_arguments_fail_with_einval_and_touch_nothing)
{
	struct sc s = { 0 };

	run_ok(einval_main, &s);
}
END_TEST

struct eperm_case {
	int p[2];
	int errors;
	char first[128];
};

static void eperm_all(struct eperm_case *e)
{
	char buf[4];
	struct iovec iov = { buf, sizeof(buf) };
	struct sockaddr_in a = loopback(9);
	socklen_t alen = sizeof(a);
	size_t n = 3;
	int rs[22], i = 0;

	rs[i++] = af_read(e->p[0], buf, sizeof(buf), AF_OFFSET_CURRENT);
	rs[i++] = af_read_timeout(e->p[0], buf, sizeof(buf), AF_OFFSET_CURRENT, 0);
	rs[i++] = af_write(e->p[1], buf, sizeof(buf), AF_OFFSET_CURRENT);
	rs[i++] = af_write_timeout(e->p[1], buf, sizeof(buf), AF_OFFSET_CURRENT, 0);
	rs[i++] = af_readv(e->p[0], &iov, 1, AF_OFFSET_CURRENT);
	rs[i++] = af_readv_timeout(e->p[0], &iov, 1, AF_OFFSET_CURRENT, 0);
	rs[i++] = af_writev(e->p[1], &iov, 1, AF_OFFSET_CURRENT);
	rs[i++] = af_writev_timeout(e->p[1], &iov, 1, AF_OFFSET_CURRENT, 0);
	rs[i++] = af_recv(e->p[0], buf, sizeof(buf), 0);
	rs[i++] = af_recv_timeout(e->p[0], buf, sizeof(buf), 0, 0);
	rs[i++] = af_send(e->p[1], buf, sizeof(buf), 0);
	rs[i++] = af_send_timeout(e->p[1], buf, sizeof(buf), 0, 0);
	rs[i++] = af_accept(e->p[0], (struct sockaddr *)&a, &alen, 0);
	rs[i++] = af_accept_timeout(e->p[0], NULL, NULL, 0, 0);
	rs[i++] = af_connect(e->p[0], (struct sockaddr *)&a, sizeof(a));
	rs[i++] = af_connect_timeout(e->p[0], (struct sockaddr *)&a, sizeof(a), 0);
	rs[i++] = af_poll(e->p[0], POLLIN);
	rs[i++] = af_poll_timeout(e->p[0], POLLIN, 0);
	rs[i++] = af_wait_readable(e->p[0]);
	rs[i++] = af_wait_readable_timeout(e->p[0], 0);
	rs[i++] = af_close(e->p[1]);
	rs[i++] = af_write_all(e->p[1], buf, sizeof(buf), AF_OFFSET_CURRENT, &n);
	for (int k = 0; k < i; k++) {
		if (rs[k] != -EPERM) {
			e->errors++;
			if (!e->first[0])
				snprintf(e->first, sizeof(e->first), "call #%d returned %d", k, rs[k]);
		}
	}
	if (n != 0)
		e->errors++;
	n = 3;
	if (af_read_full(e->p[0], buf, sizeof(buf), AF_OFFSET_CURRENT, &n) != -EPERM || n != 0)
		e->errors++;
	/* Nothing to move is no excuse: io.h promises -EPERM outside a task. */
	if (af_write_all(e->p[1], buf, 0, AF_OFFSET_CURRENT, NULL) != -EPERM)
		e->errors++;
	if (af_read_full(e->p[0], buf, 0, AF_OFFSET_CURRENT, NULL) != -EPERM)
		e->errors++;
}

static void *eperm_thread(void *arg)
{
	eperm_all(arg);
	return NULL;
}

START_TEST(every_call_outside_a_task_fails_with_eperm_and_does_nothing)
{
	struct eperm_case e = { 0 };
	struct af_loop *loop;
	pthread_t th;

	make_pipe(e.p);
	ck_assert_int_eq(write(e.p[1], "data", 4), 4);
	eperm_all(&e);
	ck_assert_msg(e.errors == 0, "%d errors, %s", e.errors, e.first);
	/* A loop that exists but does not run on this thread changes nothing,
	 * nor does another thread. */
	ck_assert_int_eq(af_loop_new(&loop, NULL), 0);
	eperm_all(&e);
	ck_assert_int_eq(pthread_create(&th, NULL, eperm_thread, &e), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	af_loop_free(loop);
	ck_assert_msg(e.errors == 0, "%d errors, %s", e.errors, e.first);
	ck_assert_int_eq(pending_bytes(e.p[0]), 4);
	/* af_close refused: the descriptor is still open. */
	ck_assert_int_ge(fcntl(e.p[1], F_GETFD), 0);
	close(e.p[0]);
	close(e.p[1]);
}
END_TEST

struct strerror_case {
	int err;
	const char *text;
	char copy[64];
};

static void *strerror_other_thread(void *arg)
{
	struct strerror_case *c = arg;

	c->text = af_strerror(c->err);
	snprintf(c->copy, sizeof(c->copy), "%s", c->text);
	return NULL;
}

START_TEST(strerror_describes_every_int_and_keeps_unknown_texts_per_thread)
{
	struct strerror_case other = { .err = -4001 };
	const char *known = af_strerror(-EIO), *mine;
	char known_copy[128];
	pthread_t th;

	snprintf(known_copy, sizeof(known_copy), "%s", known);
	/* INT_MIN has no negation: UBSan reports the old -err. */
	ck_assert_str_eq(af_strerror(INT_MIN), "unknown error -2147483648");
	ck_assert_str_eq(af_strerror(INT_MAX), "unknown error 2147483647");
	mine = af_strerror(-4000);
	ck_assert_str_eq(mine, "unknown error -4000");
	ck_assert_int_eq(pthread_create(&th, NULL, strerror_other_thread, &other), 0);
	ck_assert_int_eq(pthread_join(th, NULL), 0);
	/* Another thread's unknown value leaves this thread's text alone. */
	ck_assert_str_eq(mine, "unknown error -4000");
	ck_assert_str_eq(other.copy, "unknown error -4001");
	ck_assert_ptr_ne(other.text, mine);
	/* Known texts are static: no later call rewrites them. */
	ck_assert_str_eq(known, known_copy);
	ck_assert_ptr_eq(af_strerror(EIO), known);
	ck_assert_str_eq(af_strerror(0), "success");
	ck_assert_ptr_nonnull(strstr(af_strerror(INT_MIN + 1), "unknown error"));
}
END_TEST

/* ---- timeouts ---------------------------------------------------------------------- */

static int each_timeout_main(void *arg)
{
	struct sc *s = arg;
	char buf[8];
	struct iovec iov = { buf, sizeof(buf) };
	int sv[2], sfull[2], full[2], lfd = tcp_bound(&s->port, 0), c0 = tcp_socket(), c1 = tcp_socket();
	struct sockaddr_in a = loopback(s->port);
	const int64_t t = 20 * MS;
	uint64_t t0;

	make_pipe(s->fd);
	make_socketpair(sv);
	make_socketpair(sfull);
	make_pipe(full);
	ck_assert_int_ge(fcntl(full[1], F_SETPIPE_SZ, 4096), 4096);
	fill(full[1]);
	fill(sfull[1]);

	t0 = now_ns();
	ck_assert_int_eq(af_read_timeout(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT, t),
			 -ETIMEDOUT);
	/* Never before the timeout; the upper bound only catches a hang. */
	ck_assert_uint_ge(now_ns() - t0, (uint64_t)t);
	ck_assert_uint_lt(now_ns() - t0, (uint64_t)5000 * MS);
	ck_assert_int_eq(af_readv_timeout(s->fd[0], &iov, 1, AF_OFFSET_CURRENT, t), -ETIMEDOUT);
	ck_assert_int_eq(af_recv_timeout(sv[0], buf, sizeof(buf), 0, t), -ETIMEDOUT);
	ck_assert_int_eq(af_accept_timeout(lfd, NULL, NULL, 0, t), -ETIMEDOUT);
	ck_assert_int_eq(af_poll_timeout(s->fd[0], POLLIN, t), -ETIMEDOUT);
	ck_assert_int_eq(af_wait_readable_timeout(s->fd[0], t), -ETIMEDOUT);
	ck_assert_int_eq(af_write_timeout(full[1], "x", 1, AF_OFFSET_CURRENT, t), -ETIMEDOUT);
	ck_assert_int_eq(af_writev_timeout(full[1], &iov, 1, AF_OFFSET_CURRENT, t), -ETIMEDOUT);
	ck_assert_int_eq(af_send_timeout(sfull[1], "x", 1, 0, t), -ETIMEDOUT);
	/* A listener with a full backlog drops the SYN: connect waits. */
	ck_assert_int_eq(af_connect(c0, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(af_connect_timeout(c1, (struct sockaddr *)&a, sizeof(a), t), -ETIMEDOUT);

	/* Timed-out calls consumed nothing and the descriptors still work. */
	ck_assert_int_eq(write(s->fd[1], "late", 4), 4);
	ck_assert_int_eq(af_read_timeout(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT, LONG_NS), 4);
	ck_assert_int_eq(memcmp(buf, "late", 4), 0);
	for (int fd = 0; fd < 2; fd++)
		close(s->fd[fd]), close(sv[fd]), close(sfull[fd]), close(full[fd]);
	close(c0);
	close(c1);
	close(lfd);
	return 0;
}

START_TEST(each_timeout_variant_fails_with_etimedout_when_nothing_happens)
{
	struct sc s = { 0 };

	run_ok(each_timeout_main, &s);
}
END_TEST

static int timed_reader(void *arg)
{
	struct sc *s = arg;

	s->r[0] = af_read_timeout(s->fd[0], s->buf, sizeof(s->buf), AF_OFFSET_CURRENT, LONG_NS);
	s->r[1] = af_recv_timeout(s->fd[2], s->buf + 8, 8, 0, LONG_NS);
	s->r[2] = af_poll_timeout(s->fd[0], POLLIN, LONG_NS);
	s->r[3] = af_accept_timeout(s->fd[3], NULL, NULL, SOCK_CLOEXEC, LONG_NS);
	/* Negative: no timeout at all. */
	s->r[4] = af_read_timeout(s->fd[0], s->buf + 16, 8, AF_OFFSET_CURRENT, -1);
	return 0;
}

static int data_in_time_main(void *arg)
{
	struct sc *s = arg;
	int p[2], sv[2], lfd = tcp_bound(&s->port, 4), c = tcp_socket();
	struct sockaddr_in a = loopback(s->port);

	make_pipe(p);
	make_socketpair(sv);
	s->fd[0] = p[0];
	s->fd[2] = sv[0];
	s->fd[3] = lfd;
	ck_assert_int_eq(af_task_spawn(&s->t, timed_reader, s), 0);
	ck_assert_int_eq(af_sleep_ms(5), 0);
	ck_assert_int_eq(write(p[1], "abc", 3), 3);
	ck_assert_int_eq(af_sleep_ms(5), 0);
	ck_assert_int_eq(write(sv[1], "defg", 4), 4);
	ck_assert_int_eq(af_sleep_ms(5), 0);
	ck_assert_int_eq(write(p[1], "h", 1), 1);
	ck_assert_int_eq(af_sleep_ms(5), 0);
	ck_assert_int_eq(af_connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(af_task_join(s->t, NULL), 0);
	ck_assert_int_eq(s->r[0], 3);
	ck_assert_int_eq(s->r[1], 4);
	ck_assert_int_eq(s->r[2], POLLIN);
	ck_assert_int_ge(s->r[3], 0);
	ck_assert_int_eq(s->r[4], 1);
	ck_assert_int_eq(memcmp(s->buf, "abc", 3), 0);
	ck_assert_int_eq(memcmp(s->buf + 8, "defg", 4), 0);
	ck_assert_int_eq(s->buf[16], 'h');
	close(s->r[3]);
	close(c);
	close(lfd);
	for (int i = 0; i < 2; i++)
		close(p[i]), close(sv[i]);
	return 0;
}

START_TEST(a_timed_call_returns_what_arrives_before_its_timeout)
{
	struct sc s = { 0 };

	run_ok(data_in_time_main, &s);
}
END_TEST

static int zero_timeout_main(void *arg)
{
	struct sc *s = arg;
	char buf[8] = { 0 };
	int sv[2], r;

	make_pipe(s->fd);
	make_socketpair(sv);
	ck_assert_int_eq(af_read_timeout(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT, 0),
			 -ETIMEDOUT);
	ck_assert_int_eq(af_poll_timeout(s->fd[0], POLLIN, 0), -ETIMEDOUT);
	ck_assert_int_eq(af_recv_timeout(sv[0], buf, sizeof(buf), 0, 0), -ETIMEDOUT);
	/* Ready at once: the operation wins over a zero timeout. Not on a
	 * pipe the kernel cannot read without blocking: there the read is
	 * reissued off the submission and the timer may win; it then must
	 * not have moved a byte. */
	ck_assert_int_eq(write(s->fd[1], "now", 3), 3);
	ck_assert_int_eq(af_poll_timeout(s->fd[0], POLLIN, 0), POLLIN);
	ck_assert_int_eq(af_wait_readable_timeout(s->fd[0], 0), 0);
	r = af_read_timeout(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT, 0);
	if (r == -ETIMEDOUT && !pipe_reads_nowait()) {
		ck_assert_int_eq(pending_bytes(s->fd[0]), 3);
		r = (int)read(s->fd[0], buf, sizeof(buf));
	}
	ck_assert_int_eq(r, 3);
	ck_assert_str_eq(buf, "now");
	r = af_write_timeout(s->fd[1], "w", 1, AF_OFFSET_CURRENT, 0);
	if (r == -ETIMEDOUT && !pipe_reads_nowait()) {
		ck_assert_int_eq(pending_bytes(s->fd[0]), 0);
		r = (int)write(s->fd[1], "w", 1);
	}
	ck_assert_int_eq(r, 1);
	ck_assert_int_eq(af_send_timeout(sv[1], "s", 1, 0, 0), 1);
	ck_assert_int_eq(af_recv_timeout(sv[0], buf, sizeof(buf), 0, 0), 1);
	ck_assert_int_eq(buf[0], 's');
	ck_assert_int_eq(pending_bytes(s->fd[0]), 1);
	for (int i = 0; i < 2; i++)
		close(s->fd[i]), close(sv[i]);
	return 0;
}

START_TEST(a_zero_timeout_times_out_when_nothing_is_ready_and_returns_what_is)
{
	struct sc s = { 0 };

	run_ok(zero_timeout_main, &s);
}
END_TEST

/* A Unix listener that takes one connection and queues no more. */
static int unix_listener(struct sockaddr_un *a, socklen_t *alen)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	/* Abstract: nothing to unlink, unique per process and listener. */
	snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "af-test-io-%d-%d", (int)getpid(), fd);
	*alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)a, *alen), 0);
	ck_assert_int_eq(listen(fd, 0), 0);
	return fd;
}

struct unix_connect {
	int fd;
	struct sockaddr_un a;
	socklen_t alen;
	int r;
};

static int unix_connector(void *arg)
{
	struct unix_connect *u = arg;

	u->r = af_connect(u->fd, (struct sockaddr *)&u->a, u->alen);
	return 0;
}

static int unix_timeout_main(void *arg)
{
	struct sockaddr_un a;
	socklen_t alen;
	int lfd = unix_listener(&a, &alen);
	int c0 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int c1 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int c2 = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int afd;

	(void)arg;
	ck_assert_int_eq(af_connect(c0, (struct sockaddr *)&a, alen), 0);
	/* The backlog is full: the kernel's blocking connect runs on an
	 * io-wq worker, which the timeout interrupts (-EINTR there). */
	ck_assert_int_eq(af_connect_timeout(c1, (struct sockaddr *)&a, alen, 20 * MS), -ETIMEDOUT);
	ck_assert_int_eq(af_connect_timeout(c2, (struct sockaddr *)&a, alen, 0), -ETIMEDOUT);
	/* A cancel interrupts it the same way, and says so. */
	{
		struct unix_connect u = { .fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0),
					  .a = a, .alen = alen, .r = 1 };
		struct af_task *t;

		ck_assert_int_ge(u.fd, 0);
		ck_assert_int_eq(af_task_spawn(&t, unix_connector, &u), 0);
		ck_assert_int_eq(af_sleep_ms(5), 0);
		ck_assert_int_eq(af_task_cancel(t), 0);
		ck_assert_int_eq(af_task_join(t, NULL), 0);
		ck_assert_int_eq(u.r, -ECANCELED);
		close(u.fd);
	}
	/* The listener still works: take the queued one, nothing else is there. */
	afd = af_accept_timeout(lfd, NULL, NULL, SOCK_CLOEXEC, 20 * MS);
	ck_assert_int_ge(afd, 0);
	ck_assert_int_eq(af_accept_timeout(lfd, NULL, NULL, 0, 20 * MS), -ETIMEDOUT);
	close(afd);
	close(c0);
	close(c1);
	close(c2);
	close(lfd);
	return 0;
}

START_TEST(connect_timeout_to_a_unix_listener_with_a_full_backlog_fails_with_etimedout)
{
	run_ok(unix_timeout_main, NULL);
}
END_TEST

static int fifo_file_timeout_main(void *arg)
{
	const char *dir = getenv("TMPDIR");
	char path[PATH_MAX], buf[8] = { 0 };
	struct iovec iov = { buf, sizeof(buf) };
	int fd, file = make_tmpfile();

	(void)arg;
	snprintf(path, sizeof(path), "%s/af-test-fifo-%d", dir && *dir ? dir : "/tmp", (int)getpid());
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	/* O_RDWR: a FIFO opened both ways opens without a peer and never
	 * reports end of file. */
	fd = open(path, O_RDWR | O_CLOEXEC);
	unlink(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(af_read_timeout(fd, buf, sizeof(buf), AF_OFFSET_CURRENT, 20 * MS), -ETIMEDOUT);
	ck_assert_int_eq(af_readv_timeout(fd, &iov, 1, AF_OFFSET_CURRENT, 20 * MS), -ETIMEDOUT);
	ck_assert_int_eq(af_poll_timeout(fd, POLLIN, 20 * MS), -ETIMEDOUT);
	ck_assert_int_eq(af_wait_readable_timeout(fd, 0), -ETIMEDOUT);
	ck_assert_int_ge(fcntl(fd, F_SETPIPE_SZ, 4096), 4096);
	fill(fd);
	set_nonblock(fd, false);
	ck_assert_int_eq(af_write_timeout(fd, "x", 1, AF_OFFSET_CURRENT, 20 * MS), -ETIMEDOUT);
	ck_assert_int_eq(af_writev_timeout(fd, &iov, 1, AF_OFFSET_CURRENT, 20 * MS), -ETIMEDOUT);
	close(fd);

	/* A regular file never waits for a peer: a timeout it does not reach
	 * changes nothing. (A zero one may: the kernel can queue a file write
	 * to a worker, and cancels it there before it starts.) */
	ck_assert_int_eq(af_write_timeout(file, "abcd", 4, 0, LONG_NS), 4);
	ck_assert_int_eq(af_writev_timeout(file, &iov, 1, 4, LONG_NS), (int)sizeof(buf));
	ck_assert_int_eq(af_read_timeout(file, buf, 4, 0, LONG_NS), 4);
	ck_assert_int_eq(memcmp(buf, "abcd", 4), 0);
	ck_assert_int_eq(af_readv_timeout(file, &iov, 1, 0, LONG_NS), (int)sizeof(buf));
	ck_assert_int_eq(af_poll_timeout(file, POLLIN, LONG_NS), POLLIN);
	close(file);
	return 0;
}

START_TEST(timed_calls_on_a_fifo_time_out_and_on_a_regular_file_complete)
{
	run_ok(fifo_file_timeout_main, NULL);
}
END_TEST

/* ---- cancellation -------------------------------------------------------------------- */

#define CANARY 0xa5

struct victim {
	int fd;
	struct sockaddr_in addr;
	bool started;
	int r, r_next;
	int kind;
	unsigned char seen[64];
	bool canary_ok;
};

enum { V_READ, V_READ_TMO, V_RECV, V_ACCEPT, V_POLL, V_READV, V_CONNECT };

static int victim_main(void *arg)
{
	struct victim *v = arg;
	unsigned char buf[64];
	struct iovec iov = { buf, sizeof(buf) };
	int fd;

	memset(buf, CANARY, sizeof(buf));
	v->started = true;
	switch (v->kind) {
	case V_READ:
		v->r = af_read(v->fd, buf, sizeof(buf), AF_OFFSET_CURRENT);
		break;
	case V_READ_TMO:
		v->r = af_read_timeout(v->fd, buf, sizeof(buf), AF_OFFSET_CURRENT, LONG_NS);
		break;
	case V_RECV:
		v->r = af_recv_timeout(v->fd, buf, sizeof(buf), 0, LONG_NS);
		break;
	case V_ACCEPT:
		v->r = af_accept(v->fd, NULL, NULL, SOCK_CLOEXEC);
		break;
	case V_POLL:
		v->r = af_poll(v->fd, POLLIN);
		break;
	case V_READV:
		v->r = af_readv(v->fd, &iov, 1, AF_OFFSET_CURRENT);
		break;
	case V_CONNECT:
		fd = tcp_socket();
		v->r = af_connect(fd, (struct sockaddr *)&v->addr, sizeof(v->addr));
		close(fd);
		break;
	}
	v->canary_ok = true;
	for (size_t i = 0; i < sizeof(buf); i++)
		if (buf[i] != CANARY)
			v->canary_ok = false;
	memcpy(v->seen, buf, sizeof(buf));
	v->r_next = af_yield();
	return 0;
}

static int cancel_each_main(void *arg)
{
	int p[2], sv[2], lfd, full, c0 = tcp_socket();
	uint16_t port, fport;
	struct sockaddr_in fa;
	struct af_task *t;

	(void)arg;
	make_pipe(p);
	make_socketpair(sv);
	lfd = tcp_bound(&port, 4);
	full = tcp_bound(&fport, 0);
	fa = loopback(fport);
	/* Fills the backlog of 0: the next connect waits for a SYN retry. */
	ck_assert_int_eq(af_connect(c0, (struct sockaddr *)&fa, sizeof(fa)), 0);
	for (int kind = V_READ; kind <= V_CONNECT; kind++) {
		struct victim v = { .kind = kind };

		v.fd = kind == V_RECV ? sv[0] : kind == V_ACCEPT ? lfd : p[0];
		v.addr = loopback(fport);
		ck_assert_int_eq(af_task_spawn(&t, victim_main, &v), 0);
		/* Twice: the task submits, the loop hands it to the kernel. */
		ck_assert_int_eq(af_yield(), 0);
		ck_assert_int_eq(af_yield(), 0);
		ck_assert(v.started);
		ck_assert_int_eq(af_task_cancel(t), 0);
		ck_assert_int_eq(af_task_join(t, NULL), 0);
		ck_assert_msg(v.r == -ECANCELED, "kind %d: %d", kind, v.r);
		ck_assert(v.canary_ok);
		/* The cancel was used up by the call. */
		ck_assert_int_eq(v.r_next, 0);
	}
	/* Everything still works afterwards. */
	ck_assert_int_eq(write(p[1], "p", 1), 1);
	ck_assert_int_eq(af_read(p[0], p, 1, AF_OFFSET_CURRENT), 1);
	for (int i = 0; i < 2; i++)
		close(p[i]), close(sv[i]);
	close(lfd);
	close(c0);
	close(full);
	return 0;
}

START_TEST(cancelling_a_task_parked_in_each_call_returns_ecanceled_and_touches_no_buffer)
{
	run_ok(cancel_each_main, NULL);
}
END_TEST

static int cancel_before_main(void *arg)
{
	struct sc *s = arg;
	char buf[8];

	make_pipe(s->fd);
	ck_assert_int_eq(write(s->fd[1], "abc", 3), 3);
	ck_assert_int_eq(af_task_cancel(af_task_current()), 0);
	/* The pending cancel is taken by the call, which submits nothing. */
	ck_assert_int_eq(af_read(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT), -ECANCELED);
	ck_assert_int_eq(pending_bytes(s->fd[0]), 3);
	ck_assert_int_eq(af_task_cancel(af_task_current()), 0);
	/* Except close: it closes anyway, or the descriptor would leak, and
	 * leaves the cancel for the next blocking call. */
	ck_assert_int_eq(af_close(s->fd[1]), 0);
	ck_assert_int_eq(fcntl(s->fd[1], F_GETFD), -1);
	ck_assert_int_eq(af_read(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT), -ECANCELED);
	ck_assert_int_eq(af_read(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT), 3);
	close(s->fd[0]);
	return 0;
}

START_TEST(a_cancel_pending_before_the_call_fails_it_with_ecanceled_and_submits_nothing_except_close)
{
	struct sc s = { 0 };

	run_ok(cancel_before_main, &s);
}
END_TEST

static int completed_anyway_main(void *arg)
{
	struct victim *v = arg;
	int p[2];
	struct af_task *t;

	make_pipe(p);
	/* 1. The read is queued but not yet submitted when data and cancel
	 * arrive: on submission it completes at once with the data. Where
	 * the kernel cannot read a pipe without blocking, the cancel behind
	 * it wins instead, and the data must then still be in the pipe. */
	v[0].fd = p[0];
	ck_assert_int_eq(af_task_spawn(&t, victim_main, &v[0]), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert(v[0].started);
	ck_assert_int_eq(write(p[1], "first", 5), 5);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	if (v[0].r == -ECANCELED) {
		ck_assert(v[0].canary_ok);
		ck_assert_int_eq(pending_bytes(p[0]), 5);
		ck_assert_int_eq(read(p[0], v[0].seen, 5), 5);
	}

	/* 2. The read has completed and woken the task, which has not resumed
	 * when the cancel comes. */
	v[1].fd = p[0];
	ck_assert_int_eq(af_task_spawn(&t, victim_main, &v[1]), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(t->state, AF_TASK_BLOCKED);
	ck_assert_int_eq(write(p[1], "second", 6), 6);
	for (int i = 0; i < 1000 && t->state == AF_TASK_BLOCKED; i++)
		ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(t->state, AF_TASK_RUNNABLE);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(pending_bytes(p[0]), 0);
	close(p[0]);
	close(p[1]);
	return 0;
}

START_TEST(a_read_that_completed_despite_the_cancel_returns_its_data_and_the_next_call_is_cancelled)
{
	struct victim v[2] = { { .kind = V_READ }, { .kind = V_READ } };

	run_ok(completed_anyway_main, v);
	if (v[0].r == -ECANCELED && !pipe_reads_nowait()) {
		/* The cancel won and took itself: the data stayed (seen holds
		 * what the pipe still had). */
		ck_assert_int_eq(v[0].r_next, 0);
	} else {
		ck_assert_int_eq(v[0].r, 5);
		ck_assert_int_eq(v[0].r_next, -ECANCELED);
	}
	ck_assert_int_eq(memcmp(v[0].seen, "first", 5), 0);
	ck_assert_int_eq(v[1].r, 6);
	ck_assert_int_eq(memcmp(v[1].seen, "second", 6), 0);
	ck_assert_int_eq(v[1].r_next, -ECANCELED);
}
END_TEST

static int cancel_timed_main(void *arg)
{
	struct victim *v = arg;
	int p[2];
	struct af_task *t;

	make_pipe(p);
	v->fd = p[0];
	ck_assert_int_eq(af_task_spawn(&t, victim_main, v), 0);
	ck_assert_int_eq(af_sleep_ms(5), 0);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	ck_assert_int_eq(pending_bytes(p[0]), 1);
	close(p[0]);
	close(p[1]);
	return 0;
}

START_TEST(a_cancelled_timed_call_returns_ecanceled_not_etimedout)
{
	struct victim v = { .kind = V_READ_TMO };

	run_ok(cancel_timed_main, &v);
	ck_assert_int_eq(v.r, -ECANCELED);
	ck_assert(v.canary_ok);
	ck_assert_int_eq(v.r_next, 0);
}
END_TEST

static int left_reading(void *arg)
{
	struct sc *s = arg;
	char buf[8];

	s->r[0] = af_read(s->fd[0], buf, sizeof(buf), AF_OFFSET_CURRENT);
	s->r[1] = 1;
	return 0;
}

static int main_leaves_reader(void *arg)
{
	struct sc *s = arg;

	make_pipe(s->fd);
	ck_assert_int_eq(af_task_spawn(NULL, left_reading, s), 0);
	ck_assert_int_eq(af_yield(), 0);
	ck_assert_int_eq(af_yield(), 0);
	return 0;
}

START_TEST(a_task_left_reading_when_main_returns_is_cancelled_and_the_loop_ends)
{
	struct sc s = { 0 };

	run_ok(main_leaves_reader, &s);
	ck_assert_int_eq(s.r[1], 1);
	ck_assert_int_eq(s.r[0], -ECANCELED);
	ck_assert_int_eq(pending_bytes(s.fd[0]), 0);
	ck_assert_int_eq(write(s.fd[1], "z", 1), 1);
	ck_assert_int_eq(pending_bytes(s.fd[0]), 1);
	close(s.fd[0]);
	close(s.fd[1]);
}
END_TEST

/* ---- cancellation and timeouts racing completion ---------------------------------------- */

#define RACE_MSG 24

struct racer {
	int fd;
	bool heap;
	bool started;
	int r, r_next;
	bool canary_ok;
	unsigned char seen[RACE_MSG];
};

/* The buffer lives on this task's stack (or in a heap block freed the
 * moment the call returns): once the task is gone, a late kernel write
 * would have eaten bytes the accounting below expects in the pipe. */
static int racer_main(void *arg)
{
	struct racer *rc = arg;
	unsigned char stackbuf[RACE_MSG];
	unsigned char *buf = rc->heap ? malloc(RACE_MSG) : stackbuf;

	if (!buf)
		return -ENOMEM;
	memset(buf, CANARY, RACE_MSG);
	rc->started = true;
	rc->r = af_read(rc->fd, buf, RACE_MSG, AF_OFFSET_CURRENT);
	memcpy(rc->seen, buf, RACE_MSG);
	rc->canary_ok = true;
	for (int i = 0; i < RACE_MSG; i++)
		if (buf[i] != CANARY)
			rc->canary_ok = false;
	if (rc->heap)
		free(buf);
	rc->r_next = af_yield();
	return 0;
}

struct race_stats {
	unsigned data, cancelled, timed_out;
	struct failure f;
};

/* Check one round: the read returned a prefix of message @seed and the rest
 * is in the pipe, or it returned -ECANCELED/-ETIMEDOUT with the buffer
 * untouched and the whole message in the pipe. @written says whether the
 * message was written at all. */
static void account(struct race_stats *st, int rfd, int iter, int r, bool canary_ok,
		    const unsigned char *seen, int r_next, bool cancel_sent, bool written)
{
	unsigned char rest[RACE_MSG * 2];
	int left = pending_bytes(rfd), want_left;

	if (r > 0) {
		st->data++;
		FAIL_IF(&st->f, !written, "iter %d: read %d bytes nobody wrote", iter, r);
		FAIL_IF(&st->f, r > RACE_MSG, "iter %d: read %d bytes", iter, r);
		FAIL_IF(&st->f, !check_pat(seen, (size_t)r, (uint32_t)iter, 0),
			"iter %d: read returned the wrong bytes", iter);
		FAIL_IF(&st->f, cancel_sent && r_next != -ECANCELED,
			"iter %d: read returned data after a cancel, next call gave %d", iter,
			r_next);
		want_left = RACE_MSG - r;
	} else if (r == -ECANCELED || r == -ETIMEDOUT) {
		if (r == -ECANCELED)
			st->cancelled++;
		else
			st->timed_out++;
		FAIL_IF(&st->f, !canary_ok, "iter %d: %d, yet the buffer was written", iter, r);
		FAIL_IF(&st->f, r_next != 0, "iter %d: next call after %d gave %d", iter, r, r_next);
		want_left = written ? RACE_MSG : 0;
	} else {
		FAIL_IF(&st->f, true, "iter %d: read returned %d", iter, r);
		want_left = left;
	}
	FAIL_IF(&st->f, left != want_left, "iter %d: r=%d, %d bytes left in the pipe, want %d",
		iter, r, left, want_left);
	if (left > 0 && left <= (int)sizeof(rest)) {
		int n = (int)read(rfd, rest, (size_t)left);

		FAIL_IF(&st->f, n != left, "iter %d: drain read %d of %d", iter, n, left);
		if (n == left && left == want_left)
			FAIL_IF(&st->f, !check_pat(rest, (size_t)n, (uint32_t)iter,
						   (size_t)(RACE_MSG - n)),
				"iter %d: the bytes left in the pipe are wrong", iter);
	}
}

#define RACE_ITERS test_rounds(5000)

struct race {
	int p[2];
	struct race_stats st;
	unsigned schedules[8];
};

static void write_msg(int wfd, int iter)
{
	unsigned char msg[RACE_MSG];

	fill_pat(msg, sizeof(msg), (uint32_t)iter, 0);
	ck_assert_int_eq(write(wfd, msg, sizeof(msg)), RACE_MSG);
}

/* Schedules of cancel against completion, chosen round-robin:
 * 0 cancel before the read is submitted, data afterwards (-ECANCELED)
 * 1 cancel after it is armed in the kernel, data afterwards (-ECANCELED)
 * 2 data and cancel before submission (the data, deterministically)
 * 3 armed; data then cancel in the same round (either)
 * 4 armed; data, one loop iteration, then cancel (either)
 * 5 armed; cancel then data before the task resumes (either)
 * 6 armed; data, a few loop iterations, then cancel (either) */
static int cancel_race_main(void *arg)
{
	struct race *ra = arg;

	make_pipe(ra->p);
	for (int i = 0; i < RACE_ITERS; i++) {
		struct racer rc = { .fd = ra->p[0], .heap = i % 2 };
		struct af_task *t;
		int sched = i % 7, cr;
		bool written = false, done;

		ck_assert_int_eq(af_task_spawn(&t, racer_main, &rc), 0);
		ck_assert_int_eq(af_yield(), 0);
		if (!rc.started) {
			FAIL_IF(&ra->st.f, true, "iter %d: reader did not start", i);
			break;
		}
		if (sched != 0 && sched != 2)
			ck_assert_int_eq(af_yield(), 0);
		if (sched == 2 || sched == 3 || sched == 4 || sched == 6) {
			write_msg(ra->p[1], i);
			written = true;
		}
		if (sched == 4)
			ck_assert_int_eq(af_yield(), 0);
		if (sched == 6)
			for (int k = 0; k < i % 5; k++)
				ck_assert_int_eq(af_yield(), 0);
		done = af_task_done(t);
		cr = af_task_cancel(t);
		ck_assert_int_eq(cr, done ? -EALREADY : 0);
		if (sched == 5) {
			write_msg(ra->p[1], i);
			written = true;
		}
		ck_assert_int_eq(af_task_join(t, NULL), 0);
		if (sched <= 1)
			FAIL_IF(&ra->st.f, rc.r != -ECANCELED, "iter %d sched %d: %d", i, sched, rc.r);
		/* Only a ring has a "queued, not yet submitted": on epoll the
		 * read tried at once, found nothing and parked, like sched 1.
		 * A kernel that cannot read a pipe without blocking parks it
		 * too (see pipe_reads_nowait). */
		if (sched == 2 && !on_epoll() && pipe_reads_nowait())
			FAIL_IF(&ra->st.f, rc.r != RACE_MSG, "iter %d sched 2: %d", i, rc.r);
		if (rc.r > 0)
			ra->schedules[sched]++;
		/* A cancelled read left the pipe alone: what is written now must
		 * all still be there. */
		if (!written && rc.r == -ECANCELED) {
			write_msg(ra->p[1], i);
			written = true;
		}
		account(&ra->st, ra->p[0], i, rc.r, rc.canary_ok, rc.seen, rc.r_next, cr == 0,
			written);
		if (ra->st.f.msg[0])
			break;
	}
	close(ra->p[0]);
	close(ra->p[1]);
	return 0;
}

START_TEST(cancels_racing_completions_thousands_of_times_never_lose_or_duplicate_a_byte)
{
	struct race ra = { 0 };

	run_ok(cancel_race_main, &ra);
	assert_no_failure(&ra.st.f);
	ck_assert_uint_eq(ra.st.data + ra.st.cancelled, RACE_ITERS);
	ck_assert_uint_gt(ra.st.data, 0);
	ck_assert_uint_gt(ra.st.cancelled, 0);
}
END_TEST

/* A thread that writes message N after a random pause once told to. */
struct writer {
	pthread_t th;
	int wfd;
	_Atomic int go;      /* iteration to write, -1: stop */
	_Atomic int done;    /* last iteration written */
	_Atomic int delay_us;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	int last = -1;

	for (;;) {
		int it = atomic_load(&w->go);

		if (it == -2)
			return NULL;
		if (it == last) {
			sched_yield();
			continue;
		}
		spin_us((unsigned)atomic_load(&w->delay_us));
		write_msg(w->wfd, it);
		last = it;
		atomic_store(&w->done, it);
	}
}

static void writer_start(struct writer *w, int wfd)
{
	w->wfd = wfd;
	atomic_init(&w->go, -1);
	atomic_init(&w->done, -1);
	atomic_init(&w->delay_us, 0);
	ck_assert_int_eq(pthread_create(&w->th, NULL, writer_main, w), 0);
}

static void writer_wait(struct writer *w, int it)
{
	while (atomic_load(&w->done) != it)
		sched_yield();
}

static void writer_stop(struct writer *w)
{
	atomic_store(&w->go, -2);
	ck_assert_int_eq(pthread_join(w->th, NULL), 0);
}

static unsigned rnd(unsigned *state)
{
	*state = *state * 1103515245u + 12345u;
	return (*state >> 16) & 0x7fff;
}

static int thread_cancel_race_main(void *arg)
{
	struct race *ra = arg;
	struct writer w;
	unsigned seed = 12345;

	make_pipe(ra->p);
	writer_start(&w, ra->p[1]);
	for (int i = 0; i < RACE_ITERS; i++) {
		struct racer rc = { .fd = ra->p[0], .heap = i % 2 };
		struct af_task *t;
		bool done;
		int cr;

		ck_assert_int_eq(af_task_spawn(&t, racer_main, &rc), 0);
		ck_assert_int_eq(af_yield(), 0);
		if (i % 3)
			ck_assert_int_eq(af_yield(), 0);
		atomic_store(&w.delay_us, (int)(rnd(&seed) % 50));
		atomic_store(&w.go, i);
		/* Cancel after a pause of our own, in the kernel or on the CPU. */
		if (i % 2)
			spin_us(rnd(&seed) % 50);
		else
			ck_assert_int_eq(af_sleep_ns((uint64_t)(rnd(&seed) % 50) * US), 0);
		done = af_task_done(t);
		cr = af_task_cancel(t);
		ck_assert_int_eq(cr, done ? -EALREADY : 0);
		ck_assert_int_eq(af_task_join(t, NULL), 0);
		writer_wait(&w, i);
		account(&ra->st, ra->p[0], i, rc.r, rc.canary_ok, rc.seen, rc.r_next, cr == 0, true);
		if (ra->st.f.msg[0])
			break;
	}
	writer_stop(&w);
	close(ra->p[0]);
	close(ra->p[1]);
	return 0;
}

START_TEST(cancels_racing_a_writer_thread_never_lose_or_duplicate_a_byte)
{
	struct race ra = { 0 };

	run_ok(thread_cancel_race_main, &ra);
	assert_no_failure(&ra.st.f);
	ck_assert_uint_eq(ra.st.data + ra.st.cancelled, RACE_ITERS);
}
END_TEST

static int timeout_race_main(void *arg)
{
	struct race *ra = arg;
	struct writer w;
	unsigned seed = 777;

	make_pipe(ra->p);
	writer_start(&w, ra->p[1]);
	for (int i = 0; i < RACE_ITERS; i++) {
		unsigned char buf[RACE_MSG];
		bool canary_ok = true;
		int r;

		memset(buf, CANARY, sizeof(buf));
		atomic_store(&w.delay_us, (int)(rnd(&seed) % 50));
		atomic_store(&w.go, i);
		r = af_read_timeout(ra->p[0], buf, sizeof(buf), AF_OFFSET_CURRENT,
				    (int64_t)(rnd(&seed) % 51) * US);
		for (size_t k = 0; k < sizeof(buf); k++)
			if (buf[k] != CANARY)
				canary_ok = false;
		writer_wait(&w, i);
		account(&ra->st, ra->p[0], i, r, canary_ok, buf, 0, false, true);
		if (ra->st.f.msg[0])
			break;
	}
	writer_stop(&w);
	close(ra->p[0]);
	close(ra->p[1]);
	return 0;
}

START_TEST(tiny_timeouts_racing_a_writer_thread_never_lose_or_duplicate_a_byte)
{
	struct race ra = { 0 };

	run_ok(timeout_race_main, &ra);
	assert_no_failure(&ra.st.f);
	ck_assert_uint_eq(ra.st.data + ra.st.timed_out, RACE_ITERS);
}
END_TEST

/* ---- a tiny ring ---------------------------------------------------------------------- */

#define NPAIRS 100

struct tiny {
	int sv[NPAIRS][2];
	int started, errors;
	struct failure f;
};

struct tiny_arg {
	struct tiny *ti;
	int i;
};

/* Echo one message back, with a linked timeout so that each call takes two
 * submission entries. */
static int tiny_echo(void *arg)
{
	struct tiny_arg *a = arg;
	struct tiny *ti = a->ti;
	unsigned char buf[32];
	int r;

	ti->started++;
	for (int round = 0; round < 3; round++) {
		r = af_read_timeout(ti->sv[a->i][1], buf, sizeof(buf), AF_OFFSET_CURRENT, LONG_NS);
		FAIL_IF(&ti->f, r != 16, "pair %d round %d: read %d", a->i, round, r);
		if (r != 16)
			return r;
		r = af_send(ti->sv[a->i][1], buf, (size_t)r, 0);
		FAIL_IF(&ti->f, r != 16, "pair %d round %d: send %d", a->i, round, r);
	}
	return 0;
}

static int tiny_ring_main(void *arg)
{
	struct tiny *ti = arg;
	struct tiny_arg args[NPAIRS];
	struct af_task *t[NPAIRS];
	unsigned char msg[16], back[16];

	for (int i = 0; i < NPAIRS; i++) {
		make_socketpair(ti->sv[i]);
		args[i] = (struct tiny_arg){ ti, i };
		ck_assert_int_eq(af_task_spawn(&t[i], tiny_echo, &args[i]), 0);
	}
	for (int round = 0; round < 3; round++) {
		/* Let all of them park on the ring before a burst of writes
		 * completes them all at once: more completions than the
		 * completion queue holds. */
		ck_assert_int_eq(af_sleep_ms(2), 0);
		ck_assert_int_eq(ti->started, NPAIRS);
		for (int i = 0; i < NPAIRS; i++) {
			fill_pat(msg, sizeof(msg), (uint32_t)(i * 10 + round), 0);
			ck_assert_int_eq(write(ti->sv[i][0], msg, sizeof(msg)), 16);
		}
		for (int i = 0; i < NPAIRS; i++) {
			int r = af_read_full(ti->sv[i][0], back, sizeof(back), AF_OFFSET_CURRENT,
					     NULL);

			FAIL_IF(&ti->f, r != 16, "pair %d: echo read %d", i, r);
			FAIL_IF(&ti->f, !check_pat(back, 16, (uint32_t)(i * 10 + round), 0),
				"pair %d round %d: wrong echo", i, round);
		}
	}
	for (int i = 0; i < NPAIRS; i++) {
		int res = -1;

		ck_assert_int_eq(af_task_join(t[i], &res), 0);
		FAIL_IF(&ti->f, res != 0, "pair %d: task result %d", i, res);
		close(ti->sv[i][0]);
		close(ti->sv[i][1]);
	}
	return 0;
}

START_TEST(a_ring_of_four_entries_serves_a_hundred_tasks_doing_io_at_once)
{
	for (int basic = 0; basic < 2; basic++) {
		struct af_loop_opts o = { .ring_entries = 4,
					  .flags = basic ? AF_LOOP_BASIC_RING : 0 };
		struct tiny *ti = calloc(1, sizeof(*ti));

		ck_assert_ptr_nonnull(ti);
		ck_assert_int_eq(run_opts(tiny_ring_main, ti, &o), 0);
		ck_assert_msg(ti->f.msg[0] == 0, "%s ring: %s", basic ? "basic" : "default",
			      ti->f.msg);
		free(ti);
	}
}
END_TEST

struct odd {
	int empty[2], later[2];
	int r[NPAIRS];
};

struct odd_arg {
	struct odd *o;
	int i;
};

/* Every third task takes one submission entry (a plain poll), the others
 * two (a read and its linked timeout): on a ring of four the queue fills
 * at every alignment, including one free slot for a two-entry request. */
static int odd_task(void *arg)
{
	struct odd_arg *a = arg;
	char buf[4];

	if (a->i % 3 == 0)
		a->o->r[a->i] = af_poll(a->o->later[0], POLLIN);
	else
		a->o->r[a->i] = af_read_timeout(a->o->empty[0], buf, sizeof(buf),
						AF_OFFSET_CURRENT, 20 * MS);
	return 0;
}

static int odd_main(void *arg)
{
	struct odd *o = arg;
	struct odd_arg args[NPAIRS];
	struct af_task *t[NPAIRS];

	make_pipe(o->empty);
	make_pipe(o->later);
	for (int i = 0; i < NPAIRS; i++) {
		args[i] = (struct odd_arg){ o, i };
		o->r[i] = 1;
		ck_assert_int_eq(af_task_spawn(&t[i], odd_task, &args[i]), 0);
	}
	/* The timed reads end by themselves; join them before the polls are
	 * released so that a timeout lost with a split link shows as a hang
	 * (cut short by the join timeout) rather than passing. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1)
			ck_assert_int_eq(write(o->later[1], "x", 1), 1);
		for (int i = 0; i < NPAIRS; i++) {
			int jr;

			if ((i % 3 == 0) != (pass == 1))
				continue;
			jr = af_task_join_timeout(t[i], LONG_NS / 2, NULL);
			ck_assert_msg(jr == 0, "task %d still parked after 5 s (join: %d)", i, jr);
		}
	}
	for (int i = 0; i < 2; i++)
		close(o->empty[i]), close(o->later[i]);
	return 0;
}

START_TEST(timed_calls_keep_their_linked_timeout_when_a_tiny_ring_fills_at_any_alignment)
{
	for (int basic = 0; basic < 2; basic++) {
		struct af_loop_opts opts = { .ring_entries = 4,
					     .flags = basic ? AF_LOOP_BASIC_RING : 0 };
		struct odd o;

		memset(&o, 0, sizeof(o));
		ck_assert_int_eq(run_opts(odd_main, &o, &opts), 0);
		for (int i = 0; i < NPAIRS; i++)
			ck_assert_msg(o.r[i] == (i % 3 == 0 ? POLLIN : -ETIMEDOUT),
				      "%s ring, task %d: %d", basic ? "basic" : "default", i, o.r[i]);
	}
}
END_TEST

static int small_ring_reader(void *arg)
{
	int *fds = arg;
	char c;

	return af_read_timeout(fds[0], &c, 1, AF_OFFSET_CURRENT, 20 * MS);
}

static int small_ring_main(void *arg)
{
	int p[2], res = 1, jr;
	struct af_task *t;

	(void)arg;
	make_pipe(p);
	ck_assert_int_eq(af_task_spawn(&t, small_ring_reader, p), 0);
	jr = af_task_join_timeout(t, LONG_NS / 2, &res);
	ck_assert_msg(jr == 0, "a 20 ms timed read still parked after 5 s (result %d)", res);
	ck_assert_int_eq(res, -ETIMEDOUT);
	close(p[0]);
	close(p[1]);
	return 0;
}

/* A request and its linked timeout must go to the kernel in one
 * submission: one entry is refused, two must be enough. */
START_TEST(a_one_entry_ring_is_refused_and_a_two_entry_ring_still_times_out_timed_calls)
{
	struct af_loop_opts opts = { .ring_entries = 1 };
	struct af_loop *loop = NULL;

	ck_assert_int_eq(af_loop_new(&loop, &opts), -EINVAL);
	ck_assert_ptr_null(loop);
	opts.ring_entries = 32769;
	ck_assert_int_eq(af_loop_new(&loop, &opts), -EINVAL);
	for (int basic = 0; basic < 2; basic++) {
		opts.ring_entries = 2;
		opts.flags = basic ? AF_LOOP_BASIC_RING : 0;
		ck_assert_int_eq(run_opts(small_ring_main, NULL, &opts), 0);
	}
}
END_TEST

/* ---- load: an echo server over loopback TCP ------------------------------------------------ */

#define ECHO_CLIENTS 200
#define ECHO_ROUNDS test_rounds(1000)
#define ECHO_MAX 300

struct echo {
	int lfd;
	uint16_t port;
	int served, conns_closed;
	unsigned long bytes_checked;
	struct failure f;
};

struct echo_client {
	struct echo *e;
	int id;
};

/* Each client sends its own byte patterns in messages of varying size. */
static uint32_t echo_seed(int id, int round)
{
	return (uint32_t)id * 100003u + (uint32_t)round;
}

static size_t echo_len(uint32_t seed)
{
	return 1 + (seed * 2654435761u >> 7) % ECHO_MAX;
}

static void no_delay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int echo_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	unsigned char buf[4096];
	int r;

	for (;;) {
		r = af_recv(fd, buf, sizeof(buf), 0);
		if (r <= 0)
			break;
		r = af_write_all(fd, buf, (size_t)r, AF_OFFSET_CURRENT, NULL);
		if (r < 0)
			break;
	}
	af_close(fd);
	return r;
}

static int echo_acceptor(void *arg)
{
	struct echo *e = arg;

	for (int i = 0; i < ECHO_CLIENTS; i++) {
		int fd = af_accept(e->lfd, NULL, NULL, SOCK_CLOEXEC);

		FAIL_IF(&e->f, fd < 0, "accept: %d", fd);
		if (fd < 0)
			return fd;
		no_delay(fd);
		/* One task per connection, detached: it closes its socket
		 * when the client goes. */
		FAIL_IF(&e->f, af_task_spawn(NULL, echo_conn, (void *)(intptr_t)fd) != 0,
			"spawn conn");
		e->served++;
	}
	return 0;
}

static int echo_client_main(void *arg)
{
	struct echo_client *c = arg;
	struct echo *e = c->e;
	struct sockaddr_in a = loopback(e->port);
	unsigned char out[ECHO_MAX], in[ECHO_MAX];
	int fd = tcp_socket(), r;

	r = af_connect(fd, (struct sockaddr *)&a, sizeof(a));
	FAIL_IF(&e->f, r != 0, "client %d: connect %d", c->id, r);
	if (r != 0) {
		close(fd);
		return r;
	}
	no_delay(fd);
	for (int round = 0; round < ECHO_ROUNDS; round++) {
		uint32_t seed = echo_seed(c->id, round);
		size_t len = echo_len(seed);
		size_t got = 0;

		fill_pat(out, len, seed, 0);
		r = af_write_all(fd, out, len, AF_OFFSET_CURRENT, NULL);
		FAIL_IF(&e->f, r != 0, "client %d round %d: write %d", c->id, round, r);
		if (r != 0)
			break;
		memset(in, 0, len);
		r = af_read_full(fd, in, len, AF_OFFSET_CURRENT, &got);
		FAIL_IF(&e->f, r != (int)len, "client %d round %d: read %d of %zu", c->id, round,
			r, len);
		if (r != (int)len)
			break;
		FAIL_IF(&e->f, memcmp(in, out, len) != 0, "client %d round %d: wrong bytes",
			c->id, round);
		e->bytes_checked += len;
		r = 0;
	}
	af_close(fd);
	return r;
}

static int echo_main(void *arg)
{
	struct echo *e = arg;
	struct echo_client cl[ECHO_CLIENTS];
	struct af_task *t[ECHO_CLIENTS], *acc;

	e->lfd = tcp_bound(&e->port, SOMAXCONN);
	ck_assert_int_eq(af_task_spawn(&acc, echo_acceptor, e), 0);
	for (int i = 0; i < ECHO_CLIENTS; i++) {
		cl[i] = (struct echo_client){ e, i };
		ck_assert_int_eq(af_task_spawn(&t[i], echo_client_main, &cl[i]), 0);
	}
	for (int i = 0; i < ECHO_CLIENTS; i++) {
		int res = -1;

		ck_assert_int_eq(af_task_join(t[i], &res), 0);
		FAIL_IF(&e->f, res != 0, "client %d ended with %d", i, res);
	}
	ck_assert_int_eq(af_task_join(acc, NULL), 0);
	/* The connection tasks see the clients' close and end by themselves;
	 * wait for them rather than cancel them. */
	for (int i = 0; i < 5000 && af_loop_current()->nalive > 1; i++)
		ck_assert_int_eq(af_sleep_ms(1), 0);
	FAIL_IF(&e->f, af_loop_current()->nalive != 1, "%zu connection tasks still alive",
		af_loop_current()->nalive - 1);
	ck_assert_int_eq(af_close(e->lfd), 0);
	return 0;
}

START_TEST(an_echo_server_under_200_clients_returns_every_byte_and_leaks_no_descriptor)
{
	struct echo *e = calloc(1, sizeof(*e));
	struct af_loop_opts o = { .stack_size = 64 * 1024 };
	unsigned long want = 0;
	int before;

	ck_assert_ptr_nonnull(e);
	raise_nofile();
	before = count_fds();
	ck_assert_int_eq(run_opts(echo_main, e, &o), 0);
	assert_no_failure(&e->f);
	ck_assert_int_eq(e->served, ECHO_CLIENTS);
	ck_assert_int_eq(count_fds(), before);
	for (int id = 0; id < ECHO_CLIENTS; id++)
		for (int round = 0; round < ECHO_ROUNDS; round++)
			want += echo_len(echo_seed(id, round));
	ck_assert_uint_eq(e->bytes_checked, want);
	free(e);
}
END_TEST

/* ---- the kernel pushes back on a submit ----------------------------------------- */

/* Queue no-ops (no user_data: the loop ignores their completions) until
 * only @left submission slots remain. */
static void fill_sq(struct af_loop *loop, unsigned left)
{
	while (io_uring_sq_space_left(&loop->ring) > left) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->ring);

		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, NULL);
	}
}

struct reap_case {
	int p[2];
	struct af_task *reader;
	struct af_event go;
	int r;
	int left;            /* bytes still in the pipe afterwards */
	char buf[4];
};

static int cancelled_reader(void *arg)
{
	struct reap_case *c = arg;

	c->r = af_read(c->p[0], c->buf, sizeof(c->buf), AF_OFFSET_CURRENT);
	return 0;
}

/* Runs in the batch just before the cancelled reader resumes: completes
 * its read in the kernel and leaves a full queue whose flush is pushed
 * back, so the reader's cancel request flushes and reaps that completion. */
static int completer(void *arg)
{
	struct reap_case *c = arg;

	ck_assert_int_eq(af_event_wait(&c->go), 0);
	ck_assert_int_eq(write(c->p[1], "x", 1), 1);
	fill_sq(af_loop_current(), 0);
	submit_busy = 1;
	return 0;
}

static int cancel_flush_reaps_main(void *arg)
{
	struct reap_case *c = arg;

	make_pipe(c->p);
	af_event_init(&c->go);
	ck_assert_int_eq(af_task_spawn(&c->reader, cancelled_reader, c), 0);
	ck_assert_int_eq(af_task_spawn(NULL, completer, c), 0);
	ck_assert_int_eq(af_yield(), 0); /* the reader parks, the completer waits */
	af_event_set(&c->go);            /* queued first ... */
	ck_assert_int_eq(af_task_cancel(c->reader), 0); /* ... the reader second */
	/* No timeout: a reader parked for ever hangs until the test case's
	 * timeout, which is the failure. */
	ck_assert_int_eq(af_task_join(c->reader, NULL), 0);
	c->left = pending_bytes(c->p[0]);
	close(c->p[0]);
	close(c->p[1]);
	return 0;
}

START_TEST(a_cancel_whose_flush_reaps_the_last_completion_does_not_park_the_task_for_ever)
{
	struct reap_case c = { 0 };

	run_ok(cancel_flush_reaps_main, &c);
	/* It completed before the cancel reached the kernel: data, not loss.
	 * A kernel that cannot read a pipe without blocking has the read
	 * parked on poll still, and the cancel wins: then the byte stays. */
	if (c.r == -ECANCELED && !pipe_reads_nowait()) {
		ck_assert_int_eq(c.left, 1);
		return;
	}
	ck_assert_int_eq(c.r, 1);
	ck_assert_int_eq(c.buf[0], 'x');
}
END_TEST

static int rescuer(void *arg)
{
	int *wfd = arg;

	if (af_sleep_ms(3000) == 0)
		ck_assert_int_eq(write(*wfd, "r", 1), 1);
	return 0;
}

static int split_link_main(void *arg)
{
	struct af_loop *loop = af_loop_current();
	struct af_task *t;
	char buf[4];
	int p[2];

	(void)arg;
	make_pipe(p);
	/* Fails the test instead of hanging it if the timeout is lost. */
	ck_assert_int_eq(af_task_spawn(&t, rescuer, &p[1]), 0);
	ck_assert_int_eq(af_yield(), 0);
	/* One free slot, and two flushes in a row that make no room. */
	fill_sq(loop, 1);
	submit_busy = 2;
	ck_assert_int_eq(af_read_timeout(p[0], buf, sizeof(buf), AF_OFFSET_CURRENT, 10 * MS),
			 -ETIMEDOUT);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	close(p[0]);
	close(p[1]);
	return 0;
}

START_TEST(a_timed_call_keeps_its_timeout_when_flushes_cannot_make_room_for_both_entries)
{
	struct af_loop_opts o = { .ring_entries = 4 };

	ck_assert_int_eq(run_opts(split_link_main, NULL, &o), 0);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("io");
	TCase *tc;

	tc = tcase_create("pipes");
	tcase_add_test(tc, read_and_write_on_a_pipe_move_the_bytes_and_return_their_count);
	tcase_add_test(tc, a_read_on_an_empty_pipe_parks_the_task_while_the_loop_runs_the_writer);
	tcase_add_test(tc, a_read_of_a_pipe_whose_writer_closed_returns_zero);
	tcase_add_test(tc, writev_gathers_and_readv_scatters_through_a_pipe);
	tcase_add_test(tc, a_write_larger_than_the_pipe_reports_the_short_count);
	suite_add_tcase(s, tc);

	tc = tcase_create("regular files");
	tcase_add_test(tc, read_and_write_at_the_current_offset_advance_the_file_position);
	tcase_add_test(tc, read_and_write_at_an_explicit_offset_leave_the_file_position_alone);
	tcase_add_test(tc, writev_and_readv_on_a_file_honour_the_offset_like_pwritev_and_preadv);
	suite_add_tcase(s, tc);

	tc = tcase_create("sockets");
	tcase_add_test(tc, send_and_recv_on_a_socketpair_pass_flags_and_recv_returns_zero_after_the_peer_closed);
	tcase_add_test(tc, accept_parks_until_a_task_connects_over_loopback_tcp_and_reports_its_address);
	tcase_add_test(tc, accept_without_an_address_honours_cloexec_and_nonblock_flags);
	suite_add_tcase(s, tc);

	tc = tcase_create("poll and close");
	tcase_add_test(tc, poll_returns_the_mask_of_ready_events);
	tcase_add_test(tc, poll_and_wait_readable_park_until_data_arrives_and_consume_nothing);
	tcase_add_test(tc, close_through_the_ring_closes_the_descriptor_and_a_second_close_fails_with_ebadf);
	tcase_add_uring_test(tc, close_leaves_a_read_in_flight_on_the_descriptor_to_finish_as_io_uring_does,
			     "a readiness wait holds no file: on epoll the read gets -EBADF (test-backend)");
	suite_add_tcase(s, tc);

	tc = tcase_create("write all and read full");
	tcase_add_test(tc, write_all_pushes_a_large_buffer_through_a_small_pipe_to_a_concurrent_reader);
	tcase_add_test(tc, write_all_on_a_file_advances_its_offset_and_read_full_reads_it_back);
	tcase_add_test(tc, write_all_reports_the_bytes_written_before_an_error);
	tcase_add_test(tc, read_full_gathers_short_reads_and_stops_at_end_of_file_with_a_short_count);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, every_call_on_a_closed_descriptor_or_on_minus_one_fails_with_ebadf);
	tcase_add_test(tc, the_kernel_errno_comes_back_unchanged_for_the_wrong_kind_of_descriptor);
	tcase_add_test(tc, connect_to_a_port_nobody_listens_on_fails_with_econnrefused);
	tcase_add_test(tc, write_to_a_pipe_whose_reader_closed_fails_with_epipe);
	tcase_add_test(tc, send_to_a_closed_peer_fails_with_epipe_and_raises_no_sigpipe);
	tcase_add_test(tc, bad_arguments_fail_with_einval_and_touch_nothing);
	tcase_add_test(tc, every_call_outside_a_task_fails_with_eperm_and_does_nothing);
	tcase_add_test(tc, strerror_describes_every_int_and_keeps_unknown_texts_per_thread);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeouts");
	tcase_add_test(tc, each_timeout_variant_fails_with_etimedout_when_nothing_happens);
	tcase_add_test(tc, a_timed_call_returns_what_arrives_before_its_timeout);
	tcase_add_test(tc, a_zero_timeout_times_out_when_nothing_is_ready_and_returns_what_is);
	tcase_add_test(tc, connect_timeout_to_a_unix_listener_with_a_full_backlog_fails_with_etimedout);
	tcase_add_test(tc, timed_calls_on_a_fifo_time_out_and_on_a_regular_file_complete);
	suite_add_tcase(s, tc);

	tc = tcase_create("cancellation");
	tcase_add_test(tc, cancelling_a_task_parked_in_each_call_returns_ecanceled_and_touches_no_buffer);
	tcase_add_test(tc, a_cancel_pending_before_the_call_fails_it_with_ecanceled_and_submits_nothing_except_close);
	tcase_add_uring_test(tc, a_read_that_completed_despite_the_cancel_returns_its_data_and_the_next_call_is_cancelled,
			     "on epoll no read completes behind the task's back: see test-backend");
	tcase_add_test(tc, a_cancelled_timed_call_returns_ecanceled_not_etimedout);
	tcase_add_test(tc, a_task_left_reading_when_main_returns_is_cancelled_and_the_loop_ends);
	suite_add_tcase(s, tc);

	tc = tcase_create("races");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, cancels_racing_completions_thousands_of_times_never_lose_or_duplicate_a_byte);
	tcase_add_test(tc, cancels_racing_a_writer_thread_never_lose_or_duplicate_a_byte);
	tcase_add_test(tc, tiny_timeouts_racing_a_writer_thread_never_lose_or_duplicate_a_byte);
	suite_add_tcase(s, tc);

	tc = tcase_create("submission queue");
	tcase_add_test(tc, a_ring_of_four_entries_serves_a_hundred_tasks_doing_io_at_once);
	tcase_add_test(tc, timed_calls_keep_their_linked_timeout_when_a_tiny_ring_fills_at_any_alignment);
	tcase_add_test(tc, a_one_entry_ring_is_refused_and_a_two_entry_ring_still_times_out_timed_calls);
	suite_add_tcase(s, tc);

	tc = tcase_create("submit pushed back");
	tcase_set_timeout(tc, 20);
	tcase_add_uring_test(tc, a_cancel_whose_flush_reaps_the_last_completion_does_not_park_the_task_for_ever,
			     "epoll has no submission queue to push back");
	tcase_add_uring_test(tc, a_timed_call_keeps_its_timeout_when_flushes_cannot_make_room_for_both_entries,
			     "epoll has no submission queue to push back");
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, an_echo_server_under_200_clients_returns_every_byte_and_leaks_no_descriptor);
	suite_add_tcase(s, tc);

	return s;
}

int main(void)
{
	return run_suite(make_suite());
}

/* SPDX-License-Identifier: MIT */
/* Buffered streams over a socketpair: lines split over reads, limits,
 * cancellation and timeouts keeping the buffer, end of file mid-line,
 * readuntil, readexactly, buffered writes and drain, refused calls. */
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

struct pair {
	int fd[2];            /* fd[0]: the stream's end; fd[1]: the test's */
	struct af_stream *s;
	size_t rbuf, wbuf;
};

static void pair_open(struct pair *p)
{
	struct af_stream_opts o = { .read_buffer = p->rbuf, .write_buffer = p->wbuf };

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->fd), 0);
	ck_assert_int_eq(af_stream_new(&p->s, p->fd[0], &o), 0);
}

static void pair_close(struct pair *p)
{
	af_stream_free(p->s);
	close(p->fd[0]);
	if (p->fd[1] >= 0)
		close(p->fd[1]);
}

static void send_str(struct pair *p, const char *str)
{
	ck_assert_int_eq(write(p->fd[1], str, strlen(str)), (ssize_t)strlen(str));
}

/* ---- readline -------------------------------------------------------------- */

struct dribble {
	struct pair *p;
	const char *text;
};

/* Sends one byte per loop turn, so every read sees a fragment. */
static int dribble_fn(void *arg)
{
	struct dribble *d = arg;

	for (const char *c = d->text; *c; c++) {
		ck_assert_int_eq(af_write(d->p->fd[1], c, 1, AF_OFFSET_CURRENT), 1);
		ck_assert_int_eq(af_sleep_ms(0), 0);
	}
	return 0;
}

static int split_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	struct dribble d = { &p, "first line\nsecond\n" };
	struct af_task *t;
	char line[64];

	(void)arg;
	pair_open(&p);
	ck_assert_int_eq(af_task_spawn(&t, dribble_fn, &d), 0);
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 11);
	ck_assert_str_eq(line, "first line\n");
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 7);
	ck_assert_str_eq(line, "second\n");
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	pair_close(&p);
	return 0;
}

START_TEST(readline_assembles_a_line_split_across_many_reads)
{
	ck_assert_int_eq(run_main(split_main, NULL), 0);
}
END_TEST

static int many_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	char line[16];

	(void)arg;
	pair_open(&p);
	send_str(&p, "a\nbb\n\nccc\n");
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 2);
	ck_assert_str_eq(line, "a\n");
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 3);
	ck_assert_str_eq(line, "bb\n");
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 1);
	ck_assert_str_eq(line, "\n");
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 4);
	ck_assert_str_eq(line, "ccc\n");
	pair_close(&p);
	return 0;
}

START_TEST(readline_returns_several_lines_of_one_read_one_at_a_time)
{
	ck_assert_int_eq(run_main(many_main, NULL), 0);
}
END_TEST

static int limit_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	char line[8], rest[16];

	(void)arg;
	pair_open(&p);
	send_str(&p, "0123456789\nok\n");
	/* 7 bytes fit in line[8] with the NUL: no newline among them. */
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), -EMSGSIZE);
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), -EMSGSIZE);
	/* Nothing was consumed: a bigger buffer gets the whole line. */
	ck_assert_int_eq(af_stream_readline(p.s, rest, sizeof(rest)), 11);
	ck_assert_str_eq(rest, "0123456789\n");
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 3);
	ck_assert_str_eq(line, "ok\n");
	pair_close(&p);
	return 0;
}

START_TEST(a_line_longer_than_the_callers_buffer_fails_with_emsgsize_and_consumes_nothing)
{
	ck_assert_int_eq(run_main(limit_main, NULL), 0);
}
END_TEST

static int flood_main(void *arg)
{
	struct pair p = { .rbuf = 16 };
	char junk[4096], line[4096];

	(void)arg;
	pair_open(&p);
	memset(junk, 'x', sizeof(junk));
	ck_assert_int_eq(write(p.fd[1], junk, sizeof(junk)), (ssize_t)sizeof(junk));
	/* The read buffer, not the caller's, is the limit: 16 bytes read. */
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), -EMSGSIZE);
	ck_assert_int_eq(af_stream_read(p.s, line, sizeof(line)), 16);
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), -EMSGSIZE);
	pair_close(&p);
	return 0;
}

START_TEST(a_peer_that_never_sends_a_newline_fills_only_the_read_buffer)
{
	ck_assert_int_eq(run_main(flood_main, NULL), 0);
}
END_TEST

struct reader {
	struct pair *p;
	char line[64];
	int r;
};

static int reader_fn(void *arg)
{
	struct reader *rd = arg;

	rd->r = af_stream_readline(rd->p->s, rd->line, sizeof(rd->line));
	return rd->r;
}

static int cancel_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	struct reader rd = { &p, "", 1 };
	struct af_task *t;
	char line[64];

	(void)arg;
	pair_open(&p);
	ck_assert_int_eq(af_task_spawn(&t, reader_fn, &rd), 0);
	send_str(&p, "hel");
	/* Let the reader take "hel" into the buffer and wait for more. */
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(af_sleep_ms(1), 0);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(rd.r, -ECANCELED);
	send_str(&p, "lo\n");
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 6);
	ck_assert_str_eq(line, "hello\n");
	pair_close(&p);
	return 0;
}

START_TEST(a_readline_cancelled_mid_line_leaves_what_it_read_for_the_next_call)
{
	ck_assert_int_eq(run_main(cancel_main, NULL), 0);
}
END_TEST

static int timeout_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	char line[64];

	(void)arg;
	pair_open(&p);
	send_str(&p, "par");
	ck_assert_int_eq(af_stream_readline_timeout(p.s, line, sizeof(line), 5 * MS), -ETIMEDOUT);
	send_str(&p, "tial\n");
	ck_assert_int_eq(af_stream_readline_timeout(p.s, line, sizeof(line), LONG_NS), 8);
	ck_assert_str_eq(line, "partial\n");
	pair_close(&p);
	return 0;
}

START_TEST(a_readline_that_times_out_mid_line_keeps_the_bytes)
{
	ck_assert_int_eq(run_main(timeout_main, NULL), 0);
}
END_TEST

static int eof_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	char line[64];

	(void)arg;
	pair_open(&p);
	send_str(&p, "done\nhalf");
	close(p.fd[1]);
	p.fd[1] = -1;
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 5);
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 4);
	ck_assert_str_eq(line, "half");
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), 0);
	ck_assert_str_eq(line, "");
	pair_close(&p);
	return 0;
}

START_TEST(end_of_file_mid_line_returns_the_partial_line_then_zero)
{
	ck_assert_int_eq(run_main(eof_main, NULL), 0);
}
END_TEST

/* ---- readuntil and readexactly ---------------------------------------------------- */

static int until_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	struct dribble d = { &p, "GET / HTTP/1.0\r\nHost: x\r\n\r\n" };
	struct af_task *t;
	char rec[64];

	(void)arg;
	pair_open(&p);
	ck_assert_int_eq(af_task_spawn(&t, dribble_fn, &d), 0);
	ck_assert_int_eq(af_stream_readuntil(p.s, "\r\n\r\n", 4, rec, sizeof(rec)), 27);
	ck_assert_str_eq(rec, "GET / HTTP/1.0\r\nHost: x\r\n\r\n");
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	pair_close(&p);
	return 0;
}

START_TEST(readuntil_finds_a_multibyte_delimiter_that_arrives_split)
{
	ck_assert_int_eq(run_main(until_main, NULL), 0);
}
END_TEST

static int exactly_main(void *arg)
{
	struct pair p = { .rbuf = 8 };
	char buf[16];

	(void)arg;
	pair_open(&p);
	ck_assert_int_eq(af_stream_readexactly(p.s, buf, 9), -EMSGSIZE);
	send_str(&p, "abc");
	ck_assert_int_eq(af_stream_readexactly_timeout(p.s, buf, 5, 5 * MS), -ETIMEDOUT);
	send_str(&p, "defg");
	ck_assert_int_eq(af_stream_readexactly(p.s, buf, 5), 5);
	ck_assert_int_eq(memcmp(buf, "abcde", 5), 0);
	close(p.fd[1]);
	p.fd[1] = -1;
	ck_assert_int_eq(af_stream_readexactly(p.s, buf, 3), -ENODATA);
	ck_assert_int_eq(af_stream_read(p.s, buf, sizeof(buf)), 2);
	ck_assert_int_eq(memcmp(buf, "fg", 2), 0);
	ck_assert_int_eq(af_stream_readexactly(p.s, buf, 3), 0);
	pair_close(&p);
	return 0;
}

START_TEST(readexactly_waits_for_every_byte_and_a_short_end_of_file_keeps_them)
{
	ck_assert_int_eq(run_main(exactly_main, NULL), 0);
}
END_TEST

/* ---- writing ---------------------------------------------------------------------- */

static bool peer_has_data(struct pair *p)
{
	char c;

	return recv(p->fd[1], &c, 1, MSG_DONTWAIT | MSG_PEEK) == 1;
}

static int write_main(void *arg)
{
	struct pair p = { .wbuf = 8 };
	char buf[32] = "";

	(void)arg;
	pair_open(&p);
	ck_assert_int_eq(af_stream_write(p.s, "abc", 3), 3);
	ck_assert_int_eq(af_stream_write(p.s, "def", 3), 3);
	ck_assert(!peer_has_data(&p));            /* buffered, not written */
	ck_assert_int_eq(af_stream_drain(p.s), 0);
	ck_assert_int_eq(read(p.fd[1], buf, sizeof(buf)), 6);
	ck_assert_int_eq(memcmp(buf, "abcdef", 6), 0);
	/* Larger than the buffer: written as it goes, the tail buffered. */
	ck_assert_int_eq(af_stream_write(p.s, "0123456789abcdefghij", 20), 20);
	ck_assert_int_eq(af_stream_drain_timeout(p.s, LONG_NS), 0);
	ck_assert_int_eq(read(p.fd[1], buf, sizeof(buf)), 20);
	ck_assert_int_eq(memcmp(buf, "0123456789abcdefghij", 20), 0);
	ck_assert_int_eq(af_stream_drain(p.s), 0);  /* nothing left: no-op */
	pair_close(&p);
	return 0;
}

START_TEST(writes_are_buffered_until_drain_and_big_ones_drain_as_they_go)
{
	ck_assert_int_eq(run_main(write_main, NULL), 0);
}
END_TEST

static int epipe_main(void *arg)
{
	struct pair p = { .wbuf = 0 };

	(void)arg;
	pair_open(&p);
	ck_assert_int_eq(af_stream_write(p.s, "lost?", 5), 5);
	close(p.fd[1]);
	p.fd[1] = -1;
	/* A socket is drained with send(MSG_NOSIGNAL): an error, and no
	 * SIGPIPE to kill the (forked) test. */
	ck_assert_int_eq(af_stream_drain(p.s), -EPIPE);
	ck_assert_int_eq(af_stream_drain(p.s), -EPIPE);  /* still buffered */
	pair_close(&p);
	return 0;
}

START_TEST(a_drain_to_a_gone_peer_fails_with_epipe_not_sigpipe_and_keeps_the_bytes)
{
	signal(SIGPIPE, SIG_DFL);
	ck_assert_int_eq(run_main(epipe_main, NULL), 0);
}
END_TEST

/* ---- the other timeouts, and cancelled writes ---------------------------------------- */

static int until_timeout_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	char rec[64];

	(void)arg;
	pair_open(&p);
	send_str(&p, "GET / HTTP/1.0\r\nHo");
	ck_assert_int_eq(af_stream_readuntil_timeout(p.s, "\r\n\r\n", 4, rec, sizeof(rec), 5 * MS),
			 -ETIMEDOUT);
	send_str(&p, "st: x\r\n\r\n");
	ck_assert_int_eq(af_stream_readuntil_timeout(p.s, "\r\n\r\n", 4, rec, sizeof(rec), LONG_NS),
			 27);
	ck_assert_str_eq(rec, "GET / HTTP/1.0\r\nHost: x\r\n\r\n");
	pair_close(&p);
	return 0;
}

START_TEST(a_readuntil_that_times_out_mid_record_keeps_the_bytes)
{
	ck_assert_int_eq(run_main(until_timeout_main, NULL), 0);
}
END_TEST

static int read_timeout_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	char buf[8];

	(void)arg;
	pair_open(&p);
	ck_assert_int_eq(af_stream_read_timeout(p.s, buf, sizeof(buf), 5 * MS), -ETIMEDOUT);
	send_str(&p, "xy");
	ck_assert_int_eq(af_stream_read_timeout(p.s, buf, sizeof(buf), LONG_NS), 2);
	ck_assert_int_eq(memcmp(buf, "xy", 2), 0);
	pair_close(&p);
	return 0;
}

START_TEST(a_read_that_times_out_returns_etimedout_and_the_next_one_gets_the_data)
{
	ck_assert_int_eq(run_main(read_timeout_main, NULL), 0);
}
END_TEST

/* A peer that reads nothing until told to: the socket's send buffer is
 * made small, so a few KiB already make a drain wait. */
#define BULK (256 * 1024)

static void small_send_buffer(struct pair *p)
{
	int size = 4096;

	ck_assert_int_eq(setsockopt(p->fd[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), 0);
}

static char pattern(size_t i)
{
	return (char)('a' + i % 23);
}

static void fill_pattern(char *buf, size_t from, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = pattern(from + i);
}

struct sink {
	struct pair *p;
	size_t want, got;
	bool in_order;
};

/* Reads until @want bytes have come, checking that they are the pattern
 * in order: no byte lost, doubled or moved. */
static int sink_fn(void *arg)
{
	struct sink *k = arg;
	char buf[8192];

	k->in_order = true;
	while (k->got < k->want) {
		int n = af_read(k->p->fd[1], buf, sizeof(buf), AF_OFFSET_CURRENT);

		if (n <= 0)
			return n < 0 ? n : -ENODATA;
		for (int i = 0; i < n; i++)
			if (buf[i] != pattern(k->got + (size_t)i))
				k->in_order = false;
		k->got += (size_t)n;
	}
	return 0;
}

static void expect_delivered(struct pair *p, size_t n)
{
	struct sink k = { p, n, 0, false };
	struct af_task *t;
	int result = -1;

	ck_assert_int_eq(af_task_spawn(&t, sink_fn, &k), 0);
	ck_assert_int_eq(af_stream_drain_timeout(p->s, LONG_NS), 0);
	ck_assert_int_eq(af_task_join(t, &result), 0);
	ck_assert_int_eq(result, 0);
	ck_assert_uint_eq(k.got, n);
	ck_assert(k.in_order);
	ck_assert(!peer_has_data(p));
}

static int drain_timeout_main(void *arg)
{
	struct pair p = { .wbuf = BULK };
	static char bulk[BULK];

	(void)arg;
	pair_open(&p);
	small_send_buffer(&p);
	fill_pattern(bulk, 0, BULK);
	ck_assert_int_eq(af_stream_write(p.s, bulk, BULK), BULK);   /* buffered */
	ck_assert_int_eq(af_stream_drain_timeout(p.s, 5 * MS), -ETIMEDOUT);
	expect_delivered(&p, BULK);
	pair_close(&p);
	return 0;
}

START_TEST(a_drain_that_times_out_keeps_what_it_did_not_write)
{
	ck_assert_int_eq(run_main(drain_timeout_main, NULL), 0);
}
END_TEST

static int write_timeout_main(void *arg)
{
	struct pair p = { .wbuf = 4096 };
	static char bulk[BULK];
	int n;

	(void)arg;
	pair_open(&p);
	small_send_buffer(&p);
	fill_pattern(bulk, 0, BULK);
	/* The first 4096 bytes fit in the buffer at once, so the write
	 * accepts at least those and reports how many, not -ETIMEDOUT. */
	n = af_stream_write_timeout(p.s, bulk, BULK, 5 * MS);
	ck_assert_int_ge(n, 4096);
	ck_assert_int_lt(n, BULK);
	expect_delivered(&p, (size_t)n);
	pair_close(&p);
	return 0;
}

START_TEST(a_write_that_times_out_returns_what_it_accepted_and_delivers_all_of_that)
{
	ck_assert_int_eq(run_main(write_timeout_main, NULL), 0);
}
END_TEST

static int drainer_fn(void *arg)
{
	return af_stream_drain(arg);
}

static int drain_cancel_main(void *arg)
{
	struct pair p = { .wbuf = BULK };
	static char bulk[BULK];
	struct af_task *t;
	int result = 0;

	(void)arg;
	pair_open(&p);
	small_send_buffer(&p);
	fill_pattern(bulk, 0, BULK);
	ck_assert_int_eq(af_stream_write(p.s, bulk, BULK), BULK);
	ck_assert_int_eq(af_task_spawn(&t, drainer_fn, p.s), 0);
	ck_assert_int_eq(af_sleep_ms(5), 0);     /* it writes a little and waits */
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, &result), 0);
	ck_assert_int_eq(result, -ECANCELED);
	expect_delivered(&p, BULK);
	pair_close(&p);
	return 0;
}

START_TEST(a_cancelled_drain_keeps_what_it_did_not_write)
{
	ck_assert_int_eq(run_main(drain_cancel_main, NULL), 0);
}
END_TEST

struct exact {
	struct pair *p;
	char buf[8];
	int r;
};

static int exact_reader_fn(void *arg)
{
	struct exact *ex = arg;

	ex->r = af_stream_readexactly(ex->p->s, ex->buf, 5);
	return ex->r;
}

static int exactly_cancel_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	struct exact ex = { &p, "", 1 };
	struct af_task *t;
	char buf[8];

	(void)arg;
	pair_open(&p);
	send_str(&p, "abc");
	ck_assert_int_eq(af_task_spawn(&t, exact_reader_fn, &ex), 0);
	ck_assert_int_eq(af_sleep_ms(5), 0);
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(ex.r, -ECANCELED);
	send_str(&p, "de");
	ck_assert_int_eq(af_stream_readexactly(p.s, buf, 5), 5);
	ck_assert_int_eq(memcmp(buf, "abcde", 5), 0);
	pair_close(&p);
	return 0;
}

START_TEST(a_cancelled_readexactly_consumes_nothing)
{
	ck_assert_int_eq(run_main(exactly_cancel_main, NULL), 0);
}
END_TEST

/* ---- refused calls ---------------------------------------------------------------- */

static int busy_main(void *arg)
{
	struct pair p = { .rbuf = 0 };
	struct reader rd = { &p, "", 1 };
	struct af_task *t;
	char line[8];

	(void)arg;
	pair_open(&p);
	ck_assert_int_eq(af_task_spawn(&t, reader_fn, &rd), 0);
	ck_assert_int_eq(af_sleep_ms(1), 0);
	ck_assert_int_eq(af_stream_readline(p.s, line, sizeof(line)), -EBUSY);
	ck_assert_int_eq(af_stream_read(p.s, line, sizeof(line)), -EBUSY);
	send_str(&p, "x\n");
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(rd.r, 2);
	pair_close(&p);
	return 0;
}

START_TEST(a_second_reader_is_refused_with_ebusy)
{
	ck_assert_int_eq(run_main(busy_main, NULL), 0);
}
END_TEST

START_TEST(bad_arguments_are_refused_with_einval_or_ebadf)
{
	struct af_stream_opts big = { .read_buffer = ((size_t)1 << 30) + 1 };
	struct af_stream_opts reserved = { ._reserved = { 1, 0 } };
	struct af_stream *s;
	char buf[4];

	ck_assert_int_eq(af_stream_new(NULL, 0, NULL), -EINVAL);
	ck_assert_int_eq(af_stream_new(&s, -1, NULL), -EBADF);
	ck_assert_int_eq(af_stream_new(&s, 0, &big), -EINVAL);
	ck_assert_int_eq(af_stream_new(&s, 0, &reserved), -EINVAL);
	ck_assert_int_eq(af_stream_new(&s, 0, NULL), 0);
	ck_assert_int_eq(af_stream_fd(s), 0);
	ck_assert_int_eq(af_stream_readline(s, NULL, 4), -EINVAL);
	ck_assert_int_eq(af_stream_readline(s, buf, 0), -EINVAL);
	ck_assert_int_eq(af_stream_readuntil(s, "", 0, buf, 4), -EINVAL);
	ck_assert_int_eq(af_stream_readline(NULL, buf, 4), -EINVAL);
	ck_assert_int_eq(af_stream_write(NULL, "x", 1), -EINVAL);
	ck_assert_int_eq(af_stream_drain(NULL), -EINVAL);
	ck_assert_int_eq(af_stream_fd(NULL), -EINVAL);
	/* Outside a task the I/O underneath refuses. */
	ck_assert_int_eq(af_stream_readline(s, buf, 4), -EPERM);
	af_stream_free(s);
	af_stream_free(NULL);
}
END_TEST

static Suite *make_suite(void)
{
	Suite *s = suite_create("stream");
	TCase *tc;

	tc = tcase_create("readline");
	tcase_add_test(tc, readline_assembles_a_line_split_across_many_reads);
	tcase_add_test(tc, readline_returns_several_lines_of_one_read_one_at_a_time);
	tcase_add_test(tc, a_line_longer_than_the_callers_buffer_fails_with_emsgsize_and_consumes_nothing);
	tcase_add_test(tc, a_peer_that_never_sends_a_newline_fills_only_the_read_buffer);
	tcase_add_test(tc, a_readline_cancelled_mid_line_leaves_what_it_read_for_the_next_call);
	tcase_add_test(tc, a_readline_that_times_out_mid_line_keeps_the_bytes);
	tcase_add_test(tc, end_of_file_mid_line_returns_the_partial_line_then_zero);
	suite_add_tcase(s, tc);

	tc = tcase_create("records");
	tcase_add_test(tc, readuntil_finds_a_multibyte_delimiter_that_arrives_split);
	tcase_add_test(tc, readexactly_waits_for_every_byte_and_a_short_end_of_file_keeps_them);
	suite_add_tcase(s, tc);

	tc = tcase_create("write");
	tcase_add_test(tc, writes_are_buffered_until_drain_and_big_ones_drain_as_they_go);
	tcase_add_test(tc, a_drain_to_a_gone_peer_fails_with_epipe_not_sigpipe_and_keeps_the_bytes);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeouts and cancels");
	tcase_add_test(tc, a_readuntil_that_times_out_mid_record_keeps_the_bytes);
	tcase_add_test(tc, a_read_that_times_out_returns_etimedout_and_the_next_one_gets_the_data);
	tcase_add_test(tc, a_drain_that_times_out_keeps_what_it_did_not_write);
	tcase_add_test(tc, a_write_that_times_out_returns_what_it_accepted_and_delivers_all_of_that);
	tcase_add_test(tc, a_cancelled_drain_keeps_what_it_did_not_write);
	tcase_add_test(tc, a_cancelled_readexactly_consumes_nothing);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, a_second_reader_is_refused_with_ebusy);
	tcase_add_test(tc, bad_arguments_are_refused_with_einval_or_ebadf);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return run_suite(make_suite());
}

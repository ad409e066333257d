/* SPDX-License-Identifier: MIT */
/*
 * bench-echo: echo round trips per second over loopback TCP, libasyncflag
 * against libuv, side by side in one process.
 *
 * Two long-lived threads, the server thread and the client thread, each
 * run one event loop. In every run the client opens N connections to the
 * server on 127.0.0.1 (an ephemeral port) and each connection does
 * send-a-message, receive-the-echo round trips, one message in flight per
 * connection, until a deadline (--seconds) or a count (--roundtrips).
 *
 *   af  server: one task per connection looping af_recv / af_send, spawned
 *       by a task looping af_accept. Client: one task per connection
 *       looping af_send / af_recv (plus af_connect to set up).
 *   uv  the pattern of libuv's own echo benchmarks: a uv_tcp_t server with
 *       uv_read_start and, for every read, a uv_write of the bytes read;
 *       a client loop whose connections uv_write a message and collect its
 *       echo from their read callback, then write the next.
 * and with one connection only, two references without an event loop:
 *   blocking  each thread blocks in recv(2) and send(2): the kernel's own
 *       cost of a round trip, which both libraries add to.
 *   io_uring  each thread runs the same recv and send through a private
 *       ring set up like the loop's (io_uring_submit_and_wait): the kernel
 *       path af rides on, without the library around it.
 *
 * All paths run on the same two threads, with the same socket options
 * (TCP_NODELAY on every socket), message contents and buffer sizes, and
 * they take turns: round k runs af then uv for even k, uv then af for odd
 * k (with the references too, a balanced sequence of orders), for each
 * connection count. The figure is the per-round ratio af/uv of round
 * trips per second; its percentiles over rounds cancel the slow drifts of
 * a shared machine better than a ratio of medians.
 *
 * Why the client is an af loop too, not a blocking thread pool shared by
 * both servers: each library then runs both ends of the same design (one
 * loop thread per side, N connections multiplexed), which is how either
 * would be used; and on two CPUs a pool of 100 blocking client threads
 * would spend the round trip in the scheduler, the same for both servers,
 * pressing every ratio towards 1.
 *
 * The timed window starts once every connection is established and
 * accepted (the client waits for the server's word) and ends when the
 * last connection finishes its last round trip. Around it the client
 * thread reads both threads' CPU clocks, so "CPU time per round trip" is
 * exact, and the kernel's per-thread counters of voluntary context
 * switches (how often each loop blocked). System calls per round trip
 * come from one extra, untimed run per path with syscall tracepoints
 * open (they slow every system call on the machine, see bench-util.h).
 *
 * Every echoed byte is compared with what was sent; each message differs
 * from every other (connection, sequence number), so a stale, misdirected
 * or corrupted echo exits 1 at once, as does any I/O error or a run that
 * makes no progress for 10 s. The server's byte count must equal the
 * client's at the end of every run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>

#include "asyncflag.h"
#include "bench-util.h"

#if HAVE_LIBUV
#include <uv.h>
#endif

#define STALL_NS (10ull * 1000000000u)
/* What each server read asks for: libuv's suggested read size, used by
 * both servers so neither reads in smaller pieces than the other. */
#define ECHO_BUF ((size_t)65536)
#define MAX_CONNS 10000

enum impl { I_AF, I_UV, I_BLOCK, I_URING, I_COUNT };

static const char *const impl_name[I_COUNT] = { "af", "uv", "blocking", "io_uring" };

#if HAVE_LIBUV
static const bool have_uv = true;
#else
static const bool have_uv = false;
#endif

/* Which paths run at @conns connections. The references handle one
 * connection per thread, so they exist for one connection only. */
static bool impl_on(int m, size_t conns)
{
	return m == I_AF || (m == I_UV && have_uv) || ((m == I_BLOCK || m == I_URING) && conns == 1);
}

/* The io_uring reference's ring set-up: the one the loop got. */
static unsigned uring_setup;

/* A worker thread's failure ends the program: a benchmark that carried on
 * after a broken echo would report a number for something else. */
__attribute__((format(printf, 1, 2), noreturn)) static void fatal(const char *fmt, ...)
{
	va_list ap;

	fputs("bench-echo: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	/* Other threads are inside event loops we cannot unwind. */
	_exit(1);
}

/* ---- messages ---------------------------------------------------------------- */

/* splitmix64's finaliser: neighbouring (connection, sequence) pairs give
 * unrelated words. */
static uint64_t mix(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Message @seq of connection @conn: every 8-byte word depends on both, so
 * an echo of an older message or of another connection's differs in every
 * word. Cheap enough (one add per word) to run on every round trip. */
static void fill_msg(uint8_t *p, size_t n, size_t conn, uint64_t seq)
{
	uint64_t s = mix(((uint64_t)conn << 40) ^ seq), w;
	size_t k;

	for (k = 0; k + 8 <= n; k += 8) {
		w = s + k * 0x9e3779b97f4a7c15ull;
		memcpy(p + k, &w, 8);
	}
	if (k < n) {
		w = s + k * 0x9e3779b97f4a7c15ull;
		memcpy(p + k, &w, n - k);
	}
}

static void check_echo(const char *impl, size_t conn, uint64_t seq, const uint8_t *got,
		       const uint8_t *want, size_t n)
{
	size_t i;

	if (memcmp(got, want, n) == 0)
		return;
	for (i = 0; i < n && got[i] == want[i]; i++)
		;
	fatal("%s: echo mismatch on connection %zu, round trip %llu, byte %zu of %zu: "
	      "got 0x%02x, sent 0x%02x",
	      impl, conn, (unsigned long long)seq, i, n, got[i], want[i]);
}

static void set_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		fatal("setsockopt(TCP_NODELAY): %s", strerror(errno));
}

/* ---- threads ------------------------------------------------------------------- */

/* A long-lived thread that runs jobs one at a time. Both libraries' loops
 * for one role live on the same thread, so they share its CPU history. */
struct worker {
	const char *name;
	struct bench_worker bw;    /* its statfd: user and system ticks */
	clockid_t cpu;             /* its CPU-time clock, readable from any thread */
	int statusfd;              /* /proc/self/task/<tid>/status: context switches */
	void (*fn)(struct worker *w, void *arg);
	void *arg;
	struct af_loop *loop;      /* made, run and freed on this thread */
	struct bench_sysc sysc;    /* open only during counting runs */
#if HAVE_LIBUV
	uv_loop_t uv;
	bool uv_ok;
#endif
};

/* The jobs here take their worker, for its loop and counters. */
static void job_trampoline(void *arg)
{
	struct worker *w = arg;

	w->fn(w, w->arg);
}

static void worker_post(struct worker *w, void (*fn)(struct worker *, void *), void *arg)
{
	w->fn = fn;
	w->arg = arg;
	bench_worker_run(&w->bw, job_trampoline, w);
}

static void worker_wait(struct worker *w)
{
	bench_worker_wait(&w->bw);
}

static void worker_start(struct worker *w, const char *name)
{
	char path[64];

	memset(w, 0, sizeof(*w));
	w->name = name;
	w->sysc.fd = -1;
	if (bench_worker_start(&w->bw, -1) < 0)
		fatal("cannot start the %s thread", name);
	if (pthread_getcpuclockid(w->bw.th, &w->cpu) != 0)
		fatal("pthread_getcpuclockid failed");
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)w->bw.tid);
	w->statusfd = open(path, O_RDONLY | O_CLOEXEC);
}

static void worker_stop(struct worker *w)
{
	bench_worker_stop(&w->bw);
	if (w->statusfd >= 0)
		close(w->statusfd);
}

static void pin_to(pthread_t th, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(th, sizeof(set), &set);
}

/* ---- one run --------------------------------------------------------------------- */

/* What the kernel says about one thread at one instant. */
struct tsnap {
	uint64_t cpu_ns;
	uint64_t vcsw, ivcsw;      /* voluntary (it blocked) / involuntary switches */
	uint64_t uticks, sticks;   /* user / system time in clock ticks */
	uint64_t sysc;             /* system calls, in counting runs */
};

struct snap {
	uint64_t wall;
	struct tsnap t[2];         /* server, client */
};

struct run {
	enum impl impl;
	size_t conns;
	size_t msg_size;
	uint64_t roundtrips;       /* total for the run, or 0: run until deadline */
	uint64_t seconds_ns;
	bool count;                /* a counting run: syscall counters are open */
	bool corrupt;              /* --inject-mismatch: the server spoils one echo */
	struct worker *server, *client;

	sem_t listening;           /* server -> main: port is set */
	sem_t accepted;            /* server -> client: all connections accepted */
	int port;

	/* Client thread only until the run ends. */
	uint64_t deadline;
	size_t finished;
	uint64_t rts;
	uint64_t *conn_rts;        /* per connection, written when it finishes */
	uint64_t client_bytes;
	struct snap s0, s1;
	/* Server thread only until the run ends. */
	uint64_t server_bytes;
	size_t server_closed;
	bool corrupted;

	/* Read by the main thread's watchdog. relaxed: it only needs to see
	 * the number move, never data that goes with it. */
	_Atomic uint64_t progress;
	_Atomic bool started;
};

/* --inject-mismatch: flip one bit of the run's first echo, to prove that
 * the client's check catches it. */
static void maybe_corrupt(struct run *r, uint8_t *buf, size_t n)
{
	if (r->corrupt && !r->corrupted && n > 0) {
		buf[n - 1] ^= 0x10;
		r->corrupted = true;
	}
}

static uint64_t conn_quota(const struct run *r, size_t i)
{
	return r->roundtrips / r->conns + (i < r->roundtrips % r->conns ? 1 : 0);
}

/* Whether connection @i, having done @seq round trips, does another. */
static bool conn_more(const struct run *r, size_t i, uint64_t seq)
{
	if (r->roundtrips)
		return seq < conn_quota(r, i);
	return bench_now_ns() < r->deadline;
}

static uint64_t field_after(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);

	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static void tsnap_take(const struct worker *w, struct tsnap *t)
{
	struct timespec ts;
	char buf[2048], *p;
	ssize_t n;

	clock_gettime(w->cpu, &ts);
	t->cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	t->vcsw = t->ivcsw = t->uticks = t->sticks = 0;
	n = w->statusfd >= 0 ? pread(w->statusfd, buf, sizeof(buf) - 1, 0) : -1;
	if (n > 0) {
		buf[n] = '\0';
		t->vcsw = field_after(buf, "\nvoluntary_ctxt_switches:");
		t->ivcsw = field_after(buf, "\nnonvoluntary_ctxt_switches:");
	}
	n = w->bw.statfd >= 0 ? pread(w->bw.statfd, buf, sizeof(buf) - 1, 0) : -1;
	if (n > 0) {
		unsigned long long ut, st;

		buf[n] = '\0';
		/* "tid (comm) state ..." then fields 4 to 13, utime, stime. */
		p = strrchr(buf, ')');
		if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
				&ut, &st) == 2) {
			t->uticks = ut;
			t->sticks = st;
		}
	}
	/* The counter fd may be read from any thread; the server's count
	 * then includes none of our reads. */
	t->sysc = bench_sysc_read(&w->sysc);
}

/* Called on the client thread. */
static void snap_take(const struct run *r, struct snap *s, bool end)
{
	/* Wall clock innermost, so the /proc reads fall outside the window. */
	if (end)
		s->wall = bench_now_ns();
	tsnap_take(r->server, &s->t[0]);
	tsnap_take(r->client, &s->t[1]);
	if (!end)
		s->wall = bench_now_ns();
}

static void window_open(struct run *r)
{
	snap_take(r, &r->s0, false);
	r->deadline = r->s0.wall + r->seconds_ns;
	atomic_store_explicit(&r->started, true, memory_order_relaxed);
}

/* Connection @i has done its last round trip, @n in all; the last
 * connection to finish closes the window. */
static void conn_finished(struct run *r, size_t i, uint64_t n)
{
	r->conn_rts[i] = n;
	if (++r->finished == r->conns)
		snap_take(r, &r->s1, true);
}

static void rt_done(struct run *r)
{
	r->rts++;
	atomic_store_explicit(&r->progress, r->rts, memory_order_relaxed);
}

static int listen_socket(int *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, SOMAXCONN) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		int e = -errno;

		close(fd);
		return e;
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static void counters(struct worker *w, const struct run *r)
{
	if (r->count)
		bench_sysc_open(&w->sysc, "raw_syscalls/sys_enter");
}

/* ---- libasyncflag ---------------------------------------------------------------- */

struct af_server {
	struct run *run;
	int lfd;
};

struct af_sconn {
	struct run *run;
	int fd;
	uint8_t *buf;
};

static int af_echo_conn(void *arg)
{
	struct af_sconn *c = arg;
	struct run *r = c->run;

	int n;

	for (;;) {
		size_t off = 0;

		n = af_recv(c->fd, c->buf, ECHO_BUF, 0);
		if (n == 0)
			break;
		if (n < 0)
			fatal("af server: af_recv: %s", af_strerror(n));
		maybe_corrupt(r, c->buf, (size_t)n);
		while (off < (size_t)n) {
			int w = af_send(c->fd, c->buf + off, (size_t)n - off, 0);

			if (w <= 0)
				fatal("af server: af_send: %s", af_strerror(w < 0 ? w : -EIO));
			off += (size_t)w;
		}
		r->server_bytes += (uint64_t)n;
	}
	n = af_close(c->fd);
	if (n < 0)
		fatal("af server: af_close: %s", af_strerror(n));
	return 0;
}

static int af_server_main(void *arg)
{
	struct af_server *s = arg;
	struct run *r = s->run;
	struct af_task **tasks = calloc(r->conns, sizeof(*tasks));
	struct af_sconn *cs = calloc(r->conns, sizeof(*cs));

	if (!tasks || !cs)
		fatal("out of memory");
	for (size_t i = 0; i < r->conns; i++) {
		int fd = af_accept(s->lfd, NULL, NULL, SOCK_CLOEXEC), e;

		if (fd < 0)
			fatal("af server: af_accept: %s", af_strerror(fd));
		set_nodelay(fd);
		cs[i].run = r;
		cs[i].fd = fd;
		cs[i].buf = malloc(ECHO_BUF);
		if (!cs[i].buf)
			fatal("out of memory");
		e = af_task_spawn(&tasks[i], af_echo_conn, &cs[i]);
		if (e < 0)
			fatal("af server: af_task_spawn: %s", af_strerror(e));
	}
	close(s->lfd);
	sem_post(&r->accepted);
	for (size_t i = 0; i < r->conns; i++) {
		int e = af_task_join(tasks[i], NULL);

		if (e < 0)
			fatal("af server: af_task_join: %s", af_strerror(e));
		free(cs[i].buf);
	}
	free(cs);
	free(tasks);
	return 0;
}

static void af_make_loop(struct worker *w)
{
	int e;

	if (w->loop)
		return;
	e = af_loop_new(&w->loop, NULL);
	if (e < 0)
		fatal("%s thread: af_loop_new: %s", w->name, af_strerror(e));
}

static void af_run_loop(struct worker *w, af_task_fn fn, void *arg)
{
	int res = 0, e = af_loop_run(w->loop, fn, arg, &res);

	if (e < 0 || res < 0)
		fatal("%s thread: af_loop_run: %s", w->name, af_strerror(e < 0 ? e : res));
}

static void af_server_job(struct worker *w, void *arg)
{
	struct run *r = arg;
	struct af_server s = { .run = r };

	af_make_loop(w);
	counters(w, r);
	s.lfd = listen_socket(&r->port);
	if (s.lfd < 0)
		fatal("af server: listen on 127.0.0.1: %s", strerror(-s.lfd));
	sem_post(&r->listening);
	af_run_loop(w, af_server_main, &s);
}

struct af_cconn {
	struct run *run;
	size_t idx;
	int fd;
	uint8_t *tx, *rx;
};

static int af_client_conn(void *arg)
{
	struct af_cconn *c = arg;
	struct run *r = c->run;
	size_t n = r->msg_size;
	uint64_t seq;

	for (seq = 0; conn_more(r, c->idx, seq); seq++) {
		size_t off = 0;

		fill_msg(c->tx, n, c->idx, seq);
		while (off < n) {
			int k = af_send(c->fd, c->tx + off, n - off, 0);

			if (k <= 0)
				fatal("af client: af_send: %s", af_strerror(k < 0 ? k : -EIO));
			off += (size_t)k;
		}
		off = 0;
		while (off < n) {
			/* Room past the message, as the uv client has: a read
			 * that fills the buffer says nothing about what is
			 * left, so either library would read again to learn
			 * it (uv__read does, af's next af_recv does). */
			int k = af_recv(c->fd, c->rx + off, 2 * n - off, 0);

			if (k == 0)
				fatal("af client: the server closed connection %zu", c->idx);
			if (k < 0)
				fatal("af client: af_recv: %s", af_strerror(k));
			off += (size_t)k;
		}
		if (off > n)
			fatal("af client: connection %zu received %zu bytes for a %zu-byte message",
			      c->idx, off, n);
		check_echo("af", c->idx, seq, c->rx, c->tx, n);
		r->client_bytes += n;
		rt_done(r);
	}
	conn_finished(r, c->idx, seq);
	return 0;
}

static int af_client_main(void *arg)
{
	struct run *r = arg;
	struct af_task **tasks = calloc(r->conns, sizeof(*tasks));
	struct af_cconn *cs = calloc(r->conns, sizeof(*cs));
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)r->port) };

	if (!tasks || !cs)
		fatal("out of memory");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (size_t i = 0; i < r->conns; i++) {
		int e, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			fatal("af client: socket: %s", strerror(errno));
		e = af_connect(fd, (struct sockaddr *)&a, sizeof(a));
		if (e < 0)
			fatal("af client: af_connect: %s", af_strerror(e));
		set_nodelay(fd);
		cs[i].run = r;
		cs[i].idx = i;
		cs[i].fd = fd;
		cs[i].tx = malloc(r->msg_size);
		cs[i].rx = malloc(2 * r->msg_size);
		if (!cs[i].tx || !cs[i].rx)
			fatal("out of memory");
	}
	/* Untimed: the server is still accepting. Blocking the loop's thread
	 * here is harmless, nothing else runs on it yet. */
	while (sem_wait(&r->accepted) < 0 && errno == EINTR)
		;
	window_open(r);
	/* The tasks start when this one blocks in its first join. */
	for (size_t i = 0; i < r->conns; i++) {
		int e = af_task_spawn(&tasks[i], af_client_conn, &cs[i]);

		if (e < 0)
			fatal("af client: af_task_spawn: %s", af_strerror(e));
	}
	for (size_t i = 0; i < r->conns; i++) {
		int e = af_task_join(tasks[i], NULL);

		if (e < 0)
			fatal("af client: af_task_join: %s", af_strerror(e));
		e = af_close(cs[i].fd);
		if (e < 0)
			fatal("af client: af_close: %s", af_strerror(e));
		free(cs[i].tx);
		free(cs[i].rx);
	}
	free(cs);
	free(tasks);
	return 0;
}

static void af_client_job(struct worker *w, void *arg)
{
	struct run *r = arg;

	af_make_loop(w);
	counters(w, r);
	af_run_loop(w, af_client_main, r);
}

/* ---- libuv ----------------------------------------------------------------------- */

#if HAVE_LIBUV

/* libuv's echo server mallocs a 64 KiB buffer per read and a write
 * request per write. We give it the better pattern, a per-connection free
 * list of (request, buffer) slots, so the baseline does not pay the
 * allocator on every round trip and af is compared with libuv at its
 * best. A connection needs one slot at a time unless a write stays queued
 * while the next read arrives. */
struct uv_slot {
	uv_write_t req;
	struct uv_slot *next;
	struct uv_sconn *conn;
	char buf[];
};

struct uv_sconn {
	uv_tcp_t h;
	struct run *run;
	struct uv_slot *free;
};

struct uv_server {
	uv_tcp_t listener;
	struct run *run;
	size_t accepted;
};

#define UV_CHECK(what, e)                                                        \
	do {                                                                       \
		int e_ = (e);                                                      \
		if (e_ < 0)                                                        \
			fatal("uv: %s: %s", what, uv_strerror(e_));                \
	} while (0)

static struct uv_slot *slot_of(const char *base)
{
	return (struct uv_slot *)(void *)(base - offsetof(struct uv_slot, buf));
}

static void uv_slot_put(struct uv_sconn *c, struct uv_slot *s)
{
	s->next = c->free;
	c->free = s;
}

static void uv_srv_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct uv_sconn *c = (struct uv_sconn *)h;
	struct uv_slot *s = c->free;

	(void)suggested;
	if (s) {
		c->free = s->next;
	} else {
		s = malloc(sizeof(*s) + ECHO_BUF);
		if (!s)
			fatal("out of memory");
		s->conn = c;
	}
	*buf = uv_buf_init(s->buf, (unsigned)ECHO_BUF);
}

static void uv_srv_closed(uv_handle_t *h)
{
	struct uv_sconn *c = (struct uv_sconn *)h;

	while (c->free) {
		struct uv_slot *s = c->free;

		c->free = s->next;
		free(s);
	}
	c->run->server_closed++;
	free(c);
}

static void uv_srv_written(uv_write_t *req, int status)
{
	struct uv_slot *s = (struct uv_slot *)req;

	UV_CHECK("server write", status);
	uv_slot_put(s->conn, s);
}

static void uv_srv_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct uv_sconn *c = (struct uv_sconn *)st;
	struct uv_slot *s = buf->base ? slot_of(buf->base) : NULL;

	if (nread > 0) {
		uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);

		maybe_corrupt(c->run, (uint8_t *)buf->base, (size_t)nread);
		c->run->server_bytes += (uint64_t)nread;
		UV_CHECK("server uv_write", uv_write(&s->req, st, &out, 1, uv_srv_written));
		return;
	}
	if (s)
		uv_slot_put(c, s);
	if (nread == UV_EOF)
		uv_close((uv_handle_t *)st, uv_srv_closed);
	else if (nread < 0)
		fatal("uv server: read: %s", uv_strerror((int)nread));
}

static void uv_listener_closed(uv_handle_t *h)
{
	(void)h;
}

static void uv_srv_connection(uv_stream_t *ls, int status)
{
	struct uv_server *srv = (struct uv_server *)ls;
	struct uv_sconn *c;

	UV_CHECK("listen callback", status);
	c = calloc(1, sizeof(*c));
	if (!c)
		fatal("out of memory");
	c->run = srv->run;
	UV_CHECK("uv_tcp_init", uv_tcp_init(ls->loop, &c->h));
	UV_CHECK("uv_accept", uv_accept(ls, (uv_stream_t *)&c->h));
	UV_CHECK("uv_tcp_nodelay", uv_tcp_nodelay(&c->h, 1));
	UV_CHECK("uv_read_start", uv_read_start((uv_stream_t *)&c->h, uv_srv_alloc, uv_srv_read));
	if (++srv->accepted == srv->run->conns) {
		uv_close((uv_handle_t *)&srv->listener, uv_listener_closed);
		sem_post(&srv->run->accepted);
	}
}

static void uv_make_loop(struct worker *w)
{
	if (w->uv_ok)
		return;
	UV_CHECK("uv_loop_init", uv_loop_init(&w->uv));
	w->uv_ok = true;
}

static void uv_server_job(struct worker *w, void *arg)
{
	struct run *r = arg;
	struct uv_server srv = { .run = r };
	struct sockaddr_in a;
	struct sockaddr_storage name;
	int len = sizeof(name);

	uv_make_loop(w);
	counters(w, r);
	UV_CHECK("uv_ip4_addr", uv_ip4_addr("127.0.0.1", 0, &a));
	UV_CHECK("uv_tcp_init", uv_tcp_init(&w->uv, &srv.listener));
	UV_CHECK("uv_tcp_bind", uv_tcp_bind(&srv.listener, (const struct sockaddr *)&a, 0));
	UV_CHECK("uv_listen", uv_listen((uv_stream_t *)&srv.listener, SOMAXCONN, uv_srv_connection));
	UV_CHECK("uv_tcp_getsockname",
		 uv_tcp_getsockname(&srv.listener, (struct sockaddr *)&name, &len));
	r->port = ntohs(((struct sockaddr_in *)&name)->sin_port);
	sem_post(&r->listening);
	UV_CHECK("uv_run", uv_run(&w->uv, UV_RUN_DEFAULT));
	if (r->server_closed != r->conns)
		fatal("uv server: the loop ended with %zu of %zu connections closed",
		      r->server_closed, r->conns);
}

struct uv_cconn {
	uv_tcp_t h;
	uv_connect_t creq;
	uv_write_t wreq;
	struct run *run;
	size_t idx;
	uint64_t seq;              /* the message in flight, or the next one */
	size_t got;                /* its echo bytes so far */
	bool writing;              /* the write request is in use */
	bool echoed;               /* no message waits for its echo */
	uint8_t *tx, *rx;
};

struct uv_client {
	struct run *run;
	struct uv_cconn *cs;
	size_t connected;
};

static void uv_cli_closed(uv_handle_t *h)
{
	(void)h;
}

static void uv_cli_written(uv_write_t *req, int status);

/* Send the next message once the last one's echo is in and its write
 * request is free again (its callback can come after the echo). */
static void uv_cli_next(struct uv_cconn *c)
{
	struct run *r = c->run;
	uv_buf_t b;

	if (c->writing || !c->echoed)
		return;
	if (!conn_more(r, c->idx, c->seq)) {
		conn_finished(r, c->idx, c->seq);
		uv_close((uv_handle_t *)&c->h, uv_cli_closed);
		return;
	}
	fill_msg(c->tx, r->msg_size, c->idx, c->seq);
	b = uv_buf_init((char *)c->tx, (unsigned)r->msg_size);
	c->writing = true;
	c->echoed = false;
	UV_CHECK("client uv_write", uv_write(&c->wreq, (uv_stream_t *)&c->h, &b, 1,
					     uv_cli_written));
}

static void uv_cli_written(uv_write_t *req, int status)
{
	struct uv_cconn *c = (struct uv_cconn *)((char *)req - offsetof(struct uv_cconn, wreq));

	UV_CHECK("client write", status);
	c->writing = false;
	uv_cli_next(c);
}

static void uv_cli_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct uv_cconn *c = (struct uv_cconn *)h;

	(void)suggested;
	/* Room past the message: libuv treats an empty buffer as ENOBUFS,
	 * and bytes beyond it would be an echo of something never sent. */
	*buf = uv_buf_init((char *)c->rx + c->got, (unsigned)(2 * c->run->msg_size - c->got));
}

static void uv_cli_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct uv_cconn *c = (struct uv_cconn *)st;
	struct run *r = c->run;

	(void)buf;
	if (nread == UV_EOF)
		fatal("uv client: the server closed connection %zu", c->idx);
	if (nread < 0)
		fatal("uv client: read: %s", uv_strerror((int)nread));
	c->got += (size_t)nread;
	if (c->got > r->msg_size || (c->got && c->echoed))
		fatal("uv client: connection %zu received %zu bytes for a %zu-byte message",
		      c->idx, c->got, r->msg_size);
	if (c->got < r->msg_size)
		return;
	check_echo("uv", c->idx, c->seq, c->rx, c->tx, r->msg_size);
	r->client_bytes += r->msg_size;
	rt_done(r);
	c->got = 0;
	c->seq++;
	c->echoed = true;
	uv_cli_next(c);
}

static void uv_cli_connected(uv_connect_t *req, int status)
{
	struct uv_cconn *c = req->data;
	struct uv_client *cl = c->h.data;
	struct run *r = c->run;

	UV_CHECK("uv_tcp_connect", status);
	UV_CHECK("uv_tcp_nodelay", uv_tcp_nodelay(&c->h, 1));
	if (++cl->connected < r->conns)
		return;
	/* Untimed: wait until the server has accepted them all. */
	while (sem_wait(&r->accepted) < 0 && errno == EINTR)
		;
	window_open(r);
	for (size_t i = 0; i < r->conns; i++) {
		struct uv_cconn *k = &cl->cs[i];

		UV_CHECK("uv_read_start", uv_read_start((uv_stream_t *)&k->h, uv_cli_alloc,
							uv_cli_read));
		uv_cli_next(k);
	}
}

static void uv_client_job(struct worker *w, void *arg)
{
	struct run *r = arg;
	struct uv_client cl = { .run = r };
	struct sockaddr_in a;

	uv_make_loop(w);
	counters(w, r);
	cl.cs = calloc(r->conns, sizeof(*cl.cs));
	if (!cl.cs)
		fatal("out of memory");
	UV_CHECK("uv_ip4_addr", uv_ip4_addr("127.0.0.1", r->port, &a));
	for (size_t i = 0; i < r->conns; i++) {
		struct uv_cconn *c = &cl.cs[i];

		c->run = r;
		c->idx = i;
		c->echoed = true;
		c->tx = malloc(r->msg_size);
		c->rx = malloc(2 * r->msg_size);
		if (!c->tx || !c->rx)
			fatal("out of memory");
		UV_CHECK("uv_tcp_init", uv_tcp_init(&w->uv, &c->h));
		c->h.data = &cl;
		c->creq.data = c;
		UV_CHECK("uv_tcp_connect", uv_tcp_connect(&c->creq, &c->h,
							  (const struct sockaddr *)&a,
							  uv_cli_connected));
	}
	UV_CHECK("uv_run", uv_run(&w->uv, UV_RUN_DEFAULT));
	for (size_t i = 0; i < r->conns; i++) {
		free(cl.cs[i].tx);
		free(cl.cs[i].rx);
	}
	free(cl.cs);
}

static void uv_free_job(struct worker *w, void *arg)
{
	(void)arg;
	if (w->uv_ok && uv_loop_close(&w->uv) != 0)
		fatal("%s thread: uv_loop_close: handles left open", w->name);
	w->uv_ok = false;
}

#endif /* HAVE_LIBUV */

static void af_free_job(struct worker *w, void *arg)
{
	(void)arg;
	af_loop_free(w->loop);
	w->loop = NULL;
}

static void close_counters_job(struct worker *w, void *arg)
{
	(void)arg;
	bench_sysc_close(&w->sysc);
}

/* ---- references without a loop (one connection) ---------------------------------------- */

/* One thread, one socket: plain blocking calls, or the same calls through
 * a ring, waited for one at a time. */
struct rio {
	bool uring;
	struct io_uring ring;
	const char *who;
};

static void rio_init(struct rio *io, const struct run *r, const char *side)
{
	io->uring = r->impl == I_URING;
	io->who = side;
	if (io->uring) {
		struct io_uring_params p;
		int e;

		memset(&p, 0, sizeof(p));
		p.flags = uring_setup;
		/* Made on the thread that submits: SINGLE_ISSUER binds it. */
		e = io_uring_queue_init_params(4, &io->ring, &p);
		if (e < 0)
			fatal("io_uring %s: io_uring_queue_init: %s", side, strerror(-e));
	}
}

static void rio_exit(struct rio *io)
{
	if (io->uring)
		io_uring_queue_exit(&io->ring);
}

static size_t rio_xfer(struct rio *io, int fd, void *buf, size_t n, bool send_)
{
	ssize_t k;

	if (io->uring) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&io->ring);
		struct io_uring_cqe *cqe;
		int e;

		if (send_)
			io_uring_prep_send(sqe, fd, buf, n, MSG_NOSIGNAL);
		else
			io_uring_prep_recv(sqe, fd, buf, n, 0);
		e = io_uring_submit_and_wait(&io->ring, 1);
		if (e >= 0)
			e = io_uring_peek_cqe(&io->ring, &cqe);
		if (e < 0)
			fatal("io_uring %s: io_uring_submit_and_wait: %s", io->who, strerror(-e));
		k = cqe->res;
		io_uring_cqe_seen(&io->ring, cqe);
		errno = k < 0 ? (int)-k : 0;
	} else {
		k = send_ ? send(fd, buf, n, MSG_NOSIGNAL) : recv(fd, buf, n, 0);
	}
	if (k < 0)
		fatal("%s %s: %s: %s", impl_name[io->uring ? I_URING : I_BLOCK], io->who,
		      send_ ? "send" : "recv", strerror(errno));
	return (size_t)k;
}

static void ref_server_job(struct worker *w, void *arg)
{
	struct run *r = arg;
	uint8_t *buf = malloc(ECHO_BUF);
	struct rio io;
	int lfd, fd;

	counters(w, r);
	if (!buf)
		fatal("out of memory");
	rio_init(&io, r, "server");
	lfd = listen_socket(&r->port);
	if (lfd < 0)
		fatal("%s server: listen on 127.0.0.1: %s", impl_name[r->impl], strerror(-lfd));
	sem_post(&r->listening);
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		fatal("%s server: accept: %s", impl_name[r->impl], strerror(errno));
	close(lfd);
	set_nodelay(fd);
	sem_post(&r->accepted);
	for (;;) {
		size_t n = rio_xfer(&io, fd, buf, ECHO_BUF, false), off = 0;

		if (n == 0)
			break;
		maybe_corrupt(r, buf, n);
		while (off < n)
			off += rio_xfer(&io, fd, buf + off, n - off, true);
		r->server_bytes += n;
	}
	close(fd);
	rio_exit(&io);
	free(buf);
}

static void ref_client_job(struct worker *w, void *arg)
{
	struct run *r = arg;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)r->port) };
	size_t n = r->msg_size;
	uint8_t *tx = malloc(n), *rx = malloc(n);
	struct rio io;
	uint64_t seq;
	int fd;

	counters(w, r);
	if (!tx || !rx)
		fatal("out of memory");
	rio_init(&io, r, "client");
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
		fatal("%s client: connect: %s", impl_name[r->impl], strerror(errno));
	set_nodelay(fd);
	while (sem_wait(&r->accepted) < 0 && errno == EINTR)
		;
	window_open(r);
	for (seq = 0; conn_more(r, 0, seq); seq++) {
		size_t off = 0;

		fill_msg(tx, n, 0, seq);
		while (off < n)
			off += rio_xfer(&io, fd, tx + off, n - off, true);
		for (off = 0; off < n;) {
			size_t k = rio_xfer(&io, fd, rx + off, n - off, false);

			if (k == 0)
				fatal("%s client: the server closed the connection", impl_name[r->impl]);
			off += k;
		}
		check_echo(impl_name[r->impl], 0, seq, rx, tx, n);
		r->client_bytes += n;
		rt_done(r);
	}
	conn_finished(r, 0, seq);
	close(fd);
	rio_exit(&io);
	free(tx);
	free(rx);
}

/* ---- driving runs ------------------------------------------------------------------ */

/* One run's figures. */
struct sample {
	double rt_s;                /* round trips per second */
	double cpu_ns[2];           /* CPU ns per round trip: server, client */
	double vcsw[2];             /* voluntary context switches per round trip */
	double ivcsw[2];
	uint64_t uticks[2], sticks[2];
	double sysc[2];             /* counting runs: system calls per round trip */
	double fair;                /* the slowest connection's round trips / the mean */
	uint64_t rts;
};

/* Wait for a job, complaining if the run stops moving. */
static void watch(struct worker *w, struct run *r)
{
	uint64_t last = atomic_load_explicit(&r->progress, memory_order_relaxed);
	uint64_t since = bench_now_ns();

	for (;;) {
		struct timespec ts;
		uint64_t now, p;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		if (sem_timedwait(&w->bw.done, &ts) == 0)
			return;
		now = bench_now_ns();
		p = atomic_load_explicit(&r->progress, memory_order_relaxed);
		if (p != last) {
			last = p;
			since = now;
		} else if (now - since > STALL_NS) {
			fatal("%s, %zu connections: no progress for 10 s on the %s thread "
			      "(%s; %llu round trips done): lost wake-up or stuck I/O",
			      impl_name[r->impl], r->conns, w->name,
			      atomic_load_explicit(&r->started, memory_order_relaxed)
				      ? "while timing"
				      : "while connecting",
			      (unsigned long long)p);
		}
	}
}

static int inject_mismatch = -1; /* --inject-mismatch: the impl whose server spoils an echo */

static void run_once(struct worker *srv, struct worker *cli, enum impl impl, size_t conns,
		     size_t msg_size, uint64_t roundtrips, uint64_t seconds_ns, bool count,
		     struct sample *out)
{
	struct run r;
	void (*sjob)(struct worker *, void *) = af_server_job;
	void (*cjob)(struct worker *, void *) = af_client_job;

	memset(&r, 0, sizeof(r));
	r.impl = impl;
	r.conns = conns;
	r.msg_size = msg_size;
	r.roundtrips = roundtrips;
	r.seconds_ns = seconds_ns;
	r.count = count;
	r.corrupt = (int)impl == inject_mismatch;
	r.server = srv;
	r.client = cli;
	r.conn_rts = calloc(conns, sizeof(*r.conn_rts));
	if (!r.conn_rts)
		fatal("out of memory");
	sem_init(&r.listening, 0, 0);
	sem_init(&r.accepted, 0, 0);
#if HAVE_LIBUV
	if (impl == I_UV) {
		sjob = uv_server_job;
		cjob = uv_client_job;
	}
#endif
	if (impl == I_BLOCK || impl == I_URING) {
		sjob = ref_server_job;
		cjob = ref_client_job;
	}
	worker_post(srv, sjob, &r);
	while (sem_wait(&r.listening) < 0 && errno == EINTR)
		;
	worker_post(cli, cjob, &r);
	watch(cli, &r);
	watch(srv, &r);
	if (count) {
		worker_post(srv, close_counters_job, NULL);
		worker_wait(srv);
		worker_post(cli, close_counters_job, NULL);
		worker_wait(cli);
	}
	sem_destroy(&r.listening);
	sem_destroy(&r.accepted);

	if (r.server_bytes != r.client_bytes || r.client_bytes != r.rts * msg_size)
		fatal("%s, %zu connections: the server echoed %llu bytes, the client sent and "
		      "got back %llu in %llu round trips of %zu bytes",
		      impl_name[impl], conns, (unsigned long long)r.server_bytes,
		      (unsigned long long)r.client_bytes, (unsigned long long)r.rts, msg_size);
	if (roundtrips && r.rts != roundtrips)
		fatal("%s: %llu round trips done, %llu asked", impl_name[impl],
		      (unsigned long long)r.rts, (unsigned long long)roundtrips);

	memset(out, 0, sizeof(*out));
	out->rts = r.rts;
	{
		uint64_t lo = UINT64_MAX;

		for (size_t i = 0; i < conns; i++)
			lo = r.conn_rts[i] < lo ? r.conn_rts[i] : lo;
		out->fair = r.rts ? (double)lo * (double)conns / (double)r.rts : 0;
	}
	free(r.conn_rts);
	if (r.rts == 0 || r.s1.wall <= r.s0.wall)
		return;
	out->rt_s = (double)r.rts * 1e9 / (double)(r.s1.wall - r.s0.wall);
	for (int t = 0; t < 2; t++) {
		const struct tsnap *a = &r.s0.t[t], *b = &r.s1.t[t];
		double n = (double)r.rts;

		out->cpu_ns[t] = (double)(b->cpu_ns - a->cpu_ns) / n;
		out->vcsw[t] = (double)(b->vcsw - a->vcsw) / n;
		out->ivcsw[t] = (double)(b->ivcsw - a->ivcsw) / n;
		out->uticks[t] = b->uticks - a->uticks;
		out->sticks[t] = b->sticks - a->sticks;
		/* The client's own counter sees its two snapshots' reads. */
		out->sysc[t] = (double)(t == 1 ? bench_sysc_delta(&cli->sysc, a->sysc, b->sysc)
					       : b->sysc - a->sysc) / n;
	}
}

/* ---- options ------------------------------------------------------------------------- */

enum { PIN_NONE, PIN_CROSS, PIN_SAME };

struct opts {
	size_t conns[16];
	size_t nconns;
	uint64_t roundtrips;        /* per run, all connections together; 0: by time */
	double seconds;
	uint64_t msg_size;
	uint64_t rounds;
	bool json, count;
	int pin;                    /* PIN_* */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: bench-echo [--conns N[,N...]] [--seconds S | --roundtrips N]\n"
		"                  [--msg-size BYTES] [--rounds N] [--pin | --pin-same] [--no-count]\n"
		"                  [--json]\n"
		"  --conns LIST     connection counts, comma-separated (default 1,100)\n"
		"  --seconds S      length of each timed run, per path and connection\n"
		"                   count (default 0.25; decimals allowed)\n"
		"  --roundtrips N   instead: round trips per run, all connections together\n"
		"  --msg-size B     bytes per message, at most 65536 (default 64)\n"
		"  --rounds N       timed rounds, libraries alternating (default 20)\n"
		"  --pin            pin the server thread to CPU 0 and the client thread to CPU 1\n"
		"  --pin-same       pin both threads to CPU 0 (no cross-CPU wake-ups)\n"
		"  --no-count       skip the extra run that counts system calls\n"
		"  --json           machine-readable output on stdout\n"
		"  --inject-mismatch PATH  af, uv, blocking or io_uring: that path's server\n"
		"                   flips one bit of an echo, and the run must fail (a test\n"
		"                   of the byte check)\n");

}

static bool parse_conns(const char *s, struct opts *o)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	o->nconns = 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (o->nconns == sizeof(o->conns) / sizeof(o->conns[0])) {
			fprintf(stderr, "--conns: at most %zu counts\n", o->nconns);
			return false;
		}
		if (!bench_parse_u64("--conns", t, 1, MAX_CONNS, &v))
			return false;
		o->conns[o->nconns++] = (size_t)v;
	}
	if (!o->nconns) {
		fprintf(stderr, "--conns: expected a list of counts\n");
		return false;
	}
	return true;
}

static bool parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.001 && v <= 3600)) {
		fprintf(stderr, "--seconds: expected a number of seconds in [0.001, 3600], got \"%s\"\n",
			s);
		return false;
	}
	*out = v;
	return true;
}

static int parse(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "conns", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "roundtrips", required_argument, NULL, 'n' },
		{ "msg-size", required_argument, NULL, 'm' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "pin", no_argument, NULL, 'p' },
		{ "pin-same", no_argument, NULL, 'P' },
		{ "no-count", no_argument, NULL, 'C' },
		{ "json", no_argument, NULL, 'j' },
		{ "inject-mismatch", required_argument, NULL, 'I' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->conns[0] = 1;
	o->conns[1] = 100;
	o->nconns = 2;
	o->seconds = 0.25;
	o->msg_size = 64;
	o->rounds = 20;
	o->count = true;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (!parse_conns(optarg, o))
				return -1;
			break;
		case 's':
			if (!parse_seconds(optarg, &o->seconds))
				return -1;
			o->roundtrips = 0;
			break;
		case 'n':
			if (!bench_parse_u64("--roundtrips", optarg, 1, 1000000000, &o->roundtrips))
				return -1;
			break;
		case 'm':
			/* The af and reference clients send a whole message
			 * before they read its echo (libuv's reads all along).
			 * Past what the socket buffers hold that stalls the
			 * echo, and would measure buffer sizes, not the
			 * libraries; 64 KiB, one server read, is safe. */
			if (!bench_parse_u64("--msg-size", optarg, 1, ECHO_BUF, &o->msg_size))
				return -1;
			break;
		case 'r':
			if (!bench_parse_u64("--rounds", optarg, 1, 100000, &o->rounds))
				return -1;
			break;
		case 'p':
			o->pin = PIN_CROSS;
			break;
		case 'P':
			o->pin = PIN_SAME;
			break;
		case 'C':
			o->count = false;
			break;
		case 'j':
			o->json = true;
			break;
		case 'I':
			for (int m = 0; m < I_COUNT; m++)
				if (!strcmp(optarg, impl_name[m]) && (m != I_UV || have_uv))
					inject_mismatch = m;
			if (inject_mismatch < 0) {
				fprintf(stderr, "--inject-mismatch: expected af, blocking, io_uring%s\n",
					have_uv ? " or uv" : " (uv: built without libuv)");
				return -1;
			}
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* ---- results ------------------------------------------------------------------------ */

struct impl_res {
	struct sample *s;          /* per round */
	struct sample counted;     /* the counting run */
	bool have_count;
	struct bench_pct rt_s, cpu_ns[2], cpu_total, vcsw[2], fair;
	double sys_share[2];       /* system time / CPU time, all rounds together */
};

struct conn_res {
	size_t conns;
	struct impl_res im[I_COUNT];
	/* Per round, against each baseline m: af rt/s / m's rt/s, and af CPU
	 * per round trip / m's. [I_AF] is unused. */
	struct bench_pct ratio[I_COUNT];
	struct bench_pct cpu_ratio[I_COUNT];
};

static void summarise(struct impl_res *ir, size_t rounds)
{
	double *v = calloc(rounds, sizeof(*v));
	uint64_t ut[2] = { 0, 0 }, st[2] = { 0, 0 };

	if (!v)
		fatal("out of memory");
	for (size_t k = 0; k < rounds; k++)
		v[k] = ir->s[k].rt_s;
	ir->rt_s = bench_pct_of(v, rounds);
	for (int t = 0; t < 2; t++) {
		for (size_t k = 0; k < rounds; k++)
			v[k] = ir->s[k].cpu_ns[t];
		ir->cpu_ns[t] = bench_pct_of(v, rounds);
		for (size_t k = 0; k < rounds; k++)
			v[k] = ir->s[k].vcsw[t];
		ir->vcsw[t] = bench_pct_of(v, rounds);
		for (size_t k = 0; k < rounds; k++) {
			ut[t] += ir->s[k].uticks[t];
			st[t] += ir->s[k].sticks[t];
		}
		ir->sys_share[t] = ut[t] + st[t] ? (double)st[t] / (double)(ut[t] + st[t]) : NAN;
	}
	for (size_t k = 0; k < rounds; k++)
		v[k] = ir->s[k].cpu_ns[0] + ir->s[k].cpu_ns[1];
	ir->cpu_total = bench_pct_of(v, rounds);
	for (size_t k = 0; k < rounds; k++)
		v[k] = ir->s[k].fair;
	ir->fair = bench_pct_of(v, rounds);
	free(v);
}

static void features_str(unsigned f, char *buf, size_t len)
{
	unsigned ring = AF_FEATURE_COOP_TASKRUN | AF_FEATURE_SINGLE_ISSUER | AF_FEATURE_DEFER_TASKRUN;

	bool epoll = f & AF_FEATURE_BACKEND_EPOLL;

	snprintf(buf, len, "%s%s%s%s%s%s", epoll ? "epoll backend, " : "io_uring backend, ",
		 epoll || (f & ring) ? "" : "plain ring, ",
		 (f & AF_FEATURE_COOP_TASKRUN) ? "COOP_TASKRUN " : "",
		 (f & AF_FEATURE_SINGLE_ISSUER) ? "SINGLE_ISSUER " : "",
		 (f & AF_FEATURE_DEFER_TASKRUN) ? "DEFER_TASKRUN " : "",
		 (f & AF_FEATURE_ASM_SWITCH) ? "ASM_SWITCH" : "UCONTEXT_SWITCH");
}

static const char *uv_version_str(void)
{
#if HAVE_LIBUV
	return uv_version_string();
#else
	return NULL;
#endif
}

/* The line the benchmark is run for: af on this backend against libuv,
 * throughput and cost, each per-round ratio's median with the middle 80%
 * of rounds around it. "Not slower" means the median round trips/s ratio
 * is at least 1; the spread says how far to trust it. */
static void print_verdict(const struct opts *o, const char *feat, const struct conn_res *cr)
{
	if (!have_uv)
		return;
	printf("\naf (%.*s) against libuv, per-round ratios, p50 (p10-p90) of %llu rounds:\n",
	       (int)strcspn(feat, ","), feat, (unsigned long long)o->rounds);
	for (size_t i = 0; i < o->nconns; i++) {
		const struct bench_pct *rt = &cr[i].ratio[I_UV], *cpu = &cr[i].cpu_ratio[I_UV];

		printf("  %5zu connection%s: round trips/s %.2fx (%.2f-%.2f), CPU per round trip "
		       "%.2fx (%.2f-%.2f): %s\n",
		       cr[i].conns, cr[i].conns == 1 ? " " : "s", rt->p50, rt->p10, rt->p90, cpu->p50,
		       cpu->p10, cpu->p90, rt->p50 >= 1 ? "not slower" : "SLOWER");
	}
}

static void print_text(const struct opts *o, const char *feat, const char *why,
		       const struct conn_res *cr)
{
	const char *uvv = uv_version_str();

	printf("bench-echo: libasyncflag %s (%s), ", af_version(), feat);
	if (uvv)
		printf("libuv %s\n", uvv);
	else
		printf("libuv baseline not built (libuv was not found when configuring)\n");
	printf("echo over loopback TCP, %llu-byte messages, one in flight per connection;\n",
	       (unsigned long long)o->msg_size);
	if (o->roundtrips)
		printf("%llu rounds of %llu round trips per path", (unsigned long long)o->rounds,
		       (unsigned long long)o->roundtrips);
	else
		printf("%llu rounds of %g s per path", (unsigned long long)o->rounds, o->seconds);
	printf(", the order changing every round%s\n",
	       o->pin == PIN_CROSS ? "; server thread on CPU 0, client thread on CPU 1"
	       : o->pin == PIN_SAME ? "; server and client threads both on CPU 0"
				    : "");
	for (size_t i = 0; i < o->nconns; i++) {
		const struct conn_res *c = &cr[i];

		printf("\n%zu connection%s\n", c->conns, c->conns == 1 ? "" : "s");
		printf("           %31s  %26s  %13s  %13s\n", "round trips/s over rounds",
		       "CPU ns/round trip (p50)", "blocked/rt", "syscalls/rt");
		printf("           %9s %10s %10s  %8s %8s %8s  %6s %6s  %6s %6s\n", "min", "p50", "max",
		       "server", "client", "total", "server", "client", "server", "client");
		for (int m = 0; m < I_COUNT; m++) {
			const struct impl_res *ir = &c->im[m];

			if (!impl_on(m, c->conns))
				continue;
			printf("  %-8s %9.0f %10.0f %10.0f  %8.0f %8.0f %8.0f  %6.2f %6.2f", impl_name[m],
			       ir->rt_s.min, ir->rt_s.p50, ir->rt_s.max, ir->cpu_ns[0].p50,
			       ir->cpu_ns[1].p50, ir->cpu_total.p50, ir->vcsw[0].p50, ir->vcsw[1].p50);
			if (ir->have_count)
				printf("  %6.2f %6.2f\n", ir->counted.sysc[0], ir->counted.sysc[1]);
			else
				printf("  %6s %6s\n", "n/a", "n/a");
		}
		printf("  system time, share of CPU (server/client, all rounds):");
		for (int m = 0; m < I_COUNT; m++) {
			const double *sh = c->im[m].sys_share;

			if (!impl_on(m, c->conns))
				continue;
			printf("%s %s ", m ? "," : "", impl_name[m]);
			if (isfinite(sh[0]) && isfinite(sh[1]))
				printf("%.0f/%.0f%%", 100 * sh[0], 100 * sh[1]);
			else
				printf("n/a");
		}
		printf("\n");
		if (c->conns > 1 && !o->roundtrips) {
			printf("  fairness, the slowest connection's round trips / the mean:");
			for (int m = 0; m < I_COUNT; m++)
				if (impl_on(m, c->conns))
					printf("%s %s p50 %.0f%% (min %.0f%%)", m ? ";" : "",
					       impl_name[m], 100 * c->im[m].fair.p50,
					       100 * c->im[m].fair.min);
			printf("\n");
		}
		for (int m = I_UV; m < I_COUNT; m++) {
			if (!impl_on(m, c->conns))
				continue;
			printf("  ratio af/%-8s round trips/s, per round:      p50 %.2fx (p10 %.2fx, p90 %.2fx; min %.2fx, max %.2fx)\n",
			       impl_name[m], c->ratio[m].p50, c->ratio[m].p10, c->ratio[m].p90,
			       c->ratio[m].min, c->ratio[m].max);
			printf("  ratio af/%-8s CPU per round trip, per round: p50 %.2fx (p10 %.2fx, p90 %.2fx; min %.2fx, max %.2fx)\n",
			       impl_name[m], c->cpu_ratio[m].p50, c->cpu_ratio[m].p10,
			       c->cpu_ratio[m].p90, c->cpu_ratio[m].min, c->cpu_ratio[m].max);
		}
	}
	print_verdict(o, feat, cr);
	if (o->count && strcmp(why, "ok"))
		printf("\nsystem calls not counted: %s\n", why);
}

static void json_impl(struct bench_json *j, const struct impl_res *ir)
{
	bench_json_pct(j, "roundtrips_per_s", &ir->rt_s);
	bench_json_pct(j, "cpu_ns_per_rt_server", &ir->cpu_ns[0]);
	bench_json_pct(j, "cpu_ns_per_rt_client", &ir->cpu_ns[1]);
	bench_json_pct(j, "cpu_ns_per_rt_total", &ir->cpu_total);
	bench_json_pct(j, "blocked_per_rt_server", &ir->vcsw[0]);
	bench_json_pct(j, "blocked_per_rt_client", &ir->vcsw[1]);
	bench_json_pct(j, "slowest_conn_over_mean", &ir->fair);
	bench_json_num(j, "sys_share_server", ir->sys_share[0]);
	bench_json_num(j, "sys_share_client", ir->sys_share[1]);
	if (ir->have_count) {
		bench_json_num(j, "syscalls_per_rt_server", ir->counted.sysc[0]);
		bench_json_num(j, "syscalls_per_rt_client", ir->counted.sysc[1]);
	} else {
		bench_json_null(j, "syscalls_per_rt_server");
		bench_json_null(j, "syscalls_per_rt_client");
	}
}

static void print_json(const struct opts *o, const char *feat, const char *why,
		       const struct conn_res *cr)
{
	struct bench_json j;
	const char *uvv = uv_version_str();

	bench_json_begin(&j, stdout);
	bench_json_str(&j, "bench", "echo");
	bench_json_str(&j, "version", af_version());
	bench_json_str(&j, "features", feat);
	bench_json_str(&j, "backend", strncmp(feat, "epoll", 5) == 0 ? "epoll" : "io_uring");
	if (uvv)
		bench_json_str(&j, "libuv", uvv);
	else
		bench_json_null(&j, "libuv");
	bench_json_int(&j, "msg_size", (long long)o->msg_size);
	bench_json_int(&j, "rounds", (long long)o->rounds);
	if (o->roundtrips) {
		bench_json_int(&j, "roundtrips", (long long)o->roundtrips);
		bench_json_null(&j, "seconds");
	} else {
		bench_json_null(&j, "roundtrips");
		bench_json_num(&j, "seconds", o->seconds);
	}
	bench_json_str(&j, "pinned", o->pin == PIN_CROSS ? "cross" : o->pin == PIN_SAME ? "same" : "no");
	bench_json_str(&j, "syscall_counting", o->count ? why : "skipped (--no-count)");
	bench_json_arr(&j, "results");
	for (size_t i = 0; i < o->nconns; i++) {
		const struct conn_res *c = &cr[i];

		bench_json_obj(&j, NULL);
		bench_json_int(&j, "conns", (long long)c->conns);
		for (int m = 0; m < I_COUNT; m++) {
			if (!impl_on(m, c->conns)) {
				bench_json_null(&j, impl_name[m]);
				continue;
			}
			bench_json_obj(&j, impl_name[m]);
			json_impl(&j, &c->im[m]);
			bench_json_obj_end(&j);
		}
		for (int m = I_UV; m < I_COUNT; m++) {
			char key[40];

			snprintf(key, sizeof(key), "ratio_af_over_%s", impl_name[m]);
			if (impl_on(m, c->conns))
				bench_json_pct(&j, key, &c->ratio[m]);
			else
				bench_json_null(&j, key);
			snprintf(key, sizeof(key), "cpu_ratio_af_over_%s", impl_name[m]);
			if (impl_on(m, c->conns))
				bench_json_pct(&j, key, &c->cpu_ratio[m]);
			else
				bench_json_null(&j, key);
		}
		bench_json_obj_end(&j);
	}
	bench_json_arr_end(&j);
	bench_json_end(&j);
}

static bool sane(const struct impl_res *ir, size_t rounds)
{
	for (size_t k = 0; k < rounds; k++)
		if (!(ir->s[k].rt_s > 0 && isfinite(ir->s[k].rt_s)) || ir->s[k].rts == 0)
			return false;
	return true;
}

/* The order of the paths in round @k, as positions in the list of the @n
 * that run: every order in turn, so none always goes first and each pair
 * runs either way round equally often. With two paths that is af, uv in
 * even rounds and uv, af in odd ones. */
static const int *order_of(int n, uint64_t k)
{
	static const int one[1][1] = { { 0 } };
	static const int two[2][2] = { { 0, 1 }, { 1, 0 } };
	static const int three[6][3] = {
		{ 0, 1, 2 }, { 1, 0, 2 }, { 2, 0, 1 }, { 1, 2, 0 }, { 0, 2, 1 }, { 2, 1, 0 },
	};
	/* A Williams square: each path goes first once and follows each of
	 * the others once every four rounds. */
	static const int four[4][4] = {
		{ 0, 1, 3, 2 }, { 1, 2, 0, 3 }, { 2, 3, 1, 0 }, { 3, 0, 2, 1 },
	};

	if (n == 4)
		return four[k % 4];
	if (n == 3)
		return three[k % 6];
	return n == 2 ? two[k % 2] : one[0];
}

/* ---- main ------------------------------------------------------------------------------ */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void raise_fd_limit(size_t conns)
{
	struct rlimit rl;
	/* Two sockets per connection, both ends in this process. */
	rlim_t need = (rlim_t)(2 * conns + 64);

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
	setrlimit(RLIMIT_NOFILE, &rl);
}

/* asyncflag-bench builds this file in with -Dmain=afb_echo_main: the
 * prototype keeps -Wmissing-prototypes quiet there. */
int main(int argc, char **argv);

int main(int argc, char **argv)
{
	struct opts o;
	struct worker srv, cli;
	struct conn_res *cr;
	struct bench_sysc probe;
	struct af_loop *probe_loop;
	char why[160], feat[96];
	uint64_t seconds_ns, warm_rts;
	size_t maxc = 0;
	int e, status = 0, fds0, fds1;

	if (parse(argc, argv, &o) < 0)
		return 2;
	/* libuv writes with write(2): a peer gone early must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	e = af_loop_new(&probe_loop, NULL);
	if (e < 0) {
		fprintf(stderr, "bench-echo: af_loop_new: %s\n", af_strerror(e));
		/* 77: the "skipped" exit status meson and automake understand. */
		return e == -EPERM || e == -ENOSYS ? 77 : 1;
	}
	features_str(af_loop_features(probe_loop), feat, sizeof(feat));
	uring_setup = bench_ring_flags(af_loop_features(probe_loop));
	af_loop_free(probe_loop);
	for (size_t i = 0; i < o.nconns; i++)
		maxc = o.conns[i] > maxc ? o.conns[i] : maxc;
	raise_fd_limit(maxc);
	bench_sysc_open(&probe, "raw_syscalls/sys_enter");
	snprintf(why, sizeof(why), "%s", bench_sysc_why(&probe));
	bench_sysc_close(&probe);

	worker_start(&srv, "server");
	worker_start(&cli, "client");
	if (o.pin) {
		pin_to(srv.bw.th, 0);
		pin_to(cli.bw.th, o.pin == PIN_CROSS ? 1 : 0);
	}
	cr = calloc(o.nconns, sizeof(*cr));
	if (!cr)
		fatal("out of memory");
	for (size_t i = 0; i < o.nconns; i++) {
		cr[i].conns = o.conns[i];
		for (int m = 0; m < I_COUNT; m++) {
			if (!impl_on(m, o.conns[i]))
				continue;
			cr[i].im[m].s = calloc(o.rounds, sizeof(struct sample));
			if (!cr[i].im[m].s)
				fatal("out of memory");
		}
	}
	seconds_ns = o.roundtrips ? 0 : (uint64_t)(o.seconds * 1e9);

	/* One short untimed run of each: loops and stacks made, caches and
	 * the TCP stack warm. */
	for (size_t i = 0; i < o.nconns; i++) {
		struct sample s;

		warm_rts = 10 * o.conns[i] > 200 ? 10 * o.conns[i] : 200;
		if (o.roundtrips && o.roundtrips < warm_rts)
			warm_rts = o.roundtrips;
		for (int m = 0; m < I_COUNT; m++)
			if (impl_on(m, o.conns[i]))
				run_once(&srv, &cli, (enum impl)m, o.conns[i], o.msg_size, warm_rts, 0,
					 false, &s);
	}
	/* The loops exist now; every run must close what it opened. */
	fds0 = count_fds();
	for (uint64_t k = 0; k < o.rounds; k++) {
		for (size_t i = 0; i < o.nconns; i++) {
			int act[I_COUNT], n = 0;

			for (int m = 0; m < I_COUNT; m++)
				if (impl_on(m, o.conns[i]))
					act[n++] = m;
			for (int j = 0; j < n; j++) {
				int m = act[order_of(n, k)[j]];

				run_once(&srv, &cli, (enum impl)m, o.conns[i], o.msg_size,
					 o.roundtrips, seconds_ns, false, &cr[i].im[m].s[k]);
			}
		}
	}
	/* System calls: one more run of each with the counters open. */
	if (o.count && !strcmp(why, "ok")) {
		for (size_t i = 0; i < o.nconns; i++)
			for (int m = 0; m < I_COUNT; m++) {
				if (!impl_on(m, o.conns[i]))
					continue;
				run_once(&srv, &cli, (enum impl)m, o.conns[i], o.msg_size, o.roundtrips,
					 seconds_ns, true, &cr[i].im[m].counted);
				cr[i].im[m].have_count = true;
			}
	}

	fds1 = count_fds();
	if (fds1 != fds0) {
		fprintf(stderr, "bench-echo: %d descriptors open before the timed rounds, %d after: "
				"a leak\n", fds0, fds1);
		status = 1;
	}
	for (size_t i = 0; i < o.nconns; i++) {
		for (int m = 0; m < I_COUNT; m++) {
			if (!impl_on(m, o.conns[i]))
				continue;
			summarise(&cr[i].im[m], o.rounds);
			if (!sane(&cr[i].im[m], o.rounds)) {
				fprintf(stderr, "bench-echo: %s, %zu connections: a round measured nothing\n",
					impl_name[m], cr[i].conns);
				status = 1;
			}
		}
		for (int m = I_UV; m < I_COUNT; m++) {
			double *rv, *cv;

			if (!impl_on(m, o.conns[i]))
				continue;
			rv = calloc(o.rounds, sizeof(*rv));
			cv = calloc(o.rounds, sizeof(*cv));
			if (!rv || !cv)
				fatal("out of memory");
			/* Within a round: both ran within a second of each other,
			 * so the machine's slow drifts cancel. */
			for (uint64_t k = 0; k < o.rounds; k++) {
				const struct sample *a = &cr[i].im[I_AF].s[k], *u = &cr[i].im[m].s[k];
				double ac = a->cpu_ns[0] + a->cpu_ns[1], uc = u->cpu_ns[0] + u->cpu_ns[1];

				rv[k] = u->rt_s > 0 ? a->rt_s / u->rt_s : NAN;
				cv[k] = uc > 0 ? ac / uc : NAN;
			}
			cr[i].ratio[m] = bench_pct_of(rv, o.rounds);
			cr[i].cpu_ratio[m] = bench_pct_of(cv, o.rounds);
			free(rv);
			free(cv);
		}
	}
	if (o.json)
		print_json(&o, feat, why, cr);
	else
		print_text(&o, feat, why, cr);

	worker_post(&srv, af_free_job, NULL);
	worker_wait(&srv);
	worker_post(&cli, af_free_job, NULL);
	worker_wait(&cli);
#if HAVE_LIBUV
	worker_post(&srv, uv_free_job, NULL);
	worker_wait(&srv);
	worker_post(&cli, uv_free_job, NULL);
	worker_wait(&cli);
#endif
	worker_stop(&srv);
	worker_stop(&cli);
	for (size_t i = 0; i < o.nconns; i++)
		for (int m = 0; m < I_COUNT; m++)
			free(cr[i].im[m].s);
	free(cr);
	return status;
}

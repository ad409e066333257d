/* SPDX-License-Identifier: MIT */
/*
 * asyncflag-bench: wake-ups that come from another thread or from a signal
 * handler (scenarios wake-cold, wake-hot and signal), each beside the raw
 * kernel, libc and libuv ways to be woken, interleaved ping by ping.
 *
 * The method is bench-wake's (see bench/README.md): two threads, the setter
 * (main) and the worker, which runs the loop and on it one waiter task. The
 * waiter publishes "ready for ping i" and blocks; the setter waits for that
 * and, when the loop is meant to be asleep, for the worker to be in state S
 * in /proc, then sleeps --gap-us itself (a producer that was asleep too),
 * stamps CLOCK_MONOTONIC and wakes it; the waiter stamps when it runs. The
 * baselines block the same worker thread from inside the same task, so they
 * share its stack, CPU and caches: only the wake mechanism differs.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <liburing.h>
#if HAVE_LIBUV
#include <uv.h>
#endif

#include "afb.h"
#include "asyncflag.h"

#define TIMEOUT_NS (10ull * 1000000000u)

/* liburing 2.3 predates IORING_OP_FUTEX_WAIT (Linux 6.7): its opcode and
 * flags come from the kernel's uapi, and the SQE is filled by hand. */
#define AFB_IORING_OP_FUTEX_WAIT 51
#define AFB_FUTEX2_SIZE_U32 0x02
#define AFB_FUTEX2_PRIVATE 128

#define SIG_AF SIGUSR1
#define SIG_SFD SIGUSR2
#define SIG_AFB (SIGRTMIN + 3)     /* blocked in every thread: the loop reads it */
#define SIG_RSFD (SIGRTMIN + 5)    /* blocked in every thread: the bare ring reads it */
#define SIG_UV (SIGRTMIN + 2)

enum method {
	M_AF_COLD, M_EVENTFD, M_CONDVAR, M_URING_POLL, M_URING_FUTEX, M_UV_ASYNC,
	M_AF_HOT, M_SPIN,
	M_AF_SIGNAL, M_SIGNALFD, M_URING_SIGNALFD, M_AF_SIGNAL_HANDLER, M_UV_SIGNAL,
	M_AF_SIGLOOP_FLAG,
	M_GPIO_CO, M_GPIO_INT, M_GPIO_RAW, M_PIPE,
	M_COUNT,
};

static const struct {
	const char *path, *what;
} method_info[M_COUNT] = {
	[M_AF_COLD] = { "af_flag", "af_flag_set() from a thread; the loop parked in FUTEX_WAIT "
				   "(AF_PARK=0: in io_uring_enter)" },
	[M_EVENTFD] = { "eventfd", "write(2) wakes a thread blocked in read(2): the kernel's floor" },
	[M_CONDVAR] = { "condvar", "pthread_cond_signal() after unlock wakes pthread_cond_wait()" },
	[M_URING_POLL] = { "io_uring-poll",
			   "multishot POLL_ADD on an eventfd, ring set up like the loop's" },
	[M_URING_FUTEX] = { "io_uring-futex", "IORING_OP_FUTEX_WAIT woken by FUTEX_WAKE" },
	[M_UV_ASYNC] = { "uv_async", "libuv uv_async_send() wakes uv_run() (as users get it); "
				     "mostly libuv's uv__async_spin: on one CPU the woken loop "
				     "spins up to 997 rounds, then sched_yield(), for a sender it "
				     "preempted inside write(2)" },
	[M_AF_HOT] = { "af_flag", "af_flag_set() while another task keeps the loop busy" },
	[M_SPIN] = { "spin", "a thread spinning on the cache line another thread stores" },
	[M_AF_SIGNAL] = { "af_signal", "kill(2) of a signal blocked in every thread -> the loop "
				       "takes it (sigtimedwait() once its signals woke it lately, "
				       "else its signalfd read) -> af_flag_wait()" },
	[M_URING_SIGNALFD] = { "io_uring-signalfd",
			       "IORING_OP_READ of a non-blocking signalfd on a ring set up like "
			       "the loop's: af_signal's own kernel path, with no runtime on it" },
	[M_AF_SIGNAL_HANDLER] = { "af_signal-handler",
				  "kill(2) of an unblocked signal -> the af_signal_watch() "
				  "handler -> af_flag_wait()" },
	[M_SIGNALFD] = { "signalfd", "kill(2) wakes a thread blocked in read(2) on a signalfd" },
	[M_UV_SIGNAL] = { "uv_signal", "kill(2) -> libuv uv_signal_t callback" },
	[M_AF_SIGLOOP_FLAG] = { "af_flag-signal-loop",
				"af_flag_set() from the setter thread into this loop, which its "
				"signals woke lately: it sleeps in sigtimedwait() and the kick is "
				"SIGURG (what a set costs a loop that mostly gets signals)" },
	[M_GPIO_CO] = { "af_pin", "coroutine mode: the edge's kernel timestamp -> "
				  "af_pin_wait_edge() returns" },
	[M_GPIO_INT] = { "af_pin_irq", "interrupt mode: the edge's kernel timestamp -> the "
				       "af_pin_irq() handler's af_flag_set() -> af_flag_wait() returns" },
	[M_GPIO_RAW] = { "line-read", "a blocking read(2) of a raw uAPI line request: the "
				      "kernel's floor for being woken by an edge" },
	[M_PIPE] = { "pipe", "write(2) wakes a thread blocked in read(2) of a pipe, the kind of "
			     "descriptor the simulated chip's events come through" },
};

/* ---- one scenario's state -------------------------------------------------- */

struct ping {
	struct af_loop *loop;
	struct af_flag flag;         /* set by the setter (cold, hot) */
	struct af_flag sflag;        /* watches SIG_AF (handler) */
	struct af_flag bflag;        /* watches SIG_AFB (blocked: signalfd) */
	int efd, pefd, sfd, rsfd;
	struct signalfd_siginfo rsi; /* what the bare ring's signalfd read fills */
	_Atomic uint32_t futex;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool cv_go;                  /* under mu */
	_Atomic uint64_t spin_go;
	_Atomic uint64_t t0;         /* the setter's stamp for the ping in flight */
	_Atomic uint64_t ready;      /* i + 1: the waiter is about to block for ping i */
	_Atomic uint64_t stop_at;    /* the waiter ends after ping stop_at - 1 */
	_Atomic int failed;

	/* the baselines' own ring, on the worker (SINGLE_ISSUER) */
	struct io_uring ring;
	unsigned ring_flags;
	bool ring_ok, have_futex;
	struct afb_gpio *gpio;       /* NULL: not asked for, or not available */
	char gpio_why[160];
	int pipefd[2];
#if HAVE_LIBUV
	uv_loop_t uv;
	uv_async_t async;
	uv_signal_t usig;
	bool uv_ok;
	bool uv_fired;
#endif

	const uint8_t *sched;
	size_t n;
	size_t group;                /* pings per group: one of each method */
	bool busy;
	uint64_t gap_ns;
	double *lat;                 /* ns per ping; -1 when left out */
	double *stage;               /* GPIO: output write -> the edge's kernel timestamp */
	int err_method;

	struct bench_worker *w;
	struct bench_spin spin;      /* worker thread only */
};

/* ---- the waiter's side ------------------------------------------------------- */

static int ring_wait(struct ping *p, uint64_t tag, uint64_t *t1)
{
	for (;;) {
		struct io_uring_cqe *cqe;
		int r = io_uring_submit_and_wait(&p->ring, 1);

		if (r < 0)
			return r;
		r = io_uring_peek_cqe(&p->ring, &cqe);
		if (r < 0)
			continue;
		*t1 = bench_now_ns();
		if (cqe->user_data != tag) {
			io_uring_cqe_seen(&p->ring, cqe);
			continue;
		}
		r = cqe->res;
		/* A multishot poll ends when the kernel drops it (overflow,
		 * cancellation): arm it again for the next ping. */
		if (tag == 1 && !(cqe->flags & IORING_CQE_F_MORE)) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);

			if (!sqe)
				return -EBUSY;
			io_uring_prep_poll_multishot(sqe, p->pefd, POLLIN);
			sqe->user_data = 1;
		}
		io_uring_cqe_seen(&p->ring, cqe);
		return r < 0 && r != -EAGAIN ? r : 0;
	}
}

static int futex_wait_ring(struct ping *p, uint64_t *t1)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);
	uint32_t cur = atomic_load_explicit(&p->futex, memory_order_relaxed);

	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = AFB_IORING_OP_FUTEX_WAIT;
	sqe->fd = AFB_FUTEX2_SIZE_U32 | AFB_FUTEX2_PRIVATE;
	sqe->addr = (uint64_t)(uintptr_t)&p->futex;
	sqe->off = cur;                   /* sleep while the word still holds this */
	sqe->addr3 = FUTEX_BITSET_MATCH_ANY;
	sqe->user_data = 2;
	/* -EAGAIN: the setter changed the word before the wait was armed,
	 * which the setter's wait for state S makes rare; still a wake-up. */
	return ring_wait(p, 2, t1);
}

static int signalfd_read_ring(struct ping *p, uint64_t *t1)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);
	int r;

	if (!sqe)
		return -EBUSY;
	io_uring_prep_read(sqe, p->rsfd, &p->rsi, sizeof(p->rsi), 0);
	sqe->user_data = 3;
	r = ring_wait(p, 3, t1);
	/* ring_wait() gives 0 or -errno: the signal number tells the rest. */
	return r < 0 ? r : p->rsi.ssi_signo == (uint32_t)SIG_RSFD ? 0 : -EIO;
}

#if HAVE_LIBUV
static void on_uv_async(uv_async_t *h)
{
	struct ping *p = h->data;

	p->uv_fired = true;
}

static void on_uv_signal(uv_signal_t *h, int signo)
{
	struct ping *p = h->data;

	(void)signo;
	p->uv_fired = true;
}

static int uv_wait_once(struct ping *p, uint64_t *t1)
{
	p->uv_fired = false;
	while (!p->uv_fired)
		uv_run(&p->uv, UV_RUN_ONCE);
	*t1 = bench_now_ns();
	return 0;
}
#endif

static enum afb_gpio_mode gpio_mode(int m)
{
	return m == M_GPIO_CO ? AFB_GPIO_CO : m == M_GPIO_INT ? AFB_GPIO_INT : AFB_GPIO_RAW;
}

static int block_once(struct ping *p, size_t i, uint64_t *t1, uint64_t *ts)
{
	uint64_t v;
	struct signalfd_siginfo si;
	char c;
	int r = 0;

	switch (p->sched[i]) {
	case M_GPIO_CO:
	case M_GPIO_INT:
	case M_GPIO_RAW:
		r = afb_gpio_wait(p->gpio, gpio_mode(p->sched[i]), ts);
		*t1 = bench_now_ns();
		break;
	case M_PIPE:
		if (read(p->pipefd[0], &c, 1) != 1)
			r = -errno;
		*t1 = bench_now_ns();
		break;
	case M_AF_COLD:
	case M_AF_HOT:
	case M_AF_SIGLOOP_FLAG:
		r = af_flag_wait(&p->flag);
		*t1 = bench_now_ns();
		break;
	case M_AF_SIGNAL:
		r = af_flag_wait(&p->bflag);
		*t1 = bench_now_ns();
		break;
	case M_AF_SIGNAL_HANDLER:
		r = af_flag_wait(&p->sflag);
		*t1 = bench_now_ns();
		break;
	case M_EVENTFD:
		if (read(p->efd, &v, sizeof(v)) != (ssize_t)sizeof(v))
			r = -errno;
		*t1 = bench_now_ns();
		break;
	case M_SIGNALFD:
		if (read(p->sfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
			r = -errno;
		*t1 = bench_now_ns();
		break;
	case M_CONDVAR:
		pthread_mutex_lock(&p->mu);
		while (!p->cv_go)
			pthread_cond_wait(&p->cv, &p->mu);
		*t1 = bench_now_ns();
		p->cv_go = false;
		pthread_mutex_unlock(&p->mu);
		break;
	case M_URING_POLL:
		r = ring_wait(p, 1, t1);
		break;
	case M_URING_FUTEX:
		r = futex_wait_ring(p, t1);
		break;
	case M_URING_SIGNALFD:
		r = signalfd_read_ring(p, t1);
		break;
#if HAVE_LIBUV
	case M_UV_ASYNC:
	case M_UV_SIGNAL:
		r = uv_wait_once(p, t1);
		break;
#endif
	default:
		/* acquire: pairs with the setter's release store, made after
		 * it wrote t0. */
		for (unsigned spins = 0;
		     atomic_load_explicit(&p->spin_go, memory_order_acquire) != i + 1; spins++) {
			bench_cpu_relax();
			/* Both threads on one CPU: let the setter run. */
			if (spins > 64 * 1024)
				sched_yield();
		}
		*t1 = bench_now_ns();
		break;
	}
	return r;
}

static int waiter(void *arg)
{
	struct ping *p = arg;

	for (size_t i = 0; i < p->n; i++) {
		uint64_t t1 = 0, ts = 0, t0, turns = p->spin.turns;
		int r;

		/* release: the previous ping's sample is written before the
		 * setter may start the next one. */
		atomic_store_explicit(&p->ready, i + 1, memory_order_release);
		r = block_once(p, i, &t1, &ts);
		if (r < 0) {
			p->err_method = p->sched[i];
			atomic_store(&p->failed, r);
			return r;
		}
		t0 = atomic_load_explicit(&p->t0, memory_order_relaxed);
		/* An edge is timed from its kernel timestamp; what came before
		 * it (the output write, the wire, the interrupt entry) is the
		 * stage, reported apart. */
		p->lat[i] = (double)(int64_t)(t1 - (ts ? ts : t0));
		if (ts)
			p->stage[i] = (double)(int64_t)(ts - t0);
		/* A busy-loop wait that returned before the spinner took a turn
		 * never blocked: it measured only the flag's fast path. */
		if (p->busy && p->sched[i] == M_AF_HOT && p->spin.turns == turns)
			p->lat[i] = -1;
		/* acquire: stop_at is stored before the wake-up that ended
		 * this ping, and every mechanism orders the two. */
		if (i + 1 >= atomic_load_explicit(&p->stop_at, memory_order_acquire))
			break;
	}
	atomic_store_explicit(&p->ready, UINT64_MAX, memory_order_release);
	return 0;
}

static int ping_main(void *arg)
{
	struct ping *p = arg;

	return bench_wait_beside(waiter, p, p->busy ? &p->spin : NULL);
}

static void ping_job(void *arg)
{
	struct ping *p = arg;
	int res = 0, r;

	r = af_loop_run(p->loop, ping_main, p, &res);
	if (r < 0 || res < 0)
		atomic_store(&p->failed, r < 0 ? r : res);
}

/* ---- the setter's side ------------------------------------------------------- */

static int wait_ready(struct ping *p, uint64_t want, const char *what)
{
	int r = bench_wait_ready(&p->ready, want, &p->failed, TIMEOUT_NS);

	if (r == -ETIMEDOUT)
		fprintf(stderr,
			"asyncflag-bench: a %s ping was not answered within 10 s: "
			"lost wake-up\n", what);
	return r < 0 ? -1 : 0;
}

static int wait_asleep(struct ping *p, const char *what)
{
	uint64_t start = bench_now_ns();

	for (unsigned polls = 0; bench_thread_state(p->w->statfd) != 'S'; polls++) {
		if (atomic_load(&p->failed))
			return -1;
		/* Both threads on one CPU: the worker needs it to go to sleep. */
		if (polls > 1000)
			sched_yield();
		if (bench_now_ns() - start > TIMEOUT_NS) {
			fprintf(stderr, "asyncflag-bench: %s: the worker never went to sleep\n", what);
			return -1;
		}
		for (int k = 0; k < 64; k++)
			bench_cpu_relax();
	}
	return 0;
}

static void trigger(struct ping *p, size_t i)
{
	uint64_t one = 1;
	int r = 0;

	switch (p->sched[i]) {
	case M_AF_COLD:
	case M_AF_HOT:
	case M_AF_SIGLOOP_FLAG:
		af_flag_set(&p->flag);
		break;
	case M_GPIO_CO:
	case M_GPIO_INT:
	case M_GPIO_RAW:
		r = afb_gpio_trigger(p->gpio, gpio_mode(p->sched[i]));
		if (r < 0)
			atomic_store(&p->failed, r);
		return;
	case M_PIPE:
		r = (int)write(p->pipefd[1], "x", 1);
		break;
	case M_EVENTFD:
		r = (int)write(p->efd, &one, sizeof(one));
		break;
	case M_URING_POLL:
		r = (int)write(p->pefd, &one, sizeof(one));
		break;
	case M_URING_FUTEX:
		/* release: t0 and stop_at before the word the waiter wakes on. */
		atomic_fetch_add_explicit(&p->futex, 1, memory_order_release);
		r = (int)syscall(SYS_futex, &p->futex, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		break;
	case M_CONDVAR:
		/* Signal after unlocking so the woken waiter does not run into
		 * a mutex we still hold: the faster of the two usual idioms. */
		pthread_mutex_lock(&p->mu);
		p->cv_go = true;
		pthread_mutex_unlock(&p->mu);
		pthread_cond_signal(&p->cv);
		break;
#if HAVE_LIBUV
	case M_UV_ASYNC:
		r = uv_async_send(&p->async);
		break;
	case M_UV_SIGNAL:
		r = kill(getpid(), SIG_UV);
		break;
#endif
	case M_AF_SIGNAL:
		r = kill(getpid(), SIG_AFB);
		break;
	case M_AF_SIGNAL_HANDLER:
		r = kill(getpid(), SIG_AF);
		break;
	case M_SIGNALFD:
		r = kill(getpid(), SIG_SFD);
		break;
	case M_URING_SIGNALFD:
		r = kill(getpid(), SIG_RSFD);
		break;
	default:
		atomic_store_explicit(&p->spin_go, i + 1, memory_order_release);
		break;
	}
	if (r < 0)
		atomic_store(&p->failed, -errno);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int setter_wait(struct ping *p, size_t i, uint64_t *seed)
{
	const char *what = method_info[p->sched[i]].path;

	if (p->busy) {
		/* Land the set anywhere in the loop's turn. */
		uint64_t until = bench_now_ns() + 1000 + rnd(seed) % 2000;

		while (bench_now_ns() < until)
			bench_cpu_relax();
		return 0;
	}
	if (wait_asleep(p, what) < 0)
		return -1;
	if (p->gap_ns) {
		struct timespec gap = { .tv_sec = 0, .tv_nsec = (long)p->gap_ns };

		nanosleep(&gap, NULL);
		if (wait_asleep(p, what) < 0)
			return -1;
	}
	return 0;
}

static int run_pings(struct ping *p, const struct afb_opts *o, const char *name, bool timed)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull, start = bench_now_ns();
	size_t i;

	atomic_store(&p->ready, 0);
	atomic_store(&p->spin_go, 0);
	atomic_store(&p->failed, 0);
	atomic_store(&p->stop_at, p->n);
	p->spin.turns = 0;
	bench_worker_run(p->w, ping_job, p);
	for (i = 0; i < p->n; i++) {
		if (wait_ready(p, i + 1, method_info[p->sched[i]].path) < 0 ||
		    setter_wait(p, i, &seed) < 0)
			goto stuck;
		/* Stop at the end of a whole group, so every path has as many
		 * samples as the others. */
		if (timed && (i & 255) == 0)
			afb_progress(name, o->iterations ? (double)i / (double)p->n
					   : (double)(bench_now_ns() - start) / (o->duration_s * 1e9));
		if (timed && !o->iterations && afb_time_up(o, start) && i + 1 < p->n &&
		    (i + 1) % p->group == 0)
			atomic_store_explicit(&p->stop_at, i + 1, memory_order_relaxed);
		/* relaxed: each mechanism orders it before the wake-up (the
		 * flag's release, the system calls, the mutex, spin_go's and the
		 * futex word's release). */
		atomic_store_explicit(&p->t0, bench_now_ns(), memory_order_relaxed);
		trigger(p, i);
		if (i + 1 >= atomic_load_explicit(&p->stop_at, memory_order_relaxed))
			break;
	}
	if (wait_ready(p, UINT64_MAX, "final") < 0)
		goto stuck;
	bench_worker_wait(p->w);
	p->n = i < p->n ? i + 1 : p->n;
	if (atomic_load(&p->failed)) {
		fprintf(stderr, "asyncflag-bench: %s: %s failed: %s\n", name,
			method_info[p->err_method].path, strerror(-atomic_load(&p->failed)));
		return -1;
	}
	return 0;
stuck:
	/* The worker may be stuck in a wait nothing can end: leave. */
	fprintf(stderr, "asyncflag-bench: %s: giving up\n", name);
	exit(1);
}

/* ---- set-up of the baselines ------------------------------------------------- */

/* On the worker: SINGLE_ISSUER rings belong to the thread that made them,
 * and a uv loop to the thread that runs it. */
static void setup_job(void *arg)
{
	struct ping *p = arg;
	struct io_uring_params prm;
	struct io_uring_probe *probe;

	memset(&prm, 0, sizeof(prm));
	prm.flags = p->ring_flags;
	if (io_uring_queue_init_params(8, &p->ring, &prm) == 0) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&p->ring);

		p->ring_ok = sqe != NULL;
		if (!sqe)
			return;
		io_uring_prep_poll_multishot(sqe, p->pefd, POLLIN);
		sqe->user_data = 1;
		io_uring_submit(&p->ring);
		probe = io_uring_get_probe_ring(&p->ring);
		p->have_futex = probe && io_uring_opcode_supported(probe, AFB_IORING_OP_FUTEX_WAIT);
		if (probe)
			io_uring_free_probe(probe);
	}
#if HAVE_LIBUV
	if (uv_loop_init(&p->uv) == 0) {
		p->uv_ok = uv_async_init(&p->uv, &p->async, on_uv_async) == 0;
		p->async.data = p;
		if (p->uv_ok && uv_signal_init(&p->uv, &p->usig) == 0) {
			p->usig.data = p;
			uv_signal_start(&p->usig, on_uv_signal, SIG_UV);
		}
	}
#endif
}

static void teardown_job(void *arg)
{
	struct ping *p = arg;

	if (p->ring_ok)
		io_uring_queue_exit(&p->ring);
#if HAVE_LIBUV
	if (p->uv_ok) {
		uv_close((uv_handle_t *)&p->async, NULL);
		uv_close((uv_handle_t *)&p->usig, NULL);
		uv_run(&p->uv, UV_RUN_DEFAULT);
		uv_loop_close(&p->uv);
	}
#endif
	af_loop_free(p->loop);
}

/* Which methods a scenario runs, d[k] for methods[k]. */
static int methods_of(enum afb_scenario s, uint8_t *m)
{
	static const uint8_t cold[] = { M_AF_COLD, M_EVENTFD, M_CONDVAR, M_URING_POLL,
					M_URING_FUTEX, M_UV_ASYNC };
	static const uint8_t hot[] = { M_AF_HOT, M_SPIN };
	static const uint8_t sig[] = { M_AF_SIGNAL, M_SIGNALFD, M_URING_SIGNALFD,
				       M_AF_SIGNAL_HANDLER, M_UV_SIGNAL, M_AF_SIGLOOP_FLAG };
	const uint8_t *src = s == AFB_WAKE_COLD ? cold : s == AFB_WAKE_HOT ? hot : sig;
	int n = s == AFB_WAKE_COLD ? 6 : s == AFB_WAKE_HOT ? 2 : 6;

	memcpy(m, src, (size_t)n);
	return n;
}

static const char *missing(const struct ping *p, int m)
{
	switch (m) {
	case M_URING_POLL:
	case M_URING_SIGNALFD:
		return p->ring_ok ? NULL : "io_uring_queue_init failed";
	case M_URING_FUTEX:
		if (!p->ring_ok)
			return "io_uring_queue_init failed";
		return p->have_futex ? NULL : "not available: this kernel has no "
					       "IORING_OP_FUTEX_WAIT (Linux 6.7+)";
	case M_GPIO_CO:
	case M_GPIO_INT:
	case M_GPIO_RAW:
		return p->gpio ? NULL : p->gpio_why;
	case M_UV_ASYNC:
	case M_UV_SIGNAL:
#if HAVE_LIBUV
		return p->uv_ok ? NULL : "uv_loop_init failed";
#else
		return "not built: libuv was not found at build time (Debian: libuv1-dev)";
#endif
	default:
		return NULL;
	}
}

/* Appends what pass @p measured for method @m to @d, and its edge stage
 * (write -> kernel timestamp, GPIO only) to @stage. */
static int append(const struct ping *p, int m, struct afb_dist *d, struct afb_dist *stage)
{
	size_t add = 0;
	double *v;

	for (size_t i = 0; i < p->n; i++)
		add += p->sched[i] == m;
	v = realloc(d->ns, (d->n + add + 1) * sizeof(double));
	if (!v)
		return -ENOMEM;
	d->ns = v;
	if (stage) {
		v = realloc(stage->ns, (stage->n + add + 1) * sizeof(double));
		if (!v)
			return -ENOMEM;
		stage->ns = v;
	}
	for (size_t i = 0; i < p->n; i++) {
		if (p->sched[i] != m)
			continue;
		if (p->lat[i] < 0) {
			d->excluded++;
			continue;
		}
		d->ns[d->n++] = p->lat[i];
		if (stage)
			stage->ns[stage->n++] = p->stage[i];
	}
	return 0;
}

/* An untimed warm-up (first-touch faults, lazy binding, the first sleep),
 * then a timed pass of @run, interleaved; each method's samples go to
 * dist[method] (and stage[method] when not NULL). */
static int measure(struct ping *p, const struct afb_opts *o, const char *name,
		   const uint8_t *run, int nrun, struct afb_dist **dist, struct afb_dist **stage)
{
	int err = 0;

	for (int pass = 0; pass < 2 && err == 0; pass++) {
		size_t rounds = pass == 0 ? 10 : afb_rounds(o, 200000);
		uint8_t *sched = bench_sched_make(run, (size_t)nrun, rounds);

		p->lat = calloc(rounds * (size_t)nrun, sizeof(*p->lat));
		p->stage = calloc(rounds * (size_t)nrun, sizeof(*p->stage));
		p->sched = sched;
		p->n = rounds * (size_t)nrun;
		p->group = (size_t)nrun;
		if (!sched || !p->lat || !p->stage)
			err = -ENOMEM;
		else if (run_pings(p, o, name, pass == 1) < 0)
			err = -EIO;
		for (int k = 0; pass == 1 && err == 0 && k < nrun; k++)
			err = append(p, run[k], dist[run[k]], stage ? stage[run[k]] : NULL);
		free(sched);
		free(p->lat);
		free(p->stage);
		p->sched = NULL;
	}
	if (err == -ENOMEM)
		fprintf(stderr, "asyncflag-bench: out of memory\n");
	return err;
}

/* The share of @d's samples above @ns. */
static double slow_share(const struct afb_dist *d, double ns)
{
	size_t slow = 0;

	for (size_t i = 0; i < d->n; i++)
		slow += d->ns[i] > ns;
	return d->n ? (double)slow / (double)d->n : 0;
}

static void wake_note(struct afb_result *r, const struct afb_opts *o)
{
	if (r->id == AFB_WAKE_COLD)
		snprintf(r->note, sizeof(r->note),
			 "the setter sleeps %llu us before each set, once the waiter is asleep",
			 (unsigned long long)o->gap_us);
	else if (r->id == AFB_WAKE_HOT && o->cpu[0] >= 0 && o->cpu[0] == o->cpu[1])
		snprintf(r->note, sizeof(r->note),
			 "both threads on one CPU: every set waits for the busy loop's time "
			 "slice to end, so this measures the scheduler");
	else if (r->id == AFB_WAKE_HOT && slow_share(&r->d[0], 100000) > 0.1)
		snprintf(r->note, sizeof(r->note),
			 "over 10%% of the pings took more than 100 us: another process held the "
			 "other CPU, so the busy loop and the setter took turns on one and this "
			 "measured the scheduler's time slice; run it on two free CPUs (--cpu A,B)");
	else if (r->id == AFB_WAKE_HOT && r->d[0].excluded)
		snprintf(r->note, sizeof(r->note),
			 "%zu af_flag pings left out: the wait returned before the loop took a turn",
			 r->d[0].excluded);
	else if (r->id == AFB_SIGNAL)
		snprintf(r->note, sizeof(r->note),
			 "kill(getpid()) from the setter thread; af_signal's, signalfd's and "
			 "io_uring-signalfd's signals are blocked in every thread, "
			 "af_signal-handler's in none");
}

static int scenario(struct ping *p, struct afb_result *r, const struct afb_opts *o)
{
	struct afb_dist *dist[M_COUNT] = { NULL };
	uint8_t all[8], run[8];
	int nall = methods_of(r->id, all), nrun = 0;

	r->baseline = 1;
	for (int k = 0; k < nall; k++) {
		struct afb_dist *d = afb_dist_add(r, method_info[all[k]].path,
						  method_info[all[k]].what);
		const char *why = missing(p, all[k]);

		dist[all[k]] = d;
		if (why)
			afb_dist_unavailable(d, "%s", why);
		else
			run[nrun++] = all[k];
	}
	p->busy = r->id == AFB_WAKE_HOT;
	/* A busy loop never gives its CPU away, and SCHED_FIFO never takes it
	 * from a thread of the same priority: the setter would never run. */
	if (p->busy && o->rt_prio && o->cpu[0] >= 0 && o->cpu[0] == o->cpu[1]) {
		snprintf(r->skipped, sizeof(r->skipped),
			 "skipped: with --rt, a busy loop needs its own CPU (--cpu A,B with A != B)");
		return 0;
	}
	if (measure(p, o, afb_scenario_name[r->id], run, nrun, dist, NULL) < 0)
		return -1;
	wake_note(r, o);
	r->ran = true;
	return 0;
}

static int copy_dist(struct afb_dist *to, const struct afb_dist *from)
{
	*to = *from;
	to->ns = malloc((from->n + 1) * sizeof(double));
	if (!to->ns)
		return -ENOMEM;
	memcpy(to->ns, from->ns, from->n * sizeof(double));
	return 0;
}

static void gpio_notes(struct ping *p, struct afb_result *r)
{
	snprintf(r[AFB_GPIO].note, sizeof(r[AFB_GPIO].note),
		 "on %s; %llu seqno gaps (edges the kernel dropped); the modes %s",
		 afb_gpio_where(p->gpio), (unsigned long long)afb_gpio_gaps(p->gpio),
		 afb_gpio_modes_at_once(p->gpio) ? "interleaved ping by ping, a line each"
						 : "and the raw read took turns on the one input line");
	snprintf(r[AFB_GPIO_IRQ].note, sizeof(r[AFB_GPIO_IRQ].note),
		 "the handler runs on the pin's own thread; the baselines are gpio's, shown again");
	snprintf(r[AFB_GPIO_EDGE].note, sizeof(r[AFB_GPIO_EDGE].note), "%s",
		 afb_gpio_modes_at_once(p->gpio)
		 ? "af_gpio_sim_pull() -> the simulated edge's timestamp; on a real chip this is "
		   "the ioctl, the pad, the wire and the interrupt entry"
		 : "output write -> the kernel's edge timestamp, no runtime on the path: the "
		   "ioctl, the pad, the wire, the interrupt entry (on a Pi 5 also PCIe to RP1)");
}

/* A real chip's one input line takes the modes in turns, a third of the
 * time each, with the pipe interleaved into every turn. */
static int gpio_turns(struct ping *p, const struct afb_opts *o, struct afb_dist **dist,
		      struct afb_dist **stage)
{
	static const uint8_t turns[3][2] = {
		{ M_GPIO_CO, M_PIPE }, { M_GPIO_INT, M_PIPE }, { M_GPIO_RAW, M_PIPE },
	};
	struct afb_opts third = *o;
	int err = 0;

	third.duration_s /= 3;
	for (int t = 0; t < 3 && err == 0; t++) {
		err = afb_gpio_set_mode(p->gpio, gpio_mode(turns[t][0]));
		if (err < 0)
			fprintf(stderr, "asyncflag-bench: gpio: %s: %s\n",
				method_info[turns[t][0]].path, af_strerror(err));
		else
			err = measure(p, &third, "gpio", turns[t], 2, dist, stage);
	}
	return err;
}

/* gpio, gpio-irq and gpio-edge: one run, three tables, because the user
 * needs the two modes and the hardware's own share apart. */
static int gpio_scenarios(struct ping *p, struct afb_result *r, const struct afb_opts *o)
{
	struct afb_result *co = &r[AFB_GPIO], *in = &r[AFB_GPIO_IRQ], *edge = &r[AFB_GPIO_EDGE];
	struct afb_dist *dist[M_COUNT] = { NULL }, *stage[M_COUNT] = { NULL };
	bool sim;
	int err;

	if (!p->gpio) {
		snprintf(co->skipped, sizeof(co->skipped), "%s", p->gpio_why);
		in->hidden = edge->hidden = true;
		/* The simulated chip missing is a fact of this build; a chip the
		 * user named that cannot be used is a failed run. */
		co->failed = o->chip != NULL;
		return 0;
	}
	sim = afb_gpio_modes_at_once(p->gpio);
	dist[M_GPIO_CO] = afb_dist_add(co, method_info[M_GPIO_CO].path, method_info[M_GPIO_CO].what);
	if (!sim)
		dist[M_GPIO_RAW] = afb_dist_add(co, method_info[M_GPIO_RAW].path,
						method_info[M_GPIO_RAW].what);
	dist[M_PIPE] = afb_dist_add(co, method_info[M_PIPE].path, method_info[M_PIPE].what);
	dist[M_GPIO_INT] = afb_dist_add(in, method_info[M_GPIO_INT].path,
					method_info[M_GPIO_INT].what);
	stage[M_GPIO_CO] = afb_dist_add(edge, "coroutine", "output write -> edge timestamp, "
							   "coroutine-mode pings");
	stage[M_GPIO_INT] = afb_dist_add(edge, "interrupt", "output write -> edge timestamp, "
							    "interrupt-mode pings");
	if (!sim)
		stage[M_GPIO_RAW] = afb_dist_add(edge, "line-read", "output write -> edge "
								   "timestamp, raw-read pings");
	co->baseline = in->baseline = 1;
	edge->baseline = -1;
	p->busy = false;
	if (sim) {
		const uint8_t run[] = { M_GPIO_CO, M_PIPE, M_GPIO_INT };

		err = measure(p, o, "gpio", run, 3, dist, stage);
	} else {
		err = gpio_turns(p, o, dist, stage);
	}
	/* gpio-irq's baselines are gpio's, shown again beside it. */
	for (int k = 1; err == 0 && k < co->nd; k++)
		err = copy_dist(afb_dist_add(in, "", ""), &co->d[k]);
	if (err < 0)
		return -1;
	gpio_notes(p, r);
	co->ran = in->ran = edge->ran = true;
	return 0;
}

static void close_fds(struct ping *p)
{
	int *fds[] = { &p->efd, &p->pefd, &p->sfd, &p->rsfd, &p->pipefd[0], &p->pipefd[1] };

	for (size_t k = 0; k < sizeof(fds) / sizeof(fds[0]); k++) {
		if (*fds[k] >= 0)
			close(*fds[k]);
		*fds[k] = -1;
	}
}

/* Everything but what must be made on the worker (setup_job). On failure
 * nothing is left to undo but the mutex and the condition variable. */
static int ping_init(struct ping *p, struct bench_worker *w, const struct afb_opts *o)
{
	sigset_t set;
	int r;

	memset(p, 0, sizeof(*p));
	p->efd = p->pefd = p->sfd = p->rsfd = -1;
	p->pipefd[0] = p->pipefd[1] = -1;
	p->w = w;
	p->gap_ns = o->gap_us * 1000u;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	r = af_loop_new(&p->loop, NULL);
	if (r < 0) {
		fprintf(stderr, "asyncflag-bench: af_loop_new: %s\n", af_strerror(r));
		return r;
	}
	p->ring_flags = bench_ring_flags(af_loop_features(p->loop));
	sigemptyset(&set);
	sigaddset(&set, SIG_SFD);
	p->efd = eventfd(0, EFD_CLOEXEC);
	p->pefd = eventfd(0, EFD_CLOEXEC);
	p->sfd = signalfd(-1, &set, SFD_CLOEXEC);
	sigemptyset(&set);
	sigaddset(&set, SIG_RSFD);
	/* Non-blocking, as the loop's: the ring polls and retries the read
	 * on the worker's thread instead of blocking a kernel worker. */
	p->rsfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (p->efd < 0 || p->pefd < 0 || p->sfd < 0 || p->rsfd < 0 ||
	    ((o->scenarios & (1u << AFB_GPIO)) && pipe2(p->pipefd, O_CLOEXEC) < 0)) {
		r = -errno;
		goto err_fds;
	}
	if ((r = af_flag_init(&p->flag, p->loop)) < 0)
		goto err_fds;
	if ((r = af_flag_init(&p->sflag, p->loop)) < 0)
		goto err_flag;
	if ((r = af_flag_init(&p->bflag, p->loop)) < 0)
		goto err_sflag;
	/* Not having GPIO is a row in the table, not a failure. */
	if ((o->scenarios & (1u << AFB_GPIO)) &&
	    afb_gpio_open(&p->gpio, p->loop, o, p->gpio_why, sizeof(p->gpio_why)) < 0)
		p->gpio = NULL;
	return 0;

err_sflag:
	af_flag_destroy(&p->sflag);
err_flag:
	af_flag_destroy(&p->flag);
err_fds:
	close_fds(p);
	/* It never ran, so it is bound to no thread yet. */
	af_loop_free(p->loop);
	p->loop = NULL;
	return r;
}

/* Only for the signal scenario, which runs after the two wake scenarios: a
 * loop that watches a signal keeps a signalfd read in its ring and so
 * sleeps in io_uring_enter(2), while one that watches none (what wake-cold
 * measures) may park in a bare FUTEX_WAIT (docs/flag.md, "How the loop
 * sleeps"). AF_PARK=0 shows wake-cold as a loop with a signalfd has it. */
static int watch_signals(struct ping *p)
{
	int r = af_signal_watch(&p->sflag, SIG_AF);

	return r < 0 ? r : af_signal_watch(&p->bflag, SIG_AFB);
}

/* Runs whichever of wake-cold, wake-hot and signal are asked for, on one
 * worker and one loop: @r is indexed by enum afb_scenario. */
int afb_run_wake(struct afb_result *r, const struct afb_opts *o)
{
	static const enum afb_scenario ids[] = { AFB_WAKE_COLD, AFB_WAKE_HOT, AFB_SIGNAL };
	struct bench_worker w;
	struct ping p;
	sigset_t set, old;
	int err, status = 0;

	/* signalfd needs its signal blocked in every thread, and so does the
	 * loop's own signalfd path: block them before the worker exists, so
	 * the worker inherits the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIG_SFD);
	sigaddset(&set, SIG_AFB);
	sigaddset(&set, SIG_RSFD);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	err = bench_worker_start(&w, o->cpu[1]);
	if (err < 0) {
		fprintf(stderr, "asyncflag-bench: worker thread: %s\n", strerror(-err));
		return -1;
	}
	err = ping_init(&p, &w, o);
	if (err < 0) {
		for (size_t k = 0; k < sizeof(ids) / sizeof(ids[0]); k++)
			snprintf(r[ids[k]].skipped, sizeof(r[ids[k]].skipped),
				 "could not set up: %s", af_strerror(err));
		snprintf(r[AFB_GPIO].skipped, sizeof(r[AFB_GPIO].skipped), "could not set up: %s",
			 af_strerror(err));
		r[AFB_GPIO_IRQ].hidden = r[AFB_GPIO_EDGE].hidden = true;
		status = err == -EPERM || err == -ENOSYS ? 0 : -1;
		goto out;
	}
	bench_worker_run(&w, setup_job, &p);
	bench_worker_wait(&w);
	for (size_t k = 0; k < sizeof(ids) / sizeof(ids[0]) && status == 0; k++) {
		if (!(o->scenarios & (1u << ids[k])))
			continue;
		if (ids[k] == AFB_SIGNAL && (err = watch_signals(&p)) < 0) {
			snprintf(r[AFB_SIGNAL].skipped, sizeof(r[AFB_SIGNAL].skipped),
				 "could not watch the signals: %s", af_strerror(err));
			continue;
		}
		status = scenario(&p, &r[ids[k]], o);
	}
	if (status == 0 && (o->scenarios & (1u << AFB_GPIO)))
		status = gpio_scenarios(&p, r, o);
	/* Its pins before the loop: no handler may set a flag of a freed loop. */
	afb_gpio_close(p.gpio);
	af_flag_destroy(&p.bflag);
	af_flag_destroy(&p.sflag);
	af_flag_destroy(&p.flag);
	/* The loop and the baselines' ring belong to the worker. */
	bench_worker_run(&w, teardown_job, &p);
	bench_worker_wait(&w);
	close_fds(&p);
out:
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	bench_worker_stop(&w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return status;
}

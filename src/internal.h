/* SPDX-License-Identifier: MIT */
/* Private structures shared by the library's source files. Never installed. */
#ifndef AF_INTERNAL_H
#define AF_INTERNAL_H

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "asyncflag.h"
#include "list.h"
#include "switch.h"

#if AF_RESUME_STUBS
/* The bodies behind resume_x86_64.S's stubs, typed as their public names. */
#define AF_RESUME_CALL(fn) __typeof__(fn) af__body_##fn;
#include "resume_calls.h"
#undef AF_RESUME_CALL
#endif

#define AF_API __attribute__((visibility("default")))

/* The blocking calls a task resumes in (the waits, yield, sleep, join;
 * the list is resume_calls.h). With AF_RESUME_STUBS (x86_64, asm switch)
 * each exported name is a stub in resume_x86_64.S that calls the C body,
 * af__body_<name>, and, when the body was switched away and back, returns
 * to its caller with an indirect jump, not a ret. A ret is predicted by the
 * CPU's return stack, which after a switch holds the calls of the task
 * that ran before: when two tasks block at two call sites, as in any
 * ping-pong, every resume's return to its caller was mispredicted. An
 * indirect jump is predicted by the branch history instead, which sees the
 * alternation. Define a body with AF_BLOCKING_API int AF_BODY(af_x)(...),
 * and call another such function from inside the library as
 * AF_BODY(af_y)(...), not through its stub. */
#if AF_RESUME_STUBS
#define AF_BLOCKING_API
#define AF_BODY(fn) af__body_##fn
#else
#define AF_BLOCKING_API AF_API
#define AF_BODY(fn) fn
#endif

/* The wake path: what runs between a set (a thread's, a signal's, an I/O
 * completion's) and the woken task, and the hop between two tasks. GCC puts
 * these in .text.hot, which the linker gathers from every object into one
 * run at the start of .text: after an idle gap every page and line of code
 * on that path is a TLB and cache miss, and spread over the library's 90 KiB
 * they were eight pages. */
#define AF__HOT __attribute__((hot))

/* ---- diagnostics --------------------------------------------------------- */

/* Report a programming error (debug builds print it; every build then
 * refuses the call). */
void af__misuse(const char *func, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define af_assert_return(expr, ret)                                            \
	do {                                                                   \
		if (__builtin_expect(!(expr), 0)) {                            \
			af__misuse(__func__, "invalid argument: %s is false",  \
				   #expr);                                     \
			return ret;                                            \
		}                                                              \
	} while (0)

/* ---- test hooks ------------------------------------------------------------ */

/* Points where a test may stall a thread to force an interleaving that the
 * scheduler would produce only rarely (tests set af__test_hook through the
 * static archive; it is never exported). */
enum af__hook_point {
	AF_HOOK_SET_PUBLISHED, /* af_flag_set: SET is visible, queueing not done */
	AF_HOOK_SET_PUSHED,    /* af_flag_set: on loop->pending, loop not kicked */
	AF_HOOK_KICK_WRITE,    /* af__loop_kick: won SLEEPING -> WOKEN, no write yet */
	AF_HOOK_SIGNAL,        /* the signal handler: flag loaded, not set yet */
	AF_HOOK_UNQUEUE,       /* af_flag_destroy holds the loop's pending stack */
	AF_HOOK_SIGWAIT,       /* loop: SLEEPING|SIGWAIT published, not waiting yet */
};

extern void (*_Atomic af__test_hook)(enum af__hook_point where, void *obj);

static inline void af__hook(enum af__hook_point where, void *obj)
{
	/* relaxed: a test installs the hook before it starts the threads
	 * that reach it (pthread_create orders the two). */
	void (*h)(enum af__hook_point, void *) =
		atomic_load_explicit(&af__test_hook, memory_order_relaxed);

	if (__builtin_expect(h != NULL, 0))
		h(where, obj);
}

/* ---- time ------------------------------------------------------------------ */

uint64_t af__now_ns(void);
/* now + timeout, saturating; a negative timeout is "never" (UINT64_MAX). */
uint64_t af__deadline(int64_t timeout_ns);
/* @ns as a relative kernel timeout, clamped to AF_TIMEOUT_MAX_S (timer.c). */
struct __kernel_timespec af__kernel_ts(uint64_t ns);

/* ---- timers (timer.c): a binary min-heap of deadlines ----------------------- */

struct af__timer {
	uint64_t deadline;
	uint64_t seq;        /* ties fire in the order they were armed */
	size_t index;        /* position in the heap + 1; 0 when not armed */
};

struct af__timer_heap {
	struct af__timer **items;
	size_t len, cap;
	uint64_t seq;
};

int af__timer_reserve(struct af__timer_heap *h, size_t n);
void af__timer_add(struct af__timer_heap *h, struct af__timer *t, uint64_t deadline);
void af__timer_remove(struct af__timer_heap *h, struct af__timer *t);
static inline struct af__timer *af__timer_top(const struct af__timer_heap *h)
{
	return h->len ? h->items[0] : NULL;
}
static inline bool af__timer_armed(const struct af__timer *t)
{
	return t->index != 0;
}
void af__timer_heap_free(struct af__timer_heap *h);

/* ---- stacks (stack.c) ------------------------------------------------------ */

struct af__stack {
	void *map;          /* the whole slot or mapping, guard included */
	size_t map_size;
	void *lo;           /* lowest usable byte, just above the guard */
	size_t size;        /* usable bytes */
	unsigned vg_id;     /* valgrind stack id */
	bool backed;        /* a slot used before and not trimmed since: its
			     * top pages are there, a read of them cannot fault */
};

/* Default-size stacks are slots carved from big mappings (arenas), so a
 * stack costs no mapping of its own where the kernel has guard markers. */
struct af__stack_arena {
	void *base;
	size_t len;
};

struct af__stack_pool {
	/* Freed slots, LIFO: [0, ncold) had their pages dropped, [ncold, len)
	 * still hold theirs (at most cap of them after af__stack_trim). Room
	 * for every slot carved, so that a put never allocates. */
	void **items;
	size_t len, ncold, room;
	unsigned cap;       /* af_loop_opts.stack_cache */
	size_t size;        /* the loop's default stack size: only it is pooled */
	char *next, *end;   /* the newest arena's slots not carved yet */
	size_t carved;
	struct af__stack_arena *arenas;
	size_t narenas, arenas_room;
	/* Freed task structs, LIFO through their first word (the most
	 * recently freed is the likeliest still cached): a spawn takes one
	 * instead of calling malloc, and af__stack_trim frees all but cap. */
	void *spare_tasks;
	size_t nspare_tasks;
};

#define AF_STACK_MIN ((size_t)16 * 1024)
#define AF_STACK_DEFAULT ((size_t)256 * 1024)
#define AF_STACK_MAX ((size_t)1 << 30)

size_t af__page_size(void);
size_t af__stack_round(size_t size);
int af__stack_get(struct af__stack_pool *pool, size_t size, struct af__stack *out);
void af__stack_put(struct af__stack_pool *pool, struct af__stack *st);
void af__stack_pool_init(struct af__stack_pool *pool, size_t size, unsigned cap);
void af__stack_pool_free(struct af__stack_pool *pool);
/* The loop is about to sleep: freed stacks past the cap give their pages
 * back now, off the path of the tasks that freed them. */
void af__stack_trim(struct af__stack_pool *pool);
/* A task struct of @size bytes, zeroed: a spare one or a new one (NULL
 * when there is no memory); and back to the spares. */
void *af__stack_pool_task_alloc(struct af__stack_pool *pool, size_t size);
void af__stack_pool_task_free(struct af__stack_pool *pool, void *task);
/* Whether guards are MADV_GUARD_INSTALL markers (Linux 6.13+) rather than
 * PROT_NONE mappings of their own; decided by the first guard. */
bool af__stack_guards_are_markers(void);
/* Install the process-wide SIGSEGV handler that names overflowing tasks
 * (once) and give the calling thread an alternate signal stack for it. */
int af__overflow_guard_enter(void **altstack);
void af__overflow_guard_leave(void *altstack);

/* ---- tasks (task.c) -------------------------------------------------------- */

enum af__task_state {
	AF_TASK_NEW,      /* spawned, never ran, in the run queue */
	AF_TASK_RUNNABLE, /* in the run queue */
	AF_TASK_RUNNING,
	AF_TASK_BLOCKED,  /* parked on something, maybe with a timer */
	AF_TASK_DONE,
};

/* How a parked task is taken off what it waits on. */
struct af__wait_ops {
	const char *what;
	/* The task leaves before it was woken (cancel, timeout): unlink it. */
	void (*detach)(struct af_task *t);
	/* The task was woken but is cancelled before it resumed: undo what the
	 * wake gave it (a lock passes on). May be NULL. */
	void (*revoke)(struct af_task *t);
	/* Waiting on this can be ended from outside the loop (a flag), so the
	 * loop must sleep rather than report a deadlock. */
	bool keeps_alive;
};

/* The waiters of one Event between two of its sets (event.c). A set
 * splices them onto the run queue in one step and each task's wake (its
 * result, timer, state) is done when it leaves the queue, so that a
 * fan-out passes over each task struct once, not twice. Until then a task
 * is still BLOCKED, and this record is what tells cancel, abandon and the
 * timers that it was woken. The loop owns it, not the Event, whose storage
 * may go away as soon as it is set. */
struct af__cohort {
	struct af__list waiters;     /* before the set: the Event's, in wait order */
	size_t n;                    /* tasks whose cohort this is */
	uint64_t round, stamp;       /* after it: what af__loop_push() gave each */
	bool woken;                  /* the set has spliced them */
	struct af__cohort *next;     /* loop->spare_cohorts */
};

struct af_task {
	/* What a wake, a hand-over and a resume touch comes first, in one
	 * line: the link, the wait, the result and state, the saved stack
	 * pointer (the context's first field); then the timer's slot, the
	 * queue stamps and the stack bounds that af__task_prefetch() reads. */
	struct af_loop *loop;
	/* The run queue, or an Event's or a Lock's waiters: a task is never
	 * on both, which is what lets a set splice a whole wait list onto the
	 * run queue. */
	struct af__node link;
	struct af__cohort *cohort;   /* waiting on an Event, or spliced by its set */
	const struct af__wait_ops *wait_ops; /* set while in a blocking call */
	void *wait_obj;
	int wake_result;
	uint8_t state;
	bool cancel_pending;
	bool started;
	bool detached;
	struct af__ctx ctx;
	struct af__timer timer;
	uint64_t stamp;              /* when it was queued, 0 if before every timer */
	uint64_t round;              /* loop->round when it was queued */
	int result;
	bool is_main;                /* af_loop_run() owns it: no join, no detach */
	struct af__stack stack;
	struct af__node all_node;    /* loop->tasks */
	uint64_t id;                 /* unique in its loop, never reused */
	struct af_task *joiner;
	af_task_fn fn;
	void *arg;
	size_t stack_size;
	char name[32];
};

/* Park the running task on @obj until af__task_wake(), a cancel or the
 * timeout (negative: none). The caller has already linked the task where a
 * waker will find it; on an early exit ops->detach unlinks it.
 * Returns the wake result: 0, -ECANCELED or -ETIMEDOUT. */
int af__task_block(const struct af__wait_ops *ops, void *obj, int64_t timeout_ns);
/* af__task_block() for @t, the running task, inlined into the caller when
 * there is neither a cancel to take, a timeout nor a keep-alive count to
 * keep: at the end of this file. */
static inline int af__task_block_fast(struct af_task *t, const struct af__wait_ops *ops,
				      void *obj, int64_t timeout_ns);
/* Make a blocked task runnable with @result (loop thread only): inline,
 * at the end of this file. */
static inline void af__task_wake(struct af_task *t, int result);
/* af__task_wake() for a task whose wait keeps nothing alive (Event, Lock):
 * one test fewer on every hop. */
static inline void af__task_ready(struct af_loop *loop, struct af_task *t, int result);
/* The calling task, or NULL; sets *err to -EPERM when there is none (or
 * -ECHILD in a child of fork()): inline, at the end of this file. */
static inline struct af_task *af__task_self(int *err);
void af__task_free(struct af_task *t);
void af__task_run(struct af_loop *loop, struct af_task *t);
/* Start fetching what running @t will touch first (its frames). */
void af__task_prefetch(const struct af_task *t);
/* The same for the run queue's head, and the fields that will give the
 * addresses of the next one's frames: call while the task before runs. */
void af__task_prefetch_queue(const struct af_loop *loop);
int af__task_new(struct af_loop *loop, struct af_task **out, af_task_fn fn,
		 void *arg, const struct af_task_opts *opts);
int af__task_cancel(struct af_task *t);
void af__task_abandon(struct af_task *t);

/* ---- Event cohorts (event.c) ------------------------------------------------ */

/* One more task will exist: make sure a cohort is spare for it (-ENOMEM). */
int af__cohort_reserve(struct af_loop *loop);
/* One task fewer exists: free a cohort past the one per task. */
void af__cohort_trim(struct af_loop *loop);
/* The loop is freed, and with its tasks every cohort is spare. */
void af__cohorts_free(struct af_loop *loop);
/* Whether @t (BLOCKED) is on the run queue, spliced there by a set but
 * not yet given its wake: inline, at the end of this file. */
static inline bool af__task_spliced(const struct af_task *t);
/* Give a spliced @t the wake the set left to it, with @result, leaving it
 * RUNNABLE where it is in the queue (cancel, abandon, its timer firing). */
static inline void af__cohort_settle(struct af_loop *loop, struct af_task *t, int result);

/* ---- flags (flag.c) -------------------------------------------------------- */

struct af__flag {
	/* AF_FLAG_* bits, the LIVE tag and the count of setters inside
	 * af_flag_set(): the only field setters read before they own the
	 * flag's queueing step. */
	_Atomic uint32_t state;
	/* Written by init and destroy only, read by init only (never by a
	 * setter): with the LIVE tag, tells a live flag from stack garbage. */
	uint32_t magic;
	struct af_loop *loop;
	struct af_task *waiter;      /* loop thread only */
	struct af__flag *next;       /* link in loop->pending while QUEUED */
};

#define AF_FLAG_SET       (1u << 0)
#define AF_FLAG_WAITING   (1u << 1)
#define AF_FLAG_QUEUED    (1u << 2)
/* The waiter is the loop's polled one (loop->polled): a set needs no push,
 * the loop reads the word itself at its next batch boundary. */
#define AF_FLAG_POLLED    (1u << 3)
/* The polled flag's loop may be asleep: it published SLEEPING and then
 * looked at this word (sleep_until() in loop.c), so a set must kick it.
 * Without the bit the loop is awake and reads the word again before it can
 * sleep, and a set needs nothing but its CAS. Written by the loop's thread
 * only: set on its polled flag before a sleep, cleared by the waiter's
 * clear or detach (loop.c, polled_arm_sleep(), says why not at the wake). */
#define AF_FLAG_SLEEPER   (1u << 4)
/* Between init and destroy the tag bits hold AF_FLAG_LIVE. */
#define AF_FLAG_TAG_MASK  (0xffu << 5)
#define AF_FLAG_LIVE      (0xa5u << 5)
/* Setters between queueing the flag and their last touch of it. */
#define AF_FLAG_BUSY_ONE  (1u << 13)
#define AF_FLAG_BUSY_MASK (~0u << 13)
#define AF_FLAG_MAGIC     0x61664c47u /* "afLG" */

/* Whether @flag is between af_flag_init() and af_flag_destroy(). */
bool af__flag_live(const struct af_flag *flag);

/* Move waiters of flags set since the last call to the run queue. */
void af__flag_collect(struct af_loop *loop);
/* Take @f out of loop->pending (loop thread, or loop not running). */
void af__flag_unqueue(struct af__flag *f);
/* Unqueue every flag: the loop is being freed. */
void af__flag_release_all(struct af_loop *loop);
/* Flags hold a reference on their loop's struct (loop.c), so that one
 * freed with live flags stays valid memory for their sets and destroys. */
void af__loop_ref(struct af_loop *loop);
void af__loop_unref(struct af_loop *loop);

/* ---- I/O operations (io.c), as the loop's backend runs them ----------------- */

enum af__io_kind {
	AF__IO_READ,
	AF__IO_WRITE,
	AF__IO_READV,
	AF__IO_WRITEV,
	AF__IO_RECV,
	AF__IO_SEND,
	AF__IO_ACCEPT,
	AF__IO_CONNECT,
	AF__IO_POLL,
	AF__IO_CLOSE,
};

/* One call's arguments; each kind reads the fields its system call takes. */
struct af__io {
	enum af__io_kind kind;
	int fd;
	void *buf;
	const struct iovec *iov;
	unsigned len;            /* bytes, or iovecs for READV/WRITEV */
	uint64_t offset;         /* (uint64_t)-1: the file position */
	int flags;               /* recv/send/accept flags, poll events */
	struct sockaddr *addr;
	socklen_t *addrlen;
	const struct sockaddr *caddr;
	socklen_t caddrlen;
};

/* ---- the loop (loop.c) ----------------------------------------------------- */

struct af__backend;
struct af__epoll;

/* An operation in flight on the ring; cqe->user_data points at it. */
struct af__op {
	void (*complete)(struct af_loop *loop, struct af__op *op, int res,
			 unsigned cqe_flags);
};

/* signal.c: a loop's signalfd for the watched signals of its flags. The
 * loop (its backend) keeps one read of it in flight and hands what it reads
 * to op.complete; signal.c owns the rest of the block, which the loop frees
 * with free() once the last reference to the loop is gone. */
struct af__sigfd {
	int fd;
	bool armed;              /* loop thread: its read is in flight */
	struct af__op op;
	void *buf;
	unsigned len;
	/* The signalfd's mask, af__signal_bit() of each signal, for a loop
	 * that sleeps in sigtimedwait() instead of the ring: changed under
	 * signal.c's lock, read by the loop at its sleeps. */
	_Atomic uint64_t watched;
	/* A signal that such a sleep took from the pending set, on the loop's
	 * thread with the loop AWAKE: what the read's completion would do. */
	void (*deliver)(int signo);
};

/* @signo's bit in af__sigfd.watched (signal.c asserts NSIG <= 65). */
static inline uint64_t af__signal_bit(int signo)
{
	return 1ull << (signo - 1);
}

/* Loop sleep states, for the flag wake-up handshake (flag.c). */
enum {
	AF_AWAKE = 0,    /* running tasks: setters need no system call */
	AF_SLEEPING = 1, /* about to block in the kernel, or blocked */
	AF_WOKEN = 2,    /* a setter has kicked (or is kicking) this sleep */
	AF_DEAD = 3,     /* af_loop_free() ran: nobody may write the eventfd */
};
#define AF_SLEEP_MASK 3u
/* Beside SLEEPING: this sleep is a FUTEX_WAIT on sleep_state itself, not a
 * wait on the backend (loop.c, park()), so the kick is a FUTEX_WAKE
 * whatever the backend's kick is. Set and cleared by the loop only, in the
 * RMWs that publish and end the sleep. */
#define AF_SLEEP_PARKED 4u
/* Beside SLEEPING: this sleep is a sigtimedwait() for the watched signals
 * and AF__KICK_SIGNAL (loop.c, wait_for_signals()), so the kick is that signal,
 * sent to the loop's thread. Set and cleared like PARKED. */
#define AF_SLEEP_SIGWAIT 8u
/* How the loop sleeps, beside SLEEPING: none of them is a kicker. */
#define AF_SLEEP_HOW (AF_SLEEP_PARKED | AF_SLEEP_SIGWAIT)
/* Counts kickers between winning SLEEPING -> WOKEN and the end of their
 * kick (a write(2), a FUTEX_WAKE or a tgkill()), so that af_loop_free()
 * closes the eventfd and frees the word only after them. */
#define AF_KICKER_ONE 16u
/* The kick of a loop asleep in sigtimedwait(): SIGURG, as Go's runtime
 * uses it, because its default is to be ignored (a late kick does nothing)
 * and almost nothing else sends it (only a socket's out-of-band data, to a
 * process that asked). */
#define AF__KICK_SIGNAL SIGURG

/* How an io_uring loop notices an eventfd write (src/loop/uring.c). */
enum {
	AF__WAKE_POLL = 0, /* a multishot POLL_ADD, armed once, never drained */
	AF__WAKE_READ = 1, /* a read re-armed after every kick (ppoll mode, < 5.13) */
	AF__WAKE_FUTEX = 2, /* IORING_OP_FUTEX_WAIT on sleep_state (6.7+), no eventfd */
};

struct af_loop {
	const struct af__backend *backend; /* src/loop/backend.h */
	struct io_uring ring;    /* io_uring backend */
	struct af__epoll *epoll; /* epoll backend */
	unsigned features;
	unsigned ring_entries;

	/* The thread the ring is bound to (0: none yet), claimed by CAS;
	 * atomic because misuse checks read it from other threads. */
	_Atomic unsigned long owner;
	_Atomic bool running;
	unsigned fork_gen;       /* af__fork_gen when the loop was created */

	struct af__ctx sched_ctx; /* the thread's own stack, between tasks */
	struct af_task *current;
	struct af_task *main_task; /* af_loop_run()'s, while it runs */

	struct af__list runq;
	size_t runq_len;
	/* Event cohorts not in use, and how many exist: at least one per
	 * task, reserved at spawn, so that a wait never allocates. */
	struct af__cohort *spare_cohorts;
	size_t ncohorts;
	uint64_t round;          /* batches run so far */
	size_t budget;           /* tasks of the current batch still to run */
	/* The flag whose waiter the loop finds by reading the flag's word at
	 * every batch boundary (flag.c, "the polled flag"): the first waiter
	 * to park while none is polled. Loop thread only. */
	struct af__flag *polled;
	bool may_poll;           /* AF_POLL=0 in the environment: never */
	uint64_t batch_start;    /* when it began, if timers were armed */
	uint64_t clock_last;     /* af__loop_clock()'s last reading */
	bool ppoll_mode;         /* sleep in ppoll (valgrind, TSan) */
	bool reaping;            /* inside reap(): no flush may reap again */
	struct af__timer_heap timers;
	struct af__list tasks;   /* every task not yet freed */
	size_t ntasks;
	size_t nalive;           /* tasks not DONE */
	size_t nkeepalive;       /* tasks parked on something outside the loop */
	size_t ninflight;        /* ring operations besides the eventfd read, or
				  * epoll readiness waits */
	uint64_t task_seq;       /* the last task id handed out */
	uint64_t outside_wakes;  /* tasks woken by timers, flags, jobs, I/O */

	/* Flag wake-up path. pending is a lock-free stack of flags set while a
	 * task waited on them; setters push, the loop takes the whole stack.
	 * Everything a set reads or writes in the loop shares one line, which
	 * the loop's own per-hop writes (the counts above) stay off: a setter
	 * whose CPU was idle misses on one line, not three, its push does not
	 * take the counts' line from the loop, and the loop's checks for sets
	 * and finished jobs read this one line. */
	_Alignas(64) _Atomic(struct af__flag *) pending;
	_Atomic unsigned sleep_state; /* AF_AWAKE..AF_DEAD, + AF_KICKER_ONE each */
	int efd;
	bool kick_futex;         /* kicks are FUTEX_WAKE on sleep_state; set before
				  * the first sleep, never changed */
	/* af_run_blocking(): finished jobs come back on a lock-free stack,
	 * like flags, and wake the loop the same way. Here because the loop
	 * reads it wherever it reads pending. */
	_Atomic(struct af__job *) jobs_done;
	/* The rest of the line: the loop's own, read and written at its sleeps. */
	uint64_t efd_value;
	struct af__op efd_op;
	bool efd_armed;
	bool efd_expected;       /* a write happened: reap its completion */
	uint8_t efd_wake;        /* AF__WAKE_*: how the io_uring sleep sees a kick */
	bool may_park;           /* sleeps may be a bare FUTEX_WAIT (AF_PARK) */
	bool may_sigwait;        /* ... or a sigtimedwait() (AF_PARK, the kick signal) */
	uint8_t signal_score;    /* 0..3: + a watched signal read, - a kick (loop.c) */
	bool sigfd_known;        /* the last arm saw loop->sigfd (collect()) */
	/* Off the line: flag init and destroy write these from any thread. */
	struct io_uring_sqe forked_sqe; /* af__loop_sqe() in a child of fork() */
	_Atomic unsigned long refs;   /* 1 for af_loop_free(), 1 per live flag */
	pthread_mutex_t unqueue_lock; /* serialises af__flag_unqueue() */
	uint64_t spin_ns;        /* af_loop_opts.spin_ns: spin this long before a sleep */
	int pid, tid;            /* the loop's thread, for the sigwait kick */
	/* Sets made by signal handlers for this loop's flags, since the loop
	 * last looked (loop.c, note_kick()): a kick they made is a signal's. */
	_Atomic unsigned signal_sets;
	/* Set once by af_signal_watch() on any thread, under its lock. */
	_Atomic(struct af__sigfd *) sigfd;

	struct af__stack_pool stacks;
	size_t stack_size;

	struct af__pool *pool;   /* af_run_blocking()'s threads */
	unsigned blocking_threads;
	size_t njobs;            /* jobs queued or running */
};

/* The loop running on this thread. initial-exec so the overflow handler
 * and af_flag_set() can read it from a signal handler without a call into
 * the dynamic linker. */
extern __thread struct af_loop *af__tls_loop
	__attribute__((tls_model("initial-exec")));

/* Now by @loop's clock, which strictly increases (timer.c); loop thread. */
uint64_t af__loop_clock(struct af_loop *loop);

static inline struct af_loop *af__loop_here(void)
{
	return af__tls_loop;
}

/* Queue a task at the back of the run queue: inline, at the end of this
 * file. */
static inline void af__loop_push(struct af_loop *loop, struct af_task *t);
void af__loop_unqueue(struct af_loop *loop, struct af_task *t);
/* Switch from the running task to the next one the loop would run, or to
 * the loop's own context when only it can go on: inline, at the end of
 * this file, for the common case; af__loop_park_slow() for the rest. */
static inline void af__loop_park(struct af_loop *loop, struct af_task *t);
void af__loop_park_slow(struct af_loop *loop, struct af_task *t);
/* The end of af__loop_park()'s hand-over to @next, popped from a queue
 * that has more tasks: start their loads, then switch. */
void af__loop_hop_prefetching(struct af_loop *loop, struct af_task *t, struct af_task *next);
/* A watched signal was read (loop thread): the next sleeps lean towards
 * sigtimedwait() (loop.c). */
void af__loop_signal_read(struct af_loop *loop);
/* Whether the loop's next sleep, if the backend has nothing else in the
 * kernel, will be a sigtimedwait() (loop.c); loop thread. */
bool af__loop_sigwait_wanted(struct af_loop *loop);
/* A flag watches the kick signal itself: from their next sleep on, no
 * loop sleeps in sigtimedwait() (loop.c); any thread. */
void af__loop_kick_signal_taken(void);
/* A new signalfd mask was published: kick @loop if it sleeps in
 * sigtimedwait() with the old one; any thread. */
void af__loop_kick_if_sigwait(struct af_loop *loop);
/* Wake a sleeping loop from any thread or signal handler. */
void af__loop_kick(struct af_loop *loop);
/* The io_uring submission slot, flushing the queue when it is full. */
struct io_uring_sqe *af__loop_sqe(struct af_loop *loop);

/* Submit what is queued, reaping completions if the kernel pushes back. */
void af__loop_flush(struct af_loop *loop);

/* Bumped in every child fork() makes (pthread_atfork): process-wide by
 * nature. A loop whose fork_gen differs was inherited from a parent: its
 * ring is not mapped here (MADV_DONTFORK), and every call fails. */
extern _Atomic unsigned af__fork_gen;
static inline bool af__loop_forked(const struct af_loop *loop)
{
	/* relaxed: written only in the child's atfork handler, on this
	 * thread, before fork() returned to it. */
	return atomic_load_explicit(&af__fork_gen, memory_order_relaxed) != loop->fork_gen;
}

unsigned af__ctx_features(void);

/* ---- blocking jobs (blocking.c) -------------------------------------------- */

struct af__job;
struct af__pool;
void af__blocking_collect(struct af_loop *loop);
/* Run @fn(@arg) on the pool and wait until it returned, through any cancel
 * (which then stays pending for the next blocking call): for work that
 * uses the caller's memory. Returns 0 with *result, -ENOMEM or -EAGAIN. */
int af__blocking_run_through(struct af_task *t, af_task_fn fn, void *arg, int *result);
void af__blocking_shutdown(struct af_loop *loop);

/* ---- the scheduler's hot path ------------------------------------------------
 * Inline, because an Event round trip is little more than these: every call
 * level costs a return that the CPU mispredicts after a switch (its return
 * stack holds the other task's calls). The rules they keep are loop.c's and
 * docs/loop-and-tasks.md's; the rare cases are out of line there. */

static inline struct af_task *af__task_self(int *err)
{
	struct af_loop *loop = af__tls_loop;
	struct af_task *t = loop ? loop->current : NULL;

#if AF_DEBUG && AF_RESUME_STUBS
	/* Nearly every blocking call's body starts here, so debug builds check
	 * that resume_x86_64.S's stubs entered it with the stack the ABI
	 * wants: a frame address that is a multiple of 16. A library bug, not
	 * a caller's: it stops. */
	if (__builtin_expect(((uintptr_t)__builtin_frame_address(0) & 15) != 0, 0)) {
		af__misuse(__func__, "internal error: the stack is misaligned on entry "
				     "to a blocking call (resume_x86_64.S)");
		__builtin_trap();
	}
#endif

	if (__builtin_expect(!t, 0)) {
		*err = -EPERM;
		return NULL;
	}
	/* A task that called fork(), in the child: the loop is the
	 * parent's, its ring not mapped here. */
	if (__builtin_expect(af__loop_forked(loop), 0)) {
		*err = -ECHILD;
		return NULL;
	}
	return t;
}

static inline void af__loop_push(struct af_loop *loop, struct af_task *t)
{
	t->round = loop->round;
	/* Stamps order queued tasks against due timers. With no timer armed
	 * any later timer is due after this push, so 0 orders correctly and
	 * spares the clock read on the hot wake path. */
	t->stamp = loop->timers.len ? af__loop_clock(loop) : 0;
	af__list_push_back(&loop->runq, &t->link);
	loop->runq_len++;
}

static inline void af__task_ready(struct af_loop *loop, struct af_task *t, int result)
{
	if (af__timer_armed(&t->timer))
		af__timer_remove(&loop->timers, &t->timer);
	t->wake_result = result;
	t->state = AF_TASK_RUNNABLE;
	af__loop_push(loop, t);
}

/* af__task_ready() when no timer is armed anywhere (loop->timers.len is
 * 0), so neither is @t's, and its push needs no clock: an Event's hot
 * set. The caller tested timers.len; said again here, the compiler would
 * load it again after the stores to @t, which may alias it. */
static inline void af__task_ready_untimed(struct af_loop *loop, struct af_task *t, int result)
{
	t->wake_result = result;
	t->state = AF_TASK_RUNNABLE;
	t->round = loop->round;
	t->stamp = 0;
	af__list_push_back(&loop->runq, &t->link);
	loop->runq_len++;
}

static inline bool af__task_spliced(const struct af_task *t)
{
	return t->cohort && t->cohort->woken;
}

/* @t stops pointing at its cohort; the last one out makes it spare. */
static inline void af__cohort_leave(struct af_loop *loop, struct af_task *t)
{
	struct af__cohort *c = t->cohort;

	t->cohort = NULL;
	if (--c->n == 0) {
		c->next = loop->spare_cohorts;
		loop->spare_cohorts = c;
	}
}

static inline void af__cohort_settle(struct af_loop *loop, struct af_task *t, int result)
{
	if (af__timer_armed(&t->timer))
		af__timer_remove(&loop->timers, &t->timer);
	t->round = t->cohort->round;
	t->stamp = t->cohort->stamp;
	t->wake_result = result;
	t->state = AF_TASK_RUNNABLE;
	af__cohort_leave(loop, t);
}

/* @t leaves the run queue to run. One spliced there by a set gets that
 * wake now: result 0 and no timer. Its round and stamp only place it in
 * the queue it is leaving. With no timer armed anywhere its own cannot
 * be, and its line stays untouched. */
static inline void af__task_dequeued(struct af_loop *loop, struct af_task *t)
{
	if (t->cohort) {
		if (loop->timers.len && af__timer_armed(&t->timer))
			af__timer_remove(&loop->timers, &t->timer);
		t->wake_result = 0;
		af__cohort_leave(loop, t);
	}
	t->state = AF_TASK_RUNNING;
}

/* af__task_dequeued() when no timer is armed anywhere: the caller tested
 * loop->timers.len, which the compiler cannot know is still 0 here. */
static inline void af__task_dequeued_untimed(struct af_loop *loop, struct af_task *t)
{
	if (t->cohort) {
		t->wake_result = 0;
		af__cohort_leave(loop, t);
	}
	t->state = AF_TASK_RUNNING;
}

static inline void af__task_wake(struct af_task *t, int result)
{
	struct af_loop *loop = t->loop;

	if (t->wait_ops && t->wait_ops->keeps_alive)
		loop->nkeepalive--;
	af__task_ready(loop, t, result);
}

/* Wake the polled flag's waiter if the flag was set: the part of
 * af__flag_collect() that every batch boundary does, also where the next
 * batch begins without the loop's context. A flag that is also on the
 * pending stack (QUEUED) is left to the stack, which wakes it in its turn.
 * relaxed, on aarch64 as on x86: the load only decides to wake; the woken
 * wait's acq_rel clear of the word is what orders the setter's writes
 * before the waiter's reads, and a set this load misses is seen by a later
 * boundary or by sleep_until()'s OR of SLEEPER before the loop sleeps. The
 * flag is live: its waiter is parked, and destroy refuses a flag with a
 * waiter. */
static inline void af__flag_take_polled(struct af_loop *loop)
{
	struct af__flag *f = loop->polled;

	if (f && (atomic_load_explicit(&f->state, memory_order_relaxed) &
		  (AF_FLAG_SET | AF_FLAG_QUEUED)) == AF_FLAG_SET) {
		loop->polled = NULL;
		af__task_wake(f->waiter, 0);
		loop->outside_wakes++;
	}
}

/* Whether the next batch may begin without the loop's context: only when
 * collect() would find nothing (no flag set, no job done, nothing on the
 * ring or in epoll that a peek could reap) and drive() has nothing to do
 * between batches (the main task runs, so there is nothing to cancel).
 * The caller checks for a fork. */
static inline bool af__loop_quiet(const struct af_loop *loop)
{
	/* relaxed, on aarch64 as on x86: these loads only decide whether to
	 * look now, and read nothing through the pointers. A push they miss
	 * (coherence makes it visible to a later load) is taken at a later
	 * boundary, or by collect() before the loop can sleep, which is all
	 * a setter that saw the loop AWAKE relies on; collect() takes the
	 * stacks with acquire. */
	return loop->ninflight == 0 && !loop->efd_expected &&
	       loop->main_task->state != AF_TASK_DONE &&
	       atomic_load_explicit(&loop->pending, memory_order_relaxed) == NULL &&
	       atomic_load_explicit(&loop->jobs_done, memory_order_relaxed) == NULL;
}

/* Fan-out: a batch of many tasks woken together resumes each on a cold
 * stack and task struct, and in a VM a TLB miss is a two-level page walk.
 * Start the loads one task ahead, while the next runs: the stack frames of
 * the task after it (whose struct an earlier hop fetched) and the struct of
 * the one after that. In a ping-pong the queue is empty here: one load. */
static inline void af__loop_prefetch(const struct af_loop *loop)
{
	if (loop->runq.head)
		af__task_prefetch_queue(loop);
}

/* A batch begins: tasks queued from now on carry the new round number and
 * wait for the next one. */
static inline void af__loop_batch_begin(struct af_loop *loop)
{
	loop->round++;
	loop->budget = loop->runq_len;
	loop->batch_start = loop->timers.len ? af__loop_clock(loop) : 0;
}

/* The common hand-over: no timer armed (none can be due), the next task
 * has run before (only the loop's context starts tasks), and either the
 * batch has tasks left or the next batch may begin at once. Anything else
 * is af__loop_park_slow()'s, which decides the same way with timers. The
 * caller has made sure this is no child of fork(): an Event wait tests it
 * on entry, and nothing in between can fork, so testing here too would
 * test twice on every hop. */
static inline void af__loop_hand_over(struct af_loop *loop, struct af_task *t, bool lean)
{
	struct af__node *n = loop->runq.head, *after;
	struct af_task *next;

	if (__builtin_expect(!n || loop->timers.len, 0))
		goto slow;
	next = af__container_of(n, struct af_task, link);
	if (__builtin_expect(!next->started, 0))
		goto slow;
	if (loop->budget == 0) {
		if (!af__loop_quiet(loop))
			goto slow;
		af__flag_take_polled(loop);
		/* A new batch, begun here: af__loop_batch_begin() with no
		 * timer armed, so with no clock to read. */
		loop->round++;
		loop->budget = loop->runq_len;
		loop->batch_start = 0;
	}
	loop->budget--;
	/* af__list_pop_front() of the head in hand. */
	after = n->next;
	loop->runq.head = after;
	n->next = NULL;
	if (after)
		after->prev = NULL;
	else
		loop->runq.tail = NULL;
	loop->runq_len--;
	af__task_dequeued_untimed(loop, next);
	/* Fan-out: start the next tasks' loads. @lean: out of line, so
	 * that on the ping-pong's hop, where the queue is empty now and
	 * there is nothing to prefetch, only t lives across a call (the
	 * switch; t->loop gives @loop back after it): one register to save
	 * instead of four. The other callers keep more across the switch
	 * anyway, and a fan-out's waits mostly go through them: for them
	 * the call level would only cost. */
	if (__builtin_expect(after != NULL, 0)) {
		if (lean) {
			af__loop_hop_prefetching(loop, t, next);
			return;
		}
		af__task_prefetch_queue(loop);
	}
	/* The task that blocked runs next (it yielded alone). */
	if (next == t)
		return;
	af__ctx_switch(&t->ctx, &next->ctx);
	/* Whoever switched back to us (the loop's context or a task that
	 * blocked) left current alone; named only now because until the
	 * switch left our stack a fault on it (an overflow) was ours, and
	 * the overflow report names current. */
	t->loop->current = t;
	return;
slow:
	af__loop_park_slow(loop, t);
}

/* For a caller that has made sure this is no child of fork() and keeps
 * nothing but @t across the hand-over: the Event's common wait. */
static inline void af__loop_park_unforked(struct af_loop *loop, struct af_task *t)
{
	af__loop_hand_over(loop, t, true);
}

/* Any other blocking call: in a child of fork() the slow path stops
 * before it touches anything of the parent's. */
static inline void af__loop_park(struct af_loop *loop, struct af_task *t)
{
	if (__builtin_expect(af__loop_forked(loop), 0))
		af__loop_park_slow(loop, t);
	else
		af__loop_hand_over(loop, t, false);
}

static inline int af__task_block_fast(struct af_task *t, const struct af__wait_ops *ops,
				      void *obj, int64_t timeout_ns)
{
	if (__builtin_expect(t->cancel_pending || timeout_ns >= 0 || ops->keeps_alive, 0))
		return af__task_block(ops, obj, timeout_ns);
	t->wait_ops = ops;
	t->wait_obj = obj;
	t->state = AF_TASK_BLOCKED;
	af__loop_park(t->loop, t);
	t->wait_ops = NULL;
	t->wait_obj = NULL;
	return t->wake_result;
}

#endif

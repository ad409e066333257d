/* SPDX-License-Identifier: MIT */
/*
 * unix-control: a daemon's control interface on a Unix stream socket.
 *
 * Each connection carries one command line and gets one reply line:
 *
 *     ping         pong
 *     status       uptime 12 s, served 3 commands
 *     hash FILE    fnv1a64 e60e7ee648829675, 13 bytes
 *     help         commands: ping, status, hash FILE, quit
 *     quit         bye (and the daemon exits)
 *     (other)      error: unknown command
 *
 * What it shows:
 * - one task per connection with a buffered stream over its socket
 *   (docs/stream.md): af_stream_readline_timeout() reads the line, the
 *   timeout covering the whole line and the stream's fixed buffer bounding
 *   its length, so a client that connects and says nothing, or trickles
 *   one byte at a time, is answered "error: timed out" and dropped instead
 *   of holding its task for ever; af_stream_write() and
 *   af_stream_drain_timeout() send the reply;
 * - af_run_blocking() for work that would stall the loop: "hash" reads the
 *   file with plain read(2) and hashes it on a worker thread (standing in
 *   for a library with no non-blocking interface) while the loop goes on
 *   answering other clients;
 * - shutting down from inside ("quit") or from outside (SIGINT, SIGTERM) by
 *   cancelling the acceptor and the connection tasks; the socket file is
 *   removed on the way out.
 *
 * usage: unix-control [--timeout-ms N] [PATH]
 *        unix-control --demo
 *   PATH  the socket to create; by default one in a new temporary directory.
 *         The first line of output is "listening on PATH".
 *   --timeout-ms N  how long a client has to send its line (default 5000)
 *   --demo  also run a client task that talks to the daemon through the
 *           socket and prints the conversation, then sends "quit"
 *
 * Try it: ./unix-control /tmp/ctl.sock &
 *         echo status | nc -U /tmp/ctl.sock   (or socat - UNIX-CONNECT:...)
 *
 * Build: cc unix-control.c $(pkg-config --cflags --libs asyncflag)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <asyncflag.h>

#define LINE_MAX_LEN 256        /* a command line, newline included */
#define NS_PER_MS INT64_C(1000000)

struct conn {
	struct conn *prev, *next;
	struct af_task *task;
	int fd;                  /* -1 once the connection task has closed it */
	unsigned id;
};

struct daemon {
	int listen_fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char tmpdir[PATH_MAX];   /* "" unless we created one */
	bool bound;              /* path is our socket file, to remove */
	int64_t timeout_ns;
	int64_t started_ns;
	unsigned long long served;
	unsigned accepted;
	bool stopping;
	struct conn *conns;
	struct af_task *acceptor; /* NULL once joined */
	struct af_flag signalled; /* set by SIGINT and SIGTERM */
	struct hash_job *abandoned; /* see struct hash_job */
	FILE *log;               /* the daemon's messages: stdout, stderr in --demo */
	bool demo;
};

/* Static: the signal handler may set the flag until it is unwatched. */
static struct daemon daemon_state = { .listen_fd = -1 };

static int fail(const char *what, int err)
{
	fprintf(stderr, "unix-control: %s: %s\n", what, af_strerror(err));
	return err;
}

static int64_t now_ns(void)
{
	struct timespec ts;

	/* CLOCK_MONOTONIC cannot fail with a valid pointer. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A stream over a connected socket: the read buffer is the line limit, so
 * a client that never sends a newline costs no more than that. */
static int open_stream(struct af_stream **out, int fd)
{
	const struct af_stream_opts opts = {
		.read_buffer = LINE_MAX_LEN,
		.write_buffer = LINE_MAX_LEN,
	};

	return af_stream_new(out, fd, &opts);
}

/*
 * Write @text and drain it within @timeout_ns: the peer may have stopped
 * reading. On a socket the stream drains with send(2), so a peer that has
 * gone is -EPIPE, not a SIGPIPE that kills the daemon.
 */
static int say(struct af_stream *s, const char *text, int64_t timeout_ns)
{
	int n = af_stream_write(s, text, strlen(text));

	return n < 0 ? n : af_stream_drain_timeout(s, timeout_ns);
}

/* ---- hash FILE on a worker thread ----------------------------------------- */

/*
 * What af_run_blocking() hands the worker. If the task that asked is
 * cancelled (the daemon stops), af_run_blocking() returns -ECANCELED at
 * once, and the job may still be queued or running (or, when the cancel
 * came before the call, never run: the caller cannot tell which). So the
 * job cannot live on the task's stack, and neither side can know when to
 * free it. It goes on the daemon's list of abandoned jobs instead, freed
 * after af_loop_free(), which waits for every worker. The task also
 * raises `stop`, so that a long hash ends early rather than hold up the
 * exit.
 */
struct hash_job {
	struct hash_job *next;   /* on daemon.abandoned */
	atomic_bool stop;
	uint64_t hash;
	unsigned long long size;
	char path[];
};

/* Runs on a worker thread: plain blocking calls are fine here, touching the
 * loop or its tasks is not. Returns 0 or -errno. */
static int hash_file(void *arg)
{
	struct hash_job *job = arg;
	unsigned char buf[65536];
	uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a 64 offset basis */
	struct stat st;
	ssize_t n;
	int fd, r = 0;

	/* O_NONBLOCK: opening a FIFO would otherwise wait for a writer. It
	 * does not affect reads from a regular file. */
	fd = open(job->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out_close;
	}
	/* A device such as /dev/zero would never end. */
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out_close;
	}
	job->size = 0;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		for (ssize_t i = 0; i < n; i++) {
			h ^= buf[i];
			h *= UINT64_C(0x100000001b3); /* FNV 64 prime */
		}
		job->size += (unsigned long long)n;
		if (atomic_load_explicit(&job->stop, memory_order_relaxed)) {
			r = -ECANCELED;
			break;
		}
	}
	job->hash = h;
out_close:
	close(fd);
	return r;
}

static void cmd_hash(struct daemon *d, const char *path, char *reply, size_t size)
{
	size_t len = strlen(path);
	struct hash_job *job = calloc(1, sizeof(*job) + len + 1);
	int r, result;

	if (!job) {
		snprintf(reply, size, "error: out of memory\n");
		return;
	}
	atomic_init(&job->stop, false);
	memcpy(job->path, path, len + 1);
	r = af_run_blocking(hash_file, job, &result);
	if (r == -ECANCELED) {
		/* The job may run yet: keep it (see struct hash_job). */
		atomic_store_explicit(&job->stop, true, memory_order_relaxed);
		job->next = d->abandoned;
		d->abandoned = job;
		snprintf(reply, size, "error: shutting down\n");
		return;
	}
	if (r < 0)
		snprintf(reply, size, "error: %s\n", af_strerror(r));
	else if (result == -EINVAL)
		snprintf(reply, size, "error: not a regular file\n");
	else if (result < 0) /* from open or read: strerror's text says it */
		snprintf(reply, size, "error: %s\n", strerror(-result));
	else
		snprintf(reply, size, "fnv1a64 %016llx, %llu bytes\n",
			 (unsigned long long)job->hash, job->size);
	free(job);
}

/* ---- the daemon -------------------------------------------------------------- */

/* Cancel the acceptor and every connection but the caller's. */
static void stop_daemon(struct daemon *d, const char *why)
{
	int r;

	if (d->stopping)
		return;
	d->stopping = true;
	fprintf(d->log, "stopping: %s\n", why);
	if (d->acceptor) {
		r = af_task_cancel(d->acceptor);
		if (r < 0 && r != -EALREADY)
			fail("af_task_cancel", r);
	}
	for (struct conn *c = d->conns; c; c = c->next) {
		if (c->task == af_task_current())
			continue;
		r = af_task_cancel(c->task);
		if (r < 0 && r != -EALREADY)
			fail("af_task_cancel", r);
	}
}

/*
 * Read one line into @line (NUL-terminated, newline and any CR removed)
 * within @timeout_ns. A client that closes after a partial line has sent
 * that line. Returns its length or -errno: -ETIMEDOUT, -EMSGSIZE for a
 * line that does not fit, -ENODATA if the client sent nothing at all. One
 * command per connection: anything after the newline is ignored.
 */
static int read_line(struct af_stream *s, char *line, size_t size, int64_t timeout_ns)
{
	int n = af_stream_readline_timeout(s, line, size, timeout_ns);

	if (n == 0)
		return -ENODATA;
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	return n;
}

/*
 * Closing a socket with input still unread makes the kernel reset the
 * connection, and the client may get "connection reset" instead of the
 * reply we just sent. So after a line too long, tell the client we are
 * done (shutdown) and discard what it still sends until it closes, for at
 * most the timeout.
 */
static void discard_input(struct af_stream *s, int64_t timeout_ns)
{
	int64_t deadline = now_ns() + timeout_ns, left;
	char scrap[LINE_MAX_LEN];

	if (shutdown(af_stream_fd(s), SHUT_WR) < 0)
		return;
	while ((left = deadline - now_ns()) > 0) {
		if (af_stream_read_timeout(s, scrap, sizeof(scrap), left) <= 0)
			return; /* closed, timed out, cancelled or failed: done */
	}
}

/* Answer @line into @reply. Returns true for "quit". */
static bool answer(struct daemon *d, const char *line, char *reply, size_t size)
{
	if (strcmp(line, "ping") == 0) {
		snprintf(reply, size, "pong\n");
	} else if (strcmp(line, "status") == 0) {
		snprintf(reply, size, "uptime %lld s, served %llu command%s\n",
			 (long long)((now_ns() - d->started_ns) / 1000000000), d->served,
			 d->served == 1 ? "" : "s");
	} else if (strncmp(line, "hash ", 5) == 0 && line[5] != '\0') {
		cmd_hash(d, line + 5, reply, size);
	} else if (strcmp(line, "hash") == 0 || strcmp(line, "hash ") == 0) {
		snprintf(reply, size, "error: usage: hash FILE\n");
	} else if (strcmp(line, "help") == 0) {
		snprintf(reply, size, "commands: ping, status, hash FILE, quit\n");
	} else if (strcmp(line, "quit") == 0) {
		snprintf(reply, size, "bye\n");
		return true;
	} else {
		snprintf(reply, size, "error: unknown command\n");
	}
	return false;
}

static int serve_client(void *arg)
{
	struct conn *c = arg;
	struct daemon *d = &daemon_state;
	char line[LINE_MAX_LEN + 1], reply[LINE_MAX_LEN];
	struct af_stream *s;
	bool quit = false;
	int n, r;

	r = open_stream(&s, c->fd);
	if (r < 0) {
		fail("af_stream_new", r);
		goto out_close;
	}
	n = read_line(s, line, sizeof(line), d->timeout_ns);
	if (n >= 0) {
		fprintf(d->log, "connection %u: %s\n", c->id, line);
		quit = answer(d, line, reply, sizeof(reply));
	} else if (n == -ETIMEDOUT) {
		fprintf(d->log, "connection %u: no command within %lld ms, dropped\n", c->id,
			(long long)(d->timeout_ns / NS_PER_MS));
		snprintf(reply, sizeof(reply), "error: timed out\n");
	} else if (n == -EMSGSIZE) {
		snprintf(reply, sizeof(reply), "error: line too long\n");
	} else {
		/* Cancelled, or the client left without a word. */
		if (n != -ECANCELED && n != -ENODATA)
			fail("af_stream_readline_timeout", n);
		goto out_free_stream;
	}
	r = say(s, reply, d->timeout_ns);
	if (r < 0 && r != -ECANCELED)
		fail("sending the reply", r);
	if (r == 0 && n >= 0)
		d->served++;
	if (r == 0 && n == -EMSGSIZE)
		discard_input(s, d->timeout_ns);
	if (quit)
		stop_daemon(d, "quit command");
out_free_stream:
	af_stream_free(s);
out_close:
	r = af_close(c->fd);
	if (r < 0)
		fail("af_close", r);
	c->fd = -1;
	return 0;
}

/* Join the connection tasks that have ended (every one if @wait). One
 * reaper at a time: the acceptor while it runs, then main_task. */
static int reap_conns(struct daemon *d, bool wait)
{
	struct conn *c, *next;
	int r;

	for (c = d->conns; c; c = next) {
		next = c->next;
		if (!wait && !af_task_done(c->task))
			continue;
		r = af_task_join(c->task, NULL);
		if (r < 0)
			return fail("af_task_join", r);
		/* Unlink before af_close() waits: the handle is gone and
		 * stop_daemon() may walk the list meanwhile. */
		if (c->prev)
			c->prev->next = c->next;
		else
			d->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		/* Cancelled before it first ran: it never closed its fd. */
		if (c->fd >= 0) {
			r = af_close(c->fd);
			if (r < 0)
				fail("af_close", r);
		}
		free(c);
	}
	return 0;
}

static int accept_loop(void *arg)
{
	struct daemon *d = arg;
	struct conn *c;
	int fd, r;

	for (;;) {
		fd = af_accept(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd == -ECANCELED)
			break;
		if (fd == -ECONNABORTED)
			continue;
		if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
			/* The client stays queued; retrying at once would
			 * spin until a connection ends. */
			fail("af_accept", fd);
			r = af_sleep_ms(100);
			if (r == -ECANCELED)
				break;
			if (r < 0)
				return fail("af_sleep_ms", r);
			continue;
		}
		if (fd < 0)
			return fail("af_accept", fd);
		if (d->stopping) {
			/* Accepted as we were cancelled. */
			r = af_close(fd);
			if (r < 0)
				fail("af_close", r);
			break;
		}
		c = calloc(1, sizeof(*c));
		if (!c) {
			fail("calloc", -ENOMEM);
			r = af_close(fd);
			if (r < 0)
				fail("af_close", r);
			continue;
		}
		c->fd = fd;
		c->id = ++d->accepted;
		r = af_task_spawn(&c->task, serve_client, c);
		if (r < 0) {
			fail("af_task_spawn", r);
			free(c);
			r = af_close(fd);
			if (r < 0)
				fail("af_close", r);
			continue;
		}
		c->next = d->conns;
		if (c->next)
			c->next->prev = c;
		d->conns = c;
		r = reap_conns(d, false);
		if (r < 0)
			return r;
	}
	return 0;
}

static int watch_signals(void *arg)
{
	struct daemon *d = arg;
	int r = af_flag_wait(&d->signalled);

	if (r == -ECANCELED)
		return 0;
	if (r < 0)
		return fail("af_flag_wait", r);
	stop_daemon(d, "signal");
	return 0;
}

static int open_listener(struct daemon *d)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	mode_t mask;
	int fd, r;

	if (d->path[0] == '\0') {
		const char *dir = getenv("TMPDIR");

		if (!dir || dir[0] == '\0')
			dir = "/tmp";
		if ((size_t)snprintf(d->tmpdir, sizeof(d->tmpdir), "%s/unix-control.XXXXXX",
				     dir) >= sizeof(d->tmpdir))
			return fail("temporary directory", -ENAMETOOLONG);
		if (!mkdtemp(d->tmpdir)) {
			r = fail("mkdtemp", -errno);
			d->tmpdir[0] = '\0';
			return r;
		}
		if ((size_t)snprintf(d->path, sizeof(d->path), "%s/control.sock", d->tmpdir) >=
		    sizeof(d->path))
			return fail("socket path", -ENAMETOOLONG);
	}
	memcpy(sun.sun_path, d->path, sizeof(d->path));

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail("socket", -errno);
	/* A Unix socket's file permissions say who may connect: only our
	 * own user. No thread runs yet, so changing the process-wide umask
	 * for the bind races with nothing. */
	mask = umask(0177);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(mask);
	if (r < 0) {
		r = -errno;
		/* A stale file from a daemon that crashed also gives
		 * EADDRINUSE; removing it is the administrator's call. */
		fprintf(stderr, "unix-control: bind %s: %s%s\n", d->path, af_strerror(r),
			r == -EADDRINUSE ? " (another daemon, or a stale socket file)" : "");
		goto err_close;
	}
	d->bound = true;
	if (listen(fd, SOMAXCONN) < 0) {
		r = fail("listen", -errno);
		goto err_close;
	}
	d->listen_fd = fd;
	return 0;

err_close:
	close(fd);
	return r;
}

static void remove_files(struct daemon *d)
{
	if (d->bound && unlink(d->path) < 0)
		fprintf(stderr, "unix-control: unlink %s: %s\n", d->path, af_strerror(-errno));
	if (d->tmpdir[0] != '\0' && rmdir(d->tmpdir) < 0)
		fprintf(stderr, "unix-control: rmdir %s: %s\n", d->tmpdir, af_strerror(-errno));
}

/* ---- --demo: a client task talking to the daemon ----------------------------- */

/* Send @line on a new connection and print the conversation; @shown is
 * how the command appears in the transcript. */
static int demo_say(struct daemon *d, const char *line, const char *shown, bool newline)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	const int64_t timeout = 10000 * NS_PER_MS;
	char reply[LINE_MAX_LEN + 1];
	struct af_stream *s;
	unsigned long long secs, served;
	int fd, n, r, ret = 0;

	memcpy(sun.sun_path, d->path, sizeof(d->path));
	printf("> %s\n", shown);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail("socket", -errno);
	r = af_connect_timeout(fd, (struct sockaddr *)&sun, sizeof(sun), timeout);
	if (r < 0) {
		ret = fail("af_connect_timeout", r);
		goto out_close;
	}
	r = open_stream(&s, fd);
	if (r < 0) {
		ret = fail("af_stream_new", r);
		goto out_close;
	}
	r = af_stream_write_timeout(s, line, strlen(line), timeout);
	if (r >= 0 && newline)
		r = af_stream_write(s, "\n", 1);
	if (r >= 0)
		r = af_stream_drain_timeout(s, timeout);
	if (r < 0) {
		ret = fail("sending the command", r);
		goto out_free_stream;
	}
	/* At end of file a line without its newline comes back as it is. */
	n = af_stream_readline_timeout(s, reply, sizeof(reply), timeout);
	if (n < 0) {
		ret = fail("af_stream_readline_timeout", n);
		goto out_free_stream;
	}
	if (n == 0 || reply[n - 1] != '\n') {
		fprintf(stderr, "unix-control: demo: incomplete reply \"%s\"\n", reply);
		ret = -EBADMSG;
		goto out_free_stream;
	}
	/* The uptime depends on the machine's speed, the transcript must
	 * not: check the line's shape and show the rest. */
	if (sscanf(reply, "uptime %llu s, served %llu", &secs, &served) == 2)
		printf("< uptime N s, served%s", strstr(reply, "served") + strlen("served"));
	else
		printf("< %s", reply);
out_free_stream:
	af_stream_free(s);
out_close:
	r = af_close(fd);
	if (r < 0 && ret == 0)
		ret = fail("af_close", r);
	return ret;
}

static int demo_write_file(const char *path, const char *text)
{
	int fd, r, ret;

	/* open(2) of a regular file does not wait on anything worth
	 * suspending for; the write goes through the ring. */
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail("open", -errno);
	ret = af_write_all(fd, text, strlen(text), 0, NULL);
	if (ret < 0)
		fail("af_write_all", ret);
	r = af_close(fd);
	if (r < 0 && ret == 0)
		ret = fail("af_close", r);
	return ret;
}

static int demo(void *arg)
{
	struct daemon *d = arg;
	char file[PATH_MAX], cmd[PATH_MAX + 8];
	int r;

	r = snprintf(file, sizeof(file), "%s/hello.txt", d->tmpdir) >= (int)sizeof(file)
		    ? -ENAMETOOLONG : 0;
	if (r == 0)
		r = demo_write_file(file, "hello, world\n");
	if (r < 0)
		goto out;
	snprintf(cmd, sizeof(cmd), "hash %s", file);
	/* Each step stops the demo at its first failure. */
	if ((r = demo_say(d, "ping", "ping", true)) < 0 ||
	    (r = demo_say(d, "help", "help", true)) < 0 ||
	    (r = demo_say(d, "status", "status", true)) < 0 ||
	    (r = demo_say(d, cmd, "hash .../hello.txt", true)) < 0 ||
	    (r = demo_say(d, "hash /nonexistent/file", "hash /nonexistent/file", true)) < 0 ||
	    (r = demo_say(d, "hash /dev/null", "hash /dev/null", true)) < 0 ||
	    (r = demo_say(d, "frobnicate", "frobnicate", true)) < 0 ||
	    /* A stuck client: half a line, then silence. */
	    (r = demo_say(d, "pi", "pi (no newline, then nothing)", false)) < 0 ||
	    (r = demo_say(d, "quit", "quit", true)) < 0) {
		/* fall through */
	}
	if (unlink(file) < 0 && r == 0)
		r = fail("unlink", -errno);
out:
	/* Without "quit" the daemon would run on. */
	if (r < 0)
		stop_daemon(d, "the demo failed");
	return r;
}

/* ---- main -------------------------------------------------------------------- */

static int main_task(void *arg)
{
	struct daemon *d = arg;
	struct af_task *watcher, *demo_task = NULL;
	int r, result, ret = 0;

	d->started_ns = now_ns();
	r = af_flag_init(&d->signalled, NULL);
	if (r < 0)
		return fail("af_flag_init", r);
	r = af_signal_watch(&d->signalled, SIGINT);
	if (r < 0) {
		ret = fail("af_signal_watch SIGINT", r);
		goto out_destroy_flag;
	}
	r = af_signal_watch(&d->signalled, SIGTERM);
	if (r < 0) {
		ret = fail("af_signal_watch SIGTERM", r);
		goto out_unwatch;
	}
	ret = open_listener(d);
	if (ret < 0)
		goto out_remove_files;
	fprintf(d->log, "listening on %s\n", d->path);
	fflush(d->log);

	r = af_task_spawn(&watcher, watch_signals, d);
	if (r < 0) {
		ret = fail("af_task_spawn", r);
		goto out_close_listener;
	}
	r = af_task_spawn(&d->acceptor, accept_loop, d);
	if (r < 0) {
		ret = fail("af_task_spawn", r);
		d->acceptor = NULL;
		goto out_stop_watcher;
	}
	if (d->demo) {
		r = af_task_spawn(&demo_task, demo, d);
		if (r < 0) {
			ret = fail("af_task_spawn", r);
			stop_daemon(d, "no demo");
		}
	}

	r = af_task_join(d->acceptor, &result);
	if (r < 0) {
		/* Only af_loop_run() cancels this task (on a deadlock). */
		ret = fail("af_task_join", r);
		stop_daemon(d, "cancelled");
		goto out_stop_watcher;
	}
	d->acceptor = NULL;
	if (result < 0) {
		ret = result;
		stop_daemon(d, "accept failed");
	}
	r = af_close(d->listen_fd);
	d->listen_fd = -1;
	if (r < 0)
		fail("af_close", r);
	r = reap_conns(d, true);
	if (r < 0 && ret == 0)
		ret = r;
	/* The demo client ends by itself: every wait of it has a timeout,
	 * and the daemon has closed its connections. */
	if (demo_task) {
		r = af_task_join(demo_task, &result);
		if (r < 0 && ret == 0)
			ret = fail("af_task_join", r);
		else if (result < 0 && ret == 0)
			ret = result;
	}

out_stop_watcher:
	r = af_task_cancel(watcher);
	if (r < 0 && r != -EALREADY)
		fail("af_task_cancel", r);
	r = af_task_join(watcher, &result);
	if (r < 0 && ret == 0)
		ret = fail("af_task_join", r);
	if (ret == 0)
		fprintf(d->log, "stopped after %u connection%s\n", d->accepted,
			d->accepted == 1 ? "" : "s");
out_close_listener:
	if (d->listen_fd >= 0) {
		r = af_close(d->listen_fd);
		if (r < 0)
			fail("af_close", r);
		d->listen_fd = -1;
	}
out_remove_files:
	remove_files(d);
out_unwatch:
	af_signal_unwatch(SIGINT);
	af_signal_unwatch(SIGTERM);
out_destroy_flag:
	af_flag_destroy(&d->signalled);
	return ret;
}

static int usage(void)
{
	fprintf(stderr, "usage: unix-control [--timeout-ms N] [PATH]\n"
			"       unix-control --demo\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct daemon *d = &daemon_state;
	long long ms = 5000;
	char *end;
	int i, r;

	d->log = stdout;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--demo") == 0) {
			d->demo = true;
		} else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
			errno = 0;
			ms = strtoll(argv[++i], &end, 10);
			if (errno != 0 || *end != '\0' || ms <= 0 || ms > INT64_MAX / NS_PER_MS)
				return usage();
		} else if (i == argc - 1 && argv[i][0] != '-') {
			if (strlen(argv[i]) >= sizeof(d->path)) {
				fprintf(stderr, "unix-control: %s: %s\n", argv[i],
					af_strerror(-ENAMETOOLONG));
				return 2;
			}
			strcpy(d->path, argv[i]);
		} else {
			return usage();
		}
	}
	if (d->demo) {
		/* The demo owns the transcript on stdout (a fixed one, for
		 * the test) and makes its own socket; the daemon's messages
		 * go to stderr, and a stuck client is dropped quickly. */
		if (d->path[0] != '\0')
			return usage();
		d->log = stderr;
		ms = 300;
	}
	d->timeout_ns = ms * NS_PER_MS;

	/* Line buffering even when stdout is a pipe, so output shows up as
	 * it happens. */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("unix-control: setvbuf");
		return EXIT_FAILURE;
	}

	/* A loop on io_uring, or on epoll where io_uring is switched off;
	 * main_task is its first task, and the loop is freed when it ends. */
	r = af_run(main_task, d);
	/* af_run() has waited for the worker threads: no job runs now. */
	while (d->abandoned) {
		struct hash_job *job = d->abandoned;

		d->abandoned = job->next;
		free(job);
	}
	return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* SPDX-License-Identifier: MIT */
/*
 * tcp-echo-server: a TCP server that echoes every line it is sent, with one
 * task per connection.
 *
 * Each connection task reads lines from a buffered stream with
 * af_stream_readline() and writes each one back with af_stream_write() and
 * af_stream_drain(), asyncio's reader.readline() / writer.write() / await
 * writer.drain(). An acceptor task loops on af_accept() and spawns those
 * tasks; every call that waits is a coroutine call on the loop, so one
 * thread serves any number of clients, each written as plain sequential
 * code.
 *
 * Lines are limited to MAX_LINE bytes, the stream's read buffer: a client
 * that never sends a newline costs that much memory and no more, and gets
 * "error: line longer than 65536 bytes" before the server hangs up.
 *
 * SIGINT and SIGTERM set a flag (af_signal_watch). A watcher task waiting
 * on it shuts the server down by cancelling the acceptor and every
 * connection task: the af_accept()/af_stream_readline() they are blocked
 * in returns -ECANCELED, each closes its socket, and the program exits 0.
 *
 * usage: tcp-echo-server [--max-conns N] [PORT]
 *   PORT          port on 127.0.0.1; 0 (the default) lets the kernel pick one
 *   --max-conns N stop accepting after N connections and exit once they
 *                 have been served (handy in tests)
 * The first line of output is "listening on 127.0.0.1:PORT".
 *
 * Try it: ./tcp-echo-server 7777 & ./tcp-echo-client 7777 hello world
 *
 * Build: cc tcp-echo-server.c $(pkg-config --cflags --libs asyncflag)
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asyncflag.h>

/* The longest line echoed, newline included: the stream's read buffer,
 * and so all the memory a client that never sends a newline can take. */
#define MAX_LINE 65536
#define STR(x) #x
#define XSTR(x) STR(x)

/* One connection, owned by the task that reaps it (see reap_conns). */
struct conn {
	struct conn *prev, *next;
	struct af_task *task;
	int fd;                  /* -1 once the connection task has closed it */
	unsigned id;
	char line[MAX_LINE + 1]; /* + 1: readline ends the line with a NUL */
};

struct server {
	int listen_fd;
	unsigned max_conns;      /* 0: no limit */
	unsigned accepted;
	bool stopping;
	struct conn *conns;      /* live and not yet reaped connection tasks */
	struct af_task *acceptor; /* NULL once joined */
	struct af_flag signalled; /* set by SIGINT and SIGTERM */
};

/* Static: the signal handler may set the flag until it is unwatched, on
 * every path out of main_task. */
static struct server server = { .listen_fd = -1 };

static int fail(const char *what, int err)
{
	fprintf(stderr, "tcp-echo-server: %s: %s\n", what, af_strerror(err));
	return err;
}

static const char *plural(unsigned long long n)
{
	return n == 1 ? "" : "s";
}

/*
 * Drop the rest of a line too long to echo: readline kept its first
 * MAX_LINE bytes for us (a stream never loses data), af_stream_read() takes
 * them. Closing a socket with unread data resets the connection, and the
 * client would lose our answer; reading to the end of the line avoids it.
 */
static int skip_line(struct af_stream *in, char *buf, size_t size)
{
	int n;

	do {
		n = af_stream_read(in, buf, size);
		if (n <= 0)
			return n;
		n = af_stream_readline(in, buf, size);
	} while (n == -EMSGSIZE);
	return n;
}

static const char *reason(int err)
{
	return err == -ECANCELED ? "server shutting down" : af_strerror(err);
}

/* Echo lines until the client closes, a line is too long, or we are
 * cancelled. Returns why it stopped. */
static const char *echo_lines(struct conn *c, struct af_stream *s, unsigned long long *lines)
{
	static const char too_long[] = "error: line longer than " XSTR(MAX_LINE) " bytes\n";
	int n;

	for (;;) {
		/* At end of file a last line without '\n' comes back as it
		 * is, then 0. */
		n = af_stream_readline(s, c->line, sizeof(c->line));
		if (n == 0)
			return "client closed";
		if (n == -EMSGSIZE)
			break;
		if (n < 0)
			return reason(n);
		/* Buffered; the drain writes it, and on a socket a client
		 * that has gone is -EPIPE here, never SIGPIPE. */
		n = af_stream_write(s, c->line, (size_t)n);
		if (n >= 0)
			n = af_stream_drain(s);
		if (n < 0)
			return reason(n);
		(*lines)++;
	}
	n = skip_line(s, c->line, sizeof(c->line));
	if (n > 0 && af_stream_write(s, too_long, sizeof(too_long) - 1) > 0)
		n = af_stream_drain(s);
	return n < 0 ? reason(n) : "line too long";
}

static int serve_conn(void *arg)
{
	struct conn *c = arg;
	struct af_stream_opts opts = { .read_buffer = MAX_LINE };
	struct af_stream *s;
	unsigned long long lines = 0;
	const char *why;
	int r;

	r = af_stream_new(&s, c->fd, &opts);
	if (r < 0) {
		why = af_strerror(r);
	} else {
		why = echo_lines(c, s, &lines);
		af_stream_free(s);
	}
	r = af_close(c->fd);
	if (r < 0)
		fail("af_close", r);
	c->fd = -1;
	printf("connection %u closed (%s): %llu line%s echoed\n", c->id, why, lines,
	       plural(lines));
	return 0;
}

/* Join the connection tasks that have ended (every one if @wait), freeing
 * their handles. Only one task reaps at a time: the acceptor while it
 * runs, then main_task. */
static int reap_conns(struct server *srv, bool wait)
{
	struct conn *c, *next;
	int r;

	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (!wait && !af_task_done(c->task))
			continue;
		r = af_task_join(c->task, NULL);
		if (r < 0)
			return fail("af_task_join", r);
		/* Unlink at once: the handle is gone, and stop_server() may
		 * walk the list while af_close() below waits. */
		if (c->prev)
			c->prev->next = c->next;
		else
			srv->conns = c->next;
		if (c->next)
			c->next->prev = c->prev;
		/* A task cancelled before it first ran runs no code at all,
		 * so the socket it was handed is still ours to close. */
		if (c->fd >= 0) {
			r = af_close(c->fd);
			if (r < 0)
				fail("af_close", r);
		}
		free(c);
	}
	return 0;
}

/* Cancel the acceptor and every connection. Called by the signal watcher;
 * the tasks are cancelled, not ended: each unwinds in its own code. */
static void stop_server(struct server *srv)
{
	int r;

	srv->stopping = true;
	if (srv->acceptor) {
		r = af_task_cancel(srv->acceptor);
		if (r < 0 && r != -EALREADY)
			fail("af_task_cancel", r);
	}
	for (struct conn *c = srv->conns; c; c = c->next) {
		r = af_task_cancel(c->task);
		if (r < 0 && r != -EALREADY)
			fail("af_task_cancel", r);
	}
}

static int start_conn(struct server *srv, int fd)
{
	struct conn *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->fd = fd;
	c->id = srv->accepted;
	r = af_task_spawn(&c->task, serve_conn, c);
	if (r < 0) {
		free(c);
		return r;
	}
	c->next = srv->conns;
	if (c->next)
		c->next->prev = c;
	srv->conns = c;
	return 0;
}

static int accept_loop(void *arg)
{
	struct server *srv = arg;
	struct sockaddr_in peer;
	socklen_t len;
	char addr[INET_ADDRSTRLEN];
	int fd, r;

	while (srv->max_conns == 0 || srv->accepted < srv->max_conns) {
		len = sizeof(peer);
		fd = af_accept(srv->listen_fd, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
		if (fd == -ECANCELED)
			break;
		if (fd == -ECONNABORTED)
			continue; /* the client gave up while queued */
		if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
			/* Out of descriptors or memory: the pending client
			 * stays queued. Retrying at once would spin, so
			 * wait for connections to end. */
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
		if (srv->stopping) {
			/* Accepted just as we were cancelled: stop_server()
			 * has already cancelled the connections it knew. */
			r = af_close(fd);
			if (r < 0)
				fail("af_close", r);
			break;
		}
		srv->accepted++;
		if (!inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof(addr)))
			strcpy(addr, "?");
		printf("connection %u from %s:%u\n", srv->accepted, addr, ntohs(peer.sin_port));
		r = start_conn(srv, fd);
		if (r < 0) {
			fail("af_task_spawn", r);
			r = af_close(fd);
			if (r < 0)
				fail("af_close", r);
		}
		/* The connections that ended since the last accept. */
		r = reap_conns(srv, false);
		if (r < 0)
			return r;
	}
	return 0;
}

static int watch_signals(void *arg)
{
	struct server *srv = arg;
	int r = af_flag_wait(&srv->signalled);

	if (r == -ECANCELED)
		return 0; /* the server ended by itself and stops us */
	if (r < 0)
		return fail("af_flag_wait", r);
	printf("signal received, shutting down\n");
	stop_server(srv);
	return 0;
}

static int open_listener(unsigned port)
{
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	socklen_t len = sizeof(sin);
	int one = 1, fd;

	/* socket, bind and listen never wait, so there is nothing to gain
	 * from the ring: only calls that block go through it. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail("socket", -errno);
	/* A restarted server can bind while old connections linger in
	 * TIME_WAIT. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		fail("setsockopt SO_REUSEADDR", -errno);
		goto err_close;
	}
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		fail("bind", -errno);
		goto err_close;
	}
	if (listen(fd, SOMAXCONN) < 0) {
		fail("listen", -errno);
		goto err_close;
	}
	/* Port 0 asked the kernel for a free port: find out which. */
	if (getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		fail("getsockname", -errno);
		goto err_close;
	}
	server.listen_fd = fd;
	return ntohs(sin.sin_port);

err_close:
	close(fd);
	return -1;
}

static int main_task(void *arg)
{
	struct server *srv = &server;
	unsigned port = *(const unsigned *)arg;
	struct af_task *watcher;
	int r, result, ret = 0;

	r = af_flag_init(&srv->signalled, NULL);
	if (r < 0)
		return fail("af_flag_init", r);
	/* Watch before announcing the port: whoever reads that line may
	 * signal us at once. */
	r = af_signal_watch(&srv->signalled, SIGINT);
	if (r < 0) {
		ret = fail("af_signal_watch SIGINT", r);
		goto out_destroy_flag;
	}
	r = af_signal_watch(&srv->signalled, SIGTERM);
	if (r < 0) {
		ret = fail("af_signal_watch SIGTERM", r);
		goto out_unwatch;
	}
	r = open_listener(port);
	if (r < 0) {
		ret = -1;
		goto out_unwatch;
	}
	printf("listening on 127.0.0.1:%d\n", r);
	/* stdout is line buffered (see main), so a script reading our output
	 * sees the port now. Say it explicitly for copies that drop that. */
	fflush(stdout);

	r = af_task_spawn(&watcher, watch_signals, srv);
	if (r < 0) {
		ret = fail("af_task_spawn", r);
		goto out_close_listener;
	}
	r = af_task_spawn(&srv->acceptor, accept_loop, srv);
	if (r < 0) {
		ret = fail("af_task_spawn", r);
		srv->acceptor = NULL;
		goto out_stop_watcher;
	}

	r = af_task_join(srv->acceptor, &result);
	if (r < 0) {
		/* This task was cancelled, which only af_loop_run() does
		 * (on a deadlock): stop everything; the loop ends the tasks
		 * left when the main task returns. */
		ret = fail("af_task_join", r);
		stop_server(srv);
		goto out_stop_watcher;
	}
	/* The handle is freed: the watcher must not cancel it any more. */
	srv->acceptor = NULL;
	if (result < 0) {
		ret = result;
		stop_server(srv); /* the acceptor failed: end the rest too */
	}
	/* New clients now get "connection refused" at once instead of
	 * waiting in the backlog while we finish the open connections. */
	r = af_close(srv->listen_fd);
	srv->listen_fd = -1;
	if (r < 0)
		fail("af_close", r);

	/* With --max-conns the clients finish on their own; after a signal
	 * they have been cancelled. Either way, wait for every task. */
	r = reap_conns(srv, true);
	if (r < 0 && ret == 0)
		ret = r;

out_stop_watcher:
	r = af_task_cancel(watcher);
	if (r < 0 && r != -EALREADY)
		fail("af_task_cancel", r);
	r = af_task_join(watcher, &result);
	if (r < 0 && ret == 0)
		ret = fail("af_task_join", r);
	if (ret == 0)
		printf("served %u connection%s\n", srv->accepted, plural(srv->accepted));

out_close_listener:
	if (srv->listen_fd >= 0) {
		r = af_close(srv->listen_fd);
		if (r < 0)
			fail("af_close", r);
		srv->listen_fd = -1;
	}
out_unwatch:
	/* The default disposition (terminate) comes back for both. */
	af_signal_unwatch(SIGINT);
	af_signal_unwatch(SIGTERM);
out_destroy_flag:
	af_flag_destroy(&srv->signalled);
	return ret;
}

static int parse_uint(const char *s, unsigned long max, unsigned *out)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: tcp-echo-server [--max-conns N] [PORT]\n");
	return 2;
}

int main(int argc, char **argv)
{
	unsigned port = 0;
	int i, r;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--max-conns") == 0 && i + 1 < argc) {
			if (parse_uint(argv[++i], UINT_MAX, &server.max_conns) < 0 ||
			    server.max_conns == 0)
				return usage();
		} else if (i == argc - 1 && argv[i][0] != '-') {
			if (parse_uint(argv[i], 65535, &port) < 0)
				return usage();
		} else {
			return usage();
		}
	}

	/* Line buffering even when stdout is a pipe, so output shows up as
	 * it happens. */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("tcp-echo-server: setvbuf");
		return EXIT_FAILURE;
	}

	/* A loop on io_uring, or on epoll where io_uring is switched off;
	 * main_task is its first task, and the loop is freed when it ends. */
	r = af_run(main_task, &port);
	return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

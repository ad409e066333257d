/* SPDX-License-Identifier: MIT */
/*
 * tcp-echo-client: the client for tcp-echo-server.
 *
 * Connects to 127.0.0.1:PORT with af_connect_timeout() and, for each
 * MESSAGE, writes it as a line to a buffered stream, drains it, and reads
 * the echo back with af_stream_readline_timeout(): asyncio's writer.write(),
 * await writer.drain() and await reader.readline(). The stream assembles
 * the line however TCP splits it. Prints "echoed N messages" and exits 0;
 * on any error it says what failed, with af_strerror(), and exits 1.
 *
 * Every wait has a timeout, so a server that stops answering ends the
 * client with an error instead of hanging it.
 *
 * usage: tcp-echo-client PORT MESSAGE...   (messages without newlines)
 *
 * Build: cc tcp-echo-client.c $(pkg-config --cflags --libs asyncflag)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asyncflag.h>

#define CONNECT_TIMEOUT_NS (5 * INT64_C(1000000000))
/* For each write and read. Generous: the server may run under valgrind. */
#define IO_TIMEOUT_NS (30 * INT64_C(1000000000))

struct job {
	unsigned port;
	int nmessages;
	char **messages;
	size_t longest;         /* the longest message's length */
};

static int fail(const char *what, int err)
{
	fprintf(stderr, "tcp-echo-client: %s: %s\n", what, af_strerror(err));
	return err;
}

/*
 * Send one message and check its echo. Writing all of it before reading
 * anything back is fine for one line at a time (the server reads the
 * whole line before it answers); a client streaming more would write and
 * read in two tasks, or both sides could block on full buffers.
 */
static int echo_one(struct af_stream *s, int i, const char *msg, char *echo, size_t size)
{
	size_t len = strlen(msg);
	int n;

	n = af_stream_write_timeout(s, msg, len, IO_TIMEOUT_NS);
	if (n >= 0)
		n = af_stream_write_timeout(s, "\n", 1, IO_TIMEOUT_NS);
	if (n >= 0)
		n = af_stream_drain_timeout(s, IO_TIMEOUT_NS);
	if (n < 0)
		return fail("sending", n);
	n = af_stream_readline_timeout(s, echo, size, IO_TIMEOUT_NS);
	if (n == 0) {
		fprintf(stderr, "tcp-echo-client: message %d: the server closed the connection\n",
			i);
		return -EPIPE;
	}
	if (n == -EMSGSIZE) {          /* no newline within len + 1 bytes */
		fprintf(stderr, "tcp-echo-client: message %d: the echo is longer\n", i);
		return -EBADMSG;
	}
	if (n < 0)
		return fail("reading the echo", n);
	if (n != (int)len + 1 || memcmp(echo, msg, len) != 0) {
		size_t shown = strcspn(echo, "\n");

		fprintf(stderr, "tcp-echo-client: message %d: the server answered \"%.*s\"\n",
			i, shown > 80 ? 80 : (int)shown, echo);
		return -EBADMSG;
	}
	return 0;
}

static int echo_all(int fd, const struct job *job)
{
	/* Room for the longest echo and its newline: the line limit. */
	struct af_stream_opts opts = { .read_buffer = job->longest + 1 };
	struct af_stream *s;
	char *echo;
	int r;

	r = af_stream_new(&s, fd, &opts);
	if (r < 0)
		return fail("af_stream_new", r);
	echo = malloc(job->longest + 2);       /* + '\n' and the NUL */
	if (!echo) {
		r = fail("malloc", -ENOMEM);
		goto out_free_stream;
	}
	for (int i = 0; i < job->nmessages && r == 0; i++)
		r = echo_one(s, i + 1, job->messages[i], echo, job->longest + 2);
	free(echo);
out_free_stream:
	af_stream_free(s);
	return r;
}

static int main_task(void *arg)
{
	const struct job *job = arg;
	struct sockaddr_in sin = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)job->port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK),
	};
	char what[64];
	int fd, r, ret = 0;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail("socket", -errno);
	/* -ECONNREFUSED when nothing listens on the port; -ETIMEDOUT when
	 * nothing answers (a firewall dropping packets). */
	r = af_connect_timeout(fd, (struct sockaddr *)&sin, sizeof(sin), CONNECT_TIMEOUT_NS);
	if (r < 0) {
		snprintf(what, sizeof(what), "connect to 127.0.0.1:%u", job->port);
		ret = fail(what, r);
		goto out_close;
	}
	ret = echo_all(fd, job);
	if (ret < 0)
		goto out_close;
	printf("echoed %d message%s\n", job->nmessages, job->nmessages == 1 ? "" : "s");

out_close:
	r = af_close(fd);
	if (r < 0 && ret == 0)
		ret = fail("af_close", r);
	return ret;
}

static int usage(void)
{
	fprintf(stderr, "usage: tcp-echo-client PORT MESSAGE...\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct job job;
	unsigned long port;
	char *end;
	int r;

	if (argc < 3 || argv[1][0] < '0' || argv[1][0] > '9')
		return usage();
	errno = 0;
	port = strtoul(argv[1], &end, 10);
	if (errno != 0 || *end != '\0' || port == 0 || port > 65535)
		return usage();
	job.longest = 0;
	for (int i = 2; i < argc; i++) {
		/* The echo is one line: a newline inside would end it. */
		if (strchr(argv[i], '\n')) {
			fprintf(stderr, "tcp-echo-client: messages must not contain newlines\n");
			return 2;
		}
		if (strlen(argv[i]) > job.longest)
			job.longest = strlen(argv[i]);
	}
	job.port = (unsigned)port;
	job.nmessages = argc - 2;
	job.messages = argv + 2;

	/* Line buffering even when stdout is a pipe, so output shows up as
	 * it happens. */
	if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) {
		perror("tcp-echo-client: setvbuf");
		return EXIT_FAILURE;
	}

	/* A loop on io_uring, or on epoll where io_uring is switched off;
	 * main_task is its first task, and the loop is freed when it ends. */
	r = af_run(main_task, &job);
	return r == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

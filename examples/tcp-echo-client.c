/* SPDX-License-Identifier: MIT */
/*
 * tcp-echo-client: the client for tcp-echo-server.
 *
 * Connects to 127.0.0.1:PORT with af_connect_timeout(), then for each
 * MESSAGE sends it and reads the echo back with af_recv_timeout() until it
 * has as many bytes as it sent (TCP is a byte stream: one send may come back
 * in several pieces, or one piece may hold more), and checks that the echo
 * is the message. Prints "echoed N messages" and exits 0; on any error it
 * says what failed, with af_strerror(), and exits 1.
 *
 * Every wait has a timeout, so a server that stops answering ends the
 * client with an error instead of hanging it.
 *
 * usage: tcp-echo-client PORT MESSAGE...
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
/* For each send and receive. Generous: the server may run under valgrind. */
#define IO_TIMEOUT_NS (30 * INT64_C(1000000000))

struct job {
	unsigned port;
	int nmessages;
	char **messages;
};

static int fail(const char *what, int err)
{
	fprintf(stderr, "tcp-echo-client: %s: %s\n", what, af_strerror(err));
	return err;
}

/* Not af_write_all(): write(2) on a socket whose peer has gone raises
 * SIGPIPE; af_send() returns -EPIPE. */
static int send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		int n = af_send_timeout(fd, buf, len, 0, IO_TIMEOUT_NS);

		if (n < 0)
			return n;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Send one message and check its echo. Sending all of it before reading
 * anything back is fine for messages that fit in the socket buffers (a
 * command line argument always does); a client streaming more would
 * send and receive in two tasks, or the server could block on a full
 * buffer while we block on ours.
 */
static int echo_one(int fd, int i, const char *msg)
{
	size_t len = strlen(msg), got = 0;
	char *echo;
	int n, r;

	r = send_all(fd, msg, len);
	if (r < 0)
		return fail("af_send_timeout", r);
	echo = malloc(len);
	if (!echo)
		return fail("malloc", -ENOMEM);
	while (got < len) {
		n = af_recv_timeout(fd, echo + got, len - got, 0, IO_TIMEOUT_NS);
		if (n == 0) {
			fprintf(stderr, "tcp-echo-client: message %d: the server closed the "
				"connection after %zu of %zu bytes\n", i, got, len);
			r = -EPIPE;
			goto out_free;
		}
		if (n < 0) {
			r = fail("af_recv_timeout", n);
			goto out_free;
		}
		got += (size_t)n;
	}
	if (memcmp(echo, msg, len) != 0) {
		fprintf(stderr, "tcp-echo-client: message %d: the echo differs from what was sent\n",
			i);
		r = -EBADMSG;
	}
out_free:
	free(echo);
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
	for (int i = 0; i < job->nmessages; i++) {
		ret = echo_one(fd, i + 1, job->messages[i]);
		if (ret < 0)
			goto out_close;
	}
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
	for (int i = 2; i < argc; i++) {
		/* Nothing would come back to wait for. */
		if (argv[i][0] == '\0') {
			fprintf(stderr, "tcp-echo-client: messages must not be empty\n");
			return 2;
		}
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

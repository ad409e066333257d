/* SPDX-License-Identifier: MIT */
/*
 * line-client: not an example, a test helper. A plain blocking client
 * (no libasyncflag, so it checks the examples from outside) that connects,
 * sends one line, and copies whatever comes back to stdout until the peer
 * closes the connection.
 *
 * usage: line-client [--no-newline] [--connected] [--timeout-ms N] ADDRESS [TEXT]
 *   ADDRESS  unix:PATH, or tcp:PORT for 127.0.0.1:PORT
 *   TEXT     sent followed by a newline (not with --no-newline); without
 *            TEXT nothing is sent and the connection just stays open
 *   --connected     print "connected" once connected and TEXT is sent, so
 *                   that a script knows the server has this connection
 *                   queued ahead of any it makes afterwards
 *   --timeout-ms N  give up if the peer has not closed after N ms
 *                   (default 30000)
 * Exit status: 0 the peer closed the connection, 1 an error, 3 timed out.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_to(const char *address)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr *sa;
	socklen_t len;
	char *end;
	long port;
	int fd;

	if (strncmp(address, "unix:", 5) == 0) {
		if (strlen(address + 5) >= sizeof(sun.sun_path)) {
			fprintf(stderr, "line-client: %s: path too long\n", address);
			return -1;
		}
		strcpy(sun.sun_path, address + 5);
		sa = (struct sockaddr *)&sun;
		len = sizeof(sun);
	} else if (strncmp(address, "tcp:", 4) == 0) {
		port = strtol(address + 4, &end, 10);
		if (end == address + 4 || *end != '\0' || port <= 0 || port > 65535) {
			fprintf(stderr, "line-client: %s: bad port\n", address);
			return -1;
		}
		sin.sin_port = htons((uint16_t)port);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa = (struct sockaddr *)&sin;
		len = sizeof(sin);
	} else {
		fprintf(stderr, "line-client: %s: want unix:PATH or tcp:PORT\n", address);
		return -1;
	}
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		perror("line-client: socket");
		return -1;
	}
	/* Loopback and Unix sockets connect at once or fail at once. */
	if (connect(fd, sa, len) < 0) {
		fprintf(stderr, "line-client: connect %s: %s\n", address, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Returns 1 if the peer closed before taking everything: it may have
 * answered already (a line too long), so the caller still reads. */
static int send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EPIPE || errno == ECONNRESET)
				return 1;
			fprintf(stderr, "line-client: send: %s\n", strerror(errno));
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long long timeout_ms = 30000, deadline;
	const char *text = NULL;
	bool newline = true, connected = false;
	char buf[4096], *end;
	int i = 1, fd, status = 0;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--no-newline") == 0) {
			newline = false;
		} else if (strcmp(argv[i], "--connected") == 0) {
			connected = true;
		} else if (strcmp(argv[i], "--timeout-ms") == 0 && i + 1 < argc) {
			timeout_ms = strtoll(argv[++i], &end, 10);
			if (*end != '\0' || timeout_ms <= 0)
				goto usage;
		} else {
			goto usage;
		}
	}
	if (i == argc || argc - i > 2)
		goto usage;
	if (argc - i == 2)
		text = argv[i + 1];

	deadline = now_ms() + timeout_ms;
	fd = connect_to(argv[i]);
	if (fd < 0)
		return 1;
	if (text) {
		int r = send_all(fd, text, strlen(text));

		if (r == 0 && newline)
			r = send_all(fd, "\n", 1);
		if (r < 0) {
			status = 1;
			goto out;
		}
	}
	if (connected && (puts("connected") == EOF || fflush(stdout) != 0)) {
		perror("line-client: stdout");
		status = 1;
		goto out;
	}
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		long long left = deadline - now_ms();
		ssize_t n;
		int r;

		if (left <= 0) {
			fprintf(stderr, "line-client: the peer did not close within %lld ms\n",
				timeout_ms);
			status = 3;
			break;
		}
		r = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
		if (r < 0 && errno != EINTR) {
			perror("line-client: poll");
			status = 1;
			break;
		}
		if (r <= 0)
			continue;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "line-client: recv: %s\n", strerror(errno));
			status = 1;
			break;
		}
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n || fflush(stdout) != 0) {
			perror("line-client: stdout");
			status = 1;
			break;
		}
	}
out:
	close(fd);
	return status;

usage:
	fprintf(stderr, "usage: line-client [--no-newline] [--connected] [--timeout-ms N] "
			"ADDRESS [TEXT]\n");
	return 1;
}

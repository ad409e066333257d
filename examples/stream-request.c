/* SPDX-License-Identifier: MIT */
/*
 * stream-request: a server reading small HTTP/1.0-style requests from a
 * buffered stream (docs/stream.md), asyncio's reader.readline() and
 * reader.readexactly() in C.
 *
 * read_request() takes the request line and the headers with
 * af_stream_readline_timeout(), each line at most MAX_LINE bytes and each
 * within IDLE_MS of the last, then the body with
 * af_stream_readexactly_timeout(). Because a stream never loses a byte it
 * has read, a read that times out or is cancelled leaves the partial line
 * in the buffer, and read_request() can simply be called again to carry on.
 *
 * The clients are the main task, one scenario at a time, each on its own
 * socketpair with a server task: a request sent in small pieces, two
 * requests in one write, a header over the limit, a client that goes
 * silent mid-header, and a shutdown (a cancel) in the middle of a request,
 * which the server finishes before it closes.
 *
 * Build: cc stream-request.c $(pkg-config --cflags --libs asyncflag)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asyncflag.h>

#define MAX_LINE 128              /* a request line or header, with "\r\n" */
#define MAX_BODY 1024
#define IDLE_MS 500               /* the longest silence within a request */
#define MS INT64_C(1000000)

enum { REQUEST_LINE, HEADERS, BODY };

struct request {
	int state;                /* what read_request() reads next */
	char method[8], path[32], host[32];
	size_t length;            /* Content-Length */
	char line[MAX_LINE + 1];  /* + 1: readline ends the line with a NUL */
	char body[MAX_BODY + 1];
};

/* A header or request line: 0, or the status that refuses the request. */
static int parse_line(struct request *rq)
{
	const char *v;

	if (rq->state == REQUEST_LINE) {
		if (sscanf(rq->line, "%7s %31s HTTP/1.%*1[01]\r", rq->method, rq->path) != 2)
			return 400;
		rq->state = HEADERS;
	} else if (strcmp(rq->line, "\r\n") == 0) {
		rq->state = BODY;
	} else if (strncasecmp(rq->line, "Host:", 5) == 0) {
		sscanf(rq->line + 5, " %31[^\r\n]", rq->host);
	} else if (strncasecmp(rq->line, "Content-Length:", 15) == 0) {
		v = rq->line + 15;
		rq->length = strtoul(v, NULL, 10);
		if (rq->length > MAX_BODY)
			return 413;
	}
	return 0;
}

/*
 * Read a request, or the rest of one. Returns 0 with the request in @rq;
 * an HTTP status (400, 408, 413, 431) to refuse it with; -ENODATA when the
 * client closed between requests; -ETIMEDOUT when it was silent between
 * them; or the stream's error, such as -ECANCELED. After -ECANCELED the
 * call can be made again and goes on where it stopped.
 */
static int read_request(struct af_stream *in, struct request *rq)
{
	int n;

	while (rq->state != BODY) {
		n = af_stream_readline_timeout(in, rq->line, sizeof(rq->line), IDLE_MS * MS);
		if (n == 0)
			return rq->state == REQUEST_LINE ? -ENODATA : 400;
		if (n == -EMSGSIZE)
			return 431;
		if (n == -ETIMEDOUT)
			return rq->state == REQUEST_LINE ? -ETIMEDOUT : 408;
		if (n < 0)
			return n;
		n = parse_line(rq);
		if (n)
			return n;
	}
	n = af_stream_readexactly_timeout(in, rq->body, rq->length, IDLE_MS * MS);
	if (n == -ETIMEDOUT)
		return 408;
	if (n < 0 || (size_t)n != rq->length)
		return n < 0 ? n : 400;
	rq->body[rq->length] = '\0';
	return 0;
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 431: return "Request Header Fields Too Large";
	default: return "Bad Request";
	}
}

static int respond(struct af_stream *out, int status, const char *body)
{
	char head[128];
	int n;

	n = snprintf(head, sizeof(head), "HTTP/1.0 %d %s\r\nContent-Length: %zu\r\n\r\n",
		     status, reason(status), strlen(body));
	n = af_stream_write(out, head, (size_t)n);
	if (n >= 0)
		n = af_stream_write(out, body, strlen(body));
	return n < 0 ? n : af_stream_drain(out);
}

/* What is still buffered, without waiting: the partial line a timeout or a
 * cancel left. */
static void show_kept(struct af_stream *in)
{
	char kept[MAX_LINE + 1];
	int n = af_stream_read_timeout(in, kept, MAX_LINE, 0);

	printf("server: kept in the buffer: \"%.*s\"\n", n > 0 ? n : 0, kept);
}

struct conn {
	int fd;                   /* the client's end */
	struct af_stream *server_side, *client_side;
	struct af_task *server;
	struct af_event finishing; /* set once the server has seen the cancel */
};

/* One connection: requests until the client closes or is refused. */
static int serve(void *arg)
{
	struct conn *c = arg;
	struct af_stream *s = c->server_side;
	struct request rq;
	int r;

	for (;;) {
		memset(&rq, 0, sizeof(rq));
		r = read_request(s, &rq);
		if (r == -ECANCELED && rq.state != REQUEST_LINE) {
			/* Shutting down in the middle of a request: finish it.
			 * The cancel came once; the bytes it interrupted wait
			 * in the buffer. */
			printf("server: cancelled after \"%s %s\": finishing it\n", rq.method,
			       rq.path);
			af_event_set(&c->finishing);
			r = read_request(s, &rq);
			if (r == 0) {
				printf("server: %s %s for host \"%s\", then closing\n", rq.method,
				       rq.path, rq.host);
				return respond(s, 200, rq.path);
			}
		}
		if (r < 0)
			return r == -ENODATA || r == -ETIMEDOUT || r == -ECANCELED ? 0 : r;
		if (r > 0) {
			printf("server: refused with %d\n", r);
			if (r == 408)
				show_kept(s);
			return respond(s, r, "");
		}
		printf("server: %s %s, %zu-byte body\n", rq.method, rq.path, rq.length);
		r = respond(s, 200, rq.length ? rq.body : rq.path);
		if (r < 0)
			return r;
	}
}

/* ---- the client side: the main task ------------------------------------------ */


static int send_str(struct conn *c, const char *text)
{
	int n = af_send(c->fd, text, strlen(text), 0);

	return n < 0 ? n : 0;
}

/* Read one response: its status line and body, as text in @out. */
static int read_response(struct conn *c, char *out, size_t size)
{
	struct request rp = { .state = HEADERS };   /* a status line, then headers */
	int n;

	n = af_stream_readline_timeout(c->client_side, rp.line, sizeof(rp.line), 10000 * MS);
	if (n <= 0)
		return n < 0 ? n : -ENODATA;
	rp.line[strcspn(rp.line, "\r")] = '\0';
	snprintf(out, size, "client: %s", rp.line);
	while (rp.state != BODY) {
		n = af_stream_readline(c->client_side, rp.line, sizeof(rp.line));
		if (n <= 0 || parse_line(&rp))
			return n < 0 ? n : -EBADMSG;
	}
	n = af_stream_readexactly(c->client_side, rp.body, rp.length);
	if (n < 0)
		return n;
	snprintf(out + strlen(out), size - strlen(out), " \"%.*s\"", (int)rp.length, rp.body);
	return 0;
}

static int print_response(struct conn *c)
{
	char text[MAX_LINE + MAX_BODY];
	int r = read_response(c, text, sizeof(text));

	if (r == 0)
		printf("%s\n", text);
	return r;
}

static int in_pieces(struct conn *c)
{
	const char *req = "POST /echo HTTP/1.0\r\nContent-Length: 11\r\n\r\nhello world";
	size_t len = strlen(req);
	int r = 0;

	for (size_t i = 0; i < len && r == 0; i += 4) {
		r = af_send(c->fd, req + i, len - i < 4 ? len - i : 4, 0);
		if (r >= 0)
			r = af_sleep_ms(1);      /* the server sees each piece alone */
	}
	return r < 0 ? r : print_response(c);
}

static int pipelined(struct conn *c)
{
	char a[MAX_LINE + MAX_BODY], b[MAX_LINE + MAX_BODY];
	int r = send_str(c, "GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n");

	/* Both before printing, so that the server's log of /b comes first
	 * on every run. */
	if (r == 0)
		r = read_response(c, a, sizeof(a));
	if (r == 0)
		r = read_response(c, b, sizeof(b));
	if (r == 0)
		printf("%s\n%s\n", a, b);
	return r;
}

static int too_long(struct conn *c)
{
	int r = send_str(c, "GET /big HTTP/1.0\r\nCookie: ");

	for (int i = 0; i < MAX_LINE / 8 && r == 0; i++)
		r = send_str(c, "12345678");
	return r < 0 ? r : print_response(c);
}

static int silent(struct conn *c)
{
	int r = send_str(c, "GET /slow HTTP/1.0\r\nHost: exa");

	return r < 0 ? r : print_response(c);
}

static int shutdown_mid_request(struct conn *c)
{
	int r = send_str(c, "GET /late HTTP/1.0\r\nHo");

	/* Let the server read that much and wait for the rest. */
	if (r == 0)
		r = af_sleep_ms(100);
	if (r == 0)
		r = af_task_cancel(c->server);
	/* Only for this demonstration's fixed output: had the rest come
	 * before the cancel landed, the line would have arrived whole and
	 * the cancel would have hit the server's next call instead. */
	if (r == 0)
		r = af_event_wait_timeout(&c->finishing, 10000 * MS);
	if (r == 0)
		r = send_str(c, "st: x\r\n\r\n");
	return r < 0 ? r : print_response(c);
}

static int open_conn(struct conn *c)
{
	int sv[2], r;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	c->fd = sv[1];
	af_event_init(&c->finishing);
	r = af_stream_new(&c->server_side, sv[0], NULL);
	if (r == 0)
		r = af_stream_new(&c->client_side, sv[1], NULL);
	if (r == 0)
		r = af_task_spawn(&c->server, serve, c);
	return r;
}

static int close_conn(struct conn *c)
{
	int fd = af_stream_fd(c->server_side), r, result = 0;

	shutdown(c->fd, SHUT_WR);      /* end of file: the server's loop ends */
	r = af_task_join(c->server, &result);
	af_stream_free(c->client_side);
	af_stream_free(c->server_side);
	close(fd);
	close(c->fd);
	return r < 0 ? r : result;
}

static int main_task(void *arg)
{
	static const struct {
		const char *title;
		int (*run)(struct conn *c);
	} scenarios[] = {
		{ "a request in 4-byte pieces", in_pieces },
		{ "two requests in one write", pipelined },
		{ "a header over the 128-byte limit", too_long },
		{ "a client that goes silent mid-header", silent },
		{ "shutting down in the middle of a request", shutdown_mid_request },
	};
	struct conn c;
	int r;

	(void)arg;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
		printf("--- %s\n", scenarios[i].title);
		r = open_conn(&c);
		if (r < 0) {
			fprintf(stderr, "stream-request: %s\n", af_strerror(r));
			return r;
		}
		r = scenarios[i].run(&c);
		if (r == 0)
			r = close_conn(&c);
		if (r < 0) {
			fprintf(stderr, "stream-request: %s: %s\n", scenarios[i].title,
				af_strerror(r));
			return r;
		}
	}
	return 0;
}

int main(void)
{
	/* Line buffering even when stdout is a pipe: the test compares it. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	return af_run(main_task, NULL) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

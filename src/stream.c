/* SPDX-License-Identifier: MIT */
/*
 * Buffered streams on top of the I/O calls. Every read goes into the
 * stream's own fixed buffer first and is only copied out once a whole
 * line, record or count is there, so a call that fails, times out or is
 * cancelled half-way has consumed nothing: the bytes wait in the buffer
 * for the next call. af_read() itself returns data that completed despite
 * a cancel, so nothing is lost between the kernel and the buffer either.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

#define AF_STREAM_DEFAULT ((size_t)64 * 1024)
#define AF_STREAM_MAX ((size_t)1 << 30)

struct af_stream {
	int fd;
	bool reading, writing;   /* one reader and one writer task at a time */
	bool socket;             /* drain with send(2), which cannot raise SIGPIPE */
	char *rbuf;
	size_t rcap, rstart, rend;
	char *wbuf;
	size_t wcap, wlen;
};

static int64_t remaining(uint64_t deadline)
{
	uint64_t now;

	if (deadline == UINT64_MAX)
		return -1;
	now = af__now_ns();
	return deadline > now ? (int64_t)(deadline - now) : 0;
}

AF_API int af_stream_new(struct af_stream **out, int fd, const struct af_stream_opts *opts)
{
	size_t rcap = opts && opts->read_buffer ? opts->read_buffer : AF_STREAM_DEFAULT;
	size_t wcap = opts && opts->write_buffer ? opts->write_buffer : AF_STREAM_DEFAULT;
	struct af_stream *s;
	struct stat st;

	af_assert_return(out, -EINVAL);
	af_assert_return(!opts || (!opts->_reserved[0] && !opts->_reserved[1]), -EINVAL);
	af_assert_return(rcap <= AF_STREAM_MAX && wcap <= AF_STREAM_MAX, -EINVAL);
	if (fd < 0 || fstat(fd, &st) < 0)
		return -EBADF;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->rbuf = malloc(rcap);
	if (!s->rbuf)
		goto err_free_stream;
	s->wbuf = malloc(wcap);
	if (!s->wbuf)
		goto err_free_rbuf;
	s->fd = fd;
	s->socket = S_ISSOCK(st.st_mode);
	s->rcap = rcap;
	s->wcap = wcap;
	*out = s;
	return 0;

err_free_rbuf:
	free(s->rbuf);
err_free_stream:
	free(s);
	return -ENOMEM;
}

AF_API void af_stream_free(struct af_stream *s)
{
	if (!s)
		return;
	if (s->reading || s->writing) {
		af__misuse(__func__, "a task is still inside a call on the stream; cancel it first");
		return;
	}
	free(s->wbuf);
	free(s->rbuf);
	free(s);
}

AF_API int af_stream_fd(const struct af_stream *s)
{
	af_assert_return(s, -EINVAL);
	return s->fd;
}

/* ---- reading ------------------------------------------------------------------- */

static size_t buffered(const struct af_stream *s)
{
	return s->rend - s->rstart;
}

/* One read(2) into the free end of the buffer. 0 at end of file. */
static int fill(struct af_stream *s, uint64_t deadline)
{
	size_t room;
	int r;

	if (s->rend == s->rcap && s->rstart) {
		memmove(s->rbuf, s->rbuf + s->rstart, buffered(s));
		s->rend -= s->rstart;
		s->rstart = 0;
	}
	room = s->rcap - s->rend;
	if (room > INT_MAX)
		room = INT_MAX;
	r = af_read_timeout(s->fd, s->rbuf + s->rend, room, AF_OFFSET_CURRENT,
			    remaining(deadline));
	if (r > 0)
		s->rend += (size_t)r;
	return r;
}

static int take(struct af_stream *s, void *buf, size_t n, bool nul)
{
	memcpy(buf, s->rbuf + s->rstart, n);
	if (nul)
		((char *)buf)[n] = '\0';
	s->rstart += n;
	if (s->rstart == s->rend)
		s->rstart = s->rend = 0;
	return (int)n;
}

static int begin_read(struct af_stream *s)
{
	if (s->reading)
		return -EBUSY;
	s->reading = true;
	return 0;
}

static int end_read(struct af_stream *s, int r)
{
	s->reading = false;
	return r;
}

static int read_until(struct af_stream *s, const void *delim, size_t dlen, char *buf,
		      size_t size, uint64_t deadline)
{
	size_t limit = size - 1 < s->rcap ? size - 1 : s->rcap;
	/* Where the delimiter could start that has not been searched yet:
	 * each byte is looked at about once however the data trickles in. */
	size_t scanned = 0;

	for (;;) {
		size_t avail = buffered(s), window = avail < limit ? avail : limit;
		const char *base = s->rbuf + s->rstart;
		const char *p = NULL;
		int r;

		if (window >= dlen) {
			size_t from = scanned > dlen - 1 ? scanned - (dlen - 1) : 0;

			p = memmem(base + from, window - from, delim, dlen);
			scanned = window;
		}
		if (p)
			return take(s, buf, (size_t)(p - base) + dlen, true);
		if (avail >= limit)
			return -EMSGSIZE;
		r = fill(s, deadline);
		if (r < 0)
			return r;
		if (r == 0)
			return take(s, buf, avail, true);  /* end of file */
	}
}

AF_API int af_stream_readuntil_timeout(struct af_stream *s, const void *delim, size_t dlen,
				       char *buf, size_t size, int64_t timeout_ns)
{
	uint64_t deadline = af__deadline(timeout_ns);
	int r;

	af_assert_return(s && delim && dlen && buf && size, -EINVAL);
	r = begin_read(s);
	if (r < 0)
		return r;
	return end_read(s, read_until(s, delim, dlen, buf, size, deadline));
}

AF_API int af_stream_readuntil(struct af_stream *s, const void *delim, size_t dlen,
			       char *buf, size_t size)
{
	return af_stream_readuntil_timeout(s, delim, dlen, buf, size, -1);
}

AF_API int af_stream_readline_timeout(struct af_stream *s, char *buf, size_t size,
				      int64_t timeout_ns)
{
	return af_stream_readuntil_timeout(s, "\n", 1, buf, size, timeout_ns);
}

AF_API int af_stream_readline(struct af_stream *s, char *buf, size_t size)
{
	return af_stream_readuntil_timeout(s, "\n", 1, buf, size, -1);
}

static int read_exactly(struct af_stream *s, void *buf, size_t n, uint64_t deadline)
{
	while (buffered(s) < n) {
		int r = fill(s, deadline);

		if (r < 0)
			return r;
		if (r == 0)
			return buffered(s) ? -ENODATA : 0;
	}
	return take(s, buf, n, false);
}

AF_API int af_stream_readexactly_timeout(struct af_stream *s, void *buf, size_t n,
					 int64_t timeout_ns)
{
	uint64_t deadline = af__deadline(timeout_ns);
	int r;

	af_assert_return(s && (buf || !n), -EINVAL);
	if (n > s->rcap || n > INT_MAX)
		return -EMSGSIZE;
	r = begin_read(s);
	if (r < 0)
		return r;
	return end_read(s, read_exactly(s, buf, n, deadline));
}

AF_API int af_stream_readexactly(struct af_stream *s, void *buf, size_t n)
{
	return af_stream_readexactly_timeout(s, buf, n, -1);
}

AF_API int af_stream_read_timeout(struct af_stream *s, void *buf, size_t size,
				  int64_t timeout_ns)
{
	uint64_t deadline = af__deadline(timeout_ns);
	int r = 0;

	af_assert_return(s && (buf || !size), -EINVAL);
	r = begin_read(s);
	if (r < 0)
		return r;
	if (!buffered(s) && size)
		r = fill(s, deadline);
	if (r >= 0) {
		size_t n = buffered(s) < size ? buffered(s) : size;

		r = take(s, buf, n > INT_MAX ? INT_MAX : n, false);
	}
	return end_read(s, r);
}

AF_API int af_stream_read(struct af_stream *s, void *buf, size_t size)
{
	return af_stream_read_timeout(s, buf, size, -1);
}

/* ---- writing ------------------------------------------------------------------- */

/* A peer that hangs up is an error to report, not a reason for the whole
 * process to die: on sockets send(2) with MSG_NOSIGNAL (af_send adds it)
 * returns -EPIPE where write(2) raises SIGPIPE. Pipes have no such flag. */
static int write_some(struct af_stream *s, const char *buf, size_t n, uint64_t deadline)
{
	if (n > INT_MAX)
		n = INT_MAX;
	if (s->socket)
		return af_send_timeout(s->fd, buf, n, 0, remaining(deadline));
	return af_write_timeout(s->fd, buf, n, AF_OFFSET_CURRENT, remaining(deadline));
}

/* Write the buffer out; what is not written stays, at the front. */
static int drain(struct af_stream *s, uint64_t deadline)
{
	size_t done = 0;
	int r = 0;

	while (done < s->wlen) {
		r = write_some(s, s->wbuf + done, s->wlen - done, deadline);
		if (r < 0)
			break;
		done += (size_t)r;
		r = 0;
	}
	memmove(s->wbuf, s->wbuf + done, s->wlen - done);
	s->wlen -= done;
	return r;
}

AF_API int af_stream_write_timeout(struct af_stream *s, const void *buf, size_t len,
				   int64_t timeout_ns)
{
	uint64_t deadline = af__deadline(timeout_ns);
	size_t accepted = 0;
	int r = 0;

	af_assert_return(s && (buf || !len), -EINVAL);
	if (s->writing)
		return -EBUSY;
	if (len > INT_MAX)
		len = INT_MAX;
	s->writing = true;
	while (accepted < len) {
		size_t n = s->wcap - s->wlen;

		if (n == 0) {
			r = drain(s, deadline);
			if (r < 0)
				break;
			continue;
		}
		if (n > len - accepted)
			n = len - accepted;
		memcpy(s->wbuf + s->wlen, (const char *)buf + accepted, n);
		s->wlen += n;
		accepted += n;
	}
	s->writing = false;
	return accepted || r == 0 ? (int)accepted : r;
}

AF_API int af_stream_write(struct af_stream *s, const void *buf, size_t len)
{
	return af_stream_write_timeout(s, buf, len, -1);
}

AF_API int af_stream_drain_timeout(struct af_stream *s, int64_t timeout_ns)
{
	uint64_t deadline = af__deadline(timeout_ns);
	int r;

	af_assert_return(s, -EINVAL);
	if (s->writing)
		return -EBUSY;
	s->writing = true;
	r = drain(s, deadline);
	s->writing = false;
	return r;
}

AF_API int af_stream_drain(struct af_stream *s)
{
	return af_stream_drain_timeout(s, -1);
}

/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_STREAM_H
#define ASYNCFLAG_STREAM_H

#include <asyncflag/common.h>

AF_BEGIN_DECLS

/**
 * A buffered stream over a file descriptor the loop can read and write
 * (a socket, pipe, tty or file): asyncio's StreamReader and StreamWriter
 * in one object.
 *
 * Memory is bounded: the read and write buffers are allocated by
 * af_stream_new() and never grow, so a peer that never sends a newline
 * cannot make af_stream_readline() use more than the read buffer; it
 * fails with -EMSGSIZE and keeps the data. No call ever loses buffered
 * bytes: a read that is cancelled or times out leaves what it had read in
 * the buffer for the next call, and a drain that stops leaves what it has
 * not written. Calls come from tasks of one loop; one task reads and one
 * task writes at a time (-EBUSY otherwise). Heap object.
 */
struct af_stream;

/** Options for af_stream_new(). Zero fields mean the defaults. */
struct af_stream_opts {
	/** Read buffer size in bytes, the longest line or record a read can
	 *  return; 0 means 64 KiB; at most 1 GiB. */
	size_t read_buffer;
	/** Write buffer size in bytes; 0 means 64 KiB; at most 1 GiB. */
	size_t write_buffer;
	/** Reserved; keep zero. */
	uint64_t _reserved[2];
};

/**
 * @brief Create a stream over @p fd (which stays the caller's: the stream
 * never closes it).
 * @param out receives the stream.
 * @param opts NULL for the defaults.
 * @return 0; -EINVAL if @p out is NULL, @p opts has a size above 1 GiB or
 *         a reserved field set; -EBADF if @p fd is not an open file
 *         descriptor; -ENOMEM.
 */
int af_stream_new(struct af_stream **out, int fd, const struct af_stream_opts *opts);

/**
 * @brief Free the stream and its buffers. Bytes not yet written are
 * dropped: call af_stream_drain() first. The fd is left open. No task may
 * be inside a call on the stream. NULL is ignored.
 */
void af_stream_free(struct af_stream *s);

/** @brief The stream's file descriptor; -EINVAL for NULL. */
int af_stream_fd(const struct af_stream *s);

/**
 * @brief Read up to and including the next newline.
 *
 * Copies the line, newline included, into @p buf and terminates it with a
 * NUL. At end of file a last line without a newline is returned as it is.
 * @param size the size of @p buf: a line may be at most @p size - 1 bytes
 *        long (and no longer than the read buffer).
 * @return the line's length (0 at end of file, nothing buffered);
 *         -EMSGSIZE if no newline came within the limit (the bytes stay
 *         buffered: af_stream_read() takes them); -EINVAL for a NULL
 *         argument or @p size 0; -EBUSY if another task is reading; any
 *         error of af_read(), such as -ECANCELED, -EPERM or -ECONNRESET
 *         (what was read so far stays buffered).
 */
int af_stream_readline(struct af_stream *s, char *buf, size_t size);

/** @brief af_stream_readline() giving up after @p timeout_ns (negative:
 *  forever). @return as af_stream_readline(), plus -ETIMEDOUT (what was
 *  read so far stays buffered). */
int af_stream_readline_timeout(struct af_stream *s, char *buf, size_t size,
			       int64_t timeout_ns);

/**
 * @brief af_stream_readline() with any delimiter of @p dlen bytes (asyncio's
 * readuntil()). The record copied into @p buf ends with the delimiter and
 * is NUL-terminated.
 * @return as af_stream_readline(); -EINVAL also for a NULL or empty
 *         delimiter.
 */
int af_stream_readuntil(struct af_stream *s, const void *delim, size_t dlen,
			char *buf, size_t size);

/** @brief af_stream_readuntil() giving up after @p timeout_ns.
 *  @return as af_stream_readuntil(), plus -ETIMEDOUT. */
int af_stream_readuntil_timeout(struct af_stream *s, const void *delim, size_t dlen,
				char *buf, size_t size, int64_t timeout_ns);

/**
 * @brief Read exactly @p n bytes into @p buf (no NUL is added).
 * @return @p n; 0 at end of file with nothing buffered; -ENODATA at end of
 *         file after fewer than @p n bytes (they stay buffered); -EMSGSIZE
 *         if @p n is larger than the read buffer; -EINVAL for a NULL
 *         argument; -EBUSY; any error of af_read() (nothing is consumed).
 */
int af_stream_readexactly(struct af_stream *s, void *buf, size_t n);

/** @brief af_stream_readexactly() giving up after @p timeout_ns.
 *  @return as af_stream_readexactly(), plus -ETIMEDOUT (nothing consumed). */
int af_stream_readexactly_timeout(struct af_stream *s, void *buf, size_t n,
				  int64_t timeout_ns);

/**
 * @brief Read what is buffered, or, if nothing is, what one read(2)
 * returns: at most @p size bytes.
 * @return the number of bytes (0 at end of file); -EINVAL; -EBUSY; any
 *         error of af_read().
 */
int af_stream_read(struct af_stream *s, void *buf, size_t size);

/** @brief af_stream_read() giving up after @p timeout_ns.
 *  @return as af_stream_read(), plus -ETIMEDOUT. */
int af_stream_read_timeout(struct af_stream *s, void *buf, size_t size, int64_t timeout_ns);

/**
 * @brief Queue @p len bytes for writing. Only when the write buffer is
 * full does it write (drain) to make room, so small writes cost no system
 * call until af_stream_drain().
 * @return the number of bytes accepted: @p len (at most INT_MAX: the
 *         count is an int), or fewer if draining failed part-way (the
 *         accepted ones are buffered or written);
 *         -EINVAL for a NULL stream, or NULL @p buf with a non-zero
 *         @p len; -EBUSY if another task is writing; an error of
 *         af_write() (such as -ECANCELED or -EPIPE) if nothing was
 *         accepted.
 */
int af_stream_write(struct af_stream *s, const void *buf, size_t len);

/** @brief af_stream_write() giving up after @p timeout_ns.
 *  @return as af_stream_write(), plus -ETIMEDOUT if nothing was accepted. */
int af_stream_write_timeout(struct af_stream *s, const void *buf, size_t len,
			    int64_t timeout_ns);

/**
 * @brief Write out everything buffered.
 *
 * On a socket it writes with af_send(), so a peer that has gone is
 * -EPIPE (or -ECONNRESET), never SIGPIPE; on a pipe it writes with
 * af_write(), and as with write(2) a pipe whose reader is gone raises
 * SIGPIPE unless it is ignored.
 * @return 0; -EINVAL for NULL; -EBUSY if another task is writing; any
 *         error of af_send() or af_write(), such as -ECANCELED, -EPIPE or
 *         -EPERM (the bytes not written stay buffered).
 */
int af_stream_drain(struct af_stream *s);

/** @brief af_stream_drain() giving up after @p timeout_ns.
 *  @return as af_stream_drain(), plus -ETIMEDOUT. */
int af_stream_drain_timeout(struct af_stream *s, int64_t timeout_ns);

AF_END_DECLS

#endif

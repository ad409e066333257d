/* SPDX-License-Identifier: MIT */
/*
 * asyncflag-bench: the TCP echo scenario is bench-echo itself (bench-echo.c,
 * built into this program with its main() renamed), run in a child process
 * so that its threads, loops and descriptors end with it, and its JSON read
 * back. One copy of the echo code, one method; see bench/README.md.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "afb.h"

int afb_echo_main(int argc, char **argv);

static char *slurp(int fd)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	ssize_t n;

	while (buf && (n = read(fd, buf + len, cap - len - 1)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t)n;
		if (cap - len < 1024) {
			char *b = realloc(buf, cap *= 2);

			if (!b) {
				free(buf);
				return NULL;
			}
			buf = b;
		}
	}
	if (buf)
		buf[len] = '\0';
	return buf;
}

static int run_child(char **args, char **out)
{
	int fd[2], st;
	pid_t pid;

	fflush(NULL);
	if (pipe(fd) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int argc = 0;

		while (args[argc])
			argc++;
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		optind = 0;   /* getopt starts afresh in bench-echo's main() */
		_exit(afb_echo_main(argc, args));
	}
	close(fd[1]);
	*out = slurp(fd[0]);
	close(fd[0]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st))
		return -EINTR;
	return WEXITSTATUS(st);
}

/* bench-echo's JSON has a fixed layout: one object per connection count,
 * "conns" first, then one object per path, each holding the percentile
 * objects. A sequential search for the keys in that order is enough. */
static const char *after(const char *from, const char *end, const char *key)
{
	const char *p = strstr(from, key);

	return p && (!end || p < end) ? p + strlen(key) : NULL;
}

static double pct_of(const char *obj, const char *end, const char *what, const char *pct)
{
	const char *p = after(obj, end, what);

	p = p ? after(p, end, pct) : NULL;
	return p ? strtod(p, NULL) : -1;
}

static double p50_of(const char *obj, const char *end, const char *what)
{
	return pct_of(obj, end, what, "\"p50\": ");
}

static void summarise(struct afb_result *r, const char *json)
{
	static const char *const paths[] = { "\"af\":", "\"uv\":", "\"blocking\":", "\"io_uring\":" };
	size_t cap = 2048, at = 0;
	char *t = malloc(cap);
	const char *p = json;

	if (!t)
		return;
	at += (size_t)snprintf(t + at, cap - at, "%-10s %-15s %7s %11s %11s  %s\n", "echo",
			       "path", "conns", "RT/s p50", "CPU ns/RT",
			       "af/path RT/s, per round: p50 (p10-p90)");
	while ((p = after(p, NULL, "\"conns\": "))) {
		const char *next = strstr(p, "\"conns\": ");
		long conns = strtol(p, NULL, 10);
		double af_rt = -1;

		for (size_t k = 0; k < sizeof(paths) / sizeof(paths[0]); k++) {
			const char *q = after(p, next, paths[k]);
			double rt, cpu;

			if (!q)
				continue;
			rt = p50_of(q, next, "\"roundtrips_per_s\"");
			cpu = p50_of(q, next, "\"cpu_ns_per_rt_total\"");
			if (k == 0)
				af_rt = rt;
			if (rt < 0)
				continue;   /* that path does not run at this count */
			if (cap - at < 200)
				break;
			at += (size_t)snprintf(t + at, cap - at, "%-10s %-15.*s %7ld %11.0f %11.0f", "",
					       (int)strlen(paths[k]) - 3, paths[k] + 1, conns, rt, cpu);
			if (k > 0 && rt > 0 && af_rt > 0) {
				char key[40];

				/* The per-round ratio, as bench-echo reports it: both
				 * ran within a second of each other in each round. */
				snprintf(key, sizeof(key), "\"ratio_af_over_%.*s\"",
					 (int)strlen(paths[k]) - 3, paths[k] + 1);
				at += (size_t)snprintf(t + at, cap - at, "  %.2fx (%.2f-%.2f)",
						       p50_of(p, next, key),
						       pct_of(p, next, key, "\"p10\": "),
						       pct_of(p, next, key, "\"p90\": "));
			}
			at += (size_t)snprintf(t + at, cap - at, "\n");
		}
	}
	r->echo_text = t;
}

int afb_run_echo(struct afb_result *r, const struct afb_opts *o, const char *argv0)
{
	char rounds[32], secs[32];
	char *args[] = { (char *)argv0, "--json", "--conns", "1,100", "--rounds", rounds,
			 "--seconds", secs, "--no-count", NULL };
	char *out = NULL;
	double s = o->iterations ? 0.05 : o->duration_s / 8;
	int st;

	r->baseline = -1;
	/* Each round runs six timed passes (four paths at 1 connection, two
	 * at 100): the budget buys rounds of about 0.1 s passes. */
	snprintf(secs, sizeof(secs), "%.3f", s < 0.05 ? 0.05 : s > 0.25 ? 0.25 : s);
	snprintf(rounds, sizeof(rounds), "%d",
		 o->iterations ? 3 : (int)(o->duration_s / (6 * strtod(secs, NULL))) + 1);
	afb_progress("echo", 0);
	st = run_child(args, &out);
	if (st == 77) {
		snprintf(r->skipped, sizeof(r->skipped), "skipped: io_uring is not available");
		free(out);
		return 0;
	}
	if (st != 0 || !out) {
		snprintf(r->skipped, sizeof(r->skipped), "bench-echo failed (status %d)", st);
		free(out);
		return -1;
	}
	r->echo_json = out;
	summarise(r, out);
	snprintf(r->note, sizeof(r->note),
		 "round trips/s and CPU per round trip over loopback TCP, one message in "
		 "flight per connection; af/path: af's round trips/s over the path's in the "
		 "same round (above 1, af is faster), median and the middle 80%% of rounds; "
		 "bench-echo --rounds %s --seconds %s", rounds, secs);
	r->ran = true;
	return 0;
}

/* SPDX-License-Identifier: MIT */
/* Three downloads in a group: one fails, so the group cancels the others
 * and the join returns the failure (docs/group.md). */
#include <asyncflag.h>
#include <errno.h>
#include <stdio.h>

struct download {
	const char *name;
	unsigned ms;      /* how long it takes */
	int result;       /* what it returns */
};

static int download(void *arg)
{
	struct download *d = arg;
	int r = af_sleep_ms(d->ms);

	if (r < 0) {
		printf("%s: %s\n", d->name, af_strerror(r));
		return r;
	}
	printf("%s: done, %d\n", d->name, d->result);
	return d->result;
}

static int main_task(void *arg)
{
	struct download d[] = {
		{ "fast", 1, 100 }, { "broken", 20, -EHOSTUNREACH }, { "slow", 5000, 300 },
	};
	struct af_task *fast;
	struct af_group g;
	int r, result;

	(void)arg;
	af_group_init(&g, 0);
	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		r = af_group_spawn(&g, i == 0 ? &fast : NULL, download, &d[i]);
		if (r < 0)
			return r;
	}
	r = af_group_join(&g);
	printf("join: %s\n", af_strerror(r));
	/* A member whose handle we kept still has its result. */
	af_task_join(fast, &result);
	printf("fast returned %d\n", result);
	return 0;
}

int main(void)
{
	/* Line buffering even when stdout is a pipe: the test compares it. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* A loop on io_uring, or on epoll where io_uring is switched off. */
	return af_run(main_task, NULL) == 0 ? 0 : 1;
}

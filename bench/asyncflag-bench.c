/* SPDX-License-Identifier: MIT */
/*
 * asyncflag-bench: how fast a thread, a signal, an edge or another task
 * wakes a coroutine on this machine, each against the kernel's, libc's and
 * libuv's own ways, measured in the same process, the same run and the same
 * clock, interleaved. Prints a table; writes JSON, cyclictest's histogram
 * and a gnuplot plot on request. See docs/bench.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "afb.h"
#include "asyncflag.h"

const char *const afb_scenario_name[AFB_NSCENARIOS] = {
	[AFB_WAKE_COLD] = "wake-cold",
	[AFB_WAKE_HOT] = "wake-hot",
	[AFB_SIGNAL] = "signal",
	[AFB_GPIO] = "gpio",
	[AFB_GPIO_IRQ] = "gpio-irq",
	[AFB_GPIO_EDGE] = "gpio-edge",
	[AFB_EVENT] = "event",
	[AFB_SWITCH] = "switch",
	[AFB_FANOUT] = "fanout",
	[AFB_ECHO] = "echo",
	[AFB_SPAWN] = "spawn",
};

/* ---- helpers the scenarios share ------------------------------------------------ */

struct afb_dist *afb_dist_add(struct afb_result *r, const char *path, const char *what)
{
	struct afb_dist *d = &r->d[r->nd < AFB_MAX_PATHS ? r->nd++ : AFB_MAX_PATHS - 1];

	memset(d, 0, sizeof(*d));
	d->path = path;
	d->what = what;
	d->available = true;
	return d;
}

void afb_dist_unavailable(struct afb_dist *d, const char *fmt, ...)
{
	va_list ap;

	d->available = false;
	va_start(ap, fmt);
	vsnprintf(d->why, sizeof(d->why), fmt, ap);
	va_end(ap);
}

int afb_run_main(struct afb_result *r, af_task_fn fn, void *arg, int *err)
{
	struct af_loop *loop;
	int res = 0;

	*err = af_loop_new(&loop, NULL);
	if (*err < 0) {
		snprintf(r->skipped, sizeof(r->skipped), "af_loop_new: %s", af_strerror(*err));
		return 1;
	}
	*err = af_loop_run(loop, fn, arg, &res);
	af_loop_free(loop);
	if (*err == 0 && res < 0)
		*err = res;
	return 0;
}

int afb_run_scenario(struct afb_result *r, af_task_fn fn, void *arg)
{
	int err;

	if (afb_run_main(r, fn, arg, &err))
		return 0;
	if (err < 0)
		return afb_fail(r, err);
	r->ran = true;
	return 0;
}

int afb_fail(const struct afb_result *r, int err)
{
	fprintf(stderr, "asyncflag-bench: %s: %s\n", afb_scenario_name[r->id], af_strerror(err));
	return -1;
}

size_t afb_rounds(const struct afb_opts *o, size_t full)
{
	return o->iterations ? (size_t)o->iterations : full;
}

bool afb_time_up(const struct afb_opts *o, uint64_t start_ns)
{
	return (double)(bench_now_ns() - start_ns) >= o->duration_s * 1e9;
}

void afb_pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* ---- progress: one line on a terminal, rewritten in place --------------------- */

/* What the bar needs to estimate the time left; written by the main thread
 * only (the scenarios report from the thread that drives them). */
static struct {
	bool on;
	int left;            /* scenarios not started yet */
	double per;          /* seconds budgeted per scenario */
	const char *current;
	uint64_t last_ns;
} progress;

void afb_progress(const char *scenario, double done)
{
	uint64_t now = bench_now_ns();
	char bar[21];
	double left;
	int full;

	if (progress.current != scenario) {
		progress.current = scenario;
		progress.left--;
	}
	if (!progress.on || now - progress.last_ns < 100000000u)
		return;
	progress.last_ns = now;
	done = done < 0 ? 0 : done > 1 ? 1 : done;
	full = (int)(done * 20);
	for (int i = 0; i < 20; i++)
		bar[i] = i < full ? '#' : '.';
	bar[20] = '\0';
	left = (1 - done) * progress.per + progress.left * progress.per;
	fprintf(stderr, "\r[%s] %-10s about %3.0f s left ", bar, scenario, left);
}

static void progress_end(void)
{
	if (progress.on)
		fprintf(stderr, "\r%60s\r", "");
}

/* ---- --rt: what cyclictest does, where permitted ---------------------------------- */

static int dma_fd = -1;     /* held open for the run: closing it ends the request */

/* Fills @got with what was granted, for the report's header; says on
 * stderr what was not, and why. Threads made later inherit the policy. */
static void go_realtime(int prio, char *got, size_t len)
{
	struct sched_param sp = { .sched_priority = prio };
	char said[512] = "";
	size_t at = 0, g = 0;
	struct rlimit rl;
	int32_t zero = 0;

	/* With a finite RLIMIT_MEMLOCK and no CAP_IPC_LOCK, MCL_FUTURE makes
	 * every later mapping past the limit fail: the threads' stacks, the
	 * tasks', the samples. Better not locked than not run. */
	if (geteuid() != 0 && getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		at += (size_t)snprintf(said + at, sizeof(said) - at,
				       "mlockall: skipped, RLIMIT_MEMLOCK is %llu KiB (raise it: "
				       "ulimit -l unlimited, or run as root); ",
				       (unsigned long long)rl.rlim_cur / 1024);
	else if (mlockall(MCL_CURRENT | MCL_FUTURE) < 0)
		at += (size_t)snprintf(said + at, sizeof(said) - at, "mlockall: %s; ",
				       strerror(errno));
	else
		g += (size_t)snprintf(got + g, len - g, "memory locked, ");
	if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0)
		at += (size_t)snprintf(said + at, sizeof(said) - at,
				       "SCHED_FIFO %d: %s (needs root or CAP_SYS_NICE, or an "
				       "rtprio limit in /etc/security/limits.conf); ",
				       prio, strerror(errno));
	else
		g += (size_t)snprintf(got + g, len - g, "SCHED_FIFO %d, ", prio);
	dma_fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);
	if (dma_fd < 0 || write(dma_fd, &zero, sizeof(zero)) != (ssize_t)sizeof(zero)) {
		at += (size_t)snprintf(said + at, sizeof(said) - at, "/dev/cpu_dma_latency: %s; ",
				       strerror(errno));
		if (dma_fd >= 0)
			close(dma_fd);
		dma_fd = -1;
	} else {
		g += (size_t)snprintf(got + g, len - g, "cpu_dma_latency 0, ");
	}
	if (g >= 2)
		got[g - 2] = '\0';
	if (at)
		fprintf(stderr, "asyncflag-bench: --rt %d: %srunning without those\n", prio, said);
}

/* ---- options ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
"usage: asyncflag-bench [OPTIONS]\n"
"Measures how fast a coroutine on a libasyncflag loop is woken by a thread, a\n"
"signal, a GPIO edge or another task, beside the kernel's, libc's and libuv's own\n"
"ways, in the same process and run, interleaved. See docs/bench.md.\n"
"\n"
"What to run:\n"
"  --scenario LIST   comma-separated, from: wake-cold wake-hot signal gpio event\n"
"                    switch fanout echo spawn, or all (default all); gpio also\n"
"                    gives gpio-irq (interrupt mode) and gpio-edge (write -> edge)\n"
"  --quick           about 10 seconds in all: 1 s per scenario, fan-out up to 10^5\n"
"  --duration S      seconds per scenario (default 4; decimals allowed)\n"
"  --iterations N    samples per path instead of a time budget\n"
"  --gap-us US       wake-cold and signal: once the waiter is asleep, the setter\n"
"                    sleeps US microseconds itself before it sets (default 50)\n"
"  --fanout-max N    largest fan-out, a power of ten from 100 (default 1000000)\n"
"\n"
"GPIO (scenario gpio):\n"
"  --chip PATH       a real chip, e.g. /dev/gpiochip0 (default: the simulated chip)\n"
"  --out-line N      the output line the tool drives\n"
"  --in-line N       the input line, wired to the output with a jumper\n"
"\n"
"How to run it:\n"
"  --cpu LIST        pin: the first CPU for the setting thread, the second for the\n"
"                    loop's thread (one CPU: both on it), e.g. --cpu 2,3\n"
"  --rt PRIO         SCHED_FIFO at PRIO (1-99), mlockall and /dev/cpu_dma_latency 0,\n"
"                    as cyclictest does; says what was not permitted\n"
"\n"
"Output (the table always goes to stdout):\n"
"  --json FILE       every figure, machine-readable\n"
"  --histogram FILE  cyclictest's histogram format, 1 us buckets, one column per path\n"
"  --hist-buckets N  histogram buckets (default 1000, as cyclictest -h 1000)\n"
"  --plot FILE       latency histograms with a log y axis, FILE.svg or FILE.png\n"
"                    (needs gnuplot)\n"
"  --help            this text\n"
"\n"
"Exit status: 0 measured, 1 a measurement failed, 2 bad options.\n");
}

static int parse_scenarios(const char *s, unsigned *mask)
{
	char buf[256], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int k;

		if (!strcmp(t, "all")) {
			*mask = (1u << AFB_NSCENARIOS) - 1;
			continue;
		}
		for (k = 0; k < AFB_NSCENARIOS; k++)
			if (!strcmp(t, afb_scenario_name[k]))
				break;
		if (k == AFB_NSCENARIOS) {
			fprintf(stderr, "--scenario: unknown scenario \"%s\" (see --help)\n", t);
			return -1;
		}
		*mask |= 1u << k;
	}
	/* The GPIO run gives its three tables together. */
	if (*mask & ((1u << AFB_GPIO) | (1u << AFB_GPIO_IRQ) | (1u << AFB_GPIO_EDGE)))
		*mask |= (1u << AFB_GPIO) | (1u << AFB_GPIO_IRQ) | (1u << AFB_GPIO_EDGE);
	return 0;
}

static int parse_cpus(const char *s, int cpu[2])
{
	char buf[64], *save = NULL;
	int n = 0;
	long ncpu = sysconf(_SC_NPROCESSORS_CONF);

	snprintf(buf, sizeof(buf), "%s", s);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint64_t v;

		if (n == 2 || !bench_parse_u64("--cpu", t, 0, (uint64_t)(ncpu > 0 ? ncpu - 1 : 0), &v))
			return -1;
		cpu[n++] = (int)v;
	}
	if (n == 0)
		return -1;
	if (n == 1)
		cpu[1] = cpu[0];
	return 0;
}

static int parse_seconds(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end || !(v > 0) || v > 86400) {
		fprintf(stderr, "--duration: expected seconds in (0, 86400], got \"%s\"\n", s);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse(int argc, char **argv, struct afb_opts *o)
{
	static const struct option lo[] = {
		{ "scenario", required_argument, NULL, 's' },
		{ "quick", no_argument, NULL, 'q' },
		{ "duration", required_argument, NULL, 'd' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "gap-us", required_argument, NULL, 'g' },
		{ "fanout-max", required_argument, NULL, 'F' },
		{ "chip", required_argument, NULL, 'c' },
		{ "out-line", required_argument, NULL, 'o' },
		{ "in-line", required_argument, NULL, 'i' },
		{ "cpu", required_argument, NULL, 'C' },
		{ "rt", required_argument, NULL, 'r' },
		{ "json", required_argument, NULL, 'j' },
		{ "histogram", required_argument, NULL, 'H' },
		{ "hist-buckets", required_argument, NULL, 'B' },
		{ "plot", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool dur = false, fan = false, have_out = false, have_in = false;
	uint64_t v;
	int c;

	memset(o, 0, sizeof(*o));
	o->duration_s = 4;
	o->gap_us = 50;
	o->fanout_max = 1000000;
	o->hist_buckets = 1000;
	o->cpu[0] = o->cpu[1] = -1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (parse_scenarios(optarg, &o->scenarios) < 0)
				return -1;
			break;
		case 'q':
			o->quick = true;
			break;
		case 'd':
			if (parse_seconds(optarg, &o->duration_s) < 0)
				return -1;
			dur = true;
			break;
		case 'n':
			if (!bench_parse_u64("--iterations", optarg, 1, 10000000, &o->iterations))
				return -1;
			break;
		case 'g':
			if (!bench_parse_u64("--gap-us", optarg, 0, 999999, &o->gap_us))
				return -1;
			break;
		case 'F':
			if (!bench_parse_u64("--fanout-max", optarg, 100, 10000000, &o->fanout_max))
				return -1;
			fan = true;
			break;
		case 'c':
			o->chip = optarg;
			break;
		case 'o':
			if (!bench_parse_u64("--out-line", optarg, 0, 1023, &v))
				return -1;
			o->out_line = (unsigned)v;
			have_out = true;
			break;
		case 'i':
			if (!bench_parse_u64("--in-line", optarg, 0, 1023, &v))
				return -1;
			o->in_line = (unsigned)v;
			have_in = true;
			break;
		case 'C':
			if (parse_cpus(optarg, o->cpu) < 0) {
				fprintf(stderr, "--cpu: expected one or two CPU numbers, e.g. 2,3\n");
				return -1;
			}
			break;
		case 'r':
			if (!bench_parse_u64("--rt", optarg, 1, 99, &v))
				return -1;
			o->rt_prio = (int)v;
			break;
		case 'j':
			o->json = optarg;
			break;
		case 'H':
			o->histogram = optarg;
			break;
		case 'B':
			if (!bench_parse_u64("--hist-buckets", optarg, 1, 1000000, &v))
				return -1;
			o->hist_buckets = (unsigned)v;
			break;
		case 'p':
			o->plot = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "asyncflag-bench: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return -1;
	}
	if (o->chip && (!have_out || !have_in)) {
		fprintf(stderr, "--chip needs --out-line and --in-line: the lines joined by the jumper\n");
		return -1;
	}
	if (!o->chip && (have_out || have_in)) {
		fprintf(stderr, "--out-line and --in-line need --chip\n");
		return -1;
	}
	if (!o->scenarios)
		o->scenarios = (1u << AFB_NSCENARIOS) - 1;
	if (o->quick) {
		if (!dur)
			o->duration_s = 1;
		if (!fan)
			o->fanout_max = 100000;
	}
	return 0;
}

/* ---- main ------------------------------------------------------------------------------ */

static void header_line(const struct afb_opts *o, const char *rt, char *buf, size_t len)
{
	struct utsname u;
	struct af_loop *loop;
	unsigned f = 0;
	char pin[48] = "unpinned";

	if (af_loop_new(&loop, NULL) == 0) {
		f = af_loop_features(loop);
		af_loop_free(loop);
	}
	uname(&u);
	if (o->cpu[0] >= 0)
		snprintf(pin, sizeof(pin), "setter on CPU %d, loop on CPU %d", o->cpu[0], o->cpu[1]);
	snprintf(buf, len,
		 "asyncflag-bench: libasyncflag %s (%s%s%s%s%s), Linux %s %s, %ld CPUs, %s, %s",
		 af_version(), (f & AF_FEATURE_BACKEND_EPOLL) ? "epoll backend, " : "io_uring backend, ",
		 (f & AF_FEATURE_ASM_SWITCH) ? "asm switch" : "ucontext switch",
		 (f & AF_FEATURE_COOP_TASKRUN) ? ", COOP_TASKRUN" : "",
		 (f & AF_FEATURE_SINGLE_ISSUER) ? ", SINGLE_ISSUER" : "",
		 (f & AF_FEATURE_DEFER_TASKRUN) ? ", DEFER_TASKRUN" : "", u.release, u.machine,
		 sysconf(_SC_NPROCESSORS_ONLN), pin,
		 !o->rt_prio ? "not real-time" : rt[0] ? rt : "--rt refused (see stderr)");
}

static int run_all(struct afb_result *res, const struct afb_opts *o, const char *argv0)
{
	static const int order[] = { AFB_WAKE_COLD, AFB_WAKE_HOT, AFB_SIGNAL, AFB_GPIO,
				     AFB_GPIO_IRQ, AFB_GPIO_EDGE, AFB_EVENT, AFB_SWITCH,
				     AFB_FANOUT, AFB_ECHO, AFB_SPAWN };
	bool wake_done = false, loop_done = false;
	int n = 0;

	for (int k = 0; k < AFB_NSCENARIOS; k++)
		n += k != AFB_GPIO_IRQ && k != AFB_GPIO_EDGE && ((o->scenarios >> k) & 1);
	progress.per = o->duration_s;
	progress.on = isatty(2) && !o->iterations && (double)n * o->duration_s > 3;
	progress.left = n;
	for (size_t k = 0; k < sizeof(order) / sizeof(order[0]); k++) {
		int id = order[k], r = 0;

		if (!(o->scenarios & (1u << id)))
			continue;
		switch (id) {
		case AFB_WAKE_COLD:
		case AFB_WAKE_HOT:
		case AFB_SIGNAL:
		case AFB_GPIO:
		case AFB_GPIO_IRQ:
		case AFB_GPIO_EDGE:
			/* one worker and one loop for all of them: run them together */
			if (!wake_done)
				r = afb_run_wake(res, o);
			wake_done = true;
			break;
		case AFB_EVENT:
		case AFB_SWITCH:
			if (!loop_done)
				r = afb_run_loop(res, o);
			loop_done = true;
			break;
		case AFB_FANOUT:
			r = afb_run_fanout(&res[id], o);
			break;
		case AFB_ECHO:
			r = afb_run_echo(&res[id], o, argv0);
			break;
		case AFB_SPAWN:
			r = afb_run_spawn(&res[id], o);
			break;
		}
		if (r < 0) {
			progress_end();
			return -1;
		}
	}
	progress_end();
	return 0;
}

int main(int argc, char **argv)
{
	static struct afb_result res[AFB_NSCENARIOS];
	static const char *const titles[AFB_NSCENARIOS] = {
		"thread -> task, loop asleep", "thread -> task, loop busy",
		"signal handler -> task", "GPIO edge -> task, coroutine mode",
		"GPIO edge -> task, interrupt mode", "GPIO output write -> edge timestamp",
		"Event set -> waiter resumed",
		"task switch round trip", "one Event, N waiters", "TCP echo against libuv",
		"short task: spawn, run, block once, exit, join",
	};
	struct afb_opts o;
	char header[400], rt[400] = "";
	int status = 0, r;

	if (parse(argc, argv, &o) < 0)
		return 2;
	if (o.rt_prio)
		go_realtime(o.rt_prio, rt, sizeof(rt));
	afb_pin(o.cpu[0]);
	for (int k = 0; k < AFB_NSCENARIOS; k++) {
		res[k].id = (enum afb_scenario)k;
		res[k].title = titles[k];
		res[k].baseline = 1;
	}
	header_line(&o, rt, header, sizeof(header));
	if (run_all(res, &o, argv[0]) < 0)
		status = 1;
	for (int k = 0; k < AFB_NSCENARIOS; k++) {
		afb_summarise(&res[k]);
		if (res[k].failed)
			status = 1;
	}
	afb_print_table(res, AFB_NSCENARIOS, &o, header);
	fflush(stdout);
	if (o.json && (r = afb_write_json(o.json, res, AFB_NSCENARIOS, &o, header)) < 0) {
		fprintf(stderr, "asyncflag-bench: --json %s: %s\n", o.json, strerror(-r));
		status = 1;
	}
	if (o.histogram &&
	    (r = afb_write_histogram(o.histogram, res, AFB_NSCENARIOS, &o)) < 0) {
		fprintf(stderr, "asyncflag-bench: --histogram %s: %s\n", o.histogram, strerror(-r));
		status = 1;
	}
	if (o.plot && (r = afb_write_plot(o.plot, res, AFB_NSCENARIOS)) < 0) {
		if (r != -ENOENT)
			fprintf(stderr, "asyncflag-bench: --plot %s: %s\n", o.plot, strerror(-r));
		status = status ? status : (r == -ENOENT ? 0 : 1);
	}
	for (int k = 0; k < AFB_NSCENARIOS; k++) {
		for (int j = 0; j < res[k].nd; j++)
			free(res[k].d[j].ns);
		free(res[k].echo_json);
		free(res[k].echo_text);
	}
	if (dma_fd >= 0)
		close(dma_fd);
	return status;
}

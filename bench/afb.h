/* SPDX-License-Identifier: MIT */
/* asyncflag-bench: what the scenarios, the report and main() share. Not
 * part of the library. */
#ifndef AFB_H
#define AFB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <asyncflag.h>

#include "bench-util.h"

#define AFB_MAX_PATHS 8
#define AFB_MAX_FANOUT 8

/* The options, as main() parsed them. */
struct afb_opts {
	double duration_s;       /* time budget per scenario */
	uint64_t iterations;     /* samples per path; 0: as many as fit the budget */
	bool quick;
	unsigned scenarios;      /* bit (1 << enum afb_scenario) */
	const char *json, *histogram, *plot;
	unsigned hist_buckets;   /* histogram: 1 us buckets */
	int cpu[2];              /* setter, loop; -1: not pinned */
	int rt_prio;             /* 0: not asked */
	uint64_t gap_us;         /* the setter's own sleep before a cold set */
	uint64_t fanout_max;
	const char *chip;        /* GPIO: NULL for the simulated chip */
	unsigned out_line, in_line;
};

enum afb_scenario {
	AFB_WAKE_COLD,
	AFB_WAKE_HOT,
	AFB_SIGNAL,
	AFB_GPIO,
	AFB_GPIO_IRQ,            /* run with AFB_GPIO: interrupt mode */
	AFB_GPIO_EDGE,           /* run with AFB_GPIO: output write -> edge timestamp */
	AFB_EVENT,
	AFB_SWITCH,
	AFB_FANOUT,
	AFB_ECHO,
	AFB_SPAWN,
	AFB_NSCENARIOS,
};

extern const char *const afb_scenario_name[AFB_NSCENARIOS];

/* One latency distribution: a measured path or one of its baselines. */
struct afb_dist {
	const char *path;        /* "af_flag", "eventfd", ... */
	const char *what;        /* one line: what it is */
	bool available;
	char why[128];           /* when not available */
	double *ns;              /* samples, sorted once summarised */
	size_t n;
	size_t excluded;         /* samples left out, and why in the note */
	struct bench_pct pct;
};

/* One fan-out size. */
struct afb_fanout {
	uint64_t n;              /* waiters asked for */
	uint64_t parked;         /* waiters that parked on the Event */
	int err;                 /* the first waiter's error when parked < n */
	double ns_per_waiter;    /* set -> every waiter ran and parked again, over parked */
	double first_ns;         /* set -> first waiter running */
	double rss_per_task;     /* bytes resident per parked task */
	double spawn_ns;         /* per task */
};

struct afb_result {
	enum afb_scenario id;
	const char *title;
	bool ran;
	bool hidden;             /* part of another scenario that did not run */
	bool failed;             /* could not do what was asked: exit status 1 */
	char skipped[160];       /* why the whole scenario did not run */
	struct afb_dist d[AFB_MAX_PATHS];  /* d[0] is the measured path */
	int nd;
	int baseline;            /* the index of the baseline the ratio is to */
	char note[320];
	/* fanout */
	struct afb_fanout fo[AFB_MAX_FANOUT];
	int nfo;
	uint64_t fanout_largest_ok;
	/* echo: bench-echo's own JSON, kept verbatim */
	char *echo_json;
	char *echo_text;
};

/* ---- scenarios: each fills @r; -1 only when the run must stop ---- */

int afb_run_wake(struct afb_result *r, const struct afb_opts *o);     /* cold, hot, signal */
int afb_run_loop(struct afb_result *r, const struct afb_opts *o);     /* event, switch */
int afb_run_fanout(struct afb_result *r, const struct afb_opts *o);
int afb_run_echo(struct afb_result *r, const struct afb_opts *o, const char *argv0);
int afb_run_spawn(struct afb_result *r, const struct afb_opts *o);
/* afb_run_wake() also runs gpio, gpio-irq and gpio-edge. */

/* ---- GPIO lines for the gpio scenarios (afb-gpio.c) ---- */

struct af_loop;
struct afb_gpio;
enum afb_gpio_mode {
	AFB_GPIO_CO,             /* af_pin_wait_edge() */
	AFB_GPIO_INT,            /* an af_pin_irq() handler sets a flag */
	AFB_GPIO_RAW,            /* real chips: a blocking read(2) of a raw line request */
};

/* Opens the simulated chip, or o->chip's output and input lines, for
 * @loop. 0, or a negative errno with the reason in @why. */
int afb_gpio_open(struct afb_gpio **g, struct af_loop *loop, const struct afb_opts *o,
		  char *why, size_t len);
/* A real chip has one input line, in one mode at a time; the simulated
 * chip has a line per mode, so the modes interleave ping by ping. */
bool afb_gpio_modes_at_once(const struct afb_gpio *g);
/* Puts the one input line in @mode (real chips; a no-op when simulated,
 * where AFB_GPIO_RAW does not exist: the pipe is its floor). */
int afb_gpio_set_mode(struct afb_gpio *g, enum afb_gpio_mode mode);
/* The setter: makes the next edge of @mode's input. */
int afb_gpio_trigger(struct afb_gpio *g, enum afb_gpio_mode mode);
/* A task: waits for that edge; @ts receives its kernel timestamp. */
int afb_gpio_wait(struct afb_gpio *g, enum afb_gpio_mode mode, uint64_t *ts);
/* Edges the kernel dropped (seqno gaps), both modes together. */
uint64_t afb_gpio_gaps(const struct afb_gpio *g);
const char *afb_gpio_where(const struct afb_gpio *g);
void afb_gpio_close(struct afb_gpio *g);

/* ---- helpers in asyncflag-bench.c ---- */

/* Adds a path to @r; returns it. */
struct afb_dist *afb_dist_add(struct afb_result *r, const char *path, const char *what);
/* Marks @d as not measured, with a reason. */
void afb_dist_unavailable(struct afb_dist *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Samples to take per path, and whether the time budget ended the run. */
size_t afb_rounds(const struct afb_opts *o, size_t full);
bool afb_time_up(const struct afb_opts *o, uint64_t start_ns);
/* Runs @fn(@arg) as the main task of a new default loop; *@err is then
 * the first failure of af_loop_run() and @fn's result, or 0. Returns 1,
 * with @r marked skipped, if no loop can be made here, else 0. */
int afb_run_main(struct afb_result *r, af_task_fn fn, void *arg, int *err);
/* A scenario that is one main task: afb_run_main(), then @r marked ran, or
 * the failure reported. Returns 0, or -1 after a failure. */
int afb_run_scenario(struct afb_result *r, af_task_fn fn, void *arg);
/* Reports that @r's scenario failed with @err; returns -1. */
int afb_fail(const struct afb_result *r, int err);
/* The progress bar: @done in [0, 1] of the current scenario. */
void afb_progress(const char *scenario, double done);
/* Pins the calling thread to @cpu (no-op for -1). */
void afb_pin(int cpu);

/* ---- report (afb-report.c) ---- */

void afb_summarise(struct afb_result *r);
double afb_ratio(const struct afb_result *r, int path, double which_pct);
void afb_print_table(const struct afb_result *res, int n, const struct afb_opts *o,
		     const char *header);
int afb_write_json(const char *file, const struct afb_result *res, int n,
		   const struct afb_opts *o, const char *header);
int afb_write_histogram(const char *file, const struct afb_result *res, int n,
			const struct afb_opts *o);
int afb_write_plot(const char *file, const struct afb_result *res, int n);

#endif

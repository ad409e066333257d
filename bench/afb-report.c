/* SPDX-License-Identifier: MIT */
/* asyncflag-bench: the table, the JSON, cyclictest's histogram and the
 * gnuplot plot, all from the same summarised samples. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "afb.h"

void afb_summarise(struct afb_result *r)
{
	for (int k = 0; k < r->nd; k++) {
		struct afb_dist *d = &r->d[k];

		if (d->available && d->n == 0 && r->ran)
			afb_dist_unavailable(d, "no samples");
		if (d->available)
			d->pct = bench_pct_of(d->ns, d->n);
	}
}

/* The measured path over path @k at one percentile (0.5, 0.9, 0.99);
 * NAN when either side has no figure. */
double afb_ratio(const struct afb_result *r, int k, double which)
{
	const struct bench_pct *a = &r->d[0].pct, *b = &r->d[k].pct;
	double x, y;

	if (!r->d[0].available || !r->d[k].available)
		return NAN;
	x = which == 0.5 ? a->p50 : which == 0.9 ? a->p90 : a->p99;
	y = which == 0.5 ? b->p50 : which == 0.9 ? b->p90 : b->p99;
	return y > 0 ? x / y : NAN;
}

static bool is_latency(const struct afb_result *r)
{
	return r->id != AFB_FANOUT && r->id != AFB_ECHO;
}

/* ---- the table ---------------------------------------------------------------- */

static void table_fanout(const struct afb_result *r)
{
	printf("%-10s %9s %9s %12s %12s %12s %12s\n", "fanout", "N", "parked", "ns/waiter",
	       "first ns", "RSS B/task", "spawn ns");
	for (int i = 0; i < r->nfo; i++) {
		const struct afb_fanout *f = &r->fo[i];

		printf("%-10s %9llu %9llu %12.1f %12.0f %12.0f %12.1f\n", "",
		       (unsigned long long)f->n, (unsigned long long)f->parked, f->ns_per_waiter,
		       f->first_ns, f->rss_per_task, f->spawn_ns);
		if (f->err || f->parked < f->n)
			printf("%-10s   N = %llu failed: %llu of %llu waiters parked; the others "
			       "ended with \"%s\"\n",
			       "", (unsigned long long)f->n, (unsigned long long)f->parked,
			       (unsigned long long)f->n, f->err ? strerror(-f->err) : "no error");
	}
	printf("%-10s   largest N that parked: %llu\n", "",
	       (unsigned long long)r->fanout_largest_ok);
}

static void table_latency(const struct afb_result *r)
{
	for (int k = 0; k < r->nd; k++) {
		const struct afb_dist *d = &r->d[k];
		const struct bench_pct *p = &d->pct;

		printf("%-10s %-15s ", k == 0 ? afb_scenario_name[r->id] : "", d->path);
		if (!d->available) {
			printf("%s\n", d->why);
			continue;
		}
		printf("%7zu %8.0f %8.0f %8.0f %8.0f %8.0f %9.0f", p->n, p->min, p->p50, p->p90,
		       p->p99, p->p999, p->max);
		if (k > 0 && r->baseline > 0) {
			double r50 = afb_ratio(r, k, 0.5), r90 = afb_ratio(r, k, 0.9);

			if (isnan(r50))
				printf("   -");
			else
				printf("  %5.2fx %5.2fx", r50, r90);
			if (k == r->baseline)
				printf(" *");
		}
		printf("\n");
	}
}

void afb_print_table(const struct afb_result *res, int n, const struct afb_opts *o,
		     const char *header)
{
	(void)o;
	printf("%s\n", header);
	printf("latency in ns, from the set, the signal or the edge to the waiting task running\n");
	printf("ratio: the scenario's first path over this one at p50 and p90, same run; "
	       "* its baseline\n\n");
	printf("%-10s %-15s %7s %8s %8s %8s %8s %8s %9s  %s\n", "scenario", "path", "n", "min",
	       "p50", "p90", "p99", "p99.9", "max", "ratio p50 p90");
	for (int i = 0; i < n; i++) {
		const struct afb_result *r = &res[i];

		if (!(o->scenarios & (1u << r->id)) || r->hidden)
			continue;
		if (!r->ran) {
			printf("%-10s %s\n", afb_scenario_name[r->id],
			       r->skipped[0] ? r->skipped : "did not run: a scenario before it failed "
							    "(see above)");
			continue;
		}
		if (r->id == AFB_FANOUT)
			table_fanout(r);
		else if (r->id == AFB_ECHO)
			printf("%s", r->echo_text ? r->echo_text : "echo      no figures\n");
		else
			table_latency(r);
		if (r->note[0])
			printf("%-10s   (%s)\n", "", r->note);
	}
}

/* ---- JSON ------------------------------------------------------------------------ */

static void json_dist(struct bench_json *j, const struct afb_result *r, int k)
{
	const struct afb_dist *d = &r->d[k];

	bench_json_obj(j, NULL);
	bench_json_str(j, "path", d->path);
	bench_json_str(j, "what", d->what);
	bench_json_bool(j, "available", d->available);
	if (!d->available) {
		bench_json_str(j, "why", d->why);
		bench_json_obj_end(j);
		return;
	}
	bench_json_int(j, "n", (long long)d->pct.n);
	bench_json_int(j, "excluded", (long long)d->excluded);
	bench_json_num(j, "min", d->pct.min);
	bench_json_num(j, "p50", d->pct.p50);
	bench_json_num(j, "p90", d->pct.p90);
	bench_json_num(j, "p99", d->pct.p99);
	bench_json_num(j, "p99_9", d->pct.p999);
	bench_json_num(j, "max", d->pct.max);
	bench_json_num(j, "mean", d->pct.mean);
	if (k > 0 && r->baseline > 0) {
		bench_json_num(j, "ratio_p50", afb_ratio(r, k, 0.5));
		bench_json_num(j, "ratio_p90", afb_ratio(r, k, 0.9));
		bench_json_num(j, "ratio_p99", afb_ratio(r, k, 0.99));
	}
	bench_json_obj_end(j);
}

static void json_fanout(struct bench_json *j, const struct afb_result *r)
{
	bench_json_arr(j, "fanout");
	for (int i = 0; i < r->nfo; i++) {
		const struct afb_fanout *f = &r->fo[i];

		bench_json_obj(j, NULL);
		bench_json_int(j, "n", (long long)f->n);
		bench_json_int(j, "parked", (long long)f->parked);
		if (f->err)
			bench_json_str(j, "error", strerror(-f->err));
		else
			bench_json_null(j, "error");
		bench_json_num(j, "ns_per_waiter", f->ns_per_waiter);
		bench_json_num(j, "first_waiter_ns", f->first_ns);
		bench_json_num(j, "rss_bytes_per_task", f->rss_per_task);
		bench_json_num(j, "spawn_ns_per_task", f->spawn_ns);
		bench_json_obj_end(j);
	}
	bench_json_arr_end(j);
	bench_json_int(j, "largest_n_parked", (long long)r->fanout_largest_ok);
}

static void json_scenario(struct bench_json *j, const struct afb_result *r)
{
	bench_json_obj(j, NULL);
	bench_json_str(j, "name", afb_scenario_name[r->id]);
	bench_json_bool(j, "ran", r->ran);
	if (r->skipped[0])
		bench_json_str(j, "skipped", r->skipped);
	if (r->note[0])
		bench_json_str(j, "note", r->note);
	if (is_latency(r) && r->nd > 0) {
		bench_json_str(j, "unit", "ns");
		bench_json_str(j, "measured", r->d[0].path);
		if (r->baseline > 0) {
			bench_json_str(j, "baseline", r->d[r->baseline].path);
			bench_json_num(j, "ratio_p50", afb_ratio(r, r->baseline, 0.5));
			bench_json_num(j, "ratio_p90", afb_ratio(r, r->baseline, 0.9));
		}
		bench_json_arr(j, "paths");
		for (int k = 0; k < r->nd; k++)
			json_dist(j, r, k);
		bench_json_arr_end(j);
	}
	if (r->id == AFB_FANOUT && r->ran)
		json_fanout(j, r);
	if (r->id == AFB_ECHO && r->echo_json)
		bench_json_raw(j, "bench_echo", r->echo_json);
	bench_json_obj_end(j);
}

int afb_write_json(const char *file, const struct afb_result *res, int n,
		   const struct afb_opts *o, const char *header)
{
	FILE *f = fopen(file, "w");
	struct bench_json j;

	if (!f)
		return -errno;
	bench_json_begin(&j, f);
	bench_json_str(&j, "bench", "asyncflag-bench");
	bench_json_str(&j, "header", header);
	bench_json_bool(&j, "quick", o->quick);
	bench_json_num(&j, "duration_s", o->duration_s);
	bench_json_int(&j, "iterations", (long long)o->iterations);
	bench_json_int(&j, "gap_us", (long long)o->gap_us);
	bench_json_arr(&j, "scenarios");
	for (int i = 0; i < n; i++)
		if ((o->scenarios & (1u << res[i].id)) && !res[i].hidden)
			json_scenario(&j, &res[i]);
	bench_json_arr_end(&j);
	bench_json_end(&j);
	if (fflush(f) != 0 || ferror(f)) {
		fclose(f);
		return -EIO;
	}
	return fclose(f) == 0 ? 0 : -errno;
}

/* ---- cyclictest's histogram ---------------------------------------------------- */

struct column {
	const struct afb_result *r;
	const struct afb_dist *d;
	uint64_t *bucket;
	uint64_t total, overflows;
	double sum_us;
};

static int columns(const struct afb_result *res, int n, const struct afb_opts *o,
		   struct column *c, int max)
{
	int nc = 0;

	memset(c, 0, (size_t)max * sizeof(*c));
	for (int i = 0; i < n; i++) {
		if (!(o->scenarios & (1u << res[i].id)) || !res[i].ran || !is_latency(&res[i]))
			continue;
		for (int k = 0; k < res[i].nd && nc < max; k++)
			if (res[i].d[k].available) {
				c[nc].r = &res[i];
				c[nc].d = &res[i].d[k];
				nc++;
			}
	}
	return nc;
}

static void fill(struct column *c, unsigned buckets)
{
	for (size_t i = 0; i < c->d->n; i++) {
		double us = c->d->ns[i] / 1000.0;
		uint64_t b = us < 0 ? 0 : (uint64_t)us;

		/* cyclictest counts in whole microseconds and leaves the
		 * overflows out of Total. */
		if (b >= buckets) {
			c->overflows++;
		} else {
			c->bucket[b]++;
			c->total++;
		}
		c->sum_us += floor(us);
	}
}

static void hist_tail(FILE *f, const struct column *c, int nc)
{
	fprintf(f, "# Total:");
	for (int k = 0; k < nc; k++)
		fprintf(f, " %09llu", (unsigned long long)c[k].total);
	fprintf(f, "\n# Min Latencies:");
	for (int k = 0; k < nc; k++)
		fprintf(f, " %05lu", (unsigned long)(c[k].d->pct.min / 1000.0));
	fprintf(f, "\n# Avg Latencies:");
	for (int k = 0; k < nc; k++)
		fprintf(f, " %05lu", c[k].d->n ? (unsigned long)(c[k].sum_us / (double)c[k].d->n) : 0ul);
	fprintf(f, "\n# Max Latencies:");
	for (int k = 0; k < nc; k++)
		fprintf(f, " %05lu", (unsigned long)(c[k].d->pct.max / 1000.0));
	fprintf(f, "\n# Histogram Overflows:");
	for (int k = 0; k < nc; k++)
		fprintf(f, " %05lu", (unsigned long)c[k].overflows);
	/* The samples are sorted by now, so there are no cycle numbers left
	 * to print; the line stays for scripts that look for it. */
	fprintf(f, "\n# Histogram Overflow at cycle number:\n");
	for (int k = 0; k < nc; k++)
		fprintf(f, "# Thread %d: # %05lu others\n", k, (unsigned long)c[k].overflows);
}

int afb_write_histogram(const char *file, const struct afb_result *res, int n,
			const struct afb_opts *o)
{
	struct column c[64];
	int nc = columns(res, n, o, c, 64), r = 0;
	FILE *f = fopen(file, "w");

	if (!f)
		return -errno;
	fprintf(f, "# asyncflag-bench: one column per path, 1 us buckets "
		   "(cyclictest's histogram format; a column is what cyclictest calls a thread)\n");
	for (int k = 0; k < nc; k++) {
		fprintf(f, "# Thread %d = %s/%s\n", k, afb_scenario_name[c[k].r->id], c[k].d->path);
		c[k].bucket = calloc(o->hist_buckets, sizeof(uint64_t));
		if (!c[k].bucket)
			r = -ENOMEM;
		else
			fill(&c[k], o->hist_buckets);
	}
	if (r == 0) {
		fprintf(f, "# Histogram\n");
		for (unsigned b = 0; b < o->hist_buckets; b++) {
			fprintf(f, "%06u ", b);
			for (int k = 0; k < nc; k++)
				fprintf(f, "%06llu%s", (unsigned long long)c[k].bucket[b],
					k + 1 < nc ? "\t" : "");
			fputc('\n', f);
		}
		hist_tail(f, c, nc);
	}
	for (int k = 0; k < nc; k++)
		free(c[k].bucket);
	if (fclose(f) != 0 && r == 0)
		r = -errno;
	return r;
}

/* ---- the plot ---------------------------------------------------------------------- */

static bool have_gnuplot(void)
{
	return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

/* One panel per scenario, its x axis twice its widest p90: wide enough to
 * show the tails, narrow enough that one slow baseline does not squash
 * the rest. */
static double panel_xmax(const struct column *c, int nc, const struct afb_result *r)
{
	double xmax = 1000;   /* ns: at least 1 us across */

	for (int k = 0; k < nc; k++)
		if (c[k].r == r && c[k].d->pct.p90 * 2 > xmax)
			xmax = c[k].d->pct.p90 * 2;
	return xmax;
}

/* 200 bins per panel, x in microseconds so the axis reads as cyclictest's;
 * samples past the panel's edge are left out of the picture, not piled up
 * at its edge (the table and the histogram have them). */
static int plot_data(FILE *f, const struct column *c, int nc)
{
	for (int k = 0; k < nc; k++) {
		double bin = panel_xmax(c, nc, c[k].r) / 200;
		uint64_t b[200] = { 0 };

		for (size_t i = 0; i < c[k].d->n; i++) {
			size_t x = (size_t)(c[k].d->ns[i] > 0 ? c[k].d->ns[i] / bin : 0);

			if (x < 200)
				b[x]++;
		}
		fprintf(f, "# %s/%s\n", afb_scenario_name[c[k].r->id], c[k].d->path);
		for (size_t x = 0; x < 200; x++)
			fprintf(f, "%.4f %llu\n", (double)x * bin / 1000.0, (unsigned long long)b[x]);
		fprintf(f, "\n\n");
	}
	return 0;
}

static void plot_script(FILE *g, const char *file, const char *data, const struct column *c,
			int nc)
{
	const char *ext = strrchr(file, '.');
	int panels = 0;

	for (int k = 0; k < nc; k++)
		panels += k == 0 || c[k].r != c[k - 1].r;
	fprintf(g, "set terminal %s size 1000,%d\n", ext && !strcmp(ext, ".png") ? "png" : "svg",
		260 * panels);
	fprintf(g, "set output '%s'\nset termoption noenhanced\n", file);
	fprintf(g, "set multiplot layout %d,1 title 'asyncflag-bench: wake-up latency "
		   "(log scale; past twice the widest p90 not drawn)'\n", panels);
	fprintf(g, "set logscale y\nset yrange [0.8:*]\nset ylabel 'samples'\n"
		   "set xlabel 'latency (us)'\nset key top right\n");
	for (int k = 0; k < nc; k++) {
		bool first = k == 0 || c[k].r != c[k - 1].r;
		bool last = k + 1 == nc || c[k + 1].r != c[k].r;

		if (first)
			fprintf(g, "set title '%s'\nset xrange [0:%g]\nplot ",
				afb_scenario_name[c[k].r->id], panel_xmax(c, nc, c[k].r) / 1000.0);
		fprintf(g, "%s'%s' index %d using 1:2 with histeps title '%s'", first ? "" : ", ",
			data, k, c[k].d->path);
		if (last)
			fprintf(g, "\n");
	}
	fprintf(g, "unset multiplot\n");
}

int afb_write_plot(const char *file, const struct afb_result *res, int n)
{
	struct afb_opts all = { .scenarios = ~0u };
	struct column c[64];
	int nc = columns(res, n, &all, c, 64), r;
	char data[] = "/tmp/asyncflag-bench-XXXXXX";
	FILE *f, *g;
	int fd;

	if (!have_gnuplot()) {
		fprintf(stderr, "asyncflag-bench: --plot needs gnuplot, which is not installed "
				"(Debian/Ubuntu: sudo apt install gnuplot-nox; Fedora: sudo dnf install "
				"gnuplot); the histogram and the JSON do not\n");
		return -ENOENT;
	}
	if (nc == 0) {
		fprintf(stderr, "asyncflag-bench: --plot: no latency was measured\n");
		return -ENODATA;
	}
	fd = mkstemp(data);
	if (fd < 0 || !(f = fdopen(fd, "w")))
		return -errno;
	r = plot_data(f, c, nc);
	fclose(f);
	if (r < 0)
		goto out;
	g = popen("gnuplot", "w");
	if (!g) {
		r = -errno;
		goto out;
	}
	plot_script(g, file, data, c, nc);
	r = pclose(g) == 0 ? 0 : -EIO;
	if (r < 0)
		fprintf(stderr, "asyncflag-bench: gnuplot failed to write %s\n", file);
out:
	unlink(data);
	return r;
}

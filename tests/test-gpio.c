/* SPDX-License-Identifier: MIT */
/*
 * GPIO (gpio.h): edge modes, bias and active-low, debounce, multi-line
 * requests, batches, lost events, interrupt mode, every bad input.
 *
 * The same tests run against three kinds of chip, chosen by the environment:
 *
 *   (nothing set)        the library's simulated chip: the suite creates
 *                        "sim:aftest", 16 lines named aftest0 .. aftest15,
 *                        and drives inputs with af_gpio_sim_pull().
 *
 *   AF_TEST_GPIOCHIP=/dev/gpiochipN
 *   AF_TEST_GPIOSIM_SYSFS=/sys/devices/platform/gpio-sim.N/gpiochipM
 *                        a chip of the kernel's gpio-sim with 16 lines named
 *                        aftest0 .. aftest15; the suite drives line i by
 *                        writing "pull-up" / "pull-down" to
 *                        $AF_TEST_GPIOSIM_SYSFS/sim_gpio<i>/pull and reads
 *                        outputs from .../sim_gpio<i>/value.
 *
 *   AF_TEST_GPIOCHIP=/dev/gpiochipN  AF_TEST_GPIO_JUMPER=OUT:IN
 *                        real hardware with offsets OUT and IN wired
 *                        together (a Raspberry Pi jumper): the suite drives
 *                        IN by setting OUT as an output. Only line 0 of the
 *                        tests (IN) can be driven and no level can be read.
 *
 * Tests that need what a mode cannot do (other lines, reading levels, the
 * simulator's own API, line names, a chip of the kernel's, root) are not run
 * in it; each is reported as a TAP "ok N - name # SKIP reason" line after
 * the suite's own results. The kernel's own cases (its debounce, a line
 * held by another process, the names configfs gave, -EACCES for nobody)
 * need AF_TEST_GPIOCHIP; the last one needs root, to fork a child that
 * becomes uid 65534. docs/testing.md says how the guests and a Raspberry Pi
 * run them.
 * Outside the simulated chip, inputs are paced 5 ms apart (libgpiod's tests
 * use 1 ms), so that the kernel's interrupt thread sees every edge.
 */
#include <dirent.h>
#include <grp.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "gpio/gpio-internal.h"
#include "testutil.h"

/* ---- the chip under test ------------------------------------------------------- */

enum { RIG_SIM, RIG_KERNEL_SIM, RIG_JUMPER, RIG_CHIP_ONLY };

/* What a test needs of the rig. */
#define NEED_PULL  (1u << 0)   /* drive line 0 */
#define NEED_LINES (1u << 1)   /* drive any of the 16 lines */
#define NEED_LEVEL (1u << 2)   /* read the level of a line */
#define NEED_SIM   (1u << 3)   /* the library's simulated chip itself */
#define NEED_NAMES (1u << 4)   /* lines named aftest0 .. aftest15 */
#define NEED_KERNEL (1u << 5)  /* a chip of the kernel's, which other processes see too */
#define NEED_ROOT  (1u << 6)   /* root, to become an unprivileged user */
#define NEED_OD_PULL (1u << 7) /* the pull of an open-drain line left high shows in its level */

#define NLINES 16

static struct {
	int mode;
	const char *chip;          /* "sim:aftest" or /dev/gpiochipN */
	const char *sysfs;
	unsigned out, in;          /* the jumper */
	struct af_gpio_sim *sim;
	struct af_pin *driver;     /* the jumper's output */
} rig;

static unsigned rig_caps(void)
{
	unsigned root = geteuid() == 0 ? NEED_ROOT : 0;

	switch (rig.mode) {
	case RIG_SIM:
		return NEED_PULL | NEED_LINES | NEED_LEVEL | NEED_SIM | NEED_NAMES | NEED_OD_PULL;
	case RIG_KERNEL_SIM:
		return NEED_PULL | NEED_LINES | NEED_LEVEL | NEED_NAMES | NEED_KERNEL | root;
	case RIG_JUMPER: return NEED_PULL | NEED_KERNEL | root;
	default: return NEED_KERNEL | root;
	}
}

static const char *rig_missing(unsigned needs)
{
	unsigned miss = needs & ~rig_caps();

	if (miss & NEED_SIM)
		return "needs the library's simulated chip (AF_TEST_GPIOCHIP is set)";
	if (miss & NEED_LINES)
		return "needs several drivable lines (a gpio-sim chip, not a jumper)";
	if (miss & NEED_LEVEL)
		return "needs to read line levels (a gpio-sim chip)";
	if (miss & NEED_NAMES)
		return "needs lines named aftest0 .. aftest15";
	if (miss & NEED_PULL)
		return "needs a way to drive inputs (AF_TEST_GPIOSIM_SYSFS or AF_TEST_GPIO_JUMPER)";
	if (miss & NEED_KERNEL)
		return "needs a chip of the kernel's (AF_TEST_GPIOCHIP)";
	if (miss & NEED_ROOT)
		return "needs root, to drop to an unprivileged user";
	if (miss & NEED_OD_PULL)
		/* gpiolib emulates open drain by making the line an input
		 * flagged as output, and gpio_sim_apply_pull() leaves the
		 * level of a line flagged as output alone (6.1 to 6.18). */
		return "gpio-sim ignores the pull of an emulated open-drain line";
	return NULL;
}

static void rig_read_env(void)
{
	const char *chip = getenv("AF_TEST_GPIOCHIP"), *jumper = getenv("AF_TEST_GPIO_JUMPER");

	rig.sysfs = getenv("AF_TEST_GPIOSIM_SYSFS");
	if (!chip || !*chip) {
		rig.mode = RIG_SIM;
		rig.chip = "sim:aftest";
		return;
	}
	rig.chip = chip;
	if (rig.sysfs && *rig.sysfs)
		rig.mode = RIG_KERNEL_SIM;
	else if (jumper && sscanf(jumper, "%u:%u", &rig.out, &rig.in) == 2)
		rig.mode = RIG_JUMPER;
	else
		rig.mode = RIG_CHIP_ONLY;
}

/* Line @i of the tests, as af_pin_open() takes it. */
static const char *line(unsigned i)
{
	static char buf[NLINES][96];

	if (rig.mode == RIG_JUMPER)
		snprintf(buf[i], sizeof(buf[i]), "%s:%u", rig.chip, i ? i : rig.in);
	else
		snprintf(buf[i], sizeof(buf[i]), "%s:%u", rig.chip, i);
	return buf[i];
}

static const char *line_name(unsigned i)
{
	static char buf[NLINES][16];

	snprintf(buf[i], sizeof(buf[i]), "aftest%u", i);
	return buf[i];
}

static void sysfs_write(unsigned i, const char *what, const char *text)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/sim_gpio%u/%s", rig.sysfs, i, what);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Drive line @i to physical @level, unpaced: for callers that wait for
 * each edge to arrive before the next. */
static void rig_drive(unsigned i, int level)
{
	switch (rig.mode) {
	case RIG_SIM:
		ck_assert_int_eq(af_gpio_sim_pull(rig.sim, i, level), 0);
		break;
	case RIG_KERNEL_SIM:
		sysfs_write(i, "pull", level ? "pull-up" : "pull-down");
		break;
	case RIG_JUMPER:
		ck_assert_int_eq(i, 0);
		ck_assert_int_eq(af_pin_set_value(rig.driver, level), 0);
		break;
	default:
		ck_abort_msg("this rig cannot drive lines");
	}
}

/* A kernel's chip loses an edge that comes while its interrupt thread
 * still handles the one before. libgpiod's tests pace 1 ms; an emulated
 * arm64 guest on a loaded host still lost one edge a run at that. */
#define KERNEL_PACE_MS 5

/* Drive line @i to physical @level, paced on a kernel's chip. */
static void rig_pull(unsigned i, int level)
{
	rig_drive(i, level);
	if (rig.mode != RIG_SIM)
		sleep_ms(KERNEL_PACE_MS);
}

/* The physical level of line @i. */
static int rig_level(unsigned i)
{
	char path[512], c = 0;
	int fd;

	if (rig.mode == RIG_SIM)
		return af_gpio_sim_level(rig.sim, i);
	ck_assert_int_eq(rig.mode, RIG_KERNEL_SIM);
	snprintf(path, sizeof(path), "%s/sim_gpio%u/value", rig.sysfs, i);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(read(fd, &c, 1), 1);
	close(fd);
	return c == '1';
}

static void rig_setup(void)
{
	static const char *const names[NLINES] = {
		"aftest0", "aftest1", "aftest2", "aftest3", "aftest4", "aftest5", "aftest6",
		"aftest7", "aftest8", "aftest9", "aftest10", "aftest11", "aftest12", "aftest13",
		"aftest14", "aftest15",
	};
	char out[96];

	if (rig.mode == RIG_SIM)
		ck_assert_int_eq(af_gpio_sim_new(&rig.sim, "aftest", NLINES, names), 0);
	if (rig.mode == RIG_KERNEL_SIM) {
		/* Every line starts pulled down, as on a fresh gpio-sim chip. */
		for (unsigned i = 0; i < NLINES; i++)
			sysfs_write(i, "pull", "pull-down");
	}
	if (rig.mode == RIG_JUMPER) {
		snprintf(out, sizeof(out), "%s:%u", rig.chip, rig.out);
		ck_assert_int_eq(af_pin_open(&rig.driver, out, AF_PIN_OUT), 0);
	}
}

static void rig_teardown(void)
{
	af_pin_close(rig.driver);
	rig.driver = NULL;
	af_gpio_sim_free(rig.sim);
	rig.sim = NULL;
}

/* ---- helpers ----------------------------------------------------------------------- */

static unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	ck_assert_ptr_nonnull(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static struct af_pin *open_ok(unsigned i, unsigned flags)
{
	struct af_pin *pin = NULL;
	int r = af_pin_open(&pin, line(i), flags);

	ck_assert_msg(r == 0, "af_pin_open(%s): %s", line(i), af_strerror(r));
	return pin;
}

static void expect_edge(struct af_pin *pin, unsigned edge, unsigned offset, uint32_t seqno,
			uint32_t line_seqno)
{
	struct af_gpio_event ev;
	int r = af_pin_wait_edge_timeout(pin, &ev, LONG_NS);

	ck_assert_msg(r == 0, "af_pin_wait_edge: %s", af_strerror(r));
	ck_assert_str_eq(ev.edge == AF_PIN_IRQ_RISING ? "rising" : "falling",
			 edge == AF_PIN_IRQ_RISING ? "rising" : "falling");
	ck_assert_uint_eq(ev.offset, offset);
	ck_assert_uint_eq(ev.seqno, seqno);
	ck_assert_uint_eq(ev.line_seqno, line_seqno);
	ck_assert_uint_eq(ev.missed, 0);
}

/* Offset of test line @i on the chip. */
static unsigned off(unsigned i)
{
	return rig.mode == RIG_JUMPER && i == 0 ? rig.in : i;
}

/* What libasyncflag printed on stderr while a call ran (debug builds). */
struct capture {
	int saved;
	FILE *f;
	char text[2048];
};

static void capture_start(struct capture *c)
{
	fflush(stderr);
	c->f = tmpfile();
	ck_assert_ptr_nonnull(c->f);
	c->saved = dup(2);
	dup2(fileno(c->f), 2);
}

static const char *capture_end(struct capture *c)
{
	size_t n;

	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	rewind(c->f);
	n = fread(c->text, 1, sizeof(c->text) - 1, c->f);
	c->text[n] = 0;
	fclose(c->f);
	return c->text;
}

static void expect_said(const char *text, const char *what)
{
#if AF_DEBUG
	ck_assert_msg(strstr(text, what), "expected \"%s\" in the message: %s", what, text);
#else
	(void)text;
	(void)what;
#endif
}

/* ---- edge modes ------------------------------------------------------------------------ */

static int rising_only(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING);

	(void)arg;
	rig_pull(0, 1);
	rig_pull(0, 0);   /* falling: not reported */
	rig_pull(0, 1);
	expect_edge(pin, AF_PIN_IRQ_RISING, off(0), 1, 1);
	expect_edge(pin, AF_PIN_IRQ_RISING, off(0), 2, 2);
	af_pin_close(pin);
	return 0;
}

START_TEST(a_rising_edge_pin_reports_only_rising_edges)
{
	ck_assert_int_eq(run_main(rising_only, NULL), 0);
}
END_TEST

static int falling_only(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_FALLING);

	(void)arg;
	rig_pull(0, 1);   /* rising: not reported */
	rig_pull(0, 0);
	rig_pull(0, 1);
	rig_pull(0, 0);
	expect_edge(pin, AF_PIN_IRQ_FALLING, off(0), 1, 1);
	expect_edge(pin, AF_PIN_IRQ_FALLING, off(0), 2, 2);
	af_pin_close(pin);
	return 0;
}

START_TEST(a_falling_edge_pin_reports_only_falling_edges)
{
	ck_assert_int_eq(run_main(falling_only, NULL), 0);
}
END_TEST

static int both_edges(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING);
	uint64_t before = now_ns(), last = 0, after;
	struct af_gpio_event ev;

	(void)arg;
	for (int i = 0; i < 4; i++)
		rig_pull(0, !(i & 1));
	after = now_ns();
	for (uint32_t i = 1; i <= 4; i++) {
		ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, LONG_NS), 0);
		ck_assert_uint_eq(ev.edge, i & 1 ? AF_PIN_IRQ_RISING : AF_PIN_IRQ_FALLING);
		ck_assert_uint_eq(ev.seqno, i);
		ck_assert_uint_eq(ev.line_seqno, i);
		/* The kernel's clock: monotonic, between the first pull and
		 * the end of the last one. */
		ck_assert_uint_ge(ev.timestamp_ns, before);
		ck_assert_uint_le(ev.timestamp_ns, after);
		ck_assert_uint_ge(ev.timestamp_ns, last);
		last = ev.timestamp_ns;
	}
	af_pin_close(pin);
	return 0;
}

START_TEST(a_both_edges_pin_reports_every_edge_in_order_with_monotonic_timestamps)
{
	ck_assert_int_eq(run_main(both_edges, NULL), 0);
}
END_TEST

static int realtime_clock(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING | AF_PIN_CLOCK_REALTIME);
	uint64_t before = clock_ns(CLOCK_REALTIME), after;
	struct af_gpio_event ev;

	(void)arg;
	rig_pull(0, 1);
	after = clock_ns(CLOCK_REALTIME);
	ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, LONG_NS), 0);
	ck_assert_uint_ge(ev.timestamp_ns, before);
	ck_assert_uint_le(ev.timestamp_ns, after);
	af_pin_close(pin);
	return 0;
}

START_TEST(a_realtime_clock_pin_stamps_its_events_in_realtime)
{
	ck_assert_int_eq(run_main(realtime_clock, NULL), 0);
}
END_TEST

static int no_change(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING);

	(void)arg;
	rig_pull(0, 0);   /* already low: no edge */
	rig_pull(0, 1);
	expect_edge(pin, AF_PIN_IRQ_RISING, off(0), 1, 1);
	af_pin_close(pin);
	return 0;
}

START_TEST(a_pull_to_the_level_a_line_already_has_is_no_edge)
{
	ck_assert_int_eq(run_main(no_change, NULL), 0);
}
END_TEST

static int timeout_wait(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING);
	struct af_gpio_event ev;

	(void)arg;
	ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, 0), -ETIMEDOUT);
	ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, 5 * MS), -ETIMEDOUT);
	rig_pull(0, 1);
	expect_edge(pin, AF_PIN_IRQ_RISING, off(0), 1, 1);
	af_pin_close(pin);
	return 0;
}

START_TEST(a_wait_with_no_edge_times_out_and_the_next_edge_still_arrives)
{
	ck_assert_int_eq(run_main(timeout_wait, NULL), 0);
}
END_TEST

struct cancel_ctx {
	struct af_pin *pin;
	int result;
};

static int cancelled_waiter(void *arg)
{
	struct cancel_ctx *c = arg;
	struct af_gpio_event ev;

	c->result = af_pin_wait_edge(c->pin, &ev);
	return 0;
}

static int cancel_wait(void *arg)
{
	struct cancel_ctx c = { .pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING) };
	struct af_task *t;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, cancelled_waiter, &c), 0);
	af_yield();
	ck_assert_int_eq(af_task_cancel(t), 0);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(c.result, -ECANCELED);
	rig_pull(0, 1);
	expect_edge(c.pin, AF_PIN_IRQ_RISING, off(0), 1, 1);
	af_pin_close(c.pin);
	return 0;
}

START_TEST(a_cancelled_wait_loses_no_event)
{
	ck_assert_int_eq(run_main(cancel_wait, NULL), 0);
}
END_TEST

/* ---- bias, active-low, outputs ------------------------------------------------------------- */

START_TEST(a_pull_up_input_reads_one_and_a_pull_down_input_reads_zero)
{
	struct af_pin *up = open_ok(1, AF_PIN_IN | AF_PIN_PULL_UP);
	struct af_pin *down = open_ok(2, AF_PIN_IN | AF_PIN_PULL_DOWN);

	ck_assert_int_eq(af_pin_value(up), 1);
	ck_assert_int_eq(af_pin_value(down), 0);
	ck_assert_int_eq(rig_level(1), 1);
	ck_assert_int_eq(rig_level(2), 0);
	af_pin_close(up);
	af_pin_close(down);
}
END_TEST

START_TEST(an_outside_pull_overrides_the_request_bias)
{
	struct af_pin *pin = open_ok(1, AF_PIN_IN | AF_PIN_PULL_UP);

	ck_assert_int_eq(af_pin_value(pin), 1);
	rig_pull(1, 0);
	ck_assert_int_eq(af_pin_value(pin), 0);
	rig_pull(1, 1);
	ck_assert_int_eq(af_pin_value(pin), 1);
	af_pin_close(pin);
}
END_TEST

static int active_low(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_ACTIVE_LOW | AF_PIN_IRQ_RISING);

	(void)arg;
	ck_assert_int_eq(af_pin_value(pin), 1);   /* low wire reads 1 */
	rig_pull(0, 1);                           /* logical falling: not reported */
	ck_assert_int_eq(af_pin_value(pin), 0);
	rig_pull(0, 0);                           /* the wire falls: a logical rise */
	expect_edge(pin, AF_PIN_IRQ_RISING, off(0), 1, 1);
	af_pin_close(pin);
	return 0;
}

START_TEST(an_active_low_input_reads_inverted_and_a_falling_wire_is_a_rising_edge)
{
	ck_assert_int_eq(run_main(active_low, NULL), 0);
}
END_TEST

START_TEST(an_output_drives_the_level_of_its_line)
{
	struct af_pin *pin = open_ok(3, AF_PIN_OUT);
	struct af_pin *low = open_ok(4, AF_PIN_OUT | AF_PIN_ACTIVE_LOW);
	struct af_pin *high = open_ok(5, AF_PIN_OUT | AF_PIN_INIT_HIGH);

	ck_assert_int_eq(rig_level(3), 0);
	ck_assert_int_eq(af_pin_set_value(pin, 1), 0);
	ck_assert_int_eq(rig_level(3), 1);
	ck_assert_int_eq(af_pin_value(pin), 1);
	rig_pull(3, 0);                        /* an output keeps driving */
	ck_assert_int_eq(rig_level(3), 1);
	ck_assert_int_eq(af_pin_set_value(pin, 0), 0);
	ck_assert_int_eq(rig_level(3), 0);
	ck_assert_int_eq(rig_level(4), 1);     /* logical 0 of an active-low output */
	ck_assert_int_eq(af_pin_set_value(low, 7), 0);
	ck_assert_int_eq(rig_level(4), 0);
	ck_assert_int_eq(rig_level(5), 1);
	af_pin_close(pin);
	af_pin_close(low);
	af_pin_close(high);
}
END_TEST

START_TEST(an_open_drain_output_high_leaves_the_line_to_its_pull)
{
	struct af_pin *pin = open_ok(6, AF_PIN_OUT | AF_PIN_OPEN_DRAIN | AF_PIN_INIT_HIGH);

	rig_pull(6, 1);
	ck_assert_int_eq(rig_level(6), 1);
	rig_pull(6, 0);
	ck_assert_int_eq(rig_level(6), 0);
	ck_assert_int_eq(af_pin_set_value(pin, 0), 0);
	rig_pull(6, 1);
	ck_assert_int_eq(rig_level(6), 0);
	af_pin_close(pin);
}
END_TEST

static int reconfig(void *arg)
{
	struct af_pin *pin = open_ok(7, AF_PIN_IN);
	struct af_pin_opts out = { .flags = AF_PIN_OUT | AF_PIN_INIT_HIGH };
	struct af_pin_opts in = { .flags = AF_PIN_IN | AF_PIN_IRQ_FALLING };
	struct af_gpio_line_info li;

	(void)arg;
	ck_assert_int_eq(af_pin_set_value(pin, 1), -EPERM);
	ck_assert_int_eq(af_pin_reconfigure(pin, &out), 0);
	ck_assert_int_eq(rig_level(7), 1);
	ck_assert_int_eq(af_pin_line_info(pin, 0, &li), 0);
	ck_assert_uint_eq(li.flags & (AF_PIN_IN | AF_PIN_OUT), AF_PIN_OUT);
	ck_assert_int_eq(af_pin_reconfigure(pin, &in), 0);
	rig_pull(7, 1);
	rig_pull(7, 0);
	expect_edge(pin, AF_PIN_IRQ_FALLING, 7, 1, 1);
	af_pin_close(pin);
	return 0;
}

START_TEST(a_requested_line_can_be_reconfigured_without_releasing_it)
{
	ck_assert_int_eq(run_main(reconfig, NULL), 0);
}
END_TEST

/* ---- debounce ------------------------------------------------------------------------------ */

#define DEBOUNCE_US 50000u
/* Long enough that a burst of unpaced pulls stays one burst in an emulated
 * guest on a loaded host, whose vCPUs stall for a hundred milliseconds. */
#define KERNEL_DEBOUNCE_US 500000u
/* The kernel's debounce timer counts jiffies: it may fire up to one tick
 * (10 ms at HZ=100) short of the period as measured in nanoseconds. */
#define DEBOUNCE_SLACK_NS 10000000u

static int debounce_burst(void *arg)
{
	const unsigned period_us = *(const unsigned *)arg;
	struct af_pin_opts o = { .flags = AF_PIN_IN | AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING,
				 .debounce_us = period_us };
	const char *l = line(0);
	struct af_gpio_event ev;
	struct af_pin *pin;
	uint64_t last = 0;

	ck_assert_int_eq(af_pin_open_lines(&pin, &l, 1, &o), 0);
	for (int i = 0; i < 5; i++) {   /* 1 0 1 0 1, bouncing */
		last = now_ns();
		rig_drive(0, !(i & 1));
	}
	ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, LONG_NS), 0);
	ck_assert_uint_eq(ev.edge, AF_PIN_IRQ_RISING);
	ck_assert_uint_eq(ev.offset, off(0));
	ck_assert_uint_eq(ev.seqno, 1);
	/* Stamped when the level had been stable for the period. */
	ck_assert_uint_ge(ev.timestamp_ns, last + period_us * 1000ull - DEBOUNCE_SLACK_NS);
	ck_assert_int_eq(af_pin_value(pin), 1);
	/* A bounce back to the old level is no edge at all. */
	rig_drive(0, 0);
	rig_drive(0, 1);
	rig_drive(0, 0);
	expect_edge(pin, AF_PIN_IRQ_FALLING, off(0), 2, 2);
	ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, 0), -ETIMEDOUT);
	af_pin_close(pin);
	return 0;
}

START_TEST(debounce_reports_one_edge_per_burst_after_the_level_is_stable)
{
	unsigned period_us = DEBOUNCE_US;

	ck_assert_int_eq(run_main(debounce_burst, &period_us), 0);
}
END_TEST

/* The same bursts through the kernel's gpiolib-cdev, which debounces in
 * software (a delayed work per line) on chips without it in hardware,
 * gpio-sim and the Raspberry Pi's among them. */
START_TEST(the_kernel_debounces_a_burst_into_one_edge_after_the_period)
{
	unsigned period_us = KERNEL_DEBOUNCE_US;

	ck_assert_int_eq(run_main(debounce_burst, &period_us), 0);
}
END_TEST

START_TEST(debounce_shows_in_the_line_info)
{
	struct af_pin_opts o = { .flags = AF_PIN_IN, .debounce_us = 1234 };
	const char *l = line(1);
	struct af_gpio_line_info li;
	struct af_pin *pin;

	ck_assert_int_eq(af_pin_open_lines(&pin, &l, 1, &o), 0);
	ck_assert_int_eq(af_pin_line_info(pin, 0, &li), 0);
	ck_assert_uint_eq(li.debounce_us, 1234);
	af_pin_close(pin);
}
END_TEST

/* ---- multi-line requests -------------------------------------------------------------------- */

START_TEST(a_multi_line_request_reads_and_sets_values_by_request_index)
{
	const char *lines[] = { line(8), line(9), line(10), line(11) };
	const unsigned lf[] = { AF_PIN_IN, AF_PIN_IN | AF_PIN_PULL_UP, AF_PIN_OUT,
				AF_PIN_OUT | AF_PIN_INIT_HIGH };
	struct af_pin_opts o = { .line_flags = lf };
	struct af_pin *pin;
	uint64_t v;

	ck_assert_int_eq(af_pin_open_lines(&pin, lines, 4, &o), 0);
	ck_assert_int_eq(af_pin_num_lines(pin), 4);
	ck_assert_int_eq(af_pin_values(pin, &v), 0);
	ck_assert_uint_eq(v, 0x2 | 0x8);
	ck_assert_int_eq(af_pin_set_values(pin, 0xc, 0x4), 0);
	ck_assert_int_eq(rig_level(10), 1);
	ck_assert_int_eq(rig_level(11), 0);
	ck_assert_int_eq(af_pin_set_values(pin, 0x1, 0x1), -EPERM);
	ck_assert_int_eq(af_pin_set_values(pin, 0x10, 0), -EINVAL);
	ck_assert_int_eq(af_pin_value(pin), -EINVAL);
	ck_assert_int_eq(af_pin_set_value(pin, 1), -EINVAL);
	ck_assert_str_eq(af_pin_line_name(pin, 2), "aftest10");
	ck_assert_ptr_null(af_pin_line_name(pin, 4));
	af_pin_close(pin);
}
END_TEST

static int multi_events(void *arg)
{
	const char *lines[] = { line(2), line(5) };
	struct af_pin_opts o = { .flags = AF_PIN_IN | AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING };
	struct af_pin *pin;

	(void)arg;
	ck_assert_int_eq(af_pin_open_lines(&pin, lines, 2, &o), 0);
	rig_pull(5, 1);
	rig_pull(2, 1);
	rig_pull(5, 0);
	expect_edge(pin, AF_PIN_IRQ_RISING, 5, 1, 1);
	expect_edge(pin, AF_PIN_IRQ_RISING, 2, 2, 1);
	expect_edge(pin, AF_PIN_IRQ_FALLING, 5, 3, 2);
	af_pin_close(pin);
	return 0;
}

START_TEST(events_of_every_line_come_from_one_pin_in_order_with_both_sequence_numbers)
{
	ck_assert_int_eq(run_main(multi_events, NULL), 0);
}
END_TEST

START_TEST(a_line_is_found_by_name_on_any_chip)
{
	struct af_gpio_chip_info ci;
	struct af_gpio_line_info li;
	struct af_pin *pin;

	ck_assert_int_eq(af_gpio_find_line(line_name(12), &ci, &li), 0);
	ck_assert_uint_eq(li.offset, 12);
	ck_assert_uint_eq(ci.num_lines, NLINES);
	ck_assert_int_eq(af_pin_open(&pin, "aftest12", AF_PIN_IN), 0);
	ck_assert_str_eq(af_pin_line_name(pin, 0), "aftest12");
	af_pin_close(pin);
}
END_TEST

START_TEST(line_info_shows_names_consumers_and_directions)
{
	const char *lines[] = { "aftest13", "aftest14" };
	const unsigned lf[] = { AF_PIN_IN | AF_PIN_PULL_UP, AF_PIN_OUT };
	struct af_pin_opts o = { .line_flags = lf, .consumer = "info-test" };
	struct af_gpio_line_info li;
	struct af_pin *pin;

	ck_assert_int_eq(af_gpio_line_info(rig.chip, 13, &li), 0);
	ck_assert_str_eq(li.name, "aftest13");
	ck_assert(!li.used);
	ck_assert_str_eq(li.consumer, "");
	ck_assert_int_eq(af_pin_open_lines(&pin, lines, 2, &o), 0);
	ck_assert_int_eq(af_gpio_line_info(rig.chip, 13, &li), 0);
	ck_assert(li.used);
	ck_assert_str_eq(li.consumer, "info-test");
	ck_assert_uint_eq(li.flags & (AF_PIN_IN | AF_PIN_OUT | AF_PIN_PULL_UP),
			  AF_PIN_IN | AF_PIN_PULL_UP);
	ck_assert_int_eq(af_pin_line_info(pin, 1, &li), 0);
	ck_assert_str_eq(li.name, "aftest14");
	ck_assert_uint_eq(li.offset, 14);
	ck_assert_uint_eq(li.flags & (AF_PIN_IN | AF_PIN_OUT), AF_PIN_OUT);
	af_pin_close(pin);
}
END_TEST

START_TEST(the_chip_list_includes_the_simulated_chips)
{
	struct af_gpio_chip_info chips[64], ci;
	int n = af_gpio_chips(chips, 64), found = 0;

	ck_assert_int_ge(n, 1);
	ck_assert_int_eq(af_gpio_chips(NULL, 0), n);
	for (int i = 0; i < n && i < 64; i++)
		if (!strcmp(chips[i].path, "sim:aftest")) {
			found++;
			ck_assert(chips[i].simulated);
			ck_assert_uint_eq(chips[i].num_lines, NLINES);
			ck_assert_str_eq(chips[i].name, "aftest");
			ck_assert_str_eq(chips[i].label, "af-gpio-sim");
		}
	ck_assert_int_eq(found, 1);
	ck_assert_int_eq(af_gpio_chip_info("sim:aftest", &ci), 0);
	ck_assert_int_eq(af_gpio_chip_info("aftest", &ci), 0);
	ck_assert_str_eq(af_gpio_sim_chip(rig.sim), "sim:aftest");
}
END_TEST

/* ---- batches and lost events ---------------------------------------------------------------- */

static int batches(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING);
	struct af_gpio_event evs[64];
	unsigned got = 0, calls = 0;

	(void)arg;
	/* 12: fewer than the kernel's default 16, so none is dropped. */
	for (int i = 0; i < 12; i++)
		rig_pull(0, !(i & 1));
	while (got < 12) {
		/* A kernel's chip may lose an edge despite the pacing (see
		 * KERNEL_PACE_MS), and numbers only those it saw: every pull
		 * was made before the first read, so once some events came
		 * a quiet second means no more will. */
		bool may_lose = rig.mode != RIG_SIM && got > 0;
		int n = af_pin_read_edges(pin, evs, 64, may_lose ? 1000 * MS : LONG_NS);

		if (n == -ETIMEDOUT && may_lose)
			break;
		ck_assert_int_gt(n, 0);
		for (int i = 0; i < n; i++) {
			ck_assert_uint_eq(evs[i].seqno, got + 1);
			ck_assert_uint_eq(evs[i].missed, 0);
			/* A kernel reads a both-edges event's type from the
			 * level when its interrupt thread runs: late, after a
			 * stall, and then the next pull has been made. */
			if (rig.mode == RIG_SIM)
				ck_assert_uint_eq(evs[i].edge,
						  got % 2 ? AF_PIN_IRQ_FALLING : AF_PIN_IRQ_RISING);
			got++;
		}
		calls++;
	}
	if (rig.mode == RIG_SIM)
		ck_assert_uint_eq(got, 12);
	ck_assert_msg(got > 6, "the chip numbered %u of 12 edges", got);
	ck_assert_uint_lt(calls, got);   /* at least one call returned several */
	ck_assert_int_eq(af_pin_read_edges(pin, evs, 64, 0), -ETIMEDOUT);
	af_pin_close(pin);
	return 0;
}

START_TEST(events_are_read_in_batches_oldest_first)
{
	ck_assert_int_eq(run_main(batches, NULL), 0);
}
END_TEST

struct overflow_case {
	unsigned lines, buffer_size, edges, kept;
};

/* How many of @pulled edges the chip numbered, once the newest of them is
 * @seen: all of them on the simulated chip. On a kernel's, an edge that
 * comes while the interrupt thread still handles the one before is lost
 * (gpio-sim has no hardware to latch it), which an emulated guest's
 * stalls make happen despite the pacing; of a request of several lines the
 * kernel has numbered it already, and the gap shows. The buffer under test
 * must still have overflowed. */
static void expect_seen(uint32_t seen, uint32_t pulled, uint32_t kept)
{
	if (rig.mode == RIG_SIM)
		ck_assert_uint_eq(seen, pulled);
	ck_assert_msg(seen <= pulled && seen > kept,
		      "the chip numbered %u of %u edges; the buffer holds %u", seen, pulled, kept);
}

/* @ev's missed must be the gap in seqno after the newest seen so far. */
static void expect_gap(const struct af_gpio_event *ev, uint32_t *newest)
{
	uint32_t want = ev->seqno > *newest ? ev->seqno - *newest - 1 : 0;

	ck_assert_msg(ev->missed == want, "seqno %u after %u: missed %u, want %u", ev->seqno,
		      *newest, ev->missed, want);
	if (ev->seqno > *newest)
		*newest = ev->seqno;
}

static int overflow(void *arg)
{
	const struct overflow_case *c = arg;
	const char *lines[] = { line(0), line(1) };
	struct af_pin_opts o = { .flags = AF_PIN_IN | AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING,
				 .event_buffer_size = c->buffer_size };
	struct af_gpio_event ev;
	struct af_pin *pin;
	uint32_t first = 0, newest = 0;

	ck_assert_int_eq(af_pin_open_lines(&pin, lines, c->lines, &o), 0);
	for (unsigned i = 0; i < c->edges; i++)
		rig_pull(0, !(i & 1));
	/* The kernel dropped the oldest: the first event left says how many,
	 * and exactly the buffer's worth is left, newest last. */
	for (unsigned i = 0; i < c->kept; i++) {
		ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, LONG_NS), 0);
		/* One interrupt thread numbers a single line's: no gaps. Of
		 * several lines, the hard handler numbers them, and one that
		 * interrupts the thread hands it its own seqno: twice. */
		if (first && (rig.mode == RIG_SIM || c->lines == 1))
			ck_assert_uint_eq(ev.seqno, newest + 1);
		ck_assert_uint_ge(ev.seqno, newest);
		if (c->lines == 1)
			ck_assert_uint_eq(ev.line_seqno, ev.seqno);
		if (!first)
			first = ev.seqno;
		expect_gap(&ev, &newest);
	}
	ck_assert_uint_gt(first, 1);
	expect_seen(newest, c->edges, c->kept);
	ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, 0), -ETIMEDOUT);
	/* Numbering goes on after the gap. */
	rig_pull(0, !(c->edges & 1));
	ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, LONG_NS), 0);
	ck_assert_uint_eq(ev.seqno, newest + 1);
	ck_assert_uint_eq(ev.missed, 0);
	af_pin_close(pin);
	return 0;
}

START_TEST(an_overflowing_buffer_drops_the_oldest_and_the_next_event_reports_the_gap)
{
	struct overflow_case c = { .lines = 1, .buffer_size = 16, .edges = 40, .kept = 16 };

	ck_assert_int_eq(run_main(overflow, &c), 0);
}
END_TEST

START_TEST(the_default_buffer_holds_sixteen_events_per_line)
{
	struct overflow_case c = { .lines = 2, .buffer_size = 0, .edges = 50, .kept = 32 };

	ck_assert_int_eq(run_main(overflow, &c), 0);
}
END_TEST

START_TEST(the_buffer_size_rounds_up_to_a_power_of_two_like_the_kernels_kfifo)
{
	struct overflow_case c = { .lines = 1, .buffer_size = 10, .edges = 30, .kept = 16 };

	ck_assert_int_eq(run_main(overflow, &c), 0);
}
END_TEST

/* ---- interrupt mode -------------------------------------------------------------------------- */

struct button {
	struct af_flag flag;
	_Atomic unsigned handled;
	_Atomic uint32_t last_seqno;
	_Atomic uint32_t missed;
	_Atomic bool in_order;
	unsigned target;
	struct af_pin *pin;
};

/* The document's on_press(): note the event, set the flag. */
static void on_press(struct af_pin *pin, const struct af_gpio_event *ev, void *arg)
{
	struct button *b = arg;
	unsigned n = atomic_load(&b->handled) + 1;

	(void)pin;
	if (ev->seqno != atomic_load(&b->last_seqno) + 1)
		atomic_store(&b->in_order, false);
	atomic_store(&b->last_seqno, ev->seqno);
	atomic_fetch_add(&b->missed, ev->missed);
	atomic_store(&b->handled, n);
	if (n == b->target || !b->target)
		af_flag_set(&b->flag);
}

static int watcher(void *arg)
{
	struct button *b = arg;

	ck_assert_int_eq(af_flag_init(&b->flag, NULL), 0);
	b->pin = open_ok(0, AF_PIN_IN | AF_PIN_PULL_UP);
	rig_pull(0, 1);    /* released (a jumper's output starts low) */
	ck_assert_int_eq(af_pin_irq(b->pin, on_press, b, AF_PIN_IRQ_FALLING), 0);
	rig_pull(0, 0);    /* the button is pressed */
	ck_assert_int_eq(af_flag_wait_timeout(&b->flag, LONG_NS), 0);
	ck_assert_uint_eq(atomic_load(&b->handled), 1);
	af_pin_close(b->pin);
	af_flag_destroy(&b->flag);
	return 0;
}

START_TEST(interrupt_mode_wakes_a_task_through_a_flag)
{
	struct button b = { .in_order = true };

	ck_assert_int_eq(run_main(watcher, &b), 0);
}
END_TEST

/* Ten thousand on the simulated chip; a kernel's costs a sysfs write and an
 * interrupt thread's wakeup per edge, slow in an emulated guest. */
#define MANY_EDGES (rig.mode == RIG_SIM ? 10000u : 1000u)

static void *presser(void *arg)
{
	struct button *b = arg;

	for (unsigned i = 0; i < MANY_EDGES; i++) {
		rig_pull(0, !(i & 1));
		/* Keep up: the next edge only once the handler has seen this. */
		while (atomic_load(&b->handled) < i + 1)
			sched_yield();
	}
	return NULL;
}

static int many(void *arg)
{
	struct button *b = arg;
	pthread_t th;

	ck_assert_int_eq(af_flag_init(&b->flag, NULL), 0);
	b->pin = open_ok(0, AF_PIN_IN);
	ck_assert_int_eq(af_pin_irq(b->pin, on_press, b, AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING), 0);
	ck_assert_int_eq(pthread_create(&th, NULL, presser, b), 0);
	ck_assert_int_eq(af_flag_wait_timeout(&b->flag, 240 * 1000 * MS), 0);
	pthread_join(th, NULL);
	af_pin_close(b->pin);
	ck_assert_uint_eq(atomic_load(&b->handled), MANY_EDGES);
	ck_assert_uint_eq(atomic_load(&b->last_seqno), MANY_EDGES);
	ck_assert_uint_eq(atomic_load(&b->missed), 0);
	ck_assert(atomic_load(&b->in_order));
	af_flag_destroy(&b->flag);
	return 0;
}

START_TEST(thousands_of_edges_lose_none_when_the_handler_keeps_up)
{
	struct button b = { .in_order = true, .target = MANY_EDGES };

	ck_assert_int_eq(run_main(many, &b), 0);
}
END_TEST

struct slow {
	_Atomic int entered, finished, calls;
};

static void slow_handler(struct af_pin *pin, const struct af_gpio_event *ev, void *arg)
{
	struct slow *s = arg;

	(void)pin;
	(void)ev;
	atomic_fetch_add(&s->calls, 1);
	atomic_store(&s->entered, 1);
	sleep_ms(100);
	atomic_store(&s->finished, 1);
}

START_TEST(closing_a_pin_while_its_handler_runs_waits_for_the_handler_to_finish)
{
	struct slow s = { 0 };
	struct af_pin *pin = open_ok(0, AF_PIN_IN);

	ck_assert_int_eq(af_pin_irq(pin, slow_handler, &s, AF_PIN_IRQ_RISING), 0);
	rig_pull(0, 1);
	while (!atomic_load(&s.entered))
		sched_yield();
	af_pin_close(pin);
	ck_assert_int_eq(atomic_load(&s.finished), 1);
	ck_assert_int_eq(atomic_load(&s.calls), 1);
}
END_TEST

static void closing_handler(struct af_pin *pin, const struct af_gpio_event *ev, void *arg)
{
	_Atomic int *done = arg;

	(void)ev;
	af_pin_close(pin);
	atomic_store(done, 1);
}

START_TEST(a_pin_closed_from_its_own_handler_is_released_when_the_handler_returns)
{
	_Atomic int done = 0;
	struct af_pin *pin = open_ok(0, AF_PIN_IN), *again = NULL;
	struct capture cap;
	int r = -1;

	capture_start(&cap);
	ck_assert_int_eq(af_pin_irq(pin, closing_handler, &done, AF_PIN_IRQ_RISING), 0);
	rig_pull(0, 1);
	while (!atomic_load(&done))
		sched_yield();
	/* The line comes free once the thread has released it. */
	for (int i = 0; i < 10000 && r; i++) {
		r = af_pin_open(&again, line(0), AF_PIN_IN);
		if (r)
			sleep_ms(1);
	}
	capture_end(&cap);
	ck_assert_int_eq(r, 0);
	af_pin_close(again);
}
END_TEST

static int irq_busy(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING);
	struct af_pin *out = open_ok(1, AF_PIN_OUT);
	struct af_pin_opts plain = { .flags = AF_PIN_IN };
	struct slow s = { 0 };
	struct af_gpio_event ev;

	(void)arg;
	ck_assert_int_eq(af_pin_irq(out, slow_handler, &s, AF_PIN_IRQ_RISING), -EPERM);
	ck_assert_int_eq(af_pin_irq(pin, slow_handler, &s, 0), -EINVAL);
	ck_assert_int_eq(af_pin_irq(pin, slow_handler, &s, 0x1000), -EINVAL);
	ck_assert_int_eq(af_pin_irq(pin, NULL, &s, AF_PIN_IRQ_RISING), -EINVAL);
	ck_assert_int_eq(af_pin_irq(pin, slow_handler, &s, AF_PIN_IRQ_RISING), 0);
	ck_assert_int_eq(af_pin_irq(pin, slow_handler, &s, AF_PIN_IRQ_RISING), -EBUSY);
	ck_assert_int_eq(af_pin_wait_edge(pin, &ev), -EBUSY);
	ck_assert_int_eq(af_pin_reconfigure(pin, &plain), -EBUSY);
	af_pin_close(pin);
	af_pin_close(out);
	return 0;
}

START_TEST(a_pin_in_interrupt_mode_refuses_a_waiting_task_and_a_second_handler)
{
	ck_assert_int_eq(run_main(irq_busy, NULL), 0);
}
END_TEST

/* ---- bad input: exact errno, a message, no descriptor leaked ---------------------------------- */

/* Open @spec expecting @err and @said in the message, leaking nothing. */
static void open_fails(const char *spec, unsigned flags, int err, const char *said)
{
	unsigned before = count_fds();
	struct af_pin *pin = (struct af_pin *)&pin;
	struct capture cap;
	int r;

	capture_start(&cap);
	r = af_pin_open(&pin, spec, flags);
	capture_end(&cap);
	ck_assert_msg(r == err, "af_pin_open(\"%s\") = %d (%s), expected %d", spec, r,
		      af_strerror(r), err);
	ck_assert_ptr_eq(pin, (struct af_pin *)&pin);   /* untouched */
	ck_assert_uint_eq(count_fds(), before);
	if (said)
		expect_said(cap.text, said);
}

START_TEST(a_chip_that_does_not_exist_is_enoent)
{
	open_fails("/dev/gpiochip999:0", AF_PIN_IN, -ENOENT, "gpiochip999");
	open_fails("999:0", AF_PIN_IN, -ENOENT, "gpiochip999");
	open_fails("gpiochipnone:0", AF_PIN_IN, -ENOENT, "gpiochipnone");
	open_fails("sim:nosuchchip:0", AF_PIN_IN, -ENOENT, "nosuchchip");
}
END_TEST

START_TEST(a_line_name_that_does_not_exist_is_enoent_and_the_message_names_it)
{
	open_fails("no-such-line-name", AF_PIN_IN, -ENOENT, "no-such-line-name");
}
END_TEST

START_TEST(an_offset_out_of_range_or_malformed_is_einval)
{
	char spec[96];

	snprintf(spec, sizeof(spec), "%s:%u", rig.chip, 1000u);
	open_fails(spec, AF_PIN_IN, -EINVAL, "out of range");
	snprintf(spec, sizeof(spec), "%s:x1", rig.chip);
	open_fails(spec, AF_PIN_IN, -EINVAL, "CHIP:OFFSET");
	snprintf(spec, sizeof(spec), "%s:", rig.chip);
	open_fails(spec, AF_PIN_IN, -EINVAL, "CHIP:OFFSET");
	open_fails(":3", AF_PIN_IN, -EINVAL, "CHIP:OFFSET");
	open_fails("", AF_PIN_IN, -EINVAL, "empty");
}
END_TEST

START_TEST(a_line_requested_twice_is_ebusy_and_the_message_names_the_holder)
{
	struct af_pin_opts o = { .flags = AF_PIN_IN, .consumer = "the-holder" };
	const char *l = line(0);
	struct af_pin *pin;

	ck_assert_int_eq(af_pin_open_lines(&pin, &l, 1, &o), 0);
	open_fails(line(0), AF_PIN_IN, -EBUSY, "the-holder");
	af_pin_close(pin);
	pin = open_ok(0, AF_PIN_IN);   /* free again once closed */
	af_pin_close(pin);
}
END_TEST

START_TEST(a_chip_without_permission_is_eacces_with_a_hint_about_the_gpio_group)
{
	char path[] = "/tmp/af-gpio-noperm-XXXXXX", spec[64];
	bool dropped = geteuid() == 0;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(chmod(path, 0), 0);
	/* Root opens anything: be nobody for the call, keeping root as the
	 * saved id to come back to. */
	if (dropped)
		ck_assert_int_eq(setresuid(65534, 65534, 0), 0);
	snprintf(spec, sizeof(spec), "%s:0", path);
	open_fails(spec, AF_PIN_IN, -EACCES, "gpio");
	if (dropped)
		ck_assert_int_eq(setresuid(0, 0, 0), 0);
	ck_assert_int_eq(unlink(path), 0);
}
END_TEST

START_TEST(a_file_that_is_not_a_gpio_chip_is_enotty)
{
	open_fails("/dev/null:0", AF_PIN_IN, -ENOTTY, "not a GPIO chip");
}
END_TEST

START_TEST(invalid_flag_combinations_are_einval)
{
	static const unsigned bad[] = {
		AF_PIN_IN | AF_PIN_OUT,
		AF_PIN_OUT | AF_PIN_IRQ_RISING,
		AF_PIN_IN | AF_PIN_OPEN_DRAIN,
		AF_PIN_OUT | AF_PIN_OPEN_DRAIN | AF_PIN_OPEN_SOURCE,
		AF_PIN_IN | AF_PIN_PULL_UP | AF_PIN_PULL_DOWN,
		AF_PIN_PULL_UP,
		AF_PIN_IN | AF_PIN_INIT_HIGH,
		AF_PIN_IRQ_FALLING,
		1u << 20,
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		open_fails(line(0), bad[i], -EINVAL, "invalid flags");
}
END_TEST

START_TEST(bad_request_options_are_einval_or_exdev)
{
	struct af_gpio_sim *other;
	const char *two[] = { line(0), line(0) };
	const char *cross[] = { line(0), "sim:other:0" };
	const char *many[AF_PIN_LINES_MAX + 1];
	struct af_pin_opts big = { .flags = AF_PIN_IN, .event_buffer_size = 1025 };
	struct af_pin_opts deb = { .flags = AF_PIN_OUT, .debounce_us = 10 };
	unsigned lf[11];
	const char *eleven[11];
	struct af_pin_opts attrs = { .line_flags = lf };
	struct af_pin *pin = NULL;
	unsigned before = count_fds();
	struct capture cap;

	for (unsigned i = 0; i < 11; i++) {
		eleven[i] = line(i);
		lf[i] = AF_PIN_IN | (i & 1 ? AF_PIN_ACTIVE_LOW : 0) |
			(i >> 1 & 1 ? AF_PIN_IRQ_RISING : 0) | (i >> 2 & 1 ? AF_PIN_PULL_UP : 0) |
			(i >> 3 & 1 ? AF_PIN_CLOCK_REALTIME : 0);
	}
	for (unsigned i = 0; i <= AF_PIN_LINES_MAX; i++)
		many[i] = line(0);
	ck_assert_int_eq(af_gpio_sim_new(&other, "other", 1, NULL), 0);
	capture_start(&cap);
	ck_assert_int_eq(af_pin_open_lines(&pin, two, 2, NULL), -EINVAL);
	ck_assert_int_eq(af_pin_open_lines(&pin, cross, 2, NULL), -EXDEV);
	ck_assert_int_eq(af_pin_open_lines(&pin, many, 0, NULL), -EINVAL);
	ck_assert_int_eq(af_pin_open_lines(&pin, many, AF_PIN_LINES_MAX + 1, NULL), -EINVAL);
	ck_assert_int_eq(af_pin_open_lines(&pin, two, 1, &big), -EINVAL);
	ck_assert_int_eq(af_pin_open_lines(&pin, two, 1, &deb), -EINVAL);
	/* 11 distinct flag sets take config.flags and all 10 attributes:
	 * debounce needs one more. */
	attrs.debounce_us = 10;
	ck_assert_int_eq(af_pin_open_lines(&pin, eleven, 11, &attrs), -EINVAL);
	capture_end(&cap);
	expect_said(cap.text, "given twice");
	expect_said(cap.text, "one chip");
	expect_said(cap.text, "attributes");
	ck_assert_ptr_null(pin);
	af_gpio_sim_free(other);
	ck_assert_uint_eq(count_fds(), before);
}
END_TEST

START_TEST(set_value_on_an_input_is_eperm)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN);
	struct capture cap;

	capture_start(&cap);
	ck_assert_int_eq(af_pin_set_value(pin, 1), -EPERM);
	capture_end(&cap);
	expect_said(cap.text, "not an output");
	af_pin_close(pin);
}
END_TEST

static int no_edges(void *arg)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN);
	struct af_gpio_event ev;
	struct capture cap;

	(void)arg;
	capture_start(&cap);
	ck_assert_int_eq(af_pin_wait_edge(pin, &ev), -EINVAL);
	ck_assert_int_eq(af_pin_read_edges(pin, &ev, 1, 0), -EINVAL);
	capture_end(&cap);
	expect_said(cap.text, "AF_PIN_IRQ_RISING");
	af_pin_close(pin);
	return 0;
}

START_TEST(wait_edge_on_a_pin_without_edge_detection_is_einval)
{
	ck_assert_int_eq(run_main(no_edges, NULL), 0);
}
END_TEST

struct second {
	struct af_pin *pin;
	int first, second;
};

static int first_waiter(void *arg)
{
	struct second *s = arg;
	struct af_gpio_event ev;

	s->first = af_pin_wait_edge_timeout(s->pin, &ev, LONG_NS);
	return 0;
}

static int second_waiter(void *arg)
{
	struct second s = { .pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING) };
	struct af_gpio_event ev;
	struct af_task *t;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, first_waiter, &s), 0);
	af_yield();
	s.second = af_pin_wait_edge(s.pin, &ev);
	rig_pull(0, 1);
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(s.second, -EBUSY);
	ck_assert_int_eq(s.first, 0);
	af_pin_close(s.pin);
	return 0;
}

START_TEST(a_second_waiter_on_a_pin_is_ebusy_and_the_first_keeps_waiting)
{
	ck_assert_int_eq(run_main(second_waiter, NULL), 0);
}
END_TEST

static int close_under_waiter(void *arg)
{
	struct second s = { .pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING) };
	struct af_task *t;
	struct capture cap;

	(void)arg;
	ck_assert_int_eq(af_task_spawn(&t, first_waiter, &s), 0);
	af_yield();
	capture_start(&cap);
	af_pin_close(s.pin);             /* refused: the waiter is parked */
	capture_end(&cap);
	rig_pull(0, 1);                  /* the pin still works */
	ck_assert_int_eq(af_task_join(t, NULL), 0);
	ck_assert_int_eq(s.first, 0);
	af_pin_close(s.pin);
	return 0;
}

START_TEST(closing_a_pin_while_a_task_waits_on_it_is_refused_and_the_wait_still_ends)
{
	ck_assert_int_eq(run_main(close_under_waiter, NULL), 0);
}
END_TEST

START_TEST(blocking_calls_outside_a_task_are_eperm)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN | AF_PIN_IRQ_RISING);
	struct af_gpio_event ev;

	rig_pull(0, 1);   /* even with an event waiting */
	ck_assert_int_eq(af_pin_wait_edge(pin, &ev), -EPERM);
	ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, 0), -EPERM);
	ck_assert_int_eq(af_pin_read_edges(pin, &ev, 1, 0), -EPERM);
	af_pin_close(pin);
}
END_TEST

START_TEST(null_arguments_are_einval_everywhere)
{
	struct af_pin *pin = open_ok(0, AF_PIN_IN), *p;
	struct af_gpio_event ev;
	struct af_gpio_line_info li;
	struct af_gpio_chip_info ci;
	struct af_gpio_sim *sim;
	uint64_t v;
	struct capture cap;

	capture_start(&cap);
	ck_assert_int_eq(af_pin_open(NULL, line(0), AF_PIN_IN), -EINVAL);
	ck_assert_int_eq(af_pin_open(&p, NULL, AF_PIN_IN), -EINVAL);
	ck_assert_int_eq(af_pin_open_lines(NULL, NULL, 1, NULL), -EINVAL);
	ck_assert_int_eq(af_pin_value(NULL), -EINVAL);
	ck_assert_int_eq(af_pin_set_value(NULL, 1), -EINVAL);
	ck_assert_int_eq(af_pin_values(NULL, &v), -EINVAL);
	ck_assert_int_eq(af_pin_values(pin, NULL), -EINVAL);
	ck_assert_int_eq(af_pin_set_values(NULL, 1, 1), -EINVAL);
	ck_assert_int_eq(af_pin_reconfigure(NULL, NULL), -EINVAL);
	ck_assert_int_eq(af_pin_reconfigure(pin, NULL), -EINVAL);
	ck_assert_int_eq(af_pin_wait_edge(NULL, &ev), -EINVAL);
	ck_assert_int_eq(af_pin_wait_edge(pin, NULL), -EINVAL);
	ck_assert_int_eq(af_pin_wait_edge_timeout(NULL, &ev, 0), -EINVAL);
	ck_assert_int_eq(af_pin_read_edges(NULL, &ev, 1, 0), -EINVAL);
	ck_assert_int_eq(af_pin_irq(NULL, NULL, NULL, AF_PIN_IRQ_RISING), -EINVAL);
	ck_assert_int_eq(af_pin_num_lines(NULL), -EINVAL);
	ck_assert_int_eq(af_pin_line_info(NULL, 0, &li), -EINVAL);
	ck_assert_int_eq(af_pin_line_info(pin, 0, NULL), -EINVAL);
	ck_assert_int_eq(af_pin_line_info(pin, 1, &li), -EINVAL);
	ck_assert_ptr_null(af_pin_line_name(NULL, 0));
	ck_assert_int_eq(af_gpio_chips(NULL, 1), -EINVAL);
	ck_assert_int_eq(af_gpio_chip_info(NULL, &ci), -EINVAL);
	ck_assert_int_eq(af_gpio_chip_info(rig.chip, NULL), -EINVAL);
	ck_assert_int_eq(af_gpio_line_info(NULL, 0, &li), -EINVAL);
	ck_assert_int_eq(af_gpio_line_info(rig.chip, 0, NULL), -EINVAL);
	ck_assert_int_eq(af_gpio_find_line(NULL, &ci, &li), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_new(NULL, "x", 1, NULL), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_new(&sim, NULL, 1, NULL), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_pull(NULL, 0, 1), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_level(NULL, 0), -EINVAL);
	ck_assert_ptr_null(af_gpio_sim_chip(NULL));
	af_pin_close(NULL);
	af_gpio_sim_free(NULL);
	capture_end(&cap);
	af_pin_close(pin);
}
END_TEST

START_TEST(bad_simulated_chips_are_refused)
{
	static const char *const long_name[] = { "a-line-name-that-is-far-too-long-for-it" };
	struct af_gpio_sim *sim;
	struct capture cap;

	capture_start(&cap);
	ck_assert_int_eq(af_gpio_sim_new(&sim, "aftest", 1, NULL), -EEXIST);
	ck_assert_int_eq(af_gpio_sim_new(&sim, "", 1, NULL), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_new(&sim, "a:b", 1, NULL), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_new(&sim, "x", 0, NULL), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_new(&sim, "x", 1025, NULL), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_new(&sim, "x", 1, long_name), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_pull(rig.sim, NLINES, 1), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_pull(rig.sim, 0, 2), -EINVAL);
	ck_assert_int_eq(af_gpio_sim_level(rig.sim, NLINES), -EINVAL);
	capture_end(&cap);
	expect_said(cap.text, "exists");
}
END_TEST

static int unplug(void *arg)
{
	struct af_gpio_sim *sim;
	struct af_pin *pin;
	struct af_gpio_event ev;

	(void)arg;
	ck_assert_int_eq(af_gpio_sim_new(&sim, "unplugged", 2, NULL), 0);
	ck_assert_int_eq(af_pin_open(&pin, "sim:unplugged:1", AF_PIN_IN | AF_PIN_IRQ_RISING), 0);
	ck_assert_int_eq(af_gpio_sim_pull(sim, 1, 1), 0);
	af_gpio_sim_free(sim);
	/* What was buffered is still read, then the end shows. */
	expect_edge(pin, AF_PIN_IRQ_RISING, 1, 1, 1);
	ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, LONG_NS), -ENODEV);
	ck_assert_int_eq(af_pin_value(pin), -ENODEV);
	af_pin_close(pin);
	/* The name is free again. */
	ck_assert_int_eq(af_gpio_sim_new(&sim, "unplugged", 2, NULL), 0);
	af_gpio_sim_free(sim);
	return 0;
}

START_TEST(a_pin_on_a_freed_simulated_chip_reports_enodev)
{
	ck_assert_int_eq(run_main(unplug, NULL), 0);
}
END_TEST

/* ---- what only a kernel's chip shows ---------------------------------------------------------- */

/* Two lines toggled in turn overflow a 16-event buffer: the kernel keeps the
 * newest 16, numbered on both counters, and the first of them carries the
 * gap of the request-wide seqno. */
static int overflow_two_lines(void *arg)
{
	const char *lines[] = { line(0), line(1) };
	struct af_pin_opts o = { .flags = AF_PIN_IN | AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING,
				 .event_buffer_size = 16 };
	const uint32_t edges = 40;
	uint32_t last_line_seqno[2] = { 0, 0 }, newest = 0, got = 0;
	struct af_gpio_event evs[64];
	struct af_pin *pin;

	(void)arg;
	ck_assert_int_eq(af_pin_open_lines(&pin, lines, 2, &o), 0);
	/* Edge s (from 1) is on line (s - 1) % 2, its ceil(s / 2)-th. */
	for (uint32_t s = 1; s <= edges; s++)
		rig_pull((s - 1) % 2, ((s + 1) / 2) % 2);
	while (got < 16) {
		int n = af_pin_read_edges(pin, evs, 64, LONG_NS);

		ck_assert_int_gt(n, 0);
		for (int i = 0; i < n; i++, got++) {
			unsigned l = evs[i].offset == off(1);

			if (rig.mode == RIG_SIM) {
				ck_assert_uint_eq(evs[i].seqno, edges - 16 + 1 + got);
				ck_assert_uint_eq(evs[i].offset, off((evs[i].seqno - 1) % 2));
				ck_assert_uint_eq(evs[i].line_seqno, (evs[i].seqno + 1) / 2);
			}
			/* Each line's interrupt thread queues its own in order;
			 * the two may interleave late (expect_gap). */
			ck_assert_uint_gt(evs[i].line_seqno, last_line_seqno[l]);
			last_line_seqno[l] = evs[i].line_seqno;
			expect_gap(&evs[i], &newest);
		}
	}
	ck_assert_uint_eq(got, 16);
	expect_seen(newest, edges, 16);
	ck_assert_int_eq(af_pin_read_edges(pin, evs, 64, 0), -ETIMEDOUT);
	af_pin_close(pin);
	return 0;
}

START_TEST(a_two_line_overflow_keeps_the_newest_and_reports_the_gap_of_the_request_seqno)
{
	ck_assert_int_eq(run_main(overflow_two_lines, NULL), 0);
}
END_TEST

/* Eleven lines with eleven different flag sets: the request's default flags
 * and all ten attributes the uAPI has, which the kernel must read back line
 * by line as the library packed them. */
START_TEST(eleven_lines_with_distinct_flags_use_all_ten_attributes_and_each_keeps_its_own)
{
	const unsigned want = AF_PIN_IN | AF_PIN_OUT | AF_PIN_ACTIVE_LOW | AF_PIN_IRQ_RISING |
			      AF_PIN_PULL_UP | AF_PIN_CLOCK_REALTIME;
	const char *eleven[11];
	unsigned lf[11];
	struct af_pin_opts o = { .line_flags = lf };
	struct af_gpio_line_info li;
	struct af_pin *pin;

	for (unsigned i = 0; i < 11; i++) {
		eleven[i] = line(i);
		lf[i] = AF_PIN_IN | (i & 1 ? AF_PIN_ACTIVE_LOW : 0) |
			(i >> 1 & 1 ? AF_PIN_IRQ_RISING : 0) | (i >> 2 & 1 ? AF_PIN_PULL_UP : 0) |
			(i >> 3 & 1 ? AF_PIN_CLOCK_REALTIME : 0);
	}
	ck_assert_int_eq(af_pin_open_lines(&pin, eleven, 11, &o), 0);
	for (unsigned i = 0; i < 11; i++) {
		ck_assert_int_eq(af_pin_line_info(pin, i, &li), 0);
		ck_assert_msg((li.flags & want) == lf[i], "line %u: flags %#x, requested %#x", i,
			      li.flags & want, lf[i]);
		ck_assert_int_eq(af_gpio_line_info(rig.chip, i, &li), 0);
		ck_assert_msg((li.flags & want) == lf[i], "line %u on the chip: flags %#x, requested %#x",
			      i, li.flags & want, lf[i]);
	}
	af_pin_close(pin);
}
END_TEST

/* Records as the kernel queues them for a two-line request whose second
 * line's interrupt thread ran late: seqno 2 after 3. Written into the
 * simulated request's pipe through /proc (a pipe opens either way there). */
static int reordered(void *arg)
{
	static const uint32_t seqnos[] = { 1, 3, 2, 4, 7, 5, 8 };
	static const uint32_t missed[] = { 0, 1, 0, 0, 2, 0, 0 };
	const char *lines[] = { line(0), line(1) };
	struct af_pin_opts o = { .flags = AF_PIN_IN | AF_PIN_IRQ_RISING };
	struct gpio_v2_line_event raw = { .id = GPIO_V2_LINE_EVENT_RISING_EDGE };
	struct af_gpio_event ev;
	struct af_pin *pin;
	char path[64];
	int w;

	(void)arg;
	ck_assert_int_eq(af_pin_open_lines(&pin, lines, 2, &o), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", pin->fd);
	w = open(path, O_WRONLY | O_CLOEXEC);
	ck_assert_int_ge(w, 0);
	for (unsigned i = 0; i < sizeof(seqnos) / sizeof(seqnos[0]); i++) {
		raw.seqno = seqnos[i];
		raw.line_seqno = i + 1;
		ck_assert_int_eq(write(w, &raw, sizeof(raw)), (ssize_t)sizeof(raw));
	}
	for (unsigned i = 0; i < sizeof(seqnos) / sizeof(seqnos[0]); i++) {
		ck_assert_int_eq(af_pin_wait_edge_timeout(pin, &ev, LONG_NS), 0);
		ck_assert_uint_eq(ev.seqno, seqnos[i]);
		ck_assert_msg(ev.missed == missed[i], "seqno %u: missed %u, want %u", ev.seqno,
			      ev.missed, missed[i]);
	}
	close(w);
	af_pin_close(pin);
	return 0;
}

START_TEST(an_older_seqno_queued_late_by_another_line_is_no_gap)
{
	ck_assert_int_eq(run_main(reordered, NULL), 0);
}
END_TEST

/* The other process: request @spec as "af-other-process", say so on
 * @ready, hold it until @done closes. */
static void hold_line_child(const char *spec, int ready, int done)
{
	struct af_pin_opts o = { .flags = AF_PIN_IN, .consumer = "af-other-process" };
	struct af_pin *pin = NULL;
	char c = af_pin_open_lines(&pin, &spec, 1, &o) == 0 ? 'y' : 'n';

	if (write(ready, &c, 1) != 1)
		_exit(2);
	while (read(done, &c, 1) > 0)
		;
	af_pin_close(pin);
	_exit(0);
}

START_TEST(a_line_held_by_another_process_is_ebusy_until_that_process_exits)
{
	int ready[2], done[2], status;
	struct af_gpio_line_info li;
	struct af_pin *pin;
	pid_t pid;
	char c = 0;

	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(done), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(ready[0]);
		close(done[1]);
		hold_line_child(line(0), ready[1], done[0]);
	}
	close(ready[1]);
	close(done[0]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	ck_assert_int_eq(c, 'y');
	open_fails(line(0), AF_PIN_IN, -EBUSY, "af-other-process");
	ck_assert_int_eq(af_gpio_line_info(rig.chip, off(0), &li), 0);
	ck_assert(li.used);
	ck_assert_str_eq(li.consumer, "af-other-process");
	/* The kernel releases the line with the holder's last descriptor. */
	close(done[1]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(ready[0]);
	ck_assert_int_eq(af_gpio_line_info(rig.chip, off(0), &li), 0);
	ck_assert(!li.used);
	pin = open_ok(0, AF_PIN_IN);
	af_pin_close(pin);
}
END_TEST

START_TEST(the_kernel_reports_the_configfs_names_of_every_line)
{
	struct af_gpio_chip_info ci, found;
	struct af_gpio_line_info li;
	struct af_pin *pin;

	ck_assert_int_eq(af_gpio_chip_info(rig.chip, &ci), 0);
	ck_assert(!ci.simulated);
	ck_assert_uint_eq(ci.num_lines, NLINES);
	ck_assert_str_eq(ci.path, rig.chip);
	ck_assert_int_eq(strncmp(ci.name, "gpiochip", 8), 0);
	for (unsigned i = 0; i < NLINES; i++) {
		ck_assert_int_eq(af_gpio_line_info(rig.chip, i, &li), 0);
		ck_assert_str_eq(li.name, line_name(i));
		ck_assert_uint_eq(li.offset, i);
		ck_assert(!li.used);
	}
	/* Found by name among every chip of the machine, as on a Pi. */
	ck_assert_int_eq(af_gpio_find_line("aftest9", &found, &li), 0);
	ck_assert_str_eq(found.path, ci.path);
	ck_assert_str_eq(found.name, ci.name);
	ck_assert_uint_eq(li.offset, 9);
	ck_assert_int_eq(af_pin_open(&pin, "aftest9", AF_PIN_IN | AF_PIN_PULL_UP), 0);
	ck_assert_int_eq(af_gpio_line_info(rig.chip, 9, &li), 0);
	ck_assert(li.used);
	ck_assert_str_ne(li.consumer, "");
	ck_assert_uint_eq(li.flags & (AF_PIN_IN | AF_PIN_OUT | AF_PIN_PULL_UP),
			  AF_PIN_IN | AF_PIN_PULL_UP);
	af_pin_close(pin);
}
END_TEST

/* In the child: become nobody, with no groups, and open the chip. */
static void open_as_nobody(void *arg)
{
	struct af_gpio_chip_info ci;
	struct af_pin *pin;
	int r;

	(void)arg;
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
		_exit(3);
	r = af_pin_open(&pin, line(0), AF_PIN_IN);
	if (r != -EACCES)
		_exit(r == 0 ? 4 : 5);
	if (af_gpio_chip_info(rig.chip, &ci) != -EACCES)
		_exit(6);
	_exit(0);
}

START_TEST(a_user_without_access_to_the_chip_is_eacces_with_a_hint_about_the_gpio_group)
{
	struct stat st;
	char said[2048];
	int status;

	/* A device node of root's, as devtmpfs and udev make them without a
	 * gpio group rule: no access for others. */
	ck_assert_int_eq(stat(rig.chip, &st), 0);
	ck_assert_msg(!(st.st_mode & 06), "%s is open to others (mode %o)", rig.chip,
		      st.st_mode & 0777);
	status = in_child(open_as_nobody, NULL, said, sizeof(said));
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child status %#x: %s", status, said);
	expect_said(said, "gpio");
}
END_TEST

/* ---- the suite -------------------------------------------------------------------------------- */

static struct {
	const char *name, *why;
} skipped[64];
static unsigned nskipped;

static void add(TCase *tc, const TTest *t, unsigned needs)
{
	const char *why = rig_missing(needs);

	if (!why) {
		tcase_add_test(tc, t);
		return;
	}
	skipped[nskipped].name = t->name;
	skipped[nskipped++].why = why;
}

static TCase *tcase(Suite *s, const char *name)
{
	TCase *tc = tcase_create(name);

	tcase_add_checked_fixture(tc, rig_setup, rig_teardown);
	suite_add_tcase(s, tc);
	return tc;
}

static Suite *make_suite(void)
{
	Suite *s = suite_create("gpio");
	TCase *tc;

	tc = tcase(s, "edges");
	add(tc, a_rising_edge_pin_reports_only_rising_edges, NEED_PULL);
	add(tc, a_falling_edge_pin_reports_only_falling_edges, NEED_PULL);
	add(tc, a_both_edges_pin_reports_every_edge_in_order_with_monotonic_timestamps, NEED_PULL);
	add(tc, a_realtime_clock_pin_stamps_its_events_in_realtime, NEED_PULL);
	add(tc, a_pull_to_the_level_a_line_already_has_is_no_edge, NEED_PULL);
	add(tc, a_wait_with_no_edge_times_out_and_the_next_edge_still_arrives, NEED_PULL);
	add(tc, a_cancelled_wait_loses_no_event, NEED_PULL);

	tc = tcase(s, "bias, active-low and outputs");
	add(tc, a_pull_up_input_reads_one_and_a_pull_down_input_reads_zero, NEED_LEVEL | NEED_LINES);
	add(tc, an_outside_pull_overrides_the_request_bias, NEED_LINES);
	add(tc, an_active_low_input_reads_inverted_and_a_falling_wire_is_a_rising_edge, NEED_PULL);
	add(tc, an_output_drives_the_level_of_its_line, NEED_LEVEL | NEED_LINES);
	add(tc, an_open_drain_output_high_leaves_the_line_to_its_pull,
	    NEED_LEVEL | NEED_LINES | NEED_OD_PULL);
	add(tc, a_requested_line_can_be_reconfigured_without_releasing_it, NEED_LEVEL | NEED_LINES);

	tc = tcase(s, "debounce");
	add(tc, debounce_reports_one_edge_per_burst_after_the_level_is_stable, NEED_SIM);
	add(tc, the_kernel_debounces_a_burst_into_one_edge_after_the_period,
	    NEED_KERNEL | NEED_PULL);
	add(tc, debounce_shows_in_the_line_info, NEED_LINES);

	tc = tcase(s, "multi-line requests and lookup");
	add(tc, a_multi_line_request_reads_and_sets_values_by_request_index,
	    NEED_LEVEL | NEED_LINES | NEED_NAMES);
	add(tc, events_of_every_line_come_from_one_pin_in_order_with_both_sequence_numbers,
	    NEED_LINES);
	add(tc, a_line_is_found_by_name_on_any_chip, NEED_NAMES);
	add(tc, line_info_shows_names_consumers_and_directions, NEED_NAMES);
	add(tc, the_chip_list_includes_the_simulated_chips, NEED_SIM);

	tc = tcase(s, "batches and lost events");
	add(tc, events_are_read_in_batches_oldest_first, NEED_PULL);
	add(tc, an_overflowing_buffer_drops_the_oldest_and_the_next_event_reports_the_gap, NEED_PULL);
	add(tc, the_default_buffer_holds_sixteen_events_per_line, NEED_LINES);
	add(tc, the_buffer_size_rounds_up_to_a_power_of_two_like_the_kernels_kfifo, NEED_PULL);

	tc = tcase(s, "interrupt mode");
	tcase_set_timeout(tc, 300);
	add(tc, interrupt_mode_wakes_a_task_through_a_flag, NEED_PULL);
	add(tc, thousands_of_edges_lose_none_when_the_handler_keeps_up, NEED_PULL);
	add(tc, closing_a_pin_while_its_handler_runs_waits_for_the_handler_to_finish, NEED_PULL);
	add(tc, a_pin_closed_from_its_own_handler_is_released_when_the_handler_returns, NEED_PULL);
	add(tc, a_pin_in_interrupt_mode_refuses_a_waiting_task_and_a_second_handler, NEED_LINES);

	tc = tcase(s, "the kernel's own");
	add(tc, a_two_line_overflow_keeps_the_newest_and_reports_the_gap_of_the_request_seqno,
	    NEED_LINES);
	add(tc, eleven_lines_with_distinct_flags_use_all_ten_attributes_and_each_keeps_its_own,
	    NEED_LINES);
	add(tc, an_older_seqno_queued_late_by_another_line_is_no_gap, NEED_SIM);
	add(tc, a_line_held_by_another_process_is_ebusy_until_that_process_exits, NEED_KERNEL);
	add(tc, the_kernel_reports_the_configfs_names_of_every_line, NEED_KERNEL | NEED_NAMES);
	add(tc, a_user_without_access_to_the_chip_is_eacces_with_a_hint_about_the_gpio_group,
	    NEED_KERNEL | NEED_ROOT);

	tc = tcase(s, "bad input");
	add(tc, a_chip_that_does_not_exist_is_enoent, 0);
	add(tc, a_line_name_that_does_not_exist_is_enoent_and_the_message_names_it, 0);
	add(tc, an_offset_out_of_range_or_malformed_is_einval, 0);
	add(tc, a_line_requested_twice_is_ebusy_and_the_message_names_the_holder, 0);
	add(tc, a_chip_without_permission_is_eacces_with_a_hint_about_the_gpio_group, 0);
	add(tc, a_file_that_is_not_a_gpio_chip_is_enotty, 0);
	add(tc, invalid_flag_combinations_are_einval, 0);
	add(tc, bad_request_options_are_einval_or_exdev, NEED_SIM);
	add(tc, set_value_on_an_input_is_eperm, 0);
	add(tc, wait_edge_on_a_pin_without_edge_detection_is_einval, 0);
	add(tc, a_second_waiter_on_a_pin_is_ebusy_and_the_first_keeps_waiting, NEED_PULL);
	add(tc, closing_a_pin_while_a_task_waits_on_it_is_refused_and_the_wait_still_ends, NEED_PULL);
	add(tc, blocking_calls_outside_a_task_are_eperm, NEED_PULL);
	add(tc, null_arguments_are_einval_everywhere, 0);
	add(tc, bad_simulated_chips_are_refused, NEED_SIM);
	add(tc, a_pin_on_a_freed_simulated_chip_reports_enodev, NEED_SIM);
	return s;
}

/* Check has no skip: run the suite with its TAP log in a file, then print
 * that log with a "# SKIP" line per test this rig cannot run, numbered on
 * from Check's own, and the plan last. */
static int run_with_skips(Suite *s)
{
	const char *tap = getenv("CK_TAP_LOG_FILE_NAME");
	char tmp[] = "/tmp/af-test-gpio-tap-XXXXXX", buf[1024];
	unsigned n = 0;
	int fd, failed;
	SRunner *sr;
	FILE *f;

	if (!tap) {
		for (unsigned i = 0; i < nskipped; i++)
			printf("# skip %s: %s\n", skipped[i].name, skipped[i].why);
		return run_suite(s);
	}
	fd = mkstemp(tmp);
	if (fd < 0)
		return EXIT_FAILURE;
	close(fd);
	setenv("CK_TAP_LOG_FILE_NAME", tmp, 1);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	f = fopen(tmp, "r");
	while (f && fgets(buf, sizeof(buf), f)) {
		if (!strncmp(buf, "1..", 3))
			continue;
		if (!strncmp(buf, "ok ", 3) || !strncmp(buf, "not ok ", 7))
			n++;
		fputs(buf, stdout);
	}
	if (f)
		fclose(f);
	unlink(tmp);
	for (unsigned i = 0; i < nskipped; i++)
		printf("ok %u - %s # SKIP %s\n", ++n, skipped[i].name, skipped[i].why);
	printf("1..%u\n", n);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int main(void)
{
	rig_read_env();
	return run_with_skips(make_suite());
}

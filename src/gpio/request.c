/* SPDX-License-Identifier: MIT */
/*
 * Pins: a line request of one to 64 lines of one chip, its values, its
 * configuration, and its edge events in coroutine mode.
 *
 * How the loop reads events: the request fd is made non-blocking, a wait
 * first tries read(2) (a burst is usually already buffered), and only when
 * that finds nothing does the task park on a one-shot IORING_OP_POLL_ADD
 * (af_poll_timeout), then read again.
 *
 * The alternative, IORING_OP_READ on the ring, is not portable across the
 * kernels we support. The GPIO cdev's file has only ->read (no ->read_iter)
 * and is not FMODE_NOWAIT before about 6.8, so io_uring either returns
 * -EAGAIN at once for the O_NONBLOCK fd or, for a blocking fd, hands the
 * read to an io-wq kernel thread that sleeps in it: the extra thread the
 * issue forbids (gpiolib-cdev.c and io_uring/rw.c, read, not run: no cdev
 * here). Even on a pipe the ring read changed meaning: on 6.18 it arms an
 * internal poll for an O_NONBLOCK pipe and waits, where older kernels
 * returned -EAGAIN. Poll works the same on 5.10 through 6.x, on the cdev as
 * on the simulated chip's pipe, and where both work it costs the same:
 * bench/bench-gpio (a thread writes a 48-byte record to a pipe and waits
 * for the task's ack; `bench-gpio --rounds 9 --iters 20000`, shared 2-core
 * box, kernel 6.18) measured the ring read at 1.15x to 1.33x the median
 * round trip of poll+read, and the whole simulated-chip pin path at 1.40x
 * to 1.50x.
 *
 * One shot rather than multishot: a multishot poll outlives the wait that
 * armed it, so closing a pin from any thread would have to cancel it on the
 * loop's ring and wait for its last completion; a one-shot poll belongs to
 * the waiting task, whose cancellation the I/O layer already makes safe.
 */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "gpio-internal.h"

#define DIRS (AF_PIN_IN | AF_PIN_OUT)
#define BIAS (AF_PIN_PULL_UP | AF_PIN_PULL_DOWN | AF_PIN_BIAS_DISABLE)
#define DRIVE (AF_PIN_OPEN_DRAIN | AF_PIN_OPEN_SOURCE)
#define EDGE (AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING)
#define ALL_FLAGS (DIRS | BIAS | DRIVE | EDGE | AF_PIN_ACTIVE_LOW | AF_PIN_INIT_HIGH | \
		   AF_PIN_CLOCK_REALTIME)

/* ---- flags --------------------------------------------------------------------- */

static uint64_t to_kernel(unsigned f)
{
	uint64_t k = 0;

	k |= f & AF_PIN_IN ? GPIO_V2_LINE_FLAG_INPUT : 0;
	k |= f & AF_PIN_OUT ? GPIO_V2_LINE_FLAG_OUTPUT : 0;
	k |= f & AF_PIN_ACTIVE_LOW ? GPIO_V2_LINE_FLAG_ACTIVE_LOW : 0;
	k |= f & AF_PIN_IRQ_RISING ? GPIO_V2_LINE_FLAG_EDGE_RISING : 0;
	k |= f & AF_PIN_IRQ_FALLING ? GPIO_V2_LINE_FLAG_EDGE_FALLING : 0;
	k |= f & AF_PIN_OPEN_DRAIN ? GPIO_V2_LINE_FLAG_OPEN_DRAIN : 0;
	k |= f & AF_PIN_OPEN_SOURCE ? GPIO_V2_LINE_FLAG_OPEN_SOURCE : 0;
	k |= f & AF_PIN_PULL_UP ? GPIO_V2_LINE_FLAG_BIAS_PULL_UP : 0;
	k |= f & AF_PIN_PULL_DOWN ? GPIO_V2_LINE_FLAG_BIAS_PULL_DOWN : 0;
	k |= f & AF_PIN_BIAS_DISABLE ? GPIO_V2_LINE_FLAG_BIAS_DISABLED : 0;
	k |= f & AF_PIN_CLOCK_REALTIME ? GPIO_V2_LINE_FLAG_EVENT_CLOCK_REALTIME : 0;
	return k;
}

/* The kernel's rules (gpio_v2_line_flags_validate), checked here so the
 * message can say which rule, and the same for every chip. */
static const char *flags_problem(unsigned f)
{
	if (f & ~ALL_FLAGS)
		return "unknown bits";
	if ((f & DIRS) == DIRS)
		return "AF_PIN_IN and AF_PIN_OUT together";
	if ((f & EDGE) && !(f & AF_PIN_IN))
		return "edge detection (AF_PIN_IRQ_*) needs AF_PIN_IN";
	if ((f & DRIVE) && !(f & AF_PIN_OUT))
		return "AF_PIN_OPEN_DRAIN / AF_PIN_OPEN_SOURCE need AF_PIN_OUT";
	if ((f & DRIVE) == DRIVE)
		return "open drain and open source together";
	if ((f & AF_PIN_INIT_HIGH) && !(f & AF_PIN_OUT))
		return "AF_PIN_INIT_HIGH needs AF_PIN_OUT";
	if (__builtin_popcount(f & BIAS) > 1)
		return "more than one bias flag";
	if ((f & BIAS) && !(f & DIRS))
		return "a bias flag needs AF_PIN_IN or AF_PIN_OUT";
	if (!(f & DIRS) && (f & ~AF_PIN_ACTIVE_LOW))
		return "without AF_PIN_IN or AF_PIN_OUT only AF_PIN_ACTIVE_LOW is allowed";
	return NULL;
}

/* The kernel's request config: config.flags for line 0's flags, one
 * attribute per other distinct flag set, then output values and
 * debounce. At most GPIO_V2_LINE_NUM_ATTRS_MAX attributes. */
static int build_config(const char *who, struct gpio_v2_line_config *lc, const unsigned *flags,
			unsigned n, uint32_t debounce_us)
{
	uint64_t outs = 0, highs = 0, ins = 0;

	memset(lc, 0, sizeof(*lc));
	for (unsigned i = 0; i < n; i++) {
		const char *p = flags_problem(flags[i]);

		if (p) {
			af__misuse(who, "invalid flags 0x%x for line %u: %s", flags[i], i, p);
			return -EINVAL;
		}
		outs |= (uint64_t)!!(flags[i] & AF_PIN_OUT) << i;
		highs |= (uint64_t)!!(flags[i] & AF_PIN_INIT_HIGH) << i;
		ins |= (uint64_t)!!(flags[i] & AF_PIN_IN) << i;
	}
	lc->flags = to_kernel(flags[0]);
	for (unsigned i = 1; i < n; i++) {
		struct gpio_v2_line_config_attribute *a = NULL;
		uint64_t k = to_kernel(flags[i]);

		if (k == lc->flags)
			continue;
		for (unsigned j = 0; j < lc->num_attrs; j++)
			if (lc->attrs[j].attr.flags == k)
				a = &lc->attrs[j];
		if (!a) {
			if (lc->num_attrs == GPIO_V2_LINE_NUM_ATTRS_MAX)
				goto too_many;
			a = &lc->attrs[lc->num_attrs++];
			a->attr.id = GPIO_V2_LINE_ATTR_ID_FLAGS;
			a->attr.flags = k;
		}
		a->mask |= (uint64_t)1 << i;
	}
	if (outs) {
		if (lc->num_attrs == GPIO_V2_LINE_NUM_ATTRS_MAX)
			goto too_many;
		lc->attrs[lc->num_attrs].attr.id = GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES;
		lc->attrs[lc->num_attrs].attr.values = highs;
		lc->attrs[lc->num_attrs++].mask = outs;
	}
	if (debounce_us) {
		if (!ins) {
			af__misuse(who, "debounce_us is set but no line is an input (AF_PIN_IN)");
			return -EINVAL;
		}
		if (lc->num_attrs == GPIO_V2_LINE_NUM_ATTRS_MAX)
			goto too_many;
		lc->attrs[lc->num_attrs].attr.id = GPIO_V2_LINE_ATTR_ID_DEBOUNCE;
		lc->attrs[lc->num_attrs].attr.debounce_period_us = debounce_us;
		lc->attrs[lc->num_attrs++].mask = ins;
	}
	return 0;

too_many:
	af__misuse(who, "the lines' flags need more than the kernel's %d attributes per "
		   "request: use fewer distinct line_flags, or split the request",
		   GPIO_V2_LINE_NUM_ATTRS_MAX);
	return -EINVAL;
}

/* ---- opening ---------------------------------------------------------------------- */

/* Resolve every line; all on one chip, which stays open in @chip. */
static int resolve_lines(const char *who, const char *const *lines, unsigned n,
			 struct af__chip *chip, unsigned *offsets)
{
	for (unsigned i = 0; i < n; i++) {
		struct af__chip other;
		int r;

		if (!lines[i]) {
			af__misuse(who, "line %u of the request is NULL", i);
			r = -EINVAL;
		} else {
			r = af__line_find(who, lines[i], i ? &other : chip, &offsets[i]);
		}
		if (r) {
			if (i)
				af__chip_close(chip);
			return r;
		}
		if (i) {
			bool same = !strcmp(other.info.path, chip->info.path);

			af__chip_close(&other);
			if (!same) {
				af__misuse(who, "line \"%s\" is on %s but line \"%s\" on %s: one "
					   "request takes lines of one chip", lines[i],
					   other.info.path, lines[0], chip->info.path);
				af__chip_close(chip);
				return -EXDEV;
			}
		}
		for (unsigned j = 0; j < i; j++) {
			if (offsets[j] == offsets[i]) {
				af__misuse(who, "line \"%s\" is given twice", lines[i]);
				af__chip_close(chip);
				return -EINVAL;
			}
		}
	}
	return 0;
}

static int request_error(const char *who, struct af__chip *chip, const unsigned *offsets,
			 unsigned n, int err)
{
	struct gpio_v2_line_info li;

	if (err == -EBUSY) {
		for (unsigned i = 0; i < n; i++) {
			if (af__chip_line(chip, offsets[i], &li) == 0 &&
			    (li.flags & GPIO_V2_LINE_FLAG_USED)) {
				af__misuse(who, "line %u (\"%.32s\") of %s is already requested by "
					   "\"%.32s\": stop that program or close its pin first",
					   offsets[i], li.name, chip->info.path,
					   li.consumer[0] ? li.consumer : "the kernel");
				return err;
			}
		}
		af__misuse(who, "a line of the request is already requested");
	} else if (err == -ENOTTY) {
		af__misuse(who, "%s does not speak the GPIO uAPI v2: Linux 5.10 or later is "
			   "needed", chip->info.path);
	} else if (err == -EOPNOTSUPP) {
		af__misuse(who, "%s cannot do what the flags ask (bias, drive or the realtime "
			   "clock on this chip or kernel): drop that flag", chip->info.path);
	}
	return err;
}

static const char *default_consumer(void)
{
	extern char *program_invocation_short_name;

	return program_invocation_short_name && *program_invocation_short_name
	       ? program_invocation_short_name : "libasyncflag";
}

static void pin_fill(struct af_pin *pin, struct af__chip *chip, const unsigned *offsets,
		     unsigned n, const unsigned *flags, uint32_t debounce_us)
{
	struct gpio_v2_line_info li;

	pin->num_lines = n;
	pin->debounce_us = debounce_us;
	pin->irq_stop_fd = -1;
	snprintf(pin->chip_path, sizeof(pin->chip_path), "%s", chip->info.path);
	for (unsigned i = 0; i < n; i++) {
		pin->offsets[i] = offsets[i];
		pin->flags[i] = flags[i];
		if (af__chip_line(chip, offsets[i], &li) == 0)
			snprintf(pin->names[i], sizeof(pin->names[i]), "%.*s",
				 (int)sizeof(li.name), li.name);
	}
}

static int pin_request(const char *who, struct af_pin **out, const char *const *lines,
		       unsigned n, const struct af_pin_opts *opts)
{
	static const struct af_pin_opts defaults;
	struct gpio_v2_line_request lr;
	unsigned flags[AF_PIN_LINES_MAX];
	struct af__sim_req *sim_req = NULL;
	struct af__chip chip;
	struct af_pin *pin;
	int r;

	if (!opts)
		opts = &defaults;
	if (n == 0 || n > AF_PIN_LINES_MAX) {
		af__misuse(who, "%u lines: a request takes 1 to %d", n, AF_PIN_LINES_MAX);
		return -EINVAL;
	}
	if (opts->event_buffer_size > AF_PIN_EVENT_BUFFER_MAX) {
		af__misuse(who, "event_buffer_size %u is above the kernel's %d",
			   opts->event_buffer_size, AF_PIN_EVENT_BUFFER_MAX);
		return -EINVAL;
	}
	memset(&lr, 0, sizeof(lr));
	for (unsigned i = 0; i < n; i++)
		flags[i] = opts->line_flags ? opts->line_flags[i] : opts->flags;
	r = build_config(who, &lr.config, flags, n, opts->debounce_us);
	if (r)
		return r;
	r = resolve_lines(who, lines, n, &chip, lr.offsets);
	if (r)
		return r;
	pin = calloc(1, sizeof(*pin));
	if (!pin) {
		r = -ENOMEM;
		goto err_close_chip;
	}
	snprintf(lr.consumer, sizeof(lr.consumer), "%s",
		 opts->consumer ? opts->consumer : default_consumer());
	lr.num_lines = n;
	lr.event_buffer_size = opts->event_buffer_size;
	r = af__chip_ioctl(&chip, GPIO_V2_GET_LINE_IOCTL, &lr, &sim_req);
	if (r) {
		r = request_error(who, &chip, lr.offsets, n, r);
		goto err_free_pin;
	}
	pin->fd = lr.fd;
	pin->sim_req = sim_req;
	/* The kernel hands the fd out blocking; waits must never block the
	 * loop's thread. */
	if (fcntl(pin->fd, F_SETFL, fcntl(pin->fd, F_GETFL) | O_NONBLOCK) < 0) {
		r = -errno;
		af__pin_free(pin);
		goto err_close_chip;
	}
	pin_fill(pin, &chip, lr.offsets, n, flags, opts->debounce_us);
	af__chip_close(&chip);
	*out = pin;
	return 0;

err_free_pin:
	free(pin);
err_close_chip:
	af__chip_close(&chip);
	return r;
}

AF_API int af_pin_open(struct af_pin **pin, const char *line, unsigned flags)
{
	struct af_pin_opts opts = { .flags = flags };

	af_assert_return(pin && line, -EINVAL);
	return pin_request(__func__, pin, &line, 1, &opts);
}

AF_API int af_pin_open_lines(struct af_pin **pin, const char *const *lines, unsigned num_lines,
			     const struct af_pin_opts *opts)
{
	af_assert_return(pin && lines, -EINVAL);
	return pin_request(__func__, pin, lines, num_lines, opts);
}

void af__pin_free(struct af_pin *pin)
{
	/* The simulator reads the fd to drop old events: release first. */
	if (pin->sim_req)
		af__gpio_sim_release(pin->sim_req);
	if (pin->fd >= 0)
		close(pin->fd);
	free(pin);
}

AF_API void af_pin_close(struct af_pin *pin)
{
	if (!pin)
		return;
	/* Freeing under a parked waiter would hand it freed memory when it
	 * resumes: refuse, as af_flag_destroy() does, and keep the pin. */
	if (pin->waiting) {
		af__misuse(__func__, "a task still waits for an edge of this pin: cancel it and "
			   "let it return before closing; the pin stays open");
		return;
	}
	if (pin->irq_on && !af__pin_irq_stop(pin))
		return;
	af__pin_free(pin);
}

/* ---- values and configuration ------------------------------------------------------- */

int af__pin_ioctl(struct af_pin *pin, unsigned long cmd, void *arg)
{
	if (pin->sim_req)
		return af__gpio_sim_req_ioctl(pin->sim_req, cmd, arg);
	return ioctl(pin->fd, cmd, arg) < 0 ? -errno : 0;
}

static uint64_t all_lines(const struct af_pin *pin)
{
	return pin->num_lines == 64 ? ~(uint64_t)0 : ((uint64_t)1 << pin->num_lines) - 1;
}

AF_API int af_pin_values(struct af_pin *pin, uint64_t *values)
{
	struct gpio_v2_line_values lv;
	int r;

	af_assert_return(pin && values, -EINVAL);
	memset(&lv, 0, sizeof(lv));
	lv.mask = all_lines(pin);
	r = af__pin_ioctl(pin, GPIO_V2_LINE_GET_VALUES_IOCTL, &lv);
	if (r == 0)
		*values = lv.bits;
	return r;
}

AF_API int af_pin_set_values(struct af_pin *pin, uint64_t mask, uint64_t values)
{
	struct gpio_v2_line_values lv;

	af_assert_return(pin, -EINVAL);
	if (!mask || (mask & ~all_lines(pin))) {
		af__misuse(__func__, "mask 0x%llx: the pin has lines 0 to %u (bit i = line i)",
			   (unsigned long long)mask, pin->num_lines - 1);
		return -EINVAL;
	}
	for (unsigned i = 0; i < pin->num_lines; i++) {
		if ((mask >> i & 1) && !(pin->flags[i] & AF_PIN_OUT)) {
			af__misuse(__func__, "line %u (\"%s\") is not an output: open it with "
				   "AF_PIN_OUT or af_pin_reconfigure() it", pin->offsets[i],
				   pin->names[i]);
			return -EPERM;
		}
	}
	memset(&lv, 0, sizeof(lv));
	lv.mask = mask;
	lv.bits = values & mask;
	return af__pin_ioctl(pin, GPIO_V2_LINE_SET_VALUES_IOCTL, &lv);
}

AF_API int af_pin_value(struct af_pin *pin)
{
	uint64_t v;
	int r;

	af_assert_return(pin, -EINVAL);
	if (pin->num_lines != 1) {
		af__misuse(__func__, "the pin has %u lines: read them with af_pin_values()",
			   pin->num_lines);
		return -EINVAL;
	}
	r = af_pin_values(pin, &v);
	return r ? r : (int)(v & 1);
}

AF_API int af_pin_set_value(struct af_pin *pin, int value)
{
	af_assert_return(pin, -EINVAL);
	if (pin->num_lines != 1) {
		af__misuse(__func__, "the pin has %u lines: set them with af_pin_set_values()",
			   pin->num_lines);
		return -EINVAL;
	}
	return af_pin_set_values(pin, 1, value ? 1 : 0);
}

static bool has_edges(const unsigned *flags, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (flags[i] & EDGE)
			return true;
	return false;
}

static int reconfigure(const char *who, struct af_pin *pin, const unsigned *flags,
		       uint32_t debounce_us)
{
	struct gpio_v2_line_config lc;
	int r = build_config(who, &lc, flags, pin->num_lines, debounce_us);

	if (r)
		return r;
	r = af__pin_ioctl(pin, GPIO_V2_LINE_SET_CONFIG_IOCTL, &lc);
	if (r)
		return r;
	memcpy(pin->flags, flags, pin->num_lines * sizeof(flags[0]));
	pin->debounce_us = debounce_us;
	return 0;
}

AF_API int af_pin_reconfigure(struct af_pin *pin, const struct af_pin_opts *opts)
{
	unsigned flags[AF_PIN_LINES_MAX];

	af_assert_return(pin && opts, -EINVAL);
	for (unsigned i = 0; i < pin->num_lines; i++)
		flags[i] = opts->line_flags ? opts->line_flags[i] : opts->flags;
	if ((pin->waiting || pin->irq_on) && !has_edges(flags, pin->num_lines)) {
		af__misuse(__func__, "the new flags turn edge detection off while %s: stop "
			   "that first", pin->waiting ? "a task waits for an edge"
			   : "the pin is in interrupt mode");
		return -EBUSY;
	}
	return reconfigure(__func__, pin, flags, opts->debounce_us);
}

int af__pin_set_edges(struct af_pin *pin, unsigned edges)
{
	unsigned flags[AF_PIN_LINES_MAX];

	for (unsigned i = 0; i < pin->num_lines; i++) {
		if (!(pin->flags[i] & AF_PIN_IN)) {
			af__misuse("af_pin_irq", "line %u (\"%s\") is not an input: open it with "
				   "AF_PIN_IN", pin->offsets[i], pin->names[i]);
			return -EPERM;
		}
		flags[i] = (pin->flags[i] & ~EDGE) | edges;
	}
	if (!memcmp(flags, pin->flags, pin->num_lines * sizeof(flags[0])))
		return 0;
	return reconfigure("af_pin_irq", pin, flags, pin->debounce_us);
}

/* ---- events ----------------------------------------------------------------------------- */

/* seqno counts every event of the request from 1, those the kernel dropped
 * included: the gap is what was lost. Of a request of several lines the
 * kernel numbers an edge in its hard interrupt handler but queues it from
 * that line's interrupt thread, so a line whose thread ran late queues an
 * older seqno after a newer one: that is no gap, and must not make the next
 * event look like one. Compared as a signed difference, so that the u32
 * wrapping after four billion events is no gap either. */
static uint32_t seqno_gap(struct af_pin *pin, uint32_t seqno)
{
	int32_t d = (int32_t)(seqno - pin->last_seqno);

	if (d <= 0)
		return 0;
	pin->last_seqno = seqno;
	return (uint32_t)d - 1;
}

static void translate(struct af_pin *pin, const struct gpio_v2_line_event *raw,
		      struct af_gpio_event *ev)
{
	ev->timestamp_ns = raw->timestamp_ns;
	ev->offset = raw->offset;
	ev->edge = raw->id == GPIO_V2_LINE_EVENT_RISING_EDGE ? AF_PIN_IRQ_RISING
							     : AF_PIN_IRQ_FALLING;
	ev->seqno = raw->seqno;
	ev->line_seqno = raw->line_seqno;
	ev->missed = seqno_gap(pin, raw->seqno);
}

int af__pin_next(struct af_pin *pin, struct af_gpio_event *ev)
{
	ssize_t n;

	if (pin->raw_head == pin->raw_len) {
		n = read(pin->fd, pin->raw, sizeof(pin->raw));
		if (n < 0)
			return errno == EAGAIN ? 0 : -errno;
		if (n == 0)
			return -ENODEV;   /* a simulated chip was freed */
		pin->raw_head = 0;
		pin->raw_len = (unsigned)n / AF_GPIO_EVENT_SIZE;
		if (!pin->raw_len)
			return -EIO;
	}
	translate(pin, &pin->raw[pin->raw_head++], ev);
	return 1;
}

static int wait_check(const char *who, struct af_pin *pin, const void *ev)
{
	int err = 0;

	af_assert_return(pin && ev, -EINVAL);
	if (!af__task_self(&err)) {
		af__misuse(who, "called outside a task: wait for edges from a task of a running "
			   "loop, or use af_pin_irq()");
		return err;
	}
	if (!has_edges(pin->flags, pin->num_lines)) {
		af__misuse(who, "the pin has no edge detection: open it with AF_PIN_IRQ_RISING "
			   "and/or AF_PIN_IRQ_FALLING");
		return -EINVAL;
	}
	if (pin->waiting || pin->irq_on) {
		af__misuse(who, "%s", pin->waiting ? "another task already waits on this pin"
			   : "the pin is in interrupt mode: its handler gets the events");
		return -EBUSY;
	}
	return 0;
}

/* One event, parking on a poll of the fd while there is none. */
static int wait_one(struct af_pin *pin, struct af_gpio_event *ev, uint64_t deadline)
{
	for (;;) {
		int64_t left = -1;
		int r = af__pin_next(pin, ev);

		if (r)
			return r < 0 ? r : 0;
		if (deadline != UINT64_MAX) {
			uint64_t now = af__now_ns();

			if (now >= deadline)
				return -ETIMEDOUT;
			left = (int64_t)(deadline - now);
		}
		r = af_poll_timeout(pin->fd, POLLIN, left);
		if (r < 0)
			return r;
	}
}

AF_API int af_pin_wait_edge_timeout(struct af_pin *pin, struct af_gpio_event *ev,
				    int64_t timeout_ns)
{
	int r = wait_check(__func__, pin, ev);

	if (r)
		return r;
	pin->waiting = true;
	r = wait_one(pin, ev, af__deadline(timeout_ns));
	pin->waiting = false;
	return r;
}

AF_API int af_pin_wait_edge(struct af_pin *pin, struct af_gpio_event *ev)
{
	return af_pin_wait_edge_timeout(pin, ev, -1);
}

AF_API int af_pin_read_edges(struct af_pin *pin, struct af_gpio_event *evs, unsigned max,
			     int64_t timeout_ns)
{
	unsigned got = 1;
	int r = wait_check(__func__, pin, evs);

	if (r)
		return r;
	af_assert_return(max > 0 && max <= INT32_MAX, -EINVAL);
	pin->waiting = true;
	r = wait_one(pin, &evs[0], af__deadline(timeout_ns));
	while (r == 0 && got < max) {
		int n = af__pin_next(pin, &evs[got]);

		if (n <= 0)
			break;   /* an error waits for the next call */
		got++;
	}
	pin->waiting = false;
	return r ? r : (int)got;
}

/* ---- descriptions -------------------------------------------------------------------------- */

AF_API int af_pin_num_lines(const struct af_pin *pin)
{
	af_assert_return(pin, -EINVAL);
	return (int)pin->num_lines;
}

AF_API const char *af_pin_line_name(const struct af_pin *pin, unsigned index)
{
	if (!pin || index >= pin->num_lines)
		return NULL;
	return pin->names[index];
}

AF_API int af_pin_line_info(struct af_pin *pin, unsigned index, struct af_gpio_line_info *info)
{
	struct gpio_v2_line_info li;
	struct af__chip chip;
	int r;

	af_assert_return(pin && info, -EINVAL);
	af_assert_return(index < pin->num_lines, -EINVAL);
	r = af__chip_open(__func__, pin->chip_path, &chip);
	if (r)
		return r == -ENOENT ? -ENODEV : r;
	r = af__chip_line(&chip, pin->offsets[index], &li);
	if (r == 0)
		af__line_info_from_kernel(&li, info);
	af__chip_close(&chip);
	return r;
}

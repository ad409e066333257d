/* SPDX-License-Identifier: MIT */
/*
 * The simulated chip: the kernel's gpio-sim driver and the part of
 * gpiolib-cdev a request talks to, inside the process.
 *
 * It answers the uAPI v2 ioctls with the kernel's structs and rules, and
 * delivers edge events as the kernel's 48-byte records through a real
 * descriptor (a pipe: writes of at most PIPE_BUF bytes are atomic, so
 * readers only ever see whole records), so the pin above reads it on the
 * same io_uring path as a real chip. The kernel keeps events in a kfifo
 * that drops the oldest when full; the pipe stands in for it, and since the
 * simulator also holds the read end it drops the head record itself.
 *
 * The registry of simulated chips is process-wide by nature, like /dev:
 * one mutex guards it and every chip's state, since pulls come from any
 * thread (a test's driver thread, an interrupt handler).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "gpio-internal.h"

struct sim_line {
	char name[AF_GPIO_NAME_MAX];
	uint8_t pull;              /* the physical level gpio-sim's pull gives */
	struct af__sim_req *req;   /* who holds the line, or NULL */
	unsigned idx;              /* its index in that request */
};

struct af_gpio_sim {
	struct af_gpio_sim *next;  /* the registry, in creation order */
	char name[AF_GPIO_NAME_MAX];
	char chip[AF_GPIO_NAME_MAX + 8];   /* "sim:NAME" */
	unsigned num_lines;
	unsigned refs;             /* registry + requests + open chip handles */
	bool gone;                 /* af_gpio_sim_free() was called */
	struct af__sim_req *reqs;

	/* The software debouncer: one thread per chip, started by the
	 * first debounced request, as the kernel's delayed work. */
	pthread_cond_t cond;
	pthread_t deb_thread;
	bool deb_running, deb_stop;

	struct sim_line lines[];
};

struct af__sim_req {
	struct af__sim_req *next;
	struct af_gpio_sim *sim;
	bool gone;
	unsigned num_lines;
	unsigned offsets[GPIO_V2_LINES_MAX];
	uint64_t flags[GPIO_V2_LINES_MAX];       /* GPIO_V2_LINE_FLAG_* */
	uint32_t debounce_us[GPIO_V2_LINES_MAX];
	uint64_t deadline[GPIO_V2_LINES_MAX];    /* debounce expiry, 0: none */
	uint8_t out[GPIO_V2_LINES_MAX];          /* logical output value */
	uint8_t level[GPIO_V2_LINES_MAX];        /* physical level last seen (debounced) */
	uint32_t line_seqno[GPIO_V2_LINES_MAX];
	uint32_t seqno;
	unsigned capacity;                       /* events the "kfifo" holds */
	int rfd, wfd;
	char consumer[AF_GPIO_NAME_MAX];
};

static pthread_mutex_t sims_mu = PTHREAD_MUTEX_INITIALIZER;
static struct af_gpio_sim *sims;

#define EDGES (GPIO_V2_LINE_FLAG_EDGE_RISING | GPIO_V2_LINE_FLAG_EDGE_FALLING)
#define BIASES (GPIO_V2_LINE_FLAG_BIAS_PULL_UP | GPIO_V2_LINE_FLAG_BIAS_PULL_DOWN | \
		GPIO_V2_LINE_FLAG_BIAS_DISABLED)
#define DRIVES (GPIO_V2_LINE_FLAG_OPEN_DRAIN | GPIO_V2_LINE_FLAG_OPEN_SOURCE)
#define CLOCKS (GPIO_V2_LINE_FLAG_EVENT_CLOCK_REALTIME | GPIO_V2_LINE_FLAG_EVENT_CLOCK_HTE)
#define KNOWN (GPIO_V2_LINE_FLAG_ACTIVE_LOW | GPIO_V2_LINE_FLAG_INPUT | \
	       GPIO_V2_LINE_FLAG_OUTPUT | EDGES | DRIVES | BIASES | CLOCKS)

static uint64_t clock_now(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool is_zero(const void *p, size_t n)
{
	const unsigned char *c = p;

	for (size_t i = 0; i < n; i++)
		if (c[i])
			return false;
	return true;
}

/* ---- references ------------------------------------------------------------ */

static void sim_destroy(struct af_gpio_sim *sim)
{
	if (sim->deb_running)
		pthread_join(sim->deb_thread, NULL);
	pthread_cond_destroy(&sim->cond);
	free(sim);
}

/* Drop a reference with sims_mu held; true when the caller must destroy
 * the chip after unlocking (the debouncer thread is joined then). */
static bool unref_locked(struct af_gpio_sim *sim)
{
	if (--sim->refs)
		return false;
	sim->deb_stop = true;
	pthread_cond_signal(&sim->cond);
	return true;
}

void af__gpio_sim_put(struct af_gpio_sim *sim)
{
	bool last;

	pthread_mutex_lock(&sims_mu);
	last = unref_locked(sim);
	pthread_mutex_unlock(&sims_mu);
	if (last)
		sim_destroy(sim);
}

struct af_gpio_sim *af__gpio_sim_get(const char *name)
{
	struct af_gpio_sim *sim;

	pthread_mutex_lock(&sims_mu);
	for (sim = sims; sim; sim = sim->next)
		if (!strcmp(sim->name, name))
			break;
	if (sim)
		sim->refs++;
	pthread_mutex_unlock(&sims_mu);
	return sim;
}

struct af_gpio_sim *af__gpio_sim_nth(unsigned index)
{
	struct af_gpio_sim *sim;

	pthread_mutex_lock(&sims_mu);
	for (sim = sims; sim && index; sim = sim->next)
		index--;
	if (sim)
		sim->refs++;
	pthread_mutex_unlock(&sims_mu);
	return sim;
}

/* ---- events ------------------------------------------------------------------ */

static void emit(struct af__sim_req *req, unsigned i, uint32_t id)
{
	clockid_t clk = req->flags[i] & GPIO_V2_LINE_FLAG_EVENT_CLOCK_REALTIME
			? CLOCK_REALTIME : CLOCK_MONOTONIC;
	struct gpio_v2_line_event ev;
	int queued = 0;

	memset(&ev, 0, sizeof(ev));
	ev.timestamp_ns = clock_now(clk);
	ev.id = id;
	ev.offset = req->offsets[i];
	/* As linereq_put_event: the request's counter advances for every
	 * event, dropped or not, so a dropped one leaves a gap. */
	ev.seqno = ++req->seqno;
	ev.line_seqno = ++req->line_seqno[i];
	if (req->num_lines == 1)
		ev.seqno = ev.line_seqno;
	if (req->wfd < 0)
		return;
	/* The kfifo is full: drop the oldest, as the kernel does. A reader
	 * may empty the pipe between the two calls; then the read finds
	 * nothing (the fd is non-blocking) and nothing is dropped. */
	if (ioctl(req->rfd, FIONREAD, &queued) == 0 &&
	    (unsigned)queued / AF_GPIO_EVENT_SIZE >= req->capacity) {
		struct gpio_v2_line_event old;

		if (read(req->rfd, &old, sizeof(old)) < 0)
			(void)0;
	}
	/* Never short and never blocks: the pipe holds the whole fifo and
	 * 48 bytes are below PIPE_BUF. */
	if (write(req->wfd, &ev, sizeof(ev)) < 0)
		(void)0;
}

/* The (debounced) physical level of input line @i is now @phys. */
static void level_seen(struct af__sim_req *req, unsigned i, uint8_t phys)
{
	uint64_t f = req->flags[i];
	uint8_t logical;

	if (phys == req->level[i])
		return;
	req->level[i] = phys;
	logical = phys ^ !!(f & GPIO_V2_LINE_FLAG_ACTIVE_LOW);
	if (f & (logical ? GPIO_V2_LINE_FLAG_EDGE_RISING : GPIO_V2_LINE_FLAG_EDGE_FALLING))
		emit(req, i, logical ? GPIO_V2_LINE_EVENT_RISING_EDGE
				     : GPIO_V2_LINE_EVENT_FALLING_EDGE);
}

static void input_changed(struct af__sim_req *req, unsigned i)
{
	struct af_gpio_sim *sim = req->sim;
	uint8_t phys = sim->lines[req->offsets[i]].pull;

	if (req->debounce_us[i]) {
		/* Every change restarts the period, as mod_delayed_work(). */
		req->deadline[i] = clock_now(CLOCK_MONOTONIC) +
				   (uint64_t)req->debounce_us[i] * 1000u;
		pthread_cond_signal(&sim->cond);
		return;
	}
	level_seen(req, i, phys);
}

/* Fire expired debounce periods; returns the next deadline (0: none). */
static uint64_t debounce_run(struct af_gpio_sim *sim, uint64_t now)
{
	uint64_t next = 0;

	for (struct af__sim_req *req = sim->reqs; req; req = req->next) {
		for (unsigned i = 0; i < req->num_lines; i++) {
			uint64_t d = req->deadline[i];

			if (!d)
				continue;
			if (d <= now) {
				req->deadline[i] = 0;
				level_seen(req, i, sim->lines[req->offsets[i]].pull);
			} else if (!next || d < next) {
				next = d;
			}
		}
	}
	return next;
}

static void *debounce_thread(void *arg)
{
	struct af_gpio_sim *sim = arg;

	pthread_mutex_lock(&sims_mu);
	while (!sim->deb_stop) {
		uint64_t next = debounce_run(sim, clock_now(CLOCK_MONOTONIC));
		struct timespec ts;

		if (!next) {
			pthread_cond_wait(&sim->cond, &sims_mu);
			continue;
		}
		ts.tv_sec = (time_t)(next / 1000000000u);
		ts.tv_nsec = (long)(next % 1000000000u);
		pthread_cond_timedwait(&sim->cond, &sims_mu, &ts);
	}
	pthread_mutex_unlock(&sims_mu);
	return NULL;
}

static int debounce_start(struct af_gpio_sim *sim)
{
	int r;

	if (sim->deb_running)
		return 0;
	r = pthread_create(&sim->deb_thread, NULL, debounce_thread, sim);
	if (r)
		return -r;
	sim->deb_running = true;
	return 0;
}

/* ---- configuration, as gpiolib-cdev validates and applies it ------------------ */

static int flags_validate(uint64_t f)
{
	bool in = f & GPIO_V2_LINE_FLAG_INPUT, out = f & GPIO_V2_LINE_FLAG_OUTPUT;

	if (f & ~KNOWN)
		return -EINVAL;
	if ((f & CLOCKS) == CLOCKS || (in && out))
		return -EINVAL;
	if (f & GPIO_V2_LINE_FLAG_EVENT_CLOCK_HTE)
		return -EOPNOTSUPP;   /* no hardware timestamp engine here */
	if ((f & EDGES) && !in)
		return -EINVAL;
	if ((f & DRIVES) && (!out || (f & DRIVES) == DRIVES))
		return -EINVAL;
	if ((f & BIASES) && (!(in || out) || __builtin_popcountll(f & BIASES) > 1))
		return -EINVAL;
	if (!in && !out && (f & ~GPIO_V2_LINE_FLAG_ACTIVE_LOW))
		return -EINVAL;
	return 0;
}

static int config_validate(const struct gpio_v2_line_config *lc, unsigned num_lines)
{
	if (lc->num_attrs > GPIO_V2_LINE_NUM_ATTRS_MAX || !is_zero(lc->padding, sizeof(lc->padding)))
		return -EINVAL;
	for (unsigned i = 0; i < num_lines; i++) {
		uint64_t f = lc->flags;
		int r;

		for (unsigned a = 0; a < lc->num_attrs; a++) {
			if (lc->attrs[a].attr.id == GPIO_V2_LINE_ATTR_ID_FLAGS &&
			    (lc->attrs[a].mask >> i & 1)) {
				f = lc->attrs[a].attr.flags;
				break;
			}
		}
		r = flags_validate(f);
		if (r)
			return r;
	}
	return 0;
}

/* The value of attribute @id for line @i: the lowest-numbered attribute
 * whose mask has the line wins, as in the kernel. */
static const struct gpio_v2_line_attribute *attr_for(const struct gpio_v2_line_config *lc,
						      uint32_t id, unsigned i)
{
	for (unsigned a = 0; a < lc->num_attrs; a++)
		if (lc->attrs[a].attr.id == id && (lc->attrs[a].mask >> i & 1))
			return &lc->attrs[a].attr;
	return NULL;
}

static void line_apply(struct af__sim_req *req, unsigned i, const struct gpio_v2_line_config *lc)
{
	struct sim_line *line = &req->sim->lines[req->offsets[i]];
	const struct gpio_v2_line_attribute *a;
	uint64_t f = lc->flags;

	if ((a = attr_for(lc, GPIO_V2_LINE_ATTR_ID_FLAGS, i)))
		f = a->flags;
	req->flags[i] = f;
	a = attr_for(lc, GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES, i);
	req->out[i] = a ? (uint8_t)(a->values >> i & 1) : 0;
	a = attr_for(lc, GPIO_V2_LINE_ATTR_ID_DEBOUNCE, i);
	req->debounce_us[i] = (a && (f & GPIO_V2_LINE_FLAG_INPUT)) ? a->debounce_period_us : 0;
	req->deadline[i] = 0;
	/* gpio_sim_set_config(): a bias in the request sets the pull. It
	 * takes effect before edge detection starts, so it is no event. */
	if (f & GPIO_V2_LINE_FLAG_BIAS_PULL_UP)
		line->pull = 1;
	else if (f & GPIO_V2_LINE_FLAG_BIAS_PULL_DOWN)
		line->pull = 0;
	req->level[i] = line->pull;
}

static bool any_debounce(const struct af__sim_req *req)
{
	for (unsigned i = 0; i < req->num_lines; i++)
		if (req->debounce_us[i])
			return true;
	return false;
}

/* ---- the chip's ioctls --------------------------------------------------------- */

static void chip_info(struct af_gpio_sim *sim, struct gpiochip_info *ci)
{
	memset(ci, 0, sizeof(*ci));
	snprintf(ci->name, sizeof(ci->name), "%s", sim->name);
	snprintf(ci->label, sizeof(ci->label), "af-gpio-sim");
	ci->lines = sim->num_lines;
}

static int line_info(struct af_gpio_sim *sim, struct gpio_v2_line_info *li)
{
	unsigned off = li->offset;
	struct sim_line *line;
	struct af__sim_req *req;

	if (!is_zero(li, offsetof(struct gpio_v2_line_info, offset)) ||
	    !is_zero((char *)li + offsetof(struct gpio_v2_line_info, num_attrs),
		     sizeof(*li) - offsetof(struct gpio_v2_line_info, num_attrs)))
		return -EINVAL;
	if (off >= sim->num_lines)
		return -EINVAL;
	line = &sim->lines[off];
	req = line->req;
	snprintf(li->name, sizeof(li->name), "%s", line->name);
	if (!req) {
		li->flags = GPIO_V2_LINE_FLAG_INPUT;   /* gpio-sim's lines start as inputs */
		return 0;
	}
	snprintf(li->consumer, sizeof(li->consumer), "%s", req->consumer);
	li->flags = req->flags[line->idx] | GPIO_V2_LINE_FLAG_USED;
	if (!(li->flags & (GPIO_V2_LINE_FLAG_INPUT | GPIO_V2_LINE_FLAG_OUTPUT)))
		li->flags |= GPIO_V2_LINE_FLAG_INPUT;  /* "as is": still an input */
	if (req->debounce_us[line->idx]) {
		li->num_attrs = 1;
		li->attrs[0].id = GPIO_V2_LINE_ATTR_ID_DEBOUNCE;
		li->attrs[0].debounce_period_us = req->debounce_us[line->idx];
	}
	return 0;
}

static int req_validate(struct af_gpio_sim *sim, const struct gpio_v2_line_request *lr)
{
	if (!lr->num_lines || lr->num_lines > GPIO_V2_LINES_MAX ||
	    !is_zero(lr->padding, sizeof(lr->padding)))
		return -EINVAL;
	for (unsigned i = 0; i < lr->num_lines; i++)
		if (lr->offsets[i] >= sim->num_lines)
			return -EINVAL;
	for (unsigned i = 0; i < lr->num_lines; i++)
		if (sim->lines[lr->offsets[i]].req)
			return -EBUSY;
	for (unsigned i = 0; i < lr->num_lines; i++)
		for (unsigned j = 0; j < i; j++)
			if (lr->offsets[i] == lr->offsets[j])
				return -EBUSY;   /* the second one finds it taken */
	return config_validate(&lr->config, lr->num_lines);
}

/* The kfifo: event_buffer_size, 0 meaning 16 per line, capped at 16 per
 * line of a full request, rounded up to a power of two by kfifo_alloc. */
static unsigned fifo_capacity(const struct gpio_v2_line_request *lr)
{
	unsigned want = lr->event_buffer_size ? lr->event_buffer_size : lr->num_lines * 16;
	unsigned cap = 1;

	if (want > GPIO_V2_LINES_MAX * 16)
		want = GPIO_V2_LINES_MAX * 16;
	while (cap < want)
		cap <<= 1;
	return cap;
}

static int req_pipe(struct af__sim_req *req)
{
	int p[2];
	int need = (int)(req->capacity * AF_GPIO_EVENT_SIZE);

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	if (fcntl(p[1], F_GETPIPE_SZ) < need && fcntl(p[1], F_SETPIPE_SZ, need) < need) {
		close(p[0]);
		close(p[1]);
		return -ENOMEM;   /* pipe-user-pages limits: no room for the fifo */
	}
	req->rfd = p[0];
	req->wfd = p[1];
	return 0;
}

static int get_line(struct af_gpio_sim *sim, struct gpio_v2_line_request *lr,
		    struct af__sim_req **out)
{
	struct af__sim_req *req;
	int r = req_validate(sim, lr);

	if (r)
		return r;
	req = calloc(1, sizeof(*req));
	if (!req)
		return -ENOMEM;
	req->sim = sim;
	req->num_lines = lr->num_lines;
	memcpy(req->offsets, lr->offsets, sizeof(req->offsets));
	snprintf(req->consumer, sizeof(req->consumer), "%.*s",
		 (int)sizeof(lr->consumer), lr->consumer);
	req->capacity = fifo_capacity(lr);
	r = req_pipe(req);
	if (r)
		goto err_free;
	for (unsigned i = 0; i < req->num_lines; i++)
		line_apply(req, i, &lr->config);
	if (any_debounce(req) && (r = debounce_start(sim)))
		goto err_close;
	for (unsigned i = 0; i < req->num_lines; i++) {
		sim->lines[req->offsets[i]].req = req;
		sim->lines[req->offsets[i]].idx = i;
	}
	req->next = sim->reqs;
	sim->reqs = req;
	sim->refs++;
	lr->fd = req->rfd;
	*out = req;
	return 0;

err_close:
	close(req->rfd);
	close(req->wfd);
err_free:
	free(req);
	return r;
}

int af__gpio_sim_chip_ioctl(struct af_gpio_sim *sim, unsigned long cmd, void *arg,
			    struct af__sim_req **req)
{
	int r = -ENOTTY;

	pthread_mutex_lock(&sims_mu);
	if (sim->gone) {
		r = -ENODEV;
	} else if (cmd == GPIO_GET_CHIPINFO_IOCTL) {
		chip_info(sim, arg);
		r = 0;
	} else if (cmd == GPIO_V2_GET_LINEINFO_IOCTL) {
		r = line_info(sim, arg);
	} else if (cmd == GPIO_V2_GET_LINE_IOCTL && req) {
		r = get_line(sim, arg, req);
	}
	pthread_mutex_unlock(&sims_mu);
	return r;
}

/* ---- the request's ioctls ------------------------------------------------------ */

static int get_values(struct af__sim_req *req, struct gpio_v2_line_values *lv)
{
	uint64_t bits = 0;

	if (!lv->mask)
		return -EINVAL;
	for (unsigned i = 0; i < req->num_lines; i++) {
		uint64_t f = req->flags[i];
		uint8_t v;

		if (!(lv->mask >> i & 1))
			continue;
		if (f & GPIO_V2_LINE_FLAG_OUTPUT)
			v = req->out[i];
		else
			v = req->level[i] ^ !!(f & GPIO_V2_LINE_FLAG_ACTIVE_LOW);
		bits |= (uint64_t)v << i;
	}
	lv->bits = bits;
	return 0;
}

static int set_values(struct af__sim_req *req, const struct gpio_v2_line_values *lv)
{
	if (!lv->mask)
		return -EINVAL;
	for (unsigned i = 0; i < req->num_lines; i++)
		if ((lv->mask >> i & 1) && !(req->flags[i] & GPIO_V2_LINE_FLAG_OUTPUT))
			return -EPERM;
	for (unsigned i = 0; i < req->num_lines; i++)
		if (lv->mask >> i & 1)
			req->out[i] = (uint8_t)(lv->bits >> i & 1);
	return 0;
}

static int set_config(struct af__sim_req *req, const struct gpio_v2_line_config *lc)
{
	int r = config_validate(lc, req->num_lines);

	if (r)
		return r;
	for (unsigned i = 0; i < req->num_lines; i++)
		line_apply(req, i, lc);
	return any_debounce(req) ? debounce_start(req->sim) : 0;
}

int af__gpio_sim_req_ioctl(struct af__sim_req *req, unsigned long cmd, void *arg)
{
	int r = -ENOTTY;

	pthread_mutex_lock(&sims_mu);
	if (req->gone)
		r = -ENODEV;
	else if (cmd == GPIO_V2_LINE_GET_VALUES_IOCTL)
		r = get_values(req, arg);
	else if (cmd == GPIO_V2_LINE_SET_VALUES_IOCTL)
		r = set_values(req, arg);
	else if (cmd == GPIO_V2_LINE_SET_CONFIG_IOCTL)
		r = set_config(req, arg);
	pthread_mutex_unlock(&sims_mu);
	return r;
}

void af__gpio_sim_release(struct af__sim_req *req)
{
	struct af_gpio_sim *sim = req->sim;
	struct af__sim_req **pp;
	bool last;

	pthread_mutex_lock(&sims_mu);
	for (pp = &sim->reqs; *pp; pp = &(*pp)->next) {
		if (*pp == req) {
			*pp = req->next;
			break;
		}
	}
	for (unsigned i = 0; i < req->num_lines; i++)
		sim->lines[req->offsets[i]].req = NULL;
	if (req->wfd >= 0)
		close(req->wfd);
	last = unref_locked(sim);
	pthread_mutex_unlock(&sims_mu);
	free(req);
	if (last)
		sim_destroy(sim);
}

/* ---- the public calls ------------------------------------------------------------ */

static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n < AF_GPIO_NAME_MAX && !strpbrk(name, ":/");
}

static int check_names(unsigned num_lines, const char *const *line_names)
{
	for (unsigned i = 0; line_names && i < num_lines; i++) {
		if (line_names[i] && strlen(line_names[i]) >= AF_GPIO_NAME_MAX) {
			af__misuse("af_gpio_sim_new", "line name %u (\"%.40s...\") is longer than %d "
				   "characters, the kernel's limit: shorten it", i, line_names[i],
				   AF_GPIO_NAME_MAX - 1);
			return -EINVAL;
		}
	}
	return 0;
}

static struct af_gpio_sim *sim_alloc(const char *name, unsigned num_lines,
				     const char *const *line_names)
{
	struct af_gpio_sim *sim = calloc(1, sizeof(*sim) + num_lines * sizeof(sim->lines[0]));
	pthread_condattr_t ca;

	if (!sim)
		return NULL;
	snprintf(sim->name, sizeof(sim->name), "%s", name);
	snprintf(sim->chip, sizeof(sim->chip), "sim:%s", name);
	sim->num_lines = num_lines;
	sim->refs = 1;
	for (unsigned i = 0; line_names && i < num_lines; i++)
		if (line_names[i])
			snprintf(sim->lines[i].name, sizeof(sim->lines[i].name), "%s", line_names[i]);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sim->cond, &ca);
	pthread_condattr_destroy(&ca);
	return sim;
}

AF_API int af_gpio_sim_new(struct af_gpio_sim **out, const char *name, unsigned num_lines,
			   const char *const *line_names)
{
	struct af_gpio_sim *sim, **pp;
	int r;

	af_assert_return(out && name, -EINVAL);
	if (!name_ok(name)) {
		af__misuse(__func__, "chip name \"%.40s\" must be 1 to %d characters without ':' "
			   "or '/' (it is used in \"sim:NAME:OFFSET\")", name, AF_GPIO_NAME_MAX - 1);
		return -EINVAL;
	}
	if (!num_lines || num_lines > AF_GPIO_SIM_LINES_MAX) {
		af__misuse(__func__, "%u lines: a simulated chip has 1 to %u", num_lines,
			   AF_GPIO_SIM_LINES_MAX);
		return -EINVAL;
	}
	r = check_names(num_lines, line_names);
	if (r)
		return r;
	sim = sim_alloc(name, num_lines, line_names);
	if (!sim)
		return -ENOMEM;
	pthread_mutex_lock(&sims_mu);
	for (pp = &sims; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->name, name)) {
			pthread_mutex_unlock(&sims_mu);
			sim_destroy(sim);
			af__misuse(__func__, "a simulated chip named \"%s\" exists: free it or pick "
				   "another name", name);
			return -EEXIST;
		}
	}
	*pp = sim;
	pthread_mutex_unlock(&sims_mu);
	*out = sim;
	return 0;
}

AF_API void af_gpio_sim_free(struct af_gpio_sim *sim)
{
	struct af_gpio_sim **pp;
	bool last;

	if (!sim)
		return;
	pthread_mutex_lock(&sims_mu);
	for (pp = &sims; *pp; pp = &(*pp)->next) {
		if (*pp == sim) {
			*pp = sim->next;
			break;
		}
	}
	sim->gone = true;
	/* Unplugged: requests fail with -ENODEV, and readers see the end of
	 * the descriptor once they have read what was buffered. */
	for (struct af__sim_req *req = sim->reqs; req; req = req->next) {
		req->gone = true;
		if (req->wfd >= 0)
			close(req->wfd);
		req->wfd = -1;
	}
	last = unref_locked(sim);
	pthread_mutex_unlock(&sims_mu);
	if (last)
		sim_destroy(sim);
}

AF_API int af_gpio_sim_pull(struct af_gpio_sim *sim, unsigned offset, int level)
{
	struct sim_line *line;

	af_assert_return(sim, -EINVAL);
	af_assert_return(level == 0 || level == 1, -EINVAL);
	if (offset >= sim->num_lines) {
		af__misuse(__func__, "offset %u is out of range: chip %s has lines 0 to %u",
			   offset, sim->chip, sim->num_lines - 1);
		return -EINVAL;
	}
	pthread_mutex_lock(&sims_mu);
	line = &sim->lines[offset];
	line->pull = (uint8_t)level;
	/* An output keeps driving its value; an input follows the pull. */
	if (line->req && !(line->req->flags[line->idx] & GPIO_V2_LINE_FLAG_OUTPUT))
		input_changed(line->req, line->idx);
	pthread_mutex_unlock(&sims_mu);
	return 0;
}

AF_API int af_gpio_sim_level(struct af_gpio_sim *sim, unsigned offset)
{
	struct sim_line *line;
	int level;

	af_assert_return(sim, -EINVAL);
	if (offset >= sim->num_lines) {
		af__misuse(__func__, "offset %u is out of range: chip %s has lines 0 to %u",
			   offset, sim->chip, sim->num_lines - 1);
		return -EINVAL;
	}
	pthread_mutex_lock(&sims_mu);
	line = &sim->lines[offset];
	level = line->pull;
	if (line->req && (line->req->flags[line->idx] & GPIO_V2_LINE_FLAG_OUTPUT)) {
		uint64_t f = line->req->flags[line->idx];
		int driven = line->req->out[line->idx] ^ !!(f & GPIO_V2_LINE_FLAG_ACTIVE_LOW);

		/* Open drain only drives low and open source only high;
		 * otherwise the pull decides. */
		if (!((f & GPIO_V2_LINE_FLAG_OPEN_DRAIN) && driven) &&
		    !((f & GPIO_V2_LINE_FLAG_OPEN_SOURCE) && !driven))
			level = driven;
	}
	pthread_mutex_unlock(&sims_mu);
	return level;
}

AF_API const char *af_gpio_sim_chip(const struct af_gpio_sim *sim)
{
	return sim ? sim->chip : NULL;
}

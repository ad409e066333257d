/* SPDX-License-Identifier: MIT */
#ifndef ASYNCFLAG_GPIO_H
#define ASYNCFLAG_GPIO_H

#include <asyncflag/common.h>

AF_BEGIN_DECLS

/**
 * @file gpio.h
 * @brief GPIO lines of the kernel's character device (uAPI v2, Linux 5.10+)
 *        and a simulated chip for tests, with edge events as interrupts.
 *
 * A pin (struct af_pin) is one request of one or more lines of one chip,
 * the document's machine.Pin. Its edge events are read in one of two modes:
 * - coroutine mode: a task awaits the next edge with af_pin_wait_edge()
 *   (or a batch with af_pin_read_edges()); the loop reads the request's
 *   descriptor through io_uring; lowest latency, the handler is ordinary
 *   task code;
 * - interrupt mode: af_pin_irq() runs a handler on a thread of the pin's
 *   own, like a threaded interrupt handler; it typically calls
 *   af_flag_set() to wake a task. It may call anything that is safe from
 *   any thread (af_flag_set(), af_gpio_sim_pull(), af_pin_value(),
 *   af_pin_set_value()), never blocking calls of a loop.
 *
 * Lines are named as users name them (see af_pin_open()). The calls that
 * need no task (open, close, values, info, interrupt mode, the simulated
 * chip) work on any thread; a pin is not locked, so two threads must not
 * use one pin at the same time, except that its handler thread and its
 * owner may both read and set values.
 *
 * Errors common to every call: -EINVAL for a NULL pointer or an invalid
 * argument; -ENOMEM. Debug builds print what was wrong and what to do.
 */

struct af_pin;
struct af_gpio_sim;

/** @name Pin flags (af_pin_open(), af_pin_opts.flags, af_pin_opts.line_flags)
 * One direction at most: with neither AF_PIN_IN nor AF_PIN_OUT the line is
 * requested as it is (only AF_PIN_ACTIVE_LOW is then allowed). Bias flags
 * and edge flags need AF_PIN_IN (bias also AF_PIN_OUT); drive flags and
 * AF_PIN_INIT_HIGH need AF_PIN_OUT; at most one bias and one drive flag.
 * Other combinations give -EINVAL. @{ */
#define AF_PIN_IN             (1u << 0)  /**< input */
#define AF_PIN_OUT            (1u << 1)  /**< output, starts low unless AF_PIN_INIT_HIGH */
#define AF_PIN_PULL_UP        (1u << 2)  /**< bias: pull-up (an open button reads 1) */
#define AF_PIN_PULL_DOWN      (1u << 3)  /**< bias: pull-down */
#define AF_PIN_ACTIVE_LOW     (1u << 4)  /**< values and edges are inverted: low reads 1, a falling wire is a rising edge */
#define AF_PIN_OPEN_DRAIN     (1u << 5)  /**< drive: open drain (outputs) */
#define AF_PIN_INIT_HIGH      (1u << 6)  /**< outputs: initial logical value 1 */
#define AF_PIN_IRQ_RISING     (1u << 7)  /**< edge detection: logical 0 -> 1 */
#define AF_PIN_IRQ_FALLING    (1u << 8)  /**< edge detection: logical 1 -> 0 */
#define AF_PIN_OPEN_SOURCE    (1u << 9)  /**< drive: open source (outputs) */
#define AF_PIN_BIAS_DISABLE   (1u << 10) /**< bias: explicitly none */
#define AF_PIN_CLOCK_REALTIME (1u << 11) /**< event timestamps in CLOCK_REALTIME (Linux 5.11+) instead of
					      CLOCK_MONOTONIC; per line, like every flag */
/** @} */

/** Lines per request, the kernel's GPIO_V2_LINES_MAX. */
#define AF_PIN_LINES_MAX 64
/** Largest kernel event buffer per request (16 events per line of 64). */
#define AF_PIN_EVENT_BUFFER_MAX 1024
/** Size of the name, label and consumer strings below, NUL included. */
#define AF_GPIO_NAME_MAX 32

/** One edge event, translated from the kernel's struct gpio_v2_line_event. */
struct af_gpio_event {
	uint64_t timestamp_ns;  /**< the kernel's, taken in its hard interrupt handler
				     (CLOCK_MONOTONIC, or CLOCK_REALTIME with AF_PIN_CLOCK_REALTIME);
				     with debounce, when the level had been stable for the period */
	unsigned offset;        /**< line offset on its chip */
	unsigned edge;          /**< AF_PIN_IRQ_RISING or AF_PIN_IRQ_FALLING (logical, after active-low) */
	uint32_t seqno;         /**< 1, 2, ... over every line of the request */
	uint32_t line_seqno;    /**< 1, 2, ... for this line (== seqno for a one-line pin) */
	uint32_t missed;        /**< events the kernel dropped before this one (seqno gap) because
				     its buffer was full: it drops the oldest and never says so otherwise.
				     Several lines' events may come slightly out of seqno order after a
				     stall; one older than the newest seen has 0 (docs/gpio.md) */
};

/** Options of a request (af_pin_open_lines(), af_pin_reconfigure()). Zero-initialise it. */
struct af_pin_opts {
	unsigned flags;              /**< AF_PIN_* for every line without its own line_flags */
	const unsigned *line_flags;  /**< NULL, or one AF_PIN_* set per line, in request order */
	uint32_t debounce_us;        /**< 0: off; else software debounce of the input lines (values and
				          edges; outputs ignore it): an edge is reported once the level
				          was stable this long, timestamped then */
	unsigned event_buffer_size;  /**< kernel event buffer; 0: 16 per line; at most
				          AF_PIN_EVENT_BUFFER_MAX. Ignored by af_pin_reconfigure() */
	const char *consumer;        /**< the name others see holding the lines (truncated to
				          AF_GPIO_NAME_MAX - 1); NULL: the program's name */
};

/** A chip, as af_gpio_chips() and af_gpio_chip_info() describe it. */
struct af_gpio_chip_info {
	char path[64];                  /**< "/dev/gpiochip0", or "sim:NAME" for a simulated chip */
	char name[AF_GPIO_NAME_MAX];    /**< the kernel's name ("gpiochip0"), or NAME */
	char label[AF_GPIO_NAME_MAX];   /**< the driver's label ("pinctrl-rp1"; "af-gpio-sim" when simulated) */
	unsigned num_lines;
	bool simulated;
};

/** A line, as af_gpio_line_info() and af_pin_line_info() describe it. */
struct af_gpio_line_info {
	char name[AF_GPIO_NAME_MAX];     /**< "" when the line has none */
	char consumer[AF_GPIO_NAME_MAX]; /**< who holds it; "" when free */
	unsigned offset;
	unsigned flags;                  /**< AF_PIN_* as the kernel reports them (direction, bias,
					      drive, active-low, edges, clock) */
	bool used;                       /**< requested (by anyone, the kernel included) */
	uint32_t debounce_us;            /**< 0 when not debounced */
};

/**
 * @brief Request one line, the document's Pin(line, mode, pull).
 *
 * @p line names a line as users do:
 * - by its name ("GPIO17"), searched on every chip (/dev/gpiochip* in
 *   number order, then the process's simulated chips); names are the
 *   reliable key on a Raspberry Pi, whose header chip changed number across
 *   kernels;
 * - or as "CHIP:OFFSET", where CHIP is a path ("/dev/gpiochip0"), a chip
 *   name ("gpiochip0"), a number ("0") or a simulated chip ("sim:NAME"), and
 *   OFFSET a decimal line offset.
 * The request's consumer is the program's name. AF_PIN_IRQ_* in @p flags
 * turn edge detection on for af_pin_wait_edge().
 *
 * @param pin receives the pin; left untouched on failure.
 * @return 0;
 *   -EINVAL: NULL @p pin or @p line, a malformed "CHIP:OFFSET", an offset
 *            out of the chip's range, or invalid @p flags (see the flags);
 *   -ENOENT: no such chip, or no line of that name (the message names it);
 *   -EBUSY:  the line is already requested (the message names the consumer
 *            that holds it);
 *   -EACCES: no permission to open the chip (the message suggests the
 *            `gpio` group);
 *   -EOPNOTSUPP: the chip or kernel lacks a requested feature (bias on some
 *            chips, the realtime clock before 5.11);
 *   -ENOTTY: the chip's kernel predates uAPI v2 (Linux < 5.10);
 *   -ENOMEM, -EMFILE, -ENFILE: out of memory or descriptors;
 *   -ENODEV, -EIO: the chip went away or failed.
 * No descriptor is left open on failure.
 */
int af_pin_open(struct af_pin **pin, const char *line, unsigned flags);

/**
 * @brief Request up to AF_PIN_LINES_MAX lines of one chip as one pin: their
 *        values are read and set together and the events of all of them come
 *        from one descriptor, in the order the kernel detected them.
 *
 * Line i of the request is bit i of the masks of af_pin_values() and
 * af_pin_set_values() and index i of af_pin_line_info().
 *
 * @param lines @p num_lines line names or "CHIP:OFFSET" strings (as for
 *        af_pin_open()); all must be on one chip, each at most once.
 * @param opts NULL for defaults (as-is lines, no debounce).
 * @return as af_pin_open(), plus -EINVAL for @p num_lines 0 or above
 *         AF_PIN_LINES_MAX, a line given twice, line_flags or flags that
 *         need more than the kernel's 10 distinct attributes, an
 *         event_buffer_size above AF_PIN_EVENT_BUFFER_MAX, or debounce when
 *         no line is an input; -EXDEV: the lines are on different chips.
 */
int af_pin_open_lines(struct af_pin **pin, const char *const *lines, unsigned num_lines,
		      const struct af_pin_opts *opts);

/**
 * @brief Release the lines and free the pin.
 *
 * Stops interrupt mode first: a handler that is running finishes, then its
 * thread ends, so after af_pin_close() returns no handler of the pin runs.
 * Do not call it from the pin's own handler (debug builds report it; the
 * pin is then released when the handler returns). Outputs may return to
 * their default state, as the kernel documents. While a task waits on the
 * pin the call is refused and the pin stays open (debug builds say so):
 * cancel the waiter and let its wait return first. NULL is ignored.
 */
void af_pin_close(struct af_pin *pin);

/**
 * @brief Read the logical value of a one-line pin (after active-low and,
 *        on inputs with debounce, debounced). Any thread; no task needed.
 * @return 0 or 1; -EINVAL for NULL or a pin of several lines (use
 *         af_pin_values()); -ENODEV if the chip went away; -EIO.
 */
int af_pin_value(struct af_pin *pin);

/**
 * @brief Drive a one-line output pin to logical @p value (0, or 1 for any
 *        non-zero value). Any thread; no task needed.
 * @return 0; -EINVAL for NULL or a pin of several lines; -EPERM if the line
 *         is not an output; -ENODEV; -EIO.
 */
int af_pin_set_value(struct af_pin *pin, int value);

/**
 * @brief Read the logical values of every line of the pin.
 * @param values receives bit i = line i of the request.
 * @return 0; -EINVAL for NULL; -ENODEV; -EIO.
 */
int af_pin_values(struct af_pin *pin, uint64_t *values);

/**
 * @brief Set the lines of @p mask (bit i = line i) to the bits of @p values.
 * @return 0; -EINVAL for NULL, an empty @p mask or bits beyond the pin's
 *         lines; -EPERM if a line of @p mask is not an output; -ENODEV; -EIO.
 */
int af_pin_set_values(struct af_pin *pin, uint64_t mask, uint64_t values);

/**
 * @brief Change the flags and debounce of the requested lines in place,
 *        without releasing them (GPIO_V2_LINE_SET_CONFIG_IOCTL): for
 *        example turn an input into an output, or edge detection on or off.
 *        Events already buffered stay buffered. Outputs take
 *        AF_PIN_INIT_HIGH as their new value. opts->event_buffer_size and
 *        opts->consumer are ignored (the kernel fixes them at request time).
 * @return 0; -EINVAL for NULL or invalid flags (as af_pin_open_lines());
 *         -EBUSY while a task waits for an edge or the pin is in interrupt
 *         mode and the new flags turn edge detection off; -EOPNOTSUPP;
 *         -ENODEV; -EIO.
 */
int af_pin_reconfigure(struct af_pin *pin, const struct af_pin_opts *opts);

/**
 * @brief Wait for the next edge event of the pin (coroutine mode).
 *
 * The pin must have edge detection (an AF_PIN_IRQ_* flag on at least one
 * line). Events the kernel buffered are returned one per call, oldest
 * first, without a system call once a batch is read. A cancelled or
 * timed-out wait loses no event.
 *
 * @return 0;
 *   -EINVAL: NULL @p pin or @p ev, or no line of the pin has edge detection;
 *   -EPERM:  called outside a task;
 *   -ECHILD: in a child of fork() (the loop is the parent's);
 *   -EBUSY:  another task already waits on this pin, or the pin is in
 *            interrupt mode (its thread reads the events);
 *   -ECANCELED: the task was cancelled;
 *   -ENODEV: the chip went away (a simulated chip freed, a device unplugged);
 *   -EIO.
 */
int af_pin_wait_edge(struct af_pin *pin, struct af_gpio_event *ev);

/** @brief af_pin_wait_edge() giving up after @p timeout_ns (negative: forever).
 *  @return as af_pin_wait_edge(), plus -ETIMEDOUT. */
int af_pin_wait_edge_timeout(struct af_pin *pin, struct af_gpio_event *ev, int64_t timeout_ns);

/**
 * @brief Wait until at least one edge event is there, then return up to @p max
 *        of the events already buffered (coroutine mode, for busy lines).
 * @param timeout_ns negative: forever; 0: only what is already buffered
 *        (returns -ETIMEDOUT when nothing is).
 * @return the number of events stored in @p evs (>= 1); the errors of
 *         af_pin_wait_edge_timeout(), and -EINVAL for @p max 0 or above
 *         INT32_MAX.
 */
int af_pin_read_edges(struct af_pin *pin, struct af_gpio_event *evs, unsigned max,
		      int64_t timeout_ns);

/** An interrupt handler: runs on the pin's own thread, once per event. */
typedef void (*af_pin_handler)(struct af_pin *pin, const struct af_gpio_event *ev, void *arg);

/**
 * @brief Interrupt mode, the document's Pin.irq(handler, trigger): run
 *        @p handler on a thread of the pin's own for every edge of @p trigger.
 *
 * Sets the edge detection of every line of the pin to @p trigger (a
 * reconfigure, so an input pin opened without AF_PIN_IRQ_* works), then
 * starts the thread, which sleeps in the kernel until an event comes. The
 * handler is called for each event in order, never concurrently with
 * itself; events that arrive while it runs wait in the kernel's buffer, and
 * any the kernel had to drop show in the next event's @p missed. The thread
 * runs until af_pin_close(). Needs no loop and no task.
 *
 * @param trigger AF_PIN_IRQ_RISING, AF_PIN_IRQ_FALLING, or both.
 * @return 0;
 *   -EINVAL: NULL @p pin or @p handler, @p trigger 0 or with other bits;
 *   -EPERM:  a line of the pin is not an input;
 *   -EBUSY:  the pin is already in interrupt mode, or a task waits on it;
 *   -EAGAIN, -ENOMEM: the thread could not be started;
 *   -ENODEV, -EIO, -EOPNOTSUPP: from the reconfigure.
 */
int af_pin_irq(struct af_pin *pin, af_pin_handler handler, void *arg, unsigned trigger);

/** @brief Number of lines of the pin (1 for af_pin_open()), or -EINVAL for NULL. */
int af_pin_num_lines(const struct af_pin *pin);

/**
 * @brief Describe line @p index of the pin (its name, offset, flags) as the
 *        kernel reports it now.
 * @return 0; -EINVAL for NULL or @p index out of range; -ENODEV; -EIO.
 */
int af_pin_line_info(struct af_pin *pin, unsigned index, struct af_gpio_line_info *info);

/**
 * @brief The name of line @p index of the pin, as known when it was
 *        requested ("" when the line has none); NULL for a NULL pin or an
 *        index out of range. Valid until af_pin_close().
 */
const char *af_pin_line_name(const struct af_pin *pin, unsigned index);

/**
 * @brief List the GPIO chips: /dev/gpiochip* in number order, then the
 *        process's simulated chips in creation order.
 * @param chips room for @p max entries (may be NULL when @p max is 0).
 * @return the number of chips there are (which may exceed @p max: only
 *         the first @p max are stored, as snprintf() does); -EINVAL for
 *         NULL @p chips with a non-zero @p max. Chips that cannot be opened
 *         (permissions) are listed with what sysfs does not need: their path
 *         and name, label "" and num_lines 0.
 */
int af_gpio_chips(struct af_gpio_chip_info *chips, unsigned max);

/**
 * @brief Describe one chip.
 * @param chip as CHIP in af_pin_open(): a path, a name, a number or "sim:NAME".
 * @return 0; -EINVAL for NULL; -ENOENT: no such chip; -EACCES (the message
 *         suggests the `gpio` group); -ENOTTY: not a GPIO chip; -ENODEV; -EIO.
 */
int af_gpio_chip_info(const char *chip, struct af_gpio_chip_info *info);

/**
 * @brief Describe line @p offset of @p chip: its name, whether it is used
 *        and by whom, direction and other flags (a gpioinfo view).
 * @return as af_gpio_chip_info(), plus -EINVAL for an offset out of range.
 */
int af_gpio_line_info(const char *chip, unsigned offset, struct af_gpio_line_info *info);

/**
 * @brief Find a line by name or "CHIP:OFFSET", as af_pin_open() does.
 * @param chip receives its chip (may be NULL).
 * @param info receives the line (may be NULL).
 * @return 0; -EINVAL for a NULL @p line, a malformed "CHIP:OFFSET" or an
 *         offset out of range; -ENOENT: no such chip or line; -EACCES.
 */
int af_gpio_find_line(const char *line, struct af_gpio_chip_info *chip,
		      struct af_gpio_line_info *info);

/**
 * @brief Create a simulated chip, the kernel's gpio-sim in the process.
 *
 * Its lines are found by name by af_pin_open() and as "sim:NAME:OFFSET".
 * It behaves as gpio-sim: every line starts pulled down (reads 0); a
 * request's bias sets the pull (AF_PIN_PULL_UP reads 1); af_gpio_sim_pull()
 * overrides it as writing sysfs `pull` does; an output's level is what it
 * drives. Edge events reach the pin through a real descriptor in the
 * kernel's exact record format and are read by the same io_uring path as a
 * real chip's, with edge selection, active-low, debounce, the event buffer
 * with oldest-drop, seqno numbering, and -EBUSY for a line requested twice.
 *
 * @param name 1 to AF_GPIO_NAME_MAX - 1 characters, no ':' or '/'.
 * @param num_lines 1 to 1024.
 * @param line_names NULL, or @p num_lines names (NULL or "" for a line
 *        without one), each shorter than AF_GPIO_NAME_MAX.
 * @return 0; -EINVAL for NULL @p sim or @p name, a bad name, @p num_lines
 *         or line name; -EEXIST: a simulated chip of that name exists;
 *         -ENOMEM.
 */
int af_gpio_sim_new(struct af_gpio_sim **sim, const char *name, unsigned num_lines,
		    const char *const *line_names);

/**
 * @brief Pull line @p offset to physical @p level (0 or 1), as writing
 *        `pull-down` / `pull-up` to gpio-sim's sysfs `pull` does: an input
 *        line follows it (an edge event if it changes and the pin detects
 *        that edge); an output keeps driving its value. Any thread.
 * @return 0; -EINVAL for NULL, @p offset out of range or @p level not 0/1.
 */
int af_gpio_sim_pull(struct af_gpio_sim *sim, unsigned offset, int level);

/**
 * @brief The physical level line @p offset is at now (what gpio-sim's sysfs
 *        `value` reads): an output's driven level, else its pull. Any thread.
 * @return 0 or 1; -EINVAL for NULL or @p offset out of range.
 */
int af_gpio_sim_level(struct af_gpio_sim *sim, unsigned offset);

/** @brief The chip's name for "CHIP:OFFSET" strings: "sim:NAME". NULL for NULL. */
const char *af_gpio_sim_chip(const struct af_gpio_sim *sim);

/**
 * @brief Remove the simulated chip, as unplugging a device: pins still open on
 *        it get -ENODEV from every call and their edge waits end with
 *        -ENODEV; they must still be closed. NULL is ignored.
 */
void af_gpio_sim_free(struct af_gpio_sim *sim);

AF_END_DECLS

#endif

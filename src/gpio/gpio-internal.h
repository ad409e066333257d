/* SPDX-License-Identifier: MIT */
/* Private to src/gpio/: the pin, the chip handle and the simulated chip's
 * kernel-facing side. The simulated chip answers the same uAPI v2 ioctls
 * with the same structs as the kernel, so everything above it runs one
 * code path for both. */
#ifndef AF_GPIO_INTERNAL_H
#define AF_GPIO_INTERNAL_H

#include <linux/gpio.h>
#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"

#define AF_GPIO_EVENT_SIZE ((unsigned)sizeof(struct gpio_v2_line_event))
_Static_assert(sizeof(struct gpio_v2_line_event) == 48, "the uAPI's event record");
_Static_assert(AF_PIN_LINES_MAX == GPIO_V2_LINES_MAX, "one request, as many lines as the kernel's");
_Static_assert(AF_GPIO_NAME_MAX == GPIO_MAX_NAME_SIZE, "names as long as the kernel's");

/* Most a simulated chip may have (gpio-sim itself has no hard limit). */
#define AF_GPIO_SIM_LINES_MAX 1024u

/* ---- the simulated chip (sim.c) ------------------------------------------- */

struct af__sim_req;

/* Find a simulated chip by NAME and take a reference (NULL: none). */
struct af_gpio_sim *af__gpio_sim_get(const char *name);
void af__gpio_sim_put(struct af_gpio_sim *sim);
/* The @index-th live simulated chip, referenced, or NULL past the end. */
struct af_gpio_sim *af__gpio_sim_nth(unsigned index);
/* What the kernel answers on a chip fd: GPIO_GET_CHIPINFO_IOCTL,
 * GPIO_V2_GET_LINEINFO_IOCTL and GPIO_V2_GET_LINE_IOCTL (which returns
 * the request in *req, its fd in the uAPI struct). 0 or -errno. */
int af__gpio_sim_chip_ioctl(struct af_gpio_sim *sim, unsigned long cmd, void *arg,
			    struct af__sim_req **req);
/* What the kernel answers on a request fd: GET_VALUES, SET_VALUES,
 * SET_CONFIG. 0 or -errno (-ENODEV once the chip is freed). */
int af__gpio_sim_req_ioctl(struct af__sim_req *req, unsigned long cmd, void *arg);
/* Release the lines; the caller then closes the request fd. */
void af__gpio_sim_release(struct af__sim_req *req);

/* ---- chips (chip.c) ------------------------------------------------------- */

/* An open chip: a /dev/gpiochip descriptor or a referenced simulated chip. */
struct af__chip {
	int fd;
	struct af_gpio_sim *sim;
	struct af_gpio_chip_info info;
};

/* Open a chip named as CHIP in "CHIP:OFFSET". 0 or -errno, with a message. */
int af__chip_open(const char *who, const char *spec, struct af__chip *chip);
void af__chip_close(struct af__chip *chip);
int af__chip_ioctl(struct af__chip *chip, unsigned long cmd, void *arg,
		   struct af__sim_req **req);
/* Line @offset's kernel description. */
int af__chip_line(struct af__chip *chip, unsigned offset, struct gpio_v2_line_info *li);
/* Resolve a line name or "CHIP:OFFSET": opens its chip into @chip. */
int af__line_find(const char *who, const char *line, struct af__chip *chip, unsigned *offset);
/* Translate the kernel's line description into the public one. */
void af__line_info_from_kernel(const struct gpio_v2_line_info *li, struct af_gpio_line_info *out);

/* ---- pins (request.c, irq.c) ---------------------------------------------- */

#define AF_PIN_RAW_BATCH 64   /* records per read(2) */

struct af_pin {
	int fd;                       /* the request's (non-blocking) */
	struct af__sim_req *sim_req;  /* when on a simulated chip */
	unsigned num_lines;
	unsigned offsets[AF_PIN_LINES_MAX];
	unsigned flags[AF_PIN_LINES_MAX];   /* AF_PIN_* as last configured */
	uint32_t debounce_us;
	char names[AF_PIN_LINES_MAX][AF_GPIO_NAME_MAX];
	char chip_path[64];

	/* Events read but not yet handed out, and the last seqno seen, so
	 * the next event can tell how many the kernel dropped. Touched only
	 * by the one reader of the moment: the waiting task, or the
	 * interrupt thread (af_pin_wait_edge refuses while it runs). */
	struct gpio_v2_line_event raw[AF_PIN_RAW_BATCH];
	unsigned raw_head, raw_len;
	uint32_t last_seqno;
	bool waiting;                 /* a task is in af_pin_wait_edge */

	/* Interrupt mode (irq.c). */
	bool irq_on;
	pthread_t irq_thread;
	int irq_stop_fd;              /* eventfd the closer writes */
	_Atomic bool irq_stop;
	_Atomic bool irq_close_in_handler;
	af_pin_handler handler;
	void *handler_arg;
};

int af__pin_ioctl(struct af_pin *pin, unsigned long cmd, void *arg);
/* Next event: from the batch already read, else one non-blocking read(2).
 * 1: *ev filled; 0: nothing there now; -ENODEV: the chip is gone; -errno. */
int af__pin_next(struct af_pin *pin, struct af_gpio_event *ev);
/* Set the edge flags of every line (interrupt mode). */
int af__pin_set_edges(struct af_pin *pin, unsigned edges);
/* Release the lines and free the pin (the handler thread is gone). */
void af__pin_free(struct af_pin *pin);
/* Stop interrupt mode: false when called from the handler itself, which
 * then frees the pin when it returns. */
bool af__pin_irq_stop(struct af_pin *pin);

#endif

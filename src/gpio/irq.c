/* SPDX-License-Identifier: MIT */
/*
 * Interrupt mode: one thread per pin runs the user's handler for each edge,
 * as a threaded interrupt handler runs in its irq/N thread. It sleeps in
 * poll(2) on the request fd and an eventfd the closer writes, so it costs
 * nothing between edges and stops without a signal.
 */
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "gpio-internal.h"

/* 1: keep going; 0: stop (asked to, or the chip is gone). */
static int irq_wait(struct af_pin *pin)
{
	struct pollfd fds[2] = {
		{ .fd = pin->fd, .events = POLLIN },
		{ .fd = pin->irq_stop_fd, .events = POLLIN },
	};

	for (;;) {
		int n = poll(fds, 2, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 || fds[1].revents)
			return 0;
		return 1;   /* readable, or hung up: the read says which */
	}
}

static void *irq_thread(void *arg)
{
	struct af_pin *pin = arg;
	struct af_gpio_event ev;

	/* Acquire pairs with the closer's release store: once the thread
	 * sees the stop it also sees everything the closer wrote before it
	 * (on aarch64 a plain load could be reordered before the poll's
	 * result is acted on). */
	while (!atomic_load_explicit(&pin->irq_stop, memory_order_acquire)) {
		int r = af__pin_next(pin, &ev);

		if (r < 0)
			break;    /* the chip went away: nothing more will come */
		if (r == 0) {
			if (!irq_wait(pin))
				break;
			continue;
		}
		pin->handler(pin, &ev, pin->handler_arg);
		/* Relaxed is enough: only this thread writes the flag
		 * (af_pin_close() from inside the handler). */
		if (atomic_load_explicit(&pin->irq_close_in_handler, memory_order_relaxed)) {
			pthread_detach(pthread_self());
			close(pin->irq_stop_fd);
			af__pin_free(pin);
			return NULL;
		}
	}
	return NULL;
}

AF_API int af_pin_irq(struct af_pin *pin, af_pin_handler handler, void *arg, unsigned trigger)
{
	const unsigned edges = AF_PIN_IRQ_RISING | AF_PIN_IRQ_FALLING;
	int r;

	af_assert_return(pin && handler, -EINVAL);
	if (!trigger || (trigger & ~edges)) {
		af__misuse(__func__, "trigger 0x%x: give AF_PIN_IRQ_RISING, AF_PIN_IRQ_FALLING "
			   "or both", trigger);
		return -EINVAL;
	}
	if (pin->irq_on || pin->waiting) {
		af__misuse(__func__, "%s", pin->irq_on ? "the pin is already in interrupt mode"
			   : "a task waits for an edge of this pin: its events go there");
		return -EBUSY;
	}
	r = af__pin_set_edges(pin, trigger);
	if (r)
		return r;
	pin->irq_stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (pin->irq_stop_fd < 0)
		return -errno;
	pin->handler = handler;
	pin->handler_arg = arg;
	atomic_store_explicit(&pin->irq_stop, false, memory_order_relaxed);
	atomic_store_explicit(&pin->irq_close_in_handler, false, memory_order_relaxed);
	/* pthread_create orders everything above before the thread starts. */
	r = pthread_create(&pin->irq_thread, NULL, irq_thread, pin);
	if (r) {
		close(pin->irq_stop_fd);
		pin->irq_stop_fd = -1;
		return -r;
	}
	pin->irq_on = true;
	return 0;
}

bool af__pin_irq_stop(struct af_pin *pin)
{
	uint64_t one = 1;

	if (pthread_equal(pthread_self(), pin->irq_thread)) {
		af__misuse("af_pin_close", "called from the pin's own handler: the pin is "
			   "released when the handler returns");
		atomic_store_explicit(&pin->irq_close_in_handler, true, memory_order_relaxed);
		return false;
	}
	/* Release: the thread's acquire load of the stop then sees our
	 * writes; the eventfd wakes it if it sleeps in poll(2). */
	atomic_store_explicit(&pin->irq_stop, true, memory_order_release);
	if (write(pin->irq_stop_fd, &one, sizeof(one)) < 0)
		(void)0;  /* the counter cannot overflow from one write */
	/* A running handler finishes first: join waits for it. */
	pthread_join(pin->irq_thread, NULL);
	close(pin->irq_stop_fd);
	pin->irq_stop_fd = -1;
	pin->irq_on = false;
	return true;
}

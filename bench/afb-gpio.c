/* SPDX-License-Identifier: MIT */
/*
 * asyncflag-bench: GPIO edge -> task. Needs the library's GPIO API
 * (include/asyncflag/gpio.h, issue 6); until this build has it, the
 * scenario says so instead of running.
 */
#include <stdio.h>

#include "afb.h"

int afb_run_gpio(struct afb_result *r, const struct afb_opts *o)
{
	(void)o;
	snprintf(r->skipped, sizeof(r->skipped),
		 "not available: this libasyncflag has no GPIO API yet (issue 6)");
	return 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * Chips and lines: opening a chip named the ways users name it, finding a
 * line by name across every chip, and the chip and line listings.
 *
 * Real chips are /dev/gpiochipN; symlinks to them (Raspberry Pi OS links
 * gpiochip4 to the Pi 5's header chip) are skipped in listings and name
 * searches so no chip shows twice, but can be opened by path or number.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpio-internal.h"

#define SIM_PREFIX "sim:"
#define DEV_CHIPS_MAX 256

/* ---- opening ------------------------------------------------------------------ */

static int open_error(const char *who, const char *path, int err)
{
	if (err == ENOENT || err == ENODEV || err == ENXIO) {
		af__misuse(who, "no GPIO chip %s: list them with af_gpio_chips() "
			   "(or gpiodetect)", path);
		return -ENOENT;
	}
	if (err == EACCES || err == EPERM) {
		af__misuse(who, "no permission to open %s: add the user to the group that "
			   "owns it (`gpio` on Raspberry Pi OS: sudo usermod -aG gpio $USER, "
			   "then log in again)", path);
		return -EACCES;
	}
	return -err;
}

static int chip_open_path(const char *who, const char *path, struct af__chip *chip)
{
	struct gpiochip_info ci;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return open_error(who, path, errno);
	memset(&ci, 0, sizeof(ci));
	if (ioctl(fd, GPIO_GET_CHIPINFO_IOCTL, &ci) < 0) {
		int err = errno;

		close(fd);
		if (err == ENOTTY || err == EINVAL) {
			af__misuse(who, "%s is not a GPIO chip", path);
			return -ENOTTY;
		}
		return -err;
	}
	chip->fd = fd;
	chip->sim = NULL;
	snprintf(chip->info.path, sizeof(chip->info.path), "%s", path);
	snprintf(chip->info.name, sizeof(chip->info.name), "%.*s", (int)sizeof(ci.name), ci.name);
	snprintf(chip->info.label, sizeof(chip->info.label), "%.*s", (int)sizeof(ci.label), ci.label);
	chip->info.num_lines = ci.lines;
	chip->info.simulated = false;
	return 0;
}

static void chip_from_sim(struct af_gpio_sim *sim, struct af__chip *chip)
{
	struct gpiochip_info ci;

	chip->fd = -1;
	chip->sim = sim;
	memset(&ci, 0, sizeof(ci));
	af__gpio_sim_chip_ioctl(sim, GPIO_GET_CHIPINFO_IOCTL, &ci, NULL);
	snprintf(chip->info.path, sizeof(chip->info.path), "%s", af_gpio_sim_chip(sim));
	snprintf(chip->info.name, sizeof(chip->info.name), "%.*s", (int)sizeof(ci.name), ci.name);
	snprintf(chip->info.label, sizeof(chip->info.label), "%.*s", (int)sizeof(ci.label), ci.label);
	chip->info.num_lines = ci.lines;
	chip->info.simulated = true;
}

static int chip_open_sim(const char *who, const char *name, struct af__chip *chip)
{
	struct af_gpio_sim *sim = af__gpio_sim_get(name);

	if (!sim) {
		af__misuse(who, "no simulated chip \"%s\": create it with af_gpio_sim_new() first",
			   name);
		return -ENOENT;
	}
	chip_from_sim(sim, chip);
	return 0;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

int af__chip_open(const char *who, const char *spec, struct af__chip *chip)
{
	char path[64];
	struct stat st;

	memset(chip, 0, sizeof(*chip));
	chip->fd = -1;
	if (!*spec) {
		af__misuse(who, "an empty chip name: give a path, a name, a number or sim:NAME");
		return -EINVAL;
	}
	if (!strncmp(spec, SIM_PREFIX, strlen(SIM_PREFIX)))
		return chip_open_sim(who, spec + strlen(SIM_PREFIX), chip);
	if (spec[0] == '/')
		return chip_open_path(who, spec, chip);
	if (strlen(spec) > 20 || strchr(spec, '/')) {
		af__misuse(who, "no GPIO chip \"%.40s\"", spec);
		return -ENOENT;
	}
	if (all_digits(spec))
		snprintf(path, sizeof(path), "/dev/gpiochip%s", spec);
	else
		snprintf(path, sizeof(path), "/dev/%s", spec);
	/* A plain name may also be a simulated chip's. */
	if (!all_digits(spec) && stat(path, &st) < 0) {
		struct af_gpio_sim *sim = af__gpio_sim_get(spec);

		if (sim) {
			chip_from_sim(sim, chip);
			return 0;
		}
	}
	return chip_open_path(who, path, chip);
}

void af__chip_close(struct af__chip *chip)
{
	if (chip->fd >= 0)
		close(chip->fd);
	if (chip->sim)
		af__gpio_sim_put(chip->sim);
	chip->fd = -1;
	chip->sim = NULL;
}

int af__chip_ioctl(struct af__chip *chip, unsigned long cmd, void *arg, struct af__sim_req **req)
{
	if (chip->sim)
		return af__gpio_sim_chip_ioctl(chip->sim, cmd, arg, req);
	return ioctl(chip->fd, cmd, arg) < 0 ? -errno : 0;
}

int af__chip_line(struct af__chip *chip, unsigned offset, struct gpio_v2_line_info *li)
{
	memset(li, 0, sizeof(*li));
	li->offset = offset;
	return af__chip_ioctl(chip, GPIO_V2_GET_LINEINFO_IOCTL, li, NULL);
}

/* ---- the /dev chips, in number order --------------------------------------------- */

static int cmp_unsigned(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;

	return x < y ? -1 : x > y;
}

/* Numbers of the /dev/gpiochipN character devices that are not symlinks. */
static unsigned dev_chips(unsigned *nums, unsigned max)
{
	DIR *d = opendir("/dev");
	struct dirent *e;
	unsigned n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)) && n < max) {
		const char *num = e->d_name + strlen("gpiochip");

		if (strncmp(e->d_name, "gpiochip", strlen("gpiochip")) || !all_digits(num) ||
		    strlen(num) > 6 || e->d_type == DT_LNK)
			continue;
		nums[n++] = (unsigned)strtoul(num, NULL, 10);
	}
	closedir(d);
	qsort(nums, n, sizeof(nums[0]), cmp_unsigned);
	return n;
}

/* ---- finding a line ---------------------------------------------------------------- */

static bool chip_has_name(struct af__chip *chip, const char *name, unsigned *offset)
{
	struct gpio_v2_line_info li;

	for (unsigned off = 0; off < chip->info.num_lines; off++) {
		if (af__chip_line(chip, off, &li))
			continue;
		if (!strncmp(li.name, name, sizeof(li.name))) {
			*offset = off;
			return true;
		}
	}
	return false;
}

static int find_by_name(const char *who, const char *name, struct af__chip *chip,
			unsigned *offset)
{
	unsigned nums[DEV_CHIPS_MAX], n = dev_chips(nums, DEV_CHIPS_MAX);
	struct af_gpio_sim *sim;
	bool denied = false;
	char path[64];

	for (unsigned i = 0; i < n; i++) {
		int fd;

		snprintf(path, sizeof(path), "/dev/gpiochip%u", nums[i]);
		/* Probe quietly: only the final verdict is reported. */
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			denied |= errno == EACCES || errno == EPERM;
			continue;
		}
		close(fd);
		if (chip_open_path(who, path, chip))
			continue;
		if (chip_has_name(chip, name, offset))
			return 0;
		af__chip_close(chip);
	}
	for (unsigned i = 0; (sim = af__gpio_sim_nth(i)); i++) {
		chip_from_sim(sim, chip);
		if (chip_has_name(chip, name, offset))
			return 0;
		af__chip_close(chip);
	}
	if (denied) {
		af__misuse(who, "no line named \"%s\" on the chips this user may open; some "
			   "/dev/gpiochip* are not readable: add the user to their group (`gpio` "
			   "on Raspberry Pi OS)", name);
		return -EACCES;
	}
	af__misuse(who, "no line named \"%s\" on any chip (%u in /dev, plus the simulated "
		   "ones): check the name with af_gpio_line_info() or gpioinfo, or use "
		   "CHIP:OFFSET", name, n);
	return -ENOENT;
}

static int parse_offset(const char *s, unsigned *offset)
{
	unsigned long v;

	if (!all_digits(s) || strlen(s) > 9)
		return -EINVAL;
	v = strtoul(s, NULL, 10);
	*offset = (unsigned)v;
	return 0;
}

int af__line_find(const char *who, const char *line, struct af__chip *chip, unsigned *offset)
{
	const char *colon = strrchr(line, ':');
	char spec[128];
	int r;

	memset(chip, 0, sizeof(*chip));
	chip->fd = -1;
	if (!*line) {
		af__misuse(who, "an empty line name: give a name (\"GPIO17\") or CHIP:OFFSET");
		return -EINVAL;
	}
	if (!colon)
		return find_by_name(who, line, chip, offset);
	if ((size_t)(colon - line) >= sizeof(spec) || colon == line ||
	    parse_offset(colon + 1, offset)) {
		af__misuse(who, "\"%.60s\" is not CHIP:OFFSET (CHIP a path, name, number or "
			   "sim:NAME; OFFSET a decimal number)", line);
		return -EINVAL;
	}
	snprintf(spec, sizeof(spec), "%.*s", (int)(colon - line), line);
	r = af__chip_open(who, spec, chip);
	if (r)
		return r;
	if (*offset >= chip->info.num_lines) {
		af__misuse(who, "offset %u is out of range: %s has lines 0 to %u", *offset,
			   chip->info.path, chip->info.num_lines - 1);
		af__chip_close(chip);
		return -EINVAL;
	}
	return 0;
}

/* ---- descriptions --------------------------------------------------------------------- */

void af__line_info_from_kernel(const struct gpio_v2_line_info *li, struct af_gpio_line_info *out)
{
	static const struct { uint64_t k; unsigned af; } map[] = {
		{ GPIO_V2_LINE_FLAG_INPUT, AF_PIN_IN },
		{ GPIO_V2_LINE_FLAG_OUTPUT, AF_PIN_OUT },
		{ GPIO_V2_LINE_FLAG_ACTIVE_LOW, AF_PIN_ACTIVE_LOW },
		{ GPIO_V2_LINE_FLAG_EDGE_RISING, AF_PIN_IRQ_RISING },
		{ GPIO_V2_LINE_FLAG_EDGE_FALLING, AF_PIN_IRQ_FALLING },
		{ GPIO_V2_LINE_FLAG_OPEN_DRAIN, AF_PIN_OPEN_DRAIN },
		{ GPIO_V2_LINE_FLAG_OPEN_SOURCE, AF_PIN_OPEN_SOURCE },
		{ GPIO_V2_LINE_FLAG_BIAS_PULL_UP, AF_PIN_PULL_UP },
		{ GPIO_V2_LINE_FLAG_BIAS_PULL_DOWN, AF_PIN_PULL_DOWN },
		{ GPIO_V2_LINE_FLAG_BIAS_DISABLED, AF_PIN_BIAS_DISABLE },
		{ GPIO_V2_LINE_FLAG_EVENT_CLOCK_REALTIME, AF_PIN_CLOCK_REALTIME },
	};

	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%.*s", (int)sizeof(li->name), li->name);
	snprintf(out->consumer, sizeof(out->consumer), "%.*s", (int)sizeof(li->consumer),
		 li->consumer);
	out->offset = li->offset;
	out->used = li->flags & GPIO_V2_LINE_FLAG_USED;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (li->flags & map[i].k)
			out->flags |= map[i].af;
	for (unsigned a = 0; a < li->num_attrs && a < GPIO_V2_LINE_NUM_ATTRS_MAX; a++)
		if (li->attrs[a].id == GPIO_V2_LINE_ATTR_ID_DEBOUNCE)
			out->debounce_us = li->attrs[a].debounce_period_us;
}

AF_API int af_gpio_chips(struct af_gpio_chip_info *chips, unsigned max)
{
	unsigned nums[DEV_CHIPS_MAX], n, count = 0;
	struct af_gpio_sim *sim;
	struct af__chip chip;

	af_assert_return(chips || !max, -EINVAL);
	n = dev_chips(nums, DEV_CHIPS_MAX);
	for (unsigned i = 0; i < n; i++, count++) {
		char path[64];
		int fd;

		if (count >= max)
			continue;
		snprintf(path, sizeof(path), "/dev/gpiochip%u", nums[i]);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd >= 0)
			close(fd);
		if (fd >= 0 && chip_open_path(__func__, path, &chip) == 0) {
			chips[count] = chip.info;
			af__chip_close(&chip);
			continue;
		}
		memset(&chips[count], 0, sizeof(chips[count]));
		snprintf(chips[count].path, sizeof(chips[count].path), "%s", path);
		snprintf(chips[count].name, sizeof(chips[count].name), "gpiochip%u", nums[i]);
	}
	for (unsigned i = 0; (sim = af__gpio_sim_nth(i)); i++, count++) {
		chip_from_sim(sim, &chip);
		if (count < max)
			chips[count] = chip.info;
		af__chip_close(&chip);
	}
	return (int)count;
}

AF_API int af_gpio_chip_info(const char *spec, struct af_gpio_chip_info *info)
{
	struct af__chip chip;
	int r;

	af_assert_return(spec && info, -EINVAL);
	r = af__chip_open(__func__, spec, &chip);
	if (r)
		return r;
	*info = chip.info;
	af__chip_close(&chip);
	return 0;
}

AF_API int af_gpio_line_info(const char *spec, unsigned offset, struct af_gpio_line_info *info)
{
	struct gpio_v2_line_info li;
	struct af__chip chip;
	int r;

	af_assert_return(spec && info, -EINVAL);
	r = af__chip_open(__func__, spec, &chip);
	if (r)
		return r;
	if (offset >= chip.info.num_lines) {
		af__misuse(__func__, "offset %u is out of range: %s has lines 0 to %u", offset,
			   chip.info.path, chip.info.num_lines - 1);
		r = -EINVAL;
		goto out_close;
	}
	r = af__chip_line(&chip, offset, &li);
	if (r == 0)
		af__line_info_from_kernel(&li, info);
out_close:
	af__chip_close(&chip);
	return r;
}

AF_API int af_gpio_find_line(const char *line, struct af_gpio_chip_info *chip_info,
			     struct af_gpio_line_info *info)
{
	struct gpio_v2_line_info li;
	struct af__chip chip;
	unsigned offset;
	int r;

	af_assert_return(line, -EINVAL);
	r = af__line_find(__func__, line, &chip, &offset);
	if (r)
		return r;
	if (info) {
		r = af__chip_line(&chip, offset, &li);
		if (r)
			goto out_close;
		af__line_info_from_kernel(&li, info);
	}
	if (chip_info)
		*chip_info = chip.info;
out_close:
	af__chip_close(&chip);
	return r;
}

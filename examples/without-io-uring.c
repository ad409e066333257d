/* SPDX-License-Identifier: MIT */
/*
 * without-io-uring: not an example, a test helper. Runs a command with
 * io_uring_setup(2) failing with EPERM, as it does under a container's
 * default seccomp profile or kernel.io_uring_disabled=2, so the tests can
 * check what each example says when it cannot create its loop.
 *
 * usage: without-io-uring COMMAND [ARG...]
 * Exits 125 if it cannot set up the filter (so the test fails instead of
 * passing for the wrong reason), 127 if COMMAND cannot be run.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = sizeof(filter) / sizeof(filter[0]),
		.filter = filter,
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s COMMAND [ARG...]\n", argv[0]);
		return 125;
	}
	/* Unprivileged processes may install a filter once they promise
	 * never to gain privileges (no set-uid exec). The filter matches the
	 * syscall number only: the examples run on the build machine's own
	 * architecture. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		perror("without-io-uring: PR_SET_NO_NEW_PRIVS");
		return 125;
	}
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
		perror("without-io-uring: PR_SET_SECCOMP");
		return 125;
	}
	execvp(argv[1], argv + 1);
	perror("without-io-uring: exec");
	return 127;
}

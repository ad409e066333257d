/* SPDX-License-Identifier: MIT */
/*
 * without-io-uring: not an example, a test helper. Runs a command with
 * io_uring blocked exactly as Docker's default seccomp profile blocks it
 * (since Docker 25): io_uring_setup(2), io_uring_enter(2) and
 * io_uring_register(2) fail with EPERM. The tests run every example under
 * it and expect the same output as without it: the loop falls back to
 * epoll by itself.
 *
 * usage: without-io-uring COMMAND [ARG...]
 * Exits 125 if it cannot set up the filter (so the test fails instead of
 * passing for the wrong reason), 127 if COMMAND cannot be run.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__arm__) && defined(__ARMEL__)
#define THIS_AUDIT_ARCH AUDIT_ARCH_ARM
#else
#error "without-io-uring: add this machine's AUDIT_ARCH_*"
#endif

#define REFUSE(nr)                                                             \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),                       \
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)

int main(int argc, char **argv)
{
	struct sock_filter filter[] = {
		/* A system call of another ABI (x32, a 32-bit binary) has
		 * other numbers: let it through untouched. */
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_AUDIT_ARCH, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		REFUSE(__NR_io_uring_setup),
		REFUSE(__NR_io_uring_enter),
		REFUSE(__NR_io_uring_register),
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
	 * never to gain privileges (no set-uid exec). */
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

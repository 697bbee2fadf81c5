// The container of the kernel-floor benchmarks (packages/kubelet-agent/src/bench/kernel-floor.c,
// packages/runtime-shim/src/bench/oneshot-floor.c): what the cloned child does once its parent
// has put it in its cgroups — a private bind of the rootfs with proc in it, pivot_root, execve of
// /bin/true. Nothing else a container needs (no /dev, masked paths, capabilities, seccomp).
#ifndef BERTH_FLOOR_CONTAINER_H
#define BERTH_FLOOR_CONTAINER_H
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

/** The busybox rootfs the child runs /bin/true from. */
static const char *floor_root;

/** The clone()d child: waits for a byte on the fd that arg points to, then sets up and execs. */
static int floor_child(void *arg) {
  int fd = *(int *)arg;
  char go;
  if (read(fd, &go, 1) != 1) _exit(9); // placed in its cgroups first
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) _exit(10);
  if (mount(floor_root, floor_root, NULL, MS_BIND | MS_REC, NULL)) _exit(11);
  char p[512];
  snprintf(p, sizeof p, "%s/proc", floor_root);
  if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) _exit(12);
  if (chdir(floor_root)) _exit(13);
  if (syscall(SYS_pivot_root, ".", ".")) _exit(14);
  if (umount2(".", MNT_DETACH)) _exit(15);
  char *argv[] = {"/bin/true", NULL}, *envp[] = {NULL};
  execve("/bin/true", argv, envp);
  _exit(16);
}

/** Writes s to an existing file (a cgroup's cgroup.procs): 0, or -1 with errno. */
static int floor_writefile(const char *path, const char *s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = write(fd, s, strlen(s)) == (ssize_t)strlen(s) ? 0 : -1;
  close(fd);
  return r;
}
#endif

// The kernel's floor under one `run` of a container by a one-shot runtime process (`npm run bench
// -- runtime` times it beside crun and berth-runtime): what any runtime CLI must have the kernel
// do, with none of a runtime's own work. One container: a cgroup made in each v1 hierarchy given,
// a clone into new mount, pid, ipc, uts and net namespaces, the child attached to the cgroups
// (cgroup.procs), then in the child a private bind of the rootfs, proc, pivot_root and execve of
// /bin/true; the parent waits and removes the cgroups. No /dev, no masked or read-only paths, no
// capabilities, no seccomp, no config parsing, no state files: less than a container needs, so a
// lower bound. Prints the phases in ms as one JSON line.
//
// usage: oneshot-floor ROOTFS PARENT-CGROUP-DIR...   (the cgroup dirs must exist; under each,
// a child named after this pid is made and removed)
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../../../bench/floor/floor-container.h"

#define MAX_CG 16


static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc - 2 > MAX_CG) {
    fprintf(stderr, "usage: oneshot-floor ROOTFS PARENT-CGROUP-DIR... (at most %d)\n", MAX_CG);
    return 2;
  }
  floor_root = argv[1];
  int ncg = argc - 2;
  static char stack[1 << 16];
  char dirs[MAX_CG][512], f[600], s[32];
  double t0 = now_ms();
  for (int c = 0; c < ncg; c++) {
    snprintf(dirs[c], sizeof dirs[c], "%s/floor-%d", argv[c + 2], (int)getpid());
    if (mkdir(dirs[c], 0755)) { perror(dirs[c]); return 1; }
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC)) return 1;
  double t1 = now_ms();
  pid_t pid = clone(floor_child, stack + sizeof stack, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | SIGCHLD, &fds[0]);
  if (pid < 0) { perror("clone"); return 1; }
  double t2 = now_ms();
  snprintf(s, sizeof s, "%d", pid);
  int failed = 0;
  for (int c = 0; c < ncg && !failed; c++) {
    snprintf(f, sizeof f, "%s/cgroup.procs", dirs[c]);
    if (floor_writefile(f, s)) { perror(f); failed = 1; }
  }
  double t3 = now_ms();
  if (failed) kill(pid, SIGKILL);
  else if (write(fds[1], "g", 1) != 1) failed = 1;
  close(fds[0]);
  close(fds[1]);
  int st;
  waitpid(pid, &st, 0);
  double t4 = now_ms();
  for (int c = 0; c < ncg; c++) rmdir(dirs[c]);
  double t5 = now_ms();
  if (failed || !WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "container failed: status %d\n", st); return 1; }
  printf("{\"mkdirMs\":%.3f,\"cloneMs\":%.3f,\"attachMs\":%.3f,\"runMs\":%.3f,\"rmdirMs\":%.3f,\"totalMs\":%.3f}\n", t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0);
  return 0;
}

// The kernel's own floor under "100 pods Running at once" (`npm run bench -- floor`): N minimal
// containers, each a clone into new mount, pid, ipc, uts and net namespaces, placed in its own
// cgroup in the cpu, memory and pids v1 hierarchies, with a private bind of a busybox rootfs,
// proc mounted in it, pivot_root and execve of /bin/true; the parent waits and removes the
// cgroups. No runtime, no network device, no /dev, no masked paths, no gRPC: less than any pod
// needs. Run by W worker processes in parallel; prints the wall time for all N and the machine's
// CPU (all cores, from /proc/stat, after the kernel's deferred namespace cleanup settled).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../../../bench/floor/floor-container.h"

static const char *cgname;
static const char *ctrls[] = {"cpu", "memory", "pids"};

static int one(int worker, int i) {
  static char stack[1 << 16];
  int fds[2];
  if (pipe2(fds, O_CLOEXEC)) return -1;
  char dirs[3][256];
  for (int c = 0; c < 3; c++) {
    snprintf(dirs[c], sizeof dirs[c], "/sys/fs/cgroup/%s/%s/w%d-c%d", ctrls[c], cgname, worker, i);
    if (mkdir(dirs[c], 0755)) { perror(dirs[c]); return -1; }
  }
  pid_t pid = clone(floor_child, stack + sizeof stack, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET | SIGCHLD, &fds[0]);
  if (pid < 0) { perror("clone"); return -1; }
  char s[32], f[300];
  snprintf(s, sizeof s, "%d", pid);
  for (int c = 0; c < 3; c++) {
    snprintf(f, sizeof f, "%s/cgroup.procs", dirs[c]);
    if (floor_writefile(f, s)) { perror(f); return -1; }
  }
  if (write(fds[1], "g", 1) != 1) return -1;
  close(fds[0]);
  close(fds[1]);
  int st;
  waitpid(pid, &st, 0);
  for (int c = 0; c < 3; c++) rmdir(dirs[c]);
  if (!WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "container exit status %d\n", WEXITSTATUS(st)); return -1; }
  return 0;
}

static long long busy_ticks(void) {
  FILE *f = fopen("/proc/stat", "r");
  long long v[8] = {0};
  if (!f || fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) != 8) return -1;
  fclose(f);
  return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]; // all but idle and iowait
}

int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: kernel-floor ROOTFS CGROUP-NAME N WORKERS\n"); return 2; }
  floor_root = argv[1];
  cgname = argv[2];
  int n = atoi(argv[3]), w = atoi(argv[4]);
  long long c0 = busy_ticks();
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int k = 0; k < w; k++) {
    if (fork() == 0) {
      for (int i = k; i < n; i += w) if (one(k, i)) _exit(1);
      _exit(0);
    }
  }
  int failed = 0, st;
  while (wait(&st) > 0) if (!WIFEXITED(st) || WEXITSTATUS(st)) failed = 1;
  clock_gettime(CLOCK_MONOTONIC, &b);
  usleep(1000 * 1000); // the kernel frees namespaces in workqueues after the exits
  long long c1 = busy_ticks();
  long hz = sysconf(_SC_CLK_TCK);
  printf("{\"containers\":%d,\"workers\":%d,\"wallMs\":%.3f,\"machineCpuMs\":%.1f,\"failed\":%d}\n", n, w,
         (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6, (c1 - c0) * 1000.0 / hz, failed);
  return failed;
}

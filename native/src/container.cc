// containerSpawn(): the container init path (and `exec` into a running container), from clone
// to execve, with the OCI create/start split.
//
//   JS thread: TS compiles config.json into a flat ContainerPlan (policy), queues the work
//   pool thread              launching thread           child (CLONE_VM: shares our memory)
//   -----------              ----------------           -----------------------------------
//   status + sync pipes
//   start a launching  -->   [setns(pid) if joining]
//   thread (or hand the      clone(CLONE_VM|VFORK|   -> non-dumpable; report "hello" + pidfd
//   launch to a pooled       PIDFD|NEW*), sleeps        default signal dispositions
//   spawner: see below)      until the child has        wait for "go" on the sync pipe
//   read "hello": pidfd,     exec'd or died; then
//   pid (fdinfo)             frees stack and plan
//   write uid/gid maps, cgroup.procs,                   setns (joined namespaces)
//   oom_score_adj; send "go" ------------------------>  mounts: propagation, rootfs bind, every
//                                                         op of the plan resolved in the rootfs
//                                                       pivot_root (or chroot), hostname,
//                                                         rlimits, sysctls, [seccomp w/o NNP],
//                                                         groups/uid/gid, capabilities, umask,
//                                                         cwd, NNP
//   read the status pipe: "ready" or {stage,  <-------  report "ready" (or {stage, errno, op})
//     errno, op}; on failure kill and reap              [hold: open the exec fifo for writing
//                                                         until `start` opens it for reading]
//                                                       [seccomp with NNP], close fds, execve
//
// * With a cgroup spawner (the daemon's usual case) the "pool thread" column runs on the JS
//   thread instead, non-blocking, driven by a uv_poll_t on the status pipe (SpawnOnLoop).
// * CLONE_VM (see Launch below): no copy of the runtime's address space; the child runs on a
//   stack of its own, reads only data laid out before clone() (the plan, kept alive by the
//   launching thread) and uses that sleeping thread's TLS, like posix_spawn's child. It still
//   only makes async-signal-safe syscalls and never allocates. An init that must enter a new
//   time namespace is a fork-style copy instead (CloneContainer): the kernel refuses that
//   setns to a process that shares its memory.
// * Paths inside the rootfs are resolved by the kernel with openat2(RESOLVE_IN_ROOT |
//   RESOLVE_NO_MAGICLINKS): a symlink planted by the image cannot lead a mount target, a masked
//   path or a device node out of the rootfs (CVE-2021-30465). The mount then goes to the
//   resolved fd through /proc/self/fd/N of the host's procfs, so the path is never walked twice.
// * The child is non-dumpable from its first instruction (CVE-2019-5736: the container must not
//   open /proc/<pid>/exe of a runtime process); execve of the container binary resets it. With
//   CLONE_VM the flag is on the shared mm, so the runtime process itself stays non-dumpable.
// * Failures before "ready" come back as {stage, errno, op} and surface as SyscallError; the
//   only step after "ready" that can fail is execve itself (reported on the container's
//   stderr, exit 127), and its binary was checked with faccessat before "ready".
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <uv.h>

#include <pthread.h>

#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "addon.h"

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#endif

namespace berth {
namespace {

// Stages reported by the child. Names are part of the TS API (ContainerStage).
enum CStage : int32_t {
  kCReady = -1,
  kCPaused = -2,  // rootfs set up, waiting before pivot_root while the createContainer hooks run
  kCHello = -3,   // a CLONE_VM init's first report: op = its pidfd (see Launch)
  kCLaunchFailed = -4,  // from the launching thread: clone (op 0) or setns of the pid ns (op 1) failed
  kCDiedEarly = -5,     // from the launching thread: the init died before its hello; op = its pidfd
  kCAttachFailed = -6,  // from a spawner's thread given a launch before it had attached: op 0 write, 1 unshare
  kCLocalFail = -7,     // from the JS thread (SpawnOnLoop): the launch failed before it started
  kCSync = 0,
  kCSetns,
  kCTimens,
  kCSetsid,
  kCPropagation,
  kCRootfs,
  kCMountOp,
  kCPivot,
  kCHostname,
  kCDomainname,
  kCRlimit,
  kCSysctl,
  kCSeccomp,
  kCCapBounding,
  kCUser,
  kCCaps,
  kCUmask,
  kCCwd,
  kCNoNewPrivs,
  kCExecutable,
  kCStdio,
  kCCloseRange,
  kCProcfs,
  kCConsole,
  kCKeyring,
  kCCgroupns,
  kCStageCount,
};

constexpr const char* kCStageNames[kCStageCount] = {
    "sync",    "setns",      "timens",  "setsid",       "propagation", "rootfs", "mount",     "pivot_root",
    "hostname", "domainname", "rlimit", "sysctl",       "seccomp",     "capbset", "user",     "capabilities",
    "umask",   "cwd",        "no_new_privileges", "executable", "stdio", "close_range", "procfs",
    "console", "keyring", "cgroupns",
};

struct CRecord {
  int32_t stage;
  int32_t err;
  int32_t op;  // index of the failing op / rlimit / sysctl / namespace, -1 when none
};

// One filesystem step inside the rootfs (TS decides which, and in what order).
enum OpKind : int32_t {
  kOpMount = 0,      // mount(source, target, fstype, flags, data); mkdir: 1 dir, 2 file
  kOpRemount = 1,    // mount(NULL, target, NULL, MS_REMOUNT | flags) (read-only bind etc.)
  kOpPropagate = 2,  // mount(NULL, target, NULL, propagation flags)
  kOpMknod = 3,      // mknodat(parent, name, mode, dev)
  kOpSymlink = 4,    // symlinkat(source, parent, name)
  kOpMask = 5,       // tmpfs (dir) or /dev/null (file) over target; a symlink is left alone
  kOpReadonly = 6,   // bind target onto itself, remount read-only
  kOpMkdir = 7,      // mkdir -p inside the rootfs
  kOpSysctl = 8,     // write source to <rootfs>/proc/sys/<target>, beneath a checked procfs
  // Attach the spawner's prebuilt tree (ChildCtx.treeFd) at target and skip the next `flags`
  // ops, which build the same tree the old way; without a tree, a no-op (those ops run).
  kOpCgroupTree = 9,
};

struct Op {
  int32_t kind;
  std::string source;
  bool hasSource = false;
  std::string target;  // relative to the rootfs
  std::string fstype;
  bool hasFstype = false;
  unsigned long flags = 0;
  std::string data;
  bool hasData = false;
  int32_t mkdir = 0;
  uint32_t mode = 0;
  uint64_t dev = 0;
};

struct NsJoin {
  int fd;
  int nstype;
};

struct Rlimit {
  int resource;
  struct rlimit value;
};

struct ContainerPlan {
  uint64_t cloneFlags = 0;  // CLONE_NEW* except CLONE_NEWTIME
  bool newTime = false;
  std::string timeOffsets;
  std::vector<NsJoin> join;  // setns in the child, in order
  int joinPidFd = -1;        // setns on the cloning thread (pid_for_children)
  std::string uidMap, gidMap;
  bool setgroupsDeny = false;
  std::vector<int> cgroupProcsFds;
  bool hasOomScoreAdj = false;
  int oomScoreAdj = 0;

  bool hasRootfs = false;
  // Stop after the rootfs ops, before pivot_root, until the parent says go on (OCI
  // createRuntime/createContainer hooks run at that point).
  bool pauseBeforePivot = false;
  // Stop right before execve until the parent says go on: a process entering a running
  // container, so that the parent knows its pid before it can exit.
  bool pauseBeforeExec = false;
  std::string rootfs;
  unsigned long rootPropagation = 0;
  bool rootReadonly = false;
  bool noPivot = false;
  std::vector<Op> ops;

  bool hasHostname = false, hasDomainname = false;
  std::string hostname, domainname;
  std::vector<Rlimit> rlimits;

  bool setUser = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool setGroups = false;
  int umask = -1;

  bool setCaps = false;
  int lastCap = 40;
  uint64_t bounding = 0, effective = 0, permitted = 0, inheritable = 0, ambient = 0;
  bool noNewPrivileges = false;
  std::vector<struct sock_filter> seccomp;
  bool hasSeccomp = false;
  unsigned int seccompFlags = 0;

  bool hasCwd = false;
  std::string cwd;
  std::vector<std::string> argvStore, envStore, candidates;
  std::vector<char*> argv, envp;
  int stdio[3] = {0, 1, 2};
  int preserveFds = 0;
  int fifoFd = -1;
  bool setsid = true;
  // A terminal: a pty made inside the container (its devpts), the master sent to the socket
  // at consoleSocket over SCM_RIGHTS, the slave as stdio and controlling terminal.
  bool terminal = false;
  // A new session keyring (runc's default): keys of the runtime never reach the container.
  bool newKeyring = false;
  std::string consoleSocket;
  // Or an inherited, connected socket to send it on (berth-runtime run attaching its own stdio).
  int consoleFd = -1;
  unsigned short rows = 0, cols = 0;
};

// ---------------------------------------------------------------------------------------------
// Child side: async-signal-safe syscalls only, no allocation, never returns.

// Whether the parent has work to do on the child before it may go on (see ParentSide).
bool NeedsGo(const ContainerPlan& plan) {
  return (plan.cloneFlags & CLONE_NEWUSER) != 0 || !plan.cgroupProcsFds.empty() || plan.hasOomScoreAdj;
}

struct ChildCtx {
  const ContainerPlan* plan;
  int statusFd;
  int syncFd;
  int treeFd = -1;  // a detached /sys/fs/cgroup tree made by the spawner (kOpCgroupTree)
};

[[noreturn]] void CFail(const ChildCtx& c, CStage stage, int op = -1, int err = -1) {
  CRecord rec{stage, err < 0 ? errno : err, op};
  ssize_t ignored = ::write(c.statusFd, &rec, sizeof rec);
  (void)ignored;
  ::_exit(127);
}

size_t CLen(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

// "/proc/self/fd/<fd>" into buf (64 bytes).
const char* FdPath(char* buf, int fd) {
  const char prefix[] = "/proc/self/fd/";
  size_t n = sizeof prefix - 1;
  std::memcpy(buf, prefix, n);
  char digits[16];
  int d = 0;
  do {
    digits[d++] = static_cast<char>('0' + fd % 10);
    fd /= 10;
  } while (fd > 0);
  while (d > 0) buf[n++] = digits[--d];
  buf[n] = '\0';
  return buf;
}

// EAGAIN: a ".." was resolved while a rename or mount happened anywhere in the system, so the
// kernel could not vouch for the result (RESOLVE_IN_ROOT / RESOLVE_BENEATH); the whole lookup is
// done again, as openat2(2) asks. Bounded, so a storm of mounts ends as an error, not a hang.
long Openat2(int dirfd, const char* path, uint64_t flags, uint64_t resolve) {
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = flags | O_CLOEXEC;
  how.resolve = resolve;
  long fd;
  int tries = 0;
  do fd = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
  while (fd < 0 && (errno == EAGAIN || errno == EINTR) && ++tries < 64);
  return fd;
}

constexpr uint64_t kInRoot = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

// Opens `path` (relative to the rootfs) as O_PATH inside the root, creating missing directories
// on the way (and the last component as `mkdirKind`: 1 directory, 2 empty file). Every
// component is created with mkdirat() on an fd already resolved inside the root, so nothing is
// ever created outside it. Returns an fd or -1 with errno set.
int OpenInRoot(int rootfd, const char* path, int mkdirKind, bool nofollowLast, int depth = 0) {
  uint64_t lastFlags = O_PATH | (nofollowLast ? O_NOFOLLOW : 0);
  int fd = static_cast<int>(Openat2(rootfd, path, lastFlags, kInRoot));
  if (fd >= 0 || errno != ENOENT || mkdirKind == 0) return fd;

  char buf[4096];
  size_t len = CLen(path);
  if (len >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(buf, path, len + 1);
  // Usually only the last component is missing (a mount point in a directory of the image or
  // in a tmpfs mounted by an earlier op): its parent, resolved from the root in one openat2,
  // is the fd the walk below would reach after re-resolving every prefix, so the walk starts
  // at the last component, which it knows to be missing (the openat2 above: ENOENT). Any
  // failure there: the whole walk, as before.
  int parent = -1;
  size_t start = 0;
  bool lastMissing = false;
  {
    size_t lastEnd = len;
    while (lastEnd > 0 && buf[lastEnd - 1] == '/') --lastEnd;
    size_t lastStart = lastEnd;
    while (lastStart > 0 && buf[lastStart - 1] != '/') --lastStart;
    size_t prefixEnd = lastStart;
    while (prefixEnd > 0 && buf[prefixEnd - 1] == '/') --prefixEnd;
    if (prefixEnd > 0) {
      char saved = buf[prefixEnd];
      buf[prefixEnd] = '\0';
      parent = static_cast<int>(Openat2(rootfd, buf, O_PATH | O_DIRECTORY, kInRoot));
      buf[prefixEnd] = saved;
      if (parent >= 0) {
        start = prefixEnd;
        lastMissing = true;
      }
    }
  }
  if (parent < 0) parent = ::fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
  if (parent < 0) return -1;
  while (start < len) {
    while (start < len && buf[start] == '/') ++start;
    if (start >= len) break;
    size_t end = start;
    while (end < len && buf[end] != '/') ++end;
    bool last = true;
    for (size_t i = end; i < len; ++i) {
      if (buf[i] != '/') {
        last = false;
        break;
      }
    }
    char saved = buf[end];
    buf[end] = '\0';
    // The prefix so far, resolved from the root again (symlinks stay inside it).
    int next;
    if (lastMissing) {
      // The whole path, resolved just above: ENOENT (a race that created it meanwhile ends
      // in EEXIST below, tolerated, and the path is resolved again).
      lastMissing = false;
      next = -1;
      errno = ENOENT;
    } else {
      next = static_cast<int>(Openat2(rootfd, buf, last ? lastFlags : (O_PATH | O_DIRECTORY), kInRoot));
    }
    if (next < 0 && errno == ENOENT) {
      const char* name = buf + start;
      int rc;
      if (last && mkdirKind == 2) {
        rc = ::openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (rc >= 0) ::close(rc), rc = 0;
      } else {
        rc = ::mkdirat(parent, name, 0755);
      }
      if (rc != 0 && errno != EEXIST) {
        int err = errno;
        ::close(parent);
        errno = err;
        return -1;
      }
      next = static_cast<int>(Openat2(rootfd, buf, last ? lastFlags : (O_PATH | O_DIRECTORY), kInRoot));
      if (next < 0 && errno == ENOENT && !(last && nofollowLast)) {
        // A dangling symlink (an image's /var/run -> /run without /run): continue at its
        // target, read here and resolved again from the root, so it stays inside.
        char link[4096];
        ssize_t n = ::readlinkat(parent, name, link, sizeof link - 1);
        if (n > 0) {
          if (depth >= 16) {
            ::close(parent);
            errno = ELOOP;
            return -1;
          }
          link[n] = '\0';
          buf[end] = saved;
          char joined[4096];
          size_t j = 0;
          auto put = [&](const char* str, size_t len) {
            if (j + len >= sizeof joined) return false;
            std::memcpy(joined + j, str, len);
            j += len;
            return true;
          };
          bool ok = link[0] == '/' || put(buf, start);  // a relative target: from the parent
          ok = ok && put(link, static_cast<size_t>(n)) && put(buf + end, len - end);
          ::close(parent);
          if (!ok) {
            errno = ENAMETOOLONG;
            return -1;
          }
          joined[j] = '\0';
          return OpenInRoot(rootfd, joined, mkdirKind, nofollowLast, depth + 1);
        }
        errno = ENOENT;
      }
    }
    buf[end] = saved;
    int err = errno;
    ::close(parent);
    if (next < 0) {
      errno = err;
      return -1;
    }
    parent = next;
    start = end;
  }
  return parent;
}

// Splits `path` into its parent path ("." for none) and last name.
int SplitParent(const char* path, char* buf, size_t bufCap, char* nameOut, size_t nameCap) {
  size_t len = CLen(path);
  while (len > 0 && path[len - 1] == '/') --len;
  if (len == 0 || len >= bufCap) {
    errno = EINVAL;
    return -1;
  }
  size_t slash = len;
  while (slash > 0 && path[slash - 1] != '/') --slash;
  size_t nameLen = len - slash;
  if (nameLen + 1 > nameCap) {
    errno = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(nameOut, path + slash, nameLen);
  nameOut[nameLen] = '\0';
  if (slash == 0) {
    buf[0] = '.';
    buf[1] = '\0';
  } else {
    std::memcpy(buf, path, slash);
    buf[slash] = '\0';
  }
  return 0;
}

// The directory mknod/symlink ops create their entries in (O_RDONLY: O_PATH fds cannot be used
// with mknodat/symlinkat), kept open for the next such op with the same parent path. Reusing
// it is the same as resolving that path again: the path resolved, so every name its walk
// looked up existed, and the ops in between only created entries that did not exist (they
// never replace one: EEXIST keeps the image's) and mounted nothing. Any other op drops it.
struct DirCache {
  int fd = -1;
  char parent[4096];
};

void DropDir(DirCache& cache) {
  if (cache.fd >= 0) ::close(cache.fd);
  cache.fd = -1;
}

// Mounts onto the fd's path through the host procfs, so the kernel uses the dentry that was
// resolved inside the root instead of walking a path the container could change meanwhile.
int MountOnFd(const char* source, int fd, const char* fstype, unsigned long flags, const char* data) {
  char path[64];
  return ::mount(source, FdPath(path, fd), fstype, flags, data);
}

int WriteBeneath(int procfd, const char* rel, const std::string& value);
int CheckProcfs(int fd);

// Read-only binds made with the new mount API: the bind is cloned detached (open_tree), given
// its flags there (mount_setattr) and attached on the fd's path (move_mount), instead of
// mount(MS_BIND) on the path, a second resolution of it and mount(MS_REMOUNT | MS_BIND). The
// end state is the same: one new mount on top of the target, the same tree (recursive or not),
// with the remount's flags on its top mount only. Flags a bind remount sets replace the
// user-settable ones (ro, nosuid, nodev, noexec, nosymfollow) and keep the atime ones, so the
// same attr_set / attr_clr. Used only where nothing can propagate (see FoldAllowed): flags set
// before the attach reach no peer a remount after it would have missed. Any failure discards
// the detached clone (never attached) and the op runs the old way, with the old errors.
constexpr unsigned long kRemountSettable = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;

uint64_t MountAttrs(unsigned long msFlags) {
  uint64_t a = 0;
  if ((msFlags & MS_RDONLY) != 0) a |= MOUNT_ATTR_RDONLY;
  if ((msFlags & MS_NOSUID) != 0) a |= MOUNT_ATTR_NOSUID;
  if ((msFlags & MS_NODEV) != 0) a |= MOUNT_ATTR_NODEV;
  if ((msFlags & MS_NOEXEC) != 0) a |= MOUNT_ATTR_NOEXEC;
  return a;
}

// Clones `path` at (dirfd, path) (AT_EMPTY_PATH for the fd itself), sets `msFlags` (a subset of
// kRemountSettable) on the clone's top mount as a bind remount would, attaches it on `target`.
// 0, or -1 with nothing changed.
int AttachReadonlyClone(int dirfd, const char* path, unsigned int treeFlags, unsigned long msFlags, int target) {
  int tree = static_cast<int>(::syscall(SYS_open_tree, dirfd, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | treeFlags));
  if (tree < 0) return -1;
  struct mount_attr attr;
  std::memset(&attr, 0, sizeof attr);
  attr.attr_set = MountAttrs(msFlags);
  attr.attr_clr = (MountAttrs(kRemountSettable) | MOUNT_ATTR_NOSYMFOLLOW) & ~attr.attr_set;
  int rc = static_cast<int>(::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr));
  if (rc == 0) {
    rc = static_cast<int>(::syscall(SYS_move_mount, tree, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
  }
  ::close(tree);  // attached: just the fd; not attached: the clone is dissolved
  return rc;
}

// A bind (op a) followed by a bind remount of the same target (op b) with only settable flags:
// done as one AttachReadonlyClone.
bool FoldableBind(const Op& a, const Op& b) {
  return a.kind == kOpMount && (a.flags == MS_BIND || a.flags == (MS_BIND | MS_REC)) && a.hasSource && !a.hasFstype &&
         !a.hasData && b.kind == kOpRemount && (b.flags & ~kRemountSettable) == MS_BIND && !b.hasData &&
         a.target == b.target;
}

// No mount of the rootfs can propagate anywhere: the whole tree was made slave or private, and
// no op changes a mount's propagation. (A slave mount's new children, and binds of it, have no
// peers and no slaves of their own.)
bool FoldAllowed(const ContainerPlan& plan) {
  if ((plan.rootPropagation & (MS_SLAVE | MS_PRIVATE)) == 0 || (plan.rootPropagation & (MS_SHARED | MS_UNBINDABLE)) != 0) {
    return false;
  }
  for (const Op& op : plan.ops) {
    if (op.kind == kOpPropagate) return false;
  }
  return true;
}

int RunOp(const Op& op, int rootfd, int devNull, DirCache& cache, bool fold) {
  if (op.kind != kOpMknod && op.kind != kOpSymlink) DropDir(cache);
  const char* source = op.hasSource ? op.source.c_str() : nullptr;
  const char* fstype = op.hasFstype ? op.fstype.c_str() : nullptr;
  const char* data = op.hasData ? op.data.c_str() : nullptr;
  switch (op.kind) {
    case kOpMount:
    case kOpRemount:
    case kOpPropagate:
    case kOpMkdir: {
      int fd = OpenInRoot(rootfd, op.target.c_str(), op.kind == kOpMkdir ? 1 : op.mkdir, false);
      if (fd < 0) return -1;
      int rc = 0;
      if (op.kind == kOpMount) rc = MountOnFd(source, fd, fstype, op.flags, data);
      if (op.kind == kOpRemount) rc = MountOnFd(nullptr, fd, nullptr, MS_REMOUNT | op.flags, data);
      if (op.kind == kOpPropagate) rc = MountOnFd(nullptr, fd, nullptr, op.flags, nullptr);
      int err = errno;
      ::close(fd);
      errno = err;
      return rc;
    }
    case kOpMknod:
    case kOpSymlink: {
      char name[256];
      char parentPath[4096];
      if (SplitParent(op.target.c_str(), parentPath, sizeof parentPath, name, sizeof name) != 0) return -1;
      if (cache.fd < 0 || std::strcmp(cache.parent, parentPath) != 0) {
        DropDir(cache);
        // The parent, opened inside the root (created if missing).
        int parent = OpenInRoot(rootfd, parentPath, 1, false);
        if (parent < 0) return -1;
        // O_PATH fds cannot be used with mknodat/symlinkat: reopen the directory for real.
        int dir = ::openat(parent, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int err = errno;
        ::close(parent);
        if (dir < 0) {
          errno = err;
          return -1;
        }
        cache.fd = dir;
        std::memcpy(cache.parent, parentPath, CLen(parentPath) + 1);
      }
      int rc = op.kind == kOpMknod ? ::mknodat(cache.fd, name, op.mode, static_cast<dev_t>(op.dev))
                                   : ::symlinkat(source, cache.fd, name);
      if (rc != 0 && errno == EEXIST) rc = 0;  // the image already has it: keep the image's
      return rc;
    }
    case kOpMask: {
      // O_NOFOLLOW on the last component: a masked path swapped for a symlink is left as it
      // is, never the symlink's target masked (CVE-2025-31133).
      int fd = OpenInRoot(rootfd, op.target.c_str(), 0, true);
      if (fd < 0) return errno == ENOENT ? 0 : -1;
      struct stat st;
      int rc = ::fstat(fd, &st);
      if (rc == 0 && S_ISDIR(st.st_mode)) {
        rc = MountOnFd("tmpfs", fd, "tmpfs", MS_RDONLY, "size=0,mode=0555");
      } else if (rc == 0 && !S_ISLNK(st.st_mode)) {
        char nullPath[64];
        rc = MountOnFd(FdPath(nullPath, devNull), fd, nullptr, MS_BIND, nullptr);
      }
      int err = errno;
      ::close(fd);
      errno = err;
      return rc;
    }
    case kOpReadonly: {
      int fd = OpenInRoot(rootfd, op.target.c_str(), 0, false);
      if (fd < 0) return errno == ENOENT ? 0 : -1;
      if (fold && AttachReadonlyClone(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, kRemountSettable, fd) == 0) {
        ::close(fd);
        return 0;
      }
      char self[64];
      int rc = MountOnFd(FdPath(self, fd), fd, nullptr, MS_BIND | MS_REC, nullptr);
      int err = errno;
      ::close(fd);
      if (rc == 0) {
        // The new bind mount is on top now: reopen to get it, then remount it read-only.
        fd = OpenInRoot(rootfd, op.target.c_str(), 0, false);
        if (fd < 0) return -1;
        rc = MountOnFd(nullptr, fd, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       nullptr);
        if (rc != 0 && errno == EPERM) {
          // Locked flags (user namespaces): keep nosuid/nodev/noexec as they were.
          rc = MountOnFd(nullptr, fd, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr);
        }
        err = errno;
        ::close(fd);
      }
      errno = err;
      return rc;
    }
    case kOpSysctl: {
      // The container's /proc, checked to be a real procfs: a rootfs that put something else
      // at /proc must not receive our writes (CVE-2019-16884).
      int procfd = OpenInRoot(rootfd, "proc", 0, true);
      if (procfd < 0) return -1;
      int rc = CheckProcfs(procfd);
      if (rc == 0) rc = WriteBeneath(procfd, op.target.c_str(), op.source);
      int err = errno;
      ::close(procfd);
      errno = err;
      return rc;
    }
    default:
      errno = EINVAL;
      return -1;
  }
}

// A FoldableBind pair (ops a, b) as one read-only clone; false if that did not work (nothing
// changed but a mount point OpenInRoot may have created, as op a would): then the two ops run
// the old way.
bool RunFoldedBind(const Op& a, const Op& b, int rootfd, DirCache& cache) {
  DropDir(cache);
  int fd = OpenInRoot(rootfd, a.target.c_str(), a.mkdir, false);
  if (fd < 0) return false;
  int rc = AttachReadonlyClone(AT_FDCWD, a.source.c_str(), (a.flags & MS_REC) != 0 ? AT_RECURSIVE : 0, b.flags & kRemountSettable, fd);
  ::close(fd);
  return rc == 0;
}

// kOpCgroupTree: the detached tree attached on the target, resolved (and made) inside the root.
int AttachTree(int treeFd, const Op& op, int rootfd, DirCache& cache) {
  DropDir(cache);
  int fd = OpenInRoot(rootfd, op.target.c_str(), 1, false);
  if (fd < 0) return -1;
  int rc = static_cast<int>(::syscall(SYS_move_mount, treeFd, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH));
  int err = errno;
  ::close(fd);
  errno = err;
  return rc;
}

// A container's /sys/fs/cgroup for cgroup v1 as compilePlan's ops make it (a tmpfs, mode 755,
// nosuid/nodev/noexec, and each controller's dir bound read-only, nosuid, nodev, noexec at its
// name), built detached ahead of the create by a pool spawner's thread: one move_mount in the
// init instead of ~17 mount calls. Made slave recursively, as the ops' mounts are under the
// container's rslave root (a clone of a shared mount would otherwise join its peers). The fd of
// the tree, or -1 (the ops then run).
int BuildCgroupTree(const std::vector<std::pair<std::string, std::string>>& binds) {
  int fsfd = static_cast<int>(::syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
  if (fsfd < 0) return -1;
  int tree = -1;
  if (::syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, "mode", "755", 0) == 0 &&
      ::syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) == 0) {
    tree = static_cast<int>(::syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  }
  ::close(fsfd);
  if (tree < 0) return -1;
  bool ok = true;
  for (const auto& b : binds) {
    if (::mkdirat(tree, b.first.c_str(), 0755) != 0) {
      ok = false;
      break;
    }
    int sub = ::openat(tree, b.first.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) {
      ok = false;
      break;
    }
    int rc = AttachReadonlyClone(AT_FDCWD, b.second.c_str(), 0, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, sub);
    ::close(sub);
    if (rc != 0) {
      ok = false;
      break;
    }
  }
  if (ok) {
    struct mount_attr attr;
    std::memset(&attr, 0, sizeof attr);
    attr.propagation = MS_SLAVE;
    ok = ::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) == 0;
  }
  if (!ok) {
    ::close(tree);  // never attached: dissolved with its binds
    return -1;
  }
  return tree;
}

int WriteAll(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

// Writes `value` to <procfd>/sys/<rel>, never leaving that procfs (no symlinks, no mount
// crossings, nothing above it).
int WriteBeneath(int procfd, const char* rel, const std::string& value) {
  char path[4096];
  const char prefix[] = "sys/";
  size_t n = CLen(rel);
  if (n + sizeof prefix >= sizeof path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(path, prefix, sizeof prefix - 1);
  std::memcpy(path + sizeof prefix - 1, rel, n + 1);
  int fd = static_cast<int>(Openat2(procfd, path, O_WRONLY, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV));
  if (fd < 0) return -1;
  int rc = WriteAll(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  errno = err;
  return rc;
}

int CheckProcfs(int fd) {
  struct statfs sfs;
  if (::fstatfs(fd, &sfs) != 0) return -1;
  if (sfs.f_type != PROC_SUPER_MAGIC) {
    errno = EXDEV;
    return -1;
  }
  return 0;
}

int OpenCheckedProc() {
  int fd = ::open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  if (CheckProcfs(fd) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

int LoadSeccomp(const ContainerPlan& plan) {
  struct sock_fprog prog;
  prog.len = static_cast<unsigned short>(plan.seccomp.size());
  prog.filter = const_cast<struct sock_filter*>(plan.seccomp.data());
  return static_cast<int>(::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, plan.seccompFlags, &prog));
}

// The raw syscalls, not glibc's wrappers: those broadcast the change to every thread glibc
// believes the process has (the copy of our thread list in this fork-style child), signalling
// and waiting on threads that do not exist here.
long RawSetresuid(uid_t id) { return ::syscall(SYS_setresuid, id, id, id); }
long RawSetresgid(gid_t id) { return ::syscall(SYS_setresgid, id, id, id); }

// A one-iovec message with room for control data (SCM_RIGHTS), for sendmsg/recvmsg.
void InitMsg(struct msghdr& msg, struct iovec& iov, char* control, size_t controlLen) {
  std::memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = controlLen;
}

void WriteStderr(const char* msg) {
  ssize_t ignored = ::write(2, msg, CLen(msg));
  (void)ignored;
}

// Closes every fd >= 3 except the status pipe, the console socket, the exec fifo, the stdio
// sources and the preserved range [3, 3 + preserveFds).
void CloseAllExcept(const ChildCtx& c, const ContainerPlan& plan, int consoleFd) {
  int keep[8];
  int n = 0;
  keep[n++] = c.statusFd;
  if (plan.pauseBeforePivot || plan.pauseBeforeExec) keep[n++] = c.syncFd;
  if (consoleFd >= 0) keep[n++] = consoleFd;
  if (plan.fifoFd >= 0) keep[n++] = plan.fifoFd;
  if (c.treeFd >= 0) keep[n++] = c.treeFd;
  for (int fd : plan.stdio) keep[n++] = fd;
  for (int i = 1; i < n; ++i) {  // insertion sort: n <= 8
    for (int j = i; j > 0 && keep[j - 1] > keep[j]; --j) {
      int t = keep[j];
      keep[j] = keep[j - 1];
      keep[j - 1] = t;
    }
  }
  unsigned lo = 3U + static_cast<unsigned>(plan.preserveFds);
  for (int i = 0; i < n; ++i) {
    if (keep[i] < 0 || static_cast<unsigned>(keep[i]) < lo) continue;
    if (static_cast<unsigned>(keep[i]) > lo) ::syscall(SYS_close_range, lo, static_cast<unsigned>(keep[i]) - 1, 0U);
    lo = static_cast<unsigned>(keep[i]) + 1;
  }
  ::syscall(SYS_close_range, lo, ~0U, 0U);
}

// Reports "paused" and waits for the parent's byte on the sync pipe; EOF means the parent gave
// up (a hook failed), with nothing more to report.
void PauseChild(const ChildCtx& c) {
  CRecord paused{kCPaused, 0, -1};
  if (WriteAll(c.statusFd, reinterpret_cast<const char*>(&paused), sizeof paused) != 0) ::_exit(127);
  char cont = 0;
  ssize_t r;
  do r = ::read(c.syncFd, &cont, 1);
  while (r < 0 && errno == EINTR);
  if (r != 1) ::_exit(127);
  ::close(c.syncFd);
}

[[noreturn]] void ContainerChild(const ChildCtx& c) {
  const ContainerPlan& plan = *c.plan;
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }

  // Wait until the parent has written our id maps, put us in our cgroups and set our
  // oom_score_adj; with none of those to do (an init born in its cgroups) we go on at once.
  if (NeedsGo(plan)) {
    char go = 0;
    ssize_t n;
    do n = ::read(c.syncFd, &go, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) CFail(c, kCSync, -1, n == 0 ? EPIPE : errno);
  }
  if (!plan.pauseBeforePivot && !plan.pauseBeforeExec) ::close(c.syncFd);

  // Connected first, while the socket's host path is reachable: before setns into the
  // container's mount namespace (exec) and before pivot_root (create).
  int consoleFd = -1;
  if (plan.terminal && plan.consoleFd >= 0) {
    consoleFd = plan.consoleFd;
  } else if (plan.terminal) {
    consoleFd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    std::memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (plan.consoleSocket.size() >= sizeof addr.sun_path) CFail(c, kCConsole, -1, ENAMETOOLONG);
    std::memcpy(addr.sun_path, plan.consoleSocket.data(), plan.consoleSocket.size());
    if (consoleFd < 0 || ::connect(consoleFd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) {
      CFail(c, kCConsole);
    }
  }

  if ((plan.cloneFlags & CLONE_NEWUSER) != 0) {
    // Become root of the new user namespace (ids are unmapped until the maps are written).
    if (RawSetresgid(0) != 0 || RawSetresuid(0) != 0) CFail(c, kCUser);
  }

  for (size_t i = 0; i < plan.join.size(); ++i) {
    if (::setns(plan.join[i].fd, plan.join[i].nstype) != 0) CFail(c, kCSetns, static_cast<int>(i));
    ::close(plan.join[i].fd);
  }
  // A new cgroup namespace is made here, not by clone(): its root is the cgroup of the process
  // at that moment, which must be the container's own (the parent wrote us into it before "go").
  if ((plan.cloneFlags & CLONE_NEWCGROUP) != 0 && ::unshare(CLONE_NEWCGROUP) != 0) CFail(c, kCCgroupns);

  // Close everything inherited from the runtime that the rest of the path does not use: a
  // daemon with many containers in flight holds thousands of fds, which would also push our
  // own opens past the container's RLIMIT_NOFILE once it is set.
  CloseAllExcept(c, plan, consoleFd);

  if (plan.newTime) {
    // Offsets can be set only before any process is in the namespace, so: create it for our
    // children, set them, then move ourselves in through time_for_children.
    if (::unshare(CLONE_NEWTIME) != 0) CFail(c, kCTimens);
    if (!plan.timeOffsets.empty()) {
      int fd = ::open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
      if (fd < 0 || WriteAll(fd, plan.timeOffsets.data(), plan.timeOffsets.size()) != 0) CFail(c, kCTimens);
      ::close(fd);
    }
    int fd = ::open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWTIME) != 0) CFail(c, kCTimens);
    ::close(fd);
  }

  if (plan.setsid && ::setsid() < 0) CFail(c, kCSetsid);
  // KEYCTL_JOIN_SESSION_KEYRING (1) with NULL: a new anonymous session keyring. ENOSYS: no
  // keys in this kernel, nothing to isolate.
  if (plan.newKeyring && ::syscall(SYS_keyctl, 1, nullptr) < 0 && errno != ENOSYS) CFail(c, kCKeyring);

  int devNull = -1;
  if (plan.hasRootfs) {
    // Nothing we mount may propagate back to the host.
    if (::mount(nullptr, "/", nullptr, MS_REC | plan.rootPropagation, nullptr) != 0) CFail(c, kCPropagation);
    if (::mount(plan.rootfs.c_str(), plan.rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      CFail(c, kCRootfs);
    }
    int rootfd = ::open(plan.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) CFail(c, kCRootfs);
    // The host's /dev/null for masking files, opened here: a bind source must be a mount of
    // our own (new) mount namespace, so an fd from the parent's namespace would not do. Never
    // the rootfs' /dev/null, which the image controls (CVE-2025-31133).
    devNull = ::open("/dev/null", O_PATH | O_CLOEXEC);
    struct stat nullSt;
    if (devNull < 0 || ::fstat(devNull, &nullSt) != 0 || !S_ISCHR(nullSt.st_mode) || nullSt.st_rdev != makedev(1, 3)) {
      CFail(c, kCRootfs, -1, devNull < 0 ? errno : EXDEV);
    }
    DirCache dirCache;
    bool fold = FoldAllowed(plan);
    for (size_t i = 0; i < plan.ops.size(); ++i) {
      if (plan.ops[i].kind == kOpCgroupTree) {
        if (c.treeFd < 0) continue;
        if (AttachTree(c.treeFd, plan.ops[i], rootfd, dirCache) != 0) CFail(c, kCMountOp, static_cast<int>(i));
        i += std::min(static_cast<size_t>(plan.ops[i].flags), plan.ops.size() - 1 - i);
        continue;
      }
      if (fold && i + 1 < plan.ops.size() && FoldableBind(plan.ops[i], plan.ops[i + 1]) &&
          RunFoldedBind(plan.ops[i], plan.ops[i + 1], rootfd, dirCache)) {
        ++i;
        continue;
      }
      if (RunOp(plan.ops[i], rootfd, devNull, dirCache, fold) != 0) CFail(c, kCMountOp, static_cast<int>(i));
    }
    DropDir(dirCache);
    if (c.treeFd >= 0) ::close(c.treeFd);  // attached or not: never the container's
    // The hooks see the container's mount namespace with its rootfs still at its host path.
    if (plan.pauseBeforePivot) PauseChild(c);
    if (::fchdir(rootfd) != 0) CFail(c, kCPivot);
    if (plan.noPivot) {
      if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0 || ::chroot(".") != 0) CFail(c, kCPivot);
    } else {
      // pivot_root(".", "."): the old root ends up stacked under the new one at "/", and is
      // detached right away; no directory inside the rootfs is needed for it.
      if (::syscall(SYS_pivot_root, ".", ".") != 0) CFail(c, kCPivot);
      if (::mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) CFail(c, kCPivot);
      if (::umount2(".", MNT_DETACH) != 0) CFail(c, kCPivot);
    }
    if (::chdir("/") != 0) CFail(c, kCPivot);
    if (plan.rootReadonly &&
        ::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0) {
      CFail(c, kCRootfs);
    }
    ::close(rootfd);
    ::close(devNull);
  }

  if (plan.hasHostname && ::sethostname(plan.hostname.data(), plan.hostname.size()) != 0) CFail(c, kCHostname);
  if (plan.hasDomainname && ::setdomainname(plan.domainname.data(), plan.domainname.size()) != 0) {
    CFail(c, kCDomainname);
  }
  int ttyFd = -1;
  if (plan.terminal) {
    // The container's own devpts (/dev/ptmx -> pts/ptmx), so the pty belongs to it. The peer
    // comes from TIOCGPTPEER: no /dev/pts/N path lookup the container could redirect.
    int master = ::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) CFail(c, kCConsole);
    int unlock = 0;
    if (::ioctl(master, TIOCSPTLCK, &unlock) != 0) CFail(c, kCConsole);
    ttyFd = ::ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (ttyFd < 0) CFail(c, kCConsole);
    if (plan.rows > 0 && plan.cols > 0) {
      struct winsize ws;
      std::memset(&ws, 0, sizeof ws);
      ws.ws_row = plan.rows;
      ws.ws_col = plan.cols;
      ::ioctl(ttyFd, TIOCSWINSZ, &ws);
    }
    char name[] = "/dev/ptmx";
    struct iovec iov;
    iov.iov_base = name;
    iov.iov_len = sizeof name - 1;
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } control;
    std::memset(&control, 0, sizeof control);
    struct msghdr msg;
    InitMsg(msg, iov, control.buf, sizeof control.buf);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &master, sizeof(int));
    ssize_t sent;
    do sent = ::sendmsg(consoleFd, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) CFail(c, kCConsole);
    ::close(master);
    ::close(consoleFd);
    if (plan.setsid && ::ioctl(ttyFd, TIOCSCTTY, 0) != 0) CFail(c, kCConsole);
  }

  for (size_t i = 0; i < plan.rlimits.size(); ++i) {
    if (::setrlimit(static_cast<__rlimit_resource>(plan.rlimits[i].resource), &plan.rlimits[i].value) != 0) {
      CFail(c, kCRlimit, static_cast<int>(i));
    }
  }

  int procfd = -1;
  if (plan.fifoFd >= 0) {
    procfd = OpenCheckedProc();
    if (procfd < 0) CFail(c, kCProcfs);
  }

  // Without no_new_privileges the filter needs CAP_SYS_ADMIN, so it goes in before the
  // capabilities are dropped; with it, as late as possible (right before execve).
  if (plan.hasSeccomp && !plan.noNewPrivileges && LoadSeccomp(plan) != 0) CFail(c, kCSeccomp);

  if (plan.setCaps) {
    for (int cap = 0; cap <= plan.lastCap; ++cap) {
      if ((plan.bounding & (1ULL << cap)) != 0) continue;
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) CFail(c, kCCapBounding, cap);
    }
  }
  if (plan.setUser) {
    if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) CFail(c, kCUser);
    if (plan.setGroups && ::syscall(SYS_setgroups, plan.groups.size(), plan.groups.data()) != 0) CFail(c, kCUser);
    if (RawSetresgid(plan.gid) != 0) CFail(c, kCUser);
    if (RawSetresuid(plan.uid) != 0) CFail(c, kCUser);
    if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) CFail(c, kCUser);
  }
  if (plan.setCaps) {
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    hdr.pid = 0;
    for (int i = 0; i < 2; ++i) {
      data[i].effective = static_cast<uint32_t>(plan.effective >> (32 * i));
      data[i].permitted = static_cast<uint32_t>(plan.permitted >> (32 * i));
      data[i].inheritable = static_cast<uint32_t>(plan.inheritable >> (32 * i));
    }
    if (::syscall(SYS_capset, &hdr, data) != 0) CFail(c, kCCaps);
    for (int cap = 0; cap <= plan.lastCap; ++cap) {
      if ((plan.ambient & (1ULL << cap)) == 0) continue;
      if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) CFail(c, kCCaps, cap);
    }
  }
  if (plan.umask >= 0) ::umask(static_cast<mode_t>(plan.umask));

  if (plan.hasCwd) {
    // Resolved inside the (new) root and never through a magic link, so a leaked descriptor
    // cannot make the cwd a host directory (CVE-2024-21626).
    int fd = static_cast<int>(Openat2(AT_FDCWD, plan.cwd.c_str(), O_PATH | O_DIRECTORY, kInRoot));
    if (fd < 0 || ::fchdir(fd) != 0) CFail(c, kCCwd);
    ::close(fd);
  }

  if (plan.noNewPrivileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) CFail(c, kCNoNewPrivs);

  // Find the binary now, so that `create` (not `start`) reports a missing executable.
  int exe = -1;
  for (size_t i = 0; i < plan.candidates.size(); ++i) {
    if (::faccessat(AT_FDCWD, plan.candidates[i].c_str(), X_OK, AT_EACCESS) == 0) {
      struct stat st;
      if (::stat(plan.candidates[i].c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        exe = static_cast<int>(i);
        break;
      }
    }
  }
  if (exe < 0) CFail(c, kCExecutable, -1, ENOENT);

  int copies[3];
  for (int i = 0; i < 3; ++i) {
    copies[i] = ::fcntl(ttyFd >= 0 ? ttyFd : plan.stdio[i], F_DUPFD_CLOEXEC, 3);
    if (copies[i] < 0) CFail(c, kCStdio);
  }
  for (int i = 0; i < 3; ++i) {
    if (::dup2(copies[i], i) < 0) CFail(c, kCStdio);
  }
  for (int i = 0; i < plan.preserveFds; ++i) {
    int flags = ::fcntl(3 + i, F_GETFD);
    if (flags >= 0) ::fcntl(3 + i, F_SETFD, flags & ~FD_CLOEXEC);
  }
  // Only stdio and the preserved fds reach the container.
  if (::syscall(SYS_close_range, 3U + static_cast<unsigned>(plan.preserveFds), ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    CFail(c, kCCloseRange);
  }

  if (plan.fifoFd >= 0) {
    CRecord ready{kCReady, 0, -1};
    if (WriteAll(c.statusFd, reinterpret_cast<const char*>(&ready), sizeof ready) != 0) ::_exit(127);
    ::close(c.statusFd);
    // Hold until `start` opens the fifo for reading (the open blocks until then). Reopened
    // through the checked procfs: the fifo is outside the rootfs.
    char path[64];
    char* rel = const_cast<char*>(FdPath(path, plan.fifoFd)) + 6;  // "self/fd/N"
    int fd;
    do fd = ::openat(procfd, rel, O_WRONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
      WriteStderr("berth-runtime: container init: could not open the exec fifo\n");
      ::_exit(127);
    }
    if (WriteAll(fd, "0", 1) != 0) ::_exit(127);
    ::close(fd);
  }

  if (plan.hasSeccomp && plan.noNewPrivileges && LoadSeccomp(plan) != 0) {
    if (plan.fifoFd >= 0) {
      WriteStderr("berth-runtime: container init: loading the seccomp filter failed\n");
      ::_exit(127);
    }
    CFail(c, kCSeccomp);
  }

  if (plan.pauseBeforeExec) PauseChild(c);

  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(plan.candidates[exe].c_str(), plan.argv.data(), plan.envp.data());
  if (plan.fifoFd >= 0) {
    WriteStderr("berth-runtime: container init: execve failed\n");
    ::_exit(127);
  }
  CFail(c, kCExecutable);
}

// ---------------------------------------------------------------------------------------------
// Parent side, on a libuv pool thread.

struct Outcome {
  pid_t pid = -1;
  int pidfd = -1;
  // Paused before pivot_root: the ends of the status and sync pipes, for containerResume.
  int statusFd = -1;
  int syncFd = -1;
  int err = 0;
  const char* syscall = nullptr;
  const char* stage = nullptr;
  int op = -1;
};

void SetFail(Outcome& out, int err, const char* syscall, const char* stage, int op = -1) {
  out.err = err;
  out.syscall = syscall;
  out.stage = stage;
  out.op = op;
}

int WriteProcFile(pid_t pid, const char* name, const std::string& data) {
  char path[64];
  std::string p = "/proc/" + std::to_string(pid) + "/" + name;
  std::strncpy(path, p.c_str(), sizeof path - 1);
  path[sizeof path - 1] = '\0';
  int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = WriteAll(fd, data.data(), data.size());
  int err = errno;
  ::close(fd);
  errno = err;
  return rc;
}

int HighCloexecFd(int fd, int floor) {
  if (fd >= floor) return fd;
  int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, floor);
  int err = errno;
  ::close(fd);
  errno = err;
  return moved;
}

void ReapAndClose(int pidfd) {
  siginfo_t ignored;
  while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &ignored, WEXITED) < 0 &&
         errno == EINTR) {
  }
  ::close(pidfd);
}

const char* StageSyscall(int stage) {
  switch (stage) {
    case kCSync: return "read";
    case kCSetns: case kCTimens: return stage == kCSetns ? "setns" : "unshare";
    case kCSetsid: return "setsid";
    case kCPropagation: case kCRootfs: case kCMountOp: return "mount";
    case kCPivot: return "pivot_root";
    case kCHostname: return "sethostname";
    case kCDomainname: return "setdomainname";
    case kCRlimit: return "setrlimit";
    case kCSysctl: return "write";
    case kCSeccomp: return "seccomp";
    case kCCapBounding: case kCNoNewPrivs: return "prctl";
    case kCUser: return "setresuid";
    case kCCaps: return "capset";
    case kCUmask: return "umask";
    case kCCwd: return "chdir";
    case kCExecutable: return "execve";
    case kCStdio: return "dup2";
    case kCCloseRange: return "close_range";
    case kCProcfs: return "open";
    case kCConsole: return "console";
    case kCKeyring: return "keyctl";
    case kCCgroupns: return "unshare";
    default: return "unknown";
  }
}

void ReadStatus(bool holds, int statusRead, int syncWrite, Outcome& out);

// The status and sync pipes (O_CLOEXEC, moved above the fds the child keeps): {statusRead,
// statusWrite, syncRead, syncWrite}.
bool MakePipes(const ContainerPlan& plan, int fds[4], Outcome& out) {
  int floor = 3 + plan.preserveFds + 8;
  int statusPipe[2], syncPipe[2];
  if (::pipe2(statusPipe, O_CLOEXEC) != 0) {
    SetFail(out, errno, "pipe2", "prepare");
    return false;
  }
  if (::pipe2(syncPipe, O_CLOEXEC) != 0) {
    int err = errno;
    ::close(statusPipe[0]);
    ::close(statusPipe[1]);
    SetFail(out, err, "pipe2", "prepare");
    return false;
  }
  fds[0] = statusPipe[0];
  fds[1] = statusPipe[1];
  fds[2] = syncPipe[0];
  fds[3] = syncPipe[1];
  for (int i = 0; i < 4; ++i) fds[i] = HighCloexecFd(fds[i], floor);
  for (int i = 0; i < 4; ++i) {
    if (fds[i] < 0) {
      for (int j = 0; j < 4; ++j) {
        if (fds[j] >= 0) ::close(fds[j]);
      }
      SetFail(out, EMFILE, "fcntl", "prepare");
      return false;
    }
  }
  return true;
}

// The parent's steps once the child runs (it waits for "go" if NeedsGo): id maps, cgroup.procs,
// oom_score_adj, "go". False with `out` failed if one failed (nothing is closed or killed here).
bool ParentSteps(const ContainerPlan& plan, pid_t p, int syncWrite, Outcome& out) {
  auto fail = [&](int err, const char* syscall, const char* stage) {
    SetFail(out, err, syscall, stage);
    return false;
  };
  if ((plan.cloneFlags & CLONE_NEWUSER) != 0) {
    if (plan.setgroupsDeny && WriteProcFile(p, "setgroups", "deny") != 0) return fail(errno, "write", "setgroups");
    if (!plan.uidMap.empty() && WriteProcFile(p, "uid_map", plan.uidMap) != 0) return fail(errno, "write", "uid_map");
    if (!plan.gidMap.empty() && WriteProcFile(p, "gid_map", plan.gidMap) != 0) return fail(errno, "write", "gid_map");
  }
  std::string pidText = std::to_string(p);
  for (int fd : plan.cgroupProcsFds) {
    if (::pwrite(fd, pidText.data(), pidText.size(), 0) < 0) return fail(errno, "write", "cgroup");
  }
  if (plan.hasOomScoreAdj && WriteProcFile(p, "oom_score_adj", std::to_string(plan.oomScoreAdj)) != 0) {
    return fail(errno, "write", "oom_score_adj");
  }
  char go = 1;
  if (NeedsGo(plan) && ::write(syncWrite, &go, 1) != 1) return fail(errno, "write", "sync");
  return true;
}

// The parent's part once the child runs: ParentSteps, then the child's report. Consumes
// statusRead and syncWrite.
void ParentSide(const ContainerPlan& plan, pid_t p, int pidfd, int statusRead, int syncWrite, Outcome& out) {
  if (!ParentSteps(plan, p, syncWrite, out)) {
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    ::close(syncWrite);
    ::close(statusRead);
    ReapAndClose(pidfd);
    return;
  }
  bool pauses = plan.pauseBeforePivot || plan.pauseBeforeExec;
  if (!pauses) ::close(syncWrite);
  out.pid = p;
  out.pidfd = pidfd;
  ReadStatus(plan.fifoFd >= 0, statusRead, pauses ? syncWrite : -1, out);
}

// Fork-style (no CLONE_VM): a time namespace must be entered by a process that shares its
// memory with no other (the kernel refuses setns into one otherwise), so such inits are copies.
void CloneContainer(const ContainerPlan& plan, Outcome& out) {
  int fds[4];
  if (!MakePipes(plan, fds, out)) return;
  int statusRead = fds[0], statusWrite = fds[1], syncRead = fds[2], syncWrite = fds[3];

  int savedPidNs = -1;
  if (plan.joinPidFd >= 0) {
    savedPidNs = ::open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (savedPidNs < 0 || ::setns(plan.joinPidFd, CLONE_NEWPID) != 0) {
      int err = errno;
      if (savedPidNs >= 0) ::close(savedPidNs);
      for (int fd : fds) ::close(fd);
      return SetFail(out, err, "setns", "join_pid");
    }
  }

  // CLONE_NEWCGROUP is left to the child (unshare once it is in its cgroups).
  unsigned long flags = (static_cast<unsigned long>(plan.cloneFlags) & ~static_cast<unsigned long>(CLONE_NEWCGROUP)) |
                        CLONE_PIDFD | SIGCHLD;
  int pidfd = -1;
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  // Raw fork-style clone: the child returns here on a copy of this stack.
  long pid = ::syscall(SYS_clone, flags, nullptr, &pidfd, nullptr, nullptr);
  if (pid == 0) {
    ::close(statusRead);
    ::close(syncWrite);
    ChildCtx ctx{&plan, statusWrite, syncRead};
    ContainerChild(ctx);
  }
  int cloneErr = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (savedPidNs >= 0) {
    ::setns(savedPidNs, CLONE_NEWPID);  // back to our own: always allowed
    ::close(savedPidNs);
  }
  ::close(statusWrite);
  ::close(syncRead);
  if (pid < 0) {
    ::close(statusRead);
    ::close(syncWrite);
    return SetFail(out, cloneErr, "clone", "clone");
  }
  ParentSide(plan, static_cast<pid_t>(pid), pidfd, statusRead, syncWrite, out);
}

// ---------------------------------------------------------------------------------------------
// CLONE_VM inits: no copy of the runtime's address space.
//
// A fork-style clone of a daemon copies the page tables of its whole heap (~100 MB here) and
// then both sides take copy-on-write faults on every page they write: measured as the largest
// CPU cost of a create after the cgroup attach. So the init shares our memory instead
// (CLONE_VM), on a stack of its own, and the thread that clones it sleeps in clone()
// (CLONE_VFORK) until the init has exec'd or died, as posix_spawn's parent does: the init
// uses that thread's TLS (errno) while it sleeps, and only data laid out before clone() (the
// plan, kept alive by the Launch below). The parent's part (maps, "go", reading the reports)
// is done by the pool thread that started the launch, as for a fork-style init. The init's
// first report is its pidfd (the kernel wrote it to our memory before the init ran).
// Non-dumpable applies to the shared mm: the runtime process stays non-dumpable from then on.

struct Launch {
  std::shared_ptr<const ContainerPlan> plan;
  ChildCtx ctx{};
  void* stack = MAP_FAILED;
  size_t stackSize = 0;
  unsigned long flags = 0;
  int pidfd = -1;  // CLONE_PIDFD: written by the kernel before the init runs
  int helloSent = 0;  // set by the init (shared memory) once its hello is in the pipe
};

// The CLONE_VM inits between their clone and their execve (or death): each made the mm it shares
// with us non-dumpable, as it must be while it runs on our memory. When the last one has gone,
// this process gets back the dumpable state it started with (for core dumps, gdb and /proc
// access by its own tools): counted before a launch starts, released once clone() has returned.
std::mutex gSharedMmMutex;
int gSharedMmInits = 0;  // guarded by gSharedMmMutex
const int gInitialDumpable = ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);

void SharedMmEnter() {
  std::lock_guard<std::mutex> lock(gSharedMmMutex);
  ++gSharedMmInits;
}

void SharedMmLeave() {
  std::lock_guard<std::mutex> lock(gSharedMmMutex);
  if (--gSharedMmInits == 0 && gInitialDumpable > 0) ::prctl(PR_SET_DUMPABLE, gInitialDumpable, 0, 0, 0);
}

// The child's stack: OpenInRoot's worst case (16 levels of 12 KB frames) with room to spare.
constexpr size_t kInitStackSize = 1 << 20;

int LaunchChild(void* arg) {
  auto* l = static_cast<Launch*>(arg);
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  CRecord hello{kCHello, 0, l->pidfd};
  if (WriteAll(l->ctx.statusFd, reinterpret_cast<const char*>(&hello), sizeof hello) != 0) ::_exit(127);
  __atomic_store_n(&l->helloSent, 1, __ATOMIC_SEQ_CST);
  ContainerChild(l->ctx);
}

// On the launching thread: clones the init, sleeps until it has exec'd or died, cleans up.
void RunLaunch(Launch* l) {
  const ContainerPlan& plan = *l->plan;
  int savedPidNs = -1;
  int err = 0, what = 0;
  if (plan.joinPidFd >= 0) {
    savedPidNs = ::open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (savedPidNs < 0 || ::setns(plan.joinPidFd, CLONE_NEWPID) != 0) {
      err = errno;
      what = 1;
    }
  }
  if (err == 0) {
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    int pid = ::clone(LaunchChild, static_cast<char*>(l->stack) + l->stackSize, static_cast<int>(l->flags), l,
                      reinterpret_cast<pid_t*>(&l->pidfd));
    if (pid < 0) err = errno;
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    // clone() returns once the init has exec'd or died. Died before its hello (killed by
    // someone, or its first write failed): the pool thread, blocked on the status pipe whose
    // write end this process still holds, would wait forever and the pidfd would leak; it
    // gets the pidfd here instead, to reap and close. (Killed right after the hello: the pool
    // thread has the pidfd already and reads this as an unexpected report, which fails the
    // spawn the same way.)
    if (pid >= 0 && __atomic_load_n(&l->helloSent, __ATOMIC_SEQ_CST) == 0) {
      CRecord rec{kCDiedEarly, ECHILD, l->pidfd};
      ssize_t ignored = ::write(l->ctx.statusFd, &rec, sizeof rec);
      (void)ignored;
    }
  }
  if (savedPidNs >= 0) {
    ::setns(savedPidNs, CLONE_NEWPID);
    ::close(savedPidNs);
  }
  if (err != 0) {
    CRecord rec{kCLaunchFailed, err, what};
    ssize_t ignored = ::write(l->ctx.statusFd, &rec, sizeof rec);
    (void)ignored;
  }
  ::munmap(l->stack, l->stackSize);
  delete l;
  SharedMmLeave();
}

void* LaunchThreadMain(void* arg) {
  RunLaunch(static_cast<Launch*>(arg));
  return nullptr;
}

// The pid behind a pidfd, from /proc/self/fdinfo (-1 if none).
pid_t PidOfPidfd(int pidfd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[512];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* at = std::strstr(buf, "\nPid:");
  if (at == nullptr) return -1;
  return static_cast<pid_t>(std::strtol(at + 5, nullptr, 10));
}

struct Spawner;
bool HandToSpawner(Spawner* s, Launch* l, Outcome& out, bool waitAttached);
void CancelSpawner(Spawner* s);

// The launch of a CLONE_VM init on the pipe ends statusWrite and syncRead (not consumed):
// nullptr with `out` failed if its stack could not be mapped.
Launch* NewLaunch(const std::shared_ptr<const ContainerPlan>& plan, int statusWrite, int syncRead, Outcome& out) {
  auto* l = new Launch;
  l->plan = plan;
  l->ctx = ChildCtx{l->plan.get(), statusWrite, syncRead};
  l->stackSize = kInitStackSize;
  l->stack = ::mmap(nullptr, kInitStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (l->stack == MAP_FAILED) {
    int err = errno;
    delete l;
    SetFail(out, err, "mmap", "prepare");
    return nullptr;
  }
  ::mprotect(l->stack, 4096, PROT_NONE);  // a guard page below the stack
  // CLONE_NEWCGROUP is left to the child (unshare once it is in its cgroups).
  l->flags = (static_cast<unsigned long>(plan->cloneFlags) & ~static_cast<unsigned long>(CLONE_NEWCGROUP)) | CLONE_VM |
             CLONE_VFORK | CLONE_PIDFD | SIGCHLD;
  return l;
}

// A CLONE_VM init, cloned by `spawner`'s thread (in the container's cgroups) or by a new one.
void LaunchContainer(const std::shared_ptr<const ContainerPlan>& plan, Spawner* spawner, Outcome& out) {
  int fds[4];
  if (!MakePipes(*plan, fds, out)) {
    if (spawner != nullptr) CancelSpawner(spawner);
    return;
  }
  int statusRead = fds[0], statusWrite = fds[1], syncRead = fds[2], syncWrite = fds[3];
  auto closeAll = [&] {
    for (int fd : fds) ::close(fd);
  };
  Launch* l = NewLaunch(plan, statusWrite, syncRead, out);
  if (l == nullptr) {
    closeAll();
    if (spawner != nullptr) CancelSpawner(spawner);
    return;
  }
  bool started;
  SharedMmEnter();
  if (spawner != nullptr) {
    started = HandToSpawner(spawner, l, out, true);
  } else {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);  // the thread takes no signals
    pthread_t t;
    int rc = pthread_create(&t, &attr, LaunchThreadMain, l);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    pthread_attr_destroy(&attr);
    started = rc == 0;
    if (!started) SetFail(out, rc, "pthread_create", "clone");
  }
  if (!started) {
    SharedMmLeave();
    ::munmap(l->stack, l->stackSize);
    delete l;
    return closeAll();
  }
  // From here `l` belongs to the launching thread. First report: the init's hello, or the
  // launching thread's failure.
  CRecord rec{};
  ssize_t n;
  do n = ::read(statusRead, &rec, sizeof rec);
  while (n < 0 && errno == EINTR);
  int readErr = errno;
  // The init has its own fd table now (or there is no init): our copies of its ends go.
  ::close(statusWrite);
  ::close(syncRead);
  bool full = n == static_cast<ssize_t>(sizeof rec);
  if (!full || rec.stage != kCHello) {
    ::close(statusRead);
    ::close(syncWrite);
    if (full && rec.stage == kCLaunchFailed) return SetFail(out, rec.err, rec.op == 1 ? "setns" : "clone", rec.op == 1 ? "join_pid" : "clone");
    if (full && rec.stage == kCDiedEarly) {
      ReapAndClose(rec.op);
      return SetFail(out, rec.err, "clone", "init_died");
    }
    return SetFail(out, n < 0 ? readErr : EPROTO, "read", "status");
  }
  int pidfd = rec.op;
  pid_t pid = PidOfPidfd(pidfd);
  if (pid <= 0) {
    int err = errno;
    ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    ::close(statusRead);
    ::close(syncWrite);
    ReapAndClose(pidfd);
    return SetFail(out, err != 0 ? err : EPROTO, "read", "status");
  }
  ParentSide(*plan, pid, pidfd, statusRead, syncWrite, out);
}

// Reads the child's next report from the status pipe into `out` (pid and pidfd already set):
// exec'd (EOF, when it does not hold), ready, paused before pivot_root (the pipes are kept for
// containerResume), or a failure (the child is killed and reaped).
void ReadStatus(bool holds, int statusRead, int syncWrite, Outcome& out) {
  CRecord rec{};
  ssize_t n;
  do n = ::read(statusRead, &rec, sizeof rec);
  while (n < 0 && errno == EINTR);
  int readErr = errno;
  bool full = n == static_cast<ssize_t>(sizeof rec);
  if (full && rec.stage == kCPaused && syncWrite >= 0) {
    out.statusFd = statusRead;
    out.syncFd = syncWrite;
    return;
  }
  ::close(statusRead);
  if (syncWrite >= 0) ::close(syncWrite);
  if (n == 0 && !holds) return;  // execve succeeded
  if (full && rec.stage == kCReady) return;
  if (full && rec.stage >= 0 && rec.stage < kCStageCount) {
    SetFail(out, rec.err, StageSyscall(rec.stage), kCStageNames[rec.stage], rec.op);
  } else {
    SetFail(out, n < 0 ? readErr : EPROTO, "read", "status");
  }
  ::syscall(SYS_pidfd_send_signal, out.pidfd, SIGKILL, nullptr, 0);
  ReapAndClose(out.pidfd);
  out.pid = -1;
  out.pidfd = -1;
}

// ---------------------------------------------------------------------------------------------
// Cgroup spawners: a thread placed in a container's cgroups ahead of its create.
//
// On cgroup v1 the first write to a cgroup.procs file after a quiet moment waits for an RCU
// grace period (the write side of the kernel's cgroup_threadgroup_rwsem goes through
// rcu_sync), measured here at 4-14 ms: the largest single cost of a create. A child is born in
// the cgroups of the thread that clones it, without any migration. So a daemon keeps a few
// cgroups ready (see the TS CgroupPool), each with a thread of ours that moved itself in there
// in the background (writing its tid to each hierarchy's `tasks`); a create hands its plan to
// that thread, which clones the init and exits. The init never migrates, and no grace period
// is on the create's path.

struct Spawner {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> tasksFds;  // owned by the thread, closed once it has attached
  int unshareFlags = 0;       // namespaces the thread makes ahead (net, ipc, uts), inherited by the init
  std::vector<std::pair<std::string, std::string>> treeBinds;  // a /sys/fs/cgroup to build ahead (name, dir)
  int treeFd = -1;            // that tree, built by the thread (BuildCgroupTree), or -1
  pthread_t thread{};
  // Guarded by mu:
  bool attached = false;
  int attachErr = 0;
  const char* attachSyscall = "write";
  Launch* launch = nullptr;  // the job, handed over once
  bool cancelled = false;    // released unused
};

void* SpawnerMain(void* arg) {
  auto* s = static_cast<Spawner*>(arg);
  std::string tid = std::to_string(static_cast<long>(::syscall(SYS_gettid)));
  int err = 0;
  for (int fd : s->tasksFds) {
    if (err == 0 && ::pwrite(fd, tid.data(), tid.size(), 0) < 0) err = errno;
    ::close(fd);
  }
  // Namespaces are per thread: made here, off the create's path (a network namespace is the
  // costliest part of a clone), they are the init's by inheritance, as if it had cloned them.
  const char* what = "write";
  if (err == 0 && s->unshareFlags != 0 && ::unshare(s->unshareFlags) != 0) {
    err = errno;
    what = "unshare";
  }
  // Before the launch is looked at, so a launch handed over early finds it (or none).
  if (err == 0 && !s->treeBinds.empty()) s->treeFd = BuildCgroupTree(s->treeBinds);
  std::unique_lock<std::mutex> lock(s->mu);
  s->attached = true;
  s->attachErr = err;
  s->attachSyscall = what;
  s->cv.notify_all();
  s->cv.wait(lock, [s] { return s->launch != nullptr || s->cancelled; });
  Launch* l = s->launch;
  lock.unlock();
  int treeFd = s->treeFd;
  // Either way the Spawner is ours alone now (a launch or a cancel hands it over, and the
  // thread is detached by whoever did that).
  delete s;
  if (l == nullptr || err != 0) {
    if (treeFd >= 0) ::close(treeFd);
    treeFd = -1;
  }
  if (l != nullptr && err != 0) {
    // Handed over before we had attached (HandToSpawner without waitAttached), and the attach
    // failed: the launch ends here, reported on its status pipe like a launch failure.
    CRecord rec{kCAttachFailed, err, what[0] == 'u' ? 1 : 0};
    ssize_t ignored = ::write(l->ctx.statusFd, &rec, sizeof rec);
    (void)ignored;
    ::munmap(l->stack, l->stackSize);
    delete l;
    SharedMmLeave();
    return nullptr;
  }
  if (l != nullptr) {
    // The init gets its copy of the fd with its fd table (clone without CLONE_FILES).
    l->ctx.treeFd = treeFd;
    RunLaunch(l);
    if (treeFd >= 0) ::close(treeFd);
  }
  return nullptr;
}

// Tells an unused spawner's thread to exit (it frees itself); never blocks.
void CancelSpawner(Spawner* s) {
  pthread_t t = s->thread;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->cancelled = true;
    s->cv.notify_all();
  }
  pthread_detach(t);
}

// Hands the launch to the spawner's thread; false (and the spawner cancelled, `l` still the
// caller's) if it cannot run it. With `waitAttached` (a pool thread) it first waits until the
// thread is in its cgroups; without (the JS thread, which must not block) a thread still
// attaching gets the launch now and reports a failed attach on the launch's status pipe
// (kCAttachFailed), and only a failure known already is returned here.
bool HandToSpawner(Spawner* s, Launch* l, Outcome& out, bool waitAttached) {
  std::unique_lock<std::mutex> lock(s->mu);
  if (waitAttached) s->cv.wait(lock, [s] { return s->attached; });
  if (s->attached && s->attachErr != 0) {
    SetFail(out, s->attachErr, s->attachSyscall, "cgroup");
    lock.unlock();
    CancelSpawner(s);
    return false;
  }
  // The namespaces the thread made are the init's already; a plan that does not ask for one
  // of them must not get it (the TS pool never hands such a spawner out).
  if ((l->flags & static_cast<unsigned long>(s->unshareFlags)) != static_cast<unsigned long>(s->unshareFlags)) {
    SetFail(out, EINVAL, "clone", "clone");
    lock.unlock();
    CancelSpawner(s);
    return false;
  }
  l->flags &= ~static_cast<unsigned long>(s->unshareFlags);
  pthread_t t = s->thread;
  s->launch = l;
  s->cv.notify_all();
  lock.unlock();
  pthread_detach(t);
  return true;
}

// The JS handle: consumed by exactly one containerSpawn or spawnerRelease (or the GC).
struct SpawnerHandle {
  Spawner* spawner;
};

// ---------------------------------------------------------------------------------------------
// N-API glue.

std::string Str(Napi::Object o, const char* key, bool* present = nullptr) {
  Napi::Value v = o.Get(key);
  bool has = v.IsString();
  if (present != nullptr) *present = has;
  return has ? v.As<Napi::String>().Utf8Value() : std::string();
}

double Num(Napi::Object o, const char* key, double fallback = 0) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : fallback;
}

bool Bool(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsBoolean() && v.As<Napi::Boolean>().Value();
}

uint64_t Big(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsBigInt()) return 0;
  bool lossless = false;
  return v.As<Napi::BigInt>().Uint64Value(&lossless);
}

std::vector<std::string> Strings(Napi::Object o, const char* key) {
  std::vector<std::string> out;
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) return out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

std::vector<char*> Ptrs(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// The rootfs ops as packOps() (container.ts) lays them out: per op six numbers (kind, flags,
// mkdir, mode, major, minor) and four fields (source, target, fstype, data), each "1" + value
// or "0" for absent, NUL-terminated. False on a layout that does not add up.
bool ParseOps(Napi::Object packed, std::vector<Op>& ops) {
  constexpr size_t kNums = 6;
  Napi::Float64Array nums = packed.Get("nums").As<Napi::Float64Array>();
  std::string strs = packed.Get("strs").As<Napi::String>().Utf8Value();
  size_t n = nums.ElementLength() / kNums;
  size_t pos = 0;
  bool ok = true;
  auto field = [&](bool* present) {
    size_t end = pos < strs.size() ? strs.find('\0', pos) : std::string::npos;
    if (end == std::string::npos || end == pos || (strs[pos] != '0' && strs[pos] != '1')) {
      ok = false;
      pos = strs.size();
      return std::string();
    }
    bool has = strs[pos] == '1';
    if (present != nullptr) *present = has;
    std::string v = has ? strs.substr(pos + 1, end - pos - 1) : std::string();
    pos = end + 1;
    return v;
  };
  ops.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const double* d = nums.Data() + i * kNums;
    Op op;
    op.kind = static_cast<int32_t>(d[0]);
    op.flags = static_cast<unsigned long>(d[1]);
    op.mkdir = static_cast<int32_t>(d[2]);
    op.mode = static_cast<uint32_t>(d[3]);
    op.dev = makedev(static_cast<unsigned>(d[4]), static_cast<unsigned>(d[5]));
    op.source = field(&op.hasSource);
    op.target = field(nullptr);
    op.fstype = field(&op.hasFstype);
    op.data = field(&op.hasData);
    ops.push_back(std::move(op));
  }
  return ok && pos == strs.size();
}

std::unique_ptr<ContainerPlan> ParsePlan(Napi::Object o) {
  auto plan = std::make_unique<ContainerPlan>();
  plan->cloneFlags = static_cast<uint64_t>(Num(o, "cloneFlags"));
  plan->newTime = Bool(o, "newTime");
  plan->timeOffsets = Str(o, "timeOffsets");
  Napi::Array join = o.Get("join").As<Napi::Array>();
  for (uint32_t i = 0; i < join.Length(); ++i) {
    Napi::Object j = join.Get(i).As<Napi::Object>();
    plan->join.push_back({static_cast<int>(Num(j, "fd")), static_cast<int>(Num(j, "nstype"))});
  }
  plan->joinPidFd = static_cast<int>(Num(o, "joinPidFd", -1));
  plan->uidMap = Str(o, "uidMap");
  plan->gidMap = Str(o, "gidMap");
  plan->setgroupsDeny = Bool(o, "setgroupsDeny");
  Napi::Array cg = o.Get("cgroupProcsFds").As<Napi::Array>();
  for (uint32_t i = 0; i < cg.Length(); ++i) plan->cgroupProcsFds.push_back(cg.Get(i).As<Napi::Number>().Int32Value());
  Napi::Value oom = o.Get("oomScoreAdj");
  if (oom.IsNumber()) {
    plan->hasOomScoreAdj = true;
    plan->oomScoreAdj = oom.As<Napi::Number>().Int32Value();
  }
  plan->rootfs = Str(o, "rootfs", &plan->hasRootfs);
  plan->rootPropagation = static_cast<unsigned long>(Num(o, "rootPropagation"));
  plan->rootReadonly = Bool(o, "rootReadonly");
  plan->noPivot = Bool(o, "noPivot");
  if (!ParseOps(o.Get("ops").As<Napi::Object>(), plan->ops)) return nullptr;
  plan->hostname = Str(o, "hostname", &plan->hasHostname);
  plan->domainname = Str(o, "domainname", &plan->hasDomainname);
  Napi::Array rl = o.Get("rlimits").As<Napi::Array>();
  for (uint32_t i = 0; i < rl.Length(); ++i) {
    Napi::Object j = rl.Get(i).As<Napi::Object>();
    Rlimit r;
    r.resource = static_cast<int>(Num(j, "resource"));
    r.value.rlim_cur = Big(j, "soft");
    r.value.rlim_max = Big(j, "hard");
    plan->rlimits.push_back(r);
  }
  Napi::Value user = o.Get("user");
  if (user.IsObject()) {
    Napi::Object u = user.As<Napi::Object>();
    plan->setUser = true;
    plan->uid = static_cast<uid_t>(Num(u, "uid"));
    plan->gid = static_cast<gid_t>(Num(u, "gid"));
    Napi::Value g = u.Get("groups");
    if (g.IsArray()) {
      plan->setGroups = true;
      Napi::Array ga = g.As<Napi::Array>();
      for (uint32_t i = 0; i < ga.Length(); ++i) plan->groups.push_back(ga.Get(i).As<Napi::Number>().Uint32Value());
    }
  }
  plan->umask = static_cast<int>(Num(o, "umask", -1));
  Napi::Value caps = o.Get("caps");
  if (caps.IsObject()) {
    Napi::Object k = caps.As<Napi::Object>();
    plan->setCaps = true;
    plan->lastCap = static_cast<int>(Num(k, "lastCap", 40));
    plan->bounding = Big(k, "bounding");
    plan->effective = Big(k, "effective");
    plan->permitted = Big(k, "permitted");
    plan->inheritable = Big(k, "inheritable");
    plan->ambient = Big(k, "ambient");
  }
  plan->noNewPrivileges = Bool(o, "noNewPrivileges");
  Napi::Value seccomp = o.Get("seccomp");
  if (seccomp.IsBuffer()) {
    Napi::Buffer<uint8_t> buf = seccomp.As<Napi::Buffer<uint8_t>>();
    size_t count = buf.Length() / sizeof(struct sock_filter);
    plan->seccomp.resize(count);
    std::memcpy(plan->seccomp.data(), buf.Data(), count * sizeof(struct sock_filter));
    plan->hasSeccomp = true;
    plan->seccompFlags = static_cast<unsigned>(Num(o, "seccompFlags"));
  }
  plan->cwd = Str(o, "cwd", &plan->hasCwd);
  plan->argvStore = Strings(o, "argv");
  plan->envStore = Strings(o, "envp");
  plan->candidates = Strings(o, "candidates");
  plan->argv = Ptrs(plan->argvStore);
  plan->envp = Ptrs(plan->envStore);
  Napi::Value stdio = o.Get("stdio");
  if (stdio.IsArray()) {
    Napi::Array a = stdio.As<Napi::Array>();
    for (uint32_t i = 0; i < 3; ++i) plan->stdio[i] = a.Get(i).As<Napi::Number>().Int32Value();
  }
  plan->preserveFds = static_cast<int>(Num(o, "preserveFds"));
  plan->fifoFd = static_cast<int>(Num(o, "fifoFd", -1));
  plan->setsid = !Bool(o, "noSetsid");
  plan->consoleSocket = Str(o, "consoleSocket", &plan->terminal);
  plan->consoleFd = static_cast<int>(Num(o, "consoleFd", -1));
  if (plan->consoleFd >= 0) plan->terminal = true;
  plan->newKeyring = Bool(o, "newKeyring");
  plan->pauseBeforePivot = Bool(o, "pauseBeforePivot") && plan->hasRootfs;
  plan->pauseBeforeExec = Bool(o, "pauseBeforeExec") && plan->fifoFd < 0;
  plan->rows = static_cast<unsigned short>(Num(o, "rows"));
  plan->cols = static_cast<unsigned short>(Num(o, "cols"));
  return plan;
}

// Calls cb(err, pid, pidfd[, statusFd, syncFd]) with the outcome of a spawn or resume. From a
// libuv callback (no JS on the stack) with `context`: through MakeCallback, so that the
// promise jobs it queues run when it returns, as after an AsyncWorker's callback.
void ReportOutcome(Napi::Env env, Napi::FunctionReference& cb, const Outcome& out, bool withPipes,
                   Napi::AsyncContext* context = nullptr) {
  Napi::HandleScope scope(env);
  std::vector<napi_value> args;
  if (out.err != 0) {
    Napi::Value err = MakeSyscallError(env, out.err, out.syscall, {out.stage, nullptr});
    if (err.IsObject()) err.As<Napi::Object>().Set("op", Napi::Number::New(env, out.op));
    args = {err, Napi::Number::New(env, -1), Napi::Number::New(env, -1)};
  } else if (withPipes) {
    args = {env.Null(), Napi::Number::New(env, out.pid), Napi::Number::New(env, out.pidfd),
            Napi::Number::New(env, out.statusFd), Napi::Number::New(env, out.syncFd)};
  } else {
    args = {env.Null(), Napi::Number::New(env, out.pid), Napi::Number::New(env, out.pidfd)};
  }
  if (context != nullptr) {
    cb.MakeCallback(env.Global(), args, *context);
  } else {
    cb.Call(args);
  }
}

class ContainerWork : public Napi::AsyncWorker {
 public:
  ContainerWork(Napi::Function cb, std::unique_ptr<ContainerPlan> plan, Spawner* spawner)
      : Napi::AsyncWorker(cb, "BerthContainer"), plan_(std::move(plan)), spawner_(spawner) {}
  void Execute() override {
    if (!plan_->newTime) return LaunchContainer(plan_, spawner_, out_);
    if (spawner_ == nullptr) return CloneContainer(*plan_, out_);
    // A spawner's init must not be fork-style (see CloneContainer): the TS side never asks.
    CancelSpawner(spawner_);
    SetFail(out_, EINVAL, "clone", "clone");
  }
  void OnOK() override { ReportOutcome(Env(), Callback(), out_, true); }

 private:
  std::shared_ptr<const ContainerPlan> plan_;
  Spawner* spawner_;
  Outcome out_;
};

// ---------------------------------------------------------------------------------------------
// A spawner's launch, watched from the JS thread (no libuv pool thread on the path).
//
// The pool is shared with the daemon's fs work (cgroup mkdirs and rmdirs), so an AsyncWorker
// can queue behind them; and with a spawner, the pool thread would only block in read() on the
// status pipe. So: the JS thread hands the launch to the spawner's thread directly and watches
// the status pipe (non-blocking) with a uv_poll_t. The records and what each means are those of
// LaunchContainer + ParentSide + ReadStatus; a failed init is killed and reaped before the
// callback, its reaping waited for on its pidfd (poll) rather than in a blocking waitid. Plans
// that pause (hooks, exec) or write cgroup.procs keep the pool path (ContainerWork).

bool OnLoopEligible(const ContainerPlan& plan) {
  return !plan.newTime && !plan.pauseBeforePivot && !plan.pauseBeforeExec && plan.cgroupProcsFds.empty();
}

struct LoopSpawn {
  napi_env env = nullptr;
  Napi::FunctionReference cb;
  std::unique_ptr<Napi::AsyncContext> context;
  std::shared_ptr<const ContainerPlan> plan;
  uv_poll_t statusPoll;
  uv_poll_t reapPoll;
  bool statusPollClosed = false;
  bool reapPollUsed = false;
  bool reapPollClosed = false;
  int openHandles = 0;
  int statusRead = -1, statusWrite = -1, syncRead = -1, syncWrite = -1;
  bool hello = false;     // the init's hello was read: our copies of its pipe ends are closed
  int reapFd = -1;        // a killed (or dead) init's pidfd, reaped before the callback
  size_t have = 0;        // bytes of the next record read so far
  char buf[sizeof(CRecord)];
  Outcome out;
  Outcome early;          // a failure found before any launch (kCLocalFail)
  bool finished = false;  // the status pipe is done with
};

void LoopSpawnTeardown(void* arg);

void OnLoopSpawnClosed(uv_handle_t* h) {
  auto* s = static_cast<LoopSpawn*>(h->data);
  if (--s->openHandles == 0) delete s;
}

// A poll handle is always closed before its fd, on the same stack: libuv's stop does an
// EPOLL_CTL_DEL on the fd number, which must not hit another file that got that number since.
void CloseLoopHandle(LoopSpawn* s, uv_poll_t* h, bool* closed) {
  if (*closed) return;
  *closed = true;
  uv_close(reinterpret_cast<uv_handle_t*>(h), OnLoopSpawnClosed);
}

// Calls back (once the init is reaped, if it failed); the handles are closing by now and free
// the LoopSpawn.
void LoopSpawnReport(LoopSpawn* s) {
  napi_remove_env_cleanup_hook(s->env, LoopSpawnTeardown, s);
  Napi::Env env(s->env);
  Napi::FunctionReference cb = std::move(s->cb);
  std::unique_ptr<Napi::AsyncContext> context = std::move(s->context);
  Outcome out = s->out;
  ReportOutcome(env, cb, out, true, context.get());
  ReportPendingException(env);
}

void LoopSpawnReapNow(LoopSpawn* s) {
  if (s->reapPollUsed) CloseLoopHandle(s, &s->reapPoll, &s->reapPollClosed);
  ReapAndClose(s->reapFd);
  s->reapFd = -1;
}

void OnLoopReapReadable(uv_poll_t* h, int status, int) {
  auto* s = static_cast<LoopSpawn*>(h->data);
  if (status < 0) {
    LoopSpawnReapNow(s);  // cannot poll: wait here (it is SIGKILLed)
    return LoopSpawnReport(s);
  }
  siginfo_t si;
  std::memset(&si, 0, sizeof si);
  int rc;
  do rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(s->reapFd), &si, WEXITED | WNOHANG);
  while (rc < 0 && errno == EINTR);
  if (rc == 0 && si.si_pid == 0) return;  // not exited yet
  if (rc < 0 && errno == EAGAIN) return;
  CloseLoopHandle(s, &s->reapPoll, &s->reapPollClosed);
  ::close(s->reapFd);
  s->reapFd = -1;
  LoopSpawnReport(s);
}

// Stops watching the status pipe and closes our ends of the pipes (the handle first).
void LoopSpawnCloseEnds(LoopSpawn* s) {
  CloseLoopHandle(s, &s->statusPoll, &s->statusPollClosed);
  if (s->statusRead >= 0) ::close(s->statusRead);
  if (s->syncWrite >= 0) ::close(s->syncWrite);
  s->statusRead = -1;
  s->syncWrite = -1;
}

// The status pipe is done with (LoopSpawnCloseEnds): report now, or once `reapFd` is reaped.
void LoopSpawnFinish(LoopSpawn* s) {
  s->finished = true;
  if (s->reapFd >= 0) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(s->env, &loop);
    if (uv_poll_init(loop, &s->reapPoll, s->reapFd) == 0) {
      s->reapPoll.data = s;
      s->reapPollUsed = true;
      ++s->openHandles;
      if (uv_poll_start(&s->reapPoll, UV_READABLE, OnLoopReapReadable) == 0) return;
    }
    LoopSpawnReapNow(s);  // cannot poll: wait here (it is SIGKILLed)
  }
  LoopSpawnReport(s);
}

// Failed after the hello: the init is killed, and reaped before the callback.
void LoopSpawnKill(LoopSpawn* s) {
  ::syscall(SYS_pidfd_send_signal, s->out.pidfd, SIGKILL, nullptr, 0);
  LoopSpawnCloseEnds(s);
  s->reapFd = s->out.pidfd;
  s->out.pid = -1;
  s->out.pidfd = -1;
  LoopSpawnFinish(s);
}

// The first report (LaunchContainer's read): the init's hello, or why there is no init.
// False once finished.
bool LoopSpawnFirst(LoopSpawn* s, const CRecord* rec, ssize_t n, int readErr) {
  // The init has its own fd table now (or there is no init): our copies of its ends go.
  ::close(s->statusWrite);
  ::close(s->syncRead);
  s->statusWrite = -1;
  s->syncRead = -1;
  s->hello = true;
  if (rec == nullptr || rec->stage != kCHello) {
    LoopSpawnCloseEnds(s);
    if (rec != nullptr && rec->stage == kCLaunchFailed) {
      SetFail(s->out, rec->err, rec->op == 1 ? "setns" : "clone", rec->op == 1 ? "join_pid" : "clone");
    } else if (rec != nullptr && rec->stage == kCAttachFailed) {
      SetFail(s->out, rec->err, rec->op == 1 ? "unshare" : "write", "cgroup");
    } else if (rec != nullptr && rec->stage == kCLocalFail) {
      s->out = s->early;
    } else if (rec != nullptr && rec->stage == kCDiedEarly) {
      s->reapFd = rec->op;
      SetFail(s->out, rec->err, "clone", "init_died");
    } else {
      SetFail(s->out, n < 0 ? readErr : EPROTO, "read", "status");
    }
    LoopSpawnFinish(s);
    return false;
  }
  int pidfd = rec->op;
  errno = 0;
  pid_t pid = PidOfPidfd(pidfd);
  if (pid <= 0) {
    int err = errno;
    SetFail(s->out, err != 0 ? err : EPROTO, "read", "status");
    s->out.pidfd = pidfd;
    LoopSpawnKill(s);
    return false;
  }
  s->out.pid = pid;
  s->out.pidfd = pidfd;
  if (!ParentSteps(*s->plan, pid, s->syncWrite, s->out)) {
    LoopSpawnKill(s);
    return false;
  }
  ::close(s->syncWrite);  // no pause on this path
  s->syncWrite = -1;
  return true;
}

// A later report (ReadStatus, with no pause): ready, exec'd (EOF), or a failure.
void LoopSpawnNext(LoopSpawn* s, const CRecord* rec, ssize_t n, int readErr) {
  bool holds = s->plan->fifoFd >= 0;
  if ((n == 0 && rec == nullptr && !holds) || (rec != nullptr && rec->stage == kCReady)) {
    LoopSpawnCloseEnds(s);
    return LoopSpawnFinish(s);
  }
  if (rec != nullptr && rec->stage >= 0 && rec->stage < kCStageCount) {
    SetFail(s->out, rec->err, StageSyscall(rec->stage), kCStageNames[rec->stage], rec->op);
  } else {
    SetFail(s->out, n < 0 ? readErr : EPROTO, "read", "status");
  }
  LoopSpawnKill(s);
}

void OnLoopStatusReadable(uv_poll_t* h, int status, int) {
  auto* s = static_cast<LoopSpawn*>(h->data);
  while (!s->finished) {
    ssize_t n;
    int readErr = 0;
    if (status < 0) {
      n = -1;
      readErr = -status;
    } else {
      do n = ::read(s->statusRead, s->buf + s->have, sizeof s->buf - s->have);
      while (n < 0 && errno == EINTR);
      readErr = errno;
      if (n < 0 && (readErr == EAGAIN || readErr == EWOULDBLOCK)) return;
    }
    const CRecord* rec = nullptr;
    CRecord full;
    if (n > 0) {
      s->have += static_cast<size_t>(n);
      if (s->have < sizeof s->buf) continue;
      std::memcpy(&full, s->buf, sizeof full);
      s->have = 0;
      rec = &full;
    } else if (n == 0 && s->have > 0) {
      n = 1;  // a short record, then EOF: as a short read in the blocking path
    }
    if (!s->hello) {
      if (!LoopSpawnFirst(s, rec, n, readErr)) return;
      continue;
    }
    return LoopSpawnNext(s, rec, n, readErr);
  }
}

// Environment teardown (worker termination) with a launch in flight: nobody is left to tell.
// Handles closed without a callback and the LoopSpawn leaked, as in spawn.cc's Teardown.
void LoopSpawnTeardown(void* arg) {
  auto* s = static_cast<LoopSpawn*>(arg);
  s->cb.Reset();
  s->context.reset();
  if (!s->statusPollClosed) uv_close(reinterpret_cast<uv_handle_t*>(&s->statusPoll), nullptr);
  s->statusPollClosed = true;
  if (s->reapPollUsed && !s->reapPollClosed) uv_close(reinterpret_cast<uv_handle_t*>(&s->reapPoll), nullptr);
  s->reapPollClosed = true;
  LoopSpawnCloseEnds(s);  // the init sees EOF (or EPIPE) and ends
  // Before the hello the spawner's thread may still write to statusWrite: left open.
  if (s->out.pidfd >= 0) ::close(s->out.pidfd);
  if (s->reapFd >= 0) ::close(s->reapFd);
}

// containerSpawn with a spawner and an eligible plan. False (nothing done, the spawner still
// the caller's) when the watch cannot be set up: the caller takes the pool path, which fails
// the same way if the cause was ours.
bool SpawnOnLoop(Napi::Env env, Napi::Function cb, std::unique_ptr<ContainerPlan>& planIn, Spawner* spawner) {
  Outcome probe;
  int fds[4];
  if (!MakePipes(*planIn, fds, probe)) return false;
  auto closeAll = [&] {
    for (int fd : fds) ::close(fd);
  };
  int fl = ::fcntl(fds[0], F_GETFL);
  if (fl < 0 || ::fcntl(fds[0], F_SETFL, fl | O_NONBLOCK) != 0) {
    closeAll();
    return false;
  }
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    closeAll();
    return false;
  }
  auto s = std::make_unique<LoopSpawn>();
  if (uv_poll_init(loop, &s->statusPoll, fds[0]) != 0) {
    closeAll();
    return false;
  }
  LoopSpawn* raw = s.release();  // freed by the close callback(s) from here
  raw->statusPoll.data = raw;
  raw->openHandles = 1;
  if (uv_poll_start(&raw->statusPoll, UV_READABLE, OnLoopStatusReadable) != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&raw->statusPoll), OnLoopSpawnClosed);
    closeAll();
    return false;
  }
  std::shared_ptr<const ContainerPlan> plan(std::move(planIn));
  raw->env = env;
  raw->plan = plan;
  raw->statusRead = fds[0];
  raw->statusWrite = fds[1];
  raw->syncRead = fds[2];
  raw->syncWrite = fds[3];
  raw->cb = Napi::Persistent(cb);
  raw->context = std::make_unique<Napi::AsyncContext>(env, "BerthContainer");
  napi_add_env_cleanup_hook(env, LoopSpawnTeardown, raw);

  // From here every outcome comes through the status pipe: a failure known now is written to
  // it as the launching thread would have (the callback stays asynchronous).
  Outcome out;
  Launch* l = NewLaunch(plan, raw->statusWrite, raw->syncRead, out);
  bool started = false;
  if (l != nullptr) {
    SharedMmEnter();
    started = HandToSpawner(spawner, l, out, false);
    if (!started) {
      SharedMmLeave();
      ::munmap(l->stack, l->stackSize);
      delete l;
    }
  } else {
    CancelSpawner(spawner);
  }
  if (!started) {
    // No init: the first report is this failure, read back from the pipe like any other.
    raw->early = out;
    CRecord rec{kCLocalFail, out.err, -1};
    ssize_t ignored = ::write(raw->statusWrite, &rec, sizeof rec);
    (void)ignored;
  }
  return true;
}

// containerResume(pid, pidfd, statusFd, syncFd, holds, go, cb(err, pid, pidfd)): a container
// paused before pivot_root goes on (go) and is waited for like containerSpawn, or is killed and
// reaped (!go). Either way the two pipe ends are consumed.
class ResumeWork : public Napi::AsyncWorker {
 public:
  ResumeWork(Napi::Function cb, pid_t pid, int pidfd, int statusFd, int syncFd, bool holds, bool go)
      : Napi::AsyncWorker(cb, "BerthContainerResume"), statusFd_(statusFd), syncFd_(syncFd), holds_(holds), go_(go) {
    out_.pid = pid;
    out_.pidfd = pidfd;
  }
  void Execute() override {
    char cont = 1;
    if (go_ && ::write(syncFd_, &cont, 1) == 1) {
      ::close(syncFd_);
      ReadStatus(holds_, statusFd_, -1, out_);
      return;
    }
    if (go_) SetFail(out_, errno, "write", "sync");
    ::syscall(SYS_pidfd_send_signal, out_.pidfd, SIGKILL, nullptr, 0);
    ::close(syncFd_);
    ::close(statusFd_);
    ReapAndClose(out_.pidfd);
    out_.pid = -1;
    out_.pidfd = -1;
  }
  void OnOK() override { ReportOutcome(Env(), Callback(), out_, false); }

 private:
  int statusFd_, syncFd_;
  bool holds_, go_;
  Outcome out_;
};

Napi::Value ContainerResume(const Napi::CallbackInfo& info) {
  auto* work = new ResumeWork(info[6].As<Napi::Function>(), info[0].As<Napi::Number>().Int32Value(),
                              info[1].As<Napi::Number>().Int32Value(), info[2].As<Napi::Number>().Int32Value(),
                              info[3].As<Napi::Number>().Int32Value(), info[4].As<Napi::Boolean>().Value(),
                              info[5].As<Napi::Boolean>().Value());
  work->Queue();
  return info.Env().Undefined();
}

// Takes the spawner out of its handle (once); null if there is none or it was used.
Spawner* TakeSpawner(Napi::Value v) {
  if (!v.IsExternal()) return nullptr;
  auto* h = v.As<Napi::External<SpawnerHandle>>().Data();
  Spawner* s = h->spawner;
  h->spawner = nullptr;
  return s;
}

// containerSpawn(plan, cb[, spawner]): with a spawner, its thread (already in the container's
// cgroups) clones the init.
Napi::Value ContainerSpawn(const Napi::CallbackInfo& info) {
  auto plan = ParsePlan(info[0].As<Napi::Object>());
  if (plan == nullptr) {
    Napi::Error::New(info.Env(), "container plan: malformed rootfs ops").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Spawner* spawner = info.Length() > 2 ? TakeSpawner(info[2]) : nullptr;
  if (spawner != nullptr && OnLoopEligible(*plan) && SpawnOnLoop(info.Env(), info[1].As<Napi::Function>(), plan, spawner)) {
    return info.Env().Undefined();
  }
  auto* work = new ContainerWork(info[1].As<Napi::Function>(), std::move(plan), spawner);
  work->Queue();
  return info.Env().Undefined();
}

// spawnerCreate(tasksFds, unshareFlags): starts a thread that writes its tid into each (open,
// O_WRONLY) `tasks` file, unshares those namespaces (CLONE_NEWNET/IPC/UTS) and waits for a
// plan. The fds become the thread's (it closes them).
Napi::Value SpawnerCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = std::make_unique<Spawner>();
  s->unshareFlags = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  Napi::Array fds = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < fds.Length(); ++i) s->tasksFds.push_back(fds.Get(i).As<Napi::Number>().Int32Value());
  if (info.Length() > 2 && info[2].IsArray()) {
    Napi::Array binds = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < binds.Length(); ++i) {
      Napi::Array b = binds.Get(i).As<Napi::Array>();
      s->treeBinds.emplace_back(b.Get(0u).As<Napi::String>().Utf8Value(), b.Get(1u).As<Napi::String>().Utf8Value());
    }
  }
  // The thread takes no signals: they stay with Node's own threads.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  int rc = pthread_create(&s->thread, nullptr, SpawnerMain, s.get());
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  if (rc != 0) {
    for (int fd : s->tasksFds) ::close(fd);
    return ThrowSyscallError(env, rc, "pthread_create");
  }
  auto* h = new SpawnerHandle{s.release()};
  return Napi::External<SpawnerHandle>::New(env, h, [](Napi::Env, SpawnerHandle* handle) {
    if (handle->spawner != nullptr) CancelSpawner(handle->spawner);
    delete handle;
  });
}

// spawnerRelease(spawner): an unused spawner's thread exits (leaving its cgroups); no-op once used.
Napi::Value SpawnerRelease(const Napi::CallbackInfo& info) {
  Spawner* s = TakeSpawner(info[0]);
  if (s != nullptr) CancelSpawner(s);
  return info.Env().Undefined();
}

// watchPidfd(pidfd, onExit(err, code, signal)): reports the exit of a child through its
// pidfd, watched on the event loop; reaps it with waitid(P_PIDFD) and closes the pidfd.
struct PidfdWatch {
  napi_env env;
  int pidfd;
  uv_poll_t poll;
  Napi::FunctionReference cb;
};

void OnWatchClosed(uv_handle_t* h) { delete static_cast<PidfdWatch*>(h->data); }

void OnWatchReadable(uv_poll_t* handle, int status, int) {
  auto* w = static_cast<PidfdWatch*>(handle->data);
  Napi::Env env(w->env);
  siginfo_t si;
  std::memset(&si, 0, sizeof si);
  int rc = 0, err = 0;
  if (status < 0) {
    rc = -1;
    err = -status;
  } else {
    do rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(w->pidfd), &si, WEXITED | WNOHANG);
    while (rc < 0 && errno == EINTR);
    err = errno;
    if (rc == 0 && si.si_pid == 0) return;
  }
  uv_poll_stop(&w->poll);
  ::close(w->pidfd);
  Napi::HandleScope scope(env);
  Napi::Value e = env.Null(), code = env.Null(), sig = env.Null();
  if (rc < 0) {
    // ECHILD: not our child (a container created by another process): it has exited, but
    // its status belongs to its parent.
    e = MakeSyscallError(env, err, "waitid");
  } else if (si.si_code == CLD_EXITED) {
    code = Napi::Number::New(env, si.si_status);
  } else {
    sig = Napi::Number::New(env, si.si_status);
  }
  Napi::FunctionReference cb = std::move(w->cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), OnWatchClosed);
  cb.Call(env.Global(), {e, code, sig});
  ReportPendingException(env);
}

Napi::Value WatchPidfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto w = std::make_unique<PidfdWatch>();
  w->env = env;
  w->pidfd = info[0].As<Napi::Number>().Int32Value();
  w->poll.data = w.get();
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  int rc = uv_poll_init(loop, &w->poll, w->pidfd);
  if (rc != 0) return ThrowSyscallError(env, -rc, "uv_poll_init");
  rc = uv_poll_start(&w->poll, UV_READABLE, OnWatchReadable);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), OnWatchClosed);
    w.release();
    return ThrowSyscallError(env, -rc, "uv_poll_start");
  }
  w->cb = Napi::Persistent(info[1].As<Napi::Function>());
  w.release();
  return env.Undefined();
}

Napi::Value Mkfifo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  mode_t mode = info[1].As<Napi::Number>().Uint32Value();
  mode_t old = ::umask(0);
  int rc = ::mkfifo(path.c_str(), mode);
  int err = errno;
  ::umask(old);
  if (rc != 0) return ThrowSyscallError(env, err, "mkfifo", {nullptr, path.c_str()});
  return env.Undefined();
}

Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  long fd = ::syscall(SYS_pidfd_open, info[0].As<Napi::Number>().Int32Value(), 0);
  if (fd < 0) return ThrowSyscallError(env, errno, "pidfd_open");
  return Napi::Number::New(env, static_cast<double>(fd));
}

Napi::Value SetChildSubreaper(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) return ThrowSyscallError(env, errno, "prctl");
  return env.Undefined();
}

// reapZombie(pid): reaps exactly that child if it is a zombie (WNOHANG); true if reaped. For
// orphans reparented to a subreaper daemon; never a wait on "any child", which would steal the
// exit status of children that others (libuv, the pidfd watches) wait for.
Napi::Value ReapZombie(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  siginfo_t si;
  std::memset(&si, 0, sizeof si);
  int rc = ::waitid(P_PID, static_cast<id_t>(info[0].As<Napi::Number>().Int32Value()), &si, WEXITED | WNOHANG);
  if (rc != 0) {
    if (errno == ECHILD) return Napi::Boolean::New(env, false);
    return ThrowSyscallError(env, errno, "waitid");
  }
  return Napi::Boolean::New(env, si.si_pid != 0);
}

// socketpair(): two connected AF_UNIX stream sockets, both O_CLOEXEC.
Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    ThrowSyscallError(env, errno, "socketpair");
    return env.Undefined();
  }
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, sv[0]));
  out.Set(1u, Napi::Number::New(env, sv[1]));
  return out;
}

// recvFd(sock): the one fd sent on the socket with SCM_RIGHTS (O_CLOEXEC), without blocking:
// EAGAIN if nothing was sent. Any other fds in the message are closed.
Napi::Value RecvFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sock = info[0].As<Napi::Number>().Int32Value();
  char byte[64];
  struct iovec iov;
  iov.iov_base = byte;
  iov.iov_len = sizeof byte;
  union {
    char buf[CMSG_SPACE(4 * sizeof(int))];
    struct cmsghdr align;
  } control;
  struct msghdr msg;
  InitMsg(msg, iov, control.buf, sizeof control.buf);
  ssize_t n;
  do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    ThrowSyscallError(env, errno, "recvmsg");
    return env.Undefined();
  }
  int got = -1;
  for (struct cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
      if (got < 0) got = fd;
      else ::close(fd);
    }
  }
  if (got < 0) {
    ThrowSyscallError(env, EBADMSG, "recvmsg");
    return env.Undefined();
  }
  return Napi::Number::New(env, got);
}

// setWinsize(fd, rows, cols): TIOCSWINSZ on a terminal (a container's pty master).
Napi::Value SetWinsize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct winsize ws;
  std::memset(&ws, 0, sizeof ws);
  ws.ws_row = static_cast<unsigned short>(info[1].As<Napi::Number>().Uint32Value());
  ws.ws_col = static_cast<unsigned short>(info[2].As<Napi::Number>().Uint32Value());
  if (::ioctl(info[0].As<Napi::Number>().Int32Value(), TIOCSWINSZ, &ws) != 0) return ThrowSyscallError(env, errno, "ioctl");
  return env.Undefined();
}

// isDumpable(): PR_GET_DUMPABLE of this process (see SharedMmEnter).
Napi::Value IsDumpable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), ::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  ::close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

void InitContainer(Napi::Env env, Napi::Object exports) {
  exports.Set("containerSpawn", Napi::Function::New(env, ContainerSpawn, "containerSpawn"));
  exports.Set("spawnerCreate", Napi::Function::New(env, SpawnerCreate, "spawnerCreate"));
  exports.Set("spawnerRelease", Napi::Function::New(env, SpawnerRelease, "spawnerRelease"));
  exports.Set("containerResume", Napi::Function::New(env, ContainerResume, "containerResume"));
  exports.Set("watchPidfd", Napi::Function::New(env, WatchPidfd, "watchPidfd"));
  exports.Set("mkfifo", Napi::Function::New(env, Mkfifo, "mkfifo"));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper, "setChildSubreaper"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("isDumpable", Napi::Function::New(env, IsDumpable, "isDumpable"));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("recvFd", Napi::Function::New(env, RecvFd, "recvFd"));
  exports.Set("setWinsize", Napi::Function::New(env, SetWinsize, "setWinsize"));
  exports.Set("reapZombie", Napi::Function::New(env, ReapZombie, "reapZombie"));
}

ModuleRegistrar registrar(InitContainer);

}  // namespace
}  // namespace berth

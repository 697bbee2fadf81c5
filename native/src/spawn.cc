// spawn(): clone + execve with new namespaces, and exit reporting through a pidfd.
//
// The sequence, and why each step is there:
//
//   JS thread: build argv/envp/paths (ChildPlan), queue SpawnWork
//   pool thread                                 child (shares our memory until execve)
//   -----------                                 --------------------------------------
//   pipe2(O_CLOEXEC) -> exec-status pipe,
//   mmap a stack for the child
//   block every signal
//   clone(CLONE_VM | CLONE_VFORK |   ------->   reset every disposition to SIG_DFL
//         CLONE_PIDFD | CLONE_NEW*)            [unshare(CLONE_NEWTIME)], sethostname,
//     (this thread sleeps until the             dup2 stdio, close_range(CLOEXEC), chdir,
//      child has exec'd or exited)              unblock signals, execve
//   restore the signal mask                     on failure: write {stage, errno}, _exit(127)
//   close the write end, free the stack,
//   read the exec status (EOF = success; on failure reap the child)
//   JS thread: watch the pidfd with uv_poll on the event loop; on exit waitid + callback
//
// * Why a pool thread: namespace creation happens inside clone(), in the calling thread, and
//   takes milliseconds for net and mount namespaces: too long for the event loop. Consequence:
//   the child starts from the namespaces of the pool thread, i.e. those the process started
//   with; unshare()/setns() done on the JS thread do not carry over to spawn()ed children.
// * Why CLONE_VM | CLONE_VFORK (what glibc's posix_spawn does) rather than a fork-style clone:
//   a fork copies the page tables of the whole Node process, holding its mm lock, which
//   stalls every other thread that faults meanwhile, the JS thread included; measured here,
//   0.3 ms at 44 MB RSS and 8 ms at 570 MB. The vfork-style clone costs the same at any size:
//   namespace creation plus the child's few syscalls up to execve.
// * The child runs on its own stack in our address space while the cloning thread sleeps;
//   other threads of the process keep running and may hold any lock (malloc, stdio, the C++
//   runtime). So it touches only data laid out before clone(), writes only its own stack (and
//   errno, which is this suspended thread's), and makes only async-signal-safe syscalls.
// * Signals are blocked across clone() so that no Node/libuv handler can run in the child, on
//   our memory. The child resets dispositions (its handler table is a copy: no CLONE_SIGHAND)
//   before unblocking: ignored signals (Node ignores SIGPIPE) would otherwise stay ignored
//   across execve.
// * Success is the exec-status pipe reaching EOF: its write end is O_CLOEXEC, so a successful
//   execve closes it. Failure is an 8-byte {stage, errno} record (< PIPE_BUF, so atomic).
// * The legacy clone() used here cannot take CLONE_NEWTIME (its low byte is the exit signal),
//   so the child unshare()s the time namespace instead: execve moves it into
//   time_for_children, which ends in the same place as clone3(CLONE_NEWTIME).
// * Exits are not polled for and never block: the pidfd is watched with uv_poll on the Node
//   event loop, and the exit is reaped with waitid(P_PIDFD, WNOHANG) on this child only.
//   libuv's SIGCHLD handler calls waitpid() only for the pids of its own uv_process_t
//   handles, so it never reaps ours (checked by a test).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "addon.h"


namespace berth {

namespace {

// What the child reports over the exec-status pipe when a step fails.
enum Stage : int32_t {
  kStageTimeNamespace = 0,
  kStageHostname = 1,
  kStageStdio = 2,
  kStageCloseRange = 3,
  kStageChdir = 4,
  kStageExecve = 5,
  kStageCount = 6,
};

struct StageInfo {
  const char* stage;
  const char* syscall;
};

// Indexed by Stage. The stage names are part of the TS API (SpawnStage).
constexpr StageInfo kStages[kStageCount] = {
    {"unshare", "unshare"}, {"sethostname", "sethostname"}, {"stdio", "dup2"},
    {"close_range", "close_range"}, {"chdir", "chdir"}, {"execve", "execve"},
};

struct ChildFailure {
  int32_t stage;
  int32_t err;
};

// Everything the child needs, laid out before clone(): the child never allocates.
struct ChildPlan {
  std::string file;
  std::vector<std::string> argvStore;
  std::vector<std::string> envStore;
  std::vector<char*> argv;  // nullptr-terminated views into argvStore
  std::vector<char*> envp;  // nullptr-terminated views into envStore
  std::string cwd;
  bool hasCwd = false;
  std::string hostname;
  bool hasHostname = false;
  int stdio[3] = {0, 1, 2};  // this process's own 0, 1, 2 unless told otherwise
  uint64_t cloneFlags = 0;
};

// ---------------------------------------------------------------------------------------------
// Child side. Async-signal-safe calls only; never returns.

[[noreturn]] void ChildFail(int statusFd, Stage stage) {
  ChildFailure failure{stage, errno};
  // Nothing useful can be done if this write fails: the parent then sees EOF and a 127 exit.
  ssize_t ignored = ::write(statusFd, &failure, sizeof failure);
  (void)ignored;
  ::_exit(127);
}

struct ChildArgs {
  const ChildPlan* plan;
  int statusFd;
};

[[noreturn]] void ChildMain(const ChildPlan& plan, int statusFd) {
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    // glibc refuses its internal real-time signals (EINVAL); they stay blocked until execve,
    // which resets caught signals anyway.
    ::sigaction(sig, &dfl, nullptr);
  }

  if ((plan.cloneFlags & CLONE_NEWTIME) != 0 && ::unshare(CLONE_NEWTIME) != 0) {
    ChildFail(statusFd, kStageTimeNamespace);
  }

  if (plan.hasHostname && ::sethostname(plan.hostname.data(), plan.hostname.size()) != 0) {
    ChildFail(statusFd, kStageHostname);
  }

  // Always done, even for the default 0, 1, 2: Node marks its own stdio O_CLOEXEC (seen on
  // Node 20 here), so "inherit" also needs dup2, which clears FD_CLOEXEC on the target.
  // Every source is copied above 2 first, so that a mapping like [1, 0, 2] does not
  // overwrite a source before it is used; the copies are O_CLOEXEC and vanish at execve.
  int copies[3];
  for (int i = 0; i < 3; ++i) {
    copies[i] = ::fcntl(plan.stdio[i], F_DUPFD_CLOEXEC, 3);
    if (copies[i] < 0) ChildFail(statusFd, kStageStdio);
  }
  for (int i = 0; i < 3; ++i) {
    if (::dup2(copies[i], i) < 0) ChildFail(statusFd, kStageStdio);
  }

  // Only 0, 1 and 2 cross into the new program: any descriptor the Node process opened
  // without O_CLOEXEC (ours are all O_CLOEXEC) is closed by execve.
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0 && errno != ENOSYS) {
    ChildFail(statusFd, kStageCloseRange);
  }

  if (plan.hasCwd && ::chdir(plan.cwd.c_str()) != 0) ChildFail(statusFd, kStageChdir);

  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  ::execve(plan.file.c_str(), plan.argv.data(), plan.envp.data());
  ChildFail(statusFd, kStageExecve);
}

// clone()'s entry point, on the child's own stack.
int ChildEntry(void* arg) {
  const auto* args = static_cast<const ChildArgs*>(arg);
  ChildMain(*args->plan, args->statusFd);
}

// The child's stack: ample for a few syscall wrappers, with a guard page below it.
constexpr size_t kChildStackSize = 128 * 1024;

// ---------------------------------------------------------------------------------------------
// The clone itself, on a libuv pool thread (SpawnWork::Execute).

struct SpawnOutcome {
  pid_t pid = -1;
  int pidfd = -1;
  int err = 0;                  // 0: execve succeeded
  const char* syscall = nullptr;
  const char* stage = nullptr;
  const char* path = nullptr;   // points into the plan
};

void Fail(SpawnOutcome& out, int err, const char* syscall, const char* stage, const char* path = nullptr) {
  out.err = err;
  out.syscall = syscall;
  out.stage = stage;
  out.path = path;
}

// Clones the child and waits (on this pool thread) for its execve outcome. On failure the
// child has been reaped and no descriptor is left open.
void CloneAndExec(const ChildPlan& plan, SpawnOutcome& out) {
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) return Fail(out, errno, "pipe2", "prepare");
  // Keep both ends away from 0, 1 and 2, which the child's dup2 may overwrite.
  for (int& fd : pipeFds) {
    if (fd > 2) continue;
    int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int err = errno;
    ::close(fd);
    fd = moved;
    if (moved < 0) {
      for (int other : pipeFds) {
        if (other >= 0) ::close(other);
      }
      return Fail(out, err, "fcntl", "prepare");
    }
  }

  void* stack = ::mmap(nullptr, kChildStackSize, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  if (stack == MAP_FAILED) {
    int err = errno;
    ::close(pipeFds[0]);
    ::close(pipeFds[1]);
    return Fail(out, err, "mmap", "prepare");
  }
  ::mprotect(stack, static_cast<size_t>(::sysconf(_SC_PAGESIZE)), PROT_NONE);
  char* stackTop = static_cast<char*>(stack) + kChildStackSize;  // stacks grow down

  ChildArgs childArgs{&plan, pipeFds[1]};
  int flags = static_cast<int>(plan.cloneFlags & ~static_cast<uint64_t>(CLONE_NEWTIME)) | CLONE_VM | CLONE_VFORK |
              CLONE_PIDFD | SIGCHLD;
  int pidfd = -1;

  sigset_t all;
  sigset_t saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  // Returns once the child has exec'd or exited (CLONE_VFORK); with CLONE_PIDFD the kernel
  // stores an O_CLOEXEC pidfd through the parent_tid argument.
  pid_t pid = ::clone(ChildEntry, stackTop, flags, &childArgs, &pidfd);
  int cloneErr = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);

  ::munmap(stack, kChildStackSize);
  ::close(pipeFds[1]);
  if (pid < 0) {
    ::close(pipeFds[0]);
    return Fail(out, cloneErr, "clone", "clone");
  }

  // EOF: execve closed the child's write end. A record: a step failed. Usually immediate,
  // since the child is past execve or _exit by now; it can wait only while a process forked
  // meanwhile by another thread still holds a copy of the write end (until its own execve).
  ChildFailure failure{};
  ssize_t n;
  do n = ::read(pipeFds[0], &failure, sizeof failure);
  while (n < 0 && errno == EINTR);
  int readErr = errno;
  ::close(pipeFds[0]);

  out.pid = pid;
  out.pidfd = pidfd;
  if (n == 0) return;  // execve succeeded

  if (n == static_cast<ssize_t>(sizeof failure) && failure.stage >= 0 && failure.stage < kStageCount) {
    const StageInfo& info = kStages[failure.stage];
    const char* path = nullptr;
    if (failure.stage == kStageExecve) path = plan.file.c_str();
    if (failure.stage == kStageChdir) path = plan.cwd.c_str();
    Fail(out, failure.err, info.syscall, info.stage, path);
  } else {
    Fail(out, n < 0 ? readErr : EPROTO, "read", "exec-status");
  }
  // The child has _exit'ed or is about to: reap it so that no zombie outlives the rejection.
  siginfo_t ignored;
  while (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &ignored, WEXITED) < 0 && errno == EINTR) {
  }
  ::close(pidfd);
  out.pid = -1;
  out.pidfd = -1;
}

// ---------------------------------------------------------------------------------------------
// Exit watching, on the JS thread.

}  // namespace

// One running child: its pidfd, watched by a uv_poll_t on the Node event loop. Listed in
// AddonData::children until its exit is reported; deleted when the poll handle has closed.
// JS thread only.
struct ChildWatch {
  napi_env env = nullptr;
  int pidfd = -1;
  uv_poll_t poll;
  Napi::FunctionReference onExit;  // (err: SyscallError | null, code: number | null, signal: number | null) => void
  std::unique_ptr<Napi::AsyncContext> asyncContext;
};

namespace {

void OnPollClosed(uv_handle_t* handle) { delete static_cast<ChildWatch*>(handle->data); }

void StopWatch(ChildWatch* watch) {
  uv_poll_stop(&watch->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll), OnPollClosed);
  ::close(watch->pidfd);
  watch->pidfd = -1;
}

// The pidfd is readable: the child has exited (or been killed). Reap exactly this child.
void OnPidfdReadable(uv_poll_t* handle, int status, int /*events*/) {
  auto* watch = static_cast<ChildWatch*>(handle->data);
  Napi::Env env(watch->env);
  siginfo_t info;
  std::memset(&info, 0, sizeof info);
  int rc = 0;
  int err = 0;
  if (status < 0) {
    rc = -1;
    err = -status;
  } else {
    do rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(watch->pidfd), &info, WEXITED | WNOHANG);
    while (rc < 0 && errno == EINTR);
    err = errno;
    if (rc == 0 && info.si_pid == 0) return;  // not exited yet (spurious wake-up)
    if (rc < 0 && err == EAGAIN) return;       // O_NONBLOCK pidfd, not exited yet
  }
  StopWatch(watch);
  GetAddonData(env)->children.erase(watch);

  Napi::HandleScope scope(env);
  Napi::Value error = env.Null();
  Napi::Value code = env.Null();
  Napi::Value signal = env.Null();
  if (rc < 0) {
    // ECHILD means someone else reaped it: SIGCHLD set to SIG_IGN, or a waitpid(-1) elsewhere.
    error = MakeSyscallError(env, err, "waitid");
  } else if (info.si_code == CLD_EXITED) {
    code = Napi::Number::New(env, info.si_status);
  } else {
    signal = Napi::Number::New(env, info.si_status);  // CLD_KILLED or CLD_DUMPED
  }
  watch->onExit.MakeCallback(env.Global(), {error, code, signal}, *watch->asyncContext);
  watch->onExit.Reset();
  ReportPendingException(env);
}

// ---------------------------------------------------------------------------------------------
// spawn(plan, onExec, onExit)
//   plan: { file, argv: string[] (argv[0] included), envp: string[], cwd: string | null,
//           cloneFlags: number, hostname: string | null, stdio: [number, number, number] | null }
//   onExec(err: SyscallError | null, pid: number, pidfd: number): once, when execve has
//     succeeded (err null) or the spawn failed (err set; nothing is left running or open).
//   onExit(err, code, signal): once, after a successful onExec, when the child was reaped.
//
// The clone runs on a libuv pool thread: creating namespaces is kernel work done inside
// clone() by the calling thread (measured here: ~0.7 ms for a net namespace, 0.3-3 ms for a
// mount namespace, with spikes past 5 ms), which must not land on the event loop.

class SpawnWork : public Napi::AsyncWorker {
 public:
  SpawnWork(Napi::Function onExec, Napi::Function onExit, std::unique_ptr<ChildPlan> plan)
      : Napi::AsyncWorker(onExec, "BerthSpawn"), onExit_(Napi::Persistent(onExit)), plan_(std::move(plan)) {}

  void Execute() override { CloneAndExec(*plan_, outcome_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (GetAddonData(env)->tornDown) {
      // The environment is going away (worker termination): nobody is left to tell.
      if (outcome_.pidfd >= 0) ::close(outcome_.pidfd);
      return;
    }
    Napi::HandleScope scope(env);
    if (outcome_.err != 0) {
      Callback().Call({MakeSyscallError(env, outcome_.err, outcome_.syscall, {outcome_.stage, outcome_.path}),
                       Napi::Number::New(env, -1), Napi::Number::New(env, -1)});
      return;
    }

    auto watch = std::make_unique<ChildWatch>();
    watch->env = env;
    watch->pidfd = outcome_.pidfd;
    watch->poll.data = watch.get();
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    int rc = uv_poll_init(loop, &watch->poll, watch->pidfd);
    bool initialized = rc == 0;
    if (initialized) rc = uv_poll_start(&watch->poll, UV_READABLE, OnPidfdReadable);
    if (rc != 0) {
      // Nobody could ever report on this child: kill and reap it now (it is ours and
      // SIGKILLed, so this is immediate) and fail the spawn.
      ::syscall(SYS_pidfd_send_signal, outcome_.pidfd, SIGKILL, nullptr, 0);
      siginfo_t ignored;
      ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(outcome_.pidfd), &ignored, WEXITED);
      ::close(outcome_.pidfd);
      if (initialized) {
        uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll), OnPollClosed);  // frees the watch
        watch.release();
      }
      Callback().Call({MakeSyscallError(env, -rc, "uv_poll_start", {"watch", nullptr}), Napi::Number::New(env, -1),
                       Napi::Number::New(env, -1)});
      return;
    }
    watch->onExit = std::move(onExit_);
    watch->asyncContext = std::make_unique<Napi::AsyncContext>(env, "BerthChild");
    GetAddonData(env)->children.insert(watch.get());
    watch.release();
    Callback().Call({env.Null(), Napi::Number::New(env, outcome_.pid), Napi::Number::New(env, outcome_.pidfd)});
  }

 private:
  Napi::FunctionReference onExit_;
  std::unique_ptr<ChildPlan> plan_;  // read by the pool thread during Execute only
  SpawnOutcome outcome_;
};

std::vector<std::string> StringArray(Napi::Array array) {
  std::vector<std::string> out;
  out.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) out.push_back(array.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object spec = info[0].As<Napi::Object>();

  auto plan = std::make_unique<ChildPlan>();
  plan->file = spec.Get("file").As<Napi::String>().Utf8Value();
  plan->argvStore = StringArray(spec.Get("argv").As<Napi::Array>());
  plan->envStore = StringArray(spec.Get("envp").As<Napi::Array>());
  plan->argv = Pointers(plan->argvStore);
  plan->envp = Pointers(plan->envStore);
  Napi::Value cwd = spec.Get("cwd");
  if (cwd.IsString()) {
    plan->cwd = cwd.As<Napi::String>().Utf8Value();
    plan->hasCwd = true;
  }
  Napi::Value hostname = spec.Get("hostname");
  if (hostname.IsString()) {
    plan->hostname = hostname.As<Napi::String>().Utf8Value();
    plan->hasHostname = true;
  }
  Napi::Value stdio = spec.Get("stdio");
  if (stdio.IsArray()) {
    Napi::Array fds = stdio.As<Napi::Array>();
    for (uint32_t i = 0; i < 3; ++i) plan->stdio[i] = fds.Get(i).As<Napi::Number>().Int32Value();
  }
  plan->cloneFlags = spec.Get("cloneFlags").As<Napi::Number>().Uint32Value();

  auto* work = new SpawnWork(info[1].As<Napi::Function>(), info[2].As<Napi::Function>(), std::move(plan));
  work->Queue();  // deletes itself after OnOK
  return env.Undefined();
}

// pidfdSendSignal(pidfd: number, signal: number): signals exactly the child behind the pidfd,
// with no pid-reuse race.
Napi::Value PidfdSendSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int pidfd = info[0].As<Napi::Number>().Int32Value();
  int sig = info[1].As<Napi::Number>().Int32Value();
  if (::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) != 0) {
    return ThrowSyscallError(env, errno, "pidfd_send_signal");
  }
  return env.Undefined();
}

// Environment teardown (process exit, worker termination): stop watching, release the JS
// callbacks while the env is still valid, and close our pidfds. Children are not killed:
// that is policy, and belongs to the TS layer.
//
// The handles are closed *without* a close callback, and their ChildWatch is deliberately
// leaked: when a worker thread ends, Node unloads this addon before its loop runs the pending
// close callbacks, so a callback pointing into this library would jump into unmapped code
// (seen as a SIGSEGV in uv__finish_close), and libuv still touches the handle memory then.
void Teardown(void* arg) {
  auto* data = static_cast<AddonData*>(arg);
  data->tornDown = true;
  std::unordered_set<ChildWatch*> children;
  children.swap(data->children);
  for (ChildWatch* watch : children) {
    watch->onExit.Reset();
    watch->asyncContext.reset();
    uv_poll_stop(&watch->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&watch->poll), nullptr);
    ::close(watch->pidfd);
    watch->pidfd = -1;
  }
}

}  // namespace

void InitSpawn(Napi::Env env, Napi::Object exports) {
  exports.Set("spawn", Napi::Function::New(env, Spawn, "spawn"));
  exports.Set("pidfdSendSignal", Napi::Function::New(env, PidfdSendSignal, "pidfdSendSignal"));
  napi_add_env_cleanup_hook(env, Teardown, GetAddonData(env));
}

}  // namespace berth

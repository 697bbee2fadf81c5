// Shared declarations of the berth_native addon.
//
// Division of labour: TypeScript validates and normalises every argument (names -> flag bits,
// lengths, NUL bytes) before calling in; C++ assumes valid input and only performs syscalls
// and the work that has to happen between clone() and execve().
#pragma once

#include <napi.h>

#include <unordered_set>

// Kernel constants newer than some libc headers (this build's glibc lacks a few).
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace berth {

struct ChildWatch;

// Per-environment state (the main thread and every worker thread get their own copy).
struct AddonData {
  // The TS SyscallError class, handed over once by init(); empty until then.
  Napi::FunctionReference syscallError;
  // Spawned children whose exit has not been reported yet. JS thread only.
  std::unordered_set<ChildWatch*> children;
  // Set by the env cleanup hook: from then on nothing new is watched or called back.
  bool tornDown = false;
};

AddonData* GetAddonData(Napi::Env env);

struct ErrorDetails {
  const char* stage = nullptr;
  const char* path = nullptr;
};

// Builds `new SyscallError(err, syscall, {stage, path})` with the class handed over by init().
// `err` must be captured from errno right after the failing call, before any N-API call.
Napi::Value MakeSyscallError(Napi::Env env, int err, const char* syscall, ErrorDetails details = {});

// Throws the error above and returns undefined, so callers can `return ThrowSyscallError(...)`.
Napi::Value ThrowSyscallError(Napi::Env env, int err, const char* syscall, ErrorDetails details = {});

// Reports an exception left pending by a callback made from a libuv callback (no JS caller
// to hand it to) as an uncaught exception.
void ReportPendingException(Napi::Env env);

// Self-registration for modules added later (cgroups, container init, netlink...): a .cc file
// declares `static berth::ModuleRegistrar registrar(InitFoo);` and its exports appear without
// editing addon.cc, so parallel work on the addon never touches the same lines.
using ModuleInit = void (*)(Napi::Env env, Napi::Object exports);
struct ModuleRegistrar {
  explicit ModuleRegistrar(ModuleInit init);
};
void InitRegisteredModules(Napi::Env env, Napi::Object exports);

void InitNamespaces(Napi::Env env, Napi::Object exports);
void InitMount(Napi::Env env, Napi::Object exports);
void InitSpawn(Napi::Env env, Napi::Object exports);

}  // namespace berth

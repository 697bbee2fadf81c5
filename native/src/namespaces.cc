// unshare(2), setns(2), sethostname(2).
//
// All three act on the *calling thread* (the JS main thread): the uts/net/ipc namespaces are
// per task, so libuv's pool threads keep the old ones; and the kernel refuses
// unshare(CLONE_NEWNS | CLONE_NEWUSER) and setns() into a mount or user namespace with EINVAL
// because a Node process always has several threads. New namespaces for a workload come from
// spawn() (clone flags), not from here.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "addon.h"

namespace berth {
namespace {

// unshare(flags: number /* CLONE_NEW* bits */)
Napi::Value Unshare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int flags = info[0].As<Napi::Number>().Int32Value();
  if (::unshare(flags) != 0) return ThrowSyscallError(env, errno, "unshare");
  return env.Undefined();
}

// setns(target: string /* path */ | number /* fd */, nstype: number /* 0 = any */)
Napi::Value Setns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int nstype = info[1].As<Napi::Number>().Int32Value();

  if (info[0].IsNumber()) {
    int fd = info[0].As<Napi::Number>().Int32Value();
    if (::setns(fd, nstype) != 0) return ThrowSyscallError(env, errno, "setns");
    return env.Undefined();
  }

  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ThrowSyscallError(env, errno, "open", {nullptr, path.c_str()});
  int rc = ::setns(fd, nstype);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ThrowSyscallError(env, err, "setns", {nullptr, path.c_str()});
  return env.Undefined();
}

// sethostname(name: string /* <= 64 bytes of UTF-8, checked in TS */)
Napi::Value Sethostname(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (::sethostname(name.data(), name.size()) != 0) return ThrowSyscallError(env, errno, "sethostname");
  return env.Undefined();
}

}  // namespace

void InitNamespaces(Napi::Env env, Napi::Object exports) {
  exports.Set("unshare", Napi::Function::New(env, Unshare, "unshare"));
  exports.Set("setns", Napi::Function::New(env, Setns, "setns"));
  exports.Set("sethostname", Napi::Function::New(env, Sethostname, "sethostname"));
}

}  // namespace berth

// mount(2) and umount2(2), synchronous on the JS thread: they act on the caller's mount
// namespace, which a pool thread would share anyway (mount namespaces are per fs_struct,
// shared by all threads), but keeping them here keeps errors and ordering simple.
// They are quick for tmpfs, bind and propagation changes; a mount that may block for long
// (network filesystems) is not something Berth does.
#include <sys/mount.h>

#include <cerrno>
#include <string>

#include "addon.h"

namespace berth {
namespace {

// mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null)
Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool hasSource = info[0].IsString();
  bool hasFstype = info[2].IsString();
  bool hasData = info[4].IsString();
  std::string source = hasSource ? info[0].As<Napi::String>().Utf8Value() : std::string();
  std::string target = info[1].As<Napi::String>().Utf8Value();
  std::string fstype = hasFstype ? info[2].As<Napi::String>().Utf8Value() : std::string();
  unsigned long flags = info[3].As<Napi::Number>().Uint32Value();
  std::string data = hasData ? info[4].As<Napi::String>().Utf8Value() : std::string();

  if (::mount(hasSource ? source.c_str() : nullptr, target.c_str(), hasFstype ? fstype.c_str() : nullptr, flags,
              hasData ? data.c_str() : nullptr) != 0) {
    return ThrowSyscallError(env, errno, "mount", {nullptr, target.c_str()});
  }
  return env.Undefined();
}

// umount2(target: string, flags: number /* MNT_* | UMOUNT_NOFOLLOW */)
Napi::Value Umount2(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string target = info[0].As<Napi::String>().Utf8Value();
  int flags = info[1].As<Napi::Number>().Int32Value();
  if (::umount2(target.c_str(), flags) != 0) return ThrowSyscallError(env, errno, "umount2", {nullptr, target.c_str()});
  return env.Undefined();
}

}  // namespace

void InitMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("umount2", Napi::Function::New(env, Umount2, "umount2"));
}

}  // namespace berth

// Module entry point: per-environment data, init(), and the kernel constants as this build's
// headers define them (the TS flag tables are checked against these in the kernel tests).
#include <sched.h>
#include <sys/mount.h>

#include <cstdint>
#include <vector>

#include "addon.h"


namespace berth {

AddonData* GetAddonData(Napi::Env env) { return env.GetInstanceData<AddonData>(); }

// Function-local static: safe against the unspecified order of static initialisers across files.
static std::vector<ModuleInit>& RegisteredModules() {
  static std::vector<ModuleInit> modules;
  return modules;
}
ModuleRegistrar::ModuleRegistrar(ModuleInit init) { RegisteredModules().push_back(init); }
void InitRegisteredModules(Napi::Env env, Napi::Object exports) {
  for (ModuleInit init : RegisteredModules()) init(env, exports);
}

namespace {

// init({ SyscallError }): called once by the TS loader right after loading.
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object opts = info[0].As<Napi::Object>();
  GetAddonData(env)->syscallError = Napi::Persistent(opts.Get("SyscallError").As<Napi::Function>());
  return env.Undefined();
}

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  auto set = [&](const char* name, uint64_t value) { c.Set(name, Napi::Number::New(env, static_cast<double>(value))); };
  set("CLONE_NEWNS", CLONE_NEWNS);
  set("CLONE_NEWUTS", CLONE_NEWUTS);
  set("CLONE_NEWIPC", CLONE_NEWIPC);
  set("CLONE_NEWNET", CLONE_NEWNET);
  set("CLONE_NEWPID", CLONE_NEWPID);
  set("CLONE_NEWUSER", CLONE_NEWUSER);
  set("CLONE_NEWCGROUP", CLONE_NEWCGROUP);
  set("CLONE_NEWTIME", CLONE_NEWTIME);

  set("MS_RDONLY", MS_RDONLY);
  set("MS_NOSUID", MS_NOSUID);
  set("MS_NODEV", MS_NODEV);
  set("MS_NOEXEC", MS_NOEXEC);
  set("MS_SYNCHRONOUS", MS_SYNCHRONOUS);
  set("MS_REMOUNT", MS_REMOUNT);
  set("MS_MANDLOCK", MS_MANDLOCK);
  set("MS_DIRSYNC", MS_DIRSYNC);
#ifdef MS_NOSYMFOLLOW
  set("MS_NOSYMFOLLOW", MS_NOSYMFOLLOW);
#endif
  set("MS_NOATIME", MS_NOATIME);
  set("MS_NODIRATIME", MS_NODIRATIME);
  set("MS_BIND", MS_BIND);
  set("MS_MOVE", MS_MOVE);
  set("MS_REC", MS_REC);
  set("MS_SILENT", MS_SILENT);
  set("MS_POSIXACL", MS_POSIXACL);
  set("MS_UNBINDABLE", MS_UNBINDABLE);
  set("MS_PRIVATE", MS_PRIVATE);
  set("MS_SLAVE", MS_SLAVE);
  set("MS_SHARED", MS_SHARED);
  set("MS_RELATIME", MS_RELATIME);
  set("MS_I_VERSION", MS_I_VERSION);
  set("MS_STRICTATIME", MS_STRICTATIME);
  set("MS_LAZYTIME", MS_LAZYTIME);

  set("MNT_FORCE", MNT_FORCE);
  set("MNT_DETACH", MNT_DETACH);
  set("MNT_EXPIRE", MNT_EXPIRE);
  set("UMOUNT_NOFOLLOW", UMOUNT_NOFOLLOW);
  return c;
}

}  // namespace
}  // namespace berth

// NODE_API_MODULE needs a plain identifier, hence this function outside the namespace.
static Napi::Object InitBerthNative(Napi::Env env, Napi::Object exports) {
  using namespace berth;
  env.SetInstanceData(new AddonData());
  exports.Set("init", Napi::Function::New(env, Init, "init"));
  exports.Set("constants", Constants(env));
  InitNamespaces(env, exports);
  InitMount(env, exports);
  InitSpawn(env, exports);
  InitRegisteredModules(env, exports);
  return exports;
}

NODE_API_MODULE(berth_native, InitBerthNative)

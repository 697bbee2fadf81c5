// exitNow(code): ends the process with _exit(2), skipping Node's own teardown.
//
// process.exit() joins V8's worker threads and libuv's thread pool and runs the C++ static
// destructors before the kernel's exit_group: ~0.9 ms of a one-shot `berth-runtime` run on a
// 2-vCPU VM (process.exit vs a SIGKILL of itself, measured from the last JS line to the
// parent seeing the exit), for nothing a finished CLI needs. The caller must have nothing left
// to flush: the CLI writes its output with write(2) (fs.writeSync) only.
#include <unistd.h>

#include "addon.h"

namespace berth {
namespace {

Napi::Value ExitNow(const Napi::CallbackInfo& info) {
  int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
  ::_exit(code & 0xff);
}

void InitExit(Napi::Env env, Napi::Object exports) {
  exports.Set("exitNow", Napi::Function::New(env, ExitNow, "exitNow"));
}

ModuleRegistrar registrar(InitExit);

}  // namespace
}  // namespace berth

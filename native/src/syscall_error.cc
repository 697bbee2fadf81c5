// Errors cross into JS as instances of the TS SyscallError class (handed to C++ once by
// init(), the way better-sqlite3 hands over SqliteError), never as strerror strings. The
// errno -> 'ENOENT' name and the message are computed by the TS constructor, in one place.
#include "addon.h"

namespace berth {

Napi::Value MakeSyscallError(Napi::Env env, int err, const char* syscall, ErrorDetails details) {
  Napi::Object opts = Napi::Object::New(env);
  if (details.stage != nullptr) opts.Set("stage", details.stage);
  if (details.path != nullptr) opts.Set("path", details.path);

  AddonData* data = GetAddonData(env);
  if (data != nullptr && !data->syscallError.IsEmpty()) {
    Napi::Object error = data->syscallError.New({Napi::Number::New(env, err), Napi::String::New(env, syscall), opts});
    if (!env.IsExceptionPending()) return error;
    // The constructor itself threw: hand that exception on instead.
    return env.GetAndClearPendingException().Value();
  }

  // init() was never called (only possible when the binding is used without the TS loader):
  // still give a usable error with the same fields, minus the errno name.
  Napi::Error error = Napi::Error::New(env, std::string(syscall) + " failed with errno " + std::to_string(err));
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (details.stage != nullptr) error.Set("stage", details.stage);
  if (details.path != nullptr) error.Set("path", details.path);
  return error.Value();
}

Napi::Value ThrowSyscallError(Napi::Env env, int err, const char* syscall, ErrorDetails details) {
  Napi::Value error = MakeSyscallError(env, err, syscall, details);
  napi_throw(env, error);
  return env.Undefined();
}

void ReportPendingException(Napi::Env env) {
  if (env.IsExceptionPending()) {
    napi_fatal_exception(env, env.GetAndClearPendingException().Value());
  }
}

}  // namespace berth

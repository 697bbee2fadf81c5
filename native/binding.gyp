{
  # One target, built against the Node headers in nodedir (/usr here: npm config nodedir=/usr).
  # Every src/*.cc is compiled (gyp has no glob; the shell lists them), so a new module is a new
  # file that registers itself with berth::ModuleRegistrar, with no edit here or in addon.cc.
  "targets": [
    {
      "target_name": "berth_native",
      "sources": [ "<!@(ls -1 src/*.cc)" ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": [
        "NAPI_VERSION=8",
        # C++ exceptions stay off: the code after clone() must never unwind, and with
        # exceptions off every failure path is an explicit `return ThrowSyscallError(...)`.
        "NAPI_DISABLE_CPP_EXCEPTIONS",
        "_GNU_SOURCE"
      ],
      "cflags": ["-Wall", "-Wextra", "-Werror=return-type"],
      "cflags_cc": ["-fno-exceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror=return-type"]
    }
  ]
}

'use strict';
// A fresh process for the kernel tests that change the namespaces of the calling thread
// (unshare, setns): the vitest worker itself must stay where it is.
//
//   child_process.fork(this file, [JSON.stringify(command)])  ->  process.send(result)
//
// It loads the TS sources directly: .ts files are transpiled on require with the TypeScript
// compiler API (typescript is a devDependency), so the tests need no prior `tsc` run.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { Worker } = require('node:worker_threads');

// Self-contained: its source is also run inside a worker thread (see workerExit).
function registerTs() {
  const fs = require('node:fs');
  const ts = require('typescript');
  require.extensions['.ts'] = (module, filename) => {
    const { outputText } = ts.transpileModule(fs.readFileSync(filename, 'utf8'), {
      fileName: filename,
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
    });
    module._compile(outputText, filename);
  };
}

registerTs();
const INDEX = path.join(__dirname, '..', 'index.ts');
const { native } = require(INDEX);

function threadNamespaces(kind) {
  return fs.readdirSync('/proc/self/task').map((tid) => fs.readlinkSync(`/proc/self/task/${tid}/ns/${kind}`));
}

const ops = {
  // unshare(namespaces), then optionally sethostname(name); report what the JS thread sees.
  unshare({ namespaces, hostname }) {
    native.unshare(namespaces);
    if (hostname !== undefined) native.sethostname(hostname);
    return { hostname: os.hostname(), mntByThread: threadNamespaces('mnt') };
  },
  // setns by path, or by an fd this process opens itself (`open: true`), or by an inherited
  // fd number (`fd`); report the hostname seen afterwards.
  setns({ path: nsPath, open, fd, nstype }) {
    if (fd !== undefined) {
      native.setns(fd, nstype);
    } else if (open) {
      const opened = fs.openSync(nsPath, 'r');
      try {
        native.setns(opened, nstype);
      } finally {
        fs.closeSync(opened);
      }
    } else {
      native.setns(nsPath, nstype);
    }
    return { hostname: os.hostname() };
  },
  // A worker thread spawns a child and ends while the child is still watched: the addon must
  // survive being unloaded with a pidfd watch open (it once crashed in uv__finish_close).
  workerExit() {
    const code = `
      (${registerTs.toString()})();
      const { native } = require(${JSON.stringify(INDEX)});
      native.spawn({ file: '/bin/sleep', args: ['0.2'] }).then((child) => {
        require('node:worker_threads').parentPort.postMessage(child.pid);
        process.exit(0);
      });
    `;
    return new Promise((resolve, reject) => {
      const worker = new Worker(code, { eval: true });
      let pid;
      worker.on('message', (m) => {
        pid = m;
      });
      worker.on('error', reject);
      worker.on('exit', (exitCode) => setTimeout(() => resolve({ exitCode, pid }), 50));
    });
  },
};

function errorFields(err) {
  return { name: err.name, message: err.message, code: err.code, errno: err.errno, syscall: err.syscall };
}

const command = JSON.parse(process.argv[2]);
Promise.resolve()
  .then(() => ops[command.op](command))
  .then(
    (result) => ({ ok: true, result }),
    (err) => ({ ok: false, error: errorFields(err) }),
  )
  .then((reply) => process.send(reply, () => process.exit(0)));

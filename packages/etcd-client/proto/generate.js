#!/usr/bin/env node
// Generates packages/etcd-client/src/gen from the etcd v3 proto subset in this directory with the
// root's buf + ts-proto. The only writer of src/gen; skips work when nothing changed.
'use strict';
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const protoDir = __dirname;
const root = path.resolve(protoDir, '..', '..', '..');
const genDir = path.resolve(protoDir, '..', 'src', 'gen');
const bin = path.join(root, 'node_modules', '.bin');

const files = [];
(function walk(d) {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (/\.(proto|ya?ml|js)$/.test(e.name)) files.push(p);
  }
})(protoDir);
files.sort();
const hash = crypto.createHash('sha256');
for (const f of files) hash.update(path.relative(protoDir, f)).update('\0').update(fs.readFileSync(f)).update('\0');
const digest = hash.digest('hex');
const stamp = path.join(genDir, '.stamp');
if (!process.argv.includes('--force') && fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === digest) process.exit(0);

fs.rmSync(genDir, { recursive: true, force: true });
fs.mkdirSync(genDir, { recursive: true });
const env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH}` };
execFileSync(path.join(bin, 'buf'), ['generate', '.', '--template', 'buf.gen.yaml'], { cwd: protoDir, env, stdio: 'inherit' });
fs.writeFileSync(stamp, digest);

// What tools/bundle-cli.js and tools/train-cli-cache.js share about the CLI's V8 code cache: the
// hash mark on the bundle's last line, the cache file's layout (that hash, then V8's data) and
// the check that V8 takes a cache in a fresh process (it ignores one made under other flags).
'use strict';
const { execFileSync } = require('node:child_process');

const HASH_MARK = '//# berth-bundle-hash=';
const HASH_LEN = 32;

/** Whether a fresh Node process accepts the cache file for the bundle (both paths absolute). */
function cacheAccepted(bundle, cacheFile) {
  const check = `const fs=require('fs'),{wrap}=require('module'),{Script}=require('vm');` +
    `const s=new Script(wrap(fs.readFileSync(${JSON.stringify(bundle)},'utf8')),{cachedData:fs.readFileSync(${JSON.stringify(cacheFile)}).subarray(${HASH_LEN})});` +
    `process.exit(s.cachedDataRejected===true?1:0)`;
  try {
    execFileSync(process.execPath, ['-e', check], { stdio: 'inherit' });
    return true;
  } catch {
    return false;
  }
}

module.exports = { HASH_MARK, HASH_LEN, cacheAccepted };

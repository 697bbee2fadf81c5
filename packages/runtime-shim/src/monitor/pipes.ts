// Anonymous-pipe pairs for Node, which has no pipe(2): a FIFO is made, opened at both ends and
// unlinked at once, which leaves exactly a pipe whose ends are ours to hand to a child. Our
// end is O_NONBLOCK (for a net.Socket), the child's end blocking (a child that reads its stdin
// must block, not see EAGAIN). A temporary O_RDWR open lets both ends open without waiting.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { containerSyscalls } from '@berth/native';

export interface PipePair {
  r: number;
  w: number;
}

/** `ours`: the end we keep, which is made non-blocking ('r' for output, 'w' for a child's stdin). */
export function pipePair(dir: string, ours: 'r' | 'w' = 'r'): PipePair {
  const p = path.join(dir, `.pipe-${process.pid}-${randomBytes(6).toString('hex')}`);
  containerSyscalls.mkfifo(p, 0o600);
  const opened: number[] = [];
  try {
    const hold = fs.openSync(p, fs.constants.O_RDWR);
    opened.push(hold);
    const r = fs.openSync(p, fs.constants.O_RDONLY | (ours === 'r' ? fs.constants.O_NONBLOCK : 0));
    opened.push(r);
    const w = fs.openSync(p, fs.constants.O_WRONLY | (ours === 'w' ? fs.constants.O_NONBLOCK : 0));
    fs.closeSync(hold);
    return { r, w };
  } catch (err) {
    for (const fd of opened) fs.closeSync(fd);
    throw err;
  } finally {
    fs.rmSync(p, { force: true });
  }
}

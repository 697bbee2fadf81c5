// Running netfilter tools inside a network namespace. Netfilter rules (fault-injection loss,
// masquerade, host ports; IPv4 and IPv6) go through iptables/ip6tables (this host's are the
// nf_tables flavour, iptables-nft) rather than nf_tables netlink: they are on the slow path
// (set once per fault or per network), iptables is what operators inspect them with, and
// encoding nf_tables expressions by hand would be a large surface for little gain.
import { execFile } from 'node:child_process';

export interface ExecResult { stdout: string; stderr: string }

/** Runs `cmd args` in the network namespace at `netnsPath` (null: ours), rejecting with its stderr. */
export function execInNetns(netnsPath: string | null, cmd: string, args: string[], timeoutMs = 10_000): Promise<ExecResult> {
  const [file, argv] = netnsPath ? ['nsenter', [`--net=${netnsPath}`, '--', cmd, ...args]] : [cmd, args];
  return new Promise((resolve, reject) => {
    execFile(file, argv, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** `iptables -w` (family 6: `ip6tables -w`) in a namespace. */
export function iptables(netnsPath: string | null, args: string[], family: 4 | 6 = 4): Promise<ExecResult> {
  return execInNetns(netnsPath, family === 6 ? 'ip6tables' : 'iptables', ['-w', '5', ...args]);
}

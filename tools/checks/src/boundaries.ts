// The module-boundary rule of the design card, checked on the source: services depend on
// `api`, `common`, `native` and library packages, never on each other; nobody reaches into
// another package's files (deep imports, relative paths out of the package).
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Project {
  dir: string; // repo-relative
  pkgName: string;
  tags: string[];
  deps: string[]; // @berth/* dependencies from package.json
}

export interface Violation {
  file: string;
  line: number;
  message: string;
}

export function loadProjects(root: string): Project[] {
  const dirs = ['native', ...fs.readdirSync(path.join(root, 'packages')).map((d) => `packages/${d}`)];
  const out: Project[] = [];
  for (const dir of dirs) {
    const pj = path.join(root, dir, 'package.json');
    const prj = path.join(root, dir, 'project.json');
    if (!fs.existsSync(pj)) continue;
    const pkg = JSON.parse(fs.readFileSync(pj, 'utf8'));
    const tags: string[] = fs.existsSync(prj) ? JSON.parse(fs.readFileSync(prj, 'utf8')).tags ?? [] : [];
    const deps = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies, ...pkg.peerDependencies }).filter((d) => d.startsWith('@berth/'));
    out.push({ dir, pkgName: pkg.name, tags, deps });
  }
  return out;
}

const typeOf = (p: Project) => p.tags.find((t) => t.startsWith('type:'))?.slice(5) ?? 'unknown';

/** May `from` depend on `to`? Libraries are open to all; services are open only to apps. */
export function allowed(from: Project, to: Project): boolean {
  if (from.pkgName === to.pkgName) return true;
  const ft = typeOf(from), tt = typeOf(to);
  if (tt === 'lib') return true;
  if (tt === 'service') return ft === 'app'; // the CLI starts services and may use their public entry
  return false;
}

function* sourceFiles(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (['node_modules', 'dist', 'build', 'gen'].includes(e.name)) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* sourceFiles(p);
    else if (/\.(ts|js|mts|cts)$/.test(e.name)) yield p;
  }
}

const IMPORT_RE = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|require\s*\(\s*['"]([^'"]+)['"]\s*\)|import\s+['"]([^'"]+)['"]/g;

export function checkBoundaries(root: string, projects = loadProjects(root)): Violation[] {
  const byName = new Map(projects.map((p) => [p.pkgName, p]));
  const violations: Violation[] = [];
  for (const p of projects) {
    for (const dep of p.deps) {
      const to = byName.get(dep);
      if (!to) violations.push({ file: `${p.dir}/package.json`, line: 0, message: `depends on unknown workspace package ${dep}` });
      else if (!allowed(p, to)) violations.push({ file: `${p.dir}/package.json`, line: 0, message: `${typeOf(p)} ${p.pkgName} must not depend on ${typeOf(to)} ${dep}` });
    }
    const srcDir = path.join(root, p.dir, 'src');
    if (!fs.existsSync(srcDir)) continue;
    const pkgRoot = path.join(root, p.dir);
    for (const file of sourceFiles(srcDir)) {
      const text = fs.readFileSync(file, 'utf8');
      const rel = path.relative(root, file);
      for (const m of text.matchAll(IMPORT_RE)) {
        const spec = m[1] ?? m[2] ?? m[3] ?? m[4];
        const line = text.slice(0, m.index).split('\n').length;
        if (spec.startsWith('.')) {
          const target = path.resolve(path.dirname(file), spec);
          if (!target.startsWith(pkgRoot + path.sep)) violations.push({ file: rel, line, message: `relative import "${spec}" leaves the package` });
          continue;
        }
        const mm = /^(@berth\/[^/]+)(\/.*)?$/.exec(spec);
        if (!mm) continue;
        const to = byName.get(mm[1]);
        if (!to) { violations.push({ file: rel, line, message: `imports unknown package ${mm[1]}` }); continue; }
        if (mm[2] && mm[2] !== '/package.json') violations.push({ file: rel, line, message: `deep import "${spec}": use the package's public entry` });
        if (!allowed(p, to)) violations.push({ file: rel, line, message: `${typeOf(p)} ${p.pkgName} imports ${typeOf(to)} ${to.pkgName}` });
        if (to.pkgName !== p.pkgName && !p.deps.includes(to.pkgName)) violations.push({ file: rel, line, message: `imports ${to.pkgName} without declaring it in package.json` });
      }
    }
  }
  return violations;
}

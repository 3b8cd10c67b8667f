// `npm run bench -- --hash-cpus LIST`: the hashing threads on cores of their own, everything else
// (Gatehouse's event loops, PostgreSQL, the load generator) on the rest, as on a node whose
// database and clients live on other machines. Linux only, with `taskset` (util-linux); PostgreSQL's
// processes get their own CPUs back when the run ends.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { HASH_THREAD_NICE } from '../src/core/hash-pool.js';

export interface CpuSplit {
  /** Where the hashing threads, and the raw argon2 baseline, run. */
  readonly hash: string;
  /** Every other CPU this process may use: the rest of the work. */
  readonly other: string;
  /** Every CPU this process could use before the split. */
  readonly all: string;
}

/** Parses a CPU list as `taskset -c` takes it ("1", "2-3", "1,3"); throws on anything else. */
export function cpuList(text: string): number[] {
  const cpus = new Set<number>();
  for (const part of text.split(',')) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!match) throw new Error(`--hash-cpus: "${text}" is not a CPU list such as 1 or 2-3`);
    const first = Number(match[1]);
    const last = Number(match[2] ?? match[1]);
    for (let cpu = first; cpu <= last; cpu += 1) cpus.add(cpu);
  }
  return [...cpus].sort((a, b) => a - b);
}

/** The CPUs a process may run on, as `taskset -c` writes them; undefined if it is gone (or not Linux). */
function cpusOf(pid: number | 'self'): string | undefined {
  try {
    return /^Cpus_allowed_list:\s*(\S+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/** The CPUs this process may run on, from the kernel (cgroup limits and affinity included). */
export function allowedCpus(): number[] {
  const cpus = cpusOf('self');
  if (cpus === undefined)
    throw new Error('--hash-cpus needs Linux (/proc/self/status with Cpus_allowed_list)');
  return cpuList(cpus);
}

/** Splits this process's CPUs: `hashList` for hashing, the rest for everything else. */
export function splitCpus(hashList: string): CpuSplit {
  const allowed = allowedCpus();
  const hash = cpuList(hashList);
  const outside = hash.filter((cpu) => !allowed.includes(cpu));
  if (outside.length > 0)
    throw new Error(`--hash-cpus: CPU ${outside.join(', ')} is not one this process may use`);
  const other = allowed.filter((cpu) => !hash.includes(cpu));
  if (other.length === 0)
    throw new Error('--hash-cpus: no CPU would be left for the event loops and the database');
  return { hash: hash.join(','), other: other.join(','), all: allowed.join(',') };
}

function pin(cpus: string, id: number, allThreads = false): void {
  execFileSync('taskset', ['-p', ...(allThreads ? ['-a'] : []), '-c', cpus, String(id)], { stdio: 'ignore' });
}

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function statFields(file: string): string[] | undefined {
  try {
    const stat = readFileSync(file, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // gone meanwhile
  }
}

const numericEntries = (directory: string) => readdirSync(directory).filter((name) => /^\d+$/.test(name));

/** `root` and every process descended from it. */
function processTree(root: number): number[] {
  const parentOf = new Map<number, number>();
  for (const pid of numericEntries('/proc')) {
    const fields = statFields(`/proc/${pid}/stat`);
    if (fields?.[1] !== undefined) parentOf.set(Number(pid), Number(fields[1])); // field 4: ppid
  }
  const tree = [root];
  for (let grown = true; grown; ) {
    grown = false;
    for (const [pid, parent] of parentOf) {
      if (tree.includes(parent) && !tree.includes(pid)) {
        tree.push(pid);
        grown = true;
      }
    }
  }
  return tree;
}

/**
 * Puts the hashing threads of the processes under `root` (known by the nice value they give
 * themselves) on the hashing CPUs, and every other thread of them on the rest. Returns how many
 * hashing threads it found. Threads started later inherit their creator's CPUs: call it again.
 */
export function pinGatehouse(root: number, split: CpuSplit): number {
  let hashing = 0;
  for (const pid of processTree(root)) {
    let threads: string[];
    try {
      threads = numericEntries(`/proc/${pid}/task`);
    } catch {
      continue;
    }
    for (const tid of threads) {
      const nice = statFields(`/proc/${pid}/task/${tid}/stat`)?.[16]; // field 19: nice
      if (nice === undefined) continue;
      const isHashing = Number(nice) === HASH_THREAD_NICE;
      if (isHashing) hashing += 1;
      pin(isHashing ? split.hash : split.other, Number(tid));
    }
  }
  return hashing;
}

/** The processes of this machine named `postgres` (the server and every backend it forked). */
function postgresProcesses(): number[] {
  return numericEntries('/proc')
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'postgres';
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/**
 * Moves every PostgreSQL server process of this machine (and the connections it forks from now on)
 * to the non-hashing CPUs; the returned function gives each the CPUs it had (one forked meanwhile,
 * those of the oldest process found, the server's).
 */
export function pinPostgres(split: CpuSplit): () => void {
  const before = new Map<number, string>();
  for (const pid of postgresProcesses()) {
    const cpus = cpusOf(pid);
    if (cpus === undefined) continue;
    before.set(pid, cpus);
    pin(split.other, pid, true);
  }
  const server = before.get(Math.min(...before.keys())) ?? split.all;
  return () => {
    for (const pid of postgresProcesses()) {
      try {
        pin(before.get(pid) ?? server, pid, true);
      } catch {
        // gone meanwhile
      }
    }
  };
}

/** This process (the load generator) and the children it starts from now on, on the non-hashing CPUs. */
export function pinSelf(split: CpuSplit): void {
  pin(split.other, process.pid, true);
}

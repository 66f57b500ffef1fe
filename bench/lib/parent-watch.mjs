// Preloaded (node --import) into every process the benchmark starts: if the benchmark dies
// without killing its children (SIGKILL, OOM), they notice that their parent is gone and exit,
// so no simulator or proxy is left holding ports and CPU. One unref'd timer, twice a second.
// (process.ppid is read once at start-up, so the live value comes from /proc on Linux.)
import { readFileSync } from 'node:fs';

const parent = process.ppid;
function parentAlive() {
  try {
    const stat = readFileSync('/proc/self/stat', 'latin1');
    // pid (comm) state ppid ...: comm may hold spaces or parentheses, so split after the last ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent;
  } catch {
    try {
      process.kill(parent, 0);
      return true;
    } catch {
      return false;
    }
  }
}
const timer = setInterval(() => {
  if (!parentAlive()) process.exit(0);
}, 500);
timer.unref();

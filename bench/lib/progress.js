// One progress line on stderr: rewritten in place with \r on a TTY, or printed every few
// seconds otherwise (CI logs, pipes), so a long run never looks hung.
export class Progress {
  constructor(stream = process.stderr, { intervalMs = 5000, quiet = false } = {}) {
    this.stream = stream;
    this.tty = Boolean(stream.isTTY);
    this.intervalMs = intervalMs;
    this.quiet = quiet;
    this.text = '';
    this.lastPrint = 0;
    this.shown = false;
    this.started = Date.now();
  }

  /** Sets the current status; printed at most every 200 ms (TTY) or every intervalMs (otherwise). */
  update(text, { force = false } = {}) {
    this.text = text;
    if (this.quiet) return;
    const now = Date.now();
    const every = this.tty ? 200 : this.intervalMs;
    if (!force && now - this.lastPrint < every) return;
    this.lastPrint = now;
    const stamp = `[${((now - this.started) / 1000).toFixed(0).padStart(4)}s]`;
    if (this.tty) {
      const width = Math.max(20, (this.stream.columns ?? 120) - 1);
      this.stream.write(`\r\x1b[2K${`${stamp} ${text}`.slice(0, width)}`);
      this.shown = true;
    } else {
      this.stream.write(`${stamp} ${text}\n`);
    }
  }

  /** A line that stays (phase changes, warnings). */
  log(text) {
    if (this.quiet) return;
    this.clear();
    this.stream.write(`${text}\n`);
  }

  clear() {
    if (this.tty && this.shown) {
      this.stream.write('\r\x1b[2K');
      this.shown = false;
    }
  }
}

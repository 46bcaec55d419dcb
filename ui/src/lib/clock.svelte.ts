// One clock for every countdown in the window. It ticks once a second, and only
// while something shows a countdown (holders) and the window can be seen: a hidden
// window (closed to the tray, minimised, on another workspace) costs no CPU. On
// showing again it jumps to the current time at once.

export class Clock {
  /** Milliseconds since the epoch (this machine's clock), as of the last tick. */
  now = $state(Date.now());
  private holders = 0;
  private timer: ReturnType<typeof setInterval> | null = null;
  private listening = false;
  private readonly periodMs: number;
  private readonly onVisibility = () => this.update();

  constructor(periodMs = 1000) {
    this.periodMs = periodMs;
  }

  /** Whether the clock is ticking now (for tests and the curious). */
  get running(): boolean {
    return this.timer !== null;
  }

  /** Something starts showing a countdown; call the returned function when it stops.
   *  Made for `$effect(() => clock.hold())`. */
  hold(): () => void {
    this.holders++;
    this.update();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holders = Math.max(0, this.holders - 1);
      this.update();
    };
  }

  /** Stops ticking for good (the window goes away). */
  stop(): void {
    this.holders = 0;
    this.update();
  }

  private update(): void {
    const wanted = this.holders > 0;
    if (wanted && !this.listening && typeof document !== 'undefined') {
      document.addEventListener('visibilitychange', this.onVisibility);
      this.listening = true;
    } else if (!wanted && this.listening) {
      document.removeEventListener('visibilitychange', this.onVisibility);
      this.listening = false;
    }
    const tick = wanted && !(typeof document !== 'undefined' && document.hidden);
    if (tick && !this.timer) {
      this.now = Date.now();
      this.timer = setInterval(() => { this.now = Date.now(); }, this.periodMs);
    } else if (!tick && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }
}

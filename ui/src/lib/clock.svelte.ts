// One clock for every countdown in the window. It ticks once a second while
// something shows seconds (a fine holder), every 10 seconds while everything shown
// is in minutes (coarse holders only: an idle window wakes 6 times a minute, not 60),
// and not at all while nothing shows a countdown or the window cannot be seen: a
// hidden window (closed to the tray, minimised, on another workspace) costs no CPU.
// On showing again it jumps to the current time at once.

export class Clock {
  /** Milliseconds since the epoch (this machine's clock), as of the last tick. */
  now = $state(Date.now());
  private holders = 0;
  private fineHolders = 0;
  private timer: ReturnType<typeof setInterval> | null = null;
  private timerPeriod = 0;
  private listening = false;
  private readonly periodMs: number;
  private readonly coarseMs: number;
  private readonly onVisibility = () => this.update();

  constructor(periodMs = 1000, coarseMs = 10_000) {
    this.periodMs = periodMs;
    this.coarseMs = coarseMs;
  }

  /** How often it ticks now (ms), 0 when it does not. */
  get period(): number {
    return this.timer ? this.timerPeriod : 0;
  }

  /** Whether the clock is ticking now (for tests and the curious). */
  get running(): boolean {
    return this.timer !== null;
  }

  /** Something starts showing a countdown; call the returned function when it stops.
   *  `fine`: it shows seconds (false: minutes only, a tick every 10 s is enough).
   *  Made for `$effect(() => clock.hold())`. */
  hold(fine = true): () => void {
    this.holders++;
    if (fine) this.fineHolders++;
    this.update();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holders = Math.max(0, this.holders - 1);
      if (fine) this.fineHolders = Math.max(0, this.fineHolders - 1);
      this.update();
    };
  }

  /** Stops ticking for good (the window goes away). */
  stop(): void {
    this.holders = 0;
    this.fineHolders = 0;
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
    const period = this.fineHolders > 0 ? this.periodMs : this.coarseMs;
    if (this.timer && (!tick || period !== this.timerPeriod)) {
      clearInterval(this.timer);
      this.timer = null;
    }
    if (tick && !this.timer) {
      this.now = Date.now();
      this.timerPeriod = period;
      this.timer = setInterval(() => { this.now = Date.now(); }, period);
    }
  }
}

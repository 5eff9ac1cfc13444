// One connection kept up: open it, watch it, open it again after a pause when
// opening fails or it drops, and give up when the server says no. Serves the
// WHIP uplinks (the presenter's program, a room's camera), the WHEP viewers
// (a room's picture, the presenter's stage) and the WebSockets (研讨 events,
// the wall).
//
// open(keeper) makes one attempt and resolves to the resource; a resource
// with a .pc (an RTCPeerConnection) is watched here: "connected" is up,
// "failed"/"closed" lost, "disconnected" lost unless it heals within graceMs
// (null: wait for "failed"). Other resources report through up(resource)
// and lost(resource). stop() ends the resource and every retry for good; a
// new turn takes a new keeper.

// A 4xx: the server said no (a bad or revoked token, an ended session), and
// asking again would not change its mind. A 429 says "not now": the link holds
// its share of connections until a stale one goes, so it is retried.
export const isRefusal = (error) =>
  typeof error?.status === "number" && error.status < 500 && error.status !== 429;

export class KeptConnection {
  constructor({
    open,
    delays, // seconds before each retry; the last one repeats
    graceMs = null,
    giveUp = isRefusal, // (error of a failed open) → stop instead of retrying
    beforeRetry = null, // async (error or null) before a retry; false: stop instead
    drop = (resource) => resource.stop(), // let go of a lost one before a retry
    end = (resource) => resource.stop(), // let go of the current one on stop()
    onUp = () => {}, // (resource): opened, now the current one
    onDown = () => {}, // (resource): no longer the current one (dropped or ended)
    onState = () => {}, // (connectionState, resource): each change of a watched pc
    onRetry = () => {}, // ({seconds, attempt, error}): the next attempt is due in seconds
    onGiveUp = () => {}, // (error): refused; already stopped
  }) {
    Object.assign(this, { open, delays, graceMs, giveUp, beforeRetry, drop, end,
                          onUp, onDown, onState, onRetry, onGiveUp });
    this.current = null;
    this.attempt = 0;
    this.timer = null;
    this.graceTimer = null;
    this.failing = false; // in beforeRetry
    this.started = false;
    this.stopped = false;
  }

  start() {
    if (this.started || this.stopped) return;
    this.started = true;
    this.connect();
  }

  async connect() {
    this.timer = null;
    if (this.stopped) return;
    let resource;
    try {
      resource = await this.open(this);
    } catch (error) {
      if (!this.stopped) this.fail(error);
      return;
    }
    if (this.stopped) {
      this.end(resource);
      return;
    }
    this.current = resource;
    this.onUp(resource);
    if (resource.pc && this.current === resource) this.watch(resource);
  }

  watch(resource) {
    const { pc } = resource;
    const changed = () => {
      if (resource !== this.current) return;
      const state = pc.connectionState;
      this.onState(state, resource);
      if (resource !== this.current) return; // onState may have stopped us
      if (state !== "disconnected") this.clearGrace();
      if (state === "connected") this.up(resource);
      else if (state === "failed" || state === "closed") this.lost(resource);
      else if (state === "disconnected" && this.graceMs != null && !this.graceTimer) {
        this.graceTimer = setTimeout(() => {
          this.graceTimer = null;
          if (resource === this.current && pc.connectionState !== "connected") this.lost(resource);
        }, this.graceMs);
      }
    };
    pc.addEventListener("connectionstatechange", changed);
    changed();
  }

  // The current resource works: the next loss starts from the first delay.
  up(resource) {
    if (resource !== this.current) return;
    this.clearGrace();
    this.attempt = 0;
  }

  // The current resource is gone: drop it and try again.
  lost(resource) {
    if (resource === this.current) this.fail(null);
  }

  async fail(error) {
    if (this.stopped || this.timer || this.failing) return;
    if (error && this.giveUp(error)) {
      this.stop();
      this.onGiveUp(error);
      return;
    }
    this.clearGrace();
    if (this.beforeRetry) {
      this.failing = true;
      let go;
      try {
        go = await this.beforeRetry(error);
      } finally {
        this.failing = false;
      }
      if (go === false) this.stop();
      if (this.stopped) return;
    }
    if (this.current) {
      const old = this.current;
      this.current = null;
      this.onDown(old);
      this.drop(old);
    }
    // Never sooner than the server's Retry-After (a 429 or 503 at a limit).
    const seconds = Math.max(this.delays[Math.min(this.attempt, this.delays.length - 1)],
                             error?.retryAfter ?? 0);
    this.attempt += 1;
    this.onRetry({ seconds, attempt: this.attempt, error });
    this.timer = setTimeout(() => this.connect(), seconds * 1000);
  }

  clearGrace() {
    clearTimeout(this.graceTimer);
    this.graceTimer = null;
  }

  // For good: no more attempts; resolves when the current resource is ended.
  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    this.clearGrace();
    const old = this.current;
    this.current = null;
    if (!old) return Promise.resolve();
    this.onDown(old);
    return Promise.resolve(this.end(old));
  }
}

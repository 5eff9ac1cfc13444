// The room-events socket (研讨) shared by the room and presenter pages: the
// token travels as a subprotocol (never in the URL), the socket reconnects
// with backoff, every request carries an id and its ack or error is routed
// back to the sender.
export const CLOSE_ENDED = 4000; // the session has ended: do not come back
export const CLOSE_REVOKED = 4003; // the room's link was revoked

const PROTOCOL = "zhixing.events.v1";
const BACKOFF_S = [1, 2, 5, 10, 30];

export class EventsClient {
  // onState(state): a snapshot or an event's new state; onError(code): a
  // refused request or "offline"; onStatus("connecting"|"open"|"closed");
  // onClose(code) returns false to stop reconnecting.
  constructor({ sessionId, token, onState, onError, onStatus = () => {}, onClose = () => true }) {
    this.sessionId = sessionId;
    this.token = token;
    this.onState = onState;
    this.onError = onError;
    this.onStatus = onStatus;
    this.onClose = onClose;
    this.socket = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = false;
    this.nextId = 1;
    this.pending = new Map(); // message id -> what to do on ack
  }

  get open() {
    return !!this.socket && this.socket.readyState === WebSocket.OPEN;
  }

  start() {
    if (this.socket || this.stopped) return;
    this.timer = null;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/api/v1/sessions/`
      + `${encodeURIComponent(this.sessionId)}/events/ws`;
    let socket;
    try {
      socket = new WebSocket(url, [PROTOCOL, `bearer.${this.token}`]);
    } catch (e) {
      this.retry();
      return;
    }
    this.socket = socket;
    this.onStatus("connecting");
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      this.attempt = 0;
      this.onStatus("open");
    });
    socket.addEventListener("message", (message) => {
      if (socket === this.socket) this.receive(message.data);
    });
    socket.addEventListener("close", (closed) => {
      if (socket !== this.socket) return;
      this.socket = null;
      this.pending.clear();
      this.onStatus("closed");
      if (this.onClose(closed.code) !== false && closed.code !== CLOSE_ENDED) this.retry();
    });
  }

  retry() {
    if (this.stopped || this.timer) return;
    const seconds = BACKOFF_S[Math.min(this.attempt, BACKOFF_S.length - 1)];
    this.attempt += 1;
    this.timer = setTimeout(() => this.start(), seconds * 1000);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.socket) {
      const old = this.socket;
      this.socket = null;
      old.close();
    }
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (message.type === "state" || message.type === "event") {
      this.onState(message.state);
    } else if (message.type === "ack" || message.type === "error") {
      const done = this.pending.get(message.ref);
      this.pending.delete(message.ref);
      if (message.type === "error") this.onError(message.code);
      else if (done) done();
    }
  }

  // Send one request; onAck runs when the server accepted it. False when offline.
  send(type, fields = {}, onAck = null) {
    if (!this.open) {
      this.onError("offline");
      return false;
    }
    const id = this.nextId++;
    if (onAck) this.pending.set(id, onAck);
    this.socket.send(JSON.stringify({ type, id, ...fields }));
    return true;
  }
}

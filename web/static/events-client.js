// The room-events socket (研讨) shared by the room and presenter pages: the
// token travels as a subprotocol (never in the URL), the socket reconnects
// with backoff, every request carries an id and its ack or error is routed
// back to the sender.
import { KeptConnection } from "/static/kept-connection.js";

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
    this.keeper = null; // KeptConnection of the socket
    this.stopped = false;
    this.nextId = 1;
    this.pending = new Map(); // message id -> what to do on ack
  }

  get open() {
    return !!this.socket && this.socket.readyState === WebSocket.OPEN;
  }

  start() {
    if (this.keeper || this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/api/v1/sessions/`
      + `${encodeURIComponent(this.sessionId)}/events/ws`;
    this.keeper = new KeptConnection({
      delays: BACKOFF_S,
      open: (keeper) => this.connect(keeper, url),
      drop: () => {},
      end: (socket) => socket.close(),
    });
    this.keeper.start();
  }

  connect(keeper, url) {
    const socket = new WebSocket(url, [PROTOCOL, `bearer.${this.token}`]);
    this.socket = socket;
    this.onStatus("connecting");
    socket.addEventListener("open", () => {
      if (socket !== this.socket) return;
      keeper.up(socket);
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
      if (this.onClose(closed.code) !== false && closed.code !== CLOSE_ENDED) keeper.lost(socket);
      else keeper.stop();
    });
    return socket;
  }

  stop() {
    this.stopped = true;
    this.socket = null;
    if (this.keeper) this.keeper.stop();
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

/**
 * NETLINK_ROUTE sockets: requests with sequence numbers and acks, dumps, and multicast
 * subscriptions. All system calls go through sys/.
 *
 * Two kinds of socket, never mixed (netlink(7)):
 *  - a request socket (`RtnlSocket`): one request in flight at a time (serialised), replies
 *    matched by `nlmsg_seq`; replies to an earlier, abandoned request are discarded. Dumps end with
 *    NLMSG_DONE; if any part carries NLM_F_DUMP_INTR the table changed under the dump and we dump
 *    again (bounded). `requestSync` blocks (fine for one-shot CLI calls); `request` waits in
 *    poll(2) on the libuv thread pool and reads with MSG_DONTWAIT, so the event loop never blocks.
 *  - a subscription socket (`RtnlSubscription`): joined to RTNLGRP_* groups. A reader loop parks in
 *    poll(2) on the thread pool (with a short timeout so `close()` is prompt), then drains every
 *    queued datagram without blocking. When the kernel could not queue a notification because our
 *    receive buffer was full, notifications were lost and the owner must resync from a dump
 *    (`onOverflow`). See "Overflow" below for what the kernel does then and what we do about it.
 *
 * NETLINK_EXT_ACK makes errors carry the kernel's message; NETLINK_CAP_ACK keeps error replies
 * small (the request is not echoed back).
 *
 * Overflow (net/netlink/af_netlink.c: netlink_broadcast_deliver, netlink_overrun, netlink_rcv_wake;
 * net/core/datagram.c: __skb_try_recv_datagram):
 *   - a notification that does not fit in the receive buffer is dropped, the socket is marked
 *     CONGESTED and sk_err = ENOBUFS. While CONGESTED *every* later notification is dropped too,
 *     until a recv finds the receive queue empty (netlink_rcv_wake clears the mark);
 *   - recv reports sk_err before any queued datagram: the first recv after the overflow fails with
 *     ENOBUFS, and the datagrams still queued behind it are all older than the loss.
 *   So what is queued when ENOBUFS is read is a prefix of a stream with a hole after it: applying
 *   it on top of a fresh dump would replay old states the dump already superseded (a neighbour
 *   added, then deleted while its deletion was dropped, would come back). On ENOBUFS the reader
 *   therefore receives and DISCARDS everything queued until a recv returns EAGAIN, all in the same
 *   event-loop turn, and only then calls `onOverflow`. At that point the queue has been empty, the
 *   socket is no longer CONGESTED, and every notification from then on is delivered (until the
 *   next overflow, which is reported the same way). A dump the owner sends after `onOverflow`
 *   returns therefore starts after that point, and every change after it reaches the owner.
 *   Should a drain ever outlast its budget (a flood faster than we discard), `onOverflow` is
 *   called with `drained: false` before yielding and again with `drained: true` once EAGAIN is
 *   seen; nothing is delivered in between.
 */
import {
  AF_NETLINK,
  MSG_DONTWAIT,
  MSG_TRUNC,
  PinholeError,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SysError,
  alloc,
  getSys,
} from '../sys/index.ts';
import {
  NETLINK_ROUTE,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  NLM_F_ACK,
  NLM_F_DUMP_INTR,
  NLM_F_MULTI,
  NetlinkError,
  decodeError,
  setSeq,
  sockaddr_nl,
  splitMessages,
  type RawMessage,
} from './codec.ts';

const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVBUFFORCE = 33;
const SOL_NETLINK = 270;
const NETLINK_ADD_MEMBERSHIP = 1;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;

/** Receive buffer for one datagram: dumps use up to 32 KiB skbs; notifications are small. */
const RECV_SIZE = 64 * 1024;
const DUMP_RETRIES = 8;
/** Datagrams discarded per event-loop turn after ENOBUFS (a full queue is a few thousand at most). */
const DRAIN_BUDGET = 1 << 20;

function u32(v: number): Uint8Array {
  const b = alloc(4);
  new DataView(b.buffer).setUint32(0, v >>> 0, true);
  return b;
}

function openFd(what: string): number {
  const sys = getSys();
  let fd: number;
  try {
    fd = sys.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  } catch (cause) {
    throw new PinholeError('ERR_NETLINK_SOCKET', `open NETLINK_ROUTE socket for ${what}`, { cause });
  }
  try {
    // Best effort: older kernels lack these; errors then just carry less detail.
    try {
      sys.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, u32(1));
    } catch {
      /* pre-4.12 kernel */
    }
    try {
      sys.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, u32(1));
    } catch {
      /* pre-4.3 kernel */
    }
    sys.bind(fd, sockaddr_nl.encode({ nl_family: AF_NETLINK }, alloc(sockaddr_nl.size)));
  } catch (cause) {
    sys.close(fd);
    throw new PinholeError('ERR_NETLINK_SOCKET', `bind NETLINK_ROUTE socket for ${what}`, { cause });
  }
  return fd;
}

/** Sets SO_RCVBUF (SO_RCVBUFFORCE when privileged, so it may exceed rmem_max); returns the kernel's value. */
function setRcvbuf(fd: number, bytes: number): number {
  const sys = getSys();
  try {
    sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, u32(bytes));
  } catch {
    sys.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, u32(bytes));
  }
  const out = alloc(4);
  sys.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, out);
  return new DataView(out.buffer).getUint32(0, true);
}

function pollfd(fd: number): Uint8Array {
  // struct pollfd { int fd; short events; short revents; }
  const b = alloc(8);
  const dv = new DataView(b.buffer);
  dv.setInt32(0, fd, true);
  dv.setInt16(4, POLLIN, true);
  return b;
}

export interface RequestOptions {
  /** Describes the request in errors ("get link eth0"). */
  what?: string;
  /** Give up after this long (async requests only). Default 5000 ms. */
  timeoutMs?: number;
}

/** A request socket. `open*` returns an owner: call `close()`. */
export class RtnlSocket {
  readonly fd: number;
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private readonly buf = alloc(RECV_SIZE);
  private readonly pfd: Uint8Array;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(fd: number) {
    this.fd = fd;
    this.pfd = pollfd(fd);
  }

  static open(): RtnlSocket {
    return new RtnlSocket(openFd('requests'));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    getSys().close(this.fd);
  }

  /**
   * Sends `msg` and returns the reply messages (without the final ack/NLMSG_DONE). Blocks the
   * thread, but never longer than `timeoutMs` (default 5 s): a reply that never comes (lost to a
   * full receive buffer, say) is ERR_NETLINK_TIMEOUT, not a main thread stuck in recv(2).
   */
  requestSync(msg: Uint8Array, opts: RequestOptions = {}): RawMessage[] {
    const seq = this.send(msg, opts);
    const what = opts.what ?? 'netlink request';
    const t = new Transaction(msg, seq, what);
    const deadline = Date.now() + (opts.timeoutMs ?? 5000);
    while (!t.done) {
      const d = this.recv(MSG_DONTWAIT, opts);
      if (d) {
        t.feed(d);
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new PinholeError('ERR_NETLINK_TIMEOUT', `${what}: no reply from the kernel`);
      getSys().tryPoll(this.pfd, 1, Math.min(left, 1000));
    }
    return t.result();
  }

  /** As `requestSync`, but waits off the event loop. Requests on one socket are serialised. */
  request(msg: Uint8Array, opts: RequestOptions = {}): Promise<RawMessage[]> {
    const run = async (): Promise<RawMessage[]> => {
      const seq = this.send(msg, opts);
      const what = opts.what ?? 'netlink request';
      const t = new Transaction(msg, seq, what);
      const deadline = Date.now() + (opts.timeoutMs ?? 5000);
      while (!t.done) {
        const left = deadline - Date.now();
        if (left <= 0) throw new PinholeError('ERR_NETLINK_TIMEOUT', `${what}: no reply from the kernel`);
        if ((await getSys().pollAsync(this.pfd, 1, Math.min(left, 1000))) === 0) continue;
        const d = this.recv(MSG_DONTWAIT, opts);
        if (d) t.feed(d);
      }
      return t.result();
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => undefined);
    return p;
  }

  /** A dump, repeated while the kernel flags it NLM_F_DUMP_INTR (the table changed under it). */
  dumpSync(msg: Uint8Array, opts: RequestOptions = {}): RawMessage[] {
    for (let i = 0; i < DUMP_RETRIES; i++) {
      const r = this.requestSync(msg, opts);
      if (!r.some((m) => m.flags & NLM_F_DUMP_INTR)) return r;
    }
    throw dumpIntr(opts);
  }

  async dump(msg: Uint8Array, opts: RequestOptions = {}): Promise<RawMessage[]> {
    for (let i = 0; i < DUMP_RETRIES; i++) {
      const r = await this.request(msg, opts);
      if (!r.some((m) => m.flags & NLM_F_DUMP_INTR)) return r;
    }
    throw dumpIntr(opts);
  }

  private send(msg: Uint8Array, opts: RequestOptions): number {
    if (this.closed) throw new PinholeError('ERR_NETLINK_CLOSED', 'netlink socket is closed');
    this.seq = (this.seq + 1) >>> 0 || 1;
    const out = alloc(msg.length);
    out.set(msg);
    setSeq(out, this.seq);
    try {
      getSys().sendto(this.fd, out, out.length, 0, null);
    } catch (cause) {
      throw new PinholeError('ERR_NETLINK_SEND', `${opts.what ?? 'netlink request'}: send failed`, { cause });
    }
    return this.seq;
  }

  /** One datagram (copied out of the receive buffer), or undefined if none was queued. */
  private recv(flags: number, opts: RequestOptions): Uint8Array | undefined {
    let n: number;
    try {
      n = getSys().recvfrom(this.fd, this.buf, flags | MSG_TRUNC, null);
    } catch (cause) {
      if (cause instanceof SysError && (cause.code === 'EAGAIN' || cause.code === 'EINTR')) return undefined;
      throw new PinholeError('ERR_NETLINK_RECV', `${opts.what ?? 'netlink request'}: receive failed`, { cause });
    }
    if (n > this.buf.length) {
      throw new PinholeError('ERR_NETLINK_TRUNCATED', `${opts.what ?? 'netlink request'}: reply of ${n} bytes exceeds the receive buffer`);
    }
    return this.buf.slice(0, n);
  }
}

function dumpIntr(opts: RequestOptions): PinholeError {
  return new PinholeError(
    'ERR_NETLINK_DUMP_INTR',
    `${opts.what ?? 'dump'}: interrupted ${DUMP_RETRIES} times in a row (table changing too fast)`,
  );
}

/** Collects the replies to one request. */
class Transaction {
  done = false;
  private readonly msgs: RawMessage[] = [];
  private error: Error | undefined;

  /** Whether the request had NLM_F_ACK: then the kernel always ends with NLMSG_ERROR (0 = ack). */
  private readonly wantsAck: boolean;

  constructor(
    request: Uint8Array,
    private readonly seq: number,
    private readonly what: string,
  ) {
    this.wantsAck = (new DataView(request.buffer, request.byteOffset, request.byteLength).getUint16(6, true) & NLM_F_ACK) !== 0;
  }

  feed(datagram: Uint8Array | undefined): void {
    if (!datagram) return;
    for (const m of splitMessages(datagram)) {
      if (m.seq !== this.seq) continue; // a late reply to an abandoned request
      switch (m.type) {
        case NLMSG_NOOP:
          continue;
        case NLMSG_ERROR: {
          const e = decodeError(m);
          if (e.errno !== 0) this.error = new NetlinkError(this.what, e.errno, e.extAck, e.extAckOffset);
          this.done = true;
          return;
        }
        case NLMSG_DONE: {
          // A dump that failed midway reports the error as an int in NLMSG_DONE.
          if (m.payload.length >= 4) {
            const err = new DataView(m.payload.buffer, m.payload.byteOffset, 4).getInt32(0, true);
            if (err < 0) this.error = new NetlinkError(this.what, -err);
          }
          this.done = true;
          return;
        }
        case NLMSG_OVERRUN:
          this.error = new PinholeError('ERR_NETLINK_OVERRUN', `${this.what}: data lost (NLMSG_OVERRUN)`);
          this.done = true;
          return;
        default:
          this.msgs.push(m);
          // A single reply (no NLM_F_MULTI, no ack requested) ends the transaction; with an ack
          // requested the kernel follows up with NLMSG_ERROR(0), which we wait for.
          if (!(m.flags & NLM_F_MULTI) && !this.wantsAck) this.done = true;
      }
    }
  }

  result(): RawMessage[] {
    if (this.error) throw this.error;
    return this.msgs;
  }
}

export interface SubscriptionOptions {
  /** RTNLGRP_* groups to join. */
  groups: readonly number[];
  /** Receive buffer size in bytes (SO_RCVBUF[FORCE]); the kernel doubles it. Default: kernel's. */
  rcvbuf?: number;
  /** Called for each received datagram's messages, in order (payload views are valid only during the call). */
  onMessages: (msgs: RawMessage[]) => void;
  /**
   * Notifications were lost (ENOBUFS): resync from a dump sent after this call. The datagrams that
   * were queued behind the loss have been discarded (`discarded`), never passed to `onMessages`.
   * `drained: false` (rare) means the discarding goes on in a later turn; a `drained: true` call follows.
   */
  onOverflow: (info: OverflowInfo) => void;
  /**
   * A datagram could not be read (truncated or badly framed: a notification is lost, resync), or
   * the socket failed (`fatal`: the loop has stopped, no further notification will arrive).
   */
  onError?: (err: Error, fatal: boolean) => void;
  /** Datagrams discarded per event-loop turn after ENOBUFS (default 2^20; tests lower it). */
  drainBudget?: number;
}

export interface OverflowInfo {
  /** Datagrams received after the ENOBUFS and dropped unread (since the previous call). */
  discarded: number;
  /** Whether the receive queue has been found empty (the kernel delivers again). */
  drained: boolean;
}

/** A multicast subscription: joined groups plus a reader loop. */
export class RtnlSubscription {
  readonly fd: number;
  /** The kernel's receive buffer size after `rcvbuf` was applied. */
  readonly rcvbuf: number;
  private stopped = false;
  private readonly loop: Promise<void>;
  private overflows = 0;
  /** After ENOBUFS: discarding queued datagrams until the queue is found empty. */
  private draining = false;
  private discarded = 0;

  private constructor(
    fd: number,
    rcvbuf: number,
    private readonly opts: SubscriptionOptions,
  ) {
    this.fd = fd;
    this.rcvbuf = rcvbuf;
    this.loop = this.run();
  }

  static open(opts: SubscriptionOptions): RtnlSubscription {
    const fd = openFd('subscriptions');
    const sys = getSys();
    let rcvbuf: number;
    try {
      for (const g of opts.groups) sys.setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, u32(g));
      if (opts.rcvbuf !== undefined) rcvbuf = setRcvbuf(fd, opts.rcvbuf);
      else {
        const out = alloc(4);
        sys.getsockopt(fd, SOL_SOCKET, SO_RCVBUF, out);
        rcvbuf = new DataView(out.buffer).getUint32(0, true);
      }
    } catch (cause) {
      sys.close(fd);
      throw new PinholeError('ERR_NETLINK_SUBSCRIBE', `join rtnetlink groups ${opts.groups.join(',')}`, { cause });
    }
    return new RtnlSubscription(fd, rcvbuf, opts);
  }

  /** How many times the kernel reported lost notifications. */
  get overflowCount(): number {
    return this.overflows;
  }

  async close(): Promise<void> {
    if (this.stopped) return this.loop;
    this.stopped = true;
    await this.loop;
    getSys().close(this.fd);
  }

  /**
   * Discards queued datagrams until a recv finds the queue empty (true), or the turn's budget is
   * spent (false: called again next turn). Calls `onOverflow` in both cases. Throws on a socket error.
   */
  private drain(buf: Uint8Array): boolean {
    const sys = getSys();
    const budget = this.opts.drainBudget ?? DRAIN_BUDGET;
    for (let i = 0; i < budget; i++) {
      try {
        sys.recvfrom(this.fd, buf, MSG_DONTWAIT | MSG_TRUNC, null);
        this.discarded++;
      } catch (err) {
        if (err instanceof SysError && err.code === 'EAGAIN') {
          this.draining = false;
          this.reportOverflow(true);
          return true;
        }
        if (err instanceof SysError && err.code === 'EINTR') continue;
        if (err instanceof SysError && err.code === 'ENOBUFS') {
          // The queue emptied and overflowed again while we discarded: the same resync covers it.
          this.overflows++;
          continue;
        }
        throw err;
      }
    }
    this.reportOverflow(false);
    return false;
  }

  private reportOverflow(drained: boolean): void {
    const discarded = this.discarded;
    this.discarded = 0;
    this.opts.onOverflow({ discarded, drained });
  }

  private async run(): Promise<void> {
    const sys = getSys();
    const pfd = pollfd(this.fd);
    const buf = alloc(RECV_SIZE);
    while (!this.stopped) {
      let ready: number;
      try {
        // Parked on the thread pool; the timeout bounds how long close() waits for us.
        ready = await sys.pollAsync(pfd, 1, 100);
      } catch (err) {
        if (err instanceof SysError && err.code === 'EINTR') continue;
        this.opts.onError?.(err as Error, true);
        return;
      }
      if (this.stopped) continue;
      if (this.draining) {
        // A drain that outlasted its budget: go on (an empty queue ends it, readable or not).
        try {
          if (!this.drain(buf)) continue;
        } catch (err) {
          this.opts.onError?.(err as Error, true);
          return;
        }
      }
      if (ready === 0) continue;
      // Read everything queued, without blocking.
      for (let i = 0; i < 4096 && !this.stopped; i++) {
        let n: number;
        try {
          n = sys.recvfrom(this.fd, buf, MSG_DONTWAIT | MSG_TRUNC, null);
        } catch (err) {
          if (err instanceof SysError && err.code === 'EAGAIN') break;
          if (err instanceof SysError && err.code === 'EINTR') continue;
          if (err instanceof SysError && err.code === 'ENOBUFS') {
            // Everything still queued predates the loss: discard it before telling the owner.
            this.overflows++;
            this.draining = true;
            this.discarded = 0;
            try {
              if (this.drain(buf)) continue;
            } catch (e) {
              this.opts.onError?.(e as Error, true);
              return;
            }
            break; // the drain goes on in the next turn
          }
          this.opts.onError?.(err as Error, true);
          return;
        }
        try {
          if (n > buf.length) throw new PinholeError('ERR_NETLINK_TRUNCATED', `notification of ${n} bytes exceeds the receive buffer`);
          this.opts.onMessages(splitMessages(buf, n));
        } catch (err) {
          this.opts.onError?.(err as Error, false);
        }
      }
    }
  }
}

/** Runs one request on a short-lived socket (async). */
export async function rtnlRequest(msg: Uint8Array, opts: RequestOptions = {}): Promise<RawMessage[]> {
  const s = RtnlSocket.open();
  try {
    return await s.request(msg, opts);
  } finally {
    s.close();
  }
}

/** Runs one request on a short-lived blocking socket. */
export function rtnlRequestSync(msg: Uint8Array, opts: RequestOptions = {}): RawMessage[] {
  const s = RtnlSocket.open();
  try {
    return s.requestSync(msg, opts);
  } finally {
    s.close();
  }
}

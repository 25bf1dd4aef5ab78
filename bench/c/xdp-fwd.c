/*
 * xdp-fwd: the C reference forwarder of `pinhole bench`, so the price of TypeScript is a number.
 * A bench-only tool: `pinhole bench` compiles it with the system compiler (`cc -O2`) into a
 * temporary directory at bench time; pinhole never needs it to run. Raw syscalls and the kernel's
 * UAPI headers only (linux/if_xdp.h, linux/bpf.h): no libbpf, no libxdp.
 *
 * The algorithm is pinhole's AF_XDP cross-connect (src/dataplane/engine.ts breathe() with
 * src/dataplane/ports/xsk.ts), step for step, one thread per queue, each with two sockets and a
 * UMEM per socket (frames are copied between the UMEMs, as pinhole copies between its ports):
 *
 *   in: AF_XDP socket on --in queue q (fill + RX rings), registered in the XSKMAP under q
 *   out: AF_XDP socket on --out queue q (TX + completion rings)
 *
 *   breathe:
 *     1. take up to --batch descriptors from in's RX ring
 *     2. take as many free frames of out's UMEM, memcpy each packet there, queue TX descriptors
 *        (a full TX ring drops the rest, counted)
 *     3. kick: sendto(MSG_DONTWAIT) when the kernel asks (need_wakeup), again while the TX ring
 *        drains, at most 8 times (copy mode sends at most 32 frames per call); EAGAIN, EBUSY,
 *        ENOBUFS and ENETDOWN are results, not errors
 *     4. reap out's completion ring onto its free stack
 *     5. give the received frames back to in's fill ring (the rest onto in's free stack, which
 *        is topped up into the fill ring when it has room)
 *   a breath that received nothing waits in poll(in, POLLIN, 50 ms).
 *
 * --drop: receive-and-drop (steps 1 and 5), for the receive-only scenario.
 *
 * It attaches nothing. The bench loads pinhole's redirect-all program (src/kernel/workload.ts,
 * bpf_redirect_map(xsks, rx_queue_index)), attaches it to --in through bpf_link, and hands this
 * program the XSKMAP as an inherited file descriptor (--xskmap-fd N: Node's spawn puts the map fd
 * at N in the child). Why inheritance rather than pinning the map in bpffs for BPF_OBJ_GET: bpffs
 * is not mounted by default on these hosts and a pin is a file that outlives a crash; an
 * inherited fd needs nothing mounted, leaves nothing behind, and the C side needs only
 * BPF_MAP_UPDATE_ELEM. The program and its attachment belong to the bench process and go away
 * with it.
 *
 * Output on stdout, JSON lines in the shape of `pinhole uplink`'s: {"event":"ready",...} once the
 * sockets are registered, {"event":"stats",...} every --stats-ms (0: never), and
 * {"event":"stopped",...} after SIGINT or SIGTERM. Errors go to stderr, exit 1.
 *
 * usage: xdp-fwd --in IF [--out IF] --xskmap-fd N [--queues N] [--batch N] [--frames N] [--frame-size N]
 *                [--ring N] [--drop] [--stats-ms N] [--tx-budget N]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif
/* Kernel >= 6.17: how many frames copy-mode TX sends per sendto (default 32). */
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9
#endif

#define TX_OFFSET XDP_PACKET_HEADROOM /* where a packet to send starts in its frame, as in pinhole */
#define MAX_BATCH 256u
#define MAX_QUEUES 64

static volatile sig_atomic_t stopping;

static void on_signal(int sig) {
	(void)sig;
	stopping = 1;
}

static void die(const char *what) {
	fprintf(stderr, "xdp-fwd: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* One mmap'd ring. Producer rings (fill, TX): we write entries and publish `producer`.
 * Consumer rings (RX, completion): the kernel does, we publish `consumer`. */
struct ring {
	uint32_t *producer;
	uint32_t *consumer;
	uint32_t *flags;
	void *desc;
	uint32_t mask;
	uint32_t size;
	uint32_t cached_prod;
	uint32_t cached_cons;
	void *map;
	size_t map_len;
};

struct xsk {
	int fd;
	uint8_t *umem;
	size_t umem_len;
	struct ring fill, comp, rx, tx;
	uint64_t *free; /* free frame base addresses, a stack */
	uint32_t nfree;
};

struct counters {
	uint64_t rx_packets, rx_bytes, tx_packets, tx_dropped, kicks, kick_busy, breaths, idle_waits;
} __attribute__((aligned(64)));

struct worker {
	pthread_t thread;
	int queue;
	struct xsk in, out;
	struct counters c;
};

static struct {
	const char *in, *out;
	int xskmap_fd;
	int queues, batch, frames, ring, drop, stats_ms, tx_budget, frame_size;
} opt = {.xskmap_fd = -1, .queues = 1, .batch = 64, .frames = 4096, .ring = 2048, .frame_size = 4096};

/* UMEM chunk size: 2048 or 4096 (--frame-size), as pinhole's frames. */
#define FRAME_SIZE ((uint32_t)opt.frame_size)

/* ---- rings --------------------------------------------------------------------------------- */

static inline uint32_t load_acquire(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void store_release(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* Free slots in a producer ring; re-reads the kernel's consumer index only when short. */
static inline uint32_t prod_free(struct ring *r, uint32_t want) {
	uint32_t free = r->size - (r->cached_prod - r->cached_cons);
	if (free >= want) return free;
	r->cached_cons = load_acquire(r->consumer);
	return r->size - (r->cached_prod - r->cached_cons);
}

static inline void prod_submit(struct ring *r, uint32_t n) {
	r->cached_prod += n;
	store_release(r->producer, r->cached_prod);
}

/* Entries queued in a producer ring that the kernel has not consumed yet. */
static inline uint32_t prod_pending(struct ring *r) {
	r->cached_cons = load_acquire(r->consumer);
	return r->cached_prod - r->cached_cons;
}

/* Entries ready in a consumer ring; re-reads the kernel's producer index only when short. */
static inline uint32_t cons_avail(struct ring *r, uint32_t want) {
	uint32_t n = r->cached_prod - r->cached_cons;
	if (n >= want) return n;
	r->cached_prod = load_acquire(r->producer);
	return r->cached_prod - r->cached_cons;
}

static inline void cons_release(struct ring *r, uint32_t n) {
	r->cached_cons += n;
	store_release(r->consumer, r->cached_cons);
}

static void map_ring(int fd, struct ring *r, const struct xdp_ring_offset *o, uint32_t entries, size_t entry_size,
		     off_t pgoff) {
	r->map_len = o->desc + entries * entry_size;
	r->map = mmap(NULL, r->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
	if (r->map == MAP_FAILED) die("mmap ring");
	uint8_t *base = r->map;
	r->producer = (uint32_t *)(base + o->producer);
	r->consumer = (uint32_t *)(base + o->consumer);
	r->flags = (uint32_t *)(base + o->flags);
	r->desc = base + o->desc;
	r->size = entries;
	r->mask = entries - 1;
	r->cached_prod = *r->producer;
	r->cached_cons = *r->consumer;
}

/* ---- sockets ------------------------------------------------------------------------------- */

static void setopt_u32(int fd, int name, uint32_t v, const char *what) {
	if (setsockopt(fd, SOL_XDP, name, &v, sizeof(v)) < 0) die(what);
}

/*
 * Socket, UMEM, rings, bind: the order the kernel requires (Documentation/networking/af_xdp.rst).
 * rx: an RX ring (the input socket); otherwise a TX ring (the output socket). Every frame starts
 * on the free stack; the input socket's then go to its fill ring.
 */
static void xsk_open(struct xsk *x, const char *ifname, int queue, int rx) {
	unsigned ifindex = if_nametoindex(ifname);
	if (!ifindex) die(ifname);
	x->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
	if (x->fd < 0) die("socket(AF_XDP)");
	x->umem_len = (size_t)opt.frames * FRAME_SIZE;
	x->umem = mmap(NULL, x->umem_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (x->umem == MAP_FAILED) die("mmap UMEM");
	struct xdp_umem_reg reg = {.addr = (uint64_t)(uintptr_t)x->umem, .len = x->umem_len, .chunk_size = FRAME_SIZE};
	if (setsockopt(x->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof(reg)) < 0) die("XDP_UMEM_REG");
	/* The kernel wants both UMEM rings even on a socket that only sends. */
	setopt_u32(x->fd, XDP_UMEM_FILL_RING, opt.ring, "XDP_UMEM_FILL_RING");
	setopt_u32(x->fd, XDP_UMEM_COMPLETION_RING, opt.ring, "XDP_UMEM_COMPLETION_RING");
	setopt_u32(x->fd, rx ? XDP_RX_RING : XDP_TX_RING, opt.ring, rx ? "XDP_RX_RING" : "XDP_TX_RING");
	if (!rx && opt.tx_budget > 0) {
		uint32_t v = opt.tx_budget;
		if (setsockopt(x->fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &v, sizeof(v)) < 0)
			fprintf(stderr, "xdp-fwd: XDP_MAX_TX_SKB_BUDGET not set: %s\n", strerror(errno));
	}
	struct xdp_mmap_offsets off;
	socklen_t optlen = sizeof(off);
	if (getsockopt(x->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) < 0) die("XDP_MMAP_OFFSETS");
	map_ring(x->fd, &x->fill, &off.fr, opt.ring, sizeof(uint64_t), XDP_UMEM_PGOFF_FILL_RING);
	map_ring(x->fd, &x->comp, &off.cr, opt.ring, sizeof(uint64_t), XDP_UMEM_PGOFF_COMPLETION_RING);
	if (rx)
		map_ring(x->fd, &x->rx, &off.rx, opt.ring, sizeof(struct xdp_desc), XDP_PGOFF_RX_RING);
	else
		map_ring(x->fd, &x->tx, &off.tx, opt.ring, sizeof(struct xdp_desc), XDP_PGOFF_TX_RING);

	x->free = malloc(sizeof(uint64_t) * (size_t)opt.frames);
	if (!x->free) die("malloc");
	x->nfree = 0;
	for (int i = opt.frames - 1; i >= 0; i--) x->free[x->nfree++] = (uint64_t)i * FRAME_SIZE;
	if (rx) {
		uint32_t n = prod_free(&x->fill, x->nfree);
		if (n > x->nfree) n = x->nfree;
		uint64_t *fq = x->fill.desc;
		for (uint32_t i = 0; i < n; i++) fq[(x->fill.cached_prod + i) & x->fill.mask] = x->free[--x->nfree];
		prod_submit(&x->fill, n);
	}

	/* Zero-copy when the driver offers it, copy otherwise (no mode flag: the kernel decides).
	 * EBUSY right after another socket on the queue closed: teardown is asynchronous, retry. */
	struct sockaddr_xdp sa = {.sxdp_family = AF_XDP, .sxdp_ifindex = ifindex, .sxdp_queue_id = (uint32_t)queue,
				  .sxdp_flags = XDP_USE_NEED_WAKEUP};
	for (int attempt = 0, delay_ms = 10;; attempt++, delay_ms *= 2) {
		if (bind(x->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) break;
		if (errno != EBUSY || attempt == 5) die("bind AF_XDP");
		struct timespec ts = {.tv_sec = delay_ms / 1000, .tv_nsec = (delay_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
}

static int xsk_zerocopy(struct xsk *x) {
	struct xdp_options o;
	socklen_t len = sizeof(o);
	if (getsockopt(x->fd, SOL_XDP, XDP_OPTIONS, &o, &len) < 0) return 0;
	return (o.flags & XDP_OPTIONS_ZEROCOPY) != 0;
}

static void xskmap_set(int queue, int fd) {
	uint32_t key = (uint32_t)queue, value = (uint32_t)fd;
	union bpf_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.map_fd = (uint32_t)opt.xskmap_fd;
	attr.key = (uint64_t)(uintptr_t)&key;
	attr.value = (uint64_t)(uintptr_t)&value;
	attr.flags = BPF_ANY;
	if (syscall(SYS_bpf, BPF_MAP_UPDATE_ELEM, &attr, sizeof(attr)) < 0) die("XSKMAP update");
}

/* ---- the forwarding loop ------------------------------------------------------------------- */

/* Gives received frames back: fill ring while it has room, the rest onto the free stack. */
static inline void release_rx(struct xsk *x, const uint64_t *addr, uint32_t n) {
	uint32_t room = prod_free(&x->fill, n);
	uint32_t direct = n < room ? n : room;
	uint64_t *fq = x->fill.desc;
	for (uint32_t i = 0; i < direct; i++) fq[(x->fill.cached_prod + i) & x->fill.mask] = addr[i] & ~(uint64_t)(FRAME_SIZE - 1);
	if (direct) prod_submit(&x->fill, direct);
	for (uint32_t i = direct; i < n; i++) x->free[x->nfree++] = addr[i] & ~(uint64_t)(FRAME_SIZE - 1);
}

/* Moves parked frames from the free stack to the fill ring (the kernel publishes lazily). */
static inline void refill(struct xsk *x) {
	if (!x->nfree) return;
	uint32_t n = prod_free(&x->fill, x->nfree);
	if (n > x->nfree) n = x->nfree;
	uint64_t *fq = x->fill.desc;
	for (uint32_t i = 0; i < n; i++) fq[(x->fill.cached_prod + i) & x->fill.mask] = x->free[--x->nfree];
	if (n) prod_submit(&x->fill, n);
}

static inline void completions(struct xsk *x) {
	uint32_t n = cons_avail(&x->comp, x->comp.size);
	const uint64_t *cq = x->comp.desc;
	for (uint32_t i = 0; i < n; i++) x->free[x->nfree++] = cq[(x->comp.cached_cons + i) & x->comp.mask] & ~(uint64_t)(FRAME_SIZE - 1);
	if (n) cons_release(&x->comp, n);
}

/* One sendto when the kernel asked for it (or `force`) and frames are queued; EAGAIN is a result. */
static inline int kick(struct worker *w, int force) {
	struct xsk *x = &w->out;
	if ((!force && !(*x->tx.flags & XDP_RING_NEED_WAKEUP)) || prod_pending(&x->tx) == 0) return 0;
	w->c.kicks++;
	if (sendto(x->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0) {
		if (errno == EAGAIN || errno == EBUSY || errno == ENOBUFS || errno == ENETDOWN)
			w->c.kick_busy++;
		else
			die("sendto (TX kick)");
	}
	return 1;
}

static void *run_worker(void *arg) {
	struct worker *w = arg;
	struct xsk *in = &w->in, *out = &w->out;
	const uint32_t batch = (uint32_t)opt.batch;
	uint64_t rx_addr[MAX_BATCH];
	uint32_t rx_len[MAX_BATCH];
	struct pollfd pfd = {.fd = in->fd, .events = POLLIN};
	while (!stopping) {
		/* 1. receive */
		uint32_t n = cons_avail(&in->rx, batch);
		if (n > batch) n = batch;
		const struct xdp_desc *rq = in->rx.desc;
		uint64_t bytes = 0;
		for (uint32_t i = 0; i < n; i++) {
			const struct xdp_desc *d = &rq[(in->rx.cached_cons + i) & in->rx.mask];
			rx_addr[i] = d->addr;
			rx_len[i] = d->len;
			bytes += d->len;
		}
		if (n) cons_release(&in->rx, n);
		__atomic_store_n(&w->c.rx_packets, w->c.rx_packets + n, __ATOMIC_RELAXED);
		__atomic_store_n(&w->c.rx_bytes, w->c.rx_bytes + bytes, __ATOMIC_RELAXED);
		__atomic_store_n(&w->c.breaths, w->c.breaths + 1, __ATOMIC_RELAXED);

		if (!opt.drop && n) {
			/* 2. copy into out's UMEM and queue for TX */
			uint32_t got = n < out->nfree ? n : out->nfree;
			uint32_t room = prod_free(&out->tx, got);
			uint32_t k = got < room ? got : room;
			struct xdp_desc *tq = out->tx.desc;
			for (uint32_t i = 0; i < k; i++) {
				uint64_t frame = out->free[--out->nfree];
				memcpy(out->umem + frame + TX_OFFSET, in->umem + rx_addr[i], rx_len[i]);
				struct xdp_desc *d = &tq[(out->tx.cached_prod + i) & out->tx.mask];
				d->addr = frame + TX_OFFSET;
				d->len = rx_len[i];
				d->options = 0;
			}
			if (k) prod_submit(&out->tx, k);
			__atomic_store_n(&w->c.tx_packets, w->c.tx_packets + k, __ATOMIC_RELAXED);
			__atomic_store_n(&w->c.tx_dropped, w->c.tx_dropped + (n - k), __ATOMIC_RELAXED);
			/* 3. kick while the ring drains, 4. completions */
			uint32_t pending = prod_pending(&out->tx);
			for (int i = 0; i < 8 && pending > 0; i++) {
				if (!kick(w, i > 0)) break;
				uint32_t left = prod_pending(&out->tx);
				if (left >= pending) break;
				pending = left;
			}
			completions(out);
		} else if (!opt.drop) {
			/* Nothing received: still drain what an earlier breath left queued. */
			if (prod_pending(&out->tx)) kick(w, 1);
			completions(out);
		}
		/* 5. frames back to the fill ring */
		if (n) release_rx(in, rx_addr, n);
		refill(in);
		if (n == 0) {
			__atomic_store_n(&w->c.idle_waits, w->c.idle_waits + 1, __ATOMIC_RELAXED);
			poll(&pfd, 1, 50);
		}
	}
	return NULL;
}

/* ---- main ---------------------------------------------------------------------------------- */

static struct worker workers[MAX_QUEUES];

static uint64_t kernel_drops(void) {
	uint64_t sum = 0;
	for (int q = 0; q < opt.queues; q++) {
		struct xdp_statistics s;
		socklen_t len = sizeof(s);
		if (getsockopt(workers[q].in.fd, SOL_XDP, XDP_STATISTICS, &s, &len) == 0)
			sum += s.rx_dropped + s.rx_ring_full + s.rx_invalid_descs;
	}
	return sum;
}

static void print_counters(const char *event) {
	uint64_t rxp = 0, rxb = 0, txp = 0, txd = 0, kicks = 0, busy = 0, breaths = 0, idle = 0;
	for (int q = 0; q < opt.queues; q++) {
		struct counters *c = &workers[q].c;
		rxp += __atomic_load_n(&c->rx_packets, __ATOMIC_RELAXED);
		rxb += __atomic_load_n(&c->rx_bytes, __ATOMIC_RELAXED);
		txp += __atomic_load_n(&c->tx_packets, __ATOMIC_RELAXED);
		txd += __atomic_load_n(&c->tx_dropped, __ATOMIC_RELAXED);
		kicks += __atomic_load_n(&c->kicks, __ATOMIC_RELAXED);
		busy += __atomic_load_n(&c->kick_busy, __ATOMIC_RELAXED);
		breaths += __atomic_load_n(&c->breaths, __ATOMIC_RELAXED);
		idle += __atomic_load_n(&c->idle_waits, __ATOMIC_RELAXED);
	}
	printf("{\"event\":\"%s\",\"rxPackets\":%llu,\"rxBytes\":%llu,\"txPackets\":%llu,\"txDropped\":%llu,"
	       "\"kernelDrops\":%llu,\"kicks\":%llu,\"kickBusy\":%llu,\"breaths\":%llu,\"idleWaits\":%llu}\n",
	       event, (unsigned long long)rxp, (unsigned long long)rxb, (unsigned long long)txp, (unsigned long long)txd,
	       (unsigned long long)kernel_drops(), (unsigned long long)kicks, (unsigned long long)busy,
	       (unsigned long long)breaths, (unsigned long long)idle);
	fflush(stdout);
}

static int int_arg(const char *name, const char *v, int lo, int hi) {
	char *end;
	long n = strtol(v ? v : "", &end, 10);
	if (!v || *end || n < lo || n > hi) {
		fprintf(stderr, "xdp-fwd: %s: an integer %d..%d\n", name, lo, hi);
		exit(2);
	}
	return (int)n;
}

static int pow2(int n) { return n > 0 && (n & (n - 1)) == 0; }

int main(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--in")) opt.in = v, i++;
		else if (!strcmp(a, "--out")) opt.out = v, i++;
		else if (!strcmp(a, "--xskmap-fd")) opt.xskmap_fd = int_arg(a, v, 0, 1 << 20), i++;
		else if (!strcmp(a, "--queues")) opt.queues = int_arg(a, v, 1, MAX_QUEUES), i++;
		else if (!strcmp(a, "--batch")) opt.batch = int_arg(a, v, 1, MAX_BATCH), i++;
		else if (!strcmp(a, "--frames")) opt.frames = int_arg(a, v, 64, 1 << 20), i++;
		else if (!strcmp(a, "--frame-size")) opt.frame_size = int_arg(a, v, 2048, 4096), i++;
		else if (!strcmp(a, "--ring")) opt.ring = int_arg(a, v, 64, 1 << 18), i++;
		else if (!strcmp(a, "--stats-ms")) opt.stats_ms = int_arg(a, v, 0, 1 << 20), i++;
		else if (!strcmp(a, "--tx-budget")) opt.tx_budget = int_arg(a, v, 0, 1 << 16), i++;
		else if (!strcmp(a, "--drop")) opt.drop = 1;
		else {
			fprintf(stderr, "usage: xdp-fwd --in IF [--out IF | --drop] --xskmap-fd N [--queues N] [--batch N]\n"
					"               [--frames N] [--frame-size 2048|4096] [--ring N] [--stats-ms N] [--tx-budget N]\n");
			return 2;
		}
	}
	if (!opt.in || opt.xskmap_fd < 0 || (!opt.out && !opt.drop) || !pow2(opt.ring) || opt.frames < 2 * opt.ring || !pow2(opt.frame_size)) {
		fprintf(stderr, "xdp-fwd: need --in, --xskmap-fd, --out or --drop; --ring a power of two; --frames >= 2 x --ring; --frame-size 2048 or 4096\n");
		return 2;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (int q = 0; q < opt.queues; q++) {
		struct worker *w = &workers[q];
		w->queue = q;
		xsk_open(&w->in, opt.in, q, 1);
		if (!opt.drop) xsk_open(&w->out, opt.out, q, 0);
		xskmap_set(q, w->in.fd);
	}
	for (int q = 0; q < opt.queues; q++)
		if (pthread_create(&workers[q].thread, NULL, run_worker, &workers[q])) die("pthread_create");
	printf("{\"event\":\"ready\",\"mode\":\"c\",\"queues\":%d,\"batch\":%d,\"frames\":%d,\"ring\":%d,\"zerocopy\":%s,"
	       "\"drop\":%s,\"txBudget\":%d}\n",
	       opt.queues, opt.batch, opt.frames, opt.ring, xsk_zerocopy(&workers[0].in) ? "true" : "false",
	       opt.drop ? "true" : "false", opt.tx_budget);
	fflush(stdout);

	while (!stopping) {
		if (opt.stats_ms > 0) {
			struct timespec ts = {.tv_sec = opt.stats_ms / 1000, .tv_nsec = (opt.stats_ms % 1000) * 1000000L};
			nanosleep(&ts, NULL);
			if (!stopping) print_counters("stats");
		} else {
			pause();
		}
	}
	for (int q = 0; q < opt.queues; q++) pthread_join(workers[q].thread, NULL);
	print_counters("stopped");
	return 0;
}

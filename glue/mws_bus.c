/*
 * mws_bus.c -- channels across child processes: one log in anonymous shared
 * memory, made by the parent before it forks the first children and kept
 * for the life of the parent (every generation and restart uses the same
 * one).  A publish takes the next sequence number of the server and writes
 * its message into the log without waiting for anyone; a receive thread in
 * every child reads the log in sequence order and hands each message to
 * the channels above (installed with mws_bus_child_init).  A reader that
 * falls more than the log's length behind loses the oldest messages: the
 * loss is counted, logged and handed up as a gap.  docs/design.md says why
 * this design, and what it answers.
 *
 * The log:
 *   header   sequence counter, data counter, the futex word readers sleep
 *            on, the number of sleepers
 *   slots    MWS_BUS_SLOTS, slot (seq % MWS_BUS_SLOTS) describes message
 *            seq: its channel key, type, length, where its payload is
 *   data     MWS_BUS_DATA bytes, a ring of payloads
 *
 * A writer: seq = fetch_add(sequence); pos = fetch_add(data counter, len);
 * slot.commit = 0; slot fields; payload; slot.commit = seq + 1 (release);
 * then wakes sleepers.  A reader copies a slot whose commit is its seq + 1,
 * then its payload, and checks afterwards that neither was overwritten (the
 * slot's commit is unchanged and the data counter is within one ring of the
 * payload), as a sequence lock does.  Nothing a reader does is seen by a
 * writer: a stopped child stalls nobody.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#include <unistd.h>

#include "apr_strings.h"
#include "apr_thread_proc.h"
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"

#include "mws_private.h"

#define MWS_BUS_MAGIC    "MWSBUS01"
/* changes whenever the layout below changes: a parent that keeps a log of
 * another layout (the module was replaced, then a graceful restart) makes
 * a new one */
#define MWS_BUS_LAYOUT   2u
#define MWS_BUS_USERDATA "mod_websocket:bus"

typedef struct mws_bus_slot {
    uint64_t commit;             /* seq + 1 once written; else in progress
                                  * (0) or an older lap                    */
    uint64_t pos;                /* the payload's place in the data ring   */
    uint32_t len;                /* payload bytes                          */
    uint8_t type;                /* MWS_TEXT / MWS_BINARY                  */
    uint8_t klen;                /* key bytes (no NUL)                     */
    uint8_t flags;               /* BUS_FL_*                               */
    char key[MWS_KEY_MAX];
} mws_bus_slot;

typedef struct mws_bus_hdr {
    char magic[8];
    uint32_t layout, slot_size;
    uint64_t nslots, ndata;
    /* each on its own cache line: every publisher writes them */
    uint64_t seq __attribute__((aligned(64)));   /* next sequence number   */
    uint64_t dhead __attribute__((aligned(64))); /* data bytes reserved    */
    uint32_t wake __attribute__((aligned(64)));  /* futex: bumped per
                                                  * message                */
    uint32_t sleepers;           /* readers waiting on wake                */
    /* with a broker (mws_broker.c): its bridge process's state */
    uint32_t broker_up __attribute__((aligned(64)));  /* it can publish   */
    int64_t broker_beat;         /* apr_time_now() of its last sign        */
    uint64_t bridge_next;        /* the next message it will send (+1)    */
} mws_bus_hdr;

/* slot flags */
#define BUS_FL_OUT 1             /* published here, for the broker: the
                                  * bridge sends it, children skip it     */
#define BUS_FL_IN  2             /* from the broker: children deliver it  */
#define BUS_FL_GAP 4             /* no message: the broker connection was
                                  * lost, messages may be missing         */

#define BUS_ALIGN(n)   (((n) + 7) & ~(size_t)7)
#define BUS_HDR_SIZE   BUS_ALIGN(sizeof(mws_bus_hdr) + 64)
#define BUS_SIZE       (BUS_HDR_SIZE + MWS_BUS_SLOTS * sizeof(mws_bus_slot) \
                        + MWS_BUS_DATA)

/* one message may not take more than half the data ring */
#if MWS_PUBLISH_MAX * 2 > MWS_BUS_DATA
#error "the channel log's data ring must hold two of the largest messages"
#endif
#if (MWS_BUS_SLOTS & (MWS_BUS_SLOTS - 1)) || (MWS_BUS_DATA & (MWS_BUS_DATA - 1))
#error "MWS_BUS_SLOTS and MWS_BUS_DATA must be powers of two"
#endif

/* The log of this server (the parent's, inherited by every child). */
static mws_bus_hdr *bus;

#define BUS_SLOTS(b) ((mws_bus_slot *)((char *)(b) + BUS_HDR_SIZE))
#define BUS_DATA(b)  ((uint8_t *)(BUS_SLOTS(b) + MWS_BUS_SLOTS))

/* ---- the parent ---------------------------------------------------------- */

static mws_bus_hdr *bus_make(void)
{
    mws_bus_hdr *b = mmap(NULL, BUS_SIZE, PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);

    if (b == MAP_FAILED) {
        return NULL;
    }
    memcpy(b->magic, MWS_BUS_MAGIC, sizeof(b->magic));
    b->layout = MWS_BUS_LAYOUT;
    b->slot_size = (uint32_t)sizeof(mws_bus_slot);
    b->nslots = MWS_BUS_SLOTS;
    b->ndata = MWS_BUS_DATA;
    /* sequence numbers start at 1: a slot's commit 0 means "never" */
    b->seq = 1;
    return b;
}

static int bus_fits(const mws_bus_hdr *b)
{
    return !memcmp(b->magic, MWS_BUS_MAGIC, sizeof(b->magic))
           && b->layout == MWS_BUS_LAYOUT
           && b->slot_size == sizeof(mws_bus_slot)
           && b->nslots == MWS_BUS_SLOTS && b->ndata == MWS_BUS_DATA;
}

int mws_bus_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_pool_t *pproc = s->process->pool;
    void *kept = NULL;

    /* Kept in the process pool, which lives as long as the parent: the
     * module (and its static variables) is unloaded and loaded again at a
     * restart, while the children of the old generation still read and
     * write the log.  So the log is made once, and every generation uses
     * it: one sequence for the server. */
    apr_pool_userdata_get(&kept, MWS_BUS_USERDATA, pproc);
    if (kept && !bus_fits(kept)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, MWS_LOGNO(00152)
                     "channels: the running children use a channel log of "
                     "another version of mod_websocket; the new children "
                     "get a new one (messages do not pass between old and "
                     "new children until the old ones exit)");
        kept = NULL;
    }
    if (!kept) {
        if (!(kept = bus_make())) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, APR_FROM_OS_ERROR(errno), s,
                         MWS_LOGNO(00151) "channels: cannot map %lu bytes "
                         "of shared memory for the channel log",
                         (unsigned long)BUS_SIZE);
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        /* never unmapped: the children of every generation share it; it
         * goes with the last process of the server */
        apr_pool_userdata_set(kept, MWS_BUS_USERDATA, apr_pool_cleanup_null,
                              pproc);
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, MWS_LOGNO(00150)
                     "channels: a log of %u messages and %u KiB of payload "
                     "in anonymous shared memory (%lu bytes)",
                     (unsigned)MWS_BUS_SLOTS, (unsigned)(MWS_BUS_DATA / 1024),
                     (unsigned long)BUS_SIZE);
    }
    bus = kept;
    return OK;
}

/* ---- publish -------------------------------------------------------------- */

static long futex(uint32_t *addr, int op, uint32_t val,
                  const struct timespec *ts)
{
    /* not FUTEX_PRIVATE_FLAG: the word is shared between processes */
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

/* Copy n bytes into the data ring at pos (wrapping). */
static void ring_put(uint8_t *ring, uint64_t pos, const void *src, size_t n)
{
    size_t at = (size_t)(pos & (MWS_BUS_DATA - 1));
    size_t first = MWS_BUS_DATA - at;

    if (first >= n) {
        memcpy(ring + at, src, n);
    }
    else {
        memcpy(ring + at, src, first);
        memcpy(ring, (const uint8_t *)src + first, n - first);
    }
}

static void ring_get(const uint8_t *ring, uint64_t pos, void *dst, size_t n)
{
    size_t at = (size_t)(pos & (MWS_BUS_DATA - 1));
    size_t first = MWS_BUS_DATA - at;

    if (first >= n) {
        memcpy(dst, ring + at, n);
    }
    else {
        memcpy(dst, ring + at, first);
        memcpy((uint8_t *)dst + first, ring, n - first);
    }
}

int mws_bus_available(void)
{
    return bus != NULL;
}

uint64_t mws_bus_head(void)
{
    return bus ? __atomic_load_n(&bus->seq, __ATOMIC_SEQ_CST) : 0;
}

/* This generation sends its channels through a broker (set in the parent,
 * inherited by its children; a generation without keeps delivering the
 * log itself). */
static int bus_broker;

void mws_bus_set_broker(int on)
{
    bus_broker = on;
}

/* A bridge that has not given a sign for this long is gone. */
#define MWS_BROKER_BEAT apr_time_from_sec(3)

int mws_bus_broker_up(void)
{
    return bus && __atomic_load_n(&bus->broker_up, __ATOMIC_ACQUIRE)
           && apr_time_now() - __atomic_load_n(&bus->broker_beat,
                                               __ATOMIC_RELAXED)
              < MWS_BROKER_BEAT;
}

void mws_bus_broker_state(int up)
{
    if (bus) {
        __atomic_store_n(&bus->broker_beat, apr_time_now(), __ATOMIC_RELAXED);
        __atomic_store_n(&bus->broker_up, (uint32_t)up, __ATOMIC_RELEASE);
    }
}

static int bus_put(const char *key, mws_msg_type type, const void *data,
                   size_t len, uint8_t flags)
{
    mws_bus_slot *sl;
    uint64_t seq, pos = 0;
    size_t klen = strlen(key);

    if (!bus) {
        return MWS_ERR_STATE;
    }
    if (klen > MWS_KEY_MAX || len > MWS_PUBLISH_MAX) {
        return MWS_ERR_TOO_BIG;
    }
    /* the order of the server: this number says where this message is,
     * for every reader in every child */
    seq = __atomic_fetch_add(&bus->seq, 1, __ATOMIC_SEQ_CST);
    if (len) {
        pos = __atomic_fetch_add(&bus->dhead, BUS_ALIGN(len),
                                 __ATOMIC_SEQ_CST);
    }
    sl = &BUS_SLOTS(bus)[seq & (MWS_BUS_SLOTS - 1)];
    /* a reader of the slot's previous lap sees it change under it */
    __atomic_store_n(&sl->commit, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    sl->pos = pos;
    sl->len = (uint32_t)len;
    sl->type = (uint8_t)type;
    sl->klen = (uint8_t)klen;
    sl->flags = flags;
    memcpy(sl->key, key, klen);
    if (len) {
        ring_put(BUS_DATA(bus), pos, data, len);
    }
    __atomic_store_n(&sl->commit, seq + 1, __ATOMIC_RELEASE);
    __atomic_fetch_add(&bus->wake, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&bus->sleepers, __ATOMIC_SEQ_CST)) {
        futex(&bus->wake, FUTEX_WAKE, INT_MAX, NULL);
    }
    return MWS_OK;
}

int mws_bus_publish(const char *key, mws_msg_type type, const void *data,
                    size_t len)
{
    if (bus_broker) {
        /* it goes to the broker, and comes back from it in its order */
        if (!mws_bus_broker_up()) {
            return MWS_ERR_UNAVAILABLE;
        }
        return bus_put(key, type, data, len, BUS_FL_OUT);
    }
    return bus_put(key, type, data, len, 0);
}

int mws_bus_publish_in(const char *key, mws_msg_type type, const void *data,
                       size_t len)
{
    return bus_put(key, type, data, len, BUS_FL_IN);
}

int mws_bus_gap_in(void)
{
    return bus_put("", MWS_BINARY, NULL, 0, BUS_FL_IN | BUS_FL_GAP);
}

/* ---- the receive thread of a child --------------------------------------- */

static apr_thread_t *rx_thread;
static volatile int rx_stop;
static server_rec *rx_server;
static mws_bus_deliver_fn *rx_deliver;
static mws_bus_gap_fn *rx_gap;
static uint64_t rx_lost;          /* messages this child lost, all told    */
static uint64_t rx_next;          /* the first sequence number to read     */
static int rx_out;                /* the bridge: reads what goes out       */
static void (*rx_idle)(void);     /* the bridge: called at least every 1 s */
static const char *rx_who = "this child";

/* A gap: lost messages of key ("" when their channels are unknown).
 * Logged at most once every 10 seconds, with the total. */
static void rx_report_gap(const char *key, uint64_t lost, const char *why)
{
    static apr_time_t next_log;
    static uint64_t quiet;
    apr_time_t now = apr_time_now();

    rx_lost += lost;
    if (!lost) {
        /* rare (once per broker outage): always said */
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rx_server,
                     MWS_LOGNO(00167) "channels: %s may have lost messages: "
                     "%s", rx_who, why);
    }
    else if (now >= next_log) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, rx_server,
                     MWS_LOGNO(00153) "channels: %s lost %"
                     APR_UINT64_T_FMT " message(s)%s%s: %s (%" APR_UINT64_T_FMT
                     " lost in this process so far, %" APR_UINT64_T_FMT " more "
                     "gap(s) not logged; at most one line every 10 s)", rx_who,
                     (apr_uint64_t)lost, *key ? " of " : "", *key ? key : "",
                     why, (apr_uint64_t)rx_lost, (apr_uint64_t)quiet);
        next_log = now + apr_time_from_sec(10);
        quiet = 0;
    }
    else {
        ++quiet;
    }
    rx_gap(key, lost);
}

/* Losses of one channel in a row are handed up as one gap: the key and
 * count waiting, reported before the next message, another channel's
 * loss, or sleep. */
static char gap_key[MWS_KEY_MAX + 1];
static uint64_t gap_lost;

static void rx_flush_gap(void)
{
    if (gap_lost) {
        rx_report_gap(gap_key, gap_lost, "its payload was overwritten "
                      "before it was read");
        gap_lost = 0;
    }
}

static void rx_lost_one(const char *key)
{
    if (gap_lost && strcmp(gap_key, key)) {
        rx_flush_gap();
    }
    if (!gap_lost) {
        apr_cpystrn(gap_key, key, sizeof(gap_key));
    }
    ++gap_lost;
}

/* Wait until the futex word changes from seen, or timeout_ms pass. */
static void rx_sleep(uint32_t seen, long timeout_ms)
{
    struct timespec ts;

    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (timeout_ms % 1000) * 1000000L;
    __atomic_fetch_add(&bus->sleepers, 1, __ATOMIC_SEQ_CST);
    if (!rx_stop) {
        futex(&bus->wake, FUTEX_WAIT, seen, &ts);
    }
    __atomic_fetch_sub(&bus->sleepers, 1, __ATOMIC_SEQ_CST);
}

/* How long a message whose number was taken may stay unwritten before the
 * readers go on without it (its publisher was stopped or killed in the
 * middle of publish(); a copy takes microseconds). */
#define MWS_BUS_STUCK_MS 500

/* Read the log from rx_next on until rx_stop: a child delivers what is
 * not going out to a broker, the bridge what is (rx_out). */
static void rx_loop(void)
{
    uint8_t *buf = malloc(MWS_PUBLISH_MAX + 1);
    char key[MWS_KEY_MAX + 1];
    mws_bus_slot *slots = BUS_SLOTS(bus);
    const uint8_t *ring = BUS_DATA(bus);
    apr_time_t unwritten_since = 0;

    if (!buf) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_ENOMEM, rx_server,
                     MWS_LOGNO(00156) "channels: no memory for the receive "
                     "thread: %s gets no channel messages", rx_who);
        return;
    }
    while (!rx_stop) {
        uint64_t want = rx_next + 1;
        mws_bus_slot *sl = &slots[rx_next & (MWS_BUS_SLOTS - 1)];
        uint32_t seen = __atomic_load_n(&bus->wake, __ATOMIC_SEQ_CST);
        uint64_t commit = __atomic_load_n(&sl->commit, __ATOMIC_ACQUIRE);
        uint64_t head = __atomic_load_n(&bus->seq, __ATOMIC_SEQ_CST);
        uint64_t pos, dhead;
        uint32_t len;
        uint8_t type, klen, flags;

        if (head - rx_next > MWS_BUS_SLOTS || commit > want) {
            /* overrun: the log went round past us; start again half a
             * log behind its head, so that the next laps do not catch us
             * at once */
            uint64_t next = head - MWS_BUS_SLOTS / 2;

            rx_flush_gap();
            if (next <= rx_next) {
                next = rx_next + 1;
            }
            rx_report_gap("", next - rx_next, "it fell behind by more than "
                          "the channel log holds");
            rx_next = next;
            unwritten_since = 0;
            continue;
        }
        if (commit != want) {
            rx_flush_gap();
            if (head > rx_next) {
                /* its number was taken but it is not written yet */
                apr_time_t now = apr_time_now();

                if (!unwritten_since) {
                    unwritten_since = now;
                }
                else if (now - unwritten_since
                         > apr_time_from_msec(MWS_BUS_STUCK_MS)) {
                    rx_report_gap("", 1, "its publisher did not finish "
                                  "writing it within 500 ms");
                    ++rx_next;
                    unwritten_since = 0;
                    continue;
                }
                rx_sleep(seen, 1);
            }
            else {
                if (rx_idle) {
                    rx_idle();
                }
                rx_sleep(seen, 1000);
            }
            continue;
        }
        unwritten_since = 0;
        flags = __atomic_load_n(&sl->flags, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(&sl->commit, __ATOMIC_ACQUIRE) != want) {
            continue;       /* overwritten meanwhile: an overrun */
        }
        if (!(flags & BUS_FL_OUT) != !rx_out) {
            ++rx_next;      /* not for this reader */
            continue;
        }
        /* copy, then check that nothing overwrote what was copied */
        pos = sl->pos;
        len = sl->len;
        type = sl->type;
        klen = sl->klen;
        if (len > MWS_PUBLISH_MAX) {
            len = 0;
        }
        if (klen > MWS_KEY_MAX) {
            klen = 0;
        }
        memcpy(key, sl->key, klen);
        key[klen] = '\0';
        if (len) {
            ring_get(ring, pos, buf, len);
        }
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(&sl->commit, __ATOMIC_ACQUIRE) != want) {
            continue;       /* overwritten while copied: the overrun above */
        }
        dhead = __atomic_load_n(&bus->dhead, __ATOMIC_SEQ_CST);
        ++rx_next;
        if (len && dhead - pos > MWS_BUS_DATA) {
            rx_lost_one(key);
            continue;
        }
        rx_flush_gap();
        if (flags & BUS_FL_GAP) {
            rx_report_gap("", 0, "the broker could not be reached for a "
                          "while: messages of other servers published "
                          "meanwhile did not arrive (how many is unknown)");
            continue;
        }
        if (!klen || (type != MWS_TEXT && type != MWS_BINARY)) {
            rx_report_gap("", 1, "it was malformed");
            continue;
        }
        rx_deliver(key, (mws_msg_type)type, buf, len, want - 1);
        if (rx_out) {
            __atomic_store_n(&bus->bridge_next, rx_next, __ATOMIC_RELAXED);
        }
    }
    free(buf);
}

static void *APR_THREAD_FUNC rx_main(apr_thread_t *thd, void *unused)
{
    rx_loop();
    return NULL;
}

void mws_bus_bridge_run(server_rec *s, mws_bus_deliver_fn *deliver,
                        mws_bus_gap_fn *gap, void (*idle)(void))
{
    uint64_t head, kept;

    if (!bus) {
        return;
    }
    rx_server = s;
    rx_deliver = deliver;
    rx_gap = gap;
    rx_idle = idle;
    rx_out = 1;
    rx_who = "the broker bridge";
    /* go on where the previous bridge (the previous generation) stopped,
     * unless that is no longer in the log */
    head = __atomic_load_n(&bus->seq, __ATOMIC_SEQ_CST);
    kept = __atomic_load_n(&bus->bridge_next, __ATOMIC_RELAXED);
    rx_next = (kept && kept <= head && head - kept < MWS_BUS_SLOTS) ? kept
                                                                     : head;
    rx_loop();
}


static apr_status_t bus_child_exit(void *unused)
{
    apr_status_t trv;

    if (rx_thread) {
        rx_stop = 1;
        /* wakes every child's reader: they look and sleep again */
        futex(&bus->wake, FUTEX_WAKE, INT_MAX, NULL);
        apr_thread_join(&trv, rx_thread);
        rx_thread = NULL;
    }
    return APR_SUCCESS;
}

void mws_bus_child_init(apr_pool_t *pchild, server_rec *s,
                        mws_bus_deliver_fn *deliver, mws_bus_gap_fn *gap)
{
    apr_status_t rv;

    rx_server = s;
    rx_deliver = deliver;
    rx_gap = gap;
    if (!bus) {
        return;
    }
    /* what was published before this child started is not for it */
    rx_next = __atomic_load_n(&bus->seq, __ATOMIC_SEQ_CST);
    rx_stop = 0;
    /* registered last so that it runs first when the child pool dies:
     * nothing is delivered once the handlers' shutdown() runs */
    apr_pool_cleanup_register(pchild, NULL, bus_child_exit,
                              apr_pool_cleanup_null);
    rv = apr_thread_create(&rx_thread, NULL, rx_main, NULL, pchild);
    if (rv != APR_SUCCESS) {
        rx_thread = NULL;
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, MWS_LOGNO(00155)
                     "channels: cannot start the receive thread: this "
                     "child gets no channel messages");
    }
}

/*
 * mws_conn.c -- one WebSocket connection: its lifecycle, its send queue,
 * the pass that reads, runs the handler and writes (mws_drive_pass), and
 * the blocking driver that runs it on the request's worker thread.  The
 * parked driver of the event MPM is in mws_park.c.
 *
 * All bytes go through the connection's filters (c->input_filters,
 * c->output_filters), so mod_ssl works; the driver waits with a pollset on
 * the descriptor ap_get_pollfd_from_conn() gives, and other threads wake it
 * with apr_pollset_wakeup() after they queued something.
 *
 * Locking: mc->lock guards the queue, the timers, the state and the
 * reference count.  No callback into the handler runs with it held, and the
 * code never holds two connections' locks at once.
 */
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include "apr_strings.h"
#include "apr_portable.h"
#include "apr_thread_proc.h"

#include "httpd.h"
#include "http_core.h"
#include "http_log.h"
#include "http_connection.h"
#include "util_filter.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "http_request.h"

#include "mws_private.h"

static uint64_t mws_next_id;
static int mws_can_park;        /* this MPM can wait for input for us */
static int mws_single_threaded; /* prefork: one connection per process */
/* prefork: the connection whose thread waits in poll() right now */
static mws_drive *volatile mws_polling_drive;

/* ---- lifecycle -------------------------------------------------------- */

mws_conn *mws_conn_create(request_rec *r, mws_instance *inst,
                          const mws_dir_conf *dconf)
{
    mws_conn *mc = calloc(1, sizeof(*mc));
    int i;

    if (!mc) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, APR_ENOMEM, r, MWS_LOGNO(00006)
                      "cannot allocate a WebSocket connection");
        return NULL;
    }
    pthread_mutex_init(&mc->lock, NULL);
    pthread_cond_init(&mc->io_cond, NULL);
    mc->refs = 1;               /* the driver's */
    mc->state = MWS_ST_HANDSHAKE;
    mc->id = __atomic_add_fetch(&mws_next_id, 1, __ATOMIC_RELAXED);
    mc->c = r->connection;
    mc->r = r;
    mc->inst = inst;
    mws_limits_resolve(dconf, &mc->limits);
    mc->hold.section = mc->hold.addr = -1;
    mc->options = apr_table_make(r->connection->pool, dconf->options->nelts);
    for (i = 0; i < dconf->options->nelts; ++i) {
        mws_option *o = &APR_ARRAY_IDX(dconf->options, i, mws_option);
        apr_table_setn(mc->options, o->key, o->value);
    }
    mws_registry_add(mc);
    return mc;
}

mws_conn *mws_conn_retain(mws_conn *mc)
{
    pthread_mutex_lock(&mc->lock);
    ++mc->refs;
    pthread_mutex_unlock(&mc->lock);
    return mc;
}

/* One block: `head` bytes for the caller's struct, then the frame
 * (header and payload); *flen is the frame's length.  NULL: no memory. */
static void *frame_block(size_t head, int fin, ws_opcode op,
                         const void *data, size_t len, size_t *flen)
{
    uint8_t hdr[WS_MAX_FRAME_HEADER];
    size_t hlen = ws_frame_header(hdr, fin, 0, op, len, NULL);
    uint8_t *p = malloc(head + hlen + len);

    if (!p) {
        return NULL;
    }
    memcpy(p + head, hdr, hlen);
    if (len) {
        memcpy(p + head + hlen, data, len);
    }
    *flen = hlen + len;
    return p;
}

/* A queue entry for the frame at bytes (ours, or in shared). */
static void out_init(mws_out *o, const uint8_t *bytes, size_t len,
                     int is_close, mws_shared *shared)
{
    o->next = NULL;
    o->len = len;
    o->off = 0;
    o->is_close = is_close;
    o->bytes = bytes;
    o->shared = shared;
}

mws_shared *mws_shared_frame(mws_msg_type type, const void *data,
                             size_t len)
{
    size_t flen;
    mws_shared *sh = frame_block(sizeof(*sh), 1, (ws_opcode)type, data, len,
                                 &flen);

    if (sh) {
        sh->refs = 1;
        sh->len = flen;
    }
    return sh;
}

void mws_shared_release(mws_shared *sh)
{
    if (sh && __atomic_sub_fetch(&sh->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        free(sh);
    }
}

static void out_free(mws_out *o)
{
    mws_shared_release(o->shared);
    free(o);
}

static void out_free_list(mws_out *o)
{
    mws_out *next;

    for (; o; o = next) {
        next = o->next;
        out_free(o);
    }
}

static void outq_free(mws_outq *q)
{
    out_free_list(q->head);
    q->head = q->tail = NULL;
}

void mws_conn_release(mws_conn *mc)
{
    unsigned left;

    pthread_mutex_lock(&mc->lock);
    left = --mc->refs;
    pthread_mutex_unlock(&mc->lock);
    if (left == 0) {
        outq_free(&mc->out);
        outq_free(&mc->held);
        free(mc->close_reason);
        pthread_cond_destroy(&mc->io_cond);
        pthread_mutex_destroy(&mc->lock);
        free(mc);
    }
}

/* Mark the connection gone: later calls from any thread fail, queued data
 * and timers are dropped.  Called by the connection's own thread. */
static void conn_kill(mws_conn *mc)
{
    struct mws_timer *t, *next;

    pthread_mutex_lock(&mc->lock);
    mc->state = MWS_ST_DEAD;
    mc->pollset = NULL;
    for (t = mc->timers; t; t = next) {
        next = t->next;
        free(t);
    }
    mc->timers = NULL;
    mc->pong = NULL;
    mc->pongs = 0;
    outq_free(&mc->out);
    outq_free(&mc->held);
    __atomic_store_n(&mc->queued, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&mc->lock);
    mws_registry_remove(mc);
    mws_pubsub_drop_conn(mc);
    mws_limits_release(&mc->hold);
}

/* ---- the send queue --------------------------------------------------- */

/* Written bytes leave the queue's count, which never goes below zero
 * (an overflow resets it while frames are on their way). */
static void sub_queued(mws_conn *mc, size_t bytes)
{
    size_t cur = __atomic_load_n(&mc->queued, __ATOMIC_RELAXED), next;

    do {
        next = cur > bytes ? cur - bytes : 0;
    } while (!__atomic_compare_exchange_n(&mc->queued, &cur, next, 0,
                                          __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
}

static void outq_push(mws_outq *q, mws_out *o)
{
    o->next = NULL;
    if (q->tail) {
        q->tail->next = o;
    }
    else {
        q->head = o;
    }
    q->tail = o;
}

static void outq_append(mws_outq *q, mws_outq *more)
{
    if (!more->head) {
        return;
    }
    if (q->tail) {
        q->tail->next = more->head;
    }
    else {
        q->head = more->head;
    }
    q->tail = more->tail;
    more->head = more->tail = NULL;
}

/* Wake the driver if another thread queued something.  Lock held. */


/* Wake the driver after something was queued (lock held).  With claim,
 * a parked connection is not kicked here: *claim is set and the caller
 * owes it a callback (mws_conn_kick_batch), so that a broadcast can hand
 * many connections to one callback. */
static void wake_locked(mws_conn *mc, int *claim)
{
    if (mc->async) {
        if (!claim || !(*claim = mws_park_claim_locked(mc))) {
            mws_park_kick_locked(mc);
        }
    }
    else if (mc->pollset
             && !pthread_equal(pthread_self(), mc->driver_thread)) {
        apr_pollset_wakeup(mc->pollset);
    }
}

static mws_out *frame_new(int fin, ws_opcode op, const void *data,
                          size_t len, int is_close)
{
    size_t flen;
    mws_out *o = frame_block(sizeof(*o), fin, op, data, len, &flen);

    if (o) {
        out_init(o, MWS_OUT_BYTES(o), flen, is_close, NULL);
    }
    return o;
}

/*
 * Queue one frame.  kind says where it goes:
 *   MWS_Q_WHOLE   a whole data message: behind an open send_part message
 *   MWS_Q_PART    a part of the send_part message (first/next/last)
 *   MWS_Q_CONTROL ping/pong/close: straight into the write queue
 */
static int queue_out(mws_conn *mc, mws_out *o, int fin, ws_opcode op,
                     const void *data, size_t len, int kind, int *claim)
{
    size_t queued;

    pthread_mutex_lock(&mc->lock);
    if (mc->state == MWS_ST_DEAD || mc->close_queued
        || (mc->queue_overflow && op != WS_OP_CLOSE && op != WS_OP_PONG)) {
        /* after an overflow nothing more is taken: the client gets what
         * was written before, then 1008, and never a gap */
        pthread_mutex_unlock(&mc->lock);
        out_free(o);
        return mc->queue_overflow ? MWS_ERR_TOO_BIG : MWS_ERR_CLOSED;
    }
    queued = __atomic_load_n(&mc->queued, __ATOMIC_RELAXED);
    if (op != WS_OP_CLOSE && op != WS_OP_PONG && queued
        && (apr_off_t)(queued + o->len) > mc->limits.max_queued) {
        /* the client does not read fast enough: it will be closed */
        mc->queue_overflow = 1;
        wake_locked(mc, NULL);
        pthread_mutex_unlock(&mc->lock);
        out_free(o);
        return MWS_ERR_TOO_BIG;
    }
    if (kind == MWS_Q_WHOLE && mc->part_open) {
        outq_push(&mc->held, o);
    }
    else {
        outq_push(&mc->out, o);
        if (op == WS_OP_PONG) {
            mc->pong = o;       /* a newer ping's reply may replace it */
            ++mc->pongs;
        }
        if (kind == MWS_Q_PART && fin) {
            mc->part_open = 0;
            outq_append(&mc->out, &mc->held);
        }
    }
    if (op == WS_OP_CLOSE) {
        mc->close_queued = 1;
        mc->close_code = len >= 2 ? ((unsigned)((const uint8_t *)data)[0] << 8
                                     | ((const uint8_t *)data)[1])
                                  : WS_CLOSE_NO_STATUS;
        /* the reason is kept for on_close; most closes have none, so
         * the connection carries a pointer, not a 123-byte buffer */
        mc->close_reason_len = 0;
        if (len > 2 && (mc->close_reason = malloc(len - 2)) != NULL) {
            mc->close_reason_len = len - 2;
            memcpy(mc->close_reason, (const uint8_t *)data + 2,
                   mc->close_reason_len);
        }
        if (mc->state == MWS_ST_OPEN) {
            mc->state = MWS_ST_CLOSING;
        }
    }
    /* the writer subtracts without the lock (flush_out) */
    __atomic_add_fetch(&mc->queued, o->len, __ATOMIC_RELAXED);
    wake_locked(mc, claim);
    pthread_mutex_unlock(&mc->lock);
    return MWS_OK;
}

/*
 * Answer a ping.  RFC 6455 (5.5.3) lets an endpoint that received several
 * pings answer only the latest.  Up to MWS_MAX_PENDING_PONGS pongs wait for
 * the writer (a burst of pings, as conformance suites send, gets all its
 * answers); past that, the newest waiting pong is rewritten in place with
 * the newer payload, so a client that pings and never reads the pongs holds
 * a few control frames here, not one per ping.  Pongs have room for the
 * largest control payload for that reason.
 */
#define MWS_MAX_PENDING_PONGS 16

static int queue_pong(mws_conn *mc, const void *data, size_t len)
{
    uint8_t hdr[WS_MAX_FRAME_HEADER];
    size_t hlen, old;
    mws_out *o;

    if (len > WS_MAX_CONTROL_PAYLOAD) {
        return MWS_ERR_INVALID;         /* the parser never gives one */
    }
    hlen = ws_frame_header(hdr, 1, 0, WS_OP_PONG, len, NULL);
    pthread_mutex_lock(&mc->lock);
    if ((o = mc->pong) != NULL && mc->pongs >= MWS_MAX_PENDING_PONGS
        && mc->state != MWS_ST_DEAD && !mc->close_queued) {
        old = o->len;
        memcpy(MWS_OUT_BYTES(o), hdr, hlen);
        if (len) {
            memcpy(MWS_OUT_BYTES(o) + hlen, data, len);
        }
        o->len = hlen + len;
        if (o->len >= old) {
            __atomic_add_fetch(&mc->queued, o->len - old, __ATOMIC_RELAXED);
        }
        else {
            sub_queued(mc, old - o->len);
        }
        pthread_mutex_unlock(&mc->lock);
        return MWS_OK;
    }
    pthread_mutex_unlock(&mc->lock);
    o = malloc(sizeof(*o) + WS_MAX_FRAME_HEADER + WS_MAX_CONTROL_PAYLOAD);
    if (!o) {
        return MWS_ERR_NOMEM;
    }
    memcpy(MWS_OUT_BYTES(o), hdr, hlen);
    if (len) {
        memcpy(MWS_OUT_BYTES(o) + hlen, data, len);
    }
    out_init(o, MWS_OUT_BYTES(o), hlen + len, 0, NULL);
    return queue_out(mc, o, 1, WS_OP_PONG, data, len, MWS_Q_CONTROL, NULL);
}

int mws_queue_frame(mws_conn *mc, int fin, ws_opcode op, const void *data,
                    size_t len, int kind)
{
    mws_out *o;

    if (op == WS_OP_PONG) {
        return queue_pong(mc, data, len);
    }
    o = frame_new(fin, op, data, len, op == WS_OP_CLOSE);

    if (!o) {
        return MWS_ERR_NOMEM;
    }
    return queue_out(mc, o, fin, op, data, len, kind, NULL);
}

/* A whole message of a broadcast, built once (mws_shared_frame): mc's
 * queue takes its own reference.  *claim says whether the caller must
 * include mc in mws_conn_kick_batch(). */
int mws_queue_shared_claim(mws_conn *mc, mws_msg_type type,
                           mws_shared *sh, int *claim)
{
    mws_out *o = malloc(sizeof(*o));

    *claim = 0;
    if (!o) {
        return MWS_ERR_NOMEM;
    }
    __atomic_add_fetch(&sh->refs, 1, __ATOMIC_RELAXED);
    out_init(o, MWS_SHARED_BYTES(sh), sh->len, 0, sh);
    return queue_out(mc, o, 1, (ws_opcode)type, NULL, 0, MWS_Q_WHOLE, claim);
}

int mws_queue_close(mws_conn *mc, unsigned code, const char *reason)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t len = ws_close_build(payload, code, reason,
                                reason ? strlen(reason) : 0);

    return mws_queue_frame(mc, 1, WS_OP_CLOSE, payload, len, MWS_Q_CONTROL);
}

/* ---- timers ----------------------------------------------------------- */

static void timer_insert_locked(mws_conn *mc, struct mws_timer *t)
{
    struct mws_timer **pp = &mc->timers;

    while (*pp && (*pp)->due <= t->due) {
        pp = &(*pp)->next;
    }
    t->next = *pp;
    *pp = t;
}

mws_timer *mws_timer_add(mws_conn *mc, unsigned ms, int periodic,
                         mws_timer_fn fn, void *arg)
{
    struct mws_timer *t;

    if (!fn) {
        return NULL;
    }
    t = calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    t->period = periodic ? apr_time_from_msec(ms ? ms : 1) : 0;
    t->due = apr_time_now() + apr_time_from_msec(ms);
    t->fn = fn;
    t->arg = arg;
    pthread_mutex_lock(&mc->lock);
    if (mc->state == MWS_ST_DEAD) {
        pthread_mutex_unlock(&mc->lock);
        free(t);
        return NULL;
    }
    t->id = ++mc->timer_seq;
    timer_insert_locked(mc, t);
    wake_locked(mc, NULL);
    pthread_mutex_unlock(&mc->lock);
    /* The handler holds the id, not the address: a timer that ended is
     * freed, and a later one may get its address, which must not make an
     * old handle cancel the new timer. */
    return (mws_timer *)(uintptr_t)t->id;
}

int mws_timer_cancel(mws_conn *mc, mws_timer *handle)
{
    struct mws_timer **pp, *t;
    uint64_t id = (uint64_t)(uintptr_t)handle;
    int rv = MWS_ERR_NOTFOUND;

    if (!id) {
        return rv;
    }
    pthread_mutex_lock(&mc->lock);
    if (mc->running && mc->running->id == id && !mc->running_cancelled) {
        mc->running_cancelled = 1;
        rv = MWS_OK;
    }
    else {
        for (pp = &mc->timers; *pp; pp = &(*pp)->next) {
            if ((*pp)->id == id) {
                t = *pp;
                *pp = t->next;
                free(t);
                rv = MWS_OK;
                break;
            }
        }
    }
    pthread_mutex_unlock(&mc->lock);
    return rv;
}

/* Run the timers that are due; returns the next due time or 0. */
static apr_time_t run_timers(mws_conn *mc, apr_time_t now)
{
    apr_time_t next;
    struct mws_timer *t;
    mws_instance *prev;

    if (!__atomic_load_n(&mc->timers, __ATOMIC_RELAXED)) {
        return 0;       /* none (one added meanwhile wakes the driver) */
    }
    pthread_mutex_lock(&mc->lock);
    while ((t = mc->timers) != NULL && t->due <= now
           && mc->state == MWS_ST_OPEN) {
        mc->timers = t->next;
        mc->running = t;
        mc->running_cancelled = 0;
        pthread_mutex_unlock(&mc->lock);

        ap_log_cerror(APLOG_MARK, APLOG_TRACE5, 0, mc->c,
                      "ws(%" APR_UINT64_T_FMT "): timer due %" APR_TIME_T_FMT
                      " us ago", (apr_uint64_t)mc->id, now - t->due);
        prev = mws_instance_enter(mc->inst);
        t->fn(mc, t->arg);
        mws_instance_leave(prev);

        pthread_mutex_lock(&mc->lock);
        mc->running = NULL;
        if (t->period && !mc->running_cancelled
            && mc->state == MWS_ST_OPEN) {
            t->due += t->period;
            if (t->due < now) {
                t->due = now + t->period;  /* we fell behind: skip beats */
            }
            timer_insert_locked(mc, t);
        }
        else {
            free(t);
        }
    }
    next = mc->timers ? mc->timers->due : 0;
    pthread_mutex_unlock(&mc->lock);
    return next;
}

/* ---- the driver ------------------------------------------------------- */

static void alloc_trim(mws_drive *dv);


static void set_close_info(mws_drive *dv, int code, const void *reason,
                           size_t len)
{
    if (dv->have_code) {
        return;
    }
    dv->have_code = 1;
    dv->code = code;
    if (len > WS_MAX_CLOSE_REASON) {
        len = WS_MAX_CLOSE_REASON;
    }
    if (len) {
        memcpy(dv->reason, reason, len);
    }
    dv->reason[len] = '\0';
    dv->reason_len = len;
}

/* Fail the connection with code: queue our close, stop reading. */
static void fail(mws_drive *dv, unsigned code, const char *why)
{
    set_close_info(dv, (int)code, why, strlen(why));
    mws_queue_close(dv->mc, code, why);
    dv->done = 1;
}

/* How much a write may pass to the filters now without waiting: 0 when
 * the socket's send buffer is too full, (apr_size_t)-1 when we cannot
 * tell (the write then just goes, as on the blocking driver).  Linux
 * reports POLLOUT once at least a third of the buffer is free; a quarter
 * of it, in payload bytes, leaves room for the kernel's per-packet
 * overhead and TLS records. */
static apr_size_t write_room(mws_drive *dv)
{
    apr_socket_t *sock = ap_get_conn_socket(dv->c);
    apr_os_sock_t fd;
    struct pollfd pfd;
    int sndbuf = 0;
    socklen_t slen = sizeof(sndbuf);

    if (!sock || apr_os_sock_get(&fd, sock) != APR_SUCCESS) {
        return (apr_size_t)-1;
    }
    pfd.fd = fd;
    pfd.events = POLLOUT;
    pfd.revents = 0;
    if (poll(&pfd, 1, 0) < 0 || (pfd.revents & (POLLERR | POLLHUP))) {
        return (apr_size_t)-1;  /* the write reports what is wrong */
    }
    if (!(pfd.revents & POLLOUT)) {
        return 0;
    }
    /* asked each time: the kernel grows the buffer as the connection goes */
    if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &slen) != 0
        || sndbuf < 8 * 1024) {
        sndbuf = 8 * 1024;
    }
    return (apr_size_t)sndbuf / 4;
}

/*
 * What a careful write may pass now.  Only our writes fill the socket's
 * send buffer (the client's reads only empty it), so what poll() last
 * found free, less what we wrote since, is still free: the socket is asked
 * again only when that credit runs out, not before every write.  Each
 * write is charged its bytes and MWS_WRITE_OVERHEAD for the kernel's
 * per-packet memory; a write that is not careful ends the credit.
 */
#define MWS_WRITE_OVERHEAD 1024

static apr_size_t careful_room(mws_drive *dv)
{
    apr_size_t room;

    if (dv->write_credit > MWS_WRITE_OVERHEAD) {
        return dv->write_credit - MWS_WRITE_OVERHEAD;
    }
    room = write_room(dv);
    if (room == (apr_size_t)-1 || room <= MWS_WRITE_OVERHEAD) {
        dv->write_credit = 0;
        return room;            /* unknown, none, or only a little */
    }
    dv->write_credit = room;
    return room - MWS_WRITE_OVERHEAD;
}

static void charge_write(mws_drive *dv, int careful, apr_size_t bytes)
{
    if (!careful || dv->write_credit <= bytes + MWS_WRITE_OVERHEAD) {
        dv->write_credit = 0;
    }
    else {
        dv->write_credit -= bytes + MWS_WRITE_OVERHEAD;
    }
}

/* When to try again to write to a client whose socket was full: soon at
 * first, then less and less often (2 ms doubling up to 100 ms).  Nothing
 * but time tells a parked connection that its client read: the MPM polls
 * it for input only. */
static apr_time_t retry_write_at(mws_drive *dv)
{
    if (!dv->write_backoff) {
        dv->write_backoff = apr_time_from_msec(2);
    }
    else if (dv->write_backoff < apr_time_from_msec(100)) {
        dv->write_backoff *= 2;
    }
    return dv->now + dv->write_backoff;
}

/* Put frames we did not write back at the head of the queue. */
static void unflush(mws_conn *mc, mws_out *head)
{
    mws_out *last = head;

    while (last->next) {
        last = last->next;
    }
    pthread_mutex_lock(&mc->lock);
    last->next = mc->out.head;
    mc->out.head = head;
    if (!mc->out.tail) {
        mc->out.tail = last;
    }
    pthread_mutex_unlock(&mc->lock);
}

/*
 * Write what is queued.  Returns APR_SUCCESS, the write error, or
 * APR_EAGAIN when `careful` and the client's socket cannot take more now:
 * what is left stays queued (and counts against WebSocketMaxQueuedBytes)
 * and dv->write_blocked says so.  Careful writes are for passes that serve
 * another thread's push (a broadcast's worker must never wait for one
 * slow client) and for connections that were blocked before; the others
 * write as httpd does, waiting up to Timeout for the client.
 */
static apr_status_t flush_out(mws_drive *dv, int careful)
{
    mws_conn *mc = dv->mc;
    mws_out *o, *keep;
    size_t bytes, n;
    apr_size_t room = (apr_size_t)-1;
    int wrote_close;
    apr_status_t rv = APR_SUCCESS;

    /* Without the lock first: a frame queued right after this look wakes
     * the driver (blocking) or is seen before the connection parks. */
    if (!__atomic_load_n(&mc->out.head, __ATOMIC_ACQUIRE)) {
        dv->write_blocked = 0;
        return APR_SUCCESS;
    }
    careful = careful || dv->write_blocked;
    if (careful && !(room = careful_room(dv))) {
        dv->write_blocked = 1;
        return APR_EAGAIN;
    }
    pthread_mutex_lock(&mc->lock);
    keep = mc->out.head;
    mc->out.head = mc->out.tail = NULL;
    mc->pong = NULL;                    /* ours now: not to be rewritten */
    mc->pongs = 0;
    pthread_mutex_unlock(&mc->lock);

    while (keep && room && rv == APR_SUCCESS) {
        /* Transient buckets: the frames stay ours until the flush
         * returns; a filter that keeps data longer sets it aside (a
         * copy).  At most `room` bytes: the rest waits. */
        bytes = 0;
        wrote_close = 0;
        for (o = keep; o && bytes < room; o = o->next) {
            n = o->len - o->off;
            if (n > room - bytes) {
                n = room - bytes;
            }
            APR_BRIGADE_INSERT_TAIL(dv->bb_out,
                apr_bucket_transient_create((const char *)o->bytes + o->off,
                                            n, dv->c->bucket_alloc));
            bytes += n;
            o->off += n;
            if (o->off < o->len) {
                break;
            }
            wrote_close |= o->is_close;
        }
        APR_BRIGADE_INSERT_TAIL(dv->bb_out,
                                apr_bucket_flush_create(dv->c->bucket_alloc));
        rv = ap_pass_brigade(dv->c->output_filters, dv->bb_out);
        apr_brigade_cleanup(dv->bb_out);
        charge_write(dv, careful, bytes);
        while (keep && keep->off == keep->len) {
            o = keep;
            keep = o->next;
            out_free(o);
        }
        sub_queued(mc, bytes);
        if (wrote_close && rv == APR_SUCCESS) {
            __atomic_store_n(&mc->close_sent, 1, __ATOMIC_RELEASE);
        }
        if (wrote_close && !dv->close_written) {
            dv->close_written = 1;
            dv->close_deadline = apr_time_now() + mc->limits.close_timeout;
        }
        if (keep && careful) {
            /* the credit is spent: did the client read meanwhile? */
            room = careful_room(dv);
        }
    }
    if (keep) {
        if (rv == APR_SUCCESS) {
            unflush(mc, keep);
            dv->write_blocked = 1;
            return APR_EAGAIN;
        }
        out_free_list(keep);            /* the connection is over */
    }
    dv->write_blocked = 0;
    return rv;
}

static int deliver(mws_drive *dv, mws_msg_type type, const void *data,
                   size_t len)
{
    mws_instance *prev = mws_instance_enter(dv->mc->inst);
    int rc = dv->h->on_message(dv->mc, type, data, len);

    mws_instance_leave(prev);
    return rc;
}

static void handler_failed(mws_drive *dv)
{
    ap_log_cerror(APLOG_MARK, APLOG_ERR, 0, dv->c, MWS_LOGNO(00007)
                  "ws(%" APR_UINT64_T_FMT "): handler %s (%s) returned an "
                  "error, closing with 1011", (apr_uint64_t)dv->mc->id,
                  dv->mc->inst->name, dv->mc->inst->where);
    fail(dv, WS_CLOSE_INTERNAL_ERROR, "handler error");
}

/*
 * Reassembly buffers of unfinished messages.  A client can send the start
 * of a large message and then only answer pings: the buffer would stay for
 * as long as the connection lives.  Two bounds: all buffers of this child
 * together stay under WebSocketMaxReassemblyMemory (a message that would
 * go beyond closes its connection with 1008), and a message that makes no
 * progress for httpd's Timeout closes with 1008 (check_idle).
 */
apr_size_t mws_reassembly_limit = MWS_DEFAULT_REASSEMBLY;
static apr_size_t mws_reassembly_used;      /* atomic, this child */

static void msg_free(mws_drive *dv)
{
    if (dv->msg_cap) {
        __atomic_sub_fetch(&mws_reassembly_used, dv->msg_cap,
                           __ATOMIC_RELAXED);
    }
    free(dv->msg);
    dv->msg = NULL;
    dv->msg_cap = 0;
    dv->msg_open = 0;
}

/* Make room for `more` bytes; 0: the connection is failing. */
static int msg_grow(mws_drive *dv, size_t more)
{
    size_t cap = dv->msg_cap ? dv->msg_cap : 4096;
    size_t used;
    uint8_t *m;

    while (cap < dv->msg_len + more) {
        cap *= 2;
    }
    used = __atomic_add_fetch(&mws_reassembly_used, cap - dv->msg_cap,
                              __ATOMIC_RELAXED);
    if (used > mws_reassembly_limit) {
        __atomic_sub_fetch(&mws_reassembly_used, cap - dv->msg_cap,
                           __ATOMIC_RELAXED);
        ap_log_cerror(APLOG_MARK, APLOG_WARNING, 0, dv->c, MWS_LOGNO(00027)
                      "ws(%" APR_UINT64_T_FMT "): unfinished messages of "
                      "this process would hold more than "
                      "WebSocketMaxReassemblyMemory (%" APR_SIZE_T_FMT
                      " bytes): closing with 1008", (apr_uint64_t)dv->mc->id,
                      mws_reassembly_limit);
        fail(dv, WS_CLOSE_POLICY, "server busy: message too large now");
        return 0;
    }
    m = realloc(dv->msg, cap);
    if (!m) {
        __atomic_sub_fetch(&mws_reassembly_used, cap - dv->msg_cap,
                           __ATOMIC_RELAXED);
        fail(dv, WS_CLOSE_TOO_BIG, "out of memory");
        return 0;
    }
    dv->msg = m;
    dv->msg_cap = cap;
    return 1;
}

static void on_data(mws_drive *dv, const ws_event *ev)
{
    mws_msg_type type = (ev->opcode == WS_OP_TEXT) ? MWS_TEXT : MWS_BINARY;
    int first = (ev->flags & WS_DATA_FIRST) != 0;
    int last = (ev->flags & WS_DATA_LAST) != 0;
    int rc;

    if (dv->mc->close_queued) {
        return;                 /* closing: data is discarded */
    }
    if (dv->h->on_fragment) {
        mws_instance *prev = mws_instance_enter(dv->mc->inst);
        rc = dv->h->on_fragment(dv->mc, type, ev->data, ev->len, first,
                                last);
        mws_instance_leave(prev);
    }
    else if (first && last) {
        rc = deliver(dv, type, ev->data, ev->len);   /* no copy */
    }
    else {
        if (first) {
            dv->msg_len = 0;
            dv->msg_open = 1;
        }
        dv->msg_progress = dv->now;
        if (dv->msg_len + ev->len > dv->msg_cap && !msg_grow(dv, ev->len)) {
            return;
        }
        if (ev->len) {
            memcpy(dv->msg + dv->msg_len, ev->data, ev->len);
            dv->msg_len += ev->len;
        }
        if (!last) {
            return;
        }
        dv->msg_open = 0;
        rc = deliver(dv, type, dv->msg, dv->msg_len);
        if (dv->msg_cap > 65536) {      /* do not keep a large buffer */
            msg_free(dv);
        }
    }
    if (rc != 0) {
        handler_failed(dv);
    }
}

/* Feed what was read to the parser and act on each event. */
static void process(mws_drive *dv, uint8_t *buf, size_t len)
{
    ws_event ev;
    size_t used;
    ws_status st;

    while (!dv->done) {
        st = ws_parser_feed(&dv->parser, buf, len, &used, &ev);
        buf += used;
        len -= used;
        if (st == WS_NEED_MORE || st == WS_ERR_STATE) {
            return;
        }
        switch (ev.type) {
        case WS_EV_DATA:
            on_data(dv, &ev);
            break;
        case WS_EV_PING:
            if (!dv->mc->close_queued) {
                mws_queue_frame(dv->mc, 1, WS_OP_PONG, ev.data, ev.len,
                                MWS_Q_CONTROL);
            }
            break;
        case WS_EV_PONG:
            dv->pong_deadline = 0;
            break;
        case WS_EV_CLOSE:
            ap_log_cerror(APLOG_MARK, APLOG_TRACE2, 0, dv->c,
                          "ws(%" APR_UINT64_T_FMT "): peer closed with %u",
                          (apr_uint64_t)dv->mc->id, ev.close_code);
            if (dv->mc->close_queued) {
                /* we closed first: our code and reason, not the echo */
                set_close_info(dv, (int)dv->mc->close_code,
                               dv->mc->close_reason,
                               dv->mc->close_reason_len);
            }
            else {
                set_close_info(dv, (int)ev.close_code, ev.reason,
                               ev.reason_len);
                mws_queue_close(dv->mc, ev.close_code == WS_CLOSE_NO_STATUS
                                ? 0 : ev.close_code, NULL);
            }
            dv->done = 1;
            return;
        case WS_EV_ERROR:
            ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, dv->c, MWS_LOGNO(00008)
                          "ws(%" APR_UINT64_T_FMT "): protocol error, "
                          "closing with %u: %.*s", (apr_uint64_t)dv->mc->id,
                          ev.close_code, (int)ev.reason_len,
                          (const char *)ev.reason);
            if (dv->mc->close_queued) {
                dv->done = 1;   /* we were closing anyway */
            }
            else {
                char why[WS_MAX_CLOSE_REASON + 1];
                size_t n = ev.reason_len < WS_MAX_CLOSE_REASON
                           ? ev.reason_len : WS_MAX_CLOSE_REASON;
                memcpy(why, ev.reason, n);
                why[n] = '\0';
                fail(dv, ev.close_code, why);
            }
            return;
        default:
            return;
        }
    }
}

/* Input is read into a buffer of the thread that drives the connection
 * at the moment, so that an idle connection holds none.  Every event
 * that points into it is handled before the pass returns. */
static __thread uint8_t mws_rbuf[MWS_READ_CHUNK];

/* Read what is there without blocking, up to MWS_READ_PER_PASS: then
 * dv->read_more says that more may wait (a client that sends faster than
 * it reads must not make us queue replies without writing them).  Returns
 * APR_EAGAIN when no more is available now, APR_EOF when the peer is gone. */
static apr_status_t read_available(mws_drive *dv)
{
    apr_status_t rv;
    apr_size_t len, total = 0;
    int eos;

    dv->read_more = 0;
    for (;;) {
        rv = ap_get_brigade(dv->c->input_filters, dv->bb_in,
                            AP_MODE_READBYTES, APR_NONBLOCK_READ,
                            MWS_READ_CHUNK);
        if (rv != APR_SUCCESS) {
            apr_brigade_cleanup(dv->bb_in);
            if (APR_STATUS_IS_EAGAIN(rv)) {
                return APR_EAGAIN;
            }
            ap_log_cerror(APLOG_MARK, APLOG_TRACE2, rv, dv->c,
                          "ws(%" APR_UINT64_T_FMT "): read ends",
                          (apr_uint64_t)dv->mc->id);
            return rv;
        }
        if (APR_BRIGADE_EMPTY(dv->bb_in)) {
            return APR_EAGAIN;
        }
        eos = APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(dv->bb_in));
        len = MWS_READ_CHUNK;
        rv = apr_brigade_flatten(dv->bb_in, (char *)mws_rbuf, &len);
        apr_brigade_cleanup(dv->bb_in);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        if (len) {
            dv->last_read = dv->now;
            process(dv, mws_rbuf, len);
        }
        if (eos && !dv->upgrade_eos_seen && dv->c->master) {
            /* mod_http2 ends the (empty) request body of an upgraded
             * stream with one EOS; the WebSocket bytes follow it */
            dv->upgrade_eos_seen = 1;
            continue;
        }
        if (eos) {
            ap_log_cerror(APLOG_MARK, APLOG_TRACE2, 0, dv->c,
                          "ws(%" APR_UINT64_T_FMT "): input ended after %"
                          APR_SIZE_T_FMT " bytes", (apr_uint64_t)dv->mc->id,
                          len);
            return APR_EOF;
        }
        if (dv->done) {
            return APR_SUCCESS;
        }
        total += len;
        if (total >= MWS_READ_PER_PASS) {
            dv->read_more = 1;
            return APR_SUCCESS;
        }
        if (len < MWS_READ_CHUNK && dv->input_drains) {
            /* the core filter read until the socket said "would block":
             * asking again would only hear it say so once more */
            return APR_EAGAIN;
        }
    }
}

static int server_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

/* The server is stopping or restarting: close with 1001 once everything
 * queued before has been written.  Any thread. */
void mws_conn_going_away(mws_conn *mc)
{
    mws_queue_close(mc, WS_CLOSE_GOING_AWAY, "server shutting down");
}

/* The client let more than WebSocketMaxQueuedBytes pile up: drop what
 * waits (whole frames only) and close with 1008. */
static void check_overflow(mws_drive *dv)
{
    mws_conn *mc = dv->mc;
    int overflow;

    if (!__atomic_load_n(&mc->queue_overflow, __ATOMIC_RELAXED)) {
        return;         /* the common case, without the lock */
    }
    pthread_mutex_lock(&mc->lock);
    overflow = mc->queue_overflow;
    if (overflow) {
        /* drop what waits, but not a close frame someone already queued */
        mws_out *o, *next, *keep = NULL;
        for (o = mc->out.head; o; o = next) {
            next = o->next;
            if (o->is_close && !keep) {
                keep = o;
            }
            else {
                out_free(o);
            }
        }
        mc->out.head = mc->out.tail = keep;
        mc->pong = NULL;
        mc->pongs = 0;
        if (keep) {
            keep->next = NULL;
        }
        outq_free(&mc->held);
        __atomic_store_n(&mc->queued, keep ? keep->len : 0,
                         __ATOMIC_RELAXED);
        /* queue_overflow stays set: data sends keep failing until the
         * close below is queued, which then refuses them itself */
    }
    pthread_mutex_unlock(&mc->lock);
    if (overflow && !mc->close_queued) {
        ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, dv->c, MWS_LOGNO(00019)
                      "ws(%" APR_UINT64_T_FMT "): client reads too slowly, "
                      "more than %" APR_OFF_T_FMT " bytes queued: closing "
                      "with 1008", (apr_uint64_t)mc->id,
                      mc->limits.max_queued);
        fail(dv, WS_CLOSE_POLICY, "send queue limit exceeded");
    }
    if (overflow) {
        pthread_mutex_lock(&mc->lock);
        mc->queue_overflow = 0;
        pthread_mutex_unlock(&mc->lock);
    }
}

/* Keep-alive pings and the idle timeout.  Returns when to look again
 * (0: nothing pending). */
static apr_time_t check_idle(mws_drive *dv, apr_time_t now)
{
    mws_conn *mc = dv->mc;
    const mws_limits *l = &mc->limits;
    apr_time_t next = 0;

    if (mc->close_queued) {
        return 0;
    }
    /* a client that keeps talking (pongs) while its message makes no
     * progress; a silent one meets Timeout below (or the MPM's) */
    if (dv->msg_open && dv->last_read > dv->msg_progress) {
        apr_time_t stale_at = dv->msg_progress + dv->c->base_server->timeout;

        if (now >= stale_at) {
            ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, dv->c, MWS_LOGNO(00028)
                          "ws(%" APR_UINT64_T_FMT "): a message stayed "
                          "unfinished for Timeout (%" APR_TIME_T_FMT " s): "
                          "closing with 1008", (apr_uint64_t)mc->id,
                          apr_time_sec(dv->c->base_server->timeout));
            fail(dv, WS_CLOSE_POLICY, "message unfinished for too long");
            return 0;
        }
        next = stale_at;
    }
    if (dv->pong_deadline && now >= dv->pong_deadline) {
        ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, dv->c, MWS_LOGNO(00020)
                      "ws(%" APR_UINT64_T_FMT "): idle and no pong: closing "
                      "with 1001", (apr_uint64_t)mc->id);
        set_close_info(dv, WS_CLOSE_GOING_AWAY, "idle timeout", 12);
        mws_queue_close(mc, WS_CLOSE_GOING_AWAY, "idle timeout");
        return 0;
    }
    if (l->ping_interval) {
        if (!dv->next_ping) {
            dv->next_ping = now + l->ping_interval;
        }
        else if (now >= dv->next_ping) {
            mws_queue_frame(mc, 1, WS_OP_PING, NULL, 0, MWS_Q_CONTROL);
            dv->next_ping = now + l->ping_interval;
        }
        if (!next || dv->next_ping < next) {
            next = dv->next_ping;
        }
    }
    if (l->read_timeout) {
        apr_time_t dead_at = dv->last_read + l->read_timeout;
        if (now >= dead_at) {
            ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, dv->c, MWS_LOGNO(00026)
                          "ws(%" APR_UINT64_T_FMT "): nothing from the "
                          "client for Timeout (%" APR_TIME_T_FMT " s): "
                          "closing with 1001", (apr_uint64_t)mc->id,
                          apr_time_sec(l->read_timeout));
            set_close_info(dv, WS_CLOSE_GOING_AWAY, "timeout", 7);
            mws_queue_close(mc, WS_CLOSE_GOING_AWAY, "timeout");
            return 0;
        }
        if (!next || dead_at < next) {
            next = dead_at;
        }
    }
    if (l->idle_timeout) {
        apr_time_t idle_at = dv->last_read + l->idle_timeout;
        if (dv->pong_deadline) {
            idle_at = dv->pong_deadline;
        }
        else if (now >= idle_at) {
            mws_queue_frame(mc, 1, WS_OP_PING, "idle?", 5, MWS_Q_CONTROL);
            dv->pong_deadline = now + l->close_timeout;
            idle_at = dv->pong_deadline;
        }
        if (!next || idle_at < next) {
            next = idle_at;
        }
    }
    return next;
}

/* Everything there is to do now: write, read (if need_read), dispatch,
 * timers, idle.  Returns 1 when the connection is finished, else 0 with
 * dv->next_wake set to when to look again (0: only when input arrives or a thread
 * queues something). */
int mws_drive_pass(mws_drive *dv, int need_read)
{
    mws_conn *mc = dv->mc;
    apr_time_t next_timer, next_idle, now;
    apr_status_t rv;
    int pending;
    /* a parked connection's pass without input serves a push or a timer:
     * its writes must not wait for the client */
    int careful = mc->async && !need_read;

    dv->now = apr_time_now();   /* one clock reading per pass */
    dv->read_more = 0;
    for (;;) {
        check_overflow(dv);
        rv = flush_out(dv, careful);
        if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
            return 1;           /* cannot write: the peer is gone */
        }
        if (dv->done) {
            if (!dv->write_blocked) {
                return 1;
            }
            /* our last frames wait for a client that does not read: it
             * gets WebSocketCloseTimeout, then the connection is dropped
             * (aborted, so that httpd's lingering close does not wait) */
            if (!dv->drain_deadline) {
                dv->drain_deadline = dv->now + mc->limits.close_timeout;
            }
            if (dv->now >= dv->drain_deadline) {
                dv->c->aborted = 1;
                return 1;
            }
            if (need_read) {
                need_read = 0;  /* input now is discarded, not left to
                                 * wake the MPM's poll again and again */
                rv = read_available(dv);
                if (rv != APR_EAGAIN && rv != APR_SUCCESS) {
                    return 1;
                }
            }
            dv->next_wake = retry_write_at(dv);
            if (dv->next_wake > dv->drain_deadline) {
                dv->next_wake = dv->drain_deadline;
            }
            return 0;
        }
        /* Read once per pass: input that arrives while we write wakes the
         * poll (ours or the MPM's) at once, and a second read here would
         * mostly cost a system call that says "would block". */
        if (need_read) {
            need_read = 0;
            /* a client that lets the queue grow past its cap is not read
             * until the queue drains: TCP's back-pressure reaches it */
            dv->read_paused = (apr_off_t)__atomic_load_n(&mc->queued,
                                                         __ATOMIC_RELAXED)
                              > mc->limits.max_queued;
            if (!dv->read_paused) {
                rv = read_available(dv);
                if (rv != APR_EAGAIN && rv != APR_SUCCESS) {
                    return 1;   /* EOF or read error */
                }
                if (dv->done) {
                    continue;   /* flush our close, then leave */
                }
            }
        }
        /* We are about to look at everything: what another thread adds
         * from now on sets the flag again and is seen before we park. */
        if (__atomic_load_n(&mc->work_pending, __ATOMIC_RELAXED)) {
            __atomic_exchange_n(&mc->work_pending, 0, __ATOMIC_ACQ_REL);
        }
        now = dv->now;
        next_timer = run_timers(mc, now);
        next_idle = check_idle(dv, now);
        pending = ((__atomic_load_n(&mc->out.head, __ATOMIC_ACQUIRE) != NULL
                    && !dv->write_blocked)
                   || __atomic_load_n(&mc->queue_overflow, __ATOMIC_RELAXED));
        if (pending) {
            continue;           /* something to write: write it first */
        }
        if (next_idle && (!next_timer || next_idle < next_timer)) {
            next_timer = next_idle;
        }
        if (dv->write_blocked) {
            apr_time_t retry = retry_write_at(dv);

            if (!next_timer || retry < next_timer) {
                next_timer = retry;
            }
        }
        else {
            dv->write_backoff = 0;
        }
        if (dv->close_written) {
            if (now >= dv->close_deadline) {
                return 1;       /* the peer never answered our close */
            }
            if (!next_timer || dv->close_deadline < next_timer) {
                next_timer = dv->close_deadline;
            }
        }
        if (dv->alloc_busy) {
            apr_time_t trim_at = dv->last_read + MWS_TRIM_AFTER;

            if (now >= trim_at) {
                alloc_trim(dv);
            }
            else if (!next_timer || trim_at < next_timer) {
                next_timer = trim_at;
            }
        }
        dv->next_wake = next_timer;
        return 0;
    }
}

/* Passes with input until one no longer stops at its read budget: what
 * is left may sit in a filter (the core's own buffer, mod_ssl's), where the
 * MPM's poll would not see it.  Returns 1 when the connection is finished. */
int mws_drive_input(mws_drive *dv)
{
    int finished;

    do {
        finished = mws_drive_pass(dv, 1);
    } while (!finished && dv->read_more);
    return finished;
}

/* Whether a short read proves the input drained: every input filter is
 * httpd's core one, whose read is greedy (it stops short only when the
 * socket would block), or mod_logio's counter; none keeps bytes back
 * from us as mod_ssl or mod_http2 can. */
static int input_drains(conn_rec *c)
{
    ap_filter_t *f;

    if (c->master) {
        return 0;
    }
    for (f = c->input_filters; f; f = f->next) {
        if (f->frec != ap_core_input_filter_handle
            && strcasecmp(f->frec->name, "log_input_output")) {
            return 0;
        }
    }
    return 1;
}

static mws_drive *drive_create(mws_conn *mc)
{
    conn_rec *c = mc->c;
    mws_drive *dv = apr_pcalloc(c->pool, sizeof(*dv));
    ws_parser_config pcfg;

    dv->mc = mc;
    dv->c = c;
    dv->h = mc->inst->h;
    dv->code = WS_CLOSE_ABNORMAL;
    dv->bb_in = apr_brigade_create(c->pool, c->bucket_alloc);
    dv->bb_out = apr_brigade_create(c->pool, c->bucket_alloc);
    memset(&pcfg, 0, sizeof(pcfg));
    pcfg.max_message = (uint64_t)mc->limits.max_message;
    pcfg.max_frame = (uint64_t)mc->limits.max_frame;
    pcfg.require_mask = 1;
    pcfg.validate_utf8 = 1;
    ws_parser_init(&dv->parser, &pcfg);
    dv->last_read = apr_time_now();
    dv->input_drains = input_drains(c);
    mc->dv = dv;
    return dv;
}

/* The connection is over: no more calls succeed, the handler hears
 * on_close, the driver's reference goes.  Idempotent. */
void mws_drive_finish(mws_drive *dv)
{
    mws_conn *mc = dv->mc;

    if (dv->finished) {
        return;
    }
    dv->finished = 1;
    if (mc->async) {
        mws_park_forget(mc);
    }
    if (mc->max_free_lowered) {
        apr_allocator_max_free_set(apr_pool_allocator_get(dv->c->pool),
                                   ap_max_mem_free);
        mc->max_free_lowered = 0;
    }
    conn_kill(mc);
    ap_log_cerror(APLOG_MARK, APLOG_TRACE1, 0, dv->c,
                  "ws(%" APR_UINT64_T_FMT "): closed with %d",
                  (apr_uint64_t)mc->id, dv->code);
    mws_conn_report_close(mc, dv->code, dv->reason, dv->reason_len);
    msg_free(dv);
    ap_set_module_config(dv->c->conn_config, &websocket_module, NULL);
    dv->mc = NULL;
    mws_conn_release(mc);
}

/* ---- blocking driver: prefork, worker, HTTP/2 streams ------------------ */

static void drive_blocking(mws_drive *dv)
{
    mws_conn *mc = dv->mc;
    apr_pool_t *p;
    apr_pollset_t *ps = NULL;
    apr_pollfd_t pfd;
    const apr_pollfd_t *fired;
    apr_int32_t nfired;
    apr_status_t rv;
    apr_interval_time_t wait;
    sigset_t stop_sigs, old_sigs;
    int masked = 0;

    apr_pool_create(&p, dv->c->pool);
    apr_pool_tag(p, "mws_poll");
    memset(&pfd, 0, sizeof(pfd));
    rv = ap_get_pollfd_from_conn(dv->c, &pfd, NULL);
    if (rv == APR_SUCCESS && pfd.desc_type != APR_NO_DESC) {
        pfd.p = p;
        pfd.reqevents = APR_POLLIN;
        rv = apr_pollset_create(&ps, 1, p, APR_POLLSET_WAKEABLE);
        if (rv == APR_SUCCESS) {
            rv = apr_pollset_add(ps, &pfd);
        }
    }
    else if (rv == APR_SUCCESS) {
        rv = APR_EOF;
    }
    if (rv != APR_SUCCESS) {
        ap_log_cerror(APLOG_MARK, APLOG_ERR, rv, dv->c, MWS_LOGNO(00009)
                      "ws(%" APR_UINT64_T_FMT "): cannot poll this "
                      "connection", (apr_uint64_t)mc->id);
        ps = NULL;
        fail(dv, WS_CLOSE_INTERNAL_ERROR, "cannot poll connection");
    }
    pthread_mutex_lock(&mc->lock);
    mc->driver_thread = pthread_self();
    mc->pollset = ps;
    pthread_mutex_unlock(&mc->lock);

    /* prefork ends a child from the handler of SIGTERM or SIGHUP, which
     * runs the child pool's cleanups (our on_close reports, the
     * handlers' shutdown) on this thread: if the signal came while a pass
     * held a connection's lock, or was inside malloc, the child hung
     * there until httpd killed it.  The passes run with those signals
     * blocked; they arrive while we wait in poll(). */
    if (mws_single_threaded) {
        sigemptyset(&stop_sigs);
        sigaddset(&stop_sigs, SIGTERM);
        sigaddset(&stop_sigs, SIGHUP);
        masked = pthread_sigmask(SIG_BLOCK, &stop_sigs, &old_sigs) == 0;
    }
    while (!mws_drive_pass(dv, 1)) {
        if (mws_single_threaded && !mc->close_queued && server_stopping()) {
            /* prefork's graceful stop is a signal that may come while we
             * are not in poll(): look on every round */
            mws_conn_going_away(mc);
            continue;
        }
        wait = -1;
        if (dv->read_more) {
            wait = 0;           /* input may wait in a filter (TLS) */
        }
        else if (dv->next_wake) {
            apr_time_t now = apr_time_now();
            wait = dv->next_wake > now ? dv->next_wake - now : 0;
        }
        mws_polling_drive = dv;
        if (masked) {
            pthread_sigmask(SIG_SETMASK, &old_sigs, NULL);
        }
        rv = apr_pollset_poll(ps, wait, &nfired, &fired);
        if (masked) {
            pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
        }
        mws_polling_drive = NULL;
        ap_log_cerror(APLOG_MARK, APLOG_TRACE6, rv, dv->c,
                      "ws(%" APR_UINT64_T_FMT "): poll(%" APR_TIME_T_FMT
                      ") -> %d", (apr_uint64_t)mc->id, wait, (int)nfired);
        if (rv != APR_SUCCESS && !APR_STATUS_IS_EINTR(rv)
                 && !APR_STATUS_IS_TIMEUP(rv)) {
            ap_log_cerror(APLOG_MARK, APLOG_ERR, rv, dv->c, MWS_LOGNO(00010)
                          "ws(%" APR_UINT64_T_FMT "): poll failed",
                          (apr_uint64_t)mc->id);
            break;
        }
    }
    pthread_mutex_lock(&mc->lock);
    mc->pollset = NULL;
    pthread_mutex_unlock(&mc->lock);
    mws_drive_finish(dv);
    apr_pool_destroy(p);
    if (masked) {
        pthread_sigmask(SIG_SETMASK, &old_sigs, NULL);
    }
}


/* The connection is about to be closed under us (the MPM's Timeout, a
 * hard stop): if a close frame waits in the queue (child_stopping put a
 * 1001 there), try to write it, briefly, so the client learns why. */
void mws_drive_last_words(mws_drive *dv)
{
    mws_conn *mc = dv->mc;
    apr_pollfd_t pfd;
    int has_close;

    pthread_mutex_lock(&mc->lock);
    has_close = mc->close_queued && mc->out.head;
    pthread_mutex_unlock(&mc->lock);
    if (!has_close || dv->close_written || dv->c->aborted) {
        return;
    }
    memset(&pfd, 0, sizeof(pfd));
    if (ap_get_pollfd_from_conn(dv->c, &pfd, NULL) == APR_SUCCESS
        && pfd.desc_type == APR_POLL_SOCKET) {
        apr_socket_timeout_set(pfd.desc.s, apr_time_from_msec(500));
    }
    if (flush_out(dv, 0) == APR_SUCCESS && dv->close_written) {
        set_close_info(dv, (int)mc->close_code, "server shutting down", 20);
    }
}

/*
 * The child is told to stop at once.  child_stopping() has queued a 1001
 * on every connection; write it where that is safe now:
 * - prefork: the signal handler runs on the connection's own thread and
 *   the child exits from it; write only if that thread waits in poll()
 *   (not inside a filter);
 * - parked connections (event): take the ones in the MPM's pollset for a
 *   moment, as a callback would.
 * worker (and event's busy workers) shut their sockets before
 * child_stopping runs: those clients see EOF and handlers hear 1006.
 */
void mws_conn_last_words(mws_conn *mc)
{
    mws_drive *dv = mws_polling_drive;

    if (mws_single_threaded) {
        if (dv && dv->mc == mc) {
            mws_drive_last_words(dv);
        }
        return;
    }
    mws_park_last_words(mc);
}

void mws_conn_child_init(apr_pool_t *pchild, server_rec *s)
{
    int async = 0, waitio = 0, threaded = 0;

#ifdef AP_MPMQ_CAN_WAITIO
    if (ap_mpm_query(AP_MPMQ_IS_ASYNC, &async) != APR_SUCCESS) {
        async = 0;
    }
    if (ap_mpm_query(AP_MPMQ_CAN_WAITIO, &waitio) != APR_SUCCESS) {
        waitio = 0;
    }
#endif
    mws_can_park = async && waitio;
    if (ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded) == APR_SUCCESS) {
        mws_single_threaded = (threaded == AP_MPMQ_NOT_SUPPORTED);
    }
    if (mws_can_park) {
        apr_status_t rv = mws_park_child_init(pchild);
        if (rv != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, MWS_LOGNO(00022)
                         "cannot start the wake-up thread: WebSockets use "
                         "the blocking driver in this process");
            mws_can_park = 0;
        }
    }
}

/* Will the connection wait in the MPM's pollset, without a thread? */
static int conn_can_park(conn_rec *c, int allow_park)
{
    return allow_park && mws_can_park && !c->master && c->cs;
}

/*
 * The connection allocator of a parked WebSocket.  Asleep, it should keep
 * nothing (max-free 1, from mws_conn_accept() on).  Busy, that costs: every
 * read maps a fresh 8 KiB bucket buffer (and touches it) and unmaps it again,
 * two of each per message, since the core filter's greedy read takes a
 * second buffer while the first still holds the data.  So input lets it keep
 * two such buffers, and a second of silence gives them back.
 */
#define MWS_BUSY_MAX_FREE (16 * 1024)

/* Input arrived for a parked connection (its owner calls this). */
void mws_alloc_busy(mws_drive *dv)
{
    if (dv->mc && dv->mc->max_free_lowered && !dv->alloc_busy) {
        apr_allocator_max_free_set(apr_pool_allocator_get(dv->c->pool),
                                   MWS_BUSY_MAX_FREE);
        dv->alloc_busy = 1;
    }
}

/* Silent for MWS_TRIM_AFTER: back to keeping nothing.  APR has no call
 * that empties an allocator's free list, and a lower max-free applies only
 * to later frees; with at most MWS_BUSY_MAX_FREE on the list, in blocks of
 * 8 KiB or more, two allocations take all of it (or map fresh blocks when
 * it held less), and freeing them under max-free 1 unmaps them. */
static void alloc_trim(mws_drive *dv)
{
    apr_allocator_t *a = apr_pool_allocator_get(dv->c->pool);
    apr_memnode_t *n1, *n2;

    if (!dv->msg_open) {
        msg_free(dv);           /* a buffer kept for the next message */
    }
    apr_allocator_max_free_set(a, 1);
    n1 = apr_allocator_alloc(a, 8000);
    n2 = apr_allocator_alloc(a, 8000);
    if (n1) {
        apr_allocator_free(a, n1);
    }
    if (n2) {
        apr_allocator_free(a, n2);
    }
    dv->alloc_busy = 0;
}

/* The handshake is accepted; the 101 goes out next.  An idle parked
 * WebSocket should cost its connection pool's block and its bucket
 * allocator's block, nothing more, so from here on the connection's
 * allocator gives every block it gets back to the system at once.  It must
 * be lowered before the handshake frees anything: the 101's write buffer
 * and our first read's buffer (two 8 KiB blocks) would otherwise stay on
 * the allocator's free list for as long as the connection sleeps, since a
 * lower max-free only applies to later frees.  mws_drive_finish() restores it
 * before the MPM recycles the pool. */
void mws_conn_accept(mws_conn *mc, int allow_park)
{
    if (conn_can_park(mc->c, allow_park) && !mc->max_free_lowered) {
        apr_allocator_max_free_set(apr_pool_allocator_get(mc->c->pool), 1);
        mc->max_free_lowered = 1;
    }
}

/* After the 101: run the connection.  Blocking drivers return when it is
 * over; the parked driver returns at once and the MPM calls us back. */
void mws_conn_start(mws_conn *mc, int allow_park)
{
    conn_rec *c = mc->c;
    mws_drive *dv = drive_create(mc);

    ap_set_module_config(c->conn_config, &websocket_module, dv);
    mc->r = NULL;               /* the request ends before the connection */
    pthread_mutex_lock(&mc->lock);
    mc->state = MWS_ST_OPEN;
    mc->io = MWS_IO_OWNED;
    mc->async = conn_can_park(c, allow_park);
    pthread_mutex_unlock(&mc->lock);
    /* httpd's Timeout is how long a client may stay silent: parked, the
     * MPM closes the connection then; blocking, we do.  Client input
     * (a pong too) resets it, so ping well before it runs out. */
    if (!mc->limits.ping_interval) {
        mc->limits.ping_interval = c->base_server->timeout / 2;
    }
    if (!mc->async) {
        mc->limits.read_timeout = c->base_server->timeout;
    }
    ap_log_cerror(APLOG_MARK, APLOG_TRACE1, 0, c,
                  "ws(%" APR_UINT64_T_FMT "): open, handler %s, %s driver",
                  (apr_uint64_t)mc->id, mc->inst->name,
                  mc->async ? "parked" : "blocking");
    if (!mc->async) {
        drive_blocking(dv);
        return;
    }
    if (mws_drive_input(dv)) {
        mws_drive_finish(dv);
        return;
    }
    /* httpd ends the request; the MPM flushes, then polls for input and,
     * with the clogging flag, calls ws_process_connection() */
    c->cs->sense = CONN_SENSE_WANT_READ;
    c->clogging_input_filters = 1;
}

void mws_conn_register_hooks(void)
{
    mws_park_register_hooks();
}

/* Call the handler's on_close, exactly once per opened connection, from
 * whichever path gets there first (the driver, or the child's exit). */
void mws_conn_report_close(mws_conn *mc, int code, const char *reason,
                           size_t reason_len)
{
    const mws_handler *h = mc->inst->h;

    if (mc->opened && !__atomic_exchange_n(&mc->close_reported, 1,
                                           __ATOMIC_ACQ_REL)
        && h->on_close) {
        mws_instance *prev = mws_instance_enter(mc->inst);
        h->on_close(mc, code, reason, reason_len);
        mws_instance_leave(prev);
    }
}

/* The handshake was refused: the connection never opened. */
void mws_conn_abort(mws_conn *mc)
{
    conn_kill(mc);
    mws_conn_release(mc);
}

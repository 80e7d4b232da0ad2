/*
 * mws_queue.c -- the send queue of a connection: frames built once (also
 * one frame shared by the receivers of a broadcast), queued under the
 * connection's lock, pongs that a newer ping replaces, closes, and what the
 * writer takes and gives back.
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

mws_shared *mws_shared_frame_pmd(mws_msg_type type, const void *data,
                                 size_t len, unsigned window_bits,
                                 unsigned mem_level)
{
    ws_deflater *d = mws_pmd_thread_deflater(window_bits, mem_level);
    size_t flen;
    mws_shared *sh = d ? mws_pmd_frame(d, sizeof(*sh), 1, 1, (ws_opcode)type,
                                       data, len, 1, &flen)
                       : NULL;

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

void mws_out_free(mws_out *o)
{
    mws_shared_release(o->shared);
    free(o);
}

void mws_out_free_list(mws_out *o)
{
    mws_out *next;

    for (; o; o = next) {
        next = o->next;
        mws_out_free(o);
    }
}

static void outq_free(mws_outq *q)
{
    mws_out_free_list(q->head);
    q->head = q->tail = NULL;
}

/* ---- the send queue --------------------------------------------------- */

/* Written bytes leave the queue's count, which never goes below zero
 * (an overflow resets it while frames are on their way). */
void mws_queue_written(mws_conn *mc, size_t bytes)
{
    size_t cur = __atomic_load_n(&mc->queued, __ATOMIC_RELAXED), next;

    do {
        next = cur > bytes ? cur - bytes : 0;
    } while (!__atomic_compare_exchange_n(&mc->queued, &cur, next, 0,
                                          __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    mws_stats_queued(-(apr_int64_t)(cur - next));
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

/* Wake the driver after something was queued (lock held).  With claim,
 * a parked connection is not kicked here: *claim is set and the caller
 * owes it a callback (mws_park_kick_batch), so that a broadcast can hand
 * many connections to one callback. */
void mws_wake_locked(mws_conn *mc, int *claim)
{
    if (claim) {
        *claim = 0;
    }
    if (mc->ops) {
        mc->ops->wake_locked(mc, claim);
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
static int queue_out_locked(mws_conn *mc, mws_out *o, int fin,
                            ws_opcode op, const void *data, size_t len,
                            int kind, int *claim)
{
    size_t queued;

    if (mc->state == MWS_ST_DEAD) {
        mws_out_free(o);        /* its body may be gone: not a look at it */
        return MWS_ERR_CLOSED;
    }
    if (mc->b->close_queued
        || (mc->b->queue_overflow && op != WS_OP_CLOSE && op != WS_OP_PONG)) {
        /* after an overflow nothing more is taken: the client gets what
         * was written before, then 1008, and never a gap */
        mws_out_free(o);
        return mc->b->queue_overflow ? MWS_ERR_TOO_BIG : MWS_ERR_CLOSED;
    }
    queued = __atomic_load_n(&mc->queued, __ATOMIC_RELAXED);
    if (op != WS_OP_CLOSE && op != WS_OP_PONG && queued
        && (apr_off_t)(queued + o->len) > mc->b->limits->max_queued) {
        /* the client does not read fast enough: it will be closed */
        mc->b->queue_overflow = 1;
        mws_wake_locked(mc, NULL);
        mws_out_free(o);
        return MWS_ERR_TOO_BIG;
    }
    if (kind == MWS_Q_WHOLE && mc->b->part_open) {
        outq_push(&mc->b->held, o);
    }
    else {
        outq_push(&mc->b->out, o);
        if (op == WS_OP_PONG) {
            mc->b->pong = o;       /* a newer ping's reply may replace it */
            ++mc->b->pongs;
        }
        if (kind == MWS_Q_PART && fin) {
            mc->b->part_open = 0;
            outq_append(&mc->b->out, &mc->b->held);
        }
    }
    if (op == WS_OP_CLOSE) {
        mws_closed_by(mc, MWS_BY_SERVER);
        mc->b->close_queued = 1;
        mc->b->close_code = len >= 2 ? ((unsigned)((const uint8_t *)data)[0] << 8
                                     | ((const uint8_t *)data)[1])
                                  : WS_CLOSE_NO_STATUS;
        /* the reason is kept for on_close; most closes have none, so
         * the connection carries a pointer, not a 123-byte buffer */
        mc->b->close_reason_len = 0;
        if (len > 2 && (mc->b->close_reason = malloc(len - 2)) != NULL) {
            mc->b->close_reason_len = len - 2;
            memcpy(mc->b->close_reason, (const uint8_t *)data + 2,
                   mc->b->close_reason_len);
        }
        if (mc->state == MWS_ST_OPEN) {
            mc->state = MWS_ST_CLOSING;
        }
    }
    else if (fin && op != WS_OP_PING && kind != MWS_Q_CONTROL) {
        mws_stats_msg_out(mc);
    }
    /* the writer subtracts without the lock (flush_out) */
    __atomic_add_fetch(&mc->queued, o->len, __ATOMIC_RELAXED);
    mws_stats_queued((apr_int64_t)o->len);
    mws_wake_locked(mc, claim);
    return MWS_OK;
}

static int queue_out(mws_conn *mc, mws_out *o, int fin, ws_opcode op,
                     const void *data, size_t len, int kind, int *claim)
{
    int rc;

    pthread_mutex_lock(&mc->lock);
    rc = queue_out_locked(mc, o, fin, op, data, len, kind, claim);
    pthread_mutex_unlock(&mc->lock);
    return rc;
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
    if (mc->state != MWS_ST_DEAD && (o = mc->b->pong) != NULL
        && mc->b->pongs >= MWS_MAX_PENDING_PONGS && !mc->b->close_queued) {
        old = o->len;
        memcpy(MWS_OUT_BYTES(o), hdr, hlen);
        if (len) {
            memcpy(MWS_OUT_BYTES(o) + hlen, data, len);
        }
        o->len = hlen + len;
        if (o->len >= old) {
            __atomic_add_fetch(&mc->queued, o->len - old, __ATOMIC_RELAXED);
            mws_stats_queued((apr_int64_t)(o->len - old));
        }
        else {
            mws_queue_written(mc, old - o->len);
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

/* ---- permessage-deflate --------------------------------------------- */

/* A compressed frame of o's kind from d (see mws_pmd_frame). */
static mws_out *pmd_out(ws_deflater *d, int fin, int rsv1, ws_opcode op,
                        const void *data, size_t len, int last)
{
    size_t flen;
    mws_out *o = mws_pmd_frame(d, sizeof(*o), fin, rsv1, op, data, len,
                               last, &flen);

    if (o) {
        out_init(o, MWS_OUT_BYTES(o), flen, 0, NULL);
    }
    return o;
}

/* The connection's own deflater (lock held), made when first needed. */
static ws_deflater *conn_deflater(mws_conn *mc)
{
    if (!mc->b->pmd_def && (mc->b->pmd_def = malloc(sizeof(ws_deflater)))) {
        ws_deflate_init(mc->b->pmd_def, mc->b->pmd_params.server_max_window_bits,
                        mc->b->limits->mem_level, -1,
                        mc->b->pmd_params.server_no_context_takeover);
    }
    return mc->b->pmd_def;
}

/* The connection's deflater keeps nothing between messages (lock held). */
static void conn_deflater_idle(mws_conn *mc)
{
    if (mc->b->pmd_def && mc->b->pmd_params.server_no_context_takeover) {
        ws_deflate_end(mc->b->pmd_def);
        free(mc->b->pmd_def);
        mc->b->pmd_def = NULL;
    }
}

void mws_queue_pmd_free(struct mws_conn_body *b)
{
    if (b->pmd_def) {
        ws_deflate_end(b->pmd_def);
        free(b->pmd_def);
        b->pmd_def = NULL;
    }
}

/*
 * A whole data message from a handler.  On a connection that compresses,
 * messages of at least WebSocketCompressionMinSize bytes go compressed
 * unless no_compress.  Without context takeover, the sending thread's
 * deflater does it, outside the lock; with it, the connection's deflater,
 * under the lock, so that messages are compressed in the order they are
 * queued.  A message queued behind an open send_part message then goes
 * uncompressed: the parts still to come continue the same deflate stream,
 * and a message compressed now would be read before them.
 */
int mws_queue_message(mws_conn *mc, mws_msg_type type, const void *data,
                      size_t len, int no_compress)
{
    ws_deflater *d;
    mws_out *o;
    unsigned wbits, level;
    int rc;

    if (!mc->pmd || no_compress) {
        return mws_queue_frame(mc, 1, (ws_opcode)type, data, len,
                               MWS_Q_WHOLE);
    }
    /* the body (its parameters) only while the connection lives */
    pthread_mutex_lock(&mc->lock);
    if (mc->state == MWS_ST_DEAD) {
        pthread_mutex_unlock(&mc->lock);
        return MWS_ERR_CLOSED;
    }
    if (len < mc->b->limits->compress_min) {
        pthread_mutex_unlock(&mc->lock);
        return mws_queue_frame(mc, 1, (ws_opcode)type, data, len,
                               MWS_Q_WHOLE);
    }
    if (mc->b->pmd_params.server_no_context_takeover) {
        wbits = mc->b->pmd_params.server_max_window_bits;
        level = mc->b->limits->mem_level;
        pthread_mutex_unlock(&mc->lock);
        d = mws_pmd_thread_deflater(wbits, level);
        if (!d || !(o = pmd_out(d, 1, 1, (ws_opcode)type, data, len, 1))) {
            return MWS_ERR_NOMEM;
        }
        return queue_out(mc, o, 1, (ws_opcode)type, NULL, 0, MWS_Q_WHOLE,
                         NULL);
    }
    if (mc->b->part_open || mc->b->close_queued || mc->b->queue_overflow) {
        pthread_mutex_unlock(&mc->lock);
        return mws_queue_frame(mc, 1, (ws_opcode)type, data, len,
                               MWS_Q_WHOLE);
    }
    if (!(d = conn_deflater(mc))
        || !(o = pmd_out(d, 1, 1, (ws_opcode)type, data, len, 1))) {
        pthread_mutex_unlock(&mc->lock);
        return MWS_ERR_NOMEM;
    }
    rc = queue_out_locked(mc, o, 1, (ws_opcode)type, NULL, 0, MWS_Q_WHOLE,
                          NULL);
    pthread_mutex_unlock(&mc->lock);
    return rc;
}

/*
 * A part of a message sent in parts.  Whether the message is compressed
 * is decided at its first part (the connection compresses, and not
 * no_compress); its parts then continue one deflate stream in the
 * connection's deflater, the first frame with RSV1.
 */
int mws_queue_part(mws_conn *mc, mws_msg_type type, const void *data,
                   size_t len, int last, int no_compress)
{
    int first, rc;
    ws_opcode op;
    ws_deflater *d;
    mws_out *o;

    pthread_mutex_lock(&mc->lock);
    if (mc->state == MWS_ST_DEAD) {
        pthread_mutex_unlock(&mc->lock);
        return MWS_ERR_CLOSED;
    }
    first = !mc->b->part_open;
    if (first) {
        mc->b->part_open = 1;
        mc->b->part_type = type;
        mc->b->part_compressed = mc->pmd && !no_compress;
    }
    else if (mc->b->part_type != type) {
        pthread_mutex_unlock(&mc->lock);
        return MWS_ERR_INVALID;
    }
    op = first ? (ws_opcode)type : WS_OP_CONT;
    if (!mc->b->part_compressed) {
        pthread_mutex_unlock(&mc->lock);
        return mws_queue_frame(mc, last ? 1 : 0, op, data, len, MWS_Q_PART);
    }
    if (!(d = conn_deflater(mc))
        || !(o = pmd_out(d, last, first, op, data, len, last))) {
        pthread_mutex_unlock(&mc->lock);
        return MWS_ERR_NOMEM;
    }
    rc = queue_out_locked(mc, o, last, op, NULL, 0, MWS_Q_PART, NULL);
    if (last) {
        conn_deflater_idle(mc);
    }
    pthread_mutex_unlock(&mc->lock);
    return rc;
}

/* A whole message of a broadcast, built once (mws_shared_frame): mc's
 * queue takes its own reference.  *claim says whether the caller must
 * include mc in mws_park_kick_batch(). */
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

/* Put frames we did not write back at the head of the queue. */
void mws_queue_unflush(mws_conn *mc, mws_out *head)
{
    mws_out *last = head;

    while (last->next) {
        last = last->next;
    }
    pthread_mutex_lock(&mc->lock);
    last->next = mc->b->out.head;
    mc->b->out.head = head;
    if (!mc->b->out.tail) {
        mc->b->out.tail = last;
    }
    pthread_mutex_unlock(&mc->lock);
}

/* The writer takes every queued frame; a pong among them is the writer's
 * now and no longer rewritten. */
mws_out *mws_queue_take(mws_conn *mc)
{
    mws_out *head;

    pthread_mutex_lock(&mc->lock);
    head = mc->b->out.head;
    mc->b->out.head = mc->b->out.tail = NULL;
    mc->b->pong = NULL;
    mc->b->pongs = 0;
    pthread_mutex_unlock(&mc->lock);
    return head;
}

/* The client let more than WebSocketMaxQueuedBytes pile up: drop what
 * waits (whole frames only), but not a close frame someone already
 * queued.  queue_overflow stays set: data sends keep failing until the
 * driver's close is queued, which then refuses them itself.  Returns 1 if
 * there was an overflow. */
int mws_queue_drop_overflow(mws_conn *mc)
{
    mws_out *o, *next, *keep = NULL;
    size_t cur;
    int overflow;

    if (!__atomic_load_n(&mc->b->queue_overflow, __ATOMIC_RELAXED)) {
        return 0;       /* the common case, without the lock */
    }
    pthread_mutex_lock(&mc->lock);
    overflow = mc->b->queue_overflow;
    if (overflow) {
        for (o = mc->b->out.head; o; o = next) {
            next = o->next;
            if (o->is_close && !keep) {
                keep = o;
            }
            else {
                mws_out_free(o);
            }
        }
        mc->b->out.head = mc->b->out.tail = keep;
        mc->b->pong = NULL;
        mc->b->pongs = 0;
        if (keep) {
            keep->next = NULL;
        }
        outq_free(&mc->b->held);
        cur = __atomic_exchange_n(&mc->queued, keep ? keep->len : 0,
                                  __ATOMIC_RELAXED);
        mws_stats_queued((apr_int64_t)(keep ? keep->len : 0)
                         - (apr_int64_t)cur);
    }
    pthread_mutex_unlock(&mc->lock);
    return overflow;
}

/* The connection is gone: everything queued goes (lock held). */
void mws_queue_free_all(mws_conn *mc)
{
    mc->b->pong = NULL;
    mc->b->pongs = 0;
    outq_free(&mc->b->out);
    outq_free(&mc->b->held);
    mws_stats_queued(-(apr_int64_t)__atomic_exchange_n(&mc->queued, 0,
                                                       __ATOMIC_RELAXED));
}

/*
 * mws_dispatch.c -- what the peer's bytes do: the core's events (data, ping,
 * pong, close, protocol errors) acted on, messages reassembled and handed to
 * the handler, and the close information the handler hears in on_close.
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



void mws_drive_close_info(mws_drive *dv, int code, const void *reason,
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
    /* once per connection, at its end: in c->pool rather than a buffer
     * every idle connection would carry */
    dv->reason = len ? apr_pstrmemdup(dv->c->pool, reason, len) : "";
    dv->reason_len = len;
}

/* Fail the connection with code: queue our close, stop reading. */
void mws_drive_fail(mws_drive *dv, unsigned code, const char *why)
{
    mws_drive_close_info(dv, (int)code, why, strlen(why));
    mws_queue_close(dv->mc, code, why);
    dv->done = 1;
}

static void handler_failed(mws_drive *dv)
{
    ap_log_cerror(APLOG_MARK, APLOG_ERR, 0, dv->c, MWS_LOGNO(00007)
                  "ws(%" APR_UINT64_T_FMT "): handler %s (%s) returned an "
                  "error, closing with 1011", (apr_uint64_t)dv->mc->id,
                  dv->mc->inst->name, dv->mc->inst->where);
    mws_drive_fail(dv, WS_CLOSE_INTERNAL_ERROR, "handler error");
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

void mws_msg_free(mws_drive *dv)
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
        mws_drive_fail(dv, WS_CLOSE_POLICY, "server busy: message too large now");
        return 0;
    }
    m = realloc(dv->msg, cap);
    if (!m) {
        __atomic_sub_fetch(&mws_reassembly_used, cap - dv->msg_cap,
                           __ATOMIC_RELAXED);
        mws_drive_fail(dv, WS_CLOSE_TOO_BIG, "out of memory");
        return 0;
    }
    dv->msg = m;
    dv->msg_cap = cap;
    return 1;
}

/* A piece of a message for the handler: whole (first and last) straight
 * from where it is, else to on_fragment or into the reassembly buffer. */
static void deliver(mws_drive *dv, mws_msg_type type, const uint8_t *data,
                    size_t len, int first, int last)
{
    int rc;

    if (last) {
        mws_stats_in(dv->mc, 0, 1);
    }
    if (dv->h->on_fragment) {
        rc = mws_handler_fragment(dv->mc, type, data, len, first, last);
    }
    else if (first && last) {
        rc = mws_handler_message(dv->mc, type, data, len);   /* no copy */
    }
    else {
        if (first) {
            dv->msg_len = 0;
            dv->msg_open = 1;
        }
        dv->msg_progress = dv->now;
        if (dv->msg_len + len > dv->msg_cap && !msg_grow(dv, len)) {
            return;
        }
        if (len) {
            memcpy(dv->msg + dv->msg_len, data, len);
            dv->msg_len += len;
        }
        if (!last) {
            return;
        }
        dv->msg_open = 0;
        rc = mws_handler_message(dv->mc, type, dv->msg, dv->msg_len);
        if (dv->msg_cap > 65536) {      /* do not keep a large buffer */
            mws_msg_free(dv);
        }
    }
    if (rc != 0) {
        handler_failed(dv);
    }
}

/*
 * A chunk of a compressed message (RSV1, permessage-deflate): inflated a
 * buffer at a time and handed on as it comes, so a large message is never
 * whole in memory twice.  The inflater applies WebSocketMaxMessageSize and
 * WebSocketMaxFrameSize to the inflated sizes and checks text as UTF-8.
 */
static void on_compressed(mws_drive *dv, const ws_event *ev,
                          mws_msg_type type)
{
    const uint8_t *in = ev->data;
    size_t n = ev->len, olen;
    uint8_t *out = mws_pmd_inflate_buf();
    unsigned code = 0;
    const char *why = NULL;
    ws_status st;
    int last;

    if (!dv->inf) {
        /* RSV1 without the extension: the parser refuses it first */
        mws_drive_fail(dv, WS_CLOSE_PROTOCOL_ERROR, "RSV1 without "
                       "permessage-deflate");
        return;
    }
    if (ev->flags & WS_DATA_FIRST) {
        dv->zfirst = 1;
    }
    dv->msg_progress = dv->now;     /* zlib's state is held meanwhile */
    do {
        st = ws_inflate_feed(dv->inf, &in, &n, ev->flags, type == MWS_TEXT,
                             out, MWS_INFLATE_CHUNK, &olen, &code, &why);
        if (st == WS_ERR_PROTO) {
            ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, dv->c, MWS_LOGNO(00101)
                          "ws(%" APR_UINT64_T_FMT "): compressed message: "
                          "%s, closing with %u", (apr_uint64_t)dv->mc->id,
                          why, code);
            if (code == WS_CLOSE_TOO_BIG) {
                dv->msg_open = 0;
            }
            mws_drive_fail(dv, code, why);
            return;
        }
        last = st == WS_NEED_MORE && (ev->flags & WS_DATA_LAST);
        if (olen || last) {
            deliver(dv, type, out, olen, dv->zfirst, last);
            dv->zfirst = 0;
        }
    } while (st == WS_OK && !dv->done);
}

static void on_data(mws_drive *dv, const ws_event *ev)
{
    mws_msg_type type = (ev->opcode == WS_OP_TEXT) ? MWS_TEXT : MWS_BINARY;

    if (dv->mc->b->close_queued) {
        return;                 /* closing: data is discarded */
    }
    if (ev->flags & WS_DATA_RSV1) {
        on_compressed(dv, ev, type);
        return;
    }
    deliver(dv, type, ev->data, ev->len, (ev->flags & WS_DATA_FIRST) != 0,
            (ev->flags & WS_DATA_LAST) != 0);
}

/* Feed what was read to the parser and act on each event. */
void mws_dispatch(mws_drive *dv, uint8_t *buf, size_t len)
{
    ws_event ev;
    size_t used;
    ws_status st;

    mws_stats_in(dv->mc, len, 0);
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
            if (!dv->mc->b->close_queued) {
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
            if (dv->mc->b->close_queued) {
                /* we closed first: our code and reason, not the echo */
                mws_drive_close_info(dv, (int)dv->mc->b->close_code,
                               dv->mc->b->close_reason,
                               dv->mc->b->close_reason_len);
            }
            else {
                mws_closed_by(dv->mc, MWS_BY_CLIENT);
                mws_drive_close_info(dv, (int)ev.close_code, ev.reason,
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
            if (dv->mc->b->close_queued) {
                dv->done = 1;   /* we were closing anyway */
            }
            else {
                char why[WS_MAX_CLOSE_REASON + 1];
                size_t n = ev.reason_len < WS_MAX_CLOSE_REASON
                           ? ev.reason_len : WS_MAX_CLOSE_REASON;
                memcpy(why, ev.reason, n);
                why[n] = '\0';
                mws_drive_fail(dv, ev.close_code, why);
            }
            return;
        default:
            return;
        }
    }
}

/* A client that keeps talking (pongs) while its message makes no progress
 * is closed with 1008 after Timeout; a silent one meets Timeout as every
 * connection does.  Returns when to look again (0: nothing pending), or
 * -1 when the connection is failing. */
apr_time_t mws_msg_check_stale(mws_drive *dv, apr_time_t now)
{
    apr_time_t stale_at;

    if (!(dv->msg_open || (dv->inf && dv->inf->in_message))
        || dv->last_read <= dv->msg_progress) {
        return 0;
    }
    stale_at = dv->msg_progress + dv->c->base_server->timeout;
    if (now < stale_at) {
        return stale_at;
    }
    ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, dv->c, MWS_LOGNO(00028)
                  "ws(%" APR_UINT64_T_FMT "): a message stayed unfinished "
                  "for Timeout (%" APR_TIME_T_FMT " s): closing with 1008",
                  (apr_uint64_t)dv->mc->id,
                  apr_time_sec(dv->c->base_server->timeout));
    mws_drive_fail(dv, WS_CLOSE_POLICY, "message unfinished for too long");
    return -1;
}

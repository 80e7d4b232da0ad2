/*
 * mws_pass.c -- one pass over a connection, the same for both drivers:
 * write what is queued, read a bounded amount, hand it to the core and the
 * handler, run the timers, check the time limits.  Also the driver state's
 * creation and end, and the allocator policy of parked connections.
 */
#include <errno.h>
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

static void alloc_trim(mws_drive *dv);


/* Input is read into a buffer of the thread that drives the connection
 * at the moment, so that an idle connection holds none.  Every event
 * that points into it is handled before the pass returns. */
static __thread uint8_t mws_rbuf[MWS_READ_CHUNK];

/* mod_logio's counters, when it is loaded: the plain-socket path counts
 * what the core filters would have counted. */
static APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_in) *logio_in;

/* One read on the plain-socket path, as the core input filter does it
 * for a non-blocking read (the socket is ours alone: nothing else of
 * httpd reads it while we own the connection). */
static apr_status_t plain_read(mws_drive *dv, apr_size_t *len)
{
    ssize_t n;

    do {
        n = recv(dv->plain_fd, mws_rbuf, MWS_READ_CHUNK, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        *len = (apr_size_t)n;
        if (logio_in) {
            logio_in(dv->c, (apr_off_t)n);
        }
        return APR_SUCCESS;
    }
    *len = 0;
    if (n == 0) {
        return APR_EOF;
    }
    return (errno == EAGAIN || errno == EWOULDBLOCK) ? APR_EAGAIN
                                                     : APR_FROM_OS_ERROR(errno);
}

/* One chunk into mws_rbuf by the connection's path: APR_SUCCESS with *len
 * (0 is possible through the filters) and *eos, APR_EAGAIN when nothing
 * is there now, else the error or APR_EOF. */
static apr_status_t read_chunk(mws_drive *dv, apr_size_t *len, int *eos)
{
    apr_status_t rv;

    *eos = 0;
    if (dv->plain_in) {
        return plain_read(dv, len);
    }
    rv = ap_get_brigade(dv->c->input_filters, dv->bb_in, AP_MODE_READBYTES,
                        APR_NONBLOCK_READ, MWS_READ_CHUNK);
    if (rv != APR_SUCCESS) {
        apr_brigade_cleanup(dv->bb_in);
        if (APR_STATUS_IS_EAGAIN(rv)) {
            /* the core filter holds nothing more (it read the socket until
             * it would block): from now on the socket is read directly,
             * where the path allows it */
            dv->plain_in = dv->plain_fd >= 0;
            return APR_EAGAIN;
        }
        return rv;
    }
    if (APR_BRIGADE_EMPTY(dv->bb_in)) {
        /* httpd's core input filter answers a non-blocking read that would
         * block with an empty brigade: with only it (and mod_logio) in the
         * chain, nothing is held back, and the socket can be read directly
         * from now on -- from the first message on, for a connection drained
         * right after its handshake */
        if (dv->input_drains) {
            dv->plain_in = dv->plain_fd >= 0;
        }
        return APR_EAGAIN;
    }
    *eos = APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(dv->bb_in));
    *len = MWS_READ_CHUNK;
    rv = apr_brigade_flatten(dv->bb_in, (char *)mws_rbuf, len);
    apr_brigade_cleanup(dv->bb_in);
    return rv;
}

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
        rv = read_chunk(dv, &len, &eos);
        if (rv != APR_SUCCESS) {
            if (rv != APR_EAGAIN) {
                ap_log_cerror(APLOG_MARK, APLOG_TRACE2, rv, dv->c,
                              "ws(%" APR_UINT64_T_FMT "): read ends",
                              (apr_uint64_t)dv->mc->id);
            }
            return rv;
        }
        if (len) {
            dv->last_read = dv->now;
            mws_dispatch(dv, mws_rbuf, len);
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
            /* the read was greedy (the core filter's, or ours on the
             * plain-socket path, which input_drains covers): asking again
             * would only hear "would block" */
            dv->plain_in = dv->plain_fd >= 0;
            return APR_EAGAIN;
        }
    }
}

int mws_server_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

/* The client let more than WebSocketMaxQueuedBytes pile up: what waits
 * is dropped and the connection closes with 1008. */
static void check_overflow(mws_drive *dv)
{
    mws_conn *mc = dv->mc;

    if (!__atomic_load_n(&mc->b->queue_overflow, __ATOMIC_RELAXED)
        || !mws_queue_drop_overflow(mc)) {
        return;         /* the common case first, without a call */
    }
    if (!mc->b->close_queued) {
        ap_log_cerror(APLOG_MARK, APLOG_INFO, 0, dv->c, MWS_LOGNO(00019)
                      "ws(%" APR_UINT64_T_FMT "): client reads too slowly, "
                      "more than %" APR_OFF_T_FMT " bytes queued: closing "
                      "with 1008", (apr_uint64_t)mc->id,
                      mc->b->limits->max_queued);
        mws_drive_fail(dv, WS_CLOSE_POLICY, "send queue limit exceeded");
    }
    pthread_mutex_lock(&mc->lock);
    mc->b->queue_overflow = 0;
    pthread_mutex_unlock(&mc->lock);
}

/* The earlier of two times, where 0 is "none". */
static apr_time_t earliest(apr_time_t a, apr_time_t b)
{
    return (!a || (b && b < a)) ? b : a;
}

/* Close with 1001 and why (the connection's own time limits). */
static void time_out(mws_drive *dv, const char *why)
{
    mws_closed_by(dv->mc, MWS_BY_TIMEOUT);
    mws_drive_close_info(dv, WS_CLOSE_GOING_AWAY, why, strlen(why));
    mws_queue_close(dv->mc, WS_CLOSE_GOING_AWAY, why);
}

/* Keep-alive pings (WebSocketPingInterval, or Timeout/2), and the
 * blocking driver's Timeout for a silent client.  Returns when to look
 * again (0: nothing pending), or -1 when the connection timed out. */
static apr_time_t check_alive(mws_drive *dv, apr_time_t now)
{
    mws_conn *mc = dv->mc;
    const mws_limits *l = mc->b->limits;
    apr_time_t next = 0, dead_at;

    if (l->ping_interval) {
        if (!dv->next_ping) {
            dv->next_ping = now + l->ping_interval;
        }
        else if (now >= dv->next_ping) {
            mws_queue_frame(mc, 1, WS_OP_PING, NULL, 0, MWS_Q_CONTROL);
            dv->next_ping = now + l->ping_interval;
        }
        next = dv->next_ping;
    }
    if (l->read_timeout) {
        dead_at = dv->last_read + l->read_timeout;
        if (now >= dead_at) {
            ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, dv->c, MWS_LOGNO(00026)
                          "ws(%" APR_UINT64_T_FMT "): nothing from the "
                          "client for Timeout (%" APR_TIME_T_FMT " s): "
                          "closing with 1001", (apr_uint64_t)mc->id,
                          apr_time_sec(l->read_timeout));
            time_out(dv, "timeout");
            return -1;
        }
        next = earliest(next, dead_at);
    }
    return next;
}

/* WebSocketIdleTimeout: no traffic that long, ping (check_idle closes
 * when no pong came by the deadline).  Returns when to look again (0:
 * nothing pending). */
static apr_time_t check_idle_ping(mws_drive *dv, apr_time_t now)
{
    mws_conn *mc = dv->mc;
    const mws_limits *l = mc->b->limits;
    apr_time_t idle_at;

    if (!l->idle_timeout) {
        return 0;
    }
    idle_at = dv->last_read + l->idle_timeout;
    if (dv->pong_deadline) {
        idle_at = dv->pong_deadline;
    }
    else if (now >= idle_at) {
        mws_queue_frame(mc, 1, WS_OP_PING, "idle?", 5, MWS_Q_CONTROL);
        dv->pong_deadline = now + l->close_timeout;
        idle_at = dv->pong_deadline;
    }
    return idle_at;
}

/* The time limits of the connection.  Returns when to look again (0:
 * nothing pending). */
static apr_time_t check_idle(mws_drive *dv, apr_time_t now)
{
    apr_time_t stale, idle, alive;

    if (dv->mc->b->close_queued) {
        return 0;
    }
    if ((stale = mws_msg_check_stale(dv, now)) < 0) {
        return 0;
    }
    if (dv->pong_deadline && now >= dv->pong_deadline) {
        ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, dv->c, MWS_LOGNO(00020)
                      "ws(%" APR_UINT64_T_FMT "): idle and no pong: closing "
                      "with 1001", (apr_uint64_t)dv->mc->id);
        time_out(dv, "idle timeout");
        return 0;
    }
    if ((alive = check_alive(dv, now)) < 0) {
        return 0;
    }
    idle = check_idle_ping(dv, now);
    return earliest(earliest(stale, alive), idle);
}

/* Our close is queued (dv->done): the last frames wait for a client that
 * does not read.  It gets WebSocketCloseTimeout, then the connection is
 * dropped (aborted, so that httpd's lingering close does not wait).
 * Returns 1 when finished, else 0 with dv->next_wake set. */
static int pass_drain(mws_drive *dv, int need_read)
{
    apr_status_t rv;

    if (!dv->write_blocked) {
        return 1;
    }
    if (!dv->drain_deadline) {
        dv->drain_deadline = dv->now + dv->mc->b->limits->close_timeout;
    }
    if (dv->now >= dv->drain_deadline) {
        dv->c->aborted = 1;
        return 1;
    }
    if (need_read) {
        /* input now is discarded, not left to wake the MPM's poll again
         * and again */
        rv = read_available(dv);
        if (rv != APR_EAGAIN && rv != APR_SUCCESS) {
            return 1;
        }
    }
    dv->next_wake = earliest(mws_write_retry_at(dv), dv->drain_deadline);
    return 0;
}

/* Read once per pass: input that arrives while we write wakes the poll
 * (ours or the MPM's) at once, and a second read here would mostly cost a
 * system call that says "would block".  A client that lets the queue grow
 * past its cap is not read until the queue drains: TCP's back-pressure
 * reaches it.  Returns 1 when the connection is finished (EOF, error). */
static int pass_read(mws_drive *dv)
{
    mws_conn *mc = dv->mc;
    apr_status_t rv;

    dv->read_paused = (apr_off_t)__atomic_load_n(&mc->queued,
                                                 __ATOMIC_RELAXED)
                      > mc->b->limits->max_queued;
    if (dv->read_paused) {
        return 0;
    }
    rv = read_available(dv);
    return rv != APR_EAGAIN && rv != APR_SUCCESS;
}

/* When must the driver look again?  Sets dv->next_wake from the next
 * timer and the time limits; 1 when the peer never answered our close. */
static int pass_schedule(mws_drive *dv, apr_time_t next)
{
    apr_time_t now = dv->now, trim_at;

    if (dv->write_blocked) {
        next = earliest(next, mws_write_retry_at(dv));
    }
    else {
        dv->write_backoff = 0;
    }
    if (dv->close_written) {
        if (now >= dv->close_deadline) {
            return 1;
        }
        next = earliest(next, dv->close_deadline);
    }
    if (dv->alloc_busy) {
        /* silence both ways: no input, no write through the filters */
        trim_at = (dv->last_read > dv->last_filter_write ? dv->last_read
                                                         : dv->last_filter_write)
                  + MWS_TRIM_AFTER;
        if (now >= trim_at) {
            alloc_trim(dv);
        }
        else {
            next = earliest(next, trim_at);
        }
    }
    dv->next_wake = next;
    return 0;
}

/* Everything there is to do now: write, read (if need_read), dispatch,
 * timers, idle.  Returns 1 when the connection is finished, else 0 with
 * dv->next_wake set to when to look again (0: only when input arrives or
 * a thread queues something). */
int mws_drive_pass(mws_drive *dv, int need_read)
{
    mws_conn *mc = dv->mc;
    apr_time_t next;
    apr_status_t rv;
    /* a parked connection's pass without input serves a push or a timer,
     * a staying one's may serve others' too: its writes must not wait for
     * the client */
    int careful = (mc->async && !need_read) || dv->write_careful;

    dv->now = apr_time_now();   /* one clock reading per pass */
    dv->read_more = 0;
    for (;;) {
        check_overflow(dv);
        rv = mws_write_queue(dv, careful);
        if (rv != APR_SUCCESS && !APR_STATUS_IS_EAGAIN(rv)) {
            return 1;           /* cannot write: the peer is gone */
        }
        if (dv->done) {
            return pass_drain(dv, need_read);
        }
        if (need_read) {
            need_read = 0;
            if (pass_read(dv)) {
                return 1;
            }
            if (dv->done) {
                continue;       /* flush our close, then leave */
            }
        }
        /* We are about to look at everything: what another thread adds
         * from now on sets the flag again and is seen before we park. */
        if (__atomic_load_n(&mc->work_pending, __ATOMIC_RELAXED)) {
            __atomic_exchange_n(&mc->work_pending, 0, __ATOMIC_ACQ_REL);
        }
        next = __atomic_load_n(&mc->b->timers, __ATOMIC_RELAXED)
               ? mws_timer_run(mc, dv->now) : 0;
        next = earliest(next, check_idle(dv, dv->now));
        if ((__atomic_load_n(&mc->b->out.head, __ATOMIC_ACQUIRE) != NULL
             && !dv->write_blocked)
            || __atomic_load_n(&mc->b->queue_overflow, __ATOMIC_RELAXED)) {
            continue;           /* something to write: write it first */
        }
        return pass_schedule(dv, next);
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

/*
 * The plain-socket path: where every filter of the connection, both ways,
 * is httpd's core one (mod_logio's input counter allowed: its counts are
 * kept by hand), nothing would change a byte, so reading and writing the
 * socket directly saves the filter chains' work per message (about 1,500
 * instructions of a 64-byte echo, docs/design.md).  mod_ssl, mod_http2 (a
 * secondary connection), or any other filter keeps the filter path.
 * Decided once, when the connection becomes a WebSocket; the switch
 * itself waits until the core filters hold nothing (plain_in, plain_out).
 */
static const char *plain_refusal(conn_rec *c)
{
    ap_filter_t *f;

    if (c->master) {
        return "an HTTP/2 stream";
    }
    for (f = c->input_filters; f; f = f->next) {
        if (f->frec != ap_core_input_filter_handle
            && strcasecmp(f->frec->name, "log_input_output")) {
            return f->frec->name;
        }
    }
    for (f = c->output_filters; f; f = f->next) {
        if (f->frec != ap_core_output_filter_handle) {
            return f->frec->name;
        }
    }
    return NULL;
}

static void plain_setup(mws_drive *dv)
{
    apr_socket_t *sock = ap_get_conn_socket(dv->c);
    apr_os_sock_t fd;
    const char *why = plain_refusal(dv->c);

    dv->plain_fd = -1;
    if (why) {
        dv->path_why = apr_pstrcat(dv->c->pool, "filters (", why, ")", NULL);
        return;
    }
    if (!sock || apr_os_sock_get(&fd, sock) != APR_SUCCESS) {
        dv->path_why = "filters (no socket)";
        return;
    }
    if (!logio_in) {
        logio_in = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_in);
    }
    dv->plain_fd = fd;
    dv->path_why = "plain socket";
}

mws_drive *mws_drive_create(mws_conn *mc)
{
    conn_rec *c = mc->b->c;
    mws_drive *dv = apr_pcalloc(c->pool, sizeof(*dv));
    ws_parser_config pcfg;

    dv->mc = mc;
    dv->c = c;
    dv->h = mc->inst->h;
    dv->code = WS_CLOSE_ABNORMAL;
    dv->reason = "";
    dv->bb_in = apr_brigade_create(c->pool, c->bucket_alloc);
    dv->bb_out = apr_brigade_create(c->pool, c->bucket_alloc);
    memset(&pcfg, 0, sizeof(pcfg));
    pcfg.max_message = (uint64_t)mc->b->limits->max_message;
    pcfg.max_frame = (uint64_t)mc->b->limits->max_frame;
    pcfg.require_mask = 1;
    pcfg.validate_utf8 = 1;
    if (mc->pmd) {
        /* RSV1 marks compressed messages; their limits apply to what they
         * inflate to (the inflater's), while the parser's limits on the
         * wire leave room for deflate's overhead on data that does not
         * compress (5 bytes per stored block, and the flush) */
        pcfg.rsv_allowed = 4;
        if (pcfg.max_message) {
            pcfg.max_message += pcfg.max_message / 64 + 64;
        }
        if (pcfg.max_frame) {
            pcfg.max_frame += pcfg.max_frame / 64 + 64;
        }
        dv->inf = apr_palloc(c->pool, sizeof(*dv->inf));
        ws_inflate_init(dv->inf, &mc->b->pmd_params,
                        (uint64_t)mc->b->limits->max_message,
                        (uint64_t)mc->b->limits->max_frame);
    }
    ws_parser_init(&dv->parser, &pcfg);
    dv->last_read = apr_time_now();
    dv->input_drains = input_drains(c);
    plain_setup(dv);
    ap_log_cerror(APLOG_MARK, APLOG_DEBUG, 0, c, MWS_LOGNO(00089)
                  "ws(%" APR_UINT64_T_FMT "): I/O through %s",
                  (apr_uint64_t)mc->id, dv->path_why);
    mc->b->dv = dv;
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
    if (mc->ops && mc->ops->forget) {
        mc->ops->forget(mc);
    }
    if (mc->b->max_free_lowered) {
        apr_allocator_max_free_set(apr_pool_allocator_get(dv->c->pool),
                                   ap_max_mem_free);
        mc->b->max_free_lowered = 0;
    }
    mws_conn_kill(mc);
    ap_log_cerror(APLOG_MARK, APLOG_TRACE1, 0, dv->c,
                  "ws(%" APR_UINT64_T_FMT "): closed with %d",
                  (apr_uint64_t)mc->id, dv->code);
    mws_closed_by(mc, MWS_BY_ABORT);
    mws_stats_close(mc, dv->code);
    mws_accesslog_write(mc, dv->c, dv->code);
    mws_handler_close(mc, dv->code, dv->reason, dv->reason_len);
    mws_msg_free(dv);
    if (dv->inf) {
        ws_inflate_end(dv->inf);        /* zlib's state, if a message was
                                         * in flight or kept for context */
    }
    ap_set_module_config(dv->c->conn_config, &websocket_module, NULL);
    dv->mc = NULL;
    mws_conn_release(mc);
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
    has_close = mc->b->close_queued && mc->b->out.head;
    pthread_mutex_unlock(&mc->lock);
    if (!has_close || dv->close_written || dv->c->aborted) {
        return;
    }
    memset(&pfd, 0, sizeof(pfd));
    if (ap_get_pollfd_from_conn(dv->c, &pfd, NULL) == APR_SUCCESS
        && pfd.desc_type == APR_POLL_SOCKET) {
        apr_socket_timeout_set(pfd.desc.s, apr_time_from_msec(500));
    }
    dv->plain_wait = apr_time_from_msec(500);
    if (mws_write_queue(dv, 0) == APR_SUCCESS && dv->close_written) {
        mws_drive_close_info(dv, (int)mc->b->close_code, "server shutting down", 20);
    }
}

/* mws_alloc_busy() (mws_write.c) lets a busy connection's allocator keep
 * its buffers; alloc_trim() takes them back after a second of silence. */

/* ---- the driver ------------------------------------------------------- */


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
        mws_msg_free(dv);           /* a buffer kept for the next message */
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

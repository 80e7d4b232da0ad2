/*
 * mws_write.c -- writing a connection's queue through its output filters
 * (so mod_ssl and HTTP/2 see every byte): plain writes that wait for the
 * client as httpd does, and careful ones that never wait (pushes, timers).
 *
 * All bytes go through the connection's filters (c->output_filters), so
 * mod_ssl and mod_http2 see them.
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
apr_time_t mws_write_retry_at(mws_drive *dv)
{
    if (!dv->write_backoff) {
        dv->write_backoff = apr_time_from_msec(2);
    }
    else if (dv->write_backoff < apr_time_from_msec(100)) {
        dv->write_backoff *= 2;
    }
    return dv->now + dv->write_backoff;
}

/* Pass at most room bytes of the frames from keep to the output filters,
 * with a flush.  Returns the filters' status; *wrote_close says whether
 * a close frame went out whole. */
static apr_status_t write_some(mws_drive *dv, mws_out *keep,
                               apr_size_t room, apr_size_t *bytes,
                               int *wrote_close)
{
    mws_out *o;
    size_t n;
    apr_status_t rv;

    /* Transient buckets: the frames stay ours until the flush returns; a
     * filter that keeps data longer sets it aside (a copy). */
    *bytes = 0;
    *wrote_close = 0;
    for (o = keep; o && *bytes < room; o = o->next) {
        n = o->len - o->off;
        if (n > room - *bytes) {
            n = room - *bytes;
        }
        APR_BRIGADE_INSERT_TAIL(dv->bb_out,
            apr_bucket_transient_create((const char *)o->bytes + o->off,
                                        n, dv->c->bucket_alloc));
        *bytes += n;
        o->off += n;
        if (o->off < o->len) {
            break;
        }
        *wrote_close |= o->is_close;
    }
    APR_BRIGADE_INSERT_TAIL(dv->bb_out,
                            apr_bucket_flush_create(dv->c->bucket_alloc));
    rv = ap_pass_brigade(dv->c->output_filters, dv->bb_out);
    apr_brigade_cleanup(dv->bb_out);
    return rv;
}

/* After a write: free what went out whole, count it, note our close. */
static mws_out *written(mws_drive *dv, mws_out *keep, apr_size_t bytes,
                        int wrote_close, apr_status_t rv)
{
    mws_conn *mc = dv->mc;
    mws_out *o;

    while (keep && keep->off == keep->len) {
        o = keep;
        keep = o->next;
        mws_out_free(o);
    }
    mws_queue_written(mc, bytes);
    mws_stats_bytes_out(mc, bytes);
    if (wrote_close && rv == APR_SUCCESS) {
        __atomic_store_n(&mc->close_sent, 1, __ATOMIC_RELEASE);
    }
    if (wrote_close && !dv->close_written) {
        dv->close_written = 1;
        dv->close_deadline = apr_time_now() + mc->limits.close_timeout;
    }
    return keep;
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
apr_status_t mws_write_queue(mws_drive *dv, int careful)
{
    mws_conn *mc = dv->mc;
    mws_out *keep;
    apr_size_t room = (apr_size_t)-1, bytes;
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
    keep = mws_queue_take(mc);
    while (keep && room && rv == APR_SUCCESS) {
        rv = write_some(dv, keep, room, &bytes, &wrote_close);
        charge_write(dv, careful, bytes);
        keep = written(dv, keep, bytes, wrote_close, rv);
        if (keep && careful) {
            /* the credit is spent: did the client read meanwhile? */
            room = careful_room(dv);
        }
    }
    if (keep) {
        if (rv == APR_SUCCESS) {
            mws_queue_unflush(mc, keep);
            dv->write_blocked = 1;
            return APR_EAGAIN;
        }
        mws_out_free_list(keep);            /* the connection is over */
    }
    dv->write_blocked = 0;
    return rv;
}

/*
 * mws_write.c -- writing a connection's queue through its output filters
 * (so mod_ssl and HTTP/2 see every byte) or, on a plain connection, to its
 * socket: plain writes that wait for the client as httpd does, and careful
 * ones that never wait (pushes, timers).
 *
 * Bytes go through the connection's filters (c->output_filters), so
 * mod_ssl and mod_http2 see them; only a connection whose filters are all
 * httpd's core ones is written directly (the plain-socket path).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/uio.h>
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

/*
 * The connection allocator of a parked WebSocket.  Asleep, it should keep
 * nothing (max-free 1, from mws_conn_accept() on).  Busy, that costs: every
 * read maps a fresh 8 KiB bucket buffer (and touches it) and unmaps it again,
 * two of each per message, since the core filter's greedy read takes a
 * second buffer while the first still holds the data.  Writes through the
 * filters cost the same: mod_ssl passes each TLS record to the core output
 * filter ahead of the flush, and the core sets it aside as a heap copy, a
 * block of this allocator (mapped, touched, unmapped at the flush: ~30% of
 * the server's CPU in a broadcast over TLS to 1,000 receivers).  So input,
 * and output through the filters, let it keep two such buffers, and a
 * second of silence gives them back (mws_pass.c, alloc_trim).
 */
#define MWS_BUSY_MAX_FREE (16 * 1024)

/* Input arrived for a parked connection (its owner calls this), or a write
 * goes through its filters. */
void mws_alloc_busy(mws_drive *dv)
{
    /* the plain-socket path reads into the thread's buffer and writes from
     * the queue's own memory, not through buffers of this allocator */
    if (dv->mc && dv->mc->b->max_free_lowered && !dv->alloc_busy
        && !dv->plain_in) {
        apr_allocator_max_free_set(apr_pool_allocator_get(dv->c->pool),
                                   MWS_BUSY_MAX_FREE);
        dv->alloc_busy = 1;
    }
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
    if (dv->plain_fd < 0) {
        /* through the filters for good (not the plain path's first
         * write): keep the set-aside copies' blocks for a while */
        mws_alloc_busy(dv);
        dv->last_filter_write = dv->now;
    }
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

/* ---- the plain-socket path (mws_pass.c decides it: plain_setup) ------- */

static APR_OPTIONAL_FN_TYPE(ap_logio_add_bytes_out) *logio_out;

#define MWS_IOV_MAX 64

/* Wait until the socket takes more, at most Timeout (as the core output
 * filter waits on a blocking write). */
static apr_status_t plain_wait_writable(mws_drive *dv)
{
    struct pollfd pfd;
    apr_interval_time_t t = dv->plain_wait ? dv->plain_wait
                                           : dv->c->base_server->timeout;
    int ms = t > 0 ? (int)apr_time_as_msec(t) : 60000, rc;

    pfd.fd = dv->plain_fd;
    pfd.events = POLLOUT;
    pfd.revents = 0;
    do {
        rc = poll(&pfd, 1, ms);
    } while (rc < 0 && errno == EINTR);
    return rc > 0 ? APR_SUCCESS : (rc == 0 ? APR_TIMEUP
                                           : APR_FROM_OS_ERROR(errno));
}

/* The next at most room bytes of keep as an iovec; returns its length. */
static int plain_gather(mws_out *keep, apr_size_t room, struct iovec *iov,
                        int *n)
{
    mws_out *o;
    apr_size_t want = 0, len;

    *n = 0;
    for (o = keep; o && *n < MWS_IOV_MAX && want < room; o = o->next) {
        len = o->len - o->off;
        if (!len) {
            continue;
        }
        if (len > room - want) {
            len = room - want;
        }
        iov[*n].iov_base = (void *)(o->bytes + o->off);
        iov[*n].iov_len = len;
        ++*n;
        want += len;
    }
    return *n;
}

/* w bytes of keep went out: move the offsets; a close that went whole. */
static int plain_advance(mws_out *keep, size_t w)
{
    mws_out *o;
    size_t len;
    int wrote_close = 0;

    for (o = keep; o && w; o = o->next) {
        len = o->len - o->off;
        if (w >= len) {
            o->off = o->len;
            w -= len;
            wrote_close |= o->is_close;
        }
        else {
            o->off += w;
            w = 0;
        }
    }
    return wrote_close;
}

/* Write at most room bytes of keep to the socket itself, with sendmsg()
 * (many frames in one system call), counting them for mod_logio.  Not
 * careful: wait for the client as the core filter would (Timeout).
 * Careful: stop where the socket would block. */
static apr_status_t plain_write(mws_drive *dv, mws_out *keep,
                                apr_size_t room, int careful,
                                apr_size_t *bytes, int *wrote_close)
{
    struct iovec iov[MWS_IOV_MAX];
    struct msghdr mh;
    apr_status_t rv;
    ssize_t w;
    int n;

    *bytes = 0;
    *wrote_close = 0;
    while (*bytes < room && plain_gather(keep, room - *bytes, iov, &n)) {
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        w = sendmsg(dv->plain_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                dv->c->aborted = 1;
                return APR_FROM_OS_ERROR(errno);
            }
            if (careful) {
                dv->write_credit = 0;
                return APR_SUCCESS;     /* the rest stays queued */
            }
            if ((rv = plain_wait_writable(dv)) != APR_SUCCESS) {
                dv->c->aborted = 1;
                return rv;
            }
            continue;
        }
        if (logio_out) {
            logio_out(dv->c, (apr_off_t)w);
        }
        *bytes += (apr_size_t)w;
        *wrote_close |= plain_advance(keep, (size_t)w);
    }
    return APR_SUCCESS;
}

/* From now on the plain-socket path writes itself (mod_logio counted by
 * hand). */
static void plain_out_begin(mws_drive *dv)
{
    if (!logio_out) {
        logio_out = APR_RETRIEVE_OPTIONAL_FN(ap_logio_add_bytes_out);
    }
    dv->plain_out = 1;
}

/* A write by the path the connection is on.  On the plain-socket path,
 * the first write goes to the socket itself when the core output filter
 * holds nothing, else through the filters with a flush, which empties
 * it. */
static apr_status_t write_by_path(mws_drive *dv, mws_out *keep,
                                  apr_size_t room, int careful,
                                  apr_size_t *bytes, int *wrote_close)
{
    apr_status_t rv;

    if (!dv->plain_out && dv->plain_fd >= 0
        && !dv->c->data_in_output_filters) {
        /* the core output filter holds nothing (it says so after every
         * call): nothing can come out of order */
        plain_out_begin(dv);
    }
    if (dv->plain_out) {
        return plain_write(dv, keep, room, careful, bytes, wrote_close);
    }
    rv = write_some(dv, keep, room, bytes, wrote_close);
    if (rv == APR_SUCCESS && dv->plain_fd >= 0) {
        plain_out_begin(dv);
    }
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
        __atomic_store_n(&mc->b->close_sent, 1, __ATOMIC_RELEASE);
    }
    if (wrote_close && !dv->close_written) {
        dv->close_written = 1;
        dv->close_deadline = apr_time_now() + mc->b->limits->close_timeout;
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
    if (!__atomic_load_n(&mc->b->out.head, __ATOMIC_ACQUIRE)) {
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
        rv = write_by_path(dv, keep, room, careful, &bytes, &wrote_close);
        charge_write(dv, careful, bytes);
        keep = written(dv, keep, bytes, wrote_close, rv);
        if (keep && careful) {
            /* the credit is spent: did the client read meanwhile?  (A
             * careful write that moved nothing: the socket is full.) */
            room = bytes ? careful_room(dv) : 0;
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

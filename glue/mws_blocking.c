/*
 * mws_blocking.c -- the blocking driver: prefork, worker and HTTP/2 streams run
 * a WebSocket on the request's thread, which waits in poll() between passes
 * and is woken by other threads through the pollset.
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

static int mws_single_threaded; /* prefork: one connection per process */
/* prefork: the connection whose thread waits in poll() right now */
static mws_drive *volatile mws_polling_drive;

void mws_blocking_child_init(void)
{
    int threaded = 0;

    if (ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded) == APR_SUCCESS) {
        mws_single_threaded = (threaded == AP_MPMQ_NOT_SUPPORTED);
    }
}

/* A pollset on the connection's descriptor (ap_get_pollfd_from_conn, so
 * that HTTP/2 streams work too), woken by other threads; NULL and the
 * connection failing with 1011 if there is none. */
static apr_pollset_t *poll_create(mws_drive *dv, apr_pool_t *p)
{
    apr_pollset_t *ps = NULL;
    apr_pollfd_t pfd;
    apr_status_t rv;

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
                      "connection", (apr_uint64_t)dv->mc->id);
        mws_drive_fail(dv, WS_CLOSE_INTERNAL_ERROR, "cannot poll connection");
        return NULL;
    }
    return ps;
}

/* Wait in poll() until input, a wake-up or dv->next_wake.  The stop
 * signals (masked during passes) are let in while we wait.  0: go on. */
static int poll_wait(mws_drive *dv, apr_pollset_t *ps, int masked,
                     const sigset_t *old_sigs, const sigset_t *stop_sigs)
{
    apr_interval_time_t wait = -1;
    const apr_pollfd_t *fired;
    apr_int32_t nfired;
    apr_status_t rv;

    if (dv->read_more) {
        wait = 0;           /* input may wait in a filter (TLS) */
    }
    else if (dv->next_wake) {
        apr_time_t now = apr_time_now();
        wait = dv->next_wake > now ? dv->next_wake - now : 0;
    }
    mws_polling_drive = dv;
    if (masked) {
        pthread_sigmask(SIG_SETMASK, old_sigs, NULL);
    }
    rv = apr_pollset_poll(ps, wait, &nfired, &fired);
    if (masked) {
        pthread_sigmask(SIG_BLOCK, stop_sigs, NULL);
    }
    mws_polling_drive = NULL;
    ap_log_cerror(APLOG_MARK, APLOG_TRACE6, rv, dv->c,
                  "ws(%" APR_UINT64_T_FMT "): poll(%" APR_TIME_T_FMT
                  ") -> %d", (apr_uint64_t)dv->mc->id, wait, (int)nfired);
    if (rv != APR_SUCCESS && !APR_STATUS_IS_EINTR(rv)
        && !APR_STATUS_IS_TIMEUP(rv)) {
        ap_log_cerror(APLOG_MARK, APLOG_ERR, rv, dv->c, MWS_LOGNO(00010)
                      "ws(%" APR_UINT64_T_FMT "): poll failed",
                      (apr_uint64_t)dv->mc->id);
        return -1;
    }
    return 0;
}

/* Run the connection on this thread until it is over. */
void mws_blocking_run(mws_drive *dv)
{
    mws_conn *mc = dv->mc;
    apr_pool_t *p;
    apr_pollset_t *ps;
    sigset_t stop_sigs, old_sigs;
    int masked = 0;

    apr_pool_create(&p, dv->c->pool);
    apr_pool_tag(p, "mws_poll");
    ps = poll_create(dv, p);
    pthread_mutex_lock(&mc->lock);
    mc->b->driver_thread = pthread_self();
    mc->b->pollset = ps;
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
        if (mws_single_threaded && !mc->b->close_queued
            && mws_server_stopping()) {
            /* prefork's graceful stop is a signal that may come while we
             * are not in poll(): look on every round */
            mws_conn_going_away(mc);
            continue;
        }
        if (poll_wait(dv, ps, masked, &old_sigs, &stop_sigs) != 0) {
            break;
        }
    }
    pthread_mutex_lock(&mc->lock);
    mc->b->pollset = NULL;
    pthread_mutex_unlock(&mc->lock);
    mws_drive_finish(dv);
    apr_pool_destroy(p);
    if (masked) {
        pthread_sigmask(SIG_SETMASK, &old_sigs, NULL);
    }
}

/* Another thread queued something: wake our poll() (not our own). */
static void blocking_wake_locked(mws_conn *mc, int *claim)
{
    if (mc->b->pollset
        && !pthread_equal(pthread_self(), mc->b->driver_thread)) {
        apr_pollset_wakeup(mc->b->pollset);
    }
}

/* A hard stop (prefork: the signal handler runs on the connection's own
 * thread and the child exits from it): write the queued close only if
 * that thread waits in poll(), not inside a filter. */
static void blocking_last_words(mws_conn *mc)
{
    mws_drive *dv = mws_polling_drive;

    if (mws_single_threaded && dv && dv->mc == mc) {
        mws_drive_last_words(dv);
    }
}

const mws_driver_ops mws_blocking_ops = {
    blocking_wake_locked,
    NULL,
    blocking_last_words
};

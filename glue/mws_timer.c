/*
 * mws_timer.c -- the timers handlers add to a connection (host->timer_add):
 * a list sorted by due time under the connection's lock, run by whichever
 * driver owns the connection.
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


/* ---- timers ----------------------------------------------------------- */

static void timer_insert_locked(mws_conn *mc, struct mws_timer *t)
{
    struct mws_timer **pp = &mc->b->timers;

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
    t->id = ++mc->b->timer_seq;
    timer_insert_locked(mc, t);
    mws_wake_locked(mc, NULL);
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
    if (mc->state == MWS_ST_DEAD) {
        ;                       /* its timers went with it */
    }
    else if (mc->b->running && mc->b->running->id == id
             && !mc->b->running_cancelled) {
        mc->b->running_cancelled = 1;
        rv = MWS_OK;
    }
    else {
        for (pp = &mc->b->timers; *pp; pp = &(*pp)->next) {
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
apr_time_t mws_timer_run(mws_conn *mc, apr_time_t now)
{
    apr_time_t next;
    struct mws_timer *t;

    if (!__atomic_load_n(&mc->b->timers, __ATOMIC_RELAXED)) {
        return 0;       /* none (one added meanwhile wakes the driver) */
    }
    pthread_mutex_lock(&mc->lock);
    while ((t = mc->b->timers) != NULL && t->due <= now
           && mc->state == MWS_ST_OPEN) {
        mc->b->timers = t->next;
        mc->b->running = t;
        mc->b->running_cancelled = 0;
        pthread_mutex_unlock(&mc->lock);

        ap_log_cerror(APLOG_MARK, APLOG_TRACE5, 0, mc->b->c,
                      "ws(%" APR_UINT64_T_FMT "): timer due %" APR_TIME_T_FMT
                      " us ago", (apr_uint64_t)mc->id, now - t->due);
        mws_handler_timer(mc, t->fn, t->arg);

        pthread_mutex_lock(&mc->lock);
        mc->b->running = NULL;
        if (t->period && !mc->b->running_cancelled
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
    next = mc->b->timers ? mc->b->timers->due : 0;
    pthread_mutex_unlock(&mc->lock);
    return next;
}

/* The connection is gone: its timers go (lock held). */
void mws_timer_free_all(mws_conn *mc)
{
    struct mws_timer *t, *next;

    for (t = mc->b->timers; t; t = next) {
        next = t->next;
        free(t);
    }
    mc->b->timers = NULL;
}

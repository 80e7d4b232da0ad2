/*
 * mws_wakeq.c -- wake-ups of parked connections at a later time, kept by a
 * thread of ours (the event MPM's own timers fire late, see below).
 */
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>

#include "apr_thread_proc.h"
#include "httpd.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "apr_strings.h"
#include "util_filter.h"

#include "mws_private.h"


/*
 * Wake-ups at a later time.  httpd 2.4's event MPM computes its poll
 * timeout from the timer list only after a timer expired (event.c, the
 * listener: "if (expiry && expiry < now)"), so a callback registered for
 * later can fire seconds late.  Callbacks with delay 0 are prompt, so a
 * thread of ours keeps the later wake-ups and registers each one with
 * delay 0 when it is due.
 */
static pthread_mutex_t wq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wq_cond = PTHREAD_COND_INITIALIZER;
static apr_uint64_t wq_seq;
static apr_thread_t *wq_thread;
static int wq_stop;
static ap_mpm_callback_fn_t *wq_fire;  /* the parked driver's callback */

/* The pending wake-ups: a binary heap of connections, earliest first (ties
 * in the order they were scheduled), under wq_lock.  Each connection is in
 * it at most once and knows its place (mc->b->wake_idx), so that moving or
 * dropping its wake-up costs O(log n) and no allocation; one pointer per
 * waiting connection is all the memory it takes.  A connection in the heap
 * holds a reference. */
static mws_conn **wq_heap;
static size_t wq_n, wq_cap;

static int wq_before(const mws_conn *a, const mws_conn *b)
{
    const struct mws_conn_body *x = a->b, *y = b->b;

    return x->wake_when < y->wake_when
           || (x->wake_when == y->wake_when && x->wake_seq < y->wake_seq);
}

static void wq_place(size_t i, mws_conn *mc)
{
    wq_heap[i] = mc;
    mc->b->wake_idx = i + 1;
}

static void wq_up(size_t i)
{
    mws_conn *mc = wq_heap[i];
    size_t parent;

    while (i > 0 && wq_before(mc, wq_heap[parent = (i - 1) / 2])) {
        wq_place(i, wq_heap[parent]);
        i = parent;
    }
    wq_place(i, mc);
}

static void wq_down(size_t i)
{
    mws_conn *mc = wq_heap[i];
    size_t child;

    while ((child = 2 * i + 1) < wq_n) {
        if (child + 1 < wq_n && wq_before(wq_heap[child + 1], wq_heap[child])) {
            ++child;
        }
        if (!wq_before(wq_heap[child], mc)) {
            break;
        }
        wq_place(i, wq_heap[child]);
        i = child;
    }
    wq_place(i, mc);
}

/* Add mc, whose wake_when and wake_seq are set.  -1: out of memory. */
static int wq_add(mws_conn *mc)
{
    if (wq_n == wq_cap) {
        size_t cap = wq_cap ? wq_cap * 2 : 256;
        mws_conn **heap = realloc(wq_heap, cap * sizeof(*heap));

        if (!heap) {
            return -1;
        }
        wq_heap = heap;
        wq_cap = cap;
    }
    wq_place(wq_n, mc);
    wq_up(wq_n++);
    return 0;
}

/* Take mc, which is in the heap, out of it. */
static void wq_remove(mws_conn *mc)
{
    size_t i = mc->b->wake_idx - 1;
    mws_conn *last = wq_heap[--wq_n];

    mc->b->wake_idx = 0;
    __atomic_store_n(&mc->b->wake_when, 0, __ATOMIC_RELEASE);
    if (last != mc) {
        wq_place(i, last);
        wq_up(i);
        wq_down(last->b->wake_idx - 1);
    }
}

static void *APR_THREAD_FUNC wq_main(apr_thread_t *thd, void *data)
{
    mws_conn *mc;
    apr_time_t now;
    struct timespec ts;

    pthread_mutex_lock(&wq_lock);
    while (!wq_stop) {
        mc = wq_n ? wq_heap[0] : NULL;
        now = apr_time_now();
        if (!mc) {
            pthread_cond_wait(&wq_cond, &wq_lock);
        }
        else if (mc->b->wake_when > now) {
            ts.tv_sec = (time_t)apr_time_sec(mc->b->wake_when);
            ts.tv_nsec = (long)apr_time_usec(mc->b->wake_when) * 1000;
            pthread_cond_timedwait(&wq_cond, &wq_lock, &ts);
        }
        else {
            wq_remove(mc);      /* its reference goes to the callback */
            pthread_mutex_unlock(&wq_lock);
            if (ap_mpm_register_timed_callback(0, wq_fire, mc)
                != APR_SUCCESS) {
                mws_conn_release(mc);
            }
            pthread_mutex_lock(&wq_lock);
        }
    }
    pthread_mutex_unlock(&wq_lock);
    return NULL;
}

/* Give back the references that wake-ups still hold (child exit). */
static void wq_drain(void)
{
    mws_conn *mc;

    for (;;) {
        pthread_mutex_lock(&wq_lock);
        mc = wq_n ? wq_heap[0] : NULL;
        if (mc) {
            wq_remove(mc);
        }
        pthread_mutex_unlock(&wq_lock);
        if (!mc) {
            return;
        }
        mws_conn_release(mc);
    }
}

/* The connection ends: its wake-up, if one is pending, goes now rather
 * than keeping the connection's memory until it is due. */
void mws_wakeq_forget(mws_conn *mc)
{
    int had;

    pthread_mutex_lock(&wq_lock);
    had = mc->b->wake_idx != 0;
    if (had) {
        wq_remove(mc);
    }
    pthread_mutex_unlock(&wq_lock);
    if (had) {
        mws_conn_release(mc);
    }
}

static apr_status_t wq_child_exit(void *unused)
{
    apr_status_t trv;

    pthread_mutex_lock(&wq_lock);
    wq_stop = 1;
    pthread_cond_signal(&wq_cond);
    pthread_mutex_unlock(&wq_lock);
    if (wq_thread) {
        apr_thread_join(&trv, wq_thread);
        wq_thread = NULL;
    }
    wq_drain();
    pthread_mutex_lock(&wq_lock);
    free(wq_heap);
    wq_heap = NULL;
    wq_n = wq_cap = 0;
    pthread_mutex_unlock(&wq_lock);
    return APR_SUCCESS;
}

apr_status_t mws_wakeq_start(apr_pool_t *pchild, ap_mpm_callback_fn_t *fire)
{
    apr_status_t rv;

    wq_fire = fire;
    wq_stop = 0;
    rv = apr_thread_create(&wq_thread, NULL, wq_main, NULL, pchild);
    if (rv == APR_SUCCESS) {
        apr_pool_cleanup_register(pchild, NULL, wq_child_exit,
                                  apr_pool_cleanup_null);
    }
    return rv;
}

/* The callback now (lock held): it takes a reference. */
void mws_wakeq_fire_now_locked(mws_conn *mc)
{
    ++mc->refs;
    if (ap_mpm_register_timed_callback(0, wq_fire, mc) != APR_SUCCESS) {
        --mc->refs;
    }
}

/* Make sure a callback comes at `when` (mc->lock held).  A connection
 * has at most one wake-up waiting: an earlier one moves it. */
void mws_wakeq_schedule_locked(mws_conn *mc, apr_time_t when)
{
    apr_time_t now, at;
    int fresh;

    if (!when) {
        return;
    }
    /* The common case without wq_lock: a wake-up at that time or earlier
     * waits already (or is being fired, and its callback looks again). */
    at = __atomic_load_n(&mc->b->wake_when, __ATOMIC_ACQUIRE);
    if (at && at <= when) {
        return;
    }
    now = apr_time_now();
    if (when <= now) {
        mws_wakeq_fire_now_locked(mc);
        return;
    }
    pthread_mutex_lock(&wq_lock);
    if (wq_stop || (mc->b->wake_idx && mc->b->wake_when <= when)) {
        /* one at that time or earlier is coming, or the child exits */
        pthread_mutex_unlock(&wq_lock);
        return;
    }
    fresh = !mc->b->wake_idx;
    if (fresh) {
        ++mc->refs;             /* the heap's */
    }
    else {
        wq_remove(mc);          /* to move it earlier; keeps its reference */
    }
    __atomic_store_n(&mc->b->wake_when, when, __ATOMIC_RELEASE);
    mc->b->wake_seq = ++wq_seq;
    if (wq_add(mc) != 0) {
        /* no memory for the heap: look now instead of later */
        __atomic_store_n(&mc->b->wake_when, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&wq_lock);
        --mc->refs;             /* the caller holds one too: never the last */
        mws_wakeq_fire_now_locked(mc);
        return;
    }
    if (wq_heap[0] == mc) {
        pthread_cond_signal(&wq_cond);  /* it is the first now */
    }
    pthread_mutex_unlock(&wq_lock);
}

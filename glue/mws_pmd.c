/*
 * mws_pmd.c -- permessage-deflate (RFC 7692) for the layers above: frames
 * compressed where they are queued (so that the queue holds, and its cap
 * counts, compressed bytes), the deflater each thread keeps for messages
 * without context takeover, and the buffer inflated data goes through.
 *
 * Memory: without context takeover a connection holds no zlib state at
 * all.  Whole messages are compressed with the sending thread's deflater
 * (one per thread that sends, reset after each message, ~(2^(w+2) +
 * 2^(m+9)) bytes: 256 KiB at window 15 and memLevel 8); the inflater's
 * state lives from the first frame of a compressed message to its last.
 * With context takeover each connection keeps its own deflater and
 * inflater between messages.
 */
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "httpd.h"
#include "http_log.h"

#include "mws_private.h"

static pthread_key_t thread_def_key;
static pthread_once_t thread_def_once = PTHREAD_ONCE_INIT;
static int thread_def_ok;

static void thread_def_free(void *p)
{
    ws_deflater *d = p;

    if (d) {
        ws_deflate_end(d);
        free(d);
    }
}

static void thread_def_setup(void)
{
    thread_def_ok = pthread_key_create(&thread_def_key, thread_def_free)
                    == 0;
}

void mws_pmd_child_init(apr_pool_t *pchild)
{
    (void)pchild;
    pthread_once(&thread_def_once, thread_def_setup);
}

ws_deflater *mws_pmd_thread_deflater(unsigned window_bits,
                                     unsigned mem_level)
{
    ws_deflater *d;

    pthread_once(&thread_def_once, thread_def_setup);
    if (!thread_def_ok) {
        return NULL;
    }
    d = pthread_getspecific(thread_def_key);
    if (d && (d->window_bits != window_bits || d->mem_level != mem_level)) {
        ws_deflate_end(d);      /* other parameters: a new zlib state */
        ws_deflate_init(d, window_bits, mem_level, -1, 1);
    }
    if (!d) {
        if (!(d = malloc(sizeof(*d)))) {
            return NULL;
        }
        ws_deflate_init(d, window_bits, mem_level, -1, 1);
        if (pthread_setspecific(thread_def_key, d) != 0) {
            free(d);
            return NULL;
        }
    }
    return d;
}

/* Memory pressure: context takeover costs zlib state per connection for
 * its whole life (~30 KiB at the defaults, ~110 KiB at window 15 and
 * memLevel 8).  Past WebSocketCompressionMaxContexts such connections in
 * this child, newcomers are answered without context takeover: still
 * compressed, with no zlib state while idle. */
int mws_pmd_max_contexts;
static int contexts;            /* atomic */

int mws_pmd_context_take(void)
{
    int n = __atomic_add_fetch(&contexts, 1, __ATOMIC_RELAXED);

    if (mws_pmd_max_contexts > 0 && n > mws_pmd_max_contexts) {
        __atomic_sub_fetch(&contexts, 1, __ATOMIC_RELAXED);
        return 0;
    }
    return 1;
}

void mws_pmd_context_give(void)
{
    __atomic_sub_fetch(&contexts, 1, __ATOMIC_RELAXED);
}

static __thread uint8_t inflate_buf[MWS_INFLATE_CHUNK];

uint8_t *mws_pmd_inflate_buf(void)
{
    return inflate_buf;
}

void *mws_pmd_frame(ws_deflater *d, size_t head, int fin, int rsv1,
                    ws_opcode op, const void *data, size_t len, int last,
                    size_t *flen)
{
    size_t cap = ws_deflate_bound(d, len), clen = 0, olen, hlen;
    uint8_t hdr[WS_MAX_FRAME_HEADER], *p, *q;
    const uint8_t *in = data;
    size_t n = len;
    ws_status st;

    p = malloc(head + WS_MAX_FRAME_HEADER + cap);
    if (!p) {
        return NULL;
    }
    /* compress behind room for the largest header, then move the frame
     * down behind head once its header is known */
    do {
        st = ws_deflate_feed(d, &in, &n, last,
                             p + head + WS_MAX_FRAME_HEADER + clen,
                             cap - clen, &olen);
        clen += olen;
        if (st == WS_OK && cap - clen < 16) {
            st = WS_ERR_STATE;  /* cannot happen: the bound is generous */
        }
    } while (st == WS_OK);
    if (st != WS_NEED_MORE) {
        ws_deflate_end(d);
        free(p);
        return NULL;
    }
    hlen = ws_frame_header(hdr, fin, rsv1 ? 4u : 0u, op, clen, NULL);
    memcpy(p + head, hdr, hlen);
    memmove(p + head + hlen, p + head + WS_MAX_FRAME_HEADER, clen);
    *flen = hlen + clen;
    if (cap > 4096 && (q = realloc(p, head + *flen)) != NULL) {
        p = q;                  /* give back what compression saved */
    }
    return p;
}

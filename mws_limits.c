/*
 * mws_limits.c -- connection caps that hold across all child processes:
 * WebSocketMaxConnections (per configuration section that sets it) and
 * WebSocketMaxConnectionsPerAddress (per client address, server-wide).
 *
 * The counters live in one anonymous shared memory segment made by the
 * parent in post_config, so every child of a generation sees the same
 * numbers.  A graceful restart makes a new segment: the new generation
 * counts from zero while the old one drains (documented).  Client addresses
 * are hashed into a fixed table; two addresses in one slot share a count,
 * which can only refuse early, never admit more than the cap.
 */
#include <arpa/inet.h>

#include "apr_shm.h"
#include "apr_atomic.h"
#include "apr_strings.h"

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"

#include "mws_private.h"

#define MWS_ADDR_SLOTS 8192

typedef struct {
    apr_uint32_t addr[MWS_ADDR_SLOTS];
    apr_uint32_t section[1];     /* nsections of them */
} mws_counts;

static int nsections;            /* sections with a cap, this generation */
static mws_counts *counts;       /* NULL: no shared memory, no caps      */

int mws_limits_section_index(void)
{
    return nsections++;
}

void mws_limits_pre_config(void)
{
    nsections = 0;
    counts = NULL;
}

int mws_limits_post_config(apr_pool_t *pconf, server_rec *s)
{
    apr_shm_t *shm;
    apr_size_t size = sizeof(mws_counts)
                      + sizeof(apr_uint32_t) * (apr_size_t)nsections;
    apr_status_t rv;

    rv = apr_shm_create(&shm, size, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_EMERG, rv, s, MWS_LOGNO(00023)
                     "cannot create shared memory for the WebSocket "
                     "connection counts");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    counts = apr_shm_baseaddr_get(shm);
    memset(counts, 0, size);
    return OK;
}

static apr_uint32_t addr_slot(const char *ip)
{
    apr_uint32_t h = 2166136261u;          /* FNV-1a */

    for (; *ip; ++ip) {
        h = (h ^ (unsigned char)*ip) * 16777619u;
    }
    return h % MWS_ADDR_SLOTS;
}

/* Take one unit of counter c unless it is at cap; 1 if taken. */
static int take(apr_uint32_t *c, apr_uint32_t cap)
{
    apr_uint32_t v;

    for (;;) {
        v = apr_atomic_read32(c);
        if (v >= cap) {
            return 0;
        }
        if (apr_atomic_cas32(c, v + 1, v) == v) {
            return 1;
        }
    }
}

/*
 * Admit a new WebSocket of request r under the caps of d.  Returns OK and
 * fills held (to give back with mws_limits_release), or HTTP 503.
 */
int mws_limits_admit(request_rec *r, const mws_dir_conf *d,
                     mws_limit_hold *held)
{
    held->section = -1;
    held->addr = -1;
    if (!counts) {
        return OK;
    }
    if (d->max_conns > 0 && d->max_conns_index >= 0
        && d->max_conns_index < nsections) {
        if (!take(&counts->section[d->max_conns_index],
                  (apr_uint32_t)d->max_conns)) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, MWS_LOGNO(00024)
                          "WebSocketMaxConnections %d reached for %s: "
                          "refusing with 503", d->max_conns, r->uri);
            return HTTP_SERVICE_UNAVAILABLE;
        }
        held->section = d->max_conns_index;
    }
    if (d->max_conns_addr > 0) {
        apr_uint32_t slot = addr_slot(r->useragent_ip);
        if (!take(&counts->addr[slot], (apr_uint32_t)d->max_conns_addr)) {
            mws_limits_release(held);
            ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, MWS_LOGNO(00025)
                          "WebSocketMaxConnectionsPerAddress %d reached for "
                          "%s: refusing with 503", d->max_conns_addr,
                          r->useragent_ip);
            return HTTP_SERVICE_UNAVAILABLE;
        }
        held->addr = (int)slot;
    }
    return OK;
}

void mws_limits_release(mws_limit_hold *held)
{
    if (!counts) {
        return;
    }
    if (held->section >= 0) {
        apr_atomic_dec32(&counts->section[held->section]);
        held->section = -1;
    }
    if (held->addr >= 0) {
        apr_atomic_dec32(&counts->addr[held->addr]);
        held->addr = -1;
    }
}

/* ---- addresses ----------------------------------------------------------- */

static const unsigned char v4mapped[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

int mws_addr16_parse(const char *text, unsigned char out[16])
{
    char buf[64];
    const char *zone;
    apr_size_t n;

    if (!text) {
        return 0;
    }
    zone = ap_strchr_c(text, '%');
    n = zone ? (apr_size_t)(zone - text) : strlen(text);
    if (n == 0 || n >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, text, n);
    buf[n] = '\0';
    if (ap_strchr_c(buf, ':')) {
        if (inet_pton(AF_INET6, buf, out) != 1) {
            return 0;
        }
        return memcmp(out, v4mapped, 12) ? 6 : 4;
    }
    if (inet_pton(AF_INET, buf, out + 12) != 1) {
        return 0;
    }
    memcpy(out, v4mapped, 12);
    return 4;
}

int mws_addr16_sockaddr(const apr_sockaddr_t *sa, unsigned char out[16])
{
    if (sa->family == AF_INET) {
        memcpy(out, v4mapped, 12);
        memcpy(out + 12, &sa->sa.sin.sin_addr, 4);
        return 4;
    }
#if APR_HAVE_IPV6
    if (sa->family == AF_INET6) {
        memcpy(out, &sa->sa.sin6.sin6_addr, 16);
        return memcmp(out, v4mapped, 12) ? 6 : 4;
    }
#endif
    return 0;
}

int mws_addr16_loopback(const unsigned char a[16])
{
    static const unsigned char one[16] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
    };

    return !memcmp(a, one, 16) || (!memcmp(a, v4mapped, 12) && a[12] == 127);
}

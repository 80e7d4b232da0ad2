/*
 * ws_deflate.c -- permessage-deflate (RFC 7692): negotiation, and the
 * per-message inflater and deflater over zlib.
 *
 * Choices where RFC 7692 leaves room:
 *  - A malformed offer (a syntax error in it, an unknown or repeated
 *    parameter, a bad value) is declined and the next offer tried
 *    (section 5 says "decline"; nothing in it calls for failing the
 *    handshake).  An unterminated quoted string ends the parsing: what
 *    follows cannot be split into offers reliably.
 *  - Parameter names and the extension name are compared without case.
 *  - server_max_window_bits=8 is declined: zlib's raw deflate has no
 *    256-byte window (deflateInit2 refuses -8).  A client window of 8 is
 *    inflated with a window of 9, which reads any stream a window of 8
 *    makes.
 *  - Corrupt compressed data closes with 1007 (as Node's ws does): the
 *    payload is not what the message claims to be.
 *  - A sender that ends its deflate stream (BFINAL) inside a message: the
 *    inflater is reset for the next message; bytes after the end of the
 *    stream (other than the tail we add) are an error (1007).
 */
#include <string.h>

#include "ws_deflate.h"

/* ---- negotiation -------------------------------------------------------- */

static int is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9')) {
        return 1;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static const char *skip_ows(const char *p)
{
    while (is_ows(*p)) {
        p++;
    }
    return p;
}

static int name_is(const char *s, size_t len, const char *name)
{
    size_t i;

    if (strlen(name) != len) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        char a = s[i], b = name[i];

        if (a >= 'A' && a <= 'Z') {
            a = (char)(a - 'A' + 'a');
        }
        if (a != b) {
            return 0;
        }
    }
    return 1;
}

/* A window size value: "8".."15", no leading zero.  0 if not. */
static unsigned window_value(const char *v, size_t len)
{
    unsigned n;

    if (len == 1 && v[0] >= '8' && v[0] <= '9') {
        return (unsigned)(v[0] - '0');
    }
    if (len == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
        n = 10u + (unsigned)(v[1] - '0');
        return n;
    }
    return 0;
}

/* One offer's parameters as far as they are understood. */
typedef struct {
    int ok;                      /* no reason to decline (yet)              */
    int snct, cnct;              /* *_no_context_takeover seen              */
    unsigned smwb;               /* server_max_window_bits value, 0: none   */
    int cmwb_seen;
    unsigned cmwb;               /* client_max_window_bits value, 0: none   */
} offer;

#define VALUE_MAX 32

static void offer_param(offer *o, const char *name, size_t nlen,
                        int has_value, const char *v, size_t vlen)
{
    if (name_is(name, nlen, "server_no_context_takeover")) {
        if (o->snct || has_value) {
            o->ok = 0;
        }
        o->snct = 1;
    }
    else if (name_is(name, nlen, "client_no_context_takeover")) {
        if (o->cnct || has_value) {
            o->ok = 0;
        }
        o->cnct = 1;
    }
    else if (name_is(name, nlen, "server_max_window_bits")) {
        if (o->smwb || !has_value || !(o->smwb = window_value(v, vlen))) {
            o->ok = 0;
        }
        if (!o->smwb) {
            o->smwb = 1;         /* seen, so a second one is a duplicate */
        }
    }
    else if (name_is(name, nlen, "client_max_window_bits")) {
        if (o->cmwb_seen
            || (has_value && !(o->cmwb = window_value(v, vlen)))) {
            o->ok = 0;
        }
        o->cmwb_seen = 1;
    }
    else {
        o->ok = 0;               /* not defined for an offer */
    }
}

/*
 * Parse one element of the list at *pp: the extension name (*name,
 * *nlen) and, for permessage-deflate, its parameters into *o.  Returns 1
 * with *pp after the element, 0 at the end of the list, -1 when the rest
 * cannot be parsed (an unterminated quoted string).  A syntax error makes
 * o->ok 0 and skips to the next comma.
 */
static int next_offer(const char **pp, const char **name, size_t *nlen,
                      offer *o)
{
    const char *p = *pp, *pn, *v;
    size_t pnlen, vlen;
    char buf[VALUE_MAX];
    int has_value;

    memset(o, 0, sizeof(*o));
    o->ok = 1;
    while (*p == ',' || is_ows(*p)) {
        p++;
    }
    if (!*p) {
        *pp = p;
        return 0;
    }
    *name = p;
    while (is_tchar(*p)) {
        p++;
    }
    *nlen = (size_t)(p - *name);
    if (*nlen == 0) {
        goto syntax;
    }
    for (;;) {
        p = skip_ows(p);
        if (*p == ',' || !*p) {
            *pp = *p ? p + 1 : p;
            return 1;
        }
        if (*p != ';') {
            goto syntax;
        }
        p = skip_ows(p + 1);
        pn = p;
        while (is_tchar(*p)) {
            p++;
        }
        pnlen = (size_t)(p - pn);
        if (pnlen == 0) {
            goto syntax;
        }
        p = skip_ows(p);
        has_value = 0;
        v = NULL;
        vlen = 0;
        if (*p == '=') {
            has_value = 1;
            p = skip_ows(p + 1);
            if (*p == '"') {
                /* quoted-string; its content must be a token (RFC 6455
                 * 9.1), kept in buf */
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\') {
                        p++;
                        if (!*p) {
                            break;
                        }
                    }
                    if (vlen < VALUE_MAX && is_tchar(*p)) {
                        buf[vlen++] = *p;
                    }
                    else {
                        o->ok = 0;
                    }
                    p++;
                }
                if (*p != '"') {
                    return -1;
                }
                p++;
                v = buf;
                if (vlen == 0) {
                    o->ok = 0;
                }
            }
            else {
                v = p;
                while (is_tchar(*p)) {
                    p++;
                }
                vlen = (size_t)(p - v);
                if (vlen == 0) {
                    goto syntax;
                }
            }
        }
        offer_param(o, pn, pnlen, has_value, v, vlen);
    }

syntax:
    o->ok = 0;
    while (*p && *p != ',') {
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1]) {
                    p++;
                }
                p++;
            }
            if (!*p) {
                return -1;
            }
        }
        p++;
    }
    *pp = *p ? p + 1 : p;
    if (*nlen == 0) {
        *name = "";
    }
    return 1;
}

static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);

    memcpy(p, s, n);
    return p + n;
}

static char *put_bits(char *p, const char *param, unsigned bits)
{
    p = put_str(p, param);
    if (bits >= 10) {
        *p++ = '1';
        *p++ = (char)('0' + bits - 10);
    }
    else {
        *p++ = (char)('0' + bits);
    }
    return p;
}

int ws_pmd_negotiate(const char *header, const ws_pmd_policy *policy,
                     ws_pmd_params *out, char *response)
{
    const char *p = header, *name = NULL;
    size_t nlen = 0;
    unsigned cap;
    offer o;
    int rc;
    char *r;

    if (header == NULL || policy == NULL || out == NULL || response == NULL) {
        return 0;
    }
    cap = policy->max_window_bits;
    if (cap < 9 || cap > 15) {
        cap = 15;
    }
    while ((rc = next_offer(&p, &name, &nlen, &o)) == 1) {
        if (!o.ok || !name_is(name, nlen, WS_PMD_NAME)) {
            continue;
        }
        if (o.smwb == 8) {
            continue;            /* we cannot deflate with 256 bytes */
        }
        memset(out, 0, sizeof(*out));
        out->server_no_context_takeover = o.snct || !policy->context_takeover;
        out->client_no_context_takeover = o.cnct || !policy->context_takeover;
        out->server_max_window_bits = (o.smwb && o.smwb < cap) ? o.smwb : cap;
        out->client_max_window_bits = 15;
        if (o.cmwb_seen) {
            /* the client lets us cap its window */
            out->client_max_window_bits = (o.cmwb && o.cmwb < cap) ? o.cmwb
                                                                   : cap;
        }
        r = put_str(response, WS_PMD_NAME);
        if (out->server_no_context_takeover) {
            r = put_str(r, "; server_no_context_takeover");
        }
        if (out->client_no_context_takeover) {
            r = put_str(r, "; client_no_context_takeover");
        }
        if (o.smwb || out->server_max_window_bits < 15) {
            r = put_bits(r, "; server_max_window_bits=",
                         out->server_max_window_bits);
        }
        if (o.cmwb_seen && out->client_max_window_bits < 15) {
            r = put_bits(r, "; client_max_window_bits=",
                         out->client_max_window_bits);
        }
        *r = '\0';
        return 1;
    }
    return 0;
}

/* ---- the inflater --------------------------------------------------------- */

static const uint8_t pmd_tail[4] = { 0x00, 0x00, 0xff, 0xff };

void ws_inflate_init(ws_inflater *inf, const ws_pmd_params *params,
                     uint64_t max_message, uint64_t max_frame)
{
    memset(inf, 0, sizeof(*inf));
    inf->no_context = params->client_no_context_takeover;
    inf->window_bits = params->client_max_window_bits < 9
                       ? 9 : params->client_max_window_bits;
    if (inf->window_bits > 15) {
        inf->window_bits = 15;
    }
    inf->max_message = max_message;
    inf->max_frame = max_frame;
}

void ws_inflate_end(ws_inflater *inf)
{
    if (inf->live) {
        inflateEnd(&inf->z);
        inf->live = 0;
    }
    inf->in_message = 0;
}

static ws_status inflate_fail(ws_inflater *inf, unsigned code,
                              const char *what, unsigned *close_code,
                              const char **why)
{
    ws_inflate_end(inf);
    *close_code = code;
    *why = what;
    return WS_ERR_PROTO;
}

/* Output allowed before a limit is passed: the least of what the message
 * and the frame have left; UINT64_MAX when neither has a limit. */
static uint64_t allowance(const ws_inflater *inf)
{
    uint64_t left = UINT64_MAX, f;

    if (inf->max_message) {
        left = inf->msg_out < inf->max_message
               ? inf->max_message - inf->msg_out : 0;
    }
    if (inf->max_frame) {
        f = inf->frame_out < inf->max_frame ? inf->max_frame - inf->frame_out
                                            : 0;
        if (f < left) {
            left = f;
        }
    }
    return left;
}

ws_status ws_inflate_feed(ws_inflater *inf, const uint8_t **in,
                          size_t *in_len, unsigned flags, int text,
                          uint8_t *out, size_t out_cap, size_t *out_len,
                          unsigned *close_code, const char **why)
{
    int last = (flags & WS_DATA_LAST) != 0;
    int drained = 0, rc, from_tail;
    const uint8_t *src;
    size_t n, room, allow, used, made;
    uint64_t left;

    *out_len = 0;
    if (out_cap == 0 || (*in_len && *in == NULL)) {
        return WS_ERR_ARG;
    }
    if (!inf->in_message) {
        if (!inf->live) {
            memset(&inf->z, 0, sizeof(inf->z));
            rc = inflateInit2(&inf->z, -(int)inf->window_bits);
            if (rc != Z_OK) {
                *close_code = WS_CLOSE_INTERNAL_ERROR;
                *why = "out of memory for inflating";
                return WS_ERR_PROTO;
            }
            inf->live = 1;
        }
        inf->in_message = 1;
        inf->text = text;
        inf->utf8 = WS_UTF8_ACCEPT;
        inf->msg_out = inf->frame_out = 0;
        inf->tail_fed = 0;
        inf->stream_end = 0;
    }

    for (;;) {
        src = NULL;
        n = 0;
        from_tail = 0;
        if (*in_len) {
            if (inf->stream_end) {
                return inflate_fail(inf, WS_CLOSE_INVALID_DATA,
                                    "data after the end of the deflate "
                                    "stream", close_code, why);
            }
            src = *in;
            n = *in_len;
        }
        else if (last && !inf->stream_end && inf->tail_fed < 4) {
            src = pmd_tail + inf->tail_fed;
            n = 4 - inf->tail_fed;
            from_tail = 1;
        }
        if (src == NULL && (drained || inf->stream_end)) {
            break;
        }
        room = out_cap - *out_len;
        if (room == 0) {
            return WS_OK;
        }
        left = allowance(inf);
        allow = room;
        if (left < (uint64_t)allow) {
            /* one byte more than allowed tells whether it goes past */
            allow = (size_t)left + 1;
        }
        inf->z.next_in = (unsigned char *)(uintptr_t)src;
        inf->z.avail_in = (uInt)(n > 0x40000000u ? 0x40000000u : n);
        inf->z.next_out = out + *out_len;
        inf->z.avail_out = (uInt)(allow > 0x40000000u ? 0x40000000u : allow);
        allow = inf->z.avail_out;
        n = inf->z.avail_in;
        rc = inflate(&inf->z, Z_SYNC_FLUSH);
        used = n - inf->z.avail_in;
        made = allow - inf->z.avail_out;
        if (from_tail) {
            inf->tail_fed += (unsigned)used;
        }
        else if (src) {
            *in += used;
            *in_len -= used;
        }
        if (rc == Z_NEED_DICT || rc == Z_DATA_ERROR || rc == Z_STREAM_ERROR) {
            return inflate_fail(inf, WS_CLOSE_INVALID_DATA,
                                "invalid compressed data", close_code, why);
        }
        if (rc == Z_MEM_ERROR) {
            return inflate_fail(inf, WS_CLOSE_INTERNAL_ERROR,
                                "out of memory for inflating", close_code,
                                why);
        }
        if ((uint64_t)made > left) {
            return inflate_fail(inf, WS_CLOSE_TOO_BIG,
                                "message inflates past the size limit",
                                close_code, why);
        }
        if (made && inf->text
            && ws_utf8_validate(&inf->utf8, out + *out_len, made, NULL)
               == WS_UTF8_REJECT) {
            return inflate_fail(inf, WS_CLOSE_INVALID_DATA,
                                "invalid UTF-8 in text message", close_code,
                                why);
        }
        *out_len += made;
        inf->msg_out += made;
        inf->frame_out += made;
        if (rc == Z_STREAM_END) {
            inf->stream_end = 1;
            inflateReset(&inf->z);
            continue;
        }
        drained = inf->z.avail_out > 0;
        if (rc == Z_BUF_ERROR || (used == 0 && made == 0)) {
            /* no progress: zlib wants input we do not have yet */
            if (src && !from_tail && *in_len) {
                return inflate_fail(inf, WS_CLOSE_INVALID_DATA,
                                    "invalid compressed data", close_code,
                                    why);
            }
            if (src == NULL || from_tail) {
                drained = 1;
                if (from_tail && inf->tail_fed < 4) {
                    return inflate_fail(inf, WS_CLOSE_INVALID_DATA,
                                        "invalid compressed data",
                                        close_code, why);
                }
            }
        }
    }
    if (flags & WS_DATA_FRAME_FIN) {
        inf->frame_out = 0;
    }
    if (last) {
        if (!inf->stream_end && !(inf->z.data_type & 128)) {
            /* the tail (an empty stored block) leaves zlib between
             * blocks, unless the payload ended inside a block */
            return inflate_fail(inf, WS_CLOSE_INVALID_DATA,
                                "compressed message ends inside a block",
                                close_code, why);
        }
        if (inf->text && inf->utf8 != WS_UTF8_ACCEPT) {
            return inflate_fail(inf, WS_CLOSE_INVALID_DATA,
                                "text message ends inside a UTF-8 sequence",
                                close_code, why);
        }
        inf->in_message = 0;
        if (inf->no_context) {
            ws_inflate_end(inf);     /* no state between messages */
        }
    }
    return WS_NEED_MORE;
}

/* ---- the deflater ------------------------------------------------------- */

void ws_deflate_init(ws_deflater *d, unsigned window_bits,
                     unsigned mem_level, int level, int no_context)
{
    memset(d, 0, sizeof(*d));
    d->window_bits = (window_bits < 9 || window_bits > 15) ? 15 : window_bits;
    d->mem_level = (mem_level < 1 || mem_level > 9) ? 8 : mem_level;
    d->level = (level < 1 || level > 9) ? Z_DEFAULT_COMPRESSION : level;
    d->no_context = no_context;
}

size_t ws_deflate_bound(const ws_deflater *d, size_t len)
{
    (void)d;
    /* zlib's conservative bound for any parameters, plus a flush */
    return len + (len >> 3) + (len >> 6) + 32;
}

void ws_deflate_end(ws_deflater *d)
{
    if (d->live) {
        deflateEnd(&d->z);
        d->live = 0;
    }
    d->in_message = 0;
    d->hold_len = 0;
}

ws_status ws_deflate_feed(ws_deflater *d, const uint8_t **in,
                          size_t *in_len, int last, uint8_t *out,
                          size_t out_cap, size_t *out_len)
{
    size_t pos, total, keep, n;
    int rc;

    *out_len = 0;
    if (out_cap < 16 || (*in_len && *in == NULL)) {
        return WS_ERR_ARG;
    }
    if (!d->live) {
        memset(&d->z, 0, sizeof(d->z));
        if (deflateInit2(&d->z, d->level, Z_DEFLATED, -(int)d->window_bits,
                         (int)d->mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
            return WS_ERR_STATE;
        }
        d->live = 1;
        d->in_message = 0;
    }
    if (!d->in_message) {
        d->in_message = 1;
        d->hold_len = 0;
    }
    memcpy(out, d->hold, d->hold_len);
    pos = d->hold_len;
    d->hold_len = 0;
    n = *in_len > 0x40000000u ? 0x40000000u : *in_len;
    d->z.next_in = (unsigned char *)(uintptr_t)*in;
    d->z.avail_in = (uInt)n;
    d->z.next_out = out + pos;
    d->z.avail_out = (uInt)(out_cap - pos);
    rc = deflate(&d->z, last ? Z_SYNC_FLUSH : Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
        ws_deflate_end(d);
        return WS_ERR_STATE;
    }
    *in += n - d->z.avail_in;
    *in_len -= n - d->z.avail_in;
    total = out_cap - d->z.avail_out;
    /* the last four bytes made so far may be the tail: keep them back */
    keep = total < 4 ? total : 4;
    memcpy(d->hold, out + total - keep, keep);
    d->hold_len = keep;
    *out_len = total - keep;
    if (d->z.avail_out == 0 || *in_len) {
        return WS_OK;
    }
    if (!last) {
        return WS_NEED_MORE;
    }
    /* flushed: what is kept back is the tail.  zlib has nothing to flush
     * for an empty message right after another flush: that message is
     * sent as 0x00 (RFC 7692 7.2.3.6), since an empty payload plus the
     * tail would not be a whole block. */
    if (d->hold_len == 4 && !memcmp(d->hold, pmd_tail, 4)) {
        d->hold_len = 0;
    }
    else if (total == 0) {
        out[0] = 0x00;
        *out_len = 1;
    }
    else {
        ws_deflate_end(d);
        return WS_ERR_STATE;
    }
    d->in_message = 0;
    if (d->no_context) {
        deflateReset(&d->z);
    }
    return WS_NEED_MORE;
}

/*
 * chat -- every message a client sends goes to every client in the same
 * room, in every child process of the server (host->publish), the sender
 * included.
 *
 *     <Location /chat>
 *         SetHandler websocket
 *         WebSocketHandler modules/mod_ws_chat.so
 *         WebSocketHandlerOption welcome "Hello from mod_websocket"
 *         WebSocketHandlerOption binary relay
 *     </Location>
 *
 * The room is `?room=NAME` from the query (NAME: 1-64 of [A-Za-z0-9_-];
 * anything else is refused with 400), or else the request path.  Rooms
 * belong to their WebSocketHandler line: /public?room=lobby and
 * /chat?room=lobby (two lines) are two rooms, whatever authentication
 * either location requires.  Other
 * query parameters are ignored, except `name=NICK` (same rule), a nickname
 * shown beside the id.  The user id is "<pid>-<connection id>": host->id()
 * is unique only within one child process, the pid makes it unique across
 * the children that share a room.
 *
 * What clients receive, as text JSON (one object per message):
 *   {"type":"welcome","user":ID,"room":ROOM[,"text":WELCOME]}  (only to the
 *        new client, first; "text" when the welcome option is set)
 *   {"type":"join","user":ID,"room":ROOM[,"name":NICK]}
 *   {"type":"leave","user":ID,"room":ROOM[,"name":NICK]}
 *        (to the room, the newcomer included; not with `presence off`)
 *   {"type":"message","from":ID,"room":ROOM[,"name":NICK],"text":TEXT}
 *   {"type":"error","text":WHY}                (only to the sender)
 * Binary messages are relayed to the room unchanged, as binary (option
 * `binary relay`, the default), or refused by closing the sender's
 * connection with 1003 (option `binary refuse`).
 *
 * Options (WebSocketHandlerOption):
 *   welcome TEXT          read once in init(): the "text" of the welcome
 *   binary relay|refuse   read per connection with host->option()
 *   presence on|off       read per connection: off sends no join or leave
 *                         notices, so that N clients joining a room do not
 *                         cost N x N / 2 deliveries (a broadcast-only room,
 *                         the benchmark's 10,000 receivers); default on
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mod_websocket.h"

#define CHAT_NAME_MAX    64          /* ?room= and ?name= values          */
#define CHAT_ROOM_MAX    160         /* a path used as the room            */
#define CHAT_CHANNEL_PFX "chat:"

static const mws_host *host;

/* One per WebSocketHandler line (and child process). */
typedef struct {
    char *welcome;               /* option welcome, or NULL */
} chat_instance;

/* One per connection, malloc'd in on_open, freed in on_close. */
typedef struct {
    char channel[sizeof(CHAT_CHANNEL_PFX) + CHAT_ROOM_MAX];
    char room[CHAT_ROOM_MAX + 1];
    char user[48];
    char name[CHAT_NAME_MAX + 1];    /* "" when none */
    int refuse_binary;
    int quiet;                       /* presence off: no join/leave notices */
} chat_conn;

/* ---- a growing string buffer (malloc'd) -------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        char *np;

        while (b->len + n + 1 > cap) {
            cap *= 2;
        }
        np = realloc(b->p, cap);
        if (!np) {
            b->failed = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if none. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned cp;

    if (s[0] < 0x80) {
        return 1;
    }
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2, cp = s[0] & 0x1F;
    }
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3, cp = s[0] & 0x0F;
    }
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4, cp = s[0] & 0x07;
    }
    else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (i = 1; i < len; ++i) {
        if ((s[i] & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
        || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
        return 0;
    }
    return len;
}

/* Append s (n bytes) as a JSON string, quotes included.  Control
 * characters are escaped; bytes that are not UTF-8 (possible in a decoded
 * path) become U+FFFD, so the result is always a valid text message. */
static void sb_json(sbuf *b, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    char esc[8];

    sb_put(b, "\"", 1);
    while (i < n) {
        unsigned char ch = u[i];
        size_t seq;

        if (ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\') {
            ++run, ++i;
            continue;
        }
        sb_put(b, s + i - run, run);
        run = 0;
        switch (ch) {
        case '"':  sb_put(b, "\\\"", 2); ++i; continue;
        case '\\': sb_put(b, "\\\\", 2); ++i; continue;
        case '\n': sb_put(b, "\\n", 2);  ++i; continue;
        case '\r': sb_put(b, "\\r", 2);  ++i; continue;
        case '\t': sb_put(b, "\\t", 2);  ++i; continue;
        default:
            break;
        }
        if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            sb_put(b, esc, 6);
            ++i;
            continue;
        }
        seq = utf8_seq(u + i, n - i);
        if (seq) {
            sb_put(b, s + i, seq);
            i += seq;
        }
        else {
            sb_put(b, "\xEF\xBF\xBD", 3);
            ++i;
        }
    }
    sb_put(b, s + i - run, run);
    sb_put(b, "\"", 1);
}

/* Append ,"key":"value" */
static void sb_field(sbuf *b, const char *key, const char *s, size_t n)
{
    sb_put(b, ",\"", 2);
    sb_str(b, key);
    sb_put(b, "\":", 2);
    sb_json(b, s, n);
}

/* ---- rooms and names ----------------------------------------------------- */

static int name_valid(const char *s, size_t n)
{
    size_t i;

    if (n < 1 || n > CHAT_NAME_MAX) {
        return 0;
    }
    for (i = 0; i < n; ++i) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
            return 0;
        }
    }
    return 1;
}

/* Find parameter key in a query string.  Returns 1 and sets *val and *vlen
 * when present (the value is taken as it is: a valid name has nothing to
 * decode), 0 when absent. */
static int query_param(const char *q, const char *key, const char **val,
                       size_t *vlen)
{
    size_t klen = strlen(key);

    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t plen = end ? (size_t)(end - q) : strlen(q);

        if (plen >= klen && !strncmp(q, key, klen)
            && (plen == klen || q[klen] == '=')) {
            *val = plen == klen ? q + plen : q + klen + 1;
            *vlen = plen == klen ? 0 : plen - klen - 1;
            return 1;
        }
        q = end ? end + 1 : NULL;
    }
    return 0;
}

/* Publish a join/leave notice for cc. */
static void notice(mws_conn *c, const chat_conn *cc, const char *type)
{
    sbuf b = {0};
    int rv;

    if (cc->quiet) {
        return;
    }
    sb_str(&b, "{\"type\":");
    sb_json(&b, type, strlen(type));
    sb_field(&b, "user", cc->user, strlen(cc->user));
    sb_field(&b, "room", cc->room, strlen(cc->room));
    if (*cc->name) {
        sb_field(&b, "name", cc->name, strlen(cc->name));
    }
    sb_put(&b, "}", 1);
    if (b.failed) {
        host->log(c, MWS_LOG_ERR, "out of memory for the %s notice", type);
    }
    else if ((rv = host->publish(cc->channel, MWS_TEXT, b.p, b.len)) < 0) {
        host->log(c, MWS_LOG_WARNING, "publishing the %s notice to %s "
                  "failed (%d)", type, cc->room, rv);
    }
    free(b.p);
}

/* Tell the sender alone what went wrong (text JSON). */
static int send_error(mws_conn *c, const char *why)
{
    sbuf b = {0};
    int rv;

    sb_str(&b, "{\"type\":\"error\"");
    sb_field(&b, "text", why, strlen(why));
    sb_put(&b, "}", 1);
    rv = b.failed ? MWS_ERR_NOMEM : host->send(c, MWS_TEXT, b.p, b.len);
    free(b.p);
    return (rv == MWS_OK || rv == MWS_ERR_CLOSED) ? 0 : -1;
}

/* ---- callbacks ------------------------------------------------------------ */

static int chat_init(const mws_host *h, const mws_option *opts, size_t n,
                     void **instance)
{
    chat_instance *ci;
    size_t i;

    host = h;
    ci = calloc(1, sizeof(*ci));
    if (!ci) {
        return -1;
    }
    for (i = 0; i < n; ++i) {
        /* the last line wins, as with most httpd directives */
        if (!strcmp(opts[i].key, "presence")
            && strcmp(opts[i].value, "on") && strcmp(opts[i].value, "off")) {
            h->log(NULL, MWS_LOG_ERR, "WebSocketHandlerOption presence "
                   "'%s': on or off", opts[i].value);
            free(ci->welcome);
            free(ci);
            return -1;
        }
        if (!strcmp(opts[i].key, "welcome")) {
            free(ci->welcome);
            if (!(ci->welcome = strdup(opts[i].value))) {
                free(ci);
                return -1;
            }
        }
    }
    *instance = ci;
    return 0;
}

static void chat_shutdown(void *instance)
{
    chat_instance *ci = instance;

    if (ci) {
        free(ci->welcome);
        free(ci);
    }
}

static int chat_open(mws_conn *c, mws_request *r, void *instance)
{
    chat_instance *ci = instance;
    chat_conn *cc;
    const char *query = host->req_query(r), *val, *opt;
    size_t vlen;
    sbuf b = {0};
    int rv;

    cc = calloc(1, sizeof(*cc));
    if (!cc) {
        return 500;
    }
    if (query_param(query, "room", &val, &vlen)) {
        if (!name_valid(val, vlen)) {
            host->log(c, MWS_LOG_INFO, "refused: room name is not 1-%d "
                      "of [A-Za-z0-9_-]", CHAT_NAME_MAX);
            free(cc);
            return 400;
        }
        memcpy(cc->room, val, vlen);
    }
    else {
        const char *path = host->req_path(r);

        if (!path || !*path || strlen(path) > CHAT_ROOM_MAX) {
            host->log(c, MWS_LOG_INFO, "refused: path too long for a room "
                      "(at most %d bytes; use ?room=NAME)", CHAT_ROOM_MAX);
            free(cc);
            return 400;
        }
        strcpy(cc->room, path);
    }
    if (query_param(query, "name", &val, &vlen)) {
        if (!name_valid(val, vlen)) {
            host->log(c, MWS_LOG_INFO, "refused: name is not 1-%d of "
                      "[A-Za-z0-9_-]", CHAT_NAME_MAX);
            free(cc);
            return 400;
        }
        memcpy(cc->name, val, vlen);
    }
    snprintf(cc->channel, sizeof(cc->channel), "%s%s", CHAT_CHANNEL_PFX,
             cc->room);
    snprintf(cc->user, sizeof(cc->user), "%ld-%llu", (long)getpid(),
             (unsigned long long)host->id(c));
    opt = host->option(c, "binary");
    cc->refuse_binary = opt && !strcmp(opt, "refuse");
    opt = host->option(c, "presence");
    cc->quiet = opt && !strcmp(opt, "off");

    /* welcome first: messages queued in on_open follow the 101 in order */
    sb_str(&b, "{\"type\":\"welcome\"");
    sb_field(&b, "user", cc->user, strlen(cc->user));
    sb_field(&b, "room", cc->room, strlen(cc->room));
    if (ci && ci->welcome) {
        sb_field(&b, "text", ci->welcome, strlen(ci->welcome));
    }
    sb_put(&b, "}", 1);
    rv = b.failed ? MWS_ERR_NOMEM : host->send(c, MWS_TEXT, b.p, b.len);
    free(b.p);
    if (rv != MWS_OK) {
        free(cc);
        return 500;
    }
    if ((rv = host->subscribe(c, cc->channel)) != MWS_OK) {
        host->log(c, MWS_LOG_ERR, "subscribing to %s failed (%d)",
                  cc->channel, rv);
        free(cc);
        return 500;
    }
    host->set_data(c, cc);
    /* everyone in the room, the newcomer included, sees the join (unless
     * presence off) */
    notice(c, cc, "join");
    return 0;
}

static int chat_message(mws_conn *c, mws_msg_type type, const void *data,
                        size_t len)
{
    chat_conn *cc = host->get_data(c);
    sbuf b = {0};
    int rv;

    if (!cc) {
        return -1;
    }
    if (type == MWS_BINARY) {
        if (cc->refuse_binary) {
            rv = host->close(c, MWS_CLOSE_UNSUPPORTED,
                             "binary messages are not accepted");
            return (rv == MWS_OK || rv == MWS_ERR_CLOSED) ? 0 : -1;
        }
        rv = host->publish(cc->channel, MWS_BINARY, data, len);
        if (rv == MWS_ERR_TOO_BIG) {
            return send_error(c, "message too long for the room");
        }
        return rv < 0 ? -1 : 0;
    }

    sb_str(&b, "{\"type\":\"message\"");
    sb_field(&b, "from", cc->user, strlen(cc->user));
    sb_field(&b, "room", cc->room, strlen(cc->room));
    if (*cc->name) {
        sb_field(&b, "name", cc->name, strlen(cc->name));
    }
    sb_field(&b, "text", data, len);
    sb_put(&b, "}", 1);
    if (b.failed) {
        free(b.p);
        return send_error(c, "out of memory");
    }
    rv = host->publish(cc->channel, MWS_TEXT, b.p, b.len);
    free(b.p);
    if (rv == MWS_ERR_TOO_BIG) {
        return send_error(c, "message too long for the room");
    }
    if (rv < 0) {
        host->log(c, MWS_LOG_WARNING, "publish to %s failed (%d)", cc->room,
                  rv);
        return -1;
    }
    return 0;
}

static void chat_close(mws_conn *c, int code, const char *reason,
                       size_t reason_len)
{
    chat_conn *cc = host->get_data(c);

    if (!cc) {
        return;
    }
    /* the module has already unsubscribed c: the others get the notice,
     * a send to c itself would fail with MWS_ERR_CLOSED */
    notice(c, cc, "leave");
    host->set_data(c, NULL);
    free(cc);
}

static const mws_handler chat_handler = {
    .abi_major   = MWS_ABI_MAJOR,
    .abi_minor   = MWS_ABI_MINOR,
    .struct_size = sizeof(mws_handler),
    .name        = "chat",
    .init        = chat_init,
    .shutdown    = chat_shutdown,
    .on_open     = chat_open,
    .on_message  = chat_message,
    .on_close    = chat_close,
};

MWS_EXPORT const mws_handler *mws_handler_entry(void)
{
    return &chat_handler;
}

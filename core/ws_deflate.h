/*
 * ws_deflate.h -- permessage-deflate (RFC 7692) over zlib, free of httpd.
 *
 * Three parts: the negotiation (parse a Sec-WebSocket-Extensions offer
 * list, pick the first acceptable offer, write the response), a streaming
 * inflater with a bound on what it ever produces (inflate bombs), and a
 * streaming deflater.  Kept apart from ws_core.h so that only the files
 * that compress see zlib.h.
 *
 * zlib allocates its own state (malloc, through zlib's defaults): an
 * inflater or deflater holds memory only between its begin and its end,
 * which the caller places at message boundaries when there is no context
 * takeover, so that an idle connection holds none.
 */
#ifndef MWS_CORE_WS_DEFLATE_H
#define MWS_CORE_WS_DEFLATE_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "ws_core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- negotiation (RFC 7692 sections 5 to 7) -------------------------- */

#define WS_PMD_NAME "permessage-deflate"
/* the longest response ws_pmd_negotiate writes, with its NUL */
#define WS_PMD_RESPONSE_MAX 160

/* What the server is willing to do. */
typedef struct ws_pmd_policy {
    int context_takeover;        /* 0: we ask for no context takeover in
                                  * both directions (no zlib state between
                                  * messages); 1: keep it where the client
                                  * lets us                                */
    unsigned max_window_bits;    /* 9..15: our (server) LZ77 window cap and
                                  * the client's, where it lets us cap it  */
} ws_pmd_policy;

/* The parameters agreed on, for one connection. */
typedef struct ws_pmd_params {
    int server_no_context_takeover;   /* we reset our deflater per message */
    int client_no_context_takeover;   /* the client resets its deflater    */
    unsigned server_max_window_bits;  /* 9..15: our deflater's window      */
    unsigned client_max_window_bits;  /* 8..15: the client's, our inflater */
} ws_pmd_params;

/*
 * Pick the first acceptable permessage-deflate offer of an
 * Sec-WebSocket-Extensions value (all header lines joined by ", ").
 * Returns 1 with *out and response (NUL-terminated, at most
 * WS_PMD_RESPONSE_MAX bytes with the NUL) filled, or 0 when no offer is
 * acceptable (the extension is declined: the handshake goes on without
 * it).  An offer is declined, and the next one tried, when it has an
 * unknown parameter, a parameter twice, a bad value (RFC 7692 5, 7.1) or
 * a syntax error; one that asks for a server window of 8 is declined too
 * (zlib's raw deflate cannot make one).  Other extensions are skipped.
 */
int ws_pmd_negotiate(const char *header, const ws_pmd_policy *policy,
                     ws_pmd_params *out, char *response);

/* ---- the inflater ------------------------------------------------------ */

typedef struct ws_inflater {
    z_stream z;
    int live;                    /* z holds zlib state (inflateInit2 ran)   */
    int no_context;              /* end the state after every message       */
    unsigned window_bits;
    uint64_t max_message;        /* inflated bytes per message, 0: none     */
    uint64_t max_frame;          /* inflated bytes per frame, 0: none       */
    /* per message */
    int in_message;
    int text;                    /* validate UTF-8                          */
    uint32_t utf8;
    uint64_t msg_out, frame_out;
    unsigned tail_fed;           /* bytes of 00 00 ff ff given to zlib      */
    int stream_end;              /* the sender ended the deflate stream     */
} ws_inflater;

/* Set up (no zlib state yet).  max_* 0 means no limit. */
void ws_inflate_init(ws_inflater *inf, const ws_pmd_params *params,
                     uint64_t max_message, uint64_t max_frame);

/*
 * Inflate one chunk of a compressed message, as the parser hands it out
 * (flags: the WS_DATA_* of the chunk's event; text: the message is text).
 * *in and *in_len are advanced over what zlib took; up to out_cap inflated
 * bytes go to out (*out_len).  Returns:
 *   WS_OK         out is full or more output waits: call again with the
 *                 rest of the input (possibly none)
 *   WS_NEED_MORE  the chunk is used up; when it had WS_DATA_LAST the
 *                 message is complete (its 4-byte tail was added)
 *   WS_ERR_PROTO  *close_code and *why say what: 1009 when the message or a
 *                 frame would inflate past its limit (at most one byte past
 *                 the limit is ever inflated, and it is not returned),
 *                 1007 for data that is not a deflate stream or text that
 *                 is not UTF-8 (at the first bad byte), 1011 when zlib has
 *                 no memory.  The inflater is ended.
 * out_cap must be at least 1.
 */
ws_status ws_inflate_feed(ws_inflater *inf, const uint8_t **in,
                          size_t *in_len, unsigned flags, int text,
                          uint8_t *out, size_t out_cap, size_t *out_len,
                          unsigned *close_code, const char **why);

/* Free zlib's state (any time; ws_inflate_feed starts it again). */
void ws_inflate_end(ws_inflater *inf);

/* ---- the deflater ------------------------------------------------------ */

typedef struct ws_deflater {
    z_stream z;
    int live;
    int no_context;
    int level;                   /* zlib level 1..9, or -1 for its default  */
    unsigned window_bits;        /* 9..15                                   */
    unsigned mem_level;          /* 1..9                                    */
    int in_message;
    uint8_t hold[4];             /* the last bytes made: maybe the tail     */
    size_t hold_len;
} ws_deflater;

void ws_deflate_init(ws_deflater *d, unsigned window_bits,
                     unsigned mem_level, int level, int no_context);

/* Bytes the compressed form of len bytes can take at most (any split
 * into calls; without the tail). */
size_t ws_deflate_bound(const ws_deflater *d, size_t len);

/*
 * Compress a piece of a message.  last: this is the message's last piece
 * (the stream is flushed and the 00 00 ff ff tail left off).  *in and
 * *in_len are advanced; up to out_cap bytes go to out (*out_len); out_cap
 * must be at least 16.  Returns WS_OK when out is full and more waits
 * (call again), WS_NEED_MORE when the piece is done (with last, the
 * message), WS_ERR_ARG / WS_ERR_STATE on zlib errors (no memory).
 */
ws_status ws_deflate_feed(ws_deflater *d, const uint8_t **in,
                          size_t *in_len, int last, uint8_t *out,
                          size_t out_cap, size_t *out_len);

void ws_deflate_end(ws_deflater *d);

#ifdef __cplusplus
}
#endif
#endif /* MWS_CORE_WS_DEFLATE_H */

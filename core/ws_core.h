/*
 * ws_core.h -- the WebSocket protocol core (RFC 6455), free of httpd.
 *
 * Nothing under core/ includes an httpd or APR header, allocates memory or
 * logs.  State lives in structs the caller owns; functions return a
 * ws_status and, where the peer must be told, the RFC 6455 close code.
 *
 * The parser is fed bytes in chunks of any size and hands back one event
 * per call.  The same byte stream gives the same sequence of events (with
 * data events possibly split differently) however it is chunked.
 */
#ifndef MWS_CORE_WS_CORE_H
#define MWS_CORE_WS_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and constants ------------------------------------------- */

typedef enum {
    WS_OK          = 0,
    WS_NEED_MORE   = 1,   /* all input consumed, no event yet            */
    WS_ERR_PROTO   = -1,  /* protocol violation: see close code          */
    WS_ERR_ARG     = -2,  /* bad argument (caller bug)                    */
    WS_ERR_STATE   = -3   /* call not valid in this state                 */
} ws_status;

typedef enum {
    WS_OP_CONT   = 0x0,
    WS_OP_TEXT   = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE  = 0x8,
    WS_OP_PING   = 0x9,
    WS_OP_PONG   = 0xA
} ws_opcode;

/* RFC 6455 section 7.4.1 close codes used by the core. */
#define WS_CLOSE_NORMAL          1000
#define WS_CLOSE_GOING_AWAY      1001
#define WS_CLOSE_PROTOCOL_ERROR  1002
#define WS_CLOSE_UNSUPPORTED     1003
#define WS_CLOSE_NO_STATUS       1005  /* never on the wire */
#define WS_CLOSE_ABNORMAL        1006  /* never on the wire */
#define WS_CLOSE_INVALID_DATA    1007
#define WS_CLOSE_POLICY          1008
#define WS_CLOSE_TOO_BIG         1009
#define WS_CLOSE_EXTENSION       1010
#define WS_CLOSE_INTERNAL_ERROR  1011
#define WS_CLOSE_TRY_AGAIN_LATER 1013

#define WS_MAX_CONTROL_PAYLOAD   125
#define WS_MAX_CLOSE_REASON      123
#define WS_MAX_FRAME_HEADER      14

/* ---- UTF-8 (ws_utf8.c) ---------------------------------------------- */

#define WS_UTF8_ACCEPT 0u   /* state: at a character boundary */
#define WS_UTF8_REJECT 1u   /* state: invalid input seen      */

/*
 * Validate len bytes incrementally.  *state starts at WS_UTF8_ACCEPT and
 * carries across calls (fragments).  Returns the new state: WS_UTF8_REJECT
 * as soon as a byte makes the input invalid (then *bad_at, if given, is the
 * offset of that byte in s), WS_UTF8_ACCEPT at a character boundary, any
 * other value inside a multi-byte sequence.
 */
uint32_t ws_utf8_validate(uint32_t *state, const uint8_t *s, size_t len,
                          size_t *bad_at);

/* 1 if the whole buffer is valid, complete UTF-8, else 0. */
int ws_utf8_is_valid(const uint8_t *s, size_t len);

/* ---- close payload (ws_close.c) ------------------------------------ */

/* 1 if code may appear in a close frame received from a peer:
 * 1000-1003, 1007-1011, 3000-4999.  Nothing else. */
int ws_close_code_valid(unsigned code);

/*
 * Parse a close frame payload.  On success: WS_OK, *code is the code
 * (WS_CLOSE_NO_STATUS for an empty payload), *reason and *reason_len give
 * the reason inside payload.  On failure WS_ERR_PROTO and *err_code is the
 * code to answer with: 1002 for a 1-byte payload or an invalid code, 1007
 * for a reason that is not UTF-8.
 */
ws_status ws_close_parse(const uint8_t *payload, size_t len, unsigned *code,
                         const uint8_t **reason, size_t *reason_len,
                         unsigned *err_code);

/*
 * Build a close payload into out (at least 125 bytes).  code 0 means "no
 * code" (empty payload).  The reason is cut to 123 bytes at a UTF-8
 * character boundary.  Returns the payload length.
 */
size_t ws_close_build(uint8_t *out, unsigned code, const char *reason,
                      size_t reason_len);

/* ---- frame writer (ws_frame.c) ------------------------------------- */

/*
 * Write a frame header into out (WS_MAX_FRAME_HEADER bytes).  rsv is the
 * three RSV bits as 0..7 (RSV1 = 4).  mask NULL for an unmasked (server)
 * frame, else the 4-byte key that is written into the header (the payload
 * must be masked separately with ws_mask).  Returns the header length.
 */
size_t ws_frame_header(uint8_t *out, int fin, unsigned rsv, ws_opcode op,
                       uint64_t payload_len, const uint8_t *mask);

/* XOR buf with key, starting at key position offset % 4. */
void ws_mask(uint8_t *buf, size_t len, const uint8_t key[4], uint64_t offset);

/* ---- frame parser (ws_frame.c) ------------------------------------- */

typedef enum {
    WS_EV_NONE  = 0,
    WS_EV_DATA  = 1,  /* a chunk of a text or binary message            */
    WS_EV_PING  = 2,  /* a whole ping; payload in ev->data              */
    WS_EV_PONG  = 3,  /* a whole pong                                   */
    WS_EV_CLOSE = 4,  /* a valid close; code/reason set                 */
    WS_EV_ERROR = 5   /* protocol error; close_code set, parser is dead */
} ws_event_type;

/* flags on WS_EV_DATA */
#define WS_DATA_FIRST      0x01  /* first chunk of the message            */
#define WS_DATA_LAST       0x02  /* last chunk: the message is complete   */
#define WS_DATA_FRAME_FIN  0x04  /* last chunk of its frame               */
#define WS_DATA_RSV1       0x08  /* message was sent with RSV1 (deflate)  */

typedef struct {
    ws_event_type type;
    ws_opcode     opcode;      /* WS_EV_DATA: WS_OP_TEXT or WS_OP_BINARY */
    unsigned      flags;       /* WS_DATA_*                               */
    uint8_t      *data;        /* payload (unmasked); for DATA points into
                                  the caller's input buffer, for control
                                  events into the parser                  */
    size_t        len;
    uint64_t      message_len; /* DATA: bytes of this message so far,
                                  including this chunk                    */
    unsigned      close_code;  /* CLOSE: received code (1005 if none);
                                  ERROR: code to send                     */
    const uint8_t *reason;     /* CLOSE: reason; ERROR: static text       */
    size_t        reason_len;
} ws_event;

typedef struct {
    uint64_t max_message;   /* 0 = unlimited; 1009 when a message's declared
                               length would exceed it                      */
    uint64_t max_frame;     /* 0 = unlimited; 1009 when a frame's declared
                               length exceeds it                           */
    unsigned rsv_allowed;   /* RSV bits (0..7) a negotiated extension allows
                               on the first frame of a data message        */
    int      require_mask;  /* 1 for a server (clients must mask)          */
    int      validate_utf8; /* 1: check text messages as they arrive       */
} ws_parser_config;

typedef struct ws_parser {
    ws_parser_config cfg;
    /* private from here on */
    int      state;
    uint8_t  hdr[WS_MAX_FRAME_HEADER];
    unsigned hdr_have, hdr_need;
    int      fin;
    unsigned rsv;
    ws_opcode op;
    int      masked;
    uint8_t  mask[4];
    uint64_t frame_len, frame_done;
    ws_opcode msg_op;        /* opcode of the message in progress, or CONT */
    int      msg_rsv1;
    int      msg_first_pending;
    uint64_t msg_len;
    uint32_t utf8;
    uint8_t  ctl[WS_MAX_CONTROL_PAYLOAD];
    int      dead;
} ws_parser;

void ws_parser_init(ws_parser *p, const ws_parser_config *cfg);

/*
 * Feed input.  buf is the caller's buffer and is modified in place (masked
 * payload is unmasked).  Consumes bytes from buf and stops after producing
 * at most one event: returns WS_OK with *ev filled, WS_NEED_MORE when all
 * of len was consumed without an event, or WS_ERR_PROTO with an
 * WS_EV_ERROR event (then the parser refuses all further input).
 * *consumed is always set.  Call again with the rest of the buffer.
 */
ws_status ws_parser_feed(ws_parser *p, uint8_t *buf, size_t len,
                         size_t *consumed, ws_event *ev);

/* 1 while a fragmented data message is in progress. */
int ws_parser_in_message(const ws_parser *p);

/* ---- handshake helpers (ws_handshake.c) ----------------------------- */

#define WS_ACCEPT_LEN 28   /* base64 of a SHA-1 digest */

/* 1 if key is the base64 encoding of exactly 16 bytes (24 chars, "=="
 * padding, canonical), surrounding spaces/tabs not allowed. */
int ws_handshake_key_valid(const char *key);

/* Sec-WebSocket-Accept for key into out (WS_ACCEPT_LEN + 1 bytes, NUL
 * terminated).  The key is used as given (already validated). */
void ws_handshake_accept(const char *key, char *out);

/* 1 if the comma-separated list (HTTP #token rule: spaces and tabs around
 * elements, empty elements allowed) has token, compared without case. */
int ws_token_list_has(const char *list, const char *token);

/*
 * Iterate a comma-separated list: *pos starts at list; returns 1 and sets
 * *tok and *tok_len to the next non-empty element (trimmed), 0 at the end.
 */
int ws_token_next(const char **pos, const char **tok, size_t *tok_len);

/* SHA-1 and base64, used for the accept key (ws_sha1.c). */
void ws_sha1(const uint8_t *data, size_t len, uint8_t digest[20]);
/* out needs 4 * ((len + 2) / 3) bytes; no NUL is written; returns the
 * number of characters written. */
size_t ws_base64_encode(const uint8_t *in, size_t len, char *out);
/* returns decoded length or -1 when not canonical base64 */
long ws_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* ---- origins and the address table's hash (ws_origin.c) ------------- */

#define WS_ORIGIN_MAX_HOST 253   /* a DNS name's longest text form       */
#define WS_ORIGIN_MAX_IPV6 45    /* characters between the brackets       */

/* A serialized origin (RFC 6454 6.1): "http" or "https" (any case),
 * "://", a host (a name or IPv4 address: labels of letters, digits, '-'
 * and '_' joined by single dots; or an IPv6 literal in brackets), an
 * optional ":port" (1-65535).  Nothing else: no userinfo, path, query,
 * "null" or empty host.  host points into the input (brackets removed,
 * case kept); port is the scheme's default (80, 443) when not given.
 * With allow_wildcard, a name may start with "*." (wildcard is then 1 and
 * host is what follows). */
typedef struct ws_origin {
    int https;                   /* 0: http                                */
    int ipv6;                    /* host was in brackets                   */
    int wildcard;                /* "*." removed from the front            */
    const char *host;
    size_t host_len;
    unsigned port;
} ws_origin;

/* 0 and o filled, or -1 when s is not an origin as above. */
int ws_origin_parse(const char *s, size_t len, int allow_wildcard,
                    ws_origin *o);

/* SipHash-2-4 of in under a 16-byte key (64-bit result). */
uint64_t ws_siphash24(const uint8_t key[16], const uint8_t *in, size_t len);

/* ---- per-address connection counts (ws_addrtab.c) ------------------- */

/* A key: an address as 16 bytes (IPv4 as IPv4-mapped IPv6, IPv6 cut to
 * its prefix) and the prefix length, so two addresses never share a count. */
#define WS_ADDR_KEY 17

typedef struct ws_addr_slot {
    uint32_t count;              /* 0: free                                */
    uint32_t home;               /* the slot the key hashes to             */
    uint8_t key[WS_ADDR_KEY];
} ws_addr_slot;

typedef struct ws_addr_table {
    uint32_t nslots;             /* a power of two                         */
    uint32_t max;                /* keys at a time, < nslots               */
    uint32_t used;
    uint8_t hash_key[16];        /* SipHash key: slots are not predictable */
    ws_addr_slot slot[];         /* nslots of them                         */
} ws_addr_table;

typedef enum {
    WS_ADDR_TAKEN = 0,           /* counted                                */
    WS_ADDR_AT_CAP = 1,          /* the key has cap already                */
    WS_ADDR_FULL = 2             /* a new key, and max keys are in use     */
} ws_addr_result;

/* Bytes for a table of nslots slots. */
size_t ws_addrtab_size(uint32_t nslots);
/* Set up t (ws_addrtab_size(nslots) bytes); -1 if nslots is not a power
 * of two >= 2 or max is not in 1..nslots-1. */
int ws_addrtab_init(ws_addr_table *t, uint32_t nslots, uint32_t max,
                    const uint8_t hash_key[16]);
/* Count one more connection for key unless it has cap already. */
ws_addr_result ws_addrtab_take(ws_addr_table *t, const uint8_t *key,
                               uint32_t cap);
/* Count one less; the key leaves the table at 0.  -1 if it is not there. */
int ws_addrtab_give(ws_addr_table *t, const uint8_t *key);
/* The count of key (0 when absent). */
uint32_t ws_addrtab_count(const ws_addr_table *t, const uint8_t *key);

#ifdef __cplusplus
}
#endif
#endif /* MWS_CORE_WS_CORE_H */

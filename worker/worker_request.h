/*
 * worker_request.h — one API request in flight inside confide-worker, shared
 * by request.c (decrypt, forward, non-streamed replies) and relay.c (SSE
 * relay). See worker.h for the whole picture.
 *
 * Lifetime: created by the route handler, freed by worker_request_finish()
 * exactly once, after the HTTP request was finished (respond / stream_end).
 * `plain` (the decrypted request), `reply` (a non-streamed backend reply)
 * and `out` (encrypted output being assembled) are wiped when freed.
 */
#ifndef CONFIDE_WORKER_REQUEST_H
#define CONFIDE_WORKER_REQUEST_H

#include "worker.h"

struct worker_request {
    worker_request *next, *prev;
    worker_state *w;
    cf_http_request *req;
    uint64_t id;
    int ep_index;
    const cf_proto_endpoint *ep;
    cf_proto_session *session;
    cf_buf plain;
    cf_buf reply;
    cf_buf out;
    cf_http_call *call;
    as_call_ctx *fetch;
    bool fetch_tried;
    long backend_status;
    int reply_status;
    const char *code; /* static error code for the log line */
    char key_id[CF_PROTO_KEY_ID_LEN + 1]; /* peeked before decryption (public) */
    uint64_t t_start, t_forward;
    bool ttfb_seen;
    bool reply_too_large;
    bool relay_failed;
    /* streaming (relay.c) */
    bool streaming;
    bool stream_counted;
    bool stream_closed; /* final event, [DONE] or error event sent */
    bool stream_error;  /* closed with an encrypted error event */
    bool paused;
    cf_sse_parser parser;
    bool parser_live;
    uint64_t events;
    uint64_t bytes_out;
};

extern const cf_http_header worker_reply_headers[];

/* Metric label values of an endpoint index / outcome (fixed strings). */
const char *worker_endpoint_label(int ep_index);
const char *worker_outcome_label(int outcome);

void worker_request_finish(worker_request *r, int outcome);
/* on_close of every request: cancel upstream work, finish, free. */
void worker_on_client_close(cf_http_request *req, void *arg);
void worker_respond_error_sealed(worker_request *r, int status, const char *type, const char *code,
                                 const char *message, int outcome);

/* relay.c */
CF_RESULT worker_relay_start(worker_request *r, long status);
cf_http_body_action worker_relay_body(worker_request *r, cf_slice data);
void worker_relay_done(worker_request *r, cf_http_error error);

#endif /* CONFIDE_WORKER_REQUEST_H */

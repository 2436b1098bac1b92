/* relay.c — streamed replies of confide-proxy (DESIGN §4.5; docs/protocol.md
 * §Streaming).
 *
 * Upstream bytes are fed to the codec as they arrive; every event that
 * authenticated is written to the app at once in SSE form (the inference
 * server's events, minus the protocol's final event). Memory is bounded: the
 * codec holds at most one event, and when the app reads slowly (its unsent
 * output above the high watermark) the upstream transfer is paused, which
 * slows the gateway through TCP flow control, and resumed when the app
 * drained. The response to the app starts with the first authenticated
 * event, so a stream that fails before it becomes an ordinary JSON error; a
 * stream that fails or ends without its final event afterwards ends with an
 * OpenAI-style error event, never silently. */
#include <stdio.h>
#include <string.h>

#include "confide/log.h"
#include "confide/sse.h"
#include "proxy.h"

static void on_writable(cf_http_request *req, void *arg)
{
    px_request *r = arg;
    (void)req;
    /* May deliver the pending chunk (and even finish r) from inside. */
    if (r->call != NULL && cf_http_call_paused(r->call)) {
        cf_http_call_resume(r->call);
    }
}

static CF_RESULT start_app_stream(px_request *r)
{
    static const cf_http_header headers[] = {{"Cache-Control", "no-cache"}, {NULL, NULL}};
    const cf_http_stream_callbacks cbs = {.on_writable = on_writable, .on_close = px_request_abandon};
    CF_GUARD(cf_http_stream_start(r->req, (int)r->status, "text/event-stream", headers, &cbs, r));
    r->stream_started = true;
    return CF_OK;
}

/* Write the decrypted events gathered so far. */
static CF_RESULT flush(px_request *r)
{
    if (r->out.len == 0) {
        return CF_OK;
    }
    if (!r->stream_started) {
        CF_GUARD(start_app_stream(r));
    }
    cf_result w = cf_http_stream_write(r->req, cf_buf_slice(&r->out));
    cf_buf_reset(&r->out);
    return w;
}

/* End the reply with an error: as JSON if nothing was sent yet, else as an
 * error event after what authenticated. Finishes r. */
static void stream_fail(px_request *r, int status, const char *code, const char *message, px_outcome outcome)
{
    if (!r->stream_started && r->out.len == 0) {
        px_request_fail(r, status, "confide_error", code, message, outcome);
        return;
    }
    cf_buf json, event;
    cf_buf_init(&json, 4096);
    cf_buf_init(&event, 8192);
    if (cf_is_ok(flush(r)) && cf_is_ok(cf_http_error_json("confide_error", code, message, &json)) &&
        cf_is_ok(cf_sse_write_data(&event, cf_buf_slice(&json)))) {
        if (cf_is_error(cf_http_stream_write(r->req, cf_buf_slice(&event)))) {
            CF_LOG_DEBUG("error_event_dropped", cf_kv_id("req", cf_http_request_id(r->req)));
        }
    }
    cf_buf_free(&json);
    cf_buf_free(&event);
    cf_http_stream_end(r->req);
    r->req = NULL;
    px_request_done(r, outcome);
}

CF_RESULT px_relay_begin(px_request *r)
{
    px_state *px = r->px;
    CF_GUARD(cf_proto_stream_begin(r->session, (int)r->status));
    cf_buf_init(&r->out, (size_t)px->cfg.max_response_body + 2 * CF_SSE_DEFAULT_MAX_EVENT);
    r->stream_counted = true;
    cf_metric_gauge_add(px->m.streams_active, 1);
    return CF_OK;
}

cf_http_body_action px_relay_body(px_request *r, cf_slice data)
{
    px_state *px = r->px;
    if (r->stream_started && cf_http_stream_congested(r->req)) {
        return CF_HTTP_BODY_PAUSE; /* redelivered after on_writable resumes */
    }
    if (cf_is_error(cf_proto_stream_open_feed(r->session, data, &r->out))) {
        cf_error_code code = cf_error_code_last();
        char msg[400];
        if (code == CF_E_TRUNCATED) {
            snprintf(msg, sizeof msg, "confide-proxy: the stream is truncated: %s", cf_error_last()->detail);
        } else {
            snprintf(msg, sizeof msg, "confide-proxy stopped the stream: an event did not authenticate (%s: %s)",
                     cf_error_name(code), cf_error_last()->detail);
        }
        CF_LOG_WARN("stream_decrypt_failed", cf_kv_id("req", cf_http_request_id(r->req)),
                    cf_kv_str("endpoint", r->ep->name), cf_kv_last_error());
        px_count_decrypt_failure(px, code);
        /* Finishing r cancels the call; the client ignores our return. */
        stream_fail(r, 502, cf_error_name(code), msg, code == CF_E_TRUNCATED ? PX_TRUNCATED : PX_DECRYPT_FAILED);
        return CF_HTTP_BODY_ABORT;
    }
    if (cf_is_error(flush(r))) {
        CF_LOG_WARN("stream_write_failed", cf_kv_id("req", cf_http_request_id(r->req)), cf_kv_last_error());
        cf_http_stream_end(r->req);
        r->req = NULL;
        px_request_done(r, PX_CLIENT_GONE);
        return CF_HTTP_BODY_ABORT;
    }
    return CF_HTTP_BODY_CONTINUE;
}

void px_relay_done(px_request *r, cf_http_error err)
{
    px_state *px = r->px;
    /* A transport error after the final event (and the [DONE] it announced)
     * authenticated cuts nothing: the reply is provably complete, so it ends
     * like a clean one instead of with a false "truncated" error event after
     * [DONE]. open_finish decides that from authenticated state only. */
    bool finished = false;
    if (err != CF_HTTP_OK && cf_proto_stream_complete(r->session)) {
        if (cf_is_ok(cf_proto_stream_open_finish(r->session))) {
            CF_LOG_DEBUG("stream_closed_after_final", cf_kv_id("req", cf_http_request_id(r->req)),
                         cf_kv_str("error", cf_http_error_name(err)));
            err = CF_HTTP_OK;
            finished = true;
        }
    }
    if (err != CF_HTTP_OK) {
        char msg[300];
        snprintf(msg, sizeof msg,
                 "confide-proxy: the upstream stream failed (%s) before its final event; the reply is incomplete",
                 cf_http_error_name(err));
        CF_LOG_WARN("stream_upstream_failed", cf_kv_id("req", cf_http_request_id(r->req)),
                    cf_kv_str("endpoint", r->ep->name), cf_kv_str("error", cf_http_error_name(err)));
        stream_fail(r, err == CF_HTTP_ERR_TIMEOUT ? 504 : 502, "truncated", msg, PX_UPSTREAM_FAILED);
        return;
    }
    if (!finished && cf_is_error(cf_proto_stream_open_finish(r->session))) {
        cf_error_code code = cf_error_code_last();
        char msg[400];
        snprintf(msg, sizeof msg, "confide-proxy: the stream is truncated: %s (%s); the reply is incomplete",
                 cf_error_last()->detail, cf_error_name(code));
        CF_LOG_WARN("stream_truncated", cf_kv_id("req", cf_http_request_id(r->req)), cf_kv_str("endpoint", r->ep->name),
                    cf_kv_last_error());
        px_count_decrypt_failure(px, code);
        stream_fail(r, 502, cf_error_name(code), msg, code == CF_E_TRUNCATED ? PX_TRUNCATED : PX_DECRYPT_FAILED);
        return;
    }
    if (cf_is_error(flush(r)) || (!r->stream_started && cf_is_error(start_app_stream(r)))) {
        cf_http_stream_end(r->req);
        r->req = NULL;
        px_request_done(r, PX_CLIENT_GONE);
        return;
    }
    cf_http_stream_end(r->req);
    r->req = NULL;
    px_request_done(r, PX_OK);
}

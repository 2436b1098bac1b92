/* relay.c — the streamed reply (DESIGN §4.5; docs/protocol.md §Streaming).
 *
 * The inference server's SSE stream is parsed event by event as bytes arrive
 * (cf_sse_parser: blank-line separated, multi-line data, comments, CR/LF/
 * CRLF, one event of at most --max-event-size held at a time) and every
 * event is encrypted and written to the client at once, so nothing waits for
 * the whole reply. `data: [DONE]` is preceded by the final marker event; a
 * stream that ends cleanly without [DONE] gets the final event at its end.
 * Failures end the stream with one encrypted error event and no final event,
 * so the client reports the reply as truncated:
 *   - the backend sends an event that is not a JSON object;
 *   - an event exceeds --max-event-size;
 *   - the backend's stream ends inside an event, breaks off, or goes idle
 *     for --backend-idle-timeout-ms.
 *
 * Backpressure: when the client's unsent output is above the server's high
 * watermark, the next backend chunk is refused (CF_HTTP_BODY_PAUSE) and curl
 * stops reading the UNIX socket, so llama-server is slowed by flow control;
 * on_writable resumes it. Memory per stream: the watermark plus one event. */
#include <string.h>

#include "confide/log.h"
#include "worker_request.h"

static void relay_write(worker_request *r)
{
    if (r->out.len == 0) {
        return;
    }
    if (cf_is_error(cf_http_stream_write(r->req, cf_buf_slice(&r->out)))) {
        /* Client gone (on_close follows from the loop) or over the hard
         * cap: stop producing. */
        CF_LOG_WARN("stream_write_failed", cf_kv_id("req", r->id), cf_kv_last_error());
        r->relay_failed = true;
    } else {
        r->bytes_out += r->out.len;
        cf_metric_add(r->w->m.bytes_out, (double)r->out.len);
    }
    cf_buf_reset(&r->out);
}

/* End the stream with an encrypted error event (no final event). */
static void relay_fail(worker_request *r, const char *code, const char *message)
{
    if (r->stream_closed) {
        return;
    }
    r->stream_closed = true;
    r->stream_error = true;
    r->code = code;
    if (cf_is_error(cf_proto_stream_seal_error(r->session, code, message, &r->out))) {
        CF_LOG_ERROR("seal_error_failed", cf_kv_id("req", r->id), cf_kv_last_error());
    }
}

static CF_RESULT on_backend_event(void *ctx, const cf_sse_event *ev)
{
    worker_request *r = ctx;
    if (r->stream_closed) {
        return CF_OK; /* after [DONE] or an error nothing more is forwarded */
    }
    if (!ev->has_data) {
        /* Comments and id/retry-only events carry nothing; pass a fixed
         * keep-alive (never the backend's text) so idle proxies see life. */
        if (ev->comment_count > 0) {
            return cf_buf_append_cstr(&r->out, ":\n\n");
        }
        return CF_OK;
    }
    if (cf_is_error(cf_proto_stream_seal_event(r->session, ev, &r->out))) {
        cf_error_code code = cf_error_code_last();
        CF_LOG_WARN("backend_event_rejected", cf_kv_id("req", r->id), cf_kv_str("err", cf_error_name(code)));
        relay_fail(r, "upstream_error",
                   code == CF_E_TOO_LARGE ? "inference server sent an event larger than the worker's limit"
                                          : "inference server sent a non-JSON event");
        return CF_OK;
    }
    r->events++;
    cf_metric_inc(r->w->m.events_relayed);
    if (cf_proto_stream_complete(r->session)) {
        r->stream_closed = true; /* [DONE]: final event and [DONE] written */
    }
    return CF_OK;
}

static void on_client_writable(cf_http_request *req, void *arg)
{
    (void)req;
    worker_request *r = arg;
    if (r->paused && r->call != NULL) {
        r->paused = false;
        /* May deliver the pending chunk from inside: touch nothing after. */
        cf_http_call_resume(r->call);
    }
}

CF_RESULT worker_relay_start(worker_request *r, long status)
{
    worker_state *w = r->w;
    CF_GUARD(cf_proto_stream_begin(r->session, (int)status));
    cf_http_stream_callbacks cbs = {.on_writable = on_client_writable, .on_close = worker_on_client_close};
    CF_GUARD(cf_http_stream_start(r->req, (int)status, "text/event-stream", worker_reply_headers, &cbs, r));
    r->streaming = true;
    r->reply_status = (int)status;
    r->stream_counted = true;
    w->streams++;
    cf_metric_inc(w->m.streams_total);
    cf_metric_set(w->m.streams_active, (double)w->streams);
    cf_sse_parser_init(&r->parser, (size_t)w->cfg.max_event, on_backend_event, r);
    r->parser_live = true;
    return CF_OK;
}

cf_http_body_action worker_relay_body(worker_request *r, cf_slice data)
{
    if (r->relay_failed) {
        return CF_HTTP_BODY_ABORT;
    }
    if (r->stream_closed) {
        return CF_HTTP_BODY_ABORT; /* done: nothing more is forwarded */
    }
    if (cf_http_stream_congested(r->req)) {
        if (!r->paused) {
            cf_metric_inc(r->w->m.backend_pauses);
        }
        r->paused = true;
        return CF_HTTP_BODY_PAUSE; /* redelivered after on_writable */
    }
    if (cf_is_error(cf_sse_parser_feed(&r->parser, data))) {
        cf_error_code code = cf_error_code_last();
        relay_fail(r, "upstream_error",
                   code == CF_E_TOO_LARGE ? "inference server sent an event larger than the worker's limit"
                                          : "inference server sent an unreadable stream");
    }
    relay_write(r);
    return r->stream_closed || r->relay_failed ? CF_HTTP_BODY_ABORT : CF_HTTP_BODY_CONTINUE;
}

void worker_relay_done(worker_request *r, cf_http_error error)
{
    if (!r->stream_closed && !r->relay_failed) {
        if (error == CF_HTTP_OK) {
            /* Clean end: an event begun but not ended is a truncation (S8);
             * otherwise the final event closes the stream. */
            if (cf_is_error(cf_sse_parser_finish(&r->parser))) {
                relay_fail(r, "upstream_error", "inference server stream ended inside an event");
            } else if (cf_is_error(cf_proto_stream_seal_finish(r->session, &r->out))) {
                relay_fail(r, "upstream_error", "inference server stream could not be closed");
            } else {
                r->stream_closed = true;
            }
        } else if (error == CF_HTTP_ERR_TIMEOUT) {
            relay_fail(r, "upstream_timeout", "inference server stream went idle");
        } else {
            relay_fail(r, "upstream_error", "inference server stream broke off");
        }
        relay_write(r);
    }
    if (r->parser_live) {
        cf_sse_parser_free(&r->parser);
        r->parser_live = false;
    }
    cf_http_stream_end(r->req);
    int outcome;
    if (r->relay_failed && !r->stream_closed) {
        outcome = OUT_CANCELLED;
    } else if (r->stream_error) {
        outcome = OUT_FAILED;
    } else {
        outcome = r->reply_status >= 200 && r->reply_status < 300 ? OUT_OK : OUT_BACKEND;
    }
    worker_request_finish(r, outcome);
}

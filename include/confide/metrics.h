/*
 * metrics.h — counters, gauges and histograms rendered in the Prometheus text
 * exposition format (version 0.0.4) for every daemon's GET /metrics.
 *
 * Rules:
 *  - Every time series (a metric name plus one fixed set of label values) is
 *    registered once at startup and kept as a cf_metric handle; updating it
 *    afterwards is a few arithmetic operations (no allocation, no lookup, no
 *    lock) so it is cheap on the request path.
 *  - Label values are fixed at registration, so a peer can never create new
 *    series (no unbounded cardinality from request data).
 *  - All series of one name form a family that shares one type and one help
 *    text; registering the same name with another type or help fails.
 *  - Names follow the Prometheus data model ([a-zA-Z_:][a-zA-Z0-9_:]*,
 *    labels [a-zA-Z_][a-zA-Z0-9_]*, no "__" prefix, "le" reserved for
 *    histograms); label values are escaped on output (\\, \", \n).
 *  - Single-threaded: update and render from the event-loop thread.
 *  - The registry owns every series; handles die with cf_metrics_free().
 */
#ifndef CONFIDE_METRICS_H
#define CONFIDE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "confide/buf.h"
#include "confide/result.h"

typedef struct cf_metrics cf_metrics;
typedef struct cf_metric cf_metric;

/* One label of a series; arrays of them end with {NULL, NULL}. */
typedef struct cf_metric_label {
    const char *name;
    const char *value;
} cf_metric_label;

#define CF_METRICS_MAX_LABELS 8
#define CF_METRICS_MAX_BUCKETS 32

CF_RESULT cf_metrics_new(cf_metrics **out);
void cf_metrics_free(cf_metrics *m);

/* Register a series. `labels` may be NULL (no labels). Strings are copied. */
CF_RESULT cf_metrics_counter(cf_metrics *m, const char *name, const char *help,
                             const cf_metric_label *labels, cf_metric **out);
CF_RESULT cf_metrics_gauge(cf_metrics *m, const char *name, const char *help,
                           const cf_metric_label *labels, cf_metric **out);
/* `bounds`: strictly increasing finite upper bounds (the +Inf bucket is
 * implicit); every series of one histogram family must use the same bounds. */
CF_RESULT cf_metrics_histogram(cf_metrics *m, const char *name, const char *help,
                               const cf_metric_label *labels, const double *bounds,
                               size_t nbounds, cf_metric **out);

/* Updates; NULL handles are ignored so optional metrics need no checks.
 * Counters only go up: cf_metric_add ignores negative or NaN amounts. */
void cf_metric_inc(cf_metric *c);
void cf_metric_add(cf_metric *c, double amount);
/* Gauges. */
void cf_metric_set(cf_metric *g, double value);
void cf_metric_gauge_add(cf_metric *g, double delta);
/* Histograms: count the value into the first bucket whose bound >= value. */
void cf_metric_observe(cf_metric *h, double value);
/* Current value (counter/gauge) or observation count (histogram); tests. */
double cf_metric_value(const cf_metric *x);

/* Append the whole registry in text format 0.0.4 to out. */
CF_RESULT cf_metrics_render(const cf_metrics *m, cf_buf *out);

/* The content type to serve the rendering with. */
#define CF_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif /* CONFIDE_METRICS_H */

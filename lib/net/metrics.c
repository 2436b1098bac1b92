/* metrics.c — Prometheus text exposition registry (see metrics.h). */
#include "confide/metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type;

static const char *const type_names[] = {"counter", "gauge", "histogram"};

typedef struct family family;

struct cf_metric {
    family *fam;
    cf_metric *next; /* next series of the same family, registration order */
    size_t nlabels;
    char *label_names[CF_METRICS_MAX_LABELS];
    char *label_values[CF_METRICS_MAX_LABELS];
    double value; /* counter / gauge */
    /* histogram: buckets[i] counts observations <= bounds[i] (non-cumulative
     * here, made cumulative when rendered); buckets[nbounds] is +Inf. */
    uint64_t buckets[CF_METRICS_MAX_BUCKETS + 1];
    uint64_t count;
    double sum;
};

struct family {
    family *next;
    char *name;
    char *help;
    metric_type type;
    size_t nbounds;
    double bounds[CF_METRICS_MAX_BUCKETS];
    cf_metric *first;
    cf_metric *last;
};

struct cf_metrics {
    family *first;
    family *last;
};

CF_RESULT cf_metrics_new(cf_metrics **out)
{
    CF_ENSURE_REF(out);
    cf_metrics *m = calloc(1, sizeof *m);
    CF_ENSURE(m != NULL, CF_E_NO_MEMORY);
    *out = m;
    return CF_OK;
}

static void series_free(cf_metric *s)
{
    for (size_t i = 0; i < s->nlabels; i++) {
        free(s->label_names[i]);
        free(s->label_values[i]);
    }
    free(s);
}

void cf_metrics_free(cf_metrics *m)
{
    if (m == NULL) {
        return;
    }
    family *f = m->first;
    while (f != NULL) {
        family *fnext = f->next;
        cf_metric *s = f->first;
        while (s != NULL) {
            cf_metric *snext = s->next;
            series_free(s);
            s = snext;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fnext;
    }
    free(m);
}

/* Prometheus data model: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* and not starting with "__" (reserved). */
static bool valid_name(const char *s, bool is_label)
{
    if (s == NULL || *s == '\0' || strlen(s) > 128) {
        return false;
    }
    if (is_label && s[0] == '_' && s[1] == '_') {
        return false;
    }
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!is_label && c == ':');
        bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && p != s)) {
            return false;
        }
    }
    return true;
}

static family *find_family(const cf_metrics *m, const char *name)
{
    for (family *f = m->first; f != NULL; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

static bool same_labels(const cf_metric *s, const cf_metric_label *labels, size_t n)
{
    if (s->nlabels != n) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s->label_names[i], labels[i].name) != 0 || strcmp(s->label_values[i], labels[i].value) != 0) {
            return false;
        }
    }
    return true;
}

static CF_RESULT check_labels(const cf_metric_label *labels, metric_type type, size_t *n_out)
{
    size_t n = 0;
    while (labels != NULL && labels[n].name != NULL) {
        CF_ENSURE_MSG(n < CF_METRICS_MAX_LABELS, CF_E_LIMIT, "too many labels");
        CF_ENSURE_MSG(valid_name(labels[n].name, true), CF_E_INVALID_ARGUMENT, "bad label name");
        CF_ENSURE_MSG(labels[n].value != NULL && strlen(labels[n].value) <= 256, CF_E_INVALID_ARGUMENT,
                      "label value missing or longer than 256 bytes");
        CF_ENSURE_MSG(!(type == METRIC_HISTOGRAM && strcmp(labels[n].name, "le") == 0), CF_E_INVALID_ARGUMENT,
                      "label \"le\" is reserved for histogram buckets");
        for (size_t j = 0; j < n; j++) {
            CF_ENSURE_MSG(strcmp(labels[j].name, labels[n].name) != 0, CF_E_INVALID_ARGUMENT, "duplicate label name");
        }
        n++;
    }
    *n_out = n;
    return CF_OK;
}

static CF_RESULT register_series(cf_metrics *m, metric_type type, const char *name, const char *help,
                                 const cf_metric_label *labels, const double *bounds, size_t nbounds,
                                 cf_metric **out)
{
    cf_result result = CF_OK;
    family *fresh_family = NULL;
    cf_metric *s = NULL;
    size_t nlabels = 0;

    CF_ENSURE_REF(m);
    CF_ENSURE_REF(out);
    CF_ENSURE_MSG(valid_name(name, false), CF_E_INVALID_ARGUMENT, "bad metric name");
    CF_ENSURE_MSG(help != NULL && strlen(help) <= 1024, CF_E_INVALID_ARGUMENT, "help text missing or too long");
    CF_GUARD(check_labels(labels, type, &nlabels));
    if (type == METRIC_HISTOGRAM) {
        CF_ENSURE_MSG(bounds != NULL && nbounds > 0 && nbounds <= CF_METRICS_MAX_BUCKETS, CF_E_INVALID_ARGUMENT,
                      "histogram needs 1..32 bucket bounds");
        for (size_t i = 0; i < nbounds; i++) {
            CF_ENSURE_MSG(isfinite(bounds[i]) && (i == 0 || bounds[i] > bounds[i - 1]), CF_E_INVALID_ARGUMENT,
                          "bucket bounds must be finite and strictly increasing");
        }
    }

    family *f = find_family(m, name);
    if (f != NULL) {
        CF_ENSURE_MSG(f->type == type && strcmp(f->help, help) == 0, CF_E_INVALID_ARGUMENT,
                      "metric re-registered with another type or help");
        if (type == METRIC_HISTOGRAM) {
            CF_ENSURE_MSG(f->nbounds == nbounds && memcmp(f->bounds, bounds, nbounds * sizeof *bounds) == 0,
                          CF_E_INVALID_ARGUMENT, "histogram re-registered with other bounds");
        }
        for (cf_metric *x = f->first; x != NULL; x = x->next) {
            CF_ENSURE_MSG(!same_labels(x, labels, nlabels), CF_E_INVALID_ARGUMENT, "series registered twice");
        }
    } else {
        fresh_family = calloc(1, sizeof *fresh_family);
        CF_ENSURE_OUT(fresh_family != NULL, CF_E_NO_MEMORY);
        fresh_family->name = strdup(name);
        fresh_family->help = strdup(help);
        CF_ENSURE_OUT(fresh_family->name != NULL && fresh_family->help != NULL, CF_E_NO_MEMORY);
        fresh_family->type = type;
        if (type == METRIC_HISTOGRAM) {
            fresh_family->nbounds = nbounds;
            memcpy(fresh_family->bounds, bounds, nbounds * sizeof *bounds);
        }
        f = fresh_family;
    }

    s = calloc(1, sizeof *s);
    CF_ENSURE_OUT(s != NULL, CF_E_NO_MEMORY);
    s->fam = f;
    for (size_t i = 0; i < nlabels; i++) {
        s->label_names[i] = strdup(labels[i].name);
        s->label_values[i] = strdup(labels[i].value);
        s->nlabels = i + 1;
        CF_ENSURE_OUT(s->label_names[i] != NULL && s->label_values[i] != NULL, CF_E_NO_MEMORY);
    }

    if (fresh_family != NULL) {
        if (m->last != NULL) {
            m->last->next = fresh_family;
        } else {
            m->first = fresh_family;
        }
        m->last = fresh_family;
        fresh_family = NULL;
    }
    if (f->last != NULL) {
        f->last->next = s;
    } else {
        f->first = s;
    }
    f->last = s;
    *out = s;
    s = NULL;
out:
    if (s != NULL) {
        series_free(s);
    }
    if (fresh_family != NULL) {
        free(fresh_family->name);
        free(fresh_family->help);
        free(fresh_family);
    }
    return result;
}

CF_RESULT cf_metrics_counter(cf_metrics *m, const char *name, const char *help, const cf_metric_label *labels,
                             cf_metric **out)
{
    return register_series(m, METRIC_COUNTER, name, help, labels, NULL, 0, out);
}

CF_RESULT cf_metrics_gauge(cf_metrics *m, const char *name, const char *help, const cf_metric_label *labels,
                           cf_metric **out)
{
    return register_series(m, METRIC_GAUGE, name, help, labels, NULL, 0, out);
}

CF_RESULT cf_metrics_histogram(cf_metrics *m, const char *name, const char *help, const cf_metric_label *labels,
                               const double *bounds, size_t nbounds, cf_metric **out)
{
    return register_series(m, METRIC_HISTOGRAM, name, help, labels, bounds, nbounds, out);
}

void cf_metric_inc(cf_metric *c) { cf_metric_add(c, 1.0); }

void cf_metric_add(cf_metric *c, double amount)
{
    if (c != NULL && c->fam->type == METRIC_COUNTER && amount >= 0) { /* NaN fails >= */
        c->value += amount;
    }
}

void cf_metric_set(cf_metric *g, double value)
{
    if (g != NULL && g->fam->type == METRIC_GAUGE) {
        g->value = value;
    }
}

void cf_metric_gauge_add(cf_metric *g, double delta)
{
    if (g != NULL && g->fam->type == METRIC_GAUGE) {
        g->value += delta;
    }
}

void cf_metric_observe(cf_metric *h, double value)
{
    if (h == NULL || h->fam->type != METRIC_HISTOGRAM || isnan(value)) {
        return;
    }
    const family *f = h->fam;
    size_t i = 0;
    while (i < f->nbounds && value > f->bounds[i]) {
        i++;
    }
    h->buckets[i]++;
    h->count++;
    h->sum += value;
}

double cf_metric_value(const cf_metric *x)
{
    if (x == NULL) {
        return 0;
    }
    return x->fam->type == METRIC_HISTOGRAM ? (double)x->count : x->value;
}

/* ---- rendering ---------------------------------------------------------- */

/* HELP text escapes backslash and newline; label values also escape the
 * double quote (exposition format 0.0.4, "Comments, help text, and type
 * information" and "Label values"). */
static CF_RESULT append_escaped(cf_buf *out, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\') {
            CF_GUARD(cf_buf_append(out, "\\\\", 2));
        } else if (*p == '\n') {
            CF_GUARD(cf_buf_append(out, "\\n", 2));
        } else if (quote && *p == '"') {
            CF_GUARD(cf_buf_append(out, "\\\"", 2));
        } else {
            CF_GUARD(cf_buf_append(out, p, 1));
        }
    }
    return CF_OK;
}

static CF_RESULT append_number(cf_buf *out, double v)
{
    if (isnan(v)) {
        return cf_buf_append_cstr(out, "NaN");
    }
    if (isinf(v)) {
        return cf_buf_append_cstr(out, v > 0 ? "+Inf" : "-Inf");
    }
    /* Integers print exactly; others with the fewest significant digits
     * (15, 16 or 17) that read back as the same double, so that a bucket
     * bound of 0.005 is le="0.005", not "0.0050000000000000001" (17
     * digits always round-trip an IEEE 754 double). The "C" locale is in
     * force (no daemon calls setlocale), so '.' is the decimal point. */
    if (v == floor(v) && fabs(v) < 1e15) {
        return cf_buf_appendf(out, "%.0f", v);
    }
    char text[40];
    for (int digits = 15; digits < 17; digits++) {
        int n = snprintf(text, sizeof text, "%.*g", digits, v);
        if (n > 0 && (size_t)n < sizeof text && strtod(text, NULL) == v) {
            return cf_buf_append_cstr(out, text);
        }
    }
    return cf_buf_appendf(out, "%.17g", v);
}

/* name{labels[,le="x"]} value\n */
static CF_RESULT append_sample(cf_buf *out, const cf_metric *s, const char *suffix, const char *le, double v)
{
    CF_GUARD(cf_buf_append_cstr(out, s->fam->name));
    CF_GUARD(cf_buf_append_cstr(out, suffix));
    if (s->nlabels > 0 || le != NULL) {
        CF_GUARD(cf_buf_append_cstr(out, "{"));
        for (size_t i = 0; i < s->nlabels; i++) {
            CF_GUARD(cf_buf_appendf(out, "%s%s=\"", i ? "," : "", s->label_names[i]));
            CF_GUARD(append_escaped(out, s->label_values[i], true));
            CF_GUARD(cf_buf_append_cstr(out, "\""));
        }
        if (le != NULL) {
            CF_GUARD(cf_buf_appendf(out, "%sle=\"%s\"", s->nlabels ? "," : "", le));
        }
        CF_GUARD(cf_buf_append_cstr(out, "}"));
    }
    CF_GUARD(cf_buf_append_cstr(out, " "));
    CF_GUARD(append_number(out, v));
    return cf_buf_append_cstr(out, "\n");
}

CF_RESULT cf_metrics_render(const cf_metrics *m, cf_buf *out)
{
    CF_ENSURE_REF(m);
    CF_ENSURE_REF(out);
    for (const family *f = m->first; f != NULL; f = f->next) {
        CF_GUARD(cf_buf_appendf(out, "# HELP %s ", f->name));
        CF_GUARD(append_escaped(out, f->help, false));
        CF_GUARD(cf_buf_appendf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]));
        for (const cf_metric *s = f->first; s != NULL; s = s->next) {
            if (f->type != METRIC_HISTOGRAM) {
                CF_GUARD(append_sample(out, s, "", NULL, s->value));
                continue;
            }
            uint64_t cumulative = 0;
            for (size_t i = 0; i <= f->nbounds; i++) {
                char le[40];
                cf_buf tmp;
                cumulative += s->buckets[i];
                if (i == f->nbounds) {
                    memcpy(le, "+Inf", 5);
                } else {
                    cf_buf_init(&tmp, sizeof le - 1);
                    cf_result r = append_number(&tmp, f->bounds[i]);
                    if (cf_is_error(r)) {
                        cf_buf_free(&tmp);
                        return r;
                    }
                    memcpy(le, tmp.data, tmp.len);
                    le[tmp.len] = '\0';
                    cf_buf_free(&tmp);
                }
                CF_GUARD(append_sample(out, s, "_bucket", le, (double)cumulative));
            }
            CF_GUARD(append_sample(out, s, "_sum", NULL, s->sum));
            CF_GUARD(append_sample(out, s, "_count", NULL, (double)s->count));
        }
    }
    return CF_OK;
}

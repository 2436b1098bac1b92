/* fuzz_host_port.c — the host:port splitter of daemon.h must never read out
 * of bounds, and whatever it accepts must re-parse to the same host and port
 * once formatted canonically. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "confide/daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 400) {
        return 0;
    }
    char *spec = malloc(size + 1);
    if (spec == NULL) {
        return 0;
    }
    memcpy(spec, data, size);
    spec[size] = '\0';
    char host[64], host2[64], again[128];
    uint16_t port = 0, port2 = 0;
    uint16_t def = size > 0 ? (uint16_t)(data[0] * 7) : 0;
    if (cf_is_ok(cf_parse_host_port(spec, def, host, sizeof host, &port))) {
        bool v6 = strchr(host, ':') != NULL;
        snprintf(again, sizeof again, v6 ? "[%s]:%u" : "%s:%u", host, (unsigned)port);
        if (cf_is_error(cf_parse_host_port(again, 0, host2, sizeof host2, &port2)) || strcmp(host, host2) != 0 ||
            port != port2) {
            abort();
        }
    }
    free(spec);
    return 0;
}

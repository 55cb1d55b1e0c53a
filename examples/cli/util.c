/* What the subcommands share: error lines, number parsing, the .npy and .safetensors writers. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"

int cli_fail(const char *cmd, const char *what, mae_status s)
{
    fprintf(stderr, "mae %s: %s: %s: %s\n", cmd, what, mae_status_str(s), mae_last_error());
    return 1;
}

void cli_print_profile(FILE *f, const char *what, int runs)
{
    int n = 0;
    double total = 0.0;
    mae_measure_count(&n);
    for (int i = 0; i < n; i++) {
        double sec = 0.0;
        mae_measure_op(i, NULL, NULL, &sec, NULL, NULL, NULL);
        total += sec;
    }
    fprintf(f, "profile of %s (per run, %d run%s; time inside the parallel loops %.3f ms):\n", what,
            runs, runs == 1 ? "" : "s", total / runs * 1e3);
    fprintf(f, "  %-20s %8s %10s %7s %9s\n", "op", "loops", "ms", "share", "GFLOP/s");
    for (int i = 0; i < n; i++) {
        const char *name;
        int loops;
        double sec, flops;
        mae_measure_op(i, &name, &loops, &sec, &flops, NULL, NULL);
        fprintf(f, "  %-20s %8d %10.3f %6.1f%% %9.1f\n", name, loops / runs, sec / runs * 1e3,
                total > 0 ? 100.0 * sec / total : 0.0, sec > 0 ? flops / sec * 1e-9 : 0.0);
    }
}

int cli_usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "mae %s: %s (try mae %s --help)\n", cmd, msg, cmd);
    return 2;
}

int cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}

/* A header and the float data after it, as one buffer for the atomic writer: a full disk or a
 * kill then leaves the previous file whole instead of a truncated one. */
static int write_with_header(const char *cmd, const char *path, const char *header, size_t hlen,
                             const float *data, size_t count)
{
    size_t bytes = count * sizeof *data;   /* data is an allocated array: this does not wrap */
    unsigned char *buf = bytes <= SIZE_MAX - hlen ? malloc(hlen + bytes) : NULL;
    if (!buf)
        return cli_errorf(cmd, "%s: out of memory for the file's %zu bytes", path, bytes);
    memcpy(buf, header, hlen);
    memcpy(buf + hlen, data, bytes);   /* little-endian hosts */
    mae_status s = mae_file_write(path, buf, hlen + bytes);
    free(buf);
    return s == MAE_OK ? 0 : cli_fail(cmd, path, s);
}

int cli_write_npy(const char *cmd, const char *path, const float *data, const long long *shape, int ndim)
{
    char dict[256], dims[160] = "", header[10 + sizeof dict + 64];
    size_t count = 1, used = 0;
    for (int i = 0; i < ndim; i++) {
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld%s", shape[i],
                                 ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
        count *= (size_t)shape[i];
    }
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    /* magic (6) + version (2) + length (2) + dict, padded with spaces to 64 bytes, ends in \n */
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    unsigned short hlen = (unsigned short)(n + pad + 1);
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                              (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8) };
    memcpy(header, pre, 10);
    memcpy(header + 10, dict, (size_t)n);
    memset(header + 10 + n, ' ', (size_t)pad);
    header[10 + n + pad] = '\n';
    return write_with_header(cmd, path, header, (size_t)(total + pad), data, count);
}

int cli_errorf(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mae %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_usage_errorf(const char *cmd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cli_usage_error(cmd, msg);
}

const char *cli_arg_value(const char *cmd, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        cli_usage_errorf(cmd, "%s needs a value", argv[*i]);
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

int cli_arg_str(const char *cmd, int argc, char **argv, int *i, const char **out)
{
    const char *v = cli_arg_value(cmd, argc, argv, i);
    if (!v)
        return 2;
    *out = v;
    return 0;
}

int cli_arg_long(const char *cmd, int argc, char **argv, int *i, long lo, long hi, long *out)
{
    const char *opt = argv[*i], *v = cli_arg_value(cmd, argc, argv, i);
    if (!v)
        return 2;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno == ERANGE)
        return cli_usage_errorf(cmd, "%s: '%s' is not an integer", opt, v);
    if (x < lo || x > hi)
        return cli_usage_errorf(cmd, "%s: %ld is outside [%ld, %ld]", opt, x, lo, hi);
    *out = x;
    return 0;
}

int cli_arg_int(const char *cmd, int argc, char **argv, int *i, int lo, int hi, int *out)
{
    long x;
    int r = cli_arg_long(cmd, argc, argv, i, lo, hi, &x);
    if (r == 0)
        *out = (int)x;
    return r;
}

int cli_arg_u64(const char *cmd, int argc, char **argv, int *i, uint64_t *out)
{
    const char *opt = argv[*i], *v = cli_arg_value(cmd, argc, argv, i);
    if (!v)
        return 2;
    char *end;
    errno = 0;
    /* strtoull accepts "-1" and wraps it; a seed is never negative, so refuse any sign */
    unsigned long long x = strtoull(v, &end, 10);
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno == ERANGE)
        return cli_usage_errorf(cmd, "%s: '%s' is not an integer in [0, 2^64)", opt, v);
    *out = (uint64_t)x;
    return 0;
}

int cli_arg_double(const char *cmd, int argc, char **argv, int *i, double lo, double hi,
                   int hi_open, double *out)
{
    const char *opt = argv[*i], *v = cli_arg_value(cmd, argc, argv, i);
    if (!v)
        return 2;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || errno == ERANGE || !isfinite(x))
        return cli_usage_errorf(cmd, "%s: '%s' is not a number", opt, v);
    if (x < lo || x > hi || (hi_open && x == hi))
        return cli_usage_errorf(cmd, "%s: %g is outside [%g, %g%s", opt, x, lo, hi, hi_open ? ")" : "]");
    *out = x;
    return 0;
}

int cli_write_safetensors(const char *cmd, const char *path, const char *name, const float *data,
                          const long long *shape, int ndim)
{
    char json[512], dims[160] = "", header[8 + 520];
    size_t count = 1, used = 0;
    for (int i = 0; i < ndim; i++) {
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld%s", shape[i],
                                 i + 1 < ndim ? "," : "");
        count *= (size_t)shape[i];
    }
    int n = snprintf(json, sizeof json,
                     "{\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[0,%zu]}}", name,
                     dims, count * sizeof *data);
    if (n < 0 || (size_t)n >= sizeof json)
        return cli_errorf(cmd, "%s: the tensor name or shape is too long for the header", path);
    /* the data starts 8-byte aligned: the header is padded with spaces, which JSON allows */
    size_t hlen = ((size_t)n + 7) / 8 * 8;
    for (int i = 0; i < 8; i++)
        header[i] = (char)(unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(header + 8, json, (size_t)n);
    memset(header + 8 + n, ' ', hlen - (size_t)n);
    return write_with_header(cmd, path, header, 8 + hlen, data, count);
}

int cli_arg_precision(const char *cmd, int argc, char **argv, int *i, int *out)
{
    const char *v = cli_arg_value(cmd, argc, argv, i);
    if (!v)
        return 2;
    if (strcmp(v, "f32") == 0)
        *out = MAE_PRECISION_F32;
    else if (strcmp(v, "bf16") == 0)
        *out = MAE_PRECISION_BF16;
    else
        return cli_usage_errorf(cmd, "--precision: '%s' is not f32 or bf16", v);
    return 0;
}

/* The value of a __metadata__ key in a safetensors file's header (libmae writes it as
 * "key":"value"), copied into out; 0 found, 1 absent, -1 unreadable (reported). */
static int header_value(const char *cmd, const char *path, const char *key, char *out, size_t size)
{
    FILE *fp = fopen(path, "rb");
    unsigned char len8[8];
    uint64_t n = 0;
    if (!fp || fread(len8, 1, 8, fp) != 8) {
        if (fp)
            fclose(fp);
        return cli_errorf(cmd, "%s: cannot read a safetensors header", path), -1;
    }
    for (int i = 7; i >= 0; i--)
        n = n << 8 | len8[i];
    char *h = n <= 100000000 ? malloc((size_t)n + 1) : NULL;
    int ok = h && fread(h, 1, (size_t)n, fp) == n;
    fclose(fp);
    if (!ok) {
        free(h);
        return cli_errorf(cmd, "%s: cannot read a safetensors header", path), -1;
    }
    h[n] = '\0';
    char want[128];
    snprintf(want, sizeof want, "\"%s\":\"", key);
    const char *at = strstr(h, want), *end = at ? strchr(at + strlen(want), '"') : NULL;
    int rc = 1;
    if (end) {
        at += strlen(want);
        snprintf(out, size, "%.*s", (int)(end - at), at);
        rc = 0;
    }
    free(h);
    return rc;
}

int cli_checkpoint_precision(const char *cmd, const char *path, const char *key, int *out)
{
    char v[16];
    int r = header_value(cmd, path, key, v, sizeof v);
    if (r < 0)
        return 1;
    if (r == 1 || strcmp(v, "f32") == 0)   /* older checkpoints: float32 runs */
        *out = MAE_PRECISION_F32;
    else if (strcmp(v, "bf16") == 0)
        *out = MAE_PRECISION_BF16;
    else
        return cli_errorf(cmd, "%s: %s is '%s', not f32 or bf16", path, key, v);
    return 0;
}

int cli_load_model(const char *cmd, const char *path, int precision, mae_model **m)
{
    mae_load_options o;
    mae_status s = mae_load_options_init(&o, sizeof o);
    o.precision = precision;
    if (s == MAE_OK)
        s = mae_model_load_with(path, &o, m);
    return s == MAE_OK ? 0 : cli_fail(cmd, path, s);
}

int cli_set_precision(const char *cmd, mae_model *m, int precision)
{
    mae_status s = mae_model_set_precision(m, precision);
    return s == MAE_OK ? 0 : cli_fail(cmd, "--precision", s);
}

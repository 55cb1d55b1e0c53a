/* What the subcommands share: error lines and the .npy writer. */
#include <stdio.h>
#include <string.h>
#include "cli.h"

int cli_fail(const char *cmd, const char *what, mae_status s)
{
    fprintf(stderr, "mae %s: %s: %s: %s\n", cmd, what, mae_status_str(s), mae_last_error());
    return 1;
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

int cli_write_npy(const char *path, const float *data, const long long *shape, int ndim)
{
    char header[256], dims[160] = "";
    size_t count = 1, used = 0;
    for (int i = 0; i < ndim; i++) {
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld%s", shape[i],
                                 ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
        count *= (size_t)shape[i];
    }
    int n = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    /* magic (6) + version (2) + length (2) + header, padded with spaces to 64 bytes, ends in \n */
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    unsigned short hlen = (unsigned short)(n + pad + 1);
    unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                              (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8) };
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(header, 1, (size_t)n, f) == (size_t)n;
    for (int i = 0; i < pad && ok; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(data, sizeof *data, count, f) == count;   /* little-endian hosts */
    ok = (fclose(f) == 0) && ok;
    return ok ? 0 : -1;
}

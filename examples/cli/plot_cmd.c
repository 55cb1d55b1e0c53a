/* mae plot: several runs' loss logs (mae train's loss.csv, mae finetune's --csv) on one chart,
 * e.g. a float32 and a bf16 run of the same recipe. Every file is read and checked before
 * anything is drawn, and the PNG is written atomically: an error leaves no output behind. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli.h"
#include "plot.h"

#define CMD "plot"

static void usage(void)
{
    printf("usage: mae plot CSV... -o OUT.png [--label NAME]... [--lr] [--x step|epoch] [--window N]\n"
           "Draws the loss of each run (a CSV as mae train writes loss.csv, or as mae finetune --csv\n"
           "writes; its test-accuracy rows are skipped) on one chart with a log-scale loss axis: the\n"
           "raw loss in a pale tint of the run's colour, its moving average in the colour, a legend.\n"
           "options:\n"
           "  -o, --out FILE    the PNG (800x440) to write; required\n"
           "  --label NAME      the legend name of the next CSV, in order [the file name]\n"
           "  --lr              each run's lr too, dashed, on a linear scale on the right\n"
           "  --x step|epoch    what the x axis shows [step]\n"
           "  --window N        average the loss over N rows [1%% of each run's rows]\n");
}

/* One run's log: the rows that hold a loss. */
typedef struct run_log {
    float *x, *loss, *lr;
    int n, cap;
} run_log;

static void run_log_free(run_log *r)
{
    free(r->x);
    free(r->loss);
    free(r->lr);
    memset(r, 0, sizeof *r);
}

static int run_log_push(run_log *r, float x, float loss, float lr)
{
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 1024;
        float *nx = realloc(r->x, (size_t)cap * sizeof *nx);
        if (nx)
            r->x = nx;
        float *nl = nx ? realloc(r->loss, (size_t)cap * sizeof *nl) : NULL;
        if (nl)
            r->loss = nl;
        float *nr = nl ? realloc(r->lr, (size_t)cap * sizeof *nr) : NULL;
        if (!nr)
            return 1;
        r->lr = nr;
        r->cap = cap;
    }
    r->x[r->n] = x;
    r->loss[r->n] = loss;
    r->lr[r->n] = lr;
    r->n++;
    return 0;
}

enum { MAX_FIELDS = 16 };

/* Splits line (modified in place) at its commas: the field count, or -1 beyond MAX_FIELDS. */
static int split(char *line, char *field[MAX_FIELDS])
{
    int n = 0;
    for (char *p = line;; p++) {
        if (n == MAX_FIELDS)
            return -1;
        field[n++] = p;
        p += strcspn(p, ",");
        if (*p == '\0')
            return n;
        *p = '\0';
    }
}

/* A field that is as a whole a number that a float holds (finite, at most FLT_MAX). */
static int parse_number(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return end != s && *end == '\0' && errno == 0 && fabs(*v) <= FLT_MAX;
}

/* The column named name in the header's fields, or -1. */
static int column(char *const *field, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(field[i], name) == 0)
            return i;
    return -1;
}

/* Reads the loss log at path: its header must name the columns xname, loss and lr; every row
 * has the header's field count, and a row with a loss has numbers for x (the column xname),
 * loss and lr, x and lr not negative (rows with an empty loss, mae finetune's evaluations, are
 * skipped).
 * 0, or 1 after an error line that names the file and line. */
static int read_log(const char *path, const char *xname, run_log *r)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return cli_errorf(CMD, "cannot read %s: %s", path, strerror(errno));
    char line[1024], *field[MAX_FIELDS];
    int cols = 0, xc = -1, lc = -1, rc = -1, err = 0;
    long no = 0;
    while (!err && fgets(line, sizeof line, f)) {
        no++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            err = cli_errorf(CMD, "%s:%ld: line too long for a loss log", path, no);
            break;
        }
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0')
            continue;
        int n = split(line, field);
        if (cols == 0) {   /* the first line that is not empty: the header */
            cols = n;
            xc = n > 0 ? column(field, n, xname) : -1;
            lc = n > 0 ? column(field, n, "loss") : -1;
            rc = n > 0 ? column(field, n, "lr") : -1;
            if (xc < 0 || lc < 0 || rc < 0)
                err = cli_errorf(CMD, "%s: not a loss log (the first line must name the columns "
                                 "%s, loss and lr, as mae train's loss.csv does)", path, xname);
            continue;
        }
        double x, loss, lr;
        if (n != cols)
            err = n < 0 ? cli_errorf(CMD, "%s:%ld: more than %d fields", path, no, MAX_FIELDS)
                        : cli_errorf(CMD, "%s:%ld: %d fields, the header has %d", path, no, n, cols);
        else if (field[lc][0] == '\0')
            continue;   /* an evaluation row of mae finetune */
        else if (!parse_number(field[xc], &x) || !parse_number(field[lc], &loss) ||
                 !parse_number(field[rc], &lr))
            err = cli_errorf(CMD, "%s:%ld: %s, loss and lr must be numbers within float range",
                             path, no, xname);
        else if (x < 0 || lr < 0)   /* keeps every point on the axes */
            err = cli_errorf(CMD, "%s:%ld: a negative %s or lr", path, no, xname);
        else if (run_log_push(r, (float)x, (float)loss, (float)lr))
            err = cli_errorf(CMD, "%s: out of memory", path);
    }
    if (!err && ferror(f))
        err = cli_errorf(CMD, "cannot read %s: %s", path, strerror(errno));
    else if (!err && cols == 0)
        err = cli_errorf(CMD, "%s: empty file, not a loss log", path);
    else if (!err && r->n == 0)
        err = cli_errorf(CMD, "%s: no rows with a loss", path);
    fclose(f);
    return err;
}

int cmd_plot(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        usage();
        return 0;
    }
    const char *out = NULL, *xname = "step", *csv[CLI_PLOT_MAX_RUNS], *label[CLI_PLOT_MAX_RUNS];
    int ncsv = 0, nlabel = 0, with_lr = 0, window = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = 0;
        if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            r = cli_arg_str(CMD, argc, argv, &i, &out);
        else if (!strcmp(a, "--label")) {
            if (nlabel == CLI_PLOT_MAX_RUNS)
                return cli_usage_errorf(CMD, "at most %d --label", CLI_PLOT_MAX_RUNS);
            r = cli_arg_str(CMD, argc, argv, &i, &label[nlabel]);
            nlabel += r == 0;
        } else if (!strcmp(a, "--lr"))
            with_lr = 1;
        else if (!strcmp(a, "--x")) {
            r = cli_arg_str(CMD, argc, argv, &i, &xname);
            if (!r && strcmp(xname, "step") != 0 && strcmp(xname, "epoch") != 0)
                return cli_usage_errorf(CMD, "--x is step or epoch, not '%s'", xname);
        } else if (!strcmp(a, "--window"))
            r = cli_arg_int(CMD, argc, argv, &i, 1, 1000000, &window);
        else if (a[0] == '-' && a[1] != '\0')
            return cli_usage_errorf(CMD, "unknown option '%s'", a);
        else if (ncsv == CLI_PLOT_MAX_RUNS)
            return cli_usage_errorf(CMD, "at most %d CSV files on one chart", CLI_PLOT_MAX_RUNS);
        else
            csv[ncsv++] = a;
        if (r)
            return r;
    }
    if (ncsv == 0)
        return cli_usage_error(CMD, "expects at least one CSV file");
    if (!out)
        return cli_usage_error(CMD, "expects -o OUT.png");
    if (nlabel > ncsv)
        return cli_usage_errorf(CMD, "%d --label for %d CSV files", nlabel, ncsv);
    for (int k = 0; k < ncsv; k++)
        if (strcmp(csv[k], out) == 0)
            return cli_usage_errorf(CMD, "-o %s would overwrite an input", out);

    run_log logs[CLI_PLOT_MAX_RUNS];
    cli_plot_run runs[CLI_PLOT_MAX_RUNS];
    memset(logs, 0, sizeof logs);
    int rc = 0;
    for (int k = 0; k < ncsv && !rc; k++) {
        rc = read_log(csv[k], xname, &logs[k]);
        runs[k] = (cli_plot_run){ k < nlabel ? label[k] : csv[k], logs[k].x, logs[k].loss,
                                  logs[k].lr, logs[k].n };
    }
    if (!rc)
        rc = cli_plot_runs(CMD, out, runs, ncsv, xname, strcmp(xname, "step") == 0, window, with_lr);
    if (!rc)
        printf("wrote %s (%d run%s)\n", out, ncsv, ncsv == 1 ? "" : "s");
    for (int k = 0; k < ncsv; k++)
        run_log_free(&logs[k]);
    return rc;
}

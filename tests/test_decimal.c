/* mae_decimal_parse / mae_decimal_format (src/io/decimal.h), the metadata number text of checkpoints:
 *   - parse gives exactly the C library's strtod (correctly rounded, "C" locale) for random
 *     doubles over the whole finite range printed with 1..19 significant digits, and for the
 *     hard cases (subnormal midpoints, DBL_MAX's rounding edge, 2^53 + 1, 1e23);
 *   - format(17 digits) then parse gives every double back bit for bit, format(9) every float;
 *   - under a locale with a decimal comma (when one is installed) format still writes '.', and
 *     parse still reads it. */
#include <float.h>
#include <locale.h>
#include "testutil.h"
#include "../src/io/decimal.h"

static uint64_t bits_of(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double random_double(void)
{
    for (;;) {
        uint64_t b = ((uint64_t)(tu_uniform() * 4294967296.0) << 32) | (uint64_t)(tu_uniform() * 4294967296.0);
        double v;
        memcpy(&v, &b, sizeof v);
        if (isfinite(v))
            return v;
    }
}

static void test_against_strtod(void)
{
    long bad = 0;
    char buf[64];
    for (int i = 0; i < 200000; i++) {
        double v = random_double(), got = NAN;
        int digits = 1 + i % 19;
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        double want = strtod(buf, NULL);
        if (!mae_decimal_parse(buf, &got) || bits_of(got) != bits_of(want)) {
            if (bad++ < 5)
                fprintf(stderr, "  %s -> %.17g, strtod %.17g\n", buf, got, want);
        }
    }
    CHECK(bad == 0, "%ld of 200000 random decimals differ from strtod", bad);

    static const char *const hard[] = {
        "2.4703282292062327e-324", "2.4703282292062328e-324", "4.9406564584124654e-324",
        "2.2250738585072011e-308", "2.2250738585072014e-308", "1.7976931348623157e308",
        "1.7976931348623158e308", "1.7976931348623159e308", "9007199254740993", "1e23",
        "8.98846567431158e307", "0.1", "-0.0", "1e-400", "1e400", "123456789012345678901234567890",
        "0.000000000000000000000000000001", "1.5e-4", "1e-8",
    };
    for (size_t i = 0; i < sizeof hard / sizeof *hard; i++) {
        double got = NAN, want = strtod(hard[i], NULL);
        CHECK(mae_decimal_parse(hard[i], &got) && bits_of(got) == bits_of(want),
              "%s -> %.17g, strtod %.17g", hard[i], got, want);
    }
    static const char *const not_numbers[] = { "", "-", ".", "1e", "1e+", "0x10", "1,5", "nan", "inf", "1 ", " 1" };
    for (size_t i = 0; i < sizeof not_numbers / sizeof *not_numbers; i++) {
        double v = 42.0;
        CHECK(!mae_decimal_parse(not_numbers[i], &v) && v == 42.0, "'%s' parsed as a number", not_numbers[i]);
    }
}

static long round_trips(void)
{
    long bad = 0;
    char buf[64];
    for (int i = 0; i < 200000; i++) {
        double v = random_double(), got = NAN;
        mae_decimal_format(buf, sizeof buf, v, 17);
        if (!mae_decimal_parse(buf, &got) || bits_of(got) != bits_of(v))
            bad++;
        float f = (float)(tu_uniform() * pow(10.0, -30 + 60 * tu_uniform()));
        mae_decimal_format(buf, sizeof buf, (double)f, 9);
        if (!mae_decimal_parse(buf, &got) || (float)got != f)
            bad++;
    }
    return bad;
}

static void test_round_trips(void)
{
    long bad = round_trips();
    CHECK(bad == 0, "%ld doubles (17 digits) or floats (9 digits) did not round-trip", bad);
}

static void test_comma_locale(void)
{
    long bad;
    static const char *const comma_locales[] = { "de_DE.UTF-8", "fr_FR.UTF-8", "de_DE", "fr_FR" };
    const char *used = NULL;
    for (size_t i = 0; i < sizeof comma_locales / sizeof *comma_locales && !used; i++)
        if (setlocale(LC_NUMERIC, comma_locales[i]) && localeconv()->decimal_point[0] == ',')
            used = comma_locales[i];
    if (used) {
        char buf[64];
        double got = NAN;
        mae_decimal_format(buf, sizeof buf, 0.15625, 17);
        CHECK(strcmp(buf, "0.15625") == 0, "%s: format wrote '%s'", used, buf);
        CHECK(mae_decimal_parse("0.15625", &got) && got == 0.15625, "%s: parse read %.17g", used, got);
        bad = round_trips();
        CHECK(bad == 0, "%s: %ld values did not round-trip", used, bad);
        setlocale(LC_NUMERIC, "C");
        printf("test_decimal: decimal-comma locale %s checked\n", used);
    } else {
        printf("test_decimal: no decimal-comma locale installed: that part skipped\n");
    }
}

int main(int argc, char **argv)
{
    tu_init(argc, argv);
    tu_seed(17);
    TU_RUN("strtod", test_against_strtod());
    TU_RUN("round_trips", test_round_trips());
    TU_RUN("comma_locale", test_comma_locale());
    return tu_finish("test_decimal");
}

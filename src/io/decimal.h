/* Locale-independent decimal numbers (decimal.c), for JSON and for __metadata__ values. */
#ifndef MAE_DECIMAL_H
#define MAE_DECIMAL_H

#include <stddef.h>

/* A decimal number: optional sign, digits with an optional '.', optional exponent. 1 if all of s
 * is one; *v gets the double nearest to its first 19 significant digits (ties to even, as strtod
 * rounds). */
int  mae_decimal_parse(const char *s, double *v);
/* %.*g with a '.' whatever the locale; 9 digits round-trip a float, 17 a double. */
void mae_decimal_format(char *buf, size_t cap, double v, int digits);

#endif

/*
 * config_values.c - the text of one setting's value to its field, as
 * sluice.ini writes it: decimal and octal integers, booleans, seconds (with
 * a fraction) to milliseconds, pool modes and auth types. Strict: no sign,
 * no locale, nothing a typo could turn into another value.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_load.h"

/* Decimal digits only (no sign, no 0x, no octal surprise), in range. */
int cfg_parse_int(const char *value, int min, int max, int *out)
{
	char *end;
	long v;

	if (value[0] < '0' || value[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtol(value, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

int cfg_parse_octal(const char *value, int *out)
{
	long v;

	if (!value[0] || value[strspn(value, "01234567")] != '\0')
		return -EINVAL;
	v = strtol(value, NULL, 8);
	if (v > 07777)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

int cfg_parse_bool(const char *value, bool *out)
{
	static const char *const yes[] = { "1", "yes", "on", "true" };
	static const char *const no[] = { "0", "no", "off", "false" };

	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcasecmp(value, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(value, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Seconds with an optional fraction ("5", "0.5", ".25") to ms, rounded to
 * the nearest ms but never to 0 from a nonzero value. No sign, no
 * exponent, no locale: the same file means the same everywhere. */
int cfg_parse_time_ms(const char *value, uint64_t *out)
{
	size_t int_len = strspn(value, "0123456789");
	const char *frac = value + int_len;
	size_t frac_len = 0;
	uint64_t ms = 0;
	unsigned scale = 100;

	if (*frac == '.')
		frac_len = strspn(++frac, "0123456789");
	if (frac[frac_len] != '\0' || int_len + frac_len == 0 || int_len > 12)
		return -EINVAL;
	for (size_t i = 0; i < int_len; i++)
		ms = ms * 10 + (uint64_t)(value[i] - '0');
	ms *= 1000;
	for (size_t i = 0; i < frac_len && i < 3; i++, scale /= 10)
		ms += (uint64_t)(frac[i] - '0') * scale;
	if (frac_len > 3 && frac[3] >= '5')
		ms++;
	if (ms == 0 && strspn(frac, "0") < frac_len)
		ms = 1;
	*out = ms;
	return 0;
}

int cfg_parse_pool_mode(const char *value, enum pool_mode *out)
{
	static const enum pool_mode modes[] = {
		POOL_MODE_SESSION, POOL_MODE_TRANSACTION, POOL_MODE_STATEMENT,
	};

	for (size_t i = 0; i < ARRAY_LEN(modes); i++) {
		if (strcasecmp(value, config_pool_mode_name(modes[i])) == 0) {
			*out = modes[i];
			return 0;
		}
	}
	return -EINVAL;
}

/* -ENOTSUP for PgBouncer's types that sluice does not have yet. */
int cfg_parse_auth_type(const char *value, enum auth_type *out)
{
	static const enum auth_type types[] = {
		AUTH_TRUST, AUTH_ANY, AUTH_PLAIN, AUTH_MD5, AUTH_SCRAM,
	};
	static const char *const later[] = { "hba", "cert", "pam", "ldap" };

	for (size_t i = 0; i < ARRAY_LEN(types); i++) {
		if (strcasecmp(value, config_auth_type_name(types[i])) == 0) {
			*out = types[i];
			return 0;
		}
	}
	for (size_t i = 0; i < ARRAY_LEN(later); i++)
		if (strcasecmp(value, later[i]) == 0)
			return -ENOTSUP;
	return -EINVAL;
}
